"""The `pywats-client` command line: `main` parses and dispatches, `common` holds the exit
codes and helpers, one module per group of commands, and `doctor` looks over a station."""

from pywats_client.cli.main import main

__all__ = ["main"]

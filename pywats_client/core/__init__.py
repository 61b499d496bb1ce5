"""The library API: what a Python program on a station uses instead of the CLI.

`ClientConfig` (an instance's config.json), `WATSClient` (the whole service in background
threads) and, in `pywats_client.core.queue`, `ReportQueue` (push reports into the same durable
queue the service uploads from). Synchronous throughout: no event loop. These are fronts, like
the CLI: they may use any part of the package except the CLI.
"""

from pywats_client.core.client import WATSClient
from pywats_client.core.config import ClientConfig

__all__ = ["ClientConfig", "WATSClient"]

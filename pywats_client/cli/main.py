"""The `pywats-client` command line: argparse in, one library call, an exit code out.

Handlers are thin: they build a request, call into the package, print the answer and map
errors to exit codes. Heavy modules (requests, watchdog, cryptography) are imported inside the
handlers that need them, so `--help` and `--version` start in a blink on a Raspberry Pi.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path

from pywats_client import __version__
from pywats_client.cli import config_commands, queue_commands, service_commands, systemd_unit
from pywats_client.cli.common import (
    ERROR,
    EXIT_CODES,
    LOCKED,
    REJECTED,
    USAGE,
    AddCommand,
    err,
)

DESCRIPTION = """\
Headless WATS client: watches folders for files written by test equipment, converts each one
into a WATS report, keeps every report in a durable queue and uploads it to a WATS server —
through outages, server faults and restarts, losing nothing.

Set up a station:
  pywats-client config init                   (asks for server, token, station name)
  pywats-client config add-watch-folder /data/ict --converter WATSStandardJsonConverter
  pywats-client start                         (foreground; for systemd)
  pywats-client start --once                  (drain what is due, then exit; for cron)
  pywats-client status
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit code (the console script exits with it)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return USAGE
    from pywats_client.errors import (
        ConfigError,
        ConversionError,
        LockError,
        PluginError,
        PyWATSClientError,
    )

    try:
        code: int = args.handler(args)
        return code
    except ConfigError as exc:
        err(f"configuration error: {exc}")
        return USAGE
    except LockError as exc:
        err(str(exc))
        return LOCKED
    except (ConversionError, PluginError) as exc:
        err(str(exc))
        return REJECTED
    except PyWATSClientError as exc:
        err(str(exc))
        return ERROR
    except BrokenPipeError:
        return ERROR  # stdout closed early (`| head`): there is nobody left to tell
    except OSError as exc:
        # Permissions, a full disk, a vanished folder: an operator needs the file named,
        # not a traceback; str(exc) carries the errno text and the path.
        err(str(exc))
        return ERROR
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pywats-client",
        description=DESCRIPTION,
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"pywats-client {__version__}")
    parser.add_argument(
        "--instance", "--instance-id", dest="instance", default="default", metavar="NAME",
        help="which instance (own config, queue, logs, lock); default: %(default)s",
    )
    parser.add_argument(
        "--data-dir", type=Path, default=None, metavar="DIR",
        help="where instances live (env PYWATS_DATA_DIR; default ~/.config/pywats_client, "
        "or /var/lib/pywats as root)",
    )
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    def command(name: str, handler: Callable[[argparse.Namespace], int] | None,
                help: str | None, aliases: Sequence[str] = ()) -> argparse.ArgumentParser:
        """A command's parser; with no handler, a group whose actions are added to it; with
        no help, a command left out of --help."""
        formatter = argparse.RawDescriptionHelpFormatter
        if help is None:  # argparse lists a command in --help only when it has a help text
            p = sub.add_parser(name, aliases=list(aliases), epilog=EXIT_CODES,
                               formatter_class=formatter)
        else:
            p = sub.add_parser(name, help=help, description=help, aliases=list(aliases),
                               epilog=EXIT_CODES, formatter_class=formatter)
        p.set_defaults(handler=handler or _group_help(name))
        return p

    # In the order --help lists them.
    service_commands.add_commands(command)
    config_commands.add_commands(command)
    queue_commands.add_commands(command)
    service_commands.add_station_commands(command)
    queue_commands.add_receiver_command(command)
    systemd_unit.add_commands(command)
    _add_retired_commands(command)
    _accept_instance_options_after_the_command(parser)
    return parser


def _accept_instance_options_after_the_command(parser: argparse.ArgumentParser) -> None:
    """`--instance`/`--instance-id` and `--data-dir` also after the command, as the product
    documents write them (`pywats-client status --instance-id station1`). Given there, they
    win; left out, the value before the command (or its default) stands."""
    seen: set[int] = set()
    pending = [parser]
    while pending:
        for action in pending.pop()._actions:
            if not isinstance(action, argparse._SubParsersAction):
                continue
            for sub in action.choices.values():
                if id(sub) in seen:
                    continue  # an alias names the same parser
                seen.add(id(sub))
                pending.append(sub)
                group = sub.add_argument_group("instance (also accepted before the command)")
                group.add_argument("--instance", "--instance-id", dest="instance",
                                   default=argparse.SUPPRESS, metavar="NAME",
                                   help="which instance")
                group.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS,
                                   metavar="DIR", help="where instances live")


# Commands of the product documents that this client does not have, and what does the job.
RETIRED_COMMANDS = {
    "gui": "there is no desktop GUI: the status page of the control API shows the station "
           "(pywats-client start --api, then open http://127.0.0.1:8765/), and status, queue "
           "and config do the rest",
    "install-service": "install the systemd service with install.sh --systemd (offline "
                       "bundle), or: pywats-client systemd-unit > "
                       "/etc/systemd/system/pywats-client@.service",
}


def _add_retired_commands(command: AddCommand) -> None:
    for name, replacement in RETIRED_COMMANDS.items():
        p = command(name, _retired(name, replacement), None)
        p.add_argument("ignored", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def _retired(name: str, replacement: str) -> Callable[[argparse.Namespace], int]:
    def handler(args: argparse.Namespace) -> int:
        err(f"{name}: {replacement}")
        return USAGE

    return handler


def _group_help(name: str) -> Callable[[argparse.Namespace], int]:
    def handler(args: argparse.Namespace) -> int:
        # `pywats-client queue` alone is a usage error like no command at all: show the
        # group's help and exit 2, not argparse's `--help` exit 0.
        with contextlib.suppress(SystemExit):
            build_parser().parse_args([name, "--help"])
        return USAGE

    return handler

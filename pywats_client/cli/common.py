"""What every command handler shares: exit codes, error output, the instance and its config.

Imports nothing heavy at module level, so that `--help` and `--version` stay quick.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from pywats_client.config.settings import Settings
    from pywats_client.paths import InstancePaths

# Exit codes, also listed in --help.
OK = 0


ERROR = 1


USAGE = 2  # bad command line or invalid configuration


SERVER = 3  # server unreachable or busy: reports are kept and sent later ("try later")


LOCKED = 4  # another process owns this instance's queue


REJECTED = 5  # a file could not be converted, or the server rejected a report


NOT_RUNNING = 6  # status: the service is not running


DEGRADED = 7  # status: running, but the disk is (nearly) full, a watch folder is unavailable
# or files wait in an error folder

REFUSED = 8  # the server refused the credentials or the URL: reports wait for a config fix

API_PORT = 8765  # = control_api.DEFAULT_PORT, kept here so --help imports nothing


RESTARTED_ENV = "PYWATS_CLIENT_RESTARTED"

EXIT_CODES = f"""exit codes:
  {OK}  success
  {ERROR}  unexpected error (see the message and the log)
  {USAGE}  bad command line or invalid configuration (the message names the key and the fix)
  {SERVER}  server unreachable or busy: try later; nothing is lost, reports wait in the queue
  {LOCKED}  another process owns this instance (pywats-client status tells which)
  {REJECTED}  a file could not be converted, or the server rejected a report
  {NOT_RUNNING}  status: the service is not running
  {DEGRADED}  status: running, but the disk is (nearly) full, a watch folder is unavailable, or
     files wait in an error folder
  {REFUSED}  the server refused the credentials or the URL (401/403, 404, a redirect): fix
     api_token or server_url; nothing is lost, reports wait in the queue
"""


def err(message: str) -> None:
    print(f"pywats-client: {message}", file=sys.stderr)


def instance_paths(args: argparse.Namespace) -> InstancePaths:
    from pywats_client.paths import InstancePaths

    data_dir = args.data_dir
    return InstancePaths.for_instance(args.instance, data_dir)


def load_settings_for(paths: InstancePaths) -> Settings:
    from pywats_client.config.document import load_settings

    return load_settings(paths.config, key_path=paths.key)


def when(epoch: float | None) -> str:
    if not epoch:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def config_document(paths: InstancePaths) -> Any:
    from pywats_client.config.document import ConfigDocument

    return ConfigDocument.load(paths.config, paths.key)


class AddCommand(Protocol):
    """Adds one command (or, with no handler, a group of actions) to the parser."""

    def __call__(self, name: str, handler: Callable[[argparse.Namespace], int] | None,
                 help: str | None, aliases: Sequence[str] = ()) -> argparse.ArgumentParser: ...

"""`pywats-client systemd-unit`: print the systemd unit files that ship inside the package.

The units are package data (pywats_client/data/systemd/), so a station installed with pip has
them; printed with ExecStart naming this installation's pywats-client, they can be written
straight to /etc/systemd/system/. Imports nothing heavy: `--help` must stay quick.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pywats_client.cli.common import OK, AddCommand

if TYPE_CHECKING:
    import argparse

SERVICE = "pywats-client@.service"
ONCE = "pywats-client-once@.service"
TIMER = "pywats-client-once@.timer"
UNITS = (SERVICE, ONCE, TIMER)
# The ExecStart path written in the templates; replaced by this installation's own.
TEMPLATE_EXECUTABLE = "/opt/pywats/bin/pywats-client"


def add_commands(command: AddCommand) -> None:
    p = command("systemd-unit", cmd_systemd_unit,
                "print a systemd unit: the service (default), the one-shot run (--once) or its "
                "timer (--timer), ExecStart naming this installation's pywats-client")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--once", action="store_const", dest="unit", const=ONCE,
                       help=f"print {ONCE}, the cron-style run the timer starts")
    which.add_argument("--timer", action="store_const", dest="unit", const=TIMER,
                       help=f"print {TIMER}, which starts it every 5 minutes")
    p.add_argument("--exec", dest="executable", metavar="PATH",
                   help="the pywats-client that ExecStart runs (default: the one beside this "
                   f"Python, else {TEMPLATE_EXECUTABLE})")
    p.set_defaults(unit=SERVICE)


def unit_text(name: str) -> str:
    """The unit file `name` as shipped in the package."""
    from importlib import resources

    if name not in UNITS:
        raise ValueError(f"no unit named {name!r}; the package ships {', '.join(UNITS)}")
    return (resources.files("pywats_client") / "data" / "systemd" / name).read_text(
        encoding="utf-8")


def this_executable() -> str | None:
    """The pywats-client script of the environment this Python runs in, if there is one."""
    script = Path(sys.prefix) / "bin" / "pywats-client"
    return str(script) if os.access(script, os.X_OK) and script.is_file() else None


def render(name: str, executable: str | None = None) -> str:
    """The unit `name`, its ExecStart running `executable` (default: `this_executable()`)."""
    text = unit_text(name)
    chosen = executable or this_executable()
    return text.replace(TEMPLATE_EXECUTABLE, chosen) if chosen else text


def cmd_systemd_unit(args: argparse.Namespace) -> int:
    sys.stdout.write(render(args.unit, args.executable))
    return OK

"""What the scripts that drive a real service share: the pywats-client command of this Python,
running it on an instance, reading the service's status and waiting for what it brings about."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))  # last: an installed pywats_client still comes first

from tests.station import service_status, wait_until  # noqa: E402

__all__ = ["REPO", "cli", "run", "service_status", "wait_for"]


def cli() -> list[str]:
    """The pywats-client command of this Python: its script, else `python -m pywats_client`."""
    script = Path(sys.executable).parent / "pywats-client"
    return [str(script)] if script.exists() else [sys.executable, "-m", "pywats_client"]


def run(data_dir: Path, *args: str, ok: Collection[int] = (0,)) -> str:
    """`pywats-client --data-dir data_dir args...`: what it printed. Any exit code not in `ok`
    ends the script with its output."""
    result = subprocess.run([*cli(), "--data-dir", str(data_dir), *args],
                            capture_output=True, text=True, check=False)
    if result.returncode not in ok:
        sys.exit(f"pywats-client {' '.join(args)} failed ({result.returncode}):\n"
                 f"{result.stdout}{result.stderr}")
    return result.stdout


def wait_for(what: str, predicate: Callable[[], Any], timeout: float = 60.0, *,
             required: bool = True) -> Any:
    """What `predicate` returns once it is truthy, looked at every 0.1 s (another process does
    the work). After `timeout` the script ends, or, when not `required`, goes on (None)."""
    try:
        return wait_until(predicate, timeout, what, tick=0.1)
    except AssertionError as exc:
        if required:
            sys.exit(str(exc))
        return None

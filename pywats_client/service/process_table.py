"""The server's process (operation type) list, cached in state/processes.json: files often name
their process where WATS wants its code, and conversions, which never touch the network, look
names up here, also while the server is down.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from pywats_client.fsutil import atomic_write

log = logging.getLogger(__name__)

CACHE_NAME = "processes.json"
REFRESH_SECONDS = 24 * 3600.0


def load(state_dir: Path) -> dict[str, int]:
    """The cached name -> code table ({} when there is none or it is unreadable)."""
    try:
        data = json.loads((state_dir / CACHE_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, int)}


def save(state_dir: Path, table: dict[str, int]) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(state_dir / CACHE_NAME, json.dumps(table, indent=1, sort_keys=True).encode(),
                 mode=0o644)
    log.info("cached %d process names from the server", len(table))

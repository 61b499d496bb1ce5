"""The PYWATS_* environment variables that override config.json."""

from __future__ import annotations

import os
from typing import Any

from pywats_client.config.document import ENV_OVERRIDES, SCHEMA
from pywats_client.config.secrets import mask


def show_environment(display: dict[str, Any]) -> dict[str, str]:
    """Put the PYWATS_* overrides into `display` (secrets masked); returns key -> variable.

    The service uses these values, not the file's: showing the file's server_url while
    $PYWATS_SERVER_URL points elsewhere would send an operator to the wrong server.
    """
    secret_keys = {option.key for option in SCHEMA if option.secret}
    applied: dict[str, str] = {}
    for var, key in ENV_OVERRIDES.items():
        text = os.environ.get(var, "").strip()
        if not text:
            continue  # an empty variable counts as unset, as in load_settings()
        value: Any = text
        if key in secret_keys:
            value = mask(text)
        elif key == "queue.watch_folders":
            value = [part for part in text.split(":") if part.strip()]
        elif key == "logging.level":
            value = text.upper()
        *parents, leaf = key.split(".")
        node: Any = display
        for part in parents:
            node = node.setdefault(part, {}) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node[leaf] = value
            applied[key] = var
    return applied

"""The PYWATS_* environment variables that override config.json, and their display.

Owns which variable overrides which key (`ENV_OVERRIDES`) and `show_environment`, which puts
the overrides into a display of the config.
"""

from __future__ import annotations

import os
from typing import Any

from pywats_client.config.schema import SCHEMA
from pywats_client.config.secrets import mask

# Environment variable -> the config key it overrides. PYWATS_WATCH_FOLDERS replaces the whole
# list of watch folders (colon-separated paths). An empty variable counts as unset.
ENV_OVERRIDES = {
    "PYWATS_SERVER_URL": "server_url",
    "PYWATS_API_TOKEN": "api_token",
    "PYWATS_STATION_NAME": "station_name",
    "PYWATS_LOG_LEVEL": "logging.level",
    "PYWATS_WATCH_FOLDERS": "queue.watch_folders",
}


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

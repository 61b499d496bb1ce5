"""The older library spelling of config.json (the package README's), in one place.

Owns the older keys (`instance_name`, `service_address`, `watch_paths`, ...): how each maps
onto today's, and which values cannot be honoured.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from pywats_client.config.schema import resolve_path
from pywats_client.errors import ConfigError

# Keys of the older library config (package README): read and mapped, kept as written.
LEGACY_KEYS = ("instance_name", "service_address", "converter_path", "queue_path",
               "watch_paths", "auto_submit", "retry_failed")

def mapped(path: Path, raw: dict[str, Any]) -> dict[str, Any]:
    """`raw` in the service's shape: the older keys (LEGACY_KEYS) taken out and mapped onto
    today's; `path` is the config.json. Raises `ConfigError` for an older value this client
    cannot honour, naming the key and the fix."""
    data = copy.deepcopy(raw)
    legacy = {key: data.pop(key) for key in LEGACY_KEYS if key in data}
    if not legacy:
        return data
    problems: list[str] = []
    where = str(path)
    name = legacy.get("instance_name")
    if name is not None and not isinstance(name, str):
        problems.append(f"{where}: instance_name must be text, got {name!r}")
    address = legacy.get("service_address")
    if address is not None:
        if "server_url" in data and data["server_url"] != address:
            problems.append(f"{where}: server_url and service_address differ. Fix: keep "
                            "one of them (server_url is the current name)")
        data.setdefault("server_url", address)
    paths = legacy.get("watch_paths")
    if paths is not None:
        if not (isinstance(paths, list) and all(isinstance(p, str) for p in paths)):
            problems.append(f"{where}: watch_paths must be a list of folder paths, got "
                            f"{paths!r}")
        elif isinstance(data.setdefault("queue", {}), dict):
            folders = data["queue"].setdefault("watch_folders", [])
            if isinstance(folders, list):
                folders.extend(p for p in paths if p not in folders)
    for key, folder in (("queue_path", path.parent / "queue"),
                        ("converter_path", path.parent / "converters")):
        value = legacy.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or resolve_path(value, path.parent) != folder:
            problems.append(
                f"{where}: {key} is {value!r}, but this client keeps it in {folder} (beside "
                f"config.json). Fix: remove {key}, or move config.json so that its folder "
                "holds the queue and converters")
    for key in ("auto_submit", "retry_failed"):
        if key in legacy and not isinstance(legacy[key], bool):
            problems.append(f"{where}: {key} must be true or false, got {legacy[key]!r}")
    if legacy.get("auto_submit") is False:
        problems.append(f"{where}: auto_submit is false, but this client uploads every "
                        "report it queues. Fix: remove auto_submit (to hold reports back, "
                        "stop the service)")
    if problems:
        raise ConfigError("\n".join(problems))
    return data

"""The older spellings of config.json (the package README's and the architecture page's).

Owns the older keys (`instance_name`, `service_address`, `watch_paths`, `max_retry_attempts`,
...): how each maps onto today's, which values cannot be honoured, and how an `instance_name`
names a folder.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pywats_client.config.schema import BY_KEY, Invalid, check, resolve_path, shown
from pywats_client.errors import ConfigError
from pywats_client.paths import validate_instance_name

# Keys of the older library config (package README): read and mapped, kept as written.
LEGACY_KEYS = ("instance_name", "service_address", "converter_path", "queue_path",
               "watch_paths", "auto_submit", "retry_failed", "max_retry_attempts",
               "retry_interval_seconds")
# Older top-level keys that are today's keys of the queue section under another name (the
# architecture page's retry settings).
RENAMED_QUEUE_KEYS = {"max_retry_attempts": "queue.retry_attempts",
                      "retry_interval_seconds": "queue.retry_delay"}

_NOT_A_NAME = re.compile(r"[^A-Za-z0-9._-]+")


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
    for key, new in RENAMED_QUEUE_KEYS.items():
        if key in legacy:
            problems.extend(_rename_into_queue(data, where, key, new, legacy[key], path.parent))
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


def _rename_into_queue(data: dict[str, Any], where: str, key: str, new: str, value: Any,
                       base: Path) -> list[str]:
    """Put the older `key`'s `value` into the queue section as `new`; the problems, if any."""
    try:
        check(BY_KEY[new], value, base)
    except Invalid as exc:
        return [f"{where}: {key} (the older name of {new}) must be {exc.what}, got "
                f"{shown(value)}. Fix: 'pywats-client config set {new} VALUE', then remove "
                f"{key}"]
    queue = data.setdefault("queue", {})
    if not isinstance(queue, dict):
        return []  # the queue section itself is wrong: the validation says so
    leaf = new.split(".", 1)[1]
    if leaf in queue and queue[leaf] != value:
        return [f"{where}: {key} and {new} differ ({shown(value)} and {shown(queue[leaf])}). "
                f"Fix: keep one of them ({new} is the current name)"]
    queue.setdefault(leaf, value)
    return []


def server_url(server_url: str | None, service_address: str | None) -> str | None:
    """The server address given under either name (None: neither); both must agree."""
    if server_url is not None and service_address is not None and server_url != service_address:
        raise ConfigError("server_url and service_address are two names for the WATS server "
                          "address; give one of them")
    return server_url if server_url is not None else service_address


def written_server_url(current: str, raw: Mapping[str, Any]) -> str:
    """The server address of a document whose server_url is `current`: that, or when it is
    empty, the `service_address` written in the older spelling."""
    if current:
        return current
    address = raw.get("service_address")
    return address if isinstance(address, str) else ""


def written_instance_name(raw: Mapping[str, Any]) -> str | None:
    """The `instance_name` a document names, if it names one as text."""
    name = raw.get("instance_name")
    return name if isinstance(name, str) and name else None


def instance_id(name: str) -> str:
    """The instance folder name for `name`: the name itself when it is a valid instance name,
    else the name with every run of other characters turned into "-" ("Production Station 1"
    -> "Production-Station-1")."""
    if not isinstance(name, str) or not name.strip():
        raise ConfigError("instance_name must be a non-empty text, such as 'station1'")
    slug = _NOT_A_NAME.sub("-", name.strip()).strip("-._")[:64]
    return validate_instance_name(slug or name)

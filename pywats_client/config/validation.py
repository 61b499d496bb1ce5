"""Checking a config document, with the environment overrides, into the typed `Settings`.

Owns the whole-document rules: unknown keys (with the nearest known one), the watch-folder
entries of both shapes, every problem collected before one `ConfigError` names them all.
"""

from __future__ import annotations

import difflib
import logging
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pywats_client.config import legacy
from pywats_client.config.environment import read_overrides
from pywats_client.config.schema import (
    BY_KEY,
    CONVERTER_ENTRY_KEYS,
    HIDDEN,
    SCHEMA,
    SECTIONS,
    WATCH_FOLDER_KEYS,
    Invalid,
    check,
    fix_for,
    lookup,
    plain,
    resolve_path,
    shown,
)
from pywats_client.config.secrets import SecretBox
from pywats_client.config.settings import (
    POST_ACTIONS,
    ApiSettings,
    ConverterSettings,
    LoggingSettings,
    QueueSettings,
    Settings,
    WatchFolder,
)
from pywats_client.errors import ConfigError

log = logging.getLogger(__name__)

# An unknown key this close to a known one is suggested as the probable intended key.
_TYPO_CUTOFF = 0.8


def build_settings(path: Path, data: dict[str, Any], box: SecretBox,
                   env: Mapping[str, str] | None = None) -> Settings:
    """`Settings` from the document `data` of config.json at `path`, plus the environment
    overrides in `env` (default os.environ); the token is decrypted with `box`.

    Raises `ConfigError` listing every problem (one per line, each naming the key, the file
    and the fix), or `SecretError` if the token cannot be decrypted.
    """
    build = Validation(path, legacy.mapped(path, data))
    values = build.values()
    folders = build.watch_folders(values.get("queue.watch_folders"))
    overridden: set[str] = set()
    for override in read_overrides(path.parent, env):
        overridden.add(override.key)
        if override.problem:
            build.problems.append(
                f"{override.source} (overrides {override.key} of {path}) "
                f"{override.problem}. Fix: correct or unset {override.var}")
        elif override.key == "queue.watch_folders":
            folders = [WatchFolder(path=folder) for folder in override.value]
        else:
            values[override.key] = override.value
    low, high = values.get("queue.retry_delay"), values.get("queue.retry_max_delay")
    if low is not None and high is not None and high < low:
        build.problem("queue.retry_max_delay", f"at least queue.retry_delay ({plain(low)})",
                      plain(high),
                      "set it with 'pywats-client config set queue.retry_max_delay 3600'")
    build.raise_if_problems()
    token = values["api_token"]
    if "api_token" not in overridden:
        if token and not SecretBox.is_encrypted(token):
            log.warning("%s: api_token is stored in plain text. Fix: run 'pywats-client "
                        "config set api_token <token>' to store it encrypted", path)
        token = box.decrypt(token)
    defaults = dict(values["converters.defaults"])
    for option in SCHEMA:
        if option.key.startswith("converters.defaults.") and option.key in values:
            defaults[option.key.rsplit(".", 1)[1]] = values[option.key]

    def section(name: str) -> dict[str, Any]:
        return {k.split(".")[1]: v for k, v in values.items()
                if k.startswith(name + ".") and k.count(".") == 1}

    queue = section("queue")
    queue["watch_folders"] = tuple(folders)
    converters = section("converters")
    converters["defaults"] = defaults
    if isinstance(data.get("converters"), list):
        converters = {}  # the list shape binds a converter to each folder instead
    top = {k: v for k, v in values.items() if "." not in k}
    top["api_token"] = token
    top["station_name"] = top["station_name"] or socket.gethostname()
    return Settings(**top, queue=QueueSettings(**queue),
                    converters=ConverterSettings(**converters),
                    logging=LoggingSettings(**section("logging")),
                    api=ApiSettings(**section("api")), source=path)


class Validation:
    """One validation pass over a document; collects every problem before raising."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.base = path.parent
        self.data = data
        self.problems: list[str] = []

    def problem(self, key: str, what: str, got: Any, fix: str) -> None:
        self.problems.append(f"{self.path}: {key} must be {what}, got {shown(got)}. Fix: {fix}")

    def unknown_keys(self, obj: dict[str, Any], prefix: str, known: list[str]) -> None:
        for name in obj:
            if name in known:
                continue
            close = difflib.get_close_matches(name, known, n=1, cutoff=_TYPO_CUTOFF)
            if close:
                self.problems.append(
                    f"{self.path}: unknown key '{prefix}{name}' (did you mean "
                    f"'{prefix}{close[0]}'?). Fix: rename it to '{close[0]}' or remove it")
            else:
                self.problems.append(
                    f"{self.path}: unknown key '{prefix}{name}'. Fix: remove it, or check the "
                    "spelling against 'pywats-client config show'")

    def values(self) -> dict[str, Any]:
        """Every schema option, checked, keyed by dotted key (missing ones get defaults)."""
        for section in SECTIONS:
            found, value = lookup(self.data, section)
            allowed = (dict, list) if section == "converters" else (dict,)
            if found and not isinstance(value, allowed):
                self.problem(section, "an object {...}", value,
                             f"edit {self.path} so that {section} is an object {{...}}")
        self.unknown_keys(self.data, "", [k for k in BY_KEY if "." not in k] + list(SECTIONS))
        for section in SECTIONS:
            found, value = lookup(self.data, section)
            if found and isinstance(value, dict):
                known = [k.split(".")[1] for k in BY_KEY if k.startswith(section + ".")]
                self.unknown_keys(value, section + ".", known)
        out: dict[str, Any] = {}
        for option in SCHEMA:
            found, value = lookup(self.data, option.key)
            if not found:
                if not option.optional:
                    out[option.key] = check(option, plain(option.default), self.base)
                continue
            try:
                out[option.key] = check(option, value, self.base)
            except Invalid as exc:
                self.problem(option.key, exc.what,
                             HIDDEN if option.secret or exc.hide else value,
                             fix_for(option))
        return out

    def watch_folders(self, entries: Any) -> list[WatchFolder]:
        folders: list[tuple[str, WatchFolder]] = []
        if isinstance(entries, list):
            for i, entry in enumerate(entries):
                folder = self.watch_folder(entry, f"queue.watch_folders[{i}]")
                if folder is not None:
                    folders.append((f"queue.watch_folders[{i}]", folder))
        converters = self.data.get("converters")
        if isinstance(converters, list):
            for i, entry in enumerate(converters):
                folder = self.converter_entry(entry, f"converters[{i}]")
                if folder is not None:
                    folders.append((f"converters[{i}]", folder))
        seen: dict[Path, str] = {}
        for where, folder in folders:
            if folder.path in seen:
                self.problems.append(
                    f"{self.path}: {where} repeats the folder {folder.path}, already watched by "
                    f"{seen[folder.path]}. Fix: remove one of them (one folder is watched once; "
                    "list several file_patterns or let auto-detection pick the converter)")
            seen.setdefault(folder.path, where)
        return [folder for _, folder in folders]

    def watch_folder(self, entry: Any, where: str) -> WatchFolder | None:
        if isinstance(entry, str):
            entry = {"path": entry}
        if not isinstance(entry, dict):
            self.problem(where, 'a folder path or an object {"path": ...}', entry,
                         f"edit {self.path}")
            return None
        self.unknown_keys(entry, where + ".", list(WATCH_FOLDER_KEYS))
        return self._folder(entry, where, entry.get("path"), "path", entry.get("converter"),
                            "converter")

    def converter_entry(self, entry: Any, where: str) -> WatchFolder | None:
        if not isinstance(entry, dict):
            self.problem(where, 'an object {"module_path": ..., "watch_folder": ...}', entry,
                         f"edit {self.path}")
            return None
        self.unknown_keys(entry, where + ".", list(CONVERTER_ENTRY_KEYS))
        enabled = entry.get("enabled", True)
        if not isinstance(enabled, bool):
            self.problem(f"{where}.enabled", "true or false", enabled, f"edit {self.path}")
            return None
        if not enabled:
            return None  # a disabled entry may be half written; it is not checked further
        name_key = "module_path" if entry.get("module_path") is not None else "name"
        return self._folder(entry, where, entry.get("watch_folder"), "watch_folder",
                            entry.get(name_key), name_key, converter_required=True)

    def _folder(self, entry: dict[str, Any], where: str, path: Any, path_key: str,
                converter: Any, converter_key: str, *, converter_required: bool = False,
                ) -> WatchFolder | None:
        before = len(self.problems)
        fix = f"edit {self.path}"
        if not isinstance(path, str) or not path.strip():
            self.problem(f"{where}.{path_key}", "the path of a folder", path, fix)
            path = "."
        folder = resolve_path(path, self.base)
        if converter is None and converter_required:
            self.problem(f"{where}.module_path", "the converter to use (module_path or name)",
                         None, fix + ' and add "module_path": "package.module.Class"')
        elif converter is not None and (not isinstance(converter, str) or not converter.strip()):
            self.problem(f"{where}.{converter_key}", "a converter name or null", converter, fix)
        action = entry.get("post_action", "move")
        if not isinstance(action, str) or action.lower() not in POST_ACTIONS:
            self.problem(f"{where}.post_action", "one of " + ", ".join(POST_ACTIONS), action,
                         fix)
            action = "move"
        extra: dict[str, Path | None] = {}
        for key in ("done_folder", "error_folder"):
            value = entry.get(key)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                self.problem(f"{where}.{key}", "the path of a folder, or null", value, fix)
                value = None
            extra[key] = resolve_path(value, folder) if value is not None else None
            if extra[key] == folder:
                self.problem(f"{where}.{key}", "a folder other than the watched folder itself",
                             value, fix + " (the default is a subfolder such as 'done')")
        patterns = entry.get("file_patterns", ["*"])
        if not (isinstance(patterns, list) and patterns
                and all(isinstance(p, str) and p.strip() for p in patterns)):
            self.problem(f"{where}.file_patterns", 'a non-empty list of patterns such as '
                         '["*.xml"]', patterns, fix)
            patterns = ["*"]
        polling = entry.get("polling", False)
        if not isinstance(polling, bool):
            self.problem(f"{where}.polling", "true or false", polling, fix)
        follow = entry.get("follow_symlinks", False)
        if not isinstance(follow, bool):
            self.problem(f"{where}.follow_symlinks", "true or false", follow, fix)
        arguments = entry.get("arguments", {})
        if not isinstance(arguments, dict):
            self.problem(f"{where}.arguments", "an object {...}", arguments, fix)
        if len(self.problems) > before:
            return None
        return WatchFolder(
            path=folder, converter=converter.strip() if converter else None,
            post_action=action.lower(), done_folder=extra["done_folder"],
            error_folder=extra["error_folder"], file_patterns=tuple(patterns),
            polling=polling, follow_symlinks=follow, arguments=dict(arguments))

    def raise_if_problems(self) -> None:
        if self.problems:
            raise ConfigError("\n".join(self.problems))

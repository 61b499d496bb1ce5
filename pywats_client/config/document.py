"""config.json and the environment turned into validated `Settings`, and config.json edited.

Owns the one schema table (`SCHEMA`: key, type, default, check, help, secret?) that drives
validation, `config get/set` typing, `config show` and the README reference; the document
model that keeps every key the user wrote, in order, and saves atomically with secrets
encrypted; and the environment overrides. Imports `errors`, `fsutil`, `paths`, `secrets` and
`settings`; nothing here starts threads or talks to the network.
"""

from __future__ import annotations

import base64
import copy
import difflib
import json
import logging
import math
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pywats_client.config.secrets import SecretBox, mask
from pywats_client.config.settings import (
    POST_ACTIONS,
    ConverterSettings,
    LoggingSettings,
    QueueSettings,
    Settings,
    WatchFolder,
)
from pywats_client.errors import ConfigError, SecretError
from pywats_client.fsutil import atomic_write
from pywats_client.paths import InstancePaths

log = logging.getLogger(__name__)

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

# Environment variable -> the config key it overrides. PYWATS_WATCH_FOLDERS replaces the whole
# list of watch folders (colon-separated paths). An empty variable counts as unset.
ENV_OVERRIDES = {
    "PYWATS_SERVER_URL": "server_url",
    "PYWATS_API_TOKEN": "api_token",
    "PYWATS_STATION_NAME": "station_name",
    "PYWATS_LOG_LEVEL": "logging.level",
    "PYWATS_WATCH_FOLDERS": "queue.watch_folders",
}

_URL = "an http:// or https:// URL with a host name, such as https://wats.example.com"
_HIDDEN = object()  # stands for a value that must not be echoed (a secret)
# An unknown key this close to a known one is suggested as the probable intended key.
_TYPO_CUTOFF = 0.8


@dataclass(frozen=True)
class Option:
    """One key of config.json: how it is typed, checked, defaulted and explained."""

    key: str  # dotted path, e.g. "queue.retry_delay"
    kind: str  # string, token, url, number, integer, boolean, level, names, file, object, folders
    default: Any
    help: str
    minimum: float | None = None
    unit: str = ""  # for numbers: "seconds", "days", "megabytes"
    secret: bool = False  # encrypted at rest, masked in display, never echoed
    example: str = ""  # a valid value for the "Fix:" hint
    default_text: str = ""  # how the default reads in the reference, when not its JSON form
    optional: bool = False  # no default value: not filled in by `to_display()`


_Q, _C, _L, _S = QueueSettings(), ConverterSettings(), LoggingSettings(), Settings()

SCHEMA: tuple[Option, ...] = (
    Option("server_url", "url", _S.server_url, "WATS server address; may carry a path prefix",
           example="https://wats.example.com"),
    Option("api_token", "token", _S.api_token,
           "token issued by WATS (base64 of user:secret); stored encrypted", secret=True,
           example="<token>"),
    Option("station_name", "string", _S.station_name, "station identifier sent with reports",
           example="ICT-01", default_text="the host name"),
    Option("station_location", "string", _S.station_location, "where the station stands",
           example='"Line A"'),
    Option("station_purpose", "string", _S.station_purpose, "what the station is used for",
           example="Production"),
    Option("ca_bundle", "file", _S.ca_bundle,
           "PEM file of extra CA certificates (relative: from the config folder); TLS is "
           "always verified",
           example="/etc/ssl/certs/wats-ca.pem"),
    Option("connect_timeout", "number", _S.connect_timeout, "seconds to wait for a connection",
           minimum=1, unit="seconds"),
    Option("read_timeout", "number", _S.read_timeout, "seconds to wait for the server's answer",
           minimum=1, unit="seconds"),
    Option("queue.watch_folders", "folders", [],
           "folders the equipment writes into: paths, or objects (see below)"),
    Option("queue.upload_interval", "number", _Q.upload_interval,
           "seconds between looks at the queue when nothing wakes the uploader", minimum=0.1,
           unit="seconds"),
    Option("queue.retry_attempts", "integer", _Q.retry_attempts,
           "if > 0, also give up after this many server errors (0: only max_age counts)",
           minimum=0),
    Option("queue.retry_delay", "number", _Q.retry_delay,
           "first retry delay; doubled per attempt, with jitter", minimum=1, unit="seconds"),
    Option("queue.retry_max_delay", "number", _Q.retry_max_delay,
           "longest delay between retries", minimum=1, unit="seconds"),
    Option("queue.max_age", "number", _Q.max_age,
           "a report not uploaded after this long goes to failed/", minimum=60, unit="seconds"),
    Option("queue.settle_time", "number", _Q.settle_time,
           "a file is taken once unchanged for this long", minimum=0, unit="seconds"),
    Option("queue.rescan_interval", "number", _Q.rescan_interval,
           "full rescan of every watch folder (file events are only hints)", minimum=0.1,
           unit="seconds"),
    Option("queue.probe_interval", "number", _Q.probe_interval,
           "while offline or paused, check the server this often", minimum=0.1, unit="seconds"),
    Option("queue.completed_retention_days", "number", _Q.completed_retention_days,
           "uploaded reports are kept this long in completed/", minimum=0, unit="days"),
    Option("queue.failed_retention_days", "number", _Q.failed_retention_days,
           "failed reports are kept this long in failed/", minimum=0, unit="days"),
    Option("queue.allow_network_filesystem", "boolean", _Q.allow_network_filesystem,
           "allow the queue on NFS/SMB/FAT, giving up the survives-a-power-cut guarantee"),
    Option("converters.enabled", "names", list(_C.enabled),
           "converters that may be chosen (empty: all built-in and plugin converters)",
           example="WATSStandardJsonConverter,WATSStandardXMLConverter"),
    Option("converters.auto_detect", "boolean", _C.auto_detect,
           "pick the converter by file content when a folder names none"),
    Option("converters.max_file_mb", "number", _C.max_file_mb,
           "larger source files are refused (moved to the error folder) unread",
           minimum=0.001, unit="megabytes"),
    Option("converters.defaults", "object", dict(_C.defaults),
           "values converters use when a file lacks them (more keys allowed)",
           example="'{\"part_number\": \"PN-100\"}'"),
    Option("converters.defaults.part_number", "string", None, "default part number",
           example="PN-100", optional=True, default_text="unset"),
    Option("converters.defaults.revision", "string", None, "default part revision",
           example="A", optional=True, default_text="unset"),
    Option("converters.defaults.process_code", "integer", None,
           "default WATS process (operation type) code", minimum=0, optional=True,
           default_text="unset"),
    Option("converters.defaults.operator", "string", None, "default operator name",
           example="line-operator", optional=True, default_text="unset"),
    Option("logging.level", "level", _L.level, "DEBUG, INFO, WARNING, ERROR or CRITICAL",
           example="INFO"),
    Option("logging.max_size_mb", "number", _L.max_size_mb, "size at which the log rotates",
           minimum=1, unit="megabytes"),
    Option("logging.backup_count", "integer", _L.backup_count, "rotated log files kept",
           minimum=0),
)

_BY_KEY = {option.key: option for option in SCHEMA}
_SECTIONS = ("queue", "converters", "logging")
_OPEN_OBJECTS = ("converters.defaults",)  # objects whose other keys are free-form

# Keys of one object in queue.watch_folders, with their help text.
WATCH_FOLDER_KEYS = {
    "path": ("path", "(required)", "the folder; relative paths start at the config folder"),
    "converter": ("name or null", "null", "converter for every file here (null: auto-detect)"),
    "post_action": ("move|archive|delete|none", "move", "what happens to a source file "
                    "once its report is safely queued"),
    "done_folder": ("path or null", "<path>/done", "where move/archive put files; relative "
                    "to the watch folder"),
    "error_folder": ("path or null", "<path>/error", "where files that cannot be converted "
                     "go, with a note saying why"),
    "file_patterns": ("list of globs", '["*"]', "which file names are taken"),
    "polling": ("true/false", "false", "poll instead of file events (SMB/NFS shares)"),
    "arguments": ("object", "{}", "passed to the converter"),
}
# Keys of one entry of `converters` given as a list (the older per-converter shape).
CONVERTER_ENTRY_KEYS = ("name", "module_path", "watch_folder", "done_folder", "error_folder",
                        "file_patterns", "post_action", "enabled", "arguments", "polling")


def reference_rows() -> list[tuple[str, str, str, str]]:
    """(key, type, default, meaning) for every key, in file order: the README reference."""
    rows = [(o.key, _type_label(o), o.default_text or json.dumps(_plain(o.default)), o.help)
            for o in SCHEMA]
    at = next(i for i, row in enumerate(rows) if row[0] == "queue.watch_folders") + 1
    rows[at:at] = [(f"queue.watch_folders[].{name}", kind, default, meaning)
                   for name, (kind, default, meaning) in WATCH_FOLDER_KEYS.items()]
    return rows


# -- checking single values ------------------------------------------------------------------


class _Invalid(Exception):
    """A value failed its check; `what` completes the sentence "<key> must be ..."."""

    def __init__(self, what: str, *, hide: bool = False) -> None:
        super().__init__(what)
        self.what = what
        self.hide = hide  # the value may carry a secret: do not echo it


def _type_label(option: Option) -> str:
    if option.kind == "number":
        return f"{option.unit} ≥ {_plain(option.minimum)}"
    if option.kind == "integer":
        return f"whole number ≥ {_plain(option.minimum)}"
    return {"string": "text", "token": "text (secret)", "url": "http(s) URL",
            "boolean": "true/false", "level": "log level", "names": "list of names",
            "file": "path or null", "object": "object", "folders": "list"}[option.kind]


def _describe(option: Option) -> str:
    """What a valid value is, for "<key> must be ...". """
    if option.kind == "number":
        return f"a number of {option.unit} ≥ {_plain(option.minimum)}"
    if option.kind == "integer":
        return f"a whole number ≥ {_plain(option.minimum)}"
    return {"string": "text in quotes", "token": "the token text, without spaces or line breaks",
            "url": _URL, "boolean": "true or false", "level": "one of " + ", ".join(LOG_LEVELS),
            "names": 'a list of converter names, such as ["WATSStandardJsonConverter"]',
            "file": "the path of an existing PEM file, or null",
            "object": 'an object such as {"part_number": "PN-100"}',
            "folders": "a list of folder paths or folder objects"}[option.kind]


def _check(option: Option, value: Any, base: Path) -> Any:
    """`value` as the settings want it (floats, tuples, normalised text), or raise _Invalid."""
    kind = option.kind
    if kind in ("number", "integer"):
        return _check_number(option, value)
    if kind == "url" and isinstance(value, str):
        return _check_url(value)
    if kind == "file" and isinstance(value, str) and value:
        path = _resolve(value, base)
        if not path.is_file():
            raise _Invalid(f"the path of an existing PEM file, or null; {path} does not exist "
                           "or is not a file")
        return str(path)
    if _SHAPES[kind](value):
        return _NORMALISE.get(kind, _same)(value)
    raise _Invalid(_describe(option))


def _same(value: Any) -> Any:
    return value


# kind -> does the JSON value have the right shape? (numbers, URLs and files are checked above)
_SHAPES: dict[str, Callable[[Any], bool]] = {
    "boolean": lambda v: isinstance(v, bool),
    "string": lambda v: isinstance(v, str),
    # no blanks or control characters: they would break the Authorization header
    "token": lambda v: isinstance(v, str) and not any(c.isspace() or ord(c) < 32 for c in v),
    "url": lambda v: False,
    "level": lambda v: isinstance(v, str) and v.upper() in LOG_LEVELS,
    "names": lambda v: isinstance(v, list) and all(isinstance(n, str) and n.strip() for n in v),
    "file": lambda v: v is None,
    "object": lambda v: isinstance(v, dict),
    "folders": lambda v: isinstance(v, list),  # entries are checked by _Build.watch_folders()
}
_NORMALISE: dict[str, Callable[[Any], Any]] = {
    "level": str.upper,
    "names": lambda v: tuple(n.strip() for n in v),
    "object": dict,
}


def _check_number(option: Option, value: Any) -> float | int:
    integer = option.kind == "integer"
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok and isinstance(value, float):
        ok = math.isfinite(value) and (not integer or value.is_integer())
    if not ok or (option.minimum is not None and value < option.minimum):
        raise _Invalid(_describe(option))
    return int(value) if integer else float(value)


def _check_url(value: str) -> str:
    if not value:
        return ""  # not configured yet: the service refuses to start, config commands work
    if "@" in value:
        raise _Invalid(_URL + ", without a user name or password in it (credentials belong in "
                       "api_token)", hide=True)
    hint = f" (did you mean 'https://{value}'?)" if "://" not in value else ""
    if any(c.isspace() for c in value):
        raise _Invalid(_URL + ", without spaces")
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise _Invalid(_URL + hint)
    if parts.query or parts.fragment:
        raise _Invalid(_URL + ", without ?query or #fragment")
    try:
        parts.port  # noqa: B018 - only to validate it
    except ValueError:
        raise _Invalid(_URL + ", with a port number from 1 to 65535") from None
    return value.rstrip("/")


def _parse_text(option: Option, text: str) -> Any:
    """The JSON value that `config set KEY TEXT` stores, typed by the schema."""
    kind, word = option.kind, text.strip().lower()
    if kind in ("number", "integer"):
        try:
            return int(word)
        except ValueError:
            try:
                number = float(word)
            except ValueError:
                raise _Invalid(_describe(option)) from None
            return int(number) if number.is_integer() and kind == "integer" else number
    if kind == "boolean":
        if word in ("true", "yes", "1", "on"):
            return True
        if word in ("false", "no", "0", "off"):
            return False
        raise _Invalid("true or false (also yes/no, 1/0, on/off)")
    if kind == "level":
        return text.strip().upper()
    if kind in ("token", "url"):
        return text.strip()  # a pasted value often brings a newline along
    if kind == "file":
        return None if word in ("", "null", "none") else text.strip()
    if kind in ("names", "folders"):
        if text.strip().startswith("["):
            return _json_value(text, list, option)
        return [part.strip() for part in text.split(",") if part.strip()]
    if kind == "object":
        return _json_value(text, dict, option)
    return text


def _json_value(text: str, kind: type, option: Option) -> Any:
    try:
        value = json.loads(text)
    except ValueError:
        raise _Invalid(_describe(option) + ", written as JSON") from None
    if not isinstance(value, kind):
        raise _Invalid(_describe(option))
    return value


def _shown(value: Any) -> str:
    if value is _HIDDEN:
        return "a value that is not shown (it may hold a secret)"
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + "..."


def _plain(value: Any) -> Any:
    """A default as it reads in JSON: 10 rather than 10.0, lists rather than tuples."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def _resolve(text: str, base: Path) -> Path:
    """An absolute, normalised path; relative ones start at `base` (no symlinks resolved)."""
    return Path(os.path.normpath(base / Path(text).expanduser()))


def _fix_for(option: Option) -> str:
    if option.kind == "folders":
        return "add folders with 'pywats-client config add-watch-folder /path/to/folder'"
    example = option.example or json.dumps(_plain(option.default))
    return f"set it with 'pywats-client config set {option.key} {example}'"


# -- reading the file ------------------------------------------------------------------------


class _DuplicateKey(Exception):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _read_json(path: Path) -> dict[str, Any]:
    """The JSON object in `path`; {} if the file does not exist."""
    try:
        # utf-8-sig: editors on Windows like to start files with a byte-order mark.
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        return {}
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}). Fix: save the file as "
                          "UTF-8 in your editor") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}. Fix: run as the user owning "
                          "the instance folder, or correct the file's permissions") from None
    try:
        data = json.loads(text, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{path}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}. "
            "Fix: correct the file there (a missing comma or quote, or a trailing comma, is the "
            f"usual cause; 'python3 -m json.tool {path}' shows the spot)"
        ) from None
    except _DuplicateKey as exc:
        raise ConfigError(f"{path}: the key '{exc}' appears twice in the same object. Fix: keep "
                          "one of them") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the file must hold one JSON object {{...}}, got "
                          f"{type(data).__name__}. Fix: start from "
                          '{"server_url": "https://wats.example.com"}')
    return data


def _lookup(data: Mapping[str, Any], key: str) -> tuple[bool, Any]:
    node: Any = data
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


# -- validation into Settings ----------------------------------------------------------------


class _Build:
    """One validation pass over a document; collects every problem before raising."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.base = path.parent
        self.data = data
        self.problems: list[str] = []

    def problem(self, key: str, what: str, got: Any, fix: str) -> None:
        self.problems.append(f"{self.path}: {key} must be {what}, got {_shown(got)}. Fix: {fix}")

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
        for section in _SECTIONS:
            found, value = _lookup(self.data, section)
            allowed = (dict, list) if section == "converters" else (dict,)
            if found and not isinstance(value, allowed):
                self.problem(section, "an object {...}", value,
                             f"edit {self.path} so that {section} is an object {{...}}")
        self.unknown_keys(self.data, "", [k for k in _BY_KEY if "." not in k] + list(_SECTIONS))
        for section in _SECTIONS:
            found, value = _lookup(self.data, section)
            if found and isinstance(value, dict):
                known = [k.split(".")[1] for k in _BY_KEY if k.startswith(section + ".")]
                self.unknown_keys(value, section + ".", known)
        out: dict[str, Any] = {}
        for option in SCHEMA:
            found, value = _lookup(self.data, option.key)
            if not found:
                if not option.optional:
                    out[option.key] = _check(option, _plain(option.default), self.base)
                continue
            try:
                out[option.key] = _check(option, value, self.base)
            except _Invalid as exc:
                self.problem(option.key, exc.what,
                             _HIDDEN if option.secret or exc.hide else value,
                             _fix_for(option))
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
        folder = _resolve(path, self.base)
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
            extra[key] = _resolve(value, folder) if value is not None else None
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
        arguments = entry.get("arguments", {})
        if not isinstance(arguments, dict):
            self.problem(f"{where}.arguments", "an object {...}", arguments, fix)
        if len(self.problems) > before:
            return None
        return WatchFolder(
            path=folder, converter=converter.strip() if converter else None,
            post_action=action.lower(), done_folder=extra["done_folder"],
            error_folder=extra["error_folder"], file_patterns=tuple(patterns),
            polling=polling, arguments=dict(arguments))

    def env_overrides(self, values: dict[str, Any], env: Mapping[str, str]) -> list[Path] | None:
        """Apply the environment to `values`; returns env watch folders if they replace all."""
        folders = None
        for var, key in ENV_OVERRIDES.items():
            text = env.get(var, "")
            if not text:
                continue
            option = _BY_KEY[key]
            if option.kind == "folders":
                # dict.fromkeys: drop repeated paths, keep the order given
                folders = list(dict.fromkeys(_resolve(p, self.base) for p in text.split(":")
                                             if p.strip()))
                continue
            try:
                values[key] = _check(option, _parse_text(option, text), self.base)
            except _Invalid as exc:
                got = _shown(_HIDDEN if option.secret or exc.hide else text)
                self.problems.append(
                    f"environment variable {var} (overrides {key} of {self.path}) must be "
                    f"{exc.what}, got {got}. Fix: correct or unset {var}")
        return folders

    def raise_if_problems(self) -> None:
        if self.problems:
            raise ConfigError("\n".join(self.problems))


# -- the document ----------------------------------------------------------------------------


class ConfigDocument:
    """config.json as the user wrote it, editable, saved atomically with secrets encrypted.

    Loading never validates (a broken file must stay editable with `config set`) and never
    drops a key: keys we do not know are kept, in their place, and written back as they were.
    """

    def __init__(self, path: Path, key_path: Path, data: dict[str, Any] | None = None) -> None:
        self.path = Path(os.path.abspath(path))
        self.key_path = key_path
        self._data: dict[str, Any] = data if data is not None else {}
        self._box = SecretBox(key_path, config_path=self.path)

    @classmethod
    def load(cls, path: Path, key_path: Path) -> ConfigDocument:
        """Read `path`; a missing file gives an empty document (all defaults)."""
        absolute = Path(os.path.abspath(path))
        return cls(absolute, key_path, _read_json(absolute))

    def __repr__(self) -> str:
        return f"ConfigDocument(path={str(self.path)!r})"

    @property
    def exists(self) -> bool:
        return self.path.exists()

    # -- reading ---------------------------------------------------------------------------

    def settings(self, env: Mapping[str, str] | None = None) -> Settings:
        """Validate the document plus environment overrides and build the `Settings`.

        Raises `ConfigError` listing every problem (one per line, each naming the key, this
        file and the fix), or `SecretError` if the token cannot be decrypted.
        """
        env = os.environ if env is None else env
        build = _Build(self.path, legacy_mapped(self.path, self._data))
        values = build.values()
        folders = build.watch_folders(values.get("queue.watch_folders"))
        env_folders = build.env_overrides(values, env)
        if env_folders is not None:
            folders = [WatchFolder(path=p) for p in env_folders]
        low, high = values.get("queue.retry_delay"), values.get("queue.retry_max_delay")
        if low is not None and high is not None and high < low:
            build.problem("queue.retry_max_delay", f"at least queue.retry_delay ({_plain(low)})",
                          _plain(high),
                          "set it with 'pywats-client config set queue.retry_max_delay 3600'")
        build.raise_if_problems()
        token = values["api_token"]
        if not env.get("PYWATS_API_TOKEN"):
            if token and not SecretBox.is_encrypted(token):
                log.warning("%s: api_token is stored in plain text. Fix: run 'pywats-client "
                            "config set api_token <token>' to store it encrypted", self.path)
            token = self._box.decrypt(token)
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
        if isinstance(self._data.get("converters"), list):
            converters = {}  # the list shape binds a converter to each folder instead
        top = {k: v for k, v in values.items() if "." not in k}
        top["api_token"] = token
        top["station_name"] = top["station_name"] or socket.gethostname()
        return Settings(**top, queue=QueueSettings(**queue),
                        converters=ConverterSettings(**converters),
                        logging=LoggingSettings(**section("logging")), source=self.path)

    def get(self, dotted_key: str) -> Any:
        """The effective value of a key or section (default if unset); secrets decrypted."""
        option = _BY_KEY.get(dotted_key)
        found, value = _lookup(self._data, dotted_key)
        if option is not None:
            if not found:
                return _plain(option.default)
            if option.secret and isinstance(value, str):
                return self._box.decrypt(value, key_name=dotted_key)
            return copy.deepcopy(value)
        # A section, a free-form key or a key we do not use: read it from the effective view.
        found, value = _lookup(self.to_display(), dotted_key)
        if not found:
            raise self._unknown_key(dotted_key)
        return value

    def to_display(self) -> dict[str, Any]:
        """The full effective config (defaults filled in, extra keys kept), secrets masked."""
        out = copy.deepcopy(self._data)
        for option in SCHEMA:
            if option.optional:
                continue
            *parents, leaf = option.key.split(".")
            node: Any = out
            for part in parents:
                node = node.setdefault(part, {}) if isinstance(node, dict) else None
            if not isinstance(node, dict):
                continue  # e.g. converters given as a list: shown as written
            if leaf not in node:
                node[leaf] = _plain(option.default)
            elif option.secret:
                node[leaf] = self._masked(node[leaf], option.key)
        queue = out.get("queue")
        folders = queue.get("watch_folders") if isinstance(queue, dict) else None
        if isinstance(folders, list):
            out["queue"]["watch_folders"] = [_display_folder(entry) for entry in folders]
        return _schema_order(out)

    def _masked(self, stored: Any, key: str) -> Any:
        if not isinstance(stored, str) or not stored:
            return stored
        try:
            return mask(self._box.decrypt(stored, key_name=key))
        except SecretError:
            return "**** (cannot be decrypted: restore secret.key or set it again)"

    # -- editing ---------------------------------------------------------------------------

    def set(self, dotted_key: str, value: str) -> None:
        """Set a key from command-line text, typed and checked by the schema before it is kept.

        Numbers, booleans (true/false/yes/no/1/0), lists (JSON or comma-separated), objects
        (JSON) and null/none for nullable keys. Relative paths are relative to the config
        folder. Raises `ConfigError` for an unknown key or a bad value; nothing changes then.
        """
        option = _BY_KEY.get(dotted_key)
        parts = dotted_key.split(".")
        if option is None:
            if len(parts) == 3 and ".".join(parts[:2]) in _OPEN_OBJECTS and parts[2]:
                self._store(dotted_key, _free_value(value))
                return
            raise self._unknown_key(dotted_key)
        try:
            parsed = _parse_text(option, value)
            _check(option, parsed, self.path.parent)
        except _Invalid as exc:
            got = _shown(_HIDDEN if option.secret or exc.hide else value)
            raise ConfigError(f"{self.path}: {dotted_key} must be {exc.what}, got {got}. "
                              f"Fix: {_fix_for(option)}") from None
        if option.kind == "folders":
            probe = _Build(self.path, {"queue": {"watch_folders": parsed}})
            probe.watch_folders(parsed)
            probe.raise_if_problems()
        self._store(dotted_key, parsed)

    def add_watch_folder(self, path: str, *, converter: str | None = None,
                         post_action: str | None = None) -> None:
        """Append a watch folder (a plain path, or an object if options are given).

        A relative `path` is relative to the config folder; pass an absolute path for a folder
        named relative to the current directory. Refuses a folder that is already watched.
        """
        if not path.strip():
            raise ConfigError(f"{self.path}: a watch folder needs a path. Fix: "
                              "'pywats-client config add-watch-folder /path/to/folder'")
        if post_action is not None and post_action.lower() not in POST_ACTIONS:
            raise ConfigError(f"{self.path}: the post action of a watch folder must be one of "
                              f"{', '.join(POST_ACTIONS)}, got {post_action!r}; nothing changed")
        if converter is not None and not converter.strip():
            raise ConfigError(f"{self.path}: the converter name of a watch folder must not be "
                              "empty; leave it out to let auto-detection choose")
        entry: str | dict[str, Any] = path
        if converter is not None or post_action is not None:
            entry = {"path": path}
            if converter is not None:
                entry["converter"] = converter
            if post_action is not None:
                entry["post_action"] = post_action
        found, current = _lookup(self._data, "queue.watch_folders")
        if found and not isinstance(current, list):
            raise ConfigError(f"{self.path}: queue.watch_folders must be a list, got "
                              f"{_shown(current)}. Fix: edit the file by hand")
        listed = current if found else []
        # Problems in entries already there do not block adding another folder.
        existing = _Build(self.path, self._data).watch_folders(listed)
        probe = _Build(self.path, self._data)
        new = probe.watch_folder(entry, f"queue.watch_folders[{len(listed)}]")
        probe.raise_if_problems()
        assert new is not None  # no problems means the folder was built
        for folder in existing:
            if folder.path == new.path:
                raise ConfigError(f"{self.path}: {new.path} is already a watch folder; nothing "
                                  "changed. Fix: 'pywats-client config get "
                                  "queue.watch_folders' lists them")
        self._store("queue.watch_folders", [*listed, entry])

    def _store(self, dotted_key: str, value: Any) -> None:
        *parents, leaf = dotted_key.split(".")
        node = self._data
        for depth, part in enumerate(parents):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                where = ".".join(parents[: depth + 1])
                raise ConfigError(
                    f"{self.path}: cannot set {dotted_key}: {where} is a "
                    f"{type(child).__name__} in the file, not an object. Fix: edit the file "
                    "by hand")
            node = child
        node[leaf] = value  # an existing key keeps its place; a new one goes last

    def _unknown_key(self, dotted_key: str) -> ConfigError:
        if dotted_key in _SECTIONS:
            names = ", ".join(k for k in _BY_KEY if k.startswith(dotted_key + "."))
            return ConfigError(f"'{dotted_key}' is a section, not a value: set one of its keys "
                               f"({names})")
        close = difflib.get_close_matches(dotted_key, list(_BY_KEY), n=3, cutoff=0.6)
        if not close:
            return ConfigError(f"unknown key '{dotted_key}'. Fix: 'pywats-client config show' "
                               "lists every key")
        others = "".join(f", '{c}'" for c in close[1:])
        return ConfigError(f"unknown key '{dotted_key}' (did you mean '{close[0]}'?)"
                           + (f". Also close: {others[2:]}" if others else ""))

    # -- writing ---------------------------------------------------------------------------

    def save(self) -> None:
        """Write config.json atomically, mode 0600, secrets encrypted, 2-space JSON, key order
        kept. Secrets already encrypted are written unchanged."""
        out = copy.deepcopy(self._data)
        for option in SCHEMA:
            if not option.secret:
                continue
            found, value = _lookup(out, option.key)
            if found and isinstance(value, str) and value and not SecretBox.is_encrypted(value):
                *parents, leaf = option.key.split(".")
                node = out
                for part in parents:
                    node = node[part]
                node[leaf] = self._box.encrypt(value)
        text = json.dumps(out, indent=2, ensure_ascii=False) + "\n"
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        atomic_write(self.path, text.encode("utf-8"), mode=0o600)
        self._data = out  # keep the encrypted form so the next save does not re-encrypt


def _schema_order(out: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`out` with known keys in schema order, then the others in the order written."""
    known = list(dict.fromkeys(k[len(prefix):].split(".")[0] for k in _BY_KEY
                               if k.startswith(prefix)))
    names = [k for k in known if k in out] + [k for k in out if k not in known]
    return {name: _schema_order(out[name], f"{prefix}{name}.")
            if isinstance(out[name], dict) and f"{prefix}{name}" in _SECTIONS else out[name]
            for name in names}


def _display_folder(entry: Any) -> Any:
    if isinstance(entry, str):
        entry = {"path": entry}
    if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
        return entry
    path = entry["path"]
    full: dict[str, Any] = {"path": path, "converter": None, "post_action": "move",
                            "done_folder": os.path.join(path, "done"),
                            "error_folder": os.path.join(path, "error"),
                            "file_patterns": ["*"], "polling": False, "arguments": {}}
    full.update({k: v for k, v in entry.items() if v is not None or k == "converter"})
    return full


def _free_value(text: str) -> Any:
    """A value for a free-form key: JSON if it reads as a JSON scalar, else the text."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, (int, float, bool, str)) or value is None else text


# -- entry points ----------------------------------------------------------------------------


# Keys of the older library config (package README): read and mapped, kept as written.
LEGACY_KEYS = ("instance_name", "service_address", "converter_path", "queue_path",
               "watch_paths", "auto_submit", "retry_failed")


def legacy_mapped(path: Path, raw: dict[str, Any]) -> dict[str, Any]:
    """`raw` in the service's shape: the older library keys (LEGACY_KEYS, from the package
    README's config) taken out and mapped onto today's; `path` is the config.json."""
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
        given = Path(os.path.normpath(path.parent / Path(str(value)).expanduser()))
        if not isinstance(value, str) or given != folder:
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


def load_settings(path: Path, *, key_path: Path | None = None,
                  env: Mapping[str, str] | None = None) -> Settings:
    """`Settings` from config.json at `path` plus environment overrides (default os.environ).

    A missing file gives the defaults plus the environment; the service, not this function,
    refuses to start without a server_url. `key_path` defaults to secret.key beside the file.
    Relative watch-folder paths, including those in PYWATS_WATCH_FOLDERS, start at the
    config file's folder.
    """
    key = key_path if key_path is not None else path.parent / "secret.key"
    return ConfigDocument.load(path, key).settings(env)


def basic_token(username: str, password: str) -> str:
    """The token WATS issues for a user: base64 of "user:password"."""
    if not username or ":" in username:
        raise ConfigError("the user name must be non-empty and must not contain ':'. Fix: "
                          "give the WATS user name exactly as it is on the server")
    return base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


def init_config(paths: InstancePaths, *, server_url: str, api_token: str | None = None,
                username: str | None = None, password: str | None = None,
                station_name: str | None = None, location: str | None = None,
                overwrite: bool = False) -> ConfigDocument:
    """Create the instance folder and a new config.json for it, and return the document.

    `username` + `password` become the api_token WATS would issue (the password itself is not
    stored). An existing config.json is kept unless `overwrite`; the key file is always kept.
    """
    if paths.config.exists() and not overwrite:
        raise ConfigError(f"{paths.config} already exists; nothing changed. Fix: change single "
                          "keys with 'pywats-client config set KEY VALUE', or start over with "
                          "'pywats-client config init --overwrite'")
    api_token = api_token or None  # an empty answer at a prompt means "no token given"
    if api_token is not None and (username is not None or password is not None):
        raise ConfigError("give either an API token or a user name and password, not both")
    if (username is None) != (password is None):
        raise ConfigError("a user name needs a password and a password needs a user name. Fix: "
                          "give both, or give the API token instead")
    if username is not None and password is not None:
        api_token = basic_token(username, password)
    doc = ConfigDocument(paths.config, paths.key)
    doc.set("server_url", server_url)
    if api_token is not None:
        doc.set("api_token", api_token)
    if station_name is not None:
        doc.set("station_name", station_name)
    if location is not None:
        doc.set("station_location", location)
    doc.set("queue.watch_folders", "[]")  # present, so users see where folders go
    paths.ensure()  # only now: a bad argument above leaves nothing behind
    doc.save()
    return doc

"""The schema of config.json: every key with its type, default, check and help text.

Owns `SCHEMA` and the rules for one value: how command-line or environment text is parsed
(`parse_text`), how a JSON value is checked (`check`), and the rows of the README reference.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pywats_client.config.settings import (
    ApiSettings,
    ConverterSettings,
    LoggingSettings,
    QueueSettings,
    Settings,
)

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

_URL = "an http:// or https:// URL with a host name, such as https://wats.example.com"
HIDDEN = object()  # stands for a value that must not be echoed (a secret)


@dataclass(frozen=True)
class Option:
    """One key of config.json: how it is typed, checked, defaulted and explained."""

    key: str  # dotted path, e.g. "queue.retry_delay"
    kind: str  # string, token, url, number, integer, boolean, level, names, file, object, folders
    default: Any
    help: str
    minimum: float | None = None
    maximum: float | None = None
    unit: str = ""  # for numbers: "seconds", "days", "megabytes"
    secret: bool = False  # encrypted at rest, masked in display, never echoed
    example: str = ""  # a valid value for the "Fix:" hint
    default_text: str = ""  # how the default reads in the reference, when not its JSON form
    optional: bool = False  # no default value: not filled in by `to_display()`


_Q, _C, _L, _S = QueueSettings(), ConverterSettings(), LoggingSettings(), Settings()
_A = ApiSettings()

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
           "where no file event tells that a writer is done (polling, network shares, FAT "
           "media, files found by a scan), a file is taken once unchanged for this long",
           minimum=0, unit="seconds"),
    Option("queue.incomplete_timeout", "number", _Q.incomplete_timeout,
           "a file its converter calls incomplete (still being written) waits this long "
           "without change, then goes to the error folder", minimum=1, unit="seconds"),
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
    Option("converters.timeout_s", "number", _C.timeout_s,
           "a conversion still running after this long is abandoned and its file moved to the "
           "error folder", minimum=1, unit="seconds"),
    Option("converters.max_crashes", "integer", _C.max_crashes,
           "a file the service died on this many times while converting it alone is moved to "
           "the error folder", minimum=1),
    Option("converters.max_memory_mb", "number", _C.max_memory_mb,
           "peak memory (RSS) of the whole service; a file whose conversion would need more "
           "is refused (moved to the error folder) unread", minimum=48, unit="megabytes"),
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
    Option("logging.file", "boolean", _L.file,
           "also write the rotating log file (false under systemd: the journal has every line)"),
    Option("logging.max_size_mb", "number", _L.max_size_mb, "size at which the log rotates",
           minimum=1, unit="megabytes"),
    Option("logging.backup_count", "integer", _L.backup_count, "rotated log files kept",
           minimum=0),
    Option("api.enabled", "boolean", _A.enabled,
           "serve the control API and status page (start --api / --no-api overrides)"),
    Option("api.port", "integer", _A.port,
           "its TCP port, one per instance (0: any free port, shown by status)", minimum=0,
           maximum=65535),
    Option("api.host", "string", _A.host,
           "address it listens on; other than loopback needs api.allow_remote",
           example="127.0.0.1"),
    Option("api.allow_remote", "boolean", _A.allow_remote,
           "allow a non-loopback api.host; every route then needs the token"),
)

BY_KEY = {option.key: option for option in SCHEMA}
SECTIONS = ("queue", "converters", "logging", "api")
OPEN_OBJECTS = ("converters.defaults",)  # objects whose other keys are free-form

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
    "follow_symlinks": ("true/false", "false", "take files that are symbolic links (to "
                        "wherever they point); off: links are left in place"),
    "arguments": ("object", "{}", "passed to the converter"),
}
# Keys of one entry of `converters` given as a list (the older per-converter shape).
CONVERTER_ENTRY_KEYS = ("name", "module_path", "watch_folder", "done_folder", "error_folder",
                        "file_patterns", "post_action", "enabled", "arguments", "polling",
                        "follow_symlinks")


def reference_rows() -> list[tuple[str, str, str, str]]:
    """(key, type, default, meaning) for every key, in file order: the README reference."""
    rows = [(o.key, _type_label(o), o.default_text or json.dumps(plain(o.default)), o.help)
            for o in SCHEMA]
    at = next(i for i, row in enumerate(rows) if row[0] == "queue.watch_folders") + 1
    rows[at:at] = [(f"queue.watch_folders[].{name}", kind, default, meaning)
                   for name, (kind, default, meaning) in WATCH_FOLDER_KEYS.items()]
    return rows


# -- checking single values ------------------------------------------------------------------


class Invalid(Exception):
    """A value failed its check; `what` completes the sentence "<key> must be ..."."""

    def __init__(self, what: str, *, hide: bool = False) -> None:
        super().__init__(what)
        self.what = what
        self.hide = hide  # the value may carry a secret: do not echo it


def _type_label(option: Option) -> str:
    if option.kind == "number":
        return f"{option.unit} ≥ {plain(option.minimum)}"
    if option.kind == "integer":
        if option.maximum is not None:
            return f"whole number {plain(option.minimum)} to {plain(option.maximum)}"
        return f"whole number ≥ {plain(option.minimum)}"
    return {"string": "text", "token": "text (secret)", "url": "http(s) URL",
            "boolean": "true/false", "level": "log level", "names": "list of names",
            "file": "path or null", "object": "object", "folders": "list"}[option.kind]


def _describe(option: Option) -> str:
    """What a valid value is, for "<key> must be ...". """
    if option.kind == "number":
        return f"a number of {option.unit} ≥ {plain(option.minimum)}"
    if option.kind == "integer":
        if option.maximum is not None:
            return f"a whole number from {plain(option.minimum)} to {plain(option.maximum)}"
        return f"a whole number ≥ {plain(option.minimum)}"
    return {"string": "text in quotes", "token": "the token text, without spaces or line breaks",
            "url": _URL, "boolean": "true or false", "level": "one of " + ", ".join(LOG_LEVELS),
            "names": 'a list of converter names, such as ["WATSStandardJsonConverter"]',
            "file": "the path of an existing PEM file, or null",
            "object": 'an object such as {"part_number": "PN-100"}',
            "folders": "a list of folder paths or folder objects"}[option.kind]


def check(option: Option, value: Any, base: Path) -> Any:
    """`value` as the settings want it (floats, tuples, normalised text), or raise Invalid."""
    kind = option.kind
    if kind in ("number", "integer"):
        return _check_number(option, value)
    if kind == "url" and isinstance(value, str):
        return _check_url(value)
    if kind == "file" and isinstance(value, str) and value:
        path = resolve_path(value, base)
        if not path.is_file():
            raise Invalid(f"the path of an existing PEM file, or null; {path} does not exist "
                           "or is not a file")
        return str(path)
    if _SHAPES[kind](value):
        return _NORMALISE.get(kind, _same)(value)
    raise Invalid(_describe(option))


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
    "folders": lambda v: isinstance(v, list),  # the entries are checked in validation.py
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
    if not ok or (option.minimum is not None and value < option.minimum) or (
            option.maximum is not None and value > option.maximum):
        raise Invalid(_describe(option))
    return int(value) if integer else float(value)


def _check_url(value: str) -> str:
    if not value:
        return ""  # not configured yet: the service refuses to start, config commands work
    if "@" in value:
        raise Invalid(_URL + ", without a user name or password in it (credentials belong in "
                       "api_token)", hide=True)
    hint = f" (did you mean 'https://{value}'?)" if "://" not in value else ""
    if any(c.isspace() for c in value):
        raise Invalid(_URL + ", without spaces")
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise Invalid(_URL + hint)
    if parts.query or parts.fragment:
        raise Invalid(_URL + ", without ?query or #fragment")
    try:
        parts.port  # noqa: B018 - only to validate it
    except ValueError:
        raise Invalid(_URL + ", with a port number from 1 to 65535") from None
    return value.rstrip("/")


def parse_text(option: Option, text: str) -> Any:
    """The JSON value that `config set KEY TEXT` stores, typed by the schema."""
    kind, word = option.kind, text.strip().lower()
    if kind in ("number", "integer"):
        try:
            return int(word)
        except ValueError:
            try:
                number = float(word)
            except ValueError:
                raise Invalid(_describe(option)) from None
            return int(number) if number.is_integer() and kind == "integer" else number
    if kind == "boolean":
        if word in ("true", "yes", "1", "on"):
            return True
        if word in ("false", "no", "0", "off"):
            return False
        raise Invalid("true or false (also yes/no, 1/0, on/off)")
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
        raise Invalid(_describe(option) + ", written as JSON") from None
    if not isinstance(value, kind):
        raise Invalid(_describe(option))
    return value


def shown(value: Any) -> str:
    """`value` as a problem message quotes it: JSON, cut short, or a note if it is HIDDEN."""
    if value is HIDDEN:
        return "a value that is not shown (it may hold a secret)"
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + "..."


def plain(value: Any) -> Any:
    """A default as it reads in JSON: 10 rather than 10.0, lists rather than tuples."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, tuple):
        return [plain(v) for v in value]
    return value


def resolve_path(text: str, base: Path) -> Path:
    """An absolute, normalised path; relative ones start at `base` (no symlinks resolved)."""
    return Path(os.path.normpath(base / Path(text).expanduser()))


def fix_for(option: Option) -> str:
    """The "Fix:" of a problem with `option`: the command that sets a valid value."""
    if option.kind == "folders":
        return "add folders with 'pywats-client config add-watch-folder /path/to/folder'"
    example = option.example or json.dumps(plain(option.default))
    return f"set it with 'pywats-client config set {option.key} {example}'"


def lookup(data: Mapping[str, Any], key: str) -> tuple[bool, Any]:
    """(True, value) for a dotted key present in `data`, else (False, None)."""
    node: Any = data
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node

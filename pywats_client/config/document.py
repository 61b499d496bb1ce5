"""config.json as the user wrote it: loaded, read, edited, displayed and saved.

Owns `ConfigDocument`, which keeps every key written, in order, checks each edit against the
schema and saves atomically with secrets encrypted, and `load_settings`, the service's way in.
"""

from __future__ import annotations

import copy
import difflib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pywats_client.config.environment import read_overrides, show_overrides
from pywats_client.config.provisioning import basic_token, init_config
from pywats_client.config.schema import (
    BY_KEY,
    HIDDEN,
    OPEN_OBJECTS,
    SCHEMA,
    SECTIONS,
    WATCH_FOLDER_KEYS,
    Invalid,
    check,
    fix_for,
    lookup,
    parse_text,
    plain,
    shown,
)
from pywats_client.config.secrets import SecretBox, mask
from pywats_client.config.settings import POST_ACTIONS, Settings, WatchFolder
from pywats_client.config.validation import Validation, build_settings
from pywats_client.errors import ConfigError, SecretError
from pywats_client.fsutil import atomic_write

# init_config and basic_token live in provisioning.py; they are importable from here too, where
# callers outside the package have always found them.
__all__ = ["ConfigDocument", "basic_token", "init_config", "load_settings"]


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
        """Validate the document plus environment overrides (`env`, default os.environ) and
        build the `Settings`.

        Raises `ConfigError` listing every problem (one per line, each naming the key, this
        file and the fix), or `SecretError` if the token cannot be decrypted.
        """
        return build_settings(self.path, self._data, self._box, env)

    def get(self, dotted_key: str) -> Any:
        """The effective value of a key or section (default if unset); secrets decrypted."""
        option = BY_KEY.get(dotted_key)
        found, value = lookup(self._data, dotted_key)
        if option is not None:
            if not found:
                return plain(option.default)
            if option.secret and isinstance(value, str):
                return self._box.decrypt(value, key_name=dotted_key)
            return copy.deepcopy(value)
        # A section, a free-form key or a key we do not use: read it from the effective view.
        found, value = lookup(self.to_display(), dotted_key)
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
                node[leaf] = plain(option.default)
            elif option.secret:
                node[leaf] = self._masked(node[leaf], option.key)
        queue = out.get("queue")
        folders = queue.get("watch_folders") if isinstance(queue, dict) else None
        if isinstance(folders, list):
            out["queue"]["watch_folders"] = [_display_folder(entry) for entry in folders]
        return _schema_order(out)

    def display_with_environment(self, env: Mapping[str, str] | None = None
                                 ) -> tuple[dict[str, Any], dict[str, str]]:
        """What the service runs with, safe to show: `to_display()` with the PYWATS_*
        overrides of `env` (default os.environ) put in, secrets masked; and, for each key
        overridden, the variable it comes from."""
        display = self.to_display()
        return display, show_overrides(display, read_overrides(self.path.parent, env))

    def raw(self) -> dict[str, Any]:
        """A copy of the document as written: older and unknown keys included, secrets as
        stored."""
        return copy.deepcopy(self._data)

    def _masked(self, stored: Any, key: str) -> Any:
        if not isinstance(stored, str) or not stored:
            return stored
        try:
            return mask(self._box.decrypt(stored, key_name=key))
        except SecretError:
            return "**** (cannot be decrypted: restore secret.key or set it again)"

    # -- editing ---------------------------------------------------------------------------

    def set(self, dotted_key: str, value: str) -> bool:
        """Set a key from command-line text, typed and checked by the schema before it is kept.

        Numbers, booleans (true/false/yes/no/1/0), lists (JSON or comma-separated), objects
        (JSON) and null/none for nullable keys. Relative paths are relative to the config
        folder. Raises `ConfigError` for an unknown key or a bad value; nothing changes then.
        Returns False when the file already holds exactly this value (a secret: encrypted,
        and decrypting to it), so that saving can be skipped and the file left as it is.
        """
        parsed = self.parse(dotted_key, value)
        if self.holds_parsed(dotted_key, parsed):
            return False
        self._store(dotted_key, parsed)
        return True

    def parse(self, dotted_key: str, value: str) -> Any:
        """The JSON value `set(dotted_key, value)` would store; raises `ConfigError`."""
        option = BY_KEY.get(dotted_key)
        parts = dotted_key.split(".")
        if option is None:
            if len(parts) == 3 and ".".join(parts[:2]) in OPEN_OBJECTS and parts[2]:
                return _free_value(value)
            raise self._unknown_key(dotted_key)
        try:
            parsed = parse_text(option, value)
            check(option, parsed, self.path.parent)
        except Invalid as exc:
            got = shown(HIDDEN if option.secret or exc.hide else value)
            raise ConfigError(f"{self.path}: {dotted_key} must be {exc.what}, got {got}. "
                              f"Fix: {fix_for(option)}") from None
        if option.kind == "folders":
            probe = Validation(self.path, {"queue": {"watch_folders": parsed}})
            probe.watch_folders(parsed)
            probe.raise_if_problems()
        return parsed

    def holds(self, dotted_key: str, value: str) -> bool:
        """Whether `set(dotted_key, value)` would leave the file as it is."""
        return self.holds_parsed(dotted_key, self.parse(dotted_key, value))

    def holds_parsed(self, dotted_key: str, parsed: Any) -> bool:
        found, current = lookup(self._data, dotted_key)
        if not found:
            return False
        option = BY_KEY.get(dotted_key)
        if option is not None and option.secret:
            # A secret written in plain text is not "held": setting it again encrypts it.
            if not (isinstance(current, str) and SecretBox.is_encrypted(current)):
                return False
            try:
                return bool(self._box.decrypt(current, key_name=dotted_key) == parsed)
            except SecretError:
                return False
        # Compared as written, so that 30 and 30.0 or true and 1 count as different.
        return json.dumps(current) == json.dumps(parsed)

    def set_value(self, dotted_key: str, value: Any) -> None:
        """Set a key from a Python value: text (or a path) as `set()` takes it, anything else
        (numbers, booleans, lists, dicts, None) as its JSON text."""
        if isinstance(value, Path):
            value = str(value)
        if not isinstance(value, str):
            try:
                value = json.dumps(value)
            except (TypeError, ValueError):
                raise ConfigError(f"{value!r} cannot be stored in config.json (not a JSON value: "
                                  "use text, numbers, true/false, lists or objects)") from None
        self.set(dotted_key, value)

    def add_watch_folder(self, path: str, *, converter: str | None = None,
                         post_action: str | None = None) -> str:
        """Watch a folder (a plain path, or an object if options are given).

        A relative `path` is relative to the config folder; pass an absolute path for a folder
        named relative to the current directory. A folder already watched keeps its place and
        its other options; the options given replace its own. Returns "added", "updated" or
        "unchanged" (nothing to save).
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
        options = {key: value for key, value in
                   (("converter", converter), ("post_action", post_action)) if value is not None}
        found, current = lookup(self._data, "queue.watch_folders")
        if found and not isinstance(current, list):
            raise ConfigError(f"{self.path}: queue.watch_folders must be a list, got "
                              f"{shown(current)}. Fix: edit the file by hand")
        listed: list[Any] = current if found else []
        probe = Validation(self.path, self._data)
        new = probe.watch_folder({"path": path, **options}, f"queue.watch_folders[{len(listed)}]")
        probe.raise_if_problems()
        assert new is not None  # no problems means the folder was built
        for i, entry in enumerate(listed):
            # Problems in entries already there do not block adding another folder.
            there = Validation(self.path, self._data).watch_folder(entry, "")
            if there is None or there.path != new.path:
                continue
            if not options:
                return "unchanged"
            merged = dict(entry) if isinstance(entry, dict) else {"path": entry}
            merged.update(options)
            if merged == (entry if isinstance(entry, dict) else {"path": entry}):
                return "unchanged"
            self._store("queue.watch_folders", [*listed[:i], merged, *listed[i + 1:]])
            return "updated"
        # The older shape, a list of converters each with its folder, is edited by hand.
        for folder in Validation(self.path, self._data).watch_folders([]):
            if folder.path == new.path:
                raise ConfigError(f"{self.path}: {new.path} is already watched by an entry of "
                                  "the converters list; nothing changed. Fix: change that "
                                  "entry in the file")
        added: str | dict[str, Any] = {"path": path, **options} if options else path
        self._store("queue.watch_folders", [*listed, added])
        return "added"

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
        if dotted_key in SECTIONS:
            names = ", ".join(k for k in BY_KEY if k.startswith(dotted_key + "."))
            return ConfigError(f"'{dotted_key}' is a section, not a value: set one of its keys "
                               f"({names})")
        close = difflib.get_close_matches(dotted_key, list(BY_KEY), n=3, cutoff=0.6)
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
            found, value = lookup(out, option.key)
            if found and isinstance(value, str) and value and not SecretBox.is_encrypted(value):
                _replace(out, option.key, self._box.encrypt(value))
        text = json.dumps(out, indent=2, ensure_ascii=False) + "\n"
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        atomic_write(self.path, text.encode("utf-8"), mode=0o600)
        self._data = out  # keep the encrypted form so the next save does not re-encrypt

    def moved_to(self, path: Path) -> ConfigDocument:
        """This document as the config.json at `path`, with the key file beside it there:
        secrets are carried decrypted, to be encrypted with that key when saved."""
        data = self.raw()
        for option in SCHEMA:
            if option.secret and lookup(data, option.key)[0]:
                _replace(data, option.key, self.get(option.key))
        return ConfigDocument(path, Path(path).parent / "secret.key", data)


def _replace(data: dict[str, Any], dotted_key: str, value: Any) -> None:
    """Replace the value of a key that `data` holds."""
    *parents, leaf = dotted_key.split(".")
    node = data
    for part in parents:
        node = node[part]
    node[leaf] = value


def _schema_order(out: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`out` with known keys in schema order, then the others in the order written."""
    known = list(dict.fromkeys(k[len(prefix):].split(".")[0] for k in BY_KEY
                               if k.startswith(prefix)))
    names = [k for k in known if k in out] + [k for k in out if k not in known]
    return {name: _schema_order(out[name], f"{prefix}{name}.")
            if isinstance(out[name], dict) and f"{prefix}{name}" in SECTIONS else out[name]
            for name in names}


def _display_folder(entry: Any) -> Any:
    if isinstance(entry, str):
        entry = {"path": entry}
    if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
        return entry
    path = entry["path"]
    # Every key of a watch folder with its default, from the settings type itself.
    defaults = WatchFolder(path=Path(path))
    full: dict[str, Any] = {}
    for name in WATCH_FOLDER_KEYS:
        value = getattr(defaults, name)
        full[name] = list(value) if isinstance(value, tuple) else dict(value) if isinstance(
            value, Mapping) else value
    full.update(path=path, done_folder=str(defaults.done_path),
                error_folder=str(defaults.error_path))
    full.update({k: v for k, v in entry.items() if v is not None or k == "converter"})
    return full


def _free_value(text: str) -> Any:
    """A value for a free-form key: JSON if it reads as a JSON scalar, else the text."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, (int, float, bool, str)) or value is None else text


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


"""The PYWATS_* environment variables and systemd credentials that override config.json.

`read_overrides` decides which variables count, which key each replaces and the value it
gives; the settings and every display of the effective configuration are made from it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pywats_client.config.schema import (
    BY_KEY,
    HIDDEN,
    Invalid,
    check,
    parse_text,
    resolve_path,
    shown,
)
from pywats_client.config.secrets import mask
from pywats_client.errors import ConfigError

# Environment variable -> the config key it overrides. PYWATS_WATCH_FOLDERS replaces the whole
# list of watch folders (colon-separated paths).
ENV_OVERRIDES = {
    "PYWATS_SERVER_URL": "server_url",
    "PYWATS_API_TOKEN": "api_token",
    "PYWATS_STATION_NAME": "station_name",
    "PYWATS_LOG_LEVEL": "logging.level",
    "PYWATS_WATCH_FOLDERS": "queue.watch_folders",
}


# systemd credential (LoadCredential=NAME:FILE, read from $CREDENTIALS_DIRECTORY/NAME) -> the
# key it gives when the matching PYWATS_* variable is not set: the token reaches the service
# without being in config.json, the unit file or any command line.
CREDENTIALS_DIRECTORY = "CREDENTIALS_DIRECTORY"
CREDENTIALS = {"api_token": "api_token"}


def read_credential(name: str, env: Mapping[str, str] | None = None) -> str | None:
    """The systemd credential `name` of this process, stripped; None if there is none."""
    env = os.environ if env is None else env
    folder = env.get(CREDENTIALS_DIRECTORY, "")
    if not folder:
        return None
    try:
        text = (Path(folder) / name).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the systemd credential {name} in {folder}: {exc}. "
                          "Fix: check LoadCredential= in the unit") from None
    return text or None


@dataclass(frozen=True)
class Override:
    """One PYWATS_* variable that is set, and what it makes of the key it overrides."""

    var: str
    key: str
    # As the settings take it (watch folders: a tuple of absolute paths); if `problem`, the
    # text as far as it could be read.
    value: Any
    problem: str = ""  # "must be ..., got ..." when the value is not valid for the key

    @property
    def source(self) -> str:
        """Where the value comes from, as a message names it."""
        if self.var.startswith(CREDENTIALS_DIRECTORY + "/"):
            return f"systemd credential ${self.var}"
        return f"environment variable {self.var}"

    def shown(self) -> Any:
        """The value as a display shows it: a secret masked, paths as text."""
        if BY_KEY[self.key].secret:
            return mask(str(self.value))
        if isinstance(self.value, tuple):
            return [str(item) for item in self.value]
        return self.value


def read_overrides(base: Path, env: Mapping[str, str] | None = None) -> list[Override]:
    """The overrides set in `env` (default os.environ), in the order of ENV_OVERRIDES, then
    the systemd credentials (CREDENTIALS) whose key no variable overrides.

    A value is stripped of surrounding blanks (a value pasted into a unit file often brings
    some along); a variable that is empty or blank counts as unset. The text is parsed as
    `config set` parses it and checked by the schema. Watch folders are split at ":", each
    stripped; relative ones start at `base` (the config folder) and repeats are dropped.
    """
    env = os.environ if env is None else env
    given = [(var, key, env.get(var, "").strip()) for var, key in ENV_OVERRIDES.items()]
    for name, key in CREDENTIALS.items():
        if not any(k == key and text for _, k, text in given):
            given.append((f"{CREDENTIALS_DIRECTORY}/{name}", key,
                          read_credential(name, env) or ""))
    overrides: list[Override] = []
    for var, key, text in given:
        if not text:
            continue
        option = BY_KEY[key]
        if option.kind == "folders":
            parts = (part.strip() for part in text.split(":"))
            # dict.fromkeys: drop repeated paths, keep the order given
            folders = dict.fromkeys(resolve_path(part, base) for part in parts if part)
            overrides.append(Override(var, key, tuple(folders)))
            continue
        value: Any = text
        try:
            value = parse_text(option, text)
            value = check(option, value, base)
        except Invalid as exc:
            got = shown(HIDDEN if option.secret or exc.hide else text)
            overrides.append(Override(var, key, value, f"must be {exc.what}, got {got}"))
        else:
            overrides.append(Override(var, key, value))
    return overrides


def show_overrides(display: dict[str, Any], overrides: list[Override]) -> dict[str, str]:
    """Put `overrides` into `display` (a config as `ConfigDocument.to_display()` gives it);
    returns key -> variable for each one put in.

    The service uses these values, not the file's: showing the file's server_url while
    $PYWATS_SERVER_URL points elsewhere would send an operator to the wrong server.
    """
    applied: dict[str, str] = {}
    for override in overrides:
        *parents, leaf = override.key.split(".")
        node: Any = display
        for part in parents:
            node = node.setdefault(part, {}) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node[leaf] = override.shown()
            applied[override.key] = override.var
    return applied

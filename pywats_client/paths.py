"""Where an instance lives on disk: its folder and the files and folders inside it.

Every instance (including `default`) owns one folder, `<data_dir>/<name>/`, holding its
config, secret key, queue, logs, plugin converters, state, lock and pid file. Nothing else in
the package builds these paths by hand. Imports only `errors`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pywats_client.errors import ConfigError

DEFAULT_INSTANCE = "default"
SYSTEM_DATA_DIR = Path("/var/lib/pywats")
DATA_DIR_ENV = "PYWATS_DATA_DIR"

# Starts with a letter or digit so a name can never be "", ".", ".." or look like an option;
# no slashes, so a name is always exactly one folder below the data dir.
_INSTANCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def default_data_dir(env: Mapping[str, str] = os.environ) -> Path:
    """The folder holding every instance when no `--data-dir` is given.

    `$PYWATS_DATA_DIR` if set; `/var/lib/pywats` for root (a system service); otherwise
    `$XDG_CONFIG_HOME/pywats_client`, which defaults to `~/.config/pywats_client`.
    """
    explicit = env.get(DATA_DIR_ENV, "")
    if explicit:
        return Path(explicit).expanduser()
    if os.geteuid() == 0:
        return SYSTEM_DATA_DIR
    xdg = env.get("XDG_CONFIG_HOME", "")
    # The XDG spec says a relative value is invalid and must be ignored.
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "pywats_client"
    home = env.get("HOME") or str(Path.home())
    return Path(home) / ".config" / "pywats_client"


def validate_instance_name(name: str) -> str:
    """Return `name` if it can name an instance folder, else raise `ConfigError`."""
    if not _INSTANCE_NAME.fullmatch(name):
        raise ConfigError(
            f"invalid instance name {name!r}: use 1 to 64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (for example 'station1' or 'ict-line-a')"
        )
    return name


@dataclass(frozen=True)
class InstancePaths:
    """The folder of one instance and every path inside it."""

    name: str
    root: Path

    @classmethod
    def for_instance(cls, name: str, data_dir: Path | None = None) -> InstancePaths:
        """Paths of instance `name` under `data_dir` (default: `default_data_dir()`)."""
        validate_instance_name(name)
        base = data_dir if data_dir is not None else default_data_dir()
        # Absolute, so that a daemon (which changes to /) and messages name the same place.
        return cls(name=name, root=Path(os.path.abspath(base / name)))

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def key(self) -> Path:
        """Fernet key for the secrets in config.json (mode 0600, never inside the config)."""
        return self.root / "secret.key"

    @property
    def queue(self) -> Path:
        return self.root / "queue"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def log_file(self) -> Path:
        return self.logs / "pywats_client.log"

    @property
    def converters(self) -> Path:
        """Drop-in plugin converters (`*.py`) for this instance."""
        return self.root / "converters"

    @property
    def state(self) -> Path:
        """Service status, the record of files already seen, and similar small state files."""
        return self.root / "state"

    @property
    def lock(self) -> Path:
        return self.root / "instance.lock"

    @property
    def pid_file(self) -> Path:
        return self.root / "service.pid"

    def ensure(self) -> None:
        """Create the instance folder (0700: it holds the secret key) and its subfolders.

        An existing folder keeps its permissions: an operator may have chosen them on purpose.
        The queue creates its own folders, because it also checks the filesystem they are on.
        """
        self.root.parent.mkdir(parents=True, exist_ok=True)
        self.root.mkdir(mode=0o700, exist_ok=True)
        for folder in (self.logs, self.converters, self.state):
            folder.mkdir(mode=0o700, exist_ok=True)


def list_instances(data_dir: Path) -> list[str]:
    """Names of the instances under `data_dir` (folders holding a config.json), sorted."""
    try:
        entries = list(data_dir.iterdir())
    except FileNotFoundError:
        return []
    return sorted(
        entry.name
        for entry in entries
        if _INSTANCE_NAME.fullmatch(entry.name) and (entry / "config.json").is_file()
    )

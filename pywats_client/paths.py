"""Where an instance lives on disk: its folder and the files and folders inside it.

Owns the data dir (which folder holds the instances, for root, the service user and everyone
else), where each instance's folder is in it, and every path inside that folder.
"""

from __future__ import annotations

import os
import pwd
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pywats_client.errors import ConfigError

DEFAULT_INSTANCE = "default"
SYSTEM_DATA_DIR = Path("/var/lib/pywats")
SERVICE_USER = "pywats"  # User= in the systemd units, whose StateDirectory= is SYSTEM_DATA_DIR
DATA_DIR_ENV = "PYWATS_DATA_DIR"
LOG_NAME = "pywats_client.log"

# Starts with a letter or digit so a name can never be "", ".", ".." or look like an option;
# no slashes, so a name is always exactly one folder below the data dir.
_INSTANCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

# In a user's own data dir the default instance keeps its files in the data dir itself (where
# the documents put ~/.config/pywats_client/config.json), so no other instance may be named
# like one of them. "api.token" is the control API's token file.
_DEFAULT_INSTANCE_ENTRIES = frozenset({
    "config.json", "secret.key", "queue", "logs", "converters", "state", "instance.lock",
    "service.pid", "api.token",
})


def user_data_dir(env: Mapping[str, str] | None = None) -> Path:
    """`$XDG_CONFIG_HOME/pywats_client`, which defaults to `~/.config/pywats_client`."""
    env = os.environ if env is None else env
    xdg = env.get("XDG_CONFIG_HOME", "")
    # The XDG spec says a relative value is invalid and must be ignored.
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "pywats_client"
    home = env.get("HOME") or str(Path.home())
    return Path(home) / ".config" / "pywats_client"


def default_data_dir(env: Mapping[str, str] | None = None) -> Path:
    """The folder holding every instance when no `--data-dir` is given.

    `$PYWATS_DATA_DIR` if set; `/var/lib/pywats` for root, for the service user the systemd
    units run as, and for whoever owns an existing `/var/lib/pywats` (so that `sudo -u pywats
    pywats-client ...` and the service's cron line see the service's instances, not an empty
    folder under the service user's home); otherwise `user_data_dir()`.
    """
    env = os.environ if env is None else env
    explicit = env.get(DATA_DIR_ENV, "").strip()
    if explicit:
        return Path(explicit).expanduser()
    if runs_as_service_user():
        return SYSTEM_DATA_DIR
    return user_data_dir(env)


def runs_as_service_user() -> bool:
    """Root, the user the units run as, or the owner of an existing `/var/lib/pywats`."""
    uid = os.geteuid()
    if uid == 0 or _user_name(uid) == SERVICE_USER:
        return True
    try:
        st = os.stat(SYSTEM_DATA_DIR)
    except OSError:
        return False
    return st.st_uid == uid


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return ""


def is_user_data_dir(data_dir: Path, env: Mapping[str, str] | None = None) -> bool:
    """Whether `data_dir` is this user's own data dir, where the default instance lives in the
    data dir itself rather than in a `default/` folder below it."""
    return os.path.abspath(data_dir) == os.path.abspath(user_data_dir(env))


def validate_instance_name(name: str) -> str:
    """Return `name` if it can name an instance folder, else raise `ConfigError`."""
    if not _INSTANCE_NAME.fullmatch(name):
        raise ConfigError(
            f"invalid instance name {name!r}: use 1 to 64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (for example 'station1' or 'ict-line-a')"
        )
    return name


def _taken_by_the_default_instance(name: str) -> bool:
    return name in _DEFAULT_INSTANCE_ENTRIES or name.startswith(LOG_NAME)


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:
        return False  # a folder we may not look into holds nothing we can use


@dataclass(frozen=True)
class InstancePaths:
    """The folder of one instance and every path inside it.

    `flat` marks the default instance of a user's own data dir, whose folder is the data dir
    itself: config.json and its log sit directly in ~/.config/pywats_client/.
    `in_older_place` marks that instance still in `<data dir>/default/`, where older versions
    put it.
    """

    name: str
    root: Path
    flat: bool = False
    in_older_place: bool = False

    @classmethod
    def for_instance(cls, name: str, data_dir: Path | None = None,
                     env: Mapping[str, str] | None = None) -> InstancePaths:
        """Paths of instance `name` under `data_dir` (default: `default_data_dir()`).

        In a user's own data dir (`user_data_dir()`), the default instance is the data dir
        itself and every other instance a folder in it; an older default instance in
        `<data dir>/default/` is used where it is, until it is moved (the doctor says how).
        Everywhere else, `/var/lib/pywats` and any `--data-dir`, every instance is a folder.
        """
        validate_instance_name(name)
        base = data_dir if data_dir is not None else default_data_dir(env)
        # Absolute, so that a daemon (which changes to /) and messages name the same place.
        base = Path(os.path.abspath(base))
        if is_user_data_dir(base, env):
            if name == DEFAULT_INSTANCE:
                older = base / DEFAULT_INSTANCE
                if not _is_file(base / "config.json") and _is_file(older / "config.json"):
                    return cls(name=name, root=older, in_older_place=True)
                return cls(name=name, root=base, flat=True)
            if _taken_by_the_default_instance(name):
                raise ConfigError(
                    f"invalid instance name {name!r} in {base}: the default instance keeps its "
                    f"{name} there. Fix: choose another name, such as 'station1'")
        return cls(name=name, root=base / name)

    @classmethod
    def for_config(cls, config: Path, env: Mapping[str, str] | None = None) -> InstancePaths:
        """Paths of the instance whose config.json is `config`: the folder holding it is the
        instance folder, and in a user's own data dir that folder is the default instance."""
        folder = Path(os.path.abspath(config)).parent
        if is_user_data_dir(folder, env):
            return cls(name=DEFAULT_INSTANCE, root=folder, flat=True)
        older = folder.name == DEFAULT_INSTANCE and is_user_data_dir(folder.parent, env)
        return cls(name=folder.name, root=folder, in_older_place=older)

    @property
    def data_dir(self) -> Path:
        """The data dir this instance is in."""
        return self.root if self.flat else self.root.parent

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
        """The folder of the rotating log: beside config.json for a user's default instance."""
        return self.root if self.flat else self.root / "logs"

    @property
    def log_file(self) -> Path:
        return self.logs / LOG_NAME

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


def list_instances(data_dir: Path, env: Mapping[str, str] | None = None) -> list[str]:
    """Names of the instances under `data_dir` (folders holding a config.json), sorted; in a
    user's own data dir, "default" too when config.json is in the data dir itself."""
    try:
        entries = list(data_dir.iterdir())
    except FileNotFoundError:
        return []
    names = {entry.name for entry in entries
             if _INSTANCE_NAME.fullmatch(entry.name) and _is_file(entry / "config.json")}
    if is_user_data_dir(data_dir, env):
        names = {name for name in names if not _taken_by_the_default_instance(name)}
        if _is_file(data_dir / "config.json"):
            names.add(DEFAULT_INSTANCE)
    return sorted(names)

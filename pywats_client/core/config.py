"""`ClientConfig`: an instance's config.json as a Python object, for the library API.

A thin front over the config package: `ConfigDocument` checks, keeps and saves the file as
`pywats-client config set` does, and `config.legacy` reads the older keys. The folder holding
config.json is the instance folder, where the service and the CLI find the rest.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pywats_client.config import legacy
from pywats_client.config.document import ConfigDocument
from pywats_client.config.legacy import instance_id
from pywats_client.config.schema import SECTIONS
from pywats_client.config.settings import Settings
from pywats_client.errors import ConfigError
from pywats_client.paths import (
    DEFAULT_INSTANCE,
    InstancePaths,
    default_data_dir,
    validate_instance_name,
)


class ClientConfig:
    """The configuration of one instance, loaded from or saved to its config.json.

    Construct a new one with keyword arguments (`instance_name`, `service_address` or
    `server_url`, `api_token`, `station_name`, ..., section dicts `queue`, `converters`,
    `logging`), or read one with `load()`, `load_or_create()` or `for_instance()`. Every value
    is checked when it is set (`ConfigError` names the key and the fix); secrets are shown
    nowhere and encrypted when saved. `settings()` gives the validated `Settings` the service
    runs with, environment overrides included.

    Without `path`, the config belongs to instance `instance_name` under the data dir
    (`data_dir`, else `$PYWATS_DATA_DIR` or the platform default), as `--instance` does.
    """

    def __init__(
        self,
        instance_name: str | None = None,
        service_address: str | None = None,
        api_token: str | None = None,
        station_name: str | None = None,
        *,
        server_url: str | None = None,
        station_location: str | None = None,
        station_purpose: str | None = None,
        watch_folders: Iterable[str | Path] = (),
        path: str | Path | None = None,
        data_dir: str | Path | None = None,
        **options: Any,
    ) -> None:
        url = legacy.server_url(server_url, service_address)
        self._instance_name = instance_name
        if path is not None:
            config_path = Path(path)
        else:
            base = Path(data_dir) if data_dir is not None else default_data_dir()
            config_path = InstancePaths.for_instance(
                instance_id(instance_name or DEFAULT_INSTANCE), base).config
        self._doc = ConfigDocument(config_path, config_path.parent / "secret.key")
        for key, value in (("server_url", url), ("api_token", api_token),
                           ("station_name", station_name),
                           ("station_location", station_location),
                           ("station_purpose", station_purpose)):
            if value is not None:
                self.set(key, value)
        for key, value in options.items():
            if key in SECTIONS and isinstance(value, Mapping):
                for name, inner in value.items():
                    self.set(f"{key}.{name}", inner)
            else:
                self.set(key, value)
        for folder in watch_folders:
            self.add_watch_folder(folder)

    # -- reading and writing files ---------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path) -> ClientConfig:
        """Read an existing config.json (or the config.json in the folder `path`)."""
        config_path = _config_file(path)
        if not config_path.is_file():
            raise ConfigError(f"no config file at {config_path}. Fix: create it with "
                              "ClientConfig.load_or_create(path), or 'pywats-client config "
                              "init'")
        return cls._from_document(
            ConfigDocument.load(config_path, config_path.parent / "secret.key"))

    @classmethod
    def load_or_create(cls, path: str | Path) -> ClientConfig:
        """Read config.json at `path`; when there is none, create it (all defaults, mode
        0600) and return that. Keys the file holds are all kept, known or not."""
        config_path = _config_file(path)
        if config_path.is_file():
            return cls.load(config_path)
        config = cls._from_document(ConfigDocument(config_path, config_path.parent / "secret.key"))
        config.save()
        return config

    @classmethod
    def for_instance(cls, name: str = DEFAULT_INSTANCE, data_dir: str | Path | None = None
                     ) -> ClientConfig:
        """The config of instance `name` under the data dir, as `--instance NAME` finds it;
        an instance without a config.json gives an unsaved, empty one."""
        base = Path(data_dir) if data_dir is not None else default_data_dir()
        config_path = InstancePaths.for_instance(name, base).config
        if config_path.is_file():
            return cls.load(config_path)
        return cls._from_document(ConfigDocument(config_path, config_path.parent / "secret.key"))

    @classmethod
    def _from_document(cls, doc: ConfigDocument) -> ClientConfig:
        config = cls.__new__(cls)
        config._doc = doc
        config._instance_name = None
        return config

    def save(self, path: str | Path | None = None) -> None:
        """Write config.json atomically (mode 0600, secrets encrypted, key order kept), to
        `path` if given — the config then belongs to that folder's instance — else where it
        was loaded from or is meant to be."""
        if path is not None:
            target = Path(os.path.abspath(_config_file(path)))
            if target != self._doc.path:
                self._doc = self._doc.moved_to(target)
        self._doc.save()

    # -- values ----------------------------------------------------------------------------

    def get(self, key: str) -> Any:
        """The value of a dotted key ("queue.upload_interval") or a section, defaults filled
        in; secrets decrypted."""
        return self._doc.get(key)

    def set(self, key: str, value: Any) -> None:
        """Set a dotted key to a Python value (text, number, bool, list, dict or None),
        checked by the schema; `ConfigError` names the key and the fix, and nothing changes."""
        self._doc.set_value(key, value)

    def add_watch_folder(self, path: str | Path, *, converter: str | None = None,
                         post_action: str | None = None) -> None:
        """Watch one more folder (a relative path starts at the config's folder)."""
        self._doc.add_watch_folder(str(path), converter=converter, post_action=post_action)

    def settings(self, env: Mapping[str, str] | None = None) -> Settings:
        """The validated settings with environment overrides (`os.environ` by default).

        Raises `ConfigError` listing every problem, each naming the key, the file and the fix.
        """
        return self._doc.settings(env)

    def to_dict(self) -> dict[str, Any]:
        """The whole effective config (defaults filled in), secrets masked: safe to print."""
        return self._doc.to_display()

    # -- the usual keys as attributes -------------------------------------------------------

    @property
    def path(self) -> Path:
        """The config.json this config is read from and saved to."""
        return self._doc.path

    @property
    def paths(self) -> InstancePaths:
        """The instance's folders: the folder holding config.json is the instance folder."""
        return InstancePaths.for_config(self.path)

    @property
    def instance_name(self) -> str:
        """The name given when creating the config, the file's `instance_name`, else the
        instance folder's name."""
        if self._instance_name is not None:
            return self._instance_name
        return legacy.written_instance_name(self._doc.raw()) or self.paths.name

    @property
    def server_url(self) -> str:
        return legacy.written_server_url(str(self._doc.get("server_url") or ""),
                                         self._doc.raw())

    @server_url.setter
    def server_url(self, value: str) -> None:
        self.set("server_url", value)

    service_address = server_url

    @property
    def api_token(self) -> str:
        return str(self._doc.get("api_token") or "")

    @api_token.setter
    def api_token(self, value: str) -> None:
        self.set("api_token", value)

    @property
    def station_name(self) -> str:
        return str(self._doc.get("station_name") or "")

    @station_name.setter
    def station_name(self, value: str) -> None:
        self.set("station_name", value)

    @property
    def station_location(self) -> str:
        return str(self._doc.get("station_location") or "")

    @station_location.setter
    def station_location(self, value: str) -> None:
        self.set("station_location", value)

    @property
    def station_purpose(self) -> str:
        return str(self._doc.get("station_purpose") or "")

    @station_purpose.setter
    def station_purpose(self, value: str) -> None:
        self.set("station_purpose", value)

    def __repr__(self) -> str:
        return (f"ClientConfig(path={str(self.path)!r}, instance_name={self.instance_name!r}, "
                f"server_url={self.server_url!r})")


def _config_file(path: str | Path) -> Path:
    path = Path(path)
    return path / "config.json" if path.is_dir() else path


def resolve_config(config: ClientConfig | str | Path | None,
                   data_dir: str | Path | None = None) -> ClientConfig:
    """A ClientConfig from what a caller gave: the config itself, a config file (or the
    instance folder holding it), an instance name (under `data_dir`), or None for the default
    instance."""
    if isinstance(config, ClientConfig):
        return config
    if config is None:
        return ClientConfig.for_instance(DEFAULT_INSTANCE, data_dir)
    if isinstance(config, str) and not _looks_like_path(config):
        return ClientConfig.for_instance(validate_instance_name(config), data_dir)
    file = _config_file(config)
    if not file.is_file():
        raise ConfigError(f"no config file at {file}. Fix: give the path of an instance's "
                          "config.json, an instance name, or a ClientConfig")
    return ClientConfig.load(file)


def _looks_like_path(text: str) -> bool:
    return "/" in text or "\\" in text or text.endswith(".json") or Path(text).exists()

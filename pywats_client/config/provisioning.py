"""A new instance's config.json, and the API token WATS issues for a user.

Owns `provision` (what `config init` writes: a new file, or the values given brought into an
existing one, nothing written when it already holds them), `init_config` and `basic_token`.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

from pywats_client.errors import ConfigError
from pywats_client.paths import InstancePaths

if TYPE_CHECKING:
    from pywats_client.config.document import ConfigDocument


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
    stored). An existing config.json holding other values is kept unless `overwrite`, which
    changes only the values given; the key file is always kept. See `provision`.
    """
    doc, _ = provision(paths, server_url=server_url, api_token=api_token, username=username,
                       password=password, station_name=station_name, location=location,
                       overwrite=overwrite)
    return doc


def provision(paths: InstancePaths, *, server_url: str | None, api_token: str | None = None,
              username: str | None = None, password: str | None = None,
              station_name: str | None = None, location: str | None = None,
              overwrite: bool = False) -> tuple[ConfigDocument, list[str]]:
    """Bring the instance's config.json to the values given (None: not given); returns the
    document and the keys changed.

    A new file gets them and an empty list of watch folders. An existing file that already
    holds them is not written at all (byte for byte the same, so configuration management
    sees no change); one that holds other values raises `ConfigError` unless `overwrite`,
    which changes those values and keeps everything else, watch folders included.
    """
    wanted = wanted_values(server_url=server_url, api_token=api_token, username=username,
                           password=password, station_name=station_name, location=location)
    # Imported here: document.py imports this module, to offer init_config where callers
    # have always found it.
    from pywats_client.config.document import ConfigDocument

    exists = paths.config.exists()
    doc = (ConfigDocument.load(paths.config, paths.key) if exists
           else ConfigDocument(paths.config, paths.key))
    if exists and not overwrite:
        differ = differences(doc, wanted)
        if differ:
            raise ConfigError(f"{paths.config} already exists with other values for "
                              f"{', '.join(differ)}; nothing changed. Fix: change single keys "
                              "with 'pywats-client config set KEY VALUE', or pass "
                              "overwrite=True to change these")
    changed = [key for key, value in wanted.items() if doc.set(key, value)]
    if not exists:
        doc.set("queue.watch_folders", "[]")  # present, so users see where folders go
    if changed or not exists:
        paths.ensure()  # only now: a bad argument above leaves nothing behind
        doc.save()
    return doc, changed


def wanted_values(*, server_url: str | None, api_token: str | None = None,
                  username: str | None = None, password: str | None = None,
                  station_name: str | None = None, location: str | None = None
                  ) -> dict[str, str]:
    """The config keys and texts that `config init` sets from what it was given."""
    api_token = api_token or None  # an empty answer at a prompt means "no token given"
    if api_token is not None and (username is not None or password is not None):
        raise ConfigError("give either an API token or a user name and password, not both")
    if (username is None) != (password is None):
        raise ConfigError("a user name needs a password and a password needs a user name. Fix: "
                          "give both, or give the API token instead")
    if username is not None and password is not None:
        api_token = basic_token(username, password)
    given = {"server_url": server_url, "api_token": api_token, "station_name": station_name,
             "station_location": location}
    return {key: value for key, value in given.items() if value is not None}


def differences(doc: ConfigDocument, wanted: dict[str, str]) -> list[str]:
    """The keys of `wanted` whose value `doc` does not hold (secrets compared decrypted)."""
    return [key for key, value in wanted.items() if not doc.holds(key, value)]

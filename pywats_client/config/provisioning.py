"""A new instance's config.json, and the API token WATS issues for a user.

Owns `init_config` (what `config init` writes) and `basic_token`.
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
    # Imported here: document.py imports this module, to offer init_config where callers
    # have always found it.
    from pywats_client.config.document import ConfigDocument

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

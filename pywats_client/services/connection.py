"""`ConnectionService`: is the WATS server reachable, does it accept our credentials? The
service's own probe (`GET /api/App/Version`) at `start()` and every `interval` seconds on a
background thread, answered as a `ServerState`. Never uploads.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pywats_client.clock import SYSTEM_CLOCK, Clock
from pywats_client.core.config import ClientConfig, resolve_config
from pywats_client.outcomes import ServerState
from pywats_client.service.uploader import UploadResult, require_server, uploader_for

log = logging.getLogger(__name__)


class ConnectionService:
    """Watches the connection to the configured WATS server.

    `state` is a `ServerState`, as the service's uploads see it: "unknown" before the first
    check, then "online" (reachable, credentials accepted), "offline" (no connection, or the
    server failed) or "paused" (the server answered but refused the token or has no WATS API
    at the configured address: uploads would wait for a fix); `message` says why in words.
    `interval` defaults to the config's `queue.probe_interval`.
    """

    def __init__(self, config: ClientConfig | str | Path | None = None, *,
                 interval: float | None = None, env: Mapping[str, str] | None = None,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        self.config = resolve_config(config)
        settings = self.config.settings(env)
        require_server(settings, self.config.path)
        self.server_url = settings.server_url
        self.interval = interval if interval is not None else settings.queue.probe_interval
        if self.interval <= 0:
            raise ValueError(f"interval must be a positive number of seconds, got {interval}")
        self._client = uploader_for(settings)
        self._clock = clock
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.state = ServerState.UNKNOWN
        self.message = ""
        self.version: str | None = None
        self.last_checked: float | None = None  # epoch seconds of the last check
        self.checks = 0

    def __repr__(self) -> str:
        return f"ConnectionService({self.server_url!r}, {self.state})"

    # -- running ---------------------------------------------------------------------------

    def start(self) -> None:
        """Check now, then keep checking every `interval` seconds in the background."""
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("the connection service is already running")
        self._stop.clear()
        self.check()
        self._thread = threading.Thread(target=self._loop, name="pywats-connection",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop checking; waits for a check in progress (bounded by the request timeouts)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()
        self._client.close()

    def _loop(self) -> None:
        while not self._clock.wait(self._stop, self.interval):
            try:
                self.check()
            except Exception:  # a bug must not end the checks silently
                log.exception("connection check of %s failed unexpectedly", self.server_url)

    def __enter__(self) -> ConnectionService:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- asking ----------------------------------------------------------------------------

    def check(self) -> bool:
        """Check the connection now (one request); True when online."""
        self._record(self._client.probe())
        return self.is_connected()

    def is_connected(self) -> bool:
        """True when the last check reached the server and it accepted the credentials."""
        return self.state is ServerState.ONLINE

    def get_server_version(self) -> str | None:
        """The server's version, asked now; None when it cannot be reached or refuses us."""
        self.check()
        return self.version if self.is_connected() else None

    def wait_until(self, connected: bool = True, timeout: float | None = None) -> bool:
        """Block until a check finds the server (dis)connected; True if it did in time."""
        with self._changed:
            return self._changed.wait_for(lambda: self.is_connected() == connected, timeout)

    def _record(self, result: UploadResult) -> None:
        state = ServerState.after(result.outcome, probe=True) or ServerState.OFFLINE
        if state is ServerState.ONLINE:
            message, version = "", _version(result.payload)
        else:
            message, version = result.message, None
        with self._changed:
            before = self.state
            self.state, self.message = state, message
            if version is not None:
                self.version = version
            self.last_checked = self._clock.time()
            self.checks += 1
            self._changed.notify_all()
        if state is not before:
            if state is ServerState.ONLINE:
                log.info("WATS at %s is reachable and accepts our credentials", self.server_url)
            else:
                log.warning("WATS at %s is %s: %s", self.server_url, state, message)


def _version(payload: bytes) -> str:
    """The version from the answer of GET /api/App/Version (a JSON string, an object with a
    version field, or plain text)."""
    try:
        data: Any = json.loads(payload) if payload else ""
    except ValueError:
        return payload.decode("utf-8", "replace").strip()[:100]
    if isinstance(data, dict):
        for key in ("version", "Version", "serverVersion", "ServerVersion"):
            if data.get(key) is not None:
                return str(data[key])
        return json.dumps(data)[:100]
    return str(data)

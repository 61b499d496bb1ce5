"""`WATSClient`: the very service `pywats-client start` runs, on background threads of the
calling program (same instance, lock, queue and status; no signal handlers), and
`ServiceThread`, that machinery, shared with `services.QueueService`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pywats_client.config.settings import Settings
from pywats_client.core.config import ClientConfig, resolve_config
from pywats_client.errors import PyWATSClientError
from pywats_client.service.loop import Service
from pywats_client.service.status import RunSummary
from pywats_client.service.uploader import require_server

log = logging.getLogger(__name__)

START_TIMEOUT = 60.0  # seconds start() waits for the service to be ready


class ServiceThread:
    """A `Service` running on one background thread, started and stopped from outside.

    `make_settings(from_disk)` gives the settings to run with: at start from the config as it
    is in memory (`from_disk` False), and again from config.json when that file changes while
    the service runs, as the CLI's service does. A missing server address or a held lock
    fails `start()` with the service's own `ConfigError` or `LockError`.
    """

    def __init__(self, config: ClientConfig, *, make_settings: Callable[[bool], Settings],
                 name: str, stop_timeout: float = 20.0) -> None:
        self.config = config
        self._make_settings = make_settings
        self._name = name
        self._stop_timeout = stop_timeout
        self._service: Service | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self.summary: RunSummary | None = None

    @property
    def service(self) -> Service | None:
        """The running service (None before start and after it has ended)."""
        return self._service if self.running else None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start the service and return once it watches its folders and may upload.

        Raises what stopped it from starting (e.g. `ConfigError`, `LockError`).
        """
        with self._lock:
            if self.running:
                raise RuntimeError(f"{self._name} is already running")
            settings = self._make_settings(False)
            require_server(settings, self.config.path)
            self.config.paths.ensure()
            service = Service(settings, self.config.paths, stop_timeout=self._stop_timeout,
                              reload_settings=lambda: self._make_settings(True))
            self._ready.clear()
            self._error = None
            self.summary = None
            thread = threading.Thread(target=self._run, args=(service,), name=self._name)
            self._service, self._thread = service, thread
            thread.start()
        if not self._ready.wait(timeout):
            self.stop()
            raise PyWATSClientError(f"{self._name} did not become ready within {timeout:g}s; "
                                    f"it was stopped (see the log of {self.config.paths.root})")
        if self._error is not None:
            thread.join()
            error, self._error = self._error, None
            raise error

    def _run(self, service: Service) -> None:
        try:
            self.summary = service.run(on_ready=self._ready.set)
        except BaseException as exc:  # handed to start() or logged; the thread ends quietly
            if self._ready.is_set():
                log.exception("%s stopped with an error", self._name)
            else:
                self._error = exc
        finally:
            self._ready.set()

    def stop(self, timeout: float | None = None) -> RunSummary | None:
        """Graceful stop (in-flight uploads get the stop timeout); waits for the thread up to
        `timeout` seconds (None: until it ends). Calling it again while a stop is under way
        stops at once. Returns the run's summary, or None if it had not ended in time."""
        service, thread = self._service, self._thread
        if service is None or thread is None:
            return self.summary
        service.request_stop()
        thread.join(timeout)
        if thread.is_alive():
            return None
        return self.summary

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the service has ended (stopped from another thread); True if it has."""
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def status(self) -> dict[str, Any]:
        """The service's published status plus the queue counts."""
        service = self._service
        info: dict[str, Any] = dict(service.snapshot()) if service is not None else {}
        info["running"] = self.running
        if info.get("state") == "starting" and self.running and self._ready.is_set():
            # Ready, but its first round, which publishes the status, has not come yet.
            info["state"] = "running"
        if service is not None and service.paths.queue.exists():
            info["queue"] = {s.value: n for s, n in service.queue.counts().items()}
        return info


class WATSClient:
    """The client service of one instance, in this process.

    `start()` returns once folders are watched and uploads may begin; `stop()` ends it
    gracefully, as SIGTERM would (a second `stop()` at once). No signal handlers are
    installed: only a main thread may, and the program owns its signals. Use it as a context
    manager to be sure it is stopped. The config is a `ClientConfig`, a config.json path, or an
    instance name.
    """

    def __init__(self, config: ClientConfig | str | Path | None = None, *,
                 env: Mapping[str, str] | None = None, stop_timeout: float = 20.0) -> None:
        self.config = resolve_config(config)
        self._env = env
        self._runner = ServiceThread(self.config, make_settings=self._settings,
                                     name=f"pywats-client {self.config.paths.name}",
                                     stop_timeout=stop_timeout)

    def _settings(self, from_disk: bool) -> Settings:
        config = ClientConfig.load(self.config.path) if from_disk else self.config
        return config.settings(self._env)

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start watching, converting and uploading in background threads."""
        self._runner.start(timeout)

    def stop(self, timeout: float | None = None) -> RunSummary | None:
        """Stop gracefully and wait for the threads to end (see `ServiceThread.stop`)."""
        return self._runner.stop(timeout)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the client has stopped; True if it has. Ctrl-C interrupts the wait."""
        return self._runner.wait(timeout)

    @property
    def running(self) -> bool:
        return self._runner.running

    def status(self) -> dict[str, Any]:
        """What `pywats-client status` knows of the running service, as a dict: `state`,
        `server` (online/offline/paused), `uploaded`, `queue` counts, ..."""
        return self._runner.status()

    def __enter__(self) -> WATSClient:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"WATSClient({str(self.config.path)!r}, {state})"

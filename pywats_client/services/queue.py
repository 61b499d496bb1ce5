"""`QueueService`: the service itself with no watch folders, uploading the instance's queue in
the background (same retries, offline handling and pausing) for programs that queue reports
themselves; it owns the instance lock while it runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pywats_client.config.settings import Settings
from pywats_client.core.client import START_TIMEOUT, ServiceThread
from pywats_client.core.config import ClientConfig, resolve_config
from pywats_client.core.queue import ReportQueue
from pywats_client.outcomes import ServerState
from pywats_client.service.status import RunSummary


class QueueService:
    """Uploads queued reports until stopped. `get_status()` is a dict with the counts
    (`pending`, `processing`, `completed`, `failed`, `corrupt`), the server state
    (`server`: unknown/online/offline/paused), `uploaded`, `rejected` and `running`."""

    def __init__(self, config: ClientConfig | str | Path | None = None, *,
                 env: Mapping[str, str] | None = None, stop_timeout: float = 20.0) -> None:
        self.config = resolve_config(config)
        self._env = env
        self._queue = ReportQueue(self.config)
        self._runner = ServiceThread(self.config, make_settings=self._settings,
                                     name=f"pywats-queue {self.config.paths.name}",
                                     stop_timeout=stop_timeout)

    def _settings(self, from_disk: bool) -> Settings:
        config = ClientConfig.load(self.config.path) if from_disk else self.config
        settings = config.settings(self._env)
        # The queue only: the folders are someone else's business (or nobody's).
        return dataclasses.replace(
            settings, queue=dataclasses.replace(settings.queue, watch_folders=()))

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start uploading in the background; returns once the queue is swept and owned.
        `LockError` when the service (or another drain) already owns the instance."""
        self._runner.start(timeout)

    def stop(self, timeout: float | None = None) -> RunSummary | None:
        """Stop gracefully: uploads in flight get the stop timeout, nothing is lost."""
        return self._runner.stop(timeout)

    @property
    def running(self) -> bool:
        return self._runner.running

    def add(self, item: str | Path | Mapping[str, Any] | object) -> str:
        """Queue a report (as `ReportQueue.add`) and, while running, send it at once."""
        report_id = self._queue.add(item)
        service = self._runner.service
        if service is not None:
            service.dispatcher.notify_queued(report_id)
        return report_id

    def get_status(self) -> dict[str, Any]:
        """Counts per state, and how the uploading goes."""
        status: dict[str, Any] = self._queue.get_status().to_dict()
        published = self._runner.status()
        status.update({
            "running": self.running,
            "server": published.get("server", ServerState.UNKNOWN),
            "server_detail": published.get("server_detail", ""),
            "uploaded": published.get("uploaded", 0),
            "rejected": published.get("rejected", 0),
            "last_error": published.get("last_error", ""),
        })
        return status

    def __enter__(self) -> QueueService:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

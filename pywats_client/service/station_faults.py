"""Station faults: the queue cannot take a file's reports for a reason that is the station's,
not the file's (a read-only or failing disk, no file descriptors left; a full disk is not one).
Owns the retry of each such file, less and less often, and the fault shown until it clears.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pywats_client.clock import Clock
from pywats_client.service import watcher
from pywats_client.service.postaction import SourceFile
from pywats_client.service.status import ServiceStatus
from pywats_client.service.watcher import FolderWatcher

log = logging.getLogger(__name__)

STORE_FAULT_RETRY = 2.0  # first retry of a file whose reports the queue could not take...
STORE_FAULT_MAX_RETRY = 60.0  # ...doubling up to this while the fault lasts


class StationFaults:
    """The files that met a station fault and how often; status, STATUS= and the log say so."""

    def __init__(self, status: ServiceStatus, clock: Clock, watcher: FolderWatcher) -> None:
        self.status = status
        self.clock = clock
        self.watcher = watcher
        self._tries: dict[Path, int] = {}  # files the queue could not take, and how often

    def met(self, source: SourceFile, message: str, *, once: bool) -> None:
        """A station fault, not a bad file: the file stays in its folder and is tried again,
        less and less often, until the fault clears (with `once`, by a later run)."""
        path = source.path
        tries = self._tries.get(path, 0) + 1
        self._tries[path] = tries
        watcher.forget_oldest(self._tries)
        if not self.status.station_fault:
            self.status.station_fault_since = self.clock.time()
            log.error("%s. Files wait in the watch folders and are tried again; fix the "
                      "folder (permissions, a read-only or failing disk) and they go on",
                      message)
        self.status.station_fault = message
        self.status.record_failure("station_fault", message, self.clock.time(),
                                   source=str(path))
        if once:
            self.watcher.done(source)  # a later run tries it again
            return
        delay = min(STORE_FAULT_RETRY * 2 ** (tries - 1), STORE_FAULT_MAX_RETRY)
        log.warning("%s waits in its folder: %s; trying again in %.0fs", path, message, delay)
        self.watcher.retry_later(source, delay)

    def forget(self, source: SourceFile) -> None:
        """`source` went its way (queued, set aside, gone): its tries are not kept."""
        self._tries.pop(source.path, None)

    def cleared(self, source: SourceFile) -> None:
        """`source`'s reports were queued: the queue takes reports, any fault is over."""
        self.forget(source)
        if self.status.station_fault:
            log.info("the queue takes reports again (%s was queued); the fault is over",
                     source.path)
            self.status.station_fault = ""
            self.status.station_fault_since = None

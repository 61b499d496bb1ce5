"""watchdog's observers, for where the kernel's file events are not used: folders that are
polled, and native folders off Linux. Imported only then: on Linux the watcher reads inotify
itself (`linuxfs`), and watchdog's observer machinery would be 2 MB of a 40 MB service that
never uses it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from watchdog.events import (
    FileClosedEvent,
    FileCreatedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from pywats_client.service.linuxfs import Hint

log = logging.getLogger("pywats_client.service.watcher")

# The only watchdog events that can mean "a file appeared or changed". Opens and closes by
# readers — the service itself reads every file several times — and deletions were most of
# the observer's work in a burst of files, and watchdog's move pairing scans its whole
# pending-event queue for each event.
HINT_EVENTS = [FileCreatedEvent, FileModifiedEvent, FileMovedEvent, FileClosedEvent]
WATCHDOG_HINTS = {"moved": Hint.RENAMED, "closed": Hint.CLOSED, "created": Hint.WRITING,
                  "modified": Hint.WRITING}


def native() -> BaseObserver:
    """The platform's own observer (inotify, FSEvents, ReadDirectoryChangesW, kqueue)."""
    return Observer()


def polling(interval: float) -> BaseObserver:
    """An observer that lists the folders every `interval` seconds."""
    return PollingObserver(timeout=interval)


class HintHandler(FileSystemEventHandler):
    """Turns watchdog events into hints; runs on the observer thread, so does nothing else."""

    def __init__(self, hint: Callable[[Path, Hint], None]) -> None:
        self._hint = hint

    def dispatch(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            return
        # Created, modified and closed-after-write name the file itself; a move names the
        # file it became. Opened / closed-without-write come from readers (our converters).
        kind = WATCHDOG_HINTS.get(event.event_type)
        if kind is None:
            return
        path = event.dest_path if event.event_type == "moved" else event.src_path
        try:
            self._hint(Path(os.fsdecode(path)), kind)
        except Exception:  # an exception would end the observer thread: log it, keep watching
            log.exception("could not note the change of %r; the next rescan will find it", path)


def schedule(observer: BaseObserver, handler: FileSystemEventHandler, path: str) -> None:
    try:
        observer.schedule(handler, path, recursive=False, event_filter=HINT_EVENTS)
    except TypeError:  # watchdog < 4 has no event filter: every event, as before
        observer.schedule(handler, path, recursive=False)

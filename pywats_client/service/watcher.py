"""Finds the files in the watch folders that are ready to be converted: watchdog events as
hints, a periodic full rescan as the truth (events are lost while the service is down), the
settle rule (a file is taken once quiet for a while) and the set of files in flight.
"""

from __future__ import annotations

import errno
import fnmatch
import itertools
import logging
import os
import re
import stat
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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

from pywats_client.clock import SYSTEM_CLOCK, Clock
from pywats_client.config.settings import WatchFolder
from pywats_client.errors import ConfigError
from pywats_client.fsutil import linked_name, mount_points, open_dir
from pywats_client.service.postaction import SeenFiles, SourceFile

__all__ = ["FolderWatcher", "SourceFile", "is_ignored_name"]

log = logging.getLogger(__name__)

# Names equipment, editors and browsers use while a file is still being written, plus our own
# error notes. Compared case-insensitively: Windows tools write ".TMP" as often as ".tmp".
_IGNORED_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".error.txt")
MAX_CHECKS_PER_POLL = 200  # files stat'ed and opened per poll(); the rest wait for the next

# The only events that can mean "a file appeared or changed" (inotify is told to send no
# others). Opens and closes by readers — the service itself reads every file several times —
# and deletions were most of the observer's work in a burst of files, and watchdog's move
# pairing scans its whole pending-event queue for each event it is given.
_HINT_EVENTS = [FileCreatedEvent, FileModifiedEvent, FileMovedEvent, FileClosedEvent]


def is_ignored_name(name: str) -> bool:
    """True for names that are never converted, whatever the folder's file patterns say."""
    return (
        name.startswith((".", "~"))
        or name.lower().endswith(_IGNORED_SUFFIXES)
    )


class _Folder:
    """A watch folder with its absolute path and compiled file patterns."""

    def __init__(self, settings: WatchFolder) -> None:
        self.settings = settings
        self.key = os.path.abspath(settings.path)
        # No patterns at all means no filter, like the default ("*",).
        patterns = settings.file_patterns or ("*",)
        self._patterns = re.compile(
            "|".join(f"(?:{fnmatch.translate(p)})" for p in patterns), re.IGNORECASE
        )

    def accepts(self, name: str) -> bool:
        return not is_ignored_name(name) and self._patterns.match(name) is not None

    @property
    def follow_symlinks(self) -> bool:
        return self.settings.follow_symlinks


@dataclass
class _Candidate:
    """A file not taken yet. `since` is when it was first seen with this size and mtime."""

    folder: _Folder
    size: int
    mtime_ns: int
    since: float  # monotonic
    not_before: float = 0.0  # monotonic; set by retry_later()
    warned_unreadable: bool = False

    def due(self, settle_time: float) -> float:
        return max(self.since + settle_time, self.not_before)


class _HintHandler(FileSystemEventHandler):
    """Turns watchdog events into hints; runs on the observer thread, so does nothing else."""

    def __init__(self, hint: Callable[[Path], None]) -> None:
        self._hint = hint

    def dispatch(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            return
        # Created, modified and closed-after-write name the file itself; a move names the
        # file it became. Opened / closed-without-write come from readers (our converters).
        if event.event_type == "moved":
            path = event.dest_path
        elif event.event_type in ("created", "modified", "closed"):
            path = event.src_path
        else:
            return
        try:
            self._hint(Path(os.fsdecode(path)))
        except Exception:  # an exception would end the observer thread: log it, keep watching
            log.exception("could not note the change of %r; the next rescan will find it", path)


class FolderWatcher:
    """Watches folders and hands out files that are stable and not being processed.

    Thread model: `poll()` and `start()` run on the service's main thread; `hint()` runs on
    observer threads; `done()` and `retry_later()` on conversion threads. Only files not taken
    yet are tracked, so memory does not grow with the number of files processed (except for
    the record of files left in place by post-action 'none', see `SeenFiles`).
    """

    def __init__(
        self,
        folders: Sequence[WatchFolder],
        *,
        settle_time: float,
        rescan_interval: float,
        state_dir: Path,
        clock: Clock = SYSTEM_CLOCK,
        wake: Callable[[], None] = lambda: None,
        polling_interval: float = 2.0,
        seen: SeenFiles | None = None,
    ) -> None:
        """`seen` must be the same `SeenFiles` given to `apply_post_action()`; by default one
        is opened under `state_dir` and offered as the `seen` property."""
        self._settle_time = settle_time
        self._rescan_interval = rescan_interval
        self._polling_interval = polling_interval
        self._clock = clock
        self._wake = wake
        self._seen = seen if seen is not None else SeenFiles(state_dir)

        # Done and error folders are never scanned, even when configured as another watch
        # folder: their files were handled already.
        excluded = {os.path.abspath(p) for f in folders for p in (f.done_path, f.error_path)}
        self._folders: dict[str, _Folder] = {}
        for settings in folders:
            folder = _Folder(settings)
            if folder.key in self._folders:
                raise ConfigError(
                    f"watch folder {folder.key} appears twice in queue.watch_folders; "
                    "keep one entry per folder"
                )
            if folder.key in excluded:
                log.warning(
                    "watch folder %s is also a done or error folder, so it is not watched "
                    "(files there have been processed already); give it its own folder in "
                    "queue.watch_folders", folder.key)
                continue
            self._folders[folder.key] = folder

        self._lock = threading.Lock()
        # Guarded by _lock (touched by observer and conversion threads):
        self._hints: set[str] = set()
        self._in_flight: set[str] = set()
        self._retries: dict[str, _Candidate] = {}
        # Files processed but still lying there unchanged: their post-action failed. Taking them
        # again would convert them over and over; they wait until they change or a restart.
        self._left_behind: dict[str, tuple[int, int]] = {}
        # Main thread only:
        self._candidates: dict[str, _Candidate] = {}
        self._next_scan: float | None = None  # None: scan at the next poll()
        self._next_due: float | None = None  # when poll() has work again; None: at once
        self._scan_failing: set[str] = set()
        self._mount_points: set[str] = set()  # folders that were mount points at start
        # Files left alone on purpose (links, hard links to elsewhere), each logged once; a
        # name is forgotten when it is gone from its folder.
        self._refused: set[str] = set()
        self._hardlinks_protected = _hardlinks_protected()
        self._observers: list[BaseObserver] = []
        self._started = False

    @property
    def seen(self) -> SeenFiles:
        """The record of post-action 'none' files; pass this one to `apply_post_action()`."""
        return self._seen

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Create missing watch folders, start the observers and schedule a full scan."""
        if self._started:
            raise RuntimeError("FolderWatcher.start() called twice")
        self._started = True
        for folder in self._folders.values():
            if os.path.isdir(folder.key):
                continue
            try:
                os.makedirs(folder.key, exist_ok=True)
            except OSError as exc:
                log.error("cannot create watch folder %s (%s); create it and let the service "
                          "user read and write it. It is rescanned every %.0f s meanwhile",
                          folder.key, exc.strerror or exc, self._rescan_interval)
            else:
                log.info("created missing watch folder %s", folder.key)
        mounted = mount_points()
        self._mount_points = {key for key in self._folders
                              if os.path.realpath(key) in mounted or os.path.ismount(key)}
        native = [f for f in self._folders.values() if not f.settings.polling]
        polled = [f for f in self._folders.values() if f.settings.polling]
        if native:
            self._start_observer(Observer, native)
        if polled:
            self._start_observer(lambda: PollingObserver(timeout=self._polling_interval), polled)
        self._next_scan = None
        self._next_due = None

    def _start_observer(
        self, factory: Callable[[], BaseObserver], folders: list[_Folder]
    ) -> None:
        try:
            observer = factory()
            # Started before scheduling so that a folder which cannot be watched raises here,
            # in schedule(), and does not keep the other folders from being watched.
            observer.start()
        except OSError as exc:
            log.error("cannot start watching %s (%s); they are still rescanned every %.0f s. "
                      "Raise fs.inotify.max_user_instances or set polling for these folders",
                      ", ".join(f.key for f in folders), exc, self._rescan_interval)
            return
        self._observers.append(observer)
        handler = _HintHandler(self.hint)
        for folder in folders:
            try:
                _schedule(observer, handler, folder.key)
            except OSError as exc:
                log.error("cannot watch %s for new files (%s); it is still rescanned every "
                          "%.0f s. If the inotify watch limit is reached, raise "
                          "fs.inotify.max_user_watches", folder.key, exc, self._rescan_interval)

    def stop(self) -> None:
        """Stop and join the observer threads. Safe to call more than once."""
        observers, self._observers = self._observers, []
        for observer in observers:
            observer.stop()
        for observer in observers:
            observer.join(timeout=10.0)
            if observer.is_alive():
                log.warning("a folder observer thread did not stop within 10 s")

    # -- called from other threads ------------------------------------------------------------

    def hint(self, path: Path) -> None:
        """Note that `path` may have changed; thread-safe, cheap, wakes the main thread."""
        key = os.path.abspath(path)
        parent, name = os.path.split(key)
        folder = self._folders.get(parent)
        if folder is None or not folder.accepts(name):
            return
        with self._lock:
            if key in self._hints:
                return  # a wake for it is already pending
            self._hints.add(key)
        self._wake()

    def done(self, source: SourceFile) -> None:
        """Forget `source`: it was processed (or moved to the error folder)."""
        key = os.path.abspath(source.path)
        left: tuple[int, int] | None = None
        try:
            st = os.stat(key)
        except OSError:
            pass
        else:
            state = (st.st_size, st.st_mtime_ns)
            if state == (source.size, source.mtime_ns) and not (
                source.folder.post_action == "none" and self._seen.contains(key, *state)
            ):
                left = state
        with self._lock:
            self._in_flight.discard(key)
            if left is not None:
                self._left_behind[key] = left
        if left is None:
            return
        if source.folder.post_action == "none":
            log.warning("%s was processed but is not in the record of processed files (%s; see "
                        "any error above about it); it is not taken again until it changes or "
                        "the service restarts", key, self._seen.path)
        else:
            log.warning("%s is still in the watch folder after processing (see the error above "
                        "about its post-action); it is not taken again until it changes or the "
                        "service restarts. Fix the cause, then move the file out of the folder",
                        key)

    def retry_later(self, source: SourceFile, delay: float | None = None) -> None:
        """Not in flight any more; look again after `delay` s, once it has settled again."""
        key = os.path.abspath(source.path)
        now = self._clock.monotonic()
        wait = self._settle_time if delay is None else delay
        folder = self._folders.get(os.path.dirname(key)) or _Folder(source.folder)
        candidate = _Candidate(folder, source.size, source.mtime_ns, since=now,
                               not_before=now + wait)
        with self._lock:
            self._in_flight.discard(key)
            self._retries[key] = candidate
        self._wake()  # the main loop must learn the new deadline

    def unavailable(self) -> list[str]:
        """Watch folders that cannot be read right now (missing, unmounted, no permission)."""
        return sorted(self._scan_failing)

    def pending_count(self) -> int:
        """How many files are being watched, waiting to settle (for status)."""
        with self._lock:
            retries = len(self._retries)
        return len(self._candidates) + retries

    # -- main thread ----------------------------------------------------------------------------

    def poll(self, limit: int | None = None) -> tuple[list[SourceFile], float]:
        """Return the files ready now (marked in flight) and seconds until the next poll.

        At most `limit` files are returned when given; the rest stay ready for the next call.
        """
        now = self._clock.monotonic()
        with self._lock:
            if (not self._hints and not self._retries and self._next_due is not None
                    and now < self._next_due):
                # Nothing was hinted and nothing is due: the service calls this on every wake
                # (each finished upload or conversion), so this must cost next to nothing.
                return [], self._next_due - now
            hints, self._hints = self._hints, set()
            retries, self._retries = self._retries, {}
        self._candidates.update(retries)

        to_check = hints
        if self._next_scan is None or now >= self._next_scan:
            to_check |= self._scan()
            self._next_scan = now + self._rescan_interval
        to_check.update(
            key for key, c in self._candidates.items() if c.due(self._settle_time) <= now
        )
        later: set[str] = set()
        if len(to_check) > MAX_CHECKS_PER_POLL:
            # A burst of new files: look at some now and the rest at the next call, so the main
            # thread returns quickly to the uploads it feeds.
            later = set(itertools.islice(to_check, len(to_check) - MAX_CHECKS_PER_POLL))
            to_check -= later
            with self._lock:
                self._hints |= later

        ready = [s for s in (self._check(key, now) for key in to_check) if s is not None]
        ready.sort(key=lambda s: (s.mtime_ns, str(s.path)))  # oldest first
        if limit is not None and len(ready) > limit:
            for source in ready[limit:]:
                folder = self._folders[os.path.dirname(source.path)]
                self._candidates[str(source.path)] = _Candidate(
                    folder, source.size, source.mtime_ns, since=now - self._settle_time)
            ready = ready[:limit]
        with self._lock:
            self._in_flight.update(str(s.path) for s in ready)

        next_time = self._next_scan
        for candidate in self._candidates.values():
            next_time = min(next_time, candidate.due(self._settle_time))
        with self._lock:
            self._next_due = None if later else next_time
        # New hints need no early return: each one wakes the service itself.
        return ready, 0.0 if later else max(0.0, next_time - now)

    def _scan(self) -> set[str]:
        """Every acceptable name directly inside the watch folders (non-recursive)."""
        found: set[str] = set()
        scanned: set[str] = set()
        mounted = mount_points() if self._mount_points else set()
        for key, folder in self._folders.items():
            if key in self._mount_points and os.path.realpath(key) not in mounted:
                # The share is gone and its empty mount point is left: that is not "no files".
                if key not in self._scan_failing:
                    self._scan_failing.add(key)
                    log.warning("watch folder %s is no longer mounted; its files wait until "
                                "it is mounted again", key)
                continue
            try:
                with os.scandir(key) as entries:
                    names = []
                    for e in entries:
                        if not folder.accepts(e.name):
                            continue
                        if _is_file(e, folder.follow_symlinks):
                            names.append(e.name)
                        elif not folder.follow_symlinks and e.is_symlink():
                            self._refuse(os.path.join(key, e.name), _LINK_REFUSED)
                            names.append(e.name)  # still there: its refusal is kept
            except OSError as exc:
                if key not in self._scan_failing:
                    self._scan_failing.add(key)
                    log.warning("cannot read watch folder %s (%s); files there wait until it "
                                "is readable again. Check that it exists, is mounted and the "
                                "service user may read it", key, exc.strerror or exc)
                continue
            if key in self._scan_failing:
                self._scan_failing.discard(key)
                log.info("watch folder %s is readable again", key)
            scanned.add(key)
            found.update(os.path.join(key, name) for name in names)
        with self._lock:
            for key in [k for k in self._left_behind if k not in found]:
                if os.path.dirname(key) in scanned:
                    del self._left_behind[key]  # gone: nothing to keep it from
        for key in [k for k in self._refused if k not in found]:
            if os.path.dirname(key) in scanned:
                self._refused.discard(key)
        return {key for key in found if key not in self._refused}

    def _check(self, key: str, now: float) -> SourceFile | None:
        """Stat one candidate path and decide: drop, keep waiting, or take it now."""
        folder = self._folders.get(os.path.dirname(key))
        follow = folder is not None and folder.follow_symlinks
        try:
            st = os.stat(key, follow_symlinks=follow)
        except OSError:
            st = None
        if folder is None or st is None or not stat.S_ISREG(st.st_mode):
            self._candidates.pop(key, None)
            if st is None:
                with self._lock:
                    self._left_behind.pop(key, None)
            elif stat.S_ISLNK(st.st_mode):
                self._refuse(key, _LINK_REFUSED)
            return None
        if st.st_nlink > 1 and not follow and not self._hardlinks_protected and not _moving(
                folder.settings, key, st):
            self._candidates.pop(key, None)
            self._refuse(key, _HARDLINK_REFUSED)
            return None
        state = (st.st_size, st.st_mtime_ns)
        with self._lock:
            busy = key in self._in_flight or key in self._retries
            left = self._left_behind.get(key)
            if left is not None and left != state:
                del self._left_behind[key]  # it changed: a new file under the old name
        if busy or left == state:
            self._candidates.pop(key, None)
            return None
        if folder.settings.post_action == "none" and self._seen.contains(key, *state):
            self._candidates.pop(key, None)
            return None

        candidate = self._candidates.get(key)
        if candidate is None:
            # Fast path: a file this old was complete before we looked (e.g. written while the
            # service was down), so waiting for it to settle only adds latency.
            age = self._clock.time() - st.st_mtime_ns / 1e9
            since = now - self._settle_time if age >= self._settle_time else now
            candidate = _Candidate(folder, st.st_size, st.st_mtime_ns, since)
            self._candidates[key] = candidate
        elif (candidate.size, candidate.mtime_ns) != state:
            candidate.size, candidate.mtime_ns, candidate.since = st.st_size, st.st_mtime_ns, now
        if candidate.due(self._settle_time) > now:
            return None
        try:
            # Some writers (SMB clients, Windows tools) hold files locked until they finish.
            # Never blocking (a named pipe swapped in meanwhile), never through a link.
            fd = os.open(key, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC
                         | (0 if follow else os.O_NOFOLLOW))
            regular = stat.S_ISREG(os.fstat(fd).st_mode)
            os.close(fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP and not follow:
                self._candidates.pop(key, None)
                self._refuse(key, _LINK_REFUSED)
                return None
            candidate.since = now
            if not candidate.warned_unreadable:
                candidate.warned_unreadable = True
                log.warning("cannot open %s for reading (%s); trying again. If this lasts, let "
                            "the service user read it", key, exc.strerror or exc)
            return None
        if not regular:
            self._candidates.pop(key, None)
            return None
        del self._candidates[key]
        log.debug("taking %s (%d bytes)", key, st.st_size)
        return SourceFile(folder.settings, Path(key), st.st_size, st.st_mtime_ns)

    def _refuse(self, key: str, why: str) -> None:
        """Leave `key` alone, saying why once (until it is gone from its folder)."""
        if key in self._refused:
            return
        self._refused.add(key)
        log.warning("%r %s", key, why)


def _schedule(observer: BaseObserver, handler: FileSystemEventHandler, path: str) -> None:
    try:
        observer.schedule(handler, path, recursive=False, event_filter=_HINT_EVENTS)
    except TypeError:  # watchdog < 4 has no event filter: every event, as before
        observer.schedule(handler, path, recursive=False)


_LINK_REFUSED = (
    "is a symbolic link: it is left where it is and not converted, since a link could make "
    "the service read files elsewhere. If links are meant to be taken from this folder, set "
    "follow_symlinks for it in queue.watch_folders")
_HARDLINK_REFUSED = (
    "has other hard links and this system does not protect hard links "
    "(fs.protected_hardlinks is 0): it could be a link to a file elsewhere, so it is left "
    "where it is. Copy it into the folder instead of linking it")


def _is_file(entry: os.DirEntry[str], follow_symlinks: bool) -> bool:
    try:
        return entry.is_file(follow_symlinks=follow_symlinks)
    except OSError:
        return False


def _hardlinks_protected() -> bool:
    """True when the kernel lets a user hard-link only files they own or may read and write
    (so a hard link in a watch folder cannot reveal a file its writer could not read)."""
    try:
        with open("/proc/sys/fs/protected_hardlinks", encoding="ascii") as fh:
            return fh.read().strip() == "1"
    except OSError:
        return False


def _moving(folder: WatchFolder, key: str, st: os.stat_result) -> bool:
    """True when the file's other name is in its own done or error folder: a move that a crash
    interrupted, which the post-action finishes."""
    for dest in (folder.done_path, folder.error_path):
        try:
            fd = open_dir(dest, base=folder.path)
        except OSError:
            continue
        try:
            if linked_name(fd, os.path.basename(key), st) is not None:
                return True
        finally:
            os.close(fd)
    return False

"""Finds the files in the watch folders that are ready to be converted: what the writer did
(closed the file after writing, renamed it in) where file events can be trusted, the settle
rule (a file is taken once quiet for a while) where they cannot, a periodic full rescan as the
truth, files waiting to be completed, and the set of files in flight.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import stat
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pywats_client.clock import SYSTEM_CLOCK, Clock
from pywats_client.config.settings import WatchFolder
from pywats_client.errors import ConfigError
from pywats_client.fsutil import NETWORK_OR_WEAK_FILESYSTEMS, filesystem_type, mount_points
from pywats_client.service import linuxfs
from pywats_client.service.linuxfs import FolderEvents, Hint
from pywats_client.service.postaction import SeenFiles, SourceFile
from pywats_client.service.watch_rules import (
    HARDLINK_REFUSED,
    LINK_REFUSED,
    Candidate,
    WatchedFolder,
    file_state,
    hardlinks_protected,
    is_file,
    is_ignored_name,
    moving_out,
)

if TYPE_CHECKING:
    from watchdog.observers.api import BaseObserver

__all__ = ["FolderWatcher", "Hint", "SourceFile", "is_ignored_name"]

log = logging.getLogger(__name__)

MAX_CHECKS_PER_POLL = 200  # files stat'ed and opened per poll(); the rest wait for the next
# Files the watcher keeps in mind at once: hinted by an event, waiting to settle or to be
# completed (a few hundred bytes each). A folder flooded with more (a writer gone wild, a
# backlog copied in at once) is taken MAX_TRACKED at a time: the names beyond are not held in
# memory but found by a rescan once half of those are taken, as after the kernel's event
# queue overflowed. Unbounded, 150,000 files dropped at once took the service from 39 to 180
# MB, past the 128 MB the systemd unit allows, and a restart would find them all again.
MAX_TRACKED = 10_000


def forget_oldest(record: dict[Any, Any]) -> None:
    """Keep a per-file record of the service (files waiting for their end, files held by a
    station fault) to MAX_TRACKED entries, dropping the oldest: an entry is forgotten when its
    file goes its way, but a file deleted while it waits goes no way anyone hears of, and a
    writer could make and delete such files for ever. A file still there whose entry was
    dropped starts its wait again."""
    while len(record) > MAX_TRACKED:
        del record[next(iter(record))]


class FolderWatcher:
    """Watches folders and hands out files that are complete and not being processed.

    When a file is ready:

    * renamed into the folder (inotify IN_MOVED_TO, from this folder or another): at once,
      the writer finished it elsewhere;
    * closed after writing (IN_CLOSE_WRITE): at once;
    * either way, not while another process still has it open for writing (asked with a read
      lease where the service may take one; see `linuxfs.open_for_writing`). Held open but
      unchanged for `incomplete_timeout`, it is taken all the same, with a warning;
    * where no event can be trusted (polling folders, network shares, FAT media, FUSE), and for
      what a scan finds: once unchanged for `settle_time` (at once when its mtime is older);
    * a file its converter found incomplete (`wait_for_change()`): when it changes and is
      ready again by the rules above, or at the deadline given.

    The converters' own check (a file cut short raises IncompleteFileError) stays the last
    word: a writer that closes and reopens the file between lines is caught there.

    Thread model: `poll()` and `start()` run on the service's main thread; `hint()` runs on
    observer threads; `done()`, `retry_later()` and `wait_for_change()` on any thread. Only
    files not taken yet are tracked, so memory does not grow with the number of files
    processed (except for the record of files left in place by post-action 'none', see
    `SeenFiles`).
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
        incomplete_timeout: float = 300.0,
        leases: bool = True,
    ) -> None:
        """`seen` must be the same `SeenFiles` given to `apply_post_action()`; by default one
        is opened under `state_dir` and offered as the `seen` property. `leases` False never
        asks whether a file is still open for writing (the converters' check remains)."""
        self._settle_time = settle_time
        self._rescan_interval = rescan_interval
        self._polling_interval = polling_interval
        self._incomplete_timeout = incomplete_timeout
        self._leases = leases and sys.platform.startswith("linux")
        self._clock = clock
        self._wake = wake
        self._seen = seen if seen is not None else SeenFiles(state_dir)

        # Done and error folders are never scanned, even when configured as another watch
        # folder: their files were handled already.
        excluded = {os.path.abspath(p) for f in folders for p in (f.done_path, f.error_path)}
        self._folders: dict[str, WatchedFolder] = {}
        for settings in folders:
            folder = WatchedFolder(settings)
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
        self._hints: dict[str, Hint] = {}
        self._in_flight: set[str] = set()
        self._retries: dict[str, Candidate] = {}
        self._while_busy: dict[str, Hint] = {}  # hints for files in flight, kept for a retry
        self._watched: set[str] = set()  # folders whose events arrive (native observers)
        self._rescan_requested = False
        # More files were seen than MAX_TRACKED allows: a rescan finds the rest when there is
        # room. `_settling` is how many candidates the main thread holds (for hint()).
        self._overflowed = False
        self._settling = 0
        # Files processed but still lying there unchanged: their post-action failed. Taking them
        # again would convert them over and over; they wait until they change or a restart.
        self._left_behind: dict[str, tuple[int, int]] = {}
        # Main thread only:
        self._candidates: dict[str, Candidate] = {}
        self._next_scan: float | None = None  # None: scan at the next poll()
        self._next_due: float | None = None  # when poll() has work again; None: at once
        self._scan_failing: set[str] = set()
        self._mount_points: set[str] = set()  # folders that were mount points at start
        # Files left alone on purpose (links, hard links to elsewhere), each logged once; a
        # name is forgotten when it is gone from its folder.
        self._refused: set[str] = set()
        self._told_refusals = False  # that more than MAX_TRACKED were refused
        self._told_overflow = False  # that more than MAX_TRACKED files wait
        self._hardlinks_protected = hardlinks_protected()
        self._observers: list[BaseObserver] = []
        self._events: FolderEvents | None = None
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
        for folder in self._folders.values():
            fstype = filesystem_type(Path(folder.key)) or ""
            folder.local = not (fstype in NETWORK_OR_WEAK_FILESYSTEMS
                                or fstype.startswith("fuse"))
            if not folder.local and not folder.settings.polling:
                log.info("watch folder %s is on %s: files are taken once unchanged for %g s "
                         "(file events there miss what other machines write)", folder.key,
                         fstype, self._settle_time)
        mounted = mount_points()
        self._mount_points = {key for key in self._folders
                              if os.path.realpath(key) in mounted or os.path.ismount(key)}
        native = [f for f in self._folders.values() if not f.settings.polling]
        polled = [f for f in self._folders.values() if f.settings.polling]
        if native and linuxfs.available():
            self._start_events(native)
        elif native:
            self._start_observer(_native_observer, native, trusted=True)
        if polled:
            interval = self._polling_interval
            self._start_observer(lambda: _polling_observer(interval), polled, trusted=False)
        self._next_scan = None
        self._next_due = None

    def _start_events(self, folders: list[WatchedFolder]) -> None:
        try:
            self._events = FolderEvents(self._on_event, self._request_rescan, self._on_lost)
        except OSError as exc:
            log.error("cannot start watching %s (%s); they are still rescanned every %.0f s. "
                      "Raise fs.inotify.max_user_instances or set polling for these folders",
                      ", ".join(f.key for f in folders), exc, self._rescan_interval)
            return
        for folder in folders:
            self._add_watch(folder, quiet=False)

    def _add_watch(self, folder: WatchedFolder, *, quiet: bool) -> None:
        assert self._events is not None
        try:
            self._events.add(folder.key)
        except OSError as exc:
            if not quiet:
                log.error("cannot watch %s for new files (%s); it is still rescanned every "
                          "%.0f s. If the inotify watch limit is reached, raise "
                          "fs.inotify.max_user_watches", folder.key, exc.strerror or exc,
                          self._rescan_interval)
            return
        with self._lock:
            self._watched.add(folder.key)
        if quiet:
            log.info("watch folder %s is watched for new files again", folder.key)

    def _start_observer(
        self, factory: Callable[[], BaseObserver], folders: list[WatchedFolder], *, trusted: bool
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
        from pywats_client.service import observers  # only where watchdog watches (see there)

        handler = observers.HintHandler(self.hint)
        for folder in folders:
            try:
                observers.schedule(observer, handler, folder.key)
            except OSError as exc:
                log.error("cannot watch %s for new files (%s); it is still rescanned every "
                          "%.0f s. If the inotify watch limit is reached, raise "
                          "fs.inotify.max_user_watches", folder.key, exc, self._rescan_interval)
                continue
            if trusted:
                with self._lock:
                    self._watched.add(folder.key)

    def stop(self) -> None:
        """Stop and join the observer threads. Safe to call more than once."""
        events, self._events = self._events, None
        if events is not None:
            events.stop()
        observers, self._observers = self._observers, []
        for observer in observers:
            observer.stop()
        for observer in observers:
            observer.join(timeout=10.0)
            if observer.is_alive():
                log.warning("a folder observer thread did not stop within 10 s")

    # -- called from other threads ------------------------------------------------------------

    def hint(self, path: Path | str, kind: Hint = Hint.LOOK) -> None:
        """Note that `path` may have changed, and what its writer did (`kind`); thread-safe,
        cheap, wakes the main thread. Writer events count only in folders whose events can
        be trusted; elsewhere every hint means "look"."""
        key = os.path.abspath(path)
        parent, name = os.path.split(key)
        folder = self._folders.get(parent)
        if folder is None or not folder.accepts(name):
            return
        with self._lock:
            pending = self._hints.get(key)
            if pending is None and len(self._hints) + self._settling >= MAX_TRACKED:
                self._overflowed = True  # a rescan finds it once there is room
                return
            # The last word of the writer counts (closed, then opened again: writing); a mere
            # "look" does not undo what the writer said.
            if pending is None or kind is not Hint.LOOK:
                self._hints[key] = kind
            if pending is not None:
                return  # a wake for it is already pending
        self._wake()

    def _on_event(self, path: str, kind: Hint) -> None:
        try:
            self.hint(path, kind)
        except Exception:  # the events thread must go on
            log.exception("could not note the change of %r; the next rescan will find it", path)

    def _request_rescan(self) -> None:
        log.warning("file events were lost (the kernel's queue was full); rescanning the "
                    "watch folders")
        with self._lock:
            self._rescan_requested = True
        self._wake()

    def _on_lost(self, key: str) -> None:
        with self._lock:
            if key not in self._watched:
                return
            self._watched.discard(key)
        log.warning("watch folder %s is no longer watched for new files (deleted, moved or "
                    "unmounted); it is rescanned every %.0f s and watched again once it is "
                    "back", key, self._rescan_interval)
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
            missed = self._while_busy.pop(key, None)
            if left is not None:
                self._left_behind[key] = left
            elif missed is not None:
                self._hints.setdefault(key, Hint.LOOK)  # it changed meanwhile: look at it
        if left is None:
            if missed is not None:
                self._wake()
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
        now = self._clock.monotonic()
        wait = self._settle_time if delay is None else delay
        self._give_back(source, since=now, not_before=now + wait)

    def wait_for_change(self, source: SourceFile, delay: float) -> None:
        """Not in flight any more, and incomplete as it is: look again as soon as it changes
        and is ready again (closed or renamed in where events are trusted, settled
        elsewhere), or after `delay` s if it does not change (for the caller to give up)."""
        now = self._clock.monotonic()
        self._give_back(source, since=now, parked_until=now + delay)

    def _give_back(self, source: SourceFile, *, since: float, not_before: float = 0.0,
                   parked_until: float | None = None) -> None:
        key = os.path.abspath(source.path)
        folder = self._folders.get(os.path.dirname(key)) or WatchedFolder(source.folder)
        candidate = Candidate(folder, source.size, source.mtime_ns, since=since,
                               not_before=not_before, parked_until=parked_until)
        with self._lock:
            self._in_flight.discard(key)
            self._retries[key] = candidate
            missed = self._while_busy.pop(key, None)
            if missed is not None:
                # Written to while it was being converted: what the writer did counts now.
                pending = self._hints.get(key)
                if pending is None or pending is Hint.LOOK:
                    self._hints[key] = missed
        self._wake()  # the main loop must learn the new deadline

    def unavailable(self) -> list[str]:
        """Watch folders that cannot be read right now (missing, unmounted, no permission)."""
        return sorted(self._scan_failing)

    def pending_count(self) -> int:
        """How many files are being watched, waiting to settle (for status)."""
        with self._lock:
            retries = len(self._retries)
        return len(self._candidates) + retries

    def has_work(self) -> bool:
        """True while a file noticed in a watch folder has not been handed out or dropped:
        hinted, waiting to settle, given back, or beyond MAX_TRACKED and not looked at yet."""
        with self._lock:
            noticed = bool(self._hints or self._retries or self._overflowed)
        return noticed or bool(self._candidates)

    # -- main thread ----------------------------------------------------------------------------

    def poll(self, limit: int | None = None) -> tuple[list[SourceFile], float]:
        """Return the files ready now (marked in flight) and seconds until the next poll.

        At most `limit` files are returned when given; the rest stay ready for the next call.
        """
        now = self._clock.monotonic()
        with self._lock:
            # Half the files in mind taken: look for those beyond MAX_TRACKED.
            refill = self._overflowed and (
                len(self._hints) + len(self._retries) + len(self._candidates) < MAX_TRACKED // 2)
            if (not self._hints and not self._retries and not self._rescan_requested
                    and not refill and self._next_due is not None and now < self._next_due):
                # Nothing was hinted and nothing is due: the service calls this on every wake
                # (each finished upload or conversion), so this must cost next to nothing.
                return [], self._next_due - now
            hints, self._hints = self._hints, {}
            retries, self._retries = self._retries, {}
            rescan, self._rescan_requested = self._rescan_requested, False
        self._candidates.update(retries)

        to_check = hints
        if rescan or refill or self._next_scan is None or now >= self._next_scan:
            with self._lock:
                self._overflowed = False  # what is dropped from now on sets it again
            found, overflowed = self._scan(to_check)
            if overflowed:
                with self._lock:
                    self._overflowed = True
            for key in found:
                to_check.setdefault(key, Hint.LOOK)
            self._next_scan = now + self._rescan_interval
        for key, candidate in self._candidates.items():
            if candidate.due(self._settle_time) <= now:
                to_check.setdefault(key, Hint.LOOK)
        later = False
        if len(to_check) > MAX_CHECKS_PER_POLL:
            # A burst of new files: look at some now and the rest at the next call, so the main
            # thread returns quickly to the uploads it feeds.
            later = True
            keys = list(itertools.islice(to_check, len(to_check) - MAX_CHECKS_PER_POLL))
            with self._lock:
                for key in keys:
                    hint = to_check.pop(key)
                    pending = self._hints.get(key)
                    if pending is None or pending is Hint.LOOK:
                        self._hints[key] = hint  # nothing newer came from the writer

        ready = [s for s in (self._check(key, now, hint) for key, hint in to_check.items())
                 if s is not None]
        ready.sort(key=lambda s: (s.mtime_ns, str(s.path)))  # oldest first
        if limit is not None and len(ready) > limit:
            for source in ready[limit:]:
                folder = self._folders[os.path.dirname(source.path)]
                self._candidates[str(source.path)] = Candidate(
                    folder, source.size, source.mtime_ns, since=now, signalled=now)
            ready = ready[:limit]
        with self._lock:
            self._in_flight.update(str(s.path) for s in ready)

        next_time = self._next_scan
        for candidate in self._candidates.values():
            next_time = min(next_time, candidate.due(self._settle_time))
        with self._lock:
            self._next_due = None if later else next_time
            self._settling = len(self._candidates)
        # New hints need no early return: each one wakes the service itself.
        return ready, 0.0 if later else max(0.0, next_time - now)

    def _scan(self, hinted: dict[str, Hint]) -> tuple[set[str], bool]:
        """The acceptable names directly inside the watch folders (non-recursive) to look at:
        those in mind already, and new ones while fewer than MAX_TRACKED are; True with them
        when new ones were left out (found by a later scan). Names in flight, left behind or
        refused are not new."""
        found: set[str] = set()
        scanned: set[str] = set()
        room = MAX_TRACKED - len(hinted) - len(self._candidates)
        overflowed = False
        with self._lock:
            busy = set(self._in_flight)
            busy.update(self._retries)
            left_behind = dict(self._left_behind)
        present: set[str] = set()  # of those left behind or refused: still there
        mounted = mount_points() if self._mount_points else set()
        for key, folder in self._folders.items():
            if key in self._mount_points and os.path.realpath(key) not in mounted:
                # The share is gone and its empty mount point is left: that is not "no files".
                if key not in self._scan_failing:
                    self._scan_failing.add(key)
                    log.warning("watch folder %s is no longer mounted; its files wait until "
                                "it is mounted again", key)
                continue
            none = folder.settings.post_action == "none"
            try:
                with os.scandir(key) as entries:
                    for e in entries:
                        if not folder.accepts(e.name):
                            continue
                        path = os.path.join(key, e.name)
                        if path in self._refused:
                            present.add(path)  # still there: its refusal is kept
                        elif path in left_behind:
                            present.add(path)
                            if file_state(e, folder.follow_symlinks) != left_behind[path]:
                                found.add(path)  # changed: a new file under the old name
                        elif is_file(e, folder.follow_symlinks):
                            if path in hinted or path in self._candidates:
                                found.add(path)
                            elif path in busy or (none and self._processed(e, folder)):
                                pass
                            elif room > 0:
                                found.add(path)
                                room -= 1
                            else:
                                overflowed = True
                        elif not folder.follow_symlinks and e.is_symlink():
                            # Kept only while it is refused by name: a flood of links must not
                            # grow this scan's memory past MAX_TRACKED names either.
                            refused = self._refuse(path, LINK_REFUSED)
                            if refused:
                                present.add(path)
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
            if self._events is not None and not folder.settings.polling:
                with self._lock:
                    lost = key not in self._watched
                if lost:
                    self._add_watch(folder, quiet=True)
            scanned.add(key)
        with self._lock:
            for key in [k for k in self._left_behind if k not in present]:
                if os.path.dirname(key) in scanned:
                    del self._left_behind[key]  # gone: nothing to keep it from
        for key in [k for k in self._refused if k not in present]:
            if os.path.dirname(key) in scanned:
                self._refused.discard(key)
        if overflowed and not self._told_overflow:
            log.warning("more than %d files wait in the watch folders: they are taken %d at a "
                        "time, not oldest first, and found by a rescan as room is made",
                        MAX_TRACKED, MAX_TRACKED)
        elif not overflowed and self._told_overflow:
            log.info("every file waiting in the watch folders is in mind again")
        self._told_overflow = overflowed
        return found, overflowed

    def _processed(self, entry: os.DirEntry[str], folder: WatchedFolder) -> bool:
        """True for a file of a post-action 'none' folder processed as it is now."""
        state = file_state(entry, folder.follow_symlinks)
        return state is not None and self._seen.contains(entry.path, *state)

    def _trusts(self, folder: WatchedFolder) -> bool:
        """True when the events of `folder` tell what its writers did."""
        if folder.settings.polling or not folder.local:
            return False
        with self._lock:
            return folder.key in self._watched

    def _check(self, key: str, now: float, hint: Hint = Hint.LOOK) -> SourceFile | None:
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
                self._refuse(key, LINK_REFUSED)
            return None
        if st.st_nlink > 1 and not follow and not self._hardlinks_protected and not moving_out(
                folder.settings, key, st):
            self._candidates.pop(key, None)
            self._refuse(key, HARDLINK_REFUSED)
            return None
        state = (st.st_size, st.st_mtime_ns)
        with self._lock:
            busy = key in self._in_flight or key in self._retries
            if key in self._in_flight and hint is not Hint.LOOK:
                self._while_busy[key] = hint  # for wait_for_change() or done()
            elif key in self._in_flight:
                self._while_busy.setdefault(key, hint)
            left = self._left_behind.get(key)
            if left is not None and left != state:
                del self._left_behind[key]  # it changed: a new file under the old name
        if busy or left == state:
            self._candidates.pop(key, None)
            return None
        if folder.settings.post_action == "none" and self._seen.contains(key, *state):
            self._candidates.pop(key, None)
            return None

        if hint is not Hint.LOOK and not self._trusts(folder):
            hint = Hint.LOOK
        candidate = self._candidates.get(key)
        if candidate is None:
            # Fast path: a file this old was complete before we looked (e.g. written while the
            # service was down), so waiting for it to settle only adds latency.
            age = self._clock.time() - st.st_mtime_ns / 1e9
            old = hint is Hint.LOOK and age >= self._settle_time
            candidate = Candidate(folder, st.st_size, st.st_mtime_ns,
                                   now - self._settle_time if old else now)
            self._candidates[key] = candidate
        elif (candidate.size, candidate.mtime_ns) != state:
            candidate.changed(st.st_size, st.st_mtime_ns, now)
        if hint is Hint.CLOSED or hint is Hint.RENAMED:
            candidate.signalled = now
        elif hint is Hint.WRITING:
            candidate.signalled = None
        if candidate.due(self._settle_time) > now:
            return None
        try:
            writing = self._writing(key, candidate, follow)
        except FileNotFoundError:
            self._candidates.pop(key, None)
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP and not follow:
                self._candidates.pop(key, None)
                self._refuse(key, LINK_REFUSED)
                return None
            # Some writers (SMB clients, Windows tools) hold files locked until they finish.
            candidate.since, candidate.signalled = now, None
            if candidate.parked_until is not None:
                candidate.parked_until = now + self._settle_time
            if not candidate.warned_unreadable:
                candidate.warned_unreadable = True
                log.warning("cannot open %s for reading (%s); trying again. If this lasts, let "
                            "the service user read it", key, exc.strerror or exc)
            return None
        if writing is None:  # not a regular file: something was swapped in meanwhile
            self._candidates.pop(key, None)
            return None
        if writing:
            if candidate.held_since is None:
                candidate.held_since = now
            if now - candidate.held_since < self._incomplete_timeout:
                # Its writer is still at it: the close, or the settle time, says when to look.
                candidate.since, candidate.signalled = now, None
                log.debug("%s is still open for writing; waiting for its writer", key)
                return None
            log.warning("%s has been open for writing by another process for %.0f s without "
                        "a change; taking it", key, now - candidate.held_since)
        del self._candidates[key]
        log.debug("taking %s (%d bytes)", key, st.st_size)
        return SourceFile(folder.settings, Path(key), st.st_size, st.st_mtime_ns)

    def _refuse(self, key: str, why: str) -> bool:
        """Leave `key` alone, saying why once (until it is gone from its folder); False when
        MAX_TRACKED names are refused already: this one is left alone all the same, looked
        at again by each scan, and not named."""
        if key in self._refused:
            return True
        if len(self._refused) >= MAX_TRACKED:
            if not self._told_refusals:
                self._told_refusals = True
                log.warning("more than %d files in the watch folders are left alone (links); "
                            "the rest are not named one by one", MAX_TRACKED)
            return False
        self._refused.add(key)
        log.warning("%r %s", key, why)
        return True

    def _writing(self, key: str, candidate: Candidate, follow: bool) -> bool | None:
        """True while another process has the file open for writing, where that can be
        asked; None when it is not a regular file (swapped in meanwhile). The file is opened
        as it will be read: never blocking (a named pipe) and, unless the folder follows
        links, never through a link. Raises OSError when it cannot be opened for reading."""
        flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
        try:
            fd = os.open(key, flags if follow else flags | os.O_NOFOLLOW)
        except BlockingIOError:
            return True  # under another's write lease (Samba keeps some): being written
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            # A file waiting to be completed that did not change is handed back at its
            # deadline whoever holds it: its converter says whether it is complete by now.
            if self._leases and candidate.folder.local and candidate.parked_until is None:
                return linuxfs.writers_of(fd) is True
            return False
        finally:
            os.close(fd)


def _native_observer() -> BaseObserver:
    from pywats_client.service import observers

    return observers.native()


def _polling_observer(interval: float) -> BaseObserver:
    from pywats_client.service import observers

    return observers.polling(interval)

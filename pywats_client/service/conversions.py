"""The conversion side of the `Service`: its pool of conversion threads, which waiting file
starts next, a thread's work (file -> reports -> durable queue -> post-action), one handler per
outcome on the main thread, and the time limit (converters.timeout_s) with its stuck threads.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import enum
import errno
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pywats_client.converters import ConversionSkipped
from pywats_client.errors import (
    ConversionError,
    IncompleteFileError,
    ProcessListUnknownError,
    QueueFullError,
    ReportIdClashError,
)
from pywats_client.fsutil import UnsafePathError
from pywats_client.service import watcher
from pywats_client.service.journal import ConversionTicket, FileKey, file_key
from pywats_client.service.pipeline import (
    companions_of,
    convert_file,
    converter_for,
    make_context,
    max_file_bytes,
    queue_reports,
)
from pywats_client.service.postaction import (
    SourceChangedError,
    SourceFile,
    apply_post_action,
    move_to_error,
    protected_folders,
    put_skipped_aside,
)

if TYPE_CHECKING:
    from pywats_client.service.loop import Service

log = logging.getLogger(__name__)

CONVERSION_WORKERS = 10
# Conversions handed to the pool at once; the files ready after them wait in `waiting` (a few
# hundred bytes each), not as work items of the pool.
MAX_CONVERSIONS_QUEUED = 2 * CONVERSION_WORKERS
# Files handed out by the watcher that wait for a conversion thread (a few hundred bytes each);
# the rest of a flood stays with the watcher, which keeps a bounded number in mind
# (watcher.MAX_TRACKED).
MAX_WAITING = 1000
# While more reports wait for an upload slot than the workers can take, converting faster only
# lengthens that line, and a busy conversion thread makes the upload workers wait for the
# interpreter lock: each of an upload's twenty-odd system calls gives the lock up, and taking
# it back behind a busy thread took 1.5 ms (median) in a backlog on 2 cores. Then a file
# starts converting only when no other converts and the last one started LAGGING_START_GAP
# ago: the upload workers get the interpreter to themselves between conversions, and files
# still convert at up to 1 / LAGGING_START_GAP a second however long the line (a backlog
# after an outage). The limit lifts as soon as the line is short again (scripts/bench.py,
# throughput, UUT example at L = 20 ms: 87 % of the 5 / L limit with one conversion always
# running, 90-91 % with this gap).
LAGGING_START_GAP = 0.02
# Conversions that compute compete for the one interpreter lock, with each other and with the
# upload workers, and every system call hands the lock over: with ten at once on 2 cores, a
# report cost 4.1 ms of CPU, 1.8 ms of it in the kernel handing the lock around; with two,
# 3.4 ms, and 10 % more reports per second (scripts/bench.py, cpu and throughput). So a new
# conversion starts only while fewer than two others, started in the last BUSY_SECONDS, still
# run. One that runs longer is taken to be waiting (a file on a slow share, a slow disk) and
# no longer counts, so a folder that is slow to read still gets all ten threads; so does a run
# of large files that each compute for longer (the lock is then handed over less often, per
# second of work).
BUSY_CONVERSIONS = 2
BUSY_SECONDS = 0.05
DISK_FULL_RETRY = 5.0  # seconds before a file that met a full disk is tried again
# Conversions given up after converters.timeout_s whose threads still run, before no new
# conversion is started: each holds one of the pool's threads, and they cannot be killed.
MAX_STUCK_CONVERSIONS = CONVERSION_WORKERS // 2
# Errors of the station, not of the file, whatever a converter was doing when it met them.
STATION_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.EIO, errno.ENOBUFS})


class ConversionOutcome(enum.Enum):
    """What became of one source file; `Conversions` has one handler for each, `_on_<value>`."""

    QUEUED = "queued"  # its reports are durably queued; the post-action was applied
    ERROR = "error"  # cannot be converted: moved to the error folder
    INCOMPLETE = "incomplete"  # looks truncated, still being written: look again later
    DISK_FULL = "disk_full"  # no room for its reports: the file waits, tried again soon
    GONE = "gone"  # vanished before it was converted
    SKIPPED = "skipped"  # its converter said it holds no report: put aside with a note
    ID_CLASH = "id_clash"  # a report id taken by a different report: moved to the error folder
    # It names its process and no process list is known yet: it waits in its folder (in flight
    # to the watcher) until the list is fetched, then it is taken again.
    WAITING_FOR_PROCESSES = "waiting_for_processes"
    STORE_FAULT = "store_fault"  # the queue cannot be written (not full): the file waits
    ABANDONED = "abandoned"  # given up (time limit, stop): its thread changed nothing


@dataclass(frozen=True)
class _Converted:
    """A conversion thread's result for the main thread's bookkeeping."""

    source: SourceFile
    outcome: ConversionOutcome
    message: str = ""
    queued: tuple[str, ...] = ()
    companions: tuple[Path, ...] = ()
    folder_problem: str = ""  # a done or error folder refused (a link, not a folder, protected)


class Conversions:
    """The files of one `Service` being converted, and those waiting for a thread. Reads the
    service's settings, process list, queue and counters through `service`; its methods run on
    the service's main thread, except the thread's work (`_convert`), which changes nothing
    unless its `ConversionTicket` allows it.
    """

    def __init__(self, service: Service, wakeup: threading.Event) -> None:
        self.service = service
        self._wakeup = wakeup  # set when a conversion ends
        self._pool = ThreadPoolExecutor(CONVERSION_WORKERS, thread_name_prefix="convert")
        self._protect = protected_folders(service.paths)  # never the destination of a move
        self.running: dict[Future[_Converted], SourceFile] = {}
        # Ended conversions, put here by their futures' callbacks: collected without scanning
        # every running one each round.
        self._ended: collections.deque[Future[_Converted]] = collections.deque()
        self.waiting: collections.deque[SourceFile] = collections.deque()
        self._tickets: dict[Future[_Converted], ConversionTicket] = {}
        self._stuck: set[Future[_Converted]] = set()  # given up, their threads still running
        # incomplete file -> (since when unchanged, looks, its size, mtime and companions)
        self._incomplete_since: dict[Path, tuple[float, int, tuple[int, ...]]] = {}
        self.awaiting_processes: dict[Path, SourceFile] = {}  # name their process; no list
        self._lagging = False  # uploads lag: files start LAGGING_START_GAP apart, one at a time
        self._last_start = -math.inf  # monotonic
        # One handler per outcome, `_on_<outcome>`: a missing one fails here, at the start.
        self._handlers: dict[ConversionOutcome, Callable[[_Converted], None]] = {
            outcome: getattr(self, f"_on_{outcome.value}") for outcome in ConversionOutcome}

    def unfinished(self) -> int:
        """Conversion threads still busy, given up or not."""
        return sum(1 for f in [*self.running, *self._stuck] if not f.done())

    def oldest_start(self) -> float | None:
        """When the longest-running conversion started (monotonic), None when none runs."""
        return min((t.started_at for t in self._tickets.values() if t.started_at is not None),
                   default=None)

    # -- starting ---------------------------------------------------------------------------

    def room(self) -> int:
        """How many more ready files `waiting` takes: MAX_WAITING in all, with those waiting
        for the server's process list; none while fewer than the watcher looks at in one poll
        would fit. In a flood it is full, and asking the watcher for the one file the end of
        each conversion makes room for would have it look at a whole poll's worth of files
        each time (a stat, an open and a lease each)."""
        free = MAX_WAITING - len(self.waiting) - len(self.awaiting_processes)
        return free if free >= watcher.MAX_CHECKS_PER_POLL else 0

    def submit(self) -> None:
        s = self.service
        self._lagging = False
        if s.status.conversions_paused:
            return  # too many converter threads are stuck: the files wait in `waiting`
        if any(ticket.suspect for ticket in self._tickets.values()):
            return  # a file the service died on converts alone, so a death is pinned on it
        now = s.clock.monotonic()
        limit = MAX_CONVERSIONS_QUEUED
        if s.dispatcher.uploads_lag():
            self._lagging = True
            limit = 0 if self.running or now < self._last_start + LAGGING_START_GAP else 1
        busy = self._busy(now)
        while self.waiting and len(self.running) < limit and busy < BUSY_CONVERSIONS:
            source = self.waiting.popleft()
            key = file_key(source.path, source.size, source.mtime_ns)
            if key in s.poison.poisoned:
                s.watcher.done(source)  # set aside, but it could not be moved away
                continue
            if s.poison.hold(source, key):
                continue  # last, and alone
            self._start(source, key)
            busy += 1
        if s.poison.held and not self.running and not self.waiting:
            crashes, source = s.poison.next_alone()
            log.warning("converting %s alone: the service died while converting it before "
                        "(%d time(s); converters.max_crashes is %d)", source.path, crashes,
                        s.settings.converters.max_crashes)
            self._start(source, file_key(source.path, source.size, source.mtime_ns),
                        suspect=True)

    def _busy(self, now: float) -> int:
        """Conversions not yet started or started less than BUSY_SECONDS ago."""
        return sum(1 for t in self._tickets.values()
                   if t.started_at is None or now - t.started_at < BUSY_SECONDS)

    def next_start_in(self, now: float) -> float:
        """Seconds until a file waiting for a thread may start because a busy conversion
        counts as waiting by then (infinity when none waits or none will)."""
        if not self.waiting:
            return math.inf
        if self._lagging and not self.running:
            return max(0.0, self._last_start + LAGGING_START_GAP - now)
        # One not started yet starts soon: look again BUSY_SECONDS from now at the latest.
        return min((BUSY_SECONDS if t.started_at is None else t.started_at + BUSY_SECONDS - now
                    for t in self._tickets.values()
                    if t.started_at is None or now - t.started_at < BUSY_SECONDS),
                   default=math.inf)

    def _start(self, source: SourceFile, key: FileKey, *, suspect: bool = False) -> None:
        self._last_start = self.service.clock.monotonic()
        ticket = ConversionTicket(self.service.journal, self.service.gate, key, suspect=suspect)
        future = self._pool.submit(self._convert, source, ticket)
        self.running[future] = source
        self._tickets[future] = ticket
        future.add_done_callback(self._ended_callback)

    def _ended_callback(self, future: Future[_Converted]) -> None:
        self._ended.append(future)  # any thread (deque.append is atomic)
        self.service.wake()

    # -- the conversion thread --------------------------------------------------------------

    def _convert(self, source: SourceFile, ticket: ConversionTicket) -> _Converted:
        """Conversion thread: file -> reports -> queue (durable) -> post-action.

        The journal records the file before anything reads it, and nothing is changed — no
        report queued, no file moved — unless `ticket.commit()` allows it: a conversion given
        up by the time limit or by the stop leaves everything as it was."""
        with self.service.turn:  # a stretch of work: see Turn
            if not ticket.start(self.service.clock.monotonic()):
                return _Converted(source, ConversionOutcome.ABANDONED, "the service is stopping")
            try:
                return self._convert_started(source, ticket)
            finally:
                ticket.finish()

    def _convert_started(self, source: SourceFile, ticket: ConversionTicket) -> _Converted:
        s = self.service
        path = source.path
        companions: tuple[Path, ...] = ()
        with contextlib.ExitStack() as held:  # the file's share of the memory budget
            try:
                converter, reason = converter_for(s.settings, s.registry, path, source.folder)
                companions = ticket.companions = companions_of(converter, path)
                context = make_context(s.settings, path, source.folder.arguments, s.processes)
                size = path.stat().st_size
                # No thread waits for this one's turn while it waits for memory.
                waits = not s.memory.free_for(converter, size)
                with s.turn.set_aside() if waits else contextlib.nullcontext():
                    held.enter_context(s.memory.reserve(path, converter, size))
                ticket.reset_clock(s.clock.monotonic())  # converters.timeout_s: from here
                conversion = convert_file(path, converter, context, reason,
                                          max_file_bytes(s.settings),
                                          follow_symlinks=source.folder.follow_symlinks)
            except IncompleteFileError as exc:
                return _Converted(source, ConversionOutcome.INCOMPLETE, str(exc),
                                  companions=companions)
            except ConversionSkipped as exc:
                if not ticket.commit():
                    return _Converted(source, ConversionOutcome.ABANDONED, "given up")
                return self._skip_source(source, str(exc), companions)
            except ProcessListUnknownError as exc:
                return _Converted(source, ConversionOutcome.WAITING_FOR_PROCESSES, str(exc))
            except ConversionError as exc:
                return self._reject_started(source, ticket, str(exc), companions)
            except FileNotFoundError:
                return _Converted(source, ConversionOutcome.GONE,
                                  f"{path} disappeared before it was converted")
            except OSError as exc:
                if exc.errno in STATION_ERRNOS:  # the station's trouble, not the file's
                    return _Converted(source, ConversionOutcome.STORE_FAULT,
                                      f"cannot convert {path.name} now: {_os_reason(exc)}")
                log.exception("converting %s failed unexpectedly", path)
                return self._reject_started(
                    source, ticket, f"the converter failed unexpectedly: {exc!r}", companions)
            except Exception as exc:  # a converter bug must not stop the station
                log.exception("converting %s failed unexpectedly", path)
                return self._reject_started(
                    source, ticket, f"the converter failed unexpectedly: {exc!r}", companions)
            if not ticket.commit():
                return _Converted(source, ConversionOutcome.ABANDONED, "given up")
            try:
                results = queue_reports(s.queue, conversion)
            except ReportIdClashError as exc:
                rejected = self._reject_source(source, str(exc), companions)
                return dataclasses.replace(rejected, outcome=ConversionOutcome.ID_CLASH)
            except QueueFullError as exc:
                return _Converted(source, ConversionOutcome.DISK_FULL, str(exc))
            except OSError as exc:
                # Not the file's fault: a queue folder made read-only or immutable, an I/O
                # error, no file descriptors left. The file stays where it is, tried again.
                return _Converted(source, ConversionOutcome.STORE_FAULT,
                                  f"cannot write to the queue in {s.paths.queue}: "
                                  f"{_os_reason(exc)}")
            conversion.reports.clear()  # queued: free them before the budget is given back
        for result in results:
            if result.created:
                s.dispatcher.notify_queued(result.id)
            else:
                log.info("report %s from %s is already %s; not queued twice",
                         result.id, path, result.state.value)
        problem = ""
        try:
            apply_post_action(source, s.seen, conversion.companions, protect=self._protect)
        except SourceChangedError as exc:
            log.warning("report(s) from %s queued; %s", path, exc.strerror)
        except OSError as exc:
            # The reports are safe in the queue; only the tidy-up failed.
            log.error("report(s) from %s queued, but its post-action failed: %s", path, exc)
            problem = str(exc) if isinstance(exc, UnsafePathError) else ""
        ids = tuple(r.id for r in results)
        # queue.put() already logged each report with its file and converter.
        log.debug("converted %s with %s into %s", path.name, conversion.reason,
                  ", ".join(ids))
        return _Converted(source, ConversionOutcome.QUEUED, conversion.reason, ids,
                          folder_problem=problem)

    def _skip_source(
        self, source: SourceFile, reason: str, companions: tuple[Path, ...] = ()
    ) -> _Converted:
        problem = ""
        try:
            moved = put_skipped_aside(source, self.service.seen, reason, companions=companions,
                                      protect=self._protect)
        except OSError as exc:
            log.error("%s; no report made, and the file cannot be put aside: %s", reason, exc)
            problem = str(exc) if isinstance(exc, UnsafePathError) else ""
        else:
            log.info("%s; no report made%s", reason, f", moved to {moved}" if moved else "")
        return _Converted(source, ConversionOutcome.SKIPPED, reason, folder_problem=problem)

    def _reject_started(self, source: SourceFile, ticket: ConversionTicket, reason: str,
                        companions: tuple[Path, ...]) -> _Converted:
        if not ticket.commit():
            return _Converted(source, ConversionOutcome.ABANDONED, "given up")
        return self._reject_source(source, reason, companions)

    def _reject_source(
        self, source: SourceFile, reason: str, companions: tuple[Path, ...] = ()
    ) -> _Converted:
        problem = ""
        try:
            moved = move_to_error(source, reason, companions=companions, protect=self._protect)
            log.error("cannot convert %s: %s; moved to %s", source.path, reason, moved)
        except OSError as exc:
            log.error("cannot convert %s: %s; and cannot move it to the error folder: %s",
                      source.path, reason, exc)
            problem = str(exc) if isinstance(exc, UnsafePathError) else ""
        return _Converted(source, ConversionOutcome.ERROR, reason, folder_problem=problem)

    # -- the outcomes, on the main thread ---------------------------------------------------

    def collect(self) -> None:
        """Account for the conversions that ended, each by the handler of its outcome."""
        while self._ended:
            future = self._ended.popleft()
            source = self.running.pop(future, None)
            if source is None:
                continue  # given up by the time limit, and accounted then
            ticket = self._tickets.pop(future, None)
            if ticket is not None and ticket.suspect:
                self.service.poison.ended(ticket.key)
            if future.cancelled():
                continue  # never started (the stop cancelled it): it waits in its folder
            try:
                done = future.result()
            except Exception:
                log.exception("conversion of %s crashed", source.path)
                self.service.watcher.retry_later(source, DISK_FULL_RETRY)
                continue
            self._account(done)
        if self._stuck:
            self._count_stuck()

    def _account(self, done: _Converted) -> None:
        if done.folder_problem:
            status = self.service.status
            status.folder_problems += 1
            status.record_failure("folder", done.folder_problem, self.service.clock.time(),
                                  source=str(done.source.path))
        # What is kept per file for one outcome ends with any other: a file that waited to
        # be completed, or met a station fault, and then went its way leaves nothing behind.
        if done.outcome is not ConversionOutcome.INCOMPLETE:
            self._incomplete_since.pop(done.source.path, None)
        if done.outcome is not ConversionOutcome.STORE_FAULT:
            self.service.faults.forget(done.source)
        self._handlers[done.outcome](done)

    def _on_queued(self, done: _Converted) -> None:
        s = self.service
        s.status.converted += 1
        s.summary.converted += 1
        s.status.disk_full = False
        s.faults.cleared(done.source)
        s.watcher.done(done.source)

    def _on_incomplete(self, done: _Converted) -> None:
        """Wait for the writer to finish the file: it is looked at again as soon as it
        changes and is ready again, else now and then (what it waits for may be beside it, as
        a Klippel unit's data folder), and goes to the error folder only once neither it nor
        its companions have changed for `queue.incomplete_timeout` seconds."""
        s = self.service
        source, path, now = done.source, done.source.path, s.clock.monotonic()
        timeout = s.settings.queue.incomplete_timeout
        state = (source.size, source.mtime_ns, *_mtimes(done.companions))
        first, looks, seen = self._incomplete_since.get(path, (now, 0, state))
        if seen != state:
            first, looks = now, 0  # it changed: its writer is alive, the wait starts again
        self._incomplete_since[path] = (first, looks + 1, state)
        watcher.forget_oldest(self._incomplete_since)
        waited = now - first
        if waited < timeout:
            # One line per file at info: a slow writer is not worth one per line it writes.
            log.log(logging.INFO if looks == 0 and seen == state else logging.DEBUG,
                    "%s is incomplete (%s); waiting for its writer to finish it (at most "
                    "%.0f s without a change)", path, done.message, timeout)
            recheck = min(s.settings.queue.settle_time * 2 ** looks + 0.1, 30.0)
            s.watcher.wait_for_change(source, min(recheck, timeout - waited))
            return
        self._incomplete_since.pop(path, None)
        self._count_conversion_error(self._reject_source(
            source, f"it never completed: unchanged for {timeout:.0f} s and still incomplete "
            f"({done.message}). If the equipment finishes files this slowly, raise "
            "queue.incomplete_timeout", done.companions))
        s.watcher.done(source)

    def _on_disk_full(self, done: _Converted) -> None:
        s = self.service
        s.status.disk_full = True
        s.status.record_failure("disk_full", done.message, s.clock.time())
        log.error("%s", done.message)
        s.watcher.retry_later(done.source, DISK_FULL_RETRY)

    def _on_gone(self, done: _Converted) -> None:
        self.service.watcher.done(done.source)

    def _on_skipped(self, done: _Converted) -> None:
        self.service.watcher.done(done.source)

    def _on_error(self, done: _Converted) -> None:
        self._count_conversion_error(done)
        self.service.watcher.done(done.source)

    def _on_waiting_for_processes(self, done: _Converted) -> None:
        s, source = self.service, done.source
        if s.processes:  # the list came while this file was being converted
            s.watcher.retry_later(source, 0.0)
            return
        if not self.awaiting_processes:
            s.fetch_processes_now()
        if source.path not in self.awaiting_processes:
            log.info("%s waits for the server's process list: %s", source.path, done.message)
        self.awaiting_processes[source.path] = source
        s.status.waiting_for_processes = len(self.awaiting_processes)

    def release_awaiting_processes(self) -> None:
        """The process list is known: files that waited for it are taken again."""
        waiting, self.awaiting_processes = self.awaiting_processes, {}
        for source in waiting.values():
            self.service.watcher.retry_later(source, 0.0)
        if waiting:
            log.info("the server's process list is known: %d waiting file(s) are converted "
                     "now", len(waiting))
        self.service.status.waiting_for_processes = 0

    def _on_id_clash(self, done: _Converted) -> None:
        self.service.status.id_clashes += 1
        self._on_error(done)

    def _on_store_fault(self, done: _Converted) -> None:
        self.service.faults.met(done.source, done.message, once=self.service.once)

    def _on_abandoned(self, done: _Converted) -> None:
        """Given up by the stop (the time limit accounts for its own when it gives up)."""

    def _count_conversion_error(self, done: _Converted) -> None:
        s = self.service
        s.status.conversion_errors += 1
        s.summary.conversion_errors += 1
        s.status.record_failure("conversion", done.message, s.clock.time(),
                                source=str(done.source.path))

    # -- the time limit: converters.timeout_s -----------------------------------------------

    def enforce_time_limits(self, now: float) -> None:
        """Give up conversions running longer than converters.timeout_s: the file goes to the
        error folder, the thread is left to itself (a thread cannot be killed; it changes
        nothing any more) and counted until it ends."""
        s = self.service
        limit = s.settings.converters.timeout_s
        for future, ticket in list(self._tickets.items()):
            started = ticket.started_at
            if started is None or now - started < limit or not ticket.abandon():
                continue
            source = self.running.pop(future)
            del self._tickets[future]
            if ticket.suspect:
                s.poison.ended(ticket.key)
            self._stuck.add(future)
            s.status.conversions_timed_out += 1
            reason = (f"the conversion did not finish within {limit:g} s "
                      "(converters.timeout_s) and was abandoned: the converter hangs on this "
                      "file, or needs longer for it (then raise converters.timeout_s)")
            self._count_conversion_error(
                self._reject_source(source, reason, ticket.companions))
            s.watcher.done(source)
            self._count_stuck()

    def _count_stuck(self) -> None:
        status = self.service.status
        self._stuck = {f for f in self._stuck if not f.done()}
        stuck = len(self._stuck)
        paused = stuck >= MAX_STUCK_CONVERSIONS
        if paused and not status.conversions_paused:
            log.error("%d converter threads are stuck (given up after converters.timeout_s); "
                      "no new conversion starts until they end or the service is restarted "
                      "('pywats-client restart'); files wait in the watch folders", stuck)
        elif status.conversions_paused and not paused:
            log.info("stuck converter threads have ended: conversions go on")
        status.stuck_conversions = stuck
        status.conversions_paused = paused

    # -- the stop ---------------------------------------------------------------------------

    def stop(self, deadline: float) -> None:
        """No new conversion; wait (until `deadline`, real time, and not after a second stop
        request) for those running. Any still running then are abandoned."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        while self.running and not self.service.hard_stop:
            remaining_time = deadline - time.monotonic()
            if remaining_time <= 0:
                break
            self._wakeup.clear()
            self.collect()
            if self.running:
                self._wakeup.wait(min(remaining_time, 0.25))  # each one that ends wakes us
        self.collect()
        if self.running:
            log.warning("%d conversion(s) still running at the stop are abandoned; their files "
                        "stay in the watch folders and are converted at the next start",
                        len(self.running))


def _os_reason(exc: OSError) -> str:
    """"Permission denied (EACCES) on /path": what an operator can look up and act on."""
    name = errno.errorcode.get(exc.errno or 0)
    text = exc.strerror or str(exc)
    if name:
        text += f" ({name})"
    if exc.filename:
        text += f" on {exc.filename}"
    return text


def _mtimes(paths: tuple[Path, ...]) -> list[int]:
    """The mtimes of an incomplete file's companions: a folder's changes when a file is
    added to it (-1 for one that is gone)."""
    found = []
    for path in paths:
        try:
            found.append(os.stat(path).st_mtime_ns)
        except OSError:
            found.append(-1)
    return found

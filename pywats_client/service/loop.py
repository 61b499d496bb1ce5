"""`Service`: one process that watches, converts, queues and uploads until it is told to stop —
its main loop, its conversion pool, the accounting of each file's conversion (time limit,
station faults, files the process died on), signals, and a stop that leaves nothing running.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import enum
import errno
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, cast

from pywats_client import __version__
from pywats_client.clock import SYSTEM_CLOCK, Clock
from pywats_client.config.settings import Settings, WatchFolder
from pywats_client.converters import ConversionSkipped, ConverterRegistry
from pywats_client.converters.memory import MemoryBudget
from pywats_client.errors import (
    ConfigError,
    ConversionError,
    IncompleteFileError,
    ProcessListUnknownError,
    QueueFullError,
    ReportIdClashError,
)
from pywats_client.fsutil import UnsafePathError
from pywats_client.outcomes import ServerState
from pywats_client.paths import InstancePaths
from pywats_client.queue.lock import InstanceLock
from pywats_client.queue.store import DurableQueue
from pywats_client.sdnotify import Notifier
from pywats_client.service import process_table
from pywats_client.service.dispatcher import UploadDispatcher
from pywats_client.service.drain import remaining
from pywats_client.service.gate import WorkGate
from pywats_client.service.journal import (
    ConversionJournal,
    ConversionTicket,
    FileKey,
    Suspect,
    file_key,
)
from pywats_client.service.pipeline import (
    companions_of,
    convert_file,
    converter_for,
    make_context,
    max_file_bytes,
    memory_reserved,
    queue_reports,
)
from pywats_client.service.postaction import (
    SeenFiles,
    SourceFile,
    apply_post_action,
    move_to_error,
    protected_folders,
    put_skipped_aside,
)
from pywats_client.service.status import (
    ERROR_COUNT_INTERVAL,
    RunSummary,
    ServiceStatus,
    count_error_files,
    write_status,
)
from pywats_client.service.uploader import uploader_for
from pywats_client.service.watcher import FolderWatcher

log = logging.getLogger(__name__)

HANDLED_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
CONVERSION_WORKERS = 10
MAX_CONVERSIONS_QUEUED = 2 * CONVERSION_WORKERS  # the rest wait in the watcher, not in memory
# While more reports wait for an upload slot than the workers can take, converting faster only
# lengthens that line, and every busy conversion thread makes the upload workers wait longer
# for the interpreter lock: each of an upload's twenty-odd system calls gives the lock up, and
# taking it back behind a busy thread took 1.5 ms (median) in a backlog on 2 cores. Then one
# file converts at a time. The limit lifts by itself as soon as the line is short again, so
# conversions never fall behind for long (scripts/bench.py, throughput: L = 20 ms went from
# 72 % to 82 % of the 5 / L limit with 3 -> 1).
CONVERSIONS_WHILE_UPLOADS_LAG = 1
DISK_FULL_RETRY = 5.0  # seconds before a file that met a full disk is tried again
HOUSEKEEPING_INTERVAL = 3600.0
STATUS_INTERVAL = 1.0
DISK_LOW_BYTES = 100 * 2**20  # warn below this much free space for the queue...
DISK_LOW_FRACTION = 0.02  # ...or below this fraction of the disk, whichever is larger
STUCK_GRACE = 60.0  # beyond the request timeouts (and converters.timeout_s): stuck
STORE_FAULT_RETRY = 2.0  # first retry of a file whose reports the queue could not take...
STORE_FAULT_MAX_RETRY = 60.0  # ...doubling up to this while the fault lasts
# Conversions given up after converters.timeout_s whose threads still run, before no new
# conversion is started: each holds one of the pool's threads, and they cannot be killed.
MAX_STUCK_CONVERSIONS = CONVERSION_WORKERS // 2
GATE_CLOSE_TIMEOUT = 5.0  # how long a stop waits for a queue write under way to finish
LOCK_CHECK_INTERVAL = 10.0  # how often the service makes sure its lock file is still its own
# Errors of the station, not of the file, whatever a converter was doing when it met them.
STATION_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.EIO, errno.ENOBUFS})


class ConversionOutcome(enum.Enum):
    """What became of one source file; `Service` has one handler for each, `_on_<value>`."""

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


class Service:
    """One running instance. Create, then `run()` on the main thread.

    `run()` sweeps the queue, starts the watcher, then loops — hand stable files to the
    conversion pool (10 threads), let the dispatcher feed the upload pool (5 threads), prune old
    items, publish the status — sleeping on an Event between rounds, so it wakes at once for a
    new file, a finished upload or a signal, and costs nothing when idle.

    Signals only set flags: the first SIGTERM/SIGINT stops gracefully (no new work; running
    conversions and in-flight uploads get `stop_timeout` seconds together), a second one stops
    at once; SIGHUP restarts in place. Either way nothing is lost: a report being uploaded
    stays in processing/ and the next start sends it again with the same id, a file being
    converted stays in its folder. Whatever still runs when the stop gives up can no longer
    change the queue or a file (`WorkGate`), and the instance lock is held until then.
    """

    def __init__(
        self,
        settings: Settings,
        paths: InstancePaths,
        *,
        clock: Clock = SYSTEM_CLOCK,
        stop_timeout: float = 20.0,
        reload_settings: Any = None,
    ) -> None:
        self.settings = settings
        self.paths = paths
        self.clock = clock
        self.stop_timeout = stop_timeout
        self._reload_settings = reload_settings  # callable returning fresh Settings, or None
        self.status = ServiceStatus(version=__version__)
        self._wake = threading.Event()
        self._stop_requests = 0
        self._restart = False
        self._restart_reason = ""
        self._gate = WorkGate()  # closed by the stop: see _shutdown
        self.journal = ConversionJournal(paths.state)
        self.lock = InstanceLock(paths.lock, paths.name)
        self.queue = DurableQueue(paths.queue, settings.queue, clock=clock)
        self.registry = ConverterRegistry(
            enabled=settings.converters.enabled, plugin_dir=paths.converters
        )
        self.seen = SeenFiles(paths.state)
        self._protect = protected_folders(paths)  # never the destination of a post-action
        self.watcher = FolderWatcher(
            settings.queue.watch_folders,
            settle_time=settings.queue.settle_time,
            incomplete_timeout=settings.queue.incomplete_timeout,
            rescan_interval=settings.queue.rescan_interval,
            state_dir=paths.state,
            clock=clock,
            wake=self.wake,
            seen=self.seen,
        )
        self.summary = RunSummary()
        self.dispatcher = UploadDispatcher(
            self.queue, uploader_for(settings), settings.queue, self.status,
            clock=clock, wake=self.wake, summary=self.summary, gate=self._gate,
        )
        self._converters = ThreadPoolExecutor(CONVERSION_WORKERS, thread_name_prefix="convert")
        self.memory = MemoryBudget(settings.converters.max_memory_mb)  # shared by conversions
        self._conversions: dict[Future[_Converted], SourceFile] = {}
        # Ended conversions, put here by their futures' callbacks: collected without scanning
        # every running one each round.
        self._ended: collections.deque[Future[_Converted]] = collections.deque()
        self._waiting: collections.deque[SourceFile] = collections.deque()
        # incomplete file -> (since when unchanged, looks, its size, mtime and companions)
        self._incomplete_since: dict[Path, tuple[float, int, tuple[int, ...]]] = {}
        self._config_mtime = _mtime(paths.config)
        self.notifier = Notifier()
        self.processes = process_table.load(paths.state)
        self._process_fetch: Future[object] | None = None
        self._awaiting_processes: dict[Path, SourceFile] = {}  # name their process; no list
        self._next_process_fetch = 0.0
        self._tickets: dict[Future[_Converted], ConversionTicket] = {}
        self._stuck: set[Future[_Converted]] = set()  # given up, their threads still running
        self._suspects: dict[FileKey, int] = {}  # files the service died on: crashes
        self._held: list[tuple[int, SourceFile]] = []  # suspects waiting to convert alone
        self._poisoned: set[FileKey] = set()  # set aside, but could not be moved away
        self._fault_tries: dict[Path, int] = {}  # files the queue could not take, and how often
        self._next_lock_check = 0.0
        self._once = False
        # One handler per outcome, `_on_<outcome>`: a missing one fails here, at the start.
        self._conversion_handlers: dict[ConversionOutcome, Callable[[_Converted], None]] = {
            outcome: getattr(self, f"_on_{outcome.value}") for outcome in ConversionOutcome}
        # What other threads (the control API) may read: a copy of the status, replaced, never
        # mutated, each time it is published.
        self._snapshot_lock = threading.Lock()
        self._snapshot: dict[str, Any] = self.status.to_dict()
        # True: a restart in place keeps the instance lock for the new program (the CLI hands
        # it over across exec), so no other process can take the instance in between.
        self.hand_over_lock = False

    # -- control --------------------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    def request_stop(self) -> None:
        """First call: graceful stop (it overrides a restart asked for before). Second: stop
        now. Safe from a signal handler."""
        self._stop_requests += 1
        self._wake.set()

    def request_restart(self, reason: str = "") -> None:
        """Stop gracefully; the caller of run() then starts the same command again in this
        process (the CLI re-executes itself). A restart already asked for, or a stop under
        way, makes this do nothing. Safe from any thread and from a signal handler."""
        if self._restart or self._stop_requests:
            return
        self._restart_reason = reason
        self._restart = True
        self._wake.set()

    @property
    def restart_requested(self) -> bool:
        """True when run() ended (or ends) for a restart in place, not for a stop."""
        return self._restart and self._stop_requests == 0

    def _stopping(self) -> bool:
        return self._stop_requests > 0 or self._restart

    def snapshot(self) -> dict[str, Any]:
        """The status as last published, for other threads. Treat it as read-only."""
        with self._snapshot_lock:
            return self._snapshot

    @property
    def hard_stop(self) -> bool:
        """True when a second stop request asked to quit without waiting."""
        return self._stop_requests > 1

    def install_signal_handlers(self, exit_now: Callable[[], None] | None = None) -> None:
        """SIGTERM/SIGINT stop, SIGHUP restarts in place to reload the configuration. The
        handlers only set flags, except at a second stop: then `exit_now` (which must not
        return) ends the process at once, wherever the main thread is (in a start-up sweep,
        waiting for a stuck converter): the queue survives that as it survives a SIGKILL.
        Signals blocked over a restart in place (see `block_signals`) are taken from here on."""
        def stop(signum: int, frame: FrameType | None) -> None:
            self.request_stop()
            if self.hard_stop and exit_now is not None:
                exit_now()

        def reload(signum: int, frame: FrameType | None) -> None:
            self.request_restart("SIGHUP")

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, reload)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)

    def abandon_now(self) -> None:
        """For an exit that does not wait (a second stop): tell systemd, and note in the
        journal that the files being converted did not kill the process. No locks taken."""
        self.journal.mark_stopped_now()
        self.notifier.stopping()

    def unfinished_threads(self) -> int:
        """Threads still busy after run() returned (stuck converters, abandoned requests):
        they change nothing any more, but a process that waits for them cannot exit."""
        conversions = [*self._conversions, *self._stuck]
        return sum(1 for f in conversions if not f.done()) + self.dispatcher.unfinished()

    # -- the loop -------------------------------------------------------------------------

    def run(self, *, once: bool = False, on_ready: Callable[[], None] | None = None
            ) -> RunSummary:
        """Serve until stopped (or, with `once`, until everything due is done).

        `on_ready` is called once the queue is swept and the folders are watched (a daemon's
        parent waits for that before it reports success)."""
        self._once = once
        self.lock.acquire("service (once)" if once else "service")
        try:
            self.paths.ensure()
            self.queue.ensure_layout()
            self._recover_journal()
            self.queue.sweep()
            for error in self.registry.errors:
                log.warning("%s", error)
            self.queue.prune()
            self.watcher.start()
            if not self.processes:
                # First start: learn the server's process names in the background; nothing
                # waits for the server, and files convert meanwhile.
                self._process_fetch = self.dispatcher.background(self._fetch_processes)
            self.status.state = "running"
            self.notifier.ready(f"watching {len(self.settings.queue.watch_folders)} folder(s)")
            if on_ready is not None:
                on_ready()
            log.info(
                "pywats-client %s started: instance %s, %d watch folder(s), server %s",
                __version__, self.paths.name, len(self.settings.queue.watch_folders),
                self.settings.server_url,
            )
            self._loop(once)
        finally:
            self._shutdown()
        return self.summary

    def _loop(self, once: bool) -> None:
        next_housekeeping = self.clock.monotonic() + HOUSEKEEPING_INTERVAL
        next_status = 0.0
        next_ping = 0.0
        ping = self.notifier.watchdog_interval
        published: tuple[object, ...] = ()
        while not self._stopping():
            self._wake.clear()
            now = self.clock.monotonic()
            self._collect_conversions()
            self._enforce_time_limits(now)
            ready, watcher_wait = self.watcher.poll()
            self._waiting.extend(ready)
            self._submit_conversions()
            upload_wait = self.dispatcher.pump()
            if now >= next_housekeeping:
                self.queue.prune()
                next_housekeeping = now + HOUSEKEEPING_INTERVAL
            self._check_config()
            self._check_lock(now)
            self._refresh_processes(now)
            self._count_error_files(now)
            changed = self._status_key() != published
            if changed and now >= next_status:
                self._publish()
                published, changed = self._status_key(), False
                next_status = now + STATUS_INTERVAL
            if ping is not None and now >= next_ping and self._healthy(now):
                self.notifier.watchdog()
                next_ping = now + ping
            if once and self._once_finished():
                break
            timeout = min(watcher_wait, upload_wait, next_housekeeping - now,
                          self._next_lock_check - now)
            if ping is not None:
                timeout = min(timeout, max(0.0, next_ping - now))
            if changed:
                timeout = min(timeout, next_status - now)  # publish what changed, rate-limited
            if self._conversions or self.dispatcher.in_flight:
                timeout = min(timeout, STATUS_INTERVAL)
            self.clock.wait(self._wake, max(0.0, timeout))

    def _healthy(self, now: float) -> bool:
        """False when a worker seems stuck: then the watchdog pings stop and systemd restarts
        the service (nothing is lost: the stuck report is swept back to pending)."""
        upload_bound = self.settings.connect_timeout + self.settings.read_timeout + STUCK_GRACE
        if self.dispatcher.oldest_upload_age() > upload_bound:
            log.error("an upload has run for over %.0fs; the service looks stuck", upload_bound)
            return False
        # Converters are given up after converters.timeout_s; one still here after that is
        # stuck in queueing its reports (a hung disk).
        conversion_bound = self.settings.converters.timeout_s + STUCK_GRACE
        started = [t.started_at for t in self._tickets.values() if t.started_at is not None]
        if now - min(started, default=now) > conversion_bound:
            log.error("a conversion has run for over %.0fs; the service looks stuck",
                      conversion_bound)
            return False
        return True

    def _once_finished(self) -> bool:
        if self.status.conversions_paused:
            return not self._conversions  # what waits is converted by a later run
        if (self._conversions or self._waiting or self._held
                or self.watcher.pending_count()):
            return False
        if not self.dispatcher.can_send:
            return True  # offline or paused: what is due stays queued for the next run
        return not self.dispatcher.has_due_work()

    # -- conversion -----------------------------------------------------------------------

    def _submit_conversions(self) -> None:
        if self.status.conversions_paused:
            return  # too many converter threads are stuck: the files wait in _waiting
        if any(ticket.suspect for ticket in self._tickets.values()):
            return  # a file the service died on converts alone, so a death is pinned on it
        limit = (CONVERSIONS_WHILE_UPLOADS_LAG if self.dispatcher.uploads_lag()
                 else MAX_CONVERSIONS_QUEUED)
        while self._waiting and len(self._conversions) < limit:
            source = self._waiting.popleft()
            key = file_key(source.path, source.size, source.mtime_ns)
            if key in self._poisoned:
                self.watcher.done(source)  # set aside, but it could not be moved away
                continue
            crashes = self._suspects.get(key)
            if crashes is not None:
                self._held.append((crashes, source))  # last, and alone
                continue
            self._start_conversion(source, key)
        if self._held and not self._conversions and not self._waiting:
            # The least suspect first: the likelier culprit is tried when the others are safe.
            self._held.sort(key=lambda held: (held[0], held[1].mtime_ns, str(held[1].path)))
            crashes, source = self._held.pop(0)
            log.warning("converting %s alone: the service died while converting it before "
                        "(%d time(s); converters.max_crashes is %d)", source.path, crashes,
                        self.settings.converters.max_crashes)
            self._start_conversion(source, file_key(source.path, source.size, source.mtime_ns),
                                   suspect=True)

    def _start_conversion(self, source: SourceFile, key: FileKey, *, suspect: bool = False
                          ) -> None:
        ticket = ConversionTicket(self.journal, self._gate, key, suspect=suspect)
        future = self._converters.submit(self._convert, source, ticket)
        self._conversions[future] = source
        self._tickets[future] = ticket
        future.add_done_callback(self._conversion_ended)

    def _conversion_ended(self, future: Future[_Converted]) -> None:
        self._ended.append(future)  # any thread (deque.append is atomic)
        self.wake()

    def _convert(self, source: SourceFile, ticket: ConversionTicket) -> _Converted:
        """Conversion thread: file -> reports -> queue (durable) -> post-action.

        The journal records the file before anything reads it, and nothing is changed — no
        report queued, no file moved — unless `ticket.commit()` allows it: a conversion given
        up by the time limit or by the stop leaves everything as it was."""
        if not ticket.start(self.clock.monotonic()):
            return _Converted(source, ConversionOutcome.ABANDONED, "the service is stopping")
        try:
            return self._convert_started(source, ticket)
        finally:
            ticket.finish()

    def _convert_started(self, source: SourceFile, ticket: ConversionTicket) -> _Converted:
        path = source.path
        companions: tuple[Path, ...] = ()
        with contextlib.ExitStack() as held:  # the file's share of the memory budget
            try:
                converter, reason = converter_for(self.settings, self.registry, path,
                                                  source.folder)
                companions = ticket.companions = companions_of(converter, path)
                context = make_context(self.settings, path, source.folder.arguments,
                                       self.processes)
                held.enter_context(memory_reserved(self.settings, converter, path, self.memory))
                conversion = convert_file(path, converter, context, reason,
                                          max_file_bytes(self.settings),
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
                results = queue_reports(self.queue, conversion)
            except ReportIdClashError as exc:
                rejected = self._reject_source(source, str(exc), companions)
                return dataclasses.replace(rejected, outcome=ConversionOutcome.ID_CLASH)
            except QueueFullError as exc:
                return _Converted(source, ConversionOutcome.DISK_FULL, str(exc))
            except OSError as exc:
                # Not the file's fault: a queue folder made read-only or immutable, an I/O
                # error, no file descriptors left. The file stays where it is, tried again.
                return _Converted(source, ConversionOutcome.STORE_FAULT,
                                  f"cannot write to the queue in {self.paths.queue}: "
                                  f"{_os_reason(exc)}")
            conversion.reports.clear()  # queued: free them before the budget is given back
        for result in results:
            if result.created:
                self.dispatcher.notify_queued(result.id)
            else:
                log.info("report %s from %s is already %s; not queued twice",
                         result.id, path, result.state.value)
        problem = ""
        try:
            apply_post_action(source, self.seen, conversion.companions, protect=self._protect)
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
            moved = put_skipped_aside(source, self.seen, reason, companions=companions,
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

    def _collect_conversions(self) -> None:
        while self._ended:
            future = self._ended.popleft()
            source = self._conversions.pop(future, None)
            if source is None:
                continue  # given up by the time limit, and accounted then
            ticket = self._tickets.pop(future, None)
            if ticket is not None and ticket.suspect:
                self._suspects.pop(ticket.key, None)  # it ended; the journal says how
            if future.cancelled():
                continue  # never started (the stop cancelled it): it waits in its folder
            try:
                done = future.result()
            except Exception:
                log.exception("conversion of %s crashed", source.path)
                self.watcher.retry_later(source, DISK_FULL_RETRY)
                continue
            self._account_conversion(done)
        if self._stuck:
            self._count_stuck()

    def _account_conversion(self, done: _Converted) -> None:
        if done.folder_problem:
            self.status.folder_problems += 1
            self.status.record_failure("folder", done.folder_problem, self.clock.time(),
                                       source=str(done.source.path))
        self._conversion_handlers[done.outcome](done)

    def _on_queued(self, done: _Converted) -> None:
        self._incomplete_since.pop(done.source.path, None)
        self.status.converted += 1
        self.summary.converted += 1
        self.status.disk_full = False
        self._store_fault_cleared(done)
        self.watcher.done(done.source)

    def _on_incomplete(self, done: _Converted) -> None:
        """Wait for the writer to finish the file: it is looked at again as soon as it
        changes and is ready again, else now and then (what it waits for may be beside it, as
        a Klippel unit's data folder), and goes to the error folder only once neither it nor
        its companions have changed for `queue.incomplete_timeout` seconds."""
        source, path, now = done.source, done.source.path, self.clock.monotonic()
        timeout = self.settings.queue.incomplete_timeout
        state = (source.size, source.mtime_ns, *_mtimes(done.companions))
        first, looks, seen = self._incomplete_since.get(path, (now, 0, state))
        if seen != state:
            first, looks = now, 0  # it changed: its writer is alive, the wait starts again
        self._incomplete_since[path] = (first, looks + 1, state)
        waited = now - first
        if waited < timeout:
            # One line per file at info: a slow writer is not worth one per line it writes.
            log.log(logging.INFO if looks == 0 and seen == state else logging.DEBUG,
                    "%s is incomplete (%s); waiting for its writer to finish it (at most "
                    "%.0f s without a change)", path, done.message, timeout)
            recheck = min(self.settings.queue.settle_time * 2 ** looks + 0.1, 30.0)
            self.watcher.wait_for_change(source, min(recheck, timeout - waited))
            return
        self._incomplete_since.pop(path, None)
        self._count_conversion_error(self._reject_source(
            source, f"it never completed: unchanged for {timeout:.0f} s and still incomplete "
            f"({done.message}). If the equipment finishes files this slowly, raise "
            "queue.incomplete_timeout", done.companions))
        self.watcher.done(source)

    def _on_disk_full(self, done: _Converted) -> None:
        self.status.disk_full = True
        self.status.record_failure("disk_full", done.message, self.clock.time())
        log.error("%s", done.message)
        self.watcher.retry_later(done.source, DISK_FULL_RETRY)

    def _on_gone(self, done: _Converted) -> None:
        self.watcher.done(done.source)

    def _on_skipped(self, done: _Converted) -> None:
        self.watcher.done(done.source)

    def _on_error(self, done: _Converted) -> None:
        self._count_conversion_error(done)
        self.watcher.done(done.source)

    def _on_waiting_for_processes(self, done: _Converted) -> None:
        source = done.source
        if self.processes:  # the list came while this file was being converted
            self.watcher.retry_later(source, 0.0)
            return
        if not self._awaiting_processes:
            self._next_process_fetch = self.clock.monotonic()  # ask the server now
        if source.path not in self._awaiting_processes:
            log.info("%s waits for the server's process list: %s", source.path, done.message)
        self._awaiting_processes[source.path] = source
        self.status.waiting_for_processes = len(self._awaiting_processes)

    def _on_id_clash(self, done: _Converted) -> None:
        self.status.id_clashes += 1
        self._on_error(done)

    def _count_conversion_error(self, done: _Converted) -> None:
        self.status.conversion_errors += 1
        self.summary.conversion_errors += 1
        self.status.record_failure("conversion", done.message, self.clock.time(),
                                   source=str(done.source.path))

    def _on_abandoned(self, done: _Converted) -> None:
        """Given up by the stop (the time limit accounts for its own when it gives up)."""

    # -- station faults: the queue cannot take a report (other than a full disk) ----------

    def _on_store_fault(self, done: _Converted) -> None:
        """A station fault, not a bad file: the file stays in its folder and is tried again,
        less and less often, until the fault clears; status, STATUS= and the log say so."""
        source, path = done.source, done.source.path
        tries = self._fault_tries.get(path, 0) + 1
        self._fault_tries[path] = tries
        if not self.status.station_fault:
            self.status.station_fault_since = self.clock.time()
            log.error("%s. Files wait in the watch folders and are tried again; fix the "
                      "folder (permissions, a read-only or failing disk) and they go on",
                      done.message)
        self.status.station_fault = done.message
        self.status.record_failure("station_fault", done.message, self.clock.time(),
                                   source=str(path))
        if self._once:
            self.watcher.done(source)  # a later run tries it again
            return
        delay = min(STORE_FAULT_RETRY * 2 ** (tries - 1), STORE_FAULT_MAX_RETRY)
        log.warning("%s waits in its folder: %s; trying again in %.0fs", path, done.message,
                    delay)
        self.watcher.retry_later(source, delay)

    def _store_fault_cleared(self, done: _Converted) -> None:
        self._fault_tries.pop(done.source.path, None)
        if self.status.station_fault:
            log.info("the queue takes reports again (%s was queued); the fault is over",
                     done.source.path)
            self.status.station_fault = ""
            self.status.station_fault_since = None

    # -- conversion time limit: converters.timeout_s --------------------------------------

    def _enforce_time_limits(self, now: float) -> None:
        """Give up conversions running longer than converters.timeout_s: the file goes to the
        error folder, the thread is left to itself (a thread cannot be killed; it changes
        nothing any more) and counted until it ends."""
        limit = self.settings.converters.timeout_s
        for future, ticket in list(self._tickets.items()):
            started = ticket.started_at
            if started is None or now - started < limit or not ticket.abandon():
                continue
            source = self._conversions.pop(future)
            del self._tickets[future]
            if ticket.suspect:
                self._suspects.pop(ticket.key, None)
            self._stuck.add(future)
            self.status.conversions_timed_out += 1
            reason = (f"the conversion did not finish within {limit:g} s "
                      "(converters.timeout_s) and was abandoned: the converter hangs on this "
                      "file, or needs longer for it (then raise converters.timeout_s)")
            self._count_conversion_error(
                self._reject_source(source, reason, ticket.companions))
            self.watcher.done(source)
            self._count_stuck()

    def _count_stuck(self) -> None:
        self._stuck = {f for f in self._stuck if not f.done()}
        stuck = len(self._stuck)
        paused = stuck >= MAX_STUCK_CONVERSIONS
        if paused and not self.status.conversions_paused:
            log.error("%d converter threads are stuck (given up after converters.timeout_s); "
                      "no new conversion starts until they end or the service is restarted "
                      "('pywats-client restart'); files wait in the watch folders", stuck)
        elif self.status.conversions_paused and not paused:
            log.info("stuck converter threads have ended: conversions go on")
        self.status.stuck_conversions = stuck
        self.status.conversions_paused = paused

    # -- the poison-file guard: files the process died on ---------------------------------

    def _recover_journal(self) -> None:
        """At start-up: files whose converter ran when the process last died are suspects.
        They convert after the others, one at a time; once the process died
        converters.max_crashes times while a file converted alone, it is set aside in the error
        folder."""
        limit = self.settings.converters.max_crashes
        for suspect in self.journal.recover():
            # Only deaths while it converted alone count against a file: one amid other
            # conversions is pinned on none of them (an innocent file then converts alone).
            if suspect.pinned >= limit and self.journal.writable:
                self._set_aside(suspect, limit)
                continue
            self._suspects[suspect.key] = suspect.crashes
            log.warning("the service died while converting %s (%d time(s)); it is converted "
                        "again after the other files, alone", suspect.path, suspect.crashes)

    def _set_aside(self, suspect: Suspect, limit: int) -> None:
        alone = ("" if suspect.pinned == suspect.crashes
                 else f", {suspect.pinned} of them while it was converted alone")
        reason = (f"the service died {suspect.crashes} times while converting this file"
                  f"{alone} (converters.max_crashes is {limit}); see the log, "
                  f"{self.paths.log_file}. The converter crashes on it (or the process ran out "
                  "of memory)")
        self.status.poison_files += 1
        self.status.conversion_errors += 1
        self.summary.conversion_errors += 1
        self.status.record_failure("poison_file", reason, self.clock.time(),
                                   source=str(suspect.path))
        folder = self._watch_folder_of(suspect.path)
        if folder is None:
            log.error("the service died %d times while converting %s, which is no longer in a "
                      "watch folder; left where it is", suspect.crashes, suspect.path)
            self.journal.forget(suspect.key)
            return
        source = SourceFile(folder, suspect.path, suspect.size, suspect.mtime_ns)
        try:
            moved = move_to_error(source, reason)
        except OSError as exc:
            log.error("the service died %d times while converting %s, and it cannot be moved to "
                      "the error folder (%s); it is not converted again", suspect.crashes,
                      suspect.path, exc)
            self._poisoned.add(suspect.key)
            return
        self.journal.forget(suspect.key)
        log.error("the service died %d times while converting %s: set aside in %s",
                  suspect.crashes, suspect.path, moved)

    def _watch_folder_of(self, path: Path) -> WatchFolder | None:
        parent = os.path.dirname(os.path.abspath(path))
        for folder in self.settings.queue.watch_folders:
            if os.path.abspath(folder.path) == parent:
                return folder
        return None

    # -- the instance lock ----------------------------------------------------------------

    def _check_lock(self, now: float) -> None:
        """Its lock file removed or replaced (by hand, a cleaning tool) would let a second
        process in: take the lock again, or stop if one got in already."""
        if now < self._next_lock_check:
            return
        self._next_lock_check = now + LOCK_CHECK_INTERVAL
        check = self.lock.verify()
        if check == "retaken":
            log.warning("the lock file %s was removed or replaced; the lock is taken again",
                        self.lock.path)
        elif check == "lost":
            log.error("the lock file %s was replaced and another process holds it now: "
                      "stopping, so that the queue has one owner", self.lock.path)
            self.request_stop()

    # -- configuration changes and status -------------------------------------------------

    def _check_config(self) -> None:
        """A changed config.json may carry the fix for a paused uploader: apply its server
        settings at once. (Watch folders and converters are read at start.)"""
        mtime = _mtime(self.paths.config)
        if mtime == self._config_mtime or self._reload_settings is None:
            return
        self._config_mtime = mtime
        try:
            fresh: Settings = self._reload_settings()
        except ConfigError as exc:
            log.error("config.json changed but is not valid, keeping the old settings: %s", exc)
            return
        old = self.settings
        if (fresh.server_url, fresh.api_token, fresh.ca_bundle) != (
            old.server_url, old.api_token, old.ca_bundle
        ):
            log.info("server settings changed in %s: using them now", self.paths.config)
            self.settings = fresh
            self.dispatcher.replace_client(uploader_for(fresh))

    def _status_key(self) -> tuple[object, ...]:
        s = self.status
        return (s.state, s.server, s.server_detail, s.disk_full, s.uploaded, s.rejected,
                s.converted, s.conversion_errors, s.last_error_at, s.folder_problems,
                s.waiting_for_processes, self.watcher.pending_count(),
                tuple(self.watcher.unavailable()), s.error_files, s.station_fault,
                s.stuck_conversions, s.conversions_paused, s.poison_files)

    _next_error_count = 0.0  # monotonic

    def _count_error_files(self, now: float) -> None:
        """Count the files waiting in the error folders: a scandir of each, every
        ERROR_COUNT_INTERVAL at most, whoever put them there."""
        if now < self._next_error_count:
            return
        self._next_error_count = now + ERROR_COUNT_INTERVAL
        self.status.error_files, self.status.error_files_newest = count_error_files(
            folder.error_path for folder in self.settings.queue.watch_folders)

    def _publish(self) -> None:
        self.status.watching = self.watcher.pending_count()
        self.status.folders_unavailable = self.watcher.unavailable()
        self._check_disk()
        if self.notifier.enabled:
            self.notifier.status(_notify_text(self.status))
        try:
            write_status(self.paths.state, self.status)
        except OSError as exc:
            log.debug("cannot write status: %s", exc)
        self._publish_snapshot()

    def _publish_snapshot(self) -> None:
        snapshot = self.status.to_dict()
        with self._snapshot_lock:
            self._snapshot = snapshot

    def _refresh_processes(self, now: float) -> None:
        """Keep the server's process list fresh while it is reachable (once a day)."""
        fetch = self._process_fetch
        if fetch is not None and fetch.done():
            self._process_fetch = None
            table: dict[str, int] = {}
            try:
                table = cast("dict[str, int]", fetch.result())
            except Exception:
                log.exception("fetching the process list failed")
            if table:
                self.processes = table
                try:
                    process_table.save(self.paths.state, table)
                except OSError as exc:
                    log.warning("cannot cache the process list: %s", exc)
                self._release_awaiting_processes()
            retry = self.settings.queue.probe_interval if self._awaiting_processes else 600
            self._next_process_fetch = now + (process_table.REFRESH_SECONDS if table else retry)
        # Files waiting for the list are reason enough to ask, whatever the uploads found.
        wanted = self.status.server is ServerState.ONLINE or bool(self._awaiting_processes)
        if (self._process_fetch is None and now >= self._next_process_fetch and wanted
                and self.dispatcher.accepting):
            self._process_fetch = self.dispatcher.background(self._fetch_processes)

    def _release_awaiting_processes(self) -> None:
        """The process list is known: files that waited for it are taken again."""
        waiting, self._awaiting_processes = self._awaiting_processes, {}
        for source in waiting.values():
            self.watcher.retry_later(source, 0.0)
        if waiting:
            log.info("the server's process list is known: %d waiting file(s) are converted "
                     "now", len(waiting))
        self.status.waiting_for_processes = 0

    def _fetch_processes(self) -> dict[str, int]:
        """Upload thread: the server's process table ({} when it cannot be had)."""
        return self.dispatcher.client.processes()[1]

    def _check_disk(self) -> None:
        try:
            st = os.statvfs(self.paths.queue)
        except OSError:
            return
        free = st.f_bavail * st.f_frsize
        low = free < max(DISK_LOW_BYTES, DISK_LOW_FRACTION * st.f_blocks * st.f_frsize)
        if low and not self.status.disk_low:
            log.warning("disk nearly full: %.0f MB free for the queue in %s", free / 2**20,
                        self.paths.queue)
        self.status.disk_free_mb = round(free / 2**20, 1)
        self.status.disk_low = low

    # -- stopping -------------------------------------------------------------------------

    def _shutdown(self) -> None:
        """Stop: no new work; running conversions and in-flight uploads get `stop_timeout`
        seconds together (none after a second stop request). Then the gate closes: whatever
        still runs is abandoned and can change nothing any more — a report being uploaded stays
        in processing/, a file being converted in its folder — and only then is the instance
        lock released (or, if a queue write is itself stuck, when it ends or the process
        exits: `unfinished_threads()` tells the caller not to wait for it)."""
        restarting = self.restart_requested
        if restarting:
            log.info("restarting in place to reload the configuration%s",
                     f" ({self._restart_reason})" if self._restart_reason else "")
            # The process stays and says READY=1 again after re-executing: to systemd this is
            # a reload, not a stop (STOPPING=1 would make it wait for the process to exit).
            usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
            self.notifier.notify("RELOADING=1", f"MONOTONIC_USEC={usec}", "STATUS=restarting")
        else:
            self.notifier.stopping()
        self.status.state = "stopping"
        self._publish()
        self.watcher.stop()
        deadline = time.monotonic() + (0.0 if self.hard_stop else self.stop_timeout)
        self.dispatcher.accepting = False
        self._converters.shutdown(wait=False, cancel_futures=True)
        self._finish_conversions(deadline)
        drained = self.dispatcher.drain(max(0.0, deadline - time.monotonic()),
                                        interrupted=lambda: self.hard_stop)
        if not drained:
            log.warning("uploads still running after %.0fs are abandoned; they are sent again "
                        "at the next start", self.stop_timeout)
        clean = self._gate.close(GATE_CLOSE_TIMEOUT)
        self.journal.mark_stopped()
        self.dispatcher.shutdown()
        # The uploads were tallied as they finished; the server as the probes left it too.
        self.summary.server = self.status.server
        self.summary.message = self.status.server_detail
        self.summary.remaining = remaining(self.queue)
        self.status.state = "stopped"
        self._publish()
        if restarting and self.hand_over_lock:
            self.journal.close()  # the lock goes on to the restarted program
        elif clean:
            self.journal.close()
            self.lock.release()
        else:
            log.error("a write to the queue has not finished within %.0fs (a hung disk?); the "
                      "instance stays locked until it does", GATE_CLOSE_TIMEOUT)
            self._gate.when_idle(self.journal.close)
            self._gate.when_idle(self.lock.release)
        busy = self.unfinished_threads()
        log.info("stopped (%s): %d uploaded this run%s", "immediate" if self.hard_stop
                 else "graceful", self.status.uploaded,
                 f"; {busy} abandoned thread(s) still busy" if busy else "")

    def _finish_conversions(self, deadline: float) -> None:
        """Wait (until `deadline`, real time) for the conversions running at the stop."""
        while self._conversions and not self.hard_stop:
            remaining_time = deadline - time.monotonic()
            if remaining_time <= 0:
                break
            self._wake.clear()
            self._collect_conversions()
            if self._conversions:
                self._wake.wait(min(remaining_time, 0.25))  # each one that ends wakes us
        self._collect_conversions()
        if self._conversions:
            log.warning("%d conversion(s) still running at the stop are abandoned; their files "
                        "stay in the watch folders and are converted at the next start",
                        len(self._conversions))


def _notify_text(status: ServiceStatus) -> str:
    """The one line `systemctl status` shows: the station's own faults first."""
    alarms = []
    if status.station_fault:
        alarms.append(f"STATION FAULT: {status.station_fault}")
    if status.conversions_paused:
        alarms.append(f"CONVERSIONS PAUSED: {status.stuck_conversions} converter threads stuck")
    text = (f"server {status.server}; uploaded {status.uploaded}, rejected {status.rejected}, "
            f"conversion errors {status.conversion_errors}")
    return "; ".join([*alarms, text])


def _os_reason(exc: OSError) -> str:
    """"Permission denied (EACCES) on /path": what an operator can look up and act on."""
    name = errno.errorcode.get(exc.errno or 0)
    text = exc.strerror or str(exc)
    if name:
        text += f" ({name})"
    if exc.filename:
        text += f" on {exc.filename}"
    return text


def block_signals() -> None:
    """Hold SIGTERM, SIGINT and SIGHUP until `install_signal_handlers` takes them: over a
    restart in place (the mask survives exec) a signal then waits instead of killing the
    process with its default action."""
    signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)


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


def _mtime(path: Path) -> float | None:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None

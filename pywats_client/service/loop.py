"""`Service`: one process that watches, converts, queues and uploads until it is told to stop —
its main loop, its conversion pool, the accounting of each file's conversion, and stopping.
"""

from __future__ import annotations

import collections
import enum
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
from pywats_client.config.settings import Settings
from pywats_client.converters import ConversionSkipped, ConverterRegistry
from pywats_client.converters.memory import MemoryBudget
from pywats_client.errors import (
    ConfigError,
    ConversionError,
    IncompleteFileError,
    QueueFullError,
)
from pywats_client.outcomes import ServerState
from pywats_client.paths import InstancePaths
from pywats_client.queue.lock import InstanceLock
from pywats_client.queue.store import DurableQueue
from pywats_client.sdnotify import Notifier
from pywats_client.service import process_table
from pywats_client.service.dispatcher import UploadDispatcher
from pywats_client.service.drain import remaining
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
    apply_post_action,
    move_to_error,
    put_skipped_aside,
)
from pywats_client.service.status import RunSummary, ServiceStatus, write_status
from pywats_client.service.uploader import uploader_for
from pywats_client.service.watcher import FolderWatcher, SourceFile

log = logging.getLogger(__name__)

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
INCOMPLETE_GIVE_UP = 300.0  # seconds a file may keep looking truncated before it is an error
DISK_FULL_RETRY = 5.0  # seconds before a file that met a full disk is tried again
HOUSEKEEPING_INTERVAL = 3600.0
STATUS_INTERVAL = 1.0
DISK_LOW_BYTES = 100 * 2**20  # warn below this much free space for the queue...
DISK_LOW_FRACTION = 0.02  # ...or below this fraction of the disk, whichever is larger
STUCK_GRACE = 60.0  # beyond the request timeouts, before an upload counts as stuck
STUCK_CONVERSION = 600.0  # a conversion this long means a converter is stuck


class ConversionOutcome(enum.Enum):
    """What became of one source file; `Service` has one handler for each, `_on_<value>`."""

    QUEUED = "queued"  # its reports are durably queued; the post-action was applied
    ERROR = "error"  # cannot be converted: moved to the error folder
    INCOMPLETE = "incomplete"  # looks truncated, still being written: look again later
    DISK_FULL = "disk_full"  # no room for its reports: the file waits, tried again soon
    GONE = "gone"  # vanished before it was converted
    SKIPPED = "skipped"  # its converter said it holds no report: put aside with a note


@dataclass(frozen=True)
class _Converted:
    """A conversion thread's result for the main thread's bookkeeping."""

    source: SourceFile
    outcome: ConversionOutcome
    message: str = ""
    queued: tuple[str, ...] = ()
    companions: tuple[Path, ...] = ()


class Service:
    """One running instance. Create, then `run()` on the main thread.

    `run()` sweeps the queue, starts the watcher, then loops — hand stable files to the
    conversion pool (10 threads), let the dispatcher feed the upload pool (5 threads), prune old
    items, publish the status — sleeping on an Event between rounds, so it wakes at once for a
    new file, a finished upload or a signal, and costs nothing when idle.

    Signals only set flags: the first SIGTERM/SIGINT stops gracefully (no new work, in-flight
    uploads get `stop_timeout` seconds), a second one stops at once. Either way nothing is
    lost: a report being uploaded stays in processing/ and the next start sends it again with
    the same id.
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
        self.lock = InstanceLock(paths.lock, paths.name)
        self.queue = DurableQueue(paths.queue, settings.queue, clock=clock)
        self.registry = ConverterRegistry(
            enabled=settings.converters.enabled, plugin_dir=paths.converters
        )
        self.seen = SeenFiles(paths.state)
        self.watcher = FolderWatcher(
            settings.queue.watch_folders,
            settle_time=settings.queue.settle_time,
            rescan_interval=settings.queue.rescan_interval,
            state_dir=paths.state,
            clock=clock,
            wake=self.wake,
            seen=self.seen,
        )
        self.summary = RunSummary()
        self.dispatcher = UploadDispatcher(
            self.queue, uploader_for(settings), settings.queue, self.status,
            clock=clock, wake=self.wake, summary=self.summary,
        )
        self._converters = ThreadPoolExecutor(CONVERSION_WORKERS, thread_name_prefix="convert")
        self.memory = MemoryBudget(settings.converters.max_memory_mb)  # shared by conversions
        self._conversions: dict[Future[_Converted], SourceFile] = {}
        self._waiting: collections.deque[SourceFile] = collections.deque()
        self._incomplete_since: dict[Path, tuple[float, int]] = {}  # first look, looks
        self._config_mtime = _mtime(paths.config)
        self.notifier = Notifier()
        self.processes = process_table.load(paths.state)
        self._process_fetch: Future[object] | None = None
        self._next_process_fetch = 0.0
        self._conversion_started: dict[Future[_Converted], float] = {}
        # One handler per outcome, `_on_<outcome>`: a missing one fails here, at the start.
        self._conversion_handlers: dict[ConversionOutcome, Callable[[_Converted], None]] = {
            outcome: getattr(self, f"_on_{outcome.value}") for outcome in ConversionOutcome}
        # What other threads (the control API) may read: a copy of the status, replaced, never
        # mutated, each time it is published.
        self._snapshot_lock = threading.Lock()
        self._snapshot: dict[str, Any] = self.status.to_dict()
        self.restart_requested = False

    # -- control --------------------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    def request_stop(self) -> None:
        """First call: graceful stop. Second: stop now. Safe from a signal handler."""
        self._stop_requests += 1
        self._wake.set()

    def request_restart(self) -> None:
        """Stop gracefully; the caller of run() then starts the same command again in this
        process (the CLI re-executes itself). Safe from any thread."""
        self.restart_requested = True
        self.request_stop()

    def snapshot(self) -> dict[str, Any]:
        """The status as last published, for other threads. Treat it as read-only."""
        with self._snapshot_lock:
            return self._snapshot

    @property
    def hard_stop(self) -> bool:
        """True when a second stop request asked to quit without waiting."""
        return self._stop_requests > 1

    def install_signal_handlers(self) -> None:
        def handle(signum: int, frame: FrameType | None) -> None:
            self.request_stop()  # only a counter and an Event: nothing else in a handler

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)

    # -- the loop -------------------------------------------------------------------------

    def run(self, *, once: bool = False, on_ready: Callable[[], None] | None = None
            ) -> RunSummary:
        """Serve until stopped (or, with `once`, until everything due is done).

        `on_ready` is called once the queue is swept and the folders are watched (a daemon's
        parent waits for that before it reports success)."""
        self.lock.acquire("service (once)" if once else "service")
        try:
            self.paths.ensure()
            self.queue.ensure_layout()
            self.queue.sweep()
            for error in self.registry.errors:
                log.warning("%s", error)
            self.queue.prune()
            if not self.processes:
                # First start: learn the server's process names before the first file needs
                # them (one request, bounded by the connect timeout; offline is fine).
                self.processes = self._fetch_processes()
                if self.processes:
                    process_table.save(self.paths.state, self.processes)
            self.watcher.start()
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
        while self._stop_requests == 0:
            self._wake.clear()
            now = self.clock.monotonic()
            self._collect_conversions()
            ready, watcher_wait = self.watcher.poll()
            self._waiting.extend(ready)
            self._submit_conversions()
            upload_wait = self.dispatcher.pump()
            if now >= next_housekeeping:
                self.queue.prune()
                next_housekeeping = now + HOUSEKEEPING_INTERVAL
            self._check_config()
            self._refresh_processes(now)
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
            timeout = min(watcher_wait, upload_wait, next_housekeeping - now)
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
        oldest = min(self._conversion_started.values(), default=now)
        if now - oldest > STUCK_CONVERSION:
            log.error("a conversion has run for over %.0fs; the service looks stuck",
                      STUCK_CONVERSION)
            return False
        return True

    def _once_finished(self) -> bool:
        if self._conversions or self._waiting or self.watcher.pending_count():
            return False
        if not self.dispatcher.can_send:
            return True  # offline or paused: what is due stays queued for the next run
        return not self.dispatcher.has_due_work()

    # -- conversion -----------------------------------------------------------------------

    def _submit_conversions(self) -> None:
        limit = (CONVERSIONS_WHILE_UPLOADS_LAG if self.dispatcher.uploads_lag()
                 else MAX_CONVERSIONS_QUEUED)
        while self._waiting and len(self._conversions) < limit:
            source = self._waiting.popleft()
            future = self._converters.submit(self._convert, source)
            self._conversions[future] = source
            self._conversion_started[future] = self.clock.monotonic()
            future.add_done_callback(lambda _f: self.wake())

    def _convert(self, source: SourceFile) -> _Converted:
        """Conversion thread: file -> reports -> queue (durable) -> post-action."""
        path = source.path
        companions: tuple[Path, ...] = ()
        try:
            converter, reason = converter_for(self.settings, self.registry, path, source.folder)
            companions = companions_of(converter, path)
            context = make_context(self.settings, path, source.folder.arguments, self.processes)
            with memory_reserved(self.settings, converter, path, self.memory):
                conversion = convert_file(path, converter, context, reason,
                                          max_file_bytes(self.settings))
                results = queue_reports(self.queue, conversion)
                conversion.reports.clear()  # queued: free them before the budget is given back
        except IncompleteFileError as exc:
            return _Converted(source, ConversionOutcome.INCOMPLETE, str(exc), companions=companions)
        except QueueFullError as exc:
            return _Converted(source, ConversionOutcome.DISK_FULL, str(exc))
        except ConversionSkipped as exc:
            return self._skip_source(source, str(exc), companions)
        except ConversionError as exc:
            return self._reject_source(source, str(exc), companions)
        except FileNotFoundError:
            return _Converted(source, ConversionOutcome.GONE,
                              f"{path} disappeared before it was converted")
        except Exception as exc:  # a converter bug must not stop the station
            log.exception("converting %s failed unexpectedly", path)
            return self._reject_source(
                source, f"the converter failed unexpectedly: {exc!r}", companions)
        for result in results:
            if result.created:
                self.dispatcher.notify_queued(result.id)
            else:
                log.info("report %s from %s is already %s; not queued twice",
                         result.id, path, result.state.value)
        try:
            apply_post_action(source, self.seen, conversion.companions)
        except OSError as exc:
            # The reports are safe in the queue; only the tidy-up failed.
            log.error("report(s) from %s queued, but its post-action failed: %s", path, exc)
        ids = tuple(r.id for r in results)
        # queue.put() already logged each report with its file and converter.
        log.debug("converted %s with %s into %s", path.name, conversion.reason,
                  ", ".join(ids))
        return _Converted(source, ConversionOutcome.QUEUED, conversion.reason, ids)

    def _skip_source(
        self, source: SourceFile, reason: str, companions: tuple[Path, ...] = ()
    ) -> _Converted:
        try:
            moved = put_skipped_aside(source, self.seen, reason, companions=companions)
        except OSError as exc:
            log.error("%s; no report made, and the file cannot be put aside: %s", reason, exc)
        else:
            log.info("%s; no report made%s", reason, f", moved to {moved}" if moved else "")
        return _Converted(source, ConversionOutcome.SKIPPED, reason)

    def _reject_source(
        self, source: SourceFile, reason: str, companions: tuple[Path, ...] = ()
    ) -> _Converted:
        try:
            moved = move_to_error(source, reason, companions=companions)
            log.error("cannot convert %s: %s; moved to %s", source.path, reason, moved)
        except OSError as exc:
            log.error("cannot convert %s: %s; and cannot move it to the error folder: %s",
                      source.path, reason, exc)
        return _Converted(source, ConversionOutcome.ERROR, reason)

    def _collect_conversions(self) -> None:
        for future in [f for f in self._conversions if f.done()]:
            source = self._conversions.pop(future)
            self._conversion_started.pop(future, None)
            try:
                done = future.result()
            except Exception:
                log.exception("conversion of %s crashed", source.path)
                self.watcher.retry_later(source, DISK_FULL_RETRY)
                continue
            self._account_conversion(done)

    def _account_conversion(self, done: _Converted) -> None:
        self._conversion_handlers[done.outcome](done)

    def _on_queued(self, done: _Converted) -> None:
        self._incomplete_since.pop(done.source.path, None)
        self.status.converted += 1
        self.summary.converted += 1
        self.status.disk_full = False
        self.watcher.done(done.source)

    def _on_incomplete(self, done: _Converted) -> None:
        source, path, now = done.source, done.source.path, self.clock.monotonic()
        first, looks = self._incomplete_since.get(path, (now, 0))
        self._incomplete_since[path] = (first, looks + 1)
        if now - first < INCOMPLETE_GIVE_UP:
            # Look again soon, then less and less often: a slow writer is not worth a log
            # line every settle period.
            delay = min(self.settings.queue.settle_time * 2 ** looks + 0.1, 30.0)
            log.info("%s looks incomplete (%s); looking again in %.1fs", path, done.message,
                     delay)
            self.watcher.retry_later(source, delay)
            return
        self._incomplete_since.pop(path, None)
        self._count_conversion_error(self._reject_source(
            source, f"still incomplete after {INCOMPLETE_GIVE_UP:.0f}s: {done.message}",
            done.companions))
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

    def _count_conversion_error(self, done: _Converted) -> None:
        self.status.conversion_errors += 1
        self.summary.conversion_errors += 1
        self.status.record_failure("conversion", done.message, self.clock.time(),
                                   source=str(done.source.path))

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
                s.converted, s.conversion_errors, s.last_error_at, self.watcher.pending_count(),
                tuple(self.watcher.unavailable()))

    def _publish(self) -> None:
        self.status.watching = self.watcher.pending_count()
        self.status.folders_unavailable = self.watcher.unavailable()
        self._check_disk()
        if self.notifier.enabled:
            self.notifier.status(f"server {self.status.server}; uploaded {self.status.uploaded}, "
                                 f"rejected {self.status.rejected}, conversion errors "
                                 f"{self.status.conversion_errors}")
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
            self._next_process_fetch = now + (process_table.REFRESH_SECONDS if table else 600)
        if (self._process_fetch is None and now >= self._next_process_fetch
                and self.status.server is ServerState.ONLINE and self.dispatcher.accepting):
            self._process_fetch = self.dispatcher.background(self._fetch_processes)

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
        graceful = self._stop_requests <= 1
        if self.restart_requested and graceful:
            # The process stays and says READY=1 again after re-executing: to systemd this is
            # a reload, not a stop (STOPPING=1 would make it wait for the process to exit).
            usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
            self.notifier.notify("RELOADING=1", f"MONOTONIC_USEC={usec}", "STATUS=restarting")
        else:
            self.notifier.stopping()
        self.status.state = "stopping"
        self._publish_snapshot()
        self.watcher.stop()
        if graceful:
            self._converters.shutdown(wait=True, cancel_futures=True)
            self._collect_conversions()
            if not self.dispatcher.drain(self.stop_timeout):
                log.warning("uploads still running after %.0fs; they are retried at the next "
                            "start", self.stop_timeout)
        else:
            self._converters.shutdown(wait=False, cancel_futures=True)
        self.dispatcher.shutdown()
        # The uploads were tallied as they finished; the server as the probes left it too.
        self.summary.server = self.status.server
        self.summary.message = self.status.server_detail
        self.summary.remaining = remaining(self.queue)
        self.status.state = "stopped"
        self._publish()
        self.lock.release()
        log.info("stopped (%s): %d uploaded this run", "graceful" if graceful else "immediate",
                 self.status.uploaded)


def _mtime(path: Path) -> float | None:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None

"""`Service`: one process that watches, converts, queues and uploads until it is told to stop —
its main loop and what the loop keeps up (the instance lock, config changes, the process list,
the status); the parts it owns are `conversions`, `station_faults`, `poison` and `stopping`.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, cast

from pywats_client import __version__
from pywats_client.clock import SYSTEM_CLOCK, Clock
from pywats_client.config.settings import Settings
from pywats_client.converters import ConverterRegistry
from pywats_client.converters.memory import MemoryBudget
from pywats_client.errors import ConfigError
from pywats_client.outcomes import ServerState
from pywats_client.paths import InstancePaths
from pywats_client.queue.lock import InstanceLock
from pywats_client.queue.store import DurableQueue
from pywats_client.sdnotify import Notifier
from pywats_client.service import process_table, stopping
from pywats_client.service.conversions import Conversions
from pywats_client.service.dispatcher import UploadDispatcher
from pywats_client.service.gate import WorkGate
from pywats_client.service.journal import ConversionJournal
from pywats_client.service.poison import PoisonFiles
from pywats_client.service.postaction import SeenFiles
from pywats_client.service.station_faults import StationFaults
from pywats_client.service.status import (
    ERROR_COUNT_INTERVAL,
    RunSummary,
    ServiceStatus,
    count_error_files,
    write_status,
)
from pywats_client.service.turn import Turn
from pywats_client.service.uploader import uploader_for
from pywats_client.service.watcher import FolderWatcher

log = logging.getLogger(__name__)

HOUSEKEEPING_INTERVAL = 3600.0
STATUS_INTERVAL = 1.0
DISK_LOW_BYTES = 100 * 2**20  # warn below this much free space for the queue...
DISK_LOW_FRACTION = 0.02  # ...or below this fraction of the disk, whichever is larger
STUCK_GRACE = 60.0  # beyond the request timeouts (and converters.timeout_s): stuck
LOCK_CHECK_INTERVAL = 10.0  # how often the service makes sure its lock file is still its own
# How often at most config.json is looked at for new server settings: at every round of the
# loop, but while files flow the loop runs several rounds per report, and a stat of the file in
# each was a tenth of the main thread's work. A file dropped after the change is still sent
# with the new settings (the round that takes it looks, unless one did less than this ago).
CONFIG_CHECK_INTERVAL = 0.05


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
        self.restart_reason = ""
        self.gate = WorkGate()  # closed by the stop: see stopping.shut_down
        self.journal = ConversionJournal(paths.state)
        self.lock = InstanceLock(paths.lock, paths.name)
        self.queue = DurableQueue(paths.queue, settings.queue, clock=clock)
        self.registry = ConverterRegistry(
            enabled=settings.converters.enabled, plugin_dir=paths.converters
        )
        self.seen = SeenFiles(paths.state)
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
        self.turn = Turn()  # the threads' stretches of work, one at a time (see Turn)
        self.dispatcher = UploadDispatcher(
            self.queue, uploader_for(settings), settings.queue, self.status,
            clock=clock, wake=self.wake, summary=self.summary, gate=self.gate, turn=self.turn,
        )
        self.memory = MemoryBudget(settings.converters.max_memory_mb)  # shared by conversions
        self.poison = PoisonFiles(settings, paths, self.journal, self.status, self.summary, clock)
        self.faults = StationFaults(self.status, clock, self.watcher)
        self.conversions = Conversions(self, self._wake)
        self._config_mtime = _mtime(paths.config)
        self.notifier = Notifier()
        self.processes = process_table.load(paths.state)
        self._process_fetch: Future[object] | None = None
        self._next_process_fetch = 0.0
        self._next_lock_check = 0.0
        self.once = False  # run(once=True): what cannot be done now is left to a later run
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
        self.restart_reason = reason
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
        stopping.install_signal_handlers(self, exit_now)

    def abandon_now(self) -> None:
        """For an exit that does not wait (a second stop): tell systemd, and note in the
        journal that the files being converted did not kill the process. No locks taken."""
        self.journal.mark_stopped_now()
        self.notifier.stopping()

    def unfinished_threads(self) -> int:
        """Threads still busy after run() returned (stuck converters, abandoned requests):
        they change nothing any more, but a process that waits for them cannot exit."""
        return self.conversions.unfinished() + self.dispatcher.unfinished()

    # -- the loop -------------------------------------------------------------------------

    def run(self, *, once: bool = False, on_ready: Callable[[], None] | None = None
            ) -> RunSummary:
        """Serve until stopped (or, with `once`, until everything due is done).

        `on_ready` is called once the queue is swept and the folders are watched (a daemon's
        parent waits for that before it reports success)."""
        self.once = once
        self.lock.acquire("service (once)" if once else "service")
        try:
            self.paths.ensure()
            self.queue.ensure_layout()
            self.poison.recover()
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
            stopping.shut_down(self)
        return self.summary

    def _loop(self, once: bool) -> None:
        next_housekeeping = self.clock.monotonic() + HOUSEKEEPING_INTERVAL
        next_status = 0.0
        next_ping = 0.0
        ping = self.notifier.watchdog_interval
        published: tuple[object, ...] = ()
        conversions = self.conversions
        while not self._stopping():
            # A round is a stretch of work like any other thread's (see Turn); the wait is not.
            with self.turn:
                self._wake.clear()
                now = self.clock.monotonic()
                conversions.collect()
                conversions.enforce_time_limits(now)
                room = conversions.room()
                if room:
                    ready, watcher_wait = self.watcher.poll(limit=room)
                    conversions.waiting.extend(ready)
                else:  # full: the end of a conversion makes room and wakes this loop
                    watcher_wait = math.inf
                conversions.submit()
                upload_wait = self.dispatcher.pump()
                if now >= next_housekeeping:
                    self.queue.prune()
                    next_housekeeping = now + HOUSEKEEPING_INTERVAL
                self._check_config(now)
                self._check_lock(now)
                self._refresh_processes(now)
                self._count_error_files(now)
                changed = self._status_key() != published
                if changed and now >= next_status:
                    self.publish()
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
                if changed:  # publish what changed, rate-limited
                    timeout = min(timeout, next_status - now)
                if conversions.running or self.dispatcher.in_flight:
                    timeout = min(timeout, STATUS_INTERVAL, conversions.next_start_in(now))
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
        oldest = self.conversions.oldest_start()
        if oldest is not None and now - oldest > conversion_bound:
            log.error("a conversion has run for over %.0fs; the service looks stuck",
                      conversion_bound)
            return False
        return True

    def _once_finished(self) -> bool:
        conversions = self.conversions
        if self.status.conversions_paused:
            return not conversions.running  # what waits is converted by a later run
        if (conversions.running or conversions.waiting or self.poison.held
                or self.watcher.has_work()):
            return False
        if not self.dispatcher.can_send:
            return True  # offline or paused: what is due stays queued for the next run
        return not self.dispatcher.has_due_work()

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

    _next_config_check = 0.0  # monotonic

    def _check_config(self, now: float) -> None:
        """A changed config.json may carry the fix for a paused uploader: apply its server
        settings within CONFIG_CHECK_INTERVAL. (Watch folders and converters are read at
        start.)"""
        if now < self._next_config_check:
            return
        self._next_config_check = now + CONFIG_CHECK_INTERVAL
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

    def publish(self) -> None:
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
                self.conversions.release_awaiting_processes()
            awaiting = self.conversions.awaiting_processes
            retry = self.settings.queue.probe_interval if awaiting else 600
            self._next_process_fetch = now + (process_table.REFRESH_SECONDS if table else retry)
        # Files waiting for the list are reason enough to ask, whatever the uploads found.
        wanted = (self.status.server is ServerState.ONLINE
                  or bool(self.conversions.awaiting_processes))
        if (self._process_fetch is None and now >= self._next_process_fetch and wanted
                and self.dispatcher.accepting):
            self._process_fetch = self.dispatcher.background(self._fetch_processes)

    def fetch_processes_now(self) -> None:
        """A file waits for the process list: ask the server at the next round."""
        self._next_process_fetch = self.clock.monotonic()

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


def _mtime(path: Path) -> float | None:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None

"""The upload side of the service: feed due reports to the 5 upload workers, act on outcomes.

The main thread calls `pump()` whenever it wakes. `pump()` collects finished uploads, decides
whether the server may be sent anything (online, offline, paused for credentials, holding off
after 429s or a run of server errors), probes it while it is not, and claims due reports while
a worker is free. A worker uploads one claimed report and makes its queue transition itself —
each report is owned by exactly one worker, and doing the fsyncs there keeps them off the main
thread; the outcome comes back to the main thread, which alone updates the shared state.

Depends on: queue, uploader, status, settings, clock.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from pywats_client.clock import SYSTEM_CLOCK, Clock
from pywats_client.errors import QueueFullError
from pywats_client.queue import Claimed, ReportQueue, State
from pywats_client.settings import QueueSettings
from pywats_client.status import ServiceStatus
from pywats_client.uploader import Outcome, UploadResult, WatsClient

log = logging.getLogger(__name__)

UPLOAD_WORKERS = 5
SCAN_BATCH = 1000  # due ids held in memory at once, whatever the queue size
HOLD_AFTER_TRANSIENT = 5  # consecutive server errors before all uploads hold off


@dataclass(frozen=True)
class Finished:
    """One upload as the main thread learns of it."""

    report_id: str
    result: UploadResult
    state: State | None  # where the report went (None: the transition itself failed)
    source: str = ""  # the file the report was converted from, for the status page


class UploadDispatcher:
    """Owns the upload pool; see the module docstring."""

    def __init__(
        self,
        queue: ReportQueue,
        client: WatsClient,
        settings: QueueSettings,
        status: ServiceStatus,
        *,
        clock: Clock = SYSTEM_CLOCK,
        wake: Callable[[], None] = lambda: None,
        workers: int = UPLOAD_WORKERS,
    ) -> None:
        self.queue = queue
        self.client = client
        self.settings = settings
        self.status = status
        self.clock = clock
        self.wake = wake
        self.workers = workers
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="upload")
        self._in_flight: dict[Future[Finished], str] = {}
        self._started: dict[Future[Finished], float] = {}  # monotonic time of submission
        self._probe: Future[UploadResult] | None = None
        self._fresh: collections.deque[str] = collections.deque()
        self._fresh_lock = threading.Lock()
        self._candidates: collections.deque[str] = collections.deque()
        self._next_scan = 0.0  # monotonic; 0 = scan at the first pump
        self._next_probe = 0.0
        self._hold_until = 0.0
        self._consecutive_transient = 0
        self._retired_clients: list[WatsClient] = []
        self.accepting = True  # False while stopping: finish in-flight work, claim nothing new

    # -- called from any thread -----------------------------------------------------------

    def notify_queued(self, report_id: str) -> None:
        """A report was just put into pending/: send it without waiting for a scan."""
        with self._fresh_lock:
            self._fresh.append(report_id)
        self.wake()

    # -- main thread ----------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    @property
    def can_send(self) -> bool:
        return self.status.server not in ("offline", "paused")

    def background(self, task: Callable[[], object]) -> Future[object]:
        """Run a small server call (such as fetching the process list) on an upload thread;
        the main thread is woken when it is done."""
        future: Future[object] = self._pool.submit(task)
        future.add_done_callback(lambda _f: self.wake())
        return future

    def oldest_upload_age(self) -> float:
        """Seconds the longest-running upload has taken so far (0 when none runs)."""
        if not self._started:
            return 0.0
        return self.clock.monotonic() - min(self._started.values())

    def replace_client(self, client: WatsClient) -> None:
        """New server settings: use them from now on, and probe at once if the server was
        unreachable or refused us (the new settings may be the fix)."""
        self._retired_clients.append(self.client)
        self.client = client
        if self.status.server in ("paused", "offline"):
            self._next_probe = 0.0

    def has_due_work(self) -> bool:
        """True if something is in flight or a due report may be waiting (scans if needed)."""
        if self._in_flight or self._fresh or self._candidates:
            return True
        self._scan(self.clock.monotonic())
        return bool(self._candidates)

    def pump(self) -> float:
        """Collect, probe, dispatch. Returns seconds until the next pump is needed."""
        now = self.clock.monotonic()
        self._collect()
        self._collect_probe(now)
        if not self.can_send:
            if self._probe is None and now >= self._next_probe:
                self._probe = self._pool.submit(self._run_probe)
                self._probe.add_done_callback(lambda _f: self.wake())
            return max(0.0, self._next_probe - now) if self._probe is None else 60.0
        if now < self._hold_until:
            return self._hold_until - now
        while self.accepting and len(self._in_flight) < self.workers:
            report_id = self._next_id(now)
            if report_id is None:
                break
            claimed = self.queue.claim(report_id)
            if claimed is None:
                continue  # already taken, pruned or quarantined
            future = self._pool.submit(self.upload_one, claimed)
            self._in_flight[future] = report_id
            self._started[future] = now
            future.add_done_callback(lambda _f: self.wake())
        if self._fresh or self._candidates:
            return 0.0 if len(self._in_flight) < self.workers else 60.0
        return max(0.0, self._next_scan - now)

    def _next_id(self, now: float) -> str | None:
        with self._fresh_lock:
            if self._fresh:
                return self._fresh.popleft()
        if not self._candidates and now >= self._next_scan:
            self._scan(now)
        return self._candidates.popleft() if self._candidates else None

    def _scan(self, now: float) -> None:
        ids, later = self.queue.due(SCAN_BATCH)
        self._candidates.extend(ids)
        interval = self.settings.upload_interval
        if len(ids) >= SCAN_BATCH:
            self._next_scan = now  # more are due: scan again when these are sent
        elif later is not None:
            self._next_scan = now + min(interval, max(0.0, later - self.clock.time()))
        else:
            self._next_scan = now + interval

    def _collect(self) -> None:
        for future in [f for f in self._in_flight if f.done()]:
            report_id = self._in_flight.pop(future)
            self._started.pop(future, None)
            try:
                finished = future.result()
            except Exception:  # a bug, not an outcome: the report is swept back at start-up
                log.exception("upload of report %s crashed", report_id)
                continue
            self._account(finished)

    def _account(self, finished: Finished) -> None:
        result, status, now = finished.result, self.status, self.clock.monotonic()
        wall = self.clock.time()
        if result.outcome is Outcome.STORED:
            status.uploaded += 1
            status.record_upload(finished.report_id, wall, finished.source)
            self._consecutive_transient = 0
            self._set_server("online", "")
            return
        key = result.outcome.value
        status.upload_failures[key] = status.upload_failures.get(key, 0) + 1
        status.record_failure(key, result.message, wall, report_id=finished.report_id,
                              source=finished.source)
        if result.outcome is Outcome.REJECTED:
            status.rejected += 1
        elif result.outcome is Outcome.TRANSIENT:
            self._consecutive_transient += 1
            hold = result.retry_after or 0.0
            if self._consecutive_transient >= HOLD_AFTER_TRANSIENT:
                hold = max(hold, self.queue.backoff(
                    self._consecutive_transient - HOLD_AFTER_TRANSIENT + 1))
            if hold:
                self._hold_until = max(self._hold_until, now + hold)
                log.warning("server trouble: holding all uploads for %.0fs", hold)
        elif result.outcome in (Outcome.OFFLINE, Outcome.AUTH):
            state = "offline" if result.outcome is Outcome.OFFLINE else "paused"
            if self.status.server != state:
                self._next_probe = now + self._probe_delay()
            self._set_server(state, result.message)

    def _probe_delay(self) -> float:
        return self.settings.probe_interval

    def _collect_probe(self, now: float) -> None:
        if self._probe is None or not self._probe.done():
            return
        probe, self._probe = self._probe, None
        try:
            result = probe.result()
        except Exception:
            log.exception("server probe crashed")
            self._next_probe = now + self._probe_delay()
            return
        if result.outcome is Outcome.STORED:
            self._set_server("online", "")
            self._next_scan = 0.0
            return
        if result.outcome is Outcome.AUTH:
            self._set_server("paused", result.message)
        elif result.outcome in (Outcome.OFFLINE, Outcome.TRANSIENT):
            self._set_server("offline", result.message)
        self._next_probe = now + self._probe_delay()

    def _set_server(self, state: str, detail: str) -> None:
        if self.status.server == state and self.status.server_detail == detail:
            return
        if state == "online":
            log.info("server %s is reachable and accepts our credentials: uploading", "online")
        elif state == "paused":
            log.error("uploads paused: %s. Reports are kept; fix the server URL or token "
                      "(pywats-client config set ...) and they resume", detail)
        elif state == "offline":
            log.warning("server unreachable (%s); reports are kept and sent when it is back",
                        detail)
        self.status.server, self.status.server_detail = state, detail

    # -- worker threads -------------------------------------------------------------------

    def _run_probe(self) -> UploadResult:
        return self.client.probe()

    def upload_one(self, item: Claimed) -> Finished:
        """Upload one claimed report and make its queue transition (worker thread)."""
        try:
            result = self.client.upload(item.body, item.id)
        except Exception as exc:  # the uploader classifies; anything else is unexpected
            log.exception("unexpected error uploading report %s", item.id)
            result = UploadResult(Outcome.TRANSIENT, None, f"unexpected error: {exc}")
        return Finished(item.id, result, self._transition(item, result), item.header.source)

    def _transition(self, item: Claimed, result: UploadResult) -> State | None:
        try:
            if result.outcome is Outcome.STORED:
                self.queue.complete(item)  # PROCESSING -> COMPLETED
                return State.COMPLETED
            if result.outcome is Outcome.REJECTED:
                self.queue.fail(item, f"rejected by the server: {result.message}")
                return State.FAILED  # PROCESSING -> FAILED
            if result.outcome is Outcome.TRANSIENT:
                return self.queue.retry(item, result.message, result.retry_after)
            self.queue.release(item)  # OFFLINE / AUTH: PROCESSING -> PENDING, untouched
            return State.PENDING
        except (OSError, QueueFullError) as exc:
            # No room to rewrite it: put it back as it was; nothing is lost, the attempt is.
            log.error("report %s: cannot record the upload outcome (%s)", item.id, exc)
            try:
                self.queue.release(item)
            except OSError:
                log.exception("report %s left in processing/; the next start retries it",
                              item.id)
            return None

    # -- stopping -------------------------------------------------------------------------

    def drain(self, timeout: float) -> bool:
        """Claim nothing new; wait up to `timeout` for in-flight uploads. True if all ended."""
        self.accepting = False
        deadline = self.clock.monotonic() + timeout
        done = threading.Event()
        while self._in_flight:
            remaining = deadline - self.clock.monotonic()
            if remaining <= 0:
                return False
            future = next(iter(self._in_flight))
            future.add_done_callback(lambda _f: done.set())
            done.wait(min(remaining, 1.0))
            done.clear()
            self._collect()
        return True

    def shutdown(self) -> None:
        """Stop the pool without waiting for stuck requests (their reports are in processing/
        and go back to pending at the next start)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        for client in [*self._retired_clients, self.client]:
            client.close()

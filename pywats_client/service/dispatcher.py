"""The service's uploads: `UploadDispatcher` feeds due reports to the upload workers and acts on
their outcomes (pause, probe, hold off); `post()` and `transition()` send one claimed report and
make the queue move its outcome calls for, for every way of uploading.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from pywats_client.clock import SYSTEM_CLOCK, Clock
from pywats_client.config.settings import QueueSettings
from pywats_client.errors import QueueFullError
from pywats_client.outcomes import Outcome, ServerState
from pywats_client.queue.store import Claimed, DurableQueue, State
from pywats_client.service.gate import WorkGate
from pywats_client.service.status import RunSummary, ServiceStatus
from pywats_client.service.turn import Turn
from pywats_client.service.uploader import Uploader, UploadResult

log = logging.getLogger(__name__)

UPLOAD_WORKERS = 5
FINISHING_PER_WORKER = 2  # stored reports waiting for their move to completed/, per worker
LAGGING_BACKLOG_PER_WORKER = 2  # reports waiting for a slot, per worker, when uploads lag
CHAIN_SECONDS = 0.5  # how long a worker goes on with next reports before it reports back
SCAN_BATCH = 1000  # due ids held in memory at once, whatever the queue size
HOLD_AFTER_TRANSIENT = 5  # consecutive server errors before all uploads hold off


@dataclass(frozen=True)
class Finished:
    """One upload as the main thread learns of it."""

    report_id: str
    result: UploadResult
    # Where the report went; None: the transition failed, or it is still being made by
    # `finishing` (the move to completed/ of a stored report).
    state: State | None
    source: str = ""  # the file the report was converted from, for the status page
    finishing: Future[State | None] | None = field(default=None, compare=False, repr=False)


class UploadDispatcher:
    """Owns the upload pool.

    The main thread calls `pump()` whenever it wakes. `pump()` collects finished uploads,
    decides whether the server may be sent anything (its `ServerState`, or a hold after 429s or
    a run of server errors), probes it while it may not, and hands due report ids to the
    workers while one is free. A worker claims its report, uploads it and makes its queue
    transition itself — each report is owned by exactly one thread at a time, and doing the
    file work there keeps it off the main thread; the outcome comes back to the main thread,
    which alone updates the shared state.

    While the server keeps storing them, a worker goes on with the next due report itself (for
    up to CHAIN_SECONDS) instead of returning for the main thread to hand it one: with
    conversions busy on the other threads, that round trip cost a tenth of each upload slot's
    time.

    A report the server stored is moved to completed/ by the finishing thread, not by its
    upload worker: that move ends in a folder fsync, which waits behind every other fsync in
    the filesystem's journal (during a burst of conversions, as long as the request itself),
    and the upload slot is free the moment the server has answered. The outcome is known then;
    the move only records it, and a report whose move is lost is simply sent again with the
    same id. One thread makes all these moves, and fsyncs the folder only when no other move
    waits behind the one it made, so a burst of stored reports shares one fsync; more threads
    here only competed with the uploads for the interpreter lock.
    """

    def __init__(
        self,
        queue: DurableQueue,
        client: Uploader,
        settings: QueueSettings,
        status: ServiceStatus,
        *,
        clock: Clock = SYSTEM_CLOCK,
        wake: Callable[[], None] = lambda: None,
        workers: int = UPLOAD_WORKERS,
        summary: RunSummary | None = None,
        gate: WorkGate | None = None,
        turn: Turn | None = None,
    ) -> None:
        self.queue = queue
        # Shared with the service's other threads (see Turn): moves to completed/ wait their
        # turn; a claim or an outcome between two requests takes it only when it is free.
        self.turn = turn if turn is not None else Turn()
        self._eager_turn = self.turn.eager()
        # Every queue change a worker makes passes it; closed by the stop (see WorkGate).
        self.gate = gate if gate is not None else WorkGate()
        self.client = client
        self.settings = settings
        self.status = status
        self.summary = summary if summary is not None else RunSummary()
        self.clock = clock
        self.wake = wake
        self.workers = workers
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="upload")
        # The thread appears only when first needed, so an idle service does not have it.
        self._finisher = ThreadPoolExecutor(1, thread_name_prefix="finish")
        self._in_flight: dict[Future[list[Finished]], str] = {}
        self._started: dict[Future[list[Finished]], float] = {}  # monotonic time of submission
        self._finishing: set[Future[State | None]] = set()
        self._finishing_limit = FINISHING_PER_WORKER * workers
        self._finishing_count = 0  # moves submitted and not done yet, counted by the workers
        self._finishing_lock = threading.Lock()
        self._probe: Future[UploadResult] | None = None
        self._background: set[Future[object]] = set()
        self._fresh: collections.deque[str] = collections.deque()
        self._fresh_lock = threading.Lock()
        self._candidates: collections.deque[str] = collections.deque()
        self._next_scan = 0.0  # monotonic; 0 = scan at the first pump
        self._next_probe = 0.0
        self._hold_until = 0.0
        self._consecutive_transient = 0
        self._retired_clients: list[Uploader] = []
        self.accepting = True  # False while stopping: finish in-flight work, claim nothing new

    # -- called from any thread -----------------------------------------------------------

    def notify_queued(self, report_id: str) -> None:
        """A report was just put into pending/: send it without waiting for a scan."""
        with self._fresh_lock:
            self._fresh.append(report_id)
        # With every worker busy, one of them takes it when its upload ends (each goes on with
        # the next due report, or ends and so wakes the main thread): waking the main thread
        # for each report queued only cost a round of its loop and an interpreter-lock hand-off.
        if len(self._in_flight) < self.workers:
            self.wake()

    # -- main thread ----------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Uploads running, plus stored reports still being moved to completed/."""
        return len(self._in_flight) + len(self._finishing)

    @property
    def busy(self) -> bool:
        """True while an upload, a move to completed/ or a probe of the server runs."""
        return bool(self._in_flight or self._finishing or self._probe is not None)

    @property
    def moves_waiting(self) -> int:
        """Stored reports not yet moved to completed/ (the finishing thread's line)."""
        return self._finishing_count

    @property
    def can_send(self) -> bool:
        return self.status.server.can_send

    def uploads_lag(self) -> bool:
        """True while uploads flow but more reports wait for a slot than the workers can take
        (the service then converts one file at a time, spaced; see LAGGING_START_GAP)."""
        if not self.can_send or self.clock.monotonic() < self._hold_until:
            return False
        return len(self._fresh) + len(self._candidates) > LAGGING_BACKLOG_PER_WORKER * self.workers

    def background(self, task: Callable[[], object]) -> Future[object]:
        """Run a small server call (such as fetching the process list) on an upload thread;
        the main thread is woken when it is done."""
        future: Future[object] = self._pool.submit(task)
        self._background = {f for f in self._background if not f.done()}
        self._background.add(future)
        future.add_done_callback(lambda _f: self.wake())
        return future

    def oldest_upload_age(self) -> float:
        """Seconds the longest-running upload has taken so far (0 when none runs)."""
        if not self._started:
            return 0.0
        return self.clock.monotonic() - min(self._started.values())

    def replace_client(self, client: Uploader) -> None:
        """New server settings: use them from now on, and probe at once if the server was
        unreachable or refused us (the new settings may be the fix)."""
        self._retired_clients.append(self.client)
        self.client = client
        if not self.status.server.can_send:
            self._next_probe = 0.0

    def has_due_work(self) -> bool:
        """True if something is in flight or a due report may be waiting (scans if needed)."""
        if self._in_flight or self._finishing or self._fresh or self._candidates:
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
        while self.accepting and self._has_room():
            report_id = self._next_id(now)
            if report_id is None:
                break
            future = self._pool.submit(self._send, report_id)
            self._in_flight[future] = report_id
            self._started[future] = now
            future.add_done_callback(lambda _f: self.wake())
        if self._fresh or self._candidates:
            return 0.0 if self._has_room() else 60.0  # a finishing upload wakes us
        return max(0.0, self._next_scan - now)

    def _has_room(self) -> bool:
        # Stored reports whose move to completed/ lags behind (a slow disk) hold back new
        # uploads, so what is held in memory stays bounded.
        return (len(self._in_flight) < self.workers
                and self._finishing_count < self._finishing_limit)

    def _next_id(self, now: float) -> str | None:
        if not self._fresh and not self._candidates and now >= self._next_scan:
            self._scan(now)
        return self._take_next()

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
                results = future.result()
            except Exception:  # a bug, not an outcome: the report is swept back at start-up
                log.exception("upload of report %s crashed", report_id)
                continue
            for finished in results:
                if finished.finishing is not None:
                    self._finishing.add(finished.finishing)
                self._account(finished)
        for moved in [f for f in self._finishing if f.done()]:
            self._finishing.discard(moved)
            try:
                moved.result()  # the outcome was accounted already; failures are logged
            except Exception:  # a bug: the report stays in processing/ until the next start
                log.exception("moving an uploaded report to completed/ crashed")

    def _account(self, finished: Finished) -> None:
        result, status, now = finished.result, self.status, self.clock.monotonic()
        wall = self.clock.time()
        self.summary.record(result)
        if result.outcome is Outcome.STORED:
            status.uploaded += 1
            status.record_upload(finished.report_id, wall, finished.source)
            self._consecutive_transient = 0
        else:
            key = result.outcome.value
            status.upload_failures[key] = status.upload_failures.get(key, 0) + 1
            status.record_failure(key, result.message, wall, report_id=finished.report_id,
                                  source=finished.source)
            if result.outcome is Outcome.REJECTED:
                status.rejected += 1
            elif result.outcome is Outcome.TRANSIENT:
                self._hold_off(result, now)
        state = ServerState.after(result.outcome)
        if state is not None:
            if not state.can_send and status.server is not state:
                self._next_probe = now + self._probe_delay()  # probe until that changes
            self._set_server(state, "" if state is ServerState.ONLINE else result.message)

    def _hold_off(self, result: UploadResult, now: float) -> None:
        """A server error: honour its Retry-After, and after a run of them hold every upload
        off for a growing while (the server is struggling; a report is not at fault)."""
        self._consecutive_transient += 1
        asked, limit = result.retry_after or 0.0, self.settings.retry_max_delay
        hold = min(asked, limit)  # a server asking for years must not park the station
        if asked > limit:
            log.warning("the server asked to wait %.0fs (Retry-After); holding uploads for at "
                        "most %.0fs (queue.retry_max_delay)", asked, limit)
        if self._consecutive_transient >= HOLD_AFTER_TRANSIENT:
            hold = max(hold, self.queue.backoff(
                self._consecutive_transient - HOLD_AFTER_TRANSIENT + 1))
        if hold:
            self._hold_until = max(self._hold_until, now + hold)
            log.warning("server trouble: holding all uploads for %.0fs", hold)

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
        state = ServerState.after(result.outcome, probe=True)
        if state is ServerState.ONLINE:
            self._set_server(state, "")
            self._next_scan = 0.0
            return
        if state is not None:
            self._set_server(state, result.message)
        self._next_probe = now + self._probe_delay()

    def _set_server(self, state: ServerState, detail: str) -> None:
        if self.status.server is state and self.status.server_detail == detail:
            return
        if state is ServerState.ONLINE:
            log.info("server %s is reachable and accepts our credentials: uploading", state)
        elif state is ServerState.PAUSED:
            log.error("uploads paused: %s. Reports are kept; fix the server URL or token "
                      "(pywats-client config set ...) and they resume", detail)
        elif state is ServerState.OFFLINE:
            log.warning("server unreachable (%s); reports are kept and sent when it is back",
                        detail)
        self.status.server, self.status.server_detail = state, detail

    # -- worker threads -------------------------------------------------------------------

    def _run_probe(self) -> UploadResult:
        return self.client.probe()

    def _send(self, report_id: str) -> list[Finished]:
        """Upload worker: send `report_id`, then, while the server stores them, the next due
        reports (see CHAIN_SECONDS). Reports gone by the time they are claimed are skipped."""
        sent: list[Finished] = []
        deadline = self.clock.monotonic() + CHAIN_SECONDS
        next_id: str | None = report_id
        while next_id is not None:
            finished = self._send_one(next_id)
            if finished is not None:
                sent.append(finished)
                if finished.result.outcome is not Outcome.STORED:
                    break  # the main thread decides what happens next
            next_id = self._take_next() if self._may_go_on(deadline) else None
        return sent

    def _send_one(self, report_id: str) -> Finished | None:
        """PENDING -> PROCESSING, upload, record the outcome; None if the report is gone by
        now (taken, pruned, or quarantined as damaged), or if the service stopped meanwhile:
        then an uploaded report stays in processing/ and the next start sends it again."""
        if not self.gate.enter():
            return None
        try:
            with self._eager_turn:
                item = self.queue.claim(report_id)
        finally:
            self.gate.leave()
        if item is None:
            return None
        result = post(self.client, item)
        if not self.gate.enter():
            return None  # abandoned by the stop: the queue is no longer ours to change
        try:
            if result.outcome is Outcome.STORED:
                with self._finishing_lock:
                    self._finishing_count += 1
                try:
                    finishing = self._finisher.submit(self._finish_stored, item, result)
                except RuntimeError:  # shut down: the stop gave up waiting for this thread
                    self._finished_moving(None)
                    return None
                finishing.add_done_callback(self._finished_moving)
                return Finished(item.id, result, None, item.header.source, finishing)
            with self._eager_turn:
                state = transition(self.queue, item, result)
            return Finished(item.id, result, state, item.header.source)
        finally:
            self.gate.leave()

    def _finish_stored(self, item: Claimed, result: UploadResult) -> State | None:
        """Finishing thread: PROCESSING -> COMPLETED. The folder is fsynced by the last move
        of a burst (none queued behind it; the count includes this move until it returns),
        which makes every move before it durable too."""
        if not self.gate.enter():
            return None  # stopped: sent again with the same id at the next start
        try:
            with self.turn:
                return transition(self.queue, item, result, sync=self._finishing_count <= 1)
        finally:
            self.gate.leave()

    def _finished_moving(self, _future: Future[State | None] | None) -> None:
        with self._finishing_lock:
            was_full = self._finishing_count >= self._finishing_limit
            self._finishing_count -= 1
            last = self._finishing_count == 0
        # The main thread needs to know when uploads were held back for want of room, and when
        # the last move is made (a drain or `start --once` waits for it); the moves between
        # are collected at its next round anyway.
        if was_full or last:
            self.wake()

    def _may_go_on(self, deadline: float) -> bool:
        # Read without locks from a worker: at worst one more report is sent before a stop
        # request or a hold set by the main thread is seen.
        now = self.clock.monotonic()
        return (self.accepting and self.can_send and now >= self._hold_until
                and now < deadline and self._finishing_count < self._finishing_limit)

    def _take_next(self) -> str | None:
        """The next due id: fresh ones first, then those found by the last scan. Called by the
        main thread and by workers (deque.popleft is atomic; scans stay on the main thread)."""
        with self._fresh_lock:
            if self._fresh:
                return self._fresh.popleft()
        try:
            return self._candidates.popleft()
        except IndexError:
            return None

    # -- stopping -------------------------------------------------------------------------

    def drain(self, timeout: float, interrupted: Callable[[], bool] = lambda: False) -> bool:
        """Claim nothing new; wait up to `timeout` seconds (of real time: this is about real
        threads) for in-flight uploads and the moves of stored reports to completed/, or until
        `interrupted()`. True if all ended."""
        self.accepting = False
        deadline = time.monotonic() + timeout
        done = threading.Event()
        while self._in_flight or self._finishing:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or interrupted():
                return False
            future: Future[Any] = (next(iter(self._in_flight)) if self._in_flight
                                   else next(iter(self._finishing)))
            future.add_done_callback(lambda _f: done.set())
            done.wait(min(remaining, 0.25))
            done.clear()
            self._collect()
        return True

    def unfinished(self) -> int:
        """Threads of this dispatcher still busy: uploads, moves, a probe, background calls."""
        futures: list[Future[Any]] = [*self._in_flight, *self._finishing, *self._background]
        if self._probe is not None:
            futures.append(self._probe)
        return sum(1 for f in futures if not f.done())

    def shutdown(self) -> None:
        """Stop the pools without waiting for stuck requests (their reports are in processing/
        and go back to pending at the next start; the closed gate keeps those threads from
        changing the queue whenever their requests end)."""
        self.accepting = False
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._finisher.shutdown(wait=False, cancel_futures=True)
        for client in [*self._retired_clients, self.client]:
            client.close()


def post(client: Uploader, item: Claimed) -> UploadResult:
    """Send one claimed report. Whatever goes wrong comes back as an outcome, never raised."""
    try:
        return client.upload(item.body, item.id)
    except Exception as exc:  # the uploader classifies; anything else is unexpected
        log.exception("unexpected error uploading report %s", item.id)
        return UploadResult(Outcome.TRANSIENT, None, f"unexpected error: {exc}")


def transition(queue: DurableQueue, item: Claimed, result: UploadResult, *, sync: bool = True
               ) -> State | None:
    """Make the queue transition an upload's outcome calls for, for every way of uploading;
    returns where the report went (None: the outcome could not be recorded)."""
    try:
        if result.outcome is Outcome.STORED:
            queue.complete(item, sync=sync)  # PROCESSING -> COMPLETED
            return State.COMPLETED
        if result.outcome is Outcome.REJECTED:
            queue.fail(item, f"rejected by the server: {result.message}")
            return State.FAILED  # PROCESSING -> FAILED
        if result.outcome is Outcome.TRANSIENT:
            return queue.retry(item, result.message, result.retry_after)
        queue.release(item)  # OFFLINE / AUTH: PROCESSING -> PENDING, untouched
        return State.PENDING
    except (OSError, QueueFullError) as exc:
        # No room to rewrite it: put it back as it was; nothing is lost, the attempt is.
        log.error("report %s: cannot record the upload outcome (%s)", item.id, exc)
        try:
            queue.release(item)
        except OSError:
            log.exception("report %s left in processing/; the next start retries it", item.id)
        return None

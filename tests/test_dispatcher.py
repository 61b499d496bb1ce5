"""The upload dispatcher: its pause, probe and hold decisions stepped with a fake clock and a
scripted server (real queue, real worker threads; each test runs in milliseconds), and, with
the bundled receiver, stored reports ending in completed/ durably, a burst sharing one fsync."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from pywats_client import fsutil
from pywats_client.config.settings import QueueSettings
from pywats_client.http.receiver import Receiver
from pywats_client.outcomes import Outcome, ServerState
from pywats_client.queue.store import DurableQueue, State
from pywats_client.service.dispatcher import HOLD_AFTER_TRANSIENT, UploadDispatcher
from pywats_client.service.status import ServiceStatus
from pywats_client.service.uploader import Uploader, UploadResult
from tests.conftest import TOKEN
from tests.fakes import FakeClock, ScriptedUploader
from tests.station import wait_until, wsjf_report

REFUSED = UploadResult(Outcome.AUTH, 401, "WATS refused the credentials (HTTP 401)")
OFFLINE = UploadResult(Outcome.OFFLINE, None, "cannot reach WATS: connection refused")
STORED = UploadResult(Outcome.STORED, 200, "WATS stored it (HTTP 200)")
BUSY = UploadResult(Outcome.TRANSIENT, 503, "WATS could not take it now (HTTP 503)")


def too_many(seconds: float) -> UploadResult:
    return UploadResult(Outcome.TRANSIENT, 429, f"HTTP 429; wait {seconds:g} s", seconds)


class Stepped:
    """A dispatcher over a real queue of `reports` due reports, a scripted server and a fake
    clock that moves only when the test says so."""

    def __init__(self, root: Path, server: ScriptedUploader, *, reports: int = 3,
                 workers: int = 1, **settings: Any) -> None:
        # Ahead of real time: the queue stamps new reports with the real time, so they are due.
        self.clock = FakeClock(start=time.time() + 60)
        self.settings = QueueSettings(**settings)
        self.queue = DurableQueue(root / "queue", self.settings, clock=self.clock)
        self.queue.ensure_layout()
        self.ids = [str(uuid.uuid4()) for _ in range(reports)]
        for n, report_id in enumerate(self.ids):
            self.queue.put(json.dumps(wsjf_report(n, report_id=report_id)).encode(),
                           report_id=report_id)
        self.server = server
        self.status = ServiceStatus()
        self.woke = threading.Event()
        self.dispatcher = UploadDispatcher(self.queue, server, self.settings,  # type: ignore[arg-type]
                                           self.status, clock=self.clock, wake=self.woke.set,
                                           workers=workers)

    def settle(self) -> float:
        """Pump until no upload, move or probe runs (the clock stands still meanwhile);
        returns how long the dispatcher then asks to sleep."""
        deadline = time.monotonic() + 10
        while True:
            self.woke.clear()  # before pump(): a wake-up while it runs is not lost
            wait = self.dispatcher.pump()
            if not self.dispatcher.busy:
                return wait
            assert self.woke.wait(max(0.0, deadline - time.monotonic())), "no wake-up"

    def advance(self, seconds: float) -> float:
        self.clock.advance(seconds)
        return self.settle()

    def attempts(self, state: State = State.PENDING) -> list[int]:
        return sorted(item.header.attempts for item in self.queue.list(state)
                      if item.header is not None)

    def close(self) -> None:
        self.dispatcher.shutdown()


@pytest.fixture
def stepped(tmp_path: Path):  # type: ignore[no-untyped-def]
    made: list[Stepped] = []

    def make(server: ScriptedUploader, **kwargs: Any) -> Stepped:
        made.append(Stepped(tmp_path, server, **kwargs))
        return made[-1]

    yield make
    for each in made:
        each.close()


def test_refused_credentials_pause_uploads_and_send_nothing_more(stepped) -> None:
    server = ScriptedUploader(uploads=[REFUSED], probes=[REFUSED])
    s = stepped(server, reports=3, probe_interval=30)
    wait = s.settle()
    assert len(server.sent) == 1  # the answer paused everything after it
    assert s.status.server is ServerState.PAUSED and "HTTP 401" in s.status.server_detail
    assert s.attempts() == [0, 0, 0]  # put back untouched: no attempt counted
    assert wait == 30  # the next look is the probe
    for _ in range(3):
        s.advance(30)
    assert len(server.sent) == 1 and server.probes == 3
    assert s.dispatcher.summary.uploaded == 0 and s.dispatcher.summary.server is ServerState.PAUSED


def test_a_paused_dispatcher_probes_every_probe_interval(stepped) -> None:
    server = ScriptedUploader(uploads=[REFUSED], probes=[REFUSED])
    s = stepped(server, reports=1, probe_interval=30)
    s.settle()
    assert server.probes == 0
    s.advance(29)
    assert server.probes == 0  # not before probe_interval
    s.advance(1)
    assert server.probes == 1
    s.advance(29)
    assert server.probes == 1  # the next one probe_interval after the last
    s.advance(1)
    assert server.probes == 2
    assert s.status.server is ServerState.PAUSED and len(server.sent) == 1


def test_a_good_probe_resumes_uploads(stepped) -> None:
    server = ScriptedUploader(uploads=[REFUSED, STORED], probes=[REFUSED, STORED])
    s = stepped(server, reports=3, probe_interval=30)
    s.settle()
    s.advance(30)  # the probe is still refused
    assert s.status.server is ServerState.PAUSED and len(server.sent) == 1
    s.advance(30)  # the credentials were fixed
    assert s.status.server is ServerState.ONLINE and s.status.server_detail == ""
    assert sorted(server.sent[1:]) == sorted(s.ids)  # every report, the paused one again
    assert sorted(item.id for item in s.queue.list(State.COMPLETED)) == sorted(s.ids)
    assert s.dispatcher.summary.uploaded == 3


def test_new_server_settings_are_probed_at_once(stepped) -> None:
    s = stepped(ScriptedUploader(uploads=[REFUSED], probes=[REFUSED]), reports=2,
                probe_interval=30)
    s.settle()
    fixed = ScriptedUploader()
    s.dispatcher.replace_client(fixed)  # type: ignore[arg-type]
    s.settle()  # no time passes
    assert fixed.probes == 1 and s.status.server is ServerState.ONLINE
    assert sorted(fixed.sent) == sorted(s.ids)


def test_retry_after_holds_every_upload_until_it_ends(stepped) -> None:
    server = ScriptedUploader(uploads=[too_many(40), STORED])
    s = stepped(server, reports=3, retry_delay=10)
    wait = s.settle()
    assert len(server.sent) == 1 and wait == 40
    assert s.status.server is ServerState.UNKNOWN  # busy is not offline
    s.advance(39)
    assert len(server.sent) == 1  # nothing before the hold ends
    s.advance(1)
    # Then everything goes: the two others, and the answered one, whose next attempt is
    # Retry-After away too (it outweighs the shorter retry delay).
    assert len(server.sent) == 4 and set(server.sent) == set(s.ids)
    assert len(s.queue.list(State.COMPLETED)) == 3
    assert s.dispatcher.summary.retry_later == 1 and s.dispatcher.summary.uploaded == 3


def test_a_run_of_server_errors_holds_every_upload(stepped) -> None:
    server = ScriptedUploader(uploads=[BUSY] * HOLD_AFTER_TRANSIENT + [STORED])
    s = stepped(server, reports=HOLD_AFTER_TRANSIENT + 2, retry_delay=100)
    wait = s.settle()
    assert len(server.sent) == HOLD_AFTER_TRANSIENT  # the last error held the rest back
    assert 80 <= wait <= 120  # the first retry delay, with its jitter
    assert s.attempts() == [0, 0] + [1] * HOLD_AFTER_TRANSIENT
    s.advance(79)
    assert len(server.sent) == HOLD_AFTER_TRANSIENT
    s.advance(wait - 79)
    unsent = set(s.ids) - set(server.sent[:HOLD_AFTER_TRANSIENT])
    assert unsent <= set(server.sent[HOLD_AFTER_TRANSIENT:])  # sent once the hold ended
    assert s.status.server is ServerState.ONLINE


def test_server_errors_below_the_run_do_not_hold(stepped) -> None:
    server = ScriptedUploader(uploads=[BUSY] * (HOLD_AFTER_TRANSIENT - 1) + [STORED])
    s = stepped(server, reports=HOLD_AFTER_TRANSIENT + 2, retry_delay=100)
    s.settle()
    assert len(server.sent) == HOLD_AFTER_TRANSIENT + 2  # no hold: everything went


def test_offline_keeps_reports_pending_without_counting_attempts(stepped) -> None:
    server = ScriptedUploader(uploads=[OFFLINE], probes=[OFFLINE])
    s = stepped(server, reports=2, probe_interval=30)
    s.settle()
    assert s.status.server is ServerState.OFFLINE and "cannot reach" in s.status.server_detail
    assert len(server.sent) == 1 and s.attempts() == [0, 0]
    assert s.status.upload_failures == {"offline": 1}
    s.advance(30)
    assert server.probes == 1 and len(server.sent) == 1 and s.attempts() == [0, 0]
    summary = s.dispatcher.summary
    assert (summary.uploaded, summary.rejected, summary.retry_later) == (0, 0, 0)


def test_a_burst_of_stored_reports_is_durable_with_shared_folder_fsyncs(
        tmp_path: Path, receiver: Receiver, monkeypatch) -> None:
    queue = DurableQueue(tmp_path / "queue")
    queue.ensure_layout()
    ids = [str(uuid.uuid4()) for _ in range(8)]
    for n, report_id in enumerate(ids):
        queue.put(json.dumps(wsjf_report(n, report_id=report_id)).encode(),
                  report_id=report_id)
    completed = tmp_path / "queue" / "completed"
    seen_by_fsync: list[int] = []  # reports in completed/ when each of its fsyncs started
    release = threading.Event()
    real_fsync_dir = fsutil.fsync_dir

    def recording_fsync_dir(path: Path) -> None:
        if Path(path) == completed:
            seen_by_fsync.append(len(os.listdir(completed)))
            release.wait(10)  # the first move's fsync is slow: the others line up behind it
        real_fsync_dir(path)

    monkeypatch.setattr(fsutil, "fsync_dir", recording_fsync_dir)
    client = Uploader(receiver.url, TOKEN)
    woke = threading.Event()
    dispatcher = UploadDispatcher(queue, client, QueueSettings(), ServiceStatus(), wake=woke.set)
    try:
        dispatcher.pump()
        # Every report stored and its move made or waiting; the one in the held fsync is both.
        wait_until(lambda: dispatcher.pump() >= 0 and bool(seen_by_fsync) and (
            seen_by_fsync[0] + dispatcher.moves_waiting - 1 == len(ids)), 10,
                   "every upload to be stored and its move made or waiting", tick=0.005)
        release.set()
        while True:
            woke.clear()  # before pump(): a wake-up while it runs is not lost
            timeout = dispatcher.pump()
            if not dispatcher.has_due_work():
                break
            woke.wait(timeout)
    finally:
        dispatcher.shutdown()
        client.close()
    assert sorted(receiver.stored_ids()) == sorted(ids)
    assert [queue.find(i) for i in ids] == [State.COMPLETED] * len(ids)
    # The last fsync came after every move: all of them are durable.
    assert seen_by_fsync[-1] == len(ids)
    # The held fsync, then one for all the moves that waited behind it.
    assert len(seen_by_fsync) == 2

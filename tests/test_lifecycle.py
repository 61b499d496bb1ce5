"""The service's life cycle on a bad day: a stop with uploads hanging, a converter that never
returns, a server that accepts and never answers, SIGHUP, and how fast an idle service stops.
The real service as a subprocess where signals and exits are the point, in-process where the
threads are."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pywats_client.config.settings import ConverterSettings, QueueSettings, Settings, WatchFolder
from pywats_client.errors import LockError
from pywats_client.http.receiver import SUBMIT_WSJF, Receiver
from pywats_client.paths import InstancePaths
from pywats_client.queue.lock import InstanceLock, read_lock
from pywats_client.queue.store import DurableQueue
from pywats_client.service import conversions
from pywats_client.service.loop import Service
from tests.conftest import TOKEN
from tests.plugins import bound_folder, install_plugin
from tests.station import (
    Station,
    drop_each_until_said_then_delete,
    service_in_process,
    wait_until,
    wsjf_report,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def station(tmp_path: Path, receiver: Receiver) -> Iterator[Station]:
    st = Station(tmp_path / "station", receiver.url, TOKEN)
    yield st
    (st.root / "marks").mkdir(parents=True, exist_ok=True)
    (st.root / "marks" / "release").touch()  # a stuck test converter lets go
    st.kill()


def listing(queue: Path) -> dict[str, list[str]]:
    return {state: sorted(os.listdir(queue / state)) for state in
            ("pending", "processing", "completed", "failed", "tmp")}


def busy_threads(prefix: str) -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(prefix) and t.is_alive()]


def bind_plugin(station: Station) -> Path:
    marks = station.root / "marks"
    install_plugin(station.instance, marks)
    station.config["queue"]["watch_folders"] = [bound_folder(station.watch, marks)]
    station.write_config()
    return marks


# -- 1. a stop is a stop -------------------------------------------------------------------


def test_threads_a_stop_abandons_never_change_the_queue_afterwards(
    tmp_path: Path, receiver: Receiver
) -> None:
    # Each upload is answered after 1.5 s, with a 500: a worker that outlived the stop would
    # then rewrite its report into pending/ (attempt counted), behind the next owner's back.
    receiver.faults.latency_ms = 1500
    receiver.faults.error_rate = 1.0
    paths = InstancePaths.for_instance("default", tmp_path / "data")
    settings = Settings(server_url=receiver.url, api_token=TOKEN, station_name="s",
                        read_timeout=30, queue=QueueSettings(upload_interval=0.1))
    queue = DurableQueue(paths.queue, settings.queue)
    queue.ensure_layout()
    ids = [str(uuid.uuid4()) for _ in range(3)]
    for n, rid in enumerate(ids):
        queue.put(json.dumps(wsjf_report(n, report_id=rid)).encode(), report_id=rid)
    service = Service(settings, paths, stop_timeout=0.3)
    thread = threading.Thread(target=service.run, name="service-under-test")
    thread.start()
    wait_until(lambda: len(listing(paths.queue)["processing"]) == 3, 20, "3 uploads in flight")
    service.request_stop()
    thread.join(10)
    assert not thread.is_alive(), "the stop did not return within its bound"
    after_stop = listing(paths.queue)
    assert after_stop["processing"] == sorted(f"{rid}.wsq" for rid in ids)
    # The abandoned requests end (the server answers them) ...
    wait_until(lambda: receiver.request_count(SUBMIT_WSJF) >= 3 and not busy_threads("upload"),
               20, "the abandoned uploads to end")
    # ... and nothing of this process touched the queue after the stop.
    assert listing(paths.queue) == after_stop
    assert read_lock(paths.lock) is None
    assert service.unfinished_threads() == 0


def test_stop_returns_once_the_process_is_gone(station: Station, receiver: Receiver) -> None:
    receiver.faults.latency_ms = 4000  # a slow server: uploads are in flight at the stop
    station.start("--stop-timeout", "0.5")
    assert station.proc is not None
    ids = [str(uuid.uuid4()) for _ in range(3)]
    for n, rid in enumerate(ids):
        station.drop(f"slow-{n}.json", wsjf_report(n, report_id=rid))
    wait_until(lambda: len(station.queue_files("processing")) == 3, 30, "uploads in flight")
    stopped = station.cli("stop", "--timeout", "30")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert station.proc.poll() is not None, (
        f"'stop' said {stopped.stdout.strip()!r} while the process was still running")
    queue = listing(station.queue)
    assert queue["processing"] == sorted(f"{rid}.wsq" for rid in ids)
    assert queue["pending"] == queue["completed"] == queue["tmp"] == []
    # The next start sends them (again, with the same ids): each report in one place only.
    receiver.faults.latency_ms = 0
    station.start()
    wait_until(lambda: len(station.queue_files("completed")) == 3, 30, "3 completed")
    assert station.queue_files("pending") == station.queue_files("processing") == []
    assert receiver.stored_ids() == set(ids)
    assert station.stop() == 0


def test_two_signals_during_the_start_up_sweep_leave_a_queue_that_loses_nothing(
    station: Station, receiver: Receiver
) -> None:
    queue = DurableQueue(station.queue)
    queue.ensure_layout()
    ids = [str(uuid.uuid4()) for _ in range(300)]
    for n, rid in enumerate(ids):  # a run killed while uploading: all in processing/
        queue.put(json.dumps(wsjf_report(n, report_id=rid)).encode(), report_id=rid)
        assert queue.claim(rid) is not None
    proc = subprocess.Popen(
        [sys.executable, "-m", "pywats_client", "--data-dir", str(station.data_dir), "start"],
        env=station.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: read_lock(station.instance / "instance.lock"), 30, "the lock")
        proc.send_signal(signal.SIGTERM)  # the start-up (its sweep) is under way
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) in (0, 1)  # never killed by a signal's default action
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    assert read_lock(station.instance / "instance.lock") is None
    station.start()
    assert receiver.wait_for_reports(300, timeout=120), station.output()
    assert receiver.stored_ids() == set(ids)
    wait_until(lambda: len(station.queue_files("completed")) == 300, 30, "300 completed")
    assert station.queue_files("processing") == station.queue_files("pending") == []
    assert station.stop() == 0


# -- 2. a converter that never returns ---------------------------------------------------


@pytest.mark.parametrize("signals", [(signal.SIGTERM, signal.SIGTERM),
                                     (signal.SIGINT, signal.SIGINT),
                                     (signal.SIGTERM, signal.SIGINT)],
                         ids=["term-term", "int-int", "term-int"])
def test_a_second_signal_ends_a_service_stuck_in_a_converter_at_once(
    station: Station, receiver: Receiver, signals: tuple[int, int]
) -> None:
    marks = bind_plugin(station)
    station.start()
    assert station.proc is not None
    stuck = station.drop("stuck.json", wsjf_report(1, report_id=str(uuid.uuid4())))
    wait_until(lambda: (marks / "started-stuck.json").exists(), 30, "the converter to hang")
    station.proc.send_signal(signals[0])
    wait_until(lambda: station.service_status().get("state") == "stopping", 10,
               "the first signal to start the stop")
    began = time.monotonic()
    station.proc.send_signal(signals[1])
    code = station.proc.wait(timeout=10)
    assert time.monotonic() - began < 3, "the second signal did not end the process at once"
    assert code != 0
    assert read_lock(station.instance / "instance.lock") is None
    assert stuck.exists() and station.queue_files("tmp") == []
    # Once the converter is fixed (released), the next start converts the file.
    (marks / "release").touch()
    station.start()
    assert receiver.wait_for_reports(1, timeout=30), station.output()
    assert station.stop() == 0


def test_the_stop_timeout_ends_a_service_stuck_in_a_converter(
    station: Station, receiver: Receiver
) -> None:
    marks = bind_plugin(station)
    station.start("--stop-timeout", "1")
    assert station.proc is not None
    stuck = station.drop("stuck.json", wsjf_report(1, report_id=str(uuid.uuid4())))
    wait_until(lambda: (marks / "started-stuck.json").exists(), 30, "the converter to hang")
    began = time.monotonic()
    station.proc.send_signal(signal.SIGTERM)
    assert station.proc.wait(timeout=15) == 0
    assert time.monotonic() - began < 5
    assert read_lock(station.instance / "instance.lock") is None
    assert stuck.exists() and station.queue_files("pending") == []
    assert "still running at the stop are abandoned" in station.output()


def run_service(service: Service) -> threading.Thread:
    thread = threading.Thread(target=service.run, name="service-under-test")
    thread.start()
    wait_until(lambda: service.snapshot()["state"] == "running", 20, "the service to run")
    return thread


def plugin_service(tmp_path: Path, receiver: Receiver, **converters: Any
                   ) -> tuple[Service, Path, Path]:
    paths = InstancePaths.for_instance("default", tmp_path / "data")
    watch, marks = tmp_path / "watch", tmp_path / "marks"
    watch.mkdir()
    install_plugin(paths.root, marks)
    folder = WatchFolder(path=watch, converter="LifeTestConverter",
                         arguments={"marks": str(marks)})
    settings = Settings(server_url=receiver.url, api_token=TOKEN, station_name="s",
                        queue=QueueSettings(watch_folders=(folder,), settle_time=0.1,
                                            upload_interval=0.5),
                        converters=ConverterSettings(**converters))
    return Service(settings, paths, stop_timeout=2), watch, marks


def drop(folder: Path, name: str, report: dict[str, Any]) -> Path:
    tmp = folder / f".{name}.tmp"
    tmp.write_text(json.dumps(report))
    return tmp.replace(folder / name)


def test_start_once_takes_every_file_of_a_flood_beyond_what_the_watcher_keeps_in_mind(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pywats_client.service import watcher

    monkeypatch.setattr(watcher, "MAX_TRACKED", 40)
    # No periodic rescan within the test: the files beyond those in mind are found because
    # room was made, not because time passed.
    service, watch = service_in_process(tmp_path, receiver.url, TOKEN, rescan_interval=3600)
    ids = [str(uuid.uuid4()) for _ in range(300)]
    for n, rid in enumerate(ids):
        drop(watch, f"r{n:03d}.json", wsjf_report(n, report_id=rid))
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(service.run(once=True)))
    thread.start()
    thread.join(60)
    if thread.is_alive():
        service.request_stop()
        thread.join(30)
        pytest.fail("start --once still ran after 60 s: files beyond those in mind were lost")
    (summary,) = result
    assert summary.converted == 300
    assert receiver.stored_ids() == set(ids)
    assert sorted(os.listdir(watch)) == ["done"]


def test_partial_files_deleted_while_they_wait_leave_a_bounded_record(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A writer that drops files cut short and deletes them while the service waits for
    their end, for ever: what is kept of each is forgotten when it goes its way, but a
    deleted file goes no way the conversions hear of, so the record is bounded instead."""
    from pywats_client.service import watcher

    monkeypatch.setattr(watcher, "MAX_TRACKED", 5)
    service, watch = service_in_process(tmp_path, receiver.url, TOKEN, incomplete_timeout=600)
    caplog.set_level(logging.INFO, logger="pywats_client.service.conversions")
    thread = run_service(service)
    try:
        cut_short = [json.dumps(wsjf_report(n))[:40] for n in range(20)]
        drop_each_until_said_then_delete(watch, cut_short, "{path} is incomplete",
                                         lambda: caplog.records)
        kept = len(service.conversions._incomplete_since)
    finally:
        service.request_stop()
        thread.join(30)
    assert 1 <= kept <= 5


def test_a_conversion_over_its_time_limit_is_set_aside_and_the_rest_goes_on(
    tmp_path: Path, receiver: Receiver
) -> None:
    service, watch, marks = plugin_service(tmp_path, receiver, timeout_s=1)
    thread = run_service(service)
    try:
        stuck_id = str(uuid.uuid4())
        drop(watch, "stuck.json", wsjf_report(0, report_id=stuck_id))
        good = [str(uuid.uuid4()) for _ in range(2)]
        for n, rid in enumerate(good):
            drop(watch, f"good-{n}.json", wsjf_report(n + 1, report_id=rid))
        note = watch / "error" / "stuck.json.error.txt"
        wait_until(note.exists, 20, "the stuck file in error/")
        assert "converters.timeout_s" in note.read_text()
        assert receiver.wait_for_reports(2, timeout=20)
        assert receiver.stored_ids() == set(good)
        wait_until(lambda: service.snapshot()["stuck_conversions"] == 1, 10, "1 stuck thread")
        status = service.snapshot()
        assert status["conversions_timed_out"] == 1 and not status["conversions_paused"]
        # The converter returns at last: its thread was given up, so it queues nothing.
        (marks / "release").touch()
        wait_until(lambda: service.snapshot()["stuck_conversions"] == 0, 10, "no stuck thread")
        assert DurableQueue(service.paths.queue).find(stuck_id) is None
        assert stuck_id not in receiver.stored_ids()
    finally:
        (marks / "release").touch()
        service.request_stop()
        thread.join(30)
    assert not thread.is_alive()


def test_files_slow_to_read_are_converted_side_by_side(tmp_path: Path, receiver: Receiver
                                                       ) -> None:
    """Only two conversions compute at once; one that has not ended after BUSY_SECONDS is
    taken to be waiting for its file, and the next starts: six files that can only be read
    together (the plugin's barrier) all convert."""
    service, watch, _marks = plugin_service(tmp_path, receiver)
    thread = run_service(service)
    try:
        ids = [str(uuid.uuid4()) for _ in range(6)]
        for n, rid in enumerate(ids):
            drop(watch, f"together-{n}.json", wsjf_report(n, report_id=rid))
        assert receiver.wait_for_reports(6, timeout=60), sorted(
            p.name for p in (watch / "error").glob("*.error.txt"))
        assert receiver.stored_ids() == set(ids)
        assert not (watch / "error").exists() or not any((watch / "error").iterdir())
    finally:
        service.request_stop()
        thread.join(30)
    assert not thread.is_alive()
    assert conversions.BUSY_CONVERSIONS < 6  # else the barrier proves nothing


def test_while_uploads_lag_files_convert_one_at_a_time_yet_never_wait_for_the_line(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slow server and a flood: once more reports wait for an upload slot than the upload
    workers can take, a conversion starts only when no other runs (the upload workers get the
    interpreter between them), and still every file is converted while that line is long:
    conversions are spaced, never held until the uploads catch up."""
    receiver.faults.latency_ms = 1000
    service, watch, _marks = plugin_service(tmp_path, receiver)
    spans: list[tuple[float, float, int]] = []  # start, end, reports pending at the start
    convert = conversions.Conversions._convert

    def recorded(self: conversions.Conversions, source: Any, ticket: Any) -> Any:
        start, pending = time.monotonic(), len(os.listdir(service.paths.queue / "pending"))
        try:
            return convert(self, source, ticket)
        finally:
            spans.append((start, time.monotonic(), pending))

    monkeypatch.setattr(conversions.Conversions, "_convert", recorded)
    thread = run_service(service)
    try:
        ids = [str(uuid.uuid4()) for _ in range(40)]
        for n, rid in enumerate(ids):
            drop(watch, f"flood-{n}.json", wsjf_report(n, report_id=rid))
        wait_until(lambda: len(spans) == 40, 60, "every file converted")
        # Five uploads a second: most reports still wait for theirs.
        assert len(receiver.stored_ids()) < 30
        lagging = [span for span in spans if span[2] > 20]
        assert lagging, "the uploads never lagged: the test proves nothing"
        for start, end, _ in lagging:
            overlapping = [s for s in spans if s[0] < end and start < s[1]]
            assert len(overlapping) == 1, (start, end, overlapping)
        assert receiver.wait_for_reports(40, timeout=60)
        assert receiver.stored_ids() == set(ids)
    finally:
        service.request_stop()
        thread.join(30)
    assert not thread.is_alive()


def test_too_many_stuck_converters_pause_conversions_instead_of_exhausting_threads(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(conversions, "MAX_STUCK_CONVERSIONS", 2)
    service, watch, marks = plugin_service(tmp_path, receiver, timeout_s=1)
    thread = run_service(service)
    try:
        for n in range(2):
            drop(watch, f"stuck-{n}.json", wsjf_report(n, report_id=str(uuid.uuid4())))
        wait_until(lambda: service.snapshot()["conversions_paused"], 20, "conversions paused")
        assert service.snapshot()["stuck_conversions"] == 2
        later = str(uuid.uuid4())
        drop(watch, "later.json", wsjf_report(9, report_id=later))
        # Taken from the folder, but not converted while the stuck threads hold on.
        wait_until(lambda: not service.watcher.pending_count(), 10, "later.json to be taken")
        assert not (watch / "done").exists() and (watch / "later.json").exists()
        assert receiver.stored_ids() == set()
        (marks / "release").touch()  # they end: conversions go on
        assert receiver.wait_for_reports(1, timeout=20)
        assert receiver.stored_ids() == {later}
        wait_until(lambda: not service.snapshot()["conversions_paused"], 10, "the pause to end")
    finally:
        (marks / "release").touch()
        service.request_stop()
        thread.join(30)
    assert not thread.is_alive()


# -- 3. start-up never waits for the network ---------------------------------------------


@pytest.fixture
def black_hole() -> Iterator[str]:
    """A server that accepts connections (the kernel does, from the backlog) and never says
    a word."""
    with socket.socket() as hole:
        hole.bind(("127.0.0.1", 0))
        hole.listen(64)
        yield f"http://127.0.0.1:{hole.getsockname()[1]}"


def _waiting_long(tmp_path: Path, server_url: str) -> Station:
    """A station that waits a minute for each answer of its server."""
    station = Station(tmp_path / "station", server_url, TOKEN)
    station.config["read_timeout"] = 60
    station.write_config()
    return station


def _stops_within(station: Station, seconds: float, what: str) -> None:
    """SIGTERM ends the service cleanly within `seconds`, not waiting for `what`."""
    assert station.proc is not None
    began = time.monotonic()
    station.proc.send_signal(signal.SIGTERM)
    assert station.proc.wait(timeout=30) == 0
    assert time.monotonic() - began < seconds, f"the stop waited for {what}"


def test_start_up_does_not_wait_for_a_server_that_never_answers(
    tmp_path: Path, black_hole: str
) -> None:
    station = _waiting_long(tmp_path, black_hole)
    try:
        began = time.monotonic()
        station.start()
        assert time.monotonic() - began < 10, "start-up waited for the server"
        _stops_within(station, 3, "the process-list request")
    finally:
        station.kill()


def test_files_convert_while_the_server_hangs_and_the_stop_abandons_the_requests(
    tmp_path: Path, black_hole: str
) -> None:
    station = _waiting_long(tmp_path, black_hole)
    try:
        station.start("--stop-timeout", "1")
        assert station.proc is not None
        rid = str(uuid.uuid4())
        station.drop("r.json", wsjf_report(1, report_id=rid))
        wait_until(lambda: station.done_files() == ["r.json"], 20, "r.json converted")
        assert station.queue_files("pending") + station.queue_files("processing") == [
            f"{rid}.wsq"]
        _stops_within(station, 5, "a request beyond its bound")
    finally:
        station.kill()


# -- 4. SIGHUP reloads -------------------------------------------------------------------


def test_sighup_reloads_the_configuration_in_place(station: Station, receiver: Receiver) -> None:
    station.start()
    assert station.proc is not None
    pid, first = station.proc.pid, station.service_status()["started_at"]
    second = station.root / "watch-2"
    second.mkdir()
    station.config["queue"]["watch_folders"].append(str(second))
    station.write_config()
    # A cron run trying to take the instance all through the reload never gets it.
    intruder = Intruder(station.instance / "instance.lock")
    station.proc.send_signal(signal.SIGHUP)
    try:
        restarted = wait_until(lambda: _restarted_since(station, first), 30, "the reload")
    finally:
        intruder.stop()
    assert intruder.attempts > 10 and not intruder.got_in
    assert station.proc.poll() is None and restarted["pid"] == pid
    assert "restarting in place to reload the configuration (SIGHUP)" in station.output()
    rid = str(uuid.uuid4())
    drop(second, "in-the-new-folder.json", wsjf_report(3, report_id=rid))
    assert receiver.wait_for_reports(1, timeout=30), station.output()
    # Twice in a row, as an impatient operator or a reload script does: still one service.
    station.proc.send_signal(signal.SIGHUP)
    station.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: _restarted_since(station, restarted["started_at"]), 30, "the reload")
    assert station.proc.poll() is None
    assert station.stop() == 0


class Intruder:
    """Tries to take an instance's lock, over and over, on a thread of its own."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.attempts = 0
        self.got_in = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="intruder")
        self._thread.start()

    def _run(self) -> None:
        while not self._done.is_set():
            self.attempts += 1
            lock = InstanceLock(self.path)
            try:
                lock.acquire("intruder")
            except LockError:
                self._done.wait(0.002)
                continue
            self.got_in = True
            lock.release()

    def stop(self) -> None:
        self._done.set()
        self._thread.join(10)


def _restarted_since(station: Station, started_at: float) -> dict[str, Any] | None:
    status = station.service_status()
    if status.get("state") == "running" and status.get("started_at", 0) > started_at:
        return status
    return None


def test_sighup_under_systemd_is_a_reload(tmp_path: Path, receiver: Receiver) -> None:
    station = Station(tmp_path / "station", receiver.url, TOKEN)
    notify = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(notify))
        sock.settimeout(30)
        env = {**station.env(), "NOTIFY_SOCKET": str(notify), "INVOCATION_ID": "test"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "pywats_client", "--data-dir", str(station.data_dir),
             "start"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            assert _next_notification(sock, "READY=1")
            proc.send_signal(signal.SIGHUP)
            assert _next_notification(sock, "RELOADING=1")
            assert _next_notification(sock, "READY=1")
            assert proc.poll() is None
            assert station.service_status()["supervisor"] == "systemd"
            proc.send_signal(signal.SIGTERM)
            assert _next_notification(sock, "STOPPING=1")
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)


def _next_notification(sock: socket.socket, wanted: str) -> str:
    """The next datagram that carries `wanted` (WATCHDOG and STATUS ones are skipped)."""
    while True:
        message = sock.recv(4096).decode()
        if wanted in message.splitlines():
            return message


# -- 5. an idle service stops in well under a second -------------------------------------


def test_an_idle_service_stops_in_well_under_a_second(
    station: Station, receiver: Receiver
) -> None:
    second = station.root / "watch-polled"
    second.mkdir()
    station.config["queue"]["watch_folders"].append({"path": str(second), "polling": True})
    station.write_config()
    took = []
    for _ in range(3):
        station.start()
        assert station.proc is not None
        wait_until(lambda: station.service_status().get("state") == "running", 10, "idle")
        began = time.monotonic()
        station.proc.send_signal(signal.SIGTERM)
        assert station.proc.wait(timeout=30) == 0
        took.append(time.monotonic() - began)
    assert max(took) < 0.5, f"SIGTERM to exit took {took}"

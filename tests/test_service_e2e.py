"""End to end: the real service as a subprocess, the loopback WATS receiver, real files."""

from __future__ import annotations

import json
import signal
import threading
import uuid
from pathlib import Path

import pytest

from pywats_client.http.receiver import Receiver
from pywats_client.queue.store import read_header
from tests import slow_writer
from tests.conftest import TOKEN
from tests.station import Station, wait_until, wsjf_report

pytestmark = pytest.mark.slow


def test_200_files_arrive_with_their_ids_and_sources_are_moved(
    station: Station, receiver: Receiver
) -> None:
    station.start()
    ids = [str(uuid.uuid4()) for _ in range(200)]
    for n, rid in enumerate(ids):
        station.drop(f"report-{n:03d}.json", wsjf_report(n, report_id=rid))
    assert receiver.wait_for_reports(200, timeout=120), station.output()
    assert receiver.stored_ids() == set(ids)
    wait_until(lambda: len(station.done_files()) == 200, 30, "all sources in done/")
    assert station.watch_files() == []
    wait_until(lambda: len(station.queue_files("completed")) == 200, 30, "completed/")
    assert station.queue_files("pending") == station.queue_files("failed") == []
    stored = json.loads((receiver.store / f"{ids[7]}.json").read_text())
    assert stored["sn"] == "SN000007" and stored["id"] == ids[7]
    assert station.stop() == 0


def test_a_file_dropped_while_stopped_is_picked_up_at_start(
    station: Station, receiver: Receiver
) -> None:
    station.start()
    assert station.stop() == 0
    rid = str(uuid.uuid4())
    station.drop("late.json", wsjf_report(1, report_id=rid))
    station.start()
    assert receiver.wait_for_reports(1, timeout=30), station.output()
    assert receiver.stored_ids() == {rid}
    wait_until(lambda: station.done_files() == ["late.json"], 10, "late.json in done/")


def test_a_report_without_id_gets_the_same_id_when_converted_again(
    station: Station, receiver: Receiver
) -> None:
    report = wsjf_report(5)
    station.start()
    station.drop("noid.json", report)
    assert receiver.wait_for_reports(1, timeout=30), station.output()
    [first] = receiver.stored_ids()
    uuid.UUID(first)
    wait_until(lambda: station.done_files() == ["noid.json"], 10, "noid.json in done/")
    # The same content dropped again is the same report: the queue knows it is uploaded.
    station.drop("noid.json", report)
    wait_until(lambda: len(station.done_files()) == 2, 30, "the second copy in done/")
    assert receiver.stored_ids() == {first}
    assert receiver.posts_by_id()[first] == 1


def test_401_pauses_without_consuming_attempts_and_resumes_after_the_fix(
    station: Station, receiver: Receiver
) -> None:
    station.config["api_token"] = "d3Jvbmc6dG9rZW4="  # base64("wrong:token")
    station.write_config()
    station.start()
    ids = [str(uuid.uuid4()) for _ in range(3)]
    for n, rid in enumerate(ids):
        station.drop(f"r{n}.json", wsjf_report(n, report_id=rid))
    wait_until(lambda: station.service_status().get("server") == "paused", 30, "paused")
    wait_until(lambda: len(station.queue_files("pending")) == 3, 30, "3 pending")
    assert receiver.stored_ids() == set()
    for name in station.queue_files("pending"):
        assert read_header(station.queue / "pending" / name).attempts == 0
    status = station.cli("status", "--json")
    assert json.loads(status.stdout)["service_server_state"] == "paused"
    # The operator fixes the token; the running service notices the changed config.
    fixed = station.cli("config", "set", "api_token", TOKEN)
    assert fixed.returncode == 0, fixed.stderr
    assert receiver.wait_for_reports(3, timeout=30), station.output()
    assert receiver.stored_ids() == set(ids)
    for name in station.queue_files("completed"):
        assert read_header(station.queue / "completed" / name).attempts == 0
    assert station.stop() == 0


def test_auth_failure_at_the_server_resumes_when_a_probe_succeeds(
    station: Station, receiver: Receiver
) -> None:
    receiver.faults.auth_fail = True
    station.start()
    rid = str(uuid.uuid4())
    station.drop("r.json", wsjf_report(1, report_id=rid))
    wait_until(lambda: station.service_status().get("server") == "paused", 30, "paused")
    receiver.faults.auth_fail = False
    assert receiver.wait_for_reports(1, timeout=30), station.output()


def test_a_file_still_open_for_writing_is_not_taken_before_its_writer_closes_it(
    station: Station, receiver: Receiver
) -> None:
    station.start()
    rid = str(uuid.uuid4())
    data = json.dumps(wsjf_report(9, report_id=rid)).encode()
    target = station.watch / "slow.json"
    with open(target, "wb") as fh:
        fh.write(data[: len(data) // 2])
        fh.flush()
        # Settled, and looked at: while its writer holds it open it is left alone.
        wait_until(lambda: "slow.json is still open for writing" in _log(station), 30,
                   "the service to see the writer")
        fh.write(data[len(data) // 2 :])
    assert receiver.wait_for_reports(1, timeout=30), station.output()
    assert receiver.stored_ids() == {rid}
    wait_until(lambda: station.done_files() == ["slow.json"], 10, "slow.json in done/")
    assert not (station.watch / "error").exists()
    assert "incomplete" not in _log(station)


def test_sigterm_during_a_burst_loses_nothing(station: Station, receiver: Receiver) -> None:
    receiver.faults.latency_ms = 20
    station.start()
    ids = [str(uuid.uuid4()) for _ in range(150)]
    for n, rid in enumerate(ids):
        station.drop(f"burst-{n:03d}.json", wsjf_report(n, report_id=rid))
    wait_until(lambda: len(receiver.stored_ids()) >= 10, 60, "the first uploads")
    assert station.stop(signal.SIGTERM) == 0
    station.start()
    assert receiver.wait_for_reports(150, timeout=120), station.output()
    assert receiver.stored_ids() == set(ids)
    wait_until(lambda: len(station.done_files()) == 150, 30, "every source in done/")
    assert station.watch_files() == []
    assert station.stop() == 0


def test_a_bad_file_goes_to_the_error_folder_with_its_reason(
    station: Station, receiver: Receiver
) -> None:
    station.start()
    station.drop("garbage.json", b"this is not json at all")
    wait_until(lambda: (station.watch / "error" / "garbage.json.error.txt").exists(), 30,
               "the error note")
    note = (station.watch / "error" / "garbage.json.error.txt").read_text()
    assert "garbage.json" in note
    assert station.queue_files("pending") == []


def test_once_drains_and_exits_with_a_summary(station: Station, receiver: Receiver) -> None:
    ids = [str(uuid.uuid4()) for _ in range(5)]
    for n, rid in enumerate(ids):
        station.drop(f"c{n}.json", wsjf_report(n, report_id=rid))
    result = station.cli("start", "--once")
    assert result.returncode == 0, result.stderr
    assert "uploaded 5" in result.stdout
    assert receiver.stored_ids() == set(ids)


def test_once_while_offline_keeps_everything_and_says_so(tmp_path: Path) -> None:
    station = Station(tmp_path / "offline", "http://127.0.0.1:9", TOKEN)
    station.drop("x.json", wsjf_report(1, report_id=str(uuid.uuid4())))
    result = station.cli("start", "--once")
    assert result.returncode == 3, result.stdout + result.stderr
    assert "offline" in result.stdout
    assert len(station.queue_files("pending")) == 1


def _log(station: Station) -> str:
    try:
        return (station.instance / "logs" / "pywats_client.log").read_text(errors="replace")
    except FileNotFoundError:
        return ""


WSTF_BY_PROCESS_NAME = (
    "--Header-Start--\nSerialNumber\tSN-NAMED\nPartNumber\tPN-1\nRevision\tA\n"
    "OperationTypeName\tPCBA test\nUTCStartDateTime\t2026-03-02T07:00:00\n"
    "--Step-Data-Start--\n"
    "StepType\tStepName\tMeasureName\tValue\tLowLimit\tHighLimit\tCompOperator\tUnit\t"
    "StepStatus\n"
    "NumericLimitTest\tVoltage\t\t3.3\t3\t3.6\tGELE\tV\t\n"
    "--Step-Data-End--\n--UUT-End--\n"
)


def test_a_process_named_in_a_file_gets_the_servers_code(
    station: Station, receiver: Receiver
) -> None:
    station.start()
    cached = station.instance / "state" / "processes.json"
    # Fetched in the background: start-up never waits for the server.
    wait_until(cached.exists, 20, "the process list to be cached")
    assert json.loads(cached.read_text())["PCBA test"] == 50
    station.drop("named.txt", WSTF_BY_PROCESS_NAME.encode())
    assert receiver.wait_for_reports(1, timeout=30), station.output()
    [rid] = receiver.stored_ids()
    stored = json.loads((receiver.store / f"{rid}.json").read_text())
    assert stored["processCode"] == 50 and stored["processName"] == "PCBA test"
    assert stored["result"] == "P"


@pytest.mark.parametrize("post_action", ["none", "move"])
def test_a_slow_writer_that_closes_the_file_between_blocks_gives_one_whole_report(
    tmp_path: Path, receiver: Receiver, post_action: str
) -> None:
    # A WSTF, a WSXF and a WSJF file, each written in blocks with 3 s pauses (far beyond the
    # settle time), the file closed after each block: each must become one report with every
    # step, under one id, and nothing before it is whole.
    station = Station(tmp_path / "station", receiver.url, TOKEN)
    station.config["queue"]["watch_folders"] = [
        {"path": str(station.watch), "post_action": post_action}]
    station.write_config()
    try:
        station.start()
        writers = []
        for kind, (suffix, blocks) in slow_writer.KINDS.items():
            path = station.watch / f"slow-{kind}{suffix}"
            writers.append(threading.Thread(
                target=slow_writer.write_slowly, args=(path, blocks(f"SN-SLOW-{kind}"), 3.0)))
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join(timeout=120)
        assert receiver.wait_for_reports(3, timeout=30), station.output()
        # Then one more file: once it is in, anything converted before it would be too.
        station.drop("marker.json", wsjf_report(1, report_id=str(uuid.uuid4())))
        assert receiver.wait_for_reports(4, timeout=30), station.output()
        stored = [json.loads((receiver.store / f"{rid}.json").read_text())
                  for rid in receiver.stored_ids()]
        slow = sorted((r["sn"], slow_writer.step_names(r)) for r in stored
                      if r["sn"].startswith("SN-SLOW-"))
        steps = [f"Step {n}" for n in range(slow_writer.STEPS)]
        assert slow == [("SN-SLOW-wsjf", steps), ("SN-SLOW-wstf", steps),
                        ("SN-SLOW-wsxf", steps)]
        assert len(stored) == 4, [r["sn"] for r in stored]
        assert not (station.watch / "error").exists()
        if post_action == "move":
            wait_until(lambda: len(station.done_files()) == 4, 30, "the files in done/")
            assert station.watch_files() == []
        else:
            assert sorted(station.watch_files()) == ["marker.json", "slow-wsjf.json",
                                                     "slow-wstf.txt", "slow-wsxf.xml"]
    finally:
        station.kill()


def test_an_incomplete_file_goes_to_the_error_folder_only_once_it_stops_changing(
    tmp_path: Path, receiver: Receiver
) -> None:
    station = Station(tmp_path / "station", receiver.url, TOKEN, incomplete_timeout=3)
    try:
        station.start()
        # Written in blocks 1 s apart for 4 s: longer than the timeout, but never unchanged
        # for that long.
        writer = threading.Thread(target=slow_writer.write_slowly, args=(
            station.watch / "steady.txt", slow_writer.wstf_blocks("SN-STEADY"), 1.0))
        writer.start()
        # Cut off for good: it never changes again.
        blocks = slow_writer.wstf_blocks("SN-STUCK")
        station.drop("stuck.txt", "".join(blocks[:-1]).encode())
        note = station.watch / "error" / "stuck.txt.error.txt"
        wait_until(note.exists, 30, "the error note")
        assert "it never completed: unchanged for 3 s and still incomplete" in note.read_text()
        writer.join(timeout=60)
        assert receiver.wait_for_reports(1, timeout=30), station.output()
        [rid] = receiver.stored_ids()
        report = json.loads((receiver.store / f"{rid}.json").read_text())
        assert report["sn"] == "SN-STEADY" and len(slow_writer.step_names(report)) == 6
        assert sorted(p.name for p in (station.watch / "error").iterdir()) == [
            "stuck.txt", "stuck.txt.error.txt"]
    finally:
        station.kill()

"""The loopback WATS receiver: validation, storage, auth, routing, faults and runtime control."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from pywats_client.http.receiver import Faults, Receiver, add_arguments, find_wsjf_problem, run
from tests.conftest import SAMPLES, TOKEN, samples_in
from tests.station import REPO, wait_until, with_changes

AUTH = {"Authorization": f"Basic {TOKEN}"}


def make_report(**changes: Any) -> dict[str, Any]:
    """A small valid WSJF test report; `changes` override fields, None removes one."""
    report: dict[str, Any] = {
        "type": "T", "id": str(uuid.uuid4()), "pn": "PCBA-100", "sn": "SN0001", "rev": "A",
        "processCode": 50, "result": "P", "machineName": "station-1", "location": "Line 2",
        "purpose": "Production", "start": "2024-05-01T08:30:00.123+02:00",
        "root": {"id": 0, "group": "M", "stepType": "SequenceCall", "name": "MainSequence",
                 "status": "P", "seqCall": {"path": "main.seq", "name": "Main", "version": "1"}},
    }
    return with_changes(report, changes)


def post(rx: Receiver, body: object, *, route: str = "/api/Report/WSJF",
         headers: dict[str, str] | None = None, timeout: float = 5) -> requests.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(rx.url + route, data=data, headers=AUTH if headers is None else headers,
                         timeout=timeout)


def get(rx: Receiver, route: str, headers: dict[str, str] | None = None) -> requests.Response:
    return requests.get(rx.url + route, headers=AUTH if headers is None else headers, timeout=5)


@pytest.fixture
def make_receiver(tmp_path: Path) -> Iterator[Callable[..., Receiver]]:
    """Start receivers with custom options; all are stopped after the test."""
    started: list[Receiver] = []

    def make(**options: Any) -> Receiver:
        rx = Receiver(tmp_path / f"store{len(started)}", **options).start()
        started.append(rx)
        return rx

    yield make
    for rx in started:
        rx.stop()


# -- storing ------------------------------------------------------------------------------------


def test_stores_a_valid_report_and_answers_its_ids(receiver: Receiver) -> None:
    report = make_report()
    answer = post(receiver, report)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"ID": report["id"], "uuid": report["id"], "Report_ID": 1}
    stored = receiver.store / f"{report['id']}.json"
    assert json.loads(stored.read_bytes()) == report
    assert receiver.stored_ids() == {report["id"]}
    assert get(receiver, f"/api/Report/Wsjf/{report['id']}?detailLevel=7").json() == report
    log_line = (receiver.store / "received.log").read_text().splitlines()
    assert len(log_line) == 1 and log_line[0].endswith(" " + report["id"])
    assert not [p for p in receiver.store.iterdir() if p.name.endswith(".tmp")]


def test_reposting_an_id_replaces_the_report_and_counts_the_duplicate(receiver: Receiver) -> None:
    first = make_report()
    second = make_report(id=first["id"], sn="SN0002")
    assert post(receiver, first).json()["Report_ID"] == 1
    assert post(receiver, second).json()["Report_ID"] == 1  # same report, replaced
    assert json.loads((receiver.store / f"{first['id']}.json").read_bytes())["sn"] == "SN0002"
    assert receiver.posts_by_id() == {first["id"]: 2}
    stats = get(receiver, "/_receiver/stats", headers={}).json()
    assert (stats["stored"], stats["stored_ids"], stats["duplicates"]) == (2, 1, 1)
    assert len((receiver.store / "received.log").read_text().splitlines()) == 2


def test_ids_are_stored_in_lower_case(receiver: Receiver) -> None:
    report = make_report(id=str(uuid.uuid4()).upper())
    assert post(receiver, report).json()["ID"] == report["id"].lower()
    assert receiver.stored_ids() == {report["id"].lower()}


def test_reading_back_an_unknown_or_malformed_id_is_404(receiver: Receiver) -> None:
    assert get(receiver, f"/api/Report/Wsjf/{uuid.uuid4()}").status_code == 404
    assert get(receiver, "/api/Report/Wsjf/..%2f..%2fetc").status_code == 404


def test_accepts_every_real_wsjf_sample(receiver: Receiver) -> None:
    samples = samples_in("wsjf", "*.json")
    if not samples:
        pytest.skip(f"no WSJF samples in {SAMPLES}")
    for sample in samples:
        answer = post(receiver, sample.read_bytes())
        assert answer.status_code == 200, f"{sample.name}: {answer.text}"
    assert len(receiver.stored_ids()) == len(samples)


@pytest.mark.parametrize("start", [
    "2020-01-01T09:00:00+01:00", "2019-09-12T14:26:16.977+02:00", "2024-05-01T08:30:00Z",
    "2024-05-01T08:30:00.1234567-05:00", "2024-05-01T08:30:00", "2024-05-01T08:30",
])
def test_accepts_iso_8601_start_times(start: str) -> None:
    assert find_wsjf_problem(make_report(start=start)) is None


# -- validation ---------------------------------------------------------------------------------

REPAIR = {"type": "R", "processCode": 500, "root": None}


@pytest.mark.parametrize(("changes", "expected"), [
    ({"sn": None}, "field 'sn' is required"),
    ({"sn": "   "}, "field 'sn' must not be empty"),
    ({"pn": "P" * 101}, "field 'pn' is 101 characters long, the limit is 100"),
    ({"rev": 3}, "field 'rev' must be a string, got a number"),
    ({"type": "X"}, "field 'type' must be 'T' (test) or 'R' (repair), got 'X'"),
    ({"type": None}, "field 'type' is required"),
    ({"processCode": "50"}, "field 'processCode' must be an integer"),
    ({"processCode": True}, "field 'processCode' must be an integer"),
    ({"processCode": None}, "field 'processCode' is required"),
    ({"result": "Q"}, "field 'result' must be one of P, F, E, T, got 'Q'"),
    ({"machineName": "M" * 101}, "field 'machineName' is 101 characters long"),
    ({"location": ["Line 2"]}, "field 'location' must be a string, got a list"),
    ({"purpose": None}, "field 'purpose' is required"),
    ({"start": None}, "field 'start' is required"),
    ({"start": "yesterday"}, "field 'start' must be an ISO-8601 date-time, got 'yesterday'"),
    ({"start": "2024-13-01T08:00:00"}, "field 'start' must be an ISO-8601 date-time"),
    ({"root": None}, "field 'root' is required for a test report (type T)"),
    ({"root": {"id": 0, "name": "Main"}}, "field 'root.seqCall' is required"),
    (REPAIR, "field 'uur' is required for a repair report (type R)"),
])
def test_rejects_a_bad_field_with_a_message_naming_it(
        receiver: Receiver, changes: dict[str, Any], expected: str) -> None:
    report = make_report(**changes)
    answer = post(receiver, report)
    assert answer.status_code == 400
    assert answer.text.startswith(f"Report {report['id']}: field ")
    assert expected in answer.text
    assert receiver.stored_ids() == set()


def test_an_empty_revision_is_accepted_as_the_client_sends_it() -> None:
    # Files that carry no revision are sent with rev "" (or converters.defaults.revision).
    assert find_wsjf_problem(make_report(rev="")) is None
    assert "field 'rev' is required" in (find_wsjf_problem(make_report(rev=None)) or "")


def test_a_repair_report_needs_uur_and_passes_with_it() -> None:
    assert find_wsjf_problem(make_report(**REPAIR, uur={"processCode": 50, "user": "op"})) is None


@pytest.mark.parametrize(("body", "expected"), [
    (make_report(id=None), "Report (no id): field 'id' is required"),
    (make_report(id="1234"), "Report (no id): field 'id' must be a GUID"),
    ([make_report()], "Report body must be a JSON object, got a list"),
    (b"{not json", "Request body is not valid UTF-8 JSON"),
])
def test_rejects_bodies_without_a_usable_id(receiver: Receiver, body: object,
                                            expected: str) -> None:
    answer = post(receiver, body)
    assert answer.status_code == 400
    assert answer.text.startswith(expected), answer.text


def test_a_body_over_the_limit_is_413_and_not_stored(make_receiver: Callable[..., Receiver]
                                                      ) -> None:
    rx = make_receiver(max_body_bytes=200)
    answer = post(rx, make_report(purpose="x" * 90, location="y" * 90))
    assert answer.status_code == 413
    assert "over the limit of 200 bytes" in answer.text
    assert rx.stored_ids() == set()


# -- WSXF, version, processes -------------------------------------------------------------------


def test_stores_well_formed_wsxf_under_a_new_uuid(receiver: Receiver) -> None:
    xml = (SAMPLES / "wsxf" / "uut-wsxf.xml")
    body = xml.read_bytes() if xml.exists() else b"<Reports><Report type='UUT'/></Reports>"
    answer = post(receiver, body, route="/api/Report/WSXF")
    assert answer.status_code == 200, answer.text
    new_id = answer.json()["ID"]
    assert uuid.UUID(new_id) and (receiver.store / f"{new_id}.xml").read_bytes() == body


@pytest.mark.parametrize(("body", "expected"), [
    (b"<Reports><Report></Reports>", "not well-formed XML"),
    (b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><r>&b;</r>',
     "DOCTYPE declarations are not accepted"),
])
def test_refuses_broken_or_doctype_xml(receiver: Receiver, body: bytes, expected: str) -> None:
    answer = post(receiver, body, route="/api/Report/WSXF")
    assert answer.status_code == 400 and expected in answer.text
    assert receiver.stored_ids() == set()


def test_version_and_processes(receiver: Receiver) -> None:
    version = get(receiver, "/api/App/Version")
    assert version.status_code == 200
    assert version.json()["name"] == "pywats-client receiver"
    processes = get(receiver, "/api/App/Processes").json()
    assert {"code": 50, "name": "PCBA test"}.items() <= processes[1].items()
    assert {p["code"] for p in processes} >= {10, 50, 500}


# -- routing ------------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ["/api/report/wsjf", "/API/REPORT/WSJF", "/api/Report/Wsjf/"])
def test_routes_are_case_insensitive(receiver: Receiver, route: str) -> None:
    assert post(receiver, make_report(), route=route).status_code == 200


def test_unknown_route_is_404_and_wrong_method_is_405(receiver: Receiver) -> None:
    assert post(receiver, make_report(), route="/api/Report/WSJF2").status_code == 404
    answer = get(receiver, "/api/Report/WSJF")
    assert answer.status_code == 405 and answer.headers["Allow"] == "POST"


def test_prefix_routes_only_below_the_prefix(make_receiver: Callable[..., Receiver]) -> None:
    rx = make_receiver(prefix="wats/", token=TOKEN)
    assert rx.url.endswith("/wats")
    assert post(rx, make_report()).status_code == 200
    bare = rx.url.removesuffix("/wats")
    answer = requests.post(bare + "/api/Report/WSJF", json=make_report(), headers=AUTH, timeout=5)
    assert answer.status_code == 404
    assert requests.get(rx.url.replace("/wats", "/WATS") + "/api/app/version",
                        headers=AUTH, timeout=5).status_code == 200


# -- auth ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Basic wrong"},
                                     {"Authorization": f"Bearer {TOKEN}"}])
def test_a_wrong_or_missing_token_is_401(receiver: Receiver, headers: dict[str, str]) -> None:
    assert post(receiver, make_report(), headers=headers).status_code == 401
    answer = get(receiver, "/api/App/Version", headers=headers)
    assert answer.status_code == 401 and answer.headers["WWW-Authenticate"].startswith("Basic")
    assert receiver.stored_ids() == set()


def test_without_a_token_any_authorization_passes_but_none_fails(
        make_receiver: Callable[..., Receiver]) -> None:
    rx = make_receiver()
    assert post(rx, make_report(), headers={"Authorization": "Basic anything"}).status_code == 200
    assert post(rx, make_report(), headers={}).status_code == 401


# -- faults -------------------------------------------------------------------------------------


def test_auth_fail_refuses_even_the_right_token(receiver: Receiver) -> None:
    receiver.faults.auth_fail = True
    assert post(receiver, make_report()).status_code == 401
    assert get(receiver, "/api/App/Version").status_code == 401


def test_error_rate_answers_500_and_stores_nothing(receiver: Receiver) -> None:
    receiver.faults = Faults(error_rate=1.0)
    answer = post(receiver, make_report())
    assert answer.status_code == 500 and "error_rate" in answer.text
    assert receiver.stored_ids() == set()


def test_reject_rate_answers_400(receiver: Receiver) -> None:
    receiver.faults = Faults(reject_rate=1.0)
    assert post(receiver, make_report()).status_code == 400
    assert receiver.stored_ids() == set()


def test_rate_limit_answers_429_with_retry_after(receiver: Receiver) -> None:
    receiver.faults = Faults(rate_limit_rate=1.0, retry_after=7)
    answer = post(receiver, make_report())
    assert answer.status_code == 429 and answer.headers["Retry-After"] == "7"


def test_reset_rate_drops_the_connection_without_answer(receiver: Receiver) -> None:
    receiver.faults = Faults(reset_rate=1.0)
    with pytest.raises(requests.ConnectionError):
        post(receiver, make_report())
    assert receiver.stored_ids() == set()
    assert receiver.stats()["requests"]["POST /api/Report/WSJF"] == {"reset": 1}


def test_down_resets_every_api_request_but_not_the_control_routes(receiver: Receiver) -> None:
    receiver.faults = Faults(down=True)
    for call in (lambda: post(receiver, make_report()),
                 lambda: get(receiver, "/api/App/Version")):
        with pytest.raises(requests.ConnectionError):
            call()
    assert requests.post(receiver.url + "/_receiver/faults", json={"down": False},
                         timeout=5).status_code == 200
    assert get(receiver, "/api/App/Version").status_code == 200


def test_report_faults_leave_the_version_probe_alone(receiver: Receiver) -> None:
    receiver.faults = Faults(error_rate=0.5, reset_rate=0.5)
    assert all(get(receiver, "/api/App/Version").status_code == 200 for _ in range(5))


def test_timeout_after_store_stores_then_says_nothing(receiver: Receiver) -> None:
    receiver.faults = Faults(timeout_after_store_rate=1.0, hang_seconds=30)
    report = make_report()
    with pytest.raises(requests.ReadTimeout):
        post(receiver, report, timeout=0.3)
    assert receiver.wait_for_reports(1, timeout=5)
    assert receiver.stored_ids() == {report["id"]}
    started = time.monotonic()
    receiver.stop()  # the handler still hangs: stopping must release it at once
    assert time.monotonic() - started < 5


def test_latency_delays_only_that_request_and_stop_releases_it(receiver: Receiver) -> None:
    receiver.faults = Faults(latency_ms=60_000)
    outcome: list[object] = []
    slow = threading.Thread(target=lambda: outcome.append(_try(lambda: post(receiver,
                                                                            make_report()))))
    slow.start()
    # Other requests are served while the slow one waits (threaded server) ...
    assert get(receiver, "/api/App/Processes").status_code == 200
    started = time.monotonic()
    receiver.stop()  # ... and stopping does not wait out the latency.
    slow.join(timeout=5)
    assert not slow.is_alive() and time.monotonic() - started < 5
    assert isinstance(outcome[0], requests.ConnectionError)
    assert receiver.stored_ids() == set()


def test_latency_applies_to_the_probe(receiver: Receiver) -> None:
    receiver.faults = Faults(latency_ms=200)
    started = time.monotonic()
    assert get(receiver, "/api/App/Version").status_code == 200
    assert time.monotonic() - started >= 0.2


def _try(call: Callable[[], object]) -> object:
    try:
        return call()
    except requests.RequestException as exc:
        return exc


def test_faults_are_reproducible_for_a_seed(make_receiver: Callable[..., Receiver]) -> None:
    def statuses(seed: int) -> list[int]:
        rx = make_receiver(seed=seed, faults=Faults(error_rate=0.5))
        return [post(rx, make_report()).status_code for _ in range(16)]

    first = statuses(7)
    assert first == statuses(7)
    assert set(first) == {200, 500}


@pytest.mark.parametrize("bad", [{"error_rate": 1.5}, {"latency_ms": -1}, {"auth_fail": 1},
                                 {"reset_rate": "often"}])
def test_faults_refuse_nonsense(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        Faults(**bad)


# -- runtime control ----------------------------------------------------------------------------


def test_control_routes_work_without_auth_and_count_requests(receiver: Receiver) -> None:
    ok, bad = make_report(), make_report(sn=None)
    post(receiver, ok)
    post(receiver, bad)
    post(receiver, ok)
    get(receiver, "/api/App/Version", headers={})
    stats = requests.get(receiver.url + "/_receiver/stats", timeout=5).json()
    assert stats["requests"] == {"POST /api/Report/WSJF": {"200": 2, "400": 1},
                                 "GET /api/App/Version": {"401": 1}}
    assert stats["posts_by_id"] == {ok["id"]: 2}
    assert stats["connections"] >= 4
    assert receiver.request_count() == 4  # the stats request itself is not counted
    assert receiver.request_count("POST /api/report/wsjf") == 3
    assert receiver.request_count("/api/App/Version") == 1


def test_faults_change_at_runtime_over_http(make_receiver: Callable[..., Receiver]) -> None:
    rx = make_receiver(token=TOKEN, prefix="/wats")
    answer = requests.post(rx.url + "/_receiver/faults", json={"error_rate": 1}, timeout=5)
    assert answer.status_code == 200 and answer.json()["error_rate"] == 1
    assert post(rx, make_report()).status_code == 500
    assert rx.faults.error_rate == 1
    for bad, why in (({"eror_rate": 1}, "unknown fault 'eror_rate'"),
                     ({"error_rate": 3}, "fraction from 0 to 1"), ([1], "JSON object")):
        refused = requests.post(rx.url + "/_receiver/faults", json=bad, timeout=5)
        assert refused.status_code == 400 and why in refused.text
    assert requests.get(rx.url + "/_receiver/faults", timeout=5).json()["error_rate"] == 1


def test_wait_for_reports(receiver: Receiver) -> None:
    assert not receiver.wait_for_reports(1, timeout=0.05)
    reports = [make_report() for _ in range(3)]
    sender = threading.Thread(target=lambda: [post(receiver, r) for r in reports])
    sender.start()
    try:
        assert receiver.wait_for_reports(3, timeout=10)
    finally:
        sender.join(timeout=10)
    assert receiver.stored_ids() == {r["id"] for r in reports}


def test_stop_ends_idle_keep_alive_connections_and_leaves_no_threads(tmp_path: Path) -> None:
    before = set(threading.enumerate())
    rx = Receiver(tmp_path / "store", token=TOKEN).start()
    session = requests.Session()
    try:
        assert session.get(rx.url + "/api/App/Version", headers=AUTH, timeout=5).ok
        stopper = threading.Thread(target=rx.stop)
        stopper.start()
        stopper.join(timeout=5)
        assert not stopper.is_alive(), "stop() hung on an idle keep-alive connection"
    finally:
        session.close()
    assert set(threading.enumerate()) - before == set()


# -- command line -------------------------------------------------------------------------------


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_run_refuses_a_non_loopback_host(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                         ) -> None:
    assert run(_args("--store", str(tmp_path), "--host", "0.0.0.0")) == 2
    assert "--allow-remote" in capsys.readouterr().err


def test_run_refuses_a_bad_fault_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                        ) -> None:
    assert run(_args("--store", str(tmp_path), "--error-rate", "2")) == 2
    assert "error_rate" in capsys.readouterr().err


def test_runs_as_a_process_and_stops_on_sigterm(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pywats_client.http.receiver", "--store", str(tmp_path / "store"),
         "--port", "0", "--token", TOKEN, "--prefix", "/wats"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:\d+/wats", first)
        assert match, first + (proc.stderr.read() if proc.poll() is not None and proc.stderr
                               else "")
        url = match.group(0)
        report = make_report()
        answer = requests.post(url + "/api/Report/WSJF", json=report, headers=AUTH, timeout=5)
        assert answer.status_code == 200
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "Reports stored: 1 " in out
    assert "POST /wats/api/Report/WSJF" in err  # one log line per request
    assert (tmp_path / "store" / f"{report['id']}.json").exists()


def test_run_says_when_the_port_is_taken(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                         ) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert run(_args("--store", str(tmp_path), "--port", str(port))) == 1
    assert f"Cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


def test_the_receiver_serves_a_bounded_number_of_connections(tmp_path: Path) -> None:
    with Receiver(tmp_path / "store", token=TOKEN) as rx:
        port = int(rx.url.rsplit(":", 1)[1])
        before = threading.active_count()
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(80)]
        try:
            late = get(rx, "/api/App/Version")  # accepted after the 80 before it
            extra = threading.active_count() - before
            assert extra <= 64, f"{extra} threads for 80 idle connections"
            assert late.status_code == 503 and late.headers["Retry-After"]
        finally:
            for sock in idle:
                sock.close()
        wait_until(lambda: get(rx, "/api/App/Version").status_code == 200, 10,
                   "the receiver to answer again")

"""The control API: routes, token, paging, metrics, stop and restart, and the systemd units.

In-process tests run the real `Service` on a thread with a real `ControlServer` and the
loopback receiver; the slow ones start `pywats-client start --api` as a subprocess, as an
operator (or systemd) would, to check stop, restart-in-place and port conflicts for real.
"""

from __future__ import annotations

import base64
import configparser
import contextlib
import json
import math
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pywats_client import cli
from pywats_client.cli.common import ERROR, NOT_RUNNING, SERVER, USAGE
from pywats_client.config.document import ConfigDocument, init_config, load_settings
from pywats_client.errors import ControlApiError
from pywats_client.http import control_api
from pywats_client.http.control_api import (
    ControlServer,
    is_loopback,
    load_or_create_token,
    token_path,
)
from pywats_client.http.receiver import Receiver
from pywats_client.paths import InstancePaths
from pywats_client.queue.lock import pid_alive
from pywats_client.queue.store import DurableQueue
from pywats_client.service.loop import Service
from tests.station import REPO, Station, wait_until, wsjf_report

WATS_TOKEN = base64.b64encode(b"user:secret").decode("ascii")
SCRIPTS = REPO / "scripts"


# -- a tiny HTTP client ---------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


def call(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> Answer:
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return Answer(response.status, dict(response.headers), response.read().decode())
    except urllib.error.HTTPError as exc:
        with exc:
            return Answer(exc.code, dict(exc.headers), exc.read().decode())


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def basic(user: str, password: str) -> dict[str, str]:
    """What a browser sends once someone typed a user name and password into its prompt."""
    pair = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return {"Authorization": f"Basic {pair}"}


# -- a strict reader of the Prometheus text format (0.0.4) ----------------------------------

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
_SAMPLE = re.compile(rf"^({_NAME})(\{{(?:{_LABEL}(?:,{_LABEL})*)?\}})? (\S+)( -?\d+)?$")
_HELP = re.compile(rf"^# HELP ({_NAME}) (.*)$")
_TYPE = re.compile(rf"^# TYPE ({_NAME}) (counter|gauge|histogram|summary|untyped)$")


def parse_metrics(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every line must be HELP, TYPE or a sample of a family whose TYPE came first."""
    assert text.endswith("\n"), "the exposition must end with a newline"
    types: dict[str, str] = {}
    helped: set[str] = set()
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    current = ""
    for number, line in enumerate(text[:-1].split("\n"), 1):
        where = f"line {number}: {line!r}"
        if m := _HELP.match(line):
            assert m.group(1) not in helped, f"second HELP, {where}"
            helped.add(m.group(1))
            continue
        if m := _TYPE.match(line):
            name = m.group(1)
            assert name not in types, f"second TYPE, {where}"
            assert name not in {n for n, _ in samples}, f"TYPE after samples, {where}"
            types[name], current = m.group(2), name
            continue
        assert not line.startswith("#"), f"a comment that is neither HELP nor TYPE, {where}"
        m = _SAMPLE.match(line)
        assert m, f"not a valid sample, {where}"
        name, labels_text, value = m.group(1), m.group(2) or "", m.group(3)
        assert name == current, f"sample outside its family (TYPE {current}), {where}"
        if types[name] == "counter":
            assert name.endswith("_total"), f"a counter's name ends in _total, {where}"
        labels = tuple(sorted(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"',
                                         labels_text)))
        assert value in ("+Inf", "-Inf", "NaN") or re.fullmatch(
            r"-?\d+(\.\d+)?([eE][-+]?\d+)?", value), f"bad value, {where}"
        parsed = float(value)
        assert not math.isnan(parsed), f"NaN has no meaning here, {where}"
        key = (name, labels)
        assert key not in samples, f"duplicate series, {where}"
        samples[key] = parsed
    assert helped == set(types), "every family has HELP and TYPE"
    return samples


def test_the_metrics_reader_is_strict() -> None:
    good = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 2\n"
    assert parse_metrics(good) == {("a_total", (("x", "1"),)): 2.0}
    for bad in ("a_total 2\n",  # no TYPE
                "# HELP a A.\n# TYPE a counter\na 1\n",  # counter without _total
                "# HELP a A.\n# TYPE a gauge\na{x=1} 1\n",  # unquoted label
                "# HELP a A.\n# TYPE a gauge\na 1",  # no final newline
                "# HELP a A.\n# TYPE a gauge\na 1\na 2\n"):  # duplicate
        with pytest.raises(AssertionError):
            parse_metrics(bad)


# -- an in-process service with its control API ----------------------------------------------


@dataclass
class Running:
    service: Service
    api: ControlServer
    token: str
    paths: InstancePaths
    watch: Path
    receiver: Receiver
    thread: threading.Thread

    def get(self, route: str, headers: dict[str, str] | None = None) -> Answer:
        return call(self.api.url + route, headers=headers)

    def read(self, route: str) -> Answer:
        """GET with the token, as the routes that show file names and settings need."""
        return call(self.api.url + route, headers=bearer(self.token))

    def post(self, route: str, headers: dict[str, str] | None = None) -> Answer:
        return call(self.api.url + route, "POST", headers)

    def drop(self, name: str, data: bytes) -> None:
        staging = self.watch.parent / "staging"
        staging.mkdir(exist_ok=True)
        (staging / name).write_bytes(data)
        os.replace(staging / name, self.watch / name)

    def snapshot(self) -> dict[str, Any]:
        return dict(self.service.snapshot())


@pytest.fixture
def running(tmp_path: Path, receiver: Receiver) -> Iterator[Running]:
    paths = InstancePaths.for_instance("default", tmp_path / "data")
    watch = tmp_path / "watch"
    watch.mkdir()
    doc = init_config(paths, server_url=receiver.url, api_token=WATS_TOKEN,
                      station_name="ICT-07")  # the WATS token is stored encrypted
    for key, value in (("queue.settle_time", "0.1"), ("queue.upload_interval", "1"),
                       ("queue.retry_delay", "600"), ("queue.watch_folders", f'["{watch}"]')):
        doc.set(key, value)
    doc.save()
    settings = load_settings(paths.config, key_path=paths.key, env={})
    service = Service(settings, paths, stop_timeout=5)
    token = load_or_create_token(token_path(paths.root))
    api = ControlServer(
        service, DurableQueue(paths.queue, settings.queue), token, port=0, instance="default",
        station="ICT-07",
        config_view=lambda: ConfigDocument.load(paths.config, paths.key).to_display(),
    )
    service.status.api_url = api.url
    api.start()
    thread = threading.Thread(target=service.run, name="service-under-test")
    thread.start()
    run = Running(service, api, token, paths, watch, receiver, thread)
    try:
        wait_until(lambda: run.snapshot()["state"] == "running", 20, "the service to run")
        yield run
    finally:
        if thread.is_alive():
            service.request_stop()
            thread.join(30)
        api.stop()
    assert not thread.is_alive()


def test_status_queue_and_metrics_follow_the_service(running: Running) -> None:
    ids = [str(uuid.uuid4()) for _ in range(3)]
    for n, rid in enumerate(ids):
        running.drop(f"ict-{n}.json", json.dumps(wsjf_report(n, report_id=rid)).encode())
    assert running.receiver.wait_for_reports(3, timeout=30)
    wait_until(lambda: running.get("/status").json()["uploaded"] == 3, 20, "3 uploads in /status")

    status = running.get("/status")
    assert status.status == 200 and status.headers["Content-Type"].startswith("application/json")
    body = status.json()
    assert body["instance"] == "default" and body["state"] == "running"
    assert body["server"] == "online" and body["api_url"] == running.api.url
    assert body["queue"]["completed"] == 3 and body["queue"]["pending"] == 0
    assert {u["report_id"] for u in body["recent_uploads"]} == set(ids)
    assert {Path(u["source"]).name for u in body["recent_uploads"]} == {
        "ict-0.json", "ict-1.json", "ict-2.json"}
    assert running.get("/queue").json() == {"pending": 0, "processing": 0, "completed": 3,
                                            "failed": 0, "corrupt": 0}

    metrics = running.get("/metrics")
    assert metrics.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = parse_metrics(metrics.text)
    assert samples[("pywats_up", ())] == 1
    assert samples[("pywats_queue_reports", (("state", "completed"),))] == 3
    assert samples[("pywats_uploads_total", (("outcome", "stored"),))] == 3
    assert samples[("pywats_uploads_total", (("outcome", "rejected"),))] == 0
    assert samples[("pywats_converted_files_total", ())] == 3
    assert samples[("pywats_server_state", (("state", "online"),))] == 1
    assert samples[("pywats_server_state", (("state", "offline"),))] == 0
    assert samples[("pywats_uploads_paused", ())] == 0
    assert samples[("pywats_watch_folders_unavailable", ())] == 0
    assert samples[("pywats_disk_free_bytes", ())] > 0
    assert abs(samples[("pywats_last_upload_timestamp_seconds", ())] - time.time()) < 120


def test_failures_are_remembered_with_their_reasons(running: Running) -> None:
    running.receiver.faults.reject_rate = 1.0
    rid = str(uuid.uuid4())
    running.drop("rejected.json", json.dumps(wsjf_report(1, report_id=rid)).encode())
    wait_until(lambda: running.snapshot()["rejected"] == 1, 20, "the rejection")
    running.drop("garbage.bin", b"\x00 not a report")
    wait_until(lambda: running.snapshot()["conversion_errors"] == 1, 20, "the conversion error")

    failures = running.get("/status").json()["recent_failures"]
    assert [f["kind"] for f in failures] == ["conversion", "rejected"]  # newest first
    assert Path(failures[0]["source"]).name == "garbage.bin"
    assert failures[1]["report_id"] == rid and "HTTP 400" in failures[1]["reason"]
    failed = running.read("/queue/failed").json()
    assert failed["total"] == 1 and [i["id"] for i in failed["items"]] == [rid]
    assert "rejected by the server" in failed["items"][0]["last_error"]
    samples = parse_metrics(running.get("/metrics").text)
    assert samples[("pywats_uploads_total", (("outcome", "rejected"),))] == 1
    assert samples[("pywats_conversion_errors_total", ())] == 1
    assert samples[("pywats_queue_reports", (("state", "failed"),))] == 1


def test_files_in_the_error_folder_are_shown_until_someone_moves_them(running: Running) -> None:
    running.drop("garbage.bin", b"\x00 not a report")
    wait_until(lambda: running.get("/status").json()["error_files"] == 1, 30,
               "the file in error/ to be counted")
    by_hand = running.watch / "error" / "old.csv"  # put there by someone, not by this run
    by_hand.write_text("x")
    wait_until(lambda: running.get("/status").json()["error_files"] == 2, 30, "a second one")
    status = running.get("/status").json()
    assert [Path(f["path"]).name for f in status["error_files_newest"]] == ["old.csv",
                                                                            "garbage.bin"]
    assert "garbage.bin" in status["error_files_newest"][1]["reason"]
    samples = parse_metrics(running.get("/metrics").text)
    assert samples[("pywats_error_files", ())] == 2
    page = running.get("/").text
    assert "Needs attention" in page and "Uploading normally" not in page
    assert "2 file(s) could not be converted" in page
    by_hand.unlink()
    (running.watch / "error" / "garbage.bin").unlink()
    wait_until(lambda: running.get("/status").json()["error_files"] == 0, 30, "none left")
    assert "Needs attention" not in running.get("/").text  # the note left behind is no file


def test_pending_reports_are_listed_page_by_page(running: Running) -> None:
    running.receiver.faults.down = True  # every upload breaks: retried in 10 min, pending
    ids = [str(uuid.uuid4()) for _ in range(5)]
    for n, rid in enumerate(ids):
        running.drop(f"r{n}.json", json.dumps(wsjf_report(n, report_id=rid)).encode())
    wait_until(lambda: running.get("/queue").json()["pending"] == 5
               and len(running.snapshot()["recent_failures"]) == 5, 30, "5 pending")

    seen: list[str] = []
    for offset in (0, 2, 4):
        page = running.read(f"/queue/pending?limit=2&offset={offset}").json()
        assert page["total"] == 5 and page["limit"] == 2 and page["offset"] == offset
        assert len(page["items"]) == (1 if offset == 4 else 2)
        for item in page["items"]:
            assert set(item) >= {"id", "source", "attempts", "next_attempt_at", "last_error"}
            assert Path(item["source"]).parent == running.watch and item["attempts"] == 1
            assert "connection" in item["last_error"] and item["next_attempt_at"] > time.time()
        seen += [item["id"] for item in page["items"]]
    assert sorted(seen) == sorted(ids)
    assert running.read("/queue/pending?offset=5").json()["items"] == []
    for bad in ("limit=0", "limit=5000", "offset=-1", "limit=ten"):
        answer = running.read(f"/queue/pending?{bad}")
        assert answer.status == 400 and "limit" in answer.json()["error"], bad
    assert running.read("/queue/nowhere").status == 404
    samples = parse_metrics(running.get("/metrics").text)
    assert samples[("pywats_queue_reports", (("state", "pending"),))] == 5
    assert samples[("pywats_uploads_total", (("outcome", "transient"),))] == 5


def test_stop_needs_the_token(running: Running) -> None:
    wrong = [None, bearer("not-the-token"), bearer(running.token + "x"),
             {"Authorization": f"Basic {running.token}"}, {"Authorization": running.token}]
    for headers in wrong:
        answer = running.post("/stop", headers)
        assert answer.status == 401, headers
        assert "Bearer" in answer.headers["WWW-Authenticate"]
        assert "api.token" in answer.json()["error"]
    assert running.get("/stop").status == 405
    assert running.post("/status", bearer(running.token)).status == 405
    assert running.thread.is_alive() and running.snapshot()["state"] == "running"

    answer = running.post("/stop", bearer(running.token))
    assert answer.status == 202 and answer.json()["accepted"] == "stop"
    running.thread.join(30)
    assert not running.thread.is_alive() and not running.service.restart_requested
    assert not running.service.hard_stop  # asking twice is not a second, hard, stop:
    assert running.post("/stop", bearer(running.token)).status == 202
    assert running.post("/restart", bearer(running.token)).status == 409
    assert not running.service.hard_stop
    assert running.get("/status").json()["state"] == "stopped"


def test_restart_asks_the_service_to_stop_for_a_restart(running: Running) -> None:
    assert running.post("/restart").status == 401
    answer = running.post("/restart", bearer(running.token))
    assert answer.status == 202 and answer.json() == {"accepted": "restart", "pid": os.getpid()}
    running.thread.join(30)
    assert not running.thread.is_alive()
    assert running.service.restart_requested and not running.service.hard_stop


def test_no_answer_carries_a_secret(running: Running) -> None:
    running.drop("one.json", json.dumps(wsjf_report(1)).encode())
    assert running.receiver.wait_for_reports(1, timeout=30)
    config = running.read("/config")
    assert config.status == 200
    view = config.json()
    assert view["api_token"] == "****" and view["station_name"] == "ICT-07"
    assert view["server_url"] == running.receiver.url
    answers = [running.read(route) for route in
               ("/", "/status", "/queue", "/queue/pending", "/queue/completed", "/config",
                "/metrics", "/nowhere")]
    answers += [running.post("/stop", bearer("guess"))]
    for answer in answers:
        for secret in (running.token, WATS_TOKEN, "user:secret"):
            assert secret not in answer.text
            assert secret not in json.dumps(answer.headers)
    assert running.token not in repr(running.api)


def test_a_loopback_api_answers_loopback_names_only(running: Running) -> None:
    for host in ("127.0.0.1", "localhost", f"127.0.0.1:{running.api.port}"):
        assert running.get("/queue", {"Host": host}).status == 200
    answer = running.get("/status", {"Host": f"rebound.example.com:{running.api.port}"})
    assert answer.status == 403 and "loopback" in answer.json()["error"]


def test_file_names_and_settings_need_the_token(running: Running) -> None:
    for route in ("/config", "/queue/pending", "/queue/failed?limit=5"):
        answer = running.get(route)
        assert answer.status == 401, route
        assert answer.headers["WWW-Authenticate"].startswith("Basic realm=")  # a phone's prompt
        assert "api.token" in answer.json()["error"] and "password" in answer.json()["error"]
        assert running.read(route).status == 200, route
        assert running.get(route, basic("technician", running.token)).status == 200, route
        assert running.get(route, basic("", running.token)).status == 200, route
        for wrong in (basic("technician", "guess"), basic(running.token, ""),
                      bearer("x" * 43), {"Authorization": "Basic !!!"}):
            assert running.get(route, wrong).status == 401, (route, wrong)
    for route in ("/", "/status", "/queue", "/metrics"):  # counts and states, on loopback
        assert running.get(route).status == 200, route
    # Credentials a browser remembers and sends by itself never stop the service.
    assert running.post("/stop", basic("technician", running.token)).status == 401
    assert running.thread.is_alive()


def test_beyond_loopback_every_route_needs_the_token(tmp_path: Path) -> None:
    token = "t" * 43
    with ControlServer(_Idle(), DurableQueue(tmp_path / "queue"), token, host="0.0.0.0",
                       port=0, allow_remote=True) as api:
        for route in ("/", "/status", "/queue", "/metrics", "/config", "/queue/pending"):
            assert call(api.url + route).status == 401, route
            assert call(api.url + route, headers=basic("phone", "guess")).status == 401, route
            assert call(api.url + route, headers=bearer(token)).status == 200, route
            assert call(api.url + route, headers=basic("phone", token)).status == 200, route


def test_unknown_routes_list_the_real_ones(running: Running) -> None:
    answer = running.get("/nowhere")
    assert answer.status == 404 and "/status" in answer.json()["routes"]


# -- the server on its own ----------------------------------------------------------------------


class _Idle:
    """Satisfies the control interface; for tests of the server alone."""

    def snapshot(self) -> dict[str, Any]:
        return {"state": "running"}

    def request_stop(self) -> None:
        raise AssertionError("not expected")

    def request_restart(self) -> None:
        raise AssertionError("not expected")


def test_a_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    queue = DurableQueue(tmp_path / "queue")
    with (ControlServer(_Idle(), queue, "t" * 43, port=0) as first,
          pytest.raises(ControlApiError) as caught):
        ControlServer(_Idle(), queue, "t" * 43, port=first.port)
    message = str(caught.value)
    assert f"127.0.0.1:{first.port}" in message and "in use" in message
    assert "--api-port" in message


def test_a_non_loopback_address_needs_the_explicit_flag(tmp_path: Path) -> None:
    with pytest.raises(ControlApiError, match="--api-allow-remote"):
        ControlServer(_Idle(), DurableQueue(tmp_path / "queue"), "t" * 43, host="0.0.0.0",
                      port=0)
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert is_loopback("127.3.4.5") and not is_loopback("0.0.0.0")
    assert not is_loopback("192.168.1.10") and not is_loopback("station.local")


def test_stopping_the_server_ends_every_thread_even_with_idle_connections(tmp_path: Path) -> None:
    api = ControlServer(_Idle(), DurableQueue(tmp_path / "queue"), "t" * 43, port=0).start()
    idle = socket.create_connection(("127.0.0.1", api.port))  # a browser's spare connection
    busy = socket.create_connection(("127.0.0.1", api.port))
    busy.sendall(b"GET /queue HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")  # keep-alive, then silence
    assert b"200 OK" in busy.recv(4096)
    try:
        started = time.monotonic()
        api.stop()
        assert time.monotonic() - started < 10  # not the 30 s idle timeout of a handler
    finally:
        idle.close()
        busy.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("control-api")]
    assert not [t for t in threading.enumerate() if "process_request" in t.name]


def test_the_token_file_is_private_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "api.token"
    token = load_or_create_token(path)
    assert len(token) >= 43 and re.fullmatch(r"[A-Za-z0-9_-]+", token)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_token(path) == token  # the same token at every start
    path.chmod(0o644)
    assert load_or_create_token(path) == token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # tightened
    path.write_text("short\n")
    with pytest.raises(ControlApiError, match="delete it"):
        load_or_create_token(path)


def test_api_token_command_prints_the_path_not_the_token(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data_dir = tmp_path / "data"
    assert cli.main(["--data-dir", str(data_dir), "--instance", "line-a", "api-token"]) == 0
    out = capsys.readouterr().out
    path = data_dir / "line-a" / "api.token"
    token = path.read_text().strip()
    assert str(path) in out and token not in out
    assert "Authorization: Bearer" in out
    assert cli.main(["--data-dir", str(data_dir), "--instance", "line-a", "api-token",
                     "--show"]) == 0
    assert capsys.readouterr().out.strip() == token


def test_a_bad_api_port_is_a_usage_error(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    data_dir = tmp_path / "data"
    init_config(InstancePaths.for_instance("default", data_dir),
                server_url="http://127.0.0.1:9", api_token=WATS_TOKEN)
    code = cli.main(["--data-dir", str(data_dir), "start", "--api", "--api-port", "70000"])
    assert code == USAGE and "--api-port 70000" in capsys.readouterr().err


# -- the real program -----------------------------------------------------------------------------


def api_of(station: Station) -> tuple[str, str]:
    """(url, token) of a station started with --api."""
    url = wait_until(lambda: station.service_status().get("api_url"), 30, "api_url")
    return url, (station.instance / "api.token").read_text().strip()


@pytest.mark.slow
def test_post_stop_stops_the_program(station: Station) -> None:
    station.start("--api", "--api-port", "0")
    url, token = api_of(station)
    assert station.proc is not None
    assert call(url + "/stop", "POST").status == 401
    assert call(url + "/stop", "POST", bearer("x" * 43)).status == 401
    assert station.proc.poll() is None
    assert call(url + "/config").status == 401
    view = call(url + "/config", headers=bearer(token)).json()
    assert view["api_token"] == "****" and WATS_TOKEN not in json.dumps(view)
    status = station.cli("status", "--json", "--no-probe")
    assert json.loads(status.stdout)["api_url"] == url
    assert call(url + "/stop", "POST", bearer(token)).status == 202
    assert station.proc.wait(timeout=30) == 0, station.output()
    assert station.service_status()["state"] == "stopped"
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url + "/status", timeout=5)  # the API went with it


@pytest.mark.slow
def test_post_restart_runs_the_same_command_again_in_the_same_process(
        tmp_path: Path, station: Station, receiver: Receiver) -> None:
    # Under systemd (Type=notify) the restart must read as a reload: RELOADING=1 ... READY=1.
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.settimeout(30)
    env = {**station.env(), "NOTIFY_SOCKET": str(tmp_path / "notify.sock")}
    with open(station.log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pywats_client", "--data-dir", str(station.data_dir),
             "start", "--api", "--api-port", "0"], env=env, stdout=log, stderr=log)
    try:
        first = wait_until(lambda: station.service_status().get("state") == "running"
                           and station.service_status(), 30, "the first start")
        url, token = api_of(station)
        assert first["pid"] == proc.pid
        answer = call(url + "/restart", "POST", bearer(token))
        assert answer.status == 202 and answer.json()["pid"] == proc.pid
        second = wait_until(lambda: (s := station.service_status()).get("state") == "running"
                            and s["started_at"] != first["started_at"] and s, 30, "the restart")
        assert second["pid"] == proc.pid and proc.poll() is None
        # It serves again: a new file arrives, and its (new) API answers.
        rid = str(uuid.uuid4())
        station.drop("after-restart.json", wsjf_report(1, report_id=rid))
        assert receiver.wait_for_reports(1, timeout=30), station.output()
        url2, token2 = api_of(station)
        assert token2 == token  # the token file is kept
        assert call(url2 + "/status").json()["started_at"] == second["started_at"]
        assert call(url2 + "/stop", "POST", bearer(token)).status == 202
        assert proc.wait(timeout=30) == 0, station.output()
        seen = []
        notify.settimeout(0.5)
        try:
            while True:
                seen += [f for f in notify.recv(4096).decode().split("\n")
                         if f.split("=")[0] in ("READY", "RELOADING", "STOPPING")]
        except TimeoutError:
            pass
        assert seen == ["READY=1", "RELOADING=1", "READY=1", "STOPPING=1"]
    finally:
        notify.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_a_daemon_restarts_in_place_and_still_stops(tmp_path: Path, station: Station) -> None:
    started = station.cli("start", "--daemon", "--api", "--api-port", "0")
    assert started.returncode == 0, started.stderr
    pid = int(started.stdout.split("started pid ")[1].split()[0])
    try:
        first = wait_until(lambda: station.service_status().get("state") == "running"
                           and station.service_status(), 30, "the daemon")
        url, token = api_of(station)
        assert call(url + "/restart", "POST", bearer(token)).status == 202
        second = wait_until(lambda: (s := station.service_status()).get("state") == "running"
                            and s["started_at"] != first["started_at"] and s, 30, "the restart")
        assert second["pid"] == pid and second["supervisor"] == "daemon" and pid_alive(pid)
        assert (station.instance / "service.pid").read_text().strip() == str(pid)
        stopped = station.cli("stop")
        assert stopped.returncode == 0 and f"stopped pid {pid}" in stopped.stdout
        wait_until(lambda: not pid_alive(pid), 10, "the daemon to exit")
        assert not (station.instance / "service.pid").exists()
    finally:
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
def test_two_instances_cannot_share_a_port(tmp_path: Path, station: Station,
                                           receiver: Receiver) -> None:
    station.start("--api", "--api-port", "0")
    url, _ = api_of(station)
    port = url.rsplit(":", 1)[1]
    other = Station(tmp_path / "other", receiver.url, WATS_TOKEN)
    second = other.cli("start", "--api", "--api-port", port, timeout=60)
    assert second.returncode == ERROR
    assert f"127.0.0.1:{port}" in second.stderr and "in use" in second.stderr
    assert "--api-port" in second.stderr
    assert other.cli("status", "--no-probe").returncode == NOT_RUNNING  # lock let go
    assert call(url + "/status").status == 200  # the first one is unharmed


# -- systemd units ----------------------------------------------------------------------------


UNITS = ("pywats-client@.service", "pywats-client-once@.service", "pywats-client-once@.timer")


def read_unit(name: str) -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> values; fails on anything that is not a comment, a section header
    or key=value, and on a setting without a comment line just above it."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    previous = ""
    for number, raw in enumerate((SCRIPTS / name).read_text().splitlines(), 1):
        line = raw.strip()
        where = f"{name}:{number}: {raw!r}"
        if not line or line.startswith("#"):
            previous = line
            continue
        if m := re.fullmatch(r"\[([A-Za-z]+)\]", line):
            current = sections.setdefault(m.group(1), {})
        else:
            m = re.fullmatch(r"([A-Za-z][A-Za-z0-9]*)=(.*)", line)
            assert m and current is not None, f"not key=value in a section, {where}"
            assert previous.startswith("#"), f"a setting without its comment, {where}"
            current.setdefault(m.group(1), []).append(m.group(2))
        previous = line
    return sections


def test_the_service_template_runs_the_client_under_notify_supervision() -> None:
    unit = read_unit("pywats-client@.service")
    service = unit["Service"]
    assert service["ExecStart"] == ["/opt/pywats/bin/pywats-client --instance %i start"]
    assert service["Type"] == ["notify"] and service["WatchdogSec"] == ["60"]
    assert service["Restart"] == ["on-failure"]
    assert int(service["TimeoutStopSec"][0]) > 20  # the graceful stop bound
    for key, value in (("ProtectSystem", "strict"), ("StateDirectory", "pywats"),
                       ("NoNewPrivileges", "yes"),
                       ("PrivateTmp", "yes"), ("MemoryMax", "128M")):
        assert service[key] == [value], key
    assert service["ReadWritePaths"]
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]
    # The client's own data dir for a system service is where StateDirectory= puts it.
    assert service["Environment"] == ["PYWATS_DATA_DIR=/var/lib/pywats"]


def test_the_timer_runs_the_one_shot_every_five_minutes() -> None:
    once = read_unit("pywats-client-once@.service")["Service"]
    assert once["ExecStart"] == ["/opt/pywats/bin/pywats-client --instance %i start --once"]
    assert once["Type"] == ["oneshot"]
    assert once["SuccessExitStatus"] == [str(SERVER)]  # offline: kept for the next run
    timer = read_unit("pywats-client-once@.timer")
    assert timer["Timer"]["OnCalendar"] == ["*:0/5"]
    assert timer["Timer"]["Unit"] == ["pywats-client-once@%i.service"]
    assert timer["Install"]["WantedBy"] == ["timers.target"]
    # The same files parse as INI, the way other tools read them.
    for name in UNITS:
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        parser.read_string((SCRIPTS / name).read_text())
        assert "Unit" in parser


def test_systemd_accepts_the_units(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here (apt-get install systemd)")
    # verify insists that ExecStart names an existing program: point it at one.
    program = shutil.which("true") or "/bin/true"
    for name in UNITS:
        text = (SCRIPTS / name).read_text().replace("/opt/pywats/bin/pywats-client", program)
        (tmp_path / name).write_text(text)
    result = subprocess.run(
        [analyze, "verify", *(str(tmp_path / n.replace("@.", "@station1.")) for n in UNITS)],
        capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 0 and not result.stderr.strip() and not result.stdout.strip(), (
        result.stdout + result.stderr)


# -- hostile clients ----------------------------------------------------------------------------


def _closed_within(sock: socket.socket, seconds: float, *, trickle: bytes = b"") -> float | None:
    """Seconds until the server closed `sock` (None: still open after `seconds`). With
    `trickle`, one byte of it is sent each time 0.2 s pass without an answer."""
    sock.settimeout(0.2)
    started = time.monotonic()
    sent = 0
    while time.monotonic() - started < seconds:
        try:
            if sock.recv(4096) == b"":
                return time.monotonic() - started
        except TimeoutError:
            if trickle:
                try:
                    sock.sendall(trickle[sent % len(trickle):][:1])
                except OSError:
                    return time.monotonic() - started
                sent += 1
        except OSError:  # reset by the server
            return time.monotonic() - started
    return None


def test_a_flood_of_idle_connections_costs_a_bounded_number_of_threads(tmp_path: Path) -> None:
    api = ControlServer(_Idle(), DurableQueue(tmp_path / "queue"), "t" * 43, port=0).start()
    before = threading.active_count()
    idle = [socket.create_connection(("127.0.0.1", api.port)) for _ in range(50)]
    try:
        late = call(api.url + "/status")  # accepted after the 50 before it
        extra = threading.active_count() - before
        assert extra <= 8, f"{extra} threads for 50 idle connections"  # MAX_CONNECTIONS
        assert late.status == 503 and late.headers["Retry-After"]
        assert late.headers["Connection"] == "close"
    finally:
        for sock in idle:
            sock.close()
    try:  # the idle ones gone, it answers again
        wait_until(lambda: call(api.url + "/status").status == 200, 10, "the API to answer")
    finally:
        api.stop()


@contextlib.contextmanager
def _connected_with_a_short(timeout: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                            ) -> Iterator[socket.socket]:
    """A connection to a control API whose `timeout` (of `_Handler`) is 1 s."""
    monkeypatch.setattr(control_api._Handler, timeout, 1.0, raising=False)
    with (ControlServer(_Idle(), DurableQueue(tmp_path / "queue"), "t" * 43, port=0) as api,
          socket.create_connection(("127.0.0.1", api.port)) as sock):
        yield sock


def test_a_client_sending_its_headers_a_byte_at_a_time_is_cut_off(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with _connected_with_a_short("head_timeout", tmp_path, monkeypatch) as sock:
        sock.sendall(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        after = _closed_within(sock, 8, trickle=b"abcdefgh")
    assert after is not None and after < 4, after  # 1 s allowed, each byte resets 10 s


def test_an_idle_connection_is_closed_after_the_idle_timeout(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with _connected_with_a_short("idle_timeout", tmp_path, monkeypatch) as sock:
        sock.sendall(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert b"200 OK" in sock.recv(4096)
        after = _closed_within(sock, 8)  # kept alive, then silence
    assert after is not None and after < 4, after

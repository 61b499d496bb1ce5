"""Process control as operators use it: daemon start, status, stop, restart, two instances."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from functools import partial
from pathlib import Path

import pytest

from pywats_client.http.receiver import Receiver
from pywats_client.queue.lock import pid_alive
from tests.conftest import TOKEN
from tests.station import REPO, Station, wait_until, wsjf_report

pytestmark = pytest.mark.slow


def cli(data_dir: Path, *args: str, instance: str = "default") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYWATS_")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-m", "pywats_client", "--data-dir", str(data_dir), "--instance",
         instance, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=90)


def make_instance(tmp_path: Path, receiver: Receiver, name: str) -> tuple[Path, Path]:
    data_dir, watch = tmp_path / "data", tmp_path / f"watch-{name}"
    init = cli(data_dir, "config", "init", "--non-interactive", "--server-url", receiver.url,
               "--api-token", TOKEN, "--station-name", name, instance=name)
    assert init.returncode == 0, init.stderr
    for key, value in (("queue.settle_time", "0.2"), ("queue.upload_interval", "1")):
        assert cli(data_dir, "config", "set", key, value, instance=name).returncode == 0
    assert cli(data_dir, "config", "add-watch-folder", str(watch), "--create",
               instance=name).returncode == 0
    return data_dir, watch


def _holds(folder: Path, names: list[str]) -> bool:
    return sorted(p.name for p in folder.iterdir()) == names


def pid_of(started: subprocess.CompletedProcess[str]) -> int:
    assert started.returncode == 0, started.stdout + started.stderr
    return int(started.stdout.split("started pid ")[1].split()[0])


def test_daemon_start_status_stop(tmp_path: Path, receiver: Receiver) -> None:
    data_dir, watch = make_instance(tmp_path, receiver, "default")
    pid = pid_of(cli(data_dir, "start", "--daemon"))
    try:
        assert (data_dir / "default" / "service.pid").read_text().strip() == str(pid)
        status = cli(data_dir, "status", "--json")
        assert status.returncode == 0, status.stdout + status.stderr
        info = json.loads(status.stdout)
        assert info["running"] and info["pid"] == pid and info["server_authenticated"]
        # it really serves: a dropped file arrives
        rid = str(uuid.uuid4())
        watch.mkdir(exist_ok=True)
        (watch / "r.json").write_text(json.dumps(wsjf_report(1, report_id=rid)))
        assert receiver.wait_for_reports(1, timeout=30)
        again = cli(data_dir, "start", "--daemon")
        assert again.returncode == 4 and f"pid {pid}" in again.stderr
        stopped = cli(data_dir, "stop")
        assert stopped.returncode == 0 and f"stopped pid {pid}" in stopped.stdout
        wait_until(lambda: not pid_alive(pid), 10, "the daemon to exit")
        assert not (data_dir / "default" / "service.pid").exists()
        assert cli(data_dir, "status", "--no-probe").returncode == 6
        assert "not running" in cli(data_dir, "stop").stdout
    finally:
        cli(data_dir, "stop", "--force", "--timeout", "5")


def test_restart_replaces_the_daemon(tmp_path: Path, receiver: Receiver) -> None:
    data_dir, _ = make_instance(tmp_path, receiver, "default")
    first = pid_of(cli(data_dir, "start", "--daemon"))
    try:
        restarted = cli(data_dir, "restart")
        assert restarted.returncode == 0, restarted.stderr
        assert f"stopped pid {first}" in restarted.stdout
        second = pid_of(subprocess.CompletedProcess([], 0, restarted.stdout.splitlines()[-1], ""))
        assert second != first and pid_alive(second) and not pid_alive(first)
    finally:
        cli(data_dir, "stop", "--force", "--timeout", "5")


def test_stop_works_on_a_foreground_service(tmp_path: Path, receiver: Receiver) -> None:
    station = Station(tmp_path / "station", receiver.url, TOKEN)
    station.start()
    assert station.proc is not None
    stopped = station.cli("stop")
    assert stopped.returncode == 0 and f"stopped pid {station.proc.pid}" in stopped.stdout
    assert station.proc.wait(timeout=30) == 0


def test_a_daemon_that_cannot_start_says_why(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    (data_dir / "default").mkdir(parents=True)
    (data_dir / "default" / "config.json").write_text(json.dumps({"station_name": "x"}))
    failed = cli(data_dir, "start", "--daemon")
    assert failed.returncode == 2 and "server_url is not set" in failed.stderr


def test_two_instances_run_side_by_side(tmp_path: Path, receiver: Receiver) -> None:
    data_a, watch_a = make_instance(tmp_path, receiver, "line-a")
    data_b, watch_b = make_instance(tmp_path, receiver, "line-b")
    assert data_a == data_b
    pids = [pid_of(cli(data_a, "start", "--daemon", instance=n)) for n in ("line-a", "line-b")]
    try:
        ids = {}
        for name, watch in (("line-a", watch_a), ("line-b", watch_b)):
            ids[name] = str(uuid.uuid4())
            watch.mkdir(exist_ok=True)
            (watch / "r.json").write_text(json.dumps(wsjf_report(1, report_id=ids[name])))
        assert receiver.wait_for_reports(2, timeout=30)
        for name in ("line-a", "line-b"):
            stored = json.loads((receiver.store / f"{ids[name]}.json").read_text())
            assert stored["machineName"] == "station-e2e"  # the file's own value is kept
            completed = data_a / name / "queue" / "completed"
            wait_until(partial(_holds, completed, [f"{ids[name]}.wsq"]), 10,
                       f"{name}'s report in its own completed/")
        listing = json.loads(cli(data_a, "instances", "list", "--json").stdout)
        assert {(r["instance"], r["pid"]) for r in listing} == {("line-a", pids[0]),
                                                                ("line-b", pids[1])}
        assert cli(data_a, "stop", instance="line-a").returncode == 0
        wait_until(lambda: not pid_alive(pids[0]), 10, "line-a to exit")
        assert pid_alive(pids[1])
        assert json.loads(cli(data_a, "status", "--json", "--no-probe",
                              instance="line-b").stdout)["running"]
    finally:
        for name in ("line-a", "line-b"):
            cli(data_a, "stop", "--force", "--timeout", "5", instance=name)

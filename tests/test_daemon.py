"""Process control as operators use it: daemon start, status, stop, restart, two instances,
SIGHUP, two starts racing, and a lock file taken away."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from pywats_client.http.receiver import Receiver
from pywats_client.paths import InstancePaths
from pywats_client.queue.lock import InstanceLock, pid_alive, read_lock
from tests.conftest import TOKEN
from tests.station import REPO, Station, service_status, wait_until, wsjf_report

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


def start_daemon(data_dir: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYWATS_")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.Popen(
        [sys.executable, "-m", "pywats_client", "--data-dir", str(data_dir), "start",
         "--daemon"], env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)


RENDEZVOUS_PLUGIN = """
import os
import threading
from pathlib import Path

from pywats_client.converters import Converter

# Both racing daemons load this while starting, past every check made before the fork:
# each waits here for the other, so the race for the instance is run every time.
RACE = Path({race!r})
(RACE / f"loading-{{os.getpid()}}").touch()
_pause = threading.Event()
while not (RACE / "go").exists():
    _pause.wait(0.02)


class RendezvousConverter(Converter):
    name = "RendezvousConverter"
    file_patterns = ("*.never",)

    def convert(self, path, context):
        return {{}}
"""


def test_two_daemons_started_at_once_leave_one_owner_with_its_pid_file(
    tmp_path: Path, receiver: Receiver
) -> None:
    data_dir, _ = make_instance(tmp_path, receiver, "default")
    pid_file = data_dir / "default" / "service.pid"
    race = tmp_path / "race"
    plugins = data_dir / "default" / "converters"
    plugins.mkdir(mode=0o755, exist_ok=True)
    (plugins / "rendezvous.py").write_text(RENDEZVOUS_PLUGIN.format(race=str(race)))
    for _ in range(3):
        race.mkdir()
        racers = [start_daemon(data_dir) for _ in range(2)]
        try:
            wait_until(lambda: len(list(race.glob("loading-*"))) == 2, 60,
                       "both daemons to be starting")
        finally:
            (race / "go").touch()
        answers = [racer.communicate(timeout=90) for racer in racers]
        try:
            codes = sorted(racer.returncode for racer in racers)
            assert codes == [0, 4], answers
            winner = next(out for (out, _), racer in zip(answers, racers, strict=True)
                          if racer.returncode == 0)
            loser_err = next(err for (_, err), racer in zip(answers, racers, strict=True)
                             if racer.returncode == 4)
            pid = int(winner.split("started pid ")[1].split()[0])
            assert "in use by pid" in loser_err
            assert pid_alive(pid)
            assert pid_file.read_text().strip() == str(pid)  # the loser touched nothing
        finally:
            stopped = cli(data_dir, "stop", "--force", "--timeout", "10")
        assert stopped.returncode == 0, stopped.stdout
        assert not pid_file.exists()
        shutil.rmtree(race)


def test_sighup_reloads_a_daemon_in_place(tmp_path: Path, receiver: Receiver) -> None:
    data_dir, watch = make_instance(tmp_path, receiver, "default")
    pid = pid_of(cli(data_dir, "start", "--daemon"))
    instance = data_dir / "default"
    try:
        first = wait_until(lambda: service_status(instance).get("started_at"), 10, "status.json")
        os.kill(pid, signal.SIGHUP)
        wait_until(lambda: service_status(instance).get("started_at", 0) > first
                   and service_status(instance).get("state") == "running", 30, "the reload")
        assert pid_alive(pid) and service_status(instance)["pid"] == pid
        assert (instance / "service.pid").read_text().strip() == str(pid)
        log = (instance / "logs" / "pywats_client.log").read_text()
        assert "restarting in place to reload the configuration (SIGHUP)" in log
        rid = str(uuid.uuid4())
        watch.mkdir(exist_ok=True)
        (watch / "after-reload.json").write_text(json.dumps(wsjf_report(1, report_id=rid)))
        assert receiver.wait_for_reports(1, timeout=30)
        stopped = cli(data_dir, "stop")
        assert stopped.returncode == 0 and f"stopped pid {pid}" in stopped.stdout
        assert not pid_alive(pid) and not (instance / "service.pid").exists()
    finally:
        cli(data_dir, "stop", "--force", "--timeout", "5")


@pytest.fixture
def daemon(tmp_path: Path, receiver: Receiver) -> Iterator[tuple[Path, int]]:
    """The default instance's service started as a daemon: its data dir and pid."""
    data_dir, _ = make_instance(tmp_path, receiver, "default")
    pid = pid_of(cli(data_dir, "start", "--daemon"))
    try:
        yield data_dir, pid
    finally:
        cli(data_dir, "stop", "--force", "--timeout", "5")


def test_a_removed_lock_file_is_taken_again_and_a_second_start_still_refused(
        daemon: tuple[Path, int]) -> None:
    data_dir, pid = daemon
    lock = data_dir / "default" / "instance.lock"
    lock.unlink()  # a clean-up script, or an operator
    assert read_lock(lock) is None  # for a moment, anyone could take the instance...
    holder = wait_until(lambda: read_lock(lock), 30, "the service to take its lock again")
    assert holder.pid == pid  # ...until the service takes it again
    again = cli(data_dir, "start", "--daemon")
    assert again.returncode == 4 and f"pid {pid}" in again.stderr
    assert pid_alive(pid)


def test_a_service_whose_lock_another_process_took_stops(daemon: tuple[Path, int]) -> None:
    data_dir, pid = daemon
    (data_dir / "default" / "instance.lock").unlink()
    intruder = InstanceLock(data_dir / "default" / "instance.lock")
    intruder.acquire("intruder")  # got in before the service noticed
    try:
        wait_until(lambda: not pid_alive(pid), 30, "the service to give way and stop")
    finally:
        intruder.release()
    log = (data_dir / "default" / "logs" / "pywats_client.log").read_text()
    assert "another process holds it now: stopping" in log


def test_stop_never_signals_when_the_lock_names_no_process(tmp_path: Path) -> None:
    paths = InstancePaths.for_instance("default", tmp_path / "data")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys\nfrom pathlib import Path\n"
         "from pywats_client.queue.lock import InstanceLock\n"
         "InstanceLock(Path(sys.argv[1])).acquire('service')\n"
         "print('held', flush=True)\nsys.stdin.read()\n", str(paths.lock)],
        env={**os.environ, "PYTHONPATH": str(REPO)}, stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        paths.lock.write_text("garbage")  # the holder is alive; its file no longer says who
        # In a session of its own: a stop that signalled "pid 0" would end its whole group.
        stopper = subprocess.run(
            [sys.executable, "-c", "import sys\nfrom pathlib import Path\n"
             "from pywats_client.paths import InstancePaths\n"
             "from pywats_client.service.daemon import stop\n"
             "print(stop(InstancePaths.for_instance('default', Path(sys.argv[1]))).message)\n",
             str(tmp_path / "data")], env={**os.environ, "PYTHONPATH": str(REPO)},
            capture_output=True, text=True, timeout=60, start_new_session=True)
        assert stopper.returncode == 0, stopper.stderr
        assert "does not say by which process" in stopper.stdout
        assert holder.poll() is None
    finally:
        holder.kill()
        holder.wait(30)
        for stream in (holder.stdin, holder.stdout):
            if stream:
                stream.close()

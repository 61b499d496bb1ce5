"""A station for end-to-end tests: an instance folder, a watch folder, and the real service
running as a subprocess (`python -m pywats_client start`), as systemd would run it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A loopback port nobody listens on (bound, then released): free for a server to take,
    or refused to a client."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def closed_port_url() -> str:
    """The URL of a loopback port nobody listens on: connection refused."""
    return f"http://127.0.0.1:{free_port()}"


def wait_until(predicate: Callable[[], Any], timeout: float, what: str = "condition", *,
               tick: float = 0.05) -> Any:
    """Poll `predicate` every `tick` s until it returns something truthy; fail after `timeout`
    seconds.

    For conditions another process or thread brings about with no event to wait on; each look
    waits on an Event, so nothing here is a blind sleep.
    """
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        pause.wait(tick)


def service_in_process(tmp_path: Path, server_url: str, token: str, *, stop_timeout: float = 2,
                       **queue: Any) -> tuple[Any, Path]:
    """A `Service` for the watch folder tmp_path/watch (made here), its instance under
    tmp_path/data, with a settle time of 0.1 s and the `queue` settings given; the caller
    runs it. Returns the service and the watch folder."""
    from pywats_client.config.settings import QueueSettings, Settings, WatchFolder
    from pywats_client.paths import InstancePaths
    from pywats_client.service.loop import Service

    watch = tmp_path / "watch"
    watch.mkdir()
    settings = Settings(server_url=server_url, api_token=token, station_name="s",
                        queue=QueueSettings(watch_folders=(WatchFolder(path=watch),),
                                            **{"settle_time": 0.1, **queue}))
    paths = InstancePaths.for_instance("default", tmp_path / "data")
    return Service(settings, paths, stop_timeout=stop_timeout), watch


def drop_each_until_said_then_delete(watch: Path, texts: list[str], said: str,
                                     records: Callable[[], list[Any]]) -> None:
    """A writer that takes its files back: each text is renamed into `watch` as
    `f<n>.json`, and deleted once a log record (of `records()`) contains `said` formatted
    with the file's path."""
    for n, text in enumerate(texts):
        tmp = watch / f".f{n:03d}.part"
        tmp.write_text(text)
        path = tmp.replace(watch / f"f{n:03d}.json")
        wanted = said.format(path=path)
        wait_until(lambda wanted=wanted: any(wanted in r.getMessage() for r in records()),
                   20, wanted)
        path.unlink()


def service_status(instance: Path) -> dict[str, Any]:
    """The service's state/status.json in the instance folder; {} before it is written (or
    while it cannot be read)."""
    try:
        data = json.loads((instance / "state" / "status.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def with_changes(report: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """`report` with `changes` made to it: a value replaces a field, None removes it."""
    for key, value in changes.items():
        if value is None:
            report.pop(key, None)
        else:
            report[key] = value
    return report


def wsjf_report(n: int, *, report_id: str | None = None, sn: str | None = None) -> dict[str, Any]:
    """A small, valid WSJF UUT report."""
    report: dict[str, Any] = {
        "type": "T",
        "pn": "PN-100",
        "sn": sn or f"SN{n:06d}",
        "rev": "A",
        "processCode": 10,
        "result": "P",
        "machineName": "station-e2e",
        "location": "lab",
        "purpose": "test",
        "start": "2026-05-01T10:00:00+02:00",
        "root": {
            "id": 0, "group": "M", "stepType": "SequenceCall", "name": "MainSequence",
            "status": "P", "seqCall": {"path": "main.seq", "name": "MainSequence",
                                       "version": "1.0"},
            "steps": [{
                "id": 1, "group": "M", "stepType": "ET_NLT", "name": "Voltage", "status": "P",
                "numericMeas": [{"compOp": "GELE", "name": None, "status": "P", "unit": "V",
                                 "value": 3.3 + n / 1000, "lowLimit": 3.0, "highLimit": 3.6}],
            }],
        },
    }
    if report_id:
        report["id"] = report_id
    return report


class Station:
    """One instance of pywats-client under test."""

    def __init__(self, root: Path, server_url: str, token: str, **queue: Any) -> None:
        self.root = root
        self.data_dir = root / "data"
        self.instance = self.data_dir / "default"
        self.watch = root / "watch"
        self.watch.mkdir(parents=True, exist_ok=True)
        self.instance.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = root / "service-output.log"
        queue_settings = {
            "watch_folders": [str(self.watch)],
            "settle_time": 0.2,
            "rescan_interval": 5,
            "upload_interval": 1,
            "probe_interval": 0.5,
            "retry_delay": 1,
            "retry_max_delay": 2,
        }
        queue_settings.update(queue)
        self.config: dict[str, Any] = {
            "server_url": server_url,
            "api_token": token,
            "station_name": "station-e2e",
            "station_location": "lab",
            "connect_timeout": 2,
            "read_timeout": 5,
            "queue": queue_settings,
            "logging": {"level": "DEBUG"},
        }
        self.write_config()

    @property
    def queue(self) -> Path:
        return self.instance / "queue"

    def write_config(self) -> None:
        (self.instance / "config.json").write_text(json.dumps(self.config, indent=2))

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYWATS_")}
        env["PYTHONPATH"] = str(REPO)
        return env

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pywats_client", "--data-dir", str(self.data_dir), *args],
            env=self.env(), capture_output=True, text=True, timeout=timeout,
        )

    def start(self, *extra: str) -> None:
        assert self.proc is None or self.proc.poll() is not None
        status = self.instance / "state" / "status.json"
        if status.exists():
            status.unlink()
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pywats_client", "--data-dir", str(self.data_dir),
             "start", *extra],
            env=self.env(), stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        wait_until(lambda: self.service_status().get("state") == "running" or self._died(),
                   30, "the service to start")
        assert not self._died(), self.output()

    def _died(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def service_status(self) -> dict[str, Any]:
        return service_status(self.instance)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout=timeout)
        return code

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-5000:]
        except FileNotFoundError:
            return ""

    def drop(self, name: str, report: dict[str, Any] | bytes) -> Path:
        """Write a file into the watch folder the way equipment does: under a hidden temporary
        name (which the watcher ignores), then renamed."""
        data = report if isinstance(report, bytes) else json.dumps(report).encode()
        tmp = self.watch / f".{name}.{uuid.uuid4().hex}"
        tmp.write_bytes(data)
        target = self.watch / name
        os.replace(tmp, target)
        return target

    def queue_files(self, state: str) -> list[str]:
        try:
            return sorted(os.listdir(self.queue / state))
        except FileNotFoundError:
            return []

    def queue_idle(self) -> bool:
        """Nothing pending or being uploaded. processing/ is looked at on both sides of
        pending/, so a report moving between the two cannot slip through unseen."""
        return not (self.queue_files("processing") or self.queue_files("pending")
                    or self.queue_files("processing"))

    def done_files(self) -> list[str]:
        try:
            return sorted(os.listdir(self.watch / "done"))
        except FileNotFoundError:
            return []

    def watch_files(self) -> list[str]:
        return sorted(p.name for p in self.watch.iterdir() if p.is_file())

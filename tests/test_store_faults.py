"""A queue that cannot be written (other than a full disk) is a fault of the station, not of the
file: the file stays in its watch folder, status says so, it is tried again, and it uploads
once the fault clears."""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import socket
import subprocess
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pywats_client.config.settings import QueueSettings, Settings, WatchFolder
from pywats_client.http.receiver import Receiver
from pywats_client.paths import InstancePaths
from pywats_client.service import station_faults
from pywats_client.service.loop import Service
from tests.conftest import TOKEN
from tests.station import (
    Station,
    drop_each_until_said_then_delete,
    service_in_process,
    wait_until,
    wsjf_report,
)

pytestmark = pytest.mark.slow



def chattr(flag: str, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["chattr", flag, str(path)], capture_output=True, text=True,
                          timeout=30)


@pytest.fixture
def immutable(tmp_path: Path) -> Iterator[list[Path]]:
    """Folders to make immutable (chattr +i stops root too, where chmod does not); skipped
    with the reason where that cannot be done here. Made mutable again afterwards."""
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed (e2fsprogs)")
    probe = tmp_path / "chattr-probe"
    probe.mkdir()
    tried = chattr("+i", probe)
    if tried.returncode != 0:
        pytest.skip(f"cannot make a folder immutable here (needs root and a filesystem "
                    f"with attributes): {tried.stderr.strip()}")
    chattr("-i", probe)
    made: list[Path] = []
    yield made
    for path in made:
        chattr("-i", path)


def test_an_immutable_queue_folder_keeps_the_file_says_so_and_recovers(
    tmp_path: Path, receiver: Receiver, immutable: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    notify = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify))
    sock.settimeout(0.2)
    monkeypatch.setenv("NOTIFY_SOCKET", str(notify))
    station = Station(tmp_path / "station", receiver.url, TOKEN)
    try:
        station.start("--api", "--api-port", "0")
        pending = station.queue / "pending"
        assert chattr("+i", pending).returncode == 0
        immutable.append(pending)
        rid = str(uuid.uuid4())
        good = station.drop("good.json", wsjf_report(1, report_id=rid))

        fault = wait_until(lambda: station.service_status().get("station_fault"), 30,
                           "the station fault in status.json")
        assert "cannot write to the queue" in fault and "EPERM" in fault, fault
        assert good.exists() and not (station.watch / "error").exists()
        status = station.cli("status", "--no-probe")
        assert status.returncode == 7, status.stdout + status.stderr
        assert "CANNOT BE WRITTEN" in status.stdout
        assert json.loads(station.cli("status", "--json", "--no-probe").stdout)[
            "station_fault"] == station.service_status()["station_fault"]
        api_url = station.service_status()["api_url"]
        with urllib.request.urlopen(f"{api_url}/status", timeout=10) as answer:
            assert json.loads(answer.read())["station_fault"] == fault
        wait_until(lambda: _notified(sock, "STATUS=STATION FAULT"), 10, "sd_notify STATUS")
        # Tried again (with backoff), and still kept.
        wait_until(lambda: station.output().count(f"{good} waits in its folder") >= 2, 30,
                   "a second attempt")
        assert good.exists() and not (station.watch / "error").exists()

        assert chattr("-i", pending).returncode == 0  # the fault clears
        assert receiver.wait_for_reports(1, timeout=60), station.output()
        assert receiver.stored_ids() == {rid}
        wait_until(lambda: station.done_files() == ["good.json"], 10, "good.json in done/")
        wait_until(lambda: station.service_status().get("station_fault") == "", 10,
                   "the fault to clear in status")
        assert station.cli("status", "--no-probe").returncode == 0
        assert station.stop() == 0
    finally:
        station.kill()
        sock.close()


def _notified(sock: socket.socket, prefix: str) -> bool:
    try:
        while True:
            if any(line.startswith(prefix) for line in sock.recv(4096).decode().splitlines()):
                return True
    except TimeoutError:
        return False


def test_an_io_error_on_fsync_keeps_the_file_and_it_uploads_once_the_fault_clears(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Retry soon: the test waits for it.
    monkeypatch.setattr(station_faults, "STORE_FAULT_RETRY", 0.2, raising=False)
    paths = InstancePaths.for_instance("default", tmp_path / "data")
    watch = tmp_path / "watch"
    watch.mkdir()
    settings = Settings(server_url=receiver.url, api_token=TOKEN, station_name="s",
                        queue=QueueSettings(watch_folders=(WatchFolder(path=watch),),
                                            settle_time=0.1, upload_interval=0.5))
    failing, failures = threading.Event(), []
    real_fsync = os.fsync
    queue_tmp = f"{paths.queue / 'tmp'}{os.sep}"

    def fsync(fd: int) -> None:  # the disk under the queue reports an I/O error
        if failing.is_set() and os.readlink(f"/proc/self/fd/{fd}").startswith(queue_tmp):
            failures.append(fd)
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    failing.set()
    service = Service(settings, paths, stop_timeout=5)
    thread = threading.Thread(target=service.run, name="service-under-test")
    thread.start()
    try:
        wait_until(lambda: service.snapshot()["state"] == "running", 20, "the service to run")
        rid = str(uuid.uuid4())
        tmp = watch / ".good.json.part"
        tmp.write_text(json.dumps(wsjf_report(1, report_id=rid)))
        good = tmp.replace(watch / "good.json")
        fault = wait_until(lambda: service.snapshot()["station_fault"], 20, "the fault")
        assert "EIO" in fault
        wait_until(lambda: len(failures) >= 3, 20, "attempts after the first")
        assert good.exists() and not (watch / "error").exists()
        assert os.listdir(paths.queue / "pending") == os.listdir(paths.queue / "tmp") == []
        failing.clear()
        assert receiver.wait_for_reports(1, timeout=30)
        assert receiver.stored_ids() == {rid}
        wait_until(lambda: (watch / "done" / "good.json").exists(), 10, "good.json in done/")
        wait_until(lambda: service.snapshot()["station_fault"] == "", 10, "the fault to clear")
        assert service.snapshot()["conversion_errors"] == 0
    finally:
        failing.clear()
        service.request_stop()
        thread.join(30)
    assert not thread.is_alive()


def test_files_deleted_while_a_fault_holds_them_leave_a_bounded_record(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The tries of a file that met a station fault are forgotten when it goes its way; one
    deleted meanwhile goes no way the service hears of, so the record is bounded instead."""
    from pywats_client.service import watcher

    monkeypatch.setattr(watcher, "MAX_TRACKED", 5)
    service, watch = service_in_process(tmp_path, receiver.url, TOKEN, stop_timeout=5)
    queue_tmp = f"{service.paths.queue / 'tmp'}{os.sep}"
    real_fsync = os.fsync

    def fsync(fd: int) -> None:  # the disk under the queue reports an I/O error, for good
        if os.readlink(f"/proc/self/fd/{fd}").startswith(queue_tmp):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    caplog.set_level(logging.WARNING, logger="pywats_client.service.station_faults")
    thread = threading.Thread(target=service.run, name="service-under-test")
    thread.start()
    try:
        wait_until(lambda: service.snapshot()["state"] == "running", 20, "the service to run")
        drop_each_until_said_then_delete(watch, [json.dumps(wsjf_report(n)) for n in range(20)],
                                         "{path} waits in its folder", lambda: caplog.records)
        kept = len(service.faults._tries)
    finally:
        service.request_stop()
        thread.join(30)
    assert 1 <= kept <= 5

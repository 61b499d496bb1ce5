"""Exit codes a timer or a script can act on: 3 means "offline or busy, try later" (the
one-shot timer counts it a success), 8 means "the server refused the credentials or the URL"
(a wrong token, a wrong path prefix), which no waiting fixes: `start --once`, `upload` and
`status` alike."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pywats_client import cli
from pywats_client.cli.common import EXIT_CODES
from pywats_client.http.receiver import Receiver
from pywats_client.outcomes import ServerState
from pywats_client.paths import InstancePaths
from pywats_client.queue.lock import InstanceLock
from pywats_client.service.status import ServiceStatus, write_status
from tests.conftest import TOKEN
from tests.station import Station, closed_port_url, wsjf_report

OFFLINE, REFUSED = 3, 8
WRONG_TOKEN = base64.b64encode(b"station:wrong").decode()


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    with Receiver(tmp_path / "store", token=TOKEN, prefix="/wats") as rx:
        yield rx


def station_for(tmp_path: Path, url: str, token: str = TOKEN) -> Station:
    station = Station(tmp_path / "station", url, token)
    station.drop("one.json", wsjf_report(1, report_id=str(uuid.uuid4())))
    return station


def test_help_lists_both_codes() -> None:
    lines = EXIT_CODES.splitlines()
    assert any(line.strip().startswith(f"{OFFLINE} ") and "try later" in line for line in lines)
    refused = next(line for line in lines if line.strip().startswith(f"{REFUSED} "))
    assert "credentials or the URL" in refused


@pytest.mark.parametrize(("url", "token", "code"), [
    ("{rx}", WRONG_TOKEN, REFUSED),  # 401
    ("{rx_root}", TOKEN, REFUSED),  # 404: the path prefix is missing
    ("{closed}", TOKEN, OFFLINE),  # nobody listens
])
def test_start_once_tells_refused_from_offline(tmp_path: Path, receiver: Receiver, url: str,
                                               token: str, code: int) -> None:
    server = url.format(rx=receiver.url, rx_root=receiver.url.removesuffix("/wats"),
                        closed=closed_port_url())
    station = station_for(tmp_path, server, token)
    result = station.cli("start", "--once")
    assert result.returncode == code, result.stdout + result.stderr
    assert len(station.queue_files("pending")) == 1  # kept either way


@pytest.mark.parametrize(("wrong", "code"), [("token", REFUSED), ("port", OFFLINE)])
def test_upload_tells_refused_from_offline(tmp_path: Path, receiver: Receiver,
                                           capsys: pytest.CaptureFixture[str], wrong: str,
                                           code: int) -> None:
    station = Station(tmp_path / "station", receiver.url if wrong == "token"
                      else closed_port_url(), WRONG_TOKEN if wrong == "token" else TOKEN)
    source = tmp_path / "uut.json"
    source.write_text(json.dumps(wsjf_report(2)))
    assert cli.main(["--data-dir", str(station.data_dir), "upload", "--file",
                     str(source)]) == code
    capsys.readouterr()


def test_status_tells_refused_from_offline(tmp_path: Path, receiver: Receiver,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    station = Station(tmp_path / "station", receiver.url, WRONG_TOKEN)
    paths = InstancePaths.for_instance("default", station.data_dir)
    paths.ensure()
    base = ["--data-dir", str(station.data_dir), "status"]
    lock = InstanceLock(paths.lock, paths.name)
    lock.acquire("service")  # what a running service holds; its status.json says the rest
    try:
        write_status(paths.state, ServiceStatus(state="running", server=ServerState.ONLINE))
        assert cli.main(base) == REFUSED  # the probe: HTTP 401
        write_status(paths.state, ServiceStatus(state="running", server=ServerState.PAUSED,
                                                server_detail="HTTP 401"))
        assert cli.main([*base, "--no-probe"]) == REFUSED
        write_status(paths.state, ServiceStatus(state="running", server=ServerState.OFFLINE,
                                                server_detail="connection refused"))
        assert cli.main([*base, "--no-probe"]) == OFFLINE
    finally:
        lock.release()
    capsys.readouterr()

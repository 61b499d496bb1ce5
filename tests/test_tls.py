"""TLS is verified: a self-signed server is refused without ca_bundle and accepted with it."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from pywats_client.http.receiver import Receiver
from pywats_client.service.uploader import Outcome, Uploader
from tests.conftest import TOKEN
from tests.station import Station, wait_until, wsjf_report


def test_a_self_signed_server_is_refused_without_ca_bundle(
        https_receiver: tuple[Receiver, Path]) -> None:
    receiver, _ = https_receiver
    assert receiver.url.startswith("https://127.0.0.1:")
    client = Uploader(receiver.url, TOKEN)
    try:
        result = client.probe()
    finally:
        client.close()
    assert result.outcome is Outcome.OFFLINE
    assert "certificate" in result.message.lower()
    assert receiver.stored_ids() == set()


def test_the_same_server_is_accepted_with_its_ca_bundle(
        https_receiver: tuple[Receiver, Path]) -> None:
    receiver, cert = https_receiver
    client = Uploader(receiver.url, TOKEN, ca_bundle=str(cert))
    try:
        assert client.probe().outcome is Outcome.STORED
        rid = str(uuid.uuid4())
        body = json.dumps(wsjf_report(1, report_id=rid)).encode()
        assert client.upload(body, rid).outcome is Outcome.STORED
    finally:
        client.close()
    assert receiver.stored_ids() == {rid}


@pytest.mark.slow
def test_a_station_uploads_over_https_only_with_ca_bundle_set(
        tmp_path: Path, https_receiver: tuple[Receiver, Path]) -> None:
    receiver, cert = https_receiver
    station = Station(tmp_path / "station", receiver.url, TOKEN)
    try:
        station.start()
        rid = str(uuid.uuid4())
        station.drop("r.json", wsjf_report(1, report_id=rid))
        wait_until(lambda: station.service_status().get("server") == "offline", 30,
                   "the service to refuse the unknown certificate")
        assert "certificate" in station.service_status()["server_detail"].lower()
        assert receiver.stored_ids() == set()
        fixed = station.cli("config", "set", "ca_bundle", str(cert))
        assert fixed.returncode == 0, fixed.stderr
        assert receiver.wait_for_reports(1, timeout=30), station.output()
        assert receiver.stored_ids() == {rid}
    finally:
        station.kill()

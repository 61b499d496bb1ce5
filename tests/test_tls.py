"""TLS is verified: a self-signed server is refused without ca_bundle and accepted with it."""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pywats_client.receiver import Receiver
from pywats_client.uploader import Outcome, WatsClient
from tests.station import Station, wait_until, wsjf_report

TOKEN = "dXNlcjpzZWNyZXQ="


def self_signed(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "server.pem", folder / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture
def https_receiver(tmp_path: Path) -> Iterator[tuple[Receiver, Path]]:
    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    with Receiver(tmp_path / "store", token=TOKEN, tls=context) as receiver:
        yield receiver, cert


def test_a_self_signed_server_is_refused_without_ca_bundle(
        https_receiver: tuple[Receiver, Path]) -> None:
    receiver, _ = https_receiver
    assert receiver.url.startswith("https://127.0.0.1:")
    client = WatsClient(receiver.url, TOKEN)
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
    client = WatsClient(receiver.url, TOKEN, ca_bundle=str(cert))
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

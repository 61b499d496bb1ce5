"""What the whole suite shares: a real loopback WATS receiver and its token, over plain HTTP
or over HTTPS with a self-signed certificate; and the real equipment files of
../shared/samples, with the skip of a test that needs them where they are absent."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import ssl
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pywats_client.http.receiver import Receiver
from tests.station import Station

TOKEN = base64.b64encode(b"user:secret").decode("ascii")
"""The token the `receiver` fixture accepts, as WATS issues them: base64 of user:secret."""

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples"
"""The real equipment files, beside the repository; not every checkout has them."""

needs_samples = pytest.mark.skipif(not SAMPLES.is_dir(), reason=f"{SAMPLES} is absent")
"""Marks a test that reads the samples: it skips where they are absent."""


def sample(*parts: str | Path) -> Path:
    """The file or folder SAMPLES/`parts` (or a path already under SAMPLES); the calling test
    skips where it is absent."""
    path = SAMPLES.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"sample {path} is absent")
    return path


def samples_in(folder: str, pattern: str = "*") -> list[Path]:
    """The files SAMPLES/`folder`/`pattern`, sorted; [] where they are absent."""
    where = SAMPLES / folder
    return sorted(p for p in where.glob(pattern) if p.is_file()) if where.is_dir() else []


def each_sample(found: Sequence[Path | str]) -> list[Any]:
    """The sample files (named by their place under SAMPLES) or names in `found` as the
    parameters of a test; where there are none (the samples are absent), one that skips."""
    if not found:
        return [pytest.param(None, id="none",
                             marks=pytest.mark.skip(reason=f"no samples in {SAMPLES}"))]
    return [pytest.param(item, id=item.relative_to(SAMPLES).as_posix()
                         if isinstance(item, Path) else item) for item in found]


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    """A started receiver storing into tmp_path/store and requiring TOKEN; stopped afterwards."""
    rx = Receiver(tmp_path / "store", token=TOKEN).start()
    try:
        yield rx
    finally:
        rx.stop()


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for localhost and 127.0.0.1 that no one vouches for, and its key, written
    to folder/server.pem and folder/server.key."""
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
    """A receiver like `receiver`, but over HTTPS with a self-signed certificate; yields the
    receiver and the certificate's file (what a station's ca_bundle names to trust it)."""
    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    with Receiver(tmp_path / "store", token=TOKEN, tls=context) as receiver:
        yield receiver, cert


@pytest.fixture
def station(tmp_path: Path, receiver: Receiver) -> Iterator[Station]:
    """A station folder served by `receiver` (start it with `station.start()`); its service
    is killed afterwards."""
    st = Station(tmp_path / "station", receiver.url, TOKEN)
    yield st
    st.kill()

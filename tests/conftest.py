"""Fixtures shared by the whole suite: a real loopback WATS receiver and its token."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest

from pywats_client.receiver import Receiver

TOKEN = base64.b64encode(b"user:secret").decode("ascii")
"""The token the `receiver` fixture accepts, as WATS issues them: base64 of user:secret."""

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples"


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    """A started receiver storing into tmp_path/store and requiring TOKEN; stopped afterwards."""
    rx = Receiver(tmp_path / "store", token=TOKEN).start()
    try:
        yield rx
    finally:
        rx.stop()

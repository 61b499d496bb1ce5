"""A server's Retry-After is a request, not an order: whatever it asks (ten years, an HTTP-date
in 2036 or in the past), no report and no hold waits longer than queue.retry_max_delay, and the
cap is logged."""

from __future__ import annotations

import json
import logging
import uuid
from email.utils import formatdate
from pathlib import Path

import pytest

from pywats_client.config.settings import QueueSettings, Settings
from pywats_client.http.receiver import Faults, Receiver
from pywats_client.outcomes import Outcome
from pywats_client.queue.store import SUFFIX, DurableQueue, State
from pywats_client.service.uploader import (
    UploadResult,
    classify_response,
    parse_retry_after,
    uploader_for,
)
from tests.conftest import TOKEN
from tests.fakes import FakeClock, ScriptedUploader
from tests.station import wsjf_report
from tests.test_dispatcher import Stepped

TEN_YEARS = 315360000.0
NOW = 1_800_000_000.0


@pytest.mark.parametrize(("value", "limit", "seconds"), [
    ("120", 3600, 120),
    ("315360000", 3600, 3600),
    ("1e300", 3600, 3600),
    (formatdate(NOW + TEN_YEARS, usegmt=True), 3600, 3600),  # an HTTP-date in the far future
    (formatdate(NOW - 86400, usegmt=True), 3600, 0),  # ... or in the past: now
    ("-5", 3600, 0),
    ("315360000", None, TEN_YEARS),  # no limit given: what the server said
])
def test_parse_retry_after_caps_what_the_server_asks(value: str, limit: float | None,
                                                     seconds: float) -> None:
    assert parse_retry_after(value, NOW, limit) == pytest.approx(seconds, abs=1)


def test_the_answer_says_both_what_was_asked_and_what_is_done() -> None:
    result = classify_response(429, b"slow down", "315360000", None, url="https://w/api",
                               what="report 1", submit=True, now=NOW, max_wait=3600)
    assert result.outcome is Outcome.TRANSIENT and result.retry_after == 3600
    assert "315360000 s" in result.message and "3600 s" in result.message
    assert "queue.retry_max_delay" in result.message


def test_the_uploader_caps_a_real_servers_retry_after(tmp_path: Path) -> None:
    faults = Faults(rate_limit_rate=1.0, retry_after=TEN_YEARS)
    with Receiver(tmp_path / "store", token=TOKEN, faults=faults) as rx:
        settings = Settings(server_url=rx.url, api_token=TOKEN,
                            queue=QueueSettings(retry_max_delay=900))
        client = uploader_for(settings)
        try:
            body = json.dumps(wsjf_report(1)).encode()
            result = client.upload(body, "r1")
        finally:
            client.close()
    assert result.status == 429 and result.retry_after == 900


def test_a_retry_waits_at_most_retry_max_delay_and_says_so(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    queue = DurableQueue(tmp_path / "queue", QueueSettings(retry_max_delay=3600), clock=clock)
    queue.ensure_layout()
    rid = str(uuid.uuid4())
    queue.put(b'{"id": "x"}', report_id=rid)
    claimed = queue.claim(rid)
    assert claimed is not None
    with caplog.at_level(logging.WARNING):
        assert queue.retry(claimed, "HTTP 429", retry_after=TEN_YEARS) is State.PENDING
    next_attempt = (queue.folder(State.PENDING) / f"{rid}{SUFFIX}").stat().st_mtime
    assert next_attempt - clock.time() <= 3600 * 1.2 + 1  # not 2036
    assert "queue.retry_max_delay" in caplog.text and "315360000" in caplog.text


def test_a_hold_lasts_at_most_retry_max_delay_and_says_so(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ten_years = UploadResult(Outcome.TRANSIENT, 429, "HTTP 429", TEN_YEARS)
    stepped = Stepped(tmp_path, ScriptedUploader(uploads=[ten_years, ten_years]), reports=2,
                      retry_max_delay=600)
    try:
        with caplog.at_level(logging.WARNING):
            wait = stepped.settle()
        assert 0 < wait <= 600
        assert "queue.retry_max_delay" in caplog.text and "315360000" in caplog.text
        stepped.advance(600)
        assert len(stepped.server.sent) >= 2  # the hold ended: sending again
    finally:
        stepped.close()

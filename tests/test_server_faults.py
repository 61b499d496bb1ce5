"""A sick server costs time, never reports: errors, resets, 429s, timeouts after storing, a
server that vanishes and comes back. And the client does not hammer it while it is sick."""

from __future__ import annotations

import dataclasses
import os
import time
import uuid
from pathlib import Path

import pytest

from pywats_client.http.receiver import Faults, Receiver
from pywats_client.queue.store import read_header
from tests.conftest import TOKEN
from tests.station import Station, wait_until, wsjf_report

pytestmark = pytest.mark.slow

REPORTS = 300
POST = "POST /api/Report/WSJF"
PROBE = "GET /api/App/Version"


def stored_in(store: Path) -> set[str]:
    """Report ids a receiver stored in `store`, before and after a restart."""
    return {p.stem for p in store.glob("*.json")}


def all_due(queue: Path) -> bool:
    """Whether every report in pending/ is due: its mtime, the next attempt, has passed."""
    now = time.time()
    try:
        return all(entry.stat().st_mtime <= now for entry in os.scandir(queue / "pending"))
    except FileNotFoundError:  # moved while we looked: look again
        return False


def test_everything_arrives_through_a_misbehaving_server_without_a_hot_loop(
        tmp_path: Path) -> None:
    faults = Faults(latency_ms=5, error_rate=0.20, reset_rate=0.05, rate_limit_rate=0.05,
                    retry_after=1, timeout_after_store_rate=0.02, hang_seconds=3)
    receiver = Receiver(tmp_path / "store", token=TOKEN, faults=faults, seed=11).start()
    port = int(receiver.url.rsplit(":", 1)[1])
    station = Station(tmp_path / "station", receiver.url, TOKEN, retry_delay=1,
                      retry_max_delay=4, probe_interval=0.5)
    station.config["read_timeout"] = 1
    station.write_config()
    ids = [str(uuid.uuid4()) for _ in range(REPORTS)]
    try:
        station.start()
        for n, rid in enumerate(ids[: REPORTS // 2]):
            station.drop(f"a{n:04d}.json", wsjf_report(n, report_id=rid))
        wait_until(lambda: len(receiver.stored_ids()) >= REPORTS // 4, 120, "some uploads")

        # The server disappears (connection refused) while files keep coming.
        receiver.stop()
        for n, rid in enumerate(ids[REPORTS // 2:], start=REPORTS // 2):
            station.drop(f"b{n:04d}.json", wsjf_report(n, report_id=rid))
        wait_until(lambda: station.service_status().get("server") == "offline", 60,
                   "the service to notice")
        pending_while_gone = len(station.queue_files("pending"))
        # It stays away until every file dropped meanwhile is queued and every waiting report
        # has come due, so a service that sent while offline would have reports to send.
        wait_until(lambda: len(station.done_files()) == REPORTS and all_due(station.queue),
                   60, "every file queued and every report due while the server is gone")
        assert len(station.queue_files("pending")) >= pending_while_gone
        for name in station.queue_files("pending")[:20]:
            assert read_header(station.queue / "pending" / name).attempts <= 8

        # It answers on the same address again, but resets every connection at first: still
        # an outage to the client, and one that shows what the client sends. Two probes
        # reaching it end the outage; nothing but probes may have come.
        before = receiver.request_count()
        receiver = Receiver(tmp_path / "store", token=TOKEN, seed=12, port=port,
                            faults=dataclasses.replace(faults, down=True)).start()
        wait_until(lambda: receiver.request_count(PROBE) >= 2, 30, "two probes")
        assert receiver.request_count(POST) == 0, "reports sent to a server that is down"

        # And it comes back.
        receiver.faults = faults
        wait_until(lambda: set(ids) <= stored_in(tmp_path / "store"), 180, "every report")
        assert stored_in(tmp_path / "store") == set(ids)
        # No hot loop: every report needs one POST, plus retries for the injected faults
        # (about a third of the attempts fail) — far fewer than a loop would send.
        total = before + receiver.request_count()
        print(f"\nserver faults: {REPORTS} reports, {total} requests in all")
        assert total < REPORTS * 3
        assert station.queue_files("failed") == []
        assert station.stop() == 0
    finally:
        station.kill()
        receiver.stop()


def test_a_server_answering_only_429_is_asked_again_only_after_retry_after(
        tmp_path: Path) -> None:
    # The client's own backoff starts at 1 s; the server asks for 3 s, which the longest
    # retry delay (4 s: a server's Retry-After is capped by it) allows.
    faults = Faults(rate_limit_rate=1.0, retry_after=3)
    with Receiver(tmp_path / "store", token=TOKEN, faults=faults) as receiver:
        station = Station(tmp_path / "station", receiver.url, TOKEN, retry_delay=1,
                          retry_max_delay=4)
        try:
            station.start()
            for n in range(5):
                station.drop(f"r{n}.json", wsjf_report(n, report_id=str(uuid.uuid4())))
            wait_until(lambda: receiver.request_count(POST) >= 5, 30, "the first attempts")
            start, began = receiver.request_count(POST), time.monotonic()
            # Ten more POSTs, two rounds of the five reports, end the window. Asked again only
            # after each 3-second Retry-After, they take two periods (about 6 s); a client
            # retrying on its own backoff (1 s, then 2 s) would send them in about 3.
            wait_until(lambda: receiver.request_count(POST) >= start + 10, 30,
                       "two more rounds of attempts")
            took = time.monotonic() - began
            assert took >= 4.5, f"10 POSTs in {took:.1f} s despite Retry-After: 3"
            receiver.faults.rate_limit_rate = 0.0
            assert receiver.wait_for_reports(5, timeout=30)
        finally:
            station.kill()

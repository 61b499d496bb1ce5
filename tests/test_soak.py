"""Kill -9 soak: 2,000 files dropped over time while the service is SIGKILLed and restarted
again and again and the server misbehaves. Nothing may be lost, duplicated under a new id, or
post-processed twice."""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pywats_client.http.receiver import Faults, Receiver
from pywats_client.report.model import report_id_for
from tests.conftest import TOKEN
from tests.station import Station, wait_until, wsjf_report

pytestmark = pytest.mark.slow

FILES = 2000
KILLS = 20
BACKLOG = 200  # files waiting in the watch folder before more are dropped


def expected_id(data: bytes, report: dict[str, object]) -> str:
    explicit = report.get("id")
    if isinstance(explicit, str):
        return explicit
    return report_id_for("WATSStandardJsonConverter", hashlib.sha256(data).hexdigest(), 0)


def test_kill_9_soak_loses_nothing(tmp_path: Path) -> None:
    rng = random.Random(20261121)
    faults = Faults(latency_ms=2, error_rate=0.10, reset_rate=0.03, rate_limit_rate=0.02,
                    retry_after=1, timeout_after_store_rate=0.02, hang_seconds=3)
    with Receiver(tmp_path / "store", token=TOKEN, faults=faults, seed=7) as receiver:
        station = Station(tmp_path / "station", receiver.url, TOKEN, settle_time=0.1,
                          retry_delay=1, retry_max_delay=2, probe_interval=0.3)
        station.config["read_timeout"] = 1
        station.config["logging"] = {"level": "INFO"}
        station.write_config()
        expected: dict[str, str] = {}  # file name -> report id
        halt = threading.Event()  # the test failed: stop dropping

        def drop_all() -> None:
            for n in range(FILES):
                if halt.is_set():
                    return
                # half the files carry their own id, half get one derived from their content
                report = wsjf_report(n, report_id=str(uuid.uuid4()) if n % 2 else None)
                data = json.dumps(report).encode()
                name = f"unit-{n:05d}.json"
                expected[name] = expected_id(data, report)
                station.drop(name, data)
                if n % 50 == 49:
                    # Files arrive over time, not in one burst: the next ones when the
                    # service, killed or not, has taken most of those before.
                    wait_until(lambda: halt.is_set() or len(station.watch_files()) <= BACKLOG,
                               120, "the service to take the files dropped so far")

        def progress() -> int:
            return len(station.done_files()) + len(receiver.stored_ids())

        # The plug is pulled at random moments of the work: when this much of it (files
        # taken, reports stored: 2 * FILES in all) is done.
        kill_points = sorted(rng.sample(range(1, 2 * FILES), KILLS))
        station.start()
        kills = 0
        with ThreadPoolExecutor(1, thread_name_prefix="dropper") as dropper:
            dropping = dropper.submit(drop_all)
            try:
                for point in kill_points:
                    wait_until(lambda point=point: progress() >= point, 120,
                               f"{point} steps of progress")
                    station.kill()
                    kills += 1
                    station.start()
                dropping.result(timeout=120)
                wanted = set(expected.values())
                wait_until(lambda: wanted <= receiver.stored_ids(), 300,
                           "every report at the receiver")
                wait_until(lambda: len(station.done_files()) == FILES, 60,
                           "every source in done/")
                wait_until(station.queue_idle, 60, "an idle queue")
                assert station.stop() == 0
            finally:
                halt.set()
                station.kill()

        stored = receiver.stored_ids()
        posts = receiver.posts_by_id()
        duplicates = sum(n - 1 for n in posts.values() if n > 1)
        print(f"\nsoak: {FILES} files, {kills} SIGKILLs, {len(stored)} reports stored, "
              f"{duplicates} duplicate posts of the same id, "
              f"{receiver.request_count()} requests in all, "
              f"failed {len(station.queue_files('failed'))}, "
              f"corrupt {len(station.queue_files('corrupt'))}")
        missing = set(expected.values()) - stored
        extra = stored - set(expected.values())
        assert not missing and not extra, (
            f"missing {sorted(missing)[:5]}, extra ids {sorted(extra)[:5]}")
        assert len(set(expected.values())) == FILES
        done = station.done_files()
        assert done == sorted(expected), (
            f"post-processed twice or not at all: {sorted(set(done) ^ set(expected))[:10]}")
        assert station.watch_files() == []
        assert not (station.watch / "error").exists()
        assert station.queue_files("failed") == station.queue_files("corrupt") == []
        assert station.queue_files("pending") == station.queue_files("processing") == []
        for name in rng.sample(sorted(expected), 20):
            report = json.loads((receiver.store / f"{expected[name]}.json").read_text())
            assert report["sn"] == f"SN{int(name[5:10]):06d}"
        assert os.listdir(station.queue / "tmp") == []

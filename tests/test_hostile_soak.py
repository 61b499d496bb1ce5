"""A bad day on the line, all at once: the attacks and faults of one review combined on one
running service (a real subprocess) against the bundled receiver.

A watch-folder writer points `error/` at the instance's plugin folder and drops a script, and
links a report from outside the folder; the control API is flooded with idle connections; the
server answers 429 with a Retry-After of ten years, then turns slow while the operator stops
and restarts the service; a tester reuses a report id; the queue folder turns immutable for a
while. At the end every report is on the server exactly once under its id, or in `error/`
with a reason, and nothing outside the instance's folders and the watch folder was written.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pywats_client.http.receiver import Faults, Receiver
from tests.conftest import TOKEN
from tests.station import Station, free_port, wait_until, wsjf_report

pytestmark = pytest.mark.slow

REPORTS = 90  # ordinary reports, dropped in three waves


def files_under(root: Path, *, skip: tuple[Path, ...]) -> dict[str, tuple[int, int]]:
    """Every file below `root` with its size and mtime, but those below `skip`."""
    found = {}
    for folder, dirs, names in os.walk(root):
        here = Path(folder)
        dirs[:] = [d for d in dirs if not any((here / d) == s or s in (here / d).parents
                                               for s in skip)]
        for name in names:
            path = here / name
            if path in skip:
                continue
            st = path.lstat()
            found[str(path)] = (st.st_size, st.st_mtime_ns)
    return found


@contextmanager
def immutable(folder: Path) -> Iterator[bool]:
    """`folder` made immutable (chattr +i) while the block runs; False where that cannot be
    done here (not root, or a filesystem without the flag)."""
    if os.geteuid() != 0 or shutil.which("chattr") is None:
        yield False
        return
    done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, check=False)
    try:
        yield done.returncode == 0
    finally:
        if done.returncode == 0:
            subprocess.run(["chattr", "-i", str(folder)], check=True)


def flood(port: int, count: int) -> list[socket.socket]:
    """`count` idle connections to the control API, held open."""
    held = []
    for _ in range(count):
        try:
            held.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        except OSError:
            break  # refused: the server is at its limit, which is allowed
    return held


def test_everything_arrives_once_or_is_set_aside_with_a_reason(tmp_path: Path) -> None:
    faults = Faults()
    outside = tmp_path / "outside"
    outside.mkdir()
    with Receiver(tmp_path / "store", token=TOKEN, faults=faults) as receiver:
        station = Station(tmp_path / "station", receiver.url, TOKEN, retry_delay=1,
                          retry_max_delay=3, probe_interval=0.5, rescan_interval=2)
        port = free_port()
        station.config["api"] = {"enabled": True, "port": port}
        station.write_config()
        plugins = station.instance / "converters"
        plugins.mkdir(mode=0o700, exist_ok=True)
        # The attacker's error/ points at the plugin folder; a script waits to be "moved" there.
        (station.watch / "error").symlink_to(plugins, target_is_directory=True)
        station.drop("evil.py", b"import os\nos.system('touch /tmp/pwned')\n")
        # A report from outside the watch folder, linked in.
        stolen_id = str(uuid.uuid4())
        (outside / "secret.json").write_text(json.dumps(wsjf_report(999, report_id=stolen_id)))
        (station.watch / "linked.json").symlink_to(outside / "secret.json")
        watched_before = files_under(tmp_path, skip=(station.data_dir, station.watch,
                                                      tmp_path / "store", station.log_path))
        expected: set[str] = set()

        def drop_wave(first: int, count: int) -> None:
            for n in range(first, first + count):
                report_id = str(uuid.uuid4())
                expected.add(report_id)
                station.drop(f"r{n}.json", wsjf_report(n, report_id=report_id))

        held: list[socket.socket] = []
        frozen = False
        try:
            station.start()
            held = flood(port, 60)  # more than the API serves at once, held open all along
            assert len(held) > 8, f"only {len(held)} connections: no flood"  # MAX_CONNECTIONS
            # Wave 1 meets a server that answers half the uploads with "come back in 10 years".
            faults.rate_limit_rate, faults.retry_after = 0.5, 315_360_000
            drop_wave(0, REPORTS // 3)
            wait_until(lambda: receiver.request_count("POST /api/Report/WSJF") >= 20, 60,
                       "uploads meeting the 429s")
            faults.rate_limit_rate = 0.0
            # A tester reuses the id of a report already sent, with other content.
            first = next(iter(expected))
            wait_until(lambda: first in receiver.stored_ids(), 60, "the first report stored")
            clash = wsjf_report(500, report_id=first)
            station.drop("reused-id.json", clash)
            # Wave 2 while the queue folder is immutable for a while.
            with immutable(station.queue / "pending") as frozen_now:
                frozen = frozen_now
                drop_wave(100, REPORTS // 3)
                if frozen:
                    wait_until(lambda: station.service_status().get("station_fault"), 30,
                               "the station fault to show")
                    assert station.proc is not None and station.proc.poll() is None
            # Wave 3 meets a slow server; the operator stops and restarts the service meanwhile.
            faults.latency_ms = 1500
            drop_wave(200, REPORTS // 3)
            wait_until(lambda: station.queue_files("processing"), 60, "uploads in flight")
            stopped = station.cli("stop", "--timeout", "60", timeout=120)
            assert stopped.returncode == 0, stopped.stdout + stopped.stderr
            assert station.proc is not None
            assert station.proc.poll() is not None, "stop returned while the process lived"
            faults.latency_ms = 0
            # The operator repairs error/ before the restart.
            (station.watch / "error").unlink()
            station.start()
            wait_until(lambda: expected <= receiver.stored_ids(), 180, "every report stored")
            wait_until(lambda: (station.watch / "error" / "evil.py").exists(), 60,
                       "the script in the real error folder")
            wait_until(lambda: (station.watch / "error" / "reused-id.json").exists(), 60,
                       "the reused id in the error folder")
            wait_until(station.queue_idle, 60, "an idle queue")
            assert station.stop() == 0
        finally:
            for sock in held:
                sock.close()
            station.kill()
        stored = receiver.stored_ids()
    # Every ordinary report once under its id; nothing else: not the linked one from outside,
    # not the second report under a reused id.
    assert stored == expected, (len(stored), len(expected))
    assert stolen_id not in stored
    assert (station.watch / "linked.json").is_symlink()  # left where it was
    note = (station.watch / "error" / "reused-id.json.error.txt").read_text()
    assert first in note and "already used" in note
    assert not list(plugins.iterdir()), "something reached the plugin folder"
    assert not set(station.queue_files("completed")) & set(station.queue_files("pending"))
    assert station.queue_files("failed") == []
    after = files_under(tmp_path, skip=(station.data_dir, station.watch, tmp_path / "store",
                                        station.log_path))
    assert after == watched_before, "a file outside the instance and watch folders changed"
    print(f"\nhostile soak: {len(stored)} reports stored once, 2 files in error/ "
          f"(a script, a reused id), 1 link left alone, {len(held)} idle API connections, "
          f"{receiver.request_count('POST /api/Report/WSJF')} upload requests, 1 stop/restart, "
          f"queue folder immutable for a while: {'yes' if frozen else 'not here (needs root)'}")

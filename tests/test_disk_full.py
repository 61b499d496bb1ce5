"""Disk full, for real: the queue on a tiny tmpfs that the test fills up and then frees."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pywats_client.http.receiver import Receiver
from tests.conftest import TOKEN
from tests.station import Station, wait_until, wsjf_report

pytestmark = pytest.mark.slow


@contextlib.contextmanager
def tiny_filesystem(path: Path, size: str = "2m") -> Iterator[None]:
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                              str(path)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root); the injected-ENOSPC test "
                    "tests/test_queue.py::test_disk_full_leaves_nothing_in_the_queue covers "
                    f"the queue ({mounted.stderr.strip()})")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(folder: Path) -> Path:
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    # tmpfs may still take a few small writes in partly used pages: use those up too
    n = 0
    with contextlib.suppress(OSError):
        while True:
            (folder / f"crumb{n}").write_bytes(b"x" * 512)
            n += 1
    return filler


def test_a_full_disk_keeps_the_source_shows_the_state_and_resumes(tmp_path: Path) -> None:
    with Receiver(tmp_path / "store", token=TOKEN) as receiver:
        station = Station(tmp_path / "station", receiver.url, TOKEN)
        with tiny_filesystem(station.queue):
            try:
                station.start()
                station.drop("first.json", wsjf_report(1, report_id=str(uuid.uuid4())))
                assert receiver.wait_for_reports(1, timeout=30), station.output()
                filler = fill(station.queue)

                rid = str(uuid.uuid4())
                station.drop("while-full.json", wsjf_report(2, report_id=rid))
                wait_until(lambda: station.service_status().get("disk_full"), 30,
                           "the disk-full state")
                assert station.watch_files() == ["while-full.json"]  # the source stays
                assert station.queue_files("tmp") == []  # no partial file
                assert station.queue_files("pending") == []
                status = station.cli("status", "--json", "--no-probe")
                assert status.returncode == 7 and json.loads(status.stdout)["disk_full"]

                filler.unlink()  # space comes back
                for crumb in station.queue.glob("crumb*"):
                    crumb.unlink()
                assert receiver.wait_for_reports(2, timeout=60), station.output()
                assert rid in receiver.stored_ids()
                wait_until(lambda: station.done_files() == ["first.json", "while-full.json"],
                           30, "the source in done/")
                wait_until(lambda: not station.service_status().get("disk_full"), 30,
                           "the disk-full state to clear")
                assert station.stop() == 0
            finally:
                station.kill()

"""A watch folder on a share that is unmounted and mounted again: shown as unavailable, its
files neither lost nor sent twice — also across a restart while it is gone."""

from __future__ import annotations

import json
import subprocess
import threading
import uuid
from pathlib import Path

import pytest

from pywats_client.http.receiver import Receiver
from tests.station import Station, wait_until, wsjf_report

pytestmark = pytest.mark.slow

TOKEN = "dXNlcjpzZWNyZXQ="


def bind(share: Path, mount_point: Path) -> None:
    result = subprocess.run(["mount", "--bind", str(share), str(mount_point)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot bind-mount here (needs root): {result.stderr.strip()}")


def unbind(mount_point: Path) -> None:
    subprocess.run(["umount", str(mount_point)], check=True)


def test_an_unmounted_share_loses_nothing_and_sends_nothing_twice(tmp_path: Path) -> None:
    share, mount_point = tmp_path / "share", tmp_path / "station" / "watch"
    share.mkdir()
    mount_point.mkdir(parents=True)
    bind(share, mount_point)
    with Receiver(tmp_path / "store", token=TOKEN) as receiver:
        station = Station(tmp_path / "station", receiver.url, TOKEN, rescan_interval=0.5)
        station.config["queue"]["watch_folders"] = [
            {"path": str(mount_point), "post_action": "none"}]
        station.write_config()
        try:
            station.start()
            ids = [str(uuid.uuid4()) for _ in range(3)]
            for n, rid in enumerate(ids):
                station.drop(f"r{n}.json", wsjf_report(n, report_id=rid))
            assert receiver.wait_for_reports(3, timeout=30), station.output()

            unbind(mount_point)  # the share goes away; an empty mount point stays
            wait_until(lambda: str(mount_point) in
                       station.service_status().get("folders_unavailable", []), 30,
                       "the folder to show as unavailable")
            status = station.cli("status", "--json", "--no-probe")
            assert status.returncode == 7
            assert json.loads(status.stdout)["folders_unavailable"] == [str(mount_point)]

            assert station.stop() == 0  # a restart while the share is gone...
            station.start()
            bind(share, mount_point)  # ...and it comes back
            later = threading.Event()
            wait_until(lambda: not station.service_status().get("folders_unavailable"), 30,
                       "the folder to be available again")
            later.wait(1.5)  # a few rescans of the returned share
            assert receiver.posts_by_id() == {rid: 1 for rid in ids}, "a file was sent again"

            fresh = str(uuid.uuid4())
            station.drop("new.json", wsjf_report(9, report_id=fresh))
            assert receiver.wait_for_reports(4, timeout=30)
            assert receiver.posts_by_id()[fresh] == 1
            assert sorted(p.name for p in share.iterdir()) == [
                "new.json", "r0.json", "r1.json", "r2.json"]
            assert station.stop() == 0
        finally:
            station.kill()
            subprocess.run(["umount", str(mount_point)], capture_output=True)

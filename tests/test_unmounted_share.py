"""A watch folder on a share that is unmounted and mounted again: shown as unavailable, its
files neither lost nor sent twice — also across a restart while it is gone."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from pywats_client.http.receiver import Receiver
from tests.conftest import TOKEN
from tests.station import Station, wait_until, wsjf_report

pytestmark = pytest.mark.slow


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
            wait_until(lambda: not station.service_status().get("folders_unavailable"), 30,
                       "the folder to be available again")
            # New files mark rescans of the returned share: the service watches the mount
            # point it found empty at start, so only a rescan finds a file on the share, and
            # each rescan that finds one looks at r0..r2 again too. Two of them, one by one.
            fresh = [str(uuid.uuid4()) for _ in range(2)]
            for n, rid in enumerate(fresh):
                station.drop(f"new{n}.json", wsjf_report(9 + n, report_id=rid))
                assert receiver.wait_for_reports(len(ids) + n + 1, timeout=30)
            # Whatever a rescan took was queued before the new file it found: wait for it too.
            wait_until(station.queue_idle, 30, "an idle queue")
            assert receiver.posts_by_id() == {rid: 1 for rid in [*ids, *fresh]}, (
                "a file was sent again")
            assert sorted(p.name for p in share.iterdir()) == [
                "new0.json", "new1.json", "r0.json", "r1.json", "r2.json"]
            assert station.stop() == 0
        finally:
            station.kill()
            subprocess.run(["umount", str(mount_point)], capture_output=True)

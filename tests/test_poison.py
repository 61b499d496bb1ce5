"""A file that kills the process while it is being converted is set aside after
converters.max_crashes deaths, with the service restarted after each death the way systemd's
Restart=on-failure does, and the files beside it still reach the server."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest

from pywats_client.http.receiver import Receiver
from tests.conftest import TOKEN
from tests.plugins import bound_folder, deaths, install_plugin
from tests.station import Station, wait_until, wsjf_report

pytestmark = pytest.mark.slow

MAX_STARTS = 6  # the test's own cap on restarts: a service that never gets over it fails


@pytest.mark.parametrize("max_crashes", [2, 1])
def test_a_file_that_kills_the_service_is_set_aside_and_the_others_go_on(
    tmp_path: Path, receiver: Receiver, max_crashes: int
) -> None:
    station = Station(tmp_path / "station", receiver.url, TOKEN)
    marks = tmp_path / "marks"
    install_plugin(station.instance, marks)
    station.config["queue"]["watch_folders"] = [bound_folder(station.watch, marks)]
    if max_crashes != 2:
        station.config["converters"] = {"max_crashes": max_crashes}
    station.write_config()
    good = [str(uuid.uuid4()) for _ in range(3)]
    for n, rid in enumerate(good):
        station.drop(f"good-{n}.json", wsjf_report(n, report_id=rid))
    station.drop("poison.json", wsjf_report(99, report_id=str(uuid.uuid4())))
    note = station.watch / "error" / "poison.json.error.txt"

    def finished() -> bool:
        return note.exists() and receiver.stored_ids() == set(good)

    starts = 0
    proc: subprocess.Popen[bytes] | None = None
    with open(station.log_path, "ab") as output:
        while starts < MAX_STARTS:
            starts += 1  # what systemd does after each death (Restart=on-failure)
            proc = subprocess.Popen(
                [sys.executable, "-m", "pywats_client", "--data-dir", str(station.data_dir),
                 "start"], env=station.env(), stdout=output, stderr=subprocess.STDOUT)
            wait_until(partial(_ended_or, proc, finished), 60,
                       "the service to die or to be done")
            if proc.poll() is None:
                break
            assert proc.returncode == 1, station.output()  # the plugin's os._exit(1)
    assert proc is not None
    try:
        assert finished(), station.output()
        assert starts - 1 <= 3, f"{starts - 1} restarts"
        # Each death is counted; a death amid other conversions is pinned on none of them, so
        # the file is set aside after max_crashes deaths of which the last was its own alone.
        died = len(deaths(marks))
        assert deaths(marks) == ["poison.json"] * died and max_crashes <= died <= max_crashes + 1
        text = note.read_text()
        assert f"the service died {died} times while converting this file" in text
        assert "see the log" in text
        assert sorted(p.name for p in (station.watch / "done").iterdir()) == [
            "good-0.json", "good-1.json", "good-2.json"]
        status = wait_until(lambda: station.service_status().get("poison_files") == 1
                            and station.service_status(), 10, "the count in status.json")
        assert any(f["kind"] == "poison_file" for f in status["recent_failures"])
        assert json.loads(station.cli("status", "--json", "--no-probe").stdout)[
            "poison_files"] == 1
        # Set aside for good: the next start does not try it again.
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        station.start()
        wait_until(lambda: station.service_status().get("state") == "running", 10, "running")
        assert len(deaths(marks)) == died
        assert station.stop() == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
        station.kill()


def _ended_or(proc: subprocess.Popen[bytes], done: Callable[[], bool]) -> bool:
    return proc.poll() is not None or done()

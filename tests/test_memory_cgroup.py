"""The service inside a 128 MiB memory cgroup, as the shipped unit runs it (MemoryMax=128M),
restarted the way systemd's Restart=on-failure would: a 30 MB WSJF file among ordinary ones
never gets it killed. The cgroup is a child of the test's own memory cgroup (v1 or v2); the
test skips, saying why, where neither can be written (it needs root)."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pywats_client.http.receiver import Receiver
from tests.bigfiles import big_wsjf, samples_present
from tests.station import Station, wait_until, wsjf_report

TOKEN = base64.b64encode(b"station:secret").decode()
LIMIT = 128 * 2**20  # the unit's MemoryMax=128M
BIG = 30 * 2**20

pytestmark = pytest.mark.skipif(not samples_present(), reason="../shared/samples is absent")


class MemoryCgroup:
    """A memory cgroup of our own, below the one this process is in."""

    def __init__(self, path: Path, version: int) -> None:
        self.path = path
        self.version = version

    def limit(self, size: int) -> None:
        if self.version == 2:
            (self.path / "memory.max").write_text(str(size))
            (self.path / "memory.swap.max").write_text("0")
        else:
            (self.path / "memory.limit_in_bytes").write_text(str(size))
            memsw = self.path / "memory.memsw.limit_in_bytes"
            if memsw.exists():  # no swapping around the limit either
                memsw.write_text(str(size))

    def read_limit(self) -> int:
        name = "memory.max" if self.version == 2 else "memory.limit_in_bytes"
        return int((self.path / name).read_text())

    def members(self) -> set[int]:
        return {int(pid) for pid in (self.path / "cgroup.procs").read_text().split()}

    def ooms(self) -> int:
        """OOM kills in this cgroup so far (v2 memory.events, v1 memory.oom_control), or -1
        where the kernel does not count them."""
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        for line in (self.path / name).read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return -1

    def enter(self) -> None:
        """Run in the child before exec: the service starts inside the cgroup."""
        with open(self.path / "cgroup.procs", "w") as fh:
            fh.write(str(os.getpid()))


def _own(version: int) -> Path | None:
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, where = line.split(":", 2)
        if version == 2 and controllers == "":
            return Path("/sys/fs/cgroup") / where.lstrip("/")
        if version == 1 and "memory" in controllers.split(","):
            return Path("/sys/fs/cgroup/memory") / where.lstrip("/")
    return None


def _delegates_memory(parent: Path) -> bool:
    try:
        return "memory" in (parent / "cgroup.subtree_control").read_text().split()
    except OSError:
        return False


@pytest.fixture
def cgroup() -> Iterator[MemoryCgroup]:
    problems = []
    made: MemoryCgroup | None = None
    for version in (2, 1):
        parent = _own(version)
        if parent is None or not parent.is_dir():
            problems.append(f"no cgroup v{version} memory hierarchy")
            continue
        if version == 2 and not _delegates_memory(parent):
            problems.append(f"cgroup v2 at {parent} does not delegate the memory controller")
            continue
        path = parent / f"pywats-test-{uuid.uuid4().hex[:8]}"
        try:
            path.mkdir()
        except OSError as exc:
            problems.append(f"cannot create a cgroup v{version} under {parent}: {exc}")
            continue
        made = MemoryCgroup(path, version)
        break
    if made is None:
        pytest.skip("no writable memory cgroup (needs root): " + "; ".join(problems))
    try:
        made.limit(LIMIT)
        yield made
    finally:
        for pid in made.members():
            os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not made.members(), 30, "the cgroup to empty")
        made.path.rmdir()


class Supervised:
    """The service as systemd runs it: in the cgroup, started again whenever it dies of a
    signal or a non-zero exit (Restart=on-failure), counting the restarts."""

    def __init__(self, station: Station, cgroup: MemoryCgroup, restart: bool = True) -> None:
        self.station = station
        self.cgroup = cgroup
        self.restart = restart
        self.proc: subprocess.Popen[bytes] | None = None
        self.deaths: list[int] = []
        self._counted = 0

    def start(self) -> None:
        with open(self.station.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pywats_client", "--data-dir",
                 str(self.station.data_dir), "start"],
                env=self.station.env(), stdout=log, stderr=subprocess.STDOUT,
                preexec_fn=self.cgroup.enter)

    def supervise(self) -> None:
        """One look: a dead service is recorded and started again."""
        assert self.proc is not None
        code = self.proc.poll()
        if code is not None and (not self.deaths or self.proc.pid != self._counted):
            self._counted = self.proc.pid
            self.deaths.append(code)
            if self.restart and len(self.deaths) < 10:
                self.start()

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)


def _station(tmp_path: Path, rx: Receiver, **converters: object) -> Station:
    station = Station(tmp_path, rx.url, TOKEN)
    station.config["logging"] = {"level": "INFO"}
    station.config["converters"] = converters
    station.write_config()
    return station


def _run(station: Station, cgroup: MemoryCgroup, until: Callable[[Supervised], bool],
         seconds: float, *, restart: bool = True) -> Supervised:
    service = Supervised(station, cgroup, restart)
    service.start()
    proc = service.proc
    assert proc is not None
    wait_until(lambda: proc.pid in cgroup.members() or proc.poll() is not None, 10,
               "the service to be in the cgroup")

    def done() -> bool:
        service.supervise()
        return until(service)

    wait_until(done, seconds, "the station to finish", tick=0.1)
    return service


def test_a_big_file_does_not_crash_loop_a_station_in_128_mib(
        tmp_path: Path, cgroup: MemoryCgroup) -> None:
    assert cgroup.read_limit() == LIMIT
    with Receiver(tmp_path / "store", token=TOKEN).start() as rx:
        station = _station(tmp_path, rx)  # the defaults: converters.max_memory_mb 100
        old = time.time() - 3600
        big = big_wsjf(station.watch / "long-run.json", BIG)
        small = [station.drop(f"unit-{n}.json", wsjf_report(n)) for n in range(3)]
        for path in (big, *small):
            os.utime(path, (old, old))
        note = station.watch / "error" / "long-run.json.error.txt"

        def finished(service: Supervised) -> bool:
            stored = len(rx.stored_ids())
            return (stored >= 3 and (note.exists() or stored == 4)) or len(service.deaths) > 3

        service = _run(station, cgroup, finished, 180)
        code = service.stop()
        assert service.deaths == [], (
            f"the service died {len(service.deaths)} time(s) (exit codes {service.deaths}; "
            f"-9 is the OOM killer):\n{station.output()}")
        assert code == 0, station.output()
        assert cgroup.ooms() in (0, -1)
        assert len(rx.stored_ids()) >= 3, station.output()
        if len(rx.stored_ids()) == 3:  # set aside, with the reason and what to do
            text = note.read_text()
            assert "converters.max_memory_mb" in text, text
            assert "This station takes WATSStandardJsonConverter files up to" in text, text
            assert (station.watch / "error" / "long-run.json").exists()


def test_without_the_budget_the_same_file_is_killed_in_128_mib(
        tmp_path: Path, cgroup: MemoryCgroup) -> None:
    """The control: the cgroup really holds the service to 128 MiB, so the test above does
    not pass by luck: with a budget that lets a 60 MB file through, the kernel kills it."""
    with Receiver(tmp_path / "store", token=TOKEN).start() as rx:
        station = _station(tmp_path, rx, max_memory_mb=4096)
        big = big_wsjf(station.watch / "long-run.json", 2 * BIG)
        old = time.time() - 3600
        os.utime(big, (old, old))
        service = _run(station, cgroup, lambda s: bool(s.deaths) or bool(rx.stored_ids()),
                       120, restart=False)
        service.stop()
        assert service.deaths == [-signal.SIGKILL], (service.deaths, station.output())
        assert not rx.stored_ids()
        assert cgroup.ooms() != 0

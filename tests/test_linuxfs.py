"""What Linux tells about writers: the inotify events the watcher trusts (renamed in from this
folder or another, closed after writing), lost events, lost folders, and the read lease that
asks whether a file is still open for writing without putting the service at risk."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pywats_client.service import linuxfs
from pywats_client.service.linuxfs import FolderEvents, Hint
from tests.station import REPO, wait_until

pytestmark = pytest.mark.skipif(not linuxfs.available(), reason="inotify is Linux only")

TIMEOUT = 10.0


class Recorder:
    """The events of one FolderEvents, as (file name, hint), and what else it reported."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Hint]] = []
        self.overflows = 0
        self.lost: list[str] = []
        self.gate = threading.Event()
        self.gate.set()

    def on_event(self, path: str, hint: Hint) -> None:
        self.gate.wait()
        self.events.append((os.path.basename(path), hint))

    def on_overflow(self) -> None:
        self.overflows += 1

    def on_lost(self, folder: str) -> None:
        self.lost.append(folder)

    def of(self, name: str) -> list[Hint]:
        return [hint for n, hint in list(self.events) if n == name]


@pytest.fixture
def events(tmp_path: Path) -> Iterator[tuple[FolderEvents, Recorder, Path]]:
    recorder = Recorder()
    folder = tmp_path / "watch"
    folder.mkdir()
    reader = FolderEvents(recorder.on_event, recorder.on_overflow, recorder.on_lost)
    reader.add(str(folder))
    try:
        yield reader, recorder, folder
    finally:
        recorder.gate.set()
        reader.stop()
    assert not reader.is_alive()


def seen_all(recorder: Recorder, folder: Path) -> None:
    """Wait until everything done in `folder` so far has been reported (events keep order)."""
    marker = folder / "zz-marker"
    marker.write_bytes(b"")
    wait_until(lambda: Hint.CLOSED in recorder.of("zz-marker"), TIMEOUT, "the marker's close")
    marker.unlink()
    recorder.events.clear()


def test_a_move_from_another_folder_and_a_rename_within_are_both_renamed_in(
        events: tuple[FolderEvents, Recorder, Path], tmp_path: Path) -> None:
    _, recorder, folder = events
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "a.txt").write_bytes(b"a")
    (folder / ".b.tmp").write_bytes(b"b")
    seen_all(recorder, folder)

    subprocess.run(["mv", str(elsewhere / "a.txt"), str(folder)], check=True)
    os.rename(folder / ".b.tmp", folder / "b.txt")
    wait_until(lambda: recorder.of("a.txt") and recorder.of("b.txt"), TIMEOUT, "the renames")

    # One event each, nothing to pair: where the file was before does not matter.
    assert recorder.of("a.txt") == [Hint.RENAMED]
    assert recorder.of("b.txt") == [Hint.RENAMED]
    assert recorder.of(".b.tmp") == []


def test_what_a_writer_does_in_place(events: tuple[FolderEvents, Recorder, Path]) -> None:
    _, recorder, folder = events
    with open(folder / "uut.txt", "wb") as fh:
        fh.write(b"line\n")
        fh.flush()
    os.chmod(folder / "uut.txt", 0o600)
    (folder / ".d.tmp").write_bytes(b"d")
    os.rename(folder / ".d.tmp", folder / "d.txt")
    wait_until(lambda: recorder.of("d.txt"), TIMEOUT, "the rename")

    assert recorder.of("uut.txt") == [Hint.WRITING, Hint.WRITING, Hint.CLOSED, Hint.LOOK]
    assert recorder.of("d.txt") == [Hint.RENAMED]


def test_a_folder_that_is_removed_is_reported_lost(
        events: tuple[FolderEvents, Recorder, Path]) -> None:
    reader, recorder, folder = events
    assert reader.watching(str(folder))
    os.rmdir(folder)
    wait_until(lambda: recorder.lost == [str(folder)], TIMEOUT, "the lost folder")
    assert not reader.watching(str(folder))


def test_a_full_event_queue_is_reported(events: tuple[FolderEvents, Recorder, Path]) -> None:
    _, recorder, folder = events
    limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    if limit > 100_000:
        pytest.skip(f"fs.inotify.max_queued_events is {limit}: too many events to make here")
    recorder.gate.clear()  # the reader is stuck in its first callback: the kernel queue fills
    target = folder / "chatty"
    # Two events each (written, closed), twice what the queue holds: the reader may have taken
    # a buffer full before it got stuck.
    for _ in range(limit + 2048):
        with open(target, "ab") as fh:
            fh.write(b"x")
    recorder.gate.set()
    wait_until(lambda: recorder.overflows == 1, TIMEOUT, "the overflow to be reported")


# -- the read lease ------------------------------------------------------------------------------

_HOLD_THE_LEASE = """
import fcntl, os, signal, sys, threading
from pywats_client.service.linuxfs import read_lease
path, how = sys.argv[1], sys.argv[2]
fd = os.open(path, os.O_RDONLY)
def writer():
    with open(path, "ab") as fh:  # blocks until the lease is given back
        fh.write(b"w")
def breaking():
    with open("/proc/locks") as fh:
        return "BREAK" in fh.read()
def hold():
    thread = threading.Thread(target=writer)
    thread.start()
    pause = threading.Event()
    for _ in range(1000):
        if breaking():
            break
        pause.wait(0.01)
    return thread
if how == "service":
    with read_lease(fd) as granted:
        assert granted is True, granted
        thread = hold()
else:  # as it would be without choosing the signal: SIGIO, whose default ends the process
    fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
    thread = hold()
    fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
thread.join()
print("alive", os.path.getsize(path))
"""


@pytest.mark.parametrize("how", ["service", "default-signal"])
def test_a_writer_opening_the_file_during_the_lease_does_not_end_the_service(
        tmp_path: Path, how: str) -> None:
    path = tmp_path / "f.txt"
    path.write_bytes(b"12")
    result = subprocess.run([sys.executable, "-c", _HOLD_THE_LEASE, str(path), how],
                            capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    if how == "service":
        assert (result.returncode, result.stdout.strip()) == (0, "alive 3"), result.stderr
    else:  # the hazard the choice of signal avoids is real
        assert result.returncode == -signal.SIGIO, (result.returncode, result.stderr)


def test_leases_are_not_used_where_the_process_handles_their_signal(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_bytes(b"1")
    previous = signal.signal(signal.SIGURG, lambda signum, frame: None)
    try:
        with open(path, "ab"):
            assert linuxfs.open_for_writing(str(path)) is None
    finally:
        signal.signal(signal.SIGURG, previous)
    with open(path, "ab"):
        assert linuxfs.open_for_writing(str(path)) is True

"""One owner per instance, proved with real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pywats_client.errors import LockError
from pywats_client.queue.lock import InstanceLock, read_lock, unlock

HOLDER = """
import sys, time
from pathlib import Path
from pywats_client.queue.lock import InstanceLock
lock = InstanceLock(Path(sys.argv[1]))
lock.acquire("test-holder")
print("held", flush=True)
sys.stdin.read()  # hold until the test closes stdin or kills us
"""


@pytest.fixture
def holder(tmp_path: Path):
    path = tmp_path / "instance.lock"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    yield path, proc
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)
    for stream in (proc.stdin, proc.stdout):
        if stream:
            stream.close()


def test_a_second_owner_is_refused_and_told_who_holds_it(holder) -> None:
    path, proc = holder
    with pytest.raises(LockError, match=rf"pid {proc.pid} \(test-holder\)"):
        InstanceLock(path).acquire()
    info = read_lock(path)
    assert info is not None and info.pid == proc.pid and info.held


def test_a_killed_owner_leaves_no_obstacle(holder) -> None:
    path, proc = holder
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert path.exists()  # the file stays, the lock does not
    assert read_lock(path) is None
    with InstanceLock(path) as lock:
        assert lock.held
        assert read_lock(path) is not None


def test_unlock_refuses_a_live_holder_and_removes_a_stale_file(holder) -> None:
    path, proc = holder
    with pytest.raises(LockError, match="live pid"):
        unlock(path)
    proc.kill()
    proc.wait(timeout=10)
    assert "removed stale lock" in unlock(path)
    assert not path.exists()
    assert "nothing to do" in unlock(path)


def test_the_same_process_cannot_take_it_twice_through_two_objects(tmp_path: Path) -> None:
    path = tmp_path / "instance.lock"
    with InstanceLock(path), pytest.raises(LockError):
        InstanceLock(path).acquire()
    with InstanceLock(path):  # released by the context manager
        pass


def test_a_lock_whose_file_was_removed_or_replaced_is_taken_again(tmp_path: Path) -> None:
    path = tmp_path / "instance.lock"
    lock = InstanceLock(path)
    lock.acquire("service")
    assert lock.verify() == "ok"
    path.unlink()  # by hand, or by a clean-up tool
    assert read_lock(path) is None  # anyone could take the instance now...
    assert lock.verify() == "retaken"  # ...until its owner looks
    info = read_lock(path)
    assert info is not None and info.pid == os.getpid() and info.purpose == "service"
    with pytest.raises(LockError):
        InstanceLock(path).acquire()
    other = tmp_path / "other"
    other.write_text("{}")
    os.replace(other, path)  # replaced by another file
    assert lock.verify() == "retaken"
    with pytest.raises(LockError):
        InstanceLock(path).acquire()
    assert lock.verify() == "ok"
    lock.release()


def test_a_lock_another_process_took_after_its_file_was_removed_is_lost(holder) -> None:
    path, proc = holder
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    mine = InstanceLock(path)
    mine.acquire()
    path.unlink()
    intruder = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert intruder.stdout is not None and intruder.stdout.readline().strip() == "held"
        assert mine.verify() == "lost"  # two owners: the caller must stop
    finally:
        intruder.kill()
        intruder.wait(timeout=10)
        for stream in (intruder.stdin, intruder.stdout):
            if stream:
                stream.close()
        mine.release()


def test_a_symbolic_link_in_place_of_the_lock_file_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("keep me")
    (tmp_path / "instance.lock").symlink_to(target)
    with pytest.raises(OSError):
        InstanceLock(tmp_path / "instance.lock").acquire()
    assert target.read_text() == "keep me"
    assert read_lock(tmp_path / "instance.lock") is None

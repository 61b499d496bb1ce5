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

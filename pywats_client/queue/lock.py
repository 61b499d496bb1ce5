"""One owner per instance: an exclusive lock on the instance's lock file.

The lock is `flock()` on `instance.lock`, held for the life of the owning process. The kernel
drops it when that process dies, however it dies, so a lock left by a crashed or SIGKILLed
service is never an obstacle: the next owner simply takes it. The file also says who holds it
(pid, purpose, start time) so that an operator and `status` can tell.

A leaf of the machinery: depends on errors only.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pywats_client.errors import LockError


@dataclass(frozen=True)
class LockInfo:
    """Who holds (or last held) the lock."""

    pid: int
    purpose: str
    started: float
    held: bool  # True when a live process holds the lock right now

    @property
    def alive(self) -> bool:
        return pid_alive(self.pid)


def pid_alive(pid: int) -> bool:
    """True if a process with this pid exists (signal 0 probes without sending anything)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    # An exited process nobody has reaped yet (a zombie) still answers signal 0.
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


class InstanceLock:
    """The exclusive lock of one instance. Use as a context manager or acquire()/release()."""

    def __init__(self, path: Path, instance: str = "default") -> None:
        self.path = Path(path)
        self.instance = instance
        self._fd: int | None = None
        self._purpose = "service"
        self._started = time.time()

    def acquire(self, purpose: str = "service") -> None:
        """Take the lock or raise LockError naming the process that holds it."""
        if self._fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = self._take(purpose)
        self._purpose = purpose

    def _take(self, purpose: str) -> int:
        """Lock the file that is at `path` now (creating it) and write who holds it."""
        for _ in range(10):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
            try:
                locked = _flock(fd, self.path)
            except BaseException:
                os.close(fd)
                raise
            if locked and _same_file(fd, self.path):
                break
            os.close(fd)
            if locked:
                continue  # removed or replaced between our open and our flock: the new one
            holder = read_lock(self.path)
            who = f"pid {holder.pid} ({holder.purpose})" if holder else "another process"
            raise LockError(
                f"instance '{self.instance}' is in use by {who}; its queue has one owner at a "
                "time. Stop that process first (SIGTERM; 'pywats-client status' shows it), or "
                "use another --instance."
            )
        else:
            raise LockError(f"the lock file {self.path} keeps being replaced; cannot take it")
        self._write_info(fd, purpose)
        return fd

    def _write_info(self, fd: int, purpose: str) -> None:
        info = {"pid": os.getpid(), "purpose": purpose, "started": self._started}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)

    def hand_over(self) -> int:
        """Keep the lock across an exec of this process (a restart in place): its descriptor
        stays open in the new program, whose `adopt()` takes it over by this number, so the
        instance is never free in between."""
        if self._fd is None:
            raise LockError(f"instance '{self.instance}': no lock to hand over")
        os.set_inheritable(self._fd, True)
        return self._fd

    def adopt(self, fd: int, purpose: str = "service") -> bool:
        """Take over the lock this process held before it executed itself again
        (`hand_over`). False, and nothing taken, when `fd` is not that lock."""
        if self._fd is not None:
            return True
        try:
            if not _same_file(fd, self.path):
                raise OSError(f"descriptor {fd} is not {self.path}")
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held already by this very file
            os.set_inheritable(fd, False)
            self._write_info(fd, purpose)
        except OSError:
            with contextlib.suppress(OSError):
                os.close(fd)
            return False
        self._fd, self._purpose = fd, purpose
        return True

    def verify(self) -> Literal["ok", "retaken", "lost"]:
        """Whether this lock still guards the instance. "ok": its file is still in place.
        "retaken": the file was removed or replaced (by hand, or by a tool) and the lock was
        taken again on the file there now, so other processes see the owner. "lost": another
        process holds that file already (two owners: the caller must stop)."""
        if self._fd is None:
            return "lost"
        if _same_file(self._fd, self.path):
            return "ok"
        try:
            fd = self._take(self._purpose)
        except (LockError, OSError):
            return "lost"
        old, self._fd = self._fd, fd
        os.close(old)
        return "retaken"

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        os.close(self._fd)  # closing drops the flock
        self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> InstanceLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def read_lock(path: Path) -> LockInfo | None:
    """Who holds the lock at `path` now, or None when nobody does."""
    for _ in range(40):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return None  # a symbolic link is not our lock file
            raise
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                held = True
            else:
                held = False
            raw = os.read(fd, 4096)
        finally:
            os.close(fd)  # also drops the shared lock taken for the probe
        if not held:
            return None
        try:
            data = json.loads(raw or b"{}")
            return LockInfo(int(data["pid"]), str(data.get("purpose", "")),
                            float(data["started"]), True)
        except (ValueError, KeyError, TypeError):
            # The owner has the lock and is writing who it is: look again in a moment.
            threading.Event().wait(0.025)
    return LockInfo(0, "unknown", 0.0, True)


def _flock(fd: int, path: Path) -> bool:
    """Take the exclusive lock on `fd`; False when another process holds it."""
    for _ in range(3):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if _probed_only(path):
                continue  # only another process's momentary probe (read_lock): try again
            return False
    return False


def _probed_only(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return False  # an exclusive holder
    finally:
        os.close(fd)
    return True


def _same_file(fd: int, path: Path) -> bool:
    """True when `path` names the file open as `fd` (not removed, not replaced)."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    except OSError:
        return True  # cannot tell (a transient error): assume nothing changed
    held = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (held.st_dev, held.st_ino)


def unlock(path: Path) -> str:
    """Remove a stale lock file. Refuses (LockError) while a live process holds it."""
    holder = read_lock(path)
    if holder is not None:
        raise LockError(
            f"the lock {path} is held by live pid {holder.pid} ({holder.purpose}); stop that "
            "process instead of removing its lock"
        )
    try:
        path.unlink()
    except FileNotFoundError:
        return f"no lock file at {path}: nothing to do"
    return f"removed stale lock {path}"

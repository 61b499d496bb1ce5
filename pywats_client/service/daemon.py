"""Process control without systemd: detach (`start --daemon`), `stop`, and the pid file. The
instance lock, not the pid file, tells what runs (every service holds it, however it was
started); the pid file is for tools that expect one, written only once the lock is held.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass

from pywats_client.errors import DaemonError, LockError
from pywats_client.paths import InstancePaths
from pywats_client.queue.lock import pid_alive, read_lock

STARTUP_TIMEOUT = 60.0


@dataclass
class Detached:
    """Handed to the code that runs inside the daemon: call `ready()` once serving, or
    `failed(message)` when it cannot start, so the waiting parent can tell the operator."""

    _fd: int

    def ready(self) -> None:
        self._send(f"ready {os.getpid()}\n")

    def failed(self, message: str) -> None:
        self._send(f"error {message}\n")

    def locked(self, message: str) -> None:
        """Another process owns the instance: the parent exits as `start` does then (4)."""
        self._send(f"locked {message}\n")

    def _send(self, line: str) -> None:
        if self._fd < 0:
            return
        with contextlib.suppress(OSError):
            os.write(self._fd, line.encode("utf-8", "replace"))
            os.close(self._fd)
        self._fd = -1


def start_detached(paths: InstancePaths, timeout: float = STARTUP_TIMEOUT) -> Detached | int:
    """Fork a daemon. In the daemon this returns a `Detached`; in the caller it returns the
    daemon's pid once the daemon called `ready()`, or raises DaemonError."""
    read_end, write_end = os.pipe()
    first = os.fork()
    if first == 0:  # intermediate child: new session, then fork again so we can never
        os.close(read_end)  # reacquire a controlling terminal
        os.setsid()
        if os.fork() != 0:
            os._exit(0)
        _redirect_stdio()
        os.chdir("/")
        return Detached(write_end)  # the pid file is written once the instance is ours
    os.close(write_end)
    os.waitpid(first, 0)
    try:
        answer = _read_line(read_end, timeout)
    finally:
        os.close(read_end)
    if answer.startswith("ready "):
        return int(answer.split()[1])
    if answer.startswith("error "):
        raise DaemonError(answer[len("error "):].strip())
    if answer.startswith("locked "):
        raise LockError(answer[len("locked "):].strip())
    raise DaemonError(
        f"the daemon did not report back within {timeout:.0f}s; see {paths.log_file}"
        if not answer else f"unexpected answer from the daemon: {answer!r}"
    )


def _read_line(fd: int, timeout: float) -> str:
    """Read until newline or EOF (the daemon died), waiting at most `timeout` seconds."""
    import selectors

    data = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while b"\n" not in data:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                break
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            data += chunk
    return data.decode("utf-8", "replace").strip()


def _redirect_stdio() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)


def write_pid_file(paths: InstancePaths) -> None:
    """Name this process in the pid file; only the owner of the instance lock may."""
    paths.root.mkdir(parents=True, exist_ok=True)
    tmp = paths.pid_file.with_name(f".{paths.pid_file.name}.{os.getpid()}")
    tmp.write_text(f"{os.getpid()}\n", encoding="ascii")
    os.replace(tmp, paths.pid_file)


def remove_pid_file(paths: InstancePaths) -> None:
    """Remove the pid file if it names this process (another may have taken over)."""
    with contextlib.suppress(OSError, ValueError):
        if int(paths.pid_file.read_text().strip()) == os.getpid():
            paths.pid_file.unlink()


@dataclass(frozen=True)
class StopResult:
    pid: int | None
    stopped: bool
    seconds: float
    message: str


def stop(paths: InstancePaths, *, timeout: float = 30.0, force: bool = False) -> StopResult:
    """SIGTERM the process that owns the instance and wait up to `timeout` for it to exit.

    Only the end of the process counts, not the release of the lock: a stopped service holds
    its lock to the last, and a process that has let go of it is not done until it is gone.
    With `force`, a process still running after the timeout gets SIGKILL (nothing is lost: a
    report being uploaded is swept back to pending at the next start).
    """
    holder = read_lock(paths.lock)
    if holder is None:
        return StopResult(None, True, 0.0, f"instance '{paths.name}' is not running")
    pid = holder.pid
    if pid <= 0:
        return StopResult(None, False, 0.0, (
            f"instance '{paths.name}' is locked, but its lock file {paths.lock} does not say by "
            "which process; find it with 'fuser -v' and stop it by hand"))
    born = _start_time(pid)
    started = time.monotonic()
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return StopResult(pid, True, 0.0, f"pid {pid} had already exited")
    except PermissionError:
        return StopResult(pid, False, 0.0, f"not allowed to signal pid {pid} (another user); "
                          "run stop as the user the service runs as")
    if _wait_gone(pid, born, timeout):
        took = time.monotonic() - started
        return StopResult(pid, True, took, f"stopped pid {pid} ({holder.purpose}) in {took:.1f}s")
    if not force:
        return StopResult(pid, False, timeout, (
            f"pid {pid} is still running after {timeout:.0f}s (probably finishing uploads). "
            "Wait, or run 'stop --force' to kill it; nothing is lost either way."))
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if not _wait_gone(pid, born, 10.0):
        return StopResult(pid, False, timeout + 10.0, (
            f"pid {pid} did not exit even after SIGKILL (stuck in the kernel: a hung disk or "
            "network share?)"))
    took = time.monotonic() - started
    return StopResult(pid, True, took, f"killed pid {pid} after {timeout:.0f}s; in-flight "
                      "reports are sent again at the next start")


def _wait_gone(pid: int, born: str | None, timeout: float) -> bool:
    """Wait until process `pid` (started at `born`) has exited; False after `timeout`."""
    deadline = time.monotonic() + timeout
    tick = threading.Event()
    while time.monotonic() < deadline:
        if not pid_alive(pid) or _start_time(pid) != born:
            return True  # gone (a zombie counts as gone), or the pid was reused meanwhile
        tick.wait(0.02)  # another process's exit: nothing to wait on but its pid
    return False


def _start_time(pid: int) -> str | None:
    """When process `pid` started, in clock ticks since boot (None where /proc cannot say),
    to tell it from a later process that got the same pid."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return None

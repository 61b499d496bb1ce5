"""What Linux tells about files being written: the inotify events of watch folders (which
file was closed after writing, renamed in, or is being written), read on a thread of its own,
and whether a file is open for writing by any process (asked with a read lease).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import enum
import errno
import fcntl
import logging
import os
import select
import signal
import struct
import sys
import threading
from collections.abc import Callable, Iterator

__all__ = ["FolderEvents", "Hint", "available", "open_for_writing", "read_lease"]

log = logging.getLogger(__name__)


class Hint(enum.Enum):
    """What an event says about a file in a watch folder."""

    LOOK = "look"  # something may have changed (a scan, an attribute, an observer that polls)
    WRITING = "writing"  # created or written to: a writer is at it
    CLOSED = "closed"  # a writer closed it after writing
    RENAMED = "renamed"  # renamed into the folder: it was written elsewhere, and is whole


# inotify(7)
IN_MODIFY = 0x2
IN_ATTRIB = 0x4
IN_CLOSE_WRITE = 0x8
IN_MOVED_TO = 0x80
IN_CREATE = 0x100
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_UNMOUNT = 0x2000
IN_Q_OVERFLOW = 0x4000
IN_IGNORED = 0x8000
IN_ONLYDIR = 0x01000000
IN_EXCL_UNLINK = 0x04000000
IN_ISDIR = 0x40000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
# Readers' opens and closes are not asked for: the service reads every file several times.
WATCH_MASK = (IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_MOVE_SELF
              | IN_ONLYDIR | IN_EXCL_UNLINK)
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then len bytes of name
_KINDS = ((IN_MOVED_TO, Hint.RENAMED), (IN_CLOSE_WRITE, Hint.CLOSED),
          (IN_CREATE | IN_MODIFY, Hint.WRITING), (IN_ATTRIB, Hint.LOOK))

_libc: ctypes.CDLL | None = None


def available() -> bool:
    """True where inotify can be used (Linux with a C library that has it)."""
    return _inotify() is not None


def _inotify() -> ctypes.CDLL | None:
    global _libc
    if _libc is None and sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
            libc.inotify_init1.argtypes = [ctypes.c_int]
            libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
            libc.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
        except (OSError, AttributeError):
            return None
        _libc = libc
    return _libc


class FolderEvents:
    """The inotify events of some folders (not their subfolders), as `on_event(path, hint)`
    calls on a thread of its own. `on_overflow()` says events were lost (the kernel's queue
    was full: rescan); `on_lost(folder)` that a folder is no longer watched (deleted, moved
    or unmounted: add it again once it is back)."""

    def __init__(self, on_event: Callable[[str, Hint], None], on_overflow: Callable[[], None],
                 on_lost: Callable[[str], None]) -> None:
        libc = _inotify()
        if libc is None:
            raise OSError(errno.ENOSYS, "inotify is not available on this system")
        self._libc = libc
        fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))
        self._fd = fd
        self._stop_r, self._stop_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._on_event, self._on_overflow, self._on_lost = on_event, on_overflow, on_lost
        self._lock = threading.Lock()
        self._folders: dict[int, list[str]] = {}  # watch descriptor -> folders
        self._thread = threading.Thread(target=self._run, name="folder-events", daemon=True)
        self._thread.start()

    def add(self, folder: str) -> None:
        """Watch `folder`; OSError when it cannot be (missing, no permission, watch limit)."""
        wd = self._libc.inotify_add_watch(self._fd, os.fsencode(folder), WATCH_MASK)
        if wd < 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), folder)
        with self._lock:
            folders = self._folders.setdefault(wd, [])
            if folder not in folders:
                folders.append(folder)

    def watching(self, folder: str) -> bool:
        with self._lock:
            return any(folder in folders for folders in self._folders.values())

    def stop(self) -> None:
        """Stop and join the thread, and close the inotify descriptor. Safe to call twice."""
        if self._stop_w < 0:
            return
        with contextlib.suppress(OSError):
            os.write(self._stop_w, b"x")
        self._thread.join(timeout=10.0)
        if self._thread.is_alive():
            log.warning("the folder events thread did not stop within 10 s")
            return  # its descriptors stay open: closing them under it could hit a new file
        for fd in (self._fd, self._stop_r, self._stop_w):
            os.close(fd)
        self._stop_w = -1

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        poller.register(self._stop_r, select.POLLIN)
        while True:
            ready = {fd for fd, _ in poller.poll()}
            if self._stop_r in ready:
                return
            try:
                data = os.read(self._fd, 64 * 1024)
            except BlockingIOError:
                continue
            except OSError:
                log.exception("cannot read folder events; the rescans still find new files")
                return
            try:
                self._dispatch(data)
            except Exception:  # a bug here must not end the thread: the next events count
                log.exception("could not handle folder events; the next rescan finds the files")

    def _dispatch(self, data: bytes) -> None:
        offset = 0
        while offset + _EVENT.size <= len(data):
            wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
            start = offset + _EVENT.size
            name = data[start:start + length].split(b"\0", 1)[0]
            offset = start + length
            if mask & IN_Q_OVERFLOW:
                self._on_overflow()
                continue
            if mask & (IN_IGNORED | IN_MOVE_SELF | IN_DELETE_SELF | IN_UNMOUNT):
                self._forget(wd, mask)
                continue
            if mask & IN_ISDIR or not name:
                continue
            with self._lock:
                folders = list(self._folders.get(wd, ()))
            hint = next((kind for bits, kind in _KINDS if mask & bits), Hint.LOOK)
            for folder in folders:
                self._on_event(os.path.join(folder, os.fsdecode(name)), hint)

    def _forget(self, wd: int, mask: int) -> None:
        if mask & IN_MOVE_SELF:
            # The watch would follow the folder to its new place, and report its files under
            # the old name: drop it, and watch whatever is at the old path again later.
            self._libc.inotify_rm_watch(self._fd, wd)
        with self._lock:
            folders = self._folders.pop(wd, [])
        for folder in folders:
            self._on_lost(folder)


# -- is a file still open for writing? --------------------------------------------------------

# The kernel tells a lease holder that someone wants the file by a signal, SIGIO by default,
# which ends a process that does not handle it. The lease is held for two system calls only,
# but a writer may open the file just then: SIGURG is sent instead, which is ignored unless
# handled. Where some code handles SIGURG, leases are not used.
_LEASE_SIGNAL = signal.SIGURG


def open_for_writing(path: str) -> bool | None:
    """True while any process has `path` open for writing, False when none has, None when
    that cannot be asked (a read lease needs the file's owner or CAP_LEASE, and a filesystem
    that has leases). Raises OSError when the file cannot be opened for reading.

    A read lease is refused (EAGAIN) while the file is open for writing anywhere; when it is
    granted it is given back at once. O_NONBLOCK: a file under another's write lease (Samba
    keeps some for its clients) makes the open fail with EWOULDBLOCK rather than wait for the
    lease to be broken, and that too means someone is writing."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except BlockingIOError:
        return True
    try:
        return writers_of(fd)
    finally:
        os.close(fd)


def writers_of(fd: int) -> bool | None:
    """`open_for_writing` for a file already open for reading as `fd`."""
    with read_lease(fd) as granted:
        return None if granted is None else not granted


@contextlib.contextmanager
def read_lease(fd: int) -> Iterator[bool | None]:
    """Hold a read lease on `fd` (opened read-only) for the `with` block: True while held,
    False when refused because the file is open for writing, None when leases cannot be used
    here. Keep the block short: a writer that opens the file meanwhile waits for its end."""
    if signal.getsignal(_LEASE_SIGNAL) not in (signal.SIG_DFL, signal.SIG_IGN):
        yield None
        return
    try:
        fcntl.fcntl(fd, fcntl.F_SETSIG, _LEASE_SIGNAL)
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
    except OSError as exc:
        yield False if exc.errno == errno.EAGAIN else None
        return
    try:
        yield True
    finally:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)

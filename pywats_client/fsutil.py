"""Small filesystem primitives the rest of the client builds its guarantees on.

Owns: the durable write recipe (tmp file, fsync, rename, fsync of the folder), folder fsync,
collision-free destination names and the "is this a local filesystem?" check. A leaf module:
it imports only `errors`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from pywats_client.errors import QueueFullError

_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def fsync_dir(path: Path) -> None:
    """Make the entries of folder `path` (creations, renames) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_file(path: Path | str) -> bytes:
    """The whole of `path` in four system calls (open, fstat, read, close) when nothing is
    appended meanwhile. Path.read_bytes() takes seven: the buffered reader checks for a
    terminal, seeks and reads again to find the end. Every upload reads its queue item, and
    under load every system call means waiting to take the interpreter lock back."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        chunks = [os.read(fd, size + 1)]  # one more than expected: a short read is the end
        while len(chunks[-1]) > (size if len(chunks) == 1 else 0):
            chunks.append(os.read(fd, 1 << 16))
        return b"".join(chunks)
    finally:
        os.close(fd)


def write_new_file(path: Path, data: bytes, mode: int = 0o600, *, sync: bool = True) -> None:
    """Create `path` (it must not exist), write `data` and fsync it.

    On any error the partial file is removed, so a failed write leaves nothing behind. A failed
    fsync is never retried: the data is treated as not written (Linux may drop dirty pages after
    reporting the error once, so a second fsync could falsely succeed).
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        if sync:
            os.fsync(fd)
    except OSError as exc:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)
        if exc.errno in _DISK_FULL:
            raise QueueFullError(f"no space left to write {path}") from exc
        raise
    os.close(fd)


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace `path` with `data` so a reader sees the old or the new content, never a mix.

    Durable: the temporary file is fsynced before the rename and the folder after it.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    write_new_file(tmp, data, mode)
    try:
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def free_name(folder: Path, name: str) -> Path:
    """A path in `folder` for `name` that does not exist yet: `name`, `stem.1.ext`, `stem.2.ext`…

    Used for done/error folders, where an earlier file of the same name must never be replaced.
    """
    candidate = folder / name
    if not candidate.exists():
        return candidate
    stem, dot, suffix = name.partition(".")
    for n in range(1, 1_000_000):
        candidate = folder / (f"{stem}.{n}{dot}{suffix}" if dot else f"{name}.{n}")
        if not candidate.exists():
            return candidate
    raise FileExistsError(f"no free name for {name} in {folder}")


def move_no_clobber(src: Path, folder: Path) -> Path:
    """Move `src` into `folder` under a free name and return the new path.

    `os.link` + `unlink` refuses to replace an existing file, which closes the race between
    choosing a free name and using it; across filesystems the file is copied first.
    """
    already = _linked_copy(src, folder)
    if already is not None:
        # A crash between link() and unlink() left the file under both names: finish the move
        # instead of moving it a second time under a new name.
        os.unlink(src)
        return already
    dest = folder / src.name  # usually free: tried before anything is looked up
    folder_made = False
    while True:
        try:
            os.link(src, dest)
        except FileExistsError:
            dest = free_name(folder, src.name)
            continue  # (or somebody took the name between free_name() and link())
        except FileNotFoundError:
            if folder_made:
                raise  # the folder is there now, so the source is gone
            # No folder yet (another thread may be making it this very moment: its existence
            # now says nothing about why this link failed).
            folder.mkdir(parents=True, exist_ok=True)
            folder_made = True
            continue
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EMLINK):
                raise
            return _copy_then_unlink(src, dest)
        os.unlink(src)
        return dest


def _linked_copy(src: Path, folder: Path) -> Path | None:
    """The name in `folder` that is a hard link to `src`, if a move was interrupted."""
    try:
        st = src.stat()
    except FileNotFoundError:
        return None
    if st.st_nlink < 2:
        return None
    stem, dot, suffix = src.name.partition(".")
    candidates = [folder / src.name]
    candidates += [folder / (f"{stem}.{n}{dot}{suffix}" if dot else f"{src.name}.{n}")
                   for n in range(1, 100)]
    for candidate in candidates:
        try:
            other = candidate.stat()
        except FileNotFoundError:
            break  # free_name() fills names in order: nothing further along
        if (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino):
            return candidate
    return None


def _copy_then_unlink(src: Path, dest: Path) -> Path:
    """Fallback for moves across filesystems or onto filesystems without hard links."""
    data = src.read_bytes()
    write_new_file(dest, data, mode=0o644)
    with contextlib.suppress(OSError):
        os.utime(dest, ns=(src.stat().st_atime_ns, src.stat().st_mtime_ns))
    os.unlink(src)
    return dest


# Filesystems on which rename/fsync do not give the queue its guarantees, by the name
# /proc/mounts uses for them.
NETWORK_OR_WEAK_FILESYSTEMS = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "sshfs", "fuse.sshfs", "9p", "vfat", "msdos",
     "exfat", "fuseblk", "ncpfs", "afs", "davfs", "fuse.rclone", "glusterfs", "ceph"}
)


def filesystem_type(path: Path) -> str | None:
    """The filesystem type of the mount holding `path`, from /proc/mounts (None if unknown)."""
    try:
        target = os.path.realpath(path)
        best, fstype = "", None
        for mount_point, kind in _mounts():
            inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
            if inside and len(mount_point) >= len(best):
                best, fstype = mount_point, kind
        return fstype
    except OSError:
        return None


def mount_points() -> set[str]:
    """Every mount point of this machine (from /proc/mounts; bind mounts included, which
    `os.path.ismount` misses when they stay on one filesystem). Empty when unreadable."""
    try:
        return {point for point, _ in _mounts()}
    except OSError:
        return set()


def _mounts() -> Iterator[tuple[str, str]]:
    with open("/proc/mounts", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) >= 3:
                # /proc/mounts escapes blanks in mount points as octal (\040).
                yield parts[1].encode().decode("unicode_escape"), parts[2]


class FolderSyncer:
    """Group commit of one folder's fsync: threads that renamed files into the folder at about
    the same time share one fsync instead of queueing one each behind the journal.

    A caller's own rename is complete before it calls `sync()`, so any fsync that *starts*
    after the call covers it. One caller at a time (the leader) runs the fsync for every ticket
    handed out before it started; the others wait for it. A failed fsync fails every caller it
    was meant to cover — never retried, never silently taken as done.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._cond = threading.Condition()
        self._issued = 0  # tickets handed out
        self._synced = 0  # every ticket up to this one is durable
        self._failed: tuple[int, int, OSError] | None = None  # (first, last ticket, error)
        self._leader = False
        self.fsyncs = 0  # how many fsyncs ran (for benchmarks)

    def sync(self) -> None:
        with self._cond:
            self._issued += 1
            ticket = self._issued
            while self._synced < ticket:
                failed = self._failed
                if failed is not None and failed[0] <= ticket <= failed[1]:
                    raise failed[2]
                if not self._leader:
                    self._leader = True
                    break
                self._cond.wait()
            else:
                return
            start, target = self._synced + 1, self._issued
        try:
            fsync_dir(self.folder)
            error: OSError | None = None
        except OSError as exc:
            error = exc
        with self._cond:
            self.fsyncs += 1
            self._leader = False
            if error is None:
                self._synced = max(self._synced, target)
            else:
                self._failed = (start, target, error)
                # the next caller leads a fresh attempt for its own, later ticket
                self._synced = max(self._synced, target)
            self._cond.notify_all()
        if error is not None:
            raise error

"""Small filesystem primitives the rest of the client builds its guarantees on.

Owns: the durable write recipe (tmp file, fsync, rename, fsync of the folder), folder fsync,
collision-free destination names, the folder-descriptor operations that never follow a symbolic
link (for folders others can write) and the "is this a local filesystem?" check.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import stat
import threading
import time
from collections.abc import Iterator, Sequence
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
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags, mode)
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


def candidate_names(name: str) -> Iterator[str]:
    """`name`, then `stem.1.ext`, `stem.2.ext`…: the order in which free names are taken."""
    yield name
    stem, dot, suffix = name.partition(".")
    for n in range(1, _MAX_SUFFIX):
        yield f"{stem}.{n}{dot}{suffix}" if dot else f"{name}.{n}"


def move_no_clobber(src: Path, folder: Path) -> Path:
    """Move `src` into `folder` under a free name and return the new path.

    `folder` is created when missing; below the folder holding `src` no symbolic link is
    followed (see `open_dir`). See `move_at` for how names are chosen and files moved.
    """
    dest_fd = open_dir(folder, base=src.parent, create=True)
    try:
        src_fd = os.open(src.parent, _DIR_FLAGS)
        try:
            return folder / move_at(src_fd, src.name, dest_fd, src.name, where=folder)
        finally:
            os.close(src_fd)
    finally:
        os.close(dest_fd)


# -- writing into folders that others can write -------------------------------------------------
#
# Watch folders and their done/ and error/ folders are often writable by the equipment's user or
# a share. Whoever can write there can swap a name for a symbolic link at any moment, so every
# write below goes through a folder's file descriptor (the *at system calls) and never follows a
# link: the folder that was checked is the folder that is written into.

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_MAX_SUFFIX = 1_000_000
_COPY_CHUNK = 1 << 20


class UnsafePathError(OSError):
    """A folder or file the client would write into or take is a symbolic link, not a folder
    (or not a regular file), or lies where files must never go: refused, nothing written."""


def shown(path: str | os.PathLike[str]) -> str:
    """`path` for a message or a note: control characters (a newline in a file name) and bytes
    that are not UTF-8 are escaped, so a file name cannot forge a line of text."""
    text = os.fspath(path)
    if text.isprintable():  # the usual name: no control character, no escaped byte
        return text
    out = []
    for ch in text:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch.isprintable() or ch == " ":
            out.append(ch)
        else:
            out.append(ch.encode("unicode_escape").decode("ascii"))
    return "".join(out)


def open_dir(path: Path, *, base: Path | None = None, create: bool = False) -> int:
    """A file descriptor of the folder `path` (the caller closes it).

    When `path` lies inside `base`, each component below `base` is opened on its own without
    following symbolic links (and made with mkdir when missing and `create` is set): a link,
    a file or anything else where a folder should be raises UnsafePathError. `base` itself and
    everything above it is configuration and opened as it is; without a `base`, so is all of
    `path` but its last component.
    """
    path = Path(os.path.abspath(path))
    if base is not None:
        base = Path(os.path.abspath(base))
    if base is not None and path != base and _is_inside(path, base):
        start, parts = base, path.relative_to(base).parts
    elif path.parent == path:
        start, parts = path, ()
    else:
        start, parts = path.parent, (path.name,)
    try:
        fd = os.open(start, _DIR_FLAGS)
    except FileNotFoundError:
        if not (create and parts):
            raise
        os.makedirs(start, exist_ok=True)
        fd = os.open(start, _DIR_FLAGS)
    try:
        for n, part in enumerate(parts):
            fd = _open_child_dir(fd, part, start.joinpath(*parts[: n + 1]), create)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _is_inside(path: Path, base: Path) -> bool:
    return os.path.commonpath([path, base]) == str(base)


def _open_child_dir(parent: int, name: str, full: Path, create: bool) -> int:
    """Open folder `name` in `parent` without following a link; `parent` is closed on success."""
    for attempt in range(2):
        try:
            child = os.open(name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=parent)
        except FileNotFoundError:
            if not create or attempt:
                raise
            with contextlib.suppress(FileExistsError):  # made by another thread meanwhile
                os.mkdir(name, 0o777, dir_fd=parent)
            continue
        except OSError as exc:
            if exc.errno in (errno.ENOTDIR, errno.ELOOP):
                raise _not_a_folder(parent, name, full) from None
            raise
        os.close(parent)
        return child
    raise FileNotFoundError(errno.ENOENT, f"{shown(full)} vanished as it was made")


def _not_a_folder(parent: int, name: str, full: Path) -> UnsafePathError:
    try:
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except OSError:
        st = None
    if st is not None and stat.S_ISLNK(st.st_mode):
        try:
            target = f" (to {shown(os.readlink(name, dir_fd=parent))})"
        except OSError:
            target = ""
        return UnsafePathError(
            errno.ELOOP, f"{shown(full)} is a symbolic link{target}; the client never writes "
            "through a link where others can write. Replace it with a real folder")
    kind = _kind(st.st_mode) if st is not None else "not a folder"
    return UnsafePathError(errno.ENOTDIR, f"{shown(full)} is {kind}, not a folder; remove or "
                           "rename it so that the client can make the folder")


def _kind(mode: int) -> str:
    for test, kind in ((stat.S_ISREG, "a file"), (stat.S_ISDIR, "a folder"),
                       (stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a named pipe"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a device")):
        if test(mode):
            return kind
    return "something else"


class FolderIds:
    """The identities (device, inode) of some folders, for `refuse_inside`: looked up again at
    most every `max_age` seconds instead of for every move (a stat of each folder per file
    converted, in a flood). A folder replaced meanwhile (removed and made again) is known by
    its new identity within `max_age`."""

    def __init__(self, folders: Sequence[Path], max_age: float = 60.0) -> None:
        self.folders = tuple(folders)
        self.max_age = max_age
        self._ids: dict[tuple[int, int], Path] = {}
        self._taken = -math.inf  # monotonic

    def get(self) -> dict[tuple[int, int], Path]:
        now = time.monotonic()
        if now - self._taken >= self.max_age:
            self._ids, self._taken = _identities(self.folders), now
        return self._ids


def _identities(folders: Sequence[Path]) -> dict[tuple[int, int], Path]:
    ids: dict[tuple[int, int], Path] = {}
    for folder in folders:
        with contextlib.suppress(OSError):
            st = os.stat(folder)
            ids[(st.st_dev, st.st_ino)] = folder
    return ids


def refuse_inside(fd: int, where: Path, protected: Sequence[Path] | FolderIds,
                  allowed: Path | None = None) -> None:
    """Raise UnsafePathError when the folder open as `fd` is one of the `protected` folders or
    lies inside one, unless it lies inside `allowed` before that.

    Decided by the identity (device, inode) of the folder and of each folder above it up to
    the root, so neither a symbolic link, nor `..`, nor a bind mount hides where it really is.
    """
    ids = protected.get() if isinstance(protected, FolderIds) else _identities(protected)
    if not ids:
        return
    allow = None
    if allowed is not None:
        with contextlib.suppress(OSError):
            st = os.stat(allowed)
            allow = (st.st_dev, st.st_ino)
    if allow is not None and allow not in ids:
        # The usual case, a done or error folder right inside its watch folder: two stats.
        st, parent = os.fstat(fd), os.stat("..", dir_fd=fd)
        if (st.st_dev, st.st_ino) not in ids and (parent.st_dev, parent.st_ino) == allow:
            return
    current = os.dup(fd)
    try:
        st = os.fstat(current)
        for _ in range(4096):
            here = (st.st_dev, st.st_ino)
            if here in ids:
                raise UnsafePathError(
                    errno.EPERM, f"{shown(where)} is or lies inside {shown(ids[here])}, where "
                    "the client keeps its own files (configuration, queue, converter plugins); "
                    "no file is ever moved there. Give the watch folder a done or error folder "
                    "of its own")
            if here == allow:
                return
            up = os.open("..", _DIR_FLAGS, dir_fd=current)
            os.close(current)
            current = up
            st = os.fstat(current)
            if (st.st_dev, st.st_ino) == here:
                return  # the root: its parent is itself
    finally:
        os.close(current)


def open_regular(name: str | Path, *, dir_fd: int | None = None, follow_symlinks: bool = False
                 ) -> tuple[int, os.stat_result]:
    """Open a file for reading only if it is a regular file: (fd, its stat).

    Never blocks (a named pipe is opened non-blocking and refused) and, unless
    `follow_symlinks`, never follows a symbolic link. Raises UnsafePathError for anything but
    a regular file."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC
    if not follow_symlinks:
        flags |= os.O_NOFOLLOW
    try:
        fd = os.open(name, flags, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP and not follow_symlinks:
            raise UnsafePathError(errno.ELOOP, f"{shown(name)} is a symbolic link") from None
        if exc.errno == errno.ENXIO:  # a socket
            raise UnsafePathError(errno.ENXIO, f"{shown(name)} is a socket") from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise UnsafePathError(errno.EINVAL, f"{shown(name)} is {_kind(st.st_mode)}, not a file")
    return fd, st


def move_at(src_dir: int, name: str, dest_dir: int, want: str, *, where: Path | None = None
            ) -> str:
    """Move `name` (in folder `src_dir`) into folder `dest_dir` under `want` or the first free
    name after it (`candidate_names`); returns the name used.

    A hard link then an unlink, so an existing name is never replaced, and a link is moved as
    the link, never followed. A crash between the two left the file under both names: that
    move is finished, not repeated. Across filesystems (or without hard links) the file is
    copied (`copy_at`) and then removed.
    """
    st = os.stat(name, dir_fd=src_dir, follow_symlinks=False)
    if st.st_nlink > 1:
        already = linked_name(dest_dir, want, st)
        if already is not None:
            _unlink_if_same(src_dir, name, st)
            return already
    for candidate in candidate_names(want):
        try:
            os.link(name, candidate, src_dir_fd=src_dir, dst_dir_fd=dest_dir,
                    follow_symlinks=False)
        except FileExistsError:
            continue
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EMLINK):
                raise
            return copy_at(src_dir, name, dest_dir, want, move=True, where=where)
        _unlink_if_same(src_dir, name, st)
        return candidate
    raise FileExistsError(errno.EEXIST, f"no free name for {shown(want)} in {shown(where or '')}")


def _unlink_if_same(folder: int, name: str, st: os.stat_result) -> None:
    """Remove `name` unless it was replaced by another file meanwhile (that one was never
    taken, so it stays)."""
    try:
        now = os.stat(name, dir_fd=folder, follow_symlinks=False)
    except FileNotFoundError:
        return
    if (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino):
        os.unlink(name, dir_fd=folder)


def linked_name(folder: int, want: str, st: os.stat_result) -> str | None:
    """The name in `folder` (among `want` and its free-name successors) that is a hard link to
    the file `st` describes: what an interrupted move leaves."""
    for n, candidate in enumerate(candidate_names(want)):
        if n >= 100:
            break
        try:
            other = os.stat(candidate, dir_fd=folder, follow_symlinks=False)
        except FileNotFoundError:
            break  # names are taken in order: nothing further along
        if (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino):
            return candidate
    return None


def copy_at(src_dir: int, name: str, dest_dir: int, want: str, *, move: bool = False,
            where: Path | None = None) -> str:
    """Copy the regular file `name` into `dest_dir` under a free name (created with O_EXCL and
    O_NOFOLLOW, so nothing is replaced or written through a link), durably; with `move`, then
    remove the original. Returns the name used. A disk that fills up raises QueueFullError
    and leaves no partial copy."""
    src, st = open_regular(name, dir_fd=src_dir)
    try:
        for candidate in candidate_names(want):
            try:
                out = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                              | os.O_CLOEXEC, 0o644, dir_fd=dest_dir)
            except FileExistsError:
                continue
            try:
                _copy_fd(src, out)
                with contextlib.suppress(OSError):
                    os.utime(out, ns=(st.st_atime_ns, st.st_mtime_ns))
                os.fsync(out)
            except OSError as exc:
                os.close(out)
                with contextlib.suppress(OSError):
                    os.unlink(candidate, dir_fd=dest_dir)
                if exc.errno in _DISK_FULL:
                    raise QueueFullError(f"no space left to copy {shown(name)}") from exc
                raise
            os.close(out)
            os.fsync(dest_dir)
            if move:
                _unlink_if_same(src_dir, name, st)
            return candidate
    finally:
        os.close(src)
    raise FileExistsError(errno.EEXIST, f"no free name for {shown(want)} in {shown(where or '')}")


def _copy_fd(src: int, out: int) -> None:
    os.lseek(src, 0, os.SEEK_SET)
    while True:
        chunk = os.read(src, _COPY_CHUNK)
        if not chunk:
            return
        view = memoryview(chunk)
        while view:
            view = view[os.write(out, view):]


def write_new_at(folder: int, want: str, data: bytes, mode: int = 0o644) -> str:
    """Write `data` as a new file in `folder` under `want` or the next free name, durably and
    whole (a temporary file linked into place, so a reader never sees half of it and an
    existing file is never replaced); returns the name used."""
    tmp = f".{want}.{os.getpid()}.{threading.get_ident()}.tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp, dir_fd=folder)  # a crash of an earlier process with this pid left it
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 mode, dir_fd=folder)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        return link_free_name(folder, tmp, want)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=folder)


def link_free_name(folder: int, tmp: str, want: str) -> str:
    """Give the file `tmp` in `folder` the name `want` or the next free one, never replacing an
    existing file; `tmp` keeps its name too (the caller removes it). The folder is fsynced."""
    for candidate in candidate_names(want):
        try:
            os.link(tmp, candidate, src_dir_fd=folder, dst_dir_fd=folder, follow_symlinks=False)
        except FileExistsError:
            continue
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EMLINK):
                raise
            # No hard links on this filesystem: copy under a name made with O_EXCL.
            candidate = copy_at(folder, tmp, folder, want)
        os.fsync(folder)
        return candidate
    raise FileExistsError(errno.EEXIST, f"no free name for {shown(want)}")


def remove_at(folder: int, name: str) -> None:
    """Remove `name` from `folder`: a file or link is unlinked (never followed), a folder is
    removed with everything in it, without following any link inside. Missing is fine."""
    try:
        st = os.stat(name, dir_fd=folder, follow_symlinks=False)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=folder)
        return
    for _root, dirs, files, top in os.fwalk(name, dir_fd=folder, topdown=False,
                                            follow_symlinks=False):
        for entry in files:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry, dir_fd=top)
        for entry in dirs:
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISLNK(os.stat(entry, dir_fd=top, follow_symlinks=False).st_mode):
                    os.unlink(entry, dir_fd=top)
                else:
                    os.rmdir(entry, dir_fd=top)
    os.rmdir(name, dir_fd=folder)


def move_tree_at(src_dir: int, name: str, dest_dir: int, want: str,
                 where: Path | None = None) -> str:
    """Move file, link or folder `name` into `dest_dir` under a free name; returns the name.
    A folder is renamed (copied file by file across filesystems, links inside it not
    followed and not copied, then removed)."""
    st = os.stat(name, dir_fd=src_dir, follow_symlinks=False)
    if not stat.S_ISDIR(st.st_mode):
        return move_at(src_dir, name, dest_dir, want, where=where)
    for candidate in candidate_names(want):
        try:
            os.stat(candidate, dir_fd=dest_dir, follow_symlinks=False)
            continue  # taken
        except FileNotFoundError:
            pass
        try:
            os.rename(name, candidate, src_dir_fd=src_dir, dst_dir_fd=dest_dir)
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
                continue  # taken meanwhile
            if exc.errno != errno.EXDEV:
                raise
            _copy_tree_at(src_dir, name, dest_dir, candidate)
            remove_at(src_dir, name)
        return candidate
    raise FileExistsError(errno.EEXIST, f"no free name for {shown(want)} in {shown(where or '')}")


def _copy_tree_at(src_dir: int, name: str, dest_dir: int, new: str) -> None:
    os.mkdir(new, 0o777, dir_fd=dest_dir)
    src = os.open(name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=src_dir)
    dst = os.open(new, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=dest_dir)
    try:
        for entry in sorted(os.listdir(src)):
            st = os.stat(entry, dir_fd=src, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                _copy_tree_at(src, entry, dst, entry)
            elif stat.S_ISREG(st.st_mode):
                copy_at(src, entry, dst, entry)
            # links, pipes, sockets: not followed, not copied
        os.fsync(dst)
    finally:
        os.close(src)
        os.close(dst)


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

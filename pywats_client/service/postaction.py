"""What happens to a source file once its reports are queued, or once it has failed: the
post-actions (move, archive, delete, none, with the `SeenFiles` record), `move_to_error` and
`put_skipped_aside` with their notes, all written without following any symbolic link.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import logging
import os
import stat
import threading
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pywats_client.clock import SYSTEM_CLOCK, Clock
from pywats_client.config.settings import POST_ACTIONS, WatchFolder
from pywats_client.errors import QueueFullError
from pywats_client.fsutil import (
    FolderIds,
    UnsafePathError,
    atomic_write,
    link_free_name,
    move_at,
    move_tree_at,
    open_dir,
    open_regular,
    refuse_inside,
    remove_at,
    shown,
    write_new_at,
)
from pywats_client.paths import InstancePaths

log = logging.getLogger(__name__)

SEEN_FILES_NAME = "seen-files.log"
ERROR_NOTE_SUFFIX = ".error.txt"
SKIPPED_NOTE_SUFFIX = ".skipped.txt"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


@dataclass(frozen=True)
class SourceFile:
    """A file taken from a watch folder, as it was when it was found to be stable."""

    folder: WatchFolder
    path: Path
    size: int
    mtime_ns: int


class SeenFiles:
    """Files already processed in folders whose post-action is 'none' (append-only record).

    One JSON line `[path, size, mtime_ns]` per processed file in `state_dir/seen-files.log`.
    A file is recognised by path, size and mtime, so a file rewritten in place is taken again.
    Appends are flushed but not fsynced: an entry lost in a power cut only means the file is
    converted once more, and the report id is deterministic, so the server keeps one report.
    """

    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.path = state_dir / SEEN_FILES_NAME
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[int, int]] = {}
        self._load()

    def contains(self, path: str | os.PathLike[str], size: int, mtime_ns: int) -> bool:
        """True if this exact file (same path, size and mtime) was processed before."""
        with self._lock:
            return self._entries.get(_key(path)) == (size, mtime_ns)

    def add(self, path: str | os.PathLike[str], size: int, mtime_ns: int) -> None:
        """Record `path` as processed; thread-safe, appended to the record at once."""
        key = _key(path)
        line = json.dumps([key, size, mtime_ns]) + "\n"
        with self._lock:
            try:
                # Appended through a descriptor that never follows a link planted in its place.
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
                             | os.O_CLOEXEC, 0o644)
                try:
                    os.write(fd, line.encode("utf-8", "surrogateescape"))
                finally:
                    os.close(fd)
            except OSError as exc:
                raise OSError(
                    exc.errno,
                    f"cannot record {path} as processed in {self.path}: {exc.strerror}; the file "
                    "stays in its watch folder and will be converted again after a restart. "
                    "Check that the service user can write there and the disk has space",
                ) from exc
            self._entries[key] = (size, mtime_ns)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def _load(self) -> None:
        """Read the record, keep only files still present and unchanged, compact if needed."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return
        lines = raw.decode("utf-8", errors="replace").splitlines()
        entries: dict[str, tuple[int, int]] = {}
        for line in lines:
            try:
                key, size, mtime_ns = json.loads(line)
            except (ValueError, TypeError):
                # A torn last line after a crash: that file is simply converted once more.
                continue
            if isinstance(key, str) and isinstance(size, int) and isinstance(mtime_ns, int):
                entries[key] = (size, mtime_ns)  # a later line for the same path wins
        by_folder: dict[str, list[str]] = {}
        for key in entries:
            by_folder.setdefault(os.path.dirname(key), []).append(key)
        for keys in by_folder.values():
            missing, changed = [], []
            for key in keys:
                try:
                    st = os.stat(key)
                except OSError:
                    missing.append(key)
                    continue
                if (st.st_size, st.st_mtime_ns) != entries[key]:
                    changed.append(key)
            for key in changed:
                del entries[key]
            # Forget missing files only when others of the same folder are still there: a
            # folder where none is left is more likely an unmounted share than a cleaned-up
            # one, and forgetting would make every file look new when it comes back.
            if len(missing) < len(keys):
                for key in missing:
                    del entries[key]
        self._entries = entries
        if len(entries) != len(lines):
            # Rewrite so the record only grows with files that are still lying there.
            data = "".join(json.dumps([k, s, m]) + "\n" for k, (s, m) in entries.items())
            atomic_write(self.path, data.encode("utf-8"), mode=0o644)
            log.info("seen-files record %s compacted: %d of %d entries kept",
                     self.path, len(entries), len(lines))


class SourceChangedError(OSError):
    """The file at a source's name is no longer the one that was converted: the equipment
    wrote it again or renamed a new one in meanwhile. That one is left where it is, and the
    watcher takes it as the new file it is."""


def _still_the_converted_file(src_dir: int, source: SourceFile) -> None:
    """Raise SourceChangedError unless the file at `source`'s name has the size and
    modification time it was taken with; checked last before the file is moved, zipped or
    deleted, so that a file written after the conversion is never lost unconverted."""
    try:
        st = os.stat(source.path.name, dir_fd=src_dir,
                     follow_symlinks=source.folder.follow_symlinks)
    except FileNotFoundError:
        return  # gone: each action says what that means for it
    # Anything but a file (a link, a named pipe put in its place) is refused by the action.
    if stat.S_ISREG(st.st_mode) and (st.st_size, st.st_mtime_ns) != (source.size,
                                                                     source.mtime_ns):
        raise SourceChangedError(
            errno.EBUSY, f"{shown(source.path)} changed after it was converted (written again "
            "or replaced); it is left where it is and taken again as a new file")


def _key(path: str | os.PathLike[str]) -> str:
    return os.path.abspath(path)


def protected_folders(paths: InstancePaths) -> FolderIds:
    """The folders no post-action ever moves or writes a file into: the instance folder with its
    configuration, queue, state and converter plugins (a file that lands among the plugins is
    run at the next start)."""
    return FolderIds((paths.root, paths.converters, paths.state, paths.queue, paths.logs))


def apply_post_action(
    source: SourceFile, seen: SeenFiles, companions: Sequence[Path] = (), *,
    protect: Sequence[Path] | FolderIds = (),
) -> Path | None:
    """Apply the watch folder's post-action to `source`; call only once its reports are queued.

    `companions` are the other files or folders that form one unit with `source` (a Klippel
    header file and its data folder): they go wherever the file goes. `protect` are folders
    no file may be moved into (`protected_folders`). No symbolic link is followed on the way
    into the done folder or inside it: a done folder that is a link, a file or one of the
    protected folders is refused with `UnsafePathError` and the file stays where it is.
    Returns where the file went (`move`: the new path, `archive`: the zip), or None for `delete`
    and `none`. Raises `OSError` naming the file when the action fails; the report is queued
    already, so the caller logs it and carries on.
    """
    action = source.folder.post_action
    if action == "move":
        with _into(source, source.folder.done_path, "done", protect) as (src_dir, dest_dir):
            return _move(source, src_dir, dest_dir, "done", companions)
    if action == "archive":
        with _into(source, source.folder.done_path, "done", protect) as (src_dir, dest_dir):
            return _archive(source, src_dir, dest_dir, companions)
    if action == "delete":
        try:
            src_dir = os.open(source.path.parent, _DIR_FLAGS)
            try:
                _still_the_converted_file(src_dir, source)
                remove_at(src_dir, source.path.name)
                for companion in companions:
                    _at(src_dir, source, companion, remove_at)
            finally:
                os.close(src_dir)
        except SourceChangedError:
            raise  # says it all
        except OSError as exc:
            raise _explain(exc, f"cannot delete {shown(source.path)}") from exc
        return None
    if action == "none":
        seen.add(source.path, source.size, source.mtime_ns)
        return None
    raise ValueError(
        f"unknown post_action {action!r} for watch folder {source.folder.path}; "
        f"use one of {', '.join(POST_ACTIONS)}"
    )


def move_to_error(
    source: SourceFile, reason: str, *, clock: Clock = SYSTEM_CLOCK,
    companions: Sequence[Path] = (), protect: Sequence[Path] | FolderIds = (),
) -> Path:
    """Move `source` (and its companions) into the error folder and write `<name>.error.txt`
    beside it saying why.

    Returns the new path of the file. Raises `OSError` if the file itself cannot be moved
    (`UnsafePathError` when the error folder is a link, not a folder, or protected: see
    `apply_post_action`). If only the note cannot be written the file is still where it should
    be: that is logged and the new path returned.
    """
    folder = source.folder
    with _into(source, folder.error_path, "error", protect) as (src_dir, dest_dir):
        dest = _move(source, src_dir, dest_dir, "error", companions, missing_ok=True)
        when = datetime.fromtimestamp(clock.time()).astimezone().isoformat(timespec="seconds")
        text = (
            f"pywats-client could not turn {shown(dest.name)} into a WATS report.\n"
            "\n"
            f"What happened:\n"
            f"    {_indent(_printable(reason.strip()) or 'no reason was given')}\n"
            "\n"
            f"Original file:  {shown(source.path)}\n"
            f"Moved to:       {shown(dest)}\n"
            f"When:           {when}\n"
            f"Converter:      {folder.converter or 'chosen automatically for each file'}\n"
            "\n"
            "What to do:\n"
            "    Fix the cause above (the file itself, or the converter settings of the watch\n"
            f"    folder), then move {shown(dest.name)} back into\n"
            f"    {shown(folder.path)}\n"
            "    and it will be converted again. You may delete this note afterwards.\n"
            "    If the file is not a test report, delete it together with this note.\n"
        )
        note = dest.name + ERROR_NOTE_SUFFIX
        try:
            write_new_at(dest_dir, note, text.encode("utf-8"))
        except (OSError, QueueFullError) as exc:
            log.error("moved %s to %s but could not write the note %s saying why (%s); the "
                      "reason was: %s", shown(source.path), shown(dest), shown(note), exc, reason)
    return dest


def put_skipped_aside(
    source: SourceFile, seen: SeenFiles, reason: str, *, clock: Clock = SYSTEM_CLOCK,
    companions: Sequence[Path] = (), protect: Sequence[Path] | FolderIds = (),
) -> Path | None:
    """Handle a file its converter skipped (it holds no report) like a converted one, with a
    `<name>.skipped.txt` note beside it in the done folder saying why no report was made.

    `none` leaves it in place, recorded so it is not taken again; `archive` zips it into the
    done folder; `move` and `delete` move it there: nothing of it reached WATS, so it is not
    destroyed. Returns where it went (None for `none`); raises `OSError` like the post-actions.
    """
    folder = source.folder
    if folder.post_action == "none":
        seen.add(source.path, source.size, source.mtime_ns)
        return None
    with _into(source, folder.done_path, "done", protect) as (src_dir, dest_dir):
        if folder.post_action == "archive":
            dest = _archive(source, src_dir, dest_dir, companions)
        else:
            dest = _move(source, src_dir, dest_dir, "done", companions, missing_ok=True)
        when = datetime.fromtimestamp(clock.time()).astimezone().isoformat(timespec="seconds")
        text = (
            f"pywats-client made no WATS report from {shown(source.path.name)}: its converter "
            "skipped it.\n"
            "\n"
            f"Why:\n    {_indent(_printable(reason.strip()) or 'no reason was given')}\n"
            "\n"
            f"Original file:  {shown(source.path)}\n"
            f"Moved to:       {shown(dest)}\n"
            f"When:           {when}\n"
            "\n"
            "Nothing to do if that is right. If the file should have made a report, fix the\n"
            f"converter, then put {shown(source.path.name)} back into\n"
            f"    {shown(folder.path)}\n"
            "and it will be converted again.\n"
        )
        note = dest.name + SKIPPED_NOTE_SUFFIX
        try:
            write_new_at(dest_dir, note, text.encode("utf-8"))
        except (OSError, QueueFullError) as exc:
            log.error("moved skipped %s to %s but could not write the note %s (%s)",
                      shown(source.path), shown(dest), shown(note), exc)
    return dest


def _indent(text: str) -> str:
    return text.replace("\n", "\n    ")


def _printable(text: str) -> str:
    """A reason for a note: its own line breaks kept, anything else unprintable escaped (a
    reason quotes file names and file content)."""
    return "\n".join(shown(line) for line in text.split("\n"))


@contextlib.contextmanager
def _into(source: SourceFile, dest: Path, label: str, protect: Sequence[Path] | FolderIds
          ) -> Iterator[tuple[int, int]]:
    """The open folders (source's, destination's) of a move: the destination is made when
    missing, reached without following links below the watch folder and checked not to be a
    protected folder, so what is checked is what is written into."""
    what = f"cannot move {shown(source.path)} into the {label} folder {shown(dest)}"
    try:
        dest_dir = open_dir(dest, base=source.folder.path, create=True)
    except OSError as exc:
        raise _explain(exc, what) from exc
    try:
        try:
            refuse_inside(dest_dir, dest, protect, allowed=source.folder.path)
            src_dir = os.open(source.path.parent, _DIR_FLAGS)
        except OSError as exc:
            raise _explain(exc, what) from exc
        try:
            yield src_dir, dest_dir
        finally:
            os.close(src_dir)
    finally:
        os.close(dest_dir)


def _move(source: SourceFile, src_dir: int, dest_dir: int, label: str,
          companions: Sequence[Path], *, missing_ok: bool = False) -> Path:
    folder = source.folder.done_path if label == "done" else source.folder.error_path
    name = source.path.name
    what = f"cannot move {shown(source.path)} into the {label} folder {shown(folder)}"
    _still_the_converted_file(src_dir, source)
    try:
        dest = folder / move_at(src_dir, name, dest_dir, name, where=folder)
        for companion in companions:
            try:
                _at(src_dir, source, companion,
                    lambda d, n: move_tree_at(d, n, dest_dir, n, where=folder))
            except FileNotFoundError:
                if not missing_ok:
                    raise
    except QueueFullError as exc:
        raise OSError(errno.ENOSPC, f"{what}: no space left on that disk; free some space "
                      "there") from exc
    except OSError as exc:
        raise _explain(exc, what) from exc
    return dest


def _at(src_dir: int, source: SourceFile, path: Path, action: Callable[[int, str], object]
        ) -> None:
    """Run `action(folder_fd, name)` on a companion, through its folder's descriptor."""
    if path.parent == source.path.parent:
        action(src_dir, path.name)
        return
    folder = open_dir(path.parent, base=source.folder.path)
    try:
        action(folder, path.name)
    finally:
        os.close(folder)


def _archive(source: SourceFile, src_dir: int, dest_dir: int,
             companions: Sequence[Path] = ()) -> Path:
    """Zip `source` (and its companions) into the done folder under a free name, durably, then
    delete the originals. Only regular files are read, never through a link (except the source
    itself where the folder follows links)."""
    folder = source.folder.done_path
    name = source.path.name
    tmp = f".{name}.{os.getpid()}.{threading.get_ident()}.zip.tmp"
    _still_the_converted_file(src_dir, source)
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=dest_dir)  # left by a crash of an earlier process
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o644, dir_fd=dest_dir)
        try:
            with os.fdopen(fd, "wb") as fh:
                with zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED) as zf:
                    _zip_file(zf, src_dir, name, name, source.folder.follow_symlinks)
                    for companion in companions:
                        _at(src_dir, source, companion, functools.partial(_zip_tree, zf))
                fh.flush()
                os.fsync(fh.fileno())
            # The zip must be durable under its final name before the only other copy goes.
            final = link_free_name(dest_dir, tmp, name + ".zip")
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dest_dir)
        os.unlink(name, dir_fd=src_dir)
        for companion in companions:
            _at(src_dir, source, companion, remove_at)
    except OSError as exc:
        raise _explain(exc, f"cannot archive {shown(source.path)} into {shown(folder)}") from exc
    return folder / final


def _zip_file(zf: zipfile.ZipFile, folder: int, name: str, arcname: str,
              follow_symlinks: bool = False) -> None:
    fd, st = open_regular(name, dir_fd=folder, follow_symlinks=follow_symlinks)
    try:
        # Equipment clocks set before 1980 must not fail the zip, which cannot say so.
        year_min, year_max = (1980, 1, 1, 0, 0, 0), (2107, 12, 31, 23, 59, 59)
        stamp = max(year_min, min(year_max, time.localtime(st.st_mtime)[:6]))
        info = zipfile.ZipInfo(arcname, date_time=stamp)
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = (st.st_mode & 0xFFFF) << 16
        info.file_size = st.st_size
        with zf.open(info, "w", force_zip64=st.st_size >= 2**31) as out:
            while True:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    break
                out.write(chunk)
    finally:
        os.close(fd)


def _zip_tree(zf: zipfile.ZipFile, folder: int, name: str) -> None:
    """Zip file or folder `name`: regular files only; links are neither followed nor kept."""
    st = os.stat(name, dir_fd=folder, follow_symlinks=False)
    if stat.S_ISREG(st.st_mode):
        _zip_file(zf, folder, name, name)
        return
    if not stat.S_ISDIR(st.st_mode):
        return
    for top, dirs, files, top_fd in os.fwalk(name, dir_fd=folder, follow_symlinks=False):
        dirs.sort()
        for entry in sorted(files):
            if stat.S_ISREG(os.stat(entry, dir_fd=top_fd, follow_symlinks=False).st_mode):
                _zip_file(zf, top_fd, entry, os.path.join(top, entry))


def _explain(exc: OSError, what: str) -> OSError:
    """An OSError (same errno) whose message says what failed, on which path, and the fix;
    an `UnsafePathError` stays one (its message has the fix already)."""
    cause = exc.strerror or str(exc)
    if isinstance(exc, UnsafePathError):
        return UnsafePathError(exc.errno, f"{what}: {cause}")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        hint = "free some space on that disk"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = "give the service user write access to the file and that folder"
    elif exc.errno == errno.ENOENT:
        hint = "the file was removed or renamed by someone else meanwhile"
    else:
        hint = "check the folder and the disk"
    return OSError(exc.errno, f"{what}: {cause}; {hint}")

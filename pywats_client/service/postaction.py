"""What happens to a source file once its reports are queued, or once it has failed: the
post-actions (move, archive, delete, none, with the `SeenFiles` record that keeps `none` files
from being taken twice), `move_to_error` with its `.error.txt` note and `put_skipped_aside`
with its `.skipped.txt` note.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import threading
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pywats_client.clock import SYSTEM_CLOCK, Clock
from pywats_client.config.settings import POST_ACTIONS, WatchFolder
from pywats_client.errors import QueueFullError
from pywats_client.fsutil import atomic_write, free_name, fsync_dir, move_no_clobber

log = logging.getLogger(__name__)

SEEN_FILES_NAME = "seen-files.log"
ERROR_NOTE_SUFFIX = ".error.txt"
SKIPPED_NOTE_SUFFIX = ".skipped.txt"


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
                with open(self.path, "a", encoding="utf-8") as fh:
                    fh.write(line)
                    fh.flush()
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


def _key(path: str | os.PathLike[str]) -> str:
    return os.path.abspath(path)


def apply_post_action(
    source: SourceFile, seen: SeenFiles, companions: Sequence[Path] = ()
) -> Path | None:
    """Apply the watch folder's post-action to `source`; call only once its reports are queued.

    `companions` are the other files or folders that form one unit with `source` (a Klippel
    header file and its data folder): they go wherever the file goes.
    Returns where the file went (`move`: the new path, `archive`: the zip), or None for `delete`
    and `none`. Raises `OSError` naming the file when the action fails; the report is queued
    already, so the caller logs it and carries on.
    """
    action = source.folder.post_action
    if action == "move":
        dest = _move(source.path, source.folder.done_path, "done")
        for companion in companions:
            _move_any(companion, source.folder.done_path, "done")
        return dest
    if action == "archive":
        return _archive(source.path, source.folder.done_path, companions)
    if action == "delete":
        try:
            source.path.unlink(missing_ok=True)
            for companion in companions:
                _remove_any(companion)
        except OSError as exc:
            raise _explain(exc, f"cannot delete {source.path}") from exc
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
    companions: Sequence[Path] = (),
) -> Path:
    """Move `source` (and its companions) into the error folder and write `<name>.error.txt`
    beside it saying why.

    Returns the new path of the file. Raises `OSError` if the file itself cannot be moved. If
    only the note cannot be written the file is still where it should be: that is logged and
    the new path returned.
    """
    folder = source.folder
    dest = _move(source.path, folder.error_path, "error")
    for companion in companions:
        with contextlib.suppress(FileNotFoundError):
            _move_any(companion, folder.error_path, "error")
    note = dest.with_name(dest.name + ERROR_NOTE_SUFFIX)
    when = datetime.fromtimestamp(clock.time()).astimezone().isoformat(timespec="seconds")
    text = (
        f"pywats-client could not turn {dest.name} into a WATS report.\n"
        "\n"
        f"What happened:\n"
        f"    {_indent(reason.strip() or 'no reason was given')}\n"
        "\n"
        f"Original file:  {source.path}\n"
        f"Moved to:       {dest}\n"
        f"When:           {when}\n"
        f"Converter:      {folder.converter or 'chosen automatically for each file'}\n"
        "\n"
        "What to do:\n"
        "    Fix the cause above (the file itself, or the converter settings of the watch\n"
        f"    folder), then move {dest.name} back into\n"
        f"    {folder.path}\n"
        "    and it will be converted again. You may delete this note afterwards.\n"
        "    If the file is not a test report, delete it together with this note.\n"
    )
    try:
        atomic_write(note, text.encode("utf-8"), mode=0o644)
    except (OSError, QueueFullError) as exc:
        log.error("moved %s to %s but could not write the note %s saying why (%s); the reason "
                  "was: %s", source.path, dest, note, exc, reason)
    return dest


def put_skipped_aside(
    source: SourceFile, seen: SeenFiles, reason: str, *, clock: Clock = SYSTEM_CLOCK,
    companions: Sequence[Path] = (),
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
    if folder.post_action == "archive":
        dest = _archive(source.path, folder.done_path, companions)
    else:
        dest = _move(source.path, folder.done_path, "done")
        for companion in companions:
            with contextlib.suppress(FileNotFoundError):
                _move_any(companion, folder.done_path, "done")
    note = dest.with_name(dest.name + SKIPPED_NOTE_SUFFIX)
    when = datetime.fromtimestamp(clock.time()).astimezone().isoformat(timespec="seconds")
    text = (
        f"pywats-client made no WATS report from {source.path.name}: its converter skipped "
        "it.\n"
        "\n"
        f"Why:\n    {_indent(reason.strip() or 'no reason was given')}\n"
        "\n"
        f"Original file:  {source.path}\n"
        f"Moved to:       {dest}\n"
        f"When:           {when}\n"
        "\n"
        "Nothing to do if that is right. If the file should have made a report, fix the\n"
        f"converter, then put {source.path.name} back into\n"
        f"    {folder.path}\n"
        "and it will be converted again.\n"
    )
    try:
        atomic_write(note, text.encode("utf-8"), mode=0o644)
    except (OSError, QueueFullError) as exc:
        log.error("moved skipped %s to %s but could not write the note %s (%s)", source.path,
                  dest, note, exc)
    return dest


def _indent(text: str) -> str:
    return text.replace("\n", "\n    ")


def _move(src: Path, folder: Path, label: str) -> Path:
    try:
        return move_no_clobber(src, folder)
    except QueueFullError as exc:
        raise OSError(errno.ENOSPC, f"cannot move {src} into the {label} folder {folder}: no "
                      "space left on that disk; free some space there") from exc
    except OSError as exc:
        raise _explain(exc, f"cannot move {src} into the {label} folder {folder}") from exc


def _move_any(src: Path, folder: Path, label: str) -> Path:
    """Move a file or a whole folder into `folder` under a free name."""
    if not src.is_dir():
        return _move(src, folder, label)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        dest = free_name(folder, src.name)
        try:
            os.rename(src, dest)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            shutil.move(str(src), str(dest))  # another filesystem: copy, then remove
        return dest
    except OSError as exc:
        raise _explain(exc, f"cannot move {src} into the {label} folder {folder}") from exc


def _remove_any(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _archive(src: Path, folder: Path, companions: Sequence[Path] = ()) -> Path:
    """Zip `src` (and its companions) into `folder` under a free name, durably, then delete
    the originals."""
    tmp = folder / f".{src.name}.{os.getpid()}.{threading.get_ident()}.zip.tmp"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp.unlink(missing_ok=True)  # left by a crash of an earlier process with this pid
        with open(tmp, "xb") as fh:
            # strict_timestamps=False: equipment clocks set before 1980 must not fail the zip.
            with zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED, strict_timestamps=False) as zf:
                zf.write(src, arcname=src.name)
                for companion in companions:
                    _zip_any(zf, companion)
            fh.flush()
            os.fsync(fh.fileno())
        dest = _link_free_name(tmp, folder, src.name + ".zip")
        # The zip must be durable under its final name before the only other copy goes away.
        fsync_dir(folder)
        src.unlink()
        for companion in companions:
            _remove_any(companion)
    except OSError as exc:
        raise _explain(exc, f"cannot archive {src} into {folder}") from exc
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return dest


def _zip_any(zf: zipfile.ZipFile, path: Path) -> None:
    if not path.is_dir():
        zf.write(path, arcname=path.name)
        return
    for member in sorted(path.rglob("*")):
        if member.is_file():
            zf.write(member, arcname=str(Path(path.name) / member.relative_to(path)))


def _link_free_name(tmp: Path, folder: Path, name: str) -> Path:
    """Give `tmp` a free name in `folder` without ever replacing an existing file."""
    while True:
        dest = free_name(folder, name)
        try:
            os.link(tmp, dest)
        except FileExistsError:
            continue  # taken between free_name() and link(): choose again
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EMLINK):
                raise
            # No hard links on this filesystem: a plain rename, with a tiny race on the name.
            os.rename(tmp, dest)
        return dest


def _explain(exc: OSError, what: str) -> OSError:
    """An OSError (same errno) whose message says what failed, on which path, and the fix."""
    cause = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        hint = "free some space on that disk"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = "give the service user write access to the file and that folder"
    elif exc.errno == errno.ENOENT:
        hint = "the file was removed or renamed by someone else meanwhile"
    else:
        hint = "check the folder and the disk"
    return OSError(exc.errno, f"{what}: {cause}; {hint}")

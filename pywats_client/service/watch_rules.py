"""The rules of a watch folder that do not change while it is watched: which names are taken
(its patterns, and the names never taken), what is known of a file waiting to be taken
(`Candidate`: settled, signalled by its writer, waiting to be completed, held open), and which
files are left alone (links, hard links to files elsewhere)."""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass

from pywats_client.config.settings import WatchFolder
from pywats_client.fsutil import linked_name, open_dir

# Names equipment, editors and browsers use while a file is still being written, plus our own
# error notes. Compared case-insensitively: Windows tools write ".TMP" as often as ".tmp".
IGNORED_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".error.txt")


def is_ignored_name(name: str) -> bool:
    """True for names that are never converted, whatever the folder's file patterns say."""
    return (
        name.startswith((".", "~"))
        or name.lower().endswith(IGNORED_SUFFIXES)
    )


class WatchedFolder:
    """A watch folder with its absolute path and compiled file patterns."""

    def __init__(self, settings: WatchFolder) -> None:
        self.settings = settings
        self.key = os.path.abspath(settings.path)
        # No patterns at all means no filter, like the default ("*",).
        patterns = settings.file_patterns or ("*",)
        self._patterns = re.compile(
            "|".join(f"(?:{fnmatch.translate(p)})" for p in patterns), re.IGNORECASE
        )
        # Set at start: on a network share, FAT media or FUSE, events miss what other machines
        # write, and leases say nothing about them.
        self.local = True

    def accepts(self, name: str) -> bool:
        return not is_ignored_name(name) and self._patterns.match(name) is not None

    @property
    def follow_symlinks(self) -> bool:
        return self.settings.follow_symlinks


@dataclass
class Candidate:
    """A file not taken yet. `since` is when it was first seen with this size and mtime."""

    folder: WatchedFolder
    size: int
    mtime_ns: int
    since: float  # monotonic
    not_before: float = 0.0  # monotonic; set by retry_later()
    warned_unreadable: bool = False
    signalled: float | None = None  # closed after writing or renamed in, with this content
    parked_until: float | None = None  # incomplete: looked at again then, or when it changes
    held_since: float | None = None  # open for writing by another process since then

    def due(self, settle_time: float) -> float:
        if self.parked_until is not None:
            return max(self.parked_until, self.not_before)
        start = self.signalled if self.signalled is not None else self.since + settle_time
        return max(start, self.not_before)

    def changed(self, size: int, mtime_ns: int, now: float) -> None:
        """New content: what was known of the old one (closed, incomplete, held) is void."""
        self.size, self.mtime_ns, self.since = size, mtime_ns, now
        self.signalled = self.parked_until = self.held_since = None


LINK_REFUSED = (
    "is a symbolic link: it is left where it is and not converted, since a link could make "
    "the service read files elsewhere. If links are meant to be taken from this folder, set "
    "follow_symlinks for it in queue.watch_folders")
HARDLINK_REFUSED = (
    "has other hard links and this system does not protect hard links "
    "(fs.protected_hardlinks is 0): it could be a link to a file elsewhere, so it is left "
    "where it is. Copy it into the folder instead of linking it")


def file_state(entry: os.DirEntry[str], follow_symlinks: bool) -> tuple[int, int] | None:
    """(size, mtime_ns) of a listed file, None when it cannot be stat'ed."""
    try:
        st = entry.stat(follow_symlinks=follow_symlinks)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def is_file(entry: os.DirEntry[str], follow_symlinks: bool) -> bool:
    try:
        return entry.is_file(follow_symlinks=follow_symlinks)
    except OSError:
        return False


def hardlinks_protected() -> bool:
    """True when the kernel lets a user hard-link only files they own or may read and write
    (so a hard link in a watch folder cannot reveal a file its writer could not read)."""
    try:
        with open("/proc/sys/fs/protected_hardlinks", encoding="ascii") as fh:
            return fh.read().strip() == "1"
    except OSError:
        return False


def moving_out(folder: WatchFolder, key: str, st: os.stat_result) -> bool:
    """True when the file's other name is in its own done or error folder: a move that a crash
    interrupted, which the post-action finishes."""
    for dest in (folder.done_path, folder.error_path):
        try:
            fd = open_dir(dest, base=folder.path)
        except OSError:
            continue
        try:
            if linked_name(fd, os.path.basename(key), st) is not None:
                return True
        finally:
            os.close(fd)
    return False

"""The conversion journal (state/conversions.journal): each file is recorded before its
conversion starts and cleared when it ends, so a file the process died on is known at the next
start. It carries the count of such deaths per file; `ConversionTicket` is one passage.
"""

from __future__ import annotations

import contextlib
import enum
import json
import logging
import os
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pywats_client.errors import QueueFullError
from pywats_client.fsutil import atomic_write
from pywats_client.service.gate import WorkGate

log = logging.getLogger(__name__)

JOURNAL_NAME = "conversions.journal"
COMPACT_BYTES = 1 << 20  # rewrite the journal once this much has been appended
MAX_READ = 16 << 20  # a journal larger than this is damaged: only its start is read

FileKey = tuple[str, int, int]  # absolute path, size, mtime_ns: one file, as it was taken


def file_key(path: str | os.PathLike[str], size: int, mtime_ns: int) -> FileKey:
    return os.path.abspath(path), size, mtime_ns


@dataclass(frozen=True)
class Suspect:
    """A file whose converter was running when the process died, `crashes` times; `pinned` of
    those deaths came while it was the only file being converted, so they are its own. A
    death amid other conversions makes each of them suspect, none of them guilty."""

    path: Path
    size: int
    mtime_ns: int
    crashes: int
    pinned: int = 0

    @property
    def key(self) -> FileKey:
        return file_key(self.path, self.size, self.mtime_ns)


class ConversionJournal:
    """Append-only lines, each `<crc32> <json>`, so a line torn by a crash is recognised and
    skipped. Records: `b` a conversion begins (written before it does), `r` its converter
    returned (what follows, queueing and moving files, is the service's own work), `e` it
    ended (either way), `x` the service stopped on purpose (what was open then did not kill
    it), `c` the counts carried over for one file.
    `recover()` folds them at start-up and rewrites the file with the counts alone. Thread-safe.

    No line is fsynced as it is appended. The journal is there for a death of the process (a
    crash in a converter, an out-of-memory kill, os._exit): what a process wrote before it died
    is in the page cache and reaches the disk all the same. Only a power cut or a kernel crash
    loses the last lines, and then no file is to blame, so a lost `b` is right; a lost `e` or
    `r` makes a suspect of a file that converted, which is then converted once more, alone;
    the checksum of each line skips one torn by the cut. The rewrite at start-up and at
    compaction is durable (it replaces the file), and so is the stop's `x`: after a stop the
    whole journal is synced once, so a power cut then does not make suspects of files the stop
    abandoned."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / JOURNAL_NAME
        self._lock = threading.Lock()  # the descriptor, the records in memory
        self._sync_lock = threading.Lock()  # taken before _lock by the rewrite and the stop
        self._fd = -1
        self._entries = 0
        self._size = 0
        self._counts: dict[FileKey, tuple[int, int]] = {}
        self._open: dict[int, FileKey] = {}
        self._failed = False
        self.writable = False  # False: the journal could not be set up; nothing is recorded

    # -- start-up -----------------------------------------------------------------------

    def recover(self) -> list[Suspect]:
        """What the last run left: every file open in it when it died, with its count of
        such deaths (files gone or changed since are forgotten). Then the journal is
        rewritten with those counts alone. Never raises: a torn, damaged or unreadable journal
        costs at most the counts it held."""
        counts: dict[FileKey, tuple[int, int]] = {}
        try:
            counts = self._fold(self._read())
        except Exception:  # a damaged journal must never keep the service from starting
            log.exception("cannot read the conversion journal %s; starting without it",
                          self.path)
        counts = {key: n for key, n in counts.items() if _unchanged(key)}
        self._remove_debris()
        with self._sync_lock, self._lock:
            self._counts = counts
            self._open = {}
            self.writable = self._rewrite()
        return [Suspect(Path(key[0]), key[1], key[2], n, pinned)
                for key, (n, pinned) in sorted(counts.items())]

    def _read(self) -> list[dict[str, Any]]:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            return []
        try:
            data = os.read(fd, MAX_READ)
        finally:
            os.close(fd)
        records, damaged = [], 0
        for line in data.split(b"\n"):
            if not line:
                continue
            record = _decode(line)
            if record is None:
                damaged += 1
            else:
                records.append(record)
        if damaged:
            log.warning("conversion journal %s: %d damaged line(s) skipped (a crash while "
                        "writing leaves one)", self.path, damaged)
        return records

    @staticmethod
    def _fold(records: list[dict[str, Any]]) -> dict[FileKey, tuple[int, int]]:
        """Each file's deaths, and how many of them are pinned on it."""
        counts: dict[FileKey, tuple[int, int]] = {}
        running: dict[int, FileKey] = {}  # in their converters
        returned: dict[int, FileKey] = {}  # converted, being queued
        for record in records:
            kind = record["k"]
            if kind == "c":
                counts[record["key"]] = (record["n"], record.get("z", 0))
            elif kind == "b":
                running[record["i"]] = record["key"]
            elif kind == "r" and record["i"] in running:
                returned[record["i"]] = running.pop(record["i"])
            elif kind == "e":
                ended = running.pop(record["i"], None) or returned.pop(record["i"], None)
                if ended is not None:
                    counts.pop(ended, None)  # it converted to the end: no longer suspect
            elif kind == "x":
                running.clear()  # a stop abandoned them; none of them killed the process
                returned.clear()
        alone = len(set(running.values())) == 1  # no other converter ran when it died
        for key in set(running.values()):
            crashes, pinned = counts.get(key, (0, 0))
            counts[key] = (crashes + 1, pinned + alone)
        return counts

    def _remove_debris(self) -> None:
        with contextlib.suppress(OSError), os.scandir(self.path.parent) as entries:
            for entry in entries:
                if entry.name.startswith(f".{JOURNAL_NAME}.") and entry.name.endswith(".tmp"):
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)

    def _rewrite(self) -> bool:
        """Replace the journal by the counts and the open conversions (locks held)."""
        lines = [_encode({"k": "c", "p": k[0], "s": k[1], "m": k[2], "n": n, "z": pinned})
                 for k, (n, pinned) in self._counts.items()]
        lines += [_encode({"k": "b", "i": i, "p": k[0], "s": k[1], "m": k[2]})
                  for i, k in self._open.items()]
        data = b"".join(lines)
        try:
            atomic_write(self.path, data)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW)
        except (OSError, QueueFullError) as exc:
            log.error("cannot write the conversion journal %s (%s): a file that crashes the "
                      "service will not be recognised and set aside", self.path, exc)
            self._close_fd()
            return False
        self._close_fd()
        self._fd, self._size = fd, len(data)
        return True

    # -- the life of one conversion -----------------------------------------------------

    def begin(self, key: FileKey) -> int:
        """Record that `key` is about to be converted; returns once the line is written (a
        death of the process from here on finds it; not fsynced, see the class)."""
        with self._lock:
            self._entries += 1
            entry = self._entries
            self._open[entry] = key
            self._append({"k": "b", "i": entry, "p": key[0], "s": key[1], "m": key[2]})
        return entry

    def returned(self, entry: int) -> None:
        """The converter of `entry` has returned: a death from here on is not the file's."""
        with self._lock:
            if entry in self._open:
                self._append({"k": "r", "i": entry})

    def end(self, entry: int) -> None:
        """The conversion of `entry` ended, whichever way."""
        with self._lock:
            key = self._open.pop(entry, None)
            if key is None:
                return
            self._counts.pop(key, None)
            self._append({"k": "e", "i": entry})
            compact = self._size > COMPACT_BYTES
        if compact:
            with self._sync_lock, self._lock:
                if self._size > COMPACT_BYTES:  # not compacted by another thread meanwhile
                    self._rewrite()

    def forget(self, key: FileKey) -> None:
        """`key` was set aside: its count is not carried any further."""
        with self._lock:
            self._counts.pop(key, None)

    def mark_stopped(self) -> None:
        """The service stops on purpose: no conversion open now was killed by its file. Synced
        (once per stop), with every line before it."""
        with self._sync_lock:
            with self._lock:
                self._open.clear()
                written = self._append({"k": "x"})
                fd = self._fd
            if written:
                try:
                    os.fdatasync(fd)
                except OSError as exc:
                    self._report(exc)

    def mark_stopped_now(self) -> None:
        """`mark_stopped()` for a signal handler that exits at once: no locks (one O_APPEND
        write is never interleaved with another), errors ignored."""
        fd = self._fd
        if fd < 0:
            return
        with contextlib.suppress(OSError):
            os.write(fd, _encode({"k": "x"}))
            os.fdatasync(fd)

    def close(self) -> None:
        with self._sync_lock, self._lock:
            self._close_fd()

    # -- internals ----------------------------------------------------------------------

    def _append(self, record: dict[str, Any]) -> bool:
        """Append one line (lock held); False when nothing was written."""
        if self._fd < 0:
            return False
        line = _encode(record)
        try:
            os.write(self._fd, line)
        except OSError as exc:
            self._report(exc)
            return False
        self._size += len(line)
        return True

    def _report(self, exc: OSError) -> None:
        if not self._failed:
            self._failed = True
            log.error("cannot write the conversion journal %s (%s): a file that crashes the "
                      "service may not be recognised and set aside", self.path, exc)

    def _close_fd(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1


class TicketState(enum.Enum):
    WAITING = "waiting"  # submitted, not started (nothing recorded)
    RUNNING = "running"  # recorded in the journal; the converter may be running
    COMMITTING = "committing"  # converted; queueing and moving files under the gate
    ABANDONED = "abandoned"  # given up by the main thread: the thread changes nothing more
    DONE = "done"


class ConversionTicket:
    """One file's passage through a conversion thread. The thread calls `start()` (journalled),
    converts, then `commit()` before it changes any file, and `finish()` at the end.
    The main thread may `abandon()` it (the time limit) unless it is committing already; the
    stop closes the gate, which refuses `start()` and `commit()` alike."""

    def __init__(self, journal: ConversionJournal, gate: WorkGate, key: FileKey, *,
                 suspect: bool = False) -> None:
        self.journal = journal
        self.gate = gate
        self.key = key
        self.suspect = suspect  # converted alone: the service died on this file before
        self.started_at: float | None = None  # monotonic, once the converter may run
        self.companions: tuple[Path, ...] = ()  # what goes with the file, once known
        self.entry = 0
        self._state = TicketState.WAITING
        self._lock = threading.Lock()

    @property
    def state(self) -> TicketState:
        return self._state

    def start(self, now: float) -> bool:
        """Conversion thread, first thing: False if the service is stopping (do nothing)."""
        if not self.gate.enter():
            return False
        try:
            entry = self.journal.begin(self.key)
        finally:
            self.gate.leave()
        with self._lock:
            self.entry, self.started_at = entry, now
            self._state = TicketState.RUNNING
        return True

    def reset_clock(self, now: float) -> None:
        """Conversion thread: the time limit counts from `now` (a wait that is not the
        converter's, for the memory budget, is not held against it)."""
        with self._lock:
            if self._state is TicketState.RUNNING:
                self.started_at = now

    def commit(self) -> bool:
        """Conversion thread, before queueing a report or moving a file: False if the
        conversion was given up meanwhile (then it must change nothing)."""
        with self._lock:
            if self._state is not TicketState.RUNNING or not self.gate.enter():
                return False
            self._state = TicketState.COMMITTING
        self.journal.returned(self.entry)
        return True

    def finish(self) -> None:
        """Conversion thread, last thing, whatever happened."""
        with self._lock:
            state = self._state
            if state in (TicketState.RUNNING, TicketState.COMMITTING):
                self._state = TicketState.DONE
        if state is TicketState.COMMITTING:
            self.journal.end(self.entry)
            self.gate.leave()
        elif state is TicketState.RUNNING and self.gate.enter():
            try:
                self.journal.end(self.entry)
            finally:
                self.gate.leave()

    def abandon(self) -> bool:
        """Main thread: give the conversion up. False if it is committing or over already."""
        with self._lock:
            if self._state is not TicketState.RUNNING:
                return False
            self._state = TicketState.ABANDONED
        self.journal.end(self.entry)  # it did not kill the process, whatever it does next
        return True


_ENCODER = json.JSONEncoder(separators=(",", ":"))  # one, not one per line (json.dumps)


def _encode(record: dict[str, Any]) -> bytes:
    payload = _ENCODER.encode(record).encode("ascii")
    return b"%08x %s\n" % (zlib.crc32(payload), payload)


def _decode(line: bytes) -> dict[str, Any] | None:
    """The record on one line, or None when the line is torn or damaged."""
    crc, _, payload = line.partition(b" ")
    try:
        if len(crc) != 8 or int(crc, 16) != zlib.crc32(payload):
            return None
        record = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    kind = record.get("k")
    if kind == "x":
        return record
    if kind in ("e", "r"):
        return record if _is_int(record.get("i")) else None
    path, size, mtime = record.get("p"), record.get("s"), record.get("m")
    if not (isinstance(path, str) and isinstance(size, int) and isinstance(mtime, int)):
        return None
    record["key"] = file_key(path, size, mtime)
    if kind == "b" and _is_int(record.get("i")):
        return record
    if (kind == "c" and _is_int(record.get("n")) and record["n"] > 0
            and _is_int(record.get("z", 0))):
        return record
    return None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _unchanged(key: FileKey) -> bool:
    """The file is still where it was, as it was (a changed file is a new file)."""
    try:
        st = os.stat(key[0])
    except OSError:
        return False
    return (st.st_size, st.st_mtime_ns) == key[1:]

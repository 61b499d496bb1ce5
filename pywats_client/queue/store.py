"""The durable directory-state queue: one file per report, one rename per transition.

Layout (one local filesystem, so every rename is atomic)::

    queue/tmp/         files being written; anything here at start-up is debris
    queue/pending/     waiting for upload; the file's mtime is its next-attempt time
    queue/processing/  claimed by an upload worker
    queue/completed/   stored by the server (pruned after a retention period)
    queue/failed/      rejected by the server or out of lifetime, with the reason inside
    queue/corrupt/     torn or zeroed files found after a crash; kept for a human to look at

Every item is `<report id>.wsq` in exactly one state folder. A file is self-checking::

    WSQ1 <header bytes> <body bytes> <sha256 of header+body>\\n
    <header: JSON with id, source, converter, queued_at, attempts, last_error, and the SHA-256
             of the body and of the source file it was made from>
    <body: the WSJF report, UTF-8 JSON>
    \\nEND\\n

so a torn write, a zero-filled block or a truncation after a power cut is detected and the file
goes to `corrupt/` instead of being uploaded or blocking the queue.

Retry state is cheap to scan, the way Postfix does it: the next-attempt time is the mtime, so
finding what is due needs one `stat` per name and never opens a report; the attempt count and
last error sit in the first line's header, read only for the items shown or retried.

Transitions (each is one code path, marked with its arrow)::

    (new)      -> PENDING     put()            write tmp, fsync, rename, fsync(pending)*
    PENDING    -> PROCESSING  claim()          rename (not fsynced: losing it only re-uploads)
    PROCESSING -> COMPLETED   complete()       rename, fsync(completed)
    PROCESSING -> PENDING     release()        rename, untouched (offline / paused: no attempt)
    PROCESSING -> PENDING     retry()          rewrite with attempts+1 and error, mtime = due
    PROCESSING -> FAILED      fail()/retry()   rewrite with the reason
    FAILED     -> PENDING     retry_failed()   rewrite with a fresh lifetime
    any        -> CORRUPT     (verification)   rename
    COMPLETED/FAILED -> gone  prune()/clear_completed()

    * Folder fsyncs are group-committed (`FolderSyncer`): workers renaming into the same
      folder at once share one fsync; each still returns only once its own rename is durable.

Depends on: errors, clock, fsutil, settings.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import hashlib
import heapq
import json
import logging
import os
import random
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from pywats_client.clock import SYSTEM_CLOCK, Clock
from pywats_client.config.settings import QueueSettings
from pywats_client.errors import CorruptItemError, QueueError, QueueFullError
from pywats_client.fsutil import (
    NETWORK_OR_WEAK_FILESYSTEMS,
    FolderSyncer,
    filesystem_type,
    fsync_dir,
    read_file,
    write_new_file,
)

log = logging.getLogger(__name__)

SUFFIX = ".wsq"
_MAGIC = b"WSQ1"
_END = b"\nEND\n"
_MAX_FIRST_LINE = 200
LARGE_ITEM = 1 << 20  # items larger than this are read for an upload without a second copy


class State(str, enum.Enum):
    """Where an item is; the folder of the same name holds it."""

    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CORRUPT = "corrupt"


FOLDERS = ("tmp", *(s.value for s in State))


@dataclass(frozen=True)
class ItemHeader:
    """The bookkeeping stored in front of the report."""

    id: str
    source: str = ""
    converter: str = ""
    queued_at: float = 0.0
    attempts: int = 0
    last_error: str = ""
    last_attempt_at: float | None = None
    # What the report is, to tell a second, different report under the same id from the same
    # report queued again (items written by older versions have neither: "").
    body_sha256: str = ""
    source_sha256: str = ""

    def to_json(self) -> bytes:
        return json.dumps(self.__dict__, ensure_ascii=False, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> ItemHeader:
        data = json.loads(raw)
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


@dataclass(frozen=True)
class Claimed:
    """An item taken for upload: its header and the report bytes to send."""

    header: ItemHeader
    body: bytes

    @property
    def id(self) -> str:
        return self.header.id


@dataclass(frozen=True)
class ItemInfo:
    """One line of `queue list`."""

    id: str
    state: State
    next_attempt: float  # epoch seconds (the file's mtime)
    header: ItemHeader | None  # None when the first line cannot be read


@dataclass(frozen=True)
class PutResult:
    id: str
    created: bool  # False: the same report id was already queued or uploaded
    state: State
    # Set when the id is taken by a *different* report: the header of the one stored first.
    clash: ItemHeader | None = None


def encode_item(header: ItemHeader, body: bytes) -> bytes:
    """The on-disk form of an item (see the module docstring)."""
    return b"".join(item_parts(header, (body,)))


def item_parts(header: ItemHeader, body: Sequence[bytes]) -> list[bytes]:
    """The on-disk form of an item whose body comes in pieces, as pieces."""
    head = header.to_json()
    digest = hashlib.sha256(head)
    for part in body:
        digest.update(part)
    return [_first_line_for(head, body_size(body), digest.hexdigest()) + head, *body, _END]


def _first_line_for(head: bytes, size: int, digest: str) -> bytes:
    """An item's first line: magic, header length, body length, digest of both."""
    return b"%s %d %d %s\n" % (_MAGIC, len(head), size, digest.encode())


class _LargeItem:
    """A large item file as read for an upload: its first line and header, and its body read
    on its own (`_read_item`), so that the body is never a copy of the file's bytes."""

    def __init__(self, prefix: bytes, body: bytes, end: bytes) -> None:
        self.prefix, self.body, self.end = prefix, body, end


def _read_item(path: Path) -> bytes | _LargeItem:
    """The bytes of an item file; a large one (over `LARGE_ITEM`) as a `_LargeItem`."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        if size <= LARGE_ITEM:  # the usual report: in one read, as `fsutil.read_file` does
            chunks = [os.read(fd, size + 1)]  # one more than expected: a short read is the end
            while len(chunks[-1]) > (size if len(chunks) == 1 else 0):
                chunks.append(os.read(fd, 1 << 16))
            return b"".join(chunks)
        first = os.pread(fd, _MAX_FIRST_LINE, 0)
        parts = first[:first.find(b"\n")].split(b" ")
        try:
            head_len, body_len = int(parts[1]), int(parts[2])
        except (IndexError, ValueError):
            return read_file(path)  # decode_item says what is wrong with it
        start = first.find(b"\n") + 1 + head_len
        if head_len < 0 or body_len < 0 or start + body_len + len(_END) != size:
            raise CorruptItemError(f"{path.name}: truncated or extended (torn write)")
        prefix = os.pread(fd, start, 0)
        body = os.pread(fd, body_len, start)
        end = os.pread(fd, size - start - len(body) + 1, start + len(body))
        return _LargeItem(prefix, body, end)
    finally:
        os.close(fd)


def decode_item(data: bytes | _LargeItem, *, name: str = "") -> tuple[ItemHeader, bytes]:
    """Check and split an item; raises CorruptItemError saying what is wrong."""
    if isinstance(data, _LargeItem):
        return _decode_large(data, name)
    end = data.find(b"\n", 0, _MAX_FIRST_LINE)
    head_len, body_len, checksum = _first_line(data[:end] if end >= 0 else b"", name)
    start = end + 1
    if (head_len < 0 or body_len < 0 or len(data) != start + head_len + body_len + len(_END)
            or not data.endswith(_END)):
        raise CorruptItemError(f"{name}: truncated or extended (torn write)")
    # Views, not slices: a large report is not copied to be checked.
    view = memoryview(data)
    head, body = view[start:start + head_len], view[start + head_len:len(data) - len(_END)]
    digest = hashlib.sha256(head)
    digest.update(body)
    if digest.hexdigest().encode() != checksum:
        raise CorruptItemError(f"{name}: checksum mismatch")
    try:
        return ItemHeader.from_json(bytes(head)), bytes(body)
    except (ValueError, TypeError) as exc:
        raise CorruptItemError(f"{name}: unreadable header ({exc})") from None


def _first_line(line: bytes, name: str) -> tuple[int, int, bytes]:
    """The header length, body length and checksum an item's first line gives."""
    parts = line.split(b" ")
    if len(parts) != 4 or parts[0] != _MAGIC:
        raise CorruptItemError(f"{name}: not a queue file (bad first line)")
    try:
        return int(parts[1]), int(parts[2]), parts[3]
    except ValueError:
        raise CorruptItemError(f"{name}: bad lengths in first line") from None


def _decode_large(item: _LargeItem, name: str) -> tuple[ItemHeader, bytes]:
    """`decode_item` for an item read in parts: the same checks, no copy of the body."""
    end = item.prefix.find(b"\n")
    head_len, body_len, checksum = _first_line(item.prefix[:end], name)
    head = item.prefix[end + 1:]
    if len(head) != head_len or len(item.body) != body_len or item.end != _END:
        raise CorruptItemError(f"{name}: truncated or extended (torn write)")
    digest = hashlib.sha256(head)
    digest.update(item.body)
    if digest.hexdigest().encode() != checksum:
        raise CorruptItemError(f"{name}: checksum mismatch")
    try:
        return ItemHeader.from_json(head), item.body
    except (ValueError, TypeError) as exc:
        raise CorruptItemError(f"{name}: unreadable header ({exc})") from None


def read_header(path: Path) -> ItemHeader:
    """The header of an item, reading only the first bytes (no report parsing)."""
    with open(path, "rb") as fh:
        first = fh.readline(_MAX_FIRST_LINE)
        parts = first.split(b" ")
        if len(parts) != 4 or parts[0] != _MAGIC:
            raise CorruptItemError(f"{path.name}: not a queue file (bad first line)")
        try:
            head = fh.read(int(parts[1]))
            return ItemHeader.from_json(head)
        except (ValueError, TypeError) as exc:
            raise CorruptItemError(f"{path.name}: unreadable header ({exc})") from None


class DurableQueue:
    """The queue of one instance. `put` is safe from any process; the rest belongs to the
    process holding the instance lock (the service, or a one-shot command)."""

    def __init__(
        self,
        root: Path,
        settings: QueueSettings | None = None,
        *,
        clock: Clock = SYSTEM_CLOCK,
        rng: random.Random | None = None,
    ) -> None:
        self.root = Path(root)
        self.settings = settings or QueueSettings()
        self.clock = clock
        self._rng = rng or random.Random()
        self._dirs = {name: self.root / name for name in FOLDERS}
        # Renames into these folders by concurrent workers share one folder fsync.
        self._syncers = {state: FolderSyncer(self._dirs[state.value])
                         for state in (State.PENDING, State.COMPLETED, State.FAILED)}

    # -- layout ---------------------------------------------------------------------------

    def folder(self, state: State) -> Path:
        return self._dirs[state.value]

    def ensure_layout(self) -> None:
        """Create the folders, and refuse a filesystem that cannot keep the promise."""
        for path in self._dirs.values():
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
        fstype = filesystem_type(self.root)
        if fstype in NETWORK_OR_WEAK_FILESYSTEMS and not self.settings.allow_network_filesystem:
            raise QueueError(
                f"the queue folder {self.root} is on a '{fstype}' filesystem, where a rename or "
                "fsync does not survive a power cut or a network drop. Move the data dir to a "
                "local disk (--data-dir), or set queue.allow_network_filesystem true to accept "
                "that reports may be lost or duplicated after such an event."
            )

    def _path(self, state: State, report_id: str) -> Path:
        return self._dirs[state.value] / f"{report_id}{SUFFIX}"

    # -- writing --------------------------------------------------------------------------

    def find(self, report_id: str) -> State | None:
        """The state holding `report_id`, or None (a few stats, no listing)."""
        name = f"{report_id}{SUFFIX}"
        for state in (State.PENDING, State.PROCESSING, State.COMPLETED, State.FAILED):
            # os.path on strings: this runs for every report queued, and Path objects would
            # cost more than the four stats themselves.
            if os.path.exists(os.path.join(self._dirs[state.value], name)):
                return state
        return None

    def put(
        self, body: bytes | Sequence[bytes], *, report_id: str, source: str = "",
        converter: str = "", source_sha256: str = "", body_sha256: str = "",
    ) -> PutResult:
        """(new) -> PENDING, durably. Returns once the report survives a power cut.

        A report id that is already pending, processing or completed is not written again:
        re-converting a source after a crash yields the same id, and it is already here. When
        the report stored under that id is a different one (see `clash`), the result says so
        in its `clash`. An id in failed/ is queued afresh (the operator dropped the file again
        on purpose). `source_sha256` is the digest of the source file the report was made from;
        `body_sha256` the body's, when the caller has it already (`body_digest`).
        `body` may come in pieces (`report.model.to_json_parts`), written as they are.
        Raises QueueFullError when the disk is full (nothing is left behind).
        """
        _check_id(report_id)
        existing = self.find(report_id)
        if existing in (State.PENDING, State.PROCESSING, State.COMPLETED):
            clash = self.clash(body, report_id=report_id, source_sha256=source_sha256,
                               body_sha256=body_sha256)
            return PutResult(report_id, False, existing, clash)
        header = ItemHeader(
            id=report_id, source=source, converter=converter, queued_at=self.clock.time(),
            body_sha256=body_sha256 or body_digest(body), source_sha256=source_sha256,
        )
        self._write(header, body, State.PENDING, not_before=None)
        if existing is State.FAILED:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path(State.FAILED, report_id))
        # At INFO a report costs one line, when it is stored (`complete`), naming its file and
        # converter; a report that cannot be sent is logged by `retry` and `fail`.
        log.debug("queued report %s from %s%s", report_id, source or "(api)",
                  f" ({converter})" if converter else "")
        return PutResult(report_id, True, State.PENDING)

    def clash(self, body: bytes | Sequence[bytes], *, report_id: str, source_sha256: str = "",
              body_sha256: str = "") -> ItemHeader | None:
        """The header of the report kept under `report_id` when it is not the report `body`
        (None when none is kept, or it is the same report).

        The same report is the same body, or one made from the same source file (converted
        again after a crash, when the station's settings may have changed meanwhile). Items
        written by older versions keep no digests: their body is compared.
        """
        for _ in range(4):  # an item may move between states while it is looked at
            state = self.find(report_id)
            if state not in (State.PENDING, State.PROCESSING, State.COMPLETED):
                return None
            path = self._path(state, report_id)
            try:
                header = read_header(path)
                stored = b"" if header.body_sha256 else decode_item(read_file(path))[1]
            except FileNotFoundError:
                continue
            except (OSError, CorruptItemError):
                return None  # the sweep or the next claim quarantines it; nothing to compare
            if header.body_sha256:
                if header.body_sha256 == (body_sha256 or body_digest(body)):
                    return None
            elif stored == (body if isinstance(body, bytes) else b"".join(body)):
                return None
            if source_sha256 and header.source_sha256 == source_sha256:
                return None
            return header
        return None

    def _write(
        self, header: ItemHeader, body: bytes | Sequence[bytes], state: State, *,
        not_before: float | None
    ) -> None:
        """tmp (O_EXCL, 0600) -> write -> fsync -> rename into `state` -> fsync(folder)."""
        tmp = self._dirs["tmp"] / f"{header.id}.{uuid.uuid4().hex[:12]}.tmp"
        try:
            if isinstance(body, bytes) or len(body) <= 1:  # a report in one piece: one write
                write_new_file(tmp, b"".join(item_parts(
                    header, (body,) if isinstance(body, bytes) else body)))
            else:  # a large one in pieces, never joined (they may be made as they are read)
                _write_new_parts(tmp, header, body)
            if not_before is not None:
                os.utime(tmp, (not_before, not_before))
            os.rename(tmp, self._path(state, header.id))
            self._syncers[state].sync()
        except (OSError, QueueFullError) as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if isinstance(exc, QueueFullError) or exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise QueueFullError(
                    f"disk full: report {header.id} was not queued in {self.root}; the source "
                    "file is kept and will be converted again when space is freed"
                ) from exc
            raise

    # -- the upload side ------------------------------------------------------------------

    def due(self, limit: int, now: float | None = None) -> tuple[list[str], float | None]:
        """Up to `limit` pending ids whose next-attempt time has come, oldest first, and the
        earliest next-attempt time of the rest (None if nothing else waits).

        Reads names and mtimes only; memory is bounded by `limit`, whatever the queue size.
        Zero-length files (a crash before any byte reached the disk) are quarantined here.
        """
        now = self.clock.time() if now is None else now
        # No retry waits longer than this; an item parked beyond it was parked by an older
        # version that obeyed a server's Retry-After of years, or by a clock that was wrong.
        horizon = now + self.settings.retry_max_delay
        ready: list[tuple[float, str]] = []
        later: float | None = None
        for entry in _scan(self._dirs[State.PENDING.value]):
            try:
                st = entry.stat()
            except FileNotFoundError:
                continue  # claimed or pruned meanwhile
            if st.st_size == 0:
                self._quarantine(Path(entry.path), "empty file")
                continue
            mtime = st.st_mtime
            if mtime > horizon:
                mtime = self._unpark(entry, horizon)
            if mtime <= now:
                item = (-mtime, entry.name)
                if len(ready) < limit:
                    heapq.heappush(ready, item)
                elif item > ready[0]:
                    heapq.heapreplace(ready, item)
            elif later is None or mtime < later:
                later = mtime
        ordered = sorted(ready, reverse=True)
        return [name[: -len(SUFFIX)] for _, name in ordered], later

    def _unpark(self, entry: os.DirEntry[str], horizon: float) -> float:
        """Bring a pending item's next attempt forward to `horizon`; returns its time now."""
        try:
            os.utime(entry.path, (horizon, horizon))
        except FileNotFoundError:
            return horizon  # claimed meanwhile: it is not waiting any more
        log.warning("report %s was parked beyond queue.retry_max_delay (%s); next attempt "
                    "brought forward to then", entry.name[: -len(SUFFIX)],
                    _duration(self.settings.retry_max_delay))
        return horizon

    def claim(self, report_id: str) -> Claimed | None:
        """PENDING -> PROCESSING. None if the item is gone or was corrupt (quarantined).

        The rename is not fsynced: if a power cut undoes it, the item is simply pending again.
        """
        src, dst = self._path(State.PENDING, report_id), self._path(State.PROCESSING, report_id)
        try:
            os.rename(src, dst)
        except FileNotFoundError:
            return None
        try:
            header, body = decode_item(_read_item(dst), name=dst.name)
            if header.id != report_id:
                raise CorruptItemError(f"{dst.name}: holds report {header.id}")
        except CorruptItemError as exc:
            self._quarantine(dst, str(exc))
            return None
        return Claimed(header, body)

    def complete(self, item: Claimed, *, sync: bool = True) -> None:
        """PROCESSING -> COMPLETED: the server stored it.

        `sync=False` leaves the folder's fsync to a later `complete()` (the caller's promise:
        one follows soon, and covers this move too)."""
        dst = self._path(State.COMPLETED, item.id)
        os.rename(self._path(State.PROCESSING, item.id), dst)
        now = self.clock.time()
        with contextlib.suppress(OSError):
            os.utime(dst, (now, now))  # completion time, for pruning
        if sync:
            self._syncers[State.COMPLETED].sync()
        header = item.header
        log.info("report %s from %s%s uploaded", item.id, header.source or "(api)",
                 f" ({header.converter})" if header.converter else "")

    def release(self, item: Claimed) -> None:
        """PROCESSING -> PENDING, untouched: offline or paused, no attempt is consumed."""
        os.rename(self._path(State.PROCESSING, item.id), self._path(State.PENDING, item.id))
        log.debug("report %s back to pending, attempt not counted", item.id)

    def retry(self, item: Claimed, error: str, retry_after: float | None = None) -> State:
        """PROCESSING -> PENDING with a later next-attempt time, or -> FAILED when the item is
        out of lifetime (queue.max_age) or of attempts (queue.retry_attempts > 0)."""
        now = self.clock.time()
        attempts = item.header.attempts + 1
        header = replace(item.header, attempts=attempts, last_error=error, last_attempt_at=now)
        age = now - item.header.queued_at
        cap = self.settings.retry_attempts
        if age >= self.settings.max_age:
            return self._to_failed(
                item, header, f"gave up after {_duration(age)} in the queue; last error: {error}"
            )
        if cap > 0 and attempts >= cap:
            return self._to_failed(
                item, header, f"gave up after {attempts} attempts; last error: {error}"
            )
        delay = self.backoff(attempts)
        if retry_after is not None:
            limit = self.settings.retry_max_delay
            if retry_after > limit:  # a server asking for years must not park the report
                log.warning("report %s: the server asked to wait %.0fs (Retry-After); waiting "
                            "at most %s (queue.retry_max_delay)", item.id, retry_after,
                            _duration(limit))
            delay = max(delay, min(retry_after, limit))
        # PROCESSING -> PENDING (rewritten: attempts and error change)
        self._write(header, item.body, State.PENDING, not_before=now + delay)
        self._drop_processing(item.id)
        log.warning(
            "report %s: %s; attempt %d, next try in %s", item.id, error, attempts, _duration(delay)
        )
        return State.PENDING

    def fail(self, item: Claimed, reason: str) -> None:
        """PROCESSING -> FAILED: the server rejected the report itself."""
        header = replace(
            item.header,
            attempts=item.header.attempts + 1,
            last_error=reason,
            last_attempt_at=self.clock.time(),
        )
        self._to_failed(item, header, reason)

    def _to_failed(self, item: Claimed, header: ItemHeader, reason: str) -> State:
        header = replace(header, last_error=reason)
        self._write(header, item.body, State.FAILED, not_before=None)
        self._drop_processing(item.id)
        log.error("report %s failed: %s (source %s)", item.id, reason, item.header.source or "-")
        return State.FAILED

    def _drop_processing(self, report_id: str) -> None:
        # The rewritten copy is already durable in its new state; if this unlink is lost in a
        # crash, the start-up sweep finds both and keeps the newer one.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(State.PROCESSING, report_id))

    def backoff(self, attempts: int) -> float:
        """Seconds before attempt `attempts + 1`: exponential from retry_delay, capped at
        retry_max_delay, with ±20 % jitter so a fleet of stations does not retry in step."""
        s = self.settings
        base = min(s.retry_delay * (2 ** min(max(attempts - 1, 0), 30)), s.retry_max_delay)
        return min(base * self._rng.uniform(0.8, 1.2), s.retry_max_delay)

    # -- recovery and housekeeping --------------------------------------------------------

    def sweep(self) -> dict[str, int]:
        """Start-up recovery, before any work: clear tmp/, put processing/ back to pending/
        (an interrupted upload is retried), quarantine unreadable processing files."""
        counts = {"tmp_removed": 0, "requeued": 0, "corrupt": 0, "duplicates_dropped": 0}
        for entry in _scan(self._dirs["tmp"], suffix=""):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
                counts["tmp_removed"] += 1
        for entry in _scan(self._dirs[State.PROCESSING.value]):
            path = Path(entry.path)
            report_id = entry.name[: -len(SUFFIX)]
            later = [s for s in (State.PENDING, State.FAILED) if self._path(s, report_id).exists()]
            if later:
                # A rewrite into pending/ or failed/ finished but the unlink did not.
                os.unlink(path)
                counts["duplicates_dropped"] += 1
                continue
            try:
                decode_item(path.read_bytes(), name=entry.name)
            except CorruptItemError as exc:
                self._quarantine(path, str(exc))
                counts["corrupt"] += 1
                continue
            # PROCESSING -> PENDING (interrupted upload; it may have been stored: same id)
            os.rename(path, self._path(State.PENDING, report_id))
            counts["requeued"] += 1
        for name in ("tmp", State.PENDING.value):
            fsync_dir(self._dirs[name])
        if any(counts.values()):
            log.info("queue start-up sweep: %s", counts)
        return counts

    def _quarantine(self, path: Path, why: str) -> None:
        """any -> CORRUPT. Never deleted: a human may recover the report from it."""
        dst = self._dirs[State.CORRUPT.value] / f"{path.name}.{uuid.uuid4().hex[:8]}"
        try:
            os.rename(path, dst)
        except FileNotFoundError:
            return
        log.error("queue file %s is damaged (%s); moved to %s", path.name, why, dst)

    def counts(self) -> dict[State, int]:
        """Items per state: one directory listing each, no stat, no open."""
        return {s: sum(1 for _ in _scan(self._dirs[s.value], suffix="")) for s in State}

    def list(self, state: State, *, limit: int = 20, offset: int = 0) -> list[ItemInfo]:
        """Items of one state, by next-attempt time (pending) or by age; reads only the
        headers of the items returned."""
        entries: list[tuple[float, str]] = []
        for entry in _scan(self._dirs[state.value], suffix=""):
            with contextlib.suppress(FileNotFoundError):
                entries.append((entry.stat().st_mtime, entry.name))
        chosen = heapq.nsmallest(offset + limit, entries)[offset:]
        result = []
        for mtime, name in chosen:
            path = self._dirs[state.value] / name
            header: ItemHeader | None
            try:
                header = read_header(path)
            except (OSError, CorruptItemError):
                header = None
            result.append(ItemInfo(name.split(".", 1)[0], state, mtime, header))
        return result

    def retry_failed(self) -> int:
        """FAILED -> PENDING for every failed item, with attempts reset and a fresh lifetime."""
        moved = 0
        for entry in _scan(self._dirs[State.FAILED.value]):
            path = Path(entry.path)
            try:
                header, body = decode_item(path.read_bytes(), name=entry.name)
            except CorruptItemError as exc:
                self._quarantine(path, str(exc))
                continue
            except FileNotFoundError:
                continue
            fresh = replace(header, attempts=0, queued_at=self.clock.time())
            # FAILED -> PENDING
            self._write(fresh, body, State.PENDING, not_before=None)
            os.unlink(path)
            moved += 1
        if moved:
            log.info("%d failed report(s) queued again", moved)
        return moved

    def clear_completed(self) -> int:
        """COMPLETED -> gone, all of them."""
        return self._prune(State.COMPLETED, older_than=None)

    def prune(self) -> dict[State, int]:
        """Remove completed and failed items past their retention periods (0 days: keep)."""
        now, s = self.clock.time(), self.settings
        removed = {}
        for state, days in ((State.COMPLETED, s.completed_retention_days),
                            (State.FAILED, s.failed_retention_days)):
            removed[state] = self._prune(state, now - days * 86400) if days > 0 else 0
        return removed

    def _prune(self, state: State, older_than: float | None) -> int:
        removed = 0
        for entry in _scan(self._dirs[state.value]):
            try:
                if older_than is None or entry.stat().st_mtime < older_than:
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                continue
        if removed:
            log.info("removed %d %s item(s)", removed, state.value)
        return removed


def _write_new_parts(path: Path, header: ItemHeader, body: Sequence[bytes]) -> None:
    """`fsutil.write_new_file` for an item whose body comes in pieces: create, write each
    piece once, fsync; on any error the partial file is removed (a full disk is a
    QueueFullError).

    The first line, whose digest covers the header and the body, is written last, over a
    placeholder of the same length: the pieces are read once, and need not all be in
    memory. A body that turns out not to be the one in the header (it changed while it was
    written) is refused with a QueueError, leaving nothing behind.
    """
    head = header.to_json()
    size = body_size(body)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        _write_all(fd, _first_line_for(head, size, "0" * 64) + head)
        item, check, written = hashlib.sha256(head), hashlib.sha256(), 0
        for part in body:
            _write_all(fd, part)
            item.update(part)
            check.update(part)
            written += len(part)
        if written != size or check.hexdigest() != header.body_sha256:
            raise QueueError(f"report {header.id} changed while it was being queued; it was "
                             "not queued")
        _write_all(fd, _END)
        os.pwrite(fd, _first_line_for(head, size, item.hexdigest()), 0)
        os.fsync(fd)
    except (OSError, QueueError) as exc:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise QueueFullError(f"no space left to write {path}") from exc
        raise
    os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _scan(folder: Path, suffix: str = SUFFIX) -> Iterator[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as it:
            for entry in it:
                if entry.name.endswith(suffix) and not entry.name.startswith("."):
                    yield entry
    except FileNotFoundError:
        return


def body_digest(body: bytes | Sequence[bytes]) -> str:
    """The SHA-256 (hex) of a report's JSON, whole or in pieces. Pieces made as they are read
    (`report.model.JsonPieces`) know it already: it is not made again."""
    if isinstance(body, bytes):
        return hashlib.sha256(body).hexdigest()
    known = getattr(body, "sha256", None)
    if isinstance(known, str):
        return known
    digest = hashlib.sha256()
    for part in body:
        digest.update(part)
    return digest.hexdigest()


def body_size(body: Sequence[bytes]) -> int:
    """The length of a report's JSON in pieces (known already when they are made as read)."""
    known = getattr(body, "size", None)
    return known if isinstance(known, int) else sum(map(len, body))


def _check_id(report_id: str) -> None:
    try:
        uuid.UUID(report_id)
    except (ValueError, AttributeError, TypeError):
        raise QueueError(f"report id {report_id!r} is not a GUID") from None


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f}min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f} days"

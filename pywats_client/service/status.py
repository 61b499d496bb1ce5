"""What the service and each run report: `ServiceStatus`, written to state/status.json (a view,
replaced atomically without fsync) and served by the control API; `RunSummary`, what one run or
drain did; and the count of the files waiting in the watch folders' error folders.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import os
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pywats_client.fsutil import open_dir, open_regular
from pywats_client.outcomes import Outcome, ServerState
from pywats_client.service.postaction import ERROR_NOTE_SUFFIX

if TYPE_CHECKING:
    from pywats_client.service.uploader import UploadResult

STATUS_FILE = "status.json"
RECENT = 20  # uploads and failures remembered for the status page and /status
MAX_REASON = 500  # characters of a failure reason kept (server messages can be long)
ERROR_FILES_SHOWN = 5  # the newest files in the error folders, named in the status
ERROR_COUNT_INTERVAL = 5.0  # seconds between two counts of the error folders by the service
_NOTE_READ = 4096  # bytes of a note read for its reason


@dataclass
class ServiceStatus:
    """The service's own view of its health. Mutated only by the service's main thread."""

    pid: int = field(default_factory=os.getpid)
    version: str = ""
    started_at: float = field(default_factory=time.time)
    updated_at: float = 0.0
    state: str = "starting"  # starting | running | stopping | stopped
    supervisor: str = "foreground"  # foreground | daemon | systemd
    server: ServerState = ServerState.UNKNOWN
    server_detail: str = ""  # why offline or paused, in words
    disk_full: bool = False  # a report could not be written: the disk is full
    disk_free_mb: float | None = None  # free space where the queue lives
    disk_low: bool = False  # below the warning threshold
    folders_unavailable: list[str] = field(default_factory=list)  # missing or unmounted
    last_upload_at: float | None = None
    last_upload_id: str = ""
    last_error_at: float | None = None
    last_error: str = ""
    uploaded: int = 0
    upload_failures: dict[str, int] = field(default_factory=dict)  # by outcome
    rejected: int = 0
    converted: int = 0
    conversion_errors: int = 0
    folder_problems: int = 0  # done/error folders refused: a link, not a folder, or protected
    id_clashes: int = 0  # files whose report id another report had taken: in the error folder
    waiting_for_processes: int = 0  # files naming a process, waiting for the process list
    watching: int = 0  # files seen but not yet stable
    # Files waiting in the watch folders' error folders (put there by any run, or by hand),
    # and the newest few: {"path", "at", "reason"} (reason: from its .error.txt note).
    error_files: int = 0
    error_files_newest: list[dict[str, Any]] = field(default_factory=list)
    api_url: str = ""  # where the control API listens (the real port when 0 was asked for)
    # Newest first, at most RECENT each: {"at", "report_id", "source"} and
    # {"at", "kind", "report_id", "source", "reason"} (kind: an upload outcome, "conversion"
    # or "disk_full").
    recent_uploads: list[dict[str, Any]] = field(default_factory=list)
    recent_failures: list[dict[str, Any]] = field(default_factory=list)
    # Faults of the station, not of a file (the files wait where they are), and what the
    # service set aside to protect itself.
    station_fault: str = ""  # why reports cannot be written to the queue (other than disk full)
    station_fault_since: float | None = None
    conversions_timed_out: int = 0  # given up after converters.timeout_s, files set aside
    stuck_conversions: int = 0  # of those, threads still running
    conversions_paused: bool = False  # too many stuck threads: no new conversions for now
    poison_files: int = 0  # set aside: the service died while converting them, max_crashes times

    def record_error(self, message: str, when: float) -> None:
        self.last_error, self.last_error_at = message, when

    def record_upload(self, report_id: str, when: float, source: str = "") -> None:
        """A report the server stored."""
        self.last_upload_at, self.last_upload_id = when, report_id
        self.recent_uploads.insert(0, {"at": when, "report_id": report_id, "source": source})
        del self.recent_uploads[RECENT:]

    def record_failure(self, kind: str, reason: str, when: float, *, report_id: str = "",
                       source: str = "") -> None:
        """Something that went wrong with one report or file: it becomes `last_error` and
        heads the recent failures."""
        subject = f"report {report_id}" if report_id else source
        self.record_error(f"{subject}: {reason}" if subject else reason, when)
        self.recent_failures.insert(0, {"at": when, "kind": kind, "report_id": report_id,
                                        "source": source, "reason": reason[:MAX_REASON]})
        del self.recent_failures[RECENT:]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ReportResult:
    """What became of one report a drain was given."""

    id: str
    state: str  # its queue state now (completed, failed, pending, processing), or "unknown"
    outcome: Outcome | None = None  # of its upload; None when it was not sent by this run
    http_status: int | None = None
    message: str = ""


@dataclass
class RunSummary:
    """What one run did: `start --once`, `upload`, `ReportQueue.process_all()` (documented
    there as `ProcessSummary`), and the stop of a `WATSClient` or `QueueService`. Every way of
    uploading tallies its uploads here, through `record()`."""

    converted: int = 0
    conversion_errors: int = 0
    uploaded: int = 0
    rejected: int = 0  # refused by the server: now in failed/ with its reason
    retry_later: int = 0  # transient trouble: back in pending/ with a later next attempt
    server: ServerState = ServerState.UNKNOWN  # as the run left it
    message: str = ""  # why offline or paused, in words
    remaining: dict[str, int] = field(default_factory=dict)  # queue counts but completed
    reports: list[ReportResult] = field(default_factory=list)  # each report a drain was given

    @property
    def server_detail(self) -> str:
        """`message`, by the name the service's status gives it."""
        return self.message

    @property
    def ok(self) -> bool:
        return self.server.can_send and self.conversion_errors == 0

    def record(self, result: UploadResult) -> None:
        """Tally one upload's outcome, and what it says about the server."""
        if result.outcome is Outcome.STORED:
            self.uploaded += 1
        elif result.outcome is Outcome.REJECTED:
            self.rejected += 1
        elif result.outcome is Outcome.TRANSIENT:
            self.retry_later += 1
        state = ServerState.after(result.outcome)
        if state is not None:
            self.server = state
            self.message = "" if state is ServerState.ONLINE else result.message

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["server"] = self.server.value
        for report in data["reports"]:
            report["outcome"] = report["outcome"].value if report["outcome"] else None
        return data


def count_error_files(folders: Iterable[Path], newest: int = ERROR_FILES_SHOWN
                      ) -> tuple[int, list[dict[str, Any]]]:
    """(how many files wait in `folders`, the `newest` of them with the reason their note
    gives). One scandir per folder; the notes (`.error.txt`) and hidden files do not count."""
    count = 0
    heap: list[tuple[float, str]] = []  # the newest, at most `newest` of them
    for folder in dict.fromkeys(folders):  # two watch folders may share one error folder
        try:
            # A watch-folder writer may have made error/ a link: then it is not ours to read.
            fd = open_dir(folder)
        except OSError:
            continue  # no error folder yet, the share is away, or it is a link or no folder
        try:
            with os.scandir(fd) as entries:
                for entry in entries:
                    if entry.name.startswith(".") or entry.name.endswith(ERROR_NOTE_SUFFIX):
                        continue
                    try:
                        if not entry.is_file(follow_symlinks=False):
                            continue
                        mtime = entry.stat(follow_symlinks=False).st_mtime
                    except OSError:
                        continue  # gone meanwhile
                    count += 1
                    item = (mtime, os.path.join(folder, entry.name))
                    if len(heap) < newest:
                        heapq.heappush(heap, item)
                    elif heap and mtime > heap[0][0]:
                        heapq.heapreplace(heap, item)
        except OSError:
            continue
        finally:
            os.close(fd)
    shown = [{"path": path, "at": mtime, "reason": _note_reason(Path(path))}
             for mtime, path in sorted(heap, reverse=True)]
    return count, shown


def _note_reason(path: Path) -> str:
    """The reason a file's note gives: the first line under "What happened:", or the note's
    first line when it has no such heading ("" when there is no note, or it is no file)."""
    try:
        fd, _ = open_regular(f"{path}{ERROR_NOTE_SUFFIX}")
    except OSError:
        return ""
    with os.fdopen(fd, "rb") as note:
        text = note.read(_NOTE_READ).decode("utf-8", "replace")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for at, line in enumerate(lines[:-1]):
        if line.lower() == "what happened:":
            return lines[at + 1][:MAX_REASON]
    return lines[0][:MAX_REASON] if lines else ""


def write_status(state_dir: Path, status: ServiceStatus) -> None:
    """Replace state/status.json; readers see the old or the new file, never half of one."""
    status.updated_at = time.time()
    state_dir.mkdir(parents=True, exist_ok=True)
    tmp = state_dir / f".{STATUS_FILE}.{os.getpid()}"
    tmp.write_text(json.dumps(status.to_dict(), indent=1), encoding="utf-8")
    os.replace(tmp, state_dir / STATUS_FILE)


def read_status(state_dir: Path) -> dict[str, Any] | None:
    """The last status the service wrote, or None when there is none (never started)."""
    with contextlib.suppress(FileNotFoundError, ValueError):
        data = json.loads((state_dir / STATUS_FILE).read_text(encoding="utf-8"))
        if isinstance(data, dict):
            return data
    return None

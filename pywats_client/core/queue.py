"""`ReportQueue`: the instance's durable queue for Python programs, in the service's own folders
and transitions. Adding is safe at any time, also while the service runs; `process_all()`
uploads through the one drain path and needs the instance (`LockError` while another owns it).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pywats_client.config.settings import Settings
from pywats_client.converters import ConverterContext, ConverterRegistry
from pywats_client.core.config import ClientConfig, resolve_config
from pywats_client.errors import ReportIdClashError, ReportValidationError
from pywats_client.outcomes import ServerState
from pywats_client.queue.lock import InstanceLock
from pywats_client.queue.store import DurableQueue, State
from pywats_client.report.builder import apply_context
from pywats_client.report.checks import finalize
from pywats_client.report.model import to_json_bytes
from pywats_client.service import process_table
from pywats_client.service.drain import drain
from pywats_client.service.pipeline import convert_source, queue_reports
from pywats_client.service.status import RunSummary
from pywats_client.service.uploader import require_server, uploader_for

log = logging.getLogger(__name__)

# The converter name that goes into the id of a report queued from Python (not from a file).
API_SOURCE = "python-api"


@dataclass(frozen=True)
class QueueStatus:
    """How many reports are in each state (counted from the folders, nothing opened)."""

    pending_count: int
    processing_count: int
    completed_count: int
    failed_count: int
    corrupt_count: int

    def to_dict(self) -> dict[str, int]:
        return {"pending": self.pending_count, "processing": self.processing_count,
                "completed": self.completed_count, "failed": self.failed_count,
                "corrupt": self.corrupt_count}


@dataclass(frozen=True)
class QueuedReport:
    """One report of `ReportQueue.list()`."""

    id: str
    state: str
    source: str  # the file it was converted from ("" for one queued from Python)
    attempts: int | None  # None when the queue file's header cannot be read
    last_error: str
    next_attempt: float  # epoch seconds; for pending reports, when the next upload is due


# What `process_all()` returns: the summary every way of uploading gives (uploaded, rejected,
# retry_later, server, message, remaining, to_dict()).
ProcessSummary = RunSummary


class ReportQueue:
    """The queue of one instance, named by a config file, an instance name or a
    `ClientConfig` (default: the default instance).

    `add()` queues a file (converted as the service would) or a report (a `UUTReport`, a
    `UURReport` or a WSJF dict) durably and returns its id; `get_status()`, `list()`,
    `retry_failed()`, `clear_completed()` look after it; `process_all()` uploads what is due,
    now, on the calling thread.
    """

    def __init__(self, config: ClientConfig | str | Path | None = None, *,
                 data_dir: str | Path | None = None) -> None:
        self.config = resolve_config(config, data_dir)
        self.paths = self.config.paths
        self.settings: Settings = self.config.settings()
        self._queue = DurableQueue(self.paths.queue, self.settings.queue)

    def __repr__(self) -> str:
        return f"ReportQueue({str(self.paths.queue)!r})"

    @property
    def folder(self) -> Path:
        """The queue folder (pending/, processing/, completed/, failed/ inside)."""
        return self.paths.queue

    # -- adding ------------------------------------------------------------------------------

    def add(self, item: str | Path | Mapping[str, Any] | object, *,
            converter: str | None = None) -> str:
        """Queue a report durably and return its id.

        `item` is a file path (converted as the service would: the folder binding is not
        known here, so `converter` names one, else the content decides; the file itself is
        left where it is), a report object with `to_wsjf()`/`to_dict()`, or a WSJF dict. A
        report gets the station fields from the config and, without an `id`, one derived
        from its content, so adding the same report twice queues it once. For a file holding
        several reports the first id is returned; `add_file()` returns them all.
        """
        if isinstance(item, (str, Path)):
            return self.add_file(item, converter=converter)[0]
        if converter is not None:
            raise TypeError("converter= is for files; a report object or dict is queued as is")
        return self._add_report(item)

    def add_file(self, path: str | Path, *, converter: str | None = None) -> list[str]:
        """Convert a file and queue every report in it; returns their ids."""
        source = Path(path)
        if not source.is_file():
            raise FileNotFoundError(f"{source}: no such file to queue (give the path of one "
                                    "result file)")
        registry = ConverterRegistry(enabled=self.settings.converters.enabled,
                                     plugin_dir=self.paths.converters)
        conversion = convert_source(self.settings, registry, source, None,
                                    converter_name=converter,
                                    processes=process_table.load(self.paths.state))
        self._queue.ensure_layout()
        return [result.id for result in queue_reports(self._queue, conversion)]

    def _add_report(self, item: object) -> str:
        context = self._context()
        if isinstance(item, Mapping):
            report = dict(item)
        else:
            serialise = getattr(item, "to_wsjf", None) or getattr(item, "to_dict", None)
            if not callable(serialise):
                raise TypeError(f"cannot queue a {type(item).__name__}: give a file path, a "
                                "UUTReport/UURReport or a WSJF dict")
            report = serialise()
            if not isinstance(report, dict):
                raise TypeError(f"{type(item).__name__}.to_wsjf() gave "
                                f"{type(report).__name__}, not a WSJF dict")
            apply_context(report, context)
        if not report.get("start"):
            sn = report.get("sn") or "?"
            raise ReportValidationError(
                f"report sn {sn!r} has no start time: give start_date_time (the time the test "
                "began, as the equipment knows it); the queue does not invent one")
        digest = hashlib.sha256(json.dumps(report, sort_keys=True, default=str).encode())
        finished = finalize(report, context=context, converter_name=API_SOURCE,
                            content_sha256=digest.hexdigest(), index=0)
        self._queue.ensure_layout()
        result = self._queue.put(to_json_bytes(finished), report_id=finished["id"],
                                 source="", converter=API_SOURCE)
        if result.clash is not None:
            first = result.clash.source or "the library"
            raise ReportIdClashError(
                f"report id {result.id} is already used by a different report (from {first}); "
                "WATS would keep only one of them. Give each report its own id, or leave it "
                "out and one is made from the report's content")
        if not result.created:
            log.info("report %s is already %s; not queued twice", result.id,
                     result.state.value)
        return result.id

    def _context(self) -> ConverterContext:
        s = self.settings
        return ConverterContext(station_name=s.station_name, location=s.station_location,
                                purpose=s.station_purpose, defaults=dict(s.converters.defaults),
                                processes=process_table.load(self.paths.state))

    # -- looking -------------------------------------------------------------------------------

    def get_status(self) -> QueueStatus:
        """Reports per state, counted from the folders."""
        counts = self._queue.counts() if self.paths.queue.exists() else {}
        return QueueStatus(*(counts.get(state, 0) for state in (
            State.PENDING, State.PROCESSING, State.COMPLETED, State.FAILED, State.CORRUPT)))

    def list(self, state: str | State = State.PENDING, *, limit: int = 20,
             offset: int = 0) -> list[QueuedReport]:
        """Reports of one state ("pending", "processing", "completed", "failed", "corrupt"):
        pending by next-attempt time, the others oldest first."""
        try:
            wanted = State(state)
        except ValueError:
            raise ValueError(f"unknown queue state {state!r}; use one of "
                             f"{', '.join(s.value for s in State)}") from None
        return [QueuedReport(
            id=item.id, state=item.state.value,
            source=item.header.source if item.header else "",
            attempts=item.header.attempts if item.header else None,
            last_error=item.header.last_error if item.header else "unreadable header",
            next_attempt=item.next_attempt,
        ) for item in self._queue.list(wanted, limit=limit, offset=offset)]

    # -- looking after it ----------------------------------------------------------------------

    def retry_failed(self) -> int:
        """Queue every failed report again (attempts reset, fresh lifetime); returns how
        many. Like `pywats-client queue retry-failed`, allowed while the service runs."""
        return self._queue.retry_failed() if self.paths.queue.exists() else 0

    def clear_completed(self) -> int:
        """Delete every uploaded report kept in completed/; returns how many."""
        return self._queue.clear_completed() if self.paths.queue.exists() else 0

    def process_all(self) -> ProcessSummary:
        """Upload every report that is due, now, one after the other; return what happened.

        Takes the instance lock for the duration: `LockError` while the service (or another
        drain) owns the queue — then the service is uploading anyway. Stops early when the
        server is unreachable or refuses the credentials (`server` "offline" or "paused",
        `message` says why); those reports stay pending, no attempt counted. Otherwise `server`
        is "online". Reports rejected by the server go to failed/ with its reason.
        """
        require_server(self.settings, self.config.path)
        lock = InstanceLock(self.paths.lock, self.paths.name)
        lock.acquire("python process_all")
        try:
            self._queue.ensure_layout()
            self._queue.sweep()  # we own the queue: an interrupted upload goes back first
            client = uploader_for(self.settings)
            try:
                summary = drain(self._queue, client)
            finally:
                client.close()
        finally:
            lock.release()
        if summary.server is ServerState.UNKNOWN:
            # Nothing due, or only reports the server answered about themselves: nothing
            # stood in the way, which is what "online" has always meant here.
            summary.server = ServerState.ONLINE
        return summary

"""The one drain path (`upload`, `ReportQueue.process_all()`): each report claimed, sent and
moved by the dispatcher's own transitions, tallied into one `RunSummary`; a real queue and a
scripted server."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from pywats_client.outcomes import Outcome, ServerState
from pywats_client.queue.store import DurableQueue, State
from pywats_client.service.drain import drain
from pywats_client.service.uploader import UploadResult
from tests.fakes import ScriptedUploader
from tests.station import wsjf_report

STORED = UploadResult(Outcome.STORED, 200, "WATS stored it (HTTP 200)")
REJECTED = UploadResult(Outcome.REJECTED, 400, "WATS rejected it (HTTP 400): no serial number")
BUSY = UploadResult(Outcome.TRANSIENT, 503, "WATS could not take it now (HTTP 503)")
OFFLINE = UploadResult(Outcome.OFFLINE, None, "cannot reach WATS: connection refused")


def queue_of(root: Path, reports: int) -> tuple[DurableQueue, list[str]]:
    queue = DurableQueue(root / "queue")
    queue.ensure_layout()
    ids = [str(uuid.uuid4()) for _ in range(reports)]
    for n, report_id in enumerate(ids):
        queue.put(json.dumps(wsjf_report(n, report_id=report_id)).encode(), report_id=report_id)
    return queue, ids


def test_each_outcome_is_tallied_and_moves_its_report(tmp_path: Path) -> None:
    queue, ids = queue_of(tmp_path, 3)
    server = ScriptedUploader(uploads=[STORED, REJECTED, BUSY])
    summary = drain(queue, server)  # type: ignore[arg-type]
    assert sorted(server.sent) == sorted(ids)
    assert (summary.uploaded, summary.rejected, summary.retry_later) == (1, 1, 1)
    assert summary.server is ServerState.ONLINE and summary.message == ""
    assert summary.remaining == {"pending": 1, "processing": 0, "failed": 1, "corrupt": 0}
    assert summary.reports == []  # listed only for reports the caller named
    [failed] = queue.list(State.FAILED)
    assert failed.id == server.sent[1] and "no serial number" in failed.header.last_error
    assert json.loads(json.dumps(summary.to_dict()))["server"] == "online"


def test_given_reports_stop_at_an_offline_server_with_no_attempt_counted(tmp_path: Path
                                                                         ) -> None:
    queue, ids = queue_of(tmp_path, 3)
    server = ScriptedUploader(uploads=[OFFLINE])
    summary = drain(queue, server, ids)  # type: ignore[arg-type]
    assert server.sent == [ids[0]]  # nothing else would get through
    assert summary.server is ServerState.OFFLINE and "cannot reach" in summary.message
    first, *rest = summary.reports
    assert (first.id, first.state, first.outcome) == (ids[0], "pending", Outcome.OFFLINE)
    assert [(r.id, r.state, r.outcome) for r in rest] == [(i, "pending", None) for i in ids[1:]]
    assert all(r.message.startswith("not sent: cannot reach") for r in rest)
    assert sorted(item.header.attempts for item in queue.list(State.PENDING)) == [0, 0, 0]


def test_a_given_report_already_sent_is_said_so(tmp_path: Path) -> None:
    queue, [report_id] = queue_of(tmp_path, 1)
    assert drain(queue, ScriptedUploader(), [report_id]).uploaded == 1  # type: ignore[arg-type]
    again = ScriptedUploader()
    summary = drain(queue, again, [report_id])  # type: ignore[arg-type]
    assert again.sent == [] and summary.uploaded == 0
    [report] = summary.reports
    assert (report.state, report.message) == ("completed", "already completed")

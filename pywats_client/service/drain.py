"""Uploading now, on the calling thread: the one drain path of `upload`,
`ReportQueue.process_all()` and scripts. Claims each report, sends it and makes the dispatcher's
own queue transition, tallying into a `RunSummary`; the running service uses its upload pool.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from pywats_client.queue.store import DurableQueue, State
from pywats_client.service.dispatcher import SCAN_BATCH, post, transition
from pywats_client.service.status import ReportResult, RunSummary
from pywats_client.service.uploader import Uploader


def drain(queue: DurableQueue, client: Uploader, ids: Sequence[str] | None = None
          ) -> RunSummary:
    """Upload `ids`, or every due report when None, one after the other; return the summary.

    The caller owns the queue (holds the instance lock) and the client. Once the server is
    unreachable or refuses the credentials nothing more is sent: those reports stay pending
    with no attempt counted. With `ids`, `reports` tells what became of each of them.
    """
    summary = RunSummary()
    for report_id in _due(queue) if ids is None else ids:
        if not summary.server.can_send:
            if ids is None:
                break
            summary.reports.append(_as_found(queue, report_id, f"not sent: {summary.message}"))
            continue
        item = queue.claim(report_id)  # PENDING -> PROCESSING
        if item is None:  # already sent, quarantined as corrupt, or gone
            if ids is not None:
                summary.reports.append(_as_found(queue, report_id, ""))
            continue
        result = post(client, item)
        state = transition(queue, item, result)
        summary.record(result)
        if ids is not None:
            summary.reports.append(ReportResult(
                report_id, state.value if state else State.PROCESSING.value, result.outcome,
                result.status, result.message))
    summary.remaining = remaining(queue)
    return summary


def _as_found(queue: DurableQueue, report_id: str, why_pending: str) -> ReportResult:
    """A report this drain did not send, as it is in the queue."""
    state = queue.find(report_id)
    if state is State.PENDING and why_pending:
        return ReportResult(report_id, state.value, message=why_pending)
    return ReportResult(report_id, state.value if state else "unknown",
                        message="already " + (state.value if state else "gone"))


def _due(queue: DurableQueue) -> Iterator[str]:
    """Each due report once, oldest first, a batch at a time."""
    tried: set[str] = set()
    while True:
        due, _ = queue.due(SCAN_BATCH)
        fresh = [report_id for report_id in due if report_id not in tried]
        if not fresh:
            return
        tried.update(fresh)
        yield from fresh


def remaining(queue: DurableQueue) -> dict[str, int]:
    """Reports left in the queue, by state (completed ones are done, not left)."""
    return {state.value: n for state, n in queue.counts().items()
            if state is not State.COMPLETED}

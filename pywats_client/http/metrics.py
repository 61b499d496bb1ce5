"""Prometheus metrics: the service's status snapshot and queue counts as exposition text (format
0.0.4) — the metric names, their HELP texts and types. Counters restart with the process;
`pywats_start_time_seconds` says when.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from pywats_client.outcomes import Outcome, ServerState

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

UPLOAD_OUTCOMES = tuple(outcome.value for outcome in (
    Outcome.STORED, Outcome.REJECTED, Outcome.TRANSIENT, Outcome.OFFLINE, Outcome.AUTH))
SERVER_STATES = tuple(state.value for state in ServerState)
QUEUE_STATES = ("pending", "processing", "completed", "failed", "corrupt")


def render(status: Mapping[str, Any], queue: Mapping[str, int], *, instance: str = "") -> str:
    """The exposition text for one instance: `status` is the service's status snapshot
    (ServiceStatus.to_dict()), `queue` the number of reports per queue state."""
    lines: list[str] = []
    for name, kind, help_text, samples in _families(status, queue, instance):
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            lines.append(f"{name}{_labels(labels)} {_number(value)}")
    return "\n".join(lines) + "\n"


Sample = tuple[Mapping[str, str], float]


def _families(status: Mapping[str, Any], queue: Mapping[str, int], instance: str
              ) -> Iterator[tuple[str, str, str, list[Sample]]]:
    failures = status.get("upload_failures") or {}
    server = status.get("server") or ServerState.UNKNOWN
    yield ("pywats_up", "gauge", "1 while the service is running, 0 while it starts or stops.",
           [({}, 1 if status.get("state") == "running" else 0)])
    # Not "instance": Prometheus sets that label itself (host:port) on every series it scrapes.
    yield ("pywats_info", "gauge",
           "Version and pywats-client instance of the running client (always 1).",
           [({"version": str(status.get("version") or ""), "pywats_instance": instance}, 1)])
    yield ("pywats_start_time_seconds", "gauge", "When the service process started (Unix time).",
           [({}, float(status.get("started_at") or 0))])
    yield ("pywats_queue_reports", "gauge", "Reports in the queue, by state.",
           [({"state": s}, int(queue.get(s, 0))) for s in QUEUE_STATES])
    yield ("pywats_uploads_total", "counter",
           "Upload attempts since start, by outcome (stored, rejected by the server, transient "
           "server error, server offline, credentials refused).",
           [({"outcome": "stored"}, int(status.get("uploaded") or 0)),
            *(({"outcome": o}, int(failures.get(o, 0))) for o in UPLOAD_OUTCOMES[1:])])
    yield ("pywats_converted_files_total", "counter",
           "Source files converted into queued reports since start.",
           [({}, int(status.get("converted") or 0))])
    yield ("pywats_conversion_errors_total", "counter",
           "Source files that could not be converted (moved to the error folder) since start.",
           [({}, int(status.get("conversion_errors") or 0))])
    yield ("pywats_last_upload_timestamp_seconds", "gauge",
           "When a report was last stored by the server (Unix time; 0: none since start).",
           [({}, float(status.get("last_upload_at") or 0))])
    yield ("pywats_uploads_paused", "gauge",
           "1 while uploads are paused because the server refused the credentials or URL.",
           [({}, 1 if server == ServerState.PAUSED else 0)])
    yield ("pywats_server_state", "gauge",
           "The server as the uploader sees it: 1 for the current state, 0 for the others.",
           [({"state": s}, 1 if server == s else 0) for s in SERVER_STATES])
    free_mb = status.get("disk_free_mb")
    yield ("pywats_disk_free_bytes", "gauge", "Free space on the filesystem of the queue.",
           [({}, int(float(free_mb) * 2**20))] if free_mb is not None else [])
    yield ("pywats_disk_low", "gauge", "1 when the queue's filesystem is nearly full.",
           [({}, 1 if status.get("disk_low") else 0)])
    yield ("pywats_disk_full", "gauge",
           "1 when a report could not be written for lack of space (files wait in the folders).",
           [({}, 1 if status.get("disk_full") else 0)])
    yield ("pywats_watch_folders_unavailable", "gauge",
           "Watch folders that are missing, unmounted or unreadable.",
           [({}, len(status.get("folders_unavailable") or []))])
    yield ("pywats_error_files", "gauge",
           "Files waiting in the watch folders' error folders (could not be converted; each "
           "has a .error.txt note saying why).",
           [({}, int(status.get("error_files") or 0))])
    yield ("pywats_files_settling", "gauge",
           "Files seen in the watch folders that are not yet quiet enough to convert.",
           [({}, int(status.get("watching") or 0))])
    yield ("pywats_station_fault", "gauge",
           "1 while reports cannot be written to the queue for a reason other than a full disk "
           "(permissions, a read-only or failing disk): files wait in their folders.",
           [({}, 1 if status.get("station_fault") else 0)])
    yield ("pywats_stuck_conversions", "gauge",
           "Conversions given up after converters.timeout_s whose threads still run.",
           [({}, int(status.get("stuck_conversions") or 0))])
    yield ("pywats_conversions_paused", "gauge",
           "1 while new conversions wait because too many converter threads are stuck.",
           [({}, 1 if status.get("conversions_paused") else 0)])
    yield ("pywats_poison_files", "gauge",
           "Files set aside because the service died while converting them.",
           [({}, int(status.get("poison_files") or 0))])
    yield ("pywats_files_waiting_for_processes", "gauge",
           "Files that name their process and wait for the server's process list.",
           [({}, int(status.get("waiting_for_processes") or 0))])


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{key}="{_escape(value)}"' for key, value in labels.items())
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return repr(float(value))

"""What the one-shot commands do, as library functions the CLI (and scripts) call: `status`
gathers the service's view, the queue counts and a fresh probe; `upload` sends one file now,
through the same queue and under the same lock rules as the service.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from pywats_client.config.settings import Settings
from pywats_client.converters import ConverterRegistry
from pywats_client.errors import LockError
from pywats_client.outcomes import Outcome
from pywats_client.paths import InstancePaths
from pywats_client.queue.lock import InstanceLock, read_lock
from pywats_client.queue.store import DurableQueue, State
from pywats_client.service import process_table
from pywats_client.service.drain import drain
from pywats_client.service.pipeline import Conversion, convert_source, queue_reports
from pywats_client.service.status import (
    ReportResult,
    RunSummary,
    count_error_files,
    read_status,
)
from pywats_client.service.uploader import require_server, uploader_for


def gather_status(
    paths: InstancePaths, settings: Settings, *, probe: bool = True
) -> dict[str, Any]:
    """Everything `pywats-client status` shows, as a dict (also its --json form)."""
    holder = read_lock(paths.lock)
    service = read_status(paths.state) or {}
    running = holder is not None and holder.purpose.startswith("service")
    queue = DurableQueue(paths.queue, settings.queue)
    counts = {s.value: n for s, n in queue.counts().items()} if paths.queue.exists() else {}
    error_files, error_newest = count_error_files(
        folder.error_path for folder in settings.queue.watch_folders)
    info: dict[str, Any] = {
        "instance": paths.name,
        "config": str(paths.config),
        "running": running,
        "pid": holder.pid if holder else None,
        "lock_holder": holder.purpose if holder else None,
        "uptime_seconds": round(time.time() - holder.started) if holder else None,
        "server_url": settings.server_url,
        "queue": counts,
        "last_upload_at": service.get("last_upload_at"),
        "last_upload_id": service.get("last_upload_id") or None,
        "last_error": service.get("last_error") or None,
        "last_error_at": service.get("last_error_at"),
        "service_server_state": service.get("server") if running else None,
        "service_server_detail": service.get("server_detail") if running else None,
        "disk_full": bool(service.get("disk_full")) if running else False,
        "disk_low": bool(service.get("disk_low")) if running else False,
        "disk_free_mb": service.get("disk_free_mb") if running else None,
        "folders_unavailable": list(service.get("folders_unavailable") or []) if running else [],
        "supervisor": service.get("supervisor") if running else None,
        # Counted now, running or not: files that could not be converted wait there.
        "error_files": error_files,
        "error_files_newest": error_newest,
        "waiting_for_processes": int(service.get("waiting_for_processes") or 0) if running else 0,
        "id_clashes": int(service.get("id_clashes") or 0) if running else 0,
        "folder_problems": int(service.get("folder_problems") or 0) if running else 0,
        "converters_broken": broken_converters(paths, settings),
    }
    if running:
        if service.get("api_url"):
            info["api_url"] = service["api_url"]
        info.update(_station_faults(service))
    if probe and settings.server_url:
        client = uploader_for(settings)
        try:
            result = client.probe()
        finally:
            client.close()
        info["server_reachable"] = result.outcome not in (Outcome.OFFLINE,)
        info["server_authenticated"] = result.outcome is Outcome.STORED
        info["server_refused"] = result.outcome is Outcome.AUTH  # credentials or URL
        info["server_message"] = result.message
    return info


def broken_converters(paths: InstancePaths, settings: Settings) -> list[dict[str, str]]:
    """The watch folders bound to a converter that does not load (every file there would go
    to the error folder), with why: the same check `doctor` and `config add-watch-folder`
    make."""
    bound = [folder for folder in settings.queue.watch_folders if folder.converter]
    if not bound:
        return []
    registry = ConverterRegistry(enabled=settings.converters.enabled, plugin_dir=paths.converters)
    return [{"folder": str(folder.path), "converter": str(folder.converter), "problem": problem}
            for folder in bound
            if (problem := registry.problem(str(folder.converter), folder.arguments))]


def upload_file(
    paths: InstancePaths,
    settings: Settings,
    path: Path,
    *,
    converter: str | None = None,
    wait: float = 30.0,
) -> tuple[Conversion, RunSummary]:
    """Convert `path`, queue its reports durably, and upload them now; returns the conversion
    (converter, reports sent) and the summary, whose `reports` say what became of each.

    When no other process owns the instance, this command takes the lock and sends the reports
    itself. When the service runs, it owns the queue: the reports are queued for it and this
    waits up to `wait` seconds for the service to send them.
    """
    require_server(settings, paths.config)
    registry = ConverterRegistry(enabled=settings.converters.enabled, plugin_dir=paths.converters)
    conversion = convert_source(settings, registry, path, None, converter_name=converter,
                                processes=process_table.load(paths.state))
    queue = DurableQueue(paths.queue, settings.queue)
    queue.ensure_layout()
    lock = InstanceLock(paths.lock, paths.name)
    try:
        lock.acquire("upload")
    except LockError:
        results = queue_reports(queue, conversion)
        return conversion, _wait_for(queue, [r.id for r in results], wait)
    try:
        ids = [r.id for r in queue_reports(queue, conversion)]
        client = uploader_for(settings)
        try:
            return conversion, drain(queue, client, ids)
        finally:
            client.close()
    finally:
        lock.release()


def _wait_for(queue: DurableQueue, ids: list[str], wait: float) -> RunSummary:
    """Watch the queue until the service has moved every id out of pending/processing."""
    deadline = time.monotonic() + wait
    pause = threading.Event()
    while True:
        states = {rid: queue.find(rid) for rid in ids}
        settled = all(s in (State.COMPLETED, State.FAILED) for s in states.values())
        if settled or time.monotonic() >= deadline:
            break
        pause.wait(0.2)  # another process does the work; look again shortly
    # Nothing was uploaded by this process: the counts stay 0, the reports tell.
    return RunSummary(reports=[
        ReportResult(rid, s.value if s else "unknown",
                     message="" if settled else "queued; the running service will upload it")
        for rid, s in states.items()
    ])


def list_instances_status(data_dir: Path) -> list[dict[str, Any]]:
    """One row per instance under `data_dir`: running or not, pending reports, server."""
    import json

    from pywats_client.paths import list_instances

    rows = []
    for name in list_instances(data_dir):
        paths = InstancePaths.for_instance(name, data_dir)
        holder = read_lock(paths.lock)
        try:
            raw = json.loads(paths.config.read_text(encoding="utf-8-sig"))
            server = raw.get("server_url", "") if isinstance(raw, dict) else ""
        except (OSError, ValueError):
            server = "(config.json unreadable)"
        pending = DurableQueue(paths.queue).counts()[State.PENDING] if paths.queue.exists() else 0
        rows.append({
            "instance": name,
            "running": holder is not None,
            "pid": holder.pid if holder else None,
            "purpose": holder.purpose if holder else None,
            "pending": pending,
            "server_url": server,
            "data_dir": str(paths.root),
        })
    return rows


def _station_faults(service: dict[str, Any]) -> dict[str, Any]:
    """What the running service says of its station: a queue it cannot write, stuck converter
    threads, files set aside because the process died on them."""
    return {
        "station_fault": service.get("station_fault") or None,
        "station_fault_since": service.get("station_fault_since"),
        "conversions_paused": bool(service.get("conversions_paused")),
        "stuck_conversions": int(service.get("stuck_conversions") or 0),
        "conversions_timed_out": int(service.get("conversions_timed_out") or 0),
        "poison_files": int(service.get("poison_files") or 0),
    }

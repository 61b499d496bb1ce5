"""The sections of scripts/bench.py that send files through the service and time them:
throughput, latency (this client and a --baseline one) and the slow writer."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# bench_rig first: it puts this checkout's package and tests ahead of any installed one.
from bench_rig import (
    REPO,
    Inputs,
    Station,
    drop_and_wait,
    median,
    new_folder,
    own_cpu,
    proc_sample,
    progress,
    receiver,
    stage,
    wait_for,
    workspace,
)

from pywats_client.http.receiver import Receiver
from tests import slow_writer
from tests.station import wait_until, wsjf_report

UPLOAD_WORKERS = 5  # the service's upload pool: the concurrency limit is 5 / L
LATENCIES_MS = (0.0, 20.0)
LATENCY_SETTLE = 1.0  # the latency section's settle time: the default of queue.settle_time
BURST = 50  # files renamed in at once
SLOW_PAUSE, SLOW_SETTLE = 0.3, 0.1  # a tenth of 3 s pauses against the default 1 s


# -- 1. throughput -----------------------------------------------------------------------------


def measure_throughput(inputs: Inputs, mixes: list[str], files: int, repeat: int
                       ) -> list[dict[str, Any]]:
    results = []
    for mix in mixes:
        with workspace() as tmp:
            root = Path(tmp)
            with receiver(root) as rx:
                station = Station(root, rx.url)
                with station.service() as proc:
                    # One small batch first: imports, the process list and the detectors warm.
                    warm = stage(root / "staging", inputs.files(mix, 10))
                    drop_and_wait(rx, station, warm, station.watches[0], 10)
                    total = 10
                    for latency in LATENCIES_MS:
                        rx.faults.latency_ms = latency
                        runs = []
                        for _ in range(repeat):
                            staged = stage(root / "staging", inputs.files(mix, files))
                            before, mine = proc_sample(proc.pid), own_cpu()
                            total += files
                            seconds = drop_and_wait(rx, station, staged, station.watches[0],
                                                    total)
                            after = proc_sample(proc.pid)
                            runs.append({
                                "seconds": seconds, "reports_per_s": files / seconds,
                                "service_cpu_percent": 100 * (after.cpu_s - before.cpu_s)
                                / seconds,
                                "receiver_cpu_percent": 100 * (own_cpu() - mine) / seconds,
                            })
                        results.append(_throughput_row(mix, latency, files, runs))
                        progress(f"throughput {mix} L={latency:.0f} ms: "
                                  f"{results[-1]['reports_per_s']:.0f}/s")
            # With latency, the best possible is the lower of the concurrency limit and what
            # the CPU allows (the rate without latency): heavy inputs are CPU-bound well below
            # 5 / L on a small machine.
            unhindered = next(r["reports_per_s"] for r in results
                              if r["mix"] == mix and r["latency_ms"] == 0)
            for row in results:
                if row["mix"] == mix and row["latency_ms"] > 0:
                    row["best_possible_per_s"] = min(row["limit_per_s"], unhindered)
                    row["ratio_to_best_possible"] = (row["reports_per_s"]
                                                     / row["best_possible_per_s"])
    return results


def _throughput_row(mix: str, latency: float, files: int, runs: list[dict[str, float]]
                    ) -> dict[str, Any]:
    rate = median([r["reports_per_s"] for r in runs])
    row: dict[str, Any] = {
        "mix": mix, "latency_ms": latency, "files": files, "runs": runs,
        "reports_per_s": rate,
        "service_cpu_percent": median([r["service_cpu_percent"] for r in runs]),
        "receiver_cpu_percent": median([r["receiver_cpu_percent"] for r in runs]),
    }
    if latency > 0:
        row["limit_per_s"] = UPLOAD_WORKERS / (latency / 1000)
        row["ratio_to_limit"] = rate / row["limit_per_s"]
    return row


# -- 2. latency --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Client:
    """A version of the client to measure: this one, or another checkout (`--baseline`)."""

    name: str
    env: dict[str, str] = field(default_factory=dict)


def baseline_client(spec: str | None) -> Client | None:
    """The client of `--baseline`: a directory holding a checkout, or a git revision of this
    repository (exported with `git archive`, so no worktree is registered)."""
    if not spec:
        return None
    folder = Path(spec)
    if not (folder / "pywats_client").is_dir():
        folder = new_folder("baseline-")
        archive = subprocess.run(["git", "-C", str(REPO), "archive", spec], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return Client(f"baseline {spec}", {"PYTHONPATH": str(folder.resolve())})


def percentiles(times: list[float]) -> dict[str, Any]:
    times = sorted(times)
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))] if times else float("nan")
    return {"samples": len(times), "p50_s": median(times), "p99_s": p99,
            "max_s": times[-1] if times else float("nan")}


def measure_latency(inputs: Inputs, samples: int, bursts: int, clients: list[Client]
                    ) -> dict[str, Any]:
    """Drop -> stored for one fresh file at a time, renamed in or written in place; then
    bursts of BURST files renamed in at once. Fresh files (mtime now): nothing may be taken
    for being old. Each client has an idle service of its own."""
    rows = []
    for client in clients:
        with workspace() as tmp:
            root = Path(tmp)
            with receiver(root) as rx:
                station = Station(root, rx.url, env=client.env, settle=LATENCY_SETTLE)
                watch = station.watches[0]
                logs = station.instance / "logs"
                with station.service():
                    stored = 0

                    def arrived(n: int, rx: Receiver = rx, logs: Path = logs) -> None:
                        if not rx.wait_for_reports(n, timeout=60):
                            raise RuntimeError(f"report {n} did not arrive within 60 s; see "
                                               f"{logs}")

                    # The first one pays for lazy imports.
                    (name, data), = inputs.files("wsjf", 1)
                    stage(root / "staging", [(name, data)], settled=False)
                    os.replace(root / "staging" / name, watch / name)
                    stored += 1
                    arrived(stored)
                    renamed, in_place = [], []
                    for name, data in inputs.files("wsjf", samples):
                        stage(root / "staging", [(name, data)], settled=False)
                        start = time.monotonic()
                        os.replace(root / "staging" / name, watch / name)
                        stored += 1
                        arrived(stored)
                        renamed.append(time.monotonic() - start)
                    for name, data in inputs.files("wsjf", samples):
                        start = time.monotonic()
                        with open(watch / name, "wb") as fh:
                            fh.write(data)
                        stored += 1
                        arrived(stored)
                        in_place.append(time.monotonic() - start)
                    burst_times = []
                    for _ in range(bursts):
                        staged = stage(root / "staging", inputs.files("wsjf", BURST),
                                       settled=False)
                        start = time.monotonic()
                        for path in staged:
                            os.replace(path, watch / path.name)
                        stored += BURST
                        arrived(stored)
                        burst_times.append(time.monotonic() - start)
        rows += [
            {"client": client.name, "path": "renamed in", **percentiles(renamed)},
            {"client": client.name, "path": "written in place, closed", **percentiles(in_place)},
            {"client": client.name, "path": f"burst of {BURST} renamed in",
             **percentiles(burst_times)},
        ]
        progress(f"latency {client.name}: renamed in p50 {rows[-3]['p50_s'] * 1000:.0f} ms, "
                  f"in place p50 {rows[-2]['p50_s'] * 1000:.0f} ms, burst p50 "
                  f"{rows[-1]['p50_s'] * 1000:.0f} ms")
    return {"settle_s": LATENCY_SETTLE, "samples": samples, "bursts": bursts,
            "conversion_s": conversion_time(inputs), "rows": rows}


def conversion_time(inputs: Inputs, runs: int = 21) -> float:
    """Median seconds to convert and finalise the latency section's input, in this process
    (what a file costs between being taken and being queued)."""
    from pywats_client.config.settings import Settings
    from pywats_client.converters import ConverterRegistry
    from pywats_client.service.pipeline import choose_converter, convert_file, make_context

    registry, settings = ConverterRegistry(), Settings()
    with workspace() as tmp:
        path = Path(tmp) / "latency.json"
        times = []
        for _, data in inputs.files("wsjf", runs):
            path.write_bytes(data)
            start = time.perf_counter()
            converter, reason = choose_converter(registry, path, name=None)
            convert_file(path, converter, make_context(settings, path), reason)
            times.append(time.perf_counter() - start)
    return median(times)


# -- 2b. slow writer ---------------------------------------------------------------------------


def measure_slowwriter(repeat: int, concurrent: int, clients: list[Client]) -> dict[str, Any]:
    """`repeat` UUTs of each of WSTF, WSXF and WSJF, each file written by a slow writer that
    closes it after each block; `concurrent` UUTs of each kind at a time. Counted at the
    receiver: UUTs with exactly one whole report, partial reports, extra reports."""
    rows = []
    whole = [f"Step {n}" for n in range(slow_writer.STEPS)]
    for client in clients:
        for post_action in ("none", "move"):
            with workspace() as tmp:
                root = Path(tmp)
                with receiver(root) as rx:
                    station = Station(root, rx.url, env=client.env, settle=SLOW_SETTLE,
                                      post_action=post_action)
                    watch = station.watches[0]
                    started = time.monotonic()
                    with station.service():
                        serial = 0
                        for first in range(0, repeat, concurrent):
                            writers = []
                            for _ in range(min(concurrent, repeat - first)):
                                serial += 1
                                for kind, (suffix, blocks) in slow_writer.KINDS.items():
                                    sn = f"SLOW-{kind}-{serial:05d}"
                                    writers.append(threading.Thread(
                                        target=slow_writer.write_slowly,
                                        args=(watch / f"{sn}{suffix}", blocks(sn), SLOW_PAUSE)))
                            for writer in writers:
                                writer.start()
                            for writer in writers:
                                writer.join()
                        # Every UUT's whole report (a baseline may never send some), then
                        # one more file: once it is in, the files before it are done with.
                        expected = serial * len(slow_writer.KINDS)
                        with contextlib.suppress(AssertionError):
                            wait_until(lambda rx=rx, n=expected: _whole_reports(rx) >= n, 30,
                                       "every UUT's whole report")
                        marker = wsjf_report(0, report_id=str(uuid.uuid4()), sn="MARKER")
                        (watch / ".marker.tmp").write_text(json.dumps(marker))
                        os.replace(watch / ".marker.tmp", watch / "marker.json")
                        marker_id = str(marker["id"])
                        wait_for(lambda rx=rx, marker_id=marker_id: marker_id in rx.stored_ids(),
                                 120, "the marker")
                    seconds = time.monotonic() - started
                    reports: dict[str, list[list[str]]] = {}
                    for rid in rx.stored_ids():
                        report = json.loads((rx.store / f"{rid}.json").read_text())
                        if report["sn"] != "MARKER":
                            reports.setdefault(report["sn"], []).append(
                                slow_writer.step_names(report))
                    errors = [p.name for p in (watch / "error").glob("*.error.txt")] if (
                        watch / "error").is_dir() else []
            uuts = repeat * len(slow_writer.KINDS)
            rows.append({
                "client": client.name, "post_action": post_action, "uuts": uuts,
                "one_whole_report": sum(1 for r in reports.values() if r == [whole]),
                "partial_reports": sum(1 for r in reports.values() for s in r if s != whole),
                "uuts_with_several_reports": sum(1 for r in reports.values() if len(r) > 1),
                "uuts_without_a_whole_report": uuts - sum(
                    1 for r in reports.values() if whole in r),
                "error_files": len(errors), "seconds": seconds,
            })
            progress(f"slowwriter {client.name}, post-action {post_action}: "
                      f"{rows[-1]['one_whole_report']}/{uuts} UUTs with one whole report, "
                      f"{rows[-1]['partial_reports']} partial reports")
    return {"pause_s": SLOW_PAUSE, "settle_s": SLOW_SETTLE, "repeat": repeat,
            "concurrent": concurrent, "steps": slow_writer.STEPS, "rows": rows}


_WHOLE: dict[str, bool] = {}  # report id -> it holds every step a slow writer writes


def _whole_reports(rx: Receiver) -> int:
    """How many of the stored reports hold every step a slow writer writes."""
    whole = [f"Step {n}" for n in range(slow_writer.STEPS)]
    for rid in rx.stored_ids() - _WHOLE.keys():
        try:
            report = json.loads((rx.store / f"{rid}.json").read_text())
        except (OSError, ValueError):
            continue
        _WHOLE[rid] = slow_writer.step_names(report) == whole
    return sum(_WHOLE[rid] for rid in rx.stored_ids() if rid in _WHOLE)

#!/usr/bin/env python3
"""Measure the pipeline: drop-to-upload latency, throughput, idle cost.

    python scripts/bench.py [--quick] [--json bench-results/bench.json]

Each measurement runs the real service (`python -m pywats_client start`) as a subprocess
against the bundled receiver on loopback, exactly as a station runs it:

* latency     one file at a time on an idle service: drop -> stored by the receiver, p50/p99,
              with the configured settle time subtracted
* throughput  N WSJF files dropped at once, receiver latency L in {0, 20} ms: reports/s from
              the first drop to the last acknowledgement, and the ratio to the concurrency
              limit 5 / L (5 upload workers)
* idle        RSS, CPU and thread count of an idle service with two watch folders

Prints a table and writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pywats_client.receiver import Receiver  # noqa: E402
from tests.station import wsjf_report  # noqa: E402

TOKEN = "YmVuY2g6YmVuY2g="  # base64("bench:bench")
SETTLE = 0.25


def _wait(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    tick = threading.Event()
    while time.monotonic() < deadline:
        if predicate():
            return True
        tick.wait(0.005)
    return False


@contextmanager
def service(root: Path, server_url: str, folders: int = 1) -> Iterator[tuple[Any, list[Path]]]:
    """A configured instance with its service running; yields (process, watch folders)."""
    data = root / "data"
    instance = data / "default"
    instance.mkdir(parents=True)
    watches = [root / f"watch{n}" for n in range(folders)]
    for w in watches:
        w.mkdir()
    config = {
        "server_url": server_url, "api_token": TOKEN, "station_name": "bench",
        "queue": {"watch_folders": [str(w) for w in watches], "settle_time": SETTLE},
        "logging": {"level": "WARNING"},
    }
    (instance / "config.json").write_text(json.dumps(config))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pywats_client", "--data-dir", str(data), "start"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    status = instance / "state" / "status.json"
    if not _wait(lambda: status.exists() and b'"running"' in status.read_bytes(), 30):
        proc.kill()
        raise RuntimeError("service did not start")
    try:
        yield proc, watches
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def _stage(root: Path, n: int) -> list[Path]:
    staging = root / "staging"
    staging.mkdir(exist_ok=True)
    paths = []
    for i in range(n):
        path = staging / f"r{i:06d}.json"
        path.write_text(json.dumps(wsjf_report(i, report_id=str(uuid.uuid4()))))
        # Equipment writes files that are already settled by the time we look at them again.
        old = time.time() - 10
        os.utime(path, (old, old))
        paths.append(path)
    return paths


def measure_latency(samples: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with Receiver(root / "store", token=TOKEN) as rx, service(root, rx.url) as (_, [watch]):
            staged = _stage(root, samples)
            times = []
            for n, path in enumerate(staged):
                fresh = root / "staging" / f"fresh{n}.json"
                fresh.write_bytes(path.read_bytes())  # a new file, mtime now: it must settle
                start = time.monotonic()
                os.replace(fresh, watch / path.name)
                if not rx.wait_for_reports(n + 1, timeout=30):
                    raise RuntimeError("report did not arrive")
                times.append(time.monotonic() - start)
    times.sort()
    return {
        "samples": samples,
        "settle_s": SETTLE,
        "p50_s": statistics.median(times),
        "p99_s": times[min(len(times) - 1, int(len(times) * 0.99))],
        "p50_minus_settle_s": statistics.median(times) - SETTLE,
    }


def measure_throughput(files: int, latency_ms: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with Receiver(root / "store", token=TOKEN) as rx, service(root, rx.url) as (_, [watch]):
            rx.faults.latency_ms = latency_ms
            staged = _stage(root, files)
            start = time.monotonic()
            for path in staged:
                os.replace(path, watch / path.name)
            if not rx.wait_for_reports(files, timeout=600):
                raise RuntimeError(f"only {len(rx.stored_ids())} of {files} arrived")
            elapsed = time.monotonic() - start
    rate = files / elapsed
    result = {"files": files, "latency_ms": latency_ms, "seconds": elapsed, "reports_per_s": rate}
    if latency_ms > 0:
        limit = 5 / (latency_ms / 1000)
        result["limit_per_s"] = limit
        result["ratio_to_limit"] = rate / limit
    return result


def _proc_stat(pid: int) -> tuple[int, float, int]:
    """RSS (kB), CPU seconds, threads of a process, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")))
    threads = int(next(line.split()[1] for line in status.splitlines()
                       if line.startswith("Threads")))
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    return rss, cpu, threads


def measure_idle(seconds: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with Receiver(root / "store", token=TOKEN) as rx, \
                service(root, rx.url, folders=2) as (proc, _):
            threading.Event().wait(2)  # let start-up work finish before measuring
            _, cpu0, _ = _proc_stat(proc.pid)
            t0 = time.monotonic()
            threading.Event().wait(seconds)
            rss, cpu1, threads = _proc_stat(proc.pid)
            wall = time.monotonic() - t0
    return {"seconds": wall, "rss_mb": rss / 1024, "cpu_percent": 100 * (cpu1 - cpu0) / wall,
            "threads": threads}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer files, shorter idle window")
    parser.add_argument("--json", type=Path, default=REPO / "bench-results" / "bench.json")
    args = parser.parse_args()
    files = 300 if args.quick else 1000
    results: dict[str, Any] = {
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "latency": measure_latency(10 if args.quick else 30),
        "throughput": [measure_throughput(files, 0), measure_throughput(files, 20)],
        "idle": measure_idle(10 if args.quick else 60),
    }
    lat, idle = results["latency"], results["idle"]
    print(f"{'measure':<34} {'value':>12}")
    print(f"{'drop-to-upload p50 (settle ' + str(SETTLE) + ' s)':<34} {lat['p50_s']:>10.3f} s")
    print(f"{'drop-to-upload p99':<34} {lat['p99_s']:>10.3f} s")
    print(f"{'p50 minus settle time':<34} {lat['p50_minus_settle_s']:>10.3f} s")
    for t in results["throughput"]:
        label = f"throughput {t['files']} files, L={t['latency_ms']:.0f} ms"
        extra = f"  ({t['ratio_to_limit']:.0%} of {t['limit_per_s']:.0f}/s)" \
            if "ratio_to_limit" in t else ""
        print(f"{label:<34} {t['reports_per_s']:>8.1f} /s{extra}")
    print(f"{'idle RSS':<34} {idle['rss_mb']:>9.1f} MB")
    print(f"{'idle CPU':<34} {idle['cpu_percent']:>10.2f} %")
    print(f"{'idle threads':<34} {idle['threads']:>12}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    print(f"\nwritten to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

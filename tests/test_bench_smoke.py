"""scripts/bench.py runs end to end and writes every section of its JSON.

Figures are never asserted here: timings belong to the benchmark, not to the test suite. What
is checked is that each measurement ran (the service started, reports arrived, the commands
ran) and left the numbers the README table is made from.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.station import REPO

BENCH = REPO / "scripts" / "bench.py"
SECTIONS = ("throughput", "latency", "slowwriter", "idle", "startup", "scale", "conversion",
            "disk")

pytestmark = pytest.mark.slow


def run_bench(tmp_path: Path, *args: str) -> dict[str, Any]:
    """Run scripts/bench.py --quick with `args`: the figures it wrote."""
    return run_bench_printing(tmp_path, *args)[0]


def run_bench_printing(tmp_path: Path, *args: str) -> tuple[dict[str, Any], str]:
    """Run scripts/bench.py --quick with `args`: the figures it wrote, and what it printed."""
    out = tmp_path / "bench.json"
    # A session of its own, so a hung run is killed together with the services it started.
    proc = subprocess.Popen(
        [sys.executable, str(BENCH), "--quick", "--json", str(out), *args],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"bench.py did not finish within 240 s:\n{stdout}\n{stderr}")
    assert proc.returncode == 0, stdout + stderr
    assert f"written to {out}" in stdout
    data: dict[str, Any] = json.loads(out.read_text())
    return data, stdout


def number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(
        value)


def test_a_quick_run_writes_every_section(tmp_path: Path) -> None:
    data = run_bench(tmp_path, "--files", "8", "--mixes", "wsjf,mixed", "--scale", "200",
                     "--idle-seconds", "0.5", "--latency-samples", "3", "--startup-runs", "1",
                     "--slow-repeat", "2", "--bursts", "1")
    assert set(SECTIONS) <= set(data), sorted(data)
    assert data["meta"]["quick"] is True and data["meta"]["cpus"] >= 1

    rows = {(r["mix"], r["latency_ms"]) for r in data["throughput"]}
    assert rows == {(m, lat) for m in ("wsjf", "mixed") for lat in (0.0, 20.0)}
    for row in data["throughput"]:
        assert row["files"] == 8 and len(row["runs"]) == 1
        assert number(row["reports_per_s"]) and row["reports_per_s"] > 0
        if row["latency_ms"]:
            assert row["limit_per_s"] == 250.0 and number(row["ratio_to_limit"])

    latency = data["latency"]
    assert latency["samples"] == 3 and number(latency["conversion_s"])
    assert [(r["client"], r["path"]) for r in latency["rows"]] == [
        ("this client", "renamed in"), ("this client", "written in place, closed"),
        ("this client", "burst of 50 renamed in")]
    for row in latency["rows"]:
        assert number(row["p50_s"]) and number(row["p99_s"]) and row["samples"] >= 1

    slow = data["slowwriter"]
    assert [(r["post_action"], r["uuts"]) for r in slow["rows"]] == [("none", 6), ("move", 6)]
    for row in slow["rows"]:
        assert row["one_whole_report"] + row["uuts_without_a_whole_report"] <= row["uuts"]
        assert number(row["seconds"])
    assert number(data["idle"]["rss_mb"]) and number(data["idle"]["cpu_percent"])
    assert data["idle"]["threads"] >= 1

    startup = data["startup"]
    commands = [c["command"] for c in startup["commands"]]
    assert commands == ["pywats-client --help", "pywats-client --version",
                        "pywats-client status", "pywats-client start --once"]
    for command in startup["commands"]:
        assert number(command["ratio"]) and command["modules"] > startup["python_modules"]

    scale = data["scale"]
    assert scale["items"] == 200
    assert number(scale["queue_status_s"]) and number(scale["queue_list_s"])
    assert scale["small"]["queued"] == 20 and scale["large"]["queued"] == 200
    assert scale["large"]["drained"] == 60 and number(scale["rss_growth_mb"])
    flood = scale["flood"]
    assert flood["files"] == 200 and number(flood["peak_rss_mb"])
    assert flood["peak_rss_mb"] >= flood["rss_before_mb"] > 0

    conversion = data["conversion"]
    assert conversion["rows"] or conversion["skipped"]

    disk = data["disk"]
    assert disk["method"] in ("strace", "shim")
    # The queue's own fsyncs happen whichever way they are counted.
    assert disk["fsyncs_per_report"] > 0
    assert any("queue item file" in key for key in disk["calls_per_report"])


def test_without_samples_the_built_in_inputs_and_the_fsync_shim_are_used(
        tmp_path: Path) -> None:
    empty = tmp_path / "no-samples"
    empty.mkdir()
    data = run_bench(tmp_path, "--sections", "throughput,conversion,disk", "--files", "8",
                     "--mixes", "mixed", "--samples", str(empty), "--disk-method", "shim")
    assert {k: v["origin"] for k, v in data["meta"]["inputs"].items()} == {
        "wsjf": "built-in (tests/station.py)", "wsxf": "built-in", "wstf": "built-in",
        "i3070": "built-in"}
    assert [r["reports_per_s"] > 0 for r in data["throughput"]] == [True, True]
    assert data["conversion"]["rows"] == [] and "no samples" in data["conversion"]["skipped"]
    assert data["disk"]["method"] == "shim" and data["disk"]["fsyncs_per_report"] > 0

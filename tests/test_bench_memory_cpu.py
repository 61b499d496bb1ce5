"""scripts/bench.py's cpu and memory sections run and leave the figures the README's
performance table is made from (the figures themselves belong to the benchmark)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bigfiles import samples_present

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(
        value)


def test_the_cpu_and_memory_sections_write_their_figures(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "scripts" / "bench.py"), "--quick", "--sections",
         "cpu,memory", "--files", "8", "--big-mb", "2", "--json", str(out)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"bench.py did not finish within 240 s:\n{stdout}\n{stderr}")
    assert proc.returncode == 0, stdout + stderr
    data = json.loads(out.read_text())

    cpu = data["cpu"]
    assert cpu["reports"] == 8 and len(cpu["runs"]) == 1
    assert _number(cpu["service_cpu_ms_per_report"]) and cpu["service_cpu_ms_per_report"] > 0
    assert _number(cpu["json_floor_ms"]) and cpu["json_floor_ms"] > 0
    assert cpu["ratio_to_floor"] == pytest.approx(
        cpu["service_cpu_ms_per_report"] / cpu["json_floor_ms"])
    assert "read, parse (the converter)" in cpu["stages_ms"]
    assert all(_number(ms) and ms > 0 for ms in cpu["stages_ms"].values())
    assert "CPU per report, UUT example" in stdout

    memory = data["memory"]
    assert "skipped" not in memory, memory.get("skipped")
    rows = {row["converter"]: row for row in memory["rows"]}
    assert len(rows) >= 8
    for row in rows.values():
        assert _number(row["rss_per_mb"]) and row["peak_mb"] >= row["base_mb"]
        assert row["memory_ratio"] > 0
    if samples_present():
        assert rows["WATSStandardJsonConverter"]["input"] == "big-wsjf.json"
        service = memory["service"]
        assert service["stored"] == 1 and _number(service["peak_rss_mb"])
        assert service["bytes"] >= 2 * 2**20 * 0.99

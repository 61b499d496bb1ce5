"""scripts/bench.py's cpu and memory sections run and leave the figures the README's
performance table is made from (the figures themselves belong to the benchmark)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bigfiles import samples_present
from tests.test_bench_smoke import number, run_bench_printing

pytestmark = pytest.mark.slow


def test_the_cpu_and_memory_sections_write_their_figures(tmp_path: Path) -> None:
    data, stdout = run_bench_printing(tmp_path, "--sections", "cpu,memory", "--files", "8",
                                      "--big-mb", "2")

    cpu = data["cpu"]
    assert cpu["reports"] == 8 and len(cpu["runs"]) == 1
    assert number(cpu["service_cpu_ms_per_report"]) and cpu["service_cpu_ms_per_report"] > 0
    assert number(cpu["json_floor_ms"]) and cpu["json_floor_ms"] > 0
    assert cpu["ratio_to_floor"] == pytest.approx(
        cpu["service_cpu_ms_per_report"] / cpu["json_floor_ms"])
    assert "parse (the converter)" in cpu["stages_ms"]
    assert "POST (http.client)" in cpu["contract_steps_ms"]
    assert all(number(ms) and ms > 0 for ms in cpu["contract_steps_ms"].values())
    assert 0 < cpu["contract_floor_shared_ms"] < cpu["contract_floor_ms"]
    assert "the least the queue contract costs" in stdout
    assert all(number(ms) and ms > 0 for ms in cpu["stages_ms"].values())
    assert "CPU per report, UUT example" in stdout

    memory = data["memory"]
    assert "skipped" not in memory, memory.get("skipped")
    rows = {row["converter"]: row for row in memory["rows"]}
    assert len(rows) >= 8
    for row in rows.values():
        assert number(row["rss_per_mb"]) and row["peak_mb"] >= row["base_mb"]
        assert row["memory_ratio"] > 0
    if samples_present():
        assert rows["WATSStandardJsonConverter"]["input"] == "big-wsjf.json"
        service = memory["service"]
        assert service["stored"] == 1 and number(service["peak_rss_mb"])
        assert service["bytes"] >= 2 * 2**20 * 0.99

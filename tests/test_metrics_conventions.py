"""/metrics follows Prometheus's conventions, so scrapes and dashboards need no relabelling:
checked by `promtool check metrics` where it is installed (Debian: apt-get install prometheus),
and by the same rules written out here, which always run."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from pywats_client.http import metrics
from pywats_client.service.status import ServiceStatus
from tests.test_control_api import parse_metrics

# Labels Prometheus sets itself on every scraped series: one of ours with such a name is
# renamed to exported_<name> at every scrape.
RESERVED_LABELS = {"instance", "job"}
UNIT_WORDS = {"mb", "kb", "gb", "ms", "minutes", "hours", "days", "milliseconds", "megabytes"}


def exposition() -> str:
    status = ServiceStatus(version="1.2.3", state="running", uploaded=7,
                           upload_failures={"rejected": 1, "transient": 2}, converted=9,
                           conversion_errors=1, disk_free_mb=5120.3, error_files=2,
                           last_upload_at=1_800_000_000.5, watching=1)
    return metrics.render(status.to_dict(), {"pending": 1, "failed": 1}, instance="line-a")


def test_promtool_finds_nothing_to_complain_about() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed here (apt-get install prometheus ships it); "
                    "test_the_conventions_hold checks the same rules")
    result = subprocess.run([promtool, "check", "metrics"], input=exposition(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_the_conventions_hold() -> None:
    text = exposition()
    samples = parse_metrics(text)  # HELP and TYPE for every family, counters end in _total
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    helps = dict(re.findall(r"^# HELP (\S+) (.+)$", text, re.M))
    for name, kind in types.items():
        assert re.fullmatch(r"pywats_[a-z][a-z0-9_]*", name), name
        assert (kind == "counter") == name.endswith("_total"), name
        words = set(name.split("_"))
        assert not words & UNIT_WORDS, f"{name}: base units only (seconds, bytes)"
        if "Unix time" in helps[name] or "seconds" in helps[name]:
            assert name.endswith(("_seconds", "_seconds_total")), name
    for (name, labels), value in samples.items():
        for label, _ in labels:
            assert label not in RESERVED_LABELS and not label.startswith("__"), (name, label)
            assert re.fullmatch(r"[a-z][a-z0-9_]*", label), (name, label)
        if name.endswith("_bytes") or name.endswith("_total") or name == "pywats_error_files":
            assert value == int(value), f"{name} counts whole things: {value}"
    info = [labels for name, labels in samples if name == "pywats_info"]
    assert info == [(("pywats_instance", "line-a"), ("version", "1.2.3"))]
    free = samples[("pywats_disk_free_bytes", ())]
    assert free == int(5120.3 * 2**20)


def test_the_station_s_own_faults_are_metrics_too() -> None:
    status = ServiceStatus(state="running", version="x")
    status.station_fault = "Operation not permitted (EPERM) on /var/lib/pywats/s1/queue/tmp"
    status.stuck_conversions, status.conversions_paused = 5, True
    status.poison_files, status.waiting_for_processes = 1, 3
    values = {name: value for (name, _labels), value in
              parse_metrics(metrics.render(status.to_dict(), {})).items()}
    assert values["pywats_station_fault"] == 1
    assert values["pywats_stuck_conversions"] == 5
    assert values["pywats_conversions_paused"] == 1
    assert values["pywats_poison_files"] == 1
    assert values["pywats_files_waiting_for_processes"] == 3
    healthy = {name: value for (name, _labels), value in
               parse_metrics(metrics.render(ServiceStatus(state="running").to_dict(), {})).items()}
    assert healthy["pywats_station_fault"] == 0 and healthy["pywats_conversions_paused"] == 0

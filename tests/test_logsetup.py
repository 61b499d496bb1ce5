"""Logging as operators meet it: a rotating file per instance, journal-style stderr."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from pywats_client import logsetup
from pywats_client.config.settings import LoggingSettings


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger("pywats_client")
    saved = (list(root.handlers), root.level, root.propagate)
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])
    root.propagate = saved[2]


def test_the_log_file_rotates_by_size_and_keeps_backup_count(tmp_path: Path) -> None:
    log_file = tmp_path / "logs" / "pywats_client.log"
    logsetup.configure(LoggingSettings(level="INFO", max_size_mb=0.002, backup_count=2),
                       log_file, stderr=False, env={})
    log = logging.getLogger("pywats_client.queue.store")
    for n in range(300):
        log.info("report %04d uploaded (source /data/ict/unit-%04d.json)", n, n)
    names = sorted(p.name for p in log_file.parent.iterdir())
    assert names == ["pywats_client.log", "pywats_client.log.1", "pywats_client.log.2"]
    assert all(p.stat().st_size <= 0.002 * 2**20 + 200 for p in log_file.parent.iterdir())
    assert "report 0299 uploaded" in log_file.read_text()


def test_under_systemd_stderr_has_priorities_and_no_timestamps(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    logsetup.configure(LoggingSettings(level="DEBUG"), None, env={"JOURNAL_STREAM": "8:42"})
    log = logging.getLogger("pywats_client.service.loop")
    log.debug("looking")
    log.info("started")
    log.warning("server unreachable")
    log.error("report failed\nsecond line")
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "<7>pywats_client.service.loop: looking",
        "<6>pywats_client.service.loop: started",
        "<4>pywats_client.service.loop: server unreachable",
        "<3>pywats_client.service.loop: report failed",
        "<3>second line",
    ]


def test_a_terminal_gets_timestamps_and_the_level_is_respected(
        capsys: pytest.CaptureFixture[str]) -> None:
    logsetup.configure(LoggingSettings(level="WARNING"), None, env={})
    log = logging.getLogger("pywats_client.service.watcher")
    log.info("not shown")
    log.warning("shown")
    err = capsys.readouterr().err
    assert "not shown" not in err
    assert err.rstrip().endswith("WARNING pywats_client.service.watcher: shown")
    assert err[:4].isdigit()  # starts with the date


def test_lines_appended_by_another_process_count_towards_rotation(tmp_path: Path) -> None:
    # The CLI may log to the same file while the service runs; the handler counts its own
    # lines and reads the real size back regularly, so rotation still happens.
    log_file = tmp_path / "logs" / "pywats_client.log"
    logsetup.configure(LoggingSettings(level="INFO", max_size_mb=0.01, backup_count=1),
                       log_file, stderr=False, env={})
    log = logging.getLogger("pywats_client.queue.store")
    log.info("first line")
    with open(log_file, "a", encoding="utf-8") as other:
        other.write("x" * int(0.01 * 2**20) + "\n")
    for n in range(logsetup.SizedFileHandler.RESYNC_LINES):
        log.info("line %d", n)
    assert (tmp_path / "logs" / "pywats_client.log.1").exists()
    assert "first line" in (tmp_path / "logs" / "pywats_client.log.1").read_text()
    assert log_file.stat().st_size < 0.01 * 2**20

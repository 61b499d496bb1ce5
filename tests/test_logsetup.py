"""Logging as operators meet it: a rotating file per instance (unless logging.file is false),
journal-style stderr when stderr really is the journal's stream."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
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


# A process configured as the service configures itself; argv: log file, "file"/"nofile".
CHILD = """
import logging, sys
from pathlib import Path
from pywats_client import logsetup
from pywats_client.config.settings import LoggingSettings
logsetup.configure(LoggingSettings(level="DEBUG", file=sys.argv[2] == "file"), Path(sys.argv[1]))
log = logging.getLogger("pywats_client.service.loop")
log.debug("looking")
log.info("started")
log.warning("server unreachable")
log.error("report failed\\nsecond line")
"""


def run_child(tmp_path: Path, journal_stream: Callable[[os.stat_result], str],
              file: bool = True) -> list[str]:
    """Run CHILD with stderr in a file and JOURNAL_STREAM made from that file's stat; returns
    the lines it wrote to stderr."""
    err_path = tmp_path / "stderr.txt"
    with open(err_path, "w", encoding="utf-8") as err:
        env = {**os.environ, "JOURNAL_STREAM": journal_stream(os.fstat(err.fileno()))}
        subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "logs" / "client.log"),
                        "file" if file else "nofile"], stderr=err, env=env, check=True,
                       timeout=60)
    return err_path.read_text(encoding="utf-8").splitlines()


JOURNAL_LINES = [
    "<7>pywats_client.service.loop: looking",
    "<6>pywats_client.service.loop: started",
    "<4>pywats_client.service.loop: server unreachable",
    "<3>pywats_client.service.loop: report failed",
    "<3>second line",
]


def test_when_stderr_is_the_journal_stream_lines_have_priorities_and_no_timestamps(
        tmp_path: Path) -> None:
    lines = run_child(tmp_path, lambda st: f"{st.st_dev}:{st.st_ino}")
    assert lines == JOURNAL_LINES


def test_an_inherited_journal_stream_that_is_not_stderr_is_not_trusted(tmp_path: Path) -> None:
    # systemd's variable reaches a child whose stderr was redirected (to a file here): the
    # journal does not read that file, so it gets the plain format with timestamps.
    lines = run_child(tmp_path, lambda st: f"{st.st_dev}:{st.st_ino + 1}")
    assert len(lines) == 5 and lines[0][:4].isdigit()
    assert lines[0].endswith("DEBUG   pywats_client.service.loop: looking")
    assert not any(line.startswith("<") for line in lines)


@pytest.mark.parametrize("value", ["", "8:42x", "garbage", ":", "1:2:3"])
def test_a_malformed_journal_stream_counts_as_not_the_journal(value: str) -> None:
    assert logsetup.stderr_is_journal({"JOURNAL_STREAM": value}) is False


def test_logging_file_false_writes_only_to_stderr(tmp_path: Path) -> None:
    lines = run_child(tmp_path, lambda st: f"{st.st_dev}:{st.st_ino}", file=False)
    assert lines == JOURNAL_LINES
    assert not (tmp_path / "logs").exists()
    both = tmp_path / "both"
    both.mkdir()
    assert run_child(both, lambda st: f"{st.st_dev}:{st.st_ino}") == JOURNAL_LINES
    assert "server unreachable" in (both / "logs" / "client.log").read_text()


def test_a_daemon_without_stderr_keeps_its_log_file_whatever_logging_file_says(
        tmp_path: Path) -> None:
    log_file = tmp_path / "logs" / "pywats_client.log"
    logsetup.configure(LoggingSettings(file=False), log_file, stderr=False, env={})
    logging.getLogger("pywats_client.service.loop").warning("disk nearly full")
    assert "disk nearly full" in log_file.read_text()


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

"""Logging for the process: configured once, by the CLI, never by library modules.

Every module logs through `logging.getLogger(__name__)`; this module decides where lines go:
the instance's rotating log file and stderr (which journald captures under systemd).
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from pywats_client.settings import LoggingSettings

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
# Under systemd the journal adds its own timestamps and reads "<N>" as the syslog priority.
JOURNAL_FORMAT = "%(name)s: %(message)s"
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
             logging.CRITICAL: 2}


class JournalFormatter(logging.Formatter):
    """`<priority>name: message`, one record per line, for stderr captured by journald."""

    def format(self, record: logging.LogRecord) -> str:
        priority = _PRIORITY.get(record.levelno, 6 if record.levelno < logging.WARNING else 3)
        text = super().format(record)
        return "\n".join(f"<{priority}>{line}" for line in text.splitlines() or [""])


def configure(
    settings: LoggingSettings, log_file: Path | None, *, stderr: bool = True, level: str = "",
    env: Mapping[str, str] | None = None,
) -> None:
    """Send package logs to `log_file` (rotated by size) and to stderr (journal-style when
    systemd captures it, i.e. `$JOURNAL_STREAM` is set)."""
    env = os.environ if env is None else env
    root = logging.getLogger("pywats_client")
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.setLevel((level or settings.level).upper())
    root.propagate = False
    formatter = logging.Formatter(FORMAT)
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.handlers.RotatingFileHandler(
            log_file,
            maxBytes=int(settings.max_size_mb * 1024 * 1024),
            backupCount=settings.backup_count,
            encoding="utf-8",
        )
        file_handler.setFormatter(formatter)
        root.addHandler(file_handler)
    if stderr:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(
            JournalFormatter(JOURNAL_FORMAT) if env.get("JOURNAL_STREAM") else formatter)
        root.addHandler(stream)


def quiet_third_party() -> None:
    """urllib3 and watchdog are chatty at DEBUG and may print URLs; keep them at WARNING."""
    for name in ("urllib3", "watchdog", "requests"):
        logging.getLogger(name).setLevel(logging.WARNING)

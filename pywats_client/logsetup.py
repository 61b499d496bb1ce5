"""Logging for the process: configured once, by the CLI, never by library modules.

Every module logs through `logging.getLogger(__name__)`; this module decides where lines go:
the instance's rotating log file and stderr (which journald captures under systemd).
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path

from pywats_client.settings import LoggingSettings

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def configure(
    settings: LoggingSettings, log_file: Path | None, *, stderr: bool = True, level: str = ""
) -> None:
    """Send package logs to `log_file` (rotated by size) and to stderr."""
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
        stream.setFormatter(formatter)
        root.addHandler(stream)


def quiet_third_party() -> None:
    """urllib3 and watchdog are chatty at DEBUG and may print URLs; keep them at WARNING."""
    for name in ("urllib3", "watchdog", "requests"):
        logging.getLogger(name).setLevel(logging.WARNING)

"""Logging for the process: configured once, by the CLI, never by library modules.

Every module logs through `logging.getLogger(__name__)`; this module decides where lines go:
the instance's rotating log file (unless `logging.file` is false) and stderr, in the journal's
own form when stderr really is the journal's stream.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from pywats_client.config.settings import LoggingSettings

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


class SizedFileHandler(logging.handlers.RotatingFileHandler):
    """A RotatingFileHandler that counts what it writes instead of asking the file.

    The standard handler formats every record twice (once to decide on rollover) and stats
    and seeks the file twice per line; with a line or two per report, that was a tenth of
    the interpreter time of a station draining a backlog. Other processes (the CLI) may
    append to the same file, so the real size is read back before rolling over, and every
    RESYNC_LINES lines.
    """

    RESYNC_LINES = 256

    def __init__(self, filename: Path, max_bytes: int, backup_count: int) -> None:
        super().__init__(filename, maxBytes=max_bytes, backupCount=backup_count,
                         encoding="utf-8")
        self._size = self._real_size()
        self._lines = 0

    def _real_size(self) -> int:
        if self.stream is None:
            return 0
        return os.fstat(self.stream.fileno()).st_size

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
            size = len(line.encode("utf-8", "replace"))
            if self.stream is None:  # closed by a rollover that failed, or not opened yet
                self.stream = self._open()
                self._size = self._real_size()
            self._lines += 1
            if self._lines >= self.RESYNC_LINES:
                self._lines, self._size = 0, self._real_size()
            if self.maxBytes > 0 and self._size + size >= self.maxBytes:
                self._size = self._real_size()
                if self._size + size >= self.maxBytes and self._size > 0:
                    self.doRollover()
                    self._size = self._real_size()
            self.stream.write(line)
            self.stream.flush()
            self._size += size
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)


def stderr_is_journal(env: Mapping[str, str] | None = None, fd: int = 2) -> bool:
    """Whether `fd` (stderr) is the stream systemd connected to the journal.

    `$JOURNAL_STREAM` ("device:inode") is inherited by every child, even one whose stderr was
    redirected to a file or a pipe; only when it names the stream `fd` really is does the
    journal read the "<N>" priority prefixes instead of showing them.
    """
    env = os.environ if env is None else env
    device, _, inode = env.get("JOURNAL_STREAM", "").partition(":")
    try:
        st = os.fstat(fd)
        return (int(device), int(inode)) == (st.st_dev, st.st_ino)
    except (OSError, ValueError):
        return False


def configure(
    settings: LoggingSettings, log_file: Path | None, *, stderr: bool = True, level: str = "",
    env: Mapping[str, str] | None = None,
) -> None:
    """Send package logs to `log_file` (rotated by size) and to stderr (journal-style when
    stderr is the journal's stream).

    With `settings.file` false and stderr logged, no file is written: under systemd the
    journal already has every line. Without stderr (a daemon) the file is always written, as
    it is then the only place the lines go.
    """
    # The formats use no process or thread fields; filling them costs a getpid() system call
    # and lookups on every line, a line or two per report.
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging.logThreads = False
    # Nor where the call was made (file, function, line): finding it walks the stack.
    logging._srcfile = None  # the logging HOWTO's own advice for speed
    root = logging.getLogger("pywats_client")
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.setLevel((level or settings.level).upper())
    root.propagate = False
    formatter = logging.Formatter(FORMAT)
    if log_file is not None and (settings.file or not stderr):
        log_file.parent.mkdir(parents=True, exist_ok=True)
        file_handler = SizedFileHandler(
            log_file, int(settings.max_size_mb * 1024 * 1024), settings.backup_count)
        file_handler.setFormatter(formatter)
        root.addHandler(file_handler)
    if stderr:
        stream = logging.StreamHandler(sys.stderr)
        journal = stderr_is_journal(env, sys.stderr.fileno() if _has_fileno() else -1)
        stream.setFormatter(JournalFormatter(JOURNAL_FORMAT) if journal else formatter)
        root.addHandler(stream)


def _has_fileno() -> bool:
    try:
        sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return False  # replaced by an object without a descriptor (a test's capture)
    return True


def quiet_third_party() -> None:
    """urllib3 and watchdog are chatty at DEBUG and may print URLs; keep them at WARNING."""
    for name in ("urllib3", "watchdog", "requests"):
        logging.getLogger(name).setLevel(logging.WARNING)

"""The poison-file guard: files whose converter ran when the process died (the journal says
which) convert after the others, one at a time, so that a death is pinned on one file; one the
process died on `converters.max_crashes` times while it converted alone is set aside.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from pywats_client.clock import Clock
from pywats_client.config.settings import Settings, WatchFolder
from pywats_client.paths import InstancePaths
from pywats_client.service.journal import ConversionJournal, FileKey, Suspect
from pywats_client.service.postaction import SourceFile, move_to_error, protected_folders
from pywats_client.service.status import RunSummary, ServiceStatus

log = logging.getLogger(__name__)


class PoisonFiles:
    """The suspects of this run, those held back to convert alone, and those set aside that
    could not be moved away (never converted again)."""

    def __init__(self, settings: Settings, paths: InstancePaths, journal: ConversionJournal,
                 status: ServiceStatus, summary: RunSummary, clock: Clock) -> None:
        self.settings = settings
        self.paths = paths
        self.journal = journal
        self.status = status
        self.summary = summary
        self.clock = clock
        self.suspects: dict[FileKey, int] = {}  # files the service died on: crashes
        self.held: list[tuple[int, SourceFile]] = []  # suspects waiting to convert alone
        self.poisoned: set[FileKey] = set()  # set aside, but could not be moved away

    def recover(self) -> None:
        """At start-up: files whose converter ran when the process last died are suspects.
        They convert after the others, one at a time; once the process died
        converters.max_crashes times while a file converted alone, it is set aside in the error
        folder."""
        limit = self.settings.converters.max_crashes
        for suspect in self.journal.recover():
            # Only deaths while it converted alone count against a file: one amid other
            # conversions is pinned on none of them (an innocent file then converts alone).
            if suspect.pinned >= limit and self.journal.writable:
                self._set_aside(suspect, limit)
                continue
            self.suspects[suspect.key] = suspect.crashes
            log.warning("the service died while converting %s (%d time(s)); it is converted "
                        "again after the other files, alone", suspect.path, suspect.crashes)

    def hold(self, source: SourceFile, key: FileKey) -> bool:
        """True when `source` is a suspect: it is held back, to convert last and alone."""
        crashes = self.suspects.get(key)
        if crashes is None:
            return False
        self.held.append((crashes, source))
        return True

    def next_alone(self) -> tuple[int, SourceFile]:
        """The held suspect to convert now (there must be one), and its crashes: the least
        suspect first, so the likelier culprit is tried when the others are safe."""
        self.held.sort(key=lambda held: (held[0], held[1].mtime_ns, str(held[1].path)))
        return self.held.pop(0)

    def ended(self, key: FileKey) -> None:
        """A suspect's conversion ended (or was given up): the journal says how."""
        self.suspects.pop(key, None)

    def _set_aside(self, suspect: Suspect, limit: int) -> None:
        alone = ("" if suspect.pinned == suspect.crashes
                 else f", {suspect.pinned} of them while it was converted alone")
        reason = (f"the service died {suspect.crashes} times while converting this file"
                  f"{alone} (converters.max_crashes is {limit}); see the log, "
                  f"{self.paths.log_file}. The converter crashes on it (or the process ran out "
                  "of memory)")
        self.status.poison_files += 1
        self.status.conversion_errors += 1
        self.summary.conversion_errors += 1
        self.status.record_failure("poison_file", reason, self.clock.time(),
                                   source=str(suspect.path))
        folder = self._watch_folder_of(suspect.path)
        if folder is None:
            log.error("the service died %d times while converting %s, which is no longer in a "
                      "watch folder; left where it is", suspect.crashes, suspect.path)
            self.journal.forget(suspect.key)
            return
        source = SourceFile(folder, suspect.path, suspect.size, suspect.mtime_ns)
        try:
            # Never into the instance's own folders, as for any other file (postaction).
            moved = move_to_error(source, reason, protect=protected_folders(self.paths))
        except OSError as exc:
            log.error("the service died %d times while converting %s, and it cannot be moved to "
                      "the error folder (%s); it is not converted again", suspect.crashes,
                      suspect.path, exc)
            self.poisoned.add(suspect.key)
            return
        self.journal.forget(suspect.key)
        log.error("the service died %d times while converting %s: set aside in %s",
                  suspect.crashes, suspect.path, moved)

    def _watch_folder_of(self, path: Path) -> WatchFolder | None:
        parent = os.path.dirname(os.path.abspath(path))
        for folder in self.settings.queue.watch_folders:
            if os.path.abspath(folder.path) == parent:
                return folder
        return None

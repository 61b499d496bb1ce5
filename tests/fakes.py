"""The test fakes, in one place: only true edges are faked (time, and the answers of the WATS
server to the upload dispatcher)."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from pywats_client.clock import Clock
from pywats_client.outcomes import Outcome
from pywats_client.service.uploader import UploadResult


class FakeClock(Clock):
    """A clock that moves only when a test says so; wait() returns at once (no real sleeping)."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start
        self.mono = 1000.0

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.mono += seconds

    def wait(self, event: threading.Event, timeout: float | None) -> bool:
        return event.is_set()


class ScriptedUploader:
    """The dispatcher's edge to WATS (what `Uploader` offers), answering from a script.

    Each upload or probe takes the next answer of its script; the last one repeats. Every call
    is recorded: `sent` holds the report ids in the order they were uploaded."""

    def __init__(self, uploads: Sequence[UploadResult] = (), probes: Sequence[UploadResult] = ()
                 ) -> None:
        stored = UploadResult(Outcome.STORED, 200, "WATS stored it (HTTP 200)")
        self._uploads = list(uploads) or [stored]
        self._probes = list(probes) or [stored]
        self._lock = threading.Lock()
        self.sent: list[str] = []
        self.probes = 0
        self.closed = False

    def upload(self, body: bytes, report_id: str) -> UploadResult:
        with self._lock:
            self.sent.append(report_id)
            return self._uploads.pop(0) if len(self._uploads) > 1 else self._uploads[0]

    def probe(self) -> UploadResult:
        with self._lock:
            self.probes += 1
            return self._probes.pop(0) if len(self._probes) > 1 else self._probes[0]

    def processes(self) -> tuple[UploadResult, dict[str, int]]:
        return UploadResult(Outcome.STORED, 200, "WATS answered (HTTP 200)"), {}

    def close(self) -> None:
        self.closed = True

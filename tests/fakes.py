"""The test fakes, in one place: only true edges (time) are faked."""

from __future__ import annotations

import threading

from pywats_client.clock import Clock


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

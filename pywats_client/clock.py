"""Time, in one injectable place.

Retry schedules, settle times and probes ask a `Clock` instead of the `time` module, so tests
can step time forward instead of sleeping. This module is a leaf.
"""

from __future__ import annotations

import threading
import time


class Clock:
    """Wall and monotonic time plus an interruptible wait; the real thing."""

    def time(self) -> float:
        """Seconds since the epoch (wall clock; stored in files, shown to people)."""
        return time.time()

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin that never goes back (for intervals)."""
        return time.monotonic()

    def wait(self, event: threading.Event, timeout: float | None) -> bool:
        """Wait until `event` is set or `timeout` seconds pass; True if the event was set."""
        return event.wait(timeout)


SYSTEM_CLOCK = Clock()

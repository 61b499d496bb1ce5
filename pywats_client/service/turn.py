"""Taking turns at the interpreter: the service's threads do their short stretches of work
(a conversion, a claim, a move to completed/, a round of the main loop) one at a time.

The threads share one interpreter lock, and every system call gives it up: with several threads
ready, each of a report's ~75 system calls was a hand-over to another thread and back, a futex
wait and a context switch each way. Holding a `Turn` across a stretch keeps the others asleep
on the turn instead (one wait, one wake-up), so the holder takes the interpreter lock back
after each system call at once: 3.2 -> 2.5 ms of CPU per report (scripts/bench.py, cpu).

A turn is a courtesy, never a guarantee: nothing relies on it for correctness. A thread waits
at most PATIENCE for it and then goes on without, and does not wait at all while the holder has
had it for LONG_HOLD (a large file, a slow share, a converter that hangs): then threads share
the interpreter lock as they would without turns. A thread gives its turn up while it waits for
another (`set_aside`), and upload workers, whose next request must not wait behind a
conversion, take the turn only when it is free (`eager`).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from types import TracebackType

PATIENCE = 0.005  # seconds a thread waits for the turn before it goes on without
LONG_HOLD = 0.05  # a holder that has had the turn this long is not waited for


class _Shared:
    """The turn itself, shared by the `Turn`s that take it with different patience."""

    def __init__(self, long_hold: float) -> None:
        self.long_hold = long_hold
        self.lock = threading.Lock()
        self.since = 0.0  # monotonic: when the holder took it (read without the lock)
        self.local = threading.local()  # depth: nesting; held: this thread has the lock

    def take(self, patience: float) -> bool:
        held = self.lock.acquire(False)
        if (not held and patience > 0
                and time.monotonic() - self.since < self.long_hold):
            held = self.lock.acquire(timeout=patience)
        if held:
            self.since = time.monotonic()
        return held


class Turn:
    """`with turn:` around a stretch of work. Re-entrant: a thread inside already goes on."""

    def __init__(self, patience: float = PATIENCE, long_hold: float = LONG_HOLD, *,
                 _shared: _Shared | None = None) -> None:
        self.patience = patience
        self._shared = _shared if _shared is not None else _Shared(long_hold)

    def eager(self) -> Turn:
        """The same turn, for threads that must never wait for it: taken when it is free, else
        the stretch goes on without it."""
        return Turn(0.0, _shared=self._shared)

    @property
    def held(self) -> bool:
        """Whether this thread holds the turn now."""
        return bool(getattr(self._shared.local, "held", False))

    def __enter__(self) -> None:
        local = self._shared.local
        depth = getattr(local, "depth", 0)
        local.depth = depth + 1
        if not depth:  # else inside a stretch already (with the turn or without it)
            local.held = self._shared.take(self.patience)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        local = self._shared.local
        local.depth -= 1
        if not local.depth and local.held:
            local.held = False
            self._shared.lock.release()

    @contextlib.contextmanager
    def set_aside(self) -> Iterator[None]:
        """Give the turn up while this thread waits for something (memory freed by another
        conversion), and take it back after."""
        local = self._shared.local
        if not getattr(local, "held", False):
            yield
            return
        local.held = False
        self._shared.lock.release()
        try:
            yield
        finally:
            local.held = self._shared.take(self.patience)

"""The gate every worker thread passes to change the instance's files (the queue, the conversion
journal, the watched source files), and the stop that closes it: once `close()` has returned,
no thread of this service changes them again, however long it stays blocked elsewhere.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class WorkGate:
    """Open until the service stops. Workers bracket each change with `enter()` / `leave()`;
    `close()` refuses new entries and waits for those inside. Entering costs one uncontended
    lock, and workers never wait for each other here."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._inside = 0
        self._closed = False
        self._when_idle: list[Callable[[], None]] = []

    @property
    def closed(self) -> bool:
        return self._closed

    def enter(self) -> bool:
        """True: go ahead, and call `leave()` after. False: the service is stopping; change
        nothing (what the thread was doing is picked up again at the next start)."""
        with self._cond:
            if self._closed:
                return False
            self._inside += 1
            return True

    def leave(self) -> None:
        with self._cond:
            self._inside -= 1
            if self._inside or not self._closed:
                return
            self._cond.notify_all()
            callbacks, self._when_idle = self._when_idle, []
        for callback in callbacks:
            callback()

    def close(self, timeout: float) -> bool:
        """Let no one in any more; True once nobody is inside (waits up to `timeout` s)."""
        with self._cond:
            self._closed = True
            return self._cond.wait_for(lambda: self._inside == 0, timeout)

    def when_idle(self, callback: Callable[[], None]) -> None:
        """Call `callback` once the gate is closed and the last thread inside has left (at
        once if that is so already), on the thread that leaves last."""
        with self._cond:
            if not (self._closed and self._inside == 0):
                self._when_idle.append(callback)
                return
        callback()

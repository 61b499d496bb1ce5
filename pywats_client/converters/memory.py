"""What a conversion may cost in memory: the estimate from a file's size and its converter's
measured ratio, the budget the conversions of one process share (`MemoryBudget`), and the
check a converter makes while it reads (`check_memory()`).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pywats_client.errors import ConversionError

MB = 1024 * 1024
# What the service holds before any conversion: the interpreter, the package, the threads,
# the watcher and the queue (an idle service measures 30-45 MB of RSS).
BASE_MB = 40.0
# Peak RSS growth per byte of input of a converter that states none (a plugin): most
# converters that build a tree of the whole file stay below this.
DEFAULT_RATIO = 10.0
SETTING = "converters.max_memory_mb"
# RSS is read at most once per this many bytes a converter reads: a /proc read is ~20 us.
CHECK_EVERY = 1 * MB
# After a conversion estimated at this much, the freed memory is handed back to the system.
TRIM_FROM = 8 * MB

_local = threading.local()


def ratio_of(converter: object) -> float:
    """Peak RSS growth per byte of input: the converter's measured `memory_ratio`, else the
    conservative default for converters that state none."""
    ratio = getattr(converter, "memory_ratio", None)
    if isinstance(ratio, (int, float)) and not isinstance(ratio, bool) and ratio > 0:
        return float(ratio)
    return DEFAULT_RATIO


def estimate(converter: object, size: int) -> int:
    """Bytes of memory converting (and queueing) a file of `size` bytes is expected to need."""
    return int(size * ratio_of(converter))


def largest_file(max_memory_mb: float, converter: object) -> int:
    """The largest file (bytes) `converter` can convert within `max_memory_mb` of RSS."""
    return largest_for_ratio(max_memory_mb, ratio_of(converter))


def largest_for_ratio(max_memory_mb: float, ratio: float) -> int:
    """The largest file (bytes) a converter of this ratio can convert in `max_memory_mb`."""
    return max(0, int((max_memory_mb - BASE_MB) * MB / ratio))


def format_name(converter: object) -> str:
    return str(getattr(converter, "name", "") or type(converter).__name__)


def refusal(path: Path, converter: object, size: int, max_memory_mb: float) -> str:
    """Why a file is not converted: the sizes, the setting, and what this station takes."""
    need = BASE_MB + estimate(converter, size) / MB
    most = largest_file(max_memory_mb, converter) / MB
    return (
        f"{path.name} is {size / MB:.1f} MB; converting it with {format_name(converter)} "
        f"needs about {need:.0f} MB of memory, over the {max_memory_mb:g} MB this station "
        f"allows ({SETTING}), so it was not read. This station takes "
        f"{format_name(converter)} files up to {most:.1f} MB. On a station with more memory, "
        f"raise {SETTING} (and the service's MemoryMax) with 'pywats-client config set "
        f"{SETTING} N'; else have the equipment write smaller files"
    )


def rss_bytes() -> int:
    """This process's resident set size now (0 where /proc is not available)."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def check_memory(where: str) -> None:
    """For converters, now and then while they read a large file: raise ConversionError when
    the process is over the memory budget of the conversion running in this thread. Does
    nothing outside a budgeted conversion, or where RSS cannot be read."""
    limit: tuple[int, str] | None = getattr(_local, "limit", None)
    if limit is None:
        return
    rss = rss_bytes()
    if rss > limit[0]:
        raise ConversionError(
            f"{where}: the conversion stopped at {rss / MB:.0f} MB of memory, over the "
            f"{limit[0] / MB:g} MB this station allows ({SETTING}); {limit[1]}"
        )


class MemoryBudget:
    """The memory the conversions of one process share: `max_memory_mb` of peak RSS, of
    which `BASE_MB` is the process itself.

    `reserve()` is granted in the order asked: a big file waits until the conversions before
    it are done and then converts alone, the files behind it wait for it, and small files
    go on side by side within what is left. A file whose estimate exceeds the whole budget
    is refused (ConversionError, naming the setting) instead of waiting forever.
    """

    def __init__(self, max_memory_mb: float) -> None:
        self.max_memory_mb = max_memory_mb
        self.total = max(0, int((max_memory_mb - BASE_MB) * MB))
        self.used = 0
        self._cond = threading.Condition()
        self._waiting: deque[object] = deque()

    def check(self, path: Path, converter: object, size: int) -> int:
        """The estimate for this file; ConversionError when the budget can never hold it."""
        need = estimate(converter, size)
        if need > self.total:
            raise ConversionError(refusal(path, converter, size, self.max_memory_mb))
        return need

    def free_for(self, converter: object, size: int) -> bool:
        """Whether the budget has room for a file of `size` now, with no file waiting before it:
        a reservation would be granted without waiting (a hint, read without the lock)."""
        return not self._waiting and self.used + estimate(converter, size) <= self.total

    @contextlib.contextmanager
    def reserve(self, path: Path, converter: object, size: int,
                timeout: float | None = None) -> Iterator[int]:
        """Hold this file's share of the budget while it is converted and queued; converters
        that check (`check_memory()`) stop when the process goes over `max_memory_mb`."""
        need = self.check(path, converter, size)
        ticket = object()
        with self._cond:
            self._waiting.append(ticket)
            try:
                granted = self._cond.wait_for(
                    lambda: self._waiting[0] is ticket and self.used + need <= self.total,
                    timeout)
            finally:
                self._waiting.remove(ticket)
                self._cond.notify_all()
            if not granted:
                raise ConversionError(
                    f"{path.name}: no memory became free for its conversion within "
                    f"{timeout:g} s ({SETTING})")
            self.used += need
        previous = getattr(_local, "limit", None)
        _local.limit = (int(self.max_memory_mb * MB),
                        f"this station takes {format_name(converter)} files up to "
                        f"{largest_file(self.max_memory_mb, converter) / MB:.1f} MB")
        try:
            yield need
        finally:
            _local.limit = previous
            if need >= TRIM_FROM:
                give_back()
            with self._cond:
                self.used -= need
                self._cond.notify_all()


def give_back() -> None:
    """Return the freed heap of a large conversion to the system (glibc's malloc_trim): the C
    allocator keeps what a large file's text and report were freed into, and the next
    conversion would count on it being there. Elsewhere (no glibc) nothing is done."""
    global _trim
    if _trim is None:
        try:
            import ctypes

            _trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _trim = False
    if _trim:
        _trim(0)


_trim: Any = None

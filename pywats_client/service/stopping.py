"""How a `Service` stops: its signal handlers (which only set flags, but for a second stop),
and the stop itself - running work waited for within a bound, then abandoned behind the closed
gate, and the instance lock released or handed over to a restart in place.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING

from pywats_client.service.drain import remaining

if TYPE_CHECKING:
    from pywats_client.service.loop import Service

log = logging.getLogger(__name__)

HANDLED_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
GATE_CLOSE_TIMEOUT = 5.0  # how long a stop waits for a queue write under way to finish


def install_signal_handlers(service: Service, exit_now: Callable[[], None] | None) -> None:
    """SIGTERM/SIGINT stop `service`, SIGHUP restarts it in place; see
    `Service.install_signal_handlers`."""
    def stop(signum: int, frame: FrameType | None) -> None:
        service.request_stop()
        if service.hard_stop and exit_now is not None:
            exit_now()

    def reload(signum: int, frame: FrameType | None) -> None:
        service.request_restart("SIGHUP")

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, reload)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)


def block_signals() -> None:
    """Hold SIGTERM, SIGINT and SIGHUP until `install_signal_handlers` takes them: over a
    restart in place (the mask survives exec) a signal then waits instead of killing the
    process with its default action."""
    signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)


def shut_down(service: Service) -> None:
    """Stop: no new work; running conversions and in-flight uploads get `stop_timeout`
    seconds together (none after a second stop request). Then the gate closes: whatever
    still runs is abandoned and can change nothing any more — a report being uploaded stays
    in processing/, a file being converted in its folder — and only then is the instance
    lock released (or, if a queue write is itself stuck, when it ends or the process
    exits: `unfinished_threads()` tells the caller not to wait for it)."""
    s = service
    restarting = s.restart_requested
    if restarting:
        log.info("restarting in place to reload the configuration%s",
                 f" ({s.restart_reason})" if s.restart_reason else "")
        # The process stays and says READY=1 again after re-executing: to systemd this is
        # a reload, not a stop (STOPPING=1 would make it wait for the process to exit).
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        s.notifier.notify("RELOADING=1", f"MONOTONIC_USEC={usec}", "STATUS=restarting")
    else:
        s.notifier.stopping()
    s.status.state = "stopping"
    s.publish()
    s.watcher.stop()
    deadline = time.monotonic() + (0.0 if s.hard_stop else s.stop_timeout)
    s.dispatcher.accepting = False
    s.conversions.stop(deadline)
    drained = s.dispatcher.drain(max(0.0, deadline - time.monotonic()),
                                 interrupted=lambda: s.hard_stop)
    if not drained:
        log.warning("uploads still running after %.0fs are abandoned; they are sent again "
                    "at the next start", s.stop_timeout)
    clean = s.gate.close(GATE_CLOSE_TIMEOUT)
    s.journal.mark_stopped()
    s.dispatcher.shutdown()
    # The uploads were tallied as they finished; the server as the probes left it too.
    s.summary.server = s.status.server
    s.summary.message = s.status.server_detail
    s.summary.remaining = remaining(s.queue)
    s.status.state = "stopped"
    s.publish()
    if restarting and s.hand_over_lock:
        s.journal.close()  # the lock goes on to the restarted program
    elif clean:
        s.journal.close()
        s.lock.release()
    else:
        log.error("a write to the queue has not finished within %.0fs (a hung disk?); the "
                  "instance stays locked until it does", GATE_CLOSE_TIMEOUT)
        s.gate.when_idle(s.journal.close)
        s.gate.when_idle(s.lock.release)
    busy = s.unfinished_threads()
    log.info("stopped (%s): %d uploaded this run%s", "immediate" if s.hard_stop
             else "graceful", s.status.uploaded,
             f"; {busy} abandoned thread(s) still busy" if busy else "")

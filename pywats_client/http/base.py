"""HTTP server plumbing shared by the control API and the bundled receiver: `StoppableHTTPServer`
(a capped number of connections, each tracked, so `stop()` returns with every thread joined) and
`KeepAliveHandler` (keep-alive, with time limits on the whole of each request), and what a
loopback host is (`is_loopback`). Standard library only, so the receiver stays usable on its
own.
"""

from __future__ import annotations

import contextlib
import io
import ipaddress
import logging
import selectors
import socket
import sys
import threading
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

_log = logging.getLogger(__name__)


BUSY_ANSWER = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
               b"Content-Length: 45\r\nRetry-After: 5\r\nConnection: close\r\n\r\n"
               b"Too many connections at once; try again soon\n")
LINGER_SECONDS = 2.0  # a refused connection is kept this long for its client to read the 503
REFUSAL_LOG_INTERVAL = 60.0  # seconds between log lines about refused connections


def is_loopback(host: str) -> bool:
    """True for a host name or address that only this machine reaches (localhost, 127.0.0.0/8,
    ::1, with or without IPv6 brackets)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class StoppableHTTPServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer served by `start()` on a thread of its own and ended by `stop()`.

    At most `max_connections` connections are served at once, each on its own thread; one
    more is answered 503 by the accept thread itself and closed, so a flood of connections
    costs neither threads nor file descriptors beyond that cap (the process's other threads
    share one task limit with these, `TasksMax=` under systemd).

    Binds in the constructor, so a port in use is an error before anything starts. Subclasses
    set `log` (their module's logger), `role` (how log lines name the server) and
    `max_connections`.
    """

    daemon_threads = False  # so server_close() joins the handler threads: nothing leaks
    block_on_close = True
    timeout = 0  # handle_request() is only called when a connection is waiting
    request_queue_size = 64  # the listen backlog: connections beyond the cap are refused fast
    log: ClassVar[logging.Logger] = _log
    role: ClassVar[str] = "HTTP server"
    max_connections: ClassVar[int] = 8

    def __init__(self, host: str, port: int,
                 handler_class: type[BaseHTTPRequestHandler]) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        # Refused connections the accept thread waits on to close (socket -> close by, monotonic)
        self._lingering: dict[socket.socket, float] = {}
        self._refused = 0  # since the last log line about them
        self._refusal_logged = -REFUSAL_LOG_INTERVAL
        self._selector: selectors.BaseSelector = selectors.DefaultSelector()  # _serve's own
        super().__init__((host, port), handler_class)  # closes its socket if the bind fails
        try:
            self._wake_r, self._wake_w = socket.socketpair()  # wakes the accept loop on stop()
        except OSError:
            self.server_close()
            raise

    @property
    def started(self) -> bool:
        """True once `start()` ran, and still after `stop()`: a stopped server stays stopped."""
        return self._thread is not None

    def start(self, name: str, *, daemon: bool) -> None:
        """Accept connections on a new thread called `name`."""
        self._thread = threading.Thread(target=self._serve, name=name, daemon=daemon)
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting, cut open connections (idle keep-alive ones too), join every thread."""
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._thread is not None:
            self._thread.join()
        self._close_connections()
        self.server_close()  # joins the handler threads
        self._wake_r.close()
        self._wake_w.close()
        if self._thread is None:
            self._selector.close()  # never served: _serve did not close it

    def _serve(self) -> None:
        # An accept loop woken by a byte on a socket pair: serve_forever() polls, so stopping
        # it would cost up to a poll interval, while this one ends at once.
        with self._selector as selector:
            selector.register(self, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while not self._stopping.is_set():
                wait = None
                if self._lingering:
                    wait = max(0.0, min(self._lingering.values()) - time.monotonic())
                for key, _ in selector.select(wait):
                    if self._stopping.is_set():
                        break
                    if key.fileobj is self:
                        self.handle_request()  # ready, so it does not block
                    elif key.fileobj in self._lingering:
                        self._read_lingering(key.fileobj)
                self._close_lingering(time.monotonic())
            self._close_lingering(None)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:  # tracked before the thread starts: stop() cannot miss it
            full = len(self._open) >= self.max_connections
            if not full:
                self._open.add(request)
        if full:
            self._refuse(request, client_address)
            return
        try:
            super().process_request(request, client_address)
        except RuntimeError as exc:  # "can't start new thread": the task limit is reached
            self.log.warning("%s: no thread for a connection from %s (%s); closed it",
                             self.role, client_address, exc)
            self.shutdown_request(request)

    # -- connections beyond the cap -------------------------------------------------------

    def _refuse(self, request: socket.socket, client_address: Any) -> None:
        """Answer 503 without a thread: the answer fits the socket's send buffer, so a
        non-blocking send never waits. The socket then lingers a moment, so the client reads
        the answer before the close (closing with its request unread would send a reset)."""
        self._refused += 1
        now = time.monotonic()
        if now - self._refusal_logged >= REFUSAL_LOG_INTERVAL:
            self.log.warning("%s: %d connection(s) refused with 503, the last from %s: %d "
                             "are served at once at most", self.role, self._refused,
                             client_address, self.max_connections)
            self._refused, self._refusal_logged = 0, now
        try:
            request.setblocking(False)
            request.send(BUSY_ANSWER)
            request.shutdown(socket.SHUT_WR)
        except OSError:  # TLS not yet negotiated, or the client is gone: just close
            request.close()
            return
        if len(self._lingering) >= 4 * self.max_connections:
            request.close()  # a flood: no more waiting for anyone to read the answer
            return
        self._lingering[request] = now + LINGER_SECONDS
        self._selector.register(request, selectors.EVENT_READ)

    def _read_lingering(self, request: socket.socket) -> None:
        try:
            data = request.recv(65536)  # the client's request, unread; or b"": it closed
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._lingering[request] = 0.0  # closed by _close_lingering

    def _close_lingering(self, now: float | None) -> None:
        """Close the refused connections that are done (all of them when `now` is None)."""
        for request, until in list(self._lingering.items()):
            if now is None or until <= now:
                del self._lingering[request]
                with contextlib.suppress(KeyError, ValueError, OSError):
                    self._selector.unregister(request)
                request.close()

    def shutdown_request(self, request: Any) -> None:
        self._forget(request)
        super().shutdown_request(request)

    def _forget(self, request: Any) -> None:
        """The connection is closing: stop() no longer needs to cut it."""
        with self._open_lock:
            self._open.discard(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hung up (or was reset on purpose) is normal, not worth a traceback.
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            self.log.debug("%s connection from %s ended: %s", self.role, client_address, exc)
        else:
            self.log.exception("%s failed on a request from %s", self.role, client_address)

    def _close_connections(self) -> None:
        # Handlers blocked reading an idle keep-alive connection (browsers keep spares open)
        # would otherwise wait out their timeout before server_close() could join them.
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class _DeadlineReader(io.RawIOBase):
    """The socket as a handler reads it, with a deadline for the whole of what is being read:
    `timeout` alone bounds each read, so a client sending a byte a second is never cut off."""

    def __init__(self, raw: io.RawIOBase, sock: socket.socket, timeout: float | None) -> None:
        super().__init__()
        self._raw, self._sock, self._timeout = raw, sock, timeout
        self.deadline = float("inf")  # monotonic
        self.then: float | None = None  # after the first byte: a new deadline this far off

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the client took too long to send its request")
        limit = remaining if self._timeout is None else min(remaining, self._timeout)
        self._sock.settimeout(limit)
        try:
            count = self._raw.readinto(buffer)
        finally:
            self._sock.settimeout(self._timeout)  # writes keep the handler's own timeout
        if count and self.then is not None:
            self.deadline, self.then = time.monotonic() + self.then, None
        return count

    def close(self) -> None:
        self._raw.close()
        super().close()


class KeepAliveHandler(BaseHTTPRequestHandler):
    """One connection, HTTP/1.1 with keep-alive, so every answer carries Content-Length.

    Three limits keep a slow or silent client from holding its thread: `idle_timeout` for the
    first byte of a request (a keep-alive connection waiting for the next one included),
    `head_timeout` from there to the end of its headers, and `body_timeout` for reading its
    body; `timeout` bounds each single read and write.

    Subclasses implement `_dispatch(method)` and set the timeouts, `server_version`, `log`,
    `request_log_level` and `request_log_format` (which gets the client address and the
    request line). `default_headers` go on every answer.
    """

    idle_timeout: ClassVar[float] = 10.0
    head_timeout: ClassVar[float] = 10.0
    body_timeout: ClassVar[float] = 30.0
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, the body would wait for the
    # client's delayed ACK (40 ms on Linux) on every request.
    disable_nagle_algorithm = True
    log: ClassVar[logging.Logger] = _log
    request_log_level: ClassVar[int] = logging.DEBUG
    request_log_format: ClassVar[str] = "%s %s"
    default_headers: ClassVar[Mapping[str, str]] = {}

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        raise NotImplementedError

    # -- time limits ----------------------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        raw = self.rfile.detach()  # the socket's reader, unbuffered, still open
        self._reader = _DeadlineReader(raw, self.connection, self.timeout)
        self.rfile = io.BufferedReader(self._reader)

    def handle_one_request(self) -> None:
        self._reader.deadline = time.monotonic() + self.idle_timeout
        self._reader.then = self.head_timeout
        super().handle_one_request()

    def parse_request(self) -> bool:
        parsed = super().parse_request()  # the headers are in: now the body's time runs
        self._reader.deadline, self._reader.then = time.monotonic() + self.body_timeout, None
        return parsed

    def log_message(self, format: str, *args: Any) -> None:
        self.log.log(self.request_log_level, self.request_log_format, self.address_string(),
                     format % args)

    # -- the request body -----------------------------------------------------------------

    def _content_length(self) -> int:
        """The Content-Length header (0 when absent), or -1 when it is not a number."""
        try:
            return int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return -1

    def _discard(self, length: int) -> None:
        """Read and drop up to `length` bytes of body in bounded chunks (less if the client
        stops sending or the connection fails: the answer is what matters then)."""
        with contextlib.suppress(OSError):
            while length > 0:
                chunk = self.rfile.read(min(length, 2**16))
                if not chunk:
                    return
                length -= len(chunk)

    # -- answers --------------------------------------------------------------------------

    def _send(self, status: int, body: bytes, content_type: str,
              headers: Mapping[str, str] | None = None, *, close: bool = False) -> None:
        """Answer with `body` (not sent for HEAD); `close` ends the connection after it."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (*self.default_headers.items(), *(headers or {}).items()):
            self.send_header(name, value)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

"""HTTP server plumbing shared by the control API and the bundled receiver: `StoppableHTTPServer`
(tracks every connection, so `stop()` returns with every thread joined) and `KeepAliveHandler`.
Standard library only, so the receiver stays usable on its own.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import sys
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

_log = logging.getLogger(__name__)


class StoppableHTTPServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer served by `start()` on a thread of its own and ended by `stop()`.

    Binds in the constructor, so a port in use is an error before anything starts. Subclasses
    set `log` (their module's logger) and `role` (how log lines name the server).
    """

    daemon_threads = False  # so server_close() joins the handler threads: nothing leaks
    block_on_close = True
    timeout = 0  # handle_request() is only called when a connection is waiting
    log: ClassVar[logging.Logger] = _log
    role: ClassVar[str] = "HTTP server"

    def __init__(self, host: str, port: int,
                 handler_class: type[BaseHTTPRequestHandler]) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
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

    def _serve(self) -> None:
        # An accept loop woken by a byte on a socket pair: serve_forever() polls, so stopping
        # it would cost up to a poll interval, while this one ends at once.
        with selectors.DefaultSelector() as selector:
            selector.register(self, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while not self._stopping.is_set():
                for key, _ in selector.select():
                    if key.fileobj is self and not self._stopping.is_set():
                        self.handle_request()  # ready, so it does not block

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:  # tracked before the thread starts: stop() cannot miss it
            self._open.add(request)
        super().process_request(request, client_address)

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


class KeepAliveHandler(BaseHTTPRequestHandler):
    """One connection, HTTP/1.1 with keep-alive, so every answer carries Content-Length.

    Subclasses implement `_dispatch(method)` and set `timeout`, `server_version`, `log`,
    `request_log_level` and `request_log_format` (which gets the client address and the
    request line). `default_headers` go on every answer.
    """

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

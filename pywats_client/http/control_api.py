"""The control API inside the service (`start --api`): the listening socket, the read-only GET
routes served from the service's published snapshot and the queue folders, and POST /stop and
/restart, with who may use which behind the per-instance token (`<instance>/api.token`, 0600).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from pywats_client import __version__
from pywats_client.errors import ControlApiError, PyWATSClientError
from pywats_client.http import metrics, status_page
from pywats_client.http.base import KeepAliveHandler, StoppableHTTPServer, is_loopback
from pywats_client.queue.store import DurableQueue, State

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
TOKEN_FILE = "api.token"
MAX_PAGE = 1000  # items per /queue/<state> page
DEFAULT_PAGE = 50
MAX_CONNECTIONS = 8  # served at once; more are answered 503


class ServiceControl(Protocol):
    """What the control API needs from the running service."""

    def snapshot(self) -> Mapping[str, Any]: ...

    def request_stop(self) -> None: ...

    def request_restart(self) -> None: ...


# -- the token ------------------------------------------------------------------------------


def token_path(instance_root: Path) -> Path:
    return instance_root / TOKEN_FILE


def load_or_create_token(path: Path) -> str:
    """The API token kept in `path`; created (0600, 32 random bytes, URL-safe) if missing.

    O_EXCL makes the first writer win when two processes race, and both end up with the one
    token on disk.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return _read_token(path)
    token = secrets.token_urlsafe(32)
    try:
        os.write(fd, f"{token}\n".encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    log.info("created the control API token in %s (readable by this user only)", path)
    return token


def _read_token(path: Path) -> str:
    mode = path.stat().st_mode
    if mode & 0o077:
        # Anyone who can read it can stop the service: tighten rather than refuse to start.
        os.chmod(path, 0o600)
        log.warning("%s was readable by other users (mode %o); changed it to 0600", path,
                    mode & 0o777)
    token = path.read_text(encoding="ascii", errors="replace").strip()
    if len(token) < 16:
        raise ControlApiError(
            f"the control API token file {path} is empty or too short. Fix: delete it; a new "
            "token is created at the next start (or by 'pywats-client api-token')")
    return token


# -- addresses ------------------------------------------------------------------------------


def _url(host: str, port: int) -> str:
    # A wildcard bind is reached locally through loopback; that is the URL tools should use.
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


# -- the server -----------------------------------------------------------------------------


class ControlServer:
    """The control API of one service. Binds in the constructor (so a port in use is an error
    before the service starts); `start()` serves on a thread; `stop()` joins every thread.

    It never imports the service: it is handed a `ServiceControl`. A GET request reads only the
    snapshot the service's main thread publishes and the queue folders, so it never touches
    state another thread is changing."""

    def __init__(
        self,
        service: ServiceControl,
        queue: DurableQueue,
        token: str,
        *,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        allow_remote: bool = False,
        config_view: Callable[[], Mapping[str, Any]] | None = None,
        instance: str = "default",
        station: str = "",
    ) -> None:
        if not is_loopback(host) and not allow_remote:
            raise ControlApiError(
                f"refusing to serve the control API on {host}: it is for this machine "
                "(--api-host 127.0.0.1). To reach it from the network, add --api-allow-remote "
                "(or set api.allow_remote); then every route needs the token, which crosses "
                "the network in clear text unless a VPN or SSH tunnel carries it")
        self.service = service
        self.queue = queue
        self.config_view = config_view
        self.instance = instance
        self.station = station
        self.loopback_only = is_loopback(host)
        self._token = token.encode("utf-8")
        self._control_lock = threading.Lock()
        self._control_sent = ""  # "stop" or "restart" once asked; later asks change nothing
        try:
            self._server = _Server(self, host, port)
        except OSError as exc:
            raise ControlApiError(_bind_problem(host, port, exc)) from None
        self.port = int(self._server.server_address[1])
        self.url = _url(host, self.port)
        if not self.loopback_only:
            log.warning("the control API listens on %s (not loopback): every route needs the "
                        "token, and it crosses the network to port %d in clear text", host,
                        self.port)

    def __repr__(self) -> str:  # no token here, ever
        return f"ControlServer(url={self.url!r}, instance={self.instance!r})"

    def start(self) -> ControlServer:
        if self._server.started:
            raise RuntimeError(f"control API at {self.url} is already started")
        self._server.start(f"control-api-{self.port}", daemon=False)
        log.info("control API on %s (stop, restart, /config and /queue/<state> need the "
                 "token in %s; beyond loopback every route does)", self.url, TOKEN_FILE)
        return self

    def stop(self) -> None:
        """Stop accepting, cut idle connections, and join every thread."""
        self._server.stop()

    def __enter__(self) -> ControlServer:
        return self if self._server.started else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- used by the handler --------------------------------------------------------------

    def authorised(self, header: str | None, *, browser: bool = False) -> bool:
        """True if `header` (Authorization) carries the token: as `Bearer <token>`, or with
        `browser`, as HTTP Basic with any user name and the token as the password.

        A browser sends Basic credentials it remembers on its own, also for a form another web
        page posts here; so they open the read-only routes only, never stop or restart."""
        scheme, _, credentials = (header or "").partition(" ")
        scheme, credentials = scheme.lower(), credentials.strip()
        if scheme == "basic" and browser:
            try:
                decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
            except (binascii.Error, ValueError):
                return False
            credentials = decoded.partition(":")[2]
        elif scheme != "bearer":
            return False
        return hmac.compare_digest(credentials.encode("utf-8"), self._token)

    def control(self, action: str) -> tuple[int, dict[str, Any]]:
        """Ask the service to stop or restart, once; the answer for the client."""
        with self._control_lock:
            already = self._control_sent
            if not already:
                self._control_sent = action
        if already:
            if already == action:
                return 202, {"accepted": action, "note": f"{action} already in progress"}
            return 409, {"error": f"a {already} is already in progress; wait for it"}
        log.info("control API: %s requested", action)
        if action == "restart":
            self.service.request_restart()
        else:
            self.service.request_stop()
        return 202, {"accepted": action, "pid": os.getpid()}

    def counts(self) -> dict[str, int]:
        try:
            return {s.value: n for s, n in self.queue.counts().items()}
        except FileNotFoundError:
            return {s.value: 0 for s in State}  # before the first start made the folders


def _bind_problem(host: str, port: int, exc: OSError) -> str:
    import errno

    where = f"{host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return (f"cannot serve the control API on {where}: the port is in use (another "
                "pywats-client instance, or another program). Fix: give each instance its own "
                f"--api-port, or stop what listens there (ss -ltnp 'sport = :{port}')")
    if exc.errno == errno.EACCES:
        return (f"cannot serve the control API on {where}: permission denied (ports below 1024 "
                "need root). Fix: use --api-port 8765 or another port above 1023")
    return f"cannot serve the control API on {where}: {exc.strerror or exc}"


class _Server(StoppableHTTPServer):
    """The HTTP server, knowing the ControlServer its handlers answer for."""

    log = logging.getLogger(__name__)
    role = "control API"
    # A phone, a browser's spare connections, a script and a scraper: a few at once. Each is a
    # thread, taken from the service's own task limit.
    max_connections = MAX_CONNECTIONS

    def __init__(self, control: ControlServer, host: str, port: int) -> None:
        self.control = control
        super().__init__(host.strip("[]"), port, _Handler)


_GET_ROUTES = ("/", "/status", "/queue", "/config", "/metrics")
_POST_ROUTES = ("/stop", "/restart")
# Open without the token on a loopback API: the status, its page and the counts. The status
# names the newest failures and error files with their paths (what an operator at the station
# looks at first); the queue's listings and the settings need the token. Beyond loopback every
# route needs it.
_OPEN_ON_LOOPBACK = ("/", "/status", "/queue", "/metrics")
_STATES = tuple(s.value for s in State)
_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


class _Handler(KeepAliveHandler):
    """One connection (HTTP/1.1, keep-alive): route, check, answer."""

    server: _Server
    timeout = 10  # each read and write
    idle_timeout = 10  # a browser's idle keep-alive connection is closed after this
    head_timeout = 5  # a request's line and headers, from its first byte
    body_timeout = 10  # nothing here takes a body; one is read (up to 64 KiB) and dropped
    server_version = f"pywats-client/{__version__}"
    log = logging.getLogger(__name__)
    request_log_format = "control API: %s %s"
    default_headers = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    # -- routing --------------------------------------------------------------------------

    def _dispatch(self, method: str) -> None:
        control = self.server.control
        self._discard_body()
        if control.loopback_only and not self._host_is_loopback():
            # A loopback server answers loopback names only: a web page cannot then use a DNS
            # name that points to 127.0.0.1 to read this API from a browser on the station.
            self._json(403, {"error": "the control API on loopback answers requests for "
                                      "127.0.0.1, ::1 or localhost only"})
            return
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/") or "/"
        queue_state = path[len("/queue/"):] if path.startswith("/queue/") else None
        if path in _POST_ROUTES:
            if method != "POST":
                self._json(405, {"error": f"{path} needs POST"}, headers={"Allow": "POST"})
            elif not control.authorised(self.headers.get("Authorization")):
                self._json(401, {"error": "send 'Authorization: Bearer <token>' with the token "
                                          f"from the instance's {TOKEN_FILE} file "
                                          "(pywats-client api-token shows where it is)"},
                           headers={"WWW-Authenticate": 'Bearer realm="pywats-client"'})
            else:
                status, body = control.control(path[1:])
                self._json(status, body)
            return
        if path not in _GET_ROUTES and queue_state is None:
            self._json(404, {"error": f"no such route: {path}", "routes": [
                *_GET_ROUTES, "/queue/<state>", *(f"POST {r}" for r in _POST_ROUTES)]})
            return
        if method not in ("GET", "HEAD"):
            self._json(405, {"error": f"{path} is read-only: use GET"},
                       headers={"Allow": "GET, HEAD"})
            return
        open_route = control.loopback_only and path in _OPEN_ON_LOOPBACK
        if not open_route and not control.authorised(self.headers.get("Authorization"),
                                                     browser=True):
            self._json(401, {"error": f"{path} needs the control API token: send "
                                      "'Authorization: Bearer <token>' with the token from the "
                                      f"instance's {TOKEN_FILE} file (pywats-client api-token "
                                      "shows where it is); in a browser, log in with any user "
                                      "name and the token as the password"},
                       headers={"WWW-Authenticate":
                                'Basic realm="pywats-client", charset="UTF-8"'})
            return
        if queue_state is not None:
            self._queue_page(queue_state, parse_qs(parts.query))
        elif path == "/":
            self._page()
        elif path == "/status":
            self._json(200, {"instance": control.instance, **control.service.snapshot(),
                             "queue": control.counts()})
        elif path == "/queue":
            self._json(200, control.counts())
        elif path == "/config":
            try:
                view = control.config_view() if control.config_view else {}
            except (PyWATSClientError, OSError) as exc:  # edited into something unreadable
                self._json(500, {"error": str(exc)})
                return
            self._json(200, dict(view))
        else:
            text = metrics.render(control.service.snapshot(), control.counts(),
                                  instance=control.instance)
            self._send(200, text.encode("utf-8"), metrics.CONTENT_TYPE)

    def _host_is_loopback(self) -> bool:
        host = self.headers.get("Host")
        if host is None:
            return True  # HTTP/1.0 without Host: not a browser
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        name = name.strip("[]").lower()
        return name in _LOOPBACK_NAMES or is_loopback(name)

    def _queue_page(self, state: str, query: dict[str, list[str]]) -> None:
        if state not in _STATES:
            self._json(404, {"error": f"no queue state {state!r}; one of {', '.join(_STATES)}"})
            return
        try:
            limit = int(query.get("limit", [str(DEFAULT_PAGE)])[-1])
            offset = int(query.get("offset", ["0"])[-1])
        except ValueError:
            self._json(400, {"error": "limit and offset must be whole numbers, e.g. "
                                      f"/queue/{state}?limit=50&offset=100"})
            return
        if not 1 <= limit <= MAX_PAGE or offset < 0:
            self._json(400, {"error": f"limit must be 1 to {MAX_PAGE} and offset 0 or more"})
            return
        control = self.server.control
        try:
            items = control.queue.list(State(state), limit=limit, offset=offset)
        except FileNotFoundError:
            items = []
        rows = [{
            "id": item.id,
            "source": item.header.source if item.header else None,
            "converter": item.header.converter if item.header else None,
            "attempts": item.header.attempts if item.header else None,
            "queued_at": item.header.queued_at if item.header else None,
            "last_attempt_at": item.header.last_attempt_at if item.header else None,
            # In pending/ the mtime is the next attempt; elsewhere it is when it got there.
            "next_attempt_at" if state == "pending" else "since": item.next_attempt,
            "last_error": item.header.last_error if item.header else
            "header not readable now (the report just moved on, or the file is damaged: "
            "it is checked before any upload)",
        } for item in items]
        total = control.counts().get(state, 0)
        self._json(200, {"state": state, "total": total, "limit": limit, "offset": offset,
                         "items": rows})

    def _page(self) -> None:
        control = self.server.control
        html = status_page.render(control.service.snapshot(), control.counts(),
                                  instance=control.instance, station=control.station,
                                  now=time.time())
        self._send(200, html.encode("utf-8"), "text/html; charset=utf-8", {
            # No script may run on this page, whatever text ends up in it.
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                                       "frame-ancestors 'none'; base-uri 'none'; "
                                       "form-action 'none'",
            "Referrer-Policy": "no-referrer",
        })

    # -- answers --------------------------------------------------------------------------

    def _discard_body(self) -> None:
        length = self._content_length()
        if length > 65536:
            self.close_connection = True  # not worth reading; nothing here takes a body
        elif length > 0:
            self._discard(length)

    def _json(self, status: int, payload: Mapping[str, Any],
              headers: Mapping[str, str] | None = None) -> None:
        body = json.dumps(payload, indent=2, default=str).encode("utf-8") + b"\n"
        self._send(status, body, "application/json; charset=utf-8", headers)

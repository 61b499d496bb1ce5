"""A WATS-compatible receiver for tests, demos and trials: a loopback server that accepts
`POST /api/Report/WSJF` (and WSXF), stores each report as `<store>/<id>.json` and misbehaves on
purpose through `Faults`. Standard library only, so tools can use it on its own.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import math
import os
import random
import re
import select
import signal
import socket
import ssl
import struct
import sys
import tempfile
import threading
import time
import uuid
import xml.parsers.expat
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from pywats_client import __version__
from pywats_client.http.base import KeepAliveHandler, StoppableHTTPServer, is_loopback
from pywats_client.http.receiver_options import add_arguments

log = logging.getLogger(__name__)

# Canonical route names, as the stats and `request_count()` show them.
SUBMIT_WSJF = "POST /api/Report/WSJF"
SUBMIT_WSXF = "POST /api/Report/WSXF"
VERSION = "GET /api/App/Version"
PROCESSES = "GET /api/App/Processes"
READ_WSJF = "GET /api/Report/Wsjf/{id}"
UNKNOWN = "unknown"

_ROUTES = {  # lower-case path below the prefix -> canonical name (method first)
    "/api/report/wsjf": SUBMIT_WSJF,
    "/api/report/wsxf": SUBMIT_WSXF,
    "/api/app/version": VERSION,
    "/api/app/processes": PROCESSES,
}
_READ_PREFIX = "/api/report/wsjf/"

# A small built-in list; a real server has the ones its administrator defined.
PROCESSES_LIST: list[dict[str, Any]] = [
    {"code": 10, "name": "SW Debug", "isTestOperation": True, "isRepairOperation": False},
    {"code": 50, "name": "PCBA test", "isTestOperation": True, "isRepairOperation": False},
    {"code": 100, "name": "Final Function test", "isTestOperation": True,
     "isRepairOperation": False},
    {"code": 500, "name": "Repair", "isTestOperation": False, "isRepairOperation": True},
]

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_DATETIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.\d*)?)?"
    r"(?:Z|[+-](\d{2}):?(\d{2}))?$"
)
_RESULTS = ("P", "F", "E", "T", "D")


@dataclass
class Faults:
    """Misbehaviour switches, all off by default.

    Rates are fractions of report POSTs (0.0 to 1.0). One random draw per POST picks at most one
    fault, checked in the order reset, rate limit, error, reject, timeout-after-store; keep the
    sum of the rates at or below 1. Replace or mutate the receiver's `faults` at any time.
    """

    # How long after its arrival a report POST or the version probe is answered: the
    # receiver's own work (reading, checking, storing) is part of it, as a server's is.
    latency_ms: float = 0.0
    error_rate: float = 0.0  # -> 500 with a message
    reset_rate: float = 0.0  # read the request, then reset the connection without answering
    rate_limit_rate: float = 0.0  # -> 429 with Retry-After: retry_after
    retry_after: float = 1.0
    auth_fail: bool = False  # every API request -> 401
    timeout_after_store_rate: float = 0.0  # store, then hold the connection for hang_seconds
    hang_seconds: float = 30.0
    reject_rate: float = 0.0  # -> 400
    down: bool = False  # every API request gets a connection reset

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(field.default, bool):
                if not isinstance(value, bool):
                    raise ValueError(f"fault '{field.name}' must be true or false, got {value!r}")
                continue
            if (isinstance(value, bool) or not isinstance(value, (int, float))
                    or not 0 <= value < math.inf):
                raise ValueError(f"fault '{field.name}' must be a number >= 0, got {value!r}")
            if field.name.endswith("_rate") and value > 1:
                raise ValueError(f"fault '{field.name}' is a fraction from 0 to 1, got {value!r}")


def find_wsjf_problem(report: object) -> str | None:
    """The first thing wrong with a WSJF report body, as a message naming the field; None if fine.

    Checks only the basics a WATS server refuses with 400 (formats.md §1.1/§1.2).
    """
    if not isinstance(report, dict):
        return f"Report body must be a JSON object, got {_kind(report)}"
    rid = report.get("id")
    if not isinstance(rid, str) or not _GUID.match(rid):
        who = "Report (no id)"
        if rid is None:
            return f"{who}: field 'id' is required (a GUID such as {uuid.UUID(int=0)})"
        return f"{who}: field 'id' must be a GUID such as {uuid.UUID(int=0)}, got {rid!r:.60}"
    problem = _field_problem(report)
    return f"Report {rid}: {problem}" if problem else None


def _field_problem(report: dict[str, Any]) -> str | None:
    # In the order a reader of the report meets the fields; the first problem is the answer.
    problem = (
        _choice_problem(report, "type", ("T", "R"), "('T' for a test, 'R' for a repair)",
                        "'T' (test) or 'R' (repair)")
        or _strings_problem(report, ("pn", "sn"), allow_empty=False)
        # A revision is required but may be empty, as the client's own rules have it: files
        # that carry none are sent with rev "" (or converters.defaults.revision).
        or _strings_problem(report, ("rev",), allow_empty=True)
        or _process_code_problem(report.get("processCode"))
        or _choice_problem(report, "result", _RESULTS, "(P, F, E or T)", "one of P, F, E, T")
        or _strings_problem(report, ("machineName", "location", "purpose"), allow_empty=True)
        or _start_problem(report.get("start"))
    )
    if problem:
        return problem
    if report["type"] == "T":
        root = report.get("root")
        if not isinstance(root, dict):
            return "field 'root' is required for a test report (type T) and must be an object"
        if not isinstance(root.get("seqCall"), dict):
            return "field 'root.seqCall' is required: the root step must be a sequence call"
    elif not isinstance(report.get("uur"), dict):
        return "field 'uur' is required for a repair report (type R) and must be an object"
    return None


def _choice_problem(report: dict[str, Any], name: str, allowed: tuple[str, ...],
                    hint: str, choices: str) -> str | None:
    value = report.get(name)
    if value in allowed:
        return None
    if value is None:
        return f"field '{name}' is required {hint}"
    return f"field '{name}' must be {choices}, got {value!r:.40}"


def _strings_problem(report: dict[str, Any], names: tuple[str, ...], *,
                     allow_empty: bool) -> str | None:
    for name in names:
        value = report.get(name)
        if value is None:
            return f"field '{name}' is required"
        if not isinstance(value, str):
            return f"field '{name}' must be a string, got {_kind(value)}"
        if not allow_empty and not value.strip():
            return f"field '{name}' must not be empty"
        if len(value) > 100:
            return f"field '{name}' is {len(value)} characters long, the limit is 100"
    return None


def _process_code_problem(code: object) -> str | None:
    if code is None:
        return "field 'processCode' is required (an integer operation code, e.g. 10)"
    if isinstance(code, bool) or not isinstance(code, int) or not -32768 <= code <= 32767:
        return f"field 'processCode' must be an integer (Int16), got {code!r:.40}"
    return None


def _start_problem(start: object) -> str | None:
    if start is None:
        return "field 'start' is required (an ISO-8601 date-time such as 2024-05-01T08:30:00+02:00)"
    if not isinstance(start, str) or not _is_datetime(start):
        return f"field 'start' must be an ISO-8601 date-time, got {start!r:.60}"
    return None


def _is_datetime(text: str) -> bool:
    match = _DATETIME.match(text)
    if not match:
        return False
    year, month, day, hour, minute, second, off_h, off_m = (int(g or 0) for g in match.groups())
    try:
        datetime(year, month, day, hour, minute, second)
    except ValueError:
        return False
    return off_h <= 23 and off_m <= 59


def _kind(value: object) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), "a number")


def check_xml(body: bytes) -> str | None:
    """Why `body` is not an acceptable XML document, or None.

    expat never fetches external entities; a DOCTYPE is refused outright so that internal
    entity expansion ("billion laughs") cannot happen either.
    """
    parser = xml.parsers.expat.ParserCreate()

    def refuse(*_: object) -> None:
        raise ValueError("DOCTYPE declarations are not accepted")

    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    try:
        parser.Parse(body, True)
    except xml.parsers.expat.ExpatError as exc:
        return f"Request body is not well-formed XML: {exc}"
    except ValueError as exc:
        return f"Request body refused: {exc}"
    return None


class Receiver:
    """A WATS-compatible HTTP server on a daemon thread.

    It checks the WSJF basics of what it is sent and can misbehave on purpose (latency, 5xx,
    resets, 429 + Retry-After, auth failures, hangs after storing) through `Faults`. The
    control routes `GET /_receiver/stats` and `GET|POST /_receiver/faults` are deliberately
    outside the authentication check: the receiver is a loopback testing tool, and a test
    harness in another process must be able to switch faults on and off without knowing the
    token. Do not expose it on a network you do not trust (`run()` refuses non-loopback
    addresses unless told otherwise).
    """

    def __init__(self, store: Path, *, host: str = "127.0.0.1", port: int = 0,
                 token: str | None = None, faults: Faults | None = None, prefix: str = "",
                 seed: int = 0, max_body_bytes: int = 50 * 2**20,
                 tls: ssl.SSLContext | None = None) -> None:
        """`tls`: serve HTTPS with this server-side context (e.g. a self-signed certificate,
        to try a station's ca_bundle setting)."""
        self.store = Path(store)
        self.store.mkdir(parents=True, exist_ok=True)
        self.faults = faults or Faults()
        self.max_body_bytes = max_body_bytes
        self.prefix = ("/" + prefix.strip("/")) if prefix.strip("/") else ""
        self._token = token
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._requests: dict[str, dict[str, int]] = {}
        self._posts: dict[str, int] = {}
        self._report_numbers: dict[str, int] = {}
        self._stored = 0
        self._duplicates = 0
        self._connections = 0
        # Bound now, so `url` carries the real port even when port=0 asked for any free one.
        self._server = _Server(self, host, port, tls)
        bound_port = self._server.server_address[1]
        shown_host = f"[{host}]" if ":" in host else host
        scheme = "https" if tls is not None else "http"
        self.url = f"{scheme}://{shown_host}:{bound_port}{self.prefix}"

    def __repr__(self) -> str:
        return f"Receiver(url={self.url!r}, store={str(self.store)!r})"

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> Receiver:
        """Serve on a daemon thread; returns self so `Receiver(...).start()` reads well."""
        if self._server.started:
            raise RuntimeError(f"receiver at {self.url} is already started")
        self._server.start(f"receiver-{self._server.server_address[1]}", daemon=True)
        return self

    def stop(self) -> None:
        """Stop serving, release handlers waiting on latency or hangs, close connections, join."""
        self._stopping.set()  # first: handlers waiting on it end before the joins below
        self._server.stop()

    def __enter__(self) -> Receiver:
        return self if self._server.started else self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- what happened --------------------------------------------------------------------------

    def stored_ids(self) -> set[str]:
        """Ids (lower case) of the WSJF/WSXF reports this receiver stored since it started."""
        with self._lock:
            return set(self._posts)

    def posts_by_id(self) -> dict[str, int]:
        """How many accepted (stored) POSTs each report id got; more than 1 means re-sent."""
        with self._lock:
            return dict(self._posts)

    def request_count(self, route: str | None = None) -> int:
        """Requests seen in total, or for one route.

        `route` is a canonical name such as "POST /api/Report/WSJF", or just its path (any
        method); matched case-insensitively. The control routes are not counted.
        """
        with self._lock:
            if route is None:
                return sum(sum(by_status.values()) for by_status in self._requests.values())
            wanted = route.lower()
            return sum(sum(by_status.values()) for name, by_status in self._requests.items()
                       if wanted in (name.lower(), name.partition(" ")[2].lower()))

    def connection_count(self) -> int:
        """TCP connections accepted so far (fewer than requests means keep-alive works)."""
        with self._lock:
            return self._connections

    def wait_for_reports(self, n: int, timeout: float) -> bool:
        """Wait until at least `n` distinct report ids are stored; False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self._posts) >= n, timeout)

    def stats(self) -> dict[str, Any]:
        """The counters served at /_receiver/stats."""
        with self._lock:
            return {
                "url": self.url,
                "requests": {route: dict(by) for route, by in self._requests.items()},
                "connections": self._connections,
                "stored": self._stored,
                "stored_ids": len(self._posts),
                "duplicates": self._duplicates,
                "posts_by_id": dict(self._posts),
                "faults": dataclasses.asdict(self.faults),
            }

    # -- used by the request handler ------------------------------------------------------------

    def _record(self, route: str, status: int | str) -> None:
        with self._lock:
            by_status = self._requests.setdefault(route, {})
            by_status[str(status)] = by_status.get(str(status), 0) + 1

    def _count_connection(self) -> None:
        with self._lock:
            self._connections += 1

    def _draw_fault(self, faults: Faults) -> str | None:
        with self._lock:
            draw = self._rng.random()
        edge = 0.0
        for name, rate in (("reset", faults.reset_rate), ("rate_limit", faults.rate_limit_rate),
                           ("error", faults.error_rate), ("reject", faults.reject_rate),
                           ("hang", faults.timeout_after_store_rate)):
            edge += rate
            if draw < edge:
                return name
        return None

    def _authorised(self, header: str | None) -> bool:
        if header is None or self.faults.auth_fail:
            return False
        return self._token is None or header == f"Basic {self._token}"

    def _save(self, report_id: str, data: bytes, suffix: str) -> int:
        """Store a report (replacing one with the same id) and count it; returns its Report_ID."""
        # Temp file + os.replace: a reader sees the old or the new report, never a partial one.
        # No fsync: this is a test server, not the place where durability is promised.
        fd, tmp = tempfile.mkstemp(dir=self.store, prefix=".incoming-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, self.store / f"{report_id}{suffix}")
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        stamp = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        with self._changed:
            with open(self.store / "received.log", "a", encoding="utf-8") as log_file:
                log_file.write(f"{stamp} {report_id}\n")
            seen = self._posts.get(report_id, 0)
            self._posts[report_id] = seen + 1
            self._duplicates += 1 if seen else 0
            self._stored += 1
            number = self._report_numbers.setdefault(report_id, len(self._report_numbers) + 1)
            self._changed.notify_all()
        return number


class _Server(StoppableHTTPServer):
    """The HTTP server, knowing its receiver; adds TLS and resets on purpose."""

    log = logging.getLogger(__name__)
    role = "receiver"
    max_connections = 64  # many stations' upload workers at once; still a bound

    def __init__(self, receiver: Receiver, host: str, port: int,
                 tls: ssl.SSLContext | None = None) -> None:
        self.receiver = receiver
        self._tls = tls
        self._to_reset: set[int] = set()
        self._reset_lock = threading.Lock()
        super().__init__(host, port, _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        request, address = super().get_request()
        if self._tls is not None:
            # The handshake happens on the handler thread (finish_request), never here: a
            # client that stalls must not hold up the accept loop.
            request = self._tls.wrap_socket(request, server_side=True,
                                            do_handshake_on_connect=False)
        return request, address

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self._tls is not None:
            try:
                request.settimeout(10)
                request.do_handshake()
                request.settimeout(None)
            except (OSError, ssl.SSLError) as exc:
                log.debug("TLS handshake with %s failed: %s", client_address, exc)
                return
        super().finish_request(request, client_address)

    def process_request(self, request: Any, client_address: Any) -> None:
        self.receiver._count_connection()
        super().process_request(request, client_address)

    def reset_later(self, request: socket.socket) -> None:
        """Make the close of `request` a TCP reset (RST) instead of an orderly FIN."""
        with contextlib.suppress(OSError):
            request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with self._reset_lock:
            self._to_reset.add(id(request))

    def shutdown_request(self, request: Any) -> None:
        with self._reset_lock:
            reset = id(request) in self._to_reset
            self._to_reset.discard(id(request))
        if reset:
            self._forget(request)
            self.close_request(request)  # no shutdown(SHUT_WR): that would send a FIN first
        else:
            super().shutdown_request(request)


class _Handler(KeepAliveHandler):
    """One connection; HTTP/1.1 with keep-alive, so every answer carries Content-Length."""

    server: _Server
    timeout = 120  # each read and write
    idle_timeout = 120  # an idle keep-alive connection is closed after this
    head_timeout = 30  # a request's line and headers, from its first byte
    body_timeout = 300  # a report body of up to max_body_bytes (50 MB)
    server_version = f"pywats-client-receiver/{__version__}"
    log = logging.getLogger(__name__)
    request_log_level = logging.INFO

    # -- routing --------------------------------------------------------------------------------

    _answer_at = 0.0  # monotonic: not answered before then (Faults.latency_ms)

    def _dispatch(self, method: str) -> None:
        arrived = time.monotonic()  # the request's line and headers have been read
        self._answer_at = 0.0
        rx = self.server.receiver
        path = urlsplit(self.path).path.rstrip("/").lower() or "/"
        if path.startswith("/_receiver/") or (
                rx.prefix and path.startswith(rx.prefix.lower() + "/_receiver/")):
            self._control(method, path.rpartition("/_receiver/")[2])
            return
        route, report_id = self._resolve(path, rx.prefix.lower())
        faults = rx.faults
        if faults.down:
            self._discard(min(self._content_length(), 4 * rx.max_body_bytes))
            self._reset(route)
            return
        if route == UNKNOWN:
            self._answer(route, 404, f"No such route: {method} {self.path}")
            return
        if method != route.partition(" ")[0]:
            self._answer(route, 405, f"{route} does not accept {method}",
                         headers={"Allow": route.partition(" ")[0]})
            return
        submit = route in (SUBMIT_WSJF, SUBMIT_WSXF)
        if (submit or route == VERSION) and faults.latency_ms > 0:
            self._answer_at = arrived + faults.latency_ms / 1000
        if not rx._authorised(self.headers.get("Authorization")):
            # Dropped in bounded chunks, never held: an unauthenticated body costs no memory.
            length = self._content_length() if method == "POST" else 0
            self._discard(min(length, 4 * rx.max_body_bytes))
            self._answer(route, 401, "Authorization required: send 'Authorization: Basic <token>'"
                         " with the token issued by the WATS server",
                         headers={"WWW-Authenticate": 'Basic realm="WATS"'},
                         close=length > 4 * rx.max_body_bytes)
            return
        body = self._read_body(rx, route) if method == "POST" else b""
        if body is None:
            return  # already answered (411/413)
        if submit:
            self._submit(route, body, rx._draw_fault(faults))
        elif route == VERSION:
            self._answer_json(route, 200, {"version": __version__,
                                           "name": "pywats-client receiver"})
        elif route == PROCESSES:
            self._answer_json(route, 200, PROCESSES_LIST)
        else:
            self._read_back(route, report_id)

    @staticmethod
    def _resolve(path: str, prefix: str) -> tuple[str, str]:
        if prefix:
            if not path.startswith(prefix + "/"):
                return UNKNOWN, ""
            path = path[len(prefix):]
        if path in _ROUTES:
            return _ROUTES[path], ""
        if path.startswith(_READ_PREFIX) and "/" not in path[len(_READ_PREFIX):]:
            return READ_WSJF, path[len(_READ_PREFIX):]
        return UNKNOWN, ""

    # -- the API --------------------------------------------------------------------------------

    def _submit(self, route: str, body: bytes, fault: str | None) -> None:
        rx = self.server.receiver
        if fault == "reset":
            self._reset(route)
            return
        if fault == "rate_limit":
            seconds = rx.faults.retry_after
            self._answer(route, 429, "Too many requests, slow down",
                         headers={"Retry-After": f"{seconds:g}"})
            return
        if fault == "error":
            self._answer(route, 500, "Internal server error (injected by the receiver's "
                                     "error_rate fault)")
            return
        if fault == "reject":
            self._answer(route, 400, "Report rejected (injected by the receiver's reject_rate "
                                     "fault)")
            return
        if route == SUBMIT_WSJF:
            try:
                report = json.loads(body.decode("utf-8-sig"))
            except (UnicodeDecodeError, ValueError) as exc:
                self._answer(route, 400, f"Request body is not valid UTF-8 JSON: {exc}")
                return
            problem = find_wsjf_problem(report)
            if problem:
                self._answer(route, 400, problem)
                return
            report_id, suffix = report["id"].lower(), ".json"
        else:
            problem = check_xml(body)
            if problem:
                self._answer(route, 400, problem)
                return
            report_id, suffix = str(uuid.uuid4()), ".xml"
        # Stored when it is answered, so that a report counts as stored once its answer is due.
        if not self._wait_for_answer_time(route):
            return
        number = rx._save(report_id, body, suffix)
        if fault == "hang":
            # The report is stored; now say nothing until the client's read timeout fires.
            rx._stopping.wait(rx.faults.hang_seconds)
            self._hang_up(route, "stored-no-answer")
            return
        self._answer_json(route, 200, {"ID": report_id, "uuid": report_id, "Report_ID": number})

    def _read_back(self, route: str, report_id: str) -> None:
        path = self.server.receiver.store / f"{report_id}.json"
        if not _GUID.match(report_id) or not path.is_file():
            self._answer(route, 404, f"No report with id '{report_id}'")
            return
        self._answer(route, 200, path.read_bytes(), content_type="application/json")

    # -- /_receiver/ (no auth, see the Receiver docstring) ----------------------------------------

    def _control(self, method: str, what: str) -> None:
        rx = self.server.receiver
        if what == "stats" and method == "GET":
            self._answer_json(None, 200, rx.stats())
        elif what == "faults" and method == "GET":
            self._answer_json(None, 200, dataclasses.asdict(rx.faults))
        elif what == "faults" and method == "POST":
            body = self._read_body(rx, None)
            if body is None:
                return
            try:
                changes = json.loads(body or b"{}")
                if not isinstance(changes, dict):
                    raise ValueError("send a JSON object such as {\"error_rate\": 0.5}")
                known = {f.name for f in dataclasses.fields(Faults)}
                unknown = sorted(set(changes) - known)
                if unknown:
                    raise ValueError(f"unknown fault {unknown[0]!r}; "
                                     f"known: {', '.join(sorted(known))}")
                rx.faults = dataclasses.replace(rx.faults, **changes)
            except ValueError as exc:
                self._answer(None, 400, f"Faults not changed: {exc}")
                return
            log.warning("receiver faults changed: %s", changes)
            self._answer_json(None, 200, dataclasses.asdict(rx.faults))
        else:
            self._answer(None, 404, "Control routes: GET /_receiver/stats, "
                                    "GET|POST /_receiver/faults")

    # -- HTTP plumbing --------------------------------------------------------------------------

    def _read_body(self, rx: Receiver, route: str | None) -> bytes | None:
        """The request body, or None after answering 411/413 (route None: do not count)."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self._answer(route, 411, "Send the body with a Content-Length (no chunked encoding)",
                         close=True)
            return None
        length = self._content_length()
        if length < 0:
            self._answer(route, 400, "Bad Content-Length header", close=True)
            return None
        if length > rx.max_body_bytes:
            # Read what was sent (bounded) before answering: closing a socket with unread data
            # makes the kernel send a reset, and the client would never see the 413.
            self._discard(min(length, 4 * rx.max_body_bytes + 2**20))
            self._answer(route, 413, f"Body of {length} bytes is over the limit of "
                                     f"{rx.max_body_bytes} bytes", close=True)
            return None
        return self.rfile.read(length) if length else b""

    def _answer(self, route: str | None, status: int, body: str | bytes, *,
                content_type: str = "text/plain; charset=utf-8",
                headers: dict[str, str] | None = None, close: bool = False) -> None:
        data = body.encode("utf-8") if isinstance(body, str) else body
        if route is not None:
            if not self._wait_for_answer_time(route):
                return
            self.server.receiver._record(route, status)
        self._send(status, data, content_type, headers, close=close)

    def _wait_for_answer_time(self, route: str) -> bool:
        """Wait until the request may be answered (Faults.latency_ms); False when the receiver
        stopped meanwhile: then the connection is closed without an answer."""
        wait = self._answer_at - time.monotonic()
        if wait > 0 and self.server.receiver._stopping.wait(wait):
            self._hang_up(route)  # stopping: let the handler end now
            return False
        return True

    def _answer_json(self, route: str | None, status: int, payload: object) -> None:
        self._answer(route, status, json.dumps(payload), content_type="application/json")

    def _reset(self, route: str) -> None:
        """Drop the connection with a TCP reset and no answer."""
        if not self._wait_for_answer_time(route):
            return
        self.server.receiver._record(route, "reset")
        self.log_message('"%s" reset without answer', self.requestline)
        self.server.reset_later(self.connection)
        self.close_connection = True

    def _hang_up(self, route: str, status: str = "no-answer") -> None:
        """Close the connection without answering (the receiver is stopping, or a hang ended)."""
        self.server.receiver._record(route, status)
        self.log_message('"%s" closed without answer', self.requestline)
        self.close_connection = True


# -- command line ---------------------------------------------------------------------------------

def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM; 0 on a normal stop, 2 for bad options, 1 if it cannot listen."""
    if not is_loopback(args.host) and not args.allow_remote:
        print(f"Refusing to listen on {args.host}: the receiver is a testing tool and its "
              "/_receiver/ control routes have no authentication. Use --host 127.0.0.1, or add "
              "--allow-remote if the network is yours.", file=sys.stderr)
        return 2
    try:
        faults = Faults(latency_ms=args.latency_ms, error_rate=args.error_rate,
                        reset_rate=args.reset_rate, rate_limit_rate=args.rate_limit_rate,
                        retry_after=args.retry_after, auth_fail=args.auth_fail,
                        reject_rate=args.reject_rate,
                        timeout_after_store_rate=args.timeout_after_store_rate,
                        hang_seconds=args.hang_seconds)
    except ValueError as exc:
        print(f"Bad option: {exc}", file=sys.stderr)
        return 2
    try:
        args.store.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"Cannot create the store folder {args.store}: {exc.strerror or exc}. Choose a "
              "--store folder you can write to.", file=sys.stderr)
        return 1
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                            format="%(asctime)s %(message)s")
    tls = None
    if args.tls_cert:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            tls.load_cert_chain(args.tls_cert, args.tls_key)
        except (OSError, ssl.SSLError) as exc:
            print(f"Cannot use --tls-cert {args.tls_cert}: {exc}", file=sys.stderr)
            return 2
    try:
        receiver = Receiver(args.store, host=args.host, port=args.port, token=args.token,
                            faults=faults, prefix=args.prefix, seed=args.seed,
                            max_body_bytes=args.max_body_bytes, tls=tls)
    except OSError as exc:
        print(f"Cannot listen on {args.host}:{args.port}: {exc.strerror or exc}. Choose another "
              "--port, or stop the program that uses it.", file=sys.stderr)
        return 1
    stop = threading.Event()
    # The signal handler only sets the event. The main thread sleeps in select() on the wakeup
    # fd rather than in stop.wait(): a handler calling set() while this thread held the event's
    # lock inside wait() would deadlock.
    wake_r, wake_w = socket.socketpair()
    wake_r.setblocking(False)
    wake_w.setblocking(False)
    previous_fd = signal.set_wakeup_fd(wake_w.fileno())
    previous = {sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with receiver.start():
            print(f"Listening on {receiver.url}", flush=True)
            print(f"Storing reports in {receiver.store}; Ctrl-C or SIGTERM stops.", flush=True)
            while not stop.is_set():
                select.select([wake_r], [], [])
                with contextlib.suppress(BlockingIOError):
                    wake_r.recv(256)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        signal.set_wakeup_fd(previous_fd)
        wake_r.close()
        wake_w.close()
    stats = receiver.stats()
    print(f"Stopped. Reports stored: {stats['stored']} ({stats['stored_ids']} distinct ids, "
          f"{stats['duplicates']} re-sent).", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m pywats_client.http.receiver`: the same as `pywats-client receiver`."""
    parser = argparse.ArgumentParser(prog="python -m pywats_client.http.receiver",
                                     description="A WATS-compatible receiver for tests and demos.")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

"""Talking to WATS: one report POST or one connection probe, classified into an `Outcome`
(wats-api.md, "Outcomes"), over one keep-alive session per thread; and the one check that a
server is configured. No retries in here: the queue decides when to try again.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from requests.cookies import extract_cookies_to_jar
from requests.structures import CaseInsensitiveDict

from pywats_client import __version__
from pywats_client.config.settings import Settings
from pywats_client.errors import ConfigError
from pywats_client.outcomes import Outcome

MAX_MESSAGE = 2000  # characters of a server's explanation kept in a message
MAX_ANSWER_BYTES = 4 * 2**20  # a larger answer is an error: a server must not fill our memory
_CHUNK = 64 * 1024

_CONFIG_STATUSES = {401, 403, 404, 405, 407, 410}  # the request cannot work as configured
_TRANSIENT_STATUSES = {408, 425, 429}  # plus every 5xx
_CONNECTION_REPR = re.compile(r"^<?HTTPS?Connection(?:Pool)?\([^)]*\)(?: at 0x[0-9a-f]+)?>?: ")
_MIN_SCRUB = 6  # shorter "tokens" would mangle ordinary words; real ones are far longer


class _AnswerProblem(Exception):
    """The server's answer could not be read whole: too large, too slow, or cut off."""


@dataclass(frozen=True)
class UploadResult:
    """The outcome of one request, with the HTTP status if there was one."""

    outcome: Outcome
    status: int | None
    message: str  # for operators; never contains the token
    retry_after: float | None = None  # seconds, from Retry-After
    payload: bytes = field(default=b"", repr=False)  # the body of a successful answer


class _TokenAuth(requests.auth.AuthBase):
    """Sets `Authorization: Basic <token>`; as an auth object it also keeps ~/.netrc out."""

    def __init__(self, token: str) -> None:
        self._header = f"Basic {token}"

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = self._header
        return request

    def __repr__(self) -> str:
        return "_TokenAuth(<hidden>)"


class _LeanAdapter(HTTPAdapter):
    """The transport adapter, answering with a plain `Response`: no cookie jar of its own per
    answer (the session's jar is filled only when an answer sets a cookie, see `_send`).

    The connection pool for a URL, its TLS settings and the URL put on the request line are
    worked out once per URL and settings, not for every request: an uploader sends to one
    server with settings fixed for its session, and that was a third of the adapter's CPU time
    per upload. A pool closed meanwhile is looked up again."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._pools: dict[tuple[Any, ...], Any] = {}
        self._verified: dict[tuple[Any, ...], Any] = {}  # (verify, cert) -> the pool set up
        self._request_urls: dict[tuple[Any, ...], str] = {}

    def get_connection_with_tls_context(self, request: requests.PreparedRequest, verify: Any,
                                        proxies: Any = None, cert: Any = None) -> Any:
        key = (request.url, verify, cert, _settled(proxies))
        pool = self._pools.get(key)
        if pool is None or pool.pool is None:  # pool None: it was closed
            pool = super().get_connection_with_tls_context(request, verify, proxies, cert)
            self._pools[key] = pool
        return pool

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        if self._verified.get((verify, cert)) is conn:
            return  # this pool was given these settings already
        super().cert_verify(conn, url, verify, cert)
        self._verified[(verify, cert)] = conn

    def request_url(self, request: requests.PreparedRequest, proxies: Any) -> str:
        key = (request.url, _settled(proxies))
        url = self._request_urls.get(key)
        if url is None:
            url = self._request_urls[key] = super().request_url(request, proxies)
        return url

    def close(self) -> None:
        # The pools kept here are closed now: the pool manager only forgets them, and they
        # would hold their connections open for as long as this adapter lives. A request in
        # flight finishes; its connection is closed when it is given back.
        pools = list(self._pools.values())
        self._pools.clear()
        self._verified.clear()
        self._request_urls.clear()
        super().close()
        for pool in pools:
            pool.close()

    def build_response(self, req: requests.PreparedRequest, resp: Any) -> requests.Response:
        response = requests.Response()
        response.status_code = resp.status
        response.headers = CaseInsensitiveDict(resp.headers)
        response.raw = resp
        response.reason = resp.reason
        response.url = req.url or ""
        response.request = req
        response.connection = self
        return response


def _settled(proxies: Any) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(proxies.items())) if proxies else ()


class Uploader:
    """HTTP client for one WATS server; safe to share between threads (a Session each)."""

    def __init__(self, server_url: str, token: str, *, ca_bundle: str | None = None,
                 connect_timeout: float = 10.0, read_timeout: float = 60.0,
                 max_retry_after: float | None = None,
                 user_agent: str = f"pywats-client/{__version__}") -> None:
        """`max_retry_after`: the longest wait a server's Retry-After may ask for
        (queue.retry_max_delay); longer asks are cut to it."""
        parts = urlsplit(server_url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"server_url {server_url!r} is not an http(s) URL: set it to the "
                              "address of the WATS server, e.g. https://wats.example.com")
        if parts.username or parts.password:
            raise ConfigError("server_url must not contain a user name or password: remove "
                              "them and put the token in api_token")
        if not token or any(ch in token for ch in "\r\n\0") or token != token.strip():
            # The reason, never the value: the token is a secret.
            raise ConfigError("api_token is empty or contains blanks or line breaks: paste the "
                              "token exactly as the WATS server issued it")
        if ca_bundle is not None and not os.path.exists(ca_bundle):
            raise ConfigError(f"ca_bundle {ca_bundle} does not exist: point it at the PEM file "
                              "of the CA that signed the WATS server's certificate, or remove it "
                              "to use the system CAs")
        self.base_url = server_url.strip().rstrip("/")
        self._token = token
        self._auth = _TokenAuth(token)
        self._verify: str | bool = ca_bundle or True  # never False: verification stays on
        self._timeout = (connect_timeout, read_timeout)
        # As an object, so that the adapter does not make one per request (urllib3 copies it).
        self._timeouts = urllib3.util.Timeout(connect=connect_timeout, read=read_timeout)
        self._max_retry_after = max_retry_after
        self._user_agent = user_agent
        self._local = threading.local()
        self._lock = threading.Lock()
        self._sessions: list[requests.Session] = []
        self._generation = 0  # bumped by close(), so threads drop their closed sessions

    def __repr__(self) -> str:
        return f"Uploader({self.base_url!r})"

    def upload(self, body: bytes, report_id: str) -> UploadResult:
        """POST one WSJF report to {base}/api/Report/WSJF and classify the answer."""
        return self._request("POST", "/api/Report/WSJF", body, f"report {report_id}")

    def probe(self) -> UploadResult:
        """GET {base}/api/App/Version; STORED means reachable and authorised."""
        return self._request("GET", "/api/App/Version", None, "the connection check")

    def processes(self) -> tuple[UploadResult, dict[str, int]]:
        """GET {base}/api/App/Processes: the process (operation type) names and codes the
        server knows, for converters that name a process instead of giving its code."""
        result = self._request("GET", "/api/App/Processes", None, "the process list")
        table: dict[str, int] = {}
        if result.outcome is Outcome.STORED:
            try:
                items = json.loads(result.payload or b"[]")
            except ValueError:
                items = []
            for item in items if isinstance(items, list) else []:
                if not isinstance(item, dict):
                    continue
                code = item.get("code", item.get("Code"))
                name = item.get("name", item.get("Name"))
                if isinstance(name, str) and isinstance(code, int) and not isinstance(code, bool):
                    table[name] = code
        return result, table

    def close(self) -> None:
        """Close every thread's session (and its connections); later calls open new ones."""
        with self._lock:
            sessions, self._sessions = self._sessions, []
            self._generation += 1
        for session in sessions:
            session.close()

    # -- internals --------------------------------------------------------------------------------

    def _session(self) -> requests.Session:
        local = self._local
        session: requests.Session | None = getattr(local, "session", None)
        if session is None or local.generation != self._generation:
            session = requests.Session()
            # No retries below us: one call is one attempt, and the queue owns the schedule.
            adapter = _LeanAdapter(max_retries=0, pool_connections=1, pool_maxsize=1)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            # identity: a compressed answer could grow a thousandfold once decoded.
            session.headers.update({"User-Agent": self._user_agent,
                                    "Accept": "application/json",
                                    "Accept-Encoding": "identity"})
            # Proxies (HTTPS_PROXY, NO_PROXY) and REQUESTS_CA_BUNDLE are read from the
            # environment once per session, not on every request: requests otherwise walks the
            # whole environment twice per upload, a third of an upload's CPU time. Every
            # request goes to the same host, so the answer cannot differ between them.
            environment = session.merge_environment_settings(
                self.base_url, {}, None, self._verify, None)
            session.trust_env = False  # also keeps ~/.netrc out, as the auth object does
            session.proxies.update(environment["proxies"])
            session.verify = environment["verify"]
            local.prepared = {}  # (method, url) -> the request as prepared once
            with self._lock:
                self._sessions.append(session)
                local.generation = self._generation
            local.session = session
        return session

    def _request(self, method: str, route: str, body: bytes | None, what: str) -> UploadResult:
        url = self.base_url + route
        connect, read = self._timeout
        # The whole exchange, not each socket read, is bounded: a server that trickles its
        # answer a byte at a time would otherwise hold an upload slot for hours.
        deadline = time.monotonic() + connect + read
        try:
            response = self._send(method, url, body)
        except requests.RequestException as exc:
            outcome = classify_exception(exc)
            message = self._describe(exc, outcome, what, submit=body is not None)
            return UploadResult(outcome, None, self._scrub(message))
        try:
            content = self._read_answer(response, deadline)
        except _AnswerProblem as exc:
            response.close()  # the rest of the answer is unread: the connection cannot be reused
            resend = "; it may have been stored, so it is sent again with the same id"
            return UploadResult(Outcome.TRANSIENT, response.status_code, self._scrub(
                f"WATS at {self.base_url} answered {what} (HTTP {response.status_code}) but "
                f"{exc}" + (resend if body is not None else "")))
        result = classify_response(response.status_code, content,
                                   response.headers.get("Retry-After"),
                                   response.headers.get("Location"), url=url, what=what,
                                   submit=body is not None, now=time.time(),
                                   max_wait=self._max_retry_after)
        payload = content if result.outcome is Outcome.STORED and body is None else b""
        return UploadResult(result.outcome, result.status, self._scrub(result.message),
                            result.retry_after, payload)

    def _read_answer(self, response: requests.Response, deadline: float) -> bytes:
        """The body of `response`, read in chunks: at most MAX_ANSWER_BYTES (decoded), and all
        of it before `deadline` (monotonic); else `_AnswerProblem`."""
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > MAX_ANSWER_BYTES:
            raise _AnswerProblem(f"its answer is {int(declared)} bytes long, over the limit of "
                                 f"{MAX_ANSWER_BYTES} bytes; not read")
        raw = response.raw
        read = getattr(raw, "read1", None) or raw.read  # read1: one socket read at most
        connection = getattr(raw, "connection", None)
        sock = getattr(connection, "sock", None)
        chunks: list[bytes] = []
        size = 0
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise _AnswerProblem(self._too_slow(size))
                if sock is not None:
                    _set_timeout(sock, min(remaining, self._timeout[1]))
                chunk = read(_CHUNK, decode_content=True)
                if not chunk:
                    break
                size += len(chunk)
                if size > MAX_ANSWER_BYTES:
                    raise _AnswerProblem(f"its answer is over the limit of {MAX_ANSWER_BYTES} "
                                         "bytes; the rest was not read")
                chunks.append(chunk)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            if isinstance(exc, (urllib3.exceptions.ReadTimeoutError, TimeoutError)):
                raise _AnswerProblem(self._too_slow(size)) from None
            raise _AnswerProblem(f"the connection broke while reading its answer "
                                 f"({_reason(exc)})") from None
        finally:
            if sock is not None:
                with contextlib.suppress(OSError):
                    _set_timeout(sock, self._timeout[1])
        raw.release_conn()  # read to the end: the connection is kept for the next request
        return b"".join(chunks)

    def _send(self, method: str, url: str, body: bytes | None) -> requests.Response:
        # What Session.request() does, less its per-request work: the request (URL, headers,
        # auth) is prepared once per session and copied, the session's settings are not merged
        # in again, no hooks run, and cookies are read from an answer only when it sets one.
        # That was three quarters of an upload's CPU time outside the socket calls.
        session = self._session()
        prepared: dict[tuple[str, str], requests.PreparedRequest] = self._local.prepared
        template = prepared.get((method, url))
        if template is None:
            headers = dict(session.headers)
            if body is not None:
                headers["Content-Type"] = "application/json"
            template = requests.PreparedRequest()
            template.prepare(method=method, url=url, headers=headers,
                             data=b"" if body is not None else None, auth=self._auth)
            prepared[(method, url)] = template
        request = template.copy()
        if body is not None:
            request.body = body
            request.headers["Content-Length"] = str(len(body))
        if session.cookies:  # a load balancer's node cookie goes back with every request
            request.prepare_cookies(session.cookies)
        adapter = session.get_adapter(url)
        # stream: the body is read by _read_answer, with a size limit and a deadline. The
        # adapter takes a urllib3 Timeout as it is (documented; the stubs know tuples only).
        response = adapter.send(request, stream=True,
                                timeout=self._timeouts,  # type: ignore[arg-type]
                                verify=True if session.verify is None else session.verify,
                                cert=None, proxies=session.proxies)
        if "Set-Cookie" in response.headers:
            extract_cookies_to_jar(session.cookies, request, response.raw)
        return response

    def _too_slow(self, size: int) -> str:
        connect, read = self._timeout
        return (f"did not finish its answer within {connect + read:g} s (connect_timeout + "
                f"read_timeout); {size} bytes of it came")

    def _describe(self, exc: requests.RequestException, outcome: Outcome, what: str, *,
                  submit: bool) -> str:
        connect, read = self._timeout
        resend = "; it may have been stored, so sending it again with the same id is safe"
        if isinstance(exc, requests.ConnectTimeout):
            return f"cannot reach WATS at {self.base_url}: no connection within {connect:g} s"
        if isinstance(exc, requests.ReadTimeout):
            return (f"WATS at {self.base_url} did not answer {what} within {read:g} s"
                    + (resend if submit else ""))
        if isinstance(exc, requests.exceptions.SSLError):
            return (f"TLS handshake with {self.base_url} failed ({_reason(exc)}): check the "
                    "server's certificate, or set ca_bundle to the CA that signed it")
        if outcome is Outcome.OFFLINE:
            return f"cannot reach WATS at {self.base_url}: {_reason(exc)}"
        if outcome is Outcome.AUTH:
            return f"server_url {self.base_url} cannot be used: {_reason(exc)}"
        return (f"connection to {self.base_url} broke during {what} ({_reason(exc)})"
                + (resend if submit else ""))

    def _scrub(self, text: str) -> str:
        # Last line of defence: a server (or a library) echoing the token back to us.
        if len(self._token) < _MIN_SCRUB:
            return text
        return text.replace(self._token, "<token>")


def _set_timeout(sock: Any, seconds: float) -> None:
    # settimeout() is a system call every time, and each gives the interpreter lock up: an
    # upload thread then waits for it behind busy threads. Mostly the timeout is set already.
    if sock.gettimeout() != seconds:
        sock.settimeout(seconds)


def classify_exception(exc: BaseException) -> Outcome:
    """OFFLINE if the request surely never reached the server, else TRANSIENT (AUTH for a
    malformed URL).

    requests wraps urllib3: connect failures arrive as ConnectionError(MaxRetryError(reason=
    NewConnectionError / NameResolutionError / ConnectTimeoutError)), TLS failures as SSLError.
    A reset or hang-up once connected arrives as ConnectionError(ProtocolError), a slow answer
    as ReadTimeout: the server may have stored the report, so those are TRANSIENT (retry with
    the same id). urllib3 also wraps a reset during the TLS handshake as ProtocolError; it is
    indistinguishable from a reset after sending and is treated the same, the safe way.
    """
    if isinstance(exc, (requests.ConnectTimeout, requests.exceptions.SSLError,
                        requests.exceptions.ProxyError)):
        return Outcome.OFFLINE
    if isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                        requests.exceptions.InvalidSchema, requests.exceptions.InvalidHeader)):
        return Outcome.AUTH  # a configuration problem: pause until the config changes
    if isinstance(exc, requests.ConnectionError):
        inner = exc.args[0] if exc.args else None
        if isinstance(inner, urllib3.exceptions.MaxRetryError):
            inner = inner.reason
        if isinstance(inner, (urllib3.exceptions.NewConnectionError,
                              urllib3.exceptions.ConnectTimeoutError,
                              urllib3.exceptions.SSLError, urllib3.exceptions.ProxyError)):
            return Outcome.OFFLINE
    return Outcome.TRANSIENT  # ReadTimeout, ProtocolError, ChunkedEncodingError, …


def classify_response(status: int, body: bytes, retry_after: str | None, location: str | None,
                      *, url: str, what: str, submit: bool, now: float,
                      max_wait: float | None = None) -> UploadResult:
    """Map an HTTP answer onto an `Outcome` with a message an operator can act on; a
    Retry-After longer than `max_wait` (queue.retry_max_delay) is cut to it."""
    asked = parse_retry_after(retry_after, now) if retry_after else None
    wait = asked if asked is None or max_wait is None else min(asked, max_wait)
    text = _trim(body.decode("utf-8", "replace"))
    if 200 <= status < 300:
        verb = "stored" if submit else "answered"
        return UploadResult(Outcome.STORED, status, f"WATS {verb} {what} (HTTP {status}"
                            f"{_report_number(body)})")
    if 300 <= status < 400:
        return UploadResult(Outcome.AUTH, status, f"server redirected {url} to "
                            f"{location or '(no Location)'} (HTTP {status}): check server_url "
                            "(https instead of http? a missing path prefix?)")
    if status in (401, 407):
        return UploadResult(Outcome.AUTH, status, f"WATS refused the credentials for {what} "
                            f"(HTTP {status}): check api_token; it may be wrong, expired or "
                            "revoked")
    if status == 403:
        return UploadResult(Outcome.AUTH, status, f"WATS forbids {what} for this token (HTTP "
                            "403): ask the WATS administrator for report upload rights")
    if status in _CONFIG_STATUSES or (not submit and 400 <= status < 500
                                      and status not in _TRANSIENT_STATUSES):
        return UploadResult(Outcome.AUTH, status, f"no WATS API at {url} (HTTP {status}): check "
                            "server_url and its path prefix (e.g. https://host/wats)")
    if status in _TRANSIENT_STATUSES or status >= 500 or status < 200:
        hint = f"; server asks to wait {asked:.0f} s" if asked is not None else ""
        if asked is not None and wait is not None and wait < asked:
            hint += f", waiting at most {wait:.0f} s (queue.retry_max_delay)"
        detail = f": {_trim(text, 200)}" if text else ""
        return UploadResult(Outcome.TRANSIENT, status, f"WATS could not take {what} now (HTTP "
                            f"{status}){detail}{hint}", wait)
    return UploadResult(Outcome.REJECTED, status, f"WATS rejected {what} (HTTP {status}): "
                        f"{text or '(no explanation in the response)'}")


def parse_retry_after(value: str, now: float, limit: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After value: delta-seconds or an HTTP-date (None if bad),
    from 0 (a date in the past) to `limit`."""
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # "-0000" means UTC without saying so
            when = when.replace(tzinfo=timezone.utc)
        seconds = when.timestamp() - now
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds if limit is None else min(seconds, limit))


def _report_number(body: bytes) -> str:
    """", Report_ID 17" from a 2xx body (an object or a one-element list), or "" if absent."""
    try:
        data = json.loads(body) if body else None
    except ValueError:
        return ""
    if isinstance(data, list) and len(data) == 1:
        data = data[0]
    if isinstance(data, dict) and data.get("Report_ID") is not None:
        return f", Report_ID {data['Report_ID']}"
    return ""


def _reason(exc: BaseException) -> str:
    """The innermost useful words of a requests/urllib3 exception ("Connection refused")."""
    inner: BaseException = exc
    for _ in range(10):  # requests -> urllib3 -> ssl/socket; bounded against odd cycles
        if isinstance(inner, urllib3.exceptions.MaxRetryError) and inner.reason is not None:
            inner = inner.reason
        elif inner.args and isinstance(inner.args[-1], BaseException):
            inner = inner.args[-1]
        else:
            break
    # urllib3 puts "HTTPConnection(host=…, port=…): " in front of the words that matter.
    text = _CONNECTION_REPR.sub("", str(inner))
    text = text.replace("Failed to establish a new connection: ", "")
    return _trim(text, 300)


def _trim(text: str, limit: int = MAX_MESSAGE) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def require_server(settings: Settings, config: Path) -> None:
    """Refuse to upload without a server to upload to: a `ConfigError` naming the config file
    and the fix. Every command and library entry point that uploads checks this first."""
    if not settings.server_url:
        raise ConfigError(
            f"{config}: server_url is not set. Fix: pywats-client config set server_url "
            "https://wats.example.com, or pywats-client config init (from Python: "
            "config.server_url = 'https://wats.example.com'; config.save())")


def uploader_for(settings: Settings) -> Uploader:
    """The client for the server an instance is configured for."""
    return Uploader(
        settings.server_url,
        settings.api_token,
        ca_bundle=settings.ca_bundle,
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        max_retry_after=settings.queue.retry_max_delay,
    )

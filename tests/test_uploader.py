"""Uploader against a real loopback server: every row of the outcome table in wats-api.md."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
import urllib3.exceptions

from pywats_client.errors import ConfigError
from pywats_client.http.receiver import Faults, Receiver
from pywats_client.service.uploader import (
    MAX_MESSAGE,
    Outcome,
    Uploader,
    UploadResult,
    classify_exception,
    parse_retry_after,
)
from tests.conftest import TOKEN
from tests.station import closed_port_url
from tests.test_receiver import make_report


def body_of(report: dict[str, Any]) -> bytes:
    return json.dumps(report).encode()


@pytest.fixture
def uploader_for() -> Iterator[Callable[..., Uploader]]:
    """Build clients that are closed after the test."""
    with contextlib.ExitStack() as made:
        def make(url: str, token: str = TOKEN, **options: Any) -> Uploader:
            client = Uploader(url, token, **options)
            made.callback(client.close)
            return client

        yield make


@pytest.fixture
def make_receiver(tmp_path: Path) -> Iterator[Callable[..., Receiver]]:
    started: list[Receiver] = []

    def make(**options: Any) -> Receiver:
        rx = Receiver(tmp_path / f"store{len(started)}", token=TOKEN, **options).start()
        started.append(rx)
        return rx

    yield make
    for rx in started:
        rx.stop()


class Scripted:
    """A tiny HTTP server answering every request with one scripted status, for the codes the
    receiver does not produce (403, 408, 422, 503, redirects, …). Records what it was sent."""

    def __init__(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
                 echo_authorization: bool = False) -> None:
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        script = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                self._answer()

            def do_POST(self) -> None:
                self._answer()

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                sent = self.rfile.read(length)
                script.requests.append((self.command, self.path, dict(self.headers), sent))
                data = body
                if echo_authorization:
                    data += f" (you sent {self.headers.get('Authorization')})".encode()
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = False
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05})
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def scripted() -> Iterator[Callable[..., Scripted]]:
    """Start scripted servers that are stopped after the test."""
    with contextlib.ExitStack() as started:
        def make(status: int, body: bytes = b"", **options: Any) -> Scripted:
            server = Scripted(status, body, **options)
            started.callback(server.stop)
            return server

        yield make


# -- 2xx ----------------------------------------------------------------------------------------


def test_200_is_stored(receiver: Receiver, uploader_for: Callable[..., Uploader]) -> None:
    report = make_report()
    result = uploader_for(receiver.url).upload(body_of(report), report["id"])
    assert result == UploadResult(Outcome.STORED, 200, result.message)
    assert report["id"] in result.message and "Report_ID 1" in result.message
    assert receiver.stored_ids() == {report["id"]}


def test_sends_token_content_type_and_user_agent(scripted: Callable[..., Scripted],
                                                 uploader_for: Callable[..., Uploader]) -> None:
    server = scripted(200, b'{"ID": "x"}')
    uploader_for(server.url).upload(b"{}", "x")
    method, path, headers, sent = server.requests[0]
    assert (method, path, sent) == ("POST", "/api/Report/WSJF", b"{}")
    assert headers["Authorization"] == f"Basic {TOKEN}"
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"].startswith("pywats-client/")


def test_a_cookie_the_server_sets_goes_back_with_later_requests(
        scripted: Callable[..., Scripted], uploader_for: Callable[..., Uploader]) -> None:
    # Load balancers in front of WATS keep a station on one node with a cookie.
    server = scripted(200, b'{"ID": "x"}', headers={"Set-Cookie": "node=b7; Path=/"})
    client = uploader_for(server.url)
    client.upload(b"{}", "x")
    client.probe()
    assert "Cookie" not in server.requests[0][2]
    assert server.requests[1][2]["Cookie"] == "node=b7"
    assert server.requests[1][2]["Accept"] == "application/json"
    assert "Content-Type" not in server.requests[1][2]  # a GET has no body


@pytest.mark.parametrize(("status", "body", "shown"), [
    (201, b'[{"ID": "a", "uuid": "a", "Report_ID": 5}]', "Report_ID 5"),  # one-element list
    (200, b"OK", "HTTP 200"),  # not JSON: still stored
])
def test_2xx_bodies_are_parsed_leniently(scripted: Callable[..., Scripted],
                                         uploader_for: Callable[..., Uploader], status: int,
                                         body: bytes, shown: str) -> None:
    result = uploader_for(scripted(status, body).url).upload(b"{}", "a")
    assert result.outcome is Outcome.STORED and result.status == status
    assert shown in result.message


def test_a_prefixed_base_url_with_trailing_slash(make_receiver: Callable[..., Receiver],
                                                 uploader_for: Callable[..., Uploader]) -> None:
    rx = make_receiver(prefix="/wats")
    client = uploader_for(rx.url + "/")
    report = make_report()
    assert client.upload(body_of(report), report["id"]).outcome is Outcome.STORED
    assert client.probe().outcome is Outcome.STORED


# -- the report is bad: REJECTED ----------------------------------------------------------------


def test_400_is_rejected_with_the_server_message(receiver: Receiver,
                                                 uploader_for: Callable[..., Uploader]) -> None:
    report = make_report(sn=None)
    result = uploader_for(receiver.url).upload(body_of(report), report["id"])
    assert (result.outcome, result.status) == (Outcome.REJECTED, 400)
    assert f"Report {report['id']}: field 'sn' is required" in result.message


def test_413_is_rejected(make_receiver: Callable[..., Receiver],
                         uploader_for: Callable[..., Uploader]) -> None:
    rx = make_receiver(max_body_bytes=100)
    report = make_report()
    result = uploader_for(rx.url).upload(body_of(report), report["id"])
    assert (result.outcome, result.status) == (Outcome.REJECTED, 413)
    assert "over the limit of 100 bytes" in result.message


def test_422_is_rejected_with_the_body_trimmed(scripted: Callable[..., Scripted],
                                               uploader_for: Callable[..., Uploader]) -> None:
    why = "Unknown processCode 77. " * 500
    result = uploader_for(scripted(422, why.encode()).url).upload(b"{}", "r1")
    assert (result.outcome, result.status) == (Outcome.REJECTED, 422)
    assert "Unknown processCode 77." in result.message
    assert len(result.message) < MAX_MESSAGE + 100


# -- configuration problems: AUTH ---------------------------------------------------------------


def test_401_is_auth(receiver: Receiver, uploader_for: Callable[..., Uploader]) -> None:
    client = uploader_for(receiver.url, token="d3Jvbmc6dG9rZW4=")
    result = client.upload(body_of(make_report()), "r1")
    assert (result.outcome, result.status) == (Outcome.AUTH, 401)
    assert "api_token" in result.message
    assert client.probe().outcome is Outcome.AUTH


def outcomes_with(faults: Faults, receiver: Receiver,
                  uploader_for: Callable[..., Uploader]) -> tuple[Outcome, Outcome]:
    """What an upload, then a probe, come to while the receiver has `faults`."""
    receiver.faults = faults
    client = uploader_for(receiver.url)
    return client.upload(body_of(make_report()), "r1").outcome, client.probe().outcome


def test_auth_fail_switch_is_auth_for_upload_and_probe(
        receiver: Receiver, uploader_for: Callable[..., Uploader]) -> None:
    assert outcomes_with(Faults(auth_fail=True), receiver, uploader_for) == (
        Outcome.AUTH, Outcome.AUTH)


def test_403_is_auth(scripted: Callable[..., Scripted],
                     uploader_for: Callable[..., Uploader]) -> None:
    result = uploader_for(scripted(403, b"Forbidden").url).upload(b"{}", "r1")
    assert (result.outcome, result.status) == (Outcome.AUTH, 403)


def test_404_on_the_submit_route_is_a_configuration_problem(
        make_receiver: Callable[..., Receiver], uploader_for: Callable[..., Uploader]) -> None:
    rx = make_receiver(prefix="/wats")
    client = uploader_for(rx.url.removesuffix("/wats"))  # the prefix was forgotten
    result = client.upload(body_of(make_report()), "r1")
    assert (result.outcome, result.status) == (Outcome.AUTH, 404)
    assert "server_url" in result.message and "prefix" in result.message
    assert client.probe().outcome is Outcome.AUTH
    assert rx.stored_ids() == set()


def test_a_redirect_is_not_followed_and_is_a_configuration_problem(
        scripted: Callable[..., Scripted], uploader_for: Callable[..., Uploader]) -> None:
    server = scripted(301, headers={"Location": "https://wats.example.com/api/Report/WSJF"})
    result = uploader_for(server.url).upload(b"{}", "r1")
    assert (result.outcome, result.status) == (Outcome.AUTH, 301)
    assert "https://wats.example.com/api/Report/WSJF" in result.message
    assert "server_url" in result.message
    assert len(server.requests) == 1


# -- try again later: TRANSIENT -----------------------------------------------------------------


@pytest.mark.parametrize("status", [408, 503])
def test_408_and_503_are_transient(scripted: Callable[..., Scripted],
                                   uploader_for: Callable[..., Uploader], status: int) -> None:
    result = uploader_for(scripted(status, b"busy").url).upload(b"{}", "r1")
    assert (result.outcome, result.status, result.retry_after) == (Outcome.TRANSIENT, status,
                                                                    None)
    assert "busy" in result.message


def test_429_is_transient_with_retry_after(receiver: Receiver,
                                           uploader_for: Callable[..., Uploader]) -> None:
    receiver.faults = Faults(rate_limit_rate=1.0, retry_after=7)
    result = uploader_for(receiver.url).upload(body_of(make_report()), "r1")
    assert (result.outcome, result.status, result.retry_after) == (Outcome.TRANSIENT, 429, 7.0)


def test_500_is_transient(receiver: Receiver, uploader_for: Callable[..., Uploader]) -> None:
    receiver.faults = Faults(error_rate=1.0)
    result = uploader_for(receiver.url).upload(body_of(make_report()), "r1")
    assert (result.outcome, result.status) == (Outcome.TRANSIENT, 500)


def test_503_with_an_http_date_retry_after(scripted: Callable[..., Scripted],
                                           uploader_for: Callable[..., Uploader]) -> None:
    later = formatdate(time.time() + 120, usegmt=True)
    server = scripted(503, b"maintenance", headers={"Retry-After": later})
    result = uploader_for(server.url).upload(b"{}", "r1")
    assert result.outcome is Outcome.TRANSIENT
    assert result.retry_after is not None and 100 < result.retry_after <= 121


@pytest.mark.parametrize(("value", "seconds"), [
    ("120", 120.0), (" 5 ", 5.0), ("0", 0.0), ("-3", 0.0),
    ("Wed, 21 Oct 2015 07:28:00 GMT", 60.0), ("Wed, 21 Oct 2015 07:26:00 GMT", 0.0),
    ("Wed, 21 Oct 2015 07:28:00 -0000", 60.0),
    ("soon", None), ("inf", None), ("nan", None), ("", None),
])
def test_parse_retry_after(value: str, seconds: float | None) -> None:
    now = 1445412420.0  # Wed, 21 Oct 2015 07:27:00 GMT
    assert parse_retry_after(value, now) == seconds


def test_read_timeout_after_store_is_transient_and_the_report_is_stored(
        receiver: Receiver, uploader_for: Callable[..., Uploader]) -> None:
    receiver.faults = Faults(timeout_after_store_rate=1.0, hang_seconds=30)
    client = uploader_for(receiver.url, read_timeout=0.3)
    report = make_report()
    result = client.upload(body_of(report), report["id"])
    assert (result.outcome, result.status) == (Outcome.TRANSIENT, None)
    assert "0.3 s" in result.message and "same id" in result.message
    assert receiver.wait_for_reports(1, timeout=5)
    # Sending it again, as the queue will, replaces the same report: a harmless duplicate.
    receiver.faults = Faults()
    assert client.upload(body_of(report), report["id"]).outcome is Outcome.STORED
    assert receiver.posts_by_id() == {report["id"]: 2}


def test_a_reset_after_sending_is_transient(receiver: Receiver,
                                            uploader_for: Callable[..., Uploader]) -> None:
    receiver.faults = Faults(reset_rate=1.0)
    result = uploader_for(receiver.url).upload(body_of(make_report()), "r1")
    assert (result.outcome, result.status) == (Outcome.TRANSIENT, None)
    assert "same id" in result.message


def test_a_server_that_is_down_resets_and_is_transient(
        receiver: Receiver, uploader_for: Callable[..., Uploader]) -> None:
    assert outcomes_with(Faults(down=True), receiver, uploader_for) == (
        Outcome.TRANSIENT, Outcome.TRANSIENT)


def test_a_reset_on_a_reused_connection_is_not_retried_silently(
        receiver: Receiver, uploader_for: Callable[..., Uploader]) -> None:
    client = uploader_for(receiver.url)
    assert client.probe().outcome is Outcome.STORED  # a keep-alive connection now exists
    receiver.faults = Faults(reset_rate=1.0)
    assert client.upload(body_of(make_report()), "r1").outcome is Outcome.TRANSIENT
    assert receiver.request_count("POST /api/Report/WSJF") == 1  # one call, one attempt


# -- the server cannot be reached: OFFLINE ------------------------------------------------------


def test_connection_refused_is_offline(uploader_for: Callable[..., Uploader]) -> None:
    client = uploader_for(closed_port_url())
    result = client.upload(b"{}", "r1")
    assert (result.outcome, result.status) == (Outcome.OFFLINE, None)
    assert "Connection refused" in result.message and "HTTPConnection" not in result.message
    assert client.probe().outcome is Outcome.OFFLINE


def test_connect_timeout_is_offline(uploader_for: Callable[..., Uploader]) -> None:
    # A listening socket whose accept backlog is full: the kernel drops further SYNs, so a
    # connect times out, all on loopback.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers: list[socket.socket] = []
        try:
            for _ in range(16):
                filler = socket.socket()
                fillers.append(filler)
                filler.settimeout(0.2)
                try:
                    filler.connect(("127.0.0.1", port))
                except OSError:
                    break  # the backlog is full
            else:
                pytest.skip("could not fill the accept backlog on this system")
            result = uploader_for(f"http://127.0.0.1:{port}", connect_timeout=0.2).upload(b"{}",
                                                                                     "r1")
        finally:
            for filler in fillers:
                filler.close()
    assert (result.outcome, result.status) == (Outcome.OFFLINE, None)
    assert "no connection within 0.2 s" in result.message


def test_a_failed_tls_handshake_is_offline(receiver: Receiver,
                                           uploader_for: Callable[..., Uploader]) -> None:
    client = uploader_for(receiver.url.replace("http://", "https://"))
    result = client.upload(body_of(make_report()), "r1")
    assert (result.outcome, result.status) == (Outcome.OFFLINE, None)
    assert "TLS handshake" in result.message and "ca_bundle" in result.message
    assert receiver.stored_ids() == set()


def _connect_error(reason: Exception) -> requests.ConnectionError:
    """What requests raises when urllib3 could not connect (DNS, refused)."""
    return requests.ConnectionError(urllib3.exceptions.MaxRetryError(None, "/", reason))


@pytest.mark.parametrize(("exc", "outcome"), [
    (_connect_error(urllib3.exceptions.NameResolutionError("wats.invalid", None, OSError(-2))),
     Outcome.OFFLINE),
    (_connect_error(urllib3.exceptions.NewConnectionError(None, "refused")), Outcome.OFFLINE),
    (requests.ConnectTimeout("connect timeout"), Outcome.OFFLINE),
    (requests.exceptions.SSLError("certificate verify failed"), Outcome.OFFLINE),
    (requests.ConnectionError(urllib3.exceptions.ProtocolError(
        "Connection aborted.", ConnectionResetError(104, "reset"))), Outcome.TRANSIENT),
    (requests.ReadTimeout("read timeout"), Outcome.TRANSIENT),
    (requests.exceptions.ChunkedEncodingError("broken"), Outcome.TRANSIENT),
    (requests.exceptions.InvalidURL("bad"), Outcome.AUTH),
])
def test_classify_exception(exc: requests.RequestException, outcome: Outcome) -> None:
    assert classify_exception(exc) is outcome


# -- sessions -----------------------------------------------------------------------------------


def test_one_thread_reuses_one_connection(receiver: Receiver,
                                          uploader_for: Callable[..., Uploader]) -> None:
    client = uploader_for(receiver.url)
    for _ in range(5):
        report = make_report()
        assert client.upload(body_of(report), report["id"]).outcome is Outcome.STORED
    assert receiver.request_count() == 5
    assert receiver.connection_count() == 1


def test_each_thread_has_its_own_keep_alive_session(
        receiver: Receiver, uploader_for: Callable[..., Uploader]) -> None:
    client = uploader_for(receiver.url)
    together = threading.Barrier(3, timeout=10)
    results: list[Outcome] = []

    def work() -> None:
        together.wait()  # all three are alive at once, so none can inherit another's session
        for _ in range(4):
            report = make_report()
            results.append(client.upload(body_of(report), report["id"]).outcome)

    workers = [threading.Thread(target=work) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=10)
    assert results == [Outcome.STORED] * 12
    assert receiver.request_count() == 12
    assert receiver.connection_count() == 3


def test_close_drops_connections_and_the_client_still_works(
        receiver: Receiver, uploader_for: Callable[..., Uploader]) -> None:
    client = uploader_for(receiver.url)
    assert client.probe().outcome is Outcome.STORED
    client.close()
    assert client.probe().outcome is Outcome.STORED
    assert receiver.connection_count() == 2


def test_close_closes_the_kept_connection_at_once(uploader_for: Callable[..., Uploader]) -> None:
    # A plain socket as the server: it sees the client hang up, whoever else holds the pool.
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)
    ended: list[bytes] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(10)
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(4096)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
            try:
                ended.append(conn.recv(4096))  # b"": the client closed the connection
            except OSError:
                ended.append(b"<no end seen>")

    server = threading.Thread(target=serve)
    server.start()
    try:
        client = uploader_for(f"http://127.0.0.1:{listener.getsockname()[1]}")
        assert client.probe().outcome is Outcome.STORED
        client.close()  # the client object lives on: only close() can end the connection
        server.join(15)
        assert ended == [b""]
    finally:
        listener.close()


# -- secrets and configuration ------------------------------------------------------------------


def test_the_token_never_shows(receiver: Receiver, scripted: Callable[..., Scripted],
                               uploader_for: Callable[..., Uploader]) -> None:
    echo = scripted(400, b"Bad report", echo_authorization=True)
    results = [
        uploader_for(echo.url).upload(b"{}", "r1"),
        uploader_for(receiver.url).upload(b"{}", "r1"),
        uploader_for(closed_port_url()).upload(b"{}", "r1"),
        uploader_for(receiver.url.replace("http://", "https://")).probe(),
    ]
    receiver.faults = Faults(reset_rate=1.0)
    results.append(uploader_for(receiver.url).upload(b"{}", "r1"))
    assert "you sent Basic <token>" in results[0].message  # the echo was scrubbed
    for result in results:
        assert TOKEN not in result.message and TOKEN not in repr(result)
    client = uploader_for(receiver.url)
    assert TOKEN not in repr(client) and TOKEN not in repr(client._auth)


@pytest.mark.parametrize(("url", "token", "options", "says"), [
    ("wats.example.com", TOKEN, {}, "not an http(s) URL"),
    ("ftp://wats.example.com", TOKEN, {}, "not an http(s) URL"),
    ("https://user:pw@wats.example.com", TOKEN, {}, "must not contain a user name or password"),
    ("https://wats.example.com", "", {}, "api_token is empty"),
    ("https://wats.example.com", f"{TOKEN}\r\nX-Evil: 1", {}, "line breaks"),
    ("https://wats.example.com", TOKEN, {"ca_bundle": "/nonexistent/ca.pem"}, "ca_bundle"),
])
def test_configuration_errors_name_the_setting(url: str, token: str, options: dict[str, Any],
                                               says: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(says)) as caught:
        Uploader(url, token, **options)
    assert not token or token not in str(caught.value)


def test_report_ids_reach_the_messages(receiver: Receiver,
                                       uploader_for: Callable[..., Uploader]) -> None:
    report_id = str(uuid.uuid4())
    receiver.faults = Faults(error_rate=1.0)
    assert report_id in uploader_for(receiver.url).upload(b"{}", report_id).message

"""A server that answers too much or too slowly: the uploader reads at most MAX_ANSWER_BYTES of
an answer (decoded) and all of it within connect_timeout + read_timeout, for uploads, probes and
the process list alike; anything else is a TRANSIENT outcome naming the size or the time."""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pywats_client.outcomes import Outcome
from pywats_client.service.uploader import MAX_ANSWER_BYTES, Uploader, UploadResult
from tests.conftest import TOKEN
from tests.test_receiver import make_report

HUGE = 64 * 2**20  # sixteen times the limit


class RawServer:
    """A loopback server writing whatever `answer(conn)` writes after reading each request."""

    def __init__(self, answer: Callable[[socket.socket, threading.Event], None]) -> None:
        self.stop = threading.Event()
        self.sent = 0
        self._answer = answer
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self._listener.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(10)
                try:
                    _read_request(conn)
                    self._answer(conn, self.stop)
                except OSError:
                    pass  # the client hung up: what the tests want

    def send(self, conn: socket.socket, data: bytes) -> None:
        conn.sendall(data)
        self.sent += len(data)

    def close(self) -> None:
        self.stop.set()
        self._listener.close()
        self._thread.join(10)


def _read_request(conn: socket.socket) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            raise ConnectionResetError("no request")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        body += conn.recv(65536)


@pytest.fixture
def serve() -> Iterator[Callable[..., RawServer]]:
    servers: list[RawServer] = []

    def make(answer: Callable[[socket.socket, threading.Event], None]) -> RawServer:
        servers.append(RawServer(answer))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


CALLS: dict[str, Callable[[Uploader], UploadResult]] = {
    "upload": lambda client: client.upload(json.dumps(make_report()).encode(), "r1"),
    "probe": lambda client: client.probe(),
    "process list": lambda client: client.processes()[0],
}


def _call(url: str, which: str, **options: Any) -> tuple[UploadResult, float]:
    client = Uploader(url, TOKEN, **options)
    started = time.monotonic()
    try:
        return CALLS[which](client), time.monotonic() - started
    finally:
        client.close()


@pytest.mark.parametrize("which", list(CALLS))
def test_a_huge_declared_answer_is_not_read(serve: Callable[..., RawServer], which: str) -> None:
    def answer(conn: socket.socket, stop: threading.Event) -> None:
        server.send(conn, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                          b"Content-Length: %d\r\n\r\n" % HUGE)
        for _ in range(HUGE // 65536):
            server.send(conn, b"\0" * 65536)

    server = serve(answer)
    result, _ = _call(server.url, which)
    assert result.outcome is Outcome.TRANSIENT, result
    assert str(HUGE) in result.message and str(MAX_ANSWER_BYTES) in result.message
    assert server.sent < HUGE // 2  # it stopped reading: the server could not send it all


@pytest.mark.parametrize("which", list(CALLS))
def test_a_huge_answer_without_a_length_is_cut_off(serve: Callable[..., RawServer],
                                                   which: str) -> None:
    def answer(conn: socket.socket, stop: threading.Event) -> None:
        server.send(conn, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                          b"Connection: close\r\n\r\n[")
        for _ in range(HUGE // 65536):
            server.send(conn, b" " * 65536)

    server = serve(answer)
    result, _ = _call(server.url, which)
    assert result.outcome is Outcome.TRANSIENT, result
    assert f"over the limit of {MAX_ANSWER_BYTES} bytes" in result.message
    assert server.sent < HUGE // 2


def test_a_compressed_answer_counts_as_what_it_decodes_to(
        serve: Callable[..., RawServer]) -> None:
    bomb = gzip.compress(b"[" + b" " * HUGE + b"]", compresslevel=9)  # ~64 KB
    assert len(bomb) < MAX_ANSWER_BYTES

    def answer(conn: socket.socket, stop: threading.Event) -> None:
        server.send(conn, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                          b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(bomb))
        server.send(conn, bomb)

    server = serve(answer)
    result, _ = _call(server.url, "process list")
    assert result.outcome is Outcome.TRANSIENT and "over the limit" in result.message, result


@pytest.mark.parametrize("which", list(CALLS))
def test_an_answer_trickling_in_is_given_up_at_the_timeout(
        serve: Callable[..., RawServer], which: str) -> None:
    def answer(conn: socket.socket, stop: threading.Event) -> None:
        server.send(conn, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                          b"Content-Length: 60\r\n\r\n")
        for byte in b"[" + b" " * 58 + b"]":  # a byte every 0.2 s: 12 s in all
            if stop.wait(0.2):
                return
            server.send(conn, bytes([byte]))

    server = serve(answer)
    result, elapsed = _call(server.url, which, connect_timeout=1, read_timeout=1)
    assert result.outcome is Outcome.TRANSIENT, result
    assert "did not finish its answer within 2 s" in result.message
    assert elapsed < 4, elapsed  # each byte came within the read timeout; the whole did not

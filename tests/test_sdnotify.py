"""systemd notification over a real datagram socket, from the library and from the service."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pywats_client.http.receiver import Receiver
from pywats_client.sdnotify import Notifier
from tests.conftest import TOKEN
from tests.station import REPO, Station


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(20)
    yield sock, path
    sock.close()


def test_messages_arrive_on_the_socket(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    notifier = Notifier({"NOTIFY_SOCKET": path})
    assert notifier.enabled and notifier.watchdog_interval is None
    assert notifier.ready("watching 2 folder(s)")
    assert sock.recv(4096) == b"READY=1\nSTATUS=watching 2 folder(s)"
    assert notifier.watchdog() and sock.recv(4096) == b"WATCHDOG=1"
    assert notifier.stopping() and sock.recv(4096) == b"STOPPING=1"


def test_abstract_socket_names_are_understood() -> None:
    name = f"pywats-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(10)
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).ready()
        assert sock.recv(100) == b"READY=1"


def test_without_systemd_every_call_is_a_no_op() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    assert notifier.ready() is False and notifier.watchdog() is False


def test_a_vanished_socket_is_not_an_error(tmp_path: Path) -> None:
    assert Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")}).ready() is False


def test_watchdog_interval_is_half_the_timeout_and_only_for_our_pid() -> None:
    assert Notifier({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "10000000"}
                    ).watchdog_interval == 5.0
    other = Notifier({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "1"})
    assert other.watchdog_interval is None


@pytest.mark.slow
def test_the_service_says_ready_pings_the_watchdog_and_says_stopping(
        tmp_path: Path, notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    with Receiver(tmp_path / "store", token=TOKEN) as receiver:
        station = Station(tmp_path / "station", receiver.url, TOKEN)
        env = {**station.env(), "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "pywats_client", "--data-dir", str(station.data_dir),
             "start"], env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            seen: list[str] = []
            while seen.count("WATCHDOG=1") < 3:
                for field in sock.recv(4096).decode().split("\n"):
                    if not field.startswith("STATUS="):
                        seen.append(field)
            proc.send_signal(signal.SIGTERM)
            while "STOPPING=1" not in seen:
                seen.extend(f for f in sock.recv(4096).decode().split("\n")
                            if not f.startswith("STATUS="))
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert seen[0] == "READY=1"
    assert seen.index("STOPPING=1") > max(i for i, f in enumerate(seen) if f == "WATCHDOG=1")

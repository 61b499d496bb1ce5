"""The status page: what it says in each situation, that untrusted text stays text, and what
a real browser (headless Chromium) shows when it loads it from the control API."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pywats_client.http import status_page
from pywats_client.http.control_api import ControlServer
from pywats_client.queue.store import DurableQueue

NOW = 1_800_000_000.0
HOSTILE_REASON = "HTTP 400: field 'sn' <script>alert(1)</script> & more"
HOSTILE_FILE = '/data/ict/"><img src=x onerror=alert(2)>.json'

COUNTS = {"pending": 3, "processing": 1, "completed": 42, "failed": 2, "corrupt": 0}


def snapshot(**changes: Any) -> dict[str, Any]:
    status: dict[str, Any] = {
        "pid": 1234, "version": "1.2.3", "started_at": NOW - 3700, "updated_at": NOW - 2,
        "state": "running", "supervisor": "systemd", "server": "online", "server_detail": "",
        "disk_full": False, "disk_free_mb": 5120.0, "disk_low": False,
        "folders_unavailable": [], "last_upload_at": NOW - 90, "last_upload_id": "a",
        "uploaded": 42, "rejected": 2, "converted": 44, "conversion_errors": 1,
        "upload_failures": {"rejected": 2}, "watching": 0, "api_url": "",
        "recent_uploads": [
            {"at": NOW - 90, "report_id": "0b8f2a6e-1111-4c3b-9a77-2d3c4b5a6f70",
             "source": "/data/ict/SN24050107.json"},
        ],
        "recent_failures": [
            {"at": NOW - 30, "kind": "rejected", "report_id": "5d1c-hostile",
             "source": HOSTILE_FILE, "reason": HOSTILE_REASON},
            {"at": NOW - 60, "kind": "conversion", "report_id": "",
             "source": "/data/ict/scope.bin", "reason": "scope.bin: no converter recognises "
             "this file"},
        ],
    }
    status.update(changes)
    return status


def render(**changes: Any) -> str:
    return status_page.render(snapshot(**changes), COUNTS, instance="line-a",
                              station="ICT-07", now=NOW)


def text_of(page: str) -> str:
    """What a reader sees: style, title and tags dropped, entities decoded, blanks collapsed."""
    page = re.sub(r"<(style|title)>.*?</\1>", " ", page, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def banner(page: str) -> tuple[str, str]:
    """(tone, text) of the health banner."""
    m = re.search(r'<section class="banner (\w+)" id="health">(.*?)</section>', page, re.S)
    assert m, "no health banner"
    return m.group(1), text_of(m.group(2))


def test_the_page_is_a_plain_phone_page_that_refreshes_itself() -> None:
    page = render()
    assert page.startswith("<!doctype html>")
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    assert '<meta http-equiv="refresh" content="10">' in page
    assert "<script" not in page  # no script of its own...
    assert not re.findall(r"<[^>]*\son[a-z]+\s*=", page, re.I)  # ...nor inline handlers


def test_it_shows_counts_health_and_recent_events() -> None:
    seen = text_of(render())
    for expected in ("ICT-07", "instance line-a", "Uploading normally", "Server online",
                     "Last upload 1 min ago", "Waiting to upload 3", "Uploading now 1",
                     "Failed 2", "Uploaded (kept) 42", "Recent failures",
                     "Rejected by the server", "Could not convert the file",
                     "no converter recognises this file", "SN24050107.json",
                     "0b8f2a6e-1111-4c3b-9a77-2d3c4b5a6f70", "started 1 h 1 min ago"):
        assert expected in seen, expected
    assert "scope.bin: no converter" not in seen  # the file name is not said twice


def test_untrusted_text_is_escaped() -> None:
    page = render()
    assert "<script>alert(1)" not in page and "<img src=x" not in page
    assert html.escape(HOSTILE_REASON) in page
    assert html.escape('"><img src=x onerror=alert(2)>.json') in page
    assert HOSTILE_REASON in text_of(page)


@pytest.mark.parametrize(("changes", "tone", "headline", "detail"), [
    ({}, "ok", "Uploading normally", "Server online"),
    ({"server": "paused", "server_detail": "HTTP 401 <bad token>"}, "bad", "Uploads paused",
     "HTTP 401 <bad token>"),
    ({"server": "offline", "server_detail": "connection refused"}, "warn",
     "Server unreachable", "Reports are kept"),
    ({"disk_full": True}, "bad", "Disk full", "new files wait in the watch folders"),
    ({"folders_unavailable": ["/mnt/line-b"]}, "warn", "Needs attention",
     "Watch folder unavailable (missing, unmounted or unreadable): /mnt/line-b"),
    ({"disk_low": True, "disk_free_mb": 80.5}, "warn", "Needs attention", "80.5 MB free"),
    ({"station_fault": "Operation not permitted (EPERM) on /q/tmp"}, "bad",
     "Cannot write the queue", "EPERM"),
    ({"conversions_paused": True, "stuck_conversions": 5}, "bad", "Conversions paused",
     "5 converter(s) are stuck"),
    ({"poison_files": 1}, "warn", "Needs attention", "made the service die"),
    ({"waiting_for_processes": 2}, "warn", "Needs attention", "wait for the server's process"),
    ({"state": "stopping"}, "warn", "Service stopping", "last known"),
    ({"server": "unknown", "last_upload_at": None}, "ok", "Running", "No upload since start"),
])
def test_the_headline_says_the_one_thing_to_know_first(
        changes: dict[str, Any], tone: str, headline: str, detail: str) -> None:
    page = render(**changes)
    shown_tone, shown = banner(page)
    assert shown_tone == tone and shown.startswith(headline)
    assert detail in text_of(page)


def test_files_in_the_error_folders_are_not_uploading_normally() -> None:
    newest = [{"path": f"/data/ict/error/bad-{n}.csv", "at": NOW - 60 * n,
               "reason": f"no converter recognises bad-{n}.csv <b>"} for n in range(3)]
    page = render(error_files=4, error_files_newest=newest, recent_failures=[])
    tone, shown = banner(page)
    assert tone == "warn" and shown.startswith("Needs attention")
    assert "Uploading normally" not in page
    seen = text_of(page)
    assert "In error folders 4" in seen and "4 file(s) could not be converted" in seen
    assert "In the error folders (newest 3 of 4)" in seen
    for n in range(3):
        assert f"bad-{n}.csv no converter" not in seen  # name, then time, then reason
        assert f"bad-{n}.csv" in seen and f"no converter recognises bad-{n}.csv <b>" in seen
    assert "<b>" not in page  # the reason is text
    assert 'id="count-error-files"><dt>In error folders</dt><dd>4</dd>' in page


def test_long_reasons_are_shortened_on_the_page() -> None:
    long_reason = "x" * 2000
    page = render(recent_failures=[{"at": NOW, "kind": "transient", "report_id": "r",
                                    "source": "", "reason": long_reason}])
    assert "x" * status_page.REASON_SHOWN + "\u2026" in page and "x" * 2000 not in page
    assert "Server error \u2014 will retry" in page


def test_nothing_yet_is_said_plainly() -> None:
    seen = text_of(status_page.render({"state": "running"}, {}, now=NOW))
    assert "Recent failures None since start." in seen
    assert "Recent uploads None since start." in seen
    assert "Waiting to upload 0" in seen


# -- in a real browser ------------------------------------------------------------------------


class _Showing:
    """The control interface, showing a fixed status (stop and restart are not used here)."""

    def __init__(self, status: dict[str, Any]) -> None:
        self.status = status

    def snapshot(self) -> dict[str, Any]:
        return self.status

    def request_stop(self) -> None:
        raise AssertionError("not expected")

    def request_restart(self) -> None:
        raise AssertionError("not expected")


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("headless Chromium is not installed: apt-get install -y chromium "
                    "(.ci/run installs it)")
    return found


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    queue = DurableQueue(tmp_path / "queue")
    queue.ensure_layout()
    for n in range(3):
        queue.put(b"{}", report_id=f"00000000-0000-4000-8000-00000000000{n}", source=f"r{n}")
    status = snapshot(server="offline", server_detail="connect to wats.example.com: <timeout>",
                      folders_unavailable=["/mnt/<share>"], started_at=time.time() - 60,
                      updated_at=time.time())
    with ControlServer(_Showing(status), queue, "t" * 43, port=0, instance="line-a",
                       station="ICT-07") as api:
        yield api.url


def browse(url: str, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", *extra, url],
        capture_output=True, text=True, timeout=120)


def test_chromium_shows_the_page_with_hostile_text_as_text(served: str, tmp_path: Path) -> None:
    result = browse(served + "/", tmp_path, "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    assert "<script" not in dom.lower()  # nothing became an element
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom  # ...it is shown as text
    assert "<img" not in dom.lower()
    seen = text_of(dom)
    assert "Server unreachable" in seen and "connect to wats.example.com: <timeout>" in seen
    assert "Waiting to upload 3" in seen and "Failed 0" in seen
    assert "Watch folder unavailable (missing, unmounted or unreadable): /mnt/<share>" in seen
    assert HOSTILE_REASON in seen and "Rejected by the server" in seen


def test_chromium_renders_a_phone_sized_screenshot(served: str, tmp_path: Path) -> None:
    png = tmp_path / "page.png"
    result = browse(served + "/", tmp_path, f"--screenshot={png}", "--window-size=412,915",
                    "--hide-scrollbars")
    assert result.returncode == 0 and png.exists(), result.stderr[-2000:]
    header = png.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")
    assert (width, height) == (412, 915)

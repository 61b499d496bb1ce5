"""Every ```python block of the README's "Python library" section runs, in order, in one
namespace — as a reader would paste them — against the loopback receiver and temp folders."""

from __future__ import annotations

import contextlib
import io
import os
import re
import threading
from pathlib import Path

import pytest

from pywats_client import __version__
from pywats_client.http.receiver import Receiver
from tests.conftest import TOKEN
from tests.station import wait_until

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## Python library"


def library_blocks() -> list[str]:
    text = README.read_text(encoding="utf-8")
    assert SECTION in text, f"README.md has no '{SECTION}' section"
    section = text.split(SECTION, 1)[1]
    section = re.split(r"^## ", section, flags=re.MULTILINE)[0]  # up to the next section
    return re.findall(r"^```python\n(.*?)^```", section, flags=re.MULTILINE | re.DOTALL)


def test_the_section_shows_each_api() -> None:
    code = "\n".join(library_blocks())
    for name in ("ClientConfig(", "load_or_create(", ".save()", "UUTReport(", "ReportQueue(",
                 ".add(", "get_status()", "process_all()", "retry_failed()",
                 "clear_completed()", "ConnectionService(", "is_connected()",
                 "get_server_version()", "QueueService(", "WATSClient(", ".start()", ".stop()",
                 "get_info(", "can_convert("):
        assert name in code, f"the README's library section never shows {name}"
    assert "await" not in code and "asyncio" not in code


def test_every_library_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = library_blocks()
    assert len(blocks) >= 5
    for name in [n for n in os.environ if n.startswith("PYWATS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("PYWATS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    before = {t.name for t in threading.enumerate()}
    with Receiver(tmp_path / "store", token=TOKEN) as receiver:
        monkeypatch.setenv("PYWATS_SERVER_URL", receiver.url)
        namespace: dict[str, object] = {"__name__": "readme"}
        output = io.StringIO()
        for number, block in enumerate(blocks, start=1):
            with contextlib.redirect_stdout(output):
                try:
                    exec(compile(block, f"README.md python block {number}", "exec"), namespace)
                except Exception as exc:
                    pytest.fail(f"README python block {number} failed: {exc!r}\n{block}")
        # What the examples say they do, they did.
        assert len(receiver.stored_ids()) == 2  # queue.process_all() and the QueueService
    printed = output.getvalue().splitlines()
    assert str(tmp_path / "data" / "station1" / "config.json") in printed
    assert {"5", "P", "1 online", "Pending: 1", "running", "SN-0003", "0.7"} <= set(printed)
    assert f"Connected to WATS {__version__}" in printed
    wait_until(lambda: {t.name for t in threading.enumerate()} <= before, 15,
               "the examples' threads to end")

"""Files in the watch folders' error folders are counted and named wherever the station's state
is shown: `status` (text and --json), and the service's status (hence /status, /metrics and the
status page, in tests/test_control_api.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pywats_client import cli
from pywats_client.cli.common import NOT_RUNNING
from pywats_client.config.document import init_config
from pywats_client.paths import InstancePaths
from pywats_client.service.status import ERROR_FILES_SHOWN, count_error_files
from tests.conftest import TOKEN

NOTE = """pywats-client could not turn {name} into a WATS report.

What happened:
    no converter recognises {name}

Original file:  /data/{name}
"""


def put_error_file(folder: Path, name: str, mtime: float, *, note: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(b"\x00 not a report")
    if note:
        (folder / f"{name}.error.txt").write_text(NOTE.format(name=name))
    os.utime(path, (mtime, mtime))
    return path


def test_counting_sees_files_not_notes_and_names_the_newest(tmp_path: Path) -> None:
    error = tmp_path / "watch" / "error"
    for n in range(ERROR_FILES_SHOWN + 3):
        put_error_file(error, f"bad-{n}.bin", 1_700_000_000 + n)
    put_error_file(error, "by-hand.csv", 1_600_000_000, note=False)
    (error / ".partial.tmp").write_bytes(b"")  # hidden: not counted
    (error / "sub").mkdir()  # a folder: not counted
    count, newest = count_error_files([error, error, tmp_path / "missing" / "error"])
    assert count == ERROR_FILES_SHOWN + 4  # the shared folder once; the missing one is none
    assert [Path(item["path"]).name for item in newest] == [
        f"bad-{n}.bin" for n in range(ERROR_FILES_SHOWN + 2, 2, -1)]  # newest first
    assert newest[0]["reason"] == f"no converter recognises bad-{ERROR_FILES_SHOWN + 2}.bin"
    _, oldest = count_error_files([error], newest=ERROR_FILES_SHOWN + 4)
    assert oldest[-1]["reason"] == ""  # no note


def test_a_note_of_another_shape_gives_its_first_line(tmp_path: Path) -> None:
    error = tmp_path / "error"
    put_error_file(error, "x.bin", 1_700_000_000, note=False)
    (error / "x.bin.error.txt").write_text("\n  checksum mismatch in line 3\nmore\n")
    assert count_error_files([error])[1][0]["reason"] == "checksum mismatch in line 3"


def test_an_error_folder_or_note_that_is_a_link_is_not_read(tmp_path: Path) -> None:
    # A watch-folder writer may point error/ or a note at something of the service's.
    elsewhere = tmp_path / "elsewhere"
    put_error_file(elsewhere, "secret.bin", 1_700_000_000)
    linked = tmp_path / "watch" / "error"
    linked.parent.mkdir()
    linked.symlink_to(elsewhere, target_is_directory=True)
    assert count_error_files([linked]) == (0, [])
    error = tmp_path / "other" / "error"
    put_error_file(error, "x.bin", 1_700_000_000, note=False)
    (tmp_path / "private.txt").write_text("the service's private text\n")
    (error / "x.bin.error.txt").symlink_to(tmp_path / "private.txt")
    assert count_error_files([error]) == (1, [
        {"path": str(error / "x.bin"), "at": 1_700_000_000, "reason": ""}])


def test_status_counts_the_error_files_running_or_not(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data_dir = tmp_path / "data"
    watch = tmp_path / "watch"
    watch.mkdir()
    doc = init_config(InstancePaths.for_instance("default", data_dir),
                      server_url="http://127.0.0.1:9", api_token=TOKEN)
    doc.set("queue.watch_folders", f'["{watch}"]')
    doc.save()
    for n in range(4):
        put_error_file(watch / "error", f"bad-{n}.bin", 1_700_000_000 + n)
    base = ["--data-dir", str(data_dir), "status", "--no-probe"]
    assert cli.main([*base, "--json"]) == NOT_RUNNING
    shown = json.loads(capsys.readouterr().out)
    assert shown["error_files"] == 4
    assert Path(shown["error_files_newest"][0]["path"]).name == "bad-3.bin"
    assert cli.main(base) == NOT_RUNNING
    text = capsys.readouterr().out
    assert "error files:  4 could not be converted" in text
    assert "bad-3.bin: no converter recognises bad-3.bin" in text


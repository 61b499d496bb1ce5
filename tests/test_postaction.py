"""Post-actions on source files: move, archive, delete, none (SeenFiles) and the error folder."""

from __future__ import annotations

import json
import os
import shutil
import threading
import zipfile
from datetime import datetime
from pathlib import Path

import pytest

from pywats_client.clock import Clock
from pywats_client.config.settings import WatchFolder
from pywats_client.service.postaction import (
    SeenFiles,
    SourceFile,
    apply_post_action,
    move_to_error,
)
from tests.conftest import sample


class FixedClock(Clock):
    def __init__(self, wall: float) -> None:
        self.wall = wall

    def time(self) -> float:
        return self.wall


def make_source(folder: WatchFolder, name: str, data: bytes) -> SourceFile:
    path = folder.path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    st = path.stat()
    return SourceFile(folder, path, st.st_size, st.st_mtime_ns)


@pytest.fixture
def seen(tmp_path: Path) -> SeenFiles:
    return SeenFiles(tmp_path / "state")


def test_move_puts_file_into_done_folder(tmp_path: Path, seen: SeenFiles) -> None:
    folder = WatchFolder(path=tmp_path / "in")
    source = make_source(folder, "uut1.log", b"PASS")

    dest = apply_post_action(source, seen)

    assert dest == tmp_path / "in" / "done" / "uut1.log"
    assert dest.read_bytes() == b"PASS"
    assert not source.path.exists()


def test_move_never_overwrites_in_done_folder(tmp_path: Path, seen: SeenFiles) -> None:
    folder = WatchFolder(path=tmp_path / "in", done_folder=tmp_path / "elsewhere" / "done")
    dests = []
    for n in range(3):
        source = make_source(folder, "result.csv", f"run {n}".encode())
        dest = apply_post_action(source, seen)
        assert dest is not None
        dests.append(dest)

    assert len(set(dests)) == 3
    assert all(d.parent == tmp_path / "elsewhere" / "done" for d in dests)
    assert [d.read_bytes() for d in dests] == [b"run 0", b"run 1", b"run 2"]
    assert sorted(p.name for p in dests[0].parent.iterdir()) == [
        "result.1.csv", "result.2.csv", "result.csv"]


def test_archive_zip_round_trips_and_removes_source(tmp_path: Path, seen: SeenFiles) -> None:
    folder = WatchFolder(path=tmp_path / "in", post_action="archive")
    data = bytes(range(256)) * 100
    source = make_source(folder, "board 7 [passed].dat", data)

    dest = apply_post_action(source, seen)

    assert dest == tmp_path / "in" / "done" / "board 7 [passed].dat.zip"
    assert not source.path.exists()
    with zipfile.ZipFile(dest) as zf:
        assert zf.namelist() == ["board 7 [passed].dat"]
        assert zf.getinfo("board 7 [passed].dat").compress_type == zipfile.ZIP_DEFLATED
        assert zf.read("board 7 [passed].dat") == data
    assert [p.name for p in dest.parent.iterdir()] == [dest.name]  # no temporary file left


def test_archive_never_overwrites(tmp_path: Path, seen: SeenFiles) -> None:
    folder = WatchFolder(path=tmp_path / "in", post_action="archive")
    zips = []
    for n in range(3):
        dest = apply_post_action(make_source(folder, "r.txt", f"#{n}".encode()), seen)
        assert dest is not None
        zips.append(dest)

    assert len(set(zips)) == 3
    contents = []
    for z in zips:
        with zipfile.ZipFile(z) as zf:
            contents.append(zf.read("r.txt"))
    assert contents == [b"#0", b"#1", b"#2"]


def test_archive_of_a_real_sample_file(tmp_path: Path, seen: SeenFiles) -> None:
    original = sample("atml", "ATML 6.01 [2 31 52 PM][5 15 2019].xml")
    folder = WatchFolder(path=tmp_path / "in", post_action="archive")
    folder.path.mkdir()
    path = folder.path / original.name
    shutil.copyfile(original, path)
    st = path.stat()

    dest = apply_post_action(SourceFile(folder, path, st.st_size, st.st_mtime_ns), seen)

    assert dest is not None
    with zipfile.ZipFile(dest) as zf:
        assert zf.read(original.name) == original.read_bytes()
        assert zf.testzip() is None


def test_archive_keeps_pre_1980_timestamps_working(tmp_path: Path, seen: SeenFiles) -> None:
    folder = WatchFolder(path=tmp_path / "in", post_action="archive")
    source = make_source(folder, "old.log", b"x")
    os.utime(source.path, (0, 0))  # equipment with an unset clock writes 1970

    dest = apply_post_action(source, seen)

    assert dest is not None
    with zipfile.ZipFile(dest) as zf:
        assert zf.read("old.log") == b"x"


def test_delete_removes_the_file(tmp_path: Path, seen: SeenFiles) -> None:
    folder = WatchFolder(path=tmp_path / "in", post_action="delete")
    source = make_source(folder, "a.log", b"x")

    assert apply_post_action(source, seen) is None
    assert not source.path.exists()
    assert not (tmp_path / "in" / "done").exists()
    # Already gone is what delete wants: no error.
    assert apply_post_action(source, seen) is None


def test_none_leaves_the_file_and_records_it(tmp_path: Path, seen: SeenFiles) -> None:
    folder = WatchFolder(path=tmp_path / "in", post_action="none")
    source = make_source(folder, "a.log", b"x")

    assert apply_post_action(source, seen) is None

    assert source.path.read_bytes() == b"x"
    assert seen.contains(source.path, source.size, source.mtime_ns)
    assert not seen.contains(source.path, source.size + 1, source.mtime_ns)
    assert not seen.contains(source.path, source.size, source.mtime_ns + 1)
    # The record survives a restart.
    assert SeenFiles(tmp_path / "state").contains(source.path, source.size, source.mtime_ns)


def test_seen_files_drops_vanished_and_changed_files_on_load(tmp_path: Path) -> None:
    folder = WatchFolder(path=tmp_path / "in", post_action="none")
    kept = make_source(folder, "kept.log", b"k")
    gone = make_source(folder, "gone.log", b"g")
    changed = make_source(folder, "changed.log", b"c")
    seen = SeenFiles(tmp_path / "state")
    for s in (kept, gone, changed):
        seen.add(s.path, s.size, s.mtime_ns)
    gone.path.unlink()
    changed.path.write_bytes(b"changed and longer")
    record = tmp_path / "state" / "seen-files.log"
    with open(record, "a", encoding="utf-8") as fh:
        fh.write('["torn line after a power cut", 1')

    reloaded = SeenFiles(tmp_path / "state")

    assert len(reloaded) == 1
    assert reloaded.contains(kept.path, kept.size, kept.mtime_ns)
    assert not reloaded.contains(changed.path, changed.size, changed.mtime_ns)
    lines = record.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)[0] for line in lines] == [str(kept.path)]


def test_seen_files_add_is_thread_safe(tmp_path: Path) -> None:
    seen = SeenFiles(tmp_path / "state")
    paths = [tmp_path / f"f{n}.log" for n in range(200)]
    for p in paths:
        p.write_bytes(b"x")
    stats = {p: p.stat() for p in paths}

    def add(chunk: list[Path]) -> None:
        for p in chunk:
            seen.add(p, stats[p].st_size, stats[p].st_mtime_ns)

    threads = [threading.Thread(target=add, args=(paths[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    reloaded = SeenFiles(tmp_path / "state")
    assert len(reloaded) == 200
    assert all(reloaded.contains(p, stats[p].st_size, stats[p].st_mtime_ns) for p in paths)


def test_move_to_error_writes_a_note_an_operator_can_act_on(tmp_path: Path) -> None:
    folder = WatchFolder(path=tmp_path / "in", converter="TeradyneICTConverter")
    source = make_source(folder, "board.log", b"garbage")
    clock = FixedClock(1_700_000_000.0)
    reason = "line 3: expected a {@BATCH| record, found 'garbage'"

    dest = move_to_error(source, reason, clock=clock)

    assert dest == tmp_path / "in" / "error" / "board.log"
    assert dest.read_bytes() == b"garbage"
    assert not source.path.exists()
    note = (tmp_path / "in" / "error" / "board.log.error.txt").read_text(encoding="utf-8")
    assert reason in note
    assert str(source.path) in note
    assert datetime.fromtimestamp(clock.wall).astimezone().isoformat(timespec="seconds") in note
    assert "TeradyneICTConverter" in note
    assert f"move board.log back into\n    {folder.path}\n" in note


def test_move_to_error_never_overwrites(tmp_path: Path) -> None:
    folder = WatchFolder(path=tmp_path / "in", error_folder=tmp_path / "rejects")
    dests = []
    for n in range(3):
        source = make_source(folder, "uut.xml", f"<broken {n}".encode())
        dests.append(move_to_error(source, f"reason number {n}"))

    assert len(set(dests)) == 3
    for n, dest in enumerate(dests):
        assert dest.parent == tmp_path / "rejects"
        assert dest.read_bytes() == f"<broken {n}".encode()
        note = dest.with_name(dest.name + ".error.txt").read_text(encoding="utf-8")
        assert f"reason number {n}" in note
    assert len(list((tmp_path / "rejects").iterdir())) == 6


def test_failing_post_action_raises_oserror_naming_the_file(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_bytes(b"")
    for action in ("move", "archive"):
        folder = WatchFolder(path=tmp_path / "in", post_action=action, done_folder=blocker)
        source = make_source(folder, "a.log", b"x")

        with pytest.raises(OSError) as info:
            apply_post_action(source, SeenFiles(tmp_path / "state"))

        assert str(source.path) in str(info.value)
        assert str(blocker) in str(info.value)
        assert source.path.read_bytes() == b"x"  # the source is never lost


def test_failing_move_to_error_raises_oserror_naming_the_file(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_bytes(b"")
    folder = WatchFolder(path=tmp_path / "in", error_folder=blocker)
    source = make_source(folder, "a.log", b"x")

    with pytest.raises(OSError, match="error folder") as info:
        move_to_error(source, "bad")

    assert str(source.path) in str(info.value)
    assert source.path.exists()


def test_unknown_post_action_is_refused(tmp_path: Path, seen: SeenFiles) -> None:
    folder = WatchFolder(path=tmp_path / "in", post_action="shred")
    source = make_source(folder, "a.log", b"x")

    with pytest.raises(ValueError, match="shred"):
        apply_post_action(source, seen)
    assert source.path.exists()


def test_an_unmounted_folder_does_not_make_its_files_look_new(tmp_path: Path) -> None:
    share = tmp_path / "share"
    share.mkdir()
    files = [share / "a.json", share / "b.json"]
    seen = SeenFiles(tmp_path / "state")
    for path in files:
        path.write_text(path.name)
        st = path.stat()
        seen.add(path, st.st_size, st.st_mtime_ns)
    stash = tmp_path / "elsewhere"
    share.rename(stash)  # the share is unmounted while the service is down
    share.mkdir()  # an empty mount point stays behind
    again = SeenFiles(tmp_path / "state")
    assert len(again) == 2
    share.rmdir()
    stash.rename(share)  # mounted again
    for path in files:
        st = path.stat()
        assert SeenFiles(tmp_path / "state").contains(path, st.st_size, st.st_mtime_ns)


def test_a_file_deleted_from_a_folder_that_still_has_others_is_forgotten(tmp_path: Path) -> None:
    folder = tmp_path / "w"
    folder.mkdir()
    seen = SeenFiles(tmp_path / "state")
    for name in ("a", "b"):
        path = folder / name
        path.write_text(name)
        st = path.stat()
        seen.add(path, st.st_size, st.st_mtime_ns)
    (folder / "a").unlink()
    assert len(SeenFiles(tmp_path / "state")) == 1

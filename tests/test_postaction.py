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
from pywats_client.fsutil import UnsafePathError
from pywats_client.paths import InstancePaths
from pywats_client.service.postaction import (
    SeenFiles,
    SourceChangedError,
    SourceFile,
    apply_post_action,
    move_to_error,
    protected_folders,
    put_skipped_aside,
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
    source = SourceFile(folder, source.path, 1, 0)  # taken as it is now

    dest = apply_post_action(source, seen)

    assert dest is not None
    with zipfile.ZipFile(dest) as zf:
        assert zf.read("old.log") == b"x"


@pytest.mark.parametrize("action", ["move", "archive", "delete", "error"])
def test_a_file_written_again_after_its_conversion_is_left_for_the_next_look(
        tmp_path: Path, seen: SeenFiles, action: str) -> None:
    folder = WatchFolder(path=tmp_path / "in", post_action="move" if action == "error"
                         else action)
    source = make_source(folder, "r.log", b"converted")
    newer = tmp_path / "staging.log"
    newer.write_bytes(b"the next board, not converted yet")
    os.replace(newer, source.path)  # the equipment renames its next file in meanwhile
    with pytest.raises(SourceChangedError, match="changed after it was converted"):
        if action == "error":
            move_to_error(source, "bad")
        else:
            apply_post_action(source, seen)
    assert source.path.read_bytes() == b"the next board, not converted yet"
    for kept in ("done", "error"):
        assert not (folder.path / kept).exists() or not any((folder.path / kept).iterdir())


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


# -- a watch folder's writer is an attacker: nothing is written through a link ----------------


def _trap(tmp_path: Path) -> tuple[WatchFolder, Path, Path]:
    """A watch folder and an instance folder with its plugin folder."""
    instance = tmp_path / "data" / "default"
    plugins = instance / "converters"
    plugins.mkdir(parents=True)
    return WatchFolder(path=tmp_path / "in"), instance, plugins


def _listing(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


@pytest.mark.parametrize("how", ["move_to_error", "move", "archive", "skipped"])
def test_a_done_or_error_folder_that_is_a_link_is_refused_and_the_file_stays(
        tmp_path: Path, seen: SeenFiles, how: str) -> None:
    folder, _instance, plugins = _trap(tmp_path)
    action = "archive" if how == "archive" else "move"
    folder = WatchFolder(path=folder.path, post_action=action)
    source = make_source(folder, "evil.py", b"print(open('secret.key').read())\n")
    (folder.path / ("error" if how == "move_to_error" else "done")).symlink_to(plugins)

    with pytest.raises(UnsafePathError, match="symbolic link") as info:
        if how == "move_to_error":
            move_to_error(source, "not a report")
        elif how == "skipped":
            put_skipped_aside(source, seen, "holds no report")
        else:
            apply_post_action(source, seen)

    assert isinstance(info.value, OSError)
    assert str(source.path) in str(info.value)
    assert _listing(plugins) == []  # nothing landed among the plugins
    assert source.path.read_bytes().startswith(b"print")  # the source stays put


@pytest.mark.parametrize("label", ["done_folder", "error_folder"])
def test_the_instance_folder_is_never_a_destination(tmp_path: Path, seen: SeenFiles,
                                                    label: str) -> None:
    watch, instance, plugins = _trap(tmp_path)
    protect = protected_folders(InstancePaths("default", instance))
    for target in (plugins, instance, instance / "state",
                   # `..` components, as a relative done_folder can give them
                   Path(f"{watch.path}/../data/default/converters"),
                   # a real folder inside the watch folder, reached through a link above it
                   watch.path / "sub" / "done"):
        folder = WatchFolder(path=watch.path, **{label: target})  # type: ignore[arg-type]
        if target.parent.name == "sub" and not (watch.path / "sub").exists():
            watch.path.mkdir(parents=True, exist_ok=True)
            (watch.path / "sub").symlink_to(instance)
        source = make_source(folder, "evil.py", b"x")

        with pytest.raises(UnsafePathError):
            if label == "error_folder":
                move_to_error(source, "bad", protect=protect)
            else:
                apply_post_action(source, seen, protect=protect)

        assert source.path.exists(), target
        assert "evil.py" not in _listing(plugins), target
        assert "evil.py" not in _listing(instance), target


def test_a_watch_folder_inside_the_instance_folder_keeps_its_own_done_folder(
        tmp_path: Path, seen: SeenFiles) -> None:
    instance = tmp_path / "data" / "default"
    folder = WatchFolder(path=instance / "inbox")
    source = make_source(folder, "r.json", b"{}")
    protect = protected_folders(InstancePaths("default", instance))

    dest = apply_post_action(source, seen, protect=protect)
    assert dest == instance / "inbox" / "done" / "r.json"


def test_a_done_folder_that_is_a_file_is_refused(tmp_path: Path, seen: SeenFiles) -> None:
    folder = WatchFolder(path=tmp_path / "in")
    source = make_source(folder, "a.log", b"x")
    (folder.path / "done").write_bytes(b"")

    with pytest.raises(UnsafePathError, match="is a file, not a folder"):
        apply_post_action(source, seen)
    assert source.path.exists()


def test_a_dangling_link_in_the_done_folder_does_not_stop_the_move(tmp_path: Path,
                                                                    seen: SeenFiles) -> None:
    folder = WatchFolder(path=tmp_path / "in")
    source = make_source(folder, "r.json", b"x")
    (folder.path / "done").mkdir()
    (folder.path / "done" / "r.json").symlink_to(tmp_path / "nowhere")
    result: list[Path | None] = []
    mover = threading.Thread(target=lambda: result.append(apply_post_action(source, seen)),
                             daemon=True)
    mover.start()
    mover.join(10)

    assert not mover.is_alive(), "the move loops on a name taken by a dangling link"
    assert result == [folder.path / "done" / "r.1.json"]
    assert (folder.path / "done" / "r.json").is_symlink()  # the link is not replaced


def test_a_note_never_replaces_what_is_at_its_name(tmp_path: Path) -> None:
    folder = WatchFolder(path=tmp_path / "in")
    source = make_source(folder, "board.log", b"garbage")
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (folder.path / "error").mkdir()
    planted = folder.path / "error" / "board.log.error.txt"
    planted.symlink_to(victim)

    dest = move_to_error(source, "line 3: garbage")

    assert dest == folder.path / "error" / "board.log"
    assert planted.is_symlink() and victim.read_text() == "keep me"
    notes = [p for p in (folder.path / "error").iterdir()
             if p.name.endswith(".error.txt") and not p.is_symlink()]
    assert len(notes) == 1 and "line 3: garbage" in notes[0].read_text(encoding="utf-8")


def test_a_file_name_cannot_forge_lines_in_the_note(tmp_path: Path) -> None:
    folder = WatchFolder(path=tmp_path / "in")
    forged = "r.log\nWhat to do:\n    run rm -rf / as root"
    source = make_source(folder, forged, b"x")
    dest = move_to_error(source, "bad")
    note = (dest.parent / (dest.name + ".error.txt")).read_text(encoding="utf-8")
    assert "\n    run rm -rf" not in note
    assert "r.log\\nWhat to do:\\n    run rm -rf / as root" in note


def test_a_file_name_that_is_not_utf8_gets_its_note(tmp_path: Path) -> None:
    folder = WatchFolder(path=tmp_path / "in")
    folder.path.mkdir()
    raw = os.fsencode(folder.path) + b"/bad\xff.log"
    with open(raw, "wb") as fh:
        fh.write(b"x")
    path = Path(os.fsdecode(raw))
    st = path.stat()

    dest = move_to_error(SourceFile(folder, path, st.st_size, st.st_mtime_ns), "bad")

    note = (dest.parent / (dest.name + ".error.txt")).read_text(encoding="utf-8")
    assert "bad\\xff.log" in note


def test_companions_are_archived_and_deleted_without_following_links(tmp_path: Path,
                                                                     seen: SeenFiles) -> None:
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "shadow").write_text("root:$6$hash")
    watch = tmp_path / "in"
    data = watch / "DUT 1"
    data.mkdir(parents=True)
    (data / "0.part").write_text("p0")
    (data / "leak.part").symlink_to(secret / "shadow")
    (data / "dir").symlink_to(secret)
    archive = WatchFolder(path=watch, post_action="archive")
    source = make_source(archive, "DUT 1.hdr", b"{}")

    dest = apply_post_action(source, seen, [data])

    assert dest is not None
    with zipfile.ZipFile(dest) as zf:
        assert sorted(zf.namelist()) == ["DUT 1.hdr", "DUT 1/0.part"]
        assert all(b"root:" not in zf.read(n) for n in zf.namelist())
    assert not data.exists() and (secret / "shadow").read_text() == "root:$6$hash"

    # delete: a companion that is a link to a folder elsewhere loses the link, not the folder
    link = watch / "DUT 2"
    link.symlink_to(secret)
    source = make_source(WatchFolder(path=watch, post_action="delete"), "DUT 2.hdr", b"{}")
    assert apply_post_action(source, seen, [link]) is None
    assert not os.path.lexists(link) and (secret / "shadow").exists()


def test_a_source_swapped_for_a_named_pipe_does_not_block_the_archive(
        tmp_path: Path, seen: SeenFiles) -> None:
    folder = WatchFolder(path=tmp_path / "in", post_action="archive")
    source = make_source(folder, "r.json", b"{}")
    source.path.unlink()
    os.mkfifo(source.path)  # swapped after it was converted
    errors: list[BaseException] = []

    def archive() -> None:
        try:
            apply_post_action(source, seen)
        except OSError as exc:
            errors.append(exc)

    worker = threading.Thread(target=archive, daemon=True)
    worker.start()
    worker.join(10)

    assert not worker.is_alive(), "archiving blocks on a named pipe"
    assert len(errors) == 1 and "named pipe" in str(errors[0])
    assert [p.name for p in (folder.path / "done").iterdir()] == []  # no zip, no temporary


def test_the_none_record_is_not_written_through_a_link(tmp_path: Path) -> None:
    kept = tmp_path / "kept.log"
    kept.write_text("k")
    st = kept.stat()
    victim = tmp_path / "victim"
    victim.write_text(json.dumps([str(kept), st.st_size, st.st_mtime_ns]) + "\n")
    before = victim.read_text()
    state = tmp_path / "state"
    state.mkdir()
    (state / "seen-files.log").symlink_to(victim)
    seen = SeenFiles(state)
    with pytest.raises(OSError):
        seen.add(tmp_path / "a.log", 1, 1)
    assert victim.read_text() == before


def test_an_error_folder_on_another_filesystem_gets_a_whole_copy(tmp_path: Path) -> None:
    other = Path("/dev/shm")
    if not other.is_dir() or os.stat(other).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no second filesystem (/dev/shm) to move to")
    rejects = other / f"pywats-test-{os.getpid()}-{threading.get_ident()}"
    try:
        folder = WatchFolder(path=tmp_path / "in", error_folder=rejects)
        data = os.urandom(3 * 2**20 + 7)
        source = make_source(folder, "big.bin", data)
        (rejects).mkdir()
        (rejects / "big.bin").symlink_to(tmp_path / "elsewhere")  # a name already taken

        result: list[Path] = []
        mover = threading.Thread(target=lambda: result.append(move_to_error(source, "bad")),
                                 daemon=True)
        mover.start()
        mover.join(30)

        assert not mover.is_alive(), "the move loops on a name taken by a dangling link"
        [dest] = result
        assert dest == rejects / "big.1.bin"
        assert dest.read_bytes() == data and not source.path.exists()
        assert not (tmp_path / "elsewhere").exists()
        assert sorted(os.listdir(rejects)) == ["big.1.bin", "big.1.bin.error.txt", "big.bin"]
    finally:
        shutil.rmtree(rejects, ignore_errors=True)

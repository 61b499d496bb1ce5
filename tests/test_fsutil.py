"""Filesystem primitives: group-committed folder fsync, collision-free moves."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest

import pywats_client.fsutil as fsutil
from pywats_client.fsutil import FolderSyncer, move_no_clobber
from tests.station import wait_until


def test_concurrent_callers_share_fsyncs_and_all_return(tmp_path: Path, monkeypatch) -> None:
    release = threading.Event()
    started = threading.Event()
    real = fsutil.fsync_dir

    def slow_fsync(path: Path) -> None:
        started.set()
        release.wait(10)  # hold the first fsync until every caller is waiting
        real(path)

    monkeypatch.setattr(fsutil, "fsync_dir", slow_fsync)
    syncer = FolderSyncer(tmp_path)
    done: list[int] = []
    threads = [threading.Thread(target=lambda n=n: (syncer.sync(), done.append(n)))
               for n in range(20)]
    threads[0].start()
    assert started.wait(10)
    for t in threads[1:]:
        t.start()
    # Let go only once every caller holds a ticket: one that came later would need an fsync
    # of its own.
    wait_until(lambda: syncer._issued == 20, 10, "every caller to wait")
    release.set()
    for t in threads:
        t.join(10)
    assert sorted(done) == list(range(20))
    # the first caller's fsync, then at most one more for everyone who queued behind it
    assert syncer.fsyncs <= 2


def test_a_failed_fsync_fails_every_caller_it_covered(tmp_path: Path, monkeypatch) -> None:
    def broken(path: Path) -> None:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(fsutil, "fsync_dir", broken)
    syncer = FolderSyncer(tmp_path)
    with pytest.raises(OSError, match="I/O error"):
        syncer.sync()
    monkeypatch.setattr(fsutil, "fsync_dir", lambda path: None)
    syncer.sync()  # a later rename gets a fresh fsync, not the old failure


def test_an_interrupted_move_is_finished_not_repeated(tmp_path: Path) -> None:
    src = tmp_path / "r.json"
    src.write_text("x")
    done = tmp_path / "done"
    done.mkdir()
    os.link(src, done / "r.json")  # the crash came between link() and unlink()
    assert move_no_clobber(src, done) == done / "r.json"
    assert not src.exists() and sorted(os.listdir(done)) == ["r.json"]


def test_names_never_collide(tmp_path: Path) -> None:
    done = tmp_path / "done"
    for n in range(3):
        src = tmp_path / "r.json"
        src.write_text(str(n))
        move_no_clobber(src, done)
    assert sorted(os.listdir(done)) == ["r.1.json", "r.2.json", "r.json"]
    assert (done / "r.json").read_text() == "0" and (done / "r.2.json").read_text() == "2"


def test_a_move_creates_the_folder_and_a_vanished_source_is_named(tmp_path: Path) -> None:
    src = tmp_path / "r.json"
    src.write_text("x")
    done = tmp_path / "a" / "done"
    assert move_no_clobber(src, done) == done / "r.json"
    with pytest.raises(FileNotFoundError):
        move_no_clobber(src, done)  # gone now: no folder is made up, no loop
    assert sorted(os.listdir(done)) == ["r.json"]


@pytest.mark.parametrize("size", [0, 1, 65535, 65536, 65537, 3 * 2**20 + 5])
def test_read_file_returns_every_byte(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    (tmp_path / "f").write_bytes(data)
    assert fsutil.read_file(tmp_path / "f") == data


def test_read_file_reads_to_the_end_of_a_file_that_grew_after_it_was_sized(
        tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"a" * 100)
    real_fstat = os.fstat

    def fstat_then_append(fd: int) -> os.stat_result:
        st = real_fstat(fd)
        with open(path, "ab") as more:  # a writer appends between the size and the read
            more.write(b"b" * 70000)
        return st

    monkeypatch.setattr(fsutil.os, "fstat", fstat_then_append)
    assert fsutil.read_file(path) == b"a" * 100 + b"b" * 70000


def test_moves_racing_to_create_the_folder_all_succeed(tmp_path: Path) -> None:
    # Conversion threads move their sources into a done/ folder that the first of them makes.
    done = tmp_path / "done"
    sources = []
    for n in range(16):
        src = tmp_path / f"r{n}.json"
        src.write_text(str(n))
        sources.append(src)
    for _round in range(20):  # the race is narrow: give it many chances
        start = threading.Barrier(len(sources))
        errors: list[BaseException] = []

        def move(src: Path, start: threading.Barrier = start,
                 errors: list[BaseException] = errors) -> None:
            start.wait(10)
            try:
                move_no_clobber(src, done)
            except BaseException as exc:  # reported below, with the file
                errors.append(exc)

        threads = [threading.Thread(target=move, args=(src,)) for src in sources]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert errors == []
        assert sorted(os.listdir(done)) == sorted(src.name for src in sources)
        for src in sources:  # back for the next round, with the folder gone again
            os.rename(done / src.name, src)
        done.rmdir()


# -- folders others can write ----------------------------------------------------------------------


def test_open_dir_never_follows_a_link_below_its_base(tmp_path: Path) -> None:
    base = tmp_path / "watch"
    (base / "real" / "done").mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (base / "link").symlink_to(elsewhere)
    fd = fsutil.open_dir(base / "real" / "done", base=base)
    os.close(fd)
    for target in (base / "link" / "done", base / "link"):
        with pytest.raises(fsutil.UnsafePathError, match="is a symbolic link"):
            fsutil.open_dir(target, base=base, create=True)
    assert os.listdir(elsewhere) == []  # nothing was made through the link
    # Above the base (configuration) links are followed: a watch folder may be a link.
    (tmp_path / "watch-link").symlink_to(base)
    os.close(fsutil.open_dir(tmp_path / "watch-link" / "done", base=tmp_path / "watch-link",
                             create=True))
    assert (base / "done").is_dir()


def test_refuse_inside_sees_through_links_and_dot_dot(tmp_path: Path) -> None:
    instance = tmp_path / "data" / "default"
    (instance / "converters").mkdir(parents=True)
    (tmp_path / "via").symlink_to(instance)
    for path in (instance / "converters", tmp_path / "via" / "converters",
                 tmp_path / "data" / ".." / "data" / "default"):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            with pytest.raises(fsutil.UnsafePathError, match="lies inside"):
                fsutil.refuse_inside(fd, path, [instance])
        finally:
            os.close(fd)
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fsutil.refuse_inside(fd, tmp_path, [instance])  # above it: fine
    finally:
        os.close(fd)


def test_protected_folders_known_by_identity_are_looked_up_again_after_their_age(
        tmp_path: Path) -> None:
    instance = tmp_path / "instance"
    instance.mkdir()
    cached, fresh = fsutil.FolderIds([instance], max_age=3600), fsutil.FolderIds([instance], 0)
    assert cached.get() == fresh.get() != {}
    # The folder removed and made again: another inode (the old one is kept busy, so that
    # the filesystem cannot hand its number out again at once).
    keep = tmp_path / "old"
    instance.rename(keep)
    instance.mkdir()
    (instance / "converters").mkdir()
    fd = os.open(instance / "converters", os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(fsutil.UnsafePathError, match="lies inside"):
            fsutil.refuse_inside(fd, instance / "converters", fresh)
        # Until its age is up, the identity taken before is what is checked.
        fsutil.refuse_inside(fd, instance / "converters", cached)
        assert set(cached.get().values()) == {instance}
    finally:
        os.close(fd)


def test_open_dir_makes_a_missing_base_folder_when_asked(tmp_path: Path) -> None:
    base = tmp_path / "gone" / "watch"
    with pytest.raises(FileNotFoundError):
        fsutil.open_dir(base / "done", base=base)
    os.close(fsutil.open_dir(base / "done", base=base, create=True))
    assert (base / "done").is_dir()

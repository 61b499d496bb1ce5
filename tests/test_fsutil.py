"""Filesystem primitives: group-committed folder fsync, collision-free moves."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest

import pywats_client.fsutil as fsutil
from pywats_client.fsutil import FolderSyncer, move_no_clobber


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

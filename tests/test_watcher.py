"""The folder watcher: what writers did (closed, renamed in, still open), the settle rule,
files waiting to be completed, rescans, in-flight bookkeeping and the real observers."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pywats_client.clock import Clock
from pywats_client.config.settings import WatchFolder
from pywats_client.errors import ConfigError
from pywats_client.service import linuxfs
from pywats_client.service import watcher as watcher_module
from pywats_client.service.postaction import SeenFiles, apply_post_action
from pywats_client.service.watcher import FolderWatcher, Hint, SourceFile
from tests.fakes import FakeClock
from tests.station import wait_until

MakeWatcher = Callable[..., FolderWatcher]

SETTLE = 1.0
RESCAN = 3600.0  # long: a test that wants a rescan advances the clock past it
EVENT_TIMEOUT = 10.0  # generous upper bound for an observer to report; normally milliseconds


def write(path: Path, data: bytes = b"data", *, age: float | None = None) -> Path:
    """Write `path`; with `age`, backdate its mtime by that many seconds (a file left earlier)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if age is not None:
        then = time.time() - age
        os.utime(path, (then, then))
    return path


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as fh:
        fh.write(data)


def stamp(path: Path, clock: FakeClock) -> None:
    """Give `path` the fake wall time as mtime: written "now" after the clock was advanced."""
    os.utime(path, (clock.now, clock.now))


def names(sources: list[SourceFile]) -> list[str]:
    return sorted(s.path.name for s in sources)


@pytest.fixture
def no_leaked_threads() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    leaked = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    assert leaked == []


@pytest.fixture
def make_watcher(
    tmp_path: Path, no_leaked_threads: None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., FolderWatcher]]:
    made: list[FolderWatcher] = []

    def make(folders: list[WatchFolder], *, clock: Clock, start: bool = True,
             trusted: bool = False, **kwargs: Any) -> FolderWatcher:
        """`trusted`: the folders are on a local disk, where the writers' events count; by
        default they are taken for a share, where only the settle rule does (and a test can
        time its hints exactly)."""
        if not trusted:
            monkeypatch.setattr(watcher_module, "filesystem_type", lambda path: "nfs4")
        options: dict[str, Any] = {
            "settle_time": SETTLE, "rescan_interval": RESCAN, "state_dir": tmp_path / "state",
            "polling_interval": 0.05,
        }
        options.update(kwargs)
        watcher = FolderWatcher(folders, clock=clock, **options)
        made.append(watcher)
        if start:
            watcher.start()
        return watcher

    yield make
    for watcher in made:
        watcher.stop()


@pytest.fixture
def clock() -> FakeClock:
    # Wall time starts at the real time, so files written now are young, not old.
    return FakeClock(start=time.time())


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    return tmp_path / "in"


def test_start_creates_missing_watch_folder(
    make_watcher: MakeWatcher, clock: FakeClock, inbox: Path
) -> None:
    assert not inbox.exists()
    make_watcher([WatchFolder(path=inbox)], clock=clock)
    assert inbox.is_dir()


def test_new_file_is_returned_after_settling(
    make_watcher: MakeWatcher, clock: FakeClock, inbox: Path
) -> None:
    watcher = make_watcher([WatchFolder(path=inbox)], clock=clock)
    f = write(inbox / "uut.csv", b"1,2,3")

    ready, wait = watcher.poll()
    assert ready == []
    assert wait == pytest.approx(SETTLE)
    assert watcher.pending_count() == 1

    clock.advance(SETTLE - 0.01)
    assert watcher.poll()[0] == []

    clock.advance(0.01)
    ready, wait = watcher.poll()
    assert [(s.path, s.size) for s in ready] == [(f, 5)]
    assert ready[0].mtime_ns == f.stat().st_mtime_ns
    assert wait == pytest.approx(RESCAN - SETTLE)
    assert watcher.pending_count() == 0


def test_growing_file_is_not_returned_until_stable(
    make_watcher: MakeWatcher, clock: FakeClock, inbox: Path
) -> None:
    watcher = make_watcher([WatchFolder(path=inbox)], clock=clock)
    f = write(inbox / "uut.csv", b"header\n")
    assert watcher.poll()[0] == []

    clock.advance(0.6)
    append(f, b"row 1\n")
    watcher.hint(f)  # what the observer does; sent explicitly so the timing is exact
    assert watcher.poll()[0] == []

    clock.advance(0.4)  # SETTLE after the first write, but only 0.4 s after the last change
    assert watcher.poll()[0] == []
    clock.advance(0.59)
    assert watcher.poll()[0] == []

    clock.advance(0.01)
    ready, _ = watcher.poll()
    assert [s.size for s in ready] == [len(b"header\nrow 1\n")]


def test_change_found_at_the_deadline_restarts_the_settle_time(
    make_watcher: MakeWatcher, clock: FakeClock, inbox: Path
) -> None:
    watcher = make_watcher([WatchFolder(path=inbox)], clock=clock, start=False)
    f = write(inbox / "uut.csv", b"a")
    assert watcher.poll()[0] == []
    append(f, b"b")  # no hint (no observer started): only the stat at the deadline sees it

    clock.advance(SETTLE)
    ready, wait = watcher.poll()
    assert ready == []
    assert wait == pytest.approx(SETTLE)

    clock.advance(SETTLE)
    assert [s.size for s in watcher.poll()[0]] == [2]


def test_old_file_found_at_start_is_returned_by_first_poll(
    make_watcher: MakeWatcher, clock: FakeClock, inbox: Path
) -> None:
    write(inbox / "left-while-down.csv", age=3600)
    write(inbox / "also-old.csv", age=60)
    watcher = make_watcher([WatchFolder(path=inbox)], clock=clock)

    ready, _ = watcher.poll()

    assert names(ready) == ["also-old.csv", "left-while-down.csv"]
    assert [s.path.name for s in ready] == ["left-while-down.csv", "also-old.csv"]  # oldest first


def test_in_flight_file_is_not_returned_twice(
    make_watcher: MakeWatcher, clock: FakeClock, inbox: Path
) -> None:
    f = write(inbox / "a.csv", age=60)
    watcher = make_watcher([WatchFolder(path=inbox)], clock=clock)
    assert len(watcher.poll()[0]) == 1

    watcher.hint(f)
    append(f, b"more")  # even a change does not hand it out while it is being converted
    watcher.hint(f)
    clock.advance(RESCAN)  # and neither does the full rescan
    assert watcher.poll()[0] == []
    clock.advance(SETTLE * 5)
    assert watcher.poll()[0] == []
    assert watcher.pending_count() == 0


def test_done_file_moved_away_and_a_new_one_of_the_same_name_is_taken(
    make_watcher: MakeWatcher, clock: FakeClock, inbox: Path
) -> None:
    write(inbox / "a.csv", b"first", age=60)
    watcher = make_watcher([WatchFolder(path=inbox)], clock=clock)
    (source,) = watcher.poll()[0]
    apply_post_action(source, watcher.seen)
    watcher.done(source)

    f = write(inbox / "a.csv", b"second")
    watcher.hint(f)
    assert watcher.poll()[0] == []
    clock.advance(SETTLE)
    ready, _ = watcher.poll()
    assert [(s.path, s.size) for s in ready] == [(f, 6)]


def test_done_file_left_in_place_is_not_taken_again_until_it_changes(
    make_watcher: MakeWatcher, clock: FakeClock, inbox: Path
) -> None:
    f = write(inbox / "a.csv", age=60)
    watcher = make_watcher([WatchFolder(path=inbox)], clock=clock)
    (source,) = watcher.poll()[0]
    watcher.done(source)  # e.g. the move to done/ failed: the file is still there

    clock.advance(RESCAN)
    assert watcher.poll()[0] == []

    append(f, b" and more")
    stamp(f, clock)
    watcher.hint(f)
    assert watcher.poll()[0] == []  # a new file now: it must settle
    clock.advance(SETTLE)
    assert [s.path for s in watcher.poll()[0]] == [f]


def test_a_file_left_in_place_and_changed_unseen_is_found_by_the_rescan(
    make_watcher: MakeWatcher, clock: FakeClock, inbox: Path
) -> None:
    """On a share another machine's write comes with no event: the rescan notices it."""
    f = write(inbox / "a.csv", age=60)
    watcher = make_watcher([WatchFolder(path=inbox)], clock=clock, start=False)  # no events
    (source,) = watcher.poll()[0]
    watcher.done(source)  # the move to done/ failed: the file is still there
    clock.advance(RESCAN)
    assert watcher.poll()[0] == []

    clock.advance(RESCAN)
    append(f, b" and more")
    stamp(f, clock)
    assert watcher.poll()[0] == []  # found: a new file now, it must settle
    clock.advance(SETTLE)
    assert [(s.path, s.size) for s in watcher.poll()[0]] == [(f, f.stat().st_size)]


def test_retry_later_waits_for_the_delay(
    make_watcher: MakeWatcher, clock: FakeClock, inbox: Path
) -> None:
    wakes: list[int] = []
    write(inbox / "a.csv", age=60)
    watcher = make_watcher([WatchFolder(path=inbox)], clock=clock,
                           wake=lambda: wakes.append(1))
    (source,) = watcher.poll()[0]

    watcher.retry_later(source, delay=5.0)

    assert wakes  # the main loop is told about the new deadline
    assert watcher.pending_count() == 1
    ready, wait = watcher.poll()
    assert ready == []
    assert wait == pytest.approx(5.0)
    clock.advance(4.9)
    assert watcher.poll()[0] == []
    clock.advance(0.1)
    assert [s.path for s in watcher.poll()[0]] == [source.path]


def test_retry_later_default_delay_is_the_settle_time(
    make_watcher: MakeWatcher, clock: FakeClock, inbox: Path
) -> None:
    write(inbox / "a.csv", age=60)
    watcher = make_watcher([WatchFolder(path=inbox)], clock=clock)
    (source,) = watcher.poll()[0]

    watcher.retry_later(source)
    # The fast path for old files does not apply: it must settle again.
    ready, wait = watcher.poll()
    assert ready == [] and wait == pytest.approx(SETTLE)
    clock.advance(SETTLE)
    assert len(watcher.poll()[0]) == 1


def test_retry_later_requires_the_file_to_settle_again(
    make_watcher: MakeWatcher, clock: FakeClock, inbox: Path
) -> None:
    f = write(inbox / "a.csv", b"part", age=60)
    watcher = make_watcher([WatchFolder(path=inbox)], clock=clock)
    (source,) = watcher.poll()[0]
    watcher.retry_later(source, delay=2.0)
    assert watcher.poll()[0] == []

    clock.advance(1.5)
    append(f, b" complete")
    watcher.hint(f)
    assert watcher.poll()[0] == []
    clock.advance(0.5)  # the delay has passed, but the file changed 0.5 s ago
    assert watcher.poll()[0] == []
    clock.advance(0.5)
    assert [s.size for s in watcher.poll()[0]] == [len(b"part complete")]


def test_post_action_none_file_is_never_taken_again_not_even_after_restart(
    make_watcher: MakeWatcher, clock: FakeClock, inbox: Path
) -> None:
    folder = WatchFolder(path=inbox, post_action="none")
    f = write(inbox / "a.csv", age=60)
    first = make_watcher([folder], clock=clock)
    (source,) = first.poll()[0]
    assert apply_post_action(source, first.seen) is None
    first.done(source)
    clock.advance(RESCAN)
    assert first.poll()[0] == []
    assert f.exists()
    first.stop()

    restarted = make_watcher([folder], clock=clock)
    assert restarted.poll()[0] == []
    assert restarted.pending_count() == 0

    append(f, b" rewritten")
    stamp(f, clock)
    restarted.hint(f)
    assert restarted.poll()[0] == []
    clock.advance(SETTLE)
    assert [s.size for s in restarted.poll()[0]] == [len(b"data rewritten")]


def test_post_action_none_with_a_seen_record_shared_with_the_caller(
    make_watcher: MakeWatcher, clock: FakeClock, tmp_path: Path, inbox: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen = SeenFiles(tmp_path / "state")
    write(inbox / "a.csv", age=60)
    watcher = make_watcher([WatchFolder(path=inbox, post_action="none")], clock=clock,
                           seen=seen)
    assert watcher.seen is seen
    (source,) = watcher.poll()[0]
    apply_post_action(source, seen)

    with caplog.at_level(logging.WARNING, logger="pywats_client.service.watcher"):
        watcher.done(source)
    clock.advance(RESCAN)
    assert watcher.poll()[0] == []
    assert caplog.records == []


def test_ignored_names_are_never_returned(
    make_watcher: MakeWatcher, clock: FakeClock, inbox: Path
) -> None:
    wakes: list[int] = []
    folder = WatchFolder(path=inbox, file_patterns=("*.csv", "*.TXT"))
    ignored = [".hidden.csv", "run.csv.tmp", "RUN.TMP", "x.csv.part", "y.partial",
               "z.crdownload", "uut.csv.error.txt", "~lock.csv", "notes.xml"]
    wanted = ["good.csv", "GOOD2.CSV", "log.txt"]
    for name in ignored + wanted:
        write(inbox / name, age=60)
    (inbox / "subdir.csv").mkdir()
    write(inbox / "nested" / "deep.csv", age=60)  # non-recursive
    watcher = make_watcher([folder], clock=clock, wake=lambda: wakes.append(1))

    assert names(watcher.poll()[0]) == sorted(wanted)

    wakes.clear()
    for name in ignored:
        watcher.hint(inbox / name)
    watcher.hint(inbox / "nested" / "deep.csv")
    assert wakes == []
    clock.advance(RESCAN)
    assert watcher.poll()[0] == []
    assert watcher.pending_count() == 0


def test_done_and_error_folders_are_ignored(
    make_watcher: MakeWatcher, clock: FakeClock, tmp_path: Path, inbox: Path
) -> None:
    folder = WatchFolder(path=inbox, done_folder=inbox / "archive" / "ok")
    shared_errors = tmp_path / "errors"
    other = WatchFolder(path=tmp_path / "other", error_folder=shared_errors)
    # A watch folder that is another folder's error folder is not watched at all.
    errors_as_watch_folder = WatchFolder(path=shared_errors)
    for p in (inbox / "done" / "a.csv", inbox / "error" / "b.csv",
              inbox / "archive" / "ok" / "c.csv", shared_errors / "d.csv"):
        write(p, age=60)
    write(inbox / "new.csv", age=60)
    wakes: list[int] = []
    watcher = make_watcher([folder, other, errors_as_watch_folder], clock=clock,
                           wake=lambda: wakes.append(1))

    assert names(watcher.poll()[0]) == ["new.csv"]
    wakes.clear()
    watcher.hint(inbox / "archive" / "ok" / "c.csv")
    watcher.hint(shared_errors / "d.csv")
    assert wakes == []
    clock.advance(RESCAN)
    assert watcher.poll()[0] == []


def test_the_rescan_finds_files_without_any_event(
    make_watcher: MakeWatcher, clock: FakeClock, inbox: Path
) -> None:
    watcher = make_watcher([WatchFolder(path=inbox)], clock=clock, start=False)
    inbox.mkdir()
    ready, wait = watcher.poll()
    assert ready == [] and wait == pytest.approx(RESCAN)
    write(inbox / "missed-event.csv", age=60)

    clock.advance(RESCAN - 1)
    assert watcher.poll()[0] == []
    clock.advance(1)
    assert names(watcher.poll()[0]) == ["missed-event.csv"]


def test_poll_limit_keeps_the_rest_ready(
    make_watcher: MakeWatcher, clock: FakeClock, inbox: Path
) -> None:
    for n in range(3):
        write(inbox / f"{n}.csv", age=60 - n)
    watcher = make_watcher([WatchFolder(path=inbox)], clock=clock)

    ready, wait = watcher.poll(limit=2)
    assert names(ready) == ["0.csv", "1.csv"]
    assert wait == 0.0
    assert names(watcher.poll(limit=2)[0]) == ["2.csv"]


def test_the_same_folder_twice_is_a_config_error(
    tmp_path: Path, clock: FakeClock, inbox: Path
) -> None:
    with pytest.raises(ConfigError, match="twice"):
        FolderWatcher([WatchFolder(path=inbox), WatchFolder(path=inbox / ".." / "in")],
                      settle_time=SETTLE, rescan_interval=RESCAN, state_dir=tmp_path / "s",
                      clock=clock)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read any file")
def test_unreadable_file_is_not_taken(
    make_watcher: MakeWatcher, clock: FakeClock, inbox: Path
) -> None:
    f = write(inbox / "locked.csv", age=60)
    f.chmod(0)
    watcher = make_watcher([WatchFolder(path=inbox)], clock=clock)
    assert watcher.poll()[0] == []
    f.chmod(0o644)
    clock.advance(SETTLE)
    assert names(watcher.poll()[0]) == ["locked.csv"]


# -- real observers ----------------------------------------------------------------------------


def test_polling_observer_notices_a_new_file_which_then_settles(
    make_watcher: MakeWatcher, clock: FakeClock, inbox: Path
) -> None:
    event = threading.Event()
    watcher = make_watcher([WatchFolder(path=inbox, polling=True)], clock=clock,
                           wake=event.set)
    assert watcher.poll()[0] == []  # the start-up scan; the next rescan is an hour away
    event.clear()

    f = write(inbox / "from-tester.csv", b"1,2")

    assert event.wait(EVENT_TIMEOUT), "the observer did not report the new file"
    assert watcher.poll()[0] == []  # no event to trust: it must settle
    assert watcher.pending_count() == 1
    clock.advance(SETTLE)
    assert [s.path for s in watcher.poll()[0]] == [f]


@pytest.mark.parametrize(("polling", "inotify"), [(False, True), (False, False), (True, False)],
                         ids=["native", "native-watchdog", "polling"])
def test_observer_notices_a_file_moved_in(
    make_watcher: MakeWatcher, clock: FakeClock, tmp_path: Path, inbox: Path, polling: bool,
    inotify: bool, monkeypatch: pytest.MonkeyPatch,
) -> None:
    if not inotify:  # as off Linux: watchdog's own observer watches the native folder
        monkeypatch.setattr(linuxfs, "available", lambda: False)
    event = threading.Event()
    watcher = make_watcher([WatchFolder(path=inbox, polling=polling)], clock=clock,
                           wake=event.set)
    watcher.poll()
    outside = write(tmp_path / "staging" / "finished.csv", age=60)
    event.clear()

    os.rename(outside, inbox / "finished.csv")

    assert event.wait(EVENT_TIMEOUT), "the observer did not report the moved-in file"
    # Written a minute ago elsewhere: complete already, taken at once.
    assert names(watcher.poll()[0]) == ["finished.csv"]


def test_observer_threads_are_stopped(tmp_path: Path, clock: FakeClock) -> None:
    before = set(threading.enumerate())
    watcher = FolderWatcher(
        [WatchFolder(path=tmp_path / "native"), WatchFolder(path=tmp_path / "polled",
                                                            polling=True)],
        settle_time=SETTLE, rescan_interval=RESCAN, state_dir=tmp_path / "state",
        clock=clock, polling_interval=0.05)
    try:
        watcher.start()
        assert len(set(threading.enumerate()) - before) >= 2
    finally:
        watcher.stop()
    assert [t for t in threading.enumerate() if t not in before] == []
    watcher.stop()  # idempotent


# -- what the writer did (native folders on Linux) ---------------------------------------------
# The fake clock never moves in these tests unless they say so: a file taken without it moving
# was taken on its writer's event, not after the settle time.

native_only = pytest.mark.skipif(not linuxfs.available(), reason="inotify is Linux only")


@pytest.fixture
def watcher(make_watcher: MakeWatcher, clock: FakeClock, inbox: Path) -> FolderWatcher:
    """A watcher of `inbox` on inotify events (a trusted local folder), watching already."""
    watcher = make_watcher([WatchFolder(path=inbox)], clock=clock, trusted=True)
    watcher.poll()
    return watcher


def first_line_taken(watcher: FolderWatcher, inbox: Path) -> tuple[Path, SourceFile]:
    """A log file written with its first line, and the watcher's hand-over of that version."""
    f = write(inbox / "slow.csv", b"line 1\n")
    (source,) = taken_until(watcher, bool, "the first version")
    return f, source


def taken_until(watcher: FolderWatcher, done: Callable[[list[SourceFile]], bool],
                what: str) -> list[SourceFile]:
    """Poll until `done(everything taken so far)`; the files taken."""
    taken: list[SourceFile] = []

    def look() -> bool:
        taken.extend(watcher.poll()[0])
        return done(taken)

    wait_until(look, EVENT_TIMEOUT, what)
    return taken


def taken_when_seen(watcher: FolderWatcher, inbox: Path) -> list[SourceFile]:
    """What is taken until the events of everything done so far have been seen: a marker file
    written now comes back once its close is seen, and inotify keeps the order of events."""
    marker = write(inbox / f"marker-{uuid.uuid4().hex}.csv", b"m")
    taken = taken_until(watcher, lambda got: any(s.path == marker for s in got),
                        "the marker file's close event")
    return [s for s in taken if s.path != marker]


@native_only
def test_a_file_written_in_place_is_taken_when_its_writer_closes_it(
    watcher: FolderWatcher, clock: FakeClock, inbox: Path
) -> None:
    f = inbox / "uut.csv"
    with open(f, "wb") as fh:
        fh.write(b"header\n")
        fh.flush()
        assert taken_when_seen(watcher, inbox) == []
        clock.advance(SETTLE * 3)  # quiet for longer than the settle time, but still open
        assert watcher.poll()[0] == []
        fh.write(b"row 1\n")

    taken = taken_until(watcher, bool, "the file to be taken on its close")
    assert [(s.path, s.size) for s in taken] == [(f, len(b"header\nrow 1\n"))]


@native_only
@pytest.mark.parametrize("origin", ["same-folder", "other-folder"])
def test_a_file_renamed_in_is_taken_at_once(
    watcher: FolderWatcher, clock: FakeClock, tmp_path: Path, inbox: Path, origin: str
) -> None:
    # Renamed within the folder (from a hidden name) or moved from another folder of the same
    # filesystem: inotify says IN_MOVED_TO for both (watchdog calls the second "created").
    staging = inbox if origin == "same-folder" else tmp_path / "staging"
    fresh = write(staging / ".uut.csv.partial", b"1,2,3")  # mtime now: no "old file" path

    os.rename(fresh, inbox / "uut.csv")

    taken = taken_until(watcher, bool, "the renamed file to be taken")
    assert [(s.path.name, s.size) for s in taken] == [("uut.csv", 5)]


@native_only
def test_a_file_renamed_in_and_appended_to_is_taken_once_its_writer_closes_it(
    watcher: FolderWatcher, clock: FakeClock, tmp_path: Path, inbox: Path
) -> None:
    fresh = write(tmp_path / "staging" / "uut.csv", b"first part\n")
    os.rename(fresh, inbox / "uut.csv")
    with open(inbox / "uut.csv", "ab") as fh:  # the careless writer is not done after all
        assert taken_when_seen(watcher, inbox) == []
        fh.write(b"second part\n")
        fh.flush()
        assert taken_when_seen(watcher, inbox) == []

    taken = taken_until(watcher, bool, "the file to be taken on its close")
    assert [s.size for s in taken] == [len(b"first part\nsecond part\n")]


@native_only
def test_a_file_two_writers_have_open_is_taken_when_both_closed_it(
    watcher: FolderWatcher, inbox: Path
) -> None:
    f = inbox / "shared.csv"
    first = open(f, "wb")  # noqa: SIM115 - closed below, in the order under test
    second = open(f, "ab")  # noqa: SIM115
    try:
        first.write(b"a\n")
        first.close()  # a close after writing, but the other writer is still at it
        assert taken_when_seen(watcher, inbox) == []
        second.write(b"b\n")
    finally:
        first.close()
        second.close()

    taken = taken_until(watcher, bool, "the file to be taken on the last close")
    assert [s.size for s in taken] == [4]


@native_only
def test_a_file_held_open_without_a_change_is_taken_after_the_incomplete_timeout(
    make_watcher: MakeWatcher, clock: FakeClock, inbox: Path, caplog: pytest.LogCaptureFixture
) -> None:
    watcher = make_watcher([WatchFolder(path=inbox)], clock=clock, trusted=True,
                           incomplete_timeout=60.0)
    watcher.poll()
    f = inbox / "forgotten.csv"
    with open(f, "wb") as fh:
        fh.write(b"complete, but never closed\n")
        fh.flush()
        assert taken_when_seen(watcher, inbox) == []
        clock.advance(SETTLE)
        assert watcher.poll()[0] == []  # held open: looked at, left alone
        clock.advance(59.0)
        assert watcher.poll()[0] == []
        clock.advance(SETTLE)
        with caplog.at_level(logging.WARNING, logger="pywats_client.service.watcher"):
            assert [s.path for s in watcher.poll()[0]] == [f]
    assert "has been open for writing by another process for 60 s" in caplog.text


@native_only
def test_a_file_rewritten_in_place_after_it_was_processed_is_taken_again(
    make_watcher: MakeWatcher, clock: FakeClock, inbox: Path
) -> None:
    folder = WatchFolder(path=inbox, post_action="none")
    watcher = make_watcher([folder], clock=clock, trusted=True)
    watcher.poll()
    f = write(inbox / "uut.csv", b"first run\n")
    (source,) = taken_until(watcher, bool, "the first version")
    apply_post_action(source, watcher.seen)
    watcher.done(source)

    with open(f, "wb") as fh:  # truncated and written again by the next test run
        fh.write(b"second run, longer\n")

    (again,) = taken_until(watcher, bool, "the rewritten version")
    assert again.size == len(b"second run, longer\n")


@native_only
def test_a_file_deleted_before_it_is_looked_at_is_forgotten(
    watcher: FolderWatcher, clock: FakeClock, inbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gone = write(inbox / "gone.csv")
    gone.unlink()
    assert taken_when_seen(watcher, inbox) == []
    assert watcher.pending_count() == 0

    # Deleted between the stat and the open that asks whether a writer still has it.
    real = os.open
    vanishing = inbox / "vanishing.csv"

    def delete_first(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if os.fspath(path) == str(vanishing):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        return real(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", delete_first)
    write(vanishing)
    taken = taken_until(watcher, lambda _: watcher.pending_count() == 0
                        and not (inbox / "vanishing.csv").exists(), "the deletion")
    assert taken == []
    clock.advance(RESCAN)
    assert watcher.poll()[0] == [] and watcher.pending_count() == 0


@native_only
def test_ten_thousand_close_events_of_one_file_take_it_once(
    watcher: FolderWatcher, clock: FakeClock, inbox: Path
) -> None:
    f = inbox / "chatty.csv"
    for _ in range(10_000):
        with open(f, "ab") as fh:
            fh.write(b"x")

    taken = taken_when_seen(watcher, inbox)
    if not taken:  # the kernel's event queue overflowed: the rescan found it, it settles
        clock.advance(SETTLE)
        taken = watcher.poll()[0]
    assert [(s.path, s.size) for s in taken] == [(f, 10_000)]
    clock.advance(RESCAN)
    assert watcher.poll()[0] == []


@native_only
def test_ten_thousand_files_closed_at_once_are_each_taken_once(
    watcher: FolderWatcher, clock: FakeClock, inbox: Path
) -> None:
    names = [f"f{n:05d}.csv" for n in range(10_000)]
    for name in names:
        write(inbox / name, b"1")

    taken = taken_when_seen(watcher, inbox)
    clock.advance(SETTLE)  # what an overflow of the event queue left to the rescan settles
    polls = 0
    while True:
        got, wait = watcher.poll()
        polls += 1
        taken.extend(got)
        if not got and wait > 0:
            break
    assert sorted(s.path.name for s in taken) == names  # each once
    assert polls <= 10_000 // watcher_module.MAX_CHECKS_PER_POLL + 5


def in_mind(watcher: FolderWatcher) -> int:
    """Files the watcher holds a record of, not yet handed out."""
    with watcher._lock:
        hinted = len(watcher._hints)
    return hinted + watcher.pending_count()


@native_only
def test_a_flood_is_kept_in_mind_a_bounded_number_at_a_time_and_each_file_taken_once(
    watcher: FolderWatcher, inbox: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(watcher_module, "MAX_TRACKED", 100)
    names = [f"f{n:04d}.csv" for n in range(1000)]
    with caplog.at_level(logging.INFO, logger="pywats_client.service.watcher"):
        for name in names:
            write(inbox / name, b"1", age=60)
        taken: list[SourceFile] = []
        most = 0

        def look() -> bool:
            nonlocal most
            most = max(most, in_mind(watcher))
            got, _ = watcher.poll(limit=300)
            most = max(most, in_mind(watcher))
            for source in got:
                taken.append(source)
                source.path.unlink()  # converted and moved away
                watcher.done(source)
            return len(taken) >= len(names)

        wait_until(look, EVENT_TIMEOUT * 3, "every file of the flood")
    assert sorted(s.path.name for s in taken) == names  # each once
    assert most <= 100
    messages = [r.getMessage() for r in caplog.records]
    assert any("more than 100 files wait in the watch folders" in m for m in messages)
    assert "every file waiting in the watch folders is in mind again" in messages[-1]
    assert not watcher.has_work()


def test_files_processed_and_left_in_place_do_not_keep_new_ones_out_of_mind(
    make_watcher: MakeWatcher, clock: FakeClock, inbox: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Post-action 'none' leaves every file processed in the folder: a rescan must not fill
    the files in mind with them, or a new file behind them in the listing is never found."""
    monkeypatch.setattr(watcher_module, "MAX_TRACKED", 20)
    folder = WatchFolder(path=inbox, post_action="none")
    watcher = make_watcher([folder], clock=clock, start=False)
    for n in range(500):
        f = write(inbox / f"old{n:03d}.csv", b"1", age=600)
        st = f.stat()
        watcher.seen.add(f, st.st_size, st.st_mtime_ns)
    new = write(inbox / "new.csv", b"2", age=60)
    watcher.start()

    ready, _ = watcher.poll()

    assert [s.path for s in ready] == [new]
    assert not watcher.has_work()


# -- files waiting to be completed ---------------------------------------------------------------


def test_an_unchanged_incomplete_file_is_looked_at_again_at_the_deadline(
    make_watcher: MakeWatcher, clock: FakeClock, inbox: Path
) -> None:
    write(inbox / "half.csv", b"half", age=60)
    watcher = make_watcher([WatchFolder(path=inbox)], clock=clock, trusted=True)
    (source,) = watcher.poll()[0]

    watcher.wait_for_change(source, 30.0)

    assert watcher.pending_count() == 1
    ready, wait = watcher.poll()
    assert ready == [] and wait == pytest.approx(30.0)
    clock.advance(RESCAN)  # a rescan finds it unchanged: it keeps waiting
    clock.mono -= RESCAN - 29.0
    assert watcher.poll()[0] == []
    clock.advance(1.0)
    assert [s.path for s in watcher.poll()[0]] == [source.path]


@native_only
def test_an_incomplete_file_is_looked_at_again_as_soon_as_its_writer_closes_it(
    watcher: FolderWatcher, inbox: Path
) -> None:
    f, source = first_line_taken(watcher, inbox)
    watcher.wait_for_change(source, 300.0)
    assert watcher.poll()[0] == []

    append(f, b"line 2\n")  # open, write, close: as a logger does for each line

    (again,) = taken_until(watcher, bool, "the longer version")
    assert again.size == len(b"line 1\nline 2\n")


@native_only
def test_lines_written_while_the_file_is_converted_count_when_it_is_given_back(
    watcher: FolderWatcher, inbox: Path
) -> None:
    f, source = first_line_taken(watcher, inbox)
    append(f, b"line 2\n")  # while its converter reads it
    assert taken_when_seen(watcher, inbox) == []  # in flight: never handed out twice

    watcher.wait_for_change(source, 300.0)  # the converter said: incomplete

    (again,) = taken_until(watcher, bool, "the longer version")
    assert again.size == len(b"line 1\nline 2\n")


def test_an_incomplete_file_that_changes_in_a_polled_folder_is_taken_once_settled(
    make_watcher: MakeWatcher, clock: FakeClock, inbox: Path
) -> None:
    f = write(inbox / "half.csv", b"half", age=60)
    watcher = make_watcher([WatchFolder(path=inbox, polling=True)], clock=clock, trusted=True)
    (source,) = watcher.poll()[0]
    watcher.wait_for_change(source, 300.0)
    append(f, b" and the rest")
    watcher.hint(f, Hint.CLOSED)  # in a polled folder no event is trusted

    assert watcher.poll()[0] == []
    clock.advance(SETTLE)
    assert [s.size for s in watcher.poll()[0]] == [len(b"half and the rest")]


# -- where events cannot be trusted ------------------------------------------------------------


@native_only
@pytest.mark.parametrize("fstype", ["cifs", "nfs4", "vfat", "exfat", "fuse.sshfs"])
def test_on_a_share_or_fat_media_a_closed_file_still_settles(
    make_watcher: MakeWatcher, clock: FakeClock, inbox: Path, fstype: str,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watcher_module, "filesystem_type", lambda path: fstype)
    watcher = make_watcher([WatchFolder(path=inbox)], clock=clock, trusted=True)
    watcher.poll()
    write(inbox / "uut.csv", b"1,2")
    os.rename(write(inbox / ".x.partial"), inbox / "moved.csv")
    write(inbox / "marker.csv")  # its events come after the others'

    taken = taken_until(watcher, lambda _: watcher.pending_count() == 3, "the three files")
    assert taken == []
    clock.advance(SETTLE)
    assert sorted(s.path.name for s in watcher.poll()[0]) == ["marker.csv", "moved.csv",
                                                              "uut.csv"]


@native_only
def test_a_watch_folder_removed_and_made_again_is_watched_again(
    make_watcher: MakeWatcher, clock: FakeClock, inbox: Path, caplog: pytest.LogCaptureFixture
) -> None:
    wakes = threading.Event()
    watcher = make_watcher([WatchFolder(path=inbox)], clock=clock, wake=wakes.set, trusted=True)
    watcher.poll()
    with caplog.at_level(logging.INFO, logger="pywats_client.service.watcher"):
        shutil.rmtree(inbox)
        wait_until(lambda: "no longer watched" in caplog.text, EVENT_TIMEOUT, "the lost watch")
        inbox.mkdir()
        clock.advance(RESCAN)
        assert watcher.poll()[0] == []
        assert "watched for new files again" in caplog.text

    f = write(inbox / "after.csv", b"1")
    assert [s.path for s in taken_until(watcher, bool, "a file in the new folder")] == [f]


# -- is a writer still at it? ------------------------------------------------------------------


def _lease_probe_as_nobody(path: Path) -> str:
    """open_for_writing(path) asked by a process of user nobody (a fork that drops root)."""
    read, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never back into pytest
        try:
            os.close(read)
            os.setgid(65534)
            os.setuid(65534)
            answer = repr(linuxfs.open_for_writing(str(path)))
        except BaseException as exc:
            answer = f"error {exc!r}"
        os.write(write_end, answer.encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read, "rb") as fh:
        answer = fh.read().decode()
    os.waitpid(pid, 0)
    return answer


@native_only
def test_open_for_writing_answers_from_a_read_lease(tmp_path: Path) -> None:
    f = write(tmp_path / "f.csv", b"1")
    assert linuxfs.open_for_writing(str(f)) is False
    with open(f, "ab"):
        assert linuxfs.open_for_writing(str(f)) is True
    with open(f, "rb"):
        assert linuxfs.open_for_writing(str(f)) is False  # readers do not count
    with pytest.raises(FileNotFoundError):
        linuxfs.open_for_writing(str(tmp_path / "missing.csv"))


@native_only
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a probe as another user")
def test_open_for_writing_cannot_tell_without_owning_the_file() -> None:
    # Not the owner and no CAP_LEASE: no lease, so "cannot tell" (the format check decides).
    # In a folder of its own under /tmp: pytest's are closed to other users.
    folder = Path(tempfile.mkdtemp(prefix="lease-"))
    try:
        folder.chmod(0o755)
        f = write(folder / "f.csv", b"1")
        f.chmod(0o644)
        assert _lease_probe_as_nobody(f) == "None"
        os.chown(f, 65534, 65534)
        assert _lease_probe_as_nobody(f) == "False"
        with open(f, "ab"):
            assert _lease_probe_as_nobody(f) == "True"
    finally:
        shutil.rmtree(folder)

"""The folder watcher: settle rule, rescans, in-flight bookkeeping and real watchdog observers."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pywats_client.clock import Clock
from pywats_client.config.settings import WatchFolder
from pywats_client.errors import ConfigError
from pywats_client.service.postaction import SeenFiles, apply_post_action
from pywats_client.service.watcher import FolderWatcher, SourceFile
from tests.fakes import FakeClock

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
    tmp_path: Path, no_leaked_threads: None
) -> Iterator[Callable[..., FolderWatcher]]:
    made: list[FolderWatcher] = []

    def make(folders: list[WatchFolder], *, clock: Clock, start: bool = True,
             **kwargs: Any) -> FolderWatcher:
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


@pytest.mark.parametrize("polling", [False, True], ids=["native", "polling"])
def test_observer_notices_a_new_file(
    make_watcher: MakeWatcher, clock: FakeClock, inbox: Path, polling: bool
) -> None:
    event = threading.Event()
    watcher = make_watcher([WatchFolder(path=inbox, polling=polling)], clock=clock,
                           wake=event.set)
    assert watcher.poll()[0] == []  # the start-up scan; the next rescan is an hour away
    event.clear()

    f = write(inbox / "from-tester.csv", b"1,2")

    assert event.wait(EVENT_TIMEOUT), "the observer did not report the new file"
    assert watcher.poll()[0] == []
    assert watcher.pending_count() == 1
    clock.advance(SETTLE)
    assert [s.path for s in watcher.poll()[0]] == [f]


@pytest.mark.parametrize("polling", [False, True], ids=["native", "polling"])
def test_observer_notices_a_file_moved_in(
    make_watcher: MakeWatcher, clock: FakeClock, tmp_path: Path, inbox: Path, polling: bool
) -> None:
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

"""The conversion journal: what a death, a stop and a torn write leave, and what the next start
makes of it; and the ticket that lets a conversion change files only while nobody gave it up."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from pywats_client.service import journal as journal_module
from pywats_client.service.gate import WorkGate
from pywats_client.service.journal import (
    JOURNAL_NAME,
    ConversionJournal,
    ConversionTicket,
    TicketState,
    file_key,
)
from tests.station import REPO


def source(folder: Path, name: str, content: bytes = b"{}") -> tuple[str, int, int]:
    path = folder / name
    path.write_bytes(content)
    st = path.stat()
    return file_key(path, st.st_size, st.st_mtime_ns)


@pytest.fixture
def files(tmp_path: Path) -> Path:
    folder = tmp_path / "watch"
    folder.mkdir()
    return folder


@pytest.fixture
def state(tmp_path: Path) -> Path:
    folder = tmp_path / "state"
    folder.mkdir()
    return folder


def started(state: Path) -> ConversionJournal:
    """The journal as a start of the service has it: recovered."""
    journal = ConversionJournal(state)
    journal.recover()
    return journal


def crashes(state: Path) -> dict[str, int]:
    return {s.path.name: s.crashes for s in ConversionJournal(state).recover()}


def test_a_conversion_open_at_a_death_is_counted_and_one_that_ended_is_not(
    state: Path, files: Path
) -> None:
    journal = ConversionJournal(state)
    assert journal.recover() == [] and journal.writable
    bad, good = source(files, "bad.json"), source(files, "good.json")
    converting_good = journal.begin(good)
    journal.begin(bad)
    journal.end(converting_good)
    # The process dies here, while bad.json is being converted.
    assert crashes(state) == {"bad.json": 1}
    # The next run dies on it again, with another file beside it.
    journal = ConversionJournal(state)
    assert {s.path.name for s in journal.recover()} == {"bad.json"}
    journal.begin(bad)
    journal.begin(good)
    assert crashes(state) == {"bad.json": 2, "good.json": 1}


def test_a_death_is_pinned_on_a_file_only_when_it_converted_alone(
    state: Path, files: Path
) -> None:
    a, b = source(files, "a.json"), source(files, "b.json")
    journal = started(state)
    journal.begin(a)
    journal.begin(b)  # the process dies with both open: either may be to blame
    journal = ConversionJournal(state)
    assert {(s.path.name, s.crashes, s.pinned) for s in journal.recover()} == {
        ("a.json", 1, 0), ("b.json", 1, 0)}
    journal.end(journal.begin(a))  # a converts alone and survives: cleared
    journal.begin(b)  # b converts alone and the process dies: this one is pinned
    journal = ConversionJournal(state)
    assert [(s.path.name, s.crashes, s.pinned) for s in journal.recover()] == [
        ("b.json", 2, 1)]
    journal.close()
    journal = ConversionJournal(state)  # carried over as it is by a start that does nothing
    assert [(s.path.name, s.crashes, s.pinned) for s in journal.recover()] == [
        ("b.json", 2, 1)]


def test_a_death_after_the_converter_returned_is_not_the_files(
    state: Path, files: Path
) -> None:
    journal = started(state)
    gate = WorkGate()
    ticket = ConversionTicket(journal, gate, source(files, "queued.json"))
    assert ticket.start(0.0) and ticket.commit()  # converted; its reports are being queued
    assert crashes_without_rewrite(state) == {}  # the process dies here: not the file's doing


def test_a_stop_is_not_a_death_and_a_finished_conversion_clears_the_count(
    state: Path, files: Path
) -> None:
    bad = source(files, "bad.json")
    journal = started(state)
    journal.begin(bad)
    assert crashes(state) == {"bad.json": 1}
    journal = started(state)
    journal.begin(bad)
    journal.mark_stopped()  # a stop abandoned it: the process did not die of it
    assert crashes(state) == {"bad.json": 1}  # the count carried over stays, no more
    journal = started(state)
    journal.end(journal.begin(bad))  # converted to the end at last
    assert crashes(state) == {}


def test_a_file_changed_or_gone_since_is_forgotten(state: Path, files: Path) -> None:
    changed, gone = source(files, "changed.json"), source(files, "gone.json")
    journal = started(state)
    journal.begin(changed)
    journal.begin(gone)
    (files / "changed.json").write_bytes(b'{"new": "content"}')
    (files / "gone.json").unlink()
    assert crashes(state) == {}


def test_a_journal_torn_at_any_byte_never_blocks_the_start_nor_overcounts(
    state: Path, files: Path
) -> None:
    a, b = source(files, "a.json"), source(files, "b.json")
    journal = started(state)
    journal.begin(a)
    journal.end(journal.begin(b))
    journal.begin(b)
    journal.mark_stopped()
    journal.begin(a)
    journal.close()
    whole = (state / JOURNAL_NAME).read_bytes()
    assert crashes(state) == {"a.json": 1}  # the last begin only: the rest was stopped
    for cut in range(len(whole) + 1):
        (state / JOURNAL_NAME).write_bytes(whole[:cut])
        found = crashes(state)
        # A cut line is skipped: at most the open conversions of the whole journal count,
        # and a cut inside the stop mark or the last end counts what was open before it.
        assert set(found) <= {"a.json", "b.json"} and all(n == 1 for n in found.values()), cut
    for damage in (b"\0" * 4096, os.urandom(3000), b"not a journal\n" * 50, b"\xff\xfe\n"):
        (state / JOURNAL_NAME).write_bytes(damage)
        journal = ConversionJournal(state)
        assert journal.recover() == [] and journal.writable
        journal.begin(a)
        journal.close()
        assert crashes(state) == {"a.json": 1}


def test_an_unreadable_journal_is_replaced(tmp_path: Path, files: Path) -> None:
    state = tmp_path / "state"
    (state / JOURNAL_NAME).mkdir(parents=True)  # not a file at all
    journal = ConversionJournal(state)
    assert journal.recover() == []
    assert not journal.writable  # cannot replace a folder: runs without, says so
    journal.end(journal.begin(source(files, "a.json")))  # and does not fail


def test_a_process_killed_while_converting_leaves_its_file_counted(
    state: Path, files: Path
) -> None:
    key = source(files, "killer.json")
    child = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from pywats_client.service.journal import ConversionJournal, file_key\n"
        "journal = ConversionJournal(Path(sys.argv[1]))\n"
        "journal.recover()\n"
        "journal.begin(file_key(sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))\n"
        "os._exit(9)\n"
    )
    for expected in (1, 2):
        done = subprocess.run([sys.executable, "-c", child, str(state), *map(str, key)],
                              env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60)
        assert done.returncode == 9
        assert crashes_without_rewrite(state) == {"killer.json": expected}


def crashes_without_rewrite(state: Path) -> dict[str, int]:
    """What a start would count, looked at without being that start."""
    records = ConversionJournal(state)._read()
    return {Path(k[0]).name: n for k, (n, _) in ConversionJournal._fold(records).items()}


def test_compaction_keeps_counts_and_open_conversions(
    state: Path, files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal_module, "COMPACT_BYTES", 2000)
    suspect, other = source(files, "suspect.json"), source(files, "other.json")
    journal = started(state)
    journal.begin(suspect)
    journal = ConversionJournal(state)
    journal.recover()  # suspect.json: 1
    still_open = journal.begin(other)
    for _ in range(100):
        journal.end(journal.begin(other))
    assert (state / JOURNAL_NAME).stat().st_size < 3000  # compacted along the way
    journal.end(still_open)
    journal.begin(other)  # open at the "death"
    assert crashes(state) == {"suspect.json": 1, "other.json": 1}


def test_beginnings_are_written_without_an_fsync_and_a_stop_syncs_once(
    state: Path, files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = [source(files, f"f{n}.json") for n in range(40)]
    journal = started(state)
    syncs = []
    for name in ("fsync", "fdatasync"):
        real = getattr(os, name)

        def counting(fd: int, real: Any = real) -> None:
            syncs.append(fd)
            real(fd)

        monkeypatch.setattr(os, name, counting)
    threads = [threading.Thread(target=journal.begin, args=(k,)) for k in keys]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert syncs == []  # a death of the process finds them in the page cache
    assert crashes_without_rewrite(state) == {f"f{n}.json": 1 for n in range(40)}
    journal.mark_stopped()
    assert len(syncs) == 1
    assert crashes_without_rewrite(state) == {}


def test_a_ticket_changes_files_only_if_nobody_gave_it_up(state: Path, files: Path) -> None:
    journal = started(state)
    gate = WorkGate()
    key = source(files, "x.json")

    given_up = ConversionTicket(journal, gate, key)
    assert given_up.start(0.0) and given_up.state is TicketState.RUNNING
    assert given_up.abandon()  # the time limit
    assert not given_up.commit()  # the thread comes back from its converter: hands off
    given_up.finish()
    assert given_up.state is TicketState.ABANDONED

    committing = ConversionTicket(journal, gate, key)
    assert committing.start(0.0) and committing.commit()
    assert not committing.abandon()  # too late: it is queueing its reports
    closing = threading.Thread(target=gate.close, args=(10,))
    closing.start()  # the stop waits for it...
    committing.finish()
    closing.join(10)
    assert not closing.is_alive() and gate.closed  # ...and no longer than that
    assert not ConversionTicket(journal, gate, key).start(0.0)  # stopped: nothing starts
    assert crashes_without_rewrite(state) == {}  # every conversion ended one way or another

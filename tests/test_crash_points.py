"""A process killed at every step of the queue's durable write and of every transition, and of
the conversion journal's.

Each case runs the real queue in a child process that dies (os._exit, as abrupt as SIGKILL for
the files) at one precise point — after the write, after the fsync, after the rename, before
the folder fsync, before the old copy is removed, ... A fresh start-up (the sweep) must then
find the report exactly once, readable, in a state that loses nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from pywats_client.queue.store import SUFFIX, DurableQueue, State, decode_item
from pywats_client.service.journal import JOURNAL_NAME, ConversionJournal, file_key
from tests.station import REPO

CRASH = 77

# Put before a child script: arm(owner, attr, nth) makes the nth call of owner.attr end the
# process (exit CRASH) before it does anything.
ARM = r"""
def arm(owner, attr, nth):
    real = getattr(owner, attr)
    calls = [0]
    def crashing(*args, **kwargs):
        calls[0] += 1
        if calls[0] == nth:
            os._exit(77)
        return real(*args, **kwargs)
    setattr(owner, attr, crashing)
"""

CHILD = r"""
import os, sys
from pathlib import Path

import pywats_client.queue.store as queue_module
from pywats_client.queue.store import DurableQueue

root, scenario, target, nth, rid = sys.argv[1:6]
nth = int(nth)
queue = DurableQueue(Path(root))
queue.ensure_layout()
body = b'{"type": "T", "sn": "SN1"}'

def setup():
    if scenario != "put":
        queue.put(body, report_id=rid, source="/in/r.json")
    if scenario in ("complete", "retry", "fail", "release"):
        return queue.claim(rid)

item = setup()

# Arm the crash: the nth call of `target` ends the process before it does anything.
if target != "none":
    owner_name, _, attr = target.rpartition(".")
    arm({"os": os, "queue": queue_module}[owner_name], attr, nth)

if scenario == "put":
    queue.put(body, report_id=rid, source="/in/r.json")
elif scenario == "claim":
    queue.claim(rid)
elif scenario == "complete":
    queue.complete(item)
elif scenario == "retry":
    queue.retry(item, "HTTP 503")
elif scenario == "fail":
    queue.fail(item, "HTTP 400: bad sn")
elif scenario == "release":
    queue.release(item)
elif scenario == "sweep":
    queue.claim(rid)           # an upload in progress...
    queue.sweep()              # ...and the next start-up's sweep crashes too
"""

# scenario, crash point (function, nth call), states the report may be found in afterwards
CASES = [
    ("put", "os.fsync", 1, {None}),           # written, not yet fsynced: never queued
    ("put", "os.rename", 1, {None}),          # fsynced in tmp/, not renamed: never queued
    ("put", "os.fsync", 2, {"pending"}),      # renamed, folder not yet fsynced
    ("put", "none", 0, {"pending"}),          # done: the source may now be touched
    ("claim", "os.rename", 1, {"pending"}),
    ("claim", "queue.decode_item", 1, {"pending"}),  # renamed into processing/, not read
    ("complete", "os.rename", 1, {"pending"}),       # uploaded, not moved: sent again
    ("complete", "os.utime", 1, {"completed"}),
    ("complete", "os.fsync", 1, {"completed"}),
    ("release", "os.rename", 1, {"pending"}),
    ("retry", "os.fsync", 1, {"pending"}),    # rewrite not yet durable: old copy retried
    ("retry", "os.rename", 1, {"pending"}),
    ("retry", "os.fsync", 2, {"pending"}),    # rewritten copy renamed, folder not fsynced
    ("retry", "os.unlink", 1, {"pending"}),   # both copies exist: the sweep keeps the new one
    ("fail", "os.rename", 1, {"pending"}),
    ("fail", "os.fsync", 2, {"failed"}),
    ("fail", "os.unlink", 1, {"failed"}),
    ("sweep", "os.rename", 2, {"pending"}),   # the sweep's own rename back to pending/
    ("sweep", "os.fsync", 1, {"pending"}),
]


def run_child(root: Path, scenario: str, target: str, nth: int, rid: str) -> int:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-c", ARM + CHILD, str(root), scenario, target, str(nth), rid],
        env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode in (0, CRASH), result.stderr
    return result.returncode


@pytest.mark.parametrize(("scenario", "target", "nth", "allowed"), CASES,
                         ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in CASES])
def test_a_crash_at_this_point_loses_nothing(tmp_path: Path, scenario: str, target: str,
                                             nth: int, allowed: set[str | None]) -> None:
    rid = str(uuid.uuid4())
    code = run_child(tmp_path, scenario, target, nth, rid)
    assert code == (0 if target == "none" else CRASH), "the crash point was never reached"

    queue = DurableQueue(tmp_path)  # the next start
    queue.sweep()
    found = {state.value: (queue.folder(state) / f"{rid}{SUFFIX}")
             for state in (State.PENDING, State.PROCESSING, State.COMPLETED, State.FAILED)
             if (queue.folder(state) / f"{rid}{SUFFIX}").exists()}
    assert len(found) <= 1, f"report {rid} in several states: {sorted(found)}"
    state = next(iter(found), None)
    assert state in allowed, f"report in {state}, expected one of {allowed}"
    assert os.listdir(tmp_path / "tmp") == []
    assert os.listdir(tmp_path / "processing") == []
    assert os.listdir(tmp_path / "corrupt") == []
    if state is not None:
        header, body = decode_item(found[state].read_bytes())
        assert header.id == rid and json.loads(body)["sn"] == "SN1"
        assert header.source == "/in/r.json"
        if state == "failed":
            assert "bad sn" in header.last_error
        if scenario == "retry" and (target, nth) in (("os.fsync", 2), ("os.unlink", 1)):
            # the rewritten copy (attempt counted) won over the stale one in processing/
            assert header.attempts == 1 and header.last_error == "HTTP 503"
        # and the queue carries on: a pending report can be claimed and completed
        if state == "pending":
            claimed = queue.claim(rid)
            assert claimed is not None
            queue.complete(claimed)
            assert queue.find(rid) is State.COMPLETED


# -- the conversion journal ----------------------------------------------------------------

JOURNAL_CHILD = r"""
import os, sys
from pathlib import Path

from pywats_client.service.journal import ConversionJournal, file_key

state, scenario, target, nth, source = sys.argv[1:6]
nth = int(nth)
st = os.stat(source)
key = file_key(source, st.st_size, st.st_mtime_ns)
journal = ConversionJournal(Path(state))
if scenario != "recover":
    journal.recover()
entry = journal.begin(key) if scenario == "end" else 0

if target != "return":  # "return": the process dies right after the call returned
    arm(os, target, nth)

if scenario == "recover":
    journal.recover()
elif scenario == "begin":
    journal.begin(key)
elif scenario == "end":
    journal.end(entry)
if target == "return":
    os._exit(77)
"""

# scenario, crash point, the deaths the next start counts for the file
JOURNAL_CASES = [
    ("recover", "fsync", 1, 1),     # rewriting the folded journal: the old one stands
    ("recover", "replace", 1, 1),
    ("begin", "write", 1, 0),       # before the record is written: never began
    ("begin", "return", 1, 1),      # written, never fsynced: the page cache has it
    ("end", "write", 1, 1),         # the end never written: it was open when it died
]


@pytest.mark.parametrize(("scenario", "target", "nth", "counted"), JOURNAL_CASES,
                         ids=[f"journal-{c[0]}-{c[1]}" for c in JOURNAL_CASES])
def test_a_crash_inside_the_journal_never_blocks_the_next_start(
    tmp_path: Path, scenario: str, target: str, nth: int, counted: int
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    source = tmp_path / "file.json"
    source.write_text("{}")
    st = source.stat()
    if scenario == "recover":  # a death while converting it, in the run before
        before = ConversionJournal(state)
        before.recover()
        before.begin(file_key(source, st.st_size, st.st_mtime_ns))
        before.close()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-c", ARM + JOURNAL_CHILD, str(state), scenario, target, str(nth),
         str(source)], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == CRASH, result.stderr or "the crash point was never reached"

    journal = ConversionJournal(state)  # the next start
    suspects = journal.recover()
    assert [(s.path, s.crashes) for s in suspects] == ([(source, counted)] if counted else [])
    assert journal.writable
    assert sorted(os.listdir(state)) == [JOURNAL_NAME]  # no debris of the rewrite is left

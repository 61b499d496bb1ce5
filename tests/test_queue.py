"""The directory-state queue: every transition, recovery, retry policy, bookkeeping."""

from __future__ import annotations

import json
import os
import random
import uuid
from pathlib import Path
from typing import Any

import pytest

from pywats_client.config.settings import QueueSettings
from pywats_client.errors import QueueError, QueueFullError
from pywats_client.queue.store import (
    SUFFIX,
    Claimed,
    CorruptItemError,
    DurableQueue,
    ItemHeader,
    State,
    decode_item,
    encode_item,
    read_header,
)
from tests.fakes import FakeClock


def body(n: int = 0) -> bytes:
    return json.dumps({"type": "T", "sn": f"SN{n}"}).encode()


def new_id() -> str:
    return str(uuid.uuid4())


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def queue_with(folder: Path, clock: FakeClock, **settings: Any) -> DurableQueue:
    """A queue in `folder` with these settings, its layout made."""
    q = DurableQueue(folder, QueueSettings(**settings), clock=clock)
    q.ensure_layout()
    return q


@pytest.fixture
def queue(tmp_path: Path, clock: FakeClock) -> DurableQueue:
    q = DurableQueue(tmp_path / "queue", QueueSettings(), clock=clock, rng=random.Random(1))
    q.ensure_layout()
    return q


def files(q: DurableQueue, state: State) -> list[str]:
    return sorted(os.listdir(q.folder(state)))


def put_and_claim(q: DurableQueue, rid: str) -> Claimed:
    """Queue a report as `rid` and claim it, as the uploader does before it sends one."""
    q.put(body(), report_id=rid)
    claimed = q.claim(rid)
    assert claimed is not None
    return claimed


def test_layout_has_every_state_folder(queue: DurableQueue) -> None:
    assert sorted(os.listdir(queue.root)) == sorted(
        ["tmp", "pending", "processing", "completed", "failed", "corrupt"]
    )


def test_put_writes_a_self_checking_file_into_pending(queue: DurableQueue) -> None:
    rid = new_id()
    result = queue.put(body(), report_id=rid, source="/in/a.json", converter="X")
    assert result.created and result.state is State.PENDING
    path = queue.folder(State.PENDING) / f"{rid}{SUFFIX}"
    header, data = decode_item(path.read_bytes())
    assert header.id == rid and header.source == "/in/a.json" and header.converter == "X"
    assert data == body()
    assert path.stat().st_mode & 0o777 == 0o600
    assert files(queue, State.PENDING) == [f"{rid}{SUFFIX}"]
    assert os.listdir(queue.root / "tmp") == []


def test_put_of_an_id_already_queued_or_uploaded_writes_nothing(queue: DurableQueue) -> None:
    rid = new_id()
    queue.put(body(), report_id=rid)
    again = queue.put(body(), report_id=rid)
    assert not again.created and again.state is State.PENDING
    claimed = queue.claim(rid)
    assert claimed is not None
    assert queue.put(body(), report_id=rid).state is State.PROCESSING
    queue.complete(claimed)
    assert queue.put(body(), report_id=rid).state is State.COMPLETED
    assert files(queue, State.PENDING) == []


def test_put_of_a_failed_id_queues_it_afresh(queue: DurableQueue) -> None:
    rid = new_id()
    claimed = put_and_claim(queue, rid)
    queue.fail(claimed, "400 bad sn")
    result = queue.put(body(), report_id=rid)
    assert result.created and result.state is State.PENDING
    assert files(queue, State.FAILED) == []


def test_put_rejects_an_id_that_is_not_a_guid(queue: DurableQueue) -> None:
    with pytest.raises(QueueError, match="not a GUID"):
        queue.put(body(), report_id="../../etc/passwd")


def test_claim_then_complete(queue: DurableQueue) -> None:
    rid = new_id()
    queue.put(body(7), report_id=rid)
    claimed = queue.claim(rid)
    assert claimed is not None and claimed.body == body(7)
    assert files(queue, State.PROCESSING) == [f"{rid}{SUFFIX}"]
    assert queue.claim(rid) is None  # not pending any more
    queue.complete(claimed)
    assert files(queue, State.COMPLETED) == [f"{rid}{SUFFIX}"]
    assert files(queue, State.PROCESSING) == []


def test_release_keeps_the_item_untouched(queue: DurableQueue) -> None:
    rid = new_id()
    queue.put(body(), report_id=rid)
    before = (queue.folder(State.PENDING) / f"{rid}{SUFFIX}").read_bytes()
    claimed = queue.claim(rid)
    assert claimed is not None
    queue.release(claimed)
    assert (queue.folder(State.PENDING) / f"{rid}{SUFFIX}").read_bytes() == before
    assert queue.due(10)[0] == [rid]


def test_retry_counts_the_attempt_and_sets_the_next_attempt_time(
    queue: DurableQueue, clock: FakeClock
) -> None:
    rid = new_id()
    claimed = put_and_claim(queue, rid)
    assert queue.retry(claimed, "HTTP 503") is State.PENDING
    path = queue.folder(State.PENDING) / f"{rid}{SUFFIX}"
    header = read_header(path)
    assert header.attempts == 1 and header.last_error == "HTTP 503"
    delay = path.stat().st_mtime - clock.time()
    assert 30 * 0.8 - 1 <= delay <= 30 * 1.2 + 1
    ids, later = queue.due(10)
    assert ids == [] and later == pytest.approx(path.stat().st_mtime)
    clock.advance(delay + 1)
    assert queue.due(10)[0] == [rid]
    assert files(queue, State.PROCESSING) == []


def test_retry_after_is_honoured_when_longer_than_the_backoff(
    queue: DurableQueue, clock: FakeClock
) -> None:
    rid = new_id()
    claimed = put_and_claim(queue, rid)
    queue.retry(claimed, "HTTP 429", retry_after=600)
    mtime = (queue.folder(State.PENDING) / f"{rid}{SUFFIX}").stat().st_mtime
    assert mtime - clock.time() == pytest.approx(600, abs=1)


def test_a_report_parked_beyond_the_longest_retry_is_brought_forward(
    queue: DurableQueue, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    # An older version obeyed "Retry-After: 315360000" and parked the report until 2036.
    rid = new_id()
    queue.put(body(), report_id=rid)
    path = queue.folder(State.PENDING) / f"{rid}{SUFFIX}"
    parked = clock.time() + 315_360_000
    os.utime(path, (parked, parked))
    ids, later = queue.due(10)
    longest = QueueSettings().retry_max_delay
    assert ids == [] and later == pytest.approx(clock.time() + longest)
    assert path.stat().st_mtime == pytest.approx(clock.time() + longest)
    assert "brought forward" in caplog.text and rid in caplog.text
    clock.advance(longest + 1)
    assert queue.due(10)[0] == [rid]


def test_backoff_doubles_with_jitter_up_to_the_cap(tmp_path: Path) -> None:
    q = DurableQueue(tmp_path, QueueSettings(retry_delay=30, retry_max_delay=3600),
                    rng=random.Random(3))
    for attempt, nominal in [(1, 30), (2, 60), (3, 120), (5, 480), (7, 1920)]:
        assert nominal * 0.8 <= q.backoff(attempt) <= nominal * 1.2
    assert all(q.backoff(a) <= 3600 for a in range(1, 100))
    assert q.backoff(50) >= 3600 * 0.8


def test_lifetime_exceeded_goes_to_failed_with_the_reason(
    tmp_path: Path, clock: FakeClock
) -> None:
    q = queue_with(tmp_path, clock, max_age=3600)
    rid = new_id()
    q.put(body(), report_id=rid, source="/in/x.json")
    clock.advance(3601)
    claimed = q.claim(rid)
    assert claimed is not None
    assert q.retry(claimed, "HTTP 500") is State.FAILED
    header = read_header(q.folder(State.FAILED) / f"{rid}{SUFFIX}")
    assert "gave up after" in header.last_error and "HTTP 500" in header.last_error


def test_retry_attempts_from_older_configs_caps_server_errors(
    tmp_path: Path, clock: FakeClock
) -> None:
    q = queue_with(tmp_path, clock, retry_attempts=2)
    rid = new_id()
    q.put(body(), report_id=rid)
    states = []
    for _ in range(2):
        clock.advance(10_000)
        claimed = q.claim(rid)
        assert claimed is not None
        states.append(q.retry(claimed, "HTTP 500"))
    assert states == [State.PENDING, State.FAILED]


def test_fail_keeps_the_server_message(queue: DurableQueue) -> None:
    rid = new_id()
    claimed = put_and_claim(queue, rid)
    queue.fail(claimed, "HTTP 400: field 'sn' is required")
    [info] = queue.list(State.FAILED)
    assert info.id == rid and info.header is not None
    assert info.header.last_error == "HTTP 400: field 'sn' is required"


def test_retry_failed_moves_everything_back_with_fresh_attempts(
    queue: DurableQueue, clock: FakeClock
) -> None:
    ids = [new_id() for _ in range(3)]
    for rid in ids:
        queue.fail(put_and_claim(queue, rid), "rejected")
    clock.advance(5)
    assert queue.retry_failed() == 3
    assert sorted(queue.due(10)[0]) == sorted(ids)
    for rid in ids:
        header = read_header(queue.folder(State.PENDING) / f"{rid}{SUFFIX}")
        assert header.attempts == 0 and header.queued_at == clock.time()


def test_due_returns_oldest_first_and_bounded(queue: DurableQueue, clock: FakeClock) -> None:
    ids = []
    for n in range(50):
        rid = new_id()
        queue.put(body(n), report_id=rid)
        os.utime(queue.folder(State.PENDING) / f"{rid}{SUFFIX}", (clock.time() - 100 + n,) * 2)
        ids.append(rid)
    got, later = queue.due(5)
    assert got == ids[:5] and later is None


def test_counts_and_list(queue: DurableQueue) -> None:
    a, b = new_id(), new_id()
    queue.put(body(), report_id=a, source="/in/a")
    queue.put(body(), report_id=b, source="/in/b")
    claimed = queue.claim(b)
    assert claimed is not None
    queue.complete(claimed)
    counts = queue.counts()
    assert counts[State.PENDING] == 1 and counts[State.COMPLETED] == 1
    assert counts[State.PROCESSING] == counts[State.FAILED] == counts[State.CORRUPT] == 0
    [info] = queue.list(State.PENDING)
    assert info.id == a and info.header is not None and info.header.source == "/in/a"


def test_sweep_clears_tmp_and_requeues_processing(queue: DurableQueue) -> None:
    rid = new_id()
    put_and_claim(queue, rid)  # the process "dies" while uploading
    (queue.root / "tmp" / "debris.tmp").write_bytes(b"half a rep")
    counts = queue.sweep()
    assert counts["requeued"] == 1 and counts["tmp_removed"] == 1
    assert queue.due(10)[0] == [rid]
    assert os.listdir(queue.root / "tmp") == []


def test_sweep_drops_a_processing_copy_whose_rewrite_already_landed(queue: DurableQueue) -> None:
    rid = new_id()
    claimed = put_and_claim(queue, rid)
    stale = (queue.folder(State.PROCESSING) / f"{rid}{SUFFIX}").read_bytes()
    queue.retry(claimed, "HTTP 500")
    # crash between the rename of the rewritten copy and the unlink of the old one
    (queue.folder(State.PROCESSING) / f"{rid}{SUFFIX}").write_bytes(stale)
    assert queue.sweep()["duplicates_dropped"] == 1
    assert read_header(queue.folder(State.PENDING) / f"{rid}{SUFFIX}").attempts == 1
    assert files(queue, State.PROCESSING) == []


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: data[: len(data) // 2], id="torn"),
        pytest.param(lambda data: b"", id="zero-length"),
        pytest.param(lambda data: b"\0" * len(data), id="nul-filled"),
        pytest.param(lambda data: data[:-30] + b"X" * 30, id="bit-rot"),
    ],
)
def test_damaged_files_go_to_corrupt_and_do_not_block(queue: DurableQueue, damage) -> None:
    bad, good = new_id(), new_id()
    queue.put(body(1), report_id=bad)
    queue.put(body(2), report_id=good)
    path = queue.folder(State.PENDING) / f"{bad}{SUFFIX}"
    path.write_bytes(damage(path.read_bytes()))
    os.utime(path, (1, 1))  # oldest: it comes first
    claimed = [queue.claim(rid) for rid in queue.due(10)[0]]
    assert [c.id for c in claimed if c is not None] == [good]
    assert queue.counts()[State.CORRUPT] == 1
    assert bad in os.listdir(queue.folder(State.CORRUPT))[0]


def test_sweep_quarantines_a_torn_processing_file(queue: DurableQueue) -> None:
    rid = new_id()
    put_and_claim(queue, rid)
    path = queue.folder(State.PROCESSING) / f"{rid}{SUFFIX}"
    path.write_bytes(path.read_bytes()[:10])
    assert queue.sweep()["corrupt"] == 1
    assert queue.counts()[State.CORRUPT] == 1 and queue.counts()[State.PENDING] == 0


def test_decode_detects_every_kind_of_damage() -> None:
    data = encode_item(ItemHeader(id=new_id()), b'{"a": 1}')
    assert decode_item(data)[1] == b'{"a": 1}'
    for broken in (data[:-1], data + b"x", data.replace(b'"a"', b'"b"'), b"WSQ1 x y z\n"):
        with pytest.raises(CorruptItemError):
            decode_item(broken)


def test_prune_and_clear_completed(queue: DurableQueue, clock: FakeClock) -> None:
    old, new = new_id(), new_id()
    for rid in (old, new):
        queue.complete(put_and_claim(queue, rid))
    os.utime(queue.folder(State.COMPLETED) / f"{old}{SUFFIX}", (clock.time() - 8 * 86400,) * 2)
    assert queue.prune()[State.COMPLETED] == 1
    assert files(queue, State.COMPLETED) == [f"{new}{SUFFIX}"]
    assert queue.clear_completed() == 1
    assert files(queue, State.COMPLETED) == []


def test_disk_full_leaves_nothing_in_the_queue(queue: DurableQueue, monkeypatch) -> None:
    import errno

    import pywats_client.fsutil as fsutil

    real_fsync = os.fsync

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fsutil.os, "fsync", full)
    with pytest.raises(QueueFullError, match="disk full"):
        queue.put(body(), report_id=new_id())
    monkeypatch.setattr(fsutil.os, "fsync", real_fsync)
    assert all(n == 0 for n in queue.counts().values())
    assert os.listdir(queue.root / "tmp") == []


def test_queue_on_a_network_filesystem_is_refused(tmp_path: Path, monkeypatch) -> None:
    import pywats_client.queue.store as qmod

    monkeypatch.setattr(qmod, "filesystem_type", lambda path: "nfs4")
    with pytest.raises(QueueError, match="allow_network_filesystem"):
        DurableQueue(tmp_path).ensure_layout()
    DurableQueue(tmp_path, QueueSettings(allow_network_filesystem=True)).ensure_layout()


def test_retention_of_zero_days_keeps_everything(tmp_path: Path, clock: FakeClock) -> None:
    q = queue_with(tmp_path, clock, completed_retention_days=0, failed_retention_days=0)
    for fail in (False, True):
        claimed = put_and_claim(q, new_id())
        q.fail(claimed, "no") if fail else q.complete(claimed)
    clock.advance(365 * 86400)
    assert q.prune() == {State.COMPLETED: 0, State.FAILED: 0}
    assert q.counts()[State.COMPLETED] == q.counts()[State.FAILED] == 1


def test_failed_items_are_pruned_after_their_own_retention(tmp_path: Path,
                                                           clock: FakeClock) -> None:
    q = queue_with(tmp_path, clock, failed_retention_days=30)
    rid = new_id()
    claimed = put_and_claim(q, rid)
    q.fail(claimed, "no")
    os.utime(q.folder(State.FAILED) / f"{rid}{SUFFIX}", (clock.time(),) * 2)
    clock.advance(29 * 86400)
    assert q.prune()[State.FAILED] == 0
    clock.advance(2 * 86400)
    assert q.prune()[State.FAILED] == 1


# -- one id, two different reports ---------------------------------------------------------------


def test_a_different_report_under_a_known_id_is_a_clash_the_same_one_is_not(
        queue: DurableQueue) -> None:
    rid = new_id()
    first = queue.put(body(1), report_id=rid, source="/in/template.json",
                      source_sha256="a" * 64)
    assert first.created and first.clash is None
    assert read_header(queue.folder(State.PENDING) / f"{rid}{SUFFIX}").body_sha256

    same = queue.put(body(1), report_id=rid, source="/in/template.json")
    assert not same.created and same.clash is None  # converted again after a crash

    other = queue.put(body(2), report_id=rid, source="/in/copy.json", source_sha256="b" * 64)
    assert not other.created and other.state is State.PENDING
    assert other.clash is not None and other.clash.source == "/in/template.json"
    assert files(queue, State.PENDING) == [f"{rid}{SUFFIX}"]  # the first one is kept

    # The same file converted again under other station settings: the same report.
    again = queue.put(body(3), report_id=rid, source="/in/template.json",
                      source_sha256="a" * 64)
    assert again.clash is None

    claimed = queue.claim(rid)
    assert claimed is not None
    queue.complete(claimed)
    assert queue.put(body(2), report_id=rid, source_sha256="b" * 64).clash is not None


def test_items_of_older_versions_are_compared_by_their_body(queue: DurableQueue) -> None:
    rid = new_id()
    old = ItemHeader(id=rid, source="/in/first.json", queued_at=1.0)  # no digests kept
    (queue.folder(State.PENDING) / f"{rid}{SUFFIX}").write_bytes(encode_item(old, body(1)))

    assert queue.put(body(1), report_id=rid).clash is None
    clash = queue.put(body(2), report_id=rid, source_sha256="c" * 64).clash
    assert clash is not None and clash.source == "/in/first.json"

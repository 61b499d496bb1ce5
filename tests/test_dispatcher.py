"""The upload dispatcher with a real queue, real threads and the bundled receiver: what the
server stored ends in completed/, durably, a burst of moves sharing one folder fsync."""

from __future__ import annotations

import json
import os
import threading
import uuid
from pathlib import Path

from pywats_client import fsutil
from pywats_client.config.settings import QueueSettings
from pywats_client.http.receiver import Receiver
from pywats_client.queue.store import DurableQueue, State
from pywats_client.service.dispatcher import UploadDispatcher
from pywats_client.service.status import ServiceStatus
from pywats_client.service.uploader import Uploader
from tests.conftest import TOKEN
from tests.station import wait_until, wsjf_report


def test_a_burst_of_stored_reports_is_durable_with_shared_folder_fsyncs(
        tmp_path: Path, receiver: Receiver, monkeypatch) -> None:
    queue = DurableQueue(tmp_path / "queue")
    queue.ensure_layout()
    ids = [str(uuid.uuid4()) for _ in range(8)]
    for n, report_id in enumerate(ids):
        queue.put(json.dumps(wsjf_report(n, report_id=report_id)).encode(),
                  report_id=report_id)
    completed = tmp_path / "queue" / "completed"
    seen_by_fsync: list[int] = []  # reports in completed/ when each of its fsyncs started
    release = threading.Event()
    real_fsync_dir = fsutil.fsync_dir

    def recording_fsync_dir(path: Path) -> None:
        if Path(path) == completed:
            seen_by_fsync.append(len(os.listdir(completed)))
            release.wait(10)  # the first move's fsync is slow: the others line up behind it
        real_fsync_dir(path)

    monkeypatch.setattr(fsutil, "fsync_dir", recording_fsync_dir)
    client = Uploader(receiver.url, TOKEN)
    woke = threading.Event()
    dispatcher = UploadDispatcher(queue, client, QueueSettings(), ServiceStatus(), wake=woke.set)
    try:
        dispatcher.pump()
        # Every report stored and its move made or waiting; the one in the held fsync is both.
        wait_until(lambda: dispatcher.pump() >= 0 and bool(seen_by_fsync) and (
            seen_by_fsync[0] + dispatcher.moves_waiting - 1 == len(ids)), 10,
                   "every upload to be stored and its move made or waiting", tick=0.005)
        release.set()
        while True:
            woke.clear()  # before pump(): a wake-up while it runs is not lost
            timeout = dispatcher.pump()
            if not dispatcher.has_due_work():
                break
            woke.wait(timeout)
    finally:
        dispatcher.shutdown()
        client.close()
    assert sorted(receiver.stored_ids()) == sorted(ids)
    assert [queue.find(i) for i in ids] == [State.COMPLETED] * len(ids)
    # The last fsync came after every move: all of them are durable.
    assert seen_by_fsync[-1] == len(ids)
    # The held fsync, then one for all the moves that waited behind it.
    assert len(seen_by_fsync) == 2

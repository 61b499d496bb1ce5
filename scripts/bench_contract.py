#!/usr/bin/env python3
"""The least CPU any client keeping the queue contract of DESIGN.md spends on one report.

    python scripts/bench_contract.py FILE [--reports 1000] [--json]

No watcher, no checks, no logging, no threads: for each unique copy of FILE (a WSJF report),
one after the other, only what the contract itself asks for, with the standard library:

  read the file, json.loads, json.dumps (the report as queued)
  tmp/ (O_EXCL, 0600) -> write -> fsync
  rename into pending/ -> fsync(pending/)
  rename the source into done/ (only now may it go)
  rename pending/ -> processing/ -> fsync(processing/)          (the claim)
  one POST over a kept-alive http.client connection, the answer read
  rename processing/ -> completed/ -> fsync(completed/)

The loopback server answering the POSTs runs in another thread, whose CPU is not counted
(time.thread_time). What the service spends per report beyond this figure is its own
overhead: detection, ids, validation, the poison-file journal, logging, the watcher, the
hand-overs between threads. Prints the CPU ms per report of each step and their total, and
the total without the folder steps (reports reaching a state together may share a folder's
fsync, so that is the least of the least).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

STEPS = ("read, json.loads, json.dumps", "queue write (the file's fsync)",
         "rename into pending/, its fsync", "source to done/", "claim (a rename, an fsync)",
         "POST (http.client)", "completion (a rename, an fsync)")
# The folder fsyncs: reports that reach a state together may share them.
FOLDER_STEPS = STEPS[2], STEPS[4], STEPS[6]


class _Stored(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the client's sessions use it

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        answer = b'{"status":"stored"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: object) -> None:
        pass


def measure(data: bytes, reports: int, warm_up: int = 50) -> dict[str, float]:
    """CPU ms per report of each step, over `reports` copies after `warm_up` more."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Stored)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
    spent = dict.fromkeys(STEPS, 0.0)
    with tempfile.TemporaryDirectory(prefix="contract-", dir=os.environ.get("TMPDIR")) as tmp:
        root = Path(tmp)
        names = ("watch", "done", "tmp", "pending", "processing", "completed")
        for name in names:
            (root / name).mkdir()
        folders = {name: os.open(root / name, os.O_RDONLY | os.O_DIRECTORY) for name in names}
        total = warm_up + reports
        for n in range(total):
            (root / "watch" / f"{n}.json").write_bytes(data)
        os.sync()  # the copies on disk first: their writes are not the contract's
        try:
            for n in range(total):
                if n == warm_up:
                    spent = dict.fromkeys(STEPS, 0.0)
                _one(root, folders, connection, n, spent)
        finally:
            for fd in folders.values():
                os.close(fd)
            connection.close()
            server.shutdown()
            server.server_close()
    return {step: 1000 * seconds / reports for step, seconds in spent.items()}


def _one(root: Path, folders: dict[str, int], connection: http.client.HTTPConnection, n: int,
         spent: dict[str, float]) -> None:
    clock = time.thread_time
    marks = [clock()]
    source, item = f"{root}/watch/{n}.json", f"{n}.wsq"
    with open(source, "rb") as f:
        body = json.dumps(json.loads(f.read()), separators=(",", ":")).encode()
    marks.append(clock())
    tmp = f"{root}/tmp/{item}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, body)
        os.fsync(fd)
    finally:
        os.close(fd)
    marks.append(clock())
    os.rename(tmp, f"{root}/pending/{item}")
    os.fsync(folders["pending"])
    marks.append(clock())
    os.rename(source, f"{root}/done/{n}.json")
    marks.append(clock())
    os.rename(f"{root}/pending/{item}", f"{root}/processing/{item}")
    os.fsync(folders["processing"])
    marks.append(clock())
    connection.request("POST", "/api/Report/WSJF", body, {"Content-Type": "application/json"})
    answer = connection.getresponse()
    answer.read()
    if answer.status != 200:
        raise RuntimeError(f"the loopback server answered HTTP {answer.status}")
    marks.append(clock())
    os.rename(f"{root}/processing/{item}", f"{root}/completed/{item}")
    os.fsync(folders["completed"])
    marks.append(clock())
    for step, start, end in zip(STEPS, marks, marks[1:], strict=False):
        spent[step] += end - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file", type=Path, help="a WSJF report (the UUT example file)")
    parser.add_argument("--reports", type=int, default=1000, help="copies measured")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    steps = measure(args.file.read_bytes(), args.reports)
    if args.json:
        print(json.dumps(steps))
    else:
        for step, ms in steps.items():
            print(f"{ms:7.3f} ms  {step}")
        total = sum(steps.values())
        print(f"{total:7.3f} ms  per report in all")
        print(f"{total - sum(steps[s] for s in FOLDER_STEPS):7.3f} ms  without the folder "
              "renames and fsyncs (the least, were they shared by many reports)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

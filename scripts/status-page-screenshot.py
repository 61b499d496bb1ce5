#!/usr/bin/env python3
"""Take a phone-sized screenshot of the status page of a real, busy service.

    python scripts/status-page-screenshot.py [--out status-page.png] [--keep]

It starts the bundled WATS receiver on loopback, sets up a throw-away instance (one watch
folder, plus one that is "not mounted"), starts the service with `--api --api-port 0`, drops
report files (most are stored, one is rejected by the server, two meet a server error and wait
for a retry, one cannot be converted), then has headless Chromium (Debian's `chromium`) load
`GET /` at 412x915 and prints the PNG's path. The service is stopped with `POST /stop` and
its token. Nothing outside a temporary folder is touched (except --out).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

from runkit import cli, run, service_status, wait_for

from pywats_client.http.receiver import Receiver

TOKEN = "ZGVtbzpkZW1vLXNlY3JldA=="  # base64("demo:demo-secret"), what the receiver accepts


def report(n: int) -> dict[str, Any]:
    return {
        "type": "T", "pn": "PCBA-4410", "sn": f"SN{24050100 + n}", "rev": "C",
        "processCode": 10, "result": "P", "start": "2026-05-01T10:00:00+02:00",
        "root": {"id": 0, "group": "M", "stepType": "SequenceCall", "name": "MainSequence",
                 "status": "P",
                 "seqCall": {"path": "ict.seq", "name": "MainSequence", "version": "1"},
                 "steps": []},
    }


def drop(watch: Path, name: str, content: bytes) -> None:
    staging = watch.parent / "staging"
    staging.mkdir(exist_ok=True)
    (staging / name).write_bytes(content)
    (staging / name).rename(watch / name)  # equipment writes elsewhere, then renames


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=None,
                        help="where to write the PNG (default: in the temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    args = parser.parse_args()
    if shutil.which(args.chromium) is None:
        sys.exit(f"{args.chromium} not found: apt-get install chromium (or pass --chromium)")

    work = Path(tempfile.mkdtemp(prefix="pywats-page-"))
    data_dir, watch = work / "data", work / "ict-line-a"
    watch.mkdir()
    out = (args.out or work / "status-page.png").resolve()
    instance = data_dir / "default"
    service = None
    with Receiver(work / "receiver-store", token=TOKEN) as receiver:
        try:
            run(data_dir, "config", "init", "--non-interactive", "--server-url", receiver.url,
                "--api-token", TOKEN, "--station-name", "ICT-01 Line A", "--location", "lab")
            for key, value in (("queue.settle_time", "0.3"), ("queue.upload_interval", "1"),
                               ("queue.retry_delay", "600")):
                run(data_dir, "config", "set", key, value)
            run(data_dir, "config", "add-watch-folder", str(watch))
            # A share that is not there: its parent is a plain file, so it cannot be created.
            run(data_dir, "config", "add-watch-folder", str(work / "nas" / "line-b"), "--create")
            shutil.rmtree(work / "nas", ignore_errors=True)
            (work / "nas").write_text("not a folder")
            with (work / "service.log").open("wb") as log:
                service = subprocess.Popen(
                    [*cli(), "--data-dir", str(data_dir), "start", "--api", "--api-port", "0"],
                    stdout=subprocess.DEVNULL, stderr=log)

            def status() -> dict[str, Any]:
                return service_status(instance)

            url = wait_for("the control API", lambda: status().get("api_url"))
            for n in range(6):
                drop(watch, f"ICT_{24050100 + n}.json", json.dumps(report(n)).encode())
            wait_for("6 stored reports", lambda: receiver.wait_for_reports(6, 0.5))
            receiver.faults.reject_rate = 1.0
            drop(watch, "ICT_24050106.json", json.dumps(report(6)).encode())
            wait_for("a rejection", lambda: status().get("rejected"))
            receiver.faults.reject_rate, receiver.faults.error_rate = 0.0, 1.0
            for n in (7, 8):
                drop(watch, f"ICT_{24050100 + n}.json", json.dumps(report(n)).encode())
            wait_for("two server errors",
                     lambda: status().get("upload_failures", {}).get("transient") == 2)
            drop(watch, "scope_capture_07.bin", b"\x00\x01 not a test report")
            wait_for("a conversion error", lambda: status().get("conversion_errors"))
            wait_for("the page to show it", lambda: "scope_capture" in urllib.request.urlopen(
                url + "/", timeout=5).read().decode())
            shot = subprocess.run(
                [args.chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--hide-scrollbars",
                 f"--user-data-dir={work / 'chromium-profile'}", f"--screenshot={out}",
                 "--window-size=412,915", url + "/"],
                capture_output=True, text=True, timeout=120, check=False)
            if shot.returncode != 0 or not out.exists():
                sys.exit(f"chromium failed ({shot.returncode}):\n{shot.stderr[-2000:]}")
            token = (instance / "api.token").read_text().strip()
            urllib.request.urlopen(urllib.request.Request(
                url + "/stop", method="POST", headers={"Authorization": f"Bearer {token}"}),
                timeout=10)
            service.wait(timeout=60)
        finally:
            if service is not None and service.poll() is None:
                service.kill()
                service.wait()
            if not args.keep and args.out is not None:
                shutil.rmtree(work, ignore_errors=True)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Run the whole pipeline once, on this machine, against the bundled WATS receiver.

    python scripts/demo.py [--files 20] [--keep]

It starts a loopback receiver, sets up a throw-away instance with `pywats-client config init`,
adds a watch folder, starts the service, drops WSJF files and a CSV file (read by the example
plugin from converters/), waits until the receiver has stored every report, shows `status`,
then stops the service with SIGTERM. Nothing outside a temporary folder is touched.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from runkit import REPO, cli, run, service_status, wait_for

from pywats_client.http.receiver import Receiver

TOKEN = "ZGVtbzpkZW1vLXNlY3JldA=="  # base64("demo:demo-secret")


def report(n: int) -> dict[str, object]:
    return {
        "type": "T", "pn": "DEMO-PCBA", "sn": f"DEMO{n:05d}", "rev": "B", "processCode": 10,
        "result": "P" if n % 7 else "F", "start": "2026-05-01T10:00:00+02:00",
        "root": {"id": 0, "group": "M", "stepType": "SequenceCall", "name": "MainSequence",
                 "status": "P" if n % 7 else "F",
                 "seqCall": {"path": "demo.seq", "name": "MainSequence", "version": "1"},
                 "steps": [{"id": 1, "group": "M", "stepType": "ET_NLT", "name": "3V3 rail",
                            "status": "P" if n % 7 else "F",
                            "numericMeas": [{"compOp": "GELE", "name": None, "unit": "V",
                                             "status": "P" if n % 7 else "F",
                                             "value": 3.3 if n % 7 else 3.9,
                                             "lowLimit": 3.2, "highLimit": 3.4}]}]},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=20, help="WSJF files to drop")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="pywats-demo-"))
    data_dir, watch, store = work / "data", work / "watch", work / "receiver-store"
    watch.mkdir()
    print(f"demo folder: {work}")
    service = None
    with Receiver(store, token=TOKEN) as receiver:
        try:
            print(f"1. WATS receiver listening on {receiver.url}")
            run(data_dir, "config", "init", "--non-interactive", "--server-url", receiver.url,
                "--api-token", TOKEN, "--station-name", "demo-station", "--location", "lab")
            run(data_dir, "config", "set", "queue.settle_time", "0.3")
            run(data_dir, "config", "add-watch-folder", str(watch))
            plugin_dir = data_dir / "default" / "converters"
            plugin_dir.mkdir(parents=True, exist_ok=True)
            shutil.copy(REPO / "converters" / "csv_example.py", plugin_dir)
            print("2. instance configured; example CSV converter installed as a plugin")

            log = open(work / "service.log", "wb")  # noqa: SIM115 - closed below
            service = subprocess.Popen([*cli(), "--data-dir", str(data_dir), "start"],
                                       stdout=log, stderr=subprocess.STDOUT)
            log.close()
            print(f"3. service started (pid {service.pid})")

            started = time.monotonic()
            expected = 0
            for n in range(args.files):
                tmp = work / f".drop-{n}"
                tmp.write_text(json.dumps(report(n)))
                os.replace(tmp, watch / f"uut-{n:03d}.json")
                expected += 1
            shutil.copy(REPO / "converters" / "example.csv", watch / "line-a.csv")
            expected += len({line.split(",")[0] for line in
                             (REPO / "converters" / "example.csv").read_text().splitlines()[1:]
                             if line.strip()})
            print(f"4. dropped {args.files} WSJF files and 1 CSV file into {watch}")

            if not receiver.wait_for_reports(expected, timeout=120):
                print(f"only {len(receiver.stored_ids())} of {expected} reports arrived; "
                      f"see {work / 'service.log'}")
                return 1
            elapsed = time.monotonic() - started
            print(f"5. the receiver stored all {expected} reports in {elapsed:.1f}s:")
            for path in sorted(store.glob("*.json"))[:5]:
                stored = json.loads(path.read_text())
                print(f"   {stored['id']}  sn={stored['sn']:<10} result={stored['result']}")
            print("   ...")
            done = sorted(p.name for p in (watch / "done").iterdir())
            print(f"   sources moved to {watch / 'done'}: {len(done)} files")
            # The service publishes its status each second; show it in any case.
            wait_for("the status to count every upload", lambda: service_status(
                data_dir / "default").get("uploaded", 0) >= expected, 10, required=False)
            print("6. pywats-client status:")
            status = run(data_dir, "status", ok=(0, 6))
            print("   " + status.strip().replace("\n", "\n   "))
        finally:
            if service is not None:
                service.send_signal(signal.SIGTERM)
                code = service.wait(timeout=60)
                print(f"7. service stopped with SIGTERM (exit code {code})")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

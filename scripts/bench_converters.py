#!/usr/bin/env python3
"""Conversion speed and memory per converter, on the real sample files.

    python scripts/bench_converters.py [--samples ../shared/samples] [--repeat 5]

For every built-in converter and the sample files it owns: reports/s and MB/s (median of
`--repeat` runs of converting all its samples, finalisation and validation included, as the
service does it), and the peak Python memory (tracemalloc) while converting its largest sample.
Prints a table; `--json FILE` also writes the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pywats_client.converters import ConverterContext, ConverterRegistry  # noqa: E402
from pywats_client.pipeline import convert_file  # noqa: E402
from pywats_client.receiver import PROCESSES_LIST  # noqa: E402
from tests.test_converter_contract import OWNERS  # noqa: E402


def context_for(path: Path) -> ConverterContext:
    # A station set up as the README says: the server's process list is known, and the
    # folder's default operation is PCBA test (for formats that do not name one).
    return ConverterContext(station_name="bench", location="lab", purpose="bench",
                            file_mtime=path.stat().st_mtime, defaults={"process_code": 50},
                            processes={p["name"]: p["code"] for p in PROCESSES_LIST})


def measure(registry: ConverterRegistry, name: str, files: list[Path],
            repeat: int) -> dict[str, float | int | str]:
    converter = registry.create(name)
    size = sum(p.stat().st_size for p in files)
    reports = 0
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        reports = sum(len(convert_file(p, converter, context_for(p)).reports) for p in files)
        runs.append(time.perf_counter() - started)
    seconds = statistics.median(runs)
    largest = max(files, key=lambda p: p.stat().st_size)
    tracemalloc.start()
    convert_file(largest, converter, context_for(largest))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"converter": name, "files": len(files), "reports": reports, "bytes": size,
            "seconds": seconds, "reports_per_s": reports / seconds,
            "mb_per_s": size / 2**20 / seconds, "largest": largest.name,
            "largest_bytes": largest.stat().st_size, "peak_mb": peak / 2**20}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=Path, default=REPO.parent / "shared" / "samples")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not args.samples.is_dir():
        print(f"no samples at {args.samples}", file=sys.stderr)
        return 2
    registry = ConverterRegistry()
    rows = []
    for name, globs in OWNERS.items():
        files = sorted(p for g in globs for p in args.samples.glob(g) if p.is_file())
        if files and name in registry.names():
            rows.append(measure(registry, name, files, args.repeat))
    print(f"{'converter':<30} {'files':>5} {'reports':>7} {'KiB':>8} {'reports/s':>10} "
          f"{'MB/s':>7} {'peak MB (largest file)':>24}")
    for r in rows:
        print(f"{r['converter']:<30} {r['files']:>5} {r['reports']:>7} "
              f"{int(r['bytes']) / 1024:>8.0f} {r['reports_per_s']:>10.1f} "
              f"{r['mb_per_s']:>7.2f} {r['peak_mb']:>10.1f} "
              f"({int(r['largest_bytes']) / 1024:.0f} KiB)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

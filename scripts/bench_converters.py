#!/usr/bin/env python3
"""Conversion speed and memory per converter, on the real sample files (and large ones).

    python scripts/bench_converters.py [--samples ../shared/samples] [--repeat 5]
                                       [--synthetic] [--memory] [--json FILE]

For every built-in converter and the sample files it owns: reports/s and MB/s (median of
`--repeat` runs of converting all its samples, finalisation and validation included, as the
service does it), and the peak Python memory (tracemalloc) while converting its largest
sample. The input of a converter that reads a unit (a Klippel header and its data folder)
counts the whole unit.

`--memory` measures instead the peak RSS per MB of input of every converter (each in a
fresh process, as the service converts and queues a file) on a large input: WSJF, WSXF and
ATML files of 20 MB (--big-mb) built by tests/bigfiles.py, the synthetic inputs below, and
the largest sample for the rest. The figure is what a converter's `memory_ratio` should
cover.

`--synthetic` adds inputs of the shape a busy line produces, built from the samples in a
temporary folder (nothing is written into the repository): a WSXF export of 200 reports, an
ATML batch of 50 sockets, an i3070 panel of 200 boards, a Seica panel of 20 boards with
1 000 tests each, an .xjlog of 200 runs, and a Klippel unit whose curves have 5 000 points.
Prints a table; `--json FILE` also writes the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pywats_client.converters import Converter, ConverterContext, ConverterRegistry  # noqa: E402
from pywats_client.http.receiver import PROCESSES_LIST  # noqa: E402
from pywats_client.service.pipeline import companions_of, convert_file  # noqa: E402
from tests.bigfiles import BUILDERS, samples_present  # noqa: E402
from tests.test_converter_contract import OWNERS  # noqa: E402


def context_for(path: Path) -> ConverterContext:
    # A station set up as the README says: the server's process list is known, and the
    # folder's default operation is PCBA test (for formats that do not name one).
    return ConverterContext(station_name="bench", location="lab", purpose="bench",
                            file_mtime=path.stat().st_mtime, defaults={"process_code": 50},
                            processes={p["name"]: p["code"] for p in PROCESSES_LIST})


def input_size(converter: Converter, path: Path) -> int:
    """Bytes read for one conversion: the file and the files of its unit (a data folder)."""
    size = path.stat().st_size
    for companion in companions_of(converter, path):
        if companion.is_dir():
            size += sum(f.stat().st_size for f in companion.rglob("*") if f.is_file())
        elif companion.is_file():
            size += companion.stat().st_size
    return size


def measure(registry: ConverterRegistry, name: str, files: list[Path], repeat: int,
            label: str = "") -> dict[str, Any]:
    converter = registry.create(name)
    sizes = {path: input_size(converter, path) for path in files}
    reports = 0
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        reports = sum(len(convert_file(p, converter, context_for(p)).reports) for p in files)
        runs.append(time.perf_counter() - started)
    seconds = statistics.median(runs)
    largest = max(files, key=sizes.__getitem__)
    tracemalloc.start()
    convert_file(largest, converter, context_for(largest))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    size = sum(sizes.values())
    return {"converter": name, "input": label or f"{len(files)} sample(s)",
            "files": len(files), "reports": reports, "bytes": size, "seconds": seconds,
            "reports_per_s": reports / seconds, "mb_per_s": size / 2**20 / seconds,
            "largest": largest.name, "largest_bytes": sizes[largest], "peak_mb": peak / 2**20}


# -- synthetic inputs ---------------------------------------------------------------------------


def wsxf_reports(samples: Path, folder: Path, count: int = 200) -> Path | None:
    """A WSXF export of `count` reports: the test report sample's `<Report>`, each with its
    own id and serial number."""
    template = samples / "wsxf" / "uut-wsxf.xml"
    if not template.is_file():
        return None
    text = template.read_text("utf-8-sig")
    start, end = text.index("<Report "), text.rindex("</Report>") + len("</Report>")
    one = text[start:end]
    copies = [re.sub(r' SN="([^"]*)"', rf' SN="\g<1>-{n:05d}"',
                     re.sub(r' ID="[^"]*"', f' ID="00000000-0000-4000-8000-{n:012d}"', one,
                            count=1), count=1)
              for n in range(count)]
    path = folder / "wsxf_reports.xml"
    path.write_text(text[:start] + "\n".join(copies) + text[end:], "utf-8")
    return path


def atml_batch(samples: Path, folder: Path, sockets: int = 50) -> Path | None:
    """An ATML batch file: the production sample's one TestResults repeated, each with its
    own uuid (the shape of a big batch report)."""
    template = (samples / "atml"
                / "Report_LS2621-1002[Passed][9190300075][2019-03-11][15 06 37].xml")
    if not template.is_file():
        return None
    text = template.read_text("latin-1")
    start = text.index("<trc:TestResults ")
    end = text.index("</trc:TestResults>") + len("</trc:TestResults>")
    one = text[start:end]
    copies = [re.sub(r'uuid="[^"]*"', f'uuid="00000000-0000-4000-8000-{n:012d}"', one, count=1)
              for n in range(sockets)]
    path = folder / "atml_batch.xml"
    path.write_text(text[:start] + "\n".join(copies) + text[end:], "latin-1")
    return path


def i3070_panel(samples: Path, folder: Path, boards: int = 200) -> Path | None:
    """An i3070 panel log: the largest sample's @BATCH header with its @BTEST repeated."""
    found = sorted((samples / "i3070").glob("*"), key=lambda p: p.stat().st_size)
    if not found:
        return None
    text = found[-1].read_text("latin-1")
    header, rest = text.split("\n", 1)
    board = rest.rstrip().removesuffix("}")  # the @BTEST and its records, without @BATCH's }
    body = "".join(board.replace("{@BTEST|", f"{{@BTEST|B{n:05d}-", 1) + "\n"
                   for n in range(boards))
    path = folder / "i3070_panel.log"
    path.write_text(f"{header}\n{body}}}\n", "latin-1")
    return path


def seica_panel(samples: Path, folder: Path, boards: int = 20, tests: int = 1000) -> Path:
    """A Seica panel of `boards` boards with `tests` tests each (fixed seed): no public
    sample of the format exists."""
    rng = random.Random(4711)
    parts = ['<?xml version="1.0" encoding="UTF-8"?>\n<R>\n',
             '  <PrgC Prg="PCB4711_C" Ver="3.2"/>\n  <FidMrk X1="1" Y1="2"/>\n',
             '  <ST NM="PCB4711_C" OP="bench" NMP="Synthetic panel"/>\n']
    for board in range(boards):
        parts.append(f'  <BI BC="PANEL-1" BCP="SN-{board:05d}" '
                     f'SD="15-03-2024 13:{board // 60:02d}:{board % 60:02d}">\n')
        for test in range(tests):
            nominal = 10 ** rng.randint(0, 6)
            value = nominal * rng.uniform(0.9, 1.1)
            verdict = 0 if abs(value - nominal) <= 0.08 * nominal else 1
            parts.append(
                f'    <TEST F="Group {test // 50}" NM="R{test}" MR="{value:.6g}" '
                f'ML="{nominal * 0.92:.6g}" MH="{nominal * 1.08:.6g}" MU="Ohm" '
                f'TR="{verdict}" TT="{rng.randint(5, 120)}"/>\n')
        parts.append("  </BI>\n")
    parts.append('  <ET ED="15-03-2024 14:00:00" NF="1"/>\n</R>\n')
    path = folder / "seica_panel.xml"
    path.write_text("".join(parts), encoding="utf-8")
    return path


def xjtag_runs(samples: Path, folder: Path, runs: int = 200) -> Path | None:
    """An .xjlog of `runs` runs: the largest run of the samples, each with its own serial."""
    archives = sorted((samples / "xjtag").glob("*.xjlog"), key=lambda p: p.stat().st_size)
    if not archives:
        return None
    with zipfile.ZipFile(archives[-1]) as source:
        name = max((n for n in source.namelist() if n.startswith("Run ") and n.endswith(".xml")),
                   key=lambda n: source.getinfo(n).file_size)
        run = source.read(name)
    path = folder / "many_runs.xjlog"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        for n in range(1, runs + 1):
            out.writestr(f"Run {n}.xml", run.replace(b"<serial>", f"<serial>R{n:05d}-".encode()))
            out.writestr(f"Run {n}.checksum", b"")
        out.writestr("Info.xml", f"<LogFileInfo><Version>1</Version><TestRunCount>{runs}"
                                 "</TestRunCount><ExportedFromOutput>false</ExportedFromOutput>"
                                 "</LogFileInfo>")
    return path


def klippel_curves(samples: Path, folder: Path, points: int = 5000) -> Path | None:
    """The Klippel sample unit with every curve resampled to `points` points."""
    headers = sorted((samples / "klippel").rglob("DUT *.txt"))
    headers = [h for h in headers if h.with_name(h.stem).is_dir()]
    if not headers:
        return None
    template = headers[0]
    header = folder / template.name
    header.write_bytes(template.read_bytes())
    data = folder / template.stem
    data.mkdir()
    for file in template.with_name(template.stem).iterdir():
        lines = file.read_text("latin-1").splitlines()  # byte for byte, whatever the code page
        if file.stem.endswith("-values"):
            (data / file.name).write_text("\n".join(lines) + "\n", "latin-1")
            continue
        rows = [line for line in lines[1:] if line.strip()]
        body = [f"{20 + n * 0.5:.2f}\t" + rows[n % len(rows)].split("\t", 1)[1]
                for n in range(points)]
        (data / file.name).write_text("\n".join([lines[0], *body]) + "\n", "latin-1")
    return header


SYNTHETIC: list[tuple[str, str, Callable[[Path, Path], Path | None]]] = [
    ("WATSStandardXMLConverter", "synthetic: 200 WSXF reports", wsxf_reports),
    ("ATMLConverter", "synthetic: batch of 50 sockets", atml_batch),
    ("KeysightI3070Converter", "synthetic: panel of 200 boards", i3070_panel),
    ("SeicaXMLConverter", "synthetic: 20 boards x 1000 tests", seica_panel),
    ("XJTAGConverter", "synthetic: .xjlog of 200 runs", xjtag_runs),
    ("KlippelConverter", "synthetic: curves of 5000 points", klippel_curves),
]


# -- peak RSS per MB of input ------------------------------------------------------------------


def wstf_steps(samples: Path, folder: Path, copies: int = 1000) -> Path | None:
    """A WSTF file whose step data is the sample's, `copies` times over (about 1.5 MB)."""
    template = samples / "wstf" / "WatsStandardTextFormat.txt"
    if not template.is_file():
        return None
    lines = template.read_text("utf-8").splitlines(keepends=True)
    start = next(n for n, line in enumerate(lines) if line.startswith("StepType\t")) + 1
    end = next(n for n, line in enumerate(lines) if line.startswith("--Step-Data-End--"))
    path = folder / "wstf_steps.txt"
    path.write_text("".join(lines[:start] + lines[start:end] * copies + lines[end:]), "utf-8")
    return path


def gr228x_tests(samples: Path, folder: Path, copies: int = 8000) -> Path | None:
    """A GR228x log whose second UUT's measurements are repeated (about 1.5 MB)."""
    found = sorted((samples / "teradyne_gr228x").glob("*"))
    if not found:
        return None
    lines = found[0].read_text("latin-1").splitlines(keepends=True)
    uuts = [n for n, line in enumerate(lines) if line.startswith("@")]
    if len(uuts) < 2:
        return None
    first = next(n for n in range(uuts[1] + 1, len(lines)) if "=" in lines[n])
    last = next((n for n in range(first, len(lines)) if "=" not in lines[n]), len(lines))
    path = folder / "gr228x_tests.log"
    path.write_text("".join(lines[:first] + lines[first:last] * copies + lines[last:]),
                    "latin-1")
    return path


MEMORY_INPUTS: list[tuple[str, Callable[[Path, Path], Path | None]]] = [
    ("WATSStandardTextConverter", wstf_steps), ("TeradyneICTConverter", gr228x_tests),
]

BIG_MB = 20  # the size of the WSJF, WSXF and ATML inputs built for the memory figures
BIG_KINDS = {"WATSStandardJsonConverter": "wsjf", "WATSStandardXMLConverter": "wsxf",
             "ATMLConverter": "atml"}


def _status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def rss_probe(name: str, path: Path) -> dict[str, Any]:
    """In this (fresh) process: convert `path` with converter `name` and queue its reports
    as the service does; RSS before and at the peak."""
    from pywats_client.converters.memory import ratio_of
    from pywats_client.queue.store import DurableQueue
    from pywats_client.service.pipeline import queue_reports

    converter = ConverterRegistry().create(name)
    with tempfile.TemporaryDirectory() as folder:
        queue = DurableQueue(Path(folder))
        queue.ensure_layout()
        base = _status_kb("VmRSS")
        conversion = convert_file(path, converter, context_for(path))
        queue_reports(queue, conversion)
        reports = len(conversion.reports)
        conversion.reports.clear()
        peak = _status_kb("VmHWM")
    size = input_size(converter, path)
    return {"converter": name, "input": path.name, "bytes": size, "reports": reports,
            "base_mb": base / 1024, "peak_mb": peak / 1024,
            "rss_per_mb": (peak - base) / 1024 / (size / 2**20), "memory_ratio": ratio_of(
                converter)}


def measure_memory(samples: Path, folder: Path, big_mb: float = BIG_MB
                   ) -> list[dict[str, Any]]:
    """Peak RSS per MB of input for every converter, each in a process of its own."""
    inputs: dict[str, Path] = {}
    for name, kind in BIG_KINDS.items():
        build, suffix = BUILDERS[kind]
        if samples_present():  # built from the samples: without them, the largest sample
            inputs[name] = build(folder / f"big-{kind}{suffix}", int(big_mb * 2**20))
    for name, _label, synthetic in [(n, "", b) for n, b in MEMORY_INPUTS] + SYNTHETIC:
        if name not in inputs:
            place = folder / name
            place.mkdir()
            found = synthetic(samples, place)
            if found is not None:
                inputs[name] = found
    for name, globs in OWNERS.items():
        files = [p for g in globs for p in samples.glob(g) if p.is_file()]
        if name not in inputs and files:
            inputs[name] = max(files, key=lambda p: p.stat().st_size)
    rows = []
    for name, path in inputs.items():
        done = subprocess.run([sys.executable, __file__, "--rss-probe", name, str(path)],
                              capture_output=True, text=True, timeout=600,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
        if done.returncode != 0:
            raise RuntimeError(f"measuring {name} on {path} failed:\n{done.stderr}")
        rows.append(json.loads(done.stdout))
    return rows


def print_memory(rows: list[dict[str, Any]]) -> None:
    print(f"{'converter':<29} {'input':<34} {'MB':>6} {'base MB':>8} {'peak MB':>8} "
          f"{'RSS/MB in':>10} {'ratio set':>10}")
    for r in rows:
        print(f"{r['converter']:<29} {r['input'][:34]:<34} {r['bytes'] / 2**20:>6.1f} "
              f"{r['base_mb']:>8.1f} {r['peak_mb']:>8.1f} {r['rss_per_mb']:>10.2f} "
              f"{r['memory_ratio']:>10.2f}")


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"{'converter':<29} {'input':<34} {'reports':>7} {'KiB':>8} {'reports/s':>10} "
          f"{'MB/s':>7} {'peak MB (largest)':>18}")
    for r in rows:
        print(f"{r['converter']:<29} {r['input'][:34]:<34} {r['reports']:>7} "
              f"{int(r['bytes']) / 1024:>8.0f} {r['reports_per_s']:>10.1f} "
              f"{r['mb_per_s']:>7.2f} {r['peak_mb']:>7.1f} "
              f"({int(r['largest_bytes']) / 1024:.0f} KiB)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=Path, default=REPO.parent / "shared" / "samples")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--synthetic", action="store_true",
                        help="also measure large inputs built from the samples")
    parser.add_argument("--memory", action="store_true",
                        help="peak RSS per MB of input of every converter, instead")
    parser.add_argument("--big-mb", type=float, default=BIG_MB,
                        help="size of the WSJF, WSXF and ATML inputs of --memory (MB)")
    parser.add_argument("--rss-probe", nargs=2, metavar=("CONVERTER", "FILE"),
                        help=argparse.SUPPRESS)  # the child process of --memory
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.rss_probe:
        print(json.dumps(rss_probe(args.rss_probe[0], Path(args.rss_probe[1]))))
        return 0
    if not args.samples.is_dir():
        print(f"no samples at {args.samples}", file=sys.stderr)
        return 2
    if args.memory:
        with tempfile.TemporaryDirectory() as folder:
            rows = measure_memory(args.samples, Path(folder), args.big_mb)
        print_memory(rows)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(rows, indent=2))
        return 0
    registry = ConverterRegistry()
    rows = []
    for name, globs in OWNERS.items():
        files = sorted(p for g in globs for p in args.samples.glob(g) if p.is_file())
        if files and name in registry.names():
            rows.append(measure(registry, name, files, args.repeat))
    if args.synthetic:
        with tempfile.TemporaryDirectory() as folder:
            for name, label, build in SYNTHETIC:
                place = Path(folder) / name
                place.mkdir()
                path = build(args.samples, place)
                if path is None:
                    print(f"note: no sample to build {label!r} from", file=sys.stderr)
                    continue
                rows.append(measure(registry, name, [path], max(1, min(args.repeat, 3)),
                                    label))
    print_table(rows)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

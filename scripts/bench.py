#!/usr/bin/env python3
"""Measure what the client costs a station: the whole performance budget in one command.

    python scripts/bench.py                  # the full run: a few minutes on 2 cores
    python scripts/bench.py --quick          # a smoke run: smaller sizes, shorter windows
    python scripts/bench.py --sections throughput,disk --json out.json

Every measurement runs the real service (`python -m pywats_client start`) or the real command
line as a subprocess, against the bundled receiver on loopback, as a station runs them. Each
figure is the median of `--repeat` runs.

* throughput  N files dropped at once into a watch folder with no converter bound (so each
              file is auto-detected), for WSJF, WSXF, WSTF and i3070 files and a mix of all
              four, the receiver answering after L in {0, 20} ms: reports/s from the first
              drop to the last acknowledgement, the ratio to the concurrency limit 5 / L, and
              how busy the service's CPU was (at L = 0 the limit should be CPU, not waiting)
* latency     one fresh file at a time on an idle service, drop -> stored at the receiver
              (the whole time), p50 and p99: renamed into the watch folder from another
              folder, and written in place and closed; then bursts of 50 renamed in at once.
              With --baseline, the same for another version of the client (a directory, or
              a git revision of this repository), e.g. one that waits for the settle time
* slowwriter  a tester that writes a WSTF, a WSXF and a WSJF file block by block, closing the
              file after each block and pausing in between (0.3 s, with a settle time of
              0.1 s: the proportions of 3 s pauses and the default 1 s), --slow-repeat times
              under post-action none and move: reports per UUT, partial uploads, errors
* idle        RSS, CPU and threads of `start` with an empty queue and two watch folders
* startup     wall time of `--help`, `--version`, `status` and `start --once` (empty queue)
              against `python -c pass`, and how many modules each imports (-X importtime)
* scale       100,000 items in pending/: wall time of `queue status` and `queue list --limit
              20`; the service's peak RSS while it scans and drains them, against 1,000 queued
* conversion  scripts/bench_converters.py on the samples: reports/s and MB/s per converter
* disk        fsync calls and bytes written per report from source file to completed/, by
              file or folder (strace -f -y when it can attach, else a counting sitecustomize)
* cpu         the service's CPU per report for the UUT example file (the receiver's not
              counted), against a bare json.loads + json.dumps of the same file, and the CPU
              of each stage of the path (detection, parsing, queue write, HTTP...) run alone
* memory      scripts/bench_converters.py --memory: peak RSS per MB of input for each
              converter, and `start --once` on one large (--big-mb) WSJF file

Inputs are made from the real samples under ../shared/samples (the serial number and id made
unique per file) or, without them, from small built-in files of the same formats. Prints a
table and writes every figure as JSON (`--json`, default bench-results/bench.json).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pywats_client.fsutil import filesystem_type  # noqa: E402
from pywats_client.http.receiver import Receiver  # noqa: E402
from pywats_client.queue.store import ItemHeader, encode_item  # noqa: E402
from tests import slow_writer  # noqa: E402
from tests.station import wait_until, wsjf_report  # noqa: E402

TOKEN = base64.b64encode(b"bench:bench").decode("ascii")
SETTLE = 0.25  # the watch folders' settle time, seconds
UPLOAD_WORKERS = 5  # the service's upload pool: the concurrency limit is 5 / L
LATENCIES_MS = (0.0, 20.0)
MIXES = ("wsjf", "wsxf", "wstf", "i3070", "mixed", "uut")
SECTIONS = ("throughput", "latency", "slowwriter", "idle", "startup", "scale", "conversion",
            "disk", "cpu", "memory")
# Scale runs last: it creates and deletes 100,000 files (see DEFAULT_WORKDIR).
RUN_ORDER = ("throughput", "latency", "slowwriter", "idle", "startup", "conversion", "disk",
             "cpu", "memory", "scale")
LATENCY_SETTLE = 1.0  # the latency section's settle time: the default of queue.settle_time
BURST = 50  # files renamed in at once
SLOW_PAUSE, SLOW_SETTLE = 0.3, 0.1  # a tenth of 3 s pauses against the default 1 s
UUT_SAMPLE = "WATS - WSJF UUT Example file.json"
DEFAULT_SAMPLES = REPO.parent / "shared" / "samples"
# Instances live here, on a real disk like a station's data dir (/tmp is often a tmpfs, where
# fsync costs nothing). Everything made is removed only when the run ends: ext4 passes over
# inodes freed in the last minutes when it allocates new ones, so right after thousands of
# files were deleted nearby, creating one can cost 1 ms of CPU instead of 0.02 ms (seen on
# the machine these figures come from), and a measurement must not pay for the clean-up of
# the one before. A disk shared with busy test suites shows the same: pick --workdir there.
DEFAULT_WORKDIR = REPO / "bench-results" / "work"
WORKDIR = DEFAULT_WORKDIR
_LEFTOVERS: list[Path] = []
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- waiting and measuring other processes -----------------------------------------------------


@contextmanager
def workspace() -> Iterator[str]:
    """A fresh folder under WORKDIR for one measurement, removed by `clean_up()`."""
    WORKDIR.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="bench-", dir=WORKDIR))
    _LEFTOVERS.append(folder)
    yield str(folder)


def python_env(extra: dict[str, str]) -> dict[str, str]:
    """The environment of every Python the bench starts: with compiled bytecode, as an
    installed package has it (pip compiles at install time). PYTHONDONTWRITEBYTECODE would
    make every start compile the package again; the bytecode goes to a cache of its own."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "PYTHONPYCACHEPREFIX": str(WORKDIR / "pycache"), **extra}


def clean_up() -> None:
    while _LEFTOVERS:
        shutil.rmtree(_LEFTOVERS.pop(), ignore_errors=True)


def calibrate() -> float:
    """Seconds of a fixed pure-Python loop: how fast this machine is right now (a shared or
    throttled machine can halve its speed between two runs; compare runs with this)."""
    start = time.perf_counter()
    total = 0
    for i in range(2_000_000):
        total += i
    return time.perf_counter() - start


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll `predicate` (another process brings it about) until truthy; raise on timeout."""
    return wait_until(predicate, timeout, what, tick=0.005)


@dataclass(frozen=True)
class ProcSample:
    """What /proc says about a process at one moment."""

    rss_kb: int
    hwm_kb: int  # peak RSS so far
    cpu_s: float  # user + system
    threads: int
    system_s: float = 0.0  # of which in the kernel


def proc_sample(pid: int) -> ProcSample:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.split()
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return ProcSample(int(fields["VmRSS"][0]), int(fields["VmHWM"][0]),
                      (int(stat[11]) + int(stat[12])) / CLK_TCK, int(fields["Threads"][0]),
                      int(stat[12]) / CLK_TCK)


def proc_io(pid: int) -> dict[str, int]:
    """/proc/PID/io: wchar = bytes given to write(); write_bytes = bytes sent to storage."""
    out = {}
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        key, _, value = line.partition(":")
        out[key.strip()] = int(value)
    return out


def own_cpu() -> float:
    """CPU seconds of this process (the receiver runs in it)."""
    t = os.times()
    return t.user + t.system


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# -- input files -------------------------------------------------------------------------------

_WSXF_FALLBACK = """<?xml version="1.0" encoding="utf-8"?>
<Reports xmlns="http://wats.virinco.com/schemas/WATS/Report/wsxf">
  <Report type="UUT" ID="{id}" Start="2026-05-01T10:00:00+02:00" Result="Passed" \
SN="{sn}" PN="PN-100" Rev="A" MachineName="bench" Location="lab" Purpose="bench">
    <UUT UserLoginName="bench" ExecutionTime="1.5" />
    <Process Code="10" Name="SW Debug" />
    <Step Id="1" Group="Main" Name="MainSequence Callback" StepType="SequenceCall" \
Status="Passed" StepIndex="0">
      <SequenceCall Name="Main" Version="1.0" Filename="main.seq" Filepath="main.seq" />
      <Step Id="2" Group="Main" Name="Voltage" StepType="ET_NLT" Status="Passed" StepIndex="1">
        <NumericLimit Name="Voltage" CompOperator="GELE" NumericValue="3.3" LowLimit="3.0" \
HighLimit="3.6" Units="V" Status="Passed" />
      </Step>
    </Step>
  </Report>
</Reports>
"""
_WSTF_FALLBACK = "\n".join([
    "--Header-Start--", "SerialNumber\t{sn}", "PartNumber\tPN-100", "Revision\tA",
    "OperationTypeName\tSW Debug", "UUTStatus\tPassed", "UTCStartDateTime\t2026-05-01T08:00:00",
    "StationName\tbench", "--Step-Data-Start--",
    "StepType\tStepName\tMeasureName\tValue\tLowLimit\tHighLimit\tCompOperator\tUnit\t"
    "StepStatus\tStepExecutionTime\tStepReportText\tStepErrorCode\tStepErrorMessage\t"
    "CausedSequenceFailure",
    "NumericLimitTest\tVoltage\t\t3.3\t3.0\t3.6\tGELE\tV\tPassed\t1\t\t\t\t",
    "PassFailTest\tPower good\t\tTRUE\t\t\t\t\tPassed\t1\t\t\t\t",
    "--Step-Data-End--", "UUTStatus\tPassed", "-- UUT-End--", ""])
_I3070_FALLBACK = "\n".join([
    "{{@BATCH|PN-100|01|1237|1||btest|260501100000||bench|lab|RevA|PN-100|Rev_001|",
    "{{@BTEST|{sn}|00|260501100010|000057|0|analog||n|n|260501100100||002|",
    "{{@BLOCK|r698|00",
    "{{@A-RES|0|+1.198020E+05{{@LIM3|+1.200000E+05|+1.296000E+05|+1.104000E+05}}}}", "}}",
    "{{@BLOCK|d506|00",
    "{{@A-DIO|0|+3.186357E-01{{@LIM2|+5.500000E-01|+1.000000E-01}}}}", "}}",
    "}}}}", ""])


@dataclass(frozen=True)
class Template:
    """One kind of input file: a text with `{sn}` (and `{id}`) holes, one report per file."""

    kind: str
    suffix: str
    text: str
    origin: str  # the sample file it came from, or "built-in"

    def render(self, n: int) -> bytes:
        return self.text.format(sn=f"BENCH{n:08d}", id=str(uuid.uuid4()).upper()).encode()


def _escape(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


def _from_sample(path: Path, kind: str, suffix: str, holes: list[tuple[str, str]]
                 ) -> Template | None:
    """A sample turned into a template by replacing its serial number (and id) with holes;
    None when the sample is missing or no longer has the text to replace."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    text = _escape(text)
    for old, new in holes:
        old = _escape(old)
        if old not in text:
            return None
        hole = _escape(new).replace("{{sn}}", "{sn}").replace("{{id}}", "{id}")
        text = text.replace(old, hole, 1)
    return Template(kind, suffix, text, str(path))


def load_templates(samples: Path) -> dict[str, Template]:
    """The WSXF, WSTF and i3070 inputs from the samples (or built-in ones), and WSJF."""
    found = {
        "wsxf": _from_sample(samples / "wsxf" / "uut-wsxf.xml", "wsxf", ".xml", [
            ('ID="D26DDF31-FD90-47A5-AF13-180404CDE8BE"', 'ID="{id}"'),
            ('SN="FATTest-422"', 'SN="{sn}"')]),
        "wstf": _from_sample(samples / "wstf" / "WatsStandardTextFormat.txt", "wstf", ".txt",
                             [("SerialNumber\t423664753", "SerialNumber\t{sn}")]),
        "i3070": _from_sample(samples / "i3070" / "FelixSnz_2-210805125029095MCALLEN241.log",
                              "i3070", ".log",
                              [("{@BTEST|38258378-007-12151210|", "{@BTEST|{sn}|")]),
    }
    fallback = {
        "wsxf": Template("wsxf", ".xml", _WSXF_FALLBACK, "built-in"),
        "wstf": Template("wstf", ".txt", _WSTF_FALLBACK, "built-in"),
        "i3070": Template("i3070", ".log", _I3070_FALLBACK, "built-in"),
    }
    templates = {kind: found[kind] or fallback[kind] for kind in fallback}
    # WSJF: the small report the end-to-end tests use, with its id given (as WATS exports do).
    wsjf = json.dumps(wsjf_report(0, report_id="ID-HOLE", sn="SN-HOLE"))
    wsjf = _escape(wsjf)
    wsjf = wsjf.replace('"ID-HOLE"', '"{id}"').replace('"SN-HOLE"', '"{sn}"')
    templates["wsjf"] = Template("wsjf", ".json", wsjf, "built-in (tests/station.py)")
    return templates


def uut_template(samples: Path) -> Template:
    """WATS's "WSJF UUT Example file" (26 KiB as compact JSON, 26 steps of every kind), with
    its id and serial number made holes; the small built-in report without the sample."""
    path = samples / "wsjf" / UUT_SAMPLE
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        report, origin = wsjf_report(0), "built-in (tests/station.py)"
    else:
        origin = str(path)
    report["id"], report["sn"] = "ID-HOLE", "SN-HOLE"
    text = _escape(json.dumps(report, separators=(",", ":"), ensure_ascii=False))
    text = text.replace('"ID-HOLE"', '"{id}"').replace('"SN-HOLE"', '"{sn}"')
    return Template("uut", ".json", text, origin)


class Inputs:
    """Unique input files of each kind; every file rendered is a new report."""

    def __init__(self, templates: dict[str, Template], uut: Template | None = None) -> None:
        self.templates = templates
        self.uut = uut  # the "uut" mix: WATS's UUT example file
        self._serial = 0

    def files(self, mix: str, n: int) -> list[tuple[str, bytes]]:
        kinds = ["wsjf", "wsxf", "wstf", "i3070"] if mix == "mixed" else [mix]
        out = []
        for i in range(n):
            template = self.uut if mix == "uut" and self.uut else self.templates[
                kinds[i % len(kinds)]]
            self._serial += 1
            name = f"{template.kind}-{self._serial:08d}{template.suffix}"
            out.append((name, template.render(self._serial)))
        return out


def stage(folder: Path, files: list[tuple[str, bytes]], *, settled: bool = True) -> list[Path]:
    """Write files beside the watch folder (same filesystem), so a drop is one rename.

    `settled`: an old mtime, as for files that are complete before the service looks."""
    folder.mkdir(parents=True, exist_ok=True)
    old = time.time() - 3600
    paths = []
    for name, data in files:
        path = folder / name
        path.write_bytes(data)
        if settled:
            os.utime(path, (old, old))
        paths.append(path)
    return paths


# -- a station: instance folder, config, the service as a subprocess -------------------------


@dataclass
class Station:
    """An instance folder with its config; `service()` runs `start` on it."""

    root: Path
    server_url: str
    folders: int = 1
    env: dict[str, str] = field(default_factory=dict)
    settle: float = SETTLE
    post_action: str = "move"

    def __post_init__(self) -> None:
        self.data = self.root / "data"
        self.instance = self.data / "default"
        self.instance.mkdir(parents=True, exist_ok=True)
        self.watches = [self.root / f"watch{n}" for n in range(self.folders)]
        for watch in self.watches:
            watch.mkdir(exist_ok=True)
        # As the README sets up a station: formats that name no process (i3070) get the
        # station's default one.
        folders: list[Any] = [str(w) for w in self.watches]
        if self.post_action != "move":
            folders = [{"path": str(w), "post_action": self.post_action} for w in self.watches]
        config = {
            "server_url": self.server_url, "api_token": TOKEN, "station_name": "bench",
            "queue": {"watch_folders": folders, "settle_time": self.settle},
            "converters": {"defaults": {"process_code": 50}},
        }
        (self.instance / "config.json").write_text(json.dumps(config))

    @property
    def queue(self) -> Path:
        return self.instance / "queue"

    def count(self, state: str) -> int:
        try:
            return sum(1 for _ in os.scandir(self.queue / state))
        except FileNotFoundError:
            return 0

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "pywats_client", "--data-dir", str(self.data), *args]

    def process_env(self) -> dict[str, str]:
        path = os.pathsep.join(p for p in (self.env.get("PYTHONPATH"), str(REPO)) if p)
        return python_env({**self.env, "PYTHONPATH": path})

    @contextmanager
    def service(self) -> Iterator[subprocess.Popen[bytes]]:
        status = self.instance / "state" / "status.json"
        with contextlib.suppress(FileNotFoundError):
            status.unlink()
        # Started from the station's own folder, as a service manager does: `python -m` puts
        # the working directory first on sys.path, and the repository must not be it.
        proc = subprocess.Popen(self.command("start"), env=self.process_env(), cwd=self.root,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: proc.poll() is not None
                     or (status.exists() and b'"running"' in status.read_bytes()),
                     60, "the service to start")
            if proc.poll() is not None:
                raise RuntimeError(f"the service exited with {proc.returncode}; see "
                                   f"{self.instance / 'logs'}")
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def receiver(root: Path, latency_ms: float = 0.0) -> Iterator[Receiver]:
    """The bundled receiver on loopback, storing in memory (tmpfs) when it can: a WATS server
    is another machine, and its writes must not queue behind the station's fsyncs in the
    same filesystem journal (they did: uploads slowed down by half while files converted)."""
    shm = Path("/dev/shm")
    store_root = Path(tempfile.mkdtemp(prefix="bench-store-", dir=shm)) if (
        shm.is_dir() and os.access(shm, os.W_OK)) else root
    rx = Receiver(store_root / "store", token=TOKEN).start()
    rx.faults.latency_ms = latency_ms
    try:
        yield rx
    finally:
        rx.stop()
        if store_root != root:
            shutil.rmtree(store_root, ignore_errors=True)


def drop_and_wait(rx: Receiver, station: Station, staged: list[Path], watch: Path,
                  expected: int, timeout: float = 600) -> float:
    """Move staged files into `watch`; seconds until the receiver holds `expected` reports.
    Then wait until the service has filed them all in completed/ (not part of the time)."""
    start = time.monotonic()
    for path in staged:
        os.replace(path, watch / path.name)
    deadline = start + timeout
    while not rx.wait_for_reports(expected, timeout=0.5):
        notes = sorted((watch / "error").glob("*.error.txt"))
        if notes:
            raise RuntimeError(f"a bench input could not be converted: {notes[0].read_text()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(rx.stored_ids())} of {expected} reports arrived; "
                               f"see {station.instance / 'logs'}")
    elapsed = time.monotonic() - start
    wait_for(lambda: station.count("completed") >= expected, 60, "completed/ to fill")
    return elapsed


# -- 1. throughput -----------------------------------------------------------------------------


def measure_throughput(inputs: Inputs, mixes: list[str], files: int, repeat: int
                       ) -> list[dict[str, Any]]:
    results = []
    for mix in mixes:
        with workspace() as tmp:
            root = Path(tmp)
            with receiver(root) as rx:
                station = Station(root, rx.url)
                with station.service() as proc:
                    # One small batch first: imports, the process list and the detectors warm.
                    warm = stage(root / "staging", inputs.files(mix, 10))
                    drop_and_wait(rx, station, warm, station.watches[0], 10)
                    total = 10
                    for latency in LATENCIES_MS:
                        rx.faults.latency_ms = latency
                        runs = []
                        for _ in range(repeat):
                            staged = stage(root / "staging", inputs.files(mix, files))
                            before, mine = proc_sample(proc.pid), own_cpu()
                            total += files
                            seconds = drop_and_wait(rx, station, staged, station.watches[0],
                                                    total)
                            after = proc_sample(proc.pid)
                            runs.append({
                                "seconds": seconds, "reports_per_s": files / seconds,
                                "service_cpu_percent": 100 * (after.cpu_s - before.cpu_s)
                                / seconds,
                                "receiver_cpu_percent": 100 * (own_cpu() - mine) / seconds,
                            })
                        results.append(_throughput_row(mix, latency, files, runs))
                        _progress(f"throughput {mix} L={latency:.0f} ms: "
                                  f"{results[-1]['reports_per_s']:.0f}/s")
            # With latency, the best possible is the lower of the concurrency limit and what
            # the CPU allows (the rate without latency): heavy inputs are CPU-bound well below
            # 5 / L on a small machine.
            unhindered = next(r["reports_per_s"] for r in results
                              if r["mix"] == mix and r["latency_ms"] == 0)
            for row in results:
                if row["mix"] == mix and row["latency_ms"] > 0:
                    row["best_possible_per_s"] = min(row["limit_per_s"], unhindered)
                    row["ratio_to_best_possible"] = (row["reports_per_s"]
                                                     / row["best_possible_per_s"])
    return results


def _throughput_row(mix: str, latency: float, files: int, runs: list[dict[str, float]]
                    ) -> dict[str, Any]:
    rate = median([r["reports_per_s"] for r in runs])
    row: dict[str, Any] = {
        "mix": mix, "latency_ms": latency, "files": files, "runs": runs,
        "reports_per_s": rate,
        "service_cpu_percent": median([r["service_cpu_percent"] for r in runs]),
        "receiver_cpu_percent": median([r["receiver_cpu_percent"] for r in runs]),
    }
    if latency > 0:
        row["limit_per_s"] = UPLOAD_WORKERS / (latency / 1000)
        row["ratio_to_limit"] = rate / row["limit_per_s"]
    return row


# -- 2. latency --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Client:
    """A version of the client to measure: this one, or another checkout (`--baseline`)."""

    name: str
    env: dict[str, str] = field(default_factory=dict)


def baseline_client(spec: str | None) -> Client | None:
    """The client of `--baseline`: a directory holding a checkout, or a git revision of this
    repository (exported with `git archive`, so no worktree is registered)."""
    if not spec:
        return None
    folder = Path(spec)
    if not (folder / "pywats_client").is_dir():
        WORKDIR.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix="baseline-", dir=WORKDIR))
        _LEFTOVERS.append(folder)
        archive = subprocess.run(["git", "-C", str(REPO), "archive", spec], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return Client(f"baseline {spec}", {"PYTHONPATH": str(folder.resolve())})


def percentiles(times: list[float]) -> dict[str, Any]:
    times = sorted(times)
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))] if times else float("nan")
    return {"samples": len(times), "p50_s": median(times), "p99_s": p99,
            "max_s": times[-1] if times else float("nan")}


def measure_latency(inputs: Inputs, samples: int, bursts: int, clients: list[Client]
                    ) -> dict[str, Any]:
    """Drop -> stored for one fresh file at a time, renamed in or written in place; then
    bursts of BURST files renamed in at once. Fresh files (mtime now): nothing may be taken
    for being old. Each client has an idle service of its own."""
    rows = []
    for client in clients:
        with workspace() as tmp:
            root = Path(tmp)
            with receiver(root) as rx:
                station = Station(root, rx.url, env=client.env, settle=LATENCY_SETTLE)
                watch = station.watches[0]
                logs = station.instance / "logs"
                with station.service():
                    stored = 0

                    def arrived(n: int, rx: Receiver = rx, logs: Path = logs) -> None:
                        if not rx.wait_for_reports(n, timeout=60):
                            raise RuntimeError(f"report {n} did not arrive within 60 s; see "
                                               f"{logs}")

                    # The first one pays for lazy imports.
                    (name, data), = inputs.files("wsjf", 1)
                    stage(root / "staging", [(name, data)], settled=False)
                    os.replace(root / "staging" / name, watch / name)
                    stored += 1
                    arrived(stored)
                    renamed, in_place = [], []
                    for name, data in inputs.files("wsjf", samples):
                        stage(root / "staging", [(name, data)], settled=False)
                        start = time.monotonic()
                        os.replace(root / "staging" / name, watch / name)
                        stored += 1
                        arrived(stored)
                        renamed.append(time.monotonic() - start)
                    for name, data in inputs.files("wsjf", samples):
                        start = time.monotonic()
                        with open(watch / name, "wb") as fh:
                            fh.write(data)
                        stored += 1
                        arrived(stored)
                        in_place.append(time.monotonic() - start)
                    burst_times = []
                    for _ in range(bursts):
                        staged = stage(root / "staging", inputs.files("wsjf", BURST),
                                       settled=False)
                        start = time.monotonic()
                        for path in staged:
                            os.replace(path, watch / path.name)
                        stored += BURST
                        arrived(stored)
                        burst_times.append(time.monotonic() - start)
        rows += [
            {"client": client.name, "path": "renamed in", **percentiles(renamed)},
            {"client": client.name, "path": "written in place, closed", **percentiles(in_place)},
            {"client": client.name, "path": f"burst of {BURST} renamed in",
             **percentiles(burst_times)},
        ]
        _progress(f"latency {client.name}: renamed in p50 {rows[-3]['p50_s'] * 1000:.0f} ms, "
                  f"in place p50 {rows[-2]['p50_s'] * 1000:.0f} ms, burst p50 "
                  f"{rows[-1]['p50_s'] * 1000:.0f} ms")
    return {"settle_s": LATENCY_SETTLE, "samples": samples, "bursts": bursts,
            "conversion_s": conversion_time(inputs), "rows": rows}


def conversion_time(inputs: Inputs, runs: int = 21) -> float:
    """Median seconds to convert and finalise the latency section's input, in this process
    (what a file costs between being taken and being queued)."""
    from pywats_client.config.settings import Settings
    from pywats_client.converters import ConverterRegistry
    from pywats_client.service.pipeline import choose_converter, convert_file, make_context

    registry, settings = ConverterRegistry(), Settings()
    with workspace() as tmp:
        path = Path(tmp) / "latency.json"
        times = []
        for _, data in inputs.files("wsjf", runs):
            path.write_bytes(data)
            start = time.perf_counter()
            converter, reason = choose_converter(registry, path, name=None)
            convert_file(path, converter, make_context(settings, path), reason)
            times.append(time.perf_counter() - start)
    return median(times)


# -- 2b. slow writer ---------------------------------------------------------------------------


def measure_slowwriter(repeat: int, concurrent: int, clients: list[Client]) -> dict[str, Any]:
    """`repeat` UUTs of each of WSTF, WSXF and WSJF, each file written by a slow writer that
    closes it after each block; `concurrent` UUTs of each kind at a time. Counted at the
    receiver: UUTs with exactly one whole report, partial reports, extra reports."""
    rows = []
    whole = [f"Step {n}" for n in range(slow_writer.STEPS)]
    for client in clients:
        for post_action in ("none", "move"):
            with workspace() as tmp:
                root = Path(tmp)
                with receiver(root) as rx:
                    station = Station(root, rx.url, env=client.env, settle=SLOW_SETTLE,
                                      post_action=post_action)
                    watch = station.watches[0]
                    started = time.monotonic()
                    with station.service():
                        serial = 0
                        for first in range(0, repeat, concurrent):
                            writers = []
                            for _ in range(min(concurrent, repeat - first)):
                                serial += 1
                                for kind, (suffix, blocks) in slow_writer.KINDS.items():
                                    sn = f"SLOW-{kind}-{serial:05d}"
                                    writers.append(threading.Thread(
                                        target=slow_writer.write_slowly,
                                        args=(watch / f"{sn}{suffix}", blocks(sn), SLOW_PAUSE)))
                            for writer in writers:
                                writer.start()
                            for writer in writers:
                                writer.join()
                        # Every UUT's whole report (a baseline may never send some), then
                        # one more file: once it is in, the files before it are done with.
                        expected = serial * len(slow_writer.KINDS)
                        with contextlib.suppress(AssertionError):
                            wait_until(lambda rx=rx, n=expected: _whole_reports(rx) >= n, 30,
                                       "every UUT's whole report")
                        marker = wsjf_report(0, report_id=str(uuid.uuid4()), sn="MARKER")
                        (watch / ".marker.tmp").write_text(json.dumps(marker))
                        os.replace(watch / ".marker.tmp", watch / "marker.json")
                        marker_id = str(marker["id"])
                        wait_for(lambda rx=rx, marker_id=marker_id: marker_id in rx.stored_ids(),
                                 120, "the marker")
                    seconds = time.monotonic() - started
                    reports: dict[str, list[list[str]]] = {}
                    for rid in rx.stored_ids():
                        report = json.loads((rx.store / f"{rid}.json").read_text())
                        if report["sn"] != "MARKER":
                            reports.setdefault(report["sn"], []).append(
                                slow_writer.step_names(report))
                    errors = [p.name for p in (watch / "error").glob("*.error.txt")] if (
                        watch / "error").is_dir() else []
            uuts = repeat * len(slow_writer.KINDS)
            rows.append({
                "client": client.name, "post_action": post_action, "uuts": uuts,
                "one_whole_report": sum(1 for r in reports.values() if r == [whole]),
                "partial_reports": sum(1 for r in reports.values() for s in r if s != whole),
                "uuts_with_several_reports": sum(1 for r in reports.values() if len(r) > 1),
                "uuts_without_a_whole_report": uuts - sum(
                    1 for r in reports.values() if whole in r),
                "error_files": len(errors), "seconds": seconds,
            })
            _progress(f"slowwriter {client.name}, post-action {post_action}: "
                      f"{rows[-1]['one_whole_report']}/{uuts} UUTs with one whole report, "
                      f"{rows[-1]['partial_reports']} partial reports")
    return {"pause_s": SLOW_PAUSE, "settle_s": SLOW_SETTLE, "repeat": repeat,
            "concurrent": concurrent, "steps": slow_writer.STEPS, "rows": rows}


_WHOLE: dict[str, bool] = {}  # report id -> it holds every step a slow writer writes


def _whole_reports(rx: Receiver) -> int:
    """How many of the stored reports hold every step a slow writer writes."""
    whole = [f"Step {n}" for n in range(slow_writer.STEPS)]
    for rid in rx.stored_ids() - _WHOLE.keys():
        try:
            report = json.loads((rx.store / f"{rid}.json").read_text())
        except (OSError, ValueError):
            continue
        _WHOLE[rid] = slow_writer.step_names(report) == whole
    return sum(_WHOLE[rid] for rid in rx.stored_ids() if rid in _WHOLE)


# -- 3. idle -----------------------------------------------------------------------------------


def measure_idle(seconds: float) -> dict[str, Any]:
    with workspace() as tmp:
        root = Path(tmp)
        with receiver(root) as rx:
            station = Station(root, rx.url, folders=2)
            with station.service() as proc:
                # Let start-up work (the process list, the first status) finish first.
                threading.Event().wait(min(2.0, seconds))
                before = proc_sample(proc.pid)
                t0 = time.monotonic()
                threading.Event().wait(seconds)
                after = proc_sample(proc.pid)
                wall = time.monotonic() - t0
                wakeups = _context_switches(proc.pid)
    return {"seconds": wall, "rss_mb": after.rss_kb / 1024, "peak_rss_mb": after.hwm_kb / 1024,
            "cpu_percent": 100 * (after.cpu_s - before.cpu_s) / wall,
            "threads": after.threads, "context_switches": wakeups}


def _context_switches(pid: int) -> int:
    """Voluntary context switches of every thread: a busy-polling loop shows thousands."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            for line in (task / "status").read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches"):
                    total += int(line.split()[1])
    return total


# -- 4. start-up -------------------------------------------------------------------------------


def _entry_point() -> list[str]:
    """The console script beside this interpreter (what users run), else `-m`."""
    script = Path(sys.executable).parent / "pywats-client"
    if script.is_file():
        return [sys.executable, str(script)]
    return [sys.executable, "-m", "pywats_client"]


def _time_command(argv: list[str], env: dict[str, str], cwd: Path, runs: int
                  ) -> tuple[float, int]:
    """Median wall time of `argv` over `runs` runs (after one warm-up), and the number of
    modules it imports (-X importtime lines)."""
    quiet: dict[str, Any] = {"env": env, "cwd": cwd, "stdout": subprocess.DEVNULL,
                             "stderr": subprocess.DEVNULL}
    subprocess.run(argv, **quiet)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, **quiet)
        times.append(time.perf_counter() - start)
    traced = subprocess.run([argv[0], "-X", "importtime", *argv[1:]], env=env, cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    modules = sum(1 for line in traced.stderr.splitlines()
                  if line.startswith("import time:") and "self [us]" not in line)
    return median(times), modules


def measure_startup(runs: int) -> dict[str, Any]:
    with workspace() as tmp:
        root = Path(tmp)
        with receiver(root) as rx:
            station = Station(root, rx.url)
            env = station.process_env()
            base = ["--data-dir", str(station.data)]
            baseline, baseline_modules = _time_command([sys.executable, "-c", "pass"], env,
                                                       root, runs)
            commands = {
                "--help": ["--help"],
                "--version": ["--version"],
                "status": [*base, "status"],
                "start --once": [*base, "start", "--once"],
            }
            rows = []
            for label, args in commands.items():
                seconds, modules = _time_command([*_entry_point(), *args], env, root, runs)
                rows.append({"command": f"pywats-client {label}", "seconds": seconds,
                             "ratio": seconds / baseline, "modules": modules,
                             "modules_beyond_python": modules - baseline_modules})
    return {"runs": runs, "python_c_pass_s": baseline, "python_modules": baseline_modules,
            "commands": rows}


# -- 5. scale ----------------------------------------------------------------------------------


def fill_pending(queue: Path, n: int) -> float:
    """`n` items straight into pending/, in the queue's own format (no fsync: setup only)."""
    start = time.monotonic()
    pending = queue / "pending"
    for name in ("tmp", "pending", "processing", "completed", "failed", "corrupt"):
        (queue / name).mkdir(parents=True, exist_ok=True, mode=0o700)
    now = time.time()
    for i in range(n):
        report_id = str(uuid.uuid4())
        body = json.dumps(wsjf_report(i, report_id=report_id),
                          separators=(",", ":")).encode()
        header = ItemHeader(id=report_id, source=f"/bench/scale/{i}.json",
                            converter="WATSStandardJsonConverter", queued_at=now)
        fd = os.open(pending / f"{report_id}.wsq", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, encode_item(header, body))
        finally:
            os.close(fd)
    return time.monotonic() - start


def _drain(station: Station, rx: Receiver, target: int) -> dict[str, Any]:
    """Run the service until `target` reports are stored; RSS sampled all along."""
    samples: list[int] = []
    start = time.monotonic()
    with station.service() as proc:
        ready = time.monotonic() - start
        first: float | None = None
        while len(rx.stored_ids()) < target:
            if proc.poll() is not None:
                raise RuntimeError("the service stopped while draining")
            samples.append(proc_sample(proc.pid).rss_kb)
            if first is None and rx.stored_ids():
                first = time.monotonic() - start
            rx.wait_for_reports(target, timeout=0.05)
        drained = time.monotonic() - start
        final = proc_sample(proc.pid)
    return {"drained": target, "startup_s": ready, "first_upload_s": first,
            "seconds": drained, "reports_per_s": target / max(drained - ready, 1e-9),
            "peak_rss_mb": final.hwm_kb / 1024,
            "median_rss_mb": median(samples or [final.rss_kb]) / 1024,
            "final_rss_mb": final.rss_kb / 1024}


def measure_scale(items: int, small: int, drain_large: int, runs: int) -> dict[str, Any]:
    result: dict[str, Any] = {"items": items}
    with workspace() as tmp:
        root = Path(tmp)
        with receiver(root / "large") as rx:
            station = Station(root / "large", rx.url)
            result["setup_s"] = fill_pending(station.queue, items)
            env = station.process_env()
            for label, args in (("queue_status_s", ["queue", "status"]),
                                ("queue_list_s", ["queue", "list", "--limit", "20"])):
                times = []
                for _ in range(runs):
                    start = time.perf_counter()
                    done = subprocess.run(station.command(*args), env=env, cwd=station.root,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                    times.append(time.perf_counter() - start)
                    if done.returncode != 0:
                        raise RuntimeError(f"queue {args[1]} failed: {done.stderr.decode()}")
                result[label] = median(times)
            _progress(f"scale: queue status {result['queue_status_s']:.2f} s on {items} items")
            result["large"] = {"queued": items, **_drain(station, rx, drain_large)}
        with receiver(root / "small") as rx:
            station = Station(root / "small", rx.url)
            fill_pending(station.queue, small)
            result["small"] = {"queued": small, **_drain(station, rx, small)}
    result["rss_growth_mb"] = result["large"]["peak_rss_mb"] - result["small"]["peak_rss_mb"]
    return result


# -- 6. conversion -----------------------------------------------------------------------------


def measure_conversion(samples: Path, repeat: int) -> dict[str, Any]:
    """scripts/bench_converters.py, as it is, on the samples."""
    if not samples.is_dir():
        return {"skipped": f"no samples at {samples}", "rows": []}
    with workspace() as tmp:
        out = Path(tmp) / "converters.json"
        done = subprocess.run(
            [sys.executable, str(REPO / "scripts" / "bench_converters.py"), "--samples",
             str(samples), "--repeat", str(repeat), "--json", str(out)],
            env=python_env({"PYTHONPATH": str(REPO)}), capture_output=True, text=True)
        if done.returncode != 0 or not out.exists():
            return {"skipped": f"bench_converters.py exited with {done.returncode}: "
                    f"{done.stderr.strip()[-500:]}", "rows": []}
        rows = json.loads(out.read_text())
    rows = rows if isinstance(rows, list) else [rows]
    if not rows:
        return {"skipped": f"no samples the converters own under {samples}", "rows": []}
    return {"repeat": repeat, "rows": rows}


# -- 8. CPU per report against the JSON floor ---------------------------------------------------

_FLOOR = ("import json, sys, time\n"
          "data = open(sys.argv[1], 'rb').read()\n"
          "n = int(sys.argv[2])\n"
          "for _ in range(50):\n"
          "    json.dumps(json.loads(data))\n"
          "start = time.process_time()\n"
          "for _ in range(n):\n"
          "    json.dumps(json.loads(data))\n"
          "print((time.process_time() - start) / n)\n")


def json_floor(path: Path, loops: int = 2000) -> float:
    """CPU seconds of a bare json.loads + json.dumps of the file, in an interpreter like the
    service's: what handling the report cannot cost less than."""
    done = subprocess.run([sys.executable, "-c", _FLOOR, str(path), str(loops)],
                          env=python_env({}), capture_output=True, text=True, check=True)
    return float(done.stdout)


def cpu_stages(path: Path, copies: int) -> dict[str, float]:
    """CPU ms per report of each stage of the path from file to stored, run one after the
    other in this process (the receiver's threads not counted): what the service's figure is
    made of. `path` is a WSJF file; `copies` unique copies of it go through."""
    from pywats_client.config.settings import Settings, WatchFolder
    from pywats_client.converters import ConverterRegistry
    from pywats_client.queue.store import DurableQueue
    from pywats_client.report.checks import finalize
    from pywats_client.service.journal import ConversionJournal, file_key
    from pywats_client.service.pipeline import (
        converter_for,
        make_context,
        queue_reports,
    )
    from pywats_client.service.postaction import SeenFiles, SourceFile, apply_post_action
    from pywats_client.service.uploader import Uploader

    stages: dict[str, float] = {}
    clock = time.thread_time

    def lap(name: str, since: float) -> float:
        now = clock()
        stages[name] = stages.get(name, 0.0) + now - since
        return now

    template = json.loads(path.read_bytes())
    with workspace() as tmp, receiver(Path(tmp)) as rx:
        root = Path(tmp)
        folder = WatchFolder(root / "watch")
        folder.path.mkdir()
        files = []
        for n in range(copies + 20):
            template["sn"], template["id"] = f"STAGE{n:06d}", str(uuid.uuid4())
            files.append(folder.path / f"r{n}.json")
            files[-1].write_text(json.dumps(template, separators=(",", ":")))
        settings, registry = Settings(), ConverterRegistry()
        queue = DurableQueue(root / "queue")
        queue.ensure_layout()
        (root / "state").mkdir()
        journal, seen = ConversionJournal(root / "state"), SeenFiles(root / "state")
        journal.recover()
        client = Uploader(rx.url, TOKEN)
        import pywats_client.service.pipeline as pipeline

        for n, source in enumerate(files):
            if n == 20:  # after a warm-up
                stages.clear()
            st = source.stat()
            t = clock()
            entry = journal.begin(file_key(source, st.st_size, st.st_mtime_ns))
            t = lap("conversion journal (begin, returned, end)", t)
            converter, reason = converter_for(settings, registry, source, None)
            context = make_context(settings, source, {}, {})
            t = lap("choose the converter (detection), context", t)
            digest = pipeline._sha256(source)
            t = lap("content hash (report id)", t)
            raw = converter.convert(source, context)
            t = lap("read, parse (the converter)", t)
            reports = [finalize(r, context=context, converter_name=converter.name,
                                content_sha256=digest, index=i, source=str(source))
                       for i, r in enumerate(raw if isinstance(raw, list) else [raw])]
            t = lap("finalise, validate", t)
            conversion = pipeline.Conversion(source, converter.name, reason, reports)
            result = queue_reports(queue, conversion)
            t = lap("queue write (serialise, write, fsync, log)", t)
            journal.returned(entry)
            journal.end(entry)
            t = lap("conversion journal (begin, returned, end)", t)
            apply_post_action(SourceFile(folder, source, st.st_size, st.st_mtime_ns), seen)
            t = lap("source post-action (move to done/)", t)
            item = queue.claim(result[0].id)
            assert item is not None
            t = lap("claim (read, check)", t)
            answer = client.upload(item.body, item.id)
            t = lap("HTTP request (client side)", t)
            assert answer.outcome.name == "STORED", answer
            queue.complete(item)
            lap("completion (move, fsync, log)", t)
        journal.close()
    return {name: 1000 * value / copies for name, value in stages.items()}


def measure_cpu(inputs: Inputs, files: int, repeat: int) -> dict[str, Any]:
    """Service CPU per report for the UUT example file (event -> stored: watcher, settling,
    reading, parsing, validation, queue write, claim, HTTP, completion, logging) at L = 0,
    against the bare JSON floor of the same file."""
    with workspace() as tmp:
        root = Path(tmp)
        sample = root / "uut.json"
        sample.write_bytes(inputs.files("uut", 1)[0][1])
        with receiver(root) as rx:
            station = Station(root, rx.url)
            with station.service() as proc:
                warm = stage(root / "staging", inputs.files("uut", 20))
                drop_and_wait(rx, station, warm, station.watches[0], 20)
                total, runs = 20, []
                for _ in range(repeat):
                    staged = stage(root / "staging", inputs.files("uut", files))
                    before, mine = proc_sample(proc.pid), own_cpu()
                    total += files
                    seconds = drop_and_wait(rx, station, staged, station.watches[0], total)
                    after = proc_sample(proc.pid)
                    runs.append({"service_cpu_ms": 1000 * (after.cpu_s - before.cpu_s) / files,
                                 "service_system_ms":
                                     1000 * (after.system_s - before.system_s) / files,
                                 "receiver_cpu_ms": 1000 * (own_cpu() - mine) / files,
                                 "reports_per_s": files / seconds})
        floor = 1000 * json_floor(sample)
        stages = cpu_stages(sample, files)
    cpu = median([r["service_cpu_ms"] for r in runs])
    _progress(f"cpu: {cpu:.2f} ms per report, {cpu / floor:.1f} x the JSON floor")
    return {"file_bytes": sample.stat().st_size, "reports": files, "runs": runs,
            "service_cpu_ms_per_report": cpu, "json_floor_ms": floor,
            "service_system_ms_per_report": median([r["service_system_ms"] for r in runs]),
            "ratio_to_floor": cpu / floor, "stages_ms": stages,
            "rest_of_service_ms": cpu - sum(stages.values()),
            "receiver_cpu_ms_per_report": median([r["receiver_cpu_ms"] for r in runs])}


# -- 9. peak memory per MB of input ---------------------------------------------------------------


def measure_memory(samples: Path, big_mb: float) -> dict[str, Any]:
    """scripts/bench_converters.py --memory (every converter, a process each), and the
    service itself: `start --once` on one large WSJF file, its peak RSS against the size."""
    result: dict[str, Any] = {"rows": []}
    with workspace() as tmp:
        root = Path(tmp)
        out = root / "memory.json"
        done = subprocess.run(
            [sys.executable, str(REPO / "scripts" / "bench_converters.py"), "--memory",
             "--big-mb", f"{big_mb:g}", "--samples", str(samples), "--json", str(out)],
            env=python_env({"PYTHONPATH": str(REPO)}), capture_output=True, text=True)
        if done.returncode == 0 and out.exists():
            result["rows"] = json.loads(out.read_text())
        else:
            result["skipped"] = (f"bench_converters.py --memory exited with {done.returncode}: "
                                 f"{done.stderr.strip()[-500:]}")
        from tests.bigfiles import big_wsjf, samples_present

        if not samples_present():
            return result
        with receiver(root) as rx:
            station = Station(root, rx.url)
            config = json.loads((station.instance / "config.json").read_text())
            config["converters"]["max_memory_mb"] = 4096  # measured, not refused
            (station.instance / "config.json").write_text(json.dumps(config))
            big = big_wsjf(station.watches[0] / "big.json", int(big_mb * 2**20))
            old = time.time() - 3600
            os.utime(big, (old, old))
            size = big.stat().st_size
            # /usr/bin/time is not everywhere: the peak is the process's own VmHWM, read by
            # a sitecustomize at exit.
            shim = root / "shim"
            shim.mkdir()
            (shim / "sitecustomize.py").write_text(
                "import atexit, os\n"
                "def _peak():\n"
                "    for line in open('/proc/self/status'):\n"
                "        if line.startswith(('VmHWM', 'VmRSS')):\n"
                "            open(os.environ['BENCH_PEAK'], 'a').write(line)\n"
                "atexit.register(_peak)\n")
            peak_file = root / "peak.txt"
            env = station.process_env()
            env["PYTHONPATH"] = f"{shim}{os.pathsep}{env['PYTHONPATH']}"
            env["BENCH_PEAK"] = str(peak_file)
            subprocess.run(station.command("start", "--once"), env=env, cwd=root,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
            fields = dict(line.split(":", 1) for line in peak_file.read_text().splitlines())
            peak_mb = int(fields["VmHWM"].split()[0]) / 1024
            result["service"] = {"file": "WSJF (UUT example steps)", "bytes": size,
                                 "stored": len(rx.stored_ids()), "peak_rss_mb": peak_mb,
                                 "target_mb": 40 + 3 * size / 2**20}
    return result


# -- 7. disk cost ------------------------------------------------------------------------------

# Counts fsync/fdatasync by the path of the descriptor, inside the service, when strace cannot
# attach: PYTHONPATH puts this file first as `sitecustomize`; SIGUSR1 writes the counts out.
_SHIM = '''
import json, os, signal
_counts = {}
_out = os.environ["BENCH_FSYNC_COUNTS"]
def _wrap(name, real):
    def counted(fd):
        try:
            path = os.readlink("/proc/self/fd/%d" % fd)
        except OSError:
            path = "?"
        key = name + " " + path
        _counts[key] = _counts.get(key, 0) + 1
        return real(fd)
    return counted
os.fsync = _wrap("fsync", os.fsync)
os.fdatasync = _wrap("fdatasync", os.fdatasync)
def _dump(signum, frame):
    with open(_out + ".tmp", "w") as fh:
        json.dump(_counts, fh)
    os.replace(_out + ".tmp", _out)
signal.signal(signal.SIGUSR1, _dump)
'''

_STRACE_LINE = re.compile(r"^(\d+)\s+(.*)$")
_CALL = re.compile(r"^(fsync|fdatasync|write)\((\d+)<([^>]*)>")
_RESULT = re.compile(r"=\s+(-?\d+)")


def classify(path: str, station: Station) -> str:
    """A short name for what a descriptor points at."""
    queue = str(station.queue)
    if path.startswith(queue + "/tmp/"):
        return "queue item file (tmp/)"
    if path.startswith(queue + "/"):
        rest = path[len(queue) + 1:]
        return f"{rest}/ folder" if "/" not in rest else f"queue {rest.split('/')[0]}/ file"
    if path == queue:
        return "queue folder"
    if path.startswith(str(station.instance / "logs")):
        return "log file"
    if path.startswith(str(station.instance / "state")):
        return "state/ (status, seen files)"
    if any(path.startswith(str(w)) for w in station.watches):
        return "watch folder"
    if path.startswith(("socket:", "pipe:", "anon_inode:", "/dev/")):
        return "socket/pipe/dev"
    return "other"


def parse_strace(text: str, station: Station) -> tuple[dict[str, int], dict[str, int]]:
    """Calls and written bytes by (syscall, what) from `strace -f -y` output."""
    calls: dict[str, int] = {}
    written: dict[str, int] = {}
    unfinished: dict[str, tuple[str, str]] = {}
    for raw in text.splitlines():
        match = _STRACE_LINE.match(raw)
        pid, line = (match.group(1), match.group(2)) if match else ("", raw)
        if line.startswith("<..."):
            if pid not in unfinished:
                continue
            name, what = unfinished.pop(pid)
        else:
            call = _CALL.match(line)
            if call is None:
                continue
            name, what = call.group(1), classify(call.group(3), station)
            calls[f"{name} {what}"] = calls.get(f"{name} {what}", 0) + 1
            if line.endswith("<unfinished ...>"):
                unfinished[pid] = (name, what)
                continue
        if name == "write":
            result = _RESULT.search(line)
            if result and int(result.group(1)) > 0:
                written[what] = written.get(what, 0) + int(result.group(1))
    return calls, written


def measure_disk(inputs: Inputs, files: int, method: str) -> dict[str, Any]:
    if method == "auto":
        method = "strace" if _strace_works() else "shim"
    with workspace() as tmp:
        root = Path(tmp)
        with receiver(root) as rx:
            env: dict[str, str] = {}
            if method == "shim":
                shim = root / "shim"
                shim.mkdir()
                (shim / "sitecustomize.py").write_text(_SHIM)
                env = {"PYTHONPATH": str(shim), "BENCH_FSYNC_COUNTS": str(root / "counts.json")}
            station = Station(root, rx.url, env=env)
            with station.service() as proc:
                warm = stage(root / "staging", inputs.files("wsjf", 5))
                drop_and_wait(rx, station, warm, station.watches[0], 5)
                staged = stage(root / "staging", inputs.files("wsjf", files))
                source_bytes = sum(p.stat().st_size for p in staged)
                if method == "strace":
                    calls, written, io = _disk_strace(proc.pid, rx, station, staged, files + 5)
                else:
                    calls, written, io = _disk_shim(proc.pid, rx, station, staged, files + 5,
                                                    root / "counts.json")
                item_bytes = median([p.stat().st_size
                                     for p in list((station.queue / "completed").iterdir())[:50]])
    fsyncs = sum(n for key, n in calls.items() if key.startswith(("fsync", "fdatasync")))
    per_report = {key: n / files for key, n in sorted(calls.items())}
    return {
        "method": method, "reports": files,
        "fsyncs_per_report": fsyncs / files,
        "calls_per_report": per_report,
        "write_bytes_per_report": {k: v / files for k, v in sorted(written.items())},
        "storage_bytes_per_report": io["write_bytes"] / files,  # /proc/PID/io
        "write_call_bytes_per_report": io["wchar"] / files,
        "source_bytes_per_report": source_bytes / files,
        "queue_item_bytes": item_bytes,
    }


def _strace_works() -> bool:
    if shutil.which("strace") is None:
        return False
    try:
        done = subprocess.run(["strace", "-f", "-e", "trace=fsync", "-o", os.devnull, "true"],
                              capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _disk_strace(pid: int, rx: Receiver, station: Station, staged: list[Path], expected: int
                 ) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    out = station.root / "strace.txt"
    tracer = subprocess.Popen(
        ["strace", "-f", "-y", "-s", "0", "-e", "trace=fsync,fdatasync,write", "-o", str(out),
         "-p", str(pid)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert tracer.stderr is not None
        # "Process N attached with M threads", once every thread is traced.
        line = tracer.stderr.readline()
        if "attached" not in line:
            raise RuntimeError(f"strace could not attach: {line.strip()}")
        before = proc_io(pid)
        drop_and_wait(rx, station, staged, station.watches[0], expected)
        after = proc_io(pid)
    finally:
        tracer.send_signal(signal.SIGINT)
        tracer.wait(timeout=60)
    calls, written = parse_strace(out.read_text(errors="replace"), station)
    return calls, written, {k: after[k] - before[k] for k in after}


def _disk_shim(pid: int, rx: Receiver, station: Station, staged: list[Path], expected: int,
               counts: Path) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    def dump() -> dict[str, int]:
        with contextlib.suppress(FileNotFoundError):
            counts.unlink()
        os.kill(pid, signal.SIGUSR1)
        wait_for(counts.exists, 30, "the fsync counts")
        raw: dict[str, int] = json.loads(counts.read_text())
        out: dict[str, int] = {}
        for key, n in raw.items():
            name, _, path = key.partition(" ")
            label = f"{name} {classify(path, station)}"
            out[label] = out.get(label, 0) + n
        return out

    first, before = dump(), proc_io(pid)
    drop_and_wait(rx, station, staged, station.watches[0], expected)
    after, second = proc_io(pid), dump()
    calls = {k: second.get(k, 0) - first.get(k, 0) for k in second}
    return ({k: v for k, v in calls.items() if v}, {},
            {k: after[k] - before[k] for k in after})


# -- the report --------------------------------------------------------------------------------


def _filesystem(path: Path) -> str | None:
    path.mkdir(parents=True, exist_ok=True)
    return filesystem_type(path)


def _progress(text: str) -> None:
    print(f"  .. {text}", file=sys.stderr, flush=True)


def print_table(results: dict[str, Any]) -> None:
    rows: list[tuple[str, str, str]] = []

    def row(measure: str, value: str, budget: str = "") -> None:
        rows.append((measure, value, budget))

    for t in results.get("throughput", []):
        label = f"throughput {t['mix']}, {t['files']} files, L={t['latency_ms']:.0f} ms"
        value = f"{t['reports_per_s']:.0f} reports/s"
        if "ratio_to_limit" in t:
            value += f" = {t['ratio_to_limit']:.0%} of {t['limit_per_s']:.0f}"
            if "ratio_to_best_possible" in t and t["best_possible_per_s"] < t["limit_per_s"]:
                value += f", {t['ratio_to_best_possible']:.0%} of L=0"
            budget = ">= 80 % of the limit"
        else:
            value += f", service CPU {t['service_cpu_percent']:.0f} %"
            budget = "CPU-bound"
        row(label, value, budget)
    lat = results.get("latency")
    if lat:
        budgets = {"renamed in": "p50 <= 50 ms + conversion, p99 <= 150 ms",
                   "written in place, closed": "p50 <= 100 ms",
                   f"burst of {BURST} renamed in": "<= 350 ms"}
        for r in lat["rows"]:
            this = not r["client"].startswith("baseline")
            row(f"latency {r['path']} ({r['client']}, settle {lat['settle_s']:g} s)",
                f"p50 {r['p50_s'] * 1000:.0f} ms, p99 {r['p99_s'] * 1000:.0f} ms",
                budgets.get(r["path"], "") if this else "")
        row("conversion of the latency input", f"{lat['conversion_s'] * 1000:.1f} ms")
    slow = results.get("slowwriter")
    if slow:
        for r in slow["rows"]:
            row(f"slow writer ({r['client']}, post-action {r['post_action']}, pause "
                f"{slow['pause_s']:g} s, settle {slow['settle_s']:g} s)",
                f"{r['one_whole_report']}/{r['uuts']} one whole report, "
                f"{r['partial_reports']} partial, {r['error_files']} errors",
                "all, 0 partial" if not r["client"].startswith("baseline") else "")
    idle = results.get("idle")
    if idle:
        row(f"idle RSS ({idle['seconds']:.0f} s, 2 folders)", f"{idle['rss_mb']:.1f} MB",
            "<= 45 MB")
        row("idle CPU", f"{idle['cpu_percent']:.2f} % of a core", "<= 0.5 %")
        row("idle threads / wake-ups", f"{idle['threads']} / {idle['context_switches']}")
    start = results.get("startup")
    if start:
        row("python -c pass", f"{start['python_c_pass_s'] * 1000:.0f} ms, "
            f"{start['python_modules']} modules")
        for c in start["commands"]:
            budget = "<= 2.5 x" if c["command"].endswith(("--help", "--version")) else ""
            row(c["command"], f"{c['seconds'] * 1000:.0f} ms = {c['ratio']:.1f} x, "
                f"+{c['modules_beyond_python']} modules", budget)
    scale = results.get("scale")
    if scale:
        n = scale["items"]
        row(f"queue status, {n} pending", f"{scale['queue_status_s']:.2f} s", "<= 1.5 s")
        row(f"queue list --limit 20, {n} pending", f"{scale['queue_list_s']:.2f} s")
        for key in ("small", "large"):
            s = scale[key]
            row(f"service peak RSS, {s['queued']} queued",
                f"{s['peak_rss_mb']:.1f} MB ({s['drained']} drained at "
                f"{s['reports_per_s']:.0f}/s)", "flat" if key == "large" else "")
    conv = results.get("conversion")
    if conv:
        if conv.get("skipped"):
            row("conversion", f"skipped: {conv['skipped'][:60]}")
        for r in conv.get("rows", []):
            row(f"convert {r.get('converter')}",
                f"{r.get('reports_per_s', 0):.0f} reports/s, {r.get('mb_per_s', 0):.2f} MB/s")
    disk = results.get("disk")
    if disk:
        row(f"fsyncs per report ({disk['method']})", f"{disk['fsyncs_per_report']:.2f}",
            "<= 3 + contract")
        for key, n in disk["calls_per_report"].items():
            if key.startswith(("fsync", "fdatasync")):
                row(f"  {key}", f"{n:.2f}")
        row("bytes to storage per report", f"{disk['storage_bytes_per_report'] / 1024:.1f} KiB "
            f"(item {disk['queue_item_bytes'] / 1024:.1f} KiB)")
    cpu = results.get("cpu")
    if cpu:
        row(f"CPU per report, UUT example ({cpu['file_bytes'] / 1024:.0f} KiB)",
            f"{cpu['service_cpu_ms_per_report']:.2f} ms = {cpu['ratio_to_floor']:.1f} x "
            f"JSON floor {cpu['json_floor_ms']:.2f} ms", "<= 6 x")
        row("  of which in the kernel (system calls, lock hand-overs)",
            f"{cpu.get('service_system_ms_per_report', 0.0):.2f} ms")
        for stage, ms in cpu["stages_ms"].items():
            row(f"  {stage}", f"{ms:.3f} ms")
        row("  the rest (watcher, settling, loop, dispatcher, threads, ...)",
            f"{cpu['rest_of_service_ms']:.3f} ms")
    memory = results.get("memory")
    if memory:
        for r in memory.get("rows", []):
            row(f"peak RSS per MB in, {r['converter']}",
                f"{r['rss_per_mb']:.1f} ({r['bytes'] / 2**20:.1f} MB {r['input'][:24]})",
                f"ratio set {r['memory_ratio']:g}")
        service = memory.get("service")
        if service:
            row(f"service peak RSS, {service['bytes'] / 2**20:.0f} MB WSJF (start --once)",
                f"{service['peak_rss_mb']:.0f} MB", f"<= {service['target_mb']:.0f} MB")
    meta = results["meta"]
    print(f"python {meta['python']}, {meta['cpus']} CPUs, {meta['machine']}; data on "
          f"{meta['workdir_filesystem']}; calibration loop "
          f"{' / '.join(f'{s:.2f}' for s in meta['calibration_loop_s'])} s (start / end); "
          f"load average {' / '.join(f'{a[0]:.2f}' for a in meta['load_average'])} "
          "(start / end)\n")
    if not rows:
        return
    width = max(len(r[0]) for r in rows) + 2
    vwidth = max(len(r[1]) for r in rows) + 2
    print(f"{'measure':<{width}}{'value':<{vwidth}}budget")
    for measure, value, budget in rows:
        print(f"{measure:<{width}}{value:<{vwidth}}{budget}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: smaller sizes, one run each, short windows")
    parser.add_argument("--json", type=Path, default=REPO / "bench-results" / "bench.json",
                        help="where to write the figures (default: %(default)s)")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help="comma-separated subset of %(default)s")
    parser.add_argument("--mixes", default=",".join(MIXES),
                        help="throughput inputs, comma-separated subset of %(default)s")
    parser.add_argument("--files", type=int, help="files per throughput run (1000; quick 200)")
    parser.add_argument("--repeat", type=int, help="runs per figure, median taken (3; quick 1)")
    parser.add_argument("--latency-samples", type=int,
                        help="single drops of each kind (40; quick 15)")
    parser.add_argument("--bursts", type=int, help=f"bursts of {BURST} files (5; quick 2)")
    parser.add_argument("--slow-repeat", type=int,
                        help="UUTs of each format per post-action (100; quick 5)")
    parser.add_argument("--slow-concurrent", type=int, default=10,
                        help="UUTs of each format written at the same time (%(default)s)")
    parser.add_argument("--baseline",
                        help="also measure latency and slowwriter for another version of the "
                        "client: a directory holding a checkout, or a git revision")
    parser.add_argument("--startup-runs", type=int, help="runs per command (11; quick 3)")
    parser.add_argument("--scale", type=int,
                        help="items queued for the scale test (100000; quick 5000)")
    parser.add_argument("--idle-seconds", type=float, help="idle window (60; quick 5)")
    parser.add_argument("--big-mb", type=float,
                        help="size of the WSJF file of the memory section (30; quick 5)")
    parser.add_argument("--samples", type=Path, default=DEFAULT_SAMPLES,
                        help="sample files (default: %(default)s; built-in inputs without)")
    parser.add_argument("--disk-method", choices=("auto", "strace", "shim"), default="auto",
                        help="how fsyncs are counted (auto: strace if it can attach)")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR,
                        help="where the stations' data dirs and watch folders are made "
                        "(default: %(default)s); put it on the disk a station would use")
    args = parser.parse_args(argv)
    global WORKDIR
    WORKDIR = args.workdir
    quick = args.quick

    def pick(value: Any, full: Any, short: Any) -> Any:
        return value if value is not None else (short if quick else full)

    files = pick(args.files, 1000, 200)
    repeat = pick(args.repeat, 3, 1)
    scale = pick(args.scale, 100_000, 5000)
    small = min(1000, max(1, scale // 10))  # the "1,000 queued" of the scale comparison
    sections = [s for s in args.sections.split(",") if s]
    mixes = [m for m in args.mixes.split(",") if m]
    unknown = (set(sections) - set(SECTIONS)) | (set(mixes) - set(MIXES))
    if unknown:
        parser.error(f"unknown section or mix: {', '.join(sorted(unknown))}")
    templates = load_templates(args.samples)
    inputs = Inputs(templates, uut_template(args.samples))
    results: dict[str, Any] = {
        "meta": {
            "python": sys.version.split()[0], "cpus": os.cpu_count(),
            "machine": platform.machine(), "kernel": platform.release(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S"), "quick": quick,
            "command": " ".join(["python", "scripts/bench.py",
                                 *(sys.argv[1:] if argv is None else argv)]),
            "inputs": {k: {"origin": t.origin, "bytes": len(t.render(0))}
                       for k, t in templates.items()},
            "uut_input": {"origin": inputs.uut.origin if inputs.uut else "",
                          "bytes": len(inputs.uut.render(0)) if inputs.uut else 0},
            "settle_s": SETTLE, "repeat": repeat,
            "workdir": str(args.workdir), "workdir_filesystem": _filesystem(args.workdir),
        },
    }
    started = time.monotonic()
    steps: dict[str, Callable[[], Any]] = {
        "throughput": lambda: measure_throughput(inputs, mixes, files, repeat),
        "latency": lambda: measure_latency(inputs, pick(args.latency_samples, 40, 15),
                                           pick(args.bursts, 5, 2), clients),
        "slowwriter": lambda: measure_slowwriter(pick(args.slow_repeat, 100, 5),
                                                 args.slow_concurrent, clients),
        "idle": lambda: measure_idle(pick(args.idle_seconds, 60.0, 5.0)),
        "startup": lambda: measure_startup(pick(args.startup_runs, 11, 3)),
        "scale": lambda: measure_scale(scale, small, min(scale, 3 * small), repeat),
        "conversion": lambda: measure_conversion(args.samples, repeat),
        "disk": lambda: measure_disk(inputs, min(files, 500), args.disk_method),
        "cpu": lambda: measure_cpu(inputs, min(files, 500), repeat),
        "memory": lambda: measure_memory(args.samples, pick(args.big_mb, 30.0, 5.0)),
    }
    baseline = baseline_client(args.baseline)
    clients = [Client("this client"), *([baseline] if baseline else [])]
    results["meta"]["calibration_loop_s"] = [calibrate()]
    results["meta"]["load_average"] = [os.getloadavg()]
    try:
        for name in RUN_ORDER:
            if name in sections:
                _progress(f"{name} ...")
                results[name] = steps[name]()
    finally:
        clean_up()
    results["meta"]["calibration_loop_s"].append(calibrate())
    results["meta"]["load_average"].append(os.getloadavg())
    results["meta"]["seconds"] = time.monotonic() - started
    results = {"meta": results["meta"], **{k: results[k] for k in SECTIONS if k in results}}
    print_table(results)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2, allow_nan=False))
    print(f"\nwritten to {args.json} in {results['meta']['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

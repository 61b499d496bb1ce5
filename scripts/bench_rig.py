"""The rig every section of scripts/bench.py measures with: the work folder, /proc samples of
other processes, the input files made from the samples, a station running the real service,
and the bundled receiver."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's package and tests, before any installed one

from pywats_client.fsutil import filesystem_type  # noqa: E402
from pywats_client.http.receiver import Receiver  # noqa: E402
from tests.station import wait_until, wsjf_report  # noqa: E402

TOKEN = base64.b64encode(b"bench:bench").decode("ascii")
SETTLE = 0.25  # the watch folders' settle time, seconds
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


def use_workdir(path: Path) -> None:
    """Make every folder of this run under `path` (`--workdir`)."""
    global WORKDIR
    WORKDIR = path


def new_folder(prefix: str) -> Path:
    """A fresh folder under WORKDIR, removed by `clean_up()`."""
    WORKDIR.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=WORKDIR))
    _LEFTOVERS.append(folder)
    return folder


@contextmanager
def workspace() -> Iterator[str]:
    """A fresh folder under WORKDIR for one measurement, removed by `clean_up()`."""
    yield str(new_folder("bench-"))


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



# -- what the run reports about itself ---------------------------------------------------------


def filesystem(path: Path) -> str | None:
    path.mkdir(parents=True, exist_ok=True)
    return filesystem_type(path)


def progress(text: str) -> None:
    print(f"  .. {text}", file=sys.stderr, flush=True)

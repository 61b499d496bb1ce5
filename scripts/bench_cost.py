"""The sections of scripts/bench.py that measure what the client costs a station: idle,
start-up, scale, conversion, CPU per report, peak memory and the disk."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

# bench_rig first: it puts this checkout's package and tests ahead of any installed one.
from bench_contract import FOLDER_STEPS
from bench_rig import (
    REPO,
    TOKEN,
    Inputs,
    Station,
    drop_and_wait,
    median,
    own_cpu,
    proc_io,
    proc_sample,
    progress,
    python_env,
    receiver,
    stage,
    wait_for,
    workspace,
)

from pywats_client.http.receiver import Receiver
from pywats_client.queue.store import ItemHeader, encode_item
from tests.station import wsjf_report

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


def measure_flood(files: int) -> dict[str, Any]:
    """`files` small WSJF files written straight into the watch folder of a running service
    (each a create, a write and a close), as fast as this process can: the service's peak
    RSS, and the time until every report is stored."""
    with workspace() as tmp:
        root = Path(tmp)
        with receiver(root) as rx:
            station = Station(root, rx.url)
            watch = station.watches[0]
            with station.service() as proc:
                before = proc_sample(proc.pid)
                start = time.monotonic()
                for i in range(files):
                    body = json.dumps(wsjf_report(i), separators=(",", ":")).encode()
                    (watch / f"flood-{i:07d}.json").write_bytes(body)
                written = time.monotonic() - start
                deadline = start + 600 + files / 50  # far beyond any sane rate
                while not rx.wait_for_reports(files, timeout=0.5):
                    if proc.poll() is not None:
                        raise RuntimeError("the service stopped during the flood")
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"only {len(rx.stored_ids())} of {files} flood "
                                           f"reports arrived; see {station.instance / 'logs'}")
                seconds = time.monotonic() - start
                after = proc_sample(proc.pid)
    progress(f"scale: {files} files dropped at once, peak RSS {after.hwm_kb / 1024:.1f} MB")
    return {"files": files, "written_s": written, "stored_s": seconds,
            "rss_before_mb": before.rss_kb / 1024, "peak_rss_mb": after.hwm_kb / 1024,
            "cpu_ms_per_report": 1000 * (after.cpu_s - before.cpu_s) / files}


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
            progress(f"scale: queue status {result['queue_status_s']:.2f} s on {items} items")
            result["large"] = {"queued": items, **_drain(station, rx, drain_large)}
        with receiver(root / "small") as rx:
            station = Station(root / "small", rx.url)
            fill_pending(station.queue, small)
            result["small"] = {"queued": small, **_drain(station, rx, small)}
    result["rss_growth_mb"] = result["large"]["peak_rss_mb"] - result["small"]["peak_rss_mb"]
    result["flood"] = measure_flood(max(200, items // 4))
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


def contract_floor(path: Path, reports: int) -> dict[str, float]:
    """CPU ms per report, by step, of scripts/bench_contract.py on the file: the least any
    client keeping the queue contract spends (the fsyncs, one plain POST, the JSON)."""
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_contract.py"),
                           str(path), "--reports", str(reports), "--json"],
                          env=python_env({}), capture_output=True, text=True, check=True)
    steps: dict[str, float] = json.loads(done.stdout)
    return steps


def cpu_stages(path: Path, copies: int) -> dict[str, float]:
    """CPU ms per report of each stage of the path from file to stored, run one after the
    other in this process (the receiver's threads not counted): what the service's figure is
    made of. `path` is a WSJF file; `copies` unique copies of it go through."""
    from pywats_client.config.settings import Settings, WatchFolder
    from pywats_client.converters import ConverterRegistry
    from pywats_client.converters.textio import preloaded
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
            data = pipeline._read_source(source, st.st_size)
            digest = hashlib.sha256(data).hexdigest()
            t = lap("read, content hash (report id)", t)
            with preloaded(source, data):
                raw = converter.convert(source, context)
            t = lap("parse (the converter)", t)
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
        contract = contract_floor(sample, files)
        stages = cpu_stages(sample, files)
    cpu = median([r["service_cpu_ms"] for r in runs])
    progress(f"cpu: {cpu:.2f} ms per report, {cpu / floor:.1f} x the JSON floor; the queue "
             f"contract alone costs {sum(contract.values()):.2f} ms")
    return {"file_bytes": sample.stat().st_size, "reports": files, "runs": runs,
            "service_cpu_ms_per_report": cpu, "json_floor_ms": floor,
            "service_system_ms_per_report": median([r["service_system_ms"] for r in runs]),
            "ratio_to_floor": cpu / floor, "stages_ms": stages,
            "contract_floor_ms": sum(contract.values()), "contract_steps_ms": contract,
            "contract_floor_shared_ms": sum(ms for step, ms in contract.items()
                                            if step not in FOLDER_STEPS),
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

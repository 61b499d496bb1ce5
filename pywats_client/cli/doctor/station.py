"""The doctor's checks of the station: Python and the dependencies, where the installed
systemd unit runs the instance, the memory for conversions, the clock, and whether the service
runs. Each returns a `CheckResult` and only looks: nothing here changes a file.
"""

from __future__ import annotations

import importlib
import os
import platform
import re
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from pywats_client import __version__
from pywats_client.cli.doctor.findings import CheckResult, exists, fail, ok, warn
from pywats_client.clock import SYSTEM_CLOCK, Clock
from pywats_client.config.settings import Settings
from pywats_client.paths import InstancePaths
from pywats_client.queue.lock import pid_alive, read_lock
from pywats_client.service.status import read_status

MIN_PYTHON = (3, 10)
# The year this version was released. A clock showing an earlier year is certainly wrong: a
# station without a real-time clock (most Raspberry Pis) that booted without time sync.
RELEASE_YEAR = 2026
# Later than this is as surely wrong (a flat RTC battery can also jump forward).
FAR_FUTURE_YEAR = RELEASE_YEAR + 20
# The runtime dependencies when the package metadata cannot be read (a bare source checkout).
FALLBACK_REQUIREMENTS = ("requests", "watchdog", "cryptography")
# The module the client really uses from each dependency: importing it also loads the native
# parts (cryptography's Rust bindings, watchdog's inotify), so a broken build shows here.
_PROBE_MODULE = {"cryptography": "cryptography.fernet", "watchdog": "watchdog.observers"}
_SYSTEMD_RUNNING = Path("/run/systemd/system")  # exists only when systemd is PID 1
# Where an installed unit file is found, in the order systemd reads them.
UNIT_DIRS = (Path("/etc/systemd/system"), Path("/usr/local/lib/systemd/system"),
             Path("/usr/lib/systemd/system"), Path("/lib/systemd/system"))
UNITS = ("pywats-client@.service", "pywats-client-once@.service")


# -- the environment -----------------------------------------------------------------------------


def check_python(version: Sequence[int] = tuple(sys.version_info[:3])) -> CheckResult:
    """This Python is new enough (>= 3.10)."""
    shown = ".".join(str(n) for n in version)
    where = f"{platform.python_implementation()} {shown} ({sys.executable})"
    if tuple(version[:2]) < MIN_PYTHON:
        return fail("python", f"{where} is too old: pywats-client needs Python 3.10 or newer",
                    "install Python 3.10 or newer (on Debian/Raspberry Pi OS 12: apt install "
                    "python3 python3-venv) and reinstall pywats-client into a venv made with it")
    return ok("python", where)


def check_dependencies(requirements: Sequence[str] | None = None) -> CheckResult:
    """requests, watchdog and cryptography import, at versions the package accepts.

    `requirements` are requirement strings such as "requests>=2.28" (default: the installed
    package's own metadata, without its extras).
    """
    found: list[str] = []
    problems: list[str] = []
    for requirement in requirements if requirements is not None else _runtime_requirements():
        name, minimum = _parse_requirement(requirement)
        module = _PROBE_MODULE.get(name.lower(), name.lower().replace("-", "_"))
        try:
            importlib.import_module(module)
        except Exception as exc:  # ImportError, or a native library that fails to load
            problems.append(f"{name} cannot be imported ({type(exc).__name__}: {exc})")
            continue
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            version = "unknown version"
        if minimum and version != "unknown version" and _older(version, minimum):
            problems.append(f"{name} {version} is older than {minimum}, which pywats-client "
                            "needs")
            continue
        found.append(f"{name} {version}")
    if problems:
        return fail("dependencies", "; ".join(problems) + (
            f" (fine: {', '.join(found)})" if found else ""),
            f"reinstall pywats-client with its dependencies into {sys.prefix}: from a bundle, "
            "run its install.sh again; online: "
            f"{Path(sys.executable).parent / 'pip'} install --upgrade pywats-client",
            sys.prefix)
    return ok("dependencies", ", ".join(found), sys.prefix)


def _runtime_requirements() -> list[str]:
    try:
        declared = metadata.requires("pywats-client") or []
    except metadata.PackageNotFoundError:
        return list(FALLBACK_REQUIREMENTS)
    # Optional extras (the test tools) carry an `extra == "..."` marker: not needed to run.
    return [r for r in declared if "extra" not in r.partition(";")[2]]


def _parse_requirement(text: str) -> tuple[str, str]:
    """("requests", "2.28") from "requests>=2.28" or "requests (>=2.28)"; "" if no minimum."""
    spec = text.partition(";")[0].strip()
    match = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)(.*)", spec)
    if not match:
        return spec, ""
    minimum = re.search(r">=\s*([0-9][0-9.]*)", match.group(2))
    return match.group(1), minimum.group(1) if minimum else ""


def _older(version: str, minimum: str) -> bool:
    def numbers(text: str) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", text.split("+")[0])[:4])

    return numbers(version) < numbers(minimum)


# -- where the instance is -----------------------------------------------------------------------


@dataclass(frozen=True)
class InstalledUnit:
    """An installed systemd unit of the client, as far as where it runs an instance goes."""

    path: Path
    data_dir: Path
    user: str


def installed_unit(instance: str, unit_dirs: Sequence[Path] = UNIT_DIRS
                   ) -> InstalledUnit | None:
    """The installed service (or one-shot) unit and the data dir it gives `instance`: its
    `Environment=PYWATS_DATA_DIR=`, else its `StateDirectory=` below /var/lib; drop-ins of
    the template and of the instance included, later ones winning as in systemd."""
    for unit in UNITS:
        main = next((d / unit for d in unit_dirs if (d / unit).is_file()), None)
        if main is None:
            continue
        named = unit.replace("@.", f"@{instance}.")
        drop_ins = sorted((f for d in unit_dirs for folder in (f"{unit}.d", f"{named}.d")
                           for f in (d / folder).glob("*.conf")), key=lambda f: f.name)
        values: dict[str, str] = {}
        for file in [main, *drop_ins]:
            for line in _unit_lines(file):
                key, _, value = line.partition("=")
                if key == "Environment":
                    for word in _split(value):
                        name, _, setting = word.partition("=")
                        values[f"env:{name}"] = setting
                elif key in ("StateDirectory", "User"):
                    values[key] = value.split()[0] if value.split() else ""
        data = values.get("env:PYWATS_DATA_DIR") or (
            f"/var/lib/{values['StateDirectory']}" if values.get("StateDirectory") else "")
        if data:
            return InstalledUnit(main, Path(data), values.get("User", "root") or "root")
    return None


def _unit_lines(file: Path) -> list[str]:
    try:
        text = file.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return [line.strip() for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith(("#", ";"))]


def _split(value: str) -> list[str]:
    try:
        return shlex.split(value)
    except ValueError:
        return value.split()


def check_data_dir(paths: InstancePaths, unit_dirs: Sequence[Path] = UNIT_DIRS
                   ) -> list[CheckResult]:
    """The instance is where the installed unit runs it, and in its documented place.

    `sudo -u pywats pywats-client ...` or a cron line that looks in another data dir than the
    unit works on another, empty instance: whatever it configures, the service never sees.
    """
    name, subject, results = "data dir", str(paths.data_dir), []
    unit = installed_unit(paths.name, unit_dirs)
    if unit is not None and os.path.abspath(unit.data_dir) != os.path.abspath(paths.data_dir):
        results.append(warn(
            name, f"this looks at {paths.data_dir}, but the installed unit {unit.path} runs "
            f"instance '{paths.name}' in {unit.data_dir}: what is configured here is not what "
            "the service uses", f"run commands as the service's user, with its data dir: "
            f"sudo -u {unit.user} pywats-client --data-dir {unit.data_dir} --instance "
            f"{paths.name} doctor", subject))
    if paths.in_older_place:
        results.append(warn(
            name, f"instance 'default' is in {paths.root}, where older versions put it; it is "
            f"used there, but the documented place is {paths.data_dir} itself "
            f"({paths.data_dir / 'config.json'}, the log beside it)",
            f"stop the client, then: mv '{paths.root}'/* '{paths.data_dir}'/ && mv "
            f"'{paths.data_dir}/logs/'* '{paths.data_dir}'/ && rmdir '{paths.root}' "
            f"'{paths.data_dir}/logs'", subject))
    older = paths.data_dir / "default"
    if paths.flat and exists(older / "config.json"):
        pending = len(list((older / "queue" / "pending").glob("*.wsq")))
        results.append(warn(
            name, f"{older} holds an older default instance, unused since {paths.config} "
            f"exists ({pending} report(s) waiting in its queue)",
            f"stop the client, move its waiting reports: mv '{older}/queue/pending/'*.wsq "
            f"'{paths.queue}/pending/', then remove {older}", subject))
    if results or unit is None:
        return results  # no unit and nothing out of place: no line for it
    return [ok(name, f"{paths.data_dir}, as the installed unit {unit.path} has it", subject)]


# -- memory --------------------------------------------------------------------------------------


def check_memory(settings: Settings, *, total_mb: float | None = None,
                 service_max_mb: float | None = None) -> CheckResult:
    """What size of file this station can take: the memory budget (converters.max_memory_mb)
    over each built-in converter's measured ratio; warn when the budget is more than the
    machine has, or more than the service's own cgroup limit (MemoryMax) leaves room for."""
    from pywats_client.converters.memory import BASE_MB, largest_for_ratio
    from pywats_client.converters.registry import BUILTIN_CONVERTERS

    name, budget = "memory", settings.converters.max_memory_mb
    sizes = []
    for converter, target in BUILTIN_CONVERTERS.items():
        module, _, cls = target.partition(":")
        ratio = getattr(getattr(importlib.import_module(module), cls), "memory_ratio", None)
        if ratio:
            sizes.append((largest_for_ratio(budget, ratio) / 2**20, converter))
    sizes.sort(reverse=True)
    cap = settings.converters.max_file_mb
    found = (f"converters.max_memory_mb {budget:g} MB ({BASE_MB:g} MB for the service itself): "
             "this station takes files up to " + ", ".join(
                 f"{size:.1f} MB ({what})" for size, what in sizes))
    if sizes and cap > sizes[0][0]:
        found += (f"; larger ones are refused with a note, below converters.max_file_mb "
                  f"({cap:g} MB)")
    fix = ("set converters.max_memory_mb to what the station can give the client, 16 MB or "
           "more below the service's MemoryMax: pywats-client config set "
           "converters.max_memory_mb N")
    total_mb = _memory_total_mb() if total_mb is None else total_mb
    if total_mb and budget > 0.8 * total_mb:
        return warn(name, f"{found}; but this machine has {total_mb:.0f} MB in all", fix)
    service_max_mb = _service_memory_max_mb() if service_max_mb is None else service_max_mb
    if service_max_mb and budget > service_max_mb - 16:
        return warn(name, f"{found}; but the running service is limited to "
                    f"{service_max_mb:.0f} MB (its cgroup's MemoryMax), too close: the kernel "
                    "would kill it before the budget stops a conversion", fix)
    return ok(name, found)


def _memory_total_mb() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


def _service_memory_max_mb() -> float:
    """The MemoryMax of a running pywats-client unit (cgroup v2 or v1), 0 when none is seen."""
    roots = [Path("/sys/fs/cgroup/system.slice"), Path("/sys/fs/cgroup/memory/system.slice")]
    for root in roots:
        try:
            units = sorted(root.glob("pywats-client*.service"))
        except OSError:
            continue
        for unit in units:
            for name in ("memory.max", "memory.limit_in_bytes"):
                try:
                    value = (unit / name).read_text().strip()
                except OSError:
                    continue
                if value.isdigit() and int(value) < 2**50:
                    return int(value) / 2**20
    return 0.0


# -- time and the service ------------------------------------------------------------------------


def check_clock(clock: Clock = SYSTEM_CLOCK) -> CheckResult:
    """The system clock is plausible: not before this version's release year, not decades on."""
    now = clock.time()
    shown = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(now))
    year = time.gmtime(now).tm_year
    why = ("retry times, log times, file ages and TLS certificate checks use this clock (reports "
           "keep the times the equipment wrote)")
    fix = ("set the time and keep it synchronised: timedatectl set-ntp true with an NTP server "
           "the station can reach (on an air-gapped line: a local NTP server, or a real-time "
           "clock module on a Raspberry Pi); for now: sudo date -s 'YYYY-MM-DD HH:MM'")
    if year < RELEASE_YEAR:
        return fail("clock", f"the system clock says {shown}, before this version was even "
                    f"released ({RELEASE_YEAR}): the station probably has no real-time clock "
                    f"and no time sync; {why}", fix)
    if year > FAR_FUTURE_YEAR:
        return fail("clock", f"the system clock says {shown}, far in the future; {why}", fix)
    return ok("clock", shown)


def check_service(paths: InstancePaths) -> CheckResult:
    """Who holds the instance lock: the service (which version), a one-shot, or nobody."""
    name, subject = "service", str(paths.lock)
    holder = read_lock(paths.lock)
    if holder is None:
        stale = ""
        if paths.pid_file.exists():
            stale = f"; {paths.pid_file} is left over from a service that is gone"
        return warn(name, f"not running (nobody holds {paths.lock}){stale}",
                    f"start it: {_start_command(paths)}; nothing to do if cron runs "
                    "'pywats-client start --once' on this station", subject)
    since = time.strftime("%Y-%m-%d %H:%M", time.localtime(holder.started))
    if holder.purpose != "service":  # a one-shot: `start --once`, `upload`
        return ok(name, f"in use by pid {holder.pid} ({holder.purpose}) since {since}", subject)
    status = read_status(paths.state) or {}
    running_version = status.get("version") or ""
    if running_version and running_version != __version__:
        return warn(name, f"running as pid {holder.pid} since {since}, but it runs version "
                    f"{running_version} and {__version__} is installed",
                    f"restart it so the new version runs: {_restart_command(paths)}", subject)
    uploads = status.get("server")
    detail = f"; uploads {uploads}" if uploads and uploads != "unknown" else ""
    alive = "" if pid_alive(holder.pid) else " (pid not visible from here)"
    return ok(name, f"running as pid {holder.pid}{alive} since {since}"
              f"{' under ' + status['supervisor'] if status.get('supervisor') else ''}{detail}",
              subject)


def _start_command(paths: InstancePaths) -> str:
    if _SYSTEMD_RUNNING.exists():
        return f"systemctl start pywats-client@{paths.name}"
    return f"pywats-client --instance {paths.name} start --daemon"


def _restart_command(paths: InstancePaths) -> str:
    if _SYSTEMD_RUNNING.exists():
        return f"systemctl restart pywats-client@{paths.name}"
    return f"pywats-client --instance {paths.name} restart"



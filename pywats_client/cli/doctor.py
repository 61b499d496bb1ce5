"""`pywats-client doctor`: look at a station and say what is wrong and how to fix it.

Owns one function per check (Python, dependencies, config, data dir, permissions, server,
credentials, process codes, watch folders and their converters, queue disk, memory, clock,
service), each returning a `CheckResult`
(ok / warn / fail, what was found, the fix), and `diagnose()`, which runs them in order for one
instance. Checks only look: nothing here creates, changes or deletes a file.

Imports leaf modules at the top and `config` / `uploader` inside the checks that need them, so
that a missing `requests` or `cryptography` is reported by the dependency check instead of
crashing the doctor. Never imports the service.
"""

from __future__ import annotations

import enum
import functools
import importlib
import json
import os
import platform
import pwd
import re
import shlex
import stat
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pywats_client import __version__
from pywats_client.clock import SYSTEM_CLOCK, Clock
from pywats_client.config.settings import Settings, WatchFolder
from pywats_client.errors import ConfigError
from pywats_client.fsutil import NETWORK_OR_WEAK_FILESYSTEMS, filesystem_type
from pywats_client.paths import InstancePaths, is_user_data_dir
from pywats_client.queue.lock import pid_alive, read_lock
from pywats_client.service.status import read_status

if TYPE_CHECKING:
    from pywats_client.converters.registry import ConverterRegistry
    from pywats_client.service.uploader import Uploader, UploadResult

MIN_PYTHON = (3, 10)
# The year this version was released. A clock showing an earlier year is certainly wrong: a
# station without a real-time clock (most Raspberry Pis) that booted without time sync.
RELEASE_YEAR = 2026
# Later than this is as surely wrong (a flat RTC battery can also jump forward).
FAR_FUTURE_YEAR = RELEASE_YEAR + 20
LOW_FREE_BYTES = 100 * 2**20  # below this the queue's disk is nearly full
PROBE_READ_TIMEOUT = 20.0  # the doctor waits at most this long for an answer, whatever the config
# The runtime dependencies when the package metadata cannot be read (a bare source checkout).
FALLBACK_REQUIREMENTS = ("requests", "watchdog", "cryptography")
# The module the client really uses from each dependency: importing it also loads the native
# parts (cryptography's Rust bindings, watchdog's inotify), so a broken build shows here.
_PROBE_MODULE = {"cryptography": "cryptography.fernet", "watchdog": "watchdog.observers"}
_MAX_LISTED_PROCESSES = 12
_SYSTEMD_RUNNING = Path("/run/systemd/system")  # exists only when systemd is PID 1
# Where an installed unit file is found, in the order systemd reads them.
UNIT_DIRS = (Path("/etc/systemd/system"), Path("/usr/local/lib/systemd/system"),
             Path("/usr/lib/systemd/system"), Path("/lib/systemd/system"))
UNITS = ("pywats-client@.service", "pywats-client-once@.service")


class Status(str, enum.Enum):
    """How a check came out; FAIL means something needs fixing."""

    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class CheckResult:
    """One check: its name, what it looked at, what it found and, unless ok, the fix."""

    name: str
    status: Status
    found: str
    fix: str = ""
    subject: str = ""  # the file, folder or URL looked at

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status.value, "subject": self.subject,
                "found": self.found, "fix": self.fix}


def ok(name: str, found: str, subject: str = "") -> CheckResult:
    return CheckResult(name, Status.OK, found, "", subject)


def warn(name: str, found: str, fix: str, subject: str = "") -> CheckResult:
    return CheckResult(name, Status.WARN, found, fix, subject)


def fail(name: str, found: str, fix: str, subject: str = "") -> CheckResult:
    return CheckResult(name, Status.FAIL, found, fix, subject)


@dataclass
class Diagnosis:
    """Every check run for one instance, in order."""

    instance: str
    root: Path
    checks: list[CheckResult] = field(default_factory=list)

    @property
    def needs_fixing(self) -> bool:
        """True when any check failed (warnings alone do not count)."""
        return any(c.status is Status.FAIL for c in self.checks)

    def count(self, status: Status) -> int:
        return sum(1 for c in self.checks if c.status is status)

    def to_dict(self) -> dict[str, Any]:
        """The `doctor --json` document."""
        return {
            "version": __version__,
            "instance": self.instance,
            "instance_folder": str(self.root),
            "needs_fixing": self.needs_fixing,
            "summary": {s.value: self.count(s) for s in Status},
            "checks": [c.to_dict() for c in self.checks],
        }

    def render(self) -> str:
        """The text an operator reads: one line per check, a fix under each problem."""
        lines = [f"pywats-client {__version__} doctor: instance '{self.instance}' "
                 f"({self.root})", ""]
        width = max((len(c.name) for c in self.checks), default=0) + 2
        indent = " " * (6 + width)
        for check in self.checks:
            label = check.status.value if check.status is Status.OK else check.status.name
            head = f"{label:<6}{check.name:<{width}}"
            lines.append(_fill(check.found, head, indent))
            if check.fix:  # one line, however long: it holds commands to copy and paste
                lines.append(f"{indent}fix: {check.fix}")
        failed, warned = self.count(Status.FAIL), self.count(Status.WARN)
        lines.append("")
        if failed:
            lines.append(f"{failed} problem(s) need fixing"
                         + (f", {warned} warning(s)." if warned else "."))
        else:
            lines.append("Nothing needs fixing" + (f"; {warned} warning(s)." if warned else "."))
        return "\n".join(lines)


def _fill(text: str, first: str, rest: str) -> str:
    # Never break inside a word: paths and commands must stay copy-pastable.
    return textwrap.fill(text, 100, initial_indent=first, subsequent_indent=rest,
                         break_long_words=False, break_on_hyphens=False)


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


# -- the instance's files ------------------------------------------------------------------------


def check_config(paths: InstancePaths) -> CheckResult:
    """config.json exists, loads and validates (environment overrides included)."""
    subject = str(paths.config)
    if not paths.config.exists():
        return fail("config", f"there is no config.json at {paths.config}",
                    f"create it: pywats-client --instance {paths.name} config init. If the "
                    "service runs as another user, run the doctor as that user or give its "
                    "--data-dir (root uses /var/lib/pywats)", subject)
    try:
        settings = _load(paths)
    except ConfigError as exc:
        return fail("config", str(exc), "correct the value(s) named above with "
                    f"'pywats-client --instance {paths.name} config set KEY VALUE', or edit "
                    f"{paths.config}", subject)
    except ImportError as exc:
        return fail("config", f"the config cannot be read: {exc}",
                    "fix the dependencies first (see above)", subject)
    folders = len(settings.queue.watch_folders)
    found = (f"valid; server_url {settings.server_url or '(not set)'}, station "
             f"{settings.station_name!r}, {folders} watch folder(s)")
    if _token_in_plain_text(paths.config):
        return warn("config", found + "; api_token is stored unencrypted",
                    f"store it encrypted: pywats-client --instance {paths.name} config set "
                    "api_token TOKEN", subject)
    return ok("config", found, subject)


def _load(paths: InstancePaths) -> Settings:
    from pywats_client.config.document import load_settings

    return load_settings(paths.config, key_path=paths.key)


def _token_in_plain_text(config: Path) -> bool:
    try:
        token = json.loads(config.read_text(encoding="utf-8")).get("api_token")
    except (OSError, ValueError, AttributeError):
        return False
    if not isinstance(token, str) or not token:
        return False
    from pywats_client.config.secrets import SecretBox

    return not SecretBox.is_encrypted(token)


def check_secret_file(path: Path, name: str, what: str) -> CheckResult:
    """A file holding secrets (config.json, secret.key) is readable by its owner only (0600)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return ok(name, f"{path} does not exist (nothing to protect)", str(path))
    except OSError as exc:
        return fail(name, f"cannot look at {path}: {exc.strerror}",
                    "run the doctor as the user the service runs as", str(path))
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        return fail(name, f"{path} has mode {mode:04o}: other users can read {what}",
                    f"chmod 600 '{path}'", str(path))
    return ok(name, f"{path} mode {mode:04o}", str(path))


def check_plugin_folder(folder: Path) -> CheckResult:
    """The converter plugin folder and its files cannot be changed by other users.

    The same rule the converter registry applies: plugins run with the service's rights, so a
    plugin that another user can change is refused, and the service runs without it.
    """
    name = "plugin folder"
    if not folder.is_dir():
        return ok(name, f"{folder} does not exist (no converter plugins)", str(folder))
    problems: list[str] = []
    writable: list[Path] = []
    foreign: list[Path] = []
    for path in [folder, *sorted(folder.glob("*.py"))]:
        try:
            st = path.stat()
        except OSError:
            continue  # removed while we looked
        if st.st_mode & 0o022:
            problems.append(f"{path} is writable by other users (mode "
                            f"{stat.S_IMODE(st.st_mode):04o})")
            writable.append(path)
        if st.st_uid not in (os.geteuid(), 0):
            problems.append(f"{path} belongs to another user (uid {st.st_uid})")
            foreign.append(path)
    if problems:
        fixes = []
        if writable:
            fixes.append("chmod go-w " + " ".join(f"'{p}'" for p in writable))
        if foreign:
            fixes.append(f"chown {_user()} " + " ".join(f"'{p}'" for p in foreign))
        return fail(name, "; ".join(problems) + ": the service refuses plugins from there",
                    " && ".join(fixes), str(folder))
    count = len(list(folder.glob("*.py")))
    return ok(name, f"{folder}: {count} plugin file(s), not writable by others", str(folder))


# -- the server ----------------------------------------------------------------------------------


def check_server(settings: Settings, result: UploadResult | None) -> CheckResult:
    """The server is reachable at server_url, over verified TLS when https.

    `result` is the answer to the connection check (`Uploader.probe()`), None if it could not
    be made (no server_url).
    """
    from pywats_client.service.uploader import Outcome

    url, cli = settings.server_url, _cli(settings)
    if not url or result is None:
        return fail("server", "server_url is not set", f"{cli} config set server_url "
                    "https://wats.example.com (the address of your WATS server)", url)
    parts = urlsplit(url)
    if result.outcome is Outcome.OFFLINE:
        # The uploader words every certificate/handshake failure this way (an OFFLINE outcome
        # has no finer type); the fix differs from plain unreachability.
        if "TLS handshake" in result.message:
            return fail("server", result.message,
                        "if the server's certificate comes from your own CA: "
                        f"{cli} config set ca_bundle /path/to/ca.pem; if the station's "
                        "clock is wrong, certificates look expired or not yet valid (see "
                        "clock)", url)
        return fail("server", result.message,
                    f"check server_url, the network, DNS and firewalls between this station "
                    f"and {parts.hostname} (port {parts.port or _default_port(parts.scheme)}); "
                    "meanwhile reports wait in the queue", url)
    if result.outcome is Outcome.AUTH and result.status not in (401, 403, 407):
        return fail("server", result.message,
                    "set server_url to the WATS address, with its path prefix if it has one: "
                    f"{cli} config set server_url https://host/prefix", url)
    if result.outcome is Outcome.TRANSIENT:
        return warn("server", result.message, "the server has trouble of its own: try again "
                    "later, and tell the WATS administrator if it lasts", url)
    if parts.scheme == "https":
        how = "HTTPS, certificate verified" + (
            f" with ca_bundle {settings.ca_bundle}" if settings.ca_bundle else "")
        return ok("server", f"reachable ({how})", url)
    if _is_loopback(parts.hostname or ""):
        return ok("server", "reachable (plain HTTP on this machine)", url)
    return warn("server", "reachable over plain HTTP: the token and every report cross the "
                "network unencrypted", "use https:// if the server offers it: "
                f"{cli} config set server_url https://...", url)


def check_credentials(settings: Settings, result: UploadResult | None) -> CheckResult:
    """The server accepts api_token (the connection check is authenticated)."""
    from pywats_client.service.uploader import Outcome

    cli = _cli(settings)
    if not settings.api_token or result is None:
        return fail("credentials", "api_token is not set",
                    f"{cli} config set api_token TOKEN (the token your WATS server "
                    "issued for this station)")
    if result.outcome is Outcome.STORED:
        return ok("credentials", "the server accepts the API token")
    return fail("credentials", result.message,
                f"{cli} config set api_token TOKEN with a valid token (ask the WATS "
                "administrator for one with report upload rights); until then reports wait "
                "in the queue")


def check_processes(settings: Settings, client: Uploader) -> CheckResult:
    """The server lists its process codes, and converters.defaults.process_code is one."""
    from pywats_client.service.uploader import Outcome

    result, table = client.processes()
    if result.outcome is not Outcome.STORED:
        return warn("processes", f"the process list could not be read: {result.message}",
                    "converters that name a process instead of a code cannot resolve it; check "
                    "the token's rights on the server")
    if not table:
        return warn("processes", "the server lists no process codes",
                    "ask the WATS administrator to define the processes (operation types) "
                    "reports are sent with")
    by_code = {code: name for name, code in table.items()}
    default = settings.converters.defaults.get("process_code")
    if default is None:
        return ok("processes", f"the server knows {len(table)} process code(s); no default "
                  "process_code configured (converters take it from each file)")
    if default not in by_code:
        known = ", ".join(f"{code} {name}" for code, name in sorted(by_code.items())
                          [:_MAX_LISTED_PROCESSES])
        more = ", …" if len(by_code) > _MAX_LISTED_PROCESSES else ""
        return fail("processes", f"converters.defaults.process_code {default} is not a process "
                    f"on the server (it knows: {known}{more}); reports using it are rejected",
                    f"{_cli(settings)} config set converters.defaults.process_code CODE with a "
                    "code from that list, or ask the WATS administrator to add the process")
    return ok("processes", f"the server knows {len(table)} process code(s), including the "
              f"default {default} ({by_code[default]})")


def _cli(settings: Settings) -> str:
    """The command line for this instance, for the fixes we print."""
    folder = settings.source.parent if settings.source else None
    instance = "default" if folder is None or is_user_data_dir(folder) else folder.name
    return "pywats-client" if instance == "default" else f"pywats-client --instance {instance}"


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def _is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


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
    if paths.flat and _exists(older / "config.json"):
        pending = len(list((older / "queue" / "pending").glob("*.wsq")))
        results.append(warn(
            name, f"{older} holds an older default instance, unused since {paths.config} "
            f"exists ({pending} report(s) waiting in its queue)",
            f"stop the client, move its waiting reports: mv '{older}/queue/pending/'*.wsq "
            f"'{paths.queue}/pending/', then remove {older}", subject))
    if results or unit is None:
        return results  # no unit and nothing out of place: no line for it
    return [ok(name, f"{paths.data_dir}, as the installed unit {unit.path} has it", subject)]


# -- converters ----------------------------------------------------------------------------------


def converter_registry(paths: InstancePaths, settings: Settings) -> ConverterRegistry:
    """The converters the service of this instance would have (plugins loaded)."""
    from pywats_client.converters.registry import ConverterRegistry

    return ConverterRegistry(enabled=settings.converters.enabled, plugin_dir=paths.converters)


def converter_problem(name: str, registry: ConverterRegistry,
                      arguments: Any = None) -> str | None:
    """Why the converter `name` cannot be used with `arguments`, or None if it loads."""
    return registry.problem(name, arguments)


def check_folder_converter(folder: WatchFolder, registry: ConverterRegistry,
                           cli: str = "pywats-client") -> CheckResult:
    """The converter a watch folder is bound to loads, with the folder's arguments."""
    name, subject = "converter", str(folder.path)
    assert folder.converter is not None
    problem = converter_problem(folder.converter, registry, folder.arguments)
    if problem is None:
        return ok(name, f"{folder.path}: {folder.converter} loads", subject)
    return fail(name, f"{folder.path} is bound to {folder.converter}, which does not load: "
                f"{problem}. Every file there goes to its error folder",
                f"{cli} config add-watch-folder '{folder.path}' --converter NAME with a name "
                "from 'pywats-client converters list' (or put the plugin file in "
                f"{registry.plugin_dir}), then restart the service", subject)


# -- folders and disks ---------------------------------------------------------------------------


def check_watch_folder(folder: WatchFolder,
                       fstype: Callable[[Path], str | None] = filesystem_type) -> CheckResult:
    """A watch folder exists, can be read and written, and network shares are polled.

    Written, because post-actions move, archive or delete the source files and files that
    cannot be converted go to its error folder.
    """
    name, path = "watch folder", folder.path
    subject = str(path)
    where = "(queue.watch_folders in config.json)"
    if not path.exists():
        return fail(name, f"{path} does not exist (or its share is not mounted): its files "
                    "are not read", f"create it (mkdir -p '{path}'), mount the share it lives "
                    f"on, or correct the path {where}", subject)
    if not path.is_dir():
        return fail(name, f"{path} is not a folder", f"point the watch folder at the folder "
                    f"the equipment writes into {where}", subject)
    if not os.access(path, os.R_OK | os.X_OK):
        return fail(name, f"{path} cannot be read by user {_user()}",
                    f"give {_user()} read access (chmod/chown, or add it to the folder's group)",
                    subject)
    unwritable = [p for p in _written_folders(folder) if not _can_create_in(p)]
    if unwritable:
        listed = ", ".join(str(p) for p in unwritable)
        return fail(name, f"user {_user()} cannot write to {listed}: converted files cannot be "
                    "moved away or put in the error folder", f"give {_user()} write access "
                    f"to {listed}", subject)
    kind = fstype(path)
    if kind in NETWORK_OR_WEAK_FILESYSTEMS and not folder.polling:
        return warn(name, f"{path} is on a {kind} filesystem (a network share or removable "
                    "disk): file events for files written by other machines never arrive, so "
                    "files are only found by the periodic rescan",
                    f'set "polling": true for this folder {where}', subject)
    polled = ", polled" if folder.polling else ""
    return ok(name, f"{path} ({kind or 'unknown filesystem'}{polled}): readable and writable",
              subject)


def _written_folders(folder: WatchFolder) -> list[Path]:
    targets = [folder.error_path]
    if folder.post_action != "none":
        targets.append(folder.path)  # move/archive/delete change the watch folder itself
    if folder.post_action in ("move", "archive"):
        targets.append(folder.done_path)
    return targets


def _can_create_in(path: Path) -> bool:
    """Whether a file can be created at or below `path` (the first existing ancestor counts)."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return os.access(probe, os.W_OK | os.X_OK)


def check_queue(paths: InstancePaths, settings: Settings, *, low_bytes: int = LOW_FREE_BYTES,
                fstype: Callable[[Path], str | None] = filesystem_type) -> CheckResult:
    """The queue is on a local filesystem with free space (warn under 100 MB)."""
    name, subject = "queue", str(paths.queue)
    probe = paths.queue
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent  # not created yet: look at where it will be
    kind = fstype(probe)
    if kind in NETWORK_OR_WEAK_FILESYSTEMS:
        found = (f"{paths.queue} is on a {kind} filesystem: rename and fsync there do not "
                 "survive a power cut or a network drop the way they must")
        local = "keep the instance on a local disk (--data-dir on ext4, e.g. /var/lib/pywats)"
        if settings.queue.allow_network_filesystem:
            return warn(name, found + " (allowed by queue.allow_network_filesystem)", local,
                        subject)
        return fail(name, found + "; the service refuses to start", f"{local}, or accept the "
                    f"risk: pywats-client --instance {paths.name} config set "
                    "queue.allow_network_filesystem true", subject)
    try:
        st = os.statvfs(probe)
    except OSError as exc:
        return fail(name, f"cannot look at {probe}: {exc.strerror}",
                    "run the doctor as the user the service runs as", subject)
    free = st.f_bavail * st.f_frsize
    if not os.access(probe, os.W_OK | os.X_OK):
        return fail(name, f"user {_user()} cannot write to {probe}", f"give {_user()} write "
                    f"access to {probe}, or run the service as its owner", subject)
    if free == 0:
        return fail(name, f"the disk holding {paths.queue} is full: new reports cannot be "
                    "queued (their files wait in the watch folders)", _free_space_fix(paths),
                    subject)
    if free < low_bytes:
        return warn(name, f"only {_size(free)} free on the disk holding {paths.queue}",
                    _free_space_fix(paths), subject)
    return ok(name, f"{paths.queue} ({kind or 'unknown filesystem'}), {_size(free)} free",
              subject)


def _free_space_fix(paths: InstancePaths) -> str:
    return (f"free space on that disk: old logs, 'pywats-client --instance {paths.name} queue "
            "clear-completed', or lower queue.completed_retention_days")


def _size(n: int) -> str:
    if n >= 2**30:
        return f"{n / 2**30:.1f} GB"
    return f"{n / 2**20:.0f} MB"


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


def _user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return f"uid {os.geteuid()}"


# -- all of it -----------------------------------------------------------------------------------


def diagnose(paths: InstancePaths, *, clock: Clock = SYSTEM_CLOCK,
             probe_server: bool = True) -> Diagnosis:
    """Run every check for the instance at `paths`; checks that need a valid config (server,
    watch folders, queue) run only when it loads."""
    diagnosis = Diagnosis(paths.name, paths.root)

    def add(name: str, check: Callable[[], CheckResult | list[CheckResult]]) -> CheckResult:
        # An instance folder of another user (0700) makes even stat() fail: that is a finding
        # about this run of the doctor, not a reason to stop looking at the rest.
        try:
            found = check()
        except OSError as exc:
            found = fail(name, f"cannot look: {exc}", "run the doctor as the user the service "
                         "runs as, e.g. sudo -u pywats pywats-client --data-dir /var/lib/pywats "
                         f"--instance {paths.name} doctor")
        results = found if isinstance(found, list) else [found]
        diagnosis.checks.extend(results)
        return results[0]

    add("python", check_python)
    dependencies = add("dependencies", check_dependencies)
    config = add("config", lambda: check_config(paths))
    if _exists(paths.config):
        add("config permissions", lambda: check_secret_file(
            paths.config, "config permissions",
            "the configuration (server, station, encrypted token)"))
    if _exists(paths.key):
        add("key permissions", lambda: check_secret_file(
            paths.key, "key permissions", "the key that decrypts the API token"))
    add("plugin folder", lambda: check_plugin_folder(paths.converters))
    if config.status is not Status.FAIL:
        settings = _load(paths)
        if probe_server and dependencies.status is Status.OK:
            add("server", lambda: _server_checks(settings))
        registry: ConverterRegistry | None = None
        for folder in settings.queue.watch_folders:
            add("watch folder", functools.partial(check_watch_folder, folder))
            if folder.converter is not None:
                registry = registry or converter_registry(paths, settings)
                add("converter", functools.partial(check_folder_converter, folder, registry,
                                                   _cli(settings)))
        add("queue", lambda: check_queue(paths, settings))
        add("memory", lambda: check_memory(settings))
    add("clock", lambda: check_clock(clock))
    add("service", lambda: check_service(paths))
    return diagnosis


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:
        return False  # cannot even look: the config check has said so already


def _server_checks(settings: Settings) -> list[CheckResult]:
    from pywats_client.service.uploader import Outcome, uploader_for

    if not settings.server_url:
        return [check_server(settings, None)]
    if not settings.api_token:
        return [check_credentials(settings, None)]
    # A hung server should not keep an operator waiting for the full upload read timeout.
    quick = replace(settings, read_timeout=min(settings.read_timeout, PROBE_READ_TIMEOUT))
    try:
        client = uploader_for(quick)
    except ConfigError as exc:
        return [fail("server", str(exc), "correct the setting named above",
                     settings.server_url)]
    try:
        result = client.probe()
        checks = [check_server(settings, result)]
        if checks[0].status is Status.FAIL:
            return checks  # nothing answered: credentials and processes are unknown
        if result.outcome in (Outcome.STORED, Outcome.AUTH):  # else the answer says nothing
            checks.append(check_credentials(settings, result))
        if result.outcome is Outcome.STORED:
            checks.append(check_processes(settings, client))
        return checks
    finally:
        client.close()

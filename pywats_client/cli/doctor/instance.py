"""The doctor's checks of the instance: its config and secret files, its plugin folder, the
server (reachable, the token accepted, the process codes), the watch folders with their
converters, and the queue's disk. Each returns a `CheckResult` and only looks.
"""

from __future__ import annotations

import json
import os
import pwd
import stat
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pywats_client.cli.common import load_settings_for
from pywats_client.cli.doctor.findings import CheckResult, Status, fail, ok, warn
from pywats_client.config.settings import Settings, WatchFolder
from pywats_client.errors import ConfigError
from pywats_client.fsutil import NETWORK_OR_WEAK_FILESYSTEMS, filesystem_type
from pywats_client.http.base import is_loopback
from pywats_client.paths import InstancePaths, is_user_data_dir

if TYPE_CHECKING:
    from pywats_client.converters.registry import ConverterRegistry
    from pywats_client.service.uploader import Uploader, UploadResult

LOW_FREE_BYTES = 100 * 2**20  # below this the queue's disk is nearly full
PROBE_READ_TIMEOUT = 20.0  # the doctor waits at most this long for an answer, whatever the config
_MAX_LISTED_PROCESSES = 12


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
        settings = load_settings_for(paths)
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

    url, cli = settings.server_url, cli_for(settings)
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
    if is_loopback(parts.hostname or ""):
        return ok("server", "reachable (plain HTTP on this machine)", url)
    return warn("server", "reachable over plain HTTP: the token and every report cross the "
                "network unencrypted", "use https:// if the server offers it: "
                f"{cli} config set server_url https://...", url)


def check_credentials(settings: Settings, result: UploadResult | None) -> CheckResult:
    """The server accepts api_token (the connection check is authenticated)."""
    from pywats_client.service.uploader import Outcome

    cli = cli_for(settings)
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
                    f"{cli_for(settings)} config set converters.defaults.process_code CODE with a "
                    "code from that list, or ask the WATS administrator to add the process")
    return ok("processes", f"the server knows {len(table)} process code(s), including the "
              f"default {default} ({by_code[default]})")


def server_checks(settings: Settings) -> list[CheckResult]:
    """The server, credentials and processes checks, from one connection check."""
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


def cli_for(settings: Settings) -> str:
    """The command line for this instance, for the fixes we print."""
    folder = settings.source.parent if settings.source else None
    instance = "default" if folder is None or is_user_data_dir(folder) else folder.name
    return "pywats-client" if instance == "default" else f"pywats-client --instance {instance}"


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


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


def _user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return f"uid {os.geteuid()}"

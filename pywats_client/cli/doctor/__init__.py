"""`pywats-client doctor`: look at a station and say what is wrong and how to fix it.

`diagnose()` runs the checks in order for one instance: those of the station (`station`:
Python, dependencies, data dir, memory, clock, service) and those of the instance (`instance`:
config, permissions, plugins, server, credentials, process codes, watch folders and their
converters, queue disk), each returning a `CheckResult` (`findings`). Checks only look: nothing
here creates, changes or deletes a file.

Imports leaf modules at the top and `config` / `uploader` inside the checks that need them, so
that a missing `requests` or `cryptography` is reported by the dependency check instead of
crashing the doctor. Never imports the service.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pywats_client.cli.common import load_settings_for
from pywats_client.cli.doctor.findings import CheckResult, Diagnosis, Status, exists, fail, ok, warn
from pywats_client.cli.doctor.instance import (
    check_config,
    check_credentials,
    check_folder_converter,
    check_plugin_folder,
    check_processes,
    check_queue,
    check_secret_file,
    check_server,
    check_watch_folder,
    cli_for,
    converter_problem,
    converter_registry,
    server_checks,
)
from pywats_client.cli.doctor.station import (
    UNIT_DIRS,
    check_clock,
    check_data_dir,
    check_dependencies,
    check_memory,
    check_python,
    check_service,
)
from pywats_client.clock import SYSTEM_CLOCK, Clock
from pywats_client.paths import InstancePaths

if TYPE_CHECKING:
    from pywats_client.converters.registry import ConverterRegistry

__all__ = [
    "CheckResult", "Diagnosis", "Status", "check_clock", "check_config", "check_credentials",
    "check_data_dir", "check_dependencies", "check_folder_converter", "check_memory",
    "check_plugin_folder", "check_processes", "check_python", "check_queue",
    "check_secret_file", "check_server", "check_service", "check_watch_folder",
    "converter_problem", "diagnose", "fail", "ok", "warn",
]


def diagnose(paths: InstancePaths, *, clock: Clock = SYSTEM_CLOCK,
             probe_server: bool = True, unit_dirs: Sequence[Path] = UNIT_DIRS) -> Diagnosis:
    """Run every check for the instance at `paths`; checks that need a valid config (server,
    watch folders, queue) run only when it loads. `unit_dirs`: where installed systemd units
    are looked for."""
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
    try:  # nothing when the instance is where the installed unit runs it
        diagnosis.checks.extend(check_data_dir(paths, unit_dirs))
    except OSError as exc:
        unreadable = warn("data dir", f"cannot compare with the installed unit: {exc}",
                          "check that the unit files are readable")
        diagnosis.checks.append(unreadable)
    config = add("config", lambda: check_config(paths))
    if exists(paths.config):
        add("config permissions", lambda: check_secret_file(
            paths.config, "config permissions",
            "the configuration (server, station, encrypted token)"))
    if exists(paths.key):
        add("key permissions", lambda: check_secret_file(
            paths.key, "key permissions", "the key that decrypts the API token"))
    add("plugin folder", lambda: check_plugin_folder(paths.converters))
    if config.status is not Status.FAIL:
        settings = load_settings_for(paths)
        if probe_server and dependencies.status is Status.OK:
            add("server", lambda: server_checks(settings))
        registry: ConverterRegistry | None = None
        for folder in settings.queue.watch_folders:
            add("watch folder", functools.partial(check_watch_folder, folder))
            if folder.converter is not None:
                registry = registry or converter_registry(paths, settings)
                add("converter", functools.partial(check_folder_converter, folder, registry,
                                                   cli_for(settings)))
        add("queue", lambda: check_queue(paths, settings))
        add("memory", lambda: check_memory(settings))
    add("clock", lambda: check_clock(clock))
    add("service", lambda: check_service(paths))
    return diagnosis



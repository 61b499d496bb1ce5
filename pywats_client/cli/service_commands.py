"""Commands that run, stop and look at the service: start, stop, restart, status,
instances list, api-token, unlock and doctor."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pywats_client.cli.common import (
    API_PORT,
    DEGRADED,
    ERROR,
    NOT_RUNNING,
    OK,
    REFUSED,
    REJECTED,
    RESTARTED_ENV,
    SERVER,
    USAGE,
    AddCommand,
    err,
    instance_paths,
    load_settings_for,
    when,
)

LOCK_FD_ENV = "PYWATS_CLIENT_LOCK_FD"  # the instance lock's descriptor, over a restart in place

if TYPE_CHECKING:
    from pywats_client.config.settings import ApiSettings, Settings
    from pywats_client.paths import InstancePaths


def add_commands(command: AddCommand) -> None:
    p = command("start", cmd_start, "run the service in the foreground (stop: Ctrl-C/SIGTERM)",
                aliases=["service"])
    p.add_argument("--once", action="store_true",
                   help="convert what is in the watch folders, upload everything due, print a "
                   "summary and exit (for cron)")
    p.add_argument("--daemon", action="store_true",
                   help="detach and run in the background (pid file and log in the instance "
                   "folder); not needed under systemd")
    p.add_argument("--log-level", default="", help="override logging.level for this run")
    _add_stop_timeout_argument(p)
    _add_api_arguments(p)

    p = command("stop", cmd_stop, "stop the running service (SIGTERM), however it was started, "
                "and wait until its process has exited")
    p.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                   help="how long to wait for the process to exit (default %(default)s); "
                   "exit code 1 if it has not by then")
    p.add_argument("--force", action="store_true", help="SIGKILL it after the timeout")

    p = command("restart", cmd_restart, "stop the service, then start it as a daemon")
    p.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                   help="how long to wait for the old process to exit (default %(default)s)")
    p.add_argument("--force", action="store_true", help="SIGKILL it after the timeout")
    p.add_argument("--log-level", default="", help="override logging.level for this run")
    _add_stop_timeout_argument(p)
    _add_api_arguments(p)

    p = command("api-token", cmd_api_token, "where the control API token is (created if "
                "missing); POST /stop and /restart, GET /config and /queue/<state> "
                "need it, and beyond loopback every route")
    p.add_argument("--show", action="store_true", help="print the token itself, for scripts")

    inst = command("instances", None, "instances: list")
    inst_sub = inst.add_subparsers(title="instances commands", metavar="ACTION")
    p = inst_sub.add_parser("list", help="every instance in the data dir and its state")
    p.set_defaults(handler=cmd_instances_list)
    p.add_argument("--json", action="store_true")

    p = command("status", cmd_status, "is the service running, is the server reachable, "
                "what is queued")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--no-probe", action="store_true", help="do not contact the server")


def add_station_commands(command: AddCommand) -> None:
    command("unlock", cmd_unlock, "remove this instance's lock file if its process is gone")

    p = command("doctor", cmd_doctor, "check this station and say how to fix what is wrong: "
                "Python, dependencies, config, server, folders, disk, clock, service, "
                "permissions")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.epilog = ("exit codes:\n  0  nothing needs fixing (warnings are shown, but do not count)\n"
                "  1  something needs fixing (each problem is shown with its fix)\n")


def cmd_start(args: argparse.Namespace) -> int:
    from pywats_client.errors import LockError
    from pywats_client.queue.lock import read_lock

    paths = instance_paths(args)
    paths.ensure()
    settings = load_settings_for(paths)  # a bad config fails here, in the operator's terminal
    from pywats_client.service.uploader import require_server

    require_server(settings, paths.config)
    holder = read_lock(paths.lock)
    if holder is not None and not (holder.pid == os.getpid() and os.environ.get(LOCK_FD_ENV)):
        raise LockError(f"instance '{paths.name}' is already in use by pid {holder.pid} "
                        f"({holder.purpose}); 'pywats-client --instance {paths.name} status' "
                        "tells more")
    if args.api_port is not None and not 0 <= args.api_port <= 65535:
        err(f"--api-port {args.api_port}: give a TCP port from 1 to 65535 (or 0 for any)")
        return USAGE
    restarted = os.environ.pop(RESTARTED_ENV, "")  # only ever for this one program
    if not args.daemon:
        supervisor = "systemd" if os.environ.get("INVOCATION_ID") else "foreground"
        return _serve(args, paths, settings, supervisor)
    if args.once:
        err("--once and --daemon do not go together: --once runs to completion and exits")
        return USAGE
    from pywats_client.service.daemon import start_detached

    start_dir = _cwd()  # relative paths on the command line still mean this after a restart
    started = None
    if restarted == "daemon":  # re-executed by a restart: detached already, same pid
        os.chdir("/")
    else:
        forked = start_detached(paths)
        if isinstance(forked, int):
            print(f"started pid {forked} (instance {paths.name}); log: {paths.log_file}")
            return OK
        started = forked
    try:  # from here on this is the daemon: no terminal, logs go to the instance log
        return _serve(args, paths, settings, "daemon",
                      ready=started.ready if started else None, start_dir=start_dir,
                      pid_file=True)
    except LockError as exc:  # another start won the race: exit 4, as the check above does
        if started:
            started.locked(str(exc))
        raise
    except Exception as exc:
        if started:
            started.failed(f"{exc} (see {paths.log_file})")
        raise


def _cwd() -> str | None:
    try:
        return os.getcwd()
    except OSError:
        return None


def _serve(args: argparse.Namespace, paths: InstancePaths, settings: Settings, supervisor: str,
           ready: Callable[[], None] | None = None, start_dir: str | None = None,
           pid_file: bool = False) -> int:
    """Run the service in this process until it stops; the exit code of `start`.

    The instance lock is taken first: a process that cannot have it (exit 4) touches nothing,
    not even the pid file. After a restart request (SIGHUP, POST /restart) the service has
    stopped gracefully and released the instance; then this process executes its own command
    line again: same pid, so foreground, daemon and systemd supervision all carry on."""
    from pywats_client import logsetup
    from pywats_client.config.document import load_settings
    from pywats_client.service.daemon import remove_pid_file, write_pid_file
    from pywats_client.service.loop import Service
    from pywats_client.service.stopping import block_signals

    block_signals()  # until the handlers are in place: a signal waits rather than kills
    logsetup.configure(settings.logging, paths.log_file, level=args.log_level,
                       stderr=supervisor != "daemon")
    logsetup.quiet_third_party()
    service = Service(
        settings, paths, stop_timeout=args.stop_timeout,
        reload_settings=lambda: load_settings(paths.config, key_path=paths.key),
    )
    service.status.supervisor = supervisor
    purpose = "service (once)" if args.once else "service"
    inherited = os.environ.pop(LOCK_FD_ENV, "")  # restarted in place: the lock is ours already
    if not (inherited.isdigit() and service.lock.adopt(int(inherited), purpose)):
        service.lock.acquire(purpose)
    service.hand_over_lock = True
    try:
        if pid_file:
            write_pid_file(paths)
        service.install_signal_handlers(
            exit_now=lambda: _exit_now(service, paths, pid_file))
        api = _start_api(args, paths, settings, service)
        try:
            summary = service.run(once=args.once, on_ready=ready)
        finally:
            if api is not None:
                api.stop()
        code = _run_result(args, service, summary)
        if service.restart_requested:
            _restart_in_place(supervisor, start_dir, service.lock)
        if service.hard_stop:
            _exit_at_once(ERROR, paths, pid_file)  # do not wait for stuck network calls
        if service.unfinished_threads():
            # Abandoned threads (a stuck converter, a request the server never answers) can
            # change nothing any more, but the interpreter would wait for them at exit.
            _exit_at_once(code, paths, pid_file)
        return code
    finally:
        service.lock.release()  # a no-op once the service released it (it does, when clean)
        if pid_file:
            remove_pid_file(paths)


def _run_result(args: argparse.Namespace, service: Any, summary: Any) -> int:
    """The exit code of a run that ended normally; `--once` prints its summary first."""
    if not args.once:
        return OK
    remaining = ", ".join(f"{k} {v}" for k, v in summary.remaining.items() if v) or "none"
    print(f"converted {summary.converted}, conversion errors {summary.conversion_errors}, "
          f"uploaded {summary.uploaded}, rejected {summary.rejected}; "
          f"server {summary.server}; left in queue: {remaining}")
    if service.status.station_fault:
        print(f"station fault: {service.status.station_fault}; the files wait in the watch "
              "folders", file=sys.stderr)
        return ERROR
    if not summary.server.can_send:
        print(f"server problem: {summary.server_detail}", file=sys.stderr)
        from pywats_client.outcomes import ServerState

        return REFUSED if summary.server is ServerState.PAUSED else SERVER
    if summary.conversion_errors or summary.rejected:
        return REJECTED
    return OK


def _exit_now(service: Any, paths: InstancePaths, pid_file: bool) -> None:
    """A second stop request, from the signal handler: end the process now, wherever the main
    thread is. The kernel releases the instance lock; the queue survives this as it survives
    a SIGKILL, and the next start picks up what was under way."""
    import logging

    logging.getLogger(__name__).warning(
        "second stop request: exiting now; reports being uploaded are sent again and files "
        "being converted are converted again at the next start")
    service.abandon_now()
    _exit_at_once(ERROR, paths, pid_file)


def _exit_at_once(code: int, paths: InstancePaths, pid_file: bool) -> None:
    """Exit without waiting for other threads (never returns)."""
    import logging

    from pywats_client.service.daemon import remove_pid_file

    if pid_file:
        remove_pid_file(paths)
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):
            handler.flush()
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


def api_options(args: argparse.Namespace, settings: Settings) -> ApiSettings:
    """The control API as config.json's api.* configure it, with the command line's --api
    options put over them for this run."""
    from dataclasses import replace

    given = {name: getattr(args, option, None) for name, option in (
        ("enabled", "api"), ("port", "api_port"), ("host", "api_host"),
        ("allow_remote", "api_allow_remote"))}
    return replace(settings.api, **{k: v for k, v in given.items() if v is not None})


def _start_api(args: argparse.Namespace, paths: InstancePaths, settings: Settings,
               service: Any) -> Any:
    """The control API serving `service`, started; None when it is off (api.enabled, --api).
    Binding happens here, so a port in use stops the start with a message naming it."""
    api = api_options(args, settings)
    if not api.enabled or (args.once and args.api is None):
        return None  # api.enabled is for the service; a one-shot run serves it on --api only
    from pywats_client.config.document import ConfigDocument
    from pywats_client.http.control_api import ControlServer, load_or_create_token, token_path
    from pywats_client.queue.store import DurableQueue

    def config_view() -> dict[str, Any]:
        document = ConfigDocument.load(paths.config, paths.key)
        display, overrides = document.display_with_environment()  # secrets masked
        view = {"config_path": str(paths.config), **display}
        if overrides:
            view["environment_overrides"] = overrides
        return view

    server = ControlServer(
        service, DurableQueue(paths.queue, settings.queue),
        load_or_create_token(token_path(paths.root)), host=api.host, port=api.port,
        allow_remote=api.allow_remote, config_view=config_view, instance=paths.name,
        station=settings.station_name,
    )
    service.status.api_url = server.url
    return server.start()


def _restart_in_place(supervisor: str, start_dir: str | None, lock: Any) -> None:
    """Execute this program's own command line again, in this process (never returns)."""
    import logging

    from pywats_client.service.stopping import block_signals

    logging.getLogger(__name__).info("restarting: pid %d runs its command line again",
                                     os.getpid())
    logging.shutdown()  # flush the log file: exec does not
    block_signals()  # a stop or reload during exec waits for the new handlers (see _serve)
    sys.stdout.flush()
    sys.stderr.flush()
    if supervisor == "daemon":
        os.environ[RESTARTED_ENV] = "daemon"
    if lock.held:
        os.environ[LOCK_FD_ENV] = str(lock.hand_over())
    if start_dir:
        with contextlib.suppress(OSError):
            os.chdir(start_dir)
    os.execv(sys.executable, sys.orig_argv)


def cmd_api_token(args: argparse.Namespace) -> int:
    from pywats_client.http.control_api import load_or_create_token, token_path

    paths = instance_paths(args)
    paths.ensure()
    path = token_path(paths.root)
    token = load_or_create_token(path)
    if args.show:
        print(token)
    else:
        print(f"{path}  (mode 0600: only its owner can read it; --show prints the token)")
        print(f"usage: curl -X POST -H \"Authorization: Bearer $(cat {path})\" "
              f"http://127.0.0.1:{API_PORT}/stop")
    return OK


def cmd_stop(args: argparse.Namespace) -> int:
    from pywats_client.service.daemon import stop

    result = stop(instance_paths(args), timeout=args.timeout, force=args.force)
    print(result.message)
    return OK if result.stopped else ERROR


def cmd_restart(args: argparse.Namespace) -> int:
    from pywats_client.queue.lock import read_lock
    from pywats_client.service.daemon import stop
    from pywats_client.service.status import read_status

    paths = instance_paths(args)
    if read_lock(paths.lock) is not None:
        if (read_status(paths.state) or {}).get("supervisor") == "systemd":
            err(f"instance '{paths.name}' runs under systemd: restart it there "
                 f"(systemctl restart pywats-client@{paths.name})")
            return USAGE
        result = stop(paths, timeout=args.timeout, force=args.force)
        print(result.message)
        if not result.stopped:
            return ERROR
    args.daemon, args.once = True, False
    return cmd_start(args)


def cmd_instances_list(args: argparse.Namespace) -> int:
    from pywats_client.paths import default_data_dir
    from pywats_client.service.oneshot import list_instances_status

    rows = list_instances_status(args.data_dir or default_data_dir())
    if args.json:
        print(json.dumps(rows, indent=2))
        return OK
    if not rows:
        print("no instances yet: pywats-client [--instance NAME] config init creates one")
    for row in rows:
        state = f"running (pid {row['pid']})" if row["running"] else "stopped"
        print(f"{row['instance']:<16} {state:<20} pending {row['pending']:<6} "
              f"{row['server_url'] or '(no server_url)'}")
    return OK


def cmd_status(args: argparse.Namespace) -> int:
    from pywats_client.outcomes import ServerState
    from pywats_client.service.oneshot import gather_status

    paths = instance_paths(args)
    info = gather_status(paths, load_settings_for(paths), probe=not args.no_probe)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        running = (f"running (pid {info['pid']}, up {info['uptime_seconds']}s)"
                   if info["running"] else "not running")
        if info["lock_holder"] and not info["running"]:
            running += f"; instance in use by pid {info['pid']} ({info['lock_holder']})"
        print(f"instance:     {info['instance']}  ({info['config']})")
        print(f"service:      {running}")
        if info.get("api_url"):
            print(f"control API:  {info['api_url']}  (status page: open it in a browser)")
        print(f"server:       {info['server_url'] or '(not configured)'}")
        if "server_reachable" in info:
            if not info["server_reachable"]:
                print(f"              UNREACHABLE: {info['server_message']}")
            elif info["server_authenticated"]:
                print("              reachable, authenticated")
            else:
                print(f"              reachable, NOT authenticated: {info['server_message']}")
        if info["service_server_state"] in (ServerState.OFFLINE, ServerState.PAUSED):
            print(f"uploads:      {info['service_server_state'].upper()}: "
                  f"{info['service_server_detail']}")
        if info.get("station_fault"):
            print(f"queue:        CANNOT BE WRITTEN - {info['station_fault']}; files wait in "
                  "the watch folders and are tried again")
        if info.get("conversions_paused"):
            print(f"conversions:  PAUSED - {info['stuck_conversions']} converter threads are "
                  "stuck (converters.timeout_s); 'pywats-client restart' clears them")
        if info.get("poison_files"):
            print(f"set aside:    {info['poison_files']} file(s) the service died on, in the "
                  "error folders (converters.max_crashes)")
        if info["disk_full"]:
            print("disk:         FULL - new files wait in the watch folders")
        elif info["disk_low"]:
            print(f"disk:         nearly full - {info['disk_free_mb']} MB free for the queue")
        for folder in info["folders_unavailable"]:
            print(f"watch folder: UNAVAILABLE {folder} (missing, unmounted or unreadable; "
                  "its files wait)")
        if info["error_files"]:
            print(f"error files:  {info['error_files']} could not be converted and wait in "
                  "the error folders; each .error.txt note says why. Newest:")
            for item in info["error_files_newest"]:
                print(f"              {item['path']}: {item['reason'] or '(no note)'}")
        for broken in info["converters_broken"]:
            print(f"watch folder: {broken['folder']} is bound to {broken['converter']}, which "
                  f"does not load ({broken['problem']}); its files go to the error folder. "
                  "Fix: pywats-client config add-watch-folder FOLDER --converter NAME")
        if info["waiting_for_processes"]:
            print(f"files:        {info['waiting_for_processes']} files wait for the server's "
                  "process list")
        if info["id_clashes"]:
            print(f"id clashes:   {info['id_clashes']} file(s) reused a report id of another "
                  "report; they are in the error folder")
        if info["folder_problems"]:
            print(f"folders:      {info['folder_problems']} time(s) a done or error folder was "
                  "refused (a link, not a folder, or protected; see the log)")
        counts = info["queue"]
        print("queue:        " + (", ".join(f"{k} {v}" for k, v in counts.items())
                                  or "empty (no queue folder yet)"))
        print(f"last upload:  {when(info['last_upload_at'])} {info['last_upload_id'] or ''}")
        if info["last_error"]:
            print(f"last error:   {when(info['last_error_at'])} {info['last_error']}")
    if not info["running"]:
        return NOT_RUNNING
    if info.get("server_refused") or info["service_server_state"] == ServerState.PAUSED:
        return REFUSED  # a wrong token or URL: waiting will not fix it
    if info.get("server_authenticated") is False or info[
            "service_server_state"] == ServerState.OFFLINE:
        return SERVER
    if (info["disk_full"] or info["disk_low"] or info["folders_unavailable"]
            or info["error_files"] or info["converters_broken"] or info.get("station_fault")
            or info.get("conversions_paused")):
        return DEGRADED
    return OK


def cmd_unlock(args: argparse.Namespace) -> int:
    from pywats_client.queue.lock import unlock

    print(unlock(instance_paths(args).lock))
    return OK


def cmd_doctor(args: argparse.Namespace) -> int:
    from pywats_client.cli.doctor import diagnose

    diagnosis = diagnose(instance_paths(args))
    print(json.dumps(diagnosis.to_dict(), indent=2) if args.json else diagnosis.render())
    return ERROR if diagnosis.needs_fixing else OK


def _add_stop_timeout_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stop-timeout", type=float, default=20.0, metavar="SECONDS",
                   help="how long a graceful stop waits for running conversions and uploads "
                   "before it abandons them (default %(default)s; they are taken up again at "
                   "the next start); keep it below systemd's TimeoutStopSec")


def _add_api_arguments(p: argparse.ArgumentParser) -> None:
    # Defaults are None: an option not given leaves config.json's api.* as they are.
    group = p.add_argument_group(
        "control API (as config.json's api.* say, off by default; these override them for "
        "this run)")
    group.add_argument("--api", action=argparse.BooleanOptionalAction, default=None,
                       help="serve the HTTP control API and status page (api.enabled): GET / "
                       "/status /queue /metrics, and with the token GET /config "
                       "/queue/<state>, POST /stop /restart ('pywats-client api-token')")
    group.add_argument("--api-port", type=int, default=None, metavar="PORT",
                       help=f"TCP port (api.port, default {API_PORT}; one per instance; 0 = any "
                       "free port, written to state/status.json as api_url)")
    group.add_argument("--api-host", default=None, metavar="ADDRESS",
                       help="address to listen on (api.host, default 127.0.0.1: this machine "
                       "only)")
    group.add_argument("--api-allow-remote", action=argparse.BooleanOptionalAction,
                       default=None,
                       help="allow a non-loopback --api-host (api.allow_remote); every route "
                       "then needs the token (in a browser: any user name, the token as the "
                       "password)")

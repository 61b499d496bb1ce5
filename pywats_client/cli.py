"""The `pywats-client` command line: argparse in, one library call, an exit code out.

Handlers are thin: they build a request, call into the package, print the answer and map
errors to exit codes. Heavy modules (requests, watchdog, cryptography) are imported inside the
handlers that need them, so `--help` and `--version` start in a blink on a Raspberry Pi.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pywats_client import __version__

if TYPE_CHECKING:
    from pywats_client.paths import InstancePaths
    from pywats_client.settings import Settings

# Exit codes, also listed in --help.
OK = 0
ERROR = 1
USAGE = 2  # bad command line or invalid configuration
SERVER = 3  # server unreachable or credentials refused: reports are kept and retried
LOCKED = 4  # another process owns this instance's queue
REJECTED = 5  # a file could not be converted, or the server rejected a report
NOT_RUNNING = 6  # status: the service is not running
DEGRADED = 7  # status: running, but the disk is (nearly) full or a watch folder is unavailable

API_PORT = 8765  # = control_api.DEFAULT_PORT, kept here so --help imports nothing
# Set by a daemon that re-executes itself for a restart: the new program is already detached.
RESTARTED_ENV = "PYWATS_CLIENT_RESTARTED"

EXIT_CODES = f"""exit codes:
  {OK}  success
  {ERROR}  unexpected error (see the message and the log)
  {USAGE}  bad command line or invalid configuration (the message names the key and the fix)
  {SERVER}  server unreachable, or credentials refused: nothing is lost, reports wait in the queue
  {LOCKED}  another process owns this instance (pywats-client status tells which)
  {REJECTED}  a file could not be converted, or the server rejected a report
  {NOT_RUNNING}  status: the service is not running
  {DEGRADED}  status: running, but the disk is (nearly) full or a watch folder is unavailable
"""

DESCRIPTION = """\
Headless WATS client: watches folders for files written by test equipment, converts each one
into a WATS report, keeps every report in a durable queue and uploads it to a WATS server —
through outages, server faults and restarts, losing nothing.

Set up a station:
  pywats-client config init                   (asks for server, token, station name)
  pywats-client config add-watch-folder /data/ict --converter WATSStandardJsonConverter
  pywats-client start                         (foreground; for systemd)
  pywats-client start --once                  (drain what is due, then exit; for cron)
  pywats-client status
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit code (the console script exits with it)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return USAGE
    from pywats_client.errors import (
        ConfigError,
        ConversionError,
        LockError,
        PluginError,
        PyWATSClientError,
    )

    try:
        code: int = args.handler(args)
        return code
    except ConfigError as exc:
        _err(f"configuration error: {exc}")
        return USAGE
    except LockError as exc:
        _err(str(exc))
        return LOCKED
    except (ConversionError, PluginError) as exc:
        _err(str(exc))
        return REJECTED
    except PyWATSClientError as exc:
        _err(str(exc))
        return ERROR
    except BrokenPipeError:
        return ERROR  # stdout closed early (`| head`): there is nobody left to tell
    except OSError as exc:
        # Permissions, a full disk, a vanished folder: an operator needs the file named,
        # not a traceback; str(exc) carries the errno text and the path.
        _err(str(exc))
        return ERROR
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pywats-client",
        description=DESCRIPTION,
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"pywats-client {__version__}")
    parser.add_argument(
        "--instance", "--instance-id", dest="instance", default="default", metavar="NAME",
        help="which instance (own config, queue, logs, lock); default: %(default)s",
    )
    parser.add_argument(
        "--data-dir", type=Path, default=None, metavar="DIR",
        help="where instances live (env PYWATS_DATA_DIR; default ~/.config/pywats_client, "
        "or /var/lib/pywats as root)",
    )
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    def command(name: str, handler: Callable[[argparse.Namespace], int], help: str,
                aliases: Sequence[str] = ()) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, aliases=list(aliases),
                           epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(handler=handler)
        return p

    p = command("start", cmd_start, "run the service in the foreground (stop: Ctrl-C/SIGTERM)",
                aliases=["service"])
    p.add_argument("--once", action="store_true",
                   help="convert what is in the watch folders, upload everything due, print a "
                   "summary and exit (for cron)")
    p.add_argument("--daemon", action="store_true",
                   help="detach and run in the background (pid file and log in the instance "
                   "folder); not needed under systemd")
    p.add_argument("--log-level", default="", help="override logging.level for this run")
    _add_api_arguments(p)

    p = command("stop", cmd_stop, "stop the running service (SIGTERM), however it was started")
    p.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                   help="how long to wait for in-flight uploads (default %(default)s)")
    p.add_argument("--force", action="store_true", help="SIGKILL it after the timeout")

    p = command("restart", cmd_restart, "stop the service, then start it as a daemon")
    p.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS")
    p.add_argument("--force", action="store_true", help="SIGKILL it after the timeout")
    p.add_argument("--log-level", default="", help="override logging.level for this run")
    _add_api_arguments(p)

    p = command("api-token", cmd_api_token, "where the control API token is (created if "
                "missing); POST /stop and /restart need it")
    p.add_argument("--show", action="store_true", help="print the token itself, for scripts")

    inst = command("instances", _group_help("instances"), "instances: list")
    inst_sub = inst.add_subparsers(title="instances commands", metavar="ACTION")
    p = inst_sub.add_parser("list", help="every instance in the data dir and its state")
    p.set_defaults(handler=cmd_instances_list)
    p.add_argument("--json", action="store_true")

    p = command("status", cmd_status, "is the service running, is the server reachable, "
                "what is queued")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--no-probe", action="store_true", help="do not contact the server")

    _add_config_commands(sub, command)
    _add_queue_commands(sub, command)

    p = command("upload", cmd_upload, "convert a file if needed, queue it and upload it now")
    p.add_argument("--file", type=Path, required=True, metavar="PATH")
    p.add_argument("--converter", metavar="NAME", help="converter to use (default: detect)")
    p.add_argument("--verbose", action="store_true", help="print the report(s) sent")
    p.add_argument("--wait", type=float, default=30.0, metavar="SECONDS",
                   help="when the service runs, how long to wait for it to send the report")

    p = command("convert", cmd_convert, "convert a file and print the WSJF report(s); "
                "uploads nothing")
    p.add_argument("--file", type=Path, required=True, metavar="PATH")
    p.add_argument("--converter", metavar="NAME", help="converter to use (default: detect)")

    conv = command("converters", _group_help("converters"), "converters: list")
    conv_sub = conv.add_subparsers(title="converters commands", metavar="ACTION")
    p = conv_sub.add_parser("list", help="built-in and plugin converters, and broken plugins")
    p.set_defaults(handler=cmd_converters_list)

    command("unlock", cmd_unlock, "remove this instance's lock file if its process is gone")

    p = command("doctor", cmd_doctor, "check this station and say how to fix what is wrong: "
                "Python, dependencies, config, server, folders, disk, clock, service, "
                "permissions")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.epilog = ("exit codes:\n  0  nothing needs fixing (warnings are shown, but do not count)\n"
                "  1  something needs fixing (each problem is shown with its fix)\n")

    p = command("receiver", cmd_receiver, "run a WATS-compatible test server on loopback "
                "(for demos and trying converters offline)")
    from pywats_client.receiver_cli import add_arguments as add_receiver_arguments

    add_receiver_arguments(p)
    return parser


def _add_config_commands(sub: Any, command: Any) -> None:
    cfg = command("config", _group_help("config"), "show and change this instance's config.json")
    cs = cfg.add_subparsers(title="config commands", metavar="ACTION")

    p = cs.add_parser("init", help="create config.json (interactive unless --non-interactive)")
    p.set_defaults(handler=cmd_config_init)
    p.add_argument("--server-url")
    p.add_argument("--api-token", help="token issued by WATS (base64 of user:secret)")
    p.add_argument("--username", help="with --password: build the token from these")
    p.add_argument("--password")
    p.add_argument("--station-name")
    p.add_argument("--location")
    p.add_argument("--non-interactive", action="store_true", help="never prompt")
    p.add_argument("--force", action="store_true", help="replace an existing config.json")

    p = cs.add_parser("show", help="the effective config, secrets masked")
    p.set_defaults(handler=cmd_config_show)
    p.add_argument("--format", choices=["text", "json"], default="text")

    p = cs.add_parser("get", help="one value, by dotted key (e.g. queue.retry_delay)")
    p.set_defaults(handler=cmd_config_get)
    p.add_argument("key")

    p = cs.add_parser("set", help="change one value (typed and validated, written atomically)")
    p.set_defaults(handler=cmd_config_set)
    p.add_argument("key")
    p.add_argument("value")

    p = cs.add_parser("add-watch-folder", help="watch one more folder")
    p.set_defaults(handler=cmd_config_add_watch_folder)
    p.add_argument("path")
    p.add_argument("--converter", metavar="NAME", help="converter for every file in it "
                   "(default: detect per file)")
    p.add_argument("--post-action", choices=["move", "archive", "delete", "none"],
                   help="what to do with a source file once its report is queued "
                   "(default: move to the folder's done/)")


def _add_queue_commands(sub: Any, command: Any) -> None:
    q = command("queue", _group_help("queue"), "look at and manage the report queue")
    qs = q.add_subparsers(title="queue commands", metavar="ACTION")
    p = qs.add_parser("status", help="how many reports are in each state")
    p.set_defaults(handler=cmd_queue_status)
    p.add_argument("--json", action="store_true")
    p = qs.add_parser("list", help="reports in one state: id, source, attempts, next attempt, "
                      "last error")
    p.set_defaults(handler=cmd_queue_list)
    p.add_argument("--state", default="pending",
                   choices=["pending", "processing", "completed", "failed", "corrupt"])
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p = qs.add_parser("retry-failed", help="queue every failed report again")
    p.set_defaults(handler=cmd_queue_retry_failed)
    p = qs.add_parser("clear-completed", help="delete every uploaded report kept in completed/")
    p.set_defaults(handler=cmd_queue_clear_completed)


def _group_help(name: str) -> Callable[[argparse.Namespace], int]:
    def handler(args: argparse.Namespace) -> int:
        # `pywats-client queue` alone is a usage error like no command at all: show the
        # group's help and exit 2, not argparse's `--help` exit 0.
        with contextlib.suppress(SystemExit):
            build_parser().parse_args([name, "--help"])
        return USAGE

    return handler


def _add_api_arguments(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("control API (off unless --api)")
    group.add_argument("--api", action="store_true",
                       help="serve the HTTP control API and status page: GET / /status /queue "
                       "/queue/pending /config /metrics; POST /stop /restart (need the token "
                       "from 'pywats-client api-token')")
    group.add_argument("--api-port", type=int, default=API_PORT, metavar="PORT",
                       help="TCP port (default %(default)s; one per instance; 0 = any free port, "
                       "written to state/status.json as api_url)")
    group.add_argument("--api-host", default="127.0.0.1", metavar="ADDRESS",
                       help="address to listen on (default %(default)s: this machine only)")
    group.add_argument("--api-allow-remote", action="store_true",
                       help="allow a non-loopback --api-host; the GET routes are then readable "
                       "by anyone who can reach the port (secrets stay masked)")


# -- helpers ------------------------------------------------------------------------------


def _err(message: str) -> None:
    print(f"pywats-client: {message}", file=sys.stderr)


def _paths(args: argparse.Namespace) -> InstancePaths:
    from pywats_client.paths import InstancePaths

    data_dir = args.data_dir
    return InstancePaths.for_instance(args.instance, data_dir)


def _settings(paths: InstancePaths) -> Settings:
    from pywats_client.config import load_settings

    return load_settings(paths.config, key_path=paths.key)


def _when(epoch: float | None) -> str:
    if not epoch:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


# -- start --------------------------------------------------------------------------------


def cmd_start(args: argparse.Namespace) -> int:
    from pywats_client.errors import LockError
    from pywats_client.lock import read_lock

    paths = _paths(args)
    paths.ensure()
    settings = _settings(paths)  # a bad config fails here, in the operator's terminal
    from pywats_client.service import require_server

    require_server(settings, paths)
    holder = read_lock(paths.lock)
    if holder is not None:
        raise LockError(f"instance '{paths.name}' is already in use by pid {holder.pid} "
                        f"({holder.purpose}); 'pywats-client --instance {paths.name} status' "
                        "tells more")
    if getattr(args, "api", False) and not 0 <= args.api_port <= 65535:
        _err(f"--api-port {args.api_port}: give a TCP port from 1 to 65535 (or 0 for any)")
        return USAGE
    restarted = os.environ.pop(RESTARTED_ENV, "")  # only ever for this one program
    if not args.daemon:
        supervisor = "systemd" if os.environ.get("INVOCATION_ID") else "foreground"
        return _serve(args, paths, settings, supervisor)
    if args.once:
        _err("--once and --daemon do not go together: --once runs to completion and exits")
        return USAGE
    from pywats_client.daemon import remove_pid_file, start_detached

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
                      ready=started.ready if started else None, start_dir=start_dir)
    except Exception as exc:
        if started:
            started.failed(f"{exc} (see {paths.log_file})")
        raise
    finally:
        remove_pid_file(paths)


def _cwd() -> str | None:
    try:
        return os.getcwd()
    except OSError:
        return None


def _serve(args: argparse.Namespace, paths: InstancePaths, settings: Settings, supervisor: str,
           ready: Callable[[], None] | None = None, start_dir: str | None = None) -> int:
    """Run the service in this process until it stops; the exit code of `start`.

    After a restart request (POST /restart) the service has stopped gracefully and released
    the instance; then this process executes its own command line again: same pid, so
    foreground, daemon and systemd supervision all carry on."""
    from pywats_client import logsetup
    from pywats_client.config import load_settings
    from pywats_client.service import Service

    logsetup.configure(settings.logging, paths.log_file, level=args.log_level,
                       stderr=supervisor != "daemon")
    logsetup.quiet_third_party()
    service = Service(
        settings, paths,
        reload_settings=lambda: load_settings(paths.config, key_path=paths.key),
    )
    service.status.supervisor = supervisor
    api = _start_api(args, paths, settings, service)
    service.install_signal_handlers()
    try:
        summary = service.run(once=args.once, on_ready=ready)
    finally:
        if api is not None:
            api.stop()
    if service.hard_stop:
        sys.stderr.flush()
        os._exit(ERROR)  # second signal: do not wait for stuck network calls
    if service.restart_requested:
        _restart_in_place(supervisor, start_dir)
    if args.once:
        remaining = ", ".join(f"{k} {v}" for k, v in summary.remaining.items() if v) or "none"
        print(f"converted {summary.converted}, conversion errors {summary.conversion_errors}, "
              f"uploaded {summary.uploaded}, rejected {summary.rejected}; "
              f"server {summary.server}; left in queue: {remaining}")
        if summary.server in ("offline", "paused"):
            print(f"server problem: {summary.server_detail}", file=sys.stderr)
            return SERVER
        if summary.conversion_errors or summary.rejected:
            return REJECTED
    return OK


def _start_api(args: argparse.Namespace, paths: InstancePaths, settings: Settings,
               service: Any) -> Any:
    """The control API serving `service`, started; None without --api. Binding happens here,
    so a port in use stops the start with a message naming it."""
    if not getattr(args, "api", False):
        return None
    from pywats_client.config import ConfigDocument
    from pywats_client.control_api import ControlServer, load_or_create_token, token_path
    from pywats_client.queue import ReportQueue

    def config_view() -> dict[str, Any]:
        display = ConfigDocument.load(paths.config, paths.key).to_display()  # secrets masked
        overrides = _apply_environment(display)
        view = {"config_path": str(paths.config), **display}
        if overrides:
            view["environment_overrides"] = overrides
        return view

    server = ControlServer(
        service, ReportQueue(paths.queue, settings.queue),
        load_or_create_token(token_path(paths.root)), host=args.api_host, port=args.api_port,
        allow_remote=args.api_allow_remote, config_view=config_view, instance=paths.name,
        station=settings.station_name,
    )
    service.status.api_url = server.url
    return server.start()


def _restart_in_place(supervisor: str, start_dir: str | None) -> None:
    """Execute this program's own command line again, in this process (never returns)."""
    import logging

    logging.getLogger(__name__).info("restarting: pid %d runs its command line again",
                                     os.getpid())
    logging.shutdown()  # flush the log file: exec does not
    sys.stdout.flush()
    sys.stderr.flush()
    if supervisor == "daemon":
        os.environ[RESTARTED_ENV] = "daemon"
    if start_dir:
        with contextlib.suppress(OSError):
            os.chdir(start_dir)
    os.execv(sys.executable, sys.orig_argv)


def cmd_api_token(args: argparse.Namespace) -> int:
    from pywats_client.control_api import load_or_create_token, token_path

    paths = _paths(args)
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
    from pywats_client.daemon import stop

    result = stop(_paths(args), timeout=args.timeout, force=args.force)
    print(result.message)
    return OK if result.stopped else ERROR


def cmd_restart(args: argparse.Namespace) -> int:
    from pywats_client.daemon import stop
    from pywats_client.lock import read_lock
    from pywats_client.status import read_status

    paths = _paths(args)
    if read_lock(paths.lock) is not None:
        if (read_status(paths.state) or {}).get("supervisor") == "systemd":
            _err(f"instance '{paths.name}' runs under systemd: restart it there "
                 f"(systemctl restart pywats-client@{paths.name})")
            return USAGE
        result = stop(paths, timeout=args.timeout, force=args.force)
        print(result.message)
        if not result.stopped:
            return ERROR
    args.daemon, args.once = True, False
    return cmd_start(args)


def cmd_instances_list(args: argparse.Namespace) -> int:
    from pywats_client.operations import list_instances_status
    from pywats_client.paths import default_data_dir

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


# -- status -------------------------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    from pywats_client.operations import gather_status

    paths = _paths(args)
    info = gather_status(paths, _settings(paths), probe=not args.no_probe)
    if info["running"]:
        from pywats_client.status import read_status

        api_url = (read_status(paths.state) or {}).get("api_url")
        if api_url:
            info["api_url"] = api_url
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
        if info["service_server_state"] in ("offline", "paused"):
            print(f"uploads:      {info['service_server_state'].upper()}: "
                  f"{info['service_server_detail']}")
        if info["disk_full"]:
            print("disk:         FULL - new files wait in the watch folders")
        elif info["disk_low"]:
            print(f"disk:         nearly full - {info['disk_free_mb']} MB free for the queue")
        for folder in info["folders_unavailable"]:
            print(f"watch folder: UNAVAILABLE {folder} (missing, unmounted or unreadable; "
                  "its files wait)")
        counts = info["queue"]
        print("queue:        " + (", ".join(f"{k} {v}" for k, v in counts.items())
                                  or "empty (no queue folder yet)"))
        print(f"last upload:  {_when(info['last_upload_at'])} {info['last_upload_id'] or ''}")
        if info["last_error"]:
            print(f"last error:   {_when(info['last_error_at'])} {info['last_error']}")
    if not info["running"]:
        return NOT_RUNNING
    if info.get("server_authenticated") is False or info["service_server_state"] in (
            "offline", "paused"):
        return SERVER
    if info["disk_full"] or info["disk_low"] or info["folders_unavailable"]:
        return DEGRADED
    return OK


# -- config -------------------------------------------------------------------------------


def _document(paths: InstancePaths) -> Any:
    from pywats_client.config import ConfigDocument

    return ConfigDocument.load(paths.config, paths.key)


def cmd_config_init(args: argparse.Namespace) -> int:
    from pywats_client.config import init_config

    paths = _paths(args)
    if paths.config.exists() and not args.force:
        # Checked here, before any prompt, and worded with this command's own --force.
        _err(f"{paths.config} already exists; nothing changed. Fix: change single keys with "
             "'pywats-client config set KEY VALUE', or start over with "
             "'pywats-client config init --force'")
        return USAGE
    values = {
        "server_url": args.server_url, "api_token": args.api_token, "username": args.username,
        "password": args.password, "station_name": args.station_name,
        "location": args.location,
    }
    if not args.non_interactive:
        values = _prompt_init(values)
    if not values["server_url"]:
        _err("config init needs --server-url (or run it without --non-interactive)")
        return USAGE
    if not values["api_token"] and not (values["username"] and values["password"]):
        _err("config init needs --api-token, or --username and --password")
        return USAGE
    doc = init_config(paths, overwrite=args.force, **values)
    print(f"wrote {doc.path} (secrets encrypted with {paths.key})")
    print("next: pywats-client config add-watch-folder FOLDER, then pywats-client start")
    return OK


def _prompt_init(values: dict[str, str | None]) -> dict[str, str | None]:
    import getpass
    import socket

    def ask(label: str, current: str | None, default: str = "") -> str:
        shown = current or default
        answer = input(f"{label}{f' [{shown}]' if shown else ''}: ").strip()
        return answer or shown

    values["server_url"] = ask("WATS server URL", values["server_url"])
    if not values["api_token"] and not values["username"]:
        choice = ask("Authenticate with a token (t) or user name and password (u)", None, "t")
        if choice.lower().startswith("u"):
            values["username"] = ask("User name", None)
            values["password"] = getpass.getpass("Password: ")
        else:
            values["api_token"] = getpass.getpass("API token (input hidden): ").strip()
    elif values["username"] and not values["password"]:
        values["password"] = getpass.getpass("Password: ")
    values["station_name"] = ask("Station name", values["station_name"], socket.gethostname())
    values["location"] = ask("Station location", values["location"])
    return values


def cmd_config_show(args: argparse.Namespace) -> int:
    paths = _paths(args)
    display = _document(paths).to_display()
    overrides = _apply_environment(display)
    if args.format == "json":
        out = {"config_path": str(paths.config), **display}
        if overrides:
            out["environment_overrides"] = overrides
        print(json.dumps(out, indent=2))
        return OK
    print(f"# {paths.config}")
    for key, value in _flatten(display):
        note = f"  # from ${overrides[key]}, not config.json" if key in overrides else ""
        print(f"{key} = {json.dumps(value)}{note}")
    return OK


def _apply_environment(display: dict[str, Any]) -> dict[str, str]:
    """Put the PYWATS_* overrides into `display` (secrets masked); returns key -> variable.

    The service uses these values, not the file's: showing the file's server_url while
    $PYWATS_SERVER_URL points elsewhere would send an operator to the wrong server.
    """
    from pywats_client.config import ENV_OVERRIDES, SCHEMA
    from pywats_client.secrets import mask

    secret_keys = {option.key for option in SCHEMA if option.secret}
    applied: dict[str, str] = {}
    for var, key in ENV_OVERRIDES.items():
        text = os.environ.get(var, "").strip()
        if not text:
            continue  # an empty variable counts as unset, as in load_settings()
        value: Any = text
        if key in secret_keys:
            value = mask(text)
        elif key == "queue.watch_folders":
            value = [part for part in text.split(":") if part.strip()]
        elif key == "logging.level":
            value = text.upper()
        *parents, leaf = key.split(".")
        node: Any = display
        for part in parents:
            node = node.setdefault(part, {}) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node[leaf] = value
            applied[key] = var
    return applied


def _flatten(data: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key, value in data.items():
        if isinstance(value, dict) and value:
            rows.extend(_flatten(value, f"{prefix}{key}."))
        else:
            rows.append((f"{prefix}{key}", value))
    return rows


def cmd_config_get(args: argparse.Namespace) -> int:
    from pywats_client.secrets import mask

    doc = _document(_paths(args))
    value = doc.get(args.key)
    if args.key.rsplit(".", 1)[-1] in ("api_token", "password"):
        value = mask(str(value or ""))
    print(value if isinstance(value, str) else json.dumps(value))
    return OK


def cmd_config_set(args: argparse.Namespace) -> int:
    doc = _document(_paths(args))
    doc.set(args.key, args.value)
    doc.save()
    print(f"{args.key} set in {doc.path}")
    return OK


def cmd_config_add_watch_folder(args: argparse.Namespace) -> int:
    doc = _document(_paths(args))
    folder = str(Path(args.path).expanduser().resolve())
    doc.add_watch_folder(folder, converter=args.converter, post_action=args.post_action)
    doc.save()
    print(f"watching {folder}" + (f" with {args.converter}" if args.converter else "")
          + f"; restart the service to apply ({doc.path})")
    return OK


# -- queue --------------------------------------------------------------------------------


def _queue(args: argparse.Namespace) -> Any:
    from pywats_client.queue import ReportQueue

    paths = _paths(args)
    return ReportQueue(paths.queue, _settings(paths).queue)


def cmd_queue_status(args: argparse.Namespace) -> int:
    counts = {s.value: n for s, n in _queue(args).counts().items()}
    if args.json:
        print(json.dumps(counts))
    else:
        for state, n in counts.items():
            print(f"{state:<11} {n}")
    return OK


def cmd_queue_list(args: argparse.Namespace) -> int:
    from pywats_client.queue import State

    items = _queue(args).list(State(args.state), limit=args.limit, offset=args.offset)
    rows = [{
        "id": item.id,
        "source": item.header.source if item.header else "?",
        "attempts": item.header.attempts if item.header else None,
        "next_attempt": _when(item.next_attempt) if args.state == "pending" else None,
        "last_error": item.header.last_error if item.header else "unreadable header",
    } for item in items]
    if args.json:
        print(json.dumps(rows, indent=2))
        return OK
    if not rows:
        print(f"no {args.state} reports")
    for row in rows:
        extra = f"  next {row['next_attempt']}" if row["next_attempt"] else ""
        print(f"{row['id']}  attempts {row['attempts']}{extra}  {row['source']}")
        if row["last_error"]:
            print(f"    last error: {row['last_error']}")
    return OK


def cmd_queue_retry_failed(args: argparse.Namespace) -> int:
    n = _queue(args).retry_failed()
    print(f"{n} failed report(s) queued again")
    return OK


def cmd_queue_clear_completed(args: argparse.Namespace) -> int:
    n = _queue(args).clear_completed()
    print(f"{n} completed report(s) removed")
    return OK


# -- upload / convert / converters --------------------------------------------------------


def _check_source(path: Path) -> bool:
    """False (after saying why) unless `path` is a file this command can read."""
    if not path.exists():
        _err(f"--file {path}: no such file")
        return False
    if not path.is_file():
        _err(f"--file {path}: not a regular file (give the path of one report file)")
        return False
    return True


def cmd_upload(args: argparse.Namespace) -> int:
    from pywats_client.operations import upload_file

    if not _check_source(args.file):
        return USAGE
    paths = _paths(args)
    settings = _settings(paths)
    if not settings.server_url:
        _err(f"server_url is not set in {paths.config}; run pywats-client config init")
        return USAGE
    outcome = upload_file(paths, settings, args.file, converter=args.converter, wait=args.wait)
    for report in outcome.reports:
        line = f"{report['id']}: {report['state']}"
        if report.get("message"):
            line += f" - {report['message']}"
        print(line)
    if args.verbose:
        print(f"converter: {outcome.converter}")
        sent = outcome.documents
        print(json.dumps(sent[0] if len(sent) == 1 else sent, indent=2, ensure_ascii=False))
    if outcome.all_stored:
        return OK
    states = {r["state"] for r in outcome.reports}
    waiting = [r for r in outcome.reports if r["state"] in ("pending", "processing")]
    if waiting:
        _err(_what_next(waiting))
    if "failed" in states:
        return REJECTED
    return SERVER


def _what_next(waiting: list[dict[str, Any]]) -> str:
    """What happens to reports that were queued but not stored, and what the operator does."""
    count = f"{len(waiting)} report(s) kept in the queue (pending/)"
    outcomes = {r.get("outcome") for r in waiting}
    if "auth" in outcomes:
        return (f"uploads paused: the server refused the credentials; {count}. Fix: "
                "'pywats-client config set api_token TOKEN', then 'pywats-client start --once' "
                "(or let the running service send them)")
    if "offline" in outcomes:
        return (f"server unreachable; {count}. They are sent by the service, or by "
                "'pywats-client start --once', when the server is back")
    if "transient" in outcomes:
        return f"the server asked to try later; {count}, retried automatically"
    return f"{count}; the running service sends them ('pywats-client status' shows progress)"


def cmd_convert(args: argparse.Namespace) -> int:
    from pywats_client import process_table
    from pywats_client.converters import ConverterRegistry
    from pywats_client.pipeline import convert_source

    if not _check_source(args.file):
        return USAGE
    paths = _paths(args)
    settings = _settings(paths)
    registry = ConverterRegistry(enabled=settings.converters.enabled, plugin_dir=paths.converters)
    conversion = convert_source(settings, registry, args.file, None,
                                converter_name=args.converter,
                                processes=process_table.load(paths.state))
    print(f"# {conversion.reason}", file=sys.stderr)
    reports = conversion.reports
    print(json.dumps(reports[0] if len(reports) == 1 else reports, indent=2,
                     ensure_ascii=False))
    return OK


def cmd_converters_list(args: argparse.Namespace) -> int:
    from pywats_client.converters import ConverterRegistry

    paths = _paths(args)
    settings = _settings(paths)
    registry = ConverterRegistry(enabled=settings.converters.enabled, plugin_dir=paths.converters)
    for info in registry.info():
        patterns = " ".join(info.file_patterns)
        print(f"{info.name:<32} {info.version:<6} {patterns:<16} {info.origin}")
        if info.description:
            print(f"    {info.description}")
    for error in registry.errors:
        print(f"BROKEN: {error}")
    return OK


def cmd_unlock(args: argparse.Namespace) -> int:
    from pywats_client.lock import unlock

    print(unlock(_paths(args).lock))
    return OK


def cmd_doctor(args: argparse.Namespace) -> int:
    from pywats_client.doctor import diagnose

    diagnosis = diagnose(_paths(args))
    print(json.dumps(diagnosis.to_dict(), indent=2) if args.json else diagnosis.render())
    return ERROR if diagnosis.needs_fixing else OK


def cmd_receiver(args: argparse.Namespace) -> int:
    from pywats_client.receiver import run

    return run(args)

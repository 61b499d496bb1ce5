"""The `queue` commands, and those that take one file: upload, convert, converters list,
and the bundled receiver."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pywats_client.cli.common import (
    OK,
    REFUSED,
    REJECTED,
    SERVER,
    USAGE,
    AddCommand,
    err,
    instance_paths,
    load_settings_for,
    when,
)

if TYPE_CHECKING:
    import argparse

    from pywats_client.service.status import ReportResult


def add_commands(command: AddCommand) -> None:
    q = command("queue", None, "look at and manage the report queue")
    qs = q.add_subparsers(title="queue commands", metavar="ACTION")
    p = qs.add_parser("status", aliases=["stats"], help="how many reports are in each state")
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
    p = qs.add_parser("retry-failed", aliases=["retry"],
                      help="queue every failed report again")
    p.set_defaults(handler=cmd_queue_retry_failed)
    p = qs.add_parser("clear-completed", aliases=["clean"],
                      help="delete every uploaded report kept in completed/")
    p.set_defaults(handler=cmd_queue_clear_completed)

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

    conv = command("converters", None, "converters: list")
    conv_sub = conv.add_subparsers(title="converters commands", metavar="ACTION")
    p = conv_sub.add_parser("list", help="built-in and plugin converters, and broken plugins")
    p.set_defaults(handler=cmd_converters_list)


def add_receiver_command(command: AddCommand) -> None:
    p = command("receiver", cmd_receiver, "run a WATS-compatible test server on loopback "
                "(for demos and trying converters offline)")
    from pywats_client.http.receiver_options import add_arguments

    add_arguments(p)


def _queue(args: argparse.Namespace) -> Any:
    from pywats_client.queue.store import DurableQueue

    paths = instance_paths(args)
    return DurableQueue(paths.queue, load_settings_for(paths).queue)


def cmd_queue_status(args: argparse.Namespace) -> int:
    counts = {s.value: n for s, n in _queue(args).counts().items()}
    if args.json:
        print(json.dumps(counts))
    else:
        for state, n in counts.items():
            print(f"{state:<11} {n}")
    return OK


def cmd_queue_list(args: argparse.Namespace) -> int:
    from pywats_client.queue.store import State

    items = _queue(args).list(State(args.state), limit=args.limit, offset=args.offset)
    rows = [{
        "id": item.id,
        "source": item.header.source if item.header else "?",
        "attempts": item.header.attempts if item.header else None,
        "next_attempt": when(item.next_attempt) if args.state == "pending" else None,
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


def _check_source(path: Path) -> bool:
    """False (after saying why) unless `path` is a file this command can read."""
    if not path.exists():
        err(f"--file {path}: no such file")
        return False
    if not path.is_file():
        err(f"--file {path}: not a regular file (give the path of one report file)")
        return False
    return True


def cmd_upload(args: argparse.Namespace) -> int:
    from pywats_client.converters import ConversionSkipped
    from pywats_client.service.oneshot import upload_file

    if not _check_source(args.file):
        return USAGE
    paths = instance_paths(args)
    try:
        conversion, summary = upload_file(paths, load_settings_for(paths), args.file,
                                          converter=args.converter, wait=args.wait)
    except ConversionSkipped as exc:
        print(f"{exc}; no report, nothing sent")
        return OK
    for report in summary.reports:
        print(f"{report.id}: {report.state}" + (f" - {report.message}" if report.message
                                                 else ""))
    if args.verbose:
        print(f"converter: {conversion.converter}")
        sent = conversion.reports
        print(json.dumps(sent[0] if len(sent) == 1 else sent, indent=2, ensure_ascii=False))
    states = {report.state for report in summary.reports}
    if states == {"completed"}:
        return OK
    waiting = [r for r in summary.reports if r.state in ("pending", "processing")]
    if waiting:
        err(_what_next(waiting))
    if "failed" in states:
        return REJECTED
    from pywats_client.outcomes import Outcome

    if any(r.outcome is Outcome.AUTH for r in waiting):
        return REFUSED  # credentials or URL refused: only a config fix helps
    return SERVER


def _what_next(waiting: list[ReportResult]) -> str:
    """What happens to reports that were queued but not stored, and what the operator does."""
    from pywats_client.outcomes import Outcome

    count = f"{len(waiting)} report(s) kept in the queue (pending/)"
    outcomes = {r.outcome for r in waiting}
    if Outcome.AUTH in outcomes:
        return (f"uploads paused: the server refused the credentials; {count}. Fix: "
                "'pywats-client config set api_token TOKEN', then 'pywats-client start --once' "
                "(or let the running service send them)")
    if Outcome.OFFLINE in outcomes:
        return (f"server unreachable; {count}. They are sent by the service, or by "
                "'pywats-client start --once', when the server is back")
    if Outcome.TRANSIENT in outcomes:
        return f"the server asked to try later; {count}, retried automatically"
    return f"{count}; the running service sends them ('pywats-client status' shows progress)"


def cmd_convert(args: argparse.Namespace) -> int:
    from pywats_client.converters import ConversionSkipped, ConverterRegistry
    from pywats_client.service import process_table
    from pywats_client.service.pipeline import convert_source

    if not _check_source(args.file):
        return USAGE
    paths = instance_paths(args)
    settings = load_settings_for(paths)
    registry = ConverterRegistry(enabled=settings.converters.enabled, plugin_dir=paths.converters)
    try:
        conversion = convert_source(settings, registry, args.file, None,
                                    converter_name=args.converter,
                                    processes=process_table.load(paths.state))
    except ConversionSkipped as exc:
        # Not an error: the service files such a file away with a note, and sends nothing.
        print(f"# {exc}; no report", file=sys.stderr)
        return OK
    print(f"# {conversion.reason}", file=sys.stderr)
    reports = conversion.reports
    print(json.dumps(reports[0] if len(reports) == 1 else reports, indent=2,
                     ensure_ascii=False))
    return OK


def cmd_converters_list(args: argparse.Namespace) -> int:
    from pywats_client.converters import ConverterRegistry

    paths = instance_paths(args)
    settings = load_settings_for(paths)
    registry = ConverterRegistry(enabled=settings.converters.enabled, plugin_dir=paths.converters)
    for info in registry.info():
        patterns = " ".join(info.file_patterns)
        print(f"{info.name:<32} {info.version:<6} {patterns:<16} {info.origin}")
        if info.description:
            print(f"    {info.description}")
    for error in registry.errors:
        print(f"BROKEN: {error}")
    return OK


def cmd_receiver(args: argparse.Namespace) -> int:
    from pywats_client.http.receiver import run

    return run(args)

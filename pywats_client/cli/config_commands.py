"""The `config` commands: init, show, get, set and add-watch-folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pywats_client.cli.common import (
    OK,
    USAGE,
    AddCommand,
    config_document,
    err,
    instance_paths,
)

if TYPE_CHECKING:
    import argparse


def add_commands(command: AddCommand) -> None:
    cfg = command("config", None, "show and change this instance's config.json")
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


def cmd_config_init(args: argparse.Namespace) -> int:
    from pywats_client.config.document import init_config

    paths = instance_paths(args)
    if paths.config.exists() and not args.force:
        # Checked here, before any prompt, and worded with this command's own --force.
        err(f"{paths.config} already exists; nothing changed. Fix: change single keys with "
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
        err("config init needs --server-url (or run it without --non-interactive)")
        return USAGE
    if not values["api_token"] and not (values["username"] and values["password"]):
        err("config init needs --api-token, or --username and --password")
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
    paths = instance_paths(args)
    display, overrides = config_document(paths).display_with_environment()
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


def _flatten(data: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key, value in data.items():
        if isinstance(value, dict) and value:
            rows.extend(_flatten(value, f"{prefix}{key}."))
        else:
            rows.append((f"{prefix}{key}", value))
    return rows


def cmd_config_get(args: argparse.Namespace) -> int:
    from pywats_client.config.secrets import mask

    doc = config_document(instance_paths(args))
    value = doc.get(args.key)
    if args.key.rsplit(".", 1)[-1] in ("api_token", "password"):
        value = mask(str(value or ""))
    print(value if isinstance(value, str) else json.dumps(value))
    return OK


def cmd_config_set(args: argparse.Namespace) -> int:
    doc = config_document(instance_paths(args))
    doc.set(args.key, args.value)
    doc.save()
    print(f"{args.key} set in {doc.path}")
    return OK


def cmd_config_add_watch_folder(args: argparse.Namespace) -> int:
    doc = config_document(instance_paths(args))
    folder = str(Path(args.path).expanduser().resolve())
    doc.add_watch_folder(folder, converter=args.converter, post_action=args.post_action)
    doc.save()
    print(f"watching {folder}" + (f" with {args.converter}" if args.converter else "")
          + f"; restart the service to apply ({doc.path})")
    return OK

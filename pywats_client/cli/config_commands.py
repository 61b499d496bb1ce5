"""The `config` commands: init, show, get, set and add-watch-folder.

Each refuses a mistake where it is made (an unknown converter, a folder that is not there), and
each can be run again with the same values to no effect: config.json is then not rewritten.
Secrets come from files, standard input, the environment or a systemd credential, so that none
has to be typed where every user of the station can read it (/proc/PID/cmdline).
"""

from __future__ import annotations

import json
import os
import sys
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

    from pywats_client.converters.registry import ConverterRegistry
    from pywats_client.paths import InstancePaths

# Where a secret may come from when no option names it: the variable, then the credential
# (systemd's LoadCredential=NAME:FILE, read from $CREDENTIALS_DIRECTORY/NAME).
TOKEN_VARIABLE, TOKEN_CREDENTIAL = "PYWATS_API_TOKEN", "api_token"
PASSWORD_VARIABLE, PASSWORD_CREDENTIAL = "PYWATS_PASSWORD", "password"
_ON_THE_COMMAND_LINE = (
    "note: {option} on the command line can be read by every user of this machine "
    "(/proc/PID/cmdline, ps); next time use {option}-file PATH, {option} - (standard input), "
    "${variable} or a systemd credential")


def add_commands(command: AddCommand) -> None:
    cfg = command("config", None, "show and change this instance's config.json")
    cs = cfg.add_subparsers(title="config commands", metavar="ACTION")

    p = cs.add_parser("init", help="create config.json (interactive unless --non-interactive); "
                      "again with the same values: nothing changes")
    p.set_defaults(handler=cmd_config_init)
    p.add_argument("--server-url")
    p.add_argument("--api-token", metavar="TOKEN", help="token issued by WATS (base64 of "
                   "user:secret); '-' reads it from standard input. Without it: "
                   f"--api-token-file, ${TOKEN_VARIABLE}, or the systemd credential "
                   f"'{TOKEN_CREDENTIAL}'")
    p.add_argument("--api-token-file", type=Path, metavar="PATH",
                   help="read the token from this file")
    p.add_argument("--username", help="with a password: build the token from these")
    p.add_argument("--password", help="'-' reads it from standard input. Without it: "
                   f"--password-file, ${PASSWORD_VARIABLE}, or the systemd credential "
                   f"'{PASSWORD_CREDENTIAL}'")
    p.add_argument("--password-file", type=Path, metavar="PATH",
                   help="read the password from this file")
    p.add_argument("--station-name")
    p.add_argument("--location")
    p.add_argument("--non-interactive", action="store_true", help="never prompt")
    p.add_argument("--force", action="store_true", help="change the values given in an "
                   "existing config.json (the rest, watch folders included, is kept)")

    p = cs.add_parser("show", help="the effective config, secrets masked")
    p.set_defaults(handler=cmd_config_show)
    p.add_argument("--format", choices=["text", "json"], default="text")

    p = cs.add_parser("get", help="one value, by dotted key (e.g. queue.retry_delay)")
    p.set_defaults(handler=cmd_config_get)
    p.add_argument("key")

    p = cs.add_parser("set", help="change one value (typed and validated, written atomically; "
                      "the same value again: nothing changes)")
    p.set_defaults(handler=cmd_config_set)
    p.add_argument("key")
    p.add_argument("value", nargs="?", help="'-' reads it from standard input; for api_token "
                   f"it may be left out: then ${TOKEN_VARIABLE} or the systemd credential "
                   f"'{TOKEN_CREDENTIAL}'")
    p.add_argument("--file", "--api-token-file", dest="value_file", type=Path, metavar="PATH",
                   help="read the value from this file (for a secret such as api_token)")

    p = cs.add_parser("add-watch-folder", help="watch one more folder (again: nothing "
                      "changes, or its options are updated)")
    p.set_defaults(handler=cmd_config_add_watch_folder)
    p.add_argument("path")
    p.add_argument("--converter", metavar="NAME", help="converter for every file in it "
                   "(default: detect per file)")
    p.add_argument("--post-action", choices=["move", "archive", "delete", "none"],
                   help="what to do with a source file once its report is queued "
                   "(default: move to the folder's done/)")
    p.add_argument("--create", action="store_true",
                   help="create the folder if it does not exist (otherwise that is refused)")


# -- secrets ------------------------------------------------------------------------------------


class _Secrets:
    """Reads secrets from the options given, or from the environment and systemd credentials;
    standard input can be read once."""

    def __init__(self) -> None:
        self.stdin_taken = ""

    def read(self, option: str, value: str | None, file: Path | None, *, variable: str,
             credential: str, ambient: bool = True) -> str | None:
        """The secret for `option` (e.g. "--api-token"), or None if none was given."""
        from pywats_client.config.environment import read_credential
        from pywats_client.errors import ConfigError

        if value is not None and file is not None:
            raise ConfigError(f"give {option} or {option}-file, not both")
        if value == "-":
            if self.stdin_taken:
                raise ConfigError(f"{self.stdin_taken} - already reads standard input; give "
                                  f"{option} another way ({option}-file PATH)")
            self.stdin_taken = option
            return _non_empty(sys.stdin.read(), f"{option} -: standard input")
        if value is not None:
            err(_ON_THE_COMMAND_LINE.format(option=option, variable=variable))
            return value
        if file is not None:
            return read_secret_file(file, f"{option}-file")
        if not ambient:
            return None
        return os.environ.get(variable, "").strip() or read_credential(credential)


def read_secret_file(path: Path, what: str) -> str:
    """The secret in the file `path`, without the line break editors add."""
    from pywats_client.errors import ConfigError

    try:
        text = path.expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {what} {path}: {getattr(exc, 'strerror', None) or exc}. "
                          "Fix: give a readable file holding only the secret") from None
    return _non_empty(text, f"{what} {path}")


def _non_empty(text: str, where: str) -> str:
    from pywats_client.errors import ConfigError

    text = text.strip()
    if not text:
        raise ConfigError(f"{where} is empty: nothing to store")
    return text


# -- init ---------------------------------------------------------------------------------------


def cmd_config_init(args: argparse.Namespace) -> int:
    from pywats_client.config.provisioning import differences, provision, wanted_values

    paths = instance_paths(args)
    exists = paths.config.exists()
    if exists and not args.force and not args.non_interactive:
        # Checked here, before any prompt, and worded with this command's own --force.
        err(f"{paths.config} already exists; nothing changed. Fix: change single keys with "
             "'pywats-client config set KEY VALUE', or change what you give with "
             "'pywats-client config init --force' (watch folders are kept)")
        return USAGE
    secrets = _Secrets()
    # A token or password in the environment or a credential counts only when the command
    # line does not choose the other way of authenticating.
    by_user = args.username is not None
    values: dict[str, str | None] = {
        "server_url": args.server_url, "username": args.username,
        "api_token": secrets.read("--api-token", args.api_token, args.api_token_file,
                                  variable=TOKEN_VARIABLE, credential=TOKEN_CREDENTIAL,
                                  ambient=not by_user),
        "password": secrets.read("--password", args.password, args.password_file,
                                 variable=PASSWORD_VARIABLE, credential=PASSWORD_CREDENTIAL,
                                 ambient=by_user),
        "station_name": args.station_name, "location": args.location,
    }
    current = config_document(paths) if exists else None
    if not args.non_interactive:
        values = _prompt_init(values, current)
    has_token = current is not None and bool(current.raw().get("api_token"))
    if not values["server_url"] and not (current and current.get("server_url")):
        err("config init needs --server-url (or run it without --non-interactive)")
        return USAGE
    if not (values["api_token"] or (values["username"] and values["password"]) or has_token):
        err("config init needs the API token (--api-token-file PATH, --api-token -, "
            f"${TOKEN_VARIABLE}, the systemd credential '{TOKEN_CREDENTIAL}' or --api-token), "
            "or --username and a password")
        return USAGE
    if current is not None and not args.force:
        differ = differences(current, wanted_values(**values))
        if differ:
            err(f"{paths.config} already exists with other values for {', '.join(differ)}; "
                "nothing changed. Fix: add --force to change only the values given (watch "
                "folders and every other key are kept), or change single keys with "
                "'pywats-client config set KEY VALUE'")
            return USAGE
    doc, changed = provision(paths, overwrite=args.force, **values)
    if not exists:
        print(f"wrote {doc.path} (secrets encrypted with {paths.key})")
        print("next: pywats-client config add-watch-folder FOLDER, then pywats-client start")
    elif changed:
        print(f"changed {', '.join(changed)} in {doc.path}; restart the service to apply")
    else:
        print(f"{doc.path} already holds these values; nothing changed")
    return OK


def _prompt_init(values: dict[str, str | None], current: Any) -> dict[str, str | None]:
    import getpass
    import socket

    def ask(label: str, given: str | None, default: str = "") -> str:
        shown = given or default
        answer = input(f"{label}{f' [{shown}]' if shown else ''}: ").strip()
        return answer or shown

    def now(key: str) -> str:
        return str(current.get(key) or "") if current is not None else ""

    keep = " (empty: keep the current one)" if current is not None else ""
    values["server_url"] = ask("WATS server URL", values["server_url"], now("server_url"))
    if not values["api_token"] and not values["username"]:
        choice = ask("Authenticate with a token (t) or user name and password (u)", None, "t")
        if choice.lower().startswith("u"):
            values["username"] = ask("User name", None)
            values["password"] = getpass.getpass("Password: ")
        else:
            values["api_token"] = getpass.getpass(
                f"API token (input hidden){keep}: ").strip() or None
    elif values["username"] and not values["password"]:
        values["password"] = getpass.getpass("Password: ")
    values["station_name"] = ask("Station name", values["station_name"],
                                 now("station_name") or socket.gethostname())
    values["location"] = ask("Station location", values["location"],
                             now("station_location")) or None
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
    from pywats_client.config.schema import BY_KEY

    paths = instance_paths(args)
    option = BY_KEY.get(args.key)
    secret = option is not None and option.secret
    if args.value is not None and args.value_file is not None:
        err("give the VALUE or --file PATH, not both")
        return USAGE
    if args.value == "-":
        value: str | None = _non_empty(sys.stdin.read(), "standard input")
    elif args.value_file is not None:
        value = read_secret_file(args.value_file, "--file")
    elif args.value is None and args.key == "api_token":
        value = _Secrets().read("--api-token", None, None, variable=TOKEN_VARIABLE,
                                credential=TOKEN_CREDENTIAL)
        if value is None:
            err(f"config set api_token needs the token: as VALUE, '-' (standard input), "
                f"--file PATH, ${TOKEN_VARIABLE} or the systemd credential "
                f"'{TOKEN_CREDENTIAL}'")
            return USAGE
    else:
        value = args.value
        if secret and value is not None:
            err(f"note: {args.key} on the command line can be read by every user of this "
                "machine (/proc/PID/cmdline, ps); next time use --file PATH, '-' (standard "
                f"input), ${TOKEN_VARIABLE} or a systemd credential")
    if value is None:
        err(f"config set {args.key} needs a VALUE (or '-' to read it from standard input, or "
            "--file PATH)")
        return USAGE
    doc = config_document(paths)
    changed = doc.set(args.key, value)
    problem = _converter_problems(paths, doc, args.key)
    if problem:
        err(f"configuration error: {doc.path}: {problem}; nothing changed")
        return USAGE
    if not changed:
        print(f"{args.key} already has this value in {doc.path}; nothing changed")
        return OK
    doc.save()
    print(f"{args.key} set in {doc.path}")
    return OK


def _registry(paths: InstancePaths) -> ConverterRegistry:
    from pywats_client.converters.registry import ConverterRegistry

    # Nothing enabled: each name is looked up on its own, as a folder's converter is.
    return ConverterRegistry(plugin_dir=paths.converters)


def _converter_problems(paths: InstancePaths, doc: Any, key: str) -> str:
    """What is wrong with the converter names `key` gives, "" if they all load."""
    from pywats_client.cli.doctor import converter_problem

    checks: list[tuple[str, str, Any]] = []
    if key == "converters.enabled":
        checks = [(f"converters.enabled[{i}]", name, None)
                  for i, name in enumerate(doc.get(key) or [])]
    elif key == "queue.watch_folders":
        for i, entry in enumerate(doc.get(key) or []):
            if isinstance(entry, dict) and isinstance(entry.get("converter"), str):
                checks.append((f"queue.watch_folders[{i}].converter", entry["converter"],
                               entry.get("arguments")))
    if not checks:
        return ""
    registry = _registry(paths)
    problems = [f"{where}: {problem}" for where, name, arguments in checks
                if (problem := converter_problem(name, registry, arguments))]
    return "; ".join(problems)


def cmd_config_add_watch_folder(args: argparse.Namespace) -> int:
    from pywats_client.cli.doctor import converter_problem

    paths = instance_paths(args)
    doc = config_document(paths)
    folder = Path(args.path).expanduser().resolve()
    if args.converter:
        problem = converter_problem(args.converter, _registry(paths))
        if problem:
            err(f"configuration error: {problem}; nothing changed")
            return USAGE
    if folder.exists() and not folder.is_dir():
        err(f"{folder} is not a folder; nothing changed. Fix: give the folder the equipment "
            "writes into")
        return USAGE
    outcome = doc.add_watch_folder(str(folder), converter=args.converter,
                                   post_action=args.post_action)
    if not folder.exists():
        if not args.create:
            err(f"{folder} does not exist; nothing changed. Fix: check the path, mount the "
                "share it is on, or add --create to create it")
            return USAGE
        folder.mkdir(parents=True)
        print(f"created {folder}")
    if outcome == "unchanged":
        print(f"{folder} is already present; nothing changed ({doc.path})")
        return OK
    doc.save()
    verb = "watching" if outcome == "added" else "updated"
    options = [f"with {args.converter}"] if args.converter else []
    if args.post_action:
        options.append(f"post action {args.post_action}")
    print(f"{verb} {folder}" + (f" {', '.join(options)}" if options else "")
          + f"; restart the service to apply ({doc.path})")
    return OK

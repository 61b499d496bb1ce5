"""The command line, driven through `main([...])` the way an operator types it.

Every call passes `--data-dir` under tmp_path, so nothing here reads or writes the real home.
The server is the loopback receiver; the queue is filled with `DurableQueue` itself. One test
starts the real service as a subprocess, two run the installed entry points.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pywats_client import __version__
from pywats_client.cli.main import EXIT_CODES, main
from pywats_client.config.document import load_settings
from pywats_client.http.receiver import Receiver
from pywats_client.queue.store import DurableQueue, read_header
from tests.conftest import TOKEN, sample
from tests.station import REPO, Station, closed_port_url, wsjf_report

CSV_PLUGIN = REPO / "converters" / "csv_example.py"
CSV_EXAMPLE = REPO / "converters" / "example.csv"

WRONG_TOKEN = base64.b64encode(b"wrong:token").decode("ascii")
# A long token, of which no part may ever appear (the mask shows none of it).
LONG_TOKEN = base64.b64encode(b"line-operator:a-long-secret-value").decode("ascii")

OK, USAGE, SERVER, LOCKED, REJECTED, NOT_RUNNING, DEGRADED, REFUSED = 0, 2, 3, 4, 5, 6, 7, 8


# -- fixtures and helpers ---------------------------------------------------------------------


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's PYWATS_* variables must not change what these tests see."""
    for name in list(os.environ):
        if name.startswith("PYWATS_"):
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Every thread a test starts (service pools, watcher, receiver) is gone afterwards."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 10
    extra = [t for t in threading.enumerate() if t not in before]
    for thread in extra:
        thread.join(max(0.0, deadline - time.monotonic()))
    alive = [t.name for t in extra if t.is_alive()]
    assert not alive, f"threads left running: {alive}"


@dataclass
class Result:
    code: int
    out: str
    err: str


class Cli:
    """Runs `main()` against one data dir and captures what it printed."""

    def __init__(self, data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.data_dir = data_dir
        self.capsys = capsys

    def __call__(self, *args: str, instance: str | None = None) -> Result:
        argv = ["--data-dir", str(self.data_dir)]
        if instance is not None:
            argv.append(f"--instance={instance}")
        self.capsys.readouterr()  # only this call's output
        code = main([*argv, *args])
        captured = self.capsys.readouterr()
        return Result(code, captured.out, captured.err)

    def exits(self, *args: str) -> tuple[int | str | None, str, str]:
        """For the paths where argparse ends the process: (exit code, stdout, stderr)."""
        self.capsys.readouterr()
        with pytest.raises(SystemExit) as info:
            main(["--data-dir", str(self.data_dir), *args])
        captured = self.capsys.readouterr()
        return info.value.code, captured.out, captured.err

    def instance_dir(self, name: str = "default") -> Path:
        return self.data_dir / name

    def queue(self, name: str = "default") -> DurableQueue:
        queue = DurableQueue(self.instance_dir(name) / "queue")
        queue.ensure_layout()
        return queue

    def queued(self, state: str, name: str = "default") -> list[str]:
        folder = self.instance_dir(name) / "queue" / state
        return sorted(p.name[: -len(".wsq")] for p in folder.glob("*.wsq"))

    def init(self, server_url: str, token: str = TOKEN, instance: str | None = None) -> None:
        result = self("config", "init", "--non-interactive", "--server-url", server_url,
                      "--api-token", token, "--station-name", "ict-01", instance=instance)
        assert result.code == OK, result.err


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(tmp_path / "data", capsys)


@pytest.fixture
def restore_process_state() -> Iterator[None]:
    """`start` installs signal handlers and configures logging: put both back afterwards."""
    signals = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    logger = logging.getLogger("pywats_client")
    handlers, level, propagate = list(logger.handlers), logger.level, logger.propagate
    third_party = {name: logging.getLogger(name).level
                   for name in ("urllib3", "watchdog", "requests")}
    yield
    for sig, previous in signals.items():
        signal.signal(sig, previous)
    for handler in list(logger.handlers):
        if handler not in handlers:
            logger.removeHandler(handler)
            handler.close()  # the rotating log file
    logger.setLevel(level)
    logger.propagate = propagate
    for name, old in third_party.items():
        logging.getLogger(name).setLevel(old)


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYWATS_")}
    env["PYTHONPATH"] = str(REPO)
    return env


_HOLD_LOCK = """\
import sys
from pathlib import Path
from pywats_client.queue.lock import InstanceLock
InstanceLock(Path(sys.argv[1])).acquire(sys.argv[2])
print("locked", flush=True)
sys.stdin.read()  # hold it until the test closes stdin or kills us
"""


@contextmanager
def lock_holder(lock_path: Path, purpose: str = "service") -> Iterator[subprocess.Popen[str]]:
    """Another process holding the instance lock, as a running service or upload would."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(lock_path), purpose],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=child_env(), text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "locked", "the lock holder did not start"
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def install_csv_plugin(cli: Cli) -> None:
    folder = cli.instance_dir() / "converters"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(CSV_PLUGIN, folder / CSV_PLUGIN.name)


# -- --version, --help, no command ------------------------------------------------------------


def test_version_prints_the_version_and_exits_0(cli: Cli) -> None:
    """--version: argparse prints it and exits 0."""
    code, out, _ = cli.exits("--version")
    assert code == 0
    assert out.strip() == f"pywats-client {__version__}"


def test_help_lists_every_command_and_the_exit_codes(cli: Cli) -> None:
    """--help: every command, and the exit code table an operator scripts against."""
    code, out, _ = cli.exits("--help")
    assert code == 0
    for command in ("start", "status", "config", "queue", "upload", "convert", "converters",
                    "unlock", "receiver"):
        assert f"    {command}" in out
    assert "exit codes:" in out
    assert EXIT_CODES.strip() in out


def test_a_command_has_its_own_help(cli: Cli) -> None:
    code, out, _ = cli.exits("upload", "--help")
    assert code == 0
    assert "--file PATH" in out and "--verbose" in out and "exit codes:" in out


def test_no_command_prints_usage_and_exits_2(cli: Cli) -> None:
    result = cli()
    assert result.code == USAGE
    assert result.out.startswith("usage: pywats-client")
    assert not cli.data_dir.exists(), "showing the usage must not create anything"


@pytest.mark.parametrize("group", ["config", "queue", "converters"])
def test_a_command_group_without_its_action_is_a_usage_error(cli: Cli, group: str) -> None:
    """`pywats-client queue` alone shows the group's actions and exits 2, like no command."""
    result = cli(group)
    assert result.code == USAGE
    assert f"usage: pywats-client {group}" in result.out


def test_an_unknown_command_is_a_usage_error(cli: Cli) -> None:
    code, _, err = cli.exits("frobnicate")
    assert code == USAGE
    assert "invalid choice: 'frobnicate'" in err


# -- config init ------------------------------------------------------------------------------


def test_config_init_with_a_token_encrypts_it_in_a_private_file(cli: Cli) -> None:
    result = cli("config", "init", "--non-interactive", "--server-url", "https://wats.example.com",
                 "--api-token", LONG_TOKEN, "--station-name", "ict-01", "--location", "Line A")
    assert result.code == OK, result.err
    config = cli.instance_dir() / "config.json"
    assert f"wrote {config}" in result.out
    assert "config add-watch-folder" in result.out  # what to do next
    text = config.read_text()
    assert LONG_TOKEN not in text
    assert json.loads(text)["api_token"].startswith("fernet:")
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert stat.S_IMODE((cli.instance_dir() / "secret.key").stat().st_mode) == 0o600
    settings = load_settings(config, env={})
    assert settings.api_token == LONG_TOKEN
    assert settings.server_url == "https://wats.example.com"
    assert (settings.station_name, settings.station_location) == ("ict-01", "Line A")


def test_config_init_with_user_and_password_stores_only_the_derived_token(cli: Cli) -> None:
    result = cli("config", "init", "--non-interactive", "--server-url", "https://wats.example.com",
                 "--username", "bob", "--password", "hunter2-correct-horse")
    assert result.code == OK, result.err
    config = cli.instance_dir() / "config.json"
    expected = base64.b64encode(b"bob:hunter2-correct-horse").decode("ascii")
    text = config.read_text()
    assert "hunter2" not in text and expected not in text
    assert "password" not in json.loads(text) and "username" not in json.loads(text)
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert load_settings(config, env={}).api_token == expected
    assert "hunter2" not in result.out + result.err


def test_config_init_without_server_url_is_a_usage_error(cli: Cli) -> None:
    result = cli("config", "init", "--non-interactive", "--api-token", TOKEN)
    assert result.code == USAGE
    assert "--server-url" in result.err
    assert not (cli.instance_dir() / "config.json").exists()


def test_config_init_without_any_credentials_is_a_usage_error(cli: Cli) -> None:
    result = cli("config", "init", "--non-interactive", "--server-url", "https://wats.example.com")
    assert result.code == USAGE
    assert "--api-token" in result.err and "--username" in result.err


def test_config_init_keeps_an_existing_config_unless_forced(cli: Cli) -> None:
    cli.init("https://first.example.com")
    config = cli.instance_dir() / "config.json"
    before = config.read_bytes()
    again = cli("config", "init", "--non-interactive", "--server-url",
                "https://second.example.com", "--api-token", TOKEN)
    assert again.code == USAGE
    assert str(config) in again.err and "already exists" in again.err
    assert "--force" in again.err  # the option this command really has
    assert config.read_bytes() == before
    forced = cli("config", "init", "--non-interactive", "--force", "--server-url",
                 "https://second.example.com", "--api-token", TOKEN)
    assert forced.code == OK, forced.err
    assert load_settings(config, env={}).server_url == "https://second.example.com"


def _answer(monkeypatch: pytest.MonkeyPatch, answers: list[str], secrets: list[str]
            ) -> list[str]:
    """Feed `input()` and `getpass()` answers; returns the prompts shown, in order."""
    prompts: list[str] = []
    typed, hidden = iter(answers), iter(secrets)

    def fake_input(prompt: str = "") -> str:
        prompts.append(prompt)
        return next(typed)

    def fake_getpass(prompt: str = "Password: ", stream: Any = None) -> str:
        prompts.append(prompt)
        return next(hidden)

    monkeypatch.setattr("builtins.input", fake_input)
    monkeypatch.setattr("getpass.getpass", fake_getpass)
    return prompts


def test_config_init_interactive_asks_for_the_token_without_echo(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    prompts = _answer(monkeypatch, ["https://wats.example.com", "t", "ict-07", "Line B"],
                      [LONG_TOKEN + "\n"])
    result = cli("config", "init")
    assert result.code == OK, result.err
    assert prompts[0].startswith("WATS server URL")
    assert any("API token" in p for p in prompts)
    settings = load_settings(cli.instance_dir() / "config.json", env={})
    assert settings.server_url == "https://wats.example.com"
    assert settings.api_token == LONG_TOKEN  # the pasted newline is gone
    assert (settings.station_name, settings.station_location) == ("ict-07", "Line B")
    assert LONG_TOKEN not in result.out + result.err


def test_config_init_interactive_with_user_name_and_password(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    prompts = _answer(monkeypatch, ["https://wats.example.com", "u", "bob", "", ""],
                      ["s3cret-pass"])
    result = cli("config", "init")
    assert result.code == OK, result.err
    assert "Password: " in prompts
    config = cli.instance_dir() / "config.json"
    assert "s3cret-pass" not in config.read_text()
    settings = load_settings(config, env={})
    assert settings.api_token == base64.b64encode(b"bob:s3cret-pass").decode("ascii")
    assert settings.station_name == socket.gethostname()  # the offered default was taken


def test_config_init_interactive_refuses_an_existing_config_before_asking(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli.init("https://wats.example.com")
    prompts = _answer(monkeypatch, [], [])
    result = cli("config", "init")
    assert result.code == USAGE
    assert prompts == [], "nothing should be asked when the answer cannot be used"


# -- config show / get / set / add-watch-folder -----------------------------------------------


def test_config_show_text_masks_the_token(cli: Cli) -> None:
    cli.init("https://wats.example.com", token=LONG_TOKEN)
    result = cli("config", "show")
    assert result.code == OK
    lines = result.out.splitlines()
    assert lines[0] == f"# {cli.instance_dir() / 'config.json'}"
    assert 'server_url = "https://wats.example.com"' in lines
    assert 'api_token = "****"' in lines
    assert "queue.retry_delay = 30" in lines
    assert LONG_TOKEN not in result.out + result.err


def test_config_show_json_names_the_file_and_masks_the_token(cli: Cli) -> None:
    cli.init("https://wats.example.com", token=LONG_TOKEN)
    result = cli("config", "show", "--format", "json")
    assert result.code == OK
    shown = json.loads(result.out)
    assert shown["config_path"] == str(cli.instance_dir() / "config.json")
    assert shown["api_token"] == "****"
    assert shown["station_name"] == "ict-01"
    assert shown["queue"]["retry_delay"] == 30
    assert "environment_overrides" not in shown
    assert LONG_TOKEN not in result.out


def test_config_show_without_a_config_shows_the_defaults(cli: Cli) -> None:
    result = cli("config", "show", "--format", "json")
    assert result.code == OK
    assert json.loads(result.out)["server_url"] == ""


def test_config_get_plain_dotted_section_and_secret(cli: Cli) -> None:
    cli.init("https://wats.example.com", token=LONG_TOKEN)
    assert cli("config", "get", "server_url").out == "https://wats.example.com\n"
    assert cli("config", "get", "queue.retry_delay").out == "30\n"
    assert json.loads(cli("config", "get", "queue").out)["max_age"] == 604800
    secret = cli("config", "get", "api_token")
    assert secret.code == OK
    assert secret.out == "****\n"
    unknown = cli("config", "get", "server_ur1")
    assert unknown.code == USAGE
    assert "did you mean 'server_url'" in unknown.err


def test_config_set_types_the_value_and_writes_atomically(cli: Cli) -> None:
    cli.init("https://wats.example.com")
    config = cli.instance_dir() / "config.json"
    inode = config.stat().st_ino
    result = cli("config", "set", "queue.retry_attempts", "3")
    assert result.code == OK, result.err
    assert f"queue.retry_attempts set in {config}" in result.out
    assert cli("config", "set", "queue.allow_network_filesystem", "yes").code == OK
    shutil.copy(CSV_PLUGIN, cli.instance_dir() / "converters" / CSV_PLUGIN.name)
    assert cli("config", "set", "converters.enabled",
               "WATSStandardJsonConverter, CsvExampleConverter").code == OK
    data = json.loads(config.read_text())
    assert data["queue"]["retry_attempts"] == 3  # a JSON number, not "3"
    assert data["queue"]["allow_network_filesystem"] is True
    assert data["converters"]["enabled"] == ["WATSStandardJsonConverter", "CsvExampleConverter"]
    # Replaced by rename (a new inode), private, and no temporary file left beside it.
    assert config.stat().st_ino != inode
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert sorted(p.name for p in cli.instance_dir().iterdir() if p.is_file()) == [
        "config.json", "secret.key"]
    assert cli("config", "get", "queue.retry_attempts").out == "3\n"


def test_config_set_refuses_an_invalid_value_naming_the_key(cli: Cli) -> None:
    cli.init("https://wats.example.com")
    config = cli.instance_dir() / "config.json"
    before = config.read_bytes()
    result = cli("config", "set", "queue.retry_delay", "soon")
    assert result.code == USAGE
    assert "queue.retry_delay" in result.err and "soon" in result.err
    assert "Fix:" in result.err
    assert config.read_bytes() == before


def test_config_set_does_not_echo_a_bad_token(cli: Cli) -> None:
    cli.init("https://wats.example.com")
    result = cli("config", "set", "api_token", "half a secret")
    assert result.code == USAGE
    assert "api_token" in result.err
    assert "half a secret" not in result.err


def test_config_set_unknown_key_suggests_the_close_one(cli: Cli) -> None:
    cli.init("https://wats.example.com")
    result = cli("config", "set", "queue.retry_dely", "5")
    assert result.code == USAGE
    assert "unknown key 'queue.retry_dely'" in result.err
    assert "did you mean 'queue.retry_delay'" in result.err


def test_config_set_api_token_stores_it_encrypted(cli: Cli) -> None:
    cli.init("https://wats.example.com")
    assert cli("config", "set", "api_token", LONG_TOKEN).code == OK
    config = cli.instance_dir() / "config.json"
    assert LONG_TOKEN not in config.read_text()
    assert load_settings(config, env={}).api_token == LONG_TOKEN


def test_add_watch_folder_appears_in_config_show(cli: Cli, tmp_path: Path) -> None:
    cli.init("https://wats.example.com")
    folder = tmp_path / "ict"
    folder.mkdir()
    result = cli("config", "add-watch-folder", str(folder), "--converter",
                 "WATSStandardJsonConverter", "--post-action", "archive")
    assert result.code == OK, result.err
    assert f"watching {folder} with WATSStandardJsonConverter" in result.out
    assert "restart the service" in result.out
    plain = tmp_path / "spea"
    assert cli("config", "add-watch-folder", str(plain), "--create").code == OK
    assert plain.is_dir()
    folders = json.loads(cli("config", "show", "--format", "json").out)["queue"]["watch_folders"]
    assert [f["path"] for f in folders] == [str(folder), str(plain)]
    assert folders[0]["converter"] == "WATSStandardJsonConverter"
    assert folders[0]["post_action"] == "archive"
    assert (folders[1]["converter"], folders[1]["post_action"]) == (None, "move")


def test_add_watch_folder_twice_changes_nothing_or_updates_its_options(cli: Cli, tmp_path: Path
                                                                       ) -> None:
    cli.init("https://wats.example.com")
    folder = tmp_path / "ict"
    assert cli("config", "add-watch-folder", str(folder), "--create").code == OK
    config = cli.instance_dir() / "config.json"
    before = config.read_bytes()
    again = cli("config", "add-watch-folder", str(folder))
    assert again.code == OK, again.err
    assert f"{folder} is already present; nothing changed" in again.out
    assert config.read_bytes() == before
    other = cli("config", "add-watch-folder", str(folder), "--converter",
                "WATSStandardJsonConverter")
    assert other.code == OK, other.err
    assert f"updated {folder} with WATSStandardJsonConverter" in other.out
    folders = json.loads(config.read_text())["queue"]["watch_folders"]
    assert folders == [{"path": str(folder), "converter": "WATSStandardJsonConverter"}]
    after = config.read_bytes()
    same = cli("config", "add-watch-folder", str(folder), "--converter",
               "WATSStandardJsonConverter")
    assert same.code == OK and "already present" in same.out
    assert config.read_bytes() == after


def test_add_watch_folder_rejects_an_unknown_post_action(cli: Cli, tmp_path: Path) -> None:
    code, _, err = cli.exits("config", "add-watch-folder", str(tmp_path), "--post-action",
                             "shred")
    assert code == USAGE
    assert "invalid choice: 'shred'" in err


# -- queue ------------------------------------------------------------------------------------


def _report_bytes(n: int, report_id: str) -> bytes:
    return json.dumps(wsjf_report(n, report_id=report_id)).encode()


@pytest.fixture
def filled(cli: Cli) -> dict[str, list[str]]:
    """Three pending reports, one failed with a reason, one completed."""
    queue = cli.queue()
    ids: dict[str, list[str]] = {"pending": [], "failed": [], "completed": []}
    for n in range(5):
        rid = str(uuid.uuid4())
        queue.put(_report_bytes(n, rid), report_id=rid, source=f"/data/ict/r{n}.json",
                  converter="WATSStandardJsonConverter")
        ids["pending"].append(rid)
    failed, done = ids["pending"].pop(), ids["pending"].pop()
    claimed = queue.claim(failed)
    assert claimed is not None
    queue.fail(claimed, "rejected by the server: 'pn' is missing")
    ids["failed"].append(failed)
    claimed = queue.claim(done)
    assert claimed is not None
    queue.complete(claimed)
    ids["completed"].append(done)
    return ids


def test_queue_status_counts_every_state(cli: Cli, filled: dict[str, list[str]]) -> None:
    text = cli("queue", "status")
    assert text.code == OK
    lines = [line.split() for line in text.out.splitlines()]
    assert lines == [["pending", "3"], ["processing", "0"], ["completed", "1"], ["failed", "1"],
                     ["corrupt", "0"]]
    as_json = cli("queue", "status", "--json")
    assert json.loads(as_json.out) == {"pending": 3, "processing": 0, "completed": 1,
                                       "failed": 1, "corrupt": 0}


def test_queue_status_of_a_new_instance_is_all_zero(cli: Cli) -> None:
    result = cli("queue", "status", "--json")
    assert result.code == OK
    assert set(json.loads(result.out).values()) == {0}


def test_queue_list_shows_pending_with_next_attempt(
    cli: Cli, filled: dict[str, list[str]]
) -> None:
    result = cli("queue", "list")
    assert result.code == OK
    for rid in filled["pending"]:
        assert f"{rid}  attempts 0  next " in result.out
    assert "/data/ict/r0.json" in result.out


def test_queue_list_failed_shows_the_last_error(cli: Cli, filled: dict[str, list[str]]) -> None:
    result = cli("queue", "list", "--state", "failed")
    assert result.code == OK
    [rid] = filled["failed"]
    assert f"{rid}  attempts 1" in result.out
    assert "    last error: rejected by the server: 'pn' is missing" in result.out
    rows = json.loads(cli("queue", "list", "--state", "failed", "--json").out)
    assert rows == [{"id": rid, "source": "/data/ict/r4.json", "attempts": 1,
                     "next_attempt": None,
                     "last_error": "rejected by the server: 'pn' is missing"}]


def test_queue_list_json_and_limit(cli: Cli, filled: dict[str, list[str]]) -> None:
    rows = json.loads(cli("queue", "list", "--json").out)
    assert sorted(r["id"] for r in rows) == sorted(filled["pending"])
    assert all(r["attempts"] == 0 and r["next_attempt"] for r in rows)
    limited = json.loads(cli("queue", "list", "--json", "--limit", "1").out)
    assert len(limited) == 1 and limited[0]["id"] in filled["pending"]
    assert cli("queue", "list", "--state", "corrupt").out == "no corrupt reports\n"


def test_queue_retry_failed_queues_them_again(cli: Cli, filled: dict[str, list[str]]) -> None:
    result = cli("queue", "retry-failed")
    assert result.code == OK
    assert result.out == "1 failed report(s) queued again\n"
    assert cli.queued("failed") == []
    assert filled["failed"][0] in cli.queued("pending")
    assert cli("queue", "retry-failed").out == "0 failed report(s) queued again\n"


def test_queue_clear_completed_removes_only_completed(
    cli: Cli, filled: dict[str, list[str]]
) -> None:
    result = cli("queue", "clear-completed")
    assert result.code == OK
    assert result.out == "1 completed report(s) removed\n"
    assert cli.queued("completed") == []
    assert len(cli.queued("pending")) == 3 and len(cli.queued("failed")) == 1


# -- convert ----------------------------------------------------------------------------------


def test_convert_prints_one_report_with_a_stable_id(cli: Cli, tmp_path: Path) -> None:
    source = write_json(tmp_path / "in" / "uut.json", wsjf_report(3))
    first = cli("convert", "--file", str(source))
    assert first.code == OK, first.err
    report = json.loads(first.out)
    assert isinstance(report, dict)
    uuid.UUID(report["id"])
    assert report["sn"] == "SN000003"
    assert "WATSStandardJsonConverter" in first.err  # why this converter was chosen
    second = cli("convert", "--file", str(source))
    assert json.loads(second.out)["id"] == report["id"]
    assert not (cli.instance_dir() / "queue").exists(), "convert must not queue anything"


def test_convert_a_file_with_two_reports_prints_a_list(cli: Cli, tmp_path: Path) -> None:
    source = write_json(tmp_path / "two.json", [wsjf_report(1), wsjf_report(2)])
    result = cli("convert", "--file", str(source))
    assert result.code == OK, result.err
    reports = json.loads(result.out)
    assert isinstance(reports, list)
    assert [r["sn"] for r in reports] == ["SN000001", "SN000002"]
    assert reports[0]["id"] != reports[1]["id"]


def test_convert_keeps_the_id_of_a_real_wsjf_sample(cli: Cli) -> None:
    path = sample("wsjf", "WATS - WSJF UUT Example file.json")
    result = cli("convert", "--file", str(path))
    assert result.code == OK, result.err
    assert json.loads(result.out)["id"] == json.loads(path.read_text())["id"]


def test_convert_with_an_unknown_converter_names_the_known_ones(
    cli: Cli, tmp_path: Path
) -> None:
    source = write_json(tmp_path / "uut.json", wsjf_report(1))
    result = cli("convert", "--file", str(source), "--converter", "NoSuchConverter")
    assert result.code == REJECTED
    assert "NoSuchConverter" in result.err
    assert "WATSStandardJsonConverter" in result.err
    assert result.out == ""


def test_convert_a_garbage_file_names_the_file(cli: Cli, tmp_path: Path) -> None:
    source = tmp_path / "scrambled.json"
    source.write_bytes(b"\x00\x01 this is not a report {")
    result = cli("convert", "--file", str(source))
    assert result.code == REJECTED
    assert "scrambled.json" in result.err
    assert result.out == ""


def test_convert_an_invalid_report_says_what_is_missing(cli: Cli, tmp_path: Path) -> None:
    source = write_json(tmp_path / "partial.json", {"type": "T"})
    result = cli("convert", "--file", str(source))
    assert result.code == REJECTED
    assert "partial.json" in result.err and "'pn' is missing" in result.err


def test_convert_a_missing_file_is_a_usage_error(cli: Cli, tmp_path: Path) -> None:
    result = cli("convert", "--file", str(tmp_path / "nope.json"))
    assert result.code == USAGE
    assert f"--file {tmp_path / 'nope.json'}: no such file" in result.err
    assert "Traceback" not in result.err
    folder = cli("convert", "--file", str(tmp_path))
    assert folder.code == USAGE and "not a regular file" in folder.err


def test_convert_with_the_csv_plugin_from_the_authoring_kit(cli: Cli) -> None:
    install_csv_plugin(cli)
    detected = cli("convert", "--file", str(CSV_EXAMPLE))
    assert detected.code == OK, detected.err
    assert "CsvExampleConverter" in detected.err
    reports = json.loads(detected.out)
    assert [r["sn"] for r in reports] == ["SN001", "SN002"]
    assert [r["result"] for r in reports] == ["P", "F"]  # SN002's 3.45 V is above 3.4
    named = cli("convert", "--file", str(CSV_EXAMPLE), "--converter", "CsvExampleConverter")
    assert named.code == OK, named.err
    assert [r["id"] for r in json.loads(named.out)] == [r["id"] for r in reports]


# -- converters list --------------------------------------------------------------------------


def test_converters_list_shows_the_built_in(cli: Cli) -> None:
    result = cli("converters", "list")
    assert result.code == OK
    [line] = [x for x in result.out.splitlines() if x.startswith("WATSStandardJsonConverter")]
    assert "*.json" in line and "built-in" in line
    assert "BROKEN" not in result.out


def test_converters_list_shows_a_broken_plugin_and_keeps_the_good_one(cli: Cli) -> None:
    install_csv_plugin(cli)
    broken = cli.instance_dir() / "converters" / "half_written_plugin.py"
    broken.write_text("from pywats_client.converters import Converter\n\nclass Oops(Converter:\n")
    result = cli("converters", "list")
    assert result.code == OK
    names = [line.split()[0] for line in result.out.splitlines() if not line.startswith(" ")]
    assert "WATSStandardJsonConverter" in names
    assert "CsvExampleConverter" in names
    [line] = [x for x in result.out.splitlines() if x.startswith("BROKEN")]
    assert "half_written_plugin.py" in line


# -- upload -----------------------------------------------------------------------------------


def test_upload_stores_the_report_and_completes_it(
    cli: Cli, receiver: Receiver, tmp_path: Path
) -> None:
    cli.init(receiver.url)
    source = write_json(tmp_path / "uut.json", wsjf_report(1))
    result = cli("upload", "--file", str(source))
    assert result.code == OK, result.err
    [rid] = receiver.stored_ids()
    assert result.out.startswith(f"{rid}: completed")
    assert cli.queued("completed") == [rid]
    assert cli.queued("pending") == []
    assert source.exists(), "upload leaves the source file where it is"
    # The same file again is the same report: nothing new is sent.
    again = cli("upload", "--file", str(source))
    assert again.code == OK
    assert f"{rid}: completed" in again.out
    assert receiver.posts_by_id()[rid] == 1


def test_upload_verbose_prints_the_converter_and_the_report_sent(
    cli: Cli, receiver: Receiver, tmp_path: Path
) -> None:
    cli.init(receiver.url)
    source = write_json(tmp_path / "uut.json", wsjf_report(7))
    result = cli("upload", "--file", str(source), "--verbose")
    assert result.code == OK, result.err
    assert "converter: WATSStandardJsonConverter" in result.out
    sent = json.loads(result.out[result.out.index("{"):])
    assert sent["sn"] == "SN000007"
    assert sent["id"] in receiver.stored_ids()


def test_upload_rejected_by_the_server_goes_to_failed(
    cli: Cli, receiver: Receiver, tmp_path: Path
) -> None:
    cli.init(receiver.url)
    receiver.faults.reject_rate = 1.0
    source = write_json(tmp_path / "uut.json", wsjf_report(2))
    result = cli("upload", "--file", str(source))
    assert result.code == REJECTED
    [rid] = cli.queued("failed")
    assert f"{rid}: failed" in result.out and "HTTP 400" in result.out
    header = read_header(cli.instance_dir() / "queue" / "failed" / f"{rid}.wsq")
    assert "rejected" in header.last_error and "HTTP 400" in header.last_error
    assert receiver.stored_ids() == set()


def test_upload_while_the_server_is_offline_keeps_the_report(
    cli: Cli, tmp_path: Path
) -> None:
    cli.init(closed_port_url())
    source = write_json(tmp_path / "uut.json", wsjf_report(3))
    result = cli("upload", "--file", str(source))
    assert result.code == SERVER
    [rid] = cli.queued("pending")
    assert f"{rid}: pending - cannot reach WATS" in result.out
    assert "server unreachable" in result.err and "kept in the queue" in result.err
    assert read_header(cli.instance_dir() / "queue" / "pending" / f"{rid}.wsq").attempts == 0


def test_upload_with_a_wrong_token_pauses_and_keeps_the_report(
    cli: Cli, receiver: Receiver, tmp_path: Path
) -> None:
    cli.init(receiver.url, token=WRONG_TOKEN)
    source = write_json(tmp_path / "uut.json", wsjf_report(4))
    result = cli("upload", "--file", str(source))
    assert result.code == REFUSED  # not SERVER: waiting will not fix a wrong token
    [rid] = cli.queued("pending")
    assert f"{rid}: pending" in result.out and "api_token" in result.out
    assert "uploads paused" in result.err and "config set api_token" in result.err
    assert WRONG_TOKEN not in result.out + result.err
    assert receiver.stored_ids() == set()
    # Fixed token: the same command sends the report that waited.
    assert cli("config", "set", "api_token", TOKEN).code == OK
    fixed = cli("upload", "--file", str(source))
    assert fixed.code == OK, fixed.err
    assert receiver.stored_ids() == {rid}


def test_upload_without_a_server_url_says_how_to_configure(cli: Cli, tmp_path: Path) -> None:
    source = write_json(tmp_path / "uut.json", wsjf_report(5))
    result = cli("upload", "--file", str(source))
    assert result.code == USAGE
    assert "server_url is not set" in result.err and "config init" in result.err


def test_upload_a_garbage_file_queues_nothing(
    cli: Cli, receiver: Receiver, tmp_path: Path
) -> None:
    cli.init(receiver.url)
    source = tmp_path / "noise.json"
    source.write_text("not json")
    result = cli("upload", "--file", str(source))
    assert result.code == REJECTED
    assert "noise.json" in result.err
    assert cli.queued("pending") == [] and receiver.request_count() == 0


# -- status -----------------------------------------------------------------------------------


STATUS_KEYS = {"instance", "config", "running", "pid", "lock_holder", "uptime_seconds",
               "server_url", "queue", "last_upload_at", "last_upload_id", "last_error",
               "last_error_at", "service_server_state", "service_server_detail", "disk_full",
               "disk_low", "disk_free_mb", "folders_unavailable", "supervisor",
               "error_files", "error_files_newest",
               "waiting_for_processes", "id_clashes", "folder_problems", "converters_broken"}
PROBE_KEYS = {"server_reachable", "server_authenticated", "server_refused", "server_message"}


def test_status_without_a_service_says_not_running(cli: Cli) -> None:
    cli.init("https://wats.example.com")
    result = cli("status", "--no-probe")
    assert result.code == NOT_RUNNING
    assert "service:      not running" in result.out
    assert "server:       https://wats.example.com" in result.out
    assert "queue:        empty" in result.out


def test_status_json_keys_with_and_without_probe(cli: Cli, receiver: Receiver) -> None:
    cli.init(receiver.url)
    quiet = cli("status", "--json", "--no-probe")
    assert quiet.code == NOT_RUNNING
    info = json.loads(quiet.out)
    assert set(info) == STATUS_KEYS
    assert info["running"] is False and info["pid"] is None
    assert info["instance"] == "default"
    assert info["config"] == str(cli.instance_dir() / "config.json")
    assert receiver.request_count() == 0, "--no-probe must not contact the server"
    probed = json.loads(cli("status", "--json").out)
    assert set(probed) == STATUS_KEYS | PROBE_KEYS
    assert probed["server_reachable"] is True and probed["server_authenticated"] is True


def test_status_probe_says_authenticated(cli: Cli, receiver: Receiver) -> None:
    cli.init(receiver.url)
    result = cli("status")
    assert result.code == NOT_RUNNING
    assert "reachable, authenticated" in result.out


def test_status_probe_with_a_wrong_token(cli: Cli, receiver: Receiver) -> None:
    cli.init(receiver.url, token=WRONG_TOKEN)
    result = cli("status")
    assert "reachable, NOT authenticated" in result.out
    assert "HTTP 401" in result.out and "api_token" in result.out
    assert WRONG_TOKEN not in result.out
    assert json.loads(cli("status", "--json").out)["server_authenticated"] is False


def test_status_probe_of_an_unreachable_server(cli: Cli) -> None:
    cli.init(closed_port_url())
    result = cli("status")
    assert "UNREACHABLE: cannot reach WATS" in result.out
    assert "authenticated" not in result.out  # nothing is known about the credentials


def test_status_names_another_process_using_the_instance(cli: Cli) -> None:
    cli.init("https://wats.example.com")
    with lock_holder(cli.instance_dir() / "instance.lock", "upload") as proc:
        result = cli("status", "--no-probe")
    assert result.code == NOT_RUNNING
    assert f"not running; instance in use by pid {proc.pid} (upload)" in result.out


@pytest.mark.slow
def test_status_while_the_service_runs(
    tmp_path: Path, receiver: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    station = Station(tmp_path / "station", receiver.url, TOKEN)
    try:
        station.start()
        assert station.proc is not None
        cli = Cli(station.data_dir, capsys)
        result = cli("status", "--json")
        assert result.code == OK, result.out + result.err
        info = json.loads(result.out)
        assert info["running"] is True
        assert info["pid"] == station.proc.pid
        assert info["lock_holder"] == "service"
        assert info["server_authenticated"] is True
        text = cli("status")
        assert text.code == OK
        assert f"service:      running (pid {station.proc.pid}, up " in text.out
        assert station.stop() == 0
    finally:
        station.kill()


def test_status_flags_a_folder_bound_to_a_converter_that_does_not_load(
    tmp_path: Path, receiver: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    station = Station(tmp_path / "station", receiver.url, TOKEN)
    # Bound by hand in config.json (the command would have refused the name).
    station.config["queue"]["watch_folders"] = [
        {"path": str(station.watch), "converter": "WATSStandardJsonConvertor"}]
    station.write_config()
    cli = Cli(station.data_dir, capsys)
    stopped = cli("status", "--json", "--no-probe")
    assert stopped.code == NOT_RUNNING
    [broken] = json.loads(stopped.out)["converters_broken"]
    assert broken["converter"] == "WATSStandardJsonConvertor"
    assert "did you mean WATSStandardJsonConverter" in broken["problem"]
    try:
        station.start()
        text = cli("status", "--no-probe")
        assert text.code == DEGRADED, text.out + text.err
        assert "is bound to WATSStandardJsonConvertor, which does not load" in text.out
        assert station.stop() == 0
    finally:
        station.kill()


# -- unlock -----------------------------------------------------------------------------------


def test_unlock_without_a_lock_file_does_nothing(cli: Cli) -> None:
    result = cli("unlock")
    assert result.code == OK
    assert result.out == f"no lock file at {cli.instance_dir() / 'instance.lock'}: nothing to do\n"


def test_unlock_removes_the_lock_of_a_killed_process(cli: Cli) -> None:
    lock = cli.instance_dir() / "instance.lock"
    with lock_holder(lock) as proc:
        proc.kill()
        proc.wait(timeout=30)
    assert json.loads(lock.read_text())["pid"] == proc.pid  # what a crash leaves behind
    result = cli("unlock")
    assert result.code == OK
    assert result.out == f"removed stale lock {lock}\n"
    assert not lock.exists()


def test_unlock_refuses_while_a_live_process_holds_the_lock(cli: Cli) -> None:
    lock = cli.instance_dir() / "instance.lock"
    with lock_holder(lock) as proc:
        result = cli("unlock")
        assert result.code == LOCKED
        assert f"held by live pid {proc.pid}" in result.err
        assert lock.exists()


# -- start --once -----------------------------------------------------------------------------


@pytest.fixture
def once_station(cli: Cli, receiver: Receiver, tmp_path: Path) -> Path:
    """An instance configured for the receiver, watching tmp_path/watch."""
    cli.init(receiver.url)
    watch = tmp_path / "watch"
    watch.mkdir()
    assert cli("config", "add-watch-folder", str(watch)).code == OK
    assert cli("config", "set", "queue.settle_time", "0.1").code == OK
    return watch


@pytest.mark.usefixtures("restore_process_state")
def test_start_once_drains_the_watch_folder(
    cli: Cli, receiver: Receiver, once_station: Path
) -> None:
    ids = [str(uuid.uuid4()) for _ in range(3)]
    for n, rid in enumerate(ids):
        write_json(once_station / f"uut-{n}.json", wsjf_report(n, report_id=rid))
    result = cli("start", "--once")
    assert result.code == OK, result.err
    assert result.out == ("converted 3, conversion errors 0, uploaded 3, rejected 0; "
                          "server online; left in queue: none\n")
    assert receiver.stored_ids() == set(ids)
    assert sorted(cli.queued("completed")) == sorted(ids)
    assert sorted(p.name for p in (once_station / "done").iterdir()) == [
        "uut-0.json", "uut-1.json", "uut-2.json"]
    assert (cli.instance_dir() / "logs" / "pywats_client.log").exists()


@pytest.mark.usefixtures("restore_process_state")
def test_start_once_while_another_process_owns_the_instance(
    cli: Cli, receiver: Receiver, once_station: Path
) -> None:
    write_json(once_station / "uut.json", wsjf_report(1))
    with lock_holder(cli.instance_dir() / "instance.lock", "service") as proc:
        result = cli("start", "--once")
    assert result.code == LOCKED
    assert f"pid {proc.pid}" in result.err and "in use" in result.err
    assert receiver.stored_ids() == set()
    assert (once_station / "uut.json").exists(), "the file waits for the owner"


# -- instances --------------------------------------------------------------------------------


def test_instances_keep_separate_config_and_queues(cli: Cli) -> None:
    cli.init("https://line-a.example.com", instance="line-a")
    cli.init("https://line-b.example.com", instance="line-b")
    assert cli("config", "get", "server_url", instance="line-a").out == (
        "https://line-a.example.com\n")
    assert cli("config", "get", "server_url", instance="line-b").out == (
        "https://line-b.example.com\n")
    rid = str(uuid.uuid4())
    cli.queue("line-a").put(_report_bytes(1, rid), report_id=rid)
    a = json.loads(cli("queue", "status", "--json", instance="line-a").out)
    b = json.loads(cli("queue", "status", "--json", instance="line-b").out)
    assert (a["pending"], b["pending"]) == (1, 0)
    status = json.loads(cli("status", "--json", "--no-probe", instance="line-b").out)
    assert status["instance"] == "line-b"
    assert status["config"] == str(cli.data_dir / "line-b" / "config.json")
    assert not (cli.data_dir / "default").exists()


def test_the_instance_may_follow_the_command_as_the_product_documents_write_it(
        cli: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    cli.init("https://line-a.example.com", instance="line-a")
    rid = str(uuid.uuid4())
    cli.queue("line-a").put(_report_bytes(1, rid), report_id=rid)

    def run(*args: str) -> Result:  # no --data-dir/--instance before the command
        capsys.readouterr()
        code = main(list(args))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    data = str(cli.data_dir)
    after = run("status", "--json", "--no-probe", "--instance-id", "line-a", "--data-dir", data)
    assert after.code == NOT_RUNNING and json.loads(after.out)["instance"] == "line-a"
    assert json.loads(run("queue", "status", "--json", "--data-dir", data, "--instance-id",
                          "line-a").out)["pending"] == 1
    assert run("config", "get", "server_url", "--instance", "line-a",
               "--data-dir", data).out == "https://line-a.example.com\n"
    assert run("unlock", "--instance-id", "line-a", "--data-dir", data).code == OK
    # After the command wins over before it; left out, the value before it stands.
    both = run("--instance", "nope", "--data-dir", data, "queue", "status", "--json",
               "--instance-id", "line-a")
    assert json.loads(both.out)["pending"] == 1
    before = run("--instance", "line-a", "--data-dir", data, "queue", "status", "--json")
    assert json.loads(before.out)["pending"] == 1


def test_the_queue_commands_of_the_architecture_document_are_aliases(
        cli: Cli, filled: dict[str, list[str]]) -> None:
    assert cli("queue", "stats").out == cli("queue", "status").out
    assert cli("queue", "retry").out == "1 failed report(s) queued again\n"
    assert cli("queue", "clean").out == "1 completed report(s) removed\n"
    assert cli.queued("failed") == [] and cli.queued("completed") == []


@pytest.mark.parametrize(("command", "names"), [
    (["gui"], ["status page", "--api"]),
    (["install-service", "--instance-id", "production"], ["install.sh --systemd",
                                                          "systemd-unit"]),
])
def test_commands_this_client_does_not_have_say_what_replaces_them(
        cli: Cli, command: list[str], names: list[str]) -> None:
    result = cli(*command)
    assert result.code == USAGE and result.out == ""
    assert len(result.err.splitlines()) == 1
    for name in names:
        assert name in result.err
    code, out, _ = cli.exits("--help")
    assert code == OK
    assert "gui" not in out and "install-service" not in out  # not offered as commands


@pytest.mark.parametrize("name", ["../escape", "", "-dash", "a/b"])
def test_an_invalid_instance_name_is_a_usage_error(cli: Cli, name: str) -> None:
    result = cli("config", "show", instance=name)
    assert result.code == USAGE
    assert "invalid instance name" in result.err
    assert not cli.data_dir.exists() or list(cli.data_dir.iterdir()) == []


# -- environment overrides --------------------------------------------------------------------


def test_environment_overrides_are_the_effective_settings(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli.init("https://file.example.com")
    monkeypatch.setenv("PYWATS_SERVER_URL", "https://env.example.com")
    monkeypatch.setenv("PYWATS_API_TOKEN", LONG_TOKEN)
    status = json.loads(cli("status", "--json", "--no-probe").out)
    assert status["server_url"] == "https://env.example.com"
    shown = cli("config", "show")
    assert 'server_url = "https://env.example.com"  # from $PYWATS_SERVER_URL' in shown.out
    assert 'api_token = "****"  # from $PYWATS_API_TOKEN' in shown.out
    assert LONG_TOKEN not in shown.out
    as_json = json.loads(cli("config", "show", "--format", "json").out)
    assert as_json["server_url"] == "https://env.example.com"
    assert as_json["environment_overrides"] == {"server_url": "PYWATS_SERVER_URL",
                                                "api_token": "PYWATS_API_TOKEN"}
    # config get/set work on the file itself.
    assert cli("config", "get", "server_url").out == "https://file.example.com\n"


def test_the_environment_token_is_the_one_sent(
    cli: Cli, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli.init(receiver.url, token=WRONG_TOKEN)
    monkeypatch.setenv("PYWATS_API_TOKEN", TOKEN)
    assert "reachable, authenticated" in cli("status").out


def test_an_invalid_environment_override_names_the_variable(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli.init("https://wats.example.com")
    monkeypatch.setenv("PYWATS_SERVER_URL", "wats.example.com")
    result = cli("status", "--no-probe")
    assert result.code == USAGE
    assert "PYWATS_SERVER_URL" in result.err and "https://wats.example.com" in result.err


# -- the installed entry points ---------------------------------------------------------------


def test_the_installed_console_script(tmp_path: Path) -> None:
    """The `pywats-client` script pip installed next to this interpreter."""
    script = Path(sys.executable).parent / "pywats-client"
    if not script.exists():
        pytest.skip(f"{script} is not installed (pip install -e . creates it)")
    base = [str(script), "--data-dir", str(tmp_path / "data")]
    version = subprocess.run([*base, "--version"], capture_output=True, text=True,
                             env=child_env(), timeout=60)
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"pywats-client {__version__}"
    helped = subprocess.run([*base, "--help"], capture_output=True, text=True,
                            env=child_env(), timeout=60)
    assert helped.returncode == 0, helped.stderr
    assert "exit codes:" in helped.stdout and "config" in helped.stdout


def test_python_dash_m_pywats_client(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pywats_client", "--data-dir", str(tmp_path / "data"),
         "--version"],
        capture_output=True, text=True, env=child_env(), timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"pywats-client {__version__}"

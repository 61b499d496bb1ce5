"""Setting up stations as an operator or configuration management does: each command run as a
real process, mistakes refused where they are typed, the same command twice changing nothing,
and secrets taken from files, standard input, the environment or systemd credentials."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from pywats_client.config.document import ConfigDocument, load_settings
from pywats_client.http.receiver import Receiver
from pywats_client.paths import InstancePaths
from tests.conftest import TOKEN
from tests.station import REPO, wsjf_report

CSV_PLUGIN = REPO / "converters" / "csv_example.py"
OTHER_TOKEN = base64.b64encode(b"line-operator:another-long-secret").decode("ascii")
OK, USAGE = 0, 2


def station_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PYWATS_") and k != "CREDENTIALS_DIRECTORY"}
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


class Client:
    """`pywats-client --data-dir DATA ...` as a process, the way it is typed."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir

    def __call__(self, *args: str, stdin: str | None = None, instance: str = "default",
                 **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pywats_client", "--data-dir", str(self.data_dir),
             "--instance", instance, *args],
            input=stdin, capture_output=True, text=True, timeout=120, check=False,
            env=station_env(**env), stdin=None if stdin is not None else subprocess.DEVNULL)

    def paths(self, instance: str = "default") -> InstancePaths:
        return InstancePaths.for_instance(instance, self.data_dir)

    def init(self, url: str = "https://wats.example.com", *extra: str
             ) -> subprocess.CompletedProcess[str]:
        return self("config", "init", "--non-interactive", "--server-url", url,
                    "--station-name", "ict-01", "--api-token", "-", *extra, stdin=TOKEN + "\n")


@pytest.fixture
def client(tmp_path: Path) -> Client:
    return Client(tmp_path / "data")


def token_of(client: Client, instance: str = "default") -> str:
    paths = client.paths(instance)
    return load_settings(paths.config, key_path=paths.key, env={}).api_token


def snapshot(path: Path) -> tuple[bytes, int, int]:
    st = path.stat()
    return path.read_bytes(), st.st_ino, st.st_mtime_ns


# -- mistakes refused where they are made ------------------------------------------------------


def test_add_watch_folder_refuses_an_unknown_converter_naming_the_close_ones(
        client: Client, tmp_path: Path) -> None:
    assert client.init().returncode == OK
    config = client.paths().config
    before = config.read_bytes()
    (tmp_path / "ict").mkdir()
    typo = client("config", "add-watch-folder", str(tmp_path / "ict"), "--converter",
                  "WATSStandardJsonConvertor")
    assert typo.returncode == USAGE
    assert "unknown converter 'WATSStandardJsonConvertor'" in typo.stderr
    assert "did you mean WATSStandardJsonConverter" in typo.stderr
    nope = client("config", "add-watch-folder", str(tmp_path / "ict"), "--converter",
                  "NopeConverter")
    assert nope.returncode == USAGE
    assert "unknown converter 'NopeConverter'" in nope.stderr and "known:" in nope.stderr
    broken_path = client("config", "add-watch-folder", str(tmp_path / "ict"), "--converter",
                         "no_such_package.module.Converter")
    assert broken_path.returncode == USAGE, broken_path.stderr
    assert config.read_bytes() == before


def test_add_watch_folder_accepts_built_ins_plugins_and_dotted_paths(
        client: Client, tmp_path: Path) -> None:
    assert client.init().returncode == OK
    plugins = client.paths().converters
    shutil.copy(CSV_PLUGIN, plugins / CSV_PLUGIN.name)
    for folder, name in (("a", "WATSStandardXMLConverter"), ("b", "CsvExampleConverter"),
                         ("c", "pywats_client.converters.wsjf.WATSStandardJsonConverter")):
        result = client("config", "add-watch-folder", str(tmp_path / folder), "--create",
                        "--converter", name)
        assert result.returncode == OK, result.stderr
    folders = load_settings(client.paths().config, env={}).queue.watch_folders
    assert [f.converter for f in folders] == [
        "WATSStandardXMLConverter", "CsvExampleConverter",
        "pywats_client.converters.wsjf.WATSStandardJsonConverter"]


def test_add_watch_folder_refuses_a_folder_that_does_not_exist_unless_create(
        client: Client, tmp_path: Path) -> None:
    assert client.init().returncode == OK
    config = client.paths().config
    before = config.read_bytes()
    missing = tmp_path / "share" / "line-a"
    refused = client("config", "add-watch-folder", str(missing))
    assert refused.returncode == USAGE
    assert f"{missing} does not exist; nothing changed" in refused.stderr
    assert "--create" in refused.stderr
    assert not missing.exists() and config.read_bytes() == before
    created = client("config", "add-watch-folder", str(missing), "--create")
    assert created.returncode == OK, created.stderr
    assert missing.is_dir()
    assert f"created {missing}" in created.stdout
    (tmp_path / "file.txt").write_text("")
    not_a_folder = client("config", "add-watch-folder", str(tmp_path / "file.txt"), "--create")
    assert not_a_folder.returncode == USAGE and "is not a folder" in not_a_folder.stderr


def test_config_set_refuses_unknown_converter_names(client: Client, tmp_path: Path) -> None:
    assert client.init().returncode == OK
    config = client.paths().config
    before = config.read_bytes()
    enabled = client("config", "set", "converters.enabled",
                     "WATSStandardJsonConverter,SPEAConverterr")
    assert enabled.returncode == USAGE
    assert "converters.enabled[1]: unknown converter 'SPEAConverterr'" in enabled.stderr
    assert "did you mean SPEAConverter" in enabled.stderr
    folders = client("config", "set", "queue.watch_folders",
                     json.dumps([{"path": str(tmp_path), "converter": "NopeConverter"}]))
    assert folders.returncode == USAGE
    assert "queue.watch_folders[0].converter: unknown converter 'NopeConverter'" in (
        folders.stderr)
    assert config.read_bytes() == before
    good = client("config", "set", "converters.enabled", "WATSStandardJsonConverter,SPEAConverter")
    assert good.returncode == OK, good.stderr


def test_doctor_fails_a_folder_whose_converter_does_not_load(client: Client, tmp_path: Path
                                                             ) -> None:
    assert client.init("http://127.0.0.1:9").returncode == OK
    paths = client.paths()
    data = json.loads(paths.config.read_text())
    data["queue"]["watch_folders"] = [{"path": str(tmp_path), "converter": "NopeConverter"}]
    paths.config.write_text(json.dumps(data))  # written by hand, past `config set`
    result = client("doctor")
    assert result.returncode == 1, result.stdout
    assert "FAIL  converter" in result.stdout
    assert "NopeConverter, which does not load" in result.stdout
    assert "Nothing needs fixing" not in result.stdout


# -- the same command twice --------------------------------------------------------------------


def test_config_init_again_with_the_same_values_changes_nothing(client: Client) -> None:
    assert client.init().returncode == OK
    config = client.paths().config
    before = snapshot(config)
    again = client.init()
    assert again.returncode == OK, again.stderr
    assert "already holds these values; nothing changed" in again.stdout
    assert snapshot(config) == before


def test_config_init_with_other_values_needs_force_which_keeps_the_rest(
        client: Client, tmp_path: Path) -> None:
    assert client.init().returncode == OK
    (tmp_path / "ict").mkdir()
    assert client("config", "add-watch-folder", str(tmp_path / "ict")).returncode == OK
    assert client("config", "set", "queue.retry_delay", "90").returncode == OK
    config = client.paths().config
    before = config.read_bytes()
    other = client("config", "init", "--non-interactive", "--server-url",
                   "https://new.example.com", "--api-token", "-", stdin=OTHER_TOKEN)
    assert other.returncode == USAGE
    assert "already exists with other values for server_url, api_token" in other.stderr
    assert "--force" in other.stderr and config.read_bytes() == before
    forced = client("config", "init", "--non-interactive", "--force", "--server-url",
                    "https://new.example.com")
    assert forced.returncode == OK, forced.stderr
    assert "changed server_url" in forced.stdout
    settings = load_settings(config, env={})
    assert settings.server_url == "https://new.example.com"
    assert settings.api_token == TOKEN and settings.station_name == "ict-01"
    assert settings.queue.retry_delay == 90
    assert [f.path for f in settings.queue.watch_folders] == [tmp_path / "ict"]


def test_config_set_with_the_current_value_writes_nothing(client: Client) -> None:
    assert client.init().returncode == OK
    config = client.paths().config
    assert client("config", "set", "queue.retry_delay", "60").returncode == OK
    before = snapshot(config)
    same = client("config", "set", "queue.retry_delay", "60")
    assert same.returncode == OK
    assert "already has this value" in same.stdout
    token = client("config", "set", "api_token", "-", stdin=TOKEN)
    assert token.returncode == OK and "already has this value" in token.stdout
    assert snapshot(config) == before
    changed = client("config", "set", "api_token", "-", stdin=OTHER_TOKEN)
    assert changed.returncode == OK and "api_token set in" in changed.stdout
    assert token_of(client) == OTHER_TOKEN


# -- secrets off the command line --------------------------------------------------------------


def test_the_token_from_a_file_from_stdin_from_the_environment_or_a_credential(
        client: Client, tmp_path: Path) -> None:
    token_file = tmp_path / "station.token"
    token_file.write_text(TOKEN + "\n")
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "api_token").write_text(OTHER_TOKEN)
    base = ["config", "init", "--non-interactive", "--server-url", "https://wats.example.com"]
    ways = {
        "file": client(*base, "--api-token-file", str(token_file), instance="file"),
        "stdin": client(*base, "--api-token", "-", stdin=TOKEN, instance="stdin"),
        "env": client(*base, instance="env", PYWATS_API_TOKEN=TOKEN),
        "credential": client(*base, instance="credential",
                             CREDENTIALS_DIRECTORY=str(credentials)),
    }
    for name, result in ways.items():
        assert result.returncode == OK, (name, result.stderr)
        assert "note:" not in result.stderr, "no warning when the secret stayed off argv"
        assert TOKEN not in client.paths(name).config.read_text()
    assert [token_of(client, name) for name in ways] == [TOKEN, TOKEN, TOKEN, OTHER_TOKEN]
    typed = client(*base, "--api-token", TOKEN, instance="typed")
    assert typed.returncode == OK
    assert "can be read by every user of this machine" in typed.stderr
    assert TOKEN not in typed.stderr + typed.stdout


def test_the_password_from_a_file_or_stdin(client: Client, tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret-pass\n")
    base = ["config", "init", "--non-interactive", "--server-url", "https://wats.example.com",
            "--username", "bob"]
    from_file = client(*base, "--password-file", str(secret), instance="a")
    from_stdin = client(*base, "--password", "-", stdin="s3cret-pass", instance="b")
    for result in (from_file, from_stdin):
        assert result.returncode == OK, result.stderr
    expected = base64.b64encode(b"bob:s3cret-pass").decode("ascii")
    assert token_of(client, "a") == token_of(client, "b") == expected
    both = client(*base, "--password", "-", "--api-token", "-", stdin="x", instance="c")
    assert both.returncode == USAGE
    empty = tmp_path / "empty"
    empty.write_text("\n")
    nothing = client(*base, "--password-file", str(empty), instance="d")
    assert nothing.returncode == USAGE and "is empty" in nothing.stderr


def test_config_set_api_token_from_stdin_a_file_the_environment_or_a_credential(
        client: Client, tmp_path: Path) -> None:
    assert client.init().returncode == OK
    token_file = tmp_path / "t"
    token_file.write_text(OTHER_TOKEN + "\n")
    assert client("config", "set", "api_token", "--file", str(token_file)).returncode == OK
    assert token_of(client) == OTHER_TOKEN
    assert client("config", "set", "api_token", PYWATS_API_TOKEN=TOKEN).returncode == OK
    assert token_of(client) == TOKEN
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "api_token").write_text(OTHER_TOKEN)
    assert client("config", "set", "api_token",
                  CREDENTIALS_DIRECTORY=str(credentials)).returncode == OK
    assert token_of(client) == OTHER_TOKEN
    none = client("config", "set", "api_token")
    assert none.returncode == USAGE and "needs the token" in none.stderr


def test_the_service_takes_the_token_from_a_systemd_credential(client: Client, tmp_path: Path
                                                               ) -> None:
    assert client.init().returncode == OK
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "api_token").write_text(OTHER_TOKEN + "\n")
    paths = client.paths()
    env = {"CREDENTIALS_DIRECTORY": str(credentials)}
    assert load_settings(paths.config, key_path=paths.key, env=env).api_token == OTHER_TOKEN
    # A variable, when set, comes first.
    both = {**env, "PYWATS_API_TOKEN": TOKEN}
    assert load_settings(paths.config, key_path=paths.key, env=both).api_token == TOKEN
    shown = client("config", "show", CREDENTIALS_DIRECTORY=str(credentials))
    assert "from $CREDENTIALS_DIRECTORY/api_token, not config.json" in shown.stdout
    assert OTHER_TOKEN not in shown.stdout
    doc = ConfigDocument.load(paths.config, paths.key)
    assert doc.get("api_token") == TOKEN  # the file itself is unchanged


# -- provisioning many stations ----------------------------------------------------------------

# The README's example, run here as printed (with WATS_URL, TOKEN_FILE and PYWATS_DATA_DIR set).
def readme_provisioning_script() -> str:
    """The README's "Provisioning 100 stations" script, exactly as printed there."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("### Provisioning 100 stations", 1)[1]
    blocks = re.findall(r"^```sh\n(.*?)^```", section, flags=re.MULTILINE | re.DOTALL)
    assert blocks, "README.md's 'Provisioning 100 stations' has no ```sh block"
    return blocks[0]


@pytest.mark.slow
def test_the_readme_provisioning_loop_run_twice_changes_nothing_the_second_time(
        tmp_path: Path, receiver: Receiver) -> None:
    executable = Path(sys.prefix) / "bin" / "pywats-client"
    if not os.access(executable, os.X_OK):
        pytest.skip(f"pywats-client is not installed in {sys.prefix} (pip install -e .)")
    work = tmp_path / "provision"
    work.mkdir()
    # The loop is the same for 100 stations as for 12; each costs three command runs.
    stations = [f"ict-{n:03d}" for n in range(1, 13)]
    (work / "stations.txt").write_text(
        "".join(f"{name} {tmp_path / 'shares' / name}\n" for name in stations))
    token_file = work / "wats.token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    data = tmp_path / "data"
    env = station_env(WATS_URL=receiver.url, TOKEN_FILE=str(token_file),
                      PYWATS_DATA_DIR=str(data),
                      PATH=f"{executable.parent}{os.pathsep}{os.environ.get('PATH', '')}")

    def provision() -> None:
        run = subprocess.run(["sh", "-c", readme_provisioning_script()], cwd=work, env=env,
                             capture_output=True, text=True, timeout=900, check=False)
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]

    provision()
    configs = {name: InstancePaths.for_instance(name, data).config for name in stations}
    first = {name: snapshot(path) for name, path in configs.items()}
    provision()
    assert {name: snapshot(path) for name, path in configs.items()} == first
    listed = subprocess.run([str(executable), "instances", "list"], env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert listed.returncode == 0, listed.stderr
    assert all(name in listed.stdout for name in stations)
    # One of them converts and uploads what its equipment writes.
    share = tmp_path / "shares" / "ict-007"
    report_id = str(uuid.uuid4())
    (share / "uut.json").write_text(json.dumps(wsjf_report(1, report_id=report_id)))
    subprocess.run([str(executable), "--instance", "ict-007", "config", "set",
                    "queue.settle_time", "0.1"], env=env, check=True, capture_output=True,
                   timeout=60)
    once = subprocess.run([str(executable), "--instance", "ict-007", "start", "--once"],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert once.returncode == 0, once.stdout + once.stderr
    assert receiver.stored_ids() == {report_id}
    settings = load_settings(configs["ict-007"], env={})
    assert settings.logging.file is False and settings.station_name == "ict-007"
    assert not (data / "ict-007" / "logs" / "pywats_client.log").exists()

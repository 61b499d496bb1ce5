"""Instance folders: where the data dir is, which names are allowed, what lives where."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest

from pywats_client import paths
from pywats_client.errors import ConfigError
from pywats_client.paths import (
    InstancePaths,
    default_data_dir,
    list_instances,
    validate_instance_name,
)


@pytest.fixture(autouse=True)
def no_system_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """/var/lib/pywats as a folder of this test (absent until a test creates it)."""
    folder = tmp_path / "var-lib-pywats"
    monkeypatch.setattr(paths, "SYSTEM_DATA_DIR", folder)
    return folder


@pytest.fixture
def as_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(paths, "_user_name", lambda uid: "op")


@pytest.fixture
def as_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)


def test_data_dir_from_environment_wins_even_for_root(as_root: None) -> None:
    assert default_data_dir({"PYWATS_DATA_DIR": "/srv/pywats"}) == Path("/srv/pywats")


def test_data_dir_environment_expands_home(as_user: None, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    monkeypatch.setenv("HOME", "/home/op")
    assert default_data_dir({"PYWATS_DATA_DIR": "~/wats"}) == Path("/home/op/wats")


def test_data_dir_for_root_is_the_system_folder(as_root: None, no_system_data_dir: Path) -> None:
    assert default_data_dir({"HOME": "/root"}) == no_system_data_dir


def test_data_dir_for_the_service_user_is_the_units_folder_not_its_home(
        monkeypatch: pytest.MonkeyPatch, no_system_data_dir: Path) -> None:
    # useradd --home-dir /var/lib/pywats pywats: HOME would give /var/lib/pywats/.config/...
    monkeypatch.setattr(os, "geteuid", lambda: 998)
    monkeypatch.setattr(paths, "_user_name", lambda uid: "pywats" if uid == 998 else "")
    assert default_data_dir({"HOME": "/var/lib/pywats"}) == no_system_data_dir


def test_data_dir_for_the_owner_of_an_existing_system_folder_is_that_folder(
        monkeypatch: pytest.MonkeyPatch, no_system_data_dir: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("handing a folder to another user needs root")
    no_system_data_dir.mkdir()
    os.chown(no_system_data_dir, 4321, 4321)
    monkeypatch.setattr(paths, "_user_name", lambda uid: "station")
    monkeypatch.setattr(os, "geteuid", lambda: 4321)
    assert default_data_dir({"HOME": "/home/station"}) == no_system_data_dir
    monkeypatch.setattr(os, "geteuid", lambda: 4322)  # someone else: their own folder
    assert default_data_dir({"HOME": "/home/other"}) == Path(
        "/home/other/.config/pywats_client")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                    reason="running a command as another user needs root")
def test_the_real_service_user_gets_the_system_folder() -> None:
    import pwd
    import subprocess
    import sys

    made = False
    try:
        pwd.getpwnam("pywats")
    except KeyError:
        # As install.sh --systemd makes it; removed again below.
        if shutil.which("useradd") is None:
            pytest.skip("there is no 'pywats' user and no useradd to make one")
        subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir",
                        "/var/lib/pywats", "--shell", "/usr/sbin/nologin", "pywats"],
                       check=True, timeout=60)
        made = True
    # A copy of the package the service user may read: this checkout, and the venv's Python,
    # may be under /root or a private temporary folder.
    readable = Path(tempfile.mkdtemp(prefix="pywats-paths-"))
    try:
        readable.chmod(0o755)
        shutil.copytree(Path(paths.__file__).parent, readable / "pywats_client",
                        ignore=shutil.ignore_patterns("__pycache__"))
        runnable = [exe for exe in (sys.executable, "/usr/bin/python3") if subprocess.run(
            ["runuser", "-u", "pywats", "--", exe, "-c",
             "import sys; assert sys.version_info >= (3, 10)"],
            capture_output=True, timeout=60, check=False).returncode == 0]
        if not runnable:
            pytest.skip("no Python >= 3.10 that the 'pywats' user may run")
        probe = subprocess.run(
            ["runuser", "-u", "pywats", "--", runnable[0], "-c",
             "from pywats_client.paths import default_data_dir; print(default_data_dir())"],
            capture_output=True, text=True, timeout=60, check=False,
            env={"HOME": "/var/lib/pywats", "PATH": os.environ.get("PATH", ""),
                 "PYTHONPATH": str(readable)})
    finally:
        if made:
            subprocess.run(["userdel", "pywats"], check=False, timeout=60)
        shutil.rmtree(readable, ignore_errors=True)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "/var/lib/pywats"


def test_data_dir_for_a_user_is_under_dot_config(as_user: None) -> None:
    assert default_data_dir({"HOME": "/home/op"}) == Path("/home/op/.config/pywats_client")


def test_data_dir_for_a_user_respects_xdg_config_home(as_user: None) -> None:
    env = {"HOME": "/home/op", "XDG_CONFIG_HOME": "/cfg"}
    assert default_data_dir(env) == Path("/cfg/pywats_client")


def test_relative_xdg_config_home_is_ignored_as_the_spec_says(as_user: None) -> None:
    env = {"HOME": "/home/op", "XDG_CONFIG_HOME": "relative/cfg"}
    assert default_data_dir(env) == Path("/home/op/.config/pywats_client")


def test_empty_data_dir_variable_counts_as_unset(as_user: None) -> None:
    env = {"HOME": "/home/op", "PYWATS_DATA_DIR": ""}
    assert default_data_dir(env) == Path("/home/op/.config/pywats_client")


@pytest.mark.parametrize("name", ["default", "station1", "ICT-01", "line_a.fct", "a", "9" * 64])
def test_valid_instance_names(name: str) -> None:
    assert validate_instance_name(name) == name


@pytest.mark.parametrize(
    "name", ["", ".", "..", "-x", ".hidden", "_x", "a/b", "../etc", "a b", "a" * 65, "é", "a\n"]
)
def test_invalid_instance_names_are_refused_with_the_rule(name: str) -> None:
    with pytest.raises(ConfigError, match="letters, digits"):
        validate_instance_name(name)


def test_instance_layout(tmp_path: Path) -> None:
    paths = InstancePaths.for_instance("default", tmp_path)
    root = tmp_path / "default"
    assert paths.root == root
    assert paths.config == root / "config.json"
    assert paths.key == root / "secret.key"
    assert paths.queue == root / "queue"
    assert paths.logs == root / "logs"
    assert paths.log_file == root / "logs" / "pywats_client.log"
    assert paths.converters == root / "converters"
    assert paths.state == root / "state"
    assert paths.lock == root / "instance.lock"
    assert paths.pid_file == root / "service.pid"


def test_for_instance_refuses_a_bad_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"invalid instance name '\.\./x'"):
        InstancePaths.for_instance("../x", tmp_path)


def test_a_user_s_default_instance_is_the_data_dir_itself(as_user: None, tmp_path: Path
                                                           ) -> None:
    env = {"HOME": str(tmp_path)}
    data = tmp_path / ".config" / "pywats_client"
    default = InstancePaths.for_instance("default", env=env)
    assert (default.root, default.flat, default.data_dir) == (data, True, data)
    assert default.config == data / "config.json"
    assert default.log_file == data / "pywats_client.log"  # next to config.json
    assert default.queue == data / "queue"
    other = InstancePaths.for_instance("line-b", env=env)
    assert (other.root, other.flat, other.data_dir) == (data / "line-b", False, data)
    assert other.log_file == data / "line-b" / "logs" / "pywats_client.log"
    # The same folder given as --data-dir or $PYWATS_DATA_DIR is the same layout.
    assert InstancePaths.for_instance("default", data, env=env) == default
    assert InstancePaths.for_instance(
        "default", env={**env, "PYWATS_DATA_DIR": str(data)}) == default


def test_elsewhere_every_instance_has_its_own_folder(as_user: None, tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path / "home")}
    paths_ = InstancePaths.for_instance("default", tmp_path / "data", env=env)
    assert (paths_.root, paths_.flat) == (tmp_path / "data" / "default", False)


def test_an_older_default_folder_is_used_until_moved(as_user: None, tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path)}
    data = tmp_path / ".config" / "pywats_client"
    (data / "default").mkdir(parents=True)
    (data / "default" / "config.json").write_text("{}")
    older = InstancePaths.for_instance("default", env=env)
    assert (older.root, older.flat) == (data / "default", False)
    assert older.in_older_place
    assert older.log_file == data / "default" / "logs" / "pywats_client.log"
    (data / "config.json").write_text("{}")  # moved (or made anew): the documented place wins
    now = InstancePaths.for_instance("default", env=env)
    assert (now.root, now.flat, now.in_older_place) == (data, True, False)
    assert list_instances(data, env) == ["default"]


def test_the_instance_of_a_config_file_is_found_from_its_folder(as_user: None,
                                                              tmp_path: Path) -> None:
    # The library front (ClientConfig) knows only the config.json it was given.
    env = {"HOME": str(tmp_path)}
    data = tmp_path / ".config" / "pywats_client"
    for name in ("default", "line-b"):
        made = InstancePaths.for_instance(name, env=env)
        assert InstancePaths.for_config(made.config, env) == made
    (data / "default").mkdir(parents=True)
    (data / "default" / "config.json").write_text("{}")
    older = InstancePaths.for_instance("default", env=env)
    assert InstancePaths.for_config(older.config, env) == older
    elsewhere = InstancePaths.for_instance("default", tmp_path / "data", env=env)
    assert InstancePaths.for_config(elsewhere.config, env) == elsewhere


@pytest.mark.parametrize("name", ["queue", "logs", "converters", "state", "config.json",
                                  "secret.key", "pywats_client.log.1", "api.token"])
def test_names_of_the_default_instance_s_files_are_refused_in_a_user_s_data_dir(
        as_user: None, tmp_path: Path, name: str) -> None:
    env = {"HOME": str(tmp_path)}
    with pytest.raises(ConfigError, match="the default instance keeps its"):
        InstancePaths.for_instance(name, env=env)
    assert InstancePaths.for_instance(name, tmp_path / "data", env=env).root == (
        tmp_path / "data" / name)


def test_list_instances_of_a_user_s_data_dir(as_user: None, tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path)}
    data = tmp_path / ".config" / "pywats_client"
    for name in ("default", "fct"):
        instance = InstancePaths.for_instance(name, env=env)
        instance.ensure()
        instance.config.write_text("{}")
    assert (data / "config.json").is_file() and (data / "fct" / "config.json").is_file()
    assert list_instances(data, env) == ["default", "fct"]


def test_for_instance_uses_the_default_data_dir(monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    monkeypatch.setenv("PYWATS_DATA_DIR", str(tmp_path))
    assert InstancePaths.for_instance("fct").root == tmp_path / "fct"


def test_ensure_creates_a_private_root_and_its_folders(tmp_path: Path) -> None:
    paths = InstancePaths.for_instance("st1", tmp_path / "missing" / "data")
    paths.ensure()
    paths.ensure()  # idempotent
    assert stat.S_IMODE(paths.root.stat().st_mode) == 0o700
    for folder in (paths.logs, paths.converters, paths.state):
        assert folder.is_dir()


def test_ensure_keeps_the_permissions_of_an_existing_root(tmp_path: Path) -> None:
    paths = InstancePaths.for_instance("st1", tmp_path)
    paths.root.mkdir()
    paths.root.chmod(0o750)
    paths.ensure()
    assert stat.S_IMODE(paths.root.stat().st_mode) == 0o750


def test_list_instances_finds_folders_with_a_config(tmp_path: Path) -> None:
    for name in ("fct", "default", "ict"):
        InstancePaths.for_instance(name, tmp_path).ensure()
        (tmp_path / name / "config.json").write_text("{}")
    (tmp_path / "empty").mkdir()  # no config.json: not an instance
    (tmp_path / ".trash").mkdir()
    (tmp_path / ".trash" / "config.json").write_text("{}")  # not a valid instance name
    (tmp_path / "notes.txt").write_text("")
    assert list_instances(tmp_path) == ["default", "fct", "ict"]


def test_list_instances_of_a_missing_data_dir_is_empty(tmp_path: Path) -> None:
    assert list_instances(tmp_path / "nope") == []

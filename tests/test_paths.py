"""Instance folders: where the data dir is, which names are allowed, what lives where."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from pywats_client.errors import ConfigError
from pywats_client.paths import (
    InstancePaths,
    default_data_dir,
    list_instances,
    validate_instance_name,
)


@pytest.fixture
def as_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)


@pytest.fixture
def as_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)


def test_data_dir_from_environment_wins_even_for_root(as_root: None) -> None:
    assert default_data_dir({"PYWATS_DATA_DIR": "/srv/pywats"}) == Path("/srv/pywats")


def test_data_dir_environment_expands_home(as_user: None, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    monkeypatch.setenv("HOME", "/home/op")
    assert default_data_dir({"PYWATS_DATA_DIR": "~/wats"}) == Path("/home/op/wats")


def test_data_dir_for_root_is_the_system_folder(as_root: None) -> None:
    assert default_data_dir({"HOME": "/root"}) == Path("/var/lib/pywats")


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

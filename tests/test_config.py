"""config.json: validation messages, defaults, environment, editing, saving, secrets."""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import socket
import stat
from pathlib import Path
from typing import Any

import pytest

from pywats_client.cli.main import main
from pywats_client.config import legacy
from pywats_client.config.document import ConfigDocument, load_settings
from pywats_client.config.environment import ENV_OVERRIDES
from pywats_client.config.provisioning import basic_token, init_config, provision
from pywats_client.config.schema import SCHEMA, WATCH_FOLDER_KEYS, reference_rows
from pywats_client.config.secrets import mask
from pywats_client.config.settings import Settings, WatchFolder
from pywats_client.core.config import ClientConfig
from pywats_client.errors import ConfigError, SecretError
from pywats_client.paths import InstancePaths
from tests.documented_configs import ARCHITECTURE_EXAMPLE, GUIDE_EXAMPLE, PACKAGE_EXAMPLE

TOKEN = "c3RhdGlvbjpzM2NyZXQtdG9rZW4tdmFsdWU="  # base64("station:s3cret-token-value")


def write(tmp_path: Path, doc: dict[str, Any] | str) -> Path:
    path = tmp_path / "config.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc, indent=2))
    return path


def load(path: Path) -> ConfigDocument:
    return ConfigDocument.load(path, path.parent / "secret.key")


# -- defaults and the documented shapes --------------------------------------------------------


def test_missing_file_gives_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    settings = load_settings(path, env={})
    assert settings == Settings(station_name=socket.gethostname(), source=path)
    assert not path.exists()


def test_the_service_guide_example_loads(tmp_path: Path) -> None:
    path = write(tmp_path, GUIDE_EXAMPLE)
    settings = load_settings(path, env={})
    assert settings.server_url == "https://wats.yourcompany.com"
    assert settings.api_token == "..."
    assert settings.station_name == "ICT-STATION-01"
    assert settings.station_location == "Production Line A"
    # On Linux "C:\TestReports" is a relative name: it starts at the config folder.
    assert settings.queue.watch_folders == (WatchFolder(path=tmp_path / "C:\\TestReports"),)
    assert settings.queue.upload_interval == 10.0
    assert settings.queue.retry_attempts == 3
    assert settings.queue.retry_delay == 60.0
    assert settings.converters.enabled == ("WATSStandardXMLConverter", "TeradyneICTConverter")
    assert settings.converters.auto_detect is True
    assert (settings.logging.level, settings.logging.max_size_mb) == ("INFO", 10.0)
    assert settings.logging.backup_count == 5
    assert settings.queue.max_age == 7 * 24 * 3600.0  # not in the file: the default


def test_a_full_config_with_every_key(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    path = write(tmp_path, {
        "server_url": "https://wats.example.com/wats/", "station_name": "ICT-01",
        "station_location": "Line A", "station_purpose": "Debug", "ca_bundle": "ca.pem",
        "connect_timeout": 5, "read_timeout": 30.5,
        "queue": {
            "watch_folders": ["/data/ict", {
                "path": "/data/fct", "converter": "WATSStandardJsonConverter",
                "post_action": "ARCHIVE", "done_folder": "ok", "error_folder": "/data/bad",
                "file_patterns": ["*.json"], "polling": True, "arguments": {"x": 1}}],
            "upload_interval": 5, "retry_attempts": 2, "retry_delay": 10,
            "retry_max_delay": 600, "max_age": 86400, "settle_time": 0.5,
            "rescan_interval": 60, "probe_interval": 15, "completed_retention_days": 1,
            "failed_retention_days": 2.5, "allow_network_filesystem": True},
        "converters": {"enabled": ["WATSStandardJsonConverter"], "auto_detect": False,
                       "defaults": {"part_number": "PN-1", "revision": "B",
                                    "process_code": 10.0, "operator": "op", "tz": "UTC"}},
        "logging": {"level": "debug", "max_size_mb": 2, "backup_count": 0},
    })
    s = load_settings(path, env={})
    assert s.server_url == "https://wats.example.com/wats"  # a base: no trailing slash
    assert (s.station_name, s.station_location, s.station_purpose) == ("ICT-01", "Line A",
                                                                      "Debug")
    assert s.ca_bundle == str(ca)
    assert (s.connect_timeout, s.read_timeout) == (5.0, 30.5)
    assert s.queue.watch_folders == (
        WatchFolder(path=Path("/data/ict")),
        WatchFolder(path=Path("/data/fct"), converter="WATSStandardJsonConverter",
                    post_action="archive", done_folder=Path("/data/fct/ok"),
                    error_folder=Path("/data/bad"), file_patterns=("*.json",), polling=True,
                    arguments={"x": 1}),
    )
    q = s.queue
    assert (q.upload_interval, q.retry_attempts, q.retry_delay, q.retry_max_delay) == (
        5.0, 2, 10.0, 600.0)
    assert (q.max_age, q.settle_time, q.rescan_interval, q.probe_interval) == (
        86400.0, 0.5, 60.0, 15.0)
    assert (q.completed_retention_days, q.failed_retention_days) == (1.0, 2.5)
    assert q.allow_network_filesystem is True
    assert s.converters.enabled == ("WATSStandardJsonConverter",)
    assert s.converters.auto_detect is False
    assert s.converters.defaults == {"part_number": "PN-1", "revision": "B",
                                     "process_code": 10, "operator": "op", "tz": "UTC"}
    assert isinstance(s.converters.defaults["process_code"], int)
    assert (s.logging.level, s.logging.max_size_mb, s.logging.backup_count) == ("DEBUG", 2.0, 0)
    assert s.source == path


def test_the_architecture_doc_converter_list_loads(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, ARCHITECTURE_EXAMPLE), env={})
    incoming = tmp_path / "C:\\TestData\\Incoming"
    assert settings.queue.watch_folders == (WatchFolder(
        path=incoming, converter="converters.csv_converter.CSVConverter", post_action="move",
        done_folder=incoming / "C:\\TestData\\Done", error_folder=incoming / "C:\\TestData\\Error",
        file_patterns=("*.csv",), arguments={"delimiter": ",", "encoding": "utf-8"}),)
    assert settings.converters.enabled == ()  # each folder is bound to its converter


def test_converter_list_entries_disabled_and_named(tmp_path: Path) -> None:
    path = write(tmp_path, {
        "queue": {"watch_folders": ["/data/a"]},
        "converters": [
            {"name": "WATSStandardXMLConverter", "watch_folder": "/data/xml"},
            {"name": "Old", "module_path": "x.Y", "watch_folder": "/data/old", "enabled": False},
            {"name": "Half written", "enabled": False},  # disabled entries are not checked
        ],
    })
    folders = load_settings(path, env={}).queue.watch_folders
    assert [(f.path, f.converter) for f in folders] == [
        (Path("/data/a"), None), (Path("/data/xml"), "WATSStandardXMLConverter")]


def test_relative_paths_start_at_the_config_folder(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/op")
    conf_dir = tmp_path / "inst"
    conf_dir.mkdir()
    path = write(conf_dir, {"queue": {"watch_folders": [
        "incoming", "../shared/in", "~/drop", {"path": "fct", "done_folder": "../fct-done"}]}})
    folders = load_settings(path, env={}).queue.watch_folders
    assert [f.path for f in folders] == [conf_dir / "incoming", tmp_path / "shared" / "in",
                                         Path("/home/op/drop"), conf_dir / "fct"]
    assert folders[3].done_path == conf_dir / "fct-done"  # relative to its watch folder
    assert folders[0].done_path == conf_dir / "incoming" / "done"


def test_a_relative_config_path_is_made_absolute(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, {"queue": {"watch_folders": ["in"]}})
    monkeypatch.chdir(tmp_path)
    settings = load_settings(Path("config.json"), env={})
    assert settings.source == tmp_path / "config.json"
    assert settings.queue.watch_folders[0].path == tmp_path / "in"


def test_a_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_bytes(b"\xef\xbb\xbf" + b'{"station_name": "BOM"}')
    assert load_settings(path, env={}).station_name == "BOM"


# -- environment overrides -------------------------------------------------------------------


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, {"server_url": "https://file.example.com", "station_name": "file",
                            "queue": {"watch_folders": ["/data/file"]},
                            "logging": {"level": "INFO"}})
    env = {"PYWATS_SERVER_URL": "http://env.example.com:8080/", "PYWATS_API_TOKEN": TOKEN,
           "PYWATS_STATION_NAME": "env-station", "PYWATS_LOG_LEVEL": "warning",
           "PYWATS_WATCH_FOLDERS": "/data/a:rel::/data/a"}
    s = load_settings(path, env=env)
    assert s.server_url == "http://env.example.com:8080"
    assert s.api_token == TOKEN
    assert s.station_name == "env-station"
    assert s.logging.level == "WARNING"
    assert s.queue.watch_folders == (WatchFolder(path=Path("/data/a")),
                                     WatchFolder(path=tmp_path / "rel"))


def test_empty_environment_variables_count_as_unset(tmp_path: Path) -> None:
    path = write(tmp_path, {"station_name": "file", "queue": {"watch_folders": ["/d"]}})
    s = load_settings(path, env={"PYWATS_STATION_NAME": "", "PYWATS_WATCH_FOLDERS": ""})
    assert s.station_name == "file"
    assert [f.path for f in s.queue.watch_folders] == [Path("/d")]


def test_environment_applies_without_a_config_file(tmp_path: Path) -> None:
    s = load_settings(tmp_path / "none.json", env={"PYWATS_SERVER_URL": "https://h"})
    assert s.server_url == "https://h"


def test_load_settings_reads_os_environ_by_default(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYWATS_STATION_NAME", "from-os-environ")
    assert load_settings(tmp_path / "none.json").station_name == "from-os-environ"


@pytest.mark.parametrize(
    ("var", "value", "fragment"),
    [
        ("PYWATS_SERVER_URL", "wats.example.com", "did you mean 'https://wats.example.com'"),
        ("PYWATS_LOG_LEVEL", "LOUD", "one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        ("PYWATS_API_TOKEN", "two words", "without spaces"),
    ],
)
def test_bad_environment_values_name_the_variable(tmp_path: Path, var: str, value: str,
                                                  fragment: str) -> None:
    path = write(tmp_path, {})
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env={var: value})
    text = str(caught.value)
    assert f"environment variable {var}" in text and str(path) in text
    assert fragment in text and f"correct or unset {var}" in text
    if var == "PYWATS_API_TOKEN":
        assert value not in text


# The display of the effective config (`config show`, the control API's /config) and the
# settings the service runs with come from one reading of the environment: they must agree.

FILE_TOKEN = "ZmlsZTpmaWxlLXNlY3JldC12YWx1ZQ=="  # base64("file:file-secret-value")


def station_config(folder: Path) -> Path:
    doc = ConfigDocument(folder / "config.json", folder / "secret.key")
    for key, value in (("server_url", "https://file.example.com"), ("api_token", FILE_TOKEN),
                       ("station_name", "file-station"), ("logging.level", "INFO"),
                       ("queue.watch_folders", json.dumps(["/data/file"]))):
        doc.set(key, value)
    doc.save()
    return doc.path


def assert_display_agrees(display: dict[str, Any], settings: Settings) -> None:
    assert display["server_url"] == settings.server_url
    assert display["api_token"] == mask(settings.api_token)
    assert display["station_name"] == settings.station_name
    assert display["logging"]["level"] == settings.logging.level
    shown = [entry if isinstance(entry, str) else entry["path"]
             for entry in display["queue"]["watch_folders"]]
    assert shown == [str(folder.path) for folder in settings.queue.watch_folders]
    assert FILE_TOKEN not in json.dumps(display) and TOKEN not in json.dumps(display)


FILE_VALUES = {"server_url": "https://file.example.com", "api_token": FILE_TOKEN,
               "station_name": "file-station", "logging.level": "INFO",
               "queue.watch_folders": ["/data/file"]}


def effective(settings: Settings) -> dict[str, Any]:
    return {"server_url": settings.server_url, "api_token": settings.api_token,
            "station_name": settings.station_name, "logging.level": settings.logging.level,
            "queue.watch_folders": [str(f.path) for f in settings.queue.watch_folders]}


@pytest.mark.parametrize(
    ("env", "changed"),
    [
        pytest.param({"PYWATS_SERVER_URL": "  https://env.example.com/ \n"},
                     {"server_url": "https://env.example.com"}, id="url-in-blanks"),
        pytest.param({"PYWATS_STATION_NAME": "\tICT-02  "}, {"station_name": "ICT-02"},
                     id="name-in-blanks"),
        pytest.param({"PYWATS_LOG_LEVEL": " debug\n"}, {"logging.level": "DEBUG"},
                     id="log-level"),
        pytest.param({"PYWATS_API_TOKEN": f"  {TOKEN}\r\n"}, {"api_token": TOKEN},
                     id="token-in-blanks"),
        pytest.param({"PYWATS_WATCH_FOLDERS": " /data/a : rel ::/data/a: "},
                     {"queue.watch_folders": ["/data/a", "rel"]}, id="watch-folders"),
        pytest.param({"PYWATS_WATCH_FOLDERS": "/data/a:/data/b"},
                     {"queue.watch_folders": ["/data/a", "/data/b"]}, id="watch-folders-plain"),
        pytest.param({var: " \t\n " for var in ENV_OVERRIDES}, {}, id="blank-is-unset"),
        pytest.param({var: "" for var in ENV_OVERRIDES}, {}, id="empty-is-unset"),
    ],
)
def test_the_display_shows_the_environment_the_settings_use(
        tmp_path: Path, env: dict[str, str], changed: dict[str, Any]) -> None:
    path = station_config(tmp_path)
    if "queue.watch_folders" in changed:  # relative ones start at the config folder
        changed["queue.watch_folders"] = [str(tmp_path / p) if not p.startswith("/") else p
                                          for p in changed["queue.watch_folders"]]
    settings = load_settings(path, env=env)
    assert effective(settings) == {**FILE_VALUES, **changed}
    display, overrides = load(path).display_with_environment(env)
    assert_display_agrees(display, settings)
    assert overrides == {key: var for var, key in ENV_OVERRIDES.items() if key in changed}


def test_config_show_and_the_service_read_the_environment_alike(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    paths = InstancePaths.for_instance("default", tmp_path / "data")
    paths.ensure()
    station_config(paths.root)
    for var, value in (("PYWATS_SERVER_URL", "   "), ("PYWATS_API_TOKEN", f" {TOKEN}\n"),
                       ("PYWATS_STATION_NAME", "  ICT-09 "), ("PYWATS_LOG_LEVEL", " warning "),
                       ("PYWATS_WATCH_FOLDERS", " rel : /data/b ")):
        monkeypatch.setenv(var, value)
    capsys.readouterr()
    assert main(["--data-dir", str(tmp_path / "data"), "config", "show", "--format",
                 "json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    settings = load_settings(paths.config)  # as the service loads them: from os.environ
    assert settings.server_url == "https://file.example.com"  # a blank variable is unset
    assert settings.station_name == "ICT-09" and settings.api_token == TOKEN
    assert_display_agrees(shown, settings)
    assert shown["environment_overrides"] == {
        "api_token": "PYWATS_API_TOKEN", "station_name": "PYWATS_STATION_NAME",
        "logging.level": "PYWATS_LOG_LEVEL", "queue.watch_folders": "PYWATS_WATCH_FOLDERS"}


# -- validation ------------------------------------------------------------------------------

BAD_CONFIGS: list[tuple[dict[str, Any], str, str]] = [
    ({"server_url": "wats.example.com"}, "server_url",
     "(did you mean 'https://wats.example.com'?)"),
    ({"server_url": "ftp://wats.example.com"}, "server_url", "http:// or https:// URL"),
    ({"server_url": "https://"}, "server_url", "with a host name"),
    ({"server_url": "https://wats.example.com?x=1"}, "server_url", "without ?query"),
    ({"server_url": "https://wats.example.com:99999"}, "server_url", "port number"),
    ({"server_url": 5}, "server_url", "got 5"),
    ({"station_name": 7}, "station_name", "text in quotes"),
    ({"api_token": 12345}, "api_token", "not shown"),
    ({"connect_timeout": 0}, "connect_timeout", "a number of seconds ≥ 1, got 0"),
    ({"ca_bundle": "missing.pem"}, "ca_bundle", "does not exist"),
    ({"queue": {"retry_delay": "soon"}}, "queue.retry_delay",
     "must be a number of seconds ≥ 1, got \"soon\". Fix: set it with "
     "'pywats-client config set queue.retry_delay 30'"),
    ({"queue": {"retry_delay": -5}}, "queue.retry_delay", "≥ 1, got -5"),
    ({"queue": {"upload_interval": True}}, "queue.upload_interval", "got true"),
    ({"queue": {"retry_attempts": 2.5}}, "queue.retry_attempts", "a whole number ≥ 0"),
    ({"queue": {"settle_time": -1}}, "queue.settle_time", "≥ 0"),
    ({"queue": {"max_age": float("nan")}}, "queue.max_age", "a number of seconds"),
    ({"queue": {"allow_network_filesystem": "yes"}}, "queue.allow_network_filesystem",
     "true or false"),
    ({"queue": {"retry_delay": 600, "retry_max_delay": 60}}, "queue.retry_max_delay",
     "at least queue.retry_delay (600)"),
    ({"queue": {"retry_dealy": 5}}, "queue.retry_dealy",
     "unknown key 'queue.retry_dealy' (did you mean 'queue.retry_delay'?)"),
    ({"server_ulr": "https://h"}, "server_ulr", "did you mean 'server_url'"),
    ({"queue": 5}, "queue", "an object"),
    ({"queue": {"watch_folders": "/data"}}, "queue.watch_folders", "a list of folder paths"),
    ({"queue": {"watch_folders": [42]}}, "queue.watch_folders[0]", "a folder path or an object"),
    ({"queue": {"watch_folders": [{"converter": "X"}]}}, "queue.watch_folders[0].path",
     "the path of a folder"),
    ({"queue": {"watch_folders": [{"path": "/d", "post_action": "shred"}]}},
     "queue.watch_folders[0].post_action", "one of move, archive, delete, none, got \"shred\""),
    ({"queue": {"watch_folders": [{"path": "/d", "file_patterns": "*.xml"}]}},
     "queue.watch_folders[0].file_patterns", "a non-empty list of patterns"),
    ({"queue": {"watch_folders": [{"path": "/d", "polling": "no"}]}},
     "queue.watch_folders[0].polling", "true or false"),
    ({"queue": {"watch_folders": [{"path": "/d", "arguments": []}]}},
     "queue.watch_folders[0].arguments", "an object"),
    ({"queue": {"watch_folders": [{"path": "/d", "converter": 3}]}},
     "queue.watch_folders[0].converter", "a converter name or null"),
    ({"queue": {"watch_folders": [{"path": "/d", "done_folder": "."}]}},
     "queue.watch_folders[0].done_folder", "other than the watched folder"),
    ({"queue": {"watch_folders": [{"path": "/d", "post_acton": "move"}]}},
     "queue.watch_folders[0].post_acton", "did you mean 'queue.watch_folders[0].post_action'"),
    ({"queue": {"watch_folders": ["/d", "/d/", "/e"]}}, "queue.watch_folders[1]",
     "repeats the folder /d, already watched by queue.watch_folders[0]"),
    ({"converters": "all"}, "converters", "an object"),
    ({"converters": {"enabled": "WATSStandardJsonConverter"}}, "converters.enabled",
     "a list of converter names"),
    ({"converters": {"defaults": []}}, "converters.defaults", "an object"),
    ({"converters": {"defaults": {"process_code": "ten"}}}, "converters.defaults.process_code",
     "a whole number ≥ 0"),
    ({"converters": [{"name": "X", "watch_folder": "/d", "post_action": "zip"}]},
     "converters[0].post_action", "one of move, archive, delete, none"),
    ({"converters": [{"module_path": "m.C"}]}, "converters[0].watch_folder",
     "the path of a folder"),
    ({"converters": [{"watch_folder": "/d"}]}, "converters[0].module_path",
     "the converter to use"),
    ({"converters": [{"name": "X", "watch_folder": "/d", "enabled": "yes"}]},
     "converters[0].enabled", "true or false"),
    ({"converters": [{"module_path": "m.C", "watch_folder": "/d"}],
      "queue": {"watch_folders": ["/d"]}}, "converters[0]", "repeats the folder /d"),
    ({"logging": {"level": "LOUD"}}, "logging.level",
     "one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got \"LOUD\""),
    ({"logging": {"backup_count": -1}}, "logging.backup_count", "≥ 0, got -1"),
    ({"logging": {"max_size_mb": "10MB"}}, "logging.max_size_mb", "a number of megabytes"),
]


@pytest.mark.parametrize(("doc", "key", "fragment"), BAD_CONFIGS,
                         ids=[f"{i}-{case[1]}" for i, case in enumerate(BAD_CONFIGS)])
def test_each_validation_error_names_file_key_and_fix(tmp_path: Path, doc: dict[str, Any],
                                                      key: str, fragment: str) -> None:
    path = write(tmp_path, doc)
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env={})
    text = str(caught.value)
    assert text.startswith(f"{path}: ")
    assert f"{key} must be" in text or f"unknown key '{key}'" in text or f"{key} repeats" in text
    assert fragment in text
    assert "Fix:" in text
    assert "\n" not in text  # exactly one problem in each of these


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, {"server_url": "nope", "queue": {"retry_delay": "x"},
                            "logging": {"level": 3}})
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env={})
    lines = str(caught.value).splitlines()
    assert len(lines) == 3
    assert all(line.startswith(f"{path}: ") for line in lines)


def test_credentials_in_the_url_are_refused_and_not_echoed(tmp_path: Path) -> None:
    path = write(tmp_path, {"server_url": "https://bob:hunter2@wats.example.com"})
    with pytest.raises(ConfigError, match="credentials belong in api_token") as caught:
        load_settings(path, env={})
    assert "hunter2" not in str(caught.value)


def test_an_invalid_token_is_never_echoed(tmp_path: Path) -> None:
    path = write(tmp_path, {"api_token": "secret with\nnewline"})
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env={})
    assert "api_token must be" in str(caught.value)
    assert "secret" not in str(caught.value).split("must be", 1)[1].replace("(it may hold a "
                                                                             "secret)", "")


def test_json_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, '{\n  "server_url": "https://h"\n  "station_name": "x"\n}\n')
    with pytest.raises(ConfigError) as caught:
        load(path)
    text = str(caught.value)
    assert text.startswith(f"{path}: not valid JSON at line 3, column 3")
    assert "Fix:" in text


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('{"station_name": "a", "station_name": "b"}', "the key 'station_name' appears twice"),
        ("[1, 2]", "must hold one JSON object"),
        ("", "not valid JSON at line 1, column 1"),
    ],
)
def test_unusable_documents(tmp_path: Path, text: str, fragment: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=fragment):
        load(path)


def test_non_utf8_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_bytes(b'{"station_name": "\xff"}')
    with pytest.raises(ConfigError, match="not UTF-8"):
        load(path)


def test_an_unknown_key_is_an_error_that_names_it_yet_editing_keeps_it(tmp_path: Path) -> None:
    path = write(tmp_path, {"station_name": "A", "queue": {"gui_refresh": 2}})
    with pytest.raises(ConfigError, match=r"unknown key 'queue.gui_refresh'. Fix: remove it"):
        load_settings(path, env={})
    doc = load(path)
    doc.set("station_name", "x")  # the document is still editable, and nothing is dropped
    doc.save()
    saved = json.loads(path.read_text())
    assert saved["queue"] == {"gui_refresh": 2} and saved["station_name"] == "x"


def test_settings_repr_hides_the_token() -> None:
    assert TOKEN not in repr(Settings(api_token=TOKEN))


# -- editing ---------------------------------------------------------------------------------

SET_CASES: list[tuple[str, str, Any]] = [
    ("server_url", "https://wats.example.com/prefix", "https://wats.example.com/prefix"),
    ("station_name", "ICT 02", "ICT 02"),
    ("queue.upload_interval", "30", 30),
    ("queue.upload_interval", "2.5", 2.5),
    ("queue.retry_attempts", "3", 3),
    ("queue.retry_attempts", "3.0", 3),
    ("queue.allow_network_filesystem", "yes", True),
    ("queue.allow_network_filesystem", "0", False),
    ("converters.auto_detect", "FALSE", False),
    ("converters.auto_detect", "1", True),
    ("converters.enabled", "A, B,", ["A", "B"]),
    ("converters.enabled", '["A"]', ["A"]),
    ("converters.enabled", "", []),
    ("logging.level", "debug", "DEBUG"),
    ("ca_bundle", "none", None),
    ("ca_bundle", "null", None),
    ("converters.defaults", '{"part_number": "PN-1"}', {"part_number": "PN-1"}),
    ("converters.defaults.process_code", "10", 10),
    ("converters.defaults.part_number", "007", "007"),  # text stays text
    ("converters.defaults.time_zone", "Europe/Oslo", "Europe/Oslo"),  # free-form key
    ("converters.defaults.shift", "2", 2),
    ("queue.watch_folders", "/a, /b", ["/a", "/b"]),
    ("queue.watch_folders", '[{"path": "/c", "polling": true}]', [{"path": "/c",
                                                                   "polling": True}]),
    ("api_token", f"  {TOKEN}\n", TOKEN),
]


@pytest.mark.parametrize(("key", "text", "stored"), SET_CASES)
def test_set_types_the_value_by_the_schema(tmp_path: Path, key: str, text: str,
                                           stored: Any) -> None:
    path = tmp_path / "config.json"
    doc = load(path)
    doc.set(key, text)
    assert doc.get(key) == stored
    doc.save()
    again = load(path)
    assert again.get(key) == stored
    again.settings(env={})  # and the result is a valid config


def test_set_accepts_an_existing_ca_bundle(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("pem")
    doc = load(tmp_path / "config.json")
    doc.set("ca_bundle", "ca.pem")
    assert doc.settings(env={}).ca_bundle == str(tmp_path / "ca.pem")


@pytest.mark.parametrize(
    ("key", "text", "fragment"),
    [
        ("queue.retry_delay", "soon", 'must be a number of seconds ≥ 1, got "soon"'),
        ("queue.retry_delay", "0", "≥ 1"),
        ("queue.retry_attempts", "1.5", "a whole number"),
        ("converters.auto_detect", "maybe", "true or false"),
        ("logging.level", "LOUD", "one of DEBUG"),
        ("server_url", "wats", "did you mean 'https://wats'"),
        ("ca_bundle", "/nonexistent/ca.pem", "does not exist"),
        ("converters.defaults", "[1]", "an object"),
        ("converters.defaults", "{oops", "written as JSON"),
        ("converters.enabled", "[1, 2]", "a list of converter names"),
        ("queue.watch_folders", '["/a", "/a/"]', "repeats the folder /a"),
        ("api_token", "has a space", "without spaces"),
    ],
)
def test_set_refuses_a_bad_value_and_changes_nothing(tmp_path: Path, key: str, text: str,
                                                     fragment: str) -> None:
    path = write(tmp_path, {"queue": {"retry_delay": 45}})
    doc = load(path)
    before = doc.to_display()
    with pytest.raises(ConfigError) as caught:
        doc.set(key, text)
    message = str(caught.value)
    assert str(path) in message and key in message and fragment in message
    if key == "api_token":
        assert "has a space" not in message
    assert doc.to_display() == before


def test_set_unknown_key_suggests_the_nearest(tmp_path: Path) -> None:
    doc = load(tmp_path / "config.json")
    with pytest.raises(ConfigError) as caught:
        doc.set("queue.retry", "5")
    assert "unknown key 'queue.retry' (did you mean 'queue.retry_delay'?)" in str(caught.value)
    with pytest.raises(ConfigError, match=r"unknown key 'colour'\. Fix:"):
        doc.set("colour", "blue")
    with pytest.raises(ConfigError, match="'logging' is a section"):
        doc.set("logging", "x")


def test_set_inside_a_converter_list_is_refused(tmp_path: Path) -> None:
    doc = load(write(tmp_path, ARCHITECTURE_EXAMPLE))
    with pytest.raises(ConfigError, match="converters is a list in the file"):
        doc.set("converters.auto_detect", "false")


def test_set_can_repair_a_broken_file(tmp_path: Path) -> None:
    path = write(tmp_path, {"queue": {"retry_delay": "soon"}})
    doc = load(path)  # loading does not validate, so the fix can be made with `config set`
    doc.set("queue.retry_delay", "30")
    doc.save()
    assert load_settings(path, env={}).queue.retry_delay == 30.0


def test_get_returns_defaults_sections_and_extra_keys(tmp_path: Path) -> None:
    doc = load(write(tmp_path, {"gui": {"theme": "dark"}, "queue": {"retry_delay": 5}}))
    assert doc.get("queue.upload_interval") == 10
    assert doc.get("queue.retry_delay") == 5
    assert doc.get("converters.defaults.part_number") is None
    assert doc.get("gui.theme") == "dark"
    assert doc.get("logging") == {"level": "INFO", "file": True, "max_size_mb": 10,
                                  "backup_count": 5}
    assert doc.get("api_token") == ""
    with pytest.raises(ConfigError, match=r"unknown key 'queue\.upload'"):
        doc.get("queue.upload")


def test_add_watch_folder(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    doc = load(path)
    doc.add_watch_folder("/data/ict")
    doc.add_watch_folder("/data/fct", converter="WATSStandardJsonConverter",
                         post_action="delete")
    doc.save()
    assert json.loads(path.read_text())["queue"]["watch_folders"] == [
        "/data/ict",
        {"path": "/data/fct", "converter": "WATSStandardJsonConverter", "post_action": "delete"},
    ]
    folders = load_settings(path, env={}).queue.watch_folders
    assert [(f.path, f.converter, f.post_action) for f in folders] == [
        (Path("/data/ict"), None, "move"),
        (Path("/data/fct"), "WATSStandardJsonConverter", "delete")]


def test_add_watch_folder_of_a_folder_already_watched_changes_nothing(tmp_path: Path) -> None:
    doc = load(write(tmp_path, {"queue": {"watch_folders": ["in"]}}))
    for same in ("in", str(tmp_path / "in"), "./in/"):
        assert doc.add_watch_folder(same) == "unchanged"
    assert doc.get("queue.watch_folders") == ["in"]


def test_add_watch_folder_with_other_options_updates_the_entry_in_place(tmp_path: Path) -> None:
    entry = {"path": "b", "file_patterns": ["*.xml"], "post_action": "none"}
    doc = load(write(tmp_path, {"queue": {"watch_folders": ["a", entry, "c"]}}))
    assert doc.add_watch_folder(str(tmp_path / "b"), post_action="none") == "unchanged"
    assert doc.add_watch_folder("b", converter="WATSStandardXMLConverter") == "updated"
    assert doc.add_watch_folder("a", post_action="delete") == "updated"
    assert doc.get("queue.watch_folders") == [
        {"path": "a", "post_action": "delete"},
        {"path": "b", "file_patterns": ["*.xml"], "post_action": "none",
         "converter": "WATSStandardXMLConverter"},
        "c"]


def test_add_watch_folder_refuses_a_folder_of_the_older_converters_list(tmp_path: Path
                                                                        ) -> None:
    doc = load(write(tmp_path, {"converters": [{"name": "X", "watch_folder": "/data/x"}]}))
    with pytest.raises(ConfigError, match="already watched by an entry of the converters list"):
        doc.add_watch_folder("/data/x")
    assert doc.get("queue.watch_folders") == []


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"path": "/d", "post_action": "shred"}, "must be one of move, archive, delete, none"),
        ({"path": "  "}, "needs a path"),
        ({"path": "/d", "converter": ""}, "must not be empty"),
    ],
)
def test_add_watch_folder_refuses_bad_arguments(tmp_path: Path, kwargs: dict[str, Any],
                                                fragment: str) -> None:
    doc = load(tmp_path / "config.json")
    with pytest.raises(ConfigError, match=fragment):
        doc.add_watch_folder(**kwargs)
    assert doc.get("queue.watch_folders") == []


def test_to_display_fills_defaults_and_masks_secrets(tmp_path: Path) -> None:
    doc = load(write(tmp_path, {"extra": 1, "queue": {"watch_folders": ["/d"]}}))
    doc.set("api_token", TOKEN)
    shown = doc.to_display()
    assert shown["api_token"] == "****"
    assert TOKEN not in json.dumps(shown)
    assert list(shown)[:3] == ["server_url", "api_token", "station_name"]
    assert shown["extra"] == 1
    assert shown["queue"]["watch_folders"] == [{
        "path": "/d", "converter": None, "post_action": "move", "done_folder": "/d/done",
        "error_folder": "/d/error", "file_patterns": ["*"], "polling": False,
        "follow_symlinks": False, "arguments": {}}]
    every_plain_key = [o.key for o in SCHEMA if not o.optional]
    for key in every_plain_key:
        node: Any = shown
        for part in key.split("."):
            node = node[part]


def test_to_display_shows_an_undecryptable_secret_without_failing(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    doc = load(path)
    doc.set("api_token", TOKEN)
    doc.save()
    (tmp_path / "secret.key").unlink()
    assert load(path).to_display()["api_token"].startswith("**** (cannot be decrypted")


# -- saving ----------------------------------------------------------------------------------


def test_round_trip_keeps_unknown_keys_and_order(tmp_path: Path) -> None:
    original = {
        "instance_name": "Line A station",
        "server_url": "https://wats.example.com",
        "gui": {"theme": "dark", "window": [1, 2]},
        "queue": {"retry_delay": 60, "custom_thing": True, "watch_folders": ["/data/ict"]},
        "station_name": "ICT-01 Å",
    }
    path = write(tmp_path, original)
    doc = load(path)
    doc.save()  # nothing changed: the same document, in our layout
    assert path.read_text(encoding="utf-8") == json.dumps(original, indent=2,
                                                          ensure_ascii=False) + "\n"
    doc.set("queue.upload_interval", "20")
    doc.set("server_url", "https://other.example.com")
    doc.set("logging.level", "debug")
    doc.save()
    saved = json.loads(path.read_text())
    assert list(saved) == ["instance_name", "server_url", "gui", "queue", "station_name",
                           "logging"]
    assert list(saved["queue"]) == ["retry_delay", "custom_thing", "watch_folders",
                                    "upload_interval"]
    assert saved["gui"] == original["gui"]
    assert saved["server_url"] == "https://other.example.com"
    assert saved["logging"] == {"level": "DEBUG"}


def test_save_is_atomic_and_private(tmp_path: Path) -> None:
    path = write(tmp_path, {"station_name": "old"})
    path.chmod(0o644)
    inode = path.stat().st_ino
    doc = load(path)
    doc.set("station_name", "new")
    doc.save()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.stat().st_ino != inode  # replaced by rename, never rewritten in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]  # no temp files
    assert json.loads(path.read_text()) == {"station_name": "new"}


def test_a_failed_save_leaves_the_old_file(tmp_path: Path) -> None:
    path = write(tmp_path, {"station_name": "old"})
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    doc = ConfigDocument.load(path, blocker / "secret.key")
    doc.set("api_token", TOKEN)
    with pytest.raises(SecretError, match="cannot create the key file"):
        doc.save()
    assert json.loads(path.read_text()) == {"station_name": "old"}


def test_secrets_are_encrypted_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "inst" / "config.json"
    doc = load(path)
    doc.set("api_token", TOKEN)
    doc.save()
    text = path.read_text()
    assert TOKEN not in text
    assert json.loads(text)["api_token"].startswith("fernet:")
    key = path.parent / "secret.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert load(path).get("api_token") == TOKEN
    assert load_settings(path, env={}).api_token == TOKEN
    doc.save()  # an unchanged secret is not encrypted again
    assert path.read_text() == text


def test_a_hand_written_plain_token_works_warns_and_is_encrypted_on_save(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path, {"api_token": TOKEN})
    with caplog.at_level(logging.WARNING, logger="pywats_client.config.validation"):
        assert load_settings(path, env={}).api_token == TOKEN
    assert "stored in plain text" in caplog.text and TOKEN not in caplog.text
    doc = load(path)
    doc.set("station_name", "x")
    doc.save()
    assert TOKEN not in path.read_text()


def test_missing_key_file_is_a_clear_secret_error(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    doc = load(path)
    doc.set("api_token", TOKEN)
    doc.save()
    (tmp_path / "secret.key").unlink()
    with pytest.raises(SecretError) as caught:
        load_settings(path, env={})
    text = str(caught.value)
    assert str(path) in text and str(tmp_path / "secret.key") in text
    assert "restore secret.key from backup" in text
    assert "pywats-client config set api_token" in text
    # The token from the environment needs no key file.
    assert load_settings(path, env={"PYWATS_API_TOKEN": "abc"}).api_token == "abc"


def test_wrong_key_file_is_a_clear_secret_error(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    doc = load(path)
    doc.set("api_token", TOKEN)
    doc.save()
    other = tmp_path / "other"
    o = load(other / "config.json")
    o.set("api_token", "x")
    o.save()
    with pytest.raises(SecretError, match="cannot be decrypted with the key file"):
        load_settings(path, key_path=other / "secret.key", env={})


def test_setting_the_token_again_recovers_from_a_lost_key(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    doc = load(path)
    doc.set("api_token", TOKEN)
    doc.save()
    (tmp_path / "secret.key").unlink()
    doc = load(path)
    doc.set("api_token", "new-token")
    doc.save()
    assert load_settings(path, env={}).api_token == "new-token"


# -- creating a config -----------------------------------------------------------------------


def test_init_config_with_user_and_password(tmp_path: Path) -> None:
    paths = InstancePaths.for_instance("st1", tmp_path)
    init_config(paths, server_url="https://wats.example.com", username="station",
                password="pa55word", station_name="ICT-01", location="Line A")
    text = paths.config.read_text()
    assert "pa55word" not in text
    assert basic_token("station", "pa55word") not in text
    saved = json.loads(text)
    assert list(saved) == ["server_url", "api_token", "station_name", "station_location",
                           "queue"]
    settings = load_settings(paths.config, env={})
    assert base64.b64decode(settings.api_token) == b"station:pa55word"
    assert (settings.station_name, settings.station_location) == ("ICT-01", "Line A")
    assert stat.S_IMODE(paths.root.stat().st_mode) == 0o700
    assert stat.S_IMODE(paths.config.stat().st_mode) == 0o600


def test_init_config_treats_an_empty_token_as_none(tmp_path: Path) -> None:
    paths = InstancePaths.for_instance("st1", tmp_path)
    init_config(paths, server_url="https://h", api_token="", username="u", password="p")
    assert load_settings(paths.config, env={}).api_token == basic_token("u", "p")


def test_init_config_again_with_the_same_values_writes_nothing(tmp_path: Path) -> None:
    paths = InstancePaths.for_instance("st1", tmp_path)
    init_config(paths, server_url="https://a.example.com", api_token=TOKEN, station_name="s")
    before, inode = paths.config.read_bytes(), paths.config.stat().st_ino
    _, changed = provision(paths, server_url="https://a.example.com", api_token=TOKEN,
                             station_name="s")
    assert changed == []
    assert (paths.config.read_bytes(), paths.config.stat().st_ino) == (before, inode)
    # The token compared decrypted: user and password giving the same token are the same.
    user, _, password = base64.b64decode(TOKEN).decode().partition(":")
    assert provision(paths, server_url="https://a.example.com", username=user,
                     password=password)[1] == []
    assert paths.config.read_bytes() == before


def test_init_config_refuses_other_values_unless_asked_and_then_changes_only_them(
        tmp_path: Path) -> None:
    paths = InstancePaths.for_instance("st1", tmp_path)
    init_config(paths, server_url="https://a.example.com", api_token=TOKEN, station_name="s")
    doc = ConfigDocument.load(paths.config, paths.key)
    doc.add_watch_folder("/data/ict")
    doc.set("queue.retry_delay", "60")
    doc.save()
    before = paths.config.read_bytes()
    with pytest.raises(ConfigError, match="already exists with other values for server_url; "
                                          "nothing changed"):
        init_config(paths, server_url="https://b.example.com")
    assert paths.config.read_bytes() == before
    doc, changed = provision(paths, server_url="https://b.example.com", overwrite=True)
    assert changed == ["server_url"]
    settings = load_settings(paths.config, env={})
    assert (settings.server_url, settings.api_token) == ("https://b.example.com", TOKEN)
    assert settings.station_name == "s" and settings.queue.retry_delay == 60
    assert [f.path for f in settings.queue.watch_folders] == [Path("/data/ict")]


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"server_url": "wats"}, "server_url must be"),
        ({"server_url": "https://h", "api_token": TOKEN, "username": "u", "password": "p"},
         "not both"),
        ({"server_url": "https://h", "username": "u"}, "needs a password"),
        ({"server_url": "https://h", "username": "a:b", "password": "p"}, "must not contain"),
    ],
)
def test_init_config_refuses_bad_arguments_and_writes_nothing(
        tmp_path: Path, kwargs: dict[str, Any], fragment: str) -> None:
    paths = InstancePaths.for_instance("st1", tmp_path)
    with pytest.raises(ConfigError, match=fragment):
        init_config(paths, **kwargs)
    assert not paths.root.exists()


def test_basic_token() -> None:
    assert basic_token("user", "secret") == base64.b64encode(b"user:secret").decode()
    assert basic_token("ø", "p:w") == base64.b64encode("ø:p:w".encode()).decode()


# -- the reference table ---------------------------------------------------------------------


def test_reference_rows_cover_every_key() -> None:
    rows = reference_rows()
    keys = [row[0] for row in rows]
    assert keys[: len(keys)] == list(dict.fromkeys(keys))  # no repeats
    assert {o.key for o in SCHEMA} <= set(keys)
    assert {f"queue.watch_folders[].{k}" for k in WATCH_FOLDER_KEYS} <= set(keys)
    assert all(len(row) == 4 and all(row) for row in rows)
    by_key = {row[0]: row for row in rows}
    assert by_key["queue.retry_delay"][1:3] == ("seconds ≥ 1", "30")
    assert by_key["station_name"][2] == "the host name"


def test_schema_defaults_match_the_settings_defaults(tmp_path: Path) -> None:
    doc = load(tmp_path / "config.json")
    defaults = Settings()
    assert doc.get("queue.max_age") == defaults.queue.max_age
    assert doc.get("logging.backup_count") == defaults.logging.backup_count
    assert os.fspath(doc.path) == os.fspath(tmp_path / "config.json")


def test_the_package_readme_config_shape_is_read_by_the_service_too(tmp_path: Path) -> None:
    path = write(tmp_path, PACKAGE_EXAMPLE)
    settings = load_settings(path, env={})
    assert settings.server_url == "https://your-server.wats.com"
    assert [f.path for f in settings.queue.watch_folders] == [tmp_path / "test_data"]
    assert settings.api_token == "base64_encoded_token"
    doc = load(path)
    doc.set("station_name", "x")
    doc.save()
    assert json.loads(path.read_text())["instance_name"] == "Production Station 1"


@pytest.mark.parametrize(("name", "folder"), [
    ("station1", "station1"),
    ("Production Station 1", "Production-Station-1"),
    ("  ICT/02 ", "ICT-02"),
])
def test_an_older_instance_name_names_a_folder(name: str, folder: str) -> None:
    assert legacy.instance_id(name) == folder


def test_an_empty_instance_name_is_refused() -> None:
    with pytest.raises(ConfigError, match="instance_name must be a non-empty text"):
        legacy.instance_id("  ")


def test_the_library_front_reads_the_older_keys_as_the_service_does(tmp_path: Path) -> None:
    path = write(tmp_path, PACKAGE_EXAMPLE)
    config = ClientConfig.load(path)
    assert config.server_url == config.service_address == load_settings(path, env={}).server_url
    assert config.instance_name == "Production Station 1"
    with pytest.raises(ConfigError, match="two names for the WATS server address"):
        ClientConfig(server_url="https://a.example.com", service_address="https://b.example.com",
                     path=tmp_path / "other" / "config.json")


# -- the architecture page's retry keys ------------------------------------------------------


def test_the_older_retry_keys_read_as_the_queue_s(tmp_path: Path) -> None:
    path = write(tmp_path, {"server_url": "https://h", "max_retry_attempts": 3,
                            "retry_interval_seconds": 60})
    settings = load_settings(path, env={})
    assert (settings.queue.retry_attempts, settings.queue.retry_delay) == (3, 60.0)
    assert json.loads(path.read_text())["max_retry_attempts"] == 3  # kept as written
    agreeing = write(tmp_path, {"max_retry_attempts": 3, "queue": {"retry_attempts": 3}})
    assert load_settings(agreeing, env={}).queue.retry_attempts == 3


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"max_retry_attempts": 3, "queue": {"retry_attempts": 5}},
         "max_retry_attempts and queue.retry_attempts differ (3 and 5)"),
        ({"retry_interval_seconds": "soon"},
         "retry_interval_seconds (the older name of queue.retry_delay) must be a number"),
        ({"max_retry_attempts": -1},
         "max_retry_attempts (the older name of queue.retry_attempts) must be a whole number"),
    ],
)
def test_the_older_retry_keys_are_checked_under_their_own_names(
        tmp_path: Path, data: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        load_settings(write(tmp_path, data), env={})

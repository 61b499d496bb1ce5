"""The control API configured in config.json (api.enabled, api.port, api.host,
api.allow_remote): checked like every key, overridden for one run by start's --api options, and
kept by `restart`."""

from __future__ import annotations

import argparse
import json
import os
import signal
from pathlib import Path

import pytest

from pywats_client.cli.service_commands import api_options
from pywats_client.config.document import ConfigDocument, init_config, load_settings
from pywats_client.config.settings import ApiSettings
from pywats_client.errors import ConfigError
from pywats_client.paths import InstancePaths
from pywats_client.queue.lock import pid_alive
from tests.conftest import TOKEN
from tests.station import Station, wait_until


def _configured(tmp_path: Path, **api: str) -> ConfigDocument:
    doc = init_config(InstancePaths.for_instance("default", tmp_path / "data"),
                      server_url="http://127.0.0.1:9", api_token=TOKEN)
    for key, value in api.items():
        doc.set(f"api.{key}", value)
    doc.save()
    return doc


def test_the_api_keys_are_settings(tmp_path: Path) -> None:
    doc = _configured(tmp_path, enabled="true", port="9100", host="::1")
    settings = load_settings(doc.path, key_path=doc.key_path, env={})
    assert settings.api == ApiSettings(enabled=True, port=9100, host="::1", allow_remote=False)
    assert doc.to_display()["api"] == {"enabled": True, "port": 9100, "host": "::1",
                                       "allow_remote": False}


def test_a_bad_port_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    doc = _configured(tmp_path)
    config = json.loads(doc.path.read_text())
    config["api"] = {"port": 70000}
    doc.path.write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=r"api\.port must be a whole number from 0 to 65535"):
        load_settings(doc.path, key_path=doc.key_path, env={})


def _args(**given: object) -> argparse.Namespace:
    return argparse.Namespace(**{"api": None, "api_port": None, "api_host": None,
                                 "api_allow_remote": None, **given})


def test_the_command_line_overrides_the_config_for_one_run(tmp_path: Path) -> None:
    doc = _configured(tmp_path, enabled="true", port="9100")
    settings = load_settings(doc.path, key_path=doc.key_path, env={})
    assert api_options(_args(), settings) == settings.api  # nothing given: as configured
    assert api_options(_args(api=False), settings).enabled is False  # --no-api
    assert api_options(_args(api_port=0), settings) == ApiSettings(enabled=True, port=0)
    off = load_settings(_configured(tmp_path / "other").path,
                        key_path=tmp_path / "other" / "data" / "default" / "secret.key", env={})
    assert api_options(_args(api=True, api_host="0.0.0.0", api_allow_remote=True), off) == (
        ApiSettings(enabled=True, port=8765, host="0.0.0.0", allow_remote=True))


@pytest.mark.slow
def test_restart_keeps_the_api_as_configured(station: Station) -> None:
    for key, value in (("api.enabled", "true"), ("api.port", "0")):
        assert station.cli("config", "set", key, value).returncode == 0
    once = station.cli("start", "--once")  # a one-shot run serves it on --api only
    assert once.returncode == 0 and not station.service_status().get("api_url"), once.stderr
    started = station.cli("start", "--daemon")  # no --api: config.json says so
    assert started.returncode == 0, started.stderr
    pid = int(started.stdout.split("started pid ")[1].split()[0])
    try:
        first = wait_until(lambda: station.service_status().get("api_url"), 30, "the API")
        restarted = station.cli("restart")
        assert restarted.returncode == 0, restarted.stdout + restarted.stderr
        pid = int(restarted.stdout.split("started pid ")[1].split()[0])
        wait_until(lambda: station.service_status().get("pid") == pid
                   and station.service_status().get("state") == "running", 30, "the restart")
        second = station.service_status().get("api_url")
        assert second and second.startswith("http://127.0.0.1:"), second
        assert first.startswith("http://127.0.0.1:"), first  # both runs served it
        assert station.cli("stop").returncode == 0
        wait_until(lambda: not pid_alive(pid), 10, "the daemon to exit")
        # --no-api: off for this one run, whatever the config says
        started = station.cli("start", "--daemon", "--no-api")
        assert started.returncode == 0, started.stderr
        pid = int(started.stdout.split("started pid ")[1].split()[0])
        wait_until(lambda: station.service_status().get("pid") == pid
                   and station.service_status().get("state") == "running", 30, "the start")
        assert not station.service_status().get("api_url")
        assert station.cli("stop").returncode == 0
    finally:
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)

"""The token and password never show: not at rest in config.json, not in any log line at
DEBUG, not in `config show`, `config get`, `status`, error messages or tracebacks."""

from __future__ import annotations

import base64
import json
import stat
import uuid
from pathlib import Path

import pytest

from pywats_client.http.receiver import Receiver
from tests.station import Station, wait_until, wsjf_report

pytestmark = pytest.mark.slow

USER, PASSWORD = "station7", "Xq9-very-secret-9qX"
TOKEN = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
WRONG = base64.b64encode(b"station7:Zz1-wrong-secret-1zZ").decode()
SECRETS = (TOKEN, PASSWORD, WRONG, "Zz1-wrong-secret-1zZ")


def assert_clean(where: str, text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"a secret appears in {where}"


def test_secrets_stay_secret_everywhere(tmp_path: Path) -> None:
    with Receiver(tmp_path / "store", token=TOKEN) as receiver:
        station = Station(tmp_path / "station", receiver.url, TOKEN)
        (station.instance / "config.json").unlink()
        outputs: list[tuple[str, str]] = []

        def run(*args: str) -> None:
            result = station.cli(*args)
            outputs.append((" ".join(args), result.stdout + result.stderr))

        run("config", "init", "--non-interactive", "--server-url", receiver.url,
            "--username", USER, "--password", PASSWORD, "--station-name", "secret-test")
        run("config", "set", "logging.level", "DEBUG")
        run("config", "set", "queue.settle_time", "0.2")
        run("config", "set", "queue.probe_interval", "0.5")
        run("config", "add-watch-folder", str(station.watch))
        config_path = station.instance / "config.json"
        assert stat.S_IMODE(config_path.stat().st_mode) == 0o600
        assert stat.S_IMODE((station.instance / "secret.key").stat().st_mode) == 0o600
        stored = json.loads(config_path.read_text())
        assert stored["api_token"].startswith("fernet:")
        assert_clean("config.json", config_path.read_text())

        try:
            station.start()
            station.drop("good.json", wsjf_report(1, report_id=str(uuid.uuid4())))
            assert receiver.wait_for_reports(1, timeout=30), station.output()
            # a wrong token: uploads pause and the 401 is logged, never the token
            run("config", "set", "api_token", WRONG)
            station.drop("paused.json", wsjf_report(2, report_id=str(uuid.uuid4())))
            wait_until(lambda: station.service_status().get("server") == "paused", 30,
                       "the pause")
            run("config", "show")
            run("config", "show", "--format", "json")
            run("config", "get", "api_token")
            run("status")
            run("status", "--json")
            run("upload", "--file", str(tmp_path / "missing.json"))
            run("queue", "list")
            run("config", "set", "api_token", TOKEN)
            assert receiver.wait_for_reports(2, timeout=30), station.output()
            assert station.stop() == 0
        finally:
            station.kill()

        for where, text in outputs:
            assert_clean(f"'pywats-client {where}'", text)
        assert_clean("the service's stderr", station.output())
        log = (station.instance / "logs" / "pywats_client.log").read_text()
        assert "DEBUG" in log and "uploads paused" in log  # the log really is verbose
        assert_clean("the log file", log)
        for state in ("completed", "pending", "failed"):
            for name in station.queue_files(state):
                assert_clean(f"queue file {name}",
                             (station.queue / state / name).read_text(errors="replace"))
        shown = dict(outputs)["config get api_token"]
        assert shown.strip().startswith("****")

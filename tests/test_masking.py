"""A secret shown masked gives nothing of itself away: `config show`, `config get`, the
environment's overrides, `doctor` and the control API's /config all show `****` alone."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from pywats_client import cli
from pywats_client.config.document import ConfigDocument, init_config
from pywats_client.config.secrets import mask
from pywats_client.paths import InstancePaths

PASSWORD = "Xq9-very-secret-9qXw7"
# 30 bytes, no padding: the last 4 characters of the token are the password's last 3 ("Xw7").
TOKEN = base64.b64encode(f"station7:{PASSWORD}".encode()).decode()


def test_mask_shows_nothing_of_the_secret() -> None:
    assert mask("") == ""  # not set
    for secret in ("abc", "x" * 16, "x" * 13 + "abcd", TOKEN):
        assert mask(secret) == "****", secret


def test_no_display_shows_the_tail_of_the_token(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir = tmp_path / "data"
    paths = InstancePaths.for_instance("default", data_dir)
    init_config(paths, server_url="http://127.0.0.1:9", api_token=TOKEN)
    base = ["--data-dir", str(data_dir)]
    shown: dict[str, str] = {}
    for args in (["config", "show"], ["config", "show", "--format", "json"],
                 ["config", "get", "api_token"], ["doctor", "--json"]):
        cli.main([*base, *args])
        captured = capsys.readouterr()
        shown[" ".join(args)] = captured.out + captured.err
    assert shown["config get api_token"] == "****\n"
    assert json.loads(shown["config show --format json"])["api_token"] == "****"
    shown["/config"] = json.dumps(ConfigDocument.load(paths.config, paths.key).to_display())
    monkeypatch.setenv("PYWATS_API_TOKEN", TOKEN)  # shown with "# from $PYWATS_API_TOKEN"
    cli.main([*base, "config", "show"])
    shown["config show (environment)"] = capsys.readouterr().out
    assert 'api_token = "****"  # from $PYWATS_API_TOKEN' in shown["config show (environment)"]
    tail = TOKEN[-4:]
    assert base64.b64decode(tail) == PASSWORD[-3:].encode()
    for where, text in shown.items():
        assert TOKEN not in text and PASSWORD not in text, where
        assert tail not in text and PASSWORD[-3:] not in text, where

"""The README's shell commands run as printed: the demo, setting up a station, the control API
with curl, writing the systemd units, and the cron line.

Each block is read from README.md at test time and run line by line in bash, with only its
placeholders replaced (the server address, /root/wats.token, /data/ict, the unit folder, the
port) and the commands that need a real system (useradd, systemctl, sudo) recorded instead of
run. A line that changes in the README changes what is run here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pywats_client.http.receiver import Receiver
from tests.conftest import TOKEN
from tests.station import REPO, free_port, wait_until, wsjf_report

README = REPO / "README.md"
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow


def block_after(marker: str, language: str = "bash") -> str:
    """The first ```language block that follows `marker` in the README."""
    text = README.read_text(encoding="utf-8")
    assert marker in text, f"README.md no longer says {marker!r}"
    after = text.split(marker, 1)[1]
    found = re.search(rf"^```{language}\n(.*?)^```", after, flags=re.MULTILINE | re.DOTALL)
    assert found, f"README.md has no ```{language} block after {marker!r}"
    return found.group(1)


def command_lines(block: str) -> list[str]:
    """The block's commands: continuation lines joined, blank lines and comments left out."""
    joined = re.sub(r"\\\n\s*", " ", block)
    return [line for line in joined.splitlines() if line.strip() and not line.startswith("#")]


class Shell:
    """bash with the test's environment: the client first on PATH, an instance data dir of
    its own, and stand-ins for the commands that need a whole system."""

    def __init__(self, root: Path, replacements: dict[str, str]) -> None:
        self.root = root
        self.replacements = replacements
        self.stubs = root / "stubs"
        self.stubs.mkdir()
        self.calls = root / "stub-calls.log"
        for name in ("useradd", "systemctl", "journalctl"):
            self._stub(name, 'echo "$0 $*" >> "$STUB_CALLS"')
        # `sudo -u pywats CMD`: the test runs as one user; run CMD, note the sudo.
        self._stub("sudo", 'echo "$0 $*" >> "$STUB_CALLS"\nshift 2\nexec "$@"')
        self._stub("editor", f'printf "%s\\n" "{TOKEN}" > "$1"')  # the operator pastes the token
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PYWATS_")}
        self.env.update({
            "PATH": f"{self.stubs}{os.pathsep}{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYWATS_DATA_DIR": str(root / "data"), "EDITOR": "editor",
            "STUB_CALLS": str(self.calls), "HOME": str(root / "home"),
        })

    def _stub(self, name: str, body: str) -> None:
        path = self.stubs / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)

    def line(self, printed: str) -> str:
        for old, new in self.replacements.items():
            printed = printed.replace(old, new)
        return printed

    def run(self, printed: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", "-c", self.line(printed)], env=self.env, cwd=self.root,
                              capture_output=True, text=True, timeout=timeout, check=False)

    def start(self, printed: str) -> subprocess.Popen[str]:
        return subprocess.Popen(["bash", "-c", f"exec {self.line(printed)}"], env=self.env,
                                cwd=self.root, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)

    def status(self) -> dict[str, object]:
        result = self.run("pywats-client status --json --no-probe")
        return json.loads(result.stdout) if result.stdout.strip() else {}


def stop(process: subprocess.Popen[str], sig: int = signal.SIGINT) -> str:
    if process.poll() is None:
        process.send_signal(sig)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    return output


def test_the_demo_runs() -> None:
    # "python3 -m venv .venv && .venv/bin/pip install . && .venv/bin/python scripts/demo.py":
    # the install is the wheel test's; the demo runs here with this interpreter.
    first = block_after("## Try it: the two commands")
    assert ".venv/bin/python scripts/demo.py" in first
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "demo.py")], cwd=REPO,
                            capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "the receiver stored all 22 reports" in result.stdout
    assert "service stopped with SIGTERM (exit code 0)" in result.stdout


def test_setting_up_a_station_as_printed(tmp_path: Path, receiver: Receiver) -> None:
    ict = tmp_path / "data-ict"
    ict.mkdir()
    shell = Shell(tmp_path, {"https://wats.example.com": receiver.url,
                             "/root/wats.token": str(tmp_path / "wats.token"),
                             "/data/ict": str(ict)})
    lines = command_lines(block_after("Then set up the station."))
    *steps, start = lines
    assert start.startswith("pywats-client start")
    for printed in steps:
        result = shell.run(printed)
        if printed.startswith("pywats-client doctor"):
            # What the station was just given must pass; the service is not running yet
            # (a warning), and nothing else needs fixing on this machine either.
            assert result.returncode == 0, result.stdout + result.stderr
            passed = {line[6:26].strip() for line in result.stdout.splitlines()
                      if line.startswith("ok    ")}
            assert {"config", "server", "credentials", "watch folder"} <= passed, result.stdout
        else:
            assert result.returncode == 0, f"{printed}\n{result.stdout}{result.stderr}"
    assert oct((tmp_path / "wats.token").stat().st_mode & 0o777) == "0o600"
    service = shell.start(start)
    try:
        wait_until(lambda: shell.status().get("running"), 60, "the service to run")
        report_id = "11111111-2222-4333-8444-555555555555"
        (ict / "uut.json").write_text(json.dumps(wsjf_report(1, report_id=report_id)))
        wait_until(lambda: report_id in receiver.stored_ids(), 60, "the report at the server")
    finally:
        stop(service)  # "Ctrl-C stops it"


def test_the_control_api_commands_as_printed(tmp_path: Path, receiver: Receiver) -> None:
    port = free_port()
    shell = Shell(tmp_path, {"127.0.0.1:8765": f"127.0.0.1:{port}"})
    for setup in (f"pywats-client config init --non-interactive --server-url {receiver.url} "
                  f"--api-token {TOKEN}", f"pywats-client config set api.port {port}"):
        assert shell.run(setup).returncode == 0
    lines = command_lines(block_after("**Control API (opt-in).**"))
    enable, one_run, token, *calls = lines
    assert shell.run(enable).returncode == 0
    # The configured API, as `start` (the systemd way) serves it.
    service = shell.start("pywats-client start")
    try:
        wait_until(lambda: shell.status().get("api_url"), 60, "the control API")
        replies = ""
        for call in calls[:-2]:  # TOKEN= is for the lines after it
            result = shell.run(f"{token}\n{call}")
            assert result.returncode == 0 and result.stdout.startswith("{"), (call, result)
            replies += result.stdout
        assert '"pending"' in replies and '"server_url"' in replies
        assert TOKEN not in replies  # the config's token stays masked
        restart, stop_call = calls[-2:]
        shell.run(f"{token}\n{restart}")
        wait_until(lambda: shell.status().get("running"), 60, "the restarted service")
        assert shell.run(f"{token}\n{stop_call}").returncode == 0
        service.communicate(timeout=60)
        assert service.returncode == 0
    finally:
        if service.poll() is None:
            stop(service)
    # "for one run, any free port; see api_url in `status`"
    assert "--api-port 0" in one_run
    once = shell.start(one_run)
    try:
        url = wait_until(lambda: shell.status().get("api_url"), 60, "the one-run API")
        assert not str(url).endswith(f":{port}")
    finally:
        stop(once)


def test_the_systemd_commands_as_printed(tmp_path: Path) -> None:
    units = tmp_path / "etc-systemd-system"
    units.mkdir()
    shell = Shell(tmp_path, {"/etc/systemd/system": str(units)})
    block = block_after("**systemd.** The unit files ship inside the package")
    for printed in command_lines(block):
        if printed.startswith("sudo -u pywats pywats-client --instance station1 config init"):
            printed += " --non-interactive --server-url http://127.0.0.1:9 --api-token x"
        result = shell.run(printed)
        assert result.returncode == 0, f"{printed}\n{result.stderr}"
    written = sorted(p.name for p in units.iterdir())
    assert written == ["pywats-client-once@.service", "pywats-client-once@.timer",
                       "pywats-client@.service"]
    service = (units / "pywats-client@.service").read_text()
    assert re.search(rf"^ExecStart={re.escape(str(BIN))}/pywats-client --instance %i start$",
                     service, re.MULTILINE), service
    recorded = shell.calls.read_text()
    assert "systemctl enable --now pywats-client@station1" in recorded
    assert (tmp_path / "data" / "station1" / "config.json").exists()
    if shutil.which("systemd-analyze"):
        verify = subprocess.run(
            ["systemd-analyze", "verify", str(units / "pywats-client@.service")],
            capture_output=True, text=True, timeout=60, check=False)
        assert "Unknown" not in verify.stderr and "Invalid" not in verify.stderr, verify.stderr


def test_the_cron_line_as_printed(tmp_path: Path, receiver: Receiver) -> None:
    cron = next(line for line in README.read_text(encoding="utf-8").splitlines()
                if line.startswith("*/5 * * * * "))
    command = cron.removeprefix("*/5 * * * * ")
    shell = Shell(tmp_path, {"/opt/pywats/bin/pywats-client": str(BIN / "pywats-client"),
                             "/var/log/pywats-once.log": str(tmp_path / "once.log")})
    watch = tmp_path / "watch"
    watch.mkdir()
    for setup in (f"pywats-client --instance station1 config init --non-interactive "
                  f"--server-url {receiver.url} --api-token {TOKEN}",
                  f"pywats-client --instance station1 config add-watch-folder {watch}",
                  "pywats-client --instance station1 config set queue.settle_time 0"):
        assert shell.run(setup).returncode == 0, setup
    (watch / "uut.json").write_text(json.dumps(wsjf_report(7)))
    result = shell.run(command)
    assert result.returncode == 0, (tmp_path / "once.log").read_text()
    assert len(receiver.stored_ids()) == 1
    assert "uploaded 1" in (tmp_path / "once.log").read_text()

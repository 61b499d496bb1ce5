"""The systemd units: shipped inside the package and printed by `pywats-client systemd-unit`,
accepted by `systemd-analyze verify`, hardened to an exposure of at most 3.0, every setting
explained by a comment, and a configuration error (exit 2) not restarted forever."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pywats_client.cli.systemd_unit import ONCE, SERVICE, TEMPLATE_EXECUTABLE, TIMER, UNITS

REPO = Path(__file__).resolve().parents[1]
PACKAGED = REPO / "pywats_client" / "data" / "systemd"
MAX_EXPOSURE = 3.0
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    ANALYZE is None, reason="systemd-analyze is not installed here (apt install systemd)")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pywats_client", *args], capture_output=True,
                          text=True, timeout=60, check=False, cwd=REPO)


def settings(text: str) -> dict[str, dict[str, list[str]]]:
    """section -> key -> values, of a unit file's text; asserts each setting has a comment."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    previous = ""
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
        elif line.strip() and not line.startswith("#"):
            assert current is not None, f"line {number} outside a section"
            assert previous.startswith("#"), f"line {number} ({line}) has no comment above it"
            key, _, value = line.partition("=")
            current.setdefault(key, []).append(value)
        previous = line
    return sections


@pytest.fixture
def units(tmp_path: Path) -> Path:
    """The units as `systemd-unit` prints them, named for instance station1, ExecStart running
    a pywats-client that exists (verify checks that it does)."""
    executable = Path(sys.prefix) / "bin" / "pywats-client"
    if not os.access(executable, os.X_OK):
        executable = Path(shutil.which("true") or "/bin/true")
    folder = tmp_path / "units"
    folder.mkdir()
    for name, option in ((SERVICE, []), (ONCE, ["--once"]), (TIMER, ["--timer"])):
        printed = cli("systemd-unit", *option, "--exec", str(executable))
        assert printed.returncode == 0, printed.stderr
        (folder / name.replace("@.", "@station1.")).write_text(printed.stdout)
    return folder


def test_the_units_are_package_data_and_scripts_links_to_the_same_files() -> None:
    for name in UNITS:
        assert (PACKAGED / name).is_file(), name
        in_scripts = REPO / "scripts" / name
        assert in_scripts.is_symlink(), f"scripts/{name} must link to the packaged copy"
        assert in_scripts.resolve() == (PACKAGED / name).resolve()


@pytest.mark.parametrize(("options", "name"), [([], SERVICE), (["--once"], ONCE),
                                               (["--timer"], TIMER)])
def test_systemd_unit_prints_the_packaged_unit_with_this_installation_s_executable(
        options: list[str], name: str) -> None:
    printed = cli("systemd-unit", *options, "--exec", "/srv/venv/bin/pywats-client")
    assert printed.returncode == 0, printed.stderr
    shipped = (PACKAGED / name).read_text()
    assert printed.stdout == shipped.replace(TEMPLATE_EXECUTABLE, "/srv/venv/bin/pywats-client")
    if name != TIMER:
        assert f"ExecStart={TEMPLATE_EXECUTABLE} " in shipped
        default = cli("systemd-unit", *options)
        here = Path(sys.prefix) / "bin" / "pywats-client"
        expected = str(here) if os.access(here, os.X_OK) else TEMPLATE_EXECUTABLE
        assert f"ExecStart={expected} --instance %i start" in default.stdout


def test_systemd_unit_refuses_two_units_at_once() -> None:
    both = cli("systemd-unit", "--once", "--timer")
    assert both.returncode == 2
    assert "not allowed with argument" in both.stderr


def test_the_command_module_imports_nothing_heavy() -> None:
    probe = subprocess.run(
        [sys.executable, "-c", "import sys, pywats_client.cli.main, "
         "pywats_client.cli.systemd_unit; print(sorted(m for m in ('requests', 'cryptography', "
         "'watchdog', 'urllib3') if m in sys.modules))"],
        capture_output=True, text=True, timeout=60, check=True, cwd=REPO)
    assert probe.stdout.strip() == "[]"


def test_every_setting_is_commented_and_exit_code_2_is_not_restarted() -> None:
    service = settings((PACKAGED / SERVICE).read_text())["Service"]
    assert service["RestartPreventExitStatus"] == ["2"]
    assert service["Restart"] == ["on-failure"]
    once = settings((PACKAGED / ONCE).read_text())["Service"]
    assert once["SuccessExitStatus"] == ["3"]  # unchanged: offline is not a failed run
    settings((PACKAGED / TIMER).read_text())
    for unit in (service, once):
        assert "LogsDirectory" not in unit, "nothing writes to /var/log/pywats"
        assert unit["UMask"] == ["0077"]
        assert unit["CapabilityBoundingSet"] == [""]
        assert unit["SystemCallFilter"] == ["@system-service"]
        for key in ("SystemCallArchitectures", "RestrictNamespaces", "LockPersonality",
                    "RestrictRealtime", "RestrictSUIDSGID", "ProtectKernelLogs",
                    "ProtectHostname", "ProtectProc"):
            assert key in unit, key


@needs_analyze
def test_systemd_analyze_verify_accepts_every_unit(units: Path) -> None:
    assert ANALYZE is not None
    names = sorted(str(p) for p in units.iterdir())
    result = subprocess.run([ANALYZE, "verify", *names], capture_output=True, text=True,
                            timeout=120, check=False)
    # verify exits 0 even for an unknown key; it says so on stderr, which must stay empty.
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""


@needs_analyze
@pytest.mark.parametrize("name", [SERVICE, ONCE])
def test_the_exposure_is_at_most_three(units: Path, name: str) -> None:
    assert ANALYZE is not None
    unit = units / name.replace("@.", "@station1.")
    result = subprocess.run([ANALYZE, "security", "--offline=yes", str(unit)],
                            capture_output=True, text=True, timeout=120, check=False)
    found = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", result.stdout)
    assert found, f"no exposure figure in the output:\n{result.stdout}{result.stderr}"
    assert float(found.group(1)) <= MAX_EXPOSURE, result.stdout


@needs_analyze
def test_the_exposure_check_would_catch_an_unhardened_unit(units: Path) -> None:
    # The figure parsed above really moves: the same unit without its hardening scores high.
    assert ANALYZE is not None
    unit = units / SERVICE.replace("@.", "@station1.")
    bare = [line for line in unit.read_text().splitlines()
            if line.startswith(("[", "#", "ExecStart", "Type", "User", "Description"))]
    unit.write_text("\n".join(bare) + "\n")
    result = subprocess.run([ANALYZE, "security", "--offline=yes", str(unit)],
                            capture_output=True, text=True, timeout=120, check=False)
    found = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", result.stdout)
    assert found and float(found.group(1)) > MAX_EXPOSURE

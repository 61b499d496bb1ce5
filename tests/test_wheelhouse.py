"""The offline bundle: scripts/build-wheelhouse packs it, install.sh installs it with no index
reachable, checks what it installs, and a second run upgrades in place keeping the queue."""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

from pywats_client import __version__
from pywats_client.http.receiver import Receiver
from tests.conftest import TOKEN
from tests.station import REPO, wsjf_report

BUILD = REPO / "scripts" / "build-wheelhouse"
INSTALL = REPO / "scripts" / "install.sh"
PYTHON = f"{sys.version_info[0]}.{sys.version_info[1]}"
INDEX_UNREACHABLE = 3  # build-wheelhouse's exit code when pip cannot use the index


def this_target() -> str:
    """This Python's platform as pip (and install.sh) name it."""
    machine = platform.machine()
    if sys.maxsize <= 2**32 and machine == "aarch64":
        machine = "armv7l"  # 32-bit userland on a 64-bit kernel
    return f"linux_{machine}"


def load_builder() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("build_wheelhouse", str(BUILD))
    spec = importlib.util.spec_from_loader("build_wheelhouse", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a station: none of this checkout's pip, Python or client settings."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PIP_", "PYTHON", "PYWATS_", "VIRTUAL_ENV"))}
    env.update(extra)
    return env


# No package index: a closed port, and no pip.conf with extra indexes or find-links.
OFFLINE = {"PIP_NO_INDEX": "1", "PIP_INDEX_URL": "http://127.0.0.1:9/",
           "PIP_CONFIG_FILE": os.devnull}


def run(*cmd: str | Path, cwd: Path, env: dict[str, str] | None = None,
        timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=env or clean_env(),
                          capture_output=True, text=True, timeout=timeout, check=False)


@dataclass(frozen=True)
class Bundle:
    tarball: Path
    output: str


def build_bundle(target: str, out: Path) -> Bundle:
    result = run(sys.executable, BUILD, "--target", target, "--python", PYTHON, "--out", out,
                 cwd=out, env=clean_env(**{k: v for k, v in os.environ.items()
                                           if k.startswith("PIP_")}))
    if result.returncode == INDEX_UNREACHABLE:
        pytest.skip(f"the package index is not reachable: {result.stderr.strip()[-300:]}")
    assert result.returncode == 0, result.stdout + result.stderr
    tarball = Path(result.stdout.strip().splitlines()[-1])
    return Bundle(tarball, result.stdout + result.stderr)


@pytest.fixture(scope="session")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    """A bundle for this machine, built once per test session (the download is the slow part)."""
    target = this_target()
    if target not in ("linux_x86_64", "linux_aarch64", "linux_armv7l"):
        pytest.skip(f"no bundle target for this machine ({target})")
    if PYTHON not in load_builder().PYTHONS:
        pytest.skip(f"build-wheelhouse has no --python {PYTHON}")
    return build_bundle(target, tmp_path_factory.mktemp("bundle"))


def unpack(tarball: Path, into: Path) -> Path:
    with tarfile.open(tarball) as archive:
        if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12 / 3.11.4
            archive.extractall(into, filter="data")
        else:
            archive.extractall(into)  # our own tarball, from this test session
    (top,) = into.iterdir()
    return top


def rewrite_checksums(folder: Path) -> None:
    lines = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(folder).as_posix()}"
             for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "SHA256SUMS"]
    (folder / "SHA256SUMS").write_text("\n".join(lines) + "\n")


def fake_bundle(folder: Path, **values: str) -> Path:
    """A bundle without real wheels, for install.sh's checks that come before pip."""
    folder.mkdir(parents=True)
    shutil.copy2(INSTALL, folder / "install.sh")
    (folder / "wheels").mkdir()
    (folder / "wheels" / "pywats_client-0.0.0-py3-none-any.whl").write_bytes(b"not a wheel")
    (folder / "requirements.txt").write_text("pywats-client==0.0.0\n")
    env = {"VERSION": "0.0.0", "TARGET": this_target(), "PYTHON": PYTHON,
           "SYSTEM_PACKAGES": "", **values}
    (folder / "bundle.env").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    rewrite_checksums(folder)
    return folder


def install(folder: Path, prefix: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return run("sh", folder / "install.sh", "--prefix", prefix, "--python", sys.executable,
               *options, cwd=folder.parent, env=clean_env(**OFFLINE))


# -- the bundle ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_bundle_holds_every_wheel_checksums_and_the_installer(
        bundle: Bundle, tmp_path: Path) -> None:
    target = this_target()
    assert bundle.tarball.name == f"pywats-client-{__version__}-{target}-py{PYTHON}.tar.gz"
    with tarfile.open(bundle.tarball) as archive:
        modes = {m.name.split("/", 1)[-1]: m.mode for m in archive.getmembers() if m.isfile()}
    assert modes["install.sh"] == 0o755
    folder = unpack(bundle.tarball, tmp_path)
    assert folder.name == bundle.tarball.name.removesuffix(".tar.gz")
    pins = (folder / "requirements.txt").read_text().split()
    assert pins[0] == f"pywats-client=={__version__}"
    names = {pin.split("==")[0] for pin in pins}
    assert {"requests", "watchdog", "cryptography", "urllib3", "idna", "certifi"} <= names
    wheels = sorted(p.name for p in (folder / "wheels").iterdir())
    assert len(wheels) == len(pins)
    arch = target.removeprefix("linux_")
    for wheel in wheels:
        platform_tag = wheel.removesuffix(".whl").split("-")[-1]
        assert platform_tag == "any" or arch in platform_tag, wheel
        assert "musllinux" not in platform_tag, wheel
    assert f"PYTHON={PYTHON}" in (folder / "bundle.env").read_text()
    assert "SYSTEM_PACKAGES=\n" in (folder / "bundle.env").read_text()
    assert (folder / "LICENSE").read_text() == (REPO / "LICENSE").read_text()
    # The units travel inside the project wheel, where install.sh takes them from: one copy.
    assert not list(folder.glob("pywats-client*@.*"))
    project = next((folder / "wheels").glob("pywats_client-*.whl"))
    with zipfile.ZipFile(project) as archive:
        assert "pywats_client/data/systemd/pywats-client@.service" in archive.namelist()
    listed = {line.split("  ", 1)[1] for line in (folder / "SHA256SUMS").read_text().splitlines()}
    files = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert listed == files - {"SHA256SUMS"}
    checked = run("sha256sum", "-c", "SHA256SUMS", cwd=folder)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.slow
def test_offline_install_then_the_demo_then_an_upgrade_in_place(
        bundle: Bundle, tmp_path: Path, receiver: Receiver) -> None:
    folder = unpack(bundle.tarball, tmp_path / "copy")
    prefix = tmp_path / "venv"
    installed = install(folder, prefix, "--instance", "demo")
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert "checksums OK" in installed.stdout
    assert f"Next: {prefix}/bin/pywats-client --instance demo config init" in installed.stdout

    cli = prefix / "bin" / "pywats-client"
    away = tmp_path / "elsewhere"  # not the checkout: `python -m` must find the installed copy
    away.mkdir()
    assert run(cli, "--version", cwd=away).stdout.strip() == f"pywats-client {__version__}"
    as_module = run(prefix / "bin" / "python", "-m", "pywats_client", "--version", cwd=away)
    assert as_module.stdout.strip() == f"pywats-client {__version__}"
    where = run(prefix / "bin" / "python", "-c", "import pywats_client; "
                "print(pywats_client.__file__)", cwd=away).stdout.strip()
    assert where.startswith(str(prefix)), where

    # The demo: one WSJF file through the installed client to the receiver.
    data, watch = tmp_path / "data", tmp_path / "watch"
    watch.mkdir()

    def client(*args: str) -> subprocess.CompletedProcess[str]:
        result = run(cli, "--data-dir", data, "--instance", "demo", *args, cwd=away)
        assert result.returncode == 0, f"{args}: {result.stdout}{result.stderr}"
        return result

    client("config", "init", "--non-interactive", "--server-url", receiver.url,
           "--api-token", TOKEN, "--station-name", "bundle-test")
    client("config", "add-watch-folder", str(watch))
    client("config", "set", "queue.settle_time", "0.1")
    report_id = str(uuid.uuid4())
    (watch / "uut.json").write_text(json.dumps(wsjf_report(1, report_id=report_id)))
    once = client("start", "--once")
    assert "uploaded 1" in once.stdout, once.stdout
    assert receiver.stored_ids() == {report_id}
    assert (watch / "done" / "uut.json").exists()
    checkup = json.loads(client("doctor", "--json").stdout)
    assert checkup["needs_fixing"] is False, checkup

    # Upgrade in place: install.sh again over the same venv; the instance data stays.
    completed = data / "demo" / "queue" / "completed"
    queued = sorted(completed.iterdir())
    options = ["--instance", "demo"]
    if os.geteuid() == 0 and not Path("/run/systemd/system").exists():
        options.append("--systemd")  # only says what it would do: no systemd here
    again = install(folder, prefix, *options)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"upgrading the existing venv {prefix} in place" in again.stdout
    if "--systemd" in options:
        assert "systemd is not running here" in again.stdout
        assert "systemctl daemon-reload" in again.stdout
        assert (f"write /etc/systemd/system/pywats-client-once@.timer from "
                f"'{prefix}/bin/pywats-client systemd-unit --timer'") in again.stdout
    assert sorted(completed.iterdir()) == queued
    assert run(cli, "--version", cwd=away).returncode == 0


@pytest.mark.slow
def test_a_damaged_bundle_is_refused(bundle: Bundle, tmp_path: Path) -> None:
    folder = unpack(bundle.tarball, tmp_path / "copy")
    wheel = next((folder / "wheels").glob("requests-*.whl"))
    data = bytearray(wheel.read_bytes())
    data[100] ^= 0xFF
    wheel.write_bytes(bytes(data))
    result = install(folder, tmp_path / "venv")
    assert result.returncode != 0
    assert f"wheels/{wheel.name}: FAILED" in result.stderr
    assert "the bundle is damaged" in result.stderr
    assert not (tmp_path / "venv").exists()


@pytest.mark.slow
def test_a_32_bit_arm_bundle_leaves_cryptography_to_the_system(tmp_path: Path) -> None:
    if PYTHON not in load_builder().PYTHONS:
        pytest.skip(f"build-wheelhouse has no --python {PYTHON}")
    bundle = build_bundle("linux_armv7l", tmp_path)
    assert "NOTE: cryptography" in bundle.output
    assert "sudo apt install python3-cryptography" in bundle.output
    assert "--system-site-packages" in bundle.output
    assert "linux_aarch64" in bundle.output  # the simpler way: a 64-bit OS
    folder = unpack(bundle.tarball, tmp_path / "copy")
    wheels = [p.name for p in (folder / "wheels").iterdir()]
    assert not [w for w in wheels if w.startswith(("cryptography-", "cffi-"))]
    assert [w for w in wheels if w.startswith("watchdog-")]
    assert "SYSTEM_PACKAGES=cryptography>=" in (folder / "bundle.env").read_text()
    assert "python3-cryptography" in (folder / "README.txt").read_text()
    if this_target() != "linux_armv7l":
        refused = install(folder, tmp_path / "venv")
        assert refused.returncode != 0
        assert f"this bundle is for linux_armv7l but this Python runs as {this_target()}" in (
            refused.stderr)


# -- install.sh's checks (no download needed) ----------------------------------------------------


def test_install_refuses_another_python_version(tmp_path: Path) -> None:
    folder = fake_bundle(tmp_path / "bundle", PYTHON="3.99")
    result = install(folder, tmp_path / "venv")
    assert result.returncode == 1
    assert f"this bundle is for Python 3.99 but {sys.executable} is Python {PYTHON}" in (
        result.stderr)
    assert "build-wheelhouse --python" in result.stderr
    assert not (tmp_path / "venv").exists()


def test_install_refuses_another_platform(tmp_path: Path) -> None:
    other = "linux_aarch64" if this_target() != "linux_aarch64" else "linux_x86_64"
    folder = fake_bundle(tmp_path / "bundle", TARGET=other)
    result = install(folder, tmp_path / "venv")
    assert result.returncode == 1
    assert f"this bundle is for {other} but this Python runs as {this_target()}" in (
        result.stderr)


def test_install_refuses_wheels_the_checksums_do_not_cover(tmp_path: Path) -> None:
    folder = fake_bundle(tmp_path / "bundle")
    (folder / "wheels" / "evil-1.0-py3-none-any.whl").write_bytes(b"")
    result = install(folder, tmp_path / "venv")
    assert result.returncode == 1
    assert "wheels/evil-1.0-py3-none-any.whl is not listed in SHA256SUMS" in result.stderr


def test_install_checks_the_system_packages_a_bundle_leaves_out(tmp_path: Path) -> None:
    absent = fake_bundle(tmp_path / "absent", SYSTEM_PACKAGES="no-such-package>=1.0")
    result = install(absent, tmp_path / "venv")
    assert result.returncode == 1
    assert "no-such-package is not bundled" in result.stderr
    assert "sudo apt install python3-no-such-package" in result.stderr
    old = fake_bundle(tmp_path / "old", SYSTEM_PACKAGES="cryptography>=999.0")
    result = install(old, tmp_path / "venv")
    assert result.returncode == 1
    assert re.search(r"the system's cryptography is [0-9.]+, but pywats-client needs 999\.0",
                     result.stderr), result.stderr
    assert not (tmp_path / "venv").exists()


def test_install_explains_its_options(tmp_path: Path) -> None:
    folder = fake_bundle(tmp_path / "bundle")
    assert "--prefix VENV_DIR" in run("sh", folder / "install.sh", "--help", cwd=tmp_path).stdout
    wrong = run("sh", folder / "install.sh", "--frobnicate", cwd=tmp_path)
    assert wrong.returncode == 1 and "unknown option '--frobnicate'" in wrong.stderr
    bad_name = run("sh", folder / "install.sh", "--instance", "../etc", cwd=tmp_path)
    assert bad_name.returncode == 1 and "invalid instance name" in bad_name.stderr


def test_systemd_units_need_root(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        folder = fake_bundle(tmp_path / "bundle")
        result = install(folder, tmp_path / "venv", "--instance", "a", "--systemd")
    else:  # the check is for users other than root: run it as one
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser: no other user to try it as")
        shared = Path(tempfile.mkdtemp(prefix="pywats-install-"))
        try:
            shared.chmod(0o755)
            folder = fake_bundle(shared / "bundle")
            result = run("runuser", "-u", "nobody", "--", "sh", folder / "install.sh",
                         "--prefix", shared / "venv", "--instance", "a", "--systemd",
                         cwd=shared, env=clean_env(**OFFLINE))
            assert not (shared / "venv").exists()
        finally:
            shutil.rmtree(shared, ignore_errors=True)
    assert result.returncode == 1 and "run it as root" in result.stderr, result.stderr


# -- build-wheelhouse's arguments and tags -------------------------------------------------------


def test_build_wheelhouse_rejects_unknown_targets_and_versions(tmp_path: Path) -> None:
    for args in (["--target", "windows_amd64", "--python", "3.11"],
                 ["--target", "linux_x86_64", "--python", "2.7"],
                 ["--target", "linux_x86_64", "--python", "3.11", "--glibc", "3.1"]):
        result = run(sys.executable, BUILD, *args, "--out", tmp_path, cwd=tmp_path)
        assert result.returncode == 2, (args, result.stderr)
    assert list(tmp_path.iterdir()) == []


def test_platform_tags_cover_the_manylinux_levels_of_a_target() -> None:
    builder = load_builder()
    tags = builder.platform_tags("linux_aarch64", "2.28")
    assert tags[0] == "manylinux_2_28_aarch64"
    assert {"manylinux_2_17_aarch64", "manylinux2014_aarch64"} <= set(tags)
    assert all(tag.endswith("_aarch64") for tag in tags)
    assert "linux_armv7l" in builder.platform_tags("linux_armv7l", "2.31")
    assert "manylinux1_x86_64" in builder.platform_tags("linux_x86_64", "2.17")

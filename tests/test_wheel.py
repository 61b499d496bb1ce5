"""The wheel `pip wheel .` makes: pure Python, the whole package with every built-in converter,
py.typed and the systemd units, the MIT licence, nothing else, and metadata naming exactly the
three runtime dependencies, the Python versions and the project's addresses."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from email.parser import HeaderParser
from pathlib import Path

import pytest

from pywats_client import __version__
from pywats_client.converters import BUILTIN_CONVERTERS
from tests.station import REPO

RUNTIME = {"requests", "watchdog", "cryptography"}
# pip says these when it cannot fetch the build backend (setuptools) from the index.
OFFLINE_SIGNS = ("NewConnectionError", "Max retries exceeded", "Temporary failure in name "
                 "resolution", "No matching distribution found for setuptools")

pytestmark = pytest.mark.slow


def build_wheel(dest: Path, source: Path) -> Path:
    """`pip wheel --no-deps` on a copy of the checkout, made in `source` (so the checkout gets
    no build/ or egg-info, and the package is compared with exactly what was built)."""
    source.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md", "LICENSE", "MANIFEST.in"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(REPO / "pywats_client", source / "pywats_client",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    result = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "wheel", "--no-deps",
         "--wheel-dir", str(dest), str(source)],
        capture_output=True, text=True, check=False)
    output = result.stdout + result.stderr
    if result.returncode != 0 and any(sign in output for sign in OFFLINE_SIGNS):
        pytest.skip("building the wheel needs setuptools from the package index, which is not "
                    "reachable from here")
    assert result.returncode == 0, output
    wheels = list(dest.glob("*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("build") / "source"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory, source: Path) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"), source)


def entries(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


def dist_info(wheel: Path, name: str) -> str:
    with zipfile.ZipFile(wheel) as archive:
        return archive.read(f"pywats_client-{__version__}.dist-info/{name}").decode("utf-8")


def test_the_wheel_is_pure_python(wheel: Path) -> None:
    assert wheel.name == f"pywats_client-{__version__}-py3-none-any.whl"
    assert "Root-Is-Purelib: true" in dist_info(wheel, "WHEEL")
    compiled = [n for n in entries(wheel) if n.endswith((".so", ".pyd", ".c", ".pyc"))]
    assert compiled == []


def test_the_wheel_carries_every_builtin_converter_and_py_typed(wheel: Path) -> None:
    names = set(entries(wheel))
    for converter, target in BUILTIN_CONVERTERS.items():
        module = target.partition(":")[0]
        assert module.replace(".", "/") + ".py" in names, f"{converter} ({module}) is missing"
    assert "pywats_client/py.typed" in names


def test_the_wheel_holds_the_package_and_nothing_else(wheel: Path, source: Path) -> None:
    package = source / "pywats_client"
    expected = {
        "pywats_client/" + path.relative_to(package).as_posix()
        for path in package.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }
    names = entries(wheel)
    packaged = {n for n in names if n.startswith("pywats_client/")}
    # Every module and data file of the package, e.g. a subpackage missing its __init__.py
    # or a template file without a package_data entry would be lost here.
    assert expected - packaged == set()
    others = [n for n in names
              if not n.startswith(("pywats_client/", f"pywats_client-{__version__}.dist-info/"))]
    assert others == [], "tests, scripts or the converter kit must not be in the wheel"
    for unit in ("pywats-client@.service", "pywats-client-once@.service",
                 "pywats-client-once@.timer"):
        assert f"pywats_client/data/systemd/{unit}" in names, unit


def test_the_wheel_carries_the_mit_licence(wheel: Path) -> None:
    info = f"pywats_client-{__version__}.dist-info/"
    licences = [n for n in entries(wheel) if n.startswith(info) and "LICENSE" in n]
    assert licences, "LICENSE is not in the wheel's dist-info"
    with zipfile.ZipFile(wheel) as archive:
        text = archive.read(licences[0]).decode("utf-8")
    assert text == (REPO / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License\n\nCopyright (c) 2026 pywats-client contributors\n")
    metadata = HeaderParser().parsestr(dist_info(wheel, "METADATA"))
    assert metadata["License"] == "MIT"
    classifiers = metadata.get_all("Classifier") or []
    assert "License :: OSI Approved :: MIT License" in classifiers
    for minor in (10, 11, 12, 13):
        assert f"Programming Language :: Python :: 3.{minor}" in classifiers
    urls = metadata.get_all("Project-URL") or []
    assert any(u.startswith("Documentation, https://") for u in urls), urls


def test_the_metadata_lists_exactly_the_three_runtime_dependencies(wheel: Path) -> None:
    metadata = HeaderParser().parsestr(dist_info(wheel, "METADATA"))
    assert metadata["Name"] == "pywats-client"
    assert metadata["Version"] == __version__
    assert metadata["Requires-Python"] == ">=3.10"
    unconditional, conditional = set(), []
    for requirement in metadata.get_all("Requires-Dist") or []:
        spec, _, marker = requirement.partition(";")
        name = re.match(r"[A-Za-z0-9._-]+", spec.strip())
        assert name is not None, requirement
        if marker.strip():
            conditional.append(marker.strip())
        else:
            unconditional.add(name.group(0).lower())
    assert unconditional == RUNTIME
    assert conditional, "the test extra is expected in the metadata"
    assert all(marker.replace("'", '"') == 'extra == "test"' for marker in conditional)


def test_the_console_script_is_declared(wheel: Path) -> None:
    entry_points = dist_info(wheel, "entry_points.txt")
    assert "[console_scripts]" in entry_points
    assert re.search(r"^pywats-client\s*=\s*pywats_client\.cli:main$", entry_points, re.M)

"""The source distribution can run its own tests: it carries the tests whole (conftest.py,
helpers, fixtures), the example converters and scripts they use, the documents and the
licence, and a suite run from the unpacked sdist imports the sdist's own package."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from pywats_client import __version__

REPO = Path(__file__).resolve().parents[1]
# What a checkout has that is not the project: never copied into the build.
NOT_SOURCE = (".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "*.pyc",
              ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis", "bench-results")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def unpacked(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("setuptools is not installed in this environment: no sdist can be built")
    source = tmp_path_factory.mktemp("source") / "pywats-client"
    shutil.copytree(REPO, source, symlinks=True, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    out = tmp_path_factory.mktemp("sdist")
    built = subprocess.run(
        [sys.executable, "-c", "import sys; from setuptools import build_meta; "
         "print(build_meta.build_sdist(sys.argv[1]))", str(out)],
        cwd=source, capture_output=True, text=True, timeout=300, check=False)
    assert built.returncode == 0, built.stdout + built.stderr
    tarball = out / built.stdout.strip().splitlines()[-1]
    assert tarball.name == f"pywats-client-{__version__}.tar.gz"
    into = tmp_path_factory.mktemp("unpacked")
    with tarfile.open(tarball) as archive:
        if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12 / 3.11.4
            archive.extractall(into, filter="data")
        else:
            archive.extractall(into)  # our own tarball, built just above
    return into / f"pywats-client-{__version__}"


def test_the_sdist_carries_what_its_tests_need(unpacked: Path) -> None:
    for name in ("LICENSE", "README.md", "setup.cfg", "pyproject.toml", "MANIFEST.in",
                 "tests/conftest.py", "tests/station.py", "tests/fakes.py",
                 "converters/csv_example.py", "scripts/install.sh", "scripts/build-wheelhouse",
                 "docs/RELIABILITY.md", "pywats_client/data/systemd/pywats-client@.service"):
        assert (unpacked / name).is_file(), f"{name} is missing from the sdist"
    fixtures = REPO / "tests" / "fixtures"
    expected = {p.relative_to(REPO).as_posix() for p in fixtures.rglob("*") if p.is_file()}
    shipped = {p.relative_to(unpacked).as_posix()
               for p in (unpacked / "tests" / "fixtures").rglob("*") if p.is_file()}
    assert expected - shipped == set()
    tests = {p.name for p in (REPO / "tests").glob("test_*.py")}
    assert tests <= {p.name for p in (unpacked / "tests").glob("test_*.py")}
    assert not list(unpacked.rglob("__pycache__")) and not list(unpacked.rglob("*.pyc"))
    assert not (unpacked / ".venv").exists()


def test_the_unpacked_sdist_runs_its_own_tests_on_its_own_package(unpacked: Path) -> None:
    where = subprocess.run([sys.executable, "-c", "import pywats_client; "
                            "print(pywats_client.__file__)"], cwd=unpacked, capture_output=True,
                           text=True, timeout=60, check=True)
    assert where.stdout.strip().startswith(str(unpacked))
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_paths.py",
         "tests/test_config.py", "tests/test_logsetup.py"],
        cwd=unpacked, capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and " failed" not in run.stdout

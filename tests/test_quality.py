"""The code base stays clean: ruff, mypy, the documented config reference, the layering."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.station import REPO


def _tool(name: str) -> str:
    path = Path(sys.executable).parent / name
    found = str(path) if path.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[test]'")
    return found


def test_ruff_is_clean() -> None:
    result = subprocess.run([_tool("ruff"), "check", "."], cwd=REPO, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_is_clean() -> None:
    result = subprocess.run([_tool("mypy")], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_readme_config_reference_matches_the_schema() -> None:
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import config_reference
    finally:
        sys.path.remove(str(REPO / "scripts"))
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert config_reference.updated(readme) == readme, (
        "README.md's config reference is stale: run python scripts/config_reference.py --update"
    )


# What each part of the package may import, by its first name under pywats_client/. The
# leaves import nothing from the package; the report rules and the converters see only each
# other (the converter context, for type checking) and errors; the queue sees its settings;
# the service sees everything below it; the HTTP servers see only the queue, errors and what
# the server's answers mean (outcomes); only the fronts (the CLI, and the library API in core/
# and services/) see the service, and nothing but the CLI imports the CLI.
LEAVES = {"errors", "clock", "sdnotify", "outcomes"}
ALLOWED = {
    "paths": {"errors"},
    "fsutil": {"errors"},
    "logsetup": {"config"},
    "report": {"errors", "converters"},
    "converters": {"errors", "report"},
    "config": {"errors", "paths", "fsutil"},
    "queue": {"errors", "clock", "fsutil", "config"},
    "service": {"errors", "clock", "paths", "fsutil", "sdnotify", "config", "queue", "report",
                "converters", "outcomes"},
    "http": {"errors", "queue", "outcomes"},
}
FRONTS = {"cli", "core", "services", "__main__"}


def _package_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            parts = node.module.split(".")
            if parts[0] == "pywats_client" and len(parts) > 1:
                names.add(parts[1])
            elif parts == ["pywats_client"]:
                names.update(alias.name for alias in node.names if alias.name != "__version__")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "pywats_client" and len(parts) > 1:
                    names.add(parts[1])
    return names


def test_module_layering() -> None:
    package = REPO / "pywats_client"
    for path in package.rglob("*.py"):
        rel = path.relative_to(package)
        owner = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        imports = _package_imports(path) - {owner}
        if owner in LEAVES:
            assert not imports, f"{rel} is a leaf but imports {sorted(imports)}"
        elif owner in ALLOWED:
            extra = imports - ALLOWED[owner]
            assert not extra, f"{rel} may not import {sorted(extra)}"
        if owner not in FRONTS:
            assert not imports & FRONTS, f"{rel} imports a front: {sorted(imports & FRONTS)}"
        if owner not in ("cli", "__main__"):  # `python -m pywats_client` runs the CLI
            assert "cli" not in imports, f"{rel} imports the CLI"


def test_every_test_the_reliability_page_names_exists() -> None:
    """docs/RELIABILITY.md proves each promise by naming tests: each must be there."""
    text = (REPO / "docs" / "RELIABILITY.md").read_text(encoding="utf-8")
    missing = []
    for row in (line for line in text.splitlines() if line.startswith("| ")):
        current = None
        for ref in re.findall(r"`([^`]+)`", row.rsplit("|", 2)[-2]):
            target = ref.split()[0]
            if "::" in target:
                file, name = target.split("::", 1)
                current = file or current
            elif target.startswith(("tests/", "scripts/")):
                current, name = target, ""
            else:
                continue
            path = REPO / (current or "")
            if not path.exists():
                missing.append(current)
            elif name and not re.search(rf"^def {re.escape(name)}\b", path.read_text(),
                                        re.MULTILINE):
                missing.append(f"{current}::{name}")
    assert not missing, f"docs/RELIABILITY.md names tests that do not exist: {missing}"


MAX_MODULE_LINES = 800


def test_no_module_passes_800_lines() -> None:
    """A module is read in one sitting: none of the package or the scripts passes the limit."""
    too_long = {}
    for path in [*(REPO / "pywats_client").rglob("*.py"), *(REPO / "scripts").glob("*.py")]:
        rel = path.relative_to(REPO).as_posix()
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_MODULE_LINES:
            too_long[rel] = lines
    assert not too_long, f"modules over {MAX_MODULE_LINES} lines, split them: {too_long}"

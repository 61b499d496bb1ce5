"""The contract every built-in converter keeps, checked against every real sample file.

For each sample whose format is known, auto-detection picks its converter (and no other
converter is as sure); that converter's reports are valid and identical on a second run; every
other converter refuses the file with a ConversionError — never another exception. Garbage
never gets anything but a ConversionError out of any converter.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pywats_client.converters import (
    BUILTIN_CONVERTERS,
    ConversionError,
    ConverterContext,
    ConverterRegistry,
)
from pywats_client.converters.base import HEAD_SIZE
from pywats_client.http.receiver import PROCESSES_LIST
from pywats_client.service.pipeline import convert_file
from tests.conftest import SAMPLES, needs_samples, samples_in

# Which converter owns which sample files (globs under ../shared/samples).
OWNERS: dict[str, tuple[str, ...]] = {
    "WATSStandardJsonConverter": ("wsjf/*.json",),
    "WATSStandardXMLConverter": ("wsxf/*.xml",),
    "WATSStandardTextConverter": ("wstf/*.txt",),
    "ATMLConverter": ("atml/*",),
    "KeysightI3070Converter": ("i3070/*",),
    "TeradyneICTConverter": ("teradyne_gr228x/*",),
    "TeradyneSpectrumICTConverter": ("teradyne_spectrum/*",),
    "SPEAConverter": ("spea/*",),
    "KlippelConverter": ("klippel/Log/*.txt",),
    "XJTAGConverter": ("xjtag/*.xjlog",),
}
# Every other sample (a workbook, the data files of a Klippel unit, TestStand's own XML report
# format) belongs to no converter on its own: every converter must refuse it.

CONVERTERS = [name for name in BUILTIN_CONVERTERS if name != "AIConverter"]


def _owned() -> list[tuple[str, Path]]:
    return [(name, path) for name, globs in OWNERS.items() for pattern in globs
            for path in samples_in(*pattern.rsplit("/", 1))]


def _all_samples() -> list[Path]:
    if not SAMPLES.is_dir():
        return []
    return sorted(p for p in SAMPLES.rglob("*") if p.is_file() and "_expected" not in p.parts
                  and p.name != "PROVENANCE.md")


def _id(path: Path) -> str:
    return str(path.relative_to(SAMPLES)) if SAMPLES in path.parents else path.name


OWNED = _owned()
OWNER_OF = {path: name for name, path in OWNED}


@pytest.fixture(scope="module")
def registry() -> ConverterRegistry:
    return ConverterRegistry()


def _head(path: Path) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(HEAD_SIZE)


@needs_samples
@pytest.mark.parametrize(("owner", "path"), OWNED, ids=[_id(p) for _, p in OWNED])
def test_auto_detection_picks_the_owner(registry: ConverterRegistry, owner: str,
                                        path: Path) -> None:
    if owner not in BUILTIN_CONVERTERS:
        pytest.skip(f"{owner} is not built in yet")
    head = _head(path)
    detection = registry.detect(path, head)
    assert detection.name == owner, detection.reason
    # Every other converter asked directly (the choice does not ask those that cannot win).
    best = registry.create(owner).detect(path, head)
    for name in CONVERTERS:
        if name != owner:
            assert registry.create(name).detect(path, head) < best, name


@needs_samples
@pytest.mark.parametrize(("owner", "path"), OWNED, ids=[_id(p) for _, p in OWNED])
def test_the_owner_converts_validly_and_deterministically(registry: ConverterRegistry,
                                                          owner: str, path: Path) -> None:
    if owner not in BUILTIN_CONVERTERS:
        pytest.skip(f"{owner} is not built in yet")
    # A station set up as the README says: the server's process names are known (here: the
    # bundled receiver's), and a default operation for formats that do not name one.
    processes = {p["name"]: p["code"] for p in PROCESSES_LIST}
    context = ConverterContext(station_name="contract-station", location="lab",
                               purpose="test", file_mtime=path.stat().st_mtime,
                               defaults={"process_code": 50}, processes=processes)
    first = convert_file(path, registry.create(owner), context)  # validates every report
    second = convert_file(path, registry.create(owner), context)
    assert first.reports, f"{owner} made no report from {path.name}"
    assert json.dumps(first.reports, sort_keys=True) == json.dumps(second.reports,
                                                                  sort_keys=True)
    assert len({r["id"] for r in first.reports}) == len(first.reports)


@needs_samples
@pytest.mark.parametrize("name", CONVERTERS)
def test_every_converter_refuses_files_it_does_not_own(registry: ConverterRegistry,
                                                       name: str) -> None:
    converter = registry.create(name)
    # A fully set-up station: a refusal must come from the format, not from a missing setting.
    context = ConverterContext(station_name="contract-station", defaults={"process_code": 50})
    for path in _all_samples():
        if OWNER_OF.get(path) == name:
            continue
        if name == "XJTAGConverter" and path.match("xjtag/*.xml"):
            continue  # an unpacked run log: reading it is allowed, not required
        with pytest.raises(ConversionError):
            converter.convert(path, context)


@settings(max_examples=25, deadline=2000,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=2048))
@pytest.mark.parametrize("name", CONVERTERS)
def test_garbage_only_ever_raises_conversion_errors(tmp_path: Path, name: str,
                                                    data: bytes) -> None:
    converter = ConverterRegistry().create(name)
    path = tmp_path / "garbage.bin"
    path.write_bytes(data)
    with contextlib.suppress(ConversionError):  # anything else fails the test
        converter.convert(path, ConverterContext())

"""What the converter tests share: a converter as a station runs it, finishing reports as the
service does, the checks their fuzz tests make, the damage those tests do to a good file, and
the real samples a converter must not claim as its own, and one fuzz target per converter."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pywats_client.converters import (
    ConversionError,
    Converter,
    ConverterContext,
    ReportValidationError,
)
from pywats_client.report.checks import finalize, validate
from pywats_client.report.model import ReportDict, to_json_bytes
from pywats_client.service.pipeline import convert_file
from tests.conftest import SAMPLES, sample


class AtStation:
    """A converter as one station runs it: `make` builds the converter, `values` are the
    station's settings as ConverterContext takes them (name, timezone, defaults...)."""

    def __init__(self, make: Callable[[], Converter], **values: Any) -> None:
        self.make = make
        self.values = values

    def context(self, path: Path | None = None, **arguments: Any) -> ConverterContext:
        """The context the service gives the converter for `path`: the station's settings,
        the folder's converter `arguments` and the file's mtime (none without a file)."""
        mtime = path.stat().st_mtime if path is not None and path.exists() else None
        return ConverterContext(arguments=arguments, file_mtime=mtime, **self.values)

    def convert(self, path: Path, **arguments: Any) -> list[dict[str, Any]]:
        """What the service does with the file: convert, finalise and validate every report."""
        return convert_file(path, self.make(), self.context(path, **arguments)).reports


class UnderTest:
    """A converter with the station context its tests imagine: `make_context(**changes)`
    varies that context, `reports_of(path)` converts as the service does (finalised and
    validated), `write(folder, text)` makes an ASCII file for it, and `needs_sample()` skips a
    test when the shared sample is absent."""

    def __init__(self, converter: Converter, sample: Path, file_name: str, **values: Any
                 ) -> None:
        self.converter = converter
        self.sample = sample
        self.file_name = file_name
        self.values = values
        self.context = self.make_context()

    def make_context(self, **changes: Any) -> ConverterContext:
        return ConverterContext(**{**self.values, **changes})

    def reports_of(self, path: Path, context: ConverterContext | None = None
                   ) -> list[dict[str, Any]]:
        return convert_file(path, self.converter,
                            self.context if context is None else context).reports

    def write(self, folder: Path, text: str, name: str = "") -> Path:
        path = folder / (name or self.file_name)
        path.write_bytes(text.encode("ascii"))
        return path

    def needs_sample(self) -> None:
        sample(self.sample)


def finish_like_the_service(result: Any, converter: str, context: ConverterContext, *,
                            steps_trusted: bool = False) -> list[dict[str, Any]]:
    """What the service does with what a converter returned — finalise (validate) each report
    and write it as JSON — raises nothing but a ConversionError. With `steps_trusted`, a
    report may be refused for a header value (a 300-character serial number), never for the
    step tree the converter built. Returns the finished reports."""
    finished = []
    for n, report in enumerate(result if isinstance(result, list) else [result]):
        try:
            out = finalize(report, context=context, converter_name=converter,
                           content_sha256="ab", index=n)
        except ReportValidationError as exc:
            assert not (steps_trusted and re.search(r"\broot[.\[]|'root'", str(exc))), exc
            continue
        to_json_bytes(out)
        finished.append(out)
    return finished


def convert_like_the_service(converter: Converter, path: Path, context: ConverterContext, *,
                             steps_trusted: bool = False) -> list[dict[str, Any]]:
    """Convert `path` and finish the reports as the service does (`finish_like_the_service`);
    a file the converter refuses must be refused with a ConversionError ([] then)."""
    try:
        result = converter.convert(path, context)
    except ConversionError:
        return []
    return finish_like_the_service(result, converter.name, context, steps_trusted=steps_trusted)


def convert_or_refuse(converter: Converter, path: Path, context: ConverterContext) -> None:
    """The check of a converter that returns a list: a damaged file is refused with a
    ConversionError, or gives at least one report, each a ReportDict that validates unless a
    header value breaks a server limit (a mutated serial number over 100 characters)."""
    try:
        reports = converter.convert(path, context)
    except ConversionError:
        return
    assert isinstance(reports, list) and reports
    for report in reports:
        assert isinstance(report, ReportDict)
        with contextlib.suppress(ReportValidationError):
            validate(report)


def refused_or_converted(convert: Callable[[Path], object], path: Path) -> None:
    """`convert(path)` (which finalises what it converts): anything but a ConversionError
    fails the test."""
    with contextlib.suppress(ConversionError):
        convert(path)


def spliced(data: bytes, position: int, replacement: bytes, width: int = 1) -> bytes:
    """`data` with the `width` bytes at `position` (wrapped to its length) replaced by
    `replacement`: how the fuzz tests damage a good file."""
    at = position % len(data)
    return data[:at] + replacement + data[at + width:]


def sample_files(besides: str | None = None) -> list[Path]:
    """Every file of ../shared/samples, sorted, but for those in its top folder `besides`
    (a converter's own samples); [] when the samples are absent."""
    if not SAMPLES.is_dir():
        return []
    return sorted(path for path in SAMPLES.rglob("*")
                  if path.is_file() and path.relative_to(SAMPLES).parts[0] != besides)


# Hypothesis settings of the converters' fuzz tests. tmp_path is only ever written into, never
# shared between examples, so a function-scoped fixture is fine.
FUZZ_SETTINGS: dict[str, Any] = {
    "deadline": 2000, "suppress_health_check": [HealthCheck.function_scoped_fixture]}


def check_like_the_service(converter: Converter, path: Path, context: ConverterContext) -> None:
    """The fuzz check of a converter whose step tree must always be valid: only a header
    value may make the service refuse a report."""
    convert_like_the_service(converter, path, context, steps_trusted=True)


class FuzzTarget:
    """One converter under fuzzing: bytes are written as a file called `name` and handed to
    `check(converter, path, context)`, which fails the test on anything but a ConversionError
    or a valid result."""

    def __init__(self, converter: Converter, name: str, context: ConverterContext, *,
                 check: Callable[[Converter, Path, ConverterContext], object] = convert_or_refuse
                 ) -> None:
        self.converter = converter
        self.name = name
        self.context = context
        self.check = check

    def __call__(self, folder: Path, data: bytes, name: str | None = None) -> None:
        path = folder / (name or self.name)
        path.write_bytes(data)
        self.check(self.converter, path, self.context)

    def garbage_test(self, *, examples: int = 150, max_size: int = 3000
                     ) -> Callable[[Path, bytes], None]:
        """The test every converter gets: random bytes are refused or converted, no other
        exception, never a hang (the deadline)."""

        @settings(max_examples=examples, **FUZZ_SETTINGS)
        @given(data=st.binary(max_size=max_size))
        def test(tmp_path: Path, data: bytes) -> None:
            self(tmp_path, data)

        return test

    def shuffled_test(self, pieces: list[str], *, joiner: str, max_size: int, examples: int
                      ) -> Callable[[Path], None]:
        """Files made of the format's own pieces (lines, entries) in any number and order,
        joined by `joiner`: refused or converted, no other exception."""

        @settings(max_examples=examples, **FUZZ_SETTINGS)
        @given(chosen=st.lists(st.sampled_from(pieces), max_size=max_size))
        def test(tmp_path: Path, chosen: list[str]) -> None:
            self(tmp_path, joiner.join(chosen).encode())

        return test

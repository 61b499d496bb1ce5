"""What the converter tests share: a converter as a station runs it, finishing reports as the
service does, the checks their fuzz tests make, the damage those tests do to a good file, and
the real samples a converter must not claim as its own."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pywats_client.converters import (
    ConversionError,
    Converter,
    ConverterContext,
    ReportValidationError,
)
from pywats_client.report.checks import finalize, validate
from pywats_client.report.model import ReportDict, to_json_bytes
from pywats_client.service.pipeline import convert_file
from tests.conftest import SAMPLES


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

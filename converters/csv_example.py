"""Example converter: a simple CSV file, one row per measurement, into WATS test reports.

Copy this file into your instance's `converters/` folder, rename the class and `name`, and adapt
`convert()` to your equipment. The input looks like this (see example.csv beside this file):

    serial_number,part_number,revision,operator,start,step,value,low,high,unit
    SN001,PN-100,A,alice,2026-05-01T10:00:00+02:00,Voltage 3V3,3.31,3.2,3.4,V

Rows with the same serial number form one report (one numeric step per row); a step passes
when low <= value <= high, and the report fails if any step fails. Only `serial_number`,
`step` and `value` are required; empty part number, revision and operator cells fall back to
the configured defaults. Arguments: `delimiter` (default ","), `process_code` (default: the
`process_code` default of the config, else 10).

A converter imports only from `pywats_client.converters` and the standard library, and never
touches the queue, the network or the clock: the service gives it all it needs in `context`.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from pywats_client.converters import (
    ConversionError,
    Converter,
    ConverterContext,
    IncompleteFileError,
    format_datetime,
    parse_datetime,
)

REQUIRED_COLUMNS = ("serial_number", "step", "value")
KNOWN_COLUMNS = (
    "serial_number", "part_number", "revision", "operator", "start", "step", "value", "low",
    "high", "unit",
)


class CsvExampleConverter(Converter):
    """One WATS test report per serial number from a measurement-per-row CSV file."""

    name = "CsvExampleConverter"
    description = "Example: CSV with one numeric measurement per row, one report per serial"
    version = "1.0"
    file_patterns = ("*.csv",)

    def __init__(self, *, delimiter: str = ",", process_code: int | None = None,
                 **arguments: Any) -> None:
        super().__init__(delimiter=delimiter, process_code=process_code, **arguments)
        if not isinstance(delimiter, str) or len(delimiter) != 1:
            raise ValueError(f"delimiter must be a single character, got {delimiter!r}")
        self.delimiter = delimiter
        self.process_code = process_code

    def detect(self, path: Path, head: bytes) -> float:
        # Cheap and never raising: look at the header line only.
        first_line = head.decode("utf-8", errors="replace").lstrip("\ufeff").split("\n", 1)[0]
        columns = {cell.strip().lower() for cell in first_line.split(self.delimiter)}
        return 0.8 if set(REQUIRED_COLUMNS) <= columns else 0.0

    def convert(self, path: Path, context: ConverterContext) -> list[dict[str, Any]]:
        text = self._read(path, context)
        if not text.strip():
            raise IncompleteFileError(f"{path}: the file is empty; waiting for the writer")
        rows = self._rows(path, text)
        header = [cell.strip().lower() for cell in rows[0][1]]
        finished = text.endswith(("\n", "\r"))
        for column in REQUIRED_COLUMNS:
            if column not in header:
                if len(rows) == 1 and not finished:
                    raise IncompleteFileError(f"{path}: only part of the header line so far")
                raise ConversionError(
                    f"{path}: line {rows[0][0]} (header) has no column {column!r}; "
                    f"expected columns: {', '.join(KNOWN_COLUMNS)}"
                )
        process_code = self._process_code(path, context)
        reports: dict[str, dict[str, Any]] = {}  # by serial number, in order of appearance
        for n, (line, cells) in enumerate(rows[1:], start=2):
            if not any(cell.strip() for cell in cells):
                continue  # blank lines are harmless
            if len(cells) < len(header):
                if n == len(rows) and not finished:
                    # A short last line without a line end: the writer has not finished it.
                    raise IncompleteFileError(f"{path}: line {line} is incomplete")
                raise ConversionError(
                    f"{path}: line {line} has {len(cells)} columns, the header has {len(header)}"
                )
            # Extra cells beyond the header (a trailing delimiter) are ignored.
            row = dict(zip(header, (cell.strip() for cell in cells), strict=False))
            sn = row["serial_number"]
            if not sn:
                raise ConversionError(f"{path}: line {line}, column 'serial_number' is empty")
            report = reports.get(sn)
            if report is None:
                report = reports[sn] = self._new_report(path, line, row, context, process_code)
            report["root"]["steps"].append(self._step(path, line, row, len(_steps(report)) + 1))
        if not reports:
            raise ConversionError(f"{path}: no measurement rows after the header")
        for report in reports.values():
            failed = any(step["status"] == "F" for step in _steps(report))
            report["result"] = report["root"]["status"] = "F" if failed else "P"
        return list(reports.values())

    def _rows(self, path: Path, text: str) -> list[tuple[int, list[str]]]:
        """(line number, cells) of every row; a quoted cell may span lines."""
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=self.delimiter)
        rows = []
        try:
            for cells in reader:
                rows.append((reader.line_num, cells))
        except csv.Error as exc:
            raise ConversionError(f"{path}: line {reader.line_num}: {exc}") from None
        return rows

    def _read(self, path: Path, context: ConverterContext) -> str:
        # Spreadsheet programs write a byte order mark; utf-8-sig drops it (and reads plain UTF-8).
        encoding = "utf-8-sig" if context.encoding.lower().replace("_", "-") in (
            "utf-8", "utf8") else context.encoding
        try:
            return path.read_bytes().decode(encoding)
        except OSError as exc:
            raise ConversionError(f"{path}: cannot read the file: {exc.strerror or exc}") from exc
        except UnicodeDecodeError as exc:
            raise ConversionError(
                f"{path}: not valid {encoding} at byte {exc.start}; set the folder's encoding"
            ) from None
        except LookupError:
            raise ConversionError(f"{path}: unknown encoding {encoding!r} in the config") from None

    def _process_code(self, path: Path, context: ConverterContext) -> int:
        value = context.arguments.get("process_code", self.process_code)
        if value is None:
            value = context.defaults.get("process_code", 10)
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ConversionError(
                f"{path}: process_code {value!r} is not a number; fix the converter arguments "
                "or the process_code default"
            ) from None

    def _new_report(self, path: Path, line: int, row: dict[str, str],
                    context: ConverterContext, process_code: int) -> dict[str, Any]:
        defaults = context.defaults
        pn = row.get("part_number") or str(defaults.get("part_number") or "")
        if not pn:
            raise ConversionError(
                f"{path}: line {line}, column 'part_number' is empty and no part_number "
                "default is configured"
            )
        report: dict[str, Any] = {
            "type": "T",
            "pn": pn,
            "sn": row["serial_number"],
            "rev": row.get("revision") or str(defaults.get("revision") or ""),
            "processCode": process_code,
            "result": "P",
        }
        if row.get("start"):
            # A missing start is left out on purpose: the service then uses the file's time.
            report["start"] = self._start(path, line, row["start"], context)
        sequence = str(defaults.get("sequence_name") or "MainSequence")
        report["uut"] = {"user": row.get("operator") or str(defaults.get("operator") or "")}
        report["root"] = {
            "id": 0,
            "group": "M",
            "stepType": "SequenceCall",
            "name": sequence,
            "status": "P",
            "seqCall": {"path": path.name, "name": sequence, "version": self.version},
            "steps": [],
        }
        return report

    def _start(self, path: Path, line: int, text: str, context: ConverterContext) -> str:
        try:
            moment = parse_datetime(text)
        except ValueError as exc:
            raise ConversionError(f"{path}: line {line}, column 'start': {exc}") from None
        if moment.tzinfo is None:
            # Naive time from the equipment: it is local to the station's zone.
            moment = (moment.replace(tzinfo=context.timezone) if context.timezone
                      else moment.astimezone())
        return format_datetime(moment)

    def _step(self, path: Path, line: int, row: dict[str, str], step_id: int) -> dict[str, Any]:
        name = row["step"]
        if not name:
            raise ConversionError(f"{path}: line {line}, column 'step' is empty")
        value = _number(path, line, row, "value")
        low = _optional_number(path, line, row, "low")
        high = _optional_number(path, line, row, "high")
        limits: dict[str, float] = {}
        if low is not None and high is not None:
            comp_op, limits = "GELE", {"lowLimit": low, "highLimit": high}
            passed = low <= value <= high
        elif low is not None:
            comp_op, limits = "GE", {"lowLimit": low}
            passed = value >= low
        elif high is not None:
            # WSJF quirk: single-limit operators compare against lowLimit, even LE.
            comp_op, limits = "LE", {"lowLimit": high}
            passed = value <= high
        else:
            comp_op, passed = "LOG", True  # no limits: logged only, always passes
        status = "P" if passed else "F"
        measurement = {"compOp": comp_op, "name": None, "status": status,
                       "unit": row.get("unit", ""), "value": value, **limits}
        return {
            "id": step_id,
            "group": "M",
            "stepType": "ET_NLT",
            "name": name,
            "status": status,
            "numericMeas": [measurement],
        }


def _steps(report: dict[str, Any]) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = report["root"]["steps"]
    return steps


def _number(path: Path, line: int, row: dict[str, str], column: str) -> float:
    number = _optional_number(path, line, row, column)
    if number is None:
        raise ConversionError(f"{path}: line {line}, column {column!r} is empty")
    return number


def _optional_number(path: Path, line: int, row: dict[str, str], column: str) -> float | None:
    text = row.get(column, "")
    if not text:
        return None
    try:
        number = float(text)
    except ValueError:
        raise ConversionError(
            f"{path}: line {line}, column {column!r}: {text!r} is not a number "
            "(use a dot as decimal separator)"
        ) from None
    if not math.isfinite(number):
        raise ConversionError(f"{path}: line {line}, column {column!r}: {text!r} is not finite")
    return number

"""The cells and values of WSTF lines: splitting a line into cells, the section markers and
step-data columns, and reading numbers, limits, statuses, operators and series data, with
errors that name the file and line.
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path
from typing import Any

from pywats_client.errors import ConversionError
from pywats_client.report.model import CHART_MAX_POINTS, INT32, STEP_STATUSES, status_letter
from pywats_client.report.operators import LOG, limits_used, parse_comp_op

# Every part of the reader logs under the converter's module name, which is what log filters
# (and operators searching the journal) name.
log = logging.getLogger("pywats_client.converters.wstf")

HEADER_START = "--header-start--"
STEP_DATA_START = "--step-data-start--"
STEP_DATA_END = "--step-data-end--"
UUT_END = "--uut-end--"

# Step-data columns, in the order of the title row.
(STEP_TYPE, STEP_NAME, MEASURE_NAME, VALUE, LOW_LIMIT, HIGH_LIMIT, COMP_OPERATOR, UNIT,
 STEP_STATUS, STEP_TIME, REPORT_TEXT, ERROR_CODE, ERROR_MESSAGE, CAUSED_SEQ_FAILURE) = range(14)
# A Chart line reuses columns 3-6 for these.
Y_UNIT, Y_LABEL, X_UNIT, X_LABEL = VALUE, LOW_LIMIT, HIGH_LIMIT, COMP_OPERATOR
# A Series line: StepName = series name, MeasureName = data type, then the data.
Y_DATA, X_DATA = VALUE, LOW_LIMIT

BOOLEAN = {"true": True, "false": False, "1": True, "0": False}
NUMBER_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_INTEGER_RE = re.compile(r"[+-]?\d{1,18}")
_CONTROL = re.compile(r"[\x00-\x1f]")


def as_marker(cell: str) -> str:
    """The first cell as a section marker is compared: without blanks, in lower case."""
    return cell.replace(" ", "").lower()


def split_cells(raw: str) -> list[str]:
    """The cells of one line, without control bytes and trailing empty cells."""
    # Control bytes (seen inside flying-probe measure names) are removed, not kept: WATS and
    # the operators reading names have no use for them. "\r" of CRLF files goes the same way.
    cells = [_CONTROL.sub("", cell) for cell in raw.split("\t")]
    while cells and not cells[-1].strip():
        cells.pop()  # trailing empty columns of spreadsheet exports
    return cells


def show_cells(cells: list[str]) -> str:
    """A line as an error message quotes it: its non-empty cells, shortened."""
    text = " ".join(cell.strip() for cell in cells if cell.strip())
    return repr(text[:60] + ("..." if len(text) > 60 else ""))


def letter_of(word: str, allowed: str) -> str | None:
    """The status letter of a status word (Passed, failed, P, ...), None for another word."""
    try:
        return status_letter(word, allowed)
    except ValueError:
        return None


class SourceFile:
    """The file being read: its path, for errors naming a line, and the unknown operators
    already warned about (once per file)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.warned_ops: set[str] = set()

    def error(self, number: int, message: str) -> ConversionError:
        return ConversionError(f"{self.path}: line {number}: {message}")

    def integer(self, number: int, text: str, what: str, bounds: tuple[int, int]) -> int:
        if not _INTEGER_RE.fullmatch(text.strip()):
            raise self.error(number, f"{what} {text!r} is not a whole number")
        value = int(text)
        if not bounds[0] <= value <= bounds[1]:
            raise self.error(number, f"{what} {value} is out of range ({bounds[0]}..{bounds[1]})")
        return value


class Row:
    """One step-data line: typed access to its cells, with errors naming the line."""

    def __init__(self, file: SourceFile, number: int, cells: list[str]) -> None:
        self.file = file
        self.number = number
        self.cells = cells

    def raw(self, column: int) -> str:
        return self.cells[column] if column < len(self.cells) else ""

    def text(self, column: int) -> str:
        return self.raw(column).strip()

    def error(self, message: str) -> ConversionError:
        return self.file.error(self.number, message)

    def status(self) -> str | None:
        text = self.text(STEP_STATUS)
        if not text:
            return None
        found = letter_of(text, STEP_STATUSES)
        if found is None:
            raise self.error(
                f"StepStatus {text!r}; expected Passed, Failed, Done, Skipped, Error or "
                "Terminated (or empty)"
            )
        return found

    def comp_op(self) -> str:
        file = self.file
        text = self.text(COMP_OPERATOR)
        op = parse_comp_op(text)
        if op == LOG and text and text.upper() != LOG and text.upper() not in file.warned_ops:
            file.warned_ops.add(text.upper())
            log.warning("%s: line %d: unknown CompOperator %r is taken as LOG (no limit check)",
                        file.path, self.number, text)
        return op

    def float_cell(self, column: int, what: str, required: bool = False) -> float | None:
        text = self.text(column)
        if not text:
            if required:
                raise self.error(f"{what} is empty; a measurement needs a number")
            return None
        return self._parse_number(text, what)

    def _parse_number(self, text: str, what: str) -> float:
        if NUMBER_RE.fullmatch(text):
            value = float(text)
            if math.isfinite(value):
                return value
            raise self.error(f"{what} {text!r} is too large for WATS")
        hint = " (WSTF uses '.' as the decimal separator)" if "," in text else ""
        raise self.error(f"{what} {text!r} is not a number{hint}")

    def limits(self, op: str) -> tuple[float | None, float | None]:
        low_text, high_text = self.text(LOW_LIMIT), self.text(HIGH_LIMIT)
        low = high = None
        if low_text:
            pair = self._pair(low_text, "LowLimit")
            if pair[0] == pair[1]:
                low = pair[0]  # "100.0/100.0": the same limit written twice
            elif not high_text and limits_used(op) == (True, True):
                low, high = pair  # "low/high" in one cell
            else:
                raise self.error(
                    f"LowLimit {low_text!r} holds two different limits; write the low limit "
                    "in LowLimit and the high one in HighLimit"
                )
        if high_text:
            pair = self._pair(high_text, "HighLimit")
            if pair[0] != pair[1]:
                raise self.error(f"HighLimit {high_text!r} holds two different limits")
            high = pair[0]
        return low, high

    def _pair(self, text: str, what: str) -> tuple[float, float]:
        first, sep, second = text.partition("/")
        if not sep:
            value = self._parse_number(text, what)
            return value, value
        return self._parse_number(first.strip(), what), self._parse_number(second.strip(), what)

    def series_data(self, column: int, what: str) -> tuple[str, int]:
        # The one place §3 allows a "," decimal: spreadsheet programs write series that way.
        text = self.text(column).replace(",", ".")
        tokens = [token.strip() for token in text.split(";")]
        if tokens and not tokens[-1]:
            tokens.pop()  # a trailing ";"
        if not tokens:
            raise self.error(f"{what} is empty; a series needs ';'-separated numbers")
        if len(tokens) > CHART_MAX_POINTS:
            raise self.error(
                f"{what} has {len(tokens)} points; at most {CHART_MAX_POINTS} per series")
        for n, token in enumerate(tokens, start=1):
            if not NUMBER_RE.fullmatch(token) or not math.isfinite(float(token)):
                raise self.error(f"{what} value {n} ({token!r}) is not a number")
        return ";".join(tokens), len(tokens)

    def step_fields(self, step: dict[str, Any], *, override: bool) -> None:
        """Time, report text, error and CausedSequenceFailure of the step, where written."""
        values: dict[str, Any] = {}
        if self.text(STEP_TIME):
            values["totTime"] = self._parse_number(self.text(STEP_TIME), "StepExecutionTime")
        if self.text(REPORT_TEXT):
            values["reportText"] = self.text(REPORT_TEXT)
        if self.text(ERROR_CODE):
            values["errorCode"] = self.file.integer(
                self.number, self.text(ERROR_CODE), "StepErrorCode", INT32)
        if self.text(ERROR_MESSAGE):
            values["errorMessage"] = self.text(ERROR_MESSAGE)
        caused = self.text(CAUSED_SEQ_FAILURE)
        if caused:
            flag = BOOLEAN.get(caused.lower())
            if flag is None:
                raise self.error(f"CausedSequenceFailure {caused!r}; expected True or False")
            values["causedSeqFailure"] = flag
        for key, value in values.items():
            if override or key not in step:
                step[key] = value

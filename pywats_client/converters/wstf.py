"""`WATSStandardTextConverter`: WATS Standard Text Format files (formats.md §3) into WSJF.

Owns the WSTF reader: a line state machine (outside → header → step data → footer) that builds
one WSJF test report per `--Header-Start--` … `--UUT-End--` block, with its step tree,
measurements, charts and statuses. Pure; depends on the converter base and its helpers
(`options`, `textio`), `report` (ReportDict, dates, status words), `limits` (every pass/fail
decision) and `errors`.

Where the format leaves a choice, this reader decides so:

* Lines are split on "\\n" only (control bytes such as 0x1C are data, not line ends); cells on
  tabs. Control bytes 0x00-0x1F are removed from every cell, trailing empty cells are ignored,
  and a line whose cells are all empty is skipped. Markers and key words are matched without
  regard to case; the end marker also as `-- UUT-End--`.
* Numbers use "." (invariant culture). A "," decimal is refused with a message, except in
  `Series` data, where §3 says to replace it. A limit cell written as "100.0/100.0" (seen in
  flying-probe exports) is that one limit; "low/high" with differing values is taken as both
  limits only when the HighLimit cell is empty and the operator uses two limits.
* Multi-measurement steps: a test line with a MeasureName starts one; following lines of the
  same kind with an empty StepName, or the same StepName, add measurements to it (a
  MeasureName repeated under the same StepName starts a new step: a loop). The StepStatus
  cell of a measurement line is that measurement's status; the step status is the roll-up.
  `Multiple…`/`EndMultiple…` bracket an explicit one; inside it only its measurements, `Chart`
  and `Series` lines may appear. Step-level cells (time, report text, error) come from the
  first line that has them; an `End…` line overrides them.
* ConverterMode `Active` (default): an empty StepStatus is computed from the limits, and
  failures roll up (a failed step fails its sequence unless its CausedSequenceFailure is
  False, whatever the sequence line said); without UUTStatus the result is the root's status.
  `Import`: statuses are taken as written, nothing is compared; a test line without status and
  a UUT without UUTStatus are errors, a sequence line without status takes its children's
  worst. In both modes an ActionStep without status is Done.
* Unclosed `SequenceCall`s and `Multiple…` blocks are closed at `--Step-Data-End--` with a
  warning; an `End…` line that names another step, or closes nothing, is an error.
* Truncation: the file is taken as still being written (`IncompleteFileError`) when it is
  empty, when it ends in the middle of a line (its last line has no line end and is not the
  end marker), or when it ends inside a UUT's header (before `--Step-Data-Start--`). A UUT
  that has reached its step data but lacks `--UUT-End--` at the end of the file (or before the
  next `--Header-Start--`) is converted anyway, with a warning naming the file.
"""

from __future__ import annotations

import codecs
import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone, tzinfo
from pathlib import Path
from typing import Any, NoReturn

from pywats_client.converters.builtin import BuiltinConverter, ConversionOptions
from pywats_client.converters.textio import MB, read_text
from pywats_client.errors import ConversionError, IncompleteFileError, ReportValidationError
from pywats_client.report.model import (
    STEP_STATUSES,
    ReportDict,
    format_datetime,
    format_utc,
    parse_datetime,
    status_letter,
)
from pywats_client.report.operators import (
    LOG,
    NUMERIC_OPERATORS,
    limits_used,
    numeric_status,
    parse_comp_op,
    string_status,
)

log = logging.getLogger(__name__)

# A test report is kilobytes to a few megabytes; anything this big is not one, and reading it
# would take a small station's memory.
MAX_FILE_BYTES = 200 * MB
MAX_SERIES = 10  # per chart, as the WATS client's WSTF converter allows
MAX_POINTS = 10_000  # per series
DEFAULT_SEQUENCE_NAME = "MainSequence Callback"

HEADER_START = "--header-start--"
STEP_DATA_START = "--step-data-start--"
STEP_DATA_END = "--step-data-end--"
UUT_END = "--uut-end--"

HEADER_KEYS = (
    "SerialNumber", "PartNumber", "Revision", "OperationTypeName", "OperationTypeCode",
    "UUTStatus", "ErrorCode", "ErrorMessage", "StartDateTime", "UTCStartDateTime",
    "ExecutionTime", "StationName", "OperatorName", "TestSocketIndex", "FixtureId",
    "SoftwareName", "SoftwareVersion", "BatchSerialNumber", "Comment", "ConverterMode",
)
FOOTER_KEYS = ("UUTStatus", "ErrorCode", "ErrorMessage", "ExecutionTime")
_HEADER_KEY = {key.lower(): key for key in HEADER_KEYS}
_FOOTER_KEY = {key.lower(): key for key in FOOTER_KEYS}

# Step-data columns, in the order of the title row.
(STEP_TYPE, STEP_NAME, MEASURE_NAME, VALUE, LOW_LIMIT, HIGH_LIMIT, COMP_OPERATOR, UNIT,
 STEP_STATUS, STEP_TIME, REPORT_TEXT, ERROR_CODE, ERROR_MESSAGE, CAUSED_SEQ_FAILURE) = range(14)
# A Chart line reuses columns 3-6 for these.
Y_UNIT, Y_LABEL, X_UNIT, X_LABEL = VALUE, LOW_LIMIT, HIGH_LIMIT, COMP_OPERATOR
# A Series line: StepName = series name, MeasureName = data type, then the data.
Y_DATA, X_DATA = VALUE, LOW_LIMIT

_RESULTS = "PFET"  # a UUT's result: Done and Skipped are step statuses only
# Roll-up order: the worst status of a sequence's children wins; the rest do not fail it.
_SEVERITY = {"T": 3, "E": 2, "F": 1}
_BOOLEAN = {"true": True, "false": False, "1": True, "0": False}
_CHART_TYPES = {name.lower(): name for name in ("Line", "LineLogX", "LineLogY", "LineLogXY")}
_STRING_OPERATORS = ("EQ", "NE", "CASESENSIT", "IGNORECASE", LOG)

# Header key -> field of the WSJF `uut` object, and how the value is read.
_UUT_FIELDS = (
    ("OperatorName", "user", "text"), ("ExecutionTime", "execTime", "number"),
    ("TestSocketIndex", "testSocketIndex", "int16"), ("BatchSerialNumber", "batchSN", "text"),
    ("Comment", "comment", "text"), ("ErrorCode", "errorCode", "int32"),
    ("ErrorMessage", "errorMessage", "text"), ("FixtureId", "fixtureId", "text"),
)

_CONTROL = re.compile(r"[\x00-\x1f]")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_INTEGER = re.compile(r"[+-]?\d{1,18}")
INT16 = (-32768, 32767)
INT32 = (-2147483648, 2147483647)


@dataclass(frozen=True)
class _Kind:
    """One family of test steps: its line names, WSJF step types and measurement list."""

    label: str  # as written in the StepType column, e.g. "NumericLimitTest"
    key: str  # the WSJF measurement list
    single_type: str
    multi_type: str


_NUMERIC = _Kind("NumericLimitTest", "numericMeas", "ET_NLT", "ET_MNLT")
_PASS_FAIL = _Kind("PassFailTest", "booleanMeas", "ET_PFT", "ET_MPFT")
_STRING = _Kind("StringValueTest", "stringMeas", "ET_SVT", "ET_MSVT")
_KINDS = (_NUMERIC, _PASS_FAIL, _STRING)
_SIMPLE_LINE = {kind.label.lower(): kind for kind in _KINDS}
_MULTIPLE_LINE = {f"multiple{kind.label.lower()}": kind for kind in _KINDS}
_END_MULTIPLE_LINE = {f"endmultiple{kind.label.lower()}": kind for kind in _KINDS}
STEP_TYPES = (
    "SequenceCall", "EndSequenceCall", *(kind.label for kind in _KINDS),
    *(f"Multiple{kind.label}" for kind in _KINDS), *(f"EndMultiple{kind.label}" for kind in _KINDS),
    "ActionStep", "Chart", "Series",
)


class WATSStandardTextConverter(BuiltinConverter):
    """Converts WATS Standard Text Format files (tab-separated; one or more UUTs per file).

    Takes no arguments of its own. The process of a UUT without OperationTypeCode follows the
    rule of every built-in converter (`ConversionOptions.process_code`), and the
    `part_number`, `revision`, `operator` and `sequence_name` options fill header lines the
    file does not have.
    """

    name = "WATSStandardTextConverter"
    description = "WATS Standard Text Format (WSTF): tab-separated header, step data and footer"
    version = "1.0"
    file_patterns = ("*.txt",)

    def detect_with_reason(self, path: Path, head: bytes) -> tuple[float, str]:
        return _detect(head)

    def read(self, path: Path, options: ConversionOptions) -> dict[str, Any] | list[dict[str, Any]]:
        """One report (a `ReportDict`) per UUT in the file; a list when there are several."""
        text = read_text(path, MAX_FILE_BYTES, "WSTF", options.encoding,
                         hint="a test report is far smaller: check that the equipment writes "
                              "the right file into this folder")
        reports = _Reader(path, options).read(text)
        return reports[0] if len(reports) == 1 else list(reports)


# -- reading the file ------------------------------------------------------------------------


def _detect(head: bytes) -> tuple[float, str]:
    codec = "utf-16" if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) else "utf-8"
    text = head.decode(codec, errors="replace").lstrip("\ufeff")
    for line in text.split("\n"):
        first = line.split("\t", 1)[0].strip(" \r\x00")
        if not first and not line.strip(" \t\r\x00"):
            continue  # blank lines before the marker are tolerated
        if first.replace(" ", "").lower() != HEADER_START:
            return 0.0, ""
        if STEP_DATA_START in text.lower():
            return 0.99, "first line is --Header-Start--, followed by --Step-Data-Start--"
        return 0.95, "first line is --Header-Start-- (WATS Standard Text Format)"
    return 0.0, ""


def _marker(cell: str) -> str:
    return cell.replace(" ", "").lower()


def _cells(raw: str) -> list[str]:
    # Control bytes (seen inside flying-probe measure names) are removed, not kept: WATS and
    # the operators reading names have no use for them. "\r" of CRLF files goes the same way.
    cells = [_CONTROL.sub("", cell) for cell in raw.split("\t")]
    while cells and not cells[-1].strip():
        cells.pop()  # trailing empty columns of spreadsheet exports
    return cells


@dataclass
class _Node:
    """A step being built, with what the reader needs to know about it besides the WSJF."""

    step: dict[str, Any]
    path: str  # as validation names it, e.g. "root.steps[2]"
    line: int
    kind: _Kind | None = None  # test steps only
    multi: bool = False
    written: str | None = None  # a status written for the step itself (not a measurement)
    failed: int = 0
    skipped: int = 0
    names: set[str] = field(default_factory=set)
    chart_line: int = 0

    @property
    def name(self) -> str:
        return str(self.step.get("name") or "")

    @property
    def measurements(self) -> list[dict[str, Any]]:
        assert self.kind is not None
        items: list[dict[str, Any]] = self.step[self.kind.key]
        return items


@dataclass
class _Uut:
    """One `--Header-Start--` … `--UUT-End--` block while it is read."""

    start_line: int
    state: str = "header"  # header | test | footer
    fields: dict[str, tuple[str, int]] = field(default_factory=dict)  # key -> (value, line)
    misc: list[tuple[str, str, int]] = field(default_factory=list)
    sub_units: list[tuple[dict[str, Any], int]] = field(default_factory=list)
    steps_line: int = 0  # line of --Step-Data-Start--
    active: bool = True
    root: _Node | None = None
    stack: list[_Node] = field(default_factory=list)
    next_id: int = 0
    extendable: _Node | None = None  # the test step continuation lines may add to
    block: _Node | None = None  # an open Multiple… step
    current: _Node | None = None  # the step a Chart line attaches to
    locations: dict[str, str] = field(default_factory=dict)  # step paths -> "line N"

    def value(self, key: str) -> str:
        return self.fields.get(key, ("", 0))[0]

    def line_of(self, key: str) -> int:
        return self.fields.get(key, ("", self.start_line))[1]


class _Reader:
    """Reads one file; one instance per conversion (converters are shared between threads)."""

    def __init__(self, path: Path, options: ConversionOptions) -> None:
        self.path = path
        self.options = options
        self.uut: _Uut | None = None
        self.reports: list[ReportDict] = []
        self.last_end = 0  # line of the last --UUT-End--
        self.warned_ops: set[str] = set()

    # -- the state machine ---------------------------------------------------------------------

    def read(self, text: str) -> list[ReportDict]:
        if not text.strip(" \t\r\n\x00"):
            raise IncompleteFileError(f"{self.path}: the file is empty; waiting for the writer")
        lines = text.split("\n")
        tail = lines.pop()  # after the last line end: "" for a finished file
        tail_cells = _cells(tail)
        # A last line without its line end is still being written, unless it is the end mark.
        partial = bool(tail_cells) and _marker(tail_cells[0]) != UUT_END
        if not partial:
            lines.append(tail)
        for number, raw in enumerate(lines, start=1):
            cells = _cells(raw)
            if cells:  # blank lines (and rows of empty cells) are skipped everywhere
                self._line(number, cells)
        if partial:
            if not self.reports and self.uut is None:
                first = tail.split("\t", 1)[0].strip(" \r\x00").replace(" ", "").lower()
                if not (HEADER_START.startswith(first) or first.startswith(HEADER_START)):
                    self._not_wstf(len(lines) + 1, tail)
            raise IncompleteFileError(
                f"{self.path}: line {len(lines) + 1} has no line end yet (the file is still "
                "being written, or was cut off)"
            )
        uut = self.uut
        if uut is not None:
            if uut.state == "header":
                raise IncompleteFileError(
                    f"{self.path}: the file ends inside the header of the UUT that starts at "
                    f"line {uut.start_line} (no --Step-Data-Start-- yet: still being written, "
                    "or cut off)"
                )
            log.warning(
                "%s: the UUT that starts at line %d has no --UUT-End-- line; converted anyway",
                self.path, uut.start_line,
            )
            self._submit(uut, len(lines))
        if not self.reports:
            raise IncompleteFileError(f"{self.path}: the file is empty; waiting for the writer")
        return self.reports

    def _line(self, number: int, cells: list[str]) -> None:
        marker = _marker(cells[0])
        uut = self.uut
        if marker == HEADER_START:
            if uut is not None:
                log.warning(
                    "%s: the UUT that starts at line %d has no --UUT-End-- before the next "
                    "--Header-Start-- at line %d; converted anyway",
                    self.path, uut.start_line, number,
                )
                self._submit(uut, number - 1)
            self.uut = _Uut(number)
            return
        if uut is None:
            if not self.reports:
                self._not_wstf(number, "\t".join(cells))
            raise self._error(
                number, f"expected --Header-Start-- (or the end of the file) after the "
                f"--UUT-End-- at line {self.last_end}, found {_show(cells)}"
            )
        if marker == UUT_END:
            self._submit(uut, number)
            self.last_end = number
        elif uut.state == "header":
            self._header_line(uut, number, cells, marker)
        elif uut.state == "test":
            self._test_line(uut, number, cells, marker)
        else:
            self._footer_line(uut, number, cells)

    def _header_line(self, uut: _Uut, number: int, cells: list[str], marker: str) -> None:
        if marker == STEP_DATA_START:
            self._begin_steps(uut, number)
            uut.state = "test"
            return
        if marker == STEP_DATA_END:
            raise self._error(number, "--Step-Data-End-- without --Step-Data-Start--")
        key = cells[0].strip()
        value = cells[1].strip() if len(cells) > 1 else ""
        if not key:
            raise self._error(
                number, f"a header line needs a key in the first column, found {_show(cells)}"
            )
        if key.lower() == "subunit":
            self._sub_unit(uut, number, cells)
        elif key.lower() in _HEADER_KEY:
            uut.fields[_HEADER_KEY[key.lower()]] = (value, number)  # the last one wins
        else:
            uut.misc.append((key, value, number))

    def _footer_line(self, uut: _Uut, number: int, cells: list[str]) -> None:
        key = cells[0].strip().lower()
        if key in _FOOTER_KEY:
            uut.fields[_FOOTER_KEY[key]] = (cells[1].strip() if len(cells) > 1 else "", number)
            return
        raise self._error(
            number, f"{_show(cells)} after --Step-Data-End--; only {', '.join(FOOTER_KEYS)} "
            "and --UUT-End-- may follow the step data"
        )

    def _test_line(self, uut: _Uut, number: int, cells: list[str], marker: str) -> None:
        kind_text = cells[0].strip().lower()
        if marker == STEP_DATA_END:
            self._end_steps(uut, number)
            uut.state = "footer"
            return
        if marker == STEP_DATA_START:
            raise self._error(number, "a second --Step-Data-Start-- in the same UUT")
        if kind_text == "steptype":
            return  # the title row
        if kind_text in _FOOTER_KEY:
            uut.fields[_FOOTER_KEY[kind_text]] = (
                cells[1].strip() if len(cells) > 1 else "", number
            )
            return
        row = _Row(self, number, cells)
        if kind_text == "chart":
            self._chart(uut, row)
        elif kind_text == "series":
            self._series(uut, row)
        elif uut.block is not None:
            self._in_block(uut, row, kind_text)
        elif kind_text in _SIMPLE_LINE:
            self._test(uut, row, _SIMPLE_LINE[kind_text])
        elif kind_text in _MULTIPLE_LINE:
            self._open_block(uut, row, _MULTIPLE_LINE[kind_text])
        elif kind_text in _END_MULTIPLE_LINE:
            raise row.error(
                f"{cells[0].strip()} without an open Multiple{_END_MULTIPLE_LINE[kind_text].label}"
            )
        elif kind_text == "sequencecall":
            self._open_sequence(uut, row)
        elif kind_text == "endsequencecall":
            self._close_sequence(uut, row)
        elif kind_text == "actionstep":
            self._action(uut, row)
        else:
            raise row.error(
                f"unknown StepType {cells[0].strip()!r}; expected one of {', '.join(STEP_TYPES)}"
            )

    # -- header ----------------------------------------------------------------------------------

    def _sub_unit(self, uut: _Uut, number: int, cells: list[str]) -> None:
        part_type, pn, sn, rev = ((cells[1:] + [""] * 4)[:4])
        if not any(cell.strip() for cell in (part_type, pn, sn, rev)):
            raise self._error(
                number, "Subunit line without values; write Subunit, Description, PartNumber, "
                "SerialNumber, Revision separated by tabs"
            )
        uut.sub_units.append((
            {"partType": part_type.strip(), "pn": pn.strip(), "rev": rev.strip(),
             "sn": sn.strip()},
            number,
        ))

    def _begin_steps(self, uut: _Uut, number: int) -> None:
        uut.steps_line = number
        mode = uut.value("ConverterMode").lower()
        if mode not in ("", "active", "import"):
            raise self._error(
                uut.line_of("ConverterMode"),
                f"ConverterMode {uut.value('ConverterMode')!r}; expected Active or Import",
            )
        uut.active = mode != "import"
        self._root(uut)

    def _root(self, uut: _Uut) -> _Node:
        if uut.root is None:
            software = uut.value("SoftwareName")
            name = software or self.options.sequence_name or (
                DEFAULT_SEQUENCE_NAME
            )
            step: dict[str, Any] = {
                "id": 0, "group": "M", "stepType": "SequenceCall", "name": name, "status": "P",
                "seqCall": {"path": software or None, "name": name,
                            "version": uut.value("SoftwareVersion") or None},
                "steps": [],
            }
            uut.root = _Node(step, "root", uut.start_line)
            uut.stack = [uut.root]
            uut.next_id = 1
        return uut.root

    # -- steps -----------------------------------------------------------------------------------

    def _new_step(self, uut: _Uut, row: _Row, step_type: str, **extra: Any) -> _Node:
        parent = uut.stack[-1]
        children = parent.step["steps"]
        step: dict[str, Any] = {"id": uut.next_id, "group": "M", "stepType": step_type,
                                "name": row.text(STEP_NAME), "status": "P"}
        uut.next_id += 1
        node = _Node(step, f"{parent.path}.steps[{len(children)}]", row.number, **extra)
        uut.locations[node.path] = f"line {row.number}"
        row.step_fields(step, override=False)
        children.append(step)
        uut.current = node
        return node

    def _test(self, uut: _Uut, row: _Row, kind: _Kind) -> None:
        name, measure = row.text(STEP_NAME), row.text(MEASURE_NAME)
        if not name and not measure:
            raise row.error(f"{kind.label} without StepName or MeasureName")
        prev = uut.extendable
        if prev is not None and prev.kind is kind and (not name or name == prev.name):
            if prev.multi and measure and not (name and measure in prev.names):
                self._measurement(uut, prev, row)
                return
            if not name:
                if prev.multi:
                    raise row.error(
                        f"measurement {measure!r} is already in step {prev.name!r} (line "
                        f"{prev.line}); measure names must differ within a step"
                    )
                raise row.error(
                    f"measurement {measure!r} cannot be added to the single-measurement step "
                    f"{prev.name!r} (line {prev.line}): give that line a MeasureName too, or "
                    "give this line a StepName"
                )
        elif not name:
            raise row.error(
                f"{kind.label} without StepName, and the line before is not a "
                f"multi-measurement {kind.label} it could continue"
            )
        node = self._new_step(uut, row, kind.multi_type if measure else kind.single_type,
                              kind=kind, multi=bool(measure))
        node.step[kind.key] = []
        uut.extendable = node
        if not measure:
            node.written = row.status()
        self._measurement(uut, node, row)

    def _open_block(self, uut: _Uut, row: _Row, kind: _Kind) -> None:
        if not row.text(STEP_NAME):
            raise row.error(f"Multiple{kind.label} needs a StepName")
        node = self._new_step(uut, row, kind.multi_type, kind=kind, multi=True)
        node.step[kind.key] = []
        uut.block, uut.extendable = node, None
        if row.text(MEASURE_NAME) or row.text(VALUE):
            self._measurement(uut, node, row)  # the main line carries the first measurement
        else:
            node.written = row.status()  # the main line speaks for the step
            self._refresh(uut, node)

    def _in_block(self, uut: _Uut, row: _Row, kind_text: str) -> None:
        block = uut.block
        assert block is not None and block.kind is not None
        kind = _SIMPLE_LINE.get(kind_text) or _MULTIPLE_LINE.get(kind_text)
        name = row.text(STEP_NAME)
        if kind is block.kind and (not name or name == block.name):
            self._measurement(uut, block, row)
            return
        end_kind = _END_MULTIPLE_LINE.get(kind_text)
        if end_kind is block.kind and (not name or name == block.name):
            row.step_fields(block.step, override=True)
            written = row.status()
            if written is not None:
                block.written = written
            self._refresh(uut, block)
            uut.block = None
            uut.current = block
            return
        raise row.error(
            f"{_show(row.cells)} inside Multiple{block.kind.label} {block.name!r} (line "
            f"{block.line}); close it with EndMultiple{block.kind.label} first"
        )

    def _measurement(self, uut: _Uut, node: _Node, row: _Row) -> None:
        kind = node.kind
        assert kind is not None
        index = len(node.measurements)
        measure = row.text(MEASURE_NAME)
        if node.multi:
            if not measure:
                raise row.error(
                    f"a measurement of the multi-measurement step {node.name!r} (line "
                    f"{node.line}) needs a MeasureName"
                )
            if measure in node.names:
                raise row.error(
                    f"measurement {measure!r} is already in step {node.name!r} (line "
                    f"{node.line}); measure names must differ within a step"
                )
            node.names.add(measure)
        if row.number != node.line:
            row.step_fields(node.step, override=False)
        # A single-measurement step's StepStatus is the step's; a multi one's, the measurement's.
        written = row.status()
        name = measure if node.multi else None
        if kind is _NUMERIC:
            item = self._numeric(uut, row, name, written)
        elif kind is _PASS_FAIL:
            item = self._pass_fail(uut, row, name, written)
        else:
            item = self._string(uut, row, name, written)
        node.measurements.append(item)
        if item["status"] == "F":
            node.failed += 1
        elif item["status"] == "S":
            node.skipped += 1
        uut.locations[f"{node.path}.{kind.key}[{index}]"] = f"line {row.number}"
        uut.current = node
        self._refresh(uut, node)

    def _refresh(self, uut: _Uut, node: _Node) -> None:
        """A test step's status from its measurements and what was written for it."""
        count = len(node.measurements)
        rolled = "F" if node.failed else ("S" if count and node.skipped == count else "P")
        if node.written is None:
            status = rolled
        elif uut.active:
            status = _worse(node.written, rolled if rolled == "F" else None)
        else:
            status = node.written
        node.step["status"] = status

    def _numeric(self, uut: _Uut, row: _Row, name: str | None,
                 written: str | None) -> dict[str, Any]:
        op = row.comp_op()
        if op not in NUMERIC_OPERATORS:
            raise row.error(
                f"CompOperator {op} compares strings; a {_NUMERIC.label} takes one of "
                f"{', '.join(NUMERIC_OPERATORS)}"
            )
        value = row.float_cell(VALUE, "Value", required=True)
        assert value is not None
        low, high = row.limits(op)

        def compute() -> str:
            try:
                return numeric_status(op, value, low, high)
            except ReportValidationError as exc:
                raise row.error(f"{exc}: fill the LowLimit/HighLimit cells") from None

        item: dict[str, Any] = {"compOp": op, "name": name,
                                "status": self._measurement_status(uut, row, written, compute),
                                "unit": row.text(UNIT) or None, "value": value}
        if low is not None:
            item["lowLimit"] = low
        if high is not None:
            item["highLimit"] = high
        return item

    def _pass_fail(self, uut: _Uut, row: _Row, name: str | None,
                   written: str | None) -> dict[str, Any]:
        text = row.text(VALUE)
        passed = _BOOLEAN.get(text.lower())
        if text and passed is None:
            raise row.error(f"PassFailTest Value {text!r}; expected TRUE or FALSE")

        def compute() -> str:
            if passed is None:
                raise row.error("PassFailTest without Value or StepStatus; write TRUE or FALSE")
            return "P" if passed else "F"

        # A written Failed wins over the value: the value is then taken as false.
        return {"name": name, "status": self._measurement_status(uut, row, written, compute)}

    def _string(self, uut: _Uut, row: _Row, name: str | None,
                written: str | None) -> dict[str, Any]:
        op = row.comp_op()
        if op not in _STRING_OPERATORS:
            raise row.error(
                f"CompOperator {op} compares numbers; a {_STRING.label} takes one of "
                f"{', '.join(_STRING_OPERATORS)}"
            )
        value, limit = row.raw(VALUE), row.raw(LOW_LIMIT)  # the LowLimit column is the limit

        def compute() -> str:
            # EQ/NE on strings are the case-sensitive comparison (and its negation).
            status = string_status("CASESENSIT" if op in ("EQ", "NE") else op, value, limit)
            if op == "NE":
                return "F" if status == "P" else "P"
            return status

        return {"compOp": op, "name": name,
                "status": self._measurement_status(uut, row, written, compute),
                "value": value, "limit": limit or None}

    def _measurement_status(self, uut: _Uut, row: _Row, written: str | None,
                            compute: Callable[[], str]) -> str:
        if written in ("P", "F", "S"):
            return written
        if written == "D":
            return "P"  # a Done step's measurement is kept as passed, as WATS exports it
        if written is None and not uut.active:
            raise row.error(
                "StepStatus is empty, and with ConverterMode Import the statuses are taken as "
                "written: write Passed, Failed, Skipped, ... or use ConverterMode Active"
            )
        return compute()  # empty in Active mode, or Error/Terminated: ask the limits

    def _action(self, uut: _Uut, row: _Row) -> None:
        if not row.text(STEP_NAME):
            raise row.error("ActionStep needs a StepName")
        node = self._new_step(uut, row, "Action")
        node.step["status"] = row.status() or "D"
        uut.extendable = None

    def _open_sequence(self, uut: _Uut, row: _Row) -> None:
        name = row.text(STEP_NAME)
        if not name:
            raise row.error("SequenceCall needs a StepName (the sequence name)")
        root = uut.stack[0]
        node = self._new_step(uut, row, "SequenceCall")
        node.written = row.status()
        node.step["seqCall"] = {"path": root.step["seqCall"]["path"], "name": name,
                                "version": root.step["seqCall"]["version"]}
        node.step["steps"] = []
        uut.stack.append(node)
        uut.extendable = None

    def _close_sequence(self, uut: _Uut, row: _Row) -> None:
        if len(uut.stack) < 2:
            raise row.error("EndSequenceCall without an open SequenceCall")
        node = uut.stack[-1]
        name = row.text(STEP_NAME)
        if name and name != node.name:
            raise row.error(
                f"EndSequenceCall {name!r} does not match the open SequenceCall {node.name!r} "
                f"(line {node.line})"
            )
        row.step_fields(node.step, override=True)
        written = row.status()
        if written is not None:
            node.written = written
        self._finish_sequence(uut, node)
        uut.stack.pop()
        uut.current, uut.extendable = node, None

    def _finish_sequence(self, uut: _Uut, node: _Node) -> None:
        worst = _worst(
            child["status"] for child in node.step["steps"]
            if child.get("causedSeqFailure") is not False
        )
        if uut.active:
            node.step["status"] = _worse(node.written or "P", worst)
        else:
            node.step["status"] = node.written or worst or "P"

    def _chart(self, uut: _Uut, row: _Row) -> None:
        node = uut.current
        if node is None:
            raise row.error("Chart before any step; a Chart line follows the step it belongs to")
        if node.chart_line:
            raise row.error(
                f"step {node.name!r} already has a chart (line {node.chart_line}); one chart "
                "per step"
            )
        chart_type = _CHART_TYPES.get(row.text(STEP_NAME).lower() or "line")
        if chart_type is None:
            raise row.error(
                f"chart type {row.text(STEP_NAME)!r}; expected one of "
                f"{', '.join(_CHART_TYPES.values())}"
            )
        node.step["chart"] = {
            "chartType": chart_type, "label": row.text(MEASURE_NAME) or None,
            "xLabel": row.text(X_LABEL) or None, "xUnit": row.text(X_UNIT) or None,
            "yLabel": row.text(Y_LABEL) or None, "yUnit": row.text(Y_UNIT) or None,
            "series": [],
        }
        node.chart_line = row.number
        if node.kind is _NUMERIC:
            node.step["stepType"] = "WATS_XYGMNLT"

    def _series(self, uut: _Uut, row: _Row) -> None:
        node = uut.current
        if node is None or not node.chart_line:
            raise row.error("Series without a Chart line before it for the same step")
        series = node.step["chart"]["series"]
        if len(series) >= MAX_SERIES:
            raise row.error(
                f"more than {MAX_SERIES} series in the chart of step {node.name!r} (line "
                f"{node.chart_line})"
            )
        data_type = row.text(MEASURE_NAME) or "XYG"
        if data_type.upper() != "XYG":
            raise row.error(f"series data type {data_type!r}; only XYG is supported")
        y_data, y_count = row.series_data(Y_DATA, "YData")
        x_data, x_count = row.series_data(X_DATA, "XData")
        if x_count != y_count:
            raise row.error(f"XData has {x_count} values and YData {y_count}; they must pair up")
        series.append({"dataType": "XYG", "name": row.text(STEP_NAME) or None,
                       "xdata": x_data, "ydata": y_data})

    def _end_steps(self, uut: _Uut, number: int) -> None:
        if uut.block is not None:
            block = uut.block
            assert block.kind is not None
            log.warning("%s: Multiple%s %r (line %d) is not closed before line %d; closed there",
                        self.path, block.kind.label, block.name, block.line, number)
            uut.block = None
        while len(uut.stack) > 1:
            node = uut.stack.pop()
            log.warning("%s: SequenceCall %r (line %d) has no EndSequenceCall; closed at line %d",
                        self.path, node.name, node.line, number)
            self._finish_sequence(uut, node)
        uut.extendable = None

    # -- the finished report ---------------------------------------------------------------------

    def _submit(self, uut: _Uut, number: int) -> None:
        if uut.state == "header":
            self._begin_steps(uut, number)
        self._end_steps(uut, number)
        root = self._root(uut)
        report = ReportDict()
        report.locations[""] = f"line {uut.start_line}"
        report["type"] = "T"
        self._required(uut, report, "pn", "PartNumber", "part_number")
        self._required(uut, report, "sn", "SerialNumber", None)
        report["rev"] = uut.value("Revision") or self.options.revision
        self.locate_field(uut, report, "rev", "Revision")
        self._process(uut, report)
        self._finish_root(uut, root)
        report["result"] = self._result(uut, root)
        self.locate_field(uut, report, "result", "UUTStatus")
        if uut.value("StationName"):
            report["machineName"] = uut.value("StationName")
            self.locate_field(uut, report, "machineName", "StationName")
        self._start(uut, report)
        report["uut"] = self._uut_header(uut, report)
        if uut.misc:
            report["miscInfos"] = []
            for key, value, line in uut.misc:
                report.locations[f"miscInfos[{len(report['miscInfos'])}]"] = f"line {line}"
                report["miscInfos"].append({"description": key, "text": value})
        if uut.sub_units:
            report["subUnits"] = []
            for sub_unit, line in uut.sub_units:
                report.locations[f"subUnits[{len(report['subUnits'])}]"] = f"line {line}"
                report["subUnits"].append(sub_unit)
        report["root"] = root.step
        report.locations.update(uut.locations)
        report.locations["root"] = f"line {uut.steps_line or uut.start_line}"
        self.reports.append(report)
        self.uut = None

    def _finish_root(self, uut: _Uut, root: _Node) -> None:
        if uut.active:
            self._finish_sequence(uut, root)
            return
        letter = _letter(uut.value("UUTStatus"), _RESULTS)
        root.step["status"] = letter or _worst(c["status"] for c in root.step["steps"]) or "P"

    def _result(self, uut: _Uut, root: _Node) -> str:
        text = uut.value("UUTStatus")
        if text:
            letter = _letter(text, _RESULTS)
            if letter is None:
                raise self._error(
                    uut.line_of("UUTStatus"),
                    f"UUTStatus {text!r}; expected Passed, Failed, Error or Terminated",
                )
            return letter
        if not uut.active:
            raise self._error(
                uut.start_line, "the UUT has no UUTStatus line, and with ConverterMode Import "
                "the result is taken as written: add UUTStatus (Passed, Failed, Error or "
                "Terminated) or use ConverterMode Active"
            )
        status = root.step["status"]
        return status if status in ("F", "E", "T") else "P"

    def _required(self, uut: _Uut, report: ReportDict, target: str, key: str,
                  default: str | None) -> None:
        """Set `report[target]` from header `key`, else from the option `default`."""
        value = uut.value(key) or (getattr(self.options, default) if default else "")
        if not value:
            also = (f", or set {default} in the watch folder's arguments or in "
                    "converters.defaults") if default else ""
            raise self._error(
                uut.start_line, f"the UUT has no {key} (or it is empty); add a {key} line to "
                f"its header{also}"
            )
        report[target] = value
        self.locate_field(uut, report, target, key)

    def _process(self, uut: _Uut, report: ReportDict) -> None:
        code_text, name = uut.value("OperationTypeCode"), uut.value("OperationTypeName")
        code = None
        if code_text:
            code = self._integer(uut.line_of("OperationTypeCode"), code_text,
                                 "OperationTypeCode", INT16)
        key = "OperationTypeCode" if code_text or not name else "OperationTypeName"
        report["processCode"] = self.options.process_code(
            f"{self.path}: line {uut.line_of(key)}", code=code, name=name or None,
            lacks="the UUT has no OperationTypeCode line (e.g. OperationTypeCode<tab>50)")
        self.locate_field(uut, report, "processCode", key)
        process_name = self.options.process_name_for(name)
        if process_name:
            report["processName"] = process_name
            self.locate_field(uut, report, "processName", "OperationTypeName")

    def _start(self, uut: _Uut, report: ReportDict) -> None:
        local_text, utc_text = uut.value("StartDateTime"), uut.value("UTCStartDateTime")
        if not (local_text or utc_text):
            return  # finalize() falls back to the file's time
        zone = self.options.timezone
        # StartDateTime is the station's local time; UTCStartDateTime is UTC unless it says.
        utc = self._moment(uut, "UTCStartDateTime", timezone.utc) if utc_text else None
        local = self._moment(uut, "StartDateTime", zone) if local_text else None
        key = "StartDateTime" if local_text else "UTCStartDateTime"
        try:
            if local is None:
                assert utc is not None
                local = utc.astimezone(zone) if zone else utc.astimezone()
            report["start"] = format_datetime(local)
            report["startUTC"] = format_utc(utc if utc is not None else local)
        except (ValueError, OverflowError, OSError) as exc:
            raise self._error(uut.line_of(key), f"{key} {uut.value(key)!r}: {exc}") from None
        self.locate_field(uut, report, "start", key)
        self.locate_field(uut, report, "startUTC", "UTCStartDateTime" if utc_text else key)

    def _moment(self, uut: _Uut, key: str, zone: tzinfo | None) -> datetime:
        """The date-time of header `key`; naive ones in `zone` (None: the system's zone)."""
        text = uut.value(key)
        try:
            moment = parse_datetime(text)
            if moment.tzinfo is not None:
                return moment
            return moment.replace(tzinfo=zone) if zone else moment.astimezone()
        except (ValueError, OverflowError, OSError) as exc:
            raise self._error(
                uut.line_of(key), f"{key} {text!r}: {exc} (the format is 2026-05-01T10:00:00)"
            ) from None

    def _uut_header(self, uut: _Uut, report: ReportDict) -> dict[str, Any]:
        header: dict[str, Any] = {}
        for key, target, kind in _UUT_FIELDS:
            text = uut.value(key)
            if key == "OperatorName" and not text:
                text = self.options.operator
            if not text:
                continue  # an empty "ErrorCode<tab>" (flying-probe exports) means none
            if kind == "number":
                header[target] = self._float(uut, key)
            elif kind == "int16":
                header[target] = self._integer(uut.line_of(key), text, key, INT16)
            elif kind == "int32":
                header[target] = self._integer(uut.line_of(key), text, key, INT32)
            else:
                header[target] = text
            self.locate_field(uut, report, f"uut.{target}", key)
        return header

    def _float(self, uut: _Uut, key: str) -> float:
        text, line = uut.value(key), uut.line_of(key)
        if not _NUMBER.fullmatch(text) or not math.isfinite(float(text)):
            raise self._error(line, f"{key} {text!r} is not a number (use '.' for decimals)")
        return float(text)

    def _integer(self, line: int, text: str, what: str, bounds: tuple[int, int]) -> int:
        if not _INTEGER.fullmatch(text.strip()):
            raise self._error(line, f"{what} {text!r} is not a whole number")
        value = int(text)
        if not bounds[0] <= value <= bounds[1]:
            raise self._error(line, f"{what} {value} is out of range ({bounds[0]}..{bounds[1]})")
        return value

    # -- places and errors -----------------------------------------------------------------------

    def locate_field(self, uut: _Uut, report: ReportDict, target: str, key: str) -> None:
        report.locations[target] = f"line {uut.line_of(key)}"

    def _error(self, number: int, message: str) -> ConversionError:
        return ConversionError(f"{self.path}: line {number}: {message}")

    def _not_wstf(self, number: int, text: str) -> NoReturn:
        raise ConversionError(
            f"{self.path}: not a WATS Standard Text Format file: line {number} is "
            f"{_show(_cells(text))}, expected --Header-Start--"
        )


class _Row:
    """One step-data line: typed access to its cells, with errors naming the line."""

    def __init__(self, reader: _Reader, number: int, cells: list[str]) -> None:
        self.reader = reader
        self.number = number
        self.cells = cells

    def raw(self, column: int) -> str:
        return self.cells[column] if column < len(self.cells) else ""

    def text(self, column: int) -> str:
        return self.raw(column).strip()

    def error(self, message: str) -> ConversionError:
        return self.reader._error(self.number, message)

    def status(self) -> str | None:
        text = self.text(STEP_STATUS)
        if not text:
            return None
        letter = _letter(text, STEP_STATUSES)
        if letter is None:
            raise self.error(
                f"StepStatus {text!r}; expected Passed, Failed, Done, Skipped, Error or "
                "Terminated (or empty)"
            )
        return letter

    def comp_op(self) -> str:
        reader = self.reader
        text = self.text(COMP_OPERATOR)
        op = parse_comp_op(text)
        if op == LOG and text and text.upper() != LOG and text.upper() not in reader.warned_ops:
            reader.warned_ops.add(text.upper())
            log.warning("%s: line %d: unknown CompOperator %r is taken as LOG (no limit check)",
                        reader.path, self.number, text)
        return op

    def float_cell(self, column: int, what: str, required: bool = False) -> float | None:
        text = self.text(column)
        if not text:
            if required:
                raise self.error(f"{what} is empty; a measurement needs a number")
            return None
        return self._parse_number(text, what)

    def _parse_number(self, text: str, what: str) -> float:
        if _NUMBER.fullmatch(text):
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
        if len(tokens) > MAX_POINTS:
            raise self.error(f"{what} has {len(tokens)} points; at most {MAX_POINTS} per series")
        for n, token in enumerate(tokens, start=1):
            if not _NUMBER.fullmatch(token) or not math.isfinite(float(token)):
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
            values["errorCode"] = self.reader._integer(
                self.number, self.text(ERROR_CODE), "StepErrorCode", INT32)
        if self.text(ERROR_MESSAGE):
            values["errorMessage"] = self.text(ERROR_MESSAGE)
        caused = self.text(CAUSED_SEQ_FAILURE)
        if caused:
            flag = _BOOLEAN.get(caused.lower())
            if flag is None:
                raise self.error(f"CausedSequenceFailure {caused!r}; expected True or False")
            values["causedSeqFailure"] = flag
        for key, value in values.items():
            if override or key not in step:
                step[key] = value


def _letter(word: str, allowed: str) -> str | None:
    """The status letter of a status word (Passed, failed, P, ...), None for another word."""
    try:
        return status_letter(word, allowed)
    except ValueError:
        return None


def _worst(statuses: Any) -> str | None:
    worst = None
    for status in statuses:
        if _SEVERITY.get(status, 0) > _SEVERITY.get(worst or "", 0):
            worst = status
    return worst


def _worse(status: str, other: str | None) -> str:
    if other is not None and _SEVERITY.get(other, 0) > _SEVERITY.get(status, 0):
        return other
    return status


def _show(cells: list[str]) -> str:
    text = " ".join(cell.strip() for cell in cells if cell.strip())
    return repr(text[:60] + ("..." if len(text) > 60 else ""))

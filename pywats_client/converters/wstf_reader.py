"""The WSTF reader: the state machine over a file's lines (outside, header, step data,
footer) that makes one WSJF test report per `--Header-Start--` … `--UUT-End--` block, with
the report fields its header and footer give.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone, tzinfo
from pathlib import Path
from typing import Any, NoReturn

from pywats_client.converters.builtin import ConversionOptions
from pywats_client.converters.wstf_steps import StepTree, worst_status
from pywats_client.converters.wstf_values import (
    HEADER_START,
    NUMBER_RE,
    STEP_DATA_END,
    STEP_DATA_START,
    UUT_END,
    Row,
    SourceFile,
    as_marker,
    letter_of,
    log,
    show_cells,
    split_cells,
)
from pywats_client.errors import ConversionError, IncompleteFileError
from pywats_client.report.model import (
    INT16,
    INT32,
    ReportDict,
    format_datetime,
    format_utc,
    parse_datetime,
    result_for_status,
)

DEFAULT_SEQUENCE_NAME = "MainSequence Callback"
# The converter argument that converts a last UUT without --UUT-End-- instead of waiting for
# it (the behaviour of older versions, for testers that never write the end marker).
ACCEPT_MISSING_END = "accept_missing_uut_end"

HEADER_KEYS = (
    "SerialNumber", "PartNumber", "Revision", "OperationTypeName", "OperationTypeCode",
    "UUTStatus", "ErrorCode", "ErrorMessage", "StartDateTime", "UTCStartDateTime",
    "ExecutionTime", "StationName", "OperatorName", "TestSocketIndex", "FixtureId",
    "SoftwareName", "SoftwareVersion", "BatchSerialNumber", "Comment", "ConverterMode",
)
FOOTER_KEYS = ("UUTStatus", "ErrorCode", "ErrorMessage", "ExecutionTime")
_HEADER_KEY = {key.lower(): key for key in HEADER_KEYS}
_FOOTER_KEY = {key.lower(): key for key in FOOTER_KEYS}

_RESULTS = "PFET"  # a UUT's result: Done and Skipped are step statuses only

# Header key -> field of the WSJF `uut` object, and how the value is read.
_UUT_FIELDS = (
    ("OperatorName", "user", "text"), ("ExecutionTime", "execTime", "number"),
    ("TestSocketIndex", "testSocketIndex", "int16"), ("BatchSerialNumber", "batchSN", "text"),
    ("Comment", "comment", "text"), ("ErrorCode", "errorCode", "int32"),
    ("ErrorMessage", "errorMessage", "text"), ("FixtureId", "fixtureId", "text"),
)


@dataclass
class Uut:
    """One `--Header-Start--` … `--UUT-End--` block while it is read."""

    start_line: int
    state: str = "header"  # header | test | footer
    fields: dict[str, tuple[str, int]] = field(default_factory=dict)  # key -> (value, line)
    misc: list[tuple[str, str, int]] = field(default_factory=list)
    sub_units: list[tuple[dict[str, Any], int]] = field(default_factory=list)
    steps_line: int = 0  # line of --Step-Data-Start--
    steps: StepTree | None = None  # from --Step-Data-Start-- on

    def value(self, key: str) -> str:
        return self.fields.get(key, ("", 0))[0]

    def line_of(self, key: str) -> int:
        return self.fields.get(key, ("", self.start_line))[1]


class Reader:
    """Reads one file; one instance per conversion (converters are shared between threads)."""

    def __init__(self, path: Path, options: ConversionOptions) -> None:
        self.path = path
        self.file = SourceFile(path)
        self.options = options
        self.uut: Uut | None = None
        self.reports: list[ReportDict] = []
        self.last_end = 0  # line of the last --UUT-End--

    # -- the state machine ---------------------------------------------------------------------

    def read(self, text: str) -> list[ReportDict]:
        if not text.strip(" \t\r\n\x00"):
            raise IncompleteFileError(f"{self.path}: the file is empty; waiting for the writer")
        lines = text.split("\n")
        tail = lines.pop()  # after the last line end: "" for a finished file
        tail_cells = split_cells(tail)
        # A last line without its line end is still being written, unless it is the end mark.
        partial = bool(tail_cells) and as_marker(tail_cells[0]) != UUT_END
        if not partial:
            lines.append(tail)
        for number, raw in enumerate(lines, start=1):
            cells = split_cells(raw)
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
            if not accepts_missing_end(self.options):
                raise IncompleteFileError(
                    f"{self.path}: the UUT that starts at line {uut.start_line} has no "
                    "--UUT-End-- line yet (still being written, or cut off)"
                )
            log.warning(
                "%s: the UUT that starts at line %d has no --UUT-End-- line; converted anyway "
                "(accept_missing_uut_end is set)", self.path, uut.start_line,
            )
            self._submit(uut, len(lines))
        if not self.reports:
            raise IncompleteFileError(f"{self.path}: the file is empty; waiting for the writer")
        return self.reports

    def _line(self, number: int, cells: list[str]) -> None:
        marker = as_marker(cells[0])
        uut = self.uut
        if marker == HEADER_START:
            if uut is not None:
                log.warning(
                    "%s: the UUT that starts at line %d has no --UUT-End-- before the next "
                    "--Header-Start-- at line %d; converted anyway",
                    self.path, uut.start_line, number,
                )
                self._submit(uut, number - 1)
            self.uut = Uut(number)
            return
        if uut is None:
            if not self.reports:
                self._not_wstf(number, "\t".join(cells))
            raise self._error(
                number, f"expected --Header-Start-- (or the end of the file) after the "
                f"--UUT-End-- at line {self.last_end}, found {show_cells(cells)}"
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

    def _header_line(self, uut: Uut, number: int, cells: list[str], marker: str) -> None:
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
                number, f"a header line needs a key in the first column, found {show_cells(cells)}"
            )
        if key.lower() == "subunit":
            self._sub_unit(uut, number, cells)
        elif key.lower() in _HEADER_KEY:
            uut.fields[_HEADER_KEY[key.lower()]] = (value, number)  # the last one wins
        else:
            uut.misc.append((key, value, number))

    def _footer_line(self, uut: Uut, number: int, cells: list[str]) -> None:
        key = cells[0].strip().lower()
        if key in _FOOTER_KEY:
            uut.fields[_FOOTER_KEY[key]] = (cells[1].strip() if len(cells) > 1 else "", number)
            return
        raise self._error(
            number, f"{show_cells(cells)} after --Step-Data-End--; only {', '.join(FOOTER_KEYS)} "
            "and --UUT-End-- may follow the step data"
        )

    def _test_line(self, uut: Uut, number: int, cells: list[str], marker: str) -> None:
        steps = uut.steps
        assert steps is not None  # made at --Step-Data-Start--
        kind_text = cells[0].strip().lower()
        if marker == STEP_DATA_END:
            steps.end(number)
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
        steps.add(Row(self.file, number, cells), kind_text)

    # -- header ----------------------------------------------------------------------------------

    def _sub_unit(self, uut: Uut, number: int, cells: list[str]) -> None:
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

    def _begin_steps(self, uut: Uut, number: int) -> None:
        uut.steps_line = number
        mode = uut.value("ConverterMode").lower()
        if mode not in ("", "active", "import"):
            raise self._error(
                uut.line_of("ConverterMode"),
                f"ConverterMode {uut.value('ConverterMode')!r}; expected Active or Import",
            )
        software = uut.value("SoftwareName")
        name = software or self.options.sequence_name or DEFAULT_SEQUENCE_NAME
        uut.steps = StepTree(self.file, line=uut.start_line, active=mode != "import", name=name,
                             path=software or None, version=uut.value("SoftwareVersion") or None)

    # -- the finished report ---------------------------------------------------------------------

    def _submit(self, uut: Uut, number: int) -> None:
        if uut.state == "header":
            self._begin_steps(uut, number)
        steps = uut.steps
        assert steps is not None
        steps.end(number)
        report = ReportDict()
        report.locations[""] = f"line {uut.start_line}"
        report["type"] = "T"
        self._required(uut, report, "pn", "PartNumber", "part_number")
        self._required(uut, report, "sn", "SerialNumber", None)
        report["rev"] = uut.value("Revision") or self.options.revision
        self.locate_field(uut, report, "rev", "Revision")
        self._process(uut, report)
        self._finish_root(uut, steps)
        report["result"] = self._result(uut, steps)
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
        report["root"] = steps.root.step
        report.locations.update(steps.locations)
        report.locations["root"] = f"line {uut.steps_line or uut.start_line}"
        self.reports.append(report)
        self.uut = None

    def _finish_root(self, uut: Uut, steps: StepTree) -> None:
        root = steps.root
        if steps.active:
            steps.finish_sequence(root)
            return
        letter = letter_of(uut.value("UUTStatus"), _RESULTS)
        root.step["status"] = letter or worst_status(c["status"] for c in root.step["steps"]) or "P"

    def _result(self, uut: Uut, steps: StepTree) -> str:
        text = uut.value("UUTStatus")
        if text:
            letter = letter_of(text, _RESULTS)
            if letter is None:
                raise self._error(
                    uut.line_of("UUTStatus"),
                    f"UUTStatus {text!r}; expected Passed, Failed, Error or Terminated",
                )
            return letter
        if not steps.active:
            raise self._error(
                uut.start_line, "the UUT has no UUTStatus line, and with ConverterMode Import "
                "the result is taken as written: add UUTStatus (Passed, Failed, Error or "
                "Terminated) or use ConverterMode Active"
            )
        return result_for_status(steps.root.step["status"])

    def _required(self, uut: Uut, report: ReportDict, target: str, key: str,
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

    def _process(self, uut: Uut, report: ReportDict) -> None:
        code_text, name = uut.value("OperationTypeCode"), uut.value("OperationTypeName")
        code = None
        if code_text:
            code = self.file.integer(uut.line_of("OperationTypeCode"), code_text,
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

    def _start(self, uut: Uut, report: ReportDict) -> None:
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

    def _moment(self, uut: Uut, key: str, zone: tzinfo | None) -> datetime:
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

    def _uut_header(self, uut: Uut, report: ReportDict) -> dict[str, Any]:
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
                header[target] = self.file.integer(uut.line_of(key), text, key, INT16)
            elif kind == "int32":
                header[target] = self.file.integer(uut.line_of(key), text, key, INT32)
            else:
                header[target] = text
            self.locate_field(uut, report, f"uut.{target}", key)
        return header

    def _float(self, uut: Uut, key: str) -> float:
        text, line = uut.value(key), uut.line_of(key)
        if not NUMBER_RE.fullmatch(text) or not math.isfinite(float(text)):
            raise self._error(line, f"{key} {text!r} is not a number (use '.' for decimals)")
        return float(text)

    # -- places and errors -----------------------------------------------------------------------

    def locate_field(self, uut: Uut, report: ReportDict, target: str, key: str) -> None:
        report.locations[target] = f"line {uut.line_of(key)}"

    def _error(self, number: int, message: str) -> ConversionError:
        return self.file.error(number, message)

    def _not_wstf(self, number: int, text: str) -> NoReturn:
        raise ConversionError(
            f"{self.path}: not a WATS Standard Text Format file: line {number} is "
            f"{show_cells(split_cells(text))}, expected --Header-Start--"
        )


def accepts_missing_end(options: ConversionOptions) -> bool:
    """True when the folder's `accept_missing_uut_end` argument is set to a true value."""
    value = options.setting(ACCEPT_MISSING_END)
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)

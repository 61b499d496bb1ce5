"""`TeradyneICTConverter`: Teradyne GR228x in-circuit test logs (`.LOG`) into WSJF.

Owns the GR228x log reader (formats.md §6): a line-by-line state machine that turns every UUT
of a log (`@<date> SN <serial>` ... end-of-UUT line) into one WSJF test report, its
measurement lines into numeric or pass/fail steps and its fixture/opens/shorts blocks into
failed steps. Pure: it reads the file and changes nothing.

Choices where the format leaves one open:

* Statuses come from the file: the judgement character of a measurement (`=` passed, `<` `>`
  `%` failed, `#` not judged: a Done step with a LOG measurement) and the end-of-UUT
  character for the result (`"` passed, `/` failed, `?` aborted and `!` cancelled are
  Terminated, `*` `&` errors; `]` "return to diagnose" ends an open UUT as Terminated and is
  ignored between UUTs). Limits are never compared here.
* A not-judged line followed by the judged line of the same component (`R211#...` then
  `R211=...`) is one measurement: the judged one. Source settings (type codes `IS`, `VS`)
  are not measurements and are left out.
* Values and limits are converted to the unit of the limits (the high limit's prefix, else
  the low limit's, else the value's), exactly (decimal arithmetic), so every UUT of a program
  reports a test in the same unit. Type codes whose unit is not known (`AR` arithmetic, ...)
  are reported in plain numbers without a unit. Units are ASCII ("kOhm", "nF", "mV").
* Header values: a `WATS_<key>=` line inside the UUT wins, then one between UUTs (it holds
  for the UUTs after it), then the watch folder's converter arguments, then what the file
  implies (part number = program name up to the first `_`, sequence = program name), then
  `converters.defaults`. The process follows the rule of every built-in converter
  (`ConversionOptions.process_code`): GR228x logs do not name the WATS operation.
* Text is decoded as every text format is (`textio.decode`): the configured encoding, else
  UTF-8, else cp1252.
* A UUT with no steps that was aborted is skipped. A UUT still open at the end of the file
  means the log is being written (`IncompleteFileError`); a UUT without an end line before
  the next `@` line is converted as Terminated, with a warning.
* Lines the reader does not know (text a test program printed) are skipped, with a warning;
  a node list ending in `+` continues on such lines.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, DecimalException
from pathlib import Path
from typing import Any

from pywats_client.converters.builtin import BuiltinConverter, ConversionOptions
from pywats_client.converters.textio import MB, read_text
from pywats_client.errors import ConversionError, IncompleteFileError
from pywats_client.report.model import (
    ReportDict,
    format_datetime,
    iter_steps,
    number_steps,
    roll_up_statuses,
)

log = logging.getLogger(__name__)

# A log of a whole shift is a few megabytes; anything this big is not a GR228x log, and
# reading it would take a small station's memory.
MAX_FILE_BYTES = 100 * MB
STEP_NAME_LIMIT = 100

_DATE = r"(\d{1,2})-([A-Za-z]{3})-(\d{2}|\d{4})\s+(\d{1,2}):(\d{2}):(\d{2})"
_PROGRAM_RE = re.compile(r"(.*?\.obc)\[\s*" + _DATE, re.IGNORECASE)
_UUT_RE = re.compile(r"@" + _DATE + r"(?:\s+SN\b[ \t]*(.*))?", re.IGNORECASE)
_END_RE = re.compile(r"([\"/?*&!\]])" + _DATE + r"\s*")
_BLOCK_RE = re.compile(r"\(([FOSBC])(?:\s+(.*))?")
_OVERRIDE_RE = re.compile(r"WATS_(\w+)\s*=(.*)", re.IGNORECASE)
_NODES_RE = re.compile(r"[\w,.\s+-]+")  # a node list continued from a line ending in "+"
# Numbers are bounded in length so that a line of digits cannot cost decimal arithmetic time.
_NUMBER = r"[-+]?(?:\d{1,30}(?:\.\d{0,30})?|\.\d{1,30})(?:[eE][-+]?\d{1,3})?"
_PREFIX = r"(?:MEG|[PNUMKG])?"
_QUANTITY_RE = re.compile(rf"({_NUMBER})({_PREFIX})", re.IGNORECASE)
_MEASUREMENT_RE = re.compile(
    rf"([^\s=#<>%()]+)([=#<>%])((?:{_NUMBER}){_PREFIX})?"
    r"(?:\(([^,()]*),([^,()]*)\)([A-Za-z]*))?(.*)",
    re.IGNORECASE,
)
_DETECT_PROGRAM_RE = re.compile(rb"\.obc\[\s*\d{1,2}-[A-Za-z]{3}-\d\d", re.IGNORECASE)
_DETECT_UUT_RE = re.compile(
    rb"^@\d{1,2}-[A-Za-z]{3}-\d{2,4}\s+\d{1,2}:\d\d(?::\d\d)?\s+SN\b", re.MULTILINE)


def _has_uut_line(head: bytes) -> bool:
    """`_DETECT_UUT_RE.search(head)`, tried only where a line starts with "@": a search for
    one byte is fast, and the pattern's scan of a whole head cost more than recognising most
    files (every file of an auto-detecting folder is asked)."""
    at = head.find(b"@")
    while at >= 0:
        if (at == 0 or head[at - 1] == 0x0A) and _DETECT_UUT_RE.match(head, at):
            return True
        at = head.find(b"@", at + 1)
    return False


_MONTHS = {name: n for n, name in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}
# Unit prefixes as the GR228x writes them: M is milli, MEG is mega.
_PREFIX_EXPONENT = {"": 0, "P": -12, "N": -9, "U": -6, "M": -3, "K": 3, "MEG": 6, "G": 9}
_EXPONENT_PREFIX = {-12: "p", -9: "n", -6: "u", -3: "m", 0: "", 3: "k", 6: "M", 9: "G"}
# Measurement type code -> unit. Codes not listed (AR arithmetic, RP, ...) have no known unit.
_UNITS = {"R": "Ohm", "CP": "F", "CS": "F", "V": "V", "DC": "V", "AC": "V", "LS": "H",
          "LP": "H", "HZ": "Hz"}
_SOURCE_SETTINGS = ("IS", "VS")  # current/voltage source settings: not measurements
_JUDGED = {"=": "P", "<": "F", ">": "F", "%": "F"}
# End-of-UUT character -> report result.
_END_CHARACTERS = "\"/?*&!]"
_VERDICTS = {'"': "P", "/": "F", "?": "T", "!": "T", "*": "E", "&": "E", "]": "T"}
_VERDICT_WORDS = {'"': "passed", "/": "failed", "?": "aborted", "!": "cancelled",
                  "*": "error", "&": "system error", "]": "returned to diagnose"}
_ABORTED = ("?", "!", "]")
_BLOCK_NAMES = {"F": "Fixture contact", "O": "Opens", "S": "Shorts", "B": "Bus test",
                "C": "Scratch probe"}
_SEVERITY = {"F": 1, "E": 2, "T": 3}
# WATS_<key>= lines the reader understands (keys compared without regard to case).
_OVERRIDE_KEYS = {key.lower(): key for key in (
    "partNumber", "partRevision", "sequenceName", "sequenceVersion", "operator", "stationName")}


class TeradyneICTConverter(BuiltinConverter):
    """Converts Teradyne GR228x ICT logs: one report per UUT in the file."""

    name = "TeradyneICTConverter"
    memory_ratio = 50.0  # peak RSS per input byte (bench_converters --memory: 48.0 on 1.3 MB)
    description = "Teradyne GR228x in-circuit test log (.LOG): one report per tested board"
    file_patterns = ("*.log",)

    def detect_with_reason(self, path: Path, head: bytes) -> tuple[float, str]:
        program = _DETECT_PROGRAM_RE.search(head) is not None
        uut = _has_uut_line(head)
        if program and uut:
            return 0.95, "GR228x program line (<program>.obc[date) and UUT lines (@date SN)"
        if uut:
            return 0.7, "GR228x UUT lines (@date SN), no program line"
        if program:
            return 0.6, "GR228x program line (<program>.obc[date), no UUT yet"
        return 0.0, ""

    def read(self, path: Path, options: ConversionOptions) -> dict[str, Any] | list[dict[str, Any]]:
        """One report (a `ReportDict`) per UUT; a list when the log holds several."""
        text = read_text(path, MAX_FILE_BYTES, "GR228x", options.encoding)
        reports = _Reader(path, options).read(text)
        return reports[0] if len(reports) == 1 else reports


# -- reading the file --------------------------------------------------------------------------


@dataclass
class _Uut:
    """One UUT while its lines are read."""

    line: int
    start: datetime
    serial: str
    program: str  # the program (.obc name) running when the UUT started, and its path
    program_path: str
    overrides: dict[str, str] = field(default_factory=dict)
    steps: list[dict[str, Any]] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)  # source line of each step
    # (component, unit, value) of the last step when it was a not-judged ("#") line
    unjudged: tuple[str, str, Decimal | None] | None = None
    continued: dict[str, Any] | None = None  # failure step whose node list ends in "+"
    unknown: list[int] = field(default_factory=list)


class _Reader:
    """Reads one file; keeps the state of the line machine."""

    def __init__(self, path: Path, options: ConversionOptions) -> None:
        self.path = path
        self.options = options
        self.program_path = ""
        self.program = ""  # program name: the .obc file name without extension
        self.overrides: dict[str, str] = {}  # WATS_ lines outside a UUT, for what follows
        self.uut: _Uut | None = None
        # UUTs read to their end: (uut, end character, end time, end line)
        self.closed: list[tuple[_Uut, str | None, datetime | None, int]] = []
        self.skipped = 0
        self.seen_program = False

    def error(self, line: int, text: str) -> ConversionError:
        return ConversionError(f"{self.path}: line {line}: {text}")

    def read(self, text: str) -> list[dict[str, Any]]:
        lines = text.split("\n")
        # A last line without a line end may be cut while being written: it must be
        # understood completely, or the file is taken as incomplete.
        open_end = len(lines) if not text.endswith("\n") else 0
        for number, raw in enumerate(lines, 1):
            line = raw.strip()
            if not line:
                if self.uut is not None:
                    self.uut.continued = None
                continue
            try:
                understood = self.line(number, line)
            except ConversionError:
                if number == open_end:
                    understood = False
                else:
                    raise
            if number == open_end and not understood:
                raise IncompleteFileError(
                    f"{self.path}: the last line ({number}) is cut off; the log is probably "
                    "still being written"
                )
        if self.uut is not None:
            raise IncompleteFileError(
                f"{self.path}: the UUT {self.uut.serial!r} started at line {self.uut.line} has "
                "no end-of-UUT line yet; the board is probably still being tested"
            )
        if not self.closed:
            if self.skipped:
                raise ConversionError(
                    f"{self.path}: every UUT in the log ({self.skipped}) was aborted before "
                    "any test ran; there is nothing to report"
                )
            if self.seen_program or not text.strip(" \t\r\n\x00\ufeff"):
                raise IncompleteFileError(
                    f"{self.path}: the log has no UUT yet; the first board is probably "
                    "still being tested"
                )
            raise ConversionError(
                f"{self.path}: no UUT found (no '@<date> SN <serial>' line); this is not a "
                "Teradyne GR228x log, or it is empty"
            )
        # Reports are built once the whole file is known to be complete: a configuration
        # problem (no process code) is then never taken for a file still being written.
        return [self.report(*closed) for closed in self.closed]

    def line(self, number: int, line: str) -> bool:
        """Take one non-blank line; False when it is text the reader does not know."""
        # The first character says what a line can be: one regex per line, not six (a log
        # holds thousands of measurement lines).
        first = line[0]
        if first == "@":
            match = _UUT_RE.fullmatch(line)
            if match:
                self.start_uut(number, match)
                return True
        elif first in _END_CHARACTERS:
            match = _END_RE.fullmatch(line)
            if match:
                if self.uut is not None:
                    self.finish(self.uut, first, self.moment(number, match, 2), number)
                return True  # between UUTs an end character is an event ("]" to diagnose)
        elif first in "Ww" and line[:5].upper() == "WATS_":
            match = _OVERRIDE_RE.fullmatch(line)
            if match:
                self.override(number, match, self.uut)
                return True
        if ".obc[" in line or ".OBC[" in line.upper():
            match = _PROGRAM_RE.match(line)
            if match:
                self.start_program(number, match)
                return True
        uut = self.uut
        if uut is None:
            return False  # stray text between UUTs: nothing to attach it to
        if first == "(":
            match = _BLOCK_RE.fullmatch(line)
            if match:
                self.failure_block(number, match, uut)
                return True
        else:
            match = _MEASUREMENT_RE.fullmatch(line)
            if match and self.measurement(number, match, uut):
                return True
        if uut.continued is not None and _NODES_RE.fullmatch(line):
            self.continue_block(line, uut)
            return True
        uut.unknown.append(number)
        return False

    def start_uut(self, number: int, match: re.Match[str]) -> None:
        uut = self.uut
        if uut is not None:
            log.warning("%s: UUT %r (line %d) has no end line before line %d; converted as "
                        "terminated", self.path, uut.serial, uut.line, number)
            self.finish(uut, None, None, number)
        serial = (match.group(7) or "").strip()
        if not serial:
            raise self.error(number, "the UUT has no serial number (expected '@<date> SN "
                             "<serial>'); the tester's serial number entry is empty")
        self.uut = _Uut(number, self.moment(number, match, 1), serial, self.program,
                        self.program_path)

    def start_program(self, number: int, match: re.Match[str]) -> None:
        uut = self.uut
        if uut is not None:
            log.warning("%s: a new program starts at line %d inside UUT %r (line %d); that UUT "
                        "is converted as terminated", self.path, number, uut.serial, uut.line)
            self.finish(uut, None, None, number)
        self.moment(number, match, 2)  # checks the date
        self.program_path = match.group(1)
        self.program = re.split(r"[\\/]", self.program_path)[-1][: -len(".obc")]
        self.seen_program = True

    # -- lines inside a UUT ------------------------------------------------------------------

    def override(self, number: int, match: re.Match[str], uut: _Uut | None) -> None:
        key, value = match.group(1).lower(), match.group(2).strip()
        if key not in _OVERRIDE_KEYS:
            log.warning("%s: line %d: unknown header line WATS_%s= ignored (known: %s)",
                        self.path, number, match.group(1),
                        ", ".join(f"WATS_{k}" for k in _OVERRIDE_KEYS.values()))
            return
        (uut.overrides if uut is not None else self.overrides)[key] = value

    def failure_block(self, number: int, match: re.Match[str], uut: _Uut) -> None:
        nodes = (match.group(2) or "").strip()
        step: dict[str, Any] = {
            "id": 0, "group": "M", "stepType": "ET_PFT", "name": _BLOCK_NAMES[match.group(1)],
            "status": "F", "booleanMeas": [{"status": "F"}],
        }
        if nodes:
            step["reportText"] = f"Nodes: {nodes}"
        self.add(uut, step, number)
        uut.continued = step if nodes.endswith("+") else None
        uut.unjudged = None

    def continue_block(self, line: str, uut: _Uut) -> None:
        step = uut.continued
        assert step is not None
        text = step.get("reportText", "Nodes:").removesuffix("+").rstrip()
        separator = "" if text.endswith((",", ":")) or line.startswith(",") else ","
        step["reportText"] = f"{text}{' ' if text.endswith(':') else separator}{line}"
        if not line.endswith("+"):
            uut.continued = None

    def measurement(self, number: int, match: re.Match[str], uut: _Uut) -> bool:
        """Add the step of a measurement line; False when the line is not one after all."""
        ref, mark, value_text, low_text, high_text, code, tail = match.groups()
        tail = tail.strip()
        has_limits = low_text is not None
        if not has_limits and tail:
            return False  # "Result=OK" and the like: text a test program printed
        code = (code or "").upper()
        uut.continued = None
        if code in _SOURCE_SETTINGS:
            return True
        message = tail.removeprefix("=").strip() if has_limits else ""
        value = self.quantity(number, value_text, "value") if value_text else None
        unit = _UNITS.get(code, "")
        earlier, uut.unjudged = uut.unjudged, None
        if earlier is not None and earlier[0] == ref and mark != "#":
            # "R211#...R" (measured) then "R211=...AR" (judged): one measurement, the judged
            # one; it keeps the unit of the measured value when it judges that same value.
            uut.steps.pop()
            uut.lines.pop()
            if not unit and value is not None and earlier[2] == _base(value):
                unit = earlier[1]
        if mark == "#":
            uut.unjudged = (ref, unit, _base(value) if value is not None else None)
        step_status = "D" if mark == "#" else _JUDGED[mark]
        meas_status = "P" if mark == "#" else step_status
        step: dict[str, Any] = {"id": 0, "group": "M"}
        if value is None:
            # No value (e.g. "D103_B1="): a pass/fail test.
            step.update(stepType="ET_PFT", name=_step_name(ref), status=step_status,
                        booleanMeas=[{"status": meas_status}])
        else:
            low = self.quantity(number, low_text, "low limit") if low_text else None
            high = self.quantity(number, high_text, "high limit") if high_text else None
            step.update(stepType="ET_NLT", name=_step_name(ref), status=step_status,
                        numericMeas=[self.numeric(number, value, low, high, unit, mark,
                                                  meas_status)])
        if message:
            step["reportText"] = message
        self.add(uut, step, number)
        return True

    def numeric(self, number: int, value: tuple[Decimal, int], low: tuple[Decimal, int] | None,
                high: tuple[Decimal, int] | None, unit: str, mark: str,
                status: str) -> dict[str, Any]:
        # The limits' scale, so that the unit of a test does not change from board to board;
        # without a unit, plain numbers (a prefix alone would say nothing).
        exponent = 0
        if unit:
            exponent = high[1] if high is not None else low[1] if low is not None else value[1]
        if mark == "#" or (low is None and high is None):
            op = "LOG"  # not judged by the tester, or nothing to judge against
        elif low is not None and high is not None:
            op = "GELE"
        else:
            op = "GE" if low is not None else "LE"
        meas: dict[str, Any] = {
            "compOp": op, "status": status,
            "unit": _EXPONENT_PREFIX[exponent] + unit if unit else "",
            "value": self.scaled(number, value, exponent),
        }
        if op in ("GE", "LE"):
            # WATS compares single-limit operators with lowLimit, even LE (formats.md §1.2).
            only = low if low is not None else high
            assert only is not None
            meas["lowLimit"] = self.scaled(number, only, exponent)
        else:
            if low is not None:
                meas["lowLimit"] = self.scaled(number, low, exponent)
            if high is not None:
                meas["highLimit"] = self.scaled(number, high, exponent)
        return meas

    def quantity(self, number: int, text: str, what: str) -> tuple[Decimal, int]:
        """(mantissa, power of ten) of a number with a GR228x unit prefix such as 4.7K."""
        match = _QUANTITY_RE.fullmatch(text.strip())
        if match is None:
            raise self.error(number, f"the {what} {text.strip()!r} is not a number with an "
                             "optional unit prefix (P N U M K MEG)")
        try:
            mantissa = Decimal(match.group(1))
        except DecimalException:
            raise self.error(number, f"the {what} {text.strip()!r} is not a number") from None
        return mantissa, _PREFIX_EXPONENT[match.group(2).upper()]

    def scaled(self, number: int, quantity: tuple[Decimal, int], exponent: int) -> float:
        mantissa, power = quantity
        try:
            result = float(mantissa.scaleb(power - exponent))
        except (DecimalException, OverflowError):
            result = math.inf
        if not math.isfinite(result):
            raise self.error(number, f"the number {mantissa} x 10^{power} is out of range")
        return result

    def add(self, uut: _Uut, step: dict[str, Any], number: int) -> None:
        uut.steps.append(step)
        uut.lines.append(number)

    # -- finishing a UUT -----------------------------------------------------------------------

    def finish(self, uut: _Uut, mark: str | None, end: datetime | None, number: int) -> None:
        self.uut = None
        if uut.unknown:
            log.warning("%s: UUT %r: %d line(s) not understood were skipped (first: line %d)",
                        self.path, uut.serial, len(uut.unknown), uut.unknown[0])
        if not uut.steps and (mark is None or mark in _ABORTED):
            self.skipped += 1
            log.info("%s: UUT %r (line %d) was %s before any test; no report",
                     self.path, uut.serial, uut.line,
                     _VERDICT_WORDS[mark] if mark else "ended")
            return
        # What holds for this UUT is fixed now: a later WATS_ line or program is not its.
        uut.overrides = {**self.overrides, **uut.overrides}
        self.closed.append((uut, mark, end, number))

    def report(self, uut: _Uut, mark: str | None, end: datetime | None,
               number: int) -> ReportDict:
        def header(key: str) -> str | None:
            return uut.overrides.get(key.lower()) or None

        options = self.options
        part = (header("partNumber") or options.argument("part_number")
                or (uut.program.split("_")[0] if uut.program else None)
                or options.part_number)
        if not part:
            raise self.error(uut.line, f"no part number for UUT {uut.serial!r}: the log has "
                             "no program line (<program>.obc[date) and no WATS_partNumber= "
                             "line; set part_number in the watch folder's converter arguments")
        sequence = (header("sequenceName") or options.argument("sequence_name")
                    or uut.program or options.sequence_name or "MainSequence")
        report = ReportDict()
        options.fill_header(report, pn=str(part), sn=uut.serial,
                            rev=header("partRevision") or options.revision,
                            lacks="GR228x logs do not name the WATS operation")
        root: dict[str, Any] = {
            "id": 0, "group": "M", "stepType": "SequenceCall", "name": _step_name(sequence),
            "seqCall": {
                "path": uut.program_path, "name": str(sequence),
                "version": header("sequenceVersion") or options.sequence_version,
            },
            "steps": uut.steps,
        }
        status = roll_up_statuses(root)
        verdict = _VERDICTS[mark] if mark else ("F" if status == "F" else "T")
        if _SEVERITY.get(verdict, 0) > _SEVERITY.get(status, 0):
            root["status"] = verdict  # the tester's verdict: aborted, error, failed
        report["result"] = verdict
        station = header("stationName") or options.station_name
        if station:
            report["machineName"] = station
        report["start"] = format_datetime(options.local(uut.start))
        report["root"] = root
        number_steps(root)
        details: dict[str, Any] = {}
        operator = header("operator") or options.operator
        if operator:
            details["user"] = operator
        if end is not None and end >= uut.start:
            details["execTime"] = (end - uut.start).total_seconds()
        report["uut"] = details
        report.locations[""] = f"UUT '@... SN {uut.serial}' at line {uut.line}"
        report.locations["root"] = f"line {uut.line}"
        where = {id(step): line for step, line in zip(uut.steps, uut.lines, strict=True)}
        for path, step in iter_steps(root):
            line = where.get(id(step))
            if line is not None:
                report.locations[path] = f"line {line}"
        if end is not None:
            report.locations["result"] = f"line {number}"
        return report

    def moment(self, number: int, match: re.Match[str], first: int) -> datetime:
        """The naive date-time in groups first.. of a match (DD-MMM-YY HH:MM:SS)."""
        day, month, year, hour, minute, second = match.group(*range(first, first + 6))
        month_number = _MONTHS.get(month.lower())
        if month_number is None:
            raise self.error(number, f"{month!r} is not a month (expected JAN ... DEC)")
        full_year = int(year) + (2000 if len(year) == 2 and int(year) < 70 else
                                 1900 if len(year) == 2 else 0)
        try:
            return datetime(full_year, month_number, int(day), int(hour), int(minute),
                            int(second))
        except ValueError as exc:
            raise self.error(number, f"the date {day}-{month}-{year} {hour}:{minute} is not "
                             f"valid: {exc}") from None


def _base(quantity: tuple[Decimal, int]) -> Decimal:
    """The value of (mantissa, power of ten) in base units, for comparing two lines."""
    return quantity[0].scaleb(quantity[1])


def _step_name(name: str) -> str:
    # The server refuses longer names; a cut name still finds the component.
    return name[:STEP_NAME_LIMIT]

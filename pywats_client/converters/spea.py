"""`SPEAConverter`: SPEA ICT (3030, "Bitron" layout) semicolon logs (formats.md §9) into WSJF.

Owns the SPEA log reader: one WSJF test report per board, i.e. per `START` … `END` block of
the file (a file holds several), with one sequence per run of test records of the same task
and one step per `ANL`/`FUNC` record. Pure: it reads the file and changes nothing.

Where the format leaves a choice, this reader decides so:

* Statuses are the file's own: a record whose status starts with PASS passes, FAIL (also
  `FAIL(+)`, `FAIL(-)`, `FAIL(+/-)`) fails, SKIP is skipped; nothing is compared with limits.
  A failed record fails its task sequence. The report result is the board's verdict: the
  worse of `BOARDRESULT` and `END` (PASS -> P, FAIL -> F, NONE -> E: the board was not
  judged), and the root step carries the same status. SPEA may pass a board whose
  retried task failed once (the `(2)` tasks), so the root is not rolled up from its steps.
* Records: limits both present, low <= high -> numeric GELE with the unit; low = high = 0 and
  no unit is "no limits": a record measuring 0 there is an action (connect, wait, set)
  and becomes an `Action` step, any other value a LOG measurement; low > high -> LOG. A
  measurement SPEA could not take (`-NAN`, `INF`) keeps its limits and status but has no
  value (JSON cannot carry NaN); the step's report text says what the file held. A
  measured text that is not a number (`Automatic` on short tests) is a LOG string
  measurement, an empty one a pass/fail step. `FUNC` records are pass/fail steps unless they
  carry a real range (low <= high, not both 0), then numeric GELE like `ANL`. One-sided
  limits (not seen in real logs) become GE, or LE compared with lowLimit as WATS does.
* Header: the part number and revision configured for the folder (`part_number`,
  `revision`) win over the file, as the product field of `START` is often the test program's
  name; without them pn is the product field and rev is empty. Operator: the `START` field,
  else the `operator` option. Process: the rule of every built-in converter
  (`ConversionOptions.process_code`; SPEA logs name no WATS process), applied once the whole
  file is read. Dates follow the block's `FORMAT` (`mmdd`, the default,
  or `ddmm`); naive times are in the folder's time zone.
* Encoding: as every text format (`textio.decode`): the folder's `encoding` when one is
  configured; otherwise UTF-8, and a file that is not valid UTF-8 is read as cp1252 (SPEA
  testers run Windows with German text).
* Truncation (`IncompleteFileError`): an empty file, a last line without line end that is not
  a complete `END` record (its time with seconds), a board without `END` at the end of the
  file, or a log with no board yet. A board without
  `END` before the next `FORMAT`/`START` is a `ConversionError`: the log is damaged.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pywats_client.converters.builtin import BuiltinConverter, ConversionOptions
from pywats_client.converters.textio import MB, read_text, reading
from pywats_client.errors import ConversionError, IncompleteFileError
from pywats_client.report.model import STEP_NAME_LIMIT, ReportDict, format_datetime, number_steps

log = logging.getLogger(__name__)

# 1.4 MB holds ten boards of a 1 300-test program; a file this big is not a SPEA log, and
# reading it would take a small station's memory.
MAX_FILE_BYTES = 64 * MB
DEFAULT_SEQUENCE_NAME = "SPEA ICT"

TEST_RECORDS = ("ANL", "FUNC")
KEYWORDS = ("FORMAT", "START", "LOT", *TEST_RECORDS, "SN", "BOARDRESULT", "END")

# Field positions of a test record; 0 is the keyword. ANL has 14 fields, FUNC 13 (no ID).
SITE, TASK, TASK_NO, TEST_NO, DESCRIPTION, F1, STATUS, MEASURED, LOW, HIGH, UNIT = range(1, 12)
# START;<program>;<test plan>;<test plan version>;<product>;<operator>;<date>;<time>
PROGRAM, TEST_PLAN, PLAN_VERSION, PRODUCT, OPERATOR, START_DATE, START_TIME = range(1, 8)
MIN_TEST_FIELDS = HIGH + 1  # a record without its limits is not a test record

_VERDICT = {"PASS": "P", "FAIL": "F", "NONE": "E"}
_SEVERITY = {"P": 0, "F": 1, "E": 2}
_DATE = re.compile(r"(\d{1,4})[/.-](\d{1,2})[/.-](\d{1,4})")
_TIME = re.compile(r"(\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:[.,](\d{1,6}))?)?")
_WHOLE_TIME = re.compile(r"\d{1,2}:\d{2}:\d{2}(?:[.,]\d{1,6})?")
_FIRST_KEYWORDS = ("FORMAT", "START")  # a log begins with one of these records
_DATE_ORDERS = ("mmdd", "ddmm")


class SPEAConverter(BuiltinConverter):
    """Converts SPEA ICT semicolon logs (several boards per file) into WSJF test reports."""

    name = "SPEAConverter"
    memory_ratio = 21.0  # peak RSS per input byte (scripts/bench.py memory: 19.8 on 1.3 MB)
    description = "SPEA ICT 3030 semicolon log (FORMAT/START/ANL/FUNC/SN/BOARDRESULT/END)"
    file_patterns = ("*.csv", "*.txt")

    def read(self, path: Path, options: ConversionOptions) -> dict[str, Any] | list[dict[str, Any]]:
        """One report (a `ReportDict`) per board in the file, in file order."""
        text = read_text(path, MAX_FILE_BYTES, "SPEA", options.encoding,
                         hint="check that the tester writes the right file into this folder, "
                              "or have it start a new log per lot")
        reports = _Reader(path, options).read(text)
        # Only once the whole file is read: a missing setting is never taken for a file
        # still being written.
        code = options.process_code(lacks="SPEA logs name no WATS process")
        for report in reports:
            report["processCode"] = code
        return list(reports)


_ASCII_BLANKS = re.compile(rb"[ \t\n\r\x0b\x0c\x1c-\x1f]*")  # as str.strip() sees them


@SPEAConverter.detection
def _detect(path: Path, head: bytes) -> tuple[float, str]:
    # The first character that is not blank must begin FORMAT; or START; (any case): a first
    # byte that cannot (ASCII, not f or s) settles it without decoding the head. A byte
    # above 0x7f may be a byte order mark, a blank or a letter upper() makes an S of.
    blanks = _ASCII_BLANKS.match(head)
    at = blanks.end() if blanks else 0
    first_byte = head[at:at + 1]
    if first_byte and first_byte < b"\x80" and first_byte not in b"FfSs":
        return 0.0, ""
    return _detect_head(head)


def _detect_head(head: bytes) -> tuple[float, str]:
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff")
    first = ""
    for line in text.split("\n", 50):
        if line.strip():
            first = line.strip().upper()
            break
    if not first.startswith(("FORMAT;", "START;")):
        return 0.0, ""
    upper = text.upper()
    if "\nANL;" in upper or "\nFUNC;" in upper:
        return 0.95, f"first line {first.split(';', 1)[0]};, then ANL;/FUNC; test records"
    if (first.startswith("START;") and first.count(";") >= START_TIME) or "\nSTART;" in upper:
        return 0.6, "a SPEA START; record, no test records in the first 64 KiB"
    return 0.0, ""


# -- the board state machine -----------------------------------------------------------------


@dataclass
class _Board:
    """One `START` … `END` block while it is read."""

    line: int  # of START
    date_order: str
    start: list[str]
    lot: str = ""
    serial: str = ""
    serial_line: int = 0
    board_result: str = ""
    board_result_line: int = 0
    tests: list[tuple[int, list[str]]] = field(default_factory=list)


class _Reader:
    """Reads one file; one instance per conversion (converters are shared between threads)."""

    def __init__(self, path: Path, options: ConversionOptions) -> None:
        self.path = path
        self.options = options
        self.reports: list[ReportDict] = []
        self.board: _Board | None = None
        self.date_order = "mmdd"
        self.warned: set[str] = set()

    def error(self, line: int, message: str) -> ConversionError:
        return ConversionError(f"{self.path}: line {line}: {message}")

    def read(self, text: str) -> list[ReportDict]:
        if not text.strip(" \t\r\n\x00"):
            raise IncompleteFileError(f"{self.path}: the file is empty; waiting for the tester")
        lines = text.split("\n")
        tail = lines.pop()  # after the last line end: "" for a finished file
        seen_first = False
        for number, raw in enumerate(lines, start=1):
            fields = raw.rstrip("\r").split(";")
            keyword = fields[0].strip().upper()
            if not keyword and len(fields) == 1:
                continue  # blank line
            if not seen_first:
                self.first_line(number, keyword, raw)
                seen_first = True
            self.record(number, keyword, fields)
        if tail.strip(" \t\r\x00"):
            number = len(lines) + 1
            fields = tail.rstrip("\r").split(";")
            keyword = fields[0].strip().upper()
            if not seen_first and not any(k.startswith(keyword) for k in _FIRST_KEYWORDS):
                self.first_line(number, keyword, tail)
            # A writer may leave out the last line end; only a whole END record is complete,
            # down to the last digit of its time ("16:29:2" is "16:29:21" being written).
            if (keyword != "END" or self.board is None or len(fields) < 4
                    or not _WHOLE_TIME.fullmatch(fields[3].strip())):
                raise IncompleteFileError(
                    f"{self.path}: line {number} has no line end yet (the tester is still "
                    "writing the file, or it was cut off)"
                )
            self.record(number, keyword, fields)
        if self.board is not None:
            raise IncompleteFileError(
                f"{self.path}: the board that starts at line {self.board.line} has no END "
                "record yet (the tester is still writing the file, or it was cut off)"
            )
        if not self.reports:
            # It begins as a SPEA log does (first_line), so its first board is still to come.
            raise IncompleteFileError(
                f"{self.path}: no board in the file yet (no START … END block); the tester is "
                "probably still testing the first board"
            )
        return self.reports

    def first_line(self, number: int, keyword: str, raw: str) -> None:
        if keyword not in ("FORMAT", "START"):
            shown = raw.strip()[:60]
            raise self.error(
                number, f"not a SPEA ICT log: it should begin with a FORMAT; or START; record, "
                f"found {shown!r}; bind this folder to the converter for this file's format"
            )

    def record(self, number: int, keyword: str, fields: list[str]) -> None:
        board = self.board
        if keyword in ("FORMAT", "START"):
            if board is not None:
                raise self.error(
                    number, f"{keyword} record, but the board that starts at line {board.line} "
                    "has no END record: the log is damaged (the tester stopped during that "
                    "board?); remove the unfinished board or convert the file by hand"
                )
            if keyword == "FORMAT":
                order = (fields[1] if len(fields) > 1 else "").strip().lower()
                if order not in _DATE_ORDERS:
                    raise self.error(number, f"FORMAT {order!r} is not one of "
                                     f"{', '.join(_DATE_ORDERS)} (the order of month and day)")
                self.date_order = order
            else:
                self.board = _Board(number, self.date_order, [f.strip() for f in fields])
            return
        if keyword not in KEYWORDS:
            if keyword not in self.warned:
                self.warned.add(keyword)
                log.warning("%s: line %d: unknown SPEA record %r ignored (and any later ones)",
                            self.path, number, keyword[:40])
            return
        if board is None:
            raise self.error(number, f"{keyword} record outside a board (no START before it)")
        value = fields[1].strip() if len(fields) > 1 else ""
        if keyword in TEST_RECORDS:
            if len(fields) < MIN_TEST_FIELDS:
                raise self.error(
                    number, f"{keyword} record with {len(fields)} fields; a test record has "
                    f"13 or 14 (…;status;measured;low;high;unit;…)"
                )
            board.tests.append((number, fields))
        elif keyword == "LOT":
            board.lot = value
        elif keyword == "SN":
            board.serial, board.serial_line = value, number
        elif keyword == "BOARDRESULT":
            board.board_result, board.board_result_line = value, number
        else:  # END
            self.reports.append(_Builder(self, board, fields, number).report())
            self.board = None


# -- building a report -----------------------------------------------------------------------


class _Builder:
    """Turns one finished board into a WSJF report."""

    def __init__(self, reader: _Reader, board: _Board, end: list[str], end_line: int) -> None:
        self.reader = reader
        self.options = reader.options
        self.board = board
        self.end = [f.strip() for f in end]
        self.end_line = end_line

    def start_field(self, index: int) -> str:
        return self.board.start[index] if len(self.board.start) > index else ""

    def report(self) -> ReportDict:
        board, options = self.board, self.options
        report = ReportDict()
        report.locations[""] = f"the board at lines {board.line}-{self.end_line}"
        product = self.start_field(PRODUCT)
        pn = options.part_number or product
        if not pn:
            raise self.reader.error(
                board.line, "the START record has no product (5th field) and no part_number "
                "is configured; set part_number in the watch folder's converter arguments"
            )
        if not board.serial:
            where = f"the SN record at line {board.serial_line} is empty" if (
                board.serial_line) else "there is no SN record"
            raise self.reader.error(
                board.line, f"the board at lines {board.line}-{self.end_line} has no serial "
                f"number ({where}); WATS needs one per board"
            )
        result = self.result()
        # processCode is set once the whole file is read (see convert()).
        report.update({"type": "T", "pn": pn, "sn": board.serial, "rev": options.revision,
                       "processCode": None})
        report.locations.update({"pn": f"line {board.line}", "sn": f"line {board.serial_line}",
                                 "result": f"line {self.end_line}"})
        if options.process_name:
            report["processName"] = options.process_name
        report["result"] = result
        if options.station_name:
            report["machineName"] = options.station_name
        start = self.moment(board.line, START_DATE, self.board.start)
        if start is not None:
            report["start"] = format_datetime(start)
            report.locations["start"] = f"line {board.line}"
        uut: dict[str, Any] = {}
        user = self.start_field(OPERATOR) or options.operator
        if user:
            uut["user"] = user
        if board.lot:
            uut["batchSN"] = board.lot
        end = self.moment(self.end_line, 2, self.end)
        if start is not None and end is not None and end >= start:
            uut["execTime"] = (end - start).total_seconds()
        report["uut"] = uut
        if options.part_number and product and product != options.part_number:
            report["miscInfos"] = [{"description": "SPEA product", "text": product[:100]}]
        root, places = self.steps()
        root["status"] = result
        report["root"] = root
        report.find_locations = places
        return report

    def result(self) -> str:
        """The worse of BOARDRESULT and END; neither: passed unless a record failed."""
        verdicts = []
        for word, line, what in ((self.board.board_result, self.board.board_result_line,
                                  "BOARDRESULT"),
                                 (self.end[1] if len(self.end) > 1 else "", self.end_line, "END")):
            if not word:
                continue
            letter = _VERDICT.get(word.upper())
            if letter is None:
                raise self.reader.error(
                    line, f"{what} {word[:40]!r} is not PASS, FAIL or NONE; this reader does "
                    "not know what the tester meant by it"
                )
            verdicts.append(letter)
        if not verdicts:
            failed = any(_status_word(f[STATUS]).startswith("FAIL") for _, f in self.board.tests)
            return "F" if failed else "P"
        return max(verdicts, key=_SEVERITY.__getitem__)

    def moment(self, line: int, index: int, fields: list[str]) -> datetime | None:
        """The naive date + time at `fields[index]`, `fields[index + 1]` in the folder's zone."""
        date_text = fields[index] if len(fields) > index else ""
        time_text = fields[index + 1] if len(fields) > index + 1 else ""
        if not date_text:
            return None
        date_match, time_match = _DATE.fullmatch(date_text), _TIME.fullmatch(time_text or "0:00")
        if date_match is None or time_match is None:
            raise self.reader.error(
                line, f"date {date_text!r} {time_text!r} is not MM/DD/YYYY HH:MM:SS "
                f"(FORMAT {self.board.date_order})"
            )
        a, b, c = (int(part) for part in date_match.groups())
        if len(date_match.group(1)) == 4:
            year, month, day = a, b, c
        elif self.board.date_order == "ddmm":
            day, month, year = a, b, c
        else:
            month, day, year = a, b, c
        if year < 100:
            year += 2000  # two-digit years: SPEA testers are younger than 2000
        hour, minute = int(time_match.group(1)), int(time_match.group(2))
        second = int(time_match.group(3) or 0)
        micro = int((time_match.group(4) or "").ljust(6, "0"))
        try:
            return self.options.local(datetime(year, month, day, hour, minute, second, micro))
        except (ValueError, OverflowError, OSError) as exc:
            raise self.reader.error(
                line, f"date {date_text!r} {time_text!r} (FORMAT {self.board.date_order}): "
                f"{exc}"
            ) from None

    # -- steps -----------------------------------------------------------------------------

    def steps(self) -> tuple[dict[str, Any], Callable[[], dict[str, str]]]:
        """The root sequence with one sequence per run of records of the same task."""
        options = self.options
        name = self.start_field(TEST_PLAN) or options.sequence_name or DEFAULT_SEQUENCE_NAME
        seq_call: dict[str, Any] = {"name": name}
        if self.start_field(PROGRAM):
            seq_call["path"] = self.start_field(PROGRAM)
        version = self.start_field(PLAN_VERSION) or options.sequence_version
        if version:
            seq_call["version"] = version
        children: list[dict[str, Any]] = []
        root: dict[str, Any] = {"id": 0, "group": "M", "stepType": "SequenceCall",
                                "name": name[:STEP_NAME_LIMIT], "status": "P",
                                "seqCall": seq_call, "steps": children}
        # (first line, lines of its records) per sequence, for the places of invalid steps
        lines: list[tuple[int, list[int]]] = []
        key: tuple[str, str, str] | None = None
        sequence: dict[str, Any] = {}
        for number, fields in self.board.tests:
            task, task_no = fields[TASK].strip(), fields[TASK_NO].strip()
            here = (fields[0].strip().upper(), task, task_no)
            if here != key:
                key = here
                title = task or f"Task {task_no}"
                sequence = {"id": 0, "group": "M", "stepType": "SequenceCall",
                            "name": title[:STEP_NAME_LIMIT], "status": "P",
                            "seqCall": {"name": title}, "steps": []}
                children.append(sequence)
                lines.append((number, []))
            step = self.test_step(number, fields)
            sequence["steps"].append(step)
            lines[-1][1].append(number)
            if step["status"] == "F":
                sequence["status"] = "F"  # a failed record fails its task
        number_steps(root)  # ids in tree order, as WATS exports them

        first_line = self.board.line

        def places() -> dict[str, str]:
            # Only line numbers are kept alive with the report, not the parsed records.
            found = {"root": f"line {first_line}"}
            for n, (first, record_lines) in enumerate(lines):
                found[f"root.steps[{n}]"] = f"line {first}"
                for m, line in enumerate(record_lines):
                    found[f"root.steps[{n}].steps[{m}]"] = f"line {line}"
            return found

        return root, places

    def test_step(self, number: int, fields: list[str]) -> dict[str, Any]:
        keyword = fields[0].strip().upper()
        description = fields[DESCRIPTION].strip()
        title = description or fields[TASK].strip() or f"Test {fields[TEST_NO].strip()}"
        word = _status_word(fields[STATUS])
        status = _status_letter(word)
        if status is None:
            raise self.reader.error(
                number, f"{keyword} status {fields[STATUS].strip()[:40]!r} is not PASS, FAIL "
                "or SKIP"
            )
        step: dict[str, Any] = {"id": 0, "group": "M", "stepType": "",
                                "name": title[:STEP_NAME_LIMIT], "status": status}
        notes = [] if len(title) <= STEP_NAME_LIMIT else [title]
        low = self.limit(number, fields, LOW, "low limit")
        high = self.limit(number, fields, HIGH, "high limit")
        unit = fields[UNIT].strip() if len(fields) > UNIT else ""
        measured = fields[MEASURED].strip()
        kind, value = reading(measured)
        no_limits = low == 0 and high == 0 and not unit
        ranged = low is not None and high is not None and low <= high and not no_limits
        if not measured or (keyword == "FUNC" and not ranged and kind == "number"):
            # FUNC "1;1;0" records are pass/fail; an empty reading is a verdict only
            step["stepType"] = "ET_PFT"
            step["booleanMeas"] = [{"status": status}]
        elif kind == "text":
            step["stepType"] = "ET_SVT"
            step["stringMeas"] = [{"compOp": "LOG", "status": status, "value": measured}]
        elif no_limits and value == 0:
            step["stepType"] = "Action"  # connect, wait, set: nothing measured
        else:
            measurement: dict[str, Any] = {"compOp": "LOG", "status": status, "unit": unit}
            if value is not None:
                measurement["value"] = value
            else:
                notes.append(f"SPEA wrote {measured[:40]!r} for the measured value: no valid "
                             "reading")
            if ranged:
                measurement.update(compOp="GELE", lowLimit=low, highLimit=high)
            elif low is not None and high is None:
                measurement.update(compOp="GE", lowLimit=low)
            elif high is not None and low is None:
                # WATS compares single-limit operators with lowLimit, LE included.
                measurement.update(compOp="LE", lowLimit=high)
            step["stepType"] = "ET_NLT"
            step["numericMeas"] = [measurement]
        if notes:
            step["reportText"] = "; ".join(notes)
        return step

    def limit(self, number: int, fields: list[str], index: int, what: str) -> float | None:
        text = fields[index].strip() if len(fields) > index else ""
        kind, value = reading(text)
        if kind == "text" and text:
            raise self.reader.error(
                number, f"{fields[0].strip()} {what} {text[:40]!r} is not a number"
            )
        return value  # an infinite limit is no limit: None


def _status_word(text: str) -> str:
    return text.strip().upper()


def _status_letter(word: str) -> str | None:
    if word.startswith("PASS"):
        return "P"
    if word.startswith("FAIL"):
        return "F"
    if word.startswith("SKIP"):
        return "S"
    return None

"""`SeicaXMLConverter`: Seica flying-probe XML results (Kitron variant, formats.md §8) into WSJF.

Owns reading these files safely (DOCTYPE and ENTITY refused, a size cap, a nesting cap, a line
number on every element) and mapping each board (`<BI>`) to one WSJF test report. No public
sample of this format exists: the layout below is the one described by the pyWATS port of
Kitron's converter, and is unverified against real equipment. Pure; imports only the converter
base, `report`, `limits`, `errors` and the stdlib.

The file, as read here (element and attribute names in any case):

    <R>                                   root; PrgC and FidMrk children are ignored
      <ST NM="program_version" OP="operator" NMP="board name"/>
      <BI BC="barcode" BCP="serial number" SD="dd-MM-yyyy HH:mm:ss">     one per board
        <TEST F="group" NM="name" MR="measured" ML="low" MH="high" MU="unit" TR="0|1"
              TT="milliseconds"/>
      </BI>
      <ET ED="dd-MM-yyyy HH:mm:ss" NF="0 = pass, else fail"/>
    </R>

Where the description leaves a choice, this reader decides so:

* sn is `BCP`, else `BC` (then kept as misc info "Barcode" when both differ). pn and rev are
  the configured `part_number`/`revision` when set (the program name is not a part number
  everywhere), else `ST@NM` split at the first `_` or blank: "PCB1234_B" -> PCB1234, rev B.
* Consecutive TESTs of one group `F` form a sequence; TESTs without a group sit under the root.
  A TEST with a number in `MR` is a numeric step: GELE with both limits (LOG when low > high),
  GE with only `ML`, LE (compared with lowLimit, as WATS does) with only `MH`, LOG with none.
  A text `MR` is a LOG string step, a missing one a pass/fail step. `MR` NaN/INF keeps limits
  and status but no value (JSON cannot carry NaN).
* Status: `TR` 0 = passed, anything else failed; without `TR` it is computed from the limits.
  A failed test fails its sequence and its board. A board's result is Failed when one of its
  tests failed, or when `ET@NF` says the run failed and no board of the file has a failed
  test (the failure cannot be placed); otherwise Passed. The root step has the same status.
* Times: `SD` is the board's start, in the folder's time zone; the execution time is
  `ED - SD` for a file with one board, else the sum of its tests' `TT`.
* An XML file cut off before `</R>` is still being written (`IncompleteFileError`).
"""

from __future__ import annotations

import codecs
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from xml.parsers import expat

from pywats_client.converters.base import Converter, ConverterContext
from pywats_client.errors import ConversionError, IncompleteFileError
from pywats_client.limits import LOG, numeric_status
from pywats_client.report import STEP_NAME_LIMIT, ReportDict, format_datetime, number_steps

# Real result files are kilobytes to a few megabytes; anything this big is not one.
MAX_FILE_BYTES = 64 * 1024 * 1024
# The format nests three levels; the cap stops a hostile file from costing anything.
MAX_DEPTH = 32
DEFAULT_PROCESS_CODE = 10
DEFAULT_SEQUENCE_NAME = "Seica flying probe"

_HOSTILE = tuple(marker.encode(codec) for marker in ("<!DOCTYPE", "<!ENTITY")
                 for codec in ("utf-8", "utf-16-le", "utf-16-be"))
_TRUNCATED = {expat.errors.codes[message] for message in (
    expat.errors.XML_ERROR_NO_ELEMENTS, expat.errors.XML_ERROR_UNCLOSED_TOKEN,
    expat.errors.XML_ERROR_PARTIAL_CHAR, expat.errors.XML_ERROR_UNCLOSED_CDATA_SECTION,
)}
# The root element <R> after an optional BOM, XML declaration and comments.
_ROOT = re.compile(rb"\s*(?:<\?xml[^>]{0,200}\?>\s*)?(?:<!--(?:[^-]|-[^-]){0,2000}-->\s*)*"
                   rb"<[Rr][\s/>]")
_DECLARED_ENCODING = re.compile(rb"<\?xml[^>]{0,200}encoding\s*=", re.IGNORECASE)
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,4})?")
_NOT_FINITE = re.compile(r"[+-]?(?:nan|inf(?:inity)?|1\.#(?:inf|ind|qnan|snan)0*)",
                         re.IGNORECASE)
_MOMENT = re.compile(r"(\d{1,4})[-./](\d{1,2})[-./](\d{1,4})(?:[ T]+(\d{1,2}):(\d{1,2})"
                     r"(?::(\d{1,2})(?:[.,](\d{1,6}))?)?)?")
_SEPARATOR = re.compile(r"[_\s]+")


class SeicaXMLConverter(Converter):
    """Converts Seica flying-probe XML result files: one WSJF test report per `<BI>` board."""

    name = "SeicaXMLConverter"
    description = "Seica flying-probe XML (<R> with ST, BI boards of TEST results, ET)"
    version = "1.0"
    file_patterns = ("*.xml",)

    def detect(self, path: Path, head: bytes) -> float:
        return self.detect_with_reason(path, head)[0]

    def detect_with_reason(self, path: Path, head: bytes) -> tuple[float, str]:
        try:
            return _detect(head)
        except Exception:  # detect() must never raise; a surprise means "not mine"
            return 0.0, ""

    def convert(
        self, path: Path, context: ConverterContext
    ) -> dict[str, Any] | list[dict[str, Any]]:
        """One report (a `ReportDict`) per `<BI>` board, in file order."""
        configured = self.option(context, "encoding")
        if configured is None and context.encoding.lower().replace("_", "-") not in (
                "utf-8", "utf8", ""):
            configured = context.encoding
        builder = _Builder(path, _Options.from_context(self, context))
        # Each board is turned into steps as soon as it is read, so that only one board's
        # raw elements are held at a time.
        document = _parse(path, _read(path), str(configured) if configured else None,
                          builder.finish_board)
        return builder.reports(document)


@dataclass(frozen=True)
class _Options:
    """The folder's settings this converter uses, looked up once per file."""

    part_number: str
    revision: str
    process_code: int
    process_name: str
    operator: str
    station_name: str
    sequence_name: str
    sequence_version: str
    zone: Any  # tzinfo | None

    @classmethod
    def from_context(cls, converter: Converter, context: ConverterContext) -> _Options:
        def text(key: str) -> str:
            return str(converter.option(context, key, "") or "").strip()

        raw_code = converter.option(context, "process_code", DEFAULT_PROCESS_CODE)
        try:
            code = int(str(raw_code).strip())
        except ValueError:
            raise ConversionError(
                f"the process_code setting {raw_code!r} is not a whole number; fix it in the "
                "watch folder's converter arguments or in converters.defaults"
            ) from None
        return cls(text("part_number"), text("revision"), code, text("process_name"),
                   text("operator"), text("station_name"), text("sequence_name"),
                   text("sequence_version"), context.timezone)


# -- reading the file ------------------------------------------------------------------------


@dataclass
class _Element:
    """An element of interest: its attributes (names upper-cased) and line."""

    attrs: dict[str, str]
    line: int
    tag: str

    def get(self, name: str) -> str:
        return self.attrs.get(name, "").strip()

    def place(self) -> str:
        name = self.get("NM") or self.get("BCP") or self.get("BC")
        label = f' NM="{name[:40]}"' if self.tag == "TEST" and name else ""
        return f"<{self.tag}{label}> at line {self.line}"


@dataclass
class _Board:
    element: _Element
    tests: list[_Element] = field(default_factory=list)  # emptied once the steps are built
    root: dict[str, Any] = field(default_factory=dict)
    failed: bool = False
    places: Callable[[], dict[str, str]] | None = None
    test_seconds: float | None = None  # the sum of its tests' TT


@dataclass
class _Document:
    st: _Element | None = None
    et: _Element | None = None
    boards: list[_Board] = field(default_factory=list)


def _read(path: Path) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ConversionError(
                f"{path}: the file is {size // (1024 * 1024)} MB; Seica result files over "
                f"{MAX_FILE_BYTES // (1024 * 1024)} MB are refused (check that the tester "
                "writes the right file into this folder)"
            )
        return path.read_bytes()
    except OSError as exc:
        raise ConversionError(f"{path}: cannot read the file: {exc.strerror or exc}") from exc


def _detect(head: bytes) -> tuple[float, str]:
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        head = head.decode("utf-16", errors="replace").encode("utf-8")
    head = head.removeprefix(codecs.BOM_UTF8)
    if _ROOT.match(head) is None:
        return 0.0, ""
    upper = head.upper()
    has = {tag: b"<" + tag in upper for tag in (b"ST ", b"BI ", b"ET ", b"TEST ", b"PRGC",
                                                 b"FIDMRK")}
    if has[b"ST "] and has[b"BI "]:
        if has[b"ET "] or has[b"PRGC"] or has[b"FIDMRK"]:
            return 0.95, "XML root <R> with ST, BI and ET/PrgC elements (Seica flying probe)"
        return 0.9, "XML root <R> with ST and BI elements (Seica flying probe)"
    if has[b"BI "] or has[b"TEST "]:
        return 0.4, "XML root <R> with BI/TEST elements, but no ST in the first 64 KiB"
    return 0.0, ""


def _parse(path: Path, data: bytes, configured: str | None,
           finish_board: Callable[[_Board], None]) -> _Document:
    """Read the elements this converter needs, with their lines; refuses DTDs and entities.
    `finish_board` is called with each board when its element closes."""
    if not data.strip(b" \t\r\n\x00"):
        raise IncompleteFileError(f"{path}: the file is empty; waiting for the tester")
    for marker in _HOSTILE:
        at = data.find(marker)
        if at >= 0:
            line = data.count(b"\n", 0, at) + 1
            raise ConversionError(
                f"{path}: line {line}: the file declares a DOCTYPE or "
                "ENTITY; Seica result files never do, and such declarations can make a "
                "parser expand data without bound, so the file is refused"
            )
    encoding = configured
    if encoding is not None:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise ConversionError(
                f"{path}: unknown encoding {encoding!r} in the watch folder's settings; use a "
                "Python codec name such as utf-8 or cp1252"
            ) from None
    elif not data.startswith((codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) and (
            _DECLARED_ENCODING.match(data) is None and not _is_utf8(data)):
        encoding = "cp1252"  # undeclared and not UTF-8: the Windows code page wrote it
    reader = _XmlReader(path, finish_board)
    parser = expat.ParserCreate(encoding)
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    reader.parser = parser
    parser.StartElementHandler = reader.start
    parser.EndElementHandler = reader.end
    parser.StartDoctypeDeclHandler = reader.refuse
    parser.EntityDeclHandler = reader.refuse
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        if exc.code in _TRUNCATED:
            raise IncompleteFileError(
                f"{path}: the XML ends at line {exc.lineno} before </R> (the tester is still "
                "writing the file, or it was cut off)"
            ) from None
        raise ConversionError(
            f"{path}: line {exc.lineno}, column {exc.offset + 1}: not well-formed XML "
            f"({expat.errors.messages.get(exc.code, exc)}); is this a Seica result file?"
        ) from None
    except (LookupError, ValueError) as exc:  # an encoding expat cannot use
        raise ConversionError(f"{path}: cannot read the XML: {exc}") from None
    if not reader.document.boards:
        raise ConversionError(f"{path}: the file has no <BI> board element, so no report")
    return reader.document


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A character cut by the end of the file is a truncation, not another encoding.
        return exc.reason == "unexpected end of data" and exc.end >= len(data)
    return True


class _XmlReader:
    """expat callbacks collecting ST, ET, BI and their TEST elements."""

    def __init__(self, path: Path, finish_board: Callable[[_Board], None]) -> None:
        self.path = path
        self.finish_board = finish_board
        self.parser: Any = None
        self.document = _Document()
        self.depth = 0
        self.board: _Board | None = None

    def refuse(self, *_: Any) -> None:
        raise ConversionError(
            f"{self.path}: line {self.parser.CurrentLineNumber}: the file declares a DOCTYPE "
            "or ENTITY, which Seica result files never do; the file is refused"
        )

    def start(self, name: str, attrs: dict[str, str]) -> None:
        self.depth += 1
        line = self.parser.CurrentLineNumber
        if self.depth > MAX_DEPTH:
            raise ConversionError(
                f"{self.path}: line {line}: elements nested more than {MAX_DEPTH} deep; a "
                "Seica result file has three levels"
            )
        tag = name.upper()
        if self.depth == 1:
            if tag != "R":
                raise ConversionError(
                    f"{self.path}: line {line}: the root element is <{name[:40]}>, not <R>: "
                    "not a Seica flying-probe result file"
                )
            return
        if self.depth == 2 and tag in ("ST", "ET", "BI"):
            element = _Element({key.upper(): value for key, value in attrs.items()}, line, tag)
            if tag == "BI":
                self.board = _Board(element)
                self.document.boards.append(self.board)
            elif tag == "ST":
                self.document.st = element
            else:
                self.document.et = element
        elif tag == "TEST" and self.board is not None:
            self.board.tests.append(
                _Element({key.upper(): value for key, value in attrs.items()}, line, tag))

    def end(self, name: str) -> None:
        if self.depth == 2 and name.upper() == "BI" and self.board is not None:
            self.finish_board(self.board)
            self.board = None
        self.depth -= 1


# -- building the reports ----------------------------------------------------------------------


class _Builder:
    """Turns the boards of one file into WSJF reports."""

    def __init__(self, path: Path, options: _Options) -> None:
        self.path = path
        self.options = options
        self.document = _Document()
        self.st = _Element({}, 0, "ST")

    def error(self, element: _Element, message: str) -> ConversionError:
        return ConversionError(f"{self.path}: {element.place()}: {message}")

    def finish_board(self, board: _Board) -> None:
        """Build the steps of a board that has been read, and let go of its elements."""
        board.root, board.failed, board.places = self.board_steps(board)
        times = [t for t in (self.number(test, "TT") for test in board.tests) if t is not None]
        board.test_seconds = sum(times) / 1000 if times else None
        board.tests = []

    def reports(self, document: _Document) -> list[dict[str, Any]]:
        self.document = document
        if document.st is not None:
            self.st = document.st
        any_failed = any(board.failed for board in document.boards)
        et = document.et
        verdict = et.get("NF") if et is not None else ""
        run_failed = bool(verdict) and verdict != "0"
        return [self.report(board, "F" if board.failed or (run_failed and not any_failed)
                            else "P") for board in document.boards]

    def report(self, board: _Board, result: str) -> ReportDict:
        options, bi, root = self.options, board.element, board.root
        report = ReportDict()
        report.locations[""] = bi.place()
        sn = bi.get("BCP") or bi.get("BC")
        if not sn:
            raise self.error(bi, "the board has neither BCP (serial number) nor BC (barcode); "
                             "WATS needs a serial number per board")
        program = self.st.get("NM")
        parts = _SEPARATOR.split(program, maxsplit=2) if program else []
        pn = options.part_number or (parts[0] if parts else "")
        if not pn:
            raise self.error(
                self.st if self.document.st else bi,
                "no part number: <ST NM=\"program_version\"> is missing or empty and no "
                "part_number is configured; set part_number in the watch folder's converter "
                "arguments")
        rev = options.revision or (parts[1] if len(parts) > 1 else "")
        report.update({"type": "T", "pn": pn, "sn": sn, "rev": rev,
                       "processCode": options.process_code})
        if options.process_name:
            report["processName"] = options.process_name
        report["result"] = result
        if options.station_name:
            report["machineName"] = options.station_name
        start = self.moment(bi, "SD")
        if start is not None:
            report["start"] = format_datetime(start)
        uut: dict[str, Any] = {}
        user = self.st.get("OP") or options.operator
        if user:
            uut["user"] = user
        exec_time = self.exec_time(board, start)
        if exec_time is not None:
            uut["execTime"] = exec_time
        report["uut"] = uut
        misc = []
        if self.st.get("NMP"):
            misc.append({"description": "Board name", "text": self.st.get("NMP")[:100]})
        if bi.get("BCP") and bi.get("BC") and bi.get("BC") != bi.get("BCP"):
            misc.append({"description": "Barcode", "text": bi.get("BC")[:100]})
        if misc:
            report["miscInfos"] = misc
        name = program or options.sequence_name or DEFAULT_SEQUENCE_NAME
        seq_call: dict[str, Any] = {"name": name}
        version = (parts[1] if len(parts) > 1 else "") or options.sequence_version
        if version:
            seq_call["version"] = version
        root["name"] = name[:STEP_NAME_LIMIT]
        root["seqCall"] = seq_call
        root["status"] = result
        report["root"] = root
        report.locations.update({"sn": bi.place(), "start": bi.place()})
        if self.document.st is not None:
            report.locations.update({"pn": self.st.place(), "rev": self.st.place(),
                                     "uut": self.st.place()})
        report.find_locations = board.places
        return report

    def exec_time(self, board: _Board, start: datetime | None) -> float | None:
        et = self.document.et
        if len(self.document.boards) == 1 and start is not None and et is not None:
            end = self.moment(et, "ED")
            if end is not None and end >= start:
                return (end - start).total_seconds()
        return board.test_seconds

    def moment(self, element: _Element, attr: str) -> datetime | None:
        text = element.get(attr)
        if not text:
            return None
        match = _MOMENT.fullmatch(text)
        if match is None:
            raise self.error(element, f"{attr}={text[:40]!r} is not a date like "
                             "14-03-2024 09:12:45 (dd-MM-yyyy HH:mm:ss)")
        a, b, c, hour, minute, second, fraction = match.groups()
        if len(a) == 4:
            year, month, day = int(a), int(b), int(c)
        else:
            day, month, year = int(a), int(b), int(c)
        try:
            moment = datetime(year, month, day, int(hour or 0), int(minute or 0),
                              int(second or 0), int((fraction or "").ljust(6, "0")))
            zone = self.options.zone
            return moment.replace(tzinfo=zone) if zone is not None else moment.astimezone()
        except (ValueError, OverflowError, OSError) as exc:
            raise self.error(element, f"{attr}={text[:40]!r}: {exc}") from None

    def number(self, element: _Element, attr: str) -> float | None:
        """A finite number attribute; empty or infinite is None, text is an error."""
        text = element.get(attr)
        kind, value = _reading(text)
        if kind == "text" and text:
            raise self.error(element, f"{attr}={text[:40]!r} is not a number")
        return value

    # -- steps -----------------------------------------------------------------------------

    def board_steps(
        self, board: _Board
    ) -> tuple[dict[str, Any], bool, Callable[[], dict[str, str]]]:
        """The root step of a board (name and seqCall filled later), whether a test failed,
        and the finder of the source places of its steps."""
        children: list[dict[str, Any]] = []
        root: dict[str, Any] = {"id": 0, "group": "M", "stepType": "SequenceCall",
                                "name": "", "status": "P", "seqCall": {}, "steps": children}
        places: list[tuple[str, _Element]] = []
        group: str | None = None
        sequence: dict[str, Any] | None = None
        failed = False
        for test in board.tests:
            here = test.get("F")
            if not here:
                sequence, group = None, None
                parent, where = children, f"root.steps[{len(children)}]"
            else:
                if sequence is None or here != group:
                    group = here
                    sequence = {"id": 0, "group": "M", "stepType": "SequenceCall",
                                "name": here[:STEP_NAME_LIMIT], "status": "P",
                                "seqCall": {"name": here}, "steps": []}
                    places.append((f"root.steps[{len(children)}]", test))
                    children.append(sequence)
                parent = sequence["steps"]
                where = f"root.steps[{len(children) - 1}].steps[{len(parent)}]"
            step = self.test_step(test)
            parent.append(step)
            places.append((where, test))
            if step["status"] == "F":
                failed = True
                if sequence is not None and parent is sequence["steps"]:
                    sequence["status"] = "F"  # a failed test fails its group
        number_steps(root)  # ids in tree order, as WATS exports them

        root_place = board.element.place()
        # Only names and lines are kept alive with the report, not the parsed elements.
        spots = [(where, element.line, element.get("NM")[:40]) for where, element in places]

        def find() -> dict[str, str]:
            found = {"root": root_place}
            found.update((where, f'<TEST NM="{name}"> at line {line}' if name else
                          f"<TEST> at line {line}") for where, line, name in spots)
            return found

        return root, failed, find

    def test_step(self, test: _Element) -> dict[str, Any]:
        title = test.get("NM") or f"Test at line {test.line}"
        step: dict[str, Any] = {"id": 0, "group": "M", "stepType": "",
                                "name": title[:STEP_NAME_LIMIT], "status": "P"}
        notes = [] if len(title) <= STEP_NAME_LIMIT else [title]
        verdict = test.get("TR")
        status: str | None = None if not verdict else ("P" if verdict == "0" else "F")
        measured = test.get("MR")
        kind, value = _reading(measured)
        low, high = self.number(test, "ML"), self.number(test, "MH")
        if not measured:
            if status is None:
                step["stepType"], step["status"] = "Action", "D"  # ran, no verdict, no value
            else:
                step["stepType"] = "ET_PFT"
                step["booleanMeas"] = [{"status": status}]
        elif kind == "text":
            status = status or "P"  # a logged text passes unless the file says otherwise
            step["stepType"] = "ET_SVT"
            step["stringMeas"] = [{"compOp": LOG, "status": status, "value": measured}]
        else:
            measurement: dict[str, Any] = {"compOp": LOG, "status": "P", "unit": test.get("MU")}
            if value is not None:
                measurement["value"] = value
            else:
                notes.append(f"the tester wrote MR={measured[:40]!r}: no valid reading")
            if low is not None and high is not None:
                if low <= high:
                    measurement.update(compOp="GELE", lowLimit=low, highLimit=high)
            elif low is not None:
                measurement.update(compOp="GE", lowLimit=low)
            elif high is not None:
                # WATS compares single-limit operators with lowLimit, LE included.
                measurement.update(compOp="LE", lowLimit=high)
            if status is None:
                op = measurement["compOp"]
                if value is not None:
                    status = numeric_status(op, value, measurement.get("lowLimit"),
                                            measurement.get("highLimit"))
                else:
                    status = "P" if op == LOG else "F"  # a limit with no reading fails
            measurement["status"] = status
            step["stepType"] = "ET_NLT"
            step["numericMeas"] = [measurement]
        if status is not None:
            step["status"] = status
        time_ms = self.number(test, "TT")
        if time_ms is not None:
            step["totTime"] = time_ms / 1000
        if notes:
            step["reportText"] = "; ".join(notes)
        return step


def _reading(text: str) -> tuple[str, float | None]:
    """("number", value) for a finite number ("." or "," decimals), ("not finite", None) for
    NaN, infinities and overflowing numbers, ("text", None) for anything else."""
    text = text.strip()
    if "," in text and "." not in text:
        text = text.replace(",", ".", 1)
    if _NUMBER.fullmatch(text):
        value = float(text)
        return ("number", value) if math.isfinite(value) else ("not finite", None)
    if _NOT_FINITE.fullmatch(text):
        return "not finite", None
    return "text", None

"""`SeicaXMLConverter`: Seica flying-probe XML results (Kitron variant, formats.md §8) into WSJF.

Owns mapping each board (`<BI>`) of these files to one WSJF test report; the file is read by
`xmlsafe` (DOCTYPE and ENTITY refused, a size cap, a nesting cap, a line number on every
element, one board in memory at a time). No public sample of this format exists: the layout
below is the one described by the pyWATS port of Kitron's converter, and is unverified
against real equipment. Pure: it reads the file and changes nothing.

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
  The process follows the rule of every built-in converter (`ConversionOptions.
  process_code`): the file names no WATS process.
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
* Text: a byte order mark, else the configured encoding, else the file's declaration, else
  UTF-8, or cp1252 when the file is not UTF-8 (`xmlsafe.xml_encoding`). An XML file cut off
  before `</R>` is still being written (`IncompleteFileError`).
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pywats_client.converters.builtin import BuiltinConverter, ConversionOptions
from pywats_client.converters.textio import MB, check_size, reading
from pywats_client.converters.xmlsafe import XmlFormat, XmlNode, parse_xml, sniff_root
from pywats_client.errors import ConversionError
from pywats_client.report.model import STEP_NAME_LIMIT, ReportDict, format_datetime, number_steps
from pywats_client.report.operators import LOG, numeric_status

# Real result files are kilobytes to a few megabytes; anything this big is not one.
MAX_FILE_BYTES = 64 * MB
# The format nests three levels; the cap stops a hostile file from costing anything.
MAX_DEPTH = 32
DEFAULT_SEQUENCE_NAME = "Seica flying probe"

_MOMENT = re.compile(r"(\d{1,4})[-./](\d{1,2})[-./](\d{1,4})(?:[ T]+(\d{1,2}):(\d{1,2})"
                     r"(?::(\d{1,2})(?:[.,](\d{1,6}))?)?)?")
_SEPARATOR = re.compile(r"[_\s]+")


class _Element(XmlNode):
    """A Seica element; `value()` reads an attribute in any case, trimmed ("" if absent)."""

    __slots__ = ()
    IDENTIFYING = ("NM",)
    SHOWN = 1

    def value(self, name: str) -> str:
        return (self.get(name) or "").strip()


# Each board is handed over when its element closes: one board's elements in memory at a time.
XML = XmlFormat("Seica result", MAX_DEPTH, "is this a Seica result file?", node_type=_Element,
                namespaces=False, hand_over=frozenset({"bi"}))


class SeicaXMLConverter(BuiltinConverter):
    """Converts Seica flying-probe XML result files: one WSJF test report per `<BI>` board."""

    name = "SeicaXMLConverter"
    memory_ratio = 15.0  # peak RSS per input byte (bench_converters --memory: 13.7 on 1.8 MB)
    description = "Seica flying-probe XML (<R> with ST, BI boards of TEST results, ET)"
    file_patterns = ("*.xml",)

    def read(self, path: Path, options: ConversionOptions) -> dict[str, Any] | list[dict[str, Any]]:
        """One report (a `ReportDict`) per `<BI>` board, in file order."""
        check_size(path, MAX_FILE_BYTES, "Seica")
        builder = _Builder(path, options)
        try:
            with open(path, "rb") as fh:
                root = parse_xml(str(path), fh, XML, encoding=options.encoding,
                                 on_root=lambda root: _check_root(path, root),
                                 on_complete=builder.finish_board)
        except OSError as exc:
            raise ConversionError(f"{path}: cannot read the file: {exc.strerror or exc}") from exc
        if not builder.document.boards:
            raise ConversionError(f"{path}: the file has no <BI> board element, so no report")
        return builder.reports(root)


@dataclass
class _Board:
    element: _Element
    root: dict[str, Any] = field(default_factory=dict)
    failed: bool = False
    places: Callable[[], dict[str, str]] | None = None
    test_seconds: float | None = None  # the sum of its tests' TT


@dataclass
class _Document:
    st: _Element | None = None
    et: _Element | None = None
    boards: list[_Board] = field(default_factory=list)


@SeicaXMLConverter.detection
def _detect(path: Path, head: bytes) -> tuple[float, str]:
    root = sniff_root(head)
    if root is None or root.doctype or root.local.upper() != "R":
        return 0.0, ""
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        head = head.decode("utf-16", errors="replace").encode("utf-8")
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


def _check_root(path: Path, root: XmlNode) -> None:
    if root.key != "r":
        raise ConversionError(
            f"{path}: line {root.line}: the root element is <{root.tag[:40]}>, not <R>: not a "
            "Seica flying-probe result file"
        )


def _tests(board: XmlNode) -> list[_Element]:
    """The TEST elements inside a board, in document order (at any depth)."""
    found: list[_Element] = []
    stack = list(reversed(board.children))
    while stack:
        node = stack.pop()
        if node.key == "test" and isinstance(node, _Element):
            found.append(node)
        stack.extend(reversed(node.children))
    return found


# -- building the reports ----------------------------------------------------------------------


class _Builder:
    """Turns the boards of one file into WSJF reports."""

    def __init__(self, path: Path, options: ConversionOptions) -> None:
        self.path = path
        self.options = options
        self.document = _Document()
        self.st = _Element("ST", "", {}, 0)

    def error(self, element: _Element, message: str) -> ConversionError:
        return ConversionError(f"{self.path}: {element.place()}: {message}")

    def finish_board(self, node: XmlNode) -> None:
        """Build the steps of a board that has been read, and let go of its elements."""
        assert isinstance(node, _Element)
        board = _Board(node)
        self.document.boards.append(board)
        tests = _tests(node)
        node.children = []
        board.root, board.failed, board.places = self.board_steps(board, tests)
        times = [t for t in (self.number(test, "TT") for test in tests) if t is not None]
        board.test_seconds = sum(times) / 1000 if times else None

    def reports(self, root: XmlNode) -> list[dict[str, Any]]:
        document = self.document
        for child in root.children:  # the boards are handed over; the last ST and ET count
            if isinstance(child, _Element) and child.key == "st":
                document.st = self.st = child
            elif isinstance(child, _Element) and child.key == "et":
                document.et = child
        any_failed = any(board.failed for board in document.boards)
        et = document.et
        verdict = et.value("NF") if et is not None else ""
        run_failed = bool(verdict) and verdict != "0"
        return [self.report(board, "F" if board.failed or (run_failed and not any_failed)
                            else "P") for board in document.boards]

    def report(self, board: _Board, result: str) -> ReportDict:
        options, bi, root = self.options, board.element, board.root
        report = ReportDict()
        report.locations[""] = bi.place()
        sn = bi.value("BCP") or bi.value("BC")
        if not sn:
            raise self.error(bi, "the board has neither BCP (serial number) nor BC (barcode); "
                             "WATS needs a serial number per board")
        program = self.st.value("NM")
        parts = _SEPARATOR.split(program, maxsplit=2) if program else []
        pn = options.part_number or (parts[0] if parts else "")
        if not pn:
            raise self.error(
                self.st if self.document.st else bi,
                "no part number: <ST NM=\"program_version\"> is missing or empty and no "
                "part_number is configured; set part_number in the watch folder's converter "
                "arguments")
        options.fill_header(report, pn=pn, sn=sn,
                            rev=options.revision or (parts[1] if len(parts) > 1 else ""),
                            lacks="Seica result files name no WATS process")
        report["result"] = result
        if options.station_name:
            report["machineName"] = options.station_name
        start = self.moment(bi, "SD")
        if start is not None:
            report["start"] = format_datetime(start)
        uut: dict[str, Any] = {}
        user = self.st.value("OP") or options.operator
        if user:
            uut["user"] = user
        exec_time = self.exec_time(board, start)
        if exec_time is not None:
            uut["execTime"] = exec_time
        report["uut"] = uut
        misc = []
        if self.st.value("NMP"):
            misc.append({"description": "Board name", "text": self.st.value("NMP")[:100]})
        if bi.value("BCP") and bi.value("BC") and bi.value("BC") != bi.value("BCP"):
            misc.append({"description": "Barcode", "text": bi.value("BC")[:100]})
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
        text = element.value(attr)
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
            return self.options.local(datetime(
                year, month, day, int(hour or 0), int(minute or 0), int(second or 0),
                int((fraction or "").ljust(6, "0"))))
        except (ValueError, OverflowError, OSError) as exc:
            raise self.error(element, f"{attr}={text[:40]!r}: {exc}") from None

    def number(self, element: _Element, attr: str) -> float | None:
        """A finite number attribute; empty or infinite is None, text is an error."""
        text = element.value(attr)
        kind, value = reading(text)
        if kind == "text" and text:
            raise self.error(element, f"{attr}={text[:40]!r} is not a number")
        return value

    # -- steps -----------------------------------------------------------------------------

    def board_steps(
        self, board: _Board, tests: list[_Element]
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
        for test in tests:
            here = test.value("F")
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
        spots = [(where, element.line, element.value("NM")[:40]) for where, element in places]

        def find() -> dict[str, str]:
            found = {"root": root_place}
            found.update((where, f'<TEST NM="{name}"> at line {line}' if name else
                          f"<TEST> at line {line}") for where, line, name in spots)
            return found

        return root, failed, find

    def test_step(self, test: _Element) -> dict[str, Any]:
        title = test.value("NM") or f"Test at line {test.line}"
        step: dict[str, Any] = {"id": 0, "group": "M", "stepType": "",
                                "name": title[:STEP_NAME_LIMIT], "status": "P"}
        notes = [] if len(title) <= STEP_NAME_LIMIT else [title]
        verdict = test.value("TR")
        status: str | None = None if not verdict else ("P" if verdict == "0" else "F")
        measured = test.value("MR")
        kind, value = reading(measured)
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
            measurement: dict[str, Any] = {"compOp": LOG, "status": "P", "unit": test.value("MU")}
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

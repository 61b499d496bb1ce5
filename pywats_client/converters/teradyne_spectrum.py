"""`TeradyneSpectrumICTConverter`: Teradyne Spectrum ICT CTRD exports into WSJF.

Owns the reader of the CTRD "machine readable ASCII" format (formats.md §7): an iterative
s-expression parser (`(KEY: value ...)`, no recursion, nesting capped) and the mapping of its
program / sections / steps / pages / analog and interconnect results onto a WSJF test report.
Pure: it reads the file and changes nothing.

Mapping and the choices where the format leaves one open:

* A board is everything from `(PROGRAM_NAME: ...)` to the next one (a file normally holds
  one). pn = PROGRAM_NAME (a `part_number` converter argument of the watch folder wins;
  `converters.defaults` is the last resort), sn = `(USER: Serialnumber: ...)`, operator =
  `(USER: Operator: ...)`, result = `(USER: STATUS: BOARD PASSED|FAILED)`, root sequence
  version = `(USER: version: ...)`; other `USER` lines become misc infos. Without a STATUS
  line the result is the roll-up of the steps. The process follows the rule of every
  built-in converter (`ConversionOptions.process_code`): CTRD names no WATS operation.
* start = the TIME of the first step (MM/DD/YYYY, as the CTRD spec writes it), else the USER
  Date and StartTime; execution time = USER EndTime - start.
* Each SECTION_NAME opens a sequence (empty ones are left out; a second SUBPROGRAM_NAME adds a
  sequence level per subprogram). A STEP with one PAGE is one test step named after the step;
  with several, a sequence of one step per page. A page's ANA/INTC results are its
  measurements: numeric when a measured value is given (GELE with both limits, GE with a low,
  LE with a high limit — WATS compares LE with lowLimit — LOG with none), pass/fail
  otherwise; several make a multiple-measurement step named by result type. A page without
  results (external program, power, digital, ...) is a pass/fail step.
* Statuses are the file's (STAT: PASS/FAIL ...) and failures roll up; only a numeric result
  with no status anywhere above it is judged by its limits (`report.operators`). Value and
  limits of a test may have different SCALEs: they are converted exactly (decimal arithmetic)
  to the scale of the limits, so a test keeps one unit on every board. Units are ASCII
  ("mOhm", "nF", "V").
* A file that ends inside an entry, its key or a quoted string, or that has neither a step
  nor the board's STATUS yet, is still being written (`IncompleteFileError`). A `(` inside a
  value that does not open a `(KEY:` entry is text (e.g. a path under "Program Files (x86)").
"""

from __future__ import annotations

import bisect
import logging
import math
import re
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta
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
    result_for_status,
    roll_up_statuses,
)
from pywats_client.report.operators import numeric_status

log = logging.getLogger(__name__)

# A board's export is a few hundred kilobytes; anything this big is not one, and reading it
# would take a small station's memory.
MAX_FILE_BYTES = 100 * MB
MAX_DEPTH = 64  # real files nest about 6 deep; deeper input is refused, not recursed into
STEP_NAME_LIMIT = 100
MISC_INFO_LIMIT = 100

# Whitespace before a token is part of it (fewer tokens: the parser is a Python loop).
_TOKEN_RE = re.compile(
    r"""\s*(?:
        \(\s*(?P<key>[A-Za-z_][A-Za-z0-9_]*)\s*:   # "(KEY:" opens an entry
      | (?P<open>\()                              # any other "(" is text
      | (?P<close>\))
      | "(?P<string>[^"]*)"
      | (?P<quote>")                              # a quote that is never closed
      | (?P<text>[^()"\s][^()"]*))""",
    re.VERBOSE,
)
_NEWLINE_RE = re.compile("\n")
# What may follow a "(" at the end of a file that is cut inside "(KEY:".
_KEY_BEING_WRITTEN = re.compile(r"\s*(?:[A-Za-z_][A-Za-z0-9_]*\s*)?")
_HEAD_RE = re.compile(rb'\A(?:\xef\xbb\xbf)?\s*\(\s*PROGRAM_NAME\s*:\s*"')
_NUMBER_RE = re.compile(r"[-+]?(?:\d{1,30}(?:\.\d{0,30})?|\.\d{1,30})(?:[eE][-+]?\d{1,3})?")
_STEP_TIME_RE = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})\s+(\d{1,2}):(\d{2})(?::(\d{2}))?")
_DATE_RE = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})")
_CLOCK_RE = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?(?:[:.,](\d{1,6}))?")

# SCALE letters: m is milli and M mega (CTRD); the upper-case forms of the others occur too.
_SCALE_EXPONENT = {"": 0, "p": -12, "P": -12, "n": -9, "N": -9, "u": -6, "U": -6, "\u00b5": -6,
                   "\u03bc": -6, "m": -3, "k": 3, "K": 3, "M": 6, "G": 9, "g": 9}
_EXPONENT_PREFIX = {-12: "p", -9: "n", -6: "u", -3: "m", 0: "", 3: "k", 6: "M", 9: "G"}
_UNITS = {"O": "Ohm", "OHM": "Ohm", "F": "F", "V": "V", "A": "A", "H": "H", "HZ": "Hz"}
_STATUS_WORDS = {
    "PASS": "P", "PASSED": "P", "FAIL": "F", "FAILED": "F", "SKIP": "S", "SKIPPED": "S",
    "NOT_TESTED": "S", "NOTTESTED": "S", "UNTESTED": "S", "ERROR": "E", "ABORT": "T",
    "ABORTED": "T",
}
_SEVERITY = {"F": 1, "E": 2, "T": 3}
_RESULT_NODES = ("ANA", "INTC")
# Entries the mapping does not use (test point lists, nominal values): parsed, not kept.
_IGNORED = frozenset({"MEAS", "STIM", "GUARD", "FROM", "TO", "LOWR_FROM_NODES",
                      "LOWR_TO_NODES", "NOMVAL"})


class TeradyneSpectrumICTConverter(BuiltinConverter):
    """Converts Teradyne Spectrum ICT CTRD exports: one report per board."""

    name = "TeradyneSpectrumICTConverter"
    memory_ratio = 12.0  # peak RSS per input byte (scripts/bench.py memory: 11.0 on 0.3 MB)
    description = "Teradyne Spectrum ICT CTRD export ((PROGRAM_NAME: ...) s-expressions)"
    file_patterns = ("*.txt", "*.ctrd", "*.dat")

    def detect_with_reason(self, path: Path, head: bytes) -> tuple[float, str]:
        return _detect(head)

    def read(self, path: Path, options: ConversionOptions) -> dict[str, Any] | list[dict[str, Any]]:
        """One report (a `ReportDict`) per board; a list when the file holds several."""
        text = read_text(path, MAX_FILE_BYTES, "CTRD", options.encoding)
        nodes = parse(text, str(path), _IGNORED)
        reports = _Mapper(path, options).reports(nodes)
        return reports[0] if len(reports) == 1 else reports


def _detect(head: bytes) -> tuple[float, str]:
    # Without a "(" (a search for one byte: fast) there is none of the entries looked for.
    if b"(" not in head:
        return 0.0, ""
    return _detect_head(head)


def _detect_head(head: bytes) -> tuple[float, str]:
    starts = _HEAD_RE.match(head) is not None
    body = b"(STEP:" in head or b"(SECTION_NAME:" in head
    if starts and body:
        return 0.95, "CTRD export: starts with (PROGRAM_NAME: \"...\"), has sections/steps"
    if starts:
        return 0.8, "CTRD export: starts with (PROGRAM_NAME: \"...\")"
    if body and b"(SNAME:" in head and b"(PAGE:" in head:
        return 0.5, "CTRD steps ((STEP: (SNAME: ... (PAGE: ...) without a program name"
    return 0.0, ""


# -- the s-expression parser ------------------------------------------------------------------


class Node:
    """One `(KEY: ...)` entry: its key (upper case), line, child entries and text value."""

    # A board's export holds some 10 000 entries: slots, and no list until one is needed.
    __slots__ = ("children", "key", "line", "literal", "quoted", "raw")

    def __init__(self, key: str, line: int) -> None:
        self.key = key
        self.line = line
        self.children: list[Node] | None = None
        self.quoted: str | None = None  # the first quoted string
        self.raw: str | list[str] | None = None  # unquoted text, in pieces around "(" ")"
        self.literal = 0  # depth of "(" ... ")" inside the text, while parsing

    def first(self, key: str) -> Node | None:
        """The first child entry with this key."""
        for child in self.children or ():
            if child.key == key:
                return child
        return None

    def all(self, key: str) -> list[Node]:
        """Every child entry with this key, in file order."""
        return [child for child in self.children or () if child.key == key]

    @property
    def text(self) -> str:
        """The value: the first quoted string, else the unquoted text, trimmed."""
        if self.quoted is not None:
            return self.quoted.strip()
        raw = self.raw if isinstance(self.raw, str) else "".join(self.raw or ())
        return raw.strip(" \t\r\n,")

    def value_of(self, key: str) -> str | None:
        """The value of the first child entry with this key, or None when there is none."""
        child = self.first(key)
        return child.text if child is not None else None

    def add_text(self, piece: str) -> None:
        if self.raw is None:
            self.raw = piece
        elif isinstance(self.raw, str):
            self.raw = [self.raw, piece]
        else:
            self.raw.append(piece)

    def __repr__(self) -> str:
        return f"<Node {self.key} line {self.line}>"


def parse(text: str, source: str = "", ignore: frozenset[str] = frozenset()) -> list[Node]:
    """The top-level entries of a CTRD text, in order.

    Entries whose key is in `ignore` are checked but not kept (less memory). Iterative (an
    explicit stack, at most MAX_DEPTH deep): a file nested deeper, or with text or a `)`
    outside any entry, raises ConversionError naming the line; one that ends inside an entry
    or a quoted string raises IncompleteFileError.
    """
    where = f"{source}: " if source else ""
    newlines = [found.start() for found in _NEWLINE_RE.finditer(text)]

    def line_at(position: int) -> int:
        return bisect.bisect_left(newlines, position) + 1

    top: list[Node] = []
    stack: list[Node] = []
    for match in _TOKEN_RE.finditer(text):
        kind = match.lastgroup
        if kind == "key":
            if len(stack) >= MAX_DEPTH:
                raise ConversionError(
                    f"{where}line {line_at(match.start('key'))}: entries are nested more than "
                    f"{MAX_DEPTH} deep; this is not a Spectrum CTRD export"
                )
            key = sys.intern(match.group("key").upper())
            node = Node(key, line_at(match.start("key")))
            if key in ignore:
                pass  # parsed for its brackets, dropped when it closes
            elif not stack:
                top.append(node)
            else:
                parent = stack[-1]
                if parent.children is None:
                    parent.children = [node]
                else:
                    parent.children.append(node)
            stack.append(node)
        elif kind == "text":
            if not stack:
                token = match.group("text").strip(" \t\r\n\f\v,\x1a\x00")
                if token:
                    raise ConversionError(
                        f"{where}line {line_at(match.start('text'))}: text {token[:40]!r} "
                        "outside any (KEY: ...) entry; this is not a Spectrum CTRD export, or "
                        "it is damaged here"
                    )
            elif stack[-1].raw is not None:
                stack[-1].add_text(match.group())  # inside a value its spaces count
            else:
                stack[-1].add_text(match.group("text"))
        elif kind == "close":
            if not stack:
                raise ConversionError(
                    f"{where}line {line_at(match.start('close'))}: ')' closes nothing; the "
                    "file is damaged here"
                )
            current = stack[-1]
            if current.literal:
                current.literal -= 1
                current.add_text(")")
            else:
                stack.pop()
        elif kind == "string":
            if not stack:
                raise ConversionError(
                    f"{where}line {line_at(match.start('string'))}: a quoted string outside "
                    "any (KEY: ...) entry; this is not a Spectrum CTRD export"
                )
            if stack[-1].quoted is None:
                stack[-1].quoted = match.group("string")
        elif kind == "open":
            if not stack:
                if _KEY_BEING_WRITTEN.fullmatch(text, match.end()):
                    raise IncompleteFileError(
                        f"{where}line {line_at(match.start('open'))}: the file ends inside an "
                        "entry's key (still being written?)"
                    )
                raise ConversionError(
                    f"{where}line {line_at(match.start('open'))}: '(' is not followed by "
                    "KEY:; this is not a Spectrum CTRD export"
                )
            stack[-1].literal += 1
            stack[-1].add_text(match.group())
        else:  # an unterminated quote: only possible when the file ends inside the string
            raise IncompleteFileError(
                f"{where}line {line_at(match.start('quote'))}: the file ends inside a quoted "
                "string (still being written?)"
            )
    if stack:
        raise IncompleteFileError(
            f"{where}the file ends inside ({stack[-1].key}: ...) opened at line "
            f"{stack[-1].line}; it is probably still being written"
        )
    return top


# -- from entries to reports -------------------------------------------------------------------


@dataclass
class _Board:
    """What is known about one board while its entries are read."""

    line: int
    program: str
    subprogram: str = ""
    user: dict[str, tuple[str, int]] = field(default_factory=dict)  # lower key -> value, line
    misc: list[tuple[str, str, int]] = field(default_factory=list)
    # (subprogram, section sequence step) in order; steps before any section go to `loose`
    sections: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    loose: list[dict[str, Any]] = field(default_factory=list)
    current: list[dict[str, Any]] | None = None  # where steps go now
    first_time: datetime | None = None
    lines: dict[int, str] = field(default_factory=dict)  # id(step) -> source place
    steps: int = 0


_USER_KEYS = ("serialnumber", "operator", "date", "starttime", "endtime", "status", "version")


class _Mapper:
    """Turns the parsed entries of one file into reports."""

    def __init__(self, path: Path, options: ConversionOptions) -> None:
        self.path = path
        self.options = options

    def error(self, line: int, text: str) -> ConversionError:
        return ConversionError(f"{self.path}: line {line}: {text}")

    def reports(self, nodes: list[Node]) -> list[dict[str, Any]]:
        boards: list[_Board] = []
        board: _Board | None = None
        for node in nodes:
            key = node.key
            if key == "PROGRAM_NAME":
                if board is None or board.steps or board.user:
                    board = _Board(node.line, node.text)
                    boards.append(board)
                else:
                    board.program, board.line = node.text, node.line
                continue
            if board is None:
                board = _Board(node.line, "")
                boards.append(board)
            if key == "SUBPROGRAM_NAME":
                board.subprogram = node.text
            elif key == "SECTION_NAME":
                section = self.sequence(node.text or "Section", board.subprogram)
                board.sections.append((board.subprogram, section))
                board.current = section["steps"]
                board.lines[id(section)] = f"(SECTION_NAME: ...) at line {node.line}"
            elif key == "STEP":
                self.step(node, board)
            elif key == "USER":
                self.user(node, board)
            else:
                log.debug("%s: line %d: (%s: ...) ignored", self.path, node.line, key)
        if not any(board.steps for board in boards):
            if not any("status" in board.user for board in boards):
                # No step and no board verdict yet: the tester has only begun the file.
                raise IncompleteFileError(
                    f"{self.path}: no (STEP: ...) entry yet and no (USER: STATUS: ...); the "
                    "board is probably still being tested"
                )
            raise ConversionError(
                f"{self.path}: no (STEP: ...) entry found; this is not a Spectrum CTRD "
                "export, or the test did not run"
            )
        return [self.report(board) for board in boards if board.steps]

    # -- entries ---------------------------------------------------------------------------------

    def user(self, node: Node, board: _Board) -> None:
        """`(USER: Key: Value)`: header data written by the test program."""
        key, colon, value = node.text.partition(":")
        key, value = key.strip(), value.strip()
        if not colon or not key:
            if node.text:
                board.misc.append(("USER", node.text, node.line))
            return
        if key.lower() in _USER_KEYS:
            board.user[key.lower()] = (value, node.line)
        else:
            board.misc.append((key, value, node.line))

    def step(self, node: Node, board: _Board) -> None:
        board.steps += 1
        pages = list(node.all("PAGE"))
        name = node.value_of("SNAME") or (pages[0].value_of("PAGE_NAME") if pages else None)
        name = name or f"Step at line {node.line}"
        own = self.status(node, None)
        start = self.step_time(node)
        if start is not None and board.first_time is None:
            board.first_time = start
        description = node.value_of("DESC")
        if len(pages) == 1:
            step = self.page(pages[0], name, own, [description])
        elif pages:
            step = self.sequence(name, "")
            for page in pages:
                child = self.page(page, page.value_of("PAGE_NAME") or page_type(page), None, [])
                step["steps"].append(child)
                board.lines[id(child)] = f"(PAGE: ...) at line {page.line}"
            if own:
                step["status"] = own
            if description:
                step["reportText"] = description
        else:
            step = self.test("ET_PFT", name, own or "D", "booleanMeas",
                             [{"status": _measurement_status(own or "D")}], [description])
        if start is not None:
            step["start"] = format_datetime(self.options.local(start))
        board.lines[id(step)] = f"(STEP: {name!r}) at line {node.line}"
        (board.current if board.current is not None else board.loose).append(step)

    def page(self, page: Node, name: str, status: str | None,
             texts: list[str | None]) -> dict[str, Any]:
        """The test step of one PAGE; `status` (the STEP's) wins over the page's own.

        A page without any status is Done (not judged); its numeric results are then judged
        by their limits.
        """
        status = status or self.status(page, None)
        texts = [*texts, page.value_of("COMMENT"), page.value_of("FAIL_MSG"),
                 *(f"Program: {prog.value_of('PROG_NAME') or ''}".rstrip()
                   for prog in page.all("EXTPROG"))]
        results = [child for child in page.children or () if child.key in _RESULT_NODES]
        measured = [self.measurement(result, status) for result in results]
        status = status or "D"
        if not measured:
            return self.test("ET_PFT", name, status, "booleanMeas",
                             [{"status": _measurement_status(status)}], texts)
        kinds = {kind for kind, _ in measured}
        if len(kinds) > 1:
            # A step carries one kind of measurement: each result becomes a step of its own.
            sequence = self.sequence(name, "")
            sequence["status"] = status
            for result, (kind, meas) in zip(results, measured, strict=True):
                single = "ET_NLT" if kind == "numericMeas" else "ET_PFT"
                sequence["steps"].append(
                    self.test(single, result_name(result), meas["status"], kind, [meas], []))
            _add_text(sequence, texts)
            return sequence
        kind = kinds.pop()
        items = [meas for _, meas in measured]
        if len(items) == 1:
            step_type = "ET_NLT" if kind == "numericMeas" else "ET_PFT"
        else:
            step_type = "ET_MNLT" if kind == "numericMeas" else "ET_MPFT"
            used: dict[str, int] = {}
            for n, result in enumerate(results):
                label = result_name(result)
                used[label] = used.get(label, 0) + 1
                # Names tell the measurements of one step apart: unique within the step.
                items[n] = {"name": label if used[label] == 1 else f"{label} {used[label]}",
                            **items[n]}
        return self.test(step_type, name, status, kind, items, texts)

    def measurement(self, result: Node, page_status: str | None) -> tuple[str, dict[str, Any]]:
        """("numericMeas" | "booleanMeas", measurement) for one ANA or INTC result.

        Its status is the file's: the result's STAT, its INTC_RESULT's, the page's. Only when
        the file gives none is a numeric result judged by its limits (`report.operators`).
        """
        outcome = result.first("INTC_RESULT")
        status = self.status(result, None) or (
            self.status(outcome, None) if outcome is not None else None) or page_status
        value_node = result.first("MEASVAL") or (
            outcome.first("MEASVAL") if outcome is not None else None)
        value = self.quantity(value_node) if value_node is not None else None
        if value is None:
            return "booleanMeas", {"status": _measurement_status(status or "D")}
        low_node, high_node = result.first("LOLIM"), result.first("HILIM")
        low = self.quantity(low_node) if low_node is not None else None
        high = self.quantity(high_node) if high_node is not None else None
        units = {q[2] for q in (value, low, high) if q is not None and q[2]}
        if len(units) > 1:
            raise self.error(result.line, f"the value and limits of this result have different "
                             f"units ({', '.join(sorted(units))}); they cannot be compared")
        unit = units.pop() if units else ""
        # The limits' scale, so that the unit of a test does not change from board to board.
        exponent = 0
        if unit:
            exponent = (high[1] if high is not None else low[1] if low is not None
                        else value[1])
        if low is not None and high is not None:
            op = "GELE"
        elif low is not None:
            op = "GE"
        elif high is not None:
            op = "LE"
        else:
            op = "LOG"
        meas: dict[str, Any] = {
            "compOp": op, "status": "P",
            "unit": _EXPONENT_PREFIX.get(exponent, "") + unit if unit else "",
            "value": self.scaled(result.line, value, exponent),
        }
        if op in ("GE", "LE"):
            # WATS compares single-limit operators with lowLimit, even LE (formats.md §1.2).
            only = low if low is not None else high
            assert only is not None
            meas["lowLimit"] = self.scaled(result.line, only, exponent)
        elif op == "GELE":
            assert low is not None and high is not None
            meas["lowLimit"] = self.scaled(result.line, low, exponent)
            meas["highLimit"] = self.scaled(result.line, high, exponent)
        if status is not None:
            meas["status"] = _measurement_status(status)
        else:
            meas["status"] = numeric_status(op, meas["value"], meas.get("lowLimit"),
                                            meas.get("highLimit"))
        return "numericMeas", meas

    def quantity(self, node: Node) -> tuple[Decimal, int, str] | None:
        """(mantissa, power of ten, unit) of a `(VAL: v) (SCALE: s) (UNIT: u)` entry, or None
        when it has no finite value."""
        text = node.value_of("VAL")
        if text is None or text.upper().lstrip("+-") in ("NAN", "INF", "INFINITY", ""):
            return None
        if not _NUMBER_RE.fullmatch(text):
            raise self.error(node.line, f"({node.key}: (VAL: {text[:40]})) is not a number")
        scale = node.value_of("SCALE") or ""
        exponent = _SCALE_EXPONENT.get(scale)
        if exponent is None:
            raise self.error(node.line, f"({node.key}: ... (SCALE: {scale[:20]})) is not a "
                             "known scale (p n u m K M G)")
        unit_text = node.value_of("UNIT") or ""
        unit = _UNITS.get(unit_text.upper(), unit_text)
        return Decimal(text), exponent, unit

    def scaled(self, line: int, quantity: tuple[Decimal, int, str], exponent: int) -> float:
        mantissa, power, _ = quantity
        try:
            result = float(mantissa.scaleb(power - exponent))
        except (DecimalException, OverflowError):
            result = math.inf
        if not math.isfinite(result):
            raise self.error(line, f"the number {mantissa} x 10^{power} is out of range")
        return result

    def status(self, node: Node, default: str | None) -> str | None:
        """The step status letter of a `(STAT: ...)` child, or `default` when there is none."""
        stat = node.first("STAT")
        if stat is None or not stat.text:
            return default
        letter = _STATUS_WORDS.get(stat.text.upper().replace(" ", "_"))
        if letter is None:
            raise self.error(stat.line, f"(STAT: {stat.text[:40]}) is not a known status "
                             "(PASS, FAIL, SKIP, ERROR, ABORT)")
        return letter

    def step_time(self, node: Node) -> datetime | None:
        time_node = node.first("TIME")
        if time_node is None or not time_node.text:
            return None
        match = _STEP_TIME_RE.fullmatch(time_node.text)
        if match is None:
            raise self.error(time_node.line, f"(TIME: {time_node.text[:40]}) is not a time "
                             "like 02/09/2023 16:44:11 (MM/DD/YYYY HH:MM:SS)")
        month, day, year, hour, minute, second = match.groups()
        return self.moment(time_node.line, int(year), int(month), int(day), int(hour),
                           int(minute), int(second or 0), 0)

    def moment(self, line: int, year: int, month: int, day: int, hour: int, minute: int,
               second: int, micro: int) -> datetime:
        try:
            return datetime(year, month, day, hour, minute, second, micro)
        except ValueError as exc:
            raise self.error(line, f"not a valid date or time: {exc}") from None

    # -- building ------------------------------------------------------------------------------

    @staticmethod
    def sequence(name: str, path: str) -> dict[str, Any]:
        return {
            "id": 0, "group": "M", "stepType": "SequenceCall", "name": _step_name(name),
            "status": None, "seqCall": {"path": path, "name": name, "version": ""}, "steps": [],
        }

    @staticmethod
    def test(step_type: str, name: str, status: str, kind: str, items: list[dict[str, Any]],
             texts: list[str | None]) -> dict[str, Any]:
        step: dict[str, Any] = {
            "id": 0, "group": "M", "stepType": step_type, "name": _step_name(name),
            "status": status, kind: items,
        }
        _add_text(step, texts)
        return step

    def report(self, board: _Board) -> ReportDict:
        options = self.options
        serial = board.user.get("serialnumber")
        if serial is None or not serial[0]:
            raise ConversionError(
                f"{self.path}: the board at line {board.line} has no serial number: the test "
                "program must write (USER: Serialnumber: <serial>) into the CTRD export"
            )
        part = options.argument("part_number") or board.program or options.part_number
        if not part:
            raise self.error(board.line, "no part number: the board has no (PROGRAM_NAME: "
                             "...) entry; set part_number in the watch folder's converter "
                             "arguments")
        sequence = (options.argument("sequence_name") or board.program
                    or options.sequence_name or "MainSequence")
        version = board.user.get("version", ("", 0))[0] or options.sequence_version
        root: dict[str, Any] = self.sequence(str(sequence), board.program)
        root["seqCall"]["version"] = str(version)
        root["steps"] = board.loose + self.grouped(board)

        report = ReportDict()
        options.fill_header(report, pn=str(part), sn=serial[0], rev=options.revision,
                            lacks="CTRD exports do not name the WATS operation")
        status = roll_up_statuses(root)
        verdict = self.verdict(board, status)
        if _SEVERITY.get(verdict, 0) > _SEVERITY.get(status, 0):
            root["status"] = verdict
        report["result"] = verdict
        if options.station_name:
            report["machineName"] = options.station_name
        start = board.first_time or self.user_start(board)
        if start is not None:
            report["start"] = format_datetime(options.local(start))
        report["root"] = root
        number_steps(root)
        details: dict[str, Any] = {}
        operator = board.user.get("operator", ("", 0))[0] or options.operator
        if operator:
            details["user"] = operator
        exec_time = self.exec_time(board, start)
        if exec_time is not None:
            details["execTime"] = exec_time
        report["uut"] = details
        if board.misc:
            report["miscInfos"] = [
                {"description": key[:MISC_INFO_LIMIT], "text": value[:MISC_INFO_LIMIT]}
                for key, value, _ in board.misc
            ]
            for n, (_, _, line) in enumerate(board.misc):
                report.locations[f"miscInfos[{n}]"] = f"(USER: ...) at line {line}"
        report.locations[""] = f"(PROGRAM_NAME: ...) at line {board.line}"
        for key, field_name in (("serialnumber", "sn"), ("status", "result")):
            if key in board.user:
                report.locations[field_name] = f"(USER: ...) at line {board.user[key][1]}"
        for path, step in iter_steps(root):
            place = board.lines.get(id(step))
            if place is not None:
                report.locations[path] = place
        return report

    def grouped(self, board: _Board) -> list[dict[str, Any]]:
        """The section sequences that hold steps; one level per subprogram when several."""
        sections = [(sub, section) for sub, section in board.sections if section["steps"]]
        if len({sub for sub, _ in sections}) <= 1:
            return [section for _, section in sections]
        grouped: list[dict[str, Any]] = []
        for sub, section in sections:
            if not grouped or grouped[-1]["name"] != _step_name(sub or "Subprogram"):
                grouped.append(self.sequence(sub or "Subprogram", sub))
            grouped[-1]["steps"].append(section)
        return grouped

    def verdict(self, board: _Board, rolled_up: str) -> str:
        found = board.user.get("status")
        if found is None:
            return result_for_status(rolled_up)
        words = found[0].upper()
        # A verdict that mentions a failure is not read as a pass.
        for word, letter in (("FAIL", "F"), ("ABORT", "T"), ("ERROR", "E"), ("PASS", "P")):
            if word in words:
                return letter
        raise self.error(found[1], f"(USER: STATUS: {found[0][:40]}) is not a board verdict "
                         "like BOARD PASSED or BOARD FAILED")

    def user_start(self, board: _Board) -> datetime | None:
        """Start from the USER Date and StartTime, for a file whose steps carry no TIME."""
        date, clock = board.user.get("date"), board.user.get("starttime")
        if date is None or clock is None:
            return None
        day = _DATE_RE.fullmatch(date[0])
        moment = self.clock(clock)
        if day is None or moment is None:
            return None
        month, mday, year = (int(part) for part in day.groups())
        return self.moment(date[1], year, month, mday, *moment)

    def exec_time(self, board: _Board, start: datetime | None) -> float | None:
        end = board.user.get("endtime")
        clock = self.clock(end) if end is not None else None
        if start is None or clock is None or end is None:
            return None
        finish = self.moment(end[1], start.year, start.month, start.day, *clock)
        if finish < start:
            finish += timedelta(days=1)  # the test ran over midnight
        return (finish - start).total_seconds()

    def clock(self, found: tuple[str, int]) -> tuple[int, int, int, int] | None:
        """(hour, minute, second, microsecond) of "16:44:27:988"-style text, else None."""
        match = _CLOCK_RE.fullmatch(found[0])
        if match is None:
            log.warning("%s: line %d: time %r not understood; ignored", self.path, found[1],
                        found[0][:40])
            return None
        hour, minute, second, fraction = match.groups()
        return (int(hour), int(minute), int(second or 0),
                int((fraction or "").ljust(6, "0")[:6]))


def page_type(page: Node) -> str:
    return page.value_of("TYPE") or "Page"


def result_name(result: Node) -> str:
    """The name of an ANA/INTC result in a multiple-measurement step: its TYPE."""
    return result.value_of("TYPE") or result.key


def _measurement_status(status: str) -> str:
    # Measurements know only passed, failed and skipped; an error or abort is not a pass.
    return status if status in ("P", "F", "S") else ("P" if status == "D" else "F")


def _add_text(step: dict[str, Any], texts: list[str | None]) -> None:
    shown = [text for text in texts if text]
    if shown:
        step["reportText"] = "\n".join(shown)


def _step_name(name: str) -> str:
    # The server refuses longer names; a cut name still finds the component.
    return name[:STEP_NAME_LIMIT]

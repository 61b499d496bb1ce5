"""`KeysightI3070Converter`: Keysight (Agilent, HP) Medalist i3070 in-circuit test logs into
WSJF test reports (formats.md §5, the "Log Record Format" of `{@BATCH|…}` records).

Owns the meaning of the records; their syntax is `i3070_records`. Pure: it reads the file
and changes nothing.

How a log becomes reports (where the format leaves a choice, this module decides so):

* One report per `@BTEST` (a panel log has one per board), each with the `@BATCH` header it
  sits in: pn = UUT type, rev = the first non-empty of UUT type revision and testplan
  revision (the first is empty in the logs seen; the `revision_from` argument changes which
  and in what order), machineName = controller, operator, batch id and fixture id into
  `uut`; testplan, testhead, process step, panel and board number into misc infos. Empty
  fields fall back to the options part_number, revision, operator and station_name;
  sequence_name and sequence_version come from the options, and the process
  from process_code / process_name (the rule of every built-in converter: an i3070 log names
  no WATS process). Times (`YYMMDDHHMMSS`, local to the tester) come from `@BTEST` and
  are read in the folder's time zone; without a start time the pipeline uses the file's time.
* Result from the board's test status: 0 Passed, 80 Error (run-time error), 81 and 82
  Terminated (STOP, BREAK), anything else Failed; the code and its meaning go to
  `uut.errorCode`/`errorMessage` and the "Test status" misc info.
* Steps, in file order under one root sequence: a `@BLOCK` with analog records is a numeric
  step (ET_NLT; ET_MNLT when the records carry subtest names or there are several), named by
  the block designator without the panel's `<board>%` prefix. `@LIM2|high|low` and
  `@LIM3|nominal|high|low` are GELE limits (a ±9.999999E+99 limit means "none": GE or LE
  alone); analog records without limits are logged (LOG); the nominal goes to the report
  text; the unit follows the record kind (RES Ω, CAP F, ...). `@TS` and `@BS-CON` give their
  shorts/opens/phantoms counts, `@PF` and `@TJET` their failing pin counts (EQ 0), `@D-T` is a
  pass/fail step; their detail records (opens, shorts, pins) become report text. `@RPT` lines
  are the report text of the step they follow. Records of other kinds, and custom records of
  a test plan, are skipped.
* Statuses are the file's: a measurement's from its record, a step's from its record or block
  (failed when any of its measurements failed), the root's is the board's result. A step that
  failed on a board that passed (the tester retried it) is marked causedSeqFailure false; on a
  failed board the first failed step is the one that caused the failure.
* Text is UTF-8, or CP1252 when it is not valid UTF-8, unless the `encoding` option says
  (`textio.decode`, as every text format).
  The decimal_separator option does not apply: the tester always writes `±d.ddddddE±dd`.
* Braces left out or one too many are repaired by `i3070_records` (every record is kept, in
  the board it came from); what was repaired is logged as a warning naming the file.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from pywats_client.converters.builtin import BuiltinConverter, ConversionOptions
from pywats_client.converters.i3070_records import Record, Repairs, parse_records
from pywats_client.converters.textio import MB, decode, read_bytes
from pywats_client.errors import ConversionError, IncompleteFileError
from pywats_client.report.model import (
    ReportDict,
    format_datetime,
    format_utc,
    iter_steps,
    number_steps,
)
from pywats_client.report.operators import numeric_status

log = logging.getLogger(__name__)

# Where the part revision may come from, by `revision_from` name: the @BATCH field index.
REVISION_FIELDS = {"uut_type_rev": 1, "testplan_rev": 10}
DEFAULT_REVISION_FROM = ("uut_type_rev", "testplan_rev")

# An i3070 log is kilobytes to a few megabytes. Converting one takes about 25-35 times its size
# in memory (the record tree, then the report dicts), so a much bigger file is refused before
# it can exhaust a small station.
MAX_FILE_BYTES = 16 * MB
DEFAULT_SEQUENCE_NAME = "i3070 board test"
STEP_NAME_LIMIT = 100
MISC_TEXT_LIMIT = 100
# The tester writes +9.999999E+99 (or its negative) for a limit that does not exist.
NO_LIMIT = 9.999999e99

# @BTEST test status codes (formats.md §5); 90-99 are the test plan's own.
BOARD_STATUS = {
    0: "passed", 1: "failed", 2: "pins test failed", 3: "learn mode", 4: "shorts test failed",
    6: "analog test failed", 7: "power supply failed", 8: "digital or boundary-scan test failed",
    9: "functional test failed", 10: "pre-shorts test failed", 11: "board handler failure",
    12: "barcode failure", 13: "board X'd out (not tested)", 14: "VTEP/TestJet test failed",
    15: "polarity test failed", 16: "ConnectCheck failed", 17: "analog cluster test failed",
    80: "run-time error", 81: "aborted (STOP)", 82: "aborted (BREAK)",
}
# Units are not written in the log; they follow from the kind of analog test.
ANALOG_UNITS = {
    "RES": "Ω", "JUM": "Ω", "POT": "Ω", "CAP": "F", "IND": "H", "DIO": "V", "ZEN": "V",
    "FUS": "A",
}
# What the detail records under shorts, pins and boundary-scan results are, for report text.
DETAIL_LABELS = {
    "TS-S": "short", "TS-D": "short to", "TS-O": "open", "TS-P": "phantom",
    "BS-S": "short", "BS-O": "open", "PIN": "pins", "DPIN": "pins", "NODE": "nodes",
}

_INTEGER = re.compile(r"[+-]?\d{1,9}")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d{1,4})?")
_DATETIME = re.compile(r"(\d\d)?(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)")
_BOARD_PREFIX = re.compile(r"(\d+)%(.+)")
_START = re.compile(r"[\ufeff \t\r\n]*\{@")
_STARTS = (b"{@BATCH|", b"{@BTEST|")  # the records an i3070 log begins with


class KeysightI3070Converter(BuiltinConverter):
    """Converts Keysight/Agilent i3070 log record files (`{@BATCH|…}`), one report per board."""

    name = "KeysightI3070Converter"
    memory_ratio = 31.0  # peak RSS per input byte (scripts/bench.py memory: 29.6 on 2.1 MB)
    description = "Keysight/Agilent i3070 in-circuit test logs ({@BATCH|...} log records)"
    # The tester often writes logs without an extension (named after board and time); those
    # are found by content, or by binding this converter to the folder. "*" here would claim
    # every file of a folder without a converter whenever auto-detection is off.
    file_patterns = ("*.log", "*.ict")

    def read(self, path: Path, options: ConversionOptions) -> dict[str, Any] | list[dict[str, Any]]:
        """One report (a `ReportDict`) per `@BTEST`; a list when the log holds several."""
        text = _read_log(path, options)
        if text.strip(" \t\r\n\ufeff") == "{":
            raise IncompleteFileError(f"{path}: the file ends after its first byte; waiting "
                                      "for the tester")
        if not _START.match(text):
            raise ConversionError(
                f"{path}: not an i3070 log: it does not begin with a '{{@' record such as "
                "{@BATCH|...}; bind the right converter to this folder"
            )
        repairs = Repairs()
        records = parse_records(text, source=str(path), repairs=repairs)
        reports = _Reader(path, options, _revision_fields(path, options)).read(records)
        if repairs:
            log.warning("%s: the i3070 log's braces do not balance; repaired, every record "
                        "kept: %s", path, repairs.describe())
        return reports[0] if len(reports) == 1 else list(reports)


def _revision_fields(path: Path, options: ConversionOptions) -> tuple[int, ...]:
    """The @BATCH fields the revision is read from, in order (argument `revision_from`: a
    list, or a text separated by commas, of uut_type_rev and testplan_rev)."""
    setting = options.setting("revision_from")
    if setting is None or setting == "" or setting == []:
        names: list[str] = list(DEFAULT_REVISION_FROM)
    elif isinstance(setting, str):
        names = [name.strip() for name in setting.split(",") if name.strip()]
    elif isinstance(setting, (list, tuple)):
        names = [str(name).strip() for name in setting]
    else:
        names = [str(setting)]
    unknown = [name for name in names if name not in REVISION_FIELDS]
    if unknown:
        raise ConversionError(
            f"{path}: revision_from {setting!r} in the converter arguments names "
            f"{', '.join(map(repr, unknown))}; use uut_type_rev and/or testplan_rev, in the "
            "order to try them (e.g. \"testplan_rev, uut_type_rev\")")
    return tuple(REVISION_FIELDS[name] for name in names)


def _read_log(path: Path, options: ConversionOptions) -> str:
    # Its own function: the bytes are let go as soon as they are text (a big panel's log
    # would otherwise be held twice while its records are parsed).
    data = read_bytes(path, MAX_FILE_BYTES, "i3070", hint="a board's log is far smaller: "
                      "check what writes into this folder")
    if not data.strip():
        raise IncompleteFileError(f"{path}: the file is empty; waiting for the tester")
    return decode(data, path, options.encoding)


@KeysightI3070Converter.detection
def _detect(path: Path, head: bytes) -> tuple[float, str]:
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text and any(len(text) < len(start) and start.startswith(text) for start in _STARTS):
        # The first bytes of a log being written: claimed above "JSON, but not a report".
        return 0.3, "starts like an i3070 {@BATCH| or {@BTEST| record (the file is short yet)"
    if text.startswith(b"{@BATCH|"):
        if b"{@BTEST|" in text:
            return 0.95, "starts with an i3070 {@BATCH| record followed by {@BTEST|"
        return 0.9, "starts with an i3070 {@BATCH| record"
    if text.startswith(b"{@BTEST|"):
        return 0.9, "starts with an i3070 {@BTEST| record"
    if text.startswith(b"{@") and b"{@BTEST|" in text:
        return 0.6, "starts with a '{@' log record and has an i3070 {@BTEST| record"
    return 0.0, ""


def _result(code: int) -> str:
    if code == 0:
        return "P"
    if code == 80:
        return "E"
    if code in (81, 82):
        return "T"
    return "F"


def _status_meaning(code: int) -> str:
    if code in BOARD_STATUS:
        return BOARD_STATUS[code]
    if 90 <= code <= 99:
        return "failed (test plan's own status)"
    return "failed"


def _operator(low: float | None, high: float | None) -> tuple[str, float | None, float | None]:
    """(compOp, lowLimit, highLimit) for an analog result's limits."""
    no_low = low is None or low <= -NO_LIMIT
    no_high = high is None or high >= NO_LIMIT
    if no_low and no_high:
        return "LOG", None, None
    if no_high:
        return "GE", low, None
    if no_low:
        # WATS compares every single-limit operator with lowLimit, LE too (formats.md §1.2).
        return "LE", high, None
    return "GELE", low, high


def _unique(name: str, seen: dict[str, int]) -> str:
    """`name`, or `name #2`, `name #3`... when the step already has a measurement so named."""
    count = seen.get(name, 0) + 1
    seen[name] = count
    candidate = name if count == 1 else f"{name} #{count}"
    while candidate in seen and count > 1:  # "x #2" may itself be a subtest's own name
        count += 1
        candidate = f"{name} #{count}"
    if candidate != name:
        seen[candidate] = 1
    return candidate


def _message(record: Record) -> str:
    parts = [" ".join(value) if isinstance(value, tuple) else value for value in record.fields]
    return "|".join(parts).rstrip()


def _field_text(record: Record) -> str:
    """All fields of a record as one text, as an operator would read them."""
    parts = [" ".join(value) if isinstance(value, tuple) else value for value in record.fields]
    return ", ".join(part.strip() for part in parts if part.strip())


# Where a step or measurement came from: (line, record name, designator or ""). Kept compact
# and only written out as "line 7 (@BLOCK r1)" when validation asks (see `_places`).
_Place = tuple[int, str, str]


class _Step:
    """A step being built: the WSJF dict, its report text, and where it and its measurements
    are in the file."""

    __slots__ = ("measured", "place", "step", "texts")

    def __init__(self, step: dict[str, Any], record: Record) -> None:
        self.step = step
        self.place: _Place = (record.line, record.name, "")
        self.measured: list[_Place] = []  # one per measurement
        self.texts: list[str] = []  # report text lines

    def finish(self) -> dict[str, Any]:
        if self.texts:
            self.step["reportText"] = "\n".join(self.texts)
        return self.step


def _show_place(place: _Place) -> str:
    line, name, designator = place
    return f"line {line} (@{name} {designator})" if designator else f"line {line} (@{name})"


def _places(root: dict[str, Any],
            places: dict[int, tuple[_Place, list[_Place]]]) -> dict[str, str]:
    """The source places of every step and measurement, by field path (for `locate()`)."""
    found: dict[str, str] = {}
    for path, step in iter_steps(root):
        entry = places.get(id(step))
        if entry is None:
            continue
        place, measured = entry
        found[path] = _show_place(place)
        key = "numericMeas" if "numericMeas" in step else "booleanMeas"
        for n, item in enumerate(measured):
            found[f"{path}.{key}[{n}]"] = _show_place(item)
    return found


class _Reader:
    """Turns the records of one file into reports; one instance per conversion."""

    def __init__(self, path: Path, options: ConversionOptions,
                 revision_fields: tuple[int, ...] = (1, 10)) -> None:
        self.path = path
        self.options = options
        self.revision_fields = revision_fields
        self.places: dict[int, _Step] = {}  # id(step dict) -> its builder, for locations

    def read(self, records: list[Record]) -> list[ReportDict]:
        reports: list[ReportDict] = []
        for record in records:
            if record.name == "BATCH":
                for child in record.children:
                    if child.name == "BTEST":
                        reports.append(self.board(record, child))
                        child.children.clear()  # a panel's boards need not all be in memory
            elif record.name == "BTEST":
                reports.append(self.board(None, record))
                record.children.clear()
        if not reports:
            raise ConversionError(
                f"{self.path}: no @BTEST record in the file: an i3070 log has one per board "
                "tested; this file holds none"
            )
        return reports

    # -- one board -----------------------------------------------------------------------------

    def board(self, batch: Record | None, btest: Record) -> ReportDict:
        self.places = {}
        header = batch if batch is not None else Record("BATCH", btest.line)
        report = ReportDict()
        report.locations[""] = f"@BTEST at line {btest.line}"
        self.options.fill_header(
            report, pn=self.required(header, 0, "part_number", "UUT type (part number)"),
            sn=self.serial(btest), rev=self.revision(header),
            lacks="i3070 logs name no WATS process")
        code = self.integer(btest, 1, "test status")
        result = _result(code)
        report["result"] = result
        station = self.text_or_option(header, 8, "station_name")
        if station:
            report["machineName"] = station
        start = self.moment(btest, 2, "start time")
        end = self.moment(btest, 9, "end time")
        if start is not None:
            report["start"] = format_datetime(start)
            report["startUTC"] = format_utc(start)
        report["uut"] = self.uut(header, btest, code, start, end)
        report.locations["uut"] = f"@BATCH at line {header.line}"
        misc = self.misc_infos(header, btest, code)
        if misc:
            report["miscInfos"] = []
            for description, text, line in misc:
                report.locations[f"miscInfos[{len(report['miscInfos'])}]"] = f"line {line}"
                report["miscInfos"].append({"description": description, "text": text})
        board_number = btest.text(11)
        root = self.root(header, btest, result, board_number)
        report["root"] = root
        number_steps(root)
        self.blame(report, root, result)
        # Places are written out only if validation fails: a big board has thousands.
        # The step dicts are shared with the finalised copy, so their ids stay valid.
        places = {key: (built.place, built.measured) for key, built in self.places.items()}
        self.places = {}
        report.find_locations = lambda: _places(root, places)
        report.locations["root"] = f"@BTEST at line {btest.line}"
        return report

    def revision(self, header: Record) -> str:
        """The first non-empty of the @BATCH revision fields, else the revision option."""
        for index in self.revision_fields:
            if header.text(index):
                return header.text(index)[:100]
        return self.options.revision[:100]

    def serial(self, btest: Record) -> str:
        sn = btest.text(0)
        if not sn:
            raise self.error(btest, "the @BTEST record has no board id, so the report would "
                             "have no serial number; make the test plan log the board's "
                             "barcode or serial number")
        return sn

    def uut(self, header: Record, btest: Record, code: int, start: datetime | None,
            end: datetime | None) -> dict[str, Any]:
        uut: dict[str, Any] = {}
        operator = self.text_or_option(header, 7, "operator")
        if operator:
            uut["user"] = operator
        duration = btest.text(3)
        if duration:
            uut["execTime"] = float(self.integer(btest, 3, "duration"))
        elif start is not None and end is not None and end >= start:
            uut["execTime"] = (end - start).total_seconds()
        for index, key in ((6, "batchSN"), (2, "fixtureId")):
            value = header.text(index)
            if value:
                uut[key] = value[:100]
        if code != 0:
            uut["errorCode"] = code
            uut["errorMessage"] = f"i3070 test status {code}: {_status_meaning(code)}"
        return uut

    def misc_infos(self, header: Record, btest: Record,
                   code: int) -> list[tuple[str, str, int]]:
        found = [("Test status", f"{code} {_status_meaning(code)}", btest.line)]
        for description, record, index in (
            ("Testplan ID", header, 9), ("Testplan revision", header, 10),
            ("Testhead number", header, 3), ("Testhead type", header, 4),
            ("Process step", header, 5), ("Parent panel type", header, 11),
            ("Parent panel type revision", header, 12), ("Version label", header, 13),
            ("Board number", btest, 11), ("Parent panel ID", btest, 12),
            ("Log level", btest, 5), ("Status qualifier", btest, 10),
        ):
            value = record.text(index)
            if value:
                found.append((description, value[:MISC_TEXT_LIMIT], record.line))
        for retest in (c for c in btest.children if c.name == "RETEST"):
            if retest.text(0):
                found.append(("Retest", retest.text(0)[:MISC_TEXT_LIMIT], retest.line))
        return found

    # -- steps ---------------------------------------------------------------------------------

    def root(self, header: Record, btest: Record, result: str,
             board_number: str) -> dict[str, Any]:
        testplan = header.text(9)
        name = self.options.sequence_name or testplan or DEFAULT_SEQUENCE_NAME
        version = self.options.sequence_version or header.text(10)
        root = _Step({
            "id": 0, "group": "M", "stepType": "SequenceCall", "name": name[:STEP_NAME_LIMIT],
            "status": result,
            "seqCall": {"path": testplan, "name": name, "version": version},
            "steps": [],
        }, btest)
        children: list[dict[str, Any]] = root.step["steps"]
        last = root
        for record in btest.children:
            if record.name == "RPT":
                last.texts.append(self.report_text(record))
                continue
            built = self.result_step(record, board_number)
            if built is not None:
                children.append(built.step)
                last = built
        for step in children:  # only now: report text lines follow their step
            self.places[id(step)].finish()
        return root.finish()

    def result_step(self, record: Record, board_number: str) -> _Step | None:
        """The step for one record under @BTEST or @BLOCK; None for records without one."""
        name = record.name
        if name == "BLOCK":
            return self.block(record, board_number)
        if name.startswith("A-"):
            # An analog test outside a block is named by its subtest.
            designator = self.designator(record.text(2), board_number) or name[2:]
            return self.numeric(designator, [record], subtests=False)
        if name in ("TS", "BS-CON"):
            return self.counts(record, board_number)
        if name in ("PF", "TJET"):
            return self.pins(record, board_number)
        if name == "D-T":
            return self.digital(record, board_number)
        return None  # INDICT, NODE, ALM, ... and custom records carry no test result

    def block(self, block: Record, board_number: str) -> _Step:
        name = self.designator(block.text(0), board_number) or "block"
        analog = [c for c in block.children if c.name.startswith("A-")]
        others: list[_Step] = []
        texts: list[str] = []
        for child in block.children:
            if child.name == "RPT":
                texts.append(self.report_text(child))
            elif not child.name.startswith("A-"):
                built = self.result_step(child, board_number)
                if built is not None:
                    others.append(built)
        if analog and not others:
            step = self.numeric(name, analog, subtests=True)
        elif len(others) == 1 and not analog:
            step = others[0]
            step.step["name"] = name[:STEP_NAME_LIMIT]
        elif others:
            members = [self.numeric(name, analog, subtests=True)] if analog else []
            members.extend(others)
            step = self.sequence(name, members, block)
        else:  # a block without results: only its verdict
            step = self.verdict(name, block, 1, "block status")
        step.place = (block.line, block.name, block.text(0))
        step.texts.extend(texts)
        status_text = block.text(1)
        if status_text and self.integer(block, 1, "block status") != 0:
            step.step["status"] = "F"
        if block.cut:
            step.texts.append("the tester cut this record short (Ctrl-D)")
        return step

    def numeric(self, name: str, records: list[Record], subtests: bool) -> _Step:
        """A numeric step from analog records (`@A-xxx|status|value|subtest` + limits);
        with `subtests`, subtest designators name the measurements."""
        named = len(records) > 1 or (subtests and any(r.text(2) for r in records))
        step = _Step({
            "id": 0, "group": "M", "stepType": "ET_MNLT" if named else "ET_NLT",
            "name": name[:STEP_NAME_LIMIT], "status": "P", "numericMeas": [],
        }, records[0])
        self.places[id(step.step)] = step
        seen: dict[str, int] = {}
        items: list[dict[str, Any]] = step.step["numericMeas"]
        for record in records:
            kind = record.name[2:]
            measurement: dict[str, Any] = {}
            label = record.text(2) or kind
            if named:
                measurement["name"] = _unique(label, seen)
            code = self.integer(record, 0, "test status")
            value = self.number(record, 1, "measured value")
            low = high = None
            nominal = ""
            limits = record.child("LIM3") or record.child("LIM2")
            if limits is not None:
                offset = 1 if limits.name == "LIM3" else 0
                nominal = limits.text(0) if offset else ""
                high = self.number(limits, offset, "high limit")
                low = self.number(limits, offset + 1, "low limit")
            op, low_limit, high_limit = _operator(low, high)
            measurement["compOp"] = op
            measurement["status"] = "P" if code == 0 else "F"
            measurement["unit"] = ANALOG_UNITS.get(kind, "")
            measurement["value"] = value
            if low_limit is not None:
                measurement["lowLimit"] = low_limit
            if high_limit is not None:
                measurement["highLimit"] = high_limit
            items.append(measurement)
            step.measured.append((record.line, record.name, ""))
            if nominal:
                unit = f" {measurement['unit']}" if measurement["unit"] else ""
                prefix = f"{measurement['name']}: " if named else ""
                step.texts.append(f"{prefix}nominal {nominal}{unit}")
            if code != 0:
                step.step["status"] = "F"
            if record.cut:
                step.texts.append(f"@{record.name} cut short by the tester (Ctrl-D)")
        return step

    def counts(self, record: Record, board_number: str) -> _Step:
        """`@TS|status|shorts|opens|phantoms|designator` or `@BS-CON|designator|status|shorts|
        opens`: the counts, each expected to be 0."""
        fields: tuple[tuple[str, int], ...]
        if record.name == "TS":
            status_at, fields, designator = 0, (("shorts", 1), ("opens", 2), ("phantoms", 3)), 4
        else:
            status_at, fields, designator = 1, (("shorts", 2), ("opens", 3)), 0
        code = self.integer(record, status_at, "test status")
        default = "shorts" if record.name == "TS" else "boundary scan connect"
        name = self.designator(record.text(designator), board_number) or default
        step = self.zero_counts(name, record, code, fields)
        step.texts.extend(self.details(record))
        return step

    def pins(self, record: Record, board_number: str) -> _Step:
        """`@PF|designator|status|failing pins` or `@TJET|status|failing pins|designator`."""
        if record.name == "PF":
            designator, status_at, count_at, default = 0, 1, 2, "pins"
        else:
            designator, status_at, count_at, default = 2, 0, 1, "testjet"
        code = self.integer(record, status_at, "test status")
        name = self.designator(record.text(designator), board_number) or default
        step = self.zero_counts(name, record, code, (("failing pins", count_at),))
        step.texts.extend(self.details(record))
        return step

    def zero_counts(self, name: str, record: Record, code: int,
                    fields: Iterable[tuple[str, int]]) -> _Step:
        present = [(label, index) for label, index in fields if record.text(index)]
        named = len(present) > 1 or record.name in ("TS", "BS-CON")
        step = _Step({
            "id": 0, "group": "M", "stepType": "ET_MNLT" if named else "ET_NLT",
            "name": name[:STEP_NAME_LIMIT], "status": "P" if code == 0 else "F",
            "numericMeas": [],
        }, record)
        self.places[id(step.step)] = step
        for label, index in present:
            value = self.integer(record, index, label)
            # The file says whether the test failed; which count failed it is the limit's say.
            status = numeric_status("EQ", value, 0) if code != 0 else "P"
            measurement: dict[str, Any] = {"name": label} if named else {}
            measurement.update({"compOp": "EQ", "status": status, "unit": "", "value": value,
                                "lowLimit": 0})
            step.step["numericMeas"].append(measurement)
            step.measured.append(step.place)
        if not present:  # no counts written: the verdict alone
            del step.step["numericMeas"]
            step.step["stepType"] = "ET_PFT"
            step.step["booleanMeas"] = [{"status": step.step["status"]}]
            step.measured.append(step.place)
        if record.cut:
            step.texts.append(f"@{record.name} cut short by the tester (Ctrl-D)")
        return step

    def digital(self, record: Record, board_number: str) -> _Step:
        """`@D-T|status|substatus|failing vector|failing pins|designator`: pass/fail."""
        name = self.designator(record.text(4), board_number) or "digital"
        step = self.verdict(name, record, 0, "test status")
        facts = [(label, record.text(index)) for label, index in
                 (("substatus", 1), ("failing vector", 2), ("failing pins", 3))]
        shown = [f"{label} {value}" for label, value in facts if value and value.strip("0")]
        if shown:
            step.texts.append(", ".join(shown))
        step.texts.extend(self.details(record))
        return step

    def verdict(self, name: str, record: Record, status_at: int, what: str) -> _Step:
        """A pass/fail step carrying the status written in field `status_at` of `record`."""
        status_text = record.text(status_at)
        code = self.integer(record, status_at, what) if status_text else 0
        status = "P" if code == 0 else "F"
        step = _Step({
            "id": 0, "group": "M", "stepType": "ET_PFT", "name": name[:STEP_NAME_LIMIT],
            "status": status, "booleanMeas": [{"status": status}],
        }, record)
        step.measured.append(step.place)
        self.places[id(step.step)] = step
        if record.cut:
            step.texts.append(f"@{record.name} cut short by the tester (Ctrl-D)")
        return step

    def sequence(self, name: str, members: list[_Step], record: Record) -> _Step:
        statuses = [member.step["status"] for member in members]
        step = _Step({
            "id": 0, "group": "M", "stepType": "SequenceCall", "name": name[:STEP_NAME_LIMIT],
            "status": "F" if "F" in statuses else "P",
            "seqCall": {"path": "", "name": name, "version": ""},
            "steps": [member.finish() for member in members],
        }, record)
        self.places[id(step.step)] = step
        return step

    def details(self, record: Record) -> list[str]:
        """Report text lines for the detail records nested in a result (opens, pins, ...)."""
        lines = []
        for detail in record.walk():
            if detail.name == "RPT":
                lines.append(_message(detail))
            elif detail.name in DETAIL_LABELS:
                lines.append(f"{DETAIL_LABELS[detail.name]}: {_field_text(detail)}")
        return lines

    def report_text(self, record: Record) -> str:
        """The message of an `@RPT` record, with the messages nested in it (a tester that
        closes them lines later nests one in the next) on lines of their own; a plain `|`
        inside a message was a field separator."""
        lines = [_message(record)]
        lines.extend(_message(inner) for inner in record.walk() if inner.name == "RPT")
        return "\n".join(lines)

    def blame(self, report: dict[str, Any], root: dict[str, Any], result: str) -> None:
        """Say which failed steps mattered: none on a passed board, the first on a failed."""
        failed = [step for step in root["steps"] if step.get("status") == "F"]
        if result == "P":
            for step in failed:
                step["causedSeqFailure"] = False
        elif result == "F" and failed:
            failed[0]["causedUUTFailure"] = True
            report["uut"]["stepIdCausedUUTFailure"] = failed[0]["id"]

    # -- fields --------------------------------------------------------------------------------

    def designator(self, text: str, board_number: str) -> str:
        """A designator without the panel prefix of this board ("2%r698" on board 002)."""
        match = _BOARD_PREFIX.fullmatch(text)
        # isdecimal, not isdigit: "²" is a digit that int() does not read.
        if match and board_number.isdecimal() and int(match.group(1)) == int(board_number):
            return match.group(2)
        return text

    def required(self, record: Record, index: int, option: str, what: str) -> str:
        value = self.text_or_option(record, index, option)
        if not value:
            # Without a @BATCH record, `record` stands in for it and has no fields.
            given = "the @BATCH record gives" if record.fields else "the file has no @BATCH "\
                "record, so it gives"
            raise self.error(record, f"{given} no {what} and no {option} is configured; set "
                             f"{option} in the watch folder's converter arguments or in "
                             "converters.defaults")
        return value

    def text_or_option(self, record: Record, index: int, option: str) -> str:
        value = record.text(index) or getattr(self.options, option)
        return str(value)[:100]

    def integer(self, record: Record, index: int, what: str) -> int:
        text = record.text(index)
        if not _INTEGER.fullmatch(text):
            shown = f"{text!r} is not a whole number" if text else "is missing"
            raise self.error(record, f"the {what} of the @{record.name} record (field "
                             f"{index + 1}) {shown}")
        return int(text)

    def number(self, record: Record, index: int, what: str) -> float:
        text = record.text(index)
        value = float(text) if _NUMBER.fullmatch(text) else math.nan
        if not math.isfinite(value):
            shown = f"{text!r} is not a number" if text else "is missing"
            raise self.error(record, f"the {what} of the @{record.name} record (field "
                             f"{index + 1}) {shown}")
        return value

    def moment(self, record: Record, index: int, what: str) -> datetime | None:
        """A `YYMMDDHHMMSS` time (or with a 4-digit year) in the folder's time zone."""
        text = record.text(index)
        if not text:
            return None
        match = _DATETIME.fullmatch(text)
        if match is None:
            raise self.error(record, f"the {what} {text!r} of the @{record.name} record is not "
                             "a time like 210805125041 (YYMMDDhhmmss)")
        century, year, month, day, hour, minute, second = match.groups()
        full_year = int(century + year) if century else 2000 + int(year)
        try:
            naive = datetime(full_year, int(month), int(day), int(hour), int(minute),
                             int(second))
        except ValueError:
            raise self.error(record, f"the {what} {text!r} of the @{record.name} record is not "
                             "a valid date and time") from None
        return self.options.local(naive)

    def error(self, record: Record, what: str) -> ConversionError:
        return ConversionError(f"{self.path}: line {record.line}: {what}")

"""`WATSStandardXMLConverter`: WATS Standard XML Format (WSXF) and legacy WRML (formats.md §2).

Owns mapping each `<Report>` of these files to a WSJF report as a server export of the same
report would hold it. The file is read by `xmlsafe` (DTDs and entities refused, a size cap, a
nesting cap, a line number on every element, each `<Step>` mapped as it ends, so that a
report's elements are never all in memory); the flat legacy WRML layout is first rebuilt into
the WSXF tree by `wrml.py`; attribute values and a step's payloads are read by `wsxf_fields`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pywats_client.converters.builtin import BuiltinConverter, ConversionOptions
from pywats_client.converters.textio import MB, check_size
from pywats_client.converters.wsxf_fields import (
    MEASUREMENTS,
    SINGLE_PAYLOADS,
    FieldReader,
    comment_of,
    prop_of,
)
from pywats_client.converters.xmlsafe import XmlFormat, XmlNode, parse_xml, sniff_root
from pywats_client.errors import ConversionError
from pywats_client.report.model import ReportDict, format_datetime, parse_datetime

WSXF_NS = "http://wats.virinco.com/schemas/WATS/Report/wsxf"
WRML_NS = "http://wats.virinco.com/schemas/WATS/Report"
MAX_FILE_SIZE = 200 * MB
LAZY_PLACES_FROM = MB
# Real reports nest a few dozen levels; the cap keeps the mapping of properties (recursive)
# far from Python's recursion limit whatever a hostile file holds.
MAX_DEPTH = 120
# Each <Step> is mapped as it ends and then dropped: a report is never both a tree of
# elements and a WSJF report in memory.
XML = XmlFormat("WSXF", MAX_DEPTH, "fix the file or the program that writes it",
                hand_over=frozenset({"report"}), stream=frozenset({"step"}))

_STEP_STATUS = {"passed": "P", "failed": "F", "done": "D", "skipped": "S", "error": "E",
                "terminated": "T",
                # WSJF has no "unknown" letter; D ("ran, no verdict") is the honest nearest one.
                "unknown": "D"}
_RESULT = {"passed": "P", "failed": "F", "error": "E", "terminated": "T", "done": "D"}
_GROUP = {"main": "M", "setup": "S", "cleanup": "C"}
_PAYLOADS = ("seqCall", "numericMeas", "stringMeas", "booleanMeas", "messagePopup", "callExe")
_BATCH = 128  # steps started and ended, mapped at a time
class WATSStandardXMLConverter(BuiltinConverter):
    """Imports WSXF files (and legacy WRML) as the WATS Client's WSXF importer does."""

    name = "WATSStandardXMLConverter"
    memory_ratio = 3.5  # peak RSS per input byte (bench_converters --memory: 3.31 on 30 MB)
    description = "WATS Standard XML Format (WSXF) and legacy WRML: every <Report> in the file"
    file_patterns = ("*.xml",)

    def detect_with_reason(self, path: Path, head: bytes) -> tuple[float, str]:
        return _detect(head)

    def read(self, path: Path, options: ConversionOptions) -> list[dict[str, Any]]:
        """Every `<Report>` of the file as a WSJF report, in file order."""
        size = check_size(path, MAX_FILE_SIZE, "WSXF", hint="split the export")
        stamp = _stamp(path)
        # The source places of a large file's elements are found only when a report turns out
        # invalid (by reading the file again): on 200 000 steps they would cost 40 MB.
        eager = size < LAZY_PLACES_FROM
        reports = _read_reports(path, options, record=eager)
        for index, report in enumerate(reports):
            report.source_bytes = size // len(reports)
            if not eager:
                report.find_locations = _place_finder(path, options, stamp, index)
        return list(reports)


def _read_reports(path: Path, options: ConversionOptions, *, record: bool,
                  only: int | None = None) -> list[ReportDict]:
    """The reports of the file (only report `only`, when given), with their source places
    when `record`."""
    reader = _Reader(path, options, record, only)
    try:
        reader.read()
    except _DuplicateId as exc:
        # Which step has the id first is found only now, by reading the file again: remembering
        # the place of every step for this would cost more than a report's steps themselves.
        raise exc.named(_first_place(path, options, exc)) from None
    if not reader.reports and only is None:
        raise ConversionError(f"{path}: the file holds no <Report> element")
    return reader.reports


class _Reader:
    """The handlers of one reading of a file: each <Report> gets a `_ReportMapper` as it
    starts, its steps are mapped as they end (WSXF; legacy WRML lists its steps flat, so its
    report is rebuilt and then mapped when it ends), and it is finished when it ends."""

    def __init__(self, path: Path, options: ConversionOptions, record: bool,
                 only: int | None, find_id: int | None = None) -> None:
        self.path = path
        self.options = options
        self.record = record
        self.only = only
        self.find_id = find_id  # only look for the first step with this id (`_first_place`)
        self.found: str | None = None
        self.dialect = ""
        self.reports: list[ReportDict] = []
        self.open: list[_ReportMapper] = []  # a <Report> may hold one (the root one only)
        self.seen = 0

    def read(self) -> None:
        try:
            with open(self.path, "rb") as fh:
                parse_xml(str(self.path), fh, XML, encoding=self.options.encoding,
                          on_root=self.on_root, on_start=self.on_start, on_end=self.on_end,
                          on_complete=self.on_report)
        except OSError as exc:
            raise ConversionError(
                f"{self.path}: cannot read the file: {exc.strerror or exc}") from exc

    def on_root(self, root: XmlNode) -> None:
        self.dialect = _dialect(self.path, root)

    def on_start(self, node: XmlNode, parent: XmlNode | None) -> None:
        if node.key == "report":
            self.open.append(_ReportMapper(self.path, self.options, self.dialect, self.record,
                                           node, self.find_id))
        elif self.dialect == "WSXF" and self.open:
            self.open[-1].started(node, parent)

    def on_end(self, node: XmlNode, parent: XmlNode) -> bool:
        return bool(self.open) and self.open[-1].ended(node)

    def on_report(self, node: XmlNode) -> None:
        mapper = self.open.pop()
        index = self.seen
        self.seen += 1
        if self.only is not None and index != self.only:
            return
        if self.find_id is not None:
            mapper.catch_up()
            self.found = mapper.found
            return
        if self.dialect == "WRML":
            # Imported here: wrml builds on the same nodes and is rarely needed.
            from pywats_client.converters.wrml import rebuild_tree

            node = rebuild_tree(self.path, node)
            mapper.replay(node)
        self.reports.append(mapper.report(node, index))


class _DuplicateId(ConversionError):
    """A step uses an id an earlier step of the report has; which one is found afterwards."""

    def __init__(self, path: Path, place: str, step_id: int, report: int) -> None:
        super().__init__(f"{path}: {place}: Id {step_id} is also used by another step")
        self.path, self.place, self.step_id, self.report = path, place, step_id, report

    def named(self, first: str | None) -> ConversionError:
        if first is None:  # the file changed since (the conversion is then tried again)
            return ConversionError(str(self))
        return ConversionError(f"{self.path}: {self.place}: Id {self.step_id} is also used by "
                               f"{first}")


def _first_place(path: Path, options: ConversionOptions, dup: _DuplicateId) -> str | None:
    """The place of the first step of report `dup.report` whose id is `dup.step_id`."""
    reader = _Reader(path, options, False, dup.report, find_id=dup.step_id)
    try:
        reader.read()
    except (ConversionError, RecursionError, ValueError):
        return None
    return reader.found


def _stamp(path: Path) -> tuple[int, int]:
    try:
        stat = path.stat()
    except OSError as exc:
        raise ConversionError(f"{path}: cannot read the file: {exc.strerror or exc}") from exc
    return stat.st_size, stat.st_mtime_ns


def _place_finder(path: Path, options: ConversionOptions, stamp: tuple[int, int], index: int
                  ) -> Callable[[], dict[str, str]]:
    """Finds the source places of report `index` of the file on demand, by reading it again,
    unless it changed since it was converted."""

    def find() -> dict[str, str]:
        try:
            if _stamp(path) != stamp:
                return {}
            found = _read_reports(path, options, record=True, only=index)
        except (ConversionError, RecursionError, ValueError):
            return {}  # a place is a courtesy: without one the message still names the field
        return found[0].locations if found else {}

    return find


def _dialect(path: Path, root: XmlNode) -> str:
    ns = root.ns.rstrip("/").lower()
    if root.key in ("reports", "report"):
        if ns == WSXF_NS.lower():
            return "WSXF"
        if ns == WRML_NS.lower():
            return "WRML"
    where = f" in namespace {root.ns}" if root.ns else " without a namespace"
    raise ConversionError(
        f"{path}: line {root.line}: the root element is <{root.tag}>{where}; a WSXF file starts "
        f'with <Reports xmlns="{WSXF_NS}"> (legacy WRML: xmlns="{WRML_NS}"). '
        "Choose the converter for this kind of file instead"
    )


# -- mapping one <Report> ----------------------------------------------------------------------


class _Step:
    """A <Step> being read: what its start told, and its child steps as they were mapped.

    A problem is kept, not raised, until the report ends, so that the report says the problem
    it would say if it were mapped from its whole tree: the report's own first, then the
    steps' in document order, each step's own before its child steps'.
    """

    __slots__ = ("child_problem", "id", "kids", "node", "problem", "slot", "steps", "where")

    def __init__(self, node: XmlNode, where: str) -> None:
        self.node = node
        self.where = where  # its path in the report ("root.steps[2]"), when places are kept
        self.id: int | None = None
        self.slot = -1  # its place among the steps without an id
        self.problem: ConversionError | None = None  # found at its start (its id)
        self.child_problem: Exception | None = None  # the first of its child steps
        self.kids = 0
        self.steps: list[dict[str, Any]] = []


# In `_ReportMapper.events`, in place of the step a step stands in: the step started.
_STARTED = _Step(XmlNode("Step", "", {}, 0), "")


class _ReportMapper(FieldReader):
    """Turns one WSXF `<Report>` into a `ReportDict`: its steps as they end (`started`,
    `ended`), the rest when it ends (`report`), recording where each part came from."""

    def __init__(self, path: Path, options: ConversionOptions, dialect: str,
                 record: bool, node: XmlNode, find_id: int | None = None) -> None:
        super().__init__(path)
        self.options = options
        self.dialect = dialect
        self.record = record  # note where each part came from (`ReportDict.locations`)
        self.node = node
        self.out = ReportDict()
        self.step_ids: set[int] = set()
        self.unnumbered: list[dict[str, Any] | None] = []
        self.open: list[_Step] = []  # the steps being read, outermost first
        self.roots = 0  # root steps (a test report has one)
        self.first_root: XmlNode | None = None
        self.root: dict[str, Any] | Exception | None = None  # the first root step
        self.find_id = find_id  # only look for the first step with this id
        self.found: str | None = None
        # Steps that started (with _STARTED) and ended (with the step they stand in, None for
        # a root step), waiting to be mapped: mapping them in batches, between stretches of
        # reading, is a tenth faster than a step at a time (the CPU's caches keep either).
        self.events: list[tuple[_Step, _Step | None]] = []

    def note(self, key: str, node: XmlNode) -> None:
        if self.record:
            self.out.locations[key] = node.place()

    # the report

    def report(self, node: XmlNode, index: int) -> ReportDict:
        """The report, once its element (report number `index` of the file) has ended."""
        self.catch_up()
        out = self.out
        self.note("", node)  # the whole report
        kinds = {"uut": "T", "uur": "R"}
        kind = kinds.get((node.get("type") or "").strip().lower())
        if kind is None:
            if node.get("type"):
                raise self.fail(node, f"type={node.get('type')!r} is not UUT or UUR")
            kind = "R" if node.find("uur") is not None else "T"
        out["type"] = kind
        if node.get("ID"):
            out["id"] = node.get("ID")
        options = self.options
        out["pn"] = node.get("PN") or options.part_number
        if not out["pn"]:
            raise self.fail(node, "PN (part number) is missing and no part_number is "
                                  "configured")
        out["sn"] = node.get("SN") or ""
        if not out["sn"].strip():
            raise self.fail(node, "SN (serial number) is missing")
        out["rev"] = node.get("Rev") if node.get("Rev") is not None else options.revision
        self.process(node, out)
        if kind == "T":
            out["result"] = self.letter(node, "Result", _RESULT, "PFETD")
        else:  # a repair report has no verdict of its own; WATS stores P
            out["result"] = self.letter(node, "Result", _RESULT, "PFETD", required=False) or "P"
        for attr, key in (("MachineName", "machineName"), ("Location", "location"),
                          ("Purpose", "purpose")):
            if node.get(attr) is not None:
                out[key] = node.get(attr)
        self.start(node, out)
        groups: dict[str, list[XmlNode]] = {}
        for child in node.children:
            groups.setdefault(child.key, []).append(child)
        if kind == "T":
            header = groups.get("uut", [None])[0]
            uut = self.uut(header) if header is not None else {}
            if "user" not in uut and options.operator:
                uut["user"] = options.operator
            if uut:
                out["uut"] = uut
            if header is not None:
                self.note("uut", header)
        else:
            header = groups.get("uur", [None])[0]
            if header is None:
                raise self.fail(node, "a repair report (type UUR) needs a <UUR> element")
            out["uur"] = self.uur(header)
            self.note("uur", header)
        out["miscInfos"] = [self.misc_info(n, i) for i, n in enumerate(groups.get("miscinfo", []))]
        units = [n for n in node.children if n.key in ("reportunithierarchy", "partinfo")]
        out["subUnits"] = [self.sub_unit(n, i) for i, n in enumerate(units)]
        if kind == "R":
            self.repair_units(node, groups)
        elif groups.get("failures"):
            raise self.fail(groups["failures"][0], "failures belong in a repair report (UUR)")
        assets = [self.asset(n, i) for i, n in enumerate(groups.get("asset", []))]
        if assets:
            out["assets"] = assets
        report_binary = [n for n in groups.get("binary", []) if n.get("FailIdx") is None]
        if report_binary:
            out["binaryData"] = [self.binary(n) for n in report_binary]
            for n, binary_node in enumerate(report_binary):
                self.note(f"binaryData[{n}]", binary_node)
        additional = [self.additional(n) for n in groups.get("additionaldata", [])]
        if additional:
            out["additionalData"] = additional
        # ReportInfo (client statistics), SPCData, origin and ProductName have no WSJF input
        # field: the server fills its own, so they are left out.
        if kind == "R" and self.first_root is not None:
            raise self.fail(self.first_root, "a repair report (UUR) cannot hold test steps")
        if kind == "T":
            if self.roots != 1:
                raise self.fail(node, "a test report (UUT) needs exactly one root <Step>, "
                                      f"found {self.roots}")
            if isinstance(self.root, _DuplicateId):
                self.root.report = index
            if isinstance(self.root, Exception):
                raise self.root
            out["root"] = self.root
            self.number_steps()
        return out

    def process(self, node: XmlNode, out: dict[str, Any]) -> None:
        process = node.find("process")
        code = self.integer(process, "Code") if process is not None else None
        name = process.get("Name") if process is not None else None
        where = process if process is not None else node
        out["processCode"] = self.options.process_code(
            f"{self.path}: {where.place()}", code=code, name=name,
            lacks="the report has no <Process Code=\"...\">")
        if process is not None and process.format_of("Code") is not None:
            out["processCodeFormat"] = process.format_of("Code")
        process_name = self.options.process_name_for(name)
        if process_name:
            out["processName"] = process_name

    def start(self, node: XmlNode, out: dict[str, Any]) -> None:
        start = self.date(node, "Start")
        start_utc = self.date(node, "Start_utc") or self.date(node, "StartUTC")
        if start is not None:
            moment = parse_datetime(start)
            if moment.tzinfo is None:  # local time of the station that wrote the file
                start = format_datetime(self.options.local(moment))
            out["start"] = start
        elif start_utc is not None:
            out["start"] = start_utc  # a UTC time is a valid start with an offset
        if start_utc is not None:
            out["startUTC"] = start_utc

    def uut(self, node: XmlNode) -> dict[str, Any]:
        out: dict[str, Any] = {}
        self.put(out, "execTime", node, "ExecutionTime", self.number)
        self.put(out, "testSocketIndex", node, "TestSocketIndex", self.integer)
        self.put(out, "batchSN", node, "BatchSN", self.text)
        comment = comment_of(node)
        if comment is not None:
            out["comment"] = comment
        self.put(out, "errorCode", node, "ErrorCode", self.integer)
        self.put(out, "errorMessage", node, "ErrorMessage", self.text)
        self.put(out, "fixtureId", node, "FixtureId", self.text)
        self.put(out, "user", node, "UserLoginName", self.text)
        self.put(out, "batchFailCount", node, "BatchFailCount", self.integer)
        self.put(out, "batchLoopIndex", node, "BatchLoopIndex", self.integer)
        self.put(out, "stepIdCausedUUTFailure", node, "StepIdCausedUUTFailure", self.integer)
        # ParameterBaseVersion has no WSJF field.
        return out

    def uur(self, node: XmlNode) -> dict[str, Any]:
        out: dict[str, Any] = {}
        comment = comment_of(node)
        if comment is not None:
            out["comment"] = comment
        user = node.get("UserLoginName") or self.options.operator
        if user:
            out["user"] = user
        process = node.find("process")
        code = self.integer(process, "Code") if process is not None else None
        if code is None:
            raise self.fail(process or node, "the <UUR> header needs <Process Code=\"...\">, "
                                             "the code of the tested operation")
        out["processCode"] = code
        if process is not None and process.get("Name"):
            out["processName"] = process.get("Name")
        self.put(out, "refUUT", node, "ReferencedUUT", self.text)
        self.put(out, "confirmDate", node, "ConfirmDate", self.date)
        self.put(out, "finalizeDate", node, "FinalizeDate", self.date)
        self.put(out, "execTime", node, "ExecutionTime", self.number)
        self.put(out, "parent", node, "Parent", self.text)
        children = [guid for child in node.children if child.key == "children"
                    for guid in re.split(r"[\s,;]+", child.text) if guid]
        if children:
            out["children"] = children
        # Active (the repair is still open in the web client) has no WSJF field.
        return out

    def misc_info(self, node: XmlNode, index: int) -> dict[str, Any]:
        self.note(f"miscInfos[{index}]", node)
        description = node.get("Description")
        if not description:
            raise self.fail(node, "Description is missing")
        out: dict[str, Any] = {"description": description}
        if node.get("Typedef"):
            out["typedef"] = node.get("Typedef")
        # Server exports carry both value fields, null when unused (idx/order_no are only the
        # listing order, which the list keeps).
        out["text"] = node.text if node.parts else None
        out["numeric"] = self.integer(node, "Numeric")
        if node.format_of("Numeric") is not None:
            out["numericFormat"] = node.format_of("Numeric")
        if node.get("Id"):
            out["id"] = node.get("Id")
        return out

    def sub_unit(self, node: XmlNode, index: int) -> dict[str, Any]:
        self.note(f"subUnits[{index}]", node)
        # WSJF requires rev: a unit exported without one gets "" (as a report's own rev can be).
        out: dict[str, Any] = {"partType": node.get("PartType"), "pn": node.get("PN"),
                               "rev": node.get("Rev") or "", "sn": node.get("SN")}
        for attr in ("PN", "SN"):
            if not node.get(attr):
                raise self.fail(node, f"{attr} is missing")
        for key, attr in (("idx", "Idx"), ("parentIdx", "ParentIDX"),
                          ("position", "Position"), ("replacedIdx", "ReplacedIDX")):
            self.put(out, key, node, attr, self.integer)
        return out

    def repair_units(self, node: XmlNode, groups: dict[str, list[XmlNode]]) -> None:
        """UUR rules: unit idx 0 is the main unit; failures hang on the unit they name."""
        units: list[dict[str, Any]] = self.out["subUnits"]
        if not units:  # the repaired unit itself, as the report names it
            units.append({"partType": None, "pn": self.out["pn"], "rev": self.out["rev"],
                          "sn": self.out["sn"], "idx": 0})
        elif all("idx" not in unit for unit in units):
            for n, unit in enumerate(units):
                unit["idx"] = n
        by_idx: dict[int, dict[str, Any]] = {}
        unit_nodes = [n for n in node.children if n.key in ("reportunithierarchy", "partinfo")]
        for n, unit in enumerate(units):
            where = unit_nodes[n] if n < len(unit_nodes) else node
            if not isinstance(unit.get("idx"), int):
                raise self.fail(where, "Idx is missing (every unit of a repair report needs one)")
            if unit["idx"] in by_idx:
                raise self.fail(where, f"Idx={unit['idx']} is used by two units")
            by_idx[unit["idx"]] = unit
        if 0 not in by_idx:
            raise self.fail(node, "no unit has Idx=0 (the main unit of the repair report)")
        for n, unit in enumerate(units):
            for key in ("parentIdx", "replacedIdx"):
                if key in unit and unit[key] not in by_idx:
                    where = unit_nodes[n] if n < len(unit_nodes) else node
                    raise self.fail(where, f"{key} {unit[key]} names no unit of the report")
        failures: dict[int, list[dict[str, Any]]] = {}
        for failure_node in groups.get("failures", []):
            part = self.integer(failure_node, "PartIdx")
            owner = by_idx.get(part if part is not None else 0)
            if owner is None:
                raise self.fail(failure_node, f"PartIdx={part} names no <ReportUnitHierarchy>")
            failure = self.failure(failure_node)
            target = owner.setdefault("failures", [])
            position = next(n for n, known in enumerate(units) if known is owner)
            self.note(f"subUnits[{position}].failures[{len(target)}]", failure_node)
            target.append(failure)
            idx = self.integer(failure_node, "Idx")
            if idx is not None:
                failures.setdefault(idx, []).append(failure)
        for binary_node in groups.get("binary", []):
            fail_idx = self.integer(binary_node, "FailIdx")
            if fail_idx is None:
                continue
            found = failures.get(fail_idx, [])
            if len(found) != 1:
                problem = "no" if not found else "more than one"
                raise self.fail(binary_node, f"FailIdx={fail_idx} matches {problem} <Failures "
                                             "Idx=...> element")
            found[0].setdefault("attachments", []).append(self.binary(binary_node))

    def failure(self, node: XmlNode) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, attr in (("category", "Category"), ("code", "Code")):
            if not node.get(attr):
                raise self.fail(node, f"{attr} is missing")
            out[key] = node.get(attr)
        step_id = self.integer(node, "StepID")
        if step_id is None:
            raise self.fail(node, "StepID (the id of the step that found the failure) is missing")
        out["refStepId"] = step_id
        for key, attr in (("refStepName", "StepName"), ("comRef", "CompRef"),
                          ("funcBlock", "FunctionBlock"), ("artNumber", "ArticleNumber"),
                          ("artRev", "ArticleRevision"), ("artVendor", "ArticleVendor"),
                          ("artDescription", "ArticleDescription")):
            self.put(out, key, node, attr, self.text)
        comment = comment_of(node)
        if comment is not None:
            out["comment"] = comment
        # Failcode is the server's own id of the category/code pair, which WSJF names instead.
        return out

    def binary(self, node: XmlNode) -> dict[str, Any]:
        data = node.find("data")
        if data is None:
            raise self.fail(node, "the <Data> element with the base64 content is missing")
        out: dict[str, Any] = {"contentType": data.get("ContentType"),
                               "data": self.base64(data, data.text),
                               "name": data.get("FileName")}
        if data.get("BinaryDataGUID"):
            out["id"] = data.get("BinaryDataGUID")
        return out  # size is implied by the data; BinaryDataIndex is only the listing order

    def asset(self, node: XmlNode, index: int) -> dict[str, Any]:
        self.note(f"assets[{index}]", node)
        if not node.get("AssetSN"):
            raise self.fail(node, "AssetSN is missing")
        out: dict[str, Any] = {"assetSN": node.get("AssetSN")}
        self.put(out, "usageCount", node, "UsageCount", self.integer)
        return out

    def additional(self, node: XmlNode) -> dict[str, Any]:
        return {"name": node.get("Name") or "",
                "props": [prop_of(child) for child in node.children]}

    # the step tree, a step at a time

    def started(self, node: XmlNode, parent: XmlNode | None) -> None:
        """A <Step> starts: one of the report's steps when it stands in the report or in one
        of its steps (a <Step> in a header or in additional data is not)."""
        if parent is self.node:
            self.roots += 1
            if self.first_root is None:
                self.first_root = node
            where = "root"
        elif self.open and parent is self.open[-1].node:
            outer = self.open[-1]
            where = f"{outer.where}.steps[{outer.kids}]" if self.record else ""
            outer.kids += 1
        else:
            return
        step = _Step(node, where)
        self.open.append(step)
        self.events.append((step, _STARTED))

    def ended(self, node: XmlNode) -> bool:
        """A <Step> ends: True when it was one of the report's steps (its element can go; it
        is mapped with the next batch)."""
        if not self.open or self.open[-1].node is not node:
            return False
        step = self.open.pop()
        self.events.append((step, self.open[-1] if self.open else None))
        if len(self.events) >= _BATCH:
            self.catch_up()
        return True

    def catch_up(self) -> None:
        """Take the steps that started and map those that ended, in the order they did (a
        step's id before its child steps', a step after its child steps)."""
        for step, outer in self.events:
            if outer is _STARTED:
                self.take_id(step)
                continue
            if self.find_id is not None:
                continue
            mapped = self.mapped(step)
            if outer is None:
                if self.root is None:
                    self.root = mapped
            elif outer.child_problem is None:
                if isinstance(mapped, Exception):
                    outer.child_problem = mapped
                    outer.steps = []  # the report fails: its steps are not needed
                else:
                    outer.steps.append(mapped)
        self.events.clear()

    def take_id(self, step: _Step) -> None:
        """The step's id, taken in document order: the first step with an id keeps it."""
        node = step.node
        if self.record:
            self.out.locations[step.where] = node.place()
        try:  # WSXF numbers steps with Id, legacy WRML with StepID.
            step_id = self.integer(node, "Id" if node.get("Id") is not None else "StepID")
        except ConversionError as exc:
            step.problem = exc
            return
        if self.find_id is not None:
            if step_id == self.find_id and self.found is None:
                self.found = node.place()
        elif step_id is None:
            step.slot = len(self.unnumbered)
            self.unnumbered.append(None)
        elif step_id in self.step_ids:
            step.problem = _DuplicateId(self.path, node.place(), step_id, -1)
        else:
            self.step_ids.add(step_id)
            step.id = step_id

    def replay(self, report: XmlNode) -> None:
        """Map the steps of a report rebuilt as a tree (legacy WRML) as if they were read."""
        self.node = report
        for top in report.children:
            if top.key != "step":
                continue
            self.started(top, report)
            stack = [(top, iter(top.children))]
            while stack:
                node, kids = stack[-1]
                for kid in kids:
                    if kid.key == "step":
                        self.started(kid, node)
                        stack.append((kid, iter(kid.children)))
                        break
                else:
                    stack.pop()
                    self.ended(node)

    def mapped(self, step: _Step) -> dict[str, Any] | Exception:
        """The WSJF step, or the first problem of the step and its child steps."""
        if step.problem is not None:
            return step.problem
        try:
            out = self.step(step)
        except (ConversionError, ValueError, RecursionError) as exc:
            return exc  # raised when the report ends, as reading the whole tree would
        return step.child_problem or out

    def step(self, step: _Step) -> dict[str, Any]:
        """One step from its element (its child steps are mapped already)."""
        node, where = step.node, step.where
        head: dict[str, Any] = {}
        if step.id is not None:
            head["id"] = step.id
        head["group"] = self.letter(node, "Group", _GROUP, "MSC", required=False) or "M"
        head["stepType"] = node.get("StepType") or ""
        tail: dict[str, Any] = {"name": node.get("Name") or ""}
        self.put(tail, "start", node, "Start", self.date)
        tail["status"] = self.letter(node, "Status", _STEP_STATUS, "PDSFET")
        self.put(tail, "errorCode", node, "StepErrorCode", self.integer)
        self.put(tail, "errorMessage", node, "StepErrorMessage", self.text)
        if node.get("TSGuid"):  # old exports write TSGuid="" for "none"
            tail["tsGuid"] = node.get("TSGuid")
        self.put(tail, "totTime", node, "total_time", self.number)
        self.put(tail, "causedUUTFailure", node, "StepCausedUUTFailure", self.boolean)
        self.put(tail, "causedSeqFailure", node, "StepCausedSequenceFailure", self.boolean)
        self.put(tail, "interactiveExeNum", node, "InteractiveExeNum", self.integer)
        # module_time, StepIndex and Idx (TestStand's own bookkeeping) have no WSJF field.
        payload: dict[str, Any] = {}
        extras: dict[str, Any] = {}
        texts: list[str] = []
        for child in node.children:
            key = child.key
            if key == "step":
                continue  # mapped as it ended
            if key == "loop":
                loop = self.loop(child)
                if loop is not None:
                    head["loop"] = loop
            elif key == "reporttext":
                texts.append(child.text)
            elif key in MEASUREMENTS:
                field, read = MEASUREMENTS[key]
                items = payload.setdefault(field, [])
                if self.record:
                    self.out.locations[f"{where}.{field}[{len(items)}]"] = child.place()
                items.append(read(self, child, tail["status"]))
            elif key in SINGLE_PAYLOADS:
                field, read_one = SINGLE_PAYLOADS[key]
                target = extras if field in ("chart", "attachment") else payload
                if field in target:
                    raise self.fail(child, f"a step holds one <{child.tag}>, this is the second")
                target[field] = read_one(self, child)
            elif key == "additionalresults":
                extras.setdefault("additionalResults", []).append(self.additional(child))
            # PropertyLoader (and anything newer than this converter) has no WSJF field.
        kinds = [field for field in _PAYLOADS if field in payload]
        if len(kinds) > 1:
            raise self.fail(node, f"a step has one kind of result, this one has "
                                  f"{' and '.join(kinds)}")
        if "chart" in extras and "attachment" in extras:
            raise self.fail(node, "a step holds a chart or an attachment, not both")
        if step.kids and "seqCall" not in payload:
            raise self.fail(node, "has child steps but no <SequenceCall>; only sequence calls "
                                  "hold steps")
        if texts:
            tail["reportText"] = "\n".join(texts)
        out = {**head, **tail, **payload, **extras}
        if step.id is None:
            self.unnumbered[step.slot] = out
        if "seqCall" in payload:
            out["steps"] = step.steps
        return out

    def number_steps(self) -> None:
        # Steps without an Id get the next free ids, in file order, so every id stays unique;
        # the id goes first, as in server exports.
        next_id = max(self.step_ids, default=0) + 1
        for step in self.unnumbered:
            if step is None:
                continue  # a step of a report that fails (its error is raised first)
            rest = dict(step)
            step.clear()
            step["id"] = next_id
            step.update(rest)
            next_id += 1

# -- detection ---------------------------------------------------------------------------------


def _detect(head: bytes) -> tuple[float, str]:
    root = sniff_root(head)
    if root is None:
        return 0.0, ""
    if root.doctype:
        return 0.0, "XML with a DOCTYPE (refused: WSXF has none)"
    local, ns = root.local, root.ns
    key = ns.rstrip("/").lower()
    if local in ("Reports", "Report"):
        if key == WSXF_NS.lower():
            return 0.98, f"XML root <{local}> in the WSXF namespace"
        if key == WRML_NS.lower():
            return 0.95, f"XML root <{local}> in the legacy WRML namespace"
        if not ns:
            return 0.0, f"XML root <{local}> without the WSXF namespace {WSXF_NS}"
    if "ieee-1636" in key or "atml" in key:
        return 0.0, f"ATML test results (root <{local}>), not WSXF"
    where = f" in namespace {ns}" if ns else ""
    return 0.0, f"XML root <{local}>{where}, not WSXF"

"""`ATMLConverter`: IEEE 1636.1 ATML test results as NI TestStand writes them (formats.md §4).

Owns recognising the three dialects by the root element's namespace (ATML 2.02, 5.00, 6.01)
and the report header: one WSJF report per `TestResults` (a batch file holds one per test
socket) with serial and part number, station, operator, times, result and TestStand's socket
index, batch serial number and critical failure. The file is read by `xmlsafe` (DOCTYPE/ENTITY
refused, a size cap, a nesting cap, TestStand's report options skipped, each step element
mapped as it ends). The step tree is built by `atml_steps.py` (results sorted by
`atml_results.py`), values and limits are read by `atml_values.py`.

Converter options (folder arguments, converter arguments, `converters.defaults`):
part_number (when the file has none; default "NA", as the WATS client's ATML converter),
revision (ATML has no revision; default ""), process_code / process_name (ATML names no WATS
process: the rule of every built-in converter, `ConversionOptions.process_code`), operator
and station_name (when the file has none), sequence_name and sequence_version (the root
sequence's, when the file has none), encoding (overrides the file's declaration: TestStand
declares iso-8859-1 but writes the station's code page, e.g. cp1252).
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pywats_client.converters.atml_steps import StepBuilder
from pywats_client.converters.atml_values import (
    AtmlNode,
    Node,
    fail,
    moment,
    node_outcome,
    prop,
    whole,
)
from pywats_client.converters.builtin import BuiltinConverter, ConversionOptions, local_time
from pywats_client.converters.textio import MB, check_size
from pywats_client.converters.xmlsafe import XmlFormat, XmlNode, parse_xml, sniff_root
from pywats_client.errors import ConversionError
from pywats_client.report.model import (
    INT16,
    ReportDict,
    format_datetime,
    iter_steps,
    number_steps,
    parse_datetime,
    result_for_status,
)

# (root element, namespace) -> dialect
DIALECTS = {
    ("TestResults", "http://www.ieee.org/ATML/2007/TestResults"): "ATML 2.02",
    ("TestResultsCollection", "urn:IEEE-1636.1:2011:01:TestResultsCollection"): "ATML 5.00",
    ("TestResultsCollection", "urn:IEEE-1636.1:2013:TestResultsCollection"): "ATML 6.01",
    # A single TestResults as the root is valid in the newer schemas too.
    ("TestResults", "urn:IEEE-1636.1:2011:01:TestResults"): "ATML 5.00",
    ("TestResults", "urn:IEEE-1636.1:2013:TestResults"): "ATML 6.01",
}
MAX_FILE_SIZE = 200 * MB
# TestStand nests a few elements per sequence call; real files stay far below this, and the
# cap keeps the step mapping (recursive per sequence level) clear of Python's stack limit.
MAX_DEPTH = 200
DEFAULT_PART_NUMBER = "NA"
# Report options and style sheet lists are large, and nothing a report needs: skipped. Each
# step element is mapped as it ends and then dropped, each TestResults as it ends: a report is
# never both a tree of elements and a WSJF report in memory.
XML = XmlFormat("ATML", MAX_DEPTH, "this is not an ATML report, or the file is damaged",
                node_type=AtmlNode, skip=frozenset({"TestProgram"}),
                hand_over=frozenset({"testresults"}),
                stream=frozenset({"resultset", "testgroup", "test", "sessionaction"}))


class ATMLConverter(BuiltinConverter):
    """Imports ATML 2.02 / 5.00 / 6.01 test results written by NI TestStand."""

    name = "ATMLConverter"
    memory_ratio = 2.0  # peak RSS per input byte (bench_converters --memory: 1.75 on 30 MB)
    description = ("IEEE 1636.1 ATML test results (2.02, 5.00, 6.01) from NI TestStand: one "
                   "report per TestResults, with TestStand's step properties")
    file_patterns = ("*.xml", "*.atml")

    def detect_with_reason(self, path: Path, head: bytes) -> tuple[float, str]:
        return _detect(head)

    def read(self, path: Path, options: ConversionOptions) -> list[dict[str, Any]]:
        """One WSJF report per `TestResults` of the file, in file order."""
        size = check_size(path, MAX_FILE_SIZE, "ATML", hint="have TestStand write one report "
                          "per UUT, or leave large arrays out of the report")
        reader = _Reader(path, options)
        try:
            with open(path, "rb") as fh:
                parse_xml(str(path), fh, XML, encoding=options.encoding,
                          on_root=reader.on_root, on_start=reader.on_start,
                          on_end=reader.on_end, on_complete=reader.on_results)
        except OSError as exc:
            raise ConversionError(f"{path}: cannot read the file: {exc.strerror or exc}") from exc
        reports = reader.finish()
        for report in reader.reports:
            report.source_bytes = size // len(reports)  # a large report is queued in pieces
        return reports


# -- reading the file ---------------------------------------------------------------------------


class _Reader:
    """Turns each `TestResults` of one file into a report: its steps as they are read, the
    rest as soon as it is complete."""

    def __init__(self, path: Path, options: ConversionOptions) -> None:
        self.path = path
        self.options = options
        self.reports: list[ReportDict] = []
        self.dialect = ""
        self.collection: XmlNode | None = None
        self.ids: set[str] = set()
        self.open: list[StepBuilder] = []  # a TestResults may hold one (the root one only)

    def finish(self) -> list[dict[str, Any]]:
        if not self.reports:
            raise ConversionError(f"{self.path}: the {self.dialect} file holds no TestResults")
        if self.collection is not None:
            _apply_batch(self.collection, self.reports, self.options)
        # What neither the report nor its batch says comes from the converter options.
        operator, station = self.options.operator, self.options.station_name
        for report in self.reports:
            if operator and "user" not in report["uut"]:
                report["uut"]["user"] = operator
            if station and "machineName" not in report:
                report["machineName"] = station
        return list(self.reports)

    def on_root(self, root: XmlNode) -> None:
        dialect = DIALECTS.get((root.tag, root.ns))
        if dialect is None:
            where = f" in namespace {root.ns}" if root.ns else " without a namespace"
            raise ConversionError(
                f"{self.path}: line {root.line}: the root element is <{root.tag}>{where}, not "
                "ATML test results (TestResults in http://www.ieee.org/ATML/2007/TestResults, "
                "or TestResultsCollection in urn:IEEE-1636.1:2011:01:TestResultsCollection / "
                "urn:IEEE-1636.1:2013:TestResultsCollection). Choose the converter for this "
                "kind of file instead"
            )
        self.dialect = dialect
        if root.tag == "TestResultsCollection":
            self.collection = root

    def on_start(self, node: XmlNode, parent: XmlNode | None) -> None:
        if node.key == "testresults":
            self.open.append(StepBuilder(self.path, self.options.timezone, node,
                                         wrapped=self.dialect == "ATML 2.02"))
        elif self.open:
            self.open[-1].started(node, parent)

    def on_end(self, node: XmlNode, parent: XmlNode) -> bool:
        return bool(self.open) and self.open[-1].ended(node)

    def on_results(self, node: XmlNode) -> None:
        self.reports.append(_ReportBuilder(self, node, self.open.pop()).report())


# -- one report ---------------------------------------------------------------------------------


class _ReportBuilder:
    def __init__(self, reader: _Reader, node: XmlNode, builder: StepBuilder) -> None:
        self.reader = reader
        self.path = reader.path
        self.options = reader.options
        self.node = node
        self.builder = builder  # its steps, mapped as they were read

    def report(self) -> ReportDict:
        node = self.node
        out = ReportDict()
        out.locations[""] = node.place()
        out["type"] = "T"
        ident = node.get("uuid") or ""
        if _is_guid(ident) and str(uuid.UUID(ident)) not in self.reader.ids:
            # TestStand's own id of this UUT result: the same file always gives the same id.
            # (A repeated one is left to finalize(), which derives one from file and position.)
            out["id"] = str(uuid.UUID(ident))
            self.reader.ids.add(out["id"])
        result_set = node.child("ResultSet")
        if result_set is None:
            raise fail(self.path, node, "has no ResultSet, so there are no results to report "
                                        "(the file is incomplete or not from TestStand)")
        uut = node.child("UUT")
        sn = _text(uut.child("SerialNumber") if uut is not None else None)
        if not sn:
            raise fail(self.path, uut or node, "the UUT has no serial number (UUT/SerialNumber "
                                               "is missing or empty); WATS needs one")
        options = self.options
        options.fill_header(out, pn=_part_number(uut) or options.part_number
                            or DEFAULT_PART_NUMBER, sn=sn, rev=options.revision,
                            lacks="ATML test results name no WATS process")
        status = node_outcome(result_set)
        station = _text(node.path("TestStation", "SerialNumber"))
        if station:
            out["machineName"] = station
        start = self.moment(result_set, "startDateTime")
        if start is not None:
            out["start"] = format_datetime(start)
        builder = self.builder
        root = builder.root(result_set, options.sequence_name or "MainSequence",
                            options.sequence_version)
        out["result"] = result_for_status(status or root["status"])
        out["uut"] = self.uut(result_set, start)
        out["root"] = root
        number_steps(root)
        self.critical_failure(out, builder)
        out.locations["root"] = result_set.place()
        for where, step in iter_steps(root):
            place = builder.places.get(id(step))
            if place is not None:
                out.locations.setdefault(where, place)
        return out

    def uut(self, result_set: Node, start: datetime | None) -> dict[str, Any]:
        node = self.node
        uut: dict[str, Any] = {}
        operator = node.path("Personnel", "SystemOperator")
        user = (operator.get("ID") or operator.get("name")) if operator is not None else None
        if user:
            uut["user"] = str(user)
        end = self.moment(result_set, "endDateTime")
        if start is not None and end is not None and end >= start:
            uut["execTime"] = (end - start).total_seconds()
        props = node.path("Extension", "TSResultSetProperties")
        socket = whole(prop(props, "TestSocketIndex"))
        if socket is not None and INT16[0] <= socket <= INT16[1]:
            uut["testSocketIndex"] = socket
        batch = prop(props, "BatchSerialNumber")
        if batch and batch.strip():
            uut["batchSN"] = batch.strip()
        return uut

    def critical_failure(self, out: ReportDict, builder: StepBuilder) -> None:
        """TestStand's critical failure stack names the results that failed the UUT."""
        stack = self.node.path("Extension", "TSResultSetProperties", "CriticalFailureStack")
        if stack is None:
            return
        depth = {id(step): where.count(".steps[") for where, step in iter_steps(out["root"])}
        culprit: dict[str, Any] | None = None
        for entry in stack.all("CriticalFailureStackEntry"):
            step = builder.by_result_id.get(entry.get("resultID") or "")
            if step is None:
                continue
            step["causedUUTFailure"] = True
            if culprit is None or depth.get(id(step), 0) > depth.get(id(culprit), 0):
                culprit = step
        if culprit is not None:
            out["uut"]["stepIdCausedUUTFailure"] = culprit["id"]

    def moment(self, node: XmlNode, attr: str) -> datetime | None:
        return moment(self.path, node, attr, self.options.timezone)


def _apply_batch(collection: XmlNode, reports: list[ReportDict],
                 options: ConversionOptions) -> None:
    """A batch file's TSBatchTable fills what the reports of its sockets do not say."""
    table = collection.descendant("TSBatchTable")
    if table is None:
        return
    batch = (prop(table, "batchSerialNumber") or "").strip()
    station = (prop(table, "stationID") or "").strip()
    operator = (prop(table, "operator") or "").strip()
    start_text = (prop(table, "startDateTime") or "").strip()
    start = None
    if start_text:
        try:
            start = local_time(parse_datetime(start_text), options.timezone)
            start.astimezone(timezone.utc)
        except (ValueError, OverflowError):
            start = None  # the batch time is a fallback; each socket has its own
    for report in reports:
        uut = report["uut"]
        if batch and "batchSN" not in uut:
            uut["batchSN"] = batch
        if operator and "user" not in uut:
            uut["user"] = operator
        if station and "machineName" not in report:
            report["machineName"] = station
        if start is not None and "start" not in report:
            report["start"] = format_datetime(start)


def _text(node: XmlNode | None) -> str:
    return node.text.strip() if node is not None else ""


def _part_number(uut: XmlNode | None) -> str:
    """The UUT's part number: its IdentificationNumber of type Part, else the first one."""
    numbers = uut.descendant("IdentificationNumbers") if uut is not None else None
    if numbers is None:
        return ""
    found = [n for n in numbers.all("IdentificationNumber") if (n.get("number") or "").strip()]
    part = next((n for n in found if (n.get("type") or "").lower() == "part"), None)
    chosen = part or (found[0] if found else None)
    return (chosen.get("number") or "").strip() if chosen is not None else ""


_GUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


def _is_guid(text: str) -> bool:
    return _GUID.fullmatch(text.strip()) is not None


# -- detection ----------------------------------------------------------------------------------


def _detect(head: bytes) -> tuple[float, str]:
    root = sniff_root(head)
    if root is None:
        return 0.0, ""
    if root.doctype:
        return 0.0, "XML with a DOCTYPE (refused: TestStand writes none)"
    local, ns = root.local, root.ns
    dialect = DIALECTS.get((local, ns))
    if dialect is not None:
        return 0.98, f"{dialect}: root <{local}> in namespace {ns}"
    if "ieee-1636.1" in ns.lower() or "ieee.org/atml" in ns.lower():
        return 0.3, f"root <{local}> in ATML namespace {ns}, not a known TestResults root"
    where = f" in namespace {ns}" if ns else ""
    return 0.0, f"XML root <{local}>{where}, not ATML test results"

"""`ATMLConverter`: IEEE 1636.1 ATML test results as NI TestStand writes them (formats.md §4).

Owns recognising the three dialects by the root element's namespace (ATML 2.02, 5.00, 6.01),
reading the file safely (DOCTYPE/ENTITY refused, a size cap, a nesting cap, TestStand's
report options skipped, one `TestResults` in memory at a time) and the report header: one WSJF
report per `TestResults` (a batch file holds one per test socket) with serial and part number,
station, operator, times, result and TestStand's socket index, batch serial number and
critical failure. The step tree is built by `atml_steps.py` (results sorted by
`atml_results.py`), values and limits are read by `atml_values.py`. Imports only those, the
converter base, `report`, `errors` and the stdlib.

Converter options (folder arguments, converter arguments, `converters.defaults`):
part_number (when the file has none; default "NA", as the WATS client's ATML converter),
revision (ATML has no revision; default ""), process_code (default 10), process_name,
operator and station_name (when the file has none), sequence_name and sequence_version (the
root sequence's, when the file has none), encoding (overrides the file's declaration:
TestStand declares iso-8859-1 but writes the station's code page, e.g. cp1252).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO
from xml.parsers import expat

from pywats_client.converters.atml_steps import StepBuilder
from pywats_client.converters.atml_values import (
    Node,
    aware,
    fail,
    moment,
    node_outcome,
    prop,
    whole,
)
from pywats_client.converters.base import HEAD_SIZE, Converter, ConverterContext
from pywats_client.errors import ConversionError, IncompleteFileError
from pywats_client.report import (
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
MAX_FILE_SIZE = 200 * 1024 * 1024
# TestStand nests a few elements per sequence call; real files stay far below this, and the
# cap keeps the step mapping (recursive per sequence level) clear of Python's stack limit.
MAX_DEPTH = 200
DEFAULT_PART_NUMBER = "NA"
DEFAULT_PROCESS_CODE = 10
# Report options and style sheet lists: large, and nothing a report needs.
_SKIPPED = frozenset({"TestProgram"})
_HOSTILE = tuple(
    marker.encode(codec) for marker in ("<!DOCTYPE", "<!ENTITY")
    for codec in ("utf-8", "utf-16-le", "utf-16-be")
)
_TRUNCATED = {expat.errors.codes[message] for message in (
    expat.errors.XML_ERROR_NO_ELEMENTS, expat.errors.XML_ERROR_UNCLOSED_TOKEN,
    expat.errors.XML_ERROR_PARTIAL_CHAR, expat.errors.XML_ERROR_UNCLOSED_CDATA_SECTION,
)}


class ATMLConverter(Converter):
    """Imports ATML 2.02 / 5.00 / 6.01 test results written by NI TestStand."""

    name = "ATMLConverter"
    description = ("IEEE 1636.1 ATML test results (2.02, 5.00, 6.01) from NI TestStand: one "
                   "report per TestResults, with TestStand's step properties")
    version = "1.0"
    file_patterns = ("*.xml", "*.atml")

    def detect(self, path: Path, head: bytes) -> float:
        return self.detect_with_reason(path, head)[0]

    def detect_with_reason(self, path: Path, head: bytes) -> tuple[float, str]:
        try:
            return _detect(head)
        except Exception:  # detect() must never raise; a surprise means "not mine"
            return 0.0, ""

    def convert(self, path: Path, context: ConverterContext) -> list[dict[str, Any]]:
        """One WSJF report per `TestResults` of the file, in file order."""
        try:
            size = path.stat().st_size
            if size > MAX_FILE_SIZE:
                raise ConversionError(
                    f"{path}: the file is {size // (1024 * 1024)} MB; ATML files larger than "
                    f"{MAX_FILE_SIZE // (1024 * 1024)} MB are refused (have TestStand write one "
                    "report per UUT, or leave large arrays out of the report)"
                )
            with open(path, "rb") as fh:
                return _Reader(self, path, context).read(fh)
        except OSError as exc:
            raise ConversionError(f"{path}: cannot read the file: {exc.strerror or exc}") from exc


# -- reading the file ---------------------------------------------------------------------------


class _Reader:
    """Parses one file and turns each `TestResults` into a report as soon as it is complete."""

    def __init__(self, converter: ATMLConverter, path: Path, context: ConverterContext) -> None:
        self.converter = converter
        self.path = path
        self.context = context
        self.reports: list[ReportDict] = []
        self.problems: list[ConversionError] = []
        self.dialect = ""
        self.collection: Node | None = None
        self.ids: set[str] = set()

    def read(self, fh: BinaryIO) -> list[dict[str, Any]]:
        head = fh.read(HEAD_SIZE)
        if not head.strip():
            raise IncompleteFileError(f"{self.path}: the file is empty; waiting for the writer")
        if any(marker in head for marker in _HOSTILE):
            raise _refuse_dtd(self.path)
        encoding = None
        configured = self.converter.option(self.context, "encoding")
        if configured and not head.startswith((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")):
            encoding = str(configured)
        _parse(self.path, head, fh, encoding, self.on_root, self.on_results)
        if self.problems:
            raise self.problems[0]
        if not self.reports:
            raise ConversionError(f"{self.path}: the {self.dialect} file holds no TestResults")
        if self.collection is not None:
            _apply_batch(self.collection, self.reports, self.context)
        # What neither the report nor its batch says comes from the converter options.
        operator = self.converter.option(self.context, "operator")
        station = self.converter.option(self.context, "station_name")
        for report in self.reports:
            if operator and "user" not in report["uut"]:
                report["uut"]["user"] = str(operator)
            if station and "machineName" not in report:
                report["machineName"] = str(station)
        return list(self.reports)

    def on_root(self, root: Node) -> None:
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

    def on_results(self, node: Node) -> None:
        # Only the first problem is kept; parsing goes on so that a file still being written
        # is reported as incomplete (retried), not as broken.
        if self.problems:
            return
        try:
            self.reports.append(_ReportBuilder(self, node).report())
        except ConversionError as exc:
            self.problems.append(exc)
        except RecursionError:
            self.problems.append(ConversionError(
                f"{self.path}: {node.place()}: sequence calls are nested too deeply to read"))


def _parse(path: Path, head: bytes, fh: BinaryIO, encoding: str | None,
           on_root: Callable[[Node], None], on_results: Callable[[Node], None]) -> None:
    parser = expat.ParserCreate(encoding, namespace_separator="}")
    parser.buffer_text = True
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    stack: list[Node] = []
    skipping = 0  # depth inside a skipped element

    def start(name: str, attrs: dict[str, str]) -> None:
        nonlocal skipping
        if skipping:
            skipping += 1
            return
        ns, _, tag = name.rpartition("}")
        if tag in _SKIPPED and stack:
            skipping = 1
            return
        line = parser.CurrentLineNumber
        if len(stack) >= MAX_DEPTH:
            raise ConversionError(
                f"{path}: line {line}: elements are nested more than {MAX_DEPTH} deep; this is "
                "not a TestStand ATML report"
            )
        node = Node(tag, ns, {k.rpartition("}")[2]: v for k, v in attrs.items()}, line)
        if not stack:
            on_root(node)
        elif not (tag == "TestResults" and len(stack) == 1):
            # TestResults of a collection are not kept in the tree: converted, then dropped.
            stack[-1].children.append(node)
        stack.append(node)

    def end(name: str) -> None:
        nonlocal skipping
        if skipping:
            skipping -= 1
            return
        node = stack.pop()
        if node.tag == "TestResults" and len(stack) <= 1:
            on_results(node)

    def text(data: str) -> None:
        # Indentation between elements is dropped; a value keeps its text exactly.
        if stack and not skipping and (stack[-1].tag == "Value" or not data.isspace()):
            stack[-1].parts.append(data)

    def refuse(*_: object) -> int:
        raise _refuse_dtd(path, parser.CurrentLineNumber)

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse
    try:
        parser.Parse(head, False)
        while chunk := fh.read(1 << 20):
            parser.Parse(chunk, False)
        parser.Parse(b"", True)
    except expat.ExpatError as exc:
        if exc.code in _TRUNCATED:
            raise IncompleteFileError(
                f"{path}: the XML ends early at line {exc.lineno} (file still being written, "
                "or cut off)"
            ) from None
        raise ConversionError(
            f"{path}: not well-formed XML at line {exc.lineno}, column {exc.offset + 1}: "
            f"{expat.errors.messages.get(exc.code, exc)}; this is not an ATML report, or the "
            "file is damaged"
        ) from None
    except LookupError as exc:  # an encoding Python does not know
        raise ConversionError(
            f"{path}: unknown text encoding {encoding!r}: {exc}; fix the encoding option of "
            "the watch folder (e.g. cp1252)"
        ) from None


def _refuse_dtd(path: Path, line: int | None = None) -> ConversionError:
    where = f" (line {line})" if line else ""
    return ConversionError(
        f"{path}: the file declares a DOCTYPE or ENTITY{where}. TestStand never writes one, "
        "and such declarations can make an XML reader expand entities without end or read "
        "other files, so the file is refused"
    )


# -- one report ---------------------------------------------------------------------------------


class _ReportBuilder:
    def __init__(self, reader: _Reader, node: Node) -> None:
        self.reader = reader
        self.path = reader.path
        self.context = reader.context
        self.node = node

    def option(self, key: str, default: Any = None) -> Any:
        return self.reader.converter.option(self.context, key, default)

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
        out["pn"] = _part_number(uut) or str(self.option("part_number", DEFAULT_PART_NUMBER))
        out["sn"] = sn
        out["rev"] = str(self.option("revision", ""))
        out["processCode"] = self.process_code()
        process_name = self.option("process_name")
        if process_name:
            out["processName"] = str(process_name)
        status = node_outcome(result_set)
        station = _text(node.path("TestStation", "SerialNumber"))
        if station:
            out["machineName"] = station
        start = self.moment(result_set, "startDateTime")
        if start is not None:
            out["start"] = format_datetime(start)
        builder = StepBuilder(self.path, self.context.timezone)
        root = builder.root(result_set, str(self.option("sequence_name", "MainSequence")),
                            str(self.option("sequence_version", "")),
                            wrapped=self.reader.dialect == "ATML 2.02")
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

    def process_code(self) -> int:
        configured = self.option("process_code", DEFAULT_PROCESS_CODE)
        code = whole(str(configured))
        if code is None or not INT16[0] <= code <= INT16[1]:
            raise ConversionError(
                f"{self.path}: process_code {configured!r} in the config is not a whole number "
                "(e.g. 10); ATML files carry no process code, so it comes from the config")
        return code

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

    def moment(self, node: Node, attr: str) -> datetime | None:
        return moment(self.path, node, attr, self.context.timezone)


def _apply_batch(collection: Node, reports: list[ReportDict], context: ConverterContext) -> None:
    """A batch file's TSBatchTable fills what the reports of its sockets do not say."""
    table = collection.find("TSBatchTable")
    if table is None:
        return
    batch = (prop(table, "batchSerialNumber") or "").strip()
    station = (prop(table, "stationID") or "").strip()
    operator = (prop(table, "operator") or "").strip()
    start_text = (prop(table, "startDateTime") or "").strip()
    start = None
    if start_text:
        try:
            start = aware(parse_datetime(start_text), context.timezone)
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


def _text(node: Node | None) -> str:
    return node.text.strip() if node is not None else ""


def _part_number(uut: Node | None) -> str:
    """The UUT's part number: its IdentificationNumber of type Part, else the first one."""
    numbers = uut.find("IdentificationNumbers") if uut is not None else None
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

_PROLOG = re.compile(r"\s*(?:<\?.*?\?>|<!--.*?-->)", re.DOTALL)
_START_TAG = re.compile(r"<([A-Za-z_][\w.:-]*)([^>]*)")
_ATTR = re.compile(r"""([\w:.-]+)\s*=\s*(?:"([^"]*)"|'([^']*)')""")


def _detect(head: bytes) -> tuple[float, str]:
    text = _decode_head(head)
    pos = 0
    while match := _PROLOG.match(text, pos):
        pos = match.end()
    rest = text[pos:].lstrip()
    if rest.startswith("<!DOCTYPE"):
        return 0.0, "XML with a DOCTYPE (refused: TestStand writes none)"
    tag = _START_TAG.match(rest)
    if tag is None:
        return 0.0, ""
    prefix, _, local = tag.group(1).rpartition(":")
    attrs = {m.group(1): m.group(2) if m.group(2) is not None else m.group(3)
             for m in _ATTR.finditer(tag.group(2))}
    ns = attrs.get(f"xmlns:{prefix}" if prefix else "xmlns", "")
    dialect = DIALECTS.get((local, ns))
    if dialect is not None:
        return 0.98, f"{dialect}: root <{local}> in namespace {ns}"
    if "ieee-1636.1" in ns.lower() or "ieee.org/atml" in ns.lower():
        return 0.3, f"root <{local}> in ATML namespace {ns}, not a known TestResults root"
    where = f" in namespace {ns}" if ns else ""
    return 0.0, f"XML root <{local}>{where}, not ATML test results"


def _decode_head(head: bytes) -> str:
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        codec = "utf-16"
    elif head.startswith(b"<\x00"):
        codec = "utf-16-le"
    elif head.startswith(b"\x00<"):
        codec = "utf-16-be"
    else:
        return head.decode("latin-1").lstrip("\ufeff").removeprefix("\xef\xbb\xbf")
    return head[: len(head) // 2 * 2].decode(codec, errors="replace").lstrip("\ufeff")

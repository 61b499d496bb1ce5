"""`XJTAGConverter`: XJTAG `.xjlog` logs (formats.md §11) into one WSJF test report per run.

Owns reading the archive safely and mapping each run. A `.xjlog` is a ZIP holding `Info.xml`
(project path, run count), `Run N.xml` per run, `Run N.checksum` and connection-test data
blobs. Members are read in memory, never extracted: entry names that are absolute or climb
with `..` are refused, and the entry count, each member and the total read are capped. XML is
parsed with DOCTYPE and ENTITY declarations refused and a nesting cap. A bare `Run N.xml`
(`<testrun>` root) is read the same way. Pure; depends on the converter base, `report` and
`errors`.

Mapping (after Virinco's converter): serial -> sn, user -> operator, `testrun@datetime` (UTC)
-> start, project description (and a user comment) -> comment, XJLink name -> station (the
`station_name` option when empty), run time -> execTime, run result -> result and root
status. Each test group is a sequence, each test function a pass/fail step with its time and
its output as report text (text outputs, inline device names, connection-test fault headings,
error messages). Revision and process come from the options; the part number too, else the
project description (else the project file's name). Where the files leave a choice:

* Checksum files hold a 20-byte digest in an undocumented form (not a plain SHA-1 of the
  run), so they cannot be checked; missing or empty ones (some versions write 0 bytes) are
  ignored.
* A function without `<result>` (a run stopped inside it) is Terminated. Warnings written
  outside any group (functions skipped by the test system) are the root step's report text.
* A ZIP without its end record is still being written (`IncompleteFileError`); inside a
  complete archive, a damaged member, a missing run or broken XML is a `ConversionError`.
"""

from __future__ import annotations

import html
import logging
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PureWindowsPath
from typing import Any
from xml.parsers import expat

from pywats_client.converters.base import Converter, ConverterContext
from pywats_client.errors import ConversionError, IncompleteFileError
from pywats_client.report import (
    MISC_INFO_LIMITS,
    STEP_NAME_LIMIT,
    ReportDict,
    format_datetime,
    format_utc,
    number_steps,
    parse_datetime,
    roll_up_statuses,
    status_letter,
)

log = logging.getLogger(__name__)

# A run is tens of kilobytes and a connection-test blob about as much; these caps are far
# above any real log and far below what would hurt a small station.
MAX_FILE_BYTES = 256 * 1024 * 1024
MAX_ENTRIES = 4096
MAX_MEMBER_BYTES = 64 * 1024 * 1024
MAX_TOTAL_BYTES = 256 * 1024 * 1024
MAX_DEPTH = 64
MAX_REPORT_TEXT = 10_000  # characters of output kept per step
DEFAULT_SEQUENCE_NAME = "XJTAG"

_RUN_NAME = re.compile(r"Run (\d{1,6})\.xml", re.IGNORECASE)
_RUN_RESULTS = {"passed": "P", "pass": "P", "failed": "F", "fail": "F", "error": "E",
                "aborted": "T", "stopped": "T", "terminated": "T", "cancelled": "T"}
_HOSTILE = tuple(marker.encode(codec) for marker in ("<!DOCTYPE", "<!ENTITY")
                 for codec in ("utf-8", "utf-16-le", "utf-16-be"))
_TRUNCATED = {expat.errors.codes[message] for message in (
    expat.errors.XML_ERROR_NO_ELEMENTS, expat.errors.XML_ERROR_UNCLOSED_TOKEN,
    expat.errors.XML_ERROR_PARTIAL_CHAR, expat.errors.XML_ERROR_UNCLOSED_CDATA_SECTION,
)}
_TAG = re.compile(r"<[^>]*>")
_BARE_RUN = re.compile(rb"\s*(?:<\?xml[^>]{0,200}\?>\s*)?(?:<!--.{0,2000}?-->\s*)*<testrun[\s>]",
                       re.DOTALL)


class XJTAGConverter(Converter):
    """Converts XJTAG `.xjlog` archives (and bare `Run N.xml` files): one report per run."""

    name = "XJTAGConverter"
    description = "XJTAG .xjlog (ZIP of Info.xml and Run N.xml): one report per test run"
    version = "1.0"
    file_patterns = ("*.xjlog",)

    def detect(self, path: Path, head: bytes) -> float:
        return self.detect_with_reason(path, head)[0]

    def detect_with_reason(self, path: Path, head: bytes) -> tuple[float, str]:
        try:
            return _detect(path, head)
        except Exception:  # detect() must never raise; a surprise means "not mine"
            return 0.0, ""

    def convert(
        self, path: Path, context: ConverterContext
    ) -> dict[str, Any] | list[dict[str, Any]]:
        """One report (a `ReportDict`) per run, in run order; a list when there are several."""
        try:
            size = path.stat().st_size
            with open(path, "rb") as fh:
                head = fh.read(4096)
        except OSError as exc:
            raise ConversionError(f"{path}: cannot read the file: {exc.strerror or exc}") from exc
        if size > MAX_FILE_BYTES:
            raise ConversionError(
                f"{path}: the file is {size // (1024 * 1024)} MB; XJTAG logs over "
                f"{MAX_FILE_BYTES // (1024 * 1024)} MB are refused (check what is written "
                "into this folder)"
            )
        if not head.strip() or (len(head) < 4 and b"PK\x03\x04".startswith(head)):
            raise IncompleteFileError(f"{path}: the file is empty; waiting for the writer")
        if head.startswith(b"PK"):
            info, runs = _read_archive(path)
        elif _BARE_RUN.match(head.lstrip(b"\xef\xbb\xbf")) or b"<testrun" in head:
            info, runs = _Info(), [_RunFile(1, path.name, _read_plain(path), archived=False)]
        elif _unfinished_prolog(head):
            raise IncompleteFileError(
                f"{path}: the XML ends before its root element (still being written?)")
        else:
            raise ConversionError(
                f"{path}: neither a ZIP archive (.xjlog) nor an XJTAG run XML (<testrun>); "
                "choose the converter for this kind of file instead"
            )
        reports = [_RunMapper(self, path, context, info, run, len(runs)).report()
                   for run in runs]
        return reports[0] if len(reports) == 1 else list(reports)


def _unfinished_prolog(head: bytes) -> bool:
    """True for the start of an XML file cut before `<testrun` is complete."""
    if len(head) >= 4096:
        return False
    body = head.lstrip(b"\xef\xbb\xbf").lstrip()
    if body.startswith(b"<?"):
        end = body.find(b"?>")
        if end < 0:
            return True
        body = body[end + 2:].lstrip()
    while body.startswith(b"<!--"):
        end = body.find(b"-->")
        if end < 0:
            return True
        body = body[end + 3:].lstrip()
    return b"<testrun".startswith(body) or b"<?xml".startswith(body)


# -- detection ------------------------------------------------------------------------------------


def _detect(path: Path, head: bytes) -> tuple[float, str]:
    xjlog = path.suffix.lower() == ".xjlog"
    if head.startswith(b"PK\x03\x04") and len(head) >= 30:
        name_length = int.from_bytes(head[26:28], "little")
        first = head[30:30 + name_length].decode("cp437", errors="replace")
        if _RUN_NAME.fullmatch(first) or first.lower() in ("info.xml",) or re.fullmatch(
                r"Run \d+\.checksum", first, re.IGNORECASE):
            return (0.99 if xjlog else 0.95), f"ZIP whose first entry is {first!r} (XJTAG log)"
        names = _zip_names(path)
        if "info.xml" in names and any(_RUN_NAME.fullmatch(name) for name in names):
            return (0.99 if xjlog else 0.95), "ZIP holding Info.xml and Run N.xml (XJTAG log)"
        return 0.0, ""
    body = head.lstrip(b"\xef\xbb\xbf")
    if _BARE_RUN.match(body):
        sure = b"<testgroup" in body or b"<testruninfo" in body
        return (0.95 if sure else 0.9), "XML with a <testrun> root (an XJTAG run)"
    return 0.0, ""


def _zip_names(path: Path) -> set[str]:
    """Lower-case entry names from the central directory (cheap: read from the file's end)."""
    count = _entry_count(path)
    if count is None or count > MAX_ENTRIES:
        return set()
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            return {info.filename.lower() for info in infos[:MAX_ENTRIES]}
    except (OSError, zipfile.BadZipFile, ValueError, EOFError):
        return set()


def _entry_count(path: Path) -> int | None:
    """The entry count from the ZIP end record, before anything parses the whole directory;
    None when there is no end record. ZIP64 archives (which XJTAG never needs) count as
    too many."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - (22 + 65535)))
            tail = fh.read()
    except OSError:
        return None
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) < at + 22:
        return None
    count = int.from_bytes(tail[at + 10:at + 12], "little")
    return MAX_ENTRIES + 1 if count == 0xFFFF else count


# -- reading the archive --------------------------------------------------------------------------


@dataclass
class _Info:
    """What `Info.xml` says about the archive."""

    project_path: str = ""
    run_count: int | None = None
    exported_from_output: bool = False


@dataclass
class _RunFile:
    number: int
    name: str  # "Run 3.xml"
    data: bytes
    archived: bool = True


def _read_plain(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConversionError(f"{path}: cannot read the file: {exc.strerror or exc}") from exc


def _read_archive(path: Path) -> tuple[_Info, list[_RunFile]]:
    count = _entry_count(path)
    if count is not None and count > MAX_ENTRIES:
        raise _too_many(path, count)
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        if "not a zip file" in str(exc).lower() and _starts_like_zip(path):
            # The central directory is written last: without it the archive is unfinished.
            raise IncompleteFileError(
                f"{path}: the ZIP archive has no end record (still being written, or cut off)"
            ) from None
        raise ConversionError(f"{path}: not a readable ZIP archive ({exc}); an .xjlog is "
                              "one, save the log again from XJRunner") from None
    except OSError as exc:
        raise ConversionError(f"{path}: cannot read the file: {exc.strerror or exc}") from exc
    except Exception as exc:  # zipfile's other ways of failing on a mangled directory
        raise ConversionError(f"{path}: the ZIP directory is damaged ({type(exc).__name__}: "
                              f"{exc}); save the log again from XJRunner") from None
    with archive:
        infos = archive.infolist()
        if len(infos) > MAX_ENTRIES:
            raise _too_many(path, len(infos))
        runs: dict[int, zipfile.ZipInfo] = {}
        info_entry: zipfile.ZipInfo | None = None
        for entry in infos:
            name = entry.filename
            _check_name(path, name)
            match = _RUN_NAME.fullmatch(name)
            if match:
                number = int(match.group(1))
                if number in runs:
                    raise ConversionError(f"{path}: the archive holds {name!r} twice")
                runs[number] = entry
            elif name.lower() == "info.xml":
                info_entry = entry
        reader = _MemberReader(path, archive)
        info = _parse_info(path, reader.read(info_entry)) if info_entry else _Info()
        if info.exported_from_output:
            raise ConversionError(
                f"{path}: exported from XJRunner's output window (ExportedFromOutput is true), "
                "so it holds the printed output only, no test results; save the log from "
                "XJRunner's log file instead"
            )
        if not runs:
            raise ConversionError(f"{path}: the archive holds no 'Run N.xml'; not an XJTAG log")
        missing = next((n for n in range(1, (info.run_count or 0) + 1) if n not in runs), None)
        if missing is not None:
            raise ConversionError(
                f"{path}: Info.xml announces {info.run_count} runs but 'Run {missing}.xml' is "
                "not in the archive; the log is damaged, save it again from XJRunner"
            )
        return info, [_RunFile(n, runs[n].filename, reader.read(runs[n])) for n in sorted(runs)]


def _too_many(path: Path, count: int) -> ConversionError:
    return ConversionError(
        f"{path}: the archive has {count} entries; an XJTAG log has a few per run (over "
        f"{MAX_ENTRIES} is refused)"
    )


def _starts_like_zip(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(4) in (b"PK\x03\x04", b"PK\x05\x06")
    except OSError:
        return False


def _check_name(path: Path, name: str) -> None:
    unix = name.replace("\\", "/")
    if (unix.startswith("/") or re.match(r"[A-Za-z]:", unix) or ".." in unix.split("/")
            or "\x00" in unix):
        raise ConversionError(
            f"{path}: the archive holds an entry named {name!r}, which points outside the "
            "archive; XJTAG never writes such names, so the file is refused"
        )


class _MemberReader:
    """Reads members into memory with a cap per member and for the whole archive."""

    def __init__(self, path: Path, archive: zipfile.ZipFile) -> None:
        self.path = path
        self.archive = archive
        self.total = 0

    def read(self, entry: zipfile.ZipInfo) -> bytes:
        chunks: list[bytes] = []
        size = 0
        try:
            with self.archive.open(entry) as member:
                while chunk := member.read(1 << 16):
                    size += len(chunk)
                    self.total += len(chunk)
                    if size > MAX_MEMBER_BYTES or self.total > MAX_TOTAL_BYTES:
                        raise ConversionError(
                            f"{self.path}: {entry.filename!r} unpacks to more than "
                            f"{min(MAX_MEMBER_BYTES, MAX_TOTAL_BYTES) // (1024 * 1024)} MB; "
                            "refused (a run log is kilobytes)"
                        )
                    chunks.append(chunk)
        except ConversionError:
            raise
        except (NotImplementedError, RuntimeError) as exc:  # unknown method, encryption
            raise ConversionError(
                f"{self.path}: {entry.filename!r} cannot be unpacked: {exc}"
            ) from None
        except Exception as exc:
            # A damaged member fails in many ways (BadZipFile for a bad CRC, zlib.error,
            # lzma.LZMAError, OSError from bz2, EOFError, ...); all mean the same to an operator.
            raise ConversionError(
                f"{self.path}: {entry.filename!r} is damaged ({type(exc).__name__}: {exc}); "
                "save the log again from XJRunner"
            ) from None
        return b"".join(chunks)


# -- XML ------------------------------------------------------------------------------------------


@dataclass
class _Element:
    """An element the mapper asked for: tag, attributes, start line, text and kept children."""

    tag: str
    attrib: dict[str, str]
    line: int
    parts: list[tuple[str, bool]] = field(default_factory=list)  # (text, inside CDATA)
    children: list[_Element] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The text: CDATA as written; around it, the layout whitespace of pretty-printed
        files is dropped."""
        if any(cdata for _, cdata in self.parts):
            return "".join(text for text, cdata in self.parts if cdata or text.strip())
        return "".join(text for text, _ in self.parts).strip()

    def find(self, tag: str) -> _Element | None:
        return next((child for child in self.children if child.tag == tag), None)

    def findtext(self, tag: str) -> str:
        child = self.find(tag)
        return child.text.strip() if child is not None else ""

    def place(self, run: str) -> str:
        name = self.attrib.get("name")
        shown = f' name="{name[:40]}"' if name is not None else ""
        return f"{run} <{self.tag}{shown}> at line {self.line}"


# Subtrees that are HTML renderings of what the mapper reads elsewhere: skipped, not kept.
_SKIPPED = frozenset({"snippets", "summary", "header", "plain-text", "circuit-refs"})


def _parse_xml(where: str, data: bytes, *, archived: bool) -> _Element:
    """The element tree of `data`, without the skipped subtrees; DTDs and entities refused."""
    if any(marker in data for marker in _HOSTILE):
        raise _refuse(where)
    parser = expat.ParserCreate()
    parser.buffer_text = True
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    stack: list[_Element] = []
    roots: list[_Element] = []
    skipping = 0  # depth inside a skipped subtree
    in_cdata = False

    def start(tag: str, attrs: dict[str, str]) -> None:
        nonlocal skipping
        if skipping or tag in _SKIPPED:
            skipping += 1
            return
        if len(stack) >= MAX_DEPTH:
            raise ConversionError(f"{where}: line {parser.CurrentLineNumber}: elements nest "
                                  f"more than {MAX_DEPTH} deep; not an XJTAG run")
        element = _Element(tag, attrs, parser.CurrentLineNumber)
        (stack[-1].children if stack else roots).append(element)
        stack.append(element)

    def end(tag: str) -> None:
        nonlocal skipping
        if skipping:
            skipping -= 1
        else:
            stack.pop()

    def text(data: str) -> None:
        if stack and not skipping:
            stack[-1].parts.append((data, in_cdata))

    def cdata(opening: bool) -> None:
        nonlocal in_cdata
        in_cdata = opening

    def refuse(*_: object) -> int:
        raise _refuse(where)

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    parser.StartCdataSectionHandler = lambda: cdata(True)
    parser.EndCdataSectionHandler = lambda: cdata(False)
    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        if exc.code in _TRUNCATED and not archived:
            raise IncompleteFileError(f"{where}: the XML ends early at line {exc.lineno} "
                                      "(still being written, or cut off)") from None
        raise ConversionError(
            f"{where}: not well-formed XML at line {exc.lineno}, column {exc.offset + 1}: "
            f"{expat.errors.messages.get(exc.code, exc)}"
        ) from None
    except (LookupError, ValueError, UnicodeError) as exc:
        # The XML declaration names an encoding Python does not know or expat cannot use.
        raise ConversionError(f"{where}: the XML cannot be decoded: {exc}") from None
    return roots[0]


def _refuse(where: str) -> ConversionError:
    return ConversionError(
        f"{where}: the XML declares a DOCTYPE or ENTITY; XJTAG never writes one, and such "
        "declarations can make a reader expand entities without end, so the file is refused"
    )


def _parse_info(path: Path, data: bytes) -> _Info:
    root = _parse_xml(f"{path}: Info.xml", data, archived=True)
    if root.tag != "LogFileInfo":
        raise ConversionError(f"{path}: Info.xml has the root <{root.tag}>, expected "
                              "<LogFileInfo>; not an XJTAG log")
    count = root.findtext("TestRunCount")
    return _Info(
        project_path=root.findtext("ProjectPath"),
        run_count=int(count) if count.isdigit() and len(count) < 7 else None,
        exported_from_output=root.findtext("ExportedFromOutput").lower() == "true",
    )


# -- one run --------------------------------------------------------------------------------------


class _RunMapper:
    """Maps one `<testrun>` to a `ReportDict`; one instance per run."""

    def __init__(self, converter: Converter, path: Path, context: ConverterContext, info: _Info,
                 run: _RunFile, run_total: int) -> None:
        self.converter = converter
        self.path = path
        self.context = context
        self.info = info
        self.run = run
        self.run_total = run_total
        self.where = f"{path}: {run.name}" if run.archived else str(path)
        self.out = ReportDict()

    def option(self, key: str) -> str:
        value = self.converter.option(self.context, key)
        return "" if value is None else str(value).strip()

    def fail(self, element: _Element | None, message: str) -> ConversionError:
        line = f": line {element.line}" if element is not None else ""
        return ConversionError(f"{self.where}{line}: {message}")

    def report(self) -> ReportDict:
        root = _parse_xml(self.where, self.run.data, archived=self.run.archived)
        if root.tag != "testrun":
            raise self.fail(root, f"the root element is <{root.tag}>, expected <testrun>; not "
                                  "an XJTAG run")
        info = root.find("testruninfo")
        if info is None:
            raise self.fail(root, "the run has no <testruninfo> (serial, user, result)")
        out = self.out
        out.locations[""] = root.place(self.run.name)
        out["type"] = "T"
        # An XJTAG project describes one board design: without a configured part number,
        # its description (else the project file's name) is the product.
        project = PureWindowsPath(self.info.project_path).stem if self.info.project_path else ""
        out["pn"] = (self.option("part_number") or info.findtext("project-description")
                     or project)[:100]
        if not out["pn"]:
            raise ConversionError(
                f"{self.where}: the run has no project description to take the part number "
                "from; set part_number in the watch folder's converter arguments (or "
                "converters.defaults)"
            )
        out["sn"] = info.findtext("serial")
        if not out["sn"]:
            raise self.fail(info, "<serial> is empty: the run has no serial number (let "
                                  "XJRunner ask for one)")
        out["rev"] = self.option("revision")
        out["processCode"] = self._process_code()
        if self.option("process_name"):
            out["processName"] = self.option("process_name")
        steps = self._steps(root)
        result = self._result(info, steps)
        out["result"] = result
        station = info.findtext("xjlink-name") or self.option("station_name")
        if station:
            out["machineName"] = station
        self._start(root)
        out["uut"] = self._uut(root, info)
        out["miscInfos"] = self._misc(info)
        out["root"] = self._root(root, info, steps, result)
        return out

    def _process_code(self) -> int:
        name = self.option("process_name")
        code = self.converter.process_code(self.context, name or None)
        if code is None:
            text = self.option("process_code")
            if text:
                raise ConversionError(
                    f"{self.where}: process_code {text!r} in the config is not a whole number")
            raise ConversionError(
                f"{self.where}: an XJTAG log names no process; set process_code in the watch "
                "folder's converter arguments (or converters.defaults), e.g. 50"
            )
        if not -32768 <= code <= 32767:
            raise ConversionError(f"{self.where}: process_code {code} is out of range")
        return code

    def _result(self, info: _Element, steps: list[dict[str, Any]]) -> str:
        word = info.findtext("result")
        if not word:
            # No verdict of the run's own: the worst of its functions.
            log.warning("%s: <testruninfo> has no <result>; the run's result is taken from "
                        "its test functions", self.where)
            worst = {"T": 3, "E": 2, "F": 1}
            statuses = [function["status"] for group in steps for function in group["steps"]
                        if function["status"] in worst]
            return max(statuses, key=worst.__getitem__, default="P")
        letter = _RUN_RESULTS.get(word.lower())
        if letter is None:
            raise self.fail(info.find("result"), f"run result {word!r} is not Passed or Failed")
        return letter

    def _start(self, root: _Element) -> None:
        text = root.attrib.get("datetime", "").strip()
        if not text:
            return  # finalize() falls back to the file's time
        try:
            moment = parse_datetime(text)
            zone = self.context.timezone
            if moment.tzinfo is None:  # never seen: XJTAG writes UTC with "Z"
                moment = moment.replace(tzinfo=zone) if zone else moment.astimezone()
            local = moment.astimezone(zone) if zone else moment.astimezone()
            self.out["start"], self.out["startUTC"] = format_datetime(local), format_utc(moment)
        except (ValueError, OverflowError, OSError) as exc:
            raise self.fail(root, f"testrun datetime {text!r}: {exc}") from None
        self.out.locations["start"] = root.place(self.run.name)

    def _uut(self, root: _Element, info: _Element) -> dict[str, Any]:
        uut: dict[str, Any] = {}
        user = info.findtext("user") or self.option("operator")
        if user:
            uut["user"] = user[:100]
        comment = "\n".join(text for text in (
            info.findtext("project-description"), root.findtext("user-comment")) if text)
        if comment:
            uut["comment"] = comment[:5000]
        millis = _milliseconds(info.findtext("time-taken"))
        if millis is not None:
            uut["execTime"] = millis / 1000
        return uut

    def _misc(self, info: _Element) -> list[dict[str, Any]]:
        project = self.info.project_path
        pairs = [
            ("XJLink serial", info.findtext("xjlink-serial")),
            ("XJTAG version", info.findtext("xjtag-version")),
            ("Project", PureWindowsPath(project).name if project else ""),
            ("Run", f"{self.run.number} of {self.run_total}" if self.run_total > 1 else ""),
        ]
        limit = MISC_INFO_LIMITS["text"]
        return [{"description": description, "text": text[:limit]}
                for description, text in pairs if text]

    # -- steps ---------------------------------------------------------------------------------

    def _root(self, root: _Element, info: _Element, steps: list[dict[str, Any]],
              result: str) -> dict[str, Any]:
        project = self.info.project_path
        name = self.option("sequence_name") or info.findtext("project-description") or (
            PureWindowsPath(project).stem if project else "") or DEFAULT_SEQUENCE_NAME
        name = name[:STEP_NAME_LIMIT]
        step: dict[str, Any] = {
            "id": 0, "group": "M", "stepType": "SequenceCall", "name": name, "status": result,
            "seqCall": {"path": project or None, "name": name,
                        "version": self.option("sequence_version")},
        }
        millis = _milliseconds(info.findtext("time-taken"))
        if millis is not None:
            step["totTime"] = millis / 1000
        notes = _join(_output_pieces(root))
        if notes:
            step["reportText"] = notes
        step["steps"] = steps
        self.out.locations["root"] = root.place(self.run.name)
        roll_up_statuses(step)
        step["status"] = result  # the run's verdict, whatever the steps say
        number_steps(step)
        return step

    def _steps(self, root: _Element) -> list[dict[str, Any]]:
        groups: list[dict[str, Any]] = []
        for group in (child for child in root.children if child.tag == "testgroup"):
            where = f"root.steps[{len(groups)}]"
            self.out.locations[where] = group.place(self.run.name)
            functions = [child for child in group.children if child.tag == "testfunction"]
            children = []
            for n, function in enumerate(functions):
                self.out.locations[f"{where}.steps[{n}]"] = function.place(self.run.name)
                children.append(self._function(function))
            name = (group.attrib.get("name") or "").strip() or f"Group {len(groups) + 1}"
            sequence: dict[str, Any] = {
                "id": 0, "group": "M", "stepType": "SequenceCall",
                "name": name[:STEP_NAME_LIMIT], "status": None,
                "seqCall": {"path": None, "name": name[:STEP_NAME_LIMIT], "version": ""},
                "steps": children,
            }
            if children and all(child["status"] == "S" for child in children):
                sequence["status"] = "S"  # nothing ran; roll-up would call it Passed
            times: list[float] = [child["totTime"] for child in children if "totTime" in child]
            if times and len(times) == len(children):
                sequence["totTime"] = round(sum(times), 3)
            groups.append(sequence)
        return groups

    def _function(self, function: _Element) -> dict[str, Any]:
        name = (function.attrib.get("name") or "").strip() or "(unnamed function)"
        result = function.find("result")
        word = result.attrib.get("value", "").strip() if result is not None else ""
        texts = _output_pieces(function)
        if result is None:
            status = "T"
            texts.append(("no result recorded (the run was stopped here)", True))
        else:
            try:
                status = status_letter(word)
            except ValueError:
                raise self.fail(result, f"test function {name!r}: result {word!r} is not "
                                        "Passed, Failed or Skipped") from None
        step: dict[str, Any] = {"id": 0, "group": "M", "stepType": "ET_PFT",
                                "name": name[:STEP_NAME_LIMIT], "status": status}
        millis = _milliseconds(function.findtext("time-taken"))
        if millis is not None:
            step["totTime"] = millis / 1000
        report_text = _join(texts)
        if report_text:
            step["reportText"] = report_text
        if status in ("P", "F"):
            step["booleanMeas"] = [{"name": None, "status": status}]
        return step


def _output_pieces(element: _Element) -> list[tuple[str, bool]]:
    """The readable output directly under `element`, as (text, starts a line) pieces."""
    pieces: list[tuple[str, bool]] = []
    for child in element.children:
        if child.tag == "text-output":
            pieces.append((html.unescape(child.text), False))
        elif child.tag == "html-output":
            source = child.text
            if child.attrib.get("inline", "").lower() == "true":
                pieces.append((html.unescape(_TAG.sub("", source)), False))
            elif "ct_error" in source:
                # Connection-test faults ("Short found between nets: IO13, IO14") exist only
                # as HTML headings.
                pieces.extend((text, True) for text in _headings(source))
        elif child.tag in ("error", "conntest-errors"):
            for text in _texts(child):
                if text and text.lower() != "no errors":
                    pieces.append((f"Error: {text}" if child.tag == "error" else text, True))
    return pieces


def _headings(source: str) -> Iterator[str]:
    """The texts of the <h2> headings of an HTML fragment (a linear scan, no regex search)."""
    lowered = source.lower()
    start = lowered.find("<h2")
    while start >= 0:
        end = lowered.find("</h2>", start)
        if end < 0:
            return
        text = " ".join(html.unescape(_TAG.sub("", source[start:end])).split())
        if text:
            yield text
        start = lowered.find("<h2", end)


def _texts(element: _Element) -> Iterator[str]:
    """The non-empty texts of `element` and everything below it (iteratively)."""
    stack = [element]
    while stack:
        node = stack.pop()
        text = html.unescape(_TAG.sub("", node.text)).strip()
        if text:
            yield " ".join(text.split())
        stack.extend(reversed(node.children))


def _join(pieces: list[tuple[str, bool]]) -> str:
    out: list[str] = []
    size = 0
    for text, own_line in pieces:
        if own_line and out and not out[-1].endswith("\n"):
            out.append("\n")
        out.append(text + ("\n" if own_line else ""))
        size += len(text)
        if size > MAX_REPORT_TEXT:
            break
    lines = [line.rstrip() for line in "".join(out).strip().splitlines()]
    joined = "\n".join(lines)
    if len(joined) > MAX_REPORT_TEXT:
        joined = joined[:MAX_REPORT_TEXT] + "\n... (cut; the full output is in the XJTAG log)"
    return joined


def _milliseconds(text: str) -> float | None:
    text = text.strip().replace(",", ".")
    if not text or len(text) > 20:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if 0 <= value < 1e12 else None


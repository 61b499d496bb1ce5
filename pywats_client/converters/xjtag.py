"""`XJTAGConverter`: XJTAG `.xjlog` logs (formats.md §11) into one WSJF test report per run.

Owns reading the archive safely and mapping each run. A `.xjlog` is a ZIP holding `Info.xml`
(project path, run count), `Run N.xml` per run, `Run N.checksum` and connection-test data
blobs. Members are read in memory, never extracted: entry names that are absolute or climb
with `..` are refused, and the entry count, each member and the total read are capped. XML is
read by `xmlsafe` (DOCTYPE and ENTITY declarations refused, a nesting cap). A bare `Run N.xml`
(`<testrun>` root) is read the same way. Pure: it reads the file and changes nothing.

Mapping (after Virinco's converter): serial -> sn, user -> operator, `testrun@datetime` (UTC)
-> start, project description (and a user comment) -> comment, XJLink name -> station (the
`station_name` option when empty), run time -> execTime, run result -> result and root
status. Each test group is a sequence, each test function a pass/fail step with its time and
its output as report text (text outputs, inline device names, connection-test fault headings,
error messages). Revision comes from the options, the process by the rule of every built-in
converter (`ConversionOptions.process_code`: an XJTAG log names no WATS process); the part
number from the options too, else the project description (else the project file's name).
Where the files leave a choice:

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
import stat
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath
from typing import Any

from pywats_client.converters.builtin import BuiltinConverter, ConversionOptions
from pywats_client.converters.textio import MB, check_size
from pywats_client.converters.xmlsafe import CData, XmlFormat, XmlNode, parse_xml, sniff_root
from pywats_client.errors import ConversionError, IncompleteFileError
from pywats_client.report.model import (
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
MAX_FILE_BYTES = 256 * MB
MAX_ENTRIES = 4096
MAX_MEMBER_BYTES = 64 * MB
MAX_TOTAL_BYTES = 256 * MB
MAX_DEPTH = 64
MAX_REPORT_TEXT = 10_000  # characters of output kept per step
DEFAULT_SEQUENCE_NAME = "XJTAG"

_RUN_NAME = re.compile(r"Run (\d{1,6})\.xml", re.IGNORECASE)
_RUN_RESULTS = {"passed": "P", "pass": "P", "failed": "F", "fail": "F", "error": "E",
                "aborted": "T", "stopped": "T", "terminated": "T", "cancelled": "T"}
_TAG = re.compile(r"<[^>]*>")


class XJTAGConverter(BuiltinConverter):
    """Converts XJTAG `.xjlog` archives (and bare `Run N.xml` files): one report per run."""

    name = "XJTAGConverter"
    memory_ratio = 22.0  # peak RSS per input byte (bench_converters --memory: 20.3 on 0.9 MB)
    description = "XJTAG .xjlog (ZIP of Info.xml and Run N.xml): one report per test run"
    file_patterns = ("*.xjlog",)

    def read(self, path: Path, options: ConversionOptions) -> dict[str, Any] | list[dict[str, Any]]:
        """One report (a `ReportDict`) per run, in run order; a list when there are several."""
        check_size(path, MAX_FILE_BYTES, "XJTAG")
        try:
            with open(path, "rb") as fh:
                head = fh.read(4096)
        except OSError as exc:
            raise ConversionError(f"{path}: cannot read the file: {exc.strerror or exc}") from exc
        if not head.strip() or (len(head) < 4 and b"PK\x03\x04".startswith(head)):
            raise IncompleteFileError(f"{path}: the file is empty; waiting for the writer")
        if head.startswith(b"PK"):
            info, runs = _read_archive(path)
        elif _is_bare_run(head) or b"<testrun" in head:
            info, runs = _Info(), [_RunFile(1, path.name, _read_plain(path), archived=False)]
        elif _unfinished_prolog(head):
            raise IncompleteFileError(
                f"{path}: the XML ends before its root element (still being written?)")
        else:
            raise ConversionError(
                f"{path}: neither a ZIP archive (.xjlog) nor an XJTAG run XML (<testrun>); "
                "choose the converter for this kind of file instead"
            )
        reports = [_RunMapper(path, options, info, run, len(runs)).report() for run in runs]
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


@XJTAGConverter.detection
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
    if _is_bare_run(head):
        sure = b"<testgroup" in head or b"<testruninfo" in head
        return (0.95 if sure else 0.9), "XML with a <testrun> root (an XJTAG run)"
    return 0.0, ""


def _is_bare_run(head: bytes) -> bool:
    root = sniff_root(head)
    return root is not None and root.local == "testrun"


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
            if stat.S_ISLNK(entry.external_attr >> 16):
                # Members are only ever read into memory, so a link could not escape; but
                # XJTAG never writes one, and an archive that carries one was made by hand.
                raise ConversionError(
                    f"{path}: the archive holds {name!r} as a symbolic link; XJTAG never "
                    "writes links, so the file is refused")
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


class _Element(XmlNode):
    """An XJTAG element; its text keeps CDATA as written and drops the layout whitespace of
    pretty-printed files around it."""

    __slots__ = ()
    IDENTIFYING = ("name",)
    SHOWN = 1

    @property
    def text(self) -> str:
        if any(isinstance(part, CData) for part in self.parts):
            return "".join(part for part in self.parts if isinstance(part, CData) or part.strip())
        return "".join(self.parts).strip()


# Subtrees that are HTML renderings of what the mapper reads elsewhere: skipped, not kept.
XML = XmlFormat("XJTAG", MAX_DEPTH, "save the log again from XJRunner", node_type=_Element,
                namespaces=False, cdata=True,
                skip=frozenset({"snippets", "summary", "header", "plain-text", "circuit-refs"}))


def _parse_xml(where: str, data: bytes, *, archived: bool) -> XmlNode:
    """The element tree of `data`, without the skipped subtrees. An archived member is
    complete: an early end in it is damage, not a file still being written."""
    return parse_xml(where, data, XML, whole=archived)


def _place(element: XmlNode, run: str) -> str:
    """'Run 1.xml <testfunction name="SPI"> at line 40'."""
    return f"{run} {element.place()}"


def _parse_info(path: Path, data: bytes) -> _Info:
    root = _parse_xml(f"{path}: Info.xml", data, archived=True)
    if root.tag != "LogFileInfo":
        raise ConversionError(f"{path}: Info.xml has the root <{root.tag}>, expected "
                              "<LogFileInfo>; not an XJTAG log")
    count = root.findtext("testruncount")
    return _Info(
        project_path=root.findtext("projectpath"),
        run_count=int(count) if count.isdecimal() and len(count) < 7 else None,
        exported_from_output=root.findtext("exportedfromoutput").lower() == "true",
    )


# -- one run --------------------------------------------------------------------------------------


class _RunMapper:
    """Maps one `<testrun>` to a `ReportDict`; one instance per run."""

    def __init__(self, path: Path, options: ConversionOptions, info: _Info, run: _RunFile,
                 run_total: int) -> None:
        self.path = path
        self.options = options
        self.info = info
        self.run = run
        self.run_total = run_total
        self.where = f"{path}: {run.name}" if run.archived else str(path)
        self.out = ReportDict()

    def fail(self, element: XmlNode | None, message: str) -> ConversionError:
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
        out.locations[""] = _place(root, self.run.name)
        # An XJTAG project describes one board design: without a configured part number,
        # its description (else the project file's name) is the product.
        project = PureWindowsPath(self.info.project_path).stem if self.info.project_path else ""
        options = self.options
        pn = (options.part_number or info.findtext("project-description") or project)[:100]
        if not pn:
            raise ConversionError(
                f"{self.where}: the run has no project description to take the part number "
                "from; set part_number in the watch folder's converter arguments (or "
                "converters.defaults)"
            )
        sn = info.findtext("serial")
        if not sn:
            raise self.fail(info, "<serial> is empty: the run has no serial number (let "
                                  "XJRunner ask for one)")
        options.fill_header(out, pn=pn, sn=sn, rev=options.revision, where=self.where,
                            lacks="an XJTAG log names no WATS process")
        steps = self._steps(root)
        result = self._result(info, steps)
        out["result"] = result
        station = info.findtext("xjlink-name") or options.station_name
        if station:
            out["machineName"] = station
        self._start(root)
        out["uut"] = self._uut(root, info)
        out["miscInfos"] = self._misc(info)
        out["root"] = self._root(root, info, steps, result)
        return out

    def _result(self, info: XmlNode, steps: list[dict[str, Any]]) -> str:
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

    def _start(self, root: XmlNode) -> None:
        text = root.attrib.get("datetime", "").strip()
        if not text:
            return  # finalize() falls back to the file's time
        try:
            # A time without zone (never seen: XJTAG writes UTC with "Z") is the station's.
            moment = self.options.local(parse_datetime(text))
            zone = self.options.timezone
            local = moment.astimezone(zone) if zone else moment.astimezone()
            self.out["start"], self.out["startUTC"] = format_datetime(local), format_utc(moment)
        except (ValueError, OverflowError, OSError) as exc:
            raise self.fail(root, f"testrun datetime {text!r}: {exc}") from None
        self.out.locations["start"] = _place(root, self.run.name)

    def _uut(self, root: XmlNode, info: XmlNode) -> dict[str, Any]:
        uut: dict[str, Any] = {}
        user = info.findtext("user") or self.options.operator
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

    def _misc(self, info: XmlNode) -> list[dict[str, Any]]:
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

    def _root(self, root: XmlNode, info: XmlNode, steps: list[dict[str, Any]],
              result: str) -> dict[str, Any]:
        project = self.info.project_path
        name = self.options.sequence_name or info.findtext("project-description") or (
            PureWindowsPath(project).stem if project else "") or DEFAULT_SEQUENCE_NAME
        name = name[:STEP_NAME_LIMIT]
        step: dict[str, Any] = {
            "id": 0, "group": "M", "stepType": "SequenceCall", "name": name, "status": result,
            "seqCall": {"path": project or None, "name": name,
                        "version": self.options.sequence_version},
        }
        millis = _milliseconds(info.findtext("time-taken"))
        if millis is not None:
            step["totTime"] = millis / 1000
        notes = _join(_output_pieces(root))
        if notes:
            step["reportText"] = notes
        step["steps"] = steps
        self.out.locations["root"] = _place(root, self.run.name)
        roll_up_statuses(step)
        step["status"] = result  # the run's verdict, whatever the steps say
        number_steps(step)
        return step

    def _steps(self, root: XmlNode) -> list[dict[str, Any]]:
        groups: list[dict[str, Any]] = []
        for group in (child for child in root.children if child.tag == "testgroup"):
            where = f"root.steps[{len(groups)}]"
            self.out.locations[where] = _place(group, self.run.name)
            functions = [child for child in group.children if child.tag == "testfunction"]
            children = []
            for n, function in enumerate(functions):
                self.out.locations[f"{where}.steps[{n}]"] = _place(function, self.run.name)
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

    def _function(self, function: XmlNode) -> dict[str, Any]:
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


def _output_pieces(element: XmlNode) -> list[tuple[str, bool]]:
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


def _texts(element: XmlNode) -> Iterator[str]:
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


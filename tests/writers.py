"""Writers for the WATS standard formats: a WSJF report rendered as the file a station writes.

Used by the round-trip tests. Each writer follows the format text of formats.md (§1 WSJF,
§2 WSXF, §3 WSTF), not the converters: element and attribute names, status and group words,
column order and markers are the ones the notes document. The writers assume a report the
format can express (the strategies in test_format_roundtrip.py make sure of that); whatever
else the report holds is left out, as a station that cannot say it would.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timezone
from typing import Any
from xml.sax.saxutils import escape

from pywats_client.report.model import parse_datetime

WSXF_NS = "http://wats.virinco.com/schemas/WATS/Report/wsxf"

STEP_STATUS_WORDS = {"P": "Passed", "F": "Failed", "D": "Done", "S": "Skipped", "E": "Error",
                     "T": "Terminated"}
RESULT_WORDS = STEP_STATUS_WORDS
GROUP_WORDS = {"S": "Setup", "M": "Main", "C": "Cleanup"}
MEASUREMENTS = ("numericMeas", "stringMeas", "booleanMeas")

# WSTF step-data columns, in the order of the title row (formats.md §3).
WSTF_COLUMNS = ("StepType", "StepName", "MeasureName", "Value", "LowLimit", "HighLimit",
                "CompOperator", "Unit", "StepStatus", "StepExecutionTime", "StepReportText",
                "StepErrorCode", "StepErrorMessage", "CausedSequenceFailure")
WSTF_LABELS = {"numericMeas": "NumericLimitTest", "booleanMeas": "PassFailTest",
               "stringMeas": "StringValueTest"}


def number(value: float) -> str:
    """A number as invariant-culture text: '.' decimals, the shortest exact form."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"not a number: {value!r}")
    return str(value) if isinstance(value, int) else repr(value)


# -- WSJF ------------------------------------------------------------------------------------


def to_wsjf(report: Mapping[str, Any], *, bom: bool = False) -> bytes:
    """The report as a WSJF file: UTF-8 JSON (a BOM is allowed), indented as WATS exports it
    (formats.md §1)."""
    text = json.dumps(report, ensure_ascii=False, indent=2, allow_nan=False)
    return ("\ufeff" if bom else "").encode("utf-8") + text.encode("utf-8")


# -- WSXF ------------------------------------------------------------------------------------


def to_wsxf(reports: Iterable[Mapping[str, Any]], *, encoding: str = "utf-8",
            declaration: bool = True, bom: bool = False, numeric_booleans: bool = False) -> bytes:
    """The reports as one WSXF file: `<Reports>` in the wsxf namespace, one `<Report>` each.

    The variants seen in real files (formats.md §2): `encoding` "utf-8" or "utf-16" (the
    latter always with its BOM), often no XML declaration, sometimes a UTF-8 BOM, and older
    exports writing booleans as 1/0.
    """
    out = _Xml(numeric_booleans)
    if declaration:
        out.raw(f'<?xml version="1.0" encoding="{encoding}"?>')
    out.open("Reports", [("xmlns", WSXF_NS)])
    for report in reports:
        _wsxf_report(out, report)
    out.close("Reports")
    text = out.text_of_file()
    if encoding == "utf-16":
        return text.encode("utf-16")  # with its byte order mark
    return ("\ufeff" if bom else "").encode("utf-8") + text.encode(encoding)


class _Xml:
    """A small indenting XML writer; attribute values and text are escaped for any content."""

    def __init__(self, numeric_booleans: bool = False) -> None:
        self.lines: list[str] = []
        self.depth = 0
        self.booleans = ("1", "0") if numeric_booleans else ("true", "false")

    def attrs(self, attrs: Sequence[tuple[str, Any]]) -> str:
        parts = []
        for name, value in attrs:
            if value is None:
                continue  # absent: the attribute is not written
            if isinstance(value, bool):
                text = self.booleans[0] if value else self.booleans[1]
            elif isinstance(value, (int, float)):
                text = number(value)
            else:
                text = str(value)
            # Tabs and line ends in an attribute value are normalised to spaces by every XML
            # reader unless written as character references.
            quoted = escape(text, {'"': "&quot;", "\t": "&#9;", "\n": "&#10;", "\r": "&#13;"})
            parts.append(f' {name}="{quoted}"')
        return "".join(parts)

    def raw(self, line: str) -> None:
        self.lines.append("  " * self.depth + line)

    def open(self, tag: str, attrs: Sequence[tuple[str, Any]] = ()) -> None:
        self.raw(f"<{tag}{self.attrs(attrs)}>")
        self.depth += 1

    def close(self, tag: str) -> None:
        self.depth -= 1
        self.raw(f"</{tag}>")

    def empty(self, tag: str, attrs: Sequence[tuple[str, Any]] = ()) -> None:
        self.raw(f"<{tag}{self.attrs(attrs)} />")

    def text(self, tag: str, attrs: Sequence[tuple[str, Any]], text: str) -> None:
        # One line: the text is the element's content exactly, so no indentation inside it.
        # A CR would become LF when read (XML end-of-line handling), so it is a reference.
        self.raw(f"<{tag}{self.attrs(attrs)}>{escape(text, {chr(13): '&#13;'})}</{tag}>")

    def commented(self, tag: str, attrs: Sequence[tuple[str, Any]], comment: str | None) -> None:
        """An element whose only possible child is a Comment: empty when there is none."""
        if comment is None:
            self.empty(tag, attrs)
            return
        self.open(tag, attrs)
        self.text("Comment", [], comment)
        self.close(tag)

    def text_of_file(self) -> str:
        return "\n".join(self.lines) + "\n"


def _wrapped(data: str) -> str:
    """Base64 broken into 76-character lines, as .NET writes it with line breaks."""
    return "\n".join(data[n:n + 76] for n in range(0, len(data), 76))


def _wsxf_report(out: _Xml, report: Mapping[str, Any]) -> None:
    repair = report["type"] == "R"
    out.open("Report", [
        ("type", "UUR" if repair else "UUT"), ("ID", report.get("id")),
        ("Start", report.get("start")), ("Start_utc", report.get("startUTC")),
        ("Result", RESULT_WORDS[report["result"]]), ("SN", report["sn"]), ("PN", report["pn"]),
        ("Rev", report["rev"]), ("MachineName", report.get("machineName")),
        ("Location", report.get("location")), ("Purpose", report.get("purpose")),
    ])
    if repair:
        _wsxf_uur(out, report["uur"])
    elif report.get("uut"):
        _wsxf_uut(out, report["uut"])
    out.empty("Process", [("Code", report["processCode"]), ("Name", report.get("processName")),
                          ("CodeFormat", report.get("processCodeFormat"))])
    for n, misc in enumerate(report.get("miscInfos") or []):
        attrs = [("Description", misc["description"]), ("Typedef", misc.get("typedef")),
                 ("Id", misc.get("id")), ("Numeric", misc.get("numeric")),
                 ("NumericFormat", misc.get("numericFormat")), ("idx", n), ("order_no", n)]
        if misc.get("text") is None:
            out.empty("MiscInfo", attrs)
        else:
            out.text("MiscInfo", attrs, misc["text"])
    failures: list[tuple[int, Mapping[str, Any]]] = []  # (the unit's idx, failure)
    for unit in report.get("subUnits") or []:
        out.empty("ReportUnitHierarchy", [
            ("Idx", unit.get("idx")), ("ParentIDX", unit.get("parentIdx")),
            ("ReplacedIDX", unit.get("replacedIdx")), ("PartType", unit.get("partType")),
            ("PN", unit["pn"]), ("SN", unit["sn"]), ("Rev", unit["rev"]),
            ("Position", unit.get("position")),
        ])
        failures.extend((unit.get("idx", 0), failure) for failure in unit.get("failures") or [])
    binaries: list[tuple[int | None, Mapping[str, Any]]] = []
    for n, (part_idx, failure) in enumerate(failures):
        _wsxf_failure(out, failure, n, part_idx)
        binaries.extend((n, item) for item in failure.get("attachments") or [])
    binaries.extend((None, item) for item in report.get("binaryData") or [])
    for n, (fail_idx, binary) in enumerate(binaries):
        out.open("Binary", [("FailIdx", fail_idx), ("BinaryDataIndex", n)])
        size = len(base64.b64decode(binary["data"]))
        out.text("Data", [("BinaryDataGUID", binary.get("id")),
                          ("ContentType", binary.get("contentType")), ("size", size),
                          ("FileName", binary.get("name"))], _wrapped(binary["data"]))
        out.close("Binary")
    for asset in report.get("assets") or []:
        out.empty("Asset", [("AssetSN", asset["assetSN"]), ("UsageCount", asset.get("usageCount")),
                            ("UsageCountFormat", asset.get("usageCountFormat"))])
    for data in report.get("additionalData") or []:
        _wsxf_additional(out, "AdditionalData", data)
    if not repair:
        _wsxf_step(out, report["root"])
    out.close("Report")


def _wsxf_uut(out: _Xml, uut: Mapping[str, Any]) -> None:
    attrs = [("UserLoginName", uut.get("user")), ("BatchSN", uut.get("batchSN"))]
    for key, attr in (("testSocketIndex", "TestSocketIndex"), ("execTime", "ExecutionTime"),
                      ("errorCode", "ErrorCode"), ("batchLoopIndex", "BatchLoopIndex"),
                      ("batchFailCount", "BatchFailCount")):
        attrs += [(attr, uut.get(key)), (attr + "Format", uut.get(key + "Format"))]
    attrs += [("FixtureId", uut.get("fixtureId")), ("ErrorMessage", uut.get("errorMessage")),
              ("StepIdCausedUUTFailure", uut.get("stepIdCausedUUTFailure"))]
    out.commented("UUT", attrs, uut.get("comment"))


def _wsxf_uur(out: _Xml, uur: Mapping[str, Any]) -> None:
    out.open("UUR", [
        ("UserLoginName", uur.get("user")), ("ConfirmDate", uur.get("confirmDate")),
        ("FinalizeDate", uur.get("finalizeDate")), ("Active", False),
        ("ExecutionTime", uur.get("execTime")), ("ReferencedUUT", uur.get("refUUT")),
        ("Parent", uur.get("parent")),
    ])
    if uur.get("comment") is not None:
        out.text("Comment", [], uur["comment"])
    out.empty("Process", [("Code", uur["processCode"]), ("Name", uur.get("processName"))])
    for child in uur.get("children") or []:
        out.text("Children", [], child)
    out.close("UUR")


def _wsxf_failure(out: _Xml, failure: Mapping[str, Any], idx: int, part_idx: int) -> None:
    attrs = [("Category", failure["category"]), ("Code", failure["code"]), ("Idx", idx),
             ("PartIdx", part_idx), ("CompRef", failure.get("comRef")),
             ("StepID", failure["refStepId"]), ("StepName", failure.get("refStepName")),
             ("FunctionBlock", failure.get("funcBlock")),
             ("ArticleNumber", failure.get("artNumber")),
             ("ArticleRevision", failure.get("artRev")),
             ("ArticleVendor", failure.get("artVendor")),
             ("ArticleDescription", failure.get("artDescription"))]
    out.commented("Failures", attrs, failure.get("comment"))


def _wsxf_additional(out: _Xml, tag: str, data: Mapping[str, Any]) -> None:
    out.open(tag, [("Name", data["name"])])
    for prop in data.get("props") or []:
        _wsxf_prop(out, prop)
    out.close(tag)


def _wsxf_prop(out: _Xml, prop: Mapping[str, Any]) -> None:
    # TestStand's property form: <Prop Name Type Flags NumFmt>, a container holds Props, a
    # value sits in <Value>.
    flags = prop.get("flags")
    attrs = [("Name", prop["name"]), ("Type", prop["type"]),
             ("Flags", None if flags is None else f"0x{flags:x}"),
             ("NumFmt", prop.get("numFormat"))]
    if prop.get("props"):
        out.open("Prop", attrs)
        for child in prop["props"]:
            _wsxf_prop(out, child)
        out.close("Prop")
        return
    out.open("Prop", attrs)
    out.text("Value", [], prop.get("value") or "")
    out.close("Prop")


def _wsxf_step(out: _Xml, step: Mapping[str, Any]) -> None:
    attrs = [
        ("Id", step.get("id")), ("Group", GROUP_WORDS[step["group"]]), ("Name", step["name"]),
        ("StepType", step["stepType"]), ("Status", STEP_STATUS_WORDS[step["status"]]),
        ("total_time", step.get("totTime")), ("TSGuid", step.get("tsGuid")),
        ("StepErrorCode", step.get("errorCode")),
        ("StepErrorCodeFormat", step.get("errorCodeFormat")),
        ("StepErrorMessage", step.get("errorMessage")), ("Start", step.get("start")),
        ("InteractiveExeNum", step.get("interactiveExeNum")),
        ("StepCausedSequenceFailure", step.get("causedSeqFailure")),
        ("StepCausedUUTFailure", step.get("causedUUTFailure")),
    ]
    out.open("Step", attrs)
    loop = step.get("loop")
    if loop is not None:
        out.empty("Loop", [("num", loop.get("num")), ("passed", loop.get("passed")),
                           ("failed", loop.get("failed")),
                           ("ending_index", loop.get("endingIndex")), ("index", loop.get("idx"))])
    if step.get("reportText") is not None:
        out.text("ReportText", [], step["reportText"])
    seq = step.get("seqCall")
    if seq is not None:
        path = seq.get("path")
        file_name = None if path is None else path.replace("\\", "/").rsplit("/", 1)[-1]
        out.empty("SequenceCall", [("Name", seq.get("name")), ("Version", seq.get("version")),
                                   ("Filename", file_name), ("Filepath", path)])
    for n, meas in enumerate(step.get("numericMeas") or []):
        out.empty("NumericLimit", [
            ("Name", meas.get("name")), ("NumericValue", meas["value"]),
            ("NumericValueFormat", meas.get("valueFormat")),
            ("Units", meas.get("unit") or ""),  # exports write Units="" for "no unit"
            ("CompOperator", meas["compOp"]), ("LowLimit", meas.get("lowLimit")),
            ("LowLimitFormat", meas.get("lowLimitFormat")), ("HighLimit", meas.get("highLimit")),
            ("HighLimitFormat", meas.get("highLimitFormat")),
            ("Status", STEP_STATUS_WORDS[meas["status"]]), ("MeasIndex", n),
            ("MeasOrderNumber", n),
        ])
    for n, meas in enumerate(step.get("booleanMeas") or []):
        out.empty("PassFail", [("Name", meas.get("name")),
                               ("Status", STEP_STATUS_WORDS[meas["status"]]), ("MeasIndex", n)])
    for n, meas in enumerate(step.get("stringMeas") or []):
        out.empty("StringValue", [
            ("Name", meas.get("name")), ("CompOperator", meas["compOp"]),
            ("StringLimit", meas.get("limit")), ("StringValue", meas["value"]),
            ("Status", STEP_STATUS_WORDS[meas["status"]]), ("MeasIndex", n),
        ])
    popup = step.get("messagePopup")
    if popup is not None:
        out.empty("MessagePopup", [("Button", popup.get("button")),
                                   ("ButtonFormat", popup.get("buttonFormat")),
                                   ("Response", popup.get("response"))])
    call = step.get("callExe")
    if call is not None:
        out.empty("Callexe", [("ExitCode", call.get("exitCode")),
                              ("ExitCodeFormat", call.get("exitCodeFormat"))])
    chart = step.get("chart")
    if chart is not None:
        out.open("Chart", [("idx", 0), ("ChartType", chart["chartType"]),
                           ("Label", chart.get("label")), ("XLabel", chart.get("xLabel")),
                           ("XUnit", chart.get("xUnit") or ""), ("YLabel", chart.get("yLabel")),
                           ("YUnit", chart.get("yUnit") or "")])
        for series in chart.get("series") or []:
            out.open("Series", [("Name", series.get("name")),
                                ("DataType", series.get("dataType") or "XYG")])
            out.text("ydata", [], series["ydata"])
            out.text("xdata", [], series["xdata"])
            out.close("Series")
        out.close("Chart")
    attachment = step.get("attachment")
    if attachment is not None:
        size = len(base64.b64decode(attachment["data"]))
        out.text("Attachment", [("Name", attachment.get("name")),
                                ("ContentType", attachment.get("contentType")), ("Size", size)],
                 _wrapped(attachment["data"]))
    for data in step.get("additionalResults") or []:
        _wsxf_additional(out, "AdditionalResults", data)
    for child in step.get("steps") or []:
        _wsxf_step(out, child)
    out.close("Step")


# -- WSTF ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WstfStyle:
    """How a station lays out its WSTF file; every choice here is one formats.md §3 allows.

    `mode` is the ConverterMode line. "Import": every status is written, as the station saw
    it. "Active": test lines and sequence lines leave StepStatus empty and there is no
    UUTStatus, so the client computes them from the limits; action steps keep theirs.
    """

    mode: str = "Import"
    newline: str = "\n"  # "\r\n" from Windows stations
    end_marker: str = "--UUT-End--"  # Virinco's own sample writes "-- UUT-End--"
    status_in_header: bool = False  # UUTStatus among the header lines instead of the footer
    # Which start lines: "both", "local" (StartDateTime) or "utc" (UTCStartDateTime, as
    # Virinco's sample file has it).
    start_lines: str = "both"
    # A Multiple… line may carry the block's first measurement; its EndMultiple… line then
    # carries the step status.
    first_on_main: bool = False


def to_wstf(reports: Iterable[Mapping[str, Any]], style: WstfStyle = WstfStyle()) -> bytes:
    """The reports as one WSTF file (tab separated, one block per UUT; formats.md §3)."""
    if style.mode not in ("Import", "Active"):
        raise ValueError(f"mode must be Import or Active, not {style.mode!r}")
    lines: list[str] = []
    for report in reports:
        _wstf_report(lines, report, style)
    return (style.newline.join(lines) + style.newline).encode("utf-8")


def _wstf_report(lines: list[str], report: Mapping[str, Any], style: WstfStyle) -> None:
    mode = style.mode
    uut = report.get("uut") or {}
    root = report["root"]
    seq = root["seqCall"]
    header: list[tuple[str, Any]] = [
        ("SerialNumber", report["sn"]), ("PartNumber", report["pn"]),
        ("Revision", report.get("rev")), ("OperationTypeCode", report["processCode"]),
        ("OperationTypeName", report.get("processName")),
    ]
    if report.get("start") is not None:
        # StartDateTime is the station's local clock, written without an offset
        # (yyyy-MM-ddTHH:mm:ss); UTCStartDateTime the same moment in UTC.
        start = parse_datetime(report["start"])
        if style.start_lines in ("both", "local"):
            local = start.replace(tzinfo=None).isoformat("T", "seconds")
            header.append(("StartDateTime", local))
        if style.start_lines in ("both", "utc"):
            utc = start.astimezone(timezone.utc).replace(tzinfo=None).isoformat("T", "seconds")
            header.append(("UTCStartDateTime", utc))
    header += [
        ("StationName", report.get("machineName")), ("OperatorName", uut.get("user")),
        ("ExecutionTime", uut.get("execTime")), ("TestSocketIndex", uut.get("testSocketIndex")),
        ("FixtureId", uut.get("fixtureId")), ("BatchSerialNumber", uut.get("batchSN")),
        ("Comment", uut.get("comment")), ("ErrorCode", uut.get("errorCode")),
        ("ErrorMessage", uut.get("errorMessage")),
        # The root sequence: SoftwareName is its file and name, SoftwareVersion its version.
        ("SoftwareName", seq.get("path")), ("SoftwareVersion", seq.get("version")),
        ("ConverterMode", mode),
    ]
    if mode == "Import" and style.status_in_header:
        header.append(("UUTStatus", RESULT_WORDS[report["result"]]))
    lines.append("--Header-Start--")
    lines.extend(f"{key}\t{_cell(value)}" for key, value in header if value not in (None, ""))
    for misc in report.get("miscInfos") or []:
        lines.append(f"{misc['description']}\t{misc.get('text') or ''}")
    for unit in report.get("subUnits") or []:
        lines.append("\t".join(("Subunit", unit.get("partType") or "", unit["pn"], unit["sn"],
                                unit.get("rev") or "")))
    lines.append("--Step-Data-Start--")
    lines.append("\t".join(WSTF_COLUMNS))
    _wstf_steps(lines, root.get("steps") or [], style)
    lines.append("--Step-Data-End--")
    if mode == "Import" and not style.status_in_header:
        lines.append(f"UUTStatus\t{RESULT_WORDS[report['result']]}")
    lines.append(style.end_marker)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, (int, float)):
        return number(value)
    return str(value)


def _row(**cells: Any) -> str:
    """One step-data line with every column, empty cells included (as spreadsheets save)."""
    return "\t".join(_cell(cells.get(column)) for column in WSTF_COLUMNS)


def _step_cells(step: Mapping[str, Any]) -> dict[str, Any]:
    return {"StepExecutionTime": step.get("totTime"), "StepReportText": step.get("reportText"),
            "StepErrorCode": step.get("errorCode"), "StepErrorMessage": step.get("errorMessage"),
            "CausedSequenceFailure": step.get("causedSeqFailure")}


def _measurement_kind(step: Mapping[str, Any]) -> str | None:
    return next((key for key in MEASUREMENTS if step.get(key)), None)


def _wstf_steps(lines: list[str], steps: Sequence[Mapping[str, Any]], style: WstfStyle) -> None:
    active = style.mode == "Active"
    previous_open: tuple[str, str] | None = None  # (kind, name) of an open continuation step
    for step in steps:
        name = step["name"]
        status = None if active else STEP_STATUS_WORDS[step["status"]]
        kind = _measurement_kind(step)
        if step.get("seqCall") is not None:
            lines.append(_row(StepType="SequenceCall", StepName=name, StepStatus=status,
                              **_step_cells(step)))
            _wstf_steps(lines, step.get("steps") or [], style)
            lines.append(_row(StepType="EndSequenceCall", StepName=name))
            previous_open = None
            continue
        if kind is None:
            # Action steps keep their status in both modes: nothing to compute it from.
            lines.append(_row(StepType="ActionStep", StepName=name,
                              StepStatus=STEP_STATUS_WORDS[step["status"]], **_step_cells(step)))
            previous_open = None
            continue
        label = WSTF_LABELS[kind]
        items = step[kind]
        if items[0].get("name") is None:  # a single measurement: the step's line
            # Its StepStatus is the step's; the measurement's follows from it.
            lines.append(_row(StepType=label, StepName=name, StepStatus=status,
                              **_measurement_cells(kind, items[0]), **_step_cells(step)))
            previous_open = None
        elif _continuation_fits(step, kind, items, active, previous_open):
            # The short form: the first line names the step, the next ones leave StepName
            # empty and add their measurement (the step status is their roll-up).
            lines.append(_row(StepType=label, StepName=name, StepStatus=_status(items[0], active),
                              **_measurement_cells(kind, items[0]), **_step_cells(step)))
            lines.extend(_row(StepType=label, StepStatus=_status(item, active),
                              **_measurement_cells(kind, item)) for item in items[1:])
            previous_open = (kind, name)
        elif style.first_on_main:
            # The explicit form, its first measurement on the Multiple… line: the step status
            # goes on the EndMultiple… line.
            lines.append(_row(StepType=f"Multiple{label}", StepName=name,
                              StepStatus=_status(items[0], active),
                              **_measurement_cells(kind, items[0]), **_step_cells(step)))
            lines.extend(_row(StepType=label, StepStatus=_status(item, active),
                              **_measurement_cells(kind, item)) for item in items[1:])
            lines.append(_row(StepType=f"EndMultiple{label}", StepName=name, StepStatus=status))
            previous_open = None
        else:
            # The explicit form: Multiple… names the step and carries its own status.
            lines.append(_row(StepType=f"Multiple{label}", StepName=name, StepStatus=status,
                              **_step_cells(step)))
            lines.extend(_row(StepType=label, StepStatus=_status(item, active),
                              **_measurement_cells(kind, item)) for item in items)
            lines.append(_row(StepType=f"EndMultiple{label}", StepName=name))
            previous_open = None
        if step.get("chart") is not None:
            _wstf_chart(lines, step["chart"])


def _continuation_fits(step: Mapping[str, Any], kind: str, items: Sequence[Mapping[str, Any]],
                       active: bool, previous_open: tuple[str, str] | None) -> bool:
    """True when the short (continuation-line) form says what the step is.

    Its status is the roll-up of its measurements (a failure fails it; all skipped skips
    it), so another status needs the explicit form. And a step right after an open one of the
    same kind and name would be read as more measurements of that one.
    """
    if previous_open == (kind, step["name"]):
        return False
    if active:
        return True
    statuses = [item["status"] for item in items]
    rolled = "F" if "F" in statuses else ("S" if all(s == "S" for s in statuses) else "P")
    return bool(step["status"] == rolled)


def _status(meas: Mapping[str, Any], active: bool) -> str | None:
    """The StepStatus cell of a measurement line of a multi-measurement step."""
    return None if active else STEP_STATUS_WORDS[meas["status"]]


def _measurement_cells(kind: str, meas: Mapping[str, Any]) -> dict[str, Any]:
    if kind == "numericMeas":
        return {"MeasureName": meas.get("name"), "Value": meas["value"],
                "LowLimit": meas.get("lowLimit"), "HighLimit": meas.get("highLimit"),
                "CompOperator": meas["compOp"], "Unit": meas.get("unit")}
    if kind == "booleanMeas":
        # The value a pass/fail test read: TRUE when it passed.
        return {"MeasureName": meas.get("name"),
                "Value": "TRUE" if meas["status"] == "P" else "FALSE"}
    # StringValueTest: the LowLimit column holds the string limit.
    return {"MeasureName": meas.get("name"), "Value": meas["value"], "LowLimit": meas.get("limit"),
            "CompOperator": meas["compOp"]}


def _wstf_chart(lines: list[str], chart: Mapping[str, Any]) -> None:
    # Chart: StepName = chart type, MeasureName = label, then YUnit, YLabel, XUnit, XLabel.
    lines.append("\t".join(_cell(value) for value in (
        "Chart", chart["chartType"], chart.get("label"), chart.get("yUnit"), chart.get("yLabel"),
        chart.get("xUnit"), chart.get("xLabel"))))
    # Series: StepName = series name, MeasureName = data type, then YData, XData.
    for series in chart.get("series") or []:
        lines.append("\t".join(_cell(value) for value in (
            "Series", series.get("name"), series.get("dataType") or "XYG", series["ydata"],
            series["xdata"])))

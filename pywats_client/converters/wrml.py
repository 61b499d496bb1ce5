"""Legacy WRML reports (namespace …/WATS/Report) rebuilt into the WSXF report tree.

Owns the one difference between the dialects: WRML lists its steps flat (`<Step StepID
ParentStepID>`), with each step's payload as a sibling element that names the step by `StepID`,
and stores charts and attachments as `<Chart>` rows with binary data. `rebuild_tree()` nests the
steps, moves every payload into its step and turns the chart rows into WSXF `<Chart>`/`<Series>`
or `<Attachment>` elements, so `wsxf.py` maps both dialects to the same WSJF.
"""

from __future__ import annotations

import base64
import binascii
import math
import struct
from pathlib import Path

from pywats_client.converters.wsxf import MAX_DEPTH
from pywats_client.converters.xmlsafe import XmlNode
from pywats_client.errors import ConversionError

# Step payload elements that WRML writes beside the steps, pointing at them by StepID.
PAYLOAD_KEYS = frozenset({
    "sequencecall", "numericlimit", "passfail", "stringvalue", "messagepopup", "callexe",
    "propertyloader", "chart", "attachment", "additionalresults", "reporttext",
})


def rebuild_tree(path: Path, report: XmlNode) -> XmlNode:
    """A WSXF-shaped copy of the flat WRML `report`: one root `<Step>` holding the tree.

    Raises `ConversionError` naming the element and line when a payload names an unknown step,
    a ParentStepID names no step, there is not exactly one root step, or the parent links loop.
    """
    steps: dict[str, XmlNode] = {}
    parents: list[tuple[XmlNode, str]] = []
    payloads: dict[str, list[XmlNode]] = {}
    others: list[XmlNode] = []
    for child in report.children:
        step_id = (child.get("StepID") or "").strip()
        if child.key == "step":
            step_id = step_id or (child.get("Id") or "").strip()
            if not step_id:
                raise _fail(path, child, "StepID is missing")
            if step_id in steps:
                raise _fail(path, child, f"StepID {step_id} is also used by "
                                         f"{steps[step_id].place()}")
            step = XmlNode("Step", child.ns, {**child.attrib, "StepID": step_id}, child.line)
            step.children = list(child.children)
            steps[step_id] = step
            parents.append((step, (child.get("ParentStepID") or "").strip()))
        elif child.key in PAYLOAD_KEYS and step_id:
            payloads.setdefault(step_id, []).append(child)
        else:
            others.append(child)
    for step_id, items in payloads.items():
        owner = steps.get(step_id)
        if owner is None:
            raise _fail(path, items[0], f"StepID {step_id} names no <Step>")
        charts = [item for item in items if item.key == "chart"]
        owner.children.extend(item for item in items if item.key != "chart")
        if charts:
            owner.children.append(_chart(path, charts))
    roots: list[XmlNode] = []
    for step, parent_id in parents:
        parent = steps.get(parent_id)
        if parent is not None:
            parent.children.append(step)
        elif parent_id in ("", "0", "-1"):  # no parent: the root sequence
            roots.append(step)
        else:
            raise _fail(path, step, f"ParentStepID {parent_id} names no <Step>")
    if not steps:  # a repair report: no test steps
        rebuilt = XmlNode(report.tag, report.ns, report.attrib, report.line)
        rebuilt.children = others
        return rebuilt
    if len(roots) != 1:
        found = "no step" if not roots else " and ".join(root.place() for root in roots[:3])
        raise _fail(path, report, "a test report needs exactly one root step (a <Step> "
                                  f"without ParentStepID); found {found}")
    _check_reachable(path, roots[0], parents)
    rebuilt = XmlNode(report.tag, report.ns, report.attrib, report.line)
    rebuilt.children = [*others, roots[0]]
    return rebuilt


def _check_reachable(path: Path, root: XmlNode, parents: list[tuple[XmlNode, str]]) -> None:
    """Every step must hang below the root, no deeper than the WSXF nesting cap."""
    seen: set[int] = set()
    stack: list[tuple[XmlNode, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise _fail(path, node, f"steps are nested more than {MAX_DEPTH} deep")
        seen.add(id(node))
        stack.extend((child, depth + 1) for child in node.children if child.key == "step")
    for step, parent_id in parents:
        if id(step) not in seen:
            raise _fail(path, step, f"is not below the root step (its ParentStepID "
                                    f"{parent_id} chain loops back on itself)")


def _chart(path: Path, rows: list[XmlNode]) -> XmlNode:
    """WRML chart rows of one step -> one WSXF `<Chart>` (or `<Attachment>`).

    The row without `<Data>` is the chart header (`ChartType`, labels, units); every other row
    is a series (`PlotName`, `DataType`) whose `<Data>` is base64 of little-endian doubles,
    x and y interleaved. `ChartType="ATTACHMENT"` is how WRML stored a step attachment: the
    header `Label` is the file name, the data row's `PlotName` its content type.
    """
    headers = [row for row in rows if row.find("data") is None]
    series = sorted((row for row in rows if row.find("data") is not None), key=_row_index)
    if len(headers) != 1:
        where = headers[1] if len(headers) > 1 else rows[0]
        raise _fail(path, where, "a step holds one chart: expected one <Chart> header row "
                                 f"(without <Data>), found {len(headers)}")
    header = headers[0]
    attrib = {k: v for k, v in header.attrib.items() if k not in ("StepID", "idx")}
    if (header.get("ChartType") or "").strip().upper() == "ATTACHMENT":
        if len(series) != 1:
            raise _fail(path, header, "an attachment needs exactly one <Chart> row with <Data>, "
                                      f"found {len(series)}")
        content = series[0]
        attachment = XmlNode("Attachment", header.ns, {
            "Name": header.get("Label") or "", "ContentType": content.get("PlotName") or "",
        }, header.line)
        data = content.find("data")
        attachment.parts = list(data.parts) if data is not None else []
        return attachment
    chart = XmlNode("Chart", header.ns, attrib, header.line)
    for row in series:
        xs, ys = _points(path, row)
        node = XmlNode("Series", row.ns, {"Name": row.get("PlotName") or "",
                                          "DataType": row.get("DataType") or "XYG"}, row.line)
        for tag, values in (("xdata", xs), ("ydata", ys)):
            data = XmlNode(tag, row.ns, {}, row.line)
            data.parts.append(";".join(_number(value) for value in values))
            node.children.append(data)
        chart.children.append(node)
    return chart


def _points(path: Path, row: XmlNode) -> tuple[list[float], list[float]]:
    data = row.find("data")
    text = "".join((data.text if data is not None else "").split())
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _fail(path, row, "the chart <Data> is not valid base64") from None
    if len(raw) % 16:
        raise _fail(path, row, f"the chart <Data> holds {len(raw)} bytes; expected x,y pairs "
                               "of 8-byte numbers (a multiple of 16)")
    values = struct.unpack(f"<{len(raw) // 8}d", raw)
    return list(values[0::2]), list(values[1::2])


def _number(value: float) -> str:
    """Shortest text that reads back as the same double; whole numbers without '.0'."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(value)


def _row_index(row: XmlNode) -> int:
    try:
        return int((row.get("idx") or "0").strip())
    except ValueError:
        return 0


def _fail(path: Path, node: XmlNode, message: str) -> ConversionError:
    return ConversionError(f"{path}: {node.place()}: {message}")

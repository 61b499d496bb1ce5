"""Reading a WSXF element's attributes, and mapping a step's payloads and properties.

Owns the values of WSXF/WRML (formats.md §2) below the report: numbers, booleans, dates,
status words and base64 as attributes give them — each refused naming the element, its line
and the attribute — and the measurements, sequence calls, pop-ups, charts, attachments and
TestStand properties of a step as WSJF holds them. `wsxf.py` maps the report and its step tree
with these.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pywats_client.converters.xmlsafe import XmlNode
from pywats_client.errors import ConversionError, ReportValidationError
from pywats_client.report.model import parse_datetime
from pywats_client.report.operators import limits_used, numeric_status, parse_comp_op, string_status

_MEAS_STATUS = {"passed": "P", "failed": "F", "skipped": "S",
                "done": "P"}  # server exports of Done steps keep P on the measurement
_TRUE, _FALSE = ("true", "1"), ("false", "0")
_NUMBER = re.compile(r"\s*[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,4})?\s*")
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_WHITESPACE = re.compile(r"\s+")
_SHARED_NUMBERS = 4096  # at most this many numbers shared at once




class FieldReader:
    """The attribute readers and payload mappers of one WSXF file (`path`): numbers that
    repeat from step to step (limits, times, values) are one float each, shared."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.numbers: dict[str, float] = {}  # as written -> the number (see `number`)

    def fail(self, node: XmlNode, message: str) -> ConversionError:
        return ConversionError(f"{self.path}: {node.place()}: {message}")

    # attribute readers; each names the element, line and attribute when the value is wrong

    def text(self, node: XmlNode, attr: str) -> str | None:
        return node.get(attr)

    def integer(self, node: XmlNode, attr: str) -> int | None:
        raw = node.get(attr)
        if raw is None or not raw.strip():
            return None
        number = self.number(node, attr)
        if number is None or not number.is_integer():
            raise self.fail(node, f"{attr}={raw!r} is not a whole number")
        return int(number)

    def number(self, node: XmlNode, attr: str) -> float | None:
        raw = node.get(attr)
        if raw is None:
            return None
        known = self.numbers.get(raw)
        if known is not None:
            return known
        if not raw.strip():
            return None
        if not _NUMBER.fullmatch(raw):
            hint = (" (WATS cannot store NaN or infinite values)"
                    if raw.strip().lower().lstrip("+-") in ("nan", "inf", "infinity") else
                    " (use a dot as decimal separator)")
            raise self.fail(node, f"{attr}={raw!r} is not a number{hint}")
        value = float(raw)
        # Limits, times and values repeat from step to step: one float each, shared.
        if len(self.numbers) >= _SHARED_NUMBERS:
            self.numbers.clear()
        self.numbers[raw] = value
        return value

    def boolean(self, node: XmlNode, attr: str) -> bool | None:
        raw = node.get(attr)
        if raw is None or not raw.strip():
            return None
        word = raw.strip().lower()
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
        raise self.fail(node, f"{attr}={raw!r} is not a boolean (true/false or 1/0)")

    def date(self, node: XmlNode, attr: str) -> str | None:
        raw = node.get(attr)
        if raw is None or not raw.strip():
            return None
        try:
            parse_datetime(raw)
        except ValueError as exc:
            raise self.fail(node, f"{attr}: {exc}") from None
        return raw.strip()

    def put(self, out: dict[str, Any], key: str, node: XmlNode, attr: str,
            read: Callable[[XmlNode, str], Any]) -> None:
        """out[key] from the attribute, and its `…Format` sibling as `key + "Format"`."""
        value = read(node, attr)
        if value is not None:
            out[key] = value
        fmt = node.format_of(attr)
        if fmt is not None:
            out[key + "Format"] = fmt

    def letter(self, node: XmlNode, attr: str, table: dict[str, str], allowed: str,
               required: bool = True) -> str | None:
        raw = node.get(attr)
        if raw is None or not raw.strip():
            if required:
                raise self.fail(node, f"the {attr} attribute is missing")
            return None
        word = raw.strip()
        letter = table.get(word.lower()) or (word.upper() if word.upper() in allowed else None)
        if letter is None:
            words = ", ".join(w.capitalize() for w in table)
            raise self.fail(node, f"{attr}={raw!r} is not one of {words}")
        return letter

    def base64(self, node: XmlNode, text: str) -> str:
        data = _WHITESPACE.sub("", text)
        if len(data) % 4 or not _BASE64.fullmatch(data):
            raise self.fail(node, "the content is not valid base64")
        return data

    def loop(self, node: XmlNode) -> dict[str, Any] | None:
        loop = {"idx": self.integer(node, "index"), "num": self.integer(node, "num"),
                "endingIndex": self.integer(node, "ending_index"),
                "passed": self.integer(node, "passed"), "failed": self.integer(node, "failed")}
        return loop if any(value is not None for value in loop.values()) else None

    def numeric(self, node: XmlNode, step_status: str) -> dict[str, Any]:
        op = parse_comp_op(node.get("CompOperator"))
        value = self.number(node, "NumericValue")
        if value is None:
            raise self.fail(node, "NumericValue is missing")
        low, high = self.number(node, "LowLimit"), self.number(node, "HighLimit")
        low_fmt, high_fmt = node.format_of("LowLimit"), node.format_of("HighLimit")
        uses_low, uses_high = limits_used(op)
        if uses_low and not uses_high and low is None and high is not None:
            # Older exports write the single limit of LE/LT as HighLimit; WSJF (and the server's
            # own WSJF export of the same step) keeps a single limit in lowLimit.
            low, high, low_fmt, high_fmt = high, None, high_fmt, None
        status = self.letter(node, "Status", _MEAS_STATUS, "PFS", required=False)
        if status is None:
            try:
                status = numeric_status(op, value, low, high)
            except ReportValidationError:  # the operator needs a limit the file lacks
                status = _status_of(step_status)
        out: dict[str, Any] = {"compOp": op, "name": node.get("Name"), "status": status,
                               "unit": node.get("Units") or None, "value": value}
        if node.format_of("NumericValue") is not None:
            out["valueFormat"] = node.format_of("NumericValue")
        out["highLimit"] = high
        if high_fmt is not None:
            out["highLimitFormat"] = high_fmt
        out["lowLimit"] = low
        if low_fmt is not None:
            out["lowLimitFormat"] = low_fmt
        return out  # MeasIndex and MeasOrderNumber are the list order

    def string(self, node: XmlNode, step_status: str) -> dict[str, Any]:
        op = parse_comp_op(node.get("CompOperator"))
        value = node.get("StringValue")  # the attribute, not the element text
        if value is None:
            raise self.fail(node, "the StringValue attribute is missing")
        limit = node.get("StringLimit")
        status = self.letter(node, "Status", _MEAS_STATUS, "PFS", required=False)
        return {"compOp": op, "name": node.get("Name"),
                "status": status or string_status(op, value, limit),
                "value": value, "limit": limit}

    def boolean_meas(self, node: XmlNode, step_status: str) -> dict[str, Any]:
        status = self.letter(node, "Status", _MEAS_STATUS, "PFS", required=False)
        return {"name": node.get("Name"), "status": status or _status_of(step_status)}

    def seq_call(self, node: XmlNode) -> dict[str, Any]:
        return {"path": node.get("Filepath") or node.get("Filename"), "name": node.get("Name"),
                "version": node.get("Version") or None}

    def message_popup(self, node: XmlNode) -> dict[str, Any]:
        out: dict[str, Any] = {"response": node.get("Response")}
        button = self.integer(node, "Button")
        out["button"] = button
        if node.format_of("Button") is not None:
            out["buttonFormat"] = node.format_of("Button")
        return out

    def call_exe(self, node: XmlNode) -> dict[str, Any]:
        out: dict[str, Any] = {"exitCode": self.number(node, "ExitCode")}
        if node.format_of("ExitCode") is not None:
            out["exitCodeFormat"] = node.format_of("ExitCode")
        return out

    def chart(self, node: XmlNode) -> dict[str, Any]:
        series = []
        for child in node.children:
            if child.key != "series":
                continue
            xdata, ydata = child.find("xdata"), child.find("ydata")
            series.append({"dataType": child.get("DataType") or "XYG", "name": child.get("Name"),
                           "xdata": xdata.text.strip() if xdata is not None else "",
                           "ydata": ydata.text.strip() if ydata is not None else ""})
        # Server exports turn empty units into null (XUnit="" -> xUnit null).
        return {"chartType": node.get("ChartType") or "Line", "label": node.get("Label"),
                "xLabel": node.get("XLabel"), "xUnit": node.get("XUnit") or None,
                "yLabel": node.get("YLabel"), "yUnit": node.get("YUnit") or None,
                "series": series}

    def attachment(self, node: XmlNode) -> dict[str, Any]:
        # Exports made without attachments carry only the name, type and Size: the step keeps
        # its attachment header with empty data, so the report still shows what was attached.
        return {"name": node.get("Name"), "contentType": node.get("ContentType"),
                "data": self.base64(node, node.text)}
MEASUREMENTS: dict[str, tuple[str, Callable[[FieldReader, XmlNode, str], dict[str, Any]]]] = {
    "numericlimit": ("numericMeas", FieldReader.numeric),
    "stringvalue": ("stringMeas", FieldReader.string),
    "passfail": ("booleanMeas", FieldReader.boolean_meas),
}
SINGLE_PAYLOADS: dict[str, tuple[str, Callable[[FieldReader, XmlNode], dict[str, Any]]]] = {
    "sequencecall": ("seqCall", FieldReader.seq_call),
    "messagepopup": ("messagePopup", FieldReader.message_popup),
    "callexe": ("callExe", FieldReader.call_exe),
    "chart": ("chart", FieldReader.chart),
    "attachment": ("attachment", FieldReader.attachment),
}


def _status_of(step_status: str) -> str:
    """A measurement status for a file that gives none: the step's verdict."""
    return {"F": "F", "S": "S"}.get(step_status, "P")


def comment_of(node: XmlNode) -> str | None:
    child = node.find("comment")
    if child is not None:
        return child.text
    return node.get("Comment")


def prop_of(node: XmlNode) -> dict[str, Any]:
    """An AdditionalData/AdditionalResults property from "any XML".

    TestStand writes properties as `<Prop Name Type Flags NumFmt><Value>…</Value></Prop>`
    (containers nest Props, arrays hold `<Value ID="[0]">`); those map onto WSJF's props one to
    one. Other XML is kept as a tree of named String/Obj props so nothing is lost.
    """
    if node.key == "prop":
        out: dict[str, Any] = {"name": node.get("Name"), "type": node.get("Type") or "String"}
        flags = node.get("Flags")
        if flags:
            # TestStand always writes hex ("0x0"); anything else is not worth a failure.
            with contextlib.suppress(ValueError):
                out["flags"] = int(flags, 0)
        if node.get("NumFmt"):
            out["numFormat"] = node.get("NumFmt")
        comment = comment_of(node)
        if comment is not None:
            out["comment"] = comment
        values = [child for child in node.children if child.key == "value"]
        props = [prop_of(child) for child in node.children if child.key == "prop"]
        if out["type"].lower() == "array":
            element_type = node.get("ElementType")
            out["array"] = {
                "dimension": max(1, (node.get("LBound") or "[0]").count("[")),
                "type": element_type,
                "indexes": [_array_index(value, element_type) for value in values],
            }
        elif props:
            out["props"] = props
        elif values:
            out["value"] = values[0].text
        return out
    extra = [{"name": key, "type": "String", "value": value}
             for key, value in node.attrib.items() if key != "Name"]
    children = [prop_of(child) for child in node.children]
    name = node.get("Name") or node.tag
    if not extra and not children:
        return {"name": name, "type": "String", "value": node.text}
    return {"name": name, "type": "Obj", "props": extra + children}


def _array_index(node: XmlNode, element_type: str | None) -> dict[str, Any]:
    text = node.get("ID") or ""
    inner = node.find("prop")
    value = prop_of(inner) if inner is not None else {"type": element_type, "value": node.text}
    return {"text": text, "indexes": [int(n) for n in re.findall(r"-?\d+", text)],
            "value": value}

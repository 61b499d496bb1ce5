"""`WATSStandardJsonConverter`: WSJF files (formats.md §1), one report or a list of them.

WSJF is already the report model, so conversion is parsing: every field the file has is kept
unchanged and in order (a file exported by WATS round-trips exactly), UUT and UUR alike. The
one change is the one the WATS client makes: a comparison operator it does not know is read
as LOG (formats.md §1.2), so the server is not sent an operator it would refuse. The report is
marked for it (`unknown_operators_as_log`) and validation makes the change, in its one walk
of the steps.

Reports come back as `ReportDict`s whose source places ("line 17, column 5") are found only
when a report turns out invalid: finding them needs a slower, position-tracking parse of the
file, which valid files never pay for. A test report without a processCode gets one by the
rule of every built-in converter (`builtin.py`) when the server's process list or the
settings give one.
"""

from __future__ import annotations

import bisect
import json
import json.decoder
import json.scanner
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pywats_client.converters.builtin import BuiltinConverter, ConversionOptions
from pywats_client.converters.textio import MB, decode, read_bytes
from pywats_client.errors import ConversionError, IncompleteFileError
from pywats_client.report.model import ReportDict

# Parsed in memory (a Raspberry Pi has little of it); bigger files are refused, not tried.
MAX_FILE_SIZE = 200 * MB

_DECODER = json.JSONDecoder()
_WHITESPACE = re.compile(r"\s*")
_LITERALS = ("true", "false", "null", "NaN", "Infinity", "-Infinity")
_NUMBER_TAIL = re.compile(r"[0-9.eE+-]{1,40}")
_FIRST_LOOK = 4096
# A report body's key, looked for beyond a nested value the detection does not decode.
_BODY_KEY = re.compile(r'"(root|uur|subUnits)"\s*:')


class WATSStandardJsonConverter(BuiltinConverter):
    """Imports WATS Standard JSON Format files as they are (the WATS Client "WSJF importer")."""

    name = "WATSStandardJsonConverter"
    memory_ratio = 6.5  # peak RSS per input byte (bench_converters --memory: 100k steps, 19 MB)
    description = "WATS Standard JSON Format (WSJF): one report object or a list of them"
    file_patterns = ("*.json",)

    def read(self, path: Path, options: ConversionOptions) -> dict[str, Any] | list[dict[str, Any]]:
        try:
            stat = path.stat()  # first: the places of problems are found again in this version
        except OSError as exc:
            raise ConversionError(f"{path}: cannot read the file: {exc.strerror or exc}") from exc
        # The bytes are not kept once they are text: a big file would be held twice.
        text = _decode(read_bytes(path, MAX_FILE_SIZE, "WSJF", hint="a report that size is "
                                  "mostly attachments: split it or leave large attachments "
                                  "out"), path, options.encoding)
        stamp = (stat.st_size, stat.st_mtime_ns)
        if not text.strip():
            raise IncompleteFileError(f"{path}: the file is empty; waiting for the writer")
        try:
            value = json.loads(text, parse_constant=_reject_constant)
        except _NonFiniteNumber as exc:
            raise ConversionError(
                f"{path}: {exc} is not valid JSON (WSJF numbers must be finite); leave the "
                "value out or fix the program that writes the file"
            ) from None
        except json.JSONDecodeError as exc:
            if _truncated(exc):
                raise IncompleteFileError(
                    f"{path}: the JSON ends early at line {exc.lineno}, column {exc.colno} "
                    "(file still being written, or cut off)"
                ) from None
            raise ConversionError(
                f"{path}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}; "
                "fix the file or the program that writes it"
            ) from None
        except RecursionError:
            raise ConversionError(f"{path}: the JSON is nested too deeply to be a report") from None
        size, text = len(text), ""  # the tree is all that is needed from here on
        if isinstance(value, dict):
            _check_report(value, path, "")
            _fill_process(value, options, f"{path}")
            return _report(value, _place_finder(path, options.encoding, stamp, None), size)
        if isinstance(value, list) and value:
            for n, item in enumerate(value):
                _check_report(item, path, f"item {n} of the list: ")
                _fill_process(item, options, f"{path}: item {n} of the list")
            share = size // len(value)
            return [_report(item, _place_finder(path, options.encoding, stamp, n), share)
                    for n, item in enumerate(value)]
        found = "an empty list" if isinstance(value, list) else f"a JSON {_kind(value)}"
        raise ConversionError(
            f"{path}: expected a WSJF report (a JSON object with \"type\", \"pn\", \"sn\", ...) "
            f"or a list of reports, but the file holds {found}"
        )


def _fill_process(report: dict[str, Any], options: ConversionOptions, where: str) -> None:
    """A test report without processCode gets one by the rule of every converter (its
    processName looked up in the server's list, else the configured process). When nothing
    gives one the report stays as the file has it, and validation names the missing field.
    A repair report's process is never taken from a test process setting."""
    if report.get("type") != "T" or report.get("processCode") is not None:
        return
    name = report.get("processName")
    name = name if isinstance(name, str) and name else None
    code = options.find_process_code(where, name=name)
    if code is None:
        return
    report["processCode"] = code
    if name is None and options.process_name:
        report["processName"] = options.process_name


def _report(value: dict[str, Any], find: Callable[[], dict[str, str]], size: int
            ) -> ReportDict:
    report = ReportDict(value)
    value.clear()  # one copy of the top level: the file's own dict goes
    report.find_locations = find
    report.source_bytes = size
    # The WATS client reads an operator it does not know as LOG (log only); the server would
    # refuse the report over it. Done by validation, in its walk of the steps: one walk.
    report.unknown_operators_as_log = True
    return report


def _place_finder(
    path: Path, encoding: str | None, stamp: tuple[int, int], index: int | None
) -> Callable[[], dict[str, str]]:
    """Finds the source places of report `index` of the file (None: the file is one report),
    on demand: the file is read again, unless it changed since it was converted."""

    def find() -> dict[str, str]:
        try:
            stat = path.stat()
            if (stat.st_size, stat.st_mtime_ns) != stamp:
                return {}
            return _places(_decode(path.read_bytes(), path, encoding), index)
        except (OSError, ValueError, RecursionError, ConversionError, LookupError):
            return {}  # a place is a courtesy: without one the message still names the field

    return find


class _PositionDecoder(json.JSONDecoder):
    """A JSON decoder that notes where each object starts (by the object's id).

    Uses the pure-Python scanner, about ten times slower than the C one: only for finding
    the places of problems in a report already known to be invalid.
    """

    def __init__(self) -> None:
        super().__init__(parse_constant=_reject_constant)
        self.starts: dict[int, int] = {}

        def parse_object(s_and_end: tuple[str, int], *args: Any) -> tuple[Any, int]:
            obj, end = json.decoder.JSONObject(s_and_end, *args)  # type: ignore[attr-defined]
            self.starts[id(obj)] = s_and_end[1] - 1
            return obj, end

        self.parse_object = parse_object
        self.scan_once = json.scanner.py_make_scanner(self)  # type: ignore[attr-defined]


def _places(text: str, index: int | None) -> dict[str, str]:
    """Field path ("root.steps[2]", "subUnits[0]", "" for the report) -> "line L, column C"."""
    decoder = _PositionDecoder()
    value = decoder.decode(text)
    if index is not None:
        value = value[index]
    newlines = [match.start() for match in re.finditer("\n", text)]

    def place(pos: int) -> str:
        line = bisect.bisect_left(newlines, pos)
        column = pos - (newlines[line - 1] if line else -1)
        return f"line {line + 1}, column {column}"

    places: dict[str, str] = {}
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        where, node = stack.pop()
        if isinstance(node, dict):
            if id(node) in decoder.starts:
                places[where] = place(decoder.starts[id(node)])
            stack.extend((f"{where}.{key}" if where else key, child)
                         for key, child in node.items() if isinstance(child, (dict, list)))
        elif isinstance(node, list):
            stack.extend((f"{where}[{n}]", child) for n, child in enumerate(node)
                         if isinstance(child, (dict, list)))
    if index is not None:
        # Several reports in one file: say which one, whatever the line.
        places = {key: f"item {index} of the list, {spot}" for key, spot in places.items()}
    return places


class _NonFiniteNumber(ValueError):
    """NaN / Infinity in the file: Python's json reads them, JSON (and WATS) does not."""


def _reject_constant(literal: str) -> Any:
    raise _NonFiniteNumber(literal)


def _decode(data: bytes, path: Path, encoding: str | None) -> str:
    # JSON is UTF-8 by RFC 8259, but UTF-16/32 are recognised by their byte pattern even
    # without a byte order mark. Unless the folder names an encoding, UTF-8 is read strictly:
    # a byte that is not UTF-8 is an error naming its offset, never quietly replaced.
    detected = json.detect_encoding(data)
    return decode(data, path, detected if detected.startswith("utf-16") or detected.startswith(
        "utf-32") else encoding or "utf-8")


def _truncated(exc: json.JSONDecodeError) -> bool:
    """True when the document is fine so far but stops: a writer that has not finished."""
    tail = exc.doc[exc.pos:].strip()
    if not tail or exc.msg.startswith("Unterminated string"):
        return True
    if exc.msg.startswith("Invalid \\uXXXX escape") and len(tail) < 6:
        return True
    # Cut inside a literal or a number: "tru", "12.", "1e", "-".
    if any(literal.startswith(tail) for literal in _LITERALS):
        return True
    return _NUMBER_TAIL.fullmatch(tail) is not None


def _check_report(value: Any, path: Path, where: str) -> None:
    if not isinstance(value, dict):
        raise ConversionError(
            f"{path}: {where}expected a WSJF report object, found a JSON {_kind(value)}"
        )
    kind = value.get("type")
    if kind not in ("T", "R"):
        problem = "has no \"type\"" if kind is None else f"has \"type\" {json.dumps(kind)}"
        raise ConversionError(
            f"{path}: {where}this JSON object is not a WSJF report: it {problem} "
            "(expected \"T\" for a test report or \"R\" for a repair report)"
        )


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "list", dict: "object", type(None): "null"}.get(
        type(value), type(value).__name__
    )


# Before a JSON value in UTF-8: byte order marks and ASCII blanks (as str's \s sees them).
_BEFORE_VALUE = re.compile(rb"(?:\xef\xbb\xbf)*[ \t\n\r\x0b\x0c\x1c-\x1f]*")


@WATSStandardJsonConverter.detection
def _detect(path: Path, head: bytes) -> tuple[float, str]:
    # Most files asked are not JSON, and one look at their first bytes tells: in UTF-8 the
    # first character that is not blank must be "{" or "[" (a byte above 0x7f may be a blank).
    if head[:4].count(0) == 0:  # json.detect_encoding: no NUL among them, UTF-8
        blank = _BEFORE_VALUE.match(head)
        at = blank.end() if blank else 0
        if head[at:at + 1] not in (b"{", b"[", b"") and head[at] < 0x80:
            return 0.0, ""
    return _detect_head(head)


def _detect_head(head: bytes) -> tuple[float, str]:
    # The first few KiB hold a report's type, pn and sn and the key of its body: decoding and
    # reading those is enough, and cheap; the whole head only when they do not settle it.
    if len(head) > _FIRST_LOOK:
        first = _detect_in(head[:_FIRST_LOOK])
        if first[0] >= 0.98 or first[0] == 0.0:
            return first
    return _detect_in(head)


def _detect_in(head: bytes) -> tuple[float, str]:
    if not head:
        return 0.0, ""
    text = head.decode(json.detect_encoding(head), errors="replace").lstrip("\ufeff")
    pos = _skip_ws(text, 0)
    if pos >= len(text) or text[pos] not in "{[":
        return 0.0, ""
    in_list = text[pos] == "["
    if in_list:
        pos = _skip_ws(text, pos + 1)
        if pos >= len(text) or text[pos] != "{":
            return 0.05, "JSON list, but not of report objects"
    keys, rest = _top_level_keys(text, pos)
    kind = keys.get("type")
    what = "JSON list whose first object has" if in_list else "JSON object with"
    if kind in ("T", "R") and "pn" in keys and "sn" in keys:
        # formats.md §13: type, pn and sn are reliable; the body (root for a test report,
        # uur or subUnits for a repair report) confirms it, when the head reaches that far.
        bodies = ("root",) if kind == "T" else ("uur", "subUnits")
        later = (m.group(1) for m in _BODY_KEY.finditer(text, rest)) if rest >= 0 else ()
        score = 0.98 if any(name in keys for name in bodies) or any(
            name in bodies for name in later) else 0.95
        return score, f"{what} type '{kind}', pn and sn"
    if kind in ("T", "R"):
        return 0.4, f"{what} type '{kind}' (no pn/sn among the first fields)"
    return 0.05, "JSON, but no WSJF report type"


def _top_level_keys(text: str, pos: int) -> tuple[dict[str, Any], int]:
    """The members of the object at `pos` that can be read before `text` is cut off, and
    where reading stopped early (-1 when it did not).

    The head is only the start of the file, so a full parse usually fails; reading one member
    at a time gets `type`, `pn`, `sn` (which exporters write first) without the rest. A value
    cut off by the end of the head still counts as present. Once those three are known, a
    nested value (the step tree: most of a report) is not decoded: it is present, and where
    it starts is returned, so that the caller can look for the body's key beyond it.
    """
    found: dict[str, Any] = {}
    pos = _skip_ws(text, pos + 1)  # past "{"
    while len(found) < 256 and text[pos:pos + 1] == '"':
        try:
            key, pos = _DECODER.raw_decode(text, pos)
        except (ValueError, RecursionError):
            break
        pos = _skip_ws(text, pos)
        if text[pos:pos + 1] != ":":
            break
        pos = _skip_ws(text, pos + 1)
        if text[pos:pos + 1] in ("{", "[") and all(k in found for k in ("type", "pn", "sn")):
            found[key] = ...
            return found, pos
        try:
            value, pos = _DECODER.raw_decode(text, pos)
        except (ValueError, RecursionError):
            if text[pos:pos + 1] in ("{", "["):
                found[key] = ...  # a nested value running past the head: present, unread
            break
        found[key] = value
        pos = _skip_ws(text, pos)
        if text[pos:pos + 1] != ",":
            break
        pos = _skip_ws(text, pos + 1)
    return found, -1


def _skip_ws(text: str, pos: int) -> int:
    if not text[pos:pos + 1].isspace():  # compact JSON: nothing to skip, no regex run
        return pos
    match = _WHITESPACE.match(text, pos)
    return match.end() if match else pos

"""The report checker: `validate` holds a report to every WSJF rule and names each problem;
`finalize` fills in the station's defaults, then validates: what every converter's output goes
through before it is queued.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Callable, Mapping
from datetime import datetime, timezone, tzinfo
from typing import TYPE_CHECKING, Any, TypeGuard

from pywats_client.errors import ReportValidationError
from pywats_client.report.model import (
    CHART_MAX_POINTS,
    CHART_MAX_SERIES,
    CHART_TYPES,
    INT16,
    INT32,
    MEASUREMENT_STATUSES,
    MISC_INFO_LIMITS,
    NON_EMPTY_FIELDS,
    PAYLOAD_KINDS,
    REPORT_RESULTS,
    REPORT_TYPES,
    REQUIRED_FIELDS,
    ROOT_LISTS,
    ROOT_STRING_LIMITS,
    STEP_GROUPS,
    STEP_NAME_LIMIT,
    STEP_STATUSES,
    SUB_UNIT_LIMITS,
    ReportDict,
    _show,
    _type_name,
    format_datetime,
    format_utc,
    parse_datetime,
    report_id_for,
)
from pywats_client.report.operators import LOG, STRING_OPERATORS, limits_used, parse_comp_op

if TYPE_CHECKING:
    from pywats_client.converters.base import ConverterContext

_MAX_PROBLEMS = 20

_GUID_RE = re.compile(r"[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}", re.IGNORECASE)
# The usual date-time shapes; a string of this shape that `fromisoformat` accepts is valid.
_QUICK_DATE_RE = re.compile(
    r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(?::\d\d(?:\.\d{1,6})?)?(?:Z|[+-]\d\d:\d\d)?")
_OPERATORS: dict[str, tuple[str | None, bool, bool]] = {}
_BASE64_RE = re.compile(r"[A-Za-z0-9+/]*={0,2}")
# Chart data: numbers separated by ";" (invariant culture: "." decimals, no thousands).
_NUMBER = r"\s*[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\s*"
_SERIES_DATA_RE = re.compile(rf"{_NUMBER}(?:;{_NUMBER})*|\s*")  # no points: blank


def finalize(
    report: dict[str, Any],
    *,
    context: ConverterContext,
    converter_name: str,
    content_sha256: str,
    index: int,
    source: str = "",
) -> dict[str, Any]:
    """Return a copy of `report` with the station defaults filled in, validated.

    Fills `id` (see `report_id_for`), `machineName`, `location`, `purpose` from the context,
    `start` from the source file's mtime and `startUTC` from `start`, each only when the file
    did not say; what the file says is never overwritten and key order is kept (new keys go
    last). The copy is shallow: nested objects are shared with `report`; a `ReportDict` stays
    one, with its source places. Raises `ReportValidationError` (naming `source`) when the
    result is not a valid report.
    """
    if not isinstance(report, dict):
        where = f"{source}: " if source else ""
        raise ReportValidationError(
            f"{where}converter {converter_name} returned {type(report).__name__}, expected a "
            "report (dict); fix the converter"
        )
    out: dict[str, Any] = report.copy() if isinstance(report, ReportDict) else dict(report)
    if _blank(out.get("id")):
        out["id"] = report_id_for(converter_name, content_sha256, index)
    for key, value in (
        ("machineName", context.station_name),
        ("location", context.location),
        ("purpose", context.purpose),
    ):
        if _blank(out.get(key)):
            out[key] = value if value else (out.get(key) or "")
    if _blank(out.get("start")) and context.file_mtime is not None:
        # Equipment that writes no start time: the file's own time is the best truth we have.
        # Never "now": a station without a real-time clock would date reports in the future.
        local = datetime.fromtimestamp(context.file_mtime, context.timezone or timezone.utc)
        if context.timezone is None:
            local = local.astimezone()  # system local zone, with its offset
        out["start"] = format_datetime(local)
    if _blank(out.get("startUTC")) and isinstance(out.get("start"), str):
        try:
            start = parse_datetime(out["start"])
        except ValueError:
            pass  # validate() below names the bad start
        else:
            out["startUTC"] = format_utc(_aware(start, context.timezone))
    validate(out, source=source)
    return out


def validate(report: dict[str, Any], *, source: str = "") -> None:
    """Raise `ReportValidationError` when `report` breaks a WSJF rule.

    Checks the whole model: root fields, the `uut` or `uur` header, every step and payload
    (measurements, operators and their limits, charts, attachments, loops), sub-units and
    their failures (with the UUR index rules), misc infos, assets, binary data and additional
    data. The message names the input file (`source`), the report, and for each problem (up
    to 20) the field path, the step and, for a `ReportDict`, the place in the source file.

    Where the documents leave a limit open the looser rule is applied: a report refused here
    never reaches the server, while the server's own refusal only costs a round trip (and is
    kept in failed/ with the server's reason). Unknown fields are ignored, as the server does.
    A `compOp` must be an operator `report.operators.parse_comp_op` knows, in any case
    ("IgnoreCase"); converters map what they cannot read to LOG, as the WATS client does with
    WSJF files: a `ReportDict` whose `unknown_operators_as_log` is set has that done here, in
    the same walk (the one change validation makes).
    Statuses are not compared with limits: imported files keep theirs.
    """
    where = f"{source}: " if source else ""
    if not isinstance(report, dict):
        raise ReportValidationError(
            f"{where}a report must be a JSON object, got {type(report).__name__}"
        )
    checker = _Checker(getattr(report, "unknown_operators_as_log", False))
    with contextlib.suppress(_Enough):  # enough problems listed: stop looking
        checker.check_report(report)
    if not checker.problems:
        return
    shown = [_describe(problem, report) for problem in checker.problems[:_MAX_PROBLEMS]]
    if len(checker.problems) > _MAX_PROBLEMS:
        shown.append(f"... and more (only the first {_MAX_PROBLEMS} problems are listed)")
    sn = report.get("sn")
    who = f"report sn {sn!r}" if isinstance(sn, str) and sn else "report"
    raise ReportValidationError(f"{where}{who} is not valid WSJF: " + "; ".join(shown))



# -- the rules -------------------------------------------------------------------------------
# Field rules: key -> (quick test, kind, argument). Kinds: "str" (max length, 0 = none),
# "int" (range), "num" (finite number), "bool", "guid", "date", "letter" (allowed letters),
# "obj", "list", "op" (compOp), "base64", "data" (chart series), "chart" (chart type).
# Null is accepted for every field that is not listed as required. The quick test accepts
# the common, valid case with a type test and a comparison; anything it does not accept
# gets the full check (`_Checker.check`), which names the problem.
# A rule as `fields()` uses it: (fast mode, the type the fast test wants, the fast test's
# argument, kind, argument, quick test). The fast test takes the usual case inline, without a
# call: a type (mode _TYPE), a string within a length (_LEN), a whole number in a range
# (_RANGE), a letter of a set (_LETTER), a finite float (_FLOAT); anything else (_CALL, or a
# value the fast test does not take) goes to the quick test, then the full check.
_Rule = tuple[int, type, Any, str, Any, Callable[[Any, Any], bool]]
_TYPE, _LEN, _RANGE, _LETTER, _FLOAT, _CALL = range(6)
_FAST: dict[str, tuple[int, type]] = {
    "str": (_LEN, str), "int": (_RANGE, int), "num": (_FLOAT, float), "letter": (_LETTER, str),
    "bool": (_TYPE, bool), "obj": (_TYPE, dict), "list": (_TYPE, list),
}
_QUICK: dict[str, Callable[[Any, Any], bool]] = {
    "str": lambda value, limit: type(value) is str and (not limit or len(value) <= limit),
    # x - x is 0 for every finite float, NaN for NaN and the infinities
    "num": lambda value, _: type(value) is int or (type(value) is float and value - value == 0),
    "letter": lambda value, letters: type(value) is str and len(value) == 1 and value in letters,
    "int": lambda value, bounds: type(value) is int and bounds[0] <= value <= bounds[1],
    "bool": lambda value, _: type(value) is bool,
    "date": lambda value, _: type(value) is str and _quick_date(value),
    "obj": lambda value, _: type(value) is dict,
    "list": lambda value, _: type(value) is list,
    "op": lambda value, _: type(value) is str and _operator(value)[0] is not None,
}


def _rule(kind: str, arg: Any = None) -> _Rule:
    mode, want = _FAST.get(kind, (_CALL, type(None)))
    if mode == _LEN and not arg:
        mode = _TYPE  # a string without a length limit
    fast = frozenset(arg) if mode == _LETTER else arg
    return (mode, want, fast, kind, arg, _QUICK.get(kind, lambda value, arg: False))


def _strings(limits: Mapping[str, int]) -> dict[str, _Rule]:
    """String rules for the fields of a table of length limits."""
    return {key: _rule("str", limit) for key, limit in limits.items()}


_S = _rule("str", 0)
_S100 = _rule("str", 100)
_S5000 = _rule("str", 5000)
_I16 = _rule("int", INT16)
_I32 = _rule("int", INT32)
_N = _rule("num")
_B = _rule("bool")
_G = _rule("guid")
_D = _rule("date")
_OBJ = _rule("obj")
_LIST = _rule("list")

_REPORT_RULES: dict[str, _Rule] = {
    **_strings(ROOT_STRING_LIMITS), **dict.fromkeys(ROOT_LISTS, _LIST),
    "id": _G, "processCode": _I16, "processCodeFormat": _S,
    "result": _rule("letter", REPORT_RESULTS), "start": _D, "startUTC": _D,
    "root": _OBJ, "uut": _OBJ, "uur": _OBJ,
}
_UUT_RULES: dict[str, _Rule] = {
    "user": _S100, "execTime": _N, "execTimeFormat": _S, "testSocketIndex": _I16,
    "testSocketIndexFormat": _S, "batchSN": _S100, "comment": _S5000,
    "errorCode": _I32, "errorCodeFormat": _S, "errorMessage": _S, "fixtureId": _S100,
    "batchFailCount": _I32, "batchFailCountFormat": _S, "batchLoopIndex": _I32,
    "batchLoopIndexFormat": _S, "stepIdCausedUUTFailure": _I32,
}
_UUR_RULES: dict[str, _Rule] = {
    "processCode": _I16, "user": _S100, "execTime": _N, "processName": _S100, "refUUT": _G,
    "confirmDate": _D, "finalizeDate": _D, "comment": _S5000, "parent": _G,
    "children": _LIST, "active": _B,
}
_MISC_INFO_RULES: dict[str, _Rule] = {
    **_strings(MISC_INFO_LIMITS), "numeric": _I16, "numericFormat": _S, "id": _G,
}
_SUB_UNIT_RULES: dict[str, _Rule] = {
    **_strings(SUB_UNIT_LIMITS), "idx": _I32, "parentIdx": _I32, "position": _I32,
    "replacedIdx": _I32, "failures": _LIST,
}
_FAILURE_RULES: dict[str, _Rule] = {
    "category": _rule("str", 200), "code": _rule("str", 200), "refStepId": _I32,
    "refStepName": _S100, "comRef": _rule("str", 50), "funcBlock": _S100, "artNumber": _S100,
    "artRev": _S100,
    "artRevision": _S100, "artVendor": _S100, "artDescription": _S100,
    "comment": _S5000, "attachments": _LIST,
}
_ASSET_RULES: dict[str, _Rule] = {"assetSN": _S, "usageCount": _I32, "usageCountFormat": _S}
_BINARY_RULES: dict[str, _Rule] = {
    "contentType": _S100, "name": _rule("str", 256), "data": _rule("base64"), "id": _G,
}
_ADDITIONAL_RULES: dict[str, _Rule] = {"name": _S, "props": _LIST}
_PROP_RULES: dict[str, _Rule] = {
    "name": _S, "type": _S, "flags": _I32, "numFormat": _S, "comment": _S, "props": _LIST,
    "array": _OBJ,
}
_ARRAY_RULES: dict[str, _Rule] = {"dimension": _I32, "type": _S, "indexes": _LIST}
_INDEX_RULES: dict[str, _Rule] = {"text": _S, "indexes": _LIST, "value": _OBJ}
_STEP_RULES: dict[str, _Rule] = {
    "id": _I32, "group": _rule("letter", STEP_GROUPS), "stepType": _S,
    "name": _rule("str", STEP_NAME_LIMIT), "status": _rule("letter", STEP_STATUSES), "start": _D,
    "totTime": _N, "totTimeFormat": _S, "errorCode": _I32, "errorCodeFormat": _S,
    "errorMessage": _S, "tsGuid": _S, "causedUUTFailure": _B, "causedSeqFailure": _B,
    "reportText": _S, "interactiveExeNum": _I32, "loop": _OBJ, "steps": _LIST,
    "seqCall": _OBJ, "numericMeas": _LIST, "stringMeas": _LIST, "booleanMeas": _LIST,
    "messagePopup": _OBJ, "callExe": _OBJ, "additionalResults": _LIST, "chart": _OBJ,
    "attachment": _OBJ,
}
_SEQ_CALL_RULES: dict[str, _Rule] = {"path": _S, "name": _S, "version": _S}
_NUMERIC_RULES: dict[str, _Rule] = {
    "compOp": _rule("op"), "name": _S, "status": _rule("letter", MEASUREMENT_STATUSES),
    "unit": _S, "value": _N, "valueFormat": _S, "lowLimit": _N, "lowLimitFormat": _S,
    "highLimit": _N, "highLimitFormat": _S,
}
_STRING_RULES: dict[str, _Rule] = {
    "compOp": _rule("op"), "name": _S, "status": _rule("letter", MEASUREMENT_STATUSES),
    "value": _S, "limit": _S,
}
_BOOLEAN_RULES: dict[str, _Rule] = {"name": _S, "status": _rule("letter", MEASUREMENT_STATUSES)}
_MEASUREMENT_RULES = {
    "numericMeas": _NUMERIC_RULES, "stringMeas": _STRING_RULES, "booleanMeas": _BOOLEAN_RULES,
}
_POPUP_RULES: dict[str, _Rule] = {"response": _S, "button": _I16, "buttonFormat": _S}
_CALL_EXE_RULES: dict[str, _Rule] = {"exitCode": _N, "exitCodeFormat": _S}
_PAYLOAD_RULES = {
    "seqCall": _SEQ_CALL_RULES, "messagePopup": _POPUP_RULES, "callExe": _CALL_EXE_RULES,
}
_PAYLOAD_SET = frozenset(PAYLOAD_KINDS)
_CHART_RULES: dict[str, _Rule] = {
    "chartType": _rule("chart"), "label": _S, "xLabel": _S, "xUnit": _S, "yLabel": _S,
    "yUnit": _S, "series": _LIST,
}
_SERIES_RULES: dict[str, _Rule] = {
    "dataType": _S, "name": _S, "xdata": _rule("data"), "ydata": _rule("data"),
}
_ATTACHMENT_RULES: dict[str, _Rule] = {
    "name": _rule("str", 256), "contentType": _S100, "data": _rule("base64"),
}
_LOOP_RULES: dict[str, _Rule] = {
    "idx": _I16, "num": _I16, "endingIndex": _I16, "passed": _I16, "failed": _I16,
}
_LETTER_NAMES = {
    REPORT_RESULTS: "P, F, E, T, D", STEP_STATUSES: "P, D, S, F, E, T",
    MEASUREMENT_STATUSES: "P, F, S", STEP_GROUPS: "S (setup), M (main), C (cleanup)",
}
_CHART_TYPES_BY_KEY = {name.lower(): name for name in CHART_TYPES}
_OPERATOR_HINT = (
    "use EQ, NE, GT, LT, GE, LE, GELE, GELT, GTLE, GTLT, LEGE, LEGT, LTGE, LTGT, LOG "
    "(or CASESENSIT, IGNORECASE for strings)"
)
_REQUIRED_HINTS = {
    "machineName": " (set station_name in the config)",
    "start": " and the file's time is unknown (the converter must set the start time)",
    "processCode": " (set process_code in the converter defaults or arguments)",
}


class _Enough(Exception):
    """Enough problems found to write a useful message: stop looking."""


class _Checker:
    """Walks one report and collects (field path, problem, step name) triples."""

    def __init__(self, unknown_operators_as_log: bool = False) -> None:
        self.problems: list[tuple[str, str, str | None]] = []
        self.step_name: str | None = None  # the step being checked, named in its problems
        self.lenient = unknown_operators_as_log

    def add(self, path: str, text: str) -> None:
        self.problems.append((path, text, self.step_name))
        if len(self.problems) > _MAX_PROBLEMS:
            raise _Enough

    # -- generic field checks ------------------------------------------------------------

    def fields(self, obj: dict[str, Any], base: str, rules: Mapping[str, _Rule]) -> None:
        """Check the fields of `obj` that `rules` knows; null is always accepted here."""
        for key, value in obj.items():  # the hot loop of validate()
            rule = rules.get(key)
            if rule is None or value is None:
                continue  # unknown or output-only field (the server ignores it too), or null
            mode, want, fast, kind, arg, quick = rule
            if type(value) is want:
                if mode == _TYPE:
                    continue
                if mode == _LEN:
                    if len(value) <= fast:  # type: ignore[arg-type]  # `want` is str here
                        continue
                elif mode == _FLOAT:
                    # x - x is 0 for every finite float, NaN for NaN and the infinities
                    if value - value == 0:  # type: ignore[operator]  # `want` is float here
                        continue
                elif mode == _RANGE:
                    if fast[0] <= value <= fast[1]:
                        continue
                elif mode == _LETTER and value in fast:
                    continue
            if not quick(value, arg):
                self.check(kind, arg, value, _join(base, key))

    def check(self, kind: str, arg: Any, value: Any, path: str) -> None:
        """The full check of one value against a field rule, naming what is wrong."""
        if kind == "str":
            if not isinstance(value, str):
                self.add(path, f"must be a string, not {_type_name(value)}")
            elif arg and len(value) > arg:
                self.add(path, f"is {len(value)} characters long, the limit is {arg}")
        elif kind == "int":
            if not _is_int(value):
                self.add(path, f"must be a whole number, not {_show(value)}")
            elif not arg[0] <= value <= arg[1]:
                self.add(path, f"{value} is out of range ({arg[0]}..{arg[1]})")
        elif kind == "num":
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                self.add(path, f"must be a number, not {_show(value)}")
            elif not math.isfinite(value):
                self.add(path, f"is {value}, which JSON cannot carry; leave it out")
        elif kind == "letter":
            if not isinstance(value, str) or len(value) != 1 or value not in arg:
                self.add(path, f"is {_show(value)}, expected one of {_LETTER_NAMES[arg]}")
        elif kind == "date":
            if not isinstance(value, str):
                self.add(path, f"must be a date-time string, not {_type_name(value)}")
            else:
                try:
                    parse_datetime(value)
                except ValueError as exc:
                    self.add(path, f"is not valid: {exc}")
        elif kind == "obj":
            if not isinstance(value, dict):
                self.add(path, f"must be an object, not {_type_name(value)}")
        elif kind == "list":
            if not isinstance(value, list):
                self.add(path, f"must be a list, not {_type_name(value)}")
        elif kind == "bool":
            if not isinstance(value, bool):
                self.add(path, f"must be true or false, not {_show(value)}")
        elif kind == "guid":
            if not isinstance(value, str) or not _GUID_RE.fullmatch(value):
                self.add(path, f"{_show(value)} is not a GUID like "
                         "8f14e45f-ceea-467f-a0b6-1e9b3f2a1c2d")
        elif kind == "op":
            if not isinstance(value, str):
                self.add(path, f"must be an operator name, not {_show(value)}; "
                         f"{_OPERATOR_HINT}")
            elif _operator(value)[0] is None:
                self.add(path, f"{value!r} is not a comparison operator; {_OPERATOR_HINT}")
        elif kind == "base64":
            if not isinstance(value, str):
                self.add(path, f"must be a base64 string, not {_type_name(value)}")
            elif not _is_base64(value):
                self.add(path, "is not valid base64 (A-Z a-z 0-9 + / and = padding, length a "
                         "multiple of 4)")
        elif kind == "data":
            if not isinstance(value, str):
                self.add(path, "must be a string of numbers separated by ';', not "
                         f"{_type_name(value)}")
            elif not _SERIES_DATA_RE.fullmatch(value):
                self.add(path, "must be numbers separated by ';' with '.' decimals (like "
                         f"\"0;1.5;2\"), not {_show(value[:40])}")
            elif _points(value) > CHART_MAX_POINTS:
                self.add(path, f"has {_points(value)} points, the limit is {CHART_MAX_POINTS}")
        elif kind == "chart" and (
                not isinstance(value, str) or value.lower() not in _CHART_TYPES_BY_KEY):
            self.add(path, f"is {_show(value)}, expected one of {', '.join(CHART_TYPES)}")

    def required(self, obj: dict[str, Any], base: str, keys: tuple[str, ...],
                 non_empty: tuple[str, ...] = ()) -> None:
        for key in keys:
            value = obj.get(key)
            if value is None:
                self.add(_join(base, key), "is missing" + (_REQUIRED_HINTS.get(key, "")
                                                           if not base else ""))
            elif key in non_empty and isinstance(value, str) and not value.strip():
                self.add(_join(base, key), "is empty" + (_REQUIRED_HINTS.get(key, "")
                                                         if not base else ""))

    def objects(self, items: Any, base: str, rules: Mapping[str, _Rule],
                required: tuple[str, ...] = (), non_empty: tuple[str, ...] = ()
                ) -> list[tuple[str, dict[str, Any]]]:
        """Check each object of the list `items`; return the (path, object) pairs."""
        found: list[tuple[str, dict[str, Any]]] = []
        if not isinstance(items, list):
            return found  # the type problem is named by the field rules
        for n, item in enumerate(items):
            where = f"{base}[{n}]"
            if not isinstance(item, dict):
                self.add(where, f"must be an object, not {_type_name(item)}")
                continue
            if required:
                self.required(item, where, required, non_empty)
            self.fields(item, where, rules)
            found.append((where, item))
        return found

    # -- the report ------------------------------------------------------------------------

    def check_report(self, report: dict[str, Any]) -> None:
        self.required(report, "", REQUIRED_FIELDS, NON_EMPTY_FIELDS)
        kind = report.get("type")
        if kind is not None and kind != "" and kind not in REPORT_TYPES:
            self.add("type", f"is {_show(kind)}, expected 'T' (test) or 'R' (repair)")
        self.fields(report, "", _REPORT_RULES)
        root, uut, uur = report.get("root"), report.get("uut"), report.get("uur")
        if kind == "T":
            if root is None:
                self.add("root", "is missing: a test report (type 'T') needs a root sequence "
                         "call step")
            if uur is not None:
                self.add("uur", "is only for repair reports (type 'R'); leave it out or null")
            if isinstance(uut, dict):
                self.fields(uut, "uut", _UUT_RULES)
            if isinstance(root, dict):
                if not isinstance(root.get("seqCall"), dict):
                    self.add("root.seqCall", "is missing: the root step must be a sequence "
                             "call (it holds the steps)")
                self.steps(root)
        elif kind == "R":
            if root is not None:
                self.add("root", "is only for test reports (type 'T'); a repair report has "
                         "none")
            if uut is not None:
                self.add("uut", "is only for test reports (type 'T'); use 'uur'")
            if uur is None:
                self.add("uur", "is missing: a repair report (type 'R') needs a 'uur' header")
            elif isinstance(uur, dict):
                self.uur(uur)
        self.step_name = None
        self.misc_infos(report.get("miscInfos"), repair=kind == "R")
        self.sub_units(report.get("subUnits"), repair=kind == "R")
        self.objects(report.get("assets"), "assets", _ASSET_RULES, ("assetSN",))
        self.binaries(report.get("binaryData"), "binaryData")
        self.additional(report.get("additionalData"), "additionalData")

    def uur(self, uur: dict[str, Any]) -> None:
        self.required(uur, "uur", ("processCode", "user"), ("user",))
        self.fields(uur, "uur", _UUR_RULES)
        children = uur.get("children")
        if isinstance(children, list):
            for n, child in enumerate(children):
                if not isinstance(child, str) or not _GUID_RE.fullmatch(child):
                    self.add(f"uur.children[{n}]", f"{_show(child)} is not a report GUID")

    def misc_infos(self, items: Any, *, repair: bool) -> None:
        seen: dict[str, str] = {}
        for where, item in self.objects(items, "miscInfos", _MISC_INFO_RULES,
                                        ("description",), ("description",)):
            description = item.get("description")
            if repair and isinstance(description, str):
                # Virinco's UUR manual: each misc description can be used once per report.
                if description in seen:
                    self.add(f"{where}.description", f"{description!r} is used twice (also "
                             f"{seen[description]}); a repair report allows each once")
                seen.setdefault(description, where)

    def sub_units(self, items: Any, *, repair: bool) -> None:
        units = self.objects(items, "subUnits", _SUB_UNIT_RULES, ("pn", "sn"))
        for where, unit in units:
            for failure_where, failure in self.objects(
                    unit.get("failures"), f"{where}.failures", _FAILURE_RULES,
                    ("category", "code"), ("category", "code")):
                self.binaries(failure.get("attachments"), f"{failure_where}.attachments")
        if not repair:
            return
        if items is None or items == []:
            state = "is missing" if items is None else "is empty"
            self.add("subUnits", f"{state}: a repair report needs the repaired unit as the "
                     "sub-unit with idx 0")
        if not units:
            return
        # UUR rules (Virinco's converter): idx unique, exactly one idx 0 (the repaired unit),
        # parentIdx and replacedIdx point at an existing idx.
        owners: dict[int, str] = {}
        for where, unit in units:
            idx = unit.get("idx")
            if _is_int(idx):
                if idx in owners:
                    self.add(f"{where}.idx", f"{idx} is also the idx of {owners[idx]}; "
                             "sub-unit idx must be unique")
                owners.setdefault(idx, where)
        if 0 not in owners:
            self.add("subUnits", "has no sub-unit with idx 0; a repair report needs the "
                     "repaired unit itself as idx 0")
        for where, unit in units:
            for key in ("parentIdx", "replacedIdx"):
                ref = unit.get(key)
                if _is_int(ref) and ref not in owners:
                    self.add(f"{where}.{key}", f"{ref} is not the idx of any sub-unit")

    def binaries(self, items: Any, base: str) -> None:
        self.objects(items, base, _BINARY_RULES, ("contentType", "data", "name"))

    def additional(self, items: Any, base: str) -> None:
        # Props nest (props of props, array values): walk with a stack, not recursion.
        stack: list[tuple[Any, str, Mapping[str, _Rule], tuple[str, ...]]] = [
            (items, base, _ADDITIONAL_RULES, ("name",))]
        while stack:
            objects, where_list, rules, required = stack.pop()
            for where, obj in self.objects(objects, where_list, rules, required):
                if obj.get("props") is not None:
                    stack.append((obj["props"], f"{where}.props", _PROP_RULES, ("name",)))
                array = obj.get("array")
                if isinstance(array, dict):
                    self.fields(array, f"{where}.array", _ARRAY_RULES)
                    for index_where, index in self.objects(
                            array.get("indexes"), f"{where}.array.indexes", _INDEX_RULES):
                        positions = index.get("indexes")
                        if isinstance(positions, list) and not all(map(_is_int, positions)):
                            self.add(f"{index_where}.indexes", "must be a list of whole "
                                     "numbers")
                        value = index.get("value")
                        if isinstance(value, dict):
                            stack.append(([value], f"{index_where}.value", _PROP_RULES, ()))

    # -- steps -----------------------------------------------------------------------------

    def steps(self, root: dict[str, Any]) -> None:
        # Iterative walk: a converted file may nest deeper than Python's recursion limit.
        ids: dict[int, str] = {}
        stack: list[tuple[Any, str, Any]] = [(root, "root", None)]
        while stack:
            step, where, before = stack.pop()
            if not isinstance(step, dict):
                self.step_name = None
                self.add(where, f"must be a step object, not {_type_name(step)}")
                continue
            self.step(step, where, before, ids)
            children = step.get("steps")
            if isinstance(children, list):
                for n in range(len(children) - 1, -1, -1):  # reversed: problems in file order
                    stack.append((children[n], f"{where}.steps[{n}]",
                                  children[n - 1] if n else None))

    def step(self, step: dict[str, Any], where: str, before: Any, ids: dict[int, str]) -> None:
        name = step.get("name")
        self.step_name = name if isinstance(name, str) and name else None
        if step.get("status") is None:
            self.add(f"{where}.status", "is missing")
        self.fields(step, where, _STEP_RULES)
        step_id = step.get("id")
        if type(step_id) is int:
            if step_id in ids:
                self.add(f"{where}.id", f"{step_id} is also the id of {ids[step_id]}; step "
                         "ids must be unique in a report")
            else:
                ids[step_id] = where
        kinds = _PAYLOAD_SET.intersection(step)
        if len(kinds) > 1:
            kinds = frozenset(kind for kind in kinds if step[kind] not in (None, []))
            if len(kinds) > 1:
                shown = " and ".join(kind for kind in PAYLOAD_KINDS if kind in kinds)
                self.add(where, f"has {shown}; a step carries one kind of result (plus an "
                         "optional chart or attachment)")
        for kind in kinds:
            payload = step[kind]
            if kind in _MEASUREMENT_RULES:
                self.measurements(payload, f"{where}.{kind}", kind)
            elif kind == "additionalResults":
                self.additional(payload, f"{where}.additionalResults")
            elif isinstance(payload, dict):
                self.fields(payload, f"{where}.{kind}", _PAYLOAD_RULES[kind])
        if "steps" in step and step["steps"] and step.get("seqCall") is None:
            self.add(f"{where}.steps", "are only allowed under a sequence call step (this "
                     "step has no 'seqCall')")
        chart = step.get("chart")  # rare fields from here on
        attachment = step.get("attachment")
        if chart is not None and attachment is not None:
            self.add(where, "has both a chart and an attachment; a step may carry only one")
        if isinstance(chart, dict):
            self.chart(chart, f"{where}.chart")
        if isinstance(attachment, dict):
            self.required(attachment, f"{where}.attachment", ("data",))
            self.fields(attachment, f"{where}.attachment", _ATTACHMENT_RULES)
        loop = step.get("loop")
        if isinstance(loop, dict):
            self.loop(loop, where, step, before)

    def measurements(self, items: Any, base: str, kind: str) -> None:
        if not isinstance(items, list):
            return  # the type problem is named by the field rules
        rules = _MEASUREMENT_RULES[kind]
        # Single (name null) and multiple (named) measurements must not be mixed, and the
        # names of a multiple-measurement step tell its measurements apart.
        names: dict[str, str] | None = {} if len(items) > 1 else None
        for n, item in enumerate(items):
            where = f"{base}[{n}]"
            if type(item) is not dict and not isinstance(item, dict):
                self.add(where, f"must be an object, not {_type_name(item)}")
                continue
            if self.lenient and kind != "booleanMeas":
                op = item.get("compOp")
                # The WATS client reads an operator it does not know as LOG (log only); the
                # server would refuse the report over it. Known ones keep their spelling.
                if type(op) is str and _operator(op)[0] is None:
                    item["compOp"] = LOG
            self.fields(item, where, rules)
            if names is not None:
                name = item.get("name")
                if name is None:
                    self.add(f"{where}.name", "is missing: a step with several measurements "
                             "needs a unique name for each")
                elif isinstance(name, str):
                    if name in names:
                        self.add(f"{where}.name", f"{_show(name)} is also the name of "
                                 f"{names[name]}; names must be unique within the step")
                    names.setdefault(name, where)
            op = item.get("compOp") if kind == "numericMeas" else None
            if type(op) is str:
                self.limits(item, where, op)

    def limits(self, item: dict[str, Any], where: str, op: str) -> None:
        """A numeric operator must be one and have the limits it compares with."""
        canonical, low, high = _operator(op)
        if canonical in STRING_OPERATORS and canonical != LOG:
            self.add(f"{where}.compOp", f"{op!r} compares strings; a numeric measurement uses "
                     "EQ, NE, GT, LT, GE, LE, GELE, ... or LOG")
            return
        # Single-limit operators compare with lowLimit, even LE and LT (formats.md §1.2).
        if low and item.get("lowLimit") is None:
            self.add(f"{where}.lowLimit", f"is missing: compOp {canonical} compares with "
                     "lowLimit")
        if high and item.get("highLimit") is None:
            self.add(f"{where}.highLimit", f"is missing: compOp {canonical} needs lowLimit "
                     "and highLimit")

    def chart(self, chart: dict[str, Any], base: str) -> None:
        self.required(chart, base, ("chartType",))
        self.fields(chart, base, _CHART_RULES)
        series = self.objects(chart.get("series"), f"{base}.series", _SERIES_RULES)
        if len(series) > CHART_MAX_SERIES:
            self.add(f"{base}.series", f"has {len(series)} series, the limit is "
                     f"{CHART_MAX_SERIES}")
        for where, item in series:
            xdata, ydata = item.get("xdata"), item.get("ydata")
            if isinstance(xdata, str) and isinstance(ydata, str) and xdata.strip() and (
                    _points(xdata) != _points(ydata)):
                self.add(where, f"has {_points(xdata)} x values but {_points(ydata)} y "
                         "values; each point needs both")

    def loop(self, loop: dict[str, Any], where: str, step: dict[str, Any], before: Any) -> None:
        self.fields(loop, f"{where}.loop", _LOOP_RULES)
        idx = loop.get("idx")
        summary = [key for key in ("num", "passed", "failed", "endingIndex")
                   if loop.get(key) is not None]
        if idx is None:
            return
        if summary:
            self.add(f"{where}.loop", f"has idx and {', '.join(summary)}; a loop summary step "
                     "has num/passed/failed/endingIndex, each iteration step only idx")
        elif _is_int(idx) and idx < 0:
            self.add(f"{where}.loop.idx", f"{idx} is negative")
        # An iteration follows its loop's summary step (or the previous iteration), and has
        # the same name.
        previous = before.get("loop") if isinstance(before, dict) else None
        if not isinstance(previous, dict) or before.get("name") != step.get("name"):
            self.add(f"{where}.loop", f"is iteration idx {idx}, but the step before it is not "
                     "the same loop (a summary step with loop num/passed/failed/endingIndex "
                     "and the same name must come first)")


def _quick_date(text: str) -> bool:
    """True for a valid date-time in the usual ISO-8601 forms; False means "ask
    parse_datetime", which also knows the lenient ones (and says what is wrong)."""
    if _QUICK_DATE_RE.fullmatch(text) is None:
        return False
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def _operator(text: str) -> tuple[str | None, bool, bool]:
    """(canonical operator, None if unknown; uses lowLimit; uses highLimit) for a compOp.

    Cached: a report repeats a handful of operator spellings thousands of times.
    """
    info = _OPERATORS.get(text)
    if info is None:
        canonical = parse_comp_op(text)
        known = canonical != LOG or text.strip().upper() == LOG
        low, high = limits_used(canonical)
        info = (canonical if known else None, low, high)
        if len(_OPERATORS) < 1024:  # bounded: the spellings come from files
            _OPERATORS[text] = info
    return info


def _describe(problem: tuple[str, str, str | None], report: dict[str, Any]) -> str:
    path, text, step_name = problem
    details = []
    if step_name:
        short = step_name if len(step_name) <= 40 else step_name[:40] + "..."
        details.append(f"step {short!r}")
    if isinstance(report, ReportDict):
        place = report.locate(path)
        if place:
            details.append(place)
    if len(path) > 200:  # a step nested hundreds deep: its ends say enough
        path = f"{path[:80]} ... {path[-100:]}"
    message = f"'{path}' {text}" if path else text
    return f"{message} ({', '.join(details)})" if details else message


def _join(base: str, key: str) -> str:
    return f"{base}.{key}" if base else key


def _points(data: str) -> int:
    return data.count(";") + 1 if data.strip() else 0


def _is_base64(data: str) -> bool:
    if len(data) % 4 == 0 and _BASE64_RE.fullmatch(data):
        return True
    # Line-wrapped base64 (MIME style) is accepted by the server: whitespace is ignored.
    compact = "".join(data.split())
    return len(compact) % 4 == 0 and _BASE64_RE.fullmatch(compact) is not None


def _aware(moment: datetime, zone: tzinfo | None) -> datetime:
    """`moment` with a zone: naive times are taken as local to `zone` (None: system local)."""
    if moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=zone) if zone is not None else moment.astimezone()


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)

"""The results of one ATML step for `ATMLConverter`: measurements, report text and the rest.

Owns sorting a step element's `tr:TestResult`s and `tr:Data` items into what WSJF keeps of
them: measurements (numeric, string, pass/fail, from TestStand's step types and from WATS'
multiple-measurement step types), report text, message popup answers, exit codes, the version
of a called sequence file, and additional results. Statuses are the file's: a measurement
without an outcome of its own takes its step's when that tells, else it is judged against its
limits by `report.operators`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from pywats_client.converters.atml_values import (
    Node,
    NumericLimits,
    array_values,
    datum_kind,
    datum_number,
    datum_text,
    datum_unit,
    is_true,
    items,
    node_outcome,
    numeric_comparison,
    numeric_limits,
    outcome_letter,
    range_limits,
    string_comparison,
    string_limit,
    value_of,
    whole,
)
from pywats_client.report.model import INT16
from pywats_client.report.operators import LOG, limits_used, numeric_status, string_status

MULTIPLE_STEP_TYPES = frozenset({"NI_MultipleNumericLimitTest", "ET_MNLT", "ET_MPFT", "ET_MSVT",
                                 "WATS_XYGMNLT"})
PASS_FAIL_STEP_TYPES = frozenset({"PassFailTest", "ET_PFT"})
# Names TestStand gives the one measurement of a single-measurement step.
SINGLE_NAMES = frozenset({"Numeric", "String", "PassFail"})
# Additional results written as report text are capped: they are context, not the record.
MAX_EXTRA_TEXT = 4000
MAX_ARRAY_VALUES = 100
MORE = "(more additional results in the file)"
_KINDS = {"number": "numericMeas", "string": "stringMeas", "boolean": "booleanMeas"}
_PROP_TYPES = {"number": "Number", "string": "String", "boolean": "Boolean"}
# (name, result element or None for a Data item, value element, value kind)
_Candidate = tuple[str, Node, Node, str]


@dataclass
class Content:
    """What the results and data of one step element hold, sorted by where it goes."""

    kind: str = ""  # numericMeas, stringMeas or booleanMeas when there are measurements
    measurements: list[dict[str, Any]] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    popup: dict[str, Any] = field(default_factory=dict)
    exit_code: float | None = None
    version: str | None = None
    extras: list[tuple[str, Node]] = field(default_factory=list)

    def report_text(self, with_extras: bool) -> str | None:
        """The file's report text, notes on values left out and, when `with_extras`, the
        additional results as "name: value" lines (for a step whose result is something
        else; they are then used up)."""
        texts = [text for text in self.texts if text]
        if with_extras and self.extras:
            lines: list[str] = []
            budget = [MAX_EXTRA_TEXT]
            for name, value in self.extras:
                _flatten(name, value, lines, budget)
            texts.extend(lines)
            self.extras = []
        return "\n".join(texts) if texts else None

    def additional_results(self) -> list[dict[str, Any]]:
        """The additional results as WSJF additional data, one entry per result."""
        return [{"name": name, "props": [_prop(name, value)]} for name, value in self.extras]


def read_content(path: object, node: Node, step_type: str, status: str,
                 seq_like: bool) -> Content:
    """Sort the results of step element `node` (of TestStand type `step_type`, status
    `status`; `seq_like` for a sequence call)."""
    return _Reader(path, step_type, status).read(node, seq_like)


class _Reader:
    def __init__(self, path: object, step_type: str, status: str) -> None:
        self.path = path
        self.step_type = step_type
        self.status = status
        self.content = Content()

    def read(self, node: Node, seq_like: bool) -> Content:
        content = self.content
        popup = "MessagePopup" in self.step_type
        call_exe = "CallExecutable" in self.step_type
        candidates: list[_Candidate] = []
        limits_collection: Node | None = None
        wats_multi: Node | None = None
        results = [(r.get("name") or r.get("ID") or "", r, value_of(r.child("TestData")))
                   for r in node.all("TestResult")]
        data = [(name, None, value) for name, value in items(node.path("Data", "Collection"))]
        for name, result, datum in [*results, *data]:
            if datum is None:
                continue
            kind = datum_kind(datum)
            scalar = kind not in ("collection", "array")
            if name == "ReportText" and scalar:
                content.texts.append(datum_text(datum))
            elif name == "SeqFileVersion" and seq_like and kind == "string":
                content.version = datum_text(datum)
            elif popup and name in ("ButtonHit", "Response") and scalar:
                self.popup(name, datum)
            elif call_exe and name == "ExitCode" and kind == "number":
                value = datum_number(self.path, datum)
                if math.isfinite(value):
                    content.exit_code = value
            elif result is not None and name == "Measurement" and kind == "collection" and (
                    _is_wats_multi(datum)):
                wats_multi = datum
            elif result is not None and name == "Limits" and kind == "collection" and (
                    limits_collection is None):
                limits_collection = datum
            elif result is not None and scalar and (
                    result.child("TestLimits") is not None or result.child("Outcome") is not None
                    or name in SINGLE_NAMES):
                candidates.append((name, result, datum, kind))
            else:
                content.extras.append((name, datum))
        if wats_multi is not None:
            self.wats_measurements(wats_multi)
        if content.kind:  # one kind of result per step: other measurements stay as extras
            content.extras.extend((name, datum) for name, _, datum, _ in candidates)
        elif candidates and self.measurements(candidates, limits_collection):
            limits_collection = None  # taken as the limits of the measurement
        if limits_collection is not None:
            content.extras.append(("Limits", limits_collection))
        if not content.kind and self.step_type in PASS_FAIL_STEP_TYPES and (
                self.status in ("P", "F")):
            # A pass/fail step reports its verdict only as its outcome.
            content.kind, content.measurements = "booleanMeas", [{"status": self.status}]
        return content

    def popup(self, name: str, datum: Node) -> None:
        if name == "Response":
            self.content.popup["response"] = datum_text(datum)
            return
        button = whole(datum_text(datum))
        if button is not None and INT16[0] <= button <= INT16[1]:
            self.content.popup["button"] = button

    def measurements(self, candidates: list[_Candidate], limits_collection: Node | None) -> bool:
        """Fill in the measurements; True when `limits_collection` gave their limits.

        One kind per step (WSJF's rule): the first measurement's; results of another kind
        stay additional results.
        """
        kind = candidates[0][3]
        chosen = [c for c in candidates if c[3] == kind]
        self.content.extras.extend((name, datum) for name, _, datum, k in candidates
                                   if k != kind)
        single = len(chosen) == 1
        used = False
        for name, result, datum, _ in chosen:
            own = node_outcome(result)
            if kind == "number":
                limits = None
                if single and limits_collection is not None and (
                        result.child("TestLimits") is None):
                    # WATS' ET_NLT writes its limits as a "Limits" result, without the
                    # comparison type: GELE is TestStand's default and fits every sample.
                    fields = {n.lower(): v for n, v in items(limits_collection)}
                    limits = range_limits(_field_number(self.path, fields, "low"),
                                          _field_number(self.path, fields, "high"))
                    used = True
                measurement = self.numeric(name, datum, own, single,
                                           limits or numeric_limits(self.path, result))
            elif kind == "string":
                op, limit = string_limit(result)
                measurement = self.string(name, datum_text(datum), op, limit, own, single)
            else:
                verdict = "P" if is_true(datum_text(datum)) else "F"
                measurement = {"name": name, "status": _status(own, self.status, single,
                                                               verdict)}
            self.content.measurements.append(measurement)
        self.content.kind = _KINDS[kind]
        _name_measurements(self.content.measurements, self.step_type)
        return used

    def numeric(self, name: str, datum: Node, own: str | None, single: bool,
                limits: NumericLimits) -> dict[str, Any]:
        value = datum_number(self.path, datum)
        verdict = numeric_status(limits.op, value, limits.low, limits.high)
        measurement: dict[str, Any] = {"compOp": limits.op, "name": name,
                                       "status": _status(own, self.status, single, verdict)}
        unit = datum_unit(datum)
        if unit:
            measurement["unit"] = unit
        if math.isfinite(value):
            measurement["value"] = value
        else:
            self.content.texts.append(
                f"{name or 'Numeric'}: the measured value {datum_text(datum).strip()} is not a "
                "finite number, which WATS cannot store; the value is left out.")
        if limits.low is not None:
            measurement["lowLimit"] = limits.low
        if limits.high is not None:
            measurement["highLimit"] = limits.high
        return measurement

    def string(self, name: str, value: str, op: str, limit: str | None, own: str | None,
               single: bool) -> dict[str, Any]:
        measurement: dict[str, Any] = {"compOp": op, "name": name, "value": value}
        if limit is not None:
            measurement["limit"] = limit
        measurement["status"] = _status(own, self.status, single,
                                        string_status(op, value, limit))
        return measurement

    def wats_measurements(self, collection: Node) -> None:
        """WATS' multiple-measurement step types write their measurements as one collection
        "Measurement" of entries with MeasName, Status, Comp and the data."""
        found: list[tuple[str, dict[str, Any]]] = []
        for _, entry in items(collection):
            if entry.tag != "Collection":
                continue
            fields = {name.lower(): value for name, value in items(entry)}
            name = _field_text(fields, "measname", "name") or ""
            word = _field_text(fields, "status")
            own = outcome_letter(word) if word else None
            comp = _field_text(fields, "comp", "compoperator", "comparison")
            if "passfail" in fields:
                verdict = "P" if is_true(datum_text(fields["passfail"])) else "F"
                found.append(("booleanMeas", {"name": name, "status": _status(
                    own, self.status, False, verdict)}))
            elif "stringdata" in fields:
                limit = _field_text(fields, "stringlimit", "limit")
                found.append(("stringMeas", self.string(
                    name, datum_text(fields["stringdata"]), string_comparison(comp), limit, own,
                    False)))
            else:
                datum = next((fields[k] for k in ("numericdata", "numeric", "data", "value")
                              if k in fields and datum_kind(fields[k]) == "number"), None)
                if datum is None:
                    continue
                op = numeric_comparison(comp)
                low = _field_number(self.path, fields, "lowlimit", "low")
                high = _field_number(self.path, fields, "highlimit", "high")
                uses_low, uses_high = limits_used(op)
                if (uses_low and low is None) or (uses_high and high is None):
                    op, uses_low, uses_high = LOG, False, False
                measurement = self.numeric(name, datum, own, False, NumericLimits(
                    op, low if uses_low else None, high if uses_high else None))
                unit = _field_text(fields, "units", "unit")
                if unit:
                    measurement["unit"] = unit
                found.append(("numericMeas", measurement))
        if found:
            kind = found[0][0]
            self.content.kind = kind
            self.content.measurements = [m for k, m in found if k == kind]
            _name_measurements(self.content.measurements, self.step_type)


def _status(own: str | None, step_status: str, single: bool, verdict: str) -> str:
    """A measurement's status: its own outcome; else its step's when that tells (a passed or
    done step passed every measurement, a skipped step skipped them, a failed step with one
    measurement failed it); else `verdict`, the value judged against its limits."""
    if own is not None:
        if own in ("P", "F", "S"):
            return own
        return "P" if own == "D" else verdict
    if step_status in ("P", "D"):
        return "P"
    if step_status == "S":
        return "S"
    if step_status == "F" and single:
        return "F"
    return verdict


def _name_measurements(measurements: list[dict[str, Any]], step_type: str) -> None:
    """Single-measurement steps have no measurement name; in a step with several, each name
    is unique (TestStand allows repeats; a repeat gets its position appended)."""
    if len(measurements) == 1 and step_type not in MULTIPLE_STEP_TYPES:
        measurements[0].pop("name", None)
        return
    seen: set[str] = set()
    for n, measurement in enumerate(measurements):
        name = measurement.get("name") or f"Measurement {n}"
        while name in seen:
            name = f"{name} [{n}]"
        seen.add(name)
        measurement["name"] = name


def _is_wats_multi(collection: Node) -> bool:
    return any(value.tag == "Collection" and any(
        name.lower() == "measname" for name, _ in items(value)) for _, value in items(collection))


def _field_text(fields: dict[str, Node], *names: str) -> str | None:
    for name in names:
        datum = fields.get(name)
        if datum is not None and datum_kind(datum) not in ("collection", "array"):
            return datum_text(datum)
    return None


def _field_number(path: object, fields: dict[str, Node], *names: str) -> float | None:
    for name in names:
        datum = fields.get(name)
        if datum is not None and datum_kind(datum) == "number":
            value = datum_number(path, datum)
            return value if math.isfinite(value) else None
    return None


# -- additional results -------------------------------------------------------------------------


def _flatten(name: str, value: Node, lines: list[str], budget: list[int]) -> None:
    """Append "name: value" lines for an additional result; collections nest as a.b.c."""
    stack: list[tuple[str, Node]] = [(name, value)]
    while stack and budget[0] > 0:
        label, node = stack.pop()
        kind = datum_kind(node)
        if kind == "collection":
            stack.extend(reversed([(f"{label}.{n}", v) for n, v in items(node)]))
            continue
        if kind == "array":
            values = [v for _, v in array_values(node)]
            shown = "; ".join(values[:MAX_ARRAY_VALUES])
            text = f"{label}: [{shown}{'; ...' if len(values) > MAX_ARRAY_VALUES else ''}]"
        else:
            text = f"{label}: {datum_text(node)}"
        if len(text) > budget[0]:
            text = text[: budget[0]] + "..."
        budget[0] -= len(text) + 1
        lines.append(text)
    if (stack or budget[0] <= 0) and lines and lines[-1] != MORE:
        lines.append(MORE)


def _prop(name: str, value: Node) -> dict[str, Any]:
    """An additional result as a WSJF property (TestStand's Number/String/Boolean/Obj/Array)."""
    root: dict[str, Any] = {}
    stack: list[tuple[dict[str, Any], str, Node]] = [(root, name, value)]
    while stack:  # a stack, not recursion: collections nest as deep as the file likes
        out, label, node = stack.pop()
        out["name"] = label
        kind = datum_kind(node)
        if kind == "collection":
            out["type"] = "Obj"
            out["props"] = []
            for item_name, item in items(node):
                child: dict[str, Any] = {}
                out["props"].append(child)
                stack.append((child, item_name, item))
        elif kind == "array":
            out["type"] = "Array"
            element_type = _array_type(node)
            dimensions = node.get("dimensions") or "[]"
            out["array"] = {
                "dimension": max(1, dimensions.count(",") + 1),
                "type": element_type,
                "indexes": [{"text": position,
                             "indexes": [int(n) for n in re.findall(r"-?\d{1,9}", position)[:8]],
                             "value": {"type": element_type, "value": text}}
                            for position, text in array_values(node)],
            }
        else:
            out["type"] = _PROP_TYPES[kind]
            out["value"] = datum_text(node)
    return root


def _array_type(array: Node) -> str:
    xsi_type = (array.get("type") or "").rpartition(":")[2].lower()
    if "bool" in xsi_type:
        return "Boolean"
    return "String" if "string" in xsi_type else "Number"

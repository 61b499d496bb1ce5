"""Reading ATML values for `ATMLConverter`: the element tree, datums, outcomes and limits.

Owns `AtmlNode` (one element, as `xmlsafe` reads it), the reading of `c:Datum` values (numbers
in decimal or hex, `inf`/`nan`, booleans, strings), the mapping of ATML outcomes to WSJF
status letters, and the translation of `tr:TestLimits` (LimitPair, SingleLimit, Expected,
TestStand's raw limits and threshold, "log only") into a WSJF comparison operator with its
limits. Comparing a value with its limits is left to `report.operators`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo

from pywats_client.converters.builtin import local_time
from pywats_client.converters.xmlsafe import XmlNode
from pywats_client.errors import ConversionError
from pywats_client.report.model import parse_datetime
from pywats_client.report.operators import LOG, NUMERIC_OPERATORS, parse_comp_op


class AtmlNode(XmlNode):
    """An ATML element (see `XmlNode`); its place names it by the one attribute that tells an
    operator which it is: '<Test name="Video Test"> at line 43'."""

    __slots__ = ()
    IDENTIFYING = ("name", "ID", "callerName", "value", "comparator", "uuid")
    SHOWN = 1
    CUT = 50


# The element type the ATML modules read (an `AtmlNode` when `ATMLConverter` parsed it).
Node = XmlNode


def fail(path: object, node: Node, message: str) -> ConversionError:
    return ConversionError(f"{path}: {node.place()}: {message}")


def prop(node: Node | None, name: str) -> str | None:
    """A TestStand property written either way: as `name="..."` attribute, or as a child
    element `<ts:Name value="..."/>` (or with the value as its text)."""
    if node is None:
        return None
    value = node.get(name)
    if value is not None:
        return value
    lower = name.lower()
    element = next((c for c in node.children if c.tag.lower() == lower), None)
    if element is None:
        return None
    value = element.get("value")
    return value if value is not None else element.text.strip()


def properties(node: Node | None) -> dict[str, str]:
    """All TestStand properties of an element such as `ts:TSStepProperties` at once, by
    lower-case name: its attributes, then its child elements' `value` (or text)."""
    if node is None:
        return {}
    found = {name.lower(): value for name, value in node.attrib.items()}
    for element in node.children:
        value = element.get("value")
        found.setdefault(element.tag.lower(), value if value is not None else element.text.strip())
    return found


def is_true(text: str | None) -> bool:
    return text is not None and text.strip().lower() in ("true", "1", "yes")


def moment(path: object, node: Node, attr: str, zone: tzinfo | None) -> datetime | None:
    """The date-time in attribute `attr` (e.g. startDateTime), with a zone; None if absent."""
    text = node.get(attr)
    if text is None or not text.strip():
        return None
    try:
        # ATML times are the local time of the station that wrote the file.
        value = local_time(parse_datetime(text), zone)
        value.astimezone(timezone.utc)  # the UTC time is stored too: it must exist
    except (ValueError, OverflowError) as exc:
        raise fail(path, node, f"{attr}: {text!r} is not a usable date-time ({exc})") from None
    return value


# -- numbers ------------------------------------------------------------------------------------

_HEX = re.compile(r"\s*([+-]?)0[xX]([0-9a-fA-F]{1,32})\s*")
_DECIMAL = re.compile(r"\s*[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,4})?\s*")
# What C runtimes and TestStand write for the values a double can hold but JSON cannot.
_SPECIAL = {
    "nan": math.nan, "+nan": math.nan, "-nan": math.nan, "ind": math.nan, "-ind": math.nan,
    "inf": math.inf, "+inf": math.inf, "infinity": math.inf, "+infinity": math.inf,
    "-inf": -math.inf, "-infinity": -math.inf,
    "1.#inf": math.inf, "+1.#inf": math.inf, "-1.#inf": -math.inf, "1.#qnan": math.nan,
    "-1.#qnan": math.nan, "1.#ind": math.nan, "-1.#ind": math.nan,
}


def number(text: str) -> float:
    """A number as TestStand writes it: decimal, hex ("0x1F"), or inf/nan in any spelling.

    Raises ValueError for anything else; the result may be NaN or infinite.
    """
    if _DECIMAL.fullmatch(text):
        return float(text)
    match = _HEX.fullmatch(text)
    if match:
        magnitude = float(int(match.group(2), 16))
        return -magnitude if match.group(1) == "-" else magnitude
    special = _SPECIAL.get(text.strip().lower())
    if special is None:
        raise ValueError(f"{text!r} is not a number")
    return special


def finite(text: str | None) -> float | None:
    """A finite number from a property value (see `number`); None when absent or not one."""
    if text is None or not text.strip():
        return None
    try:
        value = number(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def whole(text: str | None) -> int | None:
    """A whole number from a property value ("3", "3.0", "0x3"); None when absent or not whole."""
    value = finite(text)
    return int(value) if value is not None and value.is_integer() else None


# -- datums -------------------------------------------------------------------------------------

DATUM_TAGS = ("Datum", "Collection", "IndexedArray")
_NUMERIC_TYPES = ("double", "float", "int", "long", "short", "byte", "decimal", "number",
                  "unsigned", "real")


def datum_kind(datum: Node) -> str:
    """"number", "boolean", "string", "collection" or "array" for a value element."""
    if datum.tag == "Collection":
        return "collection"
    if datum.tag == "IndexedArray":
        return "array"
    xsi_type = (datum.get("type") or "").rpartition(":")[2].lower()
    if "bool" in xsi_type:
        return "boolean"
    if "string" in xsi_type or "char" in xsi_type:
        return "string"
    if any(word in xsi_type for word in _NUMERIC_TYPES):
        return "number"
    return "number" if datum.get("value") is not None and datum.child("Value") is None else (
        "string")


def datum_text(datum: Node) -> str:
    """The value of a scalar datum as written: its `value` attribute, else its `c:Value` text."""
    value = datum.get("value")
    if value is not None:
        return value
    element = datum.child("Value")
    return element.text if element is not None else datum.text.strip()


def datum_unit(datum: Node) -> str | None:
    """The unit of a datum: `nonStandardUnit`, else `standardUnit` with its `unitQualifier`
    (a prefix such as "m" for milli)."""
    unit = datum.get("nonStandardUnit")
    if unit:
        return unit
    unit = datum.get("standardUnit")
    if unit:
        return (datum.get("unitQualifier") or "") + unit
    return None


def datum_number(path: object, datum: Node) -> float:
    """The number in a datum (may be NaN or infinite); ConversionError naming the element."""
    text = datum_text(datum)
    if datum_kind(datum) == "boolean":
        return 1.0 if is_true(text) else 0.0
    try:
        return number(text)
    except ValueError:
        raise fail(path, datum, f"value {text[:40]!r} is not a number") from None


def value_of(node: Node | None) -> Node | None:
    """The value element (Datum, Collection or IndexedArray) inside `node`."""
    if node is None:
        return None
    return next((c for c in node.children if c.tag in DATUM_TAGS), None)


def items(collection: Node | None) -> Iterator[tuple[str, Node]]:
    """(name, value element) for each `c:Item` of a `c:Collection`."""
    if collection is None:
        return
    for item in collection.all("Item"):
        value = value_of(item)
        if value is not None:
            yield item.get("name") or "", value


def array_values(array: Node) -> Iterator[tuple[str, str]]:
    """(position such as "[0,1]", value text) for each element of a `c:IndexedArray`."""
    for element in array.children:
        if element.tag != "Element":
            continue
        value = element.get("value")
        if value is None:
            inner = element.child("Value") or value_of(element)
            value = datum_text(inner) if inner is not None else element.text.strip()
        yield element.get("position") or "", value


# -- outcomes -----------------------------------------------------------------------------------

_OUTCOMES = {
    "passed": "P", "failed": "F", "done": "D", "skipped": "S", "notstarted": "S", "error": "E",
    "terminated": "T", "aborted": "T",
    # No verdict: D ("ran, nothing to judge") is the honest nearest letter WSJF has.
    "unknown": "D", "running": "D", "userdefined": "D",
}


def outcome_letter(value: str | None, qualifier: str | None = None) -> str:
    """The WSJF status letter for an ATML outcome.

    TestStand writes a status ATML has no word for as `Aborted` (ATML 2.02) or `UserDefined`
    (5.00, 6.01) with the TestStand status as qualifier: "Skipped", "Done", "Error", ... or a
    custom word set by the sequence; an unknown qualifier is Done. Unknown outcomes are Done.
    """
    word = (value or "").strip().lower()
    if word in ("aborted", "userdefined") and qualifier and qualifier.strip():
        return _OUTCOMES.get(qualifier.strip().lower().replace(" ", ""), "D")
    return _OUTCOMES.get(word, "D")


def node_outcome(node: Node) -> str | None:
    """The status letter of a step or result element from its Outcome/ActionOutcome child."""
    outcome = node.child("Outcome") or node.child("ActionOutcome")
    if outcome is None:
        return None
    return outcome_letter(outcome.get("value"), outcome.get("qualifier"))


# -- limits -------------------------------------------------------------------------------------


@dataclass
class NumericLimits:
    """A WSJF comparison: operator and the limits it uses (None when not used)."""

    op: str = LOG
    low: float | None = None
    high: float | None = None


def numeric_limits(path: object, result: Node) -> NumericLimits:
    """The comparison of one numeric `tr:TestResult`.

    `c:LimitPair` gives a two-limit operator from its comparators (the greater-than side is
    the low limit of an AND pair, the less-than side of an OR pair: GE+LE = GELE, LT+GT OR =
    LTGT); `c:SingleLimit` and numeric `c:Expected` compare with the low limit. TestStand's
    "equal within threshold" writes the raw threshold in the pair; the absolute limits are
    computed from `ts:RawLimits` Nominal/Low/High and `ts:ThresholdType`. "Log only" results
    and results without limits are LOG.
    """
    limits = result.path("TestLimits", "Limits")
    # ATML 2.02 writes TestStand's limit properties beside the limits, 5.00 and 6.01 inside.
    ts_props = result.path("Extension", "TSLimitProperties") or (
        limits.path("Extension", "TSLimitProperties") if limits is not None else None)
    if limits is None or is_true(prop(ts_props, "IsComparisonTypeLog")):
        return NumericLimits()
    pair = limits.child("LimitPair")
    if pair is not None:
        sides = [(c.get("comparator") or "").strip().upper() for c in pair.all("Limit")]
        datums = [value_of(c) for c in pair.all("Limit")]
        if len(sides) != 2 or None in datums:
            raise fail(path, pair, "a LimitPair needs two Limit elements, each with a Datum")
        values = [datum_number(path, d) for d in datums if d is not None]
        either = (pair.get("operator") or "AND").strip().upper() == "OR"
        # AND pairs keep the value inside (low side is GE/GT), OR pairs outside (LE/LT).
        low_side = "L" if either else "G"
        if sides[0][:1] != low_side and sides[1][:1] == low_side:
            sides.reverse()
            values.reverse()
        threshold = _threshold(path, ts_props)
        if threshold is not None:
            values = list(threshold)
        return _reduce(sides[0] + sides[1], values[0], values[1])
    for tag in ("SingleLimit", "Expected"):
        single = limits.child(tag)
        if single is not None:
            datum = value_of(single)
            if datum is None:
                raise fail(path, single, "has no Datum with the limit")
            op = (single.get("comparator") or "").strip().upper()
            return _reduce(op, datum_number(path, datum), None)
    return NumericLimits()


def _threshold(path: object, ts_props: Node | None) -> tuple[float, float] | None:
    """(low, high) of a nominal±threshold limit, or None when the limit is not one."""
    kind = (prop(ts_props, "ThresholdType") or "").strip().lower()
    raw = ts_props.child("RawLimits") if ts_props is not None else None
    if not kind or raw is None:
        return None
    values: dict[str, float] = {}
    for name in ("Nominal", "Low", "High"):
        element = raw.child(name)
        if element is None:
            return None
        values[name] = datum_number(path, element)
    nominal, low, high = values["Nominal"], values["Low"], values["High"]
    if kind == "delta":
        return nominal - low, nominal + high
    scale = {"percentage": 100.0, "percent": 100.0, "ppm": 1e6}.get(kind)
    if scale is None:
        return None  # a kind TestStand does not write: the pair's own limits stand
    return nominal - abs(nominal) * low / scale, nominal + abs(nominal) * high / scale


def _reduce(op: str, low: float, high: float | None) -> NumericLimits:
    """The operator with its limits, made storable: WATS keeps only finite limits, so a range
    open on one side (-inf or +inf) becomes the single-limit test of its other side, and an
    impossible or unknown comparison is logged only."""
    if op not in NUMERIC_OPERATORS or op == LOG:
        return NumericLimits()
    if high is None:
        if len(op) != 2 or not math.isfinite(low):
            return NumericLimits()
        return NumericLimits(op, low)
    if len(op) != 4:
        return NumericLimits()
    if math.isfinite(low) and math.isfinite(high):
        return NumericLimits(op, low, high)
    # Inside (GE..LE) or outside (LT..GT) a range with an infinite end: that end's test is
    # always true (inside) or never true (outside) for finite values, so the other side
    # alone decides.
    if low == -math.inf and math.isfinite(high):
        return NumericLimits(op[2:], high)
    if high == math.inf and math.isfinite(low):
        return NumericLimits(op[:2], low)
    return NumericLimits()


def string_limit(result: Node) -> tuple[str, str | None]:
    """(compOp, limit) of a string `tr:TestResult`: `c:Expected` EQ is CASESENSIT, CIEQ is
    IGNORECASE; other comparisons (not equal, regular expressions) have no WSJF operator and
    are logged with their limit text kept."""
    limits = result.path("TestLimits", "Limits")
    expected = limits.child("Expected") if limits is not None else None
    if expected is None:
        return LOG, None
    datum = value_of(expected)
    limit = datum_text(datum) if datum is not None else None
    op = (expected.get("comparator") or "").strip().upper()
    return {"EQ": "CASESENSIT", "CIEQ": "IGNORECASE"}.get(op, LOG), limit


_STRING_COMPARISONS = {
    "equal": "CASESENSIT", "eq": "CASESENSIT", "casesensitive": "CASESENSIT",
    "casesensit": "CASESENSIT", "ignorecase": "IGNORECASE", "cieq": "IGNORECASE",
}


def string_comparison(word: str | None) -> str:
    """The operator for a comparison written as a word (WATS step types: "Equal", "LOG")."""
    key = (word or "").strip().lower().replace(" ", "")
    return _STRING_COMPARISONS.get(key) or parse_comp_op(word)


def numeric_comparison(word: str | None) -> str:
    """The operator for a numeric comparison written as a word ("GELE", "Equal", "LOG")."""
    key = (word or "").strip().lower()
    return "EQ" if key == "equal" else parse_comp_op(word)


def split_sequence(name: str) -> tuple[str, str]:
    """(sequence file path, sequence name) from TestStand's "<path>#<sequence>". Without
    "#" the text is a file path when it looks like one, else neither (a step name)."""
    path, hash_, sequence = name.rpartition("#")
    if hash_:
        return path, sequence
    looks_like_path = name.lower().endswith(".seq") or "\\" in name or "/" in name
    return (name, "") if looks_like_path else ("", "")


def range_limits(low: float | None, high: float | None) -> NumericLimits:
    """GELE between `low` and `high` when both are known, finite and ordered; else LOG."""
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        return NumericLimits()
    return NumericLimits("GELE", low, high) if low <= high else NumericLimits()

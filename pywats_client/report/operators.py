"""Comparison operators and limit checks, implemented once for every converter.

WATS stores a comparison operator (`compOp`) with each numeric and string measurement. A
converter that computes statuses (WSTF in Active mode, equipment logs) asks this module whether
a value passes; nothing else in the package compares values with limits.

Rules (formats.md §1.2): operators are parsed case-insensitively and an unknown one is `LOG`;
the single-limit operators EQ NE GT LT GE LE compare with `lowLimit` only — even LE and LT;
the two-limit operators name the low side first (GELT: low <= value < high); LEGE LEGT LTGE
LTGT pass *outside* the range. A leaf module: it imports only `errors`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from pywats_client.errors import ReportValidationError

LOG = "LOG"

_SINGLE: dict[str, Callable[[float, float], bool]] = {
    "EQ": lambda v, lo: v == lo,
    "NE": lambda v, lo: v != lo,
    "GT": lambda v, lo: v > lo,
    "LT": lambda v, lo: v < lo,
    "GE": lambda v, lo: v >= lo,
    "LE": lambda v, lo: v <= lo,
}

_RANGE: dict[str, Callable[[float, float, float], bool]] = {
    # inside the range; the first two letters are the low side
    "GELE": lambda v, lo, hi: lo <= v <= hi,
    "GELT": lambda v, lo, hi: lo <= v < hi,
    "GTLE": lambda v, lo, hi: lo < v <= hi,
    "GTLT": lambda v, lo, hi: lo < v < hi,
    # outside the range
    "LEGE": lambda v, lo, hi: v <= lo or v >= hi,
    "LEGT": lambda v, lo, hi: v <= lo or v > hi,
    "LTGE": lambda v, lo, hi: v < lo or v >= hi,
    "LTGT": lambda v, lo, hi: v < lo or v > hi,
}

# In the order of WATS' CompOperatorType enum (EQ=0 ... LOG=14, CASESENSIT, IGNORECASE).
NUMERIC_OPERATORS = ("EQ", "NE", "GT", "LT", "GE", "LE", "GTLT", "GELE", "GELT", "GTLE",
                     "LTGT", "LEGE", "LEGT", "LTGE", LOG)
STRING_OPERATORS = ("CASESENSIT", "IGNORECASE", LOG)
ALL_OPERATORS = (*NUMERIC_OPERATORS, "CASESENSIT", "IGNORECASE")


def parse_comp_op(text: object) -> str:
    """The canonical operator for `text` ("gele", "IgnoreCase", ...); unknown or empty -> LOG."""
    if not isinstance(text, str):
        return LOG
    op = text.strip().upper()
    return op if op in ALL_OPERATORS else LOG


def limits_used(op: str) -> tuple[bool, bool]:
    """(uses lowLimit, uses highLimit) for a numeric operator."""
    op = parse_comp_op(op)
    if op in _RANGE:
        return True, True
    return op in _SINGLE, False


def numeric_passes(op: str, value: float, low: float | None = None,
                   high: float | None = None) -> bool:
    """True if `value` passes `op` against the limits. NaN fails every comparison except LOG.

    Raises ReportValidationError when the operator needs a limit that is missing.
    """
    op = parse_comp_op(op)
    if op == LOG or op in STRING_OPERATORS:
        return True
    if op in _SINGLE:
        if low is None:
            raise ReportValidationError(f"compOp {op} compares with lowLimit, which is missing")
        return not math.isnan(value) and _SINGLE[op](value, low)
    if low is None or high is None:
        raise ReportValidationError(f"compOp {op} needs lowLimit and highLimit")
    return not math.isnan(value) and _RANGE[op](value, low, high)


def numeric_status(op: str, value: float, low: float | None = None,
                   high: float | None = None) -> str:
    """"P" or "F" for a numeric measurement."""
    return "P" if numeric_passes(op, value, low, high) else "F"


def string_passes(op: str, value: str, limit: str | None) -> bool:
    """CASESENSIT (and EQ, as string steps write it) compare for exact equality, NE for
    inequality, IGNORECASE for equality without case; LOG (and anything else) passes."""
    op = parse_comp_op(op)
    if op in ("CASESENSIT", "EQ"):
        return value == (limit or "")
    if op == "NE":
        return value != (limit or "")
    if op == "IGNORECASE":
        return value.casefold() == (limit or "").casefold()
    return True


def string_status(op: str, value: str, limit: str | None) -> str:
    """"P" or "F" for a string measurement."""
    return "P" if string_passes(op, value, limit) else "F"

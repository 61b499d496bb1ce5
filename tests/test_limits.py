"""Every comparison operator, pass and fail, from one table."""

from __future__ import annotations

import math

import pytest

from pywats_client.errors import ReportValidationError
from pywats_client.report.operators import (
    ALL_OPERATORS,
    limits_used,
    numeric_passes,
    numeric_status,
    parse_comp_op,
    string_status,
)

# (operator, value, low, high, passes)
NUMERIC = [
    ("EQ", 5, 5, None, True), ("EQ", 5.1, 5, None, False),
    ("NE", 4, 5, None, True), ("NE", 5, 5, None, False),
    ("GT", 6, 5, None, True), ("GT", 5, 5, None, False),
    ("LT", 4, 5, None, True), ("LT", 5, 5, None, False),
    ("GE", 5, 5, None, True), ("GE", 4.9, 5, None, False),
    # single-limit operators use lowLimit only, even LE and LT (a highLimit is ignored)
    ("LE", 500, 500, None, True), ("LE", 501, 500, None, False),
    ("LE", 500, 500, 100, True), ("LT", 499, 500, 1, True),
    ("GELE", 1, 1, 2, True), ("GELE", 2, 1, 2, True), ("GELE", 2.01, 1, 2, False),
    ("GELE", 0.99, 1, 2, False),
    ("GELT", 1, 1, 2, True), ("GELT", 2, 1, 2, False),
    ("GTLE", 2, 1, 2, True), ("GTLE", 1, 1, 2, False),
    ("GTLT", 1.5, 1, 2, True), ("GTLT", 1, 1, 2, False), ("GTLT", 2, 1, 2, False),
    # out-of-range operators pass outside [low, high]
    ("LTGT", 498, 499, 501, True), ("LTGT", 502, 499, 501, True),
    ("LTGT", 499, 499, 501, False), ("LTGT", 500, 499, 501, False),
    ("LEGE", 499, 499, 501, True), ("LEGE", 501, 499, 501, True),
    ("LEGE", 500, 499, 501, False),
    ("LEGT", 499, 499, 501, True), ("LEGT", 501, 499, 501, False),
    ("LEGT", 502, 499, 501, True),
    ("LTGE", 501, 499, 501, True), ("LTGE", 499, 499, 501, False),
    ("LTGE", 498, 499, 501, True),
    ("LOG", 1e9, None, None, True), ("LOG", math.nan, None, None, True),
]


@pytest.mark.parametrize(("op", "value", "low", "high", "passes"), NUMERIC)
def test_numeric_operator(op: str, value: float, low: float | None, high: float | None,
                          passes: bool) -> None:
    assert numeric_passes(op, value, low, high) is passes
    assert numeric_passes(op.lower(), value, low, high) is passes
    assert numeric_status(op, value, low, high) == ("P" if passes else "F")


def test_every_numeric_operator_is_in_the_table_with_a_pass_and_a_fail() -> None:
    ops = {row[0] for row in NUMERIC}
    assert ops == set(ALL_OPERATORS) - {"CASESENSIT", "IGNORECASE"}
    for op in ops - {"LOG"}:
        outcomes = {row[4] for row in NUMERIC if row[0] == op}
        assert outcomes == {True, False}, op


@pytest.mark.parametrize("op", ["GELE", "LTGT", "EQ", "LE"])
def test_nan_fails_every_real_comparison(op: str) -> None:
    assert numeric_passes(op, math.nan, 0, 1) is False


@pytest.mark.parametrize(("op", "low", "high"), [("GT", None, 3), ("GELE", 1, None),
                                                 ("LTGT", None, None)])
def test_a_missing_limit_is_a_validation_error(op: str, low: float | None,
                                               high: float | None) -> None:
    with pytest.raises(ReportValidationError, match=op):
        numeric_passes(op, 1.0, low, high)


@pytest.mark.parametrize(("op", "value", "limit", "status"), [
    ("CASESENSIT", "ABC", "ABC", "P"), ("CASESENSIT", "abc", "ABC", "F"),
    ("IGNORECASE", "abc", "ABC", "P"), ("IGNORECASE", "abd", "ABC", "F"),
    ("IgnoreCase", "Straße", "STRASSE", "P"),
    # EQ/NE on a string step: exact comparison (Virinco's WSTF example fails a case mismatch)
    ("EQ", "The quick", "the quick", "F"), ("EQ", "abc", "abc", "P"),
    ("NE", "abc", "abd", "P"), ("NE", "abc", "abc", "F"),
    ("LOG", "anything", "else", "P"), ("bogus", "a", "b", "P"),
])
def test_string_operator(op: str, value: str, limit: str, status: str) -> None:
    assert string_status(op, value, limit) == status


@pytest.mark.parametrize(("text", "op"), [
    ("gele", "GELE"), (" LtGt ", "LTGT"), ("IgnoreCase", "IGNORECASE"), ("casesensit",
    "CASESENSIT"), ("", "LOG"), (None, "LOG"), ("REGEX", "LOG"), ("between", "LOG"), (3, "LOG"),
])
def test_parse_comp_op(text: object, op: str) -> None:
    assert parse_comp_op(text) == op


def test_limits_used() -> None:
    assert limits_used("le") == (True, False)
    assert limits_used("LEGT") == (True, True)
    assert limits_used("LOG") == (False, False)

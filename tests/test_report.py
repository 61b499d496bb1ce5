"""Report identity, station defaults, validation, dates and the JSON written to the queue."""

from __future__ import annotations

import copy
import json
import re
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pywats_client.converters import ConverterContext
from pywats_client.errors import ConversionError, ReportValidationError
from pywats_client.report import (
    finalize,
    format_utc,
    parse_datetime,
    report_id_for,
    to_json_bytes,
    validate,
)

SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
CONTEXT = ConverterContext(station_name="ST-01", location="Line 3", purpose="Production")


def make_report(**changes: Any) -> dict[str, Any]:
    """A small valid test report; `changes` set (or, with None, remove) fields."""
    report: dict[str, Any] = {
        "type": "T",
        "id": "8f14e45f-ceea-467f-a0b6-1e9b3f2a1c2d",
        "pn": "PN-100",
        "sn": "SN001",
        "rev": "A",
        "processCode": 10,
        "result": "P",
        "machineName": "ST-01",
        "location": "Line 3",
        "purpose": "Production",
        "start": "2026-05-01T10:00:00+02:00",
        "root": {
            "id": 0, "group": "M", "stepType": "SequenceCall", "name": "MainSequence",
            "status": "P", "seqCall": {"path": "seq", "name": "MainSequence", "version": "1"},
            "steps": [
                {"id": 1, "group": "M", "stepType": "ET_NLT", "name": "Voltage", "status": "P",
                 "numericMeas": [{"compOp": "GELE", "name": None, "status": "P", "unit": "V",
                                  "value": 3.3, "lowLimit": 3.2, "highLimit": 3.4}]},
            ],
        },
    }
    for key, value in changes.items():
        if value is None:
            report.pop(key, None)
        else:
            report[key] = value
    return report


def step(report: dict[str, Any]) -> dict[str, Any]:
    first: dict[str, Any] = report["root"]["steps"][0]
    return first


def problem(report: dict[str, Any], source: str = "") -> str:
    with pytest.raises(ReportValidationError) as caught:
        validate(report, source=source)
    return str(caught.value)


# -- identity -----------------------------------------------------------------------------------


def test_report_id_is_a_stable_guid() -> None:
    first = report_id_for("WATSStandardJsonConverter", SHA, 0)
    assert first == report_id_for("WATSStandardJsonConverter", SHA, 0)
    assert first == report_id_for("WATSStandardJsonConverter", SHA.upper(), 0)
    assert str(uuid.UUID(first)) == first
    assert uuid.UUID(first).version == 5


def test_report_id_differs_per_content_converter_and_index() -> None:
    ids = {
        report_id_for("A", SHA, 0),
        report_id_for("B", SHA, 0),
        report_id_for("A", "0" * 64, 0),
        report_id_for("A", SHA, 1),
        report_id_for("A", SHA, 10),
        report_id_for("A1", SHA, 0),  # no ambiguity where the parts meet
    }
    assert len(ids) == 6


def test_report_id_is_fixed_across_releases() -> None:
    # Pinned: a changed id would duplicate every report re-converted after an upgrade.
    assert report_id_for("WATSStandardJsonConverter", SHA, 0) == str(
        uuid.uuid5(uuid.UUID("d89a8615-07ab-4dc9-9ab2-c9fc74cd7522"),
                   f"WATSStandardJsonConverter\x00{SHA}\x000")
    )


# -- finalize -----------------------------------------------------------------------------------


def finalize_one(report: dict[str, Any], context: ConverterContext = CONTEXT,
                 index: int = 0) -> dict[str, Any]:
    return finalize(report, context=context, converter_name="CsvExampleConverter",
                    content_sha256=SHA, index=index, source="/data/in/run.csv")


def test_finalize_fills_missing_defaults() -> None:
    report = make_report(id=None, machineName=None, location=None, purpose=None, start=None)
    context = ConverterContext(
        station_name="ST-01", location="Line 3", purpose="Production",
        timezone=timezone(timedelta(hours=2)),
        file_mtime=datetime(2026, 5, 1, 8, 30, tzinfo=timezone.utc).timestamp(),
    )
    out = finalize_one(report, context, index=2)
    assert out["id"] == report_id_for("CsvExampleConverter", SHA, 2)
    assert out["machineName"] == "ST-01"
    assert out["location"] == "Line 3"
    assert out["purpose"] == "Production"
    assert out["start"] == "2026-05-01T10:30:00+02:00"
    assert out["startUTC"] == "2026-05-01T08:30:00Z"
    assert "id" not in report and "start" not in report  # the input is not changed


def test_finalize_fills_empty_strings_too() -> None:
    out = finalize_one(make_report(id="", machineName=" ", location=""))
    assert out["machineName"] == "ST-01" and out["location"] == "Line 3"
    assert out["id"] == report_id_for("CsvExampleConverter", SHA, 0)


def test_finalize_never_overwrites_and_keeps_key_order() -> None:
    report = make_report(machineName="Tester-7", location="Lab", purpose="Debug",
                         startUTC="2026-05-01T08:00:00.Z")
    original = copy.deepcopy(report)
    out = finalize_one(report, ConverterContext(station_name="X", location="Y", purpose="Z",
                                                file_mtime=0.0))
    assert out == original
    assert list(out) == list(original)
    assert out is not report


def test_finalize_start_from_mtime_uses_the_system_zone_when_none_given() -> None:
    mtime = 1_777_777_777.25
    out = finalize_one(make_report(start=None), ConverterContext(station_name="S",
                                                                 file_mtime=mtime))
    start = parse_datetime(out["start"])
    assert start.tzinfo is not None  # an offset, never a naive time
    assert start.timestamp() == pytest.approx(mtime, abs=0.001)
    assert start.utcoffset() == datetime.fromtimestamp(mtime).astimezone().utcoffset()


def test_finalize_without_start_or_mtime_names_the_start() -> None:
    with pytest.raises(ReportValidationError, match=r"/data/in/run.csv: .*'start' is missing"):
        finalize_one(make_report(start=None), ConverterContext(station_name="S"))


def test_finalize_without_station_name_says_where_to_set_it() -> None:
    with pytest.raises(ReportValidationError,
                       match=r"'machineName' is empty \(set station_name in the config\)"):
        finalize_one(make_report(machineName=None), ConverterContext())


def test_finalize_location_and_purpose_may_stay_empty() -> None:
    out = finalize_one(make_report(location=None, purpose=None), ConverterContext(
        station_name="S"))
    assert out["location"] == "" and out["purpose"] == ""


def test_finalize_refuses_what_is_not_a_dict() -> None:
    with pytest.raises(ReportValidationError, match="returned list, expected a report"):
        finalize_one([make_report()])  # type: ignore[arg-type]


# -- validate: one test per rule ------------------------------------------------------------------


def test_valid_report_passes() -> None:
    validate(make_report())
    validate(make_report(type="R", uur={"user": "x", "processCode": 10}, root=None))


@pytest.mark.parametrize(
    "field",
    ["type", "id", "pn", "sn", "rev", "processCode", "result", "machineName", "location",
     "purpose", "start"],
)
def test_missing_required_field_is_named(field: str) -> None:
    assert f"'{field}' is missing" in problem(make_report(**{field: None}))


def test_null_required_field_counts_as_missing() -> None:
    report = make_report()
    report["sn"] = None
    assert "'sn' is missing" in problem(report)


def test_message_names_the_source_file_and_the_report() -> None:
    message = problem(make_report(pn=None), source="/data/in/run.csv")
    assert message.startswith("/data/in/run.csv: report sn 'SN001' is not valid WSJF: ")


def test_every_problem_is_listed() -> None:
    message = problem(make_report(pn=None, rev=None))
    assert "'pn' is missing" in message and "'rev' is missing" in message


@pytest.mark.parametrize("field", ["pn", "sn", "rev", "machineName", "location", "purpose"])
def test_string_field_of_wrong_type(field: str) -> None:
    assert f"'{field}' must be a string, not a number" in problem(make_report(**{field: 5}))


@pytest.mark.parametrize("field", ["pn", "sn"])
def test_empty_serial_or_part_number(field: str) -> None:
    assert f"'{field}' is empty" in problem(make_report(**{field: "  "}))


@pytest.mark.parametrize(
    ("field", "limit"),
    [("pn", 100), ("sn", 100), ("rev", 100), ("machineName", 100), ("location", 100),
     ("purpose", 100), ("processName", 100)],
)
def test_string_length_limits(field: str, limit: int) -> None:
    validate(make_report(**{field: "x" * limit}))
    message = problem(make_report(**{field: "x" * (limit + 1)}))
    assert f"'{field}' is {limit + 1} characters long, the limit is {limit}" in message


def test_step_name_length_limit() -> None:
    report = make_report()
    step(report)["name"] = "n" * 101
    message = problem(report)
    label = f"'root.steps[0]' ({'n' * 40!r}...)"
    assert f"{label}: 'name' is 101 characters long, the limit is 100" in message


def test_misc_info_and_sub_unit_limits() -> None:
    report = make_report(miscInfos=[{"description": "d" * 101, "text": "t"}],
                         subUnits=[{"partType": "p" * 51, "pn": "a", "sn": "b", "rev": "c"}])
    message = problem(report)
    assert "'miscInfos[0].description' is 101 characters long, the limit is 100" in message
    assert "'subUnits[0].partType' is 51 characters long, the limit is 50" in message


@pytest.mark.parametrize("code", ["10", 10.0, True, None])
def test_process_code_must_be_a_whole_number(code: Any) -> None:
    report = make_report()
    report["processCode"] = code
    expected = "is missing" if code is None else "must be a whole number"
    expected = f"'processCode' {expected}"
    assert expected in problem(report)


def test_process_code_is_int16() -> None:
    validate(make_report(processCode=32767))
    assert "'processCode' 40000 is out of range" in problem(make_report(processCode=40000))


def test_type_must_be_t_or_r() -> None:
    assert "'type' is 'X', expected 'T' (test) or 'R' (repair)" in problem(make_report(type="X"))


def test_test_report_needs_a_root() -> None:
    assert "a test report (type 'T') needs a 'root' step" in problem(make_report(root=None))


def test_root_must_be_a_sequence_call() -> None:
    report = make_report()
    del report["root"]["seqCall"]
    assert "'root' must be a sequence call step" in problem(report)


def test_repair_report_needs_uur() -> None:
    assert "a repair report (type 'R') needs a 'uur' object" in problem(make_report(type="R"))


@pytest.mark.parametrize("result", ["X", "PF", "p"])
def test_result_letter(result: str) -> None:
    assert f"'result' is {result!r}, expected one of P, F, E, T, D" in problem(
        make_report(result=result))


@pytest.mark.parametrize("result", list("PFETD"))
def test_every_result_letter_is_accepted(result: str) -> None:
    validate(make_report(result=result))


@pytest.mark.parametrize("bad_id", ["12345", "8f14e45f-ceea-467f-a0b6-1e9b3f2a1c2", "{x}"])
def test_id_must_be_a_guid(bad_id: str) -> None:
    assert f"'id' {bad_id!r} is not a GUID" in problem(make_report(id=bad_id))


@pytest.mark.parametrize("start", ["yesterday", "2026-13-01T10:00:00", "2026-05-01"])
def test_start_must_parse(start: str) -> None:
    assert "'start': " in problem(make_report(start=start))


def test_start_utc_must_parse_when_given() -> None:
    assert "'startUTC': " in problem(make_report(startUTC="soon"))


def test_steps_only_under_a_sequence_call() -> None:
    report = make_report()
    step(report)["steps"] = [{"id": 2, "status": "P"}]
    assert ("'root.steps[0]' ('Voltage'): has child 'steps' but no 'seqCall'"
            in problem(report))


@pytest.mark.parametrize("status", ["X", "", "Passed", 1])
def test_step_status_letter(status: Any) -> None:
    report = make_report()
    step(report)["status"] = status
    assert f"'status' is {status!r}, expected one of P, D, S, F, E, T" in problem(report)


def test_step_status_is_required() -> None:
    report = make_report()
    del step(report)["status"]
    assert "'root.steps[0]' ('Voltage'): 'status' is missing" in problem(report)


def test_step_id_must_be_an_int() -> None:
    report = make_report()
    step(report)["id"] = "1"
    assert "'id' must be a whole number, not '1'" in problem(report)


@pytest.mark.parametrize("key", ["numericMeas", "stringMeas", "booleanMeas"])
def test_measurements_must_be_a_list(key: str) -> None:
    report = make_report()
    step(report)[key] = {"status": "P"}
    assert f"'{key}' must be a list, not an object" in problem(report)


def test_measurement_status_letter() -> None:
    report = make_report()
    step(report)["numericMeas"][0]["status"] = "D"
    assert "'numericMeas'[0].status is 'D', expected one of P, F, S" in problem(report)


def test_steps_must_be_objects_in_a_list() -> None:
    report = make_report()
    report["root"]["steps"].append("oops")
    assert "'root.steps[1]' must be a step object, not a string" in problem(report)
    report["root"]["steps"] = {"a": 1}
    assert "'steps' must be a list, not an object" in problem(report)


def test_deep_step_tree_is_checked_without_recursion() -> None:
    report = make_report()
    node = report["root"]
    for n in range(5000):
        child = {"id": n + 10, "status": "P", "seqCall": {}, "steps": []}
        node["steps"] = [child]
        node = child
    node["status"] = "?"
    assert "'status' is '?'" in problem(report)


def test_not_a_dict() -> None:
    with pytest.raises(ReportValidationError, match="must be a JSON object, got list"):
        validate([])  # type: ignore[arg-type]


def test_validation_error_is_a_conversion_error() -> None:
    # The service treats a report that fails validation like a file that fails to convert.
    assert issubclass(ReportValidationError, ConversionError)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.sampled_from(["T", "R", "P", "X", "", "2026-05-01T10:00:00Z"]) | st.text(max_size=3),
    lambda children: st.lists(children, max_size=3),
    max_leaves=6,
)
report_keys = st.sampled_from(
    ["type", "id", "pn", "sn", "rev", "processCode", "result", "machineName", "location",
     "purpose", "start", "startUTC", "root", "uur", "uut", "miscInfos", "subUnits", "steps",
     "status", "seqCall", "numericMeas", "name", "processName"]
)
report_like = st.recursive(
    st.dictionaries(report_keys, json_values, max_size=8),
    lambda children: st.dictionaries(report_keys, children | st.lists(children, max_size=3),
                                     max_size=8),
    max_leaves=6,
)


@settings(max_examples=100, deadline=None)
@given(report_like)
def test_finalize_of_any_dict_raises_only_validation_errors(report: dict[str, Any]) -> None:
    try:
        out = finalize_one(report)
    except ReportValidationError:
        return
    validate(out)
    to_json_bytes(out)


# -- dates ----------------------------------------------------------------------------------------

UTC = timezone.utc


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2020-01-01T08:00:00Z", datetime(2020, 1, 1, 8, tzinfo=UTC)),
        ("2020-01-01T08:00:00.Z", datetime(2020, 1, 1, 8, tzinfo=UTC)),
        ("2020-01-01t08:00:00z", datetime(2020, 1, 1, 8, tzinfo=UTC)),
        ("2020-01-01T09:00:00+01:00", datetime(2020, 1, 1, 8, tzinfo=UTC)),
        ("2020-01-01T09:00:00+0100", datetime(2020, 1, 1, 8, tzinfo=UTC)),
        ("2020-01-01T09:00:00+01", datetime(2020, 1, 1, 8, tzinfo=UTC)),
        ("2020-01-01T03:30:00-04:30", datetime(2020, 1, 1, 8, tzinfo=UTC)),
        ("2019-09-12T14:26:16.977+02:00",
         datetime(2019, 9, 12, 12, 26, 16, 977000, tzinfo=UTC)),
        ("2024-02-29T10:49:36.9191064+00:00",
         datetime(2024, 2, 29, 10, 49, 36, 919106, tzinfo=UTC)),
        ("2025-12-21T22:01:45.472254Z", datetime(2025, 12, 21, 22, 1, 45, 472254, tzinfo=UTC)),
        ("2020-01-01 08:00:00.5Z", datetime(2020, 1, 1, 8, 0, 0, 500000, tzinfo=UTC)),
        ("2020-01-01T08:00Z", datetime(2020, 1, 1, 8, tzinfo=UTC)),
    ],
)
def test_parse_datetime_lenient_forms(text: str, expected: datetime) -> None:
    assert parse_datetime(text) == expected


def test_parse_datetime_naive_stays_naive() -> None:
    parsed = parse_datetime("2026-05-01T10:00:00.123")
    assert parsed == datetime(2026, 5, 1, 10, 0, 0, 123000) and parsed.tzinfo is None


@pytest.mark.parametrize(
    "text",
    ["", "2026-05-01", "01/05/2026 10:00", "2026-05-01T25:00:00", "2026-05-01T10:00:00+24:00",
     "2026-05-01T10:00:00 CET"],
)
def test_parse_datetime_refuses_garbage(text: str) -> None:
    with pytest.raises(ValueError, match=r"date-time|offset"):
        parse_datetime(text)


def test_format_utc() -> None:
    moment = datetime(2026, 5, 1, 10, 0, 0, 250000, tzinfo=timezone(timedelta(hours=2)))
    assert format_utc(moment) == "2026-05-01T08:00:00.250Z"


# -- JSON bytes -----------------------------------------------------------------------------------


def test_to_json_bytes_is_compact_utf8_and_stable() -> None:
    report = make_report(pn="Widerstand Ω ø")
    data = to_json_bytes(report)
    assert data == to_json_bytes(copy.deepcopy(report))
    assert "Widerstand Ω ø".encode() in data
    assert b": " not in data and b", " not in data
    assert json.loads(data) == report
    assert re.match(rb'\{"type":"T","id":', data)  # key order kept, not sorted


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_to_json_bytes_refuses_nan_and_infinity(bad: float) -> None:
    with pytest.raises(ReportValidationError, match="NaN or Infinity"):
        to_json_bytes(make_report(value=bad))


def test_to_json_bytes_refuses_non_json_types() -> None:
    with pytest.raises(ReportValidationError, match="datetime"):
        to_json_bytes(make_report(start=datetime(2026, 1, 1)))

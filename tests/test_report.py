"""The WSJF report model: identity, station defaults, every validation rule, the messages,
dates, the JSON bytes, the helpers for converters, and properties over random reports."""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import re
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pywats_client.converters import ConverterContext
from pywats_client.errors import ConversionError, ReportValidationError
from pywats_client.report.checks import finalize, validate
from pywats_client.report.model import (
    MEASUREMENT_STATUSES,
    REPORT_RESULTS,
    ReportDict,
    format_utc,
    group_letter,
    iter_steps,
    number_steps,
    parse_datetime,
    report_id_for,
    result_for_status,
    roll_up_statuses,
    status_letter,
    to_json_bytes,
)
from pywats_client.report.operators import ALL_OPERATORS, NUMERIC_OPERATORS, limits_used
from tests.station import with_changes

SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
CONTEXT = ConverterContext(station_name="ST-01", location="Line 3", purpose="Production")
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n fake image").decode()


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
    return with_changes(report, changes)


def make_repair(**changes: Any) -> dict[str, Any]:
    """A small valid repair (UUR) report."""
    report = make_report(
        type="R", root=None, processCode=500,
        uur={"user": "repairer", "processCode": 10, "comment": "fixed",
             "refUUT": "b6c95876-cb19-4c43-a010-7e51a86b0886"},
        subUnits=[
            {"partType": "PCBA", "pn": "PN-100", "rev": "A", "sn": "SN001", "idx": 0,
             "failures": [{"category": "Solder", "code": "Bridge", "refStepId": 1,
                           "comRef": "R5"}]},
            {"partType": "Module", "pn": "PN-7", "rev": "B", "sn": "M-1", "idx": 1,
             "parentIdx": 0},
        ],
    )
    report.update(changes)
    return {key: value for key, value in report.items() if value is not None}


def step(report: dict[str, Any]) -> dict[str, Any]:
    first: dict[str, Any] = report["root"]["steps"][0]
    return first


def add_step(report: dict[str, Any], **fields: Any) -> str:
    """Append a step to the root sequence; return its field path."""
    steps = report["root"]["steps"]
    steps.append({"id": 100 + len(steps), "status": "P", **fields})
    return f"root.steps[{len(steps) - 1}]"


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


def test_finalize_fills_nothing_for_a_repair_report_that_carries_everything() -> None:
    report = make_repair(startUTC="2026-05-01T08:00:00Z")
    out = finalize_one(copy.deepcopy(report), ConverterContext(station_name="X", file_mtime=0))
    assert to_json_bytes(out) == to_json_bytes(report)


def test_finalize_keeps_a_report_dict_and_its_places() -> None:
    report = ReportDict(make_report(pn=None))
    report.locations["root"] = "<Step Id=\"1\"> at line 4"
    report.locations[""] = "<Report> at line 2"
    with pytest.raises(ReportValidationError, match=r"'pn' is missing \(<Report> at line 2\)"):
        finalize_one(report)
    report["pn"] = "PN-1"
    out = finalize_one(report)
    assert isinstance(out, ReportDict) and out is not report
    assert out.locations == report.locations and out.locations is not report.locations


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


# -- validate: the report ------------------------------------------------------------------------


def test_valid_reports_pass() -> None:
    validate(make_report())
    validate(make_repair())


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


def test_at_most_twenty_problems_are_listed() -> None:
    report = make_report()
    report["root"]["steps"] = [{"id": n + 1, "status": "?"} for n in range(50)]
    message = problem(report)
    assert message.count("expected one of P, D, S, F, E, T") == 20
    assert "'root.steps[19].status'" in message and "'root.steps[20].status'" not in message
    assert message.endswith("... and more (only the first 20 problems are listed)")


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


@pytest.mark.parametrize("code", ["10", 10.0, True, None])
def test_process_code_must_be_a_whole_number(code: Any) -> None:
    report = make_report()
    report["processCode"] = code
    expected = "is missing" if code is None else "must be a whole number"
    assert f"'processCode' {expected}" in problem(report)


def test_process_code_is_int16() -> None:
    validate(make_report(processCode=32767))
    assert "'processCode' 40000 is out of range (-32768..32767)" in problem(
        make_report(processCode=40000))


def test_type_must_be_t_or_r() -> None:
    assert "'type' is 'X', expected 'T' (test) or 'R' (repair)" in problem(make_report(type="X"))


def test_test_report_needs_a_root() -> None:
    assert "'root' is missing: a test report (type 'T') needs a root" in problem(
        make_report(root=None))


def test_root_must_be_a_sequence_call() -> None:
    report = make_report()
    del report["root"]["seqCall"]
    assert "'root.seqCall' is missing: the root step must be a sequence call" in problem(report)


def test_root_must_be_an_object() -> None:
    assert "'root' must be an object, not a list" in problem(make_report(root=[]))


def test_headers_belong_to_their_report_type() -> None:
    assert "'uur' is only for repair reports" in problem(make_report(uur={"user": "x"}))
    assert "'root' is only for test reports" in problem(make_repair(root=make_report()["root"]))
    assert "'uut' is only for test reports" in problem(make_repair(uut={"user": "x"}))
    validate(make_report(uur=None) | {"uur": None})  # null is the same as absent


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


def test_id_guid_in_capitals_is_accepted() -> None:
    validate(make_report(id="22F77B28-80B3-4AD4-83B7-6439F1CCC245"))


@pytest.mark.parametrize("start", ["yesterday", "2026-13-01T10:00:00", "2026-05-01"])
def test_start_must_parse(start: str) -> None:
    assert "'start' is not valid: " in problem(make_report(start=start))


@pytest.mark.parametrize(
    "start", ["2020-01-01T08:00:00.Z", "2024-04-15T02:49:36.9191064+00:00",
              "2018-04-01T13:40:40", "2026-05-01 10:00:00,5+0200", "2026-05-01T10:00Z"])
def test_odd_but_readable_dates_are_accepted(start: str) -> None:
    validate(make_report(start=start, startUTC=start))


def test_start_utc_must_parse_when_given() -> None:
    assert "'startUTC' is not valid: " in problem(make_report(startUTC="soon"))
    assert "'startUTC' must be a date-time string, not a number" in problem(
        make_report(startUTC=5))


@pytest.mark.parametrize("field", ["miscInfos", "subUnits", "assets", "binaryData",
                                   "additionalData"])
def test_root_lists_must_be_lists(field: str) -> None:
    assert f"'{field}' must be a list, not an object" in problem(make_report(**{field: {}}))
    validate(make_report(**{field: []}))


def test_unknown_and_output_only_fields_are_ignored() -> None:
    validate(make_report(productName=None, origin="x", assetStats=[{"a": 1}], extra={"x": 1}))


# -- validate: the uut and uur headers --------------------------------------------------------


def test_uut_header_fields() -> None:
    uut = {"user": "op", "execTime": 12.5, "testSocketIndex": -1, "batchSN": "B1",
           "comment": "c" * 5000, "errorCode": 0, "errorMessage": "none", "fixtureId": "F1",
           "batchFailCount": None, "batchLoopIndex": None, "stepIdCausedUUTFailure": 1}
    validate(make_report(uut=uut))
    bad = dict(uut, testSocketIndex=40000, execTime="12", user=5, fixtureId="f" * 101,
               comment="c" * 5001)
    message = problem(make_report(uut=bad))
    assert "'uut.testSocketIndex' 40000 is out of range (-32768..32767)" in message
    assert "'uut.execTime' must be a number, not '12'" in message
    assert "'uut.user' must be a string, not a number" in message
    assert "'uut.fixtureId' is 101 characters long, the limit is 100" in message
    assert "'uut.comment' is 5001 characters long, the limit is 5000" in message
    assert "'uut' must be an object, not a list" in problem(make_report(uut=[]))


def test_repair_report_needs_uur() -> None:
    assert "'uur' is missing: a repair report (type 'R') needs a 'uur' header" in problem(
        make_repair(uur=None))


@pytest.mark.parametrize(("field", "expected"), [("processCode", "is missing"),
                                                  ("user", "is missing")])
def test_uur_required_fields(field: str, expected: str) -> None:
    report = make_repair()
    del report["uur"][field]
    assert f"'uur.{field}' {expected}" in problem(report)


def test_uur_field_rules() -> None:
    report = make_repair()
    report["uur"].update(user=" ", comment="c" * 5001, refUUT="not-a-guid", parent="x",
                         children=["b6c95876-cb19-4c43-a010-7e51a86b0886", "nope"],
                         confirmDate="later", execTime=None, processCode=99999)
    message = problem(report)
    assert "'uur.user' is empty" in message
    assert "'uur.comment' is 5001 characters long, the limit is 5000" in message
    assert "'uur.refUUT' 'not-a-guid' is not a GUID" in message
    assert "'uur.parent' 'x' is not a GUID" in message
    assert "'uur.children[1]' 'nope' is not a report GUID" in message
    assert "'uur.confirmDate' is not valid" in message
    assert "'uur.processCode' 99999 is out of range" in message
    assert "execTime" not in message  # null is allowed


# -- validate: misc infos, sub-units, failures, assets, binary and additional data ------------


def test_misc_info_rules() -> None:
    misc = [{"description": "Firmware", "typedef": "t" * 30, "text": "1.2", "numeric": 7},
            {"description": "Temp", "text": None, "numeric": -32768}]
    validate(make_report(miscInfos=misc))
    message = problem(make_report(miscInfos=[
        {"description": "d" * 101, "text": "t" * 101, "typedef": "t" * 31},
        {"text": "no description"},
        {"description": "n", "numeric": 40000},
        {"description": "f", "numeric": 1.5},
        "oops",
    ]))
    assert "'miscInfos[0].description' is 101 characters long, the limit is 100" in message
    assert "'miscInfos[0].text' is 101 characters long, the limit is 100" in message
    assert "'miscInfos[0].typedef' is 31 characters long, the limit is 30" in message
    assert "'miscInfos[1].description' is missing" in message
    assert "'miscInfos[2].numeric' 40000 is out of range (-32768..32767)" in message
    assert "'miscInfos[3].numeric' must be a whole number, not 1.5" in message
    assert "'miscInfos[4]' must be an object, not a string" in message


def test_misc_description_is_unique_in_a_repair_report_only() -> None:
    misc = [{"description": "Order", "text": "1"}, {"description": "Order", "text": "2"}]
    validate(make_report(miscInfos=misc))  # test reports may repeat a description
    assert ("'miscInfos[1].description' 'Order' is used twice (also miscInfos[0])"
            in problem(make_repair(miscInfos=misc)))


def test_sub_unit_rules() -> None:
    message = problem(make_report(subUnits=[
        {"partType": "p" * 51, "pn": "a", "sn": "b", "rev": "c"},
        {"partType": "x", "rev": "c", "position": "1"},
        {"pn": "a", "sn": "b", "idx": 1.0},
    ]))
    assert "'subUnits[0].partType' is 51 characters long, the limit is 50" in message
    assert "'subUnits[1].pn' is missing" in message and "'subUnits[1].sn' is missing" in message
    assert "'subUnits[1].position' must be a whole number, not '1'" in message
    assert "'subUnits[2].idx' must be a whole number, not 1.0" in message
    # partType and rev may be null (Virinco's own UUR example has partType null)
    validate(make_report(subUnits=[{"partType": None, "pn": "a", "sn": "b", "rev": None}]))


def test_repair_sub_units_need_exactly_one_idx_zero() -> None:
    assert "'subUnits' is empty: a repair report needs the repaired unit" in problem(
        make_repair(subUnits=[]))
    assert "'subUnits' is missing: a repair report needs" in problem(make_repair(subUnits=None))
    message = problem(make_repair(subUnits=["unit"]))
    assert "'subUnits[0]' must be an object, not a string" in message
    assert "'subUnits' is" not in message  # the entry is the problem, not the list
    units = make_repair()["subUnits"]
    units[0]["idx"] = 2
    assert "'subUnits' has no sub-unit with idx 0" in problem(make_repair(subUnits=units))


def test_repair_sub_unit_idx_is_unique() -> None:
    units = make_repair()["subUnits"]
    units[1]["idx"] = 0
    assert ("'subUnits[1].idx' 0 is also the idx of subUnits[0]; sub-unit idx must be unique"
            in problem(make_repair(subUnits=units)))


@pytest.mark.parametrize("key", ["parentIdx", "replacedIdx"])
def test_repair_sub_unit_references_must_exist(key: str) -> None:
    units = make_repair()["subUnits"]
    units[1][key] = 7
    assert f"'subUnits[1].{key}' 7 is not the idx of any sub-unit" in problem(
        make_repair(subUnits=units))
    units[1][key] = 0
    validate(make_repair(subUnits=units))


def test_test_report_sub_units_have_no_index_rules() -> None:
    validate(make_report(subUnits=[{"pn": "a", "sn": "b", "idx": 3, "parentIdx": 9}]))


def test_failure_rules() -> None:
    units = make_repair()["subUnits"]
    units[0]["failures"] = [
        {"category": "c" * 201, "code": "", "refStepId": "16", "comRef": "r" * 51,
         "funcBlock": "f" * 101, "artDescription": "a" * 101, "comment": "x" * 5001},
        {"code": "Missing"},
        {"category": "Solder", "code": "Bridge",
         "attachments": [{"contentType": "image/png", "name": "n" * 257, "data": "###"}]},
    ]
    message = problem(make_repair(subUnits=units))
    base = "'subUnits[0].failures"
    assert f"{base}[0].category' is 201 characters long, the limit is 200" in message
    assert f"{base}[0].code' is empty" in message
    assert f"{base}[0].refStepId' must be a whole number, not '16'" in message
    assert f"{base}[0].comRef' is 51 characters long, the limit is 50" in message
    assert f"{base}[0].funcBlock' is 101 characters long" in message
    assert f"{base}[0].artDescription' is 101 characters long" in message
    assert f"{base}[0].comment' is 5001 characters long, the limit is 5000" in message
    assert f"{base}[1].category' is missing" in message
    assert f"{base}[2].attachments[0].name' is 257 characters long, the limit is 256" in message
    assert f"{base}[2].attachments[0].data' is not valid base64" in message


def test_asset_rules() -> None:
    validate(make_report(assets=[{"assetSN": "DMM-1", "usageCount": 3}]))
    message = problem(make_report(assets=[{"usageCount": "3"}]))
    assert "'assets[0].assetSN' is missing" in message
    assert "'assets[0].usageCount' must be a whole number, not '3'" in message


def test_binary_data_rules() -> None:
    good = {"contentType": "image/png", "name": "photo.png", "data": PNG,
            "id": "14e90139-3169-4071-8556-99dda0de6ced"}
    validate(make_repair(binaryData=[good]))
    wrapped = dict(good, data="\n".join([PNG[:8], PNG[8:]]))  # MIME-style line breaks
    validate(make_repair(binaryData=[wrapped]))
    message = problem(make_repair(binaryData=[
        dict(good, contentType="c" * 101, id="nope", data=PNG[:-1]), {"name": "x"}]))
    assert "'binaryData[0].contentType' is 101 characters long, the limit is 100" in message
    assert "'binaryData[0].id' 'nope' is not a GUID" in message
    assert "'binaryData[0].data' is not valid base64" in message
    assert "'binaryData[1].contentType' is missing" in message
    assert "'binaryData[1].data' is missing" in message


def test_additional_data_rules() -> None:
    props: list[dict[str, Any]] = [
        {"name": "Firmware", "type": "String", "value": "1.2",
         "props": [{"name": "Build", "type": "Number", "value": 17, "flags": 0}]},
        {"name": "Table", "type": "Array", "array": {"dimension": 1, "type": "Number",
         "indexes": [{"text": "[0]", "indexes": [0], "value": {"name": "v", "value": 1}}]}},
    ]
    validate(make_report(additionalData=[{"name": "Config", "props": props}]))
    bad = copy.deepcopy(props)
    bad[0]["props"][0]["name"] = None
    bad[0]["props"][0]["flags"] = "0"
    bad[1]["array"]["indexes"][0]["indexes"] = [0, "1"]
    bad[1]["array"]["indexes"][0]["value"]["numFormat"] = 5
    message = problem(make_report(additionalData=[{"props": bad}]))
    assert "'additionalData[0].name' is missing" in message
    assert "'additionalData[0].props[0].props[0].name' is missing" in message
    assert "'additionalData[0].props[0].props[0].flags' must be a whole number" in message
    assert ("'additionalData[0].props[1].array.indexes[0].indexes' must be a list of whole "
            "numbers") in message
    assert ("'additionalData[0].props[1].array.indexes[0].value[0].numFormat' must be a "
            "string") in message


def test_deeply_nested_additional_data_is_checked_without_recursion() -> None:
    prop: dict[str, Any] = {"name": "leaf", "flags": "x"}
    for n in range(3000):
        prop = {"name": f"p{n}", "props": [prop]}
    assert "flags' must be a whole number" in problem(
        make_report(additionalData=[{"name": "deep", "props": [prop]}]))


# -- validate: steps --------------------------------------------------------------------------


def test_step_name_length_limit() -> None:
    report = make_report()
    step(report)["name"] = "n" * 101
    message = problem(report)
    assert (f"'root.steps[0].name' is 101 characters long, the limit is 100 "
            f"(step {'n' * 40 + '...'!r})") in message


@pytest.mark.parametrize("status", ["X", "", "Passed", 1])
def test_step_status_letter(status: Any) -> None:
    report = make_report()
    step(report)["status"] = status
    assert (f"'root.steps[0].status' is {json.dumps(status) if status == 1 else repr(status)}"
            ", expected one of P, D, S, F, E, T (step 'Voltage')") in problem(report)


def test_step_status_is_required() -> None:
    report = make_report()
    del step(report)["status"]
    assert "'root.steps[0].status' is missing (step 'Voltage')" in problem(report)


@pytest.mark.parametrize("group", ["X", "Main", "m"])
def test_step_group_letter(group: str) -> None:
    report = make_report()
    step(report)["group"] = group
    assert f"'root.steps[0].group' is {group!r}, expected one of S (setup)" in problem(report)


def test_step_id_must_be_a_whole_number() -> None:
    report = make_report()
    step(report)["id"] = "1"
    assert "'root.steps[0].id' must be a whole number, not '1'" in problem(report)


def test_step_ids_are_unique_in_the_report() -> None:
    report = make_report()
    where = add_step(report, name="Again", id=1)
    assert (f"'{where}.id' 1 is also the id of root.steps[0]; step ids must be unique"
            in problem(report))
    report["root"]["steps"][-1]["id"] = 0  # the root's id counts too
    assert "is also the id of root;" in problem(report)


def test_step_ids_may_be_left_out() -> None:
    report = make_report()
    del step(report)["id"]
    del report["root"]["id"]
    validate(report)


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [("totTime", "1.5", "must be a number, not '1.5'"),
     ("totTime", float("nan"), "is nan, which JSON cannot carry"),
     ("causedUUTFailure", 1, "must be true or false, not 1"),
     ("causedSeqFailure", "false", "must be true or false, not 'false'"),
     ("start", "noon", "is not valid"),
     ("errorCode", 2**31, "2147483648 is out of range (-2147483648..2147483647)"),
     ("reportText", ["a"], "must be a string, not a list"),
     ("interactiveExeNum", 1.5, "must be a whole number, not 1.5"),
     ("tsGuid", 5, "must be a string, not a number")],
)
def test_step_field_types(field: str, value: Any, expected: str) -> None:
    report = make_report()
    step(report)[field] = value
    assert f"'root.steps[0].{field}' {expected}" in problem(report)


def test_steps_only_under_a_sequence_call() -> None:
    report = make_report()
    step(report)["steps"] = [{"id": 2, "status": "P"}]
    assert ("'root.steps[0].steps' are only allowed under a sequence call step"
            in problem(report))
    step(report)["steps"] = []  # an empty list says nothing
    validate(report)


def test_steps_must_be_objects_in_a_list() -> None:
    report = make_report()
    report["root"]["steps"].append("oops")
    assert "'root.steps[1]' must be a step object, not a string" in problem(report)
    report["root"]["steps"] = {"a": 1}
    assert "'root.steps' must be a list, not an object" in problem(report)


def test_deep_step_tree_is_checked_without_recursion() -> None:
    report = make_report()
    node = report["root"]
    for n in range(5000):
        child = {"id": n + 10, "status": "P", "seqCall": {}, "steps": []}
        node["steps"] = [child]
        node = child
    node["status"] = "?"
    message = problem(report)
    assert "status' is '?'" in message
    assert len(message) < 1000  # the path of a step 5000 deep is shortened


def test_one_payload_kind_per_step() -> None:
    report = make_report()
    step(report)["callExe"] = {"exitCode": 0}
    assert ("'root.steps[0]' has numericMeas and callExe; a step carries one kind of result"
            in problem(report))
    step(report)["callExe"] = None  # null and empty lists do not count
    step(report)["stringMeas"] = []
    validate(report)


def test_chart_goes_with_measurements_but_not_with_an_attachment() -> None:
    report = make_report()
    chart = {"chartType": "Line", "label": "IV", "series": [
        {"dataType": "XYG", "name": "I", "xdata": "0;1;2", "ydata": "0.5;1e-3;-2"}]}
    step(report)["chart"] = chart
    validate(report)
    step(report)["attachment"] = {"name": "a.png", "contentType": "image/png", "data": PNG}
    assert "'root.steps[0]' has both a chart and an attachment" in problem(report)


@pytest.mark.parametrize(
    ("change", "expected"),
    [({"chartType": "Pie"}, "'root.steps[0].chart.chartType' is 'Pie', expected one of Line, "
      "LineLogX, LineLogY, LineLogXY"),
     ({"chartType": None}, "'root.steps[0].chart.chartType' is missing"),
     ({"series": [{"name": "s", "ydata": "1;x;3"}]},
      "'root.steps[0].chart.series[0].ydata' must be numbers separated by ';'"),
     ({"series": [{"name": "s", "ydata": "1,5;2"}]},
      "'root.steps[0].chart.series[0].ydata' must be numbers separated by ';'"),
     ({"series": [{"name": "s", "xdata": "0;1", "ydata": "1;2;3"}]},
      "'root.steps[0].chart.series[0]' has 2 x values but 3 y values"),
     ({"series": [{"name": "s", "ydata": ";".join(["1"] * 10_001)}]},
      "'root.steps[0].chart.series[0].ydata' has 10001 points, the limit is 10000"),
     ({"series": [{"name": f"s{n}", "ydata": "1"} for n in range(11)]},
      "'root.steps[0].chart.series' has 11 series, the limit is 10"),
     ({"series": {"name": "s"}}, "'root.steps[0].chart.series' must be a list")],
)
def test_chart_rules(change: dict[str, Any], expected: str) -> None:
    report = make_report()
    step(report)["chart"] = {"chartType": "LineLogY", "series": [], **change}
    assert expected in problem(report)


def test_chart_limits_are_inclusive() -> None:
    report = make_report()
    data = ";".join(["1.5"] * 10_000)
    step(report)["chart"] = {"chartType": "linelogxy", "series": [
        {"name": f"s{n}", "xdata": data, "ydata": data} for n in range(10)]}
    validate(report)


def test_attachment_rules() -> None:
    report = make_report()
    where = add_step(report, name="Photo", attachment={"name": "a.png",
                                                      "contentType": "image/png", "data": PNG})
    validate(report)
    report["root"]["steps"][-1]["attachment"] = {"name": "n" * 257, "data": "a==="}
    message = problem(report)
    assert f"'{where}.attachment.name' is 257 characters long, the limit is 256" in message
    assert f"'{where}.attachment.data' is not valid base64" in message
    report["root"]["steps"][-1]["attachment"] = {"name": "x"}
    assert f"'{where}.attachment.data' is missing" in problem(report)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [({"seqCall": {"path": 5}, "steps": []}, "seqCall.path' must be a string"),
     ({"messagePopup": {"response": "OK", "button": 70000}}, "messagePopup.button' 70000 is "
      "out of range (-32768..32767)"),
     ({"callExe": {"exitCode": "0"}}, "callExe.exitCode' must be a number, not '0'"),
     ({"additionalResults": [{"props": []}]}, "additionalResults[0].name' is missing"),
     ({"seqCall": []}, "seqCall' must be an object, not a list")],
)
def test_payload_fields(payload: dict[str, Any], expected: str) -> None:
    report = make_report()
    where = add_step(report, name="Payload", **payload)
    assert f"'{where}.{expected}" in problem(report)


# -- validate: measurements ------------------------------------------------------------------


@pytest.mark.parametrize("key", ["numericMeas", "stringMeas", "booleanMeas"])
def test_measurements_must_be_a_list(key: str) -> None:
    report = make_report()
    del step(report)["numericMeas"]
    step(report)[key] = {"status": "P"}
    assert f"'root.steps[0].{key}' must be a list, not an object" in problem(report)


def test_measurement_status_letter() -> None:
    report = make_report()
    step(report)["numericMeas"][0]["status"] = "D"
    assert "'root.steps[0].numericMeas[0].status' is 'D', expected one of P, F, S" in problem(
        report)


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [("value", "3.3", "must be a number, not '3.3'"),
     ("value", True, "must be a number, not true"),
     ("lowLimit", float("inf"), "is inf, which JSON cannot carry"),
     ("highLimit", [], "must be a number, not a list"),
     ("unit", 5, "must be a string, not a number")],
)
def test_numeric_measurement_fields(field: str, value: Any, expected: str) -> None:
    report = make_report()
    step(report)["numericMeas"][0][field] = value
    assert f"'root.steps[0].numericMeas[0].{field}' {expected}" in problem(report)


def test_string_and_boolean_measurement_fields() -> None:
    report = make_report()
    add_step(report, name="S", stringMeas=[{"compOp": "IgnoreCase", "value": 5, "limit": "a"}])
    add_step(report, name="B", booleanMeas=[{"name": None, "status": "X"}])
    message = problem(report)
    assert "'root.steps[1].stringMeas[0].value' must be a string, not a number" in message
    assert "'root.steps[2].booleanMeas[0].status' is 'X', expected one of P, F, S" in message


def test_single_and_multiple_measurements_are_not_mixed() -> None:
    report = make_report()
    meas = step(report)["numericMeas"]
    meas.append(dict(meas[0], name="Second"))
    assert ("'root.steps[0].numericMeas[0].name' is missing: a step with several measurements "
            "needs a unique name for each") in problem(report)
    meas[0]["name"] = "First"
    validate(report)
    step(report)["numericMeas"] = [dict(meas[0])]  # one named measurement is fine too
    validate(report)


def test_multiple_measurement_names_are_unique() -> None:
    report = make_report()
    add_step(report, name="Flags", booleanMeas=[{"name": "A", "status": "P"},
                                                {"name": "B", "status": "P"},
                                                {"name": "A", "status": "F"}])
    assert ("'root.steps[1].booleanMeas[2].name' 'A' is also the name of "
            "root.steps[1].booleanMeas[0]; names must be unique within the step"
            in problem(report))


@pytest.mark.parametrize("op", [*ALL_OPERATORS, "gele", "IgnoreCase", " Log ", "Log"])
def test_every_known_operator_spelling_is_accepted(op: str) -> None:
    report = make_report()
    add_step(report, name="S", stringMeas=[{"compOp": op, "value": "a", "limit": "a"}])
    validate(report)


@pytest.mark.parametrize("op", ["BETWEEN", "", "GE LE", "=="])
def test_unknown_operator_is_named(op: str) -> None:
    report = make_report()
    step(report)["numericMeas"][0]["compOp"] = op
    assert f"'root.steps[0].numericMeas[0].compOp' {op!r} is not a comparison operator; use " \
           "EQ" in problem(report)


def test_operator_must_be_a_name() -> None:
    report = make_report()
    step(report)["numericMeas"][0]["compOp"] = 7
    assert "'root.steps[0].numericMeas[0].compOp' must be an operator name, not 7" in problem(
        report)


def test_numeric_measurement_with_a_string_operator() -> None:
    report = make_report()
    step(report)["numericMeas"][0]["compOp"] = "IgnoreCase"
    assert "'root.steps[0].numericMeas[0].compOp' 'IgnoreCase' compares strings" in problem(
        report)


@pytest.mark.parametrize("op", NUMERIC_OPERATORS)
def test_numeric_operator_needs_its_limits(op: str) -> None:
    uses_low, uses_high = limits_used(op)
    report = make_report()
    meas = step(report)["numericMeas"][0]
    meas.update(compOp=op, lowLimit=None, highLimit=None)
    if not (uses_low or uses_high):
        validate(report)
        return
    message = problem(report)
    assert ("numericMeas[0].lowLimit' is missing: compOp" in message) == uses_low
    assert ("numericMeas[0].highLimit' is missing: compOp" in message) == uses_high
    meas.update(lowLimit=1.0, highLimit=2.0 if uses_high else None)
    validate(report)


def test_single_limit_operators_compare_with_the_low_limit_even_le() -> None:
    report = make_report()
    step(report)["numericMeas"][0].update(compOp="LE", lowLimit=500.0, highLimit=None)
    validate(report)
    step(report)["numericMeas"][0].update(lowLimit=None, highLimit=500.0)
    assert "'root.steps[0].numericMeas[0].lowLimit' is missing: compOp LE" in problem(report)


# -- validate: loops ----------------------------------------------------------------------------


def loop_steps() -> list[dict[str, Any]]:
    summary = {"id": 10, "name": "Repeat", "status": "P", "numericMeas": [
        {"compOp": "LOG", "name": None, "status": "P", "value": 1.0}],
        "loop": {"idx": None, "num": 2, "endingIndex": 2, "passed": 2, "failed": 0}}
    first = dict(summary, id=11, loop={"idx": 0})
    second = dict(summary, id=12, loop={"idx": 1, "num": None})
    return [summary, first, second]


def test_loop_summary_followed_by_iterations_is_valid() -> None:
    report = make_report()
    report["root"]["steps"].extend(loop_steps())
    validate(report)


def test_loop_summary_alone_is_valid() -> None:
    # Real server exports carry summaries with no iteration steps after them.
    report = make_report()
    report["root"]["steps"].append(loop_steps()[0])
    validate(report)


def test_loop_fields_are_int16() -> None:
    report = make_report()
    steps = loop_steps()
    steps[0]["loop"].update(num=40000, passed="2")
    report["root"]["steps"].extend(steps)
    message = problem(report)
    assert "'root.steps[1].loop.num' 40000 is out of range (-32768..32767)" in message
    assert "'root.steps[1].loop.passed' must be a whole number, not '2'" in message


def test_loop_iteration_must_follow_its_summary() -> None:
    report = make_report()
    steps = loop_steps()
    report["root"]["steps"].extend(steps[1:])  # iterations without the summary
    assert "'root.steps[1].loop' is iteration idx 0, but the step before it is not the same " \
           "loop" in problem(report)
    report = make_report()
    steps[1]["name"] = "Other"
    report["root"]["steps"].extend(steps)
    assert "'root.steps[2].loop' is iteration idx 0" in problem(report)


def test_loop_is_a_summary_or_an_iteration_not_both() -> None:
    report = make_report()
    steps = loop_steps()
    steps[1]["loop"]["num"] = 2
    report["root"]["steps"].extend(steps)
    assert "'root.steps[2].loop' has idx and num; a loop summary step has" in problem(report)


def test_loop_iteration_index_is_not_negative() -> None:
    report = make_report()
    steps = loop_steps()
    steps[1]["loop"]["idx"] = -1
    report["root"]["steps"].extend(steps)
    assert "'root.steps[2].loop.idx' -1 is negative" in problem(report)


# -- messages: where the problem is --------------------------------------------------------------


def test_message_names_the_step_and_its_recorded_place() -> None:
    report = ReportDict(make_report())
    report.locations.update({"": "<Report> at line 2", "root": "line 5",
                             "root.steps[0]": "<Step Id=\"1\"> at line 9",
                             "root.steps[0].numericMeas[0]": "<NumericLimit> at line 10"})
    step(report)["numericMeas"][0]["lowLimit"] = "low"
    report["sn"] = None
    message = problem(report, source="/in/a.xml")
    assert message.startswith("/in/a.xml: report is not valid WSJF: ")
    assert ("'root.steps[0].numericMeas[0].lowLimit' must be a number, not 'low' "
            "(step 'Voltage', <NumericLimit> at line 10)") in message
    assert "'sn' is missing (<Report> at line 2)" in message


def test_place_of_the_nearest_recorded_parent_is_used() -> None:
    report = ReportDict(make_report())
    report.locations["root.steps[0]"] = "line 40"
    step(report)["numericMeas"][0]["status"] = "?"
    assert "status' is '?', expected one of P, F, S (step 'Voltage', line 40)" in problem(report)
    assert report.locate("root.steps[0].numericMeas[0].status") == "line 40"
    assert report.locate("root.steps[1]") == ""
    assert report.locate("miscInfos[0].text") == ""


def test_places_can_be_found_only_when_needed() -> None:
    calls: list[int] = []

    def find() -> dict[str, str]:
        calls.append(1)
        return {"root.steps[0]": "line 7", "root": "line 2"}

    report = ReportDict(make_report())
    report.find_locations = find
    report.locations["root"] = "line 3"  # recorded places win over found ones
    validate(report)
    assert calls == []  # a valid report never pays for finding places
    step(report)["status"] = "?"
    assert "(step 'Voltage', line 7)" in problem(report)
    assert report.locate("root.seqCall") == "line 3"
    assert calls == [1]


def test_a_failing_place_finder_does_not_hide_the_problem() -> None:
    def find() -> dict[str, str]:
        raise OSError("gone")

    report = ReportDict(make_report(pn=None))
    report.find_locations = find
    assert "'pn' is missing" in problem(report)


def test_report_dict_is_a_plain_dict_to_everyone_else() -> None:
    report = ReportDict(make_report())
    report.locations["root"] = "line 1"
    assert report == make_report()
    assert json.loads(to_json_bytes(report)) == make_report()
    twin = report.copy()
    assert isinstance(twin, ReportDict) and twin == report and twin.locations == {"root": "line 1"}


def test_validation_error_is_a_conversion_error() -> None:
    # The service treats a report that fails validation like a file that fails to convert.
    assert issubclass(ReportValidationError, ConversionError)


def test_not_a_dict() -> None:
    with pytest.raises(ReportValidationError, match="must be a JSON object, got list"):
        validate([])  # type: ignore[arg-type]


# -- helpers for converters ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("word", "letter"),
    [("Passed", "P"), ("passed", "P"), ("PASS", "P"), ("ok", "P"), ("Done", "D"),
     ("Skipped", "S"), ("failed", "F"), ("Fail", "F"), ("Error", "E"), ("Terminated", "T"),
     ("Aborted", "T"), (" F ", "F")],
)
def test_status_letter(word: str, letter: str) -> None:
    assert status_letter(word) == letter


def test_status_letter_refuses_unknown_and_disallowed_words() -> None:
    with pytest.raises(ValueError, match="status 'Unknown' is not one of Passed, Done"):
        status_letter("Unknown")
    with pytest.raises(ValueError, match="status 'Done' is not one of Passed, Failed, Skipped"):
        status_letter("Done", MEASUREMENT_STATUSES)
    assert status_letter("Failed", REPORT_RESULTS) == "F"
    with pytest.raises(ValueError):
        status_letter(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(("word", "letter"), [("Setup", "S"), ("main", "M"), ("CLEANUP", "C"),
                                              ("M", "M")])
def test_group_letter(word: str, letter: str) -> None:
    assert group_letter(word) == letter


def test_group_letter_refuses_unknown_words() -> None:
    with pytest.raises(ValueError, match="step group 'Teardown' is not one of Setup, Main"):
        group_letter("Teardown")


@pytest.mark.parametrize(("status", "result"), [("P", "P"), ("D", "P"), ("S", "P"), ("F", "F"),
                                                ("E", "E"), ("T", "T")])
def test_result_for_status(status: str, result: str) -> None:
    assert result_for_status(status) == result


def sequence(*children: dict[str, Any], status: str | None = None) -> dict[str, Any]:
    seq: dict[str, Any] = {"name": "seq", "seqCall": {"name": "seq"}, "steps": list(children)}
    if status is not None:
        seq["status"] = status
    return seq


def leaf(status: str | None = None, *meas: str) -> dict[str, Any]:
    step_: dict[str, Any] = {"name": "leaf"}
    if status is not None:
        step_["status"] = status
    if meas:
        step_["numericMeas"] = [{"status": m, "name": f"m{n}"} for n, m in enumerate(meas)]
    return step_


def test_iter_steps_and_number_steps_follow_tree_order() -> None:
    root = sequence(leaf(), sequence(leaf(), leaf()), "junk", leaf())  # type: ignore[arg-type]
    paths = [path for path, _ in iter_steps(root)]
    assert paths == ["root", "root.steps[0]", "root.steps[1]", "root.steps[1].steps[0]",
                     "root.steps[1].steps[1]", "root.steps[3]"]
    assert number_steps(root, first=1) == 7
    assert [s["id"] for _, s in iter_steps(root)] == [1, 2, 3, 4, 5, 6]


def test_number_steps_handles_any_depth() -> None:
    root = sequence()
    node = root
    for _ in range(5000):
        child = sequence()
        node["steps"].append(child)
        node = child
    assert number_steps(root) == 5001


def test_roll_up_a_failed_child_fails_its_sequences() -> None:
    inner = sequence(leaf("P"), leaf("F"), status="P")
    root = sequence(leaf("D"), inner, status="P")
    assert roll_up_statuses(root) == "F"
    assert inner["status"] == "F"


def test_roll_up_fills_missing_statuses() -> None:
    root = sequence(leaf(), leaf(None, "P", "P"), leaf(None, "P", "F"), sequence(), leaf("S"))
    assert roll_up_statuses(root) == "F"
    assert [s.get("status") for s in root["steps"]] == ["D", "P", "F", "P", "S"]


def test_roll_up_severity_terminated_over_error_over_failed() -> None:
    root = sequence(leaf("F"), leaf("E"), status="P")
    assert roll_up_statuses(root) == "E"
    root = sequence(leaf("T"), leaf("E"), leaf("F"), status="F")
    assert roll_up_statuses(root) == "T"
    root = sequence(leaf("F"), status="E")  # an error is not lessened by a failure below
    assert roll_up_statuses(root) == "E"


def test_roll_up_keeps_passing_trees_and_skipped_steps() -> None:
    root = sequence(leaf("P", "P", "S"), leaf("D"), sequence(leaf("F"), status="S"), status="D")
    assert roll_up_statuses(root) == "D"
    assert root["steps"][2]["status"] == "S"


def test_roll_up_result_is_valid_wsjf() -> None:
    report = make_report()
    step(report)["numericMeas"][0]["status"] = "F"
    step(report)["status"] = None
    report["result"] = result_for_status(roll_up_statuses(report["root"]))
    validate(report)
    assert report["result"] == "F" and report["root"]["status"] == "F"


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


@pytest.mark.parametrize(
    "text", ["2026-05-01T25:00:00", "2026-02-30T10:00:00", "2026-05-01T10:00:00+24:00",
             "2026-05-01T10:00:60Z", "2026-W18-5T10:00:00", "2026-05-01T1000"])
def test_validate_and_parse_datetime_agree_on_bad_dates(text: str) -> None:
    with pytest.raises(ValueError):
        parse_datetime(text)
    assert "'start' is not valid" in problem(make_report(start=text))


def test_long_runs_of_blanks_are_refused_in_linear_time() -> None:
    # A pattern with blanks on both sides of an optional part backtracks quadratically: 50 000
    # blanks would take minutes that way, and a worker would hang on one hostile file.
    blanks = " " * 50_000
    report = make_report(start=f"2020-01-01T08:00:00{blanks}x")
    step(report)["chart"] = {"chartType": "Line", "series": [{"ydata": f"1{blanks}x"}]}
    message = problem(report)
    assert "'start' is not valid: '2020-01-01T08:00:00      " in message
    assert "'root.steps[0].chart.series[0].ydata' must be numbers separated by ';'" in message
    assert len(message) < 1000  # values are shortened, not copied whole


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


# -- properties: random valid reports, and what breaks them -----------------------------------

text = st.text(st.characters(codec="utf-8"), max_size=12)
names = st.text(st.characters(codec="utf-8"), min_size=1, max_size=20).filter(str.strip)
numbers = (st.floats(allow_nan=False, allow_infinity=False, width=64)
           | st.integers(-(10**9), 10**9))
int16 = st.integers(-32768, 32767)
guids = st.uuids().map(str)
dates = st.sampled_from(["2026-05-01T10:00:00+02:00", "2020-01-01T08:00:00.Z",
                         "2024-04-15T02:49:36.93+00:00", "2018-04-01T13:40:40",
                         "2024-02-29T10:49:36.9191064+00:00"])
operator_spellings = st.sampled_from(NUMERIC_OPERATORS).flatmap(
    lambda op: st.sampled_from([op, op.lower(), op.capitalize()]))


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


@st.composite
def numeric_measurement(draw: st.DrawFn, name: str | None) -> dict[str, Any]:
    op = draw(operator_spellings)
    uses_low, uses_high = limits_used(op)
    meas: dict[str, Any] = {"compOp": op, "name": name, "status": draw(st.sampled_from("PFS")),
                            "unit": draw(optional(text)), "value": draw(numbers)}
    if uses_low or draw(st.booleans()):
        meas["lowLimit"] = draw(numbers)
    if uses_high or draw(st.booleans()):
        meas["highLimit"] = draw(numbers)
    return meas


@st.composite
def measurements(draw: st.DrawFn, kind: str) -> list[dict[str, Any]]:
    labels: list[str | None] = (
        [None] if draw(st.booleans()) else draw(st.lists(names, min_size=1, max_size=4,
                                                         unique=True)))
    items = []
    for label in labels:
        if kind == "numericMeas":
            items.append(draw(numeric_measurement(label)))
        elif kind == "stringMeas":
            items.append({"compOp": draw(st.sampled_from(["CASESENSIT", "IgnoreCase", "LOG",
                                                          "Log"])),
                          "name": label, "status": draw(st.sampled_from("PFS")),
                          "value": draw(text), "limit": draw(optional(text))})
        else:
            items.append({"name": label, "status": draw(st.sampled_from("PFS"))})
    return items


props = st.recursive(
    st.fixed_dictionaries({"name": names, "type": st.sampled_from(["String", "Number"]),
                           "value": text}),
    lambda children: st.fixed_dictionaries({"name": names, "props": st.lists(children,
                                                                               max_size=2)}),
    max_leaves=4,
)
additional_data = st.lists(st.fixed_dictionaries({"name": names,
                                                  "props": st.lists(props, max_size=2)}),
                           max_size=2)
binary = st.fixed_dictionaries({
    "contentType": st.sampled_from(["image/png", "text/plain"]),
    "name": names, "data": st.binary(max_size=30).map(lambda b: base64.b64encode(b).decode())})


@st.composite
def chart(draw: st.DrawFn) -> dict[str, Any]:
    series = []
    for n in range(draw(st.integers(1, 3))):
        count = draw(st.integers(0, 5))
        ys = draw(st.lists(numbers, min_size=count, max_size=count))
        series.append({"dataType": "XYG", "name": f"s{n}",
                       "xdata": ";".join(str(x) for x in range(count)),
                       "ydata": ";".join(repr(float(y)) for y in ys)})
    return {"chartType": draw(st.sampled_from(["Line", "LineLogX", "LineLogY", "LineLogXY"])),
            "label": draw(text), "xLabel": "x", "xUnit": None, "yLabel": "y", "yUnit": "V",
            "series": series}


@st.composite
def leaf_step(draw: st.DrawFn) -> dict[str, Any]:
    step_: dict[str, Any] = {
        "group": draw(st.sampled_from("SMC")), "stepType": draw(text),
        "name": draw(names), "status": draw(st.sampled_from("PDSFET")),
    }
    if draw(st.booleans()):
        step_.update(start=draw(dates), totTime=draw(numbers), causedUUTFailure=False,
                     errorCode=draw(int16), reportText=draw(text))
    kind = draw(st.sampled_from(["numericMeas", "stringMeas", "booleanMeas", "messagePopup",
                                 "callExe", "additionalResults", "chart", "attachment", "none"]))
    if kind in ("numericMeas", "stringMeas", "booleanMeas"):
        step_[kind] = draw(measurements(kind))
    elif kind == "messagePopup":
        step_[kind] = {"response": draw(text), "button": draw(int16)}
    elif kind == "callExe":
        step_[kind] = {"exitCode": draw(numbers)}
    elif kind == "additionalResults":
        step_[kind] = draw(additional_data)
    elif kind == "chart":
        step_["numericMeas"] = draw(measurements("numericMeas"))
        step_["chart"] = draw(chart())
    elif kind == "attachment":
        step_[kind] = {k: v for k, v in draw(binary).items()}
    return step_


def looped(template: dict[str, Any], iterations: int) -> list[dict[str, Any]]:
    summary = dict(template, loop={"idx": None, "num": iterations, "endingIndex": iterations,
                                   "passed": iterations, "failed": 0})
    return [summary] + [dict(copy.deepcopy(template), loop={"idx": n})
                        for n in range(iterations)]


def step_lists(children: st.SearchStrategy[Any]) -> st.SearchStrategy[list[dict[str, Any]]]:
    entry = children.map(lambda s: [s]) | st.tuples(leaf_step(), st.integers(0, 3)).map(
        lambda pair: looped(*pair))
    return st.lists(entry, max_size=4).map(lambda groups: [s for g in groups for s in g])


def sequence_step(children: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(
        lambda name, steps: {"group": "M", "stepType": "SequenceCall", "name": name,
                             "status": "P", "seqCall": {"path": "x.seq", "name": name,
                                                        "version": "1.0"}, "steps": steps},
        names, step_lists(children))


step_trees = st.recursive(leaf_step(), sequence_step, max_leaves=12)


@st.composite
def valid_reports(draw: st.DrawFn) -> dict[str, Any]:
    """A random valid WSJF report: UUT with steps of every payload kind, or UUR with
    sub-units, failures and attachments."""
    kind = draw(st.sampled_from("TR"))
    report: dict[str, Any] = {
        "type": kind, "id": draw(guids), "pn": draw(names), "sn": draw(names),
        "rev": draw(text), "processCode": draw(int16),
        "processName": draw(optional(text)), "result": draw(st.sampled_from(REPORT_RESULTS)),
        "machineName": draw(names), "location": draw(text), "purpose": draw(text),
        "start": draw(dates), "startUTC": draw(dates),
    }
    descriptions = draw(st.lists(names, max_size=3, unique=True))
    report["miscInfos"] = [{"description": d, "text": draw(optional(text)),
                            "numeric": draw(optional(int16))} for d in descriptions]
    if kind == "T":
        root = draw(sequence_step(step_trees))
        number_steps(root, first=draw(st.integers(0, 1)))
        report["root"] = root
        report["uut"] = {"user": draw(text), "execTime": draw(optional(numbers)),
                         "testSocketIndex": draw(optional(int16)), "batchSN": None,
                         "fixtureId": draw(optional(text))}
        report["subUnits"] = draw(st.lists(st.fixed_dictionaries(
            {"partType": text, "pn": names, "rev": text, "sn": names}), max_size=2))
    else:
        report["uur"] = {"user": draw(names), "processCode": draw(int16),
                         "refUUT": draw(optional(guids)), "comment": draw(text),
                         "confirmDate": draw(optional(dates)), "execTime": draw(optional(numbers)),
                         "children": draw(optional(st.lists(guids, max_size=2)))}
        units = []
        for idx in range(draw(st.integers(1, 4))):
            unit: dict[str, Any] = {"partType": draw(text), "pn": draw(names),
                                    "rev": draw(text), "sn": draw(names), "idx": idx}
            if idx:
                unit["parentIdx"] = draw(st.integers(0, idx - 1))
            unit["failures"] = [
                {"category": draw(names), "code": draw(names), "refStepId": draw(int16),
                 "comRef": draw(optional(text)), "comment": draw(text),
                 "attachments": draw(st.lists(binary, max_size=1))}
                for _ in range(draw(st.integers(0, 2)))]
            units.append(unit)
        report["subUnits"] = units
        report["binaryData"] = draw(st.lists(binary, max_size=2))
    report["assets"] = draw(st.lists(st.fixed_dictionaries(
        {"assetSN": names, "usageCount": int16}), max_size=2))
    report["additionalData"] = draw(additional_data)
    return report


PROPERTY_SETTINGS = settings(max_examples=60, deadline=None,
                             suppress_health_check=[HealthCheck.too_slow,
                                                    HealthCheck.data_too_large])


@PROPERTY_SETTINGS
@given(valid_reports())
def test_random_valid_reports_pass(report: dict[str, Any]) -> None:
    validate(report)
    validate(json.loads(to_json_bytes(report)))


Mutation = Callable[[dict[str, Any], st.DataObject], str]


def _pick_step(report: dict[str, Any], data: st.DataObject,
               where: Callable[[dict[str, Any]], bool] = lambda s: True
               ) -> tuple[str, dict[str, Any]] | None:
    found = [(p, s) for p, s in iter_steps(report["root"]) if where(s)]
    return data.draw(st.sampled_from(found)) if found else None


def _break_step_status(report: dict[str, Any], data: st.DataObject) -> str:
    path, target = _pick_step(report, data) or ("", {})
    target["status"] = data.draw(st.sampled_from(["X", "Passed", "", 1]))
    return f"{path}.status"


def _break_step_name(report: dict[str, Any], data: st.DataObject) -> str:
    path, target = _pick_step(report, data) or ("", {})
    target["name"] = "n" * 101
    return f"{path}.name"


def _duplicate_step_id(report: dict[str, Any], data: st.DataObject) -> str:
    steps = list(iter_steps(report["root"]))
    later = data.draw(st.integers(1, len(steps) - 1)) if len(steps) > 1 else 0
    if not later:
        return _break_step_status(report, data)
    earlier = data.draw(st.integers(0, later - 1))
    steps[later][1]["id"] = steps[earlier][1]["id"]
    return f"{steps[later][0]}.id"


def _break_measurement(report: dict[str, Any], data: st.DataObject) -> str:
    picked = _pick_step(report, data, lambda s: bool(s.get("numericMeas")))
    if picked is None:
        return _break_step_name(report, data)
    path, target = picked
    n = data.draw(st.integers(0, len(target["numericMeas"]) - 1))
    field, value = data.draw(st.sampled_from([("value", "abc"), ("lowLimit", [1]),
                                              ("compOp", "BETWEEN"), ("status", "D")]))
    target["numericMeas"][n][field] = value
    return f"{path}.numericMeas[{n}].{field}"


def _second_payload(report: dict[str, Any], data: st.DataObject) -> str:
    picked = _pick_step(report, data, lambda s: "seqCall" not in s)
    if picked is None:
        return _break_step_name(report, data)
    path, target = picked
    target.pop("chart", None)
    target.pop("attachment", None)
    target.setdefault("messagePopup", {"response": "ok", "button": 1})
    target["callExe"] = {"exitCode": 0}
    return path


def _children_without_sequence(report: dict[str, Any], data: st.DataObject) -> str:
    picked = _pick_step(report, data, lambda s: "seqCall" not in s)
    if picked is None:
        return _break_step_name(report, data)
    path, target = picked
    target["steps"] = [{"status": "P"}]
    return f"{path}.steps"


def _orphan_loop_iteration(report: dict[str, Any], data: st.DataObject) -> str:
    report["root"]["steps"].insert(0, {"name": "again", "status": "P", "loop": {"idx": 0}})
    return "root.steps[0].loop"


def _break_root_field(report: dict[str, Any], data: st.DataObject) -> str:
    field, value = data.draw(st.sampled_from([("pn", "p" * 101), ("processCode", 40000),
                                              ("result", "X"), ("id", "x"), ("start", "noon")]))
    report[field] = value
    return field


def _break_misc_info(report: dict[str, Any], data: st.DataObject) -> str:
    report["miscInfos"].append({"description": "Temperature", "numeric": 40000})
    return f"miscInfos[{len(report['miscInfos']) - 1}].numeric"


def _break_sub_units(report: dict[str, Any], data: st.DataObject) -> str:
    units = report["subUnits"]
    if report["type"] == "T" or len(units) < 2:
        report["subUnits"].append({"pn": "a", "sn": "b", "partType": "p" * 51})
        return f"subUnits[{len(units) - 1}].partType"
    n = data.draw(st.integers(1, len(units) - 1))
    field = data.draw(st.sampled_from(["idx", "parentIdx"]))
    units[n][field] = 0 if field == "idx" else 99
    return f"subUnits[{n}].{field}"


def _break_failure(report: dict[str, Any], data: st.DataObject) -> str:
    if report["type"] == "T":
        return _break_misc_info(report, data)
    report["subUnits"][0]["failures"] = [{"category": "c"}]
    return "subUnits[0].failures[0].code"


MUTATIONS: list[Mutation] = [
    _break_step_status, _break_step_name, _duplicate_step_id, _break_measurement,
    _second_payload, _children_without_sequence, _orphan_loop_iteration, _break_root_field,
    _break_misc_info, _break_sub_units, _break_failure,
]


@PROPERTY_SETTINGS
@given(valid_reports(), st.sampled_from(MUTATIONS), st.data())
def test_broken_rules_are_caught_with_the_field_path(
    report: dict[str, Any], mutate: Mutation, data: st.DataObject
) -> None:
    if report["type"] == "R" and mutate in (_break_step_status, _break_step_name,
                                            _duplicate_step_id, _break_measurement,
                                            _second_payload, _children_without_sequence,
                                            _orphan_loop_iteration):
        path = _break_failure(report, data)
    else:
        path = mutate(report, data)
    message = problem(report)
    assert f"'{path}'" in message, (path, message)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.sampled_from(["T", "R", "P", "X", "", "2026-05-01T10:00:00Z"]) | st.text(max_size=3),
    lambda children: st.lists(children, max_size=3),
    max_leaves=6,
)
report_keys = st.sampled_from(
    ["type", "id", "pn", "sn", "rev", "processCode", "result", "machineName", "location",
     "purpose", "start", "startUTC", "root", "uur", "uut", "miscInfos", "subUnits", "steps",
     "status", "seqCall", "numericMeas", "name", "processName", "loop", "idx", "chart",
     "series", "compOp", "failures", "props", "array", "indexes", "attachment", "data"]
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


@PROPERTY_SETTINGS
@given(valid_reports(), st.data())
def test_any_value_anywhere_raises_only_validation_errors(
    report: dict[str, Any], data: st.DataObject
) -> None:
    # Replace one random node of a valid report with any JSON value: validate() may refuse
    # the report, but never crash.
    nodes: list[tuple[Any, Any]] = []
    stack: list[Any] = [report]
    while stack:
        node = stack.pop()
        keys = list(node) if isinstance(node, dict) else range(len(node))
        for key in keys:
            nodes.append((node, key))
            if isinstance(node[key], (dict, list)):
                stack.append(node[key])
    parent, key = data.draw(st.sampled_from(nodes))
    parent[key] = data.draw(json_values | report_like)
    with contextlib.suppress(ReportValidationError):
        validate(report)

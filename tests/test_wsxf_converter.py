"""WATSStandardXMLConverter on hand-written fixtures: every mapping of formats.md §2, legacy WRML,
detection, and hostile, broken or half-written input."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pywats_client.converters import ConverterContext, ConverterRegistry
from pywats_client.converters.wsxf import (
    LAZY_PLACES_FROM,
    MAX_FILE_SIZE,
    WATSStandardXMLConverter,
)
from pywats_client.errors import (
    ConversionError,
    IncompleteFileError,
    ProcessListUnknownError,
    ReportValidationError,
)
from pywats_client.report.checks import finalize
from pywats_client.report.model import to_json_bytes

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "wsxf"
CONTEXT = ConverterContext(station_name="ST-01", location="Line 3", purpose="Production",
                           file_mtime=1_777_777_777.0)
CONVERTER = WATSStandardXMLConverter()
WSXF = 'xmlns="http://wats.virinco.com/schemas/WATS/Report/wsxf"'
WRML = 'xmlns="http://wats.virinco.com/schemas/WATS/Report"'


def convert(path: Path, context: ConverterContext = CONTEXT) -> list[dict[str, Any]]:
    return CONVERTER.convert(path, context)


def convert_text(tmp_path: Path, text: str | bytes, context: ConverterContext = CONTEXT,
                 name: str = "report.xml") -> list[dict[str, Any]]:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return convert(path, context)


def finished(report: dict[str, Any], index: int = 0) -> dict[str, Any]:
    """The report as the service queues it: defaults filled, validated."""
    return finalize(report, context=CONTEXT, converter_name=CONVERTER.name,
                    content_sha256=hashlib.sha256(b"x").hexdigest(), index=index)


def steps_by_id(report: dict[str, Any]) -> dict[int, dict[str, Any]]:
    found: dict[int, dict[str, Any]] = {}
    stack = [report["root"]]
    while stack:
        step = stack.pop()
        found[step["id"]] = step
        stack.extend(step.get("steps", []))
    return found


def uut(body: str, *, steps: str | None = None, attrs: str = "", ns: str = WSXF) -> str:
    """A small WSXF test report around `body`; `steps` replaces the default root step."""
    root = steps if steps is not None else (
        '<Step Id="1" Name="Main" StepType="SequenceCall" Status="Passed">'
        '<SequenceCall Name="Main" Filepath="m.seq"/></Step>'
    )
    return (f'<Reports {ns}>\n<Report type="UUT" SN="S1" PN="P1" Rev="A" Result="Passed" '
            f'Start="2026-01-01T10:00:00+01:00" {attrs}>\n<Process Code="10"/>\n{body}\n'
            f"{root}\n</Report>\n</Reports>\n")


def in_main(steps: str) -> str:
    return uut("", steps='<Step Id="1" Name="Main" StepType="SequenceCall" Status="Passed">'
                         f'<SequenceCall Name="Main"/>\n{steps}\n</Step>')


# -- report headers ------------------------------------------------------------------------------


def test_report_and_uut_header_map_to_wsjf_fields() -> None:
    [report] = convert(FIXTURES / "uut_headers.xml")
    head = {key: value for key, value in report.items()
            if key not in ("root", "additionalData", "miscInfos", "subUnits", "assets",
                           "binaryData")}
    assert head == {
        "type": "T", "id": "0f8fad5b-d9cb-469f-a165-70867728950e", "pn": "PN-200",
        "sn": "SN-1001", "rev": "B", "processCode": 50, "processCodeFormat": "%d",
        "processName": "PCBA test", "result": "P", "machineName": "ST-07",
        "location": "Line 2", "purpose": "Final test",
        "start": "2026-03-02T08:15:30.250+01:00", "startUTC": "2026-03-02T07:15:30.250Z",
        "uut": {
            "execTime": 12.5, "execTimeFormat": "%.1f", "testSocketIndex": 2,
            "testSocketIndexFormat": "%d", "batchSN": "LOT-9", "comment": "Night shift & retest",
            "errorCode": 0, "errorCodeFormat": "%d", "errorMessage": "none",
            "fixtureId": "FX-3", "user": "anna", "batchFailCount": 1,
            "batchFailCountFormat": "%d", "batchLoopIndex": 4, "batchLoopIndexFormat": "%d",
            "stepIdCausedUUTFailure": 7,
        },
    }
    # origin, ProductName, ReportInfo and SPCData are output-only or client-internal.
    text = json.dumps(report)
    for absent in ("origin", "productName", "Widget", "clientstat", "SPCData"):
        assert absent not in text


def test_misc_infos_sub_units_and_assets() -> None:
    [report] = convert(FIXTURES / "uut_headers.xml")
    assert report["miscInfos"] == [
        {"description": "Firmware", "typedef": "Version", "text": "1.2.3", "numeric": None,
         "id": "6f9619ff-8b86-d011-b42d-00c04fc964ff"},
        {"description": "Temperature", "text": None, "numeric": 23, "numericFormat": "%d"},
        {"description": "Note", "text": "a < b && c > d", "numeric": None},
    ]
    assert report["subUnits"] == [
        {"partType": "Main", "pn": "PN-200", "rev": "B", "sn": "SN-1001", "idx": 0},
        {"partType": "PSU", "pn": "PSU-1", "rev": "C", "sn": "PSU-SN-5", "idx": 1,
         "parentIdx": 0, "position": 3},
        {"partType": "PSU", "pn": "PSU-1", "rev": "C", "sn": "PSU-SN-6", "idx": 2,
         "parentIdx": 0, "position": 3, "replacedIdx": 1},
        {"partType": "Cable", "pn": "CBL-1", "rev": "1", "sn": "CBL-SN-1", "idx": 3},
    ]
    assert report["assets"] == [
        {"assetSN": "DMM-42", "usageCount": 1200, "usageCountFormat": "%d"},
        {"assetSN": "Probe-7", "usageCount": 3},
    ]
    assert report["binaryData"] == [
        {"contentType": "text/plain", "data": "aGVsbG8=", "name": "log.txt",
         "id": "9d2f8c3e-0a1b-4c5d-8e9f-0a1b2c3d4e5f"},
    ]


def test_additional_data_keeps_teststand_properties() -> None:
    [report] = convert(FIXTURES / "uut_headers.xml")
    assert report["additionalData"] == [{"name": "Environment", "props": [{
        "name": "Environment", "type": "Obj", "flags": 0, "props": [
            {"name": "Humidity", "type": "Number", "flags": 4, "numFormat": "%.1f",
             "value": "45.5"},
            {"name": "Room", "type": "String", "flags": 0, "value": "Lab B"},
            {"name": "Readings", "type": "Array", "flags": 0, "array": {
                "dimension": 1, "type": "Number", "indexes": [
                    {"text": "[0]", "indexes": [0], "value": {"type": "Number", "value": "1"}},
                    {"text": "[1]", "indexes": [1], "value": {"type": "Number", "value": "2"}},
                ]}},
        ]}]}]


def test_root_sequence_call_with_empty_version() -> None:
    [report] = convert(FIXTURES / "uut_headers.xml")
    assert report["root"] == {
        "id": 0, "group": "M", "stepType": "SequenceCall", "name": "MainSequence Callback",
        "status": "P", "totTime": 12.5, "causedUUTFailure": False,
        "seqCall": {"path": "C:\\seq\\main.seq", "name": "MainSequence", "version": None},
        "steps": [],
    }


# -- steps and their payloads --------------------------------------------------------------------


@pytest.fixture(scope="module")
def steps() -> dict[int, dict[str, Any]]:
    [report] = convert(FIXTURES / "uut_steps.xml")
    return steps_by_id(report)


def test_step_attributes(steps: dict[int, dict[str, Any]]) -> None:
    assert steps[2] == {
        "id": 2, "group": "S", "stepType": "Action", "name": "Init",
        "start": "2026-03-02T09:00:01.5+01:00", "status": "D", "errorCode": 0,
        "errorCodeFormat": "%d", "errorMessage": "", "tsGuid": "ID#:fRufchyzcU+j+7AgkcRYnD",
        "totTime": 0.5, "causedUUTFailure": False, "causedSeqFailure": False,
        "interactiveExeNum": 2, "reportText": "line one\nline two <ok>",
    }
    assert steps[20] == {
        "id": 20, "group": "C", "stepType": "Action", "name": "Power off", "status": "E",
        "errorCode": -17, "errorMessage": "Timeout talking to PSU", "causedUUTFailure": True,
        "causedSeqFailure": True,
    }


@pytest.mark.parametrize(("step_id", "status"), [
    (1, "F"), (2, "D"), (3, "P"), (20, "E"), (21, "T"), (22, "D"), (23, "S"),
])
def test_status_words_become_letters(steps: dict[int, dict[str, Any]], step_id: int,
                                     status: str) -> None:
    assert steps[step_id]["status"] == status


def test_single_numeric_limit_with_formats(steps: dict[int, dict[str, Any]]) -> None:
    assert steps[3]["numericMeas"] == [{
        "compOp": "GELE", "name": None, "status": "P", "unit": "V", "value": 3.301,
        "valueFormat": "%.3f", "highLimit": 3.4, "highLimitFormat": "%.2f", "lowLimit": 3.2,
        "lowLimitFormat": "%.2f",
    }]
    assert steps[3]["totTime"] == 0.125


def test_multiple_numeric_limits(steps: dict[int, dict[str, Any]]) -> None:
    first, second, third = steps[4]["numericMeas"]
    # "lt" is canonical LT; the single limit written as HighLimit moves to lowLimit (with its
    # format), as WSJF keeps single limits; Units="" is unit null.
    assert first == {"compOp": "LT", "name": "I1", "status": "F", "unit": None, "value": 0.75,
                     "highLimit": None, "lowLimit": 0.5, "lowLimitFormat": "%.1f"}
    assert second == {"compOp": "LOG", "name": "I2", "status": "P", "unit": "mA",
                      "value": -0.0015, "highLimit": None, "lowLimit": None}
    # No Status in the file: computed from the limits (1 < 2 < 3).
    assert third["status"] == "P" and third["compOp"] == "GTLT"
    assert (third["lowLimit"], third["highLimit"]) == (1.0, 3.0)
    assert steps[4]["causedUUTFailure"] is True


def test_pass_fail_and_string_values(steps: dict[int, dict[str, Any]]) -> None:
    assert steps[5]["booleanMeas"] == [{"name": None, "status": "P"}]
    assert steps[6]["booleanMeas"] == [
        {"name": "A", "status": "P"}, {"name": "B", "status": "F"}, {"name": "C", "status": "S"},
    ]
    # The measured string is the StringValue *attribute*.
    assert steps[7]["stringMeas"] == [
        {"compOp": "IGNORECASE", "name": None, "status": "P", "value": "ABC", "limit": "abc"},
    ]
    assert steps[8]["stringMeas"] == [
        {"compOp": "CASESENSIT", "name": "fw", "status": "F", "value": "1.1", "limit": "1.0"},
        {"compOp": "LOG", "name": "free", "status": "P", "value": "x & y", "limit": None},
    ]


def test_message_popup_call_executable_and_property_loader(
        steps: dict[int, dict[str, Any]]) -> None:
    assert steps[9]["messagePopup"] == {"response": "Looks fine", "button": 1,
                                        "buttonFormat": "%d"}
    assert steps[10]["callExe"] == {"exitCode": 0.0, "exitCodeFormat": "%d"}
    # PropertyLoader has no WSJF equivalent: a plain step.
    assert steps[11] == {"id": 11, "group": "M", "stepType": "NI_PropertyLoader",
                         "name": "Load limits", "status": "D"}


def test_chart_with_series(steps: dict[int, dict[str, Any]]) -> None:
    assert steps[12]["numericMeas"][0]["value"] == 2.1666
    assert steps[12]["chart"] == {
        "chartType": "LineLogX", "label": "Gain", "xLabel": "Frequency", "xUnit": "Hz",
        "yLabel": "Gain", "yUnit": "dB", "series": [
            {"dataType": "XYG", "name": "Gain", "xdata": "10;100;1000", "ydata": "1;2.5;3"},
            {"dataType": "XYG", "name": "Limit", "xdata": "10;1000", "ydata": "0.5;0.5"},
        ]}


def test_attachment_base64_is_unwrapped(steps: dict[int, dict[str, Any]]) -> None:
    assert steps[13]["attachment"] == {"name": "board.png", "contentType": "image/png",
                                       "data": "UE5HLWJ5dGVzLWZvci1hLXRlc3Q="}


def test_additional_results_from_teststand_and_plain_xml(
        steps: dict[int, dict[str, Any]]) -> None:
    assert steps[14]["additionalResults"] == [
        {"name": "Calibration", "props": [
            {"name": "Gain", "type": "Number", "flags": 0, "value": "1.02"}]},
        {"name": "Raw", "props": [
            {"name": "Sample", "type": "Obj", "props": [
                {"name": "channel", "type": "String", "value": "1"}]},
            {"name": "Note", "type": "String", "value": "plain text"}]},
    ]


def test_loop_summary_and_iterations(steps: dict[int, dict[str, Any]]) -> None:
    summary, first, second = steps[15], steps[16], steps[18]
    assert summary["loop"] == {"idx": None, "num": 2, "endingIndex": 2, "passed": 1,
                               "failed": 1}
    assert summary["steps"] == []
    assert first["loop"] == {"idx": 0, "num": None, "endingIndex": None, "passed": None,
                             "failed": None}
    assert second["loop"]["idx"] == 1
    assert [s["name"] for s in (summary, first, second)] == ["Retry sequence"] * 3
    assert first["steps"][0]["numericMeas"][0]["status"] == "F"
    assert second["steps"][0]["numericMeas"][0]["status"] == "P"
    # An empty <Loop/> is no loop at all.
    assert "loop" not in steps[2]


def test_step_tree_order_and_key_order(steps: dict[int, dict[str, Any]]) -> None:
    root = steps[1]
    assert [s["id"] for s in root["steps"]] == [*range(2, 16), 16, 18, 20, 21, 22, 23]
    assert list(steps[15])[:4] == ["id", "group", "stepType", "loop"]


def test_every_fixture_report_is_valid_wsjf() -> None:
    count = 0
    for path in sorted(FIXTURES.glob("*.xml")):
        for index, report in enumerate(convert(path)):
            to_json_bytes(finished(report, index))
            count += 1
    assert count == 8


def test_conversion_is_deterministic() -> None:
    for path in sorted(FIXTURES.glob("*.xml")):
        assert json.dumps(convert(path)) == json.dumps(convert(path))


def test_steps_without_id_get_the_next_free_ids_in_file_order(tmp_path: Path) -> None:
    text = uut("", steps=(
        '<Step Name="Main" StepType="SequenceCall" Status="Passed"><SequenceCall Name="M"/>'
        '<Step Name="a" Status="Passed"><SequenceCall Name="A"/>'
        '<Step Name="a1" Status="Passed"/></Step>'
        '<Step Id="7" Name="b" Status="Passed"/><Step Name="c" Status="Passed"/></Step>'))
    [report] = convert_text(tmp_path, text)
    found = {step["name"]: step["id"] for step in steps_by_id(report).values()}
    assert found == {"Main": 8, "a": 9, "a1": 10, "b": 7, "c": 11}
    assert next(iter(report["root"])) == "id"


# -- several reports, BOM, booleans, time zones --------------------------------------------------


def test_several_reports_with_bom_no_declaration_and_0_1_booleans() -> None:
    data = (FIXTURES / "multi_bom.xml").read_bytes()
    assert data.startswith(b"\xef\xbb\xbf<Reports")
    reports = convert(FIXTURES / "multi_bom.xml")
    assert [(r["type"], r["sn"], r["result"]) for r in reports] == [
        ("T", "SN-4001", "P"), ("T", "SN-4002", "F"), ("R", "SN-4002", "P")]
    passed, failed = reports[0]["root"], reports[1]["root"]
    assert passed["causedUUTFailure"] is False and passed["causedSeqFailure"] is False
    assert failed["steps"][0]["causedUUTFailure"] is True
    assert failed["steps"][0]["causedSeqFailure"] is True
    assert failed["steps"][0]["name"] == "Café temp °C"
    assert failed["steps"][0]["numericMeas"][0]["unit"] == "°C"


def test_naive_start_is_local_to_the_configured_zone(tmp_path: Path) -> None:
    zone = timezone(timedelta(hours=2))
    context = ConverterContext(station_name="ST", timezone=zone)
    [report] = convert_text(tmp_path, uut("").replace("+01:00", ""), context)
    assert report["start"] == "2026-01-01T10:00:00+02:00"
    assert finished(report)["startUTC"] == "2026-01-01T08:00:00Z"


def test_start_utc_alone_is_the_start(tmp_path: Path) -> None:
    text = uut("", attrs='Start_utc="2026-01-01T09:00:00Z"').replace(
        'Start="2026-01-01T10:00:00+01:00" ', "")
    [report] = convert_text(tmp_path, text)
    assert report["start"] == report["startUTC"] == "2026-01-01T09:00:00Z"


def test_a_process_name_is_never_replaced_by_the_configured_code(tmp_path: Path) -> None:
    text = uut("").replace('<Process Code="10"/>', '<Process Name="SW Debug"/>')
    context = ConverterContext(station_name="ST", defaults={"process_code": 70})
    with pytest.raises(ProcessListUnknownError,
                       match=r'<Process Name="SW Debug"> at line 3: the file names the '
                             r"process 'SW Debug', which cannot be looked up yet"):
        convert_text(tmp_path, text, context)
    known = ConverterContext(station_name="ST", defaults={"process_code": 70},
                             processes={"SW Debug": 10})
    [report] = convert_text(tmp_path, text, known)
    assert (report["processCode"], report["processName"]) == (10, "SW Debug")


def test_operator_default_fills_a_missing_user(tmp_path: Path) -> None:
    context = ConverterContext(station_name="ST", defaults={"operator": "night"})
    [report] = convert_text(tmp_path, uut(""), context)
    assert report["uut"] == {"user": "night"}


# -- repair reports ------------------------------------------------------------------------------


def test_uur_header_units_failures_and_attachments() -> None:
    [report] = convert(FIXTURES / "uur.xml")
    assert report["type"] == "R" and report["result"] == "P"
    assert (report["processCode"], report["processName"]) == (500, "Repair")
    assert "root" not in report
    assert report["uur"] == {
        "comment": "Replaced PSU, see photo", "user": "olav", "processCode": 50,
        "processName": "PCBA test", "refUUT": "3b241101-e2bb-4255-8caf-4136c566a962",
        "confirmDate": "2026-03-03T14:05:00", "finalizeDate": "2026-03-03T14:30:00.5+01:00",
        "execTime": 1800.5, "parent": "7c9e6679-7425-40de-944b-e07fc1f90ae7",
        "children": ["a8098c1a-f86e-11da-bd1a-00112444be1e",
                     "b8098c1a-f86e-11da-bd1a-00112444be1e"],
    }
    main, psu, replacement = report["subUnits"]
    # A failure without PartIdx belongs to the main unit (Idx 0).
    assert main["failures"] == [{"category": "Solder Process", "code": "Appearance",
                                 "refStepId": 3, "comRef": "R55", "comment": "Cold joint"}]
    assert psu["failures"] == [{
        "category": "Component", "code": "Defect", "refStepId": 4, "refStepName": "Currents",
        "comRef": "C12", "funcBlock": "Power", "artNumber": "CAP-100u", "artRev": "2",
        "artVendor": "Acme", "artDescription": "100 uF electrolytic",
        "comment": "Bulging capacitor",
        "attachments": [{"contentType": "image/jpeg", "data": "cmVwYWlyIHBob3Rv",
                         "name": "cap.jpg", "id": "14e90139-3169-4071-8556-99dda0de6ced"}],
    }]
    assert replacement == {"partType": "PSU", "pn": "PSU-1", "rev": "C", "sn": "PSU-SN-6",
                           "idx": 2, "parentIdx": 0, "position": 3, "replacedIdx": 1}
    assert report["binaryData"] == [{"contentType": "image/png", "data": "eC1yYXk=",
                                     "name": "xray.png"}]
    assert report["assets"] == [{"assetSN": "Iron-2", "usageCount": 77}]
    assert "Failcode" not in json.dumps(report) and "Active" not in json.dumps(report)


def test_uur_without_units_gets_the_repaired_unit_as_unit_0() -> None:
    repair = convert(FIXTURES / "multi_bom.xml")[2]
    assert repair["uur"] == {"user": "olav", "processCode": 10}
    assert repair["subUnits"] == [{
        "partType": None, "pn": "PN-400", "rev": "A", "sn": "SN-4002", "idx": 0,
        "failures": [{"category": "Component", "code": "Defect", "refStepId": 2}]}]


# -- legacy WRML -----------------------------------------------------------------------------------


def test_wrml_gives_the_same_wsjf_as_wsxf() -> None:
    [flat] = convert(FIXTURES / "wrml_flat.xml")
    [nested] = convert(FIXTURES / "wsxf_nested.xml")
    assert json.dumps(flat) == json.dumps(nested)
    analog = flat["root"]["steps"][0]
    # The binary chart rows became series; the ATTACHMENT chart became an attachment.
    assert analog["steps"][1]["chart"]["series"][0]["xdata"] == "10;100;1000"
    assert flat["root"]["steps"][1]["steps"][2]["attachment"]["contentType"] == "image/png"
    assert analog["steps"][0]["numericMeas"][0]["lowLimit"] == 1050.0


def test_a_single_report_without_the_reports_wrapper(tmp_path: Path) -> None:
    text = uut("").replace(f"<Reports {WSXF}>\n", "").replace("</Reports>", "")
    text = text.replace("<Report ", f"<Report {WSXF} ", 1)
    [report] = convert_text(tmp_path, text)
    assert report["sn"] == "S1"


def test_wrml_steps_can_be_listed_in_any_order(tmp_path: Path) -> None:
    text = uut("", ns=WRML, steps=(
        '<Step StepID="2" ParentStepID="1" Name="Child" StepType="ET_PFT" Status="Passed"/>'
        '<PassFail StepID="2" Status="Passed"/>'
        '<SequenceCall StepID="1" Name="Main"/>'
        '<Step StepID="1" Name="Main" StepType="SequenceCall" Status="Passed"/>'))
    [report] = convert_text(tmp_path, text)
    assert report["root"]["id"] == 1
    assert report["root"]["steps"][0]["booleanMeas"] == [{"name": None, "status": "P"}]


# -- locations for validation messages ---------------------------------------------------------


def test_locations_name_the_element_and_line() -> None:
    [report] = convert(FIXTURES / "uut_steps.xml")
    places = report.locations  # type: ignore[attr-defined]
    assert places[""] == (
        '<Report ID="3b241101-e2bb-4255-8caf-4136c566a962" SN="SN-2002"> at line 4')
    assert places["root"] == '<Step Id="1" Name="MainSequence Callback"> at line 6'
    assert places["root.steps[2]"] == '<Step Id="4" Name="Currents"> at line 16'
    assert places["root.steps[2].numericMeas[1]"] == '<NumericLimit Name="I2"> at line 18'
    [repair] = convert(FIXTURES / "uur.xml")
    places = repair.locations  # type: ignore[attr-defined]
    assert places["subUnits[1]"] == '<ReportUnitHierarchy Idx="1" SN="PSU-SN-5"> at line 14'
    assert places["subUnits[1].failures[0]"] == '<Failures StepID="4" Idx="0"> at line 16'
    assert places["miscInfos[0]"] == '<MiscInfo Description="Repair station"> at line 12'
    [flat] = convert(FIXTURES / "wrml_flat.xml")
    places = flat.locations  # type: ignore[attr-defined]
    assert places["root.steps[0].steps[0]"] == '<Step StepID="3" Name="R12"> at line 17'
    assert places["root.steps[0].steps[0].numericMeas[0]"] == (
        '<NumericLimit StepID="3"> at line 21')


def test_a_large_file_finds_its_places_only_for_an_invalid_report(tmp_path: Path) -> None:
    # Over LAZY_PLACES_FROM: no places are kept while converting (on 200 000 steps they cost
    # 40 MB); an invalid report finds them by reading the file again, with the same text.
    filler = "".join(f'<Step Id="{n}" Name="S{n}" StepType="Action" Status="Done"/>\n'
                     for n in range(10, 10 + LAZY_PLACES_FROM // 60))
    bad = f'<Step Id="5" Name="{"x" * 150}" StepType="Action" Status="Done"/>\n'
    path = tmp_path / "big.xml"
    text = in_main(filler + bad)
    path.write_text(text)
    assert path.stat().st_size > LAZY_PLACES_FROM
    [report] = convert(path)
    assert report.locations == {}  # type: ignore[attr-defined]
    with pytest.raises(ReportValidationError) as caught:
        finalize(report, context=CONTEXT, converter_name=CONVERTER.name, content_sha256="ab",
                 index=0, source=str(path))
    line = text[:text.index('<Step Id="5"')].count("\n") + 1
    assert f'<Step Id="5" Name="{"x" * 40}..."> at line {line}' in str(caught.value)


def test_validation_errors_point_into_the_file(tmp_path: Path) -> None:
    text = uut(f'<MiscInfo Description="Long">{"x" * 150}</MiscInfo>')
    [report] = convert_text(tmp_path, text)
    with pytest.raises(ConversionError, match='<MiscInfo Description="Long"> at line 4'):
        finished(report)


# -- broken files: ConversionError naming the element and line ----------------------------------


BROKEN = {
    "bad number": (in_main('<Step Id="2" Name="V" StepType="ET_NLT" Status="Passed">\n'
                           '<NumericLimit NumericValue="3,3" CompOperator="LOG"/></Step>'),
                   r"<NumericLimit> at line 7: NumericValue='3,3' is not a number \(use a dot"),
    "NaN": (in_main('<Step Id="2" Name="V" StepType="ET_NLT" Status="Passed">\n'
                    '<NumericLimit NumericValue="NaN" CompOperator="LOG"/></Step>'),
            r"line 7: NumericValue='NaN' is not a number \(WATS cannot store NaN"),
    "bad boolean": (in_main('<Step Id="2" Name="V" Status="Passed" StepCausedUUTFailure="yes"/>'),
                    r'<Step Id="2" Name="V"> at line 6: StepCausedUUTFailure=\'yes\' is not a '
                    r"boolean \(true/false or 1/0\)"),
    "bad status": (in_main('<Step Id="2" Name="V" Status="Maybe"/>'),
                   r'<Step Id="2" Name="V"> at line 6: Status=\'Maybe\' is not one of Passed'),
    "no status": (in_main('<Step Id="2" Name="V"/>'),
                  r'<Step Id="2" Name="V"> at line 6: the Status attribute is missing'),
    "bad group": (in_main('<Step Id="2" Name="V" Status="Passed" Group="Teardown"/>'),
                  r"line 6: Group='Teardown' is not one of Main, Setup, Cleanup"),
    "duplicate id": (in_main('<Step Id="1" Name="V" Status="Passed"/>'),
                     r'<Step Id="1" Name="V"> at line 6: Id 1 is also used by '
                     r'<Step Id="1" Name="Main"> at line 5'),
    "two payload kinds": (in_main('<Step Id="2" Name="V" Status="Passed">\n'
                                  '<PassFail Status="Passed"/>\n<StringValue StringValue="x"/>'
                                  '</Step>'),
                          r"line 6: a step has one kind of result, this one has stringMeas "
                          r"and booleanMeas"),
    "children without sequence call": (
        in_main('<Step Id="2" Name="V" Status="Passed">\n<Step Id="3" Name="W" '
                'Status="Passed"/></Step>'),
        r'<Step Id="2" Name="V"> at line 6: has child steps but no <SequenceCall>'),
    "two charts": (in_main('<Step Id="2" Name="V" Status="Passed">\n<Chart/>\n<Chart/></Step>'),
                   r"<Chart> at line 8: a step holds one <Chart>, this is the second"),
    "chart and attachment": (
        in_main('<Step Id="2" Name="V" Status="Passed">\n<Chart/><Attachment/></Step>'),
        r'<Step Id="2" Name="V"> at line 6: a step holds a chart or an attachment'),
    "bad base64": (in_main('<Step Id="2" Name="V" Status="Passed">\n<Attachment Name="a">'
                           "no*base64</Attachment></Step>"),
                   r'<Attachment Name="a"> at line 7: the content is not valid base64'),
    "string value as text": (
        in_main('<Step Id="2" Name="V" Status="Passed">\n<StringValue>x</StringValue></Step>'),
        r"<StringValue> at line 7: the StringValue attribute is missing"),
    "no root step": (uut("", steps=""),
                     r'<Report SN="S1"> at line 2: a test report \(UUT\) needs exactly one root '
                     r"<Step>, found 0"),
    "no serial number": (uut("").replace('SN="S1" ', ""),
                         r"<Report> at line 2: SN \(serial number\) is missing"),
    "bad result": (uut("").replace('Result="Passed"', 'Result="Great"'),
                   r"<Report SN=\"S1\"> at line 2: Result='Great' is not one of Passed"),
    "bad type": (uut("").replace('type="UUT"', 'type="XYZ"'),
                 r"<Report SN=\"S1\"> at line 2: type='XYZ' is not UUT or UUR"),
    "bad start": (uut("").replace("2026-01-01T10", "yesterday"),
                  r"<Report SN=\"S1\"> at line 2: Start: 'yesterday:00:00\+01:00' is not an "
                  r"ISO-8601"),
    "misc info without description": (uut("<MiscInfo>x</MiscInfo>"),
                                      r"<MiscInfo> at line 4: Description is missing"),
    "failures in a test report": (
        uut('<Failures Category="C" Code="D" StepID="1"/>'),
        r'<Failures StepID="1"> at line 4: failures belong in a repair report'),
    "wrml payload of unknown step": (
        uut('<PassFail StepID="9" Status="Passed"/>', ns=WRML,
            steps='<Step StepID="1" Name="M" Status="Passed"/>'),
        r'<PassFail StepID="9"> at line 4: StepID 9 names no <Step>'),
    "wrml unknown parent": (
        uut("", ns=WRML, steps='<Step StepID="1" Name="M" Status="Passed"/>\n'
                               '<Step StepID="2" ParentStepID="7" Name="C" Status="Passed"/>'),
        r'<Step StepID="2" Name="C"> at line 6: ParentStepID 7 names no <Step>'),
    "wrml two roots": (
        uut("", ns=WRML, steps='<Step StepID="1" Name="M" Status="Passed"/>\n'
                               '<Step StepID="2" Name="C" Status="Passed"/>'),
        r"<Report SN=\"S1\"> at line 2: a test report needs exactly one root step"),
    "wrml parent loop": (
        uut("", ns=WRML, steps='<Step StepID="1" Name="M" Status="Passed"/>\n'
                               '<Step StepID="2" ParentStepID="3" Name="A" Status="Passed"/>\n'
                               '<Step StepID="3" ParentStepID="2" Name="B" Status="Passed"/>'),
        r'<Step StepID="2" Name="A"> at line 6: is not below the root step'),
    "wrml odd chart data": (
        uut('<Chart StepID="1" idx="0" ChartType="Line"/>\n'
            '<Chart StepID="1" idx="1" PlotName="s"><Data>AAAA</Data></Chart>', ns=WRML,
            steps='<Step StepID="1" Name="M" Status="Passed"/>'),
        r'<Chart StepID="1" idx="1"> at line 5: the chart <Data> holds 3 bytes'),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_files_name_the_element_and_line(tmp_path: Path, case: str) -> None:
    text, message = BROKEN[case]
    with pytest.raises(ConversionError, match=message) as caught:
        convert_text(tmp_path, text)
    assert not isinstance(caught.value, IncompleteFileError)
    assert str(tmp_path / "report.xml") in str(caught.value)


# Steps are mapped as they end, before the report's header is read to its end; the problem
# named is still the first one in the order of the report: its header, then its steps in the
# file's order, a step's own before its child steps'.
ORDER = {
    "the header before a step": (
        in_main('<Step Id="2" Name="V" Status="Maybe"/>').replace('SN="S1"', 'SN=""'),
        r'<Report SN=""> at line 2: SN \(serial number\) is missing'),
    "a header element after the steps before a step": (
        uut('<MiscInfo Numeric="2"/>', steps='<Step Id="1" Name="Main" Status="Maybe"/>'),
        r"<MiscInfo> at line 4: Description is missing"),
    "a step before its child steps": (
        in_main('<Step Id="2" Name="V" Status="Passed" Group="Teardown">\n'
                '<SequenceCall Name="S"/>\n<Step Id="3" Name="W" Status="Maybe"/>\n</Step>'),
        r'<Step Id="2" Name="V"> at line 6: Group=\'Teardown\' is not one of'),
    "a step after its payload": (
        in_main('<Step Id="2" Name="V" Status="Passed">\n<Step Id="3" Name="W" '
                'Status="Maybe"/>\n<PassFail Status="Passed"/>\n<StringValue '
                'StringValue="x"/>\n</Step>'),
        r'<Step Id="2" Name="V"> at line 6: a step has one kind of result'),
    "the first step in the file": (
        in_main('<Step Id="2" Name="V" Status="Passed">\n<SequenceCall Name="S"/>\n'
                '<Step Id="3" Name="W" Status="Maybe"/>\n</Step>\n'
                '<Step Id="4" Name="X" Status="Passed" Group="Teardown"/>'),
        r'<Step Id="3" Name="W"> at line 8: Status=\'Maybe\''),
    "an id taken by a step before, not by a child step": (
        in_main('<Step Id="2" Name="V" Status="Passed">\n<SequenceCall Name="S"/>\n'
                '<Step Id="3" Name="W" Status="Passed"/>\n</Step>\n'
                '<Step Id="3" Name="X" Status="Passed"/>'),
        r'<Step Id="3" Name="X"> at line 10: Id 3 is also used by <Step Id="3" Name="W"> at '
        r"line 8"),
}


@pytest.mark.parametrize("case", list(ORDER))
def test_the_first_problem_in_the_report_is_named(tmp_path: Path, case: str) -> None:
    text, message = ORDER[case]
    with pytest.raises(ConversionError, match=message):
        convert_text(tmp_path, text)


def test_a_repeated_id_in_a_large_file_names_the_step_that_has_it_first(tmp_path: Path) -> None:
    first = '<Step Id="7" Name="First" Status="Passed"/>\n'
    filler = "".join(f'<Step Id="{n}" Name="V{n}" Status="Passed"/>\n' for n in range(10, 30_000))
    text = in_main(first + filler + '<Step Id="7" Name="Again" Status="Passed"/>')
    assert len(text) > LAZY_PLACES_FROM
    with pytest.raises(ConversionError, match=r'<Step Id="7" Name="Again"> at line \d+: Id 7 is '
                       r'also used by <Step Id="7" Name="First"> at line 6$'):
        convert_text(tmp_path, text)


def test_a_step_in_a_header_or_in_additional_data_is_no_step(tmp_path: Path) -> None:
    text = uut('<UUT UserLoginName="u"><Step Id="9" Name="Stray"/></UUT>\n'
               '<AdditionalData Name="A"><Step Name="Kept">x</Step></AdditionalData>')
    [report] = convert_text(tmp_path, text)
    assert list(steps_by_id(report)) == [1]
    assert report["additionalData"] == [
        {"name": "A", "props": [{"name": "Kept", "type": "String", "value": "x"}]}]


def test_a_file_cut_off_after_a_broken_step_is_incomplete(tmp_path: Path) -> None:
    text = in_main('<Step Id="2" Name="V" Status="Maybe"/>')
    with pytest.raises(IncompleteFileError):
        convert_text(tmp_path, text[:text.index("</Report>")])


REPAIR = (f'<Reports {WSXF}>\n<Report type="UUR" SN="S1" PN="P1" Rev="A" '
          'Start="2026-01-01T10:00:00Z">\n<UUR UserLoginName="u"><Process Code="10"/></UUR>\n'
          '<Process Code="500"/>\n{body}\n</Report>\n</Reports>\n')


@pytest.mark.parametrize(("body", "message"), [
    ('<Failures Category="C" Code="D" StepID="1" PartIdx="4"/>',
     r'<Failures StepID="1"> at line 5: PartIdx=4 names no <ReportUnitHierarchy>'),
    ('<Failures Category="C" Code="D"/>', r"<Failures> at line 5: StepID \(the id of the step"),
    ('<Failures Code="D" StepID="1"/>', r'<Failures StepID="1"> at line 5: Category is missing'),
    ('<Failures Category="C" Code="D" StepID="1" Idx="0"/>\n<Binary FailIdx="3"><Data>eA==</Data>'
     "</Binary>", r"<Binary> at line 6: FailIdx=3 matches no <Failures Idx"),
    ('<ReportUnitHierarchy Idx="1" PN="a" SN="b" Rev="c"/>',
     r"<Report SN=\"S1\"> at line 2: no unit has Idx=0"),
    ('<ReportUnitHierarchy Idx="0" PN="a" SN="b"/>\n'
     '<ReportUnitHierarchy Idx="1" ParentIDX="5" PN="a" SN="c"/>',
     r'<ReportUnitHierarchy Idx="1" SN="c"> at line 6: parentIdx 5 names no unit'),
    ('<Step Id="1" Name="M" Status="Passed"/>',
     r'<Step Id="1" Name="M"> at line 5: a repair report \(UUR\) cannot hold test '
     r"steps"),
])
def test_broken_repair_reports(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(ConversionError, match=message):
        convert_text(tmp_path, REPAIR.replace("{body}", body))


def test_uur_header_needs_the_tested_process(tmp_path: Path) -> None:
    text = REPAIR.replace('<Process Code="10"/>', "").replace("{body}", "")
    with pytest.raises(ConversionError, match=r"<UUR> at line 3: the <UUR> header needs"):
        convert_text(tmp_path, text)


@pytest.mark.parametrize(("text", "message"), [
    ("<Reports/>", r"line 1: the root element is <Reports> without a namespace"),
    ('<TestResults xmlns="urn:IEEE-1636.1:2011:01:TestResults"/>',
     r"root element is <TestResults> in namespace urn:IEEE-1636.1:2011:01:TestResults"),
    (f"<Reports {WSXF}></Reports>", r"the file holds no <Report> element"),
    ("not xml at all", r"not well-formed XML at line 1, column 1"),
    (f"<Reports {WSXF}></Reports><x/>", r"not well-formed XML at line 1.*junk after"),
])
def test_not_a_wsxf_file(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConversionError, match=message) as caught:
        convert_text(tmp_path, text)
    assert not isinstance(caught.value, IncompleteFileError)


def test_first_problem_wins_and_names_its_report(tmp_path: Path) -> None:
    text = uut("")
    start, end = text.index("<Report "), text.index("</Reports>")
    good = text[start:end]
    bad = good.replace('SN="S1"', 'SN=""')
    with pytest.raises(ConversionError, match=r'<Report SN=""> at line 7: SN \(serial'):
        convert_text(tmp_path, text[:start] + good + bad + bad + text[end:])


# -- half-written files ----------------------------------------------------------------------------


def test_empty_file_is_incomplete(tmp_path: Path) -> None:
    for data in (b"", b"  \n", b"\xef\xbb\xbf"):
        with pytest.raises(IncompleteFileError):
            convert_text(tmp_path, data)


def test_every_prefix_of_a_fixture_is_incomplete_not_broken(tmp_path: Path) -> None:
    # A file still being written must be retried later, never moved to the error folder.
    data = (FIXTURES / "wsxf_nested.xml").read_bytes().rstrip()
    path = tmp_path / "partial.xml"
    for cut in range(1, len(data)):
        path.write_bytes(data[:cut])
        with pytest.raises(IncompleteFileError, match=r"ends early|empty"):
            convert(path)
    path.write_bytes(data)
    assert convert(path)


def test_a_broken_report_before_the_end_of_a_half_written_file_waits(tmp_path: Path) -> None:
    bad = uut("").replace('SN="S1"', 'SN=""')
    with pytest.raises(IncompleteFileError):
        convert_text(tmp_path, bad.replace("</Reports>", "<Report type="))


# -- hostile files ---------------------------------------------------------------------------------


def test_billion_laughs_is_refused(tmp_path: Path) -> None:
    entities = '<!ENTITY lol0 "lol">' + "".join(
        f'<!ENTITY lol{n} "{("&lol" + str(n - 1) + ";") * 10}">' for n in range(1, 10))
    text = f'<?xml version="1.0"?><!DOCTYPE Reports [{entities}]>' + uut("").replace(
        'Rev="A"', 'Rev="&lol9;"')
    with pytest.raises(ConversionError, match="DOCTYPE or ENTITY"):
        convert_text(tmp_path, text)


def test_external_entity_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    text = (f'<!DOCTYPE Reports [<!ENTITY x SYSTEM "{secret.as_uri()}">]>'
            + uut("").replace('Rev="A"', 'Rev="&x;"'))
    with pytest.raises(ConversionError, match="DOCTYPE or ENTITY") as caught:
        convert_text(tmp_path, text)
    assert "TOP-SECRET" not in str(caught.value)


def test_doctype_beyond_the_first_kilobytes_is_refused_too(tmp_path: Path) -> None:
    text = ("<!--" + "x" * 100_000 + "-->\n"
            '<!DOCTYPE Reports [<!ENTITY a "b">]>' + uut(""))
    with pytest.raises(ConversionError, match=r"DOCTYPE or ENTITY \(line 2\)"):
        convert_text(tmp_path, text)


def test_doctype_text_inside_the_report_is_only_text(tmp_path: Path) -> None:
    text = in_main('<Step Id="2" Name="V" Status="Passed">'
                   "<ReportText><![CDATA[<!DOCTYPE html> <!ENTITY]]></ReportText></Step>")
    [report] = convert_text(tmp_path, text)
    assert report["root"]["steps"][0]["reportText"] == "<!DOCTYPE html> <!ENTITY"


def test_huge_file_is_refused_without_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "huge.xml"
    with open(path, "wb") as fh:  # sparse: no disk space, no time
        fh.truncate(MAX_FILE_SIZE + 1)
    with pytest.raises(ConversionError, match=r"200 MB.*are refused"):
        convert(path)


def test_deep_nesting_is_refused(tmp_path: Path) -> None:
    depth = 100_000
    text = uut("<a>" * depth + "</a>" * depth)
    with pytest.raises(ConversionError, match=r"nested more than \d+ deep"):
        convert_text(tmp_path, text)


def test_deep_wrml_step_chain_is_refused(tmp_path: Path) -> None:
    chain = "".join(f'<Step StepID="{n}" ParentStepID="{n - 1}" Name="s" Status="Passed"/>'
                    for n in range(2, 400))
    text = uut("", ns=WRML, steps='<Step StepID="1" Name="M" Status="Passed"/>' + chain)
    with pytest.raises(ConversionError, match=r"nested more than \d+ deep"):
        convert_text(tmp_path, text)


# -- encodings -------------------------------------------------------------------------------------


def test_utf16_and_declared_latin1_files(tmp_path: Path) -> None:
    text = uut("<MiscInfo Description=\"Ort\">Tromsø</MiscInfo>")
    [report] = convert_text(tmp_path, text.encode("utf-16"))
    assert report["miscInfos"][0]["text"] == "Tromsø"
    latin = '<?xml version="1.0" encoding="iso-8859-1"?>\n' + text
    [report] = convert_text(tmp_path, latin.encode("latin-1"))
    assert report["miscInfos"][0]["text"] == "Tromsø"


def test_configured_encoding_applies_to_files_without_declaration(tmp_path: Path) -> None:
    text = uut("<MiscInfo Description=\"Ort\">Tromsø</MiscInfo>").encode("cp1252")
    context = ConverterContext(station_name="ST", encoding="cp1252")
    [report] = convert_text(tmp_path, text, context)
    assert report["miscInfos"][0]["text"] == "Tromsø"
    # Without a configured encoding, an undeclared file that is not UTF-8 is cp1252, as the
    # text formats are read.
    [report] = convert_text(tmp_path, text)
    assert report["miscInfos"][0]["text"] == "Tromsø"


def test_configured_encoding_beats_the_declaration(tmp_path: Path) -> None:
    text = ('<?xml version="1.0" encoding="utf-8"?>\n'
            + uut("<MiscInfo Description=\"Ort\">Tromsø</MiscInfo>")).encode("cp1252")
    with pytest.raises(ConversionError, match="not well-formed"):
        convert_text(tmp_path, text)  # declared UTF-8: the byte 0xF8 is invalid
    context = ConverterContext(station_name="ST", arguments={"encoding": "cp1252"})
    [report] = convert_text(tmp_path, text, context)
    assert report["miscInfos"][0]["text"] == "Tromsø"


# -- detection -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("head", "score", "reason"), [
    (f"<Reports {WSXF}>", 0.98, "WSXF namespace"),
    (f'\ufeff<?xml version="1.0"?>\n<!-- c -->\n<w:Reports xmlns:w="{WSXF[7:-1]}">', 0.98,
     "WSXF namespace"),
    (f'<Reports xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" {WRML}>', 0.95,
     "legacy WRML"),
    ("<Reports>", 0.0, "without the WSXF namespace"),
    ('<trc:TestResultsCollection xmlns:trc="urn:IEEE-1636.1:2011:01:TestResultsCollection">',
     0.0, "ATML"),
    ("<TSReport>", 0.0, "XML root <TSReport>, not WSXF"),
    ('<!DOCTYPE Reports [<!ENTITY a "b">]>', 0.0, "DOCTYPE"),
    ('{"type": "T"}', 0.0, ""),
    ("", 0.0, ""),
])
def test_detect_by_root_namespace(head: str, score: float, reason: str) -> None:
    found, why = CONVERTER.detect_with_reason(Path("whatever.dat"), head.encode("utf-8"))
    assert found == score
    assert reason in why
    assert CONVERTER.detect(Path("x.xml"), head.encode("utf-8")) == score


def test_detect_reads_utf16_heads() -> None:
    head = f"<Reports {WSXF}>".encode("utf-16")
    assert CONVERTER.detect(Path("x.xml"), head) == 0.98
    assert CONVERTER.detect(Path("x.xml"), head[2:]) == 0.98  # no BOM, little-endian
    assert CONVERTER.detect(Path("x.xml"), f"<Reports {WSXF}>".encode("utf-16-be")) == 0.98


def test_registry_knows_the_converter_by_name(tmp_path: Path) -> None:
    registry = ConverterRegistry(enabled=["WATSStandardJsonConverter",
                                          "WATSStandardXMLConverter"])
    converter = registry.create("WATSStandardXMLConverter")
    assert isinstance(converter, WATSStandardXMLConverter)
    path = FIXTURES / "wrml_flat.xml"
    chosen = registry.choose(path, path.read_bytes(), auto_detect=True)
    assert chosen is not None
    assert chosen[1].startswith("WATSStandardXMLConverter: detect 0.95")


# -- garbage never raises anything but ConversionError ---------------------------------------------


def _only_conversion_errors(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    try:
        reports = convert(path)
    except ConversionError:
        return
    for report in reports:
        json.dumps(report)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=400))
def test_arbitrary_bytes_raise_only_conversion_errors(
        tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    _only_conversion_errors(tmp_path_factory.mktemp("bytes") / "x.xml", data)


_TOKENS = st.sampled_from([
    f"<Reports {WSXF}>", f"<Reports {WRML}>", "</Reports>", '<Report type="UUT" SN="s" PN="p" ',
    '<Report type="UUR" SN="s" PN="p">', 'Result="Passed">', "</Report>", '<Process Code="1"/>',
    '<Step Id="1" Status="Passed">', '<Step StepID="2" ParentStepID="1" Status="Failed">',
    "</Step>", '<SequenceCall StepID="1" Name="x"/>', '<NumericLimit NumericValue="1" '
    'CompOperator="GELE" LowLimit="0" HighLimit="2"/>', '<PassFail StepID="2"/>', "<Loop ",
    'num="2"/>', '<Chart StepID="2" idx="0"/>', '<Chart StepID="2" idx="1"><Data>AAAA</Data>',
    "</Chart>", '<UUR UserLoginName="u">', "</UUR>", '<Failures Category="c" Code="d" '
    'StepID="1" PartIdx="0"/>', '<Binary FailIdx="0"><Data>eA==</Data></Binary>',
    '<ReportUnitHierarchy Idx="0" PN="p" SN="s"/>', "<Prop Type='Array'><Value ID='[x]'>",
    "</Value></Prop>", '<AdditionalData Name="a">', "</AdditionalData>", "&amp;", "&lt;", " ",
])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tokens=st.lists(_TOKENS, max_size=30))
def test_wsxf_like_input_raises_only_conversion_errors(
        tmp_path_factory: pytest.TempPathFactory, tokens: list[str]) -> None:
    _only_conversion_errors(tmp_path_factory.mktemp("tokens") / "x.xml",
                            "".join(tokens).encode("utf-8"))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(p.name for p in FIXTURES.glob("*.xml"))),
       edits=st.lists(st.tuples(st.integers(min_value=0), st.binary(max_size=3)), max_size=4))
def test_damaged_fixtures_raise_only_conversion_errors(
        tmp_path_factory: pytest.TempPathFactory, name: str,
        edits: list[tuple[int, bytes]]) -> None:
    data = bytearray((FIXTURES / name).read_bytes())
    for position, replacement in edits:
        at = position % (len(data) + 1)
        data[at:at + len(replacement)] = replacement
    _only_conversion_errors(tmp_path_factory.mktemp("damaged") / name, bytes(data))

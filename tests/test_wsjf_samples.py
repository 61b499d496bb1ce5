"""Golden tests: every WSJF sample from real exports converts, validates, and keeps its facts.

The samples are Virinco's official WSJF examples and two reports a WATS server accepted (see
../shared/samples/PROVENANCE.md); `_expected/` holds what pyWATS read back from the server for
the latter. Skipped when ../shared/samples is absent.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from pywats_client.converters import ConverterContext
from pywats_client.converters.wsjf import WATSStandardJsonConverter
from pywats_client.report.checks import finalize, validate
from pywats_client.report.model import (
    ReportDict,
    iter_steps,
    number_steps,
    parse_datetime,
    to_json_bytes,
)
from pywats_client.report.operators import numeric_status, string_status
from tests.conftest import each_sample, samples_in
from tests.conftest import sample as any_sample

NAMES = [path.name for path in samples_in("wsjf", "*.json")]
CONVERTER = WATSStandardJsonConverter()
CONTEXT = ConverterContext(station_name="Other station", location="Elsewhere",
                           purpose="Other", file_mtime=0.0)

FULL_UUT = "WATS - WSJF UUT Example file.json"
BARE_UUT = "WATS - WSJF UUT Example file Bare Minimum.json"
FULL_UUR = "WATS - WSJF UUR Example file.json"
PCBA_UUT = "new_report_example.json"
SMALL_UUR = "uur_example.json"


def sample(name: str) -> Path:
    return any_sample("wsjf", name)


def load(name: str) -> dict[str, Any]:
    """The sample as the service queues it: converted, then finalised and validated."""
    path = sample(name)
    data = path.read_bytes()
    converted = CONVERTER.convert(path, CONTEXT)
    assert isinstance(converted, ReportDict)
    report = finalize(converted, context=CONTEXT, converter_name=CONVERTER.name,
                      content_sha256=hashlib.sha256(data).hexdigest(), index=0,
                      source=str(path))
    return report


def expected(name: str) -> dict[str, Any]:
    path = any_sample("_expected", "pywats_report_model_testing", name)
    result: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return result


def steps(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for _, step in iter_steps(report["root"])]


def by_name(report: dict[str, Any], name: str) -> dict[str, Any]:
    found = [step for step in steps(report) if step.get("name") == name]
    assert len(found) == 1, f"{len(found)} steps named {name!r}"
    return found[0]


def counts(report: dict[str, Any]) -> Counter[str]:
    """Steps, measurements per kind, payloads and step statuses ("status P": n)."""
    tally: Counter[str] = Counter()
    for step in steps(report):
        tally["steps"] += 1
        tally[f"status {step['status']}"] += 1
        for key in ("numericMeas", "stringMeas", "booleanMeas"):
            tally[key] += len(step.get(key) or [])
        for key in ("seqCall", "chart", "attachment", "messagePopup", "callExe", "loop"):
            tally[key] += key in step
    return tally


def without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [without_nulls(item) for item in value]
    return value


# -- every sample --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", each_sample(NAMES))
def test_every_sample_converts_validates_and_keeps_every_field(name: str) -> None:
    report = load(name)
    validate(report)
    original = json.loads(sample(name).read_text(encoding="utf-8-sig"))
    # finalize() fills id, machineName, location, purpose, start and startUTC only when the
    # file has none; these files carry them all, so nothing is added or changed.
    assert to_json_bytes(report) == to_json_bytes(original)


@pytest.mark.parametrize("name", each_sample(NAMES))
def test_every_sample_is_detected_with_its_body(name: str) -> None:
    # Type, pn and sn, plus the body (root / uur) within the head: the surest score.
    path = sample(name)
    score, reason = CONVERTER.detect_with_reason(path, path.read_bytes()[:65536])
    kind = json.loads(path.read_text(encoding="utf-8-sig"))["type"]
    assert (score, reason) == (0.98, f"JSON object with type '{kind}', pn and sn")


@pytest.mark.parametrize("name", each_sample(NAMES))
def test_numeric_statuses_in_every_sample_agree_with_the_operator_rules(name: str) -> None:
    # Real exports are the proof of the operator semantics in limits.py: single-limit
    # operators compare with lowLimit (even LE), LEGE passes outside the range.
    report = load(name)
    if report["type"] != "T":
        return
    checked = 0
    for step in steps(report):
        for meas in step.get("numericMeas") or []:
            status = numeric_status(meas["compOp"], meas["value"], meas.get("lowLimit"),
                                    meas.get("highLimit"))
            assert status == meas["status"], (step["name"], meas)
            checked += 1
    assert checked > 0


# -- Virinco's full UUT example ------------------------------------------------------------------


def test_full_uut_header() -> None:
    report = load(FULL_UUT)
    assert {key: report[key] for key in ("type", "id", "pn", "sn", "rev", "processCode",
                                          "processName", "result", "machineName")} == {
        "type": "T", "id": "c168601e-1512-40fe-946c-e4117c613449", "pn": "FATPartNo111",
        "sn": "FATTest-111", "rev": "Rev1", "processCode": 10, "processName": "SW Debug",
        "result": "F", "machineName": "FAT Station"}
    # The odd UTC form of Virinco's examples is kept as written, and means the same instant.
    assert report["startUTC"] == "2020-01-01T08:00:00.Z"
    assert parse_datetime(report["startUTC"]) == parse_datetime(report["start"])
    assert report["uut"] == {
        "execTime": 123.67, "testSocketIndex": 999, "batchSN": "BatchSN",
        "comment": "This is a Comment", "errorCode": 999, "errorMessage": "Error code 999",
        "fixtureId": "FAT FixtureId", "user": "FAToper", "batchFailCount": None,
        "batchLoopIndex": None, "stepIdCausedUUTFailure": 7}


def test_full_uut_counts_and_ids() -> None:
    report = load(FULL_UUT)
    tally = counts(report)
    assert {key: tally[key] for key in ("steps", "numericMeas", "stringMeas", "booleanMeas",
                                        "seqCall", "chart", "attachment", "messagePopup",
                                        "callExe", "status P", "status F")} == {
        "steps": 26, "numericMeas": 14, "stringMeas": 8, "booleanMeas": 5, "seqCall": 6,
        "chart": 2, "attachment": 2, "messagePopup": 1, "callExe": 1, "status P": 16,
        "status F": 10}
    assert sorted(step["id"] for step in steps(report)) == [*range(11), *range(12, 27)]
    failed_uut = [step for step in steps(report) if step["causedUUTFailure"]]
    assert [(s["id"], s["name"]) for s in failed_uut] == [(7, "Multiple Numeric Step")]


def test_full_uut_limits_and_operators() -> None:
    report = load(FULL_UUT)
    (single_le,) = by_name(report, "SingleLEPass")["numericMeas"]
    assert single_le == {"compOp": "LE", "name": None, "status": "P", "unit": "V",
                         "value": 500.0, "highLimit": None, "lowLimit": 500.0}
    multi = by_name(report, "Multiple Numeric Step")["numericMeas"]
    assert [(m["name"], m["compOp"], m["lowLimit"], m["status"]) for m in multi] == [
        ("MultiLog", "LOG", None, "P"), ("MultiEQPass", "EQ", 500.0, "P"),
        ("MultiEQFail", "EQ", 501.0, "F"), ("MultiGEPass", "GE", 500.0, "P"),
        ("MultiGEFail", "GE", 501.0, "F")]
    ops = Counter(m["compOp"] for step in steps(report)
                  for m in (step.get("numericMeas") or []) + (step.get("stringMeas") or []))
    assert ops == {"LOG": 4, "EQ": 3, "GE": 4, "LE": 2, "GELE": 1, "Log": 2,
                   "IGNORECASE": 3, "CASESENSIT": 3}


def test_full_uut_statuses_are_imported_as_they_are() -> None:
    # Import mode: the file's statuses are the truth, even where the limits disagree.
    report = load(FULL_UUT)
    (meas,) = by_name(report, "SingleInsiensPass")["stringMeas"]
    assert meas["compOp"] == "CASESENSIT" and meas["value"] != meas["limit"]
    assert meas["status"] == "P"
    assert string_status(meas["compOp"], meas["value"], meas["limit"]) == "F"


def test_full_uut_charts() -> None:
    report = load(FULL_UUT)
    fibonacci = by_name(report, "Fibionacci")
    assert fibonacci["numericMeas"][0]["value"] == 28.9230769230769
    chart = fibonacci["chart"]
    assert (chart["chartType"], chart["label"], len(chart["series"])) == (
        "Line", "Fibonacci numbers", 2)
    ys = [float(y) for y in chart["series"][0]["ydata"].split(";")]
    assert len(ys) == 13 and ys[-3:] == [55.0, 89.0, 144.0]
    current = by_name(report, "Current from burn-in test")["chart"]
    assert [s["name"] for s in current["series"]] == ["Current", "Mean", "LowLimit",
                                                      "HighLimit"]
    assert (current["xUnit"], current["yUnit"]) == ("min", "A")


def test_full_uut_attachments_and_other_payloads() -> None:
    report = load(FULL_UUT)
    exe = by_name(report, "Attach file")["attachment"]
    assert (exe["name"], exe["contentType"]) == ("winhlp32.exe", "application/x-msdownload")
    assert base64.b64decode(exe["data"], validate=True).startswith(b"MZ")
    png = by_name(report, "Attach Byte array")["attachment"]
    assert png["contentType"] == "image/png"
    assert base64.b64decode(png["data"], validate=True).startswith(b"\x89PNG\r\n\x1a\n")
    assert by_name(report, "Message Popup")["messagePopup"] == {"response": "Response text",
                                                                "button": 1}
    assert by_name(report, "Call Executable")["callExe"] == {"exitCode": 0.0}
    assert report["root"]["reportText"] == "Here is a report text"


def test_full_uut_misc_infos_and_sub_units() -> None:
    report = load(FULL_UUT)
    assert [(m["description"], m["text"], m["numeric"]) for m in report["miscInfos"]] == [
        ("MiscInfoNumeric", None, 100), ("MiscInfoString", "Hello", None),
        ("InvalidXML", "This is a test with < and >", None)]
    assert [(u["partType"], u["pn"], u["rev"], u["sn"]) for u in report["subUnits"]] == [
        ("PCBA", "SubPartNo1", "Rev2", "SubPartSN1"), ("MODULE", "SubPartNo2", "Rev3",
                                                       "SubPartSN2")]


# -- Virinco's bare minimum UUT --------------------------------------------------------------------


def test_bare_minimum_uut() -> None:
    report = load(BARE_UUT)
    tally = counts(report)
    assert (tally["steps"], tally["numericMeas"], tally["stringMeas"], tally["booleanMeas"]) == (
        11, 4, 3, 3)
    assert [step["id"] for step in steps(report)] == list(range(11))
    assert report["root"]["status"] == "F" and report["result"] == "F"
    # The file says the sequence passed while a step in it failed: kept as the file says.
    sequence = by_name(report, "Pass/Fail tests")
    assert sequence["status"] == "P"
    assert [s["status"] for s in sequence["steps"]] == ["P", "F"]
    assert [m["name"] for m in sequence["steps"][1]["booleanMeas"]] == ["Pass", "Fail"]
    assert report["root"]["seqCall"]["version"] == " "  # not trimmed
    assert {m["compOp"] for s in steps(report) for m in s.get("stringMeas") or []} == {"Log"}
    assert report["uut"]["user"] == "OperationsTest"
    assert [k for k, v in report["uut"].items() if v is not None] == ["user"]
    assert "productName" in report and report["productName"] is None


# -- Virinco's full UUR example ------------------------------------------------------------------


def test_full_uur_header() -> None:
    report = load(FULL_UUR)
    assert (report["type"], report["processCode"], report["processName"], report["result"]) == (
        "R", 500, "Repair", "P")
    uur = report["uur"]
    assert (uur["user"], uur["processCode"], uur["processName"]) == ("TestUser", 10, "SW Debug")
    assert uur["refUUT"] == "b6c95876-cb19-4c43-a010-7e51a86b0886"
    assert uur["execTime"] == 1012.67 and uur["comment"] == "Hello world"
    assert parse_datetime(uur["confirmDate"]).tzinfo is None  # naive, as written
    assert parse_datetime(uur["finalizeDate"]).microsecond == 725786  # 7 digits, cut
    assert "root" not in report and "uut" not in report


def test_full_uur_sub_units_and_failures() -> None:
    report = load(FULL_UUR)
    units = report["subUnits"]
    assert [(u["idx"], u["parentIdx"], u["sn"]) for u in units] == [
        (0, None, "UURTestSerialNumber"), (1, 0, "FATTest-4106"), (3, 0, "FATTest-520")]
    assert [len(u["failures"]) for u in units] == [3, 1, 1]
    first = units[0]["failures"][0]
    assert {k: first[k] for k in ("category", "code", "comRef", "funcBlock", "refStepId")} == {
        "category": "Solder Process", "code": "Appearance", "comRef": "R55",
        "funcBlock": "F16", "refStepId": 16}
    assert units[1]["failures"][0]["artNumber"] == "12345"
    assert units[1]["failures"][0]["artVendor"] == "Test vendor"
    assert units[2]["failures"][0]["comment"] == "Failure on subunit FATTest-520 "


def test_full_uur_failure_attachment() -> None:
    report = load(FULL_UUR)
    (attachment,) = report["subUnits"][0]["failures"][0]["attachments"]
    assert (attachment["name"], attachment["contentType"], attachment["id"]) == (
        "FATTest-4106", "image/png", "14e90139-3169-4071-8556-99dda0de6ced")
    data = base64.b64decode(attachment["data"], validate=True)
    # A whole JPEG (start and end markers), whatever the content type says.
    assert data.startswith(b"\xff\xd8\xff") and data.endswith(b"\xff\xd9")
    assert len(data) == 6813
    assert [("attachments" in f) for u in report["subUnits"] for f in u["failures"]] == [
        True, False, False, False, False]


# -- a PCBA test report accepted by a WATS server ---------------------------------------------


def test_pcba_uut_counts_statuses_and_loops() -> None:
    report = load(PCBA_UUT)
    tally = counts(report)
    assert {key: tally[key] for key in ("steps", "numericMeas", "stringMeas", "booleanMeas",
                                        "seqCall", "loop", "status P", "status D",
                                        "status S")} == {
        "steps": 281, "numericMeas": 173, "stringMeas": 9, "booleanMeas": 11, "seqCall": 33,
        "loop": 78, "status P": 203, "status D": 72, "status S": 6}
    iterations = [(path, s) for path, s in iter_steps(report["root"])
                  if "loop" in s and s["loop"]["idx"] is not None]
    assert [(s["id"], s["name"], s["loop"]["idx"]) for _, s in iterations] == [
        (240, "Boost low point", 0)]
    summary = by_name(report, "Max FAN speed")["loop"]
    assert summary == {"idx": None, "num": 2, "endingIndex": 2, "passed": 1, "failed": 1}


def test_pcba_uut_ids_are_numbered_in_tree_order() -> None:
    # The server numbers steps in tree order from 1; number_steps() does the same.
    report = load(PCBA_UUT)
    assert [step["id"] for step in steps(report)] == list(range(1, 282))
    renumbered = copy.deepcopy(report["root"])
    assert number_steps(renumbered, first=1) == 282
    assert renumbered == report["root"]


def test_pcba_uut_operators_and_exact_values() -> None:
    report = load(PCBA_UUT)
    ops = Counter(m["compOp"] for step in steps(report)
                  for m in (step.get("numericMeas") or []) + (step.get("stringMeas") or []))
    assert ops == {"GELE": 107, "LOG": 57, "IgnoreCase": 9, "GE": 3, "LE": 3, "LT": 2,
                   "LEGE": 1}
    hue = by_name(report, "RED LED ON")["numericMeas"][0]
    assert (hue["name"], hue["compOp"], hue["value"], hue["lowLimit"], hue["highLimit"],
            hue["status"]) == ("Hue", "LEGE", 0.0, 5.0, 355.0, "P")  # outside the range
    (boost,) = by_name(report, "Measure Boost Voltage")["numericMeas"]
    assert (boost["compOp"], boost["lowLimit"], boost["highLimit"]) == ("LT", 5.0, None)
    assert report["root"]["totTime"] == report["uut"]["execTime"] == 148.9191064


def test_pcba_uut_keeps_what_the_server_would_trim() -> None:
    # The server trims trailing blanks (v1_differences.txt); the client sends what it read.
    report = load(PCBA_UUT)
    assert [u["rev"] for u in report["subUnits"]] == ["01     ", "03  "]
    assert report["subUnits"][1]["partType"] == "VirincoPWR SEC BD FP S 1800/  "
    assert report["uut"]["fixtureId"] == "290473  #84"


def test_pcba_uut_matches_what_the_server_gave_back() -> None:
    report = load(PCBA_UUT)
    loaded = expected("uut_loaded.json")
    # Re-submitted under a new id and a suffixed serial number at another time.
    assert loaded["sn"] == report["sn"] + "_roundtrip"
    for key in ("type", "pn", "rev", "processCode", "result", "machineName", "location",
                "purpose"):
        assert report[key] == loaded[key], key
    assert without_nulls(report["uut"]) == loaded["uut"]
    assert [{k: m[k] for k in ("description", "text")} for m in report["miscInfos"]] == \
        loaded["miscInfos"]
    assert [(u["pn"], u["sn"], u["rev"].rstrip(), u["partType"].rstrip())
            for u in report["subUnits"]] == [
        (u["pn"], u["sn"], u["rev"], u["partType"]) for u in loaded["subUnits"]]
    # The pyWATS dump leaves loop steps out and fills seqCall with defaults; every other
    # field of every step it kept is what we send.
    ours = {step["id"]: without_nulls(step) for step in steps(report)}
    theirs = [step for _, step in iter_steps(loaded["root"])]
    assert len(theirs) == 77
    for step in theirs:
        mine = ours[step["id"]]
        for key in set(mine) | set(step):
            if key not in ("steps", "loop", "seqCall"):
                assert mine.get(key) == step.get(key), (step["id"], key)


# -- a repair report accepted by a WATS server ------------------------------------------------


def test_small_uur_matches_what_the_server_gave_back() -> None:
    report = load(SMALL_UUR)
    loaded = expected("uur_loaded.json")
    assert loaded["sn"] == report["sn"] + "_roundtrip"
    assert (report["processCode"], loaded["processCode"]) == (500, 500)
    for key in ("user", "comment", "execTime", "processCode", "processName", "refUUT"):
        assert report["uur"][key] == loaded["uur"][key], key
    for key in ("confirmDate", "finalizeDate"):  # "+00:00" comes back as "Z": same instant
        assert parse_datetime(report["uur"][key]) == parse_datetime(loaded["uur"][key])
    (unit,) = report["subUnits"]
    (their_unit,) = loaded["subUnits"]
    assert (unit["idx"], unit["partType"], unit["pn"], unit["rev"]) == (
        their_unit["idx"], their_unit["partType"], their_unit["pn"], their_unit["rev"])
    (failure,) = unit["failures"]
    # The server keeps refStepId, not the name of that step.
    assert failure["refStepName"] == "MainSequence Callback"
    assert {k: v for k, v in without_nulls(failure).items() if k != "refStepName"} == \
        their_unit["failures"][0]
    assert failure["refStepId"] == 0

"""ATMLConverter on NI TestStand's ATML sample files (../shared/samples/atml).

The Computer-Motherboard demo was run three times and written in ATML 2.02, 5.00 and 6.01: the
three must give the same steps, values and statuses. The FAT sequence exercises every step
type, operator and oddity (NaN, loops, custom statuses, sequence adapters); the production
report is a real TestStand 2014 run with Swedish step names.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from pywats_client.converters import ConverterContext, ConverterRegistry
from pywats_client.converters.atml import ATMLConverter
from pywats_client.report.model import iter_steps, to_json_bytes
from pywats_client.report.operators import numeric_passes
from pywats_client.service.pipeline import convert_file
from tests.conftest import each_sample, sample, samples_in

SAMPLE_FILES = samples_in("atml")
MOTHERBOARD = {
    "2.02": "ATML 2.02 [123456789][2 30 27 PM][5 15 2019].XML",
    "5.00": "ATML 5.00 [2 31 11 PM][5 15 2019].xml",
    "6.01": "ATML 6.01 [2 31 52 PM][5 15 2019].xml",
}
FAT = "TS2017_ATML2.02 - FATv1.XML"
PRODUCTION = "Report_LS2621-1002[Passed][9190300075][2019-03-11][15 06 37].xml"
OSLO = ZoneInfo("Europe/Oslo")
# ATML names no WATS process: the station's folder says which (here SW Debug, 10).
CONTEXT = ConverterContext(station_name="ST-01", location="Line 3", purpose="Production",
                           timezone=OSLO, file_mtime=1_777_777_777.0,
                           defaults={"process_code": 10})
CONVERTER = ATMLConverter()


def reports(name: str, converter: ATMLConverter = CONVERTER) -> list[dict[str, Any]]:
    """The finalised, validated reports of a sample, as the service makes them."""
    return convert_file(sample("atml", name), converter, CONTEXT).reports


def only_report(name: str) -> dict[str, Any]:
    [report] = reports(name)
    return report


def steps_of(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for _, step in iter_steps(report["root"])]


def named(report: dict[str, Any], name: str, nth: int = 0) -> dict[str, Any]:
    return [step for step in steps_of(report) if step["name"] == name][nth]


def counts(report: dict[str, Any]) -> Counter[str]:
    found: Counter[str] = Counter()
    for step in steps_of(report):
        found["steps"] += 1
        found[f"status {step['status']}"] += 1
        for key in ("numericMeas", "stringMeas", "booleanMeas"):
            found[key] += len(step.get(key, []))
        for key in ("seqCall", "messagePopup", "callExe", "additionalResults", "loop"):
            found[key] += key in step
    return found


# -- every sample ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", each_sample(SAMPLE_FILES))
def test_sample_converts_to_valid_wsjf_the_same_way_twice(path: Path) -> None:
    first = convert_file(path, CONVERTER, CONTEXT).reports  # validated by finalize()
    second = convert_file(path, ATMLConverter(), CONTEXT).reports
    assert len(first) == 1
    assert to_json_bytes(first[0]) == to_json_bytes(second[0])
    assert json.loads(to_json_bytes(first[0])) == first[0]
    score, why = CONVERTER.detect_with_reason(path, path.read_bytes()[:65536])
    assert score >= 0.95, why


@pytest.mark.parametrize("path", each_sample(SAMPLE_FILES))
def test_auto_detection_picks_atml(path: Path) -> None:
    detection = ConverterRegistry().detect(path, path.read_bytes()[:65536])
    assert detection.name == "ATMLConverter", detection.reason


@pytest.mark.parametrize("path", each_sample(SAMPLE_FILES))
def test_every_numeric_status_agrees_with_its_limits(path: Path) -> None:
    """TestStand judged the values; judged again by limits.py they must agree, which checks
    the operators, limit order, thresholds and units read from the file."""
    [report] = convert_file(path, CONVERTER, CONTEXT).reports
    checked = 0
    for step in steps_of(report):
        if step["status"] not in ("P", "F"):
            continue
        for meas in step.get("numericMeas", []):
            if "value" in meas and meas["status"] in ("P", "F"):
                passes = numeric_passes(meas["compOp"], meas["value"], meas.get("lowLimit"),
                                        meas.get("highLimit"))
                assert passes == (meas["status"] == "P"), (step["name"], meas)
                checked += 1
    assert checked > 0


# -- the motherboard demo in three dialects -------------------------------------------------


def test_motherboard_2_02_header() -> None:
    report = only_report(MOTHERBOARD["2.02"])
    assert {k: report[k] for k in ("type", "id", "sn", "pn", "rev", "processCode", "result",
                                   "machineName", "location", "purpose", "start",
                                   "startUTC")} == {
        "type": "T", "id": "33efe64e-770d-11e9-826e-00155d017250", "sn": "123456789",
        "pn": "Ragnar123", "rev": "", "processCode": 10, "result": "F",
        "machineName": "TS-2016-BETA", "location": "Line 3", "purpose": "Production",
        "start": "2019-05-15T14:30:27.058+02:00", "startUTC": "2019-05-15T12:30:27.058Z",
    }
    assert report["uut"] == {"user": "administrator", "execTime": pytest.approx(2.17)}


@pytest.mark.parametrize("version", ["5.00", "6.01"])
def test_motherboard_5_00_and_6_01_name_the_step_that_failed_the_uut(version: str) -> None:
    report = only_report(MOTHERBOARD[version])
    keyboard = named(report, "Keyboard Test")
    assert keyboard["causedUUTFailure"] is True
    assert report["uut"]["stepIdCausedUUTFailure"] == keyboard["id"] == 14
    assert report["result"] == "F"
    assert report["id"] == {"5.00": "4eca009c-770d-11e9-826e-00155d017250",
                            "6.01": "67294591-770d-11e9-826e-00155d017250"}[version]


@pytest.mark.parametrize("version", sorted(MOTHERBOARD))
def test_motherboard_steps(version: str) -> None:
    report = only_report(MOTHERBOARD[version])
    root = report["root"]
    assert root["name"] == "MainSequence"
    assert root["status"] == "F"
    assert root["seqCall"]["name"] == "MainSequence"
    assert root["seqCall"]["path"].endswith("Computer Motherboard Test Sequence VIC.seq")
    assert [s["name"] for s in root["steps"][:6]] == [
        "Add Partnumber", "Simulation Dialog", "Turn Vacuum Table On", "Powerup Test", "If",
        "CPU Test"]
    assert counts(report) == Counter({
        "steps": 24, "status P": 9, "status D": 8, "status S": 4, "status F": 3,
        "numericMeas": 2, "booleanMeas": 8, "seqCall": 3,
    })
    cpu = named(report, "CPU Test")
    assert cpu["stepType"] == "SequenceCall" and cpu["status"] == "P"
    assert cpu["seqCall"]["name"] == "CPU Test"
    assert [s["name"] for s in cpu["steps"]] == [
        "Register Test", "Instruction Set Test", "Cache Test", "FPU Test"]
    assert named(report, "Video Test")["numericMeas"] == [{
        "compOp": "GTLT", "status": "P", "unit": "microseconds", "value": 5.0,
        "lowLimit": 0.0, "highLimit": 10.0}]
    keyboard = named(report, "Keyboard Test")
    assert keyboard["numericMeas"] == [{"compOp": "GT", "status": "F", "value": 4.0,
                                        "lowLimit": 5.0}]
    assert keyboard["causedSeqFailure"] is True
    # 2.02 writes "Aborted"+"Skipped", 5.00 "UserDefined"+"Skipped", 6.01 "NotStarted".
    assert [named(report, n)["status"] for n in (
        "CPU Diagnostics", "ROM Diagnostics", "RAM Diagnostics", "Video Diagnostics")] == ["S"] * 4
    assert named(report, "Keyboard Diagnostics")["booleanMeas"] == [{"status": "F"}]
    assert named(report, "If")["reportText"] == "{True}"
    assert named(report, "Turn Vacuum Table Off")["group"] == "C"
    assert named(report, "Add Partnumber")["group"] == "S"
    assert named(report, "Register Test")["tsGuid"] == "ID#:0GGTqrEX5hGzYpiQlqYQ+D"


def _comparable(step: dict[str, Any], root: bool = True) -> dict[str, Any]:
    """A step without what differs between runs (times) or dialects (the root's TestStand id,
    the critical failure stack that ATML 2.02 does not write)."""
    out = {k: v for k, v in step.items()
           if k not in ("start", "totTime", "causedUUTFailure", "steps")}
    if root:
        out.pop("tsGuid", None)
    out["steps"] = [_comparable(child, root=False) for child in step.get("steps", [])]
    return out


def test_the_three_dialects_give_the_same_steps_values_and_statuses() -> None:
    trees = {version: _comparable(only_report(name)["root"])
             for version, name in MOTHERBOARD.items()}
    assert trees["2.02"] == trees["5.00"]
    assert trees["5.00"] == trees["6.01"]
    headers = [{k: r[k] for k in ("sn", "pn", "result", "machineName")} | {
        "user": r["uut"]["user"]} for r in (only_report(n) for n in MOTHERBOARD.values())]
    assert headers[0] == headers[1] == headers[2]


# -- the FAT sequence ---------------------------------------------------------------------------


def test_fat_header_and_counts() -> None:
    report = only_report(FAT)
    assert report["sn"] == "19008.8905787"
    assert report["pn"] == "NA"  # the UUT has no part number, and none is configured
    assert report["machineName"] == "TALLENOVO1"
    assert report["result"] == "F"
    assert report["start"] == "2019-05-08T14:52:56.753+02:00"
    assert report["uut"] == {"user": "administrator", "execTime": pytest.approx(200.65)}
    assert counts(report) == Counter({
        "steps": 185, "status P": 49, "status F": 46, "status D": 38, "status S": 52,
        "numericMeas": 88, "stringMeas": 8, "booleanMeas": 18, "seqCall": 20,
        "messagePopup": 2, "callExe": 1, "additionalResults": 2, "loop": 5,
    })


def test_fat_part_number_and_process_come_from_the_options() -> None:
    converter = ATMLConverter(part_number="FATPartNo", revision="Rev1", process_code="50",
                              process_name="PCBA test")
    [report] = reports(FAT, converter)
    assert (report["pn"], report["rev"], report["processCode"], report["processName"]) == (
        "FATPartNo", "Rev1", 50, "PCBA test")


def test_fat_every_comparison_operator() -> None:
    report = only_report(FAT)
    sequence = named(report, "Numeric tests with all ComOp")
    assert sequence["seqCall"] == {"path": sequence["seqCall"]["path"],
                                   "name": "Comparison Operator", "version": "1.1.0.64"}
    found = {s["name"]: (s["status"], s["numericMeas"][0]) for s in sequence["steps"][:18]}
    for op in ("GT", "LT", "GE", "LE", "GTLT", "GELE", "GELT", "GTLE", "LTGT", "LEGE", "LEGT",
               "LTGE", "LOG"):
        assert found[op][1]["compOp"] == op
    assert found["EQ"] == ("F", {"compOp": "EQ", "status": "F", "unit": "Volt", "value": 0.0,
                                 "lowLimit": 9.0})
    assert found["LE"][1] == {"compOp": "LE", "status": "P", "unit": "Volt", "value": 0.0,
                              "lowLimit": 9.0}
    assert found["LTGT"] == ("P", {"compOp": "LTGT", "status": "P", "unit": "Volt",
                                   "value": 0.0, "lowLimit": 9.0, "highLimit": 11.0})
    assert "lowLimit" not in found["LOG"][1]
    # "Equal within threshold": nominal 5 with 10 %, 10 ppm, or +-10 as absolute limits.
    assert (found["EQT - PERCENTAGE"][1]["lowLimit"], found["EQT - PERCENTAGE"][1]["highLimit"]
            ) == (4.5, 5.5)
    assert found["EQT - PPM"][1]["lowLimit"] == pytest.approx(4.99995)
    assert found["EQT - PPM"][1]["highLimit"] == pytest.approx(5.00005)
    assert found["EQT - DELTA"] == ("P", {"compOp": "GELE", "status": "P", "unit": "Volt",
                                          "value": 0.0, "lowLimit": -5.0, "highLimit": 15.0})
    multi = named(report, "All Comp Operators")
    assert [m["name"] for m in multi["numericMeas"]][:3] == [
        "Measurement EQ", "Measurement EQT - PRECENTAGE", "Measurement EQT - PPM"]
    assert len(multi["numericMeas"]) == 18 and multi["status"] == "F"


def test_fat_wats_step_types() -> None:
    report = only_report(FAT)
    wats = named(report, "WATS steps (WATS seq call)")
    assert wats["stepType"] == "WATS_SeqCall" and wats["seqCall"]["version"] == "1.1.0.64"
    et_nlt = named(report, "Numeric Limit Test", 1)
    assert et_nlt["stepType"] == "ET_NLT"
    assert et_nlt["numericMeas"] == [{"compOp": "GELE", "status": "P", "value": 0.0,
                                      "lowLimit": 0.0, "highLimit": 10.0}]
    msvt = named(report, "Multiple String value test")
    assert msvt["reportText"] == "Report text"
    assert msvt["stringMeas"] == [
        {"compOp": "CASESENSIT", "name": "Measurement 0", "value": "Response 0",
         "limit": "limit 0", "status": "F"},
        {"compOp": "LOG", "name": "Measurement 1", "value": "Response 1", "limit": "",
         "status": "P"},
        {"compOp": "CASESENSIT", "name": "Measurement 2", "value": "Response 2",
         "limit": "limit 2", "status": "F"},
    ]
    mpft = named(report, "Multiple Pass/Fail test")
    # TestStand allows a repeated name; WATS needs them unique within the step.
    assert mpft["booleanMeas"] == [{"name": "Meas TRUE", "status": "P"},
                                   {"name": "Meas FALSE", "status": "F"},
                                   {"name": "Meas TRUE [2]", "status": "P"}]
    xy = named(report, "XYGMNLT - 10 x1K")
    assert xy["reportText"] == "Report text"
    assert [m["value"] for m in xy["numericMeas"]] == [1.0, 2.0, 3.0]
    assert named(report, "Pass/Fail Test", 1)["booleanMeas"] == [{"status": "P"}]


def test_fat_values_wats_cannot_store_are_left_out_and_named() -> None:
    report = only_report(FAT)
    nan = named(report, "NLT with NAN")
    assert nan["status"] == "F" and "value" not in nan["numericMeas"][0]
    assert "NaN is not a finite number" in nan["reportText"]
    both = named(report, "MNLT with NAN and INF")
    assert [m.get("value") for m in both["numericMeas"]] == [None, None]
    assert [m["status"] for m in both["numericMeas"]] == ["F", "F"]
    assert "INF is not a finite number" in both["reportText"]


def test_fat_other_step_kinds() -> None:
    report = only_report(FAT)
    assert named(report, "Message Popup")["messagePopup"] == {"button": 2,
                                                              "response": "Response text"}
    assert named(report, "Call Executable")["callExe"] == {"exitCode": 0.0}
    # TestStand wrote the custom status "Tommy": unknown words are Done.
    assert named(report, "NLT with unvalid step status")["status"] == "D"
    assert named(report, "Statement")["status"] == "S"
    cropped = [s for s in steps_of(report) if s["name"].startswith("This step name has too")]
    assert len(cropped[0]["name"]) == 100
    text = named(report, "Report Text with new line")["reportText"]
    assert text.startswith('6 lines to follow below ending with ":"') and text.count("\n") == 7
    assert named(report, "Sub seq with error")["status"] == "S"
    assert named(report, "Cleanup step")["group"] == "C"
    wait = named(report, "Wait for Sub Seq in new Thread")
    assert wait["stepType"] == "NI_Wait" and len(wait["steps"]) == 3


def test_fat_loops() -> None:
    report = only_report(FAT)
    looping = named(report, "Looping")
    assert [(s["name"], s["loop"]) for s in looping["steps"]] == [
        ("NLT loop with all results", {"num": 3, "passed": 3, "failed": 0, "endingIndex": 3}),
        ("NLT loop with all results", {"idx": 0}),
        ("NLT loop with all results", {"idx": 1}),
        ("NLT loop with all results", {"idx": 2}),
        ("NLT loop with one result", {"num": 8, "passed": 5, "failed": 3, "endingIndex": 8}),
    ]
    assert looping["steps"][4]["numericMeas"][0]["value"] == 6.997411870719


def test_fat_test_steps_that_run_a_sequence() -> None:
    report = only_report(FAT)
    # A numeric test whose post action calls a sequence: the test, then the call.
    post = [s for s in steps_of(report) if s["name"] == "NLT - Call sub seq from test step"]
    assert [s["stepType"] for s in post] == ["NumericLimitTest", "SequenceCall"]
    assert post[0]["numericMeas"][0]["status"] == "F"
    assert post[1]["seqCall"]["name"] == "SubSeq"
    assert [s["name"] for s in post[1]["steps"]] == ["SubSeq test 1", "SubSeq test 2",
                                                      "SubSeq test 3"]
    # A numeric test run by the sequence adapter: the test, then the sequence it ran.
    adapter = [s for s in steps_of(report)
               if s["name"] == "NLT SeqCal adapter with additional results"]
    assert [s["stepType"] for s in adapter] == ["NumericLimitTest", "SequenceCall"]
    assert adapter[0]["numericMeas"][0]["value"] == 5.0
    assert adapter[1]["seqCall"]["name"] == "SeqCallAdapterFunction"
    assert [s["name"] for s in adapter[1]["steps"]] == ["Set measurement value"]


def test_fat_additional_results() -> None:
    report = only_report(FAT)
    uut_step = named(report, "Additional Results - UUT")
    [description, container] = uut_step["additionalResults"]
    assert description == {"name": "Step Description", "props": [
        {"name": "Step Description", "type": "String",
         "value": "Records 2 Additional Result(s)"}]}
    props = container["props"][0]
    assert props["type"] == "Obj"
    assert {p["name"]: p.get("value") for p in props["props"]}["UUTPartNumber"] == "100200"
    # On a step that carries measurements they are kept as report text.
    nlt = named(report, "NLT - AdditionalResults")
    assert nlt["reportText"].splitlines() == [
        "NLT_AdditionalResults.Number: 65", "NLT_AdditionalResults.String: HeiHei",
        "NLT_AdditionalResults.Boolean: true", "Step Comment: Dette er en additional result"]
    assert "2d numeric array: [1; 2; 3; 4; 5; 6]" in named(
        report, "ET_NLT - AdditionalResults")["reportText"]


# -- the production report ----------------------------------------------------------------------


def test_production_report() -> None:
    report = only_report(PRODUCTION)
    assert {k: report[k] for k in ("id", "sn", "pn", "result", "machineName", "start")} == {
        "id": "6f320e46-884a-43ff-b09e-b4e019e3db49", "sn": "9190300075", "pn": "LS2621-1002",
        "result": "P", "machineName": "MEMK1263", "start": "2019-03-11T15:06:37.402+01:00",
    }
    assert report["uut"] == {"user": "administrator", "execTime": pytest.approx(233.909)}
    assert counts(report) == Counter({
        "steps": 209, "status P": 116, "status D": 87, "status S": 6, "numericMeas": 45,
        "stringMeas": 2, "booleanMeas": 60, "seqCall": 7, "additionalResults": 12,
        "messagePopup": 5,
    })
    supply = named(report, "TEQP_47067: Kontrollera testbänkens 24 Vdc matning")
    assert supply["numericMeas"] == [{"compOp": "GELE", "status": "P", "unit": "V",
                                      "value": 24.2271576, "lowLimit": 22.0, "highLimit": 25.0}]
    assert supply["totTime"] == 0.242281 and supply["group"] == "M"
    assert supply["start"] == "2019-03-11T15:06:50.114+01:00"
    assert named(report, "UUTN_77144: ELR - Läs ström från last")["numericMeas"][0] == {
        "compOp": "LE", "status": "P", "value": 21.029, "lowLimit": 100.0}
    assert named(report, "UUTS_44115: Access, Kontrollerar kortets parametrar")["stringMeas"] == [
        {"compOp": "IGNORECASE", "value": "90300075", "limit": "90300075", "status": "P"}]
    assert named(report, "UUTN_61190: Kontrollera Laddningskurva")["numericMeas"][0][
        "compOp"] == "EQ"
    call = named(report, "Sätt Nätspänning 400 Vac")
    assert call["seqCall"] == {"path": "C:\\Test\\P2\\Test_P2_Access.seq",
                               "name": "SetMainPower", "version": ""}
    assert named(report, "UINP_16555: Kontrollera klockan")["messagePopup"] == {"button": 1}
    part = named(report, "PART_29084: Artikelnummer,Serienummer")["additionalResults"]
    assert part[2] == {"name": "Motorns Serienummer", "props": [
        {"name": "Motorns Serienummer", "type": "String", "value": "9190300075-0"}]}

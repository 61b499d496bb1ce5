"""WATSStandardXMLConverter on Virinco's WSXF and legacy WRML sample files (../shared/samples).

The samples are server exports of a FAT test sequence that has one passing and one failing step
per comparison operator; the WSJF example of the same sequence shows how the server writes the
same steps in WSJF, so the two are compared where they overlap.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from pywats_client.converters import ConverterContext
from pywats_client.converters.wsxf import WATSStandardXMLConverter
from pywats_client.report.checks import finalize
from pywats_client.report.model import to_json_bytes
from pywats_client.report.operators import numeric_passes
from tests.conftest import SAMPLES, each_sample, samples_in
from tests.conftest import sample as any_sample

SAMPLE_FILES = samples_in("wsxf", "*.xml")
FAT_WSJF = SAMPLES / "wsjf" / "WATS - WSJF UUT Example file.json"
CONTEXT = ConverterContext(station_name="ST-01", location="Line 3", purpose="Production",
                           file_mtime=1_777_777_777.0)
CONVERTER = WATSStandardXMLConverter()


def sample(name: str) -> Path:
    return any_sample("wsxf", name)


def only_report(name: str) -> dict[str, Any]:
    [report] = CONVERTER.convert(sample(name), CONTEXT)
    return report


def all_steps(report: dict[str, Any]) -> list[dict[str, Any]]:
    found, stack = [], [report["root"]]
    while stack:
        step = stack.pop(0)
        found.append(step)
        stack[:0] = step.get("steps", [])
    return found


def by_name(steps: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {step["name"]: step for step in steps}


@pytest.mark.parametrize("path", each_sample(SAMPLE_FILES))
def test_sample_converts_to_valid_wsjf(path: Path) -> None:
    data = path.read_bytes()
    reports = CONVERTER.convert(path, CONTEXT)
    assert len(reports) == 1
    report = finalize(reports[0], context=CONTEXT, converter_name=CONVERTER.name,
                      content_sha256=hashlib.sha256(data).hexdigest(), index=0,
                      source=str(path))
    assert json.loads(to_json_bytes(report)) == report
    score, why = CONVERTER.detect_with_reason(path, data[:65536])
    assert score >= 0.95, why


def test_uut_wsxf_header() -> None:
    report = only_report("uut-wsxf.xml")
    assert {k: report[k] for k in ("type", "id", "sn", "pn", "rev", "processCode",
                                   "processName", "result", "machineName", "start",
                                   "startUTC")} == {
        "type": "T", "id": "D26DDF31-FD90-47A5-AF13-180404CDE8BE", "sn": "FATTest-422",
        "pn": "FATPartNo", "rev": "Rev1", "processCode": 10, "processName": "SW Debug",
        "result": "F", "machineName": "VIC-WS-RE-LT", "start": "2017-06-07T09:24:20.857+02:00",
        "startUTC": "2017-06-07T07:24:20.857Z",
    }
    assert report["uut"] == {"execTime": 123.67, "batchSN": "BatchSN",
                             "comment": "FAT Comment - can be 500 long",
                             "errorMessage": "Error code 999", "fixtureId": "FAT FixtureId",
                             "user": "FAToper"}
    assert report["miscInfos"] == [
        {"description": "MiscInfoNumeric", "text": None, "numeric": 100},
        {"description": "MiscInfoString", "text": "Hello", "numeric": None},
    ]
    assert [(u["partType"], u["sn"], u["position"]) for u in report["subUnits"]] == [
        ("PCBA", "SubPartSN1", 0), ("MODULE", "SubPartSN2", 1)]
    assert "origin" not in report


def test_uut_wsxf_step_tree() -> None:
    report = only_report("uut-wsxf.xml")
    steps = all_steps(report)
    assert len(steps) == 50
    assert [s["id"] for s in steps] == list(range(1, 51))  # server ids kept, tree order
    assert Counter(s["status"] for s in steps) == {"F": 25, "P": 23, "D": 2}
    assert [s["name"] for s in report["root"]["steps"]] == [
        "Numeric tests", "Pass/Fail tests", "StringValue tests", "Graphs", "Misc Features"]
    # 0/1 booleans of the 2017 export.
    assert [s["id"] for s in steps if s.get("causedUUTFailure")] == [6]
    assert report["root"]["seqCall"] == {"path": "Seq1", "name": "Seq1", "version": "1.0.0"}
    assert all("tsGuid" not in s for s in steps)  # TSGuid="" is "none"
    counts = [sum(len(s.get(key, [])) for s in steps)
              for key in ("numericMeas", "stringMeas", "booleanMeas")]
    assert counts == [64, 9, 6]


def test_uut_wsxf_every_operator_and_its_limits() -> None:
    numeric = by_name(only_report("uut-wsxf.xml")["root"]["steps"][0]["steps"])
    for name, step in numeric.items():
        if not name.startswith("Single") or name.startswith("SingleLog"):
            continue
        [meas] = step["numericMeas"]
        op = name.removeprefix("Single").removesuffix("Pass").removesuffix("Fail")
        assert meas["compOp"] == op
        assert step["status"] == ("P" if name.endswith("Pass") else "F"), name
        # The step verdict follows from value, operator and limits as WSJF states them; this
        # holds for LE and LT only because their HighLimit moved to lowLimit.
        assert numeric_passes(op, meas["value"], meas["lowLimit"], meas["highLimit"]) == (
            name.endswith("Pass")), name
        assert meas["unit"] == "V" and meas["name"] is None
    assert numeric["SingleLEPass"]["numericMeas"][0]["lowLimit"] == 500.0
    assert numeric["SingleLEPass"]["numericMeas"][0]["highLimit"] is None
    # Measurement statuses are imported as written, even where the step failed.
    assert numeric["SingleEQFail"]["numericMeas"][0]["status"] == "P"
    multi = numeric["Multiple Numeric Step"]["numericMeas"]
    assert len(multi) == 30 and multi[0]["name"] == "MultiLog"
    assert [m["status"] for m in multi].count("F") == 15
    assert numeric["SingleLogDone"]["status"] == "D"
    assert numeric["SingleLogDone"]["numericMeas"][0]["status"] == "P"


def test_uut_wsxf_pass_fail_strings_charts_attachments() -> None:
    report = only_report("uut-wsxf.xml")
    passfail, strings, graphs, misc = (by_name(s["steps"]) for s in report["root"]["steps"][1:])
    assert passfail["Multiple tests"]["booleanMeas"] == [
        {"name": "Pass", "status": "P"}, {"name": "Fail", "status": "F"},
        {"name": "PassSkipped", "status": "P"}]
    assert passfail["SinglePassDone"]["status"] == "D"
    assert strings["SingleCasePass"]["stringMeas"] == [
        {"compOp": "CASESENSIT", "name": None, "status": "P", "value": "CaseSensitive",
         "limit": "CaseSensitive"}]
    assert strings["Single"]["stringMeas"][0]["limit"] is None
    assert [m["value"] for m in strings["Multiple tests"]["stringMeas"]] == [
        "No compare", "CaseSensitive", "caseSensitive", "caseSensitive", "caseSensitive"]
    chart = graphs["Current from burn-in test"]["chart"]
    assert [s["name"] for s in chart["series"]] == ["Current", "Mean", "LowLimit", "HighLimit"]
    assert chart["series"][0] == {"dataType": "XYG", "name": "Current", "xdata": "0;1;2;3",
                                  "ydata": "60.72;61.886;62.6;0"}
    assert (chart["xUnit"], chart["yUnit"]) == ("min", "A")
    assert graphs["Fibionacci"]["chart"]["xUnit"] is None  # XUnit=""
    # The export was made without attachment contents: only the headers are there.
    assert misc["Attach file"]["attachment"] == {
        "name": "winhlp32.exe", "contentType": "application/x-msdownload", "data": ""}


def test_uut_wsxf_agrees_with_the_servers_wsjf_of_the_same_sequence() -> None:
    wsjf = json.loads(any_sample(FAT_WSJF).read_text(encoding="utf-8-sig"))
    report = only_report("uut-wsxf.xml")
    theirs, ours = by_name(all_steps(wsjf)), by_name(all_steps(report))
    compared = 0
    for name in ("SingleLog", "SingleEQPass", "SingleGEPass", "SingleLEPass",
                 "SingleGELEPass", "Fibionacci", "Current from burn-in test"):
        for mine, server in zip(ours[name]["numericMeas"], theirs[name]["numericMeas"],
                                strict=True):
            for key in ("compOp", "name", "unit", "value", "lowLimit", "highLimit"):
                assert mine[key] == server[key], (name, key)
                compared += 1
    assert compared == 9 * 6  # five single steps, one on the Fibonacci chart, three on Current
    for name in ("Fibionacci", "Current from burn-in test"):
        assert ours[name]["chart"] == theirs[name]["chart"]
    # "Multiple tests" is the name of a pass/fail and of a string step: look in their sequence.
    mine_pf = by_name(ours["Pass/Fail tests"]["steps"])["Multiple tests"]
    server_pf = by_name(theirs["Pass/Fail tests"]["steps"])["Multiple tests"]
    assert mine_pf["booleanMeas"] == server_pf["booleanMeas"]


def test_uut_wrml_rebuilds_the_tree() -> None:
    report = only_report("uut-wrml.xml")
    steps = all_steps(report)
    assert len(steps) == 53
    assert [s["id"] for s in steps] == list(range(1, 54))
    assert report["result"] == "T" and report["root"]["status"] == "T"
    assert [s["name"] for s in report["root"]["steps"]] == [
        "Numeric tests", "Pass/Fail tests", "StringValue tests", "Termination", "Graphs",
        "Misc Features"]
    assert [len(s["steps"]) for s in report["root"]["steps"]] == [31, 4, 5, 2, 2, 2]
    assert Counter(s["status"] for s in steps) == {"F": 24, "P": 23, "T": 3, "D": 2, "S": 1}
    assert all("loop" not in s for s in steps)  # <Loop /> without attributes
    assert report["uut"]["testSocketIndex"] == 999 and report["uut"]["errorCode"] == 999
    assert report["miscInfos"][2] == {"description": "InvalidXML",
                                      "text": "This is a test with < and >", "numeric": None}
    assert report["subUnits"] == [
        {"partType": "PCBA", "pn": "SubPartNo1", "rev": "Rev2", "sn": "SubPartSN1", "idx": 0},
        {"partType": "MODULE", "pn": "SubPartNo2", "rev": "Rev3", "sn": "SubPartSN2", "idx": 1}]
    termination = by_name(report["root"]["steps"][3]["steps"])
    assert [m["status"] for m in termination["Test1"]["numericMeas"]] == ["P", "S"]


def test_uut_wrml_binary_charts_and_attachments() -> None:
    report = only_report("uut-wrml.xml")
    graphs, misc = (by_name(s["steps"]) for s in report["root"]["steps"][4:])
    fibonacci = graphs["Fibionacci"]["chart"]
    assert fibonacci["series"][0] == {
        "dataType": "XYG", "name": "Fibionacci", "xdata": "0;1;2;3;4;5;6;7;8;9;10;11;12",
        "ydata": "0;1;1;2;3;5;8;13;21;34;55;89;144"}
    assert fibonacci["series"][1]["ydata"] == "28.923076923076923;28.923076923076923"
    current = graphs["Current from burn-in test"]["chart"]
    assert current["series"][0]["ydata"] == "60.72;61.886;62.6;0"
    exe = misc["Attach file"]["attachment"]
    assert (exe["name"], exe["contentType"]) == ("winhlp32.exe", "application/x-msdownload")
    assert base64.b64decode(exe["data"]).startswith(b"MZ")
    png = misc["Attach Byte array"]["attachment"]
    assert base64.b64decode(png["data"]).startswith(b"\x89PNG")


def test_wrml_and_wsxf_samples_state_the_same_limits() -> None:
    def limits(name: str) -> list[tuple[str, Any, Any, Any, Any]]:
        numeric = only_report(name)["root"]["steps"][0]["steps"]
        return [(s["name"], m["compOp"], m["value"], m["lowLimit"], m["highLimit"])
                for s in numeric for m in s["numericMeas"]]

    assert limits("uut-wrml.xml") == limits("uut-wsxf.xml")


def test_uur_wsxf() -> None:
    report = only_report("uur-wsxf.xml")
    assert (report["type"], report["result"], report["processCode"]) == ("R", "P", 500)
    assert report["uur"] == {
        "comment": "Comment on UUR", "user": "ragnar.engnes@virinco.com", "processCode": 10,
        "processName": "SW Debug", "refUUT": "9EE40DD0-7009-4CEA-92AB-7671C42EA86A",
        "confirmDate": "2017-07-07T07:18:24.770", "finalizeDate": "2017-07-07T07:19:56.570",
        "execTime": 122.0}
    main, first, second = report["subUnits"]
    assert (main["idx"], first["parentIdx"], first["position"]) == (0, 0, 1)
    assert main["failures"] == [{"category": "Solder Process", "code": "Appearance",
                                 "refStepId": 16, "comRef": "R55",
                                 "comment": "Failure on main unit"}]
    assert first["failures"] == [{"category": "Assembly Process", "code": "Missing component",
                                  "refStepId": 32, "comRef": "U16",
                                  "comment": "Failure on subunit"}]
    assert "failures" not in second
    assert report["miscInfos"] == [{"description": "Order number", "text": "1234567",
                                    "numeric": None,
                                    "id": "E5FFC4EE-B067-4FD8-B170-C7E64131942B"}]
    assert (report["location"], report["purpose"]) == ("", "")


def test_uur_wrml() -> None:
    report = only_report("uur-wrml.xml")
    assert (report["type"], report["result"], report["processCode"]) == ("R", "P", 500)
    assert report["uur"] == {"user": "FAToper", "processCode": 10}
    assert [u["sn"] for u in report["subUnits"]] == ["FATTest-810", "SubPartSN1", "SubPartSN2"]
    failures = report["subUnits"][0]["failures"]
    assert [(f["comRef"], f["refStepId"]) for f in failures] == [("U16", 32), ("R55", 16)]
    assert report["start"] == "2017-07-07T10:10:23.6540416+02:00"

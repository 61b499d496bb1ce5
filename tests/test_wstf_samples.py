"""WATSStandardTextConverter on Virinco's WSTF example file (../shared/samples/wstf)."""

from __future__ import annotations

import collections
import hashlib
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from pywats_client.converters import ConverterContext, ConverterRegistry
from pywats_client.converters.wstf import WATSStandardTextConverter
from pywats_client.errors import IncompleteFileError
from pywats_client.report.checks import finalize, validate
from pywats_client.report.model import ReportDict, to_json_bytes

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples"
SAMPLE = SAMPLES / "wstf" / "WatsStandardTextFormat.txt"
CEST = timezone(timedelta(hours=2))
# The sample names its process only ("SW Debug"): the code comes from the server's list.
CONTEXT = ConverterContext(station_name="ST-01", location="Line 3", purpose="Production",
                           timezone=CEST, defaults={"process_code": 50},
                           processes={"SW Debug": 10, "PCBA test": 50})
CONVERTER = WATSStandardTextConverter()


@pytest.fixture()
def sample() -> Path:
    if not SAMPLE.is_file():
        pytest.skip(f"WSTF sample not found at {SAMPLE}")
    return SAMPLE


def converted(path: Path) -> ReportDict:
    report = CONVERTER.convert(path, CONTEXT)
    assert isinstance(report, ReportDict)
    return report


def steps_of(step: dict[str, Any]) -> list[dict[str, Any]]:
    """Every step under `step`, in tree order."""
    found: list[dict[str, Any]] = []
    stack = list(reversed(step.get("steps", [])))
    while stack:
        child = stack.pop()
        found.append(child)
        stack.extend(reversed(child.get("steps", [])))
    return found


def test_sample_converts_and_validates(sample: Path) -> None:
    report = converted(sample)
    data = sample.read_bytes()
    final = finalize(report, context=CONTEXT, converter_name=CONVERTER.name,
                     content_sha256=hashlib.sha256(data).hexdigest(), index=0,
                     source=str(sample))
    validate(final)
    assert to_json_bytes(final) == to_json_bytes(finalize(
        converted(sample), context=CONTEXT, converter_name=CONVERTER.name,
        content_sha256=hashlib.sha256(data).hexdigest(), index=0))  # deterministic


def test_sample_header(sample: Path) -> None:
    report = converted(sample)
    assert {key: report[key] for key in (
        "type", "sn", "pn", "rev", "processCode", "processName", "result", "machineName",
        "start", "startUTC")} == {
        "type": "T", "sn": "423664753", "pn": "100200", "rev": "A", "processCode": 10,
        "processName": "SW Debug", "result": "F", "machineName": "VIC-WS-ML",
        # Only UTCStartDateTime is given: the local start is shown in the station's zone.
        "start": "2014-07-04T14:09:04+02:00", "startUTC": "2014-07-04T12:09:04Z"}
    uut = report["uut"]
    assert uut["comment"].startswith("This is a comment to this UUT.")
    assert {key: value for key, value in uut.items() if key != "comment"} == {
        "user": "Martin Lentz", "execTime": 10.0, "batchSN": "B888", "errorCode": 0,
        "fixtureId": "543A"}  # "ErrorMessage<tab>" (empty) gives no errorMessage
    assert report["miscInfos"] == [{"description": "uCSwVer", "text": "1.0"}]  # unknown key
    assert report["subUnits"] == [
        {"partType": "Main board", "pn": "Partno 1", "rev": "Rev 1", "sn": "SN 6654433"},
        {"partType": "Controller Card", "pn": "Partno 2", "rev": "Rev B", "sn": "SN 5555"}]
    root = report["root"]
    assert (root["name"], root["seqCall"]["version"], root["status"]) == (
        "c:\\test.seq", "1.0.0.0", "F")


def test_sample_steps_by_kind(sample: Path) -> None:
    report = converted(sample)
    steps = steps_of(report["root"])
    assert len(steps) == 12
    assert collections.Counter(step["stepType"] for step in steps) == {
        "SequenceCall": 3, "ET_NLT": 2, "ET_MNLT": 3, "ET_PFT": 1, "ET_MPFT": 1, "ET_SVT": 1,
        "Action": 1}
    measurements = collections.Counter()
    for step in steps:
        for key in ("numericMeas", "booleanMeas", "stringMeas"):
            measurements[key] += len(step.get(key, []))
    assert measurements == {"numericMeas": 9, "booleanMeas": 5, "stringMeas": 1}
    assert [step["id"] for step in steps] == list(range(1, 13))
    assert [(s["name"], [c["name"] for c in s["steps"]]) for s in steps
            if "seqCall" in s] == [("SubSeq1", ["test1.1", "test1.2"]),
                                   ("SubSeq2", ["test2.2"]), ("SubSeq3", ["SameStepName"])]


def test_sample_multi_measurement_steps_from_continuation_lines(sample: Path) -> None:
    steps = {step["name"]: step for step in steps_of(converted(sample)["root"])}
    # Continuation lines with an empty StepName.
    test3 = steps["Test3"]
    assert [(m["name"], m["value"], m["lowLimit"], m["compOp"], m["status"])
            for m in test3["numericMeas"]] == [
        ("meas1", 8.0, 10.0, "EQ", "F"), ("meas2", 6.0, 5.0, "EQ", "F"),
        ("meas3", 10.0, 10.0, "EQ", "P")]
    assert all("highLimit" not in m for m in test3["numericMeas"])  # EQ uses lowLimit only
    assert (test3["status"], test3["causedSeqFailure"], test3["totTime"]) == ("F", True, 1.0)
    assert [(m["name"], m["status"]) for m in steps["test5"]["booleanMeas"]] == [
        ("meas1", "F"), ("meas2", "P"), ("meas3", "P"), ("meas4", "F")]
    # Continuation lines repeating the StepName.
    for name in ("test2.2", "SameStepName"):
        assert [m["name"] for m in steps[name]["numericMeas"]] == ["meas1", "meas2"]
        assert steps[name]["status"] == "P"
    assert steps["SameStepName"]["reportText"] == "This is a test step report text"


def test_sample_statuses_limits_and_operators(sample: Path) -> None:
    steps = {step["name"]: step for step in steps_of(converted(sample)["root"])}
    assert steps["test1.1"]["numericMeas"] == [{
        "compOp": "GELE", "name": None, "status": "P", "unit": "Volt", "value": 7.0,
        "lowLimit": 7.0, "highLimit": 10.0}]
    assert steps["test4"]["booleanMeas"] == [{"name": None, "status": "P"}]
    assert steps["Test6"]["stringMeas"] == [{
        "compOp": "EQ", "name": None, "status": "F",
        "value": "The quick brown fox jump over lazy dogs",
        "limit": "the quick brown fox jump over lazy dogs"}]
    assert (steps["Action"]["stepType"], steps["Action"]["status"]) == ("Action", "D")
    assert {name: steps[name]["status"] for name in ("SubSeq1", "SubSeq2", "SubSeq3")} == {
        "SubSeq1": "P", "SubSeq2": "P", "SubSeq3": "P"}
    assert steps["SubSeq1"]["reportText"] == "This is a seq call report text"


def test_sample_locations(sample: Path) -> None:
    report = converted(sample)
    assert report.locate("") == "line 1"
    assert report.locate("sn") == "line 2"
    assert report.locate("subUnits[1]") == "line 19"
    assert report.locate("miscInfos[0]") == "line 20"
    assert report.locate("root.steps[2]") == "line 31"  # Test3
    assert report.locate("root.steps[2].numericMeas[2]") == "line 33"
    assert report.locate("result") == "line 46"  # the footer's UUTStatus (last one wins)


def test_sample_with_a_chart_added(sample: Path, tmp_path: Path) -> None:
    # The sample has no chart lines; add some after Test3, as a test program would write them.
    lines = sample.read_bytes().split(b"\n")
    at = next(n for n, line in enumerate(lines) if line.startswith(b"NumericLimitTest\t\tmeas3"))
    lines[at + 1:at + 1] = [
        b"Chart\tLine\tVoltage sweep\tVolt\tVoltage\ts\tTime\t\t\t\t\t\t\t\r",
        b"Series\tmeasured\tXYG\t8;6,5;10\t0;1;2\t\t\t\t\t\t\t\t\t\r",
        b"Series\tlimit\tXYG\t10;10;10\t0;1;2\r",
    ]
    path = tmp_path / "with_chart.txt"
    path.write_bytes(b"\n".join(lines))
    report = converted(path)
    test3 = next(step for step in steps_of(report["root"]) if step["name"] == "Test3")
    assert test3["stepType"] == "WATS_XYGMNLT"
    assert test3["chart"] == {
        "chartType": "Line", "label": "Voltage sweep", "xLabel": "Time", "xUnit": "s",
        "yLabel": "Voltage", "yUnit": "Volt",
        "series": [
            {"dataType": "XYG", "name": "measured", "xdata": "0;1;2", "ydata": "8;6.5;10"},
            {"dataType": "XYG", "name": "limit", "xdata": "0;1;2", "ydata": "10;10;10"}]}
    validate(finalize(report, context=CONTEXT, converter_name=CONVERTER.name,
                      content_sha256="ab", index=0))


def test_sample_is_detected_and_chosen(sample: Path) -> None:
    head = sample.read_bytes()[:64 * 1024]
    score, why = CONVERTER.detect_with_reason(sample, head)
    assert score == 0.99 and "--Header-Start--" in why
    choice = ConverterRegistry().choose(sample, head, auto_detect=True)
    assert choice is not None and choice[0].name == "WATSStandardTextConverter"


def test_sample_prefixes_are_incomplete_or_convert(sample: Path, tmp_path: Path) -> None:
    data = sample.read_bytes()
    path = tmp_path / "growing.txt"
    converts = []
    for cut in range(len(data) + 1):
        path.write_bytes(data[:cut])
        try:
            CONVERTER.convert(path, CONTEXT)
        except IncompleteFileError:
            continue
        converts.append(cut)
    # Only the end marker converts, once complete (before its trailing tabs and line end);
    # anything before it is waited for: the steps still to come are missing.
    marker = data.rindex(b"-- UUT-End--")
    assert converts == [*range(marker + len(b"-- UUT-End--"), len(data) + 1)]

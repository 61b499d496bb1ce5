"""KeysightI3070Converter on the real i3070 logs in ../shared/samples/i3070, and on every
other sample (which it must not claim)."""

from __future__ import annotations

import json
from contextlib import suppress
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pywats_client.converters import ConverterContext, ConverterRegistry
from pywats_client.converters.base import HEAD_SIZE
from pywats_client.converters.i3070 import KeysightI3070Converter
from pywats_client.errors import ConversionError, IncompleteFileError
from tests.conftest import SAMPLES, each_sample, needs_samples, sample, samples_in
from tests.converting import AtStation, sample_files

I3070 = SAMPLES / "i3070"
NEXTEER = I3070 / "FelixSnz_2-210805125029095MCALLEN241.log"
FANCY = I3070 / "felixsnz_sample_ict_log.log"
CEST = timezone(timedelta(hours=2))
CONVERTER = KeysightI3070Converter()
# i3070 logs name no WATS process: the station's folder says which (here SW Debug, 10).
STATION = AtStation(KeysightI3070Converter, station_name="ST-01", location="Line 3",
                    purpose="Production", timezone=CEST, defaults={"process_code": 10})
convert = STATION.convert


def steps(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {step["name"]: step for step in report["root"]["steps"]}


def misc(report: dict[str, Any]) -> dict[str, str]:
    return {item["description"]: item["text"] for item in report["miscInfos"]}


def measurement_count(report: dict[str, Any]) -> int:
    return sum(len(step.get("numericMeas", [])) + len(step.get("booleanMeas", []))
               for step in report["root"]["steps"])


# -- FelixSnz_2-210805125029095MCALLEN241.log: a passed board of a panel, with limits -------------


def test_nexteer_header() -> None:
    [report] = convert(sample(NEXTEER))
    assert {key: report[key] for key in (
        "type", "sn", "pn", "rev", "processCode", "result", "machineName", "start",
        "startUTC")} == {
        "type": "T", "sn": "38258378-007-12151210", "pn": "22-N382", "rev": "7",
        "processCode": 10, "result": "P", "machineName": "095MCALLEN24",
        "start": "2021-08-05T12:50:41+02:00", "startUTC": "2021-08-05T10:50:41Z"}
    # The operator field is empty in this log and no operator is configured.
    assert report["uut"] == {"execTime": 57.0, "batchSN": "210805124637", "fixtureId": "1237"}
    assert misc(report) == {
        "Test status": "0 passed", "Testplan ID": "NEXTEER", "Testplan revision": "RevA",
        "Testhead number": "1", "Process step": "btest", "Parent panel type": "NEXTEER",
        "Parent panel type revision": "Rev_001", "Version label": "38257410C",
        "Board number": "002", "Parent panel ID": "Z6HO010ZF", "Log level": "analog"}
    root = report["root"]
    assert (root["name"], root["status"], root["seqCall"]) == (
        "NEXTEER", "P", {"path": "NEXTEER", "name": "NEXTEER", "version": "RevA"})


def test_nexteer_steps_and_measurements() -> None:
    [report] = convert(sample(NEXTEER))
    by_name = steps(report)
    # One step for @PF and one per @BLOCK (27); the panel prefix "2%" of board 002 is gone.
    assert len(report["root"]["steps"]) == 28
    assert measurement_count(report) == 50  # 49 analog records + the failing-pin count
    assert list(by_name)[:4] == ["pins", "l260%jump5-6", "l1260%jump5-6", "l1508"]
    assert [s["id"] for s in report["root"]["steps"]] == list(range(1, 29))
    assert by_name["pins"]["numericMeas"] == [
        {"compOp": "EQ", "status": "P", "unit": "", "value": 0, "lowLimit": 0}]
    # @LIM3|nominal|high|low: a resistor inside its limits, nominal kept as report text.
    assert by_name["r698"]["stepType"] == "ET_NLT"
    assert by_name["r698"]["numericMeas"] == [
        {"compOp": "GELE", "status": "P", "unit": "Ω", "value": 119802.0,
         "lowLimit": 110400.0, "highLimit": 129600.0}]
    assert by_name["r698"]["reportText"] == "nominal +1.200000E+05 Ω"
    # @LIM2|+9.999999E+99|low: no upper limit, so GE against the low one (status as logged).
    assert by_name["l260%jump5-6"]["numericMeas"] == [
        {"compOp": "GE", "status": "P", "unit": "Ω", "value": -25.14869, "lowLimit": 18000.0}]
    # Two transistor junctions: one step, a measurement per subtest.
    assert by_name["q141"]["stepType"] == "ET_MNLT"
    assert by_name["q141"]["numericMeas"] == [
        {"name": "B-E", "compOp": "GELE", "status": "P", "unit": "V", "value": 0.6998692,
         "lowLimit": 0.599, "highLimit": 0.802},
        {"name": "B-C", "compOp": "GELE", "status": "P", "unit": "V", "value": 0.6854936,
         "lowLimit": 0.603, "highLimit": 0.806}]
    assert by_name["d1309"]["numericMeas"][0]["highLimit"] == 3.96
    # @A-MEA without limits: logged only, no unit.
    assert [(m["name"], m["compOp"], m["unit"], m["value"])
            for m in by_name["m171%fet_p"]["numericMeas"]] == [
        ("On", "LOG", "", 2.36559), ("Off", "LOG", "", -0.0001726708)]
    assert [m["name"] for m in by_name["u506"]["numericMeas"]] == [
        "Pin1", "Pin6", "Pin9", "Pin8", "Pin21", "Pin15", "Pin20", "Pin7"]


def test_nexteer_retried_capacitor_fails_its_step_but_not_the_board() -> None:
    [report] = convert(sample(NEXTEER))
    failed = [s for s in report["root"]["steps"] if s["status"] != "P"]
    assert [s["name"] for s in failed] == ["c1591"]
    c1591 = failed[0]
    assert c1591["causedSeqFailure"] is False  # block 01, yet the board passed
    assert [(m["name"], m["status"], m["value"]) for m in c1591["numericMeas"]] == [
        ("CAP", "F", 5.942115e-06), ("CAP #2", "P", 5.868444e-06)]
    assert c1591["numericMeas"][0]["highLimit"] == 5.875e-06
    assert report["result"] == "P" and "stepIdCausedUUTFailure" not in report["uut"]


# -- felixsnz_sample_ict_log.log: analog records without limits, a shorts test --------------------


def test_fancy_header() -> None:
    [report] = convert(sample(FANCY))
    assert {key: report[key] for key in ("sn", "pn", "rev", "result", "machineName", "start")} == {
        "sn": "default_SN1", "pn": "fancy_product", "rev": "02", "result": "P",
        "machineName": "foo", "start": "2024-01-03T15:47:11+02:00"}
    assert report["uut"] == {"user": "gp", "execTime": 10.0, "batchSN": "240103154107",
                             "fixtureId": "306"}
    assert misc(report)["Testplan ID"] == "00-00000"
    assert "Version label" not in misc(report)  # the 14th @BATCH field is empty


def test_fancy_steps_and_measurements() -> None:
    [report] = convert(sample(FANCY))
    all_steps = report["root"]["steps"]
    assert len(all_steps) == 238  # 237 blocks and the shorts test
    assert measurement_count(report) == 260  # 257 analog records + 3 shorts counts
    assert {s["status"] for s in all_steps} == {"P"}
    by_name = steps(report)
    assert by_name["tb1_pin_1_4"]["numericMeas"] == [
        {"compOp": "LOG", "status": "P", "unit": "Ω", "value": 3.417132}]
    assert by_name["rly2%jp6_12"]["numericMeas"][0]["value"] == -118199500.0
    assert by_name["c29"]["numericMeas"][0]["unit"] == "F"
    assert by_name["zd12%z"]["numericMeas"][0]["unit"] == "V"
    # The shorts test sits where the log has it: after the 78 jumper blocks.
    shorts = all_steps[78]
    assert shorts["name"] == "shorts"
    assert [(m["name"], m["compOp"], m["value"], m["lowLimit"], m["status"])
            for m in shorts["numericMeas"]] == [
        ("shorts", "EQ", 0, 0, "P"), ("opens", "EQ", 0, 0, "P"), ("phantoms", "EQ", 0, 0, "P")]
    # A subtest logged twice gets a second, distinct name.
    assert [m["name"] for m in by_name["u14"]["numericMeas"]][:4] == [
        "Input_1+", "Input_1+ #2", "Input_1-", "Input_1- #2"]


# -- every sample ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", each_sample(samples_in("i3070")))
def test_sample_is_detected_and_chosen_by_content(path: Path, tmp_path: Path) -> None:
    head = path.read_bytes()[:HEAD_SIZE]
    score, why = CONVERTER.detect_with_reason(path, head)
    assert score >= 0.9 and "{@BATCH|" in why
    # The tester's own file names have no extension: the content alone decides.
    renamed = tmp_path / "1-210805125029095MCALLEN24"
    renamed.write_bytes(path.read_bytes())
    detection = ConverterRegistry().detect(renamed, head)
    assert detection.name == "KeysightI3070Converter", detection.reason


@pytest.mark.parametrize("path", each_sample(samples_in("i3070")))
def test_sample_converts_the_same_twice(path: Path) -> None:
    first, second = convert(path), convert(path)
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)


@needs_samples
def test_other_formats_are_not_claimed() -> None:
    for path in sample_files(besides="i3070"):
        head = path.read_bytes()[:HEAD_SIZE]
        assert CONVERTER.detect(path, head) == 0.0, path
        with pytest.raises(ConversionError, match=r"not an i3070 log|empty"):
            CONVERTER.convert(path, ConverterContext())


def test_every_prefix_of_a_sample_is_incomplete(tmp_path: Path) -> None:
    # The board's verdict is written last, so a log cut anywhere is one still being copied:
    # the watcher must retry it later, never move it to the error folder.
    data = sample(NEXTEER).read_bytes()
    path = tmp_path / "partial.log"
    size = len(data.rstrip())
    # Every cut in the header records and at the end, every few bytes in between.
    cuts = sorted({*range(400), *range(400, size - 50, 3), *range(size - 50, size)})
    for cut in cuts:
        path.write_bytes(data[:cut])
        with pytest.raises(IncompleteFileError):
            CONVERTER.convert(path, ConverterContext())


# -- fuzzing the samples ---------------------------------------------------------------------------


SAMPLE_BYTES = [path.read_bytes() for path in samples_in("i3070")]
needs_sample_bytes = pytest.mark.skipif(not SAMPLE_BYTES, reason="no i3070 samples")
# tmp_path is only written, never shared between examples; the samples are large.
SAMPLE_FUZZ: dict[str, Any] = {
    "deadline": 2000,
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]}


@needs_sample_bytes
@settings(max_examples=150, **SAMPLE_FUZZ)
@given(data=st.data())
def test_truncated_samples_only_raise_conversion_errors(tmp_path: Path, data: st.DataObject
                                                        ) -> None:
    original = data.draw(st.sampled_from(SAMPLE_BYTES))
    cut = data.draw(st.integers(0, len(original)))
    path = tmp_path / "cut.log"
    path.write_bytes(original[:cut])
    with suppress(ConversionError):  # anything else fails the test
        CONVERTER.convert(path, ConverterContext())


@needs_sample_bytes
@settings(max_examples=200, **SAMPLE_FUZZ)
@given(data=st.data())
def test_mutated_samples_only_raise_conversion_errors(tmp_path: Path, data: st.DataObject
                                                      ) -> None:
    mutated = bytearray(data.draw(st.sampled_from(SAMPLE_BYTES)))
    # Bytes that matter to the grammar are favoured, so that the mutations reach its corners.
    byte = st.one_of(st.sampled_from(list(b"{}@|\\~\x04\n\r0123456789+-.E%")),
                     st.integers(0, 255))
    for _ in range(data.draw(st.integers(1, 8))):
        at = data.draw(st.integers(0, len(mutated)))
        action = data.draw(st.sampled_from(("replace", "insert", "delete")))
        if action == "insert" or at == len(mutated):
            mutated[at:at] = bytes([data.draw(byte)])
        elif action == "replace":
            mutated[at] = data.draw(byte)
        else:
            del mutated[at]
    path = tmp_path / "mutated.log"
    path.write_bytes(bytes(mutated))
    try:
        result = CONVERTER.convert(path, ConverterContext(defaults={"process_code": 10}))
    except ConversionError:
        return
    assert result  # a report, or a list of them

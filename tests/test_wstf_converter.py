"""WATSStandardTextConverter on hand-made WSTF files: every step kind, both modes, the errors."""

from __future__ import annotations

import codecs
import dataclasses
import logging
from collections.abc import Iterator
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pywats_client.converters import ConverterContext, ConverterRegistry
from pywats_client.converters import wstf as wstf_module
from pywats_client.converters.wstf import WATSStandardTextConverter
from pywats_client.errors import ConversionError, IncompleteFileError, ProcessListUnknownError
from pywats_client.report.checks import finalize, validate
from pywats_client.report.model import ReportDict, to_json_bytes
from tests.converting import convert_like_the_service

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "wstf"
CET = timezone(timedelta(hours=1))
CONTEXT = ConverterContext(station_name="ST-01", location="Line 3", purpose="Production",
                           timezone=CET, defaults={"process_code": 30},
                           file_mtime=1_777_777_777.0)
CONVERTER = WATSStandardTextConverter()
TITLE = ("StepType\tStepName\tMeasureName\tValue\tLowLimit\tHighLimit\tCompOperator\tUnit\t"
         "StepStatus\tStepExecutionTime\tStepReportText\tStepErrorCode\tStepErrorMessage\t"
         "CausedSequenceFailure")
HEADER = ("SerialNumber\tSN-1", "PartNumber\tPN-1", "Revision\tA", "OperationTypeCode\t10",
          "StartDateTime\t2026-03-02T08:00:00")
STEP = len(HEADER) + 4  # the line of the first step in a wstf() text


def wstf(*steps: str, header: tuple[str, ...] = HEADER, footer: tuple[str, ...] = (),
         end: str = "--UUT-End--") -> str:
    """A one-UUT WSTF text: the header lines, the step lines (after the title row), footer."""
    lines = ["--Header-Start--", *header, "--Step-Data-Start--", TITLE, *steps,
             "--Step-Data-End--", *footer, end]
    return "\n".join(line for line in lines if line is not None) + "\n"


def row(*cells: str) -> str:
    return "\t".join(cells)


def write(tmp_path: Path, text: str | bytes, name: str = "uut.txt") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


def convert(path: Path, context: ConverterContext = CONTEXT) -> Any:
    return CONVERTER.convert(path, context)


def convert_one(tmp_path: Path, text: str, context: ConverterContext = CONTEXT) -> ReportDict:
    report = convert(write(tmp_path, text), context)
    assert isinstance(report, ReportDict)
    return report


def steps_of(report: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every step under the root, in tree order."""
    stack = list(reversed(report["root"]["steps"]))
    while stack:
        step = stack.pop()
        yield step
        stack.extend(reversed(step.get("steps", [])))


def by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {step["name"]: step for step in steps_of(report)}


def finalized(report: dict[str, Any], index: int = 0) -> dict[str, Any]:
    return finalize(report, context=CONTEXT, converter_name=CONVERTER.name,
                    content_sha256="ab", index=index)


def fails_at(tmp_path: Path, text: str, line: int, *fragments: str) -> ConversionError:
    """Converting `text` raises a (non-incomplete) ConversionError naming the file, the line
    and every fragment."""
    path = write(tmp_path, text)
    with pytest.raises(ConversionError) as caught:
        convert(path)
    assert not isinstance(caught.value, IncompleteFileError), caught.value
    message = str(caught.value)
    assert message.startswith(f"{path}: line {line}: "), message
    for fragment in fragments:
        assert fragment in message, message
    return caught.value


# -- every step kind --------------------------------------------------------------------------


def test_every_step_kind_in_active_mode() -> None:
    report = convert(FIXTURES / "all_step_kinds.txt")
    assert isinstance(report, ReportDict)
    validate(finalized(report))
    steps = by_name(report)
    assert [s["stepType"] for s in steps.values()] == [
        "SequenceCall", "ET_NLT", "ET_NLT", "WATS_XYGMNLT", "SequenceCall", "ET_PFT", "ET_PFT",
        "ET_MPFT", "ET_SVT", "ET_SVT", "ET_MSVT", "Action"]
    assert [s["id"] for s in steps_of(report)] == list(range(1, 13))
    # Statuses computed from the limits where StepStatus is empty.
    assert {name: s["status"] for name, s in steps.items()} == {
        "Power": "P", "Rail 3V3": "P", "Rail 5V": "F", "Currents": "P", "Checks": "F",
        "Fuse ok": "P", "LED check": "F", "Buttons": "F", "Firmware": "P", "Serial echo": "P",
        "Ids": "P", "Log results": "D"}
    # Rail 5V failed but says CausedSequenceFailure False, so Power passes; Checks fails.
    assert steps["Rail 5V"]["causedSeqFailure"] is False
    assert report["root"]["status"] == "F" and report["result"] == "F"  # no UUTStatus: computed
    rail = steps["Rail 5V"]
    assert (rail["totTime"], rail["reportText"], rail["errorCode"], rail["errorMessage"]) == (
        0.25, "too high", 17, "rail out of range")
    assert rail["numericMeas"] == [{"compOp": "GELE", "name": None, "status": "F", "unit": "V",
                                    "value": 5.4, "lowLimit": 4.9, "highLimit": 5.1}]
    power = steps["Power"]
    assert power["seqCall"] == {"path": "Board.seq", "name": "Power", "version": "2.1.0"}
    assert (power["totTime"], power["reportText"]) == (1.5, "power rails")


def test_explicit_multiple_numeric_step_with_chart() -> None:
    currents = by_name(convert(FIXTURES / "all_step_kinds.txt"))["Currents"]
    assert currents["totTime"] == 0.5
    assert currents["numericMeas"] == [
        {"compOp": "GELT", "name": "I_core", "status": "P", "unit": "A", "value": 1.2,
         "lowLimit": 1.0, "highLimit": 2.0},
        {"compOp": "GT", "name": "I_io", "status": "P", "unit": "A", "value": 0.2,
         "lowLimit": 0.1},
    ]
    assert currents["chart"] == {
        "chartType": "Line", "label": "Current ramp", "xLabel": "Time", "xUnit": "ms",
        "yLabel": "Current", "yUnit": "A",
        "series": [
            # "," decimals in series data are the one place they are accepted.
            {"dataType": "XYG", "name": "Ramp", "xdata": "0;10;20", "ydata": "0.1;0.5;1.2"},
            {"dataType": "XYG", "name": "Limit", "xdata": "0;10;20", "ydata": "2;2;2"},
        ]}


def test_pass_fail_and_string_steps() -> None:
    steps = by_name(convert(FIXTURES / "all_step_kinds.txt"))
    # A written Failed wins over the value TRUE.
    assert steps["LED check"]["booleanMeas"] == [{"name": None, "status": "F"}]
    assert steps["Buttons"]["booleanMeas"] == [{"name": "Up", "status": "P"},
                                               {"name": "Down", "status": "F"}]
    # The LowLimit column is the string limit.
    assert steps["Firmware"]["stringMeas"] == [{
        "compOp": "IGNORECASE", "name": None, "status": "P", "value": "v2.1.0",
        "limit": "V2.1.0"}]
    assert steps["Ids"]["stringMeas"] == [
        {"compOp": "EQ", "name": "Board id", "status": "P", "value": "B-1", "limit": "B-1"},
        {"compOp": "NE", "name": "Lot", "status": "P", "value": "L7", "limit": "L8"},
    ]


def test_header_keys_map_to_the_report() -> None:
    report = convert(FIXTURES / "all_step_kinds.txt")
    assert {key: report[key] for key in (
        "type", "pn", "sn", "rev", "processCode", "processName", "machineName", "start",
        "startUTC")} == {
        "type": "T", "pn": "PN-ALL", "sn": "SN-ALL-1", "rev": "B", "processCode": 50,
        "processName": "PCBA test", "machineName": "FCT-07",
        "start": "2026-03-02T08:15:30+01:00", "startUTC": "2026-03-02T07:15:30Z"}
    assert report["uut"] == {"user": "alice", "execTime": 12.5, "testSocketIndex": 1,
                             "batchSN": "BATCH-77", "comment": "every step kind",
                             "fixtureId": "FX-9"}
    assert report["miscInfos"] == [{"description": "LineVoltage", "text": "230"}]
    assert report["subUnits"] == [{"partType": "PSU", "pn": "PN-PSU", "rev": "A",
                                   "sn": "SN-PSU-1"}]
    root = report["root"]
    assert (root["name"], root["seqCall"]) == (
        "Board.seq", {"path": "Board.seq", "name": "Board.seq", "version": "2.1.0"})


def test_locations_name_the_source_lines() -> None:
    report = convert(FIXTURES / "all_step_kinds.txt")
    assert report.locate("") == "line 1"
    assert report.locate("sn") == "line 2"
    assert report.locate("subUnits[0]") == "line 18"
    assert report.locate("miscInfos[0]") == "line 17"
    assert report.locate("root.steps[0]") == "line 21"
    assert report.locate("root.steps[0].steps[2].numericMeas[1]") == "line 26"
    assert report.locate("root.steps[0].steps[2].chart") == "line 24"  # the step's place
    assert report.locate("uut.execTime") == "line 48"


def test_flying_probe_export_quirks() -> None:
    # Control bytes in names, "100.0/100.0" limits with GT, unit O, TestSocketIndex 02, an
    # empty ErrorCode and ErrorMessage, and a process given by name only.
    report = convert(FIXTURES / "flying_probe.txt", dataclasses.replace(
        CONTEXT, processes={"ICT": 40}))
    validate(finalized(report))
    assert (report["processCode"], report["processName"]) == (40, "ICT")  # by the list
    assert report["uut"] == {"testSocketIndex": 2}
    r101, r102, c7 = report["root"]["steps"]
    assert r101["numericMeas"] == [{"compOp": "GT", "name": "R101", "status": "F",
                                    "unit": "O", "value": 99.2, "lowLimit": 100.0}]
    assert (r102["numericMeas"][0]["name"], r102["status"]) == ("R102", "P")
    assert (c7["name"], c7["stepType"], c7["numericMeas"][0]["lowLimit"]) == (
        "C7", "ET_NLT", 4.2e-07)
    assert c7["numericMeas"][0]["status"] == "P"
    assert report["result"] == "F" and report["root"]["status"] == "F"


# -- statuses: Active vs Import ----------------------------------------------------------------


def test_import_mode_takes_statuses_as_written() -> None:
    report = convert(FIXTURES / "import_mode.txt")
    validate(finalized(report))
    steps = by_name(report)
    assert steps["Out of range"]["status"] == "P"  # 9 is outside 1..5, but it says Passed
    assert steps["Out of range"]["numericMeas"][0]["status"] == "P"
    assert steps["Flag"]["booleanMeas"] == [{"name": None, "status": "P"}]
    assert steps["Main"]["status"] == "P"  # as written, despite the failed step in it
    assert steps["Unwritten"]["status"] == "F"  # no status written: its children's worst
    assert report["root"]["status"] == "P" and report["result"] == "P"
    assert report["startUTC"] == "2026-03-02T07:00:00Z"
    assert report["start"] == "2026-03-02T08:00:00+01:00"  # UTC shown in the station's zone


def test_active_mode_rolls_failures_up_the_tree(tmp_path: Path) -> None:
    text = (FIXTURES / "import_mode.txt").read_text().replace("Import", "Active")
    report = convert_one(tmp_path, text)
    steps = by_name(report)
    assert steps["Out of range"]["status"] == "P"  # a written status is still used
    assert steps["Main"]["status"] == "F"  # but a failed child fails its sequence
    assert report["root"]["status"] == "F"
    assert report["result"] == "P"  # UUTStatus, when written, is the result


def test_active_mode_computes_every_operator(tmp_path: Path) -> None:
    cases = [("EQ", "5", "5", "", "P"), ("NE", "5", "5", "", "F"), ("GT", "5", "4", "", "P"),
             ("LT", "5", "4", "", "F"), ("GE", "4", "4", "", "P"), ("LE", "5", "4", "", "F"),
             ("GELE", "5", "5", "6", "P"), ("GTLT", "5", "5", "6", "F"),
             ("LTGT", "7", "5", "6", "P"), ("LEGE", "5.5", "5", "6", "F"),
             ("LOG", "123", "", "", "P"), ("gele", "5", "1", "9", "P"), ("", "1", "", "", "P")]
    lines = [row("NumericLimitTest", f"{n}-{op}", "", value, low, high, op, "V")
             for n, (op, value, low, high, _) in enumerate(cases)]
    report = convert_one(tmp_path, wstf(*lines))
    got = [(s["numericMeas"][0]["compOp"], s["status"]) for s in steps_of(report)]
    want = [(op.upper() or "LOG", status) for op, _, _, _, status in cases]
    assert got == want
    assert report["result"] == "F"


def test_skipped_done_and_error_statuses(tmp_path: Path) -> None:
    report = convert_one(tmp_path, wstf(
        row("NumericLimitTest", "skipped", "", "0", "1", "2", "GELE", "V", "Skipped"),
        row("NumericLimitTest", "done", "", "0", "1", "2", "GELE", "V", "Done"),
        row("NumericLimitTest", "error", "", "0", "1", "2", "GELE", "V", "Error"),
        row("ActionStep", "act", "", "", "", "", "", "", "Passed"),
    ))
    steps = by_name(report)
    assert [(s["status"], s.get("numericMeas", [{}])[0].get("status")) for s in steps.values()] \
        == [("S", "S"), ("D", "P"), ("E", "F"), ("P", None)]
    assert report["root"]["status"] == "E" and report["result"] == "E"


def test_import_mode_requires_written_statuses(tmp_path: Path) -> None:
    header = (*HEADER, "ConverterMode\timport")
    fails_at(tmp_path, wstf(row("NumericLimitTest", "x", "", "1", "0", "2", "GELE", "V"),
                            header=header, footer=("UUTStatus\tPassed",)),
             STEP + 1, "StepStatus is empty", "ConverterMode Import")
    fails_at(tmp_path, wstf(row("ActionStep", "x"), header=header), 1,
             "no UUTStatus", "ConverterMode Import")


def test_unknown_converter_mode_is_refused(tmp_path: Path) -> None:
    fails_at(tmp_path, wstf(header=(*HEADER, "ConverterMode\tLive")), 7,
             "ConverterMode 'Live'", "Active or Import")


def test_bad_status_words_are_refused(tmp_path: Path) -> None:
    fails_at(tmp_path, wstf(row("ActionStep", "x", "", "", "", "", "", "", "Fine")), STEP,
             "StepStatus 'Fine'")
    fails_at(tmp_path, wstf(footer=("UUTStatus\tDone",)), STEP + 1, "UUTStatus 'Done'")


def test_footer_keys_last_one_wins(tmp_path: Path) -> None:
    report = convert_one(tmp_path, wstf(
        row("ActionStep", "x"), "UUTStatus\tFailed",
        header=(*HEADER, "UUTStatus\tPassed", "ExecutionTime\t1", "ErrorCode\t3"),
        footer=("UUTStatus\tTerminated", "ExecutionTime\t2.5", "ErrorCode\t4",
                "ErrorMessage\taborted by operator")))
    assert report["result"] == "T"
    assert report["uut"] == {"execTime": 2.5, "errorCode": 4,
                             "errorMessage": "aborted by operator"}
    assert report.locate("result") == f"line {STEP + 6}"


# -- multi-measurement steps --------------------------------------------------------------------


def test_continuation_lines_build_multi_measurement_steps(tmp_path: Path) -> None:
    report = convert_one(tmp_path, wstf(
        row("NumericLimitTest", "Rails", "3V3", "3.3", "3", "3.6", "GELE", "V", "", "0.1",
            "first line text"),
        row("NumericLimitTest", "", "5V", "5.0", "4.5", "5.5", "GELE", "V", "", "9", "ignored"),
        row("NumericLimitTest", "Rails", "12V", "13", "11", "12.5", "GELE", "V"),
        row("PassFailTest", "Flags", "a", "TRUE"),
        row("PassFailTest", "", "b", "TRUE"),
        row("StringValueTest", "Names", "first", "x", "x", "", "CASESENSIT"),
        row("StringValueTest", "", "second", "y", "Y", "", "IGNORECASE"),
    ))
    rails, flags, names = report["root"]["steps"]
    assert (rails["stepType"], rails["status"]) == ("ET_MNLT", "F")
    assert [(m["name"], m["status"]) for m in rails["numericMeas"]] == [
        ("3V3", "P"), ("5V", "P"), ("12V", "F")]
    # Step-level cells come from the first line that has them.
    assert (rails["totTime"], rails["reportText"]) == (0.1, "first line text")
    assert (flags["stepType"], [m["name"] for m in flags["booleanMeas"]]) == (
        "ET_MPFT", ["a", "b"])
    assert (names["stepType"], names["status"]) == ("ET_MSVT", "P")
    assert report.locate("root.steps[0].numericMeas[2]") == f"line {STEP + 2}"


def test_repeated_measure_name_under_the_same_step_name_starts_a_new_step(
        tmp_path: Path) -> None:
    report = convert_one(tmp_path, wstf(
        row("NumericLimitTest", "Loop", "a", "1", "", "", "LOG"),
        row("NumericLimitTest", "Loop", "b", "2", "", "", "LOG"),
        row("NumericLimitTest", "Loop", "a", "3", "", "", "LOG"),
    ))
    assert [[m["value"] for m in s["numericMeas"]] for s in steps_of(report)] == [
        [1.0, 2.0], [3.0]]


def test_same_step_name_without_measure_name_is_a_new_single_step(tmp_path: Path) -> None:
    report = convert_one(tmp_path, wstf(
        row("NumericLimitTest", "Again", "", "1", "", "", "LOG"),
        row("NumericLimitTest", "Again", "", "2", "", "", "LOG"),
    ))
    assert [s["stepType"] for s in steps_of(report)] == ["ET_NLT", "ET_NLT"]


@pytest.mark.parametrize(
    ("lines", "line", "fragments"),
    [
        ([row("NumericLimitTest", "", "m", "1")], STEP, ("without StepName",)),
        ([row("ActionStep", "a"), row("NumericLimitTest", "", "m", "1")], STEP + 1,
         ("without StepName",)),
        ([row("NumericLimitTest", "one", "", "1"), row("NumericLimitTest", "", "m", "1")], STEP + 1,
         (f"cannot be added to the single-measurement step 'one' (line {STEP})",)),
        ([row("NumericLimitTest", "s", "m", "1"), row("NumericLimitTest", "", "m", "2")], STEP + 1,
         (f"'m' is already in step 's' (line {STEP})",)),
        ([row("PassFailTest", "s", "m", "TRUE"), row("NumericLimitTest", "", "n", "1")], STEP + 1,
         ("without StepName",)),
        ([row("NumericLimitTest", "", "", "1")], STEP, ("without StepName or MeasureName",)),
    ],
)
def test_bad_continuation_lines_are_errors(
        tmp_path: Path, lines: list[str], line: int, fragments: tuple[str, ...]) -> None:
    fails_at(tmp_path, wstf(*lines), line, *fragments)


def test_explicit_block_rules(tmp_path: Path) -> None:
    # The End line may set the step's status and time; the main line may hold a measurement.
    report = convert_one(tmp_path, wstf(
        row("MultipleNumericLimitTest", "Block", "first", "1", "0", "2", "GELE", "V"),
        row("MultipleNumericLimitTest", "", "second", "5", "0", "2", "GELE", "V", "Passed"),
        row("EndMultipleNumericLimitTest", "Block", "", "", "", "", "", "", "", "3.5"),
        row("MultiplePassFailTest", "Header only", "", "", "", "", "", "", "Skipped"),
        row("EndMultiplePassFailTest"),
    ))
    block, header_only = report["root"]["steps"]
    assert [(m["name"], m["status"]) for m in block["numericMeas"]] == [
        ("first", "P"), ("second", "P")]  # "second" says Passed: a written status is used
    assert (block["status"], block["totTime"]) == ("P", 3.5)
    assert (header_only["status"], header_only["booleanMeas"]) == ("S", [])


@pytest.mark.parametrize(
    ("lines", "line", "fragments"),
    [
        ([row("MultipleNumericLimitTest", "B"), row("ActionStep", "x")], STEP + 1,
         (f"inside MultipleNumericLimitTest 'B' (line {STEP})", "EndMultipleNumericLimitTest")),
        ([row("MultipleNumericLimitTest", "B"), row("PassFailTest", "", "m", "TRUE")], STEP + 1,
         ("inside MultipleNumericLimitTest",)),
        ([row("MultipleNumericLimitTest", "B"), row("EndMultiplePassFailTest")], STEP + 1,
         ("inside MultipleNumericLimitTest",)),
        ([row("MultipleNumericLimitTest", "B"), row("EndMultipleNumericLimitTest", "C")], STEP + 1,
         ("inside MultipleNumericLimitTest 'B'",)),
        ([row("EndMultipleStringValueTest")], STEP,
         ("without an open MultipleStringValueTest",)),
        ([row("MultipleStringValueTest", "")], STEP, ("needs a StepName",)),
        ([row("MultipleNumericLimitTest", "B"), row("NumericLimitTest", "", "", "1")], STEP + 1,
         ("needs a MeasureName",)),
        ([row("MultipleNumericLimitTest", "B", "m", "1"), row("NumericLimitTest", "", "m", "1")],
         STEP + 1, ("'m' is already in step 'B'",)),
    ],
)
def test_explicit_block_errors(
        tmp_path: Path, lines: list[str], line: int, fragments: tuple[str, ...]) -> None:
    fails_at(tmp_path, wstf(*lines), line, *fragments)


# -- sequences -----------------------------------------------------------------------------------


def test_nested_sequences(tmp_path: Path) -> None:
    report = convert_one(tmp_path, wstf(
        row("SequenceCall", "Outer"),
        row("SequenceCall", "Inner"),
        row("NumericLimitTest", "deep", "", "9", "1", "2", "GELE", "V"),
        row("EndSequenceCall", "Inner", "", "", "", "", "", "", "", "4"),
        row("ActionStep", "after inner"),
        row("EndSequenceCall"),
        row("ActionStep", "top"),
    ))
    outer, top = report["root"]["steps"]
    inner, after = outer["steps"]
    assert [inner["name"], after["name"], top["name"]] == ["Inner", "after inner", "top"]
    assert inner["steps"][0]["name"] == "deep"
    assert (inner["status"], inner["totTime"], outer["status"]) == ("F", 4.0, "F")
    assert report.locate("root.steps[0].steps[0].steps[0]") == f"line {STEP + 2}"


@pytest.mark.parametrize(
    ("lines", "line", "fragments"),
    [
        ([row("EndSequenceCall")], STEP, ("EndSequenceCall without an open SequenceCall",)),
        ([row("SequenceCall", "A"), row("EndSequenceCall", "B")], STEP + 1,
         (f"EndSequenceCall 'B' does not match the open SequenceCall 'A' (line {STEP})",)),
        ([row("SequenceCall", "A"), row("EndSequenceCall"), row("EndSequenceCall")], STEP + 2,
         ("without an open SequenceCall",)),
        ([row("SequenceCall", "")], STEP, ("SequenceCall needs a StepName",)),
        ([row("MultipleNumericLimitTest", "B"), row("SequenceCall", "S")], STEP + 1,
         ("inside MultipleNumericLimitTest 'B'",)),
    ],
)
def test_nesting_errors_name_the_line(
        tmp_path: Path, lines: list[str], line: int, fragments: tuple[str, ...]) -> None:
    fails_at(tmp_path, wstf(*lines), line, *fragments)


def test_unclosed_blocks_are_closed_at_the_end_of_the_step_data(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="pywats_client.converters.wstf"):
        report = convert_one(tmp_path, wstf(
            row("SequenceCall", "Open"),
            row("MultiplePassFailTest", "Flags"),
            row("PassFailTest", "", "a", "FALSE"),
        ))
    assert report["root"]["steps"][0]["status"] == "F"
    assert report["root"]["steps"][0]["steps"][0]["booleanMeas"] == [
        {"name": "a", "status": "F"}]
    warnings = [r.getMessage() for r in caplog.records]
    assert any(f"SequenceCall 'Open' (line {STEP}) has no EndSequenceCall" in w
               for w in warnings)
    assert any(f"MultiplePassFailTest 'Flags' (line {STEP + 1}) is not closed" in w
               for w in warnings)


# -- charts ----------------------------------------------------------------------------------


def test_chart_attaches_to_the_current_step(tmp_path: Path) -> None:
    report = convert_one(tmp_path, wstf(
        row("PassFailTest", "Scope", "", "TRUE"),
        row("Chart", "linelogx", "Sweep"),
        row("Series", "s1", "", "1;2;3;", "10;100;1000"),
        row("SequenceCall", "Seq"),
        row("EndSequenceCall"),
        row("Chart", "", "", "", "", "", ""),
    ))
    scope, seq = report["root"]["steps"]
    assert scope["stepType"] == "ET_PFT"  # a chart makes only numeric steps WATS_XYGMNLT
    assert scope["chart"] == {
        "chartType": "LineLogX", "label": "Sweep", "xLabel": None, "xUnit": None,
        "yLabel": None, "yUnit": None,
        "series": [{"dataType": "XYG", "name": "s1", "xdata": "10;100;1000",
                    "ydata": "1;2;3"}]}
    assert seq["chart"]["chartType"] == "Line" and seq["chart"]["series"] == []
    validate(finalized(report))


def test_single_numeric_step_with_chart_is_xy_graph(tmp_path: Path) -> None:
    report = convert_one(tmp_path, wstf(
        row("NumericLimitTest", "Mean", "", "2", "", "", "LOG", "A"),
        row("Chart", "Line", "Current"),
        row("Series", "I", "XYG", "1;2;3", "0;1;2"),
    ))
    assert report["root"]["steps"][0]["stepType"] == "WATS_XYGMNLT"


def test_series_limits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chart = (row("ActionStep", "a"), row("Chart", "Line", "c"))
    eleven = [row("Series", f"s{n}", "XYG", "1", "1") for n in range(11)]
    fails_at(tmp_path, wstf(*chart, *eleven), STEP + 12, "more than 10 series")
    points = ";".join("1" for _ in range(10_001))
    fails_at(tmp_path, wstf(*chart, row("Series", "big", "XYG", points, points)), STEP + 2,
             "10001 points", "at most 10000")
    fails_at(tmp_path, wstf(*chart, row("Series", "s", "XYG", "1;2", "1")), STEP + 2,
             "XData has 1 values and YData 2")
    fails_at(tmp_path, wstf(*chart, row("Series", "s", "XYG", "1;x", "1;2")), STEP + 2,
             "YData value 2 ('x') is not a number")
    fails_at(tmp_path, wstf(*chart, row("Series", "s", "XYG", "", "")), STEP + 2,
             "YData is empty")
    fails_at(tmp_path, wstf(*chart, row("Series", "s", "XY", "1", "1")), STEP + 2, "only XYG")


@pytest.mark.parametrize(
    ("lines", "line", "fragments"),
    [
        ([row("Chart", "Line")], STEP, ("Chart before any step",)),
        ([row("ActionStep", "a"), row("Series", "s", "XYG", "1", "1")], STEP + 1,
         ("Series without a Chart",)),
        ([row("ActionStep", "a"), row("Chart", "Line"), row("Chart", "Line")], STEP + 2,
         (f"step 'a' already has a chart (line {STEP + 1})",)),
        ([row("ActionStep", "a"), row("Chart", "Pie")], STEP + 1,
         ("chart type 'Pie'", "LineLogXY")),
    ],
)
def test_chart_errors(
        tmp_path: Path, lines: list[str], line: int, fragments: tuple[str, ...]) -> None:
    fails_at(tmp_path, wstf(*lines), line, *fragments)


# -- values, limits and operators ----------------------------------------------------------------


def test_comma_decimals_are_refused_outside_series(tmp_path: Path) -> None:
    fails_at(tmp_path, wstf(row("NumericLimitTest", "v", "", "1,5", "1", "2", "GELE")), STEP,
             "Value '1,5' is not a number", "'.' as the decimal separator")
    fails_at(tmp_path, wstf(row("NumericLimitTest", "v", "", "1.5", "1,0", "2", "GELE")), STEP,
             "LowLimit '1,0'")
    fails_at(tmp_path, wstf(footer=("ExecutionTime\t1,5",)), STEP + 1, "ExecutionTime '1,5'")


@pytest.mark.parametrize(
    ("cells", "fragment"),
    [
        (("", "1", "2", "GELE"), "Value is empty"),
        (("nan", "1", "2", "GELE"), "Value 'nan' is not a number"),
        (("1e999", "1", "2", "GELE"), "too large"),
        (("1", "", "2", "GELE"), "compOp GELE needs lowLimit and highLimit"),
        (("1", "", "", "GT"), "compOp GT compares with lowLimit"),
        (("1", "1", "", "IGNORECASE"), "CompOperator IGNORECASE compares strings"),
        (("1", "1/2", "", "GT"), "LowLimit '1/2' holds two different limits"),
        (("1", "1", "2/3", "GELE"), "HighLimit '2/3' holds two different limits"),
    ],
)
def test_bad_numeric_cells(tmp_path: Path, cells: tuple[str, ...], fragment: str) -> None:
    value, low, high, op = cells
    fails_at(tmp_path, wstf(row("NumericLimitTest", "v", "", value, low, high, op, "V")), STEP,
             fragment)


def test_low_high_pair_in_the_low_limit_cell(tmp_path: Path) -> None:
    report = convert_one(tmp_path, wstf(
        row("NumericLimitTest", "pair", "", "1.5", "1.0/2.0", "", "GELE", "V")))
    meas = report["root"]["steps"][0]["numericMeas"][0]
    assert (meas["lowLimit"], meas["highLimit"], meas["status"]) == (1.0, 2.0, "P")


def test_string_step_operators(tmp_path: Path) -> None:
    report = convert_one(tmp_path, wstf(
        row("StringValueTest", "eq", "", "abc", "ABC", "", "EQ"),
        row("StringValueTest", "ne", "", "abc", "ABC", "", "NE"),
        row("StringValueTest", "log", "", "anything", "", "", "Log"),
        row("StringValueTest", "spaces kept", "", " a b ", " a b ", "", "CASESENSIT"),
    ))
    assert [(s["stringMeas"][0]["compOp"], s["status"]) for s in steps_of(report)] == [
        ("EQ", "F"), ("NE", "P"), ("LOG", "P"), ("CASESENSIT", "P")]
    assert report["root"]["steps"][2]["stringMeas"][0]["limit"] is None
    fails_at(tmp_path, wstf(row("StringValueTest", "gt", "", "a", "b", "", "GT")), STEP,
             "CompOperator GT compares numbers")


def test_unknown_operator_is_log_with_a_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="pywats_client.converters.wstf"):
        report = convert_one(tmp_path, wstf(
            row("NumericLimitTest", "typo", "", "99", "1", "2", "GELEX"),
            row("NumericLimitTest", "typo2", "", "99", "1", "2", "GELEX"),
        ))
    assert [s["numericMeas"][0]["compOp"] for s in steps_of(report)] == ["LOG", "LOG"]
    warnings = [r.getMessage() for r in caplog.records if "GELEX" in r.getMessage()]
    assert len(warnings) == 1 and f"line {STEP}:" in warnings[0]


def test_pass_fail_values(tmp_path: Path) -> None:
    report = convert_one(tmp_path, wstf(
        row("PassFailTest", "t", "", "true"), row("PassFailTest", "f", "", "0"),
        row("PassFailTest", "written", "", "", "", "", "", "", "Passed")))
    assert [s["status"] for s in steps_of(report)] == ["P", "F", "P"]
    fails_at(tmp_path, wstf(row("PassFailTest", "x", "", "maybe")), STEP, "Value 'maybe'")
    fails_at(tmp_path, wstf(row("PassFailTest", "x")), STEP, "without Value or StepStatus")


def test_step_cells_are_checked(tmp_path: Path) -> None:
    fails_at(tmp_path, wstf(row("ActionStep", "a", "", "", "", "", "", "", "", "", "", "1.5")),
             STEP, "StepErrorCode '1.5' is not a whole number")
    fails_at(tmp_path, wstf(row("ActionStep", "a", *[""] * 11, "maybe")), STEP,
             "CausedSequenceFailure 'maybe'")
    fails_at(tmp_path, wstf(row("ActionStep", "")), STEP, "ActionStep needs a StepName")
    fails_at(tmp_path, wstf(row("Wait", "w")), STEP, "unknown StepType 'Wait'", "SequenceCall")


# -- header ----------------------------------------------------------------------------------


def test_a_process_by_name_is_looked_up_and_never_guessed(tmp_path: Path) -> None:
    header = ("SerialNumber\tS", "PartNumber\tP", "OperationTypeName\tICT")
    known = ConverterContext(arguments={"process_code": "40"}, defaults={"process_code": 30},
                             processes={"ICT": 50})
    report = convert_one(tmp_path, wstf(header=header), known)
    assert (report["processCode"], report["processName"]) == (50, "ICT")
    assert report.locate("processCode") == "line 4"
    path = write(tmp_path, wstf(header=header))
    for waiting in (CONTEXT, ConverterContext()):  # no list yet: the file waits for it
        with pytest.raises(ProcessListUnknownError) as caught:
            convert(path, waiting)
        assert str(caught.value) == (
            f"{path}: line 4: the file names the process 'ICT', which cannot be looked up "
            "yet: the server's process list is not known (it is fetched once the server is "
            "reachable); the file waits for it")
    with pytest.raises(ConversionError, match=r"line 4: the process 'ICT' is not one the "
                                              r"server knows \(its processes: 'SW Debug' "):
        convert(path, dataclasses.replace(CONTEXT, processes={"SW Debug": 10}))
    with pytest.raises(ConversionError, match="the UUT has no OperationTypeCode"):
        convert(write(tmp_path, wstf(header=header[:2])), ConverterContext())


def test_header_values_are_checked(tmp_path: Path) -> None:
    fails_at(tmp_path, wstf(header=(*HEADER, "OperationTypeCode\tten")), 7,
             "OperationTypeCode 'ten' is not a whole number")
    fails_at(tmp_path, wstf(header=(*HEADER, "TestSocketIndex\t70000")), 7,
             "TestSocketIndex 70000 is out of range (-32768..32767)")
    fails_at(tmp_path, wstf(header=(*HEADER, "StartDateTime\t02.03.2026 08:00")), 7,
             "StartDateTime '02.03.2026 08:00'", "2026-05-01T10:00:00")
    fails_at(tmp_path, wstf(header=(*HEADER, "\tvalue")), 7, "needs a key in the first column")
    fails_at(tmp_path, wstf(header=(*HEADER, "Subunit")), 7, "Subunit line without values")


def test_missing_serial_and_part_number(tmp_path: Path) -> None:
    fails_at(tmp_path, wstf(header=HEADER[1:]), 1, "the UUT has no SerialNumber")
    fails_at(tmp_path, wstf(header=(HEADER[0], *HEADER[2:])), 1, "no PartNumber",
             "part_number in the watch folder's arguments or in converters.defaults")
    defaults = ConverterContext(defaults={"part_number": "PN-D", "revision": "R9",
                                          "operator": "op", "sequence_name": "Seq"})
    report = convert_one(tmp_path, wstf(header=(HEADER[0], HEADER[3])), defaults)
    assert (report["pn"], report["rev"], report["uut"]["user"], report["root"]["name"]) == (
        "PN-D", "R9", "op", "Seq")
    assert "start" not in report  # finalize() falls back to the file's time


def test_start_times(tmp_path: Path) -> None:
    both = (*HEADER, "UTCStartDateTime\t2026-03-02T07:00:00.250")
    report = convert_one(tmp_path, wstf(header=both))
    assert (report["start"], report["startUTC"]) == (
        "2026-03-02T08:00:00+01:00", "2026-03-02T07:00:00.250Z")
    with_offset = (*HEADER[:4], "StartDateTime\t2026-07-01T10:00:00+02:00")
    report = convert_one(tmp_path, wstf(header=with_offset))
    assert (report["start"], report["startUTC"]) == (
        "2026-07-01T10:00:00+02:00", "2026-07-01T08:00:00Z")
    fails_at(tmp_path, wstf(header=(*HEADER[:4], "StartDateTime\t0001-01-01T00:00:00")), 6,
             "StartDateTime '0001-01-01T00:00:00'")


def test_unknown_header_keys_become_misc_infos_in_order(tmp_path: Path) -> None:
    report = convert_one(tmp_path, wstf(header=(
        *HEADER, "uCSwVer\t1.0", "Fixture temp\t23.5", "Empty\t", "uCSwVer\t1.1")))
    assert report["miscInfos"] == [
        {"description": "uCSwVer", "text": "1.0"}, {"description": "Fixture temp", "text": "23.5"},
        {"description": "Empty", "text": ""}, {"description": "uCSwVer", "text": "1.1"}]
    assert report.locate("miscInfos[3]") == "line 10"


def test_keys_and_markers_ignore_case(tmp_path: Path) -> None:
    text = wstf(row("actionstep", "a"), header=("serialnumber\tS", "PARTNUMBER\tP",
                                                  "operationtypecode\t5"))
    text = text.replace("--Header-Start--", "--header-start--").replace(
        "--UUT-End--", "-- uut-end --")
    report = convert_one(tmp_path, text)
    assert (report["sn"], report["pn"], report["processCode"]) == ("S", "P", 5)


def test_header_without_step_data(tmp_path: Path) -> None:
    text = "--Header-Start--\n" + "\n".join(HEADER) + "\nUUTStatus\tPassed\n--UUT-End--\n"
    report = convert_one(tmp_path, text)
    assert report["root"]["steps"] == [] and report["result"] == "P"
    validate(finalized(report))


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        (wstf(footer=("SerialNumber\tX",)), STEP + 1, "only UUTStatus, ErrorCode, ErrorMessage"),
        (wstf().replace("--Step-Data-End--", "--Step-Data-End--\n--Step-Data-Start--"), STEP + 1,
         "after --Step-Data-End--"),
        (wstf().replace(TITLE, f"{TITLE}\n--Step-Data-Start--"), STEP, "a second"),
        ("--Header-Start--\n--Step-Data-End--\n", 2, "without --Step-Data-Start--"),
        (wstf() + "junk\n", STEP + 2, "expected --Header-Start-- (or the end of the file) "
         f"after the --UUT-End-- at line {STEP + 1}"),
    ],
)
def test_structure_errors(tmp_path: Path, text: str, line: int, fragment: str) -> None:
    fails_at(tmp_path, text, line, fragment)


# -- several UUTs, end markers, truncation -----------------------------------------------------


def test_multiple_uuts_give_a_list() -> None:
    reports = convert(FIXTURES / "multiple_uuts.txt")
    assert isinstance(reports, list)
    assert [(r["sn"], r["result"], r["root"]["status"]) for r in reports] == [
        ("SN-M-1", "P", "P"), ("SN-M-2", "F", "F"), ("SN-M-3", "P", "P")]
    assert [r.locate("") for r in reports] == ["line 1", "line 14", "line 28"]
    assert reports[2].locate("root.steps[0]") == "line 36"
    ids = {finalized(r, n)["id"] for n, r in enumerate(reports)}
    assert len(ids) == 3


def test_missing_end_marker_is_waited_for() -> None:
    # A tester that logs line by line leaves exactly this between two lines: converting it
    # would upload a report without the steps still to come.
    with pytest.raises(IncompleteFileError, match="line 1 has no --UUT-End-- line yet"):
        convert(FIXTURES / "missing_end.txt")


@pytest.mark.parametrize("value", [True, "true", "Yes", "1", "on"])
def test_missing_end_marker_converts_with_a_warning_when_the_folder_accepts_it(
        caplog: pytest.LogCaptureFixture, value: object) -> None:
    path = FIXTURES / "missing_end.txt"
    context = ConverterContext(arguments={"accept_missing_uut_end": value})
    with caplog.at_level(logging.WARNING, logger="pywats_client.converters.wstf"):
        report = convert(path, context)
    assert (report["sn"], report["result"]) == ("SN-NOEND", "P")
    validate(finalized(report))
    assert [r.getMessage() for r in caplog.records] == [
        f"{path}: the UUT that starts at line 1 has no --UUT-End-- line; converted anyway "
        "(accept_missing_uut_end is set)"]


@pytest.mark.parametrize("value", [False, "false", "no", "0", ""])
def test_missing_end_marker_is_waited_for_when_the_argument_is_false(value: object) -> None:
    context = ConverterContext(arguments={"accept_missing_uut_end": value})
    with pytest.raises(IncompleteFileError):
        convert(FIXTURES / "missing_end.txt", context)


def test_a_new_header_ends_the_uut_before_it(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    text = wstf(row("ActionStep", "a"), end="") + wstf(row("ActionStep", "b"))
    with caplog.at_level(logging.WARNING, logger="pywats_client.converters.wstf"):
        reports = convert(write(tmp_path, text))
    assert [r["root"]["steps"][0]["name"] for r in reports] == ["a", "b"]
    assert f"--Header-Start-- at line {STEP + 3}" in caplog.text


@pytest.mark.parametrize(
    "text",
    [
        "", "\n\n", "\ufeff  \t\n", "--Head", "--Header-Start--",
        "--Header-Start--\nSerialNumber\tSN-1\n",
        wstf(row("ActionStep", "a")).replace("--Step-Data-End--\n--UUT-End--\n", "Action"),
        wstf() + "--Header-Start--\nSerialNumber\tS",
        wstf().rstrip("\n").removesuffix("--UUT-End--") + "--UUT-En",
    ],
    ids=["empty", "blank", "bom", "marker-cut", "marker-no-newline", "in-header",
         "mid-step-line", "second-uut-mid-line", "end-marker-cut"],
)
def test_truncated_files_are_incomplete(tmp_path: Path, text: str) -> None:
    with pytest.raises(IncompleteFileError):
        convert(write(tmp_path, text))


def test_end_marker_without_line_end_is_complete(tmp_path: Path) -> None:
    report = convert_one(tmp_path, wstf(row("ActionStep", "a")).rstrip("\n"))
    assert report["root"]["steps"][0]["name"] == "a"


def test_every_prefix_is_incomplete_or_converts(tmp_path: Path) -> None:
    data = (FIXTURES / "all_step_kinds.txt").read_bytes()
    path = tmp_path / "growing.txt"
    for cut in range(0, len(data) + 1, 3):
        path.write_bytes(data[:cut])
        try:
            convert(path)
        except IncompleteFileError:
            continue
        # Only the whole file converts: its last UUT must have its end marker.
        assert data[:cut].rstrip(b"\r\n\t").endswith(b"--UUT-End--")


# -- text encoding and cells -----------------------------------------------------------------


def test_control_bytes_are_removed_from_names(tmp_path: Path) -> None:
    report = convert_one(tmp_path, wstf(
        row("NumericLimitTest", "R\x1c1", "\x01m\x02\x06", "1", "", "", "LOG", "\x0bO"),
        row("NumericLimitTest", "", "n\x00", "2", "", "", "LOG")))
    step = report["root"]["steps"][0]
    assert step["name"] == "R1"
    assert [(m["name"], m["unit"]) for m in step["numericMeas"]] == [("m", "O"), ("n", None)]


def test_crlf_trailing_tabs_and_blank_lines(tmp_path: Path) -> None:
    text = wstf(row("ActionStep", "a", "", "", "", "", "", "", "Passed", "", "", "", "", "", ""),
                "", "\t\t\t", header=(*(f"{line}\t\t\t" for line in HEADER), ""))
    report = convert_one(tmp_path, text.replace("\n", "\r\n"))
    assert report["root"]["steps"][0]["status"] == "P"
    assert report["sn"] == "SN-1"


def test_encodings(tmp_path: Path) -> None:
    text = wstf(row("NumericLimitTest", "Widerstand", "", "1", "", "", "LOG", "Ω"),
                header=(*HEADER, "Prüfer\tJürgen"))
    for data, context in [
        (codecs.BOM_UTF8 + text.encode("utf-8"), CONTEXT),
        (text.encode("utf-16"), CONTEXT),
        (text.replace("Ω", "µ").encode("cp1252"), ConverterContext(encoding="cp1252")),
    ]:
        report = convert(write(tmp_path, data), context)
        assert report["miscInfos"] == [{"description": "Prüfer", "text": "Jürgen"}]
    path = write(tmp_path, text.replace("Ω", "µ").encode("cp1252"))
    # Not configured: a file that is not UTF-8 is read as cp1252.
    assert convert(path)["miscInfos"] == [{"description": "Prüfer", "text": "Jürgen"}]
    with pytest.raises(ConversionError, match=r"line 7 is not valid utf-8 .*encoding"):
        convert(path, ConverterContext(arguments={"encoding": "utf-8"}))
    with pytest.raises(ConversionError, match="unknown encoding 'klingon'"):
        convert(path, ConverterContext(encoding="klingon"))
    with pytest.raises(IncompleteFileError, match="middle of a character"):
        convert(write(tmp_path, text.encode("utf-8") + "Ω".encode()[:1]))


def test_oversized_and_unreadable_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wstf_module, "MAX_FILE_BYTES", 100)
    with pytest.raises(ConversionError, match="are refused"):
        convert(write(tmp_path, wstf()))
    with pytest.raises(ConversionError, match="cannot read the file"):
        convert(tmp_path / "gone.txt")


def test_not_wstf_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, "Serial,Value\nSN1,3\n")
    with pytest.raises(ConversionError) as caught:
        convert(path)
    assert not isinstance(caught.value, IncompleteFileError)
    assert str(caught.value) == (
        f"{path}: not a WATS Standard Text Format file: line 1 is 'Serial,Value', expected "
        "--Header-Start--")


def test_conversion_is_deterministic() -> None:
    first = convert(FIXTURES / "all_step_kinds.txt")
    second = convert(FIXTURES / "all_step_kinds.txt")
    assert to_json_bytes(first) == to_json_bytes(second)
    assert first.locations == second.locations


# -- detect and the registry ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "low", "high"),
    [
        (wstf().encode(), 0.99, 0.99),
        (b"--Header-Start--\t\t\nSerialNumber\t1\n", 0.95, 0.95),
        (codecs.BOM_UTF8 + b"\r\n\n  \t\n--Header-Start--\r\n", 0.95, 0.95),
        ("--Header-Start--\n--Step-Data-Start--\n".encode("utf-16"), 0.99, 0.99),
        (b"SerialNumber\t1\n--Header-Start--\n", 0.0, 0.0),
        (b'{"type": "T"}', 0.0, 0.0),
        (b"", 0.0, 0.0),
        (b"\x00\xff\xfe garbage", 0.0, 0.0),
    ],
)
def test_detect(head: bytes, low: float, high: float) -> None:
    score, why = CONVERTER.detect_with_reason(Path("x.txt"), head)
    assert low <= score <= high
    assert CONVERTER.detect(Path("x.txt"), head) == score
    assert ("--Header-Start--" in why) == (score > 0)


def test_registered_as_a_built_in(tmp_path: Path) -> None:
    registry = ConverterRegistry()
    converter = registry.create("WATSStandardTextConverter")
    assert isinstance(converter, WATSStandardTextConverter)
    assert converter.matches(Path("RUN.TXT")) and not converter.matches(Path("run.json"))
    path = write(tmp_path, wstf(), name="any-name.txt")
    choice = registry.choose(path, path.read_bytes(), auto_detect=True)
    assert choice is not None and choice[0].name == "WATSStandardTextConverter"


# -- fuzzing: no input may crash the service ----------------------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=400))
def test_arbitrary_bytes_raise_only_conversion_errors(
        tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "fuzz.txt"
    path.write_bytes(data)
    assert 0.0 <= CONVERTER.detect(path, data) <= 1.0
    convert_like_the_service(CONVERTER, path, CONTEXT)


_CELLS = st.sampled_from([
    "", "x", "m", "1", "2.5", "1,5", "-3e2", "1e999", "nan", "TRUE", "FALSE", "Passed", "Failed",
    "Done", "Skipped", "Error", "Terminated", "bogus", "GELE", "GT", "LOG", "EQ", "NE",
    "CASESENSIT", "IGNORECASE", "1/2", "5/5", "XYG", "1;2;3", "0,5;1", "Line", "True", "V",
    "\x01", "9" * 30, "x" * 120,
])
_KEYS = st.sampled_from([
    "SequenceCall", "EndSequenceCall", "NumericLimitTest", "MultipleNumericLimitTest",
    "EndMultipleNumericLimitTest", "PassFailTest", "MultiplePassFailTest",
    "EndMultiplePassFailTest", "StringValueTest", "MultipleStringValueTest",
    "EndMultipleStringValueTest", "ActionStep", "Chart", "Series", "UUTStatus", "StepType",
    "SerialNumber", "PartNumber", "OperationTypeCode", "OperationTypeName", "StartDateTime",
    "UTCStartDateTime", "TestSocketIndex", "ErrorCode", "ExecutionTime", "ConverterMode",
    "Subunit", "Comment", "Whatever", "--Header-Start--", "--Step-Data-Start--",
    "--Step-Data-End--", "--UUT-End--", "",
])
_LINES = st.lists(
    st.tuples(_KEYS, st.lists(_CELLS, max_size=14)).map(lambda kc: "\t".join((kc[0], *kc[1]))),
    max_size=30,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=_LINES, cut=st.integers(min_value=0, max_value=2000),
       newline=st.sampled_from(["\n", "\r\n"]))
def test_wstf_like_input_raises_only_conversion_errors(
        tmp_path_factory: pytest.TempPathFactory, lines: list[str], cut: int,
        newline: str) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "fuzz.txt"
    text = newline.join(["--Header-Start--", "SerialNumber\tS", "PartNumber\tP", *lines]) + newline
    for content in (text, text[:cut]):
        path.write_bytes(content.encode("utf-8"))
        convert_like_the_service(CONVERTER, path, CONTEXT)

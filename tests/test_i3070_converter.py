"""KeysightI3070Converter and its record parser on small logs: the grammar, panels, failures,
aborts, custom records, encodings, options, and the messages an operator gets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pywats_client.converters import ConverterContext, ConverterRegistry
from pywats_client.converters import i3070 as i3070_module
from pywats_client.converters.i3070 import KeysightI3070Converter
from pywats_client.converters.i3070_records import MAX_DEPTH, Record, parse_records
from pywats_client.errors import ConversionError, IncompleteFileError, ReportValidationError
from pywats_client.report.checks import validate
from pywats_client.report.model import ReportDict
from pywats_client.service.pipeline import convert_file
from tests.converting import FuzzTarget, convert_like_the_service

FIXTURES = Path(__file__).parent / "fixtures" / "i3070"
CONVERTER = KeysightI3070Converter()
# i3070 logs name no WATS process: the station's folder says which (here SW Debug, 10).
PROCESS = {"process_code": 10}
CONTEXT = ConverterContext(station_name="ST-01", location="Line 3", purpose="Production",
                           timezone=ZoneInfo("Europe/Oslo"), file_mtime=1_777_777_777.0,
                           defaults=PROCESS)

HEADER = "{@BATCH|PCB-1|A|FX-1|1||btest|230101000000|op|ict-9|TP-1|1.0|||\n"
BOARD = "{@BTEST|SN-1|00|230101120000|000010|0|analog||n|n|230101120010||001|\n"


def log(body: str, board: str = BOARD, header: str = HEADER) -> str:
    """A one-board log around `body` (records under @BTEST)."""
    return f"{header}{board}{body}}}\n}}\n"


def write(tmp_path: Path, text: str | bytes, name: str = "board.log") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("ascii") if isinstance(text, str) else text)
    return path


def reports(path: Path, context: ConverterContext = CONTEXT) -> list[dict[str, Any]]:
    """The finished, validated reports, as the service would queue them."""
    return convert_file(path, CONVERTER, context).reports


def one(path: Path, context: ConverterContext = CONTEXT) -> dict[str, Any]:
    [report] = reports(path, context)
    return report


def steps(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {step["name"]: step for step in report["root"]["steps"]}


def fixture(name: str) -> Path:
    return FIXTURES / name


# -- the record grammar -------------------------------------------------------------------------


def test_records_nest_and_know_their_lines() -> None:
    [batch] = parse_records("{@BATCH|a||c\n{@BTEST|sn|00\n{@BLOCK|r1|00\n"
                            "{@A-RES|0|+1.0E+03{@LIM2|+2.0E+03|+5.0E+02}}\n}\n}\n}\n")
    assert (batch.name, batch.fields, batch.line) == ("BATCH", ["a", "", "c"], 1)
    [btest] = batch.children
    [block] = btest.children
    [analog] = block.children
    assert (btest.line, block.line, analog.line) == (2, 3, 4)
    assert analog.fields == ["0", "+1.0E+03"]
    assert analog.child("LIM2") == Record("LIM2", 4, ["+2.0E+03", "+5.0E+02"])
    assert [r.name for r in batch.walk()] == ["BTEST", "BLOCK", "A-RES", "LIM2"]
    assert (analog.text(0), analog.text(7)) == ("0", "")


def test_literal_fields_hold_any_character_and_lines_still_count() -> None:
    message = "a|b}{c\\d\n~3|x"
    [rpt, after] = parse_records(f"{{@RPT~{len(message)}|{message}}}\n{{@RPT|next}}")
    assert rpt.fields == [message]
    assert after.line == 3  # the line end inside the literal counts


def test_list_fields_take_exactly_their_count() -> None:
    [pins] = parse_records("{@PIN\\3|101|102|103|after\\0~2|}}}")
    assert pins.fields == [("101", "102", "103"), "after", (), "}}"]
    assert pins.text(0) == "101 102 103"
    [spread] = parse_records("{@NODE\\2\n|n1\n|n2}")
    assert spread.fields == [("n1", "n2")]
    with pytest.raises(ConversionError, match=r"line 1: a list field announces 3 items but has 1"):
        parse_records("{@PIN\\3|101}")


def test_backslash_and_tilde_without_a_count_are_text() -> None:
    [batch] = parse_records(r"{@BATCH|C:\plans\board~x|~y|b\}")
    assert batch.fields == [r"C:\plans\board~x", "~y", "b\\"]


def test_ctrl_d_marks_a_record_the_tester_cut_short() -> None:
    [cut, whole] = parse_records("{@RPT|too long\x04}{@RPT|fine}")
    assert (cut.cut, cut.fields, whole.cut) == (True, ["too long"], False)


def test_a_custom_record_without_its_brace_does_not_swallow_the_log() -> None:
    [btest] = parse_records("{@BTEST|sn|00\n{@MySW_Version:OK|OK\n{@BLOCK|r1|00\n}\n"
                            "{@Own|x{@Deeper|y}}\n{@Last|z\n}\n}\n")
    assert [r.name for r in btest.children] == ["MySW_Version:OK", "BLOCK", "Own", "Last"]
    assert [r.name for r in btest.children[2].children] == ["Deeper"]


@pytest.mark.parametrize(("text", "record", "line"), [
    ("{@BATCH|a\n{@BTEST|b\n", "@BTEST", 2),
    ("{@BATCH|a\n{@BTEST|b\n}", "@BATCH", 1),
    ("{@BATCH|a|b", "@BATCH", 1),
])
def test_a_log_that_stops_inside_a_record_is_incomplete(text: str, record: str,
                                                        line: int) -> None:
    with pytest.raises(IncompleteFileError, match=f"inside the {record} record that starts at "
                       f"line {line}.*read again later"):
        parse_records(text)


@pytest.mark.parametrize("text", ["{", "{@BA", "{@RPT~10|abc", "{@PIN\\2|1", "{@RPT|a~"])
def test_a_log_that_stops_inside_a_field_is_incomplete(text: str) -> None:
    with pytest.raises(IncompleteFileError):
        parse_records(text)


@pytest.mark.parametrize(("text", "message"), [
    ("{@A|1}\nhello", r"line 2: unexpected 'hello' outside any record"),
    ("{@A|1\nhello}", r"line 2: unexpected 'hello}' between records"),
    ("{X}", r"a record starts with '\{@'"),
    ("{@|x}", r"'\{@' is not followed by a record name"),
    ("{@A|x\x00y}", r"control character '\\x00' in a field; the file is damaged"),
    ("{@A~x|y}", r"'~' starts a literal field but no length follows"),
    ("{@A~3x}", r"literal field ~3 is not followed by '\|'"),
    ("{@A~1234567890|x}", r"is not a length"),
])
def test_broken_grammar_is_named_with_its_line(text: str, message: str) -> None:
    with pytest.raises(ConversionError, match=message) as caught:
        parse_records(text, source="board.log")
    assert not isinstance(caught.value, IncompleteFileError)
    assert str(caught.value).startswith("board.log: line ")


def test_nesting_is_capped_without_recursion() -> None:
    # Records of a test plan's own may nest as deep as they like, up to the cap.
    assert len(parse_records("{@A" * MAX_DEPTH + "}" * MAX_DEPTH)) == 1
    with pytest.raises(ConversionError, match=f"nested more than {MAX_DEPTH} deep"):
        parse_records("{@X|x" * 100_000)
    # Known records keep their level whatever the braces say: a hundred thousand blocks
    # that are never closed are siblings, not a tower.
    [btest] = parse_records("{@BTEST|sn|00\n" + "{@BLOCK|x|00\n" * 100_000 + "}\n}\n")
    assert len(btest.children) == 100_000


def test_many_records_parse_in_one_pass() -> None:
    records = parse_records("{@BLOCK|r|00{@A-RES|0|+1.0E+00}}\n" * 20_000)
    assert len(records) == 20_000 and records[-1].line == 20_000


@settings(max_examples=300, deadline=2000)
@given(st.text(alphabet="{@}|\\~019AB-T \n\x04", max_size=200))
def test_any_text_parses_or_is_refused_with_a_conversion_error(text: str) -> None:
    try:
        records = parse_records(text)
    except ConversionError:
        return
    assert all(isinstance(record, Record) for record in records)


# -- panels and verdicts --------------------------------------------------------------------------


def test_a_panel_gives_one_report_per_board() -> None:
    found = reports(fixture("panel_three_boards.log"))
    assert [(r["sn"], r["result"]) for r in found] == [
        ("SN-1001", "P"), ("SN-1002", "F"), ("SN-1003", "F")]
    assert len({r["id"] for r in found}) == 3
    for report in found:  # the @BATCH header is every board's
        assert (report["pn"], report["rev"], report["machineName"]) == (
            "PCB-4411", "B", "ict-line2")
        assert report["uut"]["user"] == "op17" and report["uut"]["fixtureId"] == "FX-77"
        assert report["start"] == "2023-06-12T09:31:02+02:00"
    first, second, xd_out = found
    # "1%r698" on board 001 and "2%r698" on board 002 are the same test: one step name.
    assert list(steps(first)) == list(steps(second)) == ["pins", "shorts", "r698", "q141"]
    r698 = steps(second)["r698"]
    assert (r698["status"], r698["numericMeas"][0]["status"]) == ("F", "F")
    assert r698["causedUUTFailure"] is True
    assert second["uut"]["stepIdCausedUUTFailure"] == r698["id"] == 3
    assert (second["uut"]["errorCode"], second["uut"]["errorMessage"]) == (
        6, "i3070 test status 6: analog test failed")
    assert {m["description"]: m["text"] for m in second["miscInfos"]}["Board number"] == "002"
    assert xd_out["root"]["steps"] == []
    assert xd_out["uut"]["errorMessage"] == "i3070 test status 13: board X'd out (not tested)"


def test_shorts_failure_keeps_counts_and_details() -> None:
    report = one(fixture("shorts_failed.log"))
    assert (report["result"], report["root"]["status"]) == ("F", "F")
    shorts = steps(report)["shorts"]
    assert (shorts["status"], shorts["causedUUTFailure"]) == ("F", True)
    assert [(m["name"], m["value"], m["status"]) for m in shorts["numericMeas"]] == [
        ("shorts", 1, "F"), ("opens", 2, "F"), ("phantoms", 0, "P")]
    assert shorts["reportText"].splitlines() == [
        "short: GND VCC, +1.500000E+00",
        "open: U1-3, R12-1, +2.450000E+03",
        "open: U1-4, R13-1, +9.999999E+99",
        "Short #1 from GND to VCC, 1.5 ohm",
        "Open #1 U1-3 | R12-1 {expected < 10 ohm}",  # a literal field, braces and all
    ]


def test_pins_failure_lists_the_pins() -> None:
    report = one(fixture("pins_failed.log"))
    pins = steps(report)["pins"]
    assert pins["numericMeas"] == [
        {"compOp": "EQ", "status": "F", "unit": "", "value": 2, "lowLimit": 0}]
    assert pins["reportText"] == "pins: 10023 10024"
    assert report["uut"]["errorMessage"] == "i3070 test status 2: pins test failed"


def test_digital_testjet_and_boundary_scan() -> None:
    report = one(fixture("digital_failed.log"))
    by_name = steps(report)
    assert list(by_name) == ["pins", "shorts", "testjet", "u12", "u14", "connect_u20", "r5",
                             "spare"]
    u12 = by_name["u12"]
    assert (u12["stepType"], u12["status"], u12["booleanMeas"]) == (
        "ET_PFT", "F", [{"status": "F"}])
    assert u12["reportText"].splitlines() == [
        "failing vector 57, failing pins 3", "pins: 201 202 203",
        "Vector 57 failed on pins 201 202 203"]
    assert u12["causedUUTFailure"] is True
    assert by_name["u14"]["status"] == "P"
    assert by_name["testjet"]["numericMeas"][0]["value"] == 0
    assert [m["name"] for m in by_name["connect_u20"]["numericMeas"]] == ["shorts", "opens"]
    # A block with an analog and a digital result is a sequence of both.
    r5 = by_name["r5"]
    assert r5["stepType"] == "SequenceCall" and r5["seqCall"]["name"] == "r5"
    assert [(s["name"], s["stepType"]) for s in r5["steps"]] == [
        ("r5", "ET_NLT"), ("r5_dig", "ET_PFT")]
    # A block without results still carries its verdict.
    assert by_name["spare"]["booleanMeas"] == [{"status": "P"}]
    assert report["result"] == "F"


@pytest.mark.parametrize(("name", "result", "code"), [
    ("aborted_break.log", "T", 82), ("runtime_error.log", "E", 80)])
def test_aborted_and_error_runs(name: str, result: str, code: int) -> None:
    report = one(fixture(name))
    assert (report["result"], report["root"]["status"], report["uut"]["errorCode"]) == (
        result, result, code)
    assert all(step["status"] == "P" for step in report["root"]["steps"])


def test_report_text_before_any_step_goes_to_the_root() -> None:
    report = one(fixture("runtime_error.log"))
    assert report["root"]["reportText"] == 'Runtime error: cannot open file "analog/r5"'


@pytest.mark.parametrize(("code", "result"), [
    ("00", "P"), ("1", "F"), ("06", "F"), ("13", "F"), ("95", "F"), ("80", "E"), ("81", "T"),
    ("82", "T")])
def test_board_status_codes(tmp_path: Path, code: str, result: str) -> None:
    board = BOARD.replace("|00|", f"|{code}|", 1)
    report = one(write(tmp_path, log("{@BLOCK|r1|00\n{@A-RES|0|+1.0E+00}\n}\n", board)))
    assert report["result"] == result == report["root"]["status"]


# -- limits and measurements -----------------------------------------------------------------------


@pytest.mark.parametrize(("limits", "expected"), [
    ("{@LIM2|+2.000000E+00|+1.000000E+00}",
     {"compOp": "GELE", "lowLimit": 1.0, "highLimit": 2.0}),
    ("{@LIM3|+1.500000E+00|+2.000000E+00|+1.000000E+00}",
     {"compOp": "GELE", "lowLimit": 1.0, "highLimit": 2.0}),
    ("{@LIM2|+9.999999E+99|+1.000000E+00}", {"compOp": "GE", "lowLimit": 1.0}),
    # WATS compares LE with lowLimit (formats.md §1.2): the high limit goes there.
    ("{@LIM2|+2.000000E+00|-9.999999E+99}", {"compOp": "LE", "lowLimit": 2.0}),
    ("{@LIM2|+9.999999E+99|-9.999999E+99}", {"compOp": "LOG"}),
    ("", {"compOp": "LOG"}),
])
def test_limits(tmp_path: Path, limits: str, expected: dict[str, Any]) -> None:
    body = f"{{@BLOCK|d1|00\n{{@A-ZEN|0|+1.500000E+00{limits}}}\n}}\n"
    [measurement] = steps(one(write(tmp_path, log(body))))["d1"]["numericMeas"]
    assert measurement == {"status": "P", "unit": "V", "value": 1.5, **expected}


def test_file_statuses_win_and_a_failed_measurement_fails_its_step(tmp_path: Path) -> None:
    body = ("{@BLOCK|r1|00\n{@A-RES|1|+5.000000E+00{@LIM2|+2.0E+00|+1.0E+00}}\n}\n"
            "{@BLOCK|r2|01\n{@A-RES|0|+1.500000E+00{@LIM2|+2.0E+00|+1.0E+00}}\n}\n")
    board = BOARD.replace("|00|", "|06|", 1)
    by_name = steps(one(write(tmp_path, log(body, board))))
    assert (by_name["r1"]["status"], by_name["r1"]["numericMeas"][0]["status"]) == ("F", "F")
    assert (by_name["r2"]["status"], by_name["r2"]["numericMeas"][0]["status"]) == ("F", "P")


@pytest.mark.parametrize(("kind", "unit"), [
    ("RES", "Ω"), ("JUM", "Ω"), ("POT", "Ω"), ("CAP", "F"), ("IND", "H"), ("DIO", "V"),
    ("ZEN", "V"), ("FUS", "A"), ("MEA", ""), ("NPN", ""), ("SWI", "")])
def test_units_follow_the_kind_of_analog_test(tmp_path: Path, kind: str, unit: str) -> None:
    body = f"{{@BLOCK|x1|00\n{{@A-{kind}|0|+1.0E+00}}\n}}\n"
    assert steps(one(write(tmp_path, log(body))))["x1"]["numericMeas"][0]["unit"] == unit


def test_a_single_subtest_keeps_its_name(tmp_path: Path) -> None:
    body = "{@BLOCK|u1|00\n{@A-MEA|0|+3.3E+00|VOUT}\n}\n"
    step = steps(one(write(tmp_path, log(body))))["u1"]
    assert step["stepType"] == "ET_MNLT" and step["numericMeas"][0]["name"] == "VOUT"


def test_a_cut_analog_record_says_so(tmp_path: Path) -> None:
    body = "{@BLOCK|r1|00\n{@A-RES|0|+1.0E+00\x04}\n}\n"
    step = steps(one(write(tmp_path, log(body))))["r1"]
    assert step["reportText"] == "@A-RES cut short by the tester (Ctrl-D)"


# -- header, options, time, encodings --------------------------------------------------------------


def test_custom_records_cp1252_and_defaults() -> None:
    path = fixture("custom_records_cp1252.log")
    with pytest.raises(ConversionError, match=r"gives no UUT type \(part number\) and no "
                       "part_number is configured"):
        CONVERTER.convert(path, CONTEXT)
    context = ConverterContext(timezone=ZoneInfo("Europe/Oslo"), file_mtime=1.0,
                               defaults={"part_number": "PCB-8000", "revision": "R2", **PROCESS})
    report = one(path, context)
    assert (report["pn"], report["rev"], report["machineName"]) == ("PCB-8000", "R2", "ict-08")
    assert report["uut"]["user"] == "Jürgen Weiß"  # CP1252, as the tester writes it
    by_name = steps(report)
    assert list(by_name) == ["c7", "r9", "r10"]  # the custom records are skipped
    assert by_name["c7"]["reportText"] == "C7 is 1.0 µF"
    assert by_name["r10"]["reportText"] == "board retested after fixture reseat"
    assert {m["description"]: m["text"] for m in report["miscInfos"]}["Retest"] == (
        "230801160200")


def test_a_configured_encoding_is_obeyed(tmp_path: Path) -> None:
    path = fixture("custom_records_cp1252.log")
    context = ConverterContext(defaults={"part_number": "P", **PROCESS},
                               arguments={"encoding": "utf-8"})
    with pytest.raises(ConversionError, match=r"line 1 is not valid utf-8 \(byte \d+\); set the "
                       "watch folder's encoding"):
        CONVERTER.convert(path, context)
    context = ConverterContext(defaults={"part_number": "P", **PROCESS},
                               arguments={"encoding": "latin-1"})
    report = CONVERTER.convert(path, context)
    assert isinstance(report, dict) and report["uut"]["user"] == "Jürgen Weiß"
    with pytest.raises(ConversionError, match="unknown encoding 'klingon'"):
        CONVERTER.convert(path, ConverterContext(arguments={"encoding": "klingon"}))


def test_utf8_logs_and_crlf_line_ends_read_the_same(tmp_path: Path) -> None:
    original = fixture("digital_failed.log").read_bytes()
    crlf = write(tmp_path, b"\xef\xbb\xbf" + original.replace(b"\n", b"\r\n"), "crlf.log")
    plain = one(fixture("digital_failed.log"))
    assert json.dumps(one(crlf) | {"id": ""}) == json.dumps(plain | {"id": ""})


def test_a_log_without_batch_uses_the_options(tmp_path: Path) -> None:
    path = fixture("btest_only.log")
    with pytest.raises(ConversionError, match=r"line 1: the file has no @BATCH record, so it "
                       "gives no UUT type"):
        CONVERTER.convert(path, CONTEXT)
    context = ConverterContext(
        station_name="ST-02", file_mtime=1.0, timezone=ZoneInfo("UTC"),
        defaults={"part_number": "PN-9", "revision": "B", "operator": "night shift"},
        arguments={"process_code": "20", "process_name": "ICT", "sequence_name": "ICT plan",
                   "sequence_version": "7"})
    report = one(path, context)
    assert {key: report[key] for key in (
        "pn", "rev", "processCode", "processName", "machineName", "start")} == {
        "pn": "PN-9", "rev": "B", "processCode": 20, "processName": "ICT",
        "machineName": "ST-02", "start": "2023-09-01T17:00:00+00:00"}
    assert report["uut"]["user"] == "night shift"
    assert report["root"]["seqCall"] == {"path": "", "name": "ICT plan", "version": "7"}
    assert [s["name"] for s in report["root"]["steps"]] == ["r1", "VCC_3V3"]


def test_the_file_beats_the_options(tmp_path: Path) -> None:
    context = ConverterContext(defaults={"part_number": "X", "revision": "X", "operator": "X",
                                         "station_name": "X", **PROCESS}, file_mtime=1.0)
    report = one(write(tmp_path, log("")), context)
    assert (report["pn"], report["rev"], report["uut"]["user"], report["machineName"]) == (
        "PCB-1", "A", "op", "ict-9")


@pytest.mark.parametrize("value", ["ten", 1.5, 40000, True])
def test_a_bad_process_code_names_the_setting(tmp_path: Path, value: object) -> None:
    path = write(tmp_path, log(""))
    with pytest.raises(ConversionError, match=f"process_code '?{value}'? is (not a whole "
                       "number|out of range)"):
        CONVERTER.convert(path, ConverterContext(arguments={"process_code": value}))


def test_times_are_local_to_the_folder_zone_and_execution_time_is_the_duration(
        tmp_path: Path) -> None:
    board = "{@BTEST|SN-1|00|230115235959||0|analog||n|n|230116000104||001|\n"
    report = one(write(tmp_path, log("", board)))
    assert (report["start"], report["startUTC"]) == (
        "2023-01-15T23:59:59+01:00", "2023-01-15T22:59:59Z")
    assert report["uut"]["execTime"] == 65.0  # no duration field: end minus start


def test_without_a_start_time_the_file_time_is_used(tmp_path: Path) -> None:
    board = "{@BTEST|SN-1|00|||0|analog||n|n|||001|\n"
    report = one(write(tmp_path, log("", board)), ConverterContext(
        timezone=ZoneInfo("UTC"), file_mtime=1_700_000_000.0, defaults=PROCESS))
    assert report["start"] == "2023-11-14T22:13:20+00:00"
    assert "execTime" not in report["uut"]


def test_a_four_digit_year_is_read_too(tmp_path: Path) -> None:
    board = "{@BTEST|SN-1|00|20230115120000|000001|0|analog||n|n|||001|\n"
    assert one(write(tmp_path, log("", board)))["start"] == "2023-01-15T12:00:00+01:00"


# -- refusals and their messages -------------------------------------------------------------------


@pytest.mark.parametrize(("board", "body", "message"), [
    ("{@BTEST||00|230101120000|000010\n", "", r"line 2: the @BTEST record has no board id"),
    ("{@BTEST|SN|xx|230101120000\n", "", r"line 2: the test status of the @BTEST record "
     r"\(field 2\) 'xx' is not a whole number"),
    ("{@BTEST|SN|00|231301120000\n", "", r"the start time '231301120000' of the @BTEST record "
     "is not a valid date"),
    ("{@BTEST|SN|00|2301011200\n", "", r"is not a time like 210805125041"),
    (BOARD, "{@BLOCK|r1|00\n{@A-RES|0|+1.0E+99999}\n}\n", r"line 4: the measured value of "
     r"the @A-RES record \(field 2\) '\+1.0E\+99999' is not a number"),
    (BOARD, "{@BLOCK|r1|00\n{@A-RES|0|1.0{@LIM2|+2.0}}\n}\n", r"line 4: the low limit of the "
     r"@LIM2 record \(field 2\) is missing"),
    (BOARD, "{@BLOCK|r1|zz\n}\n", r"line 3: the block status of the @BLOCK record"),
    (BOARD, "{@TS|0|many|0|0|shorts}\n", r"the shorts of the @TS record \(field 2\) 'many'"),
])
def test_bad_fields_are_named_with_line_and_record(tmp_path: Path, board: str, body: str,
                                                   message: str) -> None:
    path = write(tmp_path, log(body, board))
    with pytest.raises(ConversionError, match=message) as caught:
        CONVERTER.convert(path, CONTEXT)
    assert str(caught.value).startswith(f"{path}: ")


def test_other_files_are_refused_as_not_i3070(tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match=r"not an i3070 log: it does not begin with a "
                       r"'\{@' record"):
        CONVERTER.convert(write(tmp_path, '{"type": "T"}'), CONTEXT)


def test_a_log_without_a_board_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match="no @BTEST record in the file"):
        CONVERTER.convert(write(tmp_path, "{@BATCH|a|b\n}\n"), CONTEXT)


def test_an_empty_file_is_waited_for(tmp_path: Path) -> None:
    with pytest.raises(IncompleteFileError, match="empty"):
        CONVERTER.convert(write(tmp_path, " \n"), CONTEXT)


def test_a_huge_file_is_refused_before_reading(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(i3070_module, "MAX_FILE_BYTES", 1024)
    path = write(tmp_path, log("{@RPT|" + "x" * 2000 + "}\n"))
    with pytest.raises(ConversionError, match="i3070 files over 1 KiB are refused"):
        CONVERTER.convert(path, CONTEXT)


def test_a_missing_file_is_a_conversion_error(tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match="cannot read the file"):
        CONVERTER.convert(tmp_path / "gone.log", CONTEXT)


def test_validation_problems_point_at_the_record(tmp_path: Path) -> None:
    body = "{@BLOCK|r1|00\n{@A-RES|0|+1.0E+00{@LIM2|+2.0E+00|+5.0E-01}}\n}\n"
    report = CONVERTER.convert(write(tmp_path, log(body)), CONTEXT)
    assert isinstance(report, ReportDict)
    assert report.locate("root.steps[0]") == "line 3 (@BLOCK r1)"
    assert report.locate("root.steps[0].numericMeas[0]") == "line 4 (@A-RES)"
    assert report.locate("miscInfos[0]") == "line 2"
    del report["root"]["steps"][0]["numericMeas"][0]["highLimit"]
    with pytest.raises(ReportValidationError, match=r"line 4 \(@A-RES\)"):
        validate(report)


# -- detection and registration ----------------------------------------------------------------


@pytest.mark.parametrize(("head", "score"), [
    (b"{@BATCH|a|b\n{@BTEST|sn|00", 0.95),
    (b"\xef\xbb\xbf\r\n{@BATCH|a|b", 0.9),
    (b"{@BTEST|sn|00", 0.9),
    (b"{@Own|x}\n{@BTEST|sn|00", 0.6),
    (b"{@Own|x}", 0.0),
    (b'{"type": "T"}', 0.0),
    (b"", 0.0),
])
def test_detect(head: bytes, score: float) -> None:
    found, why = CONVERTER.detect_with_reason(Path("x"), head)
    assert found == score and (bool(why) == bool(score))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=512))
def test_detect_never_raises(head: bytes) -> None:
    assert 0.0 <= CONVERTER.detect(Path("x"), head) <= 1.0


def test_registered_and_chosen_by_content(tmp_path: Path) -> None:
    registry = ConverterRegistry()
    assert isinstance(registry.create("KeysightI3070Converter"), KeysightI3070Converter)
    assert CONVERTER.matches(Path("board.LOG")) and CONVERTER.matches(Path("board.ict"))
    assert not CONVERTER.matches(Path("1-230612093102PNL-D-30701"))  # found by content
    path = write(tmp_path, fixture("panel_three_boards.log").read_bytes(),
                 "1-230612093102PNL-D-30701")
    detection = registry.detect(path, path.read_bytes())
    assert detection.name == "KeysightI3070Converter", detection.reason


test_garbage_only_raises_conversion_errors = FuzzTarget(
    CONVERTER, "garbage.log", ConverterContext(), check=convert_like_the_service
).garbage_test(examples=200, max_size=2048)


@settings(max_examples=200, deadline=2000,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.text(alphabet="{@}|\\~0123456789-+.E%ABLOCKRESTPFJ \n\x04", max_size=300))
def test_log_shaped_garbage_only_raises_conversion_errors(tmp_path: Path, body: str) -> None:
    path = tmp_path / "board.log"
    path.write_text(log(body), encoding="ascii")
    try:
        result = CONVERTER.convert(path, ConverterContext(file_mtime=1.0, defaults=PROCESS))
    except ConversionError:
        return
    for report in result if isinstance(result, list) else [result]:
        assert report["sn"] == "SN-1"

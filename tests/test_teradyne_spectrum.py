"""TeradyneSpectrumICTConverter on the CTRD sample, on small exports of our own, and on broken
input; the s-expression parser on its own."""

from __future__ import annotations

import re
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pywats_client.converters import ConverterRegistry
from pywats_client.converters.teradyne_spectrum import (
    MAX_DEPTH,
    TeradyneSpectrumICTConverter,
    parse,
)
from pywats_client.errors import ConversionError, IncompleteFileError
from pywats_client.report.model import ReportDict, iter_steps
from tests.conftest import SAMPLES, each_sample
from tests.converting import FuzzTarget, UnderTest, check_like_the_service, sample_files, spliced

SAMPLE = SAMPLES / "teradyne_spectrum" / "sample_ict_data.txt"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "teradyne"
CET = timezone(timedelta(hours=1))
CONVERTER = TeradyneSpectrumICTConverter()
FIXTURE_OK = [HealthCheck.function_scoped_fixture]  # tmp_path is only written, never shared
# A station's context: ICT-02, process code 50, times in UTC+1.
SPECTRUM = UnderTest(CONVERTER, SAMPLE, "board.txt", station_name="ICT-02",
                     defaults={"process_code": 50}, timezone=CET, file_mtime=1_777_777_777.0)
CONTEXT, make_context, reports_of = SPECTRUM.context, SPECTRUM.make_context, SPECTRUM.reports_of
needs_sample, write = SPECTRUM.needs_sample, SPECTRUM.write


def by_name(parent: dict[str, Any], name: str) -> dict[str, Any]:
    return next(step for step in parent["steps"] if step["name"] == name)


def board(*entries: str, serial: str = "SN-1") -> str:
    """A minimal export: program, one section, `entries`, a serial number."""
    return "\n".join(['(PROGRAM_NAME: "PB-1")', '(SECTION_NAME: "S")', *entries,
                      f"(USER: Serialnumber:{serial})", ""])


def step_text(page: str, name: str = "T1", stat: str = "PASS") -> str:
    return (f'(STEP: (TYPE: RAW) (TIME: 01/02/2024 10:00:00 ) (SNAME: "{name}") {page} '
            f"(STAT: {stat}))")


# -- the sample ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample_report() -> dict[str, Any]:
    needs_sample()
    [report] = reports_of(SAMPLE)
    return report


def test_sample_header(sample_report: dict[str, Any]) -> None:
    report = sample_report
    assert (report["type"], report["pn"], report["sn"], report["rev"]) == (
        "T", "PB3187900", "1111111111", "")
    assert (report["processCode"], report["result"], report["machineName"]) == (50, "P", "ICT-02")
    # The first step's TIME is the start; USER EndTime gives the execution time.
    assert report["start"] == "2023-02-09T16:44:11+01:00"
    assert report["startUTC"] == "2023-02-09T15:44:11Z"
    assert report["uut"] == {"user": "1234567", "execTime": 27.124}
    assert report["miscInfos"] == [
        {"description": "CustomerSerialnumber", "text": "AAAAAAAAAAA"},
        {"description": "OrderNumber", "text": "222222222"},
    ]
    assert report["root"]["seqCall"] == {"path": "PB3187900", "name": "PB3187900",
                                         "version": "V2.0.0.0"}
    assert report["root"]["status"] == "P"


def test_sample_sections_steps_and_measurement_counts(sample_report: dict[str, Any]) -> None:
    sections = sample_report["root"]["steps"]
    assert [(s["name"], len(s["steps"])) for s in sections] == [
        ("Header", 2), ("DISCHARGE", 28), ("APC", 1), ("JUMPERS", 182), ("SHORTS", 1),
        ("CAPACITORS", 149), ("RESISTORS", 54), ("ZENERS", 62), ("Trailer", 1),
        ("DISCHARGE", 28),
    ]  # the empty ANALOG section is left out; DISCHARGE runs twice
    assert all(s["stepType"] == "SequenceCall" and s["status"] == "P" for s in sections)
    assert {s["seqCall"]["path"] for s in sections} == {"SubProgram-1"}
    every = [step for _, step in iter_steps(sample_report["root"])]
    assert sum(len(s.get("numericMeas", [])) for s in every) == 457  # one per MEASVAL
    assert sum(len(s.get("booleanMeas", [])) for s in every) == 63
    # The root, 10 sections, 508 steps and the 14 pages of the 3 steps with several pages.
    assert len(every) == 1 + 10 + 508 + 14
    assert [s["id"] for s in every] == list(range(len(every)))
    assert all(s["status"] == "P" for s in every)


def test_sample_values_limits_and_units(sample_report: dict[str, Any]) -> None:
    sections = {s["name"]: s for s in sample_report["root"]["steps"]}
    cap = by_name(sections["CAPACITORS"], "CAP[C1]")
    assert cap["stepType"] == "ET_NLT"
    assert cap["numericMeas"] == [{"compOp": "GELE", "status": "P", "unit": "nF",
                                   "value": 4.6900024, "lowLimit": 3.64, "highLimit": 5.76}]
    assert cap["reportText"] == "CAPACITOR 4n7 TOP 3.326 2.831"
    assert cap["start"] == "2023-02-09T16:44:30+01:00"
    # Low limit in nano-ohms, value and high limit in milli-ohms: all in mOhm.
    track = by_name(sections["RESISTORS"], "FU1_IN")
    assert track["numericMeas"] == [{"compOp": "GELE", "status": "P", "unit": "mOhm",
                                     "value": 193.4001, "lowLimit": 2.24e-06,
                                     "highLimit": 250.0}]
    assert track["reportText"] == "TRACK FROM P1 TROUGH L3 TO J1"
    big = by_name(sections["RESISTORS"], "RES[R900]")
    assert big["numericMeas"][0] == {"compOp": "GELE", "status": "P", "unit": "MOhm",
                                     "value": 2.9936974, "lowLimit": 2.85, "highLimit": 3.15}
    # A jumper: high limit only (LE compares with lowLimit), value in INTC_RESULT.
    jumper = by_name(sections["JUMPERS"], "JUMPER[L3]")
    assert jumper["numericMeas"] == [{"compOp": "LE", "status": "P", "unit": "Ohm",
                                      "value": 1.4330307, "lowLimit": 5.0}]
    zener = by_name(sections["ZENERS"], "SMBJ33A[V6]")
    assert zener["numericMeas"][0] == {"compOp": "GELE", "status": "P", "unit": "V",
                                       "value": 38.324821, "lowLimit": 36.7, "highLimit": 40.6}
    # Discharge pages carry no measured value: pass/fail.
    discharge = by_name(sections["DISCHARGE"], "DISCHARGE[C118_DCG]")
    assert (discharge["stepType"], discharge["booleanMeas"]) == ("ET_PFT", [{"status": "P"}])
    shorts = sections["SHORTS"]["steps"][0]
    assert shorts["stepType"] == "ET_MPFT"
    assert shorts["booleanMeas"] == [{"name": "SPECIAL", "status": "P"},
                                     {"name": "SHORTS", "status": "P"}]


def test_sample_multi_page_steps_are_sequences(sample_report: dict[str, Any]) -> None:
    header = sample_report["root"]["steps"][0]
    start = by_name(header, "START")
    assert start["stepType"] == "SequenceCall"
    assert [(p["name"], p["reportText"]) for p in start["steps"]] == [
        ("showconnections", "Program: C:\\TP\\PB3187900\\img\\start.bat"),
        ("exitShowconnections", "Program: C:\\TP\\PB3187900\\img\\stop.bat"),
    ]
    board_id = by_name(header, "BoardID")
    assert board_id["reportText"] == ("SerialNumber Error!\nProgram: C:\\Program Files\\"
                                      "Teradyne\\Spectrum\\5.0\\BIN\\GetBoardIDs.exe")
    zeners = sample_report["root"]["steps"][7]
    arrays = [s for s in zeners["steps"] if s["stepType"] == "SequenceCall"]
    assert [(s["name"], len(s["steps"])) for s in arrays] == [("SMDA05C[V100]", 6),
                                                              ("SMDA05C[V101]", 6)]
    assert arrays[0]["steps"][0]["name"] == "SMDA05CA[V100]_REV_V_1"
    assert arrays[0]["steps"][0]["numericMeas"][0]["value"] == 7.4394488


def test_sample_places_name_the_entries() -> None:
    needs_sample()
    raw = CONVERTER.convert(SAMPLE, CONTEXT)
    assert isinstance(raw, ReportDict)
    locations = raw.locations
    assert locations[""] == "(PROGRAM_NAME: ...) at line 1"
    assert locations["sn"] == "(USER: ...) at line 30"
    assert locations["root.steps[0]"] == "(SECTION_NAME: ...) at line 3"
    assert locations["root.steps[0].steps[0]"] == "(STEP: 'START') at line 5"
    assert locations["root.steps[0].steps[0].steps[1]"] == "(PAGE: ...) at line 13"


def test_sample_is_detected_and_chosen_by_content() -> None:
    needs_sample()
    head = SAMPLE.read_bytes()[:65536]
    score, why = CONVERTER.detect_with_reason(SAMPLE, head)
    assert score >= 0.9 and "PROGRAM_NAME" in why
    chosen = ConverterRegistry().choose(SAMPLE, head, auto_detect=True)
    assert chosen is not None
    assert chosen[1].startswith("TeradyneSpectrumICTConverter: detect 0.95")


@pytest.mark.parametrize("other", each_sample(sample_files(besides="teradyne_spectrum")))
def test_other_formats_are_not_detected(other: Path) -> None:
    assert CONVERTER.detect(other, other.read_bytes()[:65536]) == 0.0


# -- our own exports ------------------------------------------------------------------------


def test_failed_board_statuses_scales_and_shapes() -> None:
    path = FIXTURES / "spectrum_failed_board.txt"
    [report] = reports_of(path, make_context(timezone=timezone.utc))
    assert (report["pn"], report["sn"], report["result"]) == ("PB-100", "SN-42", "F")
    assert report["root"]["status"] == "F"
    assert report["start"] == "2024-12-31T23:59:50+00:00"
    # EndTime is after midnight: the test ran into the next day.
    assert report["uut"] == {"user": "bob", "execTime": 20.25}
    assert report["miscInfos"] == [{"description": "Fixture", "text": "FX-9"}]
    sections = report["root"]["steps"]
    assert [(s["name"], s["status"]) for s in sections] == [
        ("Header", "P"), ("RESISTORS", "F"), ("ZENERS", "P"), ("ANALOG", "P")]
    start = sections[0]["steps"][0]
    assert start["reportText"] == "Program: C:\\Program Files (x86)\\Teradyne\\start.bat"
    r1 = by_name(sections[1], "RES[R1]")
    # Value in M, low limit in K, high limit without scale: all in the high limit's (ohm).
    assert r1["status"] == "F"
    assert r1["numericMeas"] == [{"compOp": "GELE", "status": "F", "unit": "Ohm",
                                  "value": 1200000.0, "lowLimit": 9500.0, "highLimit": 10500.0}]
    assert r1["reportText"] == "RESISTOR 10K\nR1 too high"
    r2 = by_name(sections[1], "RES[R2]")
    assert r2["numericMeas"] == [{"compOp": "GE", "status": "P", "unit": "mOhm",
                                  "value": 250.0, "lowLimit": 100.0}]
    diode = by_name(sections[2], "ZD[D1]")
    assert [(p["name"], p["numericMeas"]) for p in diode["steps"]] == [
        ("D1_A", [{"compOp": "LE", "status": "P", "unit": "V", "value": 5.1, "lowLimit": 6.0}]),
        ("D1_B", [{"compOp": "LOG", "status": "P", "unit": "V", "value": 5.2}]),
    ]
    pair = by_name(sections[3], "PAIR[Q1]")
    assert pair["stepType"] == "ET_MNLT"
    assert pair["numericMeas"] == [
        {"name": "VBE", "compOp": "GELE", "status": "P", "unit": "mV", "value": 650.0,
         "lowLimit": 600.0, "highLimit": 700.0},
        {"name": "VBE 2", "compOp": "GELE", "status": "P", "unit": "mV", "value": 660.0,
         "lowLimit": 600.0, "highLimit": 700.0},
    ]
    mixed = by_name(sections[3], "MIX[U1]")
    assert mixed["stepType"] == "SequenceCall"
    assert [(s["name"], s["stepType"]) for s in mixed["steps"]] == [("VCC", "ET_NLT"),
                                                                    ("SHORTS", "ET_PFT")]


def test_two_boards_in_one_file() -> None:
    reports = reports_of(FIXTURES / "spectrum_two_boards.txt")
    assert [(r["sn"], r["result"]) for r in reports] == [("B-1", "P"), ("B-2", "F")]
    # The second board has no STATUS line: its result is its steps' roll-up.
    failed = reports[1]["root"]["steps"][0]["steps"][0]
    assert failed["numericMeas"] == [{"compOp": "LE", "status": "F", "unit": "Ohm",
                                      "value": 7.25, "lowLimit": 5.0}]
    assert reports[0]["id"] != reports[1]["id"]


def test_several_subprograms_add_a_level(tmp_path: Path) -> None:
    text = "\n".join([
        '(PROGRAM_NAME: "PB-1")', '(SUBPROGRAM_NAME: "Top")', '(SECTION_NAME: "S")',
        step_text("(PAGE: (PAGE_NAME: \"a\") (STAT: PASS))", "A"),
        '(SUBPROGRAM_NAME: "Bottom")', '(SECTION_NAME: "S")',
        step_text("(PAGE: (PAGE_NAME: \"b\") (STAT: PASS))", "B"),
        "(USER: Serialnumber:1)"])
    [report] = reports_of(write(tmp_path, text))
    assert [(s["name"], [c["name"] for c in s["steps"]]) for s in report["root"]["steps"]] == [
        ("Top", ["S"]), ("Bottom", ["S"])]


def test_statuses_missing_from_the_file(tmp_path: Path) -> None:
    # No STAT anywhere: numeric results are judged by their limits, the rest is Done.
    page = ("(PAGE: (PAGE_NAME: \"p\") (ANA: (TYPE: RES) (LOLIM: (VAL: 1) (UNIT: O)) "
            "(MEASVAL: (VAL: 0.5) (UNIT: O)) (HILIM: (VAL: 2) (UNIT: O))))")
    text = board('(STEP: (SNAME: "R1") ' + page + ")",
                 '(STEP: (SNAME: "X") (PAGE: (PAGE_NAME: "x")))')
    [report] = reports_of(write(tmp_path, text))
    r1, x = report["root"]["steps"][0]["steps"]
    assert (r1["status"], r1["numericMeas"][0]["status"]) == ("F", "F")
    assert (x["status"], x["booleanMeas"]) == ("D", [{"status": "P"}])
    assert report["result"] == "F"
    assert "start" not in r1
    # No step has a TIME: the start comes from USER Date and StartTime.
    text = board(step_text("(PAGE: (STAT: PASS))").replace(
        "(TIME: 01/02/2024 10:00:00 ) ", ""), "(USER: Date:03/04/2024)",
        "(USER: StartTime:07:08:09:250)", "(USER: EndTime:07:08:19:500)")
    [report] = reports_of(write(tmp_path, text))
    assert report["start"] == "2024-03-04T07:08:09.250+01:00"
    assert report["uut"]["execTime"] == 10.25


def test_cp1252_export_is_read_as_cp1252(tmp_path: Path) -> None:
    text = board(step_text("(PAGE: (STAT: PASS))"), "(USER: Operator:J\u00f8rgen)",
                 serial="\u00c6-1")
    path = tmp_path / "cp1252.txt"
    path.write_bytes(text.encode("cp1252"))
    # Not UTF-8 and no encoding configured: the tester's code page, as for every text format.
    for context in (make_context(), make_context(arguments={"encoding": "cp1252"})):
        [report] = reports_of(path, context)
        assert (report["sn"], report["uut"]["user"]) == ("\u00c6-1", "J\u00f8rgen")
    with pytest.raises(ConversionError, match=r"line 4 is not valid utf-8.*encoding"):
        CONVERTER.convert(path, make_context(arguments={"encoding": "utf-8"}))


def test_header_values_from_the_watch_folder(tmp_path: Path) -> None:
    path = write(tmp_path, board(step_text("(PAGE: (STAT: PASS))")))
    context = make_context(arguments={
        "part_number": "PN-ARG", "revision": "B", "sequence_name": "ICT", "operator": "op",
        "sequence_version": "9", "process_code": 60, "process_name": "ICT",
        "station_name": "SPEC-1"})
    [report] = reports_of(path, context)
    assert (report["pn"], report["rev"], report["processCode"], report["processName"]) == (
        "PN-ARG", "B", 60, "ICT")
    assert report["root"]["seqCall"] == {"path": "PB-1", "name": "ICT", "version": "9"}
    assert (report["uut"]["user"], report["machineName"]) == ("op", "SPEC-1")
    [report] = reports_of(path, make_context(defaults={"process_code": 50,
                                                       "part_number": "PN-D"}))
    assert report["pn"] == "PB-1"  # converters.defaults do not beat the program name


def test_missing_and_broken_entries_are_named(tmp_path: Path) -> None:
    no_serial = write(tmp_path, board(step_text("(PAGE: (STAT: PASS))")).replace(
        "(USER: Serialnumber:SN-1)", ""), "no_serial.txt")
    with pytest.raises(ConversionError, match=r"no_serial.txt: the board at line 1 has no "
                                              r"serial number.*\(USER: Serialnumber"):
        CONVERTER.convert(no_serial, CONTEXT)
    no_program = write(tmp_path, board(step_text("(PAGE: (STAT: PASS))")).replace(
        '(PROGRAM_NAME: "PB-1")\n', ""))
    with pytest.raises(ConversionError, match="no part number"):
        CONVERTER.convert(no_program, CONTEXT)
    [report] = reports_of(no_program, make_context(defaults={"process_code": 50,
                                                             "part_number": "PN-D"}))
    assert report["pn"] == "PN-D"
    maybe = board(step_text("(PAGE: (STAT: PASS))", stat="MAYBE"))
    with pytest.raises(ConversionError, match=r"line 3: \(STAT: MAYBE\) is not a known status"):
        CONVERTER.convert(write(tmp_path, maybe), CONTEXT)
    cases = [
        ("(PAGE: (ANA: (MEASVAL: (VAL: 1,5) (UNIT: V))))",
         r"line 3: \(MEASVAL: \(VAL: 1,5\)\) is not a number"),
        ("(PAGE: (ANA: (MEASVAL: (VAL: 1) (SCALE: X) (UNIT: V))))",
         r"\(SCALE: X\)\) is not a known scale"),
        ("(PAGE: (ANA: (LOLIM: (VAL: 1) (UNIT: O)) (MEASVAL: (VAL: 1) (UNIT: V))))",
         r"different units \(Ohm, V\)"),
        ("(PAGE: (ANA: (MEASVAL: (VAL: 1e300) (SCALE: G) (UNIT: V)) (HILIM: (VAL: 1) "
         "(SCALE: p) (UNIT: V))))", "out of range"),
    ]
    for page, message in cases:
        with pytest.raises(ConversionError, match=message):
            CONVERTER.convert(write(tmp_path, board(step_text(page))), CONTEXT)
    bad_time = board(step_text("(PAGE: (STAT: PASS))").replace("01/02/2024", "13/45/2024"))
    with pytest.raises(ConversionError, match="not a valid date"):
        CONVERTER.convert(write(tmp_path, bad_time), CONTEXT)
    bad_verdict = board(step_text("(PAGE: (STAT: PASS))"), "(USER: STATUS: BOARD DONE)")
    with pytest.raises(ConversionError, match="is not a board verdict"):
        CONVERTER.convert(write(tmp_path, bad_verdict), CONTEXT)
    # Without a step, a board with its verdict did not run; one without is still being tested.
    no_steps = write(tmp_path, '(PROGRAM_NAME: "PB-1")\n(USER: Serialnumber:1)\n'
                               '(USER: STATUS: BOARD FAILED)\n')
    with pytest.raises(ConversionError, match=r"no \(STEP: ...\) entry found") as caught:
        CONVERTER.convert(no_steps, CONTEXT)
    assert not isinstance(caught.value, IncompleteFileError)
    for begun in ('(PROGRAM_NAME: "PB-1")\n(USER: Serialnumber:1)\n', "", "\n  \n"):
        with pytest.raises(IncompleteFileError, match=r"no \(STEP: ...\) entry yet"):
            CONVERTER.convert(write(tmp_path, begun), CONTEXT)
    no_code = make_context(defaults={})
    with pytest.raises(ConversionError, match="set process_code"):
        CONVERTER.convert(FIXTURES / "spectrum_two_boards.txt", no_code)


def test_non_finite_values_are_no_values(tmp_path: Path) -> None:
    page = "(PAGE: (STAT: FAIL) (ANA: (STAT: FAIL) (MEASVAL: (VAL: -NAN) (UNIT: V))))"
    [report] = reports_of(write(tmp_path, board(step_text(page, stat="FAIL"))))
    step = report["root"]["steps"][0]["steps"][0]
    assert (step["stepType"], step["booleanMeas"]) == ("ET_PFT", [{"status": "F"}])


def test_long_names_and_misc_texts_are_cut_to_the_server_limits(tmp_path: Path) -> None:
    text = board(step_text("(PAGE: (STAT: PASS))", name="N" * 150),
                 f"(USER: {'K' * 120}: {'v' * 120})")
    [report] = reports_of(write(tmp_path, text))
    assert report["root"]["steps"][0]["steps"][0]["name"] == "N" * 100
    assert report["miscInfos"] == [{"description": "K" * 100, "text": "v" * 100}]


# -- the parser ------------------------------------------------------------------------------


def test_parser_values_strings_and_literal_parentheses() -> None:
    [node] = parse('(A: (B: "x (y)") (C: C:\\Program Files (x86)\\t.exe) (D:  12 ) , '
                   '(E: (F: 1) , (F: 2)))')
    assert node.key == "A" and [c.key for c in node.children] == ["B", "C", "D", "E"]
    assert node.value_of("B") == "x (y)"
    assert node.value_of("C") == "C:\\Program Files (x86)\\t.exe"
    assert node.value_of("D") == "12"
    e = node.first("E")
    assert e is not None and [f.text for f in e.all("F")] == ["1", "2"]
    assert node.value_of("Z") is None
    assert [n.line for n in parse('(A: 1)\n\n(B:\n (C: 2))')[1].children] == [4]


@pytest.mark.parametrize(("text", "error", "message"), [
    ("(A: 1))", ConversionError, r"line 1: '\)' closes nothing"),
    ("\n(A: 1) stray", ConversionError, r"line 2: text 'stray' outside any"),
    ('"x" (A: 1)', ConversionError, "quoted string outside"),
    ("( x y", ConversionError, "not followed by KEY"),
    ("( x", IncompleteFileError, "ends inside an entry's key"),
    ("(A: 1)\n(PROGRAM_NA", IncompleteFileError, "ends inside an entry's key"),
    ("(A: (B: 1)", IncompleteFileError, r"ends inside \(A: ...\) opened at line 1"),
    ('(A: "abc', IncompleteFileError, "ends inside a quoted string"),
])
def test_parser_errors(text: str, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        parse(text)


def test_parser_refuses_deep_nesting_without_recursion() -> None:
    deep = "(A: " * 100_000 + ")" * 100_000
    with pytest.raises(ConversionError, match=f"nested more than {MAX_DEPTH} deep"):
        parse(deep)
    ok = "(A: " * MAX_DEPTH + ")" * MAX_DEPTH
    assert parse(ok)[0].key == "A"


# -- truncation and garbage ----------------------------------------------------------------


def test_prefixes_of_the_sample_are_incomplete_or_a_partial_board(tmp_path: Path) -> None:
    needs_sample()
    data = SAMPLE.read_bytes()
    path = tmp_path / "partial.txt"
    # Cuts inside entries (after each "(STEP:" and inside a quoted name) are incomplete.
    inside = [m.end() for m in re.finditer(rb"\(STEP:", data)][::60]
    inside += [m.start() + 12 for m in re.finditer(rb'\(SNAME: "', data)][5::90]
    for cut in inside:
        path.write_bytes(data[:cut])
        with pytest.raises(IncompleteFileError):
            CONVERTER.convert(path, CONTEXT)
    # Cut at the end of an entry the export is complete as far as it goes.
    cut = data.index(b"(SECTION_NAME: \"RESISTORS\")")
    path.write_bytes(data[:cut])
    report = CONVERTER.convert(path, CONTEXT)
    assert isinstance(report, dict)
    assert [s["name"] for s in report["root"]["steps"]][-1] == "CAPACITORS"


FUZZ = FuzzTarget(CONVERTER, "fuzz.txt", CONTEXT, check=check_like_the_service)
test_garbage_bytes_only_raise_conversion_errors = FUZZ.garbage_test()


test_shuffled_entries_only_raise_conversion_errors = FUZZ.shuffled_test([
    '(PROGRAM_NAME: "P")', '(SUBPROGRAM_NAME: "S")', '(SECTION_NAME: "X")', "(STEP:",
    "(PAGE:", "(ANA:", "(INTC:", "(INTC_RESULT:", "(TYPE: RES)", "(STAT: PASS)",
    "(STAT: FAIL)", "(SNAME: \"n\")", "(TIME: 01/02/2024 10:00:00 )", "(MEASVAL:",
    "(LOLIM:", "(HILIM:", "(VAL: 1.5)", "(VAL: -2e3)", "(SCALE: m)", "(SCALE: M)",
    "(UNIT: O)", "(UNIT: V)", ")", ")", ")", "(USER: Serialnumber:7)",
    "(USER: STATUS: BOARD FAILED)", "(USER: EndTime:10:00:05:100)", "(", "\"", ",", "\n",
], joiner=" ", max_size=60, examples=200)


@pytest.fixture(scope="module")
def sample_excerpt() -> bytes:
    """The sample's first 40 steps and its trailer: small enough to mutate many times."""
    needs_sample()
    data = SAMPLE.read_bytes()
    steps = [m.start() for m in re.finditer(rb"\n\(STEP:", data)]
    return data[:steps[40]] + data[data.rindex(b"\n    (USER:  STATUS"):]


@settings(max_examples=60, deadline=3000, suppress_health_check=FIXTURE_OK)
@given(cut=st.integers(min_value=0), start=st.integers(min_value=0),
       junk=st.binary(max_size=40))
def test_mutated_sample_only_raises_conversion_errors(
        tmp_path: Path, sample_excerpt: bytes, cut: int, start: int, junk: bytes) -> None:
    FUZZ(tmp_path, spliced(sample_excerpt, start, junk, width=cut % 64))

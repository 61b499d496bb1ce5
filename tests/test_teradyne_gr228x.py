"""TeradyneICTConverter on the GR228x sample log, on small logs of our own, and on broken input."""

from __future__ import annotations

import logging
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pywats_client.converters import ConverterRegistry
from pywats_client.converters.teradyne_gr228x import TeradyneICTConverter
from pywats_client.errors import ConversionError, IncompleteFileError
from tests.conftest import SAMPLES, each_sample
from tests.converting import FuzzTarget, UnderTest, check_like_the_service, sample_files, spliced

SAMPLE = SAMPLES / "teradyne_gr228x" / "43420_BIO2.LOG"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "teradyne"
CEST = timezone(timedelta(hours=2))
CONVERTER = TeradyneICTConverter()
# A station's context: ICT-01, process code 50, times in UTC+2.
GR228X = UnderTest(CONVERTER, SAMPLE, "board.LOG", station_name="ICT-01",
                   defaults={"process_code": 50}, timezone=CEST, file_mtime=1_777_777_777.0)
CONTEXT, make_context, reports_of = GR228X.context, GR228X.make_context, GR228X.reports_of
needs_sample, write = GR228X.needs_sample, GR228X.write
FIXTURE_OK = [HealthCheck.function_scoped_fixture]  # tmp_path is only written, never shared


def steps(report: dict[str, Any]) -> list[dict[str, Any]]:
    return list(report["root"]["steps"])


def step(report: dict[str, Any], name: str, nth: int = 0) -> dict[str, Any]:
    return [s for s in steps(report) if s["name"] == name][nth]


# -- the sample ------------------------------------------------------------------------------


def test_sample_gives_one_report_per_uut_with_the_tester_verdicts() -> None:
    needs_sample()
    reports = reports_of(SAMPLE)
    assert [(r["sn"], r["result"]) for r in reports] == [
        ("65428553938829725787", "T"),  # '?': aborted after the fixture contact failures
        ("24422984989544535753", "F"),  # '/': failed (opens)
        ("42842937739687688567", "P"),  # '"': passed
    ]
    for report in reports:
        assert report["type"] == "T"
        assert report["pn"] == "43420"  # the program name up to "_"
        assert report["rev"] == ""
        assert report["processCode"] == 50
        assert report["machineName"] == "ICT-01"
        assert report["root"]["name"] == "43420_BIO2"
        assert report["root"]["seqCall"] == {
            "path": "F:\\BOARDS\\43420_BIO2_PROGRAM\\43420_BIO2.obc", "name": "43420_BIO2",
            "version": ""}
    assert [r["start"] for r in reports] == [
        "2012-07-31T14:18:51+02:00", "2012-07-31T14:19:32+02:00", "2012-07-31T14:25:12+02:00"]
    assert reports[0]["startUTC"] == "2012-07-31T12:18:51Z"
    assert [r["uut"]["execTime"] for r in reports] == [2.0, 17.0, 16.0]
    assert [r["root"]["status"] for r in reports] == ["T", "F", "P"]
    # The ids are distinct and stable.
    assert len({r["id"] for r in reports}) == 3
    assert [r["id"] for r in reports_of(SAMPLE)] == [r["id"] for r in reports]


def test_sample_aborted_uut_keeps_its_fixture_contact_failures() -> None:
    needs_sample()
    aborted = reports_of(SAMPLE)[0]
    assert [(s["name"], s["status"], s["stepType"]) for s in steps(aborted)] == [
        ("Fixture contact", "F", "ET_PFT"), ("Fixture contact", "F", "ET_PFT")]
    assert steps(aborted)[0]["reportText"] == "Nodes: 300,301,303"
    assert steps(aborted)[1]["reportText"].startswith("Nodes: 90,156,172,")
    assert steps(aborted)[1]["booleanMeas"] == [{"status": "F"}]


def test_sample_failed_uut_steps_and_measurements() -> None:
    needs_sample()
    failed = reports_of(SAMPLE)[1]
    all_steps = steps(failed)
    assert len(all_steps) == 26
    assert sum("numericMeas" in s for s in all_steps) == 17
    assert sum("booleanMeas" in s for s in all_steps) == 9
    assert [s["id"] for s in all_steps] == list(range(1, 27))
    opens = all_steps[0]
    assert (opens["name"], opens["status"], opens["reportText"]) == ("Opens", "F",
                                                                     "Nodes: 397,398,")
    assert step(failed, "R508")["numericMeas"] == [{
        "compOp": "GELE", "status": "P", "unit": "kOhm", "value": 100.20007,
        "lowLimit": 92.919, "highLimit": 105.131}]
    # Only a low limit, in another prefix than the value (MEG vs K): GE, kOhm.
    assert step(failed, "R402")["numericMeas"] == [{
        "compOp": "GE", "status": "P", "unit": "kOhm", "value": 45131.532, "lowLimit": 500.0}]
    # "R211#...R" then "R211=...AR" is one measurement, in ohms.
    r211 = [s for s in all_steps if s["name"] == "R211"]
    assert len(r211) == 1
    assert r211[0]["numericMeas"][0] == {
        "compOp": "GELE", "status": "P", "unit": "Ohm", "value": 10.636159,
        "lowLimit": 8.049, "highLimit": 12.855}
    # Not judged: Done, logged only.
    assert step(failed, "R227")["status"] == "D"
    assert step(failed, "R227")["numericMeas"] == [
        {"compOp": "LOG", "status": "P", "unit": "Ohm", "value": 11.19205}]
    assert step(failed, "C500")["numericMeas"][0] == {
        "compOp": "GELE", "status": "P", "unit": "nF", "value": 197.461958,
        "lowLimit": 159.999985, "highLimit": 219.99999}
    assert step(failed, "V230")["numericMeas"][0]["unit"] == "mV"
    assert step(failed, "V230")["numericMeas"][0]["value"] == 520.747483
    # Two judged lines of one relay: two steps, each in the unit of its limits.
    relay = [s["numericMeas"][0] for s in all_steps if s["name"] == "K500_RLY1_NO"]
    assert relay == [
        {"compOp": "GELE", "status": "P", "unit": "V", "value": 2.000115, "lowLimit": 1.5,
         "highLimit": 2.5},
        {"compOp": "GELE", "status": "P", "unit": "mV", "value": 62.061187,
         "lowLimit": -500.0, "highLimit": 500.0},
    ]
    # No value: a pass/fail step.
    assert step(failed, "D103_B1")["booleanMeas"] == [{"status": "P"}]
    assert step(failed, "PS_OFF")["stepType"] == "ET_PFT"
    # Source settings (IS, VS) are not measurements.
    names = {s["name"] for s in all_steps}
    assert not names & {"SETCR", "K500_START", "K500_CLEAR"}


def test_sample_passed_uut_steps() -> None:
    needs_sample()
    passed = reports_of(SAMPLE)[2]
    assert len(steps(passed)) == 29
    assert all(s["status"] == "P" for s in steps(passed))
    # AR (arithmetic) has no known unit: plain numbers.
    assert step(passed, "R348")["numericMeas"][0] == {
        "compOp": "GELE", "status": "P", "unit": "", "value": 269705.688,
        "lowLimit": 245000.0, "highLimit": 300279.0}
    assert step(passed, "R407")["numericMeas"][0]["unit"] == "kOhm"
    assert step(passed, "D605")["booleanMeas"] == [{"status": "P"}]


def test_sample_places_point_at_the_lines() -> None:
    needs_sample()
    raw = CONVERTER.convert(SAMPLE, CONTEXT)
    assert isinstance(raw, list)
    failed = raw[1]
    assert failed.locations["root"] == "line 8"
    assert failed.locations["root.steps[0]"] == "line 9"  # (O 397,398,
    assert failed.locations["root.steps[1]"] == "line 10"  # R508=...
    assert failed.locations["root.steps[6]"] == "line 16"  # the judged R211 line


def test_sample_is_detected_from_its_head_and_chosen_by_content() -> None:
    needs_sample()
    head = SAMPLE.read_bytes()[:65536]
    score, why = CONVERTER.detect_with_reason(SAMPLE, head)
    assert score >= 0.9 and "obc" in why
    assert CONVERTER.detect(SAMPLE, head[:200]) >= 0.9
    chosen = ConverterRegistry().choose(SAMPLE, head, auto_detect=True)
    assert chosen is not None and chosen[1].startswith("TeradyneICTConverter: detect 0.95")


@pytest.mark.parametrize("other", each_sample(sample_files(besides="teradyne_gr228x")))
def test_other_formats_are_not_detected(other: Path) -> None:
    assert CONVERTER.detect(other, other.read_bytes()[:65536]) == 0.0


# -- our own logs ---------------------------------------------------------------------------


def test_mixed_uuts_statuses_limits_and_overrides(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        reports = reports_of(FIXTURES / "gr228x_mixed_uuts.log")
    # A1003 was aborted before any test: no report.
    assert [(r["sn"], r["result"], r["root"]["status"]) for r in reports] == [
        ("A1001", "F", "F"), ("A1002", "E", "E"), ("A1004", "T", "T")]
    first, second, third = reports
    # WATS_ lines before the first UUT hold for every UUT; inside a UUT only for it.
    assert [r["pn"] for r in reports] == ["PN-7731", "PN-7731-X", "PN-7731"]
    assert {r["rev"] for r in reports} == {"B"}
    assert {r["uut"]["user"] for r in reports} == {"alice"}
    assert {r["root"]["seqCall"]["version"] for r in reports} == {"3.1"}
    assert [r["machineName"] for r in reports] == ["ICT-01", "GR-2", "ICT-01"]
    assert first["start"] == "2012-08-02T08:01:10+02:00"  # lower-case month
    assert second["start"] == "2012-08-02T08:02:00+02:00"  # four-digit year
    assert [(s["name"], s["status"]) for s in steps(first)] == [
        ("R10", "F"), ("R11", "F"), ("C5", "F"), ("V1", "P"), ("I2", "P"), ("R12", "P"),
        ("Shorts", "F")]
    assert step(first, "R10")["numericMeas"][0] == {
        "compOp": "GELE", "status": "F", "unit": "kOhm", "value": 8.2, "lowLimit": 9.5,
        "highLimit": 10.5}
    assert step(first, "R10")["reportText"] == "LOW"
    assert step(first, "R11")["numericMeas"][0] == {
        "compOp": "GELE", "status": "F", "unit": "MOhm", "value": 1.2, "lowLimit": 0.9,
        "highLimit": 1.1}
    assert step(first, "C5")["booleanMeas"] == [{"status": "F"}]
    assert step(first, "C5")["reportText"] == "NO CONTACT"
    # Only a high limit: LE, compared with lowLimit as WATS does.
    assert step(first, "V1")["numericMeas"][0] == {
        "compOp": "LE", "status": "P", "unit": "V", "value": 4.9, "lowLimit": 5.5}
    assert step(first, "I2")["numericMeas"][0] == {
        "compOp": "GE", "status": "P", "unit": "", "value": 0.0125, "lowLimit": 0.01}
    assert step(first, "Shorts")["reportText"] == "Nodes: 12,13,14,15,16"
    assert [s["name"] for s in steps(third)] == ["Bus test"]
    assert [r["root"]["name"] for r in reports] == ["PN-7731_MAIN", "PN-7731_MAIN", "ICT-Main"]
    assert third["root"]["seqCall"]["path"] == "C:\\BOARDS\\PN-7731_MAIN\\PN-7731_MAIN.obc"
    assert third["uut"]["execTime"] == 9.0
    messages = caplog.text
    assert "2 line(s) not understood were skipped (first: line 14)" in messages
    assert "WATS_fixture" in messages


def test_uut_without_end_line_is_terminated_and_the_next_one_read(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        reports = reports_of(FIXTURES / "gr228x_no_end_line.log")
    assert [(r["sn"], r["result"]) for r in reports] == [("P-1", "T"), ("P-2", "F")]
    assert "execTime" not in reports[0]["uut"]
    assert reports[1]["root"]["steps"][0]["numericMeas"][0]["status"] == "F"
    assert "has no end line before line 4" in caplog.text


def test_log_still_being_written_is_incomplete() -> None:
    with pytest.raises(IncompleteFileError, match="'T-2' started at line 5"):
        CONVERTER.convert(FIXTURES / "gr228x_still_testing.log", CONTEXT)


def test_cp1252_log_is_read_as_cp1252() -> None:
    path = FIXTURES / "gr228x_cp1252.log"
    # Not UTF-8 and no encoding configured: the tester's code page, as for every text format.
    for context in (CONTEXT, make_context(arguments={"encoding": "cp1252"})):
        [report] = reports_of(path, context)
        assert report["sn"] == "\u00c6-77"
        assert report["uut"]["user"] == "J\u00f8rgen \u00d8deg\u00e5rd"
        assert report["pn"] == "LOAD"
        assert report["root"]["steps"][0]["reportText"] == "\u00b5-check"
    with pytest.raises(ConversionError, match=r"line 2 is not valid utf-8.*cp1252"):
        CONVERTER.convert(path, make_context(arguments={"encoding": "utf-8"}))


def test_header_values_from_the_watch_folder(tmp_path: Path) -> None:
    log_text = ("C:\\TP\\MAIN_X.obc[01-JAN-20  10:00:00\n@01-JAN-20  10:00:01 SN S1\n"
                "R1=5(1,10)R \n\"01-JAN-20  10:00:02\n")
    path = write(tmp_path, log_text)
    context = make_context(
        arguments={"part_number": "PN-ARG", "revision": "C", "sequence_name": "ICT",
                   "sequence_version": "7", "operator": "op1", "process_name": "ICT",
                   "station_name": "GR-9", "process_code": "60"},
        defaults={"process_code": 50, "part_number": "PN-DEFAULT"})
    [report] = reports_of(path, context)
    assert (report["pn"], report["rev"], report["processCode"], report["processName"]) == (
        "PN-ARG", "C", 60, "ICT")
    assert report["root"]["seqCall"] == {"path": "C:\\TP\\MAIN_X.obc", "name": "ICT",
                                         "version": "7"}
    assert (report["uut"]["user"], report["machineName"]) == ("op1", "GR-9")
    # converters.defaults do not beat what the program name says.
    [report] = reports_of(path, make_context(
        defaults={"process_code": 50, "part_number": "PN-DEFAULT"}))
    assert report["pn"] == "MAIN"


def test_missing_header_fields_are_named(tmp_path: Path) -> None:
    no_program = write(tmp_path, "@01-JAN-20  10:00:01 SN S1\nR1=5(1,10)R \n"
                       "\"01-JAN-20  10:00:02\n")
    with pytest.raises(ConversionError, match=r"line 1: no part number for UUT 'S1'.*"
                                              "part_number"):
        CONVERTER.convert(no_program, CONTEXT)
    [report] = reports_of(no_program, make_context(
        defaults={"process_code": 50, "part_number": "PN-D"}))
    assert report["pn"] == "PN-D"
    assert report["root"]["name"] == "MainSequence"
    no_serial = write(tmp_path, "C:\\TP\\A_B.obc[01-JAN-20  10:00:00\n@01-JAN-20  10:00:01 "
                      "SN \nR1=5(1,10)R \n\"01-JAN-20  10:00:02\n", "no_serial.LOG")
    with pytest.raises(ConversionError, match=r"no_serial.LOG: line 2: the UUT has no serial"):
        CONVERTER.convert(no_serial, CONTEXT)
    no_code = make_context(defaults={})
    with pytest.raises(ConversionError, match="set process_code"):
        CONVERTER.convert(FIXTURES / "gr228x_no_end_line.log", no_code)
    # Also when the last line has no line end: a missing setting is not an incomplete file.
    unterminated = write(tmp_path, "C:\\TP\\A_B.obc[01-JAN-20  10:00:00\n@01-JAN-20  "
                         "10:00:01 SN S1\n\"01-JAN-20  10:00:02", "unterminated.LOG")
    with pytest.raises(ConversionError, match="set process_code") as caught:
        CONVERTER.convert(unterminated, no_code)
    assert not isinstance(caught.value, IncompleteFileError)
    bad_code = make_context(defaults={"process_code": "fifty"})
    with pytest.raises(ConversionError, match="process_code 'fifty' is not a whole number"):
        CONVERTER.convert(FIXTURES / "gr228x_no_end_line.log", bad_code)


@pytest.mark.parametrize(("text", "message"), [
    ("@31-FEB-20  10:00:01 SN S1\n\"01-JAN-20  10:00:02\n",
     r"line 1: the date 31-FEB-20 10:00 is not valid"),
    ("@01-XYZ-20  10:00:01 SN S1\n\"01-JAN-20  10:00:02\n", "'XYZ' is not a month"),
    ("@01-JAN-20  10:00:01 SN S1\nR1=5(1X,10)R \n\"01-JAN-20  10:00:02\n",
     r"line 2: the low limit '1X' is not a number"),
], ids=["date", "month", "limit"])
def test_broken_lines_are_named(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConversionError, match=message):
        CONVERTER.convert(write(tmp_path, text), CONTEXT)


def test_files_without_reports(tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match="no UUT found"):
        CONVERTER.convert(write(tmp_path, "hello\nworld\n"), CONTEXT)
    for empty in ("", "\n", " \r\n\t"):  # created, nothing written yet
        with pytest.raises(IncompleteFileError, match="no UUT yet"):
            CONVERTER.convert(write(tmp_path, empty), CONTEXT)
    aborted = write(tmp_path, "@01-JAN-20  10:00:01 SN S1\n?01-JAN-20  10:00:02\n")
    with pytest.raises(ConversionError, match=r"every UUT in the log \(1\) was aborted"):
        CONVERTER.convert(aborted, CONTEXT)
    waiting = write(tmp_path, "C:\\TP\\A_B.obc[01-JAN-20  10:00:00\n")
    with pytest.raises(IncompleteFileError, match="no UUT yet"):
        CONVERTER.convert(waiting, CONTEXT)


def test_passed_uut_without_steps_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "@01-JAN-20  10:00:01 SN S1\n\"01-JAN-20  10:00:02\n")
    [report] = reports_of(path, make_context(defaults={"process_code": 50, "part_number": "P"}))
    assert report["result"] == "P" and report["root"]["steps"] == []


def test_huge_numbers_are_refused_not_sent_as_infinity(tmp_path: Path) -> None:
    path = write(tmp_path, "@01-JAN-20  10:00:01 SN S1\nR1=9e999MEG(1,2)R \n"
                 "\"01-JAN-20  10:00:02\n")
    with pytest.raises(ConversionError, match=r"line 2: the number .* is out of range"):
        CONVERTER.convert(path, CONTEXT)


def test_unknown_encoding_is_named() -> None:
    needs_sample()
    context = make_context(arguments={"encoding": "klingon"})
    with pytest.raises(ConversionError, match="unknown encoding 'klingon'"):
        CONVERTER.convert(SAMPLE, context)


# -- truncation and garbage ----------------------------------------------------------------


def test_every_prefix_converts_or_is_incomplete_inside_a_uut(tmp_path: Path) -> None:
    needs_sample()
    data = SAMPLE.read_bytes()
    # From inside the second UUT's "@" line to the end of its "/" line the board is open.
    uut_start = data.index(b"@31-JUL-12  14:19:32")
    uut_end = data.index(b"\n", data.index(b"/31-JUL-12  14:19:49"))
    path = tmp_path / "partial.LOG"
    # Every fifth position, and each line end with its neighbours (where the parse changes).
    ends = [n for n, byte in enumerate(data) if byte == 0x0A]
    cuts = set(range(0, len(data) + 1, 5)) | {n + d for n in ends for d in (-1, 0, 1, 2)}
    for cut in sorted(c for c in cuts if 0 <= c <= len(data)):
        path.write_bytes(data[:cut])
        try:
            result = CONVERTER.convert(path, CONTEXT)
        except IncompleteFileError:
            continue
        except ConversionError:
            assert cut < data.index(b"@"), f"cut at {cut} is an error, not incomplete"
            continue
        assert not uut_start < cut < uut_end, f"cut at {cut} converted an open UUT"
        reports = result if isinstance(result, list) else [result]
        for report in reports:
            assert report["sn"] in ("65428553938829725787", "24422984989544535753",
                                    "42842937739687688567")


FUZZ = FuzzTarget(CONVERTER, "fuzz.LOG", CONTEXT, check=check_like_the_service)
test_garbage_bytes_only_raise_conversion_errors = FUZZ.garbage_test()


test_shuffled_log_lines_only_raise_conversion_errors = FUZZ.shuffled_test([
    "@01-JAN-20  10:00:01 SN S1", "\"01-JAN-20  10:00:02", "/01-JAN-20  10:00:02",
    "?01-JAN-20  10:00:02", "]01-jan-20  10:00:02", "C:\\P\\A_B.obc[01-JAN-20  10:00:00",
    "R1=5K(1K,10K)R ", "R1#5(,)R ", "R1>5MEG(,1MEG)R =HIGH", "D1=", "(F 1,2 +", "3,4",
    "WATS_partNumber=X", "WATS_operator=", "SETCR#(,)IS", "V1=(1,2)V ", "junk", "",
], joiner="\n", max_size=30, examples=150)


@settings(max_examples=100, deadline=2000, suppress_health_check=FIXTURE_OK)
@given(cut=st.integers(min_value=0), start=st.integers(min_value=0),
       junk=st.binary(max_size=40))
def test_mutated_sample_only_raises_conversion_errors(tmp_path: Path, cut: int, start: int,
                                                      junk: bytes) -> None:
    needs_sample()
    FUZZ(tmp_path, spliced(SAMPLE.read_bytes(), start, junk, width=cut % 64))

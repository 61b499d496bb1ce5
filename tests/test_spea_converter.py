"""SPEAConverter: golden tests on the real SPEA ICT 3030 log, edge cases on small fixtures,
detection against every other sample, and hypothesis on garbage and damaged files."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pywats_client.converters import (
    ConversionError,
    ConverterContext,
    ConverterRegistry,
    IncompleteFileError,
    ReportValidationError,
    spea,
)
from pywats_client.converters.spea import SPEAConverter
from pywats_client.report.model import ReportDict, iter_steps
from tests.conftest import SAMPLES, sample
from tests.converting import AtStation, FuzzTarget, convert_or_refuse, sample_files, spliced

SAMPLE = SAMPLES / "spea" / "testdata_SN9871234012.csv"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "spea"
BERLIN = ZoneInfo("Europe/Berlin")

needs_sample = pytest.mark.skipif(not SAMPLE.is_file(), reason=f"{SAMPLE} is absent")

# SPEA logs name no WATS process: the station's defaults say which (here SW Debug, 10).
STATION = AtStation(SPEAConverter, station_name="ict-01", location="Line 3", purpose="ICT",
                    timezone=BERLIN, defaults={"process_code": 10})
_context, _convert = STATION.context, STATION.convert


def _by_line(report: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """Every step of a report by the source line it came from ("line N")."""
    assert isinstance(report, ReportDict)
    found = {}
    for path, step in iter_steps(report["root"]):
        place = report.locate(path)
        if place.startswith("line ") and path != "root":
            found[int(place.split()[1])] = step
    return found


def _tests(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for sequence in report["root"]["steps"] for step in sequence["steps"]]


def _write(tmp_path: Path, text: str, name: str = "log.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


BOARD = (
    "FORMAT;mmdd\n"
    "START;Prog;PLAN;1.0;PN-1;op;03/14/2024;09:40:00\n"
    "LOT;\n"
    "ANL;1;R1;10;1;RES R1;;PASS;1.0e+01;9.0e+00;1.1e+01;ohm;1 2 ;5\n"
    "SN;S-1\n"
    "BOARDRESULT;PASS\n"
    "END;PASS;03/14/2024;09:40:04\n"
)


# -- the real sample ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample_reports() -> list[dict[str, Any]]:
    return _convert(sample(SAMPLE))


@needs_sample
def test_sample_has_ten_boards_of_one_serial_nine_failed_the_last_passed(
        sample_reports: list[dict[str, Any]]) -> None:
    assert len(sample_reports) == 10
    assert {r["sn"] for r in sample_reports} == {"SN9871234012"}
    assert {r["pn"] for r in sample_reports} == {"23462-TS"}
    assert [r["result"] for r in sample_reports] == ["F"] * 9 + ["P"]
    assert [r["root"]["status"] for r in sample_reports] == ["F"] * 9 + ["P"]
    assert len({r["id"] for r in sample_reports}) == 10


@needs_sample
def test_sample_header_of_the_first_board(sample_reports: list[dict[str, Any]]) -> None:
    first = sample_reports[0]
    assert first["type"] == "T"
    assert first["rev"] == ""
    assert first["processCode"] == 10
    assert first["machineName"] == "ict-01"
    # START 10/12/2024 16:15:03 with FORMAT mmdd is 12 October, summer time in Berlin.
    assert first["start"] == "2024-10-12T16:15:03+02:00"
    assert first["startUTC"] == "2024-10-12T14:15:03Z"
    assert first["uut"] == {"user": "Test Operator op1", "execTime": 19.0}  # END 16:15:22
    assert first["root"]["seqCall"] == {"name": "23462-TS", "path": "Programme",
                                        "version": "1.0.2"}
    assert sample_reports[9]["start"] == "2024-10-12T16:22:03+02:00"
    assert sample_reports[9]["uut"]["execTime"] == 438.0  # 16:22:03 -> 16:29:21


@needs_sample
def test_sample_step_counts_per_board(sample_reports: list[dict[str, Any]]) -> None:
    # Counted with awk on the file: records, runs of the same task, FAIL records, records
    # 0/0/0 without unit (actions), "Automatic" readings, FUNC records.
    expected = [(1198, 948, 4, 168, 17, 0)] * 4 + [(1201, 948, 6, 169, 17, 0),
                                                   (1201, 948, 7, 169, 17, 0)] + [
        (1198, 948, 5, 168, 17, 0), (1198, 948, 5, 168, 17, 0), (1198, 948, 6, 168, 17, 0),
        (2410, 1217, 21, 799, 20, 15)]
    for report, (records, runs, failed, actions, texts, funcs) in zip(
            sample_reports, expected, strict=True):
        tests = _tests(report)
        kinds = [step["stepType"] for step in tests]
        assert len(tests) == records
        assert len(report["root"]["steps"]) == runs
        assert sum(step["status"] == "F" for step in tests) == failed
        assert kinds.count("Action") == actions
        assert kinds.count("ET_SVT") == texts
        assert kinds.count("ET_PFT") == (14 if funcs else 0)  # one FUNC has a real range
        assert kinds.count("ET_NLT") == records - actions - texts - kinds.count("ET_PFT")
        measurements = sum(len(step.get("numericMeas", [])) for step in tests)
        assert measurements == kinds.count("ET_NLT")


@needs_sample
def test_sample_exact_values_limits_units_and_operators(
        sample_reports: list[dict[str, Any]]) -> None:
    steps = _by_line(sample_reports[0])
    adapter = steps[6]  # ANL;1;ADA_ICT;2;2;Adapter ist angesaugt…;;PASS;9.046875e+00;1;12;V
    assert adapter["name"] == "Adapter ist angesaugt, keine Verschiebung moeglich!"
    assert adapter["stepType"] == "ET_NLT"
    assert adapter["numericMeas"] == [{"compOp": "GELE", "status": "P", "unit": "V",
                                       "value": 9.046875, "lowLimit": 1.0, "highLimit": 12.0}]
    assert steps[5]["stepType"] == "Action" and steps[5]["status"] == "P"  # Connect, 0/0/0
    discharge = steps[16]  # DSC-CP[C109] Verify capacitor discharge
    assert discharge["numericMeas"][0]["value"] == -9.0625e-04
    assert discharge["numericMeas"][0]["lowLimit"] == -0.1
    shorts = steps[132]  # ANL;1;FLOAT;54;1;FLOAT;;PASS;Automatic;;236;;;236
    assert shorts["stringMeas"] == [{"compOp": "LOG", "status": "P", "value": "Automatic"}]


@needs_sample
def test_sample_not_a_number_reading_keeps_limits_and_fails(
        sample_reports: list[dict[str, Any]]) -> None:
    first = sample_reports[0]
    cap = _by_line(first)[840]  # C332 …;FAIL(+/-);-NAN;8.5e-10;1.15e-09;F
    assert cap["name"] == "CAPC332 1nF 10% -10%"
    assert cap["status"] == "F"
    assert cap["numericMeas"] == [{"compOp": "GELE", "status": "F", "unit": "F",
                                   "lowLimit": 8.5e-10, "highLimit": 1.15e-09}]
    assert "-NAN" in cap["reportText"]
    sequence = next(s for s in first["root"]["steps"] if cap in s["steps"])
    assert sequence["name"] == "C332" and sequence["status"] == "F"


@needs_sample
def test_sample_one_sided_failures(sample_reports: list[dict[str, Any]]) -> None:
    high = _by_line(sample_reports[4])[5659]  # C335 FAIL(+) 1.153988e-09 > 1.15e-09
    assert high["status"] == "F"
    assert high["numericMeas"][0]["value"] == 1.153988e-09
    assert high["numericMeas"][0]["highLimit"] == 1.15e-09
    low = _by_line(sample_reports[8])[10270]  # R562 FAIL(-) 1.64271e5 < 2e5 ohm
    assert low["name"] == "RESR562 1K 1% -1% Mounted!"
    assert low["numericMeas"] == [{"compOp": "GELE", "status": "F", "unit": "ohm",
                                   "value": 164271.0, "lowLimit": 200000.0,
                                   "highLimit": 1e10}]


@needs_sample
def test_sample_passed_board_keeps_its_failed_retest_check_and_func_records(
        sample_reports: list[dict[str, Any]]) -> None:
    last = sample_reports[9]
    steps = _by_line(last)
    check = steps[10842 + 1897]  # DSC-CP[C109](2) Check capacitor voltage: FAIL(+/-) 0/0/0
    assert check["name"] == "DSC-CP[C109] Check capacitor voltage > |0.05V|"
    assert check["status"] == "F" and check["stepType"] == "Action"
    sequence = next(s for s in last["root"]["steps"] if check in s["steps"])
    assert sequence["name"] == "DSC-CP[C109](2)" and sequence["status"] == "F"
    assert last["result"] == "P"  # BOARDRESULT;PASS is the board's verdict
    sensor = steps[12932]  # FUNC 5.11 SPI acceleration sensor 16634 in 15600..18000
    assert sensor["numericMeas"] == [{"compOp": "GELE", "status": "P", "unit": "",
                                      "value": 16634.0, "lowLimit": 15600.0,
                                      "highLimit": 18000.0}]
    can = steps[12645]  # FUNC CAN-Initialisierung;;PASS;1;1;0
    assert can["stepType"] == "ET_PFT" and can["booleanMeas"] == [{"status": "P"}]
    fkt = next(s for s in last["root"]["steps"] if can in s["steps"])
    assert fkt["name"] == "FKT"


@needs_sample
def test_sample_step_ids_are_unique_in_tree_order(sample_reports: list[dict[str, Any]]) -> None:
    ids = [step["id"] for _, step in iter_steps(sample_reports[0]["root"])]
    assert ids == list(range(len(ids)))


@needs_sample
def test_sample_converts_the_same_twice() -> None:
    assert _convert(SAMPLE) == _convert(SAMPLE)


@needs_sample
def test_sample_without_a_final_line_end_still_converts(tmp_path: Path) -> None:
    path = tmp_path / "no_final_newline.csv"
    path.write_bytes(SAMPLE.read_bytes().rstrip(b"\n"))
    assert len(_convert(path)) == 10


# -- detection ---------------------------------------------------------------------------------


@needs_sample
def test_detect_is_sure_of_the_sample() -> None:
    score, why = SPEAConverter().detect_with_reason(SAMPLE, SAMPLE.read_bytes()[:65536])
    assert score >= 0.9
    assert "ANL" in why


@needs_sample
@pytest.mark.parametrize("path", sample_files(besides="spea"), ids=lambda p: p.name[:40])
def test_detect_is_zero_on_every_other_format(path: Path) -> None:
    head = path.read_bytes()[:65536]
    assert SPEAConverter().detect(path, head) == 0.0


def test_detect_is_zero_on_seica_fixtures_and_sure_of_our_own() -> None:
    for path in sorted((FIXTURES.parent / "seica").glob("*.xml")):
        assert SPEAConverter().detect(path, path.read_bytes()) == 0.0
    for path in sorted(FIXTURES.glob("*.csv")):
        assert SPEAConverter().detect(path, path.read_bytes()) >= 0.9, path.name


def test_detect_never_raises_and_weighs_a_start_record_without_tests() -> None:
    converter = SPEAConverter()
    assert converter.detect(Path("x"), b"") == 0.0
    assert converter.detect(Path("x"), b"\xff\xfe\x00garbage") == 0.0
    assert 0.5 <= converter.detect(Path("x"), b"START;a;b;c;d;e;01/01/2024;10:00:00\n") < 0.9


def test_registry_builds_it_by_name_and_detection_picks_it() -> None:
    registry = ConverterRegistry()
    assert isinstance(registry.create("SPEAConverter"), SPEAConverter)
    path = FIXTURES / "two_boards_ddmm.csv"
    assert registry.detect(path, path.read_bytes()).name == "SPEAConverter"


# -- fixtures: edge cases ----------------------------------------------------------------------


def test_two_boards_with_day_first_dates_lot_and_failures() -> None:
    passed, failed = _convert(FIXTURES / "two_boards_ddmm.csv")
    assert (passed["sn"], passed["result"]) == ("PB220-000311", "P")
    assert (failed["sn"], failed["result"]) == ("PB220-000312", "F")
    assert passed["start"] == "2024-03-13T08:01:15+01:00"  # FORMAT ddmm: 13 March
    assert passed["uut"] == {"user": "Operator anna", "batchSN": "LOT-2024-0311",
                             "execTime": 37.0}
    names = {step["name"]: step for step in _tests(failed)}
    assert names["RESR101 10K 1% -1%"]["numericMeas"][0]["value"] == 8712.0
    assert names["RESR101 10K 1% -1%"]["status"] == "F"
    assert "value" not in names["CAPC12 100n 10% -10%"]["numericMeas"][0]
    firmware = names["Firmware-Programmierung"]
    assert firmware["booleanMeas"] == [{"status": "F"}]
    assert [s["status"] for s in failed["root"]["steps"]] == ["F", "F", "P", "F"]
    assert failed["root"]["seqCall"]["path"] == "ICT_Programs\\PB-220"


def test_boardresult_none_is_an_error_result() -> None:
    (report,) = _convert(FIXTURES / "aborted_none.csv")
    assert report["result"] == "E"
    assert report["root"]["status"] == "E"
    assert all(step["status"] == "P" for step in _tests(report))


def test_sparse_header_thirteen_columns_and_one_sided_limits() -> None:
    path = FIXTURES / "sparse_header.csv"
    (report,) = _convert(path, part_number="PB-220-A", revision="C", operator="night shift")
    assert (report["pn"], report["rev"], report["sn"]) == ("PB-220-A", "C", "PB220-000314")
    assert report["result"] == "F"  # END;FAIL without BOARDRESULT
    assert report["uut"] == {"user": "night shift"}  # no END date: no execution time
    assert report["start"]  # the file's time stands in (finalize)
    assert report["root"]["name"] == "SPEA ICT"
    steps = {step["name"]: step for step in _tests(report)}
    assert steps["RESR101 10K 1% -1%"]["numericMeas"][0] == {
        "compOp": "GELE", "status": "P", "unit": "ohm", "value": 10004.0,
        "lowLimit": 9900.0, "highLimit": 10100.0}  # decimal commas
    assert steps["VCC above minimum"]["numericMeas"][0]["compOp"] == "GE"
    assert steps["VCC above minimum"]["numericMeas"][0]["lowLimit"] == 4.5
    below = steps["VCC below maximum"]["numericMeas"][0]
    assert (below["compOp"], below["lowLimit"]) == ("LE", 5.5)  # WATS: LE uses lowLimit
    assert "highLimit" not in below
    assert steps["VCC logged"]["numericMeas"][0]["compOp"] == "LOG"
    swapped = steps["Limits low above high"]["numericMeas"][0]
    assert swapped["compOp"] == "LOG" and "lowLimit" not in swapped
    assert steps["SHO CHN DGND"]["stringMeas"][0]["status"] == "F"
    assert steps["Not executed"]["status"] == "S"
    assert steps["Not executed"]["booleanMeas"] == [{"status": "S"}]


def test_sparse_header_without_a_part_number_says_how_to_set_one() -> None:
    with pytest.raises(ConversionError, match=r"line 1: .*part_number"):
        _convert(FIXTURES / "sparse_header.csv")


def test_cp1252_with_crlf_is_read_without_configuration() -> None:
    (report,) = _convert(FIXTURES / "cp1252_crlf.csv")
    assert report["sn"] == "SNÄ1"
    assert report["uut"]["user"] == "Prüfer Jörg"
    names = [step["name"] for step in _tests(report)]
    assert names == ["Adapter ist angesaugt, keine Verschiebung möglich!", "Spannung prüfen ±5%"]
    assert _convert(FIXTURES / "cp1252_crlf.csv", encoding="cp1252") == [report]


def test_a_configured_encoding_is_obeyed_and_a_mismatch_names_the_line() -> None:
    with pytest.raises(ConversionError, match=r"line 2 is not valid utf-8.*encoding"):
        _convert(FIXTURES / "cp1252_crlf.csv", encoding="utf-8")
    with pytest.raises(ConversionError, match="unknown encoding 'klingon'"):
        _convert(FIXTURES / "cp1252_crlf.csv", encoding="klingon")


def test_options_part_number_revision_process_and_station(tmp_path: Path) -> None:
    (report,) = _convert(FIXTURES / "aborted_none.csv", part_number="900-123", revision="B",
                         process_code="50", process_name="ICT", station_name="spea-2")
    assert (report["pn"], report["rev"]) == ("900-123", "B")
    assert report["miscInfos"] == [{"description": "SPEA product", "text": "PB-220"}]
    assert (report["processCode"], report["processName"]) == (50, "ICT")
    assert report["machineName"] == "spea-2"
    with pytest.raises(ConversionError, match="process_code 'ICT' is not a whole number"):
        _convert(FIXTURES / "aborted_none.csv", process_code="ICT")


def test_long_descriptions_are_cut_to_100_and_kept_in_the_report_text(tmp_path: Path) -> None:
    text = "D" * 130
    path = _write(tmp_path, BOARD.replace("RES R1", text))
    (step,) = _tests(_convert(path)[0])
    assert step["name"] == "D" * 100
    assert step["reportText"] == text


def test_an_invalid_report_names_the_source_line(tmp_path: Path) -> None:
    path = _write(tmp_path, BOARD.replace("PN-1", "P" * 120))
    with pytest.raises(ReportValidationError, match=r"'pn'.*line 2"):
        _convert(path)


def test_unknown_records_are_ignored_with_a_warning(tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    path = _write(tmp_path, BOARD.replace("SN;S-1\n", "BSCAN;1;2;3\nSN;S-1\nBSCAN;4\n"))
    with caplog.at_level(logging.WARNING, logger="pywats_client.converters.spea"):
        (report,) = _convert(path)
    assert report["sn"] == "S-1"
    assert [r.getMessage() for r in caplog.records if "BSCAN" in r.getMessage()] == [
        f"{path}: line 5: unknown SPEA record 'BSCAN' ignored (and any later ones)"]


# -- damaged and truncated files ---------------------------------------------------------------


@pytest.mark.parametrize(("text", "message"), [
    ("FORMAT;mmdd\nSTART;P;T;1;PN;op;01/01/2024;10:00:00\nANL;1;R1;1;1;R;;PASS;1;0;2;V;;1\n"
     "FORMAT;mmdd\nSTART;P;T;1;PN;op;01/01/2024;10:01:00\n",
     "line 4: FORMAT record, but the board that starts at line 2 has no END"),
    ("FORMAT;mmdd\nANL;1;R1;1;1;R;;PASS;1;0;2;V;;1\n", "line 2: ANL record outside a board"),
    ("START;P;T;1;PN;op;01/01/2024;10:00:00\nSN;\nEND;PASS;01/01/2024;10:00:05\n",
     "line 1: the board at lines 1-3 has no serial number \\(the SN record at line 2 is empty"),
    ("START;P;T;1;PN;op;01/01/2024;10:00:00\nEND;PASS;01/01/2024;10:00:05\n",
     "there is no SN record"),
    ("START;P;T;1;PN;op;01/01/2024;10:00:00\nSN;1\nEND;MAYBE;01/01/2024;10:00:05\n",
     "line 3: END 'MAYBE' is not PASS, FAIL or NONE"),
    ("START;P;T;1;PN;op;01/01/2024;10:00:00\nSN;1\nBOARDRESULT;OK\nEND;PASS;;\n",
     "line 3: BOARDRESULT 'OK' is not PASS, FAIL or NONE"),
    ("START;P;T;1;PN;op;01/01/2024;10:00:00\nANL;1;R1;1;1;R;;PASS;1;zero;2;V;;1\nSN;1\n"
     "END;PASS;;\n", "line 2: ANL low limit 'zero' is not a number"),
    ("START;P;T;1;PN;op;01/01/2024;10:00:00\nANL;1;R1;1;1;R;;MAYBE;1;0;2;V;;1\nSN;1\n"
     "END;PASS;;\n", "line 2: ANL status 'MAYBE' is not PASS, FAIL or SKIP"),
    ("START;P;T;1;PN;op;01/01/2024;10:00:00\nANL;1;R1;1;1;R;;PASS;1\nSN;1\nEND;PASS;;\n",
     "line 2: ANL record with 9 fields"),
    ("START;P;T;1;PN;op;31/02/2024;10:00:00\nSN;1\nEND;PASS;;\n",
     "line 1: date '31/02/2024' '10:00:00'"),
    ("FORMAT;yymm\n", "line 1: FORMAT 'yymm' is not one of mmdd, ddmm"),
    ("START;P;T;1\nSN;1\nEND;PASS;;\n", "line 1: the START record has no product"),
    ("ANL;1;R1;1;1;R;;PASS;1;0;2;V;;1\n", "line 1: not a SPEA ICT log"),
    ("\n\nhello;world\n", "line 3: not a SPEA ICT log"),
])
def test_damaged_files_are_refused_naming_the_line(tmp_path: Path, text: str,
                                                   message: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConversionError, match=message) as caught:
        _convert(path)
    assert not isinstance(caught.value, IncompleteFileError)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize(("text", "message"), [
    ("", "the file is empty"),
    (" \r\n\n", "the file is empty"),
    (BOARD[:-1].rsplit(";", 1)[0], "line 7 has no line end yet"),
    (BOARD.split("SN;")[0], "the board that starts at line 2 has no END record yet"),
    (BOARD + "FORMAT;mm", "line 8 has no line end yet"),
])
def test_files_still_being_written_are_incomplete(tmp_path: Path, text: str,
                                                  message: str) -> None:
    with pytest.raises(IncompleteFileError, match=message):
        _convert(_write(tmp_path, text))


def test_a_character_cut_in_half_at_the_end_is_incomplete(tmp_path: Path) -> None:
    path = tmp_path / "cut.csv"
    path.write_bytes(BOARD.encode() + "ANL;1;Ä".encode()[:-1])
    with pytest.raises(IncompleteFileError, match="middle of a character"):
        _convert(path)


def test_a_complete_last_end_without_line_end_is_complete(tmp_path: Path) -> None:
    (report,) = _convert(_write(tmp_path, BOARD.rstrip("\n")))
    assert report["uut"]["execTime"] == 4.0


def test_oversized_files_are_refused_before_reading(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spea, "MAX_FILE_BYTES", 100)
    with pytest.raises(ConversionError, match="SPEA files over 100 bytes are refused"):
        _convert(_write(tmp_path, BOARD))


def test_a_missing_file_is_a_conversion_error(tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match="cannot read the file"):
        SPEAConverter().convert(tmp_path / "gone.csv", ConverterContext())


# -- hypothesis: nothing but ConversionError, never a hang ------------------------------------


def _check(path: Path) -> None:
    convert_or_refuse(SPEAConverter(), path, _context())


test_garbage_only_raises_conversion_errors = FuzzTarget(
    SPEAConverter(), "garbage.csv", _context()).garbage_test()


@settings(max_examples=150, deadline=2000,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(st.sampled_from(BOARD.splitlines(keepends=True)) | st.text(max_size=60),
                      max_size=30))
def test_shuffled_and_foreign_lines_only_raise_conversion_errors(tmp_path: Path,
                                                                 lines: list[str]) -> None:
    _check(_write(tmp_path, "".join(lines)))


@needs_sample
@settings(max_examples=15, deadline=5000,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(share=st.floats(min_value=0.0, max_value=1.0))
@example(share=1204 / 13258)  # about the end of the first board
@example(share=0.5)
def test_truncations_of_the_sample_are_incomplete_or_fewer_boards(tmp_path: Path,
                                                                   share: float) -> None:
    whole = SAMPLE.read_bytes()
    data = whole[:int(len(whole) * share)]
    path = tmp_path / "cut.csv"
    path.write_bytes(data)
    try:
        reports = SPEAConverter().convert(path, _context())
    except IncompleteFileError:
        return
    # Only a cut at the end of a board looks finished: it holds exactly the boards before it.
    assert data.rstrip(b"\n").rsplit(b"\n", 1)[-1].startswith(b"END;")
    assert isinstance(reports, list)
    assert len(reports) == data.count(b"\nEND;")


@needs_sample
def test_a_cut_right_after_a_board_holds_the_boards_before_it(tmp_path: Path) -> None:
    path = tmp_path / "cut.csv"
    path.write_bytes(_first_board())
    (report,) = _convert(path)
    assert report["uut"]["execTime"] == 19.0


def _first_board() -> bytes:
    data = SAMPLE.read_bytes()
    return data[:data.index(b"\nFORMAT;", 10) + 1]


@needs_sample
@settings(max_examples=60, deadline=3000,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(edits=st.lists(st.tuples(st.integers(min_value=0, max_value=150_000),
                                st.sampled_from([b";", b"\n", b"", b"\xff", b"-NAN", b"0",
                                                 b"FAIL", b"START;", b"\x00", b"1e999"])),
                      min_size=1, max_size=8))
def test_mutations_of_the_sample_only_raise_conversion_errors(
        tmp_path: Path, edits: list[tuple[int, bytes]]) -> None:
    data = _first_board()
    for position, replacement in edits:
        data = spliced(data, position, replacement)
    path = tmp_path / "mutated.csv"
    path.write_bytes(data)
    _check(path)


@settings(max_examples=60, deadline=2000,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(sorted(p.name for p in FIXTURES.glob("*.csv"))),
       cut=st.integers(min_value=0, max_value=4000),
       edit=st.tuples(st.integers(min_value=0, max_value=4000), st.binary(max_size=4)))
def test_truncated_and_mutated_fixtures_only_raise_conversion_errors(
        tmp_path: Path, name: str, cut: int, edit: tuple[int, bytes]) -> None:
    data = spliced((FIXTURES / name).read_bytes(), *edit)
    path = tmp_path / name
    path.write_bytes(data[:cut])
    _check(path)

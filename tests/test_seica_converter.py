"""SeicaXMLConverter: no public sample of this format exists, so the fixtures under
tests/fixtures/seica/ are written from the format description (formats.md §8). Covered: pass,
fail, a panel of several boards, missing fields, cp1252, hostile and truncated XML,
detection against every real sample, and hypothesis on garbage and damaged files."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pywats_client.converters import (
    ConversionError,
    ConverterRegistry,
    IncompleteFileError,
    ReportValidationError,
    seica,
)
from pywats_client.converters.seica import SeicaXMLConverter
from pywats_client.report.model import iter_steps
from tests.conftest import needs_samples
from tests.converting import AtStation, FuzzTarget, convert_or_refuse, sample_files, spliced

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "seica"
OSLO = ZoneInfo("Europe/Oslo")
# Seica files name no WATS process: the station's defaults say which (here SW Debug, 10).
STATION = AtStation(SeicaXMLConverter, station_name="fp-01", location="Line 1",
                    purpose="Flying probe", timezone=OSLO, defaults={"process_code": 10})
_context, _convert = STATION.context, STATION.convert


def _steps(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every step below the root by name."""
    return {step["name"]: step for path, step in iter_steps(report["root"]) if path != "root"}


def _write(tmp_path: Path, text: str, name: str = "result.xml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _file(*boards: str, st_attrs: str = 'NM="PCB9_A" OP="op"', et: str = 'NF="0"') -> str:
    body = "".join(f"<BI {board}</BI>" for board in boards)
    return f'<?xml version="1.0"?><R><ST {st_attrs}/>{body}<ET {et}/></R>'


PASS_BOARD = 'BCP="S1" SD="01-02-2024 10:00:00"><TEST F="G" NM="R1" MR="1" ML="0" MH="2" TR="0"/>'


# -- fixtures written from the description -----------------------------------------------------


def test_single_passed_board() -> None:
    (report,) = _convert(FIXTURES / "pass_single_board.xml")
    assert (report["pn"], report["rev"], report["sn"]) == ("PCB4711", "C", "SN4711-000123")
    assert report["result"] == "P" and report["root"]["status"] == "P"
    assert report["processCode"] == 10
    assert report["start"] == "2024-03-14T09:12:45+01:00"  # SD, Oslo winter time
    assert report["startUTC"] == "2024-03-14T08:12:45Z"
    assert report["uut"] == {"user": "kari.n", "execTime": 85.0}  # ED 09:14:10 - SD
    assert report["miscInfos"] == [
        {"description": "Board name", "text": "Motor controller top"},
        {"description": "Barcode", "text": "P24-000815"},
    ]
    assert report["root"]["seqCall"] == {"name": "PCB4711_C", "version": "C"}
    assert [s["name"] for s in report["root"]["steps"]] == ["Resistors", "Capacitors", "Diodes"]
    assert [len(s["steps"]) for s in report["root"]["steps"]] == [2, 1, 1]
    r13 = _steps(report)["R13"]
    assert r13["stepType"] == "ET_NLT"
    assert r13["totTime"] == 0.038
    assert r13["numericMeas"] == [{"compOp": "GELE", "status": "P", "unit": "Ohm",
                                   "value": 4710.0, "lowLimit": 4465.0, "highLimit": 4935.0}]
    assert _steps(report)["C7"]["numericMeas"][0]["value"] == 9.8e-08
    ids = [step["id"] for _, step in iter_steps(report["root"])]
    assert ids == list(range(8))


def test_single_failed_board() -> None:
    (report,) = _convert(FIXTURES / "fail_single_board.xml")
    assert report["result"] == "F" and report["root"]["status"] == "F"
    assert [s["status"] for s in report["root"]["steps"]] == ["F", "P", "F"]
    steps = _steps(report)
    assert steps["R12"]["status"] == "P"
    assert steps["R13"]["status"] == "F"
    assert steps["R13"]["numericMeas"][0]["value"] == 6120.0
    assert steps["U5 pin 14"]["stringMeas"] == [{"compOp": "LOG", "status": "F",
                                                 "value": "OPEN"}]


def test_panel_of_three_boards_gives_three_reports_failing_only_the_bad_board() -> None:
    reports = _convert(FIXTURES / "panel_three_boards.xml")
    assert [r["sn"] for r in reports] == ["SN4711-000201", "SN4711-000202", "SN4711-000203"]
    assert [r["result"] for r in reports] == ["P", "F", "P"]
    assert [r["start"] for r in reports] == ["2024-03-15T13:00:05+01:00",
                                             "2024-03-15T13:01:12+01:00",
                                             "2024-03-15T13:02:20+01:00"]
    # Several boards share ET: each one's time is the sum of its tests' TT.
    assert [r["uut"]["execTime"] for r in reports] == pytest.approx([0.14, 0.156, 0.141])
    assert len({r["id"] for r in reports}) == 3
    assert _steps(reports[1])["C7"]["numericMeas"][0]["value"] == 2.2e-08


def test_missing_fields_take_what_is_there() -> None:
    path = FIXTURES / "missing_fields.xml"
    (report,) = _convert(path)
    assert (report["pn"], report["rev"], report["sn"]) == ("PCB4711", "", "P24-000901")
    assert "miscInfos" not in report  # no board name; the barcode is the serial number
    assert report["uut"] == {}
    assert report["start"]  # no SD: finalize takes the file's time
    assert report["result"] == "F"
    steps = _steps(report)
    # A test without group sits under the root, before the group that follows it.
    assert report["root"]["steps"][0]["name"] == "R12"
    assert steps["R12"]["numericMeas"][0] == {"compOp": "GELE", "status": "P", "unit": "",
                                              "value": 1002.4, "lowLimit": 950.0,
                                              "highLimit": 1050.0}
    assert steps["VCC"]["numericMeas"][0]["compOp"] == "GE"
    ripple = steps["VCC ripple"]["numericMeas"][0]
    # Only MH: LE, compared with lowLimit as WATS does; no TR, so computed: 0.12 > 0.05 fails.
    assert (ripple["compOp"], ripple["lowLimit"], ripple["status"]) == ("LE", 0.05, "F")
    assert steps["Firmware"]["stringMeas"] == [{"compOp": "LOG", "status": "P",
                                                "value": "v1.2.3"}]
    assert (steps["Jumper J2"]["stepType"], steps["Jumper J2"]["status"]) == ("Action", "D")
    leakage = steps["Leakage"]
    assert leakage["status"] == "F" and "value" not in leakage["numericMeas"][0]
    assert "-nan" in leakage["reportText"]
    assert "totTime" not in steps["R12"]


def test_declared_cp1252_with_decimal_commas_and_dotted_dates() -> None:
    (report,) = _convert(FIXTURES / "cp1252_declared.xml")
    assert (report["pn"], report["rev"], report["sn"]) == ("PCB4711", "C", "SN-Ä3")
    assert report["uut"]["user"] == "Jörg Müller"
    assert report["miscInfos"] == [{"description": "Board name", "text": "Steuergerät"}]
    assert report["start"] == "2024-04-01T07:05:00+02:00"
    steps = _steps(report)
    assert steps["R1 ±5%"]["numericMeas"][0]["value"] == 99.5
    assert steps["C1"]["numericMeas"][0]["unit"] == "µF"
    assert steps["C1"]["numericMeas"][0]["lowLimit"] == 4.23
    assert report["root"]["steps"][0]["name"] == "Widerstände"


def test_undeclared_cp1252_is_read_as_the_windows_code_page(tmp_path: Path) -> None:
    path = tmp_path / "ansi.xml"
    path.write_bytes(_file(PASS_BOARD, st_attrs='NM="PCB9_A" OP="J\xf6rg"').encode("cp1252"))
    (report,) = _convert(path)
    assert report["uut"]["user"] == "Jörg"
    with pytest.raises(ConversionError, match="not well-formed"):
        _convert(path, encoding="utf-8")


def test_registry_builds_it_by_name_and_detection_picks_it() -> None:
    registry = ConverterRegistry()
    assert isinstance(registry.create("SeicaXMLConverter"), SeicaXMLConverter)
    for path in sorted(FIXTURES.glob("*.xml")):
        assert registry.detect(path, path.read_bytes()).name == "SeicaXMLConverter", path.name


def test_conversion_is_deterministic() -> None:
    path = FIXTURES / "panel_three_boards.xml"
    assert _convert(path) == _convert(path)


# -- verdicts ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("boards", "et", "results"), [
    ((PASS_BOARD,), 'NF="1"', ["F"]),  # the run failed, no test says why: the board failed
    ((PASS_BOARD, PASS_BOARD.replace("S1", "S2")), 'NF="3"', ["F", "F"]),
    ((PASS_BOARD.replace('TR="0"', 'TR="1"'),), 'NF="0"', ["F"]),  # a failed test wins
    ((PASS_BOARD, PASS_BOARD.replace("S1", "S2").replace('TR="0"', 'TR="1"')), 'NF="1"',
     ["P", "F"]),
    ((PASS_BOARD,), 'ED="01-02-2024 10:00:30"', ["P"]),  # no NF: the tests decide
])
def test_board_results(tmp_path: Path, boards: tuple[str, ...], et: str,
                       results: list[str]) -> None:
    reports = _convert(_write(tmp_path, _file(*boards, et=et)))
    assert [r["result"] for r in reports] == results
    assert [r["root"]["status"] for r in reports] == results


def test_missing_verdict_is_computed_from_the_limits(tmp_path: Path) -> None:
    board = ('BCP="S1"><TEST F="G" NM="in" MR="1" ML="0" MH="2"/>'
             '<TEST F="G" NM="out" MR="3" ML="0" MH="2"/>')
    (report,) = _convert(_write(tmp_path, _file(board, et='NF=""')))
    steps = _steps(report)
    assert (steps["in"]["status"], steps["out"]["status"]) == ("P", "F")
    assert report["result"] == "F"


# -- options -----------------------------------------------------------------------------------


def test_options_override_the_program_name_and_fill_the_gaps(tmp_path: Path) -> None:
    path = _write(tmp_path, _file(PASS_BOARD, st_attrs='NM="PCB9_A"'))
    (report,) = _convert(path, part_number="900-1", revision="D", process_code=60,
                         process_name="Flying probe", operator="night", station_name="fp-9")
    assert (report["pn"], report["rev"]) == ("900-1", "D")
    assert (report["processCode"], report["processName"]) == (60, "Flying probe")
    assert report["uut"]["user"] == "night"
    assert report["machineName"] == "fp-9"


def test_without_st_a_part_number_must_be_configured(tmp_path: Path) -> None:
    text = f'<R><BI {PASS_BOARD}</BI></R>'
    with pytest.raises(ConversionError, match=r"<BI> at line 1: no part number.*part_number"):
        _convert(_write(tmp_path, text))
    (report,) = _convert(_write(tmp_path, text), part_number="PCB9", sequence_name="FP")
    assert (report["pn"], report["rev"], report["root"]["name"]) == ("PCB9", "", "FP")


def test_an_invalid_report_names_the_element(tmp_path: Path) -> None:
    path = _write(tmp_path, _file(PASS_BOARD.replace("S1", "S" * 120)))
    with pytest.raises(ReportValidationError, match=r"'sn'.*<BI> at line 1"):
        _convert(path)


# -- damaged, hostile and truncated files -----------------------------------------------------


@pytest.mark.parametrize(("text", "message"), [
    ('<R>\n<ST NM="A"/>\n<BI SD="01-02-2024 10:00:00"><TEST NM="x" MR="1"/></BI></R>',
     "<BI> at line 3: the board has neither BCP"),
    (_file('BCP="S1" SD="2024/13/45 25:00">'), "<BI> at line 1: SD='2024/13/45 25:00'"),
    (_file('BCP="S1" SD="yesterday">'), "SD='yesterday' is not a date like 14-03-2024"),
    (_file('BCP="S1"><TEST F="G" NM="R1" MR="1" ML="low" MH="2"/>'),
     '<TEST NM="R1"> at line 1: ML=\'low\' is not a number'),
    (_file('BCP="S1"><TEST F="G" NM="R1" MR="1" TT="fast"/>'), "TT='fast' is not a number"),
    ('<R><ST NM="A"/><ET NF="0"/></R>', "no <BI> board element"),
    ('<?xml version="1.0"?>\n<Reports><R/></Reports>', "line 2: the root element is <Reports>"),
    ('{"type": "T"}', "not well-formed XML at line 1, column 1"),
    ('<R><BI BCP="1"></R>', "mismatched tag"),
])
def test_damaged_files_are_refused_naming_the_place(tmp_path: Path, text: str,
                                                    message: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConversionError, match=message.replace("(", r"\(").replace(
            "[", r"\[")) as caught:
        _convert(path)
    assert not isinstance(caught.value, IncompleteFileError)
    assert str(path) in str(caught.value)


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE R [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<R><ST NM="&lol3;"/><BI BCP="1"/></R>
"""


@pytest.mark.parametrize("codec", ["utf-8", "utf-16"])
def test_doctype_and_entities_are_refused_before_parsing(tmp_path: Path, codec: str) -> None:
    path = tmp_path / "laughs.xml"
    path.write_bytes(BILLION_LAUGHS.replace('"1.0"?', f'"1.0" encoding="{codec}"?').encode(codec))
    with pytest.raises(ConversionError, match=r"the file declares a DOCTYPE or ENTITY \(line 2\)"):
        SeicaXMLConverter().convert(path, _context())


def test_deep_nesting_is_refused(tmp_path: Path) -> None:
    text = "<R><BI BCP='1'>" + "<X>" * 100 + "</X>" * 100 + "</BI></R>"
    with pytest.raises(ConversionError, match="nested more than 32 deep"):
        _convert(_write(tmp_path, text))


@pytest.mark.parametrize("text", [
    "",
    "  \n",
    _file(PASS_BOARD)[:-4],  # "</R>" not written yet
    _file(PASS_BOARD)[:60],  # inside a tag
])
def test_files_still_being_written_are_incomplete(tmp_path: Path, text: str) -> None:
    with pytest.raises(IncompleteFileError):
        _convert(_write(tmp_path, text))


def test_a_character_cut_in_half_at_the_end_is_incomplete(tmp_path: Path) -> None:
    path = tmp_path / "cut.xml"
    data = _file(PASS_BOARD, st_attrs='NM="PCB9_A" OP="Jörg"').encode()
    path.write_bytes(data[:data.index(b"\xc3") + 1])
    assert path.read_bytes().endswith(b"\xc3")
    with pytest.raises(IncompleteFileError):
        _convert(path)


def test_oversized_files_are_refused_before_reading(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(seica, "MAX_FILE_BYTES", 10)
    with pytest.raises(ConversionError, match="Seica files over 10 bytes are refused"):
        _convert(FIXTURES / "pass_single_board.xml")


def test_unknown_encoding_setting_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match="unknown encoding 'klingon'"):
        _convert(FIXTURES / "pass_single_board.xml", encoding="klingon")


# -- detection ---------------------------------------------------------------------------------


def test_detect_is_sure_of_every_fixture() -> None:
    for path in sorted(FIXTURES.glob("*.xml")):
        score, why = SeicaXMLConverter().detect_with_reason(path, path.read_bytes())
        assert score >= 0.9, path.name
        assert "<R>" in why


def test_detect_is_zero_on_spea_fixtures_and_unsure_of_a_bare_r_root() -> None:
    for path in sorted((FIXTURES.parent / "spea").glob("*.csv")):
        assert SeicaXMLConverter().detect(path, path.read_bytes()) == 0.0
    converter = SeicaXMLConverter()
    assert converter.detect(Path("x"), b"<R></R>") == 0.0
    assert 0 < converter.detect(Path("x"), b"<R><TEST NM='a'/></R>") < 0.5
    assert converter.detect(Path("x"), b"<Reports><ST /><BI /></Reports>") == 0.0
    assert converter.detect(Path("x"), "\ufeff<R><ST /><BI /><ET /></R>".encode("utf-16")) > 0.9


@needs_samples
@pytest.mark.parametrize("path", sample_files(), ids=lambda p: p.name[:40])
def test_detect_is_zero_and_convert_refuses_every_real_sample(path: Path) -> None:
    # No real Seica file exists: every sample of ../shared/samples is another format.
    converter = SeicaXMLConverter()
    assert converter.detect(path, path.read_bytes()[:65536]) == 0.0
    if path.suffix.lower() in (".xml", ".json", ".txt", ".csv", ".log", ".md"):
        with pytest.raises(ConversionError):
            converter.convert(path, _context())


# -- hypothesis: nothing but ConversionError, never a hang ------------------------------------


def _check(path: Path) -> None:
    convert_or_refuse(SeicaXMLConverter(), path, _context())


test_garbage_only_raises_conversion_errors = FuzzTarget(
    SeicaXMLConverter(), "garbage.xml", _context()).garbage_test()


_ATTRIBUTE_VALUES = st.sampled_from(["", "0", "1", "-nan", "1e999", "x", "01-02-2024 10:00",
                                     "99,5", "32-13-2024 10:00:00", "1E+400", " 7 "])


@settings(max_examples=150, deadline=2000,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tests=st.lists(st.dictionaries(st.sampled_from(["F", "NM", "MR", "ML", "MH", "MU", "TR",
                                                       "TT"]), _ATTRIBUTE_VALUES),
                      max_size=8),
       board=st.dictionaries(st.sampled_from(["BC", "BCP", "SD"]), _ATTRIBUTE_VALUES),
       et=st.dictionaries(st.sampled_from(["ED", "NF"]), _ATTRIBUTE_VALUES))
def test_odd_attribute_values_only_raise_conversion_errors(
        tmp_path: Path, tests: list[dict[str, str]], board: dict[str, str],
        et: dict[str, str]) -> None:
    def attrs(values: dict[str, str]) -> str:
        return " ".join(f'{key}="{value}"' for key, value in values.items())

    body = "".join(f"<TEST {attrs(test)}/>" for test in tests)
    text = f'<R><ST NM="A_B"/><BI {attrs(board)}>{body}</BI><ET {attrs(et)}/></R>'
    _check(_write(tmp_path, text))


@settings(max_examples=100, deadline=2000,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(sorted(p.name for p in FIXTURES.glob("*.xml"))),
       cut=st.integers(min_value=0, max_value=3000),
       edit=st.tuples(st.integers(min_value=0, max_value=3000),
                      st.sampled_from([b"", b"<", b">", b'"', b"\xff", b"<BI>", b"</BI>",
                                       b"&", b"\x00", b"<TEST/>", b"<ET NF='1'/>"])))
def test_truncated_and_mutated_fixtures_only_raise_conversion_errors(
        tmp_path: Path, name: str, cut: int, edit: tuple[int, bytes]) -> None:
    data = spliced((FIXTURES / name).read_bytes(), *edit)
    path = tmp_path / name
    path.write_bytes(data[:cut])
    _check(path)

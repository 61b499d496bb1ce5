"""ATMLConverter on hand-written files (tests/fixtures/atml) and on broken or hostile input.

The fixtures hold what the samples lack: a batch report with one TestResults per test socket,
a terminated run with unusual values, limits, outcomes and loops, a cp1252 file declared as
iso-8859-1, and a UUT without serial number. Hypothesis checks that garbage, damaged samples
and random ATML-shaped documents only ever raise ConversionError, within a deadline.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pywats_client.converters import BUILTIN_CONVERTERS, ConverterContext, ConverterRegistry
from pywats_client.converters import atml as atml_module
from pywats_client.converters.atml import ATMLConverter
from pywats_client.errors import ConversionError, IncompleteFileError
from pywats_client.report.model import ReportDict, iter_steps
from pywats_client.service.pipeline import convert_file
from tests.conftest import needs_samples, samples_in
from tests.converting import sample_files

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "atml"
ATML_SAMPLES = samples_in("atml")
# ATML names no WATS process: the station's folder says which (here SW Debug, 10).
CONTEXT = ConverterContext(station_name="ST-CONFIG", location="Lab", purpose="Test",
                           file_mtime=1_700_000_000.0, defaults={"process_code": 10})
CONVERTER = ATMLConverter()

NS5 = ('xmlns:trc="urn:IEEE-1636.1:2011:01:TestResultsCollection" '
       'xmlns:tr="urn:IEEE-1636.1:2011:01:TestResults" xmlns:c="urn:IEEE-1671:2010:Common" '
       'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
       'xmlns:ts="www.ni.com/TestStand/ATMLTestResults/2.0"')


def convert(path: Path, converter: ATMLConverter = CONVERTER) -> list[dict[str, Any]]:
    """Reports as the service makes them: converted, finalised and validated."""
    return convert_file(path, converter, CONTEXT).reports


def steps_by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {step["name"]: step for _, step in iter_steps(report["root"])}


def write(tmp_path: Path, text: str, name: str = "report.xml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def minimal(body: str = "", uut: str = "<c:SerialNumber>SN1</c:SerialNumber>",
            outcome: str = "Passed") -> str:
    """A small ATML 5.00 file with `body` as the steps of the root sequence."""
    return f"""<?xml version="1.0" encoding="utf-8"?>
<trc:TestResultsCollection {NS5}>
<trc:TestResults uuid="00000000-0000-4000-8000-000000000001">
  <tr:ResultSet ID="1" name="C:\\x.seq#MainSequence" startDateTime="2024-01-02T03:04:05.5"
      endDateTime="2024-01-02T03:04:06">
    <tr:Outcome value="{outcome}"/>
    {body}
  </tr:ResultSet>
  <tr:UUT>{uut}</tr:UUT>
</trc:TestResults>
</trc:TestResultsCollection>
"""


# -- the converter as the registry knows it -------------------------------------------------


def test_registered_as_a_built_in() -> None:
    assert BUILTIN_CONVERTERS["ATMLConverter"] == "pywats_client.converters.atml:ATMLConverter"
    converter = ConverterRegistry().create("ATMLConverter", {"part_number": "P1"})
    assert isinstance(converter, ATMLConverter)
    assert converter.matches(Path("x.XML")) and converter.matches(Path("run.atml"))
    assert not converter.matches(Path("x.json"))


# -- batch reports ------------------------------------------------------------------------------


def test_a_batch_file_gives_one_report_per_test_socket() -> None:
    reports = convert(FIXTURES / "batch_4_sockets_5_00.xml")
    assert [r["sn"] for r in reports] == ["NONE", "NONE", "NONE", "SN-SOCKET-3"]
    assert [r["uut"]["testSocketIndex"] for r in reports] == [0, 1, 2, 3]
    assert [r["result"] for r in reports] == ["P", "F", "P", "P"]
    assert [r["id"] for r in reports] == [
        f"11111111-2222-3333-4444-00000000000{n}" for n in range(4)]
    assert {r["uut"]["batchSN"] for r in reports} == {"BATCH-0042"}
    assert {r["pn"] for r in reports} == {"PCB-200"}
    values = [r["root"]["steps"][0]["numericMeas"][0]["value"] for r in reports]
    assert values == [12.5, 25.25, 15.0, 19.75]  # socket 2 wrote hex: 0x0F
    assert reports[1]["root"]["steps"][0]["numericMeas"][0]["status"] == "F"


def test_the_batch_table_fills_what_a_socket_does_not_say() -> None:
    reports = convert(FIXTURES / "batch_4_sockets_5_00.xml")
    assert reports[0]["uut"]["user"] == "operator0"
    # Socket 3 names no operator, station or batch; the batch table does.
    assert reports[3]["uut"]["user"] == "batchop"
    assert reports[3]["machineName"] == "BATCH-STATION"
    assert reports[3]["uut"]["batchSN"] == "BATCH-0042"
    # The file wins over the configured defaults.
    with_options = convert(FIXTURES / "batch_4_sockets_5_00.xml",
                           ATMLConverter(station_name="ST-ARG", operator="someone"))
    assert with_options[3]["machineName"] == "BATCH-STATION"
    assert with_options[3]["uut"]["user"] == "batchop"


def test_a_repeated_uuid_does_not_give_two_reports_the_same_id(tmp_path: Path) -> None:
    text = (FIXTURES / "batch_4_sockets_5_00.xml").read_text(encoding="latin-1")
    path = tmp_path / "copied.xml"
    path.write_text(re.sub(r"4444-00000000000[0-3]", "4444-000000000000", text),
                    encoding="latin-1")
    ids = [r["id"] for r in convert(path)]
    assert ids[0] == "11111111-2222-3333-4444-000000000000"
    assert len(set(ids)) == 4


# -- unusual values, limits, outcomes and loops ---------------------------------------------


@pytest.fixture(scope="module")
def edge() -> dict[str, Any]:
    [report] = convert(FIXTURES / "edge_cases_6_01.xml")
    return report


def test_a_terminated_run_without_header_fields(edge: dict[str, Any]) -> None:
    assert edge["result"] == "T"  # ResultSet outcome Aborted, no qualifier
    assert edge["root"]["status"] == "T"
    assert edge["pn"] == "NA"
    assert edge["machineName"] == "ST-CONFIG"  # no TestStation: the configured station
    assert edge["uut"] == {"execTime": 30.25}
    assert edge["root"]["seqCall"] == {"path": "D:\\Tests\\Edge Cases.seq",
                                       "name": "MainSequence", "version": ""}


def test_header_options_fill_a_file_that_has_none() -> None:
    converter = ATMLConverter(part_number="PN-9", operator="night shift",
                              station_name="ST-ARG", sequence_version="2.1")
    [report] = convert(FIXTURES / "edge_cases_6_01.xml", converter)
    assert (report["pn"], report["uut"]["user"], report["machineName"]) == (
        "PN-9", "night shift", "ST-ARG")
    assert report["root"]["seqCall"]["version"] == "2.1"


@pytest.mark.parametrize(("name", "expected"), [
    ("Hex value", {"compOp": "GE", "status": "P", "unit": "V", "value": 31.0, "lowLimit": 16.0}),
    # A range open on one side is the single-limit test of its other side (LE: lowLimit).
    ("Open low end", {"compOp": "LE", "status": "P", "unit": "V", "value": 3.0,
                      "lowLimit": 5.0}),
    ("Open high end", {"compOp": "GE", "status": "P", "unit": "V", "value": 3.0,
                       "lowLimit": 1.0}),
    ("NaN limit", {"compOp": "LOG", "status": "P", "unit": "V", "value": 3.0}),
    ("Reversed pair", {"compOp": "GELE", "status": "P", "unit": "V", "value": 4.0,
                       "lowLimit": 0.0, "highLimit": 10.0}),
    ("Outside range", {"compOp": "LTGT", "status": "P", "unit": "V", "value": 12.0,
                       "lowLimit": 0.0, "highLimit": 10.0}),
    ("Millivolts", {"compOp": "GELE", "status": "P", "unit": "mV", "value": 1.5,
                    "lowLimit": 1.0, "highLimit": 2.0}),
    ("Equal expected", {"compOp": "EQ", "status": "P", "unit": "V", "value": 7.0,
                        "lowLimit": 7.0}),
    # An errored or terminated step says nothing of its measurement: judged by its limits.
    ("Error step", {"compOp": "GE", "status": "F", "unit": "V", "value": 1.0, "lowLimit": 5.0}),
])
def test_values_and_limits(edge: dict[str, Any], name: str, expected: dict[str, Any]) -> None:
    assert steps_by_name(edge)[name]["numericMeas"] == [expected]


@pytest.mark.parametrize(("name", "status"), [
    ("Error step", "E"), ("Terminated step", "T"), ("Custom status", "D"),
    ("Unknown outcome", "D"), ("Not started", "S"), ("Failed pass/fail", "F"),
    ("Power off", "P"),
])
def test_every_outcome_is_mapped(edge: dict[str, Any], name: str, status: str) -> None:
    assert steps_by_name(edge)[name]["status"] == status


def test_other_step_kinds(edge: dict[str, Any]) -> None:
    steps = steps_by_name(edge)
    assert steps["Not started"].get("booleanMeas") is None  # skipped: nothing measured
    assert steps["Failed pass/fail"]["booleanMeas"] == [{"status": "F"}]
    assert steps["Firmware string"]["stringMeas"] == [{
        "compOp": "LOG", "value": "FW 1.2.3", "limit": "fw \\d+\\.\\d+\\.\\d+", "status": "P"}]
    assert steps["Operator check"]["messagePopup"] == {"button": 1, "response": "LED is green"}
    assert steps["Flash tool"]["callExe"] == {"exitCode": -3.0}
    assert steps["Power off"]["group"] == "C"
    assert steps["Hex value"]["tsGuid"] == "ID#:edge201"
    assert steps["Hex value"]["totTime"] == pytest.approx(0.1)


def test_loop_summary_goes_before_its_iterations(edge: dict[str, Any]) -> None:
    loops = [(s["name"], s.get("loop"), s["status"]) for s in edge["root"]["steps"][17:21]]
    assert loops == [
        ("Retry measurement", {"num": 2, "passed": 1, "failed": 1, "endingIndex": 2}, "P"),
        ("Retry measurement", {"idx": 0}, "F"),
        ("Retry measurement", {"idx": 1}, "P"),
        ("Lonely iteration", None, "P"),  # no summary: kept as a plain step
    ]


def test_locations_name_the_element_and_line(edge: dict[str, Any]) -> None:
    assert isinstance(edge, ReportDict)
    where = {step["name"]: path for path, step in iter_steps(edge["root"])}
    assert edge.locate(where["Hex value"]) == '<Test name="Hex value"> at line 15'
    assert edge.locate(where["Hex value"] + ".numericMeas[0]").startswith("<Test name=")
    assert edge.locate("root") == '<ResultSet name="D:\\Tests\\Edge Cases.seq#MainSequence"> ' \
        "at line 6"
    assert edge.locate("") == ('<TestResults uuid="a1b2c3d4-0000-4000-8000-00000000e6e6"> '
                               "at line 5")


# -- encodings ----------------------------------------------------------------------------------


def test_cp1252_option_reads_what_teststand_wrote() -> None:
    path = FIXTURES / "cp1252_names_5_00.xml"
    [as_declared] = convert(path)
    [as_cp1252] = convert(path, ATMLConverter(encoding="cp1252"))
    assert as_declared["root"]["steps"][0]["name"] == "Spänning \x96 5 \x80"
    assert as_cp1252["root"]["steps"][0]["name"] == "Spänning \u2013 5 \u20ac"
    assert (as_cp1252["sn"], as_cp1252["machineName"], as_cp1252["uut"]["user"]) == (
        "SN-Ø1", "MÄTSTATION-1", "Åsa")


def test_utf16_file_is_detected_and_read(tmp_path: Path) -> None:
    text = (FIXTURES / "batch_4_sockets_5_00.xml").read_text(encoding="latin-1")
    path = tmp_path / "utf16.xml"
    path.write_bytes(text.replace('encoding="iso-8859-1"', 'encoding="utf-16"').encode("utf-16"))
    assert CONVERTER.detect(path, path.read_bytes()[:65536]) >= 0.95
    assert [r["sn"] for r in convert(path)][-1] == "SN-SOCKET-3"


def test_unknown_encoding_option_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match="encoding"):
        convert(FIXTURES / "cp1252_names_5_00.xml", ATMLConverter(encoding="no-such-codec"))


# -- refusals -----------------------------------------------------------------------------------


def test_no_serial_number_is_refused_with_the_element() -> None:
    with pytest.raises(ConversionError, match=r"<UUT> at line 16: .*SerialNumber"):
        convert(FIXTURES / "no_serial_2_02.xml")


@pytest.mark.parametrize(("text", "message"), [
    ('<?xml version="1.0"?><Reports xmlns="http://wats.virinco.com/schemas/WATS/Report/wsxf"/>',
     r"root element is <Reports> in namespace http://wats.virinco.com/.*not ATML"),
    ("<TSReport><ReportInfo/></TSReport>", "root element is <TSReport> without a namespace"),
    (f"<trc:TestResultsCollection {NS5}></trc:TestResultsCollection>", "holds no TestResults"),
    (f'<trc:TestResultsCollection {NS5}><trc:TestResults uuid="x"><tr:UUT/></trc:TestResults>'
     "</trc:TestResultsCollection>", "has no ResultSet"),
    ("{not xml", "not well-formed XML at line 1"),
])
def test_foreign_and_broken_files_are_refused(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConversionError, match=message):
        convert(write(tmp_path, text))


def test_a_bad_value_names_its_line(tmp_path: Path) -> None:
    body = """<tr:Test ID="2" name="Bad">
      <tr:Outcome value="Passed"/>
      <tr:TestResult ID="x" name="Numeric"><tr:TestData>
        <c:Datum value="twelve" xsi:type="ts:TS_double"/></tr:TestData></tr:TestResult>
    </tr:Test>"""
    with pytest.raises(ConversionError, match=r"<Datum value=\"twelve\"> at line 10: value "
                                              r"'twelve' is not a number"):
        convert(write(tmp_path, minimal(body)))


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00", "2024-02-30T10:00:00", "noon"])
def test_a_bad_time_names_its_element(tmp_path: Path, when: str) -> None:
    text = minimal().replace('startDateTime="2024-01-02T03:04:05.5"', f'startDateTime="{when}"')
    with pytest.raises(ConversionError, match=rf"<ResultSet .*> at line 4: startDateTime: "
                                              rf"'{when}' is not a usable date-time"):
        convert(write(tmp_path, text))


def test_a_bad_process_code_option_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match="process_code 'ten'"):
        convert(write(tmp_path, minimal()), ATMLConverter(process_code="ten"))


@pytest.mark.parametrize("declaration", [
    '<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]>',
    '<!DOCTYPE x SYSTEM "file:///etc/passwd">',
])
def test_doctype_and_entities_are_refused(tmp_path: Path, declaration: str) -> None:
    text = minimal().replace("?>\n", f"?>\n{declaration}\n", 1)
    with pytest.raises(ConversionError, match="DOCTYPE or ENTITY"):
        convert(write(tmp_path, text))
    assert CONVERTER.detect(tmp_path / "report.xml", text.encode()) == 0.0


def test_a_doctype_after_the_head_is_refused_by_the_parser(tmp_path: Path) -> None:
    text = minimal().replace("?>\n", "?>\n<!--" + "x" * 70_000 + "-->\n<!DOCTYPE x []>\n", 1)
    with pytest.raises(ConversionError, match=r"DOCTYPE or ENTITY \(line 3\)"):
        convert(write(tmp_path, text))


def test_nesting_is_capped(tmp_path: Path) -> None:
    depth = atml_module.MAX_DEPTH + 5
    body = '<tr:TestGroup name="a#b">' * depth + "</tr:TestGroup>" * depth
    with pytest.raises(ConversionError, match="nested more than"):
        convert(write(tmp_path, minimal(body)))


def test_deep_but_allowed_nesting_converts(tmp_path: Path) -> None:
    depth = atml_module.MAX_DEPTH - 10
    body = ('<tr:TestGroup name="x.seq#s"><tr:Outcome value="Passed"/>' * depth
            + "</tr:TestGroup>" * depth)
    [report] = convert(write(tmp_path, minimal(body)))
    assert len(list(iter_steps(report["root"]))) == depth + 1


def test_too_large_files_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(atml_module, "MAX_FILE_SIZE", 100)
    with pytest.raises(ConversionError, match="ATML files over 100 bytes are refused"):
        convert(write(tmp_path, minimal()))


def test_an_empty_file_is_incomplete(tmp_path: Path) -> None:
    with pytest.raises(IncompleteFileError):
        convert(write(tmp_path, "  \n"))


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.97])
def test_a_file_cut_off_is_incomplete(tmp_path: Path, fraction: float) -> None:
    data = (FIXTURES / "batch_4_sockets_5_00.xml").read_bytes()
    path = tmp_path / "cut.xml"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(IncompleteFileError, match="ends early"):
        convert(path)


# -- what is read as it ends: the first problem of the report, the first step with an ID ---------

_BAD_TIME = '<tr:Test ID="9" name="Late" startDateTime="2024-13-01T00:00:00"/>'
_BAD_VALUE = ('<tr:Test ID="8" name="Odd"><tr:TestResult ID="r" name="Numeric"><tr:TestData>'
              '<c:Datum xsi:type="c:double" value="abc"/></tr:TestData></tr:TestResult>'
              "</tr:Test>")


def _group(inner: str, attrs: str = 'startDateTime="2024-01-02T03:04:05"') -> str:
    return f'<tr:TestGroup ID="5" name="C:\\x.seq#Sub" {attrs}>{inner}</tr:TestGroup>'


@pytest.mark.parametrize(("body", "uut", "message"), [
    (_BAD_VALUE, "", r"<UUT> at line \d+: the UUT has no serial number"),
    (_group(_BAD_VALUE, 'startDateTime="x"'), "<c:SerialNumber>S</c:SerialNumber>",
     r'<TestGroup name="C:\\x.seq#Sub"> at line \d+: startDateTime: \'x\''),
    (_group(_BAD_VALUE) + _BAD_TIME, "<c:SerialNumber>S</c:SerialNumber>",
     r"<Datum value=\"abc\"> at line \d+: value 'abc' is not a number"),
    (_BAD_TIME + _BAD_VALUE, "<c:SerialNumber>S</c:SerialNumber>",
     r'<Test name="Late"> at line \d+: startDateTime'),
])
def test_the_first_problem_in_the_report_is_named(tmp_path: Path, body: str, uut: str,
                                                  message: str) -> None:
    # Steps are mapped as they end, before the UUT that follows them is read; the problem
    # named is the first in the order of the report: its header, then its steps in the
    # file's order, a step's own before its child steps'.
    path = tmp_path / "r.xml"
    path.write_text(minimal(body, uut=uut))
    with pytest.raises(ConversionError, match=message) as caught:
        convert(path)
    assert not isinstance(caught.value, IncompleteFileError)
    path.write_text(minimal(body, uut=uut).split("</tr:UUT>")[0])
    with pytest.raises(IncompleteFileError):  # cut off after the problem: still being written
        convert(path)


def test_a_failure_stack_names_the_first_step_in_the_file_with_its_id(tmp_path: Path) -> None:
    failed = '<tr:Outcome value="Failed"/>'
    body = (f'<tr:TestGroup ID="7" name="C:\\x.seq#Sub">{failed}'
            f'<tr:Test ID="7" name="Inner">{failed}</tr:Test></tr:TestGroup>')
    stack = ('<tr:Extension><ts:TSResultSetProperties><ts:CriticalFailureStack>'
             '<ts:CriticalFailureStackEntry resultID="7"/></ts:CriticalFailureStack>'
             "</ts:TSResultSetProperties></tr:Extension>")
    path = tmp_path / "r.xml"
    path.write_text(minimal(body, outcome="Failed").replace("</trc:TestResults>",
                                                            stack + "</trc:TestResults>"))
    [report] = convert(path)
    [group] = report["root"]["steps"]
    assert group["name"] == "Sub" and group.get("causedUUTFailure") is True
    assert "causedUUTFailure" not in group["steps"][0]
    assert report["uut"]["stepIdCausedUUTFailure"] == group["id"]


# -- detection ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.xml")))
def test_detect_is_sure_of_the_fixtures(name: str) -> None:
    path = FIXTURES / name
    score, why = CONVERTER.detect_with_reason(path, path.read_bytes()[:65536])
    assert score >= 0.95 and "ATML" in why


@needs_samples
def test_detect_is_zero_on_every_other_format() -> None:
    for path in sample_files(besides="atml"):
        score, why = CONVERTER.detect_with_reason(path, path.read_bytes()[:65536])
        assert score == 0.0, (path, why)


def test_detect_never_raises() -> None:
    heads = (b"", b"\xff\xfe<\x00", b"<", b"<?xml", b"\x00" * 100, "<ä:b xmlns:ä='x'>".encode())
    for head in heads:
        assert CONVERTER.detect(Path("x.xml"), head) == 0.0


# -- hypothesis: nothing but ConversionError, never a hang ----------------------------------------


def _only_conversion_errors(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    with contextlib.suppress(ConversionError):  # anything else fails the test
        convert(path)


@settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=600))
def test_garbage_raises_only_conversion_errors(tmp_path_factory: pytest.TempPathFactory,
                                               data: bytes) -> None:
    _only_conversion_errors(tmp_path_factory.mktemp("garbage") / "x.xml", data)


_DAMAGEABLE = [*ATML_SAMPLES, *sorted(FIXTURES.glob("*.xml"))]


@settings(max_examples=120, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(index=st.integers(min_value=0), cut=st.floats(min_value=0.0, max_value=1.0),
       edits=st.lists(st.tuples(st.integers(min_value=0), st.binary(max_size=4)), max_size=4))
def test_truncated_and_mutated_files_raise_only_conversion_errors(
        tmp_path_factory: pytest.TempPathFactory, index: int, cut: float,
        edits: list[tuple[int, bytes]]) -> None:
    source = _DAMAGEABLE[index % len(_DAMAGEABLE)]
    data = bytearray(source.read_bytes())
    del data[int(len(data) * cut) if cut < 1.0 else len(data):]
    for position, replacement in edits:
        at = position % (len(data) + 1)
        data[at:at + len(replacement)] = replacement
    _only_conversion_errors(tmp_path_factory.mktemp("damaged") / source.name, bytes(data))


# Mostly what TestStand writes, sometimes what it should not: most documents convert.
_WORDS = st.sampled_from(["1", "-2.5", "0x1F", "NaN", "-INF", "1e309", "1.#INF", "5", "0", "7",
                          "10", "32768", "abc", "", "true", "Passed", "x#y"])
_GOOD_TIME = "2024-01-01T00:00:00"
_OUTCOMES = st.sampled_from(["Passed", "Failed", "Aborted", "UserDefined", "NotStarted",
                             "Unknown", "Done", "Error", "Weird", ""])
_STEP_TYPES = st.sampled_from(["NumericLimitTest", "PassFailTest", "StringValueTest",
                               "SequenceCall", "WATS_SeqCall", "MessagePopup", "CallExecutable",
                               "ET_NLT", "ET_MSVT", "NI_MultipleNumericLimitTest", "Action", ""])
_COMPARATORS = st.sampled_from(["GE", "LE", "GT", "LT", "EQ", "NE", "CIEQ", "XX", ""])


def _attr(name: str, value: str) -> str:
    return f" {name}={quoteattr(value)}"


@st.composite
def _result(draw: st.DrawFn) -> str:
    name = draw(st.sampled_from(["Numeric", "String", "PassFail", "Measurement 0", "ReportText",
                                 "Limits", "ButtonHit", "ExitCode", "SeqFileVersion", "Extra"]))
    kind = draw(st.sampled_from(["c:double", "c:string", "c:boolean", "ts:TS_double"]))
    value = draw(_WORDS)
    if draw(st.booleans()):
        datum = f'<c:Datum xsi:type="{kind}"{_attr("value", value)}/>'
    elif draw(st.booleans()):
        datum = f'<c:Datum xsi:type="{kind}"><c:Value>{value}</c:Value></c:Datum>'
    else:
        items = "".join(f'<c:Item name="{n}"><c:Datum xsi:type="c:double"{_attr("value", v)}/>'
                        "</c:Item>" for n, v in draw(st.lists(st.tuples(
                            st.sampled_from(["Low", "High", "MeasName", "Status", "x"]), _WORDS),
                            max_size=3)))
        datum = f"<c:Collection>{items}</c:Collection>"
    limits = ""
    if draw(st.booleans()):
        a, b = draw(_COMPARATORS), draw(_COMPARATORS)
        if draw(st.booleans()):
            limit = (f'<c:LimitPair operator="{draw(st.sampled_from(["AND", "OR", "?"]))}">'
                     f'<c:Limit comparator="{a}"><c:Datum{_attr("value", draw(_WORDS))}/>'
                     f'</c:Limit><c:Limit comparator="{b}">'
                     f'<c:Datum{_attr("value", draw(_WORDS))}/></c:Limit></c:LimitPair>')
        else:
            tag = draw(st.sampled_from(["SingleLimit", "Expected"]))
            limit = (f'<c:{tag} comparator="{a}"><c:Datum{_attr("value", draw(_WORDS))}/>'
                     f"</c:{tag}>")
        limits = f"<tr:TestLimits><tr:Limits>{limit}</tr:Limits></tr:TestLimits>"
    outcome = f'<tr:Outcome value="{draw(_OUTCOMES)}"/>' if draw(st.booleans()) else ""
    return (f'<tr:TestResult ID="r"{_attr("name", name)}><tr:TestData>{datum}</tr:TestData>'
            f"{limits}{outcome}</tr:TestResult>")


def _step(children: st.SearchStrategy[list[str]]) -> st.SearchStrategy[str]:
    @st.composite
    def build(draw: st.DrawFn) -> str:
        tag = draw(st.sampled_from(["tr:Test", "tr:SessionAction", "tr:TestGroup"]))
        loop = draw(st.sampled_from([
            "", "<ts:LoopingProperties><ts:LoopIndex value='1'/></ts:LoopingProperties>",
            "<ts:LoopingProperties><ts:NumLoops value='2'/><ts:NumPassed value='x'/>"
            "</ts:LoopingProperties>"]))
        props = (f"<tr:Extension><ts:TSStepProperties><ts:StepType>{draw(_STEP_TYPES)}"
                 f"</ts:StepType><ts:StepGroup>{draw(st.sampled_from(['Main', 'Setup', 'X']))}"
                 f"</ts:StepGroup><ts:TotalTime{_attr('value', draw(_WORDS))}/>{loop}"
                 "</ts:TSStepProperties></tr:Extension>")
        outcome = draw(_OUTCOMES)
        qualifier = _attr("qualifier", draw(_WORDS)) if draw(st.booleans()) else ""
        results = "".join(draw(st.lists(_result(), max_size=3)))
        start = draw(st.sampled_from([_GOOD_TIME] * 8 + ["2024-13-01T00:00:00", "", "x"]))
        name = draw(st.sampled_from(["Step", "Step (Loop Index:1)", "C:\\a.seq#Sub", ""]))
        return (f'<{tag} ID="{draw(st.integers(0, 9))}"{_attr("name", name)}'
                f'{_attr("startDateTime", start)}>{props}'
                f'<tr:Outcome value="{outcome}"{qualifier}/>{results}{"".join(draw(children))}'
                f"</{tag}>")
    return build()


_STEPS = st.recursive(st.just([]), lambda inner: st.lists(_step(inner), max_size=4),
                      max_leaves=12)


@settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(steps=_STEPS, outcome=_OUTCOMES, serial=st.sampled_from(["SN1"] * 8 + ["", "NONE"]))
def test_random_atml_documents_raise_only_conversion_errors(
        tmp_path_factory: pytest.TempPathFactory, steps: list[str], outcome: str,
        serial: str) -> None:
    text = minimal("".join(steps), uut=f"<c:SerialNumber>{serial}</c:SerialNumber>",
                   outcome=outcome)
    _only_conversion_errors(tmp_path_factory.mktemp("random") / "r.xml", text.encode())

"""WATSStandardJsonConverter on Virinco's and pyWATS' sample files, and on broken input."""

from __future__ import annotations

import codecs
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pywats_client.converters import ConverterContext, ConverterRegistry
from pywats_client.converters.wsjf import MAX_FILE_SIZE, WATSStandardJsonConverter
from pywats_client.errors import ConversionError, IncompleteFileError, ReportValidationError
from pywats_client.report.checks import finalize, validate
from pywats_client.report.model import ReportDict, to_json_bytes
from tests.conftest import SAMPLES, each_sample, samples_in
from tests.conftest import sample as any_sample
from tests.converting import convert_like_the_service, finish_like_the_service
from tests.test_report import PROPERTY_SETTINGS, valid_reports

WSJF_SAMPLES = samples_in("wsjf", "*.json")
CONTEXT = ConverterContext(station_name="ST-01", location="Line 3", purpose="Production",
                           file_mtime=1_777_777_777.0)
CONVERTER = WATSStandardJsonConverter()

SMALL_REPORT: dict[str, Any] = {
    "type": "T", "id": "8f14e45f-ceea-467f-a0b6-1e9b3f2a1c2d", "pn": "PN-1", "sn": "SN-Ø1",
    "rev": "A", "processCode": 10, "result": "P", "machineName": "M", "location": "L",
    "purpose": "P", "start": "2026-05-01T10:00:00+02:00",
    "root": {"id": 0, "group": "M", "stepType": "SequenceCall", "name": "Main", "status": "P",
             "seqCall": {"path": "p", "name": "Main", "version": "1"}, "steps": []},
}


def needs_samples() -> None:
    any_sample("wsjf")


def write(tmp_path: Path, data: bytes, name: str = "report.json") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def convert(path: Path, context: ConverterContext = CONTEXT) -> Any:
    return CONVERTER.convert(path, context)


# -- real samples --------------------------------------------------------------------------------


@pytest.mark.parametrize("sample", each_sample(WSJF_SAMPLES))
def test_sample_converts_and_keeps_every_field(sample: Path) -> None:
    data = sample.read_bytes()
    original = json.loads(data.decode("utf-8-sig"))
    result = convert(sample)
    assert isinstance(result, dict)
    report = finalize(result, context=CONTEXT, converter_name=CONVERTER.name,
                      content_sha256=hashlib.sha256(data).hexdigest(), index=0,
                      source=str(sample))
    # The samples carry every default already, so nothing is added or changed: the same
    # fields, the same values, in the same order.
    assert json.dumps(report, sort_keys=True) == json.dumps(original, sort_keys=True)
    assert list(report) == list(original)
    assert to_json_bytes(report) == to_json_bytes(original)


@pytest.mark.parametrize("sample", each_sample(WSJF_SAMPLES))
def test_sample_is_detected_from_its_head(sample: Path) -> None:
    head = sample.read_bytes()[:64 * 1024]
    score, why = CONVERTER.detect_with_reason(sample, head)
    assert score >= 0.9, why
    assert CONVERTER.detect(sample, head) == score
    # Even a small head, cut in the middle of the report, is enough.
    assert CONVERTER.detect(sample, head[:300]) >= 0.9


def test_samples_are_chosen_by_content_under_any_name(tmp_path: Path) -> None:
    needs_samples()
    registry = ConverterRegistry()
    for sample in WSJF_SAMPLES:
        chosen = registry.choose(sample, sample.read_bytes()[:65536], auto_detect=True)
        assert chosen is not None
        assert chosen[1].startswith("WATSStandardJsonConverter: detect 0.9")


def test_every_prefix_of_a_sample_is_incomplete_not_broken(tmp_path: Path) -> None:
    # A file still being written must be retried later, never moved to the error folder.
    data = next((p.read_bytes() for p in WSJF_SAMPLES if p.name == "uur_example.json"),
                json.dumps(SMALL_REPORT, indent=2).encode())
    path = tmp_path / "partial.json"
    for cut in range(len(data.rstrip())):
        path.write_bytes(data[:cut])
        with pytest.raises(IncompleteFileError):
            convert(path)


def test_prefixes_of_a_pretty_printed_sample_are_incomplete(tmp_path: Path) -> None:
    needs_samples()
    data = next(p.read_bytes() for p in WSJF_SAMPLES if "Bare Minimum" in p.name)
    path = tmp_path / "partial.json"
    for cut in range(1, len(data.rstrip()), 7):
        path.write_bytes(data[:cut])
        with pytest.raises(IncompleteFileError, match=r"ends early|empty|middle of a character"):
            convert(path)


def test_uur_sample_keeps_sub_units_failures_and_attachments() -> None:
    needs_samples()
    sample = SAMPLES / "wsjf" / "WATS - WSJF UUR Example file.json"
    original = json.loads(sample.read_text(encoding="utf-8-sig"))
    result = convert(sample)
    assert result["type"] == "R" and result["uur"] == original["uur"]
    assert result["subUnits"] == original["subUnits"]
    attachment = result["subUnits"][0]["failures"][0]["attachments"][0]
    assert attachment["data"] == original["subUnits"][0]["failures"][0]["attachments"][0]["data"]
    assert result["startUTC"] == "2020-01-01T08:00:00.Z"  # the odd form, kept as written
    validate(result)


# -- shapes of input -----------------------------------------------------------------------------


def test_single_object_is_returned_as_is(tmp_path: Path) -> None:
    result = convert(write(tmp_path, json.dumps(SMALL_REPORT).encode()))
    assert result == SMALL_REPORT and list(result) == list(SMALL_REPORT)
    assert isinstance(result, ReportDict)


def test_repair_report_is_returned_as_is(tmp_path: Path) -> None:
    repair = {"type": "R", "id": "0b0d6c8e-3f7a-4d0e-9c55-2b7f1d7c9e11", "pn": "PN-1",
              "sn": "SN-1", "rev": "A", "processCode": 500, "result": "P", "machineName": "M",
              "location": "L", "purpose": "P", "start": "2026-05-01T10:00:00+02:00",
              "uur": {"user": "fixer", "processCode": 10},
              "subUnits": [{"pn": "PN-1", "sn": "SN-1", "rev": "A", "idx": 0, "failures": [
                  {"category": "Solder", "code": "Bridge", "refStepId": 3}]}]}
    result = convert(write(tmp_path, json.dumps(repair).encode()))
    assert result == repair
    validate(result)


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    data = codecs.BOM_UTF8 + json.dumps(SMALL_REPORT, ensure_ascii=False).encode()
    assert convert(write(tmp_path, data)) == SMALL_REPORT


def test_utf16_with_bom_is_accepted(tmp_path: Path) -> None:
    data = json.dumps(SMALL_REPORT, ensure_ascii=False).encode("utf-16")
    assert convert(write(tmp_path, data)) == SMALL_REPORT


def test_configured_legacy_encoding_is_honoured(tmp_path: Path) -> None:
    data = json.dumps(SMALL_REPORT, ensure_ascii=False).encode("latin-1")
    path = write(tmp_path, data)
    assert convert(path, ConverterContext(encoding="latin-1")) == SMALL_REPORT
    # Not configured: JSON is UTF-8, so a byte that is not is an error naming its offset.
    with pytest.raises(ConversionError, match=r"line 1 is not valid utf-8 \(byte \d+\)"):
        convert(path)
    with pytest.raises(ConversionError, match=r"line 1 is not valid utf-8 \(byte \d+\)"):
        convert(path, ConverterContext(arguments={"encoding": "utf-8"}))


def test_list_of_reports(tmp_path: Path) -> None:
    second = dict(SMALL_REPORT, sn="SN-2", id="0b0d6c8e-3f7a-4d0e-9c55-2b7f1d7c9e11")
    result = convert(write(tmp_path, json.dumps([SMALL_REPORT, second]).encode()))
    assert result == [SMALL_REPORT, second]
    ids = {finalize(dict(r, id=None), context=CONTEXT, converter_name=CONVERTER.name,
                    content_sha256="ab", index=n)["id"] for n, r in enumerate(result)}
    assert len(ids) == 2


def test_list_with_something_else_names_the_item(tmp_path: Path) -> None:
    path = write(tmp_path, json.dumps([SMALL_REPORT, 42]).encode())
    with pytest.raises(ConversionError, match="item 1 of the list: expected a WSJF report object"):
        convert(path)


@pytest.mark.parametrize(
    ("content", "found"),
    [(b"42", "a JSON number"), (b'"text"', "a JSON string"), (b"[]", "an empty list"),
     (b"null", "a JSON null"), (b"true", "a JSON boolean")],
)
def test_json_that_is_not_a_report_says_what_was_expected(
    tmp_path: Path, content: bytes, found: str
) -> None:
    path = write(tmp_path, content)
    with pytest.raises(ConversionError) as caught:
        convert(path)
    message = str(caught.value)
    assert message.startswith(str(path))
    assert "expected a WSJF report" in message and f"holds {found}" in message


@pytest.mark.parametrize(
    ("report", "problem"),
    [({"pn": "x"}, 'it has no "type"'), ({"type": "X"}, 'it has "type" "X"')],
)
def test_object_without_a_report_type_is_refused(
    tmp_path: Path, report: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ConversionError, match=f"not a WSJF report: {problem}"):
        convert(write(tmp_path, json.dumps(report).encode()))


# -- operators ----------------------------------------------------------------------------------


def test_unknown_operator_is_read_as_log_like_the_wats_client(tmp_path: Path) -> None:
    report = json.loads(json.dumps(SMALL_REPORT))
    report["root"]["steps"] = [
        {"id": 1, "status": "P", "name": "N", "numericMeas": [
            {"compOp": "BETWEEN", "name": "a", "status": "P", "value": 1},
            {"compOp": "gele", "name": "b", "status": "P", "value": 1, "lowLimit": 0,
             "highLimit": 2},
            {"compOp": "", "name": "c", "status": "P", "value": 1}]},
        {"id": 2, "status": "P", "name": "S", "stringMeas": [
            {"compOp": "IgnoreCase", "name": None, "status": "P", "value": "a", "limit": "A"}]},
        {"id": 3, "status": "P", "name": "T", "stringMeas": [
            {"compOp": "Regex", "name": None, "status": "P", "value": "a", "limit": "a*"}]},
    ]
    result = convert(write(tmp_path, json.dumps(report).encode()))
    # Read as LOG by validation, in its one walk of the steps (every report is validated
    # before it is queued); the same report from another converter is refused.
    with pytest.raises(ReportValidationError, match="'BETWEEN' is not a comparison operator"):
        validate(dict(json.loads(json.dumps(result))))
    validate(result)
    ops = [m["compOp"] for s in result["root"]["steps"]
           for m in s.get("numericMeas", []) + s.get("stringMeas", [])]
    assert ops == ["LOG", "gele", "LOG", "IgnoreCase", "LOG"]  # known spellings are kept


# -- where a problem is -------------------------------------------------------------------------


def test_validation_names_line_and_column_of_a_bad_value(tmp_path: Path) -> None:
    report = json.loads(json.dumps(SMALL_REPORT))
    report["root"]["steps"] = [{"id": 1, "status": "P", "name": "Voltage", "numericMeas": [
        {"compOp": "GELE", "name": None, "status": "P", "value": "high", "lowLimit": 1,
         "highLimit": 2}]}]
    path = write(tmp_path, json.dumps(report, indent=2).encode())
    lines = path.read_text().splitlines()
    line = next(n for n, text in enumerate(lines) if '"compOp"' in text)  # 1-based: the "{"
    column = lines[line - 1].index("{") + 1  # of the measurement is on the line before
    with pytest.raises(ReportValidationError) as caught:
        finalize(convert(path), context=CONTEXT, converter_name=CONVERTER.name,
                 content_sha256="ab", index=0, source=str(path))
    message = str(caught.value)
    assert message.startswith(f"{path}: report sn 'SN-Ø1' is not valid WSJF: ")
    assert (f"'root.steps[0].numericMeas[0].value' must be a number, not 'high' "
            f"(step 'Voltage', line {line}, column {column})") in message


def test_places_name_the_item_of_a_list_file(tmp_path: Path) -> None:
    second = dict(SMALL_REPORT, pn=None)
    path = write(tmp_path, json.dumps([SMALL_REPORT, second]).encode())
    result = convert(path)
    validate(result[0])
    with pytest.raises(ReportValidationError, match=r"'pn' is missing \(item 1 of the list, "
                                                    r"line 1, column \d+\)"):
        validate(result[1])


def test_places_are_not_guessed_when_the_file_changed(tmp_path: Path) -> None:
    path = write(tmp_path, json.dumps(dict(SMALL_REPORT, pn=None)).encode())
    result = convert(path)
    path.write_bytes(b"[" + path.read_bytes() + b"]")
    with pytest.raises(ReportValidationError) as caught:
        validate(result)
    assert str(caught.value).endswith("'pn' is missing")


def test_a_valid_file_is_parsed_once(tmp_path: Path) -> None:
    result = convert(write(tmp_path, json.dumps(SMALL_REPORT).encode()))
    validate(result)
    assert result.locations == {}  # places are looked for only when something is wrong


# -- properties ----------------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(report=valid_reports(), indent=st.sampled_from([None, 2]), bom=st.booleans())
def test_random_valid_reports_round_trip_unchanged(
    tmp_path_factory: pytest.TempPathFactory, report: dict[str, Any], indent: int | None,
    bom: bool
) -> None:
    data = to_json_bytes(report) if indent is None else json.dumps(
        report, indent=indent, ensure_ascii=False).encode()
    path = tmp_path_factory.mktemp("roundtrip") / "report.json"
    path.write_bytes(codecs.BOM_UTF8 + data if bom else data)
    result = convert(path)
    assert result == report
    assert to_json_bytes(result) == to_json_bytes(report)  # same fields, values and order
    validate(result)


# -- broken input ----------------------------------------------------------------------------------


def test_bad_json_names_file_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, b'{\n  "type": "T",\n  "pn": PN-1,\n  "sn": "x"\n}\n')
    with pytest.raises(ConversionError) as caught:
        convert(path)
    assert not isinstance(caught.value, IncompleteFileError)
    assert str(caught.value).startswith(f"{path}: not valid JSON at line 3, column 9: ")


@pytest.mark.parametrize(
    "content",
    [b'{"type": "T", "pn": tru}', b'{"type": "T"} {"type": "T"}', b"{'type': 'T'}",
     b'{"type": "T",}', b'{"type": "T"}\x00\x00\x00'],
)
def test_broken_but_complete_json_is_not_mistaken_for_incomplete(
    tmp_path: Path, content: bytes
) -> None:
    with pytest.raises(ConversionError) as caught:
        convert(write(tmp_path, content))
    assert not isinstance(caught.value, IncompleteFileError), caught.value


@pytest.mark.parametrize(
    "content", [b"", b"  \n", b'{"type": "T", "pn": "ab', b'[{"type": "T"}, ', b'{"v": 1.',
                b'{"v": nu', b'{"v": "\\u00', b'{"pn": "\xc3']
)
def test_truncated_json_is_incomplete(tmp_path: Path, content: bytes) -> None:
    with pytest.raises(IncompleteFileError):
        convert(write(tmp_path, content))


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_non_finite_numbers_are_refused(tmp_path: Path, literal: bytes) -> None:
    path = write(tmp_path, b'{"type": "T", "value": ' + literal + b"}")
    with pytest.raises(ConversionError, match=f"{literal.decode()} is not valid JSON"):
        convert(path)


def test_deeply_nested_json_is_a_conversion_error(tmp_path: Path) -> None:
    path = write(tmp_path, b'{"type": "T", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    with pytest.raises(ConversionError, match="nested too deeply"):
        convert(path)


def test_oversized_file_is_refused_without_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "huge.json"
    with open(path, "wb") as fh:  # sparse: no disk space, no time
        fh.truncate(MAX_FILE_SIZE + 1)
    with pytest.raises(ConversionError, match=r"huge.json: the file is 200 MB; WSJF files "
                                              r"over 200 MB are refused") as caught:
        convert(path)
    assert not isinstance(caught.value, IncompleteFileError)


def test_unreadable_file_is_a_conversion_error(tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match="cannot read the file"):
        convert(tmp_path / "gone.json")


# -- detect -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "low", "high"),
    [
        (b'{"type":"T","pn":"1","sn":"2","root":{"steps":[', 0.98, 1.0),
        (b'\xef\xbb\xbf  [{"type": "R", "pn": "1", "sn": "2", "uur": {}}]', 0.98, 1.0),
        (b'{"type":"T","pn":"1","sn":"2"}', 0.95, 0.97),
        (b'{"type":"R","pn":"1","sn":"2","rev":"A","subUnits":[{"idx":0', 0.98, 1.0),
        (b'{"type":"R","pn":"1","sn":"2","root":{', 0.95, 0.97),  # a test body: less sure
        (b'{"type":"T","x":{"a":1},"pn":"1","sn":"2","root":{', 0.98, 1.0),
        (b'{"type":"T","id":"x"}', 0.3, 0.5),
        (b'{"name": "config", "values": [1, 2]}', 0.01, 0.1),
        (b"[1, 2, 3]", 0.01, 0.1),
        (b"serial,value\nSN1,3.3\n", 0.0, 0.0),
        (b"", 0.0, 0.0),
        (b"\x00\xff\xfe garbage", 0.0, 0.0),
    ],
)
def test_detect_scores(head: bytes, low: float, high: float) -> None:
    assert low <= CONVERTER.detect(Path("x.json"), head) <= high


# -- fuzzing: no input may crash the service ------------------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=400))
def test_arbitrary_bytes_raise_only_conversion_errors(
    tmp_path_factory: pytest.TempPathFactory, data: bytes
) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "fuzz.json"
    path.write_bytes(data)
    assert 0.0 <= CONVERTER.detect(path, data) <= 1.0
    convert_like_the_service(CONVERTER, path, CONTEXT)


json_text = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False, allow_infinity=False)
    | st.integers() | st.text(max_size=4) | st.sampled_from(["T", "R", "P", "F"]),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.sampled_from(["type", "pn", "sn", "root", "steps", "status", "x"]),
                      children, max_size=4),
    max_leaves=8,
).map(json.dumps)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=json_text, cut=st.integers(min_value=0, max_value=200))
def test_json_like_input_and_its_prefixes_raise_only_conversion_errors(
    tmp_path_factory: pytest.TempPathFactory, text: str, cut: int
) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "fuzz.json"
    data = text.encode()
    for content in (data, data[:cut]):
        path.write_bytes(content)
        try:
            result = convert(path)
        except IncompleteFileError:
            # Only a real prefix of a document may look incomplete.
            assert content != data or not content.strip()
            continue
        except ConversionError:
            continue
        _finalize_all(result)


def _finalize_all(result: Any) -> None:
    """What the service does next must also raise nothing but ConversionError."""
    finish_like_the_service(result, CONVERTER.name, CONTEXT)

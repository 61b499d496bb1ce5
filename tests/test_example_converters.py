"""The drop-in examples in converters/, loaded through the same plugin loader users rely on."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from pywats_client.converters import Converter, ConverterContext, ConverterRegistry
from pywats_client.errors import ConversionError, IncompleteFileError, PluginError
from pywats_client.report.checks import finalize
from pywats_client.report.model import to_json_bytes
from tests.station import REPO

KIT = REPO / "converters"
EXAMPLE_CSV = KIT / "example.csv"
CONTEXT = ConverterContext(station_name="ST-01", location="Line 3", purpose="Production")
HEADER = "serial_number,part_number,revision,operator,start,step,value,low,high,unit\n"


@pytest.fixture(scope="module")
def registry() -> Iterator[ConverterRegistry]:
    registry = ConverterRegistry(plugin_dir=KIT)
    # Other examples may come and go; this file's own must load cleanly.
    assert not [e for e in registry.errors if "csv_example.py" in str(e)], registry.errors
    yield registry


@pytest.fixture()
def csv_converter(registry: ConverterRegistry) -> Converter:
    return registry.create("CsvExampleConverter")


def write_csv(tmp_path: Path, text: str, name: str = "run.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


def finalized(converter: Converter, path: Path, context: ConverterContext = CONTEXT
              ) -> list[dict[str, Any]]:
    result = converter.convert(path, context)
    reports = result if isinstance(result, list) else [result]
    return [
        finalize(report, context=context, converter_name=converter.get_info().name,
                 content_sha256="00" * 32, index=n, source=str(path))
        for n, report in enumerate(reports)
    ]


def only_imports_the_public_surface(source: str) -> bool:
    for line in source.splitlines():
        words = line.split()
        if words[:1] in (["from"], ["import"]) and words[1].startswith("pywats_client") and (
            words[1] != "pywats_client.converters" or words[0] == "import"
        ):
            return False
    return True


def test_example_is_a_plugin_with_info(registry: ConverterRegistry) -> None:
    info = {i.name: i for i in registry.info()}["CsvExampleConverter"]
    assert info.file_patterns == ("*.csv",)
    assert info.origin == str(KIT / "csv_example.py")
    assert only_imports_the_public_surface((KIT / "csv_example.py").read_text(encoding="utf-8"))


def test_example_csv_converts_to_valid_reports(csv_converter: Converter) -> None:
    first, second = finalized(csv_converter, EXAMPLE_CSV)
    assert (first["sn"], first["pn"], first["rev"]) == ("SN001", "PN-100", "A")
    assert first["result"] == "P" and first["root"]["status"] == "P"
    assert second["sn"] == "SN002"
    assert second["result"] == "F" and second["root"]["status"] == "F"
    assert first["processCode"] == 10
    assert first["uut"] == {"user": "alice"} and second["uut"] == {"user": "bob"}
    assert first["start"] == "2026-05-01T10:00:00+02:00"
    assert first["startUTC"] == "2026-05-01T08:00:00Z"
    assert first["machineName"] == "ST-01"
    assert first["id"] != second["id"]
    to_json_bytes(first)


def test_example_steps_limits_and_statuses(csv_converter: Converter) -> None:
    _, second = finalized(csv_converter, EXAMPLE_CSV)
    voltage, current, temperature = second["root"]["steps"]
    assert [s["id"] for s in (voltage, current, temperature)] == [1, 2, 3]
    assert voltage["name"] == "Voltage 3V3" and voltage["stepType"] == "ET_NLT"
    assert voltage["status"] == "F"
    assert voltage["numericMeas"] == [{
        "compOp": "GELE", "name": None, "status": "F", "unit": "V", "value": 3.45,
        "lowLimit": 3.2, "highLimit": 3.4,
    }]
    assert current["status"] == "P" and current["numericMeas"][0]["status"] == "P"
    # No limits: logged only, and it passes.
    assert temperature["numericMeas"][0]["compOp"] == "LOG"
    assert "lowLimit" not in temperature["numericMeas"][0]
    assert temperature["status"] == "P"


@pytest.mark.parametrize(
    ("value", "low", "high", "comp_op", "limits", "status"),
    [
        ("3.2", "3.2", "3.4", "GELE", {"lowLimit": 3.2, "highLimit": 3.4}, "P"),  # bounds pass
        ("3.4", "3.2", "3.4", "GELE", {"lowLimit": 3.2, "highLimit": 3.4}, "P"),
        ("3.19", "3.2", "3.4", "GELE", {"lowLimit": 3.2, "highLimit": 3.4}, "F"),
        ("5", "3", "", "GE", {"lowLimit": 3.0}, "P"),
        ("2", "3", "", "GE", {"lowLimit": 3.0}, "F"),
        # WSJF compares single-limit operators against lowLimit, even LE.
        ("2", "", "3", "LE", {"lowLimit": 3.0}, "P"),
        ("4", "", "3", "LE", {"lowLimit": 3.0}, "F"),
    ],
)
def test_limit_forms(tmp_path: Path, csv_converter: Converter, value: str, low: str,
                     high: str, comp_op: str, limits: dict[str, float], status: str) -> None:
    row = f"SN9,PN,A,op,2026-05-01T10:00:00Z,S,{value},{low},{high},V\n"
    path = write_csv(tmp_path, HEADER + row)
    [report] = finalized(csv_converter, path)
    [measurement] = report["root"]["steps"][0]["numericMeas"]
    assert measurement["compOp"] == comp_op and measurement["status"] == status
    assert {k: v for k, v in measurement.items() if k.endswith("Limit")} == limits
    assert report["result"] == status


def test_defaults_and_arguments(tmp_path: Path, registry: ConverterRegistry) -> None:
    path = write_csv(tmp_path, "serial_number;step;value\nSN5;Ping;1\n")
    converter = registry.create("CsvExampleConverter", {"delimiter": ";"})
    context = ConverterContext(
        station_name="ST", file_mtime=1_777_777_777.0,
        defaults={"part_number": "PN-D", "revision": "B", "operator": "night shift",
                  "process_code": 50, "sequence_name": "Bench"},
    )
    [report] = finalized(converter, path, context)
    assert (report["pn"], report["rev"], report["uut"]["user"]) == ("PN-D", "B", "night shift")
    assert report["processCode"] == 50
    assert report["root"]["name"] == "Bench"
    assert "start" in report  # from the file's mtime, filled by finalize
    converter = registry.create("CsvExampleConverter", {"delimiter": ";", "process_code": 60})
    assert finalized(converter, path, context)[0]["processCode"] == 60


def test_naive_start_is_local_to_the_configured_zone(tmp_path: Path,
                                                     csv_converter: Converter) -> None:
    path = write_csv(tmp_path, HEADER + "SN1,PN,A,op,2026-05-01 10:00:00,S,1,,,V\n")
    context = ConverterContext(station_name="ST", timezone=timezone(timedelta(hours=-5)))
    [report] = finalized(csv_converter, path, context)
    assert report["start"] == "2026-05-01T10:00:00-05:00"
    assert report["startUTC"] == "2026-05-01T15:00:00Z"


def test_bom_and_crlf_from_a_spreadsheet(tmp_path: Path, csv_converter: Converter) -> None:
    text = (HEADER + "SN1,PN,A,op,2026-05-01T10:00:00Z,S,1,0,2,V\n").replace("\n", "\r\n")
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    [report] = finalized(csv_converter, path)
    assert report["sn"] == "SN1" and report["result"] == "P"


def test_bad_delimiter_argument_is_refused(registry: ConverterRegistry) -> None:
    with pytest.raises(PluginError, match="delimiter must be a single character"):
        registry.create("CsvExampleConverter", {"delimiter": ";;"})


def test_detect_and_choose(registry: ConverterRegistry) -> None:
    chosen = registry.choose(EXAMPLE_CSV, EXAMPLE_CSV.read_bytes(), auto_detect=True)
    assert chosen is not None and chosen[1] == "CsvExampleConverter: detect 0.80"
    converter = registry.create("CsvExampleConverter")
    assert converter.detect(Path("x.csv"), b"date,temperature\n1,2\n") == 0.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (HEADER + "SN1,PN,A,op,,Volt,3.3,3.2,3.4,V\nSN1,PN,A,op,,Amp,abc,0,1,A\n",
         r"run\.csv: line 3, column 'value': 'abc' is not a number"),
        (HEADER + "SN1,PN,A,op,,Volt,3.3,low,3.4,V\n",
         r"line 2, column 'low': 'low' is not a number"),
        (HEADER + "SN1,PN,A,op,,Volt,,3.2,3.4,V\n", r"line 2, column 'value' is empty"),
        (HEADER + "SN1,PN,A,op,,Volt,nan,,,V\n", r"line 2, column 'value': 'nan' is not finite"),
        (HEADER + ",PN,A,op,,Volt,3.3,,,V\n", r"line 2, column 'serial_number' is empty"),
        (HEADER + "SN1,PN,A,op,,,3.3,,,V\n", r"line 2, column 'step' is empty"),
        (HEADER + "SN1,,A,op,,Volt,3.3,,,V\n",
         r"line 2, column 'part_number' is empty and no part_number default"),
        (HEADER + "SN1,PN,A,op,01/05/2026,Volt,3.3,,,V\n",
         r"line 2, column 'start': '01/05/2026' is not an ISO-8601 date-time"),
        (HEADER + "SN1,PN,A\nSN1,PN,A,op,,Volt,3.3,,,V\n",
         r"line 2 has 3 columns, the header has 10"),
        ("serial,step,value\nSN1,Volt,3.3\n",
         r"line 1 \(header\) has no column 'serial_number'; expected columns: serial_number,"),
        (HEADER, r"no measurement rows after the header"),
        (HEADER + "SN1,PN,A,op,,Volt," + "9" * 200_000 + ",,,V\n",
         r"line 2: field larger than field limit"),
    ],
)
def test_bad_rows_give_line_numbered_errors(tmp_path: Path, csv_converter: Converter,
                                            text: str, message: str) -> None:
    path = write_csv(tmp_path, text)
    with pytest.raises(ConversionError, match=message) as caught:
        csv_converter.convert(path, CONTEXT)
    assert not isinstance(caught.value, IncompleteFileError)
    assert str(caught.value).startswith(str(path))


@pytest.mark.parametrize(
    "text",
    ["", HEADER + "SN1,PN,A,op,,Volt,3.3", "serial_number,part_nu"],
)
def test_file_still_being_written_is_incomplete(tmp_path: Path, csv_converter: Converter,
                                               text: str) -> None:
    with pytest.raises(IncompleteFileError):
        csv_converter.convert(write_csv(tmp_path, text), CONTEXT)


def test_bad_process_code(tmp_path: Path, csv_converter: Converter) -> None:
    path = write_csv(tmp_path, "serial_number,part_number,step,value\nSN1,PN,S,1\n")
    context = ConverterContext(defaults={"process_code": "PCBA"})
    with pytest.raises(ConversionError, match="process_code 'PCBA' is not a number"):
        csv_converter.convert(path, context)

"""Converter authoring as documented: the get_info()/convert(file_path) style, the
can_convert()/convert(file_path) style, report objects instead of dicts, and the report
builders (UUTReport, UURReport) — through the plugin loader, the pipeline and the service."""

from __future__ import annotations

import base64
import inspect
import json
import os
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from pywats_client.config.settings import Settings
from pywats_client.converters import (
    BaseConverter,
    ConversionError,
    Converter,
    ConverterContext,
    ConverterInfo,
    ConverterRegistry,
    UURReport,
    UUTReport,
)
from pywats_client.converters import base as converter_base
from pywats_client.errors import ReportValidationError
from pywats_client.http.receiver import Receiver
from pywats_client.report import UURReport as UURFromReport
from pywats_client.report import UUTReport as UUTFromReport
from pywats_client.report.builder import apply_context, numeric_step
from pywats_client.report.checks import validate
from pywats_client.service.pipeline import convert_file
from tests.station import Station, wait_until

KIT = Path(__file__).resolve().parents[1] / "converters"
CONTEXT = ConverterContext(station_name="ST-01", location="Lab", purpose="Test",
                           defaults={"process_code": 50}, processes={"SW Debug": 10})
START = "2026-05-01T10:00:00+02:00"


def convert(converter: Converter, path: Path, context: ConverterContext = CONTEXT
            ) -> list[dict[str, Any]]:
    return convert_file(path, converter, context).reports


# -- the two documented examples in converters/ ----------------------------------------------


@pytest.fixture(scope="module")
def kit() -> ConverterRegistry:
    registry = ConverterRegistry(plugin_dir=KIT)
    mine = [e for e in registry.errors if "style_" in str(e)]
    assert not mine, mine
    return registry


def test_style_a_example_loads_by_its_info_and_converts_its_fixture(
        kit: ConverterRegistry) -> None:
    info = {i.name: i for i in kit.info()}["MyConverter"]
    assert (info.file_patterns, info.version) == (("*.myext",), "1.0.0")
    assert info.origin == str(KIT / "style_a_example.py")
    [report] = convert(kit.create("MyConverter"), KIT / "example.myext")
    assert (report["pn"], report["sn"], report["rev"], report["result"]) == (
        "PN-100", "SN-A-0001", "A", "P")
    # "operation = SW Debug": looked up in the server's process list.
    assert (report["processCode"], report["processName"]) == (10, "SW Debug")
    assert report["machineName"] == "ST-01" and report["start"] == START


def test_style_b_example_loads_by_its_attributes_and_converts_its_fixture(
        kit: ConverterRegistry) -> None:
    info = {i.name: i for i in kit.info()}["My Test System Converter"]
    assert info.description == "Converts .test files to WATS format"
    [report] = convert(kit.create("My Test System Converter"), KIT / "example.test")
    assert (report["pn"], report["sn"], report["rev"], report["result"]) == (
        "PN-200", "SN-B-0001", "B", "P")
    assert report["processCode"] == 50  # not in the file: the configured default
    supply, ripple, led = report["root"]["steps"]
    assert supply["numericMeas"][0] == {"compOp": "GELE", "name": None, "status": "P",
                                        "unit": "V", "value": 5.02, "lowLimit": 4.75,
                                        "highLimit": 5.25}
    # A high limit alone: WSJF's LE compares with lowLimit.
    assert ripple["numericMeas"][0]["compOp"] == "LE"
    assert ripple["numericMeas"][0]["lowLimit"] == 0.05
    assert led["booleanMeas"] == [{"name": None, "status": "P"}]
    assert [s["id"] for s in (supply, ripple, led)] == [1, 2, 3]


def test_the_examples_are_chosen_for_their_files(kit: ConverterRegistry) -> None:
    test_file, myext = KIT / "example.test", KIT / "example.myext"
    assert kit.choose(test_file, test_file.read_bytes(), auto_detect=True)[1] == (
        "My Test System Converter: detect 0.70, can_convert() accepts it")
    assert kit.choose(myext, myext.read_bytes(), auto_detect=False)[1].startswith(
        "MyConverter: first enabled converter whose file patterns match")
    # A style B converter judges file names by can_convert(): it does not claim *.myext.
    assert not kit.create("My Test System Converter").matches(myext)


def test_example_errors_name_the_file_and_line(tmp_path: Path, kit: ConverterRegistry) -> None:
    bad = tmp_path / "bad.test"
    bad.write_text("PART: PN\nSERIAL: SN\nSTART: 2026-05-01T10:00:00Z\nRESULT: PASS\n"
                   "STEP: Volt | abc | 1 | 2 | V\n", encoding="utf-8")
    with pytest.raises(ConversionError, match=r"bad.test: line 5: value 'abc' is not a number"):
        convert(kit.create("My Test System Converter"), bad)
    bad = tmp_path / "bad.myext"
    bad.write_text("part_number = PN\nno equals sign\n", encoding="utf-8")
    with pytest.raises(ConversionError, match=r"bad.myext: line 2: expected 'key = value'"):
        convert(kit.create("MyConverter"), bad)


# -- the styles, as the framework supports them ------------------------------------------------


def test_a_one_argument_convert_is_adapted_once_when_the_class_is_made(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class PathOnly(BaseConverter):
        name = "PathOnly"

        def convert(self, file_path):  # type: ignore[no-untyped-def,override]
            return {"type": "T", "pn": "PN", "sn": Path(file_path).stem, "rev": "A",
                    "processCode": 10, "result": "P", "start": START,
                    "root": {"group": "M", "stepType": "SequenceCall", "name": "Main",
                             "status": "P", "seqCall": {"path": "", "name": "Main",
                                                        "version": ""}}}

    class WithContext(BaseConverter):
        name = "WithContext"

        def convert(self, path: Path, context: ConverterContext) -> dict[str, Any]:
            return {"station": context.station_name}

    source = tmp_path / "unit-7.txt"
    source.write_text("x", encoding="utf-8")

    def no_more_inspection(*args: object, **kwargs: object) -> None:
        raise AssertionError("the signature is inspected again")

    monkeypatch.setattr(inspect, "signature", no_more_inspection)
    [report] = convert(PathOnly(), source)
    assert report["sn"] == "unit-7"
    assert PathOnly().convert(source)["sn"] == "unit-7"  # still callable the documented way
    assert WithContext().convert(source, CONTEXT) == {"station": "ST-01"}
    assert "convert_with_context" not in repr(vars(WithContext)["convert"])


def test_can_convert_is_the_detection_of_a_class_without_detect(tmp_path: Path) -> None:
    class ByName(Converter):
        name = "ByName"

        def can_convert(self, file_path: Path) -> bool:
            return file_path.suffix == ".dat"

    class ByNameWithPatterns(ByName):
        name = "ByNameWithPatterns"
        file_patterns = ("*.log",)

    class OwnDetect(Converter):
        name = "OwnDetect"

        def can_convert(self, file_path: Path) -> bool:
            return True

        def detect(self, path: Path, head: bytes) -> float:
            return 0.95 if head.startswith(b"OWN") else 0.0

    converter = ByName()
    assert converter.detect(Path("a.dat"), b"") == converter_base.CAN_CONVERT_SCORE == 0.7
    assert converter.detect(Path("a.txt"), b"") == 0.0
    assert converter.detect_with_reason(Path("a.dat"), b"") == (0.7, "can_convert() accepts it")
    assert converter.matches(Path("a.dat")) and not converter.matches(Path("a.txt"))
    # With file patterns of its own, the patterns judge names; can_convert() still detects.
    patterned = ByNameWithPatterns()
    assert patterned.matches(Path("a.log")) and not patterned.matches(Path("a.dat"))
    assert patterned.detect(Path("a.dat"), b"") == 0.7
    own = OwnDetect()
    assert own.detect(Path("a.dat"), b"OWN") == 0.95 and own.detect(Path("a"), b"x") == 0.0


def test_a_converter_may_return_report_objects_dicts_or_a_mix(tmp_path: Path) -> None:
    class Mixed(Converter):
        name = "Mixed"

        def convert(self, path: Path, context: ConverterContext) -> Any:
            built = UUTReport(pn="PN", sn="SN-1", rev="A", operation_code="SW Debug",
                              start=START)
            plain = built.to_wsjf() | {"sn": "SN-2", "processCode": 10}
            return [built, plain]

    class Wrong(Converter):
        name = "Wrong"

        def convert(self, path: Path, context: ConverterContext) -> Any:
            return "not a report"

    source = tmp_path / "f.txt"
    source.write_text("x", encoding="utf-8")
    first, second = convert(Mixed(), source)
    assert (first["sn"], first["processCode"], second["sn"]) == ("SN-1", 10, "SN-2")
    assert first["id"] != second["id"]
    with pytest.raises(ConversionError, match=r"f.txt: converter Wrong returned str, not a "
                                              r"report \(return a WSJF dict, a UUTReport"):
        convert(Wrong(), source)


# -- the report builders -----------------------------------------------------------------------


def test_report_builders_are_importable_where_the_documents_say() -> None:
    assert UUTFromReport is UUTReport and UURFromReport is UURReport


def test_both_spellings_of_every_documented_keyword_give_the_same_report() -> None:
    long = UUTReport(part_number="PN", serial_number="SN", revision="A", operation_code=10,
                     result="P", start_date_time=START)
    short = UUTReport(pn="PN", sn="SN", rev="A", process_code=10, pass_fail=True, start=START)
    assert long.to_wsjf() == short.to_wsjf()
    assert long.to_dict() == long.to_wsjf()
    assert UUTReport(pn="P", sn="S", pass_fail=False).to_wsjf()["result"] == "F"
    assert UUTReport(pn="P", sn="S", result="Passed").to_wsjf()["result"] == "P"
    with pytest.raises(ReportValidationError, match="part_number='A' and pn='B' are two "
                                                    "spellings"):
        UUTReport(part_number="A", pn="B")
    with pytest.raises(ReportValidationError, match="result must be True/False or one of P, F"):
        UUTReport(result="maybe")
    with pytest.raises(ReportValidationError, match="start_date_time: '1 May' is not an ISO"):
        UUTReport(start="1 May")


def test_start_times_keep_or_gain_their_offset() -> None:
    aware = datetime(2026, 5, 1, 10, 0, tzinfo=timezone(timedelta(hours=2)))
    assert UUTReport(start_date_time=aware).start == START
    naive = datetime(2026, 5, 1, 10, 0)
    assert UUTReport(start=naive).start == naive.astimezone().isoformat(timespec="seconds")


def test_steps_limits_statuses_and_roll_up() -> None:
    report = UUTReport(pn="PN", sn="SN", rev="A", operation_code=10, start=START,
                       operator="alice", sequence_name="Board test")
    report.add_numeric_step("Both", 3.3, low=3.0, high=3.6, unit="V")
    report.add_numeric_step("Low only", 5, low=10)
    report.add_numeric_step("Logged", 1.5)
    power = report.add_sequence("Power")
    power.add_pass_fail_step("LED", True)
    power.add_string_step("Firmware", "1.2.3", limit="1.2.4")
    report.add_step(numeric_step("Explicit", 4.0, low=1.0, high=2.0, comp_op="LTGT"))
    wsjf = report.to_wsjf()
    both, low_only, logged, power_step, explicit = wsjf["root"]["steps"]
    assert both["numericMeas"][0]["compOp"] == "GELE" and both["status"] == "P"
    assert low_only["numericMeas"][0] == {"compOp": "GE", "name": None, "status": "F",
                                          "unit": "", "value": 5, "lowLimit": 10}
    assert logged["numericMeas"][0]["compOp"] == "LOG" and logged["status"] == "P"
    led, firmware = power_step["steps"]
    assert led["booleanMeas"] == [{"name": None, "status": "P"}]
    assert firmware["stringMeas"] == [{"compOp": "CASESENSIT", "name": None, "status": "F",
                                       "value": "1.2.3", "limit": "1.2.4"}]
    assert power_step["status"] == "F"  # rolled up from the failed firmware check
    assert explicit["numericMeas"][0]["status"] == "P"  # outside 1..2 passes LTGT
    assert wsjf["root"]["status"] == "F" and wsjf["result"] == "F"
    assert wsjf["root"]["name"] == "Board test" and wsjf["uut"] == {"user": "alice"}
    assert [s["id"] for s in (both, low_only, logged, power_step, led, firmware, explicit)] == [
        1, 2, 3, 4, 5, 6, 7]
    report.validate()
    report.steps = [numeric_step("Only", 1.0)]  # the list itself may be replaced, too
    assert [s["name"] for s in report.to_wsjf()["root"]["steps"]] == ["Only"]


def test_chart_attachment_misc_info_and_sub_units(tmp_path: Path) -> None:
    log_file = tmp_path / "trace.csv"
    log_file.write_bytes(b"t,v\n0,1\n")
    report = UUTReport(pn="PN", sn="SN", rev="A", operation_code=10, start=START)
    report.add_chart_step("Sweep", [("gain", [0, 1, 2], [0.5, 1.25, 2.0]),
                                    {"name": "phase", "xdata": "0;1;2", "ydata": "0;-1;-2"}],
                          chart_type="linelogx", x_unit="Hz", y_unit="dB")
    report.add_attachment_step("Trace", log_file)
    report.add_attachment_step("Blob", b"\x00\x01", file_name="blob.bin")
    report.add_misc_info("Fixture", "F-7")
    report.add_misc_info("Slot", numeric=3)
    report.add_sub_unit("PSU", "PN-PSU", "SN-PSU", "B")
    wsjf = report.to_wsjf()
    chart, trace, blob = wsjf["root"]["steps"]
    assert chart["chart"]["chartType"] == "LineLogX"
    assert chart["chart"]["series"][0] == {"dataType": "XYG", "name": "gain", "xdata": "0;1;2",
                                           "ydata": "0.5;1.25;2.0"}
    assert trace["attachment"] == {"name": "trace.csv", "contentType": "text/csv",
                                   "data": base64.b64encode(b"t,v\n0,1\n").decode()}
    assert blob["attachment"]["contentType"] == "application/octet-stream"
    assert wsjf["miscInfos"] == [{"description": "Fixture", "text": "F-7"},
                                 {"description": "Slot", "numeric": 3}]
    assert wsjf["subUnits"] == [{"partType": "PSU", "pn": "PN-PSU", "rev": "B", "sn": "SN-PSU"}]
    assert wsjf["result"] == "P"
    report.validate()


def test_builder_mistakes_are_named() -> None:
    report = UUTReport(pn="PN", sn="SN", rev="A", operation_code=10, start=START)
    with pytest.raises(ReportValidationError, match="step 'V': value is nan"):
        report.add_numeric_step("V", float("nan"))
    with pytest.raises(ReportValidationError, match="comp_op GELE needs both low and high"):
        report.add_numeric_step("V", 1, low=0, comp_op="gele")
    with pytest.raises(ReportValidationError, match="comp_op 'BETWEEN' is not a numeric"):
        report.add_numeric_step("V", 1, comp_op="BETWEEN")
    with pytest.raises(ReportValidationError, match="chart_type 'Bar' is not one of"):
        report.add_chart_step("C", [], chart_type="Bar")
    with pytest.raises(ReportValidationError, match="cannot read the attachment"):
        report.add_attachment_step("A", Path("/nonexistent/file.bin"))
    report.add_misc_info("x" * 101, "too long a description")
    with pytest.raises(ReportValidationError, match=r"miscInfos\[0\].description' is 101"):
        report.validate()


def test_station_fields_come_from_the_settings() -> None:
    report = UUTReport(pn="PN", sn="SN", station_name="OWN")
    report.fill_station(Settings(station_name="ST", station_location="Line 2",
                                 station_purpose="Debug"))
    wsjf = report.to_wsjf()
    assert (wsjf["machineName"], wsjf["location"], wsjf["purpose"]) == ("OWN", "Line 2", "Debug")


def test_repair_report() -> None:
    repair = UURReport(pn="PN-9", sn="SN-9", rev="C", operation_code=500,
                       test_operation_code="SW Debug", operator="tech", start=START,
                       ref_uut="b6c95876-cb19-4c43-a010-7e51a86b0886", comment="reflowed")
    chip = repair.add_sub_unit("IC", "PN-IC", "SN-IC-NEW", "1")
    repair.add_failure("Solder Process", "Appearance", component_ref="R55", ref_step_id=16,
                       attachment=b"\x89PNG", attachment_name="r55.png")
    repair.add_failure("Component", "Dead", sub_unit=chip)
    repair.add_attachment(b"notes", name="notes.txt")
    repair.add_misc_info("Station", "Bench 1")
    wsjf = repair.to_wsjf()
    assert (wsjf["type"], wsjf["result"], wsjf["processCode"]) == ("R", "P", 500)
    assert wsjf["uur"] == {"processName": "SW Debug", "user": "tech",
                           "refUUT": "b6c95876-cb19-4c43-a010-7e51a86b0886",
                           "comment": "reflowed"}
    main, part = wsjf["subUnits"]
    assert (main["idx"], main["sn"], main["partType"]) == (0, "SN-9", "Main")
    assert main["failures"][0]["attachments"][0]["contentType"] == "image/png"
    assert (part["idx"], part["parentIdx"], part["failures"][0]["code"]) == (1, 0, "Dead")
    assert wsjf["binaryData"][0]["name"] == "notes.txt"
    apply_context(wsjf, CONTEXT)  # the test process name becomes its code
    assert wsjf["uur"]["processCode"] == 10
    validate(wsjf | {"id": "b6c95876-cb19-4c43-a010-7e51a86b0887", "machineName": "ST",
                     "location": "", "purpose": ""})
    with pytest.raises(ReportValidationError, match="sub_unit=5 is not the idx"):
        repair.add_failure("C", "D", sub_unit=5)
    with pytest.raises(ReportValidationError, match="replaced=3 is not the idx"):
        repair.add_sub_unit("IC", "PN", "SN", replaced=3)


@pytest.mark.parametrize(("report", "context", "expected"), [
    ({"type": "T", "pn": "P", "processName": "SW Debug"}, CONTEXT,
     {"pn": "P", "processCode": 10, "processName": "SW Debug", "rev": ""}),
    ({"type": "T", "processCode": 1}, ConverterContext(defaults={
        "part_number": "PN-D", "revision": "R", "operator": "op"}),
     {"processCode": 1, "pn": "PN-D", "rev": "R", "uut": {"user": "op"}}),
    # No revision in the report nor the defaults: "", as the built-in converters send.
    ({"type": "T", "pn": "P", "processCode": 1}, ConverterContext(),
     {"pn": "P", "processCode": 1, "rev": ""}),
    ({"type": "T", "pn": "P", "rev": "C", "processCode": 1},
     ConverterContext(defaults={"revision": "R"}), {"pn": "P", "rev": "C", "processCode": 1}),
    # A repair: the test process default is for the tested process, never the repair one.
    ({"type": "R", "pn": "P", "uur": {}},
     ConverterContext(defaults={"process_code": 50, "operator": "op"}),
     {"pn": "P", "rev": "", "uur": {"processCode": 50, "user": "op"}}),
])
def test_apply_context_fills_what_a_built_report_lacks(
        report: dict[str, Any], context: ConverterContext, expected: dict[str, Any]) -> None:
    apply_context(report, context)
    assert {k: v for k, v in report.items() if k != "type"} == expected


@pytest.mark.parametrize(("report", "message"), [
    ({"type": "T", "processCode": 10}, r"no part number \(pn\): .* set "
                                       r"converters\.defaults\.part_number"),
    ({"type": "T", "pn": "P"}, r"no process code \(processCode\): .* set "
                               r"converters\.defaults\.process_code \(pywats-client config set"),
    ({"type": "T"}, r"no part number .*; and no process code"),
])
def test_apply_context_names_the_setting_a_missing_value_needs(
        report: dict[str, Any], message: str) -> None:
    with pytest.raises(ReportValidationError, match=message):
        apply_context(report, ConverterContext(defaults={"revision": "A"}))


@pytest.mark.parametrize(("context", "message"), [
    (CONTEXT, r"processName 'Nope' is not a process the server knows \(known: 'SW Debug' "
              r"\(10\)\)"),
    (ConverterContext(), "processName 'Nope' cannot be looked up"),
    # No list known yet: never the default code in its place; the file waits for the list.
    (ConverterContext(defaults={"process_code": 50}), "processName 'Nope' cannot be looked "
                                                      "up yet"),
])
def test_apply_context_refuses_a_process_name_it_cannot_resolve(
        context: ConverterContext, message: str) -> None:
    with pytest.raises(ReportValidationError, match=message):
        apply_context({"type": "T", "processName": "Nope"}, context)


def test_a_get_info_only_class_gets_its_info_as_documented() -> None:
    class InfoOnly(BaseConverter):
        @classmethod
        def get_info(cls) -> ConverterInfo:
            return ConverterInfo(name="InfoOnly", description="d", file_patterns=["*.x"],
                                 version="2")

        def convert(self, file_path):  # type: ignore[no-untyped-def,override]
            return UUTReport(pn="P", sn="S", operation_code=10, start=START)

    converter = InfoOnly()
    assert converter.matches(Path("a.X")) and not converter.matches(Path("a.y"))
    assert converter.get_info().file_patterns == ("*.x",)


# -- end to end: plugins in a drop-in folder, the real service, the loopback receiver -----------


@pytest.mark.slow
def test_both_styles_run_through_the_service_to_the_receiver(
        station: Station, receiver: Receiver) -> None:
    plugins = station.instance / "converters"
    plugins.mkdir(mode=0o700)
    for name in ("style_a_example.py", "style_b_example.py"):
        shutil.copy(KIT / name, plugins / name)
        (plugins / name).chmod(0o600)
    by_name = station.root / "by-name"  # style A: bound to its folder by name
    by_name.mkdir()
    station.config["queue"]["watch_folders"] = [
        {"path": str(by_name), "converter": "MyConverter"},
        str(station.watch),  # style B: chosen by its can_convert()
    ]
    station.config["converters"] = {"defaults": {"process_code": 50}}
    station.write_config()
    station.start()
    staging = station.root / "staging.myext"
    shutil.copy(KIT / "example.myext", staging)
    os.replace(staging, by_name / "unit-a.myext")
    station.drop("unit-b.test", (KIT / "example.test").read_bytes())
    assert receiver.wait_for_reports(2, timeout=60), station.output()
    stored = [json.loads(p.read_text()) for p in receiver.store.glob("*.json")]
    by_sn = {report["sn"]: report for report in stored}
    assert by_sn["SN-A-0001"]["processCode"] == 10  # "SW Debug", from the server
    assert by_sn["SN-B-0001"]["processCode"] == 50  # the configured default
    assert len(by_sn["SN-B-0001"]["root"]["steps"]) == 3
    assert all(r["machineName"] == "station-e2e" for r in stored)
    wait_until(lambda: station.done_files() == ["unit-b.test"], 10, "unit-b in done/")
    wait_until(lambda: (by_name / "done" / "unit-a.myext").exists(), 10,
               "unit-a in done/")
    assert station.stop() == 0

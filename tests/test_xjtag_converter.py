"""XJTAGConverter on Virinco's XJTAG samples, on a small fixture, and on hostile archives."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pywats_client.converters import ConverterContext, ConverterRegistry, xjtag
from pywats_client.converters.xjtag import XJTAGConverter
from pywats_client.errors import ConversionError, IncompleteFileError
from pywats_client.report.model import iter_steps
from pywats_client.service.pipeline import convert_file
from tests.conftest import SAMPLES, needs_samples
from tests.conftest import sample as any_sample
from tests.converting import FUZZ_SETTINGS, refused_or_converted, sample_files

XJTAG_SAMPLES = SAMPLES / "xjtag"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "xjtag"
STOPPED_RUN = FIXTURES / "stopped_run.xml"
CONTEXT = ConverterContext(station_name="JTAG-01", location="Line 1", purpose="Production",
                           timezone=ZoneInfo("Europe/Oslo"), file_mtime=1_600_000_000.0)
OPTIONS = {"part_number": "PCB-7", "revision": "C", "process_code": 20}
INFO = ('<?xml version="1.0" encoding="utf-8"?>\n<LogFileInfo>\n  <Version>1</Version>\n'
        "  <TestRunCount>{count}</TestRunCount>\n  <ProjectPath>C:\\Projects\\MC4\\mc4.xjp"
        "</ProjectPath>\n  <ExportedFromOutput>{exported}</ExportedFromOutput>\n"
        "</LogFileInfo>\n")


def sample(name: str) -> Path:
    return any_sample("xjtag", name)


def convert(path: Path, context: ConverterContext = CONTEXT, **options: Any
            ) -> list[dict[str, Any]]:
    """Convert as the service does (finalize + validate); always a list."""
    return convert_file(path, XJTAGConverter(**{**OPTIONS, **options}), context).reports


def functions(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [function for group in report["root"]["steps"] for function in group["steps"]]


def step(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for _, s in iter_steps(report["root"]) if s["name"] == name)


def misc(report: dict[str, Any]) -> dict[str, str]:
    return {item["description"]: item["text"] for item in report["miscInfos"]}


def archive(tmp_path: Path, members: dict[str, bytes], name: str = "log.xjlog") -> Path:
    path = tmp_path / name
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        for member, data in members.items():
            out.writestr(member, data)
    return path


# -- the real samples ---------------------------------------------------------------------------

# file -> (serial, result, groups, functions, skipped, user, startUTC, XJLink name)
GOLDEN = {
    "1234_14_25_32_10.08.2018_Pass.xjlog": [
        ("1234", "P", 12, 19, 0, "ADMINISTRATOR", "2018-08-10T12:25:32.996Z", None)],
    "55804022_XJT_2019-06-20_12-55-57_lumi_Pass.xjlog": [
        ("55804022", "P", 18, 35, 0, "lumi", "2019-06-20T11:55:57.446Z", None)],
    "55804024_XJT_2019-06-20_13-41-02_lumi_Pass.xjlog": [
        ("55804024", "P", 18, 35, 0, "lumi", "2019-06-20T12:41:02.526Z", None)],
    "567567_14_29_24_17_06_2020_Pass.xjlog": [
        ("567567", "P", 13, 24, 2, "ADMINISTRATOR", "2020-06-17T13:29:24.258Z", None)],
    "567567_14_29_24_17_06_2020_Pass.xml": [
        ("567567", "P", 13, 24, 2, "ADMINISTRATOR", "2020-06-17T13:29:24.258Z", None)],
    "Demonstration hardware--28_10_2019.xjlog": [
        ("10001", "F", 2, 2, 0, "a", "2019-10-28T13:52:10.859Z", "OriginalXJLink"),
        ("1002", "P", 10, 14, 0, "a", "2019-10-28T13:52:10.861Z", "XJLink2"),
        ("10004", "F", 10, 14, 0, "a", "2019-10-28T13:52:58.897Z", "OriginalXJLink"),
        ("10003", "F", 10, 14, 0, "a", "2019-10-28T13:52:58.898Z", "XJLink2"),
        ("10006", "F", 10, 14, 0, "a", "2019-10-28T13:53:53.842Z", "OriginalXJLink"),
        ("10005", "P", 10, 14, 0, "a", "2019-10-28T13:53:53.842Z", "XJLink2"),
    ],
}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_sample_runs(name: str) -> None:
    reports = convert(sample(name))
    facts = [
        (r["sn"], r["result"], len(r["root"]["steps"]), len(functions(r)),
         sum(f["status"] == "S" for f in functions(r)), r["uut"]["user"], r["startUTC"],
         r["machineName"] if r["machineName"] != "JTAG-01" else None)
        for r in reports
    ]
    assert facts == GOLDEN[name]
    for report in reports:
        assert (report["pn"], report["rev"], report["processCode"]) == ("PCB-7", "C", 20)
        assert report["root"]["status"] == report["result"]
        assert all(f["stepType"] == "ET_PFT" for f in functions(report))
        assert all(g["stepType"] == "SequenceCall" for g in report["root"]["steps"])
    assert len({report["id"] for report in reports}) == len(reports)


def test_sample_with_six_runs_failures_and_start_times() -> None:
    reports = convert(sample("Demonstration hardware--28_10_2019.xjlog"))
    failed = [[f["name"] for f in functions(r) if f["status"] == "F"] for r in reports]
    assert failed == [["CheckChain"], [], ["CONNTEST", "D2.Test"], ["D4.Test"], ["CONNTEST"], []]
    # Local time in the folder's zone (Oslo is back on CET after 27 October 2019).
    assert reports[0]["start"] == "2019-10-28T14:52:10.859+01:00"
    assert misc(reports[2]) == {"XJLink serial": "2179", "Project": "demo.xjp", "Run": "3 of 6"}
    assert reports[0]["uut"]["comment"] == "Demonstration hardware"
    conntest = step(reports[2], "CONNTEST")
    assert "Error: Short found between nets: IO13, IO14." in conntest["reportText"]
    assert conntest["reportText"].endswith("CONNTEST failed")
    assert conntest["booleanMeas"] == [{"name": None, "status": "F"}]
    assert step(reports[2], "Connection Test")["status"] == "F"
    assert step(reports[4], "CONNTEST")["reportText"].count("Error: Unexpected value") == 2
    assert step(reports[0], "CheckChain")["reportText"].splitlines()[1] == (
        "CHECKCHAIN: Failed to count the number of devices - check that the XJLink is "
        "correctly connected.")


def test_sample_with_times_skips_and_version() -> None:
    (report,) = convert(sample("567567_14_29_24_17_06_2020_Pass.xjlog"))
    assert report["uut"] == {"user": "ADMINISTRATOR", "comment": "Demonstration hardware",
                             "execTime": 47.96}
    assert misc(report) == {"XJLink serial": "10199", "XJTAG version": "3.10.0.0",
                            "Project": "Demo.xjp"}
    root = report["root"]
    assert (root["name"], root["totTime"]) == ("Demonstration hardware", 47.96)
    assert root["seqCall"]["path"] == (
        "C:\\Users\\Public\\Documents\\XJTAG 3.10\\Demo Board v3\\Board Test\\Demo.xjp")
    first = step(report, "NEW_SERIAL_NUMBER")
    assert first["totTime"] == 4.231
    assert first["reportText"] == (
        "Checking voltage on CN1 pin 1 using XJLink2 voltage measurement.\n"
        "Voltage read: 3271 mV - within tolerance.\n"
        "NEW_SERIAL_NUMBER passed\n"
        "Serial number set to 567567 by the test system")
    # Inline device links are part of the text; escaped HTML in the CDATA is unescaped.
    assert step(report, "IC5.Test")["reportText"].splitlines()[:3] == [
        "Testing SRAM Device IC5...", "Calling MemTest...",
        "Starting Optimised Address Bus & Data Bus Test.."]
    skipped = step(report, "IC3.TestNonDestructive")
    assert (skipped["status"], skipped["totTime"]) == ("S", 0.0)
    assert "booleanMeas" not in skipped
    assert step(report, "Flash Tests")["totTime"] == 0.495  # 89 + 0 + 406 ms


def test_sample_warnings_outside_groups_go_to_the_root() -> None:
    (report,) = convert(sample("1234_14_25_32_10.08.2018_Pass.xjlog"))
    assert report["root"]["reportText"].splitlines() == [
        "IC3.TestDestructive skipped", "EraseIC3 skipped", "ProgramIC3 skipped",
        "VerifyIC3 (Post programming) skipped"]
    assert "execTime" not in report["uut"]  # XJTAG 3.7 writes no run time


def test_bare_run_xml_matches_the_run_in_the_archive() -> None:
    (zipped,) = convert(sample("567567_14_29_24_17_06_2020_Pass.xjlog"))
    (bare,) = convert(sample("567567_14_29_24_17_06_2020_Pass.xml"))
    # The .xml is a pretty-printed copy of "Run 1.xml": same steps, same texts. Only what
    # Info.xml adds (the project path) differs.
    assert bare["root"]["seqCall"]["path"] is None
    bare["root"]["seqCall"]["path"] = zipped["root"]["seqCall"]["path"]
    assert bare["root"] == zipped["root"]
    assert misc(zipped) == {**misc(bare), "Project": "Demo.xjp"}


def test_sample_locations_name_run_and_element() -> None:
    path = sample("Demonstration hardware--28_10_2019.xjlog")
    reports = XJTAGConverter(**OPTIONS).convert(path, CONTEXT)
    assert isinstance(reports, list)
    place = reports[0].locate("root.steps[1].steps[0].booleanMeas[0]")
    assert place == 'Run 1.xml <testfunction name="CheckChain"> at line 14'


def test_samples_convert_deterministically() -> None:
    path = sample("Demonstration hardware--28_10_2019.xjlog")
    assert convert(path) == convert(path)


# -- detection ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_sample_is_detected(name: str) -> None:
    path = sample(name)
    head = path.read_bytes()[:65536]
    score, why = XJTAGConverter().detect_with_reason(path, head)
    assert score >= (0.99 if name.endswith(".xjlog") else 0.95), why
    chosen = ConverterRegistry().choose(path, head, auto_detect=True)
    assert chosen is not None and chosen[1].startswith("XJTAGConverter"), chosen


@needs_samples
def test_other_formats_are_not_detected() -> None:
    converter = XJTAGConverter()
    others = sample_files(besides="xjtag")
    assert any(p.suffix == ".xlsx" for p in others)  # a ZIP of another kind is among them
    for path in others:
        assert converter.detect(path, path.read_bytes()[:65536]) == 0.0, path


def test_zip_of_another_kind_is_not_detected(tmp_path: Path) -> None:
    other = archive(tmp_path, {"readme.txt": b"hello", "data.csv": b"1,2"}, "other.zip")
    assert XJTAGConverter().detect(other, other.read_bytes()) == 0.0
    # Info.xml and the runs further back in the archive: found in the central directory.
    log = archive(tmp_path, {"12164_636695079402994186": b"ConnTest", "Info.xml": b"<x/>",
                             "Run 1.xml": b"<testrun/>"}, "renamed.zip")
    assert XJTAGConverter().detect(log, log.read_bytes()[:100]) == 0.95


def test_registry_knows_the_converter() -> None:
    converter = ConverterRegistry().create("XJTAGConverter", {"part_number": "X"})
    assert isinstance(converter, XJTAGConverter)
    assert converter.matches(Path("board_Pass.XJLOG"))


# -- the fixture: a stopped run in windows-1252 ---------------------------------------------------


def test_stopped_run_fixture() -> None:
    (report,) = convert(STOPPED_RUN)
    assert (report["sn"], report["result"], report["machineName"]) == (
        "MC4-0042", "F", "Bench 3 XJLink")
    assert report["start"] == "2021-02-03T08:08:09.500+01:00"
    assert report["uut"] == {"user": "Jürgen",
                             "comment": "Motor controller MC-4\nFixture bent, re-seated twice",
                             "execTime": 2.62}
    assert report["root"]["reportText"] == "FLASH_PROGRAM skipped"
    stopped = step(report, "U3.Test")
    assert stopped["status"] == "T" and "booleanMeas" not in stopped
    assert stopped["reportText"] == (
        "Testing SDRAM U3... stopped by the operator (Größe & Tempo)\n"
        "no result recorded (the run was stopped here)")
    assert step(report, "Memory")["status"] == "T"
    conntest = step(report, "CONNTEST")
    assert conntest["reportText"].splitlines() == [
        "Performing standard Connection Test...", "Error: Open circuit on net TDO_R.",
        "Error: Open circuit on net TDO_R", "Error: Expected 1, read 0 on U7.A3", "1 error",
        "CONNTEST failed"]
    assert (conntest["totTime"], step(report, "Connection Test")["totTime"]) == (2.5, 2.5)


def test_station_name_option_when_the_xjlink_has_no_name() -> None:
    (report,) = convert(sample("1234_14_25_32_10.08.2018_Pass.xjlog"), station_name="Bench 9",
                        sequence_name="Board test", sequence_version="2")
    assert report["machineName"] == "Bench 9"
    assert (report["root"]["name"], report["root"]["seqCall"]["version"]) == ("Board test", "2")


def test_part_number_from_the_project_unless_configured(tmp_path: Path) -> None:
    assert convert(STOPPED_RUN, part_number="")[0]["pn"] == "Motor controller MC-4"
    nameless = STOPPED_RUN.read_bytes().replace(
        b"<project-description>Motor controller MC-4</project-description>", b"")
    # Without a description, the project file's name (from Info.xml).
    path = archive(tmp_path, {"Run 1.xml": nameless,
                              "Info.xml": INFO.format(count=1, exported="false").encode()})
    assert convert(path, part_number="")[0]["pn"] == "mc4"
    bare = tmp_path / "run.xml"
    bare.write_bytes(nameless)
    with pytest.raises(ConversionError, match=r"no project description .* set part_number"):
        convert(bare, part_number="")


def test_process_name_known_to_the_server_gives_the_code() -> None:
    context = ConverterContext(station_name="S", processes={"Boundary scan": 31})
    (report,) = convert(STOPPED_RUN, context, process_code="", process_name="Boundary scan")
    assert (report["processCode"], report["processName"]) == (31, "Boundary scan")


@pytest.mark.parametrize(("option", "value", "message"), [
    ("process_code", "", "set process_code"),
    ("process_code", "99999", "out of range"),
])
def test_missing_or_bad_options_say_what_to_set(option: str, value: str, message: str) -> None:
    with pytest.raises(ConversionError, match=message):
        convert(STOPPED_RUN, **{option: value})


def test_run_without_serial_or_with_unknown_result(tmp_path: Path) -> None:
    text = STOPPED_RUN.read_bytes()
    path = tmp_path / "run.xml"
    path.write_bytes(text.replace(b"<serial>MC4-0042</serial>", b"<serial />"))
    with pytest.raises(ConversionError, match=r"run.xml: line \d+: <serial> is empty"):
        convert(path)
    path.write_bytes(text.replace(b"<result>Failed</result>", b"<result>Maybe</result>"))
    with pytest.raises(ConversionError, match="run result 'Maybe'"):
        convert(path)
    path.write_bytes(text.replace(b"<result>Failed</result>", b""))
    assert convert(path)[0]["result"] == "T"  # no verdict of its own: the worst function


# -- archives -------------------------------------------------------------------------------------


def test_archive_without_info_and_checksums(tmp_path: Path) -> None:
    run = STOPPED_RUN.read_bytes()
    path = archive(tmp_path, {"Run 2.xml": run.replace(b"MC4-0042", b"MC4-0043"),
                              "Run 1.xml": run})
    reports = convert(path)
    assert [r["sn"] for r in reports] == ["MC4-0042", "MC4-0043"]  # in run order
    assert misc(reports[1])["Run"] == "2 of 2"
    assert reports[0]["root"]["seqCall"]["path"] is None


def test_archive_with_info_and_empty_checksums(tmp_path: Path) -> None:
    path = archive(tmp_path, {"Run 1.xml": STOPPED_RUN.read_bytes(), "Run 1.checksum": b"",
                              "Info.xml": INFO.format(count=1, exported="false").encode()})
    (report,) = convert(path)
    assert report["root"]["seqCall"]["path"] == "C:\\Projects\\MC4\\mc4.xjp"
    assert misc(report)["Project"] == "mc4.xjp"


def test_missing_run_is_named(tmp_path: Path) -> None:
    path = archive(tmp_path, {"Run 1.xml": STOPPED_RUN.read_bytes(),
                              "Info.xml": INFO.format(count=2, exported="false").encode()})
    with pytest.raises(ConversionError, match=r"announces 2 runs but 'Run 2.xml' is not"):
        convert(path)


def test_export_from_the_output_window_is_explained(tmp_path: Path) -> None:
    path = archive(tmp_path, {"Run 1.xml": b"<testrun><full-output/></testrun>",
                              "Info.xml": INFO.format(count=1, exported="true").encode()})
    with pytest.raises(ConversionError, match="ExportedFromOutput is true"):
        convert(path)


@pytest.mark.parametrize("name", ["../Run 1.xml", "/etc/Run 1.xml", "C:\\temp\\x",
                                  "logs/../../x"])
def test_entries_pointing_outside_are_refused(tmp_path: Path, name: str) -> None:
    path = archive(tmp_path, {"Run 1.xml": STOPPED_RUN.read_bytes(), name: b"x"})
    with pytest.raises(ConversionError, match="points outside the archive"):
        convert(path)


def test_too_many_entries_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(xjtag, "MAX_ENTRIES", 10)
    path = archive(tmp_path, {f"blob_{n}": b"" for n in range(11)})
    with pytest.raises(ConversionError, match="11 entries"):
        convert(path)


def test_member_that_unpacks_too_big_is_refused(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(xjtag, "MAX_MEMBER_BYTES", 1024 * 1024)
    bomb = b"<testrun>" + b" " * (2 * 1024 * 1024) + b"</testrun>"
    path = archive(tmp_path, {"Run 1.xml": bomb})
    assert path.stat().st_size < 10_000  # it is the unpacked size that counts
    with pytest.raises(ConversionError, match="unpacks to more than 1 MB"):
        convert(path)


def test_doctype_is_refused(tmp_path: Path) -> None:
    run = (b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa">]><testrun>&a;</testrun>')
    path = archive(tmp_path, {"Run 1.xml": run})
    with pytest.raises(ConversionError, match="DOCTYPE or ENTITY"):
        convert(path)


def test_damaged_member_is_named(tmp_path: Path) -> None:
    path = archive(tmp_path, {"Run 1.xml": STOPPED_RUN.read_bytes()})
    data = bytearray(path.read_bytes())
    data[60] ^= 0xFF  # inside the compressed data of the only member
    path.write_bytes(bytes(data))
    with pytest.raises(ConversionError, match=r"'Run 1\.xml' is damaged"):
        convert(path)


def test_broken_xml_inside_a_complete_archive_is_not_incomplete(tmp_path: Path) -> None:
    path = archive(tmp_path, {"Run 1.xml": STOPPED_RUN.read_bytes()[:500]})
    with pytest.raises(ConversionError, match=r"Run 1\.xml: not well-formed") as caught:
        convert(path)
    assert not isinstance(caught.value, IncompleteFileError)


def test_every_prefix_of_an_archive_is_incomplete(tmp_path: Path) -> None:
    data = sample("55804024_XJT_2019-06-20_13-41-02_lumi_Pass.xjlog").read_bytes()
    path = tmp_path / "partial.xjlog"
    # Every cut in the first bytes (the signature, the first header), then every 7th.
    for cut in [*range(64), *range(64, len(data), 7)]:
        path.write_bytes(data[:cut])
        with pytest.raises(IncompleteFileError):
            convert(path)


def test_prefixes_of_a_bare_run_are_incomplete(tmp_path: Path) -> None:
    data = STOPPED_RUN.read_bytes()
    path = tmp_path / "partial.xml"
    for cut in range(0, len(data.rstrip()), 13):
        path.write_bytes(data[:cut])
        with pytest.raises(IncompleteFileError):
            convert(path)


def test_neither_zip_nor_run(tmp_path: Path) -> None:
    path = tmp_path / "x.xjlog"
    path.write_bytes(b"<html>no</html>")
    with pytest.raises(ConversionError, match="neither a ZIP archive"):
        convert(path)


# -- fuzzing --------------------------------------------------------------------------------------

FUZZ = settings(max_examples=80, **FUZZ_SETTINGS)


@FUZZ
@given(data=st.binary(max_size=3000), zip_like=st.booleans())
def test_garbage_raises_only_conversion_errors(tmp_path: Path, data: bytes,
                                               zip_like: bool) -> None:
    path = tmp_path / "garbage.xjlog"
    path.write_bytes((b"PK\x03\x04" if zip_like else b"") + data)
    refused_or_converted(convert, path)


def fuzz_sources() -> list[Path]:
    names = ["1234_14_25_32_10.08.2018_Pass.xjlog", "Demonstration hardware--28_10_2019.xjlog"]
    found = [XJTAG_SAMPLES / name for name in names if (XJTAG_SAMPLES / name).is_file()]
    return found or [STOPPED_RUN]


@FUZZ
@given(choice=st.data())
def test_truncated_and_mutated_samples_raise_only_conversion_errors(
        tmp_path: Path, choice: st.DataObject) -> None:
    source = choice.draw(st.sampled_from(fuzz_sources()))
    data = bytearray(source.read_bytes())
    if choice.draw(st.booleans()):
        del data[choice.draw(st.integers(0, len(data))):]
    else:
        for _ in range(choice.draw(st.integers(1, 8))):
            data[choice.draw(st.integers(0, len(data) - 1))] = choice.draw(st.integers(0, 255))
    path = tmp_path / f"mutated{source.suffix}"
    path.write_bytes(bytes(data))
    refused_or_converted(convert, path)


@FUZZ
@given(choice=st.data())
def test_mutated_run_xml_in_a_valid_archive_raises_only_conversion_errors(
        tmp_path: Path, choice: st.DataObject) -> None:
    # Past the ZIP layer (CRC intact): the XML and the mapping get the damage.
    data = bytearray(STOPPED_RUN.read_bytes())
    for _ in range(choice.draw(st.integers(1, 6))):
        position = choice.draw(st.integers(0, len(data) - 1))
        if choice.draw(st.booleans()):
            data[position] = choice.draw(st.sampled_from(b"<>/&\"' =0aZ\x00\xff"))
        else:
            del data[position:position + choice.draw(st.integers(1, 40))]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as out:
        out.writestr("Run 1.xml", bytes(data))
    path = tmp_path / "mutated.xjlog"
    path.write_bytes(buffer.getvalue())
    refused_or_converted(convert, path)


def test_an_entry_that_is_a_symbolic_link_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "linked.xjlog"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("Run 1.xml", STOPPED_RUN.read_bytes())
        link = zipfile.ZipInfo("Info.xml")
        link.external_attr = (0o120777 << 16)  # a symlink, as `zip --symlinks` stores it
        zf.writestr(link, "/etc/passwd")
    with pytest.raises(ConversionError, match="as a symbolic link"):
        convert(path)

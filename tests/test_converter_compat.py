"""Converters written for pyWATS and from the product documents run unchanged: the `pywats`
report names, `create_step()`, a converter chosen by its file patterns alone, and the
`FileConverter`/`ConverterResult` API, through the plugin loader and the real service."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from pywats_client.config.settings import WatchFolder
from pywats_client.converters import (
    BaseConverter,
    ConversionError,
    ConversionSkipped,
    ConversionStatus,
    Converter,
    ConverterContext,
    ConverterRegistry,
    ConverterResult,
    ConverterSource,
    FileConverter,
    UURReport,
    UUTReport,
    file_converter,
    models,
)
from pywats_client.converters.auto import PATTERN_SCORE
from pywats_client.errors import IncompleteFileError
from pywats_client.http.receiver import Receiver
from pywats_client.service.pipeline import convert_file
from pywats_client.service.postaction import SeenFiles, SourceFile, put_skipped_aside
from tests.conftest import TOKEN
from tests.station import REPO, Station, wait_until

START = "2026-05-01T10:00:00+02:00"
CONTEXT = ConverterContext(station_name="ST-01", defaults={"process_code": 10})


def write_plugin(folder: Path, name: str, source: str) -> Path:
    folder.mkdir(mode=0o700, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    path.chmod(0o600)
    return path


def run_python(code: str, *paths: Path) -> subprocess.CompletedProcess[str]:
    """`code` in a fresh interpreter (imports cannot be undone in this one)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = os.pathsep.join([*(str(p) for p in paths), str(REPO)])
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                          capture_output=True, text=True, timeout=60)


# -- the pywats report names -------------------------------------------------------------------


PYWATS_PLUGIN = '''
from pywats_client.converters import BaseConverter
from pywats.report import UUTReport
from pywats.models import UUTReport as ModelsUUT
from pywats.domains.report.report_models import UUTReport as DomainUUT, UURReport


class NamesConverter(BaseConverter):
    name = "NamesConverter"
    file_patterns = ("*.names",)

    def convert(self, file_path):
        return UUTReport(part_number="PN", serial_number="SN", operation_code=10,
                         start_date_time="2026-05-01T10:00:00+02:00")

SAME = UUTReport is ModelsUUT is DomainUUT
'''


def test_pywats_report_names_are_this_clients_builders_for_plugins(tmp_path: Path) -> None:
    folder = tmp_path / "converters"
    write_plugin(folder, "names.py", PYWATS_PLUGIN)
    registry = ConverterRegistry(plugin_dir=folder)
    assert not registry.errors, registry.errors
    converter = registry.create("NamesConverter")
    module = sys.modules[type(converter).__module__]
    assert module.SAME and module.UUTReport is UUTReport and module.UURReport is UURReport
    source = tmp_path / "a.names"
    source.write_text("x", encoding="utf-8")
    [report] = convert_file(source, converter, CONTEXT).reports
    assert (report["pn"], report["rev"], report["processCode"]) == ("PN", "", 10)
    import pywats  # the stand-in, now that the plugin loader has put the names in place

    assert "stand-in" in (pywats.__doc__ or "")


def test_no_pywats_package_is_shipped_and_the_names_exist_only_for_plugins() -> None:
    assert not (REPO / "pywats").exists()
    result = run_python('''
        import importlib.util
        import pywats_client.converters
        print(importlib.util.find_spec("pywats"))
    ''')
    assert result.stdout.strip() == "None", result.stderr


def test_an_installed_pywats_wins(tmp_path: Path) -> None:
    real = tmp_path / "site" / "pywats"
    (real / "report").mkdir(parents=True)
    (real / "__init__.py").write_text("REAL = True\n")
    (real / "report" / "__init__.py").write_text("class UUTReport:\n    REAL = True\n")
    folder = tmp_path / "converters"
    write_plugin(folder, "real.py", '''
        from pywats_client.converters import BaseConverter
        from pywats.report import UUTReport

        class RealConverter(BaseConverter):
            name = "RealConverter"
            def convert(self, file_path):
                return UUTReport()
    ''')
    write_plugin(folder, "models.py", '''
        from pywats.models import UUTReport
    ''')
    result = run_python(f'''
        import sys
        from pathlib import Path
        from pywats_client.converters import ConverterRegistry
        registry = ConverterRegistry(plugin_dir=Path({str(folder)!r}))
        cls = sys.modules[type(registry.create("RealConverter")).__module__].UUTReport
        print(cls.REAL, sys.modules["pywats"].REAL)
        print([str(e) for e in registry.errors])
    ''', real.parent)
    assert result.returncode == 0, result.stderr
    first, errors = result.stdout.splitlines()
    assert first == "True True"
    # A real pywats without pywats.models is not given one.
    assert "models.py" in errors and "No module named 'pywats.models'" in errors


# -- create_step -------------------------------------------------------------------------------


def test_create_step_makes_the_step_the_value_calls_for() -> None:
    make = BaseConverter().create_step
    report = UUTReport(pn="PN", sn="SN", rev="A", operation_code=10, start=START)
    report.steps.append(make({"name": "Supply", "value": 5.02, "low_limit": 4.75,
                              "high_limit": 5.25, "unit": "V"}))
    report.steps.append(make({"name": "Ripple", "value": 0.2, "high_limit": 0.1}))
    report.steps.append(make({"name": "Gain", "value": 3, "low_limit": 1, "high_limit": 2,
                              "comp_op": "LTGT"}))
    report.steps.append(make({"name": "Firmware", "value": "1.2.3", "limit": "1.2.3"}))
    report.steps.append(make({"name": "Note", "value": "reseated"}))
    report.steps.append(make({"name": "LED", "value": True}))
    report.steps.append(make({"name": "Fan", "value": True, "status": "F", "group": "Cleanup"}))
    report.steps.append(make({"name": "Logged", "value": 7, "status": "Passed"}))
    wsjf = report.to_wsjf()
    supply, ripple, gain, firmware, note, led, fan, logged = wsjf["root"]["steps"]
    assert supply["numericMeas"] == [{"compOp": "GELE", "name": None, "status": "P",
                                      "unit": "V", "value": 5.02, "lowLimit": 4.75,
                                      "highLimit": 5.25}]
    assert ripple["numericMeas"][0]["compOp"] == "LE" and ripple["status"] == "F"
    assert gain["numericMeas"][0]["compOp"] == "LTGT" and gain["status"] == "P"
    assert firmware["stringMeas"][0]["compOp"] == "CASESENSIT" and firmware["status"] == "P"
    assert note["stringMeas"][0]["compOp"] == "LOG"
    assert led["stepType"] == "ET_PFT" and led["status"] == "P"
    assert (fan["status"], fan["group"]) == ("F", "C")
    assert logged["numericMeas"][0]["compOp"] == "LOG" and logged["status"] == "P"
    assert wsjf["result"] == "F"
    assert report.steps is report.root["steps"]  # the root sequence's own list


@pytest.mark.parametrize(("step", "message"), [
    ({"name": "V", "value": 1, "low": 0}, r"create_step\('V'\): unknown key\(s\) 'low'; "
                                          r"accepted: comp_op, group, high_limit, limit"),
    ({"value": 1}, r"create_step\(\): 'name' must be a non-empty text"),
    ({"name": "V"}, r"'value' is missing"),
    ({"name": "V", "value": None}, r"'value' is missing"),
    ({"name": "V", "value": [1]}, r"'value' must be a number, a text or True/False, not list"),
    ({"name": "V", "value": "3.3", "low_limit": 1}, r"low_limit need a number value, not the "
                                                    r"text '3.3'"),
    ({"name": "V", "value": 1, "limit": "x"}, r"'limit' is for text values"),
    ({"name": "V", "value": True, "unit": "V"}, r"a pass/fail step \(value True/False\) takes "
                                                r"no unit"),
    ({"name": "V", "value": float("nan")}, r"value is nan"),
    ({"name": "V", "value": 1, "group": "Teardown"}, r"create_step\('V'\): step group "
                                                     r"'Teardown' is not one of"),
    ("V=1", r"create_step\(\) takes a dict with 'name' and 'value', got str"),
])
def test_create_step_refuses_what_it_cannot_make_in_words(step: Any, message: str) -> None:
    with pytest.raises(ConversionError, match=message):
        BaseConverter().create_step(step)


# -- the context as the documents hand it over -------------------------------------------------


def test_the_context_gives_the_folder_arguments_the_documented_ways() -> None:
    context = ConverterContext(arguments={"delimiter": ";"})
    assert context.get_argument("delimiter", ",") == ";" == context.get("delimiter")
    assert context.get_argument("encoding", "utf-8") == "utf-8"
    assert context["delimiter"] == ";" and "delimiter" in context
    assert context.has_argument("delimiter") and not context.has_argument("encoding")


# -- chosen by the file patterns alone ---------------------------------------------------------


INFO_ONLY = '''
from pywats_client.converters import BaseConverter, ConverterInfo, UUTReport

class InfoOnly(BaseConverter):
    @classmethod
    def get_info(cls):
        return ConverterInfo(name="InfoOnly", file_patterns=["*.myext"], version="1.0.0")

    def convert(self, file_path):
        return UUTReport(pn="P", sn="S", operation_code=10, start="2026-05-01T10:00:00Z")
'''


def test_a_converter_with_only_file_patterns_is_chosen_for_its_files(tmp_path: Path) -> None:
    folder = tmp_path / "converters"
    write_plugin(folder, "info_only.py", INFO_ONLY)
    write_plugin(folder, "catch_all.py", '''
        from pywats_client.converters import Converter

        class CatchAll(Converter):
            name = "CatchAll"  # file_patterns "*": no claim on any file in particular

        class Picky(Converter):
            name = "Picky"
            file_patterns = ("*.picky",)

            def detect(self, path, head):
                return 0.9 if head.startswith(b"PICKY") else 0.0
    ''')
    registry = ConverterRegistry(plugin_dir=folder)
    detection = registry.detect(Path("unit.MYEXT"), b"anything")
    assert detection.name == "InfoOnly"
    assert detection.reason == ("InfoOnly: detect 0.25, file name matches *.myext (no content "
                                "check)")
    assert {v.name: v.score for v in detection.verdicts}["CatchAll"] == 0.0
    # Content recognised by a converter beats a file name alone.
    wsjf = b'{"type": "T", "pn": "P", "sn": "S", "root": {}}'
    assert registry.detect(Path("unit.myext"), wsjf).name == "WATSStandardJsonConverter"
    # A converter that checks the content and says no is not overruled by its patterns.
    assert 0.0 < PATTERN_SCORE < 0.3
    with pytest.raises(ConversionError, match=r"no converter recognises .*Picky 0\.00"):
        registry.detect(Path("unit.picky"), b"something else")


# -- FileConverter, the architecture document's API --------------------------------------------


FILE_CONVERTER = '''
from datetime import timedelta
from typing import List

from pywats_client.converters import ConverterResult, FileConverter, UUTReport
from pywats_client.converters.file_converter import FileConverter as SameFileConverter
from pywats_client.converters.models import ConverterSource, ConversionStatus

assert SameFileConverter is FileConverter


class BoardsConverter(FileConverter):
    """One line per board: 'SN;PN;volts', or SKIP / FAIL / WAIT lines."""

    def __init__(self):
        super().__init__()
        self.loaded = True

    @property
    def name(self) -> str:
        return "BoardsConverter"

    @property
    def version(self) -> str:
        return "2.0"

    @property
    def file_patterns(self) -> List[str]:
        return ["*.boards"]

    def convert(self, source: ConverterSource, context) -> ConverterResult:
        text = source.path.read_text(encoding="utf-8").strip()
        if text.startswith("SKIP"):
            return ConverterResult.skipped_result("a template, not a test run")
        if text.startswith("FAIL"):
            return ConverterResult.failed_result(error="line 1: no boards in the file")
        if text.startswith("WAIT"):
            return ConverterResult.suspended_result("the fixture log is not there yet",
                                                    retry_after=timedelta(seconds=5))
        delimiter = context.get_argument("delimiter", ";")
        reports = []
        for line in text.splitlines():
            sn, pn, volts = line.split(delimiter)
            report = UUTReport(pn=pn, sn=sn, operation_code=10,
                               start="2026-05-01T10:00:00+02:00")
            report.add_numeric_step("Supply", float(volts), low=4.75, high=5.25, unit="V")
            reports.append(report)
        if len(reports) == 1:
            return ConverterResult.success_result(report=reports[0], warnings=["one board"])
        return ConverterResult.success_result(reports=reports)
'''


@pytest.fixture()
def boards(tmp_path: Path) -> Converter:
    folder = tmp_path / "converters"
    write_plugin(folder, "boards.py", FILE_CONVERTER)
    registry = ConverterRegistry(plugin_dir=folder)
    assert not registry.errors, registry.errors
    info = {i.name: i for i in registry.info()}["BoardsConverter"]
    assert (info.version, info.file_patterns) == ("2.0", ("*.boards",))
    return registry.create("BoardsConverter", {"delimiter": ";"})


def source_file(tmp_path: Path, text: str, name: str = "run.boards") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_the_api_is_importable_where_the_documents_say() -> None:
    assert file_converter.FileConverter is FileConverter
    assert models.ConverterSource is ConverterSource and models.ConverterResult is ConverterResult
    assert models.ConversionStatus is ConversionStatus
    source = ConverterSource.from_file("/data/a.csv")
    assert (source.path, source.files, source.primary_name) == (
        Path("/data/a.csv"), [Path("/data/a.csv")], "a.csv")
    assert ConverterResult.success_result(report={"a": 1}).get_all_reports() == [{"a": 1}]
    assert ConverterResult.failure("bad").status is ConversionStatus.FAILED
    assert ConverterResult.skipped_result("why").error == "why"


def test_a_file_converter_gives_several_reports_and_its_own_result_when_asked(
        tmp_path: Path, boards: Converter, caplog: pytest.LogCaptureFixture) -> None:
    path = source_file(tmp_path, "SN-1;PN-A;5.0\nSN-2;PN-A;5.5\n")
    first, second = convert_file(path, boards, CONTEXT).reports
    assert (first["sn"], first["result"], second["sn"], second["result"]) == (
        "SN-1", "P", "SN-2", "F")
    assert first["rev"] == "" and first["id"] != second["id"]
    # Called with a ConverterSource, the converter's own convert() answers.
    result = boards.convert(ConverterSource.from_file(path), CONTEXT)
    assert isinstance(result, ConverterResult) and len(result.reports) == 2
    one = source_file(tmp_path, "SN-3;PN-A;5.0\n", "one.boards")
    with caplog.at_level("WARNING"):
        [report] = convert_file(one, boards, CONTEXT).reports
    assert report["sn"] == "SN-3" and "one.boards: BoardsConverter: one board" in caplog.text


@pytest.mark.parametrize(("text", "error", "message"), [
    ("SKIP", ConversionSkipped, "run.boards: skipped by BoardsConverter: a template, not a "
                                "test run"),
    ("FAIL", ConversionError, "run.boards: BoardsConverter failed: line 1: no boards"),
    ("WAIT", IncompleteFileError, "BoardsConverter asks to wait: the fixture log is not"),
])
def test_results_without_reports_are_what_the_service_understands(
        tmp_path: Path, boards: Converter, text: str, error: type[Exception],
        message: str) -> None:
    with pytest.raises(error, match=message) as caught:
        convert_file(source_file(tmp_path, text), boards, CONTEXT)
    assert type(caught.value) is error


def test_a_file_converter_missing_a_required_member_is_a_plugin_error(tmp_path: Path
                                                                     ) -> None:
    folder = tmp_path / "converters"
    write_plugin(folder, "incomplete.py", '''
        from pywats_client.converters import ConverterResult, FileConverter

        class NoName(FileConverter):
            def convert(self, source, context):
                return ConverterResult.skipped_result("never")

        class NoConvert(FileConverter):
            @property
            def name(self):
                return "NoConvert"
    ''')
    registry = ConverterRegistry(plugin_dir=folder)
    assert not {"NoName", "NoConvert"} & set(registry.names())
    # A class without a name is a shared base, as for every converter style: not listed.
    [error] = [str(e) for e in registry.errors]
    assert "class NoConvert: get_info() failed: Can't instantiate abstract class" in error
    assert "convert" in error and "the class was skipped" in error


# -- through the real service ------------------------------------------------------------------


@pytest.mark.slow
def test_file_converters_and_pattern_only_plugins_run_in_the_service(
        station: Station, receiver: Receiver) -> None:
    plugins = station.instance / "converters"
    write_plugin(plugins, "boards.py", FILE_CONVERTER)
    write_plugin(plugins, "info_only.py", INFO_ONLY)
    keep = station.root / "keep"  # post_action none: a skipped file stays, remembered
    keep.mkdir()
    station.config["queue"]["watch_folders"] = [
        str(station.watch), {"path": str(keep), "post_action": "none"}]
    # The files name no revision: the configured default is sent (without one, "").
    station.config["converters"] = {"defaults": {"revision": "R1"}}
    station.write_config()
    station.start()
    station.drop("two.boards", b"SN-1;PN-A;5.0\nSN-2;PN-A;5.5\n")
    station.drop("unit.myext", b"whatever the content")  # chosen by its pattern
    station.drop("template.boards", b"SKIP")
    station.drop("broken.boards", b"FAIL")
    shutil.copy(station.watch / "template.boards", keep / "template.boards")
    assert receiver.wait_for_reports(3, timeout=60), station.output()
    stored = [json.loads(p.read_text()) for p in receiver.store.glob("*.json")]
    assert sorted(r["sn"] for r in stored) == ["S", "SN-1", "SN-2"]
    assert all(r["rev"] == "R1" and r["machineName"] == "station-e2e" for r in stored)
    done = ["template.boards", "template.boards.skipped.txt", "two.boards",
            "unit.myext"]
    wait_until(lambda: station.done_files() == done, 20, "done/ to fill")
    note = (station.watch / "done" / "template.boards.skipped.txt").read_text()
    assert "its converter skipped it" in note and "a template, not a test run" in note
    error = station.watch / "error" / "broken.boards.error.txt"
    wait_until(error.exists, 20, "the failed file in error/")
    assert "BoardsConverter failed: line 1: no boards in the file" in error.read_text()
    wait_until(lambda: "template.boards" in (
        station.instance / "state" / "seen-files.log").read_text(errors="replace")
        if (station.instance / "state" / "seen-files.log").exists() else False,
        20, "the skipped file in the none folder recorded")
    assert (keep / "template.boards").exists() and not (keep / "done").exists()
    assert station.stop() == 0
    assert "no report made" in station.output()


def test_the_readme_file_converter_example_runs(tmp_path: Path) -> None:
    readme = (REPO / "converters" / "README.md").read_text(encoding="utf-8")
    [block] = [b for b in re.findall(r"```python\n(.*?)```", readme, re.S)
               if "class BoardsConverter(FileConverter)" in b]
    folder = tmp_path / "converters"
    write_plugin(folder, "readme_boards.py", block)
    registry = ConverterRegistry(plugin_dir=folder)
    assert not registry.errors, registry.errors
    converter = registry.create("BoardsConverter")
    context = ConverterContext(station_name="ST", arguments={"delimiter": ","},
                               defaults={"revision": "A"})
    first, second = convert_file(source_file(tmp_path, "SN-1,PN\nSN-2,PN\n"), converter,
                                 context).reports
    assert (first["sn"], second["sn"], first["rev"]) == ("SN-1", "SN-2", "A")
    with pytest.raises(ConversionSkipped, match="a template, not a test run"):
        convert_file(source_file(tmp_path, "TEMPLATE\n", "t.boards"), converter, context)


@pytest.mark.parametrize(("action", "kept_as"), [
    ("move", "done/run.boards"), ("delete", "done/run.boards"),
    ("archive", "done/run.boards.zip"), ("none", "run.boards")])
def test_a_skipped_file_is_put_aside_never_destroyed(tmp_path: Path, action: str,
                                                     kept_as: str) -> None:
    folder = WatchFolder(path=tmp_path / "in", post_action=action)
    folder.path.mkdir()
    path = source_file(folder.path, "SKIP")
    st = path.stat()
    seen = SeenFiles(tmp_path / "state")
    source = SourceFile(folder, path, st.st_size, st.st_mtime_ns)
    moved = put_skipped_aside(source, seen, "run.boards: skipped by X: a template")
    assert (folder.path / kept_as).exists()
    assert moved == (None if action == "none" else folder.path / kept_as)
    note = folder.path / (kept_as + ".skipped.txt")
    if action == "none":
        assert seen.contains(path, st.st_size, st.st_mtime_ns) and not note.exists()
    else:
        assert not path.exists()
        assert "run.boards: skipped by X: a template" in note.read_text()


def test_convert_and_upload_of_a_skipped_file_say_so_and_succeed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pywats_client.cli import main

    data = tmp_path / "data"
    assert main(["--data-dir", str(data), "config", "init", "--non-interactive",
                 "--server-url", "http://127.0.0.1:9", "--api-token", TOKEN]) == 0
    write_plugin(data / "default" / "converters", "boards.py", FILE_CONVERTER)
    template = source_file(tmp_path, "SKIP\n", "template.boards")
    capsys.readouterr()
    assert main(["--data-dir", str(data), "convert", "--file", str(template)]) == 0
    shown = capsys.readouterr()
    assert shown.out == "" and "a template, not a test run; no report" in shown.err
    # Nothing to send: no server is asked (this one does not exist) and nothing is queued.
    assert main(["--data-dir", str(data), "upload", "--file", str(template)]) == 0
    assert "no report, nothing sent" in capsys.readouterr().out
    assert not list((data / "default" / "queue" / "pending").glob("*.wsq"))

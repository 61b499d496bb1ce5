"""The converter examples of the product documents (../shared/docs/product), as printed there,
run through the plugin loader and the real service, and reach the bundled receiver.

The code is read from the markdown at test time, never copied into this repository. Where a
document leaves something to its reader (an import, a helper it calls but does not show),
the test adds it around the printed code, never inside it.
"""

from __future__ import annotations

import ast
import inspect
import json
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest

from pywats_client.converters import ConverterRegistry, FileConverter
from pywats_client.http import receiver as receiver_module
from pywats_client.http.receiver import Receiver
from tests.conftest import TOKEN
from tests.station import REPO, Station, wait_until

DOCS = REPO.parent / "shared" / "docs" / "product"
GUIDE = DOCS / "client-service-guide.md"
PACKAGE = DOCS / "client-service-package.md"
ARCHITECTURE = DOCS / "client-architecture.md"

pytestmark = pytest.mark.skipif(not DOCS.is_dir(),
                                reason=f"the product documents are absent ({DOCS})")

_BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def examples(document: Path, marker: str) -> list[str]:
    """The python code blocks of `document` that contain `marker`."""
    return [block for block in _BLOCK.findall(document.read_text(encoding="utf-8"))
            if marker in block]


def one_example(document: Path, marker: str) -> str:
    found = examples(document, marker)
    assert len(found) == 1, f"{document.name}: expected one block with {marker!r}"
    return found[0]


# The package README calls self.parse_test_file() and leaves writing it to the reader, and
# annotates with Path without importing it; a reader's file has both.
PACKAGE_PROLOGUE = "from pathlib import Path\n\n"
PACKAGE_EPILOGUE = '''

def _parse_test_file(self, file_path):
    """KEY: value lines; STEP: name | value | low | high | unit."""
    data = {"steps": []}
    for line in Path(file_path).read_text(encoding="utf-8").splitlines():
        key, _, value = line.partition(":")
        if key == "STEP":
            name, number, low, high, unit = (cell.strip() for cell in value.split("|"))
            data["steps"].append({"name": name, "value": float(number),
                                  "low_limit": float(low), "high_limit": float(high),
                                  "unit": unit})
        else:
            data[key.strip()] = value.strip()
    data["passed"] = data.pop("result") == "PASS"
    return data


MyConverter.parse_test_file = _parse_test_file
'''
PACKAGE_INPUT = (b"part_number: PN-DOC\nserial_number: SN-DOC-2\nrevision: B\nresult: PASS\n"
                 b"start_time: 2026-05-01T11:30:00+02:00\nSTEP: Supply | 5.02 | 4.75 | 5.25 | V\n"
                 b"STEP: Ripple | 0.04 | 0 | 0.05 | V\n")

# A converter written to the architecture document's abstract API: exactly the members the
# printed FileConverter declares abstract (checked below), nothing else.
ARCHITECTURE_CONVERTER = '''
from typing import List

from pywats_client.converters import ConverterResult, ConverterSource, FileConverter


class ArchConverter(FileConverter):
    @property
    def name(self) -> str:
        return "ArchConverter"

    @property
    def version(self) -> str:
        return "1.0.0"

    @property
    def file_patterns(self) -> List[str]:
        return ["*.arch"]

    def convert(self, source: ConverterSource, context: dict) -> ConverterResult:
        sn, volts = source.path.read_text().split()
        return ConverterResult.success_result(report={
            "type": "T", "pn": "PN-ARCH", "sn": sn, "processCode": 10, "result": "P",
            "start": "2026-05-01T12:00:00+02:00",
            "root": {"group": "M", "stepType": "SequenceCall", "name": "Main", "status": "P",
                     "seqCall": {"path": "", "name": "Main", "version": ""}, "steps": [{
                         "group": "M", "stepType": "ET_NLT", "name": "Supply", "status": "P",
                         "numericMeas": [{"compOp": "LOG", "status": "P", "unit": "V",
                                          "value": float(volts)}]}]},
        })
'''


def test_the_architecture_documents_api_is_this_clients_file_converter() -> None:
    block = one_example(ARCHITECTURE, "class FileConverter(")
    [cls] = [node for node in ast.walk(ast.parse(block)) if isinstance(node, ast.ClassDef)]
    printed: dict[str, tuple[bool, list[str]]] = {}
    for node in cls.body:
        if isinstance(node, ast.FunctionDef):
            decorators = {ast.unparse(d) for d in node.decorator_list}
            assert "abstractmethod" in decorators
            printed[node.name] = ("property" in decorators, [a.arg for a in node.args.args])
    assert set(printed) == {"name", "version", "file_patterns", "convert"}
    for member, (is_property, arguments) in printed.items():
        ours = inspect.getattr_static(FileConverter, member)
        assert isinstance(ours, property) == is_property, member
        if not is_property:
            assert list(inspect.signature(ours).parameters)[:len(arguments)] == arguments
    # And the converter above implements exactly those members.
    written = ast.parse(ARCHITECTURE_CONVERTER)
    [mine] = [n for n in ast.walk(written) if isinstance(n, ast.ClassDef)]
    assert {n.name for n in mine.body if isinstance(n, ast.FunctionDef)} == set(printed)


def test_the_documented_converters_load_as_printed(tmp_path: Path) -> None:
    folder = tmp_path / "converters"
    folder.mkdir(mode=0o700)
    install(folder)
    registry = ConverterRegistry(plugin_dir=folder)
    assert not registry.errors, registry.errors
    infos = {info.name: info for info in registry.info()}
    assert infos["MyConverter"].file_patterns == ("*.myext",)  # the service guide's
    assert infos["My Test System Converter"].description == "Converts .test files to WATS format"
    assert infos["ArchConverter"].file_patterns == ("*.arch",)


def install(folder: Path) -> None:
    guide = one_example(GUIDE, "class MyConverter(BaseConverter)")
    package = one_example(PACKAGE, "class MyConverter(BaseConverter)")
    for name, text in (("guide_example.py", guide),
                       ("package_example.py", PACKAGE_PROLOGUE + package + PACKAGE_EPILOGUE),
                       ("architecture_example.py", textwrap.dedent(ARCHITECTURE_CONVERTER))):
        path = folder / name
        path.write_text(text, encoding="utf-8")
        path.chmod(0o600)


@pytest.mark.slow
def test_the_documented_converters_run_in_the_service(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The guide's example files its reports under operation "TEST": a server that has it.
    monkeypatch.setattr(receiver_module, "PROCESSES_LIST", [
        *receiver_module.PROCESSES_LIST,
        {"code": 70, "name": "TEST", "isTestOperation": True, "isRepairOperation": False}])
    with Receiver(tmp_path / "store", token=TOKEN) as receiver:
        station = Station(tmp_path / "station", receiver.url, TOKEN)
        try:
            plugins = station.instance / "converters"
            plugins.mkdir(mode=0o700)
            install(plugins)
            # No converter is bound: each file is chosen for by its patterns or can_convert().
            # The package example's files name no process; the guide's no revision. (The
            # bundled receiver refuses an empty revision, so one is configured here; without
            # it the report carries "", as the built-in converters send.)
            station.config["converters"] = {"defaults": {"process_code": 50,
                                                         "revision": "R0"}}
            station.write_config()
            station.start()
            station.drop("unit-1.myext", b"anything: the guide's converter reads nothing")
            station.drop("unit-2.test", PACKAGE_INPUT)
            station.drop("unit-3.arch", b"SN-DOC-3 4.98")
            assert receiver.wait_for_reports(3, timeout=60), station.output()
            stored = {r["sn"]: r for r in
                      (json.loads(p.read_text()) for p in receiver.store.glob("*.json"))}
            guide, package, arch = stored["..."], stored["SN-DOC-2"], stored["SN-DOC-3"]
            expect(guide, pn="...", rev="R0", processCode=70, result="P")
            assert guide["root"]["steps"] == [] and guide["start"]  # the file's time
            expect(package, pn="PN-DOC", rev="B", processCode=50, result="P")
            supply, ripple = package["root"]["steps"]
            assert supply["numericMeas"][0] | {"name": None} == {
                "compOp": "GELE", "name": None, "status": "P", "unit": "V", "value": 5.02,
                "lowLimit": 4.75, "highLimit": 5.25}
            assert ripple["numericMeas"][0]["value"] == 0.04 and ripple["status"] == "P"
            assert package["start"] == "2026-05-01T11:30:00+02:00"
            expect(arch, pn="PN-ARCH", rev="R0", processCode=10, result="P")
            assert arch["root"]["steps"][0]["numericMeas"][0]["value"] == 4.98
            wait_until(lambda: station.done_files() == ["unit-1.myext", "unit-2.test",
                                                        "unit-3.arch"], 20, "done/")
            assert station.stop() == 0
        finally:
            station.kill()


def expect(report: dict[str, Any], **fields: Any) -> None:
    assert {key: report.get(key) for key in fields} == fields
    assert report["machineName"] == "station-e2e"

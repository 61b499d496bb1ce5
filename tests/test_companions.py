"""Files that form one unit (a header file and its data folder) are post-processed together."""

from __future__ import annotations

import json
import uuid
import zipfile
from pathlib import Path

import pytest

from pywats_client.config.settings import WatchFolder
from pywats_client.converters import ConverterContext, ConverterRegistry
from pywats_client.http.receiver import Receiver
from pywats_client.service.pipeline import convert_file
from pywats_client.service.postaction import SeenFiles, SourceFile, apply_post_action, move_to_error
from tests.station import Station, wait_until, wsjf_report

# A converter for "<name>.hdr" files whose measurements live in the folder "<name>/": the
# header says how many data files the folder must hold before the unit is complete.
UNIT_PLUGIN = '''
import json
from pathlib import Path

from pywats_client.converters import Converter, IncompleteFileError


class UnitConverter(Converter):
    name = "UnitConverter"
    file_patterns = ("*.hdr",)

    @classmethod
    def companions(cls, path):
        return [path.with_suffix("")]

    def convert(self, path, context):
        header = json.loads(path.read_text())
        folder = path.with_suffix("")
        parts = sorted(folder.glob("*.part")) if folder.is_dir() else []
        if len(parts) < header["parts"]:
            raise IncompleteFileError(f"{folder.name}: {len(parts)} of {header['parts']} parts")
        report = header["report"]
        report["root"]["reportText"] = ",".join(p.read_text() for p in parts)
        return report
'''


def make_unit(root: Path, name: str, parts: int, written: int) -> tuple[Path, Path]:
    header = root / f"{name}.hdr"
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(written):
        (folder / f"{n}.part").write_text(f"p{n}")
    header.write_text(json.dumps({"parts": parts,
                                  "report": wsjf_report(1, report_id=str(uuid.uuid4()))}))
    return header, folder


@pytest.fixture
def plugins(tmp_path: Path) -> Path:
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "unit.py").write_text(UNIT_PLUGIN)
    return folder


def source_for(watch: Path, path: Path, action: str) -> SourceFile:
    st = path.stat()
    return SourceFile(WatchFolder(path=watch, post_action=action), path, st.st_size,
                      st.st_mtime_ns)


def test_the_conversion_names_the_companions(tmp_path: Path, plugins: Path) -> None:
    header, folder = make_unit(tmp_path, "DUT 1", parts=2, written=2)
    converter = ConverterRegistry(plugin_dir=plugins).create("UnitConverter")
    conversion = convert_file(header, converter, ConverterContext(station_name="s"))
    assert conversion.companions == (folder,)
    assert conversion.reports[0]["root"]["reportText"] == "p0,p1"


@pytest.mark.parametrize("action", ["move", "archive", "delete"])
def test_companions_follow_the_post_action(tmp_path: Path, action: str) -> None:
    header, folder = make_unit(tmp_path, "DUT 1", parts=2, written=2)
    result = apply_post_action(source_for(tmp_path, header, action), SeenFiles(tmp_path / "st"),
                               [folder])
    assert not header.exists() and not folder.exists()
    done = tmp_path / "done"
    if action == "move":
        assert sorted(p.name for p in done.iterdir()) == ["DUT 1", "DUT 1.hdr"]
        assert sorted(p.name for p in (done / "DUT 1").iterdir()) == ["0.part", "1.part"]
    elif action == "archive":
        assert result is not None
        with zipfile.ZipFile(result) as zf:
            assert sorted(zf.namelist()) == ["DUT 1.hdr", "DUT 1/0.part", "DUT 1/1.part"]


def test_companions_go_to_the_error_folder_too(tmp_path: Path) -> None:
    header, folder = make_unit(tmp_path, "DUT 2", parts=1, written=1)
    move_to_error(source_for(tmp_path, header, "move"), "bad unit", companions=[folder])
    error = tmp_path / "error"
    assert sorted(p.name for p in error.iterdir()) == ["DUT 2", "DUT 2.hdr",
                                                       "DUT 2.hdr.error.txt"]


@pytest.mark.slow
def test_the_service_waits_for_the_whole_unit_and_moves_it_together(
        tmp_path: Path, plugins: Path) -> None:
    token = "dXNlcjpzZWNyZXQ="
    with Receiver(tmp_path / "store", token=token) as receiver:
        station = Station(tmp_path / "station", receiver.url, token)
        (station.instance / "converters").mkdir(parents=True, exist_ok=True)
        (station.instance / "converters" / "unit.py").write_text(UNIT_PLUGIN)
        station.config["queue"]["watch_folders"] = [
            {"path": str(station.watch), "converter": "UnitConverter"}]
        station.write_config()
        try:
            station.start()
            _, folder = make_unit(station.watch, "DUT 3", parts=3, written=1)
            log = station.instance / "logs" / "pywats_client.log"
            wait_until(lambda: log.exists() and "1 of 3 parts" in log.read_text(), 30,
                       "the incomplete unit to be noticed")
            assert receiver.stored_ids() == set()
            for n in (1, 2):
                (folder / f"{n}.part").write_text(f"p{n}")
            assert receiver.wait_for_reports(1, timeout=60), station.output()
            wait_until(lambda: station.done_files() == ["DUT 3", "DUT 3.hdr"], 30,
                       "header and folder in done/")
            [stored] = receiver.stored_ids()
            report = json.loads((receiver.store / f"{stored}.json").read_text())
            assert report["root"]["reportText"] == "p0,p1,p2"
        finally:
            station.kill()

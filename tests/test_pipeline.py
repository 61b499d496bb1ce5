"""From file to reports: limits on input, per-folder context, converter choice."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import uuid
from pathlib import Path

import pytest

from pywats_client.config.settings import ConverterSettings, Settings, WatchFolder
from pywats_client.converters import (
    ConversionError,
    Converter,
    ConverterContext,
    ConverterRegistry,
    IncompleteFileError,
)
from pywats_client.converters.textio import preloaded, read_bytes
from pywats_client.service import pipeline
from pywats_client.service.pipeline import convert_file, convert_source, make_context
from tests.station import wsjf_report


def test_a_file_over_the_size_limit_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    path.write_text(json.dumps(wsjf_report(1, report_id=str(uuid.uuid4()))) + " " * 20000)
    settings = Settings(converters=ConverterSettings(max_file_mb=0.01))
    with pytest.raises(ConversionError, match=r"big.json is 0.0 MB, over the 0.01 MB limit "
                                              r"\(converters.max_file_mb\); it was not read"):
        convert_source(settings, ConverterRegistry(), path, None)
    small = Settings(converters=ConverterSettings(max_file_mb=1))
    assert convert_source(small, ConverterRegistry(), path, None).reports


def test_the_folder_arguments_set_encoding_time_zone_and_station(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text("{}")
    context = make_context(Settings(station_name="global"), path,
                           {"encoding": "cp1252", "timezone": "Europe/Oslo",
                            "station_name": "line-2"})
    assert context.encoding == "cp1252" and context.station_name == "line-2"
    assert context.timezone is not None and str(context.timezone) == "Europe/Oslo"
    with pytest.raises(ConversionError, match="'Mars/Olympus' is not a known time zone"):
        make_context(Settings(), path, {"timezone": "Mars/Olympus"})


def test_a_folder_bound_to_a_converter_uses_it_whatever_the_content(tmp_path: Path) -> None:
    path = tmp_path / "r.txt"
    path.write_text(json.dumps(wsjf_report(1, report_id=str(uuid.uuid4()))))
    folder = WatchFolder(path=tmp_path, converter="WATSStandardJsonConverter")
    conversion = convert_source(Settings(station_name="s"), ConverterRegistry(), path, folder)
    assert conversion.converter == "WATSStandardJsonConverter"
    assert conversion.reason == "WATSStandardJsonConverter: configured"


# -- a file swapped after the watcher took it ---------------------------------------------------


def test_a_file_swapped_for_a_link_is_not_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps(wsjf_report(7, report_id=str(uuid.uuid4()))))
    watch = tmp_path / "watch"
    watch.mkdir()
    path = watch / "r.json"
    path.symlink_to(secret)  # was a plain file when it was taken
    folder = WatchFolder(path=watch)
    with pytest.raises(IncompleteFileError, match="symbolic link"):
        convert_source(Settings(station_name="s"), ConverterRegistry(), path, folder)
    os.mkfifo(watch / "p.json")  # and a named pipe must not block the conversion
    with pytest.raises(IncompleteFileError):
        convert_source(Settings(station_name="s"), ConverterRegistry(), watch / "p.json",
                       WatchFolder(path=watch, converter="WATSStandardJsonConverter"))
    linked = WatchFolder(path=watch, follow_symlinks=True)
    assert convert_source(Settings(station_name="s"), ConverterRegistry(), path, linked).reports


def test_the_content_hash_reads_no_more_than_the_size_that_was_checked(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_bytes(b"x" * 200_000)
    assert pipeline._sha256(path, 200_000) == hashlib.sha256(b"x" * 200_000).hexdigest()
    # As a file whose writer never stops: what came after the check is not read to its end.
    with pytest.raises(IncompleteFileError, match="grew while it was read"):
        pipeline._sha256(path, 100_000)


def test_a_small_file_is_read_once_and_its_converter_gets_the_bytes_that_were_hashed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps(wsjf_report(1)))
    opened: list[str] = []
    os_open, builtin_open = os.open, open

    def counting_os_open(name: object, *args: object, **kwargs: object) -> int:
        opened.append(str(name))
        return os_open(name, *args, **kwargs)  # type: ignore[arg-type]

    def counting_open(name: object, *args: object, **kwargs: object) -> object:
        opened.append(str(name))
        return builtin_open(name, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(os, "open", counting_os_open)
    monkeypatch.setattr("builtins.open", counting_open)
    registry = ConverterRegistry()
    converter = registry.create("WATSStandardJsonConverter", {})
    conversion = convert_file(path, converter, ConverterContext(station_name="s"))
    assert opened.count(str(path)) == 1
    assert conversion.content_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_preloaded_bytes_are_served_only_for_that_file_and_thread(tmp_path: Path) -> None:
    path, other = tmp_path / "a.log", tmp_path / "b.log"
    path.write_bytes(b"on disk")
    other.write_bytes(b"other")
    seen: list[bytes] = []
    with preloaded(path, b"as hashed"):
        assert read_bytes(path, 100, "test") == b"as hashed"
        assert read_bytes(other, 100, "test") == b"other"
        with pytest.raises(ConversionError, match="over"):
            read_bytes(path, 3, "test")  # the format's cap still holds
        thread = threading.Thread(target=lambda: seen.append(read_bytes(path, 100, "test")))
        thread.start()
        thread.join()
    assert seen == [b"on disk"]
    assert read_bytes(path, 100, "test") == b"on disk"


class _Swapping(Converter):
    """Reads the file after someone swapped it for another and back: the error it raises
    quotes what it read."""

    name = "Swapping"

    def convert(self, path: Path, context: ConverterContext) -> dict[str, object]:
        swapped = path.with_name(".swap")
        os.rename(path, swapped)  # away and back: same inode, same size and mtime
        os.rename(swapped, path)
        raise ConversionError(f"{path.name}: line 1 reads 'root:$6$...'")


def test_an_error_from_a_file_that_was_swapped_meanwhile_is_not_reported(
        tmp_path: Path) -> None:
    path = tmp_path / "r.log"
    path.write_text("PASS")
    with pytest.raises(IncompleteFileError, match="changed while it was being converted"):
        convert_file(path, _Swapping(), ConverterContext(station_name="s"))


def test_a_wsjf_file_that_is_not_utf8_is_an_error_naming_the_byte(tmp_path: Path) -> None:
    report = json.dumps(wsjf_report(1, report_id=str(uuid.uuid4()), sn="SN-\u00c5"),
                        ensure_ascii=False).encode()
    at = report.index("\u00c5".encode())
    path = tmp_path / "r.json"
    path.write_bytes(report[:at] + b"\xc5" + report[at + 2:])  # a cp1252 byte in UTF-8 text
    with pytest.raises(ConversionError, match=rf"not valid utf-8 \(byte {at}\)"):
        convert_source(Settings(station_name="s"), ConverterRegistry(), path, None)
    path.write_bytes(report)
    assert convert_source(Settings(station_name="s"), ConverterRegistry(), path,
                          None).reports[0]["sn"] == "SN-\u00c5"

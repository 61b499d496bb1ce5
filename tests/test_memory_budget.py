"""The memory budget (`converters.max_memory_mb`): estimates, refusals that name the setting,
reservations granted in order, the check converters make while reading, and the large-report
path that keeps one copy of a report in memory (serialised and queued in pieces)."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pywats_client.cli.doctor import Status as DoctorStatus
from pywats_client.cli.doctor import check_memory as check_memory_doctor
from pywats_client.config.settings import ConverterSettings, Settings
from pywats_client.converters import ConversionError, ConverterRegistry
from pywats_client.converters.memory import (
    BASE_MB,
    DEFAULT_RATIO,
    MB,
    MemoryBudget,
    check_memory,
    estimate,
    largest_file,
    ratio_of,
    rss_bytes,
)
from pywats_client.converters.registry import BUILTIN_CONVERTERS
from pywats_client.converters.wsjf import WATSStandardJsonConverter
from pywats_client.errors import QueueError, ReportValidationError
from pywats_client.queue.store import DurableQueue, State, body_digest, decode_item
from pywats_client.report.model import JsonPieces, ReportDict, to_json_bytes, to_json_parts
from pywats_client.service.pipeline import (
    convert_file,
    convert_source,
    make_context,
    queue_reports,
)
from tests.bigfiles import big_wsjf, big_wsxf, samples_present
from tests.station import wait_until, wsjf_report


class _Plugin:
    name = "SomePlugin"


def test_every_builtin_converter_states_a_measured_ratio() -> None:
    registry = ConverterRegistry()
    for name in BUILTIN_CONVERTERS:
        if name == "AIConverter":
            continue
        ratio = registry.create(name).memory_ratio  # type: ignore[attr-defined]
        assert isinstance(ratio, float) and 1 < ratio <= 60, name
    assert ratio_of(_Plugin()) == DEFAULT_RATIO  # a plugin without one: the default


def test_the_estimate_and_the_largest_file_follow_the_ratio() -> None:
    converter = WATSStandardJsonConverter()
    assert estimate(converter, 10 * MB) == int(10 * MB * converter.memory_ratio)
    most = largest_file(100, converter)
    assert estimate(converter, most) <= (100 - BASE_MB) * MB < estimate(converter, most + 64)


def test_a_file_the_budget_can_never_hold_is_refused_naming_the_setting(tmp_path: Path) -> None:
    path = tmp_path / "long.json"
    path.write_bytes(b" " * (2 * MB))
    budget = MemoryBudget(BASE_MB + 10)  # 10 MB for conversions: a 2 MB WSJF needs 13
    with pytest.raises(ConversionError) as caught, budget.reserve(
            path, WATSStandardJsonConverter(), 2 * MB):
        pytest.fail("granted")
    text = str(caught.value)
    assert "long.json is 2.0 MB" in text and "converters.max_memory_mb" in text
    assert "This station takes WATSStandardJsonConverter files up to 1.5 MB" in text
    assert budget.used == 0


def test_the_convert_command_refuses_the_same_file(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps(wsjf_report(1)) + " " * MB)
    settings = Settings(converters=ConverterSettings(max_memory_mb=BASE_MB + 5))
    with pytest.raises(ConversionError, match=r"over the 45 MB this station allows "
                                              r"\(converters.max_memory_mb\), so it was not read"):
        convert_source(settings, ConverterRegistry(), path, None)
    roomy = Settings(converters=ConverterSettings(max_memory_mb=BASE_MB + 20))
    assert convert_source(roomy, ConverterRegistry(), path, None).reports


class _Sized:
    """A converter whose estimate is exactly its file's size."""

    name = "Sized"
    memory_ratio = 1.0


def _holder(budget: MemoryBudget, size: int, log: list[str], name: str
            ) -> tuple[threading.Thread, threading.Event]:
    """A thread that reserves `size` bytes, notes when it got them, and holds them until its
    event is set."""
    release = threading.Event()

    def hold() -> None:
        with budget.reserve(Path(name), _Sized(), size):
            log.append(name)
            release.wait(30)

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    return thread, release


def test_a_big_file_converts_alone_and_the_files_behind_it_wait(tmp_path: Path) -> None:
    budget = MemoryBudget(BASE_MB + 10)  # 10 MB to share
    got: list[str] = []
    small, release_small = _holder(budget, 2 * MB, got, "small-1")
    wait_until(lambda: got == ["small-1"], 10, "the first small file")
    big, release_big = _holder(budget, 9 * MB + MB // 2, got, "big")  # not beside it: waits
    wait_until(lambda: len(budget._waiting) == 1, 10, "the big file to wait")
    late, release_late = _holder(budget, 1 * MB, got, "small-2")  # fits now, but comes after
    wait_until(lambda: len(budget._waiting) == 2, 10, "the later small file to wait")
    assert got == ["small-1"]  # small-2 would fit beside small-1, but the big file is first
    release_small.set()
    wait_until(lambda: got == ["small-1", "big"], 10, "the big file")
    # small-2 does not fit in what the big file leaves: it waits until the big one is done
    assert budget.used == 9 * MB + MB // 2 and len(budget._waiting) == 1
    release_big.set()
    wait_until(lambda: got == ["small-1", "big", "small-2"], 10, "the last file")
    release_late.set()
    for thread in (small, big, late):
        thread.join(10)
    assert budget.used == 0 and not budget._waiting


def test_small_files_go_on_side_by_side_within_what_is_left() -> None:
    budget = MemoryBudget(BASE_MB + 10)
    got: list[str] = []
    holders = [_holder(budget, 3 * MB, got, f"small-{n}") for n in range(3)]
    wait_until(lambda: len(got) == 3, 10, "three small files at once")
    assert budget.used == 9 * MB
    for thread, release in holders:
        release.set()
        thread.join(10)
    assert budget.used == 0


def test_converters_check_the_process_while_they_read() -> None:
    check_memory("outside a conversion")  # no budget in force: nothing to check
    assert rss_bytes() > BASE_MB * MB  # a test process is larger than the floor below
    tight = MemoryBudget(BASE_MB + 1)
    stopped = (r"x: the conversion stopped at \d+ MB of memory, over the 41 MB this station "
               r"allows \(converters.max_memory_mb\); this station takes Sized files up to "
               r"1.0 MB")
    with tight.reserve(Path("x"), _Sized(), 1024), pytest.raises(ConversionError,
                                                                 match=stopped):
        check_memory("x")
    check_memory("after it")


@pytest.mark.skipif(not samples_present(), reason="../shared/samples is absent")
def test_an_xml_converter_stops_when_the_process_goes_over(tmp_path: Path) -> None:
    path = big_wsxf(tmp_path / "big.xml", 3 * MB)
    converter = ConverterRegistry().create("WATSStandardXMLConverter")
    converter.memory_ratio = 0.001  # type: ignore[attr-defined]  # let it start
    budget = MemoryBudget(BASE_MB + 1)  # below what this process already holds
    with budget.reserve(path, converter, path.stat().st_size), pytest.raises(
            ConversionError, match="the conversion stopped at"):
        convert_file(path, converter, make_context(Settings(), path))


# -- one copy of a large report ---------------------------------------------------------------


def _large(steps: int) -> ReportDict:
    report = ReportDict(wsjf_report(1, report_id=str(uuid.uuid4())))
    root = report["root"]
    one = root["steps"][0]
    root["steps"] = [dict(one, id=n + 1, name=f"V{n}", steps=[]) if n % 7 == 0 else
                     dict(one, id=n + 1, name=f"V{n}") for n in range(steps)]
    root["steps"][3]["steps"] = [dict(one, id=10**6 + n) for n in range(50)]
    report["unicode"] = "æøå ✓"
    return report


def test_a_large_report_is_serialised_in_pieces_with_the_same_bytes() -> None:
    report = _large(20_000)
    whole = to_json_bytes(report)
    assert to_json_parts(report) == [whole]  # its source size is unknown: one piece
    report.source_bytes = len(whole)
    parts = to_json_parts(report)
    assert len(parts) > 3 and b"".join(parts) == whole
    assert max(map(len, parts)) < 2 * 256 * 1024


def test_pieces_keep_what_json_refuses_a_validation_error() -> None:
    report = _large(10)
    report["root"]["steps"][2]["numericMeas"][0]["value"] = float("nan")
    report.source_bytes = 10 * MB
    with pytest.raises(ReportValidationError, match="NaN or Infinity"):
        to_json_parts(report)


def test_a_report_in_pieces_is_queued_and_claimed_whole(tmp_path: Path) -> None:
    report = _large(20_000)
    whole = to_json_bytes(report)
    report.source_bytes = len(whole)
    queue = DurableQueue(tmp_path / "queue")
    queue.ensure_layout()
    put = queue.put(to_json_parts(report), report_id=report["id"], source="big.json")
    item = queue.claim(put.id)
    assert item is not None and item.body == whole
    stored = queue.folder(State.PROCESSING) / f"{put.id}.wsq"
    assert decode_item(stored.read_bytes())[1] == whole


class _CountedPieces(JsonPieces):
    """Pieces that count how often they are read."""

    readings = 0

    def __iter__(self) -> Iterator[bytes]:
        self.readings += 1
        return super().__iter__()


def test_large_pieces_are_made_again_each_reading_and_know_their_digest() -> None:
    report = _large(20_000)
    whole = to_json_bytes(report)
    report.source_bytes = len(whole)
    parts = to_json_parts(report)
    assert isinstance(parts, JsonPieces)
    assert b"".join(parts) == whole and b"".join(parts) == whole
    assert parts.size == len(whole) and len(parts) == len(list(parts)) > 3
    assert parts.sha256 == body_digest(whole) == body_digest(parts)
    assert parts[1] == list(parts)[1]


def test_a_report_in_pieces_is_read_once_to_be_queued(tmp_path: Path) -> None:
    report = _large(20_000)
    report.source_bytes = 10 * MB
    parts = _CountedPieces(report)  # read once already: for its size and digest
    queue = DurableQueue(tmp_path / "queue")
    queue.ensure_layout()
    put = queue.put(parts, report_id=report["id"], source="big.xml")
    assert parts.readings == 2  # and once more, to be written, with the file's own digest
    stored = queue.folder(State.PENDING) / f"{put.id}.wsq"
    header, body = decode_item(stored.read_bytes())
    assert body == to_json_bytes(report) and header.body_sha256 == parts.sha256


def test_a_report_that_changes_while_it_is_queued_is_not_queued(tmp_path: Path) -> None:
    report = _large(2_000)
    report.source_bytes = 10 * MB
    parts = to_json_parts(report)
    report["root"]["steps"][5]["name"] = "changed after its digest was taken"
    queue = DurableQueue(tmp_path / "queue")
    queue.ensure_layout()
    with pytest.raises(QueueError, match="changed while it was being queued"):
        queue.put(parts, report_id=report["id"], source="big.xml")
    assert not any(queue.folder(State.PENDING).iterdir())
    assert not any((tmp_path / "queue" / "tmp").iterdir())


@pytest.mark.skipif(not samples_present(), reason="../shared/samples is absent")
def test_a_big_wsjf_file_is_converted_and_queued_in_a_budget(tmp_path: Path) -> None:
    path = big_wsjf(tmp_path / "big.json", 4 * MB)
    settings = Settings(converters=ConverterSettings(max_memory_mb=BASE_MB + 40))
    conversion = convert_source(settings, ConverterRegistry(), path, None)
    report: Any = conversion.reports[0]
    assert report.source_bytes == path.stat().st_size
    queue = DurableQueue(tmp_path / "queue")
    queue.ensure_layout()
    queue_reports(queue, conversion)
    item = queue.claim(report["id"])
    assert item is not None and json.loads(item.body) == json.loads(to_json_bytes(report))


# -- what the doctor says ----------------------------------------------------------------------


def test_the_doctor_says_what_size_of_file_this_station_takes() -> None:
    settings = Settings(converters=ConverterSettings(max_memory_mb=100))
    result = check_memory_doctor(settings, total_mb=1024, service_max_mb=128)
    assert result.status is DoctorStatus.OK, result
    most = largest_file(100, WATSStandardJsonConverter()) / MB
    assert f"{most:.1f} MB (WATSStandardJsonConverter)" in result.found
    assert "this station takes files up to " in result.found
    assert "converters.max_memory_mb 100 MB" in result.found


def test_the_doctor_warns_of_a_budget_the_station_cannot_give() -> None:
    roomy = Settings(converters=ConverterSettings(max_memory_mb=400))
    small_machine = check_memory_doctor(roomy, total_mb=480, service_max_mb=0)
    assert small_machine.status is DoctorStatus.WARN
    assert "this machine has 480 MB" in small_machine.found
    assert "converters.max_memory_mb" in small_machine.fix
    tight_unit = check_memory_doctor(roomy, total_mb=1024, service_max_mb=410)
    assert tight_unit.status is DoctorStatus.WARN and "MemoryMax" in tight_unit.found


@pytest.mark.parametrize("damage", ["cut", "flip", "lengths"])
def test_a_damaged_large_item_is_quarantined_like_any_other(tmp_path: Path, damage: str) -> None:
    report = _large(20_000)
    report.source_bytes = 10 * MB
    queue = DurableQueue(tmp_path / "queue")
    queue.ensure_layout()
    put = queue.put(to_json_parts(report), report_id=report["id"])
    stored = queue.folder(State.PENDING) / f"{put.id}.wsq"
    data = bytearray(stored.read_bytes())
    assert len(data) > 1 << 20  # read for the upload in parts
    if damage == "cut":
        del data[-1000:]
    elif damage == "lengths":  # a first line naming lengths the file cannot have
        first_end = data.index(b"\n")
        magic, head_len, _body_len, digest = bytes(data[:first_end]).split(b" ")
        data[:first_end] = b" ".join([magic, head_len, b"-" + b"9" * (len(_body_len) - 1),
                                      digest])
    else:
        data[len(data) // 2] ^= 0x01
    stored.write_bytes(bytes(data))
    assert queue.claim(put.id) is None
    assert [p.name.split(".")[0] for p in queue.folder(State.CORRUPT).iterdir()] == [put.id]

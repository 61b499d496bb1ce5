"""Every format tells a file still being written from a finished one: a prefix of a real file
is either incomplete or converts into exactly the reports the whole file starts with (never
a report with steps missing), whether the converter is bound or found by auto-detection."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pywats_client.converters import ConverterContext, ConverterRegistry
from pywats_client.converters.auto import NotRecognised
from pywats_client.errors import ConversionError, IncompleteFileError
from pywats_client.service.pipeline import choose_converter
from tests.conftest import SAMPLES

FIXTURES = Path(__file__).resolve().parent / "fixtures"
# The server's process list is known, so files that name their process are converted.
CONTEXT = ConverterContext(defaults={"process_code": 10, "part_number": "PN", "revision": "A",
                                     "operator": "op"},
                           processes={"SW Debug": 10, "PCBA test": 50})
# converter -> the files of its format (samples where present, and the test fixtures)
FILES = {
    "WATSStandardJsonConverter": [SAMPLES / "wsjf" / "uur_example.json",
                                  SAMPLES / "wsjf" / "WATS - WSJF UUT Example file.json"],
    "WATSStandardXMLConverter": [SAMPLES / "wsxf" / "uut-wsxf.xml",
                                 SAMPLES / "wsxf" / "uur-wsxf.xml"],
    "WATSStandardTextConverter": [SAMPLES / "wstf" / "WatsStandardTextFormat.txt",
                                  FIXTURES / "wstf" / "multiple_uuts.txt",
                                  FIXTURES / "wstf" / "all_step_kinds.txt"],
    "ATMLConverter": [SAMPLES / "atml" / "ATML 2.02 [123456789][2 30 27 PM][5 15 2019].XML",
                      FIXTURES / "atml" / "batch_4_sockets_5_00.xml"],
    "KeysightI3070Converter": [SAMPLES / "i3070" / "FelixSnz_2-210805125029095MCALLEN241.log"],
    "TeradyneICTConverter": [SAMPLES / "teradyne_gr228x" / "43420_BIO2.LOG"],
    "TeradyneSpectrumICTConverter": [SAMPLES / "teradyne_spectrum" / "sample_ict_data.txt"],
    "SPEAConverter": [FIXTURES / "spea" / "two_boards_ddmm.csv",
                      FIXTURES / "spea" / "aborted_none.csv"],
    "SeicaXMLConverter": [FIXTURES / "seica" / "panel_three_boards.xml"],
    "XJTAGConverter": [SAMPLES / "xjtag" / "1234_14_25_32_10.08.2018_Pass.xjlog"],
}
CASES = [(name, path) for name, paths in FILES.items() for path in paths]
MAX_CUTS = 160
# CTRD has no end-of-board record (the trailer's USER lines are the test program's, and
# optional): cut between two entries, a file is whole to the format, and only the writer's
# close tells it is not finished. Cut inside an entry, it is incomplete.
CUT_BETWEEN_ENTRIES_IS_WHOLE = {"TeradyneSpectrumICTConverter"}


@pytest.fixture(autouse=True)
def _quiet() -> Iterator[None]:
    # Converters warn about what they repair in a cut file; thousands of lines say nothing here.
    logging.disable(logging.WARNING)
    yield
    logging.disable(logging.NOTSET)


def cuts(data: bytes) -> list[int]:
    """Where a writer may have stopped: every few bytes, each of the last line ends with the
    bytes around it, the first bytes (where detection is blind), and just before the end."""
    ends = [n + 1 for n, byte in enumerate(data) if byte == 0x0A]
    step = max(1, len(data) // MAX_CUTS)
    chosen = {*range(0, len(data), step), *range(min(len(data), 40)),
              *(e + d for e in ends[-12:] for d in (-2, -1, 0, 1)),
              *ends[::max(1, len(ends) // 40)], len(data) - 1, len(data) - 2}
    return sorted(c for c in chosen if 0 <= c < len(data))


def as_list(result: Any) -> list[Any]:
    return result if isinstance(result, list) else [result]


@pytest.mark.parametrize(("name", "path"), CASES, ids=[f"{n}-{p.name[:24]}" for n, p in CASES])
def test_a_prefix_is_incomplete_or_whole_reports(name: str, path: Path, tmp_path: Path) -> None:
    if not path.is_file():
        pytest.skip(f"{path} is not here")
    converter = ConverterRegistry().create(name)
    data = path.read_bytes()
    whole = as_list(converter.convert(path, CONTEXT))
    cut_file = tmp_path / f"cut{path.suffix}"
    for cut in cuts(data):
        cut_file.write_bytes(data[:cut])
        try:
            reports = as_list(converter.convert(cut_file, CONTEXT))
        except IncompleteFileError:
            continue
        except ConversionError as exc:
            pytest.fail(f"{name} calls the first {cut} bytes of {path.name} an error, not "
                        f"incomplete: {exc}")
        if name in CUT_BETWEEN_ENTRIES_IS_WHOLE:
            assert data[:cut].rstrip().endswith(b")"), f"converted when cut at {cut}"
            continue
        assert reports == whole[:len(reports)], (
            f"the first {cut} bytes of {path.name} made a report the whole file does not have")
        if len(whole) == 1:  # only line ends and blanks may be missing from the one unit
            assert not data[cut:].strip(), f"{path.name} converted when cut at {cut}"


@pytest.mark.parametrize(("name", "path"), CASES, ids=[f"{n}-{p.name[:24]}" for n, p in CASES])
def test_auto_detection_waits_for_a_file_too_short_to_recognise(
        name: str, path: Path, tmp_path: Path) -> None:
    if not path.is_file():
        pytest.skip(f"{path} is not here")
    registry = ConverterRegistry()
    data = path.read_bytes()
    cut_file = tmp_path / f"cut{path.suffix}"
    for cut in [c for c in cuts(data) if c < 600]:
        cut_file.write_bytes(data[:cut])
        try:
            converter, _ = choose_converter(registry, cut_file, name=None)
            converter.convert(cut_file, CONTEXT)
        except IncompleteFileError:
            continue
        except ConversionError as exc:
            pytest.fail(f"the first {cut} bytes of {path.name}: {exc}")
        assert converter.name == name, f"cut at {cut}, {path.name} was read by {converter.name}"


@pytest.mark.parametrize(("name", "text"), [
    ("notes.txt", b"hello world"),
    ("notes.txt", b"hello\nworld\n"),
    ("data.xml", b"<html><body>not a report</body></html>\n"),
    ("data.json", b'{"hello": "world"}'),
    ("big.txt", b"x" * (70 * 1024)),
    ("garbage.bin", b"\x00 not a report"),  # no pattern names it: nobody is asked
    ("board", b"hello"),
])
def test_a_file_nobody_reads_is_still_an_error_at_once(name: str, text: bytes,
                                                       tmp_path: Path) -> None:
    path = tmp_path / name
    path.write_bytes(text)
    registry = ConverterRegistry()
    with pytest.raises(ConversionError) as caught:
        converter, _ = choose_converter(registry, path, name=None)
        converter.convert(path, CONTEXT)
    assert not isinstance(caught.value, IncompleteFileError), caught.value


def test_the_auto_converter_waits_too(tmp_path: Path) -> None:
    registry = ConverterRegistry()
    path = tmp_path / "uut.xml"
    path.write_bytes(b'<?xml version="1.0" encoding="utf-8"?>\n')
    with pytest.raises(IncompleteFileError, match="no converter recognises it yet"):
        registry.create("AIConverter").convert(path, CONTEXT)
    path.write_bytes(b"<nothing/>\n")
    with pytest.raises(NotRecognised):
        registry.create("AIConverter").convert(path, CONTEXT)

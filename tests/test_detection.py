"""Auto-detection's shortcuts change no answer: a built-in that cannot reach the best score
found is not asked (its ceiling holds on every sample), and each detector's quick refusal
refuses only what its full check would."""

from __future__ import annotations

import functools
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pywats_client.converters import (
    BUILTIN_CONVERTERS,
    ConversionError,
    ConverterRegistry,
    spea,
    teradyne_gr228x,
    teradyne_spectrum,
    wsjf,
    wstf,
)
from pywats_client.converters import registry as registry_module
from pywats_client.converters.base import HEAD_SIZE
from pywats_client.converters.registry import DETECT_CEILINGS
from tests.conftest import SAMPLES, needs_samples

BUILTINS = [name for name in BUILTIN_CONVERTERS if name != "AIConverter"]
WSJF_HEAD = b'{"type": "T", "pn": "PN1", "sn": "SN1", "rev": "A", "root": {}}'


def _samples() -> list[Path]:
    if not SAMPLES.is_dir():
        return []
    return sorted(p for p in SAMPLES.rglob("*") if p.is_file() and p.name != "PROVENANCE.md")


# -- the ceilings -----------------------------------------------------------------------------


def test_every_builtin_has_a_ceiling() -> None:
    assert sorted(DETECT_CEILINGS) == sorted(BUILTINS)
    assert all(0.0 < ceiling <= 1.0 for ceiling in DETECT_CEILINGS.values())


@needs_samples
@pytest.mark.parametrize("name", BUILTINS)
def test_no_builtin_scores_above_its_ceiling_on_any_sample(name: str) -> None:
    converter = ConverterRegistry().create(name)
    for path in _samples():
        data = path.read_bytes()[:HEAD_SIZE]
        for head in {data, data[:100], data[:4096]}:
            score, _ = converter.detect_with_reason(path, head)
            assert score <= DETECT_CEILINGS[name], (path, len(head), score)


# -- the registry -----------------------------------------------------------------------------


def _plugin(tmp_path: Path, source: str) -> Path:
    folder = tmp_path / "converters"
    folder.mkdir()
    (folder / "plugin.py").write_text(textwrap.dedent(source), encoding="utf-8")
    return folder


def _scoring_plugin(tmp_path: Path, name: str, pattern: str, score: float) -> Path:
    """A plugin converter whose detect() gives every file `score`."""
    return _plugin(tmp_path, f'''
        from pywats_client.converters import Converter

        class {name}(Converter):
            name = "{name}"
            file_patterns = ("{pattern}",)

            def detect(self, path, head):
                return {score}
    ''')


def test_a_builtin_that_cannot_reach_the_best_score_is_not_asked() -> None:
    detection = ConverterRegistry().detect(Path("r.json"), WSJF_HEAD)
    asked = {v.name for v in detection.verdicts}
    assert detection.name == "WATSStandardJsonConverter"
    # The 0.98 of WSJF is out of reach of every converter whose best is 0.95...
    assert asked.isdisjoint(name for name, top in DETECT_CEILINGS.items() if top < 0.98)
    # ...and those that could tie or beat it were asked.
    assert asked == {name for name, top in DETECT_CEILINGS.items() if top >= 0.98}


def test_a_plugin_is_always_asked(tmp_path: Path) -> None:
    folder = _scoring_plugin(tmp_path, "LateConverter", "*.late", 0.1)
    detection = ConverterRegistry(plugin_dir=folder).detect(Path("r.json"), WSJF_HEAD)
    assert detection.name == "WATSStandardJsonConverter"
    assert "LateConverter" in {v.name for v in detection.verdicts}


def test_a_score_above_its_ceiling_makes_every_converter_asked(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # As if WSJF's detection were changed to be surer, and the table not.
    monkeypatch.setitem(DETECT_CEILINGS, "WATSStandardJsonConverter", 0.5)
    detection = ConverterRegistry().detect(Path("r.json"), WSJF_HEAD)
    assert detection.name == "WATSStandardJsonConverter"
    assert {v.name for v in detection.verdicts} == set(BUILTINS)


def test_a_tie_lists_every_converter_asked_or_not(tmp_path: Path) -> None:
    folder = _scoring_plugin(tmp_path, "TwinConverter", "*.json", 0.98)
    registry = ConverterRegistry(plugin_dir=folder)
    with pytest.raises(ConversionError, match="ambiguous") as error:
        registry.detect(Path("r.json"), WSJF_HEAD)
    for name in BUILTINS:  # those below 0.98 too, as without the shortcut
        assert f"{name} " in str(error.value)


def test_the_detectors_are_kept_once_all_could_be_made(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    folder = _plugin(tmp_path, '''
        from pywats_client.converters import Converter

        class ShyConverter(Converter):
            name = "ShyConverter"
            file_patterns = ("*.shy",)
            made = 0

            def __init__(self, **arguments):
                type(self).made += 1
                if type(self).made == 1:
                    raise RuntimeError("not yet")
                super().__init__(**arguments)

            def detect(self, path, head):
                return 0.1
    ''')
    registry = ConverterRegistry(plugin_dir=folder)
    first = registry.detect(Path("r.json"), WSJF_HEAD)
    assert "ShyConverter" not in {v.name for v in first.verdicts}
    assert any("ShyConverter" in str(e) for e in registry.errors)
    second = registry.detect(Path("r.json"), WSJF_HEAD)  # tried again, and made this time
    assert "ShyConverter" in {v.name for v in second.verdicts}
    monkeypatch.setattr(registry_module.ConverterRegistry, "_detector",
                        lambda self, name: pytest.fail("made again"))
    assert registry.detect(Path("r.json"), WSJF_HEAD).name == "WATSStandardJsonConverter"


# -- the quick refusals -----------------------------------------------------------------------

# Pieces that sit on the edges of the quick refusals: blanks of every kind, byte order marks,
# the markers each format starts with, letters upper() makes an S of, bytes that are no UTF-8.
ANY_PATH = Path("report")  # the built-ins' detections judge the content alone
PIECES = [
    b"", b" ", b"\t", b"\r", b"\n", b"\r\n", b"\x00", b"\x0b", b"\x0c", b"\x1c", b"\x1f",
    b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", "\u00a0".encode(), "\u2003".encode(),
    "\u017f".encode(), "\ufb05".encode(), b"\x80", b"\xc3", b"-", b"--", b"a", b"x", b"@",
    b"{", b"[", b"(", b"}", b";", b"=", b"F", b"s", b"--Header-Start--", b"-- header-start --",
    b"--Step-Data-Start--", b"FORMAT;", b"start;", b"START;1;2;3;4;5;6;7", b"\nANL;",
    b"\nFUNC;", b'"type": "T", "pn": "1", "sn": "2"', b'"root": {', b"{@BATCH|",
    b"@01-Jan-2020 10:00:00 SN 7", b"@1-feb-21 9:05 SN", b"prog.OBC[ 1-Jan-20", b"(STEP:",
    b"(SECTION_NAME:", b"(SNAME:", b"(PAGE:", b'(PROGRAM_NAME: "p"', b"\n@",
]
HEADS = st.lists(st.sampled_from(PIECES), max_size=12).map(b"".join)


def _on_any_path(detect: Callable[[Path, bytes], tuple[float, str]]
                 ) -> Callable[[bytes], tuple[float, str]]:
    return functools.partial(detect, ANY_PATH)


def same_answers(head: bytes) -> None:
    assert wstf._detect(ANY_PATH, head) == wstf._detect_head(head)
    assert spea._detect(ANY_PATH, head) == spea._detect_head(head)
    assert wsjf._detect(ANY_PATH, head) == wsjf._detect_head(head)
    assert teradyne_spectrum._detect(head) == teradyne_spectrum._detect_head(head)
    assert teradyne_gr228x._has_uut_line(head) == (
        teradyne_gr228x._DETECT_UUT_RE.search(head) is not None)


@settings(max_examples=600, deadline=None)
@given(head=HEADS)
def test_quick_refusals_change_no_answer(head: bytes) -> None:
    same_answers(head)


@needs_samples
def test_quick_refusals_change_no_answer_on_the_samples() -> None:
    for path in _samples():
        data = path.read_bytes()[:HEAD_SIZE]
        for head in (data, data[:1], data[:7], data[:4096]):
            same_answers(head)


@pytest.mark.parametrize(("detect", "head", "score"), [
    (_on_any_path(wstf._detect),
     b"\xef\xbb\xbf\r\n \x00\n--Header-Start--\n--Step-Data-Start--", 0.99),
    (_on_any_path(spea._detect), " \u017ftart;1;2;3;4;5;6;7;8\nANL;x".encode(), 0.95),
    (_on_any_path(spea._detect), b"\x1c\x0bformat;x\nFUNC;1", 0.95),
    (_on_any_path(wsjf._detect), "\x1c\u00a0".encode() + WSJF_HEAD, 0.98),
    (teradyne_spectrum._detect, b'\xef\xbb\xbf (PROGRAM_NAME: "p") (STEP:', 0.95),
], ids=["wstf", "spea-long-s", "spea-blanks", "wsjf-blanks", "spectrum-bom"])
def test_a_file_behind_unusual_blanks_is_still_recognised(detect: object, head: bytes,
                                                          score: float) -> None:
    assert callable(detect)
    assert detect(head)[0] == score

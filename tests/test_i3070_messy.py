"""i3070 logs as real testers write them, not as the grammar says: records opened and closed
lines apart and nested far deeper than usual, closing braces missing or one too many, a board
that failed its functional test (status 09). Every measurement must be kept, the repairs
reported, and only a hostile file refused. Also where the part revision comes from."""

from __future__ import annotations

import logging
import random
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pywats_client.converters import ConverterContext
from pywats_client.converters.i3070 import KeysightI3070Converter
from pywats_client.converters.i3070_records import MAX_DEPTH, Repairs, parse_records
from pywats_client.errors import ConversionError, IncompleteFileError
from pywats_client.service.pipeline import convert_file

FIXTURES = Path(__file__).parent / "fixtures" / "i3070"
CONVERTER = KeysightI3070Converter()
CONTEXT = ConverterContext(station_name="ST-01", defaults={"process_code": 10})
# What the grammar parser refused before: "records are nested more than 32 deep".
OLD_LIMIT = 32


def reports(path: Path, context: ConverterContext = CONTEXT) -> list[dict[str, Any]]:
    return convert_file(path, CONVERTER, context).reports


def measurements(report: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    stack = list(report["root"]["steps"])
    while stack:
        step = stack.pop()
        found.extend(step.get("numericMeas", []))
        stack.extend(step.get("steps", []))
    return found


def naive_depth(text: str) -> int:
    """How deep the records nest by their braces alone (as the grammar reads them)."""
    depth = deepest = 0
    for n, char in enumerate(text):
        if char == "{" and text.startswith("{@", n):
            depth += 1
            deepest = max(deepest, depth)
        elif char == "}":
            depth = max(depth - 1, 0)
    return deepest


# -- a hand-written messy log ----------------------------------------------------------------


def test_a_messy_functional_failure_keeps_every_measurement(
        caplog: pytest.LogCaptureFixture) -> None:
    path = FIXTURES / "messy_status09.log"
    with caplog.at_level(logging.WARNING, logger="pywats_client.converters.i3070"):
        [report] = reports(path)
    assert (report["sn"], report["pn"], report["result"]) == ("SN-9101", "PCB-9100", "F")
    assert report["uut"]["errorCode"] == 9
    assert report["uut"]["errorMessage"] == "i3070 test status 9: functional test failed"
    # The UUT type revision is empty; the testplan revision beside it is filled.
    assert report["rev"] == "RevA"
    steps = {step["name"]: step for step in report["root"]["steps"]}
    assert list(steps) == ["pins", "shorts", "r1", "r2", "r3", "c1", "func"]
    # r2 lacked its '}', r3's first analog record too: both are closed where the next began.
    assert [m["value"] for m in steps["r2"]["numericMeas"]] == [2000.0]
    assert [(m["name"], m["status"]) for m in steps["r3"]["numericMeas"]] == [
        ("low", "P"), ("high", "F")]
    # A '}' too many closed the board before c1: c1 is still the board's.
    assert steps["c1"]["numericMeas"][0]["value"] == 1e-06
    # Messages opened and closed lines apart nest; all of them are the step's text.
    assert steps["func"]["reportText"] == (
        "functional test: start\n5V rail out of limits\nfunctional test failed")
    assert steps["func"]["status"] == "F"
    assert steps["r3"]["causedUUTFailure"] is True  # the first failed step of a failed board
    assert len(measurements(report)) == 10  # 6 analog, the pins count and 3 shorts counts
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    text = warning.getMessage()
    assert text.startswith(f"{path}: the i3070 log's braces do not balance; repaired, every "
                           "record kept: 2 records lacked a closing '}'")
    assert "first: @BLOCK of line 13, closed at line 15" in text
    assert "1 '}' too many closed a record early" in text and "into @BTEST of line 2" in text
    assert "1 '}' closed no record and was ignored (first: line 34)" in text


def test_a_well_formed_log_is_not_reported_as_repaired(caplog: pytest.LogCaptureFixture
                                                       ) -> None:
    with caplog.at_level(logging.WARNING):
        reports(FIXTURES / "digital_failed.log")
    assert not caplog.records


# -- a big generated one ------------------------------------------------------------------------


@dataclass
class MessyLog:
    """A generated log, and what a reader must find in it."""

    text: str
    values: list[float] = field(default_factory=list)  # every analog measurement, in order
    failed: int = 0


def messy_log(tests: int = 946, seed: int = 9) -> MessyLog:
    """One board, status 09, `tests` analog measurements written every messy way seen:
    blocks that are closed dozens of lines later (so that by their braces they nest deeper
    than the old limit), analog records and messages closed lines apart, blocks without
    their '}', stray '}' between blocks, and a functional block with a long chain of
    messages."""
    rng = random.Random(seed)
    log = MessyLog("")
    lines = ["{@BATCH|PCB-7070||FX-7|1||btest|240301101500|op7|ict-07|PCB-7070-TP|RevA|||",
             "{@BTEST|SN-7070-1|09|240301101530|000600|0|analog||n|n|240301102530||001|"]

    def analog(kind: str = "RES", name: str = "") -> str:
        value = round(rng.uniform(900, 1100), 3)
        fails = rng.random() < 0.05
        log.values.append(value)
        log.failed += fails
        sub = f"|{name}" if name else ""
        return (f"{{@A-{kind}|{int(fails)}|{value:+.6E}{sub}"
                f"{{@LIM2|{1050 if not fails else 950:+.6E}|+9.000000E+02}}")

    n = 0
    while len(log.values) < tests:
        n += 1
        style = n % 7
        left = tests - len(log.values)
        if style == 0 and left >= 40:
            # Forty blocks opened one after the other, their '}' all written afterwards.
            for k in range(40):
                lines.append(f"{{@BLOCK|deep{n}_{k}|00")
                lines.append(analog() + "}")
            lines.extend("}" * 40)
        elif style == 1:
            lines.append(f"{{@BLOCK|q{n}|00")  # a transistor: two subtests, lines apart
            lines.append(analog("DIO", "B-E"))
            lines.append("}")
            lines.append(analog("DIO", "B-C") + "}")
            lines.append("}")
        elif style == 2:
            lines.append(f"{{@BLOCK|open{n}|00")  # never closed
            lines.append(analog() + "}")
        elif style == 3:
            lines.append(f"{{@BLOCK|r{n}|00")
            lines.append(analog() + "}")
            lines.append("}")
            lines.append("}")  # one too many
        elif style == 4 and left >= 1:
            lines.append(f"{{@BLOCK|func{n}|09")
            lines.extend(f"{{@RPT|functional step {k}" for k in range(30))
            lines.extend("}" * 30)
            lines.append(analog("MEA", "rail") + "}")
            lines.append("}")
        else:
            lines.append(f"{{@BLOCK|r{n}|00")
            lines.append(analog() + "}")
            lines.append("}")
    lines.extend(["}", "}"])
    log.text = "\n".join(lines) + "\n"
    return log


def test_a_log_nested_far_deeper_than_usual_reads_as_all_its_tests(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    log = messy_log()
    assert naive_depth(log.text) > OLD_LIMIT  # what was refused as "not an i3070 log"
    assert log.text.count("{@A-") == len(log.values) == 946  # a line-based reader's count
    path = tmp_path / "board.log"
    path.write_text(log.text, encoding="ascii")
    with caplog.at_level(logging.WARNING, logger="pywats_client.converters.i3070"):
        [report] = reports(path)
    assert report["result"] == "F" and report["uut"]["errorCode"] == 9
    analog = [m for m in measurements(report) if m["compOp"] != "EQ"]
    assert sorted(m["value"] for m in analog) == sorted(log.values)
    assert sum(m["status"] == "F" for m in analog) == log.failed > 0
    # Every block is a step of the board, none buried in another.
    assert all(step["stepType"] != "SequenceCall" for step in report["root"]["steps"])
    [warning] = [r.getMessage() for r in caplog.records]
    assert "repaired, every record kept" in warning and "lacked a closing '}'" in warning
    assert "closed no record" in warning


def test_the_repairs_are_counted(tmp_path: Path) -> None:
    repairs = Repairs()
    records = parse_records(messy_log(tests=200).text, repairs=repairs)
    assert repairs and repairs.unclosed and repairs.stray and repairs.returned
    [batch] = records
    [btest] = batch.children  # everything went back into the one board
    assert sum(1 for r in btest.walk() if r.name.startswith("A-")) == 200


def test_a_panel_whose_batch_was_closed_too_early_keeps_its_header(tmp_path: Path) -> None:
    text = ("{@BATCH|PCB-1|A|FX|1||b|240101000000|op|ict|TP|1.0|||\n"
            "{@BTEST|SN-1|00|240101000100|000001|0|analog||n|n|240101000101||001|\n"
            "{@BLOCK|r1|00\n{@A-RES|0|+1.0E+03{@LIM2|+2.0E+03|+5.0E+02}}\n}\n}\n}\n"
            "{@BTEST|SN-2|00|240101000200|000001|0|analog||n|n|240101000201||002|\n"
            "{@BLOCK|r1|00\n{@A-RES|0|+1.1E+03{@LIM2|+2.0E+03|+5.0E+02}}\n}\n}\n}\n")
    path = tmp_path / "panel.log"
    path.write_text(text, encoding="ascii")
    first, second = reports(path)
    assert [(r["sn"], r["pn"], r["rev"]) for r in (first, second)] == [
        ("SN-1", "PCB-1", "A"), ("SN-2", "PCB-1", "A")]


def test_a_log_cut_short_is_still_incomplete(tmp_path: Path) -> None:
    text = messy_log(tests=100).text
    path = tmp_path / "cut.log"
    for cut in (len(text) // 3, len(text) // 2, len(text) - 4):
        path.write_text(text[:cut], encoding="ascii")
        with pytest.raises(IncompleteFileError):
            CONVERTER.convert(path, CONTEXT)


# -- hostile input is still refused, in bounded memory --------------------------------------------


def test_a_hostile_tower_of_records_is_refused_early_in_bounded_memory() -> None:
    hostile = "{@Own|x" * 1_000_000  # 7 MB of records that never close
    tracemalloc.start()
    try:
        with pytest.raises(ConversionError, match=f"nested more than {MAX_DEPTH} deep"):
            parse_records(hostile)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * 2**20  # refused at the cap: nothing like the whole file's records
    assert MAX_DEPTH >= 1000  # "thousands deep" is hostile; a few dozen is a real log


# -- the part revision -----------------------------------------------------------------------------


HEADER = "{{@BATCH|PCB-1|{uut_rev}|FX|1||b|240101000000|op|ict|TP|{plan_rev}|||\n"
BOARD = ("{@BTEST|SN-1|00|240101000100|000001|0|analog||n|n|240101000101||001|\n"
         "{@BLOCK|r1|00\n{@A-RES|0|+1.0E+03{@LIM2|+2.0E+03|+5.0E+02}}\n}\n}\n}\n")


@pytest.mark.parametrize(("uut_rev", "plan_rev", "arguments", "defaults", "expected"), [
    ("", "RevA", {}, {}, "RevA"),  # as in every real log seen
    ("7", "RevA", {}, {}, "7"),
    ("7", "RevA", {"revision_from": "testplan_rev"}, {}, "RevA"),
    ("7", "", {"revision_from": "testplan_rev, uut_type_rev"}, {}, "7"),
    ("7", "RevA", {"revision_from": ["uut_type_rev"]}, {}, "7"),
    ("", "RevA", {"revision_from": "uut_type_rev"}, {"revision": "R9"}, "R9"),
    ("", "", {}, {"revision": "R9"}, "R9"),
    ("", "", {}, {}, ""),
])
def test_the_revision_is_the_first_filled_revision_field(
        tmp_path: Path, uut_rev: str, plan_rev: str, arguments: dict[str, Any],
        defaults: dict[str, str], expected: str) -> None:
    path = tmp_path / "board.log"
    path.write_text(HEADER.format(uut_rev=uut_rev, plan_rev=plan_rev) + BOARD,
                    encoding="ascii")
    context = ConverterContext(arguments=arguments, defaults={"process_code": 10, **defaults})
    [report] = reports(path, context)
    assert report["rev"] == expected


def test_an_unknown_revision_field_is_named(tmp_path: Path) -> None:
    path = tmp_path / "board.log"
    path.write_text(HEADER.format(uut_rev="", plan_rev="RevA") + BOARD, encoding="ascii")
    context = ConverterContext(arguments={"revision_from": "plan"},
                               defaults={"process_code": 10})
    with pytest.raises(ConversionError, match=r"revision_from 'plan' .* names 'plan'; use "
                                              r"uut_type_rev and/or testplan_rev"):
        reports(path, context)

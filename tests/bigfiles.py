"""Large, valid equipment files for memory tests and the bench: a real sample's steps repeated
until the file reaches a given size (WSJF, WSXF, ATML). Written in pieces, so making a 30 MB
file does not itself need the memory the test is about.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples"
WSJF_SAMPLE = SAMPLES / "wsjf" / "WATS - WSJF UUT Example file.json"
WSXF_SAMPLE = SAMPLES / "wsxf" / "uut-wsxf.xml"
ATML_SAMPLE = SAMPLES / "atml" / "TS2017_ATML2.02 - FATv1.XML"
MB = 1024 * 1024


def samples_present() -> bool:
    return all(p.is_file() for p in (WSJF_SAMPLE, WSXF_SAMPLE, ATML_SAMPLE))


def _fill(path: Path, head: str, unit: Iterator[str], tail: str, size: int,
          encoding: str = "utf-8") -> Path:
    """`head`, then pieces from `unit` until the file is about `size` bytes, then `tail`."""
    with open(path, "w", encoding=encoding) as fh:
        fh.write(head)
        written = len(head.encode(encoding)) + len(tail.encode(encoding))
        for piece in unit:
            fh.write(piece)
            written += len(piece.encode(encoding))
            if written >= size:
                break
        fh.write(tail)
    return path


def big_wsjf(path: Path, size: int, *, sn: str = "BIG-0001") -> Path:
    """A WSJF test report of about `size` bytes: the UUT example's step tree repeated under
    its root sequence (step ids renumbered, so the report stays valid), compact JSON."""
    report: dict[str, Any] = json.loads(WSJF_SAMPLE.read_text(encoding="utf-8"))
    report["sn"] = sn
    report.pop("id", None)
    root = report["root"]
    children = root.pop("steps")
    root["steps"] = ["HOLE"]
    head, tail = json.dumps(report, separators=(",", ":")).split('"HOLE"')
    next_id = [1_000]

    def renumber(step: dict[str, Any]) -> dict[str, Any]:
        step["id"] = next_id[0]
        next_id[0] += 1
        for child in step.get("steps") or ():
            renumber(child)
        return step

    def pieces() -> Iterator[str]:
        first = True
        while True:
            for child in children:
                text = json.dumps(renumber(copy.deepcopy(child)), separators=(",", ":"))
                yield text if first else "," + text
                first = False

    return _fill(path, head, pieces(), tail, size)


def big_wsxf(path: Path, size: int, *, sn: str = "BIG-0001") -> Path:
    """A WSXF report of about `size` bytes: the sample's numeric steps repeated inside its
    first sequence (unique step ids)."""
    text = WSXF_SAMPLE.read_text(encoding="utf-8").replace('SN="FATTest-422"', f'SN="{sn}"')
    text = re.sub(r' ID="[0-9A-Fa-f-]{36}"', "", text, count=1)
    lines = text.splitlines(keepends=True)
    # Lines 15-17 of the sample: one <Step> with a <NumericLimit>; inserted after line 14.
    unit = "".join(lines[14:17])
    head, tail = "".join(lines[:14]), "".join(lines[14:])
    assert unit.lstrip().startswith("<Step ") and unit.rstrip().endswith("</Step>"), unit

    def pieces() -> Iterator[str]:
        n = 100_000
        while True:
            yield re.sub(r'Id="\d+"', f'Id="{n}"', unit, count=1)
            n += 1

    return _fill(path, head, pieces(), tail, size)


def big_atml(path: Path, size: int) -> Path:
    """An ATML 2.02 file (TestStand 2017) of about `size` bytes: its "NI steps" sequence call
    (a TestGroup of every NI step type) repeated inside the main sequence."""
    lines = ATML_SAMPLE.read_text(encoding="iso-8859-1").splitlines(keepends=True)
    start = next(n for n, line in enumerate(lines) if "#NI steps" in line)
    depth, end = 0, start
    for end in range(start, len(lines)):  # the line closing that TestGroup
        depth += lines[end].count("<tr:TestGroup ") - lines[end].count("</tr:TestGroup>")
        if depth == 0:
            break
    unit = "".join(lines[start:end + 1])
    head, tail = "".join(lines[:start]), "".join(lines[start:])

    def pieces() -> Iterator[str]:
        while True:
            yield unit

    # The sample declares iso-8859-1 and has a non-ASCII character: written as it came.
    return _fill(path, head, pieces(), tail, size, encoding="iso-8859-1")


BUILDERS = {"wsjf": (big_wsjf, ".json"), "wsxf": (big_wsxf, ".xml"),
            "atml": (big_atml, ".xml")}

"""A tester that logs its report block by block, opening the file, appending and closing it
each time (as LabVIEW and script loggers do), with pauses between the blocks: WSTF, WSXF and
WSJF files of one UUT each, and the step names a whole file holds."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

STEPS = 6


def wstf_blocks(sn: str, steps: int = STEPS) -> list[str]:
    header = (f"--Header-Start--\nSerialNumber\t{sn}\nPartNumber\tPN-SLOW\nRevision\tA\n"
              "OperationTypeCode\t10\nUTCStartDateTime\t2026-05-01T08:00:00\n"
              "--Step-Data-Start--\n"
              "StepType\tStepName\tMeasureName\tValue\tLowLimit\tHighLimit\tCompOperator\t"
              "Unit\tStepStatus\n")
    lines = [f"NumericLimitTest\tStep {n}\t\t{3.0 + n / 100:.2f}\t3\t3.6\tGELE\tV\tPassed\n"
             for n in range(steps)]
    return [header, *_split(lines, 3), "--Step-Data-End--\nUUTStatus\tPassed\n",
            "--UUT-End--\n"]


def wsxf_blocks(sn: str, steps: int = STEPS, report_id: str = "") -> list[str]:
    head = ('<?xml version="1.0" encoding="utf-8"?>\n'
            '<Reports xmlns="http://wats.virinco.com/schemas/WATS/Report/wsxf">\n'
            f'  <Report type="UUT" ID="{report_id}" Start="2026-05-01T10:00:00+02:00" '
            f'Result="Passed" SN="{sn}" PN="PN-SLOW" Rev="A" MachineName="slow" '
            'Location="lab" Purpose="test">\n'
            '    <UUT UserLoginName="slow" ExecutionTime="1.5" />\n'
            '    <Process Code="10" Name="SW Debug" />\n'
            '    <Step Id="1" Group="Main" Name="MainSequence Callback" '
            'StepType="SequenceCall" Status="Passed" StepIndex="0">\n'
            '      <SequenceCall Name="Main" Version="1.0" Filename="main.seq" '
            'Filepath="main.seq" />\n')
    lines = [f'      <Step Id="{n + 2}" Group="Main" Name="Step {n}" StepType="ET_NLT" '
             f'Status="Passed" StepIndex="{n + 1}">\n'
             f'        <NumericLimit Name="Step {n}" CompOperator="GELE" '
             f'NumericValue="{3.0 + n / 100:.2f}" LowLimit="3.0" HighLimit="3.6" Units="V" '
             'Status="Passed" />\n      </Step>\n'
             for n in range(steps)]
    return [head, *_split(lines, 3), "    </Step>\n  </Report>\n", "</Reports>\n"]


def wsjf_blocks(sn: str, steps: int = STEPS, report_id: str | None = None) -> list[str]:
    report: dict[str, Any] = {
        "type": "T", "pn": "PN-SLOW", "sn": sn, "rev": "A", "processCode": 10, "result": "P",
        "machineName": "slow", "location": "lab", "purpose": "test",
        "start": "2026-05-01T10:00:00+02:00",
        "root": {"id": 0, "group": "M", "stepType": "SequenceCall", "name": "MainSequence",
                 "status": "P", "seqCall": {"path": "main.seq", "name": "MainSequence",
                                            "version": "1.0"},
                 "steps": [{"id": n + 1, "group": "M", "stepType": "ET_NLT",
                            "name": f"Step {n}", "status": "P",
                            "numericMeas": [{"compOp": "GELE", "name": None, "status": "P",
                                             "unit": "V", "value": 3.0 + n / 100,
                                             "lowLimit": 3.0, "highLimit": 3.6}]}
                           for n in range(steps)]},
    }
    if report_id:
        report["id"] = report_id
    lines = [line + "\n" for line in json.dumps(report, indent=2).split("\n")]
    return _split(lines, 5)


# kind -> (file suffix, the blocks of one UUT's file given its serial number)
KINDS: dict[str, tuple[str, Callable[[str], list[str]]]] = {
    "wstf": (".txt", wstf_blocks),
    "wsxf": (".xml", wsxf_blocks),
    "wsjf": (".json", wsjf_blocks),
}


def _split(lines: list[str], parts: int) -> list[str]:
    size = -(-len(lines) // parts)
    return ["".join(lines[i:i + size]) for i in range(0, len(lines), size)]


def write_slowly(path: Path, blocks: list[str], pause: float) -> None:
    """Append each block to `path` in an open-write-close of its own, pausing `pause` s
    between two blocks: the writer's behaviour under test, not a wait for a result."""
    rest = threading.Event()
    for n, block in enumerate(blocks):
        if n:
            rest.wait(pause)
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(block)


def step_names(report: dict[str, Any]) -> list[str]:
    """The names of every step under the root of a WSJF report, depth first."""
    names: list[str] = []
    stack = list(reversed(report.get("root", {}).get("steps") or []))
    while stack:
        step = stack.pop()
        names.append(str(step.get("name")))
        stack.extend(reversed(step.get("steps") or []))
    return names

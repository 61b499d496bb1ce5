"""Example converter in the style of the client service package README: class attributes,
`can_convert(self, file_path) -> bool` and `convert(self, file_path)` returning a `UUTReport`.

The README's example, made to run: it imports `Path` and this project's `UUTReport`, and
defines the helper the README leaves out, `parse_test_file()`, whose steps are the dicts the
base class's `create_step()` takes. The input (see example.test beside this file) is one
`KEY: value` per line:

    PART: PN-200
    SERIAL: SN-B-0001
    REVISION: B
    START: 2026-05-01T11:30:00+02:00
    RESULT: PASS
    STEP: Supply voltage | 5.02 | 4.75 | 5.25 | V      (name | value | low | high | unit)
    STEP: LED check | PASS                             (name | PASS or FAIL)

`can_convert()` is this converter's detection: a file it accepts is taken when a watch folder
names no converter. The process code, which the file does not give, comes from the config's
`converters.defaults.process_code` when the service queues the report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pywats_client.converters import BaseConverter, ConversionError, UUTReport

HEADER_KEYS = {"PART": "part_number", "SERIAL": "serial_number", "REVISION": "revision",
               "START": "start_time", "RESULT": "result"}


class MyConverter(BaseConverter):
    """Convert my custom test format to WATS UUT reports"""

    name = "My Test System Converter"
    description = "Converts .test files to WATS format"

    def can_convert(self, file_path: Path) -> bool:
        """Check if this converter can handle the file"""
        return file_path.suffix == '.test'

    def convert(self, file_path: Path) -> UUTReport:
        """Convert file to WATS report"""
        # Parse your test data
        data = self.parse_test_file(file_path)

        # Create WATS report
        report = UUTReport(
            pn=data['part_number'],
            sn=data['serial_number'],
            rev=data['revision'],
            pass_fail=data['passed'],
            start_date_time=data['start_time']
        )

        # Add test steps
        for step in data['steps']:
            report.steps.append(self.create_step(step))

        return report

    def parse_test_file(self, file_path: Path) -> dict[str, Any]:
        """The header values and the steps of a .test file."""
        data: dict[str, Any] = {"revision": "", "steps": []}
        lines = file_path.read_text(encoding="utf-8-sig").splitlines()
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            key, colon, value = line.partition(":")
            key, value = key.strip().upper(), value.strip()
            if not colon or (key != "STEP" and key not in HEADER_KEYS):
                raise ConversionError(f"{file_path}: line {number}: expected 'KEY: value' with "
                                      f"KEY one of {', '.join([*HEADER_KEYS, 'STEP'])}, got "
                                      f"{line.strip()[:60]!r}")
            if key == "STEP":
                data["steps"].append(_step_fields(file_path, number, value))
            else:
                data[HEADER_KEYS[key]] = value
        for key in ("part_number", "serial_number", "start_time", "result"):
            if not data.get(key):
                word = next(k for k, v in HEADER_KEYS.items() if v == key)
                raise ConversionError(f"{file_path}: no {word} line (e.g. '{word}: ...')")
        if data["result"].upper() not in ("PASS", "FAIL"):
            raise ConversionError(f"{file_path}: RESULT must be PASS or FAIL, got "
                                  f"{data['result']!r}")
        data["passed"] = data["result"].upper() == "PASS"
        return data


def _step_fields(file_path: Path, number: int, text: str) -> dict[str, Any]:
    cells = [cell.strip() for cell in text.split("|")]
    where = f"{file_path}: line {number}"
    if len(cells) == 2 and cells[1].upper() in ("PASS", "FAIL"):
        return {"name": cells[0], "value": cells[1].upper() == "PASS"}
    if len(cells) != 5 or not cells[0]:
        raise ConversionError(f"{where}: a STEP is 'name | value | low | high | unit' or "
                              f"'name | PASS|FAIL', got {text[:60]!r}")

    def number_in(cell: str, column: str) -> float | None:
        if not cell:
            return None
        try:
            return float(cell)
        except ValueError:
            raise ConversionError(f"{where}: {column} {cell!r} is not a number") from None

    value = number_in(cells[1], "value")
    if value is None:
        raise ConversionError(f"{where}: the step {cells[0]!r} has no value")
    return {"name": cells[0], "value": value, "low_limit": number_in(cells[2], "low"),
            "high_limit": number_in(cells[3], "high"), "unit": cells[4]}

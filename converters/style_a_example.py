"""Example converter in the style of the client service guide: `get_info()` and
`convert(self, file_path)` returning a `UUTReport`.

The guide's example, made to run: it imports `UUTReport` from this project
(`pywats_client.report`) and reads the values it fills in from the file instead of "...".
The input (see example.myext beside this file) is one `key = value` per line; lines starting
with `#` are comments:

    part_number = PN-100
    serial_number = SN-A-0001
    operation = SW Debug          (a process name the server knows, or its code: 10)
    result = P
    start = 2026-05-01T10:00:00+02:00

A converter in this style is given no context: what the file lacks (revision, process code,
operator) comes from the config's `converters.defaults`, and the station fields from the
config, when the service queues the report.
"""

from __future__ import annotations

from pywats_client.converters import BaseConverter, ConversionError, ConverterInfo
from pywats_client.report import UUTReport

REQUIRED = ("part_number", "serial_number", "result", "start")


class MyConverter(BaseConverter):
    @classmethod
    def get_info(cls) -> ConverterInfo:
        return ConverterInfo(
            name="MyConverter",
            description="Converts my test equipment output",
            file_patterns=["*.myext"],
            version="1.0.0"
        )

    def convert(self, file_path: str) -> UUTReport:
        # Parse file and create report
        fields = read_fields(file_path)
        report = UUTReport(
            part_number=fields["part_number"],
            serial_number=fields["serial_number"],
            revision=fields.get("revision"),
            operation_code=fields.get("operation"),
            result=fields["result"],
            start_date_time=fields["start"],
        )
        return report


def read_fields(file_path: str) -> dict[str, str]:
    """The `key = value` lines of the file; ConversionError naming the line when one is bad."""
    fields: dict[str, str] = {}
    with open(file_path, encoding="utf-8-sig") as fh:
        for number, line in enumerate(fh, start=1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            key, equals, value = text.partition("=")
            if not equals or not key.strip():
                raise ConversionError(f"{file_path}: line {number}: expected 'key = value', "
                                      f"got {text[:60]!r}")
            fields[key.strip().lower()] = value.strip()
    missing = [key for key in REQUIRED if not fields.get(key)]
    if missing:
        raise ConversionError(f"{file_path}: no {', '.join(missing)} in the file; expected "
                              f"lines such as 'part_number = PN-100'")
    return fields

"""WATS reports (WSJF), the face converters and programs import: `model` (identity, dates, the
JSON queued), `checks` (validation and `finalize`), `builder` (`UUTReport`, `UURReport`) and
`operators` (comparison operators and limit checks).
"""

from pywats_client.report import builder
from pywats_client.report.builder import *  # noqa: F403 - exactly builder.__all__
from pywats_client.report.checks import finalize, validate
from pywats_client.report.model import (
    ReportDict,
    format_datetime,
    format_utc,
    group_letter,
    iter_steps,
    number_steps,
    parse_datetime,
    report_id_for,
    result_for_status,
    roll_up_statuses,
    status_letter,
    to_json_bytes,
)
from pywats_client.report.operators import (
    numeric_passes,
    numeric_status,
    parse_comp_op,
    string_passes,
    string_status,
)

__all__ = [
    *builder.__all__,
    "ReportDict",
    "finalize",
    "format_datetime",
    "format_utc",
    "group_letter",
    "iter_steps",
    "number_steps",
    "numeric_passes",
    "numeric_status",
    "parse_comp_op",
    "parse_datetime",
    "report_id_for",
    "result_for_status",
    "roll_up_statuses",
    "status_letter",
    "string_passes",
    "string_status",
    "to_json_bytes",
    "validate",
]

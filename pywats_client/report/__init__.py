"""WATS reports (WSJF), the face converters and programs import: `model` (identity, dates, the
JSON queued), `checks` (validation and `finalize`), `builder` (`UUTReport`, `UURReport`) and
`operators` (comparison operators and limit checks).
"""

from pywats_client.report.builder import (
    Sequence,
    UURReport,
    UUTReport,
    apply_context,
    attachment_step,
    chart_step,
    numeric_step,
    pass_fail_step,
    sequence_step,
    string_step,
)
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
    "ReportDict",
    "Sequence",
    "UURReport",
    "UUTReport",
    "apply_context",
    "attachment_step",
    "chart_step",
    "finalize",
    "format_datetime",
    "format_utc",
    "group_letter",
    "iter_steps",
    "number_steps",
    "numeric_passes",
    "numeric_status",
    "numeric_step",
    "parse_comp_op",
    "parse_datetime",
    "pass_fail_step",
    "report_id_for",
    "result_for_status",
    "roll_up_statuses",
    "sequence_step",
    "status_letter",
    "string_passes",
    "string_status",
    "string_step",
    "to_json_bytes",
    "validate",
]

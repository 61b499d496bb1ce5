"""WATS reports (WSJF): the model and its rules, the builders, the comparison operators.

`model` owns identity, finalising and the JSON written to the queue; `builder` the
`UUTReport`/`UURReport` classes for code that would rather call methods than write dicts;
`operators` the comparison operators and limit checks. This package face is what converters
and programs import (`from pywats_client.report import UUTReport`).
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
from pywats_client.report.model import (
    ReportDict,
    finalize,
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
    validate,
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

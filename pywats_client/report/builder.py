"""Building WSJF reports in code: `UUTReport` (a test) and `UURReport` (a repair).

For converters and test sequences that would rather call methods than write WSJF dicts. The
keyword spellings of the product documents are accepted (`part_number`/`pn`,
`serial_number`/`sn`, `revision`/`rev`, `operation_code`/`process_code`, `result`/`pass_fail`,
`start_date_time`/`start`); helpers add sequence, numeric, pass/fail, string, chart and
attachment steps, misc infos and sub-units; `to_wsjf()` gives the plain dict the queue stores
and `validate()` applies the rules of `report.validate`. Statuses the caller leaves out are
computed from limits and rolled up the tree, as the WATS client does in "Active" mode.

The converter context is imported for type checking only, so converters may import this
without a cycle.
"""

from __future__ import annotations

import base64
import copy
import math
import mimetypes
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pywats_client.errors import ProcessListUnknownError, ReportValidationError
from pywats_client.report.checks import validate
from pywats_client.report.model import (
    CHART_TYPES,
    MEASUREMENT_STATUSES,
    REPORT_RESULTS,
    STEP_STATUSES,
    format_datetime,
    group_letter,
    number_steps,
    parse_datetime,
    result_for_status,
    roll_up_statuses,
    status_letter,
)
from pywats_client.report.operators import (
    LOG,
    NUMERIC_OPERATORS,
    STRING_OPERATORS,
    limits_used,
    numeric_status,
    parse_comp_op,
    string_status,
)

if TYPE_CHECKING:
    from pywats_client.converters.base import ConverterContext

__all__ = [
    "Sequence",
    "UURReport",
    "UUTReport",
    "apply_context",
    "attachment_step",
    "chart_step",
    "numeric_step",
    "pass_fail_step",
    "sequence_step",
    "string_step",
]

# Stand-ins for the fields the queue fills from the config (id, station) when `validate()` is
# asked about a report that does not carry them yet.
_PLACEHOLDER_ID = "00000000-0000-4000-8000-000000000000"
_PLACEHOLDER_STATION = "(station name from the config)"


# -- values -----------------------------------------------------------------------------------


def _one_of(first: str, a: Any, second: str, b: Any) -> Any:
    """The value of two spellings of one keyword; both given and different is an error."""
    if a is not None and b is not None and a != b:
        raise ReportValidationError(
            f"{first}={a!r} and {second}={b!r} are two spellings of the same field with "
            f"different values; give only one of them")
    return a if a is not None else b


def _text(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # a serial number read as a number is still the serial number
    if not isinstance(value, str):
        raise ReportValidationError(f"{name} must be text, got {type(value).__name__} "
                                    f"{value!r}")
    return value


def _operation(name: str, value: Any) -> tuple[int | None, str | None]:
    """(process code, process name) from an operation given as a code, "10", or a name."""
    if value is None:
        return None, None
    if isinstance(value, int) and not isinstance(value, bool):
        return value, None
    if isinstance(value, str) and value.strip():
        text = value.strip()
        if text.lstrip("-").isdigit():
            return int(text), None
        return None, text  # a process name; the code is looked up in the server's list
    raise ReportValidationError(
        f"{name} must be a process code such as 10 or a process name such as 'SW Debug', got "
        f"{value!r}")


def _result(name: str, value: Any) -> str | None:
    """The report result letter for True/False, "P"/"F"/..., or "Passed"/"failed"/..."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "P" if value else "F"
    try:
        return status_letter(value, REPORT_RESULTS)  # also refuses what is not text
    except ValueError:
        raise ReportValidationError(
            f"{name} must be True/False or one of P, F, E, T (Passed, Failed, Error, "
            f"Terminated), got {value!r}") from None


def _status(name: str, value: Any, allowed: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "P" if value else "F"
    try:
        return status_letter(value, allowed)
    except ValueError as exc:
        raise ReportValidationError(f"{name}: {exc}") from None


def _when(name: str, value: Any) -> str | None:
    """A WSJF date-time: an aware datetime keeps its offset, a naive one is taken as the
    system's local time, a string must already be ISO-8601 (kept as written)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return format_datetime(value if value.tzinfo is not None else value.astimezone())
    if isinstance(value, str):
        try:
            parse_datetime(value)
        except ValueError as exc:
            raise ReportValidationError(f"{name}: {exc}") from None
        return value.strip()
    raise ReportValidationError(f"{name} must be a datetime or an ISO-8601 string such as "
                                f"2026-05-01T10:00:00+02:00, got {type(value).__name__}")


def _number(name: str, value: Any) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ReportValidationError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ReportValidationError(f"{name} is {value}, which WATS cannot store; leave the "
                                    "measurement out or log it as text")
    return value


def _optional_number(name: str, value: Any) -> float | int | None:
    return None if value is None else _number(name, value)


def _drop_none(mapping: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in mapping.items() if value is not None}


# -- steps ------------------------------------------------------------------------------------


def sequence_step(name: str, *, path: str = "", version: str = "", status: Any = None,
                  group: str = "M") -> dict[str, Any]:
    """A sequence call step (it holds other steps in its `steps` list). Its status, when
    left out, is rolled up from the steps under it."""
    return _drop_none({
        "group": group_letter(group), "stepType": "SequenceCall", "name": name,
        "status": _status(f"step {name!r}", status, STEP_STATUSES),
        "seqCall": {"path": path, "name": name, "version": version},
        "steps": [],
    })


def numeric_step(name: str, value: float, *, low: float | None = None,
                 high: float | None = None, unit: str = "", comp_op: str | None = None,
                 status: Any = None, group: str = "M") -> dict[str, Any]:
    """A numeric limit test. Without `comp_op`: GELE with both limits, GE with `low` only,
    LE with `high` only, LOG with none. The status, when left out, is the limit check.

    WSJF compares single-limit operators (GE, LE, LT, ...) with `lowLimit`, even LE and LT:
    a lone `high` is stored as `lowLimit` of an LE test, as WATS itself does.
    """
    where = f"step {name!r}"
    value = _number(f"{where}: value", value)
    low = _optional_number(f"{where}: low", low)
    high = _optional_number(f"{where}: high", high)
    if comp_op is None:
        op = "GELE" if low is not None and high is not None else (
            "GE" if low is not None else "LE" if high is not None else LOG)
    else:
        op = parse_comp_op(comp_op)
        if op not in NUMERIC_OPERATORS or (op == LOG and comp_op.strip().upper() != LOG):
            raise ReportValidationError(
                f"{where}: comp_op {comp_op!r} is not a numeric operator; use one of "
                f"{', '.join(NUMERIC_OPERATORS)}")
    uses_low, uses_high = limits_used(op)
    if uses_high:
        limits = {"lowLimit": low, "highLimit": high}
        if low is None or high is None:
            raise ReportValidationError(f"{where}: comp_op {op} needs both low and high")
    elif uses_low:
        single = low if low is not None else high
        if single is None or (low is not None and high is not None):
            raise ReportValidationError(f"{where}: comp_op {op} compares with one limit; give "
                                        "low (or high), not both")
        limits = {"lowLimit": single}
    else:
        limits = {}
    measured = _status(where, status, MEASUREMENT_STATUSES) or numeric_status(
        op, value, limits.get("lowLimit"), limits.get("highLimit"))
    measurement = {"compOp": op, "name": None, "status": measured, "unit": unit,
                   "value": value, **limits}
    return {"group": group_letter(group), "stepType": "ET_NLT", "name": name,
            "status": measured, "numericMeas": [measurement]}


def pass_fail_step(name: str, passed: Any, *, group: str = "M") -> dict[str, Any]:
    """A pass/fail test: `passed` is True/False or a status word ("Passed", "F", ...)."""
    status = _status(f"step {name!r}", passed, MEASUREMENT_STATUSES)
    if status is None:
        raise ReportValidationError(f"step {name!r}: passed must be True or False, not None")
    return {"group": group_letter(group), "stepType": "ET_PFT", "name": name,
            "status": status, "booleanMeas": [{"name": None, "status": status}]}


def string_step(name: str, value: str, *, limit: str | None = None, comp_op: str | None = None,
                status: Any = None, group: str = "M") -> dict[str, Any]:
    """A string value test: compared case-sensitively with `limit` when one is given
    (comp_op CASESENSIT; IGNORECASE on request), else only logged."""
    where = f"step {name!r}"
    if not isinstance(value, str):
        raise ReportValidationError(f"{where}: value must be text, got {value!r}")
    op = parse_comp_op(comp_op) if comp_op is not None else ("CASESENSIT" if limit is not None
                                                              else LOG)
    if op not in STRING_OPERATORS:
        raise ReportValidationError(f"{where}: comp_op {comp_op!r} is not a string operator; "
                                    f"use one of {', '.join(STRING_OPERATORS)}")
    measured = _status(where, status, MEASUREMENT_STATUSES) or string_status(op, value, limit)
    measurement: dict[str, Any] = {"compOp": op, "name": None, "status": measured,
                                   "value": value}
    if limit is not None:
        measurement["limit"] = limit
    return {"group": group_letter(group), "stepType": "ET_SVT", "name": name,
            "status": measured, "stringMeas": [measurement]}


def _series_data(where: str, values: Any) -> str:
    if isinstance(values, str):
        return values
    numbers = [_number(where, v) for v in values]
    return ";".join(str(v) if isinstance(v, int) else repr(float(v)) for v in numbers)


def chart_step(name: str, series: Iterable[Any], *, chart_type: str = "Line",
               label: str | None = None, x_label: str | None = None, x_unit: str | None = None,
               y_label: str | None = None, y_unit: str | None = None, status: Any = "D",
               group: str = "M") -> dict[str, Any]:
    """A step carrying a chart. Each series is `(name, x_values, y_values)` or a dict with
    `name`, `xdata`, `ydata` (lists of numbers, or WSJF's "0;1;2" text)."""
    where = f"step {name!r}"
    kind = next((t for t in CHART_TYPES if t.lower() == str(chart_type).lower()), None)
    if kind is None:
        raise ReportValidationError(f"{where}: chart_type {chart_type!r} is not one of "
                                    f"{', '.join(CHART_TYPES)}")
    lines = []
    for n, item in enumerate(series):
        if isinstance(item, Mapping):
            line_name, xs, ys = item.get("name"), item.get("xdata", ""), item.get("ydata")
        else:
            line_name, xs, ys = item
        lines.append({"dataType": "XYG", "name": line_name,
                      "xdata": _series_data(f"{where}: series {n} x", xs),
                      "ydata": _series_data(f"{where}: series {n} y", ys)})
    chart = _drop_none({"chartType": kind, "label": label, "xLabel": x_label, "xUnit": x_unit,
                        "yLabel": y_label, "yUnit": y_unit})
    chart["series"] = lines
    return {"group": group_letter(group), "stepType": "Action", "name": name,
            "status": _status(where, status, STEP_STATUSES), "chart": chart}


def _attachment(where: str, data: bytes | str | Path, file_name: str | None,
                content_type: str | None) -> dict[str, Any]:
    if isinstance(data, (str, Path)):
        path = Path(data)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ReportValidationError(f"{where}: cannot read the attachment {path}: "
                                        f"{exc.strerror or exc}") from None
        file_name = file_name or path.name
    elif isinstance(data, (bytes, bytearray, memoryview)):
        raw = bytes(data)
    else:
        raise ReportValidationError(f"{where}: attachment data must be bytes or a file path, "
                                    f"got {type(data).__name__}")
    name = file_name or "attachment"
    kind = content_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
    return {"name": name, "contentType": kind, "data": base64.b64encode(raw).decode("ascii")}


def attachment_step(name: str, data: bytes | str | Path, *, file_name: str | None = None,
                    content_type: str | None = None, status: Any = "D",
                    group: str = "M") -> dict[str, Any]:
    """A step carrying one attachment: bytes, or the path of a file to read now. The content
    type is guessed from the file name when not given."""
    where = f"step {name!r}"
    return {"group": group_letter(group), "stepType": "Action", "name": name,
            "status": _status(where, status, STEP_STATUSES),
            "attachment": _attachment(where, data, file_name, content_type)}


class _StepList:
    """The step helpers, shared by a report (its main sequence) and by sequences in it."""

    _container: dict[str, Any]  # the sequence call step whose `steps` these are

    @property
    def steps(self) -> list[dict[str, Any]]:
        """The steps, in order: a list of WSJF step dicts that may be appended to directly."""
        steps: list[dict[str, Any]] = self._container.setdefault("steps", [])
        return steps

    @steps.setter
    def steps(self, steps: Iterable[dict[str, Any]]) -> None:
        self._container["steps"] = list(steps)

    def add_step(self, step: Mapping[str, Any]) -> dict[str, Any]:
        """Append a WSJF step given as a dict (from the functions of this module, or your
        own); returns the step as stored, so it can still be changed."""
        stored = dict(step)
        self.steps.append(stored)
        return stored

    def add_sequence(self, name: str, *, path: str = "", version: str = "",
                     status: Any = None, group: str = "M") -> Sequence:
        """Add a sequence call; add steps to the returned `Sequence`."""
        return Sequence(self.add_step(sequence_step(name, path=path, version=version,
                                                    status=status, group=group)))

    def add_numeric_step(self, name: str, value: float, *, low: float | None = None,
                         high: float | None = None, unit: str = "",
                         comp_op: str | None = None, status: Any = None,
                         group: str = "M") -> dict[str, Any]:
        """Add a numeric limit test (see `numeric_step`)."""
        return self.add_step(numeric_step(name, value, low=low, high=high, unit=unit,
                                          comp_op=comp_op, status=status, group=group))

    def add_pass_fail_step(self, name: str, passed: Any, *, group: str = "M"
                           ) -> dict[str, Any]:
        """Add a pass/fail test (see `pass_fail_step`)."""
        return self.add_step(pass_fail_step(name, passed, group=group))

    def add_string_step(self, name: str, value: str, *, limit: str | None = None,
                        comp_op: str | None = None, status: Any = None,
                        group: str = "M") -> dict[str, Any]:
        """Add a string value test (see `string_step`)."""
        return self.add_step(string_step(name, value, limit=limit, comp_op=comp_op,
                                         status=status, group=group))

    def add_chart_step(self, name: str, series: Iterable[Any], *, chart_type: str = "Line",
                       label: str | None = None, x_label: str | None = None,
                       x_unit: str | None = None, y_label: str | None = None,
                       y_unit: str | None = None, status: Any = "D",
                       group: str = "M") -> dict[str, Any]:
        """Add a step carrying a chart (see `chart_step`)."""
        return self.add_step(chart_step(name, series, chart_type=chart_type, label=label,
                                        x_label=x_label, x_unit=x_unit, y_label=y_label,
                                        y_unit=y_unit, status=status, group=group))

    def add_attachment_step(self, name: str, data: bytes | str | Path, *,
                            file_name: str | None = None, content_type: str | None = None,
                            status: Any = "D", group: str = "M") -> dict[str, Any]:
        """Add a step carrying a file or bytes (see `attachment_step`)."""
        return self.add_step(attachment_step(name, data, file_name=file_name,
                                             content_type=content_type, status=status,
                                             group=group))


class Sequence(_StepList):
    """A sequence call step in a report; steps added here go under it."""

    def __init__(self, step: dict[str, Any]) -> None:
        self.step = step
        self._container = step

    def __repr__(self) -> str:
        return f"Sequence({self.step.get('name')!r}, {len(self.steps)} step(s))"


# -- reports ----------------------------------------------------------------------------------


class _Report:
    """What test and repair reports share: identity, station, misc infos, serialisation."""

    kind = ""

    def __init__(self, *, part_number: Any, serial_number: Any, revision: Any,
                 operation_code: Any, process_code: Any, process_name: str | None,
                 result: Any, pass_fail: Any, start_date_time: Any, start: Any,
                 pn: Any, sn: Any, rev: Any, station_name: str | None, location: str | None,
                 purpose: str | None, report_id: str | None) -> None:
        self.pn = _text("part_number", _one_of("part_number", part_number, "pn", pn))
        self.sn = _text("serial_number", _one_of("serial_number", serial_number, "sn", sn))
        self.rev = _text("revision", _one_of("revision", revision, "rev", rev))
        code, name = _operation("operation_code", _one_of(
            "operation_code", operation_code, "process_code", process_code))
        self.process_code = code
        self.process_name = process_name if process_name is not None else name
        self.result = _result("result", _one_of("result", result, "pass_fail", pass_fail))
        self.start = _when("start_date_time", _one_of("start_date_time", start_date_time,
                                                      "start", start))
        self.station_name = station_name
        self.location = location
        self.purpose = purpose
        self.report_id = report_id
        self.misc_infos: list[dict[str, Any]] = []

    def add_misc_info(self, description: str, text: Any = None, *,
                      numeric: int | None = None) -> dict[str, Any]:
        """Add a searchable key/value (WSJF `miscInfos`): a description (at most 100
        characters) and a text and/or a whole number."""
        info = _drop_none({"description": description,
                           "text": None if text is None else str(text), "numeric": numeric})
        self.misc_infos.append(info)
        return info

    def fill_station(self, source: Any) -> None:
        """Take the station name, location and purpose from `source` (a `ClientConfig`, the
        `Settings` or a `ConverterContext`) where this report has none of its own."""
        pairs = (("station_name", ("station_name",)),
                 ("location", ("station_location", "location")),
                 ("purpose", ("station_purpose", "purpose")))
        for mine, names in pairs:
            if getattr(self, mine):
                continue
            for attribute in names:
                value = getattr(source, attribute, None)
                if isinstance(value, str) and value:
                    setattr(self, mine, value)
                    break

    def _head(self, result: str) -> dict[str, Any]:
        return _drop_none({
            "type": self.kind, "id": self.report_id, "pn": self.pn, "sn": self.sn,
            "rev": self.rev, "processCode": self.process_code, "processName": self.process_name,
            "result": result, "machineName": self.station_name, "location": self.location,
            "purpose": self.purpose, "start": self.start,
        })

    def to_wsjf(self) -> dict[str, Any]:
        """The report as a WSJF dict (a new one on every call)."""
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """Same as `to_wsjf()`."""
        return self.to_wsjf()

    def validate(self) -> None:
        """Raise `ReportValidationError` naming every problem the WSJF rules find.

        The report id and station name may still be missing: the queue fills them from the
        config when the report is queued.
        """
        report = self.to_wsjf()
        report.setdefault("id", _PLACEHOLDER_ID)
        report.setdefault("machineName", _PLACEHOLDER_STATION)
        report.setdefault("location", "")
        report.setdefault("purpose", "")
        validate(report)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(pn={self.pn!r}, sn={self.sn!r}, rev={self.rev!r}, "
                f"result={self.result!r})")


class UUTReport(_Report, _StepList):
    """A test report (WSJF type "T"): header fields, a main sequence of steps, misc infos,
    sub-units. Every argument is a keyword; both documented spellings are accepted.

    `operation_code` is the process code (10) or its name on the server ("SW Debug"; looked
    up when the report is queued). `result` is "P"/"F"/"E"/"T", True/False or a word
    ("Passed"); left out, it follows the steps. `start_date_time` is a datetime (naive means
    this computer's local time) or an ISO-8601 string.
    """

    kind = "T"

    def __init__(self, *, part_number: Any = None, serial_number: Any = None,
                 revision: Any = None, operation_code: Any = None, result: Any = None,
                 start_date_time: Any = None, pn: Any = None, sn: Any = None, rev: Any = None,
                 process_code: Any = None, pass_fail: Any = None, start: Any = None,
                 process_name: str | None = None, operator: str | None = None,
                 station_name: str | None = None, location: str | None = None,
                 purpose: str | None = None, report_id: str | None = None,
                 sequence_name: str = "MainSequence", sequence_path: str = "",
                 sequence_version: str = "", comment: str | None = None,
                 batch_sn: str | None = None, fixture_id: str | None = None,
                 exec_time: float | None = None, test_socket_index: int | None = None,
                 error_code: int | None = None, error_message: str | None = None) -> None:
        super().__init__(part_number=part_number, serial_number=serial_number,
                         revision=revision, operation_code=operation_code,
                         process_code=process_code, process_name=process_name, result=result,
                         pass_fail=pass_fail, start_date_time=start_date_time, start=start,
                         pn=pn, sn=sn, rev=rev, station_name=station_name, location=location,
                         purpose=purpose, report_id=report_id)
        self.root = sequence_step(sequence_name, path=sequence_path, version=sequence_version)
        self._container = self.root
        # The `uut` header; more WSJF header fields may be set in this dict directly.
        self.uut: dict[str, Any] = _drop_none({
            "user": operator, "comment": comment, "batchSN": batch_sn, "fixtureId": fixture_id,
            "execTime": _optional_number("exec_time", exec_time),
            "testSocketIndex": test_socket_index, "errorCode": error_code,
            "errorMessage": error_message,
        })
        self.sub_units: list[dict[str, Any]] = []

    @property
    def operator(self) -> str | None:
        return self.uut.get("user")

    @operator.setter
    def operator(self, value: str | None) -> None:
        self.uut["user"] = value

    def add_sub_unit(self, part_type: str, pn: str, sn: str, rev: str = "") -> dict[str, Any]:
        """Record a sub-assembly that was part of the tested unit."""
        unit = {"partType": part_type, "pn": pn, "rev": rev, "sn": sn}
        self.sub_units.append(unit)
        return unit

    def to_wsjf(self) -> dict[str, Any]:
        root = copy.deepcopy(self.root)
        if self.result is not None and not root.get("status"):
            root["status"] = self.result  # what the caller said, unless a step says worse
        number_steps(root)
        status = roll_up_statuses(root)
        report = self._head(self.result or result_for_status(status))
        report["root"] = root
        report["uut"] = _drop_none(self.uut)
        if self.misc_infos:
            report["miscInfos"] = copy.deepcopy(self.misc_infos)
        if self.sub_units:
            report["subUnits"] = copy.deepcopy(self.sub_units)
        return report


class UURReport(_Report):
    """A repair report (WSJF type "R") for the unit `part_number`/`serial_number`.

    `operation_code` is the repair process (e.g. 500 "Repair"); `test_operation_code` the
    test process in which the failure was found (e.g. 10). The repaired unit is sub-unit 0;
    `add_failure()` records what was found and fixed, `add_sub_unit()` replaced parts.
    """

    kind = "R"

    def __init__(self, *, part_number: Any = None, serial_number: Any = None,
                 revision: Any = None, operation_code: Any = None,
                 test_operation_code: Any = None, operator: str | None = None,
                 result: Any = None, start_date_time: Any = None, pn: Any = None,
                 sn: Any = None, rev: Any = None, process_code: Any = None,
                 test_process_code: Any = None, pass_fail: Any = None, start: Any = None,
                 process_name: str | None = None, part_type: str = "Main",
                 ref_uut: str | None = None, comment: str | None = None,
                 exec_time: float | None = None, confirm_date: Any = None,
                 finalize_date: Any = None, station_name: str | None = None,
                 location: str | None = None, purpose: str | None = None,
                 report_id: str | None = None) -> None:
        super().__init__(part_number=part_number, serial_number=serial_number,
                         revision=revision, operation_code=operation_code,
                         process_code=process_code, process_name=process_name,
                         result=result if result is not None or pass_fail is not None else "P",
                         pass_fail=pass_fail, start_date_time=start_date_time, start=start,
                         pn=pn, sn=sn, rev=rev, station_name=station_name, location=location,
                         purpose=purpose, report_id=report_id)
        code, name = _operation("test_operation_code", _one_of(
            "test_operation_code", test_operation_code, "test_process_code", test_process_code))
        # The `uur` header; more WSJF header fields may be set in this dict directly.
        self.uur: dict[str, Any] = _drop_none({
            "processCode": code, "processName": name, "user": operator, "refUUT": ref_uut,
            "comment": comment, "execTime": _optional_number("exec_time", exec_time),
            "confirmDate": _when("confirm_date", confirm_date),
            "finalizeDate": _when("finalize_date", finalize_date),
        })
        self.part_type = part_type
        self.main_failures: list[dict[str, Any]] = []
        self.sub_units: list[dict[str, Any]] = []  # replaced or repaired parts, idx 1, 2, ...
        self.attachments: list[dict[str, Any]] = []

    @property
    def operator(self) -> str | None:
        return self.uur.get("user")

    @operator.setter
    def operator(self, value: str | None) -> None:
        self.uur["user"] = value

    def add_sub_unit(self, part_type: str, pn: str, sn: str, rev: str = "", *,
                     parent: int = 0, replaced: int | None = None,
                     position: int | None = None) -> int:
        """Record a part of the repaired unit (e.g. a replaced component); returns its idx,
        for `add_failure(sub_unit=...)` and for `replaced=` of a later part."""
        idx = len(self.sub_units) + 1
        known = {0, *range(1, idx)}
        for label, ref in (("parent", parent), ("replaced", replaced)):
            if ref is not None and ref not in known:
                raise ReportValidationError(f"sub-unit {sn!r}: {label}={ref} is not the idx of "
                                            "a sub-unit added before (0 is the repaired unit)")
        self.sub_units.append(_drop_none({
            "partType": part_type, "pn": pn, "rev": rev, "sn": sn, "idx": idx,
            "parentIdx": parent, "replacedIdx": replaced, "position": position,
        }))
        return idx

    def add_failure(self, category: str, code: str, *, comment: str | None = None,
                    component_ref: str | None = None, function_block: str | None = None,
                    ref_step_id: int | None = None, ref_step_name: str | None = None,
                    sub_unit: int = 0, attachment: bytes | str | Path | None = None,
                    attachment_name: str | None = None,
                    content_type: str | None = None) -> dict[str, Any]:
        """Record a failure found on sub-unit `sub_unit` (0: the repaired unit). Category and
        code must exist in the repair type on the server."""
        failure = _drop_none({
            "category": category, "code": code, "comment": comment, "comRef": component_ref,
            "funcBlock": function_block, "refStepId": ref_step_id,
            "refStepName": ref_step_name,
        })
        if attachment is not None:
            failure["attachments"] = [_attachment(f"failure {code!r}", attachment,
                                                  attachment_name, content_type)]
        if sub_unit == 0:
            self.main_failures.append(failure)
        elif 1 <= sub_unit <= len(self.sub_units):
            self.sub_units[sub_unit - 1].setdefault("failures", []).append(failure)
        else:
            raise ReportValidationError(f"failure {code!r}: sub_unit={sub_unit} is not the idx "
                                        "of a sub-unit (0 is the repaired unit)")
        return failure

    def add_attachment(self, data: bytes | str | Path, *, name: str | None = None,
                       content_type: str | None = None) -> dict[str, Any]:
        """Attach a file or bytes to the repair report (WSJF `binaryData`)."""
        item = _attachment("attachment", data, name, content_type)
        self.attachments.append(item)
        return item

    def to_wsjf(self) -> dict[str, Any]:
        report = self._head(self.result or "P")
        report["uur"] = _drop_none(self.uur)
        if self.misc_infos:
            report["miscInfos"] = copy.deepcopy(self.misc_infos)
        main = _drop_none({"partType": self.part_type, "pn": self.pn, "rev": self.rev,
                           "sn": self.sn, "idx": 0})
        if self.main_failures:
            main["failures"] = copy.deepcopy(self.main_failures)
        report["subUnits"] = [main, *copy.deepcopy(self.sub_units)]
        if self.attachments:
            report["binaryData"] = copy.deepcopy(self.attachments)
        return report


# -- completing a built report from the converter context -------------------------------------


def apply_context(report: dict[str, Any], context: ConverterContext) -> None:
    """Fill what a report built without the converter context still lacks, in place: the
    process code from the process name (the server's process list) or the `process_code`
    default, the part number default, the revision (its default, else "": the rule of the
    built-in converters for files that name none), and the operator default.

    Used for report objects returned by converters that are not given the context (the
    `convert(self, file_path)` forms) and for reports queued through the library. Raises
    `ReportValidationError` when a process name cannot be turned into a code, or when the
    part number or process code is missing and no default is set (naming the setting).
    """
    def option(key: str) -> Any:
        for source in (context.arguments, context.defaults):
            value = source.get(key)
            if value is not None and value != "":
                return value
        return None

    repair = report.get("type") == "R"
    # The process_code default is a test process: it never stands in for a repair process.
    _fill_process(report, "", context.processes, None if repair else option("process_code"))
    header = report.get("uur") if repair else report.get("uut")
    if repair and isinstance(header, dict):
        _fill_process(header, "uur.", context.processes, option("process_code"))
    for key, name in (("pn", "part_number"), ("rev", "revision")):
        if report.get(key) in (None, "") and option(name) is not None:
            report[key] = str(option(name))
    if report.get("rev") is None:
        report["rev"] = ""
    _require_defaults(report, repair)
    if isinstance(header, dict) and header.get("user") in (None, "") and option("operator"):
        header["user"] = str(option("operator"))
    elif header is None and not repair and option("operator"):
        report["uut"] = {"user": str(option("operator"))}


def _require_defaults(report: dict[str, Any], repair: bool) -> None:
    """Name the setting that would supply a missing part number or test process code (a
    repair's process has no default: validation names it)."""
    missing = []
    if report.get("pn") in (None, ""):
        missing.append("no part number (pn): give part_number when building the report, or "
                       "set converters.defaults.part_number (pywats-client config set "
                       "converters.defaults.part_number PN-100)")
    if not repair and report.get("processCode") is None and report.get("processName") is None:
        missing.append("no process code (processCode): give operation_code (a code such as "
                       "10, or a process name the server knows), or set "
                       "converters.defaults.process_code (pywats-client config set "
                       "converters.defaults.process_code 10)")
    if missing:
        raise ReportValidationError(
            f"the report has {'; and '.join(missing)}. A watch folder's converter arguments "
            "may set part_number and process_code for its files alone")


def _fill_process(obj: dict[str, Any], where: str, table: Mapping[str, int],
                  default: Any) -> None:
    if obj.get("processCode") is not None:
        return
    name = obj.get("processName")
    if isinstance(name, str) and name:
        # A report that names its process is filed under that process or not at all: the
        # default code stands in only for reports that name none.
        if name in table:
            obj["processCode"] = int(table[name])
            return
        if table:
            known = ", ".join(f"{n!r} ({c})"
                              for n, c in sorted(table.items(), key=lambda i: i[1]))
            raise ReportValidationError(
                f"{where}processName {name!r} is not a process the server knows (known: "
                f"{known}); use one of those names or give the process code as a number")
        raise ProcessListUnknownError(
            f"{where}processName {name!r} cannot be looked up yet: the server's process list "
            "is not known (it is fetched once the server is reachable); the file waits for it")
    if default is None:
        return  # validation names the missing processCode and the fix
    try:
        obj["processCode"] = int(default)
    except (TypeError, ValueError):
        raise ReportValidationError(f"the process_code default {default!r} is not a "
                                    "number") from None
    # A name the server's list could not confirm would make the server refuse the report;
    # the configured code is what counts.
    obj.pop("processName", None)

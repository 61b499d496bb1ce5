"""The step tree of one WSTF UUT: test, multi-measurement, sequence, action, chart and series
lines become WSJF steps and measurements, with statuses computed from the limits ("Active")
or taken as written ("Import").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pywats_client.converters.wstf_values import (
    BOOLEAN,
    LOW_LIMIT,
    MEASURE_NAME,
    STEP_NAME,
    UNIT,
    VALUE,
    X_DATA,
    X_LABEL,
    X_UNIT,
    Y_DATA,
    Y_LABEL,
    Y_UNIT,
    Row,
    SourceFile,
    log,
    show_cells,
)
from pywats_client.errors import ReportValidationError
from pywats_client.report.model import CHART_MAX_SERIES, CHART_TYPES
from pywats_client.report.operators import LOG, NUMERIC_OPERATORS, numeric_status, string_status

# Roll-up order: the worst status of a sequence's children wins; the rest do not fail it.
_SEVERITY = {"T": 3, "E": 2, "F": 1}
# Charts take the report's own types and limits, which the WATS client's WSTF converter applies
# too (10 series a chart, 10,000 points a series).
_CHART_TYPES = {name.lower(): name for name in CHART_TYPES}
_STRING_OPERATORS = ("EQ", "NE", "CASESENSIT", "IGNORECASE", LOG)


@dataclass(frozen=True)
class Kind:
    """One family of test steps: its line names, WSJF step types and measurement list."""

    label: str  # as written in the StepType column, e.g. "NumericLimitTest"
    key: str  # the WSJF measurement list
    single_type: str
    multi_type: str


NUMERIC = Kind("NumericLimitTest", "numericMeas", "ET_NLT", "ET_MNLT")
PASS_FAIL = Kind("PassFailTest", "booleanMeas", "ET_PFT", "ET_MPFT")
STRING = Kind("StringValueTest", "stringMeas", "ET_SVT", "ET_MSVT")
KINDS = (NUMERIC, PASS_FAIL, STRING)
SIMPLE_LINE = {kind.label.lower(): kind for kind in KINDS}
MULTIPLE_LINE = {f"multiple{kind.label.lower()}": kind for kind in KINDS}
END_MULTIPLE_LINE = {f"endmultiple{kind.label.lower()}": kind for kind in KINDS}
STEP_TYPES = (
    "SequenceCall", "EndSequenceCall", *(kind.label for kind in KINDS),
    *(f"Multiple{kind.label}" for kind in KINDS), *(f"EndMultiple{kind.label}" for kind in KINDS),
    "ActionStep", "Chart", "Series",
)


@dataclass
class Node:
    """A step being built, with what the reader needs to know about it besides the WSJF."""

    step: dict[str, Any]
    path: str  # as validation names it, e.g. "root.steps[2]"
    line: int
    kind: Kind | None = None  # test steps only
    multi: bool = False
    written: str | None = None  # a status written for the step itself (not a measurement)
    failed: int = 0
    skipped: int = 0
    names: set[str] = field(default_factory=set)
    chart_line: int = 0

    @property
    def name(self) -> str:
        return str(self.step.get("name") or "")

    @property
    def measurements(self) -> list[dict[str, Any]]:
        assert self.kind is not None
        items: list[dict[str, Any]] = self.step[self.kind.key]
        return items


class StepTree:
    """The steps of one UUT while its step data is read: the root sequence, the open
    sequences, the test step continuation lines may add to and an open `Multiple…` block."""

    def __init__(self, file: SourceFile, *, line: int, active: bool, name: str,
                 path: str | None, version: str | None) -> None:
        self.file = file
        self.active = active  # ConverterMode Active: statuses from the limits, rolled up
        step: dict[str, Any] = {
            "id": 0, "group": "M", "stepType": "SequenceCall", "name": name, "status": "P",
            "seqCall": {"path": path, "name": name, "version": version},
            "steps": [],
        }
        self.root = Node(step, "root", line)
        self.stack: list[Node] = [self.root]
        self.next_id = 1
        self.extendable: Node | None = None  # the test step continuation lines may add to
        self.block: Node | None = None  # an open Multiple… step
        self.current: Node | None = None  # the step a Chart line attaches to
        self.locations: dict[str, str] = {}  # step paths -> "line N"

    def add(self, row: Row, kind_text: str) -> None:
        """Read one step-data line; `kind_text` is its StepType in lower case."""
        if kind_text == "chart":
            self._chart(row)
        elif kind_text == "series":
            self._series(row)
        elif self.block is not None:
            self._in_block(row, kind_text)
        elif kind_text in SIMPLE_LINE:
            self._test(row, SIMPLE_LINE[kind_text])
        elif kind_text in MULTIPLE_LINE:
            self._open_block(row, MULTIPLE_LINE[kind_text])
        elif kind_text in END_MULTIPLE_LINE:
            raise row.error(
                f"{row.cells[0].strip()} without an open "
                f"Multiple{END_MULTIPLE_LINE[kind_text].label}"
            )
        elif kind_text == "sequencecall":
            self._open_sequence(row)
        elif kind_text == "endsequencecall":
            self._close_sequence(row)
        elif kind_text == "actionstep":
            self._action(row)
        else:
            raise row.error(
                f"unknown StepType {row.cells[0].strip()!r}; expected one of "
                f"{', '.join(STEP_TYPES)}"
            )

    def _new_step(self, row: Row, step_type: str, **extra: Any) -> Node:
        parent = self.stack[-1]
        children = parent.step["steps"]
        step: dict[str, Any] = {"id": self.next_id, "group": "M", "stepType": step_type,
                                "name": row.text(STEP_NAME), "status": "P"}
        self.next_id += 1
        node = Node(step, f"{parent.path}.steps[{len(children)}]", row.number, **extra)
        self.locations[node.path] = f"line {row.number}"
        row.step_fields(step, override=False)
        children.append(step)
        self.current = node
        return node

    def _test(self, row: Row, kind: Kind) -> None:
        name, measure = row.text(STEP_NAME), row.text(MEASURE_NAME)
        if not name and not measure:
            raise row.error(f"{kind.label} without StepName or MeasureName")
        prev = self.extendable
        if prev is not None and prev.kind is kind and (not name or name == prev.name):
            if prev.multi and measure and not (name and measure in prev.names):
                self._measurement(prev, row)
                return
            if not name:
                if prev.multi:
                    raise row.error(
                        f"measurement {measure!r} is already in step {prev.name!r} (line "
                        f"{prev.line}); measure names must differ within a step"
                    )
                raise row.error(
                    f"measurement {measure!r} cannot be added to the single-measurement step "
                    f"{prev.name!r} (line {prev.line}): give that line a MeasureName too, or "
                    "give this line a StepName"
                )
        elif not name:
            raise row.error(
                f"{kind.label} without StepName, and the line before is not a "
                f"multi-measurement {kind.label} it could continue"
            )
        node = self._new_step(row, kind.multi_type if measure else kind.single_type,
                              kind=kind, multi=bool(measure))
        node.step[kind.key] = []
        self.extendable = node
        if not measure:
            node.written = row.status()
        self._measurement(node, row)

    def _open_block(self, row: Row, kind: Kind) -> None:
        if not row.text(STEP_NAME):
            raise row.error(f"Multiple{kind.label} needs a StepName")
        node = self._new_step(row, kind.multi_type, kind=kind, multi=True)
        node.step[kind.key] = []
        self.block, self.extendable = node, None
        if row.text(MEASURE_NAME) or row.text(VALUE):
            self._measurement(node, row)  # the main line carries the first measurement
        else:
            node.written = row.status()  # the main line speaks for the step
            self._refresh(node)

    def _in_block(self, row: Row, kind_text: str) -> None:
        block = self.block
        assert block is not None and block.kind is not None
        kind = SIMPLE_LINE.get(kind_text) or MULTIPLE_LINE.get(kind_text)
        name = row.text(STEP_NAME)
        if kind is block.kind and (not name or name == block.name):
            self._measurement(block, row)
            return
        end_kind = END_MULTIPLE_LINE.get(kind_text)
        if end_kind is block.kind and (not name or name == block.name):
            row.step_fields(block.step, override=True)
            written = row.status()
            if written is not None:
                block.written = written
            self._refresh(block)
            self.block = None
            self.current = block
            return
        raise row.error(
            f"{show_cells(row.cells)} inside Multiple{block.kind.label} {block.name!r} (line "
            f"{block.line}); close it with EndMultiple{block.kind.label} first"
        )

    def _measurement(self, node: Node, row: Row) -> None:
        kind = node.kind
        assert kind is not None
        index = len(node.measurements)
        measure = row.text(MEASURE_NAME)
        if node.multi:
            if not measure:
                raise row.error(
                    f"a measurement of the multi-measurement step {node.name!r} (line "
                    f"{node.line}) needs a MeasureName"
                )
            if measure in node.names:
                raise row.error(
                    f"measurement {measure!r} is already in step {node.name!r} (line "
                    f"{node.line}); measure names must differ within a step"
                )
            node.names.add(measure)
        if row.number != node.line:
            row.step_fields(node.step, override=False)
        # A single-measurement step's StepStatus is the step's; a multi one's, the measurement's.
        written = row.status()
        name = measure if node.multi else None
        if kind is NUMERIC:
            item = self._numeric(row, name, written)
        elif kind is PASS_FAIL:
            item = self._pass_fail(row, name, written)
        else:
            item = self._string(row, name, written)
        node.measurements.append(item)
        if item["status"] == "F":
            node.failed += 1
        elif item["status"] == "S":
            node.skipped += 1
        self.locations[f"{node.path}.{kind.key}[{index}]"] = f"line {row.number}"
        self.current = node
        self._refresh(node)

    def _refresh(self, node: Node) -> None:
        """A test step's status from its measurements and what was written for it."""
        count = len(node.measurements)
        rolled = "F" if node.failed else ("S" if count and node.skipped == count else "P")
        if node.written is None:
            status = rolled
        elif self.active:
            status = _worse(node.written, rolled if rolled == "F" else None)
        else:
            status = node.written
        node.step["status"] = status

    def _numeric(self, row: Row, name: str | None,
                 written: str | None) -> dict[str, Any]:
        op = _comp_op(row, NUMERIC_OPERATORS, NUMERIC.label, "strings")
        value = row.float_cell(VALUE, "Value", required=True)
        assert value is not None
        low, high = row.limits(op)

        def compute() -> str:
            try:
                return numeric_status(op, value, low, high)
            except ReportValidationError as exc:
                raise row.error(f"{exc}: fill the LowLimit/HighLimit cells") from None

        item: dict[str, Any] = {"compOp": op, "name": name,
                                "status": self._measurement_status(row, written, compute),
                                "unit": row.text(UNIT) or None, "value": value}
        if low is not None:
            item["lowLimit"] = low
        if high is not None:
            item["highLimit"] = high
        return item

    def _pass_fail(self, row: Row, name: str | None,
                   written: str | None) -> dict[str, Any]:
        text = row.text(VALUE)
        passed = BOOLEAN.get(text.lower())
        if text and passed is None:
            raise row.error(f"PassFailTest Value {text!r}; expected TRUE or FALSE")

        def compute() -> str:
            if passed is None:
                raise row.error("PassFailTest without Value or StepStatus; write TRUE or FALSE")
            return "P" if passed else "F"

        # A written Failed wins over the value: the value is then taken as false.
        return {"name": name, "status": self._measurement_status(row, written, compute)}

    def _string(self, row: Row, name: str | None,
                written: str | None) -> dict[str, Any]:
        op = _comp_op(row, _STRING_OPERATORS, STRING.label, "numbers")
        value, limit = row.raw(VALUE), row.raw(LOW_LIMIT)  # the LowLimit column is the limit

        def compute() -> str:
            # EQ/NE on strings are the case-sensitive comparison (and its negation).
            status = string_status("CASESENSIT" if op in ("EQ", "NE") else op, value, limit)
            if op == "NE":
                return "F" if status == "P" else "P"
            return status

        return {"compOp": op, "name": name,
                "status": self._measurement_status(row, written, compute),
                "value": value, "limit": limit or None}

    def _measurement_status(self, row: Row, written: str | None,
                            compute: Callable[[], str]) -> str:
        if written in ("P", "F", "S"):
            return written
        if written == "D":
            return "P"  # a Done step's measurement is kept as passed, as WATS exports it
        if written is None and not self.active:
            raise row.error(
                "StepStatus is empty, and with ConverterMode Import the statuses are taken as "
                "written: write Passed, Failed, Skipped, ... or use ConverterMode Active"
            )
        return compute()  # empty in Active mode, or Error/Terminated: ask the limits

    def _action(self, row: Row) -> None:
        if not row.text(STEP_NAME):
            raise row.error("ActionStep needs a StepName")
        node = self._new_step(row, "Action")
        node.step["status"] = row.status() or "D"
        self.extendable = None

    def _open_sequence(self, row: Row) -> None:
        name = row.text(STEP_NAME)
        if not name:
            raise row.error("SequenceCall needs a StepName (the sequence name)")
        root = self.stack[0]
        node = self._new_step(row, "SequenceCall")
        node.written = row.status()
        node.step["seqCall"] = {"path": root.step["seqCall"]["path"], "name": name,
                                "version": root.step["seqCall"]["version"]}
        node.step["steps"] = []
        self.stack.append(node)
        self.extendable = None

    def _close_sequence(self, row: Row) -> None:
        if len(self.stack) < 2:
            raise row.error("EndSequenceCall without an open SequenceCall")
        node = self.stack[-1]
        name = row.text(STEP_NAME)
        if name and name != node.name:
            raise row.error(
                f"EndSequenceCall {name!r} does not match the open SequenceCall {node.name!r} "
                f"(line {node.line})"
            )
        row.step_fields(node.step, override=True)
        written = row.status()
        if written is not None:
            node.written = written
        self.finish_sequence(node)
        self.stack.pop()
        self.current, self.extendable = node, None

    def finish_sequence(self, node: Node) -> None:
        worst = worst_status(
            child["status"] for child in node.step["steps"]
            if child.get("causedSeqFailure") is not False
        )
        if self.active:
            node.step["status"] = _worse(node.written or "P", worst)
        else:
            node.step["status"] = node.written or worst or "P"

    def _chart(self, row: Row) -> None:
        node = self.current
        if node is None:
            raise row.error("Chart before any step; a Chart line follows the step it belongs to")
        if node.chart_line:
            raise row.error(
                f"step {node.name!r} already has a chart (line {node.chart_line}); one chart "
                "per step"
            )
        chart_type = _CHART_TYPES.get(row.text(STEP_NAME).lower() or "line")
        if chart_type is None:
            raise row.error(
                f"chart type {row.text(STEP_NAME)!r}; expected one of "
                f"{', '.join(_CHART_TYPES.values())}"
            )
        node.step["chart"] = {
            "chartType": chart_type, "label": row.text(MEASURE_NAME) or None,
            "xLabel": row.text(X_LABEL) or None, "xUnit": row.text(X_UNIT) or None,
            "yLabel": row.text(Y_LABEL) or None, "yUnit": row.text(Y_UNIT) or None,
            "series": [],
        }
        node.chart_line = row.number
        if node.kind is NUMERIC:
            node.step["stepType"] = "WATS_XYGMNLT"

    def _series(self, row: Row) -> None:
        node = self.current
        if node is None or not node.chart_line:
            raise row.error("Series without a Chart line before it for the same step")
        series = node.step["chart"]["series"]
        if len(series) >= CHART_MAX_SERIES:
            raise row.error(
                f"more than {CHART_MAX_SERIES} series in the chart of step {node.name!r} (line "
                f"{node.chart_line})"
            )
        data_type = row.text(MEASURE_NAME) or "XYG"
        if data_type.upper() != "XYG":
            raise row.error(f"series data type {data_type!r}; only XYG is supported")
        y_data, y_count = row.series_data(Y_DATA, "YData")
        x_data, x_count = row.series_data(X_DATA, "XData")
        if x_count != y_count:
            raise row.error(f"XData has {x_count} values and YData {y_count}; they must pair up")
        series.append({"dataType": "XYG", "name": row.text(STEP_NAME) or None,
                       "xdata": x_data, "ydata": y_data})

    def end(self, number: int) -> None:
        """Close what is still open at `--Step-Data-End--` (line `number`), with a warning."""
        if self.block is not None:
            block = self.block
            assert block.kind is not None
            log.warning("%s: Multiple%s %r (line %d) is not closed before line %d; closed there",
                        self.file.path, block.kind.label, block.name, block.line, number)
            self.block = None
        while len(self.stack) > 1:
            node = self.stack.pop()
            log.warning("%s: SequenceCall %r (line %d) has no EndSequenceCall; closed at line %d",
                        self.file.path, node.name, node.line, number)
            self.finish_sequence(node)
        self.extendable = None


def worst_status(statuses: Iterable[str]) -> str | None:
    """The status that fails a sequence most (T > E > F), None when none does."""
    worst = None
    for status in statuses:
        if _SEVERITY.get(status, 0) > _SEVERITY.get(worst or "", 0):
            worst = status
    return worst


def _worse(status: str, other: str | None) -> str:
    if other is not None and _SEVERITY.get(other, 0) > _SEVERITY.get(status, 0):
        return other
    return status


def _comp_op(row: Row, allowed: Sequence[str], label: str, others: str) -> str:
    """The row's CompOperator, which must be one a `label` step takes (the rest compare
    `others`)."""
    op = row.comp_op()
    if op not in allowed:
        raise row.error(f"CompOperator {op} compares {others}; a {label} takes one of "
                        f"{', '.join(allowed)}")
    return op

"""Steps for `ATMLConverter`: the TestGroup / Test / SessionAction tree as WSJF steps.

Owns the step tree, built as the file is read: document order, sequence calls (their file,
sequence and version), the payload each step carries, loops, and TestStand's step properties
(type, group, step id, start and total time, "caused sequence failure"). What a step's
results hold is sorted by `atml_results.py`. Depends on `atml_values`, `atml_results`,
`report`, `errors` and the stdlib.

Where WSJF has no place for what the file says:

* A step carries one kind of result. A test step that also ran a sequence (a sequence-adapter
  test, a post-action call) becomes the test step followed by the sequence call; additional
  results of a step that already carries a result are kept as lines of its report text.
* A loop's summary comes before its iterations, which are named like it (TestStand appends
  " (Loop Index:N)"); an iteration without its summary is kept as a plain step.
"""

from __future__ import annotations

import contextlib
import re
from datetime import datetime, tzinfo
from typing import Any

from pywats_client.converters.atml_results import Content, read_content
from pywats_client.converters.atml_values import (
    Node,
    finite,
    is_true,
    moment,
    node_outcome,
    prop,
    properties,
    split_sequence,
    whole,
)
from pywats_client.errors import ConversionError
from pywats_client.report.model import (
    INT16,
    STEP_NAME_LIMIT,
    format_datetime,
    group_letter,
)

STEP_TAGS = ("TestGroup", "Test", "SessionAction")
SEQUENCE_STEP_TYPES = frozenset({"SequenceCall", "WATS_SeqCall"})
_LOOP_SUFFIX = re.compile(r"\s*\(Loop Index:\s*\d+\)\s*$", re.IGNORECASE)
_CALLER = re.compile(r"SequenceCallStepName\s*=\s*'(.*)'", re.DOTALL)
_SEVERITY = {"F": 1, "E": 2, "T": 3}
_BATCH = 32  # step elements mapped at a time


class _Open:
    """A step element (or the ResultSet) being read, with its child steps as they were mapped:
    the mapped steps, or the first problem among them (raised where mapping the whole tree
    would raise it: after the element's own problems)."""

    __slots__ = ("kids", "node", "order", "problem", "steps")

    def __init__(self, node: Node, order: int) -> None:
        self.node = node
        self.order = order  # in document order of the step elements' starts
        self.kids = 0  # child step elements
        self.steps: list[dict[str, Any]] = []
        self.problem: Exception | None = None


class StepBuilder:
    """Builds the step tree of one `tr:TestResults` as it is read; not shared between reports.

    `started` and `ended` are told of the elements as they start and end: each step element
    is mapped when it ends (its child steps are then mapped already) and can be dropped;
    the ResultSet stays, and `root` makes the root sequence from it once the report ended.
    """

    def __init__(self, path: object, zone: tzinfo | None, report: Node | None = None,
                 wrapped: bool = False) -> None:
        self.path = path
        self.zone = zone
        self.places: dict[int, str] = {}  # id(step dict) -> place in the file
        self.by_result_id: dict[str, dict[str, Any]] = {}  # ATML ID -> step, for failure stacks
        self._first: dict[str, int] = {}  # ATML ID -> order of the step that has it
        self.report = report  # the tr:TestResults element
        # ATML 2.02 puts the root sequence in one more `tr:TestGroup`; it is unwrapped so that
        # all three dialects give the same tree.
        self.wrapped = wrapped
        self._open: list[_Open] = []
        self._set: _Open | None = None  # the ResultSet
        # A 2.02 ResultSet's first step, a TestGroup: the root sequence while it is the only
        # step, so it is mapped only when the ResultSet ends or a second step starts.
        self._wrapper: _Open | None = None
        self._started = 0
        # Step elements that ended, with the element they stand in, waiting to be mapped:
        # mapping them in batches, between stretches of reading, is faster than one at a time
        # (the CPU's caches keep either).
        self._ended: list[tuple[_Open, _Open]] = []

    # -- the tree, as it is read ---------------------------------------------------------------

    def started(self, node: Node, parent: Node | None) -> None:
        """An element starts: a step element of the report's ResultSet or of one of its step
        elements, or the ResultSet itself; anything else is not followed."""
        if self._open and parent is self._open[-1].node and node.tag in STEP_TAGS:
            outer = self._open[-1]
            outer.kids += 1
            if self._wrapper is not None:  # a second step beside it: it was a step after all
                self._ended.append((self._wrapper, outer))
                self._wrapper = None
            self._started += 1
            self._open.append(_Open(node, self._started))
        elif node.tag == "ResultSet" and parent is self.report and self._set is None:
            self._set = _Open(node, 0)
            self._open.append(self._set)

    def ended(self, node: Node) -> bool:
        """An element ends: True when it was a step element, now mapped (it can go)."""
        if not self._open or self._open[-1].node is not node:
            return False
        done = self._open.pop()
        if done is self._set:
            return False  # the report reads it when it ends
        outer = self._open[-1]
        if outer is self._set and self.wrapped and outer.kids == 1 and node.tag == "TestGroup":
            self._wrapper = done
        else:
            self._ended.append((done, outer))
            if len(self._ended) >= _BATCH:
                self._catch_up()
        return True

    def _catch_up(self) -> None:
        """Map the step elements that ended, in the order they did (a step after its child
        steps), into the element they stand in."""
        for element, outer in self._ended:
            if outer.problem is not None:
                continue
            try:
                outer.steps.extend(self.step(element))
            except (ConversionError, ValueError, RecursionError) as exc:
                # Raised when the report ends, as mapping the whole tree would raise it.
                outer.problem = exc
                outer.steps = []  # the report fails: its steps are not needed
        self._ended.clear()

    # -- the tree ---------------------------------------------------------------------------

    def root(self, result_set: Node, sequence_name: str, version: str) -> dict[str, Any]:
        """The root sequence call from `tr:ResultSet` (or from the TestGroup that wraps the
        root sequence in ATML 2.02), once the report has been read."""
        self._catch_up()
        element = self._wrapper or self._set or _Open(result_set, 0)
        node = element.node
        step = self._base(node, default_type="SequenceCall")
        path, name = split_sequence(node.get("name") or "")
        if not path and node is not result_set:
            path = split_sequence(result_set.get("name") or "")[0]
        step["name"] = _crop(name or sequence_name)
        children = self._children(element)
        if "status" not in step:
            fallback = node_outcome(result_set)
            step["status"] = fallback if fallback is not None else _worst(children)
        content = self._content(node, step, seq_like=True)
        self._set_text(step, content, with_extras=True)
        step["seqCall"] = {"path": path, "name": name or sequence_name,
                           "version": content.version or version}
        step["steps"] = children
        return step

    def _children(self, element: _Open) -> list[dict[str, Any]]:
        """The steps of `element`'s step elements, in document order (= execution order)."""
        if element.problem is not None:
            raise element.problem
        return _settle_loops(element.steps)

    def step(self, element: _Open) -> list[dict[str, Any]]:
        """One step element as WSJF steps: usually one, two for a test that ran a sequence."""
        node = element.node
        step = self._base(node)
        step_type = step["stepType"]
        ident = node.get("ID")
        if ident:
            # The first step in the file with this ID keeps it (steps end in another order).
            first = self._first.get(ident)
            if first is None or element.order < first:
                self._first[ident] = element.order
                self.by_result_id[ident] = step
        if "status" not in step:
            step["status"] = "D"  # an element without outcome ran, with no verdict
        is_group = node.tag == "TestGroup"
        seq_like = is_group or step_type in SEQUENCE_STEP_TYPES
        content = self._content(node, step, seq_like)
        has_kids = element.kids > 0
        # Additional results become the payload of a step that has no other result.
        self._set_text(step, content, with_extras=bool(
            content.kind or seq_like or content.popup or content.exit_code is not None))
        if content.kind:
            step[content.kind] = content.measurements
            if not has_kids:
                return [step]
            children = self._children(element)
            seq_path, seq_name = split_sequence(node.get("name") or "")
            if is_group and seq_name:
                # The sequence this test step ran (sequence adapter or post action).
                call: dict[str, Any] = {"id": 0, "stepType": "SequenceCall", "name": step["name"],
                                        "status": _worst(children)}
                if "group" in step:
                    call["group"] = step["group"]
                call["seqCall"] = {"path": seq_path, "name": seq_name, "version": ""}
                call["steps"] = children
                self.places[id(call)] = node.place()
                return [step, call]
            return [step, *children]
        if seq_like:
            seq_path, seq_name = split_sequence(node.get("name") or "")
            step["seqCall"] = {"path": seq_path, "name": seq_name, "version": content.version or ""}
            step["steps"] = self._children(element)
            return [step]
        if content.popup:
            step["messagePopup"] = content.popup
        elif content.exit_code is not None:
            step["callExe"] = {"exitCode": content.exit_code}
        elif content.extras:
            step["additionalResults"] = content.additional_results()
        return [step, *self._children(element)] if has_kids else [step]

    # -- step properties ---------------------------------------------------------------------

    def _base(self, node: Node, default_type: str = "") -> dict[str, Any]:
        """id placeholder, group, type, name, status, times, TestStand id and failure flag."""
        props = _ts_props(node)
        values = properties(props)
        step: dict[str, Any] = {"id": 0}
        self.places[id(step)] = node.place()
        group = values.get("stepgroup")
        if group:
            # A group WSJF does not know is left out rather than guessed.
            with contextlib.suppress(ValueError):
                step["group"] = group_letter(group)
        step_type = values.get("steptype", "").strip() or default_type
        if not step_type and node.tag == "TestGroup":
            step_type = "SequenceCall"
        step["stepType"] = step_type
        step["name"] = _crop(self._name(node) or step_type or node.tag)
        status = node_outcome(node)
        if status is not None:
            step["status"] = status
        start = self._moment(node, "startDateTime")
        if start is not None:
            step["start"] = format_datetime(start)
        total = _seconds(values.get("totaltime"))
        if total is None and start is not None:
            end = self._moment(node, "endDateTime")
            if end is not None and end >= start:
                total = (end - start).total_seconds()
        if total is not None:
            step["totTime"] = total
        guid = node.get("testReferenceID") or values.get("stepid")
        if guid:
            step["tsGuid"] = guid
        if is_true(values.get("stepcausedsequencefailure")):
            step["causedSeqFailure"] = True
        loop = _loop(props.child("LoopingProperties") if props is not None else None)
        if loop is not None:
            step["loop"] = loop
            if "idx" in loop:
                # TestStand names iterations "<step> (Loop Index:N)"; WSJF wants the step name.
                step["name"] = _LOOP_SUFFIX.sub("", step["name"]) or step["name"]
        return step

    def _name(self, node: Node) -> str:
        """The step's name: a sequence call is named after its calling step, not the sequence."""
        caller = node.get("callerName")
        if caller:
            return caller
        match = _CALLER.search(node.get("userDefinedType") or "")
        if match:
            return match.group(1)
        name = node.get("name") or ""
        if node.tag in ("TestGroup", "ResultSet"):
            return name.rpartition("#")[2]
        return name

    def _moment(self, node: Node, attr: str) -> datetime | None:
        return moment(self.path, node, attr, self.zone)

    def _content(self, node: Node, step: dict[str, Any], seq_like: bool) -> Content:
        return read_content(self.path, node, step["stepType"], step.get("status", "D"),
                            seq_like)

    def _set_text(self, step: dict[str, Any], content: Content, with_extras: bool) -> None:
        text = content.report_text(with_extras)
        if text is not None:
            step["reportText"] = text


# -- small pieces ---------------------------------------------------------------------------------


def _ts_props(node: Node) -> Node | None:
    for extension in node.all("Extension"):
        props = extension.child("TSStepProperties")
        if props is not None:
            return props
    return None


def _crop(name: str) -> str:
    # WATS keeps step names up to 100 characters; TestStand allows longer ones.
    return name if len(name) <= STEP_NAME_LIMIT else name[:STEP_NAME_LIMIT]


def _seconds(text: str | None) -> float | None:
    value = finite(text)
    return value if value is not None and value >= 0 else None


def _loop(props: Node | None) -> dict[str, int] | None:
    """WSJF loop info from TestStand's LoopingProperties (summary or one iteration)."""
    if props is None:
        return None
    loop: dict[str, int] = {}
    for key, name in (("idx", "LoopIndex"), ("num", "NumLoops"), ("passed", "NumPassed"),
                      ("failed", "NumFailed"), ("endingIndex", "EndingLoopIndex")):
        value = whole(prop(props, name))
        if value is not None and INT16[0] <= value <= INT16[1]:
            loop[key] = value
    if "idx" in loop:
        return {"idx": loop["idx"]} if loop["idx"] >= 0 else None
    return loop or None


def _settle_loops(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Loop summaries first, then their iterations, as WSJF wants; an iteration with no
    summary before it keeps its step but loses its loop index.

    Linear in the step count: only the iterations right before a summary, not yet placed
    after another summary, are moved behind it.
    """
    out: list[dict[str, Any]] = []
    pending: int | None = None  # where the trailing run of unplaced iterations starts
    for step in steps:
        loop = step.get("loop")
        name = step.get("name")
        if loop is not None and "idx" in loop:
            if pending is None or out[pending].get("name") != name:
                pending = len(out)
        elif loop is not None and pending is not None and out[pending].get("name") == name:
            # The summary was written after its iterations: it goes first.
            out[pending:pending] = [step]
            pending = None
            continue
        else:
            pending = None
        out.append(step)
    for n, step in enumerate(out):
        loop = step.get("loop")
        if loop is not None and "idx" in loop:
            before = out[n - 1] if n else None
            if before is None or "loop" not in before or before.get("name") != step.get("name"):
                del step["loop"]
    return out


def _worst(steps: list[dict[str, Any]]) -> str:
    worst = ""
    for step in steps:
        status = step.get("status", "")
        if _SEVERITY.get(status, 0) > _SEVERITY.get(worst, 0):
            worst = status
    return worst or "P"

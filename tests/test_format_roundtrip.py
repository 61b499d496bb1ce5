"""Property tests: random reports written as WSJF, WSXF and WSTF convert back to the same WSJF.

A hypothesis strategy builds valid WSJF reports restricted to what each format can carry
(formats.md §1-§3); `tests/writers.py` writes them as a station would; the built-in converter
must give the report back. Where a format cannot tell two WSJF values apart the comparison
goes through `expected()`, the one list of such normalisations. WSTF in Active mode must
compute each status with `pywats_client.report.operators` and roll failures up. Damaged and
random files must raise only `ConversionError`, within a deadline.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import itertools
import json
import re
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pywats_client.converters import ConverterContext
from pywats_client.converters.base import Converter
from pywats_client.converters.wsjf import WATSStandardJsonConverter
from pywats_client.converters.wstf import WATSStandardTextConverter
from pywats_client.converters.wsxf import WATSStandardXMLConverter
from pywats_client.errors import ConversionError
from pywats_client.report.checks import finalize, validate
from pywats_client.report.model import format_datetime, format_utc, number_steps, to_json_bytes
from pywats_client.report.operators import (
    LOG,
    NUMERIC_OPERATORS,
    limits_used,
    numeric_status,
    parse_comp_op,
    string_status,
)
from tests.writers import WstfStyle, to_wsjf, to_wstf, to_wsxf

WSJF, WSXF, WSTF = "wsjf", "wsxf", "wstf"
CET = timezone(timedelta(hours=1))
# The station's zone for WSTF, whose StartDateTime is local time without an offset.
CONTEXT = ConverterContext(station_name="ST-RT", location="Lab", purpose="Round trip",
                           timezone=CET, file_mtime=1_777_777_777.0)
CONVERTERS: dict[str, Converter] = {WSJF: WATSStandardJsonConverter(),
                                    WSXF: WATSStandardXMLConverter(),
                                    WSTF: WATSStandardTextConverter()}
SUFFIX = {WSJF: ".json", WSXF: ".xml", WSTF: ".txt"}

# Fixed examples (derandomize) keep CI reproducible; a per-example deadline turns a converter
# that hangs or crawls on some input into a failure instead of a stuck run.
DEADLINE = timedelta(seconds=5)
_HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example]


def _settings(examples: int) -> settings:
    return settings(max_examples=examples, derandomize=True, deadline=DEADLINE, database=None,
                    suppress_health_check=_HEALTH)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("roundtrip")


# -- text each format can carry -----------------------------------------------------------------

# XML 1.0 has no way to write the other C0 controls (not even as references), nor U+FFFE/FFFF
# (unassigned, so excluded with Cn); tab, LF and CR it carries (escaped by the writer).
_XML_CHARS = st.one_of(
    st.characters(exclude_categories=("Cs", "Cn"),
                  exclude_characters=[chr(c) for c in range(32) if c not in (9, 10, 13)]),
    st.sampled_from("<>&\"' \t\n\r"),
)
# JSON carries every character.
_JSON_CHARS = st.one_of(st.characters(exclude_categories=["Cs"]), _XML_CHARS)
# A WSTF cell cannot hold a tab (the separator) or a line end, and the converter removes the
# other C0 controls; cells are read stripped (see _wstf_text).
_WSTF_CHARS = st.characters(exclude_categories=("Cs", "Cn", "Cc"))


def _text(fmt: str, *, max_size: int = 12, min_size: int = 0) -> st.SearchStrategy[str]:
    if fmt == WSTF:
        return _wstf_text(max_size=max_size, min_size=min_size)
    chars = _JSON_CHARS if fmt == WSJF else _XML_CHARS
    return st.text(chars, min_size=min_size, max_size=max_size)


def _wstf_text(*, max_size: int = 12, min_size: int = 0) -> st.SearchStrategy[str]:
    # Cells are stripped when read (an empty cell means "not given"), so text with blanks at
    # either end cannot come back as written.
    return st.text(_WSTF_CHARS, max_size=max_size).map(str.strip).filter(
        lambda text: len(text) >= min_size)


def _name(fmt: str, max_size: int = 16) -> st.SearchStrategy[str]:
    """A name that must not be blank (serial numbers, descriptions, WSTF step names)."""
    return _text(fmt, max_size=max_size, min_size=1).filter(lambda text: text.strip() != "")


def _maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


_GUIDS = st.uuids().map(str)
_FORMATS = st.sampled_from(["%d", "%.3f", "%g", "0.00"])
_INT16 = st.integers(-32768, 32767)
_INT32 = st.integers(-(2**31), 2**31 - 1)
# JSON numbers: integers or finite doubles; the text formats read both back as doubles.
_NUMBERS = st.one_of(st.integers(-10**6, 10**6),
                     st.floats(allow_nan=False, allow_infinity=False))
_ZONES = st.sampled_from([timezone.utc, CET, timezone(timedelta(hours=5, minutes=30)),
                          timezone(timedelta(hours=-8))])
_MOMENTS = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31))


@st.composite
def _start(draw: st.DrawFn, fmt: str) -> tuple[str, str]:
    """(start, startUTC): local time with its offset, and the same moment in UTC."""
    moment = draw(_MOMENTS)
    if fmt == WSTF:
        # StartDateTime is yyyy-MM-ddTHH:mm:ss in the station's zone: no fraction, no offset
        # (the zone comes from the converter context).
        moment = moment.replace(microsecond=0, tzinfo=CET)
    else:
        moment = moment.replace(tzinfo=draw(_ZONES))
    return format_datetime(moment), format_utc(moment)


def _series_data(count: int) -> st.SearchStrategy[str]:
    point = st.one_of(st.integers(-1000, 1000).map(str),
                      st.floats(allow_nan=False, allow_infinity=False).map(repr))
    return st.lists(point, min_size=count, max_size=count).map(";".join)


@st.composite
def _chart(draw: st.DrawFn, fmt: str) -> dict[str, Any]:
    label = _maybe(_name(fmt)) if fmt == WSTF else _maybe(_text(fmt))
    # Units: exports write "" for none (normalised to null, see expected()).
    unit = _maybe(_text(fmt, max_size=4))
    series = []
    for _ in range(draw(st.integers(0 if fmt != WSTF else 1, 3))):
        count = draw(st.integers(1, 5))
        series.append({"dataType": "XYG", "name": draw(label), "xdata": draw(_series_data(count)),
                       "ydata": draw(_series_data(count))})
    return {"chartType": draw(st.sampled_from(["Line", "LineLogX", "LineLogY", "LineLogXY"])),
            "label": draw(label), "xLabel": draw(label), "xUnit": draw(unit),
            "yLabel": draw(label), "yUnit": draw(unit), "series": series}


# -- measurements ---------------------------------------------------------------------------------

_NUMERIC_SPELLINGS = {"GELE": ["gele", "GeLe"], "LOG": ["log", "Log"]}
_STRING_OPERATORS = ["CASESENSIT", "IGNORECASE", LOG, "EQ", "NE"]


@st.composite
def _numeric(draw: st.DrawFn, fmt: str, name: str | None, status: str | None,
             active: bool = False) -> dict[str, Any]:
    """One numeric measurement with an operator and exactly the limits it uses.

    `status` None: drawn (or, `active`, computed later). The value is often one of the limits
    or next to one, where the operators differ.
    """
    op = draw(st.sampled_from(NUMERIC_OPERATORS))
    uses_low, uses_high = limits_used(op)
    low = draw(_NUMBERS) if uses_low else None
    high = draw(_NUMBERS) if uses_high else None
    near = [limit + delta for limit in (low, high) if limit is not None
            for delta in (0, -1, 1)]
    value = draw(st.sampled_from(near) | _NUMBERS if near else _NUMBERS)
    spelled = op
    if fmt != WSTF and op in _NUMERIC_SPELLINGS:
        # Operators are case-insensitive; exports write e.g. "IgnoreCase" (see expected()).
        spelled = draw(st.sampled_from([op, *_NUMERIC_SPELLINGS[op]]))
    if status is None:
        status = "P" if active else draw(st.sampled_from(
            [numeric_status(op, value, low, high), "P", "F", "S"]))
    unit = draw(_maybe(_text(fmt, max_size=4)))
    meas: dict[str, Any] = {"compOp": spelled, "name": name, "status": status, "unit": unit,
                            "value": value}
    if fmt != WSTF and draw(st.booleans()):
        meas["valueFormat"] = draw(_FORMATS)
    for key, limit in (("lowLimit", low), ("highLimit", high)):
        if limit is not None:
            meas[key] = limit
            if fmt != WSTF and draw(st.booleans()):
                meas[key + "Format"] = draw(_FORMATS)
    return meas


def _string_text(fmt: str) -> st.SearchStrategy[str]:
    # A string measurement's Value and limit cells are read as they are (not stripped).
    if fmt == WSTF:
        return st.text(_WSTF_CHARS, max_size=10)
    return _text(fmt, max_size=10)


@st.composite
def _string(draw: st.DrawFn, fmt: str, name: str | None, status: str | None,
            active: bool = False) -> dict[str, Any]:
    # EQ and NE on strings are left out of Active mode: limits.string_status() lets them pass
    # (log only) while the WSTF reader compares case-sensitively, as Virinco's sample file
    # shows. Until the two agree there is no one status to expect.
    op = draw(st.sampled_from(_STRING_OPERATORS[:3] if active else _STRING_OPERATORS))
    value = draw(_string_text(fmt))
    limit: str | None = draw(st.sampled_from([value, value.upper(), value.swapcase()])
                             | _string_text(fmt))
    if fmt == WSTF and limit == "":
        limit = None  # an empty LowLimit cell is "no limit"
    elif draw(st.booleans()) and op == LOG:
        limit = None
    if fmt != WSTF and op == "IGNORECASE":
        op = draw(st.sampled_from([op, "IgnoreCase"]))
    if status is None:
        status = "P" if active else draw(st.sampled_from(
            [string_status(op, value, limit), "P", "F", "S"]))
    return {"compOp": op, "name": name, "status": status, "value": value, "limit": limit}


@st.composite
def _boolean(draw: st.DrawFn, fmt: str, name: str | None, status: str | None,
             active: bool = False) -> dict[str, Any]:
    # In Active mode the status comes from the value TRUE/FALSE, so Skipped is not drawn.
    if status is None:
        status = draw(st.sampled_from("PF" if active else "PFS"))
    return {"name": name, "status": status}


_MEASURE = {"numericMeas": _numeric, "stringMeas": _string, "booleanMeas": _boolean}
_STEP_TYPES = {  # (single, multiple) step types as WATS exports them
    "numericMeas": ("ET_NLT", "ET_MNLT"), "stringMeas": ("ET_SVT", "ET_MSVT"),
    "booleanMeas": ("ET_PFT", "ET_MPFT"),
}
_OTHER_STEP_TYPES = {"numericMeas": ["NumericLimitTest", "WATS_XYGMNLT"],
                     "stringMeas": ["StringValueTest"], "booleanMeas": ["PassFailTest"]}


# -- steps ----------------------------------------------------------------------------------------


@st.composite
def _step_head(draw: st.DrawFn, fmt: str, name: str, step_type: str,
               status: str) -> dict[str, Any]:
    """The fields every step kind has; only those WSTF has columns for in WSTF."""
    step: dict[str, Any] = {
        "group": "M" if fmt == WSTF else draw(st.sampled_from("SMC")),
        "stepType": step_type, "name": name, "status": status,
    }
    optional: dict[str, st.SearchStrategy[Any]] = {
        "totTime": _NUMBERS, "errorCode": _INT32, "errorMessage": _text(fmt, max_size=20),
        "reportText": _text(fmt, max_size=30), "causedSeqFailure": st.booleans(),
    }
    if fmt != WSTF:
        optional.update({
            "start": _start(fmt).map(lambda pair: pair[0]), "tsGuid": _text(fmt, max_size=8),
            "causedUUTFailure": st.booleans(), "interactiveExeNum": _INT32,
        })
    for key, strategy in optional.items():
        if draw(st.integers(0, 3)) == 0:
            value = draw(strategy)
            if fmt == WSTF and value == "":
                continue  # an empty cell is "not given"
            step[key] = value
    if "errorCode" in step and fmt != WSTF and draw(st.booleans()):
        step["errorCodeFormat"] = "%d"
    return step


def _step_name(fmt: str) -> st.SearchStrategy[str]:
    return _name(fmt, max_size=20) if fmt == WSTF else _text(fmt, max_size=20)


_STATUSES = st.sampled_from("PFDSET")


def _measurement_status(step_status: str) -> str | None:
    """The status WSTF gives the only measurement of a single-measurement step.

    WSTF has one StepStatus cell for both: Passed/Failed/Skipped are the measurement's too, a
    Done step's measurement is Passed (as WATS exports it), and for Error or Terminated the
    measurement is judged by its value and limits (None).
    """
    return {"P": "P", "F": "F", "S": "S", "D": "P"}.get(step_status)


@st.composite
def _test_step(draw: st.DrawFn, fmt: str, kind: str, active: bool) -> dict[str, Any]:
    multi = draw(st.booleans())
    status = draw(_STATUSES)
    name = draw(_step_name(fmt))
    single_type, multi_type = _STEP_TYPES[kind]
    step_type = multi_type if multi else single_type
    if fmt != WSTF and draw(st.integers(0, 3)) == 0:
        step_type = draw(st.sampled_from(_OTHER_STEP_TYPES[kind]))
    step = draw(_step_head(fmt, name, step_type, status))
    measure = _MEASURE[kind]
    if multi:
        names = draw(st.lists(_name(fmt, max_size=8) if fmt == WSTF else _text(fmt, max_size=8),
                              min_size=1, max_size=4, unique=True))
        items = [draw(measure(fmt, measure_name, None, active)) for measure_name in names]
    elif fmt == WSTF and not active:
        meas_status = _measurement_status(status)
        if meas_status is None:
            # Error/Terminated: the reader judges the measurement by its value, as in Active
            # mode (so the operators and values are drawn as for Active mode).
            item = draw(measure(fmt, None, None, True))
            item["status"] = _judged(kind, item)
        else:
            item = draw(measure(fmt, None, meas_status, False))
        items = [item]
    else:
        items = [draw(measure(fmt, None, None, active))]
    step[kind] = items
    if kind == "numericMeas" and draw(st.integers(0, 3)) == 0:
        step["chart"] = draw(_chart(fmt))
        if fmt == WSTF:
            step["stepType"] = "WATS_XYGMNLT"  # WSTF: a numeric step with a chart is an XY graph
    return step


def _judged(kind: str, meas: dict[str, Any]) -> str:
    """A measurement's status from its value and limits, with pywats_client.report.operators."""
    op = str(meas.get("compOp"))
    if kind == "numericMeas":
        return numeric_status(op, meas["value"], meas.get("lowLimit"), meas.get("highLimit"))
    if kind == "stringMeas":
        return string_status(op, meas["value"], meas.get("limit"))
    return str(meas["status"])  # pass/fail: the value was written from the status


@st.composite
def _other_step(draw: st.DrawFn, fmt: str, kind: str) -> dict[str, Any]:
    """Steps without measurements: actions, message popups, executables, attachments…"""
    name = draw(_step_name(fmt))
    step_type = {"action": "Action", "popup": "MessagePopup", "callexe": "CallExecutable",
                 "attachment": "WATS_AttachFile", "additional": "Action"}[kind]
    step = draw(_step_head(fmt, name, step_type, draw(_STATUSES)))
    if kind == "popup":
        step["messagePopup"] = {"response": draw(_text(fmt)), "button": draw(_INT16)}
        if draw(st.booleans()):
            step["messagePopup"]["buttonFormat"] = "%d"
    elif kind == "callexe":
        step["callExe"] = {"exitCode": draw(_NUMBERS)}
        if draw(st.booleans()):
            step["callExe"]["exitCodeFormat"] = "%d"
    elif kind == "attachment":
        step["attachment"] = draw(_binary(fmt, with_id=False))
    elif kind == "additional":
        step["additionalResults"] = draw(st.lists(_additional(fmt), min_size=1, max_size=2))
    elif fmt != WSTF and draw(st.integers(0, 5)) == 0:
        step["chart"] = draw(_chart(fmt))
    return step


_LEAF_KINDS = {
    WSJF: ["numericMeas", "stringMeas", "booleanMeas", "action", "popup", "callexe",
           "attachment", "additional"],
    WSXF: ["numericMeas", "stringMeas", "booleanMeas", "action", "popup", "callexe",
           "attachment", "additional"],
    # WSTF has test steps and ActionStep lines only.
    WSTF: ["numericMeas", "stringMeas", "booleanMeas", "action"],
}


@st.composite
def _steps(draw: st.DrawFn, fmt: str, depth: int, active: bool, budget: list[int],
           root_call: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The child steps of one sequence; `budget` caps the steps of the whole report."""
    steps: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(0, 4))):
        if budget[0] <= 0:
            break
        budget[0] -= 1
        kinds = _LEAF_KINDS[fmt] + (["sequence"] if depth < 3 else [])
        kind = draw(st.sampled_from(kinds))
        # WSTF cannot express loops; WSJF and WSXF write them as a summary step followed by
        # one step per iteration.
        looped = fmt != WSTF and draw(st.integers(0, 6)) == 0
        made = [draw(_one_step(fmt, kind, depth, active, budget, root_call))
                for _ in range(draw(st.integers(1, 3)) if looped else 1)]
        steps.extend(_loop(made) if looped else made)
    return steps


@st.composite
def _one_step(draw: st.DrawFn, fmt: str, kind: str, depth: int, active: bool,
              budget: list[int], root_call: dict[str, Any] | None) -> dict[str, Any]:
    if kind == "sequence":
        return draw(_sequence(fmt, depth + 1, active, budget, root_call))
    if kind in _MEASURE:
        return draw(_test_step(fmt, kind, active))
    return draw(_other_step(fmt, kind))


@st.composite
def _sequence(draw: st.DrawFn, fmt: str, depth: int, active: bool, budget: list[int],
              root_call: dict[str, Any] | None) -> dict[str, Any]:
    name = draw(_step_name(fmt))
    step = draw(_step_head(fmt, name, "SequenceCall", draw(_STATUSES)))
    if root_call is not None:
        # A WSTF SequenceCall line names the sequence; its file and version are the root's
        # (SoftwareName/SoftwareVersion).
        step["seqCall"] = {"path": root_call["path"], "name": name,
                           "version": root_call["version"]}
    else:
        step["seqCall"] = {"path": draw(_maybe(_text(fmt, max_size=12))),
                           "name": draw(_text(fmt, max_size=12)),
                           "version": draw(_maybe(_text(fmt, max_size=6)))}
    step["steps"] = draw(_steps(fmt, depth, active, budget, root_call))
    return step


def _loop(iterations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A looped step: the summary (num/passed/failed/endingIndex), then each iteration."""
    name, kind = iterations[0]["name"], iterations[0]["stepType"]
    failed = sum(1 for step in iterations if step["status"] == "F")
    passed = sum(1 for step in iterations if step["status"] in ("P", "D"))
    last = iterations[-1]
    summary = {key: value for key, value in last.items() if key not in ("steps", "seqCall")}
    summary["name"] = name
    summary["status"] = "F" if failed else "P"
    summary["loop"] = {"num": len(iterations), "passed": passed, "failed": failed,
                       "endingIndex": len(iterations)}
    looped = [summary]
    for n, step in enumerate(iterations):
        step = dict(step, name=name, stepType=kind, loop={"idx": n})
        looped.append(step)
    return looped


# -- report headers ------------------------------------------------------------------------------


@st.composite
def _binary(draw: st.DrawFn, fmt: str, with_id: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {
        "contentType": draw(st.sampled_from(["image/png", "text/plain",
                                             "application/octet-stream"])),
        "data": base64.b64encode(draw(st.binary(max_size=120))).decode("ascii"),
        "name": draw(_text(fmt, max_size=12)),
    }
    if with_id and draw(st.booleans()):
        out["id"] = draw(_GUIDS)
    return out


@st.composite
def _prop(draw: st.DrawFn, fmt: str, depth: int = 0) -> dict[str, Any]:
    # TestStand properties: leaves hold their value as text, containers ("Obj") hold props.
    prop: dict[str, Any] = {"name": draw(_text(fmt, max_size=8))}
    container = depth < 2 and draw(st.integers(0, 3)) == 0
    prop["type"] = "Obj" if container else draw(st.sampled_from(["String", "Number",
                                                                 "Boolean"]))
    if draw(st.booleans()):
        prop["flags"] = draw(st.integers(0, 0xFFFF))
    if not container and draw(st.booleans()):
        prop["numFormat"] = draw(_FORMATS)
    if container:
        prop["props"] = draw(st.lists(_prop(fmt, depth + 1), min_size=1, max_size=3))
    else:
        prop["value"] = draw(_text(fmt, max_size=10))
    return prop


@st.composite
def _additional(draw: st.DrawFn, fmt: str) -> dict[str, Any]:
    return {"name": draw(_text(fmt, max_size=10)),
            "props": draw(st.lists(_prop(fmt), min_size=1, max_size=3))}


# Header keys of WSTF (formats.md §3), the sub-unit key and the markers: a misc info named like
# one of them would be read as that line.
_WSTF_KEYS = {key.lower() for key in (
    "SerialNumber", "PartNumber", "Revision", "OperationTypeName", "OperationTypeCode",
    "UUTStatus", "ErrorCode", "ErrorMessage", "StartDateTime", "UTCStartDateTime",
    "ExecutionTime", "StationName", "OperatorName", "TestSocketIndex", "FixtureId",
    "SoftwareName", "SoftwareVersion", "BatchSerialNumber", "Comment", "ConverterMode",
    "Subunit")}
_WSTF_MARKERS = {"--header-start--", "--step-data-start--", "--step-data-end--", "--uut-end--"}


def _free_wstf_key(text: str) -> bool:
    return (text.lower() not in _WSTF_KEYS
            and text.replace(" ", "").lower() not in _WSTF_MARKERS)


@st.composite
def _misc_info(draw: st.DrawFn, fmt: str) -> dict[str, Any]:
    if fmt == WSTF:
        # An unknown header key is a misc info with a text value; nothing else is expressible.
        return {"description": draw(_name(fmt).filter(_free_wstf_key)),
                "text": draw(_text(fmt, max_size=12))}
    misc: dict[str, Any] = {"description": draw(_name(fmt)),
                            "text": draw(_maybe(_text(fmt, max_size=12)))}
    if draw(st.booleans()):
        misc["typedef"] = draw(_text(fmt, max_size=8))
    numeric = draw(_maybe(_INT16))
    misc["numeric"] = numeric
    if numeric is not None and draw(st.booleans()):
        misc["numericFormat"] = "%d"
    if draw(st.booleans()):
        misc["id"] = draw(_GUIDS)
    return misc


@st.composite
def _sub_unit(draw: st.DrawFn, fmt: str) -> dict[str, Any]:
    unit: dict[str, Any] = {
        "partType": draw(_text(fmt, max_size=8)) if fmt == WSTF else draw(
            _maybe(_text(fmt, max_size=8))),
        "pn": draw(_name(fmt)), "rev": draw(_text(fmt, max_size=4)), "sn": draw(_name(fmt)),
    }
    if fmt != WSTF and draw(st.booleans()):
        unit["position"] = draw(_INT16)
    return unit


@st.composite
def _uut_header(draw: st.DrawFn, fmt: str) -> dict[str, Any]:
    header: dict[str, Any] = {"user": draw(_text(fmt, max_size=10))}
    optional: dict[str, st.SearchStrategy[Any]] = {
        "execTime": _NUMBERS, "testSocketIndex": _INT16, "batchSN": _text(fmt, max_size=8),
        "comment": _text(fmt, max_size=40), "errorCode": _INT32,
        "errorMessage": _text(fmt, max_size=20), "fixtureId": _text(fmt, max_size=8),
    }
    if fmt != WSTF:
        optional.update({"batchFailCount": _INT32, "batchLoopIndex": _INT32,
                         "stepIdCausedUUTFailure": _INT32})
    formatted = ("execTime", "testSocketIndex", "errorCode", "batchFailCount", "batchLoopIndex")
    for key, strategy in optional.items():
        if draw(st.booleans()):
            value = draw(strategy)
            if fmt == WSTF and value == "":
                continue
            header[key] = value
            if fmt != WSTF and key in formatted and draw(st.integers(0, 3)) == 0:
                header[key + "Format"] = draw(_FORMATS)
    if fmt == WSTF and header["user"] == "":
        del header["user"]
    return header


@st.composite
def _test_report(draw: st.DrawFn, fmt: str, active: bool = False) -> dict[str, Any]:
    start, start_utc = draw(_start(fmt))
    report: dict[str, Any] = {"type": "T"}
    if fmt != WSTF:
        report["id"] = draw(_GUIDS)  # WSTF has no report id: finalize() assigns one
    report.update({"pn": draw(_name(fmt)), "sn": draw(_name(fmt)),
                   "rev": draw(_text(fmt, max_size=6)), "processCode": draw(st.integers(0, 32767))})
    if draw(st.booleans()):
        report["processName"] = draw(_name(fmt))
    if fmt != WSTF and draw(st.integers(0, 3)) == 0:
        report["processCodeFormat"] = "%d"
    report["result"] = draw(st.sampled_from("PFET" if fmt == WSTF else "PFETD"))
    report["machineName"] = draw(_name(fmt))
    if fmt != WSTF:  # WSTF has no lines for these: the station's settings fill them
        report["location"] = draw(_text(fmt, max_size=10))
        report["purpose"] = draw(_text(fmt, max_size=10))
    report["start"], report["startUTC"] = start, start_utc
    if fmt == WSTF or draw(st.integers(0, 4)) != 0:
        report["uut"] = draw(_uut_header(fmt))
    report["miscInfos"] = draw(st.lists(_misc_info(fmt), max_size=3))
    report["subUnits"] = draw(st.lists(_sub_unit(fmt), max_size=3))
    if fmt != WSTF:
        if draw(st.booleans()):
            report["assets"] = draw(st.lists(_asset(fmt), min_size=1, max_size=2))
        if draw(st.integers(0, 3)) == 0:
            report["binaryData"] = draw(st.lists(_binary(fmt), min_size=1, max_size=2))
        if draw(st.integers(0, 3)) == 0:
            report["additionalData"] = draw(st.lists(_additional(fmt), min_size=1, max_size=2))
    report["root"] = draw(_root(fmt, report["result"], active))
    return report


@st.composite
def _asset(draw: st.DrawFn, fmt: str) -> dict[str, Any]:
    asset: dict[str, Any] = {"assetSN": draw(_name(fmt))}
    if draw(st.booleans()):
        asset["usageCount"] = draw(_INT32)
        if draw(st.booleans()):
            asset["usageCountFormat"] = "%d"
    return asset


@st.composite
def _root(draw: st.DrawFn, fmt: str, result: str, active: bool) -> dict[str, Any]:
    budget = [12]
    if fmt == WSTF:
        # The root is SoftwareName (its file and name) and SoftwareVersion; without a
        # SoftwareName line it is the default "MainSequence Callback". It has no cells of its
        # own: in Import mode its status is the UUTStatus.
        software = draw(_maybe(_name(fmt)))
        name = software or "MainSequence Callback"
        call = {"path": software, "name": name, "version": draw(_maybe(_name(fmt, 8)))}
        root = {"group": "M", "stepType": "SequenceCall", "name": name, "status": result,
                "seqCall": call, "steps": draw(_steps(fmt, 0, active, budget, call))}
        number_steps(root, 0)
        return root
    root = draw(_sequence(fmt, 0, active, budget, None))
    number_steps(root, draw(st.sampled_from([0, 1])))
    return root


@st.composite
def _repair_report(draw: st.DrawFn, fmt: str) -> dict[str, Any]:
    start, start_utc = draw(_start(fmt))
    pn, sn, rev = draw(_name(fmt)), draw(_name(fmt)), draw(_text(fmt, max_size=6))
    uur: dict[str, Any] = {"user": draw(_name(fmt)), "processCode": draw(st.integers(0, 32767))}
    optional: dict[str, st.SearchStrategy[Any]] = {
        "processName": _name(fmt), "refUUT": _GUIDS,
        "confirmDate": _start(fmt).map(lambda pair: pair[0]),
        "finalizeDate": _start(fmt).map(lambda pair: pair[1]), "execTime": _NUMBERS,
        "parent": _GUIDS, "children": st.lists(_GUIDS, min_size=1, max_size=2),
        "comment": _text(fmt, max_size=40),
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            uur[key] = draw(strategy)
    units: list[dict[str, Any]] = []
    for idx in range(draw(st.integers(1, 3))):
        unit = draw(_sub_unit(fmt))
        unit["idx"] = idx
        if idx:  # unit 0 is the repaired unit; the others hang below one before them
            if draw(st.booleans()):
                unit["parentIdx"] = draw(st.integers(0, idx - 1))
            if draw(st.integers(0, 3)) == 0:
                unit["replacedIdx"] = draw(st.integers(0, idx - 1))
        failures = draw(st.lists(_failure(fmt), max_size=2))
        if failures:
            unit["failures"] = failures
        units.append(unit)
    # A repair report uses each misc description once (Virinco's UUR manual).
    misc = draw(st.lists(_misc_info(fmt), max_size=3, unique_by=lambda m: m["description"]))
    report: dict[str, Any] = {
        "type": "R", "id": draw(_GUIDS), "pn": pn, "sn": sn, "rev": rev, "processCode": 500,
        "result": "P", "machineName": draw(_name(fmt)), "location": draw(_text(fmt)),
        "purpose": draw(_text(fmt)), "start": start, "startUTC": start_utc, "uur": uur,
        "miscInfos": misc, "subUnits": units,
    }
    if draw(st.booleans()):
        report["processName"] = "Repair"
    if draw(st.booleans()):
        report["assets"] = draw(st.lists(_asset(fmt), min_size=1, max_size=2))
    if draw(st.booleans()):
        report["binaryData"] = draw(st.lists(_binary(fmt), min_size=1, max_size=2))
    return report


@st.composite
def _failure(draw: st.DrawFn, fmt: str) -> dict[str, Any]:
    failure: dict[str, Any] = {"category": draw(_name(fmt)), "code": draw(_name(fmt)),
                               "refStepId": draw(_INT32)}
    for key in ("refStepName", "comRef", "funcBlock", "artNumber", "artRev", "artVendor",
                "artDescription", "comment"):
        if draw(st.booleans()):
            failure[key] = draw(_text(fmt, max_size=10))
    if draw(st.integers(0, 3)) == 0:
        failure["attachments"] = draw(st.lists(_binary(fmt), min_size=1, max_size=2))
    return failure


def reports(fmt: str) -> st.SearchStrategy[dict[str, Any]]:
    """Valid WSJF reports that `fmt` can express: test reports, and repair reports except in
    WSTF (a test-only format)."""
    if fmt == WSTF:
        return _test_report(fmt)
    return st.one_of(_test_report(fmt), _test_report(fmt), _repair_report(fmt))  # 2 T : 1 R


# -- what each format gives back ---------------------------------------------------------------

# Fields that are JSON numbers; XML attributes and WSTF cells do not say int or float, so the
# converters read them as doubles.
_NUMBER_FIELDS = {"value", "lowLimit", "highLimit", "totTime", "execTime", "exitCode"}
_UNIT_FIELDS = {"unit", "xUnit", "yUnit"}


def expected(report: dict[str, Any], fmt: str) -> dict[str, Any]:
    """The WSJF that converting `report` written as `fmt` must give.

    WSJF is the model itself: the report comes back unchanged. For WSXF and WSTF, these are
    the differences the formats cannot avoid (the one list of them):

    * null, an empty list and an empty object say the same as an absent field (WSJF exporters
      omit null fields; the converters write empty lists);
    * number fields (value, limits, times, exit code) come back as doubles: 5 → 5.0;
    * compOp comes back in its canonical spelling ("gele", "IgnoreCase" → "GELE",
      "IGNORECASE"), as operators are case-insensitive;
    * an empty unit, chart unit or sequence version is null (formats.md §2: `Units=""` →
      `unit: null`, `Version=''` → null);
    * WSXF only: MiscInfo with empty text and an empty Typedef or TSGuid are "none" (an empty
      element has no text; old exports write `TSGuid=""`).
    """
    if fmt == WSJF:
        return report
    out = copy.deepcopy(report)
    for obj, key, parent in _walk(out):
        value = obj[key]
        if key in _NUMBER_FIELDS and type(value) is int:
            obj[key] = float(value)
        elif key == "compOp" and isinstance(value, str):
            obj[key] = parse_comp_op(value)
        elif value == "" and _empty_is_none(fmt, key, parent):
            obj[key] = None
    kept: dict[str, Any] = _without_empty(out)
    return kept


def _empty_is_none(fmt: str, key: str, parent: str) -> bool:
    if key in _UNIT_FIELDS or (key == "version" and parent == "seqCall"):
        return True
    return fmt == WSXF and (key in ("typedef", "tsGuid") or (key, parent) == ("text",
                                                                               "miscInfos"))


def _walk(node: Any, parent: str = "") -> Iterator[tuple[dict[str, Any], str, str]]:
    """(object, key, the key that holds the object) for every field, depth first."""
    if isinstance(node, dict):
        for key in list(node):
            yield node, key, parent
            yield from _walk(node[key], key)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item, parent)


def _without_empty(node: Any) -> Any:
    if isinstance(node, dict):
        kept = {key: _without_empty(value) for key, value in node.items()}
        return {key: value for key, value in kept.items() if value not in (None, [], {})}
    if isinstance(node, list):
        return [_without_empty(item) for item in node]
    return node


def canonical(report: Any) -> str:
    """Canonical JSON: keys sorted, ints and floats told apart (1 != 1.0)."""
    return json.dumps(report, sort_keys=True, ensure_ascii=False, allow_nan=False)


def difference(got: Any, want: Any, path: str = "") -> str | None:
    """The first place where two JSON values differ, for a readable failure."""
    if isinstance(got, dict) and isinstance(want, dict):
        for key in sorted(set(got) | set(want)):
            if key not in got or key not in want:
                side = "missing from the conversion" if key not in got else "not expected"
                return f"{path}.{key}: {side} ({want.get(key, got.get(key))!r})"
            found = difference(got[key], want[key], f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(got, list) and isinstance(want, list):
        if len(got) != len(want):
            return f"{path}: {len(got)} items, expected {len(want)}"
        for n, (a, b) in enumerate(zip(got, want, strict=True)):
            found = difference(a, b, f"{path}[{n}]")
            if found:
                return found
        return None
    if canonical(got) != canonical(want):
        return f"{path}: got {got!r}, expected {want!r}"
    return None


def assert_same(converted: dict[str, Any], report: dict[str, Any], fmt: str) -> None:
    got = converted if fmt == WSJF else _without_empty(dict(converted))
    want = expected(report, fmt)
    if canonical(got) != canonical(want):
        pytest.fail(f"{fmt.upper()} round trip differs: {difference(got, want)}")


# -- helpers ------------------------------------------------------------------------------------

_file_numbers = itertools.count()


def convert(workdir: Path, fmt: str, data: bytes) -> list[dict[str, Any]]:
    """Write `data` as a fresh file and convert it with the format's converter."""
    path = workdir / f"report{next(_file_numbers)}{SUFFIX[fmt]}"
    path.write_bytes(data)
    try:
        result = CONVERTERS[fmt].convert(path, CONTEXT)
    finally:
        path.unlink()
    return result if isinstance(result, list) else [result]


def finalized(report: dict[str, Any], fmt: str, index: int = 0) -> dict[str, Any]:
    """The report as the service queues it: station defaults filled, then validated."""
    return finalize(report, context=CONTEXT, converter_name=CONVERTERS[fmt].name,
                    content_sha256="0" * 64, index=index)


def assert_valid(report: dict[str, Any], fmt: str) -> None:
    # The strategy must make valid WSJF, or the round trip proves little.
    validate(finalized(copy.deepcopy(report), fmt))


# -- round trips -----------------------------------------------------------------------------------


@_settings(60)
@given(report=reports(WSJF), bom=st.booleans())
def test_wsjf_file_converts_back_to_the_same_report(workdir: Path, report: dict[str, Any],
                                                    bom: bool) -> None:
    assert_valid(report, WSJF)
    [converted] = convert(workdir, WSJF, to_wsjf(report, bom=bom))
    assert_same(converted, report, WSJF)
    assert list(converted) == list(report)  # key order kept too
    validate(finalized(converted, WSJF))


# The layouts real WSXF files come in (formats.md §2): UTF-8 or UTF-16, with or without the
# XML declaration, a UTF-8 BOM, booleans as 1/0 in older exports.
_WSXF_STYLES = st.fixed_dictionaries({
    "encoding": st.sampled_from(["utf-8", "utf-16"]), "declaration": st.booleans(),
    "bom": st.booleans(), "numeric_booleans": st.booleans(),
})


@_settings(60)
@given(batch=st.lists(reports(WSXF), min_size=1, max_size=3), style=_WSXF_STYLES)
def test_wsxf_file_gives_the_same_wsjf(workdir: Path, batch: list[dict[str, Any]],
                                       style: dict[str, Any]) -> None:
    for report in batch:
        assert_valid(report, WSXF)
    converted = convert(workdir, WSXF, to_wsxf(batch, **style))
    assert len(converted) == len(batch)
    for n, (got, report) in enumerate(zip(converted, batch, strict=True)):
        assert_same(got, report, WSXF)
        # The server is the judge: the same report posted as WSJF must be the same report.
        [as_json] = convert(workdir, WSJF, to_wsjf(report))
        assert canonical(expected(dict(as_json), WSXF)) == canonical(_without_empty(dict(got)))
        validate(finalized(got, WSXF, n))


def _wstf_styles(mode: str) -> st.SearchStrategy[WstfStyle]:
    """The layouts formats.md §3 allows: LF or CRLF, both spellings of the end marker,
    UUTStatus in the header or the footer, local and/or UTC start time, a Multiple… line with
    or without a measurement."""
    return st.builds(WstfStyle, mode=st.just(mode), newline=st.sampled_from(["\n", "\r\n"]),
                     end_marker=st.sampled_from(["--UUT-End--", "-- UUT-End--"]),
                     status_in_header=st.booleans(),
                     start_lines=st.sampled_from(["both", "local", "utc"]),
                     first_on_main=st.booleans())


@_settings(60)
@given(batch=st.lists(reports(WSTF), min_size=1, max_size=3), style=_wstf_styles("Import"))
def test_wstf_import_mode_gives_the_same_wsjf(workdir: Path, batch: list[dict[str, Any]],
                                              style: WstfStyle) -> None:
    for report in batch:
        assert_valid(report, WSTF)
    converted = convert(workdir, WSTF, to_wstf(batch, style))
    assert len(converted) == len(batch)
    for n, (got, report) in enumerate(zip(converted, batch, strict=True)):
        assert_same(got, report, WSTF)
        validate(finalized(got, WSTF, n))


# -- WSTF Active mode: statuses from the limits ---------------------------------------------------

_SEVERITY = {"F": 1, "E": 2, "T": 3}


def judged(report: dict[str, Any]) -> dict[str, Any]:
    """`report` with every status a WSTF reader in Active mode must compute (formats.md §3).

    Each measurement is judged by pywats_client.report.operators (pass/fail by its TRUE/FALSE
    value); a single-measurement step takes its measurement's status, a multi-measurement step fails
    when one measurement fails; a sequence takes the worst (F < E < T) of its children, except
    those whose CausedSequenceFailure is False; the result is the root's F/E/T, else P. Action
    steps keep the status written for them.
    """
    out = copy.deepcopy(report)

    def settle(step: dict[str, Any]) -> str:
        kind = next((key for key in _MEASURE if step.get(key)), None)
        if kind is not None:
            for meas in step[kind]:
                meas["status"] = _judged(kind, meas)
            statuses = [meas["status"] for meas in step[kind]]
            step["status"] = "F" if "F" in statuses else "P"
        elif "seqCall" in step:
            worst = "P"
            for child in step["steps"]:
                status = settle(child)
                if child.get("causedSeqFailure") is not False and (
                        _SEVERITY.get(status, 0) > _SEVERITY.get(worst, 0)):
                    worst = status
            step["status"] = worst
        return str(step["status"])

    root_status = settle(out["root"])
    out["result"] = root_status if root_status in _SEVERITY else "P"
    return out


@_settings(80)
@given(batch=st.lists(_test_report(WSTF, active=True), min_size=1, max_size=2),
       style=_wstf_styles("Active"))
def test_wstf_active_mode_computes_statuses_with_the_limits(
        workdir: Path, batch: list[dict[str, Any]], style: WstfStyle) -> None:
    converted = convert(workdir, WSTF, to_wstf(batch, style))
    assert len(converted) == len(batch)
    for n, (got, report) in enumerate(zip(converted, batch, strict=True)):
        want = judged(report)
        assert_valid(want, WSTF)
        assert_same(got, want, WSTF)
        validate(finalized(got, WSTF, n))


# -- garbage never raises anything but ConversionError -------------------------------------------


def only_conversion_errors(workdir: Path, fmt: str, data: bytes) -> None:
    """Converting `data` gives reports the service can finalise, or a ConversionError."""
    try:
        converted = convert(workdir, fmt, data)
    except ConversionError:
        return
    for n, report in enumerate(converted):
        # ReportValidationError (a ConversionError) is a refusal with a message: fine.
        with contextlib.suppress(ConversionError):
            to_json_bytes(finalized(report, fmt, n))


@pytest.mark.parametrize("fmt", [WSJF, WSXF, WSTF])
def test_random_bytes_raise_only_conversion_errors(workdir: Path, fmt: str) -> None:
    @_settings(100)
    @given(data=st.binary(max_size=300))
    def check(data: bytes) -> None:
        only_conversion_errors(workdir, fmt, data)

    check()


_TAGS: dict[str, re.Pattern[bytes]] = {
    WSJF: re.compile(rb'"(?:[^"\\]|\\.)*"\s*:?|[{}\[\]]'),  # a key, a string, a bracket
    WSXF: re.compile(rb"<[^<>]*>"),  # a start or end tag
    WSTF: re.compile(rb"[^\t\n]+"),  # a cell: a marker, key word, name or value
}
_WRITERS: dict[str, Callable[[list[dict[str, Any]]], bytes]] = {
    WSJF: lambda batch: to_wsjf(batch[0]),
    WSXF: to_wsxf,
    WSTF: to_wstf,
}


@st.composite
def damaged(draw: st.DrawFn, fmt: str) -> bytes:
    """A valid file of `fmt`, then truncated, a line dropped, a byte flipped, a tag doubled."""
    data = bytearray(_WRITERS[fmt]([draw(reports(fmt))]))
    for _ in range(draw(st.integers(1, 3))):
        how = draw(st.sampled_from(["truncate", "drop line", "flip byte", "double tag"]))
        if how == "truncate":
            del data[draw(st.integers(0, len(data))):]
        elif how == "drop line":
            lines = bytes(data).split(b"\n")
            del lines[draw(st.integers(0, len(lines) - 1))]
            data = bytearray(b"\n".join(lines))
        elif how == "flip byte" and data:
            at = draw(st.integers(0, len(data) - 1))
            data[at] ^= draw(st.integers(1, 255))
        elif how == "double tag":
            tags = list(_TAGS[fmt].finditer(bytes(data)))
            if tags:
                tag = draw(st.sampled_from(tags))
                data[tag.end():tag.end()] = tag.group()
    return bytes(data)


@pytest.mark.parametrize("fmt", [WSJF, WSXF, WSTF])
def test_damaged_files_raise_only_conversion_errors(workdir: Path, fmt: str) -> None:
    @_settings(60)
    @given(data=damaged(fmt))
    def check(data: bytes) -> None:
        only_conversion_errors(workdir, fmt, data)

    check()


# -- the pieces of the test itself --------------------------------------------------------------


def test_expected_lists_each_normalisation() -> None:
    report: dict[str, Any] = {"type": "T", "uut": {}, "subUnits": [], "root": {
        "tsGuid": "", "seqCall": {"version": "", "path": None, "name": "Main"},
        "numericMeas": [{"compOp": "gele", "unit": "", "value": 5, "lowLimit": None,
                         "highLimit": 7}],
        "chart": {"chartType": "Line", "xUnit": "", "yUnit": "V", "series": []},
    }, "miscInfos": [{"description": "d", "text": "", "typedef": ""}]}
    assert expected(report, WSJF) is report
    common: dict[str, Any] = {
        "seqCall": {"name": "Main"},
        "numericMeas": [{"compOp": "GELE", "value": 5.0, "highLimit": 7.0}],
        "chart": {"chartType": "Line", "yUnit": "V"},
    }
    assert canonical(expected(report, WSXF)) == canonical(
        {"type": "T", "root": common, "miscInfos": [{"description": "d"}]})
    assert canonical(expected(report, WSTF)) == canonical(
        {"type": "T", "root": {"tsGuid": "", **common},
         "miscInfos": [{"description": "d", "text": "", "typedef": ""}]})
    assert report["root"]["numericMeas"][0]["value"] == 5  # the report itself is untouched


def test_difference_names_the_first_differing_field() -> None:
    want = {"root": {"steps": [{"status": "P", "value": 1.0}]}}
    got = {"root": {"steps": [{"status": "P", "value": 1}]}}
    assert difference(got, want) == ".root.steps[0].value: got 1, expected 1.0"
    assert difference(want, want) is None


def test_writers_follow_the_format_notes() -> None:
    """A small report in each format, as formats.md shows them (the writers are checked too)."""
    report = {
        "type": "T", "id": str(uuid.UUID(int=1)), "pn": "PN-1", "sn": "SN-1", "rev": "A",
        "processCode": 10, "result": "F", "machineName": "ST", "location": "", "purpose": "",
        "start": "2026-03-02T08:00:00+01:00", "startUTC": "2026-03-02T07:00:00Z",
        "root": {"id": 0, "group": "M", "stepType": "SequenceCall", "name": "Main.seq",
                 "status": "F", "seqCall": {"path": "Main.seq", "name": "Main.seq",
                                            "version": None},
                 "steps": [{"id": 1, "group": "M", "stepType": "ET_NLT", "name": "V <5>",
                            "status": "F", "numericMeas": [
                                {"compOp": "LE", "name": None, "status": "F", "unit": "V",
                                 "value": 5.5, "lowLimit": 5}]}]},
    }
    text = to_wstf([report]).decode("utf-8")
    assert text.startswith("--Header-Start--\nSerialNumber\tSN-1\nPartNumber\tPN-1\n")
    assert "\nStartDateTime\t2026-03-02T08:00:00\nUTCStartDateTime\t2026-03-02T07:00:00\n" in text
    assert ("\nNumericLimitTest\tV <5>\t\t5.5\t5\t\tLE\tV\tFailed\t\t\t\t\t\n"
            "--Step-Data-End--\nUUTStatus\tFailed\n--UUT-End--\n") in text
    xml = to_wsxf([report]).decode("utf-8")
    assert '<Reports xmlns="http://wats.virinco.com/schemas/WATS/Report/wsxf">' in xml
    assert ('<Step Id="1" Group="Main" Name="V &lt;5&gt;" StepType="ET_NLT" Status="Failed">'
            in xml)
    assert ('<NumericLimit NumericValue="5.5" Units="V" CompOperator="LE" LowLimit="5" '
            'Status="Failed" MeasIndex="0" MeasOrderNumber="0" />') in xml
    assert json.loads(to_wsjf(report)) == report

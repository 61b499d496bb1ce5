"""The WSJF report model: identity (deterministic ids), the format's letters and limits,
`ReportDict`, date parsing and formatting, the JSON bytes written to the queue, and helpers
for converters that build reports (status and group words, step numbering, status roll-up).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any, overload

from pywats_client.errors import ReportValidationError

# Fixed forever: changing it would give every re-converted file a new id, i.e. a duplicate
# report on the server after an upgrade.
REPORT_ID_NAMESPACE = uuid.UUID("d89a8615-07ab-4dc9-9ab2-c9fc74cd7522")

REPORT_TYPES = ("T", "R")
REPORT_RESULTS = "PFETD"  # D is not in Virinco's docs but the server exports it
STEP_STATUSES = "PDSFET"
MEASUREMENT_STATUSES = "PFS"
STEP_GROUPS = "SMC"
MEASUREMENT_ARRAYS = ("numericMeas", "stringMeas", "booleanMeas")
# The payload kinds of a step; a step carries at most one (chart/attachment come on top).
PAYLOAD_KINDS = ("seqCall", *MEASUREMENT_ARRAYS, "messagePopup", "callExe", "additionalResults")
CHART_TYPES = ("Line", "LineLogX", "LineLogY", "LineLogXY")
CHART_MAX_SERIES = 10
CHART_MAX_POINTS = 10_000

REQUIRED_FIELDS = (
    "type", "id", "pn", "sn", "rev", "processCode", "result",
    "machineName", "location", "purpose", "start",
)
# Fields that must not be blank; location and purpose may be empty strings when the station
# has none configured.
NON_EMPTY_FIELDS = ("type", "id", "pn", "sn", "result", "machineName", "start")

# Root-level string limits (formats.md §1.1); the server refuses longer values.
ROOT_STRING_LIMITS = {
    "pn": 100, "sn": 100, "rev": 100, "machineName": 100, "location": 100, "purpose": 100,
    "processName": 100,
}
MISC_INFO_LIMITS = {"description": 100, "text": 100, "typedef": 30}
SUB_UNIT_LIMITS = {"partType": 50, "pn": 100, "rev": 100, "sn": 100}
STEP_NAME_LIMIT = 100
ROOT_LISTS = ("miscInfos", "subUnits", "assets", "binaryData", "additionalData")
INT16 = (-32768, 32767)
INT32 = (-(2**31), 2**31 - 1)

# Matched against the stripped text: whitespace at both ends of a pattern with an optional
# part between would make a failing match quadratic in the length of a run of blanks.
_DATETIME_RE = re.compile(
    r"""(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})
        (?::(\d{2})(?:[.,](\d*))?)?              # seconds, fraction of any length (even none)
        \s*(?:([Zz])|([+-])(\d{2})(?::?(\d{2}))?)?""",
    re.VERBOSE,
)


class ReportDict(dict[str, Any]):
    """A WSJF report (a plain dict to everything else) that remembers where its parts came
    from, so a validation error can name the source line or element, not only the field.

    `locations` maps a field path as validation names it ("root", "root.steps[2]",
    "root.steps[2].numericMeas[0]", "subUnits[1]", "miscInfos[0]") to a place in the source
    ("line 17", "<Step Id=\"5\"> at line 40"). The empty path "" is the place of the report
    itself (e.g. "<Report> at line 3"), used when nothing nearer is known. Converters fill it
    as they parse; it is never serialised.

    A converter for which finding places costs real time may instead set `find_locations`:
    a callable returning such a mapping, called at most once, only when a place is asked for
    (i.e. when the report is invalid). It must not raise.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.locations: dict[str, str] = {}
        self.find_locations: Callable[[], Mapping[str, str]] | None = None
        # The size of the source it came from, when a converter knows it: a large report is
        # serialised in pieces (`to_json_parts`).
        self.source_bytes = 0
        # Set by a converter that passes files on as they are (WSJF): validation reads an
        # operator it does not know as LOG instead of refusing it, as the WATS client does.
        self.unknown_operators_as_log = False

    def locate(self, path: str) -> str:
        """The source place of `path`, of its nearest recorded parent, or of the report
        ("" if none is known)."""
        finder, self.find_locations = self.find_locations, None
        if finder is not None:
            try:
                found = finder()
            except Exception:  # a place is a courtesy; never let it hide the real problem
                found = {}
            for key, place in found.items():
                self.locations.setdefault(key, place)
        while path:
            if path in self.locations:
                return self.locations[path]
            cut = max(path.rfind("."), path.rfind("["))
            path = path[:cut] if cut > 0 else ""
        return self.locations.get("", "")

    def copy(self) -> ReportDict:
        """A shallow copy that keeps the recorded places."""
        twin = ReportDict(self)
        twin.locations = dict(self.locations)
        twin.find_locations = self.find_locations
        twin.source_bytes = self.source_bytes
        twin.unknown_operators_as_log = self.unknown_operators_as_log
        return twin


def report_id_for(converter_name: str, content_sha256: str, index: int) -> str:
    """The report id for report number `index` of a file with this content and converter.

    A deterministic GUID (uuid5): re-converting the same file after a crash gives the same id,
    and WATS treats a re-posted id as the same report, so no duplicate is created.
    """
    key = f"{converter_name}\x00{content_sha256.strip().lower()}\x00{index}"
    return str(uuid.uuid5(REPORT_ID_NAMESPACE, key))


def to_json_bytes(report: dict[str, Any]) -> bytes:
    """The report as compact UTF-8 JSON (non-ASCII kept as is, key order kept).

    The same dict always gives the same bytes. Raises `ReportValidationError` for values JSON
    cannot carry (NaN, infinities, non-JSON types).
    """
    with _json_errors(report):
        return _encode(report).encode("utf-8")


def to_json_parts(report: dict[str, Any]) -> Sequence[bytes]:
    """`to_json_bytes(report)` in pieces that join to the same bytes: one piece for a report
    from a small source; for one from a large source (a `ReportDict` whose `source_bytes` is
    at least `LARGE_SOURCE`), `JsonPieces`: pieces of about `PART_BYTES`, made again each time
    they are read, so that a large report's bytes are never all in memory beside the report.
    Raises `ReportValidationError` as `to_json_bytes` does, at once."""
    if getattr(report, "source_bytes", 0) < LARGE_SOURCE:
        return [to_json_bytes(report)]
    return JsonPieces(report)


class JsonPieces(Sequence[bytes]):
    """The JSON of a large report as pieces of about `PART_BYTES`, encoded from the report
    each time they are read (the report must not change meanwhile), with the `size` and
    `sha256` of the whole, known from a first reading that also checks what JSON refuses."""

    def __init__(self, report: dict[str, Any]) -> None:
        self.report = report
        digest = hashlib.sha256()
        size = count = 0
        for part in self:
            digest.update(part)
            size += len(part)
            count += 1
        self.size, self.sha256, self._count = size, digest.hexdigest(), count

    def __iter__(self) -> Iterator[bytes]:
        pending: list[str] = []
        size = 0
        with _json_errors(self.report):
            for piece in _pieces(self.report, 0):
                pending.append(piece)
                size += len(piece)
                if size >= PART_BYTES:
                    yield "".join(pending).encode("utf-8")
                    pending, size = [], 0
        if pending:
            yield "".join(pending).encode("utf-8")

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, index: int) -> bytes: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[bytes]: ...

    def __getitem__(self, index: int | slice) -> bytes | Sequence[bytes]:
        return list(self)[index]  # pieces are read in order; this is for completeness only


LARGE_SOURCE = 2 * 2**20
PART_BYTES = 256 * 1024
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
_SPLIT_DEPTH = 64  # deeper step trees are serialised whole (still in C, still correct)
_RUN = 16  # list items encoded at once


def _pieces(value: Any, depth: int) -> Iterator[str]:
    """The JSON text of `value` in pieces: a step tree is split at its steps (each step's
    own fields in one piece), everything else is encoded whole by the C encoder."""
    steps = value.get("steps") if type(value) is dict or isinstance(value, ReportDict) else None
    if depth == 0 or (isinstance(steps, list) and steps and depth < _SPLIT_DEPTH):
        comma = ""
        yield "{"
        for key, item in value.items():
            if type(key) is not str:  # as json.dumps would write it, through the encoder
                yield comma + _encode({key: item})[1:-1]
            elif (key == "steps" or key == "root") and type(item) in (list, dict) and item:
                yield f"{comma}{_encode(key)}:"
                yield from _pieces(item, depth + 1)
            else:
                yield f"{comma}{_encode(key)}:{_encode(item)}"
            comma = ","
        yield "}"
    elif type(value) is list and depth < _SPLIT_DEPTH:
        comma = ""
        yield "["
        # Items that are not split (steps without steps of their own) are encoded a run at a
        # time: one call of the C encoder for many is three times faster than one each.
        run: list[Any] = []
        for item in value:
            if type(item) is dict and _split(item, depth + 1):
                if run:
                    yield comma + _encode(run)[1:-1]
                    comma, run = ",", []
                yield comma
                yield from _pieces(item, depth + 1)
                comma = ","
            else:
                run.append(item)
                if len(run) >= _RUN:
                    yield comma + _encode(run)[1:-1]
                    comma, run = ",", []
        if run:
            yield comma + _encode(run)[1:-1]
        yield "]"
    else:
        yield _encode(value)


def _split(step: dict[str, Any], depth: int) -> bool:
    """Whether `_pieces` splits this step: it has steps, and the tree is not too deep."""
    steps = step.get("steps")
    return isinstance(steps, list) and bool(steps) and depth < _SPLIT_DEPTH


@contextlib.contextmanager
def _json_errors(report: dict[str, Any]) -> Iterator[None]:
    try:
        yield
    except ValueError as exc:
        raise ReportValidationError(
            f"report {report.get('id', '?')} contains NaN or Infinity, which JSON cannot carry; "
            "the converter must leave such values out"
        ) from exc
    except TypeError as exc:
        raise ReportValidationError(f"report {report.get('id', '?')}: {exc}") from exc
    except RecursionError as exc:
        raise ReportValidationError(
            f"report {report.get('id', '?')} is nested too deeply to be written"
        ) from exc


def parse_datetime(text: str) -> datetime:
    """Parse an ISO-8601 date-time leniently; naive times come back with `tzinfo` None.

    Accepts "Z", "+02:00"/"+0200"/"+02" offsets, a space instead of "T", fractional seconds
    of any length (beyond microseconds they are cut) and the odd "2020-01-01T08:00:00.Z"
    found in Virinco's examples. Raises ValueError saying what was expected.
    """
    match = _DATETIME_RE.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ValueError(
            f"{_show(text)} is not an ISO-8601 date-time like 2026-05-01T10:00:00+02:00")
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = match.groups()
    micro = int((fraction or "").ljust(6, "0")[:6])
    zone: tzinfo | None = None
    if zulu:
        zone = timezone.utc
    elif sign:
        offset = timedelta(hours=int(off_h), minutes=int(off_m or 0))
        if offset >= timedelta(hours=24):
            raise ValueError(f"{_show(text)} has an impossible UTC offset")
        zone = timezone(-offset if sign == "-" else offset)
    try:
        return datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second or 0), micro,
            tzinfo=zone,
        )
    except ValueError as exc:
        raise ValueError(f"{_show(text)} is not a valid date-time: {exc}") from None


def format_datetime(moment: datetime) -> str:
    """ISO-8601 as WATS writes it: milliseconds when there are any, and the offset if known."""
    return moment.isoformat(timespec="milliseconds" if moment.microsecond else "seconds")


def format_utc(moment: datetime) -> str:
    """An aware date-time as UTC ISO-8601 with "Z" (the `startUTC` form)."""
    text = format_datetime(moment.astimezone(timezone.utc))
    return text.removesuffix("+00:00") + "Z"


# -- helpers for converters that build reports ----------------------------------------------

_STATUS_WORDS = {
    "p": "P", "pass": "P", "passed": "P", "ok": "P",
    "d": "D", "done": "D",
    "s": "S", "skip": "S", "skipped": "S",
    "f": "F", "fail": "F", "failed": "F",
    "e": "E", "error": "E",
    "t": "T", "terminate": "T", "terminated": "T", "aborted": "T",
}
_GROUP_WORDS = {"s": "S", "setup": "S", "m": "M", "main": "M", "c": "C", "cleanup": "C"}
# How bad a status is, for roll-up: a terminated child outranks an error, an error a failure.
_SEVERITY = {"F": 1, "E": 2, "T": 3}


def status_letter(word: str, allowed: str = STEP_STATUSES) -> str:
    """The WSJF letter for a status word ("Passed", "failed", "Done", "P", ...).

    `allowed` restricts the answer: STEP_STATUSES (default), MEASUREMENT_STATUSES or
    REPORT_RESULTS. Raises ValueError naming the word and what is accepted.
    """
    letter = _STATUS_WORDS.get(word.strip().lower()) if isinstance(word, str) else None
    if letter is None or letter not in allowed:
        names = {"P": "Passed", "D": "Done", "S": "Skipped", "F": "Failed", "E": "Error",
                 "T": "Terminated"}
        accepted = ", ".join(names[letter] for letter in allowed)
        raise ValueError(f"status {word!r} is not one of {accepted}")
    return letter


def group_letter(word: str) -> str:
    """The WSJF step group letter for "Setup", "Main", "Cleanup" (any case) or S/M/C."""
    letter = _GROUP_WORDS.get(word.strip().lower()) if isinstance(word, str) else None
    if letter is None:
        raise ValueError(f"step group {word!r} is not one of Setup, Main, Cleanup")
    return letter


def result_for_status(status: str) -> str:
    """The report `result` for a root step status: Done and Skipped count as Passed."""
    return status if status in ("F", "E", "T") else "P"


def iter_steps(root: dict[str, Any], path: str = "root") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every step of the tree under `root` (itself first), in tree order, with its field path
    ("root", "root.steps[0]", ...). Iterative: any depth. Non-object entries are skipped."""
    stack: list[tuple[str, Any]] = [(path, root)]
    while stack:
        where, step = stack.pop()
        if not isinstance(step, dict):
            continue
        yield where, step
        children = step.get("steps")
        if isinstance(children, list):
            stack.extend((f"{where}.steps[{n}]", children[n])
                         for n in range(len(children) - 1, -1, -1))


def number_steps(root: dict[str, Any], first: int = 0) -> int:
    """Give every step under `root` an `id` in tree order, starting at `first` (the root).

    Ids a converter set before are replaced: WSJF needs them unique within the report, and
    numbering in tree order is what WATS itself exports. Returns the next free id.
    """
    next_id = first
    for _, step in iter_steps(root):
        step["id"] = next_id
        next_id += 1
    return next_id


def roll_up_statuses(root: dict[str, Any]) -> str:
    """Settle every step's status from its children and measurements; return the root's.

    For converters that compute statuses ("Active" mode); files imported as they are keep
    theirs. A failed measurement or child step fails its step, an error or termination
    outranks a failure (T > E > F), and Passed/Done steps take the worst status below them.
    A step without a status gets the worst status below it, else Passed when it has children
    or measurements, else Done. Skipped steps keep their status.
    """
    order = [step for _, step in iter_steps(root)]
    for step in reversed(order):  # children before their parent
        worst: str = ""
        children = step.get("steps")
        below: list[Any] = list(children) if isinstance(children, list) else []
        for key in MEASUREMENT_ARRAYS:
            items = step.get(key)
            if isinstance(items, list):
                below.extend(items)
        for item in below:
            found = item.get("status") if isinstance(item, dict) else None
            if isinstance(found, str) and _SEVERITY.get(found, 0) > _SEVERITY.get(worst, 0):
                worst = found
        own = step.get("status")
        if own is None or own == "":
            step["status"] = worst or ("P" if below or "seqCall" in step else "D")
        elif worst and own in ("P", "D", "F", "E") and _SEVERITY[worst] > _SEVERITY.get(own, 0):
            step["status"] = worst
    result: str = root.get("status", "")
    return result


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            type(None): "null", int: "a number", float: "a number"}.get(type(value), "a value")


def _show(value: Any) -> str:
    """A value as an operator would recognise it in the file: short, JSON-like for non-str."""
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:60] + "...")
    if isinstance(value, (dict, list)):
        return _type_name(value)
    return json.dumps(value) if isinstance(value, (bool, int, float)) or value is None else repr(
        value)


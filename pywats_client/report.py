"""The WSJF rules every converter's output goes through before it is queued.

Owns report identity (deterministic ids), filling station defaults, the basic validation of
formats.md §1.1/§1.2, lenient date parsing and the JSON bytes written to the queue. Depends only
on `errors` and the stdlib (the converter context is imported for type checking only, so that
converters may import this module without a cycle).
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone, tzinfo
from typing import TYPE_CHECKING, Any

from pywats_client.errors import ReportValidationError

if TYPE_CHECKING:
    from pywats_client.converters.base import ConverterContext

# Fixed forever: changing it would give every re-converted file a new id, i.e. a duplicate
# report on the server after an upgrade.
REPORT_ID_NAMESPACE = uuid.UUID("d89a8615-07ab-4dc9-9ab2-c9fc74cd7522")

REPORT_TYPES = ("T", "R")
REPORT_RESULTS = "PFETD"  # D is not in Virinco's docs but the server exports it
STEP_STATUSES = "PDSFET"
MEASUREMENT_STATUSES = "PFS"
MEASUREMENT_ARRAYS = ("numericMeas", "stringMeas", "booleanMeas")

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

_MAX_PROBLEMS = 20

_GUID_RE = re.compile(r"[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}", re.IGNORECASE)
_DATETIME_RE = re.compile(
    r"""\s*(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})
        (?::(\d{2})(?:[.,](\d*))?)?              # seconds, fraction of any length (even none)
        \s*(?:([Zz])|([+-])(\d{2})(?::?(\d{2}))?)?\s*""",
    re.VERBOSE,
)


class ReportDict(dict[str, Any]):
    """A WSJF report (a plain dict to everything else) that remembers where its parts came
    from, so a validation error can name the source line or element, not only the field.

    `locations` maps a field path as validation names it ("root", "root.steps[2]",
    "root.steps[2].numericMeas[0]", "subUnits[1]") to a place in the source ("line 17",
    "<Step Id=\"5\"> at line 40"). Converters fill it as they parse; it is never serialised.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.locations: dict[str, str] = {}

    def locate(self, path: str) -> str:
        """The source place of `path` or of its nearest recorded parent ("" if none)."""
        while path:
            if path in self.locations:
                return self.locations[path]
            cut = max(path.rfind("."), path.rfind("["))
            path = path[:cut] if cut > 0 else ""
        return ""


def report_id_for(converter_name: str, content_sha256: str, index: int) -> str:
    """The report id for report number `index` of a file with this content and converter.

    A deterministic GUID (uuid5): re-converting the same file after a crash gives the same id,
    and WATS treats a re-posted id as the same report, so no duplicate is created.
    """
    key = f"{converter_name}\x00{content_sha256.strip().lower()}\x00{index}"
    return str(uuid.uuid5(REPORT_ID_NAMESPACE, key))


def finalize(
    report: dict[str, Any],
    *,
    context: ConverterContext,
    converter_name: str,
    content_sha256: str,
    index: int,
    source: str = "",
) -> dict[str, Any]:
    """Return a copy of `report` with the station defaults filled in, validated.

    Fills `id` (see `report_id_for`), `machineName`, `location`, `purpose` from the context,
    `start` from the source file's mtime and `startUTC` from `start`, each only when the file
    did not say; what the file says is never overwritten and key order is kept (new keys go
    last). The copy is shallow: nested objects are shared with `report`.
    Raises `ReportValidationError` (naming `source`) when the result is not a valid report.
    """
    if not isinstance(report, dict):
        where = f"{source}: " if source else ""
        raise ReportValidationError(
            f"{where}converter {converter_name} returned {type(report).__name__}, expected a "
            "report (dict); fix the converter"
        )
    out = dict(report)
    if _blank(out.get("id")):
        out["id"] = report_id_for(converter_name, content_sha256, index)
    for key, value in (
        ("machineName", context.station_name),
        ("location", context.location),
        ("purpose", context.purpose),
    ):
        if _blank(out.get(key)):
            out[key] = value if value else (out.get(key) or "")
    if _blank(out.get("start")) and context.file_mtime is not None:
        # Equipment that writes no start time: the file's own time is the best truth we have.
        # Never "now": a station without a real-time clock would date reports in the future.
        local = datetime.fromtimestamp(context.file_mtime, context.timezone or timezone.utc)
        if context.timezone is None:
            local = local.astimezone()  # system local zone, with its offset
        out["start"] = format_datetime(local)
    if _blank(out.get("startUTC")) and isinstance(out.get("start"), str):
        try:
            start = parse_datetime(out["start"])
        except ValueError:
            pass  # validate() below names the bad start
        else:
            out["startUTC"] = format_utc(_aware(start, context.timezone))
    validate(out, source=source)
    return out


def validate(report: dict[str, Any], *, source: str = "") -> None:
    """Raise `ReportValidationError` when `report` breaks the basic WSJF rules.

    Checks the root fields (presence, types, lengths, GUID id, dates, result letter), that a
    test report has a root sequence and a repair report a `uur` header, and the step tree shape
    (steps only under a sequence call, status letters, integer ids, measurement lists). The
    message names every broken field, the report and `source` (the input file).
    """
    where = f"{source}: " if source else ""
    if not isinstance(report, dict):
        raise ReportValidationError(
            f"{where}a report must be a JSON object, got {type(report).__name__}"
        )
    problems = list(_root_problems(report))
    if report.get("type") == "T" and isinstance(report.get("root"), dict):
        problems.extend(_step_problems(report["root"]))
    if not problems:
        return
    shown = problems[:_MAX_PROBLEMS]
    if len(problems) > _MAX_PROBLEMS:
        shown.append(f"... and {len(problems) - _MAX_PROBLEMS} more")
    sn = report.get("sn")
    who = f"report sn {sn!r}" if isinstance(sn, str) and sn else "report"
    raise ReportValidationError(f"{where}{who} is not valid WSJF: " + "; ".join(shown))


def to_json_bytes(report: dict[str, Any]) -> bytes:
    """The report as compact UTF-8 JSON (non-ASCII kept as is, key order kept).

    The same dict always gives the same bytes. Raises `ReportValidationError` for values JSON
    cannot carry (NaN, infinities, non-JSON types).
    """
    try:
        text = json.dumps(report, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
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
    return text.encode("utf-8")


def parse_datetime(text: str) -> datetime:
    """Parse an ISO-8601 date-time leniently; naive times come back with `tzinfo` None.

    Accepts "Z", "+02:00"/"+0200"/"+02" offsets, a space instead of "T", fractional seconds
    of any length (beyond microseconds they are cut) and the odd "2020-01-01T08:00:00.Z"
    found in Virinco's examples. Raises ValueError saying what was expected.
    """
    match = _DATETIME_RE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"{text!r} is not an ISO-8601 date-time like 2026-05-01T10:00:00+02:00")
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = match.groups()
    micro = int((fraction or "").ljust(6, "0")[:6])
    zone: tzinfo | None = None
    if zulu:
        zone = timezone.utc
    elif sign:
        offset = timedelta(hours=int(off_h), minutes=int(off_m or 0))
        if offset >= timedelta(hours=24):
            raise ValueError(f"{text!r} has an impossible UTC offset")
        zone = timezone(-offset if sign == "-" else offset)
    try:
        return datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second or 0), micro,
            tzinfo=zone,
        )
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a valid date-time: {exc}") from None


def format_datetime(moment: datetime) -> str:
    """ISO-8601 as WATS writes it: milliseconds when there are any, and the offset if known."""
    return moment.isoformat(timespec="milliseconds" if moment.microsecond else "seconds")


def format_utc(moment: datetime) -> str:
    """An aware date-time as UTC ISO-8601 with "Z" (the `startUTC` form)."""
    text = format_datetime(moment.astimezone(timezone.utc))
    return text.removesuffix("+00:00") + "Z"


def _aware(moment: datetime, zone: tzinfo | None) -> datetime:
    """`moment` with a zone: naive times are taken as local to `zone` (None: system local)."""
    if moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=zone) if zone is not None else moment.astimezone()


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            type(None): "null", int: "a number", float: "a number"}.get(type(value), "a value")


def _root_problems(report: dict[str, Any]) -> Iterator[str]:
    for key in REQUIRED_FIELDS:
        if report.get(key) is None:
            yield f"'{key}' is missing{_REQUIRED_HINTS.get(key, '')}"
    kind = report.get("type")
    if kind is not None and kind not in REPORT_TYPES:
        yield f"'type' is {kind!r}, expected 'T' (test) or 'R' (repair)"
    for key in REQUIRED_FIELDS:
        value = report.get(key)
        if value is None or key in ("type", "processCode"):
            continue
        if not isinstance(value, str):
            yield f"'{key}' must be a string, not {_type_name(value)}"
        elif key in NON_EMPTY_FIELDS and not value.strip():
            yield f"'{key}' is empty{_REQUIRED_HINTS.get(key, '')}"
    for key, limit in ROOT_STRING_LIMITS.items():
        value = report.get(key)
        if key == "processName" and value is not None and not isinstance(value, str):
            yield f"'processName' must be a string, not {_type_name(value)}"
        elif isinstance(value, str) and len(value) > limit:
            yield f"'{key}' is {len(value)} characters long, the limit is {limit}"
    code = report.get("processCode")
    if code is not None:
        if not _is_int(code):
            yield f"'processCode' must be a whole number, not {code!r}"
        elif not INT16[0] <= code <= INT16[1]:
            yield f"'processCode' {code} is out of range ({INT16[0]}..{INT16[1]})"
    result = report.get("result")
    if isinstance(result, str) and result and (len(result) != 1 or result not in REPORT_RESULTS):
        yield f"'result' is {result!r}, expected one of P, F, E, T, D"
    report_id = report.get("id")
    if isinstance(report_id, str) and report_id.strip() and not _GUID_RE.fullmatch(report_id):
        yield f"'id' {report_id!r} is not a GUID like 8f14e45f-ceea-467f-a0b6-1e9b3f2a1c2d"
    for key in ("start", "startUTC"):
        value = report.get(key)
        if isinstance(value, str) and value.strip():
            try:
                parse_datetime(value)
            except ValueError as exc:
                yield f"'{key}': {exc}"
        elif key == "startUTC" and value is not None and not isinstance(value, str):
            yield f"'startUTC' must be a string, not {_type_name(value)}"
    if kind == "T":
        root = report.get("root")
        if not isinstance(root, dict):
            yield "a test report (type 'T') needs a 'root' step with a 'seqCall'"
        elif not isinstance(root.get("seqCall"), dict):
            yield "'root' must be a sequence call step (it has no 'seqCall' object)"
        if report.get("uut") is not None and not isinstance(report.get("uut"), dict):
            yield f"'uut' must be an object, not {_type_name(report['uut'])}"
    elif kind == "R" and not isinstance(report.get("uur"), dict):
        yield "a repair report (type 'R') needs a 'uur' object"
    for key in ROOT_LISTS:
        value = report.get(key)
        if value is not None and not isinstance(value, list):
            yield f"'{key}' must be a list, not {_type_name(value)}"
    yield from _limited_items(report.get("miscInfos"), "miscInfos", MISC_INFO_LIMITS)
    yield from _limited_items(report.get("subUnits"), "subUnits", SUB_UNIT_LIMITS)


def _limited_items(items: Any, where: str, limits: dict[str, int]) -> Iterator[str]:
    if not isinstance(items, list):
        return
    for n, item in enumerate(items):
        if not isinstance(item, dict):
            yield f"'{where}[{n}]' must be an object, not {_type_name(item)}"
            continue
        for key, limit in limits.items():
            value = item.get(key)
            if value is not None and not isinstance(value, str):
                yield f"'{where}[{n}].{key}' must be a string, not {_type_name(value)}"
            elif isinstance(value, str) and len(value) > limit:
                yield (
                    f"'{where}[{n}].{key}' is {len(value)} characters long, the limit is {limit}"
                )
    if where == "miscInfos":
        for n, item in enumerate(items):
            if isinstance(item, dict) and item.get("description") is None:
                yield f"'miscInfos[{n}].description' is missing"


def _step_problems(root: dict[str, Any]) -> Iterator[str]:
    # Iterative walk: a converted file may nest deeper than Python's recursion limit.
    stack: list[tuple[Any, str]] = [(root, "root")]
    while stack:
        step, where = stack.pop()
        if not isinstance(step, dict):
            yield f"'{where}' must be a step object, not {_type_name(step)}"
            continue
        name = step.get("name")
        label = f"'{where}'"
        if isinstance(name, str) and name:
            label += f" ({name[:40]!r}...)" if len(name) > 40 else f" ({name!r})"
        step_id = step.get("id")
        if step_id is not None and not _is_int(step_id):
            yield f"{label}: 'id' must be a whole number, not {step_id!r}"
        status = step.get("status")
        if status is None:
            yield f"{label}: 'status' is missing"
        elif not isinstance(status, str) or len(status) != 1 or status not in STEP_STATUSES:
            yield f"{label}: 'status' is {status!r}, expected one of P, D, S, F, E, T"
        if name is not None and not isinstance(name, str):
            yield f"{label}: 'name' must be a string, not {_type_name(name)}"
        elif isinstance(name, str) and len(name) > STEP_NAME_LIMIT:
            yield f"{label}: 'name' is {len(name)} characters long, the limit is {STEP_NAME_LIMIT}"
        for key in MEASUREMENT_ARRAYS:
            yield from _measurement_problems(step.get(key), f"{label}: '{key}'")
        children = step.get("steps")
        if children is None:
            continue
        if not isinstance(children, list):
            yield f"{label}: 'steps' must be a list, not {_type_name(children)}"
            continue
        if children and step.get("seqCall") is None:
            yield f"{label}: has child 'steps' but no 'seqCall'; only sequence calls hold steps"
        # Reversed so problems are reported in file order.
        for n in range(len(children) - 1, -1, -1):
            stack.append((children[n], f"{where}.steps[{n}]"))


def _measurement_problems(measurements: Any, label: str) -> Iterator[str]:
    if measurements is None:
        return
    if not isinstance(measurements, list):
        yield f"{label} must be a list, not {_type_name(measurements)}"
        return
    for n, item in enumerate(measurements):
        if not isinstance(item, dict):
            yield f"{label}[{n}] must be an object, not {_type_name(item)}"
            continue
        status = item.get("status")
        if status is not None and (
            not isinstance(status, str) or len(status) != 1 or status not in MEASUREMENT_STATUSES
        ):
            yield f"{label}[{n}].status is {status!r}, expected one of P, F, S"
        value = item.get("value")
        if isinstance(value, float) and not math.isfinite(value):
            yield f"{label}[{n}].value is {value}, which JSON cannot carry"


_REQUIRED_HINTS = {
    "machineName": " (set station_name in the config)",
    "start": " and the file's time is unknown (the converter must set the start time)",
    "processCode": " (set process_code in the converter defaults or arguments)",
}

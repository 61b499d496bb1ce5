"""`KlippelConverter`: Klippel QC logs (formats.md §10) into one WSJF test report per DUT.

Owns reading one Klippel unit: the header file `DUT <sn> <date> UTC+HHMM.txt` (`Key=Value`
lines, each after a `//comment`) and the folder of the same name beside it, which holds one
tab-separated file per task and result: `<Task>-values.txt` (single values with limits) and
curve files such as `Impedance-imp.txt` (frequency, value, max, min). The service is handed the
header file; `companions()` and `unit_complete()` tell it which folder belongs to it and when
both are written. Pure: it reads the file and changes nothing.

How the unit becomes a report, where the format leaves a choice:

* pn <- the `part_number` option, else the name of the Klippel database (`Cfg_DatabasePath`,
  one per product setup); the process follows the rule of every built-in converter
  (`ConversionOptions.process_code`): a Klippel log names no WATS process.
* result <- `Ctrl_OverallVerdict`: 1 pass -> P, 2 warning -> P (the warning is kept as a misc
  info), 0 fail -> F, 3 noise and 4 invalid -> E (the measurement, not the DUT, is in doubt),
  -1 void -> T (no result). The root step carries the same verdict.
* Each task (the file-name part before the last "-") is a sequence. A row of a values file is
  a numeric step (GELE between min and max; LE/GE when only one limit is given, LOG without
  limits). A curve is a chart step (LineLogX over frequency, with the limit curves as series)
  whose measurement counts the points outside the limits (EQ 0).
* Statuses are the file's: the result names listed in `Results_Pass|Fail|Warning|Void|Noise|
  Invalid` decide the step (Pass and Warning -> P, Fail -> F, Void -> S, Noise and Invalid
  -> E). Only a result the header does not list is judged from its limits, with `report.operators`.
  A listed result without data in the folder becomes a pass/fail step of its own, so that a
  failed `fs` shows even when no file holds its value.
* `-`, empty, `nan` and `inf` cells mean "no value". A row without a value has no
  measurement; unlisted, it is Skipped. Curves keep at most 10 000 points per series (WATS'
  limit), thinned evenly when longer; the count of points outside the limits uses them all.
* Text is decoded as every text format is (`textio.decode`): the folder's `encoding` option;
  without one, UTF-8 and then cp1252 (Klippel runs on Windows and writes the ANSI code page).
* The unit is incomplete (`IncompleteFileError`, retried later) while the header is empty,
  ends in the middle of a line or has no `Ctrl_OverallVerdict` yet, while the data folder is
  missing or holds no data file, and while a data file is empty or ends in the middle of a row.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path, PureWindowsPath
from typing import Any

from pywats_client.converters.builtin import BuiltinConverter, ConversionOptions
from pywats_client.converters.textio import MB, decode, read_bytes
from pywats_client.errors import ConversionError, IncompleteFileError
from pywats_client.report.model import (
    CHART_MAX_POINTS,
    MISC_INFO_LIMITS,
    STEP_NAME_LIMIT,
    ReportDict,
    format_datetime,
    format_utc,
    number_steps,
    roll_up_statuses,
)
from pywats_client.report.operators import LOG, numeric_passes, numeric_status

log = logging.getLogger(__name__)

# A header is a couple of kilobytes and a data file some tens; far bigger ones are not Klippel
# logs, and reading them would take a small station's memory.
MAX_HEADER_BYTES = 1 * MB
MAX_DATA_FILE_BYTES = 32 * MB
MAX_DATA_FILES = 500
DEFAULT_SEQUENCE_NAME = "Klippel QC"
VALUES = "values"  # the result part of the single-values file of a task

VERDICT_KEY = "Ctrl_OverallVerdict"
START_KEY = "Cfg_DutStartTime"
SERIAL_KEY = "Cfg_SerialNumber"

# Ctrl_OverallVerdict -> (report result, the word an operator reads in Klippel's summary).
_VERDICTS = {
    "1": ("P", "Pass"), "2": ("P", "Warning"), "0": ("F", "Fail"),
    "3": ("E", "Noise"), "4": ("E", "Invalid"), "-1": ("T", "Void"),
}
# Results_* list -> (step status, measurement status or None = judge by the limits). Listed
# from the worst down: a result named in two lists takes the worse.
_LISTS = (
    ("Results_Fail", "F", "F"), ("Results_Invalid", "E", None), ("Results_Noise", "E", None),
    ("Results_Void", "S", "S"), ("Results_Warning", "P", "P"), ("Results_Pass", "P", "P"),
)
_LIST_WORD = {key: key.removeprefix("Results_") for key, _, _ in _LISTS}

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_INF = float("inf")
_NO_VALUE = frozenset({"", "-", "--", "nan", "-nan", "+nan", "inf", "+inf", "-inf"})
# Year-Month-WeekNo-JulianDay-WeekDay-Day-Hour-Minute-Second-Millis-UTCoffsetMinutes-epoch
_START = re.compile(
    r"(\d{4})-(\d{1,2})-\d{1,2}-\d{1,3}-\d-(\d{1,2})-(\d{1,2})-(\d{1,2})-(\d{1,2})-(\d{1,3})"
    r"-(-?\d{1,4})(?:-.*)?"
)
_FILE_NAME = re.compile(
    r"DUT (?P<sn>.+?) (?P<date>\d{4}-\d{2}-\d{2}) (?P<h>\d{2})-(?P<m>\d{2})-(?P<s>\d{2})"
    r"(?:-(?P<frac>\d{1,6}))? UTC(?P<sign>[+-])(?P<oh>\d{2})(?P<om>\d{2})",
    re.IGNORECASE,
)
_LOGIN_PREFIX = re.compile(r"[A-Za-z]{1,16}:(?=.)")  # "win:m.liebig": the login provider


class KlippelConverter(BuiltinConverter):
    """Converts a Klippel QC header file together with the data folder of the same name."""

    name = "KlippelConverter"
    memory_ratio = 24.0  # peak RSS per input byte (bench_converters --memory: 22.9 on 0.5 MB)
    description = "Klippel QC log: DUT header file plus its data folder of task result tables"
    file_patterns = ("DUT *.txt",)

    @classmethod
    def companions(cls, path: Path) -> list[Path]:
        """The data folder that belongs to the header file `path` (whether it exists yet)."""
        return [_data_folder(path)]

    @classmethod
    def unit_complete(cls, path: Path) -> bool:
        """True when the header and its data folder look completely written: the header ends
        with a line end and holds the verdict, and every data file is non-empty and ends
        with a line end. Never raises."""
        try:
            _read_header(path, None)
            _data_files(path, _data_folder(path), check_complete=True)
        except (ConversionError, OSError, ValueError):
            return False
        return True

    def read(self, path: Path, options: ConversionOptions) -> dict[str, Any] | list[dict[str, Any]]:
        """One report (a `ReportDict`) for the DUT of this header file and its data folder."""
        header = _read_header(path, options.encoding)
        folder = _data_folder(path)
        tables = [_read_table(file, options.encoding, options.decimal())
                  for file in _data_files(path, folder, check_complete=False)]
        return _Builder(path, options, header, folder).report(tables)


# -- the unit on disk ---------------------------------------------------------------------------


def _data_folder(path: Path) -> Path:
    # "DUT xyz115 2020-05-14 10-01-37-5 UTC+0200.txt" -> "DUT xyz115 ... UTC+0200"
    return path.with_name(path.stem)


@KlippelConverter.detection
def _detect(path: Path, head: bytes) -> tuple[float, str]:
    # No "=" (a search for one byte, fast) means none of the header's Key=Value lines.
    if b"=" not in head or b"Cfg_DutStartTime=" not in head or not (
            b"Ctrl_OverallVerdict=" in head or b"Cfg_SerialNumber=" in head):
        return 0.0, ""
    folder = _data_folder(path)
    try:
        beside = folder.is_dir()
    except OSError:  # a folder it may not look into is not its unit
        beside = False
    if not beside:
        return 0.9, "Klippel QC header (Cfg_DutStartTime, Ctrl_OverallVerdict) without its folder"
    named = _FILE_NAME.fullmatch(path.stem) is not None
    return (0.99 if named else 0.97), f"Klippel QC header with its data folder {folder.name!r}"


def _read_bytes(path: Path, limit: int, what: str) -> bytes:
    # A file of the unit that is not there yet belongs to a unit still being written.
    return read_bytes(path, limit, "Klippel", what=what, missing_is_incomplete=True)


@dataclass
class _Header:
    """The `Key=Value` lines of a header file, with the line each came from."""

    path: Path
    values: dict[str, tuple[str, int]] = field(default_factory=dict)

    def get(self, key: str) -> str:
        return self.values.get(key, ("", 0))[0].strip()

    def line(self, key: str) -> int:
        return self.values.get(key, ("", 1))[1]

    def error(self, key: str, message: str) -> ConversionError:
        return ConversionError(f"{self.path}: line {self.line(key)}: {message}")


def _read_written(path: Path, limit: int, what: str, line: str) -> bytes:
    """A file of the unit, once its writer has written it whole: empty, or ending within a
    `line`, it is still being written (IncompleteFileError)."""
    data = _read_bytes(path, limit, what)
    if not data.strip():
        raise IncompleteFileError(f"{path}: the {what} is empty; waiting for the writer")
    if not data.endswith(b"\n"):
        raise IncompleteFileError(
            f"{path}: the {what} ends in the middle of a {line} (still being written?)")
    return data


def _read_header(path: Path, encoding: str | None) -> _Header:
    data = _read_written(path, MAX_HEADER_BYTES, "header file", "line")
    header = _Header(path)
    for number, raw in enumerate(decode(data, path, encoding).split("\n"), start=1):
        line = raw.strip(" \t\r\x00")
        if not line or line.startswith("//"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not _KEY.fullmatch(key.strip()):
            shown = line if len(line) <= 60 else line[:60] + "..."
            raise ConversionError(
                f"{path}: line {number} ({shown!r}) is neither a //comment nor Key=Value; this "
                "is not a Klippel QC header file"
            )
        header.values[key.strip()] = (value.rstrip("\r"), number)  # the last one wins
    if START_KEY not in header.values and SERIAL_KEY not in header.values:
        raise ConversionError(
            f"{path}: no {START_KEY} or {SERIAL_KEY} line; this is not a Klippel QC header file")
    if VERDICT_KEY not in header.values:
        raise IncompleteFileError(
            f"{path}: no {VERDICT_KEY} line yet (the test is still running, or the file was "
            "cut off)"
        )
    return header


def _data_files(header: Path, folder: Path, *, check_complete: bool) -> list[Path]:
    """The `<Task>-<result>.txt` files of the unit, sorted; IncompleteFileError while the
    folder is missing or empty (and, with `check_complete`, while a file is unfinished)."""
    if not folder.is_dir():
        raise IncompleteFileError(
            f"{header}: its data folder {folder.name!r} is not there (yet); the header and "
            "the folder are one Klippel unit, so the conversion waits for both"
        )
    try:
        files = sorted(
            entry for entry in folder.iterdir()
            if entry.suffix.lower() == ".txt" and "-" in entry.stem and entry.is_file()
        )
    except OSError as exc:
        raise ConversionError(f"{folder}: cannot list the data folder: {exc.strerror or exc}"
                              ) from exc
    if not files:
        raise IncompleteFileError(
            f"{header}: its data folder {folder.name!r} holds no <Task>-<result>.txt file yet")
    if len(files) > MAX_DATA_FILES:
        raise ConversionError(
            f"{folder}: {len(files)} data files; a Klippel unit has a handful (over "
            f"{MAX_DATA_FILES} is refused)"
        )
    if check_complete:
        for file in files:
            data = _read_bytes(file, MAX_DATA_FILE_BYTES, "data file")
            if not data.strip() or not data.endswith(b"\n") or b"\t" not in data:
                raise IncompleteFileError(f"{file}: the data file is empty or unfinished")
    return files


@dataclass
class _Table:
    """One data file: its task, result name, column titles and rows (with line numbers)."""

    path: Path
    task: str
    result: str  # "values" for the single-values file, else the curve's result name
    titles: list[str]  # the title row as written
    columns: list[str]  # the same, lower case, for finding columns
    rows: list[tuple[int, list[str]]]
    decimal: str

    def column(self, *names: str) -> int | None:
        for name in names:
            if name in self.columns:
                return self.columns.index(name)
        return None

    def number(self, line: int, cells: list[str], index: int | None) -> str | None:
        """The cell as a number text ("." decimals), None for no value."""
        if index is None or index >= len(cells):
            return None
        text = cells[index].strip()
        if self.decimal == ",":
            text = text.replace(",", ".")
        # The common case first: this runs for every cell of every curve. Only an exponent
        # or a very long number can overflow to infinity, which JSON cannot carry.
        if _NUMBER.fullmatch(text) and not (
                ("e" in text or "E" in text or len(text) > 300)
                and float(text) in (_INF, -_INF)):
            return text
        if text.lower() in _NO_VALUE:
            return None
        title = self.titles[index] if index < len(self.titles) else f"column {index + 1}"
        raise ConversionError(
            f"{self.path}: line {line}: {title} {cells[index].strip()!r} is not a number "
            f"(decimal separator {self.decimal!r}; set decimal_separator if the PC writes "
            "another)"
        )


def _read_table(path: Path, encoding: str | None, decimal: str) -> _Table:
    data = _read_written(path, MAX_DATA_FILE_BYTES, "data file", "row")
    task, _, result = path.stem.rpartition("-")
    titles: list[str] = []
    rows: list[tuple[int, list[str]]] = []
    for number, raw in enumerate(decode(data, path, encoding).split("\n"), start=1):
        cells = raw.rstrip("\r").split("\t")
        if not any(cell.strip() for cell in cells):
            continue
        if not titles:
            titles = [cell.strip() for cell in cells]
            if len(titles) < 2:
                raise ConversionError(
                    f"{path}: line {number}: the title row has no tab-separated columns; a "
                    "Klippel data file starts with e.g. 'frq<tab>imp<tab>max<tab>min'"
                )
            continue
        rows.append((number, cells))
    if not titles:  # only a byte order mark or blank lines so far
        raise IncompleteFileError(f"{path}: the data file is empty; waiting for the writer")
    table = _Table(path, task.strip(), result.strip(), titles,
                   [title.lower() for title in titles], rows, decimal)
    if table.result.lower() == VALUES:
        table.result = VALUES
        if table.column("name") is None or table.column("value") is None:
            raise ConversionError(
                f"{path}: line 1: a values file needs the columns name and value (found "
                f"{', '.join(titles)})"
            )
    return table


# -- building the report --------------------------------------------------------------------------


class _Builder:
    """Builds the report of one unit; one instance per conversion."""

    def __init__(self, path: Path, options: ConversionOptions, header: _Header,
                 folder: Path) -> None:
        self.path = path
        self.options = options
        self.header = header
        self.folder = folder
        self.out = ReportDict()
        self.verdicts = self._verdicts()
        self.used: set[str] = set()

    def report(self, tables: list[_Table]) -> ReportDict:
        out, header = self.out, self.header
        out.locations[""] = self.path.name
        # A Klippel QC database holds the setup of one product, so its name is the best
        # part number the files offer when none is configured.
        database = PureWindowsPath(header.get("Cfg_DatabasePath")).stem
        pn = (self.options.part_number or database)[:100]
        if not pn:
            raise ConversionError(
                f"{self.path}: the header names no Cfg_DatabasePath to take the part number "
                "from; set part_number in the watch folder's converter arguments (or "
                "converters.defaults)"
            )
        sn = header.get(SERIAL_KEY) or self._name_part("sn")
        if not sn:
            raise header.error(SERIAL_KEY, f"{SERIAL_KEY} is empty and the file name holds no "
                                           "serial number ('DUT <serial> <date> ...txt')")
        out.locations["sn"] = f"{self.path.name} line {header.line(SERIAL_KEY)}"
        self.options.fill_header(out, pn=pn, sn=sn, rev=self.options.revision,
                                 lacks="a Klippel log names no WATS process")
        result, word = self._verdict()
        out["result"] = result
        out.locations["result"] = f"{self.path.name} line {header.line(VERDICT_KEY)}"
        station = header.get("Cfg_PCName") or self.options.station_name
        if station:
            out["machineName"] = station
        start = self._start()
        if start is not None:
            try:
                out["start"], out["startUTC"] = format_datetime(start), format_utc(start)
            except (ValueError, OverflowError):
                raise header.error(START_KEY, f"the start time {start} is out of range"
                                   ) from None
        out["uut"] = self._uut()
        out["miscInfos"] = self._misc(word)
        out["root"] = self._root(tables, result)
        return out

    # -- header fields -------------------------------------------------------------------------

    def _verdict(self) -> tuple[str, str]:
        code = self.header.get(VERDICT_KEY)
        if code not in _VERDICTS:
            raise self.header.error(
                VERDICT_KEY, f"{VERDICT_KEY} {code!r} is not one of -1 (void), 0 (fail), "
                "1 (pass), 2 (warning), 3 (noise), 4 (invalid)"
            )
        return _VERDICTS[code]

    def _name_part(self, group: str) -> str:
        match = _FILE_NAME.fullmatch(self.path.stem)
        return match.group(group).strip() if match else ""

    def _start(self) -> datetime | None:
        text = self.header.get(START_KEY)
        match = _START.fullmatch(text)
        if match:
            year, month, day, hour, minute, second, millis, offset = map(int, match.groups())
            try:
                zone = timezone(timedelta(minutes=offset))
                return datetime(year, month, day, hour, minute, second, millis * 1000,
                                tzinfo=zone)
            except ValueError:
                pass
        if text:
            log.warning("%s: line %d: %s %r is not a Klippel start time; the time in the file "
                        "name is used", self.path, self.header.line(START_KEY), START_KEY, text)
        named = _FILE_NAME.fullmatch(self.path.stem)
        if named is None:
            return None  # finalize() falls back to the file's time
        try:
            shift = timedelta(hours=int(named["oh"]), minutes=int(named["om"]))
            zone = timezone(-shift if named["sign"] == "-" else shift)
            moment = datetime.strptime(
                f"{named['date']} {named['h']}:{named['m']}:{named['s']}", "%Y-%m-%d %H:%M:%S")
            fraction = float("0." + named["frac"]) if named["frac"] else 0.0
            return moment.replace(tzinfo=zone) + timedelta(seconds=fraction)
        except (ValueError, OverflowError):
            return None

    def _uut(self) -> dict[str, Any]:
        uut: dict[str, Any] = {}
        user = _LOGIN_PREFIX.sub("", self.header.get("Cfg_UserName"), count=1).strip()
        user = user or self.options.operator
        if user:
            uut["user"] = user[:100]
        error = self.header.get("Ctrl_ErrorGeneral")
        if error:
            uut["errorMessage"] = error
        return uut

    def _misc(self, verdict_word: str) -> list[dict[str, Any]]:
        header = self.header
        database = header.get("Cfg_DatabasePath")
        pairs = [
            ("Overall verdict", f"{verdict_word} ({header.get(VERDICT_KEY)})", VERDICT_KEY),
            ("Login mode", header.get("Cfg_LoginMode"), "Cfg_LoginMode"),
            ("Speaker", header.get("Cfg_Speaker"), "Cfg_Speaker"),
            ("Monitor", header.get("Cfg_MonitorID"), "Cfg_MonitorID"),
            ("Database", PureWindowsPath(database).name if database else "", "Cfg_DatabasePath"),
        ]
        misc: list[dict[str, Any]] = []
        limit = MISC_INFO_LIMITS["text"]
        for description, text, key in pairs:
            if text:
                self.out.locations[f"miscInfos[{len(misc)}]"] = (
                    f"{self.path.name} line {header.line(key)}")
                misc.append({"description": description, "text": text[:limit]})
        return misc

    def _verdicts(self) -> dict[str, tuple[str, str | None, str]]:
        """Result name -> (step status, measurement status, list word) from Results_*."""
        found: dict[str, tuple[str, str | None, str]] = {}
        for key, step_status, meas_status in _LISTS:  # worst first: the first list wins
            for name in self.header.get(key).split("\t"):
                name = name.strip()
                if name and name not in found:
                    found[name] = (step_status, meas_status, _LIST_WORD[key])
        return found

    # -- steps ---------------------------------------------------------------------------------

    def _root(self, tables: list[_Table], result: str) -> dict[str, Any]:
        database = self.header.get("Cfg_DatabasePath")
        name = self.options.sequence_name or (
            PureWindowsPath(database).stem if database else "") or DEFAULT_SEQUENCE_NAME
        name = name[:STEP_NAME_LIMIT]
        root: dict[str, Any] = {
            "id": 0, "group": "M", "stepType": "SequenceCall", "name": name, "status": result,
            "seqCall": {"path": database or self.folder.name, "name": name,
                        "version": self.options.sequence_version},
            "steps": [],
        }
        self.out.locations["root"] = self.path.name
        tasks: dict[str, list[_Table]] = {}
        for table in tables:
            tasks.setdefault(table.task, []).append(table)
        for task, group in tasks.items():
            # The single values first, then the curves, each in file-name order.
            group.sort(key=lambda t: (t.result != VALUES, t.path.name))
            where = f"root.steps[{len(root['steps'])}]"
            root["steps"].append(self._task(task, group, where))
        for result_name, (status, _, word) in self.verdicts.items():
            if result_name in self.used:
                continue
            # Listed in the header, but no file holds its data: the verdict alone is a step.
            where = f"root.steps[{len(root['steps'])}]"
            line = self.header.line(f"Results_{word}")
            self.out.locations[where] = f"{self.path.name} line {line}"
            step: dict[str, Any] = {
                "id": 0, "group": "M", "stepType": "ET_PFT", "name": result_name[:STEP_NAME_LIMIT],
                "status": status,
                "reportText": f"{word} (Results_{word} in the header); no data file holds "
                              "its values",
            }
            if status in ("P", "F"):
                step["booleanMeas"] = [{"name": None, "status": status}]
            root["steps"].append(step)
        roll_up_statuses(root)
        root["status"] = result  # the file's verdict, whatever the steps say
        number_steps(root)
        return root

    def _task(self, task: str, tables: list[_Table], where: str) -> dict[str, Any]:
        name = (task or "Task")[:STEP_NAME_LIMIT]
        self.out.locations[where] = f"{self.folder.name}/{tables[0].path.name}"
        steps: list[dict[str, Any]] = []
        for table in tables:
            if table.result == VALUES:
                for line, cells in table.rows:
                    step = self._value_step(table, line, cells)
                    if step is not None:
                        self.out.locations[f"{where}.steps[{len(steps)}]"] = (
                            f"{table.path.name} line {line}")
                        steps.append(step)
            else:
                self.out.locations[f"{where}.steps[{len(steps)}]"] = table.path.name
                steps.append(self._curve_step(table))
        sequence: dict[str, Any] = {
            "id": 0, "group": "M", "stepType": "SequenceCall", "name": name, "status": None,
            "seqCall": {"path": f"{self.folder.name}/{task}", "name": name, "version": ""},
            "steps": steps,
        }
        if steps and all(step["status"] == "S" for step in steps):
            sequence["status"] = "S"  # nothing measured; roll-up would call it Passed
        return sequence

    def _listed(self, result_name: str) -> tuple[str, str | None, str] | None:
        listed = self.verdicts.get(result_name)
        if listed is not None:
            self.used.add(result_name)
        return listed

    def _value_step(self, table: _Table, line: int, cells: list[str]) -> dict[str, Any] | None:
        name_cell = table.column("name")
        assert name_cell is not None
        result_name = cells[name_cell].strip() if name_cell < len(cells) else ""
        if not result_name:
            return None  # a row without a name cannot be reported; Klippel never writes one
        value = table.number(line, cells, table.column("value"))
        high = table.number(line, cells, table.column("max"))
        low = table.number(line, cells, table.column("min"))
        listed = self._listed(result_name)
        step: dict[str, Any] = {"id": 0, "group": "M", "stepType": "ET_NLT",
                                "name": result_name[:STEP_NAME_LIMIT]}
        texts = [f"{listed[2]} (Results_{listed[2]})"] if listed else []
        if value is None:
            step["status"] = listed[0] if listed else "S"
            limits = f" (limits {low or '-'} .. {high or '-'})" if low or high else ""
            texts.append(f"no value measured{limits}")
        else:
            measurement = _measurement(float(value), low, high, listed)
            step["status"] = listed[0] if listed else measurement["status"]
            step["numericMeas"] = [measurement]
        if texts:
            step["reportText"] = "; ".join(texts)
        return step

    def _curve_step(self, table: _Table) -> dict[str, Any]:
        max_col, min_col = table.column("max"), table.column("min")
        ys: list[tuple[str, str]] = []
        highs: list[tuple[str, str]] = []
        lows: list[tuple[str, str]] = []
        outside = checked = 0
        for line, cells in table.rows:
            x = table.number(line, cells, 0)
            if x is None:
                continue
            y = table.number(line, cells, 1)
            high = table.number(line, cells, max_col)
            low = table.number(line, cells, min_col)
            if y is not None:
                ys.append((x, y))
            if high is not None:
                highs.append((x, high))
            if low is not None:
                lows.append((x, low))
            if y is not None and (high is not None or low is not None):
                checked += 1
                op, lo, hi = _limits(low, high)
                if not numeric_passes(op, float(y), lo, hi):
                    outside += 1
        result_name = table.titles[1] or table.result
        listed = self._listed(result_name)
        if listed is None and result_name != table.result:
            listed = self._listed(table.result)
        label = f"{table.task} {result_name}"
        series = [_series(name, points) for name, points in (
            (result_name, ys), ("max", highs), ("min", lows)) if points]
        step: dict[str, Any] = {
            "id": 0, "group": "M", "stepType": "WATS_XYGMNLT",
            "name": result_name[:STEP_NAME_LIMIT],
        }
        texts = [f"{listed[2]} (Results_{listed[2]})"] if listed else []
        if checked:
            texts.append(f"{outside} of {checked} points outside the limits")
            measurement = {"compOp": "EQ", "name": None, "status": "P" if outside == 0 else "F",
                           "unit": "points", "value": outside, "lowLimit": 0}
            if listed is not None and listed[1] is not None:
                measurement["status"] = listed[1]
            step["status"] = listed[0] if listed else measurement["status"]
            step["numericMeas"] = [measurement]
        else:
            texts.append(f"{len(ys)} points, no limits" if ys else "no value measured")
            step["status"] = listed[0] if listed else ("D" if ys else "S")
        if max(len(ys), len(highs), len(lows)) > CHART_MAX_POINTS:
            texts.append(f"chart thinned to {CHART_MAX_POINTS} points per series")
        step["reportText"] = "; ".join(texts)
        if series:
            step["chart"] = {
                "chartType": "LineLogX", "label": label[:STEP_NAME_LIMIT],
                "xLabel": "Frequency", "xUnit": "Hz", "yLabel": result_name, "yUnit": None,
                "series": series,
            }
        return step


def _measurement(value: float, low: str | None, high: str | None,
                 listed: tuple[str, str | None, str] | None) -> dict[str, Any]:
    """A single numeric measurement; its status is the file's when listed, else the limits'."""
    op, lo, hi = _limits(low, high)
    status = listed[1] if listed is not None and listed[1] is not None else numeric_status(
        op, value, lo, hi)
    limits = {"lowLimit": lo} if lo is not None else {}
    if hi is not None:
        limits["highLimit"] = hi
    return {"compOp": op, "name": None, "status": status, "unit": None, "value": value,
            **limits}


def _limits(low: str | None, high: str | None) -> tuple[str, float | None, float | None]:
    """(compOp, lowLimit, highLimit) for a min and max column; one limit goes in lowLimit,
    as the single-limit operators compare with lowLimit only (formats.md §1.2)."""
    if low is not None and high is not None:
        return "GELE", float(low), float(high)
    if high is not None:
        return "LE", float(high), None
    if low is not None:
        return "GE", float(low), None
    return LOG, None, None


def _series(name: str, points: list[tuple[str, str]]) -> dict[str, Any]:
    if len(points) > CHART_MAX_POINTS:
        # Evenly thinned, first and last point kept: the shape of the curve survives.
        step = (len(points) - 1) / (CHART_MAX_POINTS - 1)
        points = [points[round(n * step)] for n in range(CHART_MAX_POINTS)]
    return {"dataType": "XYG", "name": name,
            "xdata": ";".join(x for x, _ in points), "ydata": ";".join(y for _, y in points)}

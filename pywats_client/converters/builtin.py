"""The settings a built-in converter reads for one file, and the one rule for the process code.

Owns `ConversionOptions`, built once per conversion from `Converter.option()` (the watch
folder's converter arguments, the converter's own arguments, `converters.defaults`) and the
context: part number, revision, process, operator, station, sequence, encoding, decimal
separator and time zone. Its `process_code()` is the rule every built-in converter follows to
file a report under a WATS operation, and `local()` the rule for naive times in files.
`BuiltinConverter` is the base of the built-in converters: it builds the options and hands
them to `read()`. Depends only on the converter base, `report` (INT16) and `errors`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any, ClassVar

from pywats_client.converters.base import Converter, ConverterContext
from pywats_client.errors import ConversionError, ProcessListUnknownError
from pywats_client.report.model import INT16

# Option keys every built-in converter understands (see `Converter.option`).
OPTION_KEYS = ("part_number", "revision", "process_code", "process_name", "operator",
               "station_name", "sequence_name", "sequence_version", "encoding",
               "decimal_separator")
# What to tell an operator whose files name no process.
PROCESS_CODE_FIX = ("set process_code (e.g. 50) in the watch folder's arguments or in "
                    "converters.defaults")
# `ConverterContext.encoding` says "utf-8" when nothing is configured.
_UNSET_ENCODINGS = ("", "utf-8", "utf8")
# A built-in converter's detection: (path, first bytes) -> (score 0.0..1.0, what was seen).
Detector = Callable[[Path, bytes], tuple[float, str]]


@dataclass(frozen=True)
class ConversionOptions:
    """The options of one conversion, as trimmed text ("" when not set).

    `encoding` is None when none is configured: the file's byte order mark, else UTF-8, else
    cp1252 decide (see `textio.decode`). `timezone` None means the system's local zone.
    """

    path: Path
    part_number: str = ""
    revision: str = ""
    process_name: str = ""
    operator: str = ""
    station_name: str = ""
    sequence_name: str = ""
    sequence_version: str = ""
    encoding: str | None = None
    decimal_separator: str = "."
    timezone: tzinfo | None = None
    # As configured; checked only when a file needs it (`process_code()`).
    process_code_setting: str = ""
    processes: Mapping[str, int] = field(default_factory=dict, repr=False)
    # The values set for this folder or converter, without `converters.defaults`.
    arguments: Mapping[str, str] = field(default_factory=dict, repr=False)
    _converter: Converter | None = field(default=None, repr=False, compare=False)
    _context: ConverterContext | None = field(default=None, repr=False, compare=False)

    @classmethod
    def of(cls, converter: Converter, context: ConverterContext, path: Path
           ) -> ConversionOptions:
        """The options `converter` has for converting `path` in `context`."""

        def text(key: str) -> str:
            value = converter.option(context, key)
            return "" if value is None else str(value).strip()

        encoding = text("encoding")
        if not encoding and (context.encoding or "").strip().lower().replace(
                "_", "-") not in _UNSET_ENCODINGS:
            encoding = context.encoding.strip()
        arguments: dict[str, str] = {}
        for key in OPTION_KEYS:
            for source in (context.arguments, converter.arguments):
                value = source.get(key)
                if value is not None and str(value).strip():
                    arguments[key] = str(value).strip()
                    break
        return cls(
            path=path, part_number=text("part_number"), revision=text("revision"),
            process_name=text("process_name"), operator=text("operator"),
            station_name=text("station_name"), sequence_name=text("sequence_name"),
            sequence_version=text("sequence_version"), encoding=encoding or None,
            decimal_separator=text("decimal_separator") or ".", timezone=context.timezone,
            process_code_setting=text("process_code"), processes=context.processes,
            arguments=arguments, _converter=converter, _context=context,
        )

    def setting(self, key: str) -> Any:
        """The value of a converter-specific setting `key`, looked up as `Converter.option()`
        does (folder arguments, the converter's arguments, `converters.defaults`); None when
        unset."""
        if self._converter is None or self._context is None:
            return None
        return self._converter.option(self._context, key)

    def argument(self, key: str) -> str:
        """The value of `key` set for this folder or converter; "" when only
        `converters.defaults` (or nothing) sets it. For formats where what the file implies
        ranks between the two."""
        return self.arguments.get(key, "")

    def process_code(self, where: str = "", *, code: int | None = None,
                     name: str | None = None, lacks: str = "the file names no process") -> int:
        """The WATS process code of a report, by the rule every built-in converter follows:
        the code the file gives; else the process name the file gives, looked up in the
        server's process list (never replaced by a setting: a name the list lacks is a
        ConversionError naming the list, and while no list is known the file waits,
        ProcessListUnknownError); else the `process_code` option; else the `process_name`
        option, looked up in the server's process list (waiting for it the same way).

        No built-in default: a guessed operation files reports where nobody looks, while
        this ConversionError (naming `where`, default the file, and saying what to set)
        sends the file to the error folder, where it is noticed and fixed once. `lacks`
        says what the file does not give, e.g. "GR228x logs do not name the WATS operation".
        """
        where = where or str(self.path)
        found = self.find_process_code(where, code=code, name=name)
        if found is None:
            raise ConversionError(f"{where}: no process code: {self._why_none(lacks, name)}; "
                                  f"{PROCESS_CODE_FIX}")
        return found

    def find_process_code(self, where: str = "", *, code: int | None = None,
                          name: str | None = None) -> int | None:
        """`process_code()`, but None when neither the file nor the settings give a code.
        A process_code setting that is not a whole number, or a code out of range, is still
        a ConversionError."""
        if code is not None:
            return code
        where = where or str(self.path)
        found: int | None = None
        if name:
            found = self._named(where, name, f"the file names the process {name!r}")
            if found is None:
                raise ConversionError(
                    f"{where}: the process {name!r} is not one the server knows (its "
                    f"processes: {_names(self.processes)}); use one of those names in the "
                    "file, or give the process code as a number")
        elif self.process_code_setting:
            if _whole(self.process_code_setting) is None:
                raise ConversionError(
                    f"{where}: process_code {self.process_code_setting!r} is not a whole "
                    f"number; {PROCESS_CODE_FIX}"
                )
            found = self._lookup(None)
        elif self.process_name:
            found = self._named(where, self.process_name,
                                f"process_name is set to {self.process_name!r}")
        if found is None:
            return None
        found = int(found)
        if not INT16[0] <= found <= INT16[1]:
            raise ConversionError(
                f"{where}: process_code {found} is out of range for a WATS process code "
                f"({INT16[0]}..{INT16[1]}); {PROCESS_CODE_FIX}"
            )
        return found

    def fill_header(self, report: dict[str, Any], *, pn: str, sn: str, rev: str, lacks: str,
                    where: str = "", code: int | None = None, name: str | None = None) -> None:
        """Start a test report as every built-in converter does, in the order WATS exports
        it: type, pn, sn, rev, then processCode and processName by `process_code()` and
        `process_name_for()` (`code` and `name` are what the file gives, if anything)."""
        report["type"] = "T"
        report["pn"], report["sn"], report["rev"] = pn, sn, rev
        report["processCode"] = self.process_code(where, code=code, name=name, lacks=lacks)
        process_name = self.process_name_for(name)
        if process_name:
            report["processName"] = process_name

    def process_name_for(self, file_name: str | None = None) -> str:
        """The processName of a report: the one the file gives, else the `process_name`
        option ("" for none)."""
        return file_name or self.process_name

    def local(self, moment: datetime) -> datetime:
        """A time from the file with its zone: naive times are the station's local time, in
        the folder's `timezone` (None: the system's zone). Aware times are kept."""
        return local_time(moment, self.timezone)

    def decimal(self) -> str:
        """The `decimal_separator` option, "." or ","; ConversionError for anything else."""
        if self.decimal_separator not in (".", ","):
            raise ConversionError(
                f"{self.path}: decimal_separator {self.decimal_separator!r} in the watch "
                "folder's converter arguments is not '.' or ','"
            )
        return self.decimal_separator

    def _named(self, where: str, name: str, whose: str) -> int | None:
        """The code of process `name` in the server's list (None: not in it); while no list
        is known, ProcessListUnknownError: a named process is never guessed."""
        if not self.processes:
            raise ProcessListUnknownError(
                f"{where}: {whose}, which cannot be looked up yet: the server's process list "
                "is not known (it is fetched once the server is reachable); the file waits "
                "for it")
        return self._lookup(name) if name in self.processes else None

    def _lookup(self, name: str | None) -> int | None:
        # Converter.process_code(): `name` in the server's list, else the process_code option
        # (checked above to be a whole number, which it then reads the same way).
        if self._converter is not None and self._context is not None:
            return self._converter.process_code(self._context, name)
        if name and name in self.processes:
            return int(self.processes[name])
        return _whole(self.process_code_setting)

    def _why_none(self, lacks: str, name: str | None) -> str:
        reasons = [lacks]
        listed = "the server's process list" if self.processes else (
            "the server's process list, which is not known yet (it is fetched once the "
            "server is reachable)")
        if name:
            reasons.append(f"its process {name!r} is not in {listed}")
        if self.process_name:
            reasons.append(f"process_name {self.process_name!r} is not in {listed}")
        return "; ".join(reasons)


class BuiltinConverter(Converter):
    """The base of the built-in converters: `convert()` looks the settings of the conversion
    up once, as `ConversionOptions`, and hands them to `read()`, which a subclass implements.
    A subclass whose detection is a function of its module marks it `@Subclass.detection`.
    """

    # The format's detection: `detect_with_reason()` as a function of the file's path and first
    # bytes, named by `@TheConverter.detection` on that function. None: the class overrides
    # `detect_with_reason()` itself.
    detector: ClassVar[Detector | None] = None

    @classmethod
    def detection(cls, detector: Detector) -> Detector:
        """Decorator: `detector` is this converter's detection."""
        cls.detector = detector
        return detector

    def detect_with_reason(self, path: Path, head: bytes) -> tuple[float, str]:
        detector = type(self).detector
        return (0.0, "") if detector is None else detector(path, head)

    def convert(
        self, path: Path, context: ConverterContext
    ) -> dict[str, Any] | list[dict[str, Any]]:
        return self.read(path, ConversionOptions.of(self, context, path))

    def read(self, path: Path, options: ConversionOptions
             ) -> dict[str, Any] | list[dict[str, Any]]:
        """Read `path` into one WSJF report or several, with the settings in `options`."""
        raise NotImplementedError(f"converter {type(self).__name__} does not implement read()")


def local_time(moment: datetime, zone: tzinfo | None) -> datetime:
    """`moment` with a zone: a naive time is taken as local to `zone` (None: the system's
    local zone, with its offset); an aware one is kept."""
    if moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=zone) if zone is not None else moment.astimezone()


def _names(processes: Mapping[str, int], most: int = 30) -> str:
    ordered = sorted(processes.items(), key=lambda item: (item[1], item[0]))
    shown = ", ".join(f"{name!r} ({code})" for name, code in ordered[:most])
    return shown + (f" and {len(ordered) - most} more" if len(ordered) > most else "")


def _whole(text: Any) -> int | None:
    try:
        return int(str(text).strip()) if str(text).strip() else None
    except ValueError:
        return None

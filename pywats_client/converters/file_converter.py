"""`FileConverter`: the converter API of the client architecture document (`name`, `version`,
`file_patterns` properties, `convert(source, context) -> ConverterResult`), run by the service
like every other converter.

It is a `Converter` whose `convert()` is adapted once, when a subclass is made: called with a
path by the service, it wraps the path in a `ConverterSource`, runs the subclass's
`convert(source, context)` and turns the `ConverterResult` into reports, or into the error,
skip or retry the service understands. Called with a `ConverterSource`, it is the subclass's
own method and returns its `ConverterResult` unchanged.
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
from abc import ABCMeta, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from pywats_client.converters.base import (
    ConversionSkipped,
    Converter,
    ConverterContext,
    ConverterInfo,
)
from pywats_client.converters.models import ConversionStatus, ConverterResult, ConverterSource
from pywats_client.errors import ConversionError, IncompleteFileError
from pywats_client.report.builder import apply_context

log = logging.getLogger(__name__)

_ADAPTED = "_pywats_file_converter_adapted"


class FileConverter(Converter, metaclass=ABCMeta):
    """Base class of converters written to the architecture document's API.

    Subclasses give `name` (and may give `version`, `description`, `file_patterns`) as
    properties or plain class attributes, and implement `convert(source, context)`:
    `source.path` is the file, `context` the `ConverterContext` (its `get_argument(name,
    default)` reads the watch folder's converter arguments). Return
    `ConverterResult.success_result(report=...)` (or `reports=[...]` for several),
    `failed_result(error=...)`, `skipped_result(reason)` or `suspended_result(reason)`; a
    report may be a WSJF dict or a `UUTReport`/`UURReport`.
    """

    _probes: ClassVar[dict[type, FileConverter]] = {}
    _probes_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, **arguments: Any) -> None:
        super().__init__(**arguments)

    @property
    @abstractmethod
    def name(self) -> str:  # type: ignore[override]
        """The converter's name, as the config and `converters list` show it."""

    @property
    def version(self) -> str:  # type: ignore[override]
        return "1.0.0"

    @property
    def description(self) -> str:  # type: ignore[override]
        return ""

    @property
    def file_patterns(self) -> list[str]:  # type: ignore[override]
        """Glob patterns of the file names this converter reads; "*" is every file."""
        return ["*"]

    @abstractmethod
    def convert(self, source: Any, context: Any = None) -> Any:
        """Convert `source` (a `ConverterSource`); return a `ConverterResult`."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = vars(cls)
        convert = own.get("convert")
        if inspect.isfunction(convert) and not getattr(convert, _ADAPTED, False):
            cls.convert = _adapt_convert(convert)  # type: ignore[method-assign]
        init = own.get("__init__")
        if inspect.isfunction(init) and not _takes_keywords(init):
            # The document's converters take no arguments: theirs come through the context.
            cls.__init__ = _keep_arguments(init)  # type: ignore[method-assign]

    @classmethod
    def get_info(cls) -> ConverterInfo:
        """Name, description, version and patterns, read from an instance (they are
        properties); raises what creating one raises (e.g. a missing abstract member)."""
        probe = cls._probe()
        origin = "built-in" if cls.__module__.startswith("pywats_client.") else (
            f"{cls.__module__}.{cls.__qualname__}"
        )
        patterns: Any = probe.file_patterns
        return ConverterInfo(name=str(probe.name), description=str(probe.description or ""),
                             version=str(probe.version), origin=origin,
                             file_patterns=(patterns,) if isinstance(patterns, str) else tuple(
                                 str(pattern) for pattern in patterns))

    @classmethod
    def _probe(cls) -> FileConverter:
        with cls._probes_lock:
            probe = cls._probes.get(cls)
        if probe is None:
            probe = cls()
            with cls._probes_lock:
                probe = cls._probes.setdefault(cls, probe)
        return probe

    # -- helpers the document's converters use ---------------------------------------------

    def read_file_text(self, path: Path, encoding: str = "utf-8", errors: str = "replace"
                       ) -> str:
        """The whole file as text."""
        return Path(path).read_text(encoding=encoding, errors=errors)

    def read_file_lines(self, path: Path, encoding: str = "utf-8", strip: bool = True
                        ) -> list[str]:
        """The file's lines, stripped of blanks at both ends unless `strip` is False."""
        with open(path, encoding=encoding) as fh:
            return [line.strip() for line in fh] if strip else fh.readlines()

    def read_file_bytes(self, path: Path) -> bytes:
        """The whole file as bytes."""
        return Path(path).read_bytes()


def _adapt_convert(convert: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(convert)
    def convert_file(self: FileConverter, source: Any, context: Any = None) -> Any:
        if isinstance(source, ConverterSource):
            return convert(self, source, context)
        path = Path(source)
        context = context if context is not None else ConverterContext()
        return _reports(self, convert(self, ConverterSource.from_file(path), context), path,
                        context)

    setattr(convert_file, _ADAPTED, True)
    return convert_file


def _reports(converter: FileConverter, result: Any, path: Path, context: Any) -> Any:
    """The reports of a result, as the service takes them; a result without reports becomes
    the error, skip or retry it stands for."""
    if not isinstance(result, ConverterResult):
        if result is None:
            raise ConversionError(f"{path.name}: converter {converter.name} returned nothing; "
                                  "return a ConverterResult")
        return result  # a report or a list of them, as a plain `Converter` returns
    for warning in result.warnings:
        log.warning("%s: %s: %s", path, converter.name, warning)
    reason = (result.error or "").strip()
    status = result.status
    if status is ConversionStatus.SUCCESS:
        reports = result.get_all_reports()
        if not reports:
            raise ConversionError(f"{path.name}: converter {converter.name} reported success "
                                  "but gave no report")
        return [_completed(report, context) for report in reports]
    if status is ConversionStatus.SKIPPED:
        raise ConversionSkipped(f"{path.name}: skipped by {converter.name}: "
                                f"{reason or 'no reason given'}")
    if status is ConversionStatus.SUSPENDED:
        raise IncompleteFileError(f"{path.name}: {converter.name} asks to wait: "
                                  f"{reason or 'no reason given'}")
    what = "rejected" if status is ConversionStatus.REJECTED else "failed"
    raise ConversionError(f"{path.name}: {converter.name} {what}: "
                          f"{reason or 'no reason given'}")


def _completed(report: Any, context: Any) -> Any:
    """A report with what the context supplies filled in (process, part number, revision,
    operator defaults), as for report objects of the other converter styles."""
    serialise = getattr(report, "to_wsjf", None) or getattr(report, "to_dict", None)
    data = serialise() if callable(serialise) and not isinstance(report, dict) else report
    if isinstance(data, dict) and isinstance(context, ConverterContext):
        apply_context(data, context)
    return data


def _takes_keywords(function: Callable[..., Any]) -> bool:
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def _keep_arguments(init: Callable[..., Any]) -> Callable[..., None]:
    try:
        named = {p.name for p in list(inspect.signature(init).parameters.values())[1:]
                 if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                               inspect.Parameter.KEYWORD_ONLY)}
    except (TypeError, ValueError):
        named = set()

    @functools.wraps(init)
    def __init__(self: FileConverter, **arguments: Any) -> None:
        init(self, **{key: value for key, value in arguments.items() if key in named})
        self.arguments = dict(arguments)

    return __init__

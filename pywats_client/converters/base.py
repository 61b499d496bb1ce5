"""The converter contract: what a converter is, and what it may know besides the file.

Owns `Converter` (alias `BaseConverter`), `ConverterInfo`, `ConverterContext` and
`ConversionSkipped`. A converter turns one file into one or more WSJF reports and is pure: no
queue, network or clock; what it needs comes from its arguments and the context.

Three ways of writing one are accepted, because users copy them from the product documents:
the full form (`detect(path, head)`, `convert(path, context)`), a `get_info()` classmethod with
`convert(self, file_path)`, and class attributes with `can_convert(self, file_path) -> bool`
and `convert(self, file_path)`. The short forms are adapted once, when the class is created,
so every caller sees the full form.
"""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import tzinfo
from pathlib import Path
from typing import Any, ClassVar

from pywats_client.errors import ConversionError

# How many bytes of a file `detect()` is shown; the service reads this much once per file.
HEAD_SIZE = 64 * 1024
# How sure a converter is said to be when its `can_convert()` accepts a file: sure enough to be
# chosen, yet below a content check that recognises the format itself (0.8 and up).
CAN_CONVERT_SCORE = 0.7


@dataclass(frozen=True)
class ConverterContext:
    """Everything a converter may know besides the file.

    Converters are pure: no queue, network or clock; what they need comes from here.
    """

    station_name: str = ""
    location: str = ""
    purpose: str = ""
    # Configured defaults: part_number, revision, process_code, operator, sequence_name, ...
    defaults: Mapping[str, Any] = field(default_factory=dict)
    arguments: Mapping[str, Any] = field(default_factory=dict)  # this converter's own arguments
    timezone: tzinfo | None = None  # local zone for naive times in files (None: system local)
    encoding: str = "utf-8"
    file_mtime: float | None = None  # the source file's mtime (epoch), for a missing start time
    # Process (operation type) name -> code as the server knows them (GET /api/App/Processes,
    # cached by the service), for files that name their process instead of giving its code.
    processes: Mapping[str, int] = field(default_factory=dict)

    # The product documents hand converters their arguments through the context, either as
    # `context.get_argument(name, default)` or as a plain dict; both read `arguments`.

    def get_argument(self, name: str, default: Any = None) -> Any:
        """The watch folder's converter argument `name`, else `default`."""
        return self.arguments.get(name, default)

    def has_argument(self, name: str) -> bool:
        """True when the watch folder's converter arguments set `name`."""
        return name in self.arguments

    def get(self, name: str, default: Any = None) -> Any:
        """Same as `get_argument()`, for converters that treat the context as a dict."""
        return self.arguments.get(name, default)

    def __getitem__(self, name: str) -> Any:
        return self.arguments[name]

    def __contains__(self, name: object) -> bool:
        return name in self.arguments


class ConversionSkipped(ConversionError):
    """The converter looked at the file and says it holds no report to make (a template, a
    summary beside the results): not an error. The service handles the file like a converted
    one, with a note saying why no report was made (see the converters README)."""


@dataclass(frozen=True)
class ConverterInfo:
    """What a converter says about itself, as listed by `pywats-client converters`."""

    name: str
    description: str = ""
    version: str = "1.0"
    file_patterns: tuple[str, ...] = ("*",)
    origin: str = ""  # "built-in", a dotted path, or the plugin file path

    def __post_init__(self) -> None:
        # Older plugins pass a list (or a single pattern); keep the info hashable and uniform.
        object.__setattr__(self, "file_patterns", _as_patterns(self.file_patterns))


class Converter:
    """Base class of every converter: set `name` and `file_patterns`, implement `convert()`.

    Instances are shared by the conversion workers, so `convert()` must not keep per-file state
    on `self`. Arguments from the config arrive as keyword arguments and are kept in
    `self.arguments`.
    """

    name: ClassVar[str]  # as users configure it, e.g. "WATSStandardJsonConverter"
    description: ClassVar[str] = ""
    version: ClassVar[str] = "1.0"
    file_patterns: ClassVar[tuple[str, ...]] = ("*",)
    # True for a class whose file names are judged by its can_convert() (no file_patterns).
    _names_by_can_convert: ClassVar[bool] = False

    def __init__(self, **arguments: Any) -> None:
        self.arguments: dict[str, Any] = dict(arguments)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = vars(cls)
        convert = own.get("convert")
        if inspect.isfunction(convert) and _takes_only_the_path(convert):
            cls.convert = _with_context_ignored(convert)  # type: ignore[method-assign]
        if not callable(getattr(cls, "can_convert", None)):
            return
        # `detect` and `detect_with_reason` still the base ones: can_convert() answers.
        if cls.detect is Converter.detect and (
                cls.detect_with_reason is Converter.detect_with_reason):
            cls.detect_with_reason = _detect_by_can_convert  # type: ignore[method-assign]
            cls.detect = _score_by_can_convert  # type: ignore[method-assign]
        # Judged again for each class: a subclass may bring file patterns of its own.
        own_info = getattr(cls.get_info, "__func__", None) is not _BASE_GET_INFO
        cls._names_by_can_convert = cls.file_patterns == Converter.file_patterns and not own_info

    @classmethod
    def get_info(cls) -> ConverterInfo:
        """Name, description, version and patterns of this converter."""
        origin = "built-in" if cls.__module__.startswith("pywats_client.") else (
            f"{cls.__module__}.{cls.__qualname__}"
        )
        return ConverterInfo(
            name=getattr(cls, "name", cls.__name__),
            description=cls.description,
            version=cls.version,
            file_patterns=cls.file_patterns,
            origin=origin,
        )

    def option(self, context: ConverterContext, key: str, default: Any = None) -> Any:
        """A setting for this conversion, looked up in order: the watch folder's converter
        arguments, the arguments this converter was created with, the instance's
        `converters.defaults`, then `default`. Blank values count as absent.

        Keys every built-in understands: part_number, revision, process_code, process_name,
        operator, station_name, sequence_name, sequence_version, encoding, decimal_separator.
        """
        for source in (context.arguments, self.arguments, context.defaults):
            value = source.get(key)
            if value is not None and value != "":
                return value
        return default

    def process_code(self, context: ConverterContext, name: str | None) -> int | None:
        """The code of process `name` (exact name, as WATS compares them), else the
        `process_code` option, else None."""
        if name and name in context.processes:
            return int(context.processes[name])
        default = self.option(context, "process_code")
        if isinstance(default, bool) or default is None:
            return None
        text = str(default).strip()
        # A whole number only: int() would quietly turn 1.5 into 1.
        return int(text) if text.lstrip("+-").isdigit() else None

    def encoding(self, context: ConverterContext) -> str:
        """The text encoding of input files (option `encoding`, e.g. cp1252; default UTF-8)."""
        return str(self.option(context, "encoding", context.encoding or "utf-8"))

    def create_step(self, step: Mapping[str, Any]) -> dict[str, Any]:
        """A WSJF step from a plain dict, for `report.steps.append(self.create_step(...))`.

        Keys: `name` (text) and `value`, whose type decides the step: a number makes a
        numeric limit step (with `low_limit`, `high_limit`, `unit`, `comp_op`; the operator
        follows the limits given when `comp_op` is left out: GELE, GE, LE, or LOG with none),
        a text a string step (with `limit` and `comp_op`), True/False a pass/fail step.
        Optional for every kind: `status` ("P"/"F"/"Passed"/True..., else computed from the
        limits, or the value for pass/fail) and `group` ("Main", "Setup", "Cleanup").
        Any other key is refused with ConversionError, so a misspelt limit is not lost
        quietly.
        """
        return _step_from_dict(step)

    def matching_pattern(self, path: Path) -> str | None:
        """The first of this converter's own file patterns that names `path` (any case);
        None when none does, or when the only match is the catch-all "*"."""
        for pattern in self.get_info().file_patterns:
            if pattern != "*" and fnmatch.fnmatchcase(path.name.lower(), pattern.lower()):
                return pattern
        return None

    def matches(self, path: Path) -> bool:
        """True when the file name matches one of the file patterns (case-insensitive), or,
        for a converter that has a `can_convert()` instead of patterns, when that accepts it."""
        if self._names_by_can_convert:
            return bool(self.can_convert(path))  # type: ignore[attr-defined]
        patterns: tuple[str, ...] | None = getattr(self, "_lower_patterns", None)
        if patterns is None:
            # Asked for every file of an auto-detecting folder, of every converter, while
            # get_info() builds a new answer on each call; the patterns are fixed.
            patterns = tuple(p.lower() for p in self.get_info().file_patterns)
            self._lower_patterns = patterns
        if "*" in patterns:
            return True
        file_name = path.name.lower()
        return any(fnmatch.fnmatchcase(file_name, pattern) for pattern in patterns)

    def detect(self, path: Path, head: bytes) -> float:
        """How sure (0.0..1.0) this converter is that it can read the file.

        `head` is the first bytes of the file (up to 64 KiB). Must be cheap; the default 0.0
        means "no opinion" (the file patterns decide). Override this, or `detect_with_reason`
        when there is something to say about what was recognised; the other follows.
        """
        if type(self).detect_with_reason is not Converter.detect_with_reason:
            return self.detect_with_reason(path, head)[0]
        return 0.0

    def detect_with_reason(self, path: Path, head: bytes) -> tuple[float, str]:
        """`detect()` plus a few words on what was recognised, for logs and the auto-detect
        explanation. The registry calls this and treats an exception as "not mine"."""
        return self.detect(path, head), ""

    def convert(
        self, path: Path, context: ConverterContext
    ) -> dict[str, Any] | list[dict[str, Any]]:
        """Read `path` and return one WSJF report (a dict) or several (a list of dicts).

        A report object with `to_wsjf()` (such as `UUTReport`) may stand in for a dict. A
        subclass may define `convert(self, file_path)` without the context; it is adapted.
        Raise `ConversionError` with a message an operator understands, or
        `IncompleteFileError` when the file looks truncated (still being written).
        """
        raise NotImplementedError(f"converter {type(self).__name__} does not implement convert()")

    def __repr__(self) -> str:
        # Argument names only: values may be paths or credentials of some test system.
        names = ", ".join(sorted(self.arguments))
        return f"<{type(self).__name__} {self.get_info().name!r} arguments=[{names}]>"


BaseConverter = Converter
_BASE_GET_INFO = Converter.get_info.__func__  # type: ignore[attr-defined]


def judges_content(converter: Converter) -> bool:
    """True when `converter` looks at the content (a `detect()`, `detect_with_reason()` or
    `can_convert()` of its own); False for one that only gives file patterns."""
    cls = type(converter)
    return (cls.detect is not Converter.detect
            or cls.detect_with_reason is not Converter.detect_with_reason)


_NUMERIC_STEP_KEYS = frozenset({"low_limit", "high_limit", "unit"})
_STEP_KEYS = frozenset({"name", "value", "status", "group", "comp_op", "limit",
                        *_NUMERIC_STEP_KEYS})


def _step_from_dict(step: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(step, Mapping):
        raise ConversionError(f"create_step() takes a dict with 'name' and 'value', got "
                              f"{type(step).__name__}")
    name = step.get("name")
    where = f"create_step({name!r})" if name is not None else "create_step()"
    unknown = sorted(str(key) for key in step if key not in _STEP_KEYS)
    if unknown:
        raise ConversionError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; "
                              f"accepted: {', '.join(sorted(_STEP_KEYS))}")
    if not isinstance(name, str) or not name.strip():
        raise ConversionError(f"{where}: 'name' must be a non-empty text")
    if "value" not in step or step["value"] is None:
        raise ConversionError(f"{where}: 'value' is missing (a number, a text, or "
                              "True/False)")
    try:
        return _make_step(where, step, name)
    except ValueError as exc:  # a step group word the builders do not know
        raise ConversionError(f"{where}: {exc}") from None


def _make_step(where: str, step: Mapping[str, Any], name: str) -> dict[str, Any]:
    # Imported here: the builder's module imports this one for type checking only.
    from pywats_client.report.builder import numeric_step, pass_fail_step, string_step

    value, status, group = step["value"], step.get("status"), step.get("group") or "M"
    if isinstance(value, bool):
        extra = sorted(k for k in step if k in {"comp_op", "limit", *_NUMERIC_STEP_KEYS})
        if extra:
            raise ConversionError(f"{where}: a pass/fail step (value True/False) takes no "
                                  f"{', '.join(extra)}")
        return pass_fail_step(name, value if status is None else status, group=group)
    if isinstance(value, (int, float)):
        if "limit" in step:
            raise ConversionError(f"{where}: 'limit' is for text values; a number takes "
                                  "low_limit and high_limit")
        return numeric_step(name, value, low=step.get("low_limit"),
                            high=step.get("high_limit"), unit=str(step.get("unit") or ""),
                            comp_op=step.get("comp_op"), status=status, group=group)
    if isinstance(value, str):
        extra = sorted(k for k in step if k in _NUMERIC_STEP_KEYS)
        if extra:
            raise ConversionError(f"{where}: {', '.join(extra)} need a number value, not the "
                                  f"text {value!r}; convert it with float() first")
        return string_step(name, value, limit=step.get("limit"), comp_op=step.get("comp_op"),
                           status=status, group=group)
    raise ConversionError(f"{where}: 'value' must be a number, a text or True/False, not "
                          f"{type(value).__name__}")


def _takes_only_the_path(function: Callable[..., Any]) -> bool:
    """True for `convert(self, file_path)`: exactly one positional parameter after self and
    no *args, so the context cannot be passed to it."""
    try:
        parameters = list(inspect.signature(function).parameters.values())[1:]
    except (TypeError, ValueError):
        return False
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters):
        return False
    positional = [p for p in parameters if p.kind in (
        inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    return len(positional) == 1


def _with_context_ignored(convert: Callable[[Any, Path], Any]) -> Callable[..., Any]:
    def convert_with_context(self: Any, path: Path, context: ConverterContext | None = None
                             ) -> Any:
        return convert(self, path)

    convert_with_context.__name__ = convert.__name__
    convert_with_context.__qualname__ = convert.__qualname__
    convert_with_context.__doc__ = convert.__doc__
    return convert_with_context


def _score_by_can_convert(self: Any, path: Path, head: bytes) -> float:
    return CAN_CONVERT_SCORE if self.can_convert(path) else 0.0


def _detect_by_can_convert(self: Any, path: Path, head: bytes) -> tuple[float, str]:
    score = self.detect(path, head)
    own_words = type(self).detect is _score_by_can_convert  # not a detect() of a subclass
    return score, ("can_convert() accepts it" if score and own_words else "")


def _as_patterns(patterns: str | Iterable[str]) -> tuple[str, ...]:
    if isinstance(patterns, str):
        return (patterns,)
    return tuple(str(pattern) for pattern in patterns)

"""Finding converters: built-ins by name, dotted paths, and `.py` plugins in a folder.

Owns `ConverterRegistry` and the table of built-in converters. Built-ins are imported lazily,
only when chosen; plugin files are loaded once, and a broken plugin is recorded in `errors` and
skipped, never raised. Code loaded for a user can import the pyWATS report names
(`pywats_names`).
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import itertools
import logging
import os
import stat
import sys
import threading
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

from pywats_client.converters import pywats_names
from pywats_client.converters.auto import (
    AUTO_NAME,
    PATTERN_SCORE,
    AIConverter,
    Detection,
    Verdict,
    pick,
)
from pywats_client.converters.base import Converter, ConverterInfo, judges_content
from pywats_client.errors import ConversionError, PluginError

log = logging.getLogger(__name__)

# name -> "module:Class". Strings, so that nothing is imported until the converter is chosen.
BUILTIN_CONVERTERS: dict[str, str] = {
    AUTO_NAME: "pywats_client.converters.auto:AIConverter",
    # The WATS standard formats first: with auto-detect off, the first converter whose file
    # patterns match a name is taken, and these are what most stations write.
    "WATSStandardJsonConverter": "pywats_client.converters.wsjf:WATSStandardJsonConverter",
    "WATSStandardXMLConverter": "pywats_client.converters.wsxf:WATSStandardXMLConverter",
    "WATSStandardTextConverter": "pywats_client.converters.wstf:WATSStandardTextConverter",
    "ATMLConverter": "pywats_client.converters.atml:ATMLConverter",
    "KeysightI3070Converter": "pywats_client.converters.i3070:KeysightI3070Converter",
    "TeradyneICTConverter": "pywats_client.converters.teradyne_gr228x:TeradyneICTConverter",
    "TeradyneSpectrumICTConverter":
        "pywats_client.converters.teradyne_spectrum:TeradyneSpectrumICTConverter",
    "SPEAConverter": "pywats_client.converters.spea:SPEAConverter",
    "SeicaXMLConverter": "pywats_client.converters.seica:SeicaXMLConverter",
    "KlippelConverter": "pywats_client.converters.klippel:KlippelConverter",
    "XJTAGConverter": "pywats_client.converters.xjtag:XJTAGConverter",
}

# The highest score each built-in's detect() gives. A converter that cannot reach the best
# score already found is not asked (it could neither win nor tie), so a file that its format's
# converter is sure of is not read by the others: GR228x's case-insensitive scan of the head
# alone cost more than recognising a WSJF report. Converters not listed (plugins) may give
# anything, and are always asked. tests/test_detection.py holds every built-in to its
# ceiling on the samples; a score above it (a detector changed, this table not) makes the
# choice ask every converter, as if there were no table.
DETECT_CEILINGS: dict[str, float] = {
    "WATSStandardJsonConverter": 0.98,
    "WATSStandardXMLConverter": 0.98,
    "WATSStandardTextConverter": 0.99,
    "ATMLConverter": 0.98,
    "KeysightI3070Converter": 0.95,
    "TeradyneICTConverter": 0.95,
    "TeradyneSpectrumICTConverter": 0.95,
    "SPEAConverter": 0.95,
    "SeicaXMLConverter": 0.95,
    "KlippelConverter": 0.99,
    "XJTAGConverter": 0.99,
}

# Plugin modules get private names so that two files called `csv.py` in different instances,
# or a plugin named like a stdlib module, never collide or shadow anything.
_PLUGIN_MODULE_PREFIX = "_pywats_converter_plugin_"
_plugin_counter = itertools.count(1)


class ConverterRegistry:
    """The converters one instance may use, and the choice of one for a file.

    Safe to share between the conversion workers: plugin files are loaded in the constructor,
    and later lookups only read (or fill a cache under a lock).
    """

    def __init__(self, *, enabled: Sequence[str] = (), plugin_dir: Path | None = None) -> None:
        """`enabled` empty: every built-in and plugin; otherwise only those names, in order.

        `enabled` restricts what `choose()` may pick for a folder without a converter; a
        converter named explicitly in `create()` is always available. Unknown names in
        `enabled` are recorded in `errors` (not raised) so the service still starts.
        """
        self.errors: list[PluginError] = []
        self._plugins: dict[str, tuple[type[Converter], Path]] = {}
        self._classes: dict[str, type[Converter]] = {}
        self._origins: dict[str, str] = {}
        self._detectors: dict[str, Converter] = {}
        self._enabled_cache: list[tuple[str, Converter, float]] | None = None
        self._lock = threading.Lock()
        self.plugin_dir = plugin_dir
        if plugin_dir is not None:
            self._load_plugin_dir(plugin_dir)
        self._enabled: list[str] = []
        for name in enabled:
            if name in self._enabled:
                continue
            if name in BUILTIN_CONVERTERS or name in self._plugins:
                self._enabled.append(name)
                continue
            try:
                cls = self._resolve(name)
            except PluginError as exc:
                self._record(PluginError(f"converters.enabled: {exc}"))
                continue
            plugin_name = next((n for n, (c, _) in self._plugins.items() if c is cls), None)
            if plugin_name is not None:  # a plugin given by class name or file.Class
                if plugin_name not in self._enabled:
                    self._enabled.append(plugin_name)
                continue
            self._enabled.append(name)
            self._origins.setdefault(name, name)
            self._classes.setdefault(name, cls)

    # -- what is there ---------------------------------------------------------------------

    def names(self) -> list[str]:
        """Every loadable converter name: built-ins, then plugins (file order), then paths."""
        names = [n for n in BUILTIN_CONVERTERS if n != AUTO_NAME] + list(self._plugins)
        names.extend(name for name in self._enabled if name not in names)
        return [*names, AUTO_NAME]  # the chooser last: it is not a format of its own

    @property
    def enabled(self) -> list[str]:
        """The names `choose()` considers, in the order it considers them."""
        return list(self._enabled) if self._enabled else self.names()

    def info(self) -> list[ConverterInfo]:
        """`ConverterInfo` of every loadable converter (imports the built-ins)."""
        infos = []
        for name in self.names():
            try:
                cls = self._class_for(name)
            except PluginError as exc:
                self._record(exc)
                continue
            infos.append(replace(cls.get_info(), origin=self._origin_of(name)))
        return infos

    # -- getting one ---------------------------------------------------------------------------

    def create(self, name: str, arguments: Mapping[str, Any] | None = None) -> Converter:
        """A new converter for `name` with the config `arguments`.

        `name` is a built-in name, a plugin converter name (or class name), or a dotted path
        "pkg.module.Class" / "pkg.module:Class". Raises `PluginError` naming what is wrong.
        """
        cls = self._class_for(name)
        try:
            if issubclass(cls, AIConverter):
                return cls(registry=self, **dict(arguments or {}))
            return cls(**dict(arguments or {}))
        except Exception as exc:
            keys = ", ".join(sorted(arguments or {})) or "none"
            raise PluginError(
                f"converter {name} rejected its arguments ({keys}): "
                f"{type(exc).__name__}: {exc}; check the watch folder's converter arguments"
            ) from exc

    def problem(self, name: str, arguments: Mapping[str, Any] | None = None) -> str | None:
        """Why the converter `name` cannot be used with `arguments` (naming the close names
        for a typo), or None when it loads: what `config add-watch-folder`, `doctor` and
        `status` say of a folder bound to it."""
        try:
            self.create(name, arguments)
        except PluginError as exc:
            known = self.names()
            if "." in name or ":" in name or name in known:
                return str(exc)
            close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
            hint = f" (did you mean {' or '.join(close)}?)" if close else ""
            where = f", nor a plugin in {self.plugin_dir}" if self.plugin_dir else ""
            return (f"unknown converter {name!r}{hint}: not a built-in converter{where}, nor a "
                    f"dotted path such as package.module.Class; known: {', '.join(known)}")
        return None

    def detect(self, path: Path, head: bytes) -> Detection:
        """Choose by content: every enabled converter scores the file, the surest wins.

        A converter that only gives file patterns (no `detect()` or `can_convert()` of its
        own) scores PATTERN_SCORE when one of them names the file: below every converter that
        recognises the content. Otherwise the file name only breaks a tie (a converter whose
        patterns match goes first). Nobody sure, or a tie left, raises ConversionError
        listing every answer. A built-in whose highest score (DETECT_CEILINGS) is below the
        best one found already is not asked: it could change nothing but the list of answers
        in `Detection.verdicts`, and an error, which lists every answer, asks it after all.
        """
        detectors = self._enabled_detectors()
        verdicts: list[Verdict] = []
        converters: dict[str, Converter] = {}
        best, skipped, overshot = 0.0, False, False
        for name, converter, ceiling in detectors:
            if ceiling < best:
                skipped = True
                continue
            verdict = _verdict(name, converter, path, head)
            verdicts.append(verdict)
            converters[name] = converter
            best = max(best, verdict.score)
            overshot = overshot or verdict.score > ceiling
        if skipped and overshot:  # a ceiling is wrong: nothing may be skipped
            return self._detect_all(path, head, detectors)
        try:
            winner = pick(path, verdicts)
        except ConversionError:
            if not skipped:
                raise
            return self._detect_all(path, head, detectors)  # raises, naming every answer
        return _detection(winner, converters, verdicts)

    def _detect_all(self, path: Path, head: bytes,
                    detectors: list[tuple[str, Converter, float]]) -> Detection:
        verdicts = [_verdict(name, converter, path, head) for name, converter, _ in detectors]
        converters = {name: converter for name, converter, _ in detectors}
        return _detection(pick(path, verdicts), converters, verdicts)

    def _enabled_detectors(self) -> list[tuple[str, Converter, float]]:
        """The enabled converters that can be asked, in order, with their ceilings. Kept once
        every one could be created (a converter that fails is tried again each time)."""
        found = self._enabled_cache
        if found is not None:
            return found
        found, complete = [], True
        for name in self.enabled:
            if name == AUTO_NAME:
                continue
            converter = self._detector(name)
            if converter is None:
                complete = False
                continue
            ceiling = DETECT_CEILINGS.get(name, 1.0) if name in BUILTIN_CONVERTERS else 1.0
            found.append((name, converter, ceiling))
        if complete:
            self._enabled_cache = found
        return found

    def choose(
        self, path: Path, head: bytes, *, auto_detect: bool
    ) -> tuple[Converter, str] | None:
        """Pick a converter for a file in a folder that has none bound.

        With `auto_detect`, by content (`detect()`, which raises when nobody recognises the
        file or the best are tied). Without it, the first enabled converter whose file
        patterns match the name, or None.
        """
        if auto_detect:
            detection = self.detect(path, head)
            return detection.converter, detection.reason
        for name in self.enabled:
            converter = self._detector(name)
            if name != AUTO_NAME and converter is not None and _safe_matches(converter, path):
                return converter, (f"{name}: first enabled converter whose file patterns "
                                   f"match {path.name!r} (auto-detect is off)")
        return None

    # -- resolution ----------------------------------------------------------------------------

    def _class_for(self, name: str) -> type[Converter]:
        with self._lock:
            cached = self._classes.get(name)
        if cached is not None:
            return cached
        if name in self._plugins:
            return self._plugins[name][0]
        cls = self._resolve(name)
        with self._lock:
            self._classes.setdefault(name, cls)
        return cls

    def _resolve(self, name: str) -> type[Converter]:
        target = BUILTIN_CONVERTERS.get(name)
        if target is not None:
            return _import_class(target, name)
        by_class_name = [cls for cls, _ in self._plugins.values() if cls.__name__ == name]
        if len(by_class_name) == 1:
            return by_class_name[0]
        if "." in name or ":" in name:
            # "converters.my_file.MyClass", as older configs name a file in the plugin folder.
            plugin = self._plugin_by_path(name)
            return plugin if plugin is not None else _import_class(name, name)
        known = self.names()
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise PluginError(
            f"unknown converter {name!r}; known: {', '.join(known) or 'none'}{hint} "
            "(or give a dotted path like package.module.Class)"
        )

    def _plugin_by_path(self, dotted: str) -> type[Converter] | None:
        parts = dotted.replace(":", ".").split(".")
        if len(parts) < 2:
            return None
        stem, class_name = parts[-2], parts[-1]
        for cls, file in self._plugins.values():
            if file.stem == stem and cls.__name__ == class_name:
                return cls
        return None

    def _origin_of(self, name: str) -> str:
        if name in BUILTIN_CONVERTERS:
            return "built-in"
        if name in self._plugins:
            return str(self._plugins[name][1])
        return self._origins.get(name, name)

    def _detector(self, name: str) -> Converter | None:
        """A shared instance (no arguments) used only for matches() and detect()."""
        with self._lock:
            converter = self._detectors.get(name)
        if converter is not None:
            return converter
        try:
            converter = self.create(name)
        except PluginError as exc:
            self._record(exc)
            return None
        with self._lock:
            return self._detectors.setdefault(name, converter)

    def _record(self, error: PluginError) -> None:
        with self._lock:
            if any(str(known) == str(error) for known in self.errors):
                return
            self.errors.append(error)
        log.warning("%s", error)

    # -- plugin files ----------------------------------------------------------------------------

    def _load_plugin_dir(self, folder: Path) -> None:
        try:
            files = sorted(
                entry for entry in folder.iterdir()
                if entry.suffix == ".py" and not entry.name.startswith(("_", "."))
                and entry.is_file()
            )
        except FileNotFoundError:
            return  # no plugin folder: nothing to load, not an error
        except OSError as exc:
            self._record(PluginError(f"cannot read the converter folder {folder}: {exc}"))
            return
        unsafe = _unsafe_to_run(folder)
        if unsafe:
            self._record(PluginError(unsafe))
            return
        for file in files:
            source = _read_plugin(file)
            if isinstance(source, str):
                self._record(PluginError(source))
                continue
            self._load_plugin_file(file, source)

    def _load_plugin_file(self, file: Path, source: bytes) -> None:
        module = _exec_plugin(file, source)
        if isinstance(module, PluginError):
            self._record(module)
            return
        for cls in _converter_classes(module):
            try:
                name = cls.get_info().name
            except Exception as exc:
                self._record(PluginError(
                    f"converter plugin {file}: class {cls.__name__}: get_info() failed: {exc}; "
                    "the class was skipped"
                ))
                continue
            if name in BUILTIN_CONVERTERS or name in self._plugins:
                first = "a built-in converter" if name in BUILTIN_CONVERTERS else (
                    str(self._plugins[name][1])
                )
                self._record(PluginError(
                    f"converter plugin {file}: class {cls.__name__}: the name {name!r} is "
                    f"already used by {first}; give the class another `name`. It was skipped"
                ))
                continue
            if "name" not in vars(cls):
                cls.name = name  # get_info()-only plugins: callers read `converter.name`
            self._plugins[name] = (cls, file)
            log.debug("loaded converter %s from %s", name, file)


def _exec_plugin(file: Path, source: bytes) -> ModuleType | PluginError:
    """Run one plugin's `source` (read from the checked file) as a module under a private
    name; errors are returned, not raised."""
    pywats_names.install()
    module_name = f"{_PLUGIN_MODULE_PREFIX}{next(_plugin_counter)}_{_identifier(file.stem)}"
    try:
        spec = importlib.util.spec_from_loader(module_name, loader=None, origin=str(file))
        if spec is None:
            return PluginError(f"converter plugin {file}: cannot be loaded as a Python module")
        module = importlib.util.module_from_spec(spec)
        module.__file__ = str(file)
        # Registered before running it: dataclasses and typing look their module up by name.
        sys.modules[module_name] = module
        exec(compile(source, str(file), "exec", dont_inherit=True), module.__dict__)
    except KeyboardInterrupt:
        sys.modules.pop(module_name, None)
        raise  # the operator's, not the plugin's
    except (Exception, SystemExit) as exc:
        # SystemExit too: a script dropped into the folder must not end the service.
        sys.modules.pop(module_name, None)
        return PluginError(
            f"converter plugin {file}: {_where(exc, file)}{type(exc).__name__}: "
            f"{_message(exc)}; the file was skipped, fix it and restart"
        )
    return module


def _converter_classes(module: ModuleType) -> list[type[Converter]]:
    """Converter classes defined (not imported) in `module` that set a name of their own."""
    found = []
    for obj in vars(module).values():
        if (
            isinstance(obj, type)
            and issubclass(obj, Converter)
            and obj.__module__ == module.__name__
            and ("name" in vars(obj) or "get_info" in vars(obj))
        ):
            found.append(obj)
    return found


def _import_class(target: str, name: str) -> type[Converter]:
    module_name, sep, class_name = target.partition(":")
    if not sep:
        module_name, _, class_name = target.rpartition(".")
    if not module_name or not class_name:
        raise PluginError(f"converter {name!r}: expected package.module.Class, got {target!r}")
    if not module_name.startswith("pywats_client."):
        pywats_names.install()  # a user's package, written for pyWATS perhaps
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise PluginError(
            f"converter {name!r}: cannot import module {module_name!r}: "
            f"{type(exc).__name__}: {_message(exc)}"
        ) from exc
    cls = getattr(module, class_name, None)
    if cls is None:
        raise PluginError(
            f"converter {name!r}: module {module_name!r} ({getattr(module, '__file__', '?')}) "
            f"has no class {class_name!r}"
        )
    if not (isinstance(cls, type) and issubclass(cls, Converter)):
        raise PluginError(
            f"converter {name!r}: {module_name}.{class_name} is not a converter class "
            "(it must subclass pywats_client.converters.Converter)"
        )
    return cls


def _read_plugin(file: Path) -> bytes | str:
    """The source of plugin `file`, read through the very descriptor whose owner and mode were
    checked, so the code run is the code checked; or why it must not run. A plugin that is a
    symbolic link is run only if the folder holding its target passes the same check (whoever
    may write there could replace the target)."""
    try:
        fd = os.open(file, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        return f"cannot check converter plugin {file}: {exc}"
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return f"refusing converter plugin {file}: it is not a regular file"
        unsafe = _unsafe_stat(file, st, "file")
        if not unsafe and os.path.islink(file):
            target = Path(os.path.realpath(file)).parent
            unsafe = _unsafe_to_run(target)
            if unsafe:
                unsafe += f" (it holds the file {file} links to)"
        if unsafe:
            return unsafe
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as exc:
        return f"cannot read converter plugin {file}: {exc}"
    finally:
        os.close(fd)


def _unsafe_to_run(path: Path) -> str:
    """Why code at `path` must not be run ("" if it may): a plugin runs with the service's
    rights, so a file or folder that another user can change is a way into the station."""
    try:
        st = path.stat()
    except OSError as exc:
        return f"cannot check converter plugin {path}: {exc}"
    return _unsafe_stat(path, st, "folder" if stat.S_ISDIR(st.st_mode) else "file")


def _unsafe_stat(path: Path, st: os.stat_result, kind: str) -> str:
    if st.st_mode & 0o022:
        return (f"refusing converter plugins from {path}: the {kind} is writable by other "
                f"users (mode {st.st_mode & 0o777:o}). Fix: chmod go-w '{path}'")
    if st.st_uid not in (os.geteuid(), 0):
        return (f"refusing converter plugins from {path}: the {kind} belongs to another user "
                f"(uid {st.st_uid}). Fix: chown it to the user the service runs as, or root")
    return ""


def _verdict(name: str, converter: Converter, path: Path, head: bytes) -> Verdict:
    score, why = _safe_detect(converter, path, head)
    named = _safe_matches(converter, path)
    if score == 0.0 and named and not judges_content(converter):
        pattern = _safe_pattern(converter, path)
        if pattern is not None:
            score, why = PATTERN_SCORE, f"file name matches {pattern} (no content check)"
    return Verdict(name, score, why, named)


def _detection(best: Verdict, converters: Mapping[str, Converter], verdicts: list[Verdict]
               ) -> Detection:
    reason = f"{best.name}: detect {best.score:.2f}" + (f", {best.why}" if best.why else "")
    return Detection(converters[best.name], best.name, reason, tuple(verdicts))


def _safe_matches(converter: Converter, path: Path) -> bool:
    try:
        return bool(converter.matches(path))
    except Exception:
        log.warning("converter %r failed in matches(%s); skipped", converter, path, exc_info=True)
        return False


def _safe_pattern(converter: Converter, path: Path) -> str | None:
    try:
        return converter.matching_pattern(path)
    except Exception:
        log.warning("converter %r failed in get_info(); its file patterns are not used",
                    converter, exc_info=True)
        return None


def _safe_detect(converter: Converter, path: Path, head: bytes) -> tuple[float, str]:
    # detect() of a plugin is untrusted: a crash or a silly value must not stop the choice.
    try:
        score, why = converter.detect_with_reason(path, head)
        score = float(score)
    except Exception:
        log.warning("converter %r failed in detect(%s); taken as 0", converter, path,
                    exc_info=True)
        return 0.0, ""
    if score != score:  # NaN
        return 0.0, ""
    return min(max(score, 0.0), 1.0), str(why or "")


def _where(exc: BaseException, file: Path) -> str:
    """'line N (`source`): ' for the deepest frame of the traceback inside `file`."""
    if isinstance(exc, SyntaxError) and exc.lineno:
        text = (exc.text or "").strip()
        other = exc.filename and not _same_file(exc.filename, file)
        return (f"{exc.filename} " if other else "") + f"line {exc.lineno}" + (
            f" ({text})" if text else ""
        ) + ": "
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if _same_file(f.filename, file)]
    if not frames:
        return ""
    frame = frames[-1]
    return f"line {frame.lineno}" + (f" ({frame.line.strip()})" if frame.line else "") + ": "


def _same_file(name: str, file: Path) -> bool:
    try:
        return Path(name).resolve() == file.resolve()
    except OSError:
        return False


def _message(exc: BaseException) -> str:
    if isinstance(exc, SyntaxError):
        return exc.msg
    return str(exc)


def _identifier(stem: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in stem)

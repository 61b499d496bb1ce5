"""The `pywats` module names that converters written for pyWATS import, answered with this
client's report builder when the real `pywats` package is not installed.

`install()` (called by the plugin loader) appends a finder to `sys.meta_path`. Being last, it
is asked only about names no installed package provides, so a real `pywats` always wins; and
it never adds modules to a real `pywats`. No top-level `pywats` package is shipped.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import threading
from collections.abc import Sequence
from types import ModuleType

# Module name -> (module whose names it offers, the names). Packages offer nothing of their
# own; they only hold the modules below them.
_BUILDER = "pywats_client.report.builder"
_REPORTS = ("UUTReport", "UURReport")
_MODULES: dict[str, tuple[str, tuple[str, ...]] | None] = {
    "pywats": None,
    "pywats.report": (_BUILDER, (*_REPORTS, "Sequence", "numeric_step", "pass_fail_step",
                                 "string_step", "sequence_step", "chart_step",
                                 "attachment_step")),
    "pywats.models": (_BUILDER, _REPORTS),
    "pywats.domains": None,
    "pywats.domains.report": None,
    "pywats.domains.report.report_models": (_BUILDER, _REPORTS),
}
# Set on every module this finder makes, so that it can tell them from a real pywats.
MARK = "__pywats_client_stand_in__"

_lock = threading.Lock()


class _StandInFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds and loads the stand-in `pywats` modules."""

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in _MODULES:
            return None
        if fullname != "pywats" and not getattr(sys.modules.get("pywats"), MARK, False):
            return None  # a real pywats is imported: its own modules, or none
        return importlib.machinery.ModuleSpec(fullname, self,
                                              is_package=_MODULES[fullname] is None)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None  # the default module object

    def exec_module(self, module: ModuleType) -> None:
        setattr(module, MARK, True)
        offered = _MODULES[module.__name__]
        if offered is None:
            module.__doc__ = ("pywats-client's stand-in for pyWATS (not installed): only the "
                              "report builder modules that converters import")
            return
        source, names = offered
        target = importlib.import_module(source)
        module.__doc__ = (f"pywats-client's stand-in for {module.__name__}: "
                          f"{', '.join(names)} from {source}")
        for name in names:
            setattr(module, name, getattr(target, name))
        module.__all__ = list(names)  # type: ignore[attr-defined]


_FINDER = _StandInFinder()


def install() -> None:
    """Make the stand-in names importable (once per process; a real pywats still wins)."""
    with _lock:
        if not any(isinstance(finder, _StandInFinder) for finder in sys.meta_path):
            sys.meta_path.append(_FINDER)

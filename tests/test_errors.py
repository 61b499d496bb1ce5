"""The exception tree holds only errors the client raises: each class in errors.py is raised
somewhere in the package, and all of them derive from PyWATSClientError."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

from pywats_client import errors

PACKAGE = Path(errors.__file__).parent


def _raised_names() -> set[str]:
    names: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                func = node.exc.func
                if isinstance(func, ast.Name):
                    names.add(func.id)
                elif isinstance(func, ast.Attribute):
                    names.add(func.attr)
    return names


def _error_classes() -> list[type[BaseException]]:
    return [cls for _, cls in inspect.getmembers(errors, inspect.isclass)
            if cls.__module__ == errors.__name__]


def test_every_error_class_is_raised_somewhere() -> None:
    raised = _raised_names()
    never = sorted(cls.__name__ for cls in _error_classes() if cls.__name__ not in raised)
    assert never == [], f"errors.py classes nothing raises: {never}"


def test_every_error_derives_from_the_root() -> None:
    classes = _error_classes()
    assert len(classes) >= 10
    assert all(issubclass(cls, errors.PyWATSClientError) for cls in classes)

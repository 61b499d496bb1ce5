"""A converter plugin that misbehaves on cue, for the tests of the service's life cycle: it
converts WSJF JSON files, kills the process on a file named `poison*` (as a segfault in a C
extension would), hangs on a file named `stuck*` until a release file appears, and converts a
file named `together*` only while five others of them are being converted too (as files on a
slow share are read side by side)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PLUGIN = '''
import json
import os
import threading
from pathlib import Path

from pywats_client.converters import ConversionError, Converter

# Six `together*` files must be in their converters at the same time.
_TOGETHER = threading.Barrier(6, timeout=30)


class LifeTestConverter(Converter):
    name = "LifeTestConverter"
    description = "WSJF JSON, with a file that kills the process and one that hangs"
    file_patterns = ("*.json",)

    def convert(self, path, context):
        marks = Path(context.arguments["marks"])
        if path.name.startswith("poison"):
            with open(marks / "deaths", "a") as fh:
                fh.write(path.name + "\\n")
            os._exit(1)
        if path.name.startswith("stuck"):
            (marks / f"started-{path.name}").touch()
            pause = threading.Event()
            while not (marks / "release").exists():
                pause.wait(0.05)
        if path.name.startswith("together"):
            try:
                _TOGETHER.wait()
            except threading.BrokenBarrierError:
                raise ConversionError(f"{path.name}: fewer than six files were converted at "
                                      "once") from None
        return json.loads(path.read_bytes())
'''


def install_plugin(instance: Path, marks: Path) -> dict[str, Any]:
    """Put the plugin into the instance's converters/ folder and return the watch folder
    arguments it reads (`marks`: where it leaves its marks and looks for `release`)."""
    folder = instance / "converters"
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)
    (folder / "lifetest.py").write_text(PLUGIN, encoding="utf-8")
    marks.mkdir(parents=True, exist_ok=True)
    return {"marks": str(marks)}


def bound_folder(path: Path, marks: Path, **more: Any) -> dict[str, Any]:
    """A watch folder entry that converts every file with the plugin."""
    return {"path": str(path), "converter": "LifeTestConverter",
            "arguments": {"marks": str(marks)}, **more}


def deaths(marks: Path) -> list[str]:
    """The files the plugin killed the process on, in order."""
    try:
        return (marks / "deaths").read_text().split()
    except FileNotFoundError:
        return []


def report_json(report: dict[str, Any]) -> bytes:
    return json.dumps(report).encode()

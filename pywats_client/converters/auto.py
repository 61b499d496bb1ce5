"""Auto-detection: choose the converter for a file by its content, and say why.

Every enabled converter is asked how sure it is (`detect()` on the first 64 KiB); one that
only gives file patterns scores PATTERN_SCORE when a pattern names the file, and otherwise the
file name only breaks ties. A file nobody recognises, or two converters equally sure,
is an error that lists what was tried — never a guess. `AIConverter` is the converter users
name in a config for this behaviour (the name the product has always used); a watch folder
with no converter bound gets the same choice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pywats_client.converters.base import HEAD_SIZE, Converter, ConverterContext
from pywats_client.errors import ConversionError, IncompleteFileError

if TYPE_CHECKING:
    from pywats_client.converters.registry import ConverterRegistry

log = logging.getLogger(__name__)

AUTO_NAME = "AIConverter"
# The score of a converter that has no content check of its own (only file patterns) for a
# file one of its patterns names: enough to be chosen, yet below every built-in that
# recognises the content (0.3 and up), and above a built-in's "it is JSON, not mine" (0.05).
PATTERN_SCORE = 0.25


@dataclass(frozen=True)
class Verdict:
    """One converter's answer to "can you read this file?"."""

    name: str
    score: float
    why: str
    pattern_match: bool

    def describe(self) -> str:
        because = f": {self.why}" if self.why else ""
        return f"{self.name} {self.score:.2f}{because}"


@dataclass(frozen=True)
class Detection:
    """The converter chosen for a file, why, and every answer that was weighed."""

    converter: Converter
    name: str
    reason: str
    verdicts: tuple[Verdict, ...]


class NotRecognised(ConversionError):
    """No enabled converter recognises the file's content; `verdicts` are their answers."""

    def __init__(self, message: str, verdicts: tuple[Verdict, ...] = ()) -> None:
        super().__init__(message)
        self.verdicts = verdicts


def pick(path: Path, verdicts: list[Verdict]) -> Verdict:
    """The winning verdict; NotRecognised when nobody is sure, ConversionError when the best
    are tied."""
    ranked = sorted(verdicts, key=lambda v: (v.score, v.pattern_match), reverse=True)
    if not ranked or ranked[0].score <= 0.0:
        raise NotRecognised(
            f"{path.name}: no converter recognises this file (tried: {_tried(ranked)}). If it "
            "is a known format, bind its converter to the folder with 'pywats-client config "
            "add-watch-folder FOLDER --converter NAME'; otherwise write a converter plugin.",
            tuple(verdicts),
        )
    best = ranked[0]
    rivals = [v for v in ranked[1:]
              if (v.score, v.pattern_match) == (best.score, best.pattern_match)]
    if rivals:
        names = ", ".join([best.name, *(v.name for v in rivals)])
        raise ConversionError(
            f"{path.name}: ambiguous, {names} are equally sure they can read it (tried: "
            f"{_tried(ranked)}). Bind the right one to the folder with 'pywats-client config "
            "add-watch-folder FOLDER --converter NAME'."
        )
    return best


def _tried(ranked: list[Verdict]) -> str:
    return "; ".join(v.describe() for v in ranked) or "no converter is enabled"


class AIConverter(Converter):
    """Converts a file with whichever registered converter recognises its content best."""

    name = AUTO_NAME
    description = "chooses the converter by file content (built-ins and plugins) and says why"
    version = "1.0"
    file_patterns = ("*",)

    def __init__(self, registry: ConverterRegistry | None = None, **arguments: Any) -> None:
        super().__init__(**arguments)
        self.registry = registry

    def convert(self, path: Path, context: ConverterContext) -> dict[str, Any] | list[
            dict[str, Any]]:
        if self.registry is None:
            raise ConversionError("AIConverter needs the converter registry to choose from")
        with open(path, "rb") as fh:
            head = fh.read(HEAD_SIZE)
        try:
            detection = self.registry.detect(path, head)
        except NotRecognised as exc:
            raise incomplete_or(self.registry, path, head, exc, context) from None
        log.info("%s: %s", path.name, detection.reason)
        return detection.converter.convert(path, context)


def incomplete_or(registry: ConverterRegistry, path: Path, head: bytes, error: NotRecognised,
                  context: ConverterContext | None = None) -> ConversionError:
    """`error`, or IncompleteFileError when the file may be the beginning of one that a
    converter reads: a file is recognised by its first bytes, and a writer that closes the
    file between lines may have written only an XML declaration or half a first line yet.

    Only a file that detection saw whole (`head` shorter than HEAD_SIZE) can be that. The
    converters whose file patterns name it are asked to read it; the first that says it is
    incomplete gives the answer. A file no pattern names is an error at once: converters
    are lenient with what they cannot read yet, and junk must not wait for nothing."""
    if len(head) >= HEAD_SIZE:
        return error
    for name in [v.name for v in error.verdicts if v.pattern_match]:
        try:
            registry.create(name).convert(path, context or ConverterContext())
        except IncompleteFileError as exc:
            return IncompleteFileError(
                f"{path.name}: no converter recognises it yet, and {name} says it is "
                f"incomplete: {exc}"
            )
        except Exception:  # any other answer means "not the start of one of mine"
            continue
    return error

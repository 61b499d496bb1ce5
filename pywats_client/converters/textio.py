"""Reading the input files of the built-in converters: the size cap and the decoding rule.

Owns `check_size()` and `read_bytes()` (a file over its format's cap is refused before it is
read; an unreadable one is named; the file being converted is served from the bytes the
pipeline read, `preloaded()`), `decode()`, the one way the text converters turn bytes
into text (a byte order mark is the file's own word; else the configured encoding, strictly;
else UTF-8; else cp1252, the code page Windows test stations write), and `reading()`, a
measured value as testers print it. Every converter says the same thing about the same
problem. Depends only on `errors` and the stdlib.
"""

from __future__ import annotations

import codecs
import contextlib
import math
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path

from pywats_client.errors import ConversionError, IncompleteFileError

MB = 1024 * 1024
# The usual reason a file is far over a format's cap.
CHECK_SOURCE = "check that the equipment writes the right file into this folder"
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,4})?")
# How C runtimes print what is not a number: nan, -NAN, inf, 1.#INF, -1.#IND, 1.#QNAN ...
_NOT_FINITE = re.compile(r"[+-]?(?:nan|inf(?:inity)?|1\.#(?:inf|ind|qnan|snan)0*)",
                         re.IGNORECASE)
# UTF-32 first: its little-endian mark starts with UTF-16's.
_preloaded = threading.local()  # (path, bytes) of the file being converted (`preloaded`)
_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF32_LE, "utf-32"),
         (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF16_LE, "utf-16"),
         (codecs.BOM_UTF16_BE, "utf-16"))


def check_size(path: Path, limit: int, kind: str, *, what: str = "file",
               hint: str = CHECK_SOURCE, missing_is_incomplete: bool = False) -> int:
    """The size of `path`; ConversionError when it is over `limit` bytes ("the file is 250 MB;
    WSXF files over 200 MB are refused (hint)") or cannot be read. `kind` names the format,
    `what` the file's role. With `missing_is_incomplete`, a file that is not there (yet)
    raises IncompleteFileError: it belongs to a unit still being written."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise _unreadable(path, what, exc, missing_is_incomplete) from exc
    _refuse_over(path, size, limit, kind, what, hint)
    return size


@contextlib.contextmanager
def preloaded(path: Path, data: bytes) -> Iterator[None]:
    """While it lasts, `read_bytes(path)` on this thread returns `data` (the bytes the pipeline
    read, checked and hashed) instead of reading the file again."""
    _preloaded.item = (path, data)
    try:
        yield
    finally:
        _preloaded.item = None


def read_bytes(path: Path, limit: int, kind: str, *, what: str = "file",
               hint: str = CHECK_SOURCE, missing_is_incomplete: bool = False) -> bytes:
    """The bytes of `path`, refused unread when over `limit` (see `check_size`)."""
    item: tuple[Path, bytes] | None = getattr(_preloaded, "item", None)
    if item is not None and item[0] == path:
        _refuse_over(path, len(item[1]), limit, kind, what, hint)
        return item[1]
    try:
        # Unbuffered, and sized through the open file: one open, no separate stat, no
        # buffered-reader seeks (a station reads thousands of small files in a backlog).
        with open(path, "rb", buffering=0) as fh:
            _refuse_over(path, os.fstat(fh.fileno()).st_size, limit, kind, what, hint)
            return fh.readall()
    except OSError as exc:
        raise _unreadable(path, what, exc, missing_is_incomplete) from exc


def _refuse_over(path: Path, size: int, limit: int, kind: str, what: str, hint: str) -> None:
    if size > limit:
        raise ConversionError(
            f"{path}: the {what} is {_size(size)}; {kind} {what}s over {_size(limit)} are "
            f"refused ({hint})"
        )


def read_text(path: Path, limit: int, kind: str, encoding: str | None, *,
              hint: str = CHECK_SOURCE) -> str:
    """`read_bytes()` then `decode()`."""
    return decode(read_bytes(path, limit, kind, hint=hint), path, encoding)


def decode(data: bytes, path: Path | str, encoding: str | None) -> str:
    """The text of a file's bytes, by the rule of every built-in converter:

    * a byte order mark (UTF-8, UTF-16, UTF-32) is the file's own word and wins;
    * else the configured `encoding`, strictly: a byte it cannot read is a ConversionError
      naming the line, and an unknown encoding name is one too;
    * else UTF-8, and a file that is not UTF-8 is read as cp1252 (the ANSI code page of
      Windows testers; its five unused bytes become U+FFFD).

    A file that ends in the middle of a character raises IncompleteFileError (still being
    written). A leading U+FEFF is dropped.
    """
    codec = next((name for bom, name in _BOMS if data.startswith(bom)), None) or encoding
    if codec is None:
        try:
            return data.decode("utf-8").removeprefix("\ufeff")
        except UnicodeDecodeError as exc:
            _raise_if_cut(exc, data, path)
            return data.decode("cp1252", errors="replace")
    try:
        return data.decode(codec).removeprefix("\ufeff")
    except LookupError:
        raise ConversionError(
            f"{path}: unknown encoding {codec!r} in the watch folder's settings; use a Python "
            "codec name such as utf-8 or cp1252"
        ) from None
    except UnicodeDecodeError as exc:
        _raise_if_cut(exc, data, path)
        line = data[:exc.start].decode(codec, errors="replace").count("\n") + 1
        raise ConversionError(
            f"{path}: line {line} is not valid {codec} (byte {exc.start}); set the watch "
            "folder's encoding to the one the equipment writes (e.g. cp1252), or save the "
            "file as UTF-8"
        ) from None


def reading(text: str) -> tuple[str, float | None]:
    """A measured value as a tester prints it: ("number", value) for a finite number ("." or
    "," decimals), ("not finite", None) for NaN, infinities and numbers too large for a
    double, ("text", None) for anything else (including "")."""
    text = text.strip()
    if "," in text and "." not in text:
        text = text.replace(",", ".", 1)
    if _NUMBER.fullmatch(text):
        value = float(text)
        return ("number", value) if math.isfinite(value) else ("not finite", None)
    if _NOT_FINITE.fullmatch(text):
        return "not finite", None
    return "text", None


def _raise_if_cut(exc: UnicodeDecodeError, data: bytes, path: Path | str) -> None:
    if exc.reason in ("unexpected end of data", "truncated data") and exc.end >= len(data):
        raise IncompleteFileError(
            f"{path}: the file ends in the middle of a character (still being written?)"
        ) from None


def _unreadable(path: Path, what: str, exc: OSError, missing_is_incomplete: bool
                ) -> ConversionError:
    if missing_is_incomplete and isinstance(exc, FileNotFoundError):
        return IncompleteFileError(f"{path}: the {what} is not there (yet)")
    return ConversionError(f"{path}: cannot read the {what}: {exc.strerror or exc}")


def _size(count: int) -> str:
    if count >= MB:
        return f"{count / MB:.4g} MB"
    if count >= 1024:
        return f"{count / 1024:.4g} KiB"
    return f"{count} bytes"

"""From a source file to queued reports: choose a converter, convert, finalise, queue durably.
Shared by the service and the `convert` and `upload` commands, so a file becomes the same
reports, with the same ids, whichever way it arrives.
"""

from __future__ import annotations

import contextlib
import hashlib
import stat
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pywats_client.config.settings import Settings, WatchFolder
from pywats_client.converters import Converter, ConverterContext, ConverterRegistry
from pywats_client.converters.auto import AUTO_NAME, NotRecognised, incomplete_or
from pywats_client.converters.memory import MemoryBudget
from pywats_client.converters.textio import preloaded
from pywats_client.errors import ConversionError, IncompleteFileError, ReportIdClashError
from pywats_client.fsutil import UnsafePathError, open_regular, shown
from pywats_client.queue.store import DurableQueue, ItemHeader, PutResult, body_digest
from pywats_client.report.builder import apply_context
from pywats_client.report.checks import finalize
from pywats_client.report.model import to_json_parts

HEAD_BYTES = 64 * 1024
# A file up to this size is read once: the bytes hashed for its report ids are handed to the
# converter (`textio.preloaded`), so the content that names the reports is the content converted,
# and a small file is opened once instead of twice. Larger files are hashed and converted
# (streamed, for XML) each from the file, so they are not held in memory twice.
READ_ONCE_BYTES = 1 << 20


@dataclass(frozen=True)
class Conversion:
    """The reports made from one file, and which converter made them and why."""

    path: Path
    converter: str
    reason: str
    reports: list[dict[str, Any]]
    companions: tuple[Path, ...] = ()  # files/folders that form one unit with `path`
    content_sha256: str = ""  # of the source file, as converted


def make_context(
    settings: Settings, path: Path, arguments: Mapping[str, Any] | None = None,
    processes: Mapping[str, int] | None = None,
) -> ConverterContext:
    """What a converter may know besides the file: station identity, defaults, arguments."""
    try:
        mtime: float | None = path.stat().st_mtime
    except OSError:
        mtime = None
    arguments = dict(arguments or {})
    return ConverterContext(
        station_name=str(arguments.get("station_name") or settings.station_name),
        location=settings.station_location,
        purpose=settings.station_purpose,
        defaults=dict(settings.converters.defaults),
        arguments=arguments,
        timezone=_zone(arguments.get("timezone"), path),
        encoding=str(arguments.get("encoding") or "utf-8"),
        file_mtime=mtime,
        processes=dict(processes or {}),
    )


def _zone(name: object, path: Path) -> tzinfo | None:
    """The zone named by a folder's `timezone` argument (e.g. "Europe/Oslo"); None: local."""
    if not name:
        return None
    try:
        return ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError):
        raise ConversionError(
            f"{path.name}: the watch folder's timezone argument {name!r} is not a known time "
            "zone; use a name such as Europe/Oslo"
        ) from None


def choose_converter(
    registry: ConverterRegistry,
    path: Path,
    *,
    name: str | None,
    arguments: Mapping[str, Any] | None = None,
    auto_detect: bool = True,
    follow_symlinks: bool = True,
) -> tuple[Converter, str]:
    """The converter for `path`: the one named (bound to the folder or given on the command
    line), else the best match by content. Raises ConversionError when nothing fits."""
    if name and name != AUTO_NAME:
        return registry.create(name, arguments), f"{name}: configured"
    fd = _open_source(path, follow_symlinks)
    with open(fd, "rb", buffering=0) as fh:  # unbuffered: fewer system calls per file
        head = fh.read(HEAD_BYTES)
    try:
        choice = registry.choose(path, head, auto_detect=auto_detect or name == AUTO_NAME)
    except NotRecognised as exc:
        # A file too short to recognise may be one still being written: wait for it.
        raise incomplete_or(registry, path, head, exc,
                            ConverterContext(arguments=dict(arguments or {}))) from None
    if choice is None:
        raise ConversionError(
            f"no converter recognises {path.name}. Bind one to the folder with "
            "'pywats-client config add-watch-folder FOLDER --converter NAME' "
            "('pywats-client converters list' shows the names)."
        )
    return choice


def convert_file(
    path: Path, converter: Converter, context: ConverterContext, reason: str = "",
    max_bytes: int | None = None, *, follow_symlinks: bool = True,
) -> Conversion:
    """Run `converter` on `path` and finalise every report (ids, defaults, validation).

    The id of each report is derived from the file's content, the converter and the report's
    position, so converting the same file again gives the same ids. If the file changes while
    it is being converted — rewritten, or swapped for another file or a link, also when the
    converter then fails — IncompleteFileError asks the caller to try again later; without
    `follow_symlinks` a link (or anything but a regular file) is never read.
    """
    before = _fingerprint(path, follow_symlinks)
    if max_bytes is not None and before[0] > max_bytes:
        raise ConversionError(
            f"{path.name} is {before[0] / 2**20:.1f} MB, over the {max_bytes / 2**20:.3g} MB "
            "limit (converters.max_file_mb); it was not read. If it is a real report, raise "
            "the limit with 'pywats-client config set converters.max_file_mb N'"
        )
    if before[0] <= READ_ONCE_BYTES:
        data = _read_source(path, before[0], follow_symlinks)
        digest = hashlib.sha256(data).hexdigest()
        preload: AbstractContextManager[None] = preloaded(path, data)
    else:
        digest = _sha256(path, before[0], follow_symlinks)
        preload = contextlib.nullcontext()
    try:
        with preload:
            raw = converter.convert(path, context)
    except ConversionError:
        # What the converter read may not be what was checked: an error about another file's
        # content must not land in a note the folder's writer can read.
        if _fingerprint(path, follow_symlinks) != before:
            raise IncompleteFileError(
                f"{path.name} changed while it was being converted") from None
        raise
    if _fingerprint(path, follow_symlinks) != before:
        raise IncompleteFileError(f"{path.name} changed while it was being converted")
    reports = [as_report_dict(report, context, path, converter.name)
               for report in (raw if isinstance(raw, list) else [raw])]
    if not reports:
        raise ConversionError(f"{path.name}: the converter found no report in the file")
    finished = [
        finalize(
            report,
            context=context,
            converter_name=converter.name,
            content_sha256=digest,
            index=index,
            source=str(path),
        )
        for index, report in enumerate(reports)
    ]
    return Conversion(path, converter.name, reason, finished, companions_of(converter, path),
                      digest)


def as_report_dict(report: object, context: ConverterContext, path: Path, converter: str
                   ) -> dict[str, Any]:
    """A converter's report as a WSJF dict: a dict as it is; a report object (anything with
    `to_wsjf()` or `to_dict()`, such as `UUTReport`) serialised and completed from the
    context (process code by name or default, part number, revision, operator defaults)."""
    if isinstance(report, dict):
        return report
    serialise = getattr(report, "to_wsjf", None) or getattr(report, "to_dict", None)
    if not callable(serialise):
        raise ConversionError(
            f"{path.name}: converter {converter} returned {type(report).__name__}, not a "
            "report (return a WSJF dict, a UUTReport/UURReport, or a list of them)"
        )
    data = serialise()
    if not isinstance(data, dict):
        raise ConversionError(
            f"{path.name}: converter {converter} returned a {type(report).__name__} whose "
            f"{getattr(serialise, '__name__', 'to_wsjf')}() gave {type(data).__name__}, not a "
            "WSJF dict"
        )
    apply_context(data, context)
    return data


def companions_of(converter: Converter, path: Path) -> tuple[Path, ...]:
    """The files or folders that belong with `path` (a Klippel header's data folder), as the
    converter says through an optional `companions(path)` classmethod; they are post-processed
    together with the file."""
    find = getattr(converter, "companions", None)
    if find is None:
        return ()
    try:
        return tuple(p for p in find(path) if p.exists())
    except OSError:
        return ()


def converter_for(
    settings: Settings, registry: ConverterRegistry, path: Path, folder: WatchFolder | None,
    converter_name: str | None = None,
) -> tuple[Converter, str]:
    """The converter for a file: the one named, its folder's binding, or detection."""
    return choose_converter(
        registry, path, name=converter_name or (folder.converter if folder else None),
        arguments=folder.arguments if folder else {},
        auto_detect=settings.converters.auto_detect,
        follow_symlinks=folder.follow_symlinks if folder else True,
    )


def convert_source(
    settings: Settings, registry: ConverterRegistry, path: Path, folder: WatchFolder | None,
    converter_name: str | None = None, processes: Mapping[str, int] | None = None,
) -> Conversion:
    """Choose the converter for a file (its folder's binding, or detection) and convert it."""
    converter, reason = converter_for(settings, registry, path, folder, converter_name)
    arguments = folder.arguments if folder else {}
    context = make_context(settings, path, arguments, processes)
    with memory_reserved(settings, converter, path):
        return convert_file(path, converter, context, reason, max_file_bytes(settings),
                            follow_symlinks=folder.follow_symlinks if folder else True)


def memory_reserved(settings: Settings, converter: Converter, path: Path
                    ) -> AbstractContextManager[int]:
    """The file's share of a one-file memory budget (`converters.max_memory_mb`, estimated
    from its size and the converter's ratio), held while it is converted and queued. Raises
    ConversionError, naming the setting, for a file the budget can never hold. (The service
    shares one `MemoryBudget` among its conversions.)"""
    budget = MemoryBudget(settings.converters.max_memory_mb)
    return budget.reserve(path, converter, path.stat().st_size)


def max_file_bytes(settings: Settings) -> int:
    return int(settings.converters.max_file_mb * 2**20)


def queue_reports(queue: DurableQueue, conversion: Conversion) -> list[PutResult]:
    """Put every report of a conversion into the queue, durably, before the source is touched.

    If the disk fills half-way, the reports already written stay: they have deterministic ids,
    so converting the file again later re-queues only what is missing. A report whose id is
    taken by a different report (in the queue, or earlier in the same file) raises
    ReportIdClashError naming the file that came first; it is checked before anything of the
    file is queued.
    """
    # A large report comes in pieces: never its text and its bytes at once.
    bodies = [(str(report["id"]), to_json_parts(report)) for report in conversion.reports]
    items = [(report_id, body, body_digest(body)) for report_id, body in bodies]
    first: dict[str, str] = {}
    for report_id, _, digest in items:
        if first.setdefault(report_id, digest) != digest:
            raise ReportIdClashError(
                f"{conversion.path.name} holds two different reports with the same id "
                f"{report_id}; WATS would keep only one of them. {_ID_FIX}")
    if len(items) > 1:  # one report alone is checked by put(), before anything is written
        for report_id, body, digest in items:
            stored = queue.clash(body, report_id=report_id, body_sha256=digest,
                                 source_sha256=conversion.content_sha256)
            if stored is not None:
                raise _clash(conversion, report_id, stored)
    results = []
    for report_id, body, digest in items:
        result = queue.put(body, report_id=report_id, source=str(conversion.path),
                           converter=conversion.converter, body_sha256=digest,
                           source_sha256=conversion.content_sha256)
        if result.clash is not None:  # taken by another file in the meantime
            raise _clash(conversion, report_id, result.clash)
        results.append(result)
    return results


_ID_FIX = ("Give each report its own id (a copy of a sample keeps the sample's id), or leave "
           "the id out and one is made from the file's content; then put the file back")


def _clash(conversion: Conversion, report_id: str, stored: ItemHeader) -> ReportIdClashError:
    first = f"from {shown(stored.source)}" if stored.source else "through the library"
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stored.queued_at))
    return ReportIdClashError(
        f"{shown(conversion.path.name)}: its report id {report_id} is already used by a "
        f"different report, queued {first} at {when}; this one was not queued, as WATS would "
        f"keep only one of them. {_ID_FIX}")


def _sha256(path: Path, size: int, follow_symlinks: bool = True) -> str:
    """The digest of the file's first `size` bytes (the size it was checked at); a file that
    keeps growing (a writer that never stops) is not read to its end: IncompleteFileError."""
    digest = hashlib.sha256()
    _read_blocks(path, size, follow_symlinks, digest.update)
    return digest.hexdigest()


def _read_source(path: Path, size: int, follow_symlinks: bool = True) -> bytes:
    """The file's first `size` bytes, as `_sha256` reads them."""
    blocks: list[bytes] = []
    _read_blocks(path, size, follow_symlinks, blocks.append)
    return b"".join(blocks)


def _read_blocks(path: Path, size: int, follow_symlinks: bool,
                 consume: Callable[[bytes], object]) -> None:
    """Hand the file's first `size` bytes to `consume`, a block at a time; IncompleteFileError
    when there is more (a file that grew since it was checked is not read to its end)."""
    left = size
    with open(_open_source(path, follow_symlinks), "rb", buffering=0) as fh:
        while left > 0:  # small reads stay off mmap()
            block = fh.read(min(left, 1 << 16))
            if not block:
                break
            consume(block)
            left -= len(block)
        if fh.read(1):
            raise IncompleteFileError(f"{path.name} grew while it was read; it is taken "
                                      "again once it stops changing")


def _open_source(path: Path, follow_symlinks: bool) -> int:
    """A descriptor of the regular file `path`; something else in its place (a link where
    links are not followed, a named pipe, which would block the read) is a file that changed
    since it was taken: IncompleteFileError."""
    try:
        return open_regular(path, follow_symlinks=follow_symlinks)[0]
    except UnsafePathError as exc:
        raise IncompleteFileError(f"{path.name} is no longer a plain file: {exc}") from None


def _fingerprint(path: Path, follow_symlinks: bool = True) -> tuple[int, ...]:
    """Size and mtime of the content, and which file (inode, ctime) holds the name: a file
    swapped under the same name, also back and forth, changes the ctime."""
    own = path.lstat()
    if stat.S_ISLNK(own.st_mode) and not follow_symlinks:
        raise IncompleteFileError(f"{path.name} is now a symbolic link; it is not read")
    st = path.stat() if stat.S_ISLNK(own.st_mode) else own
    if not stat.S_ISREG(st.st_mode):
        raise IncompleteFileError(f"{path.name} is no longer a plain file")
    return st.st_size, st.st_mtime_ns, own.st_dev, own.st_ino, own.st_ctime_ns

"""The values a `FileConverter` is given and returns: `ConverterSource` (what to convert) and
`ConverterResult` (reports, or why there are none), with `ConversionStatus`.

The shapes of the client architecture's converter API, so that converters written against it
run here; `file_converter.FileConverter` turns a result into what the service expects.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import Enum
from pathlib import Path
from typing import Any


class ConversionStatus(Enum):
    """How a conversion ended."""

    SUCCESS = "success"  # one report or more: they are queued
    FAILED = "failed"  # the file is moved to the error folder with the error as its note
    SUSPENDED = "suspended"  # not yet: the file is looked at again later
    SKIPPED = "skipped"  # the file holds no report to make; not an error
    REJECTED = "rejected"  # the converter is not sure enough it can read the file: an error


class PostProcessAction(Enum):
    """What a converter would like done with the file. Accepted for compatibility; the watch
    folder's `post_action` setting decides (see the converters README)."""

    DELETE = "delete"
    MOVE = "move"
    ZIP = "zip"
    KEEP = "keep"


class SourceType(Enum):
    """What a `ConverterSource` stands for; this client converts files."""

    FILE = "file"
    FOLDER = "folder"


@dataclass
class ConverterSource:
    """What a converter is asked to convert: `path`, the file, and `files`, the files that
    belong to it (the file itself here)."""

    source_type: SourceType
    path: Path | None = None
    files: list[Path] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_file(cls, file_path: str | Path) -> ConverterSource:
        """The source for one file."""
        path = Path(file_path)
        return cls(SourceType.FILE, path, [path])

    @property
    def primary_name(self) -> str:
        """The file's name ("" for a source without a path)."""
        return self.path.name if self.path is not None else ""

    @property
    def is_file(self) -> bool:
        return self.source_type is SourceType.FILE

    @property
    def is_folder(self) -> bool:
        return self.source_type is SourceType.FOLDER

    def get_files_matching(self, pattern: str) -> list[Path]:
        """The files of this source whose name matches the glob `pattern`."""
        return [f for f in self.files if fnmatch.fnmatch(f.name, pattern)]


@dataclass
class ConverterResult:
    """The outcome of one conversion: a status, the report(s) on success, the reason when
    there are none, and warnings to log."""

    status: ConversionStatus
    report: Any = None  # a WSJF dict or a report object (UUTReport, UURReport)
    reports: list[Any] = field(default_factory=list)
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    post_action: PostProcessAction = PostProcessAction.MOVE
    retry_after: timedelta | None = None

    @property
    def success(self) -> bool:
        return self.status is ConversionStatus.SUCCESS

    @property
    def suspend_reason(self) -> str | None:
        """Why a suspended conversion waits (None for other results)."""
        return self.error if self.status is ConversionStatus.SUSPENDED else None

    def get_all_reports(self) -> list[Any]:
        """Every report of the result: `reports` when given, else `report` alone."""
        if self.reports:
            return list(self.reports)
        return [] if self.report is None else [self.report]

    @classmethod
    def success_result(cls, report: Any = None, reports: Iterable[Any] | None = None,
                       post_action: PostProcessAction = PostProcessAction.MOVE,
                       warnings: Iterable[str] | None = None,
                       metadata: Mapping[str, Any] | None = None,
                       **_statistics: Any) -> ConverterResult:
        """Converted: one `report`, or several in `reports`."""
        return cls(ConversionStatus.SUCCESS, report=report, reports=list(reports or []),
                   warnings=list(warnings or []), metadata=dict(metadata or {}),
                   post_action=post_action)

    @classmethod
    def failed_result(cls, error: str, post_action: PostProcessAction = PostProcessAction.KEEP,
                      warnings: Iterable[str] | None = None) -> ConverterResult:
        """Not converted because of `error`, in words an operator can act on."""
        return cls(ConversionStatus.FAILED, error=error, warnings=list(warnings or []),
                   post_action=post_action)

    @classmethod
    def failure(cls, error: str) -> ConverterResult:
        """Same as `failed_result(error)` (the spelling of the architecture document)."""
        return cls.failed_result(error)

    @classmethod
    def skipped_result(cls, reason: str) -> ConverterResult:
        """The file holds no report to make (a template, a summary, a calibration run)."""
        return cls(ConversionStatus.SKIPPED, error=reason, post_action=PostProcessAction.KEEP)

    @classmethod
    def suspended_result(cls, reason: str, retry_after: timedelta | None = None,
                         **_details: Any) -> ConverterResult:
        """Not yet (e.g. a companion file is still missing): look at the file again later."""
        return cls(ConversionStatus.SUSPENDED, error=reason, retry_after=retry_after,
                   post_action=PostProcessAction.KEEP)

    @classmethod
    def rejected_result(cls, reason: str, confidence: float = 0.0,
                        threshold: float = 0.0) -> ConverterResult:
        """The converter is not sure enough that it reads this file right."""
        return cls(ConversionStatus.REJECTED, post_action=PostProcessAction.KEEP,
                   error=f"{reason} (confidence {confidence:.2f}, below {threshold:.2f})")

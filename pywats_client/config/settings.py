"""The typed, validated settings of one instance, with their defaults.

`validation.py` makes a `Settings` from config.json and the environment; everything else reads
settings from here and never touches JSON. It imports nothing from the package.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

POST_ACTIONS = ("move", "archive", "delete", "none")

# Folder names, inside a watch folder, that receive processed and failed source files by
# default. Scans never look inside them.
DEFAULT_DONE_FOLDER = "done"
DEFAULT_ERROR_FOLDER = "error"


@dataclass(frozen=True)
class WatchFolder:
    """One folder the equipment writes into, and what to do with what appears there."""

    path: Path
    converter: str | None = None  # None: chosen per file (auto-detect or file patterns)
    post_action: str = "move"  # one of POST_ACTIONS, applied after the report is queued
    done_folder: Path | None = None  # None: <path>/done
    error_folder: Path | None = None  # None: <path>/error
    file_patterns: tuple[str, ...] = ("*",)
    polling: bool = False  # for SMB/NFS shares where inotify sees nothing
    arguments: Mapping[str, Any] = field(default_factory=dict)  # passed to the converter

    @property
    def done_path(self) -> Path:
        return self.done_folder if self.done_folder is not None else self.path / DEFAULT_DONE_FOLDER

    @property
    def error_path(self) -> Path:
        if self.error_folder is not None:
            return self.error_folder
        return self.path / DEFAULT_ERROR_FOLDER


@dataclass(frozen=True)
class QueueSettings:
    """How the queue retries and keeps reports, and how the watcher looks at folders."""

    watch_folders: tuple[WatchFolder, ...] = ()
    upload_interval: float = 10.0  # seconds between scans of pending/ when nothing else wakes us
    retry_attempts: int = 0  # > 0: also cap attempts after server errors (older configs)
    retry_delay: float = 30.0  # first retry delay, doubled per attempt
    retry_max_delay: float = 3600.0
    max_age: float = 7 * 24 * 3600.0  # give up (-> failed/) after this lifetime in the queue
    settle_time: float = 1.0  # a file is taken when unchanged for this long
    rescan_interval: float = 30.0  # full rescan of every watch folder (events are only hints)
    probe_interval: float = 30.0  # while offline or paused, probe the server this often
    completed_retention_days: float = 7.0
    failed_retention_days: float = 30.0
    allow_network_filesystem: bool = False  # queue on NFS/SMB/FAT loses the power-cut guarantee


@dataclass(frozen=True)
class ConverterSettings:
    """Which converters may be chosen for a file, and the defaults they are given."""

    enabled: tuple[str, ...] = ()  # empty: every built-in and plugin converter
    auto_detect: bool = True
    max_file_mb: float = 200.0  # larger source files are refused unread
    # Peak RSS of the whole process; a file whose conversion would exceed it is refused.
    max_memory_mb: float = 100.0
    defaults: Mapping[str, Any] = field(default_factory=dict)  # part_number, operator, ...


@dataclass(frozen=True)
class LoggingSettings:
    level: str = "INFO"
    max_size_mb: float = 10.0
    backup_count: int = 5


@dataclass(frozen=True)
class Settings:
    """Everything one instance needs to run. Secrets are held decrypted, in memory only."""

    server_url: str = ""
    # base64("user:secret") as issued by WATS; never log it, so it is kept out of repr()
    api_token: str = field(default="", repr=False)
    station_name: str = ""
    station_location: str = ""
    station_purpose: str = "Production"
    ca_bundle: str | None = None  # custom CA file; TLS is always verified
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    queue: QueueSettings = field(default_factory=QueueSettings)
    converters: ConverterSettings = field(default_factory=ConverterSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    source: Path | None = None  # the config.json these came from, for messages

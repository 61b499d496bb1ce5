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
    # Take files that are symbolic links (to wherever they point). Off: a link is left alone,
    # so whoever can write the folder cannot have the service read files elsewhere.
    follow_symlinks: bool = False
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
    incomplete_timeout: float = 300.0  # an incomplete file unchanged this long is an error
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
    timeout_s: float = 300.0  # a conversion running longer is abandoned; its file set aside
    max_crashes: int = 2  # service deaths while converting one file before it is set aside
    # Peak RSS of the whole process; a file whose conversion would exceed it is refused.
    max_memory_mb: float = 100.0
    defaults: Mapping[str, Any] = field(default_factory=dict)  # part_number, operator, ...


@dataclass(frozen=True)
class LoggingSettings:
    level: str = "INFO"
    # The rotating log file beside the journal; under systemd every line otherwise goes to
    # the journal and to the file, two writes per line on an SD card.
    file: bool = True
    max_size_mb: float = 10.0
    backup_count: int = 5


@dataclass(frozen=True)
class ApiSettings:
    """The control API and status page (`start` serves them when `enabled`; the --api options
    of `start` override these for one run)."""

    enabled: bool = False
    port: int = 8765  # 0: any free port, written to state/status.json as api_url
    host: str = "127.0.0.1"  # loopback: this machine only
    allow_remote: bool = False  # needed for any other host; every route then needs the token


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
    api: ApiSettings = field(default_factory=ApiSettings)
    source: Path | None = None  # the config.json these came from, for messages

"""The exception tree of pywats-client: every error it raises on purpose.

Each derives from `PyWATSClientError`; the type answers "what kind of problem is this?", the
message says where and what to do.
"""

from __future__ import annotations


class PyWATSClientError(Exception):
    """Root of every error raised by pywats-client on purpose."""


class ConfigError(PyWATSClientError):
    """The configuration is missing, unreadable or invalid; the message names the key and file."""


class SecretError(ConfigError):
    """A secret in the config cannot be decrypted (missing or wrong key file)."""


class ConversionError(PyWATSClientError):
    """A file could not be turned into a report. The message is shown to operators."""


class IncompleteFileError(ConversionError):
    """The file looks truncated, probably still being written: try again later."""


class ReportValidationError(ConversionError):
    """A report misses a required field or breaks a limit; the message names the field."""


class ReportIdClashError(ConversionError):
    """A report's id is already taken by a different report (a template copied with its
    sample's id, a tester that reuses ids): the report is not queued."""


class ProcessListUnknownError(ReportValidationError):
    """A report names its process, and the server's process list that turns the name into a
    code is not known yet: the file waits for the list instead of being filed under a guess."""


class PluginError(PyWATSClientError):
    """A converter plugin cannot be found or loaded; the message names the file or path."""


class QueueError(PyWATSClientError):
    """The queue cannot be used (wrong filesystem, permissions, disk full)."""


class QueueFullError(QueueError):
    """The disk holding the queue is full: the report was not written, the source stays."""


class CorruptItemError(QueueError):
    """A queue file fails its self-check (torn, truncated, zeroed)."""


class LockError(PyWATSClientError):
    """Another process owns this instance (its queue), or the lock cannot be taken."""


class DaemonError(PyWATSClientError):
    """The daemon could not be started (the message says why and where to look)."""


class ControlApiError(PyWATSClientError):
    """The control API cannot start (the message names the address and the fix)."""

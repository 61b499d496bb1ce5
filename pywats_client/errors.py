"""The exception tree of pywats-client.

Every error the client raises on purpose derives from `PyWATSClientError`; the type answers the
operator's question "what kind of problem is this?", the message says where and what to do.
This module is a leaf: it imports nothing from the package.
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


class PluginError(PyWATSClientError):
    """A converter plugin cannot be found or loaded; the message names the file or path."""


class QueueError(PyWATSClientError):
    """The queue cannot be used (wrong filesystem, permissions, disk full)."""


class QueueFullError(QueueError):
    """The disk holding the queue is full: the report was not written, the source stays."""


class LockError(PyWATSClientError):
    """Another process owns this instance (its queue), or the lock cannot be taken."""


class UploadError(PyWATSClientError):
    """An upload did not succeed."""


class TransientUploadError(UploadError):
    """Worth retrying later: network trouble, timeouts, 408/429/5xx."""


class PermanentUploadError(UploadError):
    """The server rejected the report itself (400/413/422): retrying will not help."""

"""Converters: turning test-equipment files into WATS reports (WSJF dicts).

The public surface for people who write converters: subclass `Converter` (alias
`BaseConverter`), read what you need from `ConverterContext`, return WSJF dicts or build
reports with `UUTReport`/`UURReport`, raise `ConversionError` (or `IncompleteFileError` for a
file still being written, `ConversionSkipped` for a file that holds no report). Or subclass
`FileConverter` and return a `ConverterResult`. `ConverterRegistry` finds converters by name,
dotted path or plugin file. Kept light: importing this package imports no built-in converter,
and nothing from the network or watcher side.
"""

from pywats_client.converters.base import (
    BaseConverter,
    ConversionSkipped,
    Converter,
    ConverterContext,
    ConverterInfo,
)
from pywats_client.converters.file_converter import FileConverter
from pywats_client.converters.models import (
    ConversionStatus,
    ConverterResult,
    ConverterSource,
    PostProcessAction,
)
from pywats_client.converters.registry import BUILTIN_CONVERTERS, ConverterRegistry
from pywats_client.errors import (
    ConversionError,
    IncompleteFileError,
    PluginError,
    ReportValidationError,
)
from pywats_client.report.builder import UURReport, UUTReport
from pywats_client.report.model import format_datetime, format_utc, parse_datetime

__all__ = [
    "BUILTIN_CONVERTERS",
    "BaseConverter",
    "ConversionError",
    "ConversionSkipped",
    "ConversionStatus",
    "Converter",
    "ConverterContext",
    "ConverterInfo",
    "ConverterRegistry",
    "ConverterResult",
    "ConverterSource",
    "FileConverter",
    "IncompleteFileError",
    "PluginError",
    "PostProcessAction",
    "ReportValidationError",
    "UURReport",
    "UUTReport",
    "format_datetime",
    "format_utc",
    "parse_datetime",
]

"""`WATSStandardTextConverter`: WATS Standard Text Format files (formats.md §3) into WSJF test
reports. Reading is in `wstf_reader` (the sections of a file), `wstf_steps` (the step tree)
and `wstf_values` (cells, numbers, limits).
"""

from __future__ import annotations

import codecs
import re
from pathlib import Path
from typing import Any

from pywats_client.converters.builtin import BuiltinConverter, ConversionOptions
from pywats_client.converters.textio import MB, read_text
from pywats_client.converters.wstf_reader import Reader
from pywats_client.converters.wstf_values import HEADER_START, STEP_DATA_START

# A test report is kilobytes to a few megabytes; anything this big is not one, and reading it
# would take a small station's memory.
MAX_FILE_BYTES = 200 * MB


class WATSStandardTextConverter(BuiltinConverter):
    """Converts WATS Standard Text Format files (tab-separated; one or more UUTs per file).

    Takes no arguments of its own. The process of a UUT without OperationTypeCode follows the
    rule of every built-in converter (`ConversionOptions.process_code`), and the
    `part_number`, `revision`, `operator` and `sequence_name` options fill header lines the
    file does not have.

    Where the format leaves a choice, this reader decides so:

    * Lines are split on "\\n" only (control bytes such as 0x1C are data, not line ends); cells
      on tabs. Control bytes 0x00-0x1F are removed from every cell, trailing empty cells are
      ignored, and a line whose cells are all empty is skipped. Markers and key words are
      matched without regard to case; the end marker also as `-- UUT-End--`.
    * Numbers use "." (invariant culture). A "," decimal is refused with a message, except in
      `Series` data, where §3 says to replace it. A limit cell written as "100.0/100.0" (seen in
      flying-probe exports) is that one limit; "low/high" with differing values is taken as both
      limits only when the HighLimit cell is empty and the operator uses two limits.
    * Multi-measurement steps: a test line with a MeasureName starts one; following lines of the
      same kind with an empty StepName, or the same StepName, add measurements to it (a
      MeasureName repeated under the same StepName starts a new step: a loop). The StepStatus
      cell of a measurement line is that measurement's status; the step status is the roll-up.
      `Multiple…`/`EndMultiple…` bracket an explicit one; inside it only its measurements,
      `Chart` and `Series` lines may appear. Step-level cells (time, report text, error) come
      from the first line that has them; an `End…` line overrides them.
    * ConverterMode `Active` (default): an empty StepStatus is computed from the limits, and
      failures roll up (a failed step fails its sequence unless its CausedSequenceFailure is
      False, whatever the sequence line said); without UUTStatus the result is the root's
      status. `Import`: statuses are taken as written, nothing is compared; a test line without
      status and a UUT without UUTStatus are errors, a sequence line without status takes its
      children's worst. In both modes an ActionStep without status is Done.
    * Unclosed `SequenceCall`s and `Multiple…` blocks are closed at `--Step-Data-End--` with a
      warning; an `End…` line that names another step, or closes nothing, is an error.
    * Truncation: the file is taken as still being written (`IncompleteFileError`) when it is
      empty, when it ends in the middle of a line (its last line has no line end and is not the
      end marker), or when its last UUT has no `--UUT-End--` yet: a tester that logs line by
      line leaves a file like that between two lines, and a report made of it would lack the
      steps still to come. The service waits for the end marker (`queue.incomplete_timeout`).
      The converter argument `accept_missing_uut_end: true` converts such a last UUT anyway,
      with a warning, for testers that never write the marker. A UUT without `--UUT-End--`
      before the next `--Header-Start--` is converted, with a warning: the writer is past it.
    """

    name = "WATSStandardTextConverter"
    memory_ratio = 24.0  # peak RSS per input byte (bench_converters --memory: 22.3 on 1.2 MB)
    description = "WATS Standard Text Format (WSTF): tab-separated header, step data and footer"
    file_patterns = ("*.txt",)

    def read(self, path: Path, options: ConversionOptions) -> dict[str, Any] | list[dict[str, Any]]:
        """One report (a `ReportDict`) per UUT in the file; a list when there are several."""
        text = read_text(path, MAX_FILE_BYTES, "WSTF", options.encoding,
                         hint="a test report is far smaller: check that the equipment writes "
                              "the right file into this folder")
        reports = Reader(path, options).read(text)
        return reports[0] if len(reports) == 1 else list(reports)


# What may come before the marker in UTF-8: byte order marks, blank lines, leading blanks.
_BEFORE_MARKER = re.compile(rb"[\xef\xbb\xbf \t\r\n\x00]*")


@WATSStandardTextConverter.detection
def _detect(path: Path, head: bytes) -> tuple[float, str]:
    # A file whose first character that is not blank is not the marker's "-" is no WSTF file:
    # known from its first bytes, without decoding the head (every file of an auto-detecting
    # folder is asked, and a JSON report has no line break to stop at).
    if not head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        blank = _BEFORE_MARKER.match(head)
        at = blank.end() if blank else 0
        if head[at:at + 1] != b"-":
            return 0.0, ""
    return _detect_head(head)


def _detect_head(head: bytes) -> tuple[float, str]:
    codec = "utf-16" if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) else "utf-8"
    text = head.decode(codec, errors="replace").lstrip("\ufeff")
    for line in text.split("\n"):
        first = line.split("\t", 1)[0].strip(" \r\x00")
        if not first and not line.strip(" \t\r\x00"):
            continue  # blank lines before the marker are tolerated
        if first.replace(" ", "").lower() != HEADER_START:
            return 0.0, ""
        if STEP_DATA_START in text.lower():
            return 0.99, "first line is --Header-Start--, followed by --Step-Data-Start--"
        return 0.95, "first line is --Header-Start-- (WATS Standard Text Format)"
    return 0.0, ""

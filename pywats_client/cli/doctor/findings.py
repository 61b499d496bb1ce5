"""What a doctor check returns - `CheckResult`: ok / warn / fail, what was found and the fix -
and the `Diagnosis` of one instance, all its checks in order, as text or as the JSON document.
"""

from __future__ import annotations

import enum
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pywats_client import __version__


class Status(str, enum.Enum):
    """How a check came out; FAIL means something needs fixing."""

    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class CheckResult:
    """One check: its name, what it looked at, what it found and, unless ok, the fix."""

    name: str
    status: Status
    found: str
    fix: str = ""
    subject: str = ""  # the file, folder or URL looked at

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status.value, "subject": self.subject,
                "found": self.found, "fix": self.fix}


def ok(name: str, found: str, subject: str = "") -> CheckResult:
    return CheckResult(name, Status.OK, found, "", subject)


def warn(name: str, found: str, fix: str, subject: str = "") -> CheckResult:
    return CheckResult(name, Status.WARN, found, fix, subject)


def fail(name: str, found: str, fix: str, subject: str = "") -> CheckResult:
    return CheckResult(name, Status.FAIL, found, fix, subject)


@dataclass
class Diagnosis:
    """Every check run for one instance, in order."""

    instance: str
    root: Path
    checks: list[CheckResult] = field(default_factory=list)

    @property
    def needs_fixing(self) -> bool:
        """True when any check failed (warnings alone do not count)."""
        return any(c.status is Status.FAIL for c in self.checks)

    def count(self, status: Status) -> int:
        return sum(1 for c in self.checks if c.status is status)

    def to_dict(self) -> dict[str, Any]:
        """The `doctor --json` document."""
        return {
            "version": __version__,
            "instance": self.instance,
            "instance_folder": str(self.root),
            "needs_fixing": self.needs_fixing,
            "summary": {s.value: self.count(s) for s in Status},
            "checks": [c.to_dict() for c in self.checks],
        }

    def render(self) -> str:
        """The text an operator reads: one line per check, a fix under each problem."""
        lines = [f"pywats-client {__version__} doctor: instance '{self.instance}' "
                 f"({self.root})", ""]
        width = max((len(c.name) for c in self.checks), default=0) + 2
        indent = " " * (6 + width)
        for check in self.checks:
            label = check.status.value if check.status is Status.OK else check.status.name
            head = f"{label:<6}{check.name:<{width}}"
            lines.append(_fill(check.found, head, indent))
            if check.fix:  # one line, however long: it holds commands to copy and paste
                lines.append(f"{indent}fix: {check.fix}")
        failed, warned = self.count(Status.FAIL), self.count(Status.WARN)
        lines.append("")
        if failed:
            lines.append(f"{failed} problem(s) need fixing"
                         + (f", {warned} warning(s)." if warned else "."))
        else:
            lines.append("Nothing needs fixing" + (f"; {warned} warning(s)." if warned else "."))
        return "\n".join(lines)


def _fill(text: str, first: str, rest: str) -> str:
    # Never break inside a word: paths and commands must stay copy-pastable.
    return textwrap.fill(text, 100, initial_indent=first, subsequent_indent=rest,
                         break_long_words=False, break_on_hyphens=False)



def exists(path: Path) -> bool:
    """`path.exists()`, but False when it cannot even be looked at (another user's folder)."""
    try:
        return path.exists()
    except OSError:
        return False  # cannot even look: the config check says so

#!/usr/bin/env python3
"""Print the README's configuration reference table from the config schema.

    python scripts/config_reference.py            # print the table
    python scripts/config_reference.py --update   # rewrite it in README.md

The table lives between `<!-- config-reference -->` markers in README.md; a test checks it is
up to date, so the reference can never drift from what the code accepts.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pywats_client.config.schema import reference_rows

README = Path(__file__).resolve().parents[1] / "README.md"
BEGIN, END = "<!-- config-reference -->", "<!-- /config-reference -->"


def table() -> str:
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for key, kind, default, meaning in reference_rows():
        cells = (f"`{key}`", kind, default, meaning)
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def updated(text: str) -> str:
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return f"{head}{BEGIN}\n{table()}\n{END}{tail}"


def main() -> int:
    if "--update" in sys.argv[1:]:
        README.write_text(updated(README.read_text(encoding="utf-8")), encoding="utf-8")
        return 0
    print(table())
    return 0


if __name__ == "__main__":
    sys.exit(main())

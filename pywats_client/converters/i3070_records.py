"""The grammar of Keysight (Agilent) i3070 log records: text in, a tree of `Record`s out.

Owns `parse_records()` and `Record`. Knows the syntax only, not what the records mean (that is
`i3070.py`). A record is `{@NAME` + fields + nested records + `}`; a field starts with `|`
(plain text up to the next marker or line end), `\\N` (a list of N items, each `|text` or a
literal) or `~N|` (a literal of exactly N characters, which may contain `|{}\\` and line ends).
Records nest inside their parent's braces; line ends and blanks between records mean nothing.
A Ctrl-D (0x04) is the tester's mark of a record it cut short. Depends on `errors` only.

Input is untrusted: the parser is one linear pass with an explicit stack (no recursion), nesting
is capped, and every refusal names the line.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from pywats_client.errors import ConversionError, IncompleteFileError

# The tester nests five deep (BATCH > BTEST > BLOCK > A-xxx > LIM2); anything much deeper is
# not a log, and an explicit cap keeps a hostile file from building a huge stack.
MAX_DEPTH = 32
# A literal or list announces its own length; more digits than this is not a length.
_MAX_COUNT_DIGITS = 9

# Every record name of the Log Record Format. Records with other names are custom ones
# written by a test plan's BT-Basic `log` statement; such a line often lacks its closing
# brace, so a custom record still open when a known one starts (or at the end of the file) is
# taken as closed there, instead of swallowing the rest of the log.
KNOWN_RECORDS = frozenset({
    "BATCH", "BTEST", "BLOCK", "LIM2", "LIM3", "RPT", "RETEST", "INDICT", "NODE",
    "A-CAP", "A-DIO", "A-FUS", "A-IND", "A-JUM", "A-MEA", "A-NFE", "A-NPN", "A-PFE",
    "A-PNP", "A-POT", "A-RES", "A-SWI", "A-ZEN",
    "TS", "TS-S", "TS-D", "TS-O", "TS-P", "PF", "PIN", "PCHK", "CCHK", "TJET", "DPIN",
    "D-T", "BS-CON", "BS-O", "BS-S", "ALM", "AID", "ARRAY",
})

Field = str | tuple[str, ...]  # plain or literal text, or the items of a list field

# Plain field text runs up to one of these. `\` and `~` start a new field only when a count
# follows (checked where they are met), so paths and names that contain them stay intact.
# Control characters other than tab end a field: line ends legitimately, Ctrl-D as the
# truncation mark, anything else is refused (a zero-filled tail after a power loss).
_PLAIN = re.compile(r"[^|{}\\~\x00-\x08\x0a-\x1f\x7f]*")
_NAME = re.compile(r"[^|{}\\~\s\x00-\x1f\x7f]*")
# A whole record head in one go: `{@NAME` and its plain fields (the common case).
_FAST_RECORD = re.compile(
    r"\{@([^|{}\\~\s\x00-\x1f\x7f]+)((?:\|[^|{}\\~\x00-\x08\x0a-\x1f\x7f]*)*)")
_DIGITS = re.compile(r"\d+")
_BLANKS = re.compile(r"[ \t\r\n]*")


@dataclass(slots=True)
class Record:
    """One `{@NAME|...}` record: its fields in order, the records nested in it, and where it
    starts (1-based line). `cut` is True when the tester marked it truncated (Ctrl-D)."""

    name: str
    line: int
    fields: list[Field] = field(default_factory=list)
    children: list[Record] = field(default_factory=list)
    cut: bool = False

    def text(self, index: int) -> str:
        """Field `index` as text ("" when absent; list items joined with blanks), stripped."""
        if index >= len(self.fields):
            return ""
        value = self.fields[index]
        return " ".join(value).strip() if isinstance(value, tuple) else value.strip()

    def child(self, name: str) -> Record | None:
        """The first nested record called `name`, if any."""
        return next((c for c in self.children if c.name == name), None)

    def walk(self) -> Iterator[Record]:
        """Every record nested in this one, depth first in file order (not this one)."""
        stack = list(reversed(self.children))
        while stack:
            record = stack.pop()
            yield record
            stack.extend(reversed(record.children))


def parse_records(text: str, *, source: str = "the file") -> list[Record]:
    """The top-level records of an i3070 log, with everything nested in them.

    Raises `IncompleteFileError` when the text ends inside a record (the tester or a copy is
    still writing it) and `ConversionError` for text that breaks the grammar; both name
    `source` and the line.
    """
    return _Parser(text, source).parse()


class _Parser:
    """One pass over one text; `pos` only moves forward, so the work is linear in its size."""

    def __init__(self, text: str, source: str) -> None:
        self.text = text
        self.source = source
        self.pos = 0
        self.line = 1
        self.stack: list[Record] = []
        self.top: list[Record] = []
        self.names: dict[str, str] = {}

    def parse(self) -> list[Record]:
        text, end = self.text, len(self.text)
        stack = self.stack
        fast, blanks = _FAST_RECORD.match, _BLANKS.match
        while True:
            match = blanks(text, self.pos)
            assert match is not None  # the pattern matches the empty string
            if match.end() > self.pos:
                self.line += text.count("\n", self.pos, match.end())
                self.pos = match.end()
            if self.pos >= end:
                break
            char = text[self.pos]
            if char == "{":
                # The usual record, a name and plain fields up to a line end or brace, in one
                # match; anything else (literals, lists, odd bytes, the end) the long way.
                match = fast(text, self.pos)
                if match is not None and match.end() < end and text[match.end()] in "{}\r\n":
                    record = self.attach(match.group(1))
                    plain = match.group(2)
                    if plain:
                        record.fields.extend(plain.split("|")[1:])
                    self.pos = match.end()
                else:
                    self.open_record()
            elif char == "}":
                if not stack:
                    raise self.error("'}' closes no record (one '}' too many)")
                stack.pop()
                self.pos += 1
            elif char in "|\\~" and stack:
                # More fields of the open record, after a line end or a nested record.
                self.fields(stack[-1])
            elif char == "\x04" and stack:
                stack[-1].cut = True
                self.pos += 1
            else:
                where = "between records" if stack else "outside any record"
                raise self.error(f"unexpected {_show(text[self.pos:self.pos + 20])} {where}")
        while stack and stack[-1].name not in KNOWN_RECORDS:
            stack.pop()  # a custom record without its closing brace
        if stack:
            record = stack[-1]
            raise IncompleteFileError(
                f"{self.source}: the file ends inside the @{record.name} record that starts at "
                f"line {record.line} (its closing '}}' is missing); the tester may still be "
                "writing it, so it will be read again later"
            )
        return self.top

    # -- records -------------------------------------------------------------------------------

    def open_record(self) -> None:
        text, start = self.text, self.pos
        if start + 1 >= len(text):
            raise self.incomplete("a record")
        if text[start + 1] != "@":
            raise self.error(f"{_show(text[start:start + 20])}: a record starts with '{{@'")
        match = _NAME.match(text, start + 2)
        assert match is not None  # the pattern matches the empty string
        name = match.group()
        self.pos = match.end()
        if self.pos >= len(text):
            raise self.incomplete("a record name")
        if not name:
            raise self.error("'{@' is not followed by a record name")
        self.fields(self.attach(name))

    def attach(self, name: str) -> Record:
        """A new record `name` starting at the current line, nested in the open one."""
        stack = self.stack
        if name in KNOWN_RECORDS:
            while stack and stack[-1].name not in KNOWN_RECORDS:
                stack.pop()  # a custom record without its closing brace
        if len(stack) >= MAX_DEPTH:
            raise self.error(f"records are nested more than {MAX_DEPTH} deep; this is not an "
                             "i3070 log")
        # Names repeat thousands of times: keep one copy of each.
        name = self.names.setdefault(name, name)
        record = Record(name, self.line)
        (stack[-1].children if stack else self.top).append(record)
        stack.append(record)
        return record

    def fields(self, record: Record) -> None:
        """Read the fields that follow, up to a nested record, a '}' or a line end."""
        text, end = self.text, len(self.text)
        while self.pos < end:
            char = text[self.pos]
            if char == "|":
                record.fields.append(self.plain())
            elif char in "~\\":
                if not self.counted():
                    kind = "literal" if char == "~" else "list"
                    raise self.error(f"{char!r} starts a {kind} field but no length follows")
                record.fields.append(self.literal() if char == "~" else self.list_field())
            elif char == "\x04":
                record.cut = True
                self.pos += 1
            else:
                return

    def counted(self) -> bool:
        """True when the `~` or `\\` at pos is followed by a count (a literal or list field)."""
        next_pos = self.pos + 1
        if next_pos >= len(self.text):
            raise self.incomplete("a field")
        return self.text[next_pos].isdigit()

    def plain(self) -> str:
        """The text after the `|` at pos, up to the next marker; `\\` or `~` without a count
        are ordinary characters."""
        text, end = self.text, len(self.text)
        self.pos += 1
        parts: list[str] = []
        while True:
            match = _PLAIN.match(text, self.pos)
            assert match is not None
            parts.append(match.group())
            self.pos = match.end()
            if self.pos < end and text[self.pos] in "\\~" and (
                    self.pos + 1 >= end or not text[self.pos + 1].isdigit()):
                parts.append(text[self.pos])
                self.pos += 1
                continue
            break
        if self.pos < end:
            char = text[self.pos]
            if char not in "|{}\\~\r\n\x04\t":
                raise self.error(f"control character {char!r} in a field; the file is damaged")
        return "".join(parts)

    def literal(self) -> str:
        """`~N|` followed by exactly N characters of any kind."""
        text = self.text
        count = self.count()
        if self.pos >= len(text):
            raise self.incomplete("a literal field")
        if text[self.pos] != "|":
            raise self.error(f"literal field ~{count} is not followed by '|'")
        start = self.pos + 1
        stop = start + count
        if stop > len(text):
            raise self.incomplete(f"a literal field of {count} characters")
        value = text[start:stop]
        self.line += value.count("\n")
        self.pos = stop
        return value

    def list_field(self) -> tuple[str, ...]:
        """`\\N` followed by N items, each `|text` or a literal; line ends may separate them."""
        text, end = self.text, len(self.text)
        count = self.count()
        items: list[str] = []
        while len(items) < count:
            self.blanks()
            if self.pos >= end:
                raise self.incomplete(f"a list of {count} items")
            char = text[self.pos]
            if char == "|":
                items.append(self.plain())
            elif char == "~" and self.counted():
                items.append(self.literal())
            else:
                raise self.error(f"a list field announces {count} items but has {len(items)}")
        return tuple(items)

    def count(self) -> int:
        """The digits after the marker at pos (`~` or `\\`)."""
        match = _DIGITS.match(self.text, self.pos + 1)
        assert match is not None  # counted() saw a digit
        digits = match.group()
        if len(digits) > _MAX_COUNT_DIGITS:
            raise self.error(f"field length {digits[:12]}... is not a length")
        self.pos = match.end()
        return int(digits)

    # -- helpers -------------------------------------------------------------------------------

    def blanks(self) -> None:
        match = _BLANKS.match(self.text, self.pos)
        assert match is not None
        if match.end() > self.pos:
            self.line += self.text.count("\n", self.pos, match.end())
            self.pos = match.end()

    def error(self, what: str) -> ConversionError:
        return ConversionError(f"{self.source}: line {self.line}: {what}")

    def incomplete(self, what: str) -> IncompleteFileError:
        return IncompleteFileError(
            f"{self.source}: the file ends in the middle of {what} (line {self.line}); the "
            "tester may still be writing it, so it will be read again later"
        )


def _show(text: str) -> str:
    """A piece of the file as an operator would look for it: quoted, control bytes visible."""
    cut = text.split("\n", 1)[0]
    return repr(cut)

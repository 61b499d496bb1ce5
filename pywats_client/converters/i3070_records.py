"""The grammar of Keysight (Agilent) i3070 log records: text in, a tree of `Record`s out.

Owns `parse_records()` and `Record`. Knows the syntax only, not what the records mean (that is
`i3070.py`). A record is `{@NAME` + fields + nested records + `}`; a field starts with `|`
(plain text up to the next marker or line end), `\\N` (a list of N items, each `|text` or a
literal) or `~N|` (a literal of exactly N characters, which may contain `|{}\\` and line ends).
Records nest inside their parent's braces; line ends and blanks between records mean nothing.
A Ctrl-D (0x04) is the tester's mark of a record it cut short.

Real logs are messier than the grammar: a closing brace left out, or one too many. Where the
main records go is known (a @BTEST in its @BATCH, a @BLOCK in its @BTEST, an analog result in
a block or the board, its limits in it), so a record that opens where it cannot sit closes what
is still open down to a record it can sit in, and records after a '}' too many go back into
the board they came from until the next @BATCH or @BTEST. Nothing is dropped; what was repaired
is counted in `Repairs` for the converter to report.

Input is untrusted: the parser is one linear pass with an explicit stack (no recursion), nesting
is capped far beyond any log, and every refusal names the line.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from pywats_client.errors import ConversionError, IncompleteFileError

# The tester nests five deep (BATCH > BTEST > BLOCK > A-xxx > LIM2), and the repairs below
# keep the main records at their level whatever the braces say. Only records of a test plan's
# own (or a hostile file) can go deeper: the cap is for the latter.
MAX_DEPTH = 1000
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

_ANALOG_RECORDS = frozenset(name for name in KNOWN_RECORDS if name.startswith("A-"))
_RESULT_PARENTS = frozenset({"BLOCK", "BTEST"})
# The records a record may sit in, for the records whose place is certain.
PARENTS: dict[str, frozenset[str]] = {
    "BTEST": frozenset({"BATCH"}),
    "BLOCK": frozenset({"BTEST"}),
    **{name: _RESULT_PARENTS for name in (*_ANALOG_RECORDS, "TS", "PF", "TJET", "D-T",
                                          "BS-CON")},
    "LIM2": _ANALOG_RECORDS,
    "LIM3": _ANALOG_RECORDS,
}

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


@dataclass(slots=True)
class Repairs:
    """What the parser repaired in one file: how often, and where first."""

    unclosed: int = 0  # records closed where a record that cannot sit in them began
    first_unclosed: tuple[str, int, int] | None = None  # (name, its line, closed at line)
    stray: int = 0  # '}' that closed no record
    first_stray: int | None = None  # its line
    returned: int = 0  # records put back into their board after it was closed too early
    first_returned: tuple[int, str, int] | None = None  # (line, where back into, its line)

    def __bool__(self) -> bool:
        return bool(self.unclosed or self.stray or self.returned)

    def describe(self) -> str:
        """The repairs in words, for a warning ("" when there were none)."""
        parts = []
        if self.first_unclosed is not None:
            name, line, at = self.first_unclosed
            parts.append(f"{_count(self.unclosed, 'record')} lacked a closing '}}' and "
                         f"{_was(self.unclosed)} closed where the next record of "
                         f"{'its' if self.unclosed == 1 else 'their'} level "
                         f"began (first: @{name} of line {line}, closed at line {at})")
        if self.first_returned is not None:
            line, name, board = self.first_returned
            parts.append(f"{_count(self.returned, _BRACE)} too many closed a "
                         "record early; the records after it were put back into it (first: "
                         f"line {line}, into @{name} of line {board})")
        if self.first_stray is not None:
            parts.append(f"{_count(self.stray, _BRACE)} closed no record and "
                         f"{_was(self.stray)} ignored (first: line {self.first_stray})")
        return "; ".join(parts)


_BRACE = "'}'"


def _count(n: int, what: str) -> str:
    return f"{n} {what}" if n == 1 or what.startswith("'") else f"{n} {what}s"


def _was(n: int) -> str:
    return "was" if n == 1 else "were"


def parse_records(text: str, *, source: str = "the file",
                  repairs: Repairs | None = None) -> list[Record]:
    """The top-level records of an i3070 log, with everything nested in them.

    Unbalanced braces are repaired (see the module's description) and counted in `repairs`
    when given. Raises `IncompleteFileError` when the text ends inside a record (the tester
    or a copy is still writing it) and `ConversionError` for text that breaks the grammar;
    both name `source` and the line.
    """
    return _Parser(text, source, repairs if repairs is not None else Repairs()).parse()


class _Parser:
    """One pass over one text; `pos` only moves forward, so the work is linear in its size."""

    def __init__(self, text: str, source: str, repairs: Repairs) -> None:
        self.text = text
        self.source = source
        self.repairs = repairs
        self.pos = 0
        self.line = 1
        self.stack: list[Record] = []
        self.top: list[Record] = []
        self.names: dict[str, str] = {}
        # The latest @BATCH and board (@BTEST, and the @BATCH it sits in): where records
        # go back to when a '}' too many closed them early.
        self.batch: Record | None = None
        self.board: tuple[Record | None, Record] | None = None

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
                if stack:
                    stack.pop()
                else:
                    self.repairs.stray += 1
                    if self.repairs.first_stray is None:
                        self.repairs.first_stray = self.line
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
        """A new record `name` starting at the current line, nested in the open one, or, for
        a record whose place is known, in the open record it may sit in."""
        stack = self.stack
        if name in KNOWN_RECORDS:
            while stack and stack[-1].name not in KNOWN_RECORDS:
                stack.pop()  # a custom record without its closing brace
            parents = PARENTS.get(name)
            # Usually the open record is where it belongs: no search.
            if name == "BATCH" or (parents is not None and not (
                    stack and stack[-1].name in parents)):
                self.place(name)
        if len(stack) >= MAX_DEPTH:
            raise self.error(f"records are nested more than {MAX_DEPTH} deep, far beyond any "
                             "i3070 log; the file is refused")
        # Names repeat thousands of times: keep one copy of each.
        name = self.names.setdefault(name, name)
        record = Record(name, self.line)
        (stack[-1].children if stack else self.top).append(record)
        stack.append(record)
        if name == "BATCH":
            self.batch, self.board = record, None
        elif name == "BTEST":
            self.board = (stack[-2] if len(stack) > 1 else None, record)
        return record

    def place(self, name: str) -> None:
        """Close what is open above where a known record `name` belongs."""
        stack = self.stack
        if name == "BATCH":
            self.close_down_to(0)
            return
        parents = PARENTS.get(name)
        if parents is None:
            return
        for depth in range(len(stack) - 1, -1, -1):
            if stack[depth].name in parents:
                self.close_down_to(depth + 1)
                return
        if name == "BTEST":
            if self.batch is not None:
                # The @BATCH was closed too early: its boards still belong to it.
                self.reopen(self.batch)
            else:
                self.close_down_to(0)  # a log of boards without a @BATCH
        elif "BTEST" in parents and self.board is not None:
            batch, board = self.board
            self.reopen(*(r for r in (batch, board) if r is not None))

    def reopen(self, *records: Record) -> None:
        """Make `records` (a @BATCH, its board) the open ones again, after a '}' too many."""
        self.close_down_to(0, keep=records)
        self.stack.extend(records)
        self.repairs.returned += 1
        if self.repairs.first_returned is None:
            into = records[-1]
            self.repairs.first_returned = (self.line, into.name, into.line)

    def close_down_to(self, depth: int, keep: tuple[Record, ...] = ()) -> None:
        """Close the open records above `depth`, counting the known ones as repaired (but
        not those in `keep`, which stay open)."""
        stack, repairs = self.stack, self.repairs
        while len(stack) > depth:
            record = stack.pop()
            if record.name in KNOWN_RECORDS and not any(record is k for k in keep):
                repairs.unclosed += 1
                if repairs.first_unclosed is None:
                    repairs.first_unclosed = (record.name, record.line, self.line)

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

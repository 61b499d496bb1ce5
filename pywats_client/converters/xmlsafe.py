"""Safe, streaming, line-numbered XML for the converters that read XML (WSXF and WRML, ATML,
Seica, XJTAG).

Owns `XmlNode` (one element with its start line, so that a message names what an operator
searches for), `parse_xml()` — DOCTYPE and ENTITY declarations refused before and while
parsing, nesting capped, chosen subtrees skipped, chosen elements handed over as soon as they
are complete so that one report at a time is in memory, and chosen elements inside them told
as they start and end, so that a report is mapped while it is read — the choice of the text
encoding, and `sniff_root()`, a cheap look at the root element for `detect()`. Depends only
on the converter base (HEAD_SIZE), `errors` and the stdlib (expat).
"""

from __future__ import annotations

import codecs
import io
import re
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO, ClassVar
from xml.parsers import expat

from pywats_client.converters.base import HEAD_SIZE
from pywats_client.converters.memory import CHECK_EVERY, check_memory
from pywats_client.errors import ConversionError, IncompleteFileError

# Expat's ways of saying "the document stops here", i.e. a file still being written.
_TRUNCATED = {expat.errors.codes[message] for message in (
    expat.errors.XML_ERROR_NO_ELEMENTS, expat.errors.XML_ERROR_UNCLOSED_TOKEN,
    expat.errors.XML_ERROR_PARTIAL_CHAR, expat.errors.XML_ERROR_UNCLOSED_CDATA_SECTION,
)}
_HOSTILE = tuple(marker.encode(codec) for marker in ("<!DOCTYPE", "<!ENTITY")
                 for codec in ("utf-8", "utf-16-le", "utf-16-be"))
_ROOT_START = re.compile(rb"<[A-Za-z_]")
_DECLARED_ENCODING = re.compile(rb"<\?xml[^>]{0,200}encoding\s*=", re.IGNORECASE)
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
# Read in pieces of this size: a bigger read buffer would be allocated (and counted) whole,
# even at the end of the file, when the tree is largest.
_CHUNK = HEAD_SIZE
# What the elements read from a file share while they have no children, no text or no
# attributes: immutable, so that nothing can add to all of them at once. Code that adds
# children or text to an element it did not make gives it a list of its own first.
class _Shared(list[Any]):
    """The one empty list the elements read from a file share: equal to [], never changed."""

    __slots__ = ()

    def _refuse(self, *_: object) -> None:
        raise TypeError("this element shares the empty list of elements read from a file: "
                        "give it a list of its own first")

    # (mypy: the list methods are overloaded; these refuse whatever they are given)
    append = extend = insert = pop = _refuse
    remove = clear = sort = reverse = _refuse  # type: ignore[assignment]
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _refuse  # type: ignore[assignment]


_NONE: Any = _Shared()
_NO_ATTRIBUTES: Any = types.MappingProxyType({})
_SHARED_VALUES = 20_000  # at most this many shared values at once (a hostile file has more)
_HANDLERS = ("StartElementHandler", "EndElementHandler", "CharacterDataHandler",
             "StartCdataSectionHandler", "EndCdataSectionHandler", "StartDoctypeDeclHandler",
             "EntityDeclHandler", "ExternalEntityRefHandler")


class XmlNode:
    """One element: local tag name, namespace, attributes (local names), own text, children
    and the line it starts on. `key` is the tag in lower case, for formats whose writers
    differ in case."""

    __slots__ = ("_formats", "attrib", "children", "key", "line", "ns", "parts", "tag")
    # The attributes `place()` shows, in order of preference, how many, and how much of each.
    IDENTIFYING: ClassVar[tuple[str, ...]] = (
        "Id", "StepID", "ID", "Name", "Description", "Idx", "idx", "SN", "AssetSN", "key")
    SHOWN: ClassVar[int] = 2
    CUT: ClassVar[int] = 40

    def __init__(self, tag: str, ns: str, attrib: dict[str, str], line: int,
                 key: str | None = None) -> None:
        self.tag = tag
        self.key = key if key is not None else tag.lower()
        self.ns = ns
        self.attrib = attrib
        self.line = line
        self.children: list[XmlNode] = []
        self.parts: list[str] = []
        self._formats: bool | None = None

    @property
    def text(self) -> str:
        """The element's own text as written (layout whitespace between children dropped)."""
        return "".join(self.parts)

    def get(self, name: str) -> str | None:
        """The attribute `name`; writers differ in case ("Idx"/"idx"), so case is a fallback."""
        value = self.attrib.get(name)
        if value is None and self.attrib:
            # Most attributes asked for and absent are absent in every case: the names of the
            # element's attributes in lower case are looked up, shared by the elements that
            # have the same attributes (not kept per element: that would cost memory).
            key = _names_of(self.attrib)[0].get(name.lower())
            if key is not None:
                return self.attrib[key]
        return value

    def format_of(self, name: str) -> str | None:
        """The `…Format` sibling of attribute `name` (a display format such as "%.3f")."""
        if self._formats is None:  # most elements have none: skip the lookups then
            self._formats = bool(self.attrib) and _names_of(self.attrib)[1]
        return self.get(name + "Format") if self._formats else None

    def find(self, key: str) -> XmlNode | None:
        """The first child whose tag is `key` in any case (`key` in lower case)."""
        for child in self.children:  # a loop, not next(): the converters' most common call
            if child.key == key:
                return child
        return None

    def findtext(self, key: str) -> str:
        """The stripped text of `find(key)`, "" when there is none."""
        child = self.find(key)
        return child.text.strip() if child is not None else ""

    def child(self, tag: str) -> XmlNode | None:
        """The first child with exactly this tag."""
        for child in self.children:
            if child.tag == tag:
                return child
        return None

    def all(self, tag: str) -> Iterator[XmlNode]:
        """The children with exactly this tag, in document order."""
        return (c for c in self.children if c.tag == tag)

    def path(self, *tags: str) -> XmlNode | None:
        """The element found by following `tags` down from here (first child each time)."""
        node: XmlNode | None = self
        for tag in tags:
            node = node.child(tag) if node is not None else None
        return node

    def descendant(self, tag: str) -> XmlNode | None:
        """The first element with this tag below this one (document order, any depth)."""
        stack = list(reversed(self.children))
        while stack:
            node = stack.pop()
            if node.tag == tag:
                return node
            stack.extend(reversed(node.children))
        return None

    def place(self) -> str:
        """'<Step Id="5" Name="R12"> at line 40': what an operator searches for in the file."""
        shown = [f'{name}="{_cut(self.attrib[name], self.CUT)}"' for name in self.IDENTIFYING
                 if name in self.attrib][:self.SHOWN]
        return f"<{' '.join([self.tag, *shown])}> at line {self.line}"


# Attribute names, as an element has them -> (their lower case -> the name, whether one is a
# `…Format`), for the few combinations a writer uses; bounded, as a hostile file has more.
_NAMES: dict[tuple[str, ...], tuple[dict[str, str], bool]] = {}
_MAX_NAMES = 2_000


def _names_of(attrib: dict[str, str]) -> tuple[dict[str, str], bool]:
    names = tuple(attrib)
    found = _NAMES.get(names)
    if found is None:
        lower: dict[str, str] = {}
        for name in names:
            lower.setdefault(name.lower(), name)  # the first in the element wins, as written
        found = (lower, any(name.endswith("Format") for name in names))
        if len(_NAMES) >= _MAX_NAMES:
            _NAMES.clear()
        _NAMES[names] = found
    return found


class CData(str):
    """Text that stood in a CDATA section (kept apart when `XmlFormat.cdata` asks for it)."""

    __slots__ = ()


@dataclass(frozen=True)
class XmlFormat:
    """How one format's XML is read.

    `skip`: tags (local names) whose subtrees below the root are left out unread.
    `hand_over`: lower-case tags of elements that, as the root or a child of the root, are
    handed to `on_complete` as soon as they end, and then dropped from the tree.
    `stream`: lower-case tags of elements inside a handed-over element whose start and end are
    told to `on_start` and `on_end` as they happen; an element `on_end` has mapped is dropped
    from the tree, so that the tree of a whole report never exists beside the report made
    from it.
    """

    name: str  # as operators know the format, for messages: "WSXF", "ATML", ...
    max_depth: int
    hint: str  # what to do about a file that is not well-formed
    node_type: type[XmlNode] = XmlNode
    namespaces: bool = True
    skip: frozenset[str] = field(default_factory=frozenset)
    hand_over: frozenset[str] = field(default_factory=frozenset)
    stream: frozenset[str] = field(default_factory=frozenset)
    cdata: bool = False  # CDATA text as `CData` parts


# `on_start(element, parent)`; `on_end(element, parent)` -> True when the element is mapped
# and can be dropped from its parent.
StartHandler = Callable[[XmlNode, XmlNode | None], None]
EndHandler = Callable[[XmlNode, XmlNode], bool]


def parse_xml(where: str, source: BinaryIO | bytes, fmt: XmlFormat, *,
              encoding: str | None = None,
              on_root: Callable[[XmlNode], None] | None = None,
              on_complete: Callable[[XmlNode], None] | None = None,
              on_start: StartHandler | None = None, on_end: EndHandler | None = None,
              whole: bool = False) -> XmlNode:
    """Parse `source` (a binary file or bytes) and return the root element.

    `where` starts every message (the file, or "file: member"). `encoding` is the configured
    one (see `xml_encoding`). `on_root` sees the root element first (to refuse a foreign
    file); `on_complete` gets each `fmt.hand_over` element when it ends: the first
    ConversionError it raises is kept and raised after the whole file is read, so that a file
    cut off later is still taken as incomplete. `on_start` sees each `fmt.hand_over` element
    as it starts (without children yet) and, inside one, each `fmt.stream` element; `on_end`
    gets each such `fmt.stream` element when it ends, with its parent (see `XmlFormat`); their
    ConversionErrors are kept like those of `on_complete`, and once there is one, nothing more
    is told or handed over. `whole`: the bytes are known to be complete (an archive member),
    so an early end is damage, not a file still being written.

    Raises ConversionError (DOCTYPE/ENTITY, nesting deeper than `fmt.max_depth`, not
    well-formed XML, unknown encoding, each with the line) or IncompleteFileError.
    """
    stream = io.BytesIO(source) if isinstance(source, bytes) else source
    head = stream.read(HEAD_SIZE)
    if not head.strip(b" \t\r\n\x00"):
        if whole:
            raise ConversionError(f"{where}: the XML is empty; {fmt.hint}")
        raise IncompleteFileError(f"{where}: the file is empty; waiting for the writer")
    # Checked before expat sees a byte (and again by its handlers, for declarations further
    # on): a DOCTYPE can only stand before the root element.
    root_at = _ROOT_START.search(head)
    prolog = head[:root_at.start() if root_at else len(head)]
    for marker in _HOSTILE:
        at = prolog.find(marker)
        if at >= 0:
            raise _refuse_dtd(where, fmt, prolog.count(b"\n", 0, at) + 1)
    chosen = xml_encoding(head, encoding)
    problems: list[ConversionError] = []
    parser: expat.XMLParserType | None = None
    try:
        parser = expat.ParserCreate(chosen, namespace_separator="}" if fmt.namespaces else None)
        tree = _TreeBuilder(where, fmt, parser, on_root, on_complete, on_start, on_end,
                            problems)
        parser.Parse(head, False)
        read = 0
        while chunk := stream.read(_CHUNK):
            parser.Parse(chunk, False)
            read += len(chunk)
            if read >= CHECK_EVERY:  # a large file: stop before the process is over budget
                read = 0
                check_memory(where)
        parser.Parse(b"", True)
    except expat.ExpatError as exc:
        if exc.code in _TRUNCATED and not whole:
            raise IncompleteFileError(
                f"{where}: the XML ends early at line {exc.lineno} (file still being written, "
                "or cut off)"
            ) from None
        raise ConversionError(
            f"{where}: not well-formed XML at line {exc.lineno}, column {exc.offset + 1}: "
            f"{expat.errors.messages.get(exc.code, exc)}; {fmt.hint}"
        ) from None
    except LookupError:  # an encoding Python does not know
        named = f"unknown encoding {chosen!r} in the watch folder's settings" if chosen else (
            "the XML declares an encoding Python does not know")
        raise ConversionError(
            f"{where}: {named}; set the watch folder's encoding to a Python codec name such "
            "as utf-8 or cp1252"
        ) from None
    except ValueError as exc:  # an encoding expat cannot use (multi-byte code pages)
        raise ConversionError(f"{where}: the XML cannot be decoded: {exc}") from None
    finally:
        if parser is not None:
            # The handlers and the parser refer to each other: without this the parser and
            # the tree would wait for the garbage collector.
            for handler in _HANDLERS:
                setattr(parser, handler, None)
    if problems:
        raise problems[0]
    assert tree.root is not None  # expat refuses a document without a root element
    return tree.root


def xml_encoding(head: bytes, configured: str | None) -> str | None:
    """The encoding to give expat for a file starting with `head`; None lets the file say.

    A byte order mark (or UTF-16 without one) is the file's own word. A configured encoding
    beats the file's declaration: that is what it is for (TestStand declares iso-8859-1 but
    writes the station's code page). A file without declaration is UTF-8, and one whose head
    is not UTF-8 is read as cp1252, as the text formats are (`textio.decode`).
    """
    if head.startswith((codecs.BOM_UTF8, *_UTF16_BOMS)) or head.startswith((b"<\x00", b"\x00<")):
        return None
    if configured:
        return configured
    if _DECLARED_ENCODING.match(head):
        return None
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A character cut by the end of the head is not another encoding.
        if not (exc.reason == "unexpected end of data" and exc.end >= len(head)):
            return "cp1252"
    return None


@dataclass(frozen=True)
class RootTag:
    """What `sniff_root()` sees of a file's root element."""

    local: str  # the tag without its prefix
    ns: str  # the namespace its prefix (or the default) is declared with on the element
    attrib: dict[str, str]
    doctype: bool = False  # the file declares a DOCTYPE before it (local is then "")


_PROLOG = re.compile(r"\s*(?:<\?.*?\?>|<!--.*?-->)", re.DOTALL)
_START_TAG = re.compile(r"<([A-Za-z_][\w.:-]*)([^>]*)")
# What an XML file starts with: a byte order mark or blanks, then "<" (in UTF-8 or UTF-16).
_STARTS_XML = re.compile(rb"(?:\xef\xbb\xbf|\xff\xfe|\xfe\xff)*(?:[ \t\r\n]|\x00[ \t\r\n]|"
                         rb"[ \t\r\n]\x00)*(?:<|\x00<)")
_ATTR = re.compile(r"""([\w:.-]+)\s*=\s*(?:"([^"]*)"|'([^']*)')""")


def sniff_root(head: bytes) -> RootTag | None:
    """The root element of an XML file from its first bytes (UTF-8 or UTF-16, with or
    without byte order mark), without parsing: for `detect()`. None when no element starts
    the file after its declaration and comments."""
    if not _STARTS_XML.match(head):
        return None  # not markup at all (a JSON or text file): no need to decode the head
    text = _decode_head(head)
    pos = 0
    while match := _PROLOG.match(text, pos):
        pos = match.end()
    rest = text[pos:].lstrip()
    if rest.startswith("<!DOCTYPE"):
        return RootTag("", "", {}, doctype=True)
    tag = _START_TAG.match(rest)
    if tag is None:
        return None
    prefix, _, local = tag.group(1).rpartition(":")
    attrib = {m.group(1): m.group(2) if m.group(2) is not None else m.group(3)
              for m in _ATTR.finditer(tag.group(2))}
    return RootTag(local, attrib.get(f"xmlns:{prefix}" if prefix else "xmlns", ""), attrib)


class _TreeBuilder:
    """The expat handlers of one parse: build nodes, cap the depth, skip, hand over, stream."""

    def __init__(self, where: str, fmt: XmlFormat, parser: expat.XMLParserType,
                 on_root: Callable[[XmlNode], None] | None,
                 on_complete: Callable[[XmlNode], None] | None,
                 on_start: StartHandler | None, on_end: EndHandler | None,
                 problems: list[ConversionError]) -> None:
        self.root: XmlNode | None = None
        stack: list[XmlNode] = []
        # One string per tag name, not per element, and whether the tag is handed over or
        # streamed.
        names: dict[str, tuple[str, str, str, bool]] = {}
        new = object.__new__
        values: dict[str, str] = {}  # short attribute values, shared
        skipping = 0  # depth inside a skipped subtree
        handing = 0  # handed-over elements open (a report, or a report inside the root one)
        # The element whose children were all mapped and dropped: whitespace after them is
        # still layout (it is only ever the innermost open element).
        emptied: XmlNode | None = None
        in_cdata = False
        node_type, max_depth, skip = fmt.node_type, fmt.max_depth, fmt.skip
        hand_over, namespaces = fmt.hand_over, fmt.namespaces
        stream = fmt.stream if on_start is not None or on_end is not None else frozenset()
        watched = hand_over | stream  # one look-up for the elements that are neither

        def start(name: str, attrs: dict[str, str]) -> None:
            nonlocal skipping, handing
            if skipping:
                skipping += 1
                return
            split = names.get(name)
            if split is None:
                ns, _, tag = name.rpartition("}")
                split = names[name] = (ns, tag, tag.lower(), tag.lower() in watched)
            if stack and split[1] in skip:
                skipping = 1
                return
            line = parser.CurrentLineNumber
            if len(stack) >= max_depth:
                raise ConversionError(
                    f"{where}: line {line}: elements are nested more than {max_depth} deep "
                    f"(at <{split[1]}>); {fmt.name} files never nest so deep, so the file is "
                    "refused"
                )
            # Short values repeat from element to element ("Passed", "Main", "0"): one string
            # each, shared, instead of one per element (a third of a large tree's memory).
            if len(values) > _SHARED_VALUES:
                values.clear()
            if not attrs:
                attrs = _NO_ATTRIBUTES
            elif namespaces:
                attrs = {k.rpartition("}")[2]: values.setdefault(v, v) if len(v) <= 24 else v
                         for k, v in attrs.items()}
            else:
                attrs = {k: values.setdefault(v, v) if len(v) <= 24 else v
                         for k, v in attrs.items()}
            # Made without its lists: most elements of a large file are leaves, and two empty
            # lists each are a third of their memory. They share `_NONE` until they get one.
            node = new(node_type)
            node.tag, node.ns, node.key = split[1], split[0], split[2]
            node.attrib, node.line, node._formats = attrs, line, None
            node.children = node.parts = _NONE
            parent: XmlNode | None = None
            if stack:
                parent = stack[-1]
                if not parent.children:
                    if parent.parts and parent.text.isspace():
                        parent.parts = _NONE  # indentation before the first child element
                    parent.children = [node]
                else:
                    parent.children.append(node)
            else:
                self.root = node
                if on_root is not None:
                    on_root(node)
            stack.append(node)
            if split[3]:
                if split[2] in hand_over and len(stack) <= 2:
                    handing += 1
                elif not handing or split[2] not in stream:
                    return
                if on_start is not None and not problems:
                    try:
                        on_start(node, parent)
                    except ConversionError as exc:
                        problems.append(exc)
                    except RecursionError:
                        problems.append(too_deep(node))

        def end(name: str) -> None:
            nonlocal skipping, handing, emptied
            if skipping:
                skipping -= 1
                return
            node = stack.pop()
            if node.key not in watched:
                return
            if node.key in hand_over and len(stack) <= 1:
                handing -= 1
                if stack:
                    stack[-1].children.pop()  # handed over: one report in memory at a time
                else:  # the root itself: what is returned is the element without its tree
                    self.root = node.__class__(node.tag, node.ns, node.attrib, node.line,
                                               node.key)
                emptied = None
                hand(node)
            elif handing and node.key in stream:
                parent = stack[-1]
                drop = True  # after a problem nothing more is mapped: it is only dropped
                if on_end is not None and not problems:
                    try:
                        drop = on_end(node, parent)
                    except ConversionError as exc:
                        problems.append(exc)
                    except RecursionError:
                        problems.append(too_deep(node))
                if drop:
                    children = parent.children
                    children.pop()
                    if not children:
                        emptied = parent

        def too_deep(node: XmlNode) -> ConversionError:
            return ConversionError(f"{where}: {node.place()} is nested too deeply to read")

        def hand(node: XmlNode) -> None:
            # Only the first problem is kept; parsing goes on so that a file still being
            # written is reported as incomplete (retried), not as broken.
            if problems or on_complete is None:
                return
            try:
                on_complete(node)
            except ConversionError as exc:
                problems.append(exc)
            except RecursionError:
                problems.append(too_deep(node))

        def text(data: str) -> None:
            # Whitespace between child elements is layout, not content; on a report with
            # 100 000 steps keeping it would cost megabytes.
            if stack and not skipping:
                node = stack[-1]
                if not ((node.children or node is emptied) and data.isspace()):
                    if node.parts:
                        node.parts.append(data)
                    else:  # short texts repeat too ("Main", "Passed"): shared like values
                        node.parts = [values.setdefault(data, data) if len(data) <= 24
                                      else data]

        def text_or_cdata(data: str) -> None:
            if stack and not skipping:
                node = stack[-1]
                if in_cdata:
                    data = CData(data)
                elif (node.children or node is emptied) and data.isspace():
                    return
                if node.parts:
                    node.parts.append(data)
                else:
                    node.parts = [data]

        def cdata(opening: bool) -> None:
            nonlocal in_cdata
            in_cdata = opening

        def refuse(*_: object) -> int:
            raise _refuse_dtd(where, fmt, parser.CurrentLineNumber)

        parser.buffer_text = True
        parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        parser.StartElementHandler = start
        parser.EndElementHandler = end
        parser.CharacterDataHandler = text_or_cdata if fmt.cdata else text
        if fmt.cdata:
            parser.StartCdataSectionHandler = lambda: cdata(True)
            parser.EndCdataSectionHandler = lambda: cdata(False)
        parser.StartDoctypeDeclHandler = refuse
        parser.EntityDeclHandler = refuse
        parser.ExternalEntityRefHandler = refuse


def _refuse_dtd(where: str, fmt: XmlFormat, line: int) -> ConversionError:
    return ConversionError(
        f"{where}: the file declares a DOCTYPE or ENTITY (line {line}). {fmt.name} files never "
        "do, and such declarations can make an XML reader expand entities without end or "
        "read other files, so the file is refused"
    )


def _decode_head(head: bytes) -> str:
    if head.startswith(_UTF16_BOMS):
        codec = "utf-16"
    elif head.startswith(b"<\x00"):
        codec = "utf-16-le"
    elif head.startswith(b"\x00<"):
        codec = "utf-16-be"
    else:
        return head.decode("utf-8", errors="replace").lstrip("\ufeff")
    return head[: len(head) // 2 * 2].decode(codec, errors="replace").lstrip("\ufeff")


def _cut(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[:limit] + "..."

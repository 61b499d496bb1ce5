"""What every built-in converter shares: the process-code rule and the options
(`converters/options.py`), reading text (`converters/textio.py`) and safe XML
(`converters/xmlsafe.py`), checked once here and across the converters that use them."""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pywats_client.converters import (
    BUILTIN_CONVERTERS,
    ConversionError,
    ConverterContext,
    ConverterRegistry,
    IncompleteFileError,
)
from pywats_client.converters.builtin import PROCESS_CODE_FIX, ConversionOptions
from pywats_client.converters.textio import check_size, decode, reading
from pywats_client.converters.wsjf import WATSStandardJsonConverter
from pywats_client.converters.xmlsafe import (
    CData,
    XmlFormat,
    XmlNode,
    parse_xml,
    sniff_root,
    xml_encoding,
)
from pywats_client.errors import ProcessListUnknownError

FIXTURES = Path(__file__).resolve().parent / "fixtures"
REGISTRY = ConverterRegistry()
# One file of each format that names no WATS process of its own.
NO_PROCESS_IN_FILE = {
    "ATMLConverter": FIXTURES / "atml" / "edge_cases_6_01.xml",
    "KeysightI3070Converter": FIXTURES / "i3070" / "digital_failed.log",
    "TeradyneICTConverter": FIXTURES / "teradyne" / "gr228x_no_end_line.log",
    "TeradyneSpectrumICTConverter": FIXTURES / "teradyne" / "spectrum_failed_board.txt",
    "SPEAConverter": FIXTURES / "spea" / "two_boards_ddmm.csv",
    "SeicaXMLConverter": FIXTURES / "seica" / "pass_single_board.xml",
    "KlippelConverter": (FIXTURES / "klippel" / "pass_cp1252"
                         / "DUT A-17 2021-03-02 08-15-00-2 UTC+0100.txt"),
    "XJTAGConverter": FIXTURES / "xjtag" / "stopped_run.xml",
}


def codes(name: str, context: ConverterContext) -> set[Any]:
    result = REGISTRY.create(name).convert(NO_PROCESS_IN_FILE[name], context)
    reports = result if isinstance(result, list) else [result]
    return {report["processCode"] for report in reports}


# -- the process-code rule ------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(NO_PROCESS_IN_FILE))
def test_no_process_anywhere_is_an_error_that_says_what_to_set(name: str) -> None:
    path = NO_PROCESS_IN_FILE[name]
    with pytest.raises(ConversionError) as caught:
        REGISTRY.create(name).convert(path, ConverterContext(station_name="ST"))
    message = str(caught.value)
    assert not isinstance(caught.value, IncompleteFileError)
    assert message.startswith(str(path)), message
    assert "no process code" in message and message.endswith(PROCESS_CODE_FIX), message


@pytest.mark.parametrize("name", sorted(NO_PROCESS_IN_FILE))
def test_the_process_comes_from_the_settings(name: str) -> None:
    # The folder's arguments beat converters.defaults ...
    assert codes(name, ConverterContext(arguments={"process_code": "60"},
                                        defaults={"process_code": 50})) == {60}
    assert codes(name, ConverterContext(defaults={"process_code": 50})) == {50}
    # ... and a process name is looked up in the server's list.
    by_name = ConverterContext(defaults={"process_name": "PCBA test"},
                               processes={"PCBA test": 50, "ICT": 40})
    assert codes(name, by_name) == {50}
    with pytest.raises(ConversionError, match="process_name 'PCBA test' is not in the "
                                              "server's process list"):
        codes(name, ConverterContext(defaults={"process_name": "PCBA test"},
                                     processes={"ICT": 40}))
    # A named process is never guessed: without the list, the file waits for it.
    with pytest.raises(ProcessListUnknownError, match="process_name is set to 'PCBA test', "
                                                      "which cannot be looked up yet"):
        codes(name, ConverterContext(defaults={"process_name": "PCBA test"}))


@pytest.mark.parametrize(("setting", "problem"), [
    ("fifty", "process_code 'fifty' is not a whole number"),
    ("1.5", "process_code '1.5' is not a whole number"),
    ("70000", "process_code 70000 is out of range"),
])
def test_a_bad_setting_is_named(setting: str, problem: str) -> None:
    for name in NO_PROCESS_IN_FILE:
        with pytest.raises(ConversionError, match=problem):
            codes(name, ConverterContext(defaults={"process_code": setting}))


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


WSTF = ("--Header-Start--\nSerialNumber\tS1\nPartNumber\tP1\n{process}--Step-Data-Start--\n"
        "ActionStep\tStart\n--Step-Data-End--\nUUTStatus\tPassed\n--UUT-End--\n")
WSXF = ('<Reports xmlns="http://wats.virinco.com/schemas/WATS/Report/wsxf"><Report type="UUT" '
        'SN="S1" PN="P1" Rev="A" Result="Passed" Start="2026-01-01T10:00:00+01:00">{process}'
        '<Step Name="Main" StepType="SequenceCall" Status="Passed"><SequenceCall Name="Main"/>'
        "</Step></Report></Reports>")
WSJF = '{{"type": "T", "pn": "P1", "sn": "S1", "rev": "A", {process}"result": "P", "root": {{}}}}'
# (converter, file name, template, the file's code, the file's process name)
FILE_PROCESS = [
    ("WATSStandardTextConverter", "u.txt", WSTF, "OperationTypeCode\t20\n",
     "OperationTypeName\tICT\n"),
    ("WATSStandardXMLConverter", "u.xml", WSXF, '<Process Code="20"/>', '<Process Name="ICT"/>'),
    ("WATSStandardJsonConverter", "u.json", WSJF, '"processCode": 20, ',
     '"processName": "ICT", '),
]


@pytest.mark.parametrize(("name", "file", "template", "code", "process"), FILE_PROCESS)
def test_what_the_file_gives_comes_first(tmp_path: Path, name: str, file: str, template: str,
                                         code: str, process: str) -> None:
    def convert(process_text: str, context: ConverterContext) -> dict[str, Any]:
        path = write(tmp_path, file, template.format(process=process_text))
        result = REGISTRY.create(name).convert(path, context)
        report = result[0] if isinstance(result, list) else result
        assert isinstance(report, dict)
        return report

    settings_ = ConverterContext(defaults={"process_code": 50}, processes={"ICT": 40})
    assert convert(code, settings_)["processCode"] == 20  # the file's code
    named = convert(process, settings_)
    assert (named["processCode"], named["processName"]) == (40, "ICT")  # its name, looked up
    # A name is never replaced by the default code: without the list the file waits ...
    for waiting in (ConverterContext(defaults={"process_code": 50}), ConverterContext()):
        with pytest.raises(ProcessListUnknownError, match="'ICT', which cannot be looked up "
                                                          "yet"):
            convert(process, waiting)
    # ... and a name the list lacks is an error naming the list.
    with pytest.raises(ConversionError, match=r"the process 'ICT' is not one the server knows "
                                              r"\(its processes: 'SW Debug' \(10\)\)"):
        convert(process, ConverterContext(defaults={"process_code": 50},
                                          processes={"SW Debug": 10}))


def test_options_are_trimmed_text_and_know_where_they_were_set() -> None:
    converter = WATSStandardJsonConverter(revision=" B ")
    context = ConverterContext(arguments={"part_number": "PN-A", "encoding": "cp1252"},
                               defaults={"part_number": "PN-D", "operator": "night",
                                         "sequence_name": "Seq", "process_code": 5})
    options = ConversionOptions.of(converter, context, Path("x.json"))
    assert (options.part_number, options.revision, options.operator) == ("PN-A", "B", "night")
    assert (options.encoding, options.process_code_setting) == ("cp1252", "5")
    assert options.argument("part_number") == "PN-A"
    assert options.argument("revision") == "B"  # the converter's own arguments count
    assert options.argument("sequence_name") == ""  # only converters.defaults sets it
    # The context's encoding counts when it is not the default UTF-8.
    assert ConversionOptions.of(converter, ConverterContext(), Path("x")).encoding is None
    assert ConversionOptions.of(converter, ConverterContext(encoding="latin-1"),
                                Path("x")).encoding == "latin-1"


# -- reading text ----------------------------------------------------------------------------------


TEXT = "Prüfer\tJürgen µ\n"


@pytest.mark.parametrize(("data", "encoding"), [
    (TEXT.encode("utf-8"), None),
    (codecs.BOM_UTF8 + TEXT.encode("utf-8"), None),
    (codecs.BOM_UTF8 + TEXT.encode("utf-8"), "cp1252"),  # the byte order mark wins
    (TEXT.encode("utf-16"), "cp1252"),
    (TEXT.encode("cp1252"), None),  # not UTF-8: the Windows code page
    (TEXT.encode("cp1252"), "cp1252"),
    (TEXT.encode("latin-1"), "latin-1"),
])
def test_decode_rule(data: bytes, encoding: str | None) -> None:
    assert decode(data, Path("f.txt"), encoding) == TEXT


def test_decode_errors_name_the_file_line_and_fix() -> None:
    data = b"line one\n" + TEXT.encode("cp1252")
    with pytest.raises(ConversionError, match=r"^f\.txt: line 2 is not valid utf-8 \(byte "
                                              r"\d+\); set the watch folder's encoding"):
        decode(data, Path("f.txt"), "utf-8")
    with pytest.raises(ConversionError, match="unknown encoding 'klingon' in the watch "
                                              "folder's settings"):
        decode(data, Path("f.txt"), "klingon")
    for encoding in (None, "utf-8"):
        with pytest.raises(IncompleteFileError, match="middle of a character"):
            decode("Ω".encode()[:1], Path("f.txt"), encoding)


def test_size_cap_is_checked_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "big.log"
    with open(path, "wb") as fh:  # sparse: no disk space, no time
        fh.truncate(3 * 1024 * 1024)
    with pytest.raises(ConversionError, match=r"big\.log: the file is 3 MB; GR228x files over "
                                              r"2 MB are refused \(check that"):
        check_size(path, 2 * 1024 * 1024, "GR228x")
    assert check_size(path, 4 * 1024 * 1024, "GR228x") == 3 * 1024 * 1024
    with pytest.raises(IncompleteFileError, match="is not there"):
        check_size(tmp_path / "gone", 10, "Klippel", missing_is_incomplete=True)
    with pytest.raises(ConversionError, match="cannot read the file"):
        check_size(tmp_path / "gone", 10, "Klippel")


@pytest.mark.parametrize(("text", "expected"), [
    ("1.5", ("number", 1.5)), (" -2,5 ", ("number", -2.5)), ("1e3", ("number", 1000.0)),
    ("-NAN", ("not finite", None)), ("1.#INF", ("not finite", None)),
    ("1e999", ("not finite", None)), ("Automatic", ("text", None)), ("", ("text", None)),
])
def test_reading_measured_values(text: str, expected: tuple[str, float | None]) -> None:
    assert reading(text) == expected


# -- safe XML ------------------------------------------------------------------------------------

FORMAT = XmlFormat("Test", 8, "fix the writer", hand_over=frozenset({"item"}),
                   skip=frozenset({"noise"}))


def test_elements_are_handed_over_one_at_a_time() -> None:
    seen: list[tuple[str, int, int]] = []

    def complete(node: XmlNode) -> None:
        seen.append((node.get("id") or "", node.line, len(root_children)))

    root_children: list[XmlNode] = []

    def on_root(root: XmlNode) -> None:
        nonlocal root_children
        root_children = root.children

    data = (b'<?xml version="1.0"?>\n<list>\n  <item ID="a"><x>1</x></item>\n'
            b'  <noise><item id="hidden"/></noise>\n  <item id="b">  </item>\n</list>\n')
    root = parse_xml("f.xml", data, FORMAT, on_root=on_root, on_complete=complete)
    # Handed over as each ended (attribute case is a fallback), then dropped from the tree;
    # the skipped subtree was never read.
    assert seen == [("a", 3, 0), ("b", 5, 0)]
    assert root.children == [] and root.line == 2


def test_problems_of_a_handed_over_element_wait_for_the_end_of_the_file() -> None:
    def complete(node: XmlNode) -> None:
        raise ConversionError(f"f.xml: {node.place()}: bad item")

    data = b'<list><item Name="one"/><item Name="two"/></list>'
    with pytest.raises(ConversionError, match=r'^f\.xml: <item Name="one"> at line 1: bad'):
        parse_xml("f.xml", data, FORMAT, on_complete=complete)
    # A file still being written is taken as such, whatever its first element said.
    with pytest.raises(IncompleteFileError, match="ends early at line 1"):
        parse_xml("f.xml", data[:-7], FORMAT, on_complete=complete)
    # ... unless it is known to be whole (an archive member).
    with pytest.raises(ConversionError, match="not well-formed XML at line 1") as caught:
        parse_xml("f.xml", data[:-7], FORMAT, on_complete=complete, whole=True)
    assert not isinstance(caught.value, IncompleteFileError)


STREAM = XmlFormat("Test", 8, "fix the writer", hand_over=frozenset({"item"}),
                   stream=frozenset({"step"}))


def test_steps_are_told_as_they_start_and_end_and_dropped_once_mapped() -> None:
    told: list[str] = []
    widest = 0

    def start(node: XmlNode, parent: XmlNode | None) -> None:
        told.append(f"start {node.get('n') or node.tag} in {parent.tag if parent else None}")

    def end(node: XmlNode, parent: XmlNode) -> bool:
        nonlocal widest
        told.append(f"end {node.get('n')}")
        widest = max(widest, len(parent.children))  # the element tree stays one path wide
        return parent.tag != "keep"  # mapped (dropped), except in <keep>

    kept: list[XmlNode] = []
    data = (b'<list>\n<item>\n  <step n="1">\n    <step n="1.1"/>\n    <step n="1.2"/>\n'
            b'  </step>\n  <step n="2"/>\n  <keep><step n="k"/></keep>\n</item>\n'
            b'<step n="outside"/><other><item><step n="deep"/></item></other>\n</list>')
    parse_xml("f.xml", data, STREAM, on_start=start, on_end=end, on_complete=kept.append)
    assert told == ["start item in list", "start 1 in item", "start 1.1 in step", "end 1.1",
                    "start 1.2 in step", "end 1.2", "end 1", "start 2 in item", "end 2",
                    "start k in keep", "end k"]
    assert widest == 1
    # What was mapped is gone from the tree, layout whitespace after it with it; the rest
    # stays as it was read.
    [item] = kept
    assert [child.tag for child in item.children] == ["keep"] and item.text == ""
    assert [step.get("n") for step in item.children[0].children] == ["k"]


def test_problems_of_a_streamed_element_wait_for_the_end_of_the_file() -> None:
    ended: list[str] = []

    def end(node: XmlNode, parent: XmlNode) -> bool:
        ended.append(node.get("n") or "")
        raise ConversionError(f"f.xml: {node.place()}: bad step")

    data = b'<list><item><step n="1"/><step n="2"/></item><item><step n="3"/></item></list>'
    with pytest.raises(ConversionError, match=r'^f\.xml: <step> at line 1: bad step'):
        parse_xml("f.xml", data, STREAM, on_end=end)
    assert ended == ["1"]  # once there is a problem, nothing more is told
    with pytest.raises(IncompleteFileError, match="ends early"):
        parse_xml("f.xml", data[:-7], STREAM, on_end=end)


@pytest.mark.parametrize("codec", ["utf-8", "utf-16"])
def test_doctype_is_refused_before_parsing_with_its_line(codec: str) -> None:
    data = ('<?xml version="1.0"?>\n<!DOCTYPE list [<!ENTITY a "b">]>\n<list/>').encode(codec)
    with pytest.raises(ConversionError, match=r"declares a DOCTYPE or ENTITY \(line 2\)\. "
                                              "Test files never do"):
        parse_xml("f.xml", data, FORMAT)


def test_nesting_is_capped_naming_line_and_element() -> None:
    data = b"<list>\n" + b"<a>" * 20 + b"</a>" * 20 + b"</list>"
    with pytest.raises(ConversionError, match=r"f\.xml: line 2: elements are nested more than "
                                              r"8 deep \(at <a>\)"):
        parse_xml("f.xml", data, FORMAT)


def test_text_cdata_and_layout_whitespace() -> None:
    fmt = XmlFormat("Test", 8, "fix", cdata=True)
    root = parse_xml("f.xml", b"<r>\n  <a> keep </a>\n  <b>\n <![CDATA[ as is ]]>\n </b>\n</r>",
                     fmt)
    a, b = root.children
    assert root.parts == [] and a.text == " keep "
    assert [type(part) for part in b.parts if part.strip()] == [CData]


@pytest.mark.parametrize(("head", "configured", "chosen"), [
    (b'<?xml version="1.0" encoding="iso-8859-1"?><r>\xf8</r>', None, None),
    (b'<?xml version="1.0" encoding="iso-8859-1"?><r>\xf8</r>', "cp1252", "cp1252"),
    (b"<r>\xf8</r>", None, "cp1252"),  # undeclared and not UTF-8
    (b"<r>\xc3\xb8</r>", None, None),
    (b"<r>\xc3", None, None),  # a character cut by the end of the head
    (codecs.BOM_UTF8 + b"<r/>", "cp1252", None),  # the byte order mark wins
    ("<r>ø</r>".encode("utf-16-le"), "cp1252", None),
])
def test_xml_encoding(head: bytes, configured: str | None, chosen: str | None) -> None:
    assert xml_encoding(head, configured) == chosen


def test_sniff_root() -> None:
    head = ('\ufeff<?xml version="1.0"?>\n<!-- c -->\n<t:Root xmlns:t="urn:x" a="1">'
            ).encode("utf-16")
    root = sniff_root(head)
    assert root is not None and (root.local, root.ns, root.doctype) == ("Root", "urn:x", False)
    doctype = sniff_root(b"<!DOCTYPE r><r/>")
    assert doctype is not None and doctype.doctype
    assert sniff_root(b"plain text") is None


# -- detection needs no guard of its own -----------------------------------------------------------


@settings(max_examples=40, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(head=st.binary(max_size=600), suffix=st.sampled_from([".xml", ".txt", ".log", ".json",
                                                             ".xjlog", ".csv", ""]))
@pytest.mark.parametrize("name", [n for n in BUILTIN_CONVERTERS if n != "AIConverter"])
def test_detect_never_raises(name: str, head: bytes, suffix: str) -> None:
    score, why = REGISTRY.create(name).detect_with_reason(Path(f"x{suffix}"), head)
    assert 0.0 <= score <= 1.0 and isinstance(why, str)
    assert REGISTRY.create(name).detect(Path(f"x{suffix}"), head) == score

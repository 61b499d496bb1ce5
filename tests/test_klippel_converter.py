"""KlippelConverter on Virinco's Klippel sample, on small fixtures, and on broken units."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pywats_client.converters import ConverterContext, ConverterRegistry
from pywats_client.converters.klippel import KlippelConverter
from pywats_client.errors import ConversionError, IncompleteFileError
from pywats_client.report.checks import validate
from pywats_client.report.model import iter_steps
from pywats_client.service.pipeline import convert_file
from tests.conftest import SAMPLES, needs_samples, sample
from tests.converting import FUZZ_SETTINGS, refused_or_converted, sample_files

KLIPPEL_LOG = SAMPLES / "klippel" / "Log"
SAMPLE = KLIPPEL_LOG / "DUT xyz115 2020-05-14 10-01-37-5 UTC+0200.txt"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "klippel"
PASS_CP1252 = FIXTURES / "pass_cp1252" / "DUT A-17 2021-03-02 08-15-00-2 UTC+0100.txt"
VOID_SPARSE = FIXTURES / "void_sparse" / "DUT B 9 2022-11-30 23-59-59-9 UTC-0500.txt"
NOISE_COMMA = FIXTURES / "noise_decimal_comma" / "DUT N1 2023-01-05 07-00-00-0 UTC+0000.txt"
CONTEXT = ConverterContext(station_name="QC-01", location="Line 2", purpose="Production",
                           file_mtime=1_600_000_000.0)
OPTIONS = {"part_number": "SPK-115", "revision": "B", "process_code": 50}


def needs_sample() -> None:
    sample(SAMPLE)


def convert(path: Path, context: ConverterContext = CONTEXT, **options: Any) -> dict[str, Any]:
    """Convert as the service does (finalize + validate) and return the one report."""
    converter = KlippelConverter(**{**OPTIONS, **options})
    reports = convert_file(path, converter, context).reports
    assert len(reports) == 1
    return reports[0]


def steps_by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {step["name"]: step for _, step in iter_steps(report["root"])}


def copy_unit(header: Path, target: Path) -> Path:
    """A copy of the header file and its data folder in `target` (writable)."""
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(header, target / header.name)
    folder = header.with_name(header.stem)
    if folder.is_dir():
        # copyfile, not copy2: the samples are read-only and the copies are edited.
        shutil.copytree(folder, target / folder.name, copy_function=shutil.copyfile)
        (target / folder.name).chmod(0o755)
    return target / header.name


def series(step: dict[str, Any], name: str) -> tuple[list[str], list[str]]:
    found = next(s for s in step["chart"]["series"] if s["name"] == name)
    return found["xdata"].split(";"), found["ydata"].split(";")


# -- the real sample -------------------------------------------------------------------------


def test_sample_header_fields() -> None:
    needs_sample()
    report = convert(SAMPLE)
    assert (report["type"], report["sn"], report["pn"], report["rev"]) == (
        "T", "xyz115", "SPK-115", "B")
    assert report["processCode"] == 50
    assert report["result"] == "F"  # Ctrl_OverallVerdict=0
    # Cfg_DutStartTime=2020-5-20-135-5-14-10-1-37-563-120-1.589E+09
    assert report["start"] == "2020-05-14T10:01:37.563+02:00"
    assert report["startUTC"] == "2020-05-14T08:01:37.563Z"
    assert report["uut"] == {"user": "m.liebig"}  # Cfg_UserName=win:m.liebig
    assert report["machineName"] == "QC-01"  # Cfg_PCName is empty: the station's name
    assert report["miscInfos"] == [
        {"description": "Overall verdict", "text": "Fail (0)"},
        {"description": "Login mode", "text": "PROGRAMMER"},
        {"description": "Speaker", "text": "sp2"},
        {"description": "Database", "text": "example.kdbx"},
    ]
    validate(report)


def test_sample_step_tree_and_statuses() -> None:
    needs_sample()
    root = convert(SAMPLE)["root"]
    assert (root["name"], root["status"]) == ("example", "F")
    assert root["seqCall"]["path"] == "D:\\databases\\WATS\\example.kdbx"
    tree = [(step["id"], step["name"], step["status"], step["stepType"])
            for _, step in iter_steps(root)]
    assert tree == [
        (0, "example", "F", "SequenceCall"),
        (1, "Impedance", "F", "SequenceCall"),
        (2, "re", "F", "ET_NLT"),
        (3, "qts", "S", "ET_NLT"),
        (4, "imp", "F", "WATS_XYGMNLT"),
        (5, "Sound Pressure", "P", "SequenceCall"),
        (6, "level", "P", "ET_NLT"),
        (7, "rbz", "P", "WATS_XYGMNLT"),
        (8, "resp", "P", "WATS_XYGMNLT"),
        (9, "thd", "P", "WATS_XYGMNLT"),
        # Listed in Results_Fail / Results_Pass, but no data file holds them.
        (10, "fs", "F", "ET_PFT"),
        (11, "pol", "P", "ET_PFT"),
    ]
    measurements = sum(len(step.get("numericMeas", [])) + len(step.get("booleanMeas", []))
                       for _, step in iter_steps(root))
    assert measurements == 7


def test_sample_values_limits_and_missing_values() -> None:
    needs_sample()
    steps = steps_by_name(convert(SAMPLE))
    assert steps["level"]["numericMeas"] == [{
        "compOp": "GELE", "name": None, "status": "P", "unit": None, "value": 95.203,
        "lowLimit": 91.337, "highLimit": 97.337}]
    # re: value "-" with limits 2.8764..3.5156, listed in Results_Fail.
    assert "numericMeas" not in steps["re"]
    assert steps["re"]["reportText"] == (
        "Fail (Results_Fail); no value measured (limits 2.8764 .. 3.5156)")
    # qts: "-" and no limits, in no result list.
    assert steps["qts"]["reportText"] == "no value measured"
    assert steps["fs"]["booleanMeas"] == [{"name": None, "status": "F"}]
    assert steps["pol"]["booleanMeas"] == [{"name": None, "status": "P"}]


def test_sample_curves_become_charts_with_limit_series() -> None:
    needs_sample()
    steps = steps_by_name(convert(SAMPLE))
    imp = steps["imp"]
    assert imp["chart"]["chartType"] == "LineLogX"
    assert (imp["chart"]["xLabel"], imp["chart"]["xUnit"]) == ("Frequency", "Hz")
    assert [s["name"] for s in imp["chart"]["series"]] == ["imp", "max", "min"]
    x, y = series(imp, "imp")
    assert (len(x), x[0], y[0], x[-1], y[-1]) == (129, "18.750", "1.7263", "5001.6", "6.6844")
    assert series(imp, "min")[1][0] == "3.0445"
    # 20 of the 129 impedance points lie outside max/min (e.g. 1.7263 < 3.0445 at 18.75 Hz).
    assert imp["numericMeas"] == [{"compOp": "EQ", "name": None, "status": "F",
                                   "unit": "points", "value": 20, "lowLimit": 0}]
    assert imp["reportText"] == "Fail (Results_Fail); 20 of 129 points outside the limits"
    # rbz and thd have only a max column; "-" cells are left out of the series.
    rbz, thd, resp = steps["rbz"], steps["thd"], steps["resp"]
    assert [s["name"] for s in rbz["chart"]["series"]] == ["rbz", "max"]
    x, y = series(rbz, "rbz")
    assert (len(x), x[0], y[0]) == (126, "206.00", "56.344")
    assert series(thd, "thd")[0][0] == "230.00"
    assert series(thd, "max")[1][0] == "64.337"
    assert len(series(resp, "resp")[0]) == 161
    assert [step["numericMeas"][0]["value"] for step in (rbz, resp, thd)] == [0, 0, 0]


def test_sample_locations_name_the_data_files() -> None:
    needs_sample()
    converter = KlippelConverter(**OPTIONS)
    report = converter.convert(SAMPLE, CONTEXT)
    assert report.locate("root.steps[0].steps[0]") == "Impedance-values.txt line 2"
    assert report.locate("root.steps[1].steps[2].numericMeas[0]") == "Sound Pressure-resp.txt"
    assert report.locate("sn").endswith("UTC+0200.txt line 26")


def test_sample_unit_is_complete_and_has_its_folder() -> None:
    needs_sample()
    folder = KLIPPEL_LOG / "DUT xyz115 2020-05-14 10-01-37-5 UTC+0200"
    assert KlippelConverter.companions(SAMPLE) == [folder]
    assert KlippelConverter.unit_complete(SAMPLE)


def test_sample_conversion_is_deterministic() -> None:
    needs_sample()
    assert convert(SAMPLE) == convert(SAMPLE)


# -- detection --------------------------------------------------------------------------------


def test_sample_is_detected() -> None:
    needs_sample()
    score, why = KlippelConverter().detect_with_reason(SAMPLE, SAMPLE.read_bytes()[:65536])
    assert score >= 0.97 and "data folder" in why
    chosen = ConverterRegistry().choose(SAMPLE, SAMPLE.read_bytes()[:65536], auto_detect=True)
    assert chosen is not None and chosen[1].startswith("KlippelConverter")


def test_header_without_its_folder_is_still_recognised(tmp_path: Path) -> None:
    needs_sample()
    header = tmp_path / SAMPLE.name
    shutil.copyfile(SAMPLE, header)
    assert KlippelConverter().detect(header, header.read_bytes()) == 0.9


@needs_samples
def test_other_formats_are_not_detected() -> None:
    converter = KlippelConverter()
    others = [p for p in sample_files() if p != SAMPLE]
    assert others
    for path in others:  # includes the Klippel data files themselves
        assert converter.detect(path, path.read_bytes()[:65536]) == 0.0, path


def test_detect_never_raises() -> None:
    assert KlippelConverter().detect(Path("/nonexistent/x.txt"), b"Cfg_DutStartTime=1\n"
                                     b"Cfg_SerialNumber=1\n") == 0.9
    assert KlippelConverter().detect(Path(""), b"\xff" * 100) == 0.0


def test_registry_knows_the_converter() -> None:
    converter = ConverterRegistry().create("KlippelConverter", {"part_number": "X"})
    assert isinstance(converter, KlippelConverter)
    assert converter.matches(Path("DUT a 2020-01-01 00-00-00-0 UTC+0000.txt"))


# -- fixtures -------------------------------------------------------------------------------


def test_cp1252_header_is_read_without_configuration() -> None:
    report = convert(PASS_CP1252)
    assert report["uut"]["user"] == "Jürgen Maß"
    assert report["result"] == "P"
    assert report["machineName"] == "QC-LINE-2"  # Cfg_PCName beats the station name
    assert report["start"] == "2021-03-02T08:15:00.250+01:00"
    assert report["root"]["name"] == "Tweeter T25"
    assert convert(PASS_CP1252, encoding="cp1252")["uut"]["user"] == "Jürgen Maß"


def test_wrong_configured_encoding_names_the_line_and_the_fix() -> None:
    with pytest.raises(ConversionError, match=r"line 20 is not valid utf-8.*cp1252"):
        convert(PASS_CP1252, encoding="utf-8")


def test_limits_operators_and_file_statuses() -> None:
    steps = steps_by_name(convert(PASS_CP1252))
    # Only a max: LE compares with lowLimit (formats.md §1.2).
    assert steps["sens"]["numericMeas"][0] == {
        "compOp": "LE", "name": None, "status": "P", "unit": None, "value": 1.25,
        "lowLimit": 2.0}
    # Empty limits: logged only.
    assert steps["phase"]["numericMeas"][0]["compOp"] == "LOG"
    assert "lowLimit" not in steps["phase"]["numericMeas"][0]
    # fr has one point above max, but the header lists it in Results_Pass: the file decides.
    fr = steps["fr"]
    assert (fr["status"], fr["numericMeas"][0]["status"], fr["numericMeas"][0]["value"]) == (
        "P", "P", 1)
    assert fr["reportText"] == "Pass (Results_Pass); 1 of 3 points outside the limits"
    # imp is in no list: judged by its limits.
    assert steps["imp"]["status"] == "P"
    assert [s["name"] for s in steps["Sound Pressure"]["steps"]] == ["spl", "sens", "phase", "fr"]
    assert series(fr, "min") == (["100", "200", "400"], ["75", "75", "75"])


def test_void_unit_with_sparse_header() -> None:
    report = convert(VOID_SPARSE, operator="night shift")
    assert report["sn"] == "B 9"  # Cfg_SerialNumber is empty: taken from the file name
    assert report["result"] == "T"  # Ctrl_OverallVerdict=-1 (void)
    assert report["start"] == "2022-11-30T23:59:59.900-05:00"  # from the file name
    assert report["startUTC"] == "2022-12-01T04:59:59.900Z"
    assert report["uut"] == {"user": "night shift", "errorMessage": "Microphone not connected"}
    rb = steps_by_name(report)["rb"]
    assert rb["status"] == "S" and "chart" not in rb and "numericMeas" not in rb
    assert steps_by_name(report)["Rub"]["status"] == "S"


def test_noise_verdict_and_decimal_comma() -> None:
    report = convert(NOISE_COMMA, decimal_separator=",")
    assert report["result"] == "E"
    steps = steps_by_name(report)
    level = steps["level"]
    assert level["status"] == "E"  # Results_Noise
    assert level["numericMeas"][0] == {
        "compOp": "GELE", "name": None, "status": "P", "unit": None, "value": 93.5,
        "lowLimit": 91.3, "highLimit": 97.3}
    # Not listed, above its max: failed by its limits, and it fails its sequence.
    assert steps["distortion"]["numericMeas"][0]["status"] == "F"
    assert steps["distortion"]["status"] == "F"
    assert steps["Sound Pressure"]["status"] == "E"  # the noisy step outranks the failure


def test_decimal_comma_without_the_option_names_file_line_and_fix() -> None:
    with pytest.raises(ConversionError, match=r"Sound Pressure-values.txt: line 2: value "
                                              r"'93,5' is not a number.*decimal_separator"):
        convert(NOISE_COMMA)


# -- broken and unfinished units ----------------------------------------------------------------


def test_missing_folder_is_incomplete(tmp_path: Path) -> None:
    header = tmp_path / PASS_CP1252.name
    shutil.copyfile(PASS_CP1252, header)
    assert not KlippelConverter.unit_complete(header)
    assert KlippelConverter.companions(header) == [tmp_path / PASS_CP1252.stem]
    with pytest.raises(IncompleteFileError, match=r"data folder .* is not there"):
        convert(header)


def test_empty_folder_is_incomplete(tmp_path: Path) -> None:
    header = tmp_path / PASS_CP1252.name
    shutil.copyfile(PASS_CP1252, header)
    (tmp_path / PASS_CP1252.stem).mkdir()
    assert not KlippelConverter.unit_complete(header)
    with pytest.raises(IncompleteFileError, match="holds no"):
        convert(header)


@pytest.mark.parametrize("content", [b"", b"frq\timp\tmax\n20\t8.1", b"frq\timp\tmax\n20\t8"])
def test_unfinished_data_file_is_incomplete(tmp_path: Path, content: bytes) -> None:
    header = copy_unit(PASS_CP1252, tmp_path)
    (tmp_path / PASS_CP1252.stem / "Impedance-imp.txt").write_bytes(content)
    assert not KlippelConverter.unit_complete(header)
    with pytest.raises(IncompleteFileError):
        convert(header)


def test_fixture_units_are_complete() -> None:
    for header in (PASS_CP1252, VOID_SPARSE, NOISE_COMMA):
        assert KlippelConverter.unit_complete(header), header


@pytest.mark.parametrize("cut", ["empty", "mid-line", "no verdict"])
def test_unfinished_header_is_incomplete(tmp_path: Path, cut: str) -> None:
    header = copy_unit(PASS_CP1252, tmp_path)
    data = header.read_bytes()
    data = {"empty": b"", "mid-line": data[:200],
            "no verdict": data[:data.index(b"//Code for overall")]}[cut]
    header.write_bytes(data)
    assert not KlippelConverter.unit_complete(header)
    with pytest.raises(IncompleteFileError):
        convert(header)


def edit_header(tmp_path: Path, old: bytes, new: bytes) -> Path:
    header = copy_unit(PASS_CP1252, tmp_path)
    data = header.read_bytes()
    assert old in data
    header.write_bytes(data.replace(old, new))
    return header


@pytest.mark.parametrize(("verdict", "result", "word"), [
    (b"2", "P", "Warning (2)"), (b"4", "E", "Invalid (4)"), (b"0", "F", "Fail (0)")])
def test_verdicts(tmp_path: Path, verdict: bytes, result: str, word: str) -> None:
    header = edit_header(tmp_path, b"Ctrl_OverallVerdict=1", b"Ctrl_OverallVerdict=" + verdict)
    report = convert(header)
    assert (report["result"], report["root"]["status"]) == (result, result)
    assert report["miscInfos"][0] == {"description": "Overall verdict", "text": word}


def test_unknown_verdict_names_the_line(tmp_path: Path) -> None:
    header = edit_header(tmp_path, b"Ctrl_OverallVerdict=1", b"Ctrl_OverallVerdict=7")
    with pytest.raises(ConversionError, match=r"UTC\+0100.txt: line 26: Ctrl_OverallVerdict "
                                              r"'7' is not one of"):
        convert(header)


def test_negative_utc_offset_in_start_time(tmp_path: Path) -> None:
    header = edit_header(tmp_path, b"-250-60-1.615E+09", b"-250--300-1.615E+09")
    assert convert(header)["start"] == "2021-03-02T08:15:00.250-05:00"


def test_not_a_header_line(tmp_path: Path) -> None:
    header = edit_header(tmp_path, b"Cfg_Speaker=sp1", b"this is no key value line")
    with pytest.raises(ConversionError, match=r"line 17 .* is neither a //comment nor"):
        convert(header)


def test_part_number_from_the_database_unless_configured() -> None:
    assert convert(PASS_CP1252, part_number="")["pn"] == "Tweeter T25"  # Tweeter T25.kdbx
    assert convert(PASS_CP1252)["pn"] == "SPK-115"
    with pytest.raises(ConversionError, match=r"no Cfg_DatabasePath .* set part_number"):
        convert(VOID_SPARSE, part_number="")


def test_process_name_known_to_the_server_gives_the_code() -> None:
    context = ConverterContext(station_name="QC-01", processes={"Acoustic QC": 77})
    report = convert(PASS_CP1252, context, process_code="", process_name="Acoustic QC")
    assert (report["processCode"], report["processName"]) == (77, "Acoustic QC")


@pytest.mark.parametrize(("option", "value", "message"), [
    ("process_code", "", "set process_code"),
    ("process_code", "fifty", "process_code 'fifty' is not a whole number"),
    ("decimal_separator", ";", "decimal_separator ';'"),
])
def test_missing_or_bad_options_say_what_to_set(option: str, value: str, message: str) -> None:
    with pytest.raises(ConversionError, match=message):
        convert(PASS_CP1252, **{option: value})


def test_station_and_sequence_options(tmp_path: Path) -> None:
    header = edit_header(tmp_path, b"Cfg_PCName=QC-LINE-2", b"Cfg_PCName=")
    report = convert(header, station_name="QC-9", sequence_name="Tweeter EOL",
                     sequence_version="3.1", process_name="Acoustic test")
    assert report["machineName"] == "QC-9"
    assert report["processName"] == "Acoustic test"
    assert report["root"]["name"] == "Tweeter EOL"
    assert report["root"]["seqCall"]["version"] == "3.1"


def test_long_curve_is_thinned_for_the_chart(tmp_path: Path) -> None:
    header = copy_unit(PASS_CP1252, tmp_path)
    rows = [f"{20 + n}\t{8 + (n % 7) / 10}\t8.55\t7" for n in range(25_000)]
    (tmp_path / PASS_CP1252.stem / "Impedance-imp.txt").write_text(
        "frq\timp\tmax\tmin\n" + "\n".join(rows) + "\n")
    imp = steps_by_name(convert(header))["imp"]
    x, y = series(imp, "imp")
    assert len(x) == len(y) == 10_000
    assert (x[0], x[-1]) == ("20", str(20 + 24_999))
    # Every point is counted, not only the charted ones: n % 7 in {6} is above 8.55.
    assert imp["numericMeas"][0]["value"] == sum(1 for n in range(25_000) if n % 7 == 6)
    assert "thinned" in imp["reportText"]


def test_huge_header_is_refused(tmp_path: Path) -> None:
    header = copy_unit(PASS_CP1252, tmp_path)
    header.write_bytes(b"//" + b"x" * (1024 * 1024) + b"\n" + header.read_bytes())
    with pytest.raises(ConversionError, match="Klippel header files over 1 MB are refused"):
        convert(header)


# -- fuzzing --------------------------------------------------------------------------------------

FUZZ = settings(max_examples=60, **FUZZ_SETTINGS)


def fresh_unit(tmp_path: Path) -> Path:
    """A writable copy of the passing fixture unit, the same one for every example."""
    unit = tmp_path / "unit"
    shutil.rmtree(unit, ignore_errors=True)
    return copy_unit(PASS_CP1252, unit)


@FUZZ
@given(data=st.binary(max_size=2000))
def test_garbage_header_raises_only_conversion_errors(tmp_path: Path, data: bytes) -> None:
    header = fresh_unit(tmp_path)
    header.write_bytes(data)
    refused_or_converted(convert, header)


@FUZZ
@given(data=st.binary(max_size=2000), name=st.sampled_from(
    ["Impedance-imp.txt", "Sound Pressure-values.txt", "Sound Pressure-fr.txt"]))
def test_garbage_data_file_raises_only_conversion_errors(tmp_path: Path, data: bytes,
                                                          name: str) -> None:
    header = fresh_unit(tmp_path)
    (header.with_name(header.stem) / name).write_bytes(data)
    refused_or_converted(convert, header)


def sample_units() -> list[Path]:
    units = [PASS_CP1252, VOID_SPARSE, NOISE_COMMA]
    return [SAMPLE, *units] if SAMPLE.is_file() else units


@FUZZ
@given(choice=st.data())
def test_truncated_and_mutated_units_raise_only_conversion_errors(tmp_path: Path,
                                                                   choice: st.DataObject) -> None:
    source = choice.draw(st.sampled_from(sample_units()))
    target = tmp_path / "unit"
    shutil.rmtree(target, ignore_errors=True)
    header = copy_unit(source, target)
    files = [header, *sorted((target / source.stem).iterdir())]
    victim = choice.draw(st.sampled_from(files))
    data = bytearray(victim.read_bytes())
    if choice.draw(st.booleans()):
        del data[choice.draw(st.integers(0, len(data))):]
    elif data:
        for _ in range(choice.draw(st.integers(1, 5))):
            data[choice.draw(st.integers(0, len(data) - 1))] = choice.draw(st.integers(0, 255))
    victim.write_bytes(bytes(data))
    refused_or_converted(convert, header)

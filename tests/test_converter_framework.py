"""The converter base class and the registry: built-ins, dotted paths, plugin files, choice."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pywats_client.converters import (
    BUILTIN_CONVERTERS,
    BaseConverter,
    ConversionError,
    Converter,
    ConverterContext,
    ConverterInfo,
    ConverterRegistry,
    PluginError,
)
from pywats_client.converters.wsjf import WATSStandardJsonConverter

REPORT_HEAD = b'{"type": "T", "pn": "PN1", "sn": "SN1", "rev": "A", "root": {}}'

GOOD_PLUGIN = '''
from dataclasses import dataclass

from pywats_client.converters import Converter


@dataclass
class Row:  # dataclasses need the module registered in sys.modules while it runs
    name: str


class _Shared(Converter):
    """A shared base class without a name: not a converter of its own."""


class GoodConverter(_Shared):
    name = "GoodConverter"
    description = "reads .good files"
    version = "2.1"
    file_patterns = ("*.good", "*.json")

    def detect(self, path, head):
        return 0.99 if head.startswith(b"GOOD") else 0.0

    def convert(self, path, context):
        return {"type": "T", "rows": [Row("x").name]}
'''

OTHER_PLUGIN = '''
from pywats_client.converters import Converter


class OtherConverter(Converter):
    name = "OtherConverter"
    file_patterns = ("*.good",)

    def detect(self, path, head):
        return 0.5

    def convert(self, path, context):
        return []
'''



def plugin_names(registry: ConverterRegistry) -> list[str]:
    """The plugin converters a registry holds (the built-in set grows with every format)."""
    return [n for n in registry.names() if n not in BUILTIN_CONVERTERS]

def write_plugin(folder: Path, file_name: str, source: str) -> Path:
    path = folder / file_name
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    return path


@pytest.fixture()
def plugin_folder(tmp_path: Path) -> Path:
    """An empty folder of plugin converters."""
    folder = tmp_path / "converters"
    folder.mkdir()
    return folder


@pytest.fixture()
def plugin_dir(plugin_folder: Path) -> Path:
    write_plugin(plugin_folder, "good.py", GOOD_PLUGIN)
    return plugin_folder


# -- the base class ---------------------------------------------------------------------------


def test_base_converter_alias_info_and_arguments() -> None:
    assert BaseConverter is Converter
    info = WATSStandardJsonConverter.get_info()
    assert info == ConverterInfo(
        name="WATSStandardJsonConverter",
        description=WATSStandardJsonConverter.description,
        version=WATSStandardJsonConverter.version,
        file_patterns=("*.json",),
        origin="built-in",
    )
    converter = WATSStandardJsonConverter(token="s3cret", folder="/x")
    assert converter.arguments == {"token": "s3cret", "folder": "/x"}
    # Argument values may be secrets of some test system: the repr shows names only.
    assert "s3cret" not in repr(converter) and "token" in repr(converter)


def test_converter_info_accepts_a_list_of_patterns_as_older_plugins_give() -> None:
    info = ConverterInfo(name="X", description="d", file_patterns=["*.a", "*.b"], version="1")  # type: ignore[arg-type]
    assert info.file_patterns == ("*.a", "*.b")
    assert ConverterInfo(name="Y", file_patterns="*.c").file_patterns == ("*.c",)  # type: ignore[arg-type]


def test_matches_is_case_insensitive_and_default_detect_has_no_opinion() -> None:
    converter = WATSStandardJsonConverter()
    assert converter.matches(Path("/in/REPORT.JSON"))
    assert converter.matches(Path("report.Json"))
    assert not converter.matches(Path("report.json.tmp"))

    class Plain(Converter):
        name = "Plain"

    assert Plain().matches(Path("anything.bin"))  # default pattern "*"
    assert Plain().detect(Path("a"), b"abc") == 0.0
    with pytest.raises(NotImplementedError, match="Plain"):
        Plain().convert(Path("a"), ConverterContext())


# -- resolution ---------------------------------------------------------------------------------


def test_builtin_resolved_by_name() -> None:
    registry = ConverterRegistry()
    converter = registry.create("WATSStandardJsonConverter")
    assert isinstance(converter, WATSStandardJsonConverter)
    assert sorted(registry.names()) == sorted(BUILTIN_CONVERTERS)
    assert registry.names()[-1] == "AIConverter"
    assert registry.errors == []
    info = {i.name: i for i in registry.info()}["WATSStandardJsonConverter"]
    assert info.name == "WATSStandardJsonConverter" and info.origin == "built-in"


def test_create_passes_arguments() -> None:
    converter = ConverterRegistry().create("WATSStandardJsonConverter", {"a": 1})
    assert converter.arguments == {"a": 1}


@pytest.mark.parametrize(
    "dotted",
    [
        "pywats_client.converters.wsjf.WATSStandardJsonConverter",
        "pywats_client.converters.wsjf:WATSStandardJsonConverter",
    ],
)
def test_builtin_resolved_by_dotted_path(dotted: str) -> None:
    assert isinstance(ConverterRegistry().create(dotted), WATSStandardJsonConverter)


def test_dotted_path_to_a_user_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "acme_testers_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("", encoding="utf-8")
    write_plugin(package, "ict.py", OTHER_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    converter = ConverterRegistry().create("acme_testers_pkg.ict.OtherConverter")
    assert type(converter).__name__ == "OtherConverter"
    registry = ConverterRegistry(enabled=["acme_testers_pkg.ict:OtherConverter"])
    assert registry.errors == []
    assert "acme_testers_pkg.ict:OtherConverter" in registry.names()


@pytest.mark.parametrize(
    ("dotted", "expected"),
    [
        ("no_such_pkg_zz.mod.Conv", "cannot import module 'no_such_pkg_zz.mod'"),
        ("pywats_client.converters.wsjf.NoSuchClass", "has no class 'NoSuchClass'"),
        ("pywats_client.clock.Clock", "is not a converter class"),
    ],
)
def test_bad_dotted_path_names_the_module_or_class(dotted: str, expected: str) -> None:
    with pytest.raises(PluginError, match=expected):
        ConverterRegistry().create(dotted)


def test_unknown_name_lists_known_and_suggests(plugin_dir: Path) -> None:
    registry = ConverterRegistry(plugin_dir=plugin_dir)
    with pytest.raises(PluginError) as caught:
        registry.create("WATSStandardJSONConverter")
    message = str(caught.value)
    assert "unknown converter 'WATSStandardJSONConverter'" in message
    assert "WATSStandardJsonConverter" in message and "GoodConverter" in message
    assert "did you mean WATSStandardJsonConverter" in message


def test_arguments_the_converter_rejects_are_a_plugin_error(plugin_folder: Path) -> None:
    write_plugin(plugin_folder, "strict.py", '''
        from pywats_client.converters import Converter

        class StrictConverter(Converter):
            name = "StrictConverter"

            def __init__(self, *, delimiter=","):
                super().__init__(delimiter=delimiter)
    ''')
    registry = ConverterRegistry(plugin_dir=plugin_folder)
    assert registry.create("StrictConverter", {"delimiter": ";"}).arguments == {"delimiter": ";"}
    with pytest.raises(PluginError, match=r"StrictConverter rejected its arguments \(colour\)"):
        registry.create("StrictConverter", {"colour": "red"})


def test_importing_the_package_imports_no_builtin_and_no_network_code() -> None:
    # A fresh interpreter: other tests have long imported everything in this one.
    code = textwrap.dedent("""
        import sys
        from pathlib import Path
        import pywats_client.report.model
        from pywats_client.converters import ConverterRegistry
        registry = ConverterRegistry()
        assert "WATSStandardJsonConverter" in registry.names()
        loaded = [m for m in ("pywats_client.converters.wsjf", "requests", "watchdog")
                  if m in sys.modules]
        assert not loaded, loaded
        registry.create("WATSStandardJsonConverter")
        assert "pywats_client.converters.wsjf" in sys.modules
        assert "requests" not in sys.modules and "watchdog" not in sys.modules
    """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# -- plugin files -------------------------------------------------------------------------------


def test_plugin_folder_is_loaded(plugin_dir: Path) -> None:
    registry = ConverterRegistry(plugin_dir=plugin_dir)
    assert registry.errors == []
    assert plugin_names(registry) == ["GoodConverter"]
    converter = registry.create("GoodConverter", {"x": 1})
    assert converter.arguments == {"x": 1}
    assert converter.convert(Path("a.good"), ConverterContext()) == {"type": "T", "rows": ["x"]}
    info = {i.name: i for i in registry.info()}["GoodConverter"]
    assert info == ConverterInfo(
        "GoodConverter", "reads .good files", "2.1", ("*.good", "*.json"),
        str(plugin_dir / "good.py"),
    )


def test_plugin_found_by_older_module_path_forms(plugin_dir: Path) -> None:
    registry = ConverterRegistry(plugin_dir=plugin_dir)
    for form in ("converters.good.GoodConverter", "good.GoodConverter", "good:GoodConverter"):
        assert type(registry.create(form)).__name__ == "GoodConverter", form


def test_missing_plugin_folder_is_not_an_error(tmp_path: Path) -> None:
    registry = ConverterRegistry(plugin_dir=tmp_path / "nowhere")
    assert registry.errors == [] and plugin_names(registry) == []


def test_only_top_level_public_py_files_are_loaded(plugin_dir: Path) -> None:
    boom = "raise RuntimeError('must not be imported')\n"
    write_plugin(plugin_dir, "_private.py", boom)
    write_plugin(plugin_dir, ".hidden.py", boom)
    write_plugin(plugin_dir, "notes.txt", boom)
    (plugin_dir / "sub").mkdir()
    write_plugin(plugin_dir / "sub", "nested.py", boom)
    registry = ConverterRegistry(plugin_dir=plugin_dir)
    assert registry.errors == []
    assert plugin_names(registry) == ["GoodConverter"]


def test_plugin_overriding_get_info_is_registered_by_that_name(plugin_folder: Path) -> None:
    write_plugin(plugin_folder, "legacy.py", '''
        from pywats_client.converters import BaseConverter, ConverterInfo

        class MyConverter(BaseConverter):
            @classmethod
            def get_info(cls):
                return ConverterInfo(name="MyConverter", description="mine",
                                     file_patterns=["*.my"], version="1.0.0")

            def convert(self, path, context):
                return {}
    ''')
    registry = ConverterRegistry(plugin_dir=plugin_folder)
    assert registry.errors == []
    converter = registry.create("MyConverter")
    assert converter.name == "MyConverter"
    assert converter.matches(Path("X.MY")) and not converter.matches(Path("x.json"))


@pytest.mark.parametrize(
    ("file_name", "source", "expected"),
    [
        ("syntax.py", "class Broken(:\n    pass\n",
         r"syntax\.py: line 1 \(class Broken\(:\): SyntaxError"),
        ("needs_lib.py", "import os\nimport no_such_module_qq\n",
         r"needs_lib\.py: line 2 \(import no_such_module_qq\): ModuleNotFoundError"),
        ("raises.py", "x = 1\n\nraise RuntimeError('bad config at import')\n",
         r"raises\.py: line 3 \(raise RuntimeError.*\): RuntimeError: bad config at import"),
        ("zz_dup.py", "from pywats_client.converters import Converter\n\n"
                   "class GoodAgain(Converter):\n    name = 'GoodConverter'\n",
         r"zz_dup\.py: class GoodAgain: the name 'GoodConverter' is already used by .*good\.py"),
        ("shadow.py", "from pywats_client.converters import Converter\n\n"
                      "class Shadow(Converter):\n    name = 'WATSStandardJsonConverter'\n",
         r"shadow\.py: class Shadow: the name 'WATSStandardJsonConverter' is already used by "
         r"a built-in converter"),
    ],
)
def test_broken_plugin_is_recorded_and_skipped(
    plugin_dir: Path, file_name: str, source: str, expected: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # "good.py" sorts before all of these, so the duplicates are the ones refused.
    write_plugin(plugin_dir, file_name, source)
    with caplog.at_level(logging.WARNING, logger="pywats_client.converters.registry"):
        registry = ConverterRegistry(plugin_dir=plugin_dir)
    [error] = registry.errors
    assert isinstance(error, PluginError)
    assert str(plugin_dir / file_name) in str(error)
    assert re.search(expected, str(error)), str(error)
    assert str(error) in caplog.text
    # The good plugin still loads and still owns its name; the built-in is untouched.
    assert plugin_names(registry) == ["GoodConverter"]
    assert type(registry.create("GoodConverter")).__name__ == "GoodConverter"
    assert isinstance(registry.create("WATSStandardJsonConverter"), WATSStandardJsonConverter)


def test_plugin_calling_sys_exit_is_recorded_not_obeyed(plugin_dir: Path) -> None:
    # A script dropped into the folder by mistake must not end the service.
    write_plugin(plugin_dir, "script.py", "import sys\n\nsys.exit(3)\n")
    registry = ConverterRegistry(plugin_dir=plugin_dir)
    [error] = registry.errors
    assert "script.py: line 3 (sys.exit(3)): SystemExit: 3" in str(error)
    assert plugin_names(registry) == ["GoodConverter"]


# -- choosing a converter -----------------------------------------------------------------------


@pytest.fixture()
def two_plugins(plugin_dir: Path) -> Path:
    write_plugin(plugin_dir, "other.py", OTHER_PLUGIN)
    return plugin_dir


def test_choose_takes_the_highest_detect_score_and_explains(two_plugins: Path) -> None:
    registry = ConverterRegistry(plugin_dir=two_plugins)
    chosen = registry.choose(Path("x.good"), b"GOOD data", auto_detect=True)
    assert chosen is not None
    assert type(chosen[0]).__name__ == "GoodConverter"
    assert chosen[1] == "GoodConverter: detect 0.99"
    # Content decides, not the extension: Other says 0.5 for anything, Good 0 here.
    chosen = registry.choose(Path("x.good"), b"other", auto_detect=True)
    assert chosen is not None
    assert type(chosen[0]).__name__ == "OtherConverter"
    assert chosen[1] == "OtherConverter: detect 0.50"


def test_choose_explains_the_wsjf_recognition(two_plugins: Path) -> None:
    registry = ConverterRegistry(plugin_dir=two_plugins)
    chosen = registry.choose(Path("r.json"), REPORT_HEAD, auto_detect=True)
    assert chosen is not None
    converter, reason = chosen
    assert isinstance(converter, WATSStandardJsonConverter)
    assert reason == "WATSStandardJsonConverter: detect 0.98, JSON object with type 'T', pn and sn"


def test_choose_without_auto_detect_takes_first_pattern_match(two_plugins: Path) -> None:
    registry = ConverterRegistry(plugin_dir=two_plugins)
    chosen = registry.choose(Path("x.GOOD"), b"other", auto_detect=False)
    assert chosen is not None
    assert type(chosen[0]).__name__ == "GoodConverter"
    assert chosen[1] == (
        "GoodConverter: first enabled converter whose file patterns match 'x.GOOD' "
        "(auto-detect is off)"
    )


def test_a_file_nobody_recognises_is_an_error_listing_what_was_tried(plugin_dir: Path) -> None:
    registry = ConverterRegistry(plugin_dir=plugin_dir)
    with pytest.raises(ConversionError) as caught:
        registry.choose(Path("x.json"), b"not json at all", auto_detect=True)
    message = str(caught.value)
    assert message.startswith("x.json: no converter recognises this file (tried: ")
    assert "WATSStandardJsonConverter 0.00" in message and "GoodConverter 0.00" in message
    assert "--converter NAME" in message


def test_content_decides_not_the_file_name(two_plugins: Path) -> None:
    registry = ConverterRegistry(plugin_dir=two_plugins)
    chosen = registry.choose(Path("x.csv"), b"GOOD", auto_detect=True)
    assert chosen is not None and type(chosen[0]).__name__ == "GoodConverter"


def test_equally_sure_converters_are_ambiguous_unless_the_name_decides(
        plugin_folder: Path) -> None:
    for name, pattern in (("AlphaConverter", "*.a"), ("BetaConverter", "*.b")):
        write_plugin(plugin_folder, f"{name.lower()}.py", f'''
            from pywats_client.converters import Converter

            class {name}(Converter):
                name = "{name}"
                file_patterns = ("{pattern}",)

                def detect(self, path, head):
                    return 0.8
        ''')
    registry = ConverterRegistry(enabled=["AlphaConverter", "BetaConverter"],
                                 plugin_dir=plugin_folder)
    with pytest.raises(ConversionError, match="ambiguous, AlphaConverter, BetaConverter"):
        registry.choose(Path("x.txt"), b"data", auto_detect=True)
    chosen = registry.choose(Path("x.b"), b"data", auto_detect=True)
    assert chosen is not None and type(chosen[0]).__name__ == "BetaConverter"


def test_ai_converter_converts_with_the_detected_converter(tmp_path: Path) -> None:
    registry = ConverterRegistry()
    path = tmp_path / "report.dat"
    path.write_bytes(REPORT_HEAD)
    converter = registry.create("AIConverter")
    report = converter.convert(path, ConverterContext())
    assert isinstance(report, dict) and report["sn"] == "SN1"
    assert registry.names()[-1] == "AIConverter"


def test_choose_survives_a_detect_that_raises(plugin_folder: Path) -> None:
    write_plugin(plugin_folder, "flaky.py", '''
        from pywats_client.converters import Converter

        class FlakyConverter(Converter):
            name = "FlakyConverter"
            file_patterns = ("*.json",)

            def detect(self, path, head):
                raise ValueError("oops")
    ''')
    registry = ConverterRegistry(plugin_dir=plugin_folder)
    chosen = registry.choose(Path("r.json"), REPORT_HEAD, auto_detect=True)
    assert chosen is not None and isinstance(chosen[0], WATSStandardJsonConverter)


def test_enabled_filter_limits_the_choice(two_plugins: Path) -> None:
    registry = ConverterRegistry(enabled=["OtherConverter"], plugin_dir=two_plugins)
    assert registry.errors == []
    assert registry.enabled == ["OtherConverter"]
    chosen = registry.choose(Path("x.good"), b"GOOD data", auto_detect=True)
    assert chosen is not None and type(chosen[0]).__name__ == "OtherConverter"
    # JSON is not enabled here: a .json file goes to the only enabled converter that is sure.
    chosen = registry.choose(Path("r.json"), REPORT_HEAD, auto_detect=True)
    assert chosen is not None and type(chosen[0]).__name__ == "OtherConverter"
    # A converter bound explicitly to a folder is still available.
    assert isinstance(registry.create("WATSStandardJsonConverter"), WATSStandardJsonConverter)


def test_enabled_order_decides_without_auto_detect(two_plugins: Path) -> None:
    registry = ConverterRegistry(enabled=["OtherConverter", "GoodConverter"],
                                 plugin_dir=two_plugins)
    chosen = registry.choose(Path("x.good"), b"GOOD", auto_detect=False)
    assert chosen is not None and type(chosen[0]).__name__ == "OtherConverter"


def test_unknown_enabled_names_are_errors_not_exceptions(plugin_dir: Path) -> None:
    registry = ConverterRegistry(enabled=["GoodConverter", "GodConverter"], plugin_dir=plugin_dir)
    [error] = registry.errors
    assert "converters.enabled: unknown converter 'GodConverter'" in str(error)
    assert "did you mean GoodConverter" in str(error)
    assert registry.enabled == ["GoodConverter"]


# -- plugins other users could change -----------------------------------------------------------


def test_plugins_in_a_folder_others_can_write_are_refused(plugin_dir: Path) -> None:
    plugin_dir.chmod(0o777)
    registry = ConverterRegistry(plugin_dir=plugin_dir)
    assert plugin_names(registry) == []
    [error] = registry.errors
    assert "writable by other users (mode 777)" in str(error)
    assert f"chmod go-w '{plugin_dir}'" in str(error)


def test_a_plugin_file_others_can_write_is_refused_and_the_rest_load(plugin_dir: Path) -> None:
    write_plugin(plugin_dir, "other.py", OTHER_PLUGIN)
    (plugin_dir / "other.py").chmod(0o666)
    registry = ConverterRegistry(plugin_dir=plugin_dir)
    assert plugin_names(registry) == ["GoodConverter"]
    assert any("other.py: the file is writable by other users" in str(e)
               for e in registry.errors)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file to another user")
def test_a_plugin_file_of_another_user_is_refused(plugin_dir: Path) -> None:
    os.chown(plugin_dir / "good.py", 54321, -1)
    registry = ConverterRegistry(plugin_dir=plugin_dir)
    assert plugin_names(registry) == []
    assert "belongs to another user (uid 54321)" in str(registry.errors[0])

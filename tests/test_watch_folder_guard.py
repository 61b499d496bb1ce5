"""Whoever can write a watch folder cannot have the service run code, read files elsewhere,
drop a file into its own folders, hide a report behind a reused id, or file a report under a
process it guessed: the whole service, in process, against the bundled receiver."""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pywats_client.config.settings import QueueSettings, Settings, WatchFolder
from pywats_client.converters import ConverterContext, ConverterRegistry
from pywats_client.http.receiver import Receiver
from pywats_client.paths import InstancePaths
from pywats_client.service import watcher as watcher_module
from pywats_client.service.loop import Service
from pywats_client.service.oneshot import gather_status
from pywats_client.service.watcher import FolderWatcher
from tests.conftest import TOKEN
from tests.fakes import FakeClock
from tests.station import wait_until


def make_service(tmp_path: Path, server_url: str, *, defaults: dict[str, Any] | None = None,
                 **folder: Any) -> tuple[Service, InstancePaths, Path]:
    paths = InstancePaths.for_instance("default", tmp_path / "data")
    watch = tmp_path / "watch"
    watch.mkdir(exist_ok=True)
    settings = Settings(
        server_url=server_url, api_token=TOKEN, station_name="guard", connect_timeout=2,
        read_timeout=5,
        queue=QueueSettings(watch_folders=(WatchFolder(path=watch, **folder),), settle_time=0.1,
                            rescan_interval=1, upload_interval=1, probe_interval=0.5),
    )
    if defaults:
        from dataclasses import replace
        settings = replace(settings, converters=replace(settings.converters, defaults=defaults))
    return Service(settings, paths, stop_timeout=5), paths, watch


def run_once(service: Service) -> None:
    """`start --once`, on a thread that must end."""
    worker = threading.Thread(target=service.run, kwargs={"once": True}, daemon=True)
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "the service did not finish its once-run"


@pytest.fixture
def server(receiver: Receiver) -> Iterator[Receiver]:
    yield receiver


def test_a_dropped_script_never_reaches_the_plugin_folder(tmp_path: Path,
                                                          server: Receiver) -> None:
    service, paths, watch = make_service(tmp_path, server.url)
    paths.ensure()
    paths.key.write_text("the instance's secret key\n")
    (watch / "error").symlink_to(paths.converters)  # planted by whoever writes the folder
    evil = watch / "evil.py"
    evil.write_text("from pathlib import Path\nLEAK = Path(__file__).parent.parent.joinpath("
                    "'secret.key').read_text()\n")

    run_once(service)

    assert os.listdir(paths.converters) == []
    assert evil.exists()  # left where it was put
    status = service.status.to_dict()
    assert status["folder_problems"] == 1
    assert any(f["kind"] == "folder" and "symbolic link" in f["reason"]
               for f in status["recent_failures"])
    registry = ConverterRegistry(plugin_dir=paths.converters)
    assert not any(info.origin != "built-in" for info in registry.info())


def test_a_link_in_the_watch_folder_is_neither_read_nor_moved(tmp_path: Path,
                                                              server: Receiver) -> None:
    theirs = _report_in(tmp_path / "other-station", "SN-OTHER")
    service, _paths, watch = make_service(tmp_path, server.url)
    (watch / "r.json").symlink_to(theirs)

    run_once(service)

    assert server.stored_ids() == set()
    assert theirs.exists() and (watch / "r.json").is_symlink()
    assert not (watch / "error").exists() and not (watch / "done").exists()


def test_a_folder_that_follows_links_takes_them_and_moves_the_link(tmp_path: Path,
                                                                   server: Receiver) -> None:
    target = _report_in(tmp_path / "shared-results", "SN-LINKED")
    service, _paths, watch = make_service(tmp_path, server.url, follow_symlinks=True)
    (watch / "r.json").symlink_to(target)

    run_once(service)

    assert server.wait_for_reports(1, timeout=20)
    assert (watch / "done" / "r.json").is_symlink()  # the link moved, its target untouched
    assert target.exists()


def _report_in(folder: Path, sn: str) -> Path:
    """A report file r.json in `folder` (made), outside the watch folder."""
    folder.mkdir()
    path = folder / "r.json"
    path.write_text(json.dumps(_report(sn)))
    return path


def _report(sn: str, **extra: Any) -> dict[str, Any]:
    from tests.station import wsjf_report

    report = wsjf_report(1, sn=sn)
    report.update(extra)
    return report


# -- the watcher's scan: links, hard links, pipes ---------------------------------------------


def _watcher(tmp_path: Path, folder: WatchFolder, clock: FakeClock) -> FolderWatcher:
    return FolderWatcher([folder], settle_time=1.0, rescan_interval=3600.0,
                         state_dir=tmp_path / "state", clock=clock)


def _poll_twice(watcher: FolderWatcher, clock: FakeClock) -> list[str]:
    """Everything taken in a first look and a rescan later."""
    ready, _ = watcher.poll()
    clock.advance(3601.0)
    later, _ = watcher.poll()
    return sorted(s.path.name for s in ready + later)


def _look_past_links(tmp_path: Path, links: dict[str, str], caplog: pytest.LogCaptureFixture,
                     *, hinted: str = "") -> tuple[list[str], FolderWatcher]:
    """A watch folder with a file written long ago and `links` (name -> target below
    tmp_path; "shadow" is a file there), the link `hinted` named by an event too: what a
    first look and a rescan take, and the watcher (stopped)."""
    watch = tmp_path / "watch"
    watch.mkdir()
    (tmp_path / "shadow").write_text("root:$6$")
    for name, target in links.items():
        (watch / name).symlink_to(tmp_path / target)
    (watch / "real.json").write_text("{}")
    os.utime(watch / "real.json", (0, 0))
    clock = FakeClock()
    watcher = _watcher(tmp_path, WatchFolder(path=watch), clock)
    watcher.start()
    try:
        with caplog.at_level(logging.WARNING, logger="pywats_client.service.watcher"):
            if hinted:
                watcher.hint(watch / hinted)
            return _poll_twice(watcher, clock), watcher
    finally:
        watcher.stop()


def test_links_are_left_alone_and_named_once(tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    taken, _ = _look_past_links(tmp_path, {"shadow.json": "shadow", "dangling.json": "nowhere"},
                                caplog, hinted="shadow.json")  # an event names it too

    assert taken == ["real.json"]
    refusals = [r.getMessage() for r in caplog.records if "symbolic link" in r.getMessage()]
    assert len(refusals) == 2  # one line per link, not one per look
    assert all("follow_symlinks" in line for line in refusals)


def test_a_flood_of_links_is_left_alone_without_a_line_or_a_name_kept_for_each(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(watcher_module, "MAX_TRACKED", 10)
    taken, watcher = _look_past_links(
        tmp_path, {f"link{n:02d}.json": "shadow" for n in range(50)}, caplog)

    assert taken == ["real.json"]
    lines = [r.getMessage() for r in caplog.records]
    assert len([line for line in lines if "symbolic link" in line]) == 10
    assert len([line for line in lines if "more than 10 files" in line]) == 1
    assert len(lines) == 11
    assert len(watcher._refused) == 10


def test_a_named_pipe_or_socket_in_the_watch_folder_does_not_block(tmp_path: Path) -> None:
    watch = tmp_path / "watch"
    watch.mkdir()
    os.mkfifo(watch / "pipe.json")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(watch / "sock.json"))
    clock = FakeClock()
    watcher = _watcher(tmp_path, WatchFolder(path=watch, follow_symlinks=True), clock)
    (watch / "to-pipe.json").symlink_to(watch / "pipe.json")
    watcher.start()
    result: list[list[str]] = []
    try:
        looker = threading.Thread(target=lambda: result.append(_poll_twice(watcher, clock)),
                                  daemon=True)
        looker.start()
        looker.join(10)
        assert not looker.is_alive(), "the watcher blocks on a named pipe"
    finally:
        watcher.stop()
        server.close()
    assert result == [[]]


def test_hard_links_are_left_alone_where_the_kernel_does_not_protect_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(watcher_module, "hardlinks_protected", lambda: False)
    watch = tmp_path / "watch"
    watch.mkdir()
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the watch folder's writer")
    os.link(secret, watch / "linked.json")
    interrupted = watch / "moved.json"
    interrupted.write_text("{}")
    (watch / "done").mkdir()
    os.link(interrupted, watch / "done" / "moved.json")  # a crash between link and unlink
    for path in (watch / "linked.json", interrupted):
        os.utime(path, (0, 0), follow_symlinks=False)
    clock = FakeClock()
    watcher = _watcher(tmp_path, WatchFolder(path=watch), clock)
    watcher.start()
    try:
        with caplog.at_level(logging.WARNING, logger="pywats_client.service.watcher"):
            taken = _poll_twice(watcher, clock)
    finally:
        watcher.stop()
    assert taken == ["moved.json"]  # the interrupted move is finished by its post-action
    assert sum("hard links" in r.getMessage() for r in caplog.records) == 1


# -- one report id, two different reports ------------------------------------------------------


def test_a_second_report_under_a_used_id_goes_to_the_error_folder(tmp_path: Path,
                                                                  server: Receiver) -> None:
    rid = "5b7f61f3-0d7c-4bd4-9a55-0c1f1e6f2a10"
    first = json.dumps(_report("SN-FIRST", id=rid))
    service, _paths, watch = make_service(tmp_path, server.url)
    (watch / "template.json").write_text(first)
    run_once(service)
    assert server.wait_for_reports(1, timeout=20)

    service, _paths, watch = make_service(tmp_path, server.url)
    (watch / "copy.json").write_text(json.dumps(_report("SN-SECOND", id=rid)))
    (watch / "template-again.json").write_text(first)  # the same report, converted again
    run_once(service)

    assert sorted(os.listdir(watch / "error")) == ["copy.json", "copy.json.error.txt"]
    note = (watch / "error" / "copy.json.error.txt").read_text(encoding="utf-8")
    assert rid in note and str(watch / "template.json") in note
    assert sorted(os.listdir(watch / "done")) == ["template-again.json", "template.json"]
    status = service.status.to_dict()
    assert (status["id_clashes"], status["conversion_errors"]) == (1, 1)
    assert server.stored_ids() == {rid}
    stored = json.loads((server.store / f"{rid}.json").read_text())
    assert stored["sn"] == "SN-FIRST"


# -- a named process is never guessed ------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_named_process_waits_for_the_process_list_instead_of_the_default(
        tmp_path: Path) -> None:
    port = _free_port()  # nothing listens there yet: the first start is offline
    service, paths, watch = make_service(tmp_path, f"http://127.0.0.1:{port}",
                                         defaults={"process_code": 50})
    report = _report("SN-DEBUG", processName="SW Debug")
    del report["processCode"]
    (watch / "debug.json").write_text(json.dumps(report))
    worker = threading.Thread(target=service.run, daemon=True)
    worker.start()
    try:
        wait_until(lambda: service.snapshot().get("waiting_for_processes") == 1, 30,
                   "the file to wait for the process list")
        assert (watch / "debug.json").exists() and not os.listdir(paths.queue / "pending")
        wait_until(lambda: gather_status(paths, service.settings, probe=False)
                   ["waiting_for_processes"] == 1, 10, "`status` to show the waiting file")
        with Receiver(tmp_path / "store", port=port, token=TOKEN) as server:
            assert server.wait_for_reports(1, timeout=30)
            [rid] = server.stored_ids()
            stored = json.loads((server.store / f"{rid}.json").read_text())
        assert (stored["processCode"], stored["processName"]) == (10, "SW Debug")
        wait_until(lambda: service.snapshot().get("waiting_for_processes") == 0, 10,
                   "the status to show no file waiting")
    finally:
        service.request_stop()
        worker.join(30)
    assert not worker.is_alive()


def test_the_process_rule_of_converters_and_report_objects() -> None:
    from pywats_client.converters.builtin import ConversionOptions
    from pywats_client.converters.wstf import WATSStandardTextConverter
    from pywats_client.errors import ConversionError, ProcessListUnknownError
    from pywats_client.report.builder import apply_context

    converter = WATSStandardTextConverter()
    unknown = ConverterContext(defaults={"process_code": 50})
    known = ConverterContext(defaults={"process_code": 50},
                             processes={"SW Debug": 10, "PCBA test": 50})

    def code(context: ConverterContext, name: str | None) -> int:
        return ConversionOptions.of(converter, context, Path("r.txt")).process_code(name=name)

    with pytest.raises(ProcessListUnknownError, match=r"'SW Debug'.*not known"):
        code(unknown, "SW Debug")
    assert code(known, "SW Debug") == 10
    with pytest.raises(ConversionError, match=r"'Burn-in' is not one the server knows.*"
                                              r"'SW Debug' \(10\), 'PCBA test' \(50\)"):
        code(known, "Burn-in")
    assert code(unknown, None) == 50  # the default is for reports that name no process

    report: dict[str, Any] = {"type": "T", "pn": "P", "sn": "S", "processName": "SW Debug"}
    with pytest.raises(ProcessListUnknownError):
        apply_context(dict(report), unknown)
    apply_context(report, known)
    assert (report["processCode"], report["processName"]) == (10, "SW Debug")
    unnamed: dict[str, Any] = {"type": "T", "pn": "P", "sn": "S"}
    apply_context(unnamed, unknown)
    assert unnamed["processCode"] == 50 and "processName" not in unnamed


# -- plugins: the file run is the file checked ---------------------------------------------------

PLUGIN = '''
from pywats_client.converters import Converter


class LinkedConverter(Converter):
    name = "LinkedConverter"
    file_patterns = ("*.lnk",)

    def convert(self, path, context):
        return {}
'''


def test_a_plugin_linked_from_a_folder_others_can_write_is_refused(tmp_path: Path) -> None:
    plugins = tmp_path / "converters"
    plugins.mkdir(mode=0o755)
    plugins.chmod(0o755)
    shared = tmp_path / "share"  # a watch folder, say: everybody writes there
    shared.mkdir()
    shared.chmod(0o777)
    (shared / "linked.py").write_text(PLUGIN)
    (shared / "linked.py").chmod(0o644)  # the file itself looks safe ...
    (plugins / "linked.py").symlink_to(shared / "linked.py")

    registry = ConverterRegistry(plugin_dir=plugins)

    assert "LinkedConverter" not in registry.names()
    assert any("writable by other users" in str(e) and str(shared) in str(e)
               for e in registry.errors)
    shared.chmod(0o755)  # ... and once only its owner may change it, it is run
    assert "LinkedConverter" in ConverterRegistry(plugin_dir=plugins).names()


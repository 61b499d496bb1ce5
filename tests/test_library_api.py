"""The Python API of the product documents: ClientConfig, the ReportQueue front, WATSClient,
ConnectionService and QueueService — against real files, real threads and the loopback
receiver."""

from __future__ import annotations

import json
import os
import stat
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pywats_client import __version__
from pywats_client.config.settings import WatchFolder
from pywats_client.core import ClientConfig, WATSClient
from pywats_client.core.queue import QueueStatus, ReportQueue
from pywats_client.errors import (
    ConfigError,
    LockError,
    ReportIdClashError,
    ReportValidationError,
)
from pywats_client.http.receiver import Faults, Receiver
from pywats_client.report import UUTReport
from pywats_client.services import ConnectionService, QueueService
from tests.conftest import TOKEN
from tests.documented_configs import ARCHITECTURE_EXAMPLE, GUIDE_EXAMPLE, PACKAGE_EXAMPLE
from tests.station import closed_port_url, wait_until, wsjf_report


@pytest.fixture(autouse=True)
def _no_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("PYWATS_")]:
        monkeypatch.delenv(name)


def key_paths(node: Any, prefix: str = "") -> dict[str, Any]:
    """Every leaf of a JSON document by its path ("queue.watch_folders[0]")."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(key_paths(value, f"{prefix}.{key}" if prefix else key))
        return out or {prefix: {}}
    if isinstance(node, list):
        out = {}
        for n, value in enumerate(node):
            out.update(key_paths(value, f"{prefix}[{n}]"))
        return out or {prefix: []}
    return {prefix: node}


def a_report(sn: str = "SN-0001", **extra: Any) -> UUTReport:
    report = UUTReport(part_number="PN-100", serial_number=sn, revision="A", operation_code=10,
                       start_date_time="2026-05-01T10:00:00+02:00", **extra)
    report.add_numeric_step("Voltage", 3.31, low=3.2, high=3.4, unit="V")
    return report


def make_config(root: Path, server_url: str, **queue: Any) -> ClientConfig:
    settings = {"upload_interval": 0.2, "probe_interval": 0.2, "settle_time": 0.1,
                "rescan_interval": 1, "retry_delay": 1, "retry_max_delay": 2, **queue}
    config = ClientConfig(path=root / "config.json", server_url=server_url, api_token=TOKEN,
                          station_name="ST-LIB", station_location="Lab", queue=settings,
                          connect_timeout=2, read_timeout=5)
    config.save()
    return config


@pytest.fixture
def config(tmp_path: Path, receiver: Receiver) -> ClientConfig:
    return make_config(tmp_path / "instance", receiver.url)


def our_threads() -> list[str]:
    return [t.name for t in threading.enumerate()
            if t.name.startswith(("pywats", "upload", "convert"))]


@pytest.fixture
def no_leaked_threads() -> Iterator[None]:
    before = set(our_threads())
    yield
    wait_until(lambda: not set(our_threads()) - before, 15, "service threads to end")


# -- ClientConfig -----------------------------------------------------------------------------


@pytest.mark.parametrize("text", [GUIDE_EXAMPLE, ARCHITECTURE_EXAMPLE, PACKAGE_EXAMPLE],
                         ids=["service-guide", "architecture", "package-readme"])
def test_documented_configs_load_and_saving_keeps_every_key(tmp_path: Path, text: str) -> None:
    path = tmp_path / "config.json"
    path.write_text(text, encoding="utf-8")
    written = key_paths(json.loads(text))

    config = ClientConfig.load_or_create(path)
    settings = config.settings(env={})
    config.save()

    saved = key_paths(json.loads(path.read_text(encoding="utf-8")))
    assert list(saved) == list(written)  # no key lost, none added, the order kept
    for key, value in written.items():
        if key == "api_token":
            assert saved[key].startswith("fernet:") and value not in saved[key]
        else:
            assert saved[key] == value, key
    assert ClientConfig.load(path).settings(env={}) == settings  # the same after a round trip
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_the_service_guide_example_means_what_it_says(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(GUIDE_EXAMPLE, encoding="utf-8")
    config = ClientConfig.load_or_create(tmp_path)  # the folder holding config.json works too
    s = config.settings(env={})
    assert (s.server_url, s.api_token, s.station_name) == (
        "https://wats.yourcompany.com", "...", "ICT-STATION-01")
    assert s.queue.upload_interval == 10 and s.queue.retry_attempts == 3
    assert s.converters.enabled == ("WATSStandardXMLConverter", "TeradyneICTConverter")
    assert (s.logging.level, s.logging.backup_count) == ("INFO", 5)
    assert config.station_location == "Production Line A"


def test_the_architecture_converter_entries_become_watch_folders(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(ARCHITECTURE_EXAMPLE, encoding="utf-8")
    [folder] = ClientConfig.load(tmp_path / "config.json").settings(env={}).queue.watch_folders
    incoming = tmp_path / "C:\\TestData\\Incoming"  # a relative name on Linux
    assert folder == WatchFolder(
        path=incoming, converter="converters.csv_converter.CSVConverter", post_action="move",
        done_folder=incoming / "C:\\TestData\\Done", error_folder=incoming / "C:\\TestData\\Error",
        file_patterns=("*.csv",), arguments={"delimiter": ",", "encoding": "utf-8"})


def test_the_package_readme_config_maps_onto_this_client(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(PACKAGE_EXAMPLE, encoding="utf-8")
    config = ClientConfig.load(tmp_path / "config.json")
    s = config.settings(env={})
    assert s.server_url == "https://your-server.wats.com"
    assert s.api_token == "base64_encoded_token"
    assert s.queue.watch_folders == (WatchFolder(path=tmp_path / "test_data"),)
    assert config.instance_name == "Production Station 1"
    assert config.server_url == config.service_address == "https://your-server.wats.com"
    # queue_path and converter_path name the folders beside config.json, where they are.
    assert config.paths.queue == tmp_path / "queue"
    assert config.paths.converters == tmp_path / "converters"


@pytest.mark.parametrize(("change", "fragment"), [
    ({"queue_path": "/elsewhere/queue"}, "queue_path is '/elsewhere/queue', but this client"),
    ({"converter_path": "plugins"}, "converter_path is 'plugins'"),
    ({"auto_submit": False}, "auto_submit is false"),
    ({"server_url": "https://other.example.com"}, "server_url and service_address differ"),
    ({"watch_paths": "./test_data"}, "watch_paths must be a list"),
])
def test_older_keys_that_cannot_be_honoured_are_refused_by_name(
        tmp_path: Path, change: dict[str, Any], fragment: str) -> None:
    doc = {**json.loads(PACKAGE_EXAMPLE), **change}
    (tmp_path / "config.json").write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(ConfigError, match=fragment) as caught:
        ClientConfig.load(tmp_path / "config.json").settings(env={})
    assert str(tmp_path / "config.json") in str(caught.value)


def test_keywords_make_a_new_instance_config(tmp_path: Path) -> None:
    config = ClientConfig(instance_name="Production Station 1",
                          service_address="https://wats.example.com", api_token=TOKEN,
                          station_name="ST-1", data_dir=tmp_path / "data",
                          queue={"upload_interval": 30}, logging={"level": "debug"})
    assert config.path == tmp_path / "data" / "Production-Station-1" / "config.json"
    assert config.instance_name == "Production Station 1"
    assert not config.path.exists()  # nothing is written until save()
    config.save()
    text = config.path.read_text(encoding="utf-8")
    assert TOKEN not in text and '"api_token": "fernet:' in text
    assert stat.S_IMODE(config.path.stat().st_mode) == 0o600
    assert stat.S_IMODE((config.path.parent / "secret.key").stat().st_mode) == 0o600
    assert TOKEN not in repr(config) and TOKEN not in json.dumps(config.to_dict())
    loaded = ClientConfig.load(config.path)
    s = loaded.settings(env={})
    assert (s.server_url, s.api_token, s.station_name) == ("https://wats.example.com", TOKEN,
                                                           "ST-1")
    assert (s.queue.upload_interval, s.logging.level) == (30.0, "DEBUG")
    assert ClientConfig.for_instance("Production-Station-1", tmp_path / "data").api_token == TOKEN


def test_saving_elsewhere_moves_the_config_and_encrypts_with_the_key_there(
        tmp_path: Path) -> None:
    config = ClientConfig(service_address="https://wats.example.com", api_token=TOKEN,
                          data_dir=tmp_path / "data")
    config.save()
    target = tmp_path / "station" / "config.json"
    config.save(target)
    assert config.path == target and config.paths.queue == target.parent / "queue"
    assert (target.parent / "secret.key").exists()
    assert ClientConfig.load(target).api_token == TOKEN


def test_load_or_create_creates_a_private_default_config(tmp_path: Path) -> None:
    path = tmp_path / "new" / "config.json"
    config = ClientConfig.load_or_create(path)
    assert path.exists() and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert config.settings(env={}).server_url == ""
    with pytest.raises(ConfigError, match="no config file at"):
        ClientConfig.load(tmp_path / "missing.json")


def test_a_bad_value_is_refused_at_once_naming_the_key_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"server_url must be .*did you mean "
                                          r"'https://wats.example.com'"):
        ClientConfig(service_address="wats.example.com", data_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"did you mean 'queue.upload_interval'"):
        ClientConfig(queue={"upload_intervall": 5}, data_dir=tmp_path)
    config = ClientConfig(data_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"queue\.retry_delay must be a number of seconds"):
        config.set("queue.retry_delay", -1)
    with pytest.raises(ConfigError, match="api_token must be") as caught:
        config.api_token = "a token with spaces"
    assert "spaces" not in str(caught.value).split("got")[-1]  # a secret is never echoed


def test_unknown_keys_written_by_hand_survive_an_edit(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"server_url": "https://a.example.com", "x_site": {"line": 3},
                                "station_name": "old"}), encoding="utf-8")
    config = ClientConfig.load(path)
    config.station_name = "new"
    config.save()
    assert json.loads(path.read_text(encoding="utf-8")) == {
        "server_url": "https://a.example.com", "x_site": {"line": 3}, "station_name": "new"}


# -- the ReportQueue front --------------------------------------------------------------------


def test_queue_add_status_list_process_and_clear(tmp_path: Path, config: ClientConfig,
                                                 receiver: Receiver) -> None:
    queue = ReportQueue(config.path)
    assert queue.get_status() == QueueStatus(0, 0, 0, 0, 0)
    first = queue.add(a_report("SN-1"))
    assert queue.add(a_report("SN-1")) == first  # the same report is queued once
    from_dict = queue.add(wsjf_report(2))  # a WSJF dict, queued as it is
    source = tmp_path / "run.json"
    source.write_text(json.dumps(wsjf_report(3)), encoding="utf-8")
    from_file = queue.add(source)  # a file, converted as the service would
    assert source.exists()  # the library leaves the file where it is

    status = queue.get_status()
    assert (status.pending_count, status.processing_count, status.completed_count,
            status.failed_count) == (3, 0, 0, 0)
    pending = queue.list("pending")
    assert {item.id for item in pending} == {first, from_dict, from_file}
    assert {item.source for item in pending} == {"", str(source)}
    assert all(item.attempts == 0 and item.state == "pending" for item in pending)

    summary = queue.process_all()
    assert (summary.uploaded, summary.rejected, summary.server) == (3, 0, "online")
    assert receiver.stored_ids() == {first, from_dict, from_file}
    stored = json.loads((receiver.store / f"{first}.json").read_text())
    assert (stored["sn"], stored["machineName"], stored["location"]) == ("SN-1", "ST-LIB", "Lab")
    assert stored["root"]["steps"][0]["numericMeas"][0]["status"] == "P"
    assert queue.get_status().completed_count == 3
    assert [r.id for r in queue.list("completed", limit=1)] != []
    assert queue.clear_completed() == 3
    assert queue.get_status() == QueueStatus(0, 0, 0, 0, 0)


def test_a_report_needs_a_start_time_and_valid_fields(config: ClientConfig) -> None:
    queue = ReportQueue(config)
    with pytest.raises(ReportValidationError, match="no start time"):
        queue.add(UUTReport(pn="PN", sn="SN", rev="A", operation_code=10))
    bad = a_report()
    bad.add_numeric_step("x" * 101, 1.0)
    with pytest.raises(ReportValidationError, match=r"root.steps\[1\].name' is 101 characters"):
        queue.add(bad)
    with pytest.raises(TypeError, match="cannot queue a int"):
        queue.add(42)  # type: ignore[arg-type]
    assert queue.get_status().pending_count == 0


def test_a_different_report_under_a_used_id_is_refused_the_same_one_is_not(
        config: ClientConfig) -> None:
    queue = ReportQueue(config)
    report_id = str(uuid.uuid4())
    first = {**wsjf_report(1), "id": report_id}
    assert queue.add(first) == report_id
    assert queue.add(dict(first)) == report_id  # the same report again: queued once
    with pytest.raises(ReportIdClashError, match=f"report id {report_id} is already used"):
        queue.add({**wsjf_report(2), "id": report_id})
    assert queue.get_status().pending_count == 1


def test_rejected_reports_fail_and_retry_failed_queues_them_again(
        config: ClientConfig, receiver: Receiver) -> None:
    queue = ReportQueue(config)
    report_id = queue.add(a_report())
    receiver.faults = Faults(reject_rate=1.0)
    summary = queue.process_all()
    assert (summary.uploaded, summary.rejected) == (0, 1)
    [failed] = queue.list("failed")
    assert failed.id == report_id and "rejected by the server" in failed.last_error
    receiver.faults = Faults()
    assert queue.retry_failed() == 1
    assert queue.get_status().pending_count == 1
    assert queue.process_all().uploaded == 1
    assert receiver.stored_ids() == {report_id}


def test_offline_keeps_reports_pending_without_counting_an_attempt(tmp_path: Path) -> None:
    config = make_config(tmp_path / "instance", closed_port_url())
    queue = ReportQueue(config)
    report_id = queue.add(a_report())
    summary = queue.process_all()
    assert summary.server == "offline" and "cannot reach WATS" in summary.message
    assert summary.remaining["pending"] == 1
    documented = {"uploaded": 0, "rejected": 0, "retry_later": 0, "server": "offline",
                  "message": summary.message}
    assert documented.items() <= json.loads(json.dumps(summary.to_dict())).items()
    [item] = queue.list("pending")
    assert item.id == report_id and item.attempts == 0


def test_queue_by_instance_name(tmp_path: Path, receiver: Receiver) -> None:
    data = tmp_path / "data"
    ClientConfig(instance_name="station1", server_url=receiver.url, api_token=TOKEN,
                 data_dir=data).save()
    queue = ReportQueue("station1", data_dir=data)
    assert queue.folder == data / "station1" / "queue"
    queue.add(a_report())
    assert queue.process_all().uploaded == 1


def test_draining_is_refused_while_the_service_runs_but_adding_is_safe(
        config: ClientConfig, receiver: Receiver, no_leaked_threads: None) -> None:
    client = WATSClient(config)
    client.start()
    try:
        queue = ReportQueue(config.path)
        with pytest.raises(LockError, match="in use by pid"):
            queue.process_all()
        report_id = queue.add(a_report("SN-WHILE-RUNNING"))
        assert receiver.wait_for_reports(1, timeout=15)
        assert receiver.stored_ids() == {report_id}
    finally:
        client.stop()
    assert queue.process_all().uploaded == 0  # the lock is free again once stopped


# -- WATSClient --------------------------------------------------------------------------------


def test_wats_client_watches_converts_and_uploads_until_stopped(
        tmp_path: Path, config: ClientConfig, receiver: Receiver,
        no_leaked_threads: None) -> None:
    watch = tmp_path / "results"
    watch.mkdir()
    config.add_watch_folder(watch)
    config.save()
    with WATSClient(config.path) as client:
        assert client.running
        staging = tmp_path / "staging.json"
        staging.write_text(json.dumps(wsjf_report(7)), encoding="utf-8")
        os.replace(staging, watch / "unit7.json")  # as equipment writes: elsewhere, then rename
        assert receiver.wait_for_reports(1, timeout=20)
        wait_until(lambda: (watch / "done" / "unit7.json").exists(), 10, "the post-action")
        wait_until(lambda: client.status().get("uploaded") == 1, 10, "the status")
        status = client.status()
        assert status["state"] == "running" and status["server"] == "online"
        assert status["queue"]["completed"] == 1
        with pytest.raises(LockError):
            WATSClient(config).start()  # one owner per instance
    assert not client.running
    assert client.status()["running"] is False
    [stored] = receiver.stored_ids()
    assert json.loads((receiver.store / f"{stored}.json").read_text())["sn"] == "SN000007"


def test_wats_client_refuses_to_start_without_a_server(tmp_path: Path,
                                                       no_leaked_threads: None) -> None:
    config = ClientConfig(path=tmp_path / "config.json", api_token=TOKEN)
    client = WATSClient(config)
    with pytest.raises(ConfigError, match="server_url is not set"):
        client.start()
    assert not client.running
    assert client.stop() is None


@pytest.mark.parametrize("entry", ["process_all", "ConnectionService", "QueueService"])
def test_every_entry_point_says_the_same_about_a_missing_server(tmp_path: Path,
                                                                 entry: str) -> None:
    config = ClientConfig(path=tmp_path / "config.json", api_token=TOKEN)
    start = {"process_all": lambda: ReportQueue(config).process_all(),
             "ConnectionService": lambda: ConnectionService(config),
             "QueueService": lambda: QueueService(config).start()}[entry]
    with pytest.raises(ConfigError) as raised:
        start()
    assert str(raised.value).startswith(f"{config.path}: server_url is not set. Fix: ")
    assert "config set server_url" in str(raised.value)


# -- ConnectionService and QueueService --------------------------------------------------------


def test_connection_service_online_version_and_periodic_checks(tmp_path: Path) -> None:
    receiver = Receiver(tmp_path / "store", token=TOKEN).start()
    config = make_config(tmp_path / "instance", receiver.url)
    connection = ConnectionService(config, interval=0.05)
    try:
        connection.start()  # the first check happens before start() returns
        assert connection.is_connected() and connection.state == "online"
        assert connection.get_server_version() == __version__
        receiver.stop()
        # The periodic check notices on its own.
        assert connection.wait_until(connected=False, timeout=10)
        assert connection.state == "offline" and "cannot reach WATS" in connection.message
        assert connection.get_server_version() is None
        assert connection.checks >= 3
    finally:
        connection.stop()
        receiver.stop()


def test_connection_service_says_when_the_credentials_are_refused(
        config: ClientConfig, receiver: Receiver) -> None:
    receiver.faults = Faults(auth_fail=True)
    with ConnectionService(config, interval=60) as connection:
        assert not connection.is_connected()
        assert connection.state == "paused" and "check api_token" in connection.message
        receiver.faults = Faults()
        assert connection.check() and connection.state == "online"


def test_queue_service_uploads_what_is_added_and_reports_its_status(
        tmp_path: Path, config: ClientConfig, receiver: Receiver,
        no_leaked_threads: None) -> None:
    watch = tmp_path / "results"
    watch.mkdir()
    (watch / "left-alone.json").write_text(json.dumps(wsjf_report(9)), encoding="utf-8")
    config.add_watch_folder(watch)  # a QueueService does not watch folders
    service = QueueService(config)
    assert service.get_status()["running"] is False
    service.start()
    try:
        ids = {service.add(a_report("SN-Q1")), service.add(wsjf_report(10))}
        assert receiver.wait_for_reports(2, timeout=15)
        assert receiver.stored_ids() == ids
        wait_until(lambda: service.get_status()["uploaded"] == 2, 10, "the status")
        status = service.get_status()
        assert (status["pending"], status["failed"], status["completed"]) == (0, 0, 2)
        assert status["running"] is True and status["server"] == "online"
    finally:
        service.stop()
    assert service.get_status()["running"] is False
    assert (watch / "left-alone.json").exists() and len(receiver.stored_ids()) == 2

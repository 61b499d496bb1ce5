"""`pywats-client doctor`: every check finds what is right and what is wrong, with a fix."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pywats_client import __version__
from pywats_client.cli import doctor
from pywats_client.cli.doctor import Diagnosis, Status, diagnose
from pywats_client.cli.main import main
from pywats_client.config.document import ConfigDocument, init_config, load_settings
from pywats_client.config.settings import QueueSettings, Settings, WatchFolder
from pywats_client.http.receiver import Receiver
from pywats_client.paths import InstancePaths
from pywats_client.queue.lock import InstanceLock
from pywats_client.service.status import ServiceStatus, write_status
from pywats_client.service.uploader import uploader_for
from tests.conftest import TOKEN
from tests.fakes import FakeClock
from tests.station import closed_port_url


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's PYWATS_* variables must not change what these tests see."""
    for name in list(os.environ):
        if name.startswith("PYWATS_"):
            monkeypatch.delenv(name)


def make_instance(tmp_path: Path, server_url: str, token: str = TOKEN,
                  **values: str) -> InstancePaths:
    """A configured instance under tmp_path/data with one watch folder, tmp_path/watch."""
    paths = InstancePaths.for_instance("default", tmp_path / "data")
    init_config(paths, server_url=server_url, api_token=token, station_name="ICT-01")
    doc = ConfigDocument.load(paths.config, paths.key)
    watch = tmp_path / "watch"
    watch.mkdir(exist_ok=True)
    doc.add_watch_folder(str(watch))
    for key, value in values.items():
        doc.set(key, value)
    doc.save()
    return paths


@pytest.fixture
def instance(tmp_path: Path, receiver: Receiver) -> InstancePaths:
    return make_instance(tmp_path, receiver.url)


def check(diagnosis: Diagnosis, name: str) -> doctor.CheckResult:
    found = [c for c in diagnosis.checks if c.name == name]
    assert len(found) == 1, f"expected one {name!r} check in {diagnosis.checks}"
    return found[0]


def names(diagnosis: Diagnosis) -> list[str]:
    return [c.name for c in diagnosis.checks]


def settings_of(paths: InstancePaths) -> Settings:
    return load_settings(paths.config, key_path=paths.key)


# -- the whole station ---------------------------------------------------------------------------


def test_a_healthy_station_needs_no_fixing(instance: InstancePaths) -> None:
    diagnosis = diagnose(instance, clock=FakeClock(datetime.datetime(2026, 6, 1).timestamp()))
    assert not diagnosis.needs_fixing, diagnosis.render()
    assert names(diagnosis) == [
        "python", "dependencies", "config", "config permissions", "key permissions",
        "plugin folder", "server", "credentials", "processes", "watch folder", "queue",
        "memory", "clock", "service"]
    assert check(diagnosis, "service").status is Status.WARN  # nothing runs it in this test
    for result in diagnosis.checks:
        assert result.found
        assert bool(result.fix) == (result.status is not Status.OK), result


def test_checks_that_need_the_config_are_not_run_without_it(tmp_path: Path) -> None:
    paths = InstancePaths.for_instance("line-b", tmp_path / "data")
    diagnosis = diagnose(paths)
    assert diagnosis.needs_fixing
    config = check(diagnosis, "config")
    assert config.status is Status.FAIL
    assert str(paths.config) in config.found
    assert "pywats-client --instance line-b config init" in config.fix
    assert "server" not in names(diagnosis) and "queue" not in names(diagnosis)
    assert {"python", "dependencies", "clock", "service"} <= set(names(diagnosis))


def test_a_folder_the_doctor_cannot_look_into_is_a_finding_not_a_crash(tmp_path: Path) -> None:
    # A name longer than NAME_MAX makes stat() fail the way another user's 0700 instance folder
    # does for a non-root doctor (which root, running these tests, cannot reproduce).
    paths = InstancePaths.for_instance("default", tmp_path / ("d" * 300))
    diagnosis = diagnose(paths)
    config = check(diagnosis, "config")
    assert config.status is Status.FAIL and "cannot look" in config.found
    assert "run the doctor as the user the service runs as" in config.fix
    assert check(diagnosis, "clock").status is Status.OK  # the other checks still ran


# -- Python and dependencies ---------------------------------------------------------------------


def test_python_version() -> None:
    assert doctor.check_python((3, 11, 7)).status is Status.OK
    old = doctor.check_python((3, 9, 2))
    assert old.status is Status.FAIL
    assert "3.9.2" in old.found and "3.10" in old.fix


def test_dependencies_are_listed_with_their_versions() -> None:
    result = doctor.check_dependencies()
    assert result.status is Status.OK
    for name in ("requests", "watchdog", "cryptography"):
        assert name in result.found
    import requests

    assert f"requests {requests.__version__}" in result.found


def test_a_missing_or_too_old_dependency_fails() -> None:
    missing = doctor.check_dependencies(["requests>=2.28", "no-such-dependency>=1.0"])
    assert missing.status is Status.FAIL
    assert "no-such-dependency cannot be imported" in missing.found
    assert "install.sh" in missing.fix and "pip" in missing.fix
    old = doctor.check_dependencies(["requests (>=999.0)"])
    assert old.status is Status.FAIL
    assert "older than 999.0" in old.found


# -- config and permissions ----------------------------------------------------------------------


def test_a_valid_config(instance: InstancePaths) -> None:
    result = doctor.check_config(instance)
    assert result.status is Status.OK
    assert "ICT-01" in result.found and "1 watch folder" in result.found
    assert TOKEN not in result.found


def test_an_invalid_config_names_the_key(instance: InstancePaths) -> None:
    data = json.loads(instance.config.read_text())
    data["queue"]["retry_delay"] = "soon"
    instance.config.write_text(json.dumps(data))
    result = doctor.check_config(instance)
    assert result.status is Status.FAIL
    assert "queue.retry_delay" in result.found
    assert "config set" in result.fix
    instance.config.write_text("{ not json")
    assert doctor.check_config(instance).status is Status.FAIL


def test_a_token_in_plain_text_is_a_warning(instance: InstancePaths) -> None:
    data = json.loads(instance.config.read_text())
    data["api_token"] = TOKEN
    instance.config.write_text(json.dumps(data))
    result = doctor.check_config(instance)
    assert result.status is Status.WARN
    assert "unencrypted" in result.found and "config set api_token" in result.fix
    assert TOKEN not in result.found + result.fix


def test_config_and_key_must_be_private(instance: InstancePaths) -> None:
    assert doctor.check_secret_file(instance.config, "config permissions",
                                    "it").status is Status.OK
    instance.config.chmod(0o644)
    instance.key.chmod(0o640)
    diagnosis = diagnose(instance, probe_server=False)
    config = check(diagnosis, "config permissions")
    assert config.status is Status.FAIL
    assert "0644" in config.found and f"chmod 600 '{instance.config}'" == config.fix
    key = check(diagnosis, "key permissions")
    assert key.status is Status.FAIL
    assert "decrypts the API token" in key.found and str(instance.key) in key.fix


def test_plugin_folder_writable_by_others_fails(tmp_path: Path) -> None:
    plugins = tmp_path / "converters"
    assert doctor.check_plugin_folder(plugins).status is Status.OK  # none: nothing to load
    plugins.mkdir(mode=0o700)
    (plugins / "mine.py").write_text("")
    (plugins / "mine.py").chmod(0o600)
    assert doctor.check_plugin_folder(plugins).status is Status.OK
    plugins.chmod(0o777)
    result = doctor.check_plugin_folder(plugins)
    assert result.status is Status.FAIL
    assert "writable by other users" in result.found and "0777" in result.found
    assert "chmod go-w" in result.fix
    plugins.chmod(0o700)
    (plugins / "mine.py").chmod(0o666)
    result = doctor.check_plugin_folder(plugins)
    assert result.status is Status.FAIL and "mine.py" in result.found


# -- the server ----------------------------------------------------------------------------------


def test_server_credentials_and_processes_ok(instance: InstancePaths) -> None:
    diagnosis = diagnose(instance)
    assert check(diagnosis, "server").status is Status.OK
    assert check(diagnosis, "credentials").status is Status.OK
    processes = check(diagnosis, "processes")
    assert processes.status is Status.OK and "4 process code(s)" in processes.found


def test_an_unreachable_server_fails(tmp_path: Path) -> None:
    paths = make_instance(tmp_path, closed_port_url())
    diagnosis = diagnose(paths)
    server = check(diagnosis, "server")
    assert server.status is Status.FAIL
    assert "cannot reach" in server.found
    assert "firewall" in server.fix and "queue" in server.fix
    # Nothing answered, so nothing can be said about the token or the processes.
    assert "credentials" not in names(diagnosis) and "processes" not in names(diagnosis)


def test_a_wrong_token_fails_the_credentials(tmp_path: Path, receiver: Receiver) -> None:
    wrong = "d3Jvbmc6dG9rZW4tdmFsdWU="  # base64("wrong:token-value")
    paths = make_instance(tmp_path, receiver.url, token=wrong)
    diagnosis = diagnose(paths)
    assert check(diagnosis, "server").status is Status.OK
    credentials = check(diagnosis, "credentials")
    assert credentials.status is Status.FAIL
    assert "401" in credentials.found
    assert "config set api_token" in credentials.fix
    assert wrong not in diagnosis.render() and wrong not in json.dumps(diagnosis.to_dict())


def test_a_wrong_path_prefix_fails_the_server(tmp_path: Path, receiver: Receiver) -> None:
    paths = make_instance(tmp_path, receiver.url + "/wats")
    server = check(diagnose(paths), "server")
    assert server.status is Status.FAIL
    assert "404" in server.found and "path prefix" in server.fix


def test_an_untrusted_certificate_fails_with_the_ca_bundle_fix(
        tmp_path: Path, https_receiver: tuple[Receiver, Path]) -> None:
    receiver, cert = https_receiver
    paths = make_instance(tmp_path, receiver.url)
    server = check(diagnose(paths), "server")
    assert server.status is Status.FAIL
    assert "TLS" in server.found and "ca_bundle" in server.fix
    doc = ConfigDocument.load(paths.config, paths.key)
    doc.set("ca_bundle", str(cert))
    doc.save()
    server = check(diagnose(paths), "server")
    assert server.status is Status.OK
    assert "certificate verified" in server.found


def test_plain_http_to_another_host_is_a_warning() -> None:
    from pywats_client.service.uploader import Outcome, UploadResult

    answered = UploadResult(Outcome.STORED, 200, "answered")
    result = doctor.check_server(Settings(server_url="http://wats.example.com"), answered)
    assert result.status is Status.WARN and "unencrypted" in result.found
    assert doctor.check_server(Settings(server_url="http://127.0.0.1:8080"),
                               answered).status is Status.OK


def test_an_unknown_default_process_code_fails(tmp_path: Path, receiver: Receiver) -> None:
    paths = make_instance(tmp_path, receiver.url,
                          **{"converters.defaults.process_code": "999"})
    result = check(diagnose(paths), "processes")
    assert result.status is Status.FAIL
    assert "process_code 999" in result.found and "10 SW Debug" in result.found
    assert "config set converters.defaults.process_code" in result.fix


def test_a_known_default_process_code_is_named(tmp_path: Path, receiver: Receiver) -> None:
    paths = make_instance(tmp_path, receiver.url, **{"converters.defaults.process_code": "50"})
    settings = settings_of(paths)
    client = uploader_for(settings)
    try:
        result = doctor.check_processes(settings, client)
    finally:
        client.close()
    assert result.status is Status.OK and "50 (PCBA test)" in result.found


# -- folders and the queue -----------------------------------------------------------------------


def test_a_watch_folder_that_exists_and_is_writable(tmp_path: Path) -> None:
    result = doctor.check_watch_folder(WatchFolder(path=tmp_path))
    assert result.status is Status.OK and "readable and writable" in result.found


def test_a_missing_watch_folder_fails(tmp_path: Path) -> None:
    missing = tmp_path / "share" / "ict"
    result = doctor.check_watch_folder(WatchFolder(path=missing))
    assert result.status is Status.FAIL
    assert str(missing) in result.found and "not mounted" in result.found
    assert f"mkdir -p '{missing}'" in result.fix


def test_a_watch_folder_on_a_network_share_should_be_polled(tmp_path: Path) -> None:
    def on_cifs(_: Path) -> str:
        return "cifs"

    result = doctor.check_watch_folder(WatchFolder(path=tmp_path), fstype=on_cifs)
    assert result.status is Status.WARN
    assert "cifs" in result.found and '"polling": true' in result.fix
    polled = doctor.check_watch_folder(WatchFolder(path=tmp_path, polling=True), fstype=on_cifs)
    assert polled.status is Status.OK and "polled" in polled.found


@contextmanager
def unwritable(folder: Path) -> Iterator[None]:
    """`folder` made unwritable for whoever runs the tests: by its mode for a user, by a
    read-only bind mount for root (root may write whatever the mode says)."""
    if os.geteuid() != 0:
        folder.chmod(0o500)
        try:
            yield
        finally:
            folder.chmod(0o700)
        return
    mounted = subprocess.run(["mount", "--bind", str(folder), str(folder)],
                             capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"root cannot make a folder unwritable here: mount says {mounted.stderr}")
    try:
        readonly = subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)],
                                  capture_output=True, text=True, check=False)
        if readonly.returncode != 0:
            pytest.skip(f"no read-only bind mount here: {readonly.stderr}")
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_watch_folder_that_cannot_be_written_fails(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    with unwritable(folder):
        result = doctor.check_watch_folder(WatchFolder(path=folder))
        # With post_action none and the error folder elsewhere, nothing is written there.
        elsewhere = doctor.check_watch_folder(WatchFolder(
            path=folder, post_action="none", error_folder=tmp_path / "errors"))
    assert result.status is Status.FAIL and "cannot write" in result.found
    assert elsewhere.status is Status.OK


def test_the_queue_has_room(instance: InstancePaths) -> None:
    settings = settings_of(instance)
    result = doctor.check_queue(instance, settings)
    assert result.status is Status.OK and "free" in result.found
    low = doctor.check_queue(instance, settings, low_bytes=2**62)
    assert low.status is Status.WARN
    assert "free on the disk" in low.found and "clear-completed" in low.fix


def test_a_queue_on_a_network_filesystem(tmp_path: Path) -> None:
    paths = InstancePaths.for_instance("default", tmp_path)

    def on_nfs(_: Path) -> str:
        return "nfs4"

    refused = doctor.check_queue(paths, Settings(), fstype=on_nfs)
    assert refused.status is Status.FAIL
    assert "nfs4" in refused.found and "allow_network_filesystem" in refused.fix
    allowed = Settings(queue=QueueSettings(allow_network_filesystem=True))
    assert doctor.check_queue(paths, allowed, fstype=on_nfs).status is Status.WARN


# -- clock and service ---------------------------------------------------------------------------


def test_the_clock() -> None:
    now = FakeClock(datetime.datetime(2026, 11, 21, 8, 0, tzinfo=datetime.timezone.utc)
                    .timestamp())
    assert doctor.check_clock(now).status is Status.OK
    booted_without_rtc = doctor.check_clock(FakeClock(0.0))
    assert booted_without_rtc.status is Status.FAIL
    assert "1970-01-01" in booted_without_rtc.found
    assert "real-time clock" in booted_without_rtc.found and "NTP" in booted_without_rtc.fix
    last_year = FakeClock(datetime.datetime(2025, 12, 31, 23, 0).timestamp())
    assert doctor.check_clock(last_year).status is Status.FAIL
    future = doctor.check_clock(FakeClock(datetime.datetime(2100, 1, 1).timestamp()))
    assert future.status is Status.FAIL and "future" in future.found


def test_the_service_is_not_running(tmp_path: Path) -> None:
    paths = InstancePaths.for_instance("line-b", tmp_path)
    result = doctor.check_service(paths)
    assert result.status is Status.WARN
    assert "not running" in result.found and "--instance line-b" in result.fix


def test_the_service_runs_the_installed_version_or_not(tmp_path: Path) -> None:
    paths = InstancePaths.for_instance("default", tmp_path)
    paths.ensure()
    with InstanceLock(paths.lock) as lock:
        lock.release()
        lock.acquire("service")
        write_status(paths.state, ServiceStatus(version=__version__, supervisor="systemd"))
        running = doctor.check_service(paths)
        assert running.status is Status.OK
        assert f"pid {os.getpid()}" in running.found and "systemd" in running.found
        write_status(paths.state, ServiceStatus(version="0.0.1"))
        stale = doctor.check_service(paths)
        assert stale.status is Status.WARN
        assert "0.0.1" in stale.found and __version__ in stale.found
        assert "restart" in stale.fix


def test_a_one_shot_holding_the_lock_is_fine(tmp_path: Path) -> None:
    paths = InstancePaths.for_instance("default", tmp_path)
    lock = InstanceLock(paths.lock)
    lock.acquire("upload")
    try:
        result = doctor.check_service(paths)
    finally:
        lock.release()
    assert result.status is Status.OK and "(upload)" in result.found


# -- the command ---------------------------------------------------------------------------------


def test_doctor_json_shape_and_exit_code_with_warnings_only(
        instance: InstancePaths, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--data-dir", str(instance.root.parent), "doctor", "--json"])
    out = capsys.readouterr().out
    data = json.loads(out)
    assert code == 0, out
    assert set(data) == {"version", "instance", "instance_folder", "needs_fixing", "summary",
                         "checks"}
    assert data["version"] == __version__ and data["instance"] == "default"
    assert data["needs_fixing"] is False
    assert data["summary"]["fail"] == 0 and data["summary"]["warn"] >= 1  # service not running
    assert sum(data["summary"].values()) == len(data["checks"])
    for item in data["checks"]:
        assert set(item) == {"name", "status", "subject", "found", "fix"}
        assert item["status"] in ("ok", "warn", "fail")
    assert TOKEN not in out


def test_doctor_exit_code_and_text_when_something_needs_fixing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = make_instance(tmp_path, closed_port_url())
    paths.config.chmod(0o644)
    code = main(["--data-dir", str(paths.root.parent), "doctor"])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL  server" in out and "FAIL  config permissions" in out
    assert f"fix: chmod 600 '{paths.config}'" in out
    assert "2 problem(s) need fixing" in out
    assert TOKEN not in out


def test_warnings_alone_do_not_need_fixing() -> None:
    diagnosis = Diagnosis("default", Path("/x"), [
        doctor.ok("python", "3.11"), doctor.warn("service", "not running", "start it")])
    assert not diagnosis.needs_fixing
    text = diagnosis.render()
    assert "WARN  service" in text and "fix: start it" in text
    assert text.endswith("Nothing needs fixing; 1 warning(s).")


# -- converters and the data dir ------------------------------------------------------------


def test_a_watch_folder_bound_to_an_unknown_converter_fails_and_names_the_close_ones(
        tmp_path: Path) -> None:
    paths = make_instance(tmp_path, "http://127.0.0.1:9")
    data = json.loads(paths.config.read_text())
    data["queue"]["watch_folders"] = [{"path": str(tmp_path / "watch"),
                                       "converter": "WATSStandardJsonConverterr"}]
    paths.config.write_text(json.dumps(data))
    diagnosis = doctor.diagnose(paths, probe_server=False)
    found = check(diagnosis, "converter")
    assert found.status is Status.FAIL
    assert "WATSStandardJsonConverterr, which does not load" in found.found
    assert "did you mean WATSStandardJsonConverter" in found.found
    assert "config add-watch-folder" in found.fix and "--converter NAME" in found.fix
    assert diagnosis.needs_fixing
    assert "Nothing needs fixing" not in diagnosis.render()


def test_a_watch_folder_bound_to_a_converter_that_loads_is_fine(tmp_path: Path) -> None:
    paths = make_instance(tmp_path, "http://127.0.0.1:9")
    doc = ConfigDocument.load(paths.config, paths.key)
    doc.add_watch_folder(str(tmp_path / "watch"), converter="WATSStandardXMLConverter")
    doc.save()
    found = check(doctor.diagnose(paths, probe_server=False), "converter")
    assert found.status is Status.OK, found
    assert "WATSStandardXMLConverter loads" in found.found


def write_unit(folder: Path, data_dir: str | None, user: str = "pywats") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    unit = folder / "pywats-client@.service"
    lines = ["[Service]", f"User={user}", "StateDirectory=pywats"]
    if data_dir is not None:
        lines.append(f"Environment=PYWATS_DATA_DIR={data_dir}")
    unit.write_text("\n".join(lines) + "\n")
    return unit


def test_the_data_dir_differs_from_the_installed_unit_s(tmp_path: Path) -> None:
    paths = make_instance(tmp_path, "http://127.0.0.1:9")
    units = tmp_path / "etc-systemd"
    unit = write_unit(units, "/var/lib/pywats")
    (found,) = doctor.check_data_dir(paths, [units])
    assert found.status is Status.WARN
    assert f"installed unit {unit} runs instance 'default' in /var/lib/pywats" in found.found
    assert found.fix == ("run commands as the service's user, with its data dir: sudo -u pywats "
                         "pywats-client --data-dir /var/lib/pywats --instance default doctor")


def test_the_doctor_runs_the_data_dir_check(tmp_path: Path) -> None:
    paths = make_instance(tmp_path, "http://127.0.0.1:9")
    units = tmp_path / "etc-systemd"
    write_unit(units, "/var/lib/pywats")
    found = check(doctor.diagnose(paths, probe_server=False, unit_dirs=[units]), "data dir")
    assert found.status is Status.WARN and "/var/lib/pywats" in found.found


def test_a_drop_in_decides_the_unit_s_data_dir(tmp_path: Path) -> None:
    paths = make_instance(tmp_path, "http://127.0.0.1:9")
    units = tmp_path / "etc-systemd"
    write_unit(units, None)  # StateDirectory=pywats alone: /var/lib/pywats
    assert doctor.check_data_dir(paths, [units])[0].status is Status.WARN
    drop_in = units / "pywats-client@default.service.d"
    drop_in.mkdir()
    (drop_in / "data.conf").write_text(
        f'[Service]\nEnvironment="PYWATS_DATA_DIR={paths.data_dir}" "OTHER=1"\n')
    (found,) = doctor.check_data_dir(paths, [units])
    assert found.status is Status.OK and "as the installed unit" in found.found


def test_no_unit_and_nothing_out_of_place_says_nothing(tmp_path: Path) -> None:
    paths = make_instance(tmp_path, "http://127.0.0.1:9")
    assert doctor.check_data_dir(paths, [tmp_path / "none"]) == []


def test_an_older_default_instance_folder_is_named_with_the_move(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setattr(os, "geteuid", lambda: 4321)  # not root, not the service user
    data = tmp_path / ".config" / "pywats_client"
    older = data / "default"
    init_config(InstancePaths.for_instance("default", data.parent / "elsewhere"),
                server_url="http://127.0.0.1:9", api_token=TOKEN)
    older.parent.mkdir(parents=True)
    (data.parent / "elsewhere" / "default").rename(older)
    paths = InstancePaths.for_instance("default")
    assert paths.root == older and paths.in_older_place
    (found,) = doctor.check_data_dir(paths, [tmp_path / "none"])
    assert found.status is Status.WARN
    assert f"instance 'default' is in {older}" in found.found
    assert f"mv '{older}'/* '{data}'/" in found.fix
    # Moved as the fix says (config.json, key, queue; the logs folder's content beside them):
    for entry in older.iterdir():
        entry.rename(data / entry.name)
    older.rmdir()
    moved = InstancePaths.for_instance("default")
    assert (moved.root, moved.flat) == (data, True)
    assert doctor.check_data_dir(moved, [tmp_path / "none"]) == []
    assert load_settings(moved.config, key_path=moved.key, env={}).api_token == TOKEN

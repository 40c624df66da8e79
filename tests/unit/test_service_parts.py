"""The pieces that run melond as a service, in-process: where its inventory is looked up, the
systemd unit and its installation, the log formats and the reopened log file, sd_notify."""
from __future__ import annotations

import json
import logging
import os
import socket
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from melond import logs, main, paths, service
from melond.errors import MelonError
from melond.sdnotify import Notifier

SHIPPED = Path(main.__file__).parent / "data" / "melond.service"


# ---------------------------------------------------------------- the inventory's default path

@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.delenv(paths.CONFIG_ENV, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    return tmp_path


def test_melon_config_wins_and_is_returned_even_when_missing(clean_env: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(paths.CONFIG_ENV, str(clean_env / "missing.toml"))
    assert paths.default_config() == (str(clean_env / "missing.toml"), "MELON_CONFIG")


@pytest.mark.parametrize("euid", [0, 1000])
def test_each_user_reads_their_own_default_file_only_where_it_exists(clean_env: Path, monkeypatch, euid: int):
    monkeypatch.setattr(paths.os, "geteuid", lambda: euid)
    assert paths.default_config() == (None, "embedded")
    mine = clean_env / "xdg" / "melon" / "melon.toml"
    mine.parent.mkdir(parents=True)
    mine.write_text("")
    expected = (None, "embedded") if euid == 0 else (str(mine), "default")  # root never reads a home's file
    if euid == 0 and os.path.isfile(paths.SYSTEM_CONFIG):
        expected = (paths.SYSTEM_CONFIG, "default")
    assert paths.default_config() == expected


def test_the_user_config_dir_defaults_to_dot_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert paths.user_config() == str(tmp_path / ".config" / "melon" / "melon.toml")


# ---------------------------------------------------------------- the systemd unit

def _settings(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


def test_the_unit_keeps_jobs_running_and_leaves_them_unsandboxed():
    unit = _settings(service.unit_text())
    assert unit["ExecStart"] == [service.SHIPPED_EXEC]
    assert unit["KillMode"] == ["process"] and unit["Restart"] == ["on-failure"] and unit["Type"] == ["notify"]
    assert unit["StateDirectory"] == ["melon"] and unit["OOMPolicy"] == ["continue"]
    for jobs_would_inherit in ("NoNewPrivileges", "PrivateTmp", "ProtectHome", "ProtectSystem", "PrivateDevices",
                               "ProtectControlGroups", "ProtectKernelTunables", "CapabilityBoundingSet", "User"):
        assert jobs_would_inherit not in unit


def test_printing_points_exec_start_at_the_melond_run_and_changes_nothing_else():
    printed = service.unit_text("/opt/melon/bin/melond")
    assert printed == SHIPPED.read_text().replace("ExecStart=/usr/local/bin/melond", "ExecStart=/opt/melon/bin/melond")


def test_install_writes_the_unit_makes_the_config_dir_and_says_what_to_run(tmp_path: Path):
    unit, conf = tmp_path / "melond.service", tmp_path / "etc" / "melon"
    melond = tmp_path / "melond"
    melond.write_text("#!/bin/sh\n")
    melond.chmod(0o755)
    said = service.install(str(unit), str(conf), str(melond))
    assert unit.read_text() == service.unit_text(str(melond))
    assert stat.S_IMODE(unit.stat().st_mode) == 0o644 and conf.is_dir()
    assert said.splitlines()[0] == f"melond: wrote {unit} (ExecStart={melond})"
    assert said.endswith("  systemctl daemon-reload && systemctl enable --now melond")
    assert "warning" not in said and [p.name for p in tmp_path.iterdir()].count("melond.service") == 1
    again = service.install(str(unit), str(conf), str(melond))
    assert again.startswith(f"melond: unchanged {unit}")


def test_install_into_a_missing_folder_is_one_clear_error(tmp_path: Path):
    with pytest.raises(MelonError, match=r"cannot write .*no-such-dir.*: No such file or directory; run it as root"):
        service.install(str(tmp_path / "no-such-dir" / "melond.service"), str(tmp_path / "conf"), None)


def test_the_install_option_writes_where_told(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(main, "SYSTEM_CONFIG", str(tmp_path / "etc" / "melon" / "melon.toml"))
    unit = tmp_path / "melond.service"
    r = CliRunner().invoke(main.main, ["--install-systemd-unit", str(unit)])
    assert r.exit_code == 0, r.output
    assert unit.read_text() == service.unit_text()  # run in-process, not as `melond`: the shipped ExecStart
    assert (tmp_path / "etc" / "melon").is_dir()
    assert f"{service.SHIPPED_EXEC} is not an executable here" in r.output or os.access(service.SHIPPED_EXEC, os.X_OK)


# ---------------------------------------------------------------- log formats and the log file

def _record(msg: str = "melond ready", **extra) -> logging.LogRecord:
    record = logging.LogRecord("melond", logging.INFO, __file__, 1, msg, None, None)
    record.__dict__.update(extra)
    return record


def test_text_is_time_level_message_then_key_values():
    line = logs.Text().format(_record(socket="/var/lib/melon/melond.sock", port=None, nodes=["a", "b"],
                                      note="two words", empty=""))
    stamp, level, rest = line[:23], line[24:31], line[32:]
    assert stamp[4] == "-" and stamp[10] == " " and stamp[19] == "." and level == "INFO   "
    assert rest == 'melond ready socket=/var/lib/melon/melond.sock port=null nodes=["a", "b"] note="two words" empty=""'


def test_json_lines_keep_their_fields():
    out = json.loads(logs.JsonLines().format(_record(port=8443)))
    assert out["msg"] == "melond ready" and out["level"] == "info" and out["port"] == 8443 and "taskName" not in out


def test_the_log_file_is_reopened_at_its_path_after_logrotate_moved_it(tmp_path: Path):
    path = tmp_path / "melond.log"
    handler = logs.ReopenedFile(str(path))
    handler.setFormatter(logs.Text())
    try:
        handler.emit(_record("before"))
        path.rename(tmp_path / "melond.log.1")
        handler.emit(_record("moved, not yet reopened"))
        handler.reopen()
        handler.emit(_record("after"))
    finally:
        handler.close()
    old, new = (tmp_path / "melond.log.1").read_text(), path.read_text()
    assert "before" in old and "moved, not yet reopened" in old and "after" not in old
    assert "after" in new and "before" not in new


def test_a_log_file_that_cannot_be_opened_is_one_clear_error(tmp_path: Path):
    with pytest.raises(MelonError, match="cannot open the log file .*nowhere.*give --log-file a path"):
        logs.setup("INFO", None, str(tmp_path / "nowhere" / "melond.log"))


# ---------------------------------------------------------------- sd_notify

@pytest.fixture
def listener(tmp_path: Path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(tmp_path / "notify"))
    s.settimeout(5)
    yield s
    s.close()


def test_notify_sends_to_the_socket_and_takes_the_variables_out_of_the_environment(tmp_path: Path, listener):
    env = {"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid()),
           "PATH": "/bin"}
    n = Notifier(env)
    assert env == {"PATH": "/bin"} and n.interval == 15.0
    n.send("READY=1", "STATUS=serving")
    assert listener.recv(4096) == b"READY=1\nSTATUS=serving"


def test_an_abstract_notify_socket_is_reached():
    name = f"melon-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind("\0" + name)
        s.settimeout(5)
        Notifier({"NOTIFY_SOCKET": "@" + name}).send("WATCHDOG=1")
        assert s.recv(100) == b"WATCHDOG=1"


@pytest.mark.parametrize("env", [
    {},  # not started by systemd
    {"NOTIFY_SOCKET": "/run/systemd/notify", "WATCHDOG_USEC": "0"},
    {"NOTIFY_SOCKET": "/run/systemd/notify", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"},  # meant for another
    {"WATCHDOG_USEC": "30000000"},
])
def test_no_watchdog_unless_it_is_meant_for_this_process(env: dict):
    assert Notifier(dict(env)).interval is None


def test_nobody_listening_is_no_error(tmp_path: Path):
    Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")}).send("READY=1")
    Notifier({}).send("READY=1")

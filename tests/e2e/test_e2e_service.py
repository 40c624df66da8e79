"""melond as a service: the systemd unit it prints is the one it ships and systemd accepts it;
the inventory it reads without --inventory; readiness and the watchdog over sd_notify; its log
formats, and a log file that logrotate moves away while melond runs."""
from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import psutil
import pytest

from conftest import BIN, REPO, Melon, needs_root, refused_in_one_line, wait_for

SHIPPED = REPO / "melond" / "data" / "melond.service"
TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} INFO    melond ready socket=\S+melond\.sock port=null ")
SERVICE_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def _env(short_tmp: Path, **extra: str) -> dict[str, str]:
    """This process's environment without Melon's variables or systemd's, the embedded inventory
    pinned (never this machine's /etc/melon/melon.toml), and `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MELON_") and k not in SERVICE_ENV}
    empty = short_tmp / "no-inventory.toml"
    empty.touch()
    env["MELON_CONFIG"] = str(empty)
    env.update(extra)
    return env


def _start(short_tmp: Path, name: str, env: dict[str, str], stderr, *args: str) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / "melond"), "--state-dir", str(short_tmp / name), *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=stderr)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)


def _read_until(fd: int, text: bytes, timeout: float = 20) -> list[str]:
    """The lines `fd` gives up to and including the one holding `text`."""
    seen = b""
    while text not in seen or b"\n" not in seen[seen.index(text):]:
        ready, _, _ = select.select([fd], [], [], timeout)
        chunk = os.read(fd, 65536) if ready else b""
        if not chunk:
            pytest.fail(f"no {text!r} from melond; it wrote: {seen[-2000:]!r}")
        seen += chunk
    end = seen.index(b"\n", seen.index(text))
    return seen[:end].decode().replace("\r", "").splitlines()


# ---------------------------------------------------------------- the systemd unit

def test_the_printed_unit_is_the_shipped_file_and_systemd_accepts_it(short_tmp: Path):
    r = subprocess.run([str(BIN / "melond"), "--print-systemd-unit"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert r.stdout == SHIPPED.read_text().replace("\nExecStart=/usr/local/bin/melond\n",
                                                   f"\nExecStart={BIN / 'melond'}\n")
    verifier = shutil.which("systemd-analyze")
    if verifier is None:
        pytest.skip("systemd-analyze not found: install Debian's systemd package (apt-get install systemd) "
                    "to verify the unit")
    unit = short_tmp / "melond.service"
    unit.write_text(r.stdout)
    v = subprocess.run([verifier, "verify", str(unit)], capture_output=True, text=True, timeout=120)
    ours = [line for line in (v.stdout + v.stderr).splitlines() if "melond" in line]
    assert v.returncode == 0 and ours == [], v.stdout + v.stderr  # an unknown key is only a warning line


def test_systemd_analyze_does_catch_a_broken_unit(short_tmp: Path):
    """The check above means something: a typo in the unit is reported (as a warning, exit 0)."""
    verifier = shutil.which("systemd-analyze")
    if verifier is None:
        pytest.skip("systemd-analyze not found: install Debian's systemd package (apt-get install systemd)")
    unit = short_tmp / "melond.service"
    unit.write_text(SHIPPED.read_text().replace("KillMode=process", "KilMode=process")
                    .replace("/usr/local/bin/melond", str(BIN / "melond")))
    v = subprocess.run([verifier, "verify", str(unit)], capture_output=True, text=True, timeout=120)
    assert "Unknown key 'KilMode'" in v.stdout + v.stderr


# ---------------------------------------------------------------- which inventory

def test_melon_config_names_the_inventory_and_the_log_says_which(short_tmp: Path):
    inventory = short_tmp / "site.toml"
    inventory.write_text("[nodes.fromenv]\ncpus = 1\n")
    m = Melon(short_tmp)
    m.daemon_env = {"MELON_CONFIG": str(inventory)}
    try:
        m.start()
        assert [n["name"] for n in json.loads(m.run("minfo", "--json").stdout)] == ["fromenv"]
        said = [json.loads(line) for line in m.log.read_text().splitlines() if '"inventory"' in line]
        assert [(s["inventory"], s["source"]) for s in said] == [(str(inventory), "MELON_CONFIG")]
    finally:
        m.cleanup()


def test_a_melon_config_naming_no_file_is_refused(short_tmp: Path):
    missing = short_tmp / "nope.toml"
    r = subprocess.run([str(BIN / "melond"), "--state-dir", str(short_tmp / "s")], capture_output=True, text=True,
                       timeout=30, env=_env(short_tmp, MELON_CONFIG=str(missing)))
    refused_in_one_line(r, f"MELON_CONFIG={missing}: no such file", "unset it")


def test_inventory_overrides_melon_config(short_tmp: Path):
    given = short_tmp / "given.toml"
    given.write_text("[nodes.given]\n")
    r = subprocess.run([str(BIN / "melond"), "--check", "--inventory", str(given), "--state-dir", str(short_tmp / "s")],
                       capture_output=True, text=True, timeout=60, env=_env(short_tmp, MELON_CONFIG="/nonexistent"))
    assert r.returncode == 0 and r.stdout.splitlines()[1].startswith("given "), r.stdout + r.stderr


@needs_root
def test_a_user_without_melon_config_gets_their_xdg_config(short_tmp: Path):
    """As nobody (not root, who reads /etc/melon/melon.toml): $XDG_CONFIG_HOME/melon/melon.toml."""
    conf, state = short_tmp / "xdg", short_tmp / "s"
    (conf / "melon").mkdir(parents=True)
    (conf / "melon" / "melon.toml").write_text("[nodes.mine]\n")
    state.mkdir(mode=0o700)
    for path in (conf, conf / "melon", conf / "melon" / "melon.toml", state):
        os.chown(path, 65534, 65534)
    env = _env(short_tmp, XDG_CONFIG_HOME=str(conf), HOME="/nonexistent")
    del env["MELON_CONFIG"]
    r = subprocess.run([str(BIN / "melond"), "--check", "--state-dir", str(state)], capture_output=True, text=True,
                       timeout=60, env=env, preexec_fn=lambda: (os.setgroups([]), os.setgid(65534), os.setuid(65534)))
    assert r.returncode == 0 and r.stdout.splitlines()[1].startswith("mine "), r.stdout + r.stderr


# ---------------------------------------------------------------- sd_notify

def test_melond_tells_systemd_it_is_ready_pings_the_watchdog_and_says_when_it_stops(short_tmp: Path):
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(short_tmp / "notify"))
        listener.settimeout(20)
        env = _env(short_tmp, NOTIFY_SOCKET=str(short_tmp / "notify"), WATCHDOG_USEC="200000")
        with open(short_tmp / "melond.log", "ab") as err:
            proc = _start(short_tmp, "s", env, err)
        try:
            ready = listener.recv(4096).decode()
            assert ready.startswith("READY=1\nSTATUS=serving ") and (short_tmp / "s" / "melond.sock").exists()
            assert [listener.recv(4096) for _ in range(3)] == [b"WATCHDOG=1"] * 3  # every 0.1 s
            helpers = wait_for(lambda: psutil.Process(proc.pid).children(recursive=True), what="the local helper")
            for child in helpers:
                assert not set(SERVICE_ENV) & set(child.environ()), "a child of melond could speak for it"
            proc.send_signal(signal.SIGTERM)
            while (message := listener.recv(4096)) == b"WATCHDOG=1":
                pass
            assert message == b"STOPPING=1"
            assert proc.wait(timeout=30) == 0
        finally:
            _stop(proc)


# ---------------------------------------------------------------- log formats and files

def test_the_log_is_json_lines_on_a_pipe_and_text_on_a_terminal(short_tmp: Path):
    env = _env(short_tmp)
    proc = _start(short_tmp, "pipe", env, subprocess.PIPE)
    try:
        lines = _read_until(proc.stderr.fileno(), b"melond ready")
        assert [json.loads(line)["msg"] for line in lines][-1] == "melond ready"
    finally:
        _stop(proc)
        proc.stderr.close()
    primary, secondary = os.openpty()
    try:
        proc = _start(short_tmp, "tty", env, secondary)
        os.close(secondary)
        try:
            last = _read_until(primary, b"melond ready")[-1]
            assert TEXT_LINE.match(last), last
        finally:
            _stop(proc)
    finally:
        os.close(primary)


def test_log_format_text_reads_as_a_person_would(short_tmp: Path):
    m = Melon(short_tmp)
    m.start_args = ["--log-format", "text"]
    try:
        m.start()
        lines = m.log.read_text().splitlines()
        assert any(TEXT_LINE.match(line) for line in lines), lines
        read = f" INFO    inventory read inventory={short_tmp}/no-inventory.toml source=MELON_CONFIG"
        assert [line[23:] for line in lines if "inventory read" in line] == [read], lines
    finally:
        m.cleanup()


def test_sighup_after_logrotate_moved_the_log_file_writes_a_new_one_and_melond_runs_on(short_tmp: Path):
    log = short_tmp / "log" / "melond.log"
    log.parent.mkdir()
    m = Melon(short_tmp)
    m.start_args = ["--log-file", str(log)]
    try:
        m.start()
        assert m.log.read_text() == "", "with --log-file, nothing goes to stderr"
        log.rename(log.parent / "melond.log.1")
        m.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: log.exists() and "log file reopened" in log.read_text(), what="a new log file at the path")
        m.proc.send_signal(signal.SIGHUP)  # with nothing moved: the same file, reopened again
        wait_for(lambda: log.read_text().count("log file reopened") == 2, what="the second SIGHUP's line")
        assert m.proc.poll() is None and m.run("minfo", "--json").returncode == 0
        rotated = (log.parent / "melond.log.1").read_text()
        assert "melond ready" in rotated and "reopened" not in rotated
        assert all(json.loads(line) for line in log.read_text().splitlines())  # a file gets JSON lines
    finally:
        m.cleanup()
    assert "melond stopped" in log.read_text()

"""remote/bootstrap.py: the first stage in a real `python -c`, one test per way the bootstrap can fail."""

import ast
import json
import os
import pathlib
import signal
import subprocess
import sys
import time
import zlib

import psutil
import pytest

from melon_remote import limits
from melon_remote.bootstrap import FIRST_STAGE, READY, SHIPPED, payload
from melon_remote.wire import Decoder, encode

from pipe_reading import read_exact, read_some

REMOTE = pathlib.Path(__file__).resolve().parents[2] / "remote"
EXIT_TIMEOUT = 5.0


class FirstStage:
    """`python -c FIRST_STAGE SPOOL` on pipes, read without Python buffering so no byte is hidden."""

    def __init__(self, spool: pathlib.Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", FIRST_STAGE, str(spool)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            bufsize=0, start_new_session=True,
        )
        self.decoder = Decoder()
        self.frames: list[dict] = []

    def send(self, data: bytes) -> None:
        self.proc.stdin.write(data)

    def close_stdin(self) -> None:
        self.proc.stdin.close()

    def read_exact(self, n: int, timeout: float = EXIT_TIMEOUT) -> bytes:
        return read_exact(self.proc.stdout.fileno(), n, timeout)

    def next_frame(self, timeout: float = EXIT_TIMEOUT) -> dict:
        deadline = time.monotonic() + timeout
        while not self.frames:
            chunk = self._read(deadline)
            if not chunk:
                pytest.fail(f"stdout closed before a frame arrived; stderr: {self.stderr_after_exit()!r}")
            self.frames += self.decoder.feed(chunk)
        return self.frames.pop(0)

    def rest_of_stdout(self, timeout: float = EXIT_TIMEOUT) -> bytes:
        data = b""
        deadline = time.monotonic() + timeout
        while chunk := self._read(deadline):
            data += chunk
        return data

    def _read(self, deadline: float) -> bytes:
        chunk = read_some(self.proc.stdout.fileno(), deadline)
        if chunk is None:
            pytest.fail("timed out reading the first stage's stdout")
        return chunk

    def wait(self, timeout: float = EXIT_TIMEOUT) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the first stage did not exit within {timeout}s")

    def stderr_after_exit(self) -> str:
        if self.proc.poll() is None:
            return "(still running)"
        return self.proc.stderr.read().decode("utf-8", "replace")

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            f.close()


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.fixture
def start(tmp_path):
    """Start first stages; kill what is left, and fail on leaked children or file descriptors."""
    fds_before = _open_fds()
    started: list[FirstStage] = []

    def make() -> FirstStage:
        fs = FirstStage(tmp_path / "spool")
        started.append(fs)
        return fs

    yield make
    for fs in started:
        fs.cleanup()
    assert psutil.Process().children() == [], "a first stage was left unreaped"
    assert _open_fds() <= fds_before, "file descriptors leaked"


def _gone(pid: int) -> bool:
    """Exited: no such process, or a zombie waiting for whoever adopted it."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_happy_path_hello_ping_and_exit_on_eof(start):
    fs = start()
    assert fs.read_exact(len(READY)) == READY
    fs.send(payload())
    hello = fs.next_frame()
    assert hello["event"] == "hello"
    info = hello["info"]
    assert isinstance(info["cpus"], int) and info["cpus"] >= 1
    assert isinstance(info["memory"], int) and info["memory"] > 0
    assert info["backend"] in limits.BACKENDS
    assert info["boot_id"] == pathlib.Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert info["pid"] == fs.proc.pid
    fs.send(encode({"id": 1, "op": "ping"}))
    reply = fs.next_frame()
    assert reply["id"] == 1 and reply["ok"] is True
    assert abs(reply["result"]["time"] - time.time()) < 60
    fs.send(encode({"id": 2, "op": "ping"}))
    assert fs.next_frame()["id"] == 2

    children = psutil.Process(fs.proc.pid).children()
    assert len(children) == 1, f"expected only the launcher, got {children}"
    launcher = children[0].pid

    fs.close_stdin()
    assert fs.wait() == 0
    assert fs.rest_of_stdout() == b""
    deadline = time.monotonic() + EXIT_TIMEOUT
    while not _gone(launcher):
        assert time.monotonic() < deadline, "the launcher outlived the helper"
        time.sleep(0.05)


def _pipelined(start) -> list[dict]:
    """The payload and the first request in one write; return the first two frames back."""
    fs = start()
    assert fs.read_exact(len(READY)) == READY
    fs.send(payload() + encode({"id": 1, "op": "ping"}))
    frames = [fs.next_frame(), fs.next_frame()]
    fs.close_stdin()
    fs.wait()
    return frames


def test_first_stage_does_not_swallow_bytes_behind_the_payload(start):
    frames = _pipelined(start)
    assert sorted(f.get("event", f"reply {f.get('id')}") for f in frames) == ["hello", "reply 1"]


def test_hello_is_the_first_frame_even_with_a_request_queued(start):
    frames = _pipelined(start)
    assert frames[0].get("event") == "hello"


def test_eof_before_the_payload(start):
    fs = start()
    assert fs.read_exact(len(READY)) == READY
    fs.close_stdin()
    assert fs.wait() != 0
    assert "EOF" in fs.stderr_after_exit()


def test_eof_in_the_length_line(start):
    fs = start()
    fs.send(b"12")
    fs.close_stdin()
    assert fs.wait() != 0
    assert "EOF" in fs.stderr_after_exit()


def test_truncated_payload(start):
    fs = start()
    body = payload()
    length, _, compressed = body.partition(b"\n")
    assert int(length) > 100
    fs.send(length + b"\n" + compressed[:100])
    fs.close_stdin()
    assert fs.wait() != 0
    assert "EOF" in fs.stderr_after_exit()


def test_garbage_length_line(start):
    fs = start()
    fs.send(b"SSH-2.0-OpenSSH banner\n")
    fs.close_stdin()
    code = fs.wait()
    assert code != 0
    assert "ValueError" in fs.stderr_after_exit()
    assert not psutil.pid_exists(fs.proc.pid) or _gone(fs.proc.pid)


def test_payload_that_is_not_zlib(start):
    fs = start()
    fs.send(b"16\n" + b"x" * 16)
    fs.close_stdin()
    assert fs.wait() != 0
    assert "zlib" in fs.stderr_after_exit()


@pytest.mark.parametrize("junk, complaint", [
    (b"Last login: Mon from 10.0.0.1\n", "bad frame magic"),
    ("checksum", "checksum"),
])
def test_corrupted_frame_ends_a_running_helper(start, junk, complaint):
    fs = start()
    assert fs.read_exact(len(READY)) == READY
    fs.send(payload())
    assert fs.next_frame()["event"] == "hello"
    if junk == "checksum":
        ping = bytearray(encode({"id": 5, "op": "ping"}))
        ping[-3] ^= 0x20
        junk = bytes(ping)
    fs.send(junk)
    fs.wait()  # stdin is still open: the helper leaves on its own
    assert fs.rest_of_stdout() == b"", "the helper answered a corrupted frame"
    assert complaint in fs.stderr_after_exit()


def _absolute_imports(source: str) -> set[str]:
    """Every module the source imports, by its full name: a relative import (the node side
    imports its siblings so, whatever the package's installed name) is taken as melon_remote's."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            module = "melon_remote" + (f".{node.module}" if node.module else "") if node.level else node.module
            names.add(module)
            if module == "melon_remote":
                names |= {f"melon_remote.{alias.name}" for alias in node.names}
    return names


def _not_shippable(source: str) -> set[str]:
    """Imports a bare python3 on a node cannot satisfy from the standard library and SHIPPED."""
    bad = set()
    for name in _absolute_imports(source):
        top = name.split(".")[0]
        if top == "melon_remote":
            if name != "melon_remote" and name not in SHIPPED:
                bad.add(name)
        elif top not in sys.stdlib_module_names:
            bad.add(name)
    return bad


def test_the_import_checker_catches_third_party_and_unshipped_imports():
    assert _not_shippable("import sqlite_utils\nfrom pydantic import BaseModel\nimport os.path") == {
        "sqlite_utils", "pydantic"}
    assert _not_shippable("def f():\n    from melon_remote import transports\n") == {"melon_remote.transports"}
    assert _not_shippable("from melon_remote.bootstrap import payload") == {"melon_remote.bootstrap"}
    assert _not_shippable("from . import transports\nfrom .bootstrap import payload") == {
        "melon_remote.transports", "melon_remote.bootstrap"}


@pytest.mark.parametrize("module", SHIPPED)
def test_shipped_modules_import_only_the_standard_library(module):
    source = (REMOTE / f"{module.split('.')[1]}.py").read_text()
    assert _not_shippable(source) == set()


def test_every_shipped_module_is_in_the_payload():
    length, _, body = payload().partition(b"\n")
    assert int(length) == len(body)
    shipped = dict(json.loads(zlib.decompress(body)))
    assert set(shipped) == set(SHIPPED)
    for name, source in shipped.items():
        assert source == (REMOTE / f"{name.split('.')[1]}.py").read_text()

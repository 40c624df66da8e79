"""Where a command asks when no endpoint is given: the user's own melond, else the system one,
and past a socket that a dead melond left behind."""
from __future__ import annotations

import socket
from pathlib import Path

import pytest

from melon_cli.common import client
from conftest import Melon
from melond import paths
from melond.errors import Unreachable


def _dead_socket(path: Path) -> None:
    """A socket file nobody listens on, as a melond killed with -9 leaves it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.close()


def test_a_dead_melonds_socket_does_not_hide_the_system_melond(melon: Melon, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    melon.submit("-H", "--wrap", "true")
    monkeypatch.setattr(paths, "SYSTEM_STATE_DIR", str(melon.state))  # the running melond is the system one here
    monkeypatch.setattr(paths, "default_state_dir", lambda: str(tmp_path / "mine"))
    _dead_socket(tmp_path / "mine" / paths.SOCKET_NAME)
    c = client(None)
    assert len(c.call("GET", "/jobs")["jobs"]) == 1
    assert c.endpoint == f"unix:{melon.state / paths.SOCKET_NAME}"

    monkeypatch.setattr(paths, "SYSTEM_STATE_DIR", str(tmp_path / "no-system"))  # and with no system melond
    with pytest.raises(Unreachable) as refused:
        client(None).call("GET", "/jobs")
    dead = tmp_path / "mine" / paths.SOCKET_NAME
    assert "the socket was left by a melond that is no longer running" in str(refused.value)
    assert f"remove {dead} to use the system melond" in str(refused.value)

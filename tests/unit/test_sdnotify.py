"""systemd's notify protocol (melond/sdnotify.py) against a real datagram socket, path and abstract."""
from __future__ import annotations

import os
import socket

from melond.sdnotify import notify, watchdog_interval


def test_notify_reaches_a_path_socket_and_an_abstract_one(tmp_path) -> None:
    for address, env in ((str(tmp_path / "n"), str(tmp_path / "n")), (f"\0melon-test-{os.getpid()}",
                                                                        f"@melon-test-{os.getpid()}")):
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
            systemd.bind(address)
            assert notify("READY=1", {"NOTIFY_SOCKET": env})
            assert systemd.recv(64) == b"READY=1"


def test_outside_systemd_notify_does_nothing(tmp_path) -> None:
    assert not notify("READY=1", {})
    assert not notify("READY=1", {"NOTIFY_SOCKET": "relative/path"})
    assert not notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})


def test_the_watchdog_pings_at_half_its_timeout_and_only_for_its_own_process() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}) == 1.0
    assert watchdog_interval({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}) is None  # meant for another
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}) is None
    assert watchdog_interval({}) is None

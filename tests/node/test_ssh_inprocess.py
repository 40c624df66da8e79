"""melond's SSH path to a node, without Docker: a real asyncssh server on 127.0.0.1 in the test
process (tests/node/sshd.py), whose sessions are local `/bin/sh -c` processes. So `SshTransport`
and `NodeSession` drive the real first stage, helper, supervisor and jobs, over a real SSH
connection, one node or a hundred and twenty.
"""
from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import asyncssh
import psutil
import pytest

from melond.errors import NodeUnavailable
from melond.nodes.fleet import NodeSession, bootstrap
from melond.nodes.transports import SshTransport
from melon_remote.protocol import Op
from sshd import STEP, USER, Keys, Recording, Sshd

MiB = 1024 * 1024
TEST_TIMEOUT = 20.0  # seconds for one test's whole event loop


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return Keys(tmp_path)


def run(main) -> None:
    """One test's event loop, bounded in time."""
    async def bounded() -> None:
        async with asyncio.timeout(TEST_TIMEOUT):
            await main()
    asyncio.run(bounded())


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def gone(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def all_gone(procs: list[psutil.Process], what: str) -> None:
    deadline = time.monotonic() + STEP
    while not all(gone(p) for p in procs):
        assert time.monotonic() < deadline, f"{what} still running: {[p for p in procs if not gone(p)]}"
        await asyncio.sleep(0.05)


def job(job_id: int, workdir: Path, script: str) -> dict:
    """A start request's job, shaped as melond/sched/launch.py:start_request builds it."""
    return {
        "id": job_id, "run": 0, "user": USER, "script": script, "args": [], "env": {"PATH": "/usr/bin:/bin"},
        "cwd": str(workdir), "output": str(workdir / f"job-{job_id}.out"), "error": None,
        "cpus": 1, "memory": 256 * MiB, "limit": 0, "kill_wait": 0.5, "tasks_max": 64, "signal": None,
    }


class Recorder:
    """A NodeSession's callbacks, as awaitable queues."""

    def __init__(self) -> None:
        self.ups: asyncio.Queue[dict] = asyncio.Queue()
        self.downs: asyncio.Queue[str] = asyncio.Queue()
        self.events: asyncio.Queue[dict] = asyncio.Queue()

    async def on_up(self, name: str, hello: dict) -> None:
        self.ups.put_nowait(hello)

    async def on_down(self, name: str, reason: str) -> None:
        self.downs.put_nowait(reason)

    def on_event(self, name: str, msg: dict) -> None:
        self.events.put_nowait(msg)

    def session(self, transport: SshTransport, spool: Path) -> NodeSession:
        return NodeSession("n1", transport, str(spool), on_up=self.on_up, on_down=self.on_down,
                           on_event=self.on_event, handshakes=asyncio.Semaphore(1), limits="none")


async def take(queue: asyncio.Queue, what: str):
    try:
        return await asyncio.wait_for(queue.get(), STEP)
    except TimeoutError:
        pytest.fail(f"no {what} within {STEP}s")


async def stop_session(session: NodeSession, running: asyncio.Task, transport: Recording, sshd: Sshd) -> None:
    """As melond stops: stop, then cancel the run task. That alone must end every helper's SSH
    session on the node; only then does the test close (again) the connections it saw made."""
    await session.stop()
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    try:
        if sshd.sessions:
            _, late = await asyncio.wait(sshd.sessions, timeout=STEP)
            assert not late, "a helper's SSH session outlived NodeSession.stop()"
    finally:
        await transport.closed()


def test_bootstrap_over_ssh_says_hello_and_the_helper_leaves_when_the_channel_closes(keys, tmp_path):
    spool = tmp_path / "spool"

    async def main() -> None:
        async with Sshd(keys.host, keys.client) as sshd:
            transport = keys.transport(sshd)
            try:
                channel, decoder, info = await asyncio.wait_for(bootstrap(transport, str(spool), "none"), STEP)
                assert info["hostname"] == os.uname().nodename
                assert isinstance(info["cpus"], int) and info["cpus"] >= 1
                assert info["user"] == USER and info["spool"] == str(spool)
                assert info["backend"] == "none"
                assert len(sshd.commands) == 1 and sshd.commands[0].startswith(sys.executable + " -c ")
                assert sshd.users == [USER]
                node_side = [psutil.Process(sshd.procs[0].pid), *descendants(sshd.procs[0].pid)]
                assert psutil.Process(info["pid"]) in node_side  # the helper runs in the SSH session
                channel.close()
                await asyncio.wait_for(sshd.lost.wait(), STEP)
                await all_gone(node_side, "the helper or its supervisor, after the channel closed,")
                await asyncio.wait_for(asyncio.gather(*sshd.sessions), STEP)
                assert sshd.statuses == [0], "the helper did not leave cleanly on EOF"
            finally:
                await transport.closed()

    run(main)


def test_a_node_session_over_ssh_runs_a_job_end_to_end(keys, tmp_path):
    spool, work = tmp_path / "spool", tmp_path / "work"
    work.mkdir()
    out = work / "written"
    node_side: list[psutil.Process] = []

    async def main() -> None:
        async with Sshd(keys.host, keys.client) as sshd:
            transport = keys.transport(sshd)
            calls = Recorder()
            session = calls.session(transport, spool)
            running = asyncio.ensure_future(session.run())
            try:
                hello = await take(calls.ups, "on_up")
                assert hello["backend"] == "none" and session.up
                assert (await session.request(Op.PING))["time"] > 0
                node_side.extend(psutil.Process(p.pid) for p in sshd.procs)
                node_side.extend(d for p in sshd.procs for d in descendants(p.pid))
                script = f"#!/bin/sh\nprintf 'job %s as %s\\n' \"$MELON_JOB_ID\" \"$(id -un)\" > {out}\necho done\n"
                spec = job(1, work, script)
                spec["env"]["MELON_JOB_ID"] = "1"
                started = await session.request(Op.START, job=spec)
                assert started["already"] is False and started["pid"] > 0
                event = await take(calls.events, "exited event")
                assert (event["event"], event["job_id"], event["run"]) == ("exited", 1, 0)
                assert event["result"]["exit_code"] == 0 and event["result"]["reason"] == "exited", event
                assert out.read_text() == f"job 1 as {USER}\n"
                assert (work / "job-1.out").read_text() == "done\n"
            finally:
                await stop_session(session, running, transport, sshd)
            assert calls.downs.empty(), "the node was reported down"
            await all_gone(node_side, "the helper or its supervisor, after the session stopped,")
        assert sshd.statuses == [0], "the helper did not leave cleanly when the session stopped"

    run(main)


def test_a_wrong_host_key_is_refused_and_no_helper_starts(keys, tmp_path):
    async def main() -> None:
        async with Sshd(keys.host, keys.client) as sshd:
            impostor = asyncssh.generate_private_key("ssh-ed25519")  # known_hosts trusts another key
            transport = keys.transport(sshd, trusted=impostor)
            try:
                with pytest.raises(ConnectionError) as refused:
                    await asyncio.wait_for(bootstrap(transport, str(tmp_path / "spool"), "none"), STEP)
                message = str(refused.value)
                assert f"host key of 127.0.0.1:{sshd.port} is unknown or changed" in message
                assert f"ssh-keyscan -p {sshd.port} 127.0.0.1 >> {keys.known_hosts}" in message
                assert transport.conns == []
                await asyncio.wait_for(sshd.lost.wait(), STEP)  # the client hung up
            finally:
                await transport.closed()
        assert sshd.commands == [] and sshd.procs == [], "a command ran over an unverified connection"
        assert not (tmp_path / "spool").exists()

    run(main)


def test_the_first_stage_failing_over_ssh_reports_its_stderr(keys, tmp_path):
    """SshChannel.stderr_lines: what the node's shell said reaches the error, over the channel."""
    async def main() -> None:
        async with Sshd(keys.host, keys.client) as sshd:
            transport = keys.transport(sshd, python="/nonexistent/python3")
            try:
                with pytest.raises(ConnectionError) as failed:
                    await asyncio.wait_for(bootstrap(transport, str(tmp_path / "spool"), "none"), STEP)
                assert "helper bootstrap failed: got b''" in str(failed.value)
                assert "/nonexistent/python3" in str(failed.value) and "not found" in str(failed.value)
            finally:
                await transport.closed()
        assert sshd.statuses == [127]

    run(main)


def test_a_dropped_connection_is_noticed_and_the_session_reconnects(keys, tmp_path):
    spool = tmp_path / "spool"

    async def main() -> None:
        async with Sshd(keys.host, keys.client) as sshd:
            transport = keys.transport(sshd)
            calls = Recorder()
            session = calls.session(transport, spool)
            running = asyncio.ensure_future(session.run())
            try:
                first = await take(calls.ups, "on_up")
                sshd.abort_connections()
                reason = await take(calls.downs, "on_down after the connection dropped")
                assert reason == "channel closed" or reason.startswith(("ConnectionLost", "ConnectionResetError")), reason
                assert not session.up
                with pytest.raises(NodeUnavailable, match="not connected"):
                    await session.request(Op.PING)  # refused at once, while the session backs off
                second = await take(calls.ups, "on_up of the reconnection")
                assert second["pid"] != first["pid"] and second["boot_id"] == first["boot_id"]
                assert len(transport.conns) == 2 and len(sshd.commands) == 2
                assert (await session.request(Op.PING))["time"] > 0
            finally:
                await stop_session(session, running, transport, sshd)
            assert calls.downs.empty(), "more than one loss reported"
        # The dropped connection's helper saw its stdin end and left cleanly, as the second one did.
        assert sshd.statuses == [0, 0]

    run(main)


def test_a_refused_session_closes_its_connection(keys, tmp_path):
    """A node that takes the login but refuses the session: the connection is closed, not left
    open with its keepalives running (each retry would leak one more)."""
    async def main() -> None:
        async with Sshd(keys.host, keys.client, refuse_sessions=True) as sshd:
            transport = keys.transport(sshd)
            try:
                with pytest.raises(asyncssh.ChannelOpenError):
                    await asyncio.wait_for(bootstrap(transport, str(tmp_path / "spool"), "none"), STEP)
                await asyncio.wait_for(sshd.lost.wait(), STEP)  # the client hung up by itself
                assert sshd.commands == []
            finally:
                await transport.closed()

    run(main)


def test_stopping_a_session_while_it_connects_starts_nothing(keys, tmp_path):
    """melond stops while a node's handshake is under way: the node is not reconciled (no on_up)
    and its channel is closed, so its helper leaves."""
    async def main() -> None:
        async with Sshd(keys.host, keys.client) as sshd:
            sshd.hold = asyncio.Event()
            transport = keys.transport(sshd)
            calls = Recorder()
            session = calls.session(transport, tmp_path / "spool")
            running = asyncio.ensure_future(session.run())
            try:
                deadline = time.monotonic() + STEP
                while not sshd.commands:  # the helper's command reached the node; its boot is held
                    assert time.monotonic() < deadline, "the session never reached the node"
                    await asyncio.sleep(0.02)
                await session.stop()
                sshd.hold.set()  # the handshake completes after the stop
                await asyncio.wait_for(asyncio.shield(running), STEP)  # run() returns by itself
                assert calls.ups.empty() and not session.up, "a stopped session was reconciled"
                await asyncio.wait_for(sshd.lost.wait(), STEP)  # and its connection closed
            finally:
                running.cancel()
                await asyncio.gather(running, return_exceptions=True)
                await transport.closed()
        assert sshd.statuses == [0], "the helper did not leave once its channel closed"

    run(main)



FLEET = 120  # sessions, each its own SSH connection, helper and supervisor


def test_a_hundred_and_twenty_nodes_each_on_a_real_ssh_connection(keys, tmp_path):
    """melond's sessions to 120 nodes at once, each a real SSH connection (through the
    handshake limit melond uses) to a real helper: every node comes up, answers, and leaves no
    process behind when its session stops. What a connection costs is bench/bench_ssh.py's."""
    from melond.daemon import MAX_HANDSHAKES
    ups: asyncio.Queue[str] = asyncio.Queue()

    async def on_up(name: str, hello: dict) -> None:
        ups.put_nowait(name)

    async def on_down(name: str, reason: str) -> None:
        pytest.fail(f"{name} went down: {reason}")

    async def main() -> None:
        async with Sshd(keys.host, keys.client) as sshd:
            transport = keys.transport(sshd)
            handshakes = asyncio.Semaphore(MAX_HANDSHAKES)
            sessions = [NodeSession(f"n{i:03}", transport, str(tmp_path / f"spool{i}"), on_up=on_up, on_down=on_down,
                                    on_event=lambda name, msg: None, handshakes=handshakes, limits="none")
                        for i in range(FLEET)]
            running = [asyncio.ensure_future(s.run()) for s in sessions]
            node_side: list[psutil.Process] = []
            try:
                up = {await asyncio.wait_for(ups.get(), 60) for _ in range(FLEET)}
                assert up == {s.name for s in sessions}
                assert len(sshd.conns) == FLEET and len(sshd.procs) == FLEET
                pongs = await asyncio.gather(*(s.request(Op.PING) for s in sessions))
                assert all(p["time"] > 0 for p in pongs)
                node_side.extend(psutil.Process(p.pid) for p in sshd.procs)
                node_side.extend(d for p in sshd.procs for d in descendants(p.pid))
            finally:
                await asyncio.gather(*(s.stop() for s in sessions))
                for task in running:
                    task.cancel()
                await asyncio.gather(*running, return_exceptions=True)
                await transport.closed()
            await all_gone(node_side, "a helper or supervisor, after its session stopped,")

    async def bounded() -> None:
        async with asyncio.timeout(120):
            await main()
    asyncio.run(bounded())

"""What a real SSH connection to a node costs melond: sessions to 10 and to 130 nodes over real
asyncssh connections (tests/node/sshd.py: an SSH server in this process whose sessions run the
real helper and supervisor as local processes), beside the same sessions over the local
transport (the helper on a pipe, no SSH), the reference measured in the same round.

Per connection (the difference between 130 and 10, over 120): the time to bring nodes up, this
process's memory (both ends of each SSH connection live here, so an upper bound of melond's
share) and its CPU while every node idles for IDLE seconds (the helpers' heartbeats); and the
round trip of one request. Each figure is the median of ROUNDS rounds with its spread, and its
ratio to the local transport's.
"""
from __future__ import annotations

import asyncio
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

from harness import median_range, summary, table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "node"))
from sshd import Keys, Sshd  # noqa: E402 - tests/node's in-process server
from melond.daemon import MAX_HANDSHAKES  # noqa: E402
from melond.nodes.fleet import NodeSession  # noqa: E402
from melond.nodes.transports import LocalTransport  # noqa: E402
from melon_remote.protocol import Op  # noqa: E402

SIZES = (10, 130)
ROUNDS = 3
IDLE = 10.0
PINGS = 200


async def fleet(count: int, transport, root: Path) -> dict:
    """`count` sessions over `transport`: seconds to bring them up, MiB and CPU seconds (over
    IDLE) of this process with them up, and one request's round trip (ms)."""
    me = psutil.Process()
    gc.collect()
    rss0 = me.memory_info().rss
    ups: asyncio.Queue[str] = asyncio.Queue()

    async def on_up(name: str, hello: dict) -> None:
        ups.put_nowait(name)

    async def on_down(name: str, reason: str) -> None:
        raise RuntimeError(f"{name} went down: {reason}")

    handshakes = asyncio.Semaphore(MAX_HANDSHAKES)
    sessions = [NodeSession(f"n{i:03}", transport, str(root / f"spool{i}"), on_up=on_up, on_down=on_down,
                            on_event=lambda name, msg: None, handshakes=handshakes, limits="none")
                for i in range(count)]
    began = time.perf_counter()
    running = [asyncio.ensure_future(s.run()) for s in sessions]
    try:
        for _ in range(count):
            await asyncio.wait_for(ups.get(), 120)
        up = time.perf_counter() - began
        gc.collect()
        rss = (me.memory_info().rss - rss0) / 2**20
        cpu0 = sum(me.cpu_times()[:2])
        await asyncio.sleep(IDLE)
        cpu = sum(me.cpu_times()[:2]) - cpu0
        rtts = []
        for i in range(PINGS):
            t = time.perf_counter()
            await sessions[i % count].request(Op.PING)
            rtts.append((time.perf_counter() - t) * 1000)
        return {"up": up, "rss": rss, "cpu": cpu, "rtt": statistics.median(rtts)}
    finally:
        await asyncio.gather(*(s.stop() for s in sessions))
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)


async def one_round(keys: Keys, root: Path) -> dict[str, dict[int, dict]]:
    out: dict[str, dict[int, dict]] = {"ssh": {}, "local": {}}
    for count in SIZES:
        out["local"][count] = await fleet(count, LocalTransport(), root / f"local{count}")
        async with Sshd(keys.host, keys.client) as sshd:
            transport = keys.transport(sshd)
            try:
                out["ssh"][count] = await fleet(count, transport, root / f"ssh{count}")
            finally:
                await transport.closed()
    return out


def main() -> None:
    rounds = []
    with tempfile.TemporaryDirectory(prefix="mssh-") as tmp:
        root = Path(tmp)
        keys = Keys(root)
        for r in range(ROUNDS):
            rounds.append(asyncio.run(one_round(keys, root / f"r{r}")))
            print(f"round {r + 1}: " + ", ".join(f"{kind} {n}: up {f[n]['up']:.1f} s" for kind, f in rounds[-1].items()
                                                 for n in SIZES), flush=True)
    small, big = SIZES
    per = (big - small)

    def per_node(kind: str, key: str, scale: float = 1.0) -> list[float]:
        return [(r[kind][big][key] - r[kind][small][key]) / per * scale for r in rounds]

    rows, ratios = [], {}
    for label, key, unit, scale in (("up, per node", "up", "ms", 1000), ("memory, per node", "rss", "MiB", 1),
                                    ("idle CPU, per node", "cpu", "% of a core", 100 / IDLE)):
        ssh, local = per_node("ssh", key, scale), per_node("local", key, scale)
        ratio = [s / l if l > 0 else float("nan") for s, l in zip(ssh, local)]
        ratios[key] = ratio
        rows.append([label, unit, median_range(ssh, "", 3), median_range(local, "", 3), median_range(ratio, "x", 1)])
    ssh_rtt = [r["ssh"][big]["rtt"] for r in rounds]
    local_rtt = [r["local"][big]["rtt"] for r in rounds]
    rows.append(["request round trip", "ms", median_range(ssh_rtt, "", 3), median_range(local_rtt, "", 3),
                 median_range([s / l for s, l in zip(ssh_rtt, local_rtt)], "x", 1)])
    table(f"A node over SSH against one over a pipe ({big} and {small} nodes, {ROUNDS} rounds; median (min-max))",
          ["figure", "unit", "SSH", "local", "SSH x local"], rows)
    summary("ssh", f"{median_range(per_node('ssh', 'rss'), ' MiB', 2)} and "
                   f"{median_range(per_node('ssh', 'up', 1000), ' ms', 0)} to bring up per SSH node "
                   f"({median_range(ratios['rss'], 'x', 1)} and {median_range(ratios['up'], 'x', 1)} a local one)")


if __name__ == "__main__":
    main()

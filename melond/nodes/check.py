"""`melond --check`: validate the inventory and probe every node, once, in parallel."""
from __future__ import annotations

import asyncio

from melond.config import Inventory
from melond.errors import MelonError
from melond.nodes.transports import transport_for
from melond.nodes.fleet import BOOT_TIMEOUT, bootstrap

HEADERS = ["NODE", "ADDRESS", "REACHABLE", "CPUS", "MEMORY_MB", "SYSTEMD", "LIMITS", "PYTHON", "NOTE"]


async def _hello(node, state_dir: str, name: str = "") -> dict:
    """Boot the node's helper once and return its probe (its hello); the channel is closed."""
    transport, spool = transport_for(node, state_dir, name)
    channel, _, info = await asyncio.wait_for(bootstrap(transport, spool, node.limits), BOOT_TIMEOUT)
    channel.close()
    return info


async def _probe(name: str, node, state_dir: str) -> list[str]:
    address = f"{node.host}:{node.port}" if node.remote else "simulated" if node.simulate else "local"
    try:
        info = await _hello(node, state_dir, name)
    except Exception as exc:  # noqa: BLE001 - every failure is a row, not a crash
        return [name, address, "no", "-", "-", "-", "-", "-", f"{type(exc).__name__}: {exc}"]
    note = info.get("backend_reason", "")
    if info.get("uid") != 0:
        note += f"; helper runs as {info.get('user')}: only {info.get('user')}'s jobs can run there"
    return [name, address, "yes", str(info["cpus"]), str(info["memory"]), "yes" if info["systemd"] else "no",
            info["backend"], info["python"], note]


async def probe_info(node, state_dir: str) -> dict:
    """One node's probe (the helper's hello), or MelonError saying why it cannot be reached."""
    try:
        return await _hello(node, state_dir)
    except Exception as exc:  # noqa: BLE001 - reported as one clear error
        raise MelonError(f"cannot reach the node: {type(exc).__name__}: {exc}") from None


async def check(inv: Inventory, state_dir: str) -> tuple[list[str], list[list[str]]]:
    """A row per connection: a node's, or on a personal node each user's (user@node)."""
    links = inv.links()
    rows = await asyncio.gather(*(_probe(link, node, state_dir) for link, (_, _, node) in links.items()))
    return HEADERS, list(rows)

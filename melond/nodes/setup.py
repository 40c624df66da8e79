"""`melond --print-node-setup NODE`: the one-time root commands that give a node reached as an
account that is not root per-job limits, from what the node's probe found. Pure: the probe's
facts in, text out."""
from __future__ import annotations

DROP_IN = "/etc/systemd/system/user@.service.d/melon-delegate.conf"


def setup_text(node: str, info: dict) -> tuple[str, bool]:
    """What to run as root on the node (or why nothing helps), and whether the node is ready as it is."""
    user = info.get("user")
    if info.get("uid") == 0:
        return f"# node {node}: melond logs in as root; jobs get their limits with no setup ({info.get('backend')}).", True
    facts = info.get("delegation") or {}
    head = f"# node {node}: melond logs in as {user}, not root; its jobs run as {user}."
    if facts.get("cgroup") != "v2" or not facts.get("systemd"):
        kind = "cgroup v1" if facts.get("cgroup") == "v1" else "no cgroup v2 with systemd"
        return (f"{head}\n# This node has {kind}: Melon delegates limits to an account only through that account's\n"
                f"# systemd manager on cgroup v2 (the kernel lets an account move processes only below a cgroup it\n"
                f"# owns, which only a systemd manager can hand it). Have melond log in as root, or boot the node with\n"
                f"# cgroup v2 (systemd.unified_cgroup_hierarchy=1). Until then its jobs run without limits.", False)
    commands = []
    if "memory" not in facts.get("delegated", []):
        commands += [f"mkdir -p {DROP_IN.rsplit('/', 1)[0]}",
                     f"printf '[Service]\\nDelegate=cpu memory pids\\n' > {DROP_IN}", "systemctl daemon-reload"]
    if not facts.get("linger"):
        commands.append(f"loginctl enable-linger {user}")
    if not commands:
        return f"{head}\n# Ready: {user}'s systemd manager delegates {' '.join(facts.get('delegated', []))} (systemd-user).", True
    why = (f"# Run once, as root on {node}, so that {user}'s own systemd manager runs without a login (lingering)\n"
           f"# and is handed the cpu, memory and pids controllers; melond then gives each job its own cgroup in a\n"
           f"# scope that manager delegates (limits = \"systemd-user\"):")
    return "\n".join([head, why, *commands]), False

"""`sinfo`, as Slurm prints it: partitions and their nodes grouped by state; `-o`, `-h`, `-N`,
`-p`, `-s`, `-a`; the default partition marked with `*`.

Slurm's node states here are melond's: idle, mix (mixed), alloc (allocated), drng (draining),
drain (drained) and down.
"""
from __future__ import annotations

from cli import queue_format
from cli.args import Opt
from cli.common import client, echo
from cli.slurm import tables
from cli.slurm.argv import SlurmCommand
from melond.spec.timespec import format_duration

PROG = "sinfo"
DEFAULT_FORMAT = "%9P %5a %.10l %.6D %.6t %N"
NODE_FORMAT = "%N %.6D %9P %6t"  # -N
SUMMARY_FORMAT = "%9P %5a %.10l %.16F %N"  # -s
STATE_SHORT = {"idle": "idle", "mixed": "mix", "allocated": "alloc", "draining": "drng", "drained": "drain",
               "down": "down"}
HEADERS = {"P": "PARTITION", "a": "AVAIL", "l": "TIMELIMIT", "D": "NODES", "t": "STATE", "T": "STATE",
           "N": "NODELIST", "c": "CPUS", "m": "MEMORY", "G": "GRES", "p": "PRIO_TIER", "F": "NODES(A/I/O/T)"}
# squeue's format grammar (cli.queue_format) with sinfo's codes; a row holds each code's text.
CODES = {code: (title, (), lambda row, now, code=code: row[code]) for code, title in HEADERS.items()}
FORMS = "fields are %[.][width]CODE; codes: " + " ".join(f"%{c} ({h})" for c, h in HEADERS.items())


def _limit(seconds: int) -> str:
    """sinfo's TIMELIMIT: infinite, 30:00, 4:00:00, 1-00:00:00."""
    if not seconds:
        return "infinite"
    days, rest = divmod(seconds, 86400)
    return f"{days}-{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}" if days else format_duration(rest)


def show(noheader: bool, fmt: str | None, node_oriented: bool, partitions: str | None, summarize: bool,
         show_all: bool, endpoint: str | None) -> None:
    """View information about Melon's nodes and partitions."""
    spec = queue_format.parse_format(fmt or (NODE_FORMAT if node_oriented else SUMMARY_FORMAT if summarize
                                             else DEFAULT_FORMAT), CODES, FORMS)
    c = client(endpoint)
    nodes = {n["name"]: n for n in c.call("GET", "/nodes")["nodes"]}
    parts = c.call("GET", "/partitions")["partitions"]
    if partitions:
        parts = [p for p in parts if p["name"] in set(partitions.split(","))]
    rows = []
    for p in parts:
        groups: dict[str, list[dict]] = {}
        for name in p["nodes"]:
            node = nodes[name]
            key = "" if summarize else STATE_SHORT.get(node["state"], node["state"])
            groups.setdefault(key, []).append(node)
        for state, members in groups.items():
            for chunk in ([[m] for m in members] if node_oriented else [members]):
                alloc = sum(m["state"] in ("allocated", "mixed", "draining") for m in chunk)
                idle = sum(m["state"] == "idle" for m in chunk)
                rows.append({
                    "P": p["name"] + ("*" if p["default"] else ""), "a": "up", "l": _limit(p["max_time"]),
                    "D": str(len(chunk)), "t": state, "T": state, "N": ",".join(m["name"] for m in chunk),
                    "c": str(chunk[0]["cpus"]), "m": str(chunk[0]["memory"]), "G": "(null)", "p": "1",
                    "F": f"{alloc}/{idle}/{len(chunk) - alloc - idle}/{len(chunk)}"})
    lines = [] if noheader else [queue_format.header(spec, CODES)]
    lines += [queue_format.render(spec, row, 0.0, CODES) for row in rows]
    if lines:
        echo("\n".join(lines))


COMMAND = SlurmCommand(PROG, show, [
    Opt("-h", "--noheader", dest="noheader", help="No header."),
    Opt("-o", "--format", dest="fmt", value=True, help="Fields: %P %a %l %D %t %N %c %m %G %p."),
    Opt("-N", "--Node", dest="node_oriented", help="One line per node."),
    Opt("-p", "--partition", dest="partitions", value=True, help="Only these partitions."),
    Opt("-s", "--summarize", dest="summarize", help="One line per partition, node counts by state."),
    Opt("-a", "--all", dest="show_all", help="Every partition (all are shown already)."),
], table=tables.SINFO,
    ignored=frozenset({"exact", "federation", "future", "hide", "local", "cluster", "clusters", "noconvert",
                       "verbose"}))
main = COMMAND.main

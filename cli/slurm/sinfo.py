"""`sinfo`, as Slurm's (src/sinfo/{opts,print,sinfo,sort}.c, 23.11): partitions and their nodes,
grouped as sinfo groups them; the default layouts, `-l`, `-N`, `-s`, `-o` and `-O/--Format`.

A line is a record: the nodes of one partition that agree on what the format shows (sinfo.c
`_match_node_data`: the state if a state is shown, features, GRES, reason, allocated memory...;
with `-N` each node alone); without a partition field, partitions that agree share one too.
Sizes of nodes that differ show as the smallest with `+` (CPUs `4+`). A partition with no node
still has its line when the format shows partitions. Fields as print.c prints them: cut to their
width (`:.N`/`%.N` right-justified), `(null)` where Slurm has nothing (GRES, features). What
melond does not know is Slurm's default: one socket per CPU (`N:1:1`), TmpDisk 0, Weight 1,
FreeMem and CPU load `N/A`.
"""
from __future__ import annotations

import sys
import time

from melon_cli.args import Opt
from melon_cli.common import client
from melon_cli.slurm import tables
from melon_cli.slurm.argv import SlurmCommand
from melon_cli.units import convert
from melond.spec.timespec import format_duration, ranged_hostlist

PROG = "sinfo"
# The default layouts (opts.c parse_command_line); partition and node-list widths follow the data.
DEFAULT = "partition:9 ,available:.5 ,time:.10 ,nodes:.6 ,statecompact:.6 ,nodelist:0"
LONG = ("partition:9 ,available:.5 ,time:.10 ,size:.10 ,root:.4 ,oversubscribe:.8 ,groups:.10 ,nodes:.6 ,"
        "statelong:.11 ,reservation:.11 ,nodelist:0")
NODE = "nodelist:0 ,nodes:.6 ,partition:.9 ,statecompact:6"
NODE_LONG = ("nodelist:0 ,nodes:.6 ,partition:.9 ,statelong:.11 ,cpus:4 ,socketcorethread:.8 ,memory:.6 ,disk:.8 ,"
             "weight:.6 ,features:.8 ,reason:20")
SUMMARY = "partition:9 ,available:.5 ,time:.10 ,nodeaiot:.16 ,nodelist:0"
MIN_FIELD = 9  # MIN_PART_FIELD_SIZE, MIN_NODE_FIELD_SIZE (print.c)

# melond's node states as Slurm's: compact (node_state_string_compact), long, and the number sort
# orders by (-t: highest first; DRAIN is a flag, 0x200, on top of the base state).
STATES = {"idle": ("idle", "idle", 2), "mixed": ("mix", "mixed", 5), "allocated": ("alloc", "allocated", 3),
          "draining": ("drng", "draining", 0x203), "drained": ("drain", "drained", 0x202),
          "down": ("down", "down", 1)}


def _range(low: object, high: object, use_range: bool = False) -> str:
    """_build_min_max_*_string: one value, `low+`, or with `use_range` `low-high`."""
    return str(high) if low == high else f"{low}-{high}" if use_range else f"{low}+"


def _secs(seconds: int) -> str:
    """_print_secs: M:SS, H:MM:SS or D-HH:MM:SS."""
    days, rest = divmod(seconds, 86400)
    return f"{days}-{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}" if days else format_duration(rest)


def _time(p: dict | None, key: str, none: str) -> str:
    if p is None:
        return "n/a"
    return none if not p.get(key) else _secs(int(p[key]))


def _partition(r: dict, width: int) -> str:
    """_print_partition: the default partition's name with `*`, over its last column if it fills the width."""
    if r["part"] is None:
        return "n/a"
    name = r["part"]["name"]
    if r["part"]["default"]:
        name = name + "*" if len(name) < width or width == 0 else name[:width - 1] + "*"
    return name


def _state(r: dict, which: int) -> str:
    return STATES.get(r["state"], (r["state"],) * 2)[which] if r["nodes"] else "n/a"


# Long name (matched in any case) -> (the -o letter, the header, what it shows, what it groups by).
# The table and headers are opts.c's fmt_data and print.c's; `r` is one record, `w` its width.
FIELDS: dict[str, tuple[str, str, object, str | None]] = {
    "AllocMem": ("", "ALLOCMEM", lambda r, w: str(r["alloc_mem"]), "alloc_mem"),
    "AllocNodes": ("S", "ALLOCNODES", lambda r, w: "all" if r["part"] else "n/a", None),
    "Available": ("a", "AVAIL", lambda r, w: "up" if r["part"] else "n/a", None),
    "Cluster": ("V", "CLUSTER", lambda r, w: "melon", None),
    "Comment": ("", "COMMENT", lambda r, w: "(null)", None),
    "Cores": ("Y", "CORES", lambda r, w: "1" if r["nodes"] else "0", None),
    "CPUs": ("c", "CPUS", lambda r, w: _range(*(convert(c, 0) for c in r["cpus"])), None),
    "CPUsLoad": ("O", "CPU_LOAD", lambda r, w: "N/A" if r["nodes"] else "0.00", None),
    "CPUsState": ("C", "CPUS(A/I/O/T)", lambda r, w: "/".join(map(str, r["cpu_counts"])), None),
    "DefaultTime": ("L", "DEFAULTTIME", lambda r, w: _time(r["part"], "default_time", "n/a"), "default_time"),
    "Disk": ("d", "TMP_DISK", lambda r, w: "0", None),
    "Extra": ("", "EXTRA", lambda r, w: "(null)", None),
    "Features": ("f", "AVAIL_FEATURES", lambda r, w: "(null)", None),
    "features_act": ("b", "ACTIVE_FEATURES", lambda r, w: "(null)", None),
    "FreeMem": ("e", "FREE_MEM", lambda r, w: "N/A" if r["nodes"] else "0", None),
    "Gres": ("G", "GRES", lambda r, w: r["key"].get("gres") or "(null)", "gres"),
    "GresUsed": ("", "GRES_USED", lambda r, w: "(null)", None),
    "Groups": ("g", "GROUPS", lambda r, w: "all" if r["part"] else "n/a", None),
    "MaxCPUsPerNode": ("B", "MAX_CPUS_PER_NODE", lambda r, w: "UNLIMITED", None),
    "Memory": ("m", "MEMORY", lambda r, w: _range(*r["memory"]), None),
    "NodeAddr": ("o", "NODE_ADDR", lambda r, w: ranged_hostlist(r["nodes"]), "node"),
    "NodeAI": ("A", "NODES(A/I)", lambda r, w: "/".join(map(str, r["node_counts"][:2])), None),
    "NodeAIOT": ("F", "NODES(A/I/O/T)", lambda r, w: "/".join(map(str, r["node_counts"])), None),
    "NodeHost": ("n", "HOSTNAMES", lambda r, w: ranged_hostlist(r["nodes"]), "node"),
    "NodeList": ("N", "NODELIST", lambda r, w: ranged_hostlist(r["nodes"]), None),
    "Nodes": ("D", "NODES", lambda r, w: str(len(r["nodes"])), None),
    "OverSubscribe": ("h", "OVERSUBSCRIBE", lambda r, w: "NO", None),
    "Partition": ("P", "PARTITION", _partition, "partition"),
    "PartitionName": ("R", "PARTITION", lambda r, w: r["part"]["name"] if r["part"] else "n/a", "partition"),
    "Port": ("", "PORT", lambda r, w: "0", None),
    "PreemptMode": ("M", "PREEMPT_MODE", lambda r, w: "OFF", None),
    "PriorityJobFactor": ("I", "PRIO_JOB_FACTOR", lambda r, w: "1", None),
    "PriorityTier": ("p", "PRIO_TIER", lambda r, w: "1", None),
    "Reason": ("E", "REASON", lambda r, w: r["reason"] or "none", "reason"),
    "Reservation": ("i", "RESERVATION", lambda r, w: "", None),
    "Root": ("r", "ROOT", lambda r, w: "no" if r["part"] else "n/a", None),
    "Size": ("s", "JOB_SIZE", lambda r, w: "1" if r["part"] else "n/a", None),  # a Melon job has one node
    "Sockets": ("X", "SOCKETS", lambda r, w: _range(*r["cpus"]), None),
    "SocketCoreThread": ("z", "S:C:T", lambda r, w: f"{_range(*r['cpus'])}:{'1' if r['nodes'] else '0'}:"
                         f"{'1' if r['nodes'] else '0'}", None),
    "StateCompact": ("t", "STATE", lambda r, w: _state(r, 0), "state"),
    "StateComplete": ("", "STATECOMPLETE", lambda r, w: _state(r, 1), "state"),
    "StateLong": ("T", "STATE", lambda r, w: _state(r, 1), "state"),
    "Threads": ("Z", "THREADS", lambda r, w: "1" if r["nodes"] else "0", None),
    "Time": ("l", "TIMELIMIT", lambda r, w: _time(r["part"], "max_time", "infinite"), "max_time"),
    "TimeStamp": ("H", "TIMESTAMP", lambda r, w: "Unknown", None),
    "User": ("u", "USER", lambda r, w: "Unknown", None),
    "UserLong": ("U", "USER", lambda r, w: "Unknown", None),
    "Version": ("v", "VERSION", lambda r, w: "N/A", None),
    "Weight": ("w", "WEIGHT", lambda r, w: "1" if r["nodes"] else "0", None),
}
BY_NAME = {name.lower(): name for name in FIELDS}
BY_LETTER = {letter: name for name, (letter, *_) in reversed(FIELDS.items()) if letter}
#: Titles print.c never cuts when right-justified (_print_str with cut_output false).
WHOLE_TITLES = frozenset({"NodeAddr", "NodeList", "NodeHost"})


class Field:
    """One column: a field of FIELDS (None: an invalid one, which shows only its suffix), its width
    (0: as wide as its text), justification and the text after it."""

    __slots__ = ("name", "width", "right", "suffix")

    def __init__(self, name: str | None, width: int, right: bool, suffix: str) -> None:
        self.name, self.width, self.right, self.suffix = name, width, right, suffix


def fit(text: str, width: int, right: bool, cut: bool = True) -> str:
    """print.c's _print_str: `%Ns` (cut to N unless `cut` is off) or `%.Ns` padded to N; 0: whole."""
    if width == 0:
        return text
    if right:
        return text.rjust(width)[:width] if cut else text.rjust(width)
    return text[:width].ljust(width)


def parse_long(text: str) -> list[Field]:
    """-O: `name[:[.]size[suffix]],...` (opts.c _parse_long_format and _parse_long_token): 20
    columns, left-justified, when no size is given; an unknown name is Slurm's error, and its
    column shows only its suffix."""
    fields = []
    for token in filter(None, text.split(",")):
        name, colon, spec = token.partition(":")
        right = spec.startswith(".")
        spec = spec[right:]
        digits = len(spec) - len(spec.lstrip("0123456789"))
        width = (int(spec[:digits]) if digits else 0) if colon else 20
        known = BY_NAME.get(name.lower())
        if known is None:
            sys.stderr.write(f"{PROG}: error: Invalid job format specification: {name}\n")
        fields.append(Field(known, width, right, spec[digits:]))
    return fields


def parse_short(text: str) -> list[Field | str]:
    """-o: `%[.][size]letter` fields and the text after each (opts.c _parse_format); the text
    before the first `%` is a prefix; an unknown letter is Slurm's warning, printed as typed."""
    out: list[Field | str] = []
    head, _, rest = text.partition("%")
    if head:
        out.append(head)
    for token in filter(None, rest.split("%") if "%" in text else []):
        right = token.startswith(".")
        body = token[right:]
        digits = len(body) - len(body.lstrip("0123456789"))
        letter, suffix = body[digits:digits + 1], body[digits + 1:]
        name = BY_LETTER.get(letter)
        if name is None:
            sys.stderr.write(f"Invalid node format specification: {letter}\n")
            out.append("%" + token)
            continue
        out.append(Field(name, int(body[:digits] or 0), right, suffix))
    return out


#: What FIELDS group by that is the partition's (sinfo.c _match_part_data), not the node's.
PART_KEYS = frozenset({"partition", "max_time", "default_time"})


def records(parts: list[dict], nodes: dict[str, dict], spec: list, node_oriented: bool) -> list[dict]:
    """sinfo.c's _build_sinfo_data: a node joins the first record of its partition, or of one
    that agrees on the partition's fields shown, whose nodes agree with it on every node field
    shown (_insert_node_ptr); with -N none join. A partition shown has a record even with no node."""
    groups = {FIELDS[f.name][3] for f in spec if isinstance(f, Field) and f.name} - {None}
    out: list[dict] = []
    if "partition" in groups and not node_oriented:
        out = [_record(p, i) for i, p in enumerate(parts)]
    for index, p in enumerate(parts):
        for name in p["nodes"]:
            node = nodes[name]
            key = {"state": node["state"], "reason": node.get("reason"), "alloc_mem": node["memory_used"],
                   "node": name, "gres": node.get("gres")}
            match = next((r for r in out if _same_part(r, index, p, groups) and not (node_oriented and r["nodes"])
                          and (not r["nodes"] or all(r["key"][g] == key[g] for g in groups - PART_KEYS))), None)
            if match is None:
                match = _record(p, index)
                out.append(match)
            _add(match, node, key)
    # sort.c: -N by node name; else "#P,-t": partitions in their order, the higher state first
    out.sort(key=lambda r: ranged_hostlist(r["nodes"]) if node_oriented else (r["index"], -_order(r)))
    return out


def _same_part(r: dict, index: int, part: dict, groups: set[str]) -> bool:
    if r["index"] == index:
        return True
    return "partition" not in groups and all(r["part"].get(g) == part.get(g) for g in groups & PART_KEYS)


def _record(part: dict, index: int) -> dict:
    return {"part": part, "index": index, "nodes": [], "key": {}, "state": "", "reason": None, "cpus": (0, 0),
            "memory": (0, 0), "alloc_mem": 0, "node_counts": [0, 0, 0, 0], "cpu_counts": [0, 0, 0, 0]}


def _add(r: dict, node: dict, key: dict) -> None:
    """_update_sinfo: the first node sets the record's state and text; sizes widen to a range."""
    if node["name"] in r["nodes"]:
        return
    if not r["nodes"]:
        r.update(key=key, state=node["state"], reason=node.get("reason"), cpus=(node["cpus"],) * 2,
                 memory=(node["memory"],) * 2)
    else:
        r["cpus"] = (min(r["cpus"][0], node["cpus"]), max(r["cpus"][1], node["cpus"]))
        r["memory"] = (min(r["memory"][0], node["memory"]), max(r["memory"][1], node["memory"]))
    r["nodes"].append(node["name"])
    busy, out = node["state"] in ("allocated", "mixed", "draining"), node["state"] in ("drained", "draining", "down")
    counts = r["node_counts"]
    counts[0 if busy else 2 if out else 1] += 1
    counts[3] += 1
    used = node["cpus_used"]
    cpus = r["cpu_counts"]
    cpus[0] += used
    cpus[2 if out else 1] += node["cpus"] - used
    cpus[3] += node["cpus"]
    r["alloc_mem"] = node["memory_used"]


def render(spec: list, rows: list[dict], widths: dict[str, int], header: bool) -> list[str]:
    """print_sinfo_entry: each field fit to its width, then its suffix; the header likewise."""
    def line(r: dict | None) -> str:
        out = []
        for item in spec:
            if isinstance(item, str):
                out.append(item)
                continue
            if item.name is None:
                out.append(item.suffix)
                continue
            width = widths.get(item.name, item.width)
            title = FIELDS[item.name][1]
            text = title if r is None else FIELDS[item.name][2](r, width)
            out.append(fit(text, width, item.right, r is not None or item.name not in WHOLE_TITLES) + item.suffix)
        return "".join(out)
    return ([line(None)] if header else []) + [line(r) for r in rows]


def show(noheader: bool, fmt: str | None, long_fmt: str | None, long_view: bool, node_oriented: bool,
         partitions: str | None, summarize: bool, show_all: bool, endpoint: str | None) -> None:
    """View information about Melon's nodes and partitions."""
    import os
    if long_view and (fmt or long_fmt):
        sys.stderr.write(f"{PROG}: fatal: Options -o(--format) and -l(--long) are mutually exclusive. "
                         f"Please remove one and retry.\n")
        sys.exit(1)
    # opts.c: -O or -o; else -s's layout, -N's, SINFO_FORMAT, the default; only the built-in
    # layouts size the partition and node-list columns to the data
    default = not (fmt or long_fmt) and (summarize or node_oriented or not os.environ.get("SINFO_FORMAT"))
    if long_fmt or fmt:
        spec: list = parse_long(long_fmt) if long_fmt else parse_short(fmt)
    elif not default:
        spec = parse_short(os.environ["SINFO_FORMAT"])
    else:
        spec = parse_long(SUMMARY if summarize else (NODE_LONG if long_view else NODE) if node_oriented else
                          LONG if long_view else DEFAULT)
    c = client(endpoint)
    nodes = {n["name"]: n for n in c.call("GET", "/nodes")["nodes"]}
    parts = c.call("GET", "/partitions")["partitions"]
    if partitions:
        parts = [p for p in parts if p["name"] in set(partitions.split(","))]
    rows = records(parts, nodes, spec, node_oriented)
    widths = {}
    if default:  # print.c _set_part_field_size, _set_node_field_size: the data's widest
        widths = {name: max([MIN_FIELD, *(len(r["part"]["name"]) + r["part"]["default"] for r in rows)])
                  for name in ("Partition", "PartitionName")}
        if node_oriented:
            widths |= {name: max([MIN_FIELD, *(len(ranged_hostlist(r["nodes"])) for r in rows)])
                       for name in ("NodeList", "NodeHost")}
    lines = render(spec, rows, widths, not noheader)
    if long_view and not noheader:  # sinfo.c main: print_date() before a long listing
        lines.insert(0, time.strftime("%a %b %d %H:%M:%S %Y"))
    if lines:
        sys.stdout.write("".join(line + "\n" for line in lines))


def _order(r: dict) -> int:
    return STATES.get(r["state"], ("", "", 0))[2] if r["nodes"] else 0


COMMAND = SlurmCommand(PROG, show, [
    Opt("-h", "--noheader", dest="noheader", help="No header."),
    Opt("-o", "--format", dest="fmt", value=True,
        help="Fields %[.][size]letter: %P %R %a %l %D %t %T %N %c %C %m %e %G %f %F %A %E %p %s ..."),
    Opt("-O", "--Format", dest="long_fmt", value=True,
        help="Fields by name, NAME[:[.]SIZE[SUFFIX]],...: CPUs,Memory,Partition,NodeList,StateCompact:.6,..."),
    Opt("-l", "--long", dest="long_view", help="More columns, and the date first."),
    Opt("-N", "--Node", dest="node_oriented", help="One line per node."),
    Opt("-p", "--partition", dest="partitions", value=True, help="Only these partitions."),
    Opt("-s", "--summarize", dest="summarize", help="One line per partition, node counts by state."),
    Opt("-a", "--all", dest="show_all", help="Every partition (all are shown already)."),
], table=tables.SINFO,
    ignored=frozenset({"exact", "federation", "future", "hide", "local", "cluster", "clusters", "noconvert",
                       "verbose"}))
main = COMMAND.main

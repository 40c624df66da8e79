"""PMI-1's wire protocol ("simple" PMI, as MPICH's library speaks it), served by srun to a
step's tasks so that `srun ./mpi_program` starts connected ranks: one key-value space and one
barrier per step, and the process mapping MPICH reads to tell which ranks share a node.

Pure: a `Pmi1` is fed one line at a time from a numbered client and says what to send back to
whom (cli/slurm/pmi_server.py owns the sockets). The protocol: lines of space-separated
`key=value` words, the first `cmd=...`; MPICH's pmi-1.1.txt and Flux's RFC 13 describe it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

KVSNAME_MAX = 256
KEYLEN_MAX = 64
# MPICH 4.0's client reads lines of at most 1024 bytes: a put of the longest name, key and value
# (plus `cmd=put kvsname= key= value=`) must fit in one.
VALLEN_MAX = 512
LINE_MAX = 1024


class ProtocolError(ValueError):
    """A line that is not PMI-1: the client is told nothing more and its connection closed."""


def parse(line: str) -> dict[str, str]:
    """`cmd=put kvsname=k key=a value=b` as a dict. A put's value runs to the end of the line
    (some MPIs' business cards hold spaces), and a word with no `=` belongs to the value before
    it (an abort's message is free text)."""
    line = line.rstrip("\n")
    words: dict[str, str] = {}
    rest, last = line, None
    while rest:
        rest = rest.lstrip(" ")
        if rest.startswith("value="):
            words["value"] = rest[len("value="):]
            break
        word, _, rest = rest.partition(" ")
        key, eq, value = word.partition("=")
        if eq and key:
            words[key] = value
            last = key
        elif word and last is not None:
            words[last] += " " + word
        elif word:
            raise ProtocolError(f"not a key=value word: {word!r}")
    if "cmd" not in words and "mcmd" not in words:
        raise ProtocolError(f"no cmd= in {line!r}")
    return words


def line(cmd: str, **values: object) -> str:
    return " ".join([f"cmd={cmd}", *(f"{key}={value}" for key, value in values.items())]) + "\n"


def process_mapping(nodes_of_ranks: list[int]) -> str:
    """MPICH's `PMI_process_mapping` (as Slurm's and hydra's give it): blocks of
    `(first node, node count, ranks per node)` that lay the ranks out in order, so that
    block layouts read `(vector,(0,3,2))` and cyclic ones repeat a block of one per node."""
    blocks: list[list[int]] = []
    rank = 0
    while rank < len(nodes_of_ranks):
        node = nodes_of_ranks[rank]
        run = 1
        while rank + run < len(nodes_of_ranks) and nodes_of_ranks[rank + run] == node:
            run += 1
        last = blocks[-1] if blocks else None
        if last and last[2] == run and last[0] + last[1] == node:
            last[1] += 1
        else:
            blocks.append([node, 1, run])
        rank += run
    return "(vector," + ",".join(f"({a},{b},{c})" for a, b, c in blocks) + ")"


@dataclass
class Pmi1:
    """One step's PMI service: `size` ranks, their keys, and a barrier that releases them all at
    once. `handle` answers a client's line with (client, line) pairs to send."""

    size: int
    kvsname: str
    mapping: str
    kvs: dict[str, str] = field(default_factory=dict)
    waiting: list[int] = field(default_factory=list)  # clients in the barrier
    finalized: set[int] = field(default_factory=set)
    spawning: set[int] = field(default_factory=set)  # clients in a multi-line spawn request
    aborted: tuple[int, str] | None = None  # (exit code, message) of the first PMI_Abort

    def __post_init__(self) -> None:
        self.kvs["PMI_process_mapping"] = self.mapping

    def handle(self, client: int, text: str) -> list[tuple[int, str]]:
        if client in self.spawning:  # MPI_Comm_spawn's lines, up to `endcmd`: refused as a whole
            if text.strip() != "endcmd":
                return []
            self.spawning.discard(client)
            return [(client, line("spawn_result", rc=-1, msg="MPI_Comm_spawn_is_not_supported_by_Melon"))]
        words = parse(text)
        if words.get("mcmd") == "spawn":
            self.spawning.add(client)
            return []
        cmd = words.get("cmd", "")
        reply = self._reply(client, cmd, words)
        return [(client, reply)] if isinstance(reply, str) else reply

    def _reply(self, client: int, cmd: str, words: dict[str, str]) -> str | list[tuple[int, str]]:
        if cmd == "init":
            if words.get("pmi_version") != "1":  # the only version spoken here
                return line("response_to_init", rc=-1, pmi_version=1, pmi_subversion=1)
            return line("response_to_init", rc=0, pmi_version=1, pmi_subversion=1)
        if cmd == "get_maxes":
            return line("maxes", rc=0, kvsname_max=KVSNAME_MAX, keylen_max=KEYLEN_MAX, vallen_max=VALLEN_MAX)
        if cmd == "get_universe_size":
            return line("universe_size", rc=0, size=self.size)
        if cmd == "get_appnum":
            return line("appnum", rc=0, appnum=0)
        if cmd == "get_my_kvsname":
            return line("my_kvsname", rc=0, kvsname=self.kvsname)
        if cmd == "put":
            key, value = words.get("key", ""), words.get("value", "")
            if not key or len(key) > KEYLEN_MAX or len(value) > VALLEN_MAX:
                return line("put_result", rc=-1, msg="key_or_value_too_long")
            self.kvs[key] = value
            return line("put_result", rc=0)
        if cmd == "get":
            key = words.get("key", "")
            if key in self.kvs:
                return line("get_result", rc=0, value=self.kvs[key])
            return line("get_result", rc=-1, msg="key_not_found")
        if cmd == "barrier_in":
            if client not in self.waiting:
                self.waiting.append(client)
            if len(self.waiting) < self.size - len(self.finalized):
                return []
            released, self.waiting = self.waiting, []
            return [(c, line("barrier_out", rc=0)) for c in released]
        if cmd == "finalize":
            self.finalized.add(client)
            return line("finalize_ack", rc=0)
        if cmd == "abort":
            if self.aborted is None:
                code = words.get("exitcode", "1")
                self.aborted = (int(code) if code.lstrip("-").isdigit() else 1, words.get("message", ""))
            return []
        if cmd in ("publish_name", "unpublish_name", "lookup_name"):
            return line(cmd.replace("_name", "_result"), rc=-1, msg="not_supported_by_Melon")
        raise ProtocolError(f"unknown command {cmd!r}")

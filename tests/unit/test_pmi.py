"""PMI-1's protocol as srun serves it (melond/spec/pmi.py): the exchanges MPICH's library makes
at MPI_Init, the barrier that releases every rank at once, and the process mapping MPICH reads
to tell which ranks share a node. The same service answers real MPICH ranks on the Docker
cluster (tests/cluster) and a client over TCP on three local nodes (tests/e2e)."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from melond.spec.pmi import Pmi1, ProtocolError, parse, process_mapping


def _one(pmi: Pmi1, client: int, text: str) -> dict[str, str]:
    replies = pmi.handle(client, text)
    assert [c for c, _ in replies] == [client], replies
    return parse(replies[0][1])


def test_mpich_init_sequence() -> None:
    pmi = Pmi1(size=2, kvsname="melon_12_0", mapping="(vector,(0,2,1))")
    assert _one(pmi, 0, "cmd=init pmi_version=1 pmi_subversion=1\n") == {
        "cmd": "response_to_init", "rc": "0", "pmi_version": "1", "pmi_subversion": "1"}
    maxes = _one(pmi, 0, "cmd=get_maxes\n")
    assert maxes["cmd"] == "maxes" and int(maxes["kvsname_max"]) + int(maxes["keylen_max"]) + \
        int(maxes["vallen_max"]) + 30 <= 1024  # one put must fit in MPICH's 1024-byte line
    assert _one(pmi, 0, "cmd=get_my_kvsname\n")["kvsname"] == "melon_12_0"
    assert _one(pmi, 0, "cmd=get_universe_size\n")["size"] == "2"
    assert _one(pmi, 0, "cmd=get_appnum\n")["appnum"] == "0"
    assert _one(pmi, 1, "cmd=get kvsname=melon_12_0 key=PMI_process_mapping\n")["value"] == "(vector,(0,2,1))"


def test_a_version_other_than_1_is_refused() -> None:
    assert _one(Pmi1(1, "k", "m"), 0, "cmd=init pmi_version=2 pmi_subversion=0\n")["rc"] == "-1"


def test_puts_are_seen_by_every_rank_after_the_barrier_which_releases_all_at_once() -> None:
    pmi = Pmi1(size=3, kvsname="k", mapping="m")
    for rank in range(3):
        assert _one(pmi, rank, f"cmd=put kvsname=k key=card-{rank} value=tcp://10.0.0.{rank}:5{rank} x\n")["rc"] == "0"
    assert pmi.handle(0, "cmd=barrier_in\n") == [] and pmi.handle(2, "cmd=barrier_in\n") == []
    released = pmi.handle(1, "cmd=barrier_in\n")
    assert sorted(c for c, _ in released) == [0, 1, 2] and all(t == "cmd=barrier_out rc=0\n" for _, t in released)
    for rank in range(3):  # a value keeps its spaces: it runs to the end of the line
        assert _one(pmi, (rank + 1) % 3, f"cmd=get kvsname=k key=card-{rank}\n")["value"] == \
            f"tcp://10.0.0.{rank}:5{rank} x"
    assert _one(pmi, 0, "cmd=get kvsname=k key=missing\n")["rc"] == "-1"
    assert pmi.handle(0, "cmd=barrier_in\n") == []  # a second barrier waits for all again


def test_finalized_ranks_no_longer_hold_a_barrier() -> None:
    pmi = Pmi1(size=2, kvsname="k", mapping="m")
    assert _one(pmi, 1, "cmd=finalize\n")["cmd"] == "finalize_ack"
    assert [c for c, _ in pmi.handle(0, "cmd=barrier_in\n")] == [0]


def test_too_long_a_key_or_value_is_refused_and_not_stored() -> None:
    pmi = Pmi1(size=1, kvsname="k", mapping="m")
    assert _one(pmi, 0, "cmd=put kvsname=k key=a value=" + "x" * 600 + "\n")["rc"] == "-1"
    assert _one(pmi, 0, "cmd=get kvsname=k key=a\n")["rc"] == "-1"


def test_abort_records_the_first_code_and_message() -> None:
    pmi = Pmi1(size=2, kvsname="k", mapping="m")
    assert pmi.handle(1, "cmd=abort exitcode=7 message=application called MPI_Abort\n") == []
    assert pmi.handle(0, "cmd=abort exitcode=3\n") == []
    assert pmi.aborted == (7, "application called MPI_Abort")


def test_spawn_is_refused_after_its_last_line_and_names_and_unknown_commands() -> None:
    pmi = Pmi1(size=1, kvsname="k", mapping="m")
    assert pmi.handle(0, "mcmd=spawn\n") == [] and pmi.handle(0, "nprocs=2\n") == []
    assert _one(pmi, 0, "endcmd\n")["cmd"] == "spawn_result"
    assert _one(pmi, 0, "cmd=lookup_name service=x\n") == {"cmd": "lookup_result", "rc": "-1",
                                                           "msg": "not_supported_by_Melon"}
    with pytest.raises(ProtocolError):
        pmi.handle(0, "cmd=fly\n")
    with pytest.raises(ProtocolError):
        pmi.handle(0, "hello\n")


@pytest.mark.parametrize(("nodes", "mapping"), [
    ([0, 0, 1, 1, 2, 2], "(vector,(0,3,2))"),  # block: -N 3 -n 6
    ([0, 1, 0, 1], "(vector,(0,2,1),(0,2,1))"),  # cyclic
    ([0, 0, 0, 1, 1, 2], "(vector,(0,1,3),(1,1,2),(2,1,1))"),  # uneven
    ([0], "(vector,(0,1,1))"),
])
def test_process_mapping_as_slurm_and_hydra_write_it(nodes: list[int], mapping: str) -> None:
    assert process_mapping(nodes) == mapping


def _unfold(mapping: str) -> list[int]:
    """MPICH's reading of a mapping: each block gives `count` nodes `ppn` ranks in turn."""
    out: list[int] = []
    for block in mapping.removeprefix("(vector,(").removesuffix("))").split("),("):
        first, count, ppn = map(int, block.split(","))
        for node in range(first, first + count):
            out += [node] * ppn
    return out


@given(st.lists(st.integers(0, 5), min_size=1, max_size=40))
def test_a_mapping_reads_back_as_the_layout_it_came_from(nodes: list[int]) -> None:
    assert _unfold(process_mapping(nodes)) == nodes

"""sinfo's records and fields, pure: how src/sinfo/sinfo.c groups nodes into lines and how
print.c prints them, for the parts melond's nodes and partitions reach."""
from __future__ import annotations

from melon_cli.slurm.sinfo import fit, parse_long, parse_short, records, render
from melon_cli.units import KILO, MEGA, NONE, convert

PARTS = [{"name": "cpu", "default": True, "max_time": 3600, "default_time": None, "nodes": ["n1", "n2", "n3"]},
         {"name": "gpu", "default": False, "max_time": 3600, "default_time": None, "nodes": ["g1"]},
         {"name": "empty", "default": False, "max_time": 0, "default_time": None, "nodes": []}]


def node(name: str, state: str = "idle", cpus: int = 4, memory: int = 8000, used: int = 0) -> dict:
    return {"name": name, "state": state, "cpus": cpus, "memory": memory, "cpus_used": used, "memory_used": 0,
            "reason": None}


NODES = {n["name"]: n for n in (node("n1"), node("n2", "mixed", cpus=8, used=2), node("n3", cpus=8, memory=16000),
                                 node("g1", "drained", cpus=16))}


def lines(fmt: str, node_oriented: bool = False) -> list[str]:
    spec = parse_long(fmt)
    rows = records(PARTS, NODES, spec, node_oriented)
    return render(spec, rows, {}, header=False)


def test_nodes_agreeing_on_the_fields_shown_share_a_line_and_sizes_show_as_the_least_plus() -> None:
    assert lines("partition:6,statecompact:6,cpus:4,memory:7,nodelist:0") == [  # sort.c "#P,-t"
        "cpu*  mix   8   8000   n2", "cpu*  idle  4+  8000+  n[1,3]", "gpu   drain 16  8000   g1",
        "empty n/a   0   0      "]
    # no state shown: a partition is one line; no partition shown: the partitions that agree are one
    assert lines("partition:6,cpus:3,nodeaiot:.8 ,cpusstate:0") == [
        "cpu*  4+  1/2/0/3 2/18/0/20", "gpu   16  0/0/1/1 0/0/16/16", "empty 0   0/0/0/0 0/0/0/0"]
    assert lines("cpus:3,nodes:3,time:.8") == ["4+ 4   1:00:00"]
    assert lines("nodelist:3,partition:0", node_oriented=True) == ["g1 gpu", "n1 cpu*", "n2 cpu*", "n3 cpu*"]


def test_fields_and_titles_are_cut_as_print_c_cuts_them() -> None:
    assert (fit("PARTITION", 5, False), fit("PARTITION", 5, True), fit("ab", 5, True), fit("ab", 0, True)) == \
        ("PARTI", "PARTI", "   ab", "ab")
    spec = parse_long("nodelist:.3,partition:3")
    assert render(spec, records(PARTS[:1], NODES, spec, False), {}, header=True)[0] == "NODELISTPAR"
    assert [f.width for f in parse_long("cpus,cpus:,cpus:7x,cpus:.0")] == [20, 0, 7, 0]
    assert [f.suffix for f in parse_long("cpus:7x,cpus: |")] == ["x", " |"]


def test_the_default_partition_star_takes_the_last_column_when_the_name_fills_it() -> None:
    spec = parse_long("partition:3,partition:0")
    assert render(spec, records(PARTS[:1], NODES, spec, False), {}, header=False) == ["cp*cpu*"]


def test_short_format_prefix_fields_and_an_unknown_letter(capsys) -> None:
    spec = parse_short("x%5P|%.3c %q")
    assert render(spec, records(PARTS[:1], NODES, spec, False), {}, header=True) == ["xPARTI|CPU %q", "xcpu* | 4+ %q"]
    assert capsys.readouterr().err == "Invalid node format specification: q\n"


def test_convert_num_unit() -> None:
    """src/common/slurm_protocol_api.c convert_num_unit2: exact unless told; halves kept."""
    assert [convert(n, MEGA) for n in (0, 100, 1024, 1536, 1000, 2 * 1024 * 1024)] == \
        ["0", "100M", "1G", "1.50G", "1000M", "2T"]
    assert convert(1536, MEGA, to=3) == "1.50G" and convert(100, MEGA, to=1) == "102400K"
    assert convert(5234688, NONE) == "5112K" and convert(5234688, NONE, noconvert=True) == "5234688"
    assert convert(1000, KILO, exact=False) == "1000K" and convert(2000, KILO, exact=False) == "1.95M"

"""Generic resources in Slurm's terms (melond/spec/gres.py): requests as sbatch reads them, a
node's devices from gres.conf-like inventory entries, and how both are written."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from melond.spec.gres import Device, Gres, format_gres, node_devices, node_gres, parse_gpus, parse_gres, pick
from melond.spec.timespec import SpecError


@pytest.mark.parametrize(("text", "specs"), [
    ("gpu", (Gres("gpu", None, 1),)),
    ("gpu:2", (Gres("gpu", None, 2),)),
    ("gpu:a100:2", (Gres("gpu", "a100", 2),)),
    ("gpu:a100", (Gres("gpu", "a100", 1),)),
    ("gres/gpu:1,license_x:3", (Gres("gpu", None, 1), Gres("license_x", None, 3))),
    ("bandwidth:2k", (Gres("bandwidth", None, 2048),)),
    ("gpu:a100:1,gpu:v100:2", (Gres("gpu", "a100", 1), Gres("gpu", "v100", 2))),
    ("none", ()),
    ("gpu:0", ()),  # none, as Slurm takes it (tools write gpu:0 for a job without GPUs)
    ("gpu:a100:0,license_x:1", (Gres("license_x", None, 1),)),
])
def test_gres_requests_read_as_sbatch_reads_them(text: str, specs: tuple) -> None:
    assert parse_gres(text) == specs


@pytest.mark.parametrize(("text", "words"), [
    ("gpu:2,gpu:1", "Duplicate generic resource (gres) specification"),
    ("gpu:1,gpu:a100:1", "Invalid GRES specification (with and without type identification)"),
    ("gpu:a100:-1", "invalid generic resource count"),
    ("gpu:a:b:c", "Invalid generic resource (gres) specification"),
    (":2", "Invalid generic resource (gres) specification"),
    ("gpu::1", "Invalid generic resource (gres) specification"),
])
def test_bad_gres_requests_are_refused_in_slurms_words(text: str, words: str) -> None:
    with pytest.raises(SpecError, match=words.replace("(", r"\(").replace(")", r"\)")):
        parse_gres(text)


def test_gpu_options_are_gpus_of_a_type_or_any() -> None:
    assert parse_gpus("2") == (Gres("gpu", None, 2),)
    assert parse_gpus("a100:1,v100:2") == (Gres("gpu", "a100", 1), Gres("gpu", "v100", 2))
    assert parse_gpus("0") == ()
    for bad in ("-1", "a100:", "x:y:1", ""):
        with pytest.raises(SpecError):
            parse_gpus(bad)


def test_a_nodes_devices_come_from_its_inventory_in_gres_conf_terms() -> None:
    devices = node_devices([{"name": "gpu", "type": "a100", "files": "/dev/nvidia[0-1]"},
                            {"name": "gpu", "type": "v100", "files": "/dev/nvidia[2,3]"},
                            {"name": "license_x", "count": 2}])
    assert devices[:2] == (Device("gpu", "a100", 0, "/dev/nvidia0"), Device("gpu", "a100", 1, "/dev/nvidia1"))
    assert devices[3] == Device("gpu", "v100", 3, "/dev/nvidia3")
    assert devices[4:] == (Device("license_x", None, 0, None), Device("license_x", None, 1, None))
    assert format_gres(node_gres(devices)) == "gpu:a100:2,gpu:v100:2,license_x:2"
    assert format_gres(parse_gres("gpu:2"), prefix="gres/") == "gres/gpu:2"
    with pytest.raises(SpecError, match="count 3 but 2 files"):
        node_devices([{"name": "gpu", "count": 3, "files": "/dev/nvidia[0-1]"}])
    with pytest.raises(SpecError, match="needs a name"):
        node_devices([{"count": 1}])


def test_devices_are_picked_lowest_first_never_twice_and_by_type_when_asked() -> None:
    devices = node_devices([{"name": "gpu", "type": "a100", "files": "/dev/nvidia[0-1]"},
                            {"name": "gpu", "type": "v100", "files": "/dev/nvidia[2-3]"}])
    assert pick(devices, parse_gres("gpu:2"), set()) == [0, 1]
    assert pick(devices, parse_gres("gpu:2"), {0}) == [1, 2]
    assert pick(devices, parse_gres("gpu:v100:2"), set()) == [2, 3]
    assert pick(devices, parse_gres("gpu:a100:1,gpu:v100:1"), {0}) == [1, 2]
    assert pick(devices, parse_gres("gpu:a100:2"), {1}) is None
    assert pick(devices, parse_gres("license_x:1"), set()) is None


@given(st.lists(st.sampled_from(["a", "b", None]), max_size=8), st.sets(st.integers(0, 7)),
       st.integers(1, 4), st.sampled_from(["a", "b", None]))
def test_a_pick_is_free_distinct_and_of_the_type_asked(kinds: list, taken: set, count: int, kind) -> None:
    devices = tuple(Device("gpu", k, i, None) for i, k in enumerate(kinds))
    chosen = pick(devices, (Gres("gpu", kind, count),), taken)
    fits = [i for i, d in enumerate(devices) if i not in taken and (kind is None or d.type == kind)]
    if len(fits) < count:
        assert chosen is None
    else:
        assert chosen == fits[:count]


def test_an_allow_list_is_narrowed_minor_by_minor_around_the_denied_devices() -> None:
    from melon_remote.devices import narrowed
    docker = ["c *:* m", "b *:* m", "c 1:3 rwm", "c 195:* rwm", "c 195:2 rwm", "c 136:* rwm"]
    out = narrowed(docker, ["c 195:1 rwm", "c 195:2 rwm"])
    assert out[:3] == ["c *:* m", "b *:* m", "c 1:3 rwm"] and out[-1] == "c 136:* rwm"
    minors = [e for e in out if e.startswith("c 195:")]
    assert minors == [f"c 195:{m} rwm" for m in range(256) if m not in (1, 2)]


def test_gpus_reported_by_the_driver_are_the_nodes_unless_the_inventory_lists_some() -> None:
    from melond.nodes.state import NodeState
    from melond.spec.gres import Device
    found = [{"index": 0, "type": "t4", "file": "/dev/nvidia0", "busy": []},
             {"index": 1, "type": "t4", "file": "/dev/nvidia3", "busy": [7]}]
    node = NodeState("n", "p", 4, 1024, devices=(Device("lic", None, 0, None),))
    node.found_gpus(found)
    assert node.devices[1:] == (Device("gpu", "t4", 0, "/dev/nvidia0"), Device("gpu", "t4", 1, "/dev/nvidia3"))
    assert node.gpu_busy == {2: [7]}
    listed = NodeState("n", "p", 4, 1024, devices=(Device("gpu", "a100", 0, "/dev/nvidia0"),))
    listed.found_gpus(found)
    assert listed.devices == (Device("gpu", "a100", 0, "/dev/nvidia0"),) and listed.gpu_busy == {}


def test_the_drivers_gpu_names_become_slurms_types() -> None:
    from melon_remote.gpus import model
    assert [model(n) for n in ("NVIDIA A100-SXM4-40GB", "Tesla T4", "NVIDIA GeForce RTX 3090", "")] == [
        "a100-sxm4-40gb", "t4", "rtx_3090", "gpu"]


def test_amd_gpus_are_the_render_nodes_of_amds_vendor_id(tmp_path) -> None:
    """/sys/class/drm as amdgpu lays it out (a folder made here: no such GPU on this machine)."""
    from melon_remote.gpus import drm
    for name, vendor, product in (("renderD129", "0x1002", "AMD Instinct MI250X"), ("renderD128", "0x1002", ""),
                                  ("renderD130", "0x8086", "Intel"), ("card0", "0x1002", "")):
        device = tmp_path / name / "device"
        device.mkdir(parents=True)
        (device / "vendor").write_text(vendor + "\n")
        if product:
            (device / "product_name").write_text(product + "\n")
    found = drm(str(tmp_path))
    assert [(g["index"], g["file"], g["type"]) for g in found] == [
        (0, "/dev/dri/renderD128", "amd"), (1, "/dev/dri/renderD129", "instinct_mi250x")]

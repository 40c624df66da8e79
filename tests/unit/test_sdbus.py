"""The D-Bus marshalling the supervisor uses to ask systemd for scopes (pure parts).

The real exchange with systemd is covered on the Docker cluster, whose nodes run systemd:
test_cluster.py::test_jobs_run_in_named_systemd_scopes_with_their_limits.
"""
import struct

import pytest

from melon_remote import sdbus


def test_basic_types_follow_the_wire_format():
    assert sdbus.marshal("s", ["abc"]) == b"\x03\0\0\0abc\0"
    assert sdbus.marshal("g", ["au"]) == b"\x02au\0"
    assert sdbus.marshal("yt", [1, 2]) == b"\x01" + b"\0" * 7 + struct.pack("<Q", 2)  # t aligns to 8
    assert sdbus.marshal("au", [[5, 6]]) == struct.pack("<III", 8, 5, 6)
    # An empty array of structs still pads to the struct alignment after its length.
    assert sdbus.marshal("ya(sv)", [7, []]) == b"\x07\0\0\0" + struct.pack("<I", 0)


def test_a_variant_carries_its_signature():
    assert sdbus.marshal("v", [("u", 9)]) == b"\x01u\0\0" + struct.pack("<I", 9)


def test_array_length_counts_element_bytes_only():
    buf = sdbus.marshal("a(st)", [[("x", 1), ("yz", 2)]])
    (length,) = struct.unpack_from("<I", buf, 0)
    assert length == len(buf) - 8  # 4 bytes of length, 4 of padding to the first struct


def test_a_method_call_parses_back():
    msg = sdbus.message(7, "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager", "StartTransientUnit",
                        "ssa(sv)a(sa(sv))", ["melon-job-1.scope", "fail", [("PIDs", ("au", [42]))], []])
    kind, fields, body, total = sdbus.parse(msg + b"next")
    assert (kind, total) == (sdbus.METHOD_CALL, len(msg))
    assert fields[1] == "/org/freedesktop/systemd1" and fields[3] == "StartTransientUnit"
    assert fields[8] == "ssa(sv)a(sa(sv))"
    assert body.startswith(sdbus.marshal("s", ["melon-job-1.scope"]))
    assert sdbus.parse(msg[:-1]) is None  # not whole yet


def test_an_error_reply_gives_its_name_and_message():
    body = sdbus.marshal("s", ["Unit melon-job-1.scope already exists."])
    fields = [(4, ("s", "org.freedesktop.systemd1.UnitExists")), (5, ("u", 7)), (8, ("g", "s"))]
    head = sdbus.marshal("yyyyuua(yv)", [ord("l"), sdbus.ERROR, 0, 1, len(body), 99, fields])
    head.extend(b"\0" * (-len(head) % 8))
    kind, got, rest, _ = sdbus.parse(bytes(head + body))
    assert kind == sdbus.ERROR and got[5] == 7 and got[4].endswith("UnitExists")
    assert sdbus._Reader(rest).take("s") == "Unit melon-job-1.scope already exists."


def test_big_endian_replies_are_refused_by_name():
    with pytest.raises(sdbus.BusError, match="big-endian"):
        sdbus.parse(b"B" + b"\0" * 15)


def test_no_systemd_means_a_clear_error(tmp_path):
    with pytest.raises(sdbus.BusError, match="cannot reach systemd"):
        sdbus.SystemdBus(str(tmp_path / "no-such-socket"))

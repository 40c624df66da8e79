"""remote/wire.py: frames round-trip under any chunking, and every kind of corruption is detected."""

import json
import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from melon_remote.wire import HEADER, MAGIC, MAX_BODY, Decoder, FrameError, encode

# Any JSON value, strings including lone surrogates (the codec uses surrogatepass on both sides).
TEXT = st.text(st.characters(exclude_categories=()), max_size=20)
SCALARS = (st.none() | st.booleans() | st.integers() | TEXT
           | st.floats(allow_nan=False, allow_infinity=False))
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(TEXT, inner, max_size=5),
    max_leaves=25,
)
OBJECTS = st.dictionaries(TEXT, VALUES, max_size=6)


def frame(body: bytes, crc: int | None = None, magic: bytes = MAGIC) -> bytes:
    """A hand-made frame, so tests can lie about any header field."""
    return HEADER.pack(magic, len(body), zlib.crc32(body) if crc is None else crc) + body


def test_header_layout_is_as_documented():
    data = encode({"op": "ping"})
    magic, length, crc = struct.unpack(">4sII", data[:12])
    body = data[12:]
    assert (magic, length, crc) == (b"MLN1", len(body), zlib.crc32(body))
    assert json.loads(body) == {"op": "ping"}


@settings(max_examples=200, deadline=None)
@given(OBJECTS)
def test_round_trip_byte_by_byte(message):
    dec = Decoder()
    data = encode(message)
    out = []
    for i in range(len(data)):
        got = dec.feed(data[i:i + 1])
        if i < len(data) - 1:
            assert got == []
        out += got
    assert out == [message]
    assert dec.pending == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(OBJECTS, min_size=1, max_size=5), st.data())
def test_round_trip_random_splits(messages, data):
    stream = b"".join(encode(m) for m in messages)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10), label="cuts"))
    dec = Decoder()
    out = []
    for a, b in zip([0, *cuts], [*cuts, len(stream)]):
        out += dec.feed(stream[a:b])
    assert out == messages
    assert dec.pending == 0


def test_several_frames_in_one_feed_and_a_partial_tail():
    messages = [{"id": i, "op": "ping"} for i in range(5)]
    stream = b"".join(encode(m) for m in messages)
    tail = encode({"event": "hello"})
    dec = Decoder()
    assert dec.feed(stream + tail[:7]) == messages
    assert dec.pending == 7
    assert dec.feed(tail[7:]) == [{"event": "hello"}]
    assert dec.pending == 0


def test_empty_feed_and_header_only_return_nothing():
    dec = Decoder()
    assert dec.feed(b"") == []
    data = encode({"a": 1})
    assert dec.feed(data[:HEADER.size]) == []
    assert dec.pending == HEADER.size


def test_bad_magic_reports_the_bytes_seen():
    stray = b"Welcome to node7! Last login: yesterday\n"
    with pytest.raises(FrameError, match="magic") as err:
        Decoder().feed(stray + encode({"id": 1}))
    assert "Welcome to node7! Last login" in str(err.value)


def test_bad_magic_is_detected_as_soon_as_a_header_is_there():
    dec = Decoder()
    assert dec.feed(b"MLN") == []  # not enough to judge yet
    with pytest.raises(FrameError, match=r"bytes seen: b'MLN0"):
        dec.feed(b"0" + b"\0" * 8)


def test_flipped_body_byte_is_a_checksum_error():
    data = bytearray(encode({"id": 7, "op": "kill", "job_id": 12}))
    data[HEADER.size + 5] ^= 0x01
    with pytest.raises(FrameError, match="checksum"):
        Decoder().feed(bytes(data))


def test_flipped_crc_byte_is_a_checksum_error():
    data = bytearray(encode({"id": 7}))
    data[9] ^= 0x80
    with pytest.raises(FrameError, match="checksum"):
        Decoder().feed(bytes(data))


def test_body_that_is_not_json():
    with pytest.raises(FrameError, match="not JSON") as err:
        Decoder().feed(frame(b"{not json"))
    assert "{not json" in str(err.value)


def test_body_that_is_not_utf8():
    with pytest.raises(FrameError, match="not JSON"):
        Decoder().feed(frame(b'{"a": "\xff"}'))


@pytest.mark.parametrize("body", [b"[1, 2]", b'"text"', b"42", b"null", b"true"])
def test_json_that_is_not_an_object(body):
    with pytest.raises(FrameError, match="not a JSON object"):
        Decoder().feed(frame(body))


def test_size_cap_is_checked_from_the_header_alone():
    dec = Decoder()
    header = HEADER.pack(MAGIC, MAX_BODY + 1, 0)
    with pytest.raises(FrameError, match="exceeds"):
        dec.feed(header)
    assert dec.pending == HEADER.size  # nothing beyond the header was needed or kept


def test_size_cap_at_the_limit_waits_for_the_body():
    dec = Decoder()
    assert dec.feed(HEADER.pack(MAGIC, MAX_BODY, 0)) == []


def test_custom_cap_applies_to_real_frames():
    data = encode({"blob": "x" * 100})
    assert Decoder(max_body=len(data) - HEADER.size).feed(data) == [{"blob": "x" * 100}]
    with pytest.raises(FrameError, match="exceeds"):
        Decoder(max_body=len(data) - HEADER.size - 1).feed(data[:HEADER.size])


def test_encode_refuses_a_message_over_the_cap():
    with pytest.raises(FrameError, match="exceeds"):
        encode({"blob": "x" * MAX_BODY})


def test_encode_refuses_what_json_cannot_carry():
    with pytest.raises(TypeError):
        encode({"raw": b"bytes"})


def test_every_helper_error_code_has_its_exception() -> None:
    from melond.errors import NODE_ERRORS
    from melon_remote.protocol import ErrorCode
    assert set(NODE_ERRORS) == {code.value for code in ErrorCode}

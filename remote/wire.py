"""Checked JSON frames: the one codec melond and the node helper share.

Standard library only: this module is streamed to compute nodes with the helper.

Frame layout (all integers big-endian):

    offset size field
    0      4    magic  b"MLN1"
    4      4    length of the body in bytes (at most MAX_BODY)
    8      4    CRC-32 of the body
    12     n    body: one UTF-8 JSON object

The magic and the CRC mean a stray byte on the channel (a banner, a print from
a library) is detected and reported with the bytes seen, never misread as a
message; the length cap is checked before the body is buffered.
"""
from __future__ import annotations

import asyncio
import json
import struct
import zlib
from collections.abc import Callable

MAGIC = b"MLN1"
HEADER = struct.Struct(">4sII")
MAX_BODY = 64 * 1024 * 1024


class FrameError(Exception):
    """The byte stream is not a valid frame sequence; the channel is unusable."""


def encode(message: dict) -> bytes:
    """One message as one frame."""
    body = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass")
    if len(body) > MAX_BODY:
        raise FrameError(f"message of {len(body)} bytes exceeds the {MAX_BODY}-byte frame limit")
    return HEADER.pack(MAGIC, len(body), zlib.crc32(body)) + body


class Outbox:
    """Messages sent in one turn of the event loop, written together when it ends: a burst (a
    scheduling pass starting several jobs, the replies and ends it brings) costs one write, one
    SSH packet to encrypt, send and parse, instead of one each."""

    def __init__(self, write: Callable[[bytes], None]) -> None:
        self.write = write
        self.frames: list[bytes] = []

    def put(self, message: dict) -> None:
        self.frames.append(encode(message))
        if len(self.frames) == 1:
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        frames, self.frames = self.frames, []
        if frames:
            self.write(b"".join(frames))

    def clear(self) -> None:
        """Drop what is queued (its channel is gone)."""
        self.frames.clear()


class Decoder:
    """Incremental decoder: feed bytes as they arrive, get whole messages back."""

    def __init__(self, max_body: int = MAX_BODY) -> None:
        self._buf = bytearray()
        self._max_body = max_body

    def feed(self, data: bytes) -> list[dict]:
        """Return every complete message in the buffer; raise FrameError on corruption."""
        self._buf += data
        out: list[dict] = []
        while len(self._buf) >= HEADER.size:
            magic, length, crc = HEADER.unpack_from(self._buf)
            if magic != MAGIC:
                raise FrameError(f"bad frame magic; bytes seen: {bytes(self._buf[:64])!r}")
            if length > self._max_body:
                raise FrameError(f"frame of {length} bytes exceeds the {self._max_body}-byte limit")
            end = HEADER.size + length
            if len(self._buf) < end:
                break
            body = bytes(self._buf[HEADER.size:end])
            del self._buf[:end]
            if zlib.crc32(body) != crc:
                raise FrameError(f"frame checksum mismatch; body starts {body[:64]!r}")
            try:
                message = json.loads(body.decode("utf-8", "surrogatepass"))
            except ValueError as exc:
                raise FrameError(f"frame body is not JSON ({exc}); body starts {body[:64]!r}") from None
            if not isinstance(message, dict):
                raise FrameError(f"frame body is not a JSON object: {body[:64]!r}")
            out.append(message)
        return out

    @property
    def pending(self) -> int:
        """Bytes buffered but not yet a whole frame."""
        return len(self._buf)

"""JSON for the CLIs' requests and replies, from CPython's C codec without the `json` package.

`import json` costs a CLI ~5 ms here, most of it `re`, which json's pure-Python parts compile at
import time; the C scanner and encoder in `_json` need none of that. Pretty output (`--json`)
still goes through `json` (see `cli.common.print_json`), where it is worth it.
"""
from __future__ import annotations

try:
    import _json
except ImportError:  # not CPython: the package does the same job, only slower to import
    _json = None


class _Decoding:
    """What `_json.make_scanner` reads from a JSONDecoder: the standard strict settings."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    memo: dict = {}

    @staticmethod
    def parse_constant(name: str) -> float:
        return float(name.replace("Infinity", "inf"))


def _encode_default(value: object) -> object:
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


if _json is not None:
    _scan = _json.make_scanner(_Decoding())
    _encode = _json.make_encoder(None, _encode_default, _json.encode_basestring_ascii, None, ":", ",",
                                 False, False, True)
    _WHITESPACE = " \t\n\r"

    def loads(text: str | bytes) -> object:
        """One JSON document, as json.loads reads it (ValueError if it is not one)."""
        if isinstance(text, (bytes, bytearray)):
            text = text.decode("utf-8")
        start = len(text) - len(text.lstrip(_WHITESPACE))
        try:
            value, end = _scan(text, start)
        except StopIteration:
            raise ValueError("not a JSON document") from None
        if text[end:].strip(_WHITESPACE):
            raise ValueError("extra data after the JSON document")
        return value

    def dumps(value: object) -> str:
        """Compact JSON, as json.dumps(value, separators=(",", ":")) writes it."""
        return "".join(_encode(value, 0))
else:  # pragma: no cover - CPython has _json
    import json as _std

    def loads(text: str | bytes) -> object:
        return _std.loads(text)

    def dumps(value: object) -> str:
        return _std.dumps(value, separators=(",", ":"))

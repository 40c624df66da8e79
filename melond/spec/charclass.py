"""The character classes the parsers test most, as string checks rather than regular expressions,
so that reading a common command line never imports `re` (see `melond.spec.lazy_re`)."""
from __future__ import annotations

_DIGITS = frozenset("0123456789")
_NAME_START = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
_NAME = _NAME_START | _DIGITS


def digits(text: str, most: int | None = None) -> bool:
    """`[0-9]{1,most}` (`[0-9]+` without `most`): ASCII digits only, never '²' or '１'."""
    return 0 < len(text) <= (most or len(text)) and _DIGITS.issuperset(text)


def signed_digits(text: str, most: int) -> bool:
    """`[+-]?[0-9]{1,most}`."""
    return digits(text[1:] if text[:1] in ("+", "-") else text, most)


def shell_name(text: str) -> bool:
    """`[A-Za-z_][A-Za-z0-9_]*`: a name the shell can export."""
    return bool(text) and text[0] in _NAME_START and _NAME.issuperset(text)

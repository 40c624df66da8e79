"""The parsers' string checks match the regular expressions they replace, on any text."""
from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from melond.spec.charclass import digits, shell_name, signed_digits
from melond.spec.lazy_re import LazyPattern

TEXT = st.text(st.sampled_from("0123456789+-_aZ²١ \n"), max_size=22) | st.text(max_size=8)


@given(TEXT)
def test_same_as_the_patterns(text: str) -> None:
    assert digits(text) == bool(re.fullmatch(r"[0-9]+", text))
    assert digits(text, 9) == bool(re.fullmatch(r"[0-9]{1,9}", text))
    assert signed_digits(text, 18) == bool(re.fullmatch(r"[+-]?[0-9]{1,18}", text))
    assert shell_name(text) == bool(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", text))


def test_a_lazy_pattern_compiles_on_first_use() -> None:
    pattern = LazyPattern(r"a(b+)")
    assert pattern._compiled is None
    assert pattern.fullmatch("abb").group(1) == "bb" and pattern._compiled is not None

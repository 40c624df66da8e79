"""Regular expressions compiled when first used, not at import.

`import re` and compiling costs a command 3-5 ms, more than its whole request to melond; most
runs of `mqueue` or `mbatch` never need the patterns that parse, say, `--begin` or `--signal`.
"""
from __future__ import annotations


class LazyPattern:
    """Stands for `re.compile(pattern, flags)`; compiles on the first match."""

    __slots__ = ("pattern", "flags", "_compiled")

    def __init__(self, pattern: str, flags: int = 0) -> None:
        self.pattern, self.flags, self._compiled = pattern, flags, None

    def __getattr__(self, name: str):
        if self._compiled is None:
            import re
            self._compiled = re.compile(self.pattern, self.flags)
        return getattr(self._compiled, name)

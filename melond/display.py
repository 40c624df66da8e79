"""Plain text output shared by melond's own commands and the CLIs: cheap to import."""
from __future__ import annotations


def table(headers: list[str], rows: list[list[str]], right: set[int] = frozenset()) -> str:
    """A plain fixed-width table like squeue's (no colour, cheap to import). One format string
    does each line's padding in C: 10,000 rows in a few milliseconds."""
    widths = [max(len(h), *map(len, column)) if column else len(h)
              for h, column in zip(headers, zip(*rows) if rows else [()] * len(headers))]
    fmt = "  ".join(f"{{:{'>' if i in right else '<'}{w}}}" for i, w in enumerate(widths))
    return "\n".join([fmt.format(*headers).rstrip(), *(fmt.format(*r).rstrip() for r in rows)])

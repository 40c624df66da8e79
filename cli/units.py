"""Slurm's convert_num_unit (src/common/slurm_protocol_api.c): how sinfo and sacct print sizes.

`convert(2048, MEGA)` is "2G" (exact: converted while no precision is lost, halves kept, as the
commands' default CONVERT_NUM_UNIT_EXACT); `to=` a unit (sacct --units) converts to that one,
`convert=False` (--noconvert) keeps the value's own unit.
"""
from __future__ import annotations

UNITS = "\0KMGTP"  # UNIT_NONE, UNIT_KILO, ...: a value's unit is its index here
NONE, KILO, MEGA = 0, 1, 2


def unit_index(letter: str) -> int | None:
    """get_unit_type: K, M, G, T or P in any case; None for anything else."""
    index = UNITS.find(letter.upper()) if len(letter) == 1 else -1
    return index if index > 0 else None


def convert(num: float, unit: int, to: int | None = None, exact: bool = True, noconvert: bool = False) -> str:
    """convert_num_unit2 with a divisor of 1024: the number and its unit letter, `%.2f` if not whole."""
    if int(num) == 0:
        return "0"
    if to is not None:
        while to < unit:
            num, unit = num * 1024, unit - 1
        while to > unit:
            num, unit = num / 1024, unit + 1
    elif noconvert:
        pass
    elif exact:
        while num >= 1024 and int(num) % 512 == 0:  # "half values (e.g., 2.5G) are still considered precise"
            num, unit = num / 1024, unit + 1
    else:
        while num >= 1024:
            num, unit = num / 1024, unit + 1
    letter = UNITS[unit] if 0 <= unit < len(UNITS) else "?"
    letter = "" if letter == "\0" else letter
    return f"{int(num)}{letter}" if int(num) == num else f"{num:.2f}{letter}"

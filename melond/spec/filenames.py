"""Slurm's file name patterns (%j %J %x %u %N %A %a %n %t %s %%, `%3t` zero-padded), filled from
whatever values the caller has: melond's for a batch script's files, srun's for each task's.
Pure, and without `re`, since srun loads it on its common path."""
from __future__ import annotations

NO_VAL_TASK = "4294967294"  # what Slurm prints for %a outside an array


def fill(pattern: str, values: dict[str, str]) -> str:
    """Each `%[width]code` whose code `values` has, replaced; any other `%...` kept as written."""
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch != "%" or i + 1 >= len(pattern):
            out.append(ch)
            i += 1
            continue
        j = i + 1
        while j < len(pattern) and pattern[j].isdigit():
            j += 1
        code = pattern[j] if j < len(pattern) else ""
        if code not in values:
            out.append(pattern[i:j + 1])
        else:
            width = pattern[i + 1:j]
            value = values[code]
            out.append(value.zfill(int(width)) if width and value.isdigit() else value)
        i = j + 1
    return "".join(out)

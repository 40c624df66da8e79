"""glibc getopt_long, as Slurm's commands call it: long names by any unique prefix, short
letters bundled, `--` ends the options; with a leading `+` (sbatch, srun) options stop at the first
word that is not one, without it (squeue, sinfo, sacct, scancel, scontrol) they may come anywhere.

Alone in its module so that a command imports the reader and not every option table: squeue's
start would otherwise pay for sbatch's and srun's tables.
"""
from __future__ import annotations

from types import MappingProxyType

TYPE_CHECKING = False  # the idiom type checkers know: `typing` costs every command ~5 ms to import
if TYPE_CHECKING:
    from typing import Mapping

NO_ARG, REQUIRED, OPTIONAL = 0, 1, 2


class Grammar:
    """One option table as getopt_long sees it: `longs` maps a name to (has_arg, identity for
    ambiguity checks), `shorts` a letter to (has_arg, long name); `strict` makes unknown options
    errors rather than warnings. A plain class: a namedtuple would cost every command the import
    of `collections` (~1.5 ms)."""

    __slots__ = ("longs", "shorts", "strict")

    def __init__(self, longs: Mapping[str, tuple[int, str]], shorts: Mapping[str, tuple[int, str]],
                 strict: bool) -> None:
        self.longs, self.shorts, self.strict = longs, shorts, strict


def make_grammar(table: tuple[tuple[str, int, str], ...], strict: bool,
                 same: Mapping[str, str] | None = None) -> Grammar:
    """Index an option table by long name and short letter; `same` names the entries that are
    another one under a second name (one `val` in Slurm's table)."""
    same = same or {}
    longs = {name: (has_arg, same.get(name, name)) for name, has_arg, _ in table}
    shorts = {short: (has_arg, name) for name, has_arg, short in table if short}
    return Grammar(MappingProxyType(longs), MappingProxyType(shorts), strict)


def resolve_long(grammar: Grammar, written: str) -> str | list[str] | None:
    """getopt_long's lookup: the exact name, else the one option every prefix match denotes.

    Returns the option name, the candidate list when the prefix is ambiguous, or None. The list
    is glibc's "possibilities": the first match and each match that is another option, in table
    order (a second name of the first match is not listed).
    """
    if written in grammar.longs:
        return written
    matches = [name for name in grammar.longs if name.startswith(written)]
    if not matches:
        return None
    first = grammar.longs[matches[0]]
    if len({grammar.longs[name] for name in matches}) == 1:
        return matches[0]
    return [name for name in matches if name == matches[0] or grammar.longs[name] != first]


class GetoptError(ValueError):
    """An argument vector getopt_long would refuse, in glibc's words."""


def getopt_long(argv: list[str], grammar: Grammar, permute: bool = False
                ) -> tuple[list[tuple[str, str | None]], list[str]]:
    """glibc getopt_long with a leading ``+`` (as sbatch and srun call it): options up to the first
    word that is not one, or ``--``; the rest is the script or command and its arguments. With
    `permute` (no ``+``, as squeue, sinfo, sacct, scancel and scontrol call it) options may come
    after other words too, and the rest is every word that is not an option, in order.

    Returns ((long name, value or None), ...) in the order given, and the rest.
    """
    found: list[tuple[str, str | None]] = []
    rest: list[str] = []
    i = 0
    while i < len(argv):
        word = argv[i]
        i += 1
        if word == "--":
            return found, rest + argv[i:]
        if word.startswith("--"):
            written, has_value, value = word[2:].partition("=")
            name = resolve_long(grammar, written)
            if isinstance(name, list):
                raise GetoptError(f"option '{word}' is ambiguous; possibilities:"
                                  + "".join(f" '--{n}'" for n in name))
            if name is None:
                raise GetoptError(f"unrecognized option '{word}'")
            has_arg = grammar.longs[name][0]
            if has_value and has_arg == NO_ARG:
                raise GetoptError(f"option '--{name}' doesn't allow an argument")
            if not has_value and has_arg == REQUIRED:
                if i >= len(argv):
                    raise GetoptError(f"option '--{name}' requires an argument")
                value, i = argv[i], i + 1
            found.append((name, value if has_value or has_arg == REQUIRED else None))
        elif word.startswith("-") and word != "-":
            letters = word[1:]
            for index, letter in enumerate(letters):
                if letter not in grammar.shorts:
                    raise GetoptError(f"invalid option -- '{letter}'")
                has_arg, name = grammar.shorts[letter]
                if has_arg == NO_ARG:
                    found.append((name, None))
                    continue
                value: str | None = letters[index + 1:] or None
                if value is None and has_arg == REQUIRED:
                    if i >= len(argv):
                        raise GetoptError(f"option requires an argument -- '{letter}'")
                    value, i = argv[i], i + 1
                found.append((name, value))
                break
        elif permute:
            rest.append(word)
        else:
            return found, argv[i - 1:]
    return found, rest

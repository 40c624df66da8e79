"""Find and parse a job script's directives, as sbatch does.

``mbatch`` reads ``#SBATCH`` lines, so an existing Slurm script runs unchanged, and Melon's own
``#MBATCH`` lines. Both are found exactly as sbatch's ``_opt_batch_script`` finds them and split
as its ``get_argument`` splits them (conformance/sbatch/RULES.md R1, R2); options are resolved as
glibc ``getopt_long`` resolves them, unique prefixes included (R3). ``#SBATCH`` lines are lenient:
whatever Melon does not implement, or sbatch itself would refuse, is skipped with a warning.
``#MBATCH`` lines are Melon's own grammar and strict. `melond.spec.request` merges them with the
environment and the command line. Nothing here reads files; the caller passes the script text in.
"""

from __future__ import annotations

from collections import namedtuple  # not typing.NamedTuple: `typing` costs every mbatch ~5 ms
from types import MappingProxyType

from melond.errors import ParseError
from melond.spec.getopt import NO_ARG, REQUIRED, Grammar, resolve_long
from melond.spec.slurm_options import MELON_GRAMMAR, MELON_OPTIONS, SLURM_GRAMMAR, SLURM_PREFIX, changes_job, unsupported

__all__ = ["CLIENT_OPTIONS", "MELON_OPTIONS", "Directive", "DirectiveError", "Scan", "Setting", "options_from_scan",
           "scan_script"]


class DirectiveError(ParseError):
    """An option, directive or script Melon must refuse; the message says where and what to do."""


# sbatch reads a script's directives with every option it knows, those that change how sbatch
# itself behaves (--parsable, --wait) included; only the options of its early pass are ignored
# there (slurm_process_option in src/common/slurm_opt.c skips `sbatch_early_pass` entries in the
# second pass): --wrap here, and --quiet, --verbose, --help, --usage, --version, which Melon
# records silently (QUIET_OPTIONS).
_COMMAND_LINE_ONLY = frozenset({"wrap"})
#: Options that change how the submitting command behaves, not the job; `client_options` reads
#: them from a script.
CLIENT_OPTIONS = frozenset({"parsable", "wait"})

# Strict #MBATCH lines: hints for mistakes a Slurm user will make.
_MBATCH_SHORT_HINTS = MappingProxyType({
    "a": "-a is the command line's --api-endpoint; write --array",
})

_C_SPACE = " \t\n\v\f\r"  # isspace() in the C locale, as get_argument uses it
_DIRECTIVE_PREFIXES = ("#SBATCH", "#MBATCH", "#SLURM")

_GRAMMARS = MappingProxyType({"#SBATCH": SLURM_GRAMMAR, "#SLURM": SLURM_GRAMMAR, "#MBATCH": MELON_GRAMMAR})
MELON_ARGS = MappingProxyType({name: has_arg for name, has_arg, _ in MELON_OPTIONS})


class Directive(namedtuple("Directive", "line prefix tokens")):
    """One honoured directive line: where it is, its magic word and its tokens."""

    __slots__ = ()
    line: int
    prefix: str
    tokens: tuple[str, ...]


class Scan(namedtuple("Scan", "directives ignored first_command_line warnings")):
    """What the directive scan found in a script."""

    __slots__ = ()
    directives: tuple[Directive, ...]
    ignored: tuple[tuple[int, str], ...]  # (line, text) of directive lines after the first command
    first_command_line: int | None
    warnings: tuple[str, ...]


class Setting(namedtuple("Setting", "value origin")):
    """A raw option value and where it came from, so an error can point at it."""

    __slots__ = ()
    value: str | bool
    origin: str  # "line 7", "command line", "environment variable SBATCH_TIMELIMIT"

    def describe(self, key: str, problem: object) -> str:
        """Say which option, with which value and from where, has the problem."""
        shown = f"--{key}" if self.value is True else f"--{key}={self.value}"
        if self.origin.startswith("line "):
            return f"{self.origin}: {shown}: {problem}"
        return f"{shown} ({self.origin}): {problem}"


# ---------------------------------------------------------------- scanning (R1, R2)


class _LineProblem(Exception):
    """A directive line that cannot be split into tokens."""


def _tokenize(rest: str) -> list[str]:
    """Split what follows the magic word like sbatch's get_argument: quotes, backslash, '#'."""
    tokens: list[str] = []
    i, end = 0, len(rest)
    while True:
        while i < end and rest[i] in _C_SPACE:
            i += 1
        if i >= end:
            return tokens
        if rest[i] == ":":
            raise _LineProblem("':' separates heterogeneous job components, which Melon does not run")
        chars: list[str] = []
        quote, escape, quoted, comment = "", False, False, False
        while i < end and (quote or escape or rest[i] not in _C_SPACE):
            ch = rest[i]
            i += 1
            if escape:
                escape = False
            elif ch == "\\":
                escape = True
                continue
            elif quote:
                if ch == quote:
                    quote = ""
                    continue
            elif ch in "\"'":
                quote, quoted = ch, True
                continue
            elif ch == "#":
                comment = True  # an unescaped '#' ends the line: "--time=1:00 # one hour"
                break
            chars.append(ch)
        if quote:
            raise _LineProblem(f"unmatched {quote} quote")
        if chars or quoted:
            # sbatch drops an empty "" token and stops reading the line there; Melon keeps it,
            # so -J "" is an empty value (Slurm's "not given") instead of eating the next option.
            tokens.append("".join(chars))
        if comment:
            return tokens


def _is_command(line: str) -> bool:
    """True when a non-directive line is a command (not blank, not a comment); that ends the block."""
    stripped = line.lstrip(_C_SPACE)
    return bool(stripped) and not stripped.startswith("#")


def scan_script(text: str) -> Scan:
    """Find the honoured ``#SBATCH``/``#MBATCH`` lines and the directive lines sbatch would ignore."""
    directives: list[Directive] = []
    ignored: list[tuple[int, str]] = []
    warnings: list[str] = []
    first_command: int | None = None
    for number, line in enumerate(text.split("\n"), start=1):
        prefix = next((p for p in _DIRECTIVE_PREFIXES if line.startswith(p)), None)
        if first_command is not None:
            if prefix:
                ignored.append((number, line))
                warnings.append(
                    f"line {number}: {line.strip()!r} ignored: directives after the first command "
                    f"(line {first_command}) are not read, as in sbatch"
                )
            continue
        if prefix is None:
            if _is_command(line):
                first_command = number
            continue
        if prefix == "#SLURM":
            warnings.append(f"line {number}: #SLURM is an old spelling, read as #SBATCH; write #SBATCH")
        try:
            tokens = _tokenize(line[len(prefix):])
        except _LineProblem as problem:
            if _GRAMMARS[prefix].strict:
                raise DirectiveError(f"line {number}: {problem}: {line.strip()!r}") from None
            warnings.append(f"line {number}: {problem}; line ignored (sbatch would refuse it)")
            continue
        directives.append(Directive(number, prefix, tuple(tokens)))
    return Scan(tuple(directives), tuple(ignored), first_command, tuple(warnings))


# ---------------------------------------------------------------- option parsing (R3)


class _Token(namedtuple("_Token", "line prefix text")):
    __slots__ = ()
    line: int
    prefix: str
    text: str


class _Parser:
    """getopt_long over the directive tokens, lenient or strict by each token's line."""

    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.settings: dict[str, Setting] = {}
        self.warnings: list[str] = []

    def run(self) -> tuple[dict[str, Setting], list[str]]:
        """Read every token; later options override earlier ones, as in sbatch."""
        while self.pos < len(self.tokens):
            token = self.tokens[self.pos]
            self.pos += 1
            grammar = _GRAMMARS[token.prefix]
            if token.text.startswith("--") and token.text != "--":
                self._long(token, grammar)
            elif token.text.startswith("-") and token.text not in ("-", "--"):
                self._shorts(token, grammar)
            else:
                self._problem(token, grammar, f"{token.text!r} is not an option (a stray word)")
        return self.settings, self.warnings

    def _problem(self, token: _Token, grammar: Grammar, message: str) -> None:
        """Refuse (#MBATCH) or warn and skip (#SBATCH, like the lenient corpus rules)."""
        if grammar.strict:
            raise DirectiveError(f"line {token.line}: {token.prefix}: {message}")
        self.warnings.append(f"line {token.line}: {message}; ignored (sbatch would refuse the script)")

    def _next_argument(self) -> str | None:
        """The following token, wherever it is; getopt takes it even across directive lines."""
        if self.pos >= len(self.tokens):
            return None
        self.pos += 1
        return self.tokens[self.pos - 1].text

    def _long(self, token: _Token, grammar: Grammar) -> None:
        """Resolve ``--name[=value]`` by exact name, then unique prefix."""
        written, has_value, value = token.text[2:].partition("=")
        name = resolve_long(grammar, written)
        if isinstance(name, list):
            self._problem(token, grammar, f"option '--{written}' is ambiguous ({', '.join(name)})")
            return
        if name is None:
            self._problem(token, grammar, f"unrecognized option '--{written}'{_melon_hint(grammar)}")
            return
        has_arg = grammar.longs[name][0]
        if has_value and has_arg == NO_ARG:
            self._problem(token, grammar, f"option '--{name}' doesn't allow an argument")
            return
        if not has_value and has_arg == REQUIRED:
            value = self._next_argument()
            if value is None:
                self._problem(token, grammar, f"option '--{name}' requires an argument")
                return
        canonical = grammar.longs[name][1]  # --tasks-per-node is --ntasks-per-node
        self._apply(token, canonical, value if has_value or has_arg == REQUIRED else None)

    def _shorts(self, token: _Token, grammar: Grammar) -> None:
        """Resolve a cluster of short options such as ``-Hc4`` or ``-t 8:00:00``."""
        letters = token.text[1:]
        for index, letter in enumerate(letters):
            if letter not in grammar.shorts:
                hint = _MBATCH_SHORT_HINTS.get(letter, "") if grammar.strict else ""
                self._problem(token, grammar, f"invalid option -- '{letter}'" + (f" ({hint})" if hint else ""))
                continue
            has_arg, name = grammar.shorts[letter]
            if has_arg == NO_ARG:
                self._apply(token, name, None)
                continue
            value: str | None = letters[index + 1:] or None
            if value is None and has_arg == REQUIRED:
                value = self._next_argument()
                if value is None:
                    self._problem(token, grammar, f"option requires an argument -- '{letter}'")
                    return
            self._apply(token, name, value)
            return

    def _apply(self, token: _Token, name: str, value: str | None) -> None:
        """Record a Melon option, or say why a Slurm option is skipped."""
        origin = f"line {token.line}"
        if name in _COMMAND_LINE_ONLY:
            self.warnings.append(f"{origin}: --{name} has no effect in a script; give it on the command line")
        elif name in ("requeue", "no-requeue"):
            self.settings["requeue"] = Setting(name == "requeue", origin)
        elif name in MELON_ARGS:
            self.settings[name] = Setting(True if value is None else value, origin)
        else:
            self.settings[SLURM_PREFIX + name] = Setting("" if value is None else value, origin)
            if changes_job(name, value):
                self.warnings.append(f"{origin}: {unsupported(name, value)}")


def _melon_hint(grammar: Grammar) -> str:
    """For strict lines, list what is accepted and where Slurm-only options belong."""
    if not grammar.strict:
        return ""
    names = ", ".join(f"--{name}" for name in grammar.longs)
    return f" (#MBATCH lines accept {names}; put Slurm options Melon may ignore in #SBATCH lines)"


def options_from_scan(scan: Scan) -> tuple[dict[str, Setting], list[str]]:
    """Parse the honoured directives into Melon options (last one wins) plus warnings."""
    tokens = [_Token(d.line, d.prefix, text) for d in scan.directives for text in d.tokens]
    settings, warnings = _Parser(tokens).run()
    return settings, list(scan.warnings) + warnings

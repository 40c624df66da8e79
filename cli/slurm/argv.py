"""The command lines of Slurm's names: glibc getopt_long over each command's whole option table,
and what every one of them does before anything else (a bad option, --help, --version).

sbatch and srun call getopt_long with a leading `+` (options end at the script or command);
squeue, sinfo, sacct, scancel and scontrol let it permute (options anywhere). A bad option is
answered in glibc's words, then `Try "PROG --help" for more information`, exit 1, as each of
Slurm's commands does (`case '?'` after getopt_long in src/squeue/opts.c, src/sinfo/opts.c,
src/sacct/options.c, src/scancel/opt.c, src/scontrol/scontrol.c), never with a usage box.
"""
from __future__ import annotations

import os
import sys
from types import MappingProxyType

from melon_cli.args import ENDPOINT, Command, Fallback, Opt
from melond.spec.getopt import NO_ARG, REQUIRED, GetoptError, Grammar, getopt_long

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

#: What `-V/--version` prints: print_slurm_version (src/common/proc_args.c) writes
#: "slurm <version>"; this is the interface these commands speak.
SLURM_VERSION = "23.11.0"
VERSION = f"slurm {SLURM_VERSION}"
VERSION_HELP = f"Print `{VERSION}`, the Slurm interface spoken, as Slurm's commands do (at a terminal, Melon's too)."

#: (long name, has_arg, short letter or "") of one of a Slurm command's options (cli.slurm.tables).
SlurmOption = tuple[str, int, str]
HELP_NAMES = frozenset({"help", "usage"})


def version_text(prog: str) -> str:
    """-V/--version: Slurm's line, alone wherever a program reads it, and Melon's own beneath it
    at a terminal. Tools parse the whole of stdout, not only its first line: law matches the first
    line, slurm-viewer matches `^slurm (.*)$` against all of it (a second line fails), slurm_factory
    strips `slurm` and splits the rest on `.` and `-` (any more text becomes a bogus part), PRRTE
    takes major.minor after the first space. A program never reads a terminal, so there Melon
    names itself (`sbatch (Melon) 0.2.0`) and breaks none of them."""
    if not sys.stdout.isatty():
        return VERSION
    from melond.version import version_line
    return f"{VERSION}\n{version_line(prog)}"


def bad_option(prog: str, problem: str) -> None:
    """Slurm's answer to an option getopt_long refused: glibc's message, the hint, exit 1."""
    sys.stderr.write(f'{prog}: {problem}\nTry "{prog} --help" for more information\n')
    sys.exit(1)


def read_argv(prog: str, grammar: Grammar, argv: list[str] | None, help_text: str
              ) -> tuple[list[tuple[str, str | None]], list[str]]:
    """(options in order, the words after them) for sbatch and srun; exits as Slurm's command does
    for a bad option, and after printing help or the version."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        found, rest = getopt_long(argv, grammar)
    except GetoptError as exc:
        bad_option(prog, str(exc))
    given = {name for name, _ in found}
    if given & {"help", "usage"}:
        sys.stdout.write(help_text)
        sys.exit(0)
    if "version" in given:
        sys.stdout.write(version_text(prog) + "\n")
        sys.exit(0)
    return found, rest


class SlurmCommand(Command):
    """A Command under a Slurm name, read by permuting getopt_long over Slurm's whole `table`
    (cli.slurm.tables), so abbreviations, ambiguities and errors are Slurm's.

    `options` are those Melon acts on, each with flags from the table (or Melon's own extras, such
    as --api-endpoint); `ignored` names the table's options that change nothing here (display and
    federation switches), accepted in silence; every other option of the table is refused by
    name (filters on accounts, QOS, ... that Melon cannot honour) rather than passed over. An
    option whose argument is optional (glibc's `optional_argument`), given bare, takes the first
    operand, as squeue's -j does. `strays(words)` is the command's answer, as error lines, to words
    it has no place for (None: they are ignored); help, usage and version are the table's.
    """

    version_flags = ("-V", "--version")
    version_help = VERSION_HELP

    def __init__(self, prog: str, run: Callable[..., object], options: list[Opt], args: list = (), *,
                 table: tuple[SlurmOption, ...], ignored: frozenset[str] = frozenset(),
                 strays: Callable[[list[str]], list[str]] | None = None, epilog: str | None = None) -> None:
        super().__init__(prog, run, options, args, epilog=epilog, help_flags=("--help", "--usage"),
                         strays=strays is None)
        # The endpoint is Melon's own: its long names only, as every short letter is Slurm's.
        self.options[-1] = Opt(*(f for f in ENDPOINT.flags if f.startswith("--")), dest="endpoint", value=True,
                               metavar="URL", help=ENDPOINT.help)
        self._flags = {flag: opt for opt in self.options for flag in opt.flags}
        self.stray_message = strays
        self.table = table  # for the manual page: what it accepts and refuses beside what it acts on
        self.grammar, self._acts = self._grammar(table)
        accepted = ignored | HELP_NAMES | {"version"}
        self.acted = {key for key, opt in self._acts.items() if opt is not None}
        self.refused = {name or "-" + short for name, _, short in table
                        if (name or "-" + short) not in self.acted and name not in accepted}

    def version(self) -> str:
        """Slurm's version line, as the table's -V/--version prints it."""
        return version_text(self.prog)

    def _grammar(self, table: tuple[SlurmOption, ...]) -> tuple[Grammar, dict[str, Opt | None]]:
        """Slurm's table as getopt_long sees it, Melon's extras after it; and which Opt each name is."""
        from melon_cli.slurm.tables import SAME
        longs: dict[str, tuple[int, str]] = {}
        shorts: dict[str, tuple[int, str]] = {}
        acts: dict[str, Opt | None] = {}
        extras = [(f[2:], (REQUIRED if opt.value else NO_ARG), "") for opt in self.options for f in opt.flags
                  if f.startswith("--") and f[2:] not in {name for name, _, _ in table}]
        for name, has_arg, short in (*table, *extras):
            opt = self._flags.get("--" + name) or (self._flags.get("-" + short) if short else None)
            key = name or "-" + short
            acts[key] = opt
            identity = "opt:" + opt.dest if opt else "slurm:" + (short or SAME.get(name, name))
            if name:
                longs[name] = (has_arg, identity)
            if short:
                shorts.setdefault(short, (has_arg, key))
        return Grammar(MappingProxyType(longs), MappingProxyType(shorts), True), acts

    def main(self, argv: list[str] | None = None) -> None:
        """Parse as Slurm's command does, then run; a bad option never reaches rich-click."""
        argv = list(sys.argv[1:] if argv is None else argv)
        if f"_{self.prog.upper()}_COMPLETE" in os.environ:
            self.click()(argv, prog_name=self.prog)
        try:
            found, words = getopt_long(argv, self.grammar, permute=True)
        except GetoptError as exc:
            bad_option(self.prog, str(exc))
        self.invoke(self.values(found, words))

    def values(self, found: list[tuple[str, str | None]], words: list[str]) -> dict[str, object]:
        """The run function's arguments from what getopt_long found, in its order: help and the
        version end it there, a refused option is an error, an ignored one is passed over."""
        values: dict[str, object] = {opt.dest: opt.empty() for opt in self.options}
        for name, value in found:
            if name in HELP_NAMES:
                self.click()(["--help"], prog_name=self.prog)
            if name == "version":
                sys.stdout.write(self.version() + "\n")
                sys.exit(0)
            if name in self.refused:
                self.fail(f"{'' if name.startswith('-') else '--'}{name} is not supported by Melon")
            opt = self._acts.get(name)
            if opt is None:
                continue
            if opt.value and value is None:  # an optional argument, not given: the next operand
                if not words:
                    self._set(values, opt, "")  # given bare: `squeue -s` is every step
                    continue
                value = words.pop(0)
            self._set(values, opt, value if opt.value else True)
        try:
            values.update(self._place(words))
        except Fallback:
            self.fail(*self.stray_message(words))
        if values.get("endpoint") is None:
            values["endpoint"] = os.environ.get("MELON_API") or None
        return values

    def fail(self, *lines: str) -> None:
        """`PROG: error: LINE` for each line and exit 1, as Slurm's error() and exit(1)."""
        sys.stdout.flush()
        sys.stderr.write("".join(f"{self.prog}: error: {line}\n" for line in lines))
        sys.exit(1)

"""Each command's options, declared once: read by a small getopt-style parser on the common path,
and built into a rich-click command for `--help`, shell completion and usage errors.

rich-click and click cost a command ~25 ms to import, several times the work of a whole `mqueue`.
So the command line is read here, with the standard library only, and rich-click is loaded only
when there is something for it to say: help, completion, or an option this parser cannot place
(it then reads the same table and reports the problem the way users know).
"""
from __future__ import annotations

import os
import sys
from melond.errors import MelonError

TYPE_CHECKING = False  # the idiom type checkers know; `collections.abc` would cost each command 1.5 ms
if TYPE_CHECKING:
    from collections.abc import Callable

CONTEXT = {"help_option_names": ["-h", "--help"]}


class Opt:
    """One option: its flags (`-j`, `--jobs`), where its value goes, and whether it takes one."""

    __slots__ = ("flags", "dest", "value", "multiple", "help", "metavar", "required", "complete")

    def __init__(self, *flags: str, dest: str, value: bool = False, multiple: bool = False, help: str = "",
                 metavar: str | None = None, required: bool = False, complete: str | None = None) -> None:
        self.flags, self.dest, self.value, self.multiple = flags, dest, value or multiple, multiple
        self.help, self.metavar, self.required = help, metavar, required
        self.complete = complete  # what the shell completes: "jobs", "nodes" or "file"

    def empty(self) -> object:
        return () if self.multiple else (None if self.value else False)


class Arg:
    """The positional words: `name`, how many (`1`, `?`, `+` or `*`), what the shell completes."""

    __slots__ = ("name", "count", "complete")

    def __init__(self, name: str, count: str = "1", complete: str | None = None) -> None:
        self.name, self.count, self.complete = name, count, complete


#: The key `Command.parse` answers `--version` with, alone: no run function takes it.
VERSION = "--version"


class Fallback(Exception):
    """The fast parser cannot place a word; rich-click, reading the same table, will say why."""


ENDPOINT = Opt("-a", "--api-endpoint", "--api_endpoint", dest="endpoint", value=True, metavar="URL",
               help="unix:/path/melond.sock, http://host:port or https://host:port (env MELON_API; TCP needs "
                    "a token, see mtoken); several, comma-separated, for two melonds over one database. "
                    "Default: your own melond, else the system one.")


class Command:
    """A command line's grammar (`options`, then `args`) and the function that runs it.

    `--version` (`version_flags`) is read where an option may stand and ends the reading there,
    as GNU's getopt loops print the version the moment they meet it: what follows is not read.
    """

    version_flags: tuple[str, ...] = ("--version",)
    version_help: str | None = None  # None: melond.version.HELP, the words every command uses

    def __init__(self, prog: str, run: Callable[..., object], options: list[Opt], args: list[Arg] = (),
                 interspersed: bool = True, epilog: str | None = None,
                 help_flags: tuple[str, ...] = ("-h", "--help"), strays: bool = False) -> None:
        self.prog, self.run, self.args, self.interspersed = prog, run, list(args), interspersed
        self.strays = strays  # drop words it does not know (sacct run with `| tail -1` as arguments)
        self.help_flags = help_flags  # mqueue's -h is squeue's --noheader
        taken = {flag for opt in options for flag in opt.flags}
        # A command whose own grammar takes -a (macct's --allusers, as sacct's) keeps the long forms.
        endpoint = ENDPOINT if "-a" not in taken else Opt(
            *(f for f in ENDPOINT.flags if f != "-a"), dest="endpoint", value=True, metavar="URL", help=ENDPOINT.help)
        self.options = [*options, endpoint]
        self.epilog = epilog
        self._flags = {flag: opt for opt in self.options for flag in opt.flags}

    def parse(self, argv: list[str]) -> dict[str, object]:
        """getopt_long's reading: `-c4`, `-c 4`, `-Hc4`, `--cpus=4`, `--cpus 4`, `--` ends options."""
        values: dict[str, object] = {opt.dest: opt.empty() for opt in self.options}
        words: list[str] = []
        i = 0
        while i < len(argv):
            word = argv[i]
            i += 1
            if word == "--":
                words += argv[i:]
                break
            if word.startswith("--"):
                name, eq, value = word.partition("=")
                if name in self.version_flags and not eq:
                    return {VERSION: True}
                opt = self._flags.get(name)
                if opt is None and self.strays and name not in self.help_flags:
                    continue
                if opt is None or (eq and not opt.value):
                    raise Fallback(word)
                if opt.value and not eq:
                    if i >= len(argv):
                        raise Fallback(word)
                    value, i = argv[i], i + 1
                self._set(values, opt, value if opt.value else True)
            elif word.startswith("-") and word != "-":
                for k in range(1, len(word)):
                    opt = self._flags.get("-" + word[k])
                    if opt is None and self.strays and word not in self.help_flags:
                        break
                    if opt is None:
                        raise Fallback(word)
                    if not opt.value:
                        self._set(values, opt, True)
                        continue
                    value = word[k + 1:]
                    if not value:
                        if i >= len(argv):
                            raise Fallback(word)
                        value, i = argv[i], i + 1
                    self._set(values, opt, value)
                    break
            else:
                words.append(word)
                if not self.interspersed:
                    words += argv[i:]
                    break
        if any(opt.required and values[opt.dest] is None for opt in self.options):
            raise Fallback("a required option is missing")
        values.update(self._place(words))
        if values.get("endpoint") is None:
            values["endpoint"] = os.environ.get("MELON_API") or None
        return values

    @staticmethod
    def _set(values: dict[str, object], opt: Opt, value: object) -> None:
        values[opt.dest] = (*values[opt.dest], value) if opt.multiple else value

    def _place(self, words: list[str]) -> dict[str, object]:
        out: dict[str, object] = {}
        for n, arg in enumerate(self.args):
            if arg.count in "+*":
                rest = len(self.args) - n - 1
                taken, words = words[:len(words) - rest], words[len(words) - rest:]
                if arg.count == "+" and not taken:
                    raise Fallback(f"no {arg.name}")
                out[arg.name] = tuple(taken)
            elif words:
                out[arg.name], words = words[0], words[1:]
            elif arg.count == "1":
                raise Fallback(f"no {arg.name}")
            else:
                out[arg.name] = None
        if words and not self.strays:
            raise Fallback(f"extra words {words}")
        return out

    def main(self, argv: list[str] | None = None) -> None:
        """The command's entry point: parse, run, and turn refusals into `prog: error: ...`, exit 1."""
        argv = sys.argv[1:] if argv is None else argv
        if f"_{self.prog.upper().replace('-', '_')}_COMPLETE" in os.environ:
            self.click()(argv, prog_name=self.prog)
        try:
            values = self.parse(argv)
        except Fallback:
            self.click()(argv, prog_name=self.prog)
            return
        if VERSION in values:
            sys.stdout.write(self.version() + "\n")
            return
        self.invoke(values)

    def version(self) -> str:
        """What --version prints; imported only then, so the common path loads nothing more."""
        from melond.version import version_line
        return version_line(self.prog)

    def invoke(self, values: dict[str, object]) -> None:
        try:
            self.run(**values)
        except (MelonError, ValueError) as exc:
            error(self.prog, str(exc))
            sys.exit(1)
        except BrokenPipeError:  # `mqueue | head`: the reader left; say nothing more
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(1)
        sys.stdout.flush()

    def click(self):
        """The same command as a rich-click Command, for help, completion and usage errors."""
        if sys.flags.no_site:  # started with -S by its launcher: site-packages are needed now
            import site
            site.main()
        import rich_click as click

        def completion(what: str | None) -> dict:
            if what == "file":
                return {"type": click.Path()}
            if what is None:
                return {}
            from melon_cli import completion as values
            return {"shell_complete": getattr(values, what)}

        params: list = []
        for opt in self.options:
            params.append(click.Option([*opt.flags, opt.dest], is_flag=not opt.value, multiple=opt.multiple,
                                       default=None if opt.value and not opt.multiple else opt.empty(),
                                       help=opt.help, metavar=opt.metavar, required=opt.required,
                                       envvar="MELON_API" if opt.dest == "endpoint" else None,
                                       **completion(opt.complete)))
        for arg in self.args:
            params.append(click.Argument([arg.name], nargs=-1 if arg.count in "+*" else 1,
                                         required=arg.count in "1+",
                                         **({"type": click.UNPROCESSED} | completion(arg.complete))))

        def callback(**values: object) -> None:
            if not self.interspersed and "args" in values:
                values["args"] = tuple(values["args"])
            self.invoke(values)

        settings = {"help_option_names": list(self.help_flags), "allow_interspersed_args": self.interspersed}
        from melond.version import HELP, __version__
        version = click.version_option(__version__, *self.version_flags, message=self.version().replace("%", "%%"),
                                       help=self.version_help or HELP)
        return version(click.RichCommand(self.prog, params=params, callback=callback, help=self.run.__doc__,
                                         epilog=self.epilog, context_settings=settings))


def echo(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def error(prog: str, message: str) -> None:
    sys.stdout.flush()
    sys.stderr.write(f"{prog}: error: {message}\n")


def warn(prog: str, message: str) -> None:
    sys.stdout.flush()
    sys.stderr.write(f"{prog}: warning: {message}\n")

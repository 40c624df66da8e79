"""Write every command's manual page (section 1) from the definitions its `--help` prints.

    python scripts/gen_man.py           # rewrite man/ (make man)
    python scripts/gen_man.py --check   # exit 1, naming them, if the committed pages differ

melond and Melon's commands are read as click commands (cli.args builds the fast ones' from their
option tables, as their --help does); Slurm's names from their option tables, their --help text and
the job options they share with mbatch. Melon's own pages go to man/man1 (installed as
share/man/man1), Slurm's names to man/slurm/man1 (installed as share/melon/slurm/man/man1, put on
MANPATH by `melon-slurm env`), so a real Slurm's sbatch(1) is never replaced.
"""
from __future__ import annotations

import inspect
import os
import sys

import click

import roff
from melon_cli import macct, mbatch, mcancel, mextend, mhold, minfo, mnode, mqueue, mshare, mshow, mtoken
from melon_cli.slurm import argv as slurm_argv
from melon_cli.slurm import env, sacctmgr, salloc, sacct, sattach, sbatch, sprio, sshare, scancel, scontrol, sdiag, sinfo, squeue, srun, tables
from melond import main as melond_main
from melond.spec.slurm_options import SALLOC_OPTIONS, SBATCH_OPTIONS, SRUN_OPTIONS
from melond.version import HELP as VERSION_HELP
from melond.version import __version__

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MELON_DIR, SLURM_DIR = os.path.join("man", "man1"), os.path.join("man", "slurm", "man1")
SOURCE = f"Melon {__version__}"
#: Melon's own commands: name -> its click command, built as its --help builds it.
MELON = {
    "melond": lambda: melond_main.main, "mbatch": mbatch.COMMAND.click, "mqueue": mqueue.COMMAND.click,
    "mcancel": mcancel.COMMAND.click, "mextend": mextend.COMMAND.click, "mshow": mshow.COMMAND.click,
    "macct": macct.COMMAND.click, "mshare": mshare.COMMAND.click, "mhold": mhold.HOLD.click,
    "mrelease": mhold.RELEASE.click,
    "minfo": lambda: minfo.main, "mnode": lambda: mnode.main, "mtoken": lambda: mtoken.main,
}
#: The Slurm names read by SlurmCommand (their Melon options are a click command's for --help).
SLURM_COMMANDS = {"squeue": squeue.COMMAND, "sinfo": sinfo.COMMAND, "sacct": sacct.COMMAND,
                  "scancel": scancel.COMMAND, "sdiag": sdiag.COMMAND}
#: NAME's line for the pages whose --help is a usage line and prose, with no one-line summary.
SUMMARIES = {"sbatch": "submit a batch script to melond, with Slurm's sbatch options",
             "srun": "run a job's tasks, or a command as a job of its own, with Slurm's srun options",
             "salloc": "an interactive allocation, and a shell (or a command) on a terminal in it",
             "sattach": "attach to a running interactive step's terminal from another login",
             "sprio": "pending jobs' priorities and the weighted factors they are made of",
             "sshare": "the association tree's shares, decayed usage and Fair Tree fair-share",
             "sacctmgr": "show the accounts, users, QOS and associations of melond's inventory",
             "scontrol": "update, hold, release, requeue and show jobs; show partitions, nodes and the config",
             env.PROG: "put Slurm's command names, backed by melond, on PATH and MANPATH"}
#: A Slurm option table: (long name, has_arg, short letter), as cli.slurm.tables and slurm_options hold them.
Table = tuple[tuple[str, int, str], ...]
#: Which of Melon's commands each Slurm name stands for, for SEE ALSO.
MIRRORS = {"sbatch": "mbatch", "srun": "mbatch", "salloc": "mbatch", "squeue": "mqueue", "sinfo": "minfo", "sacct": "macct",
           "scancel": "mcancel", "scontrol": "mextend", "sdiag": "minfo", "sattach": "mqueue",
           "sprio": "mqueue", "sshare": "mshare", "sacctmgr": "macct"}


def context(cmd: click.Command, name: str, parent: click.Context | None = None) -> click.Context:
    """The context --help runs in: the command's own settings (its help flags: mqueue has no -h)."""
    return cmd.context_class(cmd, info_name=name, parent=parent, **cmd.context_settings)


def summary(help_text: str) -> str:
    """NAME's line: the help's first sentence, in lower case as man pages write it (`Submit SCRIPT`
    becomes `submit SCRIPT`; a word in capitals stays)."""
    first = " ".join(inspect.cleandoc(help_text).split("\n\n")[0].split())
    sentence = first.split(". ")[0].removesuffix(".")
    return sentence[:1].lower() + sentence[1:] if sentence[1:2].islower() else sentence


def options(cmd: click.Command, ctx: click.Context) -> tuple[roff.Item, ...]:
    """Each visible option with its --help words (defaults and ranges included)."""
    out = []
    for param in cmd.get_params(ctx):
        if not isinstance(param, click.Option) or param.hidden:
            continue
        record = param.get_help_record(ctx)
        out.append(roff.Item(tuple(param.opts + param.secondary_opts),
                             None if param.is_flag else param.make_metavar(ctx), record[1] if record else ""))
    return tuple(out)


def click_sections(cmd: click.Command, ctx: click.Context) -> list[roff.Section]:
    """DESCRIPTION and OPTIONS, and for a group, COMMANDS with each one's usage and options."""
    text = "\n\n".join(filter(None, [inspect.cleandoc(cmd.help or ""), cmd.epilog]))
    out = [roff.Section("Description", text), roff.Section("Options", items=options(cmd, ctx))]
    if isinstance(cmd, click.Group):
        subs = []
        for name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, name)
            sub_ctx = context(sub, name, ctx)
            subs.append(roff.Section(name, inspect.cleandoc(sub.help or ""), options(sub, sub_ctx),
                                     usage=(f"{ctx.info_name} {name}", " ".join(sub.collect_usage_pieces(sub_ctx)))))
        out.append(roff.Section("Commands", subsections=tuple(subs)))
    return out


def click_page(name: str, cmd: click.Command, see_also: tuple[str, ...], extra: list[roff.Section] = ()
               ) -> roff.Page:
    ctx = context(cmd, name)
    synopsis = ((name, " ".join(cmd.collect_usage_pieces(ctx))),)
    if isinstance(cmd, click.Group):
        synopsis += tuple((f"{name} {sub}", " ".join(cmd.get_command(ctx, sub).collect_usage_pieces(
            context(cmd.get_command(ctx, sub), sub, ctx)))) for sub in cmd.list_commands(ctx))
    return roff.Page(name, summary(cmd.help or name), synopsis, (*click_sections(cmd, ctx), *extra), see_also,
                     SOURCE)


def flags(table: Table, name: str) -> tuple[str, ...]:
    """An option's spellings in a Slurm table: `-c`, `--cpus-per-task`."""
    for long, _, short in table:
        if long == name:
            return tuple(f for f in (short and "-" + short, "--" + long) if f)
    raise KeyError(name)


def spelled(table: Table, names: set[str] | list[str]) -> str:
    """Options as a man page lists them, in the table's order, each with its second names:
    `-M`/`--cluster`/`--clusters`, `--federation`, ..."""
    wanted, groups = set(names), {}  # one group per short letter: an option and its second names
    for name, _, short in table:
        if (name or "-" + short) in wanted:
            spellings = groups.setdefault(short or name, [f"-{short}"] if short else [])
            spellings += [f"--{name}"] if name else []
    return ", ".join("/".join(f"`{s}`" for s in spellings) for spellings in groups.values())


def slurm_help_items(table: Table, help_text: str) -> list[roff.Item]:
    """--help (and --usage) and -V/--version, as each Slurm name's table spells them."""
    names = {n for n, _, _ in table}
    helps = tuple(f for n in ("help", "usage") if n in names for f in flags(table, n))
    return [roff.Item(tuple(dict.fromkeys(helps)), None, help_text),
            roff.Item(flags(table, "version"), None, slurm_argv.VERSION_HELP)]


def mbatch_items(table: Table, names: set[str] | frozenset[str]) -> list[roff.Item]:
    """Job options a Slurm name shares with mbatch: its spellings, mbatch's words for what they do."""
    words = {key: (is_flag, text) for _, key, is_flag, text in mbatch.OPTIONS}
    words |= {opt.dest: (True, opt.help) for opt in mbatch.COMMAND.options if opt.dest in ("parsable", "wait")}
    return [roff.Item(flags(table, name), None if words[name][0] else "VALUE", words[name][1])
            for name, _, _ in table if name in names]


def help_page(name: str, text: str) -> tuple[roff.Usage, str]:
    """A Slurm name's --help text: its usage line, and the rest, the description."""
    first, _, rest = text.strip().partition("\n")
    usage = first.split(":", 1)[1].strip() if first.lower().startswith("usage:") else first
    return (name, usage.removeprefix(name).strip()), rest.strip()


def other_options(table: Table, acted: set[str], refused: set[str]) -> roff.Section:
    """What the table holds beyond the options above: accepted in silence, or refused by name."""
    keys = [n or "-" + s for n, _, s in table]
    quiet = [k for k in keys if k not in acted and k not in refused]
    text = f"Accepted, changing nothing here: {spelled(table, quiet)}."
    if refused:
        text += f"\n\nRefused with `error: OPTION is not supported by Melon`: {spelled(table, refused)}."
    return roff.Section("Other Slurm options", text)


def slurm_command_page(name: str, command: slurm_argv.SlurmCommand) -> roff.Page:
    acted = command.acted | slurm_argv.HELP_NAMES | {"version"}
    return click_page(name, command.click(), see_also(name), [other_options(command.table, acted, command.refused)])


def prose_page(name: str, help_text: str, sections: list[roff.Section]) -> roff.Page:
    """A page whose command prints its --help by hand: that text's usage line and prose, then `sections`."""
    usage, text = help_page(name, help_text)
    return roff.Page(name, SUMMARIES[name], (usage,), (roff.Section("Description", text), *sections),
                     see_also(name), SOURCE)


def sbatch_page() -> roff.Page:
    items = [*mbatch_items(SBATCH_OPTIONS, sbatch.ACTED_ON | {"parsable", "wait"}),
             *(roff.Item(flags(SBATCH_OPTIONS, n), None, words) for n, words in sbatch.OWN_OPTIONS.items()),
             *slurm_help_items(SBATCH_OPTIONS, "Print the help and exit.")]
    return prose_page("sbatch", sbatch.HELP, [roff.Section("Options", items=tuple(items))])


def srun_page() -> roff.Page:
    items = [*mbatch_items(SRUN_OPTIONS, srun.JOB_OPTIONS), *slurm_help_items(SRUN_OPTIONS, "Print the help and exit.")]
    return prose_page("srun", srun.HELP, [roff.Section(
        "Options", "Outside a job these shape the job srun submits, as mbatch's do; inside one, srun reads the "
                   "task options named above.", tuple(items))])


def salloc_page() -> roff.Page:
    own = {"no-shell": "Allocate, say so, and return; the allocation holds until scancel or its time limit.",
           "immediate": "Give up (and withdraw the request) unless it is granted at once, or within SECONDS."}
    items = [*mbatch_items(SALLOC_OPTIONS, salloc.ACTED_ON),
             *(roff.Item(flags(SALLOC_OPTIONS, n), None, words) for n, words in own.items()),
             *slurm_help_items(SALLOC_OPTIONS, "Print the help and exit.")]
    return prose_page("salloc", salloc.HELP, [roff.Section("Options", items=tuple(items))])


def sattach_page() -> roff.Page:
    own = {"quiet": "No line of sattach's own (the attached line).",
           "pty": "Accepted: every step sattach reaches has a terminal.",
           "label": "Accepted; a terminal's output has no task labels."}
    items = [*(roff.Item(flags(tables.SATTACH, n), None, words) for n, words in own.items()),
             *slurm_help_items(tables.SATTACH, "Print the help and exit.")]
    refused = roff.Section("Other Slurm options", "Refused with `error: OPTION is not supported by Melon`: "
                           + spelled(tables.SATTACH, list(sattach.UNSUPPORTED)) + ".")
    return prose_page("sattach", sattach.HELP, [roff.Section("Options", items=tuple(items)), refused])


def prose_command_page(name: str, module, table: Table) -> roff.Page:
    """A prose command's page: its help, and the help and version options of its Slurm table."""
    return prose_page(name, module.HELP, [roff.Section("Options", items=tuple(
        slurm_help_items(table, "Print the help and exit.")))])


def scontrol_page() -> roff.Page:
    items = [*(roff.Item(flags(tables.SCONTROL, n), None, words) for n, words in scontrol.OWN_OPTIONS.items()),
             *slurm_help_items(tables.SCONTROL, "Print the usage and exit.")]
    acted = {*scontrol.OWN_OPTIONS, *slurm_argv.HELP_NAMES, "version"}
    return prose_page("scontrol", scontrol.HELP, [roff.Section("Options", items=tuple(items)),
                                                  other_options(tables.SCONTROL, acted, set(scontrol.REFUSED))])


def melon_slurm_page() -> roff.Page:
    _, text = help_page(env.PROG, env.HELP)
    items = (roff.Item(("-h", "--help"), None, "Print the help and exit."),
             roff.Item(("--version",), None, VERSION_HELP))
    return roff.Page(env.PROG, SUMMARIES[env.PROG], ((env.PROG, "env"),),
                     (roff.Section("Description", text), roff.Section("Options", items=items)), see_also(env.PROG),
                     SOURCE)


def see_also(name: str) -> tuple[str, ...]:
    """Melon's pages for Melon's commands (melon-slurm's adds Slurm's names); for a Slurm name, its
    Melon twin, melon-slurm and the other Slurm names."""
    if name in MIRRORS:
        return tuple(dict.fromkeys([MIRRORS[name], env.PROG, *(n for n in MIRRORS if n != name)]))
    return tuple(n for n in (*MELON, env.PROG, *(MIRRORS if name == env.PROG else ())) if n != name)


def pages() -> dict[str, str]:
    """Every page's path under the repository and its text."""
    out = {os.path.join(MELON_DIR, f"{name}.1"): roff.render(click_page(name, make(), see_also(name)))
           for name, make in MELON.items()}
    out[os.path.join(MELON_DIR, f"{env.PROG}.1")] = roff.render(melon_slurm_page())
    slurm = {name: slurm_command_page(name, command) for name, command in SLURM_COMMANDS.items()}
    slurm |= {"sbatch": sbatch_page(), "srun": srun_page(), "scontrol": scontrol_page(), "salloc": salloc_page(),
              "sattach": sattach_page(), "sprio": prose_command_page("sprio", sprio, tables.SPRIO),
              "sshare": prose_command_page("sshare", sshare, tables.SSHARE),
              "sacctmgr": prose_command_page("sacctmgr", sacctmgr, tables.SACCTMGR)}
    out |= {os.path.join(SLURM_DIR, f"{name}.1"): roff.render(page) for name, page in sorted(slurm.items())}
    return out


def stale(root: str = REPO) -> list[str]:
    """Pages under `root` that differ from their definitions, are missing, or name no command."""
    wanted = pages()
    found = {os.path.join(d, f) for d in (MELON_DIR, SLURM_DIR) if os.path.isdir(os.path.join(root, d))
             for f in os.listdir(os.path.join(root, d)) if f.endswith(".1")}
    out = found - set(wanted)
    for path, text in wanted.items():
        try:
            with open(os.path.join(root, path)) as f:
                if f.read() == text:
                    continue
        except FileNotFoundError:
            pass
        out.add(path)
    return sorted(out)


def write(root: str = REPO) -> None:
    """Rewrite every page and remove those that name no command."""
    wanted = pages()
    for directory in (MELON_DIR, SLURM_DIR):
        os.makedirs(os.path.join(root, directory), exist_ok=True)
    for path in stale(root):
        if path not in wanted:
            os.remove(os.path.join(root, path))
    for path, text in wanted.items():
        with open(os.path.join(root, path), "w") as f:
            f.write(text)


def main(argv: list[str]) -> int:
    if argv == ["--check"]:
        differ = stale()
        for path in differ:
            sys.stderr.write(f"gen_man: {path} differs from its command's definition; run `make man`\n")
        return 1 if differ else 0
    if argv:
        sys.stderr.write("usage: python scripts/gen_man.py [--check]\n")
        return 2
    write()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

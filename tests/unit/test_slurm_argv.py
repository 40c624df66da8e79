"""Slurm's names read their command lines as Slurm's commands do: glibc getopt_long's messages,
then `Try "PROG --help" for more information`, exit 1 (the `case '?'` after getopt_long in
src/squeue/opts.c, src/sinfo/opts.c, src/sacct/options.c, src/scancel/opt.c and
src/scontrol/scontrol.c), `-V` as print_slurm_version (src/common/proc_args.c); never a
rich-click box with exit 2. Nothing here reaches melond: each line fails or exits first."""
from __future__ import annotations

import importlib

import pytest

from melond.spec.getopt import GetoptError, getopt_long, make_grammar
from melond.spec.slurm_options import SAME_OPTION, SBATCH_OPTIONS

NAMES = ("squeue", "sinfo", "sacct", "scancel", "scontrol", "sbatch", "srun", "sdiag")


def run(capsys, prog: str, *argv: str) -> tuple[int, str, str]:
    main = importlib.import_module(f"melon_cli.slurm.{prog}").main
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
        raise SystemExit(0)
    out = capsys.readouterr()
    return exc.value.code or 0, out.out, out.err


def hint(prog: str) -> str:
    return f'Try "{prog} --help" for more information\n'


@pytest.mark.parametrize("prog", NAMES)
def test_unknown_options_in_glibcs_words_then_slurms_hint(capsys, prog: str) -> None:
    assert run(capsys, prog, "--bogus") == (1, "", f"{prog}: unrecognized option '--bogus'\n" + hint(prog))
    assert run(capsys, prog, "--bogus=1") == (1, "", f"{prog}: unrecognized option '--bogus=1'\n" + hint(prog))
    assert run(capsys, prog, "-y") == (1, "", f"{prog}: invalid option -- 'y'\n" + hint(prog))


@pytest.mark.parametrize("prog", NAMES)
def test_version_is_print_slurm_versions(capsys, prog: str) -> None:
    assert run(capsys, prog, "-V") == (0, "slurm 23.11.0\n", "")
    assert run(capsys, prog, "--version") == (0, "slurm 23.11.0\n", "")


@pytest.mark.parametrize(("prog", "argv", "problem"), [
    ("squeue", ["-o"], "option requires an argument -- 'o'"),
    ("squeue", ["--format"], "option '--format' requires an argument"),
    ("squeue", ["--noheader=1"], "option '--noheader' doesn't allow an argument"),
    ("sinfo", ["-p"], "option requires an argument -- 'p'"),
    ("sinfo", ["--Node=yes"], "option '--Node' doesn't allow an argument"),
    ("sacct", ["-S"], "option requires an argument -- 'S'"),
    ("sacct", ["--parsable", "-Z"], "invalid option -- 'Z'"),
    ("sacct", ["-nu", "root", "-o", "Account%256", "|", "tail", "-1"], "invalid option -- '1'"),  # snakemake's
    ("scancel", ["-h"], "invalid option -- 'h'"),  # scancel has --help only
    ("scancel", ["12", "--signal"], "option '--signal' requires an argument"),
    ("scontrol", ["-u"], "option requires an argument -- 'u'"),
    ("scontrol", ["show", "job", "--h"], "option '--h' is ambiguous; possibilities: '--help' '--hide'"),
    ("sdiag", ["-M"], "option requires an argument -- 'M'"),
    ("sdiag", ["--sort-by"], "option '--sort-by' is ambiguous; possibilities: '--sort-by-id' '--sort-by-time' "
                             "'--sort-by-time2'"),
    # glibc lists the first match and each other option, in squeue's table order: --sibling is --sib
    ("squeue", ["--s=1"], "option '--s=1' is ambiguous; possibilities: '--sib' '--sort' '--start' '--steps' "
                          "'--states'"),
    ("squeue", ["--job=12", "--us"], "option '--us' is ambiguous; possibilities: '--usage' '--user' '--users'"),
])
def test_malformed_options(capsys, prog: str, argv: list[str], problem: str) -> None:
    assert run(capsys, prog, *argv) == (1, "", f"{prog}: {problem}\n" + hint(prog))


@pytest.mark.parametrize(("prog", "argv", "error"), [
    ("squeue", ["12"], "squeue: error: Unrecognized option: 12\n"),  # src/squeue/opts.c, after getopt_long
    ("sacct", ["-X", "|", "tail"], "sacct: error: Unknown arguments:\nsacct: error:  |\nsacct: error:  tail\n"),
    ("squeue", ["-A", "proj"], "squeue: error: --accounts is not supported by Melon\n"),
    ("squeue", ["-U", "proj"], "squeue: error: -U is not supported by Melon\n"),
    ("sinfo", ["--states=idle"], "sinfo: error: --states is not supported by Melon\n"),
    ("scontrol", ["--uid", "0", "show", "job"], "scontrol: error: --uid is not supported by Melon\n"),
    ("sdiag", ["-r"], "sdiag: error: --reset is not supported by Melon\n"),  # its figures count from the start
    ("sdiag", ["--json"], "sdiag: error: --json is not supported by Melon\n"),
])
def test_what_melon_cannot_do_is_refused_by_name(capsys, prog: str, argv: list[str], error: str) -> None:
    assert run(capsys, prog, *argv) == (1, "", error)


@pytest.mark.parametrize(("prog", "argv"), [
    ("squeue", ["--help"]), ("squeue", ["--usage"]), ("sinfo", ["--help"]), ("sacct", ["-h"]), ("sacct", ["-U"]),
    ("scancel", ["--usage"]), ("scontrol", ["-h"]), ("sbatch", ["--help"]), ("srun", ["--usage"]),
    ("sdiag", ["-h"]), ("sdiag", ["--usage"]),
])
def test_help_is_no_error(capsys, prog: str, argv: list[str]) -> None:
    code, out, err = run(capsys, prog, *argv)
    assert (code, err) == (0, "") and prog in out and "usage" in out.lower()


def test_permuting_getopt_takes_options_after_operands() -> None:
    grammar = make_grammar((("signal", 1, "s"), ("quiet", 0, "Q")), strict=True)
    assert getopt_long(["12", "-Q", "13", "--signal", "USR1", "--", "-s"], grammar, permute=True) == \
        ([("quiet", None), ("signal", "USR1")], ["12", "13", "-s"])
    assert getopt_long(["12", "-Q"], grammar) == ([], ["12", "-Q"])  # sbatch's `+`: the script ends options


def test_ambiguity_lists_what_glibc_lists() -> None:
    """The first match and every match that is another option; not a second name of the first."""
    grammar = make_grammar(SBATCH_OPTIONS, strict=False, same=SAME_OPTION)
    with pytest.raises(GetoptError, match=r"^option '--ntasks-per' is ambiguous; possibilities: '--ntasks-per-core' "
                                          r"'--ntasks-per-gpu' '--ntasks-per-node' '--ntasks-per-socket' "
                                          r"'--ntasks-per-tres'$"):
        getopt_long(["--ntasks-per"], grammar)

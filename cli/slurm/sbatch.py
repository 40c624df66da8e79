"""`sbatch`, as tools run it: Slurm's whole option table on the command line, the script from a
file, standard input, `/dev/stdin` or `--wrap`, and exactly `Submitted batch job N` on stdout.

What tools rely on (SLURM-CLIENTS.md): the script is read before sbatch returns (dask deletes it,
submitit moves it); nothing on stderr on success (Nextflow merges it into what it parses); errors
as `sbatch: error: ...` with exit 1, a refused submission as `Batch job submission failed: ...`
(snakemake looks for those words). Options Melon does not act on are accepted and recorded with
the job; a warning is printed only where skipping one changes what the job gets (`--nodes=2`,
`--gres=gpu:1`), never for `--account`, `--qos`, `--nodes=1` and the like.
"""
from __future__ import annotations

import os
import sys
import time

from melon_cli.slurm.argv import read_argv
from melond.errors import MelonError
from melond.spec.getopt import make_grammar
from melond.spec.slurm_options import GRES_OPTIONS, SAME_OPTION, SBATCH_OPTIONS, SLURM_PREFIX, changes_job, unsupported

PROG = "sbatch"
ARGV_GRAMMAR = make_grammar(SBATCH_OPTIONS, strict=True, same=SAME_OPTION)
#: Slurm options Melon acts on, by their sbatch name (the same names Melon's own options use).
ACTED_ON = frozenset({
    "cpus-per-task", "mem", "mem-per-cpu", "time", "job-name", "output", "error", "chdir", "export", "nodelist",
    "exclude", "partition", "begin", "hold", "dependency", "array", "requeue", "no-requeue", "signal", "wrap",
    "mail-type", "mail-user", "nodes", "ntasks", "ntasks-per-node", "exclusive", "distribution",
}) | GRES_OPTIONS
CLIENT_ONLY = frozenset({"parsable", "wait", "quiet", "test-only", "help", "usage", "version", "verbose"})
#: What sbatch itself does beyond the options it shares with mbatch (its manual page lists these).
OWN_OPTIONS = {"quiet": "Print no warnings.", "test-only": "Check the job and say whether it is valid; submit nothing."}
HELP = """Usage: sbatch [OPTIONS(0)...] [ : [OPTIONS(N)...]] script(0) [args(0)...]

Melon's sbatch: Slurm's options, backed by melond. Acted on: -N/--nodes, -n/--ntasks, --ntasks-per-node,
-c/--cpus-per-task, --exclusive, -m/--distribution, --mem, --mem-per-cpu, --gres, -G/--gpus,
--gpus-per-node, --gpus-per-task, --cpus-per-gpu, --mem-per-gpu,
-t/--time, -J/--job-name, -o/--output, -e/--error, -D/--chdir, --export, -w/--nodelist, -x/--exclude,
-p/--partition, -b/--begin, -H/--hold, -d/--dependency, -a/--array, --requeue, --no-requeue,
--signal, --wrap, --parsable, -W/--wait, -Q/--quiet, --test-only. Every other sbatch option is
accepted and recorded with the job. See `mbatch --help` for what each does.
"""


def main(argv: list[str] | None = None) -> None:
    found, rest = read_argv(PROG, ARGV_GRAMMAR, argv, HELP)
    try:
        _submit(found, rest)
    except MelonError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"cannot reach melond: {exc.strerror or exc}; is melond running? (MELON_API sets where)")


def _submit(found: list[tuple[str, str | None]], rest: list[str]) -> None:
    from melond.spec.request import build_request, client_options, current_umask

    cli: dict[str, str | bool] = {}
    notes: list[str] = []
    for name, value in found:
        name = SAME_OPTION.get(name, name)
        if name in ACTED_ON:
            cli[name] = True if value is None else value
            if name in ("requeue", "no-requeue"):
                cli.pop("no-requeue" if name == "requeue" else "requeue", None)  # the last one wins, as in sbatch
        elif name not in CLIENT_ONLY:
            cli[SLURM_PREFIX + name] = value or ""
            if changes_job(name, value):
                notes.append(unsupported(name, value))
    flags = {name for name, _ in found if name in CLIENT_ONLY}
    script_text, script_path, args = _script(rest, "wrap" in cli)
    request, warnings = build_request(
        script_text=script_text, script_path=script_path, script_args=args, cli=cli, environ=os.environ,
        cwd=os.getcwd(), submit_host=os.uname().nodename, user="", now=time.time(), sbatch=True,
        umask=current_umask())
    flags |= client_options(script_text)  # `#SBATCH --parsable` and `--wait` count, as in sbatch
    quiet = "quiet" in flags
    if not quiet:
        for note in [*notes, *warnings]:
            sys.stderr.write(f"{PROG}: warning: {note}\n")
    if "test-only" in flags:
        sys.stderr.write(f"{PROG}: --test-only: the job is valid; nothing was submitted\n")
        return
    c = _client()
    try:
        reply = c.call("POST", "/jobs", request)
    except MelonError as exc:
        raise MelonError(f"Batch job submission failed: {exc}") from None
    if not quiet:
        for note in reply.get("warnings", []):
            sys.stderr.write(f"{PROG}: warning: {note}\n")
    first = reply["job_ids"][0]
    sys.stdout.write(f"{first}\n" if "parsable" in flags else f"Submitted batch job {first}\n")
    sys.stdout.flush()
    if "wait" in flags:
        from melon_cli.mbatch import _wait
        sys.exit(_wait(c, reply["job_ids"]))


def _script(rest: list[str], wrap: bool) -> tuple[str | None, str | None, list[str]]:
    """The script's text, its path (None for standard input) and its arguments, read now."""
    if wrap:
        if rest:
            raise MelonError("Script arguments not permitted with --wrap option")
        return None, None, []
    if not rest:
        return sys.stdin.buffer.read().decode("utf-8", "surrogateescape"), None, []
    path, args = rest[0], rest[1:]
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8", "surrogateescape")
    except OSError:
        raise MelonError(f"Unable to open file {path}") from None
    return text, os.path.abspath(path), args


def _client():
    from melon_cli.common import client
    return client(os.environ.get("MELON_API") or None)


def _fail(message: str) -> None:
    sys.stderr.write(f"{PROG}: error: {message}\n")
    sys.exit(1)

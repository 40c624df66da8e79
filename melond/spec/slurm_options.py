"""Option tables (sbatch's, srun's and Melon's own), read by getopt_long (melond/spec/getopt.py).

Slurm hands directive tokens to glibc ``getopt_long``, which accepts any unique prefix of a long
option name. Whether ``--ntask`` is an abbreviation or an ambiguity therefore depends on every
option sbatch knows, including the ones Melon ignores, so the whole table lives here as data.

Source: ``common_options[]`` in ``src/common/slurm_opt.c`` (SchedMD/slurm, stored copy at commit
002a907694609f82564ff36dd8a050d12a57c702), filtered as ``slurm_option_table_create()`` filters
it for sbatch: an entry is present when it has a name and a ``set_func`` or ``set_func_sbatch``.
``oom-kill-step`` (added in Slurm 25.05, documented in sbatch(1)) is appended. The corpus rules
(conformance/sbatch/RULES.md) counted 120 entries at a later master snapshot; entries missing
here only matter for an abbreviation that would also prefix one of them.
"""

from __future__ import annotations

from types import MappingProxyType

from melond.spec.getopt import NO_ARG, OPTIONAL, REQUIRED, make_grammar

TYPE_CHECKING = False  # the idiom type checkers know: `typing` costs every command ~5 ms to import
if TYPE_CHECKING:
    from typing import Mapping

#: (long name, has_arg, short letter or ""), in Slurm's ``common_options[]`` order. The order is
#: what builds sbatch's short-option string (see ``SHORT_OPTION_STRING``).
SBATCH_OPTIONS: tuple[tuple[str, int, str], ...] = (
    ("account", REQUIRED, "A"),
    ("acctg-freq", REQUIRED, ""),
    ("array", REQUIRED, "a"),
    ("autocomplete", REQUIRED, ""),
    ("batch", REQUIRED, ""),
    ("begin", REQUIRED, "b"),
    ("bb", REQUIRED, ""),
    ("bbf", REQUIRED, ""),
    ("cluster-constraint", REQUIRED, ""),
    ("chdir", REQUIRED, "D"),
    ("cluster", REQUIRED, ""),
    ("clusters", REQUIRED, "M"),
    ("comment", REQUIRED, ""),
    ("container", REQUIRED, ""),
    ("container-id", REQUIRED, ""),
    ("context", REQUIRED, ""),
    ("contiguous", NO_ARG, ""),
    ("constraint", REQUIRED, "C"),
    ("core-spec", REQUIRED, "S"),
    ("cores-per-socket", REQUIRED, ""),
    ("cpu-freq", REQUIRED, ""),
    ("cpus-per-gpu", REQUIRED, ""),
    ("cpus-per-task", REQUIRED, "c"),
    ("deadline", REQUIRED, ""),
    ("delay-boot", REQUIRED, ""),
    ("dependency", REQUIRED, "d"),
    ("distribution", REQUIRED, "m"),
    ("error", REQUIRED, "e"),
    ("exclude", REQUIRED, "x"),
    ("exclusive", OPTIONAL, ""),
    ("export", REQUIRED, ""),
    ("export-file", REQUIRED, ""),
    ("extra", REQUIRED, ""),
    ("extra-node-info", REQUIRED, "B"),
    ("get-user-env", OPTIONAL, ""),
    ("gid", REQUIRED, ""),
    ("gpu-bind", REQUIRED, ""),
    ("gpu-freq", REQUIRED, ""),
    ("gpus", REQUIRED, "G"),
    ("gpus-per-node", REQUIRED, ""),
    ("gpus-per-socket", REQUIRED, ""),
    ("gpus-per-task", REQUIRED, ""),
    ("gres", REQUIRED, ""),
    ("gres-flags", REQUIRED, ""),
    ("help", NO_ARG, "h"),
    ("hint", REQUIRED, ""),
    ("hold", NO_ARG, "H"),
    ("ignore-pbs", NO_ARG, ""),
    ("input", REQUIRED, "i"),
    ("job-name", REQUIRED, "J"),
    ("kill-on-invalid-dep", REQUIRED, ""),
    ("licenses", REQUIRED, "L"),
    ("mail-type", REQUIRED, ""),
    ("mail-user", REQUIRED, ""),
    ("mcs-label", REQUIRED, ""),
    ("mem", REQUIRED, ""),
    ("mem-bind", REQUIRED, ""),
    ("mem-per-cpu", REQUIRED, ""),
    ("mem-per-gpu", REQUIRED, ""),
    ("mincpus", REQUIRED, ""),
    ("network", REQUIRED, ""),
    ("nice", OPTIONAL, ""),
    ("no-kill", OPTIONAL, "k"),
    ("no-requeue", NO_ARG, ""),
    ("nodefile", REQUIRED, "F"),
    ("nodelist", REQUIRED, "w"),
    ("nodes", REQUIRED, "N"),
    ("ntasks", REQUIRED, "n"),
    ("ntasks-per-core", REQUIRED, ""),
    ("ntasks-per-gpu", REQUIRED, ""),
    ("ntasks-per-node", REQUIRED, ""),
    ("ntasks-per-socket", REQUIRED, ""),
    ("ntasks-per-tres", REQUIRED, ""),
    ("oom-kill-step", OPTIONAL, ""),
    ("open-mode", REQUIRED, ""),
    ("output", REQUIRED, "o"),
    ("overcommit", NO_ARG, "O"),
    ("oversubscribe", NO_ARG, "s"),
    ("parsable", NO_ARG, ""),
    ("partition", REQUIRED, "p"),
    ("prefer", REQUIRED, ""),
    ("priority", REQUIRED, ""),
    ("profile", REQUIRED, ""),
    ("propagate", OPTIONAL, ""),
    ("qos", REQUIRED, "q"),
    ("quiet", NO_ARG, "Q"),
    ("reboot", NO_ARG, ""),
    ("requeue", NO_ARG, ""),
    ("reservation", REQUIRED, ""),
    ("segment", REQUIRED, ""),
    ("signal", REQUIRED, ""),
    ("sockets-per-node", REQUIRED, ""),
    ("spread-job", NO_ARG, ""),
    ("stepmgr", NO_ARG, ""),
    ("switches", REQUIRED, ""),
    ("tasks-per-node", REQUIRED, ""),
    ("test-only", NO_ARG, ""),
    ("thread-spec", REQUIRED, ""),
    ("threads-per-core", REQUIRED, ""),
    ("time", REQUIRED, "t"),
    ("time-min", REQUIRED, ""),
    ("tmp", REQUIRED, ""),
    ("tres-bind", REQUIRED, ""),
    ("tres-per-task", REQUIRED, ""),
    ("uid", REQUIRED, ""),
    ("use-min-nodes", NO_ARG, ""),
    ("verbose", NO_ARG, "v"),
    ("version", NO_ARG, "V"),
    ("usage", NO_ARG, ""),
    ("wait", NO_ARG, "W"),
    ("wait-all-nodes", REQUIRED, ""),
    ("wckey", REQUIRED, ""),
    ("wrap", REQUIRED, ""),
)

#: Entries that share getopt's ``val`` with another entry. glibc does not call a prefix ambiguous
#: when every candidate is the same option, so these name the option they stand for.
SAME_OPTION: dict[str, str] = {"tasks-per-node": "ntasks-per-node", "cpu_bind": "cpu-bind"}

#: The short-option string sbatch passes to getopt_long (as quoted in RULES.md R3).
SHORT_OPTION_STRING = "+A:a:b:D:M:C:S:c:d:m:e:x:B:G:hHi:J:L:k::F:w:N:n:o:Osp:q:Qt:vVW"

#: Melon's own options: the grammar of ``#MBATCH`` lines and of the mbatch command line.
#: (long name, has_arg, short letter or ""). ``-m`` is memory here, unlike in ``#SBATCH`` lines,
#: and ``-a`` is not ``--array`` (on the command line it is ``--api-endpoint``).
MELON_OPTIONS: tuple[tuple[str, int, str], ...] = (
    ("cpus-per-task", REQUIRED, "c"),
    ("gres", REQUIRED, ""),
    ("gpus", REQUIRED, "G"),
    ("gpus-per-node", REQUIRED, ""),
    ("gpus-per-task", REQUIRED, ""),
    ("cpus-per-gpu", REQUIRED, ""),
    ("mem-per-gpu", REQUIRED, ""),
    ("nodes", REQUIRED, "N"),
    ("ntasks", REQUIRED, "n"),
    ("ntasks-per-node", REQUIRED, ""),
    ("tasks-per-node", REQUIRED, ""),
    ("exclusive", OPTIONAL, ""),
    ("distribution", REQUIRED, ""),
    ("mem", REQUIRED, "m"),
    ("mem-per-cpu", REQUIRED, ""),
    ("time", REQUIRED, "t"),
    ("time-max", REQUIRED, ""),
    ("extend-auto", REQUIRED, ""),
    ("job-name", REQUIRED, "J"),
    ("output", REQUIRED, "o"),
    ("error", REQUIRED, "e"),
    ("chdir", REQUIRED, "D"),
    ("export", REQUIRED, ""),
    ("nodelist", REQUIRED, "w"),
    ("exclude", REQUIRED, "x"),
    ("partition", REQUIRED, "p"),
    ("begin", REQUIRED, "b"),
    ("hold", NO_ARG, "H"),
    ("dependency", REQUIRED, "d"),
    ("array", REQUIRED, ""),
    ("requeue", NO_ARG, ""),
    ("no-requeue", NO_ARG, ""),
    ("signal", REQUIRED, ""),
    ("mail-type", REQUIRED, ""),
    ("mail-user", REQUIRED, ""),
    ("wrap", REQUIRED, ""),
    ("parsable", NO_ARG, ""),
    ("wait", NO_ARG, "W"),
)

#: Generic resource options every submitting command acts on (melond.spec.request reads them).
GRES_OPTIONS = frozenset({"gres", "gpus", "gpus-per-node", "gpus-per-task", "cpus-per-gpu", "mem-per-gpu"})

#: Why Melon skips a Slurm option, where more can be said than that it does.
UNSUPPORTED_WHY: Mapping[str, str] = MappingProxyType({})


SLURM_GRAMMAR = make_grammar(SBATCH_OPTIONS, strict=False, same=SAME_OPTION)
MELON_GRAMMAR = make_grammar(MELON_OPTIONS, strict=True, same=SAME_OPTION)


#: Slurm options that change nothing for a Melon job, whatever their value: accepted and recorded
#: with the job, never warned about (tools such as submitit, Parsl and snakemake pass them always).
#: Slurm options that get no warning: acted on from the job's Slurm options (account, qos, nice:
#: melond.sched.sharing and priority), or changing nothing a job gets.
QUIET_OPTIONS = frozenset({
    "account", "acctg-freq", "cluster", "clusters", "comment", "get-user-env", "kill-on-invalid-dep",
    "no-kill", "open-mode", "priority", "nice", "profile", "propagate", "qos",
    "quiet", "verbose", "wckey", "export-file", "ignore-pbs", "parsable", "usage", "help", "version",
    # how a spanning job's nodes are chosen: recorded, and read from there by its shape (Job.shape)
    "spread-job", "use-min-nodes",
})


#: The setting key under which a Slurm option Melon does not act on is recorded ("slurm:account").
SLURM_PREFIX = "slurm:"


def unsupported(name: str, value: str | None) -> str:
    """The warning for a Slurm option Melon skips."""
    shown = f"--{name}" if value is None else f"--{name}={value}"
    return f"{shown} ignored: {UNSUPPORTED_WHY.get(name, 'not supported by Melon')}"


def takes_value(name: str) -> bool:
    """Does this sbatch or srun option require a value (so an empty one means "not given")?"""
    return REQUIRED in (SLURM_GRAMMAR.longs.get(name, (NO_ARG,))[0], SRUN_LONGS.get(name, NO_ARG))


def changes_job(name: str, value: str | None) -> bool:
    """Would skipping this Slurm option change what the job gets? Only then is it worth a warning.
    An empty value (`--gres=`) is no request at all, as Slurm takes it (melond.spec.request)."""
    if name in QUIET_OPTIONS or (value == "" and takes_value(name)):
        return False
    return True


#: srun's options, as far as scripts and tools use them (srun(1); its short-option string is
#: "+A:b:B:c:C:d:D:e:Eg:G:hHi:I::jJ:kK::lL:m:M:n:N:o:Op:q:QsS:t:T:uvVw:W:x:XZ"). Inside a job
#: Melon's srun acts on the task options; the allocation ones matter only outside a job, where
#: srun submits one.
#: salloc's table: sbatch's, less what only a batch script has, plus its own.
_BATCH_ONLY = frozenset({"wait", "wrap", "array", "output", "error", "input", "open-mode", "parsable", "test-only",
                         "wait-all-nodes", "ignore-pbs", "export-file", "requeue", "no-requeue", "kill-on-invalid-dep"})
SALLOC_OPTIONS: tuple[tuple[str, int, str], ...] = tuple(o for o in SBATCH_OPTIONS if o[0] not in _BATCH_ONLY) + (
    ("no-shell", NO_ARG, ""), ("immediate", OPTIONAL, "I"), ("wait-all-nodes", REQUIRED, "W"), ("bell", NO_ARG, ""),
    ("no-bell", NO_ARG, ""), ("kill-command", OPTIONAL, "K"),
)

SRUN_OPTIONS: tuple[tuple[str, int, str], ...] = (
    ("account", REQUIRED, "A"), ("begin", REQUIRED, "b"), ("extra-node-info", REQUIRED, "B"),
    ("cpus-per-task", REQUIRED, "c"), ("constraint", REQUIRED, "C"), ("dependency", REQUIRED, "d"),
    ("chdir", REQUIRED, "D"), ("error", REQUIRED, "e"), ("preserve-env", NO_ARG, "E"),
    ("gpus", REQUIRED, "G"), ("help", NO_ARG, "h"), ("hold", NO_ARG, "H"), ("input", REQUIRED, "i"),
    ("immediate", OPTIONAL, "I"), ("join", NO_ARG, "j"), ("job-name", REQUIRED, "J"), ("no-kill", NO_ARG, "k"),
    ("kill-on-bad-exit", OPTIONAL, "K"), ("label", NO_ARG, "l"), ("licenses", REQUIRED, "L"),
    ("distribution", REQUIRED, "m"), ("clusters", REQUIRED, "M"), ("ntasks", REQUIRED, "n"),
    ("nodes", REQUIRED, "N"), ("output", REQUIRED, "o"), ("overcommit", NO_ARG, "O"),
    ("partition", REQUIRED, "p"), ("qos", REQUIRED, "q"), ("quiet", NO_ARG, "Q"), ("oversubscribe", NO_ARG, "s"),
    ("core-spec", REQUIRED, "S"), ("time", REQUIRED, "t"), ("threads", REQUIRED, "T"), ("unbuffered", NO_ARG, "u"),
    ("verbose", NO_ARG, "v"), ("version", NO_ARG, "V"), ("nodelist", REQUIRED, "w"), ("wait", REQUIRED, "W"),
    ("exclude", REQUIRED, "x"), ("disable-status", NO_ARG, "X"), ("no-allocate", NO_ARG, "Z"),
    ("accel-bind", REQUIRED, ""), ("acctg-freq", REQUIRED, ""), ("comment", REQUIRED, ""),
    ("cpu-bind", REQUIRED, ""), ("cpu_bind", REQUIRED, ""), ("cpu-freq", REQUIRED, ""), ("cpus-per-gpu", REQUIRED, ""),
    ("deadline", REQUIRED, ""), ("exact", NO_ARG, ""), ("exclusive", OPTIONAL, ""), ("export", REQUIRED, ""),
    ("gpu-bind", REQUIRED, ""), ("gpus-per-node", REQUIRED, ""), ("gpus-per-task", REQUIRED, ""),
    ("gres", REQUIRED, ""), ("gres-flags", REQUIRED, ""), ("het-group", REQUIRED, ""), ("hint", REQUIRED, ""),
    ("mail-type", REQUIRED, ""), ("mail-user", REQUIRED, ""), ("mem", REQUIRED, ""), ("mem-bind", REQUIRED, ""),
    ("mem-per-cpu", REQUIRED, ""), ("mem-per-gpu", REQUIRED, ""), ("mincpus", REQUIRED, ""),
    ("mpi", REQUIRED, ""), ("multi-prog", NO_ARG, ""), ("network", REQUIRED, ""), ("nice", OPTIONAL, ""),
    ("ntasks-per-core", REQUIRED, ""), ("ntasks-per-gpu", REQUIRED, ""), ("ntasks-per-node", REQUIRED, ""),
    ("ntasks-per-socket", REQUIRED, ""), ("open-mode", REQUIRED, ""), ("overlap", NO_ARG, ""),
    ("prolog", REQUIRED, ""), ("epilog", REQUIRED, ""), ("propagate", OPTIONAL, ""), ("pty", NO_ARG, ""),
    ("reservation", REQUIRED, ""), ("signal", REQUIRED, ""), ("slurmd-debug", REQUIRED, ""),
    ("sockets-per-node", REQUIRED, ""), ("cores-per-socket", REQUIRED, ""), ("threads-per-core", REQUIRED, ""),
    ("task-epilog", REQUIRED, ""), ("task-prolog", REQUIRED, ""), ("test-only", NO_ARG, ""),
    ("time-min", REQUIRED, ""), ("tmp", REQUIRED, ""), ("tres-per-task", REQUIRED, ""), ("usage", NO_ARG, ""),
    ("wckey", REQUIRED, ""), ("relative", REQUIRED, "r"),
)
SRUN_GRAMMAR = make_grammar(SRUN_OPTIONS, strict=True, same=SAME_OPTION)
SRUN_LONGS = {name: has_arg for name, has_arg, _ in SRUN_OPTIONS}

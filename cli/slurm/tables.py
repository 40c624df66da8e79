"""The option tables of Slurm's commands, as their getopt_long calls see them (Slurm 23.11).

Each is (long name, has_arg, short letter) in the order of the command's `long_options[]`: glibc
resolves an abbreviation against the whole table and lists an ambiguity's possibilities in table
order, so the order and the options Melon does not act on matter too. An entry with the short
letter of an earlier one is that option under a second name (one `val`); a name of "" is a short
option with no long name. Sources: src/squeue/opts.c, src/sinfo/opts.c, src/sacct/options.c,
src/scancel/opt.c, src/scontrol/scontrol.c, src/sdiag/opts.c, src/sattach/opt.c (parse_command_line /
_opt_args / main).
"""
from __future__ import annotations

from melond.spec.getopt import NO_ARG as N
from melond.spec.getopt import OPTIONAL as O
from melond.spec.getopt import REQUIRED as R

SQUEUE = (
    ("autocomplete", R, ""), ("accounts", R, "A"), ("all", N, "a"), ("array", N, "r"), ("Format", R, "O"),
    ("format", R, "o"), ("federation", N, ""), ("help", N, ""), ("hide", N, ""), ("iterate", R, "i"),
    ("jobs", O, "j"), ("local", N, ""), ("long", N, "l"), ("licenses", R, "L"), ("cluster", R, "M"),
    ("clusters", R, "M"), ("me", N, ""), ("name", R, "n"), ("noconvert", N, ""), ("node", R, "w"),
    ("nodes", R, "w"), ("nodelist", R, "w"), ("noheader", N, "h"), ("partitions", R, "p"), ("priority", N, "P"),
    ("qos", R, "q"), ("reservation", R, "R"), ("sib", N, ""), ("sibling", N, ""), ("sort", R, "S"),
    ("start", N, ""), ("steps", O, "s"), ("states", R, "t"), ("usage", N, ""), ("user", R, "u"), ("users", R, "u"),
    ("verbose", N, "v"), ("version", N, "V"), ("json", O, ""), ("yaml", O, ""),
    ("", R, "U"),  # "A:ahi:j::lL:n:M:O:o:p:Pq:R:rs::S:t:u:U:vVw:": -U, the old -A
)

SINFO = (
    ("autocomplete", R, ""), ("all", N, "a"), ("dead", N, "d"), ("exact", N, "e"), ("federation", N, ""),
    ("future", N, "F"), ("help", N, ""), ("hide", N, ""), ("iterate", R, "i"), ("local", N, ""), ("long", N, "l"),
    ("cluster", R, "M"), ("clusters", R, "M"), ("nodes", R, "n"), ("noconvert", N, ""), ("noheader", N, "h"),
    ("Node", N, "N"), ("format", R, "o"), ("Format", R, "O"), ("partition", R, "p"), ("responding", N, "r"),
    ("list-reasons", N, "R"), ("summarize", N, "s"), ("sort", R, "S"), ("states", R, "t"),
    ("reservation", N, "T"), ("usage", N, ""), ("verbose", N, "v"), ("version", N, "V"), ("json", O, ""),
    ("yaml", O, ""),
)

SACCT = (
    ("autocomplete", R, ""), ("allusers", N, "a"), ("accounts", R, "A"), ("allocations", N, "X"), ("array", N, ""),
    ("brief", N, "b"), ("batch-script", N, "B"), ("completion", N, "c"), ("constraints", R, "C"),
    ("delimiter", R, ""), ("duplicates", N, "D"), ("federation", N, ""), ("helpformat", N, "e"),
    ("help-fields", N, "e"), ("endtime", R, "E"), ("env-vars", N, ""), ("file", R, "f"), ("flags", R, "F"),
    ("gid", R, "g"), ("group", R, "g"), ("help", N, "h"), ("local", N, ""), ("name", R, ""), ("nnodes", R, "i"),
    ("ncpus", R, "I"), ("jobs", R, "j"), ("timelimit-min", R, "k"), ("timelimit-max", R, "K"), ("long", N, "l"),
    ("allclusters", N, "L"), ("cluster", R, "M"), ("clusters", R, "M"), ("nodelist", R, "N"),
    ("noconvert", N, ""), ("units", R, ""), ("noheader", N, "n"), ("fields", R, "o"), ("format", R, "o"),
    ("parsable", N, "p"), ("parsable2", N, "P"), ("qos", R, "q"), ("partition", R, "r"), ("reason", R, "R"),
    ("state", R, "s"), ("starttime", R, "S"), ("truncate", N, "T"), ("uid", R, "u"), ("use-local-uid", N, ""),
    ("usage", N, "U"), ("user", R, "u"), ("verbose", N, "v"), ("version", N, "V"), ("wckeys", R, "W"),
    ("whole-hetjob", O, ""), ("associations", R, "x"), ("json", O, ""), ("yaml", O, ""),
    ("", N, "t"),  # "...Ttu:UvVW:x:X": -t, the old -X
)

SCANCEL = (
    ("autocomplete", R, ""), ("account", R, "A"), ("batch", N, "b"), ("ctld", N, ""), ("cron", N, "c"),
    ("full", N, "f"), ("help", N, ""), ("hurry", N, "H"), ("interactive", N, "i"), ("cluster", R, "M"),
    ("clusters", R, "M"), ("jobname", R, "n"), ("me", N, ""), ("name", R, "n"), ("nodelist", R, "w"),
    ("partition", R, "p"), ("qos", R, "q"), ("quiet", N, "Q"), ("reservation", R, "R"), ("sibling", R, ""),
    ("signal", R, "s"), ("state", R, "t"), ("usage", N, ""), ("user", R, "u"), ("verbose", N, "v"),
    ("version", N, "V"), ("wckey", R, ""),
)

SCONTROL = (
    ("autocomplete", R, ""), ("all", N, "a"), ("cluster", R, "M"), ("clusters", R, "M"), ("details", N, "d"),
    ("federation", N, ""), ("future", N, "F"), ("help", N, "h"), ("hide", N, ""), ("json", O, ""),
    ("local", N, ""), ("oneliner", N, "o"), ("quiet", N, "Q"), ("sibling", N, ""), ("uid", R, "u"),
    ("usage", N, "h"), ("verbose", N, "v"), ("version", N, "V"), ("yaml", O, ""),
)

SDIAG = (
    ("autocomplete", R, ""), ("all", N, "a"), ("help", N, "h"), ("reset", N, "r"), ("sort-by-id", N, "i"),
    ("cluster", R, "M"), ("clusters", R, "M"), ("sort-by-time", N, "t"), ("sort-by-time2", N, "T"),
    ("usage", N, ""), ("version", N, "V"), ("json", O, ""), ("yaml", O, ""),
)

#: Second names of one option that share no short letter (squeue's OPT_LONG_SIBLING).
SAME = {"sibling": "sib"}

SATTACH = (  # src/sattach/opt.c
    ("error-filter", R, ""), ("help", N, "h"), ("input-filter", R, ""), ("label", N, "l"), ("layout", N, ""),
    ("output-filter", R, ""), ("pty", N, ""), ("quiet", N, "Q"), ("usage", N, "u"), ("verbose", N, "v"),
    ("version", N, "V"),
)

SPRIO = (  # src/sprio/opts.c
    ("noheader", N, "h"), ("jobs", O, "j"), ("long", N, "l"), ("cluster", R, "M"), ("clusters", R, "M"),
    ("norm", N, "n"), ("format", R, "o"), ("sort", R, "S"), ("partition", R, "p"), ("user", R, "u"),
    ("verbose", N, "v"), ("version", N, "V"), ("weights", N, "w"), ("help", N, ""), ("usage", N, ""),
)

SSHARE = (  # src/sshare/sshare.c
    ("accounts", R, "A"), ("all", N, "a"), ("helpformat", N, ""), ("long", N, "l"), ("partition", N, "m"),
    ("cluster", R, "M"), ("clusters", R, "M"), ("noheader", N, "n"), ("format", R, "o"), ("parsable", N, "p"),
    ("parsable2", N, "P"), ("users", R, "u"), ("Users", N, "U"), ("verbose", N, "v"), ("version", N, "V"),
    ("help", N, "h"), ("usage", N, ""), ("json", O, ""), ("yaml", O, ""),
)

SACCTMGR = (  # src/sacctmgr/sacctmgr.c
    ("help", N, "h"), ("immediate", N, "i"), ("noheader", N, "n"), ("oneliner", N, "o"), ("parsable", N, "p"),
    ("parsable2", N, "P"), ("quiet", N, "Q"), ("readonly", N, "r"), ("associations", N, "s"), ("verbose", N, "v"),
    ("version", N, "V"), ("usage", N, ""), ("json", O, ""), ("yaml", O, ""),
)

"""Tests for melond.directives: scanning (R1/R2), getopt emulation (R3), precedence, the request."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from melond.spec.directives import MELON_OPTIONS, DirectiveError, options_from_scan, scan_script
from melond.spec.request import build_request, client_options, dry_run_view, options_from_env
from melond.spec.slurm_options import SBATCH_OPTIONS, SHORT_OPTION_STRING
from melond.spec.timespec import SpecError

MIB = 1024 * 1024
ENV = {"HOME": "/home/ada", "PATH": "/usr/bin", "LANG": "C.UTF-8"}


def build(script: str | None = "#!/bin/bash\ntrue\n", *, cli: dict | None = None, env: dict | None = None,
          path: str | None = "job.sh", args: list[str] | None = None, cwd: str = "/home/ada/work",
          now: float = 1_700_000_000.0, sbatch: bool = False) -> tuple[dict, list[str]]:
    return build_request(script_text=script, script_path=path, script_args=args or [], cli=cli or {},
                         environ=ENV if env is None else env, cwd=cwd, submit_host="login1", user="ada", now=now,
                         sbatch=sbatch)


def script(*directives: str, body: str = "srun hostname\n") -> str:
    return "#!/bin/bash\n" + "".join(line + "\n" for line in directives) + body


def options(text: str) -> tuple[dict, list[str]]:
    settings, warnings = options_from_scan(scan_script(text))
    return {key: setting.value for key, setting in settings.items()}, warnings


# ---------------------------------------------------------------- the option tables


def test_sbatch_table_rebuilds_sbatchs_short_option_string() -> None:
    built = "+" + "".join(short + {0: "", 1: ":", 2: "::"}[has_arg] for _, has_arg, short in SBATCH_OPTIONS if short)
    assert built == SHORT_OPTION_STRING


def test_every_melon_option_is_a_slurm_option_but_elastic_limits() -> None:
    slurm = {name for name, _, _ in SBATCH_OPTIONS}
    assert {name for name, _, _ in MELON_OPTIONS} - slurm == {"time-max", "extend-auto"}  # Melon's own


def test_elastic_limits() -> None:
    request, _ = build(script("#MBATCH --time=1:00:00 --time-max=12:00:00 --extend-auto=30:00"))
    assert (request["time_limit"], request["time_max"], request["extend_step"]) == (3600, 43200, 1800)
    request, _ = build(None, cli={"wrap": "true", "time": "10:00", "time-max": "1:00:00"})
    assert request["extend_step"] == 600  # the step defaults to the first limit
    for cli, message in (({"time": "10:00", "extend-auto": "5:00"}, "needs --time-max"),
                         ({"time-max": "1:00:00"}, "needs a --time"),
                         ({"time": "1:00:00", "time-max": "30:00"}, "must be above --time"),
                         ({"time": "1:00", "time-max": "2:00", "extend-auto": "0"}, "not 0")):
        with pytest.raises(DirectiveError, match=message):
            build(None, cli={"wrap": "true", **cli})
    _, warnings = build(script("#SBATCH --time-max=2:00:00"))
    assert any("unrecognized option '--time-max'" in w for w in warnings)  # a Slurm line knows no such option


# ---------------------------------------------------------------- R1: which lines are directives


def test_directive_block_ends_at_first_command() -> None:
    text = "#!/bin/bash\n\n# a comment\n#SBATCH --time=5\n   \n#MBATCH -c 2\necho hi\n#SBATCH --time=9\n#MBATCH -c 8\n"
    scan = scan_script(text)
    assert [(d.line, d.prefix, d.tokens) for d in scan.directives] == [
        (4, "#SBATCH", ("--time=5",)), (6, "#MBATCH", ("-c", "2"))]
    assert scan.first_command_line == 7
    assert scan.ignored == ((8, "#SBATCH --time=9"), (9, "#MBATCH -c 8"))
    assert any("line 8" in w and "#SBATCH --time=9" in w for w in scan.warnings)
    assert any("line 9" in w and "#MBATCH -c 8" in w for w in scan.warnings)


@pytest.mark.parametrize("line", ["##SBATCH -c 4", "###SBATCH -c 4", "# SBATCH -c 4", " #SBATCH -c 4",
                                  "\t#SBATCH -c 4", "#BATCH -c 4", "#SBTACH -c 4", "#sbatch -c 4", "#!/bin/sh"])
def test_lookalikes_are_comments_that_keep_the_block_open(line: str) -> None:
    scan = scan_script(f"#!/bin/bash\n{line}\n#SBATCH -J kept\nrun\n")
    assert [d.line for d in scan.directives] == [3]
    assert scan.first_command_line == 4


def test_no_command_at_all() -> None:
    scan = scan_script("#!/bin/bash\n#SBATCH -J x\n")
    assert scan.first_command_line is None and not scan.ignored


def test_text_right_after_magic_word_is_tokenised() -> None:
    assert scan_script("#SBATCHfoo\n").directives[0].tokens == ("foo",)


def test_old_slurm_spelling_is_read_with_a_warning() -> None:
    values, warnings = options(script("#SLURM -J old"))
    assert values["job-name"] == "old"
    assert any("#SLURM" in w for w in warnings)


def test_command_lines_inside_heredocs_still_end_the_block() -> None:
    text = "#!/bin/bash\ncat <<EOF\n#SBATCH -J inner\nEOF\n"
    scan = scan_script(text)
    assert not scan.directives and scan.ignored == ((3, "#SBATCH -J inner"),)


# ---------------------------------------------------------------- R2: tokenising a line


@pytest.mark.parametrize(
    ("line", "tokens"),
    [
        ("#SBATCH --nodes=1 --ntasks=1", ("--nodes=1", "--ntasks=1")),
        ("#SBATCH\t--time=5", ("--time=5",)),
        ("#SBATCH   -J   x", ("-J", "x")),
        ('#SBATCH -J "Hello World HDF5"', ("-J", "Hello World HDF5")),
        ("#SBATCH -p 'short'", ("-p", "short")),
        ("#SBATCH --time=1:00:00 # one hour", ("--time=1:00:00",)),
        ("#SBATCH --output=a#b", ("--output=a",)),
        ("#SBATCH # only a comment", ()),
        ("#SBATCH -J ¯\\_(ツ)_/¯", ("-J", "¯_(ツ)_/¯")),
        ("#SBATCH -J a\\ b", ("-J", "a b")),
        ('#SBATCH -J "a # b"', ("-J", "a # b")),
        ("#SBATCH -J \\#x", ("-J", "#x")),
        ("#SBATCH -J $JOBNAME", ("-J", "$JOBNAME")),
        ('#SBATCH --export=""', ("--export=",)),
    ],
)
def test_tokenising(line: str, tokens: tuple[str, ...]) -> None:
    assert scan_script(line + "\n").directives[0].tokens == tokens


def test_unmatched_quote_skips_the_sbatch_line_with_a_warning() -> None:
    scan = scan_script('#SBATCH -J "open\n#SBATCH -c 2\n')
    assert [d.line for d in scan.directives] == [2]
    assert any("line 1" in w and "unmatched" in w for w in scan.warnings)


@pytest.mark.parametrize("line", ['#MBATCH -J "open', "#MBATCH : -c 2"])
def test_unreadable_mbatch_line_is_an_error(line: str) -> None:
    with pytest.raises(DirectiveError, match="line 1"):
        scan_script(line + "\n")


def test_hetjob_separator_in_sbatch_line_is_warned() -> None:
    scan = scan_script("#SBATCH : -c 2\n")
    assert not scan.directives and any("heterogeneous" in w for w in scan.warnings)


# ---------------------------------------------------------------- R3: getopt_long emulation


@pytest.mark.parametrize(
    ("line", "key", "value"),
    [
        ("#SBATCH --out=x.log", "output", "x.log"),  # unique prefix (file 057)
        ("#SBATCH --job-nam=abc", "job-name", "abc"),  # file 048
        ("#SBATCH --time 10", "time", "10"),
        ("#SBATCH --dep afterok:1", "dependency", "afterok:1"),
        ("#SBATCH --mem=4G", "mem", "4G"),  # exact wins over --mem-per-cpu / --mem-bind
        ("#SBATCH --mem-per-c=2G", "mem-per-cpu", "2G"),
        ("#SBATCH -c4", "cpus-per-task", "4"),
        ("#SBATCH -c 4", "cpus-per-task", "4"),
        ("#SBATCH -t8:00:00", "time", "8:00:00"),
        ("#SBATCH -a 1-10%2", "array", "1-10%2"),  # -a is --array in #SBATCH
        ("#SBATCH --arr=0-3", "array", "0-3"),
        ("#SBATCH -H", "hold", True),
        ("#SBATCH --requeue", "requeue", True),
        ("#SBATCH --no-requeue", "requeue", False),
        ("#SBATCH --no-r", "requeue", False),
        ("#MBATCH -m 4G", "mem", "4G"),  # -m is memory in #MBATCH
        ("#MBATCH --job-n=x", "job-name", "x"),  # a unique prefix (--tim is not: --time, --time-max)
        ("#MBATCH -c2", "cpus-per-task", "2"),
    ],
)
def test_option_forms(line: str, key: str, value: object) -> None:
    values, _ = options(script(line))
    assert values[key] == value


def test_short_option_cluster() -> None:
    values, _ = options(script("#SBATCH -Hc3"))
    assert values == {"hold": True, "cpus-per-task": "3"}


def test_last_one_wins() -> None:
    values, _ = options(script("#SBATCH -o first.out", "#SBATCH --output=second.out -o third.out"))
    assert values["output"] == "third.out"


def test_argument_may_come_from_the_next_directive_line() -> None:
    values, _ = options(script("#SBATCH -J", "#SBATCH myname"))
    assert values["job-name"] == "myname"


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("#SBATCH --ntask=4", "ambiguous"),  # file 056
        ("#SBATCH --cpus=4", "ambiguous"),
        ("#SBATCH --tim=5", "ambiguous (time, time-min)"),
        ("#SBATCH --mem-per=2G", "ambiguous (mem-per-cpu, mem-per-gpu)"),
        ("#SBATCH --share", "unrecognized option '--share'"),  # file 058
        ("#SBATCH -p [SPECIFY PARTITION NAME]", "stray word"),  # file 055
        ("#SBATCH --hold=yes", "doesn't allow an argument"),
        ("#SBATCH -J", "requires an argument"),
        ("#SBATCH -y", "invalid option -- 'y'"),
        ("#SBATCH --", "stray word"),
        ("#SBATCH --nodes", "requires an argument"),
        ("#SBATCH --gpu-bind=closest --account=x --qos=y", "--gpu-bind=closest ignored"),
        ("#SBATCH -m", "requires an argument -- 'm'"),  # -m keeps Slurm's meaning (--distribution)
        ("#SBATCH --wrap=true", "no effect in a script"),
    ],
)
def test_sbatch_lines_are_lenient(line: str, fragment: str) -> None:
    values, warnings = options(script(line))
    assert any(fragment in w and "line 2" in w for w in warnings), warnings
    assert "mem" not in values and "cpus-per-task" not in values


@pytest.mark.parametrize(("lines", "expected"), [
    (["#SBATCH --parsable"], {"parsable"}),
    (["#SBATCH -W", "#MBATCH --parsable"], {"parsable", "wait"}),
    (["#SBATCH --wait --quiet"], {"wait"}),  # --quiet is of sbatch's early pass: a script's is ignored
    (["#SBATCH --verbose --help --version --usage"], set()),
    ([], set()),
])
def test_client_options_come_from_the_script_as_in_sbatch(lines: list[str], expected: set[str]) -> None:
    """slurm_process_option (src/common/slurm_opt.c) reads a script's --parsable and --wait and skips
    the early-pass options (--quiet, --verbose, --help, --usage, --version) in silence."""
    text = script(*lines)
    assert client_options(text) == expected
    _, warnings = build(text, sbatch=True)
    assert warnings == []


def test_lenient_parsing_keeps_reading_after_a_problem() -> None:
    values, warnings = options(script("#SBATCH --mail-user=<email address> -c 2 --share --time=5 nonsense -J x"))
    assert values == {"cpus-per-task": "2", "time": "5", "job-name": "x", "mail-user": "<email"}
    assert len([w for w in warnings if "sbatch would refuse" in w]) == 3


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("#MBATCH --nodes", "requires an argument"),
        ("#MBATCH --me=4G", "ambiguous"),
        ("#MBATCH stray", "stray word"),
        ("#MBATCH -a 1-3", "--api-endpoint"),
        ("#MBATCH -g 1", "invalid option -- 'g'"),
        ("#MBATCH --hold=1", "doesn't allow an argument"),
        ("#MBATCH --time", "requires an argument"),
    ],
)
def test_mbatch_lines_are_strict(line: str, fragment: str) -> None:
    with pytest.raises(DirectiveError) as info:
        options(script(line))
    assert "line 2" in str(info.value) and fragment in str(info.value)


# ---------------------------------------------------------------- environment and precedence


def test_environment_variables() -> None:
    env = {"SBATCH_TIMELIMIT": "10", "MBATCH_TIMELIMIT": "20", "SBATCH_JOB_NAME": "s", "SBATCH_MEM_PER_NODE": "1G",
           "SBATCH_HOLD": "1", "SBATCH_NO_REQUEUE": "", "SLURM_TIMELIMIT": "99", "MELON_JOB_NAME": "inner",
           "SLURM_JOB_NAME": "inner", "SBATCH_CPUS_PER_TASK": "3"}
    assert options_from_env(env) == {"time": "20", "job-name": "s", "mem": "1G", "hold": True, "requeue": False,
                                     "cpus-per-task": "3"}


@pytest.mark.parametrize(("raw", "held"), [("", True), ("yes", True), ("1", True), ("0", False), ("no", False)])
def test_environment_flags_follow_slurm(raw: str, held: bool) -> None:
    request, _ = build(script("#SBATCH --hold"), env={"SBATCH_HOLD": raw})
    assert request["hold"] is held


def test_precedence_command_line_then_environment_then_script() -> None:
    text = script("#SBATCH -t 1", "#SBATCH -J from-script", "#SBATCH -p scriptq")
    env = {"SBATCH_TIMELIMIT": "2", "SBATCH_JOB_NAME": "from-env"}
    request, _ = build(text, cli={"time": "3"}, env=env)
    assert (request["time_limit"], request["name"], request["partition"]) == (180, "from-env", "scriptq")


def test_mem_with_mem_per_cpu_in_one_source_warns_and_uses_mem() -> None:
    request, warnings = build(script("#SBATCH --mem-per-cpu=500M", "#SBATCH --mem=2G", "#SBATCH -c 4"))
    assert request["memory"] == 2048 * MIB and request["mem_per_cpu"] is False
    assert any("--mem-per-cpu" in w and "uses --mem" in w for w in warnings)


def test_mem_per_cpu_is_multiplied_by_cpus() -> None:
    request, warnings = build(script("#SBATCH --mem=8G"), cli={"mem_per_cpu": "1G", "cpus_per_task": "3"})
    assert request["memory"] == 3 * 1024 * MIB and request["mem_per_cpu"] is True
    assert not warnings


def test_mem_zero_means_whole_node() -> None:
    assert build(script("#SBATCH --mem=0"))[0]["memory"] == 0


# ---------------------------------------------------------------- --export and the job's environment


@pytest.mark.parametrize(
    ("export", "expected"),
    [
        ("ALL", ENV),
        ("all", ENV),
        ("NONE", {}),
        ("ALL,A=1,B=2", {**ENV, "A": "1", "B": "2"}),
        ("A=1,B=x=y", {"A": "1", "B": "x=y"}),
        ("HOME,A=1", {"HOME": "/home/ada", "A": "1"}),
    ],
)
def test_export_forms(export: str, expected: dict) -> None:
    request, _ = build(cli={"export": export})
    assert request["environment"] == expected and request["export"] == export


def test_export_default_is_all() -> None:
    request, _ = build()
    assert request["export"] == "ALL" and request["environment"] == ENV


def test_export_of_unset_variable_warns() -> None:
    _, warnings = build(cli={"export": "NOPE"})
    assert any("NOPE" in w for w in warnings)


def test_export_bad_name_names_the_line() -> None:
    with pytest.raises(DirectiveError, match=r"^line 2: --export=1A=2: "):
        build(script("#SBATCH --export=1A=2"))


# ---------------------------------------------------------------- --wrap and whole-script checks


def test_wrap() -> None:
    request, _ = build(None, cli={"wrap": "echo hi"}, path=None)
    assert request["script"] == "#!/bin/sh\necho hi\n" and request["name"] == "wrap"


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"cli": {"wrap": "echo"}}, "not both"),
        ({"script": None, "path": None, "cli": {"wrap": "echo"}, "args": ["x"]}, "arguments"),
        ({"script": None, "path": None, "cli": {"wrap": "  "}}, "--wrap needs"),
        ({"script": None, "path": None}, "no job script"),
        ({"script": ""}, "job.sh: the script is empty"),
        ({"script": " \n\t\n"}, "job.sh: the script is empty"),
        ({"script": "#!/bin/sh\necho\0x\n"}, "job.sh: contains NUL"),
        ({"script": "#!/bin/sh\r\necho\r\n"}, "dos2unix job.sh"),
    ],
)
def test_refused_scripts(kwargs: dict, fragment: str) -> None:
    with pytest.raises(DirectiveError, match=fragment):
        build(**kwargs)


def test_missing_shebang_is_only_a_warning() -> None:
    request, warnings = build(":\necho hi\n")
    assert request["script"] == ":\necho hi\n"
    assert any("does not start with #!" in w for w in warnings)


# ---------------------------------------------------------------- value errors name option and source


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"script": script("#SBATCH", "#SBATCH --time=abc")}, r"^line 3: --time=abc: invalid time limit"),
        ({"cli": {"time": "abc"}}, r"^--time=abc \(command line\): invalid time limit"),
        ({"env": {"SBATCH_TIMELIMIT": "abc"}}, r"^--time=abc \(environment variable SBATCH_TIMELIMIT\)"),
        ({"cli": {"cpus_per_task": "0"}}, r"--cpus-per-task=0 .*1 or more"),
        ({"cli": {"cpus_per_task": "-2"}}, r"--cpus-per-task=-2"),
        ({"cli": {"cpus_per_task": "1.5"}}, r"--cpus-per-task=1.5"),
        ({"script": script("#MBATCH -m 1.5G")}, r"^line 2: --mem=1.5G: invalid memory size"),
        ({"cli": {"begin": "someday"}}, r"--begin=someday"),
        ({"cli": {"nodelist": "n[3-1]"}}, r"--nodelist=n\[3-1\]"),
        ({"cli": {"signal": "NOPE"}}, r"--signal=NOPE"),
        ({"cli": {"time": ""}}, r"--time= \(command line\)"),  # Slurm: "Invalid --time specification"
        ({"script": script("#SBATCH --mem=")}, r"^line 2: --mem="),  # Slurm: "Invalid --mem specification"
        ({"cli": {"output": ""}}, r"--output= \(command line\): give a file name"),
        ({"cli": {"time": True}}, r"--time \(command line\) needs a value"),
        ({"cli": {"gpu-bind": "closest"}}, r"unknown option --gpu-bind"),
        ({"cli": {"gres": "gpu:a:b:c"}}, r"--gres=gpu:a:b:c \(command line\): Invalid generic resource"),
        ({"cli": {"gpus": "gpu:x:1"}}, r"--gpus=gpu:x:1 \(command line\): invalid GPU count"),
        ({"cli": {"gres": "gpu:1", "gpus-per-node": "1"}}, r"--gres=gpu:... and --gpus-per-node both"),
        ({"cli": {"gpus": "3", "ntasks": "2", "nodes": "2"}}, r"--gpus=gpu:3 cannot be shared equally"),
        ({"cli": {"cpus-per-gpu": "2"}}, r"--cpus-per-gpu needs GPUs"),
        ({"cli": {"gpus": "1", "mem": "1G", "mem-per-gpu": "2G"}}, r"--mem and --mem-per-gpu \(command line\) both"),
        ({"script": script("#SBATCH --nodes=2-1")}, r"^line 2: --nodes=2-1: invalid number of nodes \(-N 2-1\)"),
        ({"script": script("#SBATCH -n 0")}, r"^line 2: --ntasks=0: invalid number of tasks '0'"),
        ({"script": script("#SBATCH -m blocky")}, r"^line 2: --distribution=blocky: invalid distribution"),
        ({"cli": {"ntasks": "four"}}, r"--ntasks=four \(command line\): invalid number of tasks"),
        ({"cli": {"distribution": "arbitrary"}}, r"task count required for arbitrary distribution"),
        ({"cli": {"requeue": True, "no_requeue": True}}, r"contradict"),
    ],
)
def test_value_errors(kwargs: dict, pattern: str) -> None:
    with pytest.raises(DirectiveError, match=pattern):
        build(**kwargs)


def test_an_empty_value_is_slurms_not_given() -> None:
    """`--partition=` and the like: Slurm stores "" and then treats it as no value (see
    _EMPTY_IS_UNSET in melond/spec/request.py for where in Slurm's source), so the default applies,
    hiding what the environment or the script gave."""
    text = script("#SBATCH -p gpu -J named -w n1 -x n2 --dependency=afterok:1 --mail-user=x@y",
                  "#SBATCH --account=proj --qos=high --wckey=w --comment=c --gres=",
                  "#SBATCH --array= --export=")
    cli = {"partition": "", "job_name": "", "nodelist": "", "exclude": "", "dependency": "", "mail_user": "",
           "chdir": "", "slurm:account": "", "slurm:qos": "", "slurm:reservation": ""}
    request, warnings = build(text, cli=cli, env={**ENV, "SBATCH_PARTITION": "env-part"}, sbatch=True)
    assert (request["partition"], request["name"], request["nodelist"], request["exclude"]) == (None, "job.sh", [], [])
    assert (request["dependency"], request["mail_user"], request["chdir"], request["array"]) == \
        (None, None, "/home/ada/work", None)
    assert (request["account"], request["comment"], request["output"]) == (None, "c", "slurm-%j.out")
    assert request["slurm_options"] == {"wckey": "w"}
    assert (request["export"], request["environment"]) == ("NONE", {})
    assert warnings == []  # an empty --gres= asks for nothing: no "ignored" warning
    request, _ = build(script("#SBATCH -p gpu"), env={**ENV, "SBATCH_PARTITION": ""})
    assert request["partition"] is None


def test_value_errors_keep_the_spec_error_as_cause() -> None:
    with pytest.raises(DirectiveError) as info:
        build(cli={"time": "abc"})
    assert isinstance(info.value.__cause__, SpecError)


# ---------------------------------------------------------------- the request and the dry-run view


def test_defaults() -> None:
    request, warnings = build(path="jobs/train.sh", args=["a", "b"])
    assert request == {
        "script": "#!/bin/bash\ntrue\n", "script_path": "jobs/train.sh", "script_args": ["a", "b"],
        "name": "train.sh", "cpus": 1, "nodes": None, "ntasks": None, "ntasks_per_node": None, "exclusive": False,
        "distribution": None, "memory": None, "mem_per_cpu": False, "time_limit": None,
        "output": "melon-%j.out", "error": None, "chdir": "/home/ada/work", "environment": ENV, "export": "ALL",
        "nodelist": [], "exclude": [], "partition": None, "begin": None, "hold": False, "dependency": None,
        "array": None, "requeue": False, "signal": None, "mail_type": [], "mail_user": None, "submit_host": "login1",
        "submit_dir": "/home/ada/work", "umask": None, "comment": None, "account": None, "slurm_options": {},
        "gres": None, "gpus_per_task": None,
    }
    assert warnings == []


def test_slurm_options_melon_does_not_act_on_are_recorded_and_warned_only_where_they_matter() -> None:
    text = script("#SBATCH --account=proj1 --comment rule_a --qos=high --spread-job --wckey=submitit",
                  "#SBATCH --open-mode=append --gpu-bind=closest --hint=nomultithread")
    request, warnings = build(text, cli={"slurm:qos": "low"})
    assert request["account"] == "proj1" and request["comment"] == "rule_a"
    assert request["slurm_options"] == {"qos": "low", "spread-job": "", "wckey": "submitit",
                                        "open-mode": "append", "gpu-bind": "closest", "hint": "nomultithread"}
    assert [w.split(":")[0] + ": " + w.split(": ", 1)[1].split(" ignored")[0] for w in warnings] == [
        "line 3: --gpu-bind=closest", "line 3: --hint=nomultithread"]


@pytest.mark.parametrize(("lines", "expected", "warned"), [
    (["#SBATCH -n 8 -c 2"], {"nodes": None, "ntasks": 8, "cpus": 2}, []),
    (["#SBATCH -N 2"], {"nodes": [2, 2], "ntasks": None, "ntasks_per_node": None}, []),
    (["#SBATCH -N 1-3 -n 2"], {"nodes": [1, 2], "ntasks": 2}, []),  # max_nodes := min(max_nodes, ntasks)
    (["#SBATCH -N 4 -n 2"], {"nodes": [2, 2], "ntasks": 2}, ["can't run 2 processes on 4 nodes, setting nnodes to 2"]),
    (["#SBATCH --tasks-per-node=3 --exclusive"], {"ntasks_per_node": 3, "exclusive": True}, []),
    (["#SBATCH --exclusive=user -m cyclic:block"], {"exclusive": True, "distribution": "cyclic:block"}, []),
    (["#SBATCH -N 2k"], {"nodes": [2048, 2048]}, []),
])
def test_the_shape_options_mean_what_sbatch_makes_of_them(lines: list[str], expected: dict, warned: list) -> None:
    """_opt_verify in src/sbatch/opt.c (shared/SLURM-ALLOCATIONS.md §1.1): the request carries the
    shape as sbatch would send it, with sbatch's own warning where it changes one."""
    request, warnings = build(script(*lines))
    assert {key: request[key] for key in expected} == expected
    assert warnings == warned
    assert not request["slurm_options"]


def test_sbatch_defaults_are_slurms() -> None:
    assert build(None, cli={"wrap": "true"}, sbatch=True)[0]["output"] == "slurm-%j.out"
    assert build(None, cli={"wrap": "true", "array": "1-3"}, sbatch=True)[0]["output"] == "slurm-%A_%a.out"
    assert build(path=None, sbatch=True)[0]["name"] == "sbatch"
    with pytest.raises(DirectiveError, match="This does not look like a batch script"):
        build("echo no interpreter line\n", sbatch=True)


def test_full_request_is_json_able() -> None:
    text = script("#SBATCH -J train -c 4 --mem=16G -t 1-00:00:00 -o logs/%x-%j.out -e none",
                  "#SBATCH -D ../data -w node[1-2],node4 -x node3 -p gpu --begin=now+1hour",
                  "#SBATCH -H -d afterok:12 --array=0-9%2 --requeue --signal=B:USR1@60")
    request, warnings = build(text, now=1000.0)
    assert not warnings
    assert request["name"] == "train" and request["cpus"] == 4 and request["memory"] == 16 * 1024 * MIB
    assert request["time_limit"] == 86400 and request["output"] == "logs/%x-%j.out"
    assert request["error"] == "/dev/null" and request["chdir"] == "/home/ada/data"
    assert request["nodelist"] == ["node1", "node2", "node4"] and request["exclude"] == ["node3"]
    assert request["partition"] == "gpu" and request["begin"] == 4600.0 and request["hold"] is True
    assert request["dependency"] == "afterok:12" and request["array"] == "0-9%2" and request["requeue"] is True
    assert request["signal"] == "B:USR1@60"
    assert json.loads(json.dumps(request)) == request


def test_absolute_chdir_is_kept() -> None:
    assert build(cli={"chdir": "/scratch/x/"})[0]["chdir"] == "/scratch/x"


def test_unlimited_time_is_zero_in_request_and_null_in_view() -> None:
    request, warnings = build(script("#SBATCH --time=UNLIMITED"))
    assert request["time_limit"] == 0
    view = dry_run_view(request, warnings)
    assert view["time_limit"] is None


def test_dry_run_view_has_exactly_the_documented_keys() -> None:
    request, warnings = build(script("#SBATCH --nodes=4 -n 2 -t 0:05"), args=["x"])
    view = dry_run_view(request, warnings)
    assert set(view) == {"name", "cpus", "nodes", "ntasks", "ntasks_per_node", "memory", "time_limit", "output",
                         "error", "chdir", "array", "script_args", "warnings"}
    assert view["time_limit"] == 5 and view["script_args"] == ["x"] and view["warnings"] == warnings != []


def test_cli_client_keys_are_ignored() -> None:
    request, _ = build(cli={"parsable": True, "wait": True, "api_endpoint": "unix:/x", "hold": False, "time": None})
    assert request["hold"] is False and request["time_limit"] is None


# ---------------------------------------------------------------- properties


_LINES = st.one_of(
    st.text(max_size=40),
    st.builds(lambda prefix, body: prefix + body, st.sampled_from(["#SBATCH ", "#MBATCH ", "#SLURM ", "#SBATCH"]),
              st.text(alphabet=" -=abcdefghijklmnopqrstuvwxyzHJcmt0123456789:\"'\\#[],%", max_size=40)),
)


@given(st.lists(_LINES, max_size=12))
def test_scan_and_build_raise_only_directive_or_spec_errors(lines: list[str]) -> None:
    text = "\n".join(lines)
    try:
        options_from_scan(scan_script(text))
        request, warnings = build(text)
        dry_run_view(request, warnings)
    except (DirectiveError, SpecError):
        pass


@given(st.text())
def test_arbitrary_text_raises_only_directive_or_spec_errors(text: str) -> None:
    try:
        build("#!/bin/sh\n#SBATCH " + text)
        build(text)
    except (DirectiveError, SpecError):
        pass


@pytest.mark.parametrize(("cli", "expected"), [
    ({"gres": "gpu:2"}, {"gres": "gpu:2", "gpus_per_task": None, "cpus": 1}),
    ({"gres": "gpu:a100:1,license_x:2"}, {"gres": "gpu:a100:1,license_x:2", "gpus_per_task": None}),
    ({"gpus-per-node": "a100:2"}, {"gres": "gpu:a100:2"}),
    ({"gpus": "2"}, {"gres": "gpu:2", "gpus_per_task": None}),  # one node: all of them there
    ({"gpus": "4", "ntasks": "4"}, {"gres": None, "gpus_per_task": "gpu:1"}),  # else an equal share per task
    ({"gpus": "4", "nodes": "2"}, {"gres": "gpu:2", "gpus_per_task": None}),  # ... or per node
    ({"gpus-per-task": "1", "ntasks": "2", "cpus-per-gpu": "3"}, {"gpus_per_task": "gpu:1", "cpus": 3}),
    ({"gres": "gpu:4", "cpus-per-gpu": "2", "ntasks-per-node": "2"}, {"cpus": 4}),  # 8 CPUs on each node, 2 tasks
    ({"gres": "gpu:2", "mem-per-gpu": "10G"}, {"memory": 20 << 30, "mem_per_cpu": False}),
    ({"gpus-per-task": "2", "cpus-per-task": "4", "mem-per-gpu": "1G"}, {"memory": 2 << 30, "mem_per_cpu": True}),
    ({"gres": ""}, {"gres": None}),  # an empty value asks for nothing, as in Slurm
])
def test_generic_resource_options_become_per_node_and_per_task_requests(cli: dict, expected: dict) -> None:
    request, _ = build(cli=cli)
    assert {key: request[key] for key in expected} == expected

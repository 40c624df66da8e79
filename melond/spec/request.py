"""One job request from a script's directives, the environment and the command line.

Precedence: command line > `SBATCH_*`/`MBATCH_*` environment > script directives
(`melond.spec.directives` finds and parses those). Values are converted and checked here, so a
request that leaves mbatch is whole; melond admits it against the partition.
"""

from __future__ import annotations

import os
import posixpath
from types import MappingProxyType

from melond.spec.charclass import digits, shell_name, signed_digits
from melond.spec.directives import (
    CLIENT_OPTIONS,
    MELON_ARGS,
    DirectiveError,
    Setting,
    options_from_scan,
    scan_script,
)
from melond.spec.getopt import NO_ARG, OPTIONAL
from melond.spec.gres import Gres, format_gres, gpu_count, merge, parse_gpus, parse_gres
from melond.spec.notices import parse_mail_type
from melond.spec.shape import Shape, count, make_shape, parse_distribution, parse_nodes
from melond.spec.slurm_options import SLURM_PREFIX, takes_value
from melond.spec.timespec import (
    SpecError,
    expand_hostlist,
    parse_begin,
    parse_signal,
    parse_size_mib,
    parse_time_limit,
)

TYPE_CHECKING = False  # the idiom type checkers know: `typing` costs every command ~5 ms to import
if TYPE_CHECKING:
    from typing import Any, Callable, Mapping

DEFAULT_OUTPUT = "melon-%j.out"
SLURM_OUTPUT = ("slurm-%j.out", "slurm-%A_%a.out")  # sbatch's defaults: a job, an array's tasks
PROG = {False: "mbatch", True: "sbatch"}  # the default name of a job read from standard input
MIB = 1024 * 1024

# Command-line keys the CLI may pass along that concern the client, not the request.
_CLIENT_KEYS = frozenset({"api-endpoint", "parsable", "wait", "dry-run", "json"})

# Input variables read like options, as sbatch's INPUT ENVIRONMENT VARIABLES; MBATCH_* wins over
# SBATCH_*. Not MELON_* or SLURM_*: those are output variables set inside a running job, so a job
# that submits another job must not pass its own settings on by accident.
_ENV_OPTIONS: tuple[tuple[str, str], ...] = (
    ("TIMELIMIT", "time"),
    ("JOB_NAME", "job-name"),
    ("PARTITION", "partition"),
    ("MEM_PER_NODE", "mem"),
    ("MEM_PER_CPU", "mem-per-cpu"),
    ("EXPORT", "export"),
    ("ARRAY_INX", "array"),
    ("OUTPUT", "output"),
    ("ERROR", "error"),
    ("SIGNAL", "signal"),
    ("NO_REQUEUE", "no-requeue"),
    ("REQUEUE", "requeue"),
    ("DISTRIBUTION", "distribution"),
    ("EXCLUSIVE", "exclusive"),
    # Melon additions: sbatch itself reads neither variable.
    ("CPUS_PER_TASK", "cpus-per-task"),
    ("HOLD", "hold"),
)


# ---------------------------------------------------------------- environment and command line


def _env_flag(text: str) -> bool:
    """slurm_process_option's rule for a flag given by a variable: "", yes or a non-zero number."""
    if text == "" or text.lower() == "yes":
        return True
    return signed_digits(text, 18) and int(text) != 0


def _env_settings(environ: Mapping[str, str]) -> dict[str, Setting]:
    """Options set by SBATCH_*/MBATCH_* input variables, with the variable as origin."""
    settings: dict[str, Setting] = {}
    for suffix, key in _ENV_OPTIONS:
        variable = next((p + suffix for p in ("MBATCH_", "SBATCH_") if p + suffix in environ), None)
        if variable is None:
            continue
        raw, origin = environ[variable], f"environment variable {variable}"
        if MELON_ARGS[key] != NO_ARG:
            settings[key] = Setting(raw, origin)
        elif key not in ("requeue", "no-requeue"):
            settings[key] = Setting(_env_flag(raw), origin)
        elif _env_flag(raw):  # an unset-looking REQUEUE/NO_REQUEUE just leaves the default
            settings["requeue"] = Setting(key == "requeue", origin)
    return settings


def options_from_env(environ: Mapping[str, str]) -> dict[str, str | bool]:
    """The options given by SBATCH_*/MBATCH_* input variables (MBATCH_* wins)."""
    return {key: setting.value for key, setting in _env_settings(environ).items()}


def _cli_settings(cli: Mapping[str, Any]) -> dict[str, Setting]:
    """Normalise the CLI's option dict (keys may use '_'); unknown keys are a programming error."""
    settings: dict[str, Setting] = {}
    for raw_key, value in cli.items():
        key = raw_key.replace("_", "-").lstrip("-")
        if key.startswith(SLURM_PREFIX):
            settings[key] = Setting(value if isinstance(value, str) else "", "command line")
            continue
        if value is None or value is False or key in _CLIENT_KEYS or key == "wrap":
            continue
        if key not in MELON_ARGS:
            raise DirectiveError(f"unknown option --{key} (command line); see mbatch --help")
        if key in ("requeue", "no-requeue"):
            if "requeue" in settings:
                raise DirectiveError("--requeue and --no-requeue (command line) contradict each other")
            settings["requeue"] = Setting(key == "requeue", "command line")
        elif MELON_ARGS[key] == NO_ARG or (value is True and MELON_ARGS[key] == OPTIONAL):
            settings[key] = Setting(True, "command line")
        elif value is True:
            raise DirectiveError(f"--{key} (command line) needs a value")
        else:
            settings[key] = Setting(str(value), "command line")
    return settings


# ---------------------------------------------------------------- value conversion


def _cpus(text: str) -> int:
    """A positive whole number of CPUs, as sbatch's parse_int insists."""
    if not digits(text, 9) or int(text) < 1:
        raise SpecError(f"invalid CPU count {text!r}: give a whole number, 1 or more")
    return int(text)


def _exclusive(text: str) -> bool:
    """--exclusive[=user|mcs|topo]: Melon gives whole nodes for each (user and mcs would share a
    node with the same user's jobs; a whole node is the stricter reading)."""
    if text.lower() not in ("", "user", "mcs", "topo"):
        raise SpecError("give --exclusive alone (whole nodes), or =user, =mcs or =topo")
    return True


def _step(text: str) -> int:
    """An automatic extension's step: a time, more than none."""
    seconds = parse_time_limit(text)
    if seconds <= 0:
        raise SpecError("the step of an automatic extension is a time such as 30:00 (not 0 or UNLIMITED)")
    return seconds


def _io_path(text: str) -> str:
    """An output/error file pattern; "none" means /dev/null, as in sbatch."""
    if not text:
        raise SpecError("give a file name or pattern such as slurm-%j.out")
    return "/dev/null" if text.lower() == "none" else text


def _text(text: str) -> str:
    """Any non-empty string, kept verbatim (no shell expansion, as in sbatch)."""
    if not text:
        raise SpecError("needs a value")
    return text


#: How each option's raw text becomes a request value; ``now`` anchors --begin.
_CONVERTERS: Mapping[str, Callable[[str, float], Any]] = MappingProxyType({
    "cpus-per-task": lambda text, now: _cpus(text),
    "nodes": lambda text, now: parse_nodes(text),
    "ntasks": lambda text, now: count(text, "tasks"),
    "ntasks-per-node": lambda text, now: count(text, "tasks per node"),
    "exclusive": lambda text, now: _exclusive(text),
    "distribution": lambda text, now: parse_distribution(text),
    "mem": lambda text, now: parse_size_mib(text),
    "mem-per-cpu": lambda text, now: parse_size_mib(text),
    "gres": lambda text, now: parse_gres(text),
    "gpus": lambda text, now: parse_gpus(text),
    "gpus-per-node": lambda text, now: parse_gpus(text),
    "gpus-per-task": lambda text, now: parse_gpus(text),
    "cpus-per-gpu": lambda text, now: count(text, "CPUs per GPU"),
    "mem-per-gpu": lambda text, now: parse_size_mib(text),
    "time": lambda text, now: parse_time_limit(text),
    "time-max": lambda text, now: parse_time_limit(text),
    "extend-auto": lambda text, now: _step(text),
    "job-name": lambda text, now: _text(text),
    "output": lambda text, now: _io_path(text),
    "error": lambda text, now: _io_path(text),
    "chdir": lambda text, now: _text(text),
    "export": lambda text, now: _text(text),
    "nodelist": lambda text, now: expand_hostlist(text),
    "exclude": lambda text, now: expand_hostlist(text),
    "partition": lambda text, now: _text(text),
    "begin": parse_begin,
    "dependency": lambda text, now: _text(text),
    "array": lambda text, now: _text(text),
    "signal": lambda text, now: parse_signal(text),
    "mail-type": lambda text, now: parse_mail_type(text),
    "mail-user": lambda text, now: _text(text),
})


#: Options whose empty value (`--partition=`, `#SBATCH --dependency=`, `SBATCH_PARTITION=`) Slurm
#: takes as not given, so the default applies and hides what a lower layer gave, as in sbatch
#: (slurm_opt.c stores "" and Slurm then treats it as nothing). Why, from Slurm's source:
#: partition: `_get_job_parts` (slurmctld/job_mgr.c) finds no name in "" (get_part_list) and
#: takes the default partition; nodelist, exclude: node_name2bitmap("") names no node;
#: dependency: `_parse_dependency_str` (slurmctld/job_scheduler.c) returns "Empty dependency
#: input"; mail-user: `_get_mail_user` (job_mgr.c) mails the job's user; chdir: arg_set_chdir
#: makes "" the current directory; array: `_valid_array_inx` (job_mgr.c) sees no array in "";
#: export: sbatch.c passes only SLURM_* variables, Melon's NONE; job-name: Slurm keeps an empty
#: name, which Melon's jobs cannot have, so it is the default one. Every recorded Slurm option
#: (--account=, --qos=, --reservation=, --wckey=, ...) is dropped the same way (slurmctld tests
#: `x && x[0]`). An empty --time, --mem, --cpus-per-task, --begin, --signal or --mail-type is
#: refused as Slurm refuses it ("Invalid --time specification"), and an empty --output/--error
#: too: sbatch would make it the directory `<cwd>/`, which the job could not open.
_EMPTY_IS_UNSET = MappingProxyType({
    "partition": None, "nodelist": None, "exclude": None, "dependency": None, "mail-user": None, "chdir": None,
    "array": None, "job-name": None, "export": "NONE", "gres": None, "gpus": None, "gpus-per-node": None,
    "gpus-per-task": None,
})


# Memory is resolved apart: --mem and --mem-per-cpu compete for one setting.
_FLAGS = ("hold", "requeue", "exclusive")  # options a bare flag sets (--exclusive may carry a value too)
_VALUE_KEYS = tuple(key for key in _CONVERTERS if key not in ("mem", "mem-per-cpu")) + ("hold", "requeue")


def _convert(key: str, setting: Setting, now: float) -> Any:
    """Convert one raw value, naming option, value and source if it is wrong."""
    if isinstance(setting.value, bool):
        if key not in _FLAGS:
            raise DirectiveError(setting.describe(key, "needs a value"))
        return setting.value
    try:
        return _CONVERTERS[key](setting.value, now)
    except SpecError as exc:
        raise DirectiveError(setting.describe(key, exc)) from exc


# ---------------------------------------------------------------- the request


def _environment(export: str, environ: Mapping[str, str], warnings: list[str]) -> dict[str, str]:
    """The job's environment for an sbatch-style --export value."""
    items = export.split(",")
    words = {item.upper() for item in items}
    env = dict(environ) if "ALL" in words else {}
    for item in items:
        if item.upper() in ("ALL", "NONE", "NIL") or not item:
            continue
        name, has_value, value = item.partition("=")
        if not shell_name(name):
            raise SpecError(f"{name!r} is not a variable name; use ALL, NONE or [ALL,]VAR[=value],...")
        if has_value:
            env[name] = value
        elif name in environ:
            env[name] = environ[name]
        else:
            warnings.append(f"--export: {name} is not set in your environment; not exported")
    return env


def _check_script(text: str, path: str | None, warnings: list[str], strict: bool = False) -> None:
    """Refuse what sbatch refuses (empty, binary, DOS line ends); warn on a missing #! line
    (refuse it too where `strict`, in sbatch's words)."""
    label = path or "the script on standard input"
    if "\0" in text:
        raise DirectiveError(f"{label}: contains NUL bytes, so it looks binary; submit a shell script")
    if not text.strip():
        raise DirectiveError(f"{label}: the script is empty; write the commands to run after a #!/bin/bash line")
    if "\r\n" in text:
        raise DirectiveError(
            f"{label}: has DOS line breaks (\\r\\n); convert it with `dos2unix {path or 'SCRIPT'}` and submit again"
        )
    if not text.startswith("#!") and strict:
        raise DirectiveError("This does not look like a batch script.  The first line must start with #! "
                             "followed by the path to an interpreter. For instance: #!/bin/sh")
    if not text.startswith("#!"):
        warnings.append(
            f"{label}: does not start with #! (sbatch refuses such a script: "
            f"\"This does not look like a batch script\"); Melon runs it with /bin/sh"
        )


def _elastic(values: dict) -> dict:
    """--time-max with --extend-auto: start with --time, and melond extends by the step (the
    initial limit, if no step is given) while that delays no waiting job, up to --time-max."""
    if "time-max" not in values and "extend-auto" not in values:
        return {}
    limit, most = values.get("time"), values.get("time-max")
    if most is None:
        raise DirectiveError("--extend-auto needs --time-max, the most the job may reach (e.g. --time-max=12:00:00)")
    if not limit:
        raise DirectiveError("--time-max needs a --time to start with (e.g. --time=1:00:00 --time-max=12:00:00)")
    if most != 0 and most <= limit:
        raise DirectiveError(f"--time-max ({most} s) must be above --time ({limit} s): it is how far the job may grow")
    return {"time_max": most, "extend_step": values.get("extend-auto") or limit}


def _slurm_options(layers: tuple[dict[str, Setting], ...]) -> dict[str, str]:
    """The Slurm options Melon does not act on, recorded as given (the command line wins)."""
    found: dict[str, str] = {}
    for layer in reversed(layers):
        for key, setting in layer.items():
            if key.startswith(SLURM_PREFIX):
                name = key[len(SLURM_PREFIX):]
                if setting.value == "" and takes_value(name):  # `--account=`: as if not given (_EMPTY_IS_UNSET)
                    found.pop(name, None)
                else:
                    found[name] = setting.value
    return found


def _pick(layers: tuple[dict[str, Setting], ...], key: str) -> Setting | None:
    """The highest-precedence setting of an option: command line > environment > script."""
    return next((layer[key] for layer in layers if key in layer), None)


def _memory(layers: tuple[dict[str, Setting], ...], warnings: list[str]) -> tuple[str, Setting] | None:
    """Which memory option applies; where one source gives both, warn and use --mem."""
    for layer in layers:
        mem, per_cpu = layer.get("mem"), layer.get("mem-per-cpu")
        if mem and per_cpu:
            warnings.append(
                f"--mem ({mem.origin}) and --mem-per-cpu ({per_cpu.origin}) both given: sbatch refuses "
                f"this; Melon uses --mem"
            )
        if mem:
            return "mem", mem
        if per_cpu:
            return "mem-per-cpu", per_cpu
    return None


def _layer(layers: tuple[dict[str, Setting], ...], key: str) -> int:
    """Which layer (0: the command line) gives an option: the lower wins."""
    return next((i for i, layer in enumerate(layers) if key in layer), len(layers))


def _resources(values: dict, warnings: list[str]) -> tuple[tuple[Gres, ...], tuple[Gres, ...]]:
    """Generic resources per node and per task, from --gres, --gpus, --gpus-per-node and
    --gpus-per-task; --cpus-per-gpu becomes the tasks' -c. Melon places GPUs per node or per task,
    so --gpus (the job's total) is one of those: on one node all of them there, else an equal
    share per task (with -n) or per node (with -N N)."""
    per_node: tuple[Gres, ...] = values.get("gres", ())
    node_gpus = values.get("gpus-per-node", ())
    if node_gpus and gpu_count(per_node):
        raise DirectiveError("--gres=gpu:... and --gpus-per-node both ask for GPUs on each node: give one")
    per_node = merge(per_node, node_gpus)
    per_task: tuple[Gres, ...] = values.get("gpus-per-task", ())
    total = values.get("gpus", ())
    nodes, ntasks = values.get("nodes"), values.get("ntasks")
    if total:
        if per_task or gpu_count(per_node):
            raise DirectiveError("--gpus and --gpus-per-task, --gpus-per-node or --gres=gpu both ask for GPUs: give one")
        counts = [g.count for g in total]
        if (nodes is None and not ntasks) or (nodes and nodes[1] == 1) or ntasks == 1:
            per_node = merge(per_node, total)
        elif ntasks and all(c % ntasks == 0 for c in counts):
            per_task = tuple(Gres(g.name, g.type, g.count // ntasks) for g in total)
        elif nodes and nodes[0] == nodes[1] and all(c % nodes[0] == 0 for c in counts):
            per_node = merge(per_node, tuple(Gres(g.name, g.type, g.count // nodes[0]) for g in total))
        else:
            raise DirectiveError(f"--gpus={format_gres(total)} cannot be shared equally over the job's tasks or nodes: "
                                 f"give --gpus-per-task or --gpus-per-node (Melon places GPUs per task or per node)")
    cpg = values.get("cpus-per-gpu")
    if cpg is not None:
        if "cpus-per-task" in values:
            warnings.append("--cpus-per-gpu and --cpus-per-task both given: Slurm 23.02.5 and later refuse this; "
                            "Melon uses --cpus-per-task")
        elif per_task:
            values["cpus-per-task"] = cpg * gpu_count(per_task)
        elif gpu_count(per_node):
            tasks = values.get("ntasks-per-node") or (ntasks if nodes and nodes[1] == 1 else None)
            if tasks is None and ntasks not in (None, 1):
                raise DirectiveError("--cpus-per-gpu with GPUs per node and tasks that may span nodes: give "
                                     "--ntasks-per-node too, so each task's CPUs are known")
            values["cpus-per-task"] = -(-cpg * gpu_count(per_node) // (tasks or 1))
        else:
            raise DirectiveError("--cpus-per-gpu needs GPUs to count: give --gpus, --gres=gpu:N or --gpus-per-task too")
    if "mem-per-gpu" in values and not (gpu_count(per_task) or gpu_count(per_node)):
        raise DirectiveError("--mem-per-gpu needs GPUs to count: give --gpus, --gres=gpu:N or --gpus-per-task too")
    return per_node, per_task


def _memory_per_gpu(mib: int, per_node: tuple[Gres, ...], per_task: tuple[Gres, ...], cpus: int) -> tuple[int, bool]:
    """--mem-per-gpu as the memory a node's part gets: per node, that times the node's GPUs; per
    task, as memory per CPU (the task's GPUs' worth over its CPUs)."""
    if per_task:
        return -(-mib * gpu_count(per_task) // cpus) * cpus * MIB, True
    return mib * gpu_count(per_node) * MIB, False


def _shape(values: dict, layers: tuple[dict[str, Setting], ...], warnings: list[str]) -> Shape:
    """The nodes and tasks the options ask for; Slurm's own adjustments are warned as sbatch warns
    them, and -N 2 -n 1 becomes -N 1 in the request too."""
    try:
        shape = make_shape(nodes=values.get("nodes"), ntasks=values.get("ntasks"),
                           ntasks_per_node=values.get("ntasks-per-node"), cpus_per_task=values.get("cpus-per-task", 1),
                           exclusive=bool(values.get("exclusive")), distribution=values.get("distribution"),
                           warnings=warnings)
    except SpecError as exc:
        origin = _pick(layers, "distribution") or Setting("", "command line")
        raise DirectiveError(origin.describe("distribution", exc)) from exc
    if "nodes" in values:
        values["nodes"] = (shape.nodes_min, shape.nodes_max)
    return shape


def client_options(script_text: str | None) -> frozenset[str]:
    """The options a script's directives give the submitting command itself (`#SBATCH --parsable`,
    `#SBATCH --wait`): sbatch honours them from a script as from its command line."""
    if not script_text:
        return frozenset()
    settings, _ = options_from_scan(scan_script(script_text))
    return CLIENT_OPTIONS.intersection(settings)


def current_umask() -> int:
    """The caller's umask, which its job runs with (Slurm's SLURM_UMASK): read by setting it and
    setting it back, as there is no other call for it (the CLIs are single-threaded)."""
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def build_request(
    *,
    script_text: str | None,
    script_path: str | None,
    script_args: list[str],
    cli: dict[str, str | bool],
    environ: Mapping[str, str],
    cwd: str,
    submit_host: str,
    user: str,
    now: float,
    sbatch: bool = False,
    umask: int | None = None,
) -> tuple[dict, list[str]]:
    """Merge command line > environment > script into a JSON-able job request, plus warnings.

    ``sbatch`` gives Slurm's defaults (slurm-%j.out, the name "sbatch" for a script on standard
    input) and refuses a script without #!, as sbatch does; otherwise they are mbatch's.

    ``user`` is accepted for the caller's convenience but not trusted or stored here: the daemon
    takes the owner from the connection's credentials.
    """
    warnings: list[str] = []
    wrap = cli.get("wrap")
    script_settings: dict[str, Setting] = {}
    if wrap is not None and wrap is not False:
        if not isinstance(wrap, str) or not wrap.strip():
            raise DirectiveError("--wrap needs the command to run, e.g. --wrap 'python train.py'")
        if script_text is not None:
            raise DirectiveError("give either a script or --wrap CMD, not both")
        if script_args:
            raise DirectiveError("script arguments are not allowed with --wrap (put them in CMD)")
        script = f"#!/bin/sh\n{wrap}\n"
    elif script_text is None:
        raise DirectiveError("no job script: give a script file, or --wrap CMD to run one command")
    else:
        _check_script(script_text, script_path, warnings, strict=sbatch)
        script = script_text
        script_settings, scan_warnings = options_from_scan(scan_script(script_text))
        warnings += scan_warnings
    layers = (_cli_settings(cli), _env_settings(environ), script_settings)
    slurm_options = _slurm_options(layers)

    values = {}
    for key in _VALUE_KEYS:  # a fixed order, so the same mistakes always give the same error
        setting = _pick(layers, key)
        if setting is not None and setting.value == "" and key in _EMPTY_IS_UNSET:
            setting = None if _EMPTY_IS_UNSET[key] is None else Setting(_EMPTY_IS_UNSET[key], setting.origin)
        if setting is not None:
            values[key] = _convert(key, setting, now)
    per_node, per_task = _resources(values, warnings)
    cpus = values.get("cpus-per-task", 1)
    shape = _shape(values, layers, warnings)
    memory, mem_per_cpu = None, False
    chosen = _memory(layers, warnings)
    if chosen and "mem-per-gpu" in values and _layer(layers, chosen[0]) == _layer(layers, "mem-per-gpu"):
        raise DirectiveError(f"--{chosen[0]} and --mem-per-gpu ({chosen[1].origin}) both given: give one, as sbatch "
                             f"refuses both")
    if chosen and ("mem-per-gpu" not in values or _layer(layers, chosen[0]) < _layer(layers, "mem-per-gpu")):
        key, setting = chosen
        mem_per_cpu = key == "mem-per-cpu"
        memory = _convert(key, setting, now) * MIB * (cpus if mem_per_cpu else 1)
    elif "mem-per-gpu" in values:
        memory, mem_per_cpu = _memory_per_gpu(values["mem-per-gpu"], per_node, per_task, cpus)

    default_name = posixpath.basename(script_path) if script_path else ("wrap" if wrap else PROG[sbatch])
    default_output = values.get("output") or (SLURM_OUTPUT[bool(values.get("array"))] if sbatch else DEFAULT_OUTPUT)
    export = values.get("export", "ALL")
    try:
        environment = _environment(export, environ, warnings)
    except SpecError as exc:
        origin = _pick(layers, "export") or Setting(export, "default")
        raise DirectiveError(origin.describe("export", exc)) from exc
    request = {
        "script": script,
        "script_path": script_path,
        "script_args": list(script_args),
        "name": values.get("job-name", default_name),
        "cpus": cpus,
        "nodes": list(values["nodes"]) if "nodes" in values else None,
        "ntasks": values.get("ntasks"),
        "ntasks_per_node": shape.ntasks_per_node,
        "exclusive": shape.exclusive,
        "distribution": shape.distribution,
        "memory": memory,
        "mem_per_cpu": mem_per_cpu,
        "gres": format_gres(per_node) or None,
        "gpus_per_task": format_gres(per_task) or None,
        "time_limit": values.get("time"),
        **_elastic(values),
        "output": default_output,
        "error": values.get("error"),
        "chdir": posixpath.normpath(posixpath.join(cwd, values.get("chdir", cwd))),
        "environment": environment,
        "export": export,
        "nodelist": values.get("nodelist", []),
        "exclude": values.get("exclude", []),
        "partition": values.get("partition"),
        "begin": values.get("begin"),
        "hold": values.get("hold", False),
        "dependency": values.get("dependency"),
        "array": values.get("array"),
        "requeue": values.get("requeue", False),
        "signal": values.get("signal"),
        "mail_type": values.get("mail-type", []),
        "mail_user": values.get("mail-user"),
        "submit_host": submit_host,
        "submit_dir": cwd,
        "umask": umask,
        "comment": slurm_options.pop("comment", None),
        "account": slurm_options.pop("account", None),
        "slurm_options": slurm_options,
    }
    warnings += _drop_non_utf8_environment(request)
    _check_utf8(request)
    return request, warnings


def _drop_non_utf8_environment(request: dict) -> list[str]:
    """A variable whose bytes are not UTF-8 is left out with a warning, not refused: with the
    default --export=ALL one such variable in a login environment would block every submission."""
    dropped = [k for k, v in request["environment"].items() if _not_utf8(k) or _not_utf8(v)]
    for k in dropped:
        del request["environment"][k]
    return [f"environment variable {_shown(k)} is not valid UTF-8 and is not passed to the job "
            f"(Melon passes text only; convert it with iconv -t UTF-8)" for k in dropped]


def _shown(name: str) -> str:
    return repr(_raw_bytes(name)) if _not_utf8(name) else name


def _raw_bytes(text: str) -> bytes:
    try:
        return text.encode("utf-8", "surrogateescape")  # the bytes as they came from argv or a file
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace")  # a surrogate no byte decodes to


def _not_utf8(text: str) -> bool:
    """Bytes that are not UTF-8 arrive from argv, the environment or a file as lone surrogates."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _check_utf8(request: dict) -> None:
    """Melon keeps jobs as text (JSON, SQLite): a byte that is not UTF-8 is refused, naming where it
    is, rather than altered on the way to the job (latin-1 text: convert it with iconv first)."""
    places = [(f"argument {i}", a) for i, a in enumerate(request["script_args"], 1)]
    places += [(key.replace("_", " "), request[key]) for key in ("script", "script_path", "name", "output", "error",
                                                                 "chdir", "submit_dir")]
    for where, text in places:
        if isinstance(text, str) and _not_utf8(text):
            shown = _raw_bytes(text)[:60]
            raise DirectiveError(f"the job's {where} is not valid UTF-8 ({shown!r}); Melon passes text only: "
                                 f"convert it (iconv -t UTF-8)")


def dry_run_view(request: dict, warnings: list[str]) -> dict:
    """The fields ``mbatch --dry-run --json`` prints; a zero (unlimited) limit shows as null."""
    return {
        "name": request["name"],
        "cpus": request["cpus"],
        "nodes": request["nodes"],
        "ntasks": request["ntasks"],
        "ntasks_per_node": request["ntasks_per_node"],
        "memory": request["memory"],
        "time_limit": request["time_limit"] or None,
        "output": request["output"],
        "error": request["error"],
        "chdir": request["chdir"],
        "array": request["array"],
        "script_args": list(request["script_args"]),
        "warnings": list(warnings),
    }

"""The job record, and the one table of what may happen to a job in each state.

A `Job` is a stored row made typed: its fields are the `jobs` table's columns, nothing else.
What melond keeps about a job only while it runs (a cancel asked for, a forced end state, the
scheduler's cached view) lives in the engine's own structures, never in the record, so nothing
internal can reach the API's JSON.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple

from melond.spec.gres import format_gres, merge, need, parse_list, scaled
from melond.spec.shape import Shape, make_shape
from melond.spec.states import FINISHED, State

NORMAL_QOS = "normal"  # the QOS of a job that names none, as Slurm's default QOS

MIB = 1024 * 1024
JSON_COLUMNS = ("script_args", "environment", "nodelist", "exclude", "slurm_options", "mail_type", "parts")
BOOL_COLUMNS = ("hold", "requeue", "exclusive", "interactive")
PRIVATE = ("script", "environment", "gid")  # never in a listing: scripts and environments may hold secrets


class Part(NamedTuple):
    """What a started job holds on one node (stored as a JSON list in this order)."""

    node: str
    cpus: int
    tasks: int
    memory: int  # MiB; 0: all of the node's
    cpu_ids: str | None = None  # pinned CPUs, cpuset form
    gres_ids: str | None = None  # its devices: positions in the node's list, cpuset form


@dataclass(slots=True, kw_only=True, eq=False)
class Job:
    """One job (or one array task): what was asked for, where it is, how it ended."""

    id: int = 0  # 0 until the store gives it one
    user: str
    uid: int
    gid: int | None = None
    name: str
    state: State = State.PENDING
    reason: str | None = None  # why it is pending, in Slurm's words
    priority: int = 0
    partition: str
    cpus: int = 1
    memory: int = 0  # bytes
    time_limit: int = 0  # seconds; 0 = none
    script: str = ""
    script_path: str | None = None
    script_args: list[str] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)
    chdir: str = "/"
    output: str = "melon-%j.out"
    error: str | None = None
    nodelist: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    begin_time: float | None = None
    hold: bool = False
    dependency: str | None = None
    array_job_id: int | None = None
    array_task_id: int | None = None
    array_throttle: int | None = None
    array_spec: str | None = None  # the array's --array, as given
    requeue: bool = False
    signal: str | None = None
    submit_host: str | None = None
    submit_dir: str | None = None
    submit_time: float = 0.0
    start_time: float | None = None
    end_time: float | None = None
    node: str | None = None
    exit_code: int | None = None
    exit_signal: int | None = None
    detail: str | None = None
    restarts: int = 0
    cpu_time: float | None = None  # CPU seconds (user + system) the job's processes used, read at its end
    max_rss: int | None = None  # the job's peak memory in bytes, read at its end
    mail_type: list[str] = field(default_factory=list)  # sbatch --mail-type, expanded: which notices to send
    mail_user: str | None = None  # sbatch --mail-user: whom the notices name (the notifier delivers them)
    time_max: int | None = None  # mbatch --time-max: melond extends the job up to this (seconds; 0 = no bound)
    extend_step: int | None = None  # mbatch --extend-auto: by this much at a time, while it delays no one
    comment: str | None = None  # sbatch --comment, kept for sacct and scontrol
    account: str | None = None  # sbatch --account: Melon has no accounts, but shows what was asked
    slurm_options: dict[str, str] = field(default_factory=dict)  # other Slurm options, as given
    umask: int | None = None  # the submitter's umask, the job's own (None: 022, a job from before it was kept)
    nodes_min: int | None = None  # -N's least (None: a job from before shapes were kept: one node)
    nodes_max: int | None = None  # -N's most; None: as many as its tasks need
    ntasks: int | None = None  # -n as given (normalised as sbatch does); None: not given
    ntasks_per_node: int | None = None
    cpus_per_task: int | None = None  # -c; None: a job from before shapes were kept, whose -c is `cpus`
    exclusive: bool = False  # --exclusive: whole nodes
    distribution: str | None = None  # -m, as given
    cpu_ids: str | None = None  # the CPUs it is pinned to on its node, in cpuset form ("0-3,8"), once started
    mem_per_cpu: int | None = None  # --mem-per-cpu, MiB: a spanning job's memory on a node is this per CPU there
    parts: list[list] = field(default_factory=list)  # a job spanning nodes, once started: [Part, ...] as lists
    interactive: bool = False  # salloc / srun --pty: its nodes hold the allocation, the user's terminal attaches
    gres: str | None = None  # generic resources on each node it runs on (--gres, --gpus-per-node): "gpu:a100:2"
    gpus_per_task: str | None = None  # ...and for each of its tasks there (--gpus-per-task): "1", "gpu:a100:1"
    gres_ids: str | None = None  # the devices it holds on its node, once started: positions in the node's list
    gres_total: str | None = None  # what it asks for over all its nodes; once started, what it holds: "gpu:4"
    gpu_util: float | None = None  # its GPUs' mean utilization while it ran (percent), where nvidia-smi told
    gpu_mem_peak: int | None = None  # the most memory its GPUs held together (bytes), likewise

    @property
    def qos(self) -> str:
        """Its QOS: the one it asked for, else Slurm's default, normal."""
        return self.slurm_options.get("qos") or NORMAL_QOS

    @property
    def run(self) -> int:
        """Which run of the job this is: 0, then one more per requeue."""
        return self.restarts

    @property
    def shape(self) -> Shape:
        """Its nodes and tasks, as Slurm's rules read its options (melond.spec.shape)."""
        if self.cpus_per_task is None:  # kept before shapes were: one task of all its CPUs
            return Shape(ntasks=legacy_tasks(self.slurm_options), ntasks_given=True, cpus_per_task=self.cpus)
        least = self.nodes_min or 1
        return make_shape(nodes=(least, self.nodes_max) if self.nodes_min else None, ntasks=self.ntasks,
                          ntasks_per_node=self.ntasks_per_node, cpus_per_task=self.cpus_per_task,
                          exclusive=self.exclusive, distribution=self.distribution,
                          spread_job="spread-job" in self.slurm_options,
                          use_min_nodes="use-min-nodes" in self.slurm_options)

    @property
    def spans(self) -> bool:
        """Does it run on several nodes?"""
        return len(self.parts) > 1

    @property
    def placed(self) -> tuple[Part, ...]:
        """Its part on each node it runs on, the first where its batch script runs (one part for a
        job on one node); none before it starts."""
        if self.parts:
            return tuple(Part(*p) for p in self.parts)
        if self.node is None:
            return ()
        return (Part(self.node, self.cpus, self.shape.ntasks, self.memory_mib, self.cpu_ids, self.gres_ids),)

    @property
    def nodes(self) -> list[str]:
        """The nodes it runs on, first the batch script's."""
        return [p.node for p in self.placed]

    def part_on(self, node: str) -> Part | None:
        return next((p for p in self.placed if p.node == node), None)

    def gres_requested(self) -> str | None:
        """The generic resources it asks for over all its nodes (`gpu:4`): per node on each of its
        least nodes, and per task for each task."""
        if not self.gres and not self.gpus_per_task:
            return None
        per_node, per_task, shape = parse_list(self.gres), parse_list(self.gpus_per_task), self.shape
        if shape.nodes_min <= 1 and not shape.wide:
            return format_gres(need(per_node, per_task, shape.ntasks)) or None
        return format_gres(merge(scaled(per_node, shape.nodes_min), scaled(per_task, shape.ntasks))) or None

    @property
    def memory_mib(self) -> int:
        return self.memory // MIB

    @property
    def deadline(self) -> float | None:
        """When a running job's limit runs out (the node holds the same, from its own clock)."""
        return self.start_time + self.time_limit if self.start_time and self.time_limit else None

    @classmethod
    def from_row(cls, row: Mapping[str, Any], shared: dict[Any, Any] | None = None) -> Job:
        """`shared`: decoded values by their stored text, kept across rows, so that equal ones are
        one object (never changed in place: a job's value is replaced, not edited)."""
        values = dict(row)  # the fast path: a stored row has exactly the record's columns
        if not values.keys() <= _COLUMN_SET:
            values = {name: value for name, value in values.items() if name in _COLUMN_SET}
        for name in JSON_COLUMNS:
            text = values.get(name)
            if text is not None:
                if shared is None:
                    values[name] = json.loads(text)
                else:
                    value = shared.get(text)
                    values[name] = value if value is not None else shared.setdefault(text, json.loads(text))
            elif name in values:
                del values[name]  # NULL: the field's default
        if shared is not None:
            for name in SHARED_TEXT:
                text = values.get(name)
                if text is not None:
                    values[name] = shared.setdefault((name, text), text)
        for name in BOOL_COLUMNS:
            if name in values:
                values[name] = bool(values[name])
        values["state"] = _STATE_OF[values["state"]]
        return cls(**values)

    def to_row(self) -> dict[str, Any]:
        """The columns to store (without the id the store hands out)."""
        row = {name: getattr(self, name) for name in COLUMNS if name != "id"}
        for name in JSON_COLUMNS:
            row[name] = json.dumps(row[name])
        for name in BOOL_COLUMNS:
            row[name] = int(row[name])
        row["state"] = self.state.value
        return row

    def public(self) -> dict[str, Any]:
        """Every field a listing may show."""
        return {name: getattr(self, name) for name in COLUMNS if name not in PRIVATE}


def legacy_tasks(slurm_options: Mapping[str, str]) -> int:
    """A job from before shapes were kept ran sbatch's -n (else --ntasks-per-node) tasks in its
    CPUs, as recorded with its Slurm options; 1 else."""
    for key in ("ntasks", "ntasks-per-node", "tasks-per-node"):
        text = (slurm_options.get(key) or "").strip()
        if text.isascii() and text.isdigit() and 0 < int(text) <= 65535:
            return int(text)
    return 1


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(Job))
# Text columns an array's tasks (and a user's jobs) mostly hold alike: read back as one object each
SHARED_TEXT = ("script", "user", "name", "partition", "chdir", "output", "error", "array_spec", "submit_host",
               "submit_dir", "account", "reason", "signal", "mail_user", "gres", "gpus_per_task", "distribution",
               "script_path", "dependency", "node")
_STATE_OF = {s.value: s for s in State}  # a stored state's enum, without the enum's own (slower) lookup
_COLUMN_SET = frozenset(COLUMNS)


@dataclass(frozen=True)
class Transition:
    """An event of a job's history: the states it may happen in, and those it may lead to
    (none: the job stays in the state it was in)."""

    sources: frozenset[State]
    targets: frozenset[State] = frozenset()


_PENDING = frozenset({State.PENDING})
_RUNNING = frozenset({State.RUNNING})

TRANSITIONS: dict[str, Transition] = {
    "submitted": Transition(frozenset(), _PENDING),
    "started": Transition(_PENDING, _RUNNING),  # placed: durable before the node is asked
    "launched": Transition(_RUNNING),  # the node started it: its own start time and pid
    "cancelled": Transition(_PENDING, frozenset({State.CANCELLED})),
    "held": Transition(_PENDING),
    "prioritized": Transition(_PENDING),  # an operator set its priority (scontrol update Priority=)
    "topped": Transition(_PENDING),  # its owner put it first among their own (scontrol top)
    "released": Transition(_PENDING),
    "extended": Transition(_PENDING | _RUNNING),
    "cancel_requested": Transition(_RUNNING),  # the node is told; the end comes as "ended"
    "preempt_requested": Transition(_RUNNING),  # a preemptor takes its room: cancelled, to end PREEMPTED
    "node_down": Transition(_RUNNING),  # an operator downed its node: it ends NODE_FAIL
    "requeued": Transition(_RUNNING, _PENDING),  # its node failed and it asked for --requeue, or its user did
    "requeue_requested": Transition(_RUNNING),  # `scontrol requeue`: the node is told; the end sends it back
    "requeued_ended": Transition(FINISHED, _PENDING),  # `scontrol requeue` of a job that had ended
    "ended": Transition(_RUNNING, FINISHED),
}


def check_transition(kind: str, changes: Mapping[str, Any]) -> Transition:
    """The table's entry for `kind`, refusing a change of state the table does not allow."""
    try:
        rule = TRANSITIONS[kind]
    except KeyError:
        raise ValueError(f"no job event {kind!r}; events: {', '.join(TRANSITIONS)}") from None
    target = changes.get("state")
    if target is not None and State(target) not in rule.targets:
        raise ValueError(f"a {kind!r} event cannot make a job {target}")
    if target is None and rule.targets and rule.sources:
        raise ValueError(f"a {kind!r} event must set the job's state (one of {', '.join(sorted(rule.targets))})")
    return rule

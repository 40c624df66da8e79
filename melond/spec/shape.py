"""A job's shape: how many nodes, how many tasks, how many CPUs each, by Slurm's rules.

The options are sbatch's (`-N/--nodes`, `-n/--ntasks`, `--ntasks-per-node`, `-c/--cpus-per-task`,
`--exclusive`, `-m/--distribution`, `--spread-job`, `--use-min-nodes`), read as Slurm's clients
normalise them (`_opt_verify` in src/sbatch/opt.c and src/srun/opt.c) and laid out on nodes as
its controller lays tasks out (`_task_layout_block` in src/common/slurm_step_layout.c):
shared/SLURM-ALLOCATIONS.md §1 has the sources. Pure and standard library only, so the CLIs
import it fast and the scheduler asks it the same questions.
"""
from __future__ import annotations

from collections import namedtuple  # not typing.NamedTuple: `typing` costs every mbatch ~5 ms

from melond.spec.charclass import digits
from melond.spec.timespec import SpecError

TYPE_CHECKING = False  # the idiom type checkers know: `typing` costs every command ~5 ms to import
if TYPE_CHECKING:
    from collections.abc import Sequence

MAX_COUNT = 1 << 20  # nodes or tasks: past any cluster's size, inside SQLite's integers
DISTRIBUTIONS = ("block", "cyclic", "plane", "arbitrary", "*")
_SUFFIX = {"k": 1024, "m": 1024 * 1024}


_FIELDS = ("nodes_min", "nodes_max", "ntasks", "ntasks_given", "ntasks_per_node", "cpus_per_task", "exclusive",
           "distribution", "spread_job", "use_min_nodes")


class Shape(namedtuple("Shape", _FIELDS, defaults=(1, None, 1, False, None, 1, False, None, False, False))):
    """What a job asks for, normalised: `ntasks` is always the task count it runs.

    nodes_min, nodes_max: -N (nodes_max None: as many as the tasks need, no -N given);
    ntasks_given: -n was given;
    ntasks_per_node: with -n the most on one node, without it the count on each;
    exclusive: whole nodes; distribution: -m as given (block, cyclic, plane=N, arbitrary, ...).
    A namedtuple, not a dataclass: `dataclasses` costs every mbatch its imports of re and enum.
    """

    __slots__ = ()
    nodes_min: int
    nodes_max: int | None
    ntasks: int
    ntasks_given: bool
    ntasks_per_node: int | None
    cpus_per_task: int
    exclusive: bool
    distribution: str | None
    spread_job: bool
    use_min_nodes: bool

    @property
    def wide(self) -> bool:
        """May it span nodes? (More than one node asked for, or tasks with no -N to hold them to one.)"""
        return self.nodes_min > 1 or (self.ntasks > 1 and self.nodes_max != 1)

    @property
    def exact(self) -> bool:
        """--ntasks-per-node without -n: exactly that many on each node."""
        return bool(self.ntasks_per_node) and not self.ntasks_given

    @property
    def cpus(self) -> int:
        """CPUs for all tasks together (before --exclusive rounds each node up to a whole one)."""
        return self.ntasks * self.cpus_per_task

    def options(self) -> str:
        """The request in sbatch's words, for messages: `-N 2 -n 8 -c 2`."""
        words = []
        if self.nodes_max is not None or self.nodes_min > 1:
            top = self.nodes_max if self.nodes_max is not None else self.nodes_min
            words.append(f"-N {self.nodes_min}" + (f"-{top}" if top != self.nodes_min else ""))
        if self.ntasks_given:
            words.append(f"-n {self.ntasks}")
        if self.ntasks_per_node is not None:
            words.append(f"--ntasks-per-node={self.ntasks_per_node}")
        if self.cpus_per_task > 1:
            words.append(f"-c {self.cpus_per_task}")
        if self.exclusive:
            words.append("--exclusive")
        return " ".join(words) or "one task of one CPU"


def count(text: str, what: str) -> int:
    """A whole number of nodes or tasks, 1 or more (k and m multiply by 1024, as Slurm's -N)."""
    body = text.strip().lower()
    scale = _SUFFIX.get(body[-1:], 1) if body else 1
    if scale > 1:
        body = body[:-1]
    if not digits(body, 9) or not 0 < int(body) * scale <= MAX_COUNT:
        raise SpecError(f"invalid number of {what} {text!r}: give a whole number from 1 to {MAX_COUNT}")
    return int(body) * scale


def parse_nodes(text: str) -> tuple[int, int | None]:
    """-N MIN[-MAX]: (min, max); one number is both."""
    low, dash, high = text.partition("-")
    least = count(low, "nodes")
    most = count(high, "nodes") if dash else least
    if most < least:
        raise SpecError(f"invalid number of nodes (-N {least}-{most}): the most is below the least")
    return least, most


def parse_distribution(text: str) -> str:
    """-m/--distribution: block, cyclic, plane=N or arbitrary, with Slurm's :second[:third] and
    ,Pack/,NoPack parts; kept as given (SLURM_DISTRIBUTION) once its first word is one of those."""
    first = text.split(",")[0].split(":")[0].lower()
    word, _, size = first.partition("=")
    if word not in DISTRIBUTIONS or (word == "plane") != bool(size) or (size and not digits(size, 9)):
        raise SpecError(f"invalid distribution {text!r}: give block, cyclic, plane=N or arbitrary "
                        "(optionally :block|:cyclic|:fcyclic for sockets and cores)")
    return text


def make_shape(*, nodes: tuple[int, int | None] | None = None, ntasks: int | None = None,
               ntasks_per_node: int | None = None, cpus_per_task: int = 1, exclusive: bool = False,
               distribution: str | None = None, spread_job: bool = False, use_min_nodes: bool = False,
               warnings: list[str] | None = None) -> Shape:
    """The shape the options mean, as Slurm's clients settle them; what they change is warned."""
    least, most = nodes if nodes is not None else (1, None)
    if distribution and distribution.split(":")[0].split(",")[0].lower() == "arbitrary" and ntasks is None:
        raise SpecError("task count required for arbitrary distribution: give -n")
    given = ntasks is not None
    if ntasks is None:
        # -N alone is one task per node; --ntasks-per-node=k alone, k on each of the least nodes
        ntasks = least * (ntasks_per_node or 1)
    elif nodes is not None:
        if ntasks < least:
            if warnings is not None:
                warnings.append(f"can't run {ntasks} processes on {least} nodes, setting nnodes to {ntasks}")
            least = most = ntasks
        elif most is not None:
            most = min(most, ntasks)
    return Shape(nodes_min=least, nodes_max=most, ntasks=ntasks, ntasks_given=given, ntasks_per_node=ntasks_per_node,
                 cpus_per_task=cpus_per_task, exclusive=exclusive, distribution=distribution, spread_job=spread_job,
                 use_min_nodes=use_min_nodes)


def slots(shape: Shape, cpus: int) -> int:
    """How many of the job's tasks a node with `cpus` free CPUs can hold."""
    room = cpus // shape.cpus_per_task
    return min(room, shape.ntasks_per_node) if shape.ntasks_per_node else room


def layout(shape: Shape, cpus: Sequence[int]) -> list[int] | None:
    """Tasks on each of these nodes (in order), dealt one per node per round while a node has room,
    as Slurm's block layout counts them; None if they cannot hold every task, or if a node would
    get none. With `--ntasks-per-node` and no `-n`, every node gets exactly that many."""
    room = [slots(shape, c) for c in cpus]
    if shape.exact:
        return [shape.ntasks_per_node] * len(cpus) if len(cpus) * shape.ntasks_per_node == shape.ntasks and \
            min(room, default=0) == shape.ntasks_per_node else None
    return deal(shape.ntasks, room)


def deal(ntasks: int, room: Sequence[int]) -> list[int] | None:
    """`ntasks` dealt one per node per round while a node has room (Slurm's block counts); None
    if the rooms cannot hold them all, or a node would get none."""
    if not room or sum(room) < ntasks or len(room) > ntasks or min(room) < 1:
        return None
    tasks = [0] * len(room)
    left = ntasks
    while left:
        for i, r in enumerate(room):
            if left and tasks[i] < r:
                tasks[i] += 1
                left -= 1
    return tasks


def nodes_needed(shape: Shape, cpus: int) -> int:
    """The fewest nodes of `cpus` CPUs each that hold the job (0: none of any number can)."""
    per = slots(shape, cpus)
    if per < 1:
        return 0
    least = max(shape.nodes_min, -(-shape.ntasks // per))
    return least if shape.nodes_max is None or least <= shape.nodes_max else 0


def compressed(values: Sequence[int]) -> str:
    """Slurm's count list: runs of one value as `v(xN)` (`2(x3),1`), as SLURM_TASKS_PER_NODE."""
    out: list[str] = []
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[i]:
            j += 1
        out.append(f"{values[i]}(x{j - i + 1})" if j > i else str(values[i]))
        i = j + 1
    return ",".join(out)


def uncompressed(text: str) -> list[int]:
    """`2(x3),1` back to [2, 2, 2, 1] (SLURM_JOB_CPUS_PER_NODE, SLURM_TASKS_PER_NODE)."""
    out: list[int] = []
    for item in text.split(","):
        value, _, times = item.partition("(x")
        out += [int(value)] * (int(times.rstrip(")")) if times else 1)
    return out

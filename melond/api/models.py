"""API bodies, validated at the edge with pydantic; their schemas make the OpenAPI document."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from melond.api.tokens import MAX_TTL
from melond.spec.notices import TYPES as NOTICE_TYPES
from melond.spec.shape import MAX_COUNT, parse_distribution
from melond.spec.gres import parse_gres
from melond.spec.timespec import MAX_BYTES, MAX_SECONDS, SpecError

PATH_MAX = 4096  # Linux's


class DuplicateKey(ValueError):
    """A JSON object that names a key twice."""


def unique_keys(pairs: list[tuple[str, object]]) -> dict:
    """json.loads' object_pairs_hook: an object, unless a key comes twice (JSON leaves that to
    each reader, and readers differ: the first value or the last)."""
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        twice = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise DuplicateKey(f"the key {twice[:100]!r} is given twice in one object; give each key once")
    return out


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def _no_nul(text: str) -> str:
    """A NUL cannot cross execve or open(); refuse it here rather than fail the job on its node."""
    if "\0" in text:
        raise ValueError("contains a NUL byte, which no argument, environment value or path can hold")
    return text


def _env_name(text: str) -> str:
    if not text or "=" in text or "\0" in text:
        raise ValueError(f"{text[:100]!r} is not a variable name (empty, or holds '=' or a NUL byte)")
    return text


def _distribution(text: str) -> str:
    try:
        return parse_distribution(text)
    except SpecError as exc:
        raise ValueError(str(exc)) from None


def _gres(text: str) -> str:
    try:
        parse_gres(text)
    except SpecError as exc:
        raise ValueError(str(exc)) from None
    return text


Text = Annotated[str, AfterValidator(_no_nul)]
GresText = Annotated[str, Field(max_length=1024), AfterValidator(_gres)]
Path = Annotated[str, Field(max_length=PATH_MAX), AfterValidator(_no_nul)]
EnvName = Annotated[str, AfterValidator(_env_name)]


class SubmitRequest(Body):
    """What `mbatch` sends: the parsed options and the script text itself."""

    script: str = Field(min_length=1, description="the script's content, stored with the job")
    script_path: Path | None = None
    script_args: list[Text] = []
    name: Annotated[str, Field(min_length=1), AfterValidator(_no_nul)]  # its length: [limits] name_length
    cpus: int = Field(default=1, ge=1, le=1_000_000, description="CPUs per task (-c)")
    nodes: list[Annotated[int, Field(ge=1, le=MAX_COUNT)]] | None = Field(
        default=None, min_length=2, max_length=2, description="-N: [least, most] nodes; null = as the tasks need")
    ntasks: int | None = Field(default=None, ge=1, le=MAX_COUNT, description="-n; null = one per node")
    ntasks_per_node: int | None = Field(default=None, ge=1, le=MAX_COUNT)
    exclusive: bool = Field(default=False, description="whole nodes")
    distribution: Annotated[str, Field(max_length=64), AfterValidator(_distribution)] | None = None
    memory: int | None = Field(default=None, ge=0, le=MAX_BYTES,
                               description="bytes; null = partition default, 0 = whole node")
    mem_per_cpu: bool = False
    gres: GresText | None = Field(default=None, description="generic resources on each node: gpu:2, gpu:a100:1,lic:1")
    gpus_per_task: GresText | None = Field(default=None, description="GPUs for each task: gpu:1, gpu:a100:1")
    interactive: bool = Field(default=False, description="salloc / srun --pty: the nodes hold the allocation and "
                                                         "the user's terminal attaches (GET /jobs/{id}/terminal)")
    time_limit: int | None = Field(default=None, ge=0, le=MAX_SECONDS,
                                   description="seconds; null = partition default, 0 = none")
    output: Path = "melon-%j.out"
    error: Path | None = None
    chdir: Annotated[str, Field(min_length=1, max_length=PATH_MAX), AfterValidator(_no_nul)]
    environment: dict[EnvName, Text] = {}
    export: str = "ALL"
    nodelist: list[str] = []
    exclude: list[str] = []
    partition: str | None = None
    begin: float | None = None
    hold: bool = False
    dependency: str | None = None
    array: str | None = None
    requeue: bool = False
    signal: str | None = None
    submit_host: str | None = None
    submit_dir: str | None = None
    umask: int | None = Field(default=None, ge=0, le=0o777,
                              description="the submitter's umask, which the job runs with (SLURM_UMASK); none: 022")
    comment: Annotated[str, Field(max_length=4096), AfterValidator(_no_nul)] | None = None
    account: Annotated[str, Field(max_length=256), AfterValidator(_no_nul)] | None = None
    mail_type: list[Literal[NOTICE_TYPES]] = Field(default=[], max_length=20,
                                                  description="sbatch --mail-type, expanded (ALL: its members)")
    mail_user: Annotated[str, Field(max_length=256), AfterValidator(_no_nul)] | None = None
    time_max: int | None = Field(default=None, ge=0, le=MAX_SECONDS,
                                 description="seconds the job may grow to by automatic extensions (0 = no bound)")
    extend_step: int | None = Field(default=None, gt=0, le=MAX_SECONDS, description="seconds each automatic step adds")
    slurm_options: dict[Annotated[str, Field(max_length=64)], Annotated[Text, Field(max_length=4096)]] = Field(
        default={}, max_length=200, description="Slurm options accepted but not acted on, recorded as given")


class ExtensionRequestBody(Body):
    """More time than policy grants, asked of an operator: `add` seconds or a new total `to`, and why."""

    add: int | None = Field(default=None, gt=0, le=MAX_SECONDS)
    to: int | None = Field(default=None, ge=0, le=MAX_SECONDS)
    reason: Annotated[str, Field(min_length=1, max_length=2000), AfterValidator(_no_nul)]


class FormSubmission(Body):
    """A job from the web UI's form: the script, and the form's fields by mbatch's option names
    (`time`, `job-name`, `cpus-per-task`, `mem`, ...), which win over the script's directives."""

    script: str = Field(min_length=1)
    options: dict[Annotated[str, Field(max_length=64)], Annotated[Text, Field(max_length=4096)] | bool] = Field(
        default={}, max_length=50)
    args: list[Text] = []


class ScriptText(Body):
    """A script whose directives the web UI's form shows before submitting it."""

    script: str = Field(min_length=1)


class SessionRequest(Body):
    """Sign a browser in: a token from `mtoken create`, traded for a session cookie."""

    token: Annotated[str, Field(min_length=1, max_length=200)]


class Verdict(Body):
    """An operator's reason for a decision (required to deny)."""

    reason: Annotated[str, Field(max_length=2000), AfterValidator(_no_nul)] | None = None


class SubmitReply(Body):
    job_ids: list[int]
    warnings: list[str] = []


class TerminalOpen(Body):
    """The first message on GET /jobs/{id}/terminal: what to run on a pty on the job's first
    node, and the user's window size. `final`: its end is the allocation's (salloc's shell,
    srun --pty)."""

    argv: list[Annotated[str, Field(min_length=1, max_length=PATH_MAX), AfterValidator(_no_nul)]] = Field(
        default=[], max_length=4096, description="what to run (none: `step` is given)")
    step: int | None = Field(default=None, ge=0, description="reattach to this running session's terminal instead "
                                                            "(after melond restarted), with what it wrote meanwhile")
    rows: int = Field(default=24, ge=1, le=10_000)
    cols: int = Field(default=80, ge=1, le=10_000)
    env: dict[EnvName, Text] = {}
    cwd: Annotated[str, Field(min_length=1, max_length=PATH_MAX), AfterValidator(_no_nul)] | None = None
    final: bool = True
    watch: bool = Field(default=False, description="with `step`: one more reader of a session that runs on (sattach)")
    node: Annotated[str, Field(min_length=1, max_length=255)] | None = Field(
        default=None, description="which of the job's nodes (default: its first; srun --pty -w inside it)")


class StepTask(Body):
    rank: int = Field(ge=0, lt=1 << 31)
    localid: int = Field(ge=0, lt=1 << 31)
    env: dict[EnvName, Text] = {}
    cpus: list[Annotated[int, Field(ge=0, lt=1 << 20)]] | None = None


class StepNode(Body):
    """A step's tasks on one of the job's nodes (named as its tasks name it)."""

    node: Annotated[str, Field(min_length=1, max_length=255)]
    env: dict[EnvName, Text] = {}
    tasks: list[StepTask] = Field(min_length=1, max_length=MAX_COUNT)


STEP_NEEDS = {"step_start": ("name", "ntasks", "cpus"), "step_end": ("step_id",),
              "step_launch": ("step_id", "argv", "nodes"), "step_signal": ("step_id", "signal")}


class StepAsk(Body):
    """POST /jobs/{id}/ask: srun's asks from an allocation's shell on the login node (where
    salloc runs it when the inventory turns use_interactive_step off), the job channel's step
    requests (remote/asks.py) by the same names: a step's number and CPUs, its end, its tasks
    on the job's nodes (answered as a stream of JSON lines), a signal for them."""

    op: Literal["step_start", "step_end", "step_launch", "step_signal"]
    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    ntasks: int | None = Field(default=None, ge=1, le=MAX_COUNT)
    cpus: int | None = Field(default=None, ge=0, lt=1 << 31)
    mode: Literal["whole", "exact", "overlap"] = "whole"
    nodelist: Annotated[str, Field(max_length=4096)] | None = None
    layout: dict[Annotated[str, Field(min_length=1, max_length=255)], Annotated[int, Field(ge=1)]] | None = None
    cpus_per_task: int = Field(default=1, ge=1, lt=1 << 31)
    gpus: dict[Annotated[str, Field(min_length=1, max_length=255)], Annotated[int, Field(ge=1)]] | None = None
    step_id: int | None = Field(default=None, ge=0, lt=1 << 31)
    exit_code: int | None = Field(default=None, ge=0, lt=1 << 31)
    signal: int | None = Field(default=None, ge=0, lt=1 << 31)
    cpu_time: float | None = Field(default=None, ge=0)
    max_rss: int | None = Field(default=None, ge=0)
    oom: bool = False
    argv: list[Annotated[str, Field(min_length=1, max_length=PATH_MAX), AfterValidator(_no_nul)]] | None = Field(
        default=None, min_length=1, max_length=4096)
    cwd: Annotated[str, Field(min_length=1, max_length=PATH_MAX), AfterValidator(_no_nul)] | None = None
    env: dict[EnvName, Text] | None = None
    nodes: list[StepNode] | None = Field(default=None, min_length=1, max_length=MAX_COUNT)

    @model_validator(mode="after")
    def _complete(self) -> "StepAsk":
        missing = [name for name in STEP_NEEDS[self.op] if getattr(self, name) is None]
        if missing:
            raise ValueError(f"{self.op} needs {', '.join(missing)}")
        return self


class JobIds(Body):
    """POST /jobs/cancel, /jobs/hold, /jobs/release: many jobs at once by their own ids (a task's
    own, not its array's), as a filter picked them; pending ones change in one transaction."""

    ids: list[int] = Field(max_length=1_000_000)


class PriorityBody(Body):
    """POST /jobs/{id}/priority: an operator's priority for a pending job (scontrol update Priority=)."""

    priority: int = Field(ge=0, le=4294967295)


class Relinquish(Body):
    """POST /jobs/{id}/relinquish: salloc's command on the login node ended, with this code."""

    exit_code: int = Field(default=0, ge=0, le=255)


class TerminalInput(Body):
    """What follows on the terminal: keystrokes (`stdin`, base64) and window sizes ([rows, cols])."""

    stdin: Annotated[str, Field(max_length=1 << 20)] | None = None
    resize: Annotated[list[Annotated[int, Field(ge=1, le=10_000)]], Field(min_length=2, max_length=2)] | None = None


class ExtendRequest(Body):
    """Either `add` seconds to the limit, set it `to` a new total (0 = unlimited, operators only),
    or `max`: as much as delays no waiting job, within MaxTime and the caps. `dry_run` answers
    what would happen (granted or refused, the new limit, whom it would delay) and changes nothing."""

    add: int | None = Field(default=None, gt=0, le=MAX_SECONDS)
    to: int | None = Field(default=None, ge=0, le=MAX_SECONDS)
    max: bool = False
    dry_run: bool = False


class SignalRequest(Body):
    """A signal to send to a running job: a name such as USR1 (SIG optional), which the node
    turns into its own number, or a number 1-64; `to` says which processes get it: `all` of
    them (`mcancel -s`, `scancel -f`), the `steps` srun started (`scancel -s`), or the `batch`
    shell alone (`scancel -b`)."""

    signal: Annotated[int, Field(ge=1, le=64, strict=True)] | Annotated[str, Field(min_length=1, max_length=12)]
    to: Literal["all", "steps", "batch"] = "all"
    step: int | None = Field(default=None, ge=0, le=2**31, description="one running step's tasks alone (scancel J.S)")


class NodeAction(Body):
    """Why an operator drains or downs a node (shown by minfo)."""

    reason: str = Field(min_length=1, max_length=1000)


class TokenRequest(Body):
    """A new token's lifetime in seconds (default 30 days, at most 365)."""

    ttl: int | None = Field(default=None, ge=1, le=MAX_TTL)


class TokenReply(Body):
    """The token itself appears here once; melond keeps only its hash."""

    token: str
    id: str
    user: str
    created: float
    expires: float


class RevokeRequest(Body):
    """Token ids to revoke, or `all` (operators: every user's tokens)."""

    ids: list[str] = Field(default=[], max_length=1000)
    all: bool = False


class ErrorBody(Body):
    code: str
    message: str


class ErrorReply(Body):
    error: ErrorBody


class Durations(Body):
    """Durations of one kind of event since melond started, in seconds."""

    count: int
    total: float
    last: float | None
    max: float | None


class RouteFigures(Body):
    """An API route's requests since melond started: how many, and their time in all (seconds)."""

    method: str
    route: str = Field(description="the route template, e.g. /api/v1/jobs/{job_id}")
    count: int
    total: float


class StatsReply(Body):
    """melond's figures since it started (`minfo --stats`, `sdiag`); times are epoch seconds."""

    time: float
    since: float = Field(description="when this melond started")
    threads: int
    requests_in_flight: int
    store_waiting: int = Field(description="writes queued for the next group commit")
    jobs_submitted: int
    jobs_started: int
    jobs_completed: int
    jobs_cancelled: int
    jobs_failed: int = Field(description="ended FAILED, TIMEOUT, OUT_OF_MEMORY or NODE_FAIL")
    jobs_requeued: int
    jobs_extended: int
    jobs_pending: int
    jobs_running: int
    scheduler: Durations = Field(description="scheduling passes that planned")
    last_queue_length: int = Field(description="pending jobs the last pass looked at")
    store_commits: Durations
    requests: list[RouteFigures]


class HealthDatabase(Body):
    writable: bool
    problem: str | None = Field(default=None, description="what stopped the write: timeout, disk_full, ...")


class HealthNodes(Body):
    up: int
    total: int


class HealthLeader(Body):
    """Who leads, where two melonds share a PostgreSQL database ([store] url)."""

    role: Literal["leader", "standby"] = Field(description="this melond's part")
    epoch: int = Field(description="the leader's epoch: one more at each change of leader")
    since: float | None = Field(default=None, description="when the leader began to lead (epoch seconds)")
    holder: str | None = Field(default=None, description="the leading melond: host:pid:nonce")
    address: str | None = Field(default=None, description="where clients reach the leading melond")


class HealthReply(Body):
    """`GET /health`: no token, no job's data; 200 while a write reaches the database, else 503.
    `status`: ok, degraded (a node is down), failing (the database is not writable) or standby
    (another melond leads: a 503, so that a load balancer sends clients to the leader)."""

    status: Literal["ok", "degraded", "failing", "standby"]
    database: HealthDatabase
    nodes: HealthNodes
    leader: HealthLeader | None = None

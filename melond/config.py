"""The inventory: partitions, operators, limits and (later) nodes, from one TOML file.

No file, or a file without nodes, means the embedded default: one node, this
machine, in the default partition. Validation errors name the file, the table
and the field, so a typo never starts a daemon with a half-read inventory.
"""
from __future__ import annotations

import socket
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from melond.errors import MelonError
from melond.spec.gres import Device, node_devices
from melond.spec.timespec import SpecError, parse_size_mib, parse_time_limit
from melond.spec.tres import parse_billing, parse_tres
from melond.state.dialect import is_url
from melond.trust import check_input

DEFAULT_PARTITION = "local"
LOCAL_NODE = "local"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _tres_text(v: object) -> object:
    if isinstance(v, str):
        parse_tres(v)  # refused here, with the form, rather than at the first job
    return v


def _wall(v: object) -> object:
    return parse_time_limit(v) if isinstance(v, str) else v


class Partition(Strict):
    """A queue of nodes with its time rules (Slurm's MaxTime and DefaultTime)."""

    max_time: int = 0  # seconds, 0 = unlimited
    default_time: int | None = None  # seconds; None = max_time
    default: bool = False
    default_mem_per_cpu: int | None = None  # MiB; None = the node's memory per CPU
    max_extension: int | None = None  # seconds an owner may add to one job over its life; None = no cap
    max_extensions: int | None = Field(default=None, ge=0)  # times an owner may extend one job; None = no cap
    # "no-delay": an owner's extension of a running job is granted only if, by the scheduler's
    # current plan, it starts no other user's waiting job later (OAR's check); "always": within the
    # caps. Unset: "no-delay" where melond serves many users (as root), else "always" (extend_policy()).
    extend_policy: Literal["always", "no-delay"] | None = None
    # Per-user caps on running jobs here (Slurm's partition QOS), and on one job's nodes
    max_jobs_per_user: int | None = Field(default=None, ge=0)
    max_tres_per_user: str | None = None  # "cpu=64,mem=256G,gres/gpu=4"
    max_nodes: int | None = Field(default=None, ge=1)
    min_nodes: int | None = Field(default=None, ge=1)  # a job here spans at least this many nodes
    max_cpus_per_node: int | None = Field(default=None, ge=1)  # CPUs of one node its jobs use together, at most

    _tres = field_validator("max_tres_per_user")(_tres_text)

    @model_validator(mode="after")
    def _node_range(self) -> Partition:
        if self.min_nodes is not None and self.max_nodes is not None and self.min_nodes > self.max_nodes:
            raise ValueError(f"min_nodes {self.min_nodes} is above max_nodes {self.max_nodes}, so no job could "
                             f"run here; lower min_nodes or raise max_nodes")
        return self

    @field_validator("max_time", "default_time", "max_extension", mode="before")
    @classmethod
    def _time(cls, v: object) -> object:
        return parse_time_limit(v) if isinstance(v, str) else v

    @field_validator("default_mem_per_cpu", mode="before")
    @classmethod
    def _size(cls, v: object) -> object:
        return parse_size_mib(v) if isinstance(v, str) else v


class GresEntry(Strict):
    """One of a node's generic resources, in gres.conf's terms: devices (`files`, bracket ranges
    allowed: `/dev/nvidia[0-3]`) of a `name` and model `type`, or a countable resource with no
    files (`{name = "license_x", count = 4}`)."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    type: str | None = Field(default=None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    count: int | None = Field(default=None, ge=1, le=1 << 20)
    files: str | None = Field(default=None, min_length=1, max_length=4096)


class Node(Strict):
    """A compute node. Without `host` it is the embedded local node, reached by a local pipe."""

    host: str | None = None
    port: int = Field(default=22, ge=1, le=65535)
    user: str | None = None  # the SSH login; default: melond's own user
    personal: bool = False  # each user's jobs log in as that user's own login ([logins])
    identity_file: str | None = None
    known_hosts: str | None = None  # default: ~/.ssh/known_hosts of melond's user
    python: str | None = None  # the node's interpreter; default: python3 over SSH, melond's own locally
    limits: Literal["auto", "systemd", "systemd-user", "cgroup-v2-user", "cgroup-v1-user", "cgroup-v2", "cgroup-v1", "none"] = "auto"  # auto: the best the node has
    spool: str | None = None  # on the node; default: /var/lib/melon/spool as root, else ~/.local/state/melon/spool
    # (a local node: STATE_DIR/spool; give each of several local nodes its own)
    partition: str = DEFAULT_PARTITION
    cpus: int | None = Field(default=None, ge=1)  # CPUs to schedule (Slurm's CPUs=); default: the probe's
    memory: int | None = Field(default=None, ge=1)  # MiB cap on the probe's memory
    labels: list[str] = []
    gres: list[GresEntry] = []  # GPUs and other generic resources, in the order Slurm numbers them (IDX)
    # A simulated node (melond/nodes/simulated.py): the helper's protocol with jobs that are a
    # duration and an exit code, no processes; for scale tests and benchmarks
    simulate: bool = False

    @model_validator(mode="after")
    def _simulated(self) -> Node:
        if self.simulate and self.host is not None:
            raise ValueError("a simulated node has no host; drop `host` or `simulate`")
        return self

    @field_validator("gres")
    @classmethod
    def _devices(cls, v: list[GresEntry]) -> list[GresEntry]:
        node_devices([e.model_dump() for e in v])  # a SpecError names what is wrong
        return v

    @property
    def devices(self) -> tuple[Device, ...]:
        return node_devices([e.model_dump() for e in self.gres])

    @field_validator("memory", mode="before")
    @classmethod
    def _size(cls, v: object) -> object:
        return parse_size_mib(v) if isinstance(v, str) else v

    @property
    def remote(self) -> bool:
        return self.host is not None


class Login(Strict):
    """A user's own login on the personal nodes (`[logins.USER]`; before, `[accounts.USER]`):
    their jobs travel over a connection of their own, with their key, and run as that login."""

    user: str | None = None  # the login on the nodes; default: the user's own name
    identity_file: str | None = None  # default: the node's (or ssh's defaults)


class Qos(Strict):
    """A quality of service (`[qos.NAME]`, Slurm's sacctmgr QOS): a priority factor and limits.
    TRES limits are Slurm's strings (`cpu=8,mem=64G,gres/gpu=4`); `max_wall` a time limit."""

    priority: int = Field(default=0, ge=0)
    usage_factor: float = Field(default=1.0, ge=0)  # its jobs' usage counts this many times for fair-share
    max_wall: int | None = Field(default=None, ge=0)  # seconds
    max_jobs_per_user: int | None = Field(default=None, ge=0)  # running at once
    max_submit_jobs_per_user: int | None = Field(default=None, ge=0)  # pending and running
    max_tres_per_user: str | None = None  # held by a user's running jobs in this QOS together
    max_tres_per_job: str | None = None
    grp_tres: str | None = None  # held by all running jobs in this QOS together
    # Extension budget: how many extensions, and how many TRES-hours of them, a user may take in
    # a rolling window (MetaCentrum's qextend: 20 and cpu=2880 per 30 days); beyond, a request
    max_extensions_per_user: int | None = Field(default=None, ge=0)
    max_extension_tres_hours_per_user: str | None = None
    extension_window: int = Field(default=30 * 86400, gt=0)
    # Preemption (Slurm's preempt/qos): the QOS whose running jobs this QOS' waiting jobs may
    # preempt; how this QOS' own jobs are preempted (requeued, else cancelled) and the seconds they
    # are given, after their warning signal (their --signal, else SIGTERM), before it happens
    preempt: list[str] = []
    preempt_mode: Literal["requeue", "cancel"] = "cancel"
    grace_time: int = Field(default=0, ge=0)

    _tres = field_validator("max_tres_per_user", "max_tres_per_job", "grp_tres",
                            "max_extension_tres_hours_per_user")(_tres_text)
    _time = field_validator("max_wall", "extension_window", mode="before")(_wall)


class Account(Strict):
    """A project jobs are charged to (`[accounts.NAME]`, Slurm's account): its place in the tree
    (`parent`, default the root), its users, its shares of the cluster, the QOS its jobs may use,
    and limits on its users' jobs (`max_jobs`, `max_submit_jobs`: per user) and on all of its
    jobs together, its sub-accounts' included (`grp_tres`)."""

    parent: str | None = None
    users: list[str] = []
    shares: int = Field(default=1, ge=0)
    description: str = ""
    qos: list[str] | None = None  # the QOS its jobs may ask for; None: every one
    default_qos: str | None = None
    max_jobs: int | None = Field(default=None, ge=0)
    max_submit_jobs: int | None = Field(default=None, ge=0)
    max_tres_per_job: str | None = None
    max_wall: int | None = Field(default=None, ge=0)
    grp_tres: str | None = None
    max_extensions_per_user: int | None = Field(default=None, ge=0)  # the extension budget, as a QOS'
    max_extension_tres_hours_per_user: str | None = None
    extension_window: int = Field(default=30 * 86400, gt=0)

    _tres = field_validator("max_tres_per_job", "grp_tres", "max_extension_tres_hours_per_user")(_tres_text)
    _time = field_validator("max_wall", "extension_window", mode="before")(_wall)


class Priority(Strict):
    """Multifactor priority (`[priority]`, Slurm's PriorityWeight* and friends). Melon's default
    weights order several users fairly out of the box: fair-share first, then age and QOS."""

    weight_age: int = Field(default=1000, ge=0)
    weight_fairshare: int = Field(default=10000, ge=0)
    weight_jobsize: int = Field(default=0, ge=0)
    weight_partition: int = Field(default=0, ge=0)
    weight_qos: int = Field(default=1000, ge=0)
    favor_small: bool = False
    decay_half_life: int = Field(default=7 * 86400, ge=0)  # seconds (a time spec: "7-0"); 0: no decay
    max_age: int = Field(default=7 * 86400, gt=0)
    calc_period: float = Field(default=300.0, gt=0)  # seconds between recomputing every pending job's
    tres_billing_weights: str | None = None  # "CPU=1.0,Mem=0.25G,GRES/gpu=2.0"; none: CPU=1

    _time = field_validator("decay_half_life", "max_age", mode="before")(_wall)

    @field_validator("tres_billing_weights")
    @classmethod
    def _billing(cls, v: str | None) -> str | None:
        if v is not None:
            parse_billing(v)
        return v


class User(Strict):
    """A user's settings (`[users.NAME]`): the account their jobs are charged to without --account."""

    default_account: str | None = None


class Tls(Strict):
    """The TCP listener's certificate and key (PEM), paths relative to the inventory file."""

    cert: str
    key: str


class Notify(Strict):
    """Where job notices go (sbatch --mail-type/--mail-user): a command melond runs with the notice
    as JSON on its stdin (argv, no shell), or an HTTP(S) webhook it POSTs the JSON to."""

    command: list[str] | None = None
    webhook: str | None = None
    retries: int = Field(default=4, ge=0, le=20)  # after the first try, with doubling delays from 1 s
    timeout: float = Field(default=10.0, gt=0, le=300)

    @field_validator("webhook")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError("webhook must be an http:// or https:// URL")
        return v


class Limits(Strict):
    """Caps on one submission, on a user's submit rate and on API connections (`[limits]`); sizes
    in bytes, times in seconds (docs/design.md, "API connections", says why these defaults)."""

    script_size: int = Field(default=1024 * 1024, ge=1)
    args: int = Field(default=4096, ge=0)
    arg_length: int = Field(default=128 * 1024, ge=1)  # Linux's MAX_ARG_STRLEN
    args_total: int = Field(default=1024 * 1024, ge=1)
    name_length: int = Field(default=1024, ge=1)
    env_size: int = Field(default=1024 * 1024, ge=1)  # NAME=value summed over every variable
    submit_burst: int = Field(default=10_000, ge=1)
    submit_rate: float = Field(default=1_000.0, gt=0)  # per second, per user
    header_timeout: float = Field(default=10.0, gt=0)  # a request's head, from the connection's opening or last reply
    body_timeout: float = Field(default=30.0, gt=0)  # a request's body, from its head
    connections_per_client: int = Field(default=64, ge=1)  # per uid on the Unix socket, per address on TCP


class Web(Strict):
    """The web UI (`[web]`). `open_job_list`: the job list, the nodes and the live updates are
    readable without signing in, as `squeue` is for anyone on a login node; a job's page, its
    output and script, and every action still need a token."""

    open_job_list: bool = False


class Metrics(Strict):
    """`GET /metrics` (`[metrics]`). `public`: Prometheus may scrape the TCP port without a token
    (put the port where only the monitoring network reaches it); `per_user`: series by user too,
    one set per user who has jobs, which a large site may not want to store."""

    public: bool = False
    per_user: bool = False


class StoreConfig(Strict):
    """Where melond keeps its state (`[store]`). No `url`: SQLite, `melon.db` in the state
    directory, for one melond. `url`: a PostgreSQL database (`postgresql://role@host/db`) that
    two melonds, on two login nodes, may share: one leads by a lease it renews every `lease`/3
    seconds, the other stands by and takes over once the lease has run out (docs/design.md,
    High availability). `lease`: seconds; longer rides out a slower database restart, shorter
    takes over sooner."""

    url: str | None = None
    lease: float = Field(default=5.0, ge=1, le=300)

    @field_validator("url")
    @classmethod
    def _postgresql(cls, v: str | None) -> str | None:
        if v is not None and not is_url(v):
            raise ValueError("must be a PostgreSQL URL (postgresql://role@host/database); leave `url` out to keep "
                             "the state in SQLite in the state directory")
        return v


class Inventory(Strict):
    operators: list[str] = []
    store: StoreConfig = StoreConfig()
    web: Web = Web()
    metrics: Metrics = Metrics()
    tls: Tls | None = None  # TLS for `melond --port`; --tls-cert/--tls-key override it
    notify: Notify | None = None  # where --mail-type notices go; none: recorded, not sent
    defaults: dict[str, object] = {}  # field values every [nodes.*] table starts from
    kill_wait: float = Field(default=30.0, ge=0)
    node_timeout: float = Field(default=60.0, gt=0)  # unreachable this long: the node is lost (Slurm's SlurmdTimeout)
    gpu_sample_interval: float = Field(default=30.0, gt=0)  # seconds between asking GPU nodes' nvidia-smi for use
    max_batch_requeue: int = Field(default=5, ge=0)  # automatic requeues of one job (Slurm's MaxBatchRequeue)
    return_to_service: Literal[0, 1] = 1  # 1: a lost node returns by itself once reachable; 0: stays drained
    # salloc's command on a terminal on the allocation's first node (Slurm's LaunchParameters=use_interactive_step,
    # which most sites set); false: on the login node where salloc runs, its srun asking melond's API
    use_interactive_step: bool = True
    tasks_max: int = Field(default=8192, ge=0)
    limits: Limits = Limits()
    partitions: dict[str, Partition] = {}
    nodes: dict[str, Node] = {}
    logins: dict[str, Login] = {}  # personal mode: each user's own login on the personal nodes
    accounts: dict[str, Account] = {}  # projects jobs are charged to (Slurm's accounts), in a tree
    users: dict[str, User] = {}
    qos: dict[str, Qos] = {}  # Slurm's QOS; `normal` (no limits) is every job's unless an account says else
    priority: Priority = Priority()

    def links(self) -> dict[str, tuple[str, str | None, Node]]:
        """Every connection melond keeps, by its name: (node, user, the node as that connection
        logs in). One per node, and on a personal node one per user in [logins], named
        `user@node`, logged in as that user's login with their key."""
        out: dict[str, tuple[str, str | None, Node]] = {}
        names = self.login_names()
        for name, node in self.node_table().items():
            if not node.personal:
                out[name] = (name, None, node)
                continue
            for user, own in self.logins.items():
                login = {"user": names[user], "personal": False}
                if own.identity_file:
                    login["identity_file"] = own.identity_file
                out[f"{user}@{name}"] = (name, user, node.model_copy(update=login))
        return out

    def login_names(self) -> dict[str, str]:
        """Each user in [logins] and the login their jobs run as on the personal nodes."""
        return {user: login.user or user for user, login in self.logins.items()}

    def personal_nodes(self) -> set[str]:
        return {name for name, node in self.node_table().items() if node.personal}

    def partition_names(self) -> list[str]:
        return list(self.partitions) or [DEFAULT_PARTITION]

    def partition(self, name: str) -> Partition:
        return self.partitions.get(name) or Partition()

    def default_partition(self) -> str:
        for name, p in self.partitions.items():
            if p.default:
                return name
        return next(iter(self.partitions), DEFAULT_PARTITION)

    def node_table(self) -> dict[str, Node]:
        """The nodes to run; the embedded local node when the file lists none."""
        return dict(self.nodes) or {LOCAL_NODE: Node(partition=self.default_partition())}

    def job_host_names(self) -> dict[str, str]:
        """The name a node's jobs see for it where that is not its own (SLURM_JOB_NODELIST,
        SLURMD_NODENAME): the embedded node is `local` to Melon, a name nothing resolves, so its
        jobs see the machine's host name, which MPI launchers, ssh and `scontrol show hostnames` can use."""
        return {} if self.nodes else {LOCAL_NODE: local_host()}

    def node_named(self, name: str) -> str:
        """A node's name from what a user typed: the embedded node also answers to the host name
        its jobs see (`sbatch -w $(hostname)`)."""
        return next((node for node, host in self.job_host_names().items() if host == name), name)


def local_host() -> str:
    """This machine's host name, as `hostname` prints it."""
    return socket.gethostname() or "localhost"


def load(path: str | None) -> Inventory:
    """Read and validate; raise MelonError with file, table and field on any problem."""
    if path is None:
        return Inventory()
    p = Path(path)
    check_input(path, "inventory")
    try:
        data = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise MelonError(f"inventory {path}: no such file; pass an existing TOML file to --inventory") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MelonError(f"inventory {path}: cannot read it: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise MelonError(f"inventory {path}: not valid TOML: {exc}") from None
    _old_logins(data)
    if isinstance(data.get("nodes"), dict) and isinstance(data.get("defaults"), dict):
        data["nodes"] = {name: _with_defaults(data["defaults"], table if isinstance(table, dict) else {})
                         for name, table in data["nodes"].items()}
    try:
        inv = Inventory.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise MelonError(f"inventory {path}: {problems}") from None
    except SpecError as exc:
        raise MelonError(f"inventory {path}: {exc}") from None
    _check_sharing(inv, f"inventory {path}")
    base = Path(path).resolve().parent
    if inv.tls is not None:
        inv = inv.model_copy(update={"tls": _resolve_files(inv.tls, ("cert", "key"), base, f"inventory {path}: tls")})
    for user, login in list(inv.logins.items()):
        inv.logins[user] = _resolve_files(login, ("identity_file",), base, f"inventory {path}: logins.{user}")
    for name, node in list(inv.nodes.items()):
        inv.nodes[name] = node = _resolve_files(node, ("identity_file", "known_hosts"), base,
                                                f"inventory {path}: nodes.{name}")
        if "@" in name:
            raise MelonError(f"inventory {path}: nodes.{name}: a node's name may not contain '@' (melond names a "
                             f"personal node's connections user@node); rename it")
        if node.personal:
            _check_personal(inv, name, node, f"inventory {path}: nodes.{name}")
        if node.partition not in inv.partition_names():
            raise MelonError(f"inventory {path}: nodes.{name}.partition: unknown partition {node.partition!r}; "
                             f"define [partitions.{node.partition}] or use one of {inv.partition_names()}")
    return inv


def _check_sharing(inv: Inventory, where: str) -> None:
    """Accounts, users and QOS name one another: each name must be defined, the tree a tree."""
    qos = {"normal", *inv.qos}
    for name, rules in inv.qos.items():
        for other in rules.preempt:
            if other not in qos or other == name:
                raise MelonError(f"{where}: qos.{name}.preempt: {other!r} is {'itself' if other == name else 'no QOS'}; "
                                 f"name other QOS (the QOS are {', '.join(sorted(qos))})")
    for name, account in inv.accounts.items():
        if name == "root":
            raise MelonError(f"{where}: accounts.root: root is the tree's top, above every account; name the "
                             f"account otherwise")
        if account.parent not in (None, "root") and account.parent not in inv.accounts:
            raise MelonError(f"{where}: accounts.{name}.parent: no account {account.parent!r}; define "
                             f"[accounts.{account.parent}] or leave parent out (the root)")
        for q in [*(account.qos or []), *([account.default_qos] if account.default_qos else [])]:
            if q not in qos:
                raise MelonError(f"{where}: accounts.{name}: no QOS {q!r}; define [qos.{q}] (the QOS are "
                                 f"{', '.join(sorted(qos))})")
        if account.default_qos and account.qos is not None and account.default_qos not in account.qos:
            raise MelonError(f"{where}: accounts.{name}.default_qos: {account.default_qos} is not among its qos "
                             f"({', '.join(account.qos)})")
        seen, up = {name}, account.parent
        while up not in (None, "root"):
            if up in seen:
                raise MelonError(f"{where}: accounts.{name}.parent: the parents go round in a circle "
                                 f"({' -> '.join([*seen, up])}); an account's parent is above it")
            seen.add(up)
            up = inv.accounts[up].parent
    for user, settings in inv.users.items():
        account = settings.default_account
        if account is not None and user not in (inv.accounts.get(account) or Account()).users:
            raise MelonError(f"{where}: users.{user}.default_account: {account!r} is no account of {user}'s; add "
                             f"{user} to [accounts.{account}] users, or name one that lists them")


LOGIN_FIELDS = frozenset(Login.model_fields)


def _old_logins(data: dict) -> None:
    """The old spelling of [logins]: `[accounts.USER]` tables of personal logins (user,
    identity_file), in an inventory with personal nodes and no [logins], are read as [logins]
    (an account, a project, has other fields: parent, users, shares, ...)."""
    accounts, nodes = data.get("accounts"), data.get("nodes")
    defaults = data.get("defaults") if isinstance(data.get("defaults"), dict) else {}
    personal = defaults.get("personal") is True or (isinstance(nodes, dict) and any(
        isinstance(t, dict) and t.get("personal") is True for t in nodes.values()))
    if (personal and "logins" not in data and isinstance(accounts, dict) and accounts
            and all(isinstance(t, dict) and set(t) <= LOGIN_FIELDS for t in accounts.values())):
        data["logins"] = data.pop("accounts")


def _with_defaults(defaults: dict, table: dict) -> dict:
    """A node's table over [defaults]; a personal node takes no login account or spool from
    there: it logs in as each user's own account, into that account's spool."""
    merged = {**defaults, **table}
    if merged.get("personal") is True:
        for field in ("user", "spool"):
            if field not in table:
                merged.pop(field, None)
    return merged


def _check_personal(inv: Inventory, name: str, node: Node, where: str) -> None:
    """A personal node logs in as each user's own account, over SSH, into each account's spool."""
    if not node.remote:
        raise MelonError(f"{where}.personal: only a node reached over SSH (with host) can be personal; "
                         f"melond cannot log in to this machine as other users")
    if not inv.logins:
        raise MelonError(f"{where}.personal: no [logins.USER] table maps users to their own logins; add one "
                         f"per user (user = \"their login\", identity_file = \"their key\")")
    if node.user is not None:
        raise MelonError(f"{where}.user: a personal node logs in as each user's own login ([logins]), "
                         f"not as {node.user!r}; remove user (from [defaults] too)")
    if node.spool is not None:
        raise MelonError(f"{where}.spool: each account of a personal node keeps its own spool "
                         f"(~/.local/state/melon/spool); remove spool")


def _resolve_files(table: Strict, fields: tuple[str, ...], base: Path, where: str) -> Strict:
    """The table with its file fields made absolute (relative paths count from the inventory's folder)."""
    files = {}
    for field in fields:
        value = getattr(table, field)
        if value is None:
            continue
        resolved = base / Path(value).expanduser()
        if not resolved.is_file():
            raise MelonError(f"{where}.{field}: no such file {value!r}")
        check_input(str(resolved), f"{where}.{field}:")
        files[field] = str(resolved)
    return table.model_copy(update=files) if files else table

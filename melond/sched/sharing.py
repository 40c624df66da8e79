"""Sharing a cluster: which account a job is charged to and which QOS it runs under, the limits
checked at submission, and the pools of resources the planner counts running jobs against
(melond.sched.plan), each with Slurm's pending reason and a sentence that says it plainly. Pure.

Accounts form a tree (a `parent`, else the root) with users under them; a user's jobs are
charged to `--account` if the user belongs to it, else to their default account (their
`[users.NAME] default_account`, else the first account listing them). A job's QOS is `--qos`, if
its account allows it, else the account's default, else `normal`. Where no account is
configured, jobs are charged to none and only QOS limits apply.

Limits, as Slurm's (resource_limits.html), counted in TRES (cpu, mem, node, gres/NAME):
- per user in a QOS: MaxJobsPerUser, MaxTRESPerUser (running jobs); MaxSubmitJobsPerUser
  (pending and running, at submission);
- per job: MaxTRESPerJob and MaxWall of the QOS and of the account and its ancestors;
- per account, its sub-accounts' jobs included: GrpTRES; per user in an account: MaxJobs,
  MaxSubmitJobs; per QOS, all users together: GrpTRES.
A job that breaks a per-job limit on its own is refused at submission, naming the limit (Slurm
pends it for ever unless the QOS has DenyOnLimit; a job that can never start is better refused).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from melond.spec.gres import merge, need, parse_list, scaled
from melond.spec.timespec import format_limit
from melond.spec.tres import Tres, format_tres, job_tres, over, parse_tres
from melond.state.job import NORMAL_QOS, Job

NORMAL = NORMAL_QOS
ROOT = "root"
JOBS = "jobs"  # a pool's count of running jobs, beside its TRES

_KIND = {"cpu": "Cpu", "node": "Node"}


class PolicyError(Exception):
    """A submission the accounting policy refuses: Slurm's reason and a sentence."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class QosRules:
    name: str
    priority: int = 0
    max_wall: int | None = None
    max_jobs_per_user: int | None = None
    max_submit_jobs_per_user: int | None = None
    max_tres_per_user: Tres = field(default_factory=dict)
    max_tres_per_job: Tres = field(default_factory=dict)
    grp_tres: Tres = field(default_factory=dict)
    budget: Budget | None = None
    preempt: tuple[str, ...] = ()  # the QOS whose running jobs this one's waiting jobs may preempt
    preempt_mode: str = "cancel"  # how this QOS' jobs are preempted: "requeue" or "cancel"
    grace_time: int = 0  # seconds between their warning signal and their preemption
    usage_factor: float = 1.0  # its jobs' usage is counted this many times for fair-share (UsageFactor)


@dataclass(frozen=True, slots=True)
class Budget:
    """How many extensions (`count`), and how many TRES-hours of extension (`tres_hours`), a user
    may take of a QOS' or an account's jobs in a rolling `window` of seconds."""

    count: int | None = None
    tres_hours: Tres = field(default_factory=dict)
    window: float = 30 * 86400.0

    @property
    def empty(self) -> bool:
        return self.count is None and not self.tres_hours


@dataclass(frozen=True, slots=True)
class AccountRules:
    name: str
    parent: str | None = None
    users: tuple[str, ...] = ()
    shares: int = 1
    qos: tuple[str, ...] | None = None  # those its jobs may ask for; None: every one
    default_qos: str | None = None
    max_jobs: int | None = None
    max_submit_jobs: int | None = None
    max_tres_per_job: Tres = field(default_factory=dict)
    max_wall: int | None = None
    grp_tres: Tres = field(default_factory=dict)
    budget: Budget | None = None


@dataclass(frozen=True, slots=True)
class Pool:
    """One limit running jobs are counted against: `key` names whose use it is, `caps` the most
    of each TRES (and JOBS) they may hold together; `reasons` Slurm's pending reason for each,
    `says` what mshow tells in words ("{user} runs {use} of {cap} ...")."""

    key: str
    caps: Mapping[str, int]
    reasons: Mapping[str, str]
    says: str


def tres_of(job: Job) -> Tres:
    """What a job holds, or asks to hold, counted as limits count it."""
    shape = job.shape
    nodes = len(job.placed) if job.node else max(shape.nodes_min, 1)
    per_node, per_task = parse_list(job.gres), parse_list(job.gpus_per_task)
    if nodes <= 1 and not shape.wide:
        gres = need(per_node, per_task, shape.ntasks)
    else:
        gres = merge(scaled(per_node, nodes), scaled(per_task, shape.ntasks))
    counts: dict[str, int] = {}
    for g in gres:
        counts[g.name] = counts.get(g.name, 0) + g.count
    memory = sum(p.memory for p in job.placed) if job.node else job.memory_mib * nodes
    return job_tres(job.cpus, memory, nodes, counts)


def _tres_reason(prefix: str, suffix: str, name: str) -> str:
    """Slurm's reason for a TRES limit (acct_policy.c _get_tres_state_reason; job_state_reason.c
    spells them): QOSGrpCpuLimit, QOSMaxGRESPerUser, QOSMaxMemoryPerJob, AssocGrpMemLimit, ..."""
    short = suffix.removesuffix("Limit")
    if name.startswith("gres/"):
        return f"{prefix}GRES{short}"
    if name == "billing":
        return f"{prefix}Billing{short}"
    if name == "mem":
        if prefix.endswith("Max"):
            return f"{prefix}{'Memory' if prefix.startswith('QOS') else 'Mem'}{short}"
        return f"{prefix}Mem{suffix}"
    return f"{prefix}{_KIND[name]}{suffix}"


@dataclass(frozen=True, slots=True)
class PartitionRules:
    """A partition's caps on each user's running jobs there, and on one job's nodes (the simple
    per-user caps small sites set: Slurm puts them in a partition QOS)."""

    name: str
    max_jobs_per_user: int | None = None
    max_tres_per_user: Tres = field(default_factory=dict)
    max_nodes: int | None = None
    min_nodes: int | None = None


class Sharing:
    """Accounts, users, QOS and partitions' per-user caps as the inventory has them."""

    def __init__(self, accounts: Iterable[AccountRules] = (), default_accounts: Mapping[str, str] | None = None,
                 qos: Iterable[QosRules] = (), partitions: Iterable[PartitionRules] = ()) -> None:
        self.partitions = {p.name: p for p in partitions}
        self.accounts = {a.name: a for a in accounts}
        self.qos = {q.name: q for q in qos}
        self.qos.setdefault(NORMAL, QosRules(NORMAL))
        self.members: dict[str, list[str]] = {}
        for account in self.accounts.values():
            for user in account.users:
                self.members.setdefault(user, []).append(account.name)
        self.defaults = dict(default_accounts or {})

    @property
    def configured(self) -> bool:
        return bool(self.accounts)

    def chain(self, account: str) -> list[AccountRules]:
        """The account and its ancestors, nearest first (the root is implicit)."""
        out, seen, name = [], set(), account
        while name and name != ROOT and name not in seen and name in self.accounts:
            seen.add(name)
            out.append(self.accounts[name])
            name = self.accounts[name].parent or ""
        return out

    def account_for(self, user: str, asked: str | None) -> str | None:
        """The account a user's job is charged to; PolicyError where it may not be."""
        if not self.configured:
            return asked or None
        mine = self.members.get(user, [])
        if asked:
            if asked not in mine:
                where = f"{user}'s accounts are {', '.join(mine)}" if mine else f"{user} belongs to no account"
                raise PolicyError("InvalidAccount", f"Invalid account or account/partition combination specified: "
                                                    f"{asked!r} ({where}; ask an operator to add you to it)")
            return asked
        default = self.defaults.get(user)
        if default in mine:
            return default
        if mine:
            return mine[0]
        raise PolicyError("InvalidAccount", f"Invalid account or account/partition combination specified: {user} "
                                            f"belongs to no account (the inventory's [accounts.NAME] users); ask an "
                                            f"operator to add you to one")

    def qos_for(self, account: str | None, asked: str | None) -> str:
        """The QOS a job runs under; PolicyError for one that does not exist or its account may not use."""
        rules = self.accounts.get(account or "")
        allowed = rules.qos if rules is not None and rules.qos is not None else None
        name = asked or (rules.default_qos if rules is not None and rules.default_qos else None) or \
            (allowed[0] if allowed else NORMAL)
        if name not in self.qos:
            raise PolicyError("InvalidQOS", f"Invalid qos specification: {name!r} (the QOS are "
                                            f"{', '.join(sorted(self.qos))})")
        if allowed is not None and name not in allowed:
            raise PolicyError("InvalidQOS", f"Invalid qos specification: account {account} may use "
                                            f"{', '.join(allowed)}, not {name}")
        return name

    def caps_submissions(self, qos: str, account: str | None) -> bool:
        """Is the count of a user's queued jobs capped (MaxSubmitJobs) for this QOS or account?"""
        chain = self.chain(account) if account else []
        capped_here = bool(chain) and chain[0].max_submit_jobs is not None
        return self.qos[qos].max_submit_jobs_per_user is not None or capped_here

    def check_submit(self, job: Job, qos: str, account: str | None, queued_in_qos: int,
                     queued_in_account: int, adding: int = 1) -> None:
        """The limits a submission of `adding` jobs like `job` (an array's tasks) is refused by:
        the count of the user's queued jobs (pending and running: `queued_in_*`), and what each
        asks on its own."""
        rules = self.qos[qos]
        cap = rules.max_submit_jobs_per_user
        if cap is not None and queued_in_qos + adding > cap:
            raise PolicyError("QOSMaxSubmitJobPerUserLimit", f"{job.user} has {queued_in_qos} jobs queued in QOS "
                                                             f"{qos}, which allows {cap} per user "
                                                             f"(MaxSubmitJobsPerUser)")
        chain = self.chain(account) if account else []
        if chain and chain[0].max_submit_jobs is not None and queued_in_account + adding > chain[0].max_submit_jobs:
            raise PolicyError("AssocMaxSubmitJobLimit", f"{job.user} has {queued_in_account} jobs queued in account "
                                                        f"{account}, which allows {chain[0].max_submit_jobs} per "
                                                        f"user (MaxSubmitJobs)")
        wanted = tres_of(job)
        part = self.partitions.get(job.partition)
        if part is not None:
            _check_nodes(job, part, wanted.get("node", 1))
        checks = [("QOSMax", f"QOS {qos}", rules.max_tres_per_job, rules.max_wall, "QOS")]
        checks += [("AssocMax", f"account {a.name}", a.max_tres_per_job, a.max_wall, "Assoc") for a in chain]
        for prefix, where, limit, wall, kind in checks:
            name = over({}, wanted, limit)
            if name is not None:
                raise PolicyError(_tres_reason(prefix, "PerJobLimit", name),
                                  f"the job asks for {name}={_amount(name, wanted[name])}; {where} allows "
                                  f"{name}={_amount(name, limit[name])} per job (MaxTRESPerJob)")
            if wall is not None and (not job.time_limit or job.time_limit > wall):
                raise PolicyError(f"{kind}MaxWallDurationPerJobLimit",
                                  f"the job asks for {format_limit(job.time_limit)}; {where} allows "
                                  f"{format_limit(wall)} per job (MaxWall); ask for less with -t")

    def pools(self, user: str, account: str | None, qos: str, partition: str | None = None) -> tuple[Pool, ...]:
        """The pools a job of `user` charged to `account` under `qos` in `partition` counts against
        while it runs."""
        out = []
        part = self.partitions.get(partition or "")
        if part is not None:
            out += _per_user(f"part-user\0{partition}\0{user}", f"partition {partition}", user,
                             part.max_jobs_per_user, part.max_tres_per_user)
        rules = self.qos.get(qos) or self.qos[NORMAL]
        out += _per_user(f"qos-user\0{qos}\0{user}", f"QOS {qos}", user, rules.max_jobs_per_user,
                         rules.max_tres_per_user)
        if rules.grp_tres:
            out.append(Pool(f"qos\0{qos}", dict(rules.grp_tres),
                            {n: _tres_reason("QOSGrp", "Limit", n) for n in rules.grp_tres},
                            f"jobs in QOS {qos} run {{use}} of its {{cap}} (GrpTRES)"))
        chain = self.chain(account) if account else []
        if chain and chain[0].max_jobs is not None:
            out.append(Pool(f"acct-user\0{account}\0{user}", {JOBS: chain[0].max_jobs}, {JOBS: "AssocMaxJobsLimit"},
                            f"{user} runs {{use}} of the {{cap}} account {account} allows a user (MaxJobs)"))
        for a in chain:
            if a.grp_tres:
                out.append(Pool(f"acct\0{a.name}", dict(a.grp_tres),
                                {n: _tres_reason("AssocGrp", "Limit", n) for n in a.grp_tres},
                                f"account {a.name}'s jobs run {{use}} of its {{cap}} (GrpTRES)"))
        return tuple(out)


def _check_nodes(job: Job, part: PartitionRules, nodes: int) -> None:
    """A partition's MaxNodes and MinNodes per job. Below MinNodes a job is refused, not held: it
    never grows, and Slurm refuses it too where EnforcePartLimits is set."""
    if part.max_nodes is not None and nodes > part.max_nodes:
        raise PolicyError("PartitionNodeLimit", f"the job asks for {nodes} nodes; partition {job.partition} "
                                                f"allows {part.max_nodes} per job (MaxNodes)")
    least = part.min_nodes
    if least is not None and nodes < least:
        shape = job.shape
        tasks = f" and at least {least} tasks (-n {least})" if shape.ntasks_given and shape.ntasks < least else ""
        raise PolicyError("PartitionNodeLimit", f"the job asks for {nodes} node{'' if nodes == 1 else 's'}; "
                                                f"partition {job.partition} runs jobs on {least} nodes or more "
                                                f"(MinNodes): ask for -N {least}{tasks}")


def _per_user(key: str, owner: str, user: str, jobs: int | None, tres: Mapping[str, int]) -> list[Pool]:
    """A user's pool under a QOS' or a partition's MaxJobsPerUser and MaxTRESPerUser, if any."""
    caps = {**tres, **({JOBS: jobs} if jobs is not None else {})}
    if not caps:
        return []
    reasons = {n: "QOSMaxJobsPerUserLimit" if n == JOBS else _tres_reason("QOSMax", "PerUserLimit", n) for n in caps}
    return [Pool(key, caps, reasons, f"{user} runs {{use}} of the {{cap}} {owner} allows a user ({{limit}})")]


def extension_hours(tres: Mapping[str, int], seconds: float) -> dict[str, float]:
    """What an extension of `seconds` to a job holding `tres` costs, in TRES-hours."""
    return {name: round(count * seconds / 3600, 3) for name, count in tres.items() if count}


def budgets(sharing: Sharing, account: str | None, qos: str) -> list[tuple[str, str, Budget]]:
    """The extension budgets a job's extensions count against: (kind, name, budget), its QOS'
    and its account's (with their ancestors')."""
    out = []
    rules = sharing.qos.get(qos)
    if rules is not None and rules.budget is not None and not rules.budget.empty:
        out.append(("qos", qos, rules.budget))
    for a in sharing.chain(account) if account else []:
        if a.budget is not None and not a.budget.empty:
            out.append(("account", a.name, a.budget))
    return out


def spent(kind: str, name: str, budget: Budget, past: Iterable[Mapping], now: float) -> tuple[int, dict[str, float],
                                                                                             float | None]:
    """What a user's past extensions (their events' data with `time`) spent of a budget in its
    window: how many, their TRES-hours, and when the oldest of them leaves the window."""
    counted = [e for e in past if e.get(kind) == name and e["time"] >= now - budget.window]
    hours: dict[str, float] = {}
    for e in counted:
        for key, value in (e.get("tres_hours") or {}).items():
            hours[key] = hours.get(key, 0.0) + value
    return len(counted), hours, (counted[0]["time"] + budget.window if counted else None)


def check_budget(kind: str, name: str, budget: Budget, past: list[Mapping], adding: Mapping[str, float], user: str,
                 now: float, when: Callable[[float], str]) -> None:
    """PolicyError where this extension (`adding` TRES-hours) would pass a budget, saying what was
    spent and when it frees up; `when` writes a time."""
    count, hours, frees = spent(kind, name, budget, past, now)
    owner, days = f"{'QOS' if kind == 'qos' else 'account'} {name}", _window(budget.window)
    later = f"; the oldest leaves the window at {when(frees)}" if frees else ""
    if budget.count is not None and count + 1 > budget.count:
        raise PolicyError("ExtensionBudget", f"{user} took {count} of the {budget.count} extensions {owner} allows "
                                             f"a user per {days}{later}")
    for key, cap in budget.tres_hours.items():
        if hours.get(key, 0.0) + adding.get(key, 0.0) > cap:
            raise PolicyError("ExtensionBudget", f"this extension costs {key}={adding.get(key, 0.0):g} TRES-hours; "
                                                 f"{user} took {key}={hours.get(key, 0.0):g} of the {key}={cap} "
                                                 f"{owner} allows a user per {days}{later}")


def _window(seconds: float) -> str:
    """A budget's window in words: `30 days`, `1 day`, `12 hours`."""
    number, unit = (seconds / 86400, "day") if seconds >= 86400 else (seconds / 3600, "hour")
    return f"{number:g} {unit}{'' if number == 1 else 's'}"


def explain(pool: Pool, name: str, use: int) -> str:
    """The sentence for a job held by `pool`'s limit on `name` at `use`."""
    per_user = pool.key.startswith(("qos-user", "part-user"))
    limit = ("MaxJobsPerUser" if name == JOBS else "MaxTRESPerUser " + name) if per_user else name
    what = (lambda n: f"{n} job{'' if n == 1 else 's'}") if name == JOBS else (lambda n: f"{name}={_amount(name, n)}")
    return pool.says.format(use=what(use), cap=what(pool.caps[name]), limit=limit) + \
        "; the job starts when that use drops"


def _amount(name: str, count: int) -> str:
    return format_tres({name: count}).partition("=")[2] if name == "mem" else str(count)


def parse(text: str | None) -> Tres:
    """A limit's TRES string from the inventory (already checked there), none for none."""
    return parse_tres(text) if text else {}

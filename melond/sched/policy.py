"""Who may do what to a job: pure rules, each refusal naming the rule.

The owner may cancel, extend and read their own jobs and may extend a job's
total limit up to its partition's MaxTime; operators (root and the
inventory's `operators`) may act on every job without bound.
"""
from __future__ import annotations

from dataclasses import dataclass

from melond.errors import BadRequest, Conflict, Forbidden
from melond.spec.states import FINISHED
from melond.spec.timespec import MAX_SECONDS, format_limit
from melond.state.job import TRANSITIONS, Job


@dataclass(frozen=True)
class Caller:
    """Who is asking, as established by the transport (SO_PEERCRED or a token)."""

    user: str
    uid: int
    operator: bool = False


def extend_policy(configured: str | None, shared: bool) -> str:
    """A partition's extend_policy. Unset, a melond that serves every user of its machine (root's)
    grants an owner only what delays no other user's waiting job, and a personal melond, whose
    queue is its owner's alone, grants within the caps: one user may trade their own jobs' starts,
    but not someone else's."""
    return configured or ("no-delay" if shared else "always")


#: What squeue shows of every job (ids, name, user, state, reason, partition, node, times, limit,
#: sizes, priority...) is anyone's; these fields are the owner's and operators' only, as `mshow`
#: is: what the job runs and with what, where it reads and writes, whom it mails, the options
#: recorded as given (a comment, an export file), and the node's own words on its end (which may
#: name a path). A job's view leaves them out (absent, where null would mean "not set"). Its
#: script, environment and gid are in no view at all (melond.state.job.PRIVATE).
OWNER_ONLY_FIELDS = frozenset({
    "script_path", "script_args", "chdir", "submit_dir", "output", "error",
    "output_path", "error_path", "comment", "mail_user", "slurm_options", "detail", "umask",
})
#: The events anyone may learn of: those that change the job as the list shows it (the history's
#: transitions). Notes beside them (a notice sent, an extension asked for and its verdict) are the
#: owner's and operators' only.
PUBLIC_EVENTS = frozenset(TRANSITIONS)


def sees_all_of(caller: Caller, owner: str) -> bool:
    """May `caller` see everything of `owner`'s jobs (and act on them)? Their owner and operators."""
    return caller.operator or (caller.uid >= 0 and caller.user == owner)


def withheld(caller: Caller, owner: str) -> frozenset[str]:
    """The fields of `owner`'s job that `caller` is not shown."""
    return frozenset() if sees_all_of(caller, owner) else OWNER_ONLY_FIELDS


def sees_event(caller: Caller, owner: str, kind: str) -> bool:
    """May `caller` learn that an event of this kind happened to `owner`'s job?"""
    return kind in PUBLIC_EVENTS or sees_all_of(caller, owner)


def check_owner(job: Job, caller: Caller, action: str) -> None:
    """Only the job's owner or an operator may act on it."""
    if sees_all_of(caller, job.user):
        return
    raise Forbidden(f"job {job.id} belongs to {job.user}; only its owner or an operator may {action} it")


def check_not_finished(job: Job) -> None:
    state = job.state
    if state in FINISHED:
        raise Conflict(f"job {job.id} has already ended ({state.value}); a finished job cannot be extended")


def new_limit(job: Job, *, add: int | None, to: int | None) -> int:
    """The total limit an extension asks for (seconds; 0 = unlimited), bounded here whichever
    way the request came (the API, the job channel, an elastic step), as every limit is."""
    check_not_finished(job)
    for name, value, low in (("add", add, 1), ("to", to, 0)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                  or not low <= value <= MAX_SECONDS):
            raise BadRequest(f"an extension's {name!r} is whole seconds from {low} to {MAX_SECONDS} "
                             f"(100 years), not {str(value)[:40]}")
    if to is not None:
        return to
    if job.time_limit == 0:
        raise Conflict(f"job {job.id} has no time limit; there is nothing to extend")
    limit = job.time_limit + (add or 0)
    if limit > MAX_SECONDS:
        raise BadRequest(f"job {job.id}: a limit of {format_limit(limit)} is beyond the longest Melon "
                         f"keeps ({format_limit(MAX_SECONDS)}); ask for less")
    return limit


def check_extension(job: Job, caller: Caller, limit: int, max_time: int, partition: str) -> None:
    """May `caller` set `job`'s total limit to `limit`? Raise with the rule if not."""
    check_owner(job, caller, "extend")
    check_not_finished(job)
    if caller.operator:
        return
    old = job.time_limit
    if limit != 0 and (old == 0 or limit < old):
        raise Forbidden(f"job {job.id}: only an operator may shorten a time limit "
                        f"({format_limit(old)} -> {format_limit(limit)})")
    if max_time and (limit == 0 or limit > max_time):
        raise Forbidden(
            f"job {job.id}: a limit of {format_limit(limit)} is above partition {partition}'s MaxTime "
            f"of {format_limit(max_time)}; owners may extend up to MaxTime, an operator may go beyond")


def check_extension_budget(job: Job, caller: Caller, limit: int, past_added: list[int], *,
                           max_extension: int | None, max_extensions: int | None, partition: str) -> None:
    """The partition's caps on an owner's extensions of one job, over its life: how many
    (`max_extensions`) and how much time in total (`max_extension`). `past_added` holds the
    seconds each earlier owner extension added. Operators are not bound, and theirs do not count."""
    if caller.operator:
        return
    if max_extensions is not None and len(past_added) >= max_extensions:
        raise Forbidden(f"job {job.id}: extended {len(past_added)} times already; partition {partition} "
                        f"allows an owner {max_extensions} extensions of one job (max_extensions); "
                        f"ask an operator")
    if max_extension is None:
        return
    old = job.time_limit
    adding = limit - old if limit and old else None  # None: to or from unlimited, beyond any cap
    used = sum(past_added)
    if adding is None or used + adding > max_extension:
        asked = "an unlimited time" if adding is None else format_limit(adding)
        raise Forbidden(f"job {job.id}: adding {asked} to the {format_limit(used) if used else 'nothing'} "
                        f"added before is above partition {partition}'s cap of {format_limit(max_extension)} "
                        f"per job (max_extension); ask an operator")

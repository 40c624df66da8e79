"""Multifactor priority, as Slurm's priority/multifactor computes it, with Fair Tree fair-share.
Pure: usage, the tree and the jobs come in as arguments.

    priority = Wage·age + Wfairshare·fairshare + Wjobsize·jobsize + Wpartition·partition
               + Wqos·qos − nice,  at least 1

each factor in [0, 1] (priority_multifactor.html). Usage is each association's billable TRES
times seconds, decaying with a half-life (PriorityDecayHalfLife): a job that ran from `start` to
`end` has, at `now`, the integral of billing·2^(−(now−s)/H) over its run, in closed form, so the
usage is computed from the jobs themselves and a restart loses nothing. Fair Tree
(fair_tree.html) ranks users by LevelFS = shares/usage, level by level from the root.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


HALF_LIFE = 7 * 86400.0  # Slurm's PriorityDecayHalfLife default
MAX_AGE = 7 * 86400.0  # PriorityMaxAge
MAX_PRIORITY = 4294967295


@dataclass(frozen=True, slots=True)
class Weights:
    """Each factor's weight. Melon's defaults make a cluster with several users fair out of the
    box: fair-share dominates, then age, size and QOS (Slurm's are all 0: first come, first served)."""

    age: int = 1000
    fairshare: int = 10000
    jobsize: int = 0
    partition: int = 0
    qos: int = 1000
    favor_small: bool = False


def decayed(rate: float, start: float, end: float, now: float, half_life: float = HALF_LIFE) -> float:
    """Usage at `now` of `rate` (billing) held from `start` to `end`, each second decaying by half
    every `half_life` (0: no decay)."""
    if end <= start:
        return 0.0
    if half_life <= 0:
        return rate * (end - start)
    k = math.log(2) / half_life
    return rate / k * (math.exp(-k * max(now - end, 0.0)) - math.exp(-k * max(now - start, 0.0)))


@dataclass
class Assoc:
    """A node of the association tree: an account (children) or a user (a leaf)."""

    name: str
    shares: float = 1.0
    usage: float = 0.0
    children: list[Assoc] = field(default_factory=list)
    user: bool = False

    def total(self) -> float:
        """Its usage with its children's (an account's is its subtree's)."""
        return self.usage + sum(c.total() for c in self.children)


def fair_tree(root: Assoc) -> dict[str, float]:
    """Fair Tree's FairShare factor for each user association (by `name`): ranked by LevelFS
    from the root down, the highest rank N/N, the lowest 1/N."""
    users = _count_users(root)
    out: dict[str, float] = {}
    if not users:
        return out
    state = {"rank": users, "rnt": users}
    _visit(root, state, out, users, tied=False)
    return out


def _count_users(node: Assoc) -> int:
    return sum(1 if c.user else _count_users(c) for c in node.children)


def _level_fs(node: Assoc, siblings_shares: float, parent_usage: float) -> float:
    s = node.shares / siblings_shares if siblings_shares else 0.0
    u = node.total() / parent_usage if parent_usage else 0.0
    if s == 0:
        return 0.0
    return math.inf if u == 0 else s / u


def _visit(node: Assoc, state: dict, out: dict[str, float], n: int, tied: bool) -> None:
    shares = sum(c.shares for c in node.children)
    usage = node.total()
    ranked = sorted(node.children, key=lambda c: (-_level_fs(c, shares, usage), not c.user))
    previous = None
    for child in ranked:
        fs = _level_fs(child, shares, usage)
        same = previous is not None and fs == previous
        if child.user:
            if not (same or tied):
                state["rank"] = state["rnt"]
            out[child.name] = state["rank"] / n
            state["rnt"] -= 1
        else:
            _visit(child, state, out, n, tied=same)
        tied, previous = False, fs


def run_seconds(held: Iterable[tuple[str, Mapping[str, int], float]]) -> dict[str, dict[str, int]]:
    """Each user association's TRES times the seconds its running jobs have left (Slurm's
    TRES run seconds, what sshare's TRESRunMins shows in minutes): `held` as (association, a
    running job's TRES, the seconds to its time limit); a job past its limit adds none."""
    out: dict[str, dict[str, int]] = {}
    for assoc, tres, left in held:
        into = out.setdefault(assoc, {})
        for name, count in tres.items():
            into[name] = into.get(name, 0) + int(count * max(left, 0.0))
    return out


def rows(root: Assoc, fairshare: Mapping[str, float], running: Mapping[str, Mapping[str, int]] | None = None,
         names: Iterable[str] = ()) -> list[dict]:
    """sshare's rows, the root first, then each account followed by its users and sub-accounts
    (by name): depth, account, user, raw and normalised shares, raw usage, the share of its
    parent's usage (EffectvUsage), Fair Tree's LevelFS, for users FairShare, and the TRES-minutes
    its running jobs have left (`running`, by user association, from run_seconds; an account's
    its subtree's), each of `names` shown, 0 where none."""
    running = running or {}
    names = tuple(names)

    def run_mins(node: Assoc) -> dict[str, int]:
        seconds = dict.fromkeys(names, 0)
        for leaf in _users(node):
            for name, count in running.get(leaf.name, {}).items():
                seconds[name] = seconds.get(name, 0) + count
        return {name: count // 60 for name, count in seconds.items()}  # as sshare: whole minutes of the sum

    out = [{"depth": 0, "account": "root", "user": None, "raw_shares": None, "norm_shares": 1.0,
            "raw_usage": root.total(), "effective_usage": 1.0, "level_fs": None, "fairshare": None,
            "tres_run_mins": run_mins(root)}]

    def walk(node: Assoc, account: str, depth: int) -> None:
        shares, usage = sum(c.shares for c in node.children), node.total()
        for child in sorted(node.children, key=lambda c: (not c.user, c.name)):
            fs = _level_fs(child, shares, usage)
            out.append({"depth": depth, "account": account if child.user else child.name,
                        "user": child.name.rpartition("/")[2] if child.user else None, "raw_shares": child.shares,
                        "norm_shares": child.shares / shares if shares else 0.0, "raw_usage": child.total(),
                        "effective_usage": child.total() / usage if usage else 0.0, "level_fs": fs,
                        "fairshare": fairshare.get(child.name) if child.user else None,
                        "tres_run_mins": run_mins(child)})
            if not child.user:
                walk(child, child.name, depth + 1)
    walk(root, "root", 1)
    return out


def _users(node: Assoc) -> Iterable[Assoc]:
    """The user associations at or under `node`."""
    if node.user:
        yield node
    for child in node.children:
        yield from _users(child)


def factors(*, submitted: float, eligible: float | None, now: float, fairshare: float, cpus: int, nodes: int,
            cluster_cpus: int, cluster_nodes: int, qos_priority: int, max_qos_priority: int,
            weights: Weights, max_age: float = MAX_AGE) -> dict[str, float]:
    """Each factor in [0, 1], named as sprio's columns are."""
    age = min(max(now - max(eligible or submitted, submitted), 0.0) / max_age, 1.0)
    if weights.favor_small:
        size = ((cluster_nodes - nodes) / cluster_nodes if cluster_nodes and nodes < cluster_nodes else 0.0)
        size = (size + ((cluster_cpus - cpus) / cluster_cpus if cluster_cpus else 0.0)) / 2
    else:
        size = ((nodes / cluster_nodes if cluster_nodes else 0.0) + (cpus / cluster_cpus if cluster_cpus else 0.0)) / 2
    return {"age": age, "fairshare": fairshare, "jobsize": min(max(size, 0.0), 1.0),
            "partition": 1.0, "qos": qos_priority / max_qos_priority if max_qos_priority else 0.0}


def weighted(values: Mapping[str, float], weights: Weights) -> dict[str, int]:
    """Each factor times its weight, as sprio prints them (whole numbers)."""
    return {name: int(value * getattr(weights, name)) for name, value in values.items()}


def priority(values: Mapping[str, float], weights: Weights, nice: int = 0) -> int:
    """The job's priority: the weighted factors' sum less its nice, at least 1."""
    total = sum(value * getattr(weights, name) for name, value in values.items()) - nice
    return int(min(max(total, 1), MAX_PRIORITY))


def tree(users: Iterable[str], usage: Mapping[tuple[str | None, str], float],
         accounts: Mapping[str, tuple[str | None, float, tuple[str, ...]]] | None = None) -> Assoc:
    """The association tree: `accounts` by name as (parent, shares, users); none configured, each
    user a child of the root with one share (Melon's default: every user an equal share)."""
    root = Assoc("root")
    if not accounts:
        for user in sorted(set(users) | {u for _, u in usage}):
            root.children.append(Assoc(user, 1.0, usage.get((None, user), 0.0), user=True))
        return root
    nodes = {name: Assoc(name, shares) for name, (_, shares, _) in accounts.items()}
    for name, (parent, _, members) in accounts.items():
        (nodes.get(parent or "") or root).children.append(nodes[name])
        for user in members:
            nodes[name].children.append(Assoc(f"{name}/{user}", 1.0, usage.get((name, user), 0.0), user=True))
    return root

"""The connections melond keeps to its nodes: one per node, named for it; on a personal node,
one per user with an account there, named `user@node`, that starts and watches only that
user's jobs (as their own account, in their own spool)."""
from __future__ import annotations

from melond.nodes.fleet import NodeSession


def link_name(node: str, user: str | None) -> str:
    return f"{user}@{node}" if user else node


def split(link: str) -> tuple[str, str | None]:
    """(node, user) of a connection's name; user None for a node's only connection."""
    user, at, node = link.rpartition("@")
    return (node, user) if at else (link, None)


class Sessions(dict[str, NodeSession]):
    """The live sessions by connection name, and which one serves a given job."""

    def __init__(self) -> None:
        super().__init__()
        self.personal: set[str] = set()  # the personal nodes' names
        self.logins: dict[str, str] = {}  # user: their login on the personal nodes

    def link(self, node: str | None, user: str | None) -> str | None:
        """The name of the connection a job of `user` on `node` goes through; None where there
        is none to tell (no node, or a personal node and no user)."""
        if node is None or node not in self.personal:
            return node
        return link_name(node, user) if user else None

    def of(self, node: str | None, user: str | None) -> NodeSession | None:
        """The session a job of `user` on `node` goes through, if any."""
        link = self.link(node, user)
        return None if link is None else self.get(link)

    def login(self, node: str, user: str) -> str | None:
        """The login a job of `user` runs as on `node`, where that is not `user` by name alone:
        a personal node's mapping ([logins]); None elsewhere (the job's own user)."""
        return self.logins.get(user, user) if node in self.personal else None

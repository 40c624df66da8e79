"""Who is calling: SO_PEERCRED on the Unix socket, a bearer token on TCP; issuing and revoking tokens.

Tokens are issued only over the Unix socket, where the kernel vouches for the caller, so a
stolen token can never mint a longer-lived one. The one token minted elsewhere is a browser's
session, at sign-in: a child of the token pasted, living no longer than it. Each request reads the token's row, so a
revocation takes effect on the next request.
"""
from __future__ import annotations

import pwd
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass

from melond.api import tokens
from melond.errors import BadRequest, Forbidden, NotFound, Unauthorized
from melond.sched.policy import Caller
from melond.state.store import Store
from melond.api.tokens import Problem, TokenError

PEERCRED = struct.Struct("3i")
SESSION_ENDED = ("this browser session has ended (signed out, or the token it was signed in with was revoked or "
                 "has expired); sign in again with a token from `mtoken create`")
LAST_USED_PRECISION = 60.0  # seconds: reads over TCP do not each cost a disk sync to record their time


def peer_uid(transport) -> int | None:
    """The uid on the other end of a Unix socket, as the kernel tells it; None over TCP."""
    sock = transport.get_extra_info("socket") if transport else None
    if sock is None or sock.family != socket.AF_UNIX:
        return None
    _pid, uid, _gid = PEERCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, PEERCRED.size))
    return uid


@dataclass(frozen=True)
class Authenticated:
    """A caller established by a token, and which token (a long request checks it again)."""

    caller: Caller
    token_id: str
    session: bool = False  # minted by a browser's sign-in, held in its cookie


class TokenService:
    """Tokens in the store, checked against the pure rules of melond.tokens."""

    def __init__(self, store: Store, caller: Callable[[str, int], Caller]) -> None:
        self.store = store
        self.caller = caller  # Operations.caller: decides who is an operator

    async def authenticate(self, header: str | None, now: float) -> Authenticated:
        """The caller a bearer header names; Unauthorized with the reason and the remedy if none."""
        try:
            token = tokens.bearer(header)
            if token is None:
                raise Unauthorized(tokens.refusal(Problem.MISSING))
        except TokenError as exc:
            raise Unauthorized(f"{exc}; {tokens.CREATE_HINT}") from None
        return await self._verify(token, now)

    async def authenticate_cookie(self, token: str, now: float) -> Authenticated:
        """The caller a session cookie names: only a token minted by sign-in, so that signing out
        (which revokes it) always ends what the cookie could do."""
        found = await self._verify(token, now, SESSION_ENDED)
        if not found.session:
            raise Unauthorized(SESSION_ENDED)
        return found

    def refusal(self, token_id: str, now: float) -> str | None:
        """Why a token checked at a request's start no longer holds (None: it does), for a long
        request such as the event stream to end on."""
        record = self.store.token(token_id)
        problem = tokens.standing(record, now)
        if problem is None:
            return None
        return SESSION_ENDED if record and record.get("parent") else tokens.refusal(problem, token_id)

    async def sign_in(self, token: str, now: float) -> tuple[Authenticated, str, float]:
        """A browser session minted from a pasted token: (who, the session's own token for the
        cookie, when it expires). It is the pasted token's child: it expires no later, and
        revoking the parent revokes it; signing out revokes the session alone."""
        parent = await self._verify(token, now)
        if parent.session:
            raise Unauthorized(f"that is a browser session's token, not one to sign in with; {tokens.CREATE_HINT}")
        record = self.store.token(parent.token_id)
        expires = tokens.session_expiry(record, now)
        issued = tokens.generate()
        await self.store.write(Store.op_insert_token, {
            "id": issued.id, "user": record["user"], "uid": record["uid"], "hash": issued.hash, "created": now,
            "expires": expires, "parent": parent.token_id})
        return Authenticated(parent.caller, issued.id, session=True), issued.token, expires

    async def sign_out(self, token: str, now: float) -> bool:
        """Revoke a browser session's token (the cookie's); a token that is not a live session's
        is left alone (a CLI token is never ended by a browser signing out). Whether one ended."""
        try:
            token_id, secret = tokens.parse(token)
        except TokenError:
            return False
        record = self.store.token(token_id)
        if tokens.check(record, secret, now) is not None or not record.get("parent"):
            return False
        done = await self.store.write(Store.op_revoke_tokens, [token_id], record["user"], record["user"], now)
        return bool(done)

    async def _verify(self, token: str, now: float, ended: str | None = None) -> Authenticated:
        """The token's caller, checked in full; `ended` replaces the message for a revoked or
        expired token (a browser session's)."""
        try:
            token_id, secret = tokens.parse(token)
        except TokenError as exc:
            raise Unauthorized(f"{exc}; {tokens.CREATE_HINT}") from None
        record = self.store.token(token_id)
        problem = tokens.check(record, secret, now)
        if problem is not None:
            raise Unauthorized(ended if ended and problem in (Problem.REVOKED, Problem.EXPIRED)
                               else tokens.refusal(problem, token_id))
        try:
            uid = pwd.getpwnam(record["user"]).pw_uid
        except KeyError:
            uid = None
        if uid != record["uid"]:  # the account is gone, or its name now belongs to someone else
            raise Unauthorized(f"token {token_id} was issued to {record['user']} (uid {record['uid']}), which is no "
                               f"longer that account; {tokens.CREATE_HINT} for a new one")
        stale = record["last_used"] is None or now - record["last_used"] >= LAST_USED_PRECISION
        if stale and not self.store.read_only:  # (a standby's reads leave it to the leader)
            await self.store.write(Store.op_token_used, token_id, now)
        return Authenticated(self.caller(record["user"], uid), token_id, session=bool(record.get("parent")))

    async def issue(self, caller: Caller, ttl: int, now: float, over_socket: bool) -> dict:
        """A new token for the caller; its secret is in this reply and nowhere else."""
        if not over_socket:
            raise Forbidden("tokens are issued only over the Unix socket, where the kernel vouches for who you are; "
                            "run `mtoken create` on the machine melond runs on")
        if caller.user == str(caller.uid):
            raise Forbidden(f"uid {caller.uid} has no account name on this machine; tokens are issued to named users")
        issued = tokens.generate()
        row = {"id": issued.id, "user": caller.user, "uid": caller.uid, "hash": issued.hash, "created": now,
               "expires": now + ttl}
        await self.store.write(Store.op_insert_token, row)
        return {"token": issued.token, "id": issued.id, "user": caller.user, "created": now, "expires": now + ttl}

    def list(self, caller: Caller, everyone: bool) -> list[dict]:
        _check_everyone(caller, everyone, "list")
        return self.store.tokens(None if everyone else caller.user)

    async def revoke(self, caller: Caller, ids: list[str], everyone: bool, now: float) -> list[str]:
        """Revoke ids (an operator's: anyone's) or, with everyone, every token there is."""
        if everyone == bool(ids):
            raise BadRequest("give token ids to revoke, or `all` (operators) to revoke every token, not both")
        _check_everyone(caller, everyone, "revoke")
        bad = [i for i in ids if not tokens.valid_id(i)]
        if bad:
            raise BadRequest(f"not a token id: {', '.join(bad)} (ids are 12 hex digits, as `mtoken list` shows)")
        owner = None if caller.operator else caller.user
        done = await self.store.write(Store.op_revoke_tokens, None if everyone else ids, owner, caller.user, now)
        missing = sorted(set(ids) - set(done))
        if missing:
            raise NotFound(f"no active token {', '.join(missing)}{'' if caller.operator else ' of yours'}"
                           + (f" (revoked: {', '.join(done)})" if done else "") + "; `mtoken list` shows them")
        return done


def _check_everyone(caller: Caller, everyone: bool, action: str) -> None:
    if everyone and not caller.operator:
        raise Forbidden(f"only operators (root and the inventory's operators) may {action} every user's tokens")

"""API bodies, validated at the edge with pydantic; their schemas make the OpenAPI document."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from melond.tokens import MAX_TTL


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SubmitRequest(Body):
    """What `mbatch` sends: the parsed options and the script text itself."""

    script: str = Field(min_length=1, description="the script's content, stored with the job")
    script_path: str | None = None
    script_args: list[str] = []
    name: str = Field(min_length=1, max_length=1024)
    cpus: int = Field(default=1, ge=1, le=1_000_000)
    memory: int | None = Field(default=None, ge=0, description="bytes; null = partition default, 0 = whole node")
    mem_per_cpu: bool = False
    time_limit: int | None = Field(default=None, ge=0, description="seconds; null = partition default, 0 = none")
    output: str = "melon-%j.out"
    error: str | None = None
    chdir: str = Field(min_length=1)
    environment: dict[str, str] = {}
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


class SubmitReply(Body):
    job_ids: list[int]
    warnings: list[str] = []


class ExtendRequest(Body):
    """Either `add` seconds to the limit or set it `to` a new total (0 = unlimited, operators only)."""

    add: int | None = Field(default=None, gt=0)
    to: int | None = Field(default=None, ge=0)


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

"""Building blocks shared by every wire schema: the `WireModel` base, bounded field types, the one
error envelope, and the health/readiness bodies.

Every request/response model of every service derives from `WireModel`, which rejects unknown fields
(a misspelt parameter is a 422 naming it, never silently ignored). Strings and lists are always bounded
so a single request cannot make a service allocate without limit; the aliases below carry the usual
bounds. This module does not define any service's API (see the sibling modules).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

KiB = 1024
MiB = 1024 * KiB

# Largest sequence (prompt or completion) any API accepts, in tokens.
MAX_SEQUENCE_TOKENS = 131_072
# Largest token id: vocabularies are far below this; it keeps ids in int32 range.
MAX_TOKEN_ID = 2**31 - 1

ShortStr = Annotated[str, StringConstraints(max_length=256)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=128)]
# Identifiers (prompt, group, batch, update ids): printable, no spaces, usable in URLs and Redis keys.
Id = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@/+-]+$")]
# Free text (a problem, a completion, a message). max_length counts characters: 1 Mi characters.
Text = Annotated[str, StringConstraints(max_length=1 * MiB)]
Message = Annotated[str, StringConstraints(max_length=8 * KiB)]
TokenId = Annotated[int, Field(ge=0, le=MAX_TOKEN_ID)]
TokenIds = Annotated[list[TokenId], Field(max_length=MAX_SEQUENCE_TOKENS)]
# Monotonic weights version: 0 is the initial (un-trained) policy, each pushed update increments it.
PolicyVersion = Annotated[int, Field(ge=0, le=2**53)]
# Seconds since the Unix epoch.
Timestamp = Annotated[float, Field(ge=0.0, le=1e11, allow_inf_nan=False)]
# A finite float in a range wide enough for rewards, advantages and losses, and no wider.
Score = Annotated[float, Field(ge=-1e6, le=1e6, allow_inf_nan=False)]
# Log-probability of a sampled token. A log-softmax is <= 0 in exact arithmetic; low-precision kernels
# can round a near-certain token slightly above 0, hence the small positive slack.
LogProb = Annotated[float, Field(ge=-1e6, le=1e-3, allow_inf_nan=False)]
Sha256Hex = Annotated[str, StringConstraints(min_length=64, max_length=64, pattern=r"^[0-9a-f]{64}$")]


class WireModel(BaseModel):
    """Base of every wire model: unknown fields are rejected."""

    model_config = ConfigDict(extra="forbid", frozen=False)


class ErrorDetail(WireModel):
    code: ShortStr = Field(description="Machine-readable error code, e.g. 'unprocessable', 'not_found'.")
    message: Message = Field(description="Human-readable explanation naming what was wrong.")
    field: ShortStr | None = Field(default=None, description="Dotted location of the offending input.")
    request_id: ShortStr = Field(default="", description="X-Request-ID of the failed request.")


class ErrorEnvelope(WireModel):
    """The body of every error response of every ghpo service."""

    error: ErrorDetail


class HealthStatus(WireModel):
    status: Literal["ok"] = "ok"
    service: Name
    version: ShortStr


class ReadyStatus(WireModel):
    status: Literal["ready"] = "ready"
    service: Name
    checks: dict[ShortStr, bool] = Field(default_factory=dict, max_length=64)

"""The admin API's token bodies: what a request may send and what it gets back."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ability_gateway.server.auth.admin import MAX_OVERLAP_SECONDS

_STRICT = ConfigDict(extra="forbid", strict=True)


class TokenLimits(BaseModel):
    rateLimitPerMinute: int | None = Field(None, description="Requests per minute (null: none).")
    maxConcurrentTasks: int | None = Field(None, description="Unfinished tasks at once.")


class TokenQuotas(BaseModel):
    """Invocations a day (days in `GATEWAY_QUOTA_TIMEZONE`), per ability a day, and stored
    media bytes; `null`: none."""

    model_config = ConfigDict(extra="forbid", strict=True)

    dailyInvocations: int | None = Field(None, ge=0)
    dailyInvocationsByAbility: dict[str, int] | None = None
    mediaBytes: int | None = Field(None, ge=0)


class TokenView(BaseModel):
    """A token as an admin sees it: never its value or callback secret."""

    id: str
    name: str
    prefix: str = Field(description="The value's first characters, to tell tokens apart.")
    scopes: list[str]
    admin: bool
    state: Literal["active", "revoked", "expired"]
    createdAt: int = Field(description="Epoch milliseconds, as every time here.")
    updatedAt: int | None
    expiresAt: int | None
    revokedAt: int | None
    lastUsedAt: int | None = Field(description="Coalesced: at most about a minute old.")
    previousValueValidUntil: int | None = Field(
        description="After a rotation with an overlap: until when the old value still works."
    )
    previousSecretValidUntil: int | None = Field(
        description="After a secret rotation: until when callbacks carry the old signature too."
    )
    limits: TokenLimits
    quotas: TokenQuotas


class TokenPage(BaseModel):
    items: list[TokenView]
    nextCursor: str | None = Field(description="Pass as `cursor` for the next page.")


class CreatedTokenView(TokenView):
    token: str = Field(description="The token's value: shown this once, keep it secret.")
    callbackSecret: str = Field(description="Signs this token's callbacks: shown this once.")


class RotatedToken(BaseModel):
    tokenInfo: TokenView
    token: str | None = Field(None, description="The new value: shown this once.")
    callbackSecret: str | None = Field(None, description="The new secret: shown this once.")


class CreateToken(BaseModel):
    model_config = _STRICT

    name: str = Field(min_length=1, max_length=200)
    admin: bool = Field(False, description="Admin scope: the admin API, every token's tasks.")
    expiresInDays: float | None = Field(None, gt=0, le=3650)
    rateLimitPerMinute: int | None = Field(None, ge=1, le=1_000_000)
    maxConcurrentTasks: int | None = Field(None, ge=1, le=1_000_000)
    quotas: TokenQuotas | None = None


class UpdateToken(BaseModel):
    """Only the fields sent change; `null` removes a limit or the expiry."""

    model_config = _STRICT

    name: str | None = Field(None, min_length=1, max_length=200)
    expiresInDays: float | None = Field(None, gt=0, le=3650)
    rateLimitPerMinute: int | None = Field(None, ge=1, le=1_000_000)
    maxConcurrentTasks: int | None = Field(None, ge=1, le=1_000_000)
    quotas: TokenQuotas | None = Field(
        None, description="Only the quotas sent change; `null` removes one."
    )


class Rotate(BaseModel):
    model_config = _STRICT

    overlapSeconds: int = Field(
        0,
        ge=0,
        le=MAX_OVERLAP_SECONDS,
        description="How long the old value (or secret) keeps working; 0: it stops now.",
    )

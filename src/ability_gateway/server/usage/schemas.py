"""The usage routes' answers: rows of summed rollups, and the quotas of the tokens concerned."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class CozeTokens(BaseModel):
    """Coze's `usage` of the runs (cache hits made none): input, output and all tokens."""

    input: int
    output: int
    total: int


class UsageRow(BaseModel):
    period: str | None = Field(
        description="Start of the day or hour (ISO 8601, in the quota time zone) when grouped "
        "by one; null otherwise."
    )
    tokenId: str | None = Field(description="When grouped by token.")
    abilityId: str | None = Field(description="When grouped by ability.")
    calls: int = Field(description="Tasks that ended in the period (every outcome).")
    succeeded: int
    failed: int
    timeout: int
    canceled: int
    cacheHits: int = Field(description="Tasks answered from the result cache (counted in calls).")
    p50Ms: int | None = Field(
        description="Median duration, estimated from the duration buckets (linear "
        "interpolation inside the bucket holding it)."
    )
    p95Ms: int | None = Field(description="95th percentile duration, estimated the same way.")
    meanMs: int | None
    cozeTokens: CozeTokens


class QuotaUse(BaseModel):
    limit: int | None = Field(description="The cap; null: none.")
    used: int = Field(description="Used in the current window (today, or stored bytes).")


class TokenQuotas(BaseModel):
    tokenId: str
    dayStart: str = Field(description="Start of the current quota day (local midnight).")
    resetsAt: str = Field(description="When the daily quotas start again (next local midnight).")
    dailyInvocations: QuotaUse | None = Field(description="Invocations a day; null: no quota.")
    dailyInvocationsByAbility: dict[str, QuotaUse] = Field(
        description="Invocations a day of one ability, by ability id."
    )
    mediaBytes: QuotaUse | None = Field(description="Bytes of the media the token stored.")


class Usage(BaseModel):
    """Usage over a time range, from the hourly rollups."""

    from_: str = Field(alias="from", description="The range's start (ISO 8601).")
    to: str = Field(description="The range's end, exclusive.")
    timezone: str = Field(description="`GATEWAY_QUOTA_TIMEZONE`: days and times are in it.")
    groupBy: list[Literal["token", "ability", "day", "hour"]]
    items: list[UsageRow] = Field(description="Ordered by period, token, ability.")
    truncated: bool = Field(description="More than 10,000 rows: narrow the range or grouping.")
    quotas: list[TokenQuotas] = Field(
        description="The quotas and today's use: yours (`/api/usage`), or every token that "
        "has one (admin; of `tokenId` when given)."
    )

"""Bodies of the metering API: usage-event ingest and usage reports."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from msgspec import Meta, Struct

from catalog.orgs.schemas import Body

ReportedDimension = Literal["queries", "rows_returned", "bytes_downloaded"]
MAX_BATCH = 1000


class UsageEventIn(Body):
    idempotency_key: Annotated[str, Meta(min_length=1, max_length=200)]
    licence_id: Annotated[str, Meta(pattern=r"^lic_[0-9A-Z]{26}$")]
    dimension: ReportedDimension
    quantity: Annotated[int, Meta(gt=0, le=10**15)]
    occurred_at: datetime
    analyst_id: Annotated[str, Meta(pattern=r"^usr_[0-9A-Z]{26}$")] | None = None


class UsageBatch(Body):
    events: Annotated[list[UsageEventIn], Meta(min_length=1, max_length=MAX_BATCH)]


class Conflict(Struct, kw_only=True):
    index: int
    idempotency_key: str
    reason: str


class OverCap(Struct, kw_only=True):
    licence_id: str
    dimension: str
    used: int
    cap: int


class IngestResult(Struct, kw_only=True):
    inserted: int
    duplicates: int
    conflicts: list[Conflict]
    over_cap: list[OverCap]


class UsageRow(Struct, kw_only=True):
    """``quantity`` is an integer in the dimension's unit — for ``epsilon_spent``, micro-ε — and
    ``epsilon`` is that ε as a decimal, as budgets and query answers show it (null elsewhere)."""

    period: str  # the bucket's start in the requested time zone, ISO 8601
    dimension: str
    analyst_id: str | None
    licence_id: str
    quantity: int
    epsilon: float | None


class CapStanding(Struct, kw_only=True):
    """One capped dimension of a licence in its current cap period: the cap, what is used (and held
    by queries in flight), what is left."""

    dimension: str
    cap: int
    used: int
    left: int
    period_start: date


class UsageReport(Struct, kw_only=True):
    """``totals`` per dimension in integers (``epsilon_spent`` in micro-ε); ``epsilon_spent`` is
    that total as a decimal ε."""

    granularity: Literal["day", "hour"]
    tz: str
    since: datetime
    until: datetime
    rows: list[UsageRow]
    totals: dict[str, int]
    epsilon_spent: float
    # GetLicenceUsage only: each capped dimension in the licence's current cap period.
    caps: list[CapStanding] = []

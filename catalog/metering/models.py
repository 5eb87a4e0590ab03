"""Usage events, the counters that hold caps, ε budgets, and delivery reservations."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from catalog.db import Base, CreatedMixin, IdMixin, utcnow

DIMENSIONS = ("queries", "rows_returned", "bytes_downloaded", "epsilon_spent")


class UsageEvent(IdMixin, Base):
    """One metered use. Server-side events come from delivery's settle step; providers that deliver
    outside Lode report theirs. ``idempotency_key`` is unique per licence."""

    __tablename__ = "usage_events"
    __table_args__ = (
        UniqueConstraint("licence_id", "idempotency_key"),
        Index("ix_usage_events_licence_id_occurred_at", "licence_id", "occurred_at"),
        Index("ix_usage_events_consumer_org_id_occurred_at", "consumer_org_id", "occurred_at"),
    )

    licence_id: Mapped[str] = mapped_column(ForeignKey("licences.id"))
    idempotency_key: Mapped[str] = mapped_column(String(200))
    consumer_org_id: Mapped[str] = mapped_column(String(40))
    product_id: Mapped[str] = mapped_column(String(40), index=True)
    analyst_id: Mapped[str | None] = mapped_column(String(40))
    dimension: Mapped[str] = mapped_column(String(24))
    quantity: Mapped[int] = mapped_column(BigInteger)
    occurred_at: Mapped[datetime]
    source: Mapped[str] = mapped_column(String(16))  # server | reported
    reported_by: Mapped[str | None] = mapped_column(String(40))
    payload_sha256: Mapped[str] = mapped_column(String(64))
    over_cap: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class UsageCounter(Base):
    """What a licence has used (and holds in reservation) of a capped dimension in one cap period.
    Changed only by conditional single statements, so a cap holds under any concurrency."""

    __tablename__ = "usage_counters"

    licence_id: Mapped[str] = mapped_column(ForeignKey("licences.id"), primary_key=True)
    dimension: Mapped[str] = mapped_column(String(24), primary_key=True)
    period_start: Mapped[date] = mapped_column(primary_key=True)
    used: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class EpsilonBudget(Base):
    """The ε budget of a consumer organisation for a product, across all its licences (micro-ε)."""

    __tablename__ = "epsilon_budgets"

    consumer_org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), primary_key=True)
    product_id: Mapped[str] = mapped_column(ForeignKey("products.id"), primary_key=True)
    total_micro: Mapped[int] = mapped_column(BigInteger)
    spent_micro: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Reservation(IdMixin, CreatedMixin, Base):
    """What a delivery request reserved before its work; settled (or released) afterwards.
    A reservation left ``open`` by a crash is released by the sweep — all but its ε."""

    __tablename__ = "reservations"
    __table_args__ = (Index("ix_reservations_status_expires_at", "status", "expires_at"),)

    licence_id: Mapped[str] = mapped_column(ForeignKey("licences.id"), index=True)
    analyst_id: Mapped[str] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(16))  # query | download
    amounts: Mapped[dict[str, Any]]  # dimension → reserved quantity on a capped counter
    period_start: Mapped[date]
    epsilon_micro: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[str] = mapped_column(String(16), default="open")
    expires_at: Mapped[datetime]
    settled_at: Mapped[datetime | None]

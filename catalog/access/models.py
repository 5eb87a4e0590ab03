"""Applications, their review tracks, licences with holds, and block-lists."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from catalog.db import Base, CreatedMixin, IdMixin, utcnow


class Application(IdMixin, CreatedMixin, Base):
    __tablename__ = "applications"
    __table_args__ = (Index("ix_applications_consumer_org_id_id", "consumer_org_id", "id"),)

    consumer_org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"))
    product_id: Mapped[str] = mapped_column(ForeignKey("products.id"), index=True)
    plan_id: Mapped[str] = mapped_column(ForeignKey("plans.id"))
    # draft | submitted | under_review | approved | rejected | returned | withdrawn
    status: Mapped[str] = mapped_column(String(16), default="draft")
    purpose: Mapped[dict[str, Any]]
    project: Mapped[dict[str, Any]]
    analysts: Mapped[list[str]]
    ethics_approval: Mapped[dict[str, Any] | None]
    requested_start: Mapped[date | None]
    requested_months: Mapped[int] = mapped_column(Integer)
    round: Mapped[int] = mapped_column(Integer, default=0)
    # While a renewal waits on review tracks the product now requires: the licence it renews.
    renewing_licence_id: Mapped[str | None] = mapped_column(ForeignKey("licences.id", use_alter=True))
    submitted_at: Mapped[datetime | None]
    decided_at: Mapped[datetime | None]
    created_by: Mapped[str | None] = mapped_column(String(40))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ReviewTrack(IdMixin, CreatedMixin, Base):
    """One row per track; a resubmit reopens the row (its history is in the audit chain)."""

    __tablename__ = "review_tracks"
    __table_args__ = (UniqueConstraint("application_id", "track"),)

    application_id: Mapped[str] = mapped_column(ForeignKey("applications.id"), index=True)
    track: Mapped[str] = mapped_column(String(16))
    # pending | approved | approved_with_conditions | rejected | returned | cancelled
    status: Mapped[str] = mapped_column(String(32), default="pending")
    decision: Mapped[str | None] = mapped_column(String(32))
    comment: Mapped[str | None] = mapped_column(Text)
    conditions: Mapped[str | None] = mapped_column(Text)
    decided_by: Mapped[str | None] = mapped_column(String(40))
    decided_at: Mapped[datetime | None]
    round: Mapped[int] = mapped_column(Integer, default=1)


class ReviewDecider(Base):
    """Four eyes: the one track of an application each person may decide.

    Written on a person's first decision of the application and kept through every round, so a
    resubmit that reopens a track (and clears its ``decided_by``) still remembers who decided what.
    The key makes a second track for the same person impossible even if two requests race.
    """

    __tablename__ = "review_deciders"

    application_id: Mapped[str] = mapped_column(ForeignKey("applications.id"), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    track: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Licence(IdMixin, CreatedMixin, Base):
    __tablename__ = "licences"
    __table_args__ = (
        Index("ix_licences_consumer_org_id_id", "consumer_org_id", "id"),
        Index("ix_licences_status_ends_on", "status", "ends_on"),
    )

    # An application's licences: the one its approval issued, then each renewal of the one before.
    application_id: Mapped[str] = mapped_column(ForeignKey("applications.id"), index=True)
    # The licence this one renews; unique, so a licence is renewed at most once, even by racing requests.
    renews_licence_id: Mapped[str | None] = mapped_column(ForeignKey("licences.id"), unique=True)
    consumer_org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"))
    product_id: Mapped[str] = mapped_column(ForeignKey("products.id"), index=True)
    owner_org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    plan_id: Mapped[str] = mapped_column(ForeignKey("plans.id"), index=True)
    terms_id: Mapped[str] = mapped_column(ForeignKey("terms.id"))
    terms_version: Mapped[int] = mapped_column(Integer)
    terms_sha256: Mapped[str] = mapped_column(String(64))
    revenue_share_id: Mapped[str] = mapped_column(ForeignKey("revenue_share_rules.id"))
    revenue_share_version: Mapped[int] = mapped_column(Integer)
    purpose: Mapped[dict[str, Any]]
    public_summary: Mapped[str | None] = mapped_column(Text)
    analysts: Mapped[list[str]]
    starts_on: Mapped[date]
    ends_on: Mapped[date]
    caps: Mapped[dict[str, Any]]
    cap_period: Mapped[str] = mapped_column(String(16))
    modes: Mapped[list[str]]
    # approve_with_conditions decisions, copied at approval: [{track, text, decided_by, decided_at}]
    conditions: Mapped[list[Any]] = mapped_column(default=list)
    # pending_acceptance | declined | pending_payment | active | suspended | expired | revoked | cancelled
    status: Mapped[str] = mapped_column(String(24), default="pending_acceptance")
    ethics_expires_on: Mapped[date | None]
    payment_due_by: Mapped[datetime | None]
    accepted_at: Mapped[datetime | None]
    accepted_by: Mapped[str | None] = mapped_column(String(40))
    activated_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    end_reason: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class LicenceParty(Base):
    """The organisations a licence concerns — consumer, owner, every provider in its pinned rule —
    so each can find its licences (and their usage and payments) through one index."""

    __tablename__ = "licence_parties"

    licence_id: Mapped[str] = mapped_column(ForeignKey("licences.id"), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), primary_key=True, index=True)
    role: Mapped[str] = mapped_column(String(16), primary_key=True)


class LicenceHold(Base):
    """A reason a licence is suspended. Only the cause that set a hold lifts it: ``source`` names it
    (the org whose block-list, the operator, 'verification', 'billing', 'ethics')."""

    __tablename__ = "licence_holds"

    licence_id: Mapped[str] = mapped_column(ForeignKey("licences.id"), primary_key=True)
    # operator | provider | non_payment | ethics_expired | org_blocked
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    source: Mapped[str] = mapped_column(String(40), primary_key=True)
    reason: Mapped[str | None] = mapped_column(Text)
    set_by: Mapped[str | None] = mapped_column(String(40))
    set_at: Mapped[datetime] = mapped_column(default=utcnow)


class BlocklistEntry(Base):
    """An organisation on a provider's list (``list_org_id`` = the provider) or the platform's (the operator)."""

    __tablename__ = "blocklist_entries"

    list_org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), primary_key=True)
    blocked_org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), primary_key=True, index=True)
    reason: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

"""Events told to organisations, each member's read marks, and webhook endpoints with their deliveries."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from catalog.db import Base, CreatedMixin, IdMixin


class Notice(IdMixin, Base):
    """One event (``msg_…``, the ``webhook-id`` of every delivery of it). ``data`` names objects by
    id and never carries data rows. ``dedupe_key`` makes a reminder or a threshold event exactly once."""

    __tablename__ = "notices"

    type: Mapped[str] = mapped_column(String(40))
    subject_type: Mapped[str] = mapped_column(String(24))
    subject_id: Mapped[str] = mapped_column(String(80))
    data: Mapped[dict[str, Any]]
    occurred_at: Mapped[datetime]
    dedupe_key: Mapped[str | None] = mapped_column(String(200), unique=True)


class NoticeRecipient(Base):
    """An organisation entitled to see the event's subject; its members' feed is these rows."""

    __tablename__ = "notice_recipients"
    __table_args__ = (Index("ix_notice_recipients_org_id_notice_id", "org_id", "notice_id"),)

    notice_id: Mapped[str] = mapped_column(ForeignKey("notices.id"), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), primary_key=True)


class NoticeMark(Base):
    """What a member has read in one organisation's feed: everything up to ``read_through`` (a
    notice id; ids sort by time) plus the notices read one by one since (``NoticeRead``)."""

    __tablename__ = "notice_marks"

    user_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    org_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    read_through: Mapped[str] = mapped_column(String(40))


class NoticeRead(Base):
    __tablename__ = "notice_reads"

    user_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    notice_id: Mapped[str] = mapped_column(ForeignKey("notices.id"), primary_key=True)
    read_at: Mapped[datetime]


class WebhookEndpoint(IdMixin, CreatedMixin, Base):
    """An organisation's receiver. Secrets are kept sealed under a key derived from the server's
    pepper (they must be read to sign, so they cannot be hashed); a rotated-out secret keeps signing
    beside the new one until ``previous_secret_expires_at``."""

    __tablename__ = "webhook_endpoints"

    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    url: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    event_types: Mapped[list[str] | None] = mapped_column()  # None: every type
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    disabled_at: Mapped[datetime | None]
    secret_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    secret_nonce: Mapped[str] = mapped_column(String(32))
    previous_secret_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    previous_secret_nonce: Mapped[str | None] = mapped_column(String(32))
    previous_secret_expires_at: Mapped[datetime | None]
    last_success_at: Mapped[datetime | None]
    created_by: Mapped[str | None] = mapped_column(String(40))
    updated_at: Mapped[datetime]


class WebhookDelivery(IdMixin, CreatedMixin, Base):
    """One event owed to one endpoint: ``pending`` until a 2xx (``delivered``) or until its retries
    span three days (``failed``). Claimed under a lease like an outbox event, so a killed worker's
    claim lapses and another delivers it again, under the same ``webhook-id``."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_endpoint_id_id", "endpoint_id", "id"),
    )

    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    notice_id: Mapped[str] = mapped_column(ForeignKey("notices.id"))
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    first_attempt_at: Mapped[datetime | None]
    locked_until: Mapped[datetime | None]
    lock_token: Mapped[str | None] = mapped_column(String(32))
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None]


class WebhookAttempt(Base):
    """One try of a delivery, for the endpoint's delivery log."""

    __tablename__ = "webhook_attempts"

    delivery_id: Mapped[str] = mapped_column(ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    attempted_at: Mapped[datetime]
    status_code: Mapped[int | None] = mapped_column(Integer)
    duration_ms: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)

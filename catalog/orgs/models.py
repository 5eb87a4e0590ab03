"""Organisations, users, memberships and API keys."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from catalog.db import Base, CreatedMixin, IdMixin, utcnow

ORG_KINDS = ("operator", "provider", "consumer")
ORG_TYPES = ("hospital", "pharma", "cro", "university", "government", "other")
ORG_STATUSES = ("pending", "verified", "rejected")
ROLES_BY_KIND: dict[str, tuple[str, ...]] = {
    "operator": ("admin", "curator", "compliance", "ethics", "security", "finance"),
    "provider": ("admin", "publisher", "reviewer"),
    "consumer": ("admin", "buyer", "analyst"),
}


class Organisation(IdMixin, CreatedMixin, Base):
    __tablename__ = "organisations"

    name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(80), unique=True)
    kind: Mapped[str] = mapped_column(String(16), index=True)
    jurisdiction: Mapped[str] = mapped_column(String(2))
    org_type: Mapped[str] = mapped_column(String(16))
    for_profit: Mapped[bool] = mapped_column(Boolean)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    status_note: Mapped[str | None] = mapped_column(String(2000))
    verified_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class User(IdMixin, CreatedMixin, Base):
    __tablename__ = "users"

    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="active")


class Membership(IdMixin, CreatedMixin, Base):
    """A user belongs to one organisation, with roles valid for that organisation's kind."""

    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("user_id"),)

    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    roles: Mapped[list[str]]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ApiKey(IdMixin, CreatedMixin, Base):
    __tablename__ = "api_keys"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(24), index=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str | None] = mapped_column(String(40))
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

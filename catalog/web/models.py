"""Signed-in browser sessions, kept in the database so every API node sees the same ones."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from catalog.db import Base


class WebSession(Base):
    """One browser's sign-in. ``id`` is the SHA-256 of the cookie's token, and the API key is
    sealed with a key derived from that token: the database alone can neither find a session's
    cookie nor read its key."""

    __tablename__ = "web_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(40), index=True)
    org_id: Mapped[str] = mapped_column(String(40))
    sealed_key: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)

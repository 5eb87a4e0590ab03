"""Browser sign-in: an API key pasted once, kept server-side behind an HttpOnly cookie; CSRF.

* The cookie carries a random token and nothing else. The database keeps SHA-256(token) as the
  session's id and the API key sealed under a key derived from the token, so neither a copy of
  the database nor the page's JavaScript (the cookie is HttpOnly) yields a usable key.
* A session lives ``LIFETIME`` from sign-in; sign-out deletes its row, so the cookie is dead even
  if a copy of it survives. A key revoked meanwhile makes the API refuse it: the session ends.
* CSRF: every unsafe request to a page must carry the form field ``csrf`` (or the header
  ``X-CSRF-Token``, which htmx sends) equal to a token derived from the session token; before
  sign-in, equal to a random ``lode_csrf`` cookie (double submit). A cross-site ``Origin`` is
  refused outright. The cookies are ``SameSite=Lax`` as well, a second line, not the first.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from litestar import Request
from litestar.datastructures import Cookie

from catalog.db import read_transaction, utcnow, write_transaction
from catalog.errors import Forbidden
from catalog.sealing import seal, unseal
from catalog.web import repository as repo
from catalog.web.models import WebSession

COOKIE = "lode_session"
CSRF_COOKIE = "lode_csrf"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
LIFETIME = timedelta(hours=8)
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class Member:
    """The signed-in member of a page request."""

    token: str
    key: str
    user_id: str
    org_id: str


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def csrf_for_session(token: str) -> str:
    return hmac.new(token.encode(), b"lode web csrf", hashlib.sha256).hexdigest()


def _secure(request: Request[Any, Any, Any]) -> bool:
    return request.url.scheme == "https" or request.app.state.settings.public_url.startswith("https://")


def session_cookie(request: Request[Any, Any, Any], token: str) -> Cookie:
    return Cookie(
        key=COOKIE,
        value=token,
        max_age=int(LIFETIME.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=_secure(request),
        path="/",
    )


def cleared_cookie(request: Request[Any, Any, Any]) -> Cookie:
    return Cookie(key=COOKIE, value="", max_age=0, httponly=True, samesite="lax", secure=_secure(request), path="/")


def csrf_cookie(request: Request[Any, Any, Any], value: str) -> Cookie:
    return Cookie(key=CSRF_COOKIE, value=value, httponly=True, samesite="lax", secure=_secure(request), path="/")


async def start(request: Request[Any, Any, Any], key: str, user_id: str, org_id: str) -> str:
    """A new session for this key; answers the cookie's token."""
    token = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    now = utcnow()
    async with write_transaction(request.app.state.sessions) as session:
        await repo.delete_lapsed(session, now)  # the lapsed ones, in passing
        session.add(
            WebSession(
                id=_digest(token),
                user_id=user_id,
                org_id=org_id,
                sealed_key=seal(token, key),
                created_at=now,
                expires_at=now + LIFETIME,
            )
        )
    return token


async def current(request: Request[Any, Any, Any]) -> Member | None:
    token = request.cookies.get(COOKIE)
    if not token or len(token) > 100:
        return None
    async with read_transaction(request.app.state.sessions) as session:
        row = await repo.get(session, _digest(token))
    if row is None or row.expires_at <= utcnow():
        return None
    try:
        key = unseal(token, row.sealed_key)
    except UnicodeDecodeError:
        return None
    return Member(token=token, key=key, user_id=row.user_id, org_id=row.org_id)


async def end(request: Request[Any, Any, Any], member: Member | None) -> None:
    if member is None:
        return
    async with write_transaction(request.app.state.sessions) as session:
        await repo.delete_one(session, _digest(member.token))


def expected_csrf(request: Request[Any, Any, Any], member: Member | None) -> str | None:
    if member is not None:
        return csrf_for_session(member.token)
    cookie = request.cookies.get(CSRF_COOKIE)
    return cookie if cookie and TOKEN.fullmatch(cookie) else None


TOKEN = re.compile(r"[A-Za-z0-9_-]{20,100}")


def anonymous_csrf(request: Request[Any, Any, Any]) -> tuple[str, bool]:
    """The visitor's double-submit token, and whether the cookie must be set now. Only a token of
    the shape Lode makes is taken: the page writes it into a header (``hx-headers``)."""
    existing = request.cookies.get(CSRF_COOKIE)
    if existing and TOKEN.fullmatch(existing):
        return existing, False
    return secrets.token_urlsafe(32), True


def check_origin(request: Request[Any, Any, Any]) -> None:
    """A browser names the page that sent an unsafe request; another site's is refused."""
    origin = request.headers.get("origin")
    if origin is None:
        return
    # This server as the browser addressed it, or as it is published (behind a proxy that rewrites Host).
    ours = {request.headers.get("host", ""), urlsplit(request.app.state.settings.public_url).netloc}
    if urlsplit(origin).netloc not in ours:
        raise Forbidden("This form was sent from another site.", code="csrf_failed")


def check_csrf(request: Request[Any, Any, Any], member: Member | None, sent: str | None) -> None:
    check_origin(request)
    expected = expected_csrf(request, member)
    sent = sent or request.headers.get(CSRF_HEADER)
    if not expected or not sent or not hmac.compare_digest(expected.encode(), sent.encode()):
        raise Forbidden(
            "The form's security token is missing or stale. Reload the page and try again.", code="csrf_failed"
        )

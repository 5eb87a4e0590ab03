"""API keys, roles and the guards every route uses — authorisation is decided here and in the
repositories' tenant scoping, nowhere else.

* A key is ``lode_`` + 32 random bytes (base64url). Only HMAC-SHA-256(pepper, key) is stored, with
  the first characters as a lookup prefix; the comparison is constant-time.
* Every route needs a caller unless its handler says ``opt={"public": True}``; a missing, unknown or
  revoked key on any route is 401, so a new route cannot forget authentication.
* Role checks are guards (``operator("curator")``, ``provider("publisher")`` …); checks that depend
  on the resource (``ensure_org_admin``) are functions here that services call.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import timedelta
from typing import Any

import msgspec
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send

from catalog.db import single_read, utcnow, write_transaction
from catalog.errors import Forbidden, NotAuthenticated, NotFound
from catalog.orgs import repository as orgs_repo

KEY_PREFIX = "lode_"
# OpenAPI security of routes anyone may call: no key needed, and a key, when sent, is checked.
ANYONE: list[dict[str, list[str]]] = [{}, {"ApiKey": []}]
LOOKUP_CHARS = 12
LAST_USED_RESOLUTION = timedelta(minutes=1)


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """Who is calling: a user acting for their organisation through one API key."""

    user_id: str
    org_id: str
    org_kind: str
    org_status: str
    roles: frozenset[str]
    key_id: str

    @property
    def is_operator(self) -> bool:
        return self.org_kind == "operator"

    def acts_as(self, role: str) -> bool:
        """An organisation's ``admin`` may act in every role of its own organisation."""
        return role in self.roles or "admin" in self.roles

    def is_operator_with(self, *roles: str) -> bool:
        return self.is_operator and any(self.acts_as(r) for r in roles)

    def is_member_with(self, org_id: str, *roles: str) -> bool:
        return self.org_id == org_id and any(self.acts_as(r) for r in roles)

    def holds(self, role: str) -> bool:
        """Granted ``role`` itself: an admin's acting in every role does not count. Review decisions
        ask this, so that an admin is one pair of eyes, not all of them."""
        return role in self.roles


def new_secret() -> str:
    return KEY_PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


def demo_secret(seed: str, slug: str) -> str:
    """Demo keys are derived, never stored: a rerun of ``lode demo`` prints the same keys."""
    digest = hmac.new(seed.encode(), slug.encode(), hashlib.sha256).digest()
    return KEY_PREFIX + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def lookup_prefix(secret: str) -> str:
    return secret[: len(KEY_PREFIX) + LOOKUP_CHARS]


def hash_secret(pepper: bytes, secret: str) -> str:
    return hmac.new(pepper, secret.encode(), hashlib.sha256).hexdigest()


class AuthenticationMiddleware(ASGIMiddleware):
    """Resolves ``Authorization: Bearer <key>`` into ``scope["user"]`` (a Principal, or None)."""

    scopes = ("http",)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        scope["user"] = await _authenticate(scope)
        await next_app(scope, receive, send)


async def _authenticate(scope: Scope) -> Principal | None:
    header = None
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            header = value.decode("latin-1")
            break
    if header is None:
        return None
    scheme, _, secret = header.partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret.startswith(KEY_PREFIX):
        raise NotAuthenticated("Use 'Authorization: Bearer <api key>'.")
    if not (secret.isascii() and secret.isprintable()):  # a NUL would fail the lookup on PostgreSQL
        raise NotAuthenticated("The API key is unknown or revoked.")
    state = scope["litestar_app"].state
    expected = hash_secret(state.settings.key_pepper, secret)
    async with single_read(state.engine) as conn:
        candidates = await orgs_repo.keys_by_prefix(conn, lookup_prefix(secret))
    match = next((c for c in candidates if hmac.compare_digest(c.secret_hash, expected)), None)
    if match is None or match.revoked_at is not None or match.roles is None:
        raise NotAuthenticated("The API key is unknown or revoked.")
    now = utcnow()
    last = match.last_used_at
    if last is None or now - last >= LAST_USED_RESOLUTION:
        # Its own short transaction, and a conditional update: concurrent requests with the same
        # key write at most once a minute instead of contending on the row.
        async with write_transaction(state.sessions) as session:
            await orgs_repo.touch_key(session, match.key_id, now, now - LAST_USED_RESOLUTION)
    return Principal(
        user_id=match.user_id,
        org_id=match.org_id,
        org_kind=match.org_kind,
        org_status=match.org_status,
        roles=frozenset(match.roles),
        key_id=match.key_id,
    )


# Guards are coroutines though they never wait: Litestar runs a plain-function guard in a worker
# thread, a hop per guard on every request that cost more than the check.


async def require_caller(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """App-wide guard: a key is needed unless the handler is marked public."""
    if handler.opt.get("public"):
        return
    if connection.scope.get("user") is None:
        raise NotAuthenticated("A valid API key is required: 'Authorization: Bearer <api key>'.")


def _role_guard(kind: str, roles: tuple[str, ...]) -> Any:
    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _handler: BaseRouteHandler) -> None:
        principal: Principal | None = connection.scope.get("user")
        if principal is None:
            raise NotAuthenticated("A valid API key is required.")
        if principal.org_kind != kind or not any(principal.acts_as(r) for r in roles):
            raise Forbidden(f"This needs the {' or '.join(roles)} role of a {kind} organisation.")

    guard.__name__ = f"{kind}_{'_'.join(roles)}"
    return guard


def operator(*roles: str) -> Any:
    return _role_guard("operator", roles)


def provider(*roles: str) -> Any:
    return _role_guard("provider", roles)


def consumer(*roles: str) -> Any:
    return _role_guard("consumer", roles)


def any_of(*guards: Any) -> Any:
    """A guard that passes when any of ``guards`` does (e.g. a provider's publisher or the operator)."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
        refusal: Exception | None = None
        for one in guards:
            try:
                await one(connection, handler)
                return
            except (Forbidden, NotAuthenticated) as exc:
                refusal = exc
        assert refusal is not None
        raise refusal

    guard.__name__ = "any_of_" + "_".join(g.__name__ for g in guards)
    return guard


def ensure_org_admin(principal: Principal, org_id: str) -> None:
    """The organisation's own admin, or the operator's admin; another tenant is told the
    organisation does not exist (as it would be for a made-up id)."""
    ensure_sees_org(principal, org_id)
    if principal.is_member_with(org_id, "admin") or principal.is_operator_with("admin"):
        return
    raise Forbidden("Only the organisation's admin or the operator's admin may do this.")


def ensure_member_with(principal: Principal | None, org_id: str, *roles: str) -> Principal:
    """A member of ``org_id`` acting in one of ``roles`` (its admin acts in all of them)."""
    if principal is None:
        raise NotAuthenticated("A valid API key is required.")
    if not principal.is_member_with(org_id, *roles):
        raise Forbidden(f"This needs the {' or '.join(roles)} role of the owning organisation.")
    return principal


def ensure_sees_org(principal: Principal, org_id: str) -> None:
    """Its own members and the operator; to anyone else a real organisation's members, keys,
    block-list or statement answer 404 exactly as a made-up one does, so ids cannot be probed."""
    if principal.org_id != org_id and not principal.is_operator:
        raise NotFound(f"No organisation {org_id}.")


async def provide_caller(request: Request[Any, Any, Any]) -> Principal:
    principal = request.scope.get("user")
    if principal is None:  # only reachable if a public handler asks for a caller
        raise NotAuthenticated("A valid API key is required.")
    return principal


async def provide_viewer(request: Request[Any, Any, Any]) -> Principal | None:
    return request.scope.get("user")

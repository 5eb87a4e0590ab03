"""Organisations, members and API keys: the rules, the audit trail, and conversion to bodies."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Awaitable, Callable, Sequence

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from catalog import audit
from catalog.auth import Principal, ensure_org_admin, ensure_sees_org, hash_secret, lookup_prefix, new_secret
from catalog.db import utcnow
from catalog.errors import Conflict, Forbidden, NotFound, ValidationFailed
from catalog.geo import is_country
from catalog.ids import new_id
from catalog.orgs import repository as repo
from catalog.orgs.models import ROLES_BY_KIND, ApiKey, Membership, Organisation, User
from catalog.orgs.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyList,
    ApiKeyRead,
    BootstrapResult,
    MemberCreate,
    MemberList,
    MemberRead,
    MemberUpdate,
    MeRead,
    OrgCreate,
    OrgList,
    OrgRead,
    OrgVerify,
    UserRead,
)
from catalog.pagination import PageRequest


def org_read(org: Organisation) -> OrgRead:
    return msgspec.convert(org, OrgRead, from_attributes=True)


def member_read(membership: Membership, user: User) -> MemberRead:
    return MemberRead(
        id=user.id,
        email=user.email,
        name=user.name,
        org_id=membership.org_id,
        roles=list(membership.roles),
        status=user.status,
        created_at=membership.created_at,
    )


def key_read(key: ApiKey) -> ApiKeyRead:
    return ApiKeyRead(
        id=key.id,
        user_id=key.user_id,
        org_id=key.org_id,
        name=key.name,
        prefix=key.prefix,
        status="revoked" if key.revoked_at else "active",
        created_at=key.created_at,
        last_used_at=key.last_used_at,
        revoked_at=key.revoked_at,
    )


def slugify(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")[:60]


def check_roles(kind: str, roles: list[str]) -> list[str]:
    allowed = ROLES_BY_KIND[kind]
    wrong = [r for r in roles if r not in allowed]
    if wrong:
        raise ValidationFailed.field("roles", f"{', '.join(wrong)} not valid for a {kind}; use {', '.join(allowed)}")
    return sorted(set(roles))


VerificationHook = Callable[[AsyncSession, Principal | None, str, str], Awaitable[None]]


class OrgService:
    def __init__(
        self,
        session: AsyncSession,
        caller: Principal | None,
        pepper: bytes,
        on_verification: Sequence[VerificationHook] = (),
    ) -> None:
        self.session = session
        self.caller = caller
        self.pepper = pepper
        # Circulation holds an un-verified organisation's licences; the composition root passes
        # that in, since organisations must not depend on circulation.
        self.on_verification = on_verification

    async def _org(self, org_id: str) -> Organisation:
        org = await repo.get_org(self.session, org_id)
        if org is None:
            raise NotFound(f"No organisation {org_id}.")
        return org

    async def _unique_slug(self, wanted: str | None, name: str, org_id: str) -> str:
        if wanted is not None:
            if await repo.slug_taken(self.session, wanted):
                raise Conflict(f"The slug {wanted!r} is taken.", code="slug_taken")
            return wanted
        base = slugify(name) or org_id[-10:].lower()
        slug, n = base, 1
        while await repo.slug_taken(self.session, slug):
            n += 1
            slug = f"{base}-{n}"
        return slug

    async def me(self) -> MeRead:
        assert self.caller is not None
        user = await repo.get_user(self.session, self.caller.user_id)
        org = await self._org(self.caller.org_id)
        assert user is not None
        return MeRead(
            user=msgspec.convert(user, UserRead, from_attributes=True),
            organisation=org_read(org),
            roles=sorted(self.caller.roles),
        )

    async def create_org(self, data: OrgCreate, *, verified: bool = False) -> OrgRead:
        if not is_country(data.jurisdiction):
            raise ValidationFailed.field("jurisdiction", f"{data.jurisdiction!r} is not an ISO 3166-1 alpha-2 code")
        if data.kind == "operator" and await repo.operator_exists(self.session):
            raise Conflict("There is already an operator organisation.", code="operator_exists")
        org_id = new_id("org")
        now = utcnow()
        org = Organisation(
            id=org_id,
            name=data.name,
            slug=await self._unique_slug(data.slug, data.name, org_id),
            kind=data.kind,
            jurisdiction=data.jurisdiction,
            org_type=data.org_type,
            for_profit=data.for_profit,
            status="verified" if verified else "pending",
            verified_at=now if verified else None,
            created_at=now,
            updated_at=now,
        )
        self.session.add(org)
        await self.session.flush()
        audit.record(
            self.session,
            self.caller,
            "org.created",
            "org",
            org_id,
            [org_id],
            {"name": data.name, "kind": data.kind, "jurisdiction": data.jurisdiction},
        )
        return org_read(org)

    async def list_orgs(self, page: PageRequest, kind: str | None, status: str | None) -> OrgList:
        assert self.caller is not None
        only = None if self.caller.is_operator else self.caller.org_id
        result = await repo.list_orgs(self.session, page, only_org=only, kind=kind, status=status)
        return OrgList(items=[org_read(o) for o in result.items], next_cursor=result.next_cursor)

    async def get_org(self, org_id: str) -> OrgRead:
        assert self.caller is not None
        if self.caller.org_id != org_id and not self.caller.is_operator:
            raise NotFound(f"No organisation {org_id}.")  # another tenant's existence is not revealed
        return org_read(await self._org(org_id))

    async def verify(self, org_id: str, data: OrgVerify) -> OrgRead:
        org = await self._org(org_id)
        if org.kind == "operator":
            raise Conflict("The operator organisation is always verified.", code="invalid_transition")
        previous = org.status
        org.status = data.status
        org.status_note = data.note or None
        org.verified_at = utcnow() if data.status == "verified" else None
        await self.session.flush()
        audit.record(
            self.session,
            self.caller,
            "org.verified" if data.status == "verified" else "org.rejected",
            "org",
            org_id,
            [org_id],
            {"from": previous, "to": data.status, "note": data.note},
        )
        if previous != data.status:
            for hook in self.on_verification:
                await hook(self.session, self.caller, org_id, data.status)
        return org_read(org)

    async def add_member(self, org_id: str, data: MemberCreate) -> MemberRead:
        assert self.caller is not None
        org = await self._org(org_id)
        ensure_org_admin(self.caller, org_id)
        roles = check_roles(org.kind, list(data.roles))
        email = data.email.strip().lower()
        user = await repo.user_by_email(self.session, email)
        if user is not None and await repo.membership_of(self.session, user.id) is not None:
            raise Conflict(f"{email} is already a member of an organisation.", code="already_member")
        now = utcnow()
        if user is None:
            user = User(id=new_id("usr"), email=email, name=data.name, created_at=now)
            self.session.add(user)
        user.status, user.name = "active", data.name
        await self.session.flush()  # the user row first: the models carry no relationships to order by
        membership = Membership(id=new_id("mem"), org_id=org_id, user_id=user.id, roles=roles, created_at=now)
        self.session.add(membership)
        await self.session.flush()
        audit.record(self.session, self.caller, "member.added", "user", user.id, [org_id], {"roles": roles})
        return member_read(membership, user)

    async def _member(self, org_id: str, user_id: str) -> tuple[Organisation, Membership, User]:
        assert self.caller is not None
        org = await self._org(org_id)
        ensure_org_admin(self.caller, org_id)
        membership = await repo.membership(self.session, org_id, user_id)
        user = await repo.get_user(self.session, user_id)
        if membership is None or user is None:
            raise NotFound(f"{user_id} is not a member of {org_id}.")
        return org, membership, user

    async def list_members(self, org_id: str, page: PageRequest) -> MemberList:
        assert self.caller is not None
        ensure_sees_org(self.caller, org_id)
        await self._org(org_id)
        result = await repo.list_members(self.session, org_id, page)
        return MemberList(items=[member_read(m, u) for m, u in result.items], next_cursor=result.next_cursor)

    async def update_member(self, org_id: str, user_id: str, data: MemberUpdate) -> MemberRead:
        org, membership, user = await self._member(org_id, user_id)
        before = list(membership.roles)
        if not isinstance(data.roles, msgspec.UnsetType):
            roles = check_roles(org.kind, list(data.roles))
            if "admin" in before and "admin" not in roles:
                await self._keep_an_admin(org_id, user_id)
            membership.roles = roles
        if not isinstance(data.name, msgspec.UnsetType):
            user.name = data.name
        await self.session.flush()
        audit.record(
            self.session,
            self.caller,
            "member.updated",
            "user",
            user_id,
            [org_id],
            {"roles_before": before, "roles": list(membership.roles)},
        )
        return member_read(membership, user)

    async def remove_member(self, org_id: str, user_id: str) -> None:
        _, membership, user = await self._member(org_id, user_id)
        if "admin" in membership.roles:
            await self._keep_an_admin(org_id, user_id)
        revoked = await repo.revoke_user_keys(self.session, user_id, utcnow())
        await self.session.delete(membership)
        user.status = "removed"
        await self.session.flush()
        audit.record(
            self.session,
            self.caller,
            "member.removed",
            "user",
            user_id,
            [org_id],
            {"roles": list(membership.roles), "keys_revoked": revoked},
        )

    async def _keep_an_admin(self, org_id: str, user_id: str) -> None:
        others = [
            m
            for m, u in await repo.org_members_with_role(self.session, org_id)
            if m.user_id != user_id and "admin" in m.roles and u.status == "active"
        ]
        if not others:
            raise Conflict("An organisation must keep at least one admin.", code="last_admin")

    async def issue_key(self, org_id: str, data: ApiKeyCreate) -> ApiKeyCreated:
        assert self.caller is not None
        await self._org(org_id)
        ensure_sees_org(self.caller, org_id)
        if data.user_id != self.caller.user_id:
            ensure_org_admin(self.caller, org_id)
        membership = await repo.membership(self.session, org_id, data.user_id)
        if membership is None:
            raise ValidationFailed.field("user_id", f"{data.user_id} is not a member of {org_id}")
        secret = new_secret()
        key = self.store_key(org_id, data.user_id, data.name, secret)
        await self.session.flush()
        audit.record(
            self.session,
            self.caller,
            "api_key.issued",
            "api_key",
            key.id,
            [org_id],
            {"user_id": data.user_id, "name": data.name, "prefix": key.prefix},
        )
        return ApiKeyCreated(**msgspec.structs.asdict(key_read(key)), secret=secret)

    def store_key(self, org_id: str, user_id: str, name: str, secret: str) -> ApiKey:
        key = ApiKey(
            id=new_id("key"),
            user_id=user_id,
            org_id=org_id,
            name=name,
            prefix=lookup_prefix(secret),
            secret_hash=hash_secret(self.pepper, secret),
            created_by=getattr(self.caller, "user_id", None),
            created_at=utcnow(),
        )
        self.session.add(key)
        return key

    async def list_keys(self, org_id: str, page: PageRequest) -> ApiKeyList:
        assert self.caller is not None
        ensure_sees_org(self.caller, org_id)
        await self._org(org_id)
        admin = self.caller.is_member_with(org_id, "admin") or self.caller.is_operator_with("admin")
        result = await repo.list_keys(self.session, org_id, page, None if admin else self.caller.user_id)
        return ApiKeyList(items=[key_read(k) for k in result.items], next_cursor=result.next_cursor)

    async def revoke_key(self, key_id: str) -> None:
        assert self.caller is not None
        key = await repo.get_key(self.session, key_id)
        if key is None or (key.org_id != self.caller.org_id and not self.caller.is_operator):
            raise NotFound(f"No API key {key_id}.")
        if key.user_id != self.caller.user_id:
            try:
                ensure_org_admin(self.caller, key.org_id)
            except Forbidden:
                raise Forbidden("Only the key's user or an admin may revoke it.") from None
        if key.revoked_at is None:
            key.revoked_at = utcnow()
            await self.session.flush()
            audit.record(
                self.session, self.caller, "api_key.revoked", "api_key", key_id, [key.org_id], {"user_id": key.user_id}
            )

    async def bootstrap(self, name: str, email: str, jurisdiction: str) -> BootstrapResult:
        """Create the operator and its first admin (``lode admin bootstrap``)."""
        org = await self.create_org(
            OrgCreate(name=name, kind="operator", jurisdiction=jurisdiction, org_type="government", for_profit=False),
            verified=True,
        )
        member = await self.add_first_admin(org.id, email, "Operator admin")
        secret = new_secret()
        key = self.store_key(org.id, member.id, "bootstrap", secret)
        await self.session.flush()
        audit.record(
            self.session,
            None,
            "api_key.issued",
            "api_key",
            key.id,
            [org.id],
            {"user_id": member.id, "name": "bootstrap", "prefix": key.prefix},
        )
        return BootstrapResult(org_id=org.id, user_id=member.id, api_key=secret)

    async def add_first_admin(self, org_id: str, email: str, name: str) -> User:
        email = email.strip().lower()
        if await repo.user_by_email(self.session, email) is not None:
            raise Conflict(f"{email} is already a user.", code="already_member")
        user = User(id=new_id("usr"), email=email, name=name, created_at=utcnow())
        self.session.add(user)
        await self.session.flush()
        self.session.add(Membership(id=new_id("mem"), org_id=org_id, user_id=user.id, roles=["admin"]))
        await self.session.flush()
        audit.record(self.session, None, "member.added", "user", user.id, [org_id], {"roles": ["admin"]})
        return user

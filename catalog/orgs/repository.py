"""SQL for organisations, members and keys — with the tenant scoping every read goes through."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import Select, bindparam, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from catalog.orgs.models import ApiKey, Membership, Organisation, User
from catalog.pagination import Page, PageRequest, paginate


class KeyMatch(NamedTuple):
    """What authenticating a key needs of the key, its organisation and the user's membership
    (``roles`` None when the user is no longer a member)."""

    key_id: str
    user_id: str
    secret_hash: str
    revoked_at: datetime | None
    last_used_at: datetime | None
    org_id: str
    org_kind: str
    org_status: str
    roles: list[str] | None


async def keys_by_prefix(conn: AsyncConnection, prefix: str) -> list[KeyMatch]:
    return [KeyMatch(*row) for row in (await conn.execute(_KEYS_BY_PREFIX, {"prefix": prefix})).all()]


# Built once, the prefix as a parameter, columns rather than entities: every authenticated request
# runs it, and building the statement or loading three entities cost more than the SELECT.
_KEY, _ORG, _MEMBER = ApiKey.__table__, Organisation.__table__, Membership.__table__
_KEYS_BY_PREFIX = (
    select(*(_KEY.c[n] for n in ("id", "user_id", "secret_hash", "revoked_at", "last_used_at")))
    .add_columns(_ORG.c.id, _ORG.c.kind, _ORG.c.status, _MEMBER.c.roles)
    .select_from(
        _KEY.join(_ORG, _ORG.c.id == _KEY.c.org_id).outerjoin(
            _MEMBER, (_MEMBER.c.user_id == _KEY.c.user_id) & (_MEMBER.c.org_id == _KEY.c.org_id)
        )
    )
    .where(_KEY.c.prefix == bindparam("prefix"))
)


async def touch_key(session: AsyncSession, key_id: str, now: datetime, older_than: datetime) -> None:
    await session.execute(
        update(ApiKey)
        .where(ApiKey.id == key_id, or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < older_than))
        .values(last_used_at=now)
        .execution_options(synchronize_session=False)
    )


async def get_org(session: AsyncSession, org_id: str) -> Organisation | None:
    return await session.get(Organisation, org_id)


async def get_orgs(session: AsyncSession, org_ids: Sequence[str]) -> dict[str, Organisation]:
    if not org_ids:
        return {}
    rows = (await session.execute(select(Organisation).where(Organisation.id.in_(set(org_ids))))).scalars()
    return {org.id: org for org in rows}


async def slug_taken(session: AsyncSession, slug: str) -> bool:
    return (await session.execute(select(Organisation.id).where(Organisation.slug == slug))).first() is not None


async def org_id_by_slug(session: AsyncSession, slug: str) -> str | None:
    return (await session.execute(select(Organisation.id).where(Organisation.slug == slug))).scalar_one_or_none()


async def operator_exists(session: AsyncSession) -> bool:
    return await operator_id(session) is not None


async def operator_id(session: AsyncSession) -> str | None:
    stmt = select(Organisation.id).where(Organisation.kind == "operator").limit(1)
    return (await session.execute(stmt)).scalar_one_or_none()


async def list_orgs(
    session: AsyncSession, page: PageRequest, *, only_org: str | None, kind: str | None, status: str | None
) -> Page[Organisation]:
    stmt: Select[tuple[Organisation]] = select(Organisation)
    if only_org is not None:  # tenant scoping: everyone but the operator sees only its own
        stmt = stmt.where(Organisation.id == only_org)
    if kind:
        stmt = stmt.where(Organisation.kind == kind)
    if status:
        stmt = stmt.where(Organisation.status == status)
    return await paginate(session, stmt, Organisation.id, page)


async def user_by_email(session: AsyncSession, email: str) -> User | None:
    return (await session.execute(select(User).where(User.email == email))).scalar_one_or_none()


async def get_user(session: AsyncSession, user_id: str) -> User | None:
    return await session.get(User, user_id)


async def membership(session: AsyncSession, org_id: str, user_id: str) -> Membership | None:
    stmt = select(Membership).where(Membership.org_id == org_id, Membership.user_id == user_id)
    return (await session.execute(stmt)).scalar_one_or_none()


async def membership_of(session: AsyncSession, user_id: str) -> Membership | None:
    return (await session.execute(select(Membership).where(Membership.user_id == user_id))).scalar_one_or_none()


async def list_members(session: AsyncSession, org_id: str, page: PageRequest) -> Page[tuple[Membership, User]]:
    stmt = select(Membership, User).join(User, User.id == Membership.user_id).where(Membership.org_id == org_id)
    return await paginate(session, stmt, Membership.id, page, rows=True)


async def list_keys(session: AsyncSession, org_id: str, page: PageRequest, user_id: str | None) -> Page[ApiKey]:
    stmt = select(ApiKey).where(ApiKey.org_id == org_id)
    if user_id is not None:
        stmt = stmt.where(ApiKey.user_id == user_id)
    return await paginate(session, stmt, ApiKey.id, page)


async def get_key(session: AsyncSession, key_id: str) -> ApiKey | None:
    return await session.get(ApiKey, key_id)


async def key_by_hash(session: AsyncSession, secret_hash: str) -> ApiKey | None:
    return (await session.execute(select(ApiKey).where(ApiKey.secret_hash == secret_hash))).scalar_one_or_none()


async def revoke_user_keys(session: AsyncSession, user_id: str, now: datetime) -> list[str]:
    stmt = (
        update(ApiKey)
        .where(ApiKey.user_id == user_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=now)
        .returning(ApiKey.id)
        .execution_options(synchronize_session=False)
    )
    return list((await session.execute(stmt)).scalars())


async def org_members_with_role(session: AsyncSession, org_id: str) -> list[tuple[Membership, User]]:
    stmt = select(Membership, User).join(User, User.id == Membership.user_id).where(Membership.org_id == org_id)
    return [(m, u) for m, u in (await session.execute(stmt)).all()]

"""Bodies of the identity and tenancy API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from msgspec import UNSET, Meta, Struct, UnsetType

OrgKind = Literal["operator", "provider", "consumer"]
OrgType = Literal["hospital", "pharma", "cro", "university", "government", "other"]
Role = Literal[
    "admin", "curator", "compliance", "ethics", "security", "finance", "publisher", "reviewer", "buyer", "analyst"
]
Name = Annotated[str, Meta(min_length=1, max_length=200)]
Email = Annotated[str, Meta(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=320)]
Country = Annotated[str, Meta(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2")]
Slug = Annotated[str, Meta(pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$", min_length=2, max_length=80)]


class Body(Struct, kw_only=True, forbid_unknown_fields=True):
    """Request bodies refuse unknown fields, so a typo is an error rather than silently ignored."""


class OrgCreate(Body):
    name: Name
    kind: OrgKind
    jurisdiction: Country
    org_type: OrgType
    for_profit: bool
    slug: Slug | None = None


class OrgRead(Struct, kw_only=True):
    id: str
    name: str
    slug: str
    kind: OrgKind
    jurisdiction: str
    org_type: OrgType
    for_profit: bool
    status: Literal["pending", "verified", "rejected"]
    status_note: str | None
    verified_at: datetime | None
    created_at: datetime


class OrgList(Struct, kw_only=True):
    items: list[OrgRead]
    next_cursor: str | None


class OrgVerify(Body):
    status: Literal["verified", "rejected"]
    note: Annotated[str, Meta(max_length=2000)] = ""


class MemberCreate(Body):
    email: Email
    name: Name
    roles: Annotated[list[Role], Meta(min_length=1, max_length=10)]


class MemberUpdate(Body):
    name: Name | UnsetType = UNSET
    roles: Annotated[list[Role], Meta(min_length=1, max_length=10)] | UnsetType = UNSET


class MemberRead(Struct, kw_only=True):
    id: str
    email: str
    name: str
    org_id: str
    roles: list[str]
    status: str
    created_at: datetime


class MemberList(Struct, kw_only=True):
    items: list[MemberRead]
    next_cursor: str | None


class ApiKeyCreate(Body):
    user_id: str
    name: Name


class ApiKeyRead(Struct, kw_only=True):
    id: str
    user_id: str
    org_id: str
    name: str
    prefix: str
    status: Literal["active", "revoked"]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyRead, kw_only=True):
    secret: str


class ApiKeyList(Struct, kw_only=True):
    items: list[ApiKeyRead]
    next_cursor: str | None


class UserRead(Struct, kw_only=True):
    id: str
    email: str
    name: str
    status: str
    created_at: datetime


class MeRead(Struct, kw_only=True):
    user: UserRead
    organisation: OrgRead
    roles: list[str]


class BootstrapResult(Struct, kw_only=True):
    org_id: str
    user_id: str
    api_key: str

"""Bodies of the circulation API: applications, decisions, licences, block-lists, the register."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from msgspec import UNSET, Meta, Struct, UnsetType

from catalog.orgs.schemas import Body
from catalog.products.schemas import Icd10, OrgId, ProductKey, Region

Category = Literal["GRU", "HMB", "DS", "POA", "MDS"]
Track = Literal["provider", "ethics", "security", "compliance", "operator"]
UserId = Annotated[str, Meta(pattern=r"^usr_[0-9A-Z]{26}$")]
Sha256 = Annotated[str, Meta(pattern=r"^[0-9a-f]{64}$")]
Text = Annotated[str, Meta(min_length=1, max_length=2000)]


class Purpose(Body):
    category: Category
    commercial: bool
    description: Annotated[str, Meta(min_length=1, max_length=5000)]
    territory: Region
    disease_codes: Annotated[list[Icd10], Meta(max_length=50)] = []


class Project(Body):
    title: Annotated[str, Meta(min_length=1, max_length=300)]
    summary: Annotated[str, Meta(max_length=5000)] = ""
    public_summary: Annotated[str, Meta(min_length=1, max_length=2000)] | None = None
    reference: Annotated[str, Meta(min_length=1, max_length=80)] | None = None


class EthicsApproval(Body):
    committee: Annotated[str, Meta(min_length=1, max_length=300)]
    reference: Annotated[str, Meta(min_length=1, max_length=120)]
    approved_on: date
    expires_on: date
    document_sha256: Sha256 | None = None


Months = Annotated[int, Meta(ge=1, le=600)]
Analysts = Annotated[list[UserId], Meta(max_length=100)]


class ApplicationCreate(Body):
    product_id: ProductKey
    plan_id: Annotated[str, Meta(pattern=r"^pln_[0-9A-Z]{26}$")]
    purpose: Purpose
    project: Project
    requested_months: Months
    analysts: Analysts = []
    ethics_approval: EthicsApproval | None = None
    requested_start: date | None = None


class ApplicationUpdate(Body):
    plan_id: Annotated[str, Meta(pattern=r"^pln_[0-9A-Z]{26}$")] | UnsetType = UNSET
    purpose: Purpose | UnsetType = UNSET
    project: Project | UnsetType = UNSET
    requested_months: Months | UnsetType = UNSET
    analysts: Analysts | UnsetType = UNSET
    ethics_approval: EthicsApproval | UnsetType | None = UNSET
    requested_start: date | UnsetType | None = UNSET


class TrackRead(Struct, kw_only=True):
    track: Track
    status: Literal["pending", "approved", "approved_with_conditions", "rejected", "returned", "cancelled"]
    decision: str | None
    comment: str | None
    conditions: str | None
    decided_by: str | None
    decided_at: datetime | None


class ApplicationRead(Struct, kw_only=True):
    id: str
    product_id: str
    plan_id: str
    consumer_org_id: str
    status: Literal["draft", "submitted", "under_review", "approved", "rejected", "returned", "withdrawn"]
    purpose: dict[str, Any]
    project: dict[str, Any]
    analysts: list[str]
    ethics_approval: dict[str, Any] | None
    requested_start: date | None
    requested_months: int
    round: int
    tracks: list[TrackRead]
    licence_id: str | None  # its newest licence: the one its approval issued, or the latest renewal
    renewing_licence_id: str | None  # while the tracks a renewal reopened are reviewed
    submitted_at: datetime | None
    decided_at: datetime | None
    created_at: datetime
    updated_at: datetime


class ApplicationList(Struct, kw_only=True):
    items: list[ApplicationRead]
    next_cursor: str | None


class Decision(Body):
    decision: Literal["approve", "approve_with_conditions", "reject", "return"]
    comment: Annotated[str, Meta(max_length=5000)] | None = None
    conditions: Annotated[str, Meta(max_length=5000)] | None = None


class BlockerRead(Struct, kw_only=True):
    code: str
    message: str
    field: str | None


class EligibilityRead(Struct, kw_only=True):
    eligible: bool
    blockers: list[BlockerRead]


class HoldRead(Struct, kw_only=True):
    kind: Literal["operator", "provider", "non_payment", "ethics_expired", "org_blocked"]
    source: str
    reason: str | None
    set_at: datetime


class LicenceCondition(Struct, kw_only=True):
    """A condition a reviewer approved the application under (``approve_with_conditions``)."""

    track: Track
    text: str
    decided_by: str
    decided_at: datetime


class LicenceRead(Struct, kw_only=True):
    id: str
    application_id: str
    renews_licence_id: str | None
    consumer_org_id: str
    product_id: str
    owner_org_id: str
    plan_id: str
    terms_id: str
    terms_version: int
    terms_sha256: str
    revenue_share_id: str
    revenue_share_version: int
    purpose: dict[str, Any]
    analysts: list[str]
    starts_on: date
    ends_on: date
    caps: dict[str, int]
    cap_period: str
    modes: list[str]
    conditions: list[LicenceCondition]
    status: Literal[
        "pending_acceptance", "declined", "pending_payment", "active", "suspended", "expired", "revoked", "cancelled"
    ]
    holds: list[HoldRead]
    ethics_expires_on: date | None
    payment_due_by: datetime | None
    accepted_at: datetime | None
    activated_at: datetime | None
    ended_at: datetime | None
    end_reason: str | None
    created_at: datetime


class LicenceList(Struct, kw_only=True):
    items: list[LicenceRead]
    next_cursor: str | None


class LicenceAccept(Body):
    terms_sha256: Sha256


class RenewalRead(Struct, kw_only=True):
    """A renewal asked for: ``offered`` — the new licence, accepted already if the terms are unchanged
    (then active, or awaiting payment), else awaiting acceptance of the new terms; ``in_review`` —
    the product now requires review tracks the application was not approved on, reopened, and the
    renewal is issued when they are approved."""

    status: Literal["offered", "in_review"]
    licence: LicenceRead | None
    application_id: str
    reopened_tracks: list[Track]


class LicenceReason(Body):
    reason: Text


class LicenceRevoke(Body):
    reason: Text
    block_org: bool = False


class BlocklistCreate(Body):
    org_id: OrgId
    reason: Text


class BlocklistEntryRead(Struct, kw_only=True):
    list_org_id: str
    blocked_org_id: str
    reason: str
    created_by: str | None
    created_at: datetime


class BlocklistRead(Struct, kw_only=True):
    items: list[BlocklistEntryRead]
    next_cursor: str | None


class RegisterEntry(Struct, kw_only=True):
    licence_id: str
    organisation: dict[str, str]
    product: dict[str, str]
    purpose_category: str
    public_summary: str | None
    starts_on: date
    ends_on: date
    status: str
    approved_at: datetime


class RegisterRead(Struct, kw_only=True):
    items: list[RegisterEntry]
    next_cursor: str | None

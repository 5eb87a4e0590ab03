"""What Lode answers, decoded with msgspec. Fields Lode adds later are ignored, so an older client
keeps working; the fields here are checked against Lode's OpenAPI document by a test."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import msgspec


class Model(msgspec.Struct, kw_only=True, frozen=True):
    def to_dict(self) -> dict[str, Any]:
        return msgspec.to_builtins(self)


class OrgRef(Model):
    id: str
    name: str
    slug: str


class Plan(Model):
    id: str
    name: str
    kind: str
    currency: str
    amount: int
    interval: str | None = None
    term_months: int | None = None
    modes: list[str] | None = None
    caps: dict[str, int] = {}


class Terms(Model):
    id: str
    version: int
    use_conditions: list[dict[str, Any]]
    local_conditions: list[str]
    clauses: str
    terms_sha256: str


class ReleaseFile(Model):
    name: str
    table: str
    format: str
    sha256: str
    bytes: int
    rows: int


class Release(Model):
    id: str
    product_id: str
    version: str
    status: str
    notes: str | None = None
    files: list[ReleaseFile] = []
    published_at: datetime | None = None


class Product(Model):
    """A product as search lists it; ``get`` fills in the rest (terms, plans, releases, dictionary)."""

    id: str
    slug: str
    status: str
    grade: str
    title: str
    summary: str
    i18n: dict[str, Any] | None = None
    keywords: list[str] = []
    data_types: list[str] = []
    therapeutic_areas: list[str] = []
    standards: list[str] = []
    jurisdiction: str = ""
    owner_org: OrgRef | None = None
    pricing: list[str] = []
    population_size: int | None = None
    record_count: int | None = None
    description: str | None = None
    legal_basis: str | None = None
    quality: dict[str, Any] | None = None
    dictionary: list[dict[str, Any]] | None = None
    terms: Terms | None = None
    plans: list[Plan] = []
    releases: list[Release] = []


class ProductList(Model):
    items: list[Product]
    facets: dict[str, dict[str, int]]
    provider_names: dict[str, str]
    total: int
    total_is_lower_bound: bool
    next_cursor: str | None


class Blocker(Model):
    code: str
    message: str
    field: str | None = None


class Eligibility(Model):
    eligible: bool
    blockers: list[Blocker]


class Track(Model):
    track: str
    status: str
    decision: str | None = None
    comment: str | None = None
    conditions: str | None = None
    decided_at: datetime | None = None


class Application(Model):
    id: str
    product_id: str
    plan_id: str
    consumer_org_id: str
    status: str
    purpose: dict[str, Any]
    project: dict[str, Any]
    analysts: list[str]
    requested_months: int
    round: int
    tracks: list[Track]
    licence_id: str | None = None
    submitted_at: datetime | None = None
    decided_at: datetime | None = None
    created_at: datetime | None = None


class Hold(Model):
    kind: str
    reason: str | None = None


class Licence(Model):
    id: str
    application_id: str
    product_id: str
    plan_id: str
    consumer_org_id: str
    status: str
    terms_version: int
    terms_sha256: str
    starts_on: date
    ends_on: date
    caps: dict[str, int]
    cap_period: str
    modes: list[str]
    analysts: list[str]
    purpose: dict[str, Any] = {}
    conditions: list[dict[str, Any]] = []  # conditions reviewers attached when approving
    holds: list[Hold] = []
    ethics_expires_on: date | None = None
    payment_due_by: datetime | None = None


class Checkout(Model):
    url: str
    method: str
    amount: int
    currency: str
    session_id: str | None = None
    payment_id: str | None = None


class FileEntry(Model):
    name: str
    release: str
    table: str
    format: str
    bytes: int
    sha256: str
    rows: int


class FileList(Model):
    items: list[FileEntry]


class Budget(Model):
    total: float
    spent: float
    left: float
    per_query_max: float


class UsageRow(Model):
    period: str
    dimension: str
    licence_id: str
    quantity: int
    analyst_id: str | None = None
    epsilon: float | None = None


class UsageReport(Model):
    granularity: str
    tz: str
    rows: list[UsageRow]
    totals: dict[str, int]
    epsilon_spent: float
    caps: list[dict[str, Any]] = []  # a licence's report: each cap, used and left in its current period


class IngestResult(Model):
    inserted: int
    duplicates: int
    conflicts: list[dict[str, Any]] = []
    over_cap: list[dict[str, Any]] = []


class Allocation(Model):
    party: str
    org_id: str | None
    amount: int
    reversed: int = 0


class Payment(Model):
    id: str
    licence_id: str
    amount: int
    currency: str
    status: str
    paid_at: datetime | None = None
    allocations: list[Allocation] = []


class Statement(Model):
    org_id: str
    period: str
    kind: str
    lines: list[dict[str, Any]]


class Me(Model):
    user: dict[str, Any]
    organisation: dict[str, Any]
    roles: list[str]


class Renewal(Model):
    """A renewal asked for: ``offered`` with its ``licence``, or ``in_review`` with the tracks reopened."""

    status: str
    application_id: str
    licence: Licence | None = None
    reopened_tracks: list[str] = []


class Notification(Model):
    id: str
    type: str
    occurred_at: datetime
    subject: dict[str, str]
    data: dict[str, Any]
    read: bool


class Webhook(Model):
    id: str
    org_id: str
    url: str
    enabled: bool
    event_types: list[str] | None = None
    description: str | None = None
    disabled_reason: str | None = None
    last_success_at: datetime | None = None


class WebhookCreated(Webhook, kw_only=True):
    secret: str  # shown in the answer that created or rotated it, and never again


class WebhookDelivery(Model):
    id: str
    event_id: str
    event_type: str
    status: str
    attempts: int
    next_attempt_at: datetime | None = None
    last_status_code: int | None = None
    last_error: str | None = None
    delivered_at: datetime | None = None
    tries: list[dict[str, Any]] = []

"""Bodies of the notifications API: the feed, webhook endpoints and their delivery log."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from msgspec import UNSET, Meta, Struct, UnsetType

from catalog.orgs.schemas import Body

EventType = Literal[
    "application.submitted",
    "application.track_decided",
    "application.decided",
    "licence.offered",
    "licence.activated",
    "licence.suspended",
    "licence.resumed",
    "licence.revoked",
    "licence.expiring",
    "licence.expired",
    "payment.succeeded",
    "payment.refunded",
    "release.published",
    "usage.cap_near",
    "budget.low",
    "product.listed",
    "product.suspended",
    # Lode's own word to an organisation whose endpoint it stopped calling (to its feed and its
    # other endpoints): an endpoint is never told of its own disabling.
    "webhook.disabled",
]
Url = Annotated[str, Meta(min_length=8, max_length=2000)]
EventTypes = Annotated[list[EventType], Meta(min_length=1, max_length=40)]
DeliveryStatus = Literal["pending", "delivered", "failed"]


class Subject(Struct, kw_only=True):
    type: str
    id: str


class NotificationRead(Struct, kw_only=True):
    id: str
    type: str
    occurred_at: datetime
    subject: Subject
    data: dict[str, Any]
    read: bool


class NotificationList(Struct, kw_only=True):
    items: list[NotificationRead]
    next_cursor: str | None
    unread: int


class MarkRead(Body):
    """Mark these notifications read, or (``all``) every one up to now."""

    ids: Annotated[list[str], Meta(max_length=500)] = []
    all: bool = False


class MarkedRead(Struct, kw_only=True):
    unread: int


class WebhookCreate(Body):
    url: Url
    event_types: EventTypes | None = None  # every type when omitted
    description: Annotated[str, Meta(max_length=500)] | None = None
    enabled: bool = True


class WebhookUpdate(Body):
    url: Url | UnsetType = UNSET
    event_types: EventTypes | UnsetType | None = UNSET
    description: Annotated[str, Meta(max_length=500)] | UnsetType | None = UNSET
    enabled: bool | UnsetType = UNSET


class WebhookRead(Struct, kw_only=True):
    id: str
    org_id: str
    url: str
    description: str | None
    event_types: list[str] | None
    enabled: bool
    disabled_reason: str | None
    disabled_at: datetime | None
    previous_secret_expires_at: datetime | None
    last_success_at: datetime | None
    created_at: datetime
    updated_at: datetime


class WebhookCreated(WebhookRead, kw_only=True):
    """Shown once: Lode keeps the secret only to sign with."""

    secret: str


class WebhookList(Struct, kw_only=True):
    items: list[WebhookRead]
    next_cursor: str | None


class AttemptRead(Struct, kw_only=True):
    attempt: int
    attempted_at: datetime
    status_code: int | None
    duration_ms: int
    error: str | None


class DeliveryRead(Struct, kw_only=True):
    id: str
    endpoint_id: str
    event_id: str
    event_type: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime
    tries: list[AttemptRead]


class DeliveryList(Struct, kw_only=True):
    items: list[DeliveryRead]
    next_cursor: str | None

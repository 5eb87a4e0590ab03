"""Webhook endpoints: an organisation admin's to register, change, rotate, delete and inspect."""

from __future__ import annotations

from datetime import timedelta

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from catalog import audit
from catalog.auth import Principal, ensure_org_admin
from catalog.db import utcnow
from catalog.errors import Conflict, FieldError, NotFound, Unprocessable
from catalog.ids import new_id
from catalog.notifications import addresses, deliveries, signing
from catalog.notifications import repository as repo
from catalog.notifications.models import Notice, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from catalog.notifications.schemas import (
    AttemptRead,
    DeliveryList,
    DeliveryRead,
    WebhookCreate,
    WebhookCreated,
    WebhookList,
    WebhookRead,
    WebhookUpdate,
)
from catalog.pagination import PageRequest

MAX_ENDPOINTS = 10
ROTATION_OVERLAP = timedelta(hours=24)


class WebhookService:
    def __init__(self, session: AsyncSession, caller: Principal, pepper: bytes, allow_private: bool) -> None:
        self.session = session
        self.caller = caller
        self.pepper = pepper
        self.allow_private = allow_private

    async def _checked_url(self, url: str) -> str:
        try:
            await addresses.checked_address(url, allow_private=self.allow_private)
        except addresses.Refused as exc:
            raise Unprocessable(f"url: {exc}", code=exc.code, errors=[FieldError("url", str(exc))]) from exc
        return url

    async def _endpoint(self, org_id: str, endpoint_id: str, *, lock: bool = False) -> WebhookEndpoint:
        ensure_org_admin(self.caller, org_id)
        found = await repo.endpoint(self.session, org_id, endpoint_id, lock=lock)
        if found is None:
            raise NotFound(f"No webhook endpoint {endpoint_id}.")
        return found

    async def create(self, org_id: str, data: WebhookCreate) -> WebhookCreated:
        ensure_org_admin(self.caller, org_id)
        url = await self._checked_url(data.url)
        if await repo.endpoint_count(self.session, org_id) >= MAX_ENDPOINTS:
            raise Conflict(f"An organisation has at most {MAX_ENDPOINTS} webhook endpoints.", code="webhook_limit")
        secret = signing.new_secret()
        sealed, nonce = signing.seal_secret(self.pepper, secret)
        now = utcnow()
        endpoint = WebhookEndpoint(
            id=new_id("wep"),
            org_id=org_id,
            url=url,
            description=data.description,
            event_types=_types(data.event_types),
            enabled=data.enabled,
            secret_sealed=sealed,
            secret_nonce=nonce,
            created_by=self.caller.user_id,
            created_at=now,
            updated_at=now,
        )
        self.session.add(endpoint)
        await self.session.flush()
        self._audit("webhook.created", endpoint, {"url": url, "event_types": endpoint.event_types})
        return WebhookCreated(**msgspec.structs.asdict(read_endpoint(endpoint)), secret=secret)

    async def list(self, org_id: str, page: PageRequest) -> WebhookList:
        ensure_org_admin(self.caller, org_id)
        found = await repo.endpoints(self.session, org_id, page)
        return WebhookList(items=[read_endpoint(e) for e in found.items], next_cursor=found.next_cursor)

    async def get(self, org_id: str, endpoint_id: str) -> WebhookRead:
        return read_endpoint(await self._endpoint(org_id, endpoint_id))

    async def update(self, org_id: str, endpoint_id: str, data: WebhookUpdate) -> WebhookRead:
        ensure_org_admin(self.caller, org_id)
        changes = {k: v for k, v in msgspec.structs.asdict(data).items() if v is not msgspec.UNSET}
        if "url" in changes:  # resolved before the row is locked: no lock is held across DNS
            await self._checked_url(changes["url"])
        endpoint = await self._endpoint(org_id, endpoint_id, lock=True)
        if "url" in changes:
            endpoint.url = changes["url"]
        if "event_types" in changes:
            endpoint.event_types = _types(changes["event_types"])
        if "description" in changes:
            endpoint.description = changes["description"]
        if "enabled" in changes:
            if changes["enabled"] and not endpoint.enabled:
                # A fresh start: its pending deliveries go now, with three days of retries from now.
                endpoint.disabled_at, endpoint.disabled_reason = None, None
                await deliveries.restart_pending(self.session, endpoint.id, utcnow())
            endpoint.enabled = changes["enabled"]
        endpoint.updated_at = utcnow()
        await self.session.flush()
        self._audit("webhook.updated", endpoint, {"fields": sorted(changes)})
        return read_endpoint(endpoint)

    async def delete(self, org_id: str, endpoint_id: str) -> None:
        endpoint = await self._endpoint(org_id, endpoint_id, lock=True)
        self._audit("webhook.deleted", endpoint, {"url": endpoint.url})
        await self.session.delete(endpoint)
        await self.session.flush()

    async def rotate(self, org_id: str, endpoint_id: str) -> WebhookCreated:
        """A new secret, shown once; the one it replaces keeps signing beside it for 24 hours."""
        endpoint = await self._endpoint(org_id, endpoint_id, lock=True)
        secret = signing.new_secret()
        now = utcnow()
        endpoint.previous_secret_sealed, endpoint.previous_secret_nonce = endpoint.secret_sealed, endpoint.secret_nonce
        endpoint.previous_secret_expires_at = now + ROTATION_OVERLAP
        endpoint.secret_sealed, endpoint.secret_nonce = signing.seal_secret(self.pepper, secret)
        endpoint.updated_at = now
        await self.session.flush()
        self._audit("webhook.secret_rotated", endpoint, {"previous_valid_until": endpoint.previous_secret_expires_at})
        return WebhookCreated(**msgspec.structs.asdict(read_endpoint(endpoint)), secret=secret)

    async def deliveries(self, org_id: str, endpoint_id: str, page: PageRequest, status: str | None) -> DeliveryList:
        endpoint = await self._endpoint(org_id, endpoint_id)
        found = await repo.deliveries(self.session, endpoint.id, page, status)
        tries = await repo.attempts(self.session, [d.id for d, _ in found.items])
        return DeliveryList(
            items=[read_delivery(d, n, tries[d.id]) for d, n in found.items], next_cursor=found.next_cursor
        )

    async def redeliver(self, org_id: str, endpoint_id: str, delivery_id: str) -> DeliveryRead:
        endpoint = await self._endpoint(org_id, endpoint_id)
        found = await repo.delivery(self.session, endpoint.id, delivery_id, lock=True)
        if found is None:
            raise NotFound(f"No delivery {delivery_id} for this endpoint.")
        delivery, notice = found
        if delivery.status == "pending" and delivery.locked_until is not None and delivery.locked_until > utcnow():
            raise Conflict("That delivery is being sent right now.", code="delivery_in_progress")
        await deliveries.redeliver(self.session, delivery, utcnow())
        await self.session.refresh(delivery)
        self._audit("webhook.redelivered", endpoint, {"delivery_id": delivery.id, "event_id": notice.id})
        return read_delivery(delivery, notice, (await repo.attempts(self.session, [delivery.id]))[delivery.id])

    def _audit(self, action: str, endpoint: WebhookEndpoint, data: dict[str, object]) -> None:
        audit.record(self.session, self.caller, action, "webhook_endpoint", endpoint.id, [endpoint.org_id], data)


def _types(types: list[str] | None) -> list[str] | None:
    return sorted(set(types)) if types is not None else None


def read_endpoint(endpoint: WebhookEndpoint) -> WebhookRead:
    return WebhookRead(
        id=endpoint.id,
        org_id=endpoint.org_id,
        url=endpoint.url,
        description=endpoint.description,
        event_types=endpoint.event_types,
        enabled=endpoint.enabled,
        disabled_reason=endpoint.disabled_reason,
        disabled_at=endpoint.disabled_at,
        previous_secret_expires_at=endpoint.previous_secret_expires_at,
        last_success_at=endpoint.last_success_at,
        created_at=endpoint.created_at,
        updated_at=endpoint.updated_at,
    )


def read_delivery(delivery: WebhookDelivery, notice: Notice, tries: list[WebhookAttempt]) -> DeliveryRead:
    return DeliveryRead(
        id=delivery.id,
        endpoint_id=delivery.endpoint_id,
        event_id=notice.id,
        event_type=notice.type,
        status=delivery.status,  # type: ignore[arg-type]
        attempts=delivery.attempts,
        next_attempt_at=delivery.next_attempt_at if delivery.status == "pending" else None,
        last_status_code=delivery.last_status_code,
        last_error=delivery.last_error,
        delivered_at=delivery.delivered_at,
        created_at=delivery.created_at,
        tries=[
            AttemptRead(
                attempt=t.attempt,
                attempted_at=t.attempted_at,
                status_code=t.status_code,
                duration_ms=t.duration_ms,
                error=t.error,
            )
            for t in tries
        ],
    )

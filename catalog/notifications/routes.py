"""HTTP routes for the feed and webhook endpoints: thin — parse, call the service, answer."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from catalog.auth import Principal
from catalog.errors import problem_responses
from catalog.notifications import examples
from catalog.notifications.endpoints import WebhookService
from catalog.notifications.feed import FeedService
from catalog.notifications.schemas import (
    DeliveryList,
    DeliveryRead,
    EventType,
    MarkedRead,
    MarkRead,
    NotificationList,
    WebhookCreate,
    WebhookCreated,
    WebhookList,
    WebhookRead,
    WebhookUpdate,
)
from catalog.openapi import request_examples
from catalog.pagination import PageRequest


async def provide_feed(tx: NamedDependency[AsyncSession], caller: NamedDependency[Principal]) -> FeedService:
    return FeedService(tx, caller)


async def provide_webhooks(
    tx: NamedDependency[AsyncSession], caller: NamedDependency[Principal], request: Request[Any, Any, Any]
) -> WebhookService:
    settings = request.app.state.settings
    return WebhookService(tx, caller, settings.key_pepper, settings.webhook_allow_private)


class NotificationController(Controller):
    path = "/v1/notifications"
    tags = ["Notifications"]
    dependencies = {"feed": Provide(provide_feed)}

    @get(
        "/",
        operation_id="ListNotifications",
        summary="Your organisation's notifications, newest first",
        description=(
            "Events about the caller's organisation's applications, licences, payments and products — the same events "
            "its webhooks receive — each marked `read` for the calling member. `unread=true` lists only unread ones; "
            "`type` filters by event type. `unread` in the answer counts every unread notification."
        ),
        responses=problem_responses(401),
    )
    async def list_notifications(
        self,
        feed: NamedDependency[FeedService],
        page: NamedDependency[PageRequest],
        unread: Annotated[bool, QueryParameter(description="Only the notifications not yet read")] = False,
        type: FromQuery[EventType | None] = None,
    ) -> NotificationList:
        return await feed.list(page, unread_only=unread, type=type)

    @post(
        "/read",
        operation_id="MarkNotificationsRead",
        status_code=200,
        operation_class=request_examples(examples.MARK_READ),
        summary="Mark notifications read (by id, or all)",
        description=(
            "Marks the given notifications read for the calling member, or with `all: true` every notification up to "
            "now. Another organisation's notification id is 400 `validation_error`, as a made-up one is."
        ),
        responses=problem_responses(400, 401),
    )
    async def mark_read(self, data: JSONBody[MarkRead], feed: NamedDependency[FeedService]) -> MarkedRead:
        return await feed.mark_read(data)


ENDPOINT_ROLES = "The organisation's admin (or the operator's); another organisation's endpoint is 404."


class WebhookEndpointController(Controller):
    path = "/v1/orgs/{org_id:str}/webhooks"
    tags = ["Notifications"]
    dependencies = {"webhooks": Provide(provide_webhooks)}

    @post(
        "/",
        operation_id="CreateWebhook",
        operation_class=request_examples(examples.CREATE_WEBHOOK),
        summary="Register a webhook endpoint (its signing secret is shown once)",
        description=(
            "Registers a URL to receive the organisation's events (all types, or `event_types`), signed per Standard "
            "Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`). The answer carries the signing "
            "`secret` once. Outside development the URL must be https and resolve only to public addresses (422 "
            "`webhook_url_forbidden`, `webhook_url_insecure`, `webhook_url_invalid`, `webhook_url_unresolvable`); "
            f"at most 10 per organisation (409 `webhook_limit`). No `Idempotency-Key`: a stored answer would keep the "
            f"secret; a retry after a lost answer registers a second endpoint — list and delete it. {ENDPOINT_ROLES}"
        ),
        responses=problem_responses(400, 401, 403, 404, 409, 422),
    )
    async def create_webhook(
        self, org_id: FromPath[str], data: JSONBody[WebhookCreate], webhooks: NamedDependency[WebhookService]
    ) -> Response[WebhookCreated]:
        # Not idempotent by key on purpose: the stored answer would hold the secret in clear.
        created = await webhooks.create(org_id, data)
        return Response(created, status_code=201, headers={"Location": f"/v1/orgs/{org_id}/webhooks/{created.id}"})

    @get(
        "/",
        operation_id="ListWebhooks",
        summary="The organisation's webhook endpoints",
        description=f"Newest first, without secrets. {ENDPOINT_ROLES}",
        responses=problem_responses(401, 403, 404),
    )
    async def list_webhooks(
        self, org_id: FromPath[str], webhooks: NamedDependency[WebhookService], page: NamedDependency[PageRequest]
    ) -> WebhookList:
        return await webhooks.list(org_id, page)

    @get(
        "/{webhook_id:str}",
        operation_id="GetWebhook",
        summary="A webhook endpoint",
        description=(
            f"The endpoint, without its secret; `enabled` false with a reason once Lode disabled it. {ENDPOINT_ROLES}"
        ),
        responses=problem_responses(401, 403, 404),
    )
    async def get_webhook(
        self, org_id: FromPath[str], webhook_id: FromPath[str], webhooks: NamedDependency[WebhookService]
    ) -> WebhookRead:
        return await webhooks.get(org_id, webhook_id)

    @patch(
        "/{webhook_id:str}",
        operation_id="UpdateWebhook",
        operation_class=request_examples(examples.UPDATE_WEBHOOK),
        summary="Change a webhook endpoint's URL, event types or enabled state",
        description=(
            "Changes what is given. `event_types: null` subscribes to every type. Setting `enabled: true` on an "
            f"endpoint Lode disabled sends its pending deliveries again. {ENDPOINT_ROLES}"
        ),
        responses=problem_responses(400, 401, 403, 404, 422),
    )
    async def update_webhook(
        self,
        org_id: FromPath[str],
        webhook_id: FromPath[str],
        data: JSONBody[WebhookUpdate],
        webhooks: NamedDependency[WebhookService],
    ) -> WebhookRead:
        return await webhooks.update(org_id, webhook_id, data)

    @delete(
        "/{webhook_id:str}",
        operation_id="DeleteWebhook",
        summary="Delete a webhook endpoint and its delivery log",
        description=f"Stops all deliveries to it at once. {ENDPOINT_ROLES}",
        responses=problem_responses(401, 403, 404),
    )
    async def delete_webhook(
        self, org_id: FromPath[str], webhook_id: FromPath[str], webhooks: NamedDependency[WebhookService]
    ) -> None:
        await webhooks.delete(org_id, webhook_id)

    @post(
        "/{webhook_id:str}/rotate-secret",
        operation_id="RotateWebhookSecret",
        status_code=200,
        summary="A new signing secret; the old one stays valid for 24 hours",
        description=(
            "Issues a new secret, shown once. For 24 hours every delivery carries two signatures, one per secret, so "
            f"the receiver can switch without missing an event. {ENDPOINT_ROLES}"
        ),
        responses=problem_responses(401, 403, 404),
    )
    async def rotate_webhook_secret(
        self, org_id: FromPath[str], webhook_id: FromPath[str], webhooks: NamedDependency[WebhookService]
    ) -> WebhookCreated:
        return await webhooks.rotate(org_id, webhook_id)

    @get(
        "/{webhook_id:str}/deliveries",
        operation_id="ListWebhookDeliveries",
        summary="The endpoint's delivery log",
        description=(
            "Each event owed to the endpoint, newest first: `pending` (with its next try), `delivered` or `failed` "
            f"(retried for three days), with every try's status code, duration and error. {ENDPOINT_ROLES}"
        ),
        responses=problem_responses(401, 403, 404),
    )
    async def list_webhook_deliveries(
        self,
        org_id: FromPath[str],
        webhook_id: FromPath[str],
        webhooks: NamedDependency[WebhookService],
        page: NamedDependency[PageRequest],
        status: FromQuery[Literal["pending", "delivered", "failed"] | None] = None,
    ) -> DeliveryList:
        return await webhooks.deliveries(org_id, webhook_id, page, status)

    @post(
        "/{webhook_id:str}/deliveries/{delivery_id:str}/redeliver",
        operation_id="RedeliverWebhook",
        status_code=202,
        summary="Send a delivery again now (same webhook-id)",
        description=(
            "Queues the delivery to be sent again at once, with the same `webhook-id`, and three fresh days of "
            f"retries; 409 `delivery_in_progress` while a try is under way. {ENDPOINT_ROLES}"
        ),
        responses=problem_responses(401, 403, 404, 409),
    )
    async def redeliver_webhook(
        self,
        org_id: FromPath[str],
        webhook_id: FromPath[str],
        delivery_id: FromPath[str],
        webhooks: NamedDependency[WebhookService],
    ) -> DeliveryRead:
        return await webhooks.redeliver(org_id, webhook_id, delivery_id)

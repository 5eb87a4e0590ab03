"""Lode's resources as attributes of a client: ``client.products.search(...)``.

Each method is a generator of ``Call``s (see ``transport``); ``_op`` hands it to the client's
transport, which answers it synchronously (``Client``) or as a coroutine (``AsyncClient``). Lists
come back as ``Pages``, iterable with ``for`` on a ``Client`` and ``async for`` on an
``AsyncClient``, following ``next_cursor`` until the list ends.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from lode_client import models
from lode_client.answer import Answer, merge
from lode_client.transport import Call

if TYPE_CHECKING:
    from lode_client.client import BaseClient

Steps = Generator[Call, Any, Any]


def _op(method: Callable[..., Steps]) -> Callable[..., Any]:
    @functools.wraps(method)
    def run(self: Resource, *args: Any, **kwargs: Any) -> Any:
        return self._client._transport.drive(method(self, *args, **kwargs))

    return run


def _iso(value: date | datetime | str | None) -> str | None:
    return value.isoformat() if isinstance(value, date | datetime) else value


class Pages:
    """A keyset-paged list: iterate it (sync or async) for every item across pages."""

    def __init__(
        self, client: BaseClient, op: str, into: Any, params: dict[str, Any], path: dict[str, str] | None = None
    ):
        self._client = client
        self._op = op
        self._into = into
        self._params = params
        self._path = path or {}

    def _call(self, cursor: str | None) -> Call:
        return Call(self._op, self._path, {**self._params, "cursor": cursor}, into=self._into)

    def __iter__(self) -> Iterator[Any]:
        cursor = None
        while True:
            page = self._client._transport.run(self._call(cursor))
            yield from page.items
            cursor = page.next_cursor
            if not cursor:
                return

    async def __aiter__(self) -> AsyncIterator[Any]:
        cursor = None
        while True:
            page = await self._client._transport.run(self._call(cursor))
            for item in page.items:
                yield item
            cursor = page.next_cursor
            if not cursor:
                return


@functools.cache
def _page_of(model: Any) -> Any:
    """``{items: [model], next_cursor}``, the shape of every list."""
    return msgspec.defstruct(f"{model.__name__}Page", [("items", list[model]), ("next_cursor", str | None)])


class Resource:
    def __init__(self, client: BaseClient) -> None:
        self._client = client


class Products(Resource):
    @_op
    def search(
        self,
        q: str | None = None,
        *,
        grade: str | list[str] | None = None,
        data_type: str | list[str] | None = None,
        therapeutic_area: str | list[str] | None = None,
        standard: str | list[str] | None = None,
        provider: str | list[str] | None = None,
        pricing: str | list[str] | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Steps:
        """One page of search results with the facets' counts (``.next_cursor`` for the next)."""
        params = {
            "q": q, "grade": grade, "data_type": data_type, "therapeutic_area": therapeutic_area,
            "standard": standard, "provider": provider, "pricing": pricing, "limit": limit, "cursor": cursor,
        }  # fmt: skip
        return (yield Call("ListProducts", params=params, into=models.ProductList))

    def iter(self, q: str | None = None, *, limit: int = 100, **filters: Any) -> Pages:
        """Every product matching, page after page."""
        return Pages(self._client, "ListProducts", models.ProductList, {"q": q, "limit": limit, **filters})

    @_op
    def get(self, id_or_slug: str) -> Steps:
        return (yield Call("GetProduct", {"key": id_or_slug}, into=models.Product))

    @_op
    def terms(self, id_or_slug: str, *, version: int | None = None) -> Steps:
        """The product's terms: the current version, or the one a licence pins (``version``)."""
        return (yield Call("GetTerms", {"product_id": id_or_slug}, {"version": version}, into=models.Terms))

    @_op
    def dictionary(self, id_or_slug: str) -> Steps:
        product = yield Call("GetProduct", {"key": id_or_slug}, into=models.Product)
        return product.dictionary or []

    @_op
    def eligibility(
        self,
        id_or_slug: str,
        *,
        category: str | None = None,
        commercial: bool | None = None,
        disease_codes: list[str] | None = None,
        territory: str | None = None,
        plan_id: str | None = None,
        months: int | None = None,
        ethics_expires_on: date | str | None = None,
    ) -> Steps:
        """Every blocker between the signed-in organisation and a licence, for a declared use."""
        params = {
            "category": category, "commercial": commercial, "disease_codes": disease_codes, "territory": territory,
            "plan_id": plan_id, "months": months, "ethics_expires_on": _iso(ethics_expires_on),
        }  # fmt: skip
        return (yield Call("CheckEligibility", {"product_id": id_or_slug}, params, into=models.Eligibility))

    @_op
    def create(self, body: dict[str, Any]) -> Steps:
        """A draft product (providers' publishers); ``body`` as CreateProduct takes it."""
        return (yield Call("CreateProduct", json=body, into=models.Product))

    @_op
    def submit(self, id_or_slug: str) -> Steps:
        return (yield Call("SubmitProduct", {"product_id": id_or_slug}, into=models.Product))


class Releases(Resource):
    """A provider's releases: create a draft, upload its files, publish."""

    def list(self, product: str, *, limit: int = 100) -> Pages:
        return Pages(self._client, "ListReleases", _page_of(models.Release), {"limit": limit}, {"product_id": product})

    @_op
    def get(self, product: str, version: str) -> Steps:
        return (yield Call("GetRelease", {"product_id": product, "version": version}, into=models.Release))

    @_op
    def create(self, product: str, version: str, *, notes: str | None = None, dictionary: Any = None) -> Steps:
        body: dict[str, Any] = {"version": version}
        if notes is not None:
            body["notes"] = notes
        if dictionary is not None:
            body["dictionary"] = dictionary
        return (yield Call("CreateRelease", {"product_id": product}, json=body, into=models.Release))

    @_op
    def upload(self, product: str, version: str, path: str | Path, *, name: str | None = None) -> Steps:
        """Stream a CSV or Parquet file into a draft release (its name names its table)."""
        path = Path(path)
        kind = "application/vnd.apache.parquet" if path.suffix.lower() == ".parquet" else "text/csv"
        target = {"product_id": product, "version": version, "name": name or path.name}
        return (yield Call("UploadReleaseFile", target, upload=path, content_type=kind, into=models.ReleaseFile))

    @_op
    def publish(self, product: str, version: str) -> Steps:
        return (yield Call("PublishRelease", {"product_id": product, "version": version}, into=models.Release))


class Applications(Resource):
    @_op
    def create(
        self,
        product: str,
        plan_id: str,
        *,
        purpose: dict[str, Any],
        project: dict[str, Any],
        requested_months: int,
        analysts: list[str] | None = None,
        ethics_approval: dict[str, Any] | None = None,
        requested_start: date | str | None = None,
    ) -> Steps:
        """A draft application (an Idempotency-Key makes a retried request draft only one)."""
        body: dict[str, Any] = {
            "product_id": product, "plan_id": plan_id, "purpose": purpose, "project": project,
            "requested_months": requested_months, "analysts": analysts or [],
        }  # fmt: skip
        if ethics_approval is not None:
            body["ethics_approval"] = {k: _iso(v) for k, v in ethics_approval.items()}
        if requested_start is not None:
            body["requested_start"] = _iso(requested_start)
        return (yield Call("CreateApplication", json=body, into=models.Application))

    @_op
    def submit(self, application_id: str) -> Steps:
        return (yield Call("SubmitApplication", {"app_id": application_id}, into=models.Application))

    @_op
    def withdraw(self, application_id: str) -> Steps:
        return (yield Call("WithdrawApplication", {"app_id": application_id}, into=models.Application))

    @_op
    def get(self, application_id: str) -> Steps:
        return (yield Call("GetApplication", {"app_id": application_id}, into=models.Application))

    def list(self, *, status: str | None = None, product: str | None = None, limit: int = 100) -> Pages:
        params = {"status": status, "product_id": product, "limit": limit}
        return Pages(self._client, "ListApplications", _page_of(models.Application), params)

    @_op
    def decide(
        self,
        application_id: str,
        track: str,
        decision: str,
        *,
        comment: str | None = None,
        conditions: str | None = None,
    ) -> Steps:
        """A reviewer's decision on their track: approve, approve_with_conditions, reject or return."""
        body = {"decision": decision, "comment": comment, "conditions": conditions}
        body = {k: v for k, v in body.items() if v is not None}
        path = {"app_id": application_id, "track": track}
        return (yield Call("DecideTrack", path, json=body, into=models.Application))


class Licences(Resource):
    def list(self, *, status: str | None = None, product: str | None = None, limit: int = 100) -> Pages:
        params = {"status": status, "product_id": product, "limit": limit}
        return Pages(self._client, "ListLicences", _page_of(models.Licence), params)

    @_op
    def get(self, licence_id: str) -> Steps:
        return (yield Call("GetLicence", {"licence_id": licence_id}, into=models.Licence))

    @_op
    def accept(self, licence_id: str, terms_sha256: str) -> Steps:
        """Accept the licence's terms, named by their SHA-256 (what you read is what you sign)."""
        body = {"terms_sha256": terms_sha256}
        return (yield Call("AcceptLicence", {"licence_id": licence_id}, json=body, into=models.Licence))

    @_op
    def checkout(
        self, licence_id: str, *, method: str = "card", success_url: str | None = None, cancel_url: str | None = None
    ) -> Steps:
        """A checkout for a priced licence: open ``.url`` in a browser to pay."""
        body = {k: v for k, v in {"method": method, "success_url": success_url, "cancel_url": cancel_url}.items() if v}
        return (yield Call("CheckoutLicence", {"licence_id": licence_id}, json=body, into=models.Checkout))

    @_op
    def query(
        self, licence_id: str, query: dict[str, Any], *, all_pages: bool = False, max_rows: int | None = None
    ) -> Steps:
        """Run a query as the grade allows; with ``all_pages`` a row answer is followed page after
        page (to the licence's limits, or ``max_rows``) into one answer."""
        answer = yield Call("QueryLicence", {"licence_id": licence_id}, json=query, into=Answer)
        pages: list[Answer] = []
        seen = len(answer.rows)
        cursor = answer.next_cursor
        while all_pages and cursor and (max_rows is None or seen < max_rows):
            page = yield Call("QueryLicence", {"licence_id": licence_id}, json={**query, "cursor": cursor}, into=Answer)
            pages.append(page)
            seen += len(page.rows)
            cursor = page.next_cursor
        return merge(answer, pages)

    @_op
    def query_file(self, licence_id: str, query: dict[str, Any], media_type: str = "text/csv") -> Steps:
        """A row answer as a file's bytes (``text/csv`` or ``application/vnd.apache.parquet``)."""
        call = Call("QueryLicence", {"licence_id": licence_id}, json=query, accept=media_type, raw=True)
        response = yield call
        return response.content

    @_op
    def files(self, licence_id: str) -> Steps:
        return (yield Call("ListLicenceFiles", {"licence_id": licence_id}, into=models.FileList)).items

    @_op
    def budget(self, licence_id: str) -> Steps:
        return (yield Call("GetEpsilonBudget", {"licence_id": licence_id}, into=models.Budget))

    @_op
    def renew(self, licence_id: str) -> Steps:
        """A new licence following this one (``.licence``), or the tracks a tightened grade reopened."""
        return (yield Call("RenewLicence", {"licence_id": licence_id}, into=models.Renewal))

    @_op
    def usage(
        self,
        licence_id: str,
        *,
        granularity: str = "day",
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        tz: str | None = None,
    ) -> Steps:
        params = {"granularity": granularity, "since": _iso(since), "until": _iso(until), "tz": tz}
        return (yield Call("GetLicenceUsage", {"licence_id": licence_id}, params, into=models.UsageReport))

    def download(self, licence_id: str, name: str, dest: str | Path, **options: Any) -> Any:
        """Stream a file to ``dest`` (a folder or a file name), resuming a partial download and
        checking its SHA-256; see ``lode_client.download``."""
        return self._client._download(licence_id, name, Path(dest), **options)


class Usage(Resource):
    @_op
    def report(
        self,
        *,
        granularity: str = "day",
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        tz: str | None = None,
    ) -> Steps:
        params = {"granularity": granularity, "since": _iso(since), "until": _iso(until), "tz": tz}
        return (yield Call("GetUsage", params=params, into=models.UsageReport))

    @_op
    def ingest(self, events: list[dict[str, Any]]) -> Steps:
        """Report usage measured outside Lode; each event's own ``idempotency_key`` dedupes it, and
        the batch is sent under an Idempotency-Key kept across retries."""
        body = {"events": [{k: _iso(v) for k, v in event.items()} for event in events]}
        return (yield Call("IngestUsageEvents", json=body, into=models.IngestResult))


class Payments(Resource):
    def list(self, *, licence_id: str | None = None, limit: int = 100) -> Pages:
        return Pages(self._client, "ListPayments", _page_of(models.Payment), {"licence_id": licence_id, "limit": limit})

    @_op
    def get(self, payment_id: str) -> Steps:
        return (yield Call("GetPayment", {"payment_id": payment_id}, into=models.Payment))

    @_op
    def statement(self, org_id: str, period: str) -> Steps:
        """An organisation's statement for a month (``YYYY-MM``)."""
        return (yield Call("GetStatement", {"org_id": org_id}, {"period": period}, into=models.Statement))


class Notifications(Resource):
    def list(self, *, unread: bool = False, type: str | None = None, limit: int = 100) -> Pages:
        """Your organisation's notifications, newest first (``unread`` only those you have not read)."""
        params = {"unread": "true" if unread else None, "type": type, "limit": limit}
        return Pages(self._client, "ListNotifications", _page_of(models.Notification), params)

    @_op
    def mark_read(self, ids: list[str] | None = None) -> Steps:
        """Mark these read, or with no ids every notification up to now; answers how many are left unread."""
        body = {"ids": ids} if ids else {"all": True}
        return (yield Call("MarkNotificationsRead", json=body))["unread"]


class Webhooks(Resource):
    """An organisation's webhook endpoints (its admin's): deliveries signed per Standard Webhooks."""

    def list(self, org_id: str, *, limit: int = 100) -> Pages:
        return Pages(self._client, "ListWebhooks", _page_of(models.Webhook), {"limit": limit}, {"org_id": org_id})

    @_op
    def create(
        self, org_id: str, url: str, *, event_types: list[str] | None = None, description: str | None = None
    ) -> Steps:
        """Register ``url``; keep ``.secret`` (shown this once) to verify deliveries."""
        body = {k: v for k, v in {"url": url, "event_types": event_types, "description": description}.items() if v}
        return (yield Call("CreateWebhook", {"org_id": org_id}, json=body, into=models.WebhookCreated))

    @_op
    def get(self, org_id: str, webhook_id: str) -> Steps:
        return (yield Call("GetWebhook", {"org_id": org_id, "webhook_id": webhook_id}, into=models.Webhook))

    @_op
    def update(self, org_id: str, webhook_id: str, **changes: Any) -> Steps:
        """Change ``url``, ``event_types`` (None: every type), ``description`` or ``enabled``."""
        path = {"org_id": org_id, "webhook_id": webhook_id}
        return (yield Call("UpdateWebhook", path, json=changes, into=models.Webhook))

    @_op
    def delete(self, org_id: str, webhook_id: str) -> Steps:
        yield Call("DeleteWebhook", {"org_id": org_id, "webhook_id": webhook_id}, raw=True)

    @_op
    def rotate_secret(self, org_id: str, webhook_id: str) -> Steps:
        """A new ``.secret``; the old one keeps signing beside it for 24 hours."""
        path = {"org_id": org_id, "webhook_id": webhook_id}
        return (yield Call("RotateWebhookSecret", path, into=models.WebhookCreated))

    def deliveries(self, org_id: str, webhook_id: str, *, status: str | None = None, limit: int = 100) -> Pages:
        path = {"org_id": org_id, "webhook_id": webhook_id}
        params = {"status": status, "limit": limit}
        return Pages(self._client, "ListWebhookDeliveries", _page_of(models.WebhookDelivery), params, path)

    @_op
    def redeliver(self, org_id: str, webhook_id: str, delivery_id: str) -> Steps:
        path = {"org_id": org_id, "webhook_id": webhook_id, "delivery_id": delivery_id}
        return (yield Call("RedeliverWebhook", path, into=models.WebhookDelivery))

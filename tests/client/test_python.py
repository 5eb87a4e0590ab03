"""The Python client against a live Lode (`lode serve` on the demo, SQLite and PostgreSQL): the
consumer journey, a provider's release, resumed downloads, retries that do not duplicate, the
async client and the analyst's tools."""

from __future__ import annotations

import hashlib
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from lode_client import AsyncClient, Client, errors

from catalog.demo import catalog as demo
from catalog.demo.data import write_product
from tests.web.conftest import DemoServer


class Recording(httpx.HTTPTransport):
    """A real transport that records each request, and can lose an answer or cut a stream."""

    def __init__(self, *, lose_answer_to: Callable[[httpx.Request], bool] | None = None, cut_after: int | None = None):
        super().__init__()
        self.seen: list[httpx.Request] = []
        self.lose_answer_to = lose_answer_to
        self.cut_after = cut_after

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        response = super().handle_request(request)
        if self.lose_answer_to is not None and self.lose_answer_to(request):
            self.lose_answer_to = None
            response.read()  # Lode did the work; the answer is lost on the way back
            raise httpx.ReadError("connection reset by peer", request=request)
        if self.cut_after is not None and request.method == "GET" and "/files/" in request.url.path:
            limit, self.cut_after = self.cut_after, None
            return httpx.Response(
                response.status_code, headers=response.headers, stream=_Cut(response, limit), request=request
            )
        return response


class _Cut(httpx.SyncByteStream):
    def __init__(self, response: httpx.Response, limit: int) -> None:
        self.response, self.limit = response, limit

    def __iter__(self) -> Iterator[bytes]:
        sent = 0
        for chunk in self.response.iter_raw():
            if sent + len(chunk) >= self.limit:
                yield chunk[: self.limit - sent]
                raise httpx.ReadError("the connection broke half way")
            sent += len(chunk)
            yield chunk

    def close(self) -> None:
        self.response.close()


def client(live: DemoServer, who: str, **options: Any) -> Client:
    return Client(live.base, live.key(who), retries=options.pop("retries", 3), **options)


def pay(url: str) -> None:
    """The buyer presses "Pay — simulated" on the checkout page (no Stripe key: Stripe is simulated)."""
    assert httpx.post(url).status_code == 303


def test_the_consumer_journey(live: DemoServer, client_home: Path) -> None:
    buyer = client(live, "shanghai-pharma-rd")
    found = buyer.products.search("糖尿病", grade=["L5"])
    assert "t2d-sglt2-trial" in [p.slug for p in found.items] and found.facets["grade"]["L5"] >= 1
    product = buyer.products.get("t2d-sglt2-trial")
    assert product.grade == "L5" and product.terms is not None and buyer.products.dictionary(product.slug)
    plan = next(p for p in product.plans if p.amount > 0)
    eligibility = buyer.products.eligibility(
        product.slug, category="DS", commercial=True, disease_codes=["E11"], territory="CN", months=12,
        plan_id=plan.id, ethics_expires_on="2027-11-01",
    )  # fmt: skip
    assert eligibility.eligible and eligibility.blockers == [], eligibility.blockers
    blocked = buyer.products.eligibility(product.slug, category="DS", disease_codes=["C34"], territory="US")
    assert not blocked.eligible and {b.code for b in blocked.blockers} >= {"ds_disease_mismatch"}, blocked.blockers

    me = buyer.me()
    lossy = Recording(lose_answer_to=lambda r: r.method == "POST" and r.url.path == "/v1/applications")
    flaky = Client(live.base, live.key("shanghai-pharma-rd"), transport=lossy, retries=2)
    application = flaky.applications.create(
        product.id,
        plan.id,
        purpose={"category": "DS", "commercial": True, "description": "SGLT2 RWE", "territory": "CN",
                 "disease_codes": ["E11"]},
        project={"title": "SGLT2 study (client)", "public_summary": "How SGLT2 inhibitors work in practice"},
        requested_months=12,
        analysts=[me.user["id"]],
        ethics_approval={"committee": "IRB", "reference": "C-1", "approved_on": "2026-11-01",
                         "expires_on": "2027-11-01"},
    )  # fmt: skip
    posts = [r for r in lossy.seen if r.method == "POST"]
    assert len(posts) == 2 and posts[0].headers["idempotency-key"] == posts[1].headers["idempotency-key"]
    mine = [a for a in buyer.applications.list(product=product.id) if a.project["title"] == "SGLT2 study (client)"]
    assert [a.id for a in mine] == [application.id]  # the retry drafted nothing more

    submitted = buyer.applications.submit(application.id)
    assert submitted.status == "under_review"
    for who, track in [("ruijin/reviewer", "provider"), ("operator/ethics", "ethics"),
                       ("operator/security", "security"), ("operator/compliance", "compliance"),
                       ("operator", "operator")]:  # fmt: skip
        client(live, who).applications.decide(application.id, track, "approve", comment="ok")
    licence = buyer.licences.get(buyer.applications.get(application.id).licence_id)
    assert licence.status == "pending_acceptance"
    with pytest.raises(errors.TermsMismatch):
        buyer.licences.accept(licence.id, "0" * 64)
    licence = buyer.licences.accept(licence.id, licence.terms_sha256)
    checkout = buyer.licences.checkout(licence.id)
    assert checkout.url.startswith(live.base) and checkout.amount > 0
    pay(checkout.url)
    deadline = time.monotonic() + 30
    while buyer.licences.get(licence.id).status != "active" and time.monotonic() < deadline:
        time.sleep(0.3)
    assert buyer.licences.get(licence.id).status == "active"

    query = {"table": "subjects", "group_by": ["site"], "aggregates": [{"fn": "count"}], "epsilon": 0.2}
    answer = buyer.licences.query(licence.id, query)
    assert answer.mode == "dp_aggregate" and answer.epsilon_spent == pytest.approx(0.2) and len(answer) == 3
    table = answer.to_arrow()
    assert table.column_names == answer.columns and b"lode" in table.schema.metadata
    assert answer.to_pandas().attrs["lode"]["epsilon_spent"] == pytest.approx(0.2)
    assert answer.to_polars().shape == (3, 2)
    assert buyer.licences.budget(licence.id).spent == pytest.approx(0.2)
    with pytest.raises(errors.EpsilonRequired) as refused:
        buyer.licences.query(licence.id, {k: v for k, v in query.items() if k != "epsilon"})
    assert refused.value.request_id and refused.value.status == 422 and refused.value.detail
    usage = buyer.licences.usage(licence.id)
    assert usage.totals["queries"] >= 1


def test_a_providers_release_and_usage_without_duplicates(live: DemoServer, client_home: Path) -> None:
    publisher = client(live, "ruijin/publisher")
    product = publisher.products.get("open-outpatient-sample")
    release = publisher.releases.create(product.id, "py-2026.1", notes="from the Python client")
    item = next(p for p in demo.PRODUCTS if p.slug == "open-outpatient-sample")
    with tempfile.TemporaryDirectory() as scratch:
        for path in write_product(item, Path(scratch), "client-test").values():
            stored = publisher.releases.upload(product.id, release.version, path)
            assert stored.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert publisher.releases.publish(product.id, release.version).status == "published"
    assert "py-2026.1" in [r.version for r in publisher.releases.list(product.id)]

    owner = client(live, "zhongshan")  # zhongshan owns the open check-up sample: it reports usage
    licence = next(iter(owner.licences.list(product="open-checkup-sample", status="active")))
    event = {"idempotency_key": "client-batch-1", "licence_id": licence.id, "dimension": "queries", "quantity": 3,
             "occurred_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}  # fmt: skip
    before = owner.licences.usage(licence.id).totals.get("queries", 0)
    lossy = Recording(lose_answer_to=lambda r: r.url.path == "/v1/usage-events")
    result = Client(live.base, live.key("zhongshan"), transport=lossy).usage.ingest([event])
    posts = [r for r in lossy.seen if r.url.path == "/v1/usage-events"]
    assert len(posts) == 2 and posts[0].headers["idempotency-key"] == posts[1].headers["idempotency-key"]
    assert result.inserted == 1
    assert owner.licences.usage(licence.id).totals["queries"] == before + 3  # counted once


def test_a_download_cut_half_way_resumes_to_the_right_sha256(live: DemoServer, tmp_path: Path) -> None:
    buyer = client(live, "rheinpharma")
    licence = next(iter(buyer.licences.list(status="active")))
    entry = buyer.licences.files(licence.id)[0]
    cut = Recording(cut_after=entry.bytes // 2)
    with pytest.raises(errors.TransportError, match="again to resume"):
        Client(live.base, live.key("rheinpharma"), transport=cut).licences.download(licence.id, entry.name, tmp_path)
    part = tmp_path / f"{entry.name}.part"
    assert not (tmp_path / entry.name).exists() and 0 < part.stat().st_size < entry.bytes
    resumed = Recording()
    done = Client(live.base, live.key("rheinpharma"), transport=resumed).licences.download(
        licence.id, entry.name, tmp_path
    )
    asked = resumed.seen[-1].headers
    assert asked["range"].startswith("bytes=") and asked["if-range"] == f'"{entry.sha256}"'
    assert hashlib.sha256(done.read_bytes()).hexdigest() == entry.sha256 and not part.exists()

    # A partial file of another version: Lode sends the whole current file, which replaces it.
    part.write_bytes(b"stale bytes of an older release")
    (tmp_path / f"{entry.name}.part.etag").write_text('"' + "0" * 64 + '"')
    (tmp_path / entry.name).unlink()
    again = buyer.licences.download(licence.id, entry.name, tmp_path / entry.name)
    assert hashlib.sha256(again.read_bytes()).hexdigest() == entry.sha256


async def test_the_async_client_pages_and_queries(live: DemoServer, client_home: Path) -> None:
    async with AsyncClient(live.base, live.key("rheinpharma")) as lode:
        slugs = [p.slug async for p in lode.products.iter(limit=5)]
        assert len(slugs) == len(set(slugs)) >= 12  # three pages of five, each product once
        licences = [lic async for lic in lode.licences.list(status="active")]
        licence = licences[0]
        entry = (await lode.licences.files(licence.id))[0]
        answer = await lode.licences.query(
            licence.id, {"table": entry.table, "limit": 40}, all_pages=True, max_rows=100
        )
        assert len(answer.rows) >= 100 and answer.mode == "rows"
        frame = answer.to_pandas()
        assert list(frame.columns) == answer.columns and len(frame) == len(answer.rows)
        with pytest.raises(errors.ResourceNotFound):
            await lode.licences.get("lic_00000000000000000000000000")


def test_pages_follow_every_cursor(live: DemoServer, client_home: Path) -> None:
    lode = client(live, "fudan-sph")
    every = list(lode.products.iter(limit=3))
    assert len(every) == lode.products.search(limit=100).total == len({p.id for p in every})


def test_the_reminder_a_renewal_and_its_webhook_on_a_live_server(live: DemoServer, client_home: Path) -> None:
    """The demo's licence near its end: its reminder in the feed; renewing it is told to the
    company's webhook by the served worker, signed so that ``standardwebhooks`` verifies it."""
    from standardwebhooks import Webhook

    from tests.notifications.conftest import Receiver

    lode = Client(live.base, live.key("shanghai-pharma-rd"))
    near = live.demo["near_expiry"]
    [reminder] = list(lode.notifications.list(type="licence.expiring"))
    assert reminder.subject == {"type": "licence", "id": near["licence_id"]}
    assert reminder.data["ends_on"] == near["ends_on"] and reminder.data["reminder"] == 7

    receiver = Receiver().start()
    try:
        org_id = lode.me().organisation["id"]
        hook = lode.webhooks.create(org_id, receiver.url, event_types=["licence.offered", "licence.activated"])
        renewal = lode.licences.renew(near["licence_id"])
        assert renewal.status == "offered" and renewal.licence is not None
        assert renewal.licence.status == "active" and renewal.licence.starts_on.isoformat() > near["ends_on"]
        deadline = time.monotonic() + 30
        while len(receiver.received) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        payloads = [Webhook(hook.secret).verify(r.body, r.headers) for r in receiver.received]
        assert sorted(p["type"] for p in payloads) == ["licence.activated", "licence.offered"]
        assert {p["data"]["licence_id"] for p in payloads} == {renewal.licence.id}
        [delivered] = [d for d in lode.webhooks.deliveries(org_id, hook.id) if d.event_type == "licence.offered"]
        assert delivered.status == "delivered" and delivered.tries[0]["status_code"] == 204
        with pytest.raises(errors.AlreadyRenewed):
            lode.licences.renew(near["licence_id"])
        assert lode.notifications.mark_read() == 0
        lode.webhooks.delete(org_id, hook.id)
    finally:
        receiver.stop()

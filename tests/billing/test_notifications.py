"""Payments are told to the licence's parties — and to no other organisation."""

from __future__ import annotations

from tests.billing.conftest import market, pay
from tests.support import Party, expect


async def told(client, party: Party, type: str) -> list[dict]:
    items = expect(await client.get("/v1/notifications?limit=500", headers=party.headers), 200)["items"]
    return [n for n in items if n["type"] == type]


async def test_a_payment_and_its_refund_reach_the_parties_only(client, delivery, actors, sim, hooks, drain) -> None:
    owner, partner, consumer, licence, _ = await market(client, delivery, actors, sim, drain)
    outsider = await delivery.consumer()
    webhook = expect(
        await client.post(
            f"/v1/orgs/{outsider['admin'].org_id}/webhooks",
            json={"url": "https://93.184.216.34/hooks"},
            headers=outsider["admin"].headers,
        ),
        201,
    )
    payment = await pay(client, sim, drain, consumer, licence)
    for party in (consumer["buyer"], owner, partner):
        [paid] = await told(client, party, "payment.succeeded")
        assert paid["subject"] == {"type": "payment", "id": payment["id"]}
        assert paid["data"]["licence_id"] == licence["id"] and paid["data"]["amount"] == payment["amount"]
    [activated] = await told(client, consumer["buyer"], "licence.activated")
    assert activated["subject"]["id"] == licence["id"]

    finance = await actors.member(actors.operator.org_id, ["finance"])
    expect(
        await client.post(
            f"/v1/payments/{payment['id']}/refunds",
            json={"amount": 1_000, "reason": "goodwill"},
            headers=finance.headers,
        ),
        201,
    )
    await drain()
    await sim.deliver_pending()  # Stripe's charge.refunded for the same refund: told once, not twice
    await drain()
    # A refund made in Stripe's dashboard, not through Lode, is booked when its webhook arrives: told too.
    charge = sim.objects("charge")[0]["id"]
    await sim.client().v1.refunds.create_async({"charge": charge, "amount": 2_000})
    await sim.deliver_pending()
    await drain()
    for party in (consumer["buyer"], owner, partner):
        refunded = await told(client, party, "payment.refunded")
        assert sorted(n["data"]["amount"] for n in refunded) == [1_000, 2_000]
        assert {n["subject"]["id"] for n in refunded} == {payment["id"]}
    items = expect(await client.get("/v1/notifications?limit=500", headers=outsider["buyer"].headers), 200)["items"]
    assert items == []
    log = expect(
        await client.get(
            f"/v1/orgs/{outsider['admin'].org_id}/webhooks/{webhook['id']}/deliveries",
            headers=outsider["admin"].headers,
        ),
        200,
    )
    assert log["items"] == []

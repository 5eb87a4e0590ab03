"""The in-app feed: the organisation's events, read or unread for each member."""

from __future__ import annotations

from tests.support import expect, problem


async def test_the_feed_lists_the_orgs_events_with_each_members_read_marks(client, actors, catalogue):
    provider = await actors.org("provider")
    colleague = await actors.member(provider.org_id, ["publisher"])
    first = await catalogue.listed(provider)
    second = await catalogue.listed(provider)

    feed = expect(await client.get("/v1/notifications", headers=provider.headers), 200)
    assert [n["subject"]["id"] for n in feed["items"]] == [second["id"], first["id"]]  # newest first
    assert [n["type"] for n in feed["items"]] == ["product.listed"] * 2
    assert feed["unread"] == 2 and not any(n["read"] for n in feed["items"])

    newest = feed["items"][0]["id"]
    marked = expect(await client.post("/v1/notifications/read", json={"ids": [newest]}, headers=provider.headers), 200)
    assert marked["unread"] == 1
    unread = expect(await client.get("/v1/notifications?unread=true", headers=provider.headers), 200)
    assert [n["subject"]["id"] for n in unread["items"]] == [first["id"]]
    # Read marks are each member's own.
    assert expect(await client.get("/v1/notifications", headers=colleague.headers), 200)["unread"] == 2

    page = expect(await client.get("/v1/notifications?limit=1", headers=colleague.headers), 200)
    rest = expect(
        await client.get(f"/v1/notifications?limit=1&cursor={page['next_cursor']}", headers=colleague.headers), 200
    )
    assert [n["id"] for n in page["items"] + rest["items"]] == [n["id"] for n in feed["items"]]

    assert expect(await client.post("/v1/notifications/read", json={"all": True}, headers=colleague.headers), 200) == {
        "unread": 0
    }
    third = await catalogue.listed(provider)
    after = expect(await client.get("/v1/notifications?unread=true", headers=colleague.headers), 200)
    assert [n["subject"]["id"] for n in after["items"]] == [third["id"]] and after["unread"] == 1


async def test_marking_is_refused_for_another_orgs_notification_and_bad_bodies(client, actors, catalogue):
    provider = await actors.org("provider")
    stranger = await actors.org("consumer")
    await catalogue.listed(provider)
    [notice] = expect(await client.get("/v1/notifications", headers=provider.headers), 200)["items"]
    refused = problem(
        await client.post("/v1/notifications/read", json={"ids": [notice["id"]]}, headers=stranger.headers),
        400,
        "validation_error",
    )
    assert refused["errors"][0]["field"] == "ids"
    assert expect(await client.get("/v1/notifications", headers=stranger.headers), 200)["items"] == []
    problem(await client.post("/v1/notifications/read", json={}, headers=provider.headers), 400, "validation_error")
    problem(
        await client.post(
            "/v1/notifications/read", json={"ids": [notice["id"]], "all": True}, headers=provider.headers
        ),
        400,
        "validation_error",
    )
    problem(await client.get("/v1/notifications?type=nonsense", headers=provider.headers), 400, "validation_error")
    problem(await client.get("/v1/notifications"), 401, "unauthenticated")

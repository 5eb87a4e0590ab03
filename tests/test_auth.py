"""Authentication and authorisation across every route of the app."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.support import Actors, expect, problem

pytestmark = pytest.mark.asyncio

DUMMY_IDS = {"org_id": "org_01M8KA6FHNZP644F7TPRPS09WM", "user_id": "usr_01M8KA6FHX752NRWMCQAPS6T30"}


def operations(app: Any) -> list[tuple[str, str, bool]]:
    """(method, concrete path, public?) for every operation in the served spec."""
    spec = app.openapi_schema.to_schema()
    found = []
    for path, item in spec["paths"].items():
        concrete = re.sub(r"\{(\w+)\}", lambda m: DUMMY_IDS.get(m.group(1), "x_01M8KA6FHX752NRWMCQAPS6T30"), path)
        for method, op in item.items():
            if method in ("get", "post", "put", "patch", "delete"):
                found.append((method.upper(), concrete, {} in op.get("security", [{"ApiKey": []}])))
    return found


class TestEveryRouteNeedsAKey:
    async def test_no_key_bogus_key_and_revoked_key_are_401(self, client, actors: Actors, app) -> None:
        consumer = await actors.org("consumer")
        expect(await client.delete(f"/v1/api-keys/{await _key_id(client, consumer)}", headers=consumer.headers), 204)
        checked = 0
        for method, path, public in operations(app):
            if public:
                continue
            for headers in (
                {},
                {"Authorization": "Bearer lode_not-a-real-key"},
                consumer.headers,
                {"Authorization": "Basic abc"},
            ):
                response = await client.request(method, path, headers=headers, json={})
                problem(response, 401, "unauthenticated")
            checked += 1
        assert checked >= 10

    async def test_public_routes_answer_without_a_key(self, client, app) -> None:
        public_paths = [(method, path) for method, path, public in operations(app) if public]
        assert len(public_paths) >= 8
        for method, path in public_paths:
            response = await client.request(method, path)
            status = response.status_code
            unconfigured = status == 503 and response.json()["code"] == "billing_not_configured"  # no Stripe here
            assert status not in (401, 403) and (status < 500 or unconfigured), (method, path, status)

    async def test_every_guard_runs_on_the_event_loop(self, app) -> None:
        """Litestar runs a plain-function guard in a worker thread: a hop per guard per request."""
        from litestar.utils.sync import AsyncCallable

        guarded = [
            (handler, guard)
            for route in app.routes
            for handler in getattr(route, "route_handlers", [])
            for guard in handler.resolve_guards()
        ]
        assert len(guarded) > 20
        assert not [handler.handler_name for handler, guard in guarded if isinstance(guard, AsyncCallable)]


async def _key_id(client, party) -> str:
    keys = expect(await client.get(f"/v1/orgs/{party.org_id}/api-keys", headers=party.headers), 200)
    return next(k["id"] for k in keys["items"] if k["status"] == "active")


class TestRoles:
    async def test_only_the_operator_admin_creates_and_verifies_orgs(self, client, actors: Actors) -> None:
        provider = await actors.org("provider")
        curator = await actors.member(actors.operator.org_id, ["curator"])
        body = {"name": "X", "kind": "consumer", "jurisdiction": "CN", "org_type": "pharma", "for_profit": True}
        for party in (provider, curator):
            problem(await client.post("/v1/orgs", json=body, headers=party.headers), 403, "forbidden")
            problem(
                await client.post(
                    f"/v1/orgs/{provider.org_id}/verify", json={"status": "rejected"}, headers=party.headers
                ),
                403,
                "forbidden",
            )

    async def test_audit_verification_is_for_the_operator(self, client, actors: Actors) -> None:
        consumer = await actors.org("consumer")
        problem(await client.get("/v1/audit/verify", headers=consumer.headers), 403, "forbidden")
        finance = await actors.member(actors.operator.org_id, ["finance"])
        problem(await client.get("/v1/audit/verify", headers=finance.headers), 403, "forbidden")
        compliance = await actors.member(actors.operator.org_id, ["compliance"])
        assert expect(await client.get("/v1/audit/verify", headers=compliance.headers), 200)["valid"] is True

    async def test_members_are_managed_by_their_admin_or_the_operator_admin(self, client, actors: Actors) -> None:
        a = await actors.org("consumer")
        b = await actors.org("consumer")
        buyer = await actors.member(a.org_id, ["buyer"])
        body = {"email": "new@a.test", "name": "New", "roles": ["analyst"]}
        problem(await client.post(f"/v1/orgs/{a.org_id}/members", json=body, headers=buyer.headers), 403, "forbidden")
        problem(await client.post(f"/v1/orgs/{a.org_id}/members", json=body, headers=b.headers), 404, "not_found")
        expect(await client.post(f"/v1/orgs/{a.org_id}/members", json=body, headers=a.headers), 201)

    async def test_roles_must_fit_the_organisation_kind(self, client, actors: Actors) -> None:
        a = await actors.org("consumer")
        body = {"email": "cur@a.test", "name": "Cur", "roles": ["curator"]}
        err = problem(
            await client.post(f"/v1/orgs/{a.org_id}/members", json=body, headers=a.headers), 400, "validation_error"
        )
        assert err["errors"][0]["field"] == "roles"


class TestTenancy:
    async def test_a_consumer_lists_only_its_own_org(self, client, actors: Actors) -> None:
        a = await actors.org("consumer")
        await actors.org("consumer")
        await actors.org("provider")
        listed = expect(await client.get("/v1/orgs", headers=a.headers), 200)
        assert [o["id"] for o in listed["items"]] == [a.org_id]
        everyone = expect(await client.get("/v1/orgs", headers=actors.operator.headers), 200)
        assert len(everyone["items"]) == 4

    async def test_another_tenants_org_is_not_found(self, client, actors: Actors) -> None:
        a = await actors.org("consumer")
        b = await actors.org("provider")
        problem(await client.get(f"/v1/orgs/{b.org_id}", headers=a.headers), 404, "not_found")
        problem(await client.get(f"/v1/orgs/{b.org_id}/members", headers=a.headers), 404, "not_found")
        problem(await client.get(f"/v1/orgs/{b.org_id}/api-keys", headers=a.headers), 404, "not_found")
        b_key = await _key_id(client, b)
        problem(await client.delete(f"/v1/api-keys/{b_key}", headers=a.headers), 404, "not_found")

    async def test_every_org_scoped_route_answers_a_real_org_as_a_made_up_one(self, client, actors, app) -> None:
        """Another tenant learns nothing from an organisation id: each route under /v1/orgs/{org_id}
        answers the same for a real organisation as for one that does not exist — 404, or the 403
        of a role guard that runs before any lookup."""
        caller = await actors.org("consumer")
        real = await actors.org("provider")
        blocked = await actors.org("consumer")
        hook = expect(
            await client.post(
                f"/v1/orgs/{real.org_id}/webhooks", json={"url": "https://93.184.216.34/hooks"}, headers=real.headers
            ),
            201,
        )
        real_ids = {
            "org_id": real.org_id,
            "user_id": real.user_id,
            "blocked_org_id": blocked.org_id,
            "webhook_id": hook["id"],
            "delivery_id": "dlv_01M8KA6FHX752NRWMCQAPS6T30",
        }
        made_up = {
            **DUMMY_IDS,
            "blocked_org_id": DUMMY_IDS["org_id"],
            "webhook_id": "wep_01M8KA6FHX752NRWMCQAPS6T30",
            "delivery_id": "dlv_01M8KA6FHX752NRWMCQAPS6T30",
        }
        bodies = {
            "AddMember": {"email": "new@x.test", "name": "New", "roles": ["publisher"]},
            "UpdateMember": {"name": "Renamed"},
            "IssueApiKey": {"user_id": caller.user_id, "name": "mine"},
            "BlockOrg": {"org_id": blocked.org_id, "reason": "test"},
            "VerifyOrg": {"status": "rejected"},
            "PayoutAccount": None,
            "CreateWebhook": {"url": "https://93.184.216.34/hooks"},
            "UpdateWebhook": {"enabled": False},
        }
        role_guarded = {"VerifyOrg": 403}  # the operator admin's only: refused before anything is looked up
        spec = app.openapi_schema.to_schema()
        swept = []
        for path, item in spec["paths"].items():
            if "{org_id}" not in path:
                continue
            for method, operation in item.items():
                name = operation["operationId"]
                answers = []
                for ids in (real_ids, made_up):
                    url = re.sub(r"\{(\w+)\}", lambda m, ids=ids: ids[m.group(1)], path)
                    query = "?period=2026-11" if name == "GetStatement" else ""
                    response = await client.request(
                        method.upper(), url + query, json=bodies.get(name), headers=caller.headers
                    )
                    answers.append((response.status_code, response.json()["code"]))
                expected = role_guarded.get(name, 404)
                assert answers[0] == answers[1] == (expected, "forbidden" if expected == 403 else "not_found"), (
                    name,
                    answers,
                )
                swept.append(name)
        assert set(swept) >= {
            "GetOrg", "ListMembers", "AddMember", "UpdateMember", "RemoveMember", "ListApiKeys", "IssueApiKey",
            "ListBlocklist", "BlockOrg", "UnblockOrg", "GetStatement", "PayoutAccount", "VerifyOrg",
            "CreateWebhook", "ListWebhooks", "GetWebhook", "UpdateWebhook", "DeleteWebhook", "RotateWebhookSecret",
            "ListWebhookDeliveries", "RedeliverWebhook",
        }  # fmt: skip
        listed = expect(await client.get(f"/v1/orgs/{real.org_id}/members", headers=real.headers), 200)
        assert [m["name"] for m in listed["items"]] != ["Renamed"]  # and nothing was changed on the way
        kept = expect(await client.get(f"/v1/orgs/{real.org_id}/webhooks/{hook['id']}", headers=real.headers), 200)
        assert kept["enabled"] is True

    async def test_a_member_sees_only_its_own_keys_and_cannot_issue_for_others(self, client, actors) -> None:
        a = await actors.org("consumer")
        analyst = await actors.member(a.org_id, ["analyst"])
        listed = expect(await client.get(f"/v1/orgs/{a.org_id}/api-keys", headers=analyst.headers), 200)
        assert {k["user_id"] for k in listed["items"]} == {analyst.user_id}
        problem(
            await client.post(
                f"/v1/orgs/{a.org_id}/api-keys", json={"user_id": a.user_id, "name": "x"}, headers=analyst.headers
            ),
            403,
            "forbidden",
        )
        own = expect(
            await client.post(
                f"/v1/orgs/{a.org_id}/api-keys",
                json={"user_id": analyst.user_id, "name": "mine"},
                headers=analyst.headers,
            ),
            201,
        )
        assert own["secret"].startswith("lode_") and "secret" not in str(listed)


class TestKeys:
    async def test_me_names_user_org_and_roles(self, client, actors: Actors) -> None:
        a = await actors.org("consumer")
        buyer = await actors.member(a.org_id, ["buyer", "analyst"])
        me = expect(await client.get("/v1/me", headers=buyer.headers), 200)
        assert me["user"]["id"] == buyer.user_id
        assert me["organisation"]["id"] == a.org_id
        assert me["roles"] == ["analyst", "buyer"]

    async def test_stored_keys_are_peppered_hashes_and_last_use_is_recorded(self, client, actors, sessions) -> None:
        from sqlalchemy import select

        from catalog.auth import hash_secret
        from catalog.orgs.models import ApiKey

        a = await actors.org("consumer")
        expect(await client.get("/v1/me", headers=a.headers), 200)
        async with sessions() as s:
            keys = (await s.execute(select(ApiKey).where(ApiKey.org_id == a.org_id))).scalars().all()
        assert len(keys) == 1
        assert keys[0].secret_hash == hash_secret(actors.settings.key_pepper, a.key)
        assert a.key not in keys[0].secret_hash and keys[0].prefix == a.key[:17]
        assert keys[0].last_used_at is not None

    async def test_removing_a_member_revokes_its_keys(self, client, actors: Actors) -> None:
        a = await actors.org("consumer")
        analyst = await actors.member(a.org_id, ["analyst"])
        expect(await client.get("/v1/me", headers=analyst.headers), 200)
        expect(await client.delete(f"/v1/orgs/{a.org_id}/members/{analyst.user_id}", headers=a.headers), 204)
        problem(await client.get("/v1/me", headers=analyst.headers), 401, "unauthenticated")

    async def test_the_last_admin_cannot_be_removed(self, client, actors: Actors) -> None:
        a = await actors.org("consumer")
        problem(await client.delete(f"/v1/orgs/{a.org_id}/members/{a.user_id}", headers=a.headers), 409, "last_admin")
        problem(
            await client.patch(
                f"/v1/orgs/{a.org_id}/members/{a.user_id}", json={"roles": ["buyer"]}, headers=a.headers
            ),
            409,
            "last_admin",
        )

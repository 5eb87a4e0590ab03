"""Bad input is a 4xx problem naming the field, and never a partial write."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from catalog import audit
from catalog.orgs.models import Organisation
from tests.support import Actors, expect, problem

pytestmark = pytest.mark.asyncio

GOOD = {
    "name": "Ruijin Hospital",
    "kind": "provider",
    "jurisdiction": "CN",
    "org_type": "hospital",
    "for_profit": False,
}


async def counts(sessions) -> tuple[int, int]:
    async with sessions() as s:
        orgs = (await s.execute(select(func.count()).select_from(Organisation))).scalar_one()
        events = (await s.execute(select(func.count()).select_from(audit.AuditEvent))).scalar_one()
    return orgs, events


class TestBadInput:
    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({**GOOD, "name": 42}, "name"),
            ({**GOOD, "for_profit": "yes"}, "for_profit"),
            ({k: v for k, v in GOOD.items() if k != "kind"}, "kind"),
            ({**GOOD, "kind": "hospital"}, "kind"),
            ({**GOOD, "surprise": 1}, "surprise"),
            ({**GOOD, "jurisdiction": "China"}, "jurisdiction"),
            ({**GOOD, "jurisdiction": "QQ"}, "jurisdiction"),
            ({**GOOD, "name": ""}, "name"),
            ([GOOD], "body"),
        ],
    )
    async def test_invalid_bodies_name_the_field(self, client, actors: Actors, sessions, body, field) -> None:
        before = await counts(sessions)
        err = problem(
            await client.post("/v1/orgs", json=body, headers=actors.operator.headers), 400, "validation_error"
        )
        assert err["errors"][0]["field"] == field
        assert err["type"] == "urn:lode:problem:validation_error" and err["status"] == 400 and err["detail"]
        assert await counts(sessions) == before

    async def test_malformed_json(self, client, actors: Actors, sessions) -> None:
        before = await counts(sessions)
        response = await client.post(
            "/v1/orgs", content=b'{"name": ', headers={**actors.operator.headers, "Content-Type": "application/json"}
        )
        problem(response, 400, "malformed_json")
        assert await counts(sessions) == before

    async def test_a_3_mb_body_is_413(self, client, actors: Actors, sessions) -> None:
        before = await counts(sessions)
        big = {**GOOD, "name": "x" * (3 * 1024 * 1024)}
        problem(await client.post("/v1/orgs", json=big, headers=actors.operator.headers), 413, "body_too_large")
        assert await counts(sessions) == before

    async def test_bad_query_parameters(self, client, actors: Actors) -> None:
        for query, field in (
            ("limit=501", "limit"),
            ("limit=0", "limit"),
            ("limit=abc", "limit"),
            ("cursor=%%%", "cursor"),
            ("kind=hospital", "kind"),
        ):
            err = problem(
                await client.get(f"/v1/orgs?{query}", headers=actors.operator.headers), 400, "validation_error"
            )
            assert err["errors"][0]["field"] == field, (query, err)

    async def test_a_missing_query_parameter_is_named_as_itself(self, client, actors: Actors) -> None:
        err = problem(
            await client.get(f"/v1/orgs/{actors.operator.org_id}/statement", headers=actors.operator.headers),
            400,
            "validation_error",
        )
        assert err["errors"] == [{"field": "period", "message": "required query parameter is missing"}]

    @pytest.mark.parametrize(
        ("url", "body", "pattern"),
        [
            ("/v1/orgs/{org}/statement?period=2026", None, r"^\d{4}-\d{2}$"),
            ("/v1/orgs", {**GOOD, "slug": "Not A Slug"}, r"^[a-z0-9]+(?:-[a-z0-9]+)*$"),
            ("/v1/orgs", {**GOOD, "jurisdiction": "cn"}, r"^[A-Z]{2}$"),
        ],
    )
    async def test_a_pattern_is_shown_as_written(self, client, actors: Actors, url, body, pattern) -> None:
        url = url.format(org=actors.operator.org_id)
        headers = actors.operator.headers
        response = await (client.post(url, json=body, headers=headers) if body else client.get(url, headers=headers))
        err = problem(response, 400, "validation_error")
        assert err["errors"][0]["message"] == f"Expected `str` matching regex `{pattern}`"
        assert pattern in err["detail"]

    @pytest.mark.parametrize(
        ("path", "body", "field"),
        [
            ("/v1/orgs", {**GOOD, "name": "Ruijin\x00Hospital"}, "name"),
            ("/v1/orgs/{org}/members", {"email": "a\x00@b.cn", "name": "A", "roles": ["curator"]}, "email"),
            ("/v1/orgs/{org}/members", {"email": "a@b.cn", "name": "\x00", "roles": ["curator"]}, "name"),
        ],
    )
    async def test_a_nul_character_is_refused_and_nothing_written(
        self, client, actors: Actors, sessions, path, body, field
    ) -> None:
        before = await counts(sessions)
        url = path.format(org=actors.operator.org_id)
        err = problem(await client.post(url, json=body, headers=actors.operator.headers), 400, "validation_error")
        assert [e["field"] for e in err["errors"]] == [field]
        assert await counts(sessions) == before

    async def test_unknown_path_and_method(self, client, actors: Actors) -> None:
        problem(await client.get("/v1/nothing-here", headers=actors.operator.headers), 404, "not_found")
        problem(await client.put("/v1/me", headers=actors.operator.headers), 405, "method_not_allowed")

    async def test_domain_errors_have_stable_codes(self, client, actors: Actors) -> None:
        expect(await client.post("/v1/orgs", json={**GOOD, "slug": "ruijin"}, headers=actors.operator.headers), 201)
        problem(
            await client.post("/v1/orgs", json={**GOOD, "slug": "ruijin"}, headers=actors.operator.headers),
            409,
            "slug_taken",
        )
        problem(
            await client.post("/v1/orgs", json={**GOOD, "kind": "operator"}, headers=actors.operator.headers),
            409,
            "operator_exists",
        )


class TestUnexpectedFailures:
    async def test_an_unexpected_exception_is_a_bare_500_with_a_request_id(self, client, actors, monkeypatch) -> None:
        from catalog.orgs.service import OrgService

        async def explode(self, *args, **kwargs):
            raise RuntimeError("secret internals")

        monkeypatch.setattr(OrgService, "me", explode)
        response = await client.get("/v1/me", headers={**actors.operator.headers, "X-Request-ID": "req-12345678"})
        err = problem(response, 500, "internal_error")
        assert err["request_id"] == "req-12345678" == response.headers["x-request-id"]
        assert "secret" not in response.text and "Traceback" not in response.text

"""Request intake, swept over every operation of the OpenAPI document: a NUL character in any path
parameter, query parameter or JSON string, an unknown query parameter, and JSON nested 1,000 deep
are each a 400 problem naming what is wrong — never a 500, on either database."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from catalog.intake import nul_field
from tests.support import Actors, problem

NUL_VALUE = "a\x00b"
DEEP = 1000


async def operations(client) -> list[tuple[str, str, dict[str, Any], dict[str, Any]]]:
    spec = (await client.get("/openapi.json")).json()
    found = []
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in ("get", "post", "put", "patch", "delete"):
                found.append((method.upper(), path, operation, spec))
    assert len(found) > 40  # the sweep reaches the whole surface, not a stray route
    return found


def parameters(operation: dict[str, Any], where: str) -> list[str]:
    return [p["name"] for p in operation.get("parameters", []) if p["in"] == where]


def filled(path: str, **values: str) -> str:
    """The path with each parameter set (``x`` unless given)."""
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), "x"), path)


def json_schema(operation: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any] | None:
    content = operation.get("requestBody", {}).get("content", {})
    return resolve(content["application/json"]["schema"], spec) if "application/json" in content else None


def resolve(schema: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def string_fields(schema: dict[str, Any], spec: dict[str, Any], path: tuple = (), depth: int = 0) -> Iterator[tuple]:
    """Every path to a string in documents of ``schema`` (arrays at index 0), each once."""
    if depth > 8:
        return
    schema = resolve(schema, spec)
    branches = schema.get("oneOf") or schema.get("anyOf")
    if branches:
        seen: set[tuple] = set()
        for branch in branches:
            for found in string_fields(branch, spec, path, depth + 1):
                if found not in seen:
                    seen.add(found)
                    yield found
        return
    kind = schema.get("type")
    if kind == "string" and path:
        yield path
    elif kind == "object":
        for name, sub in schema.get("properties", {}).items():
            yield from string_fields(sub, spec, (*path, name), depth + 1)
    elif kind == "array" and "items" in schema:
        yield from string_fields(schema["items"], spec, (*path, 0), depth + 1)


def document_with(path: tuple, value: Any) -> Any:
    for step in reversed(path):
        value = [value] if isinstance(step, int) else {step: value}
    return value


def named(body: dict[str, Any], field: str) -> None:
    assert [e["field"] for e in body["errors"]] == [field], body


@pytest.fixture(name="callers")
async def fx_callers(actors: Actors) -> list[Any]:
    """An admin of each kind of organisation: a body is read only after the route's role guard,
    so each route is sent by the first of them its guard lets through."""
    return [actors.operator, await actors.org("provider"), await actors.org("consumer")]


async def send(client, callers: list[Any], method: str, url: str, headers: dict | None = None, **kw: Any) -> Any:
    for caller in callers:
        response = await client.request(method, url, headers={**(headers or {}), **caller.headers}, **kw)
        if response.status_code != 403:
            return response
    return response


class TestNulCharacters:
    async def test_in_any_path_parameter(self, client, actors: Actors) -> None:
        probed = 0
        for method, path, operation, _ in await operations(client):
            for name in parameters(operation, "path"):
                url = filled(path, **{name: "a%00b"})
                response = await client.request(method, url, headers=actors.operator.headers)
                named(problem(response, 400, "validation_error"), name)
                probed += 1
        assert probed > 40

    async def test_in_any_query_parameter(self, client, actors: Actors) -> None:
        probed = 0
        for method, path, operation, _ in await operations(client):
            for name in parameters(operation, "query"):
                url = f"{filled(path)}?{name}=a%00b"
                response = await client.request(method, url, headers=actors.operator.headers)
                named(problem(response, 400, "validation_error"), name)
                probed += 1
        assert probed > 30

    async def test_in_any_json_string(self, client, callers) -> None:
        probed = 0
        for method, path, operation, spec in await operations(client):
            schema = json_schema(operation, spec)
            for field in string_fields(schema, spec) if schema else ():
                body = document_with(field, NUL_VALUE)
                response = await send(client, callers, method, filled(path), json=body)
                named(problem(response, 400, "validation_error"), ".".join(map(str, field)))
                probed += 1
        assert probed > 100

    async def test_in_a_json_key(self, client, actors: Actors) -> None:
        response = await client.post(
            "/v1/orgs", json={"name": "Ruijin", "kind\x00": "provider"}, headers=actors.operator.headers
        )
        named(problem(response, 400, "validation_error"), "body")

    async def test_only_a_decoded_nul_is_refused_not_the_text_of_its_escape(self, client, actors: Actors) -> None:
        org = {"kind": "provider", "jurisdiction": "CN", "org_type": "hospital", "for_profit": False}
        refused = await client.post("/v1/orgs", json={**org, "name": "C:\x00"}, headers=actors.operator.headers)
        named(problem(refused, 400, "validation_error"), "name")
        # sent as JSON "C:\\u0000": an escaped backslash, then the letters u0000 — text, not a NUL
        created = await client.post("/v1/orgs", json={**org, "name": "C:\\u0000"}, headers=actors.operator.headers)
        assert created.status_code == 201, created.text
        assert created.json()["name"] == "C:\\u0000"


class TestUnknownQueryParameters:
    async def test_every_route_refuses_one_it_does_not_take(self, client, actors: Actors) -> None:
        for method, path, operation, _ in await operations(client):
            response = await client.request(method, f"{filled(path)}?limt=10", headers=actors.operator.headers)
            err = problem(response, 400, "validation_error")
            named(err, "limt")
            takes = sorted(parameters(operation, "query"))
            assert err["errors"][0]["message"].endswith(f"(it takes: {', '.join(takes) or 'none'})"), (path, err)
        listed = await client.get("/v1/orgs?limit=5&kind=provider", headers=actors.operator.headers)
        assert listed.status_code == 200, listed.text  # the ones it takes, its own and its dependencies', pass


class TestDeepJson:
    async def test_nested_1000_deep_on_every_json_route(self, client, callers) -> None:
        deep = ("[" * DEEP + "]" * DEEP).encode()
        probed = 0
        for method, path, operation, spec in await operations(client):
            if json_schema(operation, spec) is None:
                continue
            headers = {"Content-Type": "application/json"}
            response = await send(client, callers, method, filled(path), content=deep, headers=headers)
            problem(response, 400, "malformed_json")
            probed += 1
        assert probed > 30


def test_nul_field_walks_any_depth_and_names_the_path() -> None:
    deep: Any = "x\x00"
    for _ in range(5000):
        deep = [deep]
    assert nul_field(deep) == ".".join(["0"] * 5000)
    assert nul_field({"events": [{"key": "ok"}, {"key": "n\x00"}]}) == "events.1.key"
    assert nul_field({"events": [{"key": "ok"}]}) is None

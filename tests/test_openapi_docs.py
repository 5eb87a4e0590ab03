"""Every operation in the OpenAPI document has a description and every request body an example —
and every example is a body its route accepts: it decodes into the route's ``data`` struct with
msgspec, as the server decodes it, and it validates against the body's schema in the document."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import jsonschema_rs  # schemathesis' own validator, installed with it
import msgspec
import pytest
from litestar import Litestar
from litestar.routes import HTTPRoute

from catalog.app import create_app
from tests.conftest import make_settings

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


@pytest.fixture(name="docs_app", scope="module")
def fx_docs_app(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Litestar:
    """The document does not depend on the database: one app for the module, never started."""
    tmp = tmp_path_factory.mktemp("openapi_docs")
    shutil.copy(sqlite_template, tmp / "lode.db")
    return create_app(make_settings(tmp, f"sqlite+aiosqlite:///{tmp / 'lode.db'}"), run_worker=False)


@pytest.fixture(name="spec", scope="module")
def fx_spec(docs_app: Litestar) -> dict[str, Any]:
    return docs_app.openapi_schema.to_schema()


def operations(spec: dict[str, Any]) -> list[dict[str, Any]]:
    found = [op for item in spec["paths"].values() for method, op in item.items() if method in METHODS]
    assert len(found) > 40  # the whole surface, not a stray route
    return found


def body_structs(app: Litestar) -> dict[str, type]:
    """operationId → the type the route decodes its body into (its ``data`` parameter)."""
    found: dict[str, type] = {}
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            data = handler.parsed_fn_signature.parameters.get("data")
            if data is not None and handler.resolve_include_in_schema():
                assert isinstance(handler.operation_id, str), handler
                found[handler.operation_id] = data.annotation
    return found


def examples_of(op: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """(media type, example name, value) of every example of the operation's request body."""
    found = []
    for media_type, media in op["requestBody"]["content"].items():
        if "example" in media:
            found.append((media_type, "example", media["example"]))
        for name, example in (media.get("examples") or {}).items():
            found.append((media_type, name, example["value"]))
    return found


def test_every_operation_has_a_description(spec) -> None:
    missing = [
        op["operationId"]
        for op in operations(spec)
        if not (op.get("description") or "").strip() or op.get("description") == op.get("summary")
    ]
    assert not missing, f"operations without a description of their own: {missing}"


def test_every_request_body_has_an_example_in_each_media_type(spec) -> None:
    missing = []
    for op in operations(spec):
        for media_type, media in op.get("requestBody", {}).get("content", {}).items():
            if "example" not in media and not media.get("examples"):
                missing.append(f"{op['operationId']} {media_type}")
    assert not missing, f"request bodies without an example: {missing}"


def test_every_named_example_says_what_it_shows(spec) -> None:
    for op in operations(spec):
        for media in op.get("requestBody", {}).get("content", {}).values():
            for name, example in (media.get("examples") or {}).items():
                assert example.get("summary"), (op["operationId"], name)


def test_each_body_is_the_data_of_its_route(spec, docs_app) -> None:
    """The operations with a request body are exactly the routes taking ``data``."""
    with_body = {op["operationId"] for op in operations(spec) if "requestBody" in op}
    assert with_body == set(body_structs(docs_app))


def test_every_example_decodes_into_its_body_struct(spec, docs_app) -> None:
    structs = body_structs(docs_app)
    checked = 0
    for op in operations(spec):
        if "requestBody" not in op:
            continue
        target = structs[op["operationId"]]
        for media_type, name, value in examples_of(op):
            assert media_type == "application/json", (op["operationId"], media_type)
            try:
                msgspec.json.decode(json.dumps(value), type=target)
            except msgspec.ValidationError as exc:
                pytest.fail(f"{op['operationId']} example {name!r} is not a valid {target.__name__}: {exc}")
            checked += 1
    assert checked >= len(structs)


def test_every_example_validates_against_the_documented_schema(spec) -> None:
    failures = []
    for op in operations(spec):
        if "requestBody" not in op:
            continue
        for media_type, name, value in examples_of(op):
            schema = op["requestBody"]["content"][media_type]["schema"]
            validator = jsonschema_rs.Draft202012Validator({**schema, "components": spec["components"]})
            failures += [f"{op['operationId']} {name}: {e.message}" for e in validator.iter_errors(value)]
    assert not failures, "\n".join(failures)

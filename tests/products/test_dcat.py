"""The DCAT-AP export parses as RDF with one dcat:Dataset per listed product."""

from __future__ import annotations

import json

import pytest
import rdflib
from rdflib.namespace import DCAT, DCTERMS, RDF

from tests.support import expect

pytestmark = pytest.mark.asyncio


async def test_catalog_jsonld_parses_with_one_dataset_per_listed_product(client, actors, catalogue) -> None:
    owner = await actors.org("provider")
    listed = [await catalogue.listed(owner), await catalogue.listed(owner, grade="L1", title="Open lab panel")]
    await catalogue.draft(owner)  # drafts stay out
    response = await client.get("/v1/catalog.jsonld")
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/ld+json")
    graph = rdflib.Graph().parse(data=json.dumps(response.json()), format="json-ld")
    datasets = set(graph.subjects(RDF.type, DCAT.Dataset))
    assert {str(d).rsplit("/", 1)[1] for d in datasets} == {p["id"] for p in listed}
    catalogs = list(graph.subjects(RDF.type, DCAT.Catalog))
    assert len(catalogs) == 1 and set(graph.objects(catalogs[0], DCAT.dataset)) == datasets
    first = next(d for d in datasets if str(d).endswith(listed[0]["id"]))
    titles = {t.language: str(t) for t in graph.objects(first, DCTERMS.title)}
    assert titles  # language-tagged where known
    assert (first, DCTERMS.accessRights, None) in graph
    assert any("E11" in str(t) for t in graph.objects(first, DCAT.theme))
    expect(await client.get("/v1/catalog.jsonld"), 200)

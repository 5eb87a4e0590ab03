"""DCAT-AP (with HealthDCAT-AP where it fits) JSON-LD of the listed products.

A ``dcat:Catalog`` whose datasets carry language-tagged titles and descriptions, keywords, the
publisher, temporal and spatial coverage, ICD-10 themes, access rights derived from the grade, the
current terms as an ``odrl:Policy`` over DUO terms, and one distribution per published table —
described (format, rows) but never linked to the data itself: access goes through a licence.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from catalog import policy
from catalog.products import repository as repo
from catalog.products.models import Product
from catalog.products.terms import DUO, LOCAL

CONTEXT = {
    "dcat": "http://www.w3.org/ns/dcat#",
    "dct": "http://purl.org/dc/terms/",
    "foaf": "http://xmlns.com/foaf/0.1/",
    "odrl": "http://www.w3.org/ns/odrl/2/",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
    "skos": "http://www.w3.org/2004/02/skos/core#",
    "healthdcatap": "http://healthdataportal.eu/ns/health#",
    "lode": "urn:lode:vocab:",
}
ACCESS_RIGHTS = "http://publications.europa.eu/resource/authority/access-right/"
FREQUENCY = "http://publications.europa.eu/resource/authority/frequency/"
FREQUENCIES = {
    "once": "NEVER",
    "daily": "DAILY",
    "weekly": "WEEKLY",
    "monthly": "MONTHLY",
    "quarterly": "QUARTERLY",
    "yearly": "ANNUAL",
    "irregular": "IRREG",
}
_CJK = re.compile(r"[\u3400-\u9fff]")


async def catalog(session: AsyncSession, base_url: str) -> dict[str, Any]:
    products = await repo.listed(session)
    ids = [p.id for p in products]
    owners = await repo.orgs(session, list({p.owner_org_id for p in products}))
    terms = await repo.current_terms_of(session, ids)  # a handful of queries, however many products
    releases = await repo.published_releases_of(session, ids)
    datasets = [_dataset(p, owners.get(p.owner_org_id), terms.get(p.id), releases[p.id], base_url) for p in products]
    return {
        "@context": CONTEXT,
        "@id": f"{base_url}/v1/catalog.jsonld",
        "@type": "dcat:Catalog",
        "dct:title": [
            {"@value": "Lode health-data product exchange", "@language": "en"},
            {"@value": "Lode 健康医疗数据产品交易目录", "@language": "zh"},
        ],
        "dct:description": {
            "@value": "Graded health-data products licensed under compliant circulation.",
            "@language": "en",
        },
        "foaf:homepage": {"@id": base_url},
        "dcat:dataset": datasets,
        "lode:datasetCount": len(ids),
    }


def _dataset(product: Product, owner: Any, terms: Any, releases: list[Any], base: str) -> dict[str, Any]:
    uri = f"{base}/v1/products/{product.id}"
    grade = policy.rule(product.grade)
    entry: dict[str, Any] = {
        "@id": uri,
        "@type": "dcat:Dataset",
        "dct:identifier": product.id,
        "dct:title": _texts(product.title, product.i18n, "title"),
        "dct:description": _texts(
            product.summary + ("\n\n" + product.description if product.description else ""), product.i18n, "summary"
        ),
        "dcat:keyword": [_tagged(k) for k in product.keywords],
        "dct:publisher": {
            "@id": f"{base}/v1/orgs/{product.owner_org_id}",
            "@type": "foaf:Agent",
            "foaf:name": owner.name if owner else product.owner_org_id,
        },
        "dcat:theme": [{"@id": f"http://id.who.int/icd/release/10/{code}"} for code in product.therapeutic_areas],
        "dct:accessRights": {
            "@id": ACCESS_RIGHTS + grade.access_rights,
            "skos:prefLabel": f"{product.grade} {grade.name}",
        },
        "dct:conformsTo": [{"@id": f"urn:lode:standard:{s}"} for s in product.standards],
        "dct:spatial": [{"@type": "dct:Location", "dct:identifier": region} for region in product.spatial_coverage],
        "lode:grade": product.grade,
        "lode:deliveryModes": sorted(grade.modes),
        "dct:modified": {"@value": product.updated_at.isoformat(), "@type": "xsd:dateTime"},
    }
    if product.temporal_coverage:
        entry["dct:temporal"] = {
            "@type": "dct:PeriodOfTime",
            "dcat:startDate": {"@value": product.temporal_coverage["start"], "@type": "xsd:date"},
            "dcat:endDate": {"@value": product.temporal_coverage["end"], "@type": "xsd:date"},
        }
    if product.update_frequency:
        entry["dct:accrualPeriodicity"] = {"@id": FREQUENCY + FREQUENCIES[product.update_frequency]}
    if product.population_size is not None:
        entry["healthdcatap:numberOfUniqueIndividuals"] = product.population_size
    if product.record_count is not None:
        entry["healthdcatap:numberOfRecords"] = product.record_count
    if terms is not None:
        entry["odrl:hasPolicy"] = _policy(terms, uri)
    entry["dcat:distribution"] = [
        {
            "@id": f"{uri}/releases/{release.version}#{table}",
            "@type": "dcat:Distribution",
            "dct:title": f"{table} (release {release.version})",
            "dct:format": {"@id": "http://publications.europa.eu/resource/authority/file-type/PARQUET"},
            "dcat:accessURL": {"@id": uri},
            "dct:accessRights": entry["dct:accessRights"],
            "healthdcatap:numberOfRecords": facts.get("rows"),
            "lode:release": release.version,
        }
        for release in releases
        for table, facts in (release.tables or {}).items()
    ]
    return entry


def _policy(terms: Any, target: str) -> dict[str, Any]:
    """The terms as ODRL: DUO permissions as permitted purposes, the rest as duties or prohibitions."""
    return {
        "@id": f"{target}/terms?version={terms.version}",
        "@type": "odrl:Policy",
        "odrl:uid": terms.terms_sha256,
        "odrl:permission": [
            {
                "odrl:target": {"@id": target},
                "odrl:action": {"@id": "odrl:use"},
                "odrl:constraint": [
                    {
                        "odrl:leftOperand": {"@id": "odrl:purpose"},
                        "odrl:operator": {"@id": "odrl:eq"},
                        "odrl:rightOperand": {
                            "@id": "http://purl.obolibrary.org/obo/" + DUO[c["code"]][0].replace(":", "_")
                        },
                        "skos:prefLabel": f"{c['code']}: {DUO[c['code']][1]}",
                        **({"lode:params": str(c["params"])} if c.get("params") else {}),
                    }
                    for c in terms.use_conditions
                ],
            }
        ],
        "odrl:prohibition": [
            {"odrl:target": {"@id": target}, "odrl:action": {"@id": f"lode:{code}"}, "skos:prefLabel": LOCAL[code]}
            for code in terms.local_conditions
        ],
    }


def _texts(default: str, i18n: dict[str, Any] | None, key: str) -> list[dict[str, Any]] | dict[str, Any]:
    tagged = [{"@value": v[key], "@language": lang} for lang, v in (i18n or {}).items() if v.get(key)]
    return tagged or _tagged(default)


def _tagged(text: str) -> dict[str, Any]:
    return {"@value": text, "@language": "zh" if _CJK.search(text) else "en"}

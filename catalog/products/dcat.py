"""DCAT-AP 3.0.0 (with HealthDCAT-AP where it fits) JSON-LD of the listed products.

A ``dcat:Catalog`` published by the operator, whose datasets carry language-tagged titles and
descriptions, keywords, the publisher and a contact point, temporal and spatial coverage, ICD-10
themes, access rights derived from the grade, the current terms as an ``odrl:Policy`` over DUO
terms, and one distribution per published table — described (format, rows, licence) but never
linked to the data itself: access goes through a licence.

The document must validate against the official DCAT-AP 3.0.0 SHACL shapes *and* range shapes
with no background graph (tests/products/test_dcat.py), so every node that stands for a
controlled-vocabulary value (frequency, access rights, theme, licence, language, format, media
type, standard, location, period) states its own ``@type``: a consumer that does not fetch the EU
vocabularies still sees what each value is.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from catalog import policy
from catalog.products import quality
from catalog.products import repository as repo
from catalog.products.models import Product
from catalog.products.terms import DUO, LOCAL

CONTEXT = {
    "dcat": "http://www.w3.org/ns/dcat#",
    "dct": "http://purl.org/dc/terms/",
    "foaf": "http://xmlns.com/foaf/0.1/",
    "odrl": "http://www.w3.org/ns/odrl/2/",
    "rdfs": "http://www.w3.org/2000/01/rdf-schema#",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
    "skos": "http://www.w3.org/2004/02/skos/core#",
    "vcard": "http://www.w3.org/2006/vcard/ns#",
    "healthdcatap": "http://healthdataportal.eu/ns/health#",
    "dqv": "http://www.w3.org/ns/dqv#",
    "lode": "urn:lode:vocab:",
}
EU = "http://publications.europa.eu/resource/authority/"
ACCESS_RIGHTS = EU + "access-right/"
FREQUENCY = EU + "frequency/"
FREQUENCIES = {
    "once": "NEVER",
    "daily": "DAILY",
    "weekly": "WEEKLY",
    "monthly": "MONTHLY",
    "quarterly": "QUARTERLY",
    "yearly": "ANNUAL",
    "irregular": "IRREG",
}
LANGUAGES = {"zh": "ZHO", "en": "ENG"}  # BCP 47 tag → EU language authority code
STANDARDS = {
    "omop_cdm_5.4": "OMOP Common Data Model 5.4",
    "fhir_r4": "HL7 FHIR R4",
    "cdisc_sdtm": "CDISC SDTM",
    "hl7_v2": "HL7 Version 2",
    "dicom": "DICOM",
    "icd10": "ICD-10",
    "loinc": "LOINC",
    "other": "Another standard",
}
ICD10 = "http://id.who.int/icd/release/10"
PARQUET = {"@id": EU + "file-type/PARQUET", "@type": "dct:MediaTypeOrExtent", "rdfs:label": "Parquet"}
PARQUET_MEDIA_TYPE = {
    "@id": "https://www.iana.org/assignments/media-types/application/vnd.apache.parquet",
    "@type": "dct:MediaType",
    "rdfs:label": "application/vnd.apache.parquet",
}
_CJK = re.compile(r"[\u3400-\u9fff]")


async def catalog(session: AsyncSession, base_url: str) -> dict[str, Any]:
    products = await repo.listed(session)
    ids = [p.id for p in products]
    owners = await repo.orgs(session, list({p.owner_org_id for p in products}))
    operator = await repo.operator_org(session)
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
        # Without an operator yet (a fresh install) the catalogue still names who runs it.
        "dct:publisher": _agent(base_url, operator.id, operator.name) if operator else _lode(base_url),
        "dct:language": [_language(tag) for tag in LANGUAGES],
        "foaf:homepage": {"@id": base_url, "@type": "foaf:Document"},
        "dcat:themeTaxonomy": _icd10_scheme(),
        "dcat:dataset": datasets,
        "lode:datasetCount": len(ids),
        "lode:qualityMetric": [_metric(base_url, category) for category in quality.CATEGORIES],
    }


def _dataset(product: Product, owner: Any, terms: Any, releases: list[Any], base: str) -> dict[str, Any]:
    uri = f"{base}/v1/products/{product.id}"
    grade = policy.rule(product.grade)
    owner_name = owner.name if owner else product.owner_org_id
    access_rights = {
        "@id": ACCESS_RIGHTS + grade.access_rights,
        "@type": "dct:RightsStatement",
        "rdfs:label": f"{product.grade} {grade.name}",
    }
    entry: dict[str, Any] = {
        "@id": uri,
        "@type": "dcat:Dataset",
        "dct:identifier": product.id,
        "dct:title": _texts(product.title, product.i18n, "title"),
        "dct:description": _texts(
            product.summary + ("\n\n" + product.description if product.description else ""), product.i18n, "summary"
        ),
        "dcat:keyword": [_tagged(k) for k in product.keywords],
        "dct:language": [_language(tag) for tag in _languages(product)],
        "dct:publisher": _agent(base, product.owner_org_id, owner_name),
        "dcat:contactPoint": {
            "@id": f"{base}/v1/orgs/{product.owner_org_id}#contact",
            "@type": ["vcard:Organization", "vcard:Kind"],
            "vcard:fn": owner_name,
            "vcard:hasURL": {"@id": uri},
        },
        "dcat:theme": [_icd10(code) for code in product.therapeutic_areas],
        "dct:accessRights": access_rights,
        "dct:conformsTo": [
            {"@id": f"urn:lode:standard:{s}", "@type": "dct:Standard", "rdfs:label": STANDARDS[s]}
            for s in product.standards
        ],
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
        entry["dct:accrualPeriodicity"] = {
            "@id": FREQUENCY + FREQUENCIES[product.update_frequency],
            "@type": "dct:Frequency",
            "rdfs:label": product.update_frequency,
        }
    if product.population_size is not None:
        entry["healthdcatap:numberOfUniqueIndividuals"] = product.population_size
    if product.record_count is not None:
        entry["healthdcatap:numberOfRecords"] = product.record_count
    licence = None
    if terms is not None:
        entry["odrl:hasPolicy"] = _policy(terms, uri)
        licence = {  # the same terms document as the policy, seen as the distributions' licence
            "@id": f"{uri}/terms?version={terms.version}",
            "@type": "dct:LicenseDocument",
            "rdfs:label": f"Lode terms v{terms.version} (sha256 {terms.terms_sha256})",
        }
    entry["dcat:distribution"] = [
        {
            "@id": f"{uri}/releases/{release.version}#{table}",
            "@type": "dcat:Distribution",
            "dct:title": f"{table} (release {release.version})",
            "dct:format": PARQUET,
            "dcat:mediaType": PARQUET_MEDIA_TYPE,
            "dcat:accessURL": {"@id": uri},
            "dct:rights": access_rights,
            **({"dct:license": licence} if licence else {}),
            "healthdcatap:numberOfRecords": facts.get("rows"),
            "lode:release": release.version,
            **_measurements(base, f"{uri}/releases/{release.version}#{table}", release.quality, table, grade.k),
        }
        for release in releases
        for table, facts in (release.tables or {}).items()
    ]
    return entry


# W3C DQV: each published table's measured quality, one dqv:QualityMeasurement per category, of
# metrics the catalogue defines once (lode:qualityMetric) in the dimensions of Kahn et al.
DIMENSIONS = {
    "conformance": "Values agree with the data dictionary and the code standards its columns declare.",
    "completeness": "Values, persons and months of the declared period are present.",
    "plausibility": "Values are believable: no future dates or dates before birth, duplicates, or crowded persons.",
}


def _metric(base: str, category: str) -> dict[str, Any]:
    return {
        "@id": f"{base}/v1/quality/metrics/{category}",
        "@type": "dqv:Metric",
        "skos:prefLabel": {"@value": f"{category} score", "@language": "en"},
        "skos:definition": {
            "@value": f"The mean fraction of a table's {category} checks that its rows or persons pass (0–1).",
            "@language": "en",
        },
        "dqv:expectedDataType": {"@id": "http://www.w3.org/2001/XMLSchema#double"},
        "dqv:inDimension": {
            "@id": f"{base}/v1/quality/dimensions/{category}",
            "@type": "dqv:Dimension",
            "skos:prefLabel": {"@value": category, "@language": "en"},
            "skos:definition": {"@value": DIMENSIONS[category], "@language": "en"},
        },
    }


def _measurements(base: str, distribution: str, report: dict[str, Any] | None, table: str, k: int) -> dict[str, Any]:
    body = (report or {}).get("tables", {}).get(table)
    if not body:
        return {}
    return {
        "dqv:hasQualityMeasurement": [
            {
                "@type": "dqv:QualityMeasurement",
                "dqv:isMeasurementOf": {"@id": f"{base}/v1/quality/metrics/{category}"},
                "dqv:computedOn": {"@id": distribution},
                "dqv:value": {"@value": score, "@type": "xsd:double"},
            }
            for category, score in quality.table_scores(body["checks"], k).items()
        ]
    }


def _agent(base: str, org_id: str, name: str) -> dict[str, Any]:
    return {"@id": f"{base}/v1/orgs/{org_id}", "@type": "foaf:Agent", "foaf:name": name}


def _lode(base: str) -> dict[str, Any]:
    return {"@id": f"{base}#operator", "@type": "foaf:Agent", "foaf:name": "Lode"}


def _language(tag: str) -> dict[str, Any]:
    return {"@id": EU + "language/" + LANGUAGES[tag], "@type": "dct:LinguisticSystem", "rdfs:label": tag}


def _languages(product: Product) -> list[str]:
    """The languages the product is described in: its translations, else what its title is written in."""
    tags = [tag for tag in (product.i18n or {}) if tag in LANGUAGES]
    return tags or [_tagged(product.title)["@language"]]


def _icd10_scheme() -> dict[str, Any]:
    return {"@id": ICD10, "@type": "skos:ConceptScheme", "dct:title": {"@value": "ICD-10", "@language": "en"}}


def _icd10(code: str) -> dict[str, Any]:
    return {
        "@id": f"{ICD10}/{code}",
        "@type": "skos:Concept",
        "skos:prefLabel": {"@value": f"ICD-10 {code}", "@language": "en"},
        "skos:notation": code,
        "skos:inScheme": _icd10_scheme(),
    }


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

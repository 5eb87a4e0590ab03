"""Use conditions: GA4GH Data Use Ontology codes, Lode's local codes, and the terms hash.

DUO terms (id, shorthand, label) are from the public EBISPOT/DUO repository, CC BY 4.0. Codes
that DUO parameterises carry their parameters here (DS diseases, GS regions, TS months, MOR a
date, IS/US/PS ids); any other code refuses parameters, and unknown codes are refused.

A terms version is identified by SHA-256 over the RFC 8785 canonical JSON of its normalised
content — what a licence pins and what a consumer must echo back to accept it.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

from catalog import jcs
from catalog.errors import FieldError, ValidationFailed
from catalog.products.offer_schemas import TermsPut, UseCondition

DUO = {
    "NRES": ("DUO:0000004", "no restriction"),
    "GRU": ("DUO:0000042", "general research use"),
    "HMB": ("DUO:0000006", "health or medical or biomedical research"),
    "DS": ("DUO:0000007", "disease specific research"),
    "POA": ("DUO:0000011", "population origins or ancestry research only"),
    "RS": ("DUO:0000012", "research specific restrictions"),
    "NMDS": ("DUO:0000015", "no general methods research"),
    "GSO": ("DUO:0000016", "genetic studies only"),
    "NPUNCU": ("DUO:0000018", "not for profit, non commercial use only"),
    "PUB": ("DUO:0000019", "publication required"),
    "COL": ("DUO:0000020", "collaboration required"),
    "IRB": ("DUO:0000021", "ethics approval required"),
    "GS": ("DUO:0000022", "geographical restriction"),
    "MOR": ("DUO:0000024", "publication moratorium"),
    "TS": ("DUO:0000025", "time limit on use"),
    "US": ("DUO:0000026", "user specific restriction"),
    "PS": ("DUO:0000027", "project specific restriction"),
    "IS": ("DUO:0000028", "institution specific restriction"),
    "RTN": ("DUO:0000029", "return to database or resource"),
    "CC": ("DUO:0000043", "clinical care use"),
    "NPOA": ("DUO:0000044", "population origins or ancestry research prohibited"),
    "NPU": ("DUO:0000045", "not for profit organisation use only"),
    "NCU": ("DUO:0000046", "non-commercial use only"),
}
PERMISSIONS = frozenset({"NRES", "GRU", "HMB", "DS", "POA"})  # what research a product may be used for
PARAMETER_OF = {"DS": "diseases", "GS": "regions", "TS": "months", "MOR": "date", "IS": "ids", "US": "ids", "PS": "ids"}
LOCAL = {
    "no_linkage": "the data may not be linked with other data about the same persons",
    "no_cross_border": "no processing outside the product's jurisdiction, whatever the grade",
    "enclave_only": "usable only inside Lode: no downloads and no row-level queries",
    "genetic_resources": "human genetic resources: organisations outside the jurisdiction are refused",
}
MODES_REMOVED_BY = {"enclave_only": frozenset({"download", "rows"})}


def normalise(data: TermsPut) -> dict[str, Any]:
    """Validate the codes and return the canonical content (sorted, explicit params)."""
    errors: list[FieldError] = []
    conditions: dict[str, dict[str, Any]] = {}
    for i, item in enumerate(data.use_conditions):
        condition = UseCondition(code=item) if isinstance(item, str) else item
        code = condition.code.upper()
        field = f"use_conditions.{i}"
        if code not in DUO:
            errors.append(FieldError(f"{field}.code", f"{condition.code!r} is not a DUO code"))
            continue
        if code in conditions:
            errors.append(FieldError(f"{field}.code", f"{code} is listed twice"))
            continue
        given = {k: v for k, v in msgspec.to_builtins(condition.params or {}).items() if v is not None}
        wanted = PARAMETER_OF.get(code)
        if wanted is None and given:
            errors.append(FieldError(f"{field}.params", f"{code} takes no parameters"))
        elif wanted is not None and set(given) != {wanted}:
            errors.append(FieldError(f"{field}.params", f"{code} takes exactly the parameter {wanted!r}"))
        conditions[code] = given
    if conditions and not PERMISSIONS & set(conditions):
        errors.append(FieldError("use_conditions", f"name what the data may be used for: one of {sorted(PERMISSIONS)}"))
    if errors:
        raise ValidationFailed.of(errors)
    return {
        "use_conditions": [{"code": code, "params": _sorted_params(conditions[code])} for code in sorted(conditions)],
        "local_conditions": sorted(set(data.local_conditions)),
        "max_term_months": data.max_term_months,
        "clauses": data.clauses,
    }


def _sorted_params(params: dict[str, Any]) -> dict[str, Any] | None:
    if not params:
        return None
    return {k: sorted(set(v)) if isinstance(v, list) else v for k, v in params.items()}


def terms_hash(content: dict[str, Any]) -> str:
    return hashlib.sha256(jcs.dumps(content)).hexdigest()


def removed_modes(local_conditions: list[str]) -> set[str]:
    removed: set[str] = set()
    for code in local_conditions:
        removed |= MODES_REMOVED_BY.get(code, frozenset())
    return removed


def condition(use_conditions: list[dict[str, Any]], code: str) -> dict[str, Any] | None:
    """The condition with this code, if the terms carry it (with its params or {})."""
    for item in use_conditions:
        if item["code"] == code:
            return item.get("params") or {}
    return None

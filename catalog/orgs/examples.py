"""Example request bodies of the identity and tenancy API, by operation (``catalog/openapi.py``)."""

from __future__ import annotations

from litestar.openapi.spec import Example

PROVIDER_ORG = "org_01M95JFS7JR58K9FEBB5M23Z5C"
ANALYST = "usr_01M95JFS82W3TQ87H4DWSVDSHZ"

CREATE_ORG = {
    "provider": Example(
        summary="A hospital that provides data",
        value={
            "name": "Ruijin Hospital",
            "kind": "provider",
            "jurisdiction": "CN",
            "org_type": "hospital",
            "for_profit": False,
            "slug": "ruijin-hospital",
        },
    ),
    "consumer": Example(
        summary="A pharmaceutical company that licenses data",
        value={
            "name": "Huadong Pharma",
            "kind": "consumer",
            "jurisdiction": "CN",
            "org_type": "pharma",
            "for_profit": True,
        },
    ),
}

VERIFY_ORG = {
    "verified": Example(
        summary="Verify",
        value={"status": "verified", "note": "Business licence and data-protection officer checked."},
    ),
    "rejected": Example(
        summary="Reject",
        value={"status": "rejected", "note": "The registration number does not match the business licence."},
    ),
}

ADD_MEMBER = {
    "analyst": Example(
        summary="An analyst of a consumer",
        value={"email": "li.na@huadong-pharma.example", "name": "Li Na", "roles": ["analyst"]},
    ),
}

UPDATE_MEMBER = {
    "roles": Example(summary="Change the roles", value={"roles": ["buyer", "analyst"]}),
}

ISSUE_API_KEY = {
    "key": Example(summary="A key for a member", value={"user_id": ANALYST, "name": "Notebook on the analysis server"}),
}

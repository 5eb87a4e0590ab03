"""Example request bodies of the circulation API, by operation (``catalog/openapi.py``). The
application is API.md's example."""

from __future__ import annotations

from litestar.openapi.spec import Example

PRODUCT = "prd_01M95JFS85FAP0QF4Z3B2GB4TP"
PLAN = "pln_01M95JFS8892BZWTV86EDZEG6Q"
OTHER_PLAN = "pln_01M95JFS8BGSJH5DZ61BPZJ6V9"
ANALYST = "usr_01M95JFS82W3TQ87H4DWSVDSHZ"
CONSUMER = "org_01M95JFS7SET7NTQ4VZP4RMKZ9"
TERMS_SHA256 = "51d2361f4faea3bc8f9facdbc7d99abb555596a2e51f7b25fd3b41c93587e616"
ETHICS = {
    "committee": "Ruijin Hospital Ethics Committee",
    "reference": "2025-112",
    "approved_on": "2025-09-01",
    "expires_on": "2027-09-01",
    "document_sha256": "d62f4d28e8a6a7349d3fa897590391e4153cbe37c0fba243fa273828cda1ec09",
}

CREATE_APPLICATION = {
    "l3_study": Example(
        summary="A commercial study of SGLT2 inhibitors, with named analysts and ethics approval",
        value={
            "product_id": PRODUCT,
            "plan_id": PLAN,
            "purpose": {
                "category": "HMB",
                "commercial": True,
                "disease_codes": ["E11"],
                "description": "Real-world comparative effectiveness of SGLT2 inhibitors",
                "territory": "CN",
            },
            "project": {
                "title": "SGLT2i RWE study",
                "summary": "Compares HbA1c over 12 months between SGLT2 inhibitors and DPP-4 inhibitors.",
                "public_summary": "A study of diabetes treatments",
                "reference": "HD-RWE-2025-07",
            },
            "analysts": [ANALYST],
            "ethics_approval": ETHICS,
            "requested_start": "2027-01-01",
            "requested_months": 12,
        },
    ),
}

UPDATE_APPLICATION = {
    "plan_and_term": Example(
        summary="Another plan and a longer term",
        value={"plan_id": OTHER_PLAN, "requested_months": 24},
    ),
}

DECIDE_TRACK = {
    "approve": Example(summary="Approve", value={"decision": "approve", "comment": "Protocol and approval checked."}),
    "approve_with_conditions": Example(
        summary="Approve with conditions (copied onto the licence)",
        value={
            "decision": "approve_with_conditions",
            "comment": "Acceptable with a publication check.",
            "conditions": "Send any manuscript to the provider 30 days before submission.",
        },
    ),
    "return": Example(
        summary="Return for changes",
        value={"decision": "return", "comment": "Attach the ethics committee's approval letter."},
    ),
}

ACCEPT_LICENCE = {
    "accept": Example(summary="Echo the pinned terms' hash", value={"terms_sha256": TERMS_SHA256}),
}

SUSPEND_LICENCE = {
    "suspend": Example(summary="Hold", value={"reason": "Queries outside the approved purpose are under review."}),
}
REINSTATE_LICENCE = {
    "reinstate": Example(summary="Lift your hold", value={"reason": "Review closed: use was within the purpose."}),
}
REVOKE_LICENCE = {
    "revoke": Example(summary="Revoke", value={"reason": "Data were shared with a third party."}),
    "revoke_and_block": Example(
        summary="Revoke and block-list the consumer",
        value={"reason": "Data were shared with a third party.", "block_org": True},
    ),
}

RENEW_ETHICS_APPROVAL = {
    "renewed": Example(
        summary="A renewed approval",
        value={**ETHICS, "reference": "2025-112-R1", "approved_on": "2026-08-20", "expires_on": "2028-08-31"},
    ),
}

BLOCK_ORG = {
    "block": Example(summary="Block a consumer", value={"org_id": CONSUMER, "reason": "Breach of licence terms."}),
}

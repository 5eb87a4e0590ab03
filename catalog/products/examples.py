"""Example request bodies of the catalogue API, by operation (``catalog/openapi.py``): products,
releases, terms, plans and revenue shares. The product is API.md's example."""

from __future__ import annotations

from litestar.openapi.spec import Example

RUIJIN = "org_01M95JFS7JR58K9FEBB5M23Z5C"
ZHONGSHAN = "org_01M95JFS7P892564WJWXK20JXP"
CONSUMER = "org_01M95JFS7SET7NTQ4VZP4RMKZ9"

VISITS = {
    "table": "visits",
    "person_key": "person_id",
    "max_rows_per_person": 20,
    "description": "One row per outpatient or inpatient visit",
    "fields": [
        {"name": "person_id", "type": "string", "description": "pseudonymous id", "sensitive": True},
        {"name": "visit_date", "type": "date", "description": "date of the visit"},
        {"name": "age", "type": "integer", "description": "age at visit, years", "min": 0, "max": 120},
        {"name": "sex", "type": "string", "description": "sex", "categories": ["F", "M"]},
        {
            "name": "district",
            "type": "string",
            "description": "Shanghai district",
            "categories": ["Huangpu", "Xuhui", "Pudong", "Jing'an"],
        },
        {
            "name": "hba1c",
            "type": "number",
            "description": "HbA1c, %",
            "min": 3,
            "max": 20,
            "precision": 1,
            "code_system": "LOINC 4548-4",
        },
    ],
}

CREATE_PRODUCT = {
    "l3_cohort": Example(
        summary="An L3 EHR cohort from two hospitals",
        value={
            "title": "2型糖尿病患者电子病历队列 — Type 2 diabetes EHR cohort",
            "summary": "Longitudinal outpatient and inpatient records of adults with T2DM, 2018–2025.",
            "description": "De-identified EHR extract covering diagnoses, HbA1c and lipid panels, prescriptions.",
            "keywords": ["diabetes", "糖尿病", "HbA1c", "real-world data"],
            "data_types": ["ehr", "lab"],
            "therapeutic_areas": ["E11"],
            "standards": ["omop_cdm_5.4"],
            "grade": "L3",
            "legal_basis": "authorised_operation",
            "identified": False,
            "core_data": False,
            "jurisdiction": "CN",
            "population_size": 48210,
            "record_count": 1920400,
            "temporal_coverage": {"start": "2018-01-01", "end": "2025-06-30"},
            "spatial_coverage": ["CN-SH"],
            "update_frequency": "quarterly",
            "sources": [
                {"institution": "Ruijin Hospital", "org_id": RUIJIN, "system": "HIS", "share": 0.7},
                {"institution": "Zhongshan Hospital", "org_id": ZHONGSHAN, "system": "LIS", "share": 0.3},
            ],
            "quality": {"completeness": 0.96, "conformance": 0.99, "plausibility": 0.98, "assessed_on": "2025-07-15"},
            "dictionary": [VISITS],
        },
    ),
}

UPDATE_PRODUCT = {
    "descriptive": Example(
        summary="Descriptive fields (allowed once submitted)",
        value={
            "summary": "Longitudinal outpatient and inpatient records of adults with T2DM, 2018–2025 Q3.",
            "record_count": 1987512,
            "temporal_coverage": {"start": "2018-01-01", "end": "2025-09-30"},
            "i18n": {"zh": {"title": "2型糖尿病患者电子病历队列", "summary": "成人2型糖尿病患者的门诊与住院记录。"}},
        },
    ),
}

REVIEW_PRODUCT = {
    "list": Example(summary="List it", value={"decision": "list", "comment": "Dictionary and provenance checked."}),
    "return": Example(
        summary="Return it to the owner",
        value={"decision": "return", "comment": "Name the LIS system of the second source and its share."},
    ),
}

REGRADE_PRODUCT = {
    "stricter": Example(
        summary="Tighten to L4",
        value={"grade": "L4", "reason": "District and visit date together single out patients in small districts."},
    ),
}

SUSPEND_PRODUCT = {
    "suspend": Example(
        summary="Suspend", value={"reason": "A source hospital withdrew its authorisation pending review."}
    ),
}
REINSTATE_PRODUCT = {
    "reinstate": Example(summary="Reinstate", value={"reason": "The source hospital renewed its authorisation."}),
}
RETIRE_PRODUCT = {
    "retire": Example(summary="Retire", value={"reason": "Superseded by the 2018–2026 cohort."}),
}

CREATE_RELEASE = {
    "with_dictionary": Example(
        summary="A release with its own dictionary",
        value={"version": "2025.2", "notes": "Adds visits of 2025 Q2.", "dictionary": [VISITS]},
    ),
    "copy_dictionary": Example(
        summary="A release that copies the previous release's dictionary",
        value={"version": "2025.3", "notes": "Adds visits of 2025 Q3."},
    ),
}

WITHDRAW_RELEASE = {
    "withdraw": Example(summary="Withdraw", value={"reason": "Visit dates of one site were shifted by a year."}),
}

PUT_TERMS = {
    "terms": Example(
        summary="Health research on diabetes, with ethics approval, no linkage",
        value={
            "use_conditions": ["HMB", "IRB", {"code": "DS", "params": {"diseases": ["E11"]}}],
            "local_conditions": ["no_linkage"],
            "max_term_months": 24,
            "clauses": "The licensee publishes results only in aggregate and cites the source hospitals.",
        },
    ),
}

CREATE_PLAN = {
    "one_time": Example(
        summary="One-time fee for a year",
        value={
            "name": "Annual research licence",
            "kind": "one_time",
            "currency": "CNY",
            "amount": 5000000,
            "term_months": 12,
        },
    ),
    "free": Example(
        summary="Free trial with a cap",
        value={"name": "Trial", "kind": "free", "currency": "CNY", "caps": {"rows_returned": 10000}},
    ),
    "metered": Example(
        summary="Pay per use",
        value={
            "name": "Pay per use",
            "kind": "metered",
            "currency": "CNY",
            "unit_prices": {"rows_returned": 20},
            "units": {"rows_returned": 1000},
            "included": {"rows_returned": 100000},
            "caps": {"rows_returned": 5000000},
            "cap_period": "billing_period",
        },
    ),
}

UPDATE_PLAN = {
    "private": Example(
        summary="Rename and offer privately (allowed once licensed)",
        value={"name": "Annual research licence (partners)", "private_to": [CONSUMER]},
    ),
    "price": Example(summary="A new price (only before any licence)", value={"amount": 4500000}),
}

PUT_REVENUE_SHARE = {
    "two_providers": Example(
        summary="Operator 15 %, fund 5 %, the rest 70:30 between two hospitals",
        value={
            "operator_bps": 1500,
            "fund_bps": 500,
            "providers": [{"org_id": RUIJIN, "weight": 70}, {"org_id": ZHONGSHAN, "weight": 30}],
        },
    ),
}

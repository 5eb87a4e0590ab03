"""Demo products at grades L3 (contract + ethics), L4 (usable-not-visible) and L5 (restricted).

Same spec shape as ``catalog.demo.products_open``.
"""

from __future__ import annotations

from typing import Any

IRB_HMB = ["HMB", "IRB"]


def ds(*codes: str) -> dict[str, Any]:
    return {"code": "DS", "params": {"diseases": list(codes)}}


# Hand-laid data: related keys share a line.
# fmt: off
SPECS: list[dict[str, Any]] = [
    {
        "slug": "t2d-ehr-cohort", "owner": "ruijin", "population": 24_000,
        "rows": {"patients": 24_000, "visits": 180_000},
        "zh": ("2型糖尿病患者电子病历队列", "2018–2025年成人2型糖尿病患者门诊与住院纵向记录。",
               "瑞金医院与中山医院的去标识化电子病历：诊断、糖化血红蛋白、血脂、肾功能与降糖用药"
               "（二甲双胍、SGLT2抑制剂、GLP-1受体激动剂、胰岛素）。"),
        "en": ("Type 2 diabetes EHR cohort", "Longitudinal outpatient and inpatient records of adults with T2DM, "
               "2018–2025.",
               "De-identified EHR extract from Ruijin and Zhongshan hospitals covering diagnoses, HbA1c and lipid "
               "panels, kidney function and glucose-lowering prescriptions (metformin, SGLT2 inhibitors, GLP-1 "
               "receptor agonists, insulin)."),
        "grade": "L3", "legal_basis": "authorised_operation", "data_types": ["ehr", "lab"],
        "keywords": ["diabetes", "糖尿病", "HbA1c", "real-world data", "真实世界数据", "SGLT2"],
        "therapeutic_areas": ["E11"], "standards": ["omop_cdm_5.4", "icd10", "loinc"],
        "temporal_coverage": {"start": "2018-01-01", "end": "2025-06-30"}, "update_frequency": "quarterly",
        "quality": {"completeness": 0.96, "conformance": 0.99, "plausibility": 0.98, "assessed_on": "2025-07-15"},
        "sources": [{"org": "ruijin", "system": "HIS", "share": 0.7},
                    {"org": "zhongshan", "system": "HIS", "share": 0.3}],
        "terms": {"use_conditions": [*IRB_HMB, ds("E11")], "local_conditions": ["no_linkage"], "max_term_months": 24},
        "plans": [
            {"name": "Annual research licence", "kind": "one_time", "currency": "CNY", "amount": 5_000_000,
             "term_months": 12},
            {"name": "Academic public-interest licence", "kind": "public_interest", "currency": "CNY",
             "term_months": 12, "modes": ["aggregate"]},
            {"name": "Negotiated two-year licence", "kind": "one_time", "currency": "CNY", "amount": 8_000_000,
             "term_months": 24, "tax_bps": 600, "private_to": ["shanghai-pharma-rd"]},
        ],
        "revenue_share": {"operator_bps": 1500, "fund_bps": 500, "providers": {"ruijin": 70, "zhongshan": 30}},
    },
    {
        "slug": "hypertension-claims", "owner": "huashan", "population": 15_000, "rows": {"claims": 120_000},
        "zh": ("高血压医保结算数据", "高血压患者2021–2024年门诊与住院医保结算清单。",
               "每次结算一行：险种、就诊类型、主要诊断、总费用、统筹支付、个人自付、药品费用与住院天数。适用于卫生经济学与用药负担研究。"),
        "en": ("Hypertension medical-insurance settlements",
               "Outpatient and inpatient insurance settlements of people with hypertension, 2021–2024.",
               "One row per settlement list: scheme, setting, primary diagnosis, total cost, fund-paid and "
               "out-of-pocket amounts, drug cost and length of stay — for health-economics and treatment-burden "
               "studies."),
        "grade": "L3", "legal_basis": "authorised_operation", "data_types": ["claims"],
        "keywords": ["hypertension", "高血压", "claims", "医保结算", "cost", "费用", "health economics"],
        "therapeutic_areas": ["I10", "I11", "I12", "I25"], "standards": ["icd10", "other"],
        "temporal_coverage": {"start": "2021-01-01", "end": "2024-12-31"}, "update_frequency": "monthly",
        "quality": {"completeness": 0.99, "conformance": 0.99, "plausibility": 0.97, "assessed_on": "2025-01-20"},
        "sources": [{"org": "huashan", "system": "Insurance settlement (医保结算清单)", "share": 1.0}],
        "terms": {"use_conditions": [*IRB_HMB, ds("I10", "I11", "I12", "I25")], "local_conditions": ["no_linkage"],
                  "max_term_months": 24},
        "plans": [
            {"name": "Pay per row", "kind": "metered", "currency": "CNY", "interval": "month", "term_months": 12,
             "modes": ["rows", "aggregate"], "unit_prices": {"rows_returned": 50, "queries": 200},
             "units": {"rows_returned": 1000, "queries": 1}, "included": {"rows_returned": 20_000, "queries": 100},
             "caps": {"rows_returned": 2_000_000}, "cap_period": "billing_period"},
            {"name": "Annual research licence", "kind": "one_time", "currency": "CNY", "amount": 4_000_000,
             "term_months": 12},
        ],
        "revenue_share": {"operator_bps": 1500, "fund_bps": 500, "providers": {"huashan": 1}},
    },
    {
        "slug": "liver-imaging-reports", "owner": "zhongshan", "population": 9_000, "rows": {"reports": 30_000},
        "zh": ("肝脏影像结构化报告", "2020–2025年肝脏CT、MRI与超声检查的结构化报告（LI-RADS）。",
               "由影像报告（RIS）结构化提取：检查方式、增强、病灶数量与最大径、LI-RADS分级、肝硬化、门静脉癌栓与编码印象，"
               "覆盖肝癌筛查与诊断。"),
        "en": ("Structured liver imaging reports",
               "Structured CT, MRI and ultrasound reports of the liver with LI-RADS, 2020–2025.",
               "Extracted from radiology reports (RIS): modality, contrast, lesion count and size, LI-RADS category, "
               "cirrhosis, portal-vein thrombus and a coded impression — liver cancer screening and diagnosis."),
        "grade": "L3", "legal_basis": "authorised_operation", "data_types": ["imaging_report"],
        "keywords": ["liver cancer", "肝癌", "LI-RADS", "imaging", "影像报告", "cirrhosis", "肝硬化"],
        "therapeutic_areas": ["C22", "K74", "K76"], "standards": ["dicom", "icd10", "hl7_v2"],
        "temporal_coverage": {"start": "2020-01-01", "end": "2025-06-30"}, "update_frequency": "quarterly",
        "quality": {"completeness": 0.94, "conformance": 0.97, "plausibility": 0.96, "assessed_on": "2025-07-01"},
        "sources": [{"org": "zhongshan", "system": "RIS", "share": 1.0}],
        "terms": {"use_conditions": [*IRB_HMB, ds("C22", "K74"), "PUB"], "local_conditions": ["no_linkage"],
                  "max_term_months": 24},
        "plans": [
            {"name": "Annual research licence", "kind": "one_time", "currency": "CNY", "amount": 3_000_000,
             "term_months": 12, "tax_bps": 600},
            {"name": "Monthly subscription", "kind": "subscription", "currency": "CNY", "amount": 400_000,
             "interval": "month", "term_months": 12, "modes": ["aggregate"]},
        ],
        "revenue_share": {"operator_bps": 1500, "fund_bps": 500, "providers": {"zhongshan": 1}},
    },
    {
        "slug": "hcc-treatment-cohort", "owner": "zhongshan", "population": 12_000, "rows": {"episodes": 60_000},
        "zh": ("肝细胞癌诊疗队列（可用不可见）", "2016–2025年原发性肝癌患者的治疗与随访，仅提供受控统计查询。",
               "每个治疗阶段一行：诊断、乙肝状态、AFP、ALT、白蛋白、BCLC分期、治疗方式、费用与生存月数。"
               "数据不出域，仅可做计数、求和与均值，小单元格抑制并加扰动。"),
        "en": ("Hepatocellular carcinoma treatment cohort (usable-not-visible)",
               "Treatment and follow-up of people with primary liver cancer, 2016–2025; controlled aggregates only.",
               "One row per treatment episode: diagnosis, HBV status, AFP, ALT, albumin, BCLC stage, treatment, cost "
               "and survival months. The data never leaves the platform: counts, sums and averages only, with "
               "small-cell suppression and perturbation."),
        "grade": "L4", "legal_basis": "authorised_operation", "data_types": ["ehr", "lab"],
        "keywords": ["liver cancer", "肝癌", "hepatocellular carcinoma", "肝细胞癌", "HBV", "乙肝", "AFP", "survival"],
        "therapeutic_areas": ["C22", "B18.1"], "standards": ["omop_cdm_5.4", "icd10", "loinc"],
        "temporal_coverage": {"start": "2016-01-01", "end": "2025-06-30"}, "update_frequency": "quarterly",
        "quality": {"completeness": 0.92, "conformance": 0.98, "plausibility": 0.97, "assessed_on": "2025-07-10"},
        "sources": [{"org": "zhongshan", "system": "EMR", "share": 0.6},
                    {"org": "zhongshan", "system": "LIS", "share": 0.4}],
        "terms": {"use_conditions": [*IRB_HMB, ds("C22"), {"code": "TS", "params": {"months": 36}}],
                  "local_conditions": ["no_linkage", "enclave_only"], "max_term_months": 36},
        "plans": [
            {"name": "Per query", "kind": "metered", "currency": "CNY", "interval": "month", "term_months": 12,
             "modes": ["aggregate"], "unit_prices": {"queries": 5000}, "units": {"queries": 1},
             "included": {"queries": 50}, "caps": {"queries": 2000}, "cap_period": "billing_period"},
            {"name": "Annual enclave licence", "kind": "one_time", "currency": "CNY", "amount": 8_000_000,
             "term_months": 12, "modes": ["aggregate"], "caps": {"queries": 5000}},
        ],
        "revenue_share": {"operator_bps": 1500, "fund_bps": 500, "providers": {"zhongshan": 1}},
    },
    {
        "slug": "stroke-registry", "owner": "huashan", "population": 25_000, "rows": {"admissions": 40_000},
        "zh": ("脑卒中登记", "2019–2025年急性脑卒中与短暂性脑缺血发作住院登记，可用不可见。",
               "每次住院一行：卒中类型、NIHSS评分、发病到入院时间、溶栓与取栓、住院天数、90天mRS与住院费用。"),
        "en": ("Stroke registry", "Admissions for acute stroke and TIA, 2019–2025; usable-not-visible.",
               "One row per admission: stroke type, NIHSS, onset-to-door time, thrombolysis and thrombectomy, length "
               "of stay, 90-day modified Rankin Scale and cost."),
        "grade": "L4", "legal_basis": "authorised_operation", "data_types": ["registry", "ehr"],
        "keywords": ["stroke", "脑卒中", "thrombolysis", "溶栓", "registry", "登记", "mRS"],
        "therapeutic_areas": ["I63", "I61", "I60", "G45"], "standards": ["icd10", "other"],
        "temporal_coverage": {"start": "2019-01-01", "end": "2025-06-30"}, "update_frequency": "monthly",
        "quality": {"completeness": 0.95, "conformance": 0.99, "plausibility": 0.98, "assessed_on": "2025-07-08"},
        "sources": [{"org": "huashan", "system": "Stroke registry", "share": 1.0}],
        "terms": {"use_conditions": [*IRB_HMB, ds("I63", "I61", "I60", "G45"), "COL"],
                  "local_conditions": ["no_linkage"], "max_term_months": 24},
        "plans": [
            {"name": "Annual subscription", "kind": "subscription", "currency": "CNY", "amount": 6_000_000,
             "interval": "year", "term_months": 24, "modes": ["aggregate"], "caps": {"queries": 10_000}},
            {"name": "Public-interest research", "kind": "public_interest", "currency": "CNY", "term_months": 12,
             "modes": ["aggregate"], "caps": {"queries": 2000}},
        ],
        "revenue_share": {"operator_bps": 1500, "fund_bps": 500, "providers": {"huashan": 1}},
    },
    {
        "slug": "t2d-sglt2-trial", "owner": "ruijin", "population": 1_200,
        "rows": {"subjects": 1_200, "measurements": 9_200},
        "zh": ("SGLT2抑制剂治疗2型糖尿病III期临床试验",
               "多中心、随机、安慰剂对照的52周III期试验数据（CDISC SDTM衍生）。",
               "受试者表与访视测量表：随机分组、基线糖化血红蛋白与eGFR、各访视糖化血红蛋白、空腹血糖、体重、血压与不良事件。"
               "仅提供差分隐私统计。"),
        "en": ("Phase III trial of an SGLT2 inhibitor in type 2 diabetes",
               "Multicentre, randomised, placebo-controlled 52-week phase III trial (derived from CDISC SDTM).",
               "A subjects table and a visit-measurements table: arm, baseline HbA1c and eGFR, HbA1c, fasting "
               "glucose, weight, blood pressure and adverse events by visit. Differentially private aggregates "
               "only."),
        "grade": "L5", "legal_basis": "consent", "data_types": ["clinical_trial"],
        "keywords": ["clinical trial", "临床试验", "diabetes", "糖尿病", "SGLT2", "CDISC", "phase III"],
        "therapeutic_areas": ["E11"], "standards": ["cdisc_sdtm"],
        "temporal_coverage": {"start": "2021-03-01", "end": "2023-12-31"}, "update_frequency": "once",
        "quality": {"completeness": 0.99, "conformance": 1.0, "plausibility": 0.99, "assessed_on": "2024-03-15"},
        "sources": [{"org": "ruijin", "system": "EDC", "share": 1.0}],
        "terms": {"use_conditions": [*IRB_HMB, ds("E11"), {"code": "GS", "params": {"regions": ["CN"]}},
                                     {"code": "TS", "params": {"months": 24}},
                                     {"code": "MOR", "params": {"date": "2026-06-30"}}],
                  "local_conditions": ["no_linkage", "no_cross_border", "enclave_only"], "max_term_months": 24},
        "plans": [
            {"name": "Restricted analysis licence", "kind": "one_time", "currency": "CNY", "amount": 12_000_000,
             "term_months": 12, "tax_bps": 600, "modes": ["dp_aggregate"], "caps": {"queries": 200}},
        ],
        "revenue_share": {"operator_bps": 1500, "fund_bps": 500, "providers": {"ruijin": 1}},
    },
    {
        "slug": "parkinson-genetic-cohort", "owner": "huashan", "population": 3_000,
        "rows": {"participants": 3_000, "visits": 11_000},
        "zh": ("帕金森病遗传队列", "帕金森病患者的致病与风险基因型及临床评估（人类遗传资源）。",
               "每名参与者一行：LRRK2、GBA1、PRKN变异、家族史、起病年龄、Hoehn-Yahr分期、MDS-UPDRS III、MoCA"
               "与左旋多巴等效剂量；另有每次随访一行的随访表。属人类遗传资源，仅限境内机构、差分隐私统计。"),
        "en": ("Parkinson's disease genetic cohort",
               "Genotypes and clinical assessments of people with Parkinson's disease (human genetic resources).",
               "One row per participant: LRRK2, GBA1 and PRKN variants, family history, age at onset, Hoehn and Yahr "
               "stage, MDS-UPDRS III, MoCA and levodopa-equivalent dose, and a row per follow-up visit. Human genetic "
               "resources: organisations in China only, differentially private aggregates only."),
        "grade": "L5", "legal_basis": "consent", "data_types": ["genomic", "ehr"],
        "keywords": ["Parkinson's disease", "帕金森病", "LRRK2", "GBA1", "genetics", "遗传", "neurology"],
        "therapeutic_areas": ["G20"], "standards": ["other"],
        "temporal_coverage": {"start": "2015-01-01", "end": "2024-12-31"}, "update_frequency": "yearly",
        "quality": {"completeness": 0.97, "conformance": 0.99, "plausibility": 0.98, "assessed_on": "2025-01-30"},
        "sources": [{"org": "huashan", "system": "Biobank LIMS", "share": 1.0}],
        "terms": {"use_conditions": [*IRB_HMB, ds("G20"), "GSO", {"code": "GS", "params": {"regions": ["CN"]}}, "COL"],
                  "local_conditions": ["genetic_resources", "no_cross_border", "enclave_only", "no_linkage"],
                  "max_term_months": 12},
        "plans": [
            {"name": "Privacy-budget metered", "kind": "metered", "currency": "CNY", "interval": "month",
             "term_months": 12, "modes": ["dp_aggregate"], "unit_prices": {"epsilon_spent": 200_000},
             "units": {"epsilon_spent": 100_000}, "caps": {"epsilon_spent": 3_000_000}, "cap_period": "term"},
            {"name": "Public-interest research", "kind": "public_interest", "currency": "CNY", "term_months": 12,
             "modes": ["dp_aggregate"], "caps": {"queries": 100}},
        ],
        "revenue_share": {"operator_bps": 1500, "fund_bps": 500, "providers": {"huashan": 1}},
    },
]
# fmt: on

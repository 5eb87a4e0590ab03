"""Demo products at grades L1 (open) and L2 (registered), as plain specs that ``catalog.demo.catalog`` validates.

A spec is an API product body without ``sources`` ids, ``dictionary``, ``population_size`` and
``record_count`` (the catalogue fills them in), plus ``owner`` and source ``org`` slugs, ``rows``
per table, ``terms``, ``plans`` (``private_to`` as slugs) and ``revenue_share`` weights by slug.
"""

from __future__ import annotations

from typing import Any

# Hand-laid data: related keys share a line.
# fmt: off
SPECS: list[dict[str, Any]] = [
    {
        "slug": "open-checkup-sample", "owner": "zhongshan", "population": 9_000, "rows": {"exams": 20_000},
        "zh": ("体检指标开放样本", "上海成年人年度体检主要指标的开放样本（2021–2024）。",
               "从中山医院健康体检中心抽取的匿名化样本：身高、体重、BMI、血压、空腹血糖与总胆固醇，按年龄、性别和区汇总使用。"),
        "en": ("Open sample of health check-up indicators",
               "Open sample of annual check-up indicators of Shanghai adults, 2021–2024.",
               "An anonymised sample from Zhongshan Hospital's health check-up centre: height, weight, BMI, blood "
               "pressure, fasting glucose and total cholesterol, for teaching, method development and feasibility "
               "work. Aggregates suppress cells of fewer than 10 persons."),
        "grade": "L1", "legal_basis": "anonymised", "data_types": ["physical_exam"],
        "keywords": ["check-up", "体检", "blood pressure", "血压", "BMI", "open data", "开放数据"],
        "therapeutic_areas": ["I10", "E66", "E78"], "standards": ["loinc", "other"],
        "temporal_coverage": {"start": "2021-01-01", "end": "2024-12-31"}, "update_frequency": "yearly",
        "quality": {"completeness": 0.99, "conformance": 1.0, "plausibility": 0.99, "assessed_on": "2025-03-01"},
        "sources": [{"org": "zhongshan", "system": "PEIS", "share": 1.0}],
        "terms": {"use_conditions": ["NRES"], "max_term_months": 36},
        "plans": [{"name": "Open access", "kind": "free", "currency": "CNY", "term_months": 12,
                   "caps": {"rows_returned": 200_000, "bytes_downloaded": 500_000_000}}],
        "revenue_share": {"operator_bps": 1000, "fund_bps": 0, "providers": {"zhongshan": 1}},
    },
    {
        "slug": "open-outpatient-sample", "owner": "ruijin", "population": 4_000, "rows": {"visits": 12_000},
        "zh": ("门诊就诊开放样本", "2023年瑞金医院门诊与急诊就诊的匿名化开放样本。",
               "每次就诊一行：科室、主要诊断（ICD-10）、就诊类型、年龄、性别与居住区。仅限非商业用途。"),
        "en": ("Open outpatient visit sample", "Anonymised open sample of Ruijin Hospital outpatient and emergency "
               "visits in 2023.",
               "One row per visit: department, primary diagnosis (ICD-10), visit type, age, sex and district of "
               "residence — hypertension, diabetes (糖尿病), respiratory infections, liver disease. Non-commercial "
               "use only."),
        "grade": "L1", "legal_basis": "anonymised", "data_types": ["ehr"],
        "keywords": ["outpatient", "门诊", "diabetes", "糖尿病", "hypertension", "高血压", "open data"],
        "therapeutic_areas": ["I10", "E11", "J06", "K29"], "standards": ["icd10"],
        "temporal_coverage": {"start": "2023-01-01", "end": "2023-12-31"}, "update_frequency": "once",
        "quality": {"completeness": 0.98, "conformance": 0.99, "plausibility": 0.97, "assessed_on": "2024-02-20"},
        "sources": [{"org": "ruijin", "system": "HIS", "share": 1.0}],
        "terms": {"use_conditions": ["GRU", "NCU", "PUB"], "max_term_months": 24},
        "plans": [
            {"name": "Open access (non-commercial)", "kind": "free", "currency": "CNY", "term_months": 12,
             "caps": {"rows_returned": 100_000}},
            {"name": "Public-interest research", "kind": "public_interest", "currency": "CNY", "term_months": 24},
        ],
        "revenue_share": {"operator_bps": 1000, "fund_bps": 0, "providers": {"ruijin": 1}},
    },
    {
        "slug": "checkup-cohort", "owner": "ruijin", "population": 40_000, "rows": {"exams": 150_000},
        "zh": ("健康体检纵向队列", "4万名上海成年人2019–2024年的年度体检纵向记录。",
               "体检系统（PEIS）与检验系统（LIS）整合：BMI、腰围、血压、空腹血糖、糖化血红蛋白、LDL、ALT、吸烟与脂肪肝超声分级。"
               "适用于代谢性疾病风险建模。"),
        "en": ("Longitudinal health check-up cohort",
               "Annual check-up records of 40,000 Shanghai adults, 2019–2024.",
               "Physical-exam (PEIS) and laboratory (LIS) results joined per visit: BMI, waist, blood pressure, "
               "fasting glucose, HbA1c, LDL, ALT, smoking and ultrasound fatty-liver grade. Suited to metabolic "
               "risk modelling (diabetes, NAFLD, hypertension)."),
        "grade": "L2", "legal_basis": "authorised_operation", "data_types": ["physical_exam", "lab"],
        "keywords": ["check-up", "体检", "diabetes", "糖尿病", "fatty liver", "脂肪肝", "HbA1c", "cohort", "队列"],
        "therapeutic_areas": ["E11", "K76.0", "I10", "E78"], "standards": ["loinc", "omop_cdm_5.4"],
        "temporal_coverage": {"start": "2019-01-01", "end": "2024-12-31"}, "update_frequency": "yearly",
        "quality": {"completeness": 0.95, "conformance": 0.99, "plausibility": 0.98, "assessed_on": "2025-02-10"},
        "sources": [{"org": "ruijin", "system": "PEIS", "share": 0.8},
                    {"org": "ruijin", "system": "LIS", "share": 0.2}],
        "terms": {"use_conditions": ["HMB", "PUB"], "max_term_months": 24},
        "plans": [
            {"name": "Trial", "kind": "free", "currency": "CNY", "term_months": 1, "modes": ["rows", "aggregate"],
             "caps": {"rows_returned": 10_000}},
            {"name": "Monthly subscription", "kind": "subscription", "currency": "CNY", "amount": 800_000,
             "interval": "month", "term_months": 12, "tax_bps": 600},
            {"name": "Annual research licence", "kind": "one_time", "currency": "CNY", "amount": 5_000_000,
             "term_months": 12, "tax_bps": 600},
        ],
        "revenue_share": {"operator_bps": 1500, "fund_bps": 500, "providers": {"ruijin": 1}},
    },
    {
        "slug": "chronic-lab-results", "owner": "zhongshan", "population": 30_000, "rows": {"results": 260_000},
        "zh": ("慢病常规检验结果", "慢病患者常规生化检验结果（长表格式，LOINC编码），2022–2025。",
               "每条检验结果一行：LOINC编码、结果、UCUM单位与异常标志，覆盖糖化血红蛋白、血糖、血脂、肝肾功能与甲胎蛋白（AFP）。"),
        "en": ("Routine laboratory results for chronic disease",
               "Routine chemistry of chronic-disease patients in long format with LOINC codes, 2022–2025.",
               "One row per result: LOINC code, value, UCUM unit and abnormal flag — HbA1c, glucose, lipids, liver "
               "and kidney function and alpha-fetoprotein (AFP) for liver cancer surveillance."),
        "grade": "L2", "legal_basis": "authorised_operation", "data_types": ["lab"],
        "keywords": ["laboratory", "检验", "LOINC", "HbA1c", "AFP", "甲胎蛋白", "diabetes", "糖尿病", "liver cancer",
                     "肝癌"],
        "therapeutic_areas": ["E11", "E78", "N18", "C22"], "standards": ["loinc", "fhir_r4"],
        "temporal_coverage": {"start": "2022-01-01", "end": "2025-06-30"}, "update_frequency": "monthly",
        "quality": {"completeness": 0.99, "conformance": 0.98, "plausibility": 0.99, "assessed_on": "2025-07-05"},
        "sources": [{"org": "zhongshan", "system": "LIS", "share": 1.0}],
        "terms": {"use_conditions": ["HMB", {"code": "TS", "params": {"months": 24}}], "max_term_months": 24},
        "plans": [
            {"name": "Pay per use", "kind": "metered", "currency": "CNY", "interval": "month", "term_months": 12,
             "unit_prices": {"rows_returned": 20}, "units": {"rows_returned": 1000},
             "included": {"rows_returned": 100_000}, "caps": {"rows_returned": 5_000_000},
             "cap_period": "billing_period"},
            {"name": "Annual subscription", "kind": "subscription", "currency": "CNY", "amount": 6_000_000,
             "interval": "year", "term_months": 12, "tax_bps": 600},
            {"name": "International monthly subscription", "kind": "subscription", "currency": "EUR",
             "amount": 90_000, "interval": "month", "term_months": 12, "modes": ["aggregate"]},
        ],
        "revenue_share": {"operator_bps": 1500, "fund_bps": 500, "providers": {"zhongshan": 1}},
    },
    {
        "slug": "risk-factor-survey", "owner": "huashan", "population": 30_000, "rows": {"responses": 30_000},
        "zh": ("社区慢病危险因素调查", "2023年上海社区居民慢病危险因素问卷调查。",
               "每名受访者一行：教育、吸烟、饮酒、身体活动、睡眠、BMI与自报高血压、糖尿病诊断。公益用途免费。"),
        "en": ("Community chronic-disease risk-factor survey",
               "2023 survey of chronic-disease risk factors among Shanghai community residents.",
               "One row per respondent: education, smoking, alcohol, physical activity, sleep, BMI and self-reported "
               "diagnoses of hypertension and diabetes. Free for public-interest research; processing must stay in "
               "China."),
        "grade": "L2", "legal_basis": "consent", "data_types": ["survey"],
        "keywords": ["survey", "问卷", "smoking", "吸烟", "risk factors", "危险因素", "diabetes", "糖尿病"],
        "therapeutic_areas": ["I10", "E11", "F17"], "standards": ["other"],
        "temporal_coverage": {"start": "2023-03-01", "end": "2023-11-30"}, "update_frequency": "once",
        "quality": {"completeness": 0.93, "conformance": 0.97, "plausibility": 0.95, "assessed_on": "2024-01-15"},
        "sources": [{"org": "huashan", "system": "EDC", "share": 1.0}],
        "terms": {"use_conditions": ["HMB", {"code": "GS", "params": {"regions": ["CN"]}}], "max_term_months": 24},
        "plans": [
            {"name": "Public-interest research", "kind": "public_interest", "currency": "CNY", "term_months": 24},
            {"name": "Research licence", "kind": "one_time", "currency": "CNY", "amount": 1_200_000,
             "term_months": 12},
        ],
        "revenue_share": {"operator_bps": 1500, "fund_bps": 500, "providers": {"huashan": 1}},
    },
]
# fmt: on

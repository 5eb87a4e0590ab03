"""The data dictionaries of the demo products, as plain API bodies (tables → fields).

Field names here are also the vocabulary of ``catalog.demo.data``: a field it knows by name
(``hba1c``, ``district``, ``stroke_type`` …) gets plausible, correlated values; any other field
gets values from its type, bounds and categories alone.
"""

from __future__ import annotations

from typing import Any

DISTRICTS = [
    "Huangpu", "Xuhui", "Changning", "Jing'an", "Putuo", "Hongkou", "Yangpu", "Minhang",
    "Baoshan", "Jiading", "Pudong", "Jinshan", "Songjiang", "Qingpu", "Fengxian", "Chongming",
]  # fmt: skip

# Routine chemistry in long format: LOINC code → UCUM unit.
LAB_UNITS = {
    "4548-4": "%",  # haemoglobin A1c
    "1558-6": "mmol/L",  # fasting glucose
    "13457-7": "mmol/L",  # LDL cholesterol (calculated)
    "2093-3": "mmol/L",  # total cholesterol
    "2571-8": "mmol/L",  # triglycerides
    "1742-6": "U/L",  # ALT
    "1920-8": "U/L",  # AST
    "2160-0": "umol/L",  # creatinine
    "33914-3": "mL/min/{1.73_m2}",  # eGFR
    "1834-1": "ng/mL",  # alpha-fetoprotein
}

Field = dict[str, Any]


def field(name: str, type_: str, description: str, **extra: Any) -> Field:
    return {"name": name, "type": type_, "description": description, **extra}


def person_id() -> Field:
    return field(
        "person_id",
        "string",
        "pseudonymous person id, unique to this product (not linkable across products)",
        sensitive=True,
    )


def age(lo: int = 18, hi: int = 105, what: str = "age at the event, years") -> Field:
    return field("age", "integer", what, min=lo, max=hi)


def sex() -> Field:
    return field("sex", "string", "sex recorded at registration (F female, M male)", categories=["F", "M"])


def district() -> Field:
    return field("district", "string", "Shanghai district of residence", categories=list(DISTRICTS))


def day(name: str, what: str, **extra: Any) -> Field:
    return field(name, "date", what, **extra)


# Decimals the demo data carries; the dictionary declares them, so L4 rounds released sums and averages
# to them. Other numbers carry one.
DECIMALS = {
    "total_cost": 2, "fund_paid": 2, "out_of_pocket": 2, "drug_cost": 2, "treatment_cost": 2,
    "hospitalisation_cost": 2, "result": 2, "ldl": 2, "total_cholesterol": 2,
}  # fmt: skip


def number(name: str, what: str, lo: float, hi: float, **extra: Any) -> Field:
    return field(name, "number", what, min=lo, max=hi, precision=DECIMALS.get(name, 1), **extra)


def integer(name: str, what: str, lo: int, hi: int, **extra: Any) -> Field:
    return field(name, "integer", what, min=lo, max=hi, precision=0, **extra)


def lab(name: str, what: str, lo: float, hi: float, loinc: str) -> Field:
    return number(name, what, lo, hi, code_system=f"LOINC {loinc}")


def choice(name: str, what: str, categories: list[Any], **extra: Any) -> Field:
    type_ = "integer" if all(isinstance(c, int) for c in categories) else "string"
    return field(name, type_, what, categories=categories, **extra)


def icd10(name: str, what: str, codes: list[str]) -> Field:
    return choice(name, what, codes, code_system="ICD-10")


def flag(name: str, what: str) -> Field:
    return field(name, "boolean", what)


def table(name: str, max_rows_per_person: int, description: str, *fields: Field) -> dict[str, Any]:
    return {
        "table": name, "person_key": "person_id", "max_rows_per_person": max_rows_per_person,
        "description": description, "fields": list(fields),
    }  # fmt: skip


# Measurements shared by several products.
BMI = number("bmi", "body-mass index, kg/m²", 14, 50)
SBP = integer("sbp", "systolic blood pressure, mmHg", 80, 230)
DBP = integer("dbp", "diastolic blood pressure, mmHg", 40, 140)
GLUCOSE = lab("fasting_glucose", "fasting plasma glucose, mmol/L", 2.5, 30, "1558-6")
HBA1C = lab("hba1c", "haemoglobin A1c, %", 3, 20, "4548-4")
LDL = lab("ldl", "LDL cholesterol (calculated), mmol/L", 0.3, 10, "13457-7")
ALT = lab("alt", "alanine aminotransferase, U/L", 1, 2000, "1742-6")
EGFR = lab("egfr", "estimated glomerular filtration rate (CKD-EPI), mL/min/1.73 m²", 3, 150, "33914-3")


# Hand-laid data: one table per call, related fields on a line.
# fmt: off
DICTIONARIES: dict[str, list[dict[str, Any]]] = {
    "open-checkup-sample": [table(
        "exams", 3, "one row per annual check-up",
        person_id(), integer("exam_year", "year of the check-up", 2021, 2024), age(18, 95), sex(), district(),
        number("height_cm", "height, cm", 130, 205), number("weight_kg", "weight, kg", 30, 160), BMI, SBP, DBP,
        GLUCOSE, lab("total_cholesterol", "total cholesterol, mmol/L", 1.5, 15, "2093-3"),
    )],
    "open-outpatient-sample": [table(
        "visits", 5, "one row per outpatient or emergency visit",
        person_id(), day("visit_date", "date of the visit"), age(0, 105), sex(), district(),
        choice("department", "clinical department", [
            "internal_medicine", "endocrinology", "cardiology", "gastroenterology", "respiratory", "neurology",
            "oncology", "general_surgery",
        ]),
        icd10("primary_diagnosis", "primary diagnosis of the visit", [
            "I10", "E11.9", "J06.9", "K29.7", "E78.5", "M54.5", "I25.1", "K76.0", "N18.3", "C22.0",
        ]),
        choice("visit_type", "outpatient or emergency", ["outpatient", "emergency"]),
    )],
    "checkup-cohort": [table(
        "exams", 6, "one row per check-up; most people return every year",
        person_id(), day("exam_date", "date of the check-up"), age(18, 100), sex(), district(), BMI,
        number("waist_cm", "waist circumference, cm", 50, 150), SBP, DBP, GLUCOSE, HBA1C, LDL, ALT,
        flag("smoker", "current smoker (self-reported)"),
        choice("fatty_liver", "hepatic steatosis on ultrasound", ["none", "mild", "moderate", "severe"]),
    )],
    "chronic-lab-results": [table(
        "results", 60, "one row per reported test result (long format)",
        person_id(), day("collected_on", "date the specimen was collected"), age(18, 105), sex(), district(),
        choice("loinc_code", "test, as a LOINC code", list(LAB_UNITS), code_system="LOINC"),
        number("result", "numeric result, in `unit`", 0, 5000),
        choice("unit", "UCUM unit of the result", sorted(set(LAB_UNITS.values())), code_system="UCUM"),
        choice("abnormal_flag", "against the laboratory reference range: L low, N normal, H high", ["L", "N", "H"]),
    )],
    "risk-factor-survey": [table(
        "responses", 1, "one row per respondent",
        person_id(), day("survey_date", "date of the interview"), age(18, 100), sex(), district(),
        choice("education", "highest education", ["primary_or_less", "secondary", "tertiary"]),
        choice("smoking_status", "tobacco smoking", ["never", "former", "current"]),
        integer("alcohol_drinks_week", "standard alcoholic drinks per week", 0, 70),
        integer("activity_min_week", "moderate-to-vigorous physical activity, minutes per week", 0, 3000),
        number("sleep_hours", "usual sleep per night, hours", 3, 12), BMI,
        flag("hypertension_diagnosed", "ever told by a doctor of high blood pressure"),
        flag("diabetes_diagnosed", "ever told by a doctor of diabetes"),
    )],
    "t2d-ehr-cohort": [
        table(
            "patients", 1, "one row per person in the cohort",
            person_id(), sex(), integer("birth_year", "year of birth", 1915, 2007, sensitive=True), district(),
            integer("diagnosis_year", "year type 2 diabetes was first diagnosed", 1995, 2025),
            choice("source_hospital", "hospital the record comes from", ["ruijin", "zhongshan"]),
        ),
        table(
            "visits", 20, "one row per outpatient or inpatient encounter",
            person_id(), day("visit_date", "date of the encounter"), age(18, 105), sex(), district(),
            icd10("diagnosis", "main diagnosis of the encounter", [
                "E11.9", "E11.2", "E11.3", "E11.4", "E11.5", "E11.6", "I10", "E78.5",
            ]),
            choice("setting", "care setting", ["outpatient", "inpatient"]),
            HBA1C, GLUCOSE, LDL, BMI, SBP, EGFR,
            flag("metformin", "metformin prescribed"), flag("sglt2i", "SGLT2 inhibitor prescribed"),
            flag("glp1ra", "GLP-1 receptor agonist prescribed"), flag("insulin", "insulin prescribed"),
        ),
    ],
    "hypertension-claims": [table(
        "claims", 40, "one row per medical-insurance settlement",
        person_id(), day("settlement_date", "date of the settlement"), age(18, 105), sex(), district(),
        choice("scheme", "insurance scheme (urban employee or urban-rural resident)", ["employee", "resident"]),
        choice("setting", "care setting", ["outpatient", "inpatient"]),
        icd10("primary_diagnosis", "primary diagnosis on the settlement list", [
            "I10", "I11.9", "I25.1", "E11.9", "I20.9", "I12.9", "I63.9",
        ]),
        number("total_cost", "total cost, CNY", 0, 800_000), number("fund_paid", "paid by the fund, CNY", 0, 800_000),
        number("out_of_pocket", "paid by the patient, CNY", 0, 800_000),
        number("drug_cost", "of which drugs, CNY", 0, 800_000),
        integer("length_of_stay", "days in hospital (0 for outpatients)", 0, 90),
    )],
    "liver-imaging-reports": [table(
        "reports", 8, "one row per structured CT, MRI or ultrasound report of the liver",
        person_id(), day("exam_date", "date of the examination"), age(18, 100), sex(), district(),
        choice("modality", "imaging modality", ["CT", "MRI", "US"], code_system="DICOM modality"),
        flag("contrast", "contrast-enhanced"),
        integer("lesion_count", "number of focal liver lesions reported", 1, 10),
        number("largest_lesion_mm", "diameter of the largest lesion, mm", 3, 250),
        choice("li_rads", "LI-RADS category of the dominant lesion", [
            "LR-NC", "LR-1", "LR-2", "LR-3", "LR-4", "LR-5", "LR-M", "LR-TIV",
        ], code_system="ACR LI-RADS v2018"),
        flag("cirrhosis", "cirrhotic morphology"), flag("portal_vein_thrombus", "portal vein thrombus"),
        icd10("impression", "coded impression", ["C22.0", "K74.6", "K76.0", "D18.0", "C78.7", "K76.8"]),
    )],
    "hcc-treatment-cohort": [table(
        "episodes", 12, "one row per treatment episode of a person with primary liver cancer",
        person_id(), day("episode_date", "start of the episode"), age(18, 100), sex(), district(),
        icd10("cancer_diagnosis", "primary liver cancer", ["C22.0", "C22.1", "C22.9"]),
        flag("hbv_positive", "HBsAg positive"),
        lab("afp", "alpha-fetoprotein, ng/mL", 0, 100_000, "1834-1"), ALT,
        lab("albumin", "serum albumin, g/L", 10, 60, "1751-7"),
        choice("bclc_stage", "Barcelona Clinic Liver Cancer stage", ["0", "A", "B", "C", "D"], code_system="BCLC"),
        choice("treatment", "main treatment of the episode", [
            "resection", "ablation", "tace", "systemic", "transplant", "best_supportive_care",
        ]),
        number("treatment_cost", "cost of the episode, CNY", 0, 2_000_000),
        integer("survival_months", "months from the episode to death or last follow-up", 0, 120),
    )],
    "stroke-registry": [table(
        "admissions", 4, "one row per admission for acute stroke or TIA",
        person_id(), day("admission_date", "date of admission"), day("discharge_date", "date of discharge"),
        age(18, 105), sex(), district(),
        icd10("stroke_type", "type of stroke", ["I63.9", "I61.9", "G45.9", "I60.9"]),
        integer("nihss", "NIH Stroke Scale at admission", 0, 42, code_system="NIHSS"),
        integer("onset_to_door_min", "minutes from symptom onset to arrival", 10, 1440),
        flag("thrombolysis", "intravenous thrombolysis"), flag("thrombectomy", "endovascular thrombectomy"),
        integer("length_of_stay", "days in hospital", 0, 90),
        choice("mrs_90d", "modified Rankin Scale at 90 days", [0, 1, 2, 3, 4, 5, 6], min=0, max=6,
               code_system="modified Rankin Scale"),
        number("hospitalisation_cost", "cost of the admission, CNY", 0, 800_000),
    )],
    "t2d-sglt2-trial": [
        table(
            "subjects", 1, "one row per randomised subject (derived from SDTM DM/SL)",
            person_id(), choice("site", "trial site", ["ruijin", "zhongshan", "huashan"]),
            choice("arm", "randomised arm", ["placebo", "sglt2i_10mg"]), day("randomised_on", "date of randomisation"),
            age(18, 80, "age at randomisation, years"), sex(), district(),
            lab("baseline_hba1c", "HbA1c at baseline, %", 7, 10.5, "4548-4"),
            lab("baseline_egfr", "eGFR at baseline, mL/min/1.73 m²", 45, 150, "33914-3"),
            flag("completed", "completed the 52-week treatment period"),
        ),
        table(
            "measurements", 8, "one row per scheduled visit (derived from SDTM LB/VS/AE)",
            person_id(),
            choice("visit_week", "scheduled visit, weeks after randomisation", [0, 4, 8, 12, 16, 24, 36, 52]),
            lab("hba1c", "haemoglobin A1c, %", 4, 15, "4548-4"), GLUCOSE,
            number("weight_kg", "body weight, kg", 35, 160), SBP,
            choice("adverse_event", "most severe adverse event since the last visit", [
                "none", "urinary_tract_infection", "genital_mycotic_infection", "hypoglycaemia", "volume_depletion",
                "ketoacidosis",
            ], code_system="MedDRA preferred term (simplified)"),
        ),
    ],
    "parkinson-genetic-cohort": [table(
        "participants", 1, "one row per participant: genotype and latest clinical assessment",
        person_id(), day("assessed_on", "date of the latest assessment"),
        integer("age_at_onset", "age at motor onset, years", 20, 95), age(20, 105, "age at assessment, years"),
        sex(), district(), flag("family_history", "first-degree relative with Parkinson's disease"),
        flag("lrrk2_g2385r", "LRRK2 G2385R risk-variant carrier"), flag("lrrk2_r1628p", "LRRK2 R1628P carrier"),
        flag("gba1_carrier", "GBA1 pathogenic-variant carrier"), flag("prkn_biallelic", "biallelic PRKN variants"),
        choice("hoehn_yahr", "Hoehn and Yahr stage", ["HY-1", "HY-1.5", "HY-2", "HY-2.5", "HY-3", "HY-4", "HY-5"]),
        integer("updrs_iii", "MDS-UPDRS part III motor score", 0, 132, code_system="MDS-UPDRS"),
        integer("moca", "Montreal Cognitive Assessment", 0, 30, code_system="MoCA"),
        number("levodopa_equivalent_mg", "levodopa-equivalent daily dose, mg", 0, 3000),
    ), table(
        # Follow-up visits, several per person: what API.md's differentially private query example
        # (``visits`` grouped by ``sex`` with ``epsilon``) asks of an L5 product.
        "visits", 6, "one row per follow-up visit: motor and cognitive scores over time",
        person_id(), day("visit_date", "date of the follow-up visit"), age(20, 105), sex(), district(),
        choice("hoehn_yahr", "Hoehn and Yahr stage", ["HY-1", "HY-1.5", "HY-2", "HY-2.5", "HY-3", "HY-4", "HY-5"]),
        integer("updrs_iii", "MDS-UPDRS part III motor score", 0, 132, code_system="MDS-UPDRS"),
        integer("moca", "Montreal Cognitive Assessment", 0, 30, code_system="MoCA"),
    )],
}
# fmt: on

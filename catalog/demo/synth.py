"""What each demo field looks like: SQL expressions over a person index ``p`` and a row index ``j``.

Randomness is a hash of (seed, product, person[, table, row], tag), hashed once more (DuckDB
combines its arguments' hashes cheaply, so draws for two tags would be correlated without it),
turned into uniforms ``u`` in [0, 1) and normals (Box–Muller), so every value is a pure function
of the seed: no state, no order.
Person-level draws leave the table out of the hash, so a person has the same sex, age, district and
conditions in every table of a product. ``helpers()`` are latent variables shared by several fields
(a person's diabetes, HbA1c, blood pressure …), evaluated in order, each able to use the ones
before it; ``FIELDS`` maps a field name to its expression; anything else is drawn from the field's
type, bounds and categories alone (see ``generic``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from catalog.demo.dictionaries import DISTRICTS, LAB_UNITS

_TWO64 = "18446744073709551616.0"

# Resident population (10,000s, 2020 census), central districts weighted up for the hospitals' catchment.
_POPULATION = {"Huangpu": 66, "Xuhui": 111, "Changning": 69, "Jing'an": 98, "Putuo": 124, "Hongkou": 76,
               "Yangpu": 124, "Minhang": 265, "Baoshan": 223, "Jiading": 183, "Pudong": 568, "Jinshan": 82,
               "Songjiang": 191, "Qingpu": 127, "Fengxian": 114}  # fmt: skip
_CENTRAL = {"Huangpu", "Xuhui", "Changning", "Jing'an", "Putuo", "Hongkou", "Yangpu"}
RARE_DISTRICT = "Chongming"  # an island: few of its residents reach these hospitals (a small cell on purpose)

# Analytes of the long-format lab table: weight and reference range (low, high).
_ANALYTES = [  # in LAB_UNITS order
    (0.14, 4.0, 6.0), (0.12, 3.9, 6.1), (0.12, 0.0, 3.4), (0.12, 0.0, 5.2), (0.12, 0.0, 1.7),
    (0.10, 0.0, 40.0), (0.08, 0.0, 40.0), (0.10, 44.0, 133.0), (0.06, 60.0, 10_000.0), (0.04, 0.0, 20.0),
]  # fmt: skip

WEIGHTS: dict[str, Sequence[float]] = {
    "visit_type": [0.93, 0.07],
    "source_hospital": [0.7, 0.3],
    "site": [0.5, 0.3, 0.2],
    "modality": [0.5, 0.3, 0.2],
    "cancer_diagnosis": [0.85, 0.12, 0.03],
    "stroke_type": [0.72, 0.14, 0.1, 0.04],
    "li_rads": [0.03, 0.25, 0.25, 0.17, 0.1, 0.12, 0.05, 0.03],
}
PERSON_LEVEL = {"source_hospital", "site", "cancer_diagnosis", "stroke_type", "department"}


@dataclass(frozen=True)
class Profile:
    """The population a product draws from."""

    age_mean: float = 50
    age_sd: float = 16
    male: float = 0.49
    dm: float = 0.12  # prevalence of type 2 diabetes
    htn: float = 0.28  # hypertension
    liver: float = 0.03  # chronic liver disease / liver cancer


PROFILES = {
    "open-checkup-sample": Profile(age_mean=45, age_sd=14),
    "open-outpatient-sample": Profile(age_mean=48, age_sd=20),
    "checkup-cohort": Profile(age_mean=46, age_sd=13),
    "chronic-lab-results": Profile(age_mean=62, age_sd=12, dm=0.5, htn=0.5, liver=0.1),
    "risk-factor-survey": Profile(age_mean=50, age_sd=16),
    "t2d-ehr-cohort": Profile(age_mean=60, age_sd=11, dm=1.0, htn=0.55),
    "hypertension-claims": Profile(age_mean=66, age_sd=11, htn=1.0, dm=0.3),
    "liver-imaging-reports": Profile(age_mean=56, age_sd=12, male=0.68, liver=0.6),
    "hcc-treatment-cohort": Profile(age_mean=58, age_sd=11, male=0.8, liver=1.0),
    "stroke-registry": Profile(age_mean=67, age_sd=12, male=0.6, htn=0.7, dm=0.3),
    "t2d-sglt2-trial": Profile(age_mean=57, age_sd=9, male=0.55, dm=1.0, htn=0.5),
    "parkinson-genetic-cohort": Profile(age_mean=64, age_sd=10, male=0.57),
}


def lit(value: Any) -> str:
    """A SQL literal: string, number or list of them."""
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(lit(v) for v in value) + "]"
    return repr(value)


@dataclass(frozen=True)
class Ctx:
    person_key: str  # seed + product: person-level draws
    row_key: str  # seed + product + table: row-level draws
    start: date
    end: date
    profile: Profile
    fields: dict[str, dict[str, Any]]
    rare: int  # persons 0 … rare-1 live in the rare district

    def pu(self, tag: str) -> str:
        return f"(hash(hash({lit(self.person_key)}, p, {lit(tag)})) / {_TWO64})"

    def ru(self, tag: str) -> str:
        return f"(hash(hash({lit(self.row_key)}, p, j, {lit(tag)})) / {_TWO64})"

    def _normal(self, u: Callable[[str], str], tag: str) -> str:
        return f"(sqrt(-2 * ln(greatest({u(tag + '.1')}, 1e-12))) * cos(2 * pi() * {u(tag + '.2')}))"

    def pn(self, tag: str) -> str:
        return self._normal(self.pu, tag)

    def rn(self, tag: str) -> str:
        return self._normal(self.ru, tag)

    def has(self, name: str) -> bool:
        return name in self.fields

    def categories(self, name: str) -> list[Any]:
        return list(self.fields[name]["categories"])

    @staticmethod
    def pick(u: str, values: Sequence[Any], weights: Sequence[float] | None = None) -> str:
        """``values[i]`` with probability ``weights[i]`` (default: decreasing 0.6^i, the listing order)."""
        weights = list(weights or [0.6**i for i in range(len(values))])
        total, cumulative, arms = sum(weights), 0.0, []
        for value, weight in zip(values[:-1], weights[:-1], strict=True):
            cumulative += weight / total
            arms.append(f"WHEN {u} < {cumulative!r} THEN {lit(value)}")
        return f"(CASE {' '.join(arms)} ELSE {lit(values[-1])} END)" if arms else lit(values[-1])

    def trend(self, effect: float) -> str:
        """A treatment effect that reaches ``effect`` at week 24 of a trial (nothing outside trials)."""
        return f"(CAST(least(wk, 24) AS DOUBLE) / 24 * CASE WHEN arm1 THEN {effect} ELSE {effect / 3:.3f} END)"


def _icd(ctx: Ctx, name: str) -> str:
    """Row-level diagnoses: mostly the person's main condition, sometimes another listed one."""
    codes = ctx.categories(name)
    flags = {"E11": "dm", "I10": "htn", "I11": "htn", "C22": "liver", "K74": "liver", "K76": "liver"}
    main = ctx.pick(ctx.pu("icd." + name), codes)
    if flag := flags.get(codes[0][:3]):
        main = f"(CASE WHEN {flag} THEN {lit(codes[0])} ELSE {main} END)"
    return f"(CASE WHEN {ctx.ru('icd.' + name)} < 0.7 THEN {main} ELSE {ctx.pick(ctx.ru('icd2.' + name), codes)} END)"


def generic(ctx: Ctx, spec: dict[str, Any]) -> str:
    name, type_ = spec["name"], spec["type"]
    if spec.get("categories"):
        if spec.get("code_system") == "ICD-10" and name not in PERSON_LEVEL:
            return _icd(ctx, name)
        u = ctx.pu("cat." + name) if name in PERSON_LEVEL else ctx.ru("cat." + name)
        return ctx.pick(u, spec["categories"], WEIGHTS.get(name))
    lo, hi = spec.get("min"), spec.get("max")
    if type_ in ("integer", "number"):
        lo = 0 if lo is None else lo
        hi = lo + 100 if hi is None else hi
        return f"({lo} + {hi - lo} * {ctx.ru('num.' + name)})"
    if type_ == "date":
        return "d"
    if type_ == "boolean":
        return f"({ctx.ru('flag.' + name)} < 0.2)"
    return f"('{name[:1].upper()}' || substr(md5(concat({lit(ctx.row_key)}, p, ':', j)), 1, 10))"


def helpers(ctx: Ctx) -> list[tuple[str, str]]:
    """Latent variables ``(name, SQL)`` in dependency order: each may use those before it."""
    c, pr = ctx, ctx.profile
    span = (ctx.end - ctx.start).days + 1
    weeks = c.categories("visit_week") if c.has("visit_week") else [0]
    districts = [x for x in DISTRICTS if x != RARE_DISTRICT]
    catchment = [_POPULATION[x] * (1.8 if x in _CENTRAL else 1.0) for x in districts]
    lab_cases = [
        "a1c", "0.85 * (1.59 * a1c - 2.59) + 0.4 * " + c.rn("glu"), "ldl_v", "ldl_v + 1.9 + 0.3 * " + c.rn("tc"),
        f"exp(ln(1.4) + 0.45 * {c.pn('tg')} + CASE WHEN dm THEN 0.2 ELSE 0 END + 0.15 * {c.rn('tg')})", "alt_v",
        f"0.8 * alt_v + 5 + 3 * {c.rn('ast')}", "7000.0 / egfr_v", "egfr_v", "afp_v",
    ]  # fmt: skip
    stay = f"greatest(1, round(exp(ln(7) + 0.5 * {c.rn('los')})))"
    all_inpatient = c.has("discharge_date")
    age = ctx.fields.get("age", {})
    age_lo = 18 if age.get("min") is None else age["min"]
    age_hi = (105 if age.get("max") is None else age["max"]) - 10
    return [
        ("pid", f"'P' || substr(md5(concat({lit(ctx.person_key)}, ':', p)), 1, 12)"),
        ("age0", f"greatest({age_lo}, least({age_hi}, {pr.age_mean} + {pr.age_sd} * {c.pn('age')}))"),
        ("sev", c.pn("sev")),
        ("male", f"{c.pu('sex')} < {pr.male}"),
        ("dm", f"{c.pu('dm')} < {pr.dm}"),
        ("htn", f"{c.pu('htn')} < {pr.htn}"),
        ("liver", f"{c.pu('liver')} < {pr.liver}"),
        ("smoker", f"{c.pu('smoke')} < CASE WHEN male THEN 0.45 ELSE 0.03 END"),
        ("employee", f"{c.pu('scheme')} < 0.7"),
        ("arm1", f"{c.pu('arm')} >= 0.5"),
        ("inpatient", "true" if all_inpatient else f"{c.ru('setting')} < 0.15"),
        ("wk", f"{lit(weeks)}[j + 1]" if len(weeks) > 1 else "0"),
        ("d", f"DATE '{ctx.start}' + CAST(floor({span} * (j + {c.ru('d')}) / n) AS INTEGER)"),
        ("yrs", f"date_diff('day', DATE '{ctx.start}', d) / 365.25"),
        ("agev", "age0 + yrs"),
        ("dur", f"1 + 14 * pow({c.pu('dur')}, 1.5)"),
        ("h", f"CASE WHEN male THEN 171 ELSE 159 END + 5.5 * {c.pn('height')}"),
        ("bmi_v", f"23.4 + 3.2 * {c.pn('bmi')} + CASE WHEN dm THEN 2 ELSE 0 END + 0.4 * {c.rn('bmi')}"),
        ("sbp_v", f"CASE WHEN htn THEN 146 ELSE 119 END + 0.35 * (agev - 50) + 9 * {c.pn('sbp')} "
                  f"+ 7 * {c.rn('sbp')} - {c.trend(5.0)}"),
        ("a1c", f"CASE WHEN dm THEN 7.6 + 1.1 * sev ELSE 5.4 + 0.25 * sev END + 0.03 * yrs "
                f"+ 0.3 * {c.rn('a1c')} - {c.trend(0.9)}"),
        ("ldl_v", f"2.9 + 0.7 * {c.pn('ldl')} + 0.25 * {c.rn('ldl')} - CASE WHEN dm THEN 0.3 ELSE 0 END"),
        ("alt_v", f"exp(ln(22) + 0.35 * {c.pn('alt')} + 0.25 * {c.rn('alt')} + 0.03 * (bmi_v - 23) "
                  f"+ CASE WHEN liver THEN 0.5 ELSE 0 END)"),
        ("egfr_v", f"105 - 0.9 * (agev - 30) - CASE WHEN dm THEN 8 ELSE 0 END + 12 * {c.pn('egfr')} "
                   f"+ 4 * {c.rn('egfr')}"),
        ("afp_v", f"CASE WHEN liver THEN exp(ln(60) + 2.2 * {c.pn('afp')} + 0.4 * {c.rn('afp')}) "
                  f"ELSE exp(ln(3) + 0.4 * {c.pn('afp')} + 0.1 * {c.rn('afp')}) END"),
        ("k", c.pick(c.ru("analyte"), list(range(len(_ANALYTES))), [a[0] for a in _ANALYTES])),
        ("res", "round(least(5000, greatest(0, CASE k "
                + " ".join(f"WHEN {i} THEN {e}" for i, e in enumerate(lab_cases)) + " END)), 2)"),
        ("stay", stay if all_inpatient else f"CASE WHEN inpatient THEN {stay} ELSE 0 END"),
        ("cost", f"CASE WHEN inpatient THEN exp(ln(9000) + 0.6 * {c.rn('cost')} + 0.03 * stay) "
                 f"ELSE exp(ln(320) + 0.8 * {c.rn('cost')}) END"),
        ("total", "round(least(800000, cost), 2)"),
        ("fund", "round(total * CASE WHEN employee THEN 0.8 ELSE 0.6 END "
                 "* CASE WHEN inpatient THEN 1.0 ELSE 0.8 END, 2)"),
        ("stage", f"CAST(least(4, {c.pick(c.pu('bclc'), [0, 1, 2, 3, 4], [0.08, 0.3, 0.25, 0.3, 0.07])} "
                  "+ j // 5) AS INTEGER)"),
        ("tx", "CASE stage " + " ".join(
            f"WHEN {s} THEN {c.pick(c.ru('tx'), [0, 1, 2, 3, 4, 5], w)}" for s, w in enumerate([
                [0.55, 0.35, 0.05, 0.0, 0.05, 0.0], [0.45, 0.35, 0.15, 0.0, 0.05, 0.0],
                [0.1, 0.05, 0.65, 0.2, 0.0, 0.0], [0.0, 0.0, 0.3, 0.6, 0.0, 0.1], [0.0, 0.0, 0.0, 0.1, 0.1, 0.8],
            ])) + " END"),
        ("stype", c.pick(c.pu("cat.stroke_type"), [0, 1, 2, 3], WEIGHTS["stroke_type"])),
        ("nihss", f"CASE WHEN stype = 2 THEN floor(2 * {c.ru('nihss')}) "
                  f"ELSE round(exp(1.6 + 0.85 * {c.rn('nihss')})) END"),
        ("district_v", f"CASE WHEN p < {ctx.rare} THEN {lit(RARE_DISTRICT)} "
                       f"ELSE {c.pick(c.pu('district'), districts, catchment)} END"),
    ]  # fmt: skip


def _flag(ctx: Ctx, tag: str, yes: float | str, condition: str, otherwise: float = 0.0, row: bool = False) -> str:
    """A yes/no draw with probability ``yes`` when ``condition`` holds, else ``otherwise``."""
    u = ctx.ru(tag) if row else ctx.pu(tag)
    return f"(CASE WHEN {condition} THEN {u} < {yes} ELSE {u} < {otherwise} END)"


def _fields() -> dict[str, Callable[[Ctx], str]]:
    lab_codes = list(LAB_UNITS)
    return {
        "person_id": lambda c: "pid",
        "age": lambda c: "agev",
        "sex": lambda c: "(CASE WHEN male THEN 'M' ELSE 'F' END)",
        "district": lambda c: "district_v",
        "birth_year": lambda c: f"{c.start.year} - age0",
        "diagnosis_year": lambda c: f"{c.start.year} + 3 - floor(18 * pow({c.pu('dxy')}, 1.5))",
        "exam_year": lambda c: "year(d)",
        "height_cm": lambda c: "h",
        "weight_kg": lambda c: f"bmi_v * pow(h / 100, 2) - {c.trend(2.4)}",
        "bmi": lambda c: "bmi_v",
        "waist_cm": lambda c: f"13 + 2.9 * bmi_v + CASE WHEN male THEN 5 ELSE 0 END + 3 * {c.rn('waist')}",
        "sbp": lambda c: "sbp_v",
        "dbp": lambda c: f"0.5 * sbp_v + 15 + 5 * {c.rn('dbp')}",
        "hba1c": lambda c: "a1c",
        "baseline_hba1c": lambda c: "a1c",
        "fasting_glucose": lambda c: f"0.85 * (1.59 * a1c - 2.59) + 0.4 * {c.rn('glu')}",
        "ldl": lambda c: "ldl_v",
        "total_cholesterol": lambda c: f"ldl_v + 1.9 + 0.3 * {c.rn('tc')}",
        "alt": lambda c: "alt_v",
        "egfr": lambda c: "egfr_v",
        "baseline_egfr": lambda c: "egfr_v",
        "afp": lambda c: "afp_v",
        "albumin": lambda c: f"41 - CASE WHEN liver THEN 4 ELSE 0 END - 2 * stage + 3 * {c.rn('alb')}",
        "smoker": lambda c: "smoker",
        "fatty_liver": lambda c: (
            f"(CASE WHEN (bmi_v - 24) / 3 + 0.8 * {c.pn('fl')} < 0.3 THEN 'none' "
            f"WHEN (bmi_v - 24) / 3 + 0.8 * {c.pn('fl')} < 1.1 THEN 'mild' "
            f"WHEN (bmi_v - 24) / 3 + 0.8 * {c.pn('fl')} < 1.9 THEN 'moderate' ELSE 'severe' END)"),
        "loinc_code": lambda c: "(CASE k " + " ".join(
            f"WHEN {i} THEN {lit(x)}" for i, x in enumerate(lab_codes)) + " END)",
        "result": lambda c: "res",
        "unit": lambda c: "(CASE k " + " ".join(
            f"WHEN {i} THEN {lit(LAB_UNITS[x])}" for i, x in enumerate(lab_codes)) + " END)",
        "abnormal_flag": lambda c: "(CASE k " + " ".join(
            f"WHEN {i} THEN (CASE WHEN res < {lo} THEN 'L' WHEN res > {hi} THEN 'H' ELSE 'N' END)"
            for i, (_, lo, hi) in enumerate(_ANALYTES)) + " END)",
        "education": lambda c: (
            f"(CASE WHEN age0 > 60 THEN {c.pick(c.pu('edu'), c.categories('education'), [0.45, 0.4, 0.15])} "
            f"ELSE {c.pick(c.pu('edu'), c.categories('education'), [0.12, 0.45, 0.43])} END)"),
        "smoking_status": lambda c: f"(CASE WHEN smoker THEN 'current' WHEN {_flag(c, 'former', 0.25, 'male', 0.02)} "
                                    "THEN 'former' ELSE 'never' END)",
        "alcohol_drinks_week": lambda c: f"CASE WHEN {_flag(c, 'drinks', 0.5, 'male', 0.12)} "
                                         f"THEN exp(1.2 + 0.9 * {c.pn('alc')}) ELSE 0 END",
        "activity_min_week": lambda c: f"exp(ln(150) + 0.9 * {c.pn('act')})",
        "sleep_hours": lambda c: f"7 + 0.9 * {c.pn('sleep')} - 0.01 * (agev - 50)",
        "hypertension_diagnosed": lambda c: _flag(c, "aware.htn", 0.7, "htn"),
        "diabetes_diagnosed": lambda c: _flag(c, "aware.dm", 0.6, "dm"),
        "setting": lambda c: "(CASE WHEN inpatient THEN 'inpatient' ELSE 'outpatient' END)",
        "metformin": lambda c: _flag(c, "metformin", 0.7, "dm", 0.01),
        "sglt2i": lambda c: _flag(c, "sglt2i", "0.05 + 0.04 * yrs", "dm"),
        "glp1ra": lambda c: _flag(c, "glp1ra", "0.02 + 0.025 * yrs", "dm"),
        "insulin": lambda c: _flag(c, "insulin", "0.1 + 0.1 * (sev > 1)::INTEGER", "dm"),
        "scheme": lambda c: "(CASE WHEN employee THEN 'employee' ELSE 'resident' END)",
        "total_cost": lambda c: "total",
        "fund_paid": lambda c: "fund",
        "out_of_pocket": lambda c: "total - fund",
        "drug_cost": lambda c: f"total * (0.25 + 0.35 * {c.ru('drug')})",
        "length_of_stay": lambda c: f"date_diff('day', d, least(d + CAST(stay AS INTEGER), DATE '{c.end}'))"
        if c.has("discharge_date") else "stay",
        "discharge_date": lambda c: f"least(d + CAST(stay AS INTEGER), DATE '{c.end}')",
        "contrast": lambda c: f"({c.pick(c.ru('cat.modality'), [0, 1, 2], WEIGHTS['modality'])} < 2 "
                              f"AND {c.ru('contrast')} < 0.85)",
        "lesion_count": lambda c: f"1 + floor(-ln(1 - {c.pu('lesions')}) * CASE WHEN liver THEN 1.5 ELSE 0.6 END)",
        "largest_lesion_mm": lambda c: f"CASE WHEN liver THEN exp(ln(28) + 0.6 * {c.pn('size')}) "
                                       f"ELSE exp(ln(12) + 0.5 * {c.pn('size')}) END * (1 + 0.1 * {c.rn('size')})",
        "cirrhosis": lambda c: _flag(c, "cirrhosis", 0.65, "liver", 0.05),
        "portal_vein_thrombus": lambda c: _flag(c, "pvt", 0.12, "liver", row=True),
        "hbv_positive": lambda c: _flag(c, "hbv", 0.85, "liver", 0.07),
        "bclc_stage": lambda c: "(['0', 'A', 'B', 'C', 'D'])[stage + 1]",
        "treatment": lambda c: f"({lit(c.categories('treatment'))})[tx + 1]",
        "treatment_cost": lambda c: "(CASE tx WHEN 0 THEN 80000 WHEN 1 THEN 40000 WHEN 2 THEN 35000 WHEN 3 THEN 120000 "
                                    f"WHEN 4 THEN 600000 ELSE 8000 END) * exp(0.4 * {c.rn('txcost')})",
        "survival_months": lambda c: f"least(date_diff('month', d, DATE '{c.end}'), "
                                     f"[60, 48, 26, 12, 4][stage + 1] * exp(0.7 * {c.pn('surv')}))",
        "stroke_type": lambda c: f"({lit(c.categories('stroke_type'))})[stype + 1]",
        "nihss": lambda c: "nihss",
        "onset_to_door_min": lambda c: f"exp(ln(180) + 1.0 * {c.rn('door')})",
        "thrombolysis": lambda c: f"(stype = 0 AND {c.ru('tl')} < 0.22)",
        "thrombectomy": lambda c: f"(stype = 0 AND {c.ru('te')} < 0.04 + 0.01 * nihss)",
        "mrs_90d": lambda c: f"nihss / 5 + (agev - 65) / 25 + 0.9 * {c.rn('mrs')}",
        "hospitalisation_cost": lambda c: f"exp(ln(16000) + 0.45 * {c.rn('hcost')} + 0.04 * stay)",
        "arm": lambda c: "(CASE WHEN arm1 THEN 'sglt2i_10mg' ELSE 'placebo' END)",
        "randomised_on": lambda c: f"DATE '{c.start}' + CAST(floor(365 * {c.pu('rand')}) AS INTEGER)",
        "completed": lambda c: f"({c.pu('completed')} < 0.9)",
        "visit_week": lambda c: "wk",
        "adverse_event": lambda c: f"(CASE WHEN wk = 0 THEN 'none' WHEN arm1 THEN "
                                   f"{c.pick(c.ru('ae'), c.categories('adverse_event'), [84, 4, 6, 3, 2.5, 0.5])} ELSE "
                                   f"{c.pick(c.ru('ae'), c.categories('adverse_event'), [90, 4, 1, 3.5, 1, 0.5])} END)",
        "assessed_on": lambda c: "d",
        "age_at_onset": lambda c: "agev - dur",
        "family_history": lambda c: f"({c.pu('fh')} < 0.12)",
        "lrrk2_g2385r": lambda c: f"({c.pu('g2385r')} < 0.09)",
        "lrrk2_r1628p": lambda c: f"({c.pu('r1628p')} < 0.04)",
        "gba1_carrier": lambda c: f"({c.pu('gba1')} < 0.07)",
        "prkn_biallelic": lambda c: _flag(c, "prkn", 0.15, "agev - dur < 45", 0.01),
        "hoehn_yahr": lambda c: f"({lit(c.categories('hoehn_yahr'))})[1 + CAST(least(6, greatest(0, "
                                f"floor(dur / 3 + 1.2 * {c.pn('hy')} + 0.5))) AS INTEGER)]",
        "updrs_iii": lambda c: f"12 + 3.2 * dur + 8 * {c.pn('updrs')}",
        "moca": lambda c: f"27 - 0.25 * dur - 0.08 * (agev - 60) + 2 * {c.pn('moca')}",
        "levodopa_equivalent_mg": lambda c: f"150 + 55 * dur + 120 * {c.pn('led')}",
    }  # fmt: skip


FIELDS = _fields()

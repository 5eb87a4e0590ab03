"""The grade policy: PRODUCT.md's table pinned literally, and LODE_POLICY_FILE only ever tightening it.

Adding a field to ``GradeRule``: write its default for each grade into the tables below, then
register how a policy file sets it in ``SETTABLE`` (the values that would loosen it and one that
tightens it) or say in ``NOT_SETTABLE`` why a file may not set it. Until both are done the tests
below fail and name the field.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest

from catalog import policy
from catalog.policy import DEFAULT_RULES, GRADES, LICENSABLE_BY, MICRO, MODES, TRACKS, Dominance, GradeRule
from tests.conftest import make_settings

FIELDS = tuple(GradeRule.__struct_fields__)

# --- PRODUCT.md's grade table, written out ------------------------------------------------------

# "The grade policy": grade, name, may licence (and whether analysts are named), delivery modes,
# outside the product's jurisdiction ("abroad"); then its review tracks.
# fmt: off
GRADE_TABLE: dict[str, tuple[Any, ...]] = {
    #      name                             may licence                 named  delivery modes               abroad
    "L1": ("Open 公开",                     "registered",               False, "download, rows, aggregate", True),
    "L2": ("Registered 登记",               "verified",                 False, "download, rows, aggregate", True),
    "L3": ("Contract + ethics 协议+伦理",   "verified",                 True,  "rows, aggregate",           False),
    "L4": ("Usable-not-visible 可用不可见", "verified",                 True,  "aggregate",                 False),
    "L5": ("Restricted 严格受限",           "verified_in_jurisdiction", True,  "dp_aggregate",              False),
}
GRADE_COLUMNS = ("name", "licensable_by", "named_analysts", "modes", "cross_border")
REVIEW_TRACKS: dict[str, str] = {
    "L1": "none",
    "L2": "none",
    "L3": "provider, ethics, compliance",
    "L4": "provider, ethics, security, compliance",
    "L5": "provider, ethics, security, compliance, operator",
}

# The privacy-controls column and the paragraphs under it: k = 10 everywhere; L3 up: ethics approval
# at every access, sensitive columns never selected, filtered or grouped by; L4: "L4, revised" — the
# L4 issue's anonymisation (layered sticky noise, low-effect detection, noisy thresholds, grids, caps,
# outlier flattening) replaces secondary suppression, the dominance rule, cell-key perturbation and
# query-set-size control, and keeps only count, sum and avg; "L5 differential privacy" (3.0 ε in
# total, at most 0.5 per query).
ANY = {"count", "count_distinct", "sum", "avg", "min", "max"}
L4_ISSUE = policy.Anonymisation(  # the L4 issue's defaults, as the red team measured them
    layer_sd=1.5,
    min_persons=20,
    threshold_sd=2.0,
    max_conditions=10,
    daily_queries=1000,
    isolating_share=0.5,
    outliers=(1, 2),
    top_group=(3, 4),
)
CONTROLS_TABLE: dict[str, tuple[Any, ...]] = {
    #      k   ethics sensitive secondary dominance  perturb qset   anonymised aggregates               ε total ε/query
    "L1": (10, False, True,     False,    None,      False,  False, None,      ANY,                     None,   None),
    "L2": (10, False, True,     False,    None,      False,  False, None,      ANY,                     None,   None),
    "L3": (10, True,  False,    False,    None,      False,  False, None,      ANY,                     None,   None),
    "L4": (10, True,  False,    False,    None,      False,  False, L4_ISSUE,  {"count", "sum", "avg"}, None,   None),
    "L5": (10, True,  False,    False,    None,      False,  False, None,      {"count", "sum", "avg"}, 3.0,    0.5),
}
CONTROLS_COLUMNS = (
    "k", "ethics_required", "sensitive_columns", "secondary_suppression", "dominance", "perturbation",
    "query_set_control", "anonymisation", "aggregates", "epsilon_total_micro", "epsilon_per_query_micro",
)

# Not columns of PRODUCT.md's table, pinned all the same: "Lifecycles" (listing L4/L5 also needs the
# operator's security role), API.md's register (a public summary from L3 up), DCAT-AP's access right
# and the measured quality a listing needs (none, unless a policy file asks; the quality issue).
OTHER_TABLE: dict[str, tuple[Any, ...]] = {
    #      listing_roles            public_summary access_rights  min_quality
    "L1": (("curator",),            False,         "PUBLIC",      None),
    "L2": (("curator",),            False,         "RESTRICTED",  None),
    "L3": (("curator",),            True,          "RESTRICTED",  None),
    "L4": (("curator", "security"), True,          "RESTRICTED",  None),
    "L5": (("curator", "security"), True,          "NON_PUBLIC",  None),
}
OTHER_COLUMNS = ("listing_roles", "public_summary", "access_rights", "min_quality")
# fmt: on


def written_out(grade: str) -> dict[str, Any]:
    """The tables' row for ``grade`` in GradeRule's own terms (ε as micro-ε, dominance as a Struct)."""
    row: dict[str, Any] = {"grade": grade}
    row.update(zip(GRADE_COLUMNS, GRADE_TABLE[grade], strict=True))
    row["tracks"] = REVIEW_TRACKS[grade]
    row.update(zip(CONTROLS_COLUMNS, CONTROLS_TABLE[grade], strict=True))
    row.update(zip(OTHER_COLUMNS, OTHER_TABLE[grade], strict=True))
    row["modes"] = frozenset(row["modes"].split(", "))
    row["tracks"] = tuple(t for t in row["tracks"].split(", ") if t != "none")
    row["aggregates"] = frozenset(row["aggregates"])
    for key in ("epsilon_total_micro", "epsilon_per_query_micro"):
        row[key] = None if row[key] is None else round(row[key] * MICRO)
    row["dominance"] = None if row["dominance"] is None else Dominance(*row["dominance"])
    return row


class TestTheGradeTable:
    def test_every_grade_rule_field_is_written_out(self) -> None:
        columns = {"grade", "tracks", *GRADE_COLUMNS, *CONTROLS_COLUMNS, *OTHER_COLUMNS}
        assert set(FIELDS) - columns == set(), "write each new GradeRule field's defaults into a table here"
        assert columns - set(FIELDS) == set()

    @pytest.mark.parametrize("grade", GRADES)
    def test_the_default_rules_are_product_md_s_table(self, grade: str) -> None:
        assert msgspec.structs.asdict(DEFAULT_RULES[grade]) == written_out(grade)

    def test_the_grades_are_the_five_levels(self) -> None:
        assert list(DEFAULT_RULES) == list(GRADES) == ["L1", "L2", "L3", "L4", "L5"]


# --- LODE_POLICY_FILE may only tighten ----------------------------------------------------------

Values = Callable[[GradeRule], list[tuple[str, Any]]]


@dataclass(frozen=True)
class Settable:
    """How a policy file sets one GradeRule field: its TOML key, every value that would loosen a
    grade's default (or is not a value of that key at all), and one value that tightens it."""

    key: str
    looser: Values
    tighter: Callable[[GradeRule], Any]  # None when the default is already the tightest


def switch_off(field: str) -> Settable:
    """A control that may be switched on and never off."""
    return Settable(
        field,
        lambda r: ([("off", False)] if getattr(r, field) else []) + [("not a bool", "no")],
        lambda r: None if getattr(r, field) else True,
    )


def switch_on(field: str) -> Settable:
    """A permission that may be withdrawn and never granted."""
    return Settable(
        field,
        lambda r: ([("on", True)] if not getattr(r, field) else []) + [("not a bool", 0)],
        lambda r: False if getattr(r, field) else None,
    )


def older_control(field: str) -> Settable:
    """A control L4 had before its revision: a file may switch it on and never off where aggregates are
    not anonymised; where they are, switching it on would bring back an oracle, so that loosens too."""

    def looser(r: GradeRule) -> list[tuple[str, Any]]:
        found = [("off", False)] if getattr(r, field) else []
        if r.anonymisation is not None:
            found.append(("on where aggregates are anonymised", True))
        return [*found, ("not a bool", "no")]

    return Settable(field, looser, lambda r: None if getattr(r, field) or r.anonymisation is not None else True)


def anonymisation_rule() -> Settable:
    """L4's anonymisation: each setting only ever tightened, and only where a grade anonymises."""

    def looser(r: GradeRule) -> list[tuple[str, Any]]:
        a = r.anonymisation
        if a is None:
            return [("where aggregates are not anonymised", {"layer_sd": 3.0})]
        return [
            ("less noise", {"layer_sd": a.layer_sd / 2}),
            ("a lower floor", {"min_persons": a.min_persons - 1}),
            ("sharper thresholds", {"threshold_sd": a.threshold_sd / 2}),
            ("more conditions", {"max_conditions": a.max_conditions + 1}),
            ("more queries a day", {"daily_queries": a.daily_queries + 1}),
            ("fewer isolating columns", {"isolating_share": min(1.0, a.isolating_share + 0.1)}),
            ("no queries", {"daily_queries": 0}),
            ("a fractional floor", {"min_persons": a.min_persons + 0.5}),
            ("an unknown setting", {"noise": 0}),
            ("not a table", 2.0),
        ]

    return Settable("anonymisation", looser, lambda r: None if r.anonymisation is None else {"layer_sd": 3.0})


def subset(field: str, everything: tuple[str, ...] | frozenset[str]) -> Settable:
    """A set a file may only shrink."""

    def looser(r: GradeRule) -> list[tuple[str, Any]]:
        base = set(getattr(r, field))
        more = [(f"+{x}", sorted(base | {x})) for x in sorted(everything) if x not in base]
        return [*more, ("unknown", sorted(base | {"everything"})), ("not a list", ",".join(sorted(base)))]

    return Settable(field, looser, lambda r: sorted(getattr(r, field))[1:])


def superset(field: str, everything: tuple[str, ...]) -> Settable:
    """A list of sign-offs a file may only lengthen."""

    def looser(r: GradeRule) -> list[tuple[str, Any]]:
        base = list(getattr(r, field))
        fewer = [(f"-{x}", [y for y in base if y != x]) for x in base]
        return [*fewer, ("unknown", [*base, "anyone"]), ("not a list", base[0] if base else "none")]

    def tighter(r: GradeRule) -> Any:
        extra = [x for x in everything if x not in getattr(r, field)]
        return [*getattr(r, field), extra[0]] if extra else None

    return Settable(field, looser, tighter)


def epsilon(key: str) -> Settable:
    """An ε (in ε, not micro-ε) a file may only lower, and only where the grade has one."""
    field = f"{key}_micro"

    def looser(r: GradeRule) -> list[tuple[str, Any]]:
        limit = getattr(r, field)
        if limit is None:
            return [("no budget at this grade", 0.1)]
        eps = limit / MICRO
        return [
            ("larger", eps * 2),
            ("a micro-ε larger", eps + 1 / MICRO),
            ("zero", 0),
            ("negative", -eps),
            ("a bool", True),
            ("a string", str(eps)),
        ]

    return Settable(key, looser, lambda r: None if getattr(r, field) is None else getattr(r, field) / MICRO / 2)


def k_rule() -> Settable:
    def looser(r: GradeRule) -> list[tuple[str, Any]]:
        return [
            ("smaller", r.k - 1),
            ("zero", 0),
            ("negative", -r.k),
            ("fractional", r.k + 0.5),
            ("a bool", True),
            ("a string", str(r.k + 1)),
        ]

    return Settable("k", looser, lambda r: r.k * 2)


def licensable_by_rule() -> Settable:
    def looser(r: GradeRule) -> list[tuple[str, Any]]:
        rank = LICENSABLE_BY.index(r.licensable_by)
        return [(v, v) for v in LICENSABLE_BY[:rank]] + [("unknown", "anyone")]

    def tighter(r: GradeRule) -> Any:
        rank = LICENSABLE_BY.index(r.licensable_by)
        return LICENSABLE_BY[rank + 1] if rank + 1 < len(LICENSABLE_BY) else None

    return Settable("licensable_by", looser, tighter)


def dominance_rule() -> Settable:
    def looser(r: GradeRule) -> list[tuple[str, Any]]:
        invalid = [
            ("share above 1", {"n": 2, "share": 1.5}),
            ("share zero", {"n": 2, "share": 0}),
            ("unknown key", {"n": 2, "share": 0.9, "min_cells": 1}),
            ("not a table", 0.9),
        ]
        d = r.dominance
        if r.anonymisation is not None:  # an exact test of the data would bring back an oracle
            return [("on where aggregates are anonymised", {"n": 2, "share": 0.95}), *invalid]
        if d is None:
            return invalid
        return [
            ("fewer contributors", {"n": d.n - 1, "share": d.share}),
            ("a larger share", {"n": d.n, "share": min(1.0, d.share + 0.05)}),
            ("fewer contributors only", {"n": d.n - 1}),
            ("a larger share only", {"share": min(1.0, d.share + 0.05)}),
            *invalid,
        ]

    def tighter(r: GradeRule) -> Any:
        d = r.dominance
        if r.anonymisation is not None:
            return None
        return {"n": 2, "share": 0.95} if d is None else {"n": d.n + 1, "share": d.share - 0.1}

    return Settable("dominance", looser, tighter)


# Every GradeRule field a policy file may set, by field name.
def min_quality_rule() -> Settable:
    """Measured quality a listing must reach: set or raised per category, never lowered or misnamed."""
    return Settable(
        "min_quality",
        lambda r: [
            ("a score over 1", {"completeness": 1.5}),
            ("not a category", {"beauty": 0.9}),
            ("not a table", 0.9),
        ],
        lambda r: {"completeness": 0.95},
    )


SETTABLE: dict[str, Settable] = {
    "min_quality": min_quality_rule(),
    "licensable_by": licensable_by_rule(),
    "named_analysts": switch_off("named_analysts"),
    "modes": subset("modes", MODES),
    "tracks": superset("tracks", TRACKS),
    "listing_roles": superset("listing_roles", ("curator", "security", "compliance", "ethics")),
    "ethics_required": switch_off("ethics_required"),
    "cross_border": switch_on("cross_border"),
    "sensitive_columns": switch_on("sensitive_columns"),
    "public_summary": switch_off("public_summary"),
    "k": k_rule(),
    "secondary_suppression": older_control("secondary_suppression"),
    "dominance": dominance_rule(),
    "perturbation": older_control("perturbation"),
    "query_set_control": older_control("query_set_control"),
    "anonymisation": anonymisation_rule(),
    "aggregates": subset("aggregates", policy.ALL_AGGREGATES),
    "epsilon_total_micro": epsilon("epsilon_total"),
    "epsilon_per_query_micro": epsilon("epsilon_per_query"),
}

# Every GradeRule field a policy file may not set at all, and why.
NOT_SETTABLE: dict[str, str] = {
    "grade": "the table's own name",
    "name": "PRODUCT.md's name of the level, not a control",
    "access_rights": "the DCAT-AP term follows from the grade, for every catalogue that reads it",
}


def toml(value: Any) -> str:
    """One TOML value (the test's own writer: Lode only reads TOML)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml(v)}" for k, v in value.items()) + " }"
    raise TypeError(value)


def policy_file(tmp_path: Path, grade: str, key: str, value: Any) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(f"[{grade}]\n{key} = {toml(value)}\n", encoding="utf-8")
    return path


def loosening_cases() -> list[Any]:
    cases = []
    for grade in GRADES:
        base = DEFAULT_RULES[grade]
        for setting in SETTABLE.values():
            for label, value in setting.looser(base):
                cases.append(pytest.param(grade, setting.key, value, id=f"{grade}-{setting.key}-{label}"))
        for field in NOT_SETTABLE:
            value = getattr(base, field)
            cases.append(pytest.param(grade, field, value, id=f"{grade}-{field}-not-settable"))
    return cases


def tightening_cases() -> list[Any]:
    cases = []
    for grade in GRADES:
        for field, setting in SETTABLE.items():
            value = setting.tighter(DEFAULT_RULES[grade])
            if value is not None:
                cases.append(pytest.param(grade, field, setting.key, value, id=f"{grade}-{setting.key}"))
    return cases


class TestPolicyFile:
    def test_every_grade_rule_field_is_registered(self) -> None:
        unregistered = set(FIELDS) - set(SETTABLE) - set(NOT_SETTABLE)
        assert unregistered == set(), "register each new GradeRule field in SETTABLE or NOT_SETTABLE"
        assert set(SETTABLE) & set(NOT_SETTABLE) == set()
        assert set(SETTABLE) | set(NOT_SETTABLE) == set(FIELDS)

    def test_every_settable_field_has_a_loosening_tried_at_some_grade(self) -> None:
        untried = [f for f, s in SETTABLE.items() if not any(s.looser(DEFAULT_RULES[g]) for g in GRADES)]
        assert untried == []

    @pytest.mark.parametrize(("grade", "key", "value"), loosening_cases())
    def test_a_loosening_key_is_refused_by_name(self, tmp_path: Path, grade: str, key: str, value: Any) -> None:
        with pytest.raises(policy.PolicyError) as refused:
            policy.load(policy_file(tmp_path, grade, key, value))
        (problem,) = refused.value.problems
        assert problem.startswith((f"LODE_POLICY_FILE: {grade}.{key} ", f"LODE_POLICY_FILE: {grade}.{key}."))
        why = "is not a policy setting" if key in NOT_SETTABLE else "a policy file may only tighten"
        assert why in problem

    @pytest.mark.parametrize(("grade", "field", "key", "value"), tightening_cases())
    def test_a_tightening_key_is_applied_and_nothing_else_changes(
        self, tmp_path: Path, grade: str, field: str, key: str, value: Any
    ) -> None:
        base = DEFAULT_RULES[grade]
        tightened = policy.load(policy_file(tmp_path, grade, key, value)).rule(grade)
        changed = {f for f in FIELDS if getattr(tightened, f) != getattr(base, f)}
        assert changed == {field}
        assert all(policy.load(None).rule(g) == DEFAULT_RULES[g] for g in GRADES)

    def test_a_key_outside_a_grade_table_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "policy.toml"
        path.write_text('k = 5\n[L6]\nk = 20\n[l4]\nmodes = ["aggregate"]\n', encoding="utf-8")
        with pytest.raises(policy.PolicyError) as refused:
            policy.load(path)
        assert [p.split("]")[0] for p in refused.value.problems] == [
            "LODE_POLICY_FILE: [k",
            "LODE_POLICY_FILE: [L6",
            "LODE_POLICY_FILE: [l4",
        ]

    def test_lode_refuses_to_start_with_a_loosening_file_and_names_every_key(self, tmp_path: Path) -> None:
        path = tmp_path / "policy.toml"
        path.write_text('[L4]\nmodes = ["aggregate", "rows"]\nk = 5\n[L5]\nepsilon_total = 10.0\n', encoding="utf-8")
        from catalog.settings import SettingsError

        with pytest.raises(SettingsError) as refused:
            make_settings(tmp_path, "sqlite+aiosqlite:///unused.db", LODE_POLICY_FILE=str(path))
        named = [p.split(" ")[1] for p in refused.value.problems]
        assert named == ["L4.modes", "L4.k", "L5.epsilon_total"]

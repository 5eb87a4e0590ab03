"""The grade policy: the single source every enforcement point asks.

PRODUCT.md's grade table is written out below as data. An operator may *tighten* it with a TOML
file (``LODE_POLICY_FILE``) and can never loosen it: the file is checked at start and every key
that would loosen a rule is refused by name. Nothing else in Lode compares grades — code asks
``allows(grade, mode)``, ``rule(grade).tracks`` and the like.

    # policy.toml — each table names a grade; every key is optional
    [L2]
    modes = ["rows", "aggregate"]        # a subset of the default modes
    k = 20                               # at least the default minimum cell size
    [L5]
    epsilon_total = 2.0                  # at most the default ε budget
    epsilon_per_query = 0.25
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

import msgspec

GRADES = ("L1", "L2", "L3", "L4", "L5")
MODES = ("download", "rows", "aggregate", "dp_aggregate")
TRACKS = ("provider", "ethics", "security", "compliance", "operator")
ALL_AGGREGATES = frozenset({"count", "count_distinct", "sum", "avg", "min", "max"})
LICENSABLE_BY = ("registered", "verified", "verified_in_jurisdiction")  # from loosest to strictest
MICRO = 1_000_000  # ε is stored and metered as integer micro-ε

LicensableBy = Literal["registered", "verified", "verified_in_jurisdiction"]


class Dominance(msgspec.Struct, frozen=True):
    """A cell is suppressed when its ``n`` largest contributors hold at least ``share`` of its sum."""

    n: int
    share: float

    def holds(self, largest: list[float], total: float) -> bool:
        """Do the ``n`` largest contributions (by size, largest first) hold ``share`` of ``total``?"""
        return total > 0 and sum(largest[: self.n]) >= self.share * total


class Anonymisation(msgspec.Struct, frozen=True, kw_only=True):
    """L4's query-based anonymisation (``catalog/delivery/anonymiser.py``): how much noise, how
    fuzzy the thresholds, how much of a query an analyst may write, and how many queries a day.

    Counts are in persons; a sum's or an average's noise is a count's scaled by the cell's typical
    large contribution (after flattening outliers), so these numbers hold for every aggregate.
    """

    layer_sd: float = 1.5  # SD of each noise layer (one per condition, group value, the table, the query)
    min_persons: int = 20  # the floor of the low-count and low-effect thresholds (never below k)
    threshold_sd: float = 2.0  # how far above the floor those thresholds may fall
    max_conditions: int = 10  # conditions (each value of an in or not_in counting as one) in a where
    daily_queries: int = 1000  # aggregate queries a licence may ask per UTC day
    isolating_share: float = 0.5  # a column unique to one person for more than this share of persons
    # is isolating: it may not be filtered or grouped by (detected at publish; providers may add more)
    outliers: tuple[int, int] = (1, 2)  # how many of a cell's largest contributions are flattened (fixed per cell)
    top_group: tuple[int, int] = (3, 4)  # how many of the next ones they are flattened to


class GradeRule(msgspec.Struct, frozen=True, kw_only=True):
    grade: str
    name: str
    licensable_by: LicensableBy
    named_analysts: bool
    modes: frozenset[str]
    tracks: tuple[str, ...]
    listing_roles: tuple[str, ...]
    ethics_required: bool
    cross_border: bool
    sensitive_columns: bool  # may sensitive columns be selected, filtered or grouped by?
    public_summary: bool  # must an application publish a summary on the data-use register?
    access_rights: str  # the EU access-right term DCAT-AP exports: PUBLIC, RESTRICTED or NON_PUBLIC
    k: int
    secondary_suppression: bool
    dominance: Dominance | None
    perturbation: bool  # cell-key perturbation (noise from the contributing rows alone)
    query_set_control: bool  # exact-k refusals of small query sets
    anonymisation: Anonymisation | None  # layered sticky noise, low-effect detection, … (L4)
    aggregates: frozenset[str]
    epsilon_total_micro: int | None
    epsilon_per_query_micro: int | None
    # The measured quality a product's newest release must reach before it is listed, by category
    # (conformance, completeness, plausibility); none by default, a policy file may set it.
    min_quality: dict[str, float] | None = None

    def allows(self, mode: str) -> bool:
        return mode in self.modes


_COMMON: dict[str, Any] = {
    "k": 10,
    "secondary_suppression": False,
    "dominance": None,
    "perturbation": False,
    "query_set_control": False,
    "anonymisation": None,
    "aggregates": ALL_AGGREGATES,
    "epsilon_total_micro": None,
    "epsilon_per_query_micro": None,
    "listing_roles": ("curator",),
}

DEFAULT_RULES: dict[str, GradeRule] = {
    "L1": GradeRule(
        **_COMMON,
        grade="L1",
        public_summary=False,
        access_rights="PUBLIC",
        name="Open 公开",
        licensable_by="registered",
        named_analysts=False,
        modes=frozenset({"download", "rows", "aggregate"}),
        tracks=(),
        ethics_required=False,
        cross_border=True,
        sensitive_columns=True,
    ),
    "L2": GradeRule(
        **_COMMON,
        grade="L2",
        public_summary=False,
        access_rights="RESTRICTED",
        name="Registered 登记",
        licensable_by="verified",
        named_analysts=False,
        modes=frozenset({"download", "rows", "aggregate"}),
        tracks=(),
        ethics_required=False,
        cross_border=True,
        sensitive_columns=True,
    ),
    "L3": GradeRule(
        **_COMMON,
        grade="L3",
        public_summary=True,
        access_rights="RESTRICTED",
        name="Contract + ethics 协议+伦理",
        licensable_by="verified",
        named_analysts=True,
        modes=frozenset({"rows", "aggregate"}),
        tracks=("provider", "ethics", "compliance"),
        ethics_required=True,
        cross_border=False,
        sensitive_columns=False,
    ),
    "L4": GradeRule(
        **{
            **_COMMON,
            "listing_roles": ("curator", "security"),
            # Replaced by the anonymisation: noise that is a function of the contributing rows alone,
            # and refusals that depend on the data, are the oracles the L4 red team exploits; outlier
            # flattening takes the dominance rule's place (which withheld on an exact test of the data).
            "anonymisation": Anonymisation(),
            "aggregates": frozenset({"count", "sum", "avg"}),
        },
        grade="L4",
        public_summary=True,
        access_rights="RESTRICTED",
        name="Usable-not-visible 可用不可见",
        licensable_by="verified",
        named_analysts=True,
        modes=frozenset({"aggregate"}),
        tracks=("provider", "ethics", "security", "compliance"),
        ethics_required=True,
        cross_border=False,
        sensitive_columns=False,
    ),
    "L5": GradeRule(
        **{
            **_COMMON,
            "listing_roles": ("curator", "security"),
            "epsilon_total_micro": 3 * MICRO,
            "epsilon_per_query_micro": MICRO // 2,
            "aggregates": frozenset({"count", "sum", "avg"}),
        },
        grade="L5",
        public_summary=True,
        access_rights="NON_PUBLIC",
        name="Restricted 严格受限",
        licensable_by="verified_in_jurisdiction",
        named_analysts=True,
        modes=frozenset({"dp_aggregate"}),
        tracks=("provider", "ethics", "security", "compliance", "operator"),
        ethics_required=True,
        cross_border=False,
        sensitive_columns=False,
    ),
}


class Policy(msgspec.Struct, frozen=True):
    rules: dict[str, GradeRule]

    def rule(self, grade: str) -> GradeRule:
        return self.rules[grade]


DEFAULT_POLICY = Policy(rules=DEFAULT_RULES)
_active: Policy = DEFAULT_POLICY


class PolicyError(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


# --- the questions every enforcement point asks -------------------------------------------------


def install(policy: Policy) -> None:
    global _active
    _active = policy


def rule(grade: str) -> GradeRule:
    return _active.rule(grade)


def allows(grade: str, mode: str) -> bool:
    """May a product of this grade be delivered in this mode at all?"""
    return _active.rule(grade).allows(mode)


def rank(grade: str) -> int:
    return GRADES.index(grade)


def is_stricter(new: str, old: str) -> bool:
    return rank(new) > rank(old)


def org_standing_refusal(grade: str, org_status: str, in_jurisdiction: bool) -> str | None:
    """Why an organisation of this standing may not license this grade (``licensable_by``), or None:
    ``org_not_verified``, or ``cross_border`` when the grade admits only organisations inside the
    product's jurisdiction."""
    needs = _active.rule(grade).licensable_by
    if org_status == "rejected" or (needs != "registered" and org_status != "verified"):
        return "org_not_verified"
    if needs == "verified_in_jurisdiction" and not in_jurisdiction:
        return "cross_border"
    return None


def listing_quality_refusal(grade: str, measured: dict[str, Any] | None) -> str | None:
    """Why a product's measured quality keeps it from being listed at this grade, or None."""
    minimum = _active.rule(grade).min_quality
    if not minimum:
        return None
    scores = (measured or {}).get("scores") or {}
    if not scores:
        return f"{grade} requires measured quality ({_wanted(minimum)}): publish a release first."
    short = [f"{c} {scores.get(c)} < {m}" for c, m in minimum.items() if (scores.get(c) or 0) < m]
    return f"{grade} requires {_wanted(minimum)}; measured {', '.join(short)}." if short else None


def _wanted(minimum: dict[str, float]) -> str:
    return ", ".join(f"{c} ≥ {m}" for c, m in sorted(minimum.items()))


def licensable_modes(grade: str, plan_modes: list[str] | None, terms_remove: set[str]) -> list[str]:
    """grade ∩ plan ∩ terms, in the canonical order."""
    allowed = set(_active.rule(grade).modes)
    if plan_modes is not None:
        allowed &= set(plan_modes)
    allowed -= terms_remove
    return [m for m in MODES if m in allowed]


# --- tightening from a file ---------------------------------------------------------------------


def load(path: Path | None) -> Policy:
    """The default policy tightened by ``path``; PolicyError lists every key that is not allowed."""
    if path is None:
        return DEFAULT_POLICY
    try:
        document = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise PolicyError([f"LODE_POLICY_FILE {str(path)!r} is not readable TOML: {exc}"]) from None
    problems: list[str] = []
    rules = dict(DEFAULT_RULES)
    for grade, table in document.items():
        if grade not in GRADES or not isinstance(table, dict):
            problems.append(f"LODE_POLICY_FILE: [{grade}] is not a grade; use one of {', '.join(GRADES)}.")
            continue
        rules[grade] = _tighten(DEFAULT_RULES[grade], table, problems)
    if problems:
        raise PolicyError(problems)
    return Policy(rules=rules)


def _tighten(base: GradeRule, table: dict[str, Any], problems: list[str]) -> GradeRule:
    changes: dict[str, Any] = {}
    g = base.grade

    def refuse(key: str, why: str) -> None:
        problems.append(f"LODE_POLICY_FILE: {g}.{key} {why}; a policy file may only tighten the grade policy.")

    for key, value in table.items():
        if key == "modes":
            if not _is_str_list(value) or not set(value) <= base.modes:
                refuse(key, f"must be a subset of {sorted(base.modes)}")
            else:
                changes["modes"] = frozenset(value)
        elif key == "aggregates":
            if not _is_str_list(value) or not set(value) <= base.aggregates:
                refuse(key, f"must be a subset of {sorted(base.aggregates)}")
            else:
                changes["aggregates"] = frozenset(value)
        elif key in ("tracks", "listing_roles"):
            allowed = TRACKS if key == "tracks" else ("curator", "security", "compliance", "ethics")
            if not _is_str_list(value) or not set(getattr(base, key)) <= set(value) <= set(allowed):
                refuse(key, f"must include {list(getattr(base, key))} and only use {list(allowed)}")
            else:
                changes[key] = tuple(t for t in allowed if t in value)
        elif key == "k":
            if not isinstance(value, int) or isinstance(value, bool) or value < base.k:
                refuse(key, f"must be a whole number of at least {base.k}")
            else:
                changes["k"] = value
        elif key == "min_quality":
            categories = ("conformance", "completeness", "plausibility")
            current = base.min_quality or {}
            if not isinstance(value, dict) or not all(
                c in categories
                and isinstance(v, int | float)
                and not isinstance(v, bool)
                and current.get(c, 0) <= v <= 1
                for c, v in value.items()
            ):
                refuse(key, f"must map {', '.join(categories)} to scores between the current minimum and 1")
            else:
                changes["min_quality"] = {**current, **{c: float(v) for c, v in value.items()}}
        elif key == "licensable_by":
            if value not in LICENSABLE_BY or LICENSABLE_BY.index(value) < LICENSABLE_BY.index(base.licensable_by):
                refuse(key, f"must be at least as strict as {base.licensable_by!r}")
            else:
                changes["licensable_by"] = value
        elif (
            key in ("perturbation", "query_set_control", "secondary_suppression", "dominance")
            and base.anonymisation is not None
        ):
            # Noise from the rows alone, a refusal on the data, a partner cell chosen by true sizes, a cell
            # withheld when its largest contributors dominate: each is an exact test of the data, an
            # oracle the anonymisation replaces (dominance by outlier flattening).
            if value not in (False, None):
                refuse(key, "would weaken the anonymisation, which replaces it")
        elif key == "anonymisation":
            anonymisation = _tighten_anonymisation(base.anonymisation, value, refuse)
            if anonymisation is not None:
                changes["anonymisation"] = anonymisation
        elif key in (
            "named_analysts",
            "ethics_required",
            "secondary_suppression",
            "perturbation",
            "public_summary",
            "query_set_control",
        ):
            if not isinstance(value, bool) or (getattr(base, key) and not value):
                refuse(key, "cannot be switched off")
            else:
                changes[key] = value
        elif key in ("cross_border", "sensitive_columns"):
            if not isinstance(value, bool) or (not getattr(base, key) and value):
                refuse(key, "cannot be switched on")
            else:
                changes[key] = value
        elif key in ("epsilon_total", "epsilon_per_query"):
            field = f"{key}_micro"
            limit = getattr(base, field)
            micro = round(value * MICRO) if isinstance(value, int | float) and not isinstance(value, bool) else None
            if limit is None or micro is None or not 0 < micro <= limit:
                refuse(key, "must be a positive ε no larger than the default" if limit else "applies only to L5")
            else:
                changes[field] = micro
        elif key == "dominance":
            dom = base.dominance
            ok = isinstance(value, dict) and set(value) <= {"n", "share"}
            n, share = (
                (value.get("n", dom.n if dom else 2), value.get("share", dom.share if dom else 1.0)) if ok else (0, 0)
            )
            if (
                not ok
                or not isinstance(n, int)
                or not isinstance(share, int | float)
                or not 0 < share <= 1
                or (dom is not None and (n < dom.n or share > dom.share))
            ):
                refuse(key, "must be {n, share} with n no smaller and share no larger than the default")
            else:
                changes["dominance"] = Dominance(n=n, share=float(share))
        else:
            problems.append(f"LODE_POLICY_FILE: {g}.{key} is not a policy setting.")
    return msgspec.structs.replace(base, **changes)


# Each anonymisation setting, and which way is tighter: "up" (no smaller than the default) or "down".
_ANONYMISATION_LIMITS = {
    "layer_sd": "up",
    "min_persons": "up",
    "threshold_sd": "up",
    "max_conditions": "down",
    "daily_queries": "down",
    "isolating_share": "down",
}


def _tighten_anonymisation(base: Anonymisation | None, value: Any, refuse: Any) -> Anonymisation | None:
    if base is None:
        refuse("anonymisation", "applies only to a grade that anonymises its aggregates (L4)")
        return None
    if not isinstance(value, dict):
        refuse("anonymisation", "must be a table of settings")
        return None
    changes: dict[str, Any] = {}
    for key, setting in value.items():
        way = _ANONYMISATION_LIMITS.get(key)
        default = getattr(base, key, None)
        whole = isinstance(default, int)
        if way is None:
            refuse(f"anonymisation.{key}", f"is not a setting; use one of {', '.join(_ANONYMISATION_LIMITS)}")
        elif (
            isinstance(setting, bool)
            or not isinstance(setting, int | float)
            or (whole and not isinstance(setting, int))
            or setting <= 0
            or (setting < default if way == "up" else setting > default)
        ):
            bound = "at least" if way == "up" else "at most"
            kind = "a whole number" if whole else "a number"
            refuse(f"anonymisation.{key}", f"must be {kind} {bound} {default}, above 0")
        else:
            changes[key] = setting if whole else float(setting)
    return msgspec.structs.replace(base, **changes)


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)

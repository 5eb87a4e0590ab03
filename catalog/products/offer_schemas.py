"""Bodies of the offer on a product: its terms (GA4GH DUO conditions and local clauses), its plans,
and its revenue-share rule."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from msgspec import UNSET, Meta, Struct, UnsetType

from catalog.orgs.schemas import Body
from catalog.products.schemas import Bps, Currency, Dimension, Icd10, Mode, OrgId, PlanKind, PlanRead, Region, Text200

# --- terms --------------------------------------------------------------------------------------


class DuoParams(Body):
    diseases: Annotated[list[Icd10], Meta(min_length=1, max_length=100)] | None = None
    regions: Annotated[list[Region], Meta(min_length=1, max_length=100)] | None = None
    months: Annotated[int, Meta(ge=1, le=600)] | None = None
    date: date | None = None
    ids: (
        Annotated[list[Annotated[str, Meta(min_length=1, max_length=80)]], Meta(min_length=1, max_length=100)] | None
    ) = None


class UseCondition(Body):
    code: Annotated[str, Meta(min_length=1, max_length=16)]
    params: DuoParams | None = None


LocalCode = Literal["no_linkage", "no_cross_border", "enclave_only", "genetic_resources"]


class TermsPut(Body):
    use_conditions: Annotated[list[str | UseCondition], Meta(min_length=1, max_length=30)]
    local_conditions: list[LocalCode] = []
    max_term_months: Annotated[int, Meta(ge=1, le=600)] | None = None
    clauses: Annotated[str, Meta(max_length=100_000)] = ""


# --- plans --------------------------------------------------------------------------------------

DimensionMap = dict[Dimension, Annotated[int, Meta(ge=0)]]


class PlanCreate(Body):
    name: Text200
    kind: PlanKind
    currency: Currency
    amount: Annotated[int, Meta(ge=0)] = 0
    interval: Annotated[
        Literal["month", "year"] | None,
        Meta(description="Billing period of subscription and metered plans; a metered plan defaults to month"),
    ] = None
    term_months: Annotated[int, Meta(ge=1, le=600)] | None = None
    tax_bps: Bps = 0
    modes: Annotated[list[Mode], Meta(min_length=1)] | None = None
    unit_prices: DimensionMap = {}
    units: dict[Dimension, Annotated[int, Meta(ge=1)]] = {}
    included: DimensionMap = {}
    caps: dict[Dimension, Annotated[int, Meta(ge=1)]] = {}
    cap_period: Literal["term", "billing_period"] = "term"
    private_to: Annotated[list[OrgId], Meta(max_length=100)] = []
    active: bool = True


class PlanUpdate(Body):
    name: Text200 | UnsetType = UNSET
    active: bool | UnsetType = UNSET
    private_to: Annotated[list[OrgId], Meta(max_length=100)] | UnsetType = UNSET
    amount: Annotated[int, Meta(ge=0)] | UnsetType = UNSET
    currency: Currency | UnsetType = UNSET
    interval: Literal["month", "year"] | UnsetType | None = UNSET
    term_months: Annotated[int, Meta(ge=1, le=600)] | UnsetType | None = UNSET
    tax_bps: Bps | UnsetType = UNSET
    modes: Annotated[list[Mode], Meta(min_length=1)] | UnsetType | None = UNSET
    unit_prices: DimensionMap | UnsetType = UNSET
    units: dict[Dimension, Annotated[int, Meta(ge=1)]] | UnsetType = UNSET
    included: DimensionMap | UnsetType = UNSET
    caps: dict[Dimension, Annotated[int, Meta(ge=1)]] | UnsetType = UNSET
    cap_period: Literal["term", "billing_period"] | UnsetType = UNSET


PLAN_MUTABLE_WHEN_LOCKED = frozenset({"name", "active", "private_to"})


class PlanList(Struct, kw_only=True):
    items: list[PlanRead]


# --- revenue shares -----------------------------------------------------------------------------


class ProviderWeight(Body):
    org_id: OrgId
    weight: Annotated[int, Meta(ge=1, le=1_000_000)]


class RevenueSharePut(Body):
    operator_bps: Bps
    providers: Annotated[list[ProviderWeight], Meta(min_length=1, max_length=50)]
    fund_bps: Bps = 0


class RevenueShareRead(Struct, kw_only=True):
    id: str
    product_id: str
    version: int
    operator_bps: int
    fund_bps: int
    providers: list[dict[str, Any]]
    created_at: datetime

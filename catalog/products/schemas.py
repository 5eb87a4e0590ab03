"""Bodies of the catalogue API: products, releases and dictionaries (the offer — terms, plans and
revenue shares — is in ``offer_schemas.py``)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from msgspec import UNSET, Meta, Struct, UnsetType

from catalog.orgs.schemas import Body, Country, Slug

Grade = Literal["L1", "L2", "L3", "L4", "L5"]
LegalBasis = Literal["anonymised", "consent", "authorised_operation", "public_interest_approval"]
DataType = Literal[
    "ehr", "lab", "imaging_report", "physical_exam", "claims", "clinical_trial", "genomic", "registry", "survey"
]
Standard = Literal["omop_cdm_5.4", "fhir_r4", "cdisc_sdtm", "hl7_v2", "dicom", "icd10", "loinc", "other"]
UpdateFrequency = Literal["once", "daily", "weekly", "monthly", "quarterly", "yearly", "irregular"]
FieldType = Literal["string", "integer", "number", "date", "boolean"]
Mode = Literal["download", "rows", "aggregate", "dp_aggregate"]
Dimension = Literal["queries", "rows_returned", "bytes_downloaded", "epsilon_spent"]
PlanKind = Literal["free", "one_time", "subscription", "metered", "public_interest"]
ProductStatus = Literal["draft", "in_review", "listed", "suspended", "retired"]

Icd10 = Annotated[str, Meta(pattern=r"^[A-Z][0-9]{2}(\.[0-9A-Z]{1,4})?$", description="ICD-10 code, e.g. E11")]
Region = Annotated[str, Meta(pattern=r"^[A-Z]{2}(-[A-Z0-9]{1,3})?$", description="ISO 3166-1 or 3166-2, e.g. CN-SH")]
Identifier = Annotated[str, Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")]
Text200 = Annotated[str, Meta(min_length=1, max_length=200)]
Reason = Annotated[str, Meta(min_length=1, max_length=2000)]
Keyword = Annotated[str, Meta(min_length=1, max_length=80)]
Fraction = Annotated[float, Meta(ge=0, le=1)]
Count = Annotated[int, Meta(ge=0)]
Bps = Annotated[int, Meta(ge=0, le=10_000)]
Currency = Annotated[str, Meta(pattern=r"^[A-Z]{3}$", description="ISO 4217")]
OrgId = Annotated[str, Meta(pattern=r"^org_[0-9A-Z]{26}$")]
ProductKey = Annotated[
    str,
    Meta(
        pattern=r"^(prd_[0-9A-Z]{26}|[a-z0-9]+(-[a-z0-9]+)*)$",
        max_length=120,
        description="The product's id (prd_…) or its slug",
    ),
]
Version = Annotated[str, Meta(pattern=r"^[0-9A-Za-z][0-9A-Za-z._-]{0,39}$")]


# --- data dictionary ------------------------------------------------------------------------------


class DictionaryField(Body):
    name: Identifier
    type: FieldType
    description: Annotated[str, Meta(max_length=1000)] = ""
    sensitive: bool = False
    code_system: Annotated[str, Meta(max_length=120)] | None = None
    min: float | None = None
    max: float | None = None
    categories: Annotated[list[str | int], Meta(min_length=1, max_length=1000)] | None = None
    precision: Annotated[int, Meta(ge=0, le=6)] | None = None  # decimals released sums and averages keep
    isolating: bool = False  # the provider's word that the column singles persons out (never filtered at L4)


class DictionaryTable(Body):
    table: Identifier
    person_key: Identifier
    max_rows_per_person: Annotated[int, Meta(ge=1, le=100_000)]
    fields: Annotated[list[DictionaryField], Meta(min_length=1, max_length=500)]
    description: Annotated[str, Meta(max_length=1000)] = ""


Dictionary = Annotated[list[DictionaryTable], Meta(min_length=1, max_length=100)]


# --- products -----------------------------------------------------------------------------------


class Source(Body):
    institution: Text200
    share: Annotated[float, Meta(gt=0, le=1)]
    org_id: OrgId | None = None
    system: Annotated[str, Meta(max_length=120)] | None = None


class Quality(Body):
    completeness: Fraction | None = None
    conformance: Fraction | None = None
    plausibility: Fraction | None = None
    assessed_on: date | None = None


class Coverage(Body):
    start: date
    end: date


class LocalisedText(Body):
    title: Annotated[str, Meta(max_length=300)] | None = None
    summary: Annotated[str, Meta(max_length=1000)] | None = None
    description: Annotated[str, Meta(max_length=20_000)] | None = None


I18n = dict[Literal["en", "zh"], LocalisedText]


class ProductCreate(Body):
    title: Annotated[str, Meta(min_length=1, max_length=300)]
    summary: Annotated[str, Meta(min_length=1, max_length=1000)]
    grade: Grade
    identified: bool
    core_data: bool
    data_types: Annotated[list[DataType], Meta(min_length=1)]
    sources: Annotated[list[Source], Meta(min_length=1, max_length=50)]
    legal_basis: LegalBasis | None = None
    description: Annotated[str, Meta(max_length=20_000)] = ""
    i18n: I18n | None = None
    keywords: Annotated[list[Keyword], Meta(max_length=50)] = []
    therapeutic_areas: Annotated[list[Icd10], Meta(max_length=50)] = []
    standards: list[Standard] = []
    jurisdiction: Country | None = None
    population_size: Count | None = None
    record_count: Count | None = None
    temporal_coverage: Coverage | None = None
    spatial_coverage: Annotated[list[Region], Meta(max_length=50)] = []
    update_frequency: UpdateFrequency | None = None
    quality: Quality | None = None
    dictionary: Dictionary | None = None
    slug: Slug | None = None


class ProductUpdate(Body):
    """Any field of a draft; on a listed or suspended product only the descriptive ones."""

    title: Annotated[str, Meta(min_length=1, max_length=300)] | UnsetType = UNSET
    summary: Annotated[str, Meta(min_length=1, max_length=1000)] | UnsetType = UNSET
    description: Annotated[str, Meta(max_length=20_000)] | UnsetType = UNSET
    i18n: I18n | UnsetType | None = UNSET
    keywords: Annotated[list[Keyword], Meta(max_length=50)] | UnsetType = UNSET
    data_types: Annotated[list[DataType], Meta(min_length=1)] | UnsetType = UNSET
    therapeutic_areas: Annotated[list[Icd10], Meta(max_length=50)] | UnsetType = UNSET
    standards: list[Standard] | UnsetType = UNSET
    population_size: Count | UnsetType | None = UNSET
    record_count: Count | UnsetType | None = UNSET
    temporal_coverage: Coverage | UnsetType | None = UNSET
    spatial_coverage: Annotated[list[Region], Meta(max_length=50)] | UnsetType = UNSET
    update_frequency: UpdateFrequency | UnsetType | None = UNSET
    quality: Quality | UnsetType | None = UNSET
    grade: Grade | UnsetType = UNSET
    legal_basis: LegalBasis | UnsetType | None = UNSET
    identified: bool | UnsetType = UNSET
    core_data: bool | UnsetType = UNSET
    jurisdiction: Country | UnsetType = UNSET
    sources: Annotated[list[Source], Meta(min_length=1, max_length=50)] | UnsetType = UNSET
    dictionary: Dictionary | UnsetType | None = UNSET


DESCRIPTIVE_FIELDS = frozenset(
    {
        "title",
        "summary",
        "description",
        "i18n",
        "keywords",
        "data_types",
        "therapeutic_areas",
        "standards",
        "population_size",
        "record_count",
        "temporal_coverage",
        "spatial_coverage",
        "update_frequency",
        "quality",
    }
)


class ProductReview(Body):
    decision: Literal["list", "return"]
    comment: Annotated[str, Meta(max_length=2000)] | None = None


class ProductRegrade(Body):
    grade: Grade
    reason: Reason


class StatusChange(Body):
    reason: Reason


class SourceRead(Struct, kw_only=True):
    institution: str
    org_id: str | None
    system: str | None
    share: float


class OrgRef(Struct, kw_only=True):
    """An organisation as a product names it: enough to show, with the id to look it up by."""

    id: str
    name: str
    slug: str


class ProductSummary(Struct, kw_only=True):
    id: str
    slug: str
    status: ProductStatus
    grade: Grade
    title: str
    summary: str
    i18n: dict[str, Any] | None
    keywords: list[str]
    data_types: list[str]
    therapeutic_areas: list[str]
    standards: list[str]
    jurisdiction: str
    owner_org_id: str
    owner_org: OrgRef
    pricing: list[str]
    population_size: int | None
    record_count: int | None
    listed_at: datetime | None
    created_at: datetime
    updated_at: datetime


class TermsRead(Struct, kw_only=True):
    id: str
    product_id: str
    version: int
    use_conditions: list[dict[str, Any]]
    local_conditions: list[str]
    max_term_months: int | None
    clauses: str
    terms_sha256: str
    created_at: datetime


class PlanRead(Struct, kw_only=True):
    id: str
    product_id: str
    name: str
    kind: PlanKind
    currency: str
    amount: int
    interval: str | None
    term_months: int | None
    tax_bps: int
    modes: list[str] | None
    unit_prices: dict[str, int]
    units: dict[str, int]
    included: dict[str, int]
    caps: dict[str, int]
    cap_period: Literal["term", "billing_period"]
    private_to: list[str]
    active: bool
    locked: bool
    created_at: datetime


class ReleaseFileRead(Struct, kw_only=True):
    name: str
    table: str
    format: Literal["csv", "parquet"]
    sha256: str
    bytes: int
    rows: int
    columns: list[dict[str, str]]
    created_at: datetime


class ReleaseRead(Struct, kw_only=True):
    id: str
    product_id: str
    version: str
    notes: str | None
    status: Literal["draft", "publishing", "published", "withdrawn"]
    dictionary: list[dict[str, Any]]
    files: list[ReleaseFileRead]
    tables: dict[str, Any] | None
    # The quality report's summary — scores per category, checks run and failed — once published;
    # the whole report is GET …/releases/{version}/quality.
    quality: dict[str, Any] | None
    published_at: datetime | None
    withdrawn_at: datetime | None
    withdraw_reason: str | None
    created_at: datetime


class ReleaseList(Struct, kw_only=True):
    items: list[ReleaseRead]
    next_cursor: str | None


class ProductRead(ProductSummary, kw_only=True):
    description: str
    legal_basis: str
    identified: bool
    core_data: bool
    temporal_coverage: dict[str, Any] | None
    spatial_coverage: list[str]
    update_frequency: str | None
    quality: dict[str, Any] | None  # as the provider declares it
    # As Lode measured it: the newest published release's scores per category ({version, scores,
    # checks, failed, profiled_at}); null until a release is published with a report.
    measured_quality: dict[str, Any] | None
    sources: list[SourceRead]
    dictionary: list[dict[str, Any]] | None
    review_comment: str | None
    suspended_by: str | None
    status_reason: str | None
    terms: TermsRead | None
    plans: list[PlanRead]
    releases: list[ReleaseRead]


class Facets(Struct, kw_only=True):
    grade: dict[str, int]
    data_type: dict[str, int]
    therapeutic_area: dict[str, int]
    standard: dict[str, int]
    provider: dict[str, int]
    pricing: dict[str, int]
    # Measured quality of the newest published release, by the bucket its score reaches (1.00, 0.99,
    # 0.98, 0.95, 0.90, 0.80, 0.00 — each "at least").
    completeness: dict[str, int] = {}
    conformance: dict[str, int] = {}
    plausibility: dict[str, int] = {}


class ProductList(Struct, kw_only=True):
    """``facets.provider`` counts by organisation id, like every facet counts by value;
    ``provider_names`` names each of those organisations."""

    items: list[ProductSummary]
    facets: Facets
    provider_names: dict[str, str]
    total: int
    total_is_lower_bound: bool
    next_cursor: str | None


# --- releases -----------------------------------------------------------------------------------


QualityCategory = Literal["conformance", "completeness", "plausibility"]


class ReleaseCreate(Body):
    version: Version
    notes: Annotated[str, Meta(max_length=10_000)] | None = None
    dictionary: Dictionary | None = None
    # The lowest passing fraction per category of the quality report; a value under Lode's default
    # is raised to it (a provider may tighten, never loosen).
    quality_thresholds: dict[QualityCategory, Fraction] | None = None

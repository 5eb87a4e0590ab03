"""Products, their provenance, releases and files, terms, plans and revenue-share rules."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from catalog.db import Base, CreatedMixin, IdMixin, utcnow


class Product(IdMixin, CreatedMixin, Base):
    __tablename__ = "products"
    __table_args__ = (Index("ix_products_status_id", "status", "id"),)

    slug: Mapped[str] = mapped_column(String(120), unique=True)
    owner_org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="draft")  # draft | in_review | listed | suspended | retired
    grade: Mapped[str] = mapped_column(String(2))
    title: Mapped[str] = mapped_column(String(300))
    summary: Mapped[str] = mapped_column(String(1000))
    description: Mapped[str] = mapped_column(Text, default="")
    i18n: Mapped[dict[str, Any] | None]
    keywords: Mapped[list[str]]
    data_types: Mapped[list[str]]
    therapeutic_areas: Mapped[list[str]]
    standards: Mapped[list[str]]
    legal_basis: Mapped[str] = mapped_column(String(32))
    identified: Mapped[bool] = mapped_column(Boolean, default=False)
    core_data: Mapped[bool] = mapped_column(Boolean, default=False)
    jurisdiction: Mapped[str] = mapped_column(String(2))
    population_size: Mapped[int | None] = mapped_column(BigInteger)
    record_count: Mapped[int | None] = mapped_column(BigInteger)
    temporal_coverage: Mapped[dict[str, Any] | None]
    spatial_coverage: Mapped[list[str]]
    update_frequency: Mapped[str | None] = mapped_column(String(16))
    quality: Mapped[dict[str, Any] | None]  # as the provider declares it
    # Measured: the newest published release's scores (products/quality.py), with its version.
    measured_quality: Mapped[dict[str, Any] | None]
    dictionary: Mapped[list[Any] | None]
    review_comment: Mapped[str | None] = mapped_column(Text)
    suspended_by: Mapped[str | None] = mapped_column(String(16))
    status_reason: Mapped[str | None] = mapped_column(Text)
    listed_at: Mapped[datetime | None]
    created_by: Mapped[str | None] = mapped_column(String(40))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ProductSource(Base):
    """Where each part of a product comes from: one standard, one source per datum."""

    __tablename__ = "product_sources"

    product_id: Mapped[str] = mapped_column(ForeignKey("products.id"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    institution: Mapped[str] = mapped_column(String(300))
    org_id: Mapped[str | None] = mapped_column(ForeignKey("organisations.id"), index=True)
    system: Mapped[str | None] = mapped_column(String(120))
    share: Mapped[float] = mapped_column(Float)


class Release(IdMixin, CreatedMixin, Base):
    __tablename__ = "releases"
    __table_args__ = (UniqueConstraint("product_id", "version"),)

    product_id: Mapped[str] = mapped_column(ForeignKey("products.id"), index=True)
    version: Mapped[str] = mapped_column(String(40))
    notes: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="draft")  # draft | publishing | published | withdrawn
    dictionary: Mapped[list[Any]]
    tables: Mapped[dict[str, Any] | None]  # at publish: {table: {rows, persons, bytes, sha256, key}}
    quality: Mapped[dict[str, Any] | None]  # the quality report, profiled at publish, immutable after
    quality_thresholds: Mapped[dict[str, Any] | None]  # the provider's stricter thresholds, by category
    published_at: Mapped[datetime | None]
    publishing_since: Mapped[datetime | None]
    withdrawn_at: Mapped[datetime | None]
    withdraw_reason: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str | None] = mapped_column(String(40))


class ReleaseFile(IdMixin, CreatedMixin, Base):
    __tablename__ = "release_files"
    __table_args__ = (UniqueConstraint("release_id", "name"),)

    release_id: Mapped[str] = mapped_column(ForeignKey("releases.id"), index=True)
    name: Mapped[str] = mapped_column(String(160))
    table_name: Mapped[str] = mapped_column(String(128))
    format: Mapped[str] = mapped_column(String(16))
    storage_key: Mapped[str] = mapped_column(String(400))
    sha256: Mapped[str] = mapped_column(String(64))
    bytes: Mapped[int] = mapped_column(BigInteger)
    rows: Mapped[int] = mapped_column(BigInteger)
    columns: Mapped[list[Any]]
    uploaded_by: Mapped[str | None] = mapped_column(String(40))


class Terms(IdMixin, CreatedMixin, Base):
    """A terms version: immutable; its hash is what a licence pins and a consumer accepts."""

    __tablename__ = "terms"
    __table_args__ = (UniqueConstraint("product_id", "version"),)

    product_id: Mapped[str] = mapped_column(ForeignKey("products.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    use_conditions: Mapped[list[Any]]
    local_conditions: Mapped[list[str]]
    max_term_months: Mapped[int | None] = mapped_column(Integer)
    clauses: Mapped[str] = mapped_column(Text, default="")
    terms_sha256: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str | None] = mapped_column(String(40))


class Plan(IdMixin, CreatedMixin, Base):
    __tablename__ = "plans"

    product_id: Mapped[str] = mapped_column(ForeignKey("products.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    currency: Mapped[str] = mapped_column(String(3))
    amount: Mapped[int] = mapped_column(BigInteger, default=0)
    interval: Mapped[str | None] = mapped_column(String(8))
    term_months: Mapped[int | None] = mapped_column(Integer)
    tax_bps: Mapped[int] = mapped_column(Integer, default=0)
    modes: Mapped[list[str] | None]
    unit_prices: Mapped[dict[str, Any]]
    units: Mapped[dict[str, Any]]
    included: Mapped[dict[str, Any]]
    caps: Mapped[dict[str, Any]]
    cap_period: Mapped[str] = mapped_column(String(16), default="term")
    private_to: Mapped[list[str]]
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    locked_at: Mapped[datetime | None]  # set when a licence first refers to the plan: its price is frozen
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class RevenueShareRule(IdMixin, CreatedMixin, Base):
    __tablename__ = "revenue_share_rules"
    __table_args__ = (UniqueConstraint("product_id", "version"),)

    product_id: Mapped[str] = mapped_column(ForeignKey("products.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    operator_bps: Mapped[int] = mapped_column(Integer)
    fund_bps: Mapped[int] = mapped_column(Integer)
    providers: Mapped[list[Any]]
    created_by: Mapped[str | None] = mapped_column(String(40))

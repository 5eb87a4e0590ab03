"""The SQL of product search (``search.py`` holds the logic): its tables and statements.

Where the databases differ the two branches sit side by side: SQLite matches through the FTS5 table
``search_fts`` (external content over ``search_text``, kept in step by the triggers of migration
0003) and ranks by bm25; PostgreSQL matches ``search_documents.tsm`` (the stripped copy of
``search_text.tsv``, under GIN, kept in step by a trigger) and ranks by ts_rank on ``tsv``, with
pg_trgm's word similarity on the title as a fallback for typos.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from sqlalchemy import (
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    Select,
    String,
    Text,
    bindparam,
    column,
    func,
    literal,
    literal_column,
    or_,
    select,
    table,
    text,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from catalog.db import Base

HEAD_WEIGHT = 4.0  # bm25 weight of titles and keywords against the rest (ts_rank: weights A and B)


class SearchDocument(Base):
    """One product's search document: the columns every match reads (scope, age, facet entries).

    Kept narrow on purpose: a broad query reads 10,000 of these rows, and the token text beside
    them would make each read walk overflow pages (``search_text`` holds it instead).
    """

    __tablename__ = "search_documents"
    __table_args__ = (Index("ix_search_documents_status_created_us_product_id", "status", "created_us", "product_id"),)

    # FTS5's rowid. Assigned when a product is first indexed (at creation), so it also orders by
    # age: the capped candidate set is "the newest matches" and both databases can stop early.
    doc_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    product_id: Mapped[str] = mapped_column(ForeignKey("products.id"), unique=True)
    status: Mapped[str] = mapped_column(String(16))
    owner_org_id: Mapped[str] = mapped_column(String(40), index=True)
    created_us: Mapped[int] = mapped_column(BigInteger)  # microseconds since the epoch: cheap to sort and compare
    # "\nfacet=value\n…\n": a filter tests for "\nfacet=value\n"; counting splits on newlines.
    facets: Mapped[str] = mapped_column(Text)


class SearchText(Base):
    """A document's token text: FTS5's external content on SQLite; on PostgreSQL the migration adds
    ``tsv`` (generated from ``head`` and ``body``: weights and positions, for ts_rank) and a trigram
    index on ``title``; a trigger copies ``strip(tsv)`` to ``search_documents.tsm``, which matches."""

    __tablename__ = "search_text"

    doc_id: Mapped[int] = mapped_column(ForeignKey("search_documents.doc_id"), primary_key=True)
    title: Mapped[str] = mapped_column(String(300))
    head: Mapped[str] = mapped_column(Text)  # titles and keywords, weighted up
    body: Mapped[str] = mapped_column(Text)


class SearchFacetCount(Base):
    """Listed products per (facet, value); the ("", "") row holds the number of listed products."""

    __tablename__ = "search_facet_counts"

    facet: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[str] = mapped_column(String(200), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger, default=0)


DOC = SearchDocument.__table__
TEXT = SearchText.__table__
COUNTS = SearchFacetCount.__table__
_FTS = table("search_fts", column("rowid", Integer))
_FTS_TABLE = literal_column("search_fts")
_TSV = literal_column("search_text.tsv")
_TSM = literal_column("search_documents.tsm")
_SIMPLE = literal_column("'simple'::regconfig")


class Match(NamedTuple):
    kind: str  # "fts5" (SQLite), "tsquery" or "trgm" (PostgreSQL)
    value: str


def dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


def full_text(session: AsyncSession, terms: list[tuple[str, bool]]) -> Match:
    """All terms required; terms are letters and digits only, so quoting needs no escapes."""
    if dialect(session) == "sqlite":
        return Match("fts5", " AND ".join(f'"{t}"' + ("*" if prefix else "") for t, prefix in terms))
    return Match("tsquery", " & ".join(f"'{t}'" + (":*" if prefix else "") for t, prefix in terms))


def fuzzy(session: AsyncSession, words: list[str]) -> Match | None:
    if dialect(session) != "postgresql" or not words:
        return None
    return Match("trgm", " ".join(words))


def candidates(
    session: AsyncSession,
    statuses: tuple[str, ...],
    owner_org_id: str | None,
    match: Match | None,
    filters: dict[str, tuple[str, ...]],
    *,
    shape: str,
    cap: int,
    before: int | None = None,
) -> Select[Any]:
    """The newest ``cap`` + 1 matching documents (by ``doc_id``, below ``before`` when given), as

    * ``ranked``: ``(score, created_us, product_id, facets, doc_id)``, higher scores better;
    * ``facets``: ``facets`` alone; ``tail``: ``(doc_id, product_id)``, newest first;
    * ``count``: one row, how many of them there are (at most ``cap`` + 1).
    """
    sqlite = dialect(session) == "sqlite"
    where = [DOC.c.status.in_(statuses)]
    if owner_org_id is not None:
        where.append(DOC.c.owner_org_id == owner_org_id)
    if before is not None:
        where.append(DOC.c.doc_id < before)
    for name, values in filters.items():
        needles = [f"\n{name}={value}\n" for value in values]
        if sqlite:
            where.append(or_(*(func.instr(DOC.c.facets, n) > 0 for n in needles)))
        else:
            where.append(or_(*(func.strpos(DOC.c.facets, n) > 0 for n in needles)))
    row = [DOC.c.created_us, DOC.c.product_id, DOC.c.facets, DOC.c.doc_id]
    plain = {"facets": [DOC.c.facets], "tail": [DOC.c.doc_id, DOC.c.product_id], "count": [literal(1)]}
    if match is None:
        columns = [literal(0.0, Float).label("score"), *row] if shape == "ranked" else plain[shape]
        stmt = select(*columns).where(*where).order_by(DOC.c.doc_id.desc()).limit(cap + 1)
    elif match.kind == "fts5":
        # FTS5 yields rows in rowid order and takes ORDER BY rowid DESC on itself, so the LIMIT stops
        # the scan, and bm25 runs for the capped rows only.
        score = -func.bm25(_FTS_TABLE, HEAD_WEIGHT, 1.0, type_=Float)
        columns = [score.label("score"), *row] if shape == "ranked" else plain[shape]
        stmt = select(*columns).select_from(_FTS.join(DOC, DOC.c.doc_id == _FTS.c.rowid))
        stmt = stmt.where(_FTS_TABLE.op("MATCH")(match.value), *where).order_by(_FTS.c.rowid.desc()).limit(cap + 1)
    elif match.kind == "tsquery":
        # Matches on the stripped, inline ``tsm``; ranks the capped rows only, on the weighted ``tsv``.
        tsquery = func.to_tsquery(_SIMPLE, match.value)
        columns = row if shape == "ranked" else plain[shape]
        stmt = select(*columns).where(_TSM.op("@@")(tsquery), *where).order_by(DOC.c.doc_id.desc()).limit(cap + 1)
        if shape == "ranked":
            capped = stmt.subquery()
            score = func.ts_rank(_TSV, tsquery, type_=Float).label("score")
            stmt = select(score, *(capped.c[c.key] for c in row)).join_from(
                capped, TEXT, TEXT.c.doc_id == capped.c.doc_id
            )
    else:
        score = func.word_similarity(literal(match.value, Text), TEXT.c.title, type_=Float)
        columns = [score.label("score"), *row] if shape == "ranked" else plain[shape]
        stmt = select(*columns).select_from(DOC.join(TEXT, TEXT.c.doc_id == DOC.c.doc_id))
        stmt = stmt.where(literal(match.value, Text).op("<%")(TEXT.c.title), *where)
        stmt = stmt.order_by(DOC.c.doc_id.desc()).limit(cap + 1)
    if shape == "count":
        return select(func.count()).select_from(stmt.subquery())
    return stmt


async def plan_per_query(session: AsyncSession) -> None:
    """On PostgreSQL, plan this transaction's statements for their actual parameters.

    asyncpg prepares statements, and after five runs PostgreSQL may settle on a generic plan that
    cannot know whether a query matches 0.3 % or 80 % of the catalogue: the GIN index suits the one,
    walking doc_id backwards the other. Planning each search costs well under a millisecond.
    """
    if dialect(session) == "postgresql":
        await session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))


def bump_counts(session: AsyncSession) -> Any:
    """Move a counter by ``delta`` in one statement (STYLE rule 5); run with many parameter sets."""
    insert = sqlite_insert if dialect(session) == "sqlite" else pg_insert
    stmt = insert(COUNTS).values(facet=bindparam("facet"), value=bindparam("value"), count=bindparam("delta"))
    return stmt.on_conflict_do_update(
        index_elements=[COUNTS.c.facet, COUNTS.c.value], set_={"count": COUNTS.c.count + stmt.excluded.count}
    )

"""Product search: full text on SQLite FTS5 or PostgreSQL, filters, disjunctive facets, capped work.

**Tokenisation.** ``tokens()`` turns text into what both databases index: NFKC-folded, lowercase
Latin words and numbers (diacritics dropped; split on anything else, so "HbA1c" stays ``hba1c``), and
for every run of CJK characters its unigrams and overlapping bigrams (糖尿病 → 糖 糖尿 尿 尿病 病). A
document stores that token text joined by spaces (``head``: titles and keywords; ``body``: the rest),
so neither database needs to understand Chinese: SQLite indexes it with an FTS5 table (unicode61
tokenizer, external content kept in step by triggers), PostgreSQL with a generated
``to_tsvector('simple', …)`` column whose stripped copy sits under GIN. A query term of two or more
CJK characters becomes the AND of its bigrams (糖尿病 → 糖尿 AND 尿病; 肝癌 → 肝癌), one character its unigram — FTS5's
trigram tokenizer alone would miss every two-character term. Latin words match as words, the last
one (three letters or more) also as a prefix. On PostgreSQL only, a query that full text does not
match at all falls back to pg_trgm word similarity on the title, which forgives typos in Latin words.

**The caps.** Every match costs something to rank (bm25, ts_rank) and to count into facets, so a
query does that work for its ranked set only: its ``RANK_CAP`` (1,000) newest matches, fetched in
``doc_id`` order, which lets FTS5 and PostgreSQL (on a broad query) stop early. Those are ordered by
relevance, then newest, and their facets counted in Python; older matches follow them, newest
first, through the same cursor. A query with more matches than that counts them in SQL alone, up
to ``TOTAL_CAP`` (10,000): the total is exact up to it, beyond it ``TOTAL_CAP`` with
``total_is_lower_bound``. Facets are exact whenever the matches fit the ranked set; past it they
count its 1,000 newest matches, each a lower bound. That keeps a broad query (80 % of 100,000
products) within a few times a narrow one. Facets are disjunctive: a facet with a filter of its own
is counted in one more capped query that leaves that filter out.

**Precomputed facets.** The plain browse — no ``q``, no filters, listed products — is answered from
``search_facet_counts``, one row per (facet, value) plus a ("", "") row for the total, counting
listed products only. ``index_product`` moves those counters by the difference between the
document's old and new facet entries, in the caller's transaction, so they never drift.
"""

from __future__ import annotations

import operator
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

import msgspec
from sqlalchemy import BigInteger, String, bindparam, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from catalog.errors import ValidationFailed
from catalog.pagination import MAX_LIMIT, decode_cursor, encode_cursor
from catalog.products import quality, search_sql
from catalog.products.models import Plan, Product, ProductSource
from catalog.products.search_sql import COUNTS, DOC, TEXT, SearchDocument, SearchFacetCount, SearchText

FACETS = (
    "grade", "data_type", "therapeutic_area", "standard", "provider", "pricing",
    *quality.CATEGORIES,  # measured on the newest published release, by bucket (quality.BUCKETS)
)  # fmt: skip
TOTAL_CAP = 10_000  # read at call time, like RANK_CAP: tests lower them
RANK_CAP = 1_000
TOTAL_KEY = ("", "")  # the facet-counts row holding the number of listed products
MIN_PREFIX = 3
_KEY = operator.itemgetter(0, 1, 2)  # a ranked row's place: (score, created_us, product_id), all descending
_DOC_ID = operator.itemgetter(4)
MAX_TOKEN = 100  # PostgreSQL refuses lexemes over 2 KB; nothing meaningful is this long
MAX_TEXT = 200_000
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0003134f"
_TOKEN = re.compile(f"([{_CJK}]+)|([^\\W_{_CJK}]+)")


class SearchQuery(msgspec.Struct, frozen=True, kw_only=True):
    q: str | None = None
    filters: dict[str, tuple[str, ...]] = {}
    statuses: tuple[str, ...] = ("listed",)
    owner_org_id: str | None = None
    limit: int = 50
    cursor: str | None = None


class SearchPage(msgspec.Struct, kw_only=True):
    ids: list[str]
    facets: dict[str, dict[str, int]]
    total: int
    total_is_lower_bound: bool
    next_cursor: str | None


# -- tokenisation ----------------------------------------------------------------------------------


def _words(text: str) -> Iterable[tuple[str | None, str | None]]:
    for match in _TOKEN.finditer(unicodedata.normalize("NFKC", text).lower()):
        cjk, word = match.groups()
        if word is not None and not word.isascii():
            word = "".join(c for c in unicodedata.normalize("NFD", word) if not unicodedata.combining(c))
            word = unicodedata.normalize("NFC", word)
        yield cjk, word[:MAX_TOKEN] if word else None


def tokens(text: str) -> list[str]:
    """Latin words and numbers as words; each CJK run as its unigrams and overlapping bigrams."""
    out: list[str] = []
    for cjk, word in _words(text):
        if word:
            out.append(word)
        elif cjk:
            for i, char in enumerate(cjk):
                out.append(char)
                if i + 1 < len(cjk):
                    out.append(cjk[i : i + 2])
    return out


def query_terms(q: str) -> list[tuple[str, bool]]:
    """(term, is_prefix) pairs that must all match: a CJK run of two or more stands for its bigrams."""
    terms: list[tuple[str, bool]] = []
    for cjk, word in _words(q):
        if word:
            terms.append((word, False))
        elif cjk:
            terms.extend((cjk[i : i + 2], False) for i in range(max(len(cjk) - 1, 1)))
    if terms:
        last, _ = terms[-1]
        if last.isascii() and len(last) >= MIN_PREFIX and not last.isdigit():
            terms[-1] = (last, True)
    return list(dict.fromkeys(terms))


# -- indexing --------------------------------------------------------------------------------------


def _entries(name: str, values: Iterable[Any]) -> Iterable[str]:
    for value in values:
        if isinstance(value, str) and (value := " ".join(value.split())):
            yield f"{name}={value[:200]}"


def _texts(i18n: Any, *fields: str) -> list[str]:
    if not isinstance(i18n, dict):
        return []
    return [t for lang in i18n.values() if isinstance(lang, dict) for f in fields if isinstance(t := lang.get(f), str)]


class Document(NamedTuple):
    row: dict[str, Any]  # search_documents, without doc_id
    text: dict[str, Any]  # search_text, without doc_id


def build_document(
    product: Mapping[str, Any], source_org_ids: Iterable[str | None], plan_kinds: Iterable[str]
) -> Document:
    """A product's search rows (also the benchmark's bulk loader)."""
    i18n = product.get("i18n")
    head = [product["title"], *_texts(i18n, "title"), *(k for k in product["keywords"] or () if isinstance(k, str))]
    body = [product["summary"], product.get("description") or "", *_texts(i18n, "summary", "description")]
    entries = {
        *_entries("grade", [product["grade"]]),
        *_entries("data_type", product["data_types"] or ()),
        *_entries("therapeutic_area", product["therapeutic_areas"] or ()),
        *_entries("standard", product["standards"] or ()),
        *_entries("provider", [product["owner_org_id"], *source_org_ids]),
        *_entries("pricing", plan_kinds),
        *_measured(product.get("measured_quality")),
    }
    row = {
        "product_id": product["id"],
        "status": product["status"],
        "owner_org_id": product["owner_org_id"],
        "created_us": _micros(product["created_at"]),
        "facets": "\n" + "\n".join(sorted(entries)) + "\n",
    }
    text = {
        "title": product["title"][:300],
        "head": " ".join(tokens(" ".join(head)[:MAX_TEXT])),
        "body": " ".join(tokens(" ".join(body)[:MAX_TEXT])),
    }
    return Document(row, text)


def _measured(measured: Any) -> list[str]:
    scores = measured.get("scores") if isinstance(measured, dict) else None
    if not isinstance(scores, dict):
        return []
    return [f"{c}={quality.bucket(v)}" for c, v in scores.items() if c in quality.CATEGORIES and v is not None]


def _micros(moment: datetime) -> int:
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _counted(status: str | None, facets: str | None) -> set[tuple[str, str]]:
    """The facet-count keys a document contributes: only listed products are counted."""
    if status != "listed" or facets is None:
        return set()
    return {TOTAL_KEY, *(tuple(e.split("=", 1)) for e in facets.split("\n") if e)}  # type: ignore[misc]


async def index_product(session: AsyncSession, product_id: str) -> None:
    """(Re)build the product's document and move the precomputed counts, in the caller's transaction."""
    # Locking the product row serialises indexers of one product, so each computes its counter
    # deltas from the document the previous one left (PostgreSQL; SQLite writers are serial anyway).
    # NO KEY UPDATE: inserting a plan or source takes KEY SHARE on the product, which must not deadlock.
    columns = [c for c in Product.__table__.c if c.key in _PRODUCT_FIELDS]
    locked = select(*columns).where(Product.id == product_id).with_for_update(key_share=True)
    product = (await session.execute(locked)).first()
    old = await session.execute(select(DOC.c.doc_id, DOC.c.status, DOC.c.facets).where(DOC.c.product_id == product_id))
    doc_id, *old_counted = old.first() or (None, None, None)
    new = None
    if product is not None:
        sources = await session.scalars(select(ProductSource.org_id).where(ProductSource.product_id == product_id))
        plans = await session.execute(
            select(Plan.kind, Plan.private_to).where(Plan.product_id == product_id, Plan.active.is_(True))
        )
        new = build_document(product._mapping, sources.all(), sorted({k for k, private in plans if not private}))
    before = _counted(*old_counted)
    after = _counted(new.row["status"], new.row["facets"]) if new else set()
    # Sorted, so concurrent indexers take the counter rows' locks in one order (no deadlock).
    deltas = [{"facet": f, "value": v, "delta": 1 if (f, v) in after else -1} for f, v in sorted(before ^ after)]
    if deltas:
        await session.execute(search_sql.bump_counts(session), deltas)
    if new is None:
        if doc_id is not None:
            await session.execute(TEXT.delete().where(TEXT.c.doc_id == doc_id))
            await session.execute(DOC.delete().where(DOC.c.doc_id == doc_id))
    elif doc_id is None:
        doc_id = await session.scalar(DOC.insert().values(**new.row).returning(DOC.c.doc_id))
        await session.execute(TEXT.insert().values(doc_id=doc_id, **new.text))
    else:
        await session.execute(DOC.update().where(DOC.c.doc_id == doc_id).values(**new.row))
        # Only when the text changed, so a status change leaves FTS5 and the tsvectors alone.
        await session.execute(
            TEXT.update()
            .where(TEXT.c.doc_id == doc_id, or_(*(TEXT.c[k] != v for k, v in new.text.items())))
            .values(**new.text)
        )


_PRODUCT_FIELDS = frozenset(
    "id status grade title summary description i18n keywords data_types therapeutic_areas standards "
    "owner_org_id created_at measured_quality".split()
)


# -- searching -------------------------------------------------------------------------------------


async def search(session: AsyncSession, query: SearchQuery) -> SearchPage:
    _check(query)
    after = _decode(query.cursor) if query.cursor else None
    filters = {name: values for name, values in query.filters.items() if values}
    terms = query_terms(query.q) if query.q else []
    if not terms and not filters and query.statuses == ("listed",) and query.owner_org_id is None:
        return await _browse(session, query.limit, after)
    scope = (query.statuses, query.owner_org_id)
    await search_sql.plan_per_query(session)

    def matches(match: search_sql.Match | None, filters: dict[str, tuple[str, ...]], shape: str, **kw: Any) -> Any:
        return search_sql.candidates(session, *scope, match, filters, shape=shape, **{"cap": RANK_CAP, **kw})

    match = search_sql.full_text(session, terms) if terms else None
    rows = list((await session.execute(matches(match, filters, "ranked"))).all())
    words = [word for _, word in _words(query.q or "")]
    if not rows and terms and all(words) and (fuzzy := search_sql.fuzzy(session, words)):
        # Trigrams may forgive a misspelt Latin word, never a missing Chinese term.
        match = fuzzy
        rows = list((await session.execute(matches(match, filters, "ranked"))).all())
    rows.sort(key=_DOC_ID, reverse=True)
    more = len(rows) > RANK_CAP  # older matches follow the ranked set, newest first
    del rows[RANK_CAP:]
    rows.sort(key=_KEY, reverse=True)
    found = await session.scalar(matches(match, filters, "count", cap=TOTAL_CAP)) if more else len(rows)

    facets: dict[str, dict[str, int]] = {}
    own = _count([row[3] for row in rows])
    for name in FACETS:
        counts = own
        if name in filters:
            others = {k: v for k, v in filters.items() if k != name}
            counts = _count((await session.scalars(matches(match, others, "facets"))).all()[:RANK_CAP], only=name)
        facets[name] = _ordered(counts.get(name, {}))

    ids: list[str] = []
    next_key: tuple[Any, ...] | None = None
    tail_from = min(map(_DOC_ID, rows)) if more else None
    if after is None or len(after) == 3:
        start = next((i for i, row in enumerate(rows) if _KEY(row) < after), len(rows)) if after else 0
        page = rows[start : start + query.limit]
        ids = [row[2] for row in page]
        if start + query.limit < len(rows):
            next_key = _KEY(page[-1])
    else:
        tail_from = after[0]
    if tail_from is not None and next_key is None and len(ids) < query.limit:
        need = query.limit - len(ids)
        tail = (await session.execute(matches(match, filters, "tail", cap=need, before=tail_from))).all()
        ids += [product_id for _, product_id in tail[:need]]
        next_key = (tail[need - 1][0],) if len(tail) > need else None
    elif tail_from is not None and next_key is None:
        next_key = (tail_from,)
    return SearchPage(
        ids=ids,
        facets=facets,
        total=min(found or 0, TOTAL_CAP),
        total_is_lower_bound=(found or 0) > TOTAL_CAP,
        next_cursor=_encode(next_key) if next_key else None,
    )


def _count(documents: Iterable[str], only: str | None = None) -> dict[str, dict[str, int]]:
    # One join, one split and one count in C: a full ranked set's facets take a millisecond or two.
    entries = Counter("".join(documents).split("\n"))
    out: dict[str, dict[str, int]] = {}
    for entry, n in entries.items():
        name, _, value = entry.partition("=")
        if entry and (only is None or name == only):
            if name not in out:
                out[name] = {}
            out[name][value] = n
    return out


def _ordered(counts: Mapping[str, int]) -> dict[str, int]:
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


async def _browse(session: AsyncSession, limit: int, after: tuple[Any, ...] | None) -> SearchPage:
    """Listed products newest first (a keyset on the status index); facets and total precomputed."""
    stmt = select(DOC.c.product_id, DOC.c.created_us).where(DOC.c.status == "listed")
    if after is not None and len(after) != 3:
        raise ValidationFailed.field("cursor", "is not a cursor returned by this list")
    if after is not None:
        key = tuple_(bindparam("after_us", after[1], BigInteger), bindparam("after_id", after[2], String))
        stmt = stmt.where(tuple_(DOC.c.created_us, DOC.c.product_id) < key)
    stmt = stmt.order_by(DOC.c.created_us.desc(), DOC.c.product_id.desc()).limit(limit + 1)
    rows = (await session.execute(stmt)).all()
    facets: dict[str, dict[str, int]] = {name: {} for name in FACETS}
    total = 0
    for facet, value, n in await session.execute(select(COUNTS).where(COUNTS.c.count > 0)):
        if (facet, value) == TOTAL_KEY:
            total = n
        elif facet in facets:
            facets[facet][value] = n
    more = len(rows) > limit
    rows = rows[:limit]
    return SearchPage(
        ids=[r.product_id for r in rows],
        facets={name: _ordered(values) for name, values in facets.items()},
        total=min(total, TOTAL_CAP),
        total_is_lower_bound=total > TOTAL_CAP,
        next_cursor=_encode((0.0, rows[-1].created_us, rows[-1].product_id)) if more else None,
    )


def _check(query: SearchQuery) -> None:
    if not 1 <= query.limit <= MAX_LIMIT:
        raise ValidationFailed.field("limit", f"must be between 1 and {MAX_LIMIT}")
    unknown = sorted(set(query.filters) - set(FACETS))
    if unknown:
        raise ValidationFailed.field(unknown[0], f"is not a filter; filters are {', '.join(FACETS)}")


def _encode(key: tuple[Any, ...]) -> str:
    return encode_cursor(msgspec.json.encode(key).decode())


def _decode(cursor: str) -> tuple[Any, ...]:
    """``(score, created_us, product_id)`` inside the ranked set (and browsing), ``(doc_id,)`` after it."""
    try:
        key = tuple(msgspec.json.decode(decode_cursor(cursor), type=list[float | int | str]))
    except msgspec.DecodeError:
        key = ()
    three = len(key) == 3 and isinstance(key[0], int | float) and isinstance(key[1], int) and isinstance(key[2], str)
    if not three and not (len(key) == 1 and isinstance(key[0], int)):
        raise ValidationFailed.field("cursor", "is not a cursor returned by this list")
    return key


__all__: Sequence[str] = (
    "FACETS",
    "Document",
    "SearchDocument",
    "SearchFacetCount",
    "SearchPage",
    "SearchQuery",
    "SearchText",
    "build_document",
    "index_product",
    "search",
    "tokens",
)

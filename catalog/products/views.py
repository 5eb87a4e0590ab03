"""Public catalogue reads at scale: product pages and search pages built once per catalogue version
in each API process, and checked on every request by one read of that version.

**What is kept.** A product's view for each audience that sees it differently — the public (no key,
or the key of an organisation the product shows nothing more to), the operator, and each
organisation that sees more (the owner: drafts and every plan; one a plan is private to) — and each
search page of listed products, which is the same for every caller. A view is kept as its encoded
body and ETag, in a least-recently-used map bounded by bytes, filed under the version it was built at.

**Why it is correct on every node.** The version is a counter in the database that triggers move
in the same transaction as any change a public view shows (migration 0017: products, their sources,
releases and files, terms, plans and search rows, organisations' names). Each request reads it
first (``catalogue_version.py``: one statement on a connection of its own) and serves the
view built at that version, or builds one. The build runs in a transaction that begins after the
version was read, so a view is never older than the version it is filed under (at worst newer,
and the next version replaces it). Nothing is served from memory without that read, so a product
suspended through one node is gone from every node's next answer.

**ETag and Cache-Control.** The ETag hashes the body: the same on every node for the same view, and
different wherever two audiences see different bodies. ``If-None-Match`` naming it answers 304 with
no body. Answers are ``no-cache`` — a cache may keep them but must ask again before each use — since
a suspension must take effect at once and asking costs a 304; ``public`` only for a request without
a key, ``private`` for one with a key (the answer may be that organisation's own view), and
``Vary: Authorization`` on both.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any, NamedTuple

from litestar import Litestar, Request, Response
from litestar.enums import MediaType
from litestar.serialization import encode_json
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog import db
from catalog.auth import Principal
from catalog.errors import NotFound
from catalog.products import search
from catalog.products.catalogue_version import VersionReader
from catalog.products.service import ProductService

MAX_BYTES = 64 * 2**20  # a search page of 500 products is ~1 MB; a product page ~15 kB
PUBLIC_CACHE = "public, no-cache"
PRIVATE_CACHE = "private, no-cache"
OPERATOR = "operator"  # the operator's members all see the same view: every status, every plan


class View(NamedTuple):
    version: int
    body: bytes
    etag: str
    others: frozenset[str]  # organisations that see another view than this one's audience (products)


def built(version: int, value: Any, others: frozenset[str] = frozenset()) -> View:
    body = encode_json(value)
    return View(version, body, f'"{hashlib.blake2b(body, digest_size=16).hexdigest()}"', others)


class Views:
    """One per app: the views built at the newest version seen, and the reader of that version."""

    def __init__(self, engine: AsyncEngine, max_bytes: int = MAX_BYTES) -> None:
        self._reader = VersionReader(engine)
        self._entries: OrderedDict[tuple[str, ...], View] = OrderedDict()
        self._bytes = 0
        self._seen = -1
        self.max_bytes = max_bytes

    async def version(self) -> int:
        """The catalogue version, read from the database now (``catalogue_version.py``)."""
        version = await self._reader.read()
        if version != self._seen:  # everything kept was built at an older version: useless now
            self._entries.clear()
            self._bytes = 0
            self._seen = version
        return version

    def get(self, key: tuple[str, ...], version: int) -> View | None:
        view = self._entries.get(key)
        if view is None or view.version != version:
            return None
        self._entries.move_to_end(key)
        return view

    def put(self, key: tuple[str, ...], view: View) -> View:
        if view.version != self._seen:  # built while the version moved on: serve it, keep nothing
            return view
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= len(old.body)
        self._entries[key] = view
        self._bytes += len(view.body)
        while self._bytes > self.max_bytes:
            _, dropped = self._entries.popitem(last=False)
            self._bytes -= len(dropped.body)
        return view


def views_of(app: Litestar) -> Views:
    views = app.state.get("catalogue_views")
    if views is None:
        views = app.state["catalogue_views"] = Views(app.state.engine)
    return views


def respond(request: Request[Any, Any, Any], view: View, if_none_match: str | None) -> Response[Any]:
    headers = {
        "ETag": view.etag,
        "Cache-Control": PUBLIC_CACHE if request.scope.get("user") is None else PRIVATE_CACHE,
        "Vary": "Authorization",
    }
    if if_none_match and matches(if_none_match, view.etag):
        return Response(b"", status_code=304, headers=headers)
    return Response(view.body, media_type=MediaType.JSON, headers=headers)


def matches(if_none_match: str, etag: str) -> bool:
    """RFC 9110's weak comparison, as If-None-Match uses: a ``W/`` prefix does not count."""
    if if_none_match.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in if_none_match.split(","))


# --- the two public reads --------------------------------------------------------------------------


async def product(request: Request[Any, Any, Any], key: str, if_none_match: str | None) -> Response[Any]:
    """A product by id or slug: the public view unless the caller's organisation sees more."""
    views = views_of(request.app)
    caller: Principal | None = request.scope.get("user")
    version = await views.version()
    if caller is not None and caller.is_operator:
        return respond(request, await _product(request, views, version, key, OPERATOR, caller), if_none_match)
    view: View | None
    try:
        view = await _product(request, views, version, key, "", None)
    except NotFound:
        if caller is None:
            raise
        view = None  # not listed: perhaps the caller's own
    if caller is not None and (view is None or caller.org_id in view.others):
        view = await _product(request, views, version, key, caller.org_id, caller)
    return respond(request, view, if_none_match)


async def _product(
    request: Request[Any, Any, Any], views: Views, version: int, key: str, audience: str, caller: Principal | None
) -> View:
    cached = views.get(("product", key, audience), version)
    if cached is not None:
        return cached
    # A read of its own, begun after the version was read (the request's transaction, `tx`, would
    # open a session for every request, cached or not; nothing here writes).
    async with db.read_transaction(request.app.state.sessions) as session:
        read, others = await ProductService(session, caller).viewed(key)
    return views.put(("product", key, audience), built(version, read, others))


async def listing(
    request: Request[Any, Any, Any], query: search.SearchQuery, if_none_match: str | None
) -> Response[Any]:
    """A search page. Pages of listed products are the same for everyone and kept, by query string;
    an owner's or the operator's pages of other statuses are built for each request."""
    caller: Principal | None = request.scope.get("user")
    shared = query.statuses == ("listed",) and query.owner_org_id is None
    views = views_of(request.app)
    version = await views.version()
    key = ("list", request.scope.get("query_string", b"").decode("latin-1"))
    view = views.get(key, version) if shared else None
    if view is None:
        async with db.read_transaction(request.app.state.sessions) as session:
            page = await ProductService(session, caller).list(query)
        view = built(version, page)
        if shared:
            views.put(key, view)
    return respond(request, view, if_none_match)

"""Releases: a version with its own data dictionary and files, frozen at publish.

A file upload never holds a database transaction while bytes stream in: the release is checked in
one short transaction, the file is streamed to storage with none open, and it is recorded in a
second short transaction that checks again that the release is still a draft (a publish that won
the race leaves the upload refused and its bytes deleted). Each upload has its own storage key, so
a late upload can never overwrite a file a published release refers to.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import date, datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from catalog import audit, outbox, policy
from catalog.auth import Principal, ensure_member_with
from catalog.datafiles import ColumnInfo, parse_file_name, schema_problems
from catalog.db import utcnow, write_transaction
from catalog.errors import Conflict, NotFound, Unprocessable
from catalog.ids import new_id
from catalog.notifications import audiences
from catalog.notifications import events as notices
from catalog.objectstore import clean_up
from catalog.pagination import PageRequest
from catalog.products import dictionary, profiling, quality, search
from catalog.products import repository as repo
from catalog.products.models import Product, Release, ReleaseFile
from catalog.products.reads import release_read
from catalog.products.schemas import ReleaseCreate, ReleaseFileRead, ReleaseList, ReleaseRead
from catalog.products.service import OPERATOR_STATUS_ROLES, OWNER_ROLES, ProductService
from catalog.storage import Profiler, PublishedTable, Storage, TableSpec, table_key

STORAGE_DELETE = "storage.delete"
STALE_PUBLISH = timedelta(minutes=15)


class ReleaseService:
    def __init__(self, session: AsyncSession, caller: Principal | None, storage: Storage) -> None:
        self.session = session
        self.caller = caller
        self.storage = storage
        self.products = ProductService(session, caller)

    async def create(self, product_id: str, data: ReleaseCreate) -> ReleaseRead:
        product = await self.products.owned(product_id)
        if product.status == "retired":
            raise Conflict("A retired product takes no new releases.", code="invalid_transition")
        if await repo.release(self.session, product.id, data.version) is not None:
            raise Conflict(f"Release {data.version} exists.", code="version_exists")
        if data.dictionary is not None:
            tables = dictionary.validate(data.dictionary)
        else:
            previous = await repo.latest_release(self.session, product.id)
            tables = previous.dictionary if previous else product.dictionary
            if not tables:
                raise Unprocessable(
                    "Give the release a dictionary: the product has none to copy.", code="dictionary_required"
                )
        release = Release(
            id=new_id("rel"),
            product_id=product.id,
            version=data.version,
            notes=data.notes,
            status="draft",
            dictionary=tables,
            quality_thresholds=quality.thresholds_for(data.quality_thresholds),
            created_by=self._user(),
            created_at=utcnow(),
        )
        self.session.add(release)
        await self.session.flush()
        self._audit("release.created", product, release, {"version": data.version})
        return release_read(release, [])

    async def _release(self, product: Product, version: str, *, lock: bool = False) -> Release:
        find = repo.release_for_update if lock else repo.release
        release = await find(self.session, product.id, version)
        if release is None or (release.status == "draft" and not self.products.sees_unlisted(product)):
            raise NotFound(f"No release {version} of {product.id}.")
        return release

    async def get(self, product_id: str, version: str) -> ReleaseRead:
        product = await self.products.visible(product_id)
        release = await self._release(product, version)
        return release_read(release, (await repo.files(self.session, [release.id]))[release.id])

    async def quality(self, product_id: str, version: str) -> dict[str, Any]:
        """The release's quality report: whole to its owner and the operator; to anyone else with
        failing counts under the grade's k shown as "< k" (``quality.public_view``)."""
        product = await self.products.visible(product_id)
        release = await self._release(product, version)
        if release.quality is None:
            raise NotFound(
                f"Release {version} has no quality report: it is a draft, or was published before Lode "
                "measured quality."
            )
        report = {"product_id": product.id, "version": release.version, **release.quality}
        if self.products.sees_unlisted(product):
            return report
        return quality.public_view(report, policy.rule(product.grade).k)

    async def list(self, product_id: str, page: PageRequest) -> ReleaseList:
        product = await self.products.visible(product_id)
        statuses = None if self.products.sees_unlisted(product) else ("published", "withdrawn")
        result = await repo.list_releases(self.session, product.id, page, statuses)
        files = await repo.files(self.session, [r.id for r in result.items])
        return ReleaseList(items=[release_read(r, files[r.id]) for r in result.items], next_cursor=result.next_cursor)

    async def delete_file(self, product_id: str, version: str, name: str) -> None:
        product = await self.products.owned(product_id)
        release = await self._release(product, version, lock=True)
        _require_draft(release)
        row = await repo.file(self.session, release.id, name)
        if row is None:
            raise NotFound(f"No file {name} in release {version}.")
        await self.session.delete(row)
        await self.session.flush()
        self._audit("release.file_deleted", product, release, {"name": name})
        # The bytes go only once this deletion is committed: a failed commit keeps the file it refers to.
        outbox.emit(self.session, STORAGE_DELETE, {"key": row.storage_key})

    async def withdraw(self, product_id: str, version: str, reason: str) -> ReleaseRead:
        caller = self.caller
        assert caller is not None
        product = await self.products.visible(product_id)
        if not caller.is_operator_with(*OPERATOR_STATUS_ROLES):
            ensure_member_with(caller, product.owner_org_id, *OWNER_ROLES)
        release = await self._release(product, version, lock=True)
        if release.status != "published":
            raise Conflict(
                f"Release {version} is {release.status}: only a published release is withdrawn.",
                code="invalid_transition",
            )
        release.status, release.withdrawn_at, release.withdraw_reason = "withdrawn", utcnow(), reason
        await self.session.flush()
        await refresh_measured(self.session, product)
        self._audit("release.withdrawn", product, release, {"version": version, "reason": reason})
        return release_read(release, (await repo.files(self.session, [release.id]))[release.id])

    def _user(self) -> str | None:
        return self.caller.user_id if self.caller else None

    def _audit(self, action: str, product: Product, release: Release, data: dict[str, Any]) -> None:
        audit.record(
            self.session,
            self.caller,
            action,
            "release",
            release.id,
            [product.owner_org_id],
            {"product_id": product.id, **data},
        )


async def upload(
    sessions: async_sessionmaker[AsyncSession],
    caller: Principal | None,
    storage: Storage,
    product_id: str,
    version: str,
    name: str,
    chunks: AsyncIterator[bytes],
    max_bytes: int,
) -> ReleaseFileRead:
    """Stream a file into a draft release: check, stream with no transaction open, then record."""
    parse_file_name(name)
    async with write_transaction(sessions) as session:
        service = ReleaseService(session, caller, storage)
        product = await service.products.owned(product_id)
        release_id = _require_draft(await service._release(product, version)).id
    result = await storage.ingest(chunks, release_id=release_id, name=name, max_bytes=max_bytes)
    try:
        async with write_transaction(sessions) as session:
            service = ReleaseService(session, caller, storage)
            product = await service.products.owned(product_id)
            release = _require_draft(await service._release(product, version, lock=True))
            old = await repo.file(session, release.id, name)
            if old is not None:
                await session.delete(old)
                await session.flush()
            row = ReleaseFile(
                id=new_id("fil"),
                release_id=release.id,
                name=name,
                table_name=result.table,
                format=result.format,
                storage_key=result.storage_key,
                sha256=result.sha256,
                bytes=result.bytes,
                rows=result.rows,
                columns=[{"name": c.name, "type": c.type} for c in result.columns],
                uploaded_by=caller.user_id if caller else None,
                created_at=utcnow(),
            )
            session.add(row)
            await session.flush()
            service._audit(
                "release.file_uploaded",
                product,
                release,
                {"name": name, "sha256": result.sha256, "bytes": result.bytes, "rows": result.rows},
            )
            if old is not None:  # the replaced bytes go once this is committed, retried until they do
                outbox.emit(session, STORAGE_DELETE, {"key": old.storage_key})
    except BaseException:
        await clean_up(storage.delete(result.storage_key), what="delete an upload that was not recorded")
        raise
    return release_read(release, [row]).files[0]


async def publish(
    sessions: async_sessionmaker[AsyncSession],
    caller: Principal | None,
    storage: Storage,
    product_id: str,
    version: str,
) -> ReleaseRead:
    """Check the files against the dictionary, write the tables, freeze the release.

    Three short transactions around the Parquet writing, which can take minutes for a large release
    and must not hold the database: the release is marked ``publishing`` (uploads and a second
    publish are refused), written with no transaction open, then frozen — or put back to draft if
    writing failed. A publish that died mid-way can be run again after ``STALE_PUBLISH``.

    A live publish can also outlast ``STALE_PUBLISH`` (each table may take the work timeout, then
    the upload), so the claim's ``publishing_since`` is this publish's mark of ownership: it freezes,
    or puts back to draft, only a release that still holds its mark. Overtaken, it leaves the later
    publish's tables alone — two freezes would give one release two sets of record keys, so the
    same query two noise draws — schedules its own files for deletion and answers 409.
    """
    now = utcnow()
    async with write_transaction(sessions) as session:
        service = ReleaseService(session, caller, storage)
        product = await service.products.owned(product_id)
        release = await service._release(product, version, lock=True)
        stale = release.status == "publishing" and (release.publishing_since or now) < now - STALE_PUBLISH
        if release.status != "draft" and not stale:
            raise Conflict(f"Release {version} is {release.status}.", code="invalid_transition")
        files = (await repo.files(session, [release.id]))[release.id]
        specs, problems = _match_files(release.dictionary, files)
        if problems:
            raise Conflict(
                "The files do not match the release's dictionary.", code="dictionary_mismatch", problems=problems
            )
        release.status, release.publishing_since = "publishing", now
        release_id, product_key = release.id, product.id
        thresholds = quality.thresholds_for(release.quality_thresholds)
        period, k = _period(product.temporal_coverage), policy.rule(product.grade).k
        profiler = Profiler(
            table=partial(profiling.profile_table, thresholds=thresholds, today=now.date(), period=period, k=k),
            release=partial(profiling.release_checks, thresholds=thresholds, k=k),
        )
    try:
        published, across = await storage.publish(release_id, specs, profiler)
    except BaseException:
        async with write_transaction(sessions) as session:
            await _let_go(session, product_key, version, now, [])
        raise
    try:
        report = partial(_report, published, across, thresholds, period, k=k)
        return await _freeze(sessions, caller, storage, product_id, version, now, published, report, files)
    except BaseException:
        async with write_transaction(sessions) as session:
            await _let_go(session, product_key, version, now, [t.key for t in published.values()])
        raise


async def _freeze(
    sessions: async_sessionmaker[AsyncSession],
    caller: Principal | None,
    storage: Storage,
    product_id: str,
    version: str,
    claimed: datetime,
    published: dict[str, PublishedTable],
    report: Callable[[Any], dict[str, Any]],
    files: list[ReleaseFile],
) -> ReleaseRead:
    """Freeze the release with the tables just written, if this publish (claimed at ``claimed``) still
    owns it; ``report`` makes the quality report from the previous published release's."""
    async with write_transaction(sessions) as session:
        service = ReleaseService(session, caller, storage)
        product = await service.products.owned(product_id)
        release = await service._release(product, version, lock=True)  # a takeover waits for this lock
        if not _owns(release, claimed):
            raise Conflict(
                f"Release {version} was taken over by a later publish while this one ran past the "
                f"{STALE_PUBLISH} allowed; it is {release.status}, with that publish's tables.",
                code="invalid_transition",
            )
        release.tables = {
            t: {"rows": p.rows, "persons": p.persons, "bytes": p.bytes, "sha256": p.sha256, "uniqueness": p.uniqueness}
            for t, p in published.items()
        }
        release.status, release.published_at, release.publishing_since = "published", utcnow(), None
        await repo.lock_product(session, product.id)  # publishes of one product take turns from here
        previous = await repo.latest_published_release(session, product.id, before=release.id)
        release.quality = report(previous.quality if previous else None)
        await session.flush()
        await refresh_measured(session, product)
        service._audit("release.published", product, release, {"version": version, "tables": release.tables})
        # A listed product's release is told to its parties and every live licensee; an unlisted
        # product is its owner's alone to see.
        told = [product.owner_org_id]
        if product.status == "listed":
            told = await repo.parties(session, product) + await audiences.licensees(session, product.id)
        data = {"product_id": product.id, "release_id": release.id, "version": version}
        await notices.publish(session, "release.published", ("release", release.id), told, data)
        return release_read(release, files)


def _owns(release: Release, claimed: datetime) -> bool:
    """Whether the publish that claimed ``release`` at ``claimed`` still holds it (read under its row lock)."""
    return release.status == "publishing" and release.publishing_since == claimed


async def _let_go(session: AsyncSession, product_id: str, version: str, claimed: datetime, keys: list[str]) -> None:
    """After a publish did not freeze: put the release back to draft if it still owns it (a later
    publish that took over keeps it), and schedule the deletion of the tables it stored, once this
    is committed — except any the release's frozen tables name."""
    release = await repo.release_for_update(session, product_id, version)
    if release is None:
        return
    if _owns(release, claimed):
        release.status, release.publishing_since = "draft", None
    kept = {table_key(release.id, t, v["sha256"]) for t, v in (release.tables or {}).items() if v.get("sha256")}
    for key in keys:
        if key not in kept:
            outbox.emit(session, STORAGE_DELETE, {"key": key})


async def refresh_measured(session: AsyncSession, product: Product) -> None:
    """The product's measured quality is its newest published release's (by when releases were
    made, so publishing an older draft late does not take over), or none once that is withdrawn;
    the search facets move with it. The product row is locked: two publishes cannot interleave."""
    await repo.lock_product(session, product.id)
    newest = await repo.latest_published_release(session, product.id)
    report = newest.quality if newest is not None else None
    product.measured_quality = (
        {"version": newest.version, **report["summary"], "profiled_at": newest.published_at.isoformat()}
        if newest is not None and report and newest.published_at
        else None
    )
    await session.flush()
    await search.index_product(session, product.id)


def _period(coverage: dict[str, Any] | None) -> tuple[date, date] | None:
    """The product's declared period, whose months the report checks are covered."""
    try:
        return date.fromisoformat(coverage["start"]), date.fromisoformat(coverage["end"])  # type: ignore[index]
    except (TypeError, KeyError, ValueError):
        return None


def _report(
    published: dict[str, Any],
    across: dict[str, list[dict[str, Any]]],
    thresholds: dict[str, float],
    period: tuple[date, date] | None,
    previous: Any,
    k: int,
) -> dict[str, Any]:
    tables = {
        name: {"rows": table.quality["rows"], "persons": table.quality["persons"],
               "checks": [*table.quality["checks"], *across.get(name, [])]}
        for name, table in published.items()
    }  # fmt: skip
    report: dict[str, Any] = {
        "framework": "Kahn et al. 2016 (conformance, completeness, plausibility), as in the OHDSI DQD",
        "thresholds": thresholds,
        "period": [d.isoformat() for d in period] if period else None,
        "tables": tables,
    }
    report["summary"] = quality.summarise(tables, k)
    report["drift"] = quality.drift(report, previous)
    return report


async def delete_stored(ctx: outbox.JobContext, payload: dict[str, Any]) -> None:
    """Outbox handler: remove bytes whose last reference was deleted (idempotent)."""
    await ctx.services["storage"].delete(payload["key"])


def _require_draft(release: Release) -> Release:
    if release.status != "draft":
        raise Conflict(f"Release {release.version} is {release.status}: its files are frozen.", code="release_frozen")
    return release


def _match_files(tables: list[dict[str, Any]], files: list[ReleaseFile]) -> tuple[dict[str, TableSpec], list[str]]:
    """Each dictionary table needs exactly one file whose schema agrees; no file may be left over."""
    problems: list[str] = []
    by_table: dict[str, list[ReleaseFile]] = {}
    for f in files:
        by_table.setdefault(f.table_name, []).append(f)
    specs: dict[str, TableSpec] = {}
    for entry in tables:
        candidates = by_table.pop(entry["table"], [])
        if len(candidates) != 1:
            problems.append(f"table {entry['table']}: expected one file, found {len(candidates)}")
            continue
        found = candidates[0]
        columns = [ColumnInfo(name=c["name"], type=c["type"]) for c in found.columns]
        problems += schema_problems(entry, columns)
        specs[entry["table"]] = TableSpec(upload_key=found.storage_key, format=found.format, dictionary=entry)
    problems += [f"file {f.name}: no table {t} in the dictionary" for t, fs in by_table.items() for f in fs]
    return specs, problems

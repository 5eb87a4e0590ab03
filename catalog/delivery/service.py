"""Delivery: a licence turned into data, with the grade enforced on every request.

Every request runs the same gate (``gate.py``) — the caller is a party, ``usable.decide`` finds
nothing to refuse, the release is covered and not withdrawn, ``policy.py`` allows the mode for the
grade and the licence's modes include it, the query fits the dictionary and the grade's column
rules — and then the two phases of STYLE rule 3's exception: a short transaction reserves the most
the request can use against the caps and the ε budget; DuckDB works with no transaction open; a
second short transaction records the actual usage, audits the request (who, what, how much —
never the data) and gives back the rest.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from catalog import audit, policy
from catalog.access import repository as access_repo
from catalog.auth import Principal
from catalog.db import read_transaction, write_transaction
from catalog.delivery import compiler, disclosure, dp, validation
from catalog.delivery import repository as repo
from catalog.delivery.gate import Gate, allow_mode, most_rows, pick_release, usable_licence
from catalog.delivery.schemas import (
    MAX_GROUPS,
    BudgetRead,
    Download,
    FileEntry,
    FileList,
    QueryAnswer,
    QueryRequest,
)
from catalog.errors import DomainError, NotFound, ValidationFailed
from catalog.metering import repository as metering_repo
from catalog.metering import service as metering
from catalog.products import dictionary
from catalog.products import repository as products_repo
from catalog.products.models import ReleaseFile
from catalog.storage import Storage

CHUNK = 256 * 1024


RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def byte_range(header: str, size: int) -> tuple[int, int]:
    """One byte range (``bytes=a-b``, ``bytes=a-``, ``bytes=-n``); several ranges are not offered."""
    match = RANGE.match(header.strip())
    if match is None or (not match.group(1) and not match.group(2)):
        raise DomainError("Only a single byte range is supported.", code="range_not_satisfiable", status=416)
    first, last = match.groups()
    if first == "":
        start, end = max(0, size - int(last)), size - 1
    else:
        start, end = int(first), int(last) if last else size - 1
    if start > end or start >= size:
        raise DomainError(f"The range is outside the file's {size} bytes.", code="range_not_satisfiable", status=416)
    return start, min(end, size - 1)


class DeliveryService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        storage: Storage,
        caller: Principal,
        *,
        timeout_s: float = 30.0,
    ) -> None:
        self.sessions = sessions
        self.storage = storage
        self.caller = caller
        self.timeout_s = timeout_s

    # --- queries ----------------------------------------------------------------------------

    async def query(self, licence_id: str, q: QueryRequest) -> QueryAnswer:
        gate = await self._open_query(licence_id, q)
        noise_drawn = False
        try:
            path = str(self.storage.table_path(gate.release.id, q.table))
            if gate.mode == "rows":
                compiled = compiler.rows_sql(q, gate.table, path, policy.rule(gate.product.grade))
                rows = [dict(zip(compiled.columns, r, strict=True)) for r in await self._run(gate, compiled)]
                answer = QueryAnswer(
                    release=gate.release.version,
                    mode="rows",
                    columns=compiled.columns,
                    rows=rows,
                    suppressed=[],
                    perturbed=False,
                    epsilon_spent=0.0,
                )
            elif gate.mode == "aggregate":
                answer = await self._aggregate(gate, msgspec.structs.replace(q, limit=gate.rows), path)
            else:
                compiled = compiler.dp_rows_sql(q, gate.table, path)
                extracted = await self._run(gate, compiled)
                noise_drawn = True  # from here on the ε is spent, whatever happens
                released = dp.release(q, gate.table, compiled.columns, extracted, gate.epsilon_micro)
                answer = QueryAnswer(
                    release=gate.release.version,
                    mode="dp_aggregate",
                    columns=released.columns,
                    rows=released.rows,
                    suppressed=[],
                    perturbed=True,
                    epsilon_spent=released.epsilon_spent_micro / policy.MICRO,
                )
        except BaseException:
            async with write_transaction(self.sessions) as session:
                await metering.release(session, gate.reservation_id, keep_epsilon=noise_drawn)
            raise
        async with write_transaction(self.sessions) as session:
            used = {"queries": 1, "rows_returned": len(answer.rows)}
            if gate.epsilon_micro:
                used["epsilon_spent"] = gate.epsilon_micro
            await metering.settle(session, gate.reservation_id, used, licence=gate.licence)
            self._audit(
                session,
                gate,
                "licence.queried",
                {
                    "release": gate.release.version,
                    "mode": gate.mode,
                    "query": msgspec.to_builtins(q),
                    "rows": len(answer.rows),
                    "suppressed": len(answer.suppressed),
                    "epsilon_micro": gate.epsilon_micro,
                },
            )
        return answer

    async def _open_query(self, licence_id: str, q: QueryRequest) -> Gate:
        async with write_transaction(self.sessions) as session:
            licence, product = await usable_licence(session, self.caller, licence_id)
            release = pick_release(await repo.covered_releases(session, product.id, licence.ends_on), q.release)
            rule = policy.rule(product.grade)
            mode = compiler.mode_of(q)
            if mode == "aggregate" and not rule.allows("aggregate") and rule.allows("dp_aggregate"):
                mode = "dp_aggregate"  # the grade answers aggregates only with differential privacy
            allow_mode(product, licence, mode)
            table = dictionary.table(release.dictionary, q.table)
            if table is None:
                raise ValidationFailed.field("table", f"release {release.version} has no table {q.table!r}")
            validation.validate(q, table, rule, mode)
            epsilon = dp.check(q, table, rule) if mode == "dp_aggregate" else 0
            rows = most_rows(q, table, mode)
            reservation = await metering.reserve(
                session,
                licence,
                self.caller.user_id,
                "query",
                {"queries": 1, "rows_returned": rows},
                epsilon,
                timeout_s=self.timeout_s,
            )
            return Gate(
                licence=licence,
                product=product,
                release=release,
                mode=mode,
                table=table,
                reservation_id=reservation.id,
                epsilon_micro=epsilon,
                rows=rows,
            )

    async def _aggregate(self, gate: Gate, q: QueryRequest, path: str) -> QueryAnswer:
        rule = policy.rule(gate.product.grade)
        if rule.query_set_control:
            population = compiler.population_sql(q, gate.table, path)
            matching, total = (await self._run(gate, population))[0]
            disclosure.check_query_set(int(matching or 0), int(total or 0), bool(q.where), rule)
        compiled = compiler.aggregate_sql(q, gate.table, path, rule)
        cells = [dict(zip(compiled.columns, r, strict=True)) for r in await self._run(gate, compiled)]
        protected = disclosure.protect(cells[:MAX_GROUPS], q, rule)
        columns = [*q.group_by, *(a.fn if a.field is None else f"{a.fn}_{a.field}" for a in q.aggregates)]
        return QueryAnswer(
            release=gate.release.version,
            mode="aggregate",
            columns=columns,
            rows=protected.rows,
            suppressed=protected.suppressed,
            perturbed=protected.perturbed,
            epsilon_spent=0.0,
        )

    async def _run(self, gate: Gate, compiled: compiler.Compiled) -> list[tuple[Any, ...]]:
        return await self.storage.sandbox.run_limited(
            lambda conn: conn.execute(compiled.sql, compiled.params).fetchall(),
            allowed_dir=self.storage.release_dir(gate.release.id) / "tables",
            timeout_s=self.timeout_s,
        )

    # --- files ------------------------------------------------------------------------------

    async def files(self, licence_id: str) -> FileList:
        async with read_transaction(self.sessions) as session:
            licence, product = await usable_licence(session, self.caller, licence_id)
            allow_mode(product, licence, "download")
            releases = [
                r for r in await repo.covered_releases(session, product.id, licence.ends_on) if r.status == "published"
            ]
            versions = {r.id: r.version for r in releases}
            files = await repo.files_of(session, list(versions))
        return FileList(
            items=[
                FileEntry(
                    name=f.name,
                    release=versions[f.release_id],
                    table=f.table_name,
                    format=f.format,
                    bytes=f.bytes,
                    sha256=f.sha256,
                    rows=f.rows,
                )
                for f in files
            ]
        )

    async def open_download(
        self, licence_id: str, name: str, version: str | None, range_header: str | None
    ) -> tuple[Download, AsyncIterator[bytes]]:
        """Phase one of a download (the gate, the file, the bytes reserved against the caps): what the
        response says about the file, and its bytes — metered and audited as they are sent."""
        async with write_transaction(self.sessions) as session:
            licence, product = await usable_licence(session, self.caller, licence_id)
            allow_mode(product, licence, "download")
            release = pick_release(await repo.covered_releases(session, product.id, licence.ends_on), version)
            found = next((f for f in await repo.files_of(session, [release.id]) if f.name == name), None)
            if found is None:
                raise NotFound(f"No file {name} in release {release.version}.")
            start, end = byte_range(range_header, found.bytes) if range_header else (0, found.bytes - 1)
            reservation = await metering.reserve(
                session,
                licence,
                self.caller.user_id,
                "download",
                {"bytes_downloaded": max(0, end - start + 1)},
                timeout_s=max(self.timeout_s, found.bytes / 1_000_000),
            )
            gate = Gate(
                licence=licence,
                product=product,
                release=release,
                mode="download",
                table=None,
                reservation_id=reservation.id,
            )
        about = Download(
            name=found.name,
            sha256=found.sha256,
            size=found.bytes,
            media_type="text/csv" if found.format == "csv" else "application/octet-stream",
            start=start,
            end=end,
        )
        return about, self._stream(found, gate, (start, end))

    async def _stream(self, found: ReleaseFile, gate: Gate, span: tuple[int, int]) -> AsyncIterator[bytes]:
        """The bytes, metered as actually sent: settled when the stream ends, however it ends."""
        sent = 0
        start, end = span
        try:
            with self.storage.path(found.storage_key).open("rb") as fh:
                fh.seek(start)
                left = end - start + 1
                while left > 0:
                    # Off the event loop: a cold disk read must not stall every other request.
                    chunk = await asyncio.to_thread(fh.read, min(CHUNK, left))
                    if not chunk:
                        break
                    left -= len(chunk)
                    yield chunk
                    sent += len(chunk)
        finally:
            async with write_transaction(self.sessions) as session:
                await metering.settle(
                    session, gate.reservation_id, {"bytes_downloaded": sent, "queries": 0}, licence=gate.licence
                )
                self._audit(
                    session,
                    gate,
                    "licence.downloaded",
                    {
                        "release": gate.release.version,
                        "file": found.name,
                        "bytes": sent,
                        "sha256": found.sha256,
                        "range": [start, end],
                        "complete": sent == end - start + 1,
                    },
                )

    # --- budget -----------------------------------------------------------------------------

    async def budget(self, licence_id: str) -> BudgetRead:
        async with read_transaction(self.sessions) as session:
            licence = await access_repo.party_licence(session, self.caller, licence_id)
            product = await products_repo.get(session, licence.product_id)
            assert product is not None
            rule = policy.rule(product.grade)
            row = await metering_repo.budget(session, licence.consumer_org_id, licence.product_id)
        total = rule.epsilon_total_micro or 0  # the policy's word now, as try_spend enforces it
        spent = row.spent_micro if row else 0
        left, per_query = max(0, total - spent), rule.epsilon_per_query_micro or 0
        return BudgetRead(
            consumer_org_id=licence.consumer_org_id,
            product_id=licence.product_id,
            total=total / policy.MICRO,
            spent=spent / policy.MICRO,
            left=left / policy.MICRO,
            per_query_max=per_query / policy.MICRO,
            total_micro=total,
            spent_micro=spent,
            left_micro=left,
            per_query_max_micro=per_query,
            updated_at=row.updated_at if row else None,
        )

    def _audit(self, session: AsyncSession, gate: Gate, action: str, data: dict[str, Any]) -> None:
        audit.record(
            session,
            self.caller,
            action,
            "licence",
            gate.licence.id,
            [gate.licence.consumer_org_id, gate.licence.owner_org_id],
            data,
        )

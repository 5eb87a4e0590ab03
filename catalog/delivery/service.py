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

import secrets
from functools import partial
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from catalog import policy, shielded
from catalog.access import repository as access_repo
from catalog.auth import Principal
from catalog.db import read_transaction, write_transaction
from catalog.delivery import (
    anonymised_sql,
    anonymiser,
    compiler,
    conditions,
    disclosure,
    dp,
    formats,
    paging,
    validation,
)
from catalog.delivery import repository as repo
from catalog.delivery.gate import (
    Gate,
    allow_mode,
    audit_use,
    isolating_columns,
    most_rows,
    pick_release,
    usable_licence,
)
from catalog.delivery.noise import Noise
from catalog.delivery.schemas import (
    MAX_GROUPS,
    BudgetRead,
    QueryAnswer,
    QueryFile,
    QueryRequest,
)
from catalog.errors import DomainError, ValidationFailed
from catalog.metering import repository as metering_repo
from catalog.metering import reservations as metering
from catalog.products import dictionary
from catalog.products import repository as products_repo
from catalog.storage import Storage


class DeliveryService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        storage: Storage,
        caller: Principal,
        *,
        noise: Noise,
        timeout_s: float = 30.0,
        cursor_key: bytes | None = None,
    ) -> None:
        """``cursor_key`` signs the cursors of row answers (``paging.cursor_key`` of the pepper);
        without one, a random key: cursors then continue only on this service object."""
        self.sessions = sessions
        self.storage = storage
        self.caller = caller
        self.noise = noise
        self.timeout_s = timeout_s
        self.cursor_key = cursor_key or secrets.token_bytes(32)

    # --- queries ----------------------------------------------------------------------------

    async def query(
        self, licence_id: str, q: QueryRequest, as_file: formats.FileFormat | None = None
    ) -> QueryAnswer | QueryFile:
        """The answer — for a rows query, one page of it, or with ``as_file`` that page as a file.

        A query cancelled before its answer is ready (its client went away: ``connection.py``) gives
        its whole reservation back, ε excepted once noise was drawn; an answer computed is metered
        and audited, whether or not anybody is left to read it. Both run shielded from cancellation.
        """
        if as_file is not None and compiler.mode_of(q) != "rows":
            raise DomainError(
                "Only rows answers come as files; ask for an aggregate as JSON.", code="not_acceptable", status=406
            )
        gate = await self._open_query(licence_id, q)
        noise_drawn = False
        content = None
        try:
            path = self.storage.table_location(gate.release.id, q.table, gate.release.tables)
            if gate.mode == "rows":
                answer, content = await self._rows(gate, q, path, as_file)
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
            await shielded.run(self._release(gate, keep_epsilon=noise_drawn), what="release a query")
            raise
        await shielded.run(self._settle_query(gate, q, answer), what="settle a query")
        if as_file is None or content is None:
            return answer
        return QueryFile(
            media_type=formats.MEDIA_TYPES[as_file],
            filename=f"{q.table}.{formats.EXTENSIONS[as_file]}",
            content=content,
            release=answer.release,
            rows=len(answer.rows),
            truncated=answer.truncated,
            next_cursor=answer.next_cursor,
        )

    async def _release(self, gate: Gate, *, keep_epsilon: bool) -> None:
        async with write_transaction(self.sessions) as session:
            await metering.release(session, gate.reservation_id, keep_epsilon=keep_epsilon)

    async def _settle_query(self, gate: Gate, q: QueryRequest, answer: QueryAnswer) -> None:
        async with write_transaction(self.sessions) as session:
            used = {"queries": 1, "rows_returned": len(answer.rows)}
            if gate.epsilon_micro:
                used["epsilon_spent"] = gate.epsilon_micro
            if not await metering.settle(
                session, gate.reservation_id, used, licence=gate.licence, counters=gate.counters
            ):
                return  # settled already: counted and audited once
            audit_use(
                session,
                self.caller,
                gate,
                "licence.queried",
                {
                    "release": gate.release.version,
                    "mode": gate.mode,
                    "query": msgspec.to_builtins(msgspec.structs.replace(q, cursor=None)),
                    "continued": q.cursor is not None,
                    "rows": len(answer.rows),
                    "truncated": answer.truncated,
                    "suppressed": len(answer.suppressed),
                    "anonymised": answer.noise_sd is not None,
                    "low_effect": len(answer.low_effect),
                    "epsilon_micro": gate.epsilon_micro,
                },
            )

    async def _open_query(self, licence_id: str, q: QueryRequest) -> Gate:
        async with write_transaction(self.sessions) as session:
            licence, product = await usable_licence(session, self.caller, licence_id)
            position = paging.decode(self.cursor_key, q.cursor) if q.cursor is not None else None
            covered = await repo.covered_releases(session, product.id, licence.ends_on)
            release = pick_release(covered, q.release, cursor_release=position and position.release_id)
            rule = policy.rule(product.grade)
            mode = compiler.mode_of(q)
            if mode == "aggregate" and not rule.allows("aggregate") and rule.allows("dp_aggregate"):
                mode = "dp_aggregate"  # the grade answers aggregates only with differential privacy
            allow_mode(product, licence, mode)
            table = dictionary.table(release.dictionary, q.table)
            if table is None:
                raise ValidationFailed.field("table", f"release {release.version} has no table {q.table!r}")
            validation.validate(q, table, rule, mode, isolating_columns(release, table, rule))
            after = paging.continue_after(self.cursor_key, position, licence.id, q, table) if position else None
            epsilon = dp.check(q, table, rule) if mode == "dp_aggregate" else 0
            rows = most_rows(q, table, mode)
            if mode == "aggregate" and rule.anonymisation is not None:
                await metering.count_daily_query(session, licence, rule.anonymisation.daily_queries)
            reservation, counters = await metering.reserve(
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
                counters=counters,
                epsilon_micro=epsilon,
                rows=rows,
                after=after,
            )

    async def _rows(
        self, gate: Gate, q: QueryRequest, path: str, as_file: formats.FileFormat | None
    ) -> tuple[QueryAnswer, bytes | None]:
        """One page of a rows answer (``paging.py``), and the file it makes when one was asked for."""
        page = compiler.rows_sql(q, gate.table, path, policy.rule(gate.product.grade), after=gate.after)
        content = None
        if as_file == "parquet":
            with self.storage.scratch() as scratch:
                fetched, content = await self.storage.sandbox.run_limited(
                    partial(compiler.run_page_to_parquet, query=q, page=page, target=str(scratch / "page.parquet")),
                    allowed_dir=self.storage.tables_location(gate.release.id),
                    timeout_s=self.timeout_s,
                    scratch=scratch,
                )
        else:
            fetched = await self._run(gate, page)
        columns = page.columns[:-1]  # the record key, last, is for the cursor only
        limit = q.limit or compiler.DEFAULT_LIMIT
        truncated = len(fetched) > limit
        shown = [row[:-1] for row in fetched[:limit]]
        next_cursor = None
        if truncated:
            last = fetched[limit - 1]
            keyset = [*(last[columns.index(o.field)] for o in q.order_by), last[-1]]
            next_cursor = paging.encode(self.cursor_key, gate.licence.id, gate.release.id, q, keyset)
        if as_file == "csv":
            content = formats.to_csv(columns, shown)
        answer = QueryAnswer(
            release=gate.release.version,
            mode="rows",
            columns=columns,
            rows=[dict(zip(columns, row, strict=True)) for row in shown],
            suppressed=[],
            perturbed=False,
            epsilon_spent=0.0,
            truncated=truncated,
            next_cursor=next_cursor,
        )
        return answer, content

    async def _aggregate(self, gate: Gate, q: QueryRequest, path: str) -> QueryAnswer:
        rule = policy.rule(gate.product.grade)
        if rule.anonymisation is not None:
            return await self._anonymised(gate, q, path, rule)
        if rule.query_set_control:
            # Publish counted the table's persons once; the file never changes, so bind that count.
            persons = ((gate.release.tables or {}).get(q.table) or {}).get("persons")
            population = compiler.population_sql(q, gate.table, path, persons_total=persons)
            matching, total = (await self._run(gate, population))[0]
            disclosure.check_query_set(int(matching or 0), int(total or 0), bool(q.where), rule)
        compiled = compiler.aggregate_sql(q, gate.table, path, rule)
        cells = [dict(zip(compiled.columns, r, strict=True)) for r in await self._run(gate, compiled)]
        decimals = {f["name"]: dictionary.precision(f) for f in gate.table["fields"]}
        protected = disclosure.protect(cells[:MAX_GROUPS], q, rule, decimals)
        return QueryAnswer(
            release=gate.release.version,
            mode="aggregate",
            columns=[*q.group_by, *(compiler.output_name(a) for a in q.aggregates)],
            rows=protected.rows,
            suppressed=protected.suppressed,
            perturbed=protected.perturbed,
            epsilon_spent=0.0,
        )

    async def _anonymised(self, gate: Gate, q: QueryRequest, path: str, rule: policy.GradeRule) -> QueryAnswer:
        assert gate.table is not None
        reading = conditions.read(q, dictionary.fields(gate.table))
        seed = (gate.release.id, gate.table["table"])
        decisions: dict[tuple, anonymised_sql.Decision] = {}
        if reading.atoms:  # which atoms move too few persons, cell by cell: a first, lighter scan
            limits = anonymiser.thresholds(reading, rule, self.noise, seed)
            found = anonymised_sql.signatures(q, gate.table, path, reading)
            rows = [dict(zip(found.columns, r, strict=True)) for r in await self._run(gate, found)]
            decisions = anonymiser.decide(rows, q, reading, limits)
        compiled = anonymised_sql.cells(q, gate.table, path, reading, decisions, anonymiser.depth(rule))
        cells = [dict(zip(compiled.columns, r, strict=True)) for r in await self._run(gate, compiled)]
        released = anonymiser.protect(cells, q, reading, decisions, rule, self.noise, seed, gate.table)
        return QueryAnswer(
            release=gate.release.version,
            mode="aggregate",
            columns=[*q.group_by, *(compiler.output_name(a) for a in q.aggregates)],
            rows=released.rows,
            suppressed=released.suppressed,
            perturbed=True,
            epsilon_spent=0.0,
            noise_sd=released.noise_sd,
            low_effect=released.low_effect,
            snapped=released.snapped,
        )

    async def _run(self, gate: Gate, compiled: compiler.Compiled) -> list[tuple[Any, ...]]:
        return await self.storage.sandbox.run_limited(
            lambda conn: conn.execute(compiled.sql, compiled.params).fetchall(),
            allowed_dir=self.storage.tables_location(gate.release.id),
            timeout_s=self.timeout_s,
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

"""Seed the demo marketplace.

Demo API keys are derived, never stored: HMAC-SHA-256(LODE_DEMO_SEED, slug). Only their peppered
hash is stored, like any key, so a rerun derives the same keys, finds them, and changes nothing.
"""

from __future__ import annotations

import sys
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from catalog import db
from catalog.auth import demo_secret, hash_secret
from catalog.orgs import repository as orgs_repo
from catalog.orgs.schemas import OrgCreate
from catalog.orgs.service import OrgService
from catalog.settings import Settings

OPERATOR = {
    "slug": "operator",
    "name": "上海健康数据授权运营平台 — Shanghai Health Data Operator",
    "email": "admin@operator.demo.lode",
    "jurisdiction": "CN",
}


class Progress:
    """A small progress bar on stderr (stdout stays clean for --json)."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.done, self.enabled = total, 0, enabled

    def step(self, label: str) -> None:
        self.done += 1
        if self.enabled:
            filled = int(30 * self.done / self.total)
            sys.stderr.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {self.done}/{self.total} {label:<40}")
            if self.done == self.total:
                sys.stderr.write("\n")
            sys.stderr.flush()


async def seed(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, services: dict[str, Any], *, progress: bool
) -> dict[str, Any]:
    bar = Progress(total=1, enabled=progress)
    keys: dict[str, str] = {}
    async with db.write_transaction(sessions) as session:
        keys["operator"] = await ensure_operator(session, settings)
    bar.step("operator")
    return {"keys": keys, "docs": f"{settings.public_url}/docs"}


async def ensure_operator(session: AsyncSession, settings: Settings) -> str:
    secret = demo_secret(settings.demo_seed, OPERATOR["slug"])
    if await orgs_repo.key_by_hash(session, hash_secret(settings.key_pepper, secret)) is not None:
        return secret
    service = OrgService(session, None, settings.key_pepper)
    operator_id = await orgs_repo.operator_id(session)  # reuse one made by `lode admin bootstrap`
    if operator_id is None:
        org = await service.create_org(
            OrgCreate(
                name=OPERATOR["name"],
                kind="operator",
                jurisdiction=OPERATOR["jurisdiction"],
                org_type="government",
                for_profit=False,
                slug=OPERATOR["slug"],
            ),
            verified=True,
        )
        operator_id = org.id
    user = await orgs_repo.user_by_email(session, OPERATOR["email"])
    if user is None:
        user = await service.add_first_admin(operator_id, OPERATOR["email"], "Demo operator admin")
    service.store_key(operator_id, user.id, "demo", secret)
    await session.flush()
    return secret

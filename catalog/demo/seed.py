"""Seed the demo marketplace (``lode demo``): organisations, people, listed products with published
synthetic releases, and approved, active licences for the demo consumers.

Everything goes through the same services the API uses, acting as the demo people, so the audit
chain tells the story a newcomer would expect. Idempotent: each organisation, product and licence
is looked up first and made only if missing. Demo API keys are derived, never stored:
HMAC-SHA-256(LODE_DEMO_SEED, slug); only their peppered hash is stored, like any key.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from catalog import db
from catalog.access import sweep as licence_sweep
from catalog.auth import Principal, demo_secret, hash_secret
from catalog.delivery.noise import Noise
from catalog.demo import catalog as demo
from catalog.demo import defects
from catalog.demo.data import write_product
from catalog.demo.licences import LICENCES, bring_near_expiry, ensure_licence
from catalog.demo.usage import add_usage
from catalog.orgs import repository as orgs_repo
from catalog.orgs.schemas import MemberCreate, OrgVerify
from catalog.orgs.service import OrgService
from catalog.outbox import JobContext
from catalog.products import releases
from catalog.products import repository as products_repo
from catalog.products.commerce import CommerceService
from catalog.products.schemas import ProductReview
from catalog.products.service import ProductService
from catalog.settings import Settings
from catalog.storage import Storage


class Progress:
    """A small progress bar on stderr (stdout stays clean for --json)."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.done, self.enabled = total, 0, enabled

    def step(self, label: str) -> None:
        self.done += 1
        if self.enabled:
            filled = int(30 * self.done / self.total)
            sys.stderr.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {self.done}/{self.total} {label[:40]:<40}")
            if self.done == self.total:
                sys.stderr.write("\n")
            sys.stderr.flush()


class People:
    """Who the demo acts as: a Principal per (org slug, role), from the seeded memberships."""

    def __init__(self) -> None:
        self.org_ids: dict[str, str] = {}
        self.kinds: dict[str, str] = {}
        self.users: dict[tuple[str, str], str] = {}  # (org slug, email) → user id

    def principal(self, slug: str, role: str = "admin") -> Principal:
        member = demo.org(slug).member(role)
        return Principal(
            user_id=self.users[(slug, member.email)],
            org_id=self.org_ids[slug],
            org_kind=self.kinds[slug],
            org_status="verified",
            roles=frozenset(member.roles),
            key_id="key_demo",
        )


async def seed(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, services: dict[str, Any], *, progress: bool
) -> dict[str, Any]:
    storage: Storage = services["storage"]
    bar = Progress(total=len(demo.ALL_ORGS) + len(demo.PRODUCTS) + len(LICENCES), enabled=progress)
    people = People()
    keys: dict[str, str] = {}
    for item in demo.ALL_ORGS:
        async with db.write_transaction(sessions) as session:
            keys[item.slug] = await ensure_org(session, settings, people, item)
        bar.step(f"organisation {item.slug}")
    with tempfile.TemporaryDirectory(prefix="lode-demo-") as scratch:
        for product in demo.PRODUCTS:
            await ensure_product(sessions, settings, storage, people, product, Path(scratch))
            bar.step(f"product {product.slug}")
    licences = []
    for spec in LICENCES:
        async with db.write_transaction(sessions) as session:
            made = await ensure_licence(session, people, spec)
        licences.append(made)
        made["queries"] = await add_usage(
            sessions, storage, Noise(settings.noise_secret), made["licence_id"], people.principal(spec.consumer)
        )
        bar.step(f"licence {spec.product} → {spec.consumer}")
    async with db.write_transaction(sessions) as session:
        near_expiry = await bring_near_expiry(session, people)
    await licence_sweep.sweep(JobContext(sessions=sessions, services=services))  # sends its reminder
    return {
        "keys": keys,
        "member_keys": member_keys(settings),
        "licences": licences,
        "near_expiry": near_expiry,
        "web": f"{settings.public_url}/",
        "docs": f"{settings.public_url}/docs",
    }


async def ensure_org(session: AsyncSession, settings: Settings, people: People, item: demo.DemoOrg) -> str:
    """The organisation, its members and its admin's derived key; answers that key."""
    service = OrgService(session, None, settings.key_pepper)
    org_id = await orgs_repo.operator_id(session) if item.org.kind == "operator" else None
    if org_id is None:
        org_id = await orgs_repo.org_id_by_slug(session, item.slug)
    if org_id is None:
        operator = people.principal("operator") if item.org.kind != "operator" else None
        service.caller = operator
        org_id = (await service.create_org(item.org, verified=item.org.kind == "operator")).id
        if operator is not None:
            await service.verify(org_id, OrgVerify(status="verified", note="demo organisation"))
    people.org_ids[item.slug], people.kinds[item.slug] = org_id, item.org.kind
    for member in item.members:
        user = await orgs_repo.user_by_email(session, member.email)
        if user is None:
            if not people.users and item.org.kind == "operator":
                user = await service.add_first_admin(org_id, member.email, member.name)
            else:
                service.caller = people.principal("operator") if people.users else None
                user_id = (await service.add_member(org_id, member)).id
                user = await orgs_repo.get_user(session, user_id)
        assert user is not None
        people.users[(item.slug, member.email)] = user.id
    secret = demo_secret(settings.demo_seed, item.slug)
    for member in item.members:
        # The admin's key is the organisation's (``keys``); each other member's is its own, so the
        # web pages can be tried in every role — a review track is decided by its role's holder.
        own = secret if member is item.admin else demo_secret(settings.demo_seed, member_key_name(item, member))
        if await orgs_repo.key_by_hash(session, hash_secret(settings.key_pepper, own)) is None:
            service.store_key(org_id, people.users[(item.slug, member.email)], "demo", own)
            await session.flush()
    return secret


def member_key_name(item: demo.DemoOrg, member: MemberCreate) -> str:
    """``operator/ethics``: the organisation's slug and the member's e-mail local part."""
    return f"{item.slug}/{member.email.split('@')[0]}"


def member_keys(settings: Settings) -> dict[str, str]:
    return {
        member_key_name(item, member): demo_secret(settings.demo_seed, member_key_name(item, member))
        for item in demo.ALL_ORGS
        for member in item.members
        if member is not item.admin
    }


async def ensure_product(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    storage: Storage,
    people: People,
    item: demo.DemoProduct,
    scratch: Path,
) -> None:
    """Draft, offer, release with synthetic data, publish, submit and list — unless it is there."""
    async with db.write_transaction(sessions) as session:
        existing = await products_repo.get_by_id_or_slug(session, item.slug)
        if existing is not None:
            return
        publisher = people.principal(item.owner, "publisher")
        product = await ProductService(session, publisher).create(item.product_create(people.org_ids))
        commerce = CommerceService(session, publisher)
        await commerce.put_terms(product.id, item.terms)
        for plan in item.plan_creates(people.org_ids):
            await commerce.create_plan(product.id, plan)
        await CommerceService(session, people.principal(item.owner)).put_revenue_share(
            product.id, item.revenue_share_put(people.org_ids)
        )
        await releases.ReleaseService(session, publisher, storage).create(product.id, item.release)
    version = item.release.version
    written = write_product(item, scratch / item.slug, settings.demo_seed)
    defects.plant(item.slug, written)  # what a real extract carries, for the quality report to find
    for path in written.values():
        await releases.upload(
            sessions, publisher, storage, product.id, version, path.name, _chunks(path), settings.max_upload_bytes
        )
    await releases.publish(sessions, publisher, storage, product.id, version)
    async with db.write_transaction(sessions) as session:
        await ProductService(session, publisher).submit(product.id)
        await ProductService(session, people.principal("operator")).review(
            product.id, ProductReview(decision="list", comment="demo product")
        )


async def _chunks(path: Path, size: int = 1 << 20) -> AsyncIterator[bytes]:
    with path.open("rb") as fh:
        while chunk := fh.read(size):
            yield chunk

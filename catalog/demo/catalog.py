"""The demo marketplace as data: organisations, members, products, terms, plans, revenue shares, releases.

Everything is an API body (the schema Structs), validated by ``msgspec.convert`` when this module is
imported. Organisations are referred to by slug, since ids exist only once a seeder has created
them; ``DemoProduct.product_create(org_ids)`` and its siblings turn slugs into ids::

    for demo_org in ORGS: ...                    # OrgCreate + MemberCreate bodies
    org_ids = {"operator": ..., "ruijin": ...}   # slug → id, after creating them
    for item in PRODUCTS:
        body = item.product_create(org_ids)      # POST /v1/products by a publisher of item.owner
        item.terms, item.plan_creates(org_ids), item.revenue_share_put(org_ids), item.release
        catalog.demo.data.write_product(item, directory, seed)   # the release's files

Organisation slugs: ``operator`` (exists already), hospitals ``ruijin``, ``zhongshan``,
``huashan``; consumers ``shanghai-pharma-rd`` (CN), ``rheinpharma`` (DE), ``fudan-sph`` (CN,
not for profit).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from catalog.demo import products_controlled, products_open
from catalog.demo.dictionaries import DICTIONARIES
from catalog.orgs.schemas import MemberCreate, OrgCreate
from catalog.products.offer_schemas import PlanCreate, RevenueSharePut, TermsPut
from catalog.products.schemas import Grade, ProductCreate, ReleaseCreate

DEMO_DOMAIN = "demo.lode"
RELEASE_VERSION = "2025.1"
_PLACEHOLDER_ORG_ID = "org_" + "0" * 26  # validates slug-bearing bodies before ids exist


@dataclass(frozen=True)
class DemoOrg:
    slug: str
    org: OrgCreate
    members: tuple[MemberCreate, ...]
    institution: str = ""  # short English name, for product sources

    @property
    def admin(self) -> MemberCreate:
        return next(m for m in self.members if "admin" in m.roles)

    def member(self, role: str) -> MemberCreate:
        """The first member holding ``role`` (``admin`` acts in every role of its organisation)."""
        return next((m for m in self.members if role in m.roles), self.admin)


def _org(slug: str, name: str, kind: str, org_type: str, jurisdiction: str, for_profit: bool,
         people: list[tuple[str, str, list[str]]], institution: str = "") -> DemoOrg:  # fmt: skip
    org = msgspec.convert(
        {"name": name, "kind": kind, "jurisdiction": jurisdiction, "org_type": org_type, "for_profit": for_profit,
         "slug": slug}, OrgCreate,
    )  # fmt: skip
    members = tuple(
        msgspec.convert({"email": f"{local}@{slug}.{DEMO_DOMAIN}", "name": person, "roles": roles}, MemberCreate)
        for local, person, roles in people
    )
    return DemoOrg(slug=slug, org=org, members=members, institution=institution)


OPERATOR = _org(
    "operator", "上海健康数据授权运营平台 — Shanghai Health Data Operator", "operator", "government", "CN", False, [
        ("admin", "Demo operator admin", ["admin"]),
        ("curator", "周琳 Zhou Lin (curator)", ["curator"]),
        ("compliance", "孙浩 Sun Hao (compliance)", ["compliance"]),
        ("ethics", "吴慧 Wu Hui (ethics committee)", ["ethics"]),
        ("security", "郑凯 Zheng Kai (data security)", ["security"]),
        ("finance", "何倩 He Qian (finance)", ["finance"]),
    ], "Shanghai Health Data Operator",
)  # fmt: skip

ORGS: tuple[DemoOrg, ...] = (
    _org("ruijin", "瑞金医院 — Ruijin Hospital, Shanghai Jiao Tong University School of Medicine", "provider",
         "hospital", "CN", False, [
             ("admin", "陈静 Chen Jing", ["admin"]), ("publisher", "刘洋 Liu Yang", ["publisher"]),
             ("reviewer", "张伟 Zhang Wei", ["reviewer"]),
         ], "Ruijin Hospital"),
    _org("zhongshan", "中山医院 — Zhongshan Hospital, Fudan University", "provider", "hospital", "CN", False, [
        ("admin", "王敏 Wang Min", ["admin"]), ("publisher", "李娜 Li Na", ["publisher"]),
        ("reviewer", "赵磊 Zhao Lei", ["reviewer"]),
    ], "Zhongshan Hospital"),
    _org("huashan", "华山医院 — Huashan Hospital, Fudan University", "provider", "hospital", "CN", False, [
        ("admin", "黄丽 Huang Li", ["admin"]), ("publisher", "徐强 Xu Qiang", ["publisher"]),
        ("reviewer", "朱婷 Zhu Ting", ["reviewer"]),
    ], "Huashan Hospital"),
    _org("shanghai-pharma-rd", "上海医药研发 — Shanghai Pharma R&D", "consumer", "pharma", "CN", True, [
        ("admin", "杨帆 Yang Fan", ["admin"]), ("buyer", "林晓 Lin Xiao", ["buyer"]),
        ("analyst", "马超 Ma Chao", ["analyst"]), ("analyst2", "高雪 Gao Xue", ["analyst"]),
    ], "Shanghai Pharma R&D"),
    _org("rheinpharma", "Rheinpharma AG", "consumer", "pharma", "DE", True, [
        ("admin", "Katrin Weber", ["admin"]), ("buyer", "Jonas Fischer", ["buyer"]),
        ("analyst", "Lea Schneider", ["analyst"]),
    ], "Rheinpharma AG"),
    _org("fudan-sph", "复旦大学公共卫生学院 — Fudan University School of Public Health", "consumer", "university", "CN",
         False, [
             ("admin", "钱雯 Qian Wen", ["admin"]), ("buyer", "胡斌 Hu Bin", ["buyer"]),
             ("analyst", "罗佳 Luo Jia", ["analyst"]),
         ], "Fudan University School of Public Health"),
)  # fmt: skip

ALL_ORGS: tuple[DemoOrg, ...] = (OPERATOR, *ORGS)
_ORGS_BY_SLUG = {o.slug: o for o in ALL_ORGS}


def org(slug: str) -> DemoOrg:
    return _ORGS_BY_SLUG[slug]


# --- products ---------------------------------------------------------------------------------

_BASE_CLAUSES = (
    "1. The licensee shall not attempt to re-identify any person, nor link the data with other data to do so. "
    "被许可方不得尝试重新识别任何个人。\n"
    "2. The data may be used only for the purpose declared in the approved application. "
    "数据仅限用于申请中声明的用途。\n"
    "3. Publications shall acknowledge the data providers and the Shanghai health-data operator. "
    "发表成果须致谢数据提供方与运营平台。\n"
)
_LOCAL_CLAUSES = {
    "no_linkage": "No linkage with any other data set at the person level. 不得在个人层面与其他数据关联。",
    "no_cross_border": "The data and any results at the person level shall not leave China. 数据不得出境。",
    "enclave_only": "Analysis only inside the platform's enclave; no copies of rows. "
    "仅限平台内分析，不得复制行级数据。",
    "genetic_resources": "Human genetic resources under the PRC regulations; only organisations in China. "
    "属人类遗传资源，仅限境内机构使用。",
}


@dataclass(frozen=True)
class DemoPlan:
    plan: PlanCreate  # private_to left empty: see ``private_to``
    private_to: tuple[str, ...] = ()  # org slugs

    def create(self, org_ids: Mapping[str, str]) -> PlanCreate:
        if not self.private_to:
            return self.plan
        return msgspec.structs.replace(self.plan, private_to=[org_ids[s] for s in self.private_to])


@dataclass(frozen=True)
class DemoProduct:
    slug: str
    owner: str  # org slug of the publishing provider
    product: ProductCreate  # sources without org ids: see ``source_orgs``
    source_orgs: tuple[str | None, ...]  # org slug of each source, in order
    terms: TermsPut
    plans: tuple[DemoPlan, ...]
    operator_bps: int
    fund_bps: int
    provider_weights: tuple[tuple[str, int], ...]  # (org slug, weight)
    rows: Mapping[str, int]  # table → rows of synthetic data in the release
    release: ReleaseCreate  # its dictionary is copied from the product's

    @property
    def grade(self) -> Grade:
        return self.product.grade

    @property
    def tables(self) -> list[dict[str, Any]]:
        """The dictionary as plain dicts (what ``catalog.demo.data.write_table`` takes)."""
        return msgspec.to_builtins(self.product.dictionary or [])

    def product_create(self, org_ids: Mapping[str, str]) -> ProductCreate:
        sources = [
            msgspec.structs.replace(src, org_id=org_ids[slug]) if slug else src
            for src, slug in zip(self.product.sources, self.source_orgs, strict=True)
        ]
        return msgspec.structs.replace(self.product, sources=sources)

    def plan_creates(self, org_ids: Mapping[str, str]) -> list[PlanCreate]:
        return [p.create(org_ids) for p in self.plans]

    def revenue_share_put(self, org_ids: Mapping[str, str]) -> RevenueSharePut:
        return msgspec.convert(
            {"operator_bps": self.operator_bps, "fund_bps": self.fund_bps,
             "providers": [{"org_id": org_ids[s], "weight": w} for s, w in self.provider_weights]},
            RevenueSharePut,
        )  # fmt: skip


def _product(spec: dict[str, Any]) -> DemoProduct:
    slug = spec["slug"]
    zh, en = spec["zh"], spec["en"]
    dictionary = DICTIONARIES[slug]
    descriptive = {
        k: spec[k]
        for k in ("grade", "legal_basis", "data_types", "keywords", "therapeutic_areas", "standards",
                  "temporal_coverage", "update_frequency", "quality")
    }  # fmt: skip
    body = {
        "slug": slug, "title": f"{zh[0]} — {en[0]}", "summary": en[1], "description": en[2],
        "i18n": {"en": dict(zip(("title", "summary", "description"), en, strict=True)),
                 "zh": dict(zip(("title", "summary", "description"), zh, strict=True))},
        **descriptive, "identified": False, "core_data": False, "jurisdiction": "CN",
        "spatial_coverage": spec.get("spatial_coverage", ["CN-SH"]),
        "population_size": spec["population"], "record_count": sum(spec["rows"].values()),
        "sources": [{"institution": org(s["org"]).institution, "system": s["system"], "share": s["share"]}
                    for s in spec["sources"]],
        "dictionary": dictionary,
    }  # fmt: skip
    terms = dict(spec["terms"])
    local = terms.get("local_conditions", [])
    terms["clauses"] = _BASE_CLAUSES + "".join(f"{i}. {_LOCAL_CLAUSES[c]}\n" for i, c in enumerate(local, start=4))
    plans = tuple(
        DemoPlan(msgspec.convert({k: v for k, v in p.items() if k != "private_to"}, PlanCreate),
                 tuple(p.get("private_to", ())))
        for p in spec["plans"]
    )  # fmt: skip
    share = spec["revenue_share"]
    item = DemoProduct(
        slug=slug,
        owner=spec["owner"],
        product=msgspec.convert(body, ProductCreate),
        source_orgs=tuple(s["org"] for s in spec["sources"]),
        terms=msgspec.convert(terms, TermsPut),
        plans=plans,
        operator_bps=share["operator_bps"],
        fund_bps=share["fund_bps"],
        provider_weights=tuple(share["providers"].items()),
        rows=dict(spec["rows"]),
        release=ReleaseCreate(version=RELEASE_VERSION, notes=f"First release of {en[0]}; synthetic demo data."),
    )
    _check(item)
    return item


def _check(item: DemoProduct) -> None:
    """What the schemas cannot say: ids resolve, the owner publishes, tables and rows agree."""
    placeholders = {o.slug: _PLACEHOLDER_ORG_ID for o in ALL_ORGS}
    msgspec.convert(msgspec.to_builtins(item.product_create(placeholders)), ProductCreate)
    for plan in item.plan_creates(placeholders):
        msgspec.convert(msgspec.to_builtins(plan), PlanCreate)
    item.revenue_share_put(placeholders)
    msgspec.convert(msgspec.to_builtins(item.release), ReleaseCreate)
    if org(item.owner).org.kind != "provider" or any(org(s).org.kind != "provider" for s, _ in item.provider_weights):
        raise ValueError(f"{item.slug}: owner and revenue-share parties must be providers")
    if abs(sum(s.share for s in item.product.sources) - 1) > 1e-9:
        raise ValueError(f"{item.slug}: source shares must sum to 1")
    if set(item.rows) != {t["table"] for t in item.tables}:
        raise ValueError(f"{item.slug}: rows must name every table of the dictionary")


PRODUCTS: tuple[DemoProduct, ...] = tuple(_product(s) for s in [*products_open.SPECS, *products_controlled.SPECS])
_PRODUCTS_BY_SLUG = {p.slug: p for p in PRODUCTS}


def product(slug: str) -> DemoProduct:
    return _PRODUCTS_BY_SLUG[slug]


def find_product(slug: str) -> DemoProduct | None:
    return _PRODUCTS_BY_SLUG.get(slug)

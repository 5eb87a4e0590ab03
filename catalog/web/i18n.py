"""The pages' words in English and Chinese, and which of the two a request gets.

The language is the visitor's choice (the ``lode_lang`` cookie, set by the zh/en switch), else
the first of ``Accept-Language`` Lode speaks, else English. Product texts come in both languages
from the provider (``i18n``); these are only the pages' own words.
"""

from __future__ import annotations

from typing import Any

from litestar import Request

LANGS = ("en", "zh")
COOKIE = "lode_lang"

WORDS: dict[str, tuple[str, str]] = {
    "catalogue": ("Catalogue", "数据产品目录"),
    "search": ("Search", "搜索"),
    "search_placeholder": ("Search products, e.g. diabetes or 糖尿病", "搜索数据产品，如 糖尿病 或 diabetes"),
    "results": ("{n} products", "共 {n} 个产品"),
    "results_at_least": ("at least {n} products", "至少 {n} 个产品"),
    "no_results": (
        "No product matches. Remove a filter or try other words.",
        "没有匹配的产品。请移除筛选条件或换个词。",
    ),
    "next_page": ("Next page", "下一页"),
    "first_page": ("First page", "第一页"),
    "filters": ("Filters", "筛选"),
    "clear_filters": ("Clear filters", "清除筛选"),
    "apply_filters": ("Apply filters", "应用筛选"),
    "facet_grade": ("Grade", "分级"),
    "facet_data_type": ("Data type", "数据类型"),
    "facet_therapeutic_area": ("Therapeutic area", "治疗领域"),
    "facet_standard": ("Standard", "标准"),
    "facet_provider": ("Provider", "提供方"),
    "facet_pricing": ("Pricing", "定价"),
    "facet_completeness": ("Measured completeness", "实测完整性"),
    "facet_conformance": ("Measured conformance", "实测一致性"),
    "facet_plausibility": ("Measured plausibility", "实测合理性"),
    "measured_quality": ("Measured quality", "实测数据质量"),
    "declared_quality": ("Declared by the provider", "提供方自报"),
    "quality_report": ("Quality report", "质量报告"),
    "sign_in": ("Sign in", "登录"),
    "sign_out": ("Sign out", "退出"),
    "signed_in_as": ("Signed in as {user} for {org}", "当前用户 {user}（{org}）"),
    "api_key": ("API key", "API 密钥"),
    "sign_in_help": (
        "Paste your Lode API key once. Lode keeps it on the server for this session; the page never sees it.",
        "粘贴一次您的 Lode API 密钥。密钥仅保存在服务器端的会话中，网页脚本无法读取。",
    ),
    "summary": ("Summary", "概要"),
    "dictionary": ("Data dictionary", "数据字典"),
    "terms": ("Terms", "使用条款"),
    "plans": ("Plans and prices", "方案与价格"),
    "releases": ("Releases", "版本"),
    "provenance": ("Provenance and legal basis", "来源与法律依据"),
    "coverage": ("Coverage and quality", "覆盖范围与质量"),
    "grade_means": ("What grade {grade} means for you", "{grade} 级对您意味着什么"),
    "modes": ("How you may use it", "使用方式"),
    "tracks": ("Reviews before a licence", "授权前的审查"),
    "controls": ("Disclosure controls", "披露控制"),
    "no_tracks": ("none — a licence is issued on acceptance", "无 — 接受条款即可获得授权"),
    "action_sign_in": ("Sign in to apply", "登录后申请"),
    "action_eligibility": ("Check eligibility", "检查申请资格"),
    "action_apply": ("Apply for access", "申请访问"),
    "action_application": ("See your application", "查看您的申请"),
    "action_accept": ("Accept the licence", "接受授权协议"),
    "action_pay": ("Pay", "付款"),
    "action_use": ("Use the data", "使用数据"),
    "eligible": ("Your organisation is eligible for this product.", "您的机构符合申请条件。"),
    "not_eligible": ("Not eligible yet:", "暂不符合条件："),
    "applications": ("Applications", "申请"),
    "licences": ("Licences", "授权"),
    "my_products": ("My products", "我的产品"),
    "payments": ("Payments", "付款"),
    "reviews": ("Reviews", "审查"),
    "register": ("Data-use register", "数据使用登记"),
    "api_docs": ("API docs", "API 文档"),
    "status": ("Status", "状态"),
    "submit": ("Submit", "提交"),
    "save": ("Save", "保存"),
    "decide": ("Decide", "决定"),
    "run_query": ("Run query", "运行查询"),
    "download_csv": ("Download CSV", "下载 CSV"),
    "query_console": ("Query console", "查询控制台"),
    "usage": ("Usage", "用量"),
    "budget": ("Privacy budget (ε) left", "剩余隐私预算 (ε)"),
    "caps": ("Caps", "上限"),
    "checkout": ("Go to checkout", "去付款"),
    "accept_terms": ("I accept these terms", "我接受以上条款"),
    "refused": ("Lode refused this", "操作被拒绝"),
    "not_found": ("Not found", "未找到"),
    "back": ("Back", "返回"),
    "language": ("中文", "English"),
    "skip": ("Skip to content", "跳到正文"),
    "sensitive": ("sensitive", "敏感"),
    "none": ("none", "无"),
    "free": ("free", "免费"),
    "upload": ("Upload", "上传"),
    "publish": ("Publish", "发布"),
    "create_release": ("Create a release", "创建版本"),
    "statement": ("Statement", "结算单"),
    "waiting_for": ("Waiting for the {role} track", "等待 {role} 审查"),
    "products_waiting": ("Products waiting for listing review", "等待上架审核的产品"),
    "applications_waiting": ("Applications waiting for your track", "等待您审查的申请"),
    "nothing_waiting": ("Nothing is waiting.", "暂无待办。"),
    "code_system": ("Code system", "编码体系"),
    "column": ("Column", "字段"),
    "description": ("Description", "说明"),
    "kind": ("Kind", "类型"),
    "legal_basis": ("Legal basis", "法律依据"),
    "licensable_by": ("Licensable by", "可授权对象"),
    "modes_short": ("Modes", "使用方式"),
    "period": ("Period", "时间范围"),
    "persons": ("Persons", "人数"),
    "places": ("Places", "地域"),
    "plan": ("Plan", "方案"),
    "price": ("Price", "价格"),
    "records": ("Records", "记录数"),
    "sources": ("Sources", "数据来源"),
    "term": ("Term", "期限"),
    "type": ("Type", "类型"),
    "updated": ("Updated", "更新频率"),
    "categories_bounds": ("Categories / bounds", "取值 / 范围"),
}


def language(request: Request[Any, Any, Any]) -> str:
    chosen = request.cookies.get(COOKIE)
    if chosen in LANGS:
        return chosen
    for part in request.headers.get("accept-language", "").split(","):
        tag = part.split(";")[0].strip().lower()
        if tag.startswith("zh"):
            return "zh"
        if tag.startswith("en"):
            return "en"
    return "en"


def translator(lang: str) -> Any:
    index = LANGS.index(lang)

    def t(key: str, **values: Any) -> str:
        pair = WORDS.get(key)
        text = pair[index] if pair else key
        return text.format(**values) if values else text

    return t


def localised(item: dict[str, Any], field: str, lang: str) -> str:
    """A product's own text in the page's language, when its provider gave one."""
    texts = (item.get("i18n") or {}).get(lang) or {}
    return texts.get(field) or item.get(field) or ""

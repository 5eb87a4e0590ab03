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
    # Labels of forms and tables, by their English words.
    "w_failing_persons_passing_of": ("Persons failing · passing / of", "未通过人数 · 通过 / 总数"),
    "w_analysts": ("Analysts", "分析人员"),
    "w_approval_reference": ("Approval reference", "批件编号"),
    "w_approved_on": ("Approved on", "批准日期"),
    "w_attestations": ("Attestations", "承诺"),
    "w_commercial_use": ("Commercial use", "商业用途"),
    "w_committee": ("Committee", "伦理委员会"),
    "w_ethics_approval": ("Ethics approval", "伦理审批"),
    "w_expires_on": ("Expires on", "到期日期"),
    "w_plan": ("Plan", "方案"),
    "w_project": ("Project", "项目"),
    "w_purpose": ("Purpose", "用途"),
    "w_research_category_duo": ("Research category (DUO)", "研究类别 (DUO)"),
    "w_summary": ("Summary", "概要"),
    "w_term_months": ("Term (months)", "期限（月）"),
    "w_title": ("Title", "标题"),
    "w_what_the_data_will_be_used_for": ("What the data will be used for", "数据将用于什么"),
    "w_dimension": ("Dimension", "计量项"),
    "w_left": ("Left", "剩余"),
    "w_used_this_cap_period": ("Used this cap period", "本上限周期已用"),
    "w_disclosure": ("Disclosure", "披露控制"),
    "w_comment": ("Comment", "意见"),
    "w_conditions_for_approve_with_conditions": (
        "Conditions (for approve with conditions)",
        "附加条件（附条件批准时）",
    ),
    "w_decision": ("Decision", "决定"),
    "w_application": ("Application", "申请"),
    "w_product": ("Product", "产品"),
    "w_submitted": ("Submitted", "提交时间"),
    "w_tracks": ("Tracks", "审查"),
    "w_category": ("Category", "类别"),
    "w_conditions": ("Conditions", "附加条件"),
    "w_decided": ("Decided", "决定时间"),
    "w_description": ("Description", "说明"),
    "w_term": ("Term", "期限"),
    "w_territory": ("Territory", "使用地域"),
    "w_track": ("Track", "审查类别"),
    "w_withdraw": ("Withdraw", "撤回"),
    "w_licence": ("Licence", "授权"),
    "w_modes": ("Modes", "使用方式"),
    "w_grade": ("Grade", "分级"),
    "w_updated": ("Updated", "更新时间"),
    "w_notes": ("Notes", "说明"),
    "w_version": ("Version", "版本"),
    "w_amount": ("Amount", "金额"),
    "w_currency": ("Currency", "币种"),
    "w_gross": ("Gross", "总额"),
    "w_month": ("Month", "月份"),
    "w_net": ("Net", "净额"),
    "w_outstanding": ("Outstanding", "待付"),
    "w_paid": ("Paid", "付款时间"),
    "w_payment": ("Payment", "付款"),
    "w_refunds_and_reversals": ("Refunds and reversals", "退款与冲回"),
    "w_show": ("Show", "显示"),
    "w_transferred": ("Transferred", "已转账"),
    "w_your_share": ("Your share", "您的份额"),
    "w_organisation": ("Organisation", "机构"),
    "w_public_summary": ("Public summary", "公开摘要"),
    "w_before": ("Before", "之前"),
    "w_change": ("Change", "变化"),
    "w_changed_since_the_previous_release": ("Changed since the previous release", "与上一版本相比的变化"),
    "w_check": ("Check", "检查"),
    "w_checks": ("Checks", "检查数"),
    "w_column": ("Column", "字段"),
    "w_declared_period": ("Declared period", "声明的时间范围"),
    "w_failing": ("Failing", "未通过"),
    "w_fraction": ("Fraction", "比例"),
    "w_now": ("Now", "现在"),
    "w_passing_of": ("Passing / of", "通过 / 总数"),
    "w_result": ("Result", "结果"),
    "w_table": ("Table", "表"),
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
    "notifications": ("Notifications", "通知"),
    "unread_count": ("{n} unread", "{n} 条未读"),
    "show_all": ("Show all", "显示全部"),
    "show_unread": ("Show unread only", "只显示未读"),
    "mark_all_read": ("Mark all read", "全部标为已读"),
    "mark_read": ("Mark read", "标为已读"),
    "read": ("Read", "已读"),
    "w_when": ("When", "时间"),
    "w_event": ("Event", "事件"),
    "w_about": ("About", "对象"),
    "ev_application_submitted": ("An application was submitted", "申请已提交"),
    "ev_application_track_decided": (
        "A review track was decided: {track} — {decision}",
        "审核轨道已决定：{track} — {decision}",
    ),
    "ev_application_decided": ("The application was decided: {status}", "申请已有结论：{status}"),
    "ev_licence_offered": ("A licence is offered: accept its terms", "授权已发出：请接受条款"),
    "ev_licence_activated": ("A licence is active", "授权已生效"),
    "ev_licence_suspended": ("A licence is suspended", "授权已暂停"),
    "ev_licence_resumed": ("A licence is active again", "授权已恢复"),
    "ev_licence_revoked": ("A licence was revoked", "授权已撤销"),
    "ev_licence_expiring": (
        "A licence ends in {days_left} days, on {ends_on}: renew it",
        "授权将于 {days_left} 天后（{ends_on}）到期：请续期",
    ),
    "ev_licence_expired": ("A licence has ended", "授权已到期"),
    "ev_payment_succeeded": ("A payment succeeded", "付款成功"),
    "ev_payment_refunded": ("A payment was refunded", "付款已退款"),
    "ev_release_published": ("A new release is out: {version}", "新版本已发布：{version}"),
    "ev_usage_cap_near": ("Usage reached 80 % of the {dimension} cap", "{dimension} 用量已达上限的 80%"),
    "ev_budget_low": ("Less than 20 % of the ε budget is left", "ε 预算剩余不足 20%"),
    "ev_product_listed": ("A product is listed", "产品已上架"),
    "ev_product_suspended": ("A product is suspended", "产品已暂停"),
    "ev_webhook_disabled": ("A webhook endpoint was disabled: {reason}", "Webhook 端点已停用：{reason}"),
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
        return text.format_map(_Lenient(values)) if values else text

    return t


class _Lenient(dict[str, Any]):
    """A notice's data as format values: a field an older event lacks shows as "…", not an error."""

    def __missing__(self, key: str) -> str:
        return "…"


def localised(item: dict[str, Any], field: str, lang: str) -> str:
    """A product's own text in the page's language, when its provider gave one."""
    texts = (item.get("i18n") or {}).get(lang) or {}
    return texts.get(field) or item.get(field) or ""

"""The pages over HTTP, on SQLite and PostgreSQL: sign-in and its cookie, CSRF, sign-out, session
lifetime, other tenants' ids, stored XSS, refusals in words, language, and the offline docs."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from catalog.db import utcnow, write_transaction
from catalog.web.models import WebSession
from tests.access.conftest import Circulation
from tests.support import expect

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


class Browser:
    """One browser: its own cookie jar, over the app in-process."""

    def __init__(self, app: Any, base: str = "http://testserver") -> None:
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base, timeout=60)

    async def csrf(self, path: str = "/signin") -> str:
        page = await self.http.get(path)
        assert page.status_code == 200, page.text
        return CSRF.search(page.text).group(1)

    async def sign_in(self, key: str) -> httpx.Response:
        token = await self.csrf()
        return await self.http.post("/signin", data={"csrf": token, "api_key": key, "next": "/"})

    async def post_form(self, path: str, data: dict[str, str], *, page: str) -> httpx.Response:
        return await self.http.post(path, data={"csrf": await self.csrf(page), **data})


@pytest.fixture(name="browse")
async def fx_browse(app: Any) -> AsyncIterator[Any]:
    made: list[Browser] = []

    def new(base: str = "http://testserver") -> Browser:
        browser = Browser(app, base)
        made.append(browser)
        return browser

    yield new
    for browser in made:
        await browser.http.aclose()


@pytest.fixture(name="circulation")
def fx_circulation(client, actors, catalogue) -> Circulation:
    return Circulation(client, actors, catalogue)


async def test_anonymous_visitors_browse_in_either_language(client, actors, catalogue, browse) -> None:
    owner = await actors.org("provider")
    await catalogue.listed(owner, i18n={"zh": {"title": "糖尿病队列"}, "en": {"title": "Diabetes cohort"}})
    browser = browse()
    page = await browser.http.get("/?q=糖尿病")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "Diabetes cohort" in page.text and 'lang="en"' in page.text
    zh = await browser.http.get("/", headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    assert "糖尿病队列" in zh.text and "数据产品目录" in zh.text and 'lang="zh-CN"' in zh.text
    switched = await browser.http.get("/lang/zh", headers={"Referer": "http://testserver/?q=x"})
    assert switched.status_code == 303 and switched.headers["location"] == "/?q=x"
    assert "数据产品目录" in (await browser.http.get("/")).text  # the choice outranks Accept-Language
    away = await browser.http.get("/lang/en", headers={"Referer": "https://evil.example/phish"})
    assert away.headers["location"] == "/phish"  # back to a path here: no open redirect


async def test_sign_in_keeps_the_key_server_side_behind_an_httponly_cookie(app, actors, browse, sessions) -> None:
    consumer = await actors.org("consumer")
    browser = browse()
    signed = await browser.sign_in(consumer.key)
    assert signed.status_code == 303
    cookie = signed.headers["set-cookie"]
    assert "lode_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain http here; see the https test below
    token = browser.http.cookies["lode_session"]
    home = await browser.http.get("/licences")
    assert home.status_code == 200 and consumer.key not in home.text
    async with write_transaction(sessions) as session:
        rows = (await session.execute(select(WebSession))).scalars().all()
    assert len(rows) == 1
    assert (
        rows[0].id != token
        and consumer.key.encode() not in rows[0].sealed_key
        and token.encode() not in rows[0].sealed_key
    )

    https = browse("https://testserver")
    assert "Secure" in (await https.sign_in(consumer.key)).headers["set-cookie"]


async def test_a_wrong_key_is_refused_in_words(browse) -> None:
    browser = browse()
    refused = await browser.sign_in("lode_not-a-real-key")
    assert refused.status_code == 401 and "unknown or revoked" in refused.text
    assert "lode_session" not in browser.http.cookies


async def test_forms_without_the_sessions_csrf_token_are_refused(app, actors, browse) -> None:
    consumer = await actors.org("consumer")
    browser = browse()
    # Before sign-in: the double-submit token must match the visitor's own cookie.
    missing = await browser.http.post("/signin", data={"api_key": consumer.key})
    assert missing.status_code == 403 and "security token" in missing.text
    forged = await browser.http.post("/signin", data={"api_key": consumer.key, "csrf": "x" * 43})
    assert forged.status_code == 403
    # A cross-site form: another site's Origin is refused even with a valid token.
    token = await browser.csrf()
    cross = await browser.http.post(
        "/signin", data={"api_key": consumer.key, "csrf": token}, headers={"Origin": "https://evil.example"}
    )
    assert cross.status_code == 403 and "another site" in cross.text
    assert (await browser.sign_in(consumer.key)).status_code == 303
    # Signed in: the pre-sign-in token, or another session's, no longer passes.
    other = browse()
    await other.sign_in(consumer.key)
    stolen = await other.csrf("/licences")
    attempt = await browser.http.post("/signout", data={"csrf": stolen})
    assert attempt.status_code == 403
    assert (await browser.http.get("/licences")).status_code == 200  # still signed in: nothing happened
    assert (await browser.http.post("/signout", data={"csrf": token})).status_code == 403


async def test_a_session_is_dead_after_sign_out_expiry_or_key_revocation(client, app, actors, browse, sessions) -> None:
    consumer = await actors.org("consumer")
    browser = browse()
    await browser.sign_in(consumer.key)
    old_cookie = browser.http.cookies["lode_session"]
    out = await browser.post_form("/signout", {}, page="/licences")
    assert out.status_code == 303 and 'lode_session=""' in out.headers["set-cookie"]
    replay = browse()
    replay.http.cookies.set("lode_session", old_cookie)
    again = await replay.http.get("/licences")
    assert again.status_code == 303 and again.headers["location"].startswith("/signin")

    await browser.sign_in(consumer.key)
    async with write_transaction(sessions) as session:
        await session.execute(update(WebSession).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert (await browser.http.get("/licences")).status_code == 303  # lapsed

    await browser.sign_in(consumer.key)
    keys = expect(await client.get(f"/v1/orgs/{consumer.org_id}/api-keys", headers=consumer.headers), 200)
    expect(await client.delete(f"/v1/api-keys/{keys['items'][0]['id']}", headers=consumer.headers), 204)
    gone = await browser.http.get("/licences")
    assert gone.status_code == 303  # the key was revoked: the session went with it
    async with write_transaction(sessions) as session:
        assert (await session.execute(select(WebSession).where(WebSession.expires_at > utcnow()))).first() is None


async def test_another_tenants_ids_answer_not_found(circulation: Circulation, actors, browse) -> None:
    owner = await circulation.provider()
    mine = await circulation.consumer()
    licensed = await circulation.licensed(owner, mine)
    intruder = await actors.org("consumer")
    other_provider = await actors.org("provider")
    browser = browse()
    await browser.sign_in(intruder.key)
    for path in (
        f"/applications/{licensed['application']['id']}",
        f"/licences/{licensed['licence']['id']}",
        f"/licences/{licensed['licence']['id']}/console",
    ):
        page = await browser.http.get(path)
        assert page.status_code == 404, (path, page.status_code)
        assert licensed["product"]["title"] not in page.text
    draft = await circulation.catalogue.draft(owner)
    provider = browse()
    await provider.sign_in(other_provider.key)
    assert (await provider.http.get(f"/provider/products/{draft['id']}")).status_code == 404
    # Acting on another tenant's ids is refused the same way.
    acted = await browser.post_form(
        f"/licences/{licensed['licence']['id']}/accept", {"terms_sha256": "0" * 64}, page="/licences"
    )
    assert acted.status_code == 404


async def test_the_licence_page_says_what_is_left_of_each_cap(circulation: Circulation, browse) -> None:
    from tests.support import FREE_PLAN

    owner = await circulation.provider()
    consumer = await circulation.consumer()
    licensed = await circulation.licensed(owner, consumer, plans=[FREE_PLAN])
    browser = browse()
    await browser.sign_in(consumer["admin"].key)
    listed = await browser.http.get("/licences")
    assert f'href="/products/{licensed["product"]["slug"]}"' in listed.text  # rows name the product, not its id
    page = await browser.http.get(f"/licences/{licensed['licence']['id']}")
    row = next(r for r in page.text.split("<tr") if "rows returned" in r)
    assert "<td>10000</td>" in row and "Used this cap period" in page.text and row.count("<td>") == 4


async def test_eligibility_lists_each_blocker_in_words_with_its_code(circulation: Circulation, browse) -> None:
    owner = await circulation.provider()
    product = await circulation.product(owner, "L3")
    unverified = await circulation.consumer(verified=False)
    browser = browse()
    await browser.sign_in(unverified["admin"].key)
    fragment = await browser.http.get(f"/products/{product['slug']}/eligibility", headers={"HX-Request": "true"})
    assert fragment.status_code == 200 and 'class="problem"' in fragment.text
    assert "<code>org_not_verified</code>" in fragment.text and "verified by the operator" in fragment.text
    page = await browser.http.get(f"/products/{product['slug']}")
    assert "Check eligibility" in page.text and f"/products/{product['slug']}/apply" in page.text


async def test_html_in_product_fields_is_shown_as_text(actors, catalogue, browse) -> None:
    owner = await actors.org("provider")
    script = "<script>alert('xss')</script>"
    product = await catalogue.listed(
        owner,
        title=f"Cohort {script}",
        summary='<img src=x onerror="alert(1)">',
        description=f'<a href="javascript:alert(2)">click</a>{script}',
        keywords=[script],
    )
    browser = browse()
    for path in ("/", f"/products/{product['slug']}"):
        page = await browser.http.get(path)
        assert page.status_code == 200
        assert (
            "<script>alert" not in page.text and "<img src=x" not in page.text and 'href="javascript' not in page.text
        )
        assert "&lt;script&gt;alert(" in page.text


async def test_a_refused_action_shows_the_problems_detail(circulation: Circulation, browse) -> None:
    owner = await circulation.provider()
    consumer = await circulation.consumer()
    product = await circulation.product(owner)
    app = await circulation.apply(product, consumer)
    browser = browse()
    await browser.sign_in(consumer["analyst"].key)
    refused = await browser.post_form(f"/applications/{app['id']}/submit", {}, page="/applications")
    assert refused.status_code == 403
    assert "buyer" in refused.text and "<code>forbidden</code>" in refused.text
    fragment = await browser.http.post(
        f"/applications/{app['id']}/submit",
        data={"csrf": await browser.csrf("/applications")},
        headers={"HX-Request": "true"},
    )
    assert fragment.status_code == 403 and fragment.text.lstrip().startswith('<div class="problem" role="alert">')


async def test_measured_quality_on_the_pages(client, actors, catalogue, browse) -> None:
    from tests.products.test_quality import (
        PEOPLE,
        PERIOD,
        VISITS,
        _csv,
        catalogue_list,
        people_csv,
        publish,
        visits_rows,
    )

    owner = await actors.org("provider")
    product = await catalogue.draft(owner, dictionary=[PEOPLE, VISITS], temporal_coverage=PERIOD)
    await publish(client, owner, product, "1", visits_rows(bad_icd=12, out_of_bounds=40, crowded=3))
    listed = await catalogue_list(client, catalogue, owner, product)
    browser = browse()
    page = await browser.http.get(f"/products/{listed['slug']}")
    assert "Measured quality (1)" in page.text and "Declared by the provider" in page.text
    report = await browser.http.get(f"/products/{listed['slug']}/releases/1/quality")
    assert report.status_code == 200 and "icd10 shape" in report.text and "FAIL" in report.text
    row = next(r for r in report.text.split("<tr") if "icd10 shape" in r)
    assert "&lt; 10 persons" in row and "12" not in row  # 12 rows of 3 persons: masked for a visitor
    found = await browser.http.get("/?completeness=1.00")  # the "≥ 1.00" box of the completeness facet
    assert listed["slug"] in found.text and "Measured completeness" in found.text
    conformance = listed["measured_quality"]["scores"]["conformance"]
    assert conformance < 1 and listed["slug"] not in (await browser.http.get("/?conformance=1.00")).text
    # A second release that drops a column: drift names the checks it no longer has.
    dropped = {**VISITS, "fields": [f for f in VISITS["fields"] if f["name"] != "setting"]}
    base = f"/v1/products/{listed['id']}/releases"
    expect(await client.post(base, json={"version": "2", "dictionary": [PEOPLE, dropped]}, headers=owner.headers), 201)
    expect(await client.put(f"{base}/2/files/people.csv", content=people_csv(), headers=owner.headers), 201)
    rows = [["person_id", "visit_date", "diagnosis", "loinc", "unit", "hba1c"]] + [r[:6] for r in visits_rows()]
    expect(await client.put(f"{base}/2/files/visits.csv", content=_csv(rows), headers=owner.headers), 201)
    expect(await client.post(f"{base}/2/publish", headers=owner.headers), 200)
    second = await browser.http.get(f"/products/{listed['slug']}/releases/2/quality")
    assert second.status_code == 200 and "in categories" in second.text.split("previous release")[1]


async def test_a_published_origin_passes_and_only_lodes_own_tokens_are_taken(client, actors, browse) -> None:
    consumer = await actors.org("consumer")
    browser = browse()
    token = await browser.csrf()
    # Behind a proxy the Host may be internal: the Origin of the published URL is this site too.
    signed = await browser.http.post(
        "/signin", data={"csrf": token, "api_key": consumer.key}, headers={"Origin": "http://127.0.0.1:8000"}
    )
    assert signed.status_code == 303
    planted = browse()
    forged = 'a"}, {"HX-Trigger": "x' + "a" * 20  # not a token Lode makes: it would break out of hx-headers
    page = await planted.http.get("/signin", headers={"Cookie": f"lode_csrf={forged}"})
    assert "HX-Trigger" not in page.text and "lode_csrf=" in page.headers["set-cookie"]  # a fresh one instead


async def test_odd_urls_are_refused_in_words_not_failed(client, browse) -> None:  # client: the app started
    browser = browse()
    bad = await browser.http.get("/?completeness=lots")
    assert bad.status_code == 400 and "completeness" in bad.text and "validation_error" in bad.text
    odd = await browser.http.get("/products/a%3Fstatus=draft")  # one path segment, never a query
    assert odd.status_code == 404 and "No product a?status=draft" in odd.text


async def test_the_api_docs_need_no_other_host(client) -> None:
    docs = await client.get("/docs")
    assert docs.status_code == 200
    assets = re.findall(r'(?:src|href)="([^"]+)"', docs.text)
    assert assets and all(a.startswith("/") for a in assets), assets
    for asset in assets:
        if asset.startswith("/static/"):
            assert (await client.get(asset)).status_code == 200, asset
    home = await client.get("/")
    for asset in re.findall(r'(?:src|href)="(/static/[^"]+)"', home.text):
        assert (await client.get(asset)).status_code == 200, asset
    assert "https://" not in home.text.split("<body")[0]  # nothing in <head> from another host


async def test_sign_in_goes_back_only_to_a_page_of_this_site(actors, browse) -> None:
    consumer = await actors.org("consumer")
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        browser = browse()
        token = await browser.csrf()
        answer = await browser.http.post("/signin", data={"csrf": token, "api_key": consumer.key, "next": target})
        assert answer.headers["location"] == "/", target


async def test_the_notifications_page_lists_the_feed_and_marks_it_read(circulation: Circulation, browse) -> None:
    owner = await circulation.provider()
    consumer = await circulation.consumer()
    licensed = await circulation.licensed(owner, consumer, "L2")
    browser = browse()
    await browser.sign_in(consumer["buyer"].key)
    page = await browser.http.get("/notifications")
    assert page.status_code == 200
    assert 'href="/notifications"' in page.text  # in the navigation
    assert "A licence is offered: accept its terms" in page.text and "A licence is active" in page.text
    assert f'href="/licences/{licensed["licence"]["id"]}"' in page.text
    assert "4 unread" in page.text  # submitted, offered, decided (L2 has no review tracks), activated
    done = await browser.post_form("/notifications/read", {}, page="/notifications")
    assert done.status_code == 303
    after = await browser.http.get("/notifications?unread=true")
    assert "0 unread" in after.text and "Mark all read" not in after.text

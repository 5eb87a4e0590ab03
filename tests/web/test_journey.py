"""The whole journey in a real browser, on the demo as `lode demo` seeds it: search 糖尿病 → a
product → sign in as a consumer → eligibility → apply; each reviewer decides their track in a
browser context of their own; the consumer accepts, pays on the simulated checkout page and runs
an aggregate in the console; a provider publishes a release. Every page is screenshotted, held
to the accessibility basics (axe-core), and no page asks another host for anything."""

from __future__ import annotations

import re
import tempfile
import time
from pathlib import Path
from typing import Any

from catalog.demo import catalog as demo
from catalog.demo.data import write_product
from tests.web.browsing import Visitor
from tests.web.conftest import DemoServer

PRODUCT = "t2d-sglt2-trial"  # L5: all five review tracks, a priced plan, differentially private answers
REVIEWERS = [
    ("ruijin/reviewer", "provider"),
    ("operator/ethics", "ethics"),
    ("operator/security", "security"),
    ("operator/compliance", "compliance"),
    ("operator", "operator"),  # the operator track is the operator's admin's
]


def _apply(consumer: Visitor) -> str:
    page = consumer.page
    page.select_option("#category", "DS")
    page.check("#commercial")
    page.fill("#description", "Real-world comparison of SGLT2 inhibitors' effect on HbA1c")
    page.fill("#territory", "CN")
    page.fill("#disease_codes", "E11")
    page.fill("#project_title", "SGLT2 effectiveness study")
    page.fill("#public_summary", "How well SGLT2 inhibitors control blood sugar in Shanghai patients")
    page.fill("#months", "12")
    assert page.locator("input[name=analysts]:checked").count() == 1  # the signed-in member, by default
    page.fill("#ethics_committee", "Shanghai Pharma R&D IRB")
    page.fill("#ethics_reference", "IRB-2026-77")
    page.fill("#ethics_approved_on", "2026-11-01")
    page.fill("#ethics_expires_on", "2027-11-01")
    for box in page.locator("input[name^=attest_]").all():
        box.check()
    consumer.snap("application-form")
    page.click("form.stack > button[type=submit]")
    page.wait_for_url(re.compile(r"/applications/app_"))
    return page.url.rsplit("/", 1)[1].split("?")[0]


def _status(page: Any) -> str:
    return page.locator("strong.status").first.inner_text().strip()


def test_search_apply_review_pay_query_publish(browser: Any, demo_server: DemoServer, shots: Path) -> None:
    base = demo_server.base
    consumer = Visitor(browser, base, shots, "consumer")
    visitors = [consumer]
    try:
        # Search in Chinese, open a product, anonymously.
        page = consumer.go("/")
        consumer.snap("catalogue")
        page.fill("#q", "糖尿病")
        page.press("#q", "Enter")
        page.wait_for_url(re.compile(r"q=%E7%B3%96"))
        page.wait_for_selector(f"a[href='/products/{PRODUCT}']")
        consumer.snap("search-diabetes")
        page.click(f"a[href='/products/{PRODUCT}']")
        page.wait_for_url(f"**/products/{PRODUCT}")
        assert "dp_aggregate" in page.inner_text("#summary")
        assert page.locator("#dictionary .badge.warn").count() > 0  # sensitive columns are marked
        consumer.snap("product-anonymous")

        # Sign in from the product page, and come back to it.
        page.click("text=Sign in to apply")
        page.fill("#api_key", demo_server.key("shanghai-pharma-rd"))
        page.click("form.stack button[type=submit]")
        page.wait_for_url(f"**/products/{PRODUCT}")
        consumer.snap("product-signed-in")
        page.click("text=Check eligibility")
        page.wait_for_selector("#eligibility .problem, #eligibility .ok")
        consumer.snap("eligibility")

        page.click("text=Apply for access")
        page.wait_for_url(f"**/products/{PRODUCT}/apply")
        app_id = _apply(consumer)
        assert _status(page) == "under review", page.inner_text("main")
        consumer.snap("application-submitted")

        # Each reviewer, in a browser of their own, decides their track.
        for key, track in REVIEWERS:
            reviewer = Visitor(browser, base, shots, f"reviewer-{track}")
            visitors.append(reviewer)
            reviewer.sign_in(demo_server.key(key))
            reviewer.go("/reviews")
            form = reviewer.page.locator(f"form[action='/reviews/applications/{app_id}/{track}']")
            form.locator("select[name=decision]").select_option("approve")
            form.locator("textarea[name=comment]").fill(f"{track}: approved in the browser test")
            reviewer.snap("queue")
            form.locator("button[type=submit]").click()
            reviewer.page.wait_for_url("**/reviews")
            assert reviewer.page.locator(f"form[action='/reviews/applications/{app_id}/{track}']").count() == 0
            reviewer.snap("decided")

        # Approved: accept the licence, pay on the simulated checkout page.
        consumer.go(f"/applications/{app_id}")
        assert _status(page) == "approved"
        page.click("a[href^='/licences/lic_']")
        assert _status(page) == "pending acceptance"
        consumer.snap("licence-offered")
        page.click("text=I accept these terms")
        page.wait_for_load_state()
        assert _status(page) == "pending payment"
        consumer.snap("licence-accepted")
        page.click("text=Go to checkout")
        page.wait_for_url(re.compile(r"/simulator/checkout/"))
        consumer.snap("checkout-simulated", audit=False)  # the simulator's page, not Lode's own
        page.click("button:has-text('Pay — simulated')")
        page.wait_for_url(re.compile(r"checkout=success"))
        deadline = time.monotonic() + 30
        while _status(page) != "active" and time.monotonic() < deadline:
            time.sleep(0.5)
            page.reload()
        assert _status(page) == "active"
        consumer.snap("licence-active")

        # An aggregate in the console, its disclosure notes beside it; then a refused one, in words.
        page.click("text=Query console")
        page.wait_for_selector("#query")
        page.click("text=Run query")
        page.wait_for_selector("#answer .answer, #answer .problem")
        assert page.locator("#answer table.result").count() == 1, page.inner_text("#answer")
        notes = page.inner_text("#answer .notes")
        assert "ε spent: 0.1" in notes and "dp aggregate" in notes
        assert page.get_attribute("#answer a[download]", "href").startswith("data:text/csv")
        consumer.snap("console-answer")
        page.fill("#query", '{"table": "subjects", "group_by": ["no_such_column"], "aggregates": [{"fn": "count"}]}')
        page.click("text=Run query")
        page.wait_for_selector("#answer .problem")
        assert "no_such_column" in page.inner_text("#answer .problem")
        consumer.snap("console-refused")

        # A provider publishes a release through the pages, uploading with the progress bar.
        provider = Visitor(browser, base, shots, "provider")
        visitors.append(provider)
        provider.sign_in(demo_server.key("ruijin/publisher"))
        provider.go("/provider")
        provider.snap("products")
        provider.page.click("text=Open outpatient visit sample")
        provider.page.fill("#version", "2026.9")
        provider.page.click("text=Create a release >> nth=-1")
        provider.page.wait_for_selector("#release-2026\\.9")
        item = next(p for p in demo.PRODUCTS if p.slug == "open-outpatient-sample")
        with tempfile.TemporaryDirectory() as scratch:
            files = write_product(item, Path(scratch), "browser-test")
            for table, path in files.items():
                release = provider.page.locator("#release-2026\\.9")
                release.locator("input[type=file]").set_input_files(str(path))
                with provider.page.expect_navigation():
                    release.locator("form.upload button").click()
                assert table in provider.page.inner_text("#release-2026\\.9")
        provider.snap("release-uploaded")
        provider.page.click("text=Publish 2026.9")
        provider.page.wait_for_load_state()
        assert provider.page.inner_text("#release-2026\\.9 .status") == "published"
        provider.snap("release-published")

        for visitor in visitors:
            assert visitor.elsewhere() == [], f"{visitor.name} asked another host: {visitor.elsewhere()}"
    finally:
        for visitor in visitors:
            visitor.close()


def test_every_kind_of_page_passes_the_accessibility_basics(browser: Any, demo_server: DemoServer, shots: Path) -> None:
    """The pages the journey does not pass through, in both languages, audited by axe-core."""
    pages = {
        None: [
            "/",
            "/register",
            "/signin",
            "/products/stroke-registry",
            "/products/no-such-product",
            "/?completeness=0.99",
            "/products/chronic-lab-results/releases/2025.1/quality",
        ],
        "fudan-sph": ["/applications", "/licences", "/notifications"],
        "huashan": ["/provider", "/provider/payments", "/reviews", "/notifications"],
        "operator/curator": ["/reviews"],
    }
    for locale in ("en-GB", "zh-CN"):
        for key, paths in pages.items():
            visitor = Visitor(
                browser, demo_server.base, shots, f"{locale}-{key or 'anonymous'}".replace("/", "-"), locale=locale
            )
            try:
                if key:
                    visitor.sign_in(demo_server.key(key))
                for path in paths:
                    visitor.go(path)
                    assert visitor.page.get_attribute("html", "lang") == ("zh-CN" if locale == "zh-CN" else "en"), path
                    visitor.snap(path.strip("/").replace("/", "-") or "home")
                assert visitor.elsewhere() == []
            finally:
                visitor.close()
    # A licence page with usage: its chart is drawn on the server, one bar a day.
    visitor = Visitor(browser, demo_server.base, shots, "usage")
    try:
        visitor.sign_in(demo_server.key("fudan-sph"))
        visitor.go("/licences")
        visitor.page.click("a[href^='/licences/lic_'] >> nth=0")
        assert visitor.page.locator("svg.chart rect").count() == 30
        visitor.snap("licence-usage")
    finally:
        visitor.close()

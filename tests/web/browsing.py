"""A person at a browser: one Playwright context, every request it makes recorded, each page
screenshotted and checked by axe-core (from the axe-playwright-python wheel, so nothing is fetched)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

AXE_TAGS = ["wcag2a", "wcag2aa"]


def axe_source() -> str:
    spec = importlib.util.find_spec("axe_playwright_python")
    assert spec is not None and spec.submodule_search_locations, "axe-playwright-python is a dev dependency"
    return (Path(next(iter(spec.submodule_search_locations))) / "axe.min.js").read_text()


class Visitor:
    def __init__(self, browser: Any, base: str, shots: Path, name: str, locale: str = "en-GB") -> None:
        self.base = base
        self.host = urlsplit(base).netloc
        self.shots = shots
        self.name = name
        self.context = browser.new_context(locale=locale)  # Chromium's Accept-Language follows it
        self.page = self.context.new_page()
        self.requests: list[str] = []
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.set_default_timeout(20_000)
        self._axe = axe_source()
        self.count = 0

    def go(self, path: str) -> Any:
        self.page.goto(self.base + path)
        return self.page

    def snap(self, label: str, *, audit: bool = True) -> None:
        """Screenshot the page, and hold it to the accessibility basics."""
        self.count += 1
        self.page.screenshot(path=str(self.shots / f"{self.name}-{self.count:02d}-{label}.png"), full_page=True)
        if audit:
            violations = self.audit()
            assert not violations, f"{self.page.url}: {violations}"

    def audit(self) -> list[dict[str, Any]]:
        self.page.add_script_tag(content=self._axe)
        result = self.page.evaluate(
            "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']})", AXE_TAGS
        )
        return [
            {"id": v["id"], "help": v["help"], "nodes": [n["target"] for n in v["nodes"][:3]]}
            for v in result["violations"]
        ]

    def elsewhere(self) -> list[str]:
        """Requests to any other host than Lode's (data: and about: URLs stay in the page)."""
        return [u for u in self.requests if urlsplit(u).scheme in ("http", "https") and urlsplit(u).netloc != self.host]

    def sign_in(self, key: str) -> None:
        self.go("/signin")
        self.page.fill("#api_key", key)
        self.page.click("form.stack button[type=submit]")
        self.page.wait_for_load_state()

    def close(self) -> None:
        self.context.close()

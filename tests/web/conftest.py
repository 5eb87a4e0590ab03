"""Browser tests: Debian's Chromium, driven by Playwright, against `lode serve` on a seeded demo.

Nothing downloads a browser: Playwright launches ``/usr/bin/chromium`` (``LODE_CHROMIUM`` to name
another). Without it the browser tests skip, saying so — except in CI, which installs it
(``.ci/run``) and so fails when it is missing. Screenshots go to ``test-output/browser/<test>/``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import IN_CI, NOISE_SECRET, PEPPER

ROOT = Path(__file__).resolve().parents[2]
OUTPUT = ROOT / "test-output" / "browser"
CHROMIUM = os.environ.get("LODE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# As the machine's notes advise: no background networking, so Chromium asks no other host anything.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def _lode() -> list[str]:
    return [sys.executable, "-c", "from catalog.cli import main; raise SystemExit(main())"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DemoServer:
    def __init__(self, base: str, demo: dict[str, Any], process: subprocess.Popen[bytes], data_dir: Path) -> None:
        self.base = base
        self.demo = demo
        self.process = process
        self.data_dir = data_dir

    def key(self, name: str) -> str:
        return self.demo["keys"].get(name) or self.demo["member_keys"][name]


@contextlib.contextmanager
def demo_server(data: Path, database_url: str | None = None) -> Iterator[DemoServer]:
    """`lode db upgrade`, `lode demo`, then `lode serve` on a free port, as a newcomer runs them —
    on SQLite in ``data``, or on the (empty) PostgreSQL database ``database_url``."""
    port = _free_port()
    env = {
        **os.environ,
        "LODE_ENV": "development",
        "LODE_DATA_DIR": str(data),
        "LODE_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "LODE_KEY_PEPPER": PEPPER,
        "LODE_NOISE_SECRET": NOISE_SECRET,
        "LODE_LOG_LEVEL": "WARNING",
    }
    env.pop("LODE_DATABASE_URL", None)
    if database_url:
        env["LODE_DATABASE_URL"] = database_url
    subprocess.run([*_lode(), "db", "upgrade"], env=env, check=True, capture_output=True, cwd=ROOT)
    seeded = subprocess.run([*_lode(), "demo", "--json"], env=env, check=True, capture_output=True, cwd=ROOT)
    demo = json.loads(seeded.stdout)
    log = (data / "serve.log").open("wb")
    process = subprocess.Popen(
        [*_lode(), "serve", "--host", "127.0.0.1", "--port", str(port)], env=env, stdout=log, stderr=log, cwd=ROOT
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        process.kill()
        raise RuntimeError(f"lode serve did not start: {(data / 'serve.log').read_text()[-2000:]}")
    try:
        yield DemoServer(base, demo, process, data)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture(scope="module", name="demo_server")
def fx_demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    with demo_server(tmp_path_factory.mktemp("web-demo")) as server:
        yield server


@pytest.fixture(scope="module", name="browser")
def fx_browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        message = f"browser tests need Chromium at {CHROMIUM} (`apt-get install -y chromium`); none is installed"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(name="shots")
def fx_shots(request: pytest.FixtureRequest) -> Path:
    folder = OUTPUT / request.node.name.replace("/", "_").replace("[", "_").replace("]", "")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder

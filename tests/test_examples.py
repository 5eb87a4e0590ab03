"""The contract's own examples, run as written.

1. Every example body in API.md's "Example bodies" section is sent to its documented endpoint on a
   demo-seeded app (both databases) and must be accepted (2xx). API.md lives in ``../shared`` beside
   the repository; without it these tests skip, except under ``CI=true`` where they fail. An example
   whose endpoint this module does not know fails with a message naming it, so a new example is
   never silently left out. What the runner changes, and only this:

   | in the body or path | becomes |
   |---|---|
   | ``…/x`` (a product path) | ``/v1/products/{id}/x`` of the product made from the Product example |
   | ``{id}`` in ``/v1/licences/{id}/query`` | ``CONSUMER``'s licence to ``PRODUCT`` (L3); with ``epsilon``, a |
   |  | differentially private query, ``DP_CONSUMER``'s licence to ``DP_PRODUCT``, the L5 demo product |
   | ``"org_…"`` | in order of appearance: the acting hospital (``OWNER``), then ``OTHER_PROVIDER`` |
   | ``"prd_…"`` / ``"pln_…"`` | the demo product ``PRODUCT`` / its plan ``PLAN`` |
   | ``"usr_…"`` / ``"lic_…"`` | ``CONSUMER``'s analyst / its licence to ``PRODUCT`` |
   | ``"…"`` under a ``*sha256`` key | a SHA-256 (elsewhere ``"…"`` is free text and stays) |
   | ``occurred_at`` outside the licence's term | now (usage must fall in the term; API.md's date is fixed) |

2. Every shell block in README.md (a fence whose info string starts with ``sh``, ``bash``, ``shell``
   or ``console``) runs as written in bash from the repository root against a served demo — what
   ``python3 dev.py serve`` does: ``lode db upgrade``, ``lode demo``, ``lode serve`` on a fresh data
   directory. A block that starts a server or runs the test suite opts out with ``no-run`` in its
   info string (```` ```sh no-run ````). Each block runs under ``set -euo pipefail`` with ``curl``
   made to fail on an HTTP error (``--fail-with-body``), and the README's ``http://127.0.0.1:8000``
   is pointed at the port this test served on.

3. Every Python block in README.md (```` ```python key=<demo key name> ````) runs as written with
   ``.venv/bin/python`` against the same served demo, with ``LODE_URL`` pointing at it and
   ``LODE_API_KEY`` the named demo key (``lode demo --json``'s ``keys`` or ``member_keys``) — what
   the README tells a reader to export.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from catalog.app import seed_demo
from catalog.demo import catalog as demo
from tests.support import Party, expect

ROOT = Path(__file__).resolve().parents[1]
API_MD = ROOT.parent / "shared" / "design" / "API.md"
README = ROOT / "README.md"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
README_ADDRESS = "http://127.0.0.1:8000"
SHELLS = ("sh", "bash", "shell", "console")
NO_RUN = "no-run"

OWNER, OTHER_PROVIDER = "ruijin", "zhongshan"  # the hospitals sharing PRODUCT 70/30, as in the examples
CONSUMER = "shanghai-pharma-rd"  # licensed to PRODUCT under PLAN (the demo's paid licence)
PRODUCT, PLAN = "t2d-ehr-cohort", "Annual research licence"
DP_CONSUMER, DP_PRODUCT = "fudan-sph", "parkinson-genetic-cohort"  # dp_aggregate is L5's only mode


# --- API.md --------------------------------------------------------------------------------------


@dataclass
class Example:
    verb: str
    path: str
    body: dict[str, Any]


_TOKENS = re.compile(
    r"```json\n(?P<block>.*?)```"  # a fenced example: one body, or one body a line
    r"|`(?P<verb>POST|PUT|PATCH) (?P<path>[^`]+)`"  # the endpoint the examples after it go to
    r"|`(?P<inline>\{[^`]*\})`",  # an inline example
    re.S,
)


def api_examples(text: str) -> list[Example]:
    section = text.split("## Example bodies", 1)[1].split("\n## ", 1)[0]
    found: list[Example] = []
    endpoint: tuple[str, str] | None = None
    for m in _TOKENS.finditer(section):
        if m["verb"]:
            endpoint = (m["verb"], m["path"].strip())
            continue
        assert endpoint is not None, f"an example before any endpoint: {m[0][:80]}"
        raw = m["block"] or m["inline"]
        try:
            bodies = [json.loads(raw)]
        except json.JSONDecodeError:
            bodies = [json.loads(line) for line in raw.splitlines() if line.strip()]
        found += [Example(*endpoint, body) for body in bodies]
    return found


def api_md() -> str:
    if not API_MD.exists():
        message = f"{API_MD} is missing: the API.md examples run where ../shared/design is checked out"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return API_MD.read_text(encoding="utf-8")


def test_api_md_has_the_examples_this_runner_sends() -> None:
    examples = api_examples(api_md())
    endpoints = {(e.verb, e.path) for e in examples}
    assert endpoints == set(ENDPOINTS), (
        f"examples for endpoints this runner does not know: {endpoints - set(ENDPOINTS)}"
    )
    assert len(examples) >= 10


# (verb, path as API.md writes it) → (who sends it, how the path is filled)
ENDPOINTS: dict[tuple[str, str], tuple[str, str]] = {
    ("POST", "/v1/products"): (OWNER, "/v1/products"),
    ("PUT", "…/terms"): (OWNER, "/v1/products/{new}/terms"),
    ("POST", "…/plans"): (OWNER, "/v1/products/{new}/plans"),
    ("PUT", "…/revenue-share"): (OWNER, "/v1/products/{new}/revenue-share"),
    ("POST", "/v1/applications"): (CONSUMER, "/v1/applications"),
    ("POST", "/v1/licences/{id}/query"): (CONSUMER, "/v1/licences/{licence}/query"),  # see route()
    ("POST", "/v1/usage-events"): (OWNER, "/v1/usage-events"),
}


class Fill:
    """The demo's real ids for API.md's placeholders (the table in the module docstring)."""

    def __init__(self, ids: dict[str, str], licence: dict[str, Any]) -> None:
        self.ids = ids
        self.term = (date.fromisoformat(licence["starts_on"]), date.fromisoformat(licence["ends_on"]))
        self.orgs: list[str] = []

    def body(self, body: Any) -> Any:
        self.orgs = [self.ids[OWNER], self.ids[OTHER_PROVIDER]]
        return self._walk(body, "")

    def _walk(self, value: Any, key: str) -> Any:
        if isinstance(value, dict):
            return {k: self._walk(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [self._walk(v, key) for v in value]
        if value == "org_…":
            return self.orgs.pop(0)
        if value in ("prd_…", "pln_…", "usr_…", "lic_…"):
            return self.ids[value]
        if value == "…" and key.endswith("sha256"):
            return hashlib.sha256(b"an example document").hexdigest()
        if key == "occurred_at" and not self.term[0] <= datetime.fromisoformat(value).date() <= self.term[1]:
            return datetime.now(UTC).isoformat()
        return value


async def demo_ids(client: Any, keys: dict[str, Party]) -> tuple[dict[str, str], dict[str, Any]]:
    """The ids the placeholders stand for, found through the API as a client would."""
    ids = {}
    for slug in (OWNER, OTHER_PROVIDER, CONSUMER):
        ids[slug] = expect(await client.get("/v1/me", headers=keys[slug].headers), 200)["organisation"]["id"]
    consumer = keys[CONSUMER].headers
    plans = expect(await client.get(f"/v1/products/{PRODUCT}/plans", headers=consumer), 200)["items"]
    licences = expect(await client.get(f"/v1/licences?product_id={PRODUCT}", headers=consumer), 200)["items"]
    (licence,) = [lic for lic in licences if lic["status"] == "active"]
    me = expect(await client.get("/v1/me", headers=consumer), 200)["user"]["id"]
    ids["prd_…"] = licence["product_id"]
    ids["pln_…"] = next(p["id"] for p in plans if p["name"] == PLAN)
    ids["lic_…"] = licence["id"]
    ids["usr_…"] = next(u for u in licence["analysts"] if u != me)  # the demo analyst, not the admin
    dp = expect(await client.get(f"/v1/licences?product_id={DP_PRODUCT}", headers=keys[DP_CONSUMER].headers), 200)
    ids["dp_licence"] = dp["items"][0]["id"]
    return ids, licence


def route(example: Example, ids: dict[str, str], new_product: str) -> tuple[str, str]:
    """Who sends the example, and to which URL."""
    who, path = ENDPOINTS[(example.verb, example.path)]
    licence = ids["lic_…"]
    if path.endswith("/query") and "epsilon" in example.body:
        who, licence = DP_CONSUMER, ids["dp_licence"]
    return who, path.format(new=new_product, licence=licence)


@pytest.mark.asyncio
async def test_every_api_md_example_body_is_accepted(client, settings) -> None:
    examples = api_examples(api_md())
    result = await seed_demo(settings, progress=False)
    keys = {slug: Party("", "", key) for slug, key in result["keys"].items()}
    ids, licence = await demo_ids(client, keys)
    fill = Fill(ids, licence)
    (product_example,) = [e for e in examples if (e.verb, e.path) == ("POST", "/v1/products")]
    made = expect(
        await client.post("/v1/products", json=fill.body(product_example.body), headers=keys[OWNER].headers), 201
    )
    failures = []
    for example in examples:
        if example is product_example:
            continue
        who, url = route(example, ids, made["id"])
        response = await client.request(example.verb, url, json=fill.body(example.body), headers=keys[who].headers)
        if not 200 <= response.status_code < 300:
            failures.append(f"{example.verb} {example.path} {json.dumps(example.body)[:120]} → {response.text}")
    assert not failures, "\n".join(failures)


# --- README.md -----------------------------------------------------------------------------------

_FENCE = re.compile(r"^```(?P<info>[^\n`]*)\n(?P<code>.*?)^```", re.M | re.S)


@dataclass
class Block:
    line: int
    info: str
    code: str


def readme_blocks(text: str) -> list[Block]:
    """The README's shell blocks, each with the line it starts on, those marked no-run included."""
    return [
        Block(text[: m.start()].count("\n") + 1, m["info"].strip(), m["code"])
        for m in _FENCE.finditer(text)
        if m["info"].strip().split(" ")[0] in SHELLS
    ]


def python_blocks() -> list[Block]:
    return [
        Block(README.read_text(encoding="utf-8")[: m.start()].count("\n") + 1, m["info"].strip(), m["code"])
        for m in _FENCE.finditer(README.read_text(encoding="utf-8"))
        if m["info"].strip().split(" ")[0] == "python"
    ]


def runnable_blocks() -> list[Block]:
    return [b for b in readme_blocks(README.read_text(encoding="utf-8")) if NO_RUN not in b.info.split()]


def test_the_readme_marks_what_it_does_not_run() -> None:
    blocks = readme_blocks(README.read_text(encoding="utf-8"))
    skipped = [b for b in blocks if NO_RUN in b.info.split()]
    assert all(STARTS_A_SERVER.search(b.code) for b in skipped), "no-run is only for servers and the test suite"
    assert len(blocks) > len(skipped)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module", name="served_demo")
def fx_served_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """What ``python3 dev.py serve`` does, on a fresh data directory and a free port."""
    lode = ROOT / ".venv" / "bin" / "lode"
    if not lode.exists():
        message = f"{lode} is missing: the README's commands use the .venv that `python3 dev.py …` makes"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LODE_")}
    env.update(
        {
            "LODE_DATA_DIR": str(tmp_path_factory.mktemp("readme") / "lode-data"),
            "LODE_LOG_LEVEL": "WARNING",
            "PATH": f"{lode.parent}{os.pathsep}{env.get('PATH', '')}",
        }
    )
    for args in (["db", "upgrade"], ["demo", "--json"]):
        done = subprocess.run([str(lode), *args], env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
        assert done.returncode == 0, done.stderr
    seeded = json.loads(done.stdout)
    port = _free_port()
    server = subprocess.Popen(
        [str(lode), "serve", "--port", str(port)], env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"{base}/ready", timeout=1):
                    break
            except OSError:
                assert server.poll() is None, server.stderr.read().decode() if server.stderr else ""
                time.sleep(0.1)
        yield {"env": env, "base": base, "port": port, "keys": {**seeded["keys"], **seeded["member_keys"]}}
    finally:
        server.terminate()
        server.wait(timeout=30)


STARTS_A_SERVER = re.compile(r"dev\.py (serve|test)|lode (serve|worker)\b|pytest")
PRELUDE = 'set -euo pipefail\ncurl() { command curl --fail-with-body --silent --show-error "$@"; }\n'


@pytest.mark.parametrize("block", runnable_blocks(), ids=lambda b: f"README-line-{b.line}")
def test_every_readme_command_runs_against_the_demo(served_demo, block: Block) -> None:
    # Never started: it would serve (or test) until the timeout and outlive the run.
    assert not STARTS_A_SERVER.search(block.code), f"README line {block.line}: fence it ```sh {NO_RUN}"
    script = PRELUDE + block.code.replace(README_ADDRESS, served_demo["base"])
    with subprocess.Popen(
        ["bash", "-c", script],
        env=served_demo["env"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, ended whole below
    ) as shell:
        try:
            stdout, stderr = shell.communicate(timeout=600)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(shell.pid, signal.SIGKILL)
    done = subprocess.CompletedProcess(shell.args, shell.returncode, stdout, stderr)
    assert done.returncode == 0, (
        f"README line {block.line}:\n{block.code}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    )
    if "/statement?" in block.code:  # the statement example names a month with money in it
        grosses = [int(g) for g in re.findall(r'"gross":(\d+)', done.stdout)]
        assert grosses and max(grosses) > 0, done.stdout


@pytest.mark.parametrize("block", python_blocks(), ids=lambda b: f"README-line-{b.line}")
def test_every_readme_python_example_runs_against_the_demo(served_demo, block: Block) -> None:
    named = dict(part.split("=", 1) for part in block.info.split()[1:] if "=" in part)
    assert "key" in named, f"README line {block.line}: say whose key the example runs with: ```python key=<name>"
    env = {**served_demo["env"], "LODE_URL": served_demo["base"], "LODE_API_KEY": served_demo["keys"][named["key"]]}
    env["LODE_CONFIG"] = str(Path(env["LODE_DATA_DIR"]).parent / "no-client-config.toml")  # no profile leaks in
    done = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), "-c", block.code],
        env=env, cwd=Path(env["LODE_DATA_DIR"]).parent, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, f"README line {block.line}:\n{block.code}\nstderr:\n{done.stderr}"


def test_the_readme_l4_query_names_a_table_of_the_l4_demo_product() -> None:
    text = README.read_text(encoding="utf-8")
    (slug,) = re.findall(r"LIC=\$\(.*product_id=([a-z0-9-]+)", text)
    tables = re.findall(r"\"table\":\"(\w+)\".*\n.*licences/\$LIC/query\"\s+# L4", text)
    product = demo.product(slug)
    assert product.grade == "L4" and tables
    assert set(tables) <= {t["table"] for t in product.tables}


def test_the_served_demo_refuses_raw_utf8_as_a_problem(served_demo) -> None:
    with socket.create_connection(("127.0.0.1", served_demo["port"]), timeout=10) as conn:
        conn.sendall("GET /v1/products?q=糖尿病 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and b"content-type: application/problem+json" in head.lower()
    assert json.loads(body)["code"] == "malformed_request"

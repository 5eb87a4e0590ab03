"""The client's contract with the server, without a server: every operation it calls and every
field it reads is in the committed OpenAPI document, every problem code Lode raises has its
exception, configuration and retries behave, and the client installs without the server."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from lode_client import Client, config, errors, models
from lode_client.answer import Answer
from lode_client.operations import IDEMPOTENT, OPERATIONS

ROOT = Path(__file__).resolve().parents[2]
SPEC = json.loads((ROOT / "openapi" / "openapi.json").read_text())
# What each operation's 200/201 answer decodes into, on the client's side.
ANSWERS: dict[str, Any] = {
    "GetMe": models.Me,
    "ListProducts": models.ProductList,
    "GetProduct": models.Product,
    "CheckEligibility": models.Eligibility,
    "GetRelease": models.Release,
    "CreateRelease": models.Release,
    "UploadReleaseFile": models.ReleaseFile,
    "GetApplication": models.Application,
    "CreateApplication": models.Application,
    "GetLicence": models.Licence,
    "AcceptLicence": models.Licence,
    "CheckoutLicence": models.Checkout,
    "QueryLicence": Answer,
    "ListLicenceFiles": models.FileList,
    "GetEpsilonBudget": models.Budget,
    "GetLicenceUsage": models.UsageReport,
    "IngestUsageEvents": models.IngestResult,
    "GetPayment": models.Payment,
    "GetStatement": models.Statement,
    "RenewLicence": models.Renewal,
    "CreateWebhook": models.WebhookCreated,
    "GetWebhook": models.Webhook,
    "UpdateWebhook": models.Webhook,
    "RotateWebhookSecret": models.WebhookCreated,
    "RedeliverWebhook": models.WebhookDelivery,
}


def _operations() -> dict[str, tuple[str, str, dict[str, Any]]]:
    found = {}
    for path, methods in SPEC["paths"].items():
        for method, operation in methods.items():
            if isinstance(operation, dict) and "operationId" in operation:
                found[operation["operationId"]] = (method.upper(), path, operation)
    return found


def _schema(ref_or_schema: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in ref_or_schema:
        return SPEC["components"]["schemas"][ref_or_schema["$ref"].rsplit("/", 1)[1]]
    return ref_or_schema


def test_every_operation_the_client_calls_is_in_the_openapi_document() -> None:
    published = _operations()
    for op, (method, path) in OPERATIONS.items():
        assert op in published, f"{op} is not in openapi/openapi.json"
        assert published[op][:2] == (method, path), (op, published[op][:2], (method, path))
    for op in IDEMPOTENT:  # the client sends a key only where Lode takes one
        names = [p["name"] for p in published[op][2].get("parameters", [])]
        assert "Idempotency-Key" in names, op


def test_every_field_a_model_reads_is_in_the_answer_the_server_documents() -> None:
    published = _operations()
    for op, model in ANSWERS.items():
        responses = published[op][2]["responses"]
        success = responses.get("200") or responses.get("201") or responses.get("202")
        schema = _schema(success["content"]["application/json"]["schema"])
        documented = set(schema["properties"])
        fields = set(model.__struct_fields__)
        assert fields <= documented, f"{op}: {model.__name__} reads {sorted(fields - documented)}, not documented"
        required = {f.name for f in msgspec.inspect.type_info(model).fields if f.required}
        assert required <= set(schema.get("required", [])), f"{op}: {sorted(required - set(schema['required']))}"


def _server_codes() -> set[str]:
    """Every problem code Lode's code raises: ``code="…"``, ``code = "…"`` and refusals."""
    codes: set[str] = set()
    pattern = re.compile(r'\bcode\s*=\s*"([a-z_]+)"|Refusal\(\s*"([a-z_]+)"|^\s*"(licence_not_active)",', re.M)
    for folder in ("catalog", "billing"):
        for path in (ROOT / folder).rglob("*.py"):
            if "web" in path.parts:  # the pages' own, never answered to an API client
                continue
            for match in pattern.finditer(path.read_text()):
                codes.add(next(g for g in match.groups() if g))
    return codes


def test_every_problem_code_lode_raises_has_its_exception() -> None:
    codes = _server_codes()
    assert {"quota_exceeded", "budget_exhausted", "ineligible", "not_named_analyst"} <= codes
    missing = sorted(codes - set(errors.BY_CODE))
    assert not missing, f"no exception for {missing}"
    for code in codes:
        exc = errors.for_problem(409, {"code": code, "detail": "d"}, "req-1")
        assert type(exc) is errors.BY_CODE[code] and exc.code == code and exc.request_id == "req-1"
    assert isinstance(errors.for_problem(409, {"code": "quota_exceeded"}), errors.QuotaExceeded)
    assert isinstance(errors.for_problem(422, {"code": "ineligible"}), errors.NotEligible)
    unknown = errors.for_problem(409, {"code": "something_new", "detail": "x"})
    assert type(unknown) is errors.Conflict and unknown.code == "something_new"


def test_configuration_arguments_then_environment_then_profile(client_home: Path, monkeypatch) -> None:
    with pytest.raises(errors.ConfigurationError, match="No Lode URL"):
        config.resolve()
    written = config.write_profile("demo", "http://127.0.0.1:9/", "lode_profilekey")
    assert stat.S_IMODE(os.stat(written).st_mode) == 0o600
    config.write_profile("other", "http://other:1", 'lode_"quoted"\\key')
    assert config.resolve() == config.Settings("http://127.0.0.1:9", "lode_profilekey", "demo")
    assert config.resolve(profile="other").api_key == 'lode_"quoted"\\key'
    monkeypatch.setenv("LODE_URL", "http://env:2")
    monkeypatch.setenv("LODE_API_KEY", "lode_envkey")
    assert config.resolve() == config.Settings("http://env:2", "lode_envkey", None)
    assert config.resolve(profile="demo").url == "http://127.0.0.1:9"  # a named profile outranks the environment
    assert config.resolve(url="http://arg:3", profile="demo").url == "http://arg:3"  # an argument outranks both
    with pytest.raises(errors.ConfigurationError, match="No profile 'nope'"):
        config.resolve(profile="nope")


def test_retries_honour_retry_after_and_never_repeat_what_may_have_happened(client_home: Path) -> None:
    seen: list[httpx.Request] = []
    answers = [
        httpx.Response(429, headers={"Retry-After": "soon"}, json={"code": "too_many_requests"}),  # junk: backs off
        httpx.Response(503, headers={"Retry-After": "nan"}, json={"code": "database_busy"}),  # not finite: backs off
        httpx.Response(503, headers={"Retry-After": "0"}, json={"code": "database_busy"}),
        httpx.Response(200, json={"user": {}, "organisation": {}, "roles": ["admin"]}),
    ]

    def serve(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers.pop(0)

    lode = Client("http://lode.test", "lode_k", transport=httpx.MockTransport(serve))
    lode.retry.base = 0.01  # the backoff a junk Retry-After falls back to, kept short here
    assert lode.me().roles == ["admin"] and len(seen) == 4
    assert seen[0].headers["user-agent"].startswith("lode-client/")

    sent: list[httpx.Request] = []

    def lost(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        raise httpx.ReadError("reset", request=request)

    broken = Client("http://lode.test", "lode_k", transport=httpx.MockTransport(lost), retries=3)
    with pytest.raises(errors.TransportError):  # a query is metered: not sent twice on a lost answer
        broken.licences.query("lic_x", {"table": "t"})
    assert len(sent) == 1
    sent.clear()
    with pytest.raises(errors.TransportError):
        broken.products.get("x")  # a read is repeated
    assert len(sent) == 4

    gone = Client("http://lode.test", "lode_k", transport=httpx.MockTransport(lambda r: httpx.Response(
        503, json={"code": "not_ready", "detail": "starting"}, headers={"Retry-After": "0", "X-Request-Id": "r9"})),
        retries=1)  # fmt: skip
    with pytest.raises(errors.NotReady) as refused:
        gone.products.get("x")
    assert refused.value.request_id == "r9" and refused.value.detail == "starting"


def test_installing_the_client_pulls_none_of_the_servers_dependencies(tmp_path: Path) -> None:
    """``pip install ./client`` as a fresh environment would resolve it (``--ignore-installed``)."""
    report = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
         "--disable-pip-version-check", "--report", str(report), str(ROOT / "client")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if done.returncode != 0 and "Could not" in done.stderr and not os.environ.get("CI"):
        pytest.skip(f"pip could not reach a package index: {done.stderr[-300:]}")
    assert done.returncode == 0, done.stderr
    names = {item["metadata"]["name"].lower().replace("_", "-") for item in json.loads(report.read_text())["install"]}
    assert {"lode-client", "httpx", "msgspec", "rich", "typer"} <= names
    server_only = {"litestar", "sqlalchemy", "alembic", "advanced-alchemy", "aiosqlite", "asyncpg", "stripe",
                   "duckdb", "opendp", "uvicorn", "jinja2", "lode"}  # fmt: skip
    assert not names & server_only, names & server_only

"""The command line: a served Lode from the README's commands, and clear refusals."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

LODE = [sys.executable, "-m", "catalog.cli"]


def run(args: list[str], env: dict[str, str], **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LODE, *args], env=env, capture_output=True, text=True, timeout=120, **kw)


@pytest.fixture(name="env")
def fx_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LODE_")}
    env.update({"LODE_DATA_DIR": str(tmp_path / "lode-data"), "LODE_LOG_LEVEL": "WARNING"})
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TestServe:
    def test_serve_refuses_a_schema_that_is_not_current(self, env) -> None:
        result = run(["serve", "--port", str(free_port())], env)
        assert result.returncode != 0
        assert "lode db upgrade" in result.stderr and "Traceback" not in result.stderr

    def test_upgrade_demo_and_serve(self, env) -> None:
        assert run(["db", "upgrade"], env).returncode == 0
        demo = run(["demo", "--json"], env)
        assert demo.returncode == 0, demo.stderr
        keys = json.loads(demo.stdout)["keys"]
        # The priced demo licence was paid through simulated Stripe and split to the last unit.
        assert json.loads(demo.stdout)["stripe"].startswith("simulated")  # and says so
        (payment,) = json.loads(demo.stdout)["payments"]
        assert payment["paid"] and payment["status"] == "paid"
        assert sum(part["amount"] for part in payment["split"]) == payment["amount"]
        providers = {part["org_id"]: part["amount"] for part in payment["split"] if part["party"] == "provider"}
        assert {t["org_id"]: t["amount"] for t in payment["transfers"] if t["status"] == "sent"} == providers
        again = run(["demo", "--json"], env)
        assert json.loads(again.stdout)["keys"] == keys  # derived, so a rerun prints the same keys
        assert json.loads(again.stdout)["payments"] == []  # already paid: a rerun pays nothing
        port = free_port()
        server = subprocess.Popen(
            [*LODE, "serve", "--port", str(port)],
            env={**env, "LODE_LOG_LEVEL": "INFO", "LODE_PUBLIC_URL": f"http://127.0.0.1:{port}"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(100):
                try:
                    with urllib.request.urlopen(f"{base}/ready", timeout=1) as r:
                        assert r.status == 200
                        break
                except OSError:
                    time.sleep(0.1)
            request = urllib.request.Request(f"{base}/v1/me", headers={"Authorization": f"Bearer {keys['operator']}"})
            with urllib.request.urlopen(request, timeout=5) as r:
                assert json.loads(r.read())["organisation"]["kind"] == "operator"
            with urllib.request.urlopen(f"{base}/docs", timeout=5) as r:
                assert r.headers["content-type"].startswith("text/html")
            with urllib.request.urlopen(f"{base}/v1/catalog.jsonld", timeout=5) as r:
                assert json.loads(r.read())["@id"] == f"{base}/v1/catalog.jsonld"  # its links follow the port
            pay_the_left_licence_on_the_page(base, json.loads(again.stdout))
        finally:
            server.send_signal(signal.SIGTERM)
            _, logs = server.communicate(timeout=30)
        # uvicorn re-raises the signal after its graceful shutdown; the worker had stopped cleanly.
        assert server.returncode in (0, -signal.SIGTERM)
        assert '"worker stopped"' in logs and "Traceback" not in logs
        assert f"API docs at {base}/docs" in logs  # not the default :8000


class TestServeWorkers:
    def test_workers_n_runs_n_processes_each_serving_with_its_own_worker(self, env, database, tmp_path) -> None:
        port = free_port()
        log_file = tmp_path / "serve.log"
        with log_file.open("w") as log:
            server = subprocess.Popen(
                [*LODE, "serve", "--port", str(port), "--workers", "2"],
                env={**env, "LODE_DATABASE_URL": database, "LODE_LOG_LEVEL": "INFO", "LODE_NODE_NAME": "api-7"},
                stdout=log,
                stderr=log,
            )
        try:
            for _ in range(300):  # both processes up, not only the first: each must get connections
                if log_file.read_text().count('"Application startup complete."') == 2:
                    break
                assert server.poll() is None, log_file.read_text()
                time.sleep(0.1)

            def health(_: int) -> int:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
                    return r.status

            # The kernel hands each new connection to one of the processes, not in turn: ask in
            # rounds until both have answered (in practice the first round of 20 does it).
            with ThreadPoolExecutor(8) as pool:
                for _ in range(20):
                    assert set(pool.map(health, range(20))) == {200}
                    if len(pids_of(log_file.read_text(), "request")) == 2:
                        break
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)
        logs = log_file.read_text()
        assert server.returncode in (0, -signal.SIGTERM)
        assert "2 processes, each with the outbox worker in-process" in logs and "logs name node api-7" in logs
        assert {line["node"] for line in json_lines(logs)} == {"api-7"}  # the supervisor's lines too
        started = pids_of(logs, "Application startup complete.")
        assert len(started) == 2 and server.pid not in started
        assert pids_of(logs, "worker started") == started == pids_of(logs, "worker stopped")
        assert pids_of(logs, "request") == started  # each process served requests
        assert "Traceback" not in logs


def json_lines(logs: str) -> list[dict]:
    # A line still being written (read while the server runs) is left for the next read.
    return [json.loads(line) for line in logs.splitlines() if line.startswith("{") and line.endswith("}")]


def pids_of(logs: str, msg: str) -> set[int]:
    return {line["pid"] for line in json_lines(logs) if line["msg"] == msg}


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # the 303 itself is what the test reads


def pay_the_left_licence_on_the_page(base: str, demo: dict) -> None:
    """The demo's licence left awaiting payment, paid by its buyer on the simulated checkout page."""
    (left,) = [made for made in demo["licences"] if made["status"] == "pending_payment"]
    buyer = {"Authorization": f"Bearer {demo['keys'][left['consumer']]}", "Content-Type": "application/json"}
    licence = f"{base}/v1/licences/{left['licence_id']}"
    checkout = urllib.request.Request(f"{licence}/checkout", data=b'{"method": "card"}', headers=buyer)
    with urllib.request.urlopen(checkout, timeout=30) as r:
        url = json.loads(r.read())["url"]
    assert url.startswith(f"{base}/simulator/checkout/")
    with urllib.request.urlopen(url, timeout=30) as r:
        assert "Pay — simulated" in r.read().decode()
    with pytest.raises(urllib.error.HTTPError) as paid:  # the 303, not followed
        urllib.request.build_opener(_NoRedirects).open(urllib.request.Request(url, data=b"", method="POST"))
    assert paid.value.code == 303 and paid.value.headers["Location"] == f"{licence}?checkout=success"
    for _ in range(100):  # the in-process worker processes the webhook within a poll or two
        with urllib.request.urlopen(urllib.request.Request(licence, headers=buyer), timeout=5) as r:
            if json.loads(r.read())["status"] == "active":
                return
        time.sleep(0.1)
    raise AssertionError("the licence did not become active after paying on the page")


class TestCommands:
    def test_bootstrap_prints_a_key_once_and_refuses_a_second_operator(self, env) -> None:
        run(["db", "upgrade"], env)
        first = run(["admin", "bootstrap", "--org", "Op", "--email", "a@op.test", "--json"], env)
        assert first.returncode == 0, first.stderr
        assert set(json.loads(first.stdout)) == {"org_id", "user_id", "api_key"}
        second = run(["admin", "bootstrap", "--org", "Op2", "--email", "b@op.test"], env)
        assert second.returncode != 0 and "already an operator" in second.stderr

    def test_a_bad_setting_is_one_clear_line_per_variable(self, env) -> None:
        result = run(["db", "status"], {**env, "LODE_ENV": "qa", "LODE_BILLING_GRACE_DAYS": "soon"})
        assert result.returncode == 2
        assert "LODE_ENV" in result.stderr and "LODE_BILLING_GRACE_DAYS" in result.stderr
        assert "Traceback" not in result.stderr

    def test_serve_refuses_fewer_than_one_worker_process(self, env) -> None:
        result = run(["serve", "--workers", "0"], env)
        assert result.returncode == 2 and "--workers must be at least 1" in result.stderr

    def test_demo_refuses_production(self, env) -> None:
        result = run(["demo"], {**env, "LODE_ENV": "production", "LODE_KEY_PEPPER": "p" * 40})
        assert result.returncode != 0 and "production" in result.stderr

    def test_audit_head_and_openapi_check(self, env) -> None:
        run(["db", "upgrade"], env)
        head = json.loads(run(["audit", "head"], env).stdout)
        assert head["seq"] == 0 and head["expected_head"] == f"0:{'0' * 64}"
        root = Path(__file__).resolve().parents[1]
        check = run(["openapi", "--check"], env, cwd=root)
        assert check.returncode == 0, check.stderr

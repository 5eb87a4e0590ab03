"""dev.py, the two commands of a fresh clone: where `serve` says it is, and which databases `test` uses."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

ROOT = Path(__file__).resolve().parents[1]
LOCAL = "postgresql://postgres@127.0.0.1:5432"
# One test on both databases: its outcome line tells whether the PostgreSQL half ran.
BOTH = "tests/test_db.py::TestSingleRead::test_the_key_lookup_reads_outside_any_transaction"


def load_dev():
    spec = importlib.util.spec_from_file_location("dev", ROOT / "dev.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class TestServeUrls:
    @pytest.mark.parametrize(
        ("host", "port", "environ", "url"),
        [
            ("127.0.0.1", 8000, {}, "http://127.0.0.1:8000"),
            ("127.0.0.1", 9010, {}, "http://127.0.0.1:9010"),
            ("0.0.0.0", 9010, {}, "http://127.0.0.1:9010"),  # a wildcard is reached through loopback here
            ("::1", 9010, {}, "http://[::1]:9010"),
            ("0.0.0.0", 9010, {"LODE_PUBLIC_URL": "https://lode.example.org/"}, "https://lode.example.org"),
        ],
    )
    def test_the_public_url_follows_lode_public_url_or_the_host_and_port(self, host, port, environ, url) -> None:
        assert load_dev().public_url(host, port, environ) == url

    def test_help_documents_host_and_port(self) -> None:
        shown = subprocess.run([sys.executable, "dev.py"], cwd=ROOT, capture_output=True, text=True, timeout=30)
        assert "serve [--host HOST] [--port PORT]" in shown.stderr and "LODE_PUBLIC_URL" in shown.stderr


async def _local_postgres_answers() -> bool:
    try:
        conn = await asyncpg.connect(f"{LOCAL}/postgres", timeout=3)
    except (OSError, asyncpg.PostgresError):
        return False
    await conn.close()
    return True


async def _dev_databases() -> set[str]:
    conn = await asyncpg.connect(f"{LOCAL}/postgres", timeout=3)
    try:
        rows = await conn.fetch("SELECT datname FROM pg_database WHERE datname LIKE 'lode_dev_%'")
    finally:
        await conn.close()
    return {r["datname"] for r in rows}


def dev_test(**env: str) -> subprocess.CompletedProcess[str]:
    """`python3 dev.py test` as a developer runs it: none of this run's pytest, CI or database settings."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTEST_", "LODE_")) and k not in ("CI", "COV_CORE_SOURCE")
    }
    return subprocess.run(
        [sys.executable, "dev.py", "test", "-n", "0", "-q", "-p", "no:cacheprovider", BOTH],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


class TestTestDatabases:
    async def test_the_local_postgresql_is_used_on_a_fresh_database_dropped_afterwards(self) -> None:
        if not await _local_postgres_answers():
            pytest.skip(f"no PostgreSQL answers at {LOCAL}")
        before = await _dev_databases()
        done = dev_test()
        assert done.returncode == 0, done.stdout + done.stderr
        used = re.search(r"PostgreSQL half on (postgresql://\S+/(lode_dev_\w+)) \(a fresh database", done.stderr)
        assert used, done.stderr
        assert "2 passed" in done.stdout, done.stdout  # SQLite and PostgreSQL, nothing skipped
        assert await _dev_databases() == before  # dropped again

    def test_an_empty_lode_test_pg_url_opts_out(self) -> None:
        done = dev_test(LODE_TEST_PG_URL="")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "PostgreSQL half skipped (LODE_TEST_PG_URL is empty)" in done.stderr
        assert "1 passed, 1 skipped" in done.stdout, done.stdout

"""Settings: validated at start, one clear message per mistake, naming the variable."""

from __future__ import annotations

import pytest

from catalog.settings import SettingsError, load_settings


def test_defaults(tmp_path) -> None:
    settings = load_settings({"LODE_DATA_DIR": str(tmp_path)})
    assert settings.env == "development"
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path / 'lode.db'}"
    assert settings.public_url == "http://127.0.0.1:8000"
    assert settings.billing_grace_days == 7 and settings.demo_seed == "lode-demo"
    assert settings.query_timeout_s == 30 and settings.query_memory_limit == "1GB"
    assert settings.worker_lease_s == 30
    assert len(settings.key_pepper) == 64
    assert load_settings({"LODE_DATA_DIR": str(tmp_path)}).key_pepper == settings.key_pepper  # generated once


def test_every_mistake_is_reported_by_name(tmp_path) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(
            {
                "LODE_DATA_DIR": str(tmp_path),
                "LODE_ENV": "staging",
                "LODE_DATABASE_URL": "mysql://x",
                "LODE_PUBLIC_URL": "nope",
                "LODE_QUERY_TIMEOUT_S": "-1",
                "LODE_MAX_UPLOAD_BYTES": "big",
                "LODE_STRIPE_API_KEY": "pk_test_1",
                "LODE_STRIPE_WEBHOOK_SECRET": "abc",
                "LODE_BILLING_GRACE_DAYS": "x",
                "LODE_LOG_LEVEL": "LOUD",
                "LODE_POLICY_FILE": "/nonexistent.toml",
                "LODE_QUERY_MEMORY_LIMIT": "lots",
                "LODE_WORKER_LEASE_S": "0.1",
            }
        )
    problems = caught.value.problems
    for name in (
        "LODE_ENV",
        "LODE_DATABASE_URL",
        "LODE_PUBLIC_URL",
        "LODE_QUERY_TIMEOUT_S",
        "LODE_MAX_UPLOAD_BYTES",
        "LODE_STRIPE_API_KEY",
        "LODE_STRIPE_WEBHOOK_SECRET",
        "LODE_BILLING_GRACE_DAYS",
        "LODE_LOG_LEVEL",
        "LODE_POLICY_FILE",
        "LODE_QUERY_MEMORY_LIMIT",
        "LODE_WORKER_LEASE_S",
    ):
        assert sum(p.startswith(name) for p in problems) == 1, (name, problems)


def test_production_needs_a_pepper(tmp_path) -> None:
    with pytest.raises(SettingsError, match="LODE_KEY_PEPPER"):
        load_settings({"LODE_DATA_DIR": str(tmp_path), "LODE_ENV": "production"})


def test_urls_and_sizes_are_normalised(tmp_path) -> None:
    settings = load_settings(
        {
            "LODE_DATA_DIR": str(tmp_path),
            "LODE_DATABASE_URL": "postgresql://u@h/db",
            "LODE_MAX_UPLOAD_BYTES": "500MB",
            "LODE_STRIPE_WEBHOOK_SECRET": "whsec_a, whsec_b",
        }
    )
    assert settings.database_url == "postgresql+asyncpg://u@h/db"
    assert settings.max_upload_bytes == 500_000_000
    assert settings.stripe_webhook_secrets == ("whsec_a", "whsec_b")

"""Settings: validated at start, one clear message per mistake, naming the variable."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from catalog.settings import SettingsError, load_settings


def test_defaults(tmp_path) -> None:
    settings = load_settings({"LODE_DATA_DIR": str(tmp_path)})
    assert settings.env == "development"
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path / 'lode.db'}"
    assert settings.public_url == "http://127.0.0.1:8000"
    assert settings.billing_grace_days == 7 and settings.demo_seed == "lode-demo"
    assert settings.query_timeout_s == 30 and settings.query_memory_limit == "1GB"
    assert settings.worker_lease_s == 10
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
                "LODE_STRIPE_TIMEOUT_S": "0",
                "LODE_STRIPE_MAX_RETRIES": "9",
                "LODE_DB_MAX_CONNECTIONS": "none",
                "LODE_DB_POOL_TIMEOUT_S": "nan",
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
        "LODE_STRIPE_TIMEOUT_S",
        "LODE_STRIPE_MAX_RETRIES",
        "LODE_DB_MAX_CONNECTIONS",
        "LODE_DB_POOL_TIMEOUT_S",
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


def test_the_noise_secret_is_generated_once_and_required_in_production(tmp_path) -> None:
    settings = load_settings({"LODE_DATA_DIR": str(tmp_path)})
    assert len(settings.noise_secret) == 64 and settings.noise_secret != settings.key_pepper
    assert load_settings({"LODE_DATA_DIR": str(tmp_path)}).noise_secret == settings.noise_secret
    with pytest.raises(SettingsError, match="LODE_NOISE_SECRET"):
        load_settings({"LODE_DATA_DIR": str(tmp_path), "LODE_ENV": "production", "LODE_KEY_PEPPER": "p" * 40})
    with pytest.raises(SettingsError, match="LODE_NOISE_SECRET must be at least 32"):
        load_settings({"LODE_DATA_DIR": str(tmp_path), "LODE_NOISE_SECRET": "short"})


def test_stripe_and_pool_limits_are_read(tmp_path) -> None:
    settings = load_settings(
        {
            "LODE_DATA_DIR": str(tmp_path),
            "LODE_STRIPE_TIMEOUT_S": "2.5",
            "LODE_STRIPE_MAX_RETRIES": "0",
            "LODE_DB_MAX_CONNECTIONS": "12",
            "LODE_DB_POOL_TIMEOUT_S": "1",
        }
    )
    assert (settings.stripe_timeout_s, settings.stripe_max_retries) == (2.5, 0)
    assert (settings.db_max_connections, settings.db_pool_timeout_s) == (12, 1.0)


def test_processes_starting_together_on_a_fresh_folder_share_one_whole_secret(tmp_path) -> None:
    # lode serve --workers N: every process generates-or-reads the secret at the same moment.
    def load(folder):
        settings = load_settings({"LODE_DATA_DIR": str(folder)})
        return settings.key_pepper, settings.noise_secret

    for round_ in range(30):
        folder = tmp_path / f"fresh-{round_}"
        folder.mkdir()
        with ThreadPoolExecutor(8) as pool:
            seen = set(pool.map(load, [folder] * 8))
        assert len(seen) == 1, seen
        ((pepper, noise),) = seen
        assert len(pepper) == len(noise) == 64
        assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []  # no drafts left

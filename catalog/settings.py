"""Settings read once from the ``LODE_*`` environment variables.

Every mistake is collected before anything starts, so an operator fixing a deployment sees all of
them at once, each naming its variable — never a traceback.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
from collections.abc import Mapping
from pathlib import Path

import msgspec

from catalog import policy

ENVIRONMENTS = ("development", "test", "production")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KIB|MIB|GIB|TIB)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
}


class SettingsError(Exception):
    """Raised with every problem found; ``problems`` holds one message per variable."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class Settings(msgspec.Struct, kw_only=True, frozen=True):
    env: str = "development"
    data_dir: Path = Path("lode-data")
    database_url: str = ""
    public_url: str = "http://127.0.0.1:8000"
    key_pepper: bytes = b""
    noise_secret: bytes = b""  # seeds L4's noise: the same for every node, and never changed
    policy_file: Path | None = None
    query_memory_limit: str = "1GB"
    query_timeout_s: float = 30.0
    max_upload_bytes: int = 2 * 2**30
    stripe_api_key: str = ""
    stripe_webhook_secrets: tuple[str, ...] = ()
    stripe_api_base: str = ""
    # One try of a Stripe call, and how many more the SDK makes (same idempotency key) before
    # the request answers 503 payment_provider_unavailable.
    stripe_timeout_s: float = 10.0
    stripe_max_retries: int = 2
    # 0: the dialect's default (PostgreSQL 30, SQLite 15 connections per process).
    db_max_connections: int = 0
    db_pool_timeout_s: float = 5.0
    billing_grace_days: int = 7
    worker_lease_s: float = 10.0
    # One try of a webhook delivery, in all; and whether receivers may sit on loopback or private
    # networks (development only: elsewhere that is how SSRF reaches the inside).
    webhook_timeout_s: float = 5.0
    webhook_allow_private: bool = True
    demo_seed: str = "lode-demo"
    log_level: str = "INFO"
    # Where release files live: "" is the local folder <data_dir>/objects; s3://bucket/prefix an
    # S3-compatible object store (AWS S3, MinIO, Alibaba OSS), credentials from the standard AWS
    # environment variables or files, never from Lode's own settings.
    storage_url: str = ""
    s3_endpoint_url: str = ""
    s3_region: str = ""
    s3_path_style: bool = False
    # Named in every log line, so a line from one of many API nodes or workers says which.
    node_name: str = ""

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def stripe_simulated(self) -> bool:
        """No Stripe key outside production: billing runs on the built-in Stripe simulator."""
        return not self.stripe_api_key and not self.is_production


def load_settings(environ: Mapping[str, str] | None = None, *, create_dirs: bool = True) -> Settings:
    """Build Settings from the environment, or raise SettingsError listing every mistake."""
    env = os.environ if environ is None else environ
    problems: list[str] = []

    def get(name: str) -> str | None:
        value = env.get(name)
        return value.strip() if value is not None and value.strip() != "" else None

    values: dict[str, object] = {}

    lode_env = get("LODE_ENV") or "development"
    if lode_env not in ENVIRONMENTS:
        problems.append(f"LODE_ENV must be one of {', '.join(ENVIRONMENTS)}; got {lode_env!r}.")
    values["env"] = lode_env

    data_dir = Path(get("LODE_DATA_DIR") or "lode-data").expanduser()
    if data_dir.exists() and not data_dir.is_dir():
        problems.append(f"LODE_DATA_DIR must be a directory; {str(data_dir)!r} is a file.")
    elif create_dirs:
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            problems.append(f"LODE_DATA_DIR {str(data_dir)!r} cannot be created: {exc.strerror}.")
    values["data_dir"] = data_dir.resolve()

    database_url = get("LODE_DATABASE_URL") or f"sqlite+aiosqlite:///{(data_dir / 'lode.db').resolve()}"
    database_url = _normalise_database_url(database_url)
    if not (database_url.startswith("sqlite+aiosqlite://") or database_url.startswith("postgresql+asyncpg://")):
        problems.append(
            "LODE_DATABASE_URL must be a SQLite (sqlite:///path) or PostgreSQL "
            f"(postgresql://user@host/db) URL; got {_redact(database_url)!r}."
        )
    values["database_url"] = database_url

    public_url = get("LODE_PUBLIC_URL") or "http://127.0.0.1:8000"
    if not re.match(r"^https?://[^\s/]+(/\S*)?$", public_url):
        problems.append(f"LODE_PUBLIC_URL must be an http(s) URL; got {public_url!r}.")
    values["public_url"] = public_url.rstrip("/")

    pepper = get("LODE_KEY_PEPPER")
    if pepper is not None:
        if len(pepper) < 32:
            problems.append("LODE_KEY_PEPPER must be at least 32 characters of secret material.")
        values["key_pepper"] = pepper.encode()
    elif lode_env == "production":
        problems.append("LODE_KEY_PEPPER is required when LODE_ENV=production (API keys are hashed with it).")
    elif not problems or data_dir.is_dir():
        values["key_pepper"] = (
            _secret_from_data_dir(data_dir, "key-pepper", "LODE_KEY_PEPPER", problems) if create_dirs else b"x" * 32
        )

    noise = get("LODE_NOISE_SECRET")
    if noise is not None:
        if len(noise) < 32:
            problems.append("LODE_NOISE_SECRET must be at least 32 characters of secret material.")
        values["noise_secret"] = noise.encode()
    elif lode_env == "production":
        problems.append(
            "LODE_NOISE_SECRET is required when LODE_ENV=production (L4 answers' noise is seeded with it; "
            "every node must share it, and it must never change)."
        )
    elif not problems or data_dir.is_dir():
        values["noise_secret"] = (
            _secret_from_data_dir(data_dir, "noise-secret", "LODE_NOISE_SECRET", problems) if create_dirs else b"x" * 32
        )

    policy_file = get("LODE_POLICY_FILE")
    if policy_file is not None:
        path = Path(policy_file).expanduser()
        if not path.is_file():
            problems.append(f"LODE_POLICY_FILE {policy_file!r} does not exist or is not a file.")
        else:
            try:
                policy.load(path)
            except policy.PolicyError as exc:
                problems.extend(exc.problems)
        values["policy_file"] = path

    memory = get("LODE_QUERY_MEMORY_LIMIT") or "1GB"
    if _parse_size(memory) is None:
        problems.append(f"LODE_QUERY_MEMORY_LIMIT must be a size like 512MB or 2GB; got {memory!r}.")
    values["query_memory_limit"] = memory.replace(" ", "").upper()

    timeout = get("LODE_QUERY_TIMEOUT_S")
    if timeout is not None:
        try:
            values["query_timeout_s"] = float(timeout)
            if not 0 < float(timeout) <= 3600:
                raise ValueError
        except ValueError:
            problems.append(f"LODE_QUERY_TIMEOUT_S must be a number of seconds in (0, 3600]; got {timeout!r}.")

    upload = get("LODE_MAX_UPLOAD_BYTES")
    if upload is not None:
        size = _parse_size(upload)
        if size is None or size <= 0:
            problems.append(f"LODE_MAX_UPLOAD_BYTES must be a positive size (bytes, or like 500MB); got {upload!r}.")
        else:
            values["max_upload_bytes"] = size

    stripe_key = get("LODE_STRIPE_API_KEY") or ""
    if stripe_key and not re.match(r"^(sk|rk)_(test|live)_\w+$", stripe_key):
        problems.append("LODE_STRIPE_API_KEY must be a Stripe secret or restricted key (sk_… or rk_…).")
    values["stripe_api_key"] = stripe_key

    secrets_raw = get("LODE_STRIPE_WEBHOOK_SECRET")
    if secrets_raw is not None:
        webhook_secrets = tuple(s.strip() for s in secrets_raw.split(",") if s.strip())
        if not webhook_secrets or any(not s.startswith("whsec_") for s in webhook_secrets):
            problems.append("LODE_STRIPE_WEBHOOK_SECRET must be comma-separated Stripe signing secrets (whsec_…).")
        values["stripe_webhook_secrets"] = webhook_secrets

    api_base = get("LODE_STRIPE_API_BASE") or ""
    if api_base and not re.match(r"^https?://\S+$", api_base):
        problems.append(f"LODE_STRIPE_API_BASE must be an http(s) URL; got {api_base!r}.")
    values["stripe_api_base"] = api_base.rstrip("/")

    for name, field, most in (
        ("LODE_STRIPE_TIMEOUT_S", "stripe_timeout_s", 120),
        ("LODE_DB_POOL_TIMEOUT_S", "db_pool_timeout_s", 300),
    ):
        raw = get(name)
        if raw is None:
            continue
        seconds = _seconds(raw, most)
        if seconds is None:
            problems.append(f"{name} must be a number of seconds in (0, {most}]; got {raw!r}.")
        else:
            values[field] = seconds

    for name, field, least, most in (
        ("LODE_STRIPE_MAX_RETRIES", "stripe_max_retries", 0, 5),
        ("LODE_DB_MAX_CONNECTIONS", "db_max_connections", 1, 1000),
    ):
        raw = get(name)
        if raw is None:
            continue
        if not raw.isdigit() or not least <= int(raw) <= most:
            problems.append(f"{name} must be a whole number in {least}..{most}; got {raw!r}.")
        else:
            values[field] = int(raw)

    grace = get("LODE_BILLING_GRACE_DAYS")
    if grace is not None:
        if not grace.isdigit() or not 0 <= int(grace) <= 90:
            problems.append(f"LODE_BILLING_GRACE_DAYS must be a whole number of days in 0..90; got {grace!r}.")
        else:
            values["billing_grace_days"] = int(grace)

    lease = get("LODE_WORKER_LEASE_S")
    if lease is not None:
        try:
            values["worker_lease_s"] = float(lease)
            if not 1 <= float(lease) <= 3600:
                raise ValueError
        except ValueError:
            problems.append(f"LODE_WORKER_LEASE_S must be a number of seconds in [1, 3600]; got {lease!r}.")

    webhook_timeout = get("LODE_WEBHOOK_TIMEOUT_S")
    if webhook_timeout is not None:
        try:
            values["webhook_timeout_s"] = float(webhook_timeout)
            if not 0 < float(webhook_timeout) <= 30:
                raise ValueError
        except ValueError:
            problems.append(f"LODE_WEBHOOK_TIMEOUT_S must be a number of seconds in (0, 30]; got {webhook_timeout!r}.")

    private = (get("LODE_WEBHOOK_ALLOW_PRIVATE") or ("1" if lode_env == "development" else "0")).lower()
    if private not in ("0", "1", "true", "false"):
        problems.append(f"LODE_WEBHOOK_ALLOW_PRIVATE must be 0 or 1; got {private!r}.")
    elif private in ("1", "true") and lode_env == "production":
        problems.append("LODE_WEBHOOK_ALLOW_PRIVATE cannot be on in production: webhooks go to public addresses only.")
    values["webhook_allow_private"] = private in ("1", "true")

    values["demo_seed"] = get("LODE_DEMO_SEED") or "lode-demo"

    level = (get("LODE_LOG_LEVEL") or "INFO").upper()
    if level not in LOG_LEVELS:
        problems.append(f"LODE_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}; got {level!r}.")
    values["log_level"] = level

    storage_url = get("LODE_STORAGE_URL") or ""
    if storage_url and not re.match(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[A-Za-z0-9._/-]*)?$", storage_url):
        problems.append(
            f"LODE_STORAGE_URL must be empty (the local folder) or s3://bucket[/prefix]; got {storage_url!r}."
        )
    values["storage_url"] = storage_url.rstrip("/")
    endpoint = get("LODE_S3_ENDPOINT_URL") or ""
    if endpoint and not re.match(r"^https?://[^\s/]+/?$", endpoint):
        problems.append(f"LODE_S3_ENDPOINT_URL must be an http(s) URL with no path; got {endpoint!r}.")
    values["s3_endpoint_url"] = endpoint.rstrip("/")
    values["s3_region"] = get("LODE_S3_REGION") or get("AWS_REGION") or get("AWS_DEFAULT_REGION") or ""
    path_style = (get("LODE_S3_PATH_STYLE") or "0").lower()
    if path_style not in ("0", "1", "true", "false"):
        problems.append(f"LODE_S3_PATH_STYLE must be 0 or 1; got {path_style!r}.")
    values["s3_path_style"] = path_style in ("1", "true")

    node = get("LODE_NODE_NAME") or f"{socket.gethostname()}-{os.getpid()}"
    if not re.match(r"^[A-Za-z0-9._-]{1,64}$", node):
        problems.append(f"LODE_NODE_NAME must be 1-64 letters, digits, '.', '_' or '-'; got {node!r}.")
    values["node_name"] = node

    if problems:
        raise SettingsError(problems)
    return Settings(**values)  # type: ignore[arg-type]


def _normalise_database_url(url: str) -> str:
    """Accept the URLs people write and pin the async drivers Lode ships with."""
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url.removeprefix("sqlite:///")
    for prefix in ("postgres://", "postgresql://", "postgresql+psycopg://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url.removeprefix(prefix)
    return url


def _redact(url: str) -> str:
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)


def _seconds(text: str, most: float) -> float | None:
    try:
        seconds = float(text)
    except ValueError:
        return None
    return seconds if 0 < seconds <= most else None


def _parse_size(text: str) -> int | None:
    match = _SIZE.match(text)
    if not match:
        return None
    return int(float(match.group(1)) * _SIZE_UNITS[(match.group(2) or "B").upper()])


def _secret_from_data_dir(data_dir: Path, name: str, variable: str, problems: list[str]) -> bytes:
    """Outside production a secret is generated once and kept beside the database it protects.

    Written whole to a private file first and then linked into place, so a process starting at the
    same moment (``lode serve --workers N``) reads either no file or the whole secret, never an
    empty one; the first link wins and every process reads the winner's."""
    path = data_dir / name
    try:
        if not path.exists():
            draft = data_dir / f".{name}.{os.getpid()}.{secrets.token_hex(4)}"
            fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                with os.fdopen(fd, "w") as fh:
                    fh.write(secrets.token_hex(32))
                try:
                    os.link(draft, path)
                except FileExistsError:
                    pass
            finally:
                draft.unlink(missing_ok=True)
        return path.read_text().strip().encode()
    except OSError as exc:
        problems.append(f"{variable} is unset and {str(path)!r} cannot be written: {exc.strerror}.")
        return b""


def memory_limit_bytes(settings: Settings) -> int:
    return _parse_size(settings.query_memory_limit) or 2**30

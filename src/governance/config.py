"""The one settings class. Every process reads it once, at its composition root."""

from __future__ import annotations

import secrets
from functools import cached_property
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_SECRET_FILE = "jwt-secret"  # noqa: S105 - a file name, not a secret
_MIN_SECRET_LENGTH = 32
# Values people leave in place from examples; none of them may sign production tokens.
_PLACEHOLDER_SECRETS = frozenset({"secret", "jwt-secret", "your-secret", "password"})
_PLACEHOLDER_MARKS = ("change-me", "changeme", "change_me", "change-this", "placeholder")


class InsecureConfiguration(ValueError):
    """A setting that would run the service insecurely; the process refuses to start."""


class Settings(BaseSettings):
    """Configuration from the environment (prefix `GOVERNANCE_`, a few well-known names without)."""

    model_config = SettingsConfigDict(
        env_prefix="GOVERNANCE_", extra="ignore", frozen=True, populate_by_name=True
    )

    data_dir: Path = Field(
        default=Path("var"),
        description="Where the embedded default keeps its SQLite files and generated secret.",
    )
    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URL", "GOVERNANCE_DATABASE_URL"),
        description="postgresql://user:password@host:port/dbname; unset means embedded SQLite.",
        json_schema_extra={"allowed": "a postgresql:// URL naming a user, a host and a database"},
    )
    database_schema: str = Field(
        default="public",
        pattern=r"^[a-z_][a-z0-9_]{0,62}$",
        description="PostgreSQL schema holding the event store and the read models.",
        json_schema_extra={"allowed": "a lowercase SQL name: a-z, 0-9, _ (up to 63)"},
    )
    database_pool_size: int = Field(
        default=10,
        ge=1,
        le=200,
        description="PostgreSQL connections each process may open for the read models.",
    )
    group_commit: bool = Field(
        default=True,
        description="Commit the event-store saves of concurrent commands together, in one"
        " transaction (each keeps its own conflict check and result).",
    )
    kafka_bootstrap_servers: str | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "KAFKA_BOOTSTRAP_SERVERS", "GOVERNANCE_KAFKA_BOOTSTRAP_SERVERS"
        ),
        description="host:port[,host:port]; unset means no Kafka (reactions run in-process).",
        json_schema_extra={"allowed": "host:port, comma-separated"},
    )
    jwt_secret: SecretStr | None = Field(
        default=None,
        description="HS256 key for bearer tokens; the embedded default generates one in data_dir.",
    )
    token_ttl_seconds: int = Field(
        default=12 * 3600,
        ge=60,
        le=366 * 24 * 3600,
        description="Lifetime of the tokens `governance token` and `governance demo` issue.",
    )
    jwks_url: str | None = Field(
        default=None,
        description="https URL of the identity provider's JWKS: RS256/ES256 tokens it signed.",
        json_schema_extra={"allowed": "a URL"},
    )
    jwks_file: Path | None = Field(
        default=None,
        description="A JWKS document on disk (instead of jwks_url).",
        json_schema_extra={"allowed": "a file path"},
    )
    jwt_issuer: str | None = Field(
        default=None, description="The `iss` that identity-provider tokens must carry."
    )
    jwt_audience: str | None = Field(
        default=None, description="The `aud` that identity-provider tokens must name."
    )
    jwt_leeway_seconds: int = Field(
        default=30, ge=0, le=300, description="Clock skew allowed on exp, nbf and iat."
    )
    max_body_bytes: int = Field(
        default=64 * 1024, ge=1024, le=16 * 1024 * 1024, description="Largest request body."
    )
    command_rate_per_second: float = Field(
        default=20.0, gt=0, le=10_000, description="Commands an account may send per second."
    )
    command_burst: int = Field(
        default=60, ge=1, le=100_000, description="Commands an account may send at once."
    )
    idempotency_ttl_hours: int = Field(
        default=24, ge=24, le=24 * 30, description="How long Idempotency-Key answers are kept."
    )
    database_retry_after_seconds: int = Field(
        default=1, ge=1, le=60, description="Retry-After sent while the database is away."
    )
    host: str = Field(
        default="127.0.0.1",
        description="Interface `governance serve` (and a worker's metrics) listens on.",
        json_schema_extra={"allowed": "an IP address or host name"},
    )
    port: int = Field(
        default=8000,
        ge=1,
        le=65535,
        validation_alias=AliasChoices("PORT", "GOVERNANCE_PORT"),
        description="Port of `governance serve`.",
    )
    min_position_timeout: float = Field(
        default=5.0,
        gt=0,
        le=60,
        description="How long a GET with ?min_position=N waits for the read models (seconds).",
    )
    run_projector: bool = Field(
        default=True,
        description="Run the projector inside the API process (the embedded default needs it).",
    )
    projector_batch_size: int = Field(
        default=1000,
        ge=1,
        le=100_000,
        description="Events the projector applies in one transaction.",
    )
    replay_workers: int = Field(
        default=0,
        ge=0,
        le=64,
        description="Processes `governance replay` folds the log in (0: one per CPU core).",
    )
    projector_idle_wait: float = Field(
        default=0.5,
        gt=0,
        le=60,
        description="Longest sleep of an idle projector between looks at the log.",
    )
    log_format: Literal["json", "text"] = Field(
        default="json",
        description="One JSON object per log line, or `time level logger message key=value`.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="The least severe log records written."
    )
    shutdown_timeout: int = Field(
        default=10,
        gt=0,
        le=300,
        description="After SIGTERM, how long in-flight requests may take to finish (seconds);"
        " then the projector stops at a batch boundary and the process exits.",
    )
    metrics_port: int = Field(
        default=9464,
        ge=0,
        le=65535,
        description="Port where a worker (`governance project`, `relay`, `consume`) serves"
        " /metrics; 0: any free port (the log names it). The API serves /metrics on its own port.",
    )

    app_request_ttl_days: float = Field(
        default=14,
        gt=0,
        le=3650,
        description="Days an open app request case waits for an admin before it expires.",
    )
    app_request_sweep_interval: float = Field(
        default=60,
        gt=0,
        le=86400,
        description="Seconds between two sweeps for request cases to expire (in the process"
        " that runs the projector).",
    )

    # Kafka: the relay publishes, the consumers react (docs/events.md describes the contract).
    events_topic: str = Field(
        default="governance.events",
        pattern=r"^[A-Za-z0-9._-]{1,249}$",
        description="Every event as a CloudEvent, keyed by site id.",
    )
    policy_topic: str = Field(
        default="governance.site-policy",
        pattern=r"^[A-Za-z0-9._-]{1,249}$",
        description="Compacted: each site's whole current policy, keyed by site id.",
    )
    topic_partitions: int = Field(
        default=3, ge=1, le=1000, description="Partitions of the topics the relay creates."
    )
    topic_replication_factor: int = Field(
        default=1, ge=1, le=10, description="Replicas of the topics the relay creates."
    )
    cloudevents_source: str = Field(
        default="/governance",
        min_length=1,
        description="The CloudEvents `source` attribute of every published event.",
    )
    kafka_timeout: float = Field(
        default=30.0,
        gt=0,
        le=600,
        description="How long a send waits for the broker before the batch is retried (seconds).",
    )
    # A batch's position is recorded once the broker acknowledged it; larger batches mean fewer
    # position writes on a backlog (a short batch is flushed at once), at the price of re-sending
    # up to two batches after a failure (consumers drop repeats by event id).
    relay_batch_size: int = Field(
        default=2000,
        ge=1,
        le=100_000,
        description="Events per batch the relay reads, sends and records together.",
    )
    relay_pages_process: bool = Field(
        default=True,
        description=(
            "Read the log and write the relay's messages in a child process, leaving the relay's"
            " interpreter to the Kafka producer (faster on 2 cores or more; see BENCHMARKS.md)."
        ),
    )
    relay_idle_wait: float = Field(
        default=0.5,
        gt=0,
        le=60,
        description="Longest sleep of an idle relay or in-process dispatcher between looks.",
    )
    consumer_group_prefix: str = Field(
        default="governance.",
        pattern=r"^[A-Za-z0-9._-]{0,200}$",
        description="A consumer's group id is this prefix and its name, e.g. governance.webhooks.",
    )
    run_reactions: bool = Field(
        default=True,
        description="Without Kafka, run the consumers' reactions inside the API process.",
    )
    service_api_url: str | None = Field(
        default=None,
        description="Base URL of the public API for services (enforce-block); default: this host.",
    )
    service_token_ttl_seconds: int = Field(
        default=300,
        ge=30,
        le=3600,
        description="Lifetime of the tokens services (enforce-block) mint for themselves.",
    )
    reaction_retry_max: float = Field(
        default=30.0,
        gt=0,
        le=600,
        description="Longest wait before a consumer retries an event it could not apply (s).",
    )
    webhook_max_attempts: int = Field(
        default=6,
        ge=1,
        le=50,
        description="Attempts of one webhook delivery before it becomes a dead letter.",
    )
    webhook_backoff: float = Field(
        default=2.0,
        gt=0,
        le=3600,
        description="Wait after a webhook's first failed attempt; doubled after each (seconds).",
    )
    webhook_backoff_max: float = Field(
        default=600.0, gt=0, le=86_400, description="Longest wait between webhook attempts (s)."
    )
    webhook_timeout: float = Field(
        default=10.0,
        gt=0,
        le=120,
        description="How long a webhook endpoint, or the API for services, may take to answer (s).",
    )

    @field_validator("database_url")
    @classmethod
    def _postgres_only(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        scheme = urlsplit(value).scheme
        if scheme not in ("postgresql", "postgres"):
            raise ValueError("must be a postgresql://user:password@host:port/dbname URL")
        PostgresLocation.parse(value)  # a URL without a user, a host or a database stops here
        return value

    @model_validator(mode="after")
    def _identity_provider(self) -> Settings:
        if self.jwks_url is not None and self.jwks_file is not None:
            raise ValueError("set jwks_url or jwks_file, not both")
        if self.uses_jwks and (not self.jwt_issuer or not self.jwt_audience):
            raise ValueError("a JWKS needs jwt_issuer and jwt_audience to check tokens against")
        return self

    @property
    def uses_jwks(self) -> bool:
        return self.jwks_url is not None or self.jwks_file is not None

    @property
    def uses_postgres(self) -> bool:
        return self.database_url is not None

    @cached_property
    def postgres(self) -> PostgresLocation:
        if self.database_url is None:
            raise RuntimeError("PostgreSQL is not configured (set DATABASE_URL)")
        return PostgresLocation.parse(self.database_url)

    def api_base_url(self) -> str:
        """Where services reach the public API: configured, or this process's own listener."""
        if self.service_api_url:
            return self.service_api_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host  # noqa: S104
        if ":" in host:
            host = f"[{host}]"  # an IPv6 literal
        return f"http://{host}:{self.port}"

    def resolved_jwt_secret(self) -> str:
        """The configured secret, or (embedded default) one generated once and kept in data_dir.

        With PostgreSQL (a shared deployment) the secret must be configured, long and not a
        placeholder: InsecureConfiguration otherwise.
        """
        if self.uses_postgres:
            return _strong(self.jwt_secret)
        if self.jwt_secret is not None:
            return self.jwt_secret.get_secret_value()
        path = self.data_dir / _SECRET_FILE
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            # Create with 0600 so the key is never readable by other accounts.
            with path.open("x", encoding="ascii") as handle:
                path.chmod(0o600)
                handle.write(secrets.token_urlsafe(48))
        return path.read_text(encoding="ascii").strip()


def _strong(secret: SecretStr | None) -> str:
    if secret is None:
        raise InsecureConfiguration("GOVERNANCE_JWT_SECRET must be set when PostgreSQL is used")
    value = secret.get_secret_value()
    folded = value.strip().lower()
    if folded in _PLACEHOLDER_SECRETS or any(mark in folded for mark in _PLACEHOLDER_MARKS):
        raise InsecureConfiguration("GOVERNANCE_JWT_SECRET is a placeholder; set a random one")
    if len(value) < _MIN_SECRET_LENGTH:
        raise InsecureConfiguration(
            f"GOVERNANCE_JWT_SECRET must be at least {_MIN_SECRET_LENGTH} characters long"
        )
    return value


class PostgresLocation:
    """The parts of DATABASE_URL, as the event store's environment wants them."""

    def __init__(self, host: str, port: int, dbname: str, user: str, password: str) -> None:
        self.host = host
        self.port = port
        self.dbname = dbname
        self.user = user
        self.password = password

    @classmethod
    def parse(cls, url: str) -> PostgresLocation:
        parts = urlsplit(url)
        dbname = unquote(parts.path.lstrip("/"))
        if not parts.hostname or not dbname or not parts.username:
            raise ValueError("DATABASE_URL must name a user, a host and a database")
        return cls(
            host=parts.hostname,
            port=parts.port or 5432,
            dbname=dbname,
            user=unquote(parts.username),
            password=unquote(parts.password or ""),
        )

"""The one settings class. Every process reads it once, at its composition root."""

from __future__ import annotations

import secrets
from functools import cached_property
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_SECRET_FILE = "jwt-secret"  # noqa: S105 - a file name, not a secret


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
        description="Port where a worker (`governance project`) serves /metrics; 0: none."
        " The API serves /metrics on its own port.",
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

    @property
    def uses_postgres(self) -> bool:
        return self.database_url is not None

    @cached_property
    def postgres(self) -> PostgresLocation:
        if self.database_url is None:
            raise RuntimeError("PostgreSQL is not configured (set DATABASE_URL)")
        return PostgresLocation.parse(self.database_url)

    def resolved_jwt_secret(self) -> str:
        """The configured secret, or (embedded default) one generated once and kept in data_dir."""
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

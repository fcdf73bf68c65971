"""Request and response bodies of the webhook endpoints API. Secrets are write-only."""

from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from governance.api.schemas import TEXT_PATTERN
from governance.published import CLOUDEVENT_TYPE_PREFIX, EVENT_TYPES

KNOWN_TYPES = sorted(CLOUDEVENT_TYPE_PREFIX + suffix for _, suffix in EVENT_TYPES.values())


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: Annotated[
        str,
        Field(
            min_length=1, max_length=2000, pattern=r"^[!-~]+$", description="http:// or https://"
        ),
    ]
    event_types: Annotated[
        list[str],
        Field(min_length=1, max_length=50, description="CloudEvents types to deliver"),
    ]
    secret: Annotated[
        str,
        Field(
            min_length=16,
            max_length=256,
            pattern=TEXT_PATTERN,
            description="Key of the X-Governance-Signature HMAC-SHA256; never shown again",
        ),
    ]
    description: Annotated[str | None, Field(max_length=200, pattern=TEXT_PATTERN)] = None

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise ValueError("must be an http:// or https:// URL")
        if not parts.hostname:
            raise ValueError("must name a host, e.g. https://hooks.example.com/governance")
        if parts.username or parts.password:
            raise ValueError("must not hold credentials: the signature authenticates deliveries")
        return url

    @field_validator("event_types")
    @classmethod
    def _known_types(cls, types: list[str]) -> list[str]:
        unknown = sorted(set(types) - set(KNOWN_TYPES))
        if unknown:
            raise ValueError(
                f"unknown event type {', '.join(unknown)}; known: {', '.join(KNOWN_TYPES)}"
            )
        return sorted(set(types))


class WebhookPublic(BaseModel):
    id: str
    org_id: str
    url: str
    event_types: list[str]
    description: str | None
    created_at: datetime
    created_by: str


class WebhookList(BaseModel):
    webhooks: list[WebhookPublic]


class DeadLetterPublic(BaseModel):
    delivery_id: str
    event_id: str
    event_type: str
    position: int
    attempts: int
    last_status: int | None
    last_error: str | None
    failed_at: datetime
    event: dict[str, Any]


class DeadLetterList(BaseModel):
    webhook_id: str
    dead_letters: list[DeadLetterPublic]

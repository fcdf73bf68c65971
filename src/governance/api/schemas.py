"""Request and response bodies, one schema per use. Unknown fields are refused."""

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

# Identifiers appear in URLs, logs and Kafka keys: keep them to a safe alphabet.
Identifier = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")]
Reason = Annotated[str, Field(max_length=500)]


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SiteRegistration(Request):
    name: Annotated[str, Field(min_length=1, max_length=200)]


class SitePublic(BaseModel):
    site_id: str
    org_id: str
    name: str


class SiteSummary(BaseModel):
    site_id: str
    name: str
    user_installs: Literal["allowed", "blocked"]


class SiteList(BaseModel):
    sites: list[SiteSummary]


class UserInstallsChange(Request):
    state: Literal["blocked", "allowed"]
    reason: Reason | None = None


class PolicyPublic(BaseModel):
    site_id: str
    org_id: str
    user_installs: Literal["allowed", "blocked"]
    version: int
    updated_at: datetime
    updated_by: str
    reason: str | None


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail

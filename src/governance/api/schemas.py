"""Request and response bodies, one schema per use. Unknown fields are refused."""

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from governance.audit.trail import AuditRecord

# Free text is stored in events and views and shown to people: no control characters (PostgreSQL
# refuses NUL outright), and lone surrogates are refused by pydantic itself.
TEXT_PATTERN = r"^[^\x00-\x1f\x7f]*$"
Reason = Annotated[str, Field(max_length=500, pattern=TEXT_PATTERN)]


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SiteRegistration(Request):
    name: Annotated[str, Field(min_length=1, max_length=200, pattern=TEXT_PATTERN)]


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
    existing_user_installs: Literal["keep", "remove"] = Field(
        default="keep",
        description="On a block: keep the apps users installed before it (the default, as in the"
        " reference product) or remove them all (done by the enforce-block reaction).",
    )


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


# Identifiers appear in URLs, logs and Kafka keys: keep them to a safe alphabet.
AppId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")]
Scope = Annotated[str, Field(min_length=1, max_length=200, pattern=TEXT_PATTERN)]


class InstallRequest(Request):
    app_id: AppId
    app_name: Annotated[str, Field(min_length=1, max_length=200, pattern=TEXT_PATTERN)]
    scopes: Annotated[list[Scope], Field(max_length=100)] = []


class InstallationPublic(BaseModel):
    site_id: str
    app_id: str
    account_id: str
    installed_by: Literal["user", "admin"]
    installed_at: datetime | None


class ConsentDecision(BaseModel):
    decision: Literal["allow", "deny"]
    reason: str
    message: str | None
    policy_version: int
    can_request: bool = Field(
        default=False, description="Whether the caller may ask an admin for the app"
    )


class ConnectedAppPublic(BaseModel):
    app_id: str
    app_name: str
    installed_by: Literal["Users", "Admins"]
    user_count: int
    scopes: list[str]
    installed_at: datetime
    last_installed_at: datetime


class ConnectedAppList(BaseModel):
    site_id: str
    apps: list[ConnectedAppPublic]


class HistoryEntryPublic(BaseModel):
    position: int
    occurred_at: datetime
    type: str
    actor: str
    summary: str
    reason: str | None
    app_id: str | None
    account_id: str | None
    policy_version: int | None
    request_id: str | None
    on_behalf_of: str | None


class HistoryPage(BaseModel):
    site_id: str
    events: list[HistoryEntryPublic]
    next_after: int | None


class AuditPage(BaseModel):
    # The trail's own record (a dataclass, which pydantic reads as it is): the API and the
    # export give exactly the same fields.
    events: list[AuditRecord]
    next_after: int | None


class ChainProblem(BaseModel):
    # Position and kind only when the position holds an event of the caller's organization:
    # the chain is global, and its positions would measure other organizations' activity.
    in_your_organization: bool
    position: int | None
    kind: Literal["edited", "deleted", "inserted", "reordered", "truncated", "rewritten"] | None
    message: str


class ChainVerification(BaseModel):
    intact: bool
    problem: ChainProblem | None
    scope: str

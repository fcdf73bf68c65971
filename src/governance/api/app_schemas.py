"""Bodies of the app-list and app-request routes, one schema per use. Unknown fields are refused."""

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from governance.api.schemas import TEXT_PATTERN, AppId, Reason, Request, Scope

AppName = Annotated[str, Field(min_length=1, max_length=200, pattern=TEXT_PATTERN)]
Scopes = Annotated[list[Scope], Field(max_length=100)]
RequiredReason = Annotated[str, Field(min_length=1, max_length=500, pattern=TEXT_PATTERN)]
ExistingInstalls = Literal["keep", "remove"]

_EXISTING = (
    "What becomes of the grants of the app already on the site: keep them (the default) or"
    " remove them for everyone, in the same transaction as the block."
)


class AppApproval(Request):
    status: Literal["approved"]
    app_name: AppName | None = Field(default=None, description="Defaults to the name known")
    scopes: Scopes = Field(default=[], description="Users may install it with these at most")
    reason: Reason | None = None


class AppBlock(Request):
    status: Literal["blocked"]
    app_name: AppName | None = Field(default=None, description="Defaults to the name known")
    reason: Reason | None = None
    existing_installs: ExistingInstalls = Field(default="keep", description=_EXISTING)


AppListingChange = Annotated[AppApproval | AppBlock, Field(discriminator="status")]


class AppListingPublic(BaseModel):
    site_id: str
    app_id: str
    status: Literal["approved", "blocked", "none"]
    app_name: str | None
    scopes: list[str]
    reason: str | None
    updated_by: str | None
    updated_at: datetime | None
    case_id: str | None = Field(description="The request case whose decision put it there")


class AppListsPublic(BaseModel):
    site_id: str
    apps: list[AppListingPublic]


class AppRequestCreate(Request):
    app_id: AppId
    app_name: AppName
    scopes: Scopes = Field(default_factory=list)
    justification: Annotated[str, Field(min_length=1, max_length=1000, pattern=TEXT_PATTERN)]


class AppRequestCreated(BaseModel):
    """The caller's request, and the case it opened or joined."""

    case_id: str
    site_id: str
    app_id: str
    app_name: str
    status: Literal["open"]
    scopes: list[str] = Field(description="Every scope the caller asked for in this case")
    requester_count: int


class CaseApproval(Request):
    scopes: Scopes | None = Field(
        default=None, description="At most the requested ones; default: all requested"
    )
    reason: Reason | None = None


class CaseDenial(Request):
    reason: RequiredReason


class CaseBlock(Request):
    reason: RequiredReason
    existing_installs: ExistingInstalls = Field(default="keep", description=_EXISTING)


CaseStatusName = Literal["open", "approved", "denied", "blocked", "cancelled", "expired"]


class AppRequestCasePublic(BaseModel):
    case_id: str
    site_id: str
    app_id: str
    app_name: str
    status: CaseStatusName
    requester_count: int
    scopes: list[str] = Field(description="The union of the scopes its requesters ask for")
    approved_scopes: list[str]
    opened_at: datetime | None
    expires_at: datetime | None = Field(
        default=None, description="When an open case expires undecided"
    )
    closed_at: datetime | None
    decided_by: str | None
    reason: str | None


class RequesterPublic(BaseModel):
    account_id: str
    scopes: list[str]
    justification: str
    requested_at: datetime
    status: CaseStatusName


class AppRequestCaseDetail(AppRequestCasePublic):
    requesters: list[RequesterPublic]


class AppRequestCaseList(BaseModel):
    site_id: str
    cases: list[AppRequestCasePublic]


class OwnAppRequestPublic(BaseModel):
    case_id: str
    site_id: str
    app_id: str
    app_name: str
    status: CaseStatusName
    scopes: list[str]
    justification: str
    requested_at: datetime
    closed_at: datetime | None
    decided_by: str | None
    reason: str | None
    approved_scopes: list[str]


class OwnAppRequestList(BaseModel):
    account_id: str
    requests: list[OwnAppRequestPublic]

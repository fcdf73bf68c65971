"""The consent screen an end user sees before an app gets access to a site."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from governance.api.deps import Governance, Views
from governance.api.errors import ApiError
from governance.api.params import SiteIdQuery
from governance.api.schemas import TEXT_PATTERN, InstallRequest
from governance.api.usecases import consent_for, install_for, request_app_for
from governance.web.pages import PageActor, PagePrincipal, PageRoute, redirect, render

router = APIRouter(route_class=PageRoute)


@dataclass(frozen=True)
class ConsentRequest:
    """What the app asks for, as the link to this page says (validated like an API install)."""

    site_id: str
    app: InstallRequest

    def url(self, path: str = "/consent", **extra: str | int) -> str:
        query = {
            "site_id": self.site_id,
            "app_id": self.app.app_id,
            "app_name": self.app.app_name,
            "scopes": " ".join(self.app.scopes),
        }
        return path + "?" + urlencode(query | extra)


def consent_request(
    site_id: SiteIdQuery,
    app_id: Annotated[str, Query()],
    app_name: Annotated[str, Query()],
    scopes: Annotated[str, Query(max_length=20_000, description="Space-separated")] = "",
) -> ConsentRequest:
    fields = {"app_id": app_id, "app_name": app_name, "scopes": scopes.split()}
    try:
        app = InstallRequest.model_validate(fields)
    except ValidationError as error:
        raise RequestValidationError(error.errors()) from None
    return ConsentRequest(site_id, app)


Asked = Annotated[ConsentRequest, Depends(consent_request)]


@router.get("/consent")
def consent_screen(
    request: Request, principal: PagePrincipal, asked: Asked, views: Views
) -> Response:
    with views.read() as tx:
        consent = consent_for(tx, principal, asked.site_id, asked.app.app_id, asked.app.scopes)
    return render(
        request,
        "consent.html",
        principal=principal,
        asked=asked,
        consent=consent,
        action=asked.url(),
        request_action=asked.url("/consent/request"),
    )


@router.post("/consent")
def answer(
    principal: PagePrincipal,
    by: PageActor,
    asked: Asked,
    governance: Governance,
    decision: Annotated[Literal["accept", "cancel"], Form()],
) -> Response:
    if decision == "cancel":
        return redirect("/consent/cancelled?" + urlencode({"app_name": asked.app.app_name}))
    app = asked.app
    outcome = install_for(
        governance, principal, by, asked.site_id, app.app_id, app.app_name, app.scopes
    )
    # Refused or not, the screen after the click reads the views as of this command.
    return redirect(asked.url(min_position=outcome.position))


@router.post("/consent/request")
def request_access(
    principal: PagePrincipal,
    by: PageActor,
    asked: Asked,
    governance: Governance,
    justification: Annotated[str, Form(max_length=1000, pattern=TEXT_PATTERN)] = "",
) -> Response:
    """Ask the site's admins for the app instead of installing it (when the rule allows that)."""
    if not justification.strip():
        raise ApiError(422, "invalid_request", "justification: say why you need the app")
    app = asked.app
    result, _ = request_app_for(
        governance,
        principal,
        by,
        asked.site_id,
        app.app_id,
        app.app_name,
        app.scopes,
        justification.strip(),
    )
    # The screen now reads the views as of the request: it says the request is pending.
    return redirect(asked.url(min_position=result.position))


@router.get("/consent/cancelled")
def cancelled(
    request: Request,
    principal: PagePrincipal,
    app_name: Annotated[str, Query(max_length=200)] = "the app",
) -> Response:
    return render(request, "cancelled.html", principal=principal, app_name=app_name)

"""The consent screen an end user sees before an app gets access to a site."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from governance.api.deps import Governance, Views
from governance.api.params import SiteIdQuery
from governance.api.schemas import InstallRequest
from governance.api.usecases import consent_for, install_for
from governance.web.pages import PageActor, PagePrincipal, PageRoute, redirect, render

router = APIRouter(route_class=PageRoute)


@dataclass(frozen=True)
class ConsentRequest:
    """What the app asks for, as the link to this page says (validated like an API install)."""

    site_id: str
    app: InstallRequest

    def url(self, **extra: str | int) -> str:
        query = {
            "site_id": self.site_id,
            "app_id": self.app.app_id,
            "app_name": self.app.app_name,
            "scopes": " ".join(self.app.scopes),
        }
        return "/consent?" + urlencode(query | extra)


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
        consent = consent_for(tx, principal, asked.site_id, asked.app.app_id)
    return render(
        request,
        "consent.html",
        principal=principal,
        asked=asked,
        consent=consent,
        action=asked.url(),
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


@router.get("/consent/cancelled")
def cancelled(
    request: Request,
    principal: PagePrincipal,
    app_name: Annotated[str, Query(max_length=200)] = "the app",
) -> Response:
    return render(request, "cancelled.html", principal=principal, app_name=app_name)

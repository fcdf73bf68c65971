"""Signing in with a bearer token, kept in an HttpOnly cookie, and signing out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request, Response

from governance.api.deps import RuntimeDep
from governance.auth import InvalidToken, Role
from governance.web.pages import (
    SESSION_COOKIE,
    PagePrincipal,
    PageRoute,
    clear_cookie,
    local_path,
    redirect,
    render,
    set_cookie,
    signin_url,
)

router = APIRouter(route_class=PageRoute)

_TOKEN_LIMIT = 8192


@router.get("/signin")
def signin_form(
    request: Request,
    next_path: Annotated[str | None, Query(alias="next", max_length=2000)] = None,
    expired: bool = False,
    signed_out: bool = False,
) -> Response:
    notice = None
    if expired:
        notice = "Your session has ended. Sign in again to continue."
    elif signed_out:
        notice = "You have signed out."
    return render(request, "signin.html", next_path=local_path(next_path), notice=notice)


@router.post("/signin")
def signin(
    request: Request,
    runtime: RuntimeDep,
    token: Annotated[str, Form(max_length=_TOKEN_LIMIT)] = "",
    next_path: Annotated[str | None, Form(alias="next", max_length=2000)] = None,
) -> Response:
    destination = local_path(next_path)
    try:
        runtime.tokens.verify(token.strip())
    except InvalidToken as error:
        message = f"That token was not accepted ({error}). Paste a current bearer token."
        return render(
            request, "signin.html", 401, next_path=destination, error=message, token_invalid=True
        )
    response = redirect(destination or "/")
    set_cookie(request, response, SESSION_COOKIE, token.strip())
    return response


@router.post("/signout")
def signout(request: Request) -> Response:
    response = redirect(signin_url(signed_out="1"))
    clear_cookie(request, response, SESSION_COOKIE)
    return response


@router.get("/")
def home(request: Request, principal: PagePrincipal) -> Response:
    """Admins and auditors go to their sites; an end user meets this backend on consent screens."""
    if principal.has(Role.ORG_ADMIN, Role.SITE_ADMIN, Role.AUDITOR):
        return redirect("/admin/sites")
    return render(request, "home.html", principal=principal)

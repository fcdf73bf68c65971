"""What every page shares: templates, the session cookie, CSRF tokens, and errors as HTML.

Pages answer errors with the API's own mapping (the app's exception handlers decide the status and
the message), rendered as a page instead of JSON, so the two never disagree.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

from fastapi import Depends, Request, Response
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from starlette.responses import JSONResponse

from governance.api.deps import RuntimeDep
from governance.auth import InvalidToken, Principal
from governance.domain.actor import Actor

SESSION_COOKIE = "governance_session"
NONCE_COOKIE = "governance_csrf"
CSRF_FIELD = "csrf_token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_HEADERS = {
    # Consent screens are the classic target of clickjacking: never render inside a frame.
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self';"
    " form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
_TITLES = {
    400: "Bad request",
    401: "Sign-in required",
    403: "Not allowed",
    404: "Not found",
    409: "Conflict",
    412: "Changed in the meantime",
    422: "Check what you entered",
    503: "Try again shortly",
}

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")


def _when(moment: datetime | None) -> str:
    return moment.strftime("%d %b %Y, %H:%M UTC") if moment else ""


def _words(type_name: str) -> str:
    """An event type as words: "UserInstallsBlocked" -> "User installs blocked"."""
    spaced = re.sub(r"(?<!^)(?=[A-Z])", " ", type_name)
    return spaced[:1] + spaced[1:].lower()


templates.env.filters["when"] = _when
templates.env.filters["words"] = _words


class SignInRequired(Exception):
    """No valid session: the browser is sent to the sign-in form, then back."""

    def __init__(self, next_path: str | None, *, expired: bool = False) -> None:
        super().__init__("sign-in required")
        self.next_path = next_path
        self.expired = expired


class CsrfRejected(Exception):
    """A form came back without the token this browser was given."""


def local_path(candidate: str | None) -> str | None:
    """`candidate` if it is a path on this server (never another host), else None."""
    if not candidate or not candidate.startswith("/") or candidate.startswith(("//", "/\\")):
        return None
    parts = urlsplit(candidate)
    if parts.scheme or parts.netloc or any(c in candidate for c in "\\\r\n\t"):
        return None
    return candidate


def signin_url(next_path: str | None = None, **flags: str) -> str:
    query = {"next": next_path} if next_path else {}
    return "/signin" + (("?" + urlencode(query | flags)) if query or flags else "")


def page_principal(request: Request, runtime: RuntimeDep) -> Principal:
    """The signed-in caller, from the session cookie, verified like any bearer token."""
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    next_path = here if request.method in _SAFE_METHODS else None
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise SignInRequired(next_path)
    try:
        return runtime.tokens.verify(token)
    except InvalidToken:
        raise SignInRequired(next_path, expired=True) from None


PagePrincipal = Annotated[Principal, Depends(page_principal)]


def page_actor(principal: PagePrincipal, request: Request) -> Actor:
    return Actor(principal.account_id, request_id=request.state.request_id)


PageActor = Annotated[Actor, Depends(page_actor)]


def _csrf_key(request: Request) -> bytes:
    runtime = request.app.state.runtime
    secret: str = runtime.settings.resolved_jwt_secret()
    # A key of its own, derived from the token secret: a CSRF token is never a valid signature.
    return hmac.new(secret.encode(), b"governance web csrf", hashlib.sha256).digest()


def _nonce(request: Request) -> str:
    """This browser's CSRF nonce: from its cookie, or a new one the response will set."""
    nonce = request.cookies.get(NONCE_COOKIE) or getattr(request.state, "new_nonce", None)
    if nonce is None:
        nonce = request.state.new_nonce = secrets.token_urlsafe(32)
    return str(nonce)


def csrf_token(request: Request) -> str:
    """Bound to the browser's nonce and to its session, so it changes with each sign-in."""
    session = request.cookies.get(SESSION_COOKIE, "")
    message = f"{_nonce(request)}|{session}".encode()
    return hmac.new(_csrf_key(request), message, hashlib.sha256).hexdigest()


async def check_csrf(request: Request) -> None:
    if NONCE_COOKIE not in request.cookies:
        raise CsrfRejected
    form = await request.form()
    given = form.get(CSRF_FIELD)
    if not isinstance(given, str) or not hmac.compare_digest(given, csrf_token(request)):
        raise CsrfRejected


def render(
    request: Request,
    template: str,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
    **context: Any,
) -> Response:
    context.setdefault("principal", None)
    context["csrf_token"] = csrf_token(request)
    return templates.TemplateResponse(
        request, template, context, status_code=status_code, headers=dict(headers or {})
    )


def error_page(
    request: Request,
    status: int,
    message: str,
    headers: Mapping[str, str] | None = None,
) -> Response:
    title = _TITLES.get(status, "Something went wrong")
    return render(request, "error.html", status, headers, title=title, message=message)


def redirect(url: str) -> RedirectResponse:
    """Post/Redirect/Get: after a command the browser loads the page that shows its effect."""
    return RedirectResponse(url, status_code=303)


class PageRoute(APIRoute):
    """A route that answers in HTML: CSRF checked on every unsafe method, errors as pages."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        inner = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                if request.method not in _SAFE_METHODS:
                    await check_csrf(request)
                response = await inner(request)
            except SignInRequired as exc:
                flags = {"expired": "1"} if exc.expired else {}
                response = redirect(signin_url(exc.next_path, **flags))
            except CsrfRejected:
                message = "This form has expired or did not come from this site. Reload the page"
                response = error_page(request, 403, message + " and try again.")
            except Exception as exc:  # noqa: BLE001 - handed to the app's one error mapping
                response = await _as_page(request, exc)
            _finish(request, response)
            return response

        return handler


async def _as_page(request: Request, exc: Exception) -> Response:
    """The API's answer to `exc` (status, message, headers), rendered as a page."""
    handler = _handler_for(request, exc)
    if handler is None:
        raise exc
    answer = await handler(request, exc)
    if not isinstance(answer, JSONResponse):
        return answer
    error = json.loads(bytes(answer.body))["error"]
    headers = {k: v for k, v in answer.headers.items() if k.lower() == "retry-after"}
    return error_page(request, answer.status_code, _sentence(error["message"]), headers)


_Handler = Callable[[Request, Exception], Awaitable[Response]]


def _handler_for(request: Request, exc: Exception) -> _Handler | None:
    handlers = request.app.exception_handlers
    for kind in type(exc).__mro__:
        if kind in handlers:
            handler: _Handler = handlers[kind]
            return handler
    return None


def _sentence(message: str) -> str:
    if not re.match(r"[\w.]+:", message):  # keep a leading field name as the API spells it
        message = message[:1].upper() + message[1:]
    return message if message.endswith((".", "?", "!")) else message + "."


def _finish(request: Request, response: Response) -> None:
    for name, value in _HEADERS.items():
        response.headers.setdefault(name, value)
    new_nonce = getattr(request.state, "new_nonce", None)
    if new_nonce is not None and NONCE_COOKIE not in request.cookies:
        set_cookie(request, response, NONCE_COOKIE, new_nonce)


def set_cookie(request: Request, response: Response, name: str, value: str) -> None:
    """HttpOnly and SameSite=Lax always; Secure whenever the page came over HTTPS.

    Lax, not Strict: an app sends its user to the consent screen from another site, and that
    top-level GET must carry the session. Cross-site POSTs still carry no cookie, and every
    POST needs the CSRF token besides.
    """
    response.set_cookie(
        name,
        value,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/",
    )


def clear_cookie(request: Request, response: Response, name: str) -> None:
    response.delete_cookie(
        name, path="/", httponly=True, samesite="lax", secure=request.url.scheme == "https"
    )

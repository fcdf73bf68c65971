"""Every error leaves the API in one shape: {"error": {"code": ..., "message": ...}}.

Errors map to HTTP here and nowhere else.
"""

from collections.abc import Mapping
from typing import Any

import psycopg
import psycopg_pool
from eventsourcing.persistence import IntegrityError, InterfaceError, OperationalError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from governance.api.schemas import TEXT_PATTERN
from governance.auth import InvalidToken, KeysUnavailable
from governance.domain.errors import (
    AppIsBlocked,
    AppNotConnected,
    CaseNotFound,
    DomainError,
    GrantNotFound,
    RequestNotFound,
    ScopesNotRequested,
    SiteIdTaken,
    SiteNotFound,
    StalePolicyVersion,
)
from governance.outage import DatabaseUnavailable


class ApiError(Exception):
    """An error the HTTP layer raises itself (permissions, preconditions, read-model lag)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
        self.extra = extra


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"{what} was not found")


def forbidden(message: str) -> ApiError:
    return ApiError(403, "forbidden", message)


_DOMAIN_STATUS: dict[type[DomainError], int] = {
    SiteNotFound: 404,
    GrantNotFound: 404,
    AppNotConnected: 404,
    SiteIdTaken: 409,
    StalePolicyVersion: 412,
    AppIsBlocked: 403,
    CaseNotFound: 404,
    RequestNotFound: 404,
    ScopesNotRequested: 422,
}


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


def _respond(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None, **extra: Any
) -> JSONResponse:
    return JSONResponse(error_body(code, message, **extra), status_code=status, headers=headers)


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return _respond(exc.status, exc.code, exc.message, exc.headers, **exc.extra)


async def _domain_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    if isinstance(exc, SiteNotFound):
        # The same answer as for a site of another organization: no tenant learns of another.
        return _respond(404, "not_found", "site was not found")
    return _respond(_DOMAIN_STATUS.get(type(exc), 409), exc.code, str(exc))


async def _invalid_token(_: Request, exc: Exception) -> JSONResponse:
    return _respond(
        401,
        "invalid_token",
        f"a valid bearer token is required: {exc}",
        {"WWW-Authenticate": "Bearer"},
    )


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = [_describe(error) for error in exc.errors()]
    return _respond(
        422, "invalid_request", "; ".join(p["message"] for p in problems), details=problems
    )


def _describe(error: Any) -> dict[str, str]:
    location = [str(part) for part in error.get("loc", ()) if part != "body"]
    field = ".".join(location) or "body"
    if error.get("type") == "json_invalid":
        return {"field": "body", "message": "the body is not valid JSON"}
    if error.get("type") == "extra_forbidden":
        return {"field": field, "message": f"{field}: unknown field, remove it"}
    if error.get("ctx", {}).get("pattern") == TEXT_PATTERN:
        return {"field": field, "message": f"{field}: control characters are not allowed"}
    return {"field": field, "message": f"{field}: {error.get('msg', 'invalid value')}"}


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return _respond(exc.status_code, code, str(exc.detail), exc.headers)


async def _conflict(_: Request, exc: Exception) -> JSONResponse:
    return _respond(409, "concurrent_write", "another change was saved at the same time; retry")


async def _unavailable(_: Request, exc: Exception) -> JSONResponse:
    # Never the driver's message: it may name hosts and users; the log has the detail.
    retry_after = exc.retry_after if isinstance(exc, DatabaseUnavailable) else 1
    return _respond(
        503,
        "unavailable",
        "the database is not reachable right now; retry shortly",
        {"Retry-After": str(int(retry_after))},
    )


async def _keys_unavailable(_: Request, exc: Exception) -> JSONResponse:
    return _respond(
        503,
        "identity_provider_unavailable",
        "the identity provider's signing keys cannot be fetched right now; retry shortly",
        {"Retry-After": "5"},
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(InvalidToken, _invalid_token)
    app.add_exception_handler(KeysUnavailable, _keys_unavailable)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(IntegrityError, _conflict)
    for outage in (
        DatabaseUnavailable,
        OperationalError,
        InterfaceError,
        psycopg.OperationalError,
        psycopg_pool.PoolTimeout,
    ):
        app.add_exception_handler(outage, _unavailable)

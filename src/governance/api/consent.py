"""The consent screen's question, answered from memory kept current from the read models.

The same checks and rule as `usecases.consent_for` (which the web page uses): a missing or
foreign site is a 404, a caller who may not install on the site a 403, then `decide`. Only the
reading differs: `Runtime.consent_inputs` serves the rows from memory while the views have not
moved, so a repeated question costs no I/O and no worker thread. A miss, and a `min_position`
the views have not been seen to reach, wait in a worker thread; the event loop never blocks.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal
from urllib.parse import parse_qsl

from anyio import to_thread
from fastapi.security.utils import get_authorization_scheme_param
from starlette.types import ASGIApp, Receive, Scope, Send

from governance.api.access import installer_role, same_org
from governance.api.deps import reach_position
from governance.api.errors import ApiError
from governance.api.schemas import ConsentDecision
from governance.auth import Principal
from governance.domain.consent import Decision, decide
from governance.domain.grant import InstalledBy
from governance.domain.site import AppList, UserInstalls
from governance.eventstore import MAX_POSITION
from governance.runtime import Runtime
from projections.consent_inputs import ConsentInputs


async def consent_body(
    runtime: Runtime,
    principal: Principal,
    site_id: str,
    app_id: str,
    scopes: Sequence[str],
    min_position: int | None,
) -> bytes:
    """The decision for the caller, as the JSON body of the answer."""
    cache = runtime.consent_inputs
    if min_position is not None and min_position > cache.position:
        await to_thread.run_sync(_catch_up, runtime, min_position)
    account = principal.account_id
    inputs = cache.cached(site_id, app_id, account)
    if inputs is None:
        inputs = await to_thread.run_sync(cache.load, site_id, app_id, account)
    policy = inputs.policy
    org_id = same_org(principal, policy.org_id if policy else None)
    assert policy is not None
    verdict = _decide(inputs, installer_role(principal, org_id, site_id), scopes)
    decision: Literal["allow", "deny"] = "allow" if verdict.allowed else "deny"
    runtime.metrics.consent_decided(decision, verdict.reason.value)
    return _body(verdict, policy.version)


def _catch_up(runtime: Runtime, min_position: int) -> None:
    reach_position(runtime, min_position)
    runtime.consent_inputs.observe()  # so the entries served next are at least that new


def _decide(inputs: ConsentInputs, role: InstalledBy, scopes: Sequence[str]) -> Decision:
    """`decide`, as `usecases.consent_for` calls it, on the inputs held in memory."""
    assert inputs.policy is not None
    listed = inputs.listed
    granted = inputs.granted_scopes
    return decide(
        UserInstalls(inputs.policy.user_installs),
        role,
        scopes=scopes,
        granted=granted is not None and granted.issuperset(scopes),
        listed=AppList(listed.status) if listed else None,
        approved_scopes=listed.scopes if listed else [],
        pending_scopes=inputs.pending_scopes,
    )


@lru_cache(maxsize=1024)
def _body(verdict: Decision, policy_version: int) -> bytes:
    """Serialised once per distinct answer (a handful of reasons times the policy versions)."""
    return (
        ConsentDecision(
            decision="allow" if verdict.allowed else "deny",
            reason=verdict.reason.value,
            message=verdict.message,
            policy_version=policy_version,
            can_request=verdict.can_request,
        )
        .model_dump_json()
        .encode()
    )


@dataclass(frozen=True)
class _RouteLabel:
    """Where the route's template is read from (`scope["route"].path`) for metrics and logs."""

    path: str


_ROUTE = _RouteLabel("/v1/sites/{site_id}/consent")
_PATH = re.compile(r"/v1/sites/([A-Za-z0-9._:-]{1,128})/consent")
_APP_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_POSITION = re.compile(r"0|[1-9][0-9]{0,18}")
_MAX_SCOPES, _MAX_SCOPE = 100, 200  # as `ScopesQuery` declares
_HEADERS = (b"content-type", b"application/json")


class ConsentFastPath:
    """Answers a consent question again from memory, before FastAPI's routing and dependencies.

    A pure ASGI middleware, innermost, so the request id, metrics, access log and limits stay as
    they are. It answers only what the route would answer 200 from the same inputs in memory: a
    valid query, a token verified lately, a visible site, a caller who may install there, inputs
    current, no `min_position` beyond what the views were seen at. Anything else, and every
    first question, goes on to the route, which checks, waits, reads and fills the caches. The
    route's dependencies cost several times the decision (measured: see BENCHMARKS.md).
    """

    def __init__(self, app: ASGIApp, runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and not scope.get("root_path"):
            match = _PATH.fullmatch(scope["path"])
            body = self._answer(scope, match.group(1)) if match else None
            if body is not None:
                start = [(b"content-length", str(len(body)).encode()), _HEADERS]
                await send({"type": "http.response.start", "status": 200, "headers": start})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)

    def _answer(self, scope: Scope, site_id: str) -> bytes | None:
        """The body the route would send, or None to let the route answer."""
        query = _query(scope.get("query_string", b""))
        token = _bearer(scope)
        if query is None or token is None:
            return None
        principal = self.runtime.tokens.verified_already(token)
        cache = self.runtime.consent_inputs
        app_id, scopes, min_position = query
        if principal is None or (min_position is not None and min_position > cache.position):
            return None
        inputs = cache.cached(site_id, app_id, principal.account_id)
        if inputs is None or inputs.policy is None or inputs.policy.org_id != principal.org_id:
            return None
        try:
            role = installer_role(principal, inputs.policy.org_id, site_id)
        except ApiError:
            return None
        verdict = _decide(inputs, role, scopes)
        self.runtime.metrics.consent_decided(
            "allow" if verdict.allowed else "deny", verdict.reason.value
        )
        # What routing and `authenticate` would have left for the metrics and the access log.
        scope["route"] = _ROUTE
        scope["path_params"] = {"site_id": site_id}
        scope.setdefault("state", {})["account_id"] = principal.account_id
        return _body(verdict, inputs.policy.version)


def _query(raw: bytes) -> tuple[str, list[str], int | None] | None:
    """(app_id, scopes, min_position) when the route would accept them all; else None.

    Parsed as Starlette parses it; a repeated, unknown or doubtful parameter is left to the route.
    """
    app_id: str | None = None
    scopes: list[str] = []
    position: int | None = None
    for key, value in parse_qsl(raw.decode("latin-1"), keep_blank_values=True):
        if key == "app_id" and app_id is None and _APP_ID.fullmatch(value):
            app_id = value
        elif key == "scopes" and 0 < len(value) <= _MAX_SCOPE and len(scopes) < _MAX_SCOPES:
            scopes.append(value)
        elif key == "min_position" and position is None and _POSITION.fullmatch(value):
            position = int(value)
            if position > MAX_POSITION:
                return None
        else:
            return None
    return (app_id, scopes, position) if app_id is not None else None


def _bearer(scope: Scope) -> str | None:
    """The bearer token as FastAPI's HTTPBearer reads it (the first Authorization header)."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, credentials = get_authorization_scheme_param(value.decode("latin-1"))
            return credentials if scheme.lower() == "bearer" and credentials else None
    return None

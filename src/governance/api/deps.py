"""Dependencies the routes declare; tests override them through `app.dependency_overrides`.

Those that never wait on I/O are `async def`: FastAPI runs a plain `def` dependency in its thread
pool, a hop that cost more than the work itself on the consent screen's path.
"""

from typing import Annotated

from anyio import to_thread
from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from governance.api.errors import ApiError
from governance.application import GovernanceApplication
from governance.auth import InvalidToken, Principal
from governance.domain.actor import Actor
from governance.eventstore import MAX_POSITION
from governance.runtime import Runtime
from projections.store import ViewStore


async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_application(runtime: RuntimeDep) -> GovernanceApplication:
    return runtime.application


Governance = Annotated[GovernanceApplication, Depends(get_application)]

_bearer = HTTPBearer(auto_error=False, description="A JWT from `governance token` or your IdP")


async def authenticate(
    runtime: RuntimeDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    request: Request,
) -> Principal:
    if credentials is None:
        raise InvalidToken("send 'Authorization: Bearer <token>'")
    tokens, token = runtime.tokens, credentials.credentials
    principal = tokens.verified_already(token)
    if principal is None:
        # Fetching an identity provider's keys waits on the network: never on the event loop.
        if tokens.may_fetch_keys:
            principal = await to_thread.run_sync(tokens.verify, token)
        else:
            principal = tokens.verify(token)
    request.state.account_id = principal.account_id  # for the access log
    return principal


CurrentPrincipal = Annotated[Principal, Depends(authenticate)]


async def current_actor(principal: CurrentPrincipal, request: Request) -> Actor:
    """Who acts, for whom, and the request id (set by the middleware), stored on its events."""
    return Actor(
        principal.account_id,
        request_id=request.state.request_id,
        on_behalf_of=principal.on_behalf_of,
    )


CurrentActor = Annotated[Actor, Depends(current_actor)]


MinPosition = Annotated[
    int | None,
    Query(
        ge=0,
        le=MAX_POSITION,
        description="Wait until the read models include this log position.",
    ),
]


def reach_position(runtime: Runtime, min_position: int) -> None:
    """Return once the read models include `min_position`: 422 if no write ever reached it,
    503 if they did not within the configured time. Blocking: off the event loop."""
    head = runtime.application.head_position()
    if min_position > head:
        # No write ever answered with this position: waiting for it would only time out. The
        # head itself is not named: it measures every organization's activity.
        message = (
            f"the log has not reached position {min_position}; "
            "use a position from a command's X-Event-Position header"
        )
        raise ApiError(
            422,
            "invalid_request",
            f"min_position: {message}",
            details=[{"field": "min_position", "message": message}],
        )
    timeout = runtime.settings.min_position_timeout
    if not runtime.projector.wait_for(min_position, timeout):
        raise ApiError(
            503,
            "read_models_behind",
            f"the read models did not reach position {min_position} within {timeout:g} s;"
            " retry shortly",
            headers={"Retry-After": "1"},
        )


def caught_up_views(runtime: RuntimeDep, min_position: MinPosition = None) -> ViewStore:
    """The read models, once they include `min_position` (read-your-writes after a command)."""
    if min_position is not None:
        reach_position(runtime, min_position)
    return runtime.views


Views = Annotated[ViewStore, Depends(caught_up_views)]


async def wanted_position(min_position: MinPosition = None) -> int | None:
    """`?min_position=N` for routes that wait for it themselves, without a worker thread."""
    return min_position


WantedPosition = Annotated[int | None, Depends(wanted_position)]

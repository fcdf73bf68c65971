"""Liveness and readiness, without authentication (for load balancers and orchestrators)."""

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from governance.api.deps import RuntimeDep

router = APIRouter(tags=["health"])


@router.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready")
def ready(runtime: RuntimeDep) -> JSONResponse:
    body: dict[str, Any] = {"status": "ready"}
    try:
        head = runtime.application.head_position()
        position = runtime.projector.position()
    except Exception as error:  # noqa: BLE001 - any failure to reach the stores means not ready
        body = {"status": "unavailable", "reason": type(error).__name__}
        return JSONResponse(body, status_code=503, headers={"Retry-After": "1"})
    body.update(event_store="reachable", head_position=head, projection_lag=max(head - position, 0))
    body["view_generation"] = runtime.views.generation
    return JSONResponse(body)

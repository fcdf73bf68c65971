"""Prometheus' scrape target for this process, without authentication like /health."""

from fastapi import APIRouter, Response

from governance.api.deps import RuntimeDep
from governance.observability.metrics import CONTENT_TYPE

router = APIRouter(tags=["health"])


@router.get("/metrics", response_class=Response)
def metrics(runtime: RuntimeDep) -> Response:
    """Request, command and consent counters; read-model lag behind the event log's head."""
    return Response(runtime.metrics.exposition(), media_type=CONTENT_TYPE)

"""The baseline for HTTP figures: a bare FastAPI endpoint returning a constant, nothing else.

`/v1/sites/{site_id}/consent` is `async def`, FastAPI's fastest plain endpoint (the baseline the
consent figure is held to); `/sync/...` is the same as a plain `def`, which FastAPI runs in its
thread pool (what the consent route was before it went async), shown for comparison.
"""

from fastapi import FastAPI

app = FastAPI()
_DECISION: dict[str, object] = {
    "decision": "allow",
    "reason": "allowed_by_policy",
    "message": None,
    "policy_version": 1,
    "can_request": False,
}


@app.get("/v1/sites/{site_id}/consent")
async def consent(site_id: str, app_id: str) -> dict[str, object]:
    return _DECISION


@app.get("/sync/v1/sites/{site_id}/consent")
def consent_in_a_thread(site_id: str, app_id: str) -> dict[str, object]:
    return _DECISION

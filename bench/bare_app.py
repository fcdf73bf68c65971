"""The baselines for HTTP figures: bare FastAPI endpoints answering a constant, nothing else.

`/v1/sites/{site_id}/consent` is `async def`, FastAPI's fastest plain endpoint (the baseline the
consent figure is held to); `/sync/...` is the same as a plain `def`, which FastAPI runs in its
thread pool (what the consent route was before it went async), shown for comparison. The POST
installations endpoint parses the install command's body and answers a constant (the ceiling
for the install figure).
"""

from fastapi import FastAPI
from pydantic import BaseModel

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


class InstallBody(BaseModel):
    app_id: str
    app_name: str
    scopes: list[str]


@app.post("/v1/sites/{site_id}/installations", status_code=201)
def install(site_id: str, body: InstallBody) -> dict[str, object]:
    """The HTTP ceiling for install commands: FastAPI parsing the same body, a constant answer."""
    return {"site_id": site_id, "app_id": body.app_id, "status": "installed"}

"""The baseline for HTTP figures: a bare FastAPI endpoint returning a constant, nothing else."""

from fastapi import FastAPI

app = FastAPI()
_DECISION = {
    "decision": "allow",
    "reason": "allowed_by_policy",
    "message": None,
    "policy_version": 1,
}


@app.get("/v1/sites/{site_id}/consent")
def consent(site_id: str, app_id: str) -> dict[str, object]:
    return _DECISION

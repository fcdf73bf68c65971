"""The HTTP ceiling for install commands: FastAPI parsing the same body, answering a constant."""

from fastapi import FastAPI
from pydantic import BaseModel

app = FastAPI()


class InstallBody(BaseModel):
    app_id: str
    app_name: str
    scopes: list[str]


@app.post("/v1/sites/{site_id}/installations", status_code=201)
def install(site_id: str, body: InstallBody) -> dict[str, object]:
    return {"site_id": site_id, "app_id": body.app_id, "status": "installed"}

"""Org admins' webhook endpoints and their dead letters (configuration, not governance events)."""

import time
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from consumers.webhooks import store
from governance.api.deps import CurrentPrincipal, RuntimeDep
from governance.api.errors import forbidden, not_found
from governance.api.params import OrgId
from governance.api.webhook_schemas import (
    DeadLetterList,
    DeadLetterPublic,
    WebhookCreate,
    WebhookList,
    WebhookPublic,
)
from governance.auth import Principal, Role

router = APIRouter(prefix="/v1/orgs/{org_id}/webhooks", tags=["webhooks"])

WebhookId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9-]+$")]


def _org_admin(principal: Principal, org_id: str) -> None:
    if principal.org_id != org_id:
        raise not_found("organization")
    if not principal.has(Role.ORG_ADMIN):
        raise forbidden("only an org-admin of this organization may manage its webhooks")


def _public(endpoint: store.Endpoint) -> WebhookPublic:
    return WebhookPublic.model_validate(endpoint, from_attributes=True)


@router.post("", status_code=201, response_model=WebhookPublic)
def create_webhook(
    org_id: OrgId,
    body: WebhookCreate,
    principal: CurrentPrincipal,
    runtime: RuntimeDep,
    response: Response,
) -> WebhookPublic:
    _org_admin(principal, org_id)
    # It receives the events recorded from now on, not the history before it existed.
    after = runtime.application.head_position()
    with runtime.state.transaction() as tx:
        endpoint = store.add_endpoint(
            tx,
            org_id=org_id,
            url=body.url,
            event_types=body.event_types,
            secret=body.secret,
            description=body.description,
            created_by=principal.account_id,
            after_position=after,
            now=time.time_ns() // 1000,
        )
    response.headers["Location"] = f"/v1/orgs/{org_id}/webhooks/{endpoint.id}"
    return _public(endpoint)


@router.get("", response_model=WebhookList)
def list_webhooks(org_id: OrgId, principal: CurrentPrincipal, runtime: RuntimeDep) -> WebhookList:
    _org_admin(principal, org_id)
    with runtime.state.read() as tx:
        endpoints = store.list_endpoints(tx, org_id)
    return WebhookList(webhooks=[_public(e) for e in endpoints])


@router.get("/{webhook_id}", response_model=WebhookPublic)
def get_webhook(
    org_id: OrgId, webhook_id: WebhookId, principal: CurrentPrincipal, runtime: RuntimeDep
) -> WebhookPublic:
    _org_admin(principal, org_id)
    with runtime.state.read() as tx:
        endpoint = store.get_endpoint(tx, org_id, webhook_id)
    if endpoint is None:
        raise not_found("webhook")
    return _public(endpoint)


@router.delete("/{webhook_id}", status_code=204)
def delete_webhook(
    org_id: OrgId, webhook_id: WebhookId, principal: CurrentPrincipal, runtime: RuntimeDep
) -> Response:
    _org_admin(principal, org_id)
    with runtime.state.transaction() as tx:
        deleted = store.delete_endpoint(tx, org_id, webhook_id)
    if not deleted:
        raise not_found("webhook")
    return Response(status_code=204)


@router.get("/{webhook_id}/dead-letters", response_model=DeadLetterList)
def list_dead_letters(
    org_id: OrgId,
    webhook_id: WebhookId,
    principal: CurrentPrincipal,
    runtime: RuntimeDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> DeadLetterList:
    """Deliveries that failed their last attempt, oldest event first, with the event they held."""
    _org_admin(principal, org_id)
    with runtime.state.read() as tx:
        if store.get_endpoint(tx, org_id, webhook_id) is None:
            raise not_found("webhook")
        letters = store.dead_letters(tx, webhook_id, limit)
    return DeadLetterList(
        webhook_id=webhook_id,
        dead_letters=[DeadLetterPublic.model_validate(d, from_attributes=True) for d in letters],
    )

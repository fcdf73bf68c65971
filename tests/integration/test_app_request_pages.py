"""Requests in the browser: a user asks on the consent screen, an admin decides in the console."""

from __future__ import annotations

from fastapi.testclient import TestClient

from governance.auth import Role
from governance.runtime import Runtime
from tests.conftest import Tokens
from tests.integration.test_web_pages import Browser, admin_api, main_text

__all__ = ["admin_api"]  # the web pages' fixture: site s1 registered, an org admin's header

QUEUE = "/admin/sites/s1/app-requests"
JIRA = "/consent?site_id=s1&app_id=jira&app_name=Jira&scopes=read"
JIRA_WIDER = "/consent?site_id=s1&app_id=jira&app_name=Jira&scopes=read+write"
MINER = "/consent?site_id=s1&app_id=miner&app_name=Miner&scopes=read"


def test_a_user_requests_on_the_consent_screen_and_an_admin_decides_in_the_console(
    client: TestClient, tokens: Tokens, runtime: Runtime, admin_api: dict[str, str]
) -> None:
    blocked = client.put(
        "/v1/sites/s1/policy/user-installs", json={"state": "blocked"}, headers=admin_api
    )
    position = blocked.headers["X-Event-Position"]
    ann = Browser(client, runtime)
    ann.sign_in("ann", Role.USER, sites=("s1",))

    screen = ann.get(f"{JIRA}&min_position={position}")
    assert "End-user installs are disabled" in main_text(screen)
    assert 'id="request-access"' in screen.text
    empty = ann.post(JIRA, "/consent/request?" + JIRA.split("?")[1], justification=" ")
    assert empty.status_code == 422
    asked = ann.post(JIRA, "/consent/request?" + JIRA.split("?")[1], justification="reports")
    pending = ann.follow(asked)
    assert "Your request is waiting for an admin" in main_text(pending)
    assert 'id="request-access"' not in pending.text
    # Following the redirect waits for the views to include the request, as ann's browser does.
    ann.follow(ann.post(MINER, "/consent/request?" + MINER.split("?")[1], justification="mining"))

    admin = Browser(client, runtime)
    admin.sign_in("alice", Role.ORG_ADMIN)
    # Read the queue once it includes both requests just made.
    queue = admin.get(f"{QUEUE}?min_position={runtime.application.head_position()}")
    text = main_text(queue)
    assert "Open requests (2)" in text and "jira~1" in text and "miner~1" in text
    approved = admin.follow(admin.post(QUEUE, QUEUE + "/jira~1/decide", outcome="approve"))
    text = main_text(approved)
    assert "Open requests (1)" in text and "Approved apps (1)" in text
    assert "Jira jira read alice" in text
    no_reason = admin.post(QUEUE, QUEUE + "/miner~1/decide", outcome="block")
    assert no_reason.status_code == 422 and "reason" in main_text(no_reason)
    blocked_page = admin.follow(
        admin.post(QUEUE, QUEUE + "/miner~1/decide", outcome="block", reason="mines crypto")
    )
    assert "No open requests." in main_text(blocked_page)
    text = main_text(blocked_page)
    assert "Blocked apps (1)" in text and "Miner miner alice" in text
    assert "mines crypto (request miner~1)" in text

    # The user's consent screens follow: installable within the approval, not beyond it.
    screen = ann.get(JIRA + "&min_position=" + str(runtime.application.head_position()))
    assert 'id="consent-alert"' not in screen.text
    assert "More access than an admin approved" in main_text(ann.get(JIRA_WIDER))
    assert "This app is blocked" in main_text(ann.get(MINER))
    assert 'id="request-access"' not in ann.get(MINER).text


def test_who_sees_the_queue_and_who_may_decide(
    client: TestClient, tokens: Tokens, runtime: Runtime, admin_api: dict[str, str]
) -> None:
    client.put("/v1/sites/s1/policy/user-installs", json={"state": "blocked"}, headers=admin_api)
    body = {"app_id": "jira", "app_name": "Jira", "scopes": ["read"], "justification": "why"}
    user = tokens.header("ann", Role.USER, sites=("s1",))
    asked = client.post("/v1/sites/s1/app-requests", json=body, headers=user)
    position = asked.headers["X-Event-Position"]
    auditor = Browser(client, runtime)
    auditor.sign_in("audrey", Role.AUDITOR)
    page = auditor.get(f"{QUEUE}?min_position={position}")
    assert page.status_code == 200 and "jira~1" in main_text(page)
    assert "/decide" not in page.text  # no decision forms for an auditor
    refused = auditor.http.post(QUEUE + "/jira~1/decide", data={"outcome": "approve"})
    assert refused.status_code == 403
    ann = Browser(client, runtime)
    ann.sign_in("ann", Role.USER, sites=("s1",))
    assert ann.get(QUEUE).status_code == 403

"""Approved and blocked apps, and end users' requests, as a user, an admin and an auditor meet them.

The acceptance scenario runs on the embedded default and on the real PostgreSQL.
"""

from __future__ import annotations

import concurrent.futures
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2
from fastapi.testclient import TestClient

from governance.auth import Role
from governance.domain.actor import Actor
from governance.domain.grant import InstalledBy
from governance.domain.request_case import AppRequestCase
from governance.domain.site import UserInstalls
from governance.published import EVENT_TYPES, describe
from governance.runtime import Runtime
from tests.conftest import Tokens
from tests.integration.test_installs_api import Scene, dump_views, rebuild


class Requests(Scene):
    """The installs scene, with requests, decisions and the app lists."""

    def ask(
        self, who: dict[str, str], app_id: str, *scopes: str, why: str = "for the weekly report"
    ) -> httpx2.Response:
        body = {
            "app_id": app_id,
            "app_name": app_id.title(),
            "scopes": list(scopes),
            "justification": why,
        }
        return self.track(self.client.post("/v1/sites/s1/app-requests", json=body, headers=who))

    def decide(
        self, case_id: str, outcome: str, who: dict[str, str] | None = None, **body: Any
    ) -> httpx2.Response:
        path = f"/v1/sites/s1/app-requests/{case_id}/{outcome}"
        return self.track(self.client.post(path, json=body, headers=who or self.site_admin))

    def consent(self, who: dict[str, str], app_id: str, *scopes: str) -> dict[str, Any]:
        query = {"min_position": str(self.position), "app_id": app_id, "scopes": list(scopes)}
        response = self.client.get("/v1/sites/s1/consent", params=query, headers=who)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def mine(self, who: dict[str, str]) -> dict[str, dict[str, Any]]:
        body = self.get("/v1/me/app-requests", who).json()
        return {r["case_id"]: r for r in body["requests"]}

    def cases(self, **params: str) -> list[dict[str, Any]]:
        return list(self.get("/v1/sites/s1/app-requests", self.auditor, **params).json()["cases"])

    def history(self) -> list[dict[str, Any]]:
        return list(self.get("/v1/sites/s1/history", self.auditor, limit="1000").json()["events"])


def refusal(response: httpx2.Response) -> tuple[int, str, bool]:
    error = response.json()["error"]
    return response.status_code, error["code"], error.get("can_request", False)


def test_the_acceptance_scenario(client: TestClient, tokens: Tokens, runtime: Runtime) -> None:
    s = Requests(client, tokens)
    s.set_policy("blocked")

    # Blocked, the user may ask; the consent screen and the install say so alike.
    assert s.consent(s.ann, "jira", "read") | {"message": None} == {
        "decision": "deny",
        "reason": "user_installs_blocked",
        "message": None,
        "policy_version": 2,
        "can_request": True,
    }
    assert refusal(s.install(s.ann, "jira", ("read",))) == (403, "user_installs_blocked", True)
    asked = s.ask(s.ann, "jira", "read")
    assert asked.status_code == 201
    assert asked.json() == {
        "case_id": "jira~1",
        "site_id": "s1",
        "app_id": "jira",
        "app_name": "Jira",
        "status": "open",
        "scopes": ["read"],
        "requester_count": 1,
    }
    assert s.ask(s.ben, "jira", "read", "write").json()["requester_count"] == 2
    again = s.ask(s.ann, "jira", "read")
    assert again.status_code == 200 and again.json()["requester_count"] == 2
    assert s.consent(s.ann, "jira", "read")["reason"] == "request_pending"
    assert s.consent(s.ann, "jira", "read")["can_request"] is False
    assert refusal(s.install(s.ann, "jira", ("read",))) == (403, "request_pending", False)
    assert s.ask(s.ben, "wiki", "read").status_code == 201

    # The admins' queue: most requested first.
    queue = s.cases()
    assert [(c["case_id"], c["requester_count"], c["scopes"]) for c in queue] == [
        ("jira~1", 2, ["read", "write"]),
        ("wiki~1", 1, ["read"]),
    ]
    opened_at = datetime.fromisoformat(queue[0]["opened_at"])
    assert datetime.fromisoformat(queue[0]["expires_at"]) == opened_at + timedelta(days=14)
    before_approval = datetime.now(UTC)

    # Approve for fewer scopes than asked: the app joins the approved list; ann installs.
    approved = s.decide("jira~1", "approve", scopes=["read"], reason="vetted by security")
    assert approved.status_code == 200
    assert (approved.json()["status"], approved.json()["approved_scopes"]) == (
        "approved",
        ["read"],
    )
    assert s.consent(s.ann, "jira", "read")["reason"] == "allowed_by_approval"
    installed = s.install(s.ann, "jira", ("read",))
    assert installed.status_code == 201 and installed.json()["installed_by"] == "user"
    ann_jira = s.mine(s.ann)["jira~1"]
    assert (ann_jira["status"], ann_jira["decided_by"], ann_jira["approved_scopes"]) == (
        "approved",
        "sam",
        ["read"],
    )
    assert ann_jira["reason"] == "vetted by security"

    # Wider scopes than approved: refused with their own reason, and may be requested anew.
    assert refusal(s.install(s.ben, "jira", ("read", "write"))) == (
        403,
        "scopes_exceed_approval",
        True,
    )
    assert s.consent(s.ben, "jira", "read", "write")["reason"] == "scopes_exceed_approval"
    assert s.ask(s.ben, "jira", "read", "write").json()["case_id"] == "jira~2"

    # A second app denied, then requested again: a new case.
    denied = s.decide("wiki~1", "deny", reason="use the intranet wiki")
    assert denied.json()["status"] == "denied"
    ben_wiki = s.mine(s.ben)["wiki~1"]
    assert (ben_wiki["status"], ben_wiki["reason"]) == ("denied", "use the intranet wiki")
    assert s.ask(s.ben, "wiki", "read").json()["case_id"] == "wiki~2"

    # A third app blocked: refused to everyone, admins included, and never requested again.
    assert s.ask(s.ann, "miner", "read").status_code == 201
    blocked = s.decide("miner~1", "block", who=s.org_admin, reason="mines crypto")
    assert blocked.json()["status"] == "blocked"
    assert refusal(s.install(s.ann, "miner", ("read",))) == (403, "app_blocked", False)
    assert refusal(s.install(s.site_admin, "miner", ("read",))) == (403, "app_blocked", False)
    assert s.consent(s.site_admin, "miner")["reason"] == "app_blocked"
    assert refusal(s.ask(s.ben, "miner", "read"))[:2] == (403, "app_blocked")

    # The lists show both, with the case that put them there; as of earlier, neither.
    lists = s.get("/v1/sites/s1/apps", s.auditor).json()["apps"]
    assert [(a["app_id"], a["status"], a["scopes"], a["case_id"]) for a in lists] == [
        ("jira", "approved", ["read"], "jira~1"),
        ("miner", "blocked", [], "miner~1"),
    ]
    earlier = s.get("/v1/sites/s1/apps", s.auditor, as_of=before_approval.isoformat())
    assert earlier.json()["apps"] == []
    then = s.cases(status="all", as_of=before_approval.isoformat())
    assert [(c["case_id"], c["status"], c["requester_count"]) for c in then] == [
        ("jira~1", "open", 2),
        ("wiki~1", "open", 1),
    ]

    # Old open cases expire; younger ones stay.
    runtime.projector.wait_for(s.position, 5)
    assert runtime.expire_requests(now=datetime.now(UTC) + timedelta(days=13)) == []
    expired = runtime.expire_requests(now=datetime.now(UTC) + timedelta(days=15))
    assert sorted(expired) == ["jira~2", "wiki~2"]
    s.position = runtime.application.head_position()
    assert s.mine(s.ben)["wiki~2"]["status"] == "expired"
    assert s.cases() == []

    # Every step is in the history, naming who decided and why.
    history = s.history()
    lines = [(e["type"], e["actor"], e["reason"]) for e in history]
    assert ("AppRequested", "ann", "for the weekly report") in lines
    assert ("AppRequestApproved", "sam", "vetted by security") in lines
    assert ("AppApproved", "sam", "vetted by security") in lines
    assert ("AppRequestDenied", "sam", "use the intranet wiki") in lines
    assert ("AppRequestBlocked", "olga", "mines crypto") in lines
    assert ("AppBlocked", "olga", "mines crypto") in lines
    expiries = [e for e in history if e["type"] == "AppRequestExpired"]
    assert {e["actor"] for e in expiries} == {"governance:request-expiry"}
    assert all("no admin decided within 14 days" in e["summary"] for e in expiries)
    refused = {e["summary"] for e in history if e["type"] == "InstallBlocked"}
    assert "ben's install of Jira was refused: it asks for more scopes than an admin approved" in (
        refused
    )
    assert "sam's install of Miner was refused: the app is blocked on this site" in refused

    # Every event in the log has its public name for the relay, the audit API and the export.
    published = published_types(runtime)
    for name in ("AppRequested", "AppRequestApproved", "AppApproved", "AppRequestDenied"):
        assert name in published
    assert published.count("AppRequestExpired") == 2


def published_types(runtime: Runtime) -> list[str]:
    app = runtime.application
    notifications = app.recorder.select_notifications(start=1, limit=10_000)
    events = [app.mapper.to_domain_event(n) for n in notifications]
    assert {type(e) for e in events} <= set(EVENT_TYPES)
    return [describe(n.id, e).type for n, e in zip(notifications, events, strict=True)]


def test_admins_approve_block_and_clear_apps_directly(client: TestClient, tokens: Tokens) -> None:
    s = Requests(client, tokens)
    s.set_policy("blocked")
    url = "/v1/sites/s1/apps/jira/approval"
    approval = {"status": "approved", "app_name": "Jira", "scopes": ["read"], "reason": "ok"}
    first = s.track(client.put(url, json=approval, headers=s.site_admin))
    again = s.track(client.put(url, json=approval, headers=s.org_admin))
    assert (first.status_code, again.status_code) == (200, 200)
    assert first.json()["status"] == "approved" and first.json()["updated_by"] == "sam"
    assert again.json()["updated_by"] == "sam"  # nothing recorded the second time
    assert again.headers["X-Event-Position"] == first.headers["X-Event-Position"]
    assert s.install(s.ann, "jira", ("read",)).status_code == 201
    read = s.get(url, s.auditor).json()
    assert (read["status"], read["scopes"], read["reason"]) == ("approved", ["read"], "ok")

    # Blocking an installed app may remove it for everyone, in the same transaction.
    block = {"status": "blocked", "reason": "breach", "existing_installs": "remove"}
    assert s.track(client.put(url, json=block, headers=s.site_admin)).status_code == 200
    assert "jira" not in s.apps()
    assert s.get(url, s.auditor).json()["status"] == "blocked"
    approved_at = first.json()["updated_at"]
    then = s.get(url, s.auditor, as_of=approved_at).json()
    assert (then["status"], then["scopes"]) == ("approved", ["read"])
    assert s.get(url, s.auditor, as_of="2000-01-01T00:00:00Z").json()["status"] == "none"
    cleared = s.track(client.delete(url, params={"reason": "fixed"}, headers=s.site_admin))
    assert cleared.status_code == 204
    assert s.get(url, s.auditor).json() == {
        "site_id": "s1",
        "app_id": "jira",
        "status": "none",
        "app_name": None,
        "scopes": [],
        "reason": None,
        "updated_by": None,
        "updated_at": None,
        "case_id": None,
    }
    assert client.delete(url, headers=s.site_admin).status_code == 204
    types = [e["type"] for e in s.history()]
    assert types[-3:] == ["AppBlocked", "AppRemoved", "AppUnblocked"]

    # Who may: admins change, admins and auditors read, users neither, other orgs see nothing.
    for who in (s.ann, s.auditor):
        assert client.put(url, json=block, headers=who).status_code == 403
    assert s.get(url, s.ann).status_code == 403
    assert s.get("/v1/sites/s1/apps", s.ann).status_code == 403
    assert client.put(url, json=block, headers=s.outsider).status_code == 404
    assert s.get(url, s.outsider).status_code == 404


def test_a_requester_sees_and_cancels_their_requests(client: TestClient, tokens: Tokens) -> None:
    s = Requests(client, tokens)
    s.set_policy("blocked")
    s.ask(s.ann, "jira", "read")
    s.ask(s.ben, "jira", "write")
    widened = s.ask(s.ben, "jira", "admin", why="and to manage boards")
    assert widened.status_code == 201
    assert (widened.json()["scopes"], widened.json()["requester_count"]) == (["admin", "write"], 2)
    mine = "/v1/sites/s1/app-requests/jira~1/mine"
    cancelled = s.track(client.delete(mine, params={"reason": "not needed"}, headers=s.ann))
    assert cancelled.status_code == 204
    assert client.delete(mine, headers=s.ann).status_code == 404
    assert s.mine(s.ann)["jira~1"]["status"] == "cancelled"
    assert s.mine(s.ben)["jira~1"]["status"] == "open"
    (case,) = s.cases()
    assert (case["requester_count"], case["scopes"]) == (1, ["admin", "write"])
    assert s.mine(s.ben)["jira~1"]["justification"] == "and to manage boards"
    assert s.consent(s.ann, "jira", "read")["can_request"] is True
    s.track(client.delete(mine, headers=s.ben))
    assert s.cases() == []
    assert s.cases(status="cancelled")[0]["decided_by"] == "ben"
    detail = s.get("/v1/sites/s1/app-requests/jira~1", s.site_admin).json()
    assert [(r["account_id"], r["status"]) for r in detail["requesters"]] == [
        ("ann", "cancelled"),
        ("ben", "cancelled"),
    ]
    assert detail["requesters"][0]["justification"] == "for the weekly report"
    # A closed case takes no decision; the next request opens the next one.
    closed = s.decide("jira~1", "approve")
    assert (closed.status_code, closed.json()["error"]["code"]) == (409, "case_closed")
    assert s.ask(s.ann, "jira", "read").json()["case_id"] == "jira~2"
    summaries = [e["summary"] for e in s.history() if e["type"] == "AppRequestCancelled"]
    assert summaries[-1] == (
        "ben withdrew their request for Jira (request case jira~1), which closed the case"
    )


def test_who_may_request_and_decide(client: TestClient, tokens: Tokens) -> None:
    s = Requests(client, tokens)
    needless = s.ask(s.ann, "jira", "read")
    assert (needless.status_code, needless.json()["error"]["code"]) == (409, "request_not_needed")
    s.set_policy("blocked")
    assert s.ask(s.site_admin, "jira").json()["error"]["code"] == "request_not_needed"
    assert s.ask(s.auditor, "jira").status_code == 403
    assert s.ask(s.outsider, "jira").status_code == 404
    s.ask(s.ann, "jira", "read")
    for who in (s.ann, s.auditor):
        assert s.decide("jira~1", "deny", who=who, reason="no").status_code == 403
    assert s.decide("jira~1", "deny", who=s.outsider, reason="no").status_code == 404
    assert s.get("/v1/sites/s1/app-requests", s.ann).status_code == 403
    assert s.get("/v1/sites/s1/app-requests/jira~1", s.auditor).status_code == 200
    assert s.get("/v1/sites/s1/app-requests/jira~9", s.auditor).status_code == 404
    missing = s.decide("jira~9", "deny", reason="no")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "case_not_found")
    other = tokens.header("zoe", Role.USER, sites=("s1",))
    assert s.mine(other) == {}
    assert client.delete("/v1/sites/s1/app-requests/jira~1/mine", headers=other).status_code == 404


def test_input_rules_name_the_field(client: TestClient, tokens: Tokens) -> None:
    s = Requests(client, tokens)
    s.set_policy("blocked")
    good = {"app_id": "x", "app_name": "X", "scopes": ["read"], "justification": "why"}
    bad_requests = {
        "justification": good | {"justification": "j" * 1001},
        "scopes": good | {"scopes": ["s"] * 101},
        "scopes.0": good | {"scopes": ["s" * 201]},
        "app_id": good | {"app_id": "no spaces"},
        "extra": good | {"extra": True},
    }
    for field, body in bad_requests.items():
        response = client.post("/v1/sites/s1/app-requests", json=body, headers=s.ann)
        assert response.status_code == 422, field
        assert field in response.json()["error"]["message"]
    missing_why = {k: v for k, v in good.items() if k != "justification"}
    assert (
        client.post("/v1/sites/s1/app-requests", json=missing_why, headers=s.ann).status_code == 422
    )
    s.ask(s.ann, "x", "read")
    decisions: dict[str, tuple[dict[str, Any], str]] = {
        "deny": ({}, "reason"),
        "block": ({"reason": "r" * 501}, "reason"),
        "approve": ({"scopes": ["read"], "colour": "red"}, "colour"),
    }
    for outcome, (body, field) in decisions.items():
        response = s.decide("x~1", outcome, **body)
        assert response.status_code == 422, outcome
        assert field in response.json()["error"]["message"]
    unrequested = s.decide("x~1", "approve", scopes=["admin"])
    assert (unrequested.status_code, unrequested.json()["error"]["code"]) == (
        422,
        "scopes_not_requested",
    )
    assert s.decide("not-a-case", "deny", reason="x").status_code == 422
    url = "/v1/sites/s1/apps/x/approval"
    for body in (
        {"status": "maybe"},
        {"status": "blocked", "scopes": ["read"]},
        {"status": "approved", "existing_installs": "remove"},
        {"status": "approved", "scopes": ["s"] * 101},
    ):
        assert client.put(url, json=body, headers=s.site_admin).status_code == 422, body
    consent = "/v1/sites/s1/consent"
    for scopes in (["s"] * 101, ["s" * 201]):
        query = {"app_id": "x", "scopes": scopes}
        assert client.get(consent, params=query, headers=s.ann).status_code == 422
    listing = s.get("/v1/sites/s1/app-requests", s.auditor, status="pending")
    assert listing.status_code == 422 and "status" in listing.json()["error"]["message"]
    assert s.cases()[0]["status"] == "open"  # nothing was decided by any of them


def test_concurrent_requests_on_one_case_all_count(client: TestClient, tokens: Tokens) -> None:
    s = Requests(client, tokens)
    s.set_policy("blocked")
    users = [tokens.header(f"user{n}", Role.USER, sites=("s1",)) for n in range(8)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(lambda who: s.ask(who, "popular", "read"), users))
    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) <= {201, 409}, [r.text for r in responses]
    recorded = statuses.count(201)
    assert recorded >= 1
    (case,) = s.cases()
    assert case["requester_count"] == recorded
    # Any request that lost every retry left nothing behind and may simply be sent again.
    for who, response in zip(users, responses, strict=True):
        if response.status_code == 409:
            assert response.json()["error"]["code"] == "concurrent_write"
            assert s.ask(who, "popular", "read").status_code == 201
    assert s.cases()[0]["requester_count"] == len(users)


def test_views_survive_a_full_rebuild(client: TestClient, tokens: Tokens, runtime: Runtime) -> None:
    s = Requests(client, tokens)
    s.set_policy("blocked")
    s.ask(s.ann, "jira", "read")
    s.ask(s.ben, "jira", "write")
    s.decide("jira~1", "approve", scopes=["read"])
    s.install(s.ann, "jira", ("read",))
    s.ask(s.ben, "wiki", "read")
    s.decide("wiki~1", "deny", reason="no")
    s.ask(s.ben, "wiki", "read")
    s.track(client.delete("/v1/sites/s1/app-requests/wiki~2/mine", headers=s.ben))
    s.ask(s.ann, "miner")
    s.decide("miner~1", "block", reason="never", existing_installs="remove")
    s.ask(s.ann, "old")
    runtime.projector.wait_for(s.position, 5)
    runtime.expire_requests(now=datetime.now(UTC) + timedelta(days=30))
    s.track(client.delete("/v1/sites/s1/apps/jira/approval", headers=s.site_admin))
    runtime.projector.wait_for(runtime.application.head_position(), 5)
    before = dump_views(runtime)
    assert all(before[table] for table in ("site_app_list_history", "app_requester_intervals"))
    rebuild(runtime)
    assert dump_views(runtime) == before
    # The same from worker processes, as on a large log: each folds its share of the sites.
    app, olga = runtime.application, Actor("olga")
    for site in ("s2", "s3", "s4", "s5"):
        app.register_site("acme", site, site.upper(), olga)
        app.set_user_installs(site, UserInstalls.BLOCKED, olga)
        app.request_app(site, "jira", "Jira", ["read"], "why", Actor("ann"), InstalledBy.USER)
        app.request_app(site, "wiki", "Wiki", ["read"], "why", Actor("ben"), InstalledBy.USER)
        app.approve_app(site, "jira", None, ["read", "write"], olga)
        app.block_app(site, "miner", "Miner", olga, reason="never")
        app.clear_app_listing(site, "miner", olga)
    runtime.projector.wait_for(app.head_position(), 5)
    before = dump_views(runtime)
    rebuilder = runtime.rebuilder()
    rebuilder.workers, rebuilder.parallel_from = 3, 0
    rebuilder.replay()
    runtime.views.refresh()
    assert dump_views(runtime) == before
    assert rebuilder.check().clean


def test_a_popular_case_is_snapshotted_in_the_real_stores(
    client: TestClient, tokens: Tokens, runtime: Runtime
) -> None:
    s = Requests(client, tokens)
    s.set_policy("blocked")
    app = runtime.application
    for n in range(101):
        who = Actor(f"user{n}")
        app.request_app("s1", "popular", "Popular", ["read"], "why", who, InstalledBy.USER)
    assert app.snapshots is not None
    snapshots = list(app.snapshots.get(AppRequestCase.id_for("s1", "popular")))
    assert [snapshot.originator_version for snapshot in snapshots] == [100]
    s.position = app.head_position()
    (case,) = s.cases()
    assert case["requester_count"] == 101
    approved = s.decide("popular~1", "approve", reason="everyone wants it")
    assert approved.json()["requester_count"] == 101

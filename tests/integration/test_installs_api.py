"""Installs, refusals, removals and the "Connected apps" view, as its users meet them over HTTP."""

from __future__ import annotations

from datetime import datetime, timedelta

import httpx2
from fastapi.testclient import TestClient

from governance.auth import Role
from governance.runtime import Runtime
from tests.conftest import Tokens


class Scene:
    """An org admin, a site admin, two end users and an auditor on site s1 of acme."""

    def __init__(self, client: TestClient, tokens: Tokens) -> None:
        self.client = client
        self.org_admin = tokens.header("olga", Role.ORG_ADMIN)
        self.site_admin = tokens.header("sam", Role.SITE_ADMIN, sites=("s1",))
        self.ann = tokens.header("ann", Role.USER, sites=("s1",))
        self.ben = tokens.header("ben", Role.USER, sites=("s1",))
        self.auditor = tokens.header("audrey", Role.AUDITOR)
        self.outsider = tokens.header("oscar", Role.USER, org="globex", sites=("s1",))
        self.position = 0
        registered = client.put(
            "/v1/orgs/acme/sites/s1", json={"name": "One"}, headers=self.org_admin
        )
        self.track(registered)

    def track(self, response: httpx2.Response) -> httpx2.Response:
        if "X-Event-Position" in response.headers:
            self.position = max(self.position, int(response.headers["X-Event-Position"]))
        return response

    def install(
        self, who: dict[str, str], app_id: str, scopes: tuple[str, ...] = ("read",)
    ) -> httpx2.Response:
        body = {"app_id": app_id, "app_name": app_id.title(), "scopes": list(scopes)}
        return self.track(self.client.post("/v1/sites/s1/installations", json=body, headers=who))

    def set_policy(self, state: str, reason: str = "review") -> httpx2.Response:
        body = {"state": state, "reason": reason}
        return self.track(
            self.client.put("/v1/sites/s1/policy/user-installs", json=body, headers=self.site_admin)
        )

    def get(self, path: str, who: dict[str, str], **params: str) -> httpx2.Response:
        query = {"min_position": str(self.position), **params}
        return self.client.get(path, params=query, headers=who)

    def apps(self, **params: str) -> dict[str, dict[str, object]]:
        body = self.get("/v1/sites/s1/connected-apps", self.auditor, **params).json()
        return {app["app_id"]: app for app in body["apps"]}


def test_the_reference_scenario(client: TestClient, tokens: Tokens) -> None:
    scene = Scene(client, tokens)
    first = scene.install(scene.ann, "jira-bot", ("read", "write"))
    assert first.status_code == 201
    assert first.json()["installed_by"] == "user" and first.json()["account_id"] == "ann"
    assert scene.install(scene.ben, "jira-bot", ("read",)).status_code == 201
    assert scene.install(scene.ben, "diagrams").status_code == 201
    backup = scene.install(scene.site_admin, "backup").json()
    assert backup["installed_by"] == "admin"
    # A moment after the last install and before the block.
    moment = datetime.fromisoformat(backup["installed_at"]) + timedelta(microseconds=1)

    assert scene.set_policy("blocked").json()["version"] == 2
    refused = scene.install(scene.ann, "diagrams")
    assert refused.status_code == 403
    error = refused.json()["error"]
    assert error["code"] == "user_installs_blocked"
    assert "disabled end-user installs" in error["message"]
    assert error["policy_version"] == 2
    # An admin may still install while users may not.
    assert scene.install(scene.site_admin, "calendar").status_code == 201

    history = scene.get("/v1/sites/s1/history", scene.auditor).json()["events"]
    refusals = [e for e in history if e["type"] == "InstallBlocked"]
    assert len(refusals) == 1
    assert refusals[0]["account_id"] == "ann" and refusals[0]["policy_version"] == 2
    assert "refused" in refusals[0]["summary"]

    apps = scene.apps()
    assert set(apps) == {"jira-bot", "diagrams", "backup", "calendar"}
    assert (apps["jira-bot"]["installed_by"], apps["jira-bot"]["user_count"]) == ("Users", 2)
    assert apps["jira-bot"]["scopes"] == ["read", "write"]
    assert (apps["diagrams"]["installed_by"], apps["diagrams"]["user_count"]) == ("Users", 1)
    assert apps["backup"]["installed_by"] == "Admins"

    removed = scene.track(
        client.delete(
            "/v1/sites/s1/connected-apps/jira-bot",
            params={"reason": "unvetted"},
            headers=scene.org_admin,
        )
    )
    assert removed.status_code == 204
    assert "jira-bot" not in scene.apps()
    for user in (scene.ann, scene.ben):
        decision = scene.get("/v1/sites/s1/consent", user, app_id="jira-bot").json()
        assert decision["decision"] == "deny"
        assert decision["reason"] == "user_installs_blocked"
    # Removing it again: nothing is connected any more.
    again = client.delete("/v1/sites/s1/connected-apps/jira-bot", headers=scene.org_admin)
    assert again.status_code == 404

    then = scene.get("/v1/sites/s1/policy", scene.auditor, as_of=moment.isoformat()).json()
    assert then["user_installs"] == "allowed"
    assert set(scene.apps(as_of=moment.isoformat())) == {"jira-bot", "diagrams", "backup"}

    assert scene.set_policy("allowed").status_code == 200
    assert scene.install(scene.ann, "jira-bot").status_code == 201
    assert scene.apps()["jira-bot"]["user_count"] == 1


def test_consent_answers_for_the_caller(client: TestClient, tokens: Tokens) -> None:
    scene = Scene(client, tokens)
    allowed = scene.get("/v1/sites/s1/consent", scene.ann, app_id="x").json()
    assert allowed == {
        "decision": "allow",
        "reason": "allowed_by_policy",
        "message": None,
        "policy_version": 1,
        "can_request": False,
    }
    scene.install(scene.ann, "x")
    scene.set_policy("blocked")
    kept = scene.get("/v1/sites/s1/consent", scene.ann, app_id="x").json()
    assert (kept["decision"], kept["reason"]) == ("allow", "already_installed")
    denied = scene.get("/v1/sites/s1/consent", scene.ben, app_id="x").json()
    assert (denied["decision"], denied["reason"], denied["policy_version"]) == (
        "deny",
        "user_installs_blocked",
        2,
    )
    assert denied["can_request"] is True
    assert "disabled end-user installs" in denied["message"]
    admin = scene.get("/v1/sites/s1/consent", scene.site_admin, app_id="x").json()
    assert (admin["decision"], admin["reason"]) == ("allow", "admin_install")
    assert scene.get("/v1/sites/s1/consent", scene.outsider, app_id="x").status_code == 404
    other_site_user = tokens.header("zed", Role.USER, sites=("s2",))
    assert scene.get("/v1/sites/s1/consent", other_site_user, app_id="x").status_code == 403


def test_installing_again_is_a_no_op_and_more_scopes_widen_the_grant(
    client: TestClient, tokens: Tokens
) -> None:
    scene = Scene(client, tokens)
    first = scene.install(scene.ann, "x", ("read",))
    again = scene.install(scene.ann, "x", ("read",))
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["installed_at"] == first.json()["installed_at"]
    assert again.headers["X-Event-Position"] == first.headers["X-Event-Position"]
    assert scene.install(scene.ann, "x", ("read", "write")).status_code == 201
    app = scene.apps()["x"]
    assert (app["user_count"], app["scopes"]) == (1, ["read", "write"])
    history = scene.get("/v1/sites/s1/history", scene.auditor).json()["events"]
    assert [e["type"] for e in history] == ["SiteRegistered", "AppInstalled", "AppInstalled"]


def test_a_user_revokes_their_own_grant(client: TestClient, tokens: Tokens) -> None:
    scene = Scene(client, tokens)
    scene.install(scene.ann, "x")
    scene.install(scene.ben, "x")
    revoked = scene.track(client.delete("/v1/sites/s1/installations/x", headers=scene.ann))
    assert revoked.status_code == 204
    assert scene.apps()["x"]["user_count"] == 1
    assert client.delete("/v1/sites/s1/installations/x", headers=scene.ann).status_code == 404
    scene.track(client.delete("/v1/sites/s1/installations/x", headers=scene.ben))
    assert "x" not in scene.apps()


def test_who_may_install_list_and_remove(client: TestClient, tokens: Tokens) -> None:
    scene = Scene(client, tokens)
    scene.install(scene.ann, "x")
    stranger = tokens.header("zed", Role.USER, sites=("s2",))
    assert scene.install(stranger, "x").status_code == 403
    assert scene.install(scene.outsider, "x").status_code == 404
    assert scene.install(scene.auditor, "x").status_code == 403
    assert scene.get("/v1/sites/s1/connected-apps", scene.ann).status_code == 403
    assert scene.get("/v1/sites/s1/connected-apps", scene.site_admin).status_code == 200
    assert scene.get("/v1/sites/s1/history", scene.ann).status_code == 403
    for who in (scene.ann, scene.auditor):
        assert client.delete("/v1/sites/s1/connected-apps/x", headers=who).status_code == 403
    assert client.delete("/v1/sites/s1/connected-apps/x", headers=scene.outsider).status_code == 404


def test_input_rules_name_the_field(client: TestClient, tokens: Tokens) -> None:
    scene = Scene(client, tokens)
    bad = {
        "app_id": {"app_id": "no spaces", "app_name": "X"},
        "app_name": {"app_id": "x", "app_name": ""},
        "scopes": {"app_id": "x", "app_name": "X", "scopes": ["s"] * 101},
        "scopes.0": {"app_id": "x", "app_name": "X", "scopes": ["s" * 201]},
        "extra": {"app_id": "x", "app_name": "X", "extra": 1},
    }
    for field, body in bad.items():
        response = client.post("/v1/sites/s1/installations", json=body, headers=scene.ann)
        assert response.status_code == 422, field
        assert field in response.json()["error"]["message"]
    long_id = client.post(
        "/v1/sites/s1/installations",
        json={"app_id": "a" * 129, "app_name": "X"},
        headers=scene.ann,
    )
    assert long_id.status_code == 422
    as_of = scene.get("/v1/sites/s1/connected-apps", scene.auditor, as_of="yesterday")
    assert as_of.status_code == 422 and "as_of" in as_of.json()["error"]["message"]
    assert scene.apps() == {}


def test_decisions_and_views_survive_a_full_rebuild(
    client: TestClient, tokens: Tokens, runtime: Runtime
) -> None:
    scene = Scene(client, tokens)
    scene.install(scene.ann, "x", ("read",))
    scene.install(scene.ben, "x", ("write",))
    scene.install(scene.site_admin, "y")
    scene.set_policy("blocked")
    scene.install(scene.ben, "z")
    scene.track(client.delete("/v1/sites/s1/installations/x", headers=scene.ben))
    scene.track(client.delete("/v1/sites/s1/connected-apps/y", headers=scene.org_admin))
    scene.install(scene.site_admin, "y")
    runtime.projector.wait_for(scene.position, 5)
    before = dump_views(runtime)
    consent_before = scene.get("/v1/sites/s1/consent", scene.ben, app_id="x").json()
    rebuild(runtime)
    assert dump_views(runtime) == before
    assert scene.get("/v1/sites/s1/consent", scene.ben, app_id="x").json() == consent_before


VIEW_TABLES = (
    "site_policy",
    "site_policy_history",
    "site_apps",
    "grant_intervals",
    "timeline",
    "timeline_apps",
    "site_app_lists",
    "site_app_list_history",
    "app_request_cases",
    "app_requesters",
    "app_requester_intervals",
)


def dump_views(runtime: Runtime) -> dict[str, list[str]]:
    dumped = {}
    with runtime.views.read() as tx:
        for table in VIEW_TABLES:
            rows = tx.all("SELECT * FROM " + table)  # noqa: S608 - constant table names
            dumped[table] = sorted(repr(sorted(row.items())) for row in rows)
    return dumped


def rebuild(runtime: Runtime) -> None:
    """Replay the log from position zero into a new generation of every view, and serve it."""
    before = runtime.views.generation
    runtime.rebuilder().replay()
    runtime.views.refresh()
    assert runtime.views.generation != before

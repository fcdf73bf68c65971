"""The pages as a browser meets them: sign-in, CSRF, the console, the consent screen, errors."""

from __future__ import annotations

import re
from html import unescape

import httpx2
import pytest
from fastapi.testclient import TestClient

from governance.auth import Role
from governance.domain.consent import BLOCKED_ALERT
from governance.domain.site import Site
from governance.runtime import Runtime
from tests.conftest import Tokens

CONSOLE = "/admin/sites/s1/connected-apps"
WIKI = "/consent?site_id=s1&app_id=wiki-sync&app_name=Wiki+Sync&scopes=read:page+write:page"


class Browser:
    """One browser's cookie jar on the app under test; follows no redirect by itself."""

    def __init__(self, client: TestClient, runtime: Runtime) -> None:
        self.http = TestClient(client.app, follow_redirects=False)
        self.runtime = runtime

    def sign_in(
        self, sub: str, *roles: Role, sites: tuple[str, ...] = (), org: str = "acme"
    ) -> None:
        token = self.runtime.tokens.issue(sub=sub, org=org, roles=roles, sites=sites)
        answer = self.post("/signin", "/signin", token=token)
        assert answer.status_code == 303

    def get(self, path: str) -> httpx2.Response:
        return self.http.get(path)

    def post(self, form_page: str, path: str, **fields: str) -> httpx2.Response:
        """Submit a form the way a browser does: with the CSRF token of the page it is on."""
        fields.setdefault("csrf_token", csrf_of(self.get(form_page)))
        return self.http.post(path, data=fields)

    def follow(self, answer: httpx2.Response) -> httpx2.Response:
        assert answer.status_code == 303, answer.text
        return self.get(answer.headers["location"])


def csrf_of(page: httpx2.Response) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match, page.text
    return match.group(1)


def main_text(page: httpx2.Response) -> str:
    """What the page's <main> says, as text."""
    body = page.text.split('<main id="main"', 1)[1].split("</main>", 1)[0]
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", body.split(">", 1)[1])).split())


@pytest.fixture
def admin_api(client: TestClient, tokens: Tokens, runtime: Runtime) -> dict[str, str]:
    """An org admin's API header, once site s1 is registered and in the views."""
    header = tokens.header("alice", Role.ORG_ADMIN)
    registered = client.put("/v1/orgs/acme/sites/s1", json={"name": "One"}, headers=header)
    assert registered.status_code == 201
    assert runtime.projector.wait_for(int(registered.headers["X-Event-Position"]), 5)
    return header


@pytest.fixture
def browser(client: TestClient, runtime: Runtime, admin_api: dict[str, str]) -> Browser:
    return Browser(client, runtime)


def test_a_page_sends_a_stranger_to_sign_in_and_back(browser: Browser) -> None:
    first = browser.get(CONSOLE + "?min_position=0")
    assert first.status_code == 303
    assert (
        first.headers["location"]
        == "/signin?next=%2Fadmin%2Fsites%2Fs1%2Fconnected-apps%3Fmin_position%3D0"
    )
    form = browser.get(first.headers["location"])
    assert 'name="next" value="/admin/sites/s1/connected-apps?min_position=0"' in form.text
    token = browser.runtime.tokens.issue(sub="alice", org="acme", roles=[Role.ORG_ADMIN])
    signed_in = browser.http.post(
        "/signin",
        data={"csrf_token": csrf_of(form), "token": token, "next": CONSOLE + "?min_position=0"},
    )
    assert signed_in.headers["location"] == CONSOLE + "?min_position=0"
    cookie = signed_in.headers["set-cookie"]
    assert cookie.startswith("governance_session=")
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie
    page = browser.follow(signed_in)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "User-installed apps Allowed" in main_text(page)

    signed_out = browser.post(CONSOLE, "/signout")
    assert signed_out.headers["location"] == "/signin?signed_out=1"
    assert browser.get(CONSOLE).status_code == 303


def test_sign_in_refuses_bad_tokens_and_foreign_destinations(browser: Browser) -> None:
    refused = browser.post("/signin", "/signin", token="not-a-token")
    assert refused.status_code == 401
    assert "That token was not accepted" in main_text(refused)
    assert 'aria-invalid="true"' in refused.text
    token = browser.runtime.tokens.issue(sub="alice", org="acme", roles=[Role.ORG_ADMIN])
    for elsewhere in ("//evil.example/x", "https://evil.example/", "/\\evil.example", "admin"):
        answer = browser.post("/signin", "/signin", token=token, next=elsewhere)
        assert answer.headers["location"] == "/", elsewhere
    expired = browser.runtime.tokens.issue(
        sub="a", org="acme", roles=[Role.ORG_ADMIN], ttl_seconds=-60
    )
    browser.http.cookies.clear()
    browser.http.cookies.set("governance_session", expired)
    assert browser.get(CONSOLE).headers["location"].endswith("&expired=1")


def test_every_form_needs_the_token_of_its_own_session(
    browser: Browser, client: TestClient, admin_api: dict[str, str]
) -> None:
    browser.sign_in("alice", Role.ORG_ADMIN)
    block = {"state": "blocked", "expected_policy_version": "1"}
    missing = browser.http.post("/admin/sites/s1/user-installs", data=block)
    assert missing.status_code == 403
    assert "did not come from this site" in main_text(missing)
    other = Browser(client, browser.runtime)
    other.sign_in("alice", Role.ORG_ADMIN)
    foreign = browser.http.post(
        "/admin/sites/s1/user-installs", data=block | {"csrf_token": csrf_of(other.get(CONSOLE))}
    )
    assert foreign.status_code == 403
    assert browser.http.post("/signout").status_code == 403
    policy = client.get("/v1/sites/s1/policy", headers=admin_api).json()
    assert (policy["user_installs"], policy["version"]) == ("allowed", 1)


def test_an_admin_blocks_and_allows_user_apps_from_the_console(browser: Browser) -> None:
    browser.sign_in("alice", Role.ORG_ADMIN)
    blocked = browser.post(
        CONSOLE,
        "/admin/sites/s1/user-installs",
        state="blocked",
        expected_policy_version="1",
        existing_user_installs="remove",
        reason="vendor review",
    )
    assert re.fullmatch(
        r"/admin/sites/s1/connected-apps\?min_position=\d+#security-controls",
        blocked.headers["location"],
    )
    text = main_text(browser.follow(blocked))
    assert "User-installed apps Blocked Changed by alice" in text
    assert "Reason vendor review" in text and "Allow user apps" in text
    stored = [
        browser.runtime.application.mapper.to_domain_event(n)
        for n in browser.runtime.application.recorder.select_notifications(start=1, limit=100)
    ]
    block = [e for e in stored if isinstance(e, Site.UserInstallsBlocked)]
    assert [(e.existing_user_installs, e.reason, e.actor) for e in block] == [
        ("remove", "vendor review", "alice")
    ]
    stale = browser.post(
        CONSOLE, "/admin/sites/s1/user-installs", state="allowed", expected_policy_version="1"
    )
    assert stale.status_code == 412
    assert "The policy is at version 2, not 1" in main_text(stale)
    allowed = browser.post(
        CONSOLE, "/admin/sites/s1/user-installs", state="allowed", expected_policy_version="2"
    )
    assert "User-installed apps Allowed Changed by alice" in main_text(browser.follow(allowed))
    invalid = browser.post(
        CONSOLE, "/admin/sites/s1/user-installs", state="maybe", expected_policy_version="3"
    )
    assert invalid.status_code == 422 and "state" in main_text(invalid)


def test_the_consent_screen_installs_and_shows_a_block(
    browser: Browser, client: TestClient, admin_api: dict[str, str]
) -> None:
    browser.sign_in("ann", Role.USER, sites=("s1",))
    screen = browser.get(WIKI)
    assert "Wiki Sync wants to connect to One" in main_text(screen)
    assert "read:page write:page" in main_text(screen)
    assert re.search(r'value="accept" class="button-primary">', screen.text)
    installed = browser.follow(browser.post(WIKI, WIKI, decision="accept"))
    assert "You have connected Wiki Sync to this site" in main_text(installed)
    apps = client.get("/v1/sites/s1/connected-apps", headers=admin_api).json()["apps"]
    assert [(a["app_id"], a["installed_by"], a["scopes"]) for a in apps] == [
        ("wiki-sync", "Users", ["read:page", "write:page"])
    ]
    client.put("/v1/sites/s1/policy/user-installs", json={"state": "blocked"}, headers=admin_api)
    chat = "/consent?site_id=s1&app_id=chat-bot&app_name=Chat+Bot&scopes=chat:write"
    blocked = browser.get(
        chat + "&min_position=" + str(browser.runtime.application.head_position())
    )
    assert BLOCKED_ALERT in main_text(blocked)
    assert re.search(
        r'value="accept" class="button-primary" disabled aria-describedby="consent-alert"',
        blocked.text,
    )
    forced = browser.follow(browser.post(chat, chat, decision="accept"))
    assert BLOCKED_ALERT in main_text(forced)
    cancelled = browser.follow(browser.post(chat, chat, decision="cancel"))
    assert "Chat Bot was not connected" in main_text(cancelled)
    history = client.get(
        "/v1/sites/s1/history",
        headers=admin_api,
        params={"min_position": browser.runtime.application.head_position()},
    )
    types = [e["type"] for e in history.json()["events"]]
    assert types == ["SiteRegistered", "AppInstalled", "UserInstallsBlocked", "InstallBlocked"]


def test_an_admin_removes_an_app_after_confirming_with_a_reason(
    browser: Browser, client: TestClient, tokens: Tokens
) -> None:
    ann = tokens.header("ann", Role.USER, sites=("s1",))
    app = {"app_id": "wiki-sync", "app_name": "Wiki Sync", "scopes": ["read:page"]}
    position = client.post("/v1/sites/s1/installations", json=app, headers=ann).headers[
        "X-Event-Position"
    ]
    browser.sign_in("sam", Role.SITE_ADMIN, sites=("s1",))
    listed = browser.get(f"{CONSOLE}?min_position={position}")
    assert "Wiki Sync wiki-sync Users 1 read:page" in main_text(listed)
    confirm = "/admin/sites/s1/connected-apps/wiki-sync/remove"
    assert f'href="{confirm}"' in listed.text
    page = browser.get(confirm)
    assert "Remove Wiki Sync? Everyone on One loses this app's access: 1 person" in main_text(page)
    no_reason = browser.post(confirm, confirm, reason="  ")
    assert no_reason.status_code == 422 and "say why" in main_text(no_reason)
    removed = browser.follow(browser.post(confirm, confirm, reason="unused"))
    assert "Wiki Sync" not in main_text(removed)
    assert "No apps are connected to this site." in main_text(removed)
    history = browser.get("/admin/sites/s1/history")
    assert "sam removed Wiki Sync for everyone on the site (reason: unused)" in main_text(history)
    assert browser.get(confirm).status_code == 404


def test_errors_are_pages_and_a_foreign_site_looks_missing(
    browser: Browser, client: TestClient, tokens: Tokens
) -> None:
    other_org = tokens.header("gina", Role.ORG_ADMIN, org="globex")
    registered = client.put("/v1/orgs/globex/sites/g1", json={"name": "Globex"}, headers=other_org)
    assert browser.runtime.projector.wait_for(int(registered.headers["X-Event-Position"]), 5)
    browser.sign_in("alice", Role.ORG_ADMIN)
    foreign = browser.get("/admin/sites/g1/connected-apps")
    missing = browser.get("/admin/sites/nowhere/connected-apps")
    assert foreign.status_code == missing.status_code == 404
    assert (
        main_text(foreign)
        == main_text(missing)
        == ("Not found Site was not found. Go to the start page")
    )
    assert (
        browser.get("/admin/sites/g1/history").text
        == browser.get("/admin/sites/nowhere/history").text
    )
    unknown = browser.get("/admin/elsewhere")
    assert unknown.status_code == 404 and "text/html" in unknown.headers["content-type"]
    bad = browser.get("/consent?site_id=s1&app_id=has%20space&app_name=X")
    assert bad.status_code == 422 and "app_id" in main_text(bad)

    browser.sign_in("ann", Role.USER, sites=("s1",))
    refused = browser.get(CONSOLE)
    assert refused.status_code == 403
    assert "Only admins of this site, org-admins and auditors may read this." in main_text(refused)
    browser.sign_in("audrey", Role.AUDITOR)
    audited = browser.get(CONSOLE)
    assert audited.status_code == 200
    assert "Block user apps" not in audited.text and "csrf_token" in audited.text  # sign-out only
    assert browser.get("/admin/sites/s1/connected-apps/x/remove").status_code == 403
    assert browser.get(WIKI).status_code == 403


def test_pages_refuse_framing_and_caching(browser: Browser) -> None:
    browser.sign_in("ann", Role.USER, sites=("s1",))
    screen = browser.get(WIKI)
    assert "frame-ancestors 'none'" in screen.headers["content-security-policy"]
    assert screen.headers["x-frame-options"] == "DENY"
    assert screen.headers["cache-control"] == "no-store"
    sheet = browser.get("/static/governance.css")
    assert sheet.status_code == 200 and sheet.headers["content-type"].startswith("text/css")

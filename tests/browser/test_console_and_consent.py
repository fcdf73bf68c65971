"""An admin and end users in headless Chromium, signed in through the form, clicking."""

from __future__ import annotations

from urllib.parse import quote

import httpx2
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from governance.domain.consent import BLOCKED_ALERT
from tests.browser.accessibility import assert_accessible
from tests.browser.conftest import Page
from tests.e2e.conftest import Service

CONSOLE = "/admin/sites/s1/connected-apps"
WIKI = "/consent?site_id=s1&app_id=wiki-sync&app_name=Wiki+Sync&scopes=read%3Apage+write%3Apage"
CHAT = "/consent?site_id=s1&app_id=chat-bot&app_name=Chat+Bot&scopes=chat%3Awrite"


def register_site(service: Service) -> None:
    admin = service.token("alice", "org-admin")
    answer = httpx2.put(f"{service.url}/v1/orgs/acme/sites/s1", json={"name": "One"}, headers=admin)
    assert answer.status_code == 201
    caught_up(service, answer, admin)


def install(service: Service, user: str, app_id: str, app_name: str) -> None:
    body = {"app_id": app_id, "app_name": app_name, "scopes": ["read:page"]}
    headers = service.token(user, "user", "acme", "s1")
    answer = httpx2.post(f"{service.url}/v1/sites/s1/installations", json=body, headers=headers)
    assert answer.status_code == 201
    caught_up(service, answer, headers)


def caught_up(service: Service, command: httpx2.Response, headers: dict[str, str]) -> None:
    """Wait until the read models (in another process on PostgreSQL) include `command`."""
    position = command.headers["X-Event-Position"]
    url = f"{service.url}/v1/sites/s1/consent?app_id=any&min_position={position}"
    assert httpx2.get(url, headers=headers, timeout=10).status_code == 200


def test_blocking_user_apps_disables_accept_on_the_consent_screen(
    page: Page, service: Service
) -> None:
    register_site(service)
    page.sign_out()
    page.open(WIKI)
    page.shoot("signin")
    assert_accessible(page.driver)

    page.sign_in("ann", "user", "s1", then=WIKI)
    assert "Wiki Sync wants to connect to One" in page.main()
    accept = page.button("Accept")
    assert accept.is_enabled()
    page.shoot("consent-allowed")
    assert_accessible(page.driver)
    page.click(accept)
    assert "You have connected Wiki Sync to this site" in page.main()
    # Apps link here from their own site: the session cookie (SameSite=Lax) must come along.
    elsewhere = f"<a href='{service.url}{CHAT}'>Connect Chat Bot</a>"
    page.driver.get("data:text/html," + quote(elsewhere))
    page.click(page.link("Connect Chat Bot"))
    assert page.driver.current_url == service.url + CHAT
    assert "Chat Bot wants to connect to One" in page.main()

    page.sign_in("alice", "org-admin", then=CONSOLE)
    assert "User-installed apps Allowed" in page.main()
    assert "Wiki Sync wiki-sync Users 1 read:page write:page" in page.main_shows("Wiki Sync")
    page.shoot("console-allowed")
    assert_accessible(page.driver)
    # Block with the keyboard only: type a reason, then Enter on the focused button.
    page.driver.find_element(By.ID, "policy-reason").send_keys("vendor review")
    block = page.button("Block user apps")
    page.driver.execute_script("arguments[0].focus()", block)
    page.click(block, Keys.ENTER)
    assert "User-installed apps Blocked Changed by alice" in page.main()
    assert "Reason vendor review" in page.main()
    page.shoot("console-blocked")
    assert_accessible(page.driver)

    page.sign_in("ben", "user", "s1", then=CHAT)
    alert = page.driver.find_element(By.CSS_SELECTOR, "[role=alert]")
    assert BLOCKED_ALERT in alert.text
    assert not page.button("Accept").is_enabled()
    assert page.button("Cancel").is_enabled()
    page.shoot("consent-blocked")
    assert_accessible(page.driver)
    page.click(page.button("Cancel"))
    assert "Chat Bot was not connected" in page.main()


def test_an_admin_removes_an_app_and_it_disappears(page: Page, service: Service) -> None:
    register_site(service)
    install(service, "ann", "wiki-sync", "Wiki Sync")
    install(service, "ben", "chat-bot", "Chat Bot")
    page.sign_in("alice", "org-admin", then="/admin/sites")
    page.shoot("sites")
    assert_accessible(page.driver)
    page.click(page.link("One"))
    shown = page.main_shows("Chat Bot")
    assert "Wiki Sync" in shown and "Chat Bot" in shown
    page.shoot("console")
    page.click(page.link("Remove Wiki Sync"))
    assert "Remove Wiki Sync?" in page.main()
    page.shoot("remove-confirm")
    assert_accessible(page.driver)
    page.driver.find_element(By.ID, "removal-reason").send_keys("no longer used")
    page.click(page.button("Remove app"))
    assert page.driver.current_url.startswith(service.url + CONSOLE + "?min_position=")
    rows = [row.text for row in page.driver.find_elements(By.CSS_SELECTOR, "table.apps tbody tr")]
    assert len(rows) == 1 and rows[0].startswith("Chat Bot")
    assert "Wiki Sync" not in page.main()

    page.click(page.link("History"))
    assert "alice removed Wiki Sync for everyone on the site (reason: no longer used)" in (
        page.main()
    )
    page.shoot("timeline")
    assert_accessible(page.driver)


def test_a_user_requests_an_app_and_an_admin_approves_it(page: Page, service: Service) -> None:
    register_site(service)
    admin = service.token("alice", "org-admin")
    blocked = httpx2.put(
        f"{service.url}/v1/sites/s1/policy/user-installs",
        json={"state": "blocked"},
        headers=admin,
    )
    caught_up(service, blocked, admin)
    page.sign_in("ben", "user", "s1", then=CHAT)
    assert not page.button("Accept").is_enabled()
    page.driver.find_element(By.ID, "justification").send_keys("the team chats there")
    page.click(page.button("Request access"))
    assert "Your request is waiting for an admin" in page.main()
    page.shoot("consent-requested")
    assert_accessible(page.driver)

    page.sign_in("alice", "org-admin", then="/admin/sites/s1/app-requests")
    assert "chat-bot~1" in page.main_shows("chat-bot~1")
    page.shoot("app-requests")
    assert_accessible(page.driver)
    page.click(page.button("Approve Chat Bot"))
    assert "No open requests." in page.main()
    assert "Approved apps (1)" in page.main()
    page.shoot("app-requests-approved")
    assert_accessible(page.driver)

    page.sign_in("ben", "user", "s1", then=CHAT)
    page.click(page.button("Accept"))
    assert "You have connected Chat Bot to this site" in page.main()

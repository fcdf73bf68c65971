"""Who may call each endpoint: the one source of docs/authorization.md and of its test.

Add an endpoint by adding one `Rule` line to MATRIX. The test fails for any route of the app that
has no rule (and for any rule whose route is gone), then checks every cell against the running
API. Regenerate the document with:

    python -m tests.integration.authorization_matrix > docs/authorization.md
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# The callers every cell is tried with. All of them belong to org "acme" except other_org_admin
# (org "globex"); the site under test is "s1", the other site "s2".
PERSONAS: dict[str, str] = {
    "anonymous": "no token",
    "site_user": "user of the site",
    "other_site_user": "user of another site",
    "site_admin": "site-admin of the site",
    "other_site_admin": "site-admin of another site",
    "org_admin": "org-admin",
    "other_org_admin": "org-admin of another org",
    "auditor": "auditor of the org",
}

EVERYONE = frozenset(PERSONAS)
SIGNED_IN = EVERYONE - {"anonymous"}
NOBODY: frozenset[str] = frozenset()
ADMINS = frozenset({"site_admin", "org_admin"})
ADMINS_AND_AUDITOR = ADMINS | {"auditor"}
SITE_MEMBERS = ADMINS | {"site_user"}
ORG_ADMIN = frozenset({"org_admin"})
# The audit trail is the caller's own organization's: another org's admin reads its own.
AUDIT_READERS = frozenset({"org_admin", "other_org_admin", "auditor"})


@dataclass(frozen=True)
class Rule:
    """One endpoint: who may call it. Everyone else is refused (see `expected_status`)."""

    method: str
    path: str  # the route's template, e.g. /v1/sites/{site_id}/policy
    allowed: frozenset[str]
    query: str = ""  # query string needed for a valid call, e.g. "app_id=x"
    body: dict[str, Any] | None = None
    # Made before each call, so that an allowed caller meets a state where the call succeeds:
    # "grant" (the caller installs {app_id}), "connected" (an org-admin installs {app_id}),
    # "blocked" (user installs are blocked on the site during the call), "case" (also, a user
    # of the site has requested {app_id}: an open request case {case_id}), "own_case" (the
    # caller requested it, when it may), "webhook" (an org-admin registered {webhook_id}).
    setup: str | None = None
    note: str = ""
    # A browser page: the caller is signed in by the session cookie, sends `form` (with the CSRF
    # token a browser would have), and success may be a redirect (303, Post/Redirect/Get).
    page: bool = False
    form: dict[str, str] | None = None
    # When refusals differ from `expected_status`: for every refused signed-in caller, and for
    # the anonymous one.
    refused: str | None = None
    anonymous: str | None = None
    # Single cells that differ from all of the above, e.g. {"org_admin": "409"}.
    cells: dict[str, str] = field(default_factory=dict)


MATRIX: tuple[Rule, ...] = (
    Rule("GET", "/health", EVERYONE, note="liveness"),
    Rule("GET", "/ready", EVERYONE, note="readiness; 503 while the database is away"),
    Rule("GET", "/openapi.json", EVERYONE),
    Rule("GET", "/docs", EVERYONE),
    Rule("GET", "/docs/oauth2-redirect", EVERYONE),
    Rule("GET", "/redoc", EVERYONE),
    Rule(
        "PUT",
        "/v1/orgs/{org_id}/sites/{site_id}",
        frozenset({"org_admin"}),
        body={"name": "Site One"},
    ),
    Rule(
        "GET",
        "/v1/orgs/{org_id}/sites",
        frozenset({"site_admin", "other_site_admin", "org_admin", "auditor"}),
        note="site-admins see only their sites",
    ),
    Rule("GET", "/v1/sites/{site_id}/policy", ADMINS_AND_AUDITOR),
    Rule("PUT", "/v1/sites/{site_id}/policy/user-installs", ADMINS, body={"state": "allowed"}),
    Rule(
        "POST",
        "/v1/sites/{site_id}/installations",
        SITE_MEMBERS,
        body={"app_id": "{app_id}", "app_name": "App", "scopes": ["read"]},
        note="admins install as admins",
    ),
    Rule("DELETE", "/v1/sites/{site_id}/installations/{app_id}", SITE_MEMBERS, setup="grant"),
    Rule("GET", "/v1/sites/{site_id}/consent", SITE_MEMBERS, query="app_id=x"),
    Rule("GET", "/v1/sites/{site_id}/connected-apps", ADMINS_AND_AUDITOR),
    Rule("DELETE", "/v1/sites/{site_id}/connected-apps/{app_id}", ADMINS, setup="connected"),
    Rule("GET", "/v1/sites/{site_id}/history", ADMINS_AND_AUDITOR),
    Rule("GET", "/v1/sites/{site_id}/apps", ADMINS_AND_AUDITOR),
    Rule("GET", "/v1/sites/{site_id}/apps/{app_id}/approval", ADMINS_AND_AUDITOR),
    Rule(
        "PUT",
        "/v1/sites/{site_id}/apps/{app_id}/approval",
        ADMINS,
        body={"status": "approved", "app_name": "App", "scopes": ["read"]},
    ),
    Rule("DELETE", "/v1/sites/{site_id}/apps/{app_id}/approval", ADMINS),
    Rule(
        "POST",
        "/v1/sites/{site_id}/app-requests",
        frozenset({"site_user"}),
        body={"app_id": "{app_id}", "app_name": "App", "justification": "needed"},
        setup="blocked",
        cells={"site_admin": "409", "org_admin": "409"},
        note="admins may install: 409 request_not_needed",
    ),
    Rule("GET", "/v1/sites/{site_id}/app-requests", ADMINS_AND_AUDITOR),
    Rule("GET", "/v1/sites/{site_id}/app-requests/{case_id}", ADMINS_AND_AUDITOR, setup="case"),
    Rule(
        "POST", "/v1/sites/{site_id}/app-requests/{case_id}/approve", ADMINS, body={}, setup="case"
    ),
    Rule(
        "POST",
        "/v1/sites/{site_id}/app-requests/{case_id}/deny",
        ADMINS,
        body={"reason": "not now"},
        setup="case",
    ),
    Rule(
        "POST",
        "/v1/sites/{site_id}/app-requests/{case_id}/block",
        ADMINS,
        body={"reason": "not ever"},
        setup="case",
    ),
    Rule(
        "DELETE",
        "/v1/sites/{site_id}/app-requests/{case_id}/mine",
        frozenset({"site_user"}),
        setup="own_case",
        refused="404",
        note="only one's own request: others have none in the case (404)",
    ),
    Rule("GET", "/v1/me/app-requests", SIGNED_IN, note="the caller's own requests"),
    Rule(
        "POST",
        "/v1/orgs/{org_id}/webhooks",
        ORG_ADMIN,
        body={
            "url": "https://hooks.example.test/governance",
            "event_types": ["io.governance.site.user_installs.blocked.v1"],
            "secret": "matrix-secret-0123456789",
        },
    ),
    Rule("GET", "/v1/orgs/{org_id}/webhooks", ORG_ADMIN),
    Rule("GET", "/v1/orgs/{org_id}/webhooks/{webhook_id}", ORG_ADMIN, setup="webhook"),
    Rule("DELETE", "/v1/orgs/{org_id}/webhooks/{webhook_id}", ORG_ADMIN, setup="webhook"),
    Rule("GET", "/v1/orgs/{org_id}/webhooks/{webhook_id}/dead-letters", ORG_ADMIN, setup="webhook"),
    Rule("GET", "/v1/audit/events", AUDIT_READERS, note="each org reads its own trail"),
    Rule("GET", "/v1/audit/verify", AUDIT_READERS, note="the hash chain of the whole log"),
    Rule("GET", "/metrics", EVERYONE, note="Prometheus scrape: counters, no identities"),
    # Browser pages (signed in with the session cookie).
    Rule("GET", "/signin", EVERYONE, page=True),
    Rule("POST", "/signin", SIGNED_IN, page=True, form={"token": "{token}"}, anonymous="401"),
    Rule("POST", "/signout", EVERYONE, page=True, form={}),
    Rule("GET", "/", SIGNED_IN, page=True, note="admins and auditors go on to the console"),
    Rule("GET", "/static/governance.css", EVERYONE, page=True),
    Rule("GET", "/favicon.ico", EVERYONE, page=True),
    Rule(
        "GET",
        "/admin/sites",
        frozenset({"site_admin", "other_site_admin", "org_admin", "other_org_admin", "auditor"}),
        page=True,
        note="each sees the sites of their own org they administer or audit",
    ),
    Rule("GET", "/admin/sites/{site_id}/connected-apps", ADMINS_AND_AUDITOR, page=True),
    Rule(
        "POST",
        "/admin/sites/{site_id}/user-installs",
        ADMINS,
        page=True,
        form={"state": "allowed", "expected_policy_version": "{policy_version}"},
    ),
    Rule(
        "GET",
        "/admin/sites/{site_id}/connected-apps/{app_id}/remove",
        ADMINS,
        page=True,
        setup="connected",
    ),
    Rule(
        "POST",
        "/admin/sites/{site_id}/connected-apps/{app_id}/remove",
        ADMINS,
        page=True,
        setup="connected",
        form={"reason": "matrix"},
    ),
    Rule("GET", "/admin/sites/{site_id}/history", ADMINS_AND_AUDITOR, page=True),
    Rule("GET", "/admin/{rest:path}", NOBODY, page=True, refused="404", note="unknown pages"),
    Rule(
        "GET",
        "/consent",
        SITE_MEMBERS,
        page=True,
        query="site_id=s1&app_id={app_id}&app_name=App",
    ),
    Rule(
        "POST",
        "/consent",
        SITE_MEMBERS,
        page=True,
        query="site_id=s1&app_id={app_id}&app_name=App&scopes=read",
        form={"decision": "accept"},
    ),
    Rule("GET", "/consent/cancelled", SIGNED_IN, page=True),
    Rule(
        "POST",
        "/consent/request",
        frozenset({"site_user"}),
        page=True,
        query="site_id=s1&app_id={app_id}&app_name=App&scopes=read",
        form={"justification": "needed"},
        setup="blocked",
        cells={"site_admin": "409", "org_admin": "409"},
        note="admins may install: 409",
    ),
    Rule("GET", "/admin/sites/{site_id}/app-requests", ADMINS_AND_AUDITOR, page=True),
    Rule(
        "POST",
        "/admin/sites/{site_id}/app-requests/{case_id}/decide",
        ADMINS,
        page=True,
        form={"outcome": "deny", "reason": "not now"},
        setup="case",
    ),
)


def expected_status(rule: Rule, persona: str) -> str:
    """'ok' when allowed (2xx; for pages 2xx or a redirect); else 401 without a token (pages:
    303 to the sign-in form), 404 across orgs (no tenant learns of another's sites), 403
    inside the org."""
    if persona in rule.cells:
        return rule.cells[persona]
    if persona in rule.allowed:
        return "ok"
    if persona == "anonymous":
        return rule.anonymous or ("303" if rule.page else "401")
    if rule.refused is not None:
        return rule.refused
    if persona == "other_org_admin":
        return "404"
    return "403"


def render() -> str:
    """docs/authorization.md."""
    names = list(PERSONAS)
    lines = [
        "# Authorization matrix",
        "",
        "Generated from `tests/integration/authorization_matrix.py`, which the test suite checks",
        "against the running API on both backends. Do not edit by hand: add a `Rule` there and run",
        "`python -m tests.integration.authorization_matrix > docs/authorization.md`.",
        "",
        "✓ = allowed (2xx; for pages also a 303 to the page showing the result). Refusals:"
        " **401** without a valid token (pages: **303** to the sign-in form), **404** for"
        " callers of another organization (the site or org is not revealed), **403** for"
        " callers of the same organization without the role. Pages sign in with the session"
        " cookie and send the CSRF token their form carries.",
        "",
        "Columns: " + "; ".join(f"`{n}` = {PERSONAS[n]}" for n in names) + ".",
        "",
        "| endpoint | " + " | ".join(f"`{n}`" for n in names) + " | note |",
        "|---|" + "---|" * len(names) + "---|",
    ]
    for rule in MATRIX:
        cells = [expected_status(rule, n).replace("ok", "✓") for n in names]
        lines.append(f"| `{rule.method} {rule.path}` | " + " | ".join(cells) + f" | {rule.note} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render(), end="")

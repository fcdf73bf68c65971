"""`governance demo` as a newcomer uses it: run it, start the API, paste the printed lines."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from governance.api.app import create_app
from governance.config import Settings
from governance.demo import DemoRefused, run_demo
from governance.runtime import Runtime

NOW = datetime(2026, 3, 1, 18, 0, tzinfo=UTC)


def exported(printed: str) -> dict[str, str]:
    return dict(re.findall(r"^export (\w+)=(\S+)$", printed, flags=re.MULTILINE))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_the_demo_fills_the_views_with_a_past_that_as_of_can_see(settings: Settings) -> None:
    printed = run_demo(settings, now=NOW)
    names = exported(printed)
    assert set(names) == {"ORG_ADMIN", "SITE_ADMIN", "END_USER", "AUDITOR", "URL"}
    for path in ("/v1/orgs/acme/sites", "/connected-apps?as_of=", "/history", "/consent?app_id="):
        assert path in printed
    as_of = re.search(r"as_of=(\S+)\"", printed)
    assert as_of is not None

    runtime = Runtime(settings)
    try:
        with TestClient(create_app(runtime=runtime)) as client:
            org_admin, site_admin = bearer(names["ORG_ADMIN"]), bearer(names["SITE_ADMIN"])
            auditor, end_user = bearer(names["AUDITOR"]), bearer(names["END_USER"])
            sites = client.get("/v1/orgs/acme/sites", headers=org_admin).json()["sites"]
            assert len(sites) == 4
            assert {s["site_id"]: s["user_installs"] for s in sites}["eng"] == "blocked"

            def apps(**params: str) -> dict[str, int]:
                body = client.get(
                    "/v1/sites/eng/connected-apps", params=params, headers=site_admin
                ).json()
                return {app["app_id"]: app["user_count"] for app in body["apps"]}

            now, then = apps(), apps(as_of=as_of.group(1))
            assert len(now) >= 4 and now != then
            assert "slack-notify" in then and "slack-notify" not in now  # removed 3 days ago
            assert "team-calendar" in now and "team-calendar" not in then  # installed 5 days ago

            policy_then = client.get(
                f"/v1/sites/eng/policy?as_of={as_of.group(1)}", headers=auditor
            ).json()
            assert (policy_then["user_installs"], policy_then["version"]) == ("allowed", 1)

            history = client.get("/v1/sites/eng/history", headers=auditor).json()["events"]
            types = [entry["type"] for entry in history]
            assert {"UserInstallsBlocked", "InstallBlocked", "AppRemoved", "AppUninstalled"} <= set(
                types
            )
            moments = [datetime.fromisoformat(entry["occurred_at"]) for entry in history]
            assert moments == sorted(moments)
            assert NOW - timedelta(days=22) < moments[0] < moments[-1] < NOW
            assert all(entry["request_id"].startswith("demo-") for entry in history)

            consent = client.get("/v1/sites/eng/consent?app_id=chat-assist", headers=end_user)
            assert consent.json()["decision"] == "deny"
    finally:
        runtime.close()


def test_the_demo_refuses_a_store_that_holds_events(settings: Settings) -> None:
    run_demo(settings, now=NOW)
    with pytest.raises(DemoRefused, match="already holds events"):
        run_demo(settings, now=NOW)

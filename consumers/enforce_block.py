"""enforce-block: a block with `existing_user_installs: remove` removes the apps users installed.

It acts through the public API, as an org-admin service account acting on behalf of the admin
who blocked, so every removal lands in the site's history with its reason. Apps an admin
installed stay, and so do apps on the site's approved list: users may install those while
installs are blocked, so the block does not forbid them. Each step is safe to repeat: an app
that is already gone (404) counts as removed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote

from consumers import http
from consumers.cloudevents import USER_INSTALLS_BLOCKED, CloudEvent
from consumers.processing import Effect, ReactionFailed
from projections.store import Tx

NAME = "enforce-block"
SERVICE_ACCOUNT = "svc:enforce-block"

# (org id, on behalf of) -> a short-lived bearer token for the service account.
MintToken = Callable[[str, str], str]


def removal_reason(policy_version: int) -> str:
    return (
        f"user installs blocked under policy v{policy_version} with existing_user_installs=remove"
    )


class EnforceBlock:
    name = NAME
    tables: Sequence[str] = (
        """CREATE TABLE IF NOT EXISTS enforced_blocks (
            event_id TEXT PRIMARY KEY,
            site_id TEXT NOT NULL,
            policy_version INTEGER NOT NULL,
            removed_apps TEXT NOT NULL,
            enforced_at BIGINT NOT NULL
        )""",
    )

    def __init__(self, api_url: str, mint: MintToken, timeout: float = 10.0) -> None:
        self._api = api_url.rstrip("/")
        self._mint = mint
        self._timeout = timeout

    def wants(self, event: CloudEvent) -> bool:
        removes = event["data"].get("existing_user_installs") == "remove"
        return bool(event["type"] == USER_INSTALLS_BLOCKED and removes)

    def react(self, event: CloudEvent) -> Effect:
        data = event["data"]
        site_id, version = str(data["site_id"]), int(data["policy_version"])
        headers = {
            "Authorization": f"Bearer {self._mint(str(data['org_id']), str(data['actor']))}",
            "Accept": "application/json",
            # The removals' request id names the block they enforce.
            "X-Request-Id": f"{NAME}:{event['id']}",
        }
        apps = f"/v1/sites/{quote(site_id, safe='')}/connected-apps"
        # The list as of the block at least: min_position waits until the view includes it.
        at_block = {"min_position": event["position"]}
        connected = self._json("GET", apps, headers, at_block)["apps"]
        approved_list = f"/v1/sites/{quote(site_id, safe='')}/apps"
        approved = {
            app["app_id"]
            for app in self._json("GET", approved_list, headers, at_block | {"status": "approved"})[
                "apps"
            ]
        }
        removed = []
        reason = removal_reason(version)
        for app in connected:
            if app["installed_by"] == "Admins" or app["app_id"] in approved:
                continue  # an admin installed it, or approved it for users: it stays
            app_id = str(app["app_id"])
            answer = self._call(
                "DELETE", f"{apps}/{quote(app_id, safe='')}", headers, {"reason": reason}
            )
            if answer.status not in (204, 404):  # 404: already gone, which is what we want
                raise ReactionFailed(f"removing {app_id} from {site_id} answered {answer.status}")
            removed.append(app_id)

        def record(tx: Tx) -> None:
            tx.execute(
                "INSERT INTO enforced_blocks (event_id, site_id, policy_version, removed_apps,"
                " enforced_at) VALUES (%(e)s, %(s)s, %(v)s, %(apps)s, %(t)s)",
                {
                    "e": event["id"],
                    "s": site_id,
                    "v": version,
                    "apps": json.dumps(removed),
                    "t": time.time_ns() // 1000,
                },
            )

        return record

    def _json(
        self, method: str, path: str, headers: dict[str, str], params: dict[str, str | int]
    ) -> Any:
        answer = self._call(method, path, headers, params)
        if answer.status != 200:
            raise ReactionFailed(f"{method} {path} answered {answer.status}")
        return answer.json()

    def _call(
        self, method: str, path: str, headers: dict[str, str], params: dict[str, str | int]
    ) -> http.Answer:
        try:
            return http.send(
                method, self._api + path, headers=headers, params=params, timeout=self._timeout
            )
        except http.Unreachable as error:
            raise ReactionFailed(f"the API at {self._api} is unreachable: {error}") from None

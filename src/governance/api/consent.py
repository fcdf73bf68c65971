"""The consent screen's question, answered from memory kept current from the read models.

The same checks and rule as `usecases.consent_for` (which the web page uses): a missing or
foreign site is a 404, a caller who may not install on the site a 403, then `decide`. Only the
reading differs: `Runtime.consent_inputs` serves the rows from memory while the views have not
moved, so a repeated question costs no I/O and no worker thread. A miss, and a `min_position`
the views have not been seen to reach, wait in a worker thread; the event loop never blocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Literal

from anyio import to_thread

from governance.api.access import installer_role, same_org
from governance.api.deps import reach_position
from governance.api.schemas import ConsentDecision
from governance.auth import Principal
from governance.domain.consent import Decision, decide
from governance.domain.grant import InstalledBy
from governance.domain.site import AppList, UserInstalls
from governance.runtime import Runtime
from projections.consent_inputs import ConsentInputs


async def consent_body(
    runtime: Runtime,
    principal: Principal,
    site_id: str,
    app_id: str,
    scopes: Sequence[str],
    min_position: int | None,
) -> bytes:
    """The decision for the caller, as the JSON body of the answer."""
    cache = runtime.consent_inputs
    if min_position is not None and min_position > cache.position:
        await to_thread.run_sync(_catch_up, runtime, min_position)
    account = principal.account_id
    inputs = cache.cached(site_id, app_id, account)
    if inputs is None:
        inputs = await to_thread.run_sync(cache.load, site_id, app_id, account)
    policy = inputs.policy
    org_id = same_org(principal, policy.org_id if policy else None)
    assert policy is not None
    verdict = _decide(inputs, installer_role(principal, org_id, site_id), scopes)
    decision: Literal["allow", "deny"] = "allow" if verdict.allowed else "deny"
    runtime.metrics.consent_decided(decision, verdict.reason.value)
    return _body(verdict, policy.version)


def _catch_up(runtime: Runtime, min_position: int) -> None:
    reach_position(runtime, min_position)
    runtime.consent_inputs.observe()  # so the entries served next are at least that new


def _decide(inputs: ConsentInputs, role: InstalledBy, scopes: Sequence[str]) -> Decision:
    """`decide`, as `usecases.consent_for` calls it, on the inputs held in memory."""
    assert inputs.policy is not None
    listed = inputs.listed
    granted = inputs.granted_scopes
    return decide(
        UserInstalls(inputs.policy.user_installs),
        role,
        scopes=scopes,
        granted=granted is not None and granted.issuperset(scopes),
        listed=AppList(listed.status) if listed else None,
        approved_scopes=listed.scopes if listed else [],
        pending_scopes=inputs.pending_scopes,
    )


@lru_cache(maxsize=1024)
def _body(verdict: Decision, policy_version: int) -> bytes:
    """Serialised once per distinct answer (a handful of reasons times the policy versions)."""
    return (
        ConsentDecision(
            decision="allow" if verdict.allowed else "deny",
            reason=verdict.reason.value,
            message=verdict.message,
            policy_version=policy_version,
            can_request=verdict.can_request,
        )
        .model_dump_json()
        .encode()
    )

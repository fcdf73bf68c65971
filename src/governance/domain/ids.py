"""Deterministic aggregate ids from natural keys, so commands find aggregates without a lookup."""

from __future__ import annotations

from uuid import UUID, uuid5

# A fixed namespace: changing it would orphan every stored aggregate.
NAMESPACE = UUID("6f1c2a7e-52a4-4d55-9a57-1d1f0c2b8e31")


def site_aggregate_id(site_id: str) -> UUID:
    return uuid5(NAMESPACE, f"site:{site_id}")


def grant_aggregate_id(site_id: str, app_id: str, account_id: str) -> UUID:
    # The separator cannot occur in the ids, so no two triples share a name.
    return uuid5(NAMESPACE, f"grant:{site_id}\x1f{app_id}\x1f{account_id}")


def request_case_aggregate_id(site_id: str, app_id: str) -> UUID:
    return uuid5(NAMESPACE, f"request-case:{site_id}\x1f{app_id}")

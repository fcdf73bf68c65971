"""Deterministic aggregate ids from natural keys, so commands find aggregates without a lookup."""

from __future__ import annotations

from uuid import UUID, uuid5

# A fixed namespace: changing it would orphan every stored aggregate.
NAMESPACE = UUID("6f1c2a7e-52a4-4d55-9a57-1d1f0c2b8e31")


def site_aggregate_id(site_id: str) -> UUID:
    return uuid5(NAMESPACE, f"site:{site_id}")

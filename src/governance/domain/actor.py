"""Who caused an event: recorded on every event, so the audit trail names them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Actor:
    """An account acting, the request it came from, and whom it acted for (when a service did)."""

    account_id: str
    request_id: str | None = None
    on_behalf_of: str | None = None

    def recorded(self) -> dict[str, str | None]:
        """The fields every event stores about its actor."""
        return {
            "actor": self.account_id,
            "on_behalf_of": self.on_behalf_of,
            "request_id": self.request_id,
        }

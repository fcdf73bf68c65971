"""Domain errors: a rule was broken. The HTTP layer maps each to one status code."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every rule the domain enforces."""

    code = "domain_error"


class SiteNotFound(DomainError):
    code = "site_not_found"


class SiteIdTaken(DomainError):
    """The site id is registered already, under another organization or another name."""

    code = "site_id_taken"


class StalePolicyVersion(DomainError):
    """An `If-Match` version no longer matches the current policy version."""

    code = "stale_policy_version"

    def __init__(self, expected: int, current: int) -> None:
        super().__init__(
            f"the policy is at version {current}, not {expected}; reload it and try again"
        )
        self.expected = expected
        self.current = current


class GrantNotFound(DomainError):
    """The account has no active grant of that app on that site."""

    code = "grant_not_found"


class AppNotConnected(DomainError):
    """No one has the app installed on that site."""

    code = "app_not_connected"


class CaseNotFound(DomainError):
    """No request case with that id on this site."""

    code = "case_not_found"


class CaseClosed(DomainError):
    """The case was decided (or closed otherwise) and cannot take another outcome."""

    code = "case_closed"


class RequestNotFound(DomainError):
    """The account has no open request in that case."""

    code = "request_not_found"


class ScopesNotRequested(DomainError):
    """An approval named scopes that no requester asked for."""

    code = "scopes_not_requested"


class AppIsBlocked(DomainError):
    """The app is on the site's blocked list: no one may install or request it."""

    code = "app_blocked"


class RequestNotNeeded(DomainError):
    """The account may install the app already, so there is nothing to ask an admin for."""

    code = "request_not_needed"

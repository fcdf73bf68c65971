"""Bearer tokens (HS256 JWTs) and what their claims allow."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import jwt


class Role(StrEnum):
    ORG_ADMIN = "org-admin"
    SITE_ADMIN = "site-admin"
    AUDITOR = "auditor"
    USER = "user"


class InvalidToken(Exception):
    """The token is missing, malformed, expired, wrongly signed or lacks a required claim."""


@dataclass(frozen=True)
class Principal:
    """The authenticated caller, as its token describes it."""

    account_id: str
    org_id: str
    roles: frozenset[Role]
    sites: frozenset[str]
    # A service acting for a person (claim `on_behalf_of`), recorded on the events it causes.
    on_behalf_of: str | None = None

    def has(self, *roles: Role) -> bool:
        """Whether the caller holds any of `roles`."""
        return not self.roles.isdisjoint(roles)

    def administers(self, org_id: str, site_id: str) -> bool:
        """Org admins administer every site of their org; site admins only the sites listed."""
        if org_id != self.org_id:
            return False
        return self.has(Role.ORG_ADMIN) or (self.has(Role.SITE_ADMIN) and site_id in self.sites)

    def audits(self, org_id: str) -> bool:
        return org_id == self.org_id and self.has(Role.AUDITOR)


_REQUIRED = ["sub", "org", "roles", "exp", "iat"]
_ALGORITHM = "HS256"


class TokenCodec:
    def __init__(self, secret: str, leeway_seconds: int = 30) -> None:
        self._secret = secret
        self._leeway = leeway_seconds

    def issue(
        self,
        *,
        sub: str,
        org: str,
        roles: Sequence[Role],
        sites: Sequence[str] = (),
        ttl_seconds: int = 3600,
        on_behalf_of: str | None = None,
    ) -> str:
        now = int(time.time())
        claims: dict[str, object] = {
            "sub": sub,
            "org": org,
            "roles": [str(r) for r in roles],
            "sites": list(sites),
            "iat": now,
            "exp": now + ttl_seconds,
        }
        if on_behalf_of is not None:
            claims["on_behalf_of"] = on_behalf_of
        return jwt.encode(claims, self._secret, algorithm=_ALGORITHM)

    def verify(self, token: str) -> Principal:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[_ALGORITHM],
                options={"require": _REQUIRED},
                leeway=self._leeway,
            )
        except jwt.PyJWTError as error:
            raise InvalidToken(str(error)) from None
        return _principal(claims)


def _principal(claims: dict[str, object]) -> Principal:
    sub, org, roles, sites = (claims.get(k) for k in ("sub", "org", "roles", "sites"))
    if not isinstance(sub, str) or not sub or not isinstance(org, str) or not org:
        raise InvalidToken("claims 'sub' and 'org' must be non-empty strings")
    if not isinstance(roles, list) or not roles:
        raise InvalidToken("claim 'roles' must be a non-empty list")
    try:
        parsed_roles = frozenset(Role(r) for r in roles)
    except ValueError:
        allowed = ", ".join(r.value for r in Role)
        raise InvalidToken(f"claim 'roles' may hold only: {allowed}") from None
    sites = [] if sites is None else sites
    if not isinstance(sites, list) or not all(isinstance(s, str) for s in sites):
        raise InvalidToken("claim 'sites' must be a list of site ids")
    on_behalf_of = claims.get("on_behalf_of")
    if on_behalf_of is not None and (not isinstance(on_behalf_of, str) or not on_behalf_of):
        raise InvalidToken("claim 'on_behalf_of' must be a non-empty string")
    return Principal(sub, org, parsed_roles, frozenset(sites), on_behalf_of)

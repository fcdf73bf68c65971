"""Bearer tokens and what their claims allow.

Two kinds of token are accepted: HS256 tokens this service issues itself (`governance token`,
the embedded default) and RS256/ES256 tokens from an identity provider, verified against its
JWKS (a URL or a file) with a configured issuer and audience.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import jwt


class Role(StrEnum):
    ORG_ADMIN = "org-admin"
    SITE_ADMIN = "site-admin"
    AUDITOR = "auditor"
    USER = "user"


class InvalidToken(Exception):
    """The token is missing, malformed, expired, wrongly signed or lacks a required claim."""


class KeysUnavailable(Exception):
    """The identity provider's keys cannot be fetched now: not the caller's fault (503)."""


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
# Asymmetric algorithms only: an HS256 token is never checked with a public key as its secret.
_IDP_ALGORITHMS = ["RS256", "ES256"]
_IDP_REQUIRED = [*_REQUIRED, "iss", "aud"]


class KeySource(Protocol):
    """Finds the public key that signed a token, by the token's `kid`."""

    def key_for(self, token: str, kid: str | None) -> Any: ...


# How long a JWKS fetched from a URL is trusted before it is fetched again (seconds).
JWKS_LIFESPAN = 300


class JwksFile:
    """A JWKS document on disk, read once."""

    def __init__(self, path: Path) -> None:
        try:
            self._keys = jwt.PyJWKSet.from_json(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, jwt.PyJWTError) as error:
            raise ValueError(f"cannot use the JWKS file {path.name}: {error}") from None

    def key_for(self, token: str, kid: str | None) -> Any:
        keys = self._keys.keys
        if kid is None and len(keys) == 1:
            return keys[0].key
        for key in keys:
            if key.key_id == kid:
                return key.key
        raise InvalidToken("no signing key of the identity provider matches the token's kid")


class JwksUrl:
    """The identity provider's JWKS endpoint, cached; refetched when an unknown `kid` appears."""

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self._client = jwt.PyJWKClient(
            url, cache_keys=True, lifespan=JWKS_LIFESPAN, timeout=timeout
        )

    def trusted_until(self) -> float:
        """When the keys fetched last expire from the cache (wall-clock seconds; now if none)."""
        cache = self._client.jwk_set_cache
        fetched = cache.jwk_set_with_timestamp if cache is not None else None
        if fetched is None:
            return time.time()
        left = fetched.get_timestamp() + JWKS_LIFESPAN - time.monotonic()
        return time.time() + max(0.0, left)

    def key_for(self, token: str, kid: str | None) -> Any:
        try:
            return self._client.get_signing_key_from_jwt(token).key
        except jwt.PyJWKClientConnectionError:
            raise KeysUnavailable("the identity provider's keys cannot be fetched") from None
        except jwt.PyJWTError as error:
            raise InvalidToken(str(error)) from None


@dataclass(frozen=True)
class IdentityProvider:
    keys: KeySource
    issuer: str
    audience: str


class VerifiedTokens:
    """Tokens verified lately and whom they name, so a caller's next request skips the crypto.

    Keyed by the whole token string (a changed byte is another key, verified afresh). An entry
    lasts until the token's `exp` and, for an identity provider's token, never longer than the
    provider's keys are cached, so a key withdrawn from the JWKS stops working as it would have
    without this cache. Bounded: the least recently used entries go first.
    """

    def __init__(self, max_entries: int = 10_000) -> None:
        self._max = max_entries
        self._entries: OrderedDict[str, tuple[float, Principal]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, token: str, now: float | None = None) -> Principal | None:
        with self._lock:
            entry = self._entries.get(token)
            if entry is None:
                return None
            until, principal = entry
            if (time.time() if now is None else now) >= until:
                del self._entries[token]
                return None
            self._entries.move_to_end(token)
            return principal

    def put(self, token: str, principal: Principal, until: float) -> None:
        with self._lock:
            self._entries[token] = (until, principal)
            self._entries.move_to_end(token)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


class TokenCodec:
    def __init__(
        self,
        secret: str,
        leeway_seconds: int = 30,
        identity_provider: IdentityProvider | None = None,
        verified: VerifiedTokens | None = None,
    ) -> None:
        self._secret = secret
        self._leeway = leeway_seconds
        self._idp = identity_provider
        self.verified = verified if verified is not None else VerifiedTokens()

    @property
    def may_fetch_keys(self) -> bool:
        """Whether verifying a token may wait on the network (a JWKS URL): then not on a loop."""
        return self._idp is not None and isinstance(self._idp.keys, JwksUrl)

    def verified_already(self, token: str) -> Principal | None:
        """The caller of a token verified lately and still valid; None means verify it."""
        return self.verified.get(token)

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
        """The caller the token names, or InvalidToken (also for `alg: none` and unknown keys)."""
        known = self.verified.get(token)
        if known is not None:
            return known
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as error:
            raise InvalidToken(str(error)) from None
        algorithm = header.get("alg")
        if algorithm == _ALGORITHM:
            principal, expires = self._decode(token, self._secret, [_ALGORITHM], _REQUIRED)
            self.verified.put(token, principal, expires)
            return principal
        if self._idp is None or algorithm not in _IDP_ALGORITHMS:
            raise InvalidToken(f"tokens signed with {str(algorithm)[:20]!r} are not accepted")
        kid = header.get("kid")
        key = self._idp.keys.key_for(token, kid if isinstance(kid, str) else None)
        principal, expires = self._decode(token, key, [algorithm], _IDP_REQUIRED)
        if isinstance(self._idp.keys, JwksUrl):
            expires = min(expires, self._idp.keys.trusted_until())
        self.verified.put(token, principal, expires)
        return principal

    def _decode(
        self, token: str, key: Any, algorithms: list[str], required: list[str]
    ) -> tuple[Principal, float]:
        idp = self._idp if required is _IDP_REQUIRED else None
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                options={"require": required},
                leeway=self._leeway,
                issuer=idp.issuer if idp else None,
                audience=idp.audience if idp else None,
            )
        except jwt.PyJWTError as error:
            raise InvalidToken(str(error)) from None
        # PyJWT checked the signature, exp, nbf and iat (none in the future), iss and aud.
        # A verified token is remembered until its `exp` (PyJWT allows the leeway beyond it).
        return _principal(claims), float(claims["exp"])


_MAX_ID = 255
_MAX_SITES = 1000


def _plain_id(value: object) -> bool:
    """Account and org ids end up in events, views and logs: short, without control characters."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= _MAX_ID
        and not any(ch < " " or ch == "\x7f" for ch in value)
    )


def _principal(claims: dict[str, object]) -> Principal:
    sub, org, roles, sites = (claims.get(k) for k in ("sub", "org", "roles", "sites"))
    if not _plain_id(sub) or not _plain_id(org):
        raise InvalidToken(
            f"claims 'sub' and 'org' must be strings of 1 to {_MAX_ID} characters"
            " without control characters"
        )
    assert isinstance(sub, str) and isinstance(org, str)
    if not isinstance(roles, list) or not roles:
        raise InvalidToken("claim 'roles' must be a non-empty list")
    try:
        parsed_roles = frozenset(Role(r) for r in roles)
    except ValueError:
        allowed = ", ".join(r.value for r in Role)
        raise InvalidToken(f"claim 'roles' may hold only: {allowed}") from None
    sites = [] if sites is None else sites
    if (
        not isinstance(sites, list)
        or len(sites) > _MAX_SITES
        or not all(_plain_id(s) for s in sites)
    ):
        raise InvalidToken(f"claim 'sites' must be a list of at most {_MAX_SITES} site ids")
    on_behalf_of = claims.get("on_behalf_of")
    if on_behalf_of is not None and not _plain_id(on_behalf_of):
        raise InvalidToken(
            f"claim 'on_behalf_of' must be a string of 1 to {_MAX_ID} characters"
            " without control characters"
        )
    assert on_behalf_of is None or isinstance(on_behalf_of, str)
    return Principal(sub, org, parsed_roles, frozenset(sites), on_behalf_of)

"""Tokens: our own HS256 ones, and RS256/ES256 ones from an identity provider's JWKS."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from governance.auth import (
    JWKS_LIFESPAN,
    IdentityProvider,
    InvalidToken,
    JwksFile,
    JwksUrl,
    KeySource,
    KeysUnavailable,
    Principal,
    Role,
    TokenCodec,
    VerifiedTokens,
)

ISSUER = "https://idp.example.test/"
AUDIENCE = "governance-api"
SECRET = "unit-test-secret-that-is-long-enough-000"


class Keys:
    """An RSA and an EC key pair of the identity provider, and one key it never published."""

    def __init__(self) -> None:
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def public_pem(self) -> bytes:
        return self.rsa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def jwks(self) -> dict[str, Any]:
        rsa_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.rsa.public_key()))
        ec_jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.ec.public_key()))
        return {
            "keys": [
                rsa_jwk | {"kid": "rsa-1", "alg": "RS256", "use": "sig"},
                ec_jwk | {"kid": "ec-1", "alg": "ES256", "use": "sig"},
            ]
        }


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys()


@pytest.fixture(scope="module")
def jwks_file(keys: Keys, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("idp") / "jwks.json"
    path.write_text(json.dumps(keys.jwks()), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def jwks_url(keys: Keys) -> Iterator[str]:
    """The JWKS served over HTTP by a tiny server on loopback, as an identity provider does."""
    document = json.dumps(keys.jwks()).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(document)))
            self.end_headers()
            self.wfile.write(document)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    server.shutdown()
    server.server_close()


def claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "sub": "ann",
        "org": "acme",
        "roles": ["user"],
        "sites": ["s1"],
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "nbf": now,
        "exp": now + 600,
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def codec(source: KeySource) -> TokenCodec:
    return TokenCodec(
        SECRET, leeway_seconds=30, identity_provider=IdentityProvider(source, ISSUER, AUDIENCE)
    )


@pytest.fixture(params=["file", "url"])
def idp_codec(request: pytest.FixtureRequest, jwks_file: Path, jwks_url: str) -> TokenCodec:
    source: KeySource = JwksFile(jwks_file) if request.param == "file" else JwksUrl(jwks_url)
    return codec(source)


def rs256(keys: Keys, body: dict[str, Any], kid: str = "rsa-1") -> str:
    return jwt.encode(body, keys.rsa, algorithm="RS256", headers={"kid": kid})


def es256(keys: Keys, body: dict[str, Any]) -> str:
    return jwt.encode(body, keys.ec, algorithm="ES256", headers={"kid": "ec-1"})


def _part(value: dict[str, Any] | bytes) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unsigned(body: dict[str, Any]) -> str:
    return f"{_part({'alg': 'none', 'typ': 'JWT'})}.{_part(body)}."


def hmac_signed(secret: bytes, body: dict[str, Any]) -> str:
    signing_input = f"{_part({'alg': 'HS256', 'typ': 'JWT', 'kid': 'rsa-1'})}.{_part(body)}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_part(signature)}"


def test_good_rs256_and_es256_tokens_name_the_caller(idp_codec: TokenCodec, keys: Keys) -> None:
    for token in (rs256(keys, claims()), es256(keys, claims())):
        principal = idp_codec.verify(token)
        assert (principal.account_id, principal.org_id) == ("ann", "acme")
        assert principal.roles == frozenset({Role.USER}) and principal.sites == frozenset({"s1"})


def test_our_own_hs256_tokens_still_work_beside_the_idp(idp_codec: TokenCodec) -> None:
    token = TokenCodec(SECRET).issue(sub="olga", org="acme", roles=[Role.ORG_ADMIN])
    assert idp_codec.verify(token).account_id == "olga"


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("expired", "expired"),
        ("not_yet_valid", "not yet valid"),
        ("issued_in_the_future", "not yet valid"),
        ("wrong_issuer", "issuer"),
        ("wrong_audience", "audience"),
        ("no_audience", "aud"),
        ("no_issuer", "iss"),
        ("no_expiry", "exp"),
        ("no_subject", "sub"),
        ("no_roles", "roles"),
        ("control_characters_in_sub", "sub"),
        ("huge_org", "org"),
        ("wrong_key", "signature"),
        ("unknown_kid", "signing key"),
        ("alg_none", "none"),
        ("hs256_with_the_public_key", "signature"),
        ("garbage", "segments"),
    ],
)
def test_bad_tokens_are_refused(
    idp_codec: TokenCodec, keys: Keys, case: str, expected: str
) -> None:
    now = int(time.time())
    tokens: dict[str, Callable[[], str]] = {
        "expired": lambda: rs256(keys, claims(iat=now - 7200, nbf=now - 7200, exp=now - 3600)),
        "not_yet_valid": lambda: rs256(keys, claims(nbf=now + 3600)),
        "issued_in_the_future": lambda: es256(keys, claims(iat=now + 3600)),
        "wrong_issuer": lambda: rs256(keys, claims(iss="https://evil.test/")),
        "wrong_audience": lambda: rs256(keys, claims(aud="another-api")),
        "no_audience": lambda: rs256(keys, claims(aud=None)),
        "no_issuer": lambda: rs256(keys, claims(iss=None)),
        "no_expiry": lambda: rs256(keys, claims(exp=None)),
        "no_subject": lambda: rs256(keys, claims(sub=None)),
        "no_roles": lambda: rs256(keys, claims(roles=None)),
        "control_characters_in_sub": lambda: rs256(keys, claims(sub="ann\x00")),
        "huge_org": lambda: es256(keys, claims(org="o" * 256)),
        "wrong_key": lambda: jwt.encode(
            claims(), keys.stranger, algorithm="RS256", headers={"kid": "rsa-1"}
        ),
        "unknown_kid": lambda: rs256(keys, claims(), kid="rotated-away"),
        "alg_none": lambda: unsigned(claims()),
        # The classic confusion: the public key used as an HMAC secret.
        "hs256_with_the_public_key": lambda: hmac_signed(keys.public_pem(), claims()),
        "garbage": lambda: "not.a-token",
    }
    with pytest.raises(InvalidToken) as refused:
        idp_codec.verify(tokens[case]())
    assert expected in str(refused.value).lower()


def test_a_small_clock_skew_is_tolerated(idp_codec: TokenCodec, keys: Keys) -> None:
    now = int(time.time())
    skewed = rs256(keys, claims(iat=now + 10, nbf=now + 10, exp=now - 10 + 600))
    assert idp_codec.verify(skewed).account_id == "ann"
    just_expired = rs256(keys, claims(iat=now - 700, nbf=now - 700, exp=now - 10))
    assert idp_codec.verify(just_expired).account_id == "ann"


def test_without_an_idp_asymmetric_and_unsigned_tokens_are_refused(keys: Keys) -> None:
    plain = TokenCodec(SECRET)
    for token in (rs256(keys, claims()), unsigned(claims())):
        with pytest.raises(InvalidToken):
            plain.verify(token)


def test_an_unreachable_jwks_url_is_unavailable_not_invalid(keys: Keys) -> None:
    # A closed loopback port: the provider is down, which is not the caller's fault.
    unreachable = codec(JwksUrl("http://127.0.0.1:9/jwks.json", timeout=1))
    with pytest.raises(KeysUnavailable):
        unreachable.verify(rs256(keys, claims()))


def test_a_verified_token_is_remembered_until_its_exp_and_no_longer() -> None:
    codec = TokenCodec(SECRET)
    token = codec.issue(sub="ann", org="acme", roles=[Role.USER], ttl_seconds=600)
    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    principal = codec.verify(token)
    assert codec.verified.get(token, now=exp - 1) == principal
    assert codec.verified.get(token, now=exp) is None


def test_a_changed_token_is_never_answered_from_the_cache() -> None:
    codec = TokenCodec(SECRET)
    token = codec.issue(sub="ann", org="acme", roles=[Role.USER])
    codec.verify(token)
    head, body, signature = token.split(".")
    forged = f"{head}.{body}.{'B' if signature[0] == 'A' else 'A'}{signature[1:]}"
    with pytest.raises(InvalidToken):
        codec.verify(forged)


def test_the_verified_tokens_are_bounded_the_least_recently_used_going_first() -> None:
    cache = VerifiedTokens(max_entries=3)
    principal = Principal("ann", "acme", frozenset({Role.USER}), frozenset())
    far = time.time() + 3600
    for name in ("a", "b", "c"):
        cache.put(name, principal, far)
    assert cache.get("a") == principal  # a is now the most recently used
    cache.put("d", principal, far)
    assert len(cache) == 3
    assert cache.get("b") is None and cache.get("a") == principal


def test_an_identity_provider_token_is_remembered_no_longer_than_its_keys(
    jwks_url: str, keys: Keys
) -> None:
    codec_ = codec(JwksUrl(jwks_url))
    token = rs256(keys, claims(exp=int(time.time()) + 3600))
    principal = codec_.verify(token)
    assert codec_.verified.get(token) == principal
    assert codec_.verified.get(token, now=time.time() + JWKS_LIFESPAN + 1) is None

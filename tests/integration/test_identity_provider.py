"""The API configured with an identity provider's JWKS, on both backends."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient

from governance.api.app import create_app
from governance.config import Settings
from governance.runtime import Runtime

ISSUER = "https://idp.example.test/"
AUDIENCE = "governance-api"


def es256(key: ec.EllipticCurvePrivateKey, **changes: Any) -> dict[str, str]:
    now = int(time.time())
    claims = {
        "sub": "olga",
        "org": "acme",
        "roles": ["org-admin"],
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 600,
    } | changes
    token = jwt.encode(claims, key, algorithm="ES256", headers={"kid": "ec-1"})
    return {"Authorization": f"Bearer {token}"}


def test_tokens_signed_by_the_identity_provider_are_accepted(
    settings: Settings, tmp_path: Path
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [jwk | {"kid": "ec-1", "alg": "ES256"}]}))
    configured = settings.model_copy(
        update={"jwks_file": jwks, "jwt_issuer": ISSUER, "jwt_audience": AUDIENCE}
    )
    runtime = Runtime(configured)
    try:
        with TestClient(create_app(runtime=runtime)) as client:
            body = {"name": "One"}
            good = client.put("/v1/orgs/acme/sites/s1", json=body, headers=es256(key))
            stranger = ec.generate_private_key(ec.SECP256R1())
            refused = {
                "wrong key": es256(stranger),
                "wrong audience": es256(key, aud="someone-else"),
                "expired": es256(key, iat=int(time.time()) - 7200, exp=int(time.time()) - 3600),
            }
            answers = {
                name: client.put("/v1/orgs/acme/sites/s1", json=body, headers=headers)
                for name, headers in refused.items()
            }
    finally:
        runtime.close()
    assert good.status_code == 201
    for name, answer in answers.items():
        assert answer.status_code == 401, name
        assert answer.json()["error"]["code"] == "invalid_token"


def test_an_unreachable_identity_provider_is_503_not_401(settings: Settings) -> None:
    configured = settings.model_copy(
        update={
            "jwks_url": "http://127.0.0.1:9/jwks.json",
            "jwt_issuer": ISSUER,
            "jwt_audience": AUDIENCE,
        }
    )
    runtime = Runtime(configured)
    try:
        with TestClient(create_app(runtime=runtime)) as client:
            answer = client.get(
                "/v1/orgs/acme/sites", headers=es256(ec.generate_private_key(ec.SECP256R1()))
            )
    finally:
        runtime.close()
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "identity_provider_unavailable"
    assert "Retry-After" in answer.headers

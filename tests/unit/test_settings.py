"""Settings that would run a shared deployment insecurely are refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from governance.config import InsecureConfiguration, Settings

URL = "postgresql://u:p@127.0.0.1:5432/db"


@pytest.mark.parametrize(
    "secret",
    [None, "change-me", "secret", "CHANGEME", "placeholder-placeholder-placeholder-42", "a" * 31],
)
def test_weak_secrets_are_refused_with_postgres(tmp_path: Path, secret: str | None) -> None:
    settings = Settings(data_dir=tmp_path, database_url=URL, jwt_secret=secret)
    with pytest.raises(InsecureConfiguration) as refused:
        settings.resolved_jwt_secret()
    if secret is not None:
        assert secret not in str(refused.value)


def test_a_strong_secret_is_used_and_the_embedded_default_makes_its_own(tmp_path: Path) -> None:
    strong = "k" * 16 + "0123456789abcdef"
    assert Settings(database_url=URL, jwt_secret=strong).resolved_jwt_secret() == strong
    generated = Settings(data_dir=tmp_path, database_url=None).resolved_jwt_secret()
    assert len(generated) >= 32
    assert (tmp_path / "jwt-secret").stat().st_mode & 0o777 == 0o600


def test_a_jwks_needs_an_issuer_and_an_audience(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="jwt_issuer and jwt_audience"):
        Settings(data_dir=tmp_path, jwks_url="https://idp.test/jwks.json", jwt_issuer="x")
    with pytest.raises(ValidationError, match="not both"):
        Settings(
            data_dir=tmp_path,
            jwks_url="https://idp.test/jwks.json",
            jwks_file=tmp_path / "jwks.json",
            jwt_issuer="x",
            jwt_audience="y",
        )

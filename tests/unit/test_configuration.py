"""Configuration as an operator meets it: the reference page, `governance config`, bad values."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from governance import config_reference
from governance.cli import cli
from governance.config import Settings

ROOT = Path(__file__).resolve().parents[2]
# Variables of the test environment that would otherwise leak into the settings under test.
CLEAN: dict[str, str | None] = {
    name: None
    for name in os.environ
    if name.startswith("GOVERNANCE_") or name in ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "PORT")
}


def run(*args: str, **env: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), env={**CLEAN, **env})
    return result.exit_code, result.stdout, result.stderr


def test_the_committed_reference_page_is_the_generated_one() -> None:
    committed = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert committed == config_reference.markdown(), (
        "docs/configuration.md is out of date: run `governance config --markdown >"
        " docs/configuration.md`"
    )


def test_every_setting_says_what_it_means() -> None:
    undescribed = [name for name, info in Settings.model_fields.items() if not info.description]
    assert undescribed == []


def test_the_page_names_every_variable_with_its_default() -> None:
    page = config_reference.markdown()
    assert "| `PORT` or `GOVERNANCE_PORT` | `8000` | an integer from 1 to 65535 |" in page
    assert "| `GOVERNANCE_LOG_FORMAT` | `json` | json or text |" in page


def test_config_prints_effective_values_with_secrets_masked() -> None:
    code, out, _ = run(
        "config",
        DATABASE_URL="postgresql://gov:hunter2-pass@db.internal:5432/governance",
        GOVERNANCE_JWT_SECRET="jwt-signing-key-that-must-stay-private",
        PORT="9001",
    )
    assert code == 0
    assert "hunter2-pass" not in out and "jwt-signing-key" not in out
    lines = out.splitlines()
    assert "DATABASE_URL=postgresql://gov:********@db.internal:5432/governance" in lines
    assert "GOVERNANCE_JWT_SECRET=********" in lines
    assert "PORT=9001" in lines
    assert "GOVERNANCE_LOG_FORMAT=json  # default" in lines


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("PORT", "abc", "PORT must be an integer from 1 to 65535 (got abc)"),
        (
            "GOVERNANCE_PORT",
            "70000",
            "GOVERNANCE_PORT must be an integer from 1 to 65535 (got 70000)",
        ),
        (
            "GOVERNANCE_MIN_POSITION_TIMEOUT",
            "-1",
            "GOVERNANCE_MIN_POSITION_TIMEOUT must be a number greater than 0 and at most 60"
            " (got -1)",
        ),
        ("GOVERNANCE_LOG_FORMAT", "xml", "GOVERNANCE_LOG_FORMAT must be json or text (got xml)"),
        (
            "GOVERNANCE_RUN_PROJECTOR",
            "maybe",
            "GOVERNANCE_RUN_PROJECTOR must be true or false (got maybe)",
        ),
        (
            "DATABASE_URL",
            "postgresql://gov:hunter2@/governance",
            "DATABASE_URL must be a postgresql:// URL naming a user, a host and a database"
            " (got postgresql://gov:********@/governance)",
        ),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable(
    variable: str, value: str, expected: str
) -> None:
    code, out, err = run("config", **{variable: value})
    assert code == 2
    assert out == ""
    assert err == f"configuration error: {expected}\n"


def test_a_bad_value_stops_the_server_before_it_starts(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in CLEAN}
    env.update(PORT="abc", GOVERNANCE_DATA_DIR=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "-m", "governance", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "configuration error: PORT must be an integer from 1 to 65535 (got abc)"
    ]
    assert not (tmp_path / "events.sqlite").exists()

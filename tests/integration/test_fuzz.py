"""Schemathesis against /openapi.json, in process, with an org-admin's token, on both backends.

Valid and invalid requests are generated for every operation. No answer may be a 5xx, and every
4xx must be in the one error shape {"error": {"code": str, "message": str}}.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterator
from typing import Any

import hypothesis
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.core.result import Ok

from governance.api.app import create_app
from governance.auth import Role
from governance.config import Settings
from governance.runtime import Runtime
from tests.conftest import Tokens

# Requests per backend, spread over the operations and both modes (valid and invalid input);
# the API grows, so each operation's share is worked out from how many there are.
MINIMUM_REQUESTS = 1000
TARGET = 1300  # operations without any input make only one or two


@pytest.fixture
def fuzzed(settings: Settings) -> Iterator[Runtime]:
    # The command rate limit is tested elsewhere; here it would only hide deeper answers.
    generous = settings.model_copy(
        update={"command_rate_per_second": 100_000.0, "command_burst": 100_000}
    )
    runtime = Runtime(generous)
    runtime.start_projector()
    yield runtime
    runtime.close()


def error_shape_problem(status: int, body: bytes) -> str | None:
    if status >= 500:
        return f"a {status}"
    if not 400 <= status < 500:
        return None
    try:
        error = json_object(body)["error"]
    except (ValueError, KeyError, TypeError):
        return f"a {status} whose body is not {{'error': ...}}: {body[:200]!r}"
    if not (isinstance(error.get("code"), str) and isinstance(error.get("message"), str)):
        return f"a {status} without a string code and message: {body[:200]!r}"
    return None


def json_object(body: bytes) -> dict[str, Any]:
    value = json.loads(body)
    if not isinstance(value, dict):
        raise TypeError("not an object")
    return value


def test_generated_requests_get_no_5xx_and_every_4xx_in_the_error_shape(
    fuzzed: Runtime,
) -> None:
    app = create_app(runtime=fuzzed)
    admin = Tokens(fuzzed).header("olga", Role.ORG_ADMIN)
    with TestClient(app) as client:
        for site_id in ("s1", "s2"):
            client.put(f"/v1/orgs/acme/sites/{site_id}", json={"name": site_id}, headers=admin)
        client.post(
            "/v1/sites/s1/installations", json={"app_id": "a", "app_name": "A"}, headers=admin
        )
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        sent: Counter[str] = Counter()
        problems: list[str] = []
        operations = []
        for result in schema.get_all_operations():
            assert isinstance(result, Ok), result.err()
            operations.append(result.ok())
        examples = math.ceil(TARGET / (2 * len(operations)))
        for operation in operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                fuzz(operation, mode, examples, admin, sent, problems)
    total = sum(sent.values())
    print(f"fuzz: {total} requests over {len(sent)} operations")  # the figure, for `pytest -s`
    assert not problems, "\n".join(sorted(set(problems))[:30])
    assert total >= MINIMUM_REQUESTS, sent
    # Nothing accepted may poison the projector: every event written reaches the read models.
    head = fuzzed.application.head_position()
    assert fuzzed.projector.wait_for(head, 10), (fuzzed.projector.position(), head)


def fuzz(
    operation: Any,
    mode: GenerationMode,
    examples: int,
    admin: dict[str, str],
    sent: Counter[str],
    problems: list[str],
) -> None:
    @given(case=operation.as_strategy(generation_mode=mode), known=st.booleans())
    @hypothesis.settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def one(case: schemathesis.Case[Any], known: bool) -> None:
        if known and case.path_parameters:
            # Half the time aim at the registered org and site, to get past the 404s.
            for name, value in (
                ("org_id", "acme"),
                ("site_id", "s1"),
                ("app_id", "a"),
                ("case_id", "a~1"),
            ):
                if name in case.path_parameters:
                    case.path_parameters[name] = value
        response = case.call(headers=admin)
        sent[operation.label] += 1
        problem = error_shape_problem(response.status_code, response.content)
        if problem is not None:
            problems.append(
                f"{case.method} {case.formatted_path} -> {problem}"
                f" (query {case.query!r}, body {case.body!r})"[:400]
            )

    try:
        one()
    except hypothesis.errors.Unsatisfiable:
        # An operation without parameters or body has no invalid input to generate.
        assert mode is GenerationMode.NEGATIVE, operation.label

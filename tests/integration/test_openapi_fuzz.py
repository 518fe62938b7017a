"""Schemathesis over the app's own OpenAPI document, on SQLite and PostgreSQL (issue 15: a 500 anywhere fails CI).

Every operation gets a few generated requests, valid ones (within the schema) and invalid ones (outside it), as
an admin, so most reach the services. Checks:

- ``not_a_server_error``: no 5xx, whatever is sent;
- ``response_schema_conformance``: a documented response's body matches its schema;
- ``content_type_conformance``: it is sent as a documented media type;
- ``status_code_conformance``: every status it answers is one the document lists for that operation (the error
  answers are declared once, in governance/web/openapi.py).

Not checked: ``negative_data_rejection`` (some invalid inputs, e.g. an unknown query parameter, are ignored
rather than refused).
"""

from __future__ import annotations

import logging
import os

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from litestar import Litestar
from litestar.testing import TestClient
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import Person

# a few examples per operation and mode keep each database's run well under two minutes
MAX_EXAMPLES = int(os.environ.get("COMMONS_FUZZ_EXAMPLES", "6"))
CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    content_type_conformance,
    status_code_conformance,
]


@pytest.mark.slow
def test_schemathesis_finds_no_server_error(
    app: Litestar, community: dict[str, Person], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    schema = schemathesis.openapi.from_asgi("/schema/openapi.json", app)
    auth = community["admin"].auth
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 40
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=MAX_EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            def run(case: schemathesis.Case) -> None:
                case.call_and_validate(headers={**auth, **(case.headers or {})}, checks=CHECKS)

            try:
                run()
            except Unsatisfiable:  # an operation without inputs has no invalid request to make
                assert mode is GenerationMode.NEGATIVE
            except Exception as exc:  # collect every operation's failure, then report them together
                failures.append(f"{operation.label} ({mode.value}): {str(exc)[:1500]}")
    assert not failures, "\n\n".join(failures)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "an unexpected error was logged"


def test_the_document_declares_the_bearer_scheme_and_the_error_body(client: TestClient[Litestar]) -> None:
    doc = client.get("/schema/openapi.json").json()
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An API token: `commons token create HANDLE`, or the web UI's account page.",
    }
    ops = {(path, method): op for path, item in doc["paths"].items() for method, op in item.items()}
    assert ops[("/api/v1/proposals", "post")]["security"] == [{"bearer": []}]
    assert "401" in ops[("/api/v1/proposals", "post")]["responses"]
    assert "security" not in ops[("/api/v1/health", "get")]  # public: no token needed
    assert "security" not in ops[("/api/v1/audit/entries", "get")]
    for (path, method), op in ops.items():
        if path.startswith("/api/"):
            error = op["responses"]["422"]["content"]["application/json"]["schema"]
            assert error == {"$ref": "#/components/schemas/ErrorBody"}, (path, method)

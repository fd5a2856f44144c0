"""Property-based fuzzing of every operation in ``/openapi.json``: no input may produce a 5xx.

Schemathesis loads the schema through its ASGI loader and calls the app in-process. It runs the
app, lifespan included, on its own event-loop thread, so it gets an app of its own on the test
database: the session ``app`` fixture's asyncpg pool belongs to pytest's loop, and a second lifespan
on that object would replace the context every other test uses.

Each operation is a Hypothesis test of its own over valid and invalid inputs, driven from one
pytest test (schemathesis 4.32's ``from_fixture`` parametrization fails on pytest 9, which dropped
``Node._nodeid``). Every operation runs even after one fails, and the failure lists them all.

Requests carry a bearer token of a real artist account, so the authorized paths run too. Each case
gets a freshly issued token for that account: a fuzzed ``POST /v1/auth/logout`` then revokes only
its own token, not the one the remaining operations need.
"""

from __future__ import annotations

import uuid

import hypothesis
import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from verseflow import security

EXAMPLES_PER_OPERATION = 30  # `make schemathesis` runs 50; the suite keeps its time for the other tests
# tus PATCH bodies (/v1/uploads) are raw bytes, as application/octet-stream ones are.
schemathesis.serializer.alias("application/offset+octet-stream", "application/octet-stream")


@pytest.fixture
def asgi_schema(settings, pool, ray_cluster):
    """The OpenAPI schema of a fresh app on the test database (``pool`` has applied the migrations).

    Ray runs, as it does under Serve: without it ``/ready`` rightly answers 503.
    """
    from serve_deployments.app import create_app

    return schemathesis.openapi.from_asgi("/openapi.json", create_app(settings))


@pytest.fixture
async def artist(api) -> dict:
    return await api.user("artist")


def test_no_operation_answers_5xx(asgi_schema, artist, settings):
    def bearer() -> dict[str, str]:
        token, _ = security.issue_access_token(
            uuid.UUID(artist["id"]), "artist", secret=settings.secret(), ttl_s=settings.access_token_ttl_s,
            issuer=settings.jwt_issuer, algorithm=settings.jwt_algorithm,
        )
        return {"Authorization": f"Bearer {token}"}

    failures = {}
    for result in asgi_schema.get_all_operations():
        operation = result.ok()
        cases = st.one_of(*(operation.as_strategy(mode) for mode in GenerationMode))

        @hypothesis.given(case=cases)
        @hypothesis.settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                             suppress_health_check=list(hypothesis.HealthCheck))
        def fuzz(case) -> None:
            case.call_and_validate(headers=bearer(), checks=[not_a_server_error])

        try:
            fuzz()
        except Exception as exc:  # noqa: BLE001 - collected, then reported together below
            failures[operation.label] = exc
    assert not failures, "\n\n".join(f"{label}:\n{exc}" for label, exc in failures.items())

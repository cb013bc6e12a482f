"""A schema-driven fuzz run (schemathesis) against the live server finds no 5xx."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from db.catalogue import Catalogue
from inference.api import create_app
from tests.api.helpers import LiveServer, live_server
from tests.api.helpers import settings as api_settings

MAX_EXAMPLES = 30
"""Per operation: the whole run stays well under a minute on two cores."""


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture
def empty_server(fresh_catalogue: Catalogue) -> Iterator[LiveServer]:
    """The service before any run is promoted: every prediction is a documented 503."""
    with live_server(
        create_app(api_settings(record_usage=False), catalogue=fresh_catalogue)
    ) as srv:
        yield srv


EXPECTED = {
    "server": {200, 400},  # schemathesis sends small valid images as well as junk
    "keyed_server": {401},
    "empty_server": {503},
}
"""Statuses each server must answer at least once (the fuzz reaches those code paths)."""


@pytest.mark.slow
@pytest.mark.parametrize("which", sorted(EXPECTED))
def test_api_never_fails_with_a_server_error(which: str, request: pytest.FixtureRequest) -> None:
    """With a model, with API keys (no key sent), and with no model yet.

    Before a model is loaded every endpoint answers its documented 503, which is the one
    5xx allowed, and only there: the answers must still match the schema.
    """
    checks = CHECKS if which != "empty_server" else CHECKS[1:]
    server: LiveServer = request.getfixturevalue(which)
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/predict", "/v1/predict/batch", "/v1/model"}
    calls = 0
    statuses: Counter[int] = Counter()

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case: schemathesis.Case) -> None:
            nonlocal calls
            response = case.call(timeout=60)
            calls += 1
            if case.operation.path != "/healthz":
                statuses[response.status_code] += 1
            if which == "empty_server":
                assert response.status_code in (200, 503), response.text  # healthz: 503
            case.validate_response(response, checks=checks)

        fuzz()
    assert calls >= len(operations)
    assert EXPECTED[which] <= set(statuses), statuses

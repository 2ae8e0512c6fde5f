"""Fuzzing: schemathesis generates requests from /openapi.json for every operation and
checks every answer. No 5xx, and no answer (success or problem) that breaks the schema,
status codes, headers and media types the document promises.

The Flask app runs in process (schemathesis's WSGI transport), which keeps thousands of
cases within a minute. Every phase runs (documented examples, boundary coverage,
undeclared methods, random fuzzing), positive and negative. Each generated case also
gets random extra query parameters and a random X-Request-ID, so that an operation
without inputs (GET /health/live) gets as many distinct cases as any other, and the
request-id rule is fuzzed everywhere. Each operation must see at least CASES distinct
cases (checked when the module's tests end).

Runs are derandomized so CI is repeatable; FORMWISE_FUZZ_RANDOM=1 explores new cases and
FORMWISE_FUZZ_EXAMPLES changes the count."""

from __future__ import annotations

import collections
import os
import re

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import positive_data_acceptance

from formwise.service.app import create_app
from formwise.service.ops.observability import REQUEST_ID_PATTERN

CASES = int(os.environ.get("FORMWISE_FUZZ_EXAMPLES", "200"))
# "A schema-valid request must get a 2xx" cannot hold for rules between fields that JSON
# Schema does not express (options.waking_hours.end must differ from start): those are
# 422 problems, documented as such, which the other checks still verify.
EXCLUDED_CHECKS = [positive_data_acceptance]

schema = schemathesis.openapi.from_wsgi("/openapi.json", create_app({"TESTING": True}))
OPERATIONS = [result.ok() for result in schema.get_all_operations()]
DISTINCT_CASES: dict[str, set[str]] = collections.defaultdict(set)

# Printable ASCII without surrounding spaces (what an HTTP client lets through); an empty
# request id is covered in tests/service/ops/test_observability.py.
header_text = st.from_regex(r"[!-~]([ -~]{0,138}[!-~])?", fullmatch=True)
extra_query = st.dictionaries(st.from_regex(r"[a-z_]{1,12}", fullmatch=True), header_text, max_size=3)


@schema.hook
def before_generate_case(context, strategy):
    """Every case also carries noise a real client might send: unknown query parameters
    (ignored) and any X-Request-ID (kept when it is a plain token, replaced otherwise)."""

    def add_noise(drawn):
        case, query, request_id = drawn
        if not (case.operation.query and query.keys() & {parameter.name for parameter in case.operation.query}):
            case.query = {**(case.query or {}), **query} or None
        case.headers = {**(case.headers or {}), "X-Request-ID": request_id}
        return case

    return st.tuples(strategy, extra_query, header_text).map(add_noise)


@pytest.fixture(scope="module", autouse=True)
def every_operation_gets_enough_cases():
    yield
    for label, cases in DISTINCT_CASES.items():
        assert len(cases) >= CASES, f"{label}: only {len(cases)} distinct cases"


def test_the_document_lists_every_public_operation():
    labels = {operation.label for operation in OPERATIONS}
    assert {"POST /v1/recommendations", "POST /v1/recommendations/batch", "GET /v1/forms",
            "GET /v1/forms/{form_id}", "GET /health/live", "GET /health/ready"} <= labels


@schema.parametrize()
# Half again as many examples as needed: different draws sometimes make the same request.
@settings(max_examples=CASES * 3 // 2, deadline=None, database=None, suppress_health_check=list(HealthCheck),
          derandomize=not os.environ.get("FORMWISE_FUZZ_RANDOM"))
def test_every_operation_answers_within_its_documented_schema(case):
    response = case.call_and_validate(excluded_checks=EXCLUDED_CHECKS)
    given = (case.headers or {}).get("X-Request-ID")
    (echoed,) = response.headers["x-request-id"]  # schemathesis lists each header's values
    if given is not None and REQUEST_ID_PATTERN.fullmatch(given):
        assert echoed == given
    else:
        assert re.fullmatch(r"[0-9a-f]{32}", echoed)
    DISTINCT_CASES[case.operation.label].add(
        repr((case.method, case.path_parameters, case.query, case.headers, case.body)))

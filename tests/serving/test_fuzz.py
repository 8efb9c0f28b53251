"""Property-based fuzzing of the OpenAPI document (schemathesis): no request gets a 5xx.

Every operation of the app is fuzzed with valid (positive) and invalid (negative) requests
generated from the app's own OpenAPI document. The unit run sends a few hundred requests;
GRADWISE_FUZZ_EXAMPLES=400 sends more than 1,000 (benchmarks/RESULTS.md records the count).
"""

from __future__ import annotations

import os
from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

import gradwise
import gradwise.serving
from gradwise.run import Run

EXAMPLES = int(os.environ.get("GRADWISE_FUZZ_EXAMPLES", "15"))  # per operation and mode


def fuzz(app, examples: int) -> Counter:
    """Send up to `examples` positive and `examples` negative requests to every operation;
    returns the count of each (path, status code). Fails on the first 5xx."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    codes: Counter = Counter()
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategy = operation.as_strategy(generation_mode=mode)

            @settings(
                max_examples=examples,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=strategy)
            def check(case) -> None:
                response = case.call()
                codes[(case.path, response.status_code)] += 1
                assert response.status_code < 500, (case.method, case.path, case.body)

            try:
                check()
            except Unsatisfiable:  # no invalid request exists (a GET without parameters)
                assert mode is GenerationMode.NEGATIVE
    return codes


@pytest.mark.parametrize("which", ["digits_run", "table_run", "lm_run"])
def test_generated_requests_never_get_a_server_error(which: str, request, tmp_path):
    run: Run = request.getfixturevalue(which)
    app = gradwise.serving.app(run, store=str(tmp_path / "fuzz.sqlite"), max_wait_ms=0)
    codes = fuzz(app, EXAMPLES if which != "lm_run" else max(5, EXAMPLES // 3))
    assert not [c for c in codes if c[1] >= 500]
    route = "/v1/generate" if which == "lm_run" else "/v1/predict"
    assert codes[(route, 200)] > 0 and codes[(route, 422)] > 0  # valid and invalid were sent

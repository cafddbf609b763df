"""Schemathesis over the guard's own OpenAPI document, fetched from a live guard on 127.0.0.1
(the admin-scoped /openapi.json), against that guard: generated valid and invalid requests to
every operation. Checks: no server error, only documented status codes, the documented content
type and answer schema, valid rows accepted and invalid ones refused, and a request whose
credential is left out refused. A bounded run here (GUARD_FUZZ_EXAMPLES, default 40 per
operation and mode); bench/guard_fuzz.py runs the same checks longer."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("schemathesis")
pytest.importorskip("uvicorn")

import schemathesis
from guard_support import TARGET, bearer, contract, served_model, serving, settings, training
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from schemathesis import checks

from bastion.guard.app import create_app
from bastion.guard.auth import KeyStore

EXAMPLES = int(os.environ.get("GUARD_FUZZ_EXAMPLES", "40"))
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.negative_data_rejection,
    checks.positive_data_acceptance,
    checks.ignored_auth,
]
# generous limits: the fuzzer's own rate must not turn answers into 429s
LIMITS = {
    "ip_rate": 1e6,
    "ip_burst": 10**6,
    "key_rate": 1e6,
    "key_burst": 10**6,
    "daily_rows": 10**9,
}


class Live:
    def __init__(self, url: str, key: str) -> None:
        self.url = url
        self.key = key


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    folder: Path = tmp_path_factory.mktemp("fuzz")
    app = create_app(
        settings(folder, limits=LIMITS),
        model=served_model(),
        contract=contract(),
        training=training(),
    )
    store = KeyStore(folder / "keys.sqlite3")
    key = store.create(["admin"])[0]
    store.close()
    with serving(app) as server:
        yield Live(server.url, key)


def _spec() -> dict[str, Any]:
    """The document the guard serves at /openapi.json, built the same way offline (the test
    below checks that the live one is this), so that the operations are known at collection."""
    import tempfile

    from bastion.datacheck.contract import prepare
    from bastion.guard.app import SERVE_ROUTES, openapi

    with tempfile.TemporaryDirectory() as tmp:
        guard_settings = settings(Path(tmp), limits=LIMITS)
    columns = tuple(c for c in prepare(contract()) if c.name != TARGET)
    return openapi(guard_settings, SERVE_ROUTES, columns)


SPEC = _spec()
# a refusal of invalid data may also be 413 (over a size bound: too many rows)
CONFIG = schemathesis.Config.from_dict(
    {
        "checks": {
            "negative_data_rejection": {
                "expected-statuses": [400, 401, 403, 404, 405, 413, 415, 422, 429]
            }
        }
    }
)
schema = schemathesis.openapi.from_dict(SPEC, config=CONFIG)


def test_the_live_document_is_the_one_fuzzed(live: Live) -> None:
    answer = httpx.get(live.url + "/openapi.json", headers=bearer(live.key), timeout=10)
    assert answer.status_code == 200
    assert answer.json() == SPEC
    assert httpx.get(live.url + "/openapi.json", timeout=10).status_code == 401


@schema.parametrize()
@hypothesis_settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_generated_requests_get_documented_answers_and_no_server_error(
    case: Any, live: Live
) -> None:
    case.call_and_validate(base_url=live.url, headers=bearer(live.key), checks=CHECKS, timeout=10)

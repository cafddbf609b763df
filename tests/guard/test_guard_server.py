"""Serve mode end to end: real servers on 127.0.0.1, the signed example credit model."""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")

from guard_support import (
    MODEL,
    PUBLIC_KEY,
    TARGET,
    bearer,
    contract,
    credit_rows,
    predict_scope,
    served_model,
    serving,
    settings,
    timed_predict,
    training,
)

from bastion.errors import UnsafeArtifactError, UsageError
from bastion.guard.app import create_app, reload_settings
from bastion.guard.auth import KeyStore
from bastion.guard.model import load_served_model


def _app(folder: Path, **tables: Any) -> Any:
    return create_app(
        settings(folder, **tables), model=served_model(), contract=contract(), training=training()
    )


def _keys(folder: Path, *scopes: str, tenant: str | None = None) -> str:
    store = KeyStore(folder / "keys.sqlite3")
    try:
        return store.create(list(scopes), tenant)[0]
    finally:
        store.close()


def _events(folder: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(folder / "audit" / "audit-guard.sqlite3") as conn:
        return [json.loads(row[0]) for row in conn.execute("SELECT event FROM events ORDER BY seq")]


def _outcomes(folder: Path) -> list[dict[str, Any]]:
    """The requests' outcome events (not their admissions, not monitor alerts)."""
    return [event for event in _events(folder) if "status" in event]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = tmp_path_factory.mktemp("guard")
    app = _app(folder)
    with serving(app) as server:
        yield folder, server, app


def test_predict_gives_labels_only_and_score_rounded_probabilities(live: Any) -> None:
    folder, server, _ = live
    key = _keys(folder, "predict", "score")
    rows = credit_rows()[:3]
    predicted = httpx.post(server.url + "/v1/predict", json={"rows": rows}, headers=bearer(key))
    assert predicted.status_code == 200
    answers = predicted.json()["predictions"]
    assert [set(a) for a in answers] == [{"label"}] * 3
    scored = httpx.post(server.url + "/v1/score", json={"rows": rows}, headers=bearer(key))
    assert scored.status_code == 200
    for item in scored.json()["predictions"]:
        assert set(item["scores"]) == {"0", "1"}
        assert all(round(p, 2) == p for p in item["scores"].values())
        assert abs(sum(item["scores"].values()) - 1) < 0.02
    # the same labels the model gives when loaded directly
    model = served_model()
    direct, _ = model.predict(training()[:3], False)
    assert [a["label"] for a in answers] == direct


def test_scopes_are_enforced_per_route(live: Any) -> None:
    folder, server, _ = live
    predict_only = _keys(folder, "predict")
    rows = {"rows": credit_rows()[:1]}
    assert (
        httpx.post(server.url + "/v1/score", json=rows, headers=bearer(predict_only)).status_code
        == 403
    )
    assert (
        httpx.post(server.url + "/v1/predict", json=rows, headers=bearer(predict_only)).status_code
        == 200
    )
    audit_only = _keys(folder, "audit:read")
    assert (
        httpx.post(server.url + "/v1/predict", json=rows, headers=bearer(audit_only)).status_code
        == 403
    )


def test_every_route_but_healthz_needs_a_credential(live: Any) -> None:
    """Default deny, proved over every path the app answers and a few it does not."""
    folder, server, app = live
    paths = {route for route in app.routes} | {
        "/readyz",
        "/openapi.json",
        "/metrics",
        "/",
        "/docs",
        "/v1",
        "/v1/predict/",
        "/admin",
        "/V1/PREDICT",
        "/v1/predict%00",
        "/../v1/predict",
    }
    for path in sorted(paths):
        for method in ("GET", "POST", "PUT", "DELETE"):
            response = httpx.request(method, server.url + path, content=b"{}")
            if path == "/metrics" and method == "GET":
                assert response.status_code == 200  # loopback only (see the next test)
                continue
            assert response.status_code == 401, (method, path, response.status_code)
            assert "www-authenticate" in response.headers
    assert httpx.get(server.url + "/healthz").status_code == 200
    admin = _keys(folder, "admin")
    assert httpx.get(server.url + "/readyz", headers=bearer(admin)).json() == {"ready": True}
    assert httpx.get(server.url + "/nothing", headers=bearer(admin)).status_code == 404


def test_metrics_are_loopback_only_or_admin(tmp_path: Path) -> None:
    from bastion.guard.pipeline import is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("::1")
    assert not is_loopback("10.0.0.1") and not is_loopback("unknown")
    app = _app(tmp_path, metrics={"access": "admin"})
    with serving(app) as server:
        assert httpx.get(server.url + "/metrics").status_code == 401
        predict = _keys(tmp_path, "predict")
        assert httpx.get(server.url + "/metrics", headers=bearer(predict)).status_code == 403
        admin = _keys(tmp_path, "admin")
        metrics = httpx.get(server.url + "/metrics", headers=bearer(admin))
        assert metrics.status_code == 200
        assert "bastion_guard_request_seconds_bucket" in metrics.text


def test_out_of_contract_rows_are_422_without_echoing_values(live: Any) -> None:
    folder, server, _ = live
    key = _keys(folder, "predict")
    row = dict(credit_rows()[0])
    row["age_in_years"] = 250
    row["purpose"] = "<script>alert(1)</script>"
    row["injected_column_name_zzz"] = 1
    response = httpx.post(server.url + "/v1/predict", json={"rows": [row]}, headers=bearer(key))
    assert response.status_code == 422
    message = response.json()["error"]["message"]
    assert "age_in_years" in message and "purpose" in message
    assert "script" not in message and "zzz" not in message and "250" not in message
    missing = dict(credit_rows()[0])
    del missing["credit_amount"]
    response = httpx.post(server.url + "/v1/predict", json={"rows": [missing]}, headers=bearer(key))
    assert response.status_code == 422 and "credit_amount" in response.text


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"", 400),
        (b"not json", 400),
        (b'{"rows": NaN}', 400),
        (b'{"rows": [{"age_in_years": 1e999}]}', 400),
        (b"[" * 5000 + b"]" * 5000, 413),
        (b'{"rows": []}', 422),
        (b'{"rows": [1, 2]}', 422),
        (b'{"rows": [{"a": {"b": 1}}]}', 422),
        (b'{"rows": [{}], "extra": 1}', 422),
    ],
)
def test_malformed_bodies_are_refused(live: Any, body: bytes, status: int) -> None:
    folder, server, _ = live
    key = _keys(folder, "predict")
    response = httpx.post(server.url + "/v1/predict", content=body, headers=bearer(key))
    assert response.status_code == status


def test_body_size_is_capped_while_streaming(tmp_path: Path) -> None:
    app = _app(tmp_path, server={"max_body_bytes": 2048})
    key = _keys(tmp_path, "predict")

    def chunks() -> Any:
        for _ in range(100):  # no Content-Length: chunked
            yield b" " * 1024

    with serving(app) as server:
        response = httpx.post(server.url + "/v1/predict", content=chunks(), headers=bearer(key))
        assert response.status_code == 413
        declared = httpx.post(server.url + "/v1/predict", content=b" " * 4096, headers=bearer(key))
        assert declared.status_code == 413
        many = httpx.post(
            server.url + "/v1/predict",
            json={"rows": credit_rows()[:300]},
            headers=bearer(key),
        )
        assert many.status_code == 413


def test_personal_data_is_blocked_by_default_and_never_logged(tmp_path: Path) -> None:
    # the values are outside the contract's categories too: the screen runs first, so the
    # refusal (and the audit) says personal data
    app = _app(tmp_path)
    key = _keys(tmp_path, "predict")
    row = dict(credit_rows()[1])
    row["purpose"] = "card 4111 1111 1111 1111"
    row["telephone"] = "call +44 20 7946 0958"
    with serving(app) as server:
        response = httpx.post(server.url + "/v1/predict", json={"rows": [row]}, headers=bearer(key))
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "personal_data"
    assert "payment card" in error["message"] or "credit_card" in error["message"]
    assert "4111" not in response.text and "7946" not in response.text
    for path in (tmp_path / "audit").iterdir():
        assert b"4111" not in path.read_bytes() and b"7946" not in path.read_bytes()
    last = _events(tmp_path)[-1]
    assert last["decisions"]["sensitive"] == "block" and last["status"] == 422
    assert "contract" not in last["decisions"]  # refused before the contract was read


def test_personal_data_redacted_when_the_policy_says_so(tmp_path: Path) -> None:
    app = _app(tmp_path, sensitive={"action": "redact"}, contract={"action": "flag"})
    key = _keys(tmp_path, "predict")
    row = dict(credit_rows()[2])
    row["purpose"] = "mail me at jane.doe@example.org"
    with serving(app) as server:
        response = httpx.post(server.url + "/v1/predict", json={"rows": [row]}, headers=bearer(key))
    assert response.status_code == 200
    event = _events(tmp_path)[-1]
    assert event["decisions"]["sensitive"] == "redact"
    assert event["decisions"]["contract"] == "flag"


def test_a_value_longer_than_the_screen_examines_is_refused(tmp_path: Path) -> None:
    # the detectors read the first [sensitive] max_chars characters of a value: a card number
    # placed after them used to reach the model unexamined (200) with redact on
    app = _app(tmp_path, sensitive={"action": "redact"}, contract={"action": "flag"})
    key = _keys(tmp_path, "predict")
    row = dict(credit_rows()[2])
    with serving(app) as server:
        row["purpose"] = "x" * 10_000 + " card 4111 1111 1111 1111"
        hidden = httpx.post(server.url + "/v1/predict", json={"rows": [row]}, headers=bearer(key))
        row["purpose"] = "x" * 10_000  # at the limit: examined whole, nothing found
        whole = httpx.post(server.url + "/v1/predict", json={"rows": [row]}, headers=bearer(key))
    assert hidden.status_code == 413
    assert hidden.json()["error"]["code"] == "string_too_long"
    assert whole.status_code == 200
    events = _outcomes(tmp_path)
    assert events[-2]["decisions"]["sensitive"] == "block" and events[-2]["status"] == 413
    assert events[-1]["decisions"]["sensitive"] == "allow"


def test_categories_from_the_contract_are_not_flagged(live: Any) -> None:
    """Benign traffic: 300 real rows (some categories contain 'credits', which the secret
    pre-filter would look at) pass every detector."""
    folder, server, _ = live
    key = _keys(folder, "predict")
    rows = credit_rows()
    with httpx.Client(base_url=server.url, headers=bearer(key)) as client:
        for start in range(0, 300, 50):
            response = client.post("/v1/predict", json={"rows": rows[start : start + 50]})
            assert response.status_code == 200, response.text
    decisions = [e["decisions"] for e in _events(folder) if "route" in e][-6:]
    assert all(d["sensitive"] == "allow" and d["contract"] == "allow" for d in decisions)
    assert sum(d.get("ood") == "flag" for d in decisions) <= 1


def test_out_of_distribution_rows_are_flagged_or_blocked(tmp_path: Path) -> None:
    app = _app(tmp_path, ood={"action": "block"})
    key = _keys(tmp_path, "predict")
    # a 72-month loan of the maximum amount to an 18-year-old with the maximum of dependants
    row = _far_row()
    with serving(app) as server:
        far = httpx.post(server.url + "/v1/predict", json={"rows": [row]}, headers=bearer(key))
        near = httpx.post(
            server.url + "/v1/predict", json={"rows": credit_rows()[4:5]}, headers=bearer(key)
        )
    assert far.status_code == 422 and far.json()["error"]["code"] == "out_of_distribution"
    assert "threshold" not in far.text and "score" not in far.text
    assert near.status_code == 200


def _far_row() -> dict[str, Any]:
    """Every value inside the contract's ranges, jointly far from the training data."""
    row = dict(credit_rows()[3])
    row.update(
        duration_in_month=72,
        credit_amount=18424,
        age_in_years=19,
        number_of_existing_credits_at_this_bank=4,
        number_of_people_being_liable_to_provide_maintenance_for=2,
        installment_rate_in_percentage_of_disposable_income=4,
    )
    return row


def _outcome_with(folder: Path, seen: int, timeout: float = 10.0) -> dict[str, Any]:
    """The next outcome event after the first `seen`, once it is recorded."""
    deadline = time.monotonic() + timeout
    while True:
        outcomes = _outcomes(folder)
        if len(outcomes) > seen:
            return outcomes[seen]
        assert time.monotonic() < deadline, "the outcome was never recorded"
        time.sleep(0.02)


def test_ood_in_flag_mode_scores_the_rows_after_the_answer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A flag cannot change the answer, so the rows are scored once it is sent: an OOD
    detector taking 1.5 s does not delay it, its verdict is in the request's outcome event
    (not in the admission, durable before the answer), and a detector that fails is logged and
    recorded as `error`, never a 500. In block mode the answer waits for the score."""
    for folder in ("flag", "block"):
        (tmp_path / folder).mkdir()
    flagging = _app(tmp_path / "flag")
    blocking = _app(tmp_path / "block", ood={"action": "block"})
    for app in (flagging, blocking):
        worst = app.guard.ood.worst

        def slow(encoded: Any, worst: Any = worst) -> float:
            time.sleep(1.5)
            return float(worst(encoded))

        app.guard.ood.worst = slow
    key = _keys(tmp_path / "flag", "predict")
    with serving(flagging) as server:
        far, took_far = timed_predict(server.url, key, [_far_row()])
        flagged = _outcome_with(tmp_path / "flag", 0)
        near, _ = timed_predict(server.url, key, credit_rows()[4:5])
        allowed = _outcome_with(tmp_path / "flag", 1)

        def broken(encoded: Any) -> float:
            raise RuntimeError("detector bug")

        flagging.guard.ood.worst = broken
        failed, _ = timed_predict(server.url, key, credit_rows()[5:6])
        errored = _outcome_with(tmp_path / "flag", 2)
    assert far.status_code == near.status_code == failed.status_code == 200
    assert took_far < 1.0
    assert flagged["decisions"]["ood"] == "flag" and allowed["decisions"]["ood"] == "allow"
    assert errored["decisions"]["ood"] == "error"
    assert "OOD scoring error" in caplog.text
    admissions = [e for e in _events(tmp_path / "flag") if "route" in e and "status" not in e]
    assert len(admissions) == 3 and all("ood" not in e["decisions"] for e in admissions)
    assert {flagged["admission"], allowed["admission"], errored["admission"]} == {
        seq for seq, e in enumerate(_events(tmp_path / "flag"), 1) if e in admissions
    }
    key = _keys(tmp_path / "block", "predict")
    with serving(blocking) as server:
        refused, took_refused = timed_predict(server.url, key, [_far_row()])
    assert refused.status_code == 422 and took_refused >= 1.5
    assert _outcomes(tmp_path / "block")[-1]["decisions"]["ood"] == "block"


def test_ood_verdict_of_a_flagged_key_is_in_its_outcome_before_the_answer(tmp_path: Path) -> None:
    """A request of a key the monitor flagged has its outcome recorded before the answer; the
    deferred OOD verdict is in it (an attack review found it dropped: a sweep, then far rows)."""
    app = _app(tmp_path)
    key = _keys(tmp_path, "predict")
    key_id = key.split("_")[1]
    with serving(app) as server:
        app.guard.flagged[key_id] = None  # as `_observe_answered` marks a key after an alert
        answer = httpx.post(
            server.url + "/v1/predict", json={"rows": [_far_row()]}, headers=bearer(key)
        )
        outcomes = _outcomes(tmp_path)  # read as soon as the answer is in
    assert answer.status_code == 200
    assert outcomes[-1]["decisions"]["monitor"] == "flag"
    assert outcomes[-1]["decisions"]["ood"] == "flag"


def test_a_request_cancelled_after_the_model_still_has_its_rows_observed(tmp_path: Path) -> None:
    """A request task cancelled while its answer waits for the admission (a server shutting
    down) leaves the deferred OOD step undone in `_finish`; the rows the model answered are
    still encoded for the query monitor."""
    app = _app(tmp_path)
    key = _keys(tmp_path, "predict")
    audit = app.guard.audit
    audit.append_here = lambda event: None  # through `append`, made slow
    append = audit.append

    async def slow(event: Any) -> int:
        await asyncio.sleep(0.5)
        return int(await append(event))

    audit.append = slow
    body = json.dumps({"rows": credit_rows()[:3]}).encode()

    async def run() -> int:
        lifespan: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        said: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        await lifespan.put({"type": "lifespan.startup"})
        life = asyncio.ensure_future(app({"type": "lifespan"}, lifespan.get, said.put))
        await said.get()

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            return None

        task = asyncio.ensure_future(app(predict_scope(body, key), receive, send))
        await asyncio.sleep(0.3)  # answered by the model; the admission is still on its way
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        tracked = int(app.guard.monitor.keys_tracked)
        await lifespan.put({"type": "lifespan.shutdown"})
        await said.get()
        await life
        return tracked

    assert asyncio.run(run()) == 1


def test_rate_limits_answer_429_with_retry_after(tmp_path: Path) -> None:
    app = _app(tmp_path, limits={"key_rate": 1.0, "key_burst": 3, "ip_rate": 1000.0})
    key = _keys(tmp_path, "predict")
    body = {"rows": credit_rows()[:1]}
    with serving(app) as server, httpx.Client(base_url=server.url, headers=bearer(key)) as c:
        statuses = [c.post("/v1/predict", json=body).status_code for _ in range(5)]
        assert statuses[:3] == [200, 200, 200] and statuses[3:] == [429, 429]
        limited = c.post("/v1/predict", json=body)
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    assert _events(tmp_path)[-1]["decisions"]["key_limit"] == "block"


def test_ip_limit_applies_before_authentication(tmp_path: Path) -> None:
    app = _app(tmp_path, limits={"ip_rate": 1.0, "ip_burst": 2})
    with serving(app) as server:
        statuses = [httpx.post(server.url + "/v1/predict").status_code for _ in range(4)]
    assert statuses == [401, 401, 429, 429]


def test_daily_budget_counts_rows(tmp_path: Path) -> None:
    app = _app(tmp_path, limits={"daily_rows": 10})
    key = _keys(tmp_path, "predict")
    with serving(app) as server, httpx.Client(base_url=server.url, headers=bearer(key)) as c:
        assert c.post("/v1/predict", json={"rows": credit_rows()[:8]}).status_code == 200
        over = c.post("/v1/predict", json={"rows": credit_rows()[:3]})
        assert over.status_code == 429 and over.json()["error"]["code"] == "budget_exhausted"
        assert c.post("/v1/predict", json={"rows": credit_rows()[:2]}).status_code == 200


def test_revocation_and_expiry_apply_on_the_next_request(live: Any) -> None:
    folder, server, _ = live
    store = KeyStore(folder / "keys.sqlite3")
    key, info = store.create(["predict"])
    body = {"rows": credit_rows()[:1]}
    assert httpx.post(server.url + "/v1/predict", json=body, headers=bearer(key)).status_code == 200
    store.revoke(info.id)  # another connection, as `bastion guard keys revoke` is
    store.close()
    assert httpx.post(server.url + "/v1/predict", json=body, headers=bearer(key)).status_code == 401
    event = _events(folder)[-1]
    assert event["key_id"] == info.id and event["decisions"]["auth"] == "revoked"


def test_a_key_record_edited_by_hand_is_a_clean_audited_refusal(live: Any) -> None:
    """A tenant the audit log refuses, written into the key store by hand: the request is
    answered 401 and recorded (it raised out of the middleware: no answer, no event)."""
    folder, server, _ = live
    store = KeyStore(folder / "keys.sqlite3")
    key, info = store.create(["predict"], tenant="acme")
    store.close()
    with sqlite3.connect(folder / "keys.sqlite3") as other:
        other.execute("UPDATE keys SET tenant = 'acme corp' WHERE id = ?", (info.id,))
    body = {"rows": credit_rows()[:1]}
    assert httpx.post(server.url + "/v1/predict", json=body, headers=bearer(key)).status_code == 401
    event = _events(folder)[-1]
    assert event["key_id"] == info.id and event["decisions"]["auth"] == "unknown"


def test_strict_audit_unavailable_means_503_never_an_unaudited_2xx(tmp_path: Path) -> None:
    app = _app(tmp_path)
    key = _keys(tmp_path, "predict")
    body = {"rows": credit_rows()[:1]}
    with serving(app) as server:
        assert (
            httpx.post(server.url + "/v1/predict", json=body, headers=bearer(key)).status_code
            == 200
        )
        app.guard.audit.close()  # the log goes away (disk gone, writer stopped)
        statuses = [
            httpx.post(server.url + "/v1/predict", json=body, headers=bearer(key)).status_code
            for _ in range(20)
        ]
    assert statuses == [503] * 20


def test_no_2xx_leaves_without_its_event_when_the_log_fails_under_load(tmp_path: Path) -> None:
    """Clients keep sending while the audit log goes away: every 200 answered has its decision
    (its admission) in the log (0 unaudited 2xx), and what could not be recorded was answered
    503. An outcome recorded names its admission; the outcome of an answer sent just before
    the log went away may be missing, never its admission."""
    app = _app(tmp_path)
    key = _keys(tmp_path, "predict")
    body = {"rows": credit_rows()[:1]}
    statuses: list[int] = []

    def client(n: int) -> None:
        with httpx.Client(timeout=20) as session:
            for _ in range(n):
                answer = session.post(server.url + "/v1/predict", json=body, headers=bearer(key))
                statuses.append(answer.status_code)

    with serving(app) as server:
        threads = [threading.Thread(target=client, args=(15,)) for _ in range(4)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while len(statuses) < 8 and time.monotonic() < deadline:
            time.sleep(0.01)
        app.guard.audit.close()  # while requests are in flight
        for thread in threads:
            thread.join(timeout=60)
    served = statuses.count(200)
    events = _events(tmp_path)
    admissions = [seq for seq, event in enumerate(events, 1) if "status" not in event]
    outcomes = [event for event in events if event.get("status") == 200]
    assert len(statuses) == 60 and set(statuses) <= {200, 503}
    assert served >= 8 and statuses.count(503) > 0
    assert served == len(admissions)
    assert 0 < len(outcomes) <= served
    assert {event["admission"] for event in outcomes} <= set(admissions)


class _Failing:
    """The served model, made slow or broken after the guard has started."""

    def __init__(self, mode: str) -> None:
        self.inner = served_model()
        self.mode = mode
        self.digest, self.classes, self.has_scores = (
            self.inner.digest,
            self.inner.classes,
            self.inner.has_scores,
        )
        self.armed = False

    def predict(self, rows: Any, scores: bool) -> Any:
        if self.armed and self.mode == "slow":
            time.sleep(3)
        if self.armed and self.mode == "crash":
            raise RuntimeError("model crashed: /srv/secret/model.py line 12")
        return self.inner.predict(rows, scores)


@pytest.mark.parametrize(("mode", "status"), [("slow", 504), ("crash", 500)])
def test_a_slow_or_crashing_model_is_504_or_500_within_the_timeout(
    tmp_path: Path, mode: str, status: int
) -> None:
    model = _Failing(mode)
    app = create_app(
        settings(tmp_path, server={"request_timeout_s": 1.0}),
        model=model,
        contract=contract(),
        training=training(),
    )
    key = _keys(tmp_path, "predict")
    model.armed = True
    with serving(app) as server:
        answer, elapsed = timed_predict(server.url, key, credit_rows()[:1])
    assert answer.status_code == status and elapsed < 2.5
    assert "/srv" not in answer.text and set(answer.json()) == {"error"}
    assert _outcomes(tmp_path)[-1]["status"] == status  # audited like any answer


def _sweep_then_benign(server: Any, key: str, after: int) -> list[httpx.Response]:
    """Benign rows, a sweep of one feature (the monitor's sweep alert), then `after` benign
    one-row requests."""
    seed = dict(credit_rows()[7])
    sweep = [{**seed, "credit_amount": amount} for amount in range(500, 15_001, 200)][:70]
    bodies = [credit_rows()[100:170], sweep] + [[row] for row in credit_rows()[200 : 200 + after]]
    return [
        httpx.post(server.url + "/v1/score", json={"rows": rows}, headers=bearer(key))
        for rows in bodies
    ]


def test_monitor_alerts_are_recorded_in_the_audit_chain(tmp_path: Path) -> None:
    """A key sweeping one feature raises the monitor's sweep alert. In the default flag mode
    the monitor looks at an answered request after sending it (its verdict cannot change the
    answer): the alert is an event of the chain (what `bastion guard report` turns into
    GRD104), and the key's next request, recorded after it, carries the flag."""
    app = _app(tmp_path)
    key = _keys(tmp_path, "score")
    with serving(app) as server:
        answers = _sweep_then_benign(server, key, 3)
    assert [a.status_code for a in answers] == [200] * 5
    events = _events(tmp_path)
    alerts = [e for e in events if "alert" in e]
    assert "sweep" in {a["alert"] for a in alerts}  # PRADA may see the synthetic rows too
    requests = [e for e in events if "status" in e]
    verdicts = [r["decisions"]["monitor"] for r in requests]
    assert verdicts[:2] == ["allow", "allow"] and "flag" in verdicts[2:]
    assert {a["key_id"] for a in alerts} == {requests[1]["key_id"]}
    # the sweep's alerts follow the sweep's event and precede the request carrying the flag
    flagged = requests[2 + verdicts[2:].index("flag")]
    first_alert = events.index(alerts[0])
    assert events.index(requests[1]) < first_alert < events.index(flagged)


def test_monitor_in_block_mode_refuses_the_request_that_raised_the_alert(tmp_path: Path) -> None:
    """`[monitor] action = "block"` may refuse an answer, so the monitor looks before it: the
    sweep itself is refused (403), its alerts precede its event, the key stays suspended."""
    app = _app(tmp_path, monitor={"action": "block"})
    key = _keys(tmp_path, "score")
    with serving(app) as server:
        answers = _sweep_then_benign(server, key, 1)
    assert [a.status_code for a in answers] == [200, 403, 403]
    events = _events(tmp_path)
    requests = [e for e in events if "status" in e]
    assert [r["decisions"].get("monitor") for r in requests] == ["allow", "block", "block"]
    alerts = [e for e in events if "alert" in e]
    assert alerts and events.index(alerts[-1]) < events.index(requests[1])


def test_flag_mode_answers_without_waiting_for_the_monitor(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """In flag mode the answer is sent before the monitor observes it: a monitor taking 1.5 s
    per request does not delay the answer, and one that fails is logged, not a 500; in block
    mode the answer waits for it."""
    for folder in ("slow", "failing", "blocking"):
        (tmp_path / folder).mkdir()
    slow = _app(tmp_path / "slow")
    failing = _app(tmp_path / "failing")
    blocking = _app(tmp_path / "blocking", monitor={"action": "block"})

    def sleepy(*_args: Any, **_kwargs: Any) -> list[Any]:
        time.sleep(1.5)
        return []

    def broken(*_args: Any, **_kwargs: Any) -> list[Any]:
        raise RuntimeError("monitor bug")

    slow.guard.monitor.observe = sleepy
    blocking.guard.monitor.observe = sleepy
    failing.guard.monitor.observe = broken
    took = {}
    for name, app in (("slow", slow), ("failing", failing), ("blocking", blocking)):
        key = _keys(tmp_path / name, "predict")
        with serving(app) as server:
            answer, took[name] = timed_predict(server.url, key, credit_rows()[:1])
            assert answer.status_code == 200, name
            again, _ = timed_predict(server.url, key, credit_rows()[1:2])
            assert again.status_code == 200, name
    assert took["slow"] < 1.0 and took["blocking"] >= 1.5
    assert "query monitor error" in caplog.text


def test_sighup_reload_swaps_settings_without_a_restart(tmp_path: Path) -> None:
    config = tmp_path / "guard.toml"
    config.write_text(
        f'[auth]\nkeys_db = "{tmp_path / "keys.sqlite3"}"\n[audit]\npath = "{tmp_path / "audit"}"\n'
        f'[model]\ntarget = "{TARGET}"\n[output.scopes.score]\nscores = true\ndigits = 2\n'
    )
    from bastion.guard.settings import load_guard_settings

    app = create_app(load_guard_settings(config), model=served_model(), contract=contract())
    key = _keys(tmp_path, "score")
    body = {"rows": credit_rows()[:1]}
    with serving(app) as server:
        before = httpx.post(server.url + "/v1/score", json=body, headers=bearer(key)).json()
        config.write_text(config.read_text().replace("digits = 2", "digits = 0\ntop_k = 1"))
        assert reload_settings(app.guard) == []
        after = httpx.post(server.url + "/v1/score", json=body, headers=bearer(key)).json()
        config.write_text("[server\nbroken")
        reload_settings(app.guard)  # refused: the running settings stay
        again = httpx.post(server.url + "/v1/score", json=body, headers=bearer(key)).json()
    assert len(before["predictions"][0]["scores"]) == 2
    assert len(after["predictions"][0]["scores"]) == 1
    assert next(iter(after["predictions"][0]["scores"].values())) in (0.0, 1.0)
    assert again == after


def test_tampered_or_unsigned_models_are_refused(tmp_path: Path) -> None:
    from bastion.guard.features import feature_columns

    columns = feature_columns(contract(), TARGET)
    tampered = tmp_path / MODEL.name
    data = bytearray(MODEL.read_bytes())
    data[-20] ^= 1
    tampered.write_bytes(bytes(data))
    shutil.copy(MODEL.with_name(MODEL.name + ".sig"), tmp_path / (MODEL.name + ".sig"))
    with pytest.raises(UnsafeArtifactError) as refused:
        load_served_model(tampered, columns, public_keys=[PUBLIC_KEY])
    assert refused.value.report.findings[0].rule_id == "SIG001"
    with pytest.raises(UsageError):
        load_served_model(MODEL, columns)  # no key: refused unless --unsafe-unsigned
    other_key = tmp_path / "other.pub"
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    other_key.write_bytes(
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(UnsafeArtifactError):
        load_served_model(MODEL, columns, public_keys=[other_key])


def test_a_malicious_model_is_refused_with_the_scan_findings(tmp_path: Path) -> None:
    import os
    import pickle

    class Payload:
        def __reduce__(self) -> Any:
            return (os.system, ("echo should-never-run",))

    model = tmp_path / "model.pkl"
    model.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(UnsafeArtifactError) as refused:
        load_served_model(model, ["a"], unsafe_unsigned=True)
    assert any(f.rule_id.startswith("PKL") for f in refused.value.report.findings)


def test_rows_answered_are_observed_even_when_sending_the_answer_fails(tmp_path: Path) -> None:
    """A client that drops the connection as its answer is sent does not escape the query
    monitor (nor the metrics): in flag mode the rows are observed once the model has
    answered, whatever happens to the answer afterwards."""
    app = _app(tmp_path)
    key = _keys(tmp_path, "predict")

    async def reset(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            raise OSError("connection reset by peer")

    monitor = app.guard.monitor
    assert monitor.keys_tracked == 0
    with pytest.raises(OSError):
        _call_in_process(app, key, credit_rows()[:1], reset)
    assert monitor.keys_tracked == 1
    assert app.guard.metrics.decisions.get(("model", "allow")) == 1  # and counted in metrics


def _call_in_process(
    app: Any, key: str, rows: list[dict[str, Any]], sent: Any = None
) -> int | None:
    """One POST /v1/predict straight into the ASGI app: its status (`sent` also sees every
    message the app sends, and may raise)."""
    import asyncio

    body = json.dumps({"rows": rows}).encode()
    scope = predict_scope(body, key)
    statuses = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])
        if sent is not None:
            await sent(message)

    async def served() -> None:
        # the request runs inside the app's lifespan, as under a server: shutdown stops the
        # model's thread pool and closes the audit log, whatever the request raised
        lifespan: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        started = asyncio.Event()

        async def lifespan_send(message: dict[str, Any]) -> None:
            assert message["type"] == "lifespan.startup.complete" or "shutdown" in message["type"]
            started.set()

        await lifespan.put({"type": "lifespan.startup"})
        task = asyncio.create_task(app({"type": "lifespan"}, lifespan.get, lifespan_send))
        await started.wait()
        try:
            await app(scope, receive, send)
        finally:
            await lifespan.put({"type": "lifespan.shutdown"})
            await task

    asyncio.run(served())
    return statuses[0] if statuses else None


def test_block_mode_refuses_a_request_whose_key_was_suspended_while_it_was_answered(
    tmp_path: Path,
) -> None:
    """A burst sent at once passes the suspension check before the first alert suspends the
    key: a request of the burst observed after that (with no alert of its own, as the monitor
    does not repeat one) is refused, not answered."""
    app = _app(tmp_path, monitor={"action": "block"})
    key = _keys(tmp_path, "predict")
    key_id = key.split("_")[1]
    guard = app.guard

    def concurrent_suspension(*_args: Any, **_kwargs: Any) -> list[Any]:
        guard.blocked[key_id] = time.monotonic() + 3600  # another request's alert, meanwhile
        return []

    guard.monitor.observe = concurrent_suspension
    assert _call_in_process(app, key, credit_rows()[:1]) == 403
    assert _events(tmp_path)[-1]["decisions"]["monitor"] == "block"


def test_flag_mode_alerts_are_counted_when_raised(tmp_path: Path) -> None:
    """An extraction ending with its alert-raising request is in the metrics at once, even if
    the key sends nothing after it to carry the flag."""
    app = _app(tmp_path)
    key = _keys(tmp_path, "score")
    with serving(app) as server:
        _sweep_then_benign(server, key, 0)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            metrics = httpx.get(server.url + "/metrics").text
            if 'bastion_guard_monitor_alerts_total{kind="sweep"}' in metrics:
                break
            time.sleep(0.05)
    assert 'bastion_guard_monitor_alerts_total{kind="sweep"} 1.0' in metrics


class _Slow:
    """The served model, taking `seconds` per call."""

    def __init__(self, seconds: float) -> None:
        self.inner = served_model()
        self.seconds = seconds
        self.digest, self.classes, self.has_scores = (
            self.inner.digest,
            self.inner.classes,
            self.inner.has_scores,
        )

    def predict(self, rows: Any, scores: bool) -> Any:
        time.sleep(self.seconds)
        return self.inner.predict(rows, scores)


def _slow_admissions(app: Any, seconds: float, where: str) -> None:
    """Make every AdmissionEvent take `seconds` longer to become durable: committed in place
    (a commit that blocks its thread without the GIL, like an fsync), or through `append`."""
    from bastion.guard.audit import AdmissionEvent

    log = app.guard.audit
    if where == "in place":
        commit = log._commit

        def slow_commit(datas: list[bytes]) -> int:
            if any(b'"status"' not in data for data in datas):
                time.sleep(seconds)
            return int(commit(datas))

        log._commit = slow_commit
        return
    append = log.append

    async def slowly(event: Any) -> int:
        if isinstance(event, AdmissionEvent):
            await asyncio.sleep(seconds)
        return int(await append(event))

    log.append = slowly
    log.append_here = lambda event: None  # the writer is busy: through `append`


@pytest.mark.parametrize("where", ["in place", "queued"])
@pytest.mark.parametrize(("model_s", "admission_s"), [(0.6, 0.6), (0.0, 0.8)])
def test_the_admission_is_durable_before_the_answer_and_overlaps_the_model(
    tmp_path: Path, model_s: float, admission_s: float, where: str
) -> None:
    """A request that reaches the model is admitted on the record (its verdicts so far) while
    the model computes: a 0.6 s model and a 0.6 s admission take about 0.6 s together, not 1.2,
    whether the admission is committed in place or queued; a fast model's answer still waits
    for a slow admission. The outcome follows the answer, names the admission, and repeats its
    verdicts and input digest."""
    app = create_app(
        settings(tmp_path), model=_Slow(model_s), contract=contract(), training=training()
    )
    key = _keys(tmp_path, "predict")
    body = {"rows": credit_rows()[:1]}
    with serving(app) as server, httpx.Client(timeout=20) as client:
        assert client.post(server.url + "/v1/predict", json=body, headers=bearer(key))
        _slow_admissions(app, admission_s, where)
        started = time.perf_counter()
        answer = client.post(server.url + "/v1/predict", json=body, headers=bearer(key))
        elapsed = time.perf_counter() - started
    assert answer.status_code == 200
    slowest = max(model_s, admission_s)
    assert slowest <= elapsed < slowest + 0.45, elapsed
    events = _events(tmp_path)
    assert len(events) == 4
    admitted, outcome = events[2], events[3]
    assert "status" not in admitted and outcome["status"] == 200 and outcome["admission"] == 3
    assert admitted["input_digest"] == outcome["input_digest"]
    assert admitted["decisions"].items() <= outcome["decisions"].items()
    assert admitted["decisions"]["contract"] == "allow" and "output" in outcome["decisions"]


def test_a_model_crash_after_admission_is_recorded_before_the_500(tmp_path: Path) -> None:
    """The outcome of a request the model failed is durable before the refusal is sent, and it
    names the admission recorded before the model ran. It carries the OOD verdict, deferred
    past the model (the rows are far out: `flag`)."""
    model = _Failing("crash")
    app = create_app(settings(tmp_path), model=model, contract=contract(), training=training())
    key = _keys(tmp_path, "predict")
    model.armed = True
    with serving(app) as server:
        answer = httpx.post(
            server.url + "/v1/predict", json={"rows": [_far_row()]}, headers=bearer(key)
        )
        events = _events(tmp_path)  # before the server stops: nothing is left to append
    assert answer.status_code == 500
    assert ["status" in e for e in events] == [False, True]
    assert events[1]["status"] == 500 and events[1]["admission"] == 1
    assert events[1]["decisions"]["model"] == "error"
    assert events[1]["decisions"]["ood"] == "flag" and "ood" not in events[0]["decisions"]


def test_the_admission_names_the_authenticated_caller(tmp_path: Path) -> None:
    """Who is recorded is the principal authentication found, however the header was spelled
    (two spaces after Bearer authenticate as well)."""
    app = _app(tmp_path)
    key = _keys(tmp_path, "predict")
    body = {"rows": credit_rows()[:1]}
    with serving(app) as server:
        answer = httpx.post(
            server.url + "/v1/predict", json=body, headers={"authorization": "Bearer  " + key}
        )
    assert answer.status_code == 200
    admitted, outcome = _events(tmp_path)
    assert admitted["key_id"] == outcome["key_id"] == key.split("_")[1]


def test_an_answer_a_check_flagged_leaves_after_its_outcome(tmp_path: Path) -> None:
    """An answered request whose outcome adds more than "allowed" (here the key flagged by the
    monitor's alerts) is recorded whole before the answer leaves; a plain one's outcome may
    follow its answer. Checked as each answer arrives, outcomes made 0.3 s slower to record
    (one that followed its answer would not be there yet)."""
    from bastion.guard.audit import AuditEvent

    app = _app(tmp_path)
    key = _keys(tmp_path, "score")
    append = app.guard.audit.append

    async def slow_outcomes(event: Any) -> int:
        if isinstance(event, AuditEvent):
            await asyncio.sleep(0.3)
        return int(await append(event))

    app.guard.audit.append = slow_outcomes
    seed = dict(credit_rows()[7])
    sweep = [{**seed, "credit_amount": amount} for amount in range(500, 15_001, 200)][:70]
    flagged_seen = False
    with serving(app) as server, httpx.Client(timeout=20) as client:
        for rows in [credit_rows()[100:170], sweep] + [[r] for r in credit_rows()[200:204]]:
            answer = client.post(server.url + "/v1/score", json={"rows": rows}, headers=bearer(key))
            assert answer.status_code == 200
            if rows is sweep:
                time.sleep(0.6)  # its alerts come after its (slowed) outcome
                continue
            outcomes = _outcomes(tmp_path)
            if outcomes and outcomes[-1]["decisions"].get("monitor") == "flag":
                flagged_seen = True
                break
            # otherwise the newest outcome may still be on its way
    assert flagged_seen


class _HangsOn:
    """The served model, hanging for 2 s on rows whose credit_amount is `amount`."""

    def __init__(self, amount: int) -> None:
        self.inner = served_model()
        self.amount = amount
        self.digest, self.classes, self.has_scores = (
            self.inner.digest,
            self.inner.classes,
            self.inner.has_scores,
        )

    def predict(self, rows: Any, scores: bool) -> Any:
        if any(row.get("credit_amount") == self.amount for row in rows):
            time.sleep(2)
        return self.inner.predict(rows, scores)


def test_model_calls_hanging_past_the_timeout_do_not_starve_the_others(tmp_path: Path) -> None:
    """Eight requests whose model call hangs (each answered 504, its thread still busy) leave
    threads for the next request: the model has its own pool, larger than the event loop's
    default executor on a small machine (cpus + 4)."""
    row = dict(credit_rows()[0])
    app = create_app(
        settings(tmp_path, server={"request_timeout_s": 0.5}),
        model=_HangsOn(row["credit_amount"] + 1),
        contract=contract(),
        training=training(),
    )
    key = _keys(tmp_path, "predict")
    hanging = {"rows": [{**row, "credit_amount": row["credit_amount"] + 1}]}
    statuses: list[int] = []

    def hang() -> None:
        answer = httpx.post(
            server.url + "/v1/predict", json=hanging, headers=bearer(key), timeout=20
        )
        statuses.append(answer.status_code)

    with serving(app) as server:
        threads = [threading.Thread(target=hang) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        answer = httpx.post(server.url + "/v1/predict", json={"rows": [row]}, headers=bearer(key))
    assert statuses == [504] * 8
    assert answer.status_code == 200

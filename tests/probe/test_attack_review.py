"""Regressions from the attack review of the evasion search and the endpoint client (issue 10):
out-of-bounds applicants, hostile endpoint answers, redirects, no-change flips, wide rows, slow
answers, refused candidates, hostile costs, query counts and bad command-line values. Every
server here listens on 127.0.0.1 and is started by the test."""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from bastion.cli.main import main
from bastion.config import ProbeSettings
from bastion.errors import UsageError
from bastion.findings import Location
from bastion.probe.endpoint import EndpointError, EndpointRefused, HttpModel
from bastion.probe.evasion import run_evasion
from bastion.probe.inputs import Table, dtypes_of
from bastion.probe.model import Model, Output
from bastion.probe.run import run_probe
from bastion.probe.search import Searcher, Space
from bastion.probe.spec import (
    FeatureSpec,
    ProbeSpec,
    infer,
    load_spec,
    parse_monotone,
    validate_change,
)


class Fn(Model):
    """A model from a function of the frame (the probability of 'good'); records every frame."""

    def __init__(self, fn: Callable[[pd.DataFrame], Any], scores: bool = True) -> None:
        super().__init__("fn", ["bad", "good"])
        self.fn = fn
        self.scores = scores
        self.sent: list[pd.DataFrame] = []

    @property
    def gives_scores(self) -> bool:
        return self.scores

    def _predict(self, frame: pd.DataFrame) -> Output:
        self.sent.append(frame.copy())
        p = np.asarray(self.fn(frame), dtype=float)
        labels = np.where(p >= 0.5, "good", "bad").astype(object)
        return Output(labels, np.column_stack([1 - p, p]) if self.scores else None)

    @property
    def rows_received(self) -> int:
        return sum(len(f) for f in self.sent)


def _evade(
    model: Model, spec: ProbeSpec, frame: pd.DataFrame, qpr: int = 1000, budget: float = 1.0
) -> Any:
    base = model.query(frame)
    options = ProbeSettings(budgets=(budget,), queries_per_row=qpr)
    return run_evasion(
        model, spec, frame, None, base.labels, base.scores, "good", options, Location(path="m")
    )


# --- servers -------------------------------------------------------------------------------


def _serve(handle: Callable[[BaseHTTPRequestHandler, dict[str, Any]], None]) -> Any:
    state: dict[str, Any] = {"headers": [], "rows": 0}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            state["headers"].append(dict(self.headers))
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            state["body"] = body
            state["rows"] += len(body.get("rows", [body.get("row")]))
            handle(self, state)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    state["url"] = f"http://127.0.0.1:{httpd.server_address[1]}/predict"
    state["httpd"] = httpd
    return state


def _send(handler: BaseHTTPRequestHandler, body: bytes, status: int = 200) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def _p(row: dict[str, Any]) -> float:
    return 1 / (1 + math.exp(-4 * (float(row["a"]) + float(row["b"]) - 3.0)))


@pytest.fixture()
def servers() -> Iterator[list[Any]]:
    started: list[Any] = []
    yield started
    for state in started:
        state["httpd"].shutdown()
        state["httpd"].server_close()


def _ab_frame(rows: int = 12, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"a": rng.uniform(0, 2, rows).round(3), "b": rng.uniform(0, 1, rows)})


# --- 1. applicants outside the spec's bounds ---------------------------------------------------


@pytest.mark.parametrize("scores", [True, False])
def test_out_of_bounds_applicants_move_into_the_bounds(scores: bool) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"debt": rng.uniform(110, 150, 20), "x": rng.uniform(0, 1, 20)})
    spec = ProbeSpec(
        favourable="good",
        features=(
            FeatureSpec(name="debt", kind="numeric", lower=0, upper=100, cost=0.01),
            FeatureSpec(name="x", kind="numeric", lower=0, upper=1, cost=100.0),
        ),
    )
    model = Fn(lambda f: 1 / (1 + np.exp((f.debt - 130) / 2)), scores=scores)
    result = _evade(model, spec, frame)
    metrics = result.metrics
    assert metrics["probed"] > 0
    # moving debt to its upper bound flips every declined row, within bounds, for <= 0.5
    assert metrics["success_rate"] == 1.0 and metrics["invalid_dropped"] == 0
    for flip in metrics["cheapest_flips"]:
        assert all(0 <= c["to"] <= 100 for c in flip["changes"] if c["feature"] == "debt")
    # the rows the spec does not describe are said
    assert metrics["outside_spec_rows"] == metrics["probed"]
    assert any("outside the spec" in s.reason for s in result.skips)


def test_an_out_of_bounds_value_against_its_direction_cannot_move() -> None:
    spec = ProbeSpec(
        favourable="good",
        features=(FeatureSpec(name="debt", kind="numeric", lower=0, upper=100, direction=1),),
    )
    space = Space(spec, {"debt": np.dtype("float64")})
    assert not space.movable(0, 120.0)  # may only rise, and is already above its upper bound
    assert space.numeric_value(0, 120.0, 5.0) is None
    assert space.numeric_value(0, 120.0, -5.0) is None


# --- 2. strict endpoint answers ----------------------------------------------------------------

BAD_ANSWERS = {
    "nan": (b'{"scores": [NaN]}', "NaN"),
    "nan-in-list": (b'{"scores": [[NaN, 0.5]]}', "NaN"),
    "infinity": (b'{"scores": [[0.1, Infinity]]}', "Infinity"),
    "above-one": (b'{"scores": [[0.5, 20.0]]}', "outside [0, 1]"),
    "negative": (b'{"scores": [[-5.0, -4.0]]}', "outside [0, 1]"),
    "boolean": (b'{"scores": [[true, false]]}', "a boolean"),
    "bad-sum": (b'{"scores": [[0.9, 0.9]]}', "summing to"),
    "deep": (b'{"scores": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
    # second review: an integer too large for a float raised OverflowError ("internal error")
    "huge-integer": (b'{"scores": [1' + b"0" * 400 + b"]}", "not a score"),
    "huge-integer-in-list": (b'{"scores": [[0, 1' + b"0" * 400 + b"]]}", "not a score"),
}

BAD_LABELS = {
    "unknown": b'{"labels": ["banana"]}',
    "boolean": b'{"labels": [true]}',
    "infinite": b'{"labels": [1e999]}',
    "object": b'{"labels": [{"a": 1}]}',
}


@pytest.mark.parametrize("case", sorted(BAD_LABELS))
def test_a_label_outside_the_classes_is_a_clear_error(servers: list[Any], case: str) -> None:
    """Second review: labels were only type-checked, so 'banana', true or 1e999 became labels
    and the verdict was computed on them."""
    state = _serve(lambda handler, _: _send(handler, BAD_LABELS[case]))
    servers.append(state)
    model = HttpModel(
        state["url"], template={"rows": "$rows"}, classes=["bad", "good"], labels="/labels"
    )
    with pytest.raises(EndpointError, match="not one of --classes"):
        model.query(pd.DataFrame({"a": [1.0]}))


def test_numeric_labels_in_the_classes_are_accepted(servers: list[Any]) -> None:
    state = _serve(lambda handler, _: _send(handler, b'{"labels": [1, 0.0]}'))
    servers.append(state)
    model = HttpModel(
        state["url"], template={"rows": "$rows"}, classes=["0", "1"], labels="/labels"
    )
    assert list(model.query(pd.DataFrame({"a": [1.0, 2.0]})).labels) == ["1", "0"]


@pytest.mark.parametrize("status", [401, 403, 404, 405])
def test_an_answer_about_the_request_itself_stops_at_once(servers: list[Any], status: int) -> None:
    """Second review: a 401/404 was bisected as refused input, 832 rows for a 120-row file."""
    state = _serve(lambda handler, _: _send(handler, b"{}", status=status))
    servers.append(state)
    model = HttpModel(
        state["url"], template={"rows": "$rows"}, classes=["bad", "good"], scores="/scores"
    )
    with pytest.raises(EndpointError, match=f"HTTP {status}") as caught:
        model.query(pd.DataFrame({"a": [1.0] * 8}))
    assert not isinstance(caught.value, EndpointRefused)
    assert state["rows"] == 8  # one request, not a bisection


def test_credentials_in_the_endpoint_url_are_refused_and_its_query_never_shown() -> None:
    """Second review: user:password@ and ?api_key= were written to the report 7 times."""
    with pytest.raises(UsageError, match="--header"):
        HttpModel(
            "http://apiuser:pw123@127.0.0.1:9/predict",
            template={"rows": "$rows"},
            classes=["bad", "good"],
            scores="/scores",
        )
    model = HttpModel(
        "http://127.0.0.1:9/predict?api_key=SECRETKEY",
        template={"rows": "$rows"},
        classes=["bad", "good"],
        scores="/scores",
        retries=0,
        timeout=1.0,
    )
    assert "SECRETKEY" not in model.url and model.url == "http://127.0.0.1:9/predict"
    with pytest.raises(EndpointError) as caught:
        model.query(pd.DataFrame({"a": [1.0]}))
    assert "SECRETKEY" not in str(caught.value)


@pytest.mark.parametrize("case", sorted(BAD_ANSWERS))
def test_a_bad_endpoint_answer_is_a_clear_error(servers: list[Any], case: str) -> None:
    body, words = BAD_ANSWERS[case]
    state = _serve(lambda handler, _: _send(handler, body))
    servers.append(state)
    model = HttpModel(
        state["url"], template={"rows": "$rows"}, classes=["bad", "good"], scores="/scores"
    )
    with pytest.raises(EndpointError, match=words.replace("[", r"\[").replace("]", r"\]")):
        model.query(pd.DataFrame({"a": [1.0]}))


# --- 3. redirects ------------------------------------------------------------------------------


def test_a_redirect_is_an_error_and_credentials_stay_home(servers: list[Any]) -> None:
    elsewhere = _serve(lambda handler, _: _send(handler, b'{"scores": [0.9]}'))
    servers.append(elsewhere)
    target = elsewhere["url"] + "?token=query-secret"

    def redirect(handler: BaseHTTPRequestHandler, _: dict[str, Any]) -> None:
        handler.send_response(302)
        handler.send_header("Location", target)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    origin = _serve(redirect)
    servers.append(origin)
    model = HttpModel(
        origin["url"],
        template={"rows": "$rows"},
        classes=["bad", "good"],
        scores="/scores",
        headers={"Authorization": "Bearer SECRET"},
    )
    with pytest.raises(EndpointError, match="redirect") as caught:
        model.query(pd.DataFrame({"a": [1.0]}))
    port = elsewhere["httpd"].server_address[1]
    assert f"127.0.0.1:{port}" in str(caught.value) and "query-secret" not in str(caught.value)
    assert elsewhere["headers"] == []  # nothing, least of all the credential, went there


# --- 4. a row with no change is never a flip ---------------------------------------------------


def test_the_original_row_is_never_sent_nor_reported() -> None:
    coin = np.random.default_rng(1)
    model = Fn(lambda f: (coin.uniform(0, 1, len(f)) < 0.3).astype(float), scores=False)
    frame = _ab_frame(20)
    result = run_probe(
        model,
        Table("t", frame, np.array(["bad"] * 20, dtype=object)),
        attacks=("evasion",),
        favourable="good",
    )
    evasion = result.metadata["probe"]["evasion"]
    assert evasion["cheapest_flips"]  # a coin gives "flips"...
    assert all(flip["changes"] and flip["cost"] > 0 for flip in evasion["cheapest_flips"])
    # ... and the search never sends an applicant's own row as a candidate
    spec = infer(frame, favourable="good")
    for row in frame.to_numpy(dtype=object)[:5]:
        model.sent.clear()
        searcher = Searcher(model, Space(spec, dtypes_of(frame)), "good", 1.0, 300)
        searcher.search(list(row), None)
        sent = [tuple(r) for f in model.sent for r in f.to_numpy(dtype=object)]
        assert sent and tuple(row) not in sent


def test_polish_of_no_change_is_no_flip() -> None:
    model = Fn(lambda f: np.ones(len(f)), scores=False)  # everything favourable
    spec = infer(_ab_frame(), favourable="good")
    searcher = Searcher(model, Space(spec, dtypes_of(_ab_frame())), "good", 1.0, 100)
    row = list(_ab_frame().to_numpy(dtype=object)[0])
    assert searcher.polish(row, list(row)).flip is None and model.sent == []


# --- 5. wide rows --------------------------------------------------------------------------------


def test_moves_are_sampled_before_rows_are_built() -> None:
    frame = pd.DataFrame(np.random.default_rng(0).uniform(0, 1, (3, 600)))
    frame.columns = [f"f{i}" for i in range(600)]
    spec = infer(frame, favourable="good")
    model = Fn(lambda f: np.zeros(len(f)))
    searcher = Searcher(model, Space(spec, dtypes_of(frame)), "good", 1.0, 50)
    row = list(frame.to_numpy(dtype=object)[0])
    searcher._original = row
    # 600 features x 12 grid moves, but the row may send 50: only 50 rows are built
    assert len(searcher._moves(row, row, 0.0)) == 50


# --- 6. whole-request deadline ---------------------------------------------------------------


def test_a_slow_dripping_answer_ends_at_the_deadline(servers: list[Any]) -> None:
    stop = threading.Event()

    def trickle(handler: BaseHTTPRequestHandler, _: dict[str, Any]) -> None:
        body = b'{"scores": [0.5, 0.5, 0.5, 0.5, 0.5, 0.5]}'
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        for byte in body:
            if stop.is_set():
                return
            try:
                handler.wfile.write(bytes([byte]))
                handler.wfile.flush()
            except OSError:
                return
            time.sleep(0.3)

    state = _serve(trickle)
    servers.append(state)
    model = HttpModel(
        state["url"], template={"rows": "$rows"}, classes=["bad", "good"], scores="/scores",
        retries=0, timeout=1.0,
    )  # fmt: skip
    began = time.monotonic()
    try:
        with pytest.raises(EndpointError, match="no complete answer within 1 s"):
            model.query(pd.DataFrame({"a": [1.0] * 6}))
    finally:
        stop.set()
    assert time.monotonic() - began < 3  # a per-read timeout waits ~13 s


# --- 7. refused candidates -------------------------------------------------------------------


def test_refused_candidates_count_as_no_flip_through_an_endpoint(servers: list[Any]) -> None:
    def contract(handler: BaseHTTPRequestHandler, state: dict[str, Any]) -> None:
        rows = state["body"]["rows"]
        if len(rows) < 12 and any(float(r["a"]) > 2.4 for r in rows):
            _send(handler, b'{"error": "out of contract"}', 422)
        else:
            _send(handler, json.dumps({"scores": [_p(r) for r in rows]}).encode())

    state = _serve(contract)
    servers.append(state)
    frame = _ab_frame(12)
    spec = ProbeSpec(
        favourable="good",
        features=(
            FeatureSpec(name="a", kind="numeric", lower=0, upper=4, cost=1.0),
            FeatureSpec(name="b", kind="numeric", lower=0, upper=1, cost=1.0),
        ),
    )
    model = HttpModel(
        state["url"], template={"rows": "$rows"}, classes=["bad", "good"], scores="/scores",
        batch=8,
    )  # fmt: skip
    result = _evade(model, spec, frame, qpr=200)
    metrics = result.metrics
    assert metrics["refused_candidates"] > 0 and metrics["success_rate"] > 0
    assert any("refused" in s.reason for s in result.skips)
    assert model.queries == state["rows"]  # every row sent is counted, re-sends included


def test_a_model_raising_on_some_inputs_keeps_the_flips_found() -> None:
    frame = _ab_frame(20)

    def fussy(f: pd.DataFrame) -> Any:
        if (f.a > 1.0).any() and len(f) < 5:
            raise ValueError("input out of the range the service accepts")
        return 1 / (1 + np.exp(-8 * (f.a + f.b - 1.4)))

    labels = np.where(frame.a + frame.b >= 1.4, "good", "bad").astype(object)
    report = run_probe(Fn(fussy), Table("t", frame, labels), attacks=("evasion",))
    target = report.results[0]
    assert not target.errors
    evasion = report.metadata["probe"]["evasion"]
    assert evasion["success_rate"] > 0 and evasion["refused_candidates"] > 0


# --- 8. hostile costs --------------------------------------------------------------------------


@pytest.mark.parametrize("cost", [1e-300, 1e-320, 1e300])
def test_hostile_costs_do_not_crash_the_search(cost: float) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"k": rng.integers(0, 5, 8).astype("int64"), "x": rng.uniform(0, 1, 8)})
    spec = ProbeSpec(
        favourable="good",
        features=(
            FeatureSpec(name="k", kind="integer", cost=cost),
            FeatureSpec(name="x", kind="numeric", lower=0, upper=1, cost=1000.0),
        ),
    )
    model = Fn(lambda f: 1 / (1 + np.exp(-(f.k.astype(float) - 4.5) * 3)))
    metrics = _evade(model, spec, frame).metrics
    assert metrics["invalid_dropped"] == 0
    for flip in metrics["cheapest_flips"]:
        assert all(abs(c["to"]) <= 2**53 for c in flip["changes"])
    if cost < 1:
        assert metrics["success_rate"] == 1.0


# --- 9. query counts -----------------------------------------------------------------------------


@pytest.mark.parametrize("scores", [True, False])
def test_a_rows_queries_count_everything_and_stay_within_its_cap(scores: bool) -> None:
    rng = np.random.default_rng(0)
    width = 40
    frame = pd.DataFrame(rng.uniform(0, 1, (1, width)), columns=[f"f{i}" for i in range(width)])
    weights = rng.uniform(0.5, 1.5, width)
    start = float(frame.to_numpy()[0] @ weights)
    spec = ProbeSpec(
        favourable="good",
        features=tuple(
            FeatureSpec(name=f"f{i}", kind="numeric", lower=0, upper=3, cost=1.0)
            for i in range(width)
        ),
    )
    model = Fn(
        lambda f: 1 / (1 + np.exp(-(f.to_numpy() @ weights - start - 0.6) * 4)), scores=scores
    )
    metrics = _evade(model, spec, frame, qpr=300).metrics
    assert metrics["success_rate"] == 1.0
    # the row's own prediction, the search and the confirmation: all counted, all within cap
    assert metrics["queries"] == model.rows_received == model.queries <= 300


def test_retries_are_counted_and_kept_within_the_budget(servers: list[Any]) -> None:
    state = _serve(lambda handler, _: _send(handler, b'{"error": "busy"}', 503))
    servers.append(state)
    model = HttpModel(
        state["url"], template={"rows": "$rows"}, classes=["bad", "good"], scores="/scores",
        retries=2, budget=25,
    )  # fmt: skip
    with pytest.raises(Exception, match="budget"):
        model.query(pd.DataFrame({"a": [1.0] * 10}))
    assert model.queries == state["rows"] == 20  # the second retry would pass the budget


# --- 10. bad values are usage errors -------------------------------------------------------------


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("review")
    frame = _ab_frame(30)
    frame["c"] = ["x", "y"] * 15
    frame["outcome"] = np.where(frame.a + frame.b >= 1.4, "good", "bad")
    frame.to_csv(root / "data.csv", index=False)
    return root / "data.csv"


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--request-timeout", "-1"], "--request-timeout"),
        (["--request-timeout", "nan"], "--request-timeout"),
        (["--request-timeout", "0"], "--request-timeout"),
        (["--concurrency", "0"], "--concurrency"),
        (["--batch", "-1"], "--batch"),
        (["--retries", "-1"], "--retries"),
        (["--classes", "good"], "classes"),
        (["--monotone", "a=+1", "a=-1"], "both directions"),
        (["--immutable", "a", "--monotone", "a=+1"], "both as --immutable and --monotone"),
        (["--endpoint", "http://[::1/"], "not a valid URL"),
    ],
)
def test_bad_values_are_usage_errors(
    data_file: Path, extra: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # port 9 (discard) on the loopback: nothing may be sent before the values are checked
    argv = [
        "probe", "--endpoint", "http://127.0.0.1:9/none", "--scores", "/scores",
        "--data", str(data_file), "--target", "outcome", "--attacks", "evasion", "--no-store",
        *extra,
    ]  # fmt: skip
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = int(exc.code or 0)
    err = capsys.readouterr().err
    assert code == 2 and "internal error" not in err and "Traceback" not in err
    assert words in err


def test_spec_errors_say_what_is_wrong(tmp_path: Path) -> None:
    not_json = tmp_path / "data.csv"
    not_json.write_text("a,b\n1,2\n")
    with pytest.raises(Exception, match="not valid JSON") as caught:
        load_spec(not_json)
    assert "csv" not in str(caught.value).split(":", 1)[1]
    both = tmp_path / "spec.json"
    both.write_text(
        json.dumps(
            {
                "spec": "bastion-probe-spec",
                "version": 1,
                "features": [{"name": "a", "kind": "numeric", "immutable": True, "direction": 1}],
            }
        )
    )
    with pytest.raises(Exception, match="immutable feature has no direction"):
        load_spec(both)
    with pytest.raises(UsageError, match="both directions"):
        parse_monotone(["a=+1", "a=-1"])


def test_an_integer_feature_over_text_is_a_spec_error() -> None:
    frame = pd.DataFrame({"a": [1.0, 2.0], "c": ["x", "y"]})
    spec = ProbeSpec(
        favourable="good",
        features=(
            FeatureSpec(name="a", kind="numeric"),
            FeatureSpec(name="c", kind="integer"),
        ),
    )
    model = Fn(lambda f: np.zeros(len(f)))
    with pytest.raises(UsageError, match="holds text"):
        run_probe(model, Table("t", frame, None), spec=spec, attacks=("evasion",))
    assert validate_change(spec, [1.0, "x"], [1.0, "x"]) == []

"""Black-box evasion through HTTP (issue #10): the German Credit logistic regression served on
127.0.0.1 by this script (a JSON endpoint: {"rows": [...]} -> scores and labels), probed with
`bastion probe --endpoint` semantics (bastion.probe.endpoint.HttpModel) under a stated total
query budget, with scores and with labels only; the same rows probed in-process for reference.
Reports the share of declined rows flipped, queries per successful flip, HTTP requests, and
that every flip is valid.

    .venv/bin/python bench/probe_endpoint.py [--rows 40] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from probe_evasion import german, pipeline  # noqa: E402

from bastion.config import ProbeSettings  # noqa: E402
from bastion.findings import Location  # noqa: E402
from bastion.probe.endpoint import HttpModel  # noqa: E402
from bastion.probe.evasion import run_evasion  # noqa: E402
from bastion.probe.model import EstimatorModel, Model  # noqa: E402


def serve(model: Any) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            frame = pd.DataFrame(body["rows"])
            answer = json.dumps(
                {
                    "scores": model.predict_proba(frame).tolist(),
                    "labels": model.predict(frame).tolist(),
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/predict"


def probe(model: Model, frame: pd.DataFrame, spec: Any, rows: int) -> dict[str, Any]:
    baseline = model.query(frame)
    options = ProbeSettings(max_rows=rows, budgets=(0.5, 1.0, 2.0), queries_per_row=1000)
    began = time.monotonic()
    metrics = run_evasion(
        model, spec, frame, None, baseline.labels, baseline.scores, "1", options, Location(path="x")
    ).metrics
    return {
        "probed": metrics["probed"],
        "flipped_within_2": metrics["budgets"][-1]["flippable_share"],
        "median_cost": metrics["budgets"][-1]["median_cost"],
        "invalid_dropped": metrics["invalid_dropped"],
        "queries": metrics["queries"],
        "queries_per_row_median": metrics["queries_per_row_median"],
        "queries_per_flip_median": metrics["queries_per_flip_median"],
        "seconds": round(time.monotonic() - began, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=40)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from sklearn.model_selection import train_test_split
    from threadpoolctl import threadpool_limits

    frame, y, spec = german()
    x_train, x_test, y_train, _ = train_test_split(
        frame, y, test_size=0.3, random_state=0, stratify=y
    )
    model = pipeline("logistic_regression", spec).fit(x_train, y_train.astype(str))
    x_test = x_test.reset_index(drop=True)
    budget = len(x_test) + args.rows * 1000 + 10  # baseline + 1,000 per probed row + confirm
    results: dict[str, Any] = {"rows": args.rows, "stated_budget": budget}
    server, url = serve(model)
    try:
        with threadpool_limits(limits=1):
            results["in_process"] = probe(EstimatorModel(model, "lr"), x_test, spec, args.rows)
            for mode in ("scores", "labels"):
                http = HttpModel(
                    url,
                    template={"rows": "$rows"},
                    classes=["0", "1"],
                    scores="/scores" if mode == "scores" else None,
                    labels="/labels",
                    budget=budget,
                    concurrency=2,
                )
                entry = probe(http, x_test, spec, args.rows)
                entry["http_requests"] = http.requests
                entry["budget_used"] = http.queries
                results[f"endpoint_{mode}"] = entry
    finally:
        server.shutdown()
    for name, value in results.items():
        print(name, value)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

"""The runtime guard in front of the example credit model, end to end (`make demo`).

Starts `bastion guard serve` on the signed credit model (signature checked against
keys/release.pub, the contract profiled from the training data, the OOD detector and the query
monitor fitted on it) on a free loopback port, waits until it answers, then sends:

1. legitimate traffic (rows of the data, labels for a `predict` key, scores for a `score` key);
2. a request without a credential;
3. a row carrying personal data (an e-mail address and a card number);
4. a row outside the contract (an age of 250, an unknown category);
5. a short extraction attempt (one applicant's amount and duration swept on a grid);

prints each answer and the decisions the guard recorded for it (read back from its audit log
with `bastion audit export`), verifies the audit chain (`bastion audit verify`), writes the
runtime report (`bastion guard report`, HTML), and stops the server, whatever happened.

    python examples/credit-scoring/guard_demo.py [--workdir demo-guard] [--report FILE]

Only 127.0.0.1 is used; the server runs in its own process group and is always stopped."""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
MODEL = HERE / "model" / "credit_model.joblib"
PUBLIC_KEY = HERE / "keys" / "release.pub"
DATA = HERE / "data" / "german_credit.csv"
TARGET = "creditability"
NUMERIC = (
    "duration_in_month",
    "credit_amount",
    "installment_rate_in_percentage_of_disposable_income",
    "present_residence_since",
    "age_in_years",
    "number_of_existing_credits_at_this_bank",
    "number_of_people_being_liable_to_provide_maintenance_for",
)
READY_SECONDS = 180  # loading, verifying and scanning the model, fitting the detectors


def bastion(
    *args: str, check: bool = True, capture: bool = False
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "bastion", *args]
    result = subprocess.run(command, text=True, capture_output=capture, check=False)
    if check and result.returncode not in (0, 1):
        raise SystemExit(f"`bastion {' '.join(args)}` failed with exit code {result.returncode}")
    return result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rows() -> list[dict[str, Any]]:
    with DATA.open(newline="", encoding="utf-8") as handle:
        out = []
        for row in csv.DictReader(handle):
            row.pop(TARGET)
            out.append({k: int(v) if k in NUMERIC else v for k, v in row.items()})
    return out


class Guard:
    """`bastion guard serve` as a child process in its own session."""

    def __init__(self, config: Path, contract: Path, port: int, log: Path) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log.open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bastion",
                "guard",
                "serve",
                str(MODEL),
                "--contract",
                str(contract),
                "--target",
                TARGET,
                "--key",
                str(PUBLIC_KEY),
                "--training-data",
                str(DATA),
                "--config",
                str(config),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(
                    f"the guard exited with code {self.process.returncode} before it was ready; "
                    f"its output is in {self.log.name}"
                )
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.25)
        raise SystemExit(f"the guard was not ready within {READY_SECONDS} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.process.wait(timeout=10)
        self.log.close()


def post(url: str, document: Any, key: str | None) -> tuple[int, Any]:
    headers = {"content-type": "application/json"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    request = urllib.request.Request(
        url, data=json.dumps(document).encode(), headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def new_key(config: Path, scope: str, note: str) -> str:
    result = bastion(
        "guard",
        "keys",
        "create",
        "--scope",
        scope,
        "--note",
        note,
        "--config",
        str(config),
        capture=True,
    )
    return result.stdout.strip().splitlines()[0]


def events(audit: Path, key: Path) -> list[dict[str, Any]]:
    result = bastion("audit", "export", str(audit), "--key", str(key), capture=True)
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def show(title: str, status: int, answer: Any, event: dict[str, Any] | None) -> None:
    text = json.dumps(answer)
    print(f"\n-- {title}\n   HTTP {status}: {text[:160]}{'...' if len(text) > 160 else ''}")
    if event is not None:
        decisions = event.get("decisions", {})
        shown = ", ".join(f"{detector}={action}" for detector, action in decisions.items())
        print(f"   decisions: {shown}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("demo-guard"))
    parser.add_argument("--report", type=Path, default=Path("demo-guard-report.html"))
    args = parser.parse_args()
    work = args.workdir.resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    contract = work / "contract.json"
    signing_key = work / "audit-checkpoint.key"
    audit = work / "audit"
    config = work / "guard.toml"

    print("== the guard's inputs: the data contract, a checkpoint key, guard.toml")
    bastion("data", "profile", str(DATA), "-o", str(contract), "-q")
    bastion("audit", "keygen", str(signing_key))
    config.write_text(
        "\n".join(
            [
                "[auth]",
                f'keys_db = "{work / "keys.sqlite3"}"',
                "[audit]",
                f'path = "{audit}"',
                f'signing_key = "{signing_key}"',
                "strict = true",
                "[model]",
                f'target = "{TARGET}"',
                "",
            ]
        ),
        encoding="utf-8",
    )
    predict_key = new_key(config, "predict", "demo web app")
    score_key = new_key(config, "score", "demo scoring partner")

    port = free_port()
    print(f"== starting the guard on 127.0.0.1:{port} (model verified against its signature)")
    guard = Guard(config, contract, port, work / "server.log")
    try:
        guard.wait_ready()
        predict, score = guard.url + "/v1/predict", guard.url + "/v1/score"
        data = rows()
        shown: list[tuple[str, int, Any]] = []

        for start in range(0, 60, 3):  # 1. legitimate traffic
            status, answer = post(predict, {"rows": data[start : start + 3]}, predict_key)
            assert status == 200, answer
        shown.append(("legitimate: 3 applicants, predict scope (labels only)", status, answer))
        status, answer = post(score, {"rows": data[100:102]}, score_key)
        shown.append(("legitimate: 2 applicants, score scope (rounded scores)", status, answer))

        status, answer = post(predict, {"rows": data[:1]}, None)  # 2. no credential
        shown.append(("no credential", status, answer))

        personal = dict(data[5])  # 3. personal data
        personal["purpose"] = "call me: jane.roe@example.org"
        personal["telephone"] = "card 4111 1111 1111 1111"
        status, answer = post(predict, {"rows": [personal]}, predict_key)
        shown.append(("personal data in the row", status, answer))

        odd = dict(data[6])  # 4. out of contract
        odd["age_in_years"] = 250
        odd["housing"] = "castle"
        status, answer = post(predict, {"rows": [odd]}, predict_key)
        shown.append(("a row outside the contract", status, answer))

        seed = dict(data[7])  # 5. a short extraction attempt: a grid over two features
        grid = [
            {**seed, "credit_amount": amount, "duration_in_month": months}
            for months in (6, 12, 18, 24, 36, 48)
            for amount in range(500, 15_001, 500)
        ]
        batches = range(0, len(grid), 60)
        for number, start in enumerate(batches, 1):
            status, answer = post(score, {"rows": grid[start : start + 60]}, score_key)
            shown.append(
                (f"extraction attempt: grid batch {number} of {len(batches)}", status, answer)
            )

        log = events(audit, signing_key)
        # each answered request has an admission (recorded while the model ran) and its
        # outcome; the outcomes in the order sent: 20 legitimate predict requests, then one
        # per shown item
        requests = [e for e in log if e.get("type") == "request"]
        by_title = {title: requests[19 + i] for i, (title, _, _) in enumerate(shown[1:], 1)}
        by_title[shown[0][0]] = requests[19]
        print("\n== answers, and the decisions recorded in the audit log")
        for title, status, answer in shown:
            show(title, status, answer, by_title.get(title))
        alerts = [e for e in log if e.get("type") == "alert"]
        for alert in alerts:
            print(
                f"\n   monitor alert: {alert['alert']} on key {alert['key_id']}: {alert['message']}"
            )
        if not alerts:
            print("\n   (no monitor alert recorded)")
    finally:
        print("\n== stopping the guard")
        guard.stop()

    print("\n== bastion audit verify (the hash chain and its signed checkpoints)")
    verified = bastion("audit", "verify", str(audit), "--key", str(signing_key), check=False)
    if verified.returncode != 0:
        print("the audit chain did not verify")
        return 1
    print(f"\n== bastion guard report: the period as a bastion report, written to {args.report}")
    bastion(
        "guard",
        "report",
        "--since",
        "all",
        "--audit",
        str(audit),
        "--key",
        str(signing_key),
        "--format",
        "html",
        "--output",
        str(args.report),
        "--no-store",
        "--quiet",
    )
    bastion(
        "guard",
        "report",
        "--since",
        "all",
        "--audit",
        str(audit),
        "--key",
        str(signing_key),
        "--format",
        "text",
        "--no-store",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

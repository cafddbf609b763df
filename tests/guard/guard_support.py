"""Shared by the guard's server tests: real uvicorn servers on 127.0.0.1, the example credit
model (committed with its signature and public key), its data and a contract of it."""

from __future__ import annotations

import contextlib
import csv
import functools
import json
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "credit-scoring"
MODEL = EXAMPLE / "model" / "credit_model.joblib"
PUBLIC_KEY = EXAMPLE / "keys" / "release.pub"
DATA = EXAMPLE / "data" / "german_credit.csv"
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@functools.cache
def credit_rows() -> list[dict[str, Any]]:
    """The credit data's feature rows as a client sends them (numbers as JSON numbers)."""
    with DATA.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    out = []
    for row in rows:
        row = dict(row)
        row.pop(TARGET)
        for column in NUMERIC:
            row[column] = int(row[column])
        out.append(row)
    return out


@functools.cache
def contract_json() -> str:
    """The contract `bastion data profile` writes for the credit data."""
    from bastion.datacheck.contract import profile
    from bastion.datacheck.options import DataOptions
    from bastion.datacheck.read import open_dataset

    return profile(open_dataset(DATA, DataOptions()), DataOptions()).dumps()


def contract() -> Any:
    from bastion.datacheck.contract import parse_contract

    return parse_contract(contract_json())


@functools.cache
def served_model() -> Any:
    from bastion.guard.features import feature_columns
    from bastion.guard.model import load_served_model

    return load_served_model(MODEL, feature_columns(contract(), TARGET), public_keys=[PUBLIC_KEY])


@functools.cache
def training() -> list[dict[str, Any]]:
    from bastion.guard.ood import training_rows

    return training_rows(DATA, contract(), TARGET)


def settings(folder: Path, **tables: dict[str, Any]) -> Any:
    """Guard settings writing their key store and audit log under `folder`."""
    from bastion.guard.settings import GuardSettings

    data: dict[str, Any] = {
        "auth": {"keys_db": str(folder / "keys.sqlite3")},
        "audit": {"path": str(folder / "audit")},
        "model": {"target": TARGET},
    }
    for table, values in tables.items():
        data[table] = {**data.get(table, {}), **values}
    return GuardSettings.model_validate(data)


class Server:
    """A uvicorn server in a thread, on a free loopback port."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = free_port()
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="error", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)


@contextlib.contextmanager
def serving(app: Any) -> Iterator[Server]:
    with Server(app) as server:
        yield server


def predict_scope(body: bytes, key: str) -> dict[str, Any]:
    """The ASGI scope of a POST /v1/predict of `body` from 127.0.0.1 with API key `key`, for
    calling the guard's app in process."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/predict",
        "raw_path": b"/v1/predict",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"authorization", f"Bearer {key}".encode()),
        ],
        "client": ("127.0.0.1", 5555),
        "server": ("127.0.0.1", 8080),
    }


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def timed_predict(url: str, key: str, rows: list[dict[str, Any]]) -> tuple[Any, float]:
    """POST `rows` to `url`/v1/predict with `key`: the answer and the seconds it took."""
    import httpx

    started = time.monotonic()
    answer = httpx.post(url + "/v1/predict", json={"rows": rows}, headers=bearer(key), timeout=10)
    return answer, time.monotonic() - started


class Exchange:
    """What one in-process request got: the messages sent, what the app raised, and (where a
    test times it) when its answer started, in seconds after it was sent."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.raised: BaseException | None = None
        self.answered_after: float | None = None

    @property
    def status(self) -> int | None:
        starts = [m for m in self.messages if m["type"] == "http.response.start"]
        assert len(starts) <= 1
        return int(starts[0]["status"]) if starts else None

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages if m["type"].endswith("body"))

    def document(self) -> Any:
        return json.loads(self.body)


def audit_events(folder: Path) -> list[dict[str, Any]]:
    """The events of the guard's audit log under `folder` (`settings(folder)`), in order."""
    with sqlite3.connect(folder / "audit" / "audit-guard.sqlite3") as conn:
        return [json.loads(row[0]) for row in conn.execute("SELECT event FROM events ORDER BY seq")]


def assert_chain_ok(folder: Path) -> None:
    """The guard's audit chain under `folder` verifies."""
    from bastion.guard.audit_verify import verify_log

    check = verify_log(folder / "audit" / "audit-guard.sqlite3")
    assert check.ok, check.problems

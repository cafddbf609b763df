"""GCRA, budgets and the Redis backend (a real redis-server started on a free loopback port)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from guard_support import free_port

from bastion.guard.limits import LimiterUnavailable, MemoryBackend, RedisBackend, retry_after_header


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_gcra_allows_the_burst_then_exactly_the_rate() -> None:
    clock = Clock()
    backend = MemoryBackend(clock)

    async def go() -> list[bool]:
        out = []
        for _ in range(5):
            out.append((await backend.gcra("k", 2.0, 3)).allowed)
        refused = await backend.gcra("k", 2.0, 3)
        assert 0 < refused.retry_after <= 0.5 + 1e-9
        clock.now += 0.5  # one emission interval: one more request
        out.append((await backend.gcra("k", 2.0, 3)).allowed)
        out.append((await backend.gcra("k", 2.0, 3)).allowed)
        clock.now += 10  # idle: the full burst again, not more
        out += [(await backend.gcra("k", 2.0, 3)).allowed for _ in range(4)]
        out.append((await backend.gcra("other", 2.0, 3)).allowed)
        return out

    assert run(go()) == [True, True, True, False, False, True, False, True, True, True, False, True]
    assert retry_after_header(0.01) == "1" and retry_after_header(2.2) == "3"


def test_budget_refuses_without_charging_and_resets_at_midnight() -> None:
    clock = Clock()
    backend = MemoryBackend(clock)

    async def go() -> None:
        assert (await backend.spend("k", 8, 10)).allowed
        refused = await backend.spend("k", 3, 10)
        assert not refused.allowed and 1 <= refused.retry_after <= 86400
        assert (await backend.spend("k", 2, 10)).allowed
        assert not (await backend.spend("k", 1, 10)).allowed
        clock.now += refused.retry_after + 1
        assert (await backend.spend("k", 10, 10)).allowed

    run(go())


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (make test installs it with apt-get)")
    pytest.importorskip("redis")
    port = free_port()
    folder: Path = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(folder),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        import redis

        client = redis.Redis(host="127.0.0.1", port=port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_two_workers_share_limits_and_budgets_through_redis(redis_url: str) -> None:
    async def go() -> None:
        one = RedisBackend(redis_url, "test:", 1.0)
        two = RedisBackend(redis_url, "test:", 1.0)
        try:
            results = []
            for i in range(6):  # alternate workers: one shared bucket of burst 4
                backend = one if i % 2 else two
                results.append((await backend.gcra("key:a", 0.5, 4)).allowed)
            assert results == [True, True, True, True, False, False]
            refused = await one.gcra("key:a", 0.5, 4)
            assert 0 < refused.retry_after <= 2.0
            assert (await one.spend("key:a", 7, 10)).allowed
            over = await two.spend("key:a", 4, 10)
            assert not over.allowed and over.retry_after >= 1
            assert (await two.spend("key:a", 3, 10)).allowed
        finally:
            await one.close()
            await two.close()

    run(go())


def test_an_unreachable_redis_refuses_never_allows() -> None:
    pytest.importorskip("redis")

    async def go() -> None:
        backend = RedisBackend(f"redis://127.0.0.1:{free_port()}/0", "x:", 0.2)
        try:
            with pytest.raises(LimiterUnavailable):
                await backend.gcra("k", 1.0, 1)
            with pytest.raises(LimiterUnavailable):
                await backend.spend("k", 1, 1)
        finally:
            await backend.close()

    run(go())


def test_the_guard_answers_503_when_its_shared_limiter_is_down(tmp_path: Path) -> None:
    pytest.importorskip("redis")
    import httpx
    from guard_support import contract, credit_rows, served_model, serving, settings

    from bastion.guard.app import create_app
    from bastion.guard.auth import KeyStore

    app = create_app(
        settings(
            tmp_path,
            limits={
                "backend": "redis",
                "redis_url": f"redis://127.0.0.1:{free_port()}/0",
                "redis_timeout_s": 0.2,
            },
        ),
        model=served_model(),
        contract=contract(),
    )
    store = KeyStore(tmp_path / "keys.sqlite3")
    key = store.create(["predict"])[0]
    store.close()
    with serving(app) as server:
        response = httpx.post(
            server.url + "/v1/predict",
            json={"rows": credit_rows()[:1]},
            headers={"Authorization": f"Bearer {key}"},
        )
    assert response.status_code == 503 and response.headers["retry-after"] == "1"

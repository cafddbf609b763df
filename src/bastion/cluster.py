"""The cluster backend of isolation: the same work, bounds and outcomes as `parallel`, spread over
a Ray cluster (`bastion scan --executor ray [--address ADDR]`, extra `bastion-mlsec[ray]`).

Ray only schedules: each Ray task takes a chunk of items and runs them through
`parallel.run_isolated` on its node — a spawned worker with the same wall-time and address-space
bounds as a local run (a Ray worker has threads, so it never forks) — and returns the outcomes as
plain tuples of JSON text. So a file scanned on the cluster gets exactly the treatment it gets on a
laptop, and a node that dies or a task that hangs past every bound is reported as a failure of
its items, never as clean. The files must be readable at the same paths on every node (a shared
filesystem or a registry mount): bastion sends paths, not bytes."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from bastion.errors import BastionError, MissingExtra
from bastion.parallel import Failure, Outcome, run_isolated

T = TypeVar("T")
CHUNK = 16  # items per Ray task: amortises a spawned worker's start-up over several files
GRACE_S = 30.0  # beyond every item's own bound, before a whole task is given up as lost

_Row = tuple[int, str | None, str | None, str | None]  # index, result, failure, kind


def _run_chunk(
    indexed: Sequence[tuple[int, Any]], fn: Callable[[Any], str], timeout_s: float, memory_mb: int
) -> list[_Row]:
    """Runs inside a Ray worker: the items through the local isolation, one spawned worker."""
    rows: list[_Row] = []

    def keep(outcome: Outcome) -> None:
        index = indexed[outcome.index][0]
        kind = outcome.kind.value if outcome.kind else None
        rows.append((index, outcome.result, outcome.failure, kind))

    run_isolated(
        [item for _, item in indexed],
        fn,
        workers=1,
        timeout_s=timeout_s,
        memory_mb=memory_mb,
        on_outcome=keep,
        method="spawn",
    )
    return rows


def _connect(address: str | None) -> Any:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no telemetry leaves the machine
    try:
        import ray
    except ImportError as exc:
        raise MissingExtra("ray", "ray") from exc
    if not ray.is_initialized():
        try:
            if address is None:  # a local Ray instance on this machine, on loopback
                ray.init(include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
            else:
                ray.init(address=address, log_to_driver=False)
        except Exception as exc:  # Ray raises many types for an unreachable cluster
            where = address or "a local Ray instance"
            raise BastionError(
                f"cannot connect to {where}: {exc}",
                hint="check --address (ray://HOST:10001 or HOST:6379) and that "
                "the cluster runs the same Ray and Python versions",
            ) from exc
    return ray


def run_on_ray(
    items: Sequence[T],
    fn: Callable[[T], str],
    *,
    timeout_s: float,
    memory_mb: int,
    on_outcome: Callable[[Outcome], None],
    address: str | None = None,
    chunk: int = CHUNK,
) -> None:
    """Like parallel.run_isolated, on a Ray cluster: every item's Outcome reaches on_outcome."""
    if not items:
        return
    ray = _connect(address)
    remote = ray.remote(num_cpus=1, max_retries=0)(_run_chunk)
    pending: dict[Any, list[int]] = {}
    for start in range(0, len(items), chunk):
        indexes = list(range(start, min(start + chunk, len(items))))
        ref = remote.remote([(i, items[i]) for i in indexes], fn, timeout_s, memory_mb)
        pending[ref] = indexes
    budget = chunk * (timeout_s + 5.0) + GRACE_S  # per task, once it is running or queued
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1, timeout=budget)
        if not done:  # nothing finished within a whole task's bound: give the rest up
            for ref, indexes in pending.items():
                ray.cancel(ref, force=True)
                for index in indexes:
                    on_outcome(
                        Outcome(
                            index=index,
                            result=None,
                            failure="cluster task did not finish in time",
                            kind=Failure.TIMEOUT,
                        )
                    )
            return
        ref = done[0]
        indexes = pending.pop(ref)
        try:
            rows: list[_Row] = ray.get(ref)
        except Exception as exc:  # a node or worker died, the task was cancelled
            for index in indexes:
                on_outcome(
                    Outcome(
                        index=index,
                        result=None,
                        failure=f"cluster task failed: {type(exc).__name__}",
                        kind=Failure.CRASH,
                    )
                )
            continue
        seen = set()
        for index, result, failure, kind in rows:
            seen.add(index)
            on_outcome(
                Outcome(
                    index=index,
                    result=result,
                    failure=failure,
                    kind=Failure(kind) if kind else None,
                )
            )
        for index in indexes:
            if index not in seen:  # fail closed on a short answer
                on_outcome(
                    Outcome(
                        index=index,
                        result=None,
                        failure="cluster task returned no result",
                        kind=Failure.CRASH,
                    )
                )

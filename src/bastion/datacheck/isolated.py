"""The data checks in an isolated worker, as the artifact scanners run: the readers and the
libraries under them (pyarrow, pandas, scikit-learn, cleanlab) parse hostile files in native
code, where a crash or a runaway allocation would otherwise take the whole run — or the server
embedding bastion — down with it. The worker gets the [data] table's time and memory bounds;
when it overruns or dies, every dataset it was given is incomplete (fails closed), never
clean."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from bastion.config import Settings
from bastion.datacheck.options import DataOptions
from bastion.findings import TargetResult
from bastion.runs import error_result, incomplete_result

# one job: (paths, candidates as (path, display, split), splits, baseline, settings, options,
# show progress)
Job = tuple[
    tuple[str, ...],
    tuple[tuple[str, str, str | None], ...],
    dict[str, tuple[str, ...]],
    Any,
    Settings,
    DataOptions,
    bool,
]


def run_in_worker(
    settings: Settings,
    options: DataOptions,
    *,
    paths: Sequence[Path] = (),
    candidates: Sequence[tuple[Path, str, str | None]] = (),
    splits: Mapping[str, Sequence[Path]] | None = None,
    baseline: Any = None,
    progress: bool = False,
) -> list[TargetResult]:
    """run_data_checks on `paths` (walked) and `candidates` (already found files) in one
    isolated worker with options.worker_timeout_s and options.worker_memory_mb."""
    from bastion.parallel import Outcome, run_isolated

    job: Job = (
        tuple(str(p) for p in paths),
        tuple((str(p), display, split) for p, display, split in candidates),
        {k: tuple(str(p) for p in v) for k, v in (splits or {}).items()},
        baseline,
        settings,
        options,
        progress,
    )
    outcomes: list[Outcome] = []
    run_isolated(
        [job],
        _work,
        workers=1,
        timeout_s=options.worker_timeout_s,
        memory_mb=options.worker_memory_mb,
        on_outcome=outcomes.append,
        method=worker_method(),
    )
    (outcome,) = outcomes
    if outcome.result is not None:
        return [TargetResult.model_validate(item) for item in json.loads(outcome.result)]
    names = [display for _path, display, _split in job[1]] + list(job[0])
    names += [p for files in job[2].values() for p in files]
    failure = outcome.failure or "worker failure"
    if outcome.kind is not None and outcome.kind.bounded:
        return [incomplete_result(name, None, f"data checks stopped: {failure}") for name in names]
    return [error_result(name, f"data checks failed: {failure}", "data") for name in names]


def worker_method() -> Literal["fork", "spawn"]:
    """fork only when the process has no other thread at all. pyarrow, BLAS and OpenMP start
    native thread pools that Python's `threading` does not see; a fork taken while one of them
    holds a lock leaves the child waiting on it forever (seen: a data worker forked from a
    process that had already read data stuck in a futex). Linux lists every thread in
    /proc/self/task; elsewhere the isolation layer's own choice applies."""
    from bastion.parallel import choose_method

    try:
        threads = len(os.listdir("/proc/self/task"))
    except OSError:
        return choose_method()
    return "fork" if threads == 1 and choose_method() == "fork" else "spawn"


def _work(job: Job) -> str:
    from bastion.datacheck.engine import Candidate, open_candidates, run_data_checks

    paths, found, splits, baseline, settings, options, progress = job
    results: list[TargetResult] = []
    datasets: list[Any] = []
    if found:
        opened, failed = open_candidates(
            [Candidate(Path(p), display, split) for p, display, split in found], options
        )
        results += failed
        datasets += opened
    if paths or splits or datasets:
        results += run_data_checks(
            [*datasets, *(Path(p) for p in paths)],
            settings,
            options,
            splits={k: [Path(p) for p in v] for k, v in splits.items()} or None,
            baseline=baseline,
            progress=_print_progress if progress else None,
        )
    return "[" + ",".join(r.model_dump_json() for r in results) + "]"


def _print_progress(message: str) -> None:
    import sys

    from bastion.report.printable import terminal_safe

    print(f"bastion: {terminal_safe(message)}", file=sys.stderr, flush=True)

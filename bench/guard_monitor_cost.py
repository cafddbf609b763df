"""In-process cost of the guard's query monitor: `QueryMonitor.observe` per one-row request.

    flock /tmp/bastion-timing.lock nice -n -5 .venv/bin/python bench/guard_monitor_cost.py \
        [--calls 20000] [--warmup 20000] [--json OUT] [--reference OLD_MONITOR.py]

The German Credit setup of bench/guard_detection.py (a logistic regression on 70% of the data,
the monitor's profile fitted on the same rows). Each request is one row as the guard passes it:
a (1, 20) float64 matrix of the model's features and the (1, 2) class scores. Each call is
timed on its own (perf_counter_ns) after a warm-up that gives every key a long history (its
PRADA groups and distance window full), and the figure is the median (p90 beside it):

- `one-key`: one key sending benign, data-like traffic (rows drawn with replacement from all
  1,000 rows of the data);
- `20-keys`: the same traffic from 20 keys in turn (each key's state is cold in the caches);
- `attacker`: one key sending the data-like extraction attack of bastion.probe.extraction
  (pool rows recombined) — it raises alerts, as it should.

With `--reference FILE` (e.g. `git show REV:src/bastion/guard/monitor.py > old.py`) the same
requests also go through that version of the monitor, untimed, and every alert (kind, key,
score, threshold, query count, message) must be the same: a check that an optimisation did not
change what the monitor detects."""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from guard_detection import Setup, load  # noqa: E402


def requests(
    setup: Setup, kind: str, n: int, keys: int, rng: np.random.Generator
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    from bastion.probe import extraction

    if kind == "attack":
        rows = extraction.data_like_rows(setup.pool[setup.features], n, rng)
    else:
        rows = setup.frame.iloc[rng.integers(0, len(setup.frame), n)]
    x = np.ascontiguousarray(setup.encode(rows), dtype=np.float64)
    p = setup.score(rows)
    s = np.stack([1 - p, p], axis=1)
    return [(f"key{i % keys}", x[i : i + 1].copy(), s[i : i + 1].copy()) for i in range(n)]


def measure(
    monitor: Any,
    stream: list[tuple[str, np.ndarray, np.ndarray]],
    warmup: int,
    reference: Any | None,
) -> dict[str, Any]:
    timer = time.perf_counter_ns
    observe = monitor.observe
    times = []
    alerts: list[Any] = []
    for n, (key, x, s) in enumerate(stream):
        started = timer()
        found = observe(key, x, s)
        elapsed = timer() - started
        if n >= warmup:
            times.append(elapsed)
        alerts += found
        if reference is not None:
            expected = reference.observe(key, x, s)
            if [a.model_dump() for a in found] != [a.model_dump() for a in expected]:
                sys.exit(f"request {n} of {key}: {found} != reference {expected}")
    times.sort()
    return {
        "calls": len(times),
        "median_us": statistics.median(times) / 1000,
        "p90_us": times[int(len(times) * 0.9)] / 1000,
        "mean_us": statistics.fmean(times) / 1000,
        "alerts": len(alerts),
        "kinds": sorted({a.kind for a in alerts}),
    }


def load_reference(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location("reference_monitor", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its records' annotations are resolved through it
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20000, help="timed calls per scenario")
    parser.add_argument("--warmup", type=int, default=20000, help="untimed calls before")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--reference", type=Path, help="an earlier monitor.py to compare with")
    args = parser.parse_args()

    from bastion.guard.monitor import QueryMonitor

    setup = Setup(load(), args.seed)
    old = load_reference(args.reference) if args.reference else None
    total = args.warmup + args.calls
    scenarios = {
        "one-key": ("benign", 1),
        "20-keys": ("benign", 20),
        "attacker": ("attack", 1),
    }
    results: dict[str, Any] = {}
    for name, (kind, keys) in scenarios.items():
        stream = requests(setup, kind, total, keys, np.random.default_rng(args.seed))
        monitor = QueryMonitor(setup.profile)
        reference = None
        if old is not None:
            profile = old.TrainingProfile.model_validate(setup.profile.model_dump())
            reference = old.QueryMonitor(profile)
        results[name] = measure(monitor, stream, args.warmup, reference)
        r = results[name]
        print(
            f"{name:9} median {r['median_us']:6.1f} us  p90 {r['p90_us']:6.1f} us  "
            f"mean {r['mean_us']:6.1f} us per observe ({r['calls']} calls after {args.warmup}; "
            f"{r['alerts']} alerts {r['kinds']})"
            + ("; alerts identical to the reference" if old is not None else ""),
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

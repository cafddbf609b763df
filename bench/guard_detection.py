"""Extraction and probing detection of the guard's QueryMonitor on German Credit.

    .venv/bin/python bench/guard_detection.py [--seeds 5] [--benign 10000] [--json OUT]

A logistic-regression pipeline (as in examples/credit-scoring/train.py) is trained on 70% of
German Credit; the monitor's profile is fitted on the same rows and the model's scores on them.
The monitor sees each query as the model's 20 features (numbers as they are, categories as
their code).

- Benign traffic: `--benign` queries replayed from the data (rows drawn with replacement from
  all 1,000), spread over 20 API keys, interleaved. Every alert is a false alert.
- Sorted benign traffic: a batch-scoring client sending its rows sorted by one column, one
  key, a fresh monitor each: all 1,000 rows sorted by each of the 20 features, ascending and
  descending (40,000 queries), and `--benign` rows drawn with replacement sorted by three
  features picked at random. Every alert is a false alert.
- Attacks, one key each, up to 2,000 queries, from the probe capability's query strategies
  (bastion.probe.extraction): `random` (uniform within the data's bounds and categories),
  `data-like` (an attacker pool of 250 real rows recombined: a third of each row's features
  from another row), and scripted ones: `boundary` (binary search along the segment between
  two pool rows of different classes, 8 steps each: the line-search attacks of Tramèr et al.
  2016), `sweep` (one feature of a pool row swept over its range, the others fixed),
  `jbda` (PRADA's Jacobian-based augmentation: seed rows stepped along the sign of the model's
  gradient, lambda 0.1 of each feature's spread), and `random-sorted` / `data-like-sorted`
  (the same queries sent sorted by a numeric feature, so that the monitor's allowance for
  ordered batches is tried as an evasion). The figure is the number of queries until the first
  alert of any kind (median over seeds), and which kind fired first.

The data file is examples/credit-scoring/data/german_credit.csv (or /work/shared/data)."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA_CANDIDATES = (
    ROOT / "examples" / "credit-scoring" / "data" / "german_credit.csv",
    Path("/work/shared/data/german_credit.csv"),
)
TARGET = "creditability"
BUDGET = 2000
BATCH = 1  # rows per request: the monitor sees one query at a time, as in an API


def load() -> pd.DataFrame:
    for path in DATA_CANDIDATES:
        if path.exists():
            return pd.read_csv(path)
    sys.exit("german_credit.csv not found: see the module docstring")


class Setup:
    def __init__(self, frame: pd.DataFrame, seed: int) -> None:
        from sklearn.compose import ColumnTransformer
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import train_test_split
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import OneHotEncoder, StandardScaler

        from bastion.guard.monitor import TrainingProfile

        self.frame = frame
        self.features = [c for c in frame.columns if c != TARGET]
        self.numeric = [c for c in self.features if pd.api.types.is_numeric_dtype(frame[c])]
        self.categorical = [c for c in self.features if c not in self.numeric]
        self.categories = {c: sorted(frame[c].astype(str).unique()) for c in self.categorical}
        y = (frame[TARGET] == "good").astype(int).to_numpy()
        train, rest = train_test_split(frame, test_size=0.3, random_state=seed, stratify=y)
        self.train = train.reset_index(drop=True)
        self.pool = rest.reset_index(drop=True).iloc[:250]  # what an attacker holds
        prepare = ColumnTransformer(
            [
                ("n", StandardScaler(), self.numeric),
                ("c", OneHotEncoder(handle_unknown="ignore"), self.categorical),
            ]
        )
        self.model = Pipeline([("p", prepare), ("m", LogisticRegression(max_iter=1000))])
        self.model.fit(self.train[self.features], (self.train[TARGET] == "good").astype(int))
        self.profile = TrainingProfile.fit(
            self.encode(self.train), self.score(self.train), features=self.features
        )

    def encode(self, rows: pd.DataFrame) -> np.ndarray:
        columns = []
        for c in self.features:
            if c in self.categorical:
                lookup = {v: i for i, v in enumerate(self.categories[c])}
                columns.append(rows[c].astype(str).map(lookup).fillna(-1).to_numpy(float))
            else:
                columns.append(rows[c].to_numpy(float))
        return np.stack(columns, axis=1)

    def score(self, rows: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.model.predict_proba(rows[self.features])[:, 1])


def attack_rows(setup: Setup, kind: str, n: int, rng: np.random.Generator) -> pd.DataFrame:
    from bastion.probe import extraction
    from bastion.probe.spec import infer

    pool = setup.pool[setup.features]
    if kind == "random":
        spec = infer(setup.pool, target=TARGET)
        return extraction.random_rows(spec, pool, n, rng)
    if kind == "data-like":
        return extraction.data_like_rows(pool, n, rng)
    if kind == "boundary":
        return _line_search(setup, pool, n, rng)
    if kind == "sweep":
        return _sweep(setup, pool, n, rng)
    if kind == "jbda":
        return _jbda(setup, pool, n, rng)
    if kind.endswith("-sorted"):
        rows = attack_rows(setup, kind.removesuffix("-sorted"), n, rng)
        column = setup.numeric[int(rng.integers(len(setup.numeric)))]
        return rows.sort_values(column, kind="stable").reset_index(drop=True)
    raise ValueError(kind)


def _line_search(setup: Setup, pool: pd.DataFrame, n: int, rng: np.random.Generator) -> Any:
    """Binary search for the decision boundary on segments between rows of the two classes:
    numbers interpolated, categories taken from whichever end is nearer."""
    labels = setup.score(pool) >= 0.5
    good, bad = np.flatnonzero(labels), np.flatnonzero(~labels)
    rows = []
    while len(rows) < n:
        a = pool.iloc[int(rng.choice(good))]
        b = pool.iloc[int(rng.choice(bad))]
        low, high = 0.0, 1.0
        for _ in range(8):
            t = (low + high) / 2
            row = a.copy()
            for c in setup.numeric:
                row[c] = a[c] + t * (b[c] - a[c])
            for c in setup.categorical:
                row[c] = a[c] if t < 0.5 else b[c]
            rows.append(row)
            frame = pd.DataFrame([row])
            if (setup.score(frame)[0] >= 0.5) == labels[pool.index.get_loc(a.name)]:
                low = t
            else:
                high = t
    return pd.DataFrame(rows[:n]).reset_index(drop=True)


def _sweep(setup: Setup, pool: pd.DataFrame, n: int, rng: np.random.Generator) -> Any:
    rows = []
    while len(rows) < n:
        base = pool.iloc[int(rng.integers(len(pool)))]
        column = setup.numeric[int(rng.integers(len(setup.numeric)))]
        low, high = setup.frame[column].min(), setup.frame[column].max()
        for value in np.linspace(low, high, 20):
            row = base.copy()
            row[column] = value
            rows.append(row)
    return pd.DataFrame(rows[:n]).reset_index(drop=True)


def _jbda(setup: Setup, pool: pd.DataFrame, n: int, rng: np.random.Generator) -> Any:
    """Papernot-style augmentation on the numeric features: each round, every row of the
    current set gets a copy stepped by lambda x spread along the sign of the score's finite-
    difference gradient (categories kept)."""
    spread = setup.frame[setup.numeric].std().to_numpy()
    current = pool.iloc[rng.choice(len(pool), 10, replace=False)].reset_index(drop=True)
    rows = [current]
    total = len(current)
    while total < n:
        base = setup.score(current)
        grads = []
        for j, c in enumerate(setup.numeric):
            moved = current.copy()
            moved[c] = moved[c] + spread[j] * 0.01
            grads.append(setup.score(moved) - base)
        step = np.sign(np.stack(grads, axis=1)) * spread * 0.1
        augmented = current.copy()
        augmented[setup.numeric] = current[setup.numeric].to_numpy(float) + step
        rows.append(augmented)
        total += len(augmented)
        current = pd.concat([current, augmented], ignore_index=True)
    return pd.concat(rows, ignore_index=True).iloc[:n].reset_index(drop=True)


def run_attack(setup: Setup, kind: str, seed: int) -> dict[str, Any]:
    from bastion.guard.monitor import QueryMonitor

    rng = np.random.default_rng(seed)
    monitor = QueryMonitor(setup.profile)
    rows = attack_rows(setup, kind, BUDGET, rng)
    x, s = setup.encode(rows), setup.score(rows)
    for i in range(0, len(x), BATCH):
        alerts = monitor.observe("attacker", x[i : i + BATCH], s[i : i + BATCH])
        if alerts:
            return {"queries": i + BATCH, "kinds": sorted({a.kind for a in alerts})}
    return {"queries": None, "kinds": []}


def run_benign(setup: Setup, total: int, seed: int, keys: int = 20) -> dict[str, Any]:
    from bastion.guard.monitor import QueryMonitor

    rng = np.random.default_rng(seed)
    monitor = QueryMonitor(setup.profile)
    rows = setup.frame.iloc[rng.integers(0, len(setup.frame), total)]
    x, s = setup.encode(rows), setup.score(rows)
    owners = rng.integers(0, keys, total)
    alerts: list[Any] = []
    started = time.perf_counter()
    for i in range(total):
        alerts += monitor.observe(f"key{owners[i]}", x[i : i + 1], s[i : i + 1])
    elapsed = time.perf_counter() - started
    return {
        "queries": total,
        "false_alerts": len(alerts),
        "kinds": sorted({a.kind for a in alerts}),
        "us_per_query": elapsed / total * 1e6,
    }


def run_sorted(setup: Setup, total: int, seed: int) -> dict[str, Any]:
    """A batch client per ordering, each on a fresh monitor (so that drift, which is global,
    sees that client alone)."""
    from bastion.guard.monitor import QueryMonitor

    rng = np.random.default_rng(seed)
    batches = [
        (column, ascending, setup.frame) for column in setup.features for ascending in (True, False)
    ]
    drawn = setup.frame.iloc[rng.integers(0, len(setup.frame), total)]
    for j in rng.choice(len(setup.features), 3, replace=False):
        batches.append((setup.features[int(j)], True, drawn))
    queries = 0
    found: list[dict[str, Any]] = []
    for column, ascending, frame in batches:
        rows = frame.sort_values(column, kind="stable", ascending=ascending)
        x, s = setup.encode(rows), setup.score(rows)
        monitor = QueryMonitor(setup.profile)
        for i in range(len(x)):
            for alert in monitor.observe("batch", x[i : i + 1], s[i : i + 1]):
                found.append({"by": column, "rows": len(x), "query": i + 1, "kind": alert.kind})
        queries += len(x)
    return {"queries": queries, "false_alerts": len(found), "alerts": found}


ATTACKS = (
    "random",
    "data-like",
    "boundary",
    "sweep",
    "jbda",
    "random-sorted",
    "data-like-sorted",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--benign", type=int, default=10000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    frame = load()
    results: dict[str, Any] = {"attacks": {}, "benign": [], "sorted": []}
    for seed in range(args.seeds):
        setup = Setup(frame, seed)
        benign = run_benign(setup, args.benign, seed)
        results["benign"].append(benign)
        print(f"seed {seed} benign: {benign}", flush=True)
        ordered = run_sorted(setup, args.benign, seed)
        results["sorted"].append(ordered)
        print(f"seed {seed} sorted benign: {ordered}", flush=True)
        for kind in ATTACKS:
            outcome = run_attack(setup, kind, seed)
            results["attacks"].setdefault(kind, []).append(outcome)
            print(f"seed {seed} {kind}: {outcome}", flush=True)
    print("\nsummary (median over seeds)")
    false = [b["false_alerts"] for b in results["benign"]]
    print(
        f"  benign: {statistics.median(false)} false alerts per {args.benign} queries "
        f"(max {max(false)}); {statistics.median(b['us_per_query'] for b in results['benign']):.0f}"
        " us per query"
    )
    ordered = results["sorted"]
    print(
        f"  sorted benign: {sum(o['false_alerts'] for o in ordered)} false alerts in "
        f"{sum(o['queries'] for o in ordered)} queries "
        f"({sorted({a['kind'] for o in ordered for a in o['alerts']})})"
    )
    for kind, outcomes in results["attacks"].items():
        hits = [o["queries"] for o in outcomes if o["queries"] is not None]
        first = sorted({k for o in outcomes for k in o["kinds"]})
        median = statistics.median(hits) if len(hits) == len(outcomes) else "missed"
        print(f"  {kind}: alert after {median} queries ({len(hits)}/{len(outcomes)}; {first})")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

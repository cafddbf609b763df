"""Evasion quality (issue #10): bastion's constraint-aware search against ART's black-box attacks
(HopSkipJump, Boundary; also projected onto the constraints afterwards), ART's gradient attack
where it applies (PGD, L1, masked to the mutable features, on the logistic regression of the
numeric datasets) and DiCE's counterfactuals, on the same declined rows of the same models.

Datasets: German Credit (the example project's data and its shipped probe spec), and two
tables bundled with scikit-learn given a credit-like decision framing in a probe spec:
breast_cancer (favourable: benign; the ten "mean" measurements may only fall, the rest are
immutable) and diabetes (raw values; favourable: progression below the median, as an insurer's
decision; age and sex immutable, BMI, blood pressure and the serum values may only fall).
Models: logistic regression, gradient boosting (HistGradientBoosting), a small MLP, each a
scikit-learn pipeline over the raw features (scaling; one-hot for categories).

For every tool and row: whether the tool claims a flip, whether its example is a change a person
could make (bastion.probe.spec.validate_change: immutable features kept, directions, integers,
categories, bounds), its cost under the spec, and the model queries it used. A tool's "success
within budget" counts only valid flips costing at most the budget.

    .venv/bin/python bench/probe_evasion.py [--rows 25] [--budget 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("TQDM_DISABLE", "1")  # DiCE's progress bars
sys.path.insert(0, str(ROOT / "src"))

from bastion.probe.inputs import dtypes_of  # noqa: E402
from bastion.probe.model import EstimatorModel  # noqa: E402
from bastion.probe.search import Searcher, Space  # noqa: E402
from bastion.probe.spec import (  # noqa: E402
    ProbeSpec,
    change_cost,
    infer,
    load_spec,
    validate_change,
)

EXAMPLE = ROOT / "examples" / "credit-scoring"
FAV = "1"
Rows = list[list[Any]]
Dtypes = dict[str, Any]


# --- datasets --------------------------------------------------------------------------------


def german() -> tuple[pd.DataFrame, np.ndarray, ProbeSpec]:
    frame = pd.read_csv(EXAMPLE / "data" / "german_credit.csv")
    y = (frame.pop("creditability") == "good").astype(int).to_numpy()
    spec = load_spec(EXAMPLE / "probe-spec.json")
    return frame[spec.names], y, spec


def breast_cancer() -> tuple[pd.DataFrame, np.ndarray, ProbeSpec]:
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer(as_frame=True)
    frame = bunch.data
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    y = bunch.target.to_numpy()  # 1 = benign: the favourable outcome
    mean = [c for c in frame.columns if c.startswith("mean_")]
    spec = infer(frame, favourable=FAV, name="breast_cancer").with_overrides(
        immutable=[c for c in frame.columns if c not in mean], monotone={c: -1 for c in mean}
    )
    return frame, y, spec


def diabetes() -> tuple[pd.DataFrame, np.ndarray, ProbeSpec]:
    from sklearn.datasets import load_diabetes

    bunch = load_diabetes(as_frame=True, scaled=False)
    frame = bunch.data.copy()
    frame["age"] = frame["age"].astype(int)
    frame["sex"] = frame["sex"].astype(int)  # a binary feature, immutable
    y = (bunch.target.to_numpy() < np.median(bunch.target)).astype(int)
    spec = infer(frame, favourable=FAV, name="diabetes").with_overrides(
        immutable=["age", "sex"],
        monotone={c: -1 for c in ("bmi", "bp", "s1", "s2", "s4", "s5", "s6")},
    )
    return frame, y, spec


DATASETS = {"german_credit": german, "breast_cancer": breast_cancer, "diabetes": diabetes}


# --- models ----------------------------------------------------------------------------------


def pipeline(kind: str, spec: ProbeSpec) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = [f.name for f in spec.features if f.kind != "categorical"]
    categorical = [f.name for f in spec.features if f.kind == "categorical"]
    parts: list[Any] = [("numeric", StandardScaler(), numeric)]
    if categorical:
        parts.append(("categorical", OneHotEncoder(handle_unknown="ignore"), categorical))
    estimator: Any = {
        "logistic_regression": LogisticRegression(max_iter=2000),
        "gradient_boosting": HistGradientBoostingClassifier(max_iter=100, random_state=0),
        "mlp": MLPClassifier(hidden_layer_sizes=(32,), max_iter=1500, random_state=0),
    }[kind]
    return Pipeline([("prepare", ColumnTransformer(parts)), ("model", estimator)])


MODELS = ("logistic_regression", "gradient_boosting", "mlp")


class Counting:
    """The pipeline behind a query counter (every row sent counts once)."""

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator
        self.classes_ = estimator.classes_
        self.feature_names_in_ = estimator.feature_names_in_
        self.n = 0

    def predict_proba(self, x: Any) -> np.ndarray:
        self.n += len(x)
        return np.asarray(self.estimator.predict_proba(x))

    def predict(self, x: Any) -> np.ndarray:
        self.n += len(x)
        return np.asarray(self.estimator.predict(x))


# --- the peers' results, cached per (dataset, model, row, tool) --------------------------------


class PeerCache:
    """The peers' (ART's, DiCE's) outcome on one row, stored under a key made of everything it
    depends on: the tool, the row's values, the probe spec, the fitted model (its parameters, the
    training data and its scores on the whole table), the source of the code that runs and judges
    the tool, and the versions of the libraries and Python. Anything changed is a new key, so a
    cached entry is only reused for the same inputs and the same code. ART's attacks draw from
    numpy's global generator, so an entry is one draw, as a fresh run's would be."""

    def __init__(self, folder: Path | None, context: dict[str, Any]) -> None:
        self.folder = folder
        self.context = context
        self.hits = 0
        self.misses = 0

    def key(self, tool: str, row: list[Any]) -> str:
        import hashlib

        document = {"tool": tool, "row": [repr(v) for v in row], **self.context}
        text = json.dumps(document, sort_keys=True, default=repr)
        return hashlib.sha256(text.encode()).hexdigest()

    def get(self, tool: str, row: list[Any]) -> Any:
        if self.folder is None:
            return None
        path = self.folder / f"{self.key(tool, row)}.json"
        try:
            value = json.loads(path.read_text())
        except (OSError, ValueError):
            self.misses += 1
            return None
        self.hits += 1
        return value

    def put(self, tool: str, row: list[Any], value: Any) -> None:
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{self.key(tool, row)}.json"
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(value, default=float))
        temporary.replace(path)


def fingerprint(
    dname: str,
    mname: str,
    spec: ProbeSpec,
    model: Any,
    frame: pd.DataFrame,
    x_train: pd.DataFrame,
    y_train: np.ndarray,
) -> dict[str, Any]:
    """Everything a peer's outcome depends on besides the tool and the row."""
    import hashlib
    import inspect
    import platform
    from importlib.metadata import version

    import bastion.probe.spec as spec_module

    def digest(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()

    code = [
        inspect.getsource(item)
        for item in (
            run_art_black_box,
            run_dice,
            Codec,
            Counting,
            judge,
            typed,
            spec_module.validate_change,
            spec_module.change_cost,
            spec_module._same,
            spec_module._number,
        )
    ]
    scores = np.ascontiguousarray(model.predict_proba(frame), dtype=np.float64)
    versions = {
        name: version(name)
        for name in ("adversarial-robustness-toolbox", "dice-ml", "scikit-learn", "numpy", "pandas")
    }
    return {
        "dataset": dname,
        "model": mname,
        "spec": spec.dumps(),
        "params": repr(sorted(model.get_params(deep=True).items(), key=lambda kv: kv[0])),
        "train": digest(pd.util.hash_pandas_object(x_train, index=True).to_numpy().tobytes())
        + digest(np.ascontiguousarray(y_train).tobytes()),
        "scores": digest(scores.tobytes()),
        "code": digest("\n".join(code).encode()),
        "versions": versions,
        "python": platform.python_version(),
    }


# --- the numeric view ART needs ----------------------------------------------------------------


class Codec:
    """Raw rows <-> numeric vectors: categories as their index in the spec's category list."""

    def __init__(self, spec: ProbeSpec, dtypes: dict[str, Any]) -> None:
        self.spec = spec
        self.dtypes = dtypes

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        columns = []
        for f in self.spec.features:
            if f.kind == "categorical":
                columns.append(frame[f.name].map({c: i for i, c in enumerate(f.categories)}))
            else:
                columns.append(frame[f.name])
        return np.column_stack(columns).astype(np.float32)

    def bounds(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        low, high = [], []
        for f in self.spec.features:
            if f.kind == "categorical":
                low.append(0.0)
                high.append(len(f.categories) - 1.0)
            else:
                low.append(f.lower if f.lower is not None else float(frame[f.name].min()))
                high.append(f.upper if f.upper is not None else float(frame[f.name].max()))
        return np.array(low, dtype=np.float32), np.array(high, dtype=np.float32)

    def raw(self, vector: np.ndarray) -> list[Any]:
        """ART's vector as raw values, exactly: a category code that is not an integer stays a
        number (validate_change calls it 'not one of its categories')."""
        out: list[Any] = []
        for f, v in zip(self.spec.features, vector, strict=True):
            value = float(v)
            if f.kind == "categorical":
                index = round(value)
                exact = abs(value - index) < 1e-6 and 0 <= index < len(f.categories)
                out.append(f.categories[index] if exact else f"{value:.4f}")
            else:
                out.append(value)
        return out

    def decode(self, vectors: np.ndarray) -> pd.DataFrame:
        """What the model is sent for ART's vectors: category codes rounded to a category."""
        vectors = np.nan_to_num(np.asarray(vectors, dtype=float))
        columns: dict[str, Any] = {}
        for j, f in enumerate(self.spec.features):
            if f.kind == "categorical":
                index = np.clip(np.rint(vectors[:, j]), 0, len(f.categories) - 1).astype(int)
                columns[f.name] = np.asarray(f.categories, dtype=object)[index]
            else:
                columns[f.name] = vectors[:, j]
        return pd.DataFrame(columns)

    def project(self, before: list[Any], after: list[Any]) -> list[Any]:
        """ART's example moved onto the constraints: immutable features reset, categories and
        integers rounded, directions and bounds enforced."""
        out = []
        for f, old, new in zip(self.spec.features, before, after, strict=True):
            if f.immutable:
                out.append(old)
                continue
            if f.kind == "categorical":
                if new not in f.categories:
                    new = f.categories[int(np.clip(round(float(new)), 0, len(f.categories) - 1))]
                if f.direction and old in f.categories:
                    step = f.categories.index(new) - f.categories.index(old)
                    if step * f.direction < 0:
                        new = old
                out.append(new)
                continue
            value = float(new)
            if f.kind == "integer":
                value = float(round(value))
            if f.lower is not None:
                value = max(value, f.lower)
            if f.upper is not None:
                value = min(value, f.upper)
            if f.direction and (value - float(old)) * f.direction < 0:
                value = float(old)
            out.append(value)
        return out


def typed(spec: ProbeSpec, rows: list[list[Any]], dtypes: dict[str, Any]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=spec.names)
    for name, dtype in dtypes.items():
        if str(dtype).startswith("int"):
            frame[name] = frame[name].astype(float)  # a non-integer from a tool stays visible
    return frame


# --- one tool's outcome on one row ---------------------------------------------------------------


def judge(
    spec: ProbeSpec, model: Any, dtypes: dict[str, Any], before: list[Any], after: list[Any] | None
) -> dict[str, Any]:
    if after is None:
        return {"claimed": False}
    problems = validate_change(spec, before, after)
    cost = change_cost(spec, before, after)
    flips = False
    if not any("not one of its categories" in p for p in problems):
        flips = str(model.predict(typed(spec, [after], dtypes))[0]) == FAV
    return {"claimed": True, "valid": not problems, "flips": flips, "cost": cost}


def run_bastion(
    spec: ProbeSpec, model: Any, frame: pd.DataFrame, rows: Rows, budget: float, dtypes: Dtypes
) -> list[dict[str, Any]]:
    counted = Counting(model)
    adapter = EstimatorModel(counted, "bench")
    searcher = Searcher(adapter, Space(spec, dtypes), FAV, budget, 1000, seed=0)
    fav = adapter.class_index(FAV)
    out = []
    for row in rows:
        before = list(row)
        score = float(model.predict_proba(typed(spec, [before], dtypes))[0, fav])
        outcome = searcher.search(before, score)
        after = list(outcome.flip.after) if outcome.flip else None
        entry = judge(spec, model, dtypes, before, after)
        entry["queries"] = outcome.queries
        out.append(entry)
    return out


def run_art_black_box(
    spec: ProbeSpec,
    model: Any,
    frame: pd.DataFrame,
    rows: Rows,
    attack_name: str,
    dtypes: Dtypes,
    cache: PeerCache,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    from art.attacks.evasion import BoundaryAttack, HopSkipJump
    from art.estimators.classification import BlackBoxClassifier

    codec = Codec(spec, dtypes)
    counter = {"n": 0}

    def predict(x: np.ndarray) -> np.ndarray:
        counter["n"] += len(x)
        labels = np.asarray(model.predict(codec.decode(x))).astype(int)
        onehot: np.ndarray = np.eye(2)[labels]
        return onehot

    low, high = codec.bounds(frame)
    classifier = BlackBoxClassifier(predict, (len(spec.names),), 2, clip_values=(low, high))
    if attack_name == "hopskipjump":
        attack: Any = HopSkipJump(
            classifier, targeted=False, max_iter=10, max_eval=1000, init_eval=100, verbose=False
        )
    else:
        attack = BoundaryAttack(
            classifier, targeted=False, max_iter=100, num_trial=20, init_size=100, verbose=False
        )
    raw_frame = pd.DataFrame([list(r) for r in rows], columns=spec.names)
    out, projected = [], []
    for i, row in enumerate(rows):
        before = list(row)
        stored = cache.get(attack_name, before)
        if stored is not None:
            out.append(stored["raw"])
            projected.append(stored["projected"])
            continue
        x = codec.encode(raw_frame.iloc[[i]])
        counter["n"] = 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            adv = attack.generate(x=x)
        claimed = bool(np.argmax(predict(adv), axis=1)[0] == 1)
        queries = counter["n"] - 1
        after = codec.raw(adv[0]) if claimed else None
        entry = judge(spec, model, dtypes, before, after)
        entry["queries"] = queries
        out.append(entry)
        moved = codec.project(before, codec.raw(adv[0])) if claimed else None
        p = judge(spec, model, dtypes, before, moved)
        p["queries"] = queries + (1 if claimed else 0)
        if p.get("claimed") and not p["flips"]:
            p = {"claimed": False, "queries": p["queries"]}  # the projection lost the flip
        if p.get("claimed"):
            p["example"] = moved
        projected.append(p)
        cache.put(attack_name, before, {"raw": entry, "projected": p})
    return out, projected


def run_art_gradient(
    spec: ProbeSpec, model: Any, frame: pd.DataFrame, rows: Rows, dtypes: Dtypes
) -> list[dict[str, Any]]:
    """PGD (L1, targeted at the favourable class, masked to mutable features) on the logistic
    regression in its scaled input space; the smallest of a few eps that flips."""
    from art.attacks.evasion import ProjectedGradientDescent
    from art.estimators.classification.scikitlearn import ScikitlearnLogisticRegression

    scaler = model.named_steps["prepare"].named_transformers_["numeric"]
    lr = model.named_steps["model"]
    classifier = ScikitlearnLogisticRegression(lr)
    mask = np.array([0.0 if f.immutable else 1.0 for f in spec.features], dtype=np.float32)
    raw = pd.DataFrame([list(r) for r in rows], columns=spec.names).astype(float)
    x = scaler.transform(raw).astype(np.float32)
    target = np.tile(np.array([[0.0, 1.0]], dtype=np.float32), (len(x), 1))
    best: list[np.ndarray | None] = [None] * len(x)
    for eps in (0.25, 0.5, 1.0, 2.0, 4.0, 8.0):
        todo = [i for i in range(len(x)) if best[i] is None]
        if not todo:
            break
        attack = ProjectedGradientDescent(
            classifier,
            norm=1,
            eps=eps,
            eps_step=eps / 10,
            max_iter=50,
            targeted=True,
            verbose=False,
        )
        adv = attack.generate(x=x[todo], y=target[todo], mask=np.tile(mask, (len(todo), 1)))
        flipped = lr.predict(adv).astype(str) == FAV
        for k, i in enumerate(todo):
            if flipped[k]:
                best[i] = adv[k]
    out = []
    for i, row in enumerate(rows):
        before = list(row)
        after = None
        found = best[i]
        if found is not None:
            after = [float(v) for v in scaler.inverse_transform(found[None, :])[0]]
        entry = judge(spec, model, dtypes, before, after)
        entry["queries"] = None  # white box: gradients, not queries
        out.append(entry)
    return out


def run_dice(
    spec: ProbeSpec,
    model: Any,
    frame: pd.DataFrame,
    y: np.ndarray,
    rows: Rows,
    dtypes: Dtypes,
    cache: PeerCache,
) -> list[dict[str, Any]]:
    import dice_ml

    counted = Counting(model)
    numeric = [f.name for f in spec.features if f.kind != "categorical"]
    data = dice_ml.Data(
        dataframe=frame.assign(outcome=y), continuous_features=numeric, outcome_name="outcome"
    )
    explainer = dice_ml.Dice(data, dice_ml.Model(model=counted, backend="sklearn"), method="random")
    mutable = [f.name for f in spec.features if f.mutable]
    out = []
    for row in rows:
        before = list(row)
        stored = cache.get("dice", before)
        if stored is not None:
            out.append(stored)
            continue
        query = pd.DataFrame([before], columns=spec.names).astype(
            {n: frame[n].dtype for n in spec.names}
        )
        permitted: dict[str, list[Any]] = {}
        for f, value in zip(spec.features, before, strict=True):
            if f.immutable:
                continue
            if f.kind == "categorical":
                allowed = list(f.categories)
                if f.direction and value in allowed:
                    rank = allowed.index(value)
                    allowed = allowed[rank:] if f.direction > 0 else allowed[: rank + 1]
                permitted[f.name] = allowed
            else:
                low = f.lower if f.lower is not None else float(frame[f.name].min())
                high = f.upper if f.upper is not None else float(frame[f.name].max())
                if f.direction > 0:
                    low = float(value)
                elif f.direction < 0:
                    high = float(value)
                permitted[f.name] = [low, high]
        counted.n = 0
        candidates: list[list[Any]] = []
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = explainer.generate_counterfactuals(
                    query,
                    total_CFs=4,
                    desired_class="opposite",
                    features_to_vary=mutable,
                    permitted_range=permitted,
                    random_seed=0,
                    verbose=False,
                )
            cfs = result.cf_examples_list[0].final_cfs_df
            if cfs is not None:
                candidates = cfs[spec.names].to_numpy(dtype=object).tolist()
        except Exception as exc:  # DiCE raises when it finds nothing
            if "No counterfactuals found" not in str(exc):
                print(f"  dice: {type(exc).__name__}: {str(exc)[:120]}", file=sys.stderr)
        judged = [judge(spec, model, dtypes, before, c) for c in candidates]
        judged = [j for j in judged if j["flips"]] or judged
        if judged:  # the cheapest valid example it returned, else the cheapest
            entry = min(judged, key=lambda j: (not j["valid"], j["cost"]))
        else:
            entry = {"claimed": False}
        entry["queries"] = counted.n
        out.append(entry)
        cache.put("dice", before, entry)
    return out


# --- summary -------------------------------------------------------------------------------------


def summarise(entries: list[dict[str, Any]], budget: float) -> dict[str, Any]:
    n = len(entries)
    claimed = [e for e in entries if e.get("claimed")]
    invalid = [e for e in claimed if not e["valid"] or not e["flips"]]
    good = [e for e in claimed if e["valid"] and e["flips"] and e["cost"] <= budget + 1e-9]
    valid_any = [e for e in claimed if e["valid"] and e["flips"]]
    queries = [e["queries"] for e in entries if e.get("queries") is not None]
    return {
        # per row: the cost of a valid flip within the budget, else None (paired comparisons)
        "row_costs": [round(e["cost"], 4) if e in good else None for e in entries],
        "rows": n,
        "claimed": round(len(claimed) / n, 3) if n else 0.0,
        "invalid_share_of_claimed": round(len(invalid) / len(claimed), 3) if claimed else 0.0,
        "valid_within_budget": round(len(good) / n, 3) if n else 0.0,
        "median_cost_valid_within_budget": round(statistics.median(e["cost"] for e in good), 3)
        if good
        else None,
        "median_cost_valid_any": round(statistics.median(e["cost"] for e in valid_any), 3)
        if valid_any
        else None,
        "queries_per_row_median": round(statistics.median(queries), 1) if queries else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10, help="declined rows per model")
    parser.add_argument("--budget", type=float, default=2.0)
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--tools", default="bastion,hopskipjump,boundary,pgd,dice")
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--cache",
        type=Path,
        help="folder for the peers' per-row results (ART black box, DiCE), keyed on the tool, "
        "row, spec, fitted model, training data, the peers' code and library versions; "
        "bastion is always run afresh",
    )
    args = parser.parse_args()
    from sklearn.model_selection import train_test_split
    from threadpoolctl import threadpool_limits

    tools = args.tools.split(",")
    results: dict[str, Any] = {"budget": args.budget, "rows": args.rows, "runs": []}
    with threadpool_limits(limits=1):
        for dname in args.datasets.split(","):
            frame, y, spec = DATASETS[dname]()
            dtypes = dtypes_of(frame)
            x_train, x_test, y_train, _ = train_test_split(
                frame, y, test_size=0.3, random_state=0, stratify=y
            )
            for mname in args.models.split(","):
                model = pipeline(mname, spec)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    model.fit(x_train, y_train.astype(str))
                predicted = model.predict(x_test)
                declined = np.flatnonzero(predicted != FAV)
                rng = np.random.default_rng(0)
                pick = np.sort(
                    rng.choice(declined, size=min(args.rows, len(declined)), replace=False)
                )
                rows = x_test.iloc[pick].to_numpy(dtype=object).tolist()
                run: dict[str, Any] = {"dataset": dname, "model": mname, "declined": len(declined)}
                cache = PeerCache(
                    args.cache,
                    fingerprint(dname, mname, spec, model, frame, x_train, y_train)
                    if args.cache
                    else {},
                )
                for tool in tools:
                    began = time.monotonic()
                    entries: Any = None
                    if tool == "bastion":
                        entries = run_bastion(spec, model, frame, rows, args.budget, dtypes)
                    elif tool in ("hopskipjump", "boundary"):
                        entries, projected = run_art_black_box(
                            spec, model, frame, rows, tool, dtypes, cache
                        )
                        run[f"art_{tool}_projected"] = summarise(projected, args.budget)
                    elif tool == "pgd":
                        if mname != "logistic_regression" or any(
                            f.kind == "categorical" for f in spec.features
                        ):
                            continue  # no ART gradient through one-hot encoders or sklearn MLPs
                        entries = run_art_gradient(spec, model, frame, rows, dtypes)
                    elif tool == "dice":
                        entries = run_dice(spec, model, x_train, y_train, rows, dtypes, cache)
                    summary = summarise(entries, args.budget)
                    summary["seconds"] = round(time.monotonic() - began, 1)
                    run["art_" + tool if tool in ("hopskipjump", "boundary", "pgd") else tool] = (
                        summary
                    )
                    print(dname, mname, tool, summary, flush=True)
                run["peer_cache"] = {"hits": cache.hits, "misses": cache.misses}
                results["runs"].append(run)
                if args.json:  # after every model: a long run leaves what it measured
                    args.json.write_text(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

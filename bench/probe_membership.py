"""Membership inference and overhead (issue #10).

1. On an overfit random forest over German Credit (one-hot pipeline; members = its training
   rows, non-members = held-out rows): AUC and TPR at 1% FPR of each of bastion's attacks, and
   of ART's MembershipInferenceBlackBox run directly as its documentation shows (attack model
   trained on half of the members and non-members, scored on the other half).
2. Overhead: the same attack (ART's black-box attack on the same model, same rows) through
   bastion's adapter and bastion.probe.membership, against ART called directly; medians of
   --repeat runs.
3. A default `bastion probe` of the example credit model (evasion, membership, extraction and
   consistency with the shipped spec) as a whole process; median wall time of --repeat runs.

    .venv/bin/python bench/probe_membership.py [--repeat 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from bastion.config import ProbeSettings  # noqa: E402
from bastion.findings import Location  # noqa: E402
from bastion.probe.membership import _art_attack, roc_summary, run_membership  # noqa: E402
from bastion.probe.model import EstimatorModel  # noqa: E402

EXAMPLE = ROOT / "examples" / "credit-scoring"


def overfit_forest() -> tuple[Any, pd.DataFrame, np.ndarray, pd.DataFrame, np.ndarray]:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    frame = pd.read_csv(EXAMPLE / "data" / "german_credit.csv")
    y = frame.pop("creditability").to_numpy(dtype=object)
    categorical = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
    prepare = ColumnTransformer(
        [("categorical", OneHotEncoder(handle_unknown="ignore"), categorical)],
        remainder="passthrough",
    )
    forest = RandomForestClassifier(n_estimators=200, random_state=0, n_jobs=1)
    model = Pipeline([("prepare", prepare), ("model", forest)])
    x_train, x_test, y_train, y_test = train_test_split(
        frame, y, test_size=0.5, random_state=0, stratify=y
    )
    model.fit(x_train, y_train)
    return model, x_train, y_train, x_test, y_test


def art_directly(model: Any, members: Any, m_y: Any, others: Any, o_y: Any) -> dict[str, Any]:
    """ART as its documentation shows it: predictions handed over, an RF attack model."""
    from art.attacks.inference.membership_inference import MembershipInferenceBlackBox
    from art.estimators.classification import BlackBoxClassifier

    classes = list(model.classes_)
    onehot = np.eye(len(classes))
    half_m, half_o = len(members) // 2, len(others) // 2
    pm = model.predict_proba(members)
    po = model.predict_proba(others)
    ym = onehot[[classes.index(v) for v in m_y]]
    yo = onehot[[classes.index(v) for v in o_y]]
    estimator = BlackBoxClassifier(lambda x: x, (1,), len(classes))
    attack = MembershipInferenceBlackBox(estimator, input_type="prediction", attack_model_type="rf")
    attack.fit(
        x=np.zeros((half_m, 1)),
        y=ym[:half_m],
        test_x=np.zeros((half_o, 1)),
        test_y=yo[:half_o],
        pred=pm[:half_m],
        test_pred=po[:half_o],
    )
    inferred_m = attack.infer(
        np.zeros((len(pm) - half_m, 1)), ym[half_m:], pred=pm[half_m:], probabilities=True
    )
    inferred_o = attack.infer(
        np.zeros((len(po) - half_o, 1)), yo[half_o:], pred=po[half_o:], probabilities=True
    )

    def member_prob(p: Any) -> np.ndarray:
        p = np.asarray(p, dtype=float)
        column: np.ndarray = p[:, 1] if p.ndim == 2 and p.shape[1] > 1 else p.reshape(-1)
        return column

    summary = roc_summary(member_prob(inferred_m), member_prob(inferred_o))
    summary.pop("roc")
    return summary


def art_through_bastion(model: Any, members: Any, m_y: Any, others: Any, o_y: Any) -> None:
    """The same attack on the same rows through bastion's adapter and attack code."""
    adapter = EstimatorModel(model, "forest")
    half_m, half_o = len(members) // 2, len(others) // 2
    index = {c: i for i, c in enumerate(adapter.classes)}
    pm = adapter.query(members).scores
    po = adapter.query(others).scores
    assert pm is not None and po is not None
    im = np.array([index[str(v)] for v in m_y])
    io = np.array([index[str(v)] for v in o_y])
    art_m, art_o = _art_attack(
        len(adapter.classes),
        (pm[:half_m], po[:half_o]),
        (im[:half_m], io[:half_o]),
        (pm[half_m:], po[half_o:]),
        (im[half_m:], io[half_o:]),
    )
    roc_summary(art_m, art_o)


def interleaved(first: Any, second: Any, repeat: int) -> tuple[list[float], list[float]]:
    """Wall times of both, alternating (the machine is shared: load drifts between runs);
    one warm-up run of each first."""
    times: tuple[list[float], list[float]] = ([], [])
    for index in range(repeat + 1):
        for work, out in ((first, times[0]), (second, times[1])):
            began = time.perf_counter()
            work()
            if index:
                out.append(time.perf_counter() - began)
    return times


def default_probe(repeat: int) -> dict[str, Any]:
    """`bastion probe` of the example model with the shipped spec, as `make demo` runs it."""
    with tempfile.TemporaryDirectory() as tmp:
        split = Path(tmp) / "split"
        subprocess.run(
            [sys.executable, str(EXAMPLE / "build_demo.py"), "--probe-split", str(split)],
            check=True,
            capture_output=True,
        )
        command = [
            str(ROOT / ".venv" / "bin" / "bastion"),
            "probe",
            str(EXAMPLE / "model" / "credit_model.joblib"),
            "--data",
            str(split / "test.csv"),
            "--train",
            str(split / "train.csv"),
            "--target",
            "creditability",
            "--spec",
            str(EXAMPLE / "probe-spec.json"),
            "--policy",
            str(EXAMPLE / "bastion.toml"),
            "--no-store",
            "-q",
            "-f",
            "json",
            "-o",
            str(Path(tmp) / "report.json"),
        ]
        runs = []
        for _ in range(repeat):
            began = time.perf_counter()
            done = subprocess.run(command, capture_output=True)
            runs.append(time.perf_counter() - began)
            if done.returncode not in (0, 1):
                raise SystemExit(done.stderr.decode()[-2000:])
        report = json.loads((Path(tmp) / "report.json").read_text())
    return {
        "command": " ".join(command[1:]).replace(str(ROOT) + "/", "").replace(tmp, "$TMP"),
        "wall_s_median": round(statistics.median(runs), 2),
        "wall_s_runs": [round(r, 2) for r in runs],
        "timings_s": report["metadata"]["probe"]["timings_s"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from threadpoolctl import threadpool_limits

    results: dict[str, Any] = {}
    with threadpool_limits(limits=1):
        model, x_train, y_train, x_test, y_test = overfit_forest()
        adapter = EstimatorModel(model, "forest")
        metrics = run_membership(
            adapter,
            x_train,
            y_train,
            x_test,
            y_test,
            ProbeSettings(),
            Location(path="forest"),
        ).metrics
        results["bastion"] = {
            name: {k: v for k, v in attack.items() if k != "roc"}
            for name, attack in metrics["attacks"].items()
        }
        results["bastion_eval_rows"] = {
            "members": metrics["members"],
            "non_members": metrics["non_members"],
            "train_accuracy": metrics["train_accuracy"],
            "test_accuracy": metrics["test_accuracy"],
        }
        results["art_directly"] = art_directly(model, x_train, y_train, x_test, y_test)
        for name, value in results.items():
            print(name, value, flush=True)
        direct, through = interleaved(
            lambda: art_directly(model, x_train, y_train, x_test, y_test),
            lambda: art_through_bastion(model, x_train, y_train, x_test, y_test),
            args.repeat,
        )
        results["overhead"] = {
            "art_directly_s": round(statistics.median(direct), 3),
            "through_bastion_s": round(statistics.median(through), 3),
            "ratio_of_medians": round(statistics.median(through) / statistics.median(direct), 3),
            "median_pairwise_ratio": round(
                statistics.median(b / a for a, b in zip(direct, through, strict=True)), 3
            ),
            "repeat": args.repeat,
        }
        print("overhead", results["overhead"], flush=True)
    results["default_probe"] = default_probe(max(1, args.repeat // 2))
    print("default probe", results["default_probe"], flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

"""Extraction: how much of the model an attacker copies with a query budget.

The test data is split in two: the attacker's pool (rows of the same population an attacker
could hold) and a hold-out on which the copy is judged. Three query strategies, each within the
budget: random rows drawn within the spec's bounds and categories; data-like rows (pool rows
whose features are recombined across rows); and active learning (data-like seed queries, then
the candidates the current copy is least sure about). The copy (a random forest over the raw
features: quick to fit on a few thousand rows, no assumption about the model's shape) is
retrained at each checkpoint; its fidelity (agreement with the model on the hold-out) and
accuracy (against the true labels) are reported against the query count.

Output hardening is measured at the full budget with data-like queries: full scores (the copy
regresses the score vector), scores rounded to one decimal, top-k (the k best classes with
their scores; k = 1, and 2 for three classes or more) and labels only. For two classes top-1
carries exactly what the scores carry (p and 1 - p), and the figures say so. The
recommendation names the hardening that leaves the lowest fidelity and the query count per
client past which the copy reaches the policy's fidelity threshold, for the runtime guard's
output and rate-limit settings.

Queries the model refuses (an input contract's 4xx, an exception; see refusals.py) teach the
copy nothing: they are left out, counted (`refused_queries`), and their share, overall and per
strategy, is in the metrics — a contract that refuses random rows resists extraction. Too few
answered hold-out rows, or no answered query at all, and the attack is reported as not run."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

from bastion.config import ProbeSettings
from bastion.findings import Confidence, Finding, Location, Severity, Skip, Stage
from bastion.probe.model import Model
from bastion.probe.refusals import Refusals
from bastion.probe.spec import ProbeSpec
from bastion.records import Record
from bastion.rules import Rule

if TYPE_CHECKING:
    import numpy
    import pandas

EXTRACTABLE = Rule(
    id="PRB020",
    title="The model can be copied through its answers within the query budget",
    severity=Severity.MEDIUM,
    confidence=Confidence.HIGH,
    stage=Stage.TESTING,
    profile="model-extraction",
    description="A surrogate trained only on the model's answers to at most the probe's query "
    "budget agrees with the model on unseen rows more often than the policy allows ([probe] "
    "max_extraction_fidelity). Whoever can query the model that often owns a working copy: "
    "the model's value, and an offline sandbox for crafting evasions that transfer.",
    remediation="Apply the recommended output hardening (labels or rounded scores instead of "
    "probabilities) and a per-client query limit below the recommended count in the runtime "
    "guard; watch for extraction-shaped query patterns (many near-boundary or synthetic "
    "rows).",
)
RULES = (EXTRACTABLE,)
MIN_HOLDOUT = 10  # answered hold-out rows below which no copy is judged


class ExtractionResult(NamedTuple):
    metrics: dict[str, Any]
    findings: list[Finding]
    skips: list[Skip]


def _surrogate(spec: ProbeSpec, regression: bool = False) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OrdinalEncoder

    categorical = [f.name for f in spec.features if f.kind == "categorical"]
    prepare = ColumnTransformer(
        [
            (
                "categorical",
                OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1),
                categorical,
            )
        ],
        remainder="passthrough",
    )
    model = (
        RandomForestRegressor(n_estimators=50, min_samples_leaf=2, random_state=0)
        if regression
        else RandomForestClassifier(n_estimators=50, min_samples_leaf=2, random_state=0)
    )
    return Pipeline([("prepare", prepare), ("model", model)])


def random_rows(spec: ProbeSpec, pool: pandas.DataFrame, n: int, rng: Any) -> pandas.DataFrame:
    """Rows drawn uniformly within the spec's bounds and categories."""
    import numpy as np
    import pandas as pd

    columns: dict[str, Any] = {}
    for item in spec.features:
        if item.kind == "categorical":
            columns[item.name] = rng.choice(list(item.categories), size=n)
            continue
        values = pd.to_numeric(pool[item.name], errors="coerce").to_numpy(dtype=float)
        low = item.lower if item.lower is not None else float(np.nanmin(values))
        high = item.upper if item.upper is not None else float(np.nanmax(values))
        drawn = rng.uniform(low, high, size=n)
        columns[item.name] = np.round(drawn) if item.kind == "integer" else drawn
    frame = pd.DataFrame(columns)
    return frame.astype({c: pool[c].dtype for c in frame.columns})


def data_like_rows(pool: pandas.DataFrame, n: int, rng: Any) -> pandas.DataFrame:
    """Pool rows with about a third of their features taken from other pool rows."""
    import numpy as np

    base = pool.iloc[rng.integers(0, len(pool), n)].reset_index(drop=True)
    donors = pool.iloc[rng.integers(0, len(pool), n)].reset_index(drop=True)
    mask = rng.random((n, pool.shape[1])) < 0.33
    mixed = base.copy()
    for j, column in enumerate(pool.columns):
        take = np.flatnonzero(mask[:, j])
        if len(take):
            mixed.loc[take, column] = donors.loc[take, column].to_numpy()
    return mixed.astype(pool.dtypes.to_dict())


def top_k(scores: numpy.ndarray, k: int) -> numpy.ndarray:
    """What an attacker sees of top-k output (the k best classes and their scores), as score
    vectors: the classes not shown share what is left of the probability mass equally."""
    import numpy as np

    n, classes = scores.shape
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    shown = np.zeros_like(scores, dtype=bool)
    shown[np.arange(n)[:, None], order] = True
    kept = np.where(shown, scores, 0.0)
    if classes > k:
        rest = np.clip(1.0 - kept.sum(axis=1, keepdims=True), 0.0, None) / (classes - k)
        kept = np.where(shown, kept, rest)
    return kept


def _fit_predict(
    spec: ProbeSpec, x: pandas.DataFrame, y: numpy.ndarray, holdout: pandas.DataFrame
) -> numpy.ndarray:
    import numpy as np

    values = np.unique(y)
    if len(values) < 2:
        return np.full(len(holdout), values[0] if len(values) else "", dtype=object)
    copy = _surrogate(spec).fit(x, y)
    return np.asarray(copy.predict(holdout), dtype=object)


class _Queries(Record):
    """Rows an attacker sent, the labels (and scores) answered, and which rows were answered."""

    x: pandas.DataFrame
    labels: numpy.ndarray
    scores: numpy.ndarray | None
    answered: numpy.ndarray

    def first(self, q: int) -> tuple[pandas.DataFrame, numpy.ndarray]:
        """The answered rows among the first `q` sent, and their labels."""
        keep = self.answered[:q]
        return self.x.iloc[:q][keep], self.labels[:q][keep]

    def more(self, other: _Queries) -> _Queries:
        import numpy as np
        import pandas as pd

        return _Queries(
            x=pd.concat([self.x, other.x], ignore_index=True),
            labels=np.concatenate([self.labels, other.labels]),
            scores=None,
            answered=np.concatenate([self.answered, other.answered]),
        )


def run_extraction(
    model: Model,
    spec: ProbeSpec,
    features: pandas.DataFrame,
    truth: numpy.ndarray | None,
    options: ProbeSettings,
    location: Location,
) -> ExtractionResult:
    """Queries the model refuses (an input contract's 4xx, an exception) are left out: the
    copy learns from the answered ones, is judged on the answered hold-out rows, and the
    refused share per strategy is in the metrics (a contract that refuses random rows is
    itself a defence against extraction)."""
    import numpy as np

    rng = np.random.default_rng(options.seed)
    order = rng.permutation(len(features))
    pool = features.iloc[order[: len(order) // 2]].reset_index(drop=True)
    hold_index = order[len(order) // 2 :]
    asked = Refusals(model, "extraction", location)
    out, kept = asked.ask(features.iloc[hold_index])
    holdout = features.iloc[hold_index[kept]].reset_index(drop=True)
    target = out.labels[kept]
    hold_truth = truth[hold_index[kept]] if truth is not None else None
    budget = options.queries
    if len(holdout) < MIN_HOLDOUT:
        metrics: dict[str, Any] = {
            "run": False,
            "budget": budget,
            "holdout_rows": len(holdout),
            "refused_queries": asked.refused,
            "refused_share": asked.share,
        }
        why = (
            f"the model answered {len(holdout)} of {len(hold_index)} hold-out rows; at least "
            f"{MIN_HOLDOUT} are needed to judge a copy"
        )
        return ExtractionResult(metrics, [], [asked.not_run(why)])
    checkpoints = sorted({max(10, budget // 8), max(10, budget // 4), max(10, budget // 2), budget})
    shares: dict[str, float] = {}

    def send(x: pandas.DataFrame) -> _Queries:
        out, answered = asked.ask(x)
        return _Queries(x=x, labels=out.labels, scores=out.scores, answered=answered)

    def score(sent: _Queries, queries: int) -> dict[str, Any]:
        """The copy trained on the answers to the first `queries` sent, judged on the
        hold-out; no fidelity when none of them was answered (no copy)."""
        x, y = sent.first(queries)
        entry: dict[str, Any] = {"queries": queries, "answered": len(y), "fidelity": None}
        if not len(y):
            return entry
        predicted = _fit_predict(spec, x, y, holdout)
        entry["fidelity"] = round(float(np.mean(predicted == target)), 6)
        if hold_truth is not None:
            entry["accuracy"] = round(float(np.mean(predicted == hold_truth)), 6)
        return entry

    def refused_share(sent: _Queries) -> float:
        return round(1 - float(sent.answered.mean()), 6) if len(sent.answered) else 0.0

    curves: dict[str, list[dict[str, Any]]] = {}
    for name in ("random", "data_like"):
        sent = send(
            random_rows(spec, pool, budget, rng)
            if name == "random"
            else data_like_rows(pool, budget, rng)
        )
        shares[name] = refused_share(sent)
        curves[name] = [score(sent, q) for q in checkpoints]
    # active learning: seed with data-like rows, then ask where the copy is least sure
    sent = send(data_like_rows(pool, checkpoints[0], rng))
    curve = [score(sent, len(sent.x))]
    for q in checkpoints[1:]:
        need = q - len(sent.x)
        candidates = data_like_rows(pool, need * 5, rng)
        x, y = sent.first(len(sent.x))
        if len(np.unique(y)) >= 2:
            copy = _surrogate(spec).fit(x, y)
            proba = copy.predict_proba(candidates)
            margin = np.sort(proba, axis=1)[:, -1] - (
                np.sort(proba, axis=1)[:, -2] if proba.shape[1] > 1 else 0
            )
            chosen = candidates.iloc[np.argsort(margin, kind="stable")[:need]]
        else:
            chosen = candidates.iloc[:need]
        sent = sent.more(send(chosen.reset_index(drop=True)))
        curve.append(score(sent, len(sent.x)))
    curves["active"] = curve
    shares["active"] = refused_share(sent)
    # output hardening, at the full budget with data-like queries
    hardening: dict[str, float] = {}
    sent = send(data_like_rows(pool, budget, rng))
    shares["hardening"] = refused_share(sent)
    x, labels = sent.first(budget)
    if len(labels):
        hardening["labels"] = score(sent, budget)["fidelity"]
    if sent.scores is not None and sent.scores.shape[1] >= 2 and len(labels):
        answered_scores = sent.scores[sent.answered]
        classes = np.array(model.classes, dtype=object)
        variants = {"scores": answered_scores, "rounded_0.1": np.round(answered_scores, 1)}
        for k in range(1, min(3, answered_scores.shape[1])):
            variants[f"top_{k}"] = top_k(answered_scores, k)
        for name, scores in variants.items():
            copy = _surrogate(spec, regression=True).fit(x, scores)
            guess = classes[np.asarray(copy.predict(holdout)).reshape(len(holdout), -1).argmax(1)]
            hardening[name] = round(float(np.mean(guess == target)), 6)
    judged = {k: v[-1]["fidelity"] for k, v in curves.items() if v[-1]["fidelity"] is not None}
    if not judged:
        metrics = {
            "run": False,
            "budget": budget,
            "holdout_rows": len(holdout),
            "refused_queries": asked.refused,
            "refused_share": asked.share,
            "refused_share_by_strategy": shares,
        }
        why = "the model answered none of the attacker's queries, so no copy could be trained"
        return ExtractionResult(metrics, [], [asked.not_run(why)])
    best_strategy = max(judged, key=lambda k: judged[k])
    best = judged[best_strategy]
    reached = [
        point["queries"]
        for points in curves.values()
        for point in points
        if point["fidelity"] is not None and point["fidelity"] > options.max_extraction_fidelity
    ]
    safest = min(hardening, key=lambda k: hardening[k]) if hardening else None
    recommendation: dict[str, Any] = {
        "output": safest,
        "fidelity_with_it": hardening[safest] if safest else None,
        "max_queries_per_client": (min(reached) - 1) if reached else None,
    }
    metrics = {
        "budget": budget,
        "pool_rows": len(pool),
        "holdout_rows": len(holdout),
        "refused_queries": asked.refused,
        "refused_share": asked.share,
        "refused_share_by_strategy": shares,
        "curves": curves,
        "best_strategy": best_strategy,
        "best_fidelity": best,
        "hardening": hardening,
        "recommendation": recommendation,
    }
    skips = asked.note(
        "so each copy learns from the answered queries only and is judged on the hold-out "
        f"rows answered (refused share {asked.share:.1%}: random {shares['random']:.1%}, "
        f"data-like {shares['data_like']:.1%}; a contract refusing what an attacker sends "
        "slows extraction)"
    )
    if not hardening:
        skips.append(asked.not_run("output hardening: none of its data-like queries was answered"))
    findings = []
    if best > options.max_extraction_fidelity:
        limit = recommendation["max_queries_per_client"]
        answered = curves[best_strategy][-1]["answered"]
        findings.append(
            EXTRACTABLE.finding(
                location.model_copy(update={"pointer": "extraction"}),
                f"a copy trained on {budget:,} {best_strategy.replace('_', '-')} queries "
                + (f"({answered:,} answered) " if answered < budget else "")
                + "agrees "
                f"with the model on {best:.1%} of unseen rows (policy maximum "
                f"{options.max_extraction_fidelity:.0%})"
                + (
                    f"; with {safest.replace('_', ' ')} output it agrees on {hardening[safest]:.1%}"
                    if safest
                    else ""
                )
                + (f"; the threshold is passed from {limit + 1:,} queries" if limit else ""),
                evidence=f"extraction_fidelity > max_extraction_fidelity "
                f"{options.max_extraction_fidelity:g}",
            )
        )
    return ExtractionResult(metrics, findings, skips)

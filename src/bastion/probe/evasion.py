"""Evasion: how cheaply a declined applicant can change what they are allowed to change and get
the favourable decision, and what that does to the model's accuracy.

For each declined row of the test data (a seeded sample of at most `max_rows`), bastion's
constraint-aware search (search.py) finds the cheapest valid flip within the largest budget.
Every reported flip is re-validated against the spec and re-queried; one that fails either is
dropped and counted (`invalid_dropped`, always 0 for bastion's own search). Per budget ε:
the share of declined rows flippable within ε, the success rate, robust accuracy (accuracy of
the model when every declined row may change within ε; approved rows do not attack), and the
median and 90th percentile of the cost of the flips within ε."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from bastion.config import ProbeSettings
from bastion.findings import Confidence, Finding, Location, Severity, Stage
from bastion.probe.model import Model
from bastion.probe.search import Flip, Searcher, Space
from bastion.probe.spec import ProbeSpec, change_cost, validate_change
from bastion.rules import Rule

if TYPE_CHECKING:
    import numpy
    import pandas

FLIPPABLE = Rule(
    id="PRB001",
    title="Declined decisions can be flipped within the budget",
    severity=Severity.HIGH,
    confidence=Confidence.HIGH,
    stage=Stage.TESTING,
    profile="model-evasion",
    description="More declined applicants than the policy allows can obtain the favourable "
    "decision with a valid change costing at most the budget: only features the spec lets a "
    "person change, only in their allowed direction, kept within bounds, integer and "
    "categorical features kept valid. Each such change was found by querying the model and "
    "re-checked against the spec; the report lists the cheapest ones.",
    remediation="Look at what the cheapest flips change: a decision that turns on a cheap, "
    "self-reported or gameable feature needs that feature verified, capped or dropped; "
    "retrain with monotonic constraints or adversarial examples for the features that matter; "
    "and put the runtime guard's input contract in front of the model. Raise "
    "[probe] max_flippable_share only as a reviewed risk decision.",
)
ROBUST_ACCURACY = Rule(
    id="PRB002",
    title="Robust accuracy under evasion below the threshold",
    severity=Severity.HIGH,
    confidence=Confidence.HIGH,
    stage=Stage.TESTING,
    profile="model-evasion",
    description="When every declined applicant may make a valid change within the budget, the "
    "model's accuracy on the test data falls below the policy's minimum: the accuracy measured "
    "on clean data overstates how the model performs against people who adapt to it.",
    remediation="Make the decision depend less on features applicants can cheaply change "
    "(monotonic constraints, verified inputs, adversarial training on valid changes), then "
    "probe again. Lower [probe] min_robust_accuracy only as a reviewed risk decision.",
)
RULES = (FLIPPABLE, ROBUST_ACCURACY)


class EvasionResult(NamedTuple):
    metrics: dict[str, Any]
    findings: list[Finding]


def _percentile(values: Sequence[float], q: float) -> float | None:
    import numpy as np

    return float(np.percentile(values, q)) if values else None


def _plain(value: Any) -> Any:
    """A cell value as JSON can carry it."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def describe_flip(spec: ProbeSpec, row: int, flip: Flip) -> dict[str, Any]:
    changes = []
    for item, old, new in zip(spec.features, flip.before, flip.after, strict=True):
        if str(old) != str(new):
            changes.append({"feature": item.name, "from": _plain(old), "to": _plain(new)})
    return {
        "row": row,
        "cost": round(flip.cost, 6),
        "changes": changes,
        "score_before": None if flip.score_before is None else round(flip.score_before, 6),
        "score_after": None if flip.score_after is None else round(flip.score_after, 6),
    }


def run_evasion(
    model: Model,
    spec: ProbeSpec,
    features: pandas.DataFrame,
    truth: numpy.ndarray | None,
    predicted: numpy.ndarray,
    scores: numpy.ndarray | None,
    favourable: str,
    options: ProbeSettings,
    location: Location,
    budgets: Sequence[float] | None = None,
) -> EvasionResult:
    """Probe every declined row (a seeded sample past options.max_rows)."""
    import numpy as np

    from bastion.probe.inputs import dtypes_of

    budgets = sorted(set(budgets or options.budgets))
    max_cost = budgets[-1]
    space = Space(spec, dtypes_of(features))
    searcher = Searcher(model, space, favourable, max_cost, options.queries_per_row, options.seed)
    declined = np.flatnonzero(predicted != favourable)
    rng = np.random.default_rng(options.seed)
    probed = (
        np.sort(rng.choice(declined, size=options.max_rows, replace=False))
        if len(declined) > options.max_rows
        else declined
    )
    fav_index = model.class_index(favourable) if scores is not None else None
    rows = features.to_numpy(dtype=object)
    found: dict[int, Flip] = {}
    queries: list[int] = []
    for index in probed:
        score = (
            float(scores[index, fav_index])
            if scores is not None and fav_index is not None
            else None
        )
        outcome = searcher.search(list(rows[index]), score)
        queries.append(outcome.queries)
        if outcome.flip is not None:
            found[int(index)] = outcome.flip
    # re-check every flip against the spec, and ask the model once more
    invalid = 0
    checked: dict[int, Flip] = {}
    if found:
        order = sorted(found)
        confirm = model.query(space.frame([list(found[i].after) for i in order]))
        for k, index in enumerate(order):
            flip = found[index]
            problems = validate_change(spec, flip.before, flip.after)
            cost = change_cost(spec, flip.before, flip.after)
            if problems or confirm.labels[k] != favourable or cost > max_cost + 1e-9:
                invalid += 1
                continue
            after = None
            if confirm.scores is not None and fav_index is not None:
                after = float(confirm.scores[k, fav_index])
            checked[index] = flip._replace(cost=cost, score_after=after)
    n_probed = len(probed)
    n_rows = len(predicted)
    per_budget = []
    for eps in budgets:
        within = [i for i, f in checked.items() if f.cost <= eps + 1e-9]
        costs = [checked[i].cost for i in within]
        share = len(within) / n_probed if n_probed else 0.0
        entry: dict[str, Any] = {
            "budget": eps,
            "flippable": len(within),
            "flippable_share": round(share, 6),
            "median_cost": _round(_percentile(costs, 50)),
            "p90_cost": _round(_percentile(costs, 90)),
        }
        if truth is not None:
            entry["robust_accuracy"] = round(
                _robust_accuracy(truth, predicted, favourable, probed, within, n_rows), 6
            )
        per_budget.append(entry)
    cheapest = sorted(checked.items(), key=lambda item: (item[1].cost, item[0]))[:25]
    flipped_queries = [queries[k] for k, i in enumerate(probed) if int(i) in checked]
    metrics: dict[str, Any] = {
        "rows": n_rows,
        "declined": len(declined),
        "probed": int(n_probed),
        "favourable": favourable,
        "budgets": per_budget,
        "success_rate": round(len(checked) / n_probed, 6) if n_probed else 0.0,
        "invalid_dropped": invalid,
        "queries": int(sum(queries)),
        "queries_per_row_median": _round(_percentile(queries, 50)),
        "queries_per_flip_median": _round(_percentile(flipped_queries, 50)),
        "scores_used": scores is not None,
        "cheapest_flips": [describe_flip(spec, i, f) for i, f in cheapest],
    }
    if truth is not None:
        metrics["accuracy"] = round(float(np.mean(truth == predicted)), 6)
    return EvasionResult(metrics, _findings(metrics, options, location))


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def _robust_accuracy(
    truth: numpy.ndarray,
    predicted: numpy.ndarray,
    favourable: str,
    probed: numpy.ndarray,
    flipped: Sequence[int],
    n_rows: int,
) -> float:
    """Accuracy when the probed declined rows that flip within the budget get the favourable
    decision; when only a sample of declined rows was probed, their outcome stands for all."""
    import numpy as np

    declined = predicted != favourable
    correct_approved = float(np.sum((truth == predicted) & ~declined))
    if len(probed) == 0:
        return correct_approved / n_rows
    after = predicted[probed].copy()
    flips = np.isin(probed, np.asarray(flipped, dtype=int))
    after[flips] = favourable
    sample_correct = float(np.mean(after == truth[probed]))
    return (correct_approved + sample_correct * float(np.sum(declined))) / n_rows


def _findings(metrics: dict[str, Any], options: ProbeSettings, location: Location) -> list[Finding]:
    if not metrics["probed"]:
        return []
    gate = metrics["budgets"][-1]
    findings = []
    eps = gate["budget"]
    if gate["flippable_share"] > options.max_flippable_share:
        findings.append(
            FLIPPABLE.finding(
                location.model_copy(update={"pointer": f"evasion/budget={eps:g}"}),
                f"{gate['flippable_share']:.1%} of declined rows ({gate['flippable']} of "
                f"{metrics['probed']}) flip to {metrics['favourable']!r} with a valid change "
                f"costing at most {eps:g} (policy maximum {options.max_flippable_share:.1%}; "
                f"median cost {gate['median_cost']})",
                evidence=f"flippable_share@{eps:g} > max_flippable_share "
                f"{options.max_flippable_share:g}",
            )
        )
    robust = gate.get("robust_accuracy")
    if robust is not None and robust < options.min_robust_accuracy:
        findings.append(
            ROBUST_ACCURACY.finding(
                location.model_copy(update={"pointer": f"evasion/budget={eps:g}"}),
                f"robust accuracy {robust:.1%} at budget {eps:g} (clean accuracy "
                f"{metrics['accuracy']:.1%}; policy minimum {options.min_robust_accuracy:.1%})",
                evidence=f"robust_accuracy@{eps:g} < min_robust_accuracy "
                f"{options.min_robust_accuracy:g}",
            )
        )
    return findings

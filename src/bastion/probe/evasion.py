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
from bastion.coverage import LIMIT, UNSUPPORTED
from bastion.findings import CheckError, Confidence, Finding, Location, Severity, Skip, Stage
from bastion.probe.model import REFUSED_LABEL, Model, QueryBudgetExceeded
from bastion.probe.search import Flip, Searcher, Space
from bastion.probe.spec import ProbeSpec, change_cost, outside_spec, validate_change
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
    skips: list[Skip] = []  # noqa: RUF012 - never mutated: what the search could not cover
    errors: list[CheckError] = []  # noqa: RUF012 - flips the search found that break the spec


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
    # a row's queries: its own prediction, the search, and the confirmation of its flip
    searcher = Searcher(
        model, space, favourable, max_cost, max(1, options.queries_per_row - 2), options.seed
    )
    refused_rows = np.flatnonzero(predicted == REFUSED_LABEL)  # the model refused the row
    declined = np.flatnonzero((predicted != favourable) & (predicted != REFUSED_LABEL))
    rng = np.random.default_rng(options.seed)
    probed = (
        np.sort(rng.choice(declined, size=options.max_rows, replace=False))
        if len(declined) > options.max_rows
        else declined
    )
    fav_index = model.class_index(favourable) if scores is not None else None
    rows = features.to_numpy(dtype=object)
    found: dict[int, Flip] = {}
    queries: dict[int, int] = {}
    refused: dict[int, int] = {}
    outside: dict[int, list[str]] = {}
    for index in probed:
        score = (
            float(scores[index, fav_index])
            if scores is not None and fav_index is not None
            else None
        )
        original = list(rows[index])
        problems = outside_spec(spec, original)
        if problems:
            outside[int(index)] = problems
        outcome = searcher.search(original, score)
        queries[int(index)] = 1 + outcome.queries
        if outcome.refused:
            refused[int(index)] = outcome.refused
        if outcome.flip is not None:
            found[int(index)] = outcome.flip
    # re-check every flip against the spec, and ask the model once more
    invalid: list[tuple[int, list[str]]] = []
    unconfirmed = 0
    unsent = 0
    checked: dict[int, Flip] = {}
    if found:
        order = sorted(found)
        confirm = None
        try:
            confirm = model.query(space.frame([list(found[i].after) for i in order]), partial=True)
        except QueryBudgetExceeded:
            unsent = len(order)  # the model's budget has no room left for the confirmation
        for k, index in enumerate(order):
            flip = found[index]
            if confirm is not None:
                queries[index] += 1
            problems = validate_change(spec, flip.before, flip.after)
            cost = change_cost(spec, flip.before, flip.after)
            if not any(str(a) != str(b) for a, b in zip(flip.before, flip.after, strict=True)):
                problems = [*problems, "no feature changed"]
            if problems or cost > max_cost + 1e-9:
                invalid.append((index, problems or [f"cost {cost:g} above {max_cost:g}"]))
                continue
            if confirm is None or confirm.labels[k] != favourable:
                unconfirmed += confirm is not None
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
    flipped_queries = [queries[i] for i in queries if i in checked]
    row_queries = list(queries.values())
    metrics: dict[str, Any] = {
        "rows": n_rows,
        "declined": len(declined),
        "probed": int(n_probed),
        "favourable": favourable,
        "budgets": per_budget,
        "success_rate": round(len(checked) / n_probed, 6) if n_probed else 0.0,
        "invalid_dropped": len(invalid),
        "unconfirmed_dropped": unconfirmed,
        "unconfirmed_unsent": unsent,
        "refused_rows": len(refused_rows),
        "refused_candidates": int(sum(refused.values())),
        "rows_with_refused_candidates": len(refused),
        "outside_spec_rows": len(outside),
        "queries": int(sum(row_queries)),
        "queries_per_row_median": _round(_percentile(row_queries, 50)),
        "queries_per_flip_median": _round(_percentile(flipped_queries, 50)),
        "scores_used": scores is not None,
        "cheapest_flips": [describe_flip(spec, i, f) for i, f in cheapest],
    }
    if truth is not None:
        metrics["accuracy"] = round(float(np.mean(truth == predicted)), 6)
    skips, errors = _gaps(metrics, refused_rows, outside, invalid, location)
    return EvasionResult(metrics, _findings(metrics, options, location), skips, errors)


def _gaps(
    metrics: dict[str, Any],
    refused_rows: numpy.ndarray,
    outside: dict[int, list[str]],
    invalid: list[tuple[int, list[str]]],
    location: Location,
) -> tuple[list[Skip], list[CheckError]]:
    """What the search could not cover, said in the report: rows and candidates the model
    refused, rows the spec does not describe, flips not confirmed; a reported flip that breaks
    the spec is a check error (the search must never produce one)."""
    where = location.model_copy(update={"pointer": "evasion"})
    skips: list[Skip] = []
    if len(refused_rows):
        listed = ", ".join(str(int(i)) for i in refused_rows[:10])
        skips.append(
            Skip(
                location=where,
                code=UNSUPPORTED,
                reason=f"evasion: the model refused {len(refused_rows)} row(s) of the data as "
                f"they are (rows {listed}); they were not probed",
            )
        )
    if metrics["refused_candidates"]:
        skips.append(
            Skip(
                location=where,
                code=UNSUPPORTED,
                reason=f"evasion: the model refused {metrics['refused_candidates']} candidate "
                f"row(s) for {metrics['rows_with_refused_candidates']} applicant(s) (an input "
                "contract, or an exception); each counted as no flip, so a flip behind a "
                "refused candidate may be missed",
            )
        )
    if outside:
        first, problems = next(iter(sorted(outside.items())))
        skips.append(
            Skip(
                location=where,
                code=UNSUPPORTED,
                reason=f"evasion: {len(outside)} probed row(s) hold values outside the spec "
                f"(row {first}: {'; '.join(problems[:3])}); the search moved such a feature "
                "only into its bounds or categories, or not at all",
            )
        )
    if metrics["unconfirmed_dropped"]:
        skips.append(
            Skip(
                location=where,
                code=UNSUPPORTED,
                reason=f"evasion: {metrics['unconfirmed_dropped']} flip(s) found were not "
                "favourable when sent again (the model's answers change between identical "
                "queries); they are not counted",
            )
        )
    if metrics["unconfirmed_unsent"]:
        skips.append(
            Skip(
                location=where,
                code=LIMIT,
                reason=f"evasion: the query budget left no room to confirm "
                f"{metrics['unconfirmed_unsent']} flip(s) found; they are not counted",
            )
        )
    errors = (
        [
            CheckError(
                location=where,
                check="probe.evasion",
                message=f"the search reported {len(invalid)} flip(s) that break the spec "
                f"(row {invalid[0][0]}: {'; '.join(invalid[0][1][:3])}); they are not counted"[
                    :500
                ],
            )
        ]
        if invalid
        else []
    )
    return skips, errors


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

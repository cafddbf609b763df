"""Consistency (cheap, always on): the same rows give the same decisions; the decision does not
depend on the order of named columns or on dtype casts that keep every value; and malformed
input (text in a numeric column, a missing column) is refused rather than guessed at. A few
hundred queries at most. Sampled rows the model refuses as they are (an input contract's 4xx,
an exception) are left out and counted (`refused_queries`), and so is a re-typed variant it
refuses (not checked); refusing malformed input is what that check wants, and is not counted."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

from bastion.findings import Confidence, Finding, Location, Severity, Skip, Stage
from bastion.probe.model import Model
from bastion.probe.refusals import Refusals
from bastion.rules import Rule

if TYPE_CHECKING:
    import pandas

SAMPLE_ROWS = 64

NONDETERMINISTIC = Rule(
    id="PRB030",
    title="Predictions are not deterministic",
    severity=Severity.MEDIUM,
    confidence=Confidence.HIGH,
    stage=Stage.TESTING,
    profile="model-consistency",
    description="The same rows, sent twice, got different decisions. A decision that changes "
    "on retry can be farmed: an applicant resubmits until approved, and no audit can "
    "reproduce what was decided.",
    remediation="Find the randomness (dropout or sampling left on at inference, an unseeded "
    "random component, a race between replicas serving different versions) and remove it; "
    "pin the model version behind the endpoint.",
)
ORDER_DEPENDENT = Rule(
    id="PRB031",
    title="Predictions depend on column order or on a value-preserving cast",
    severity=Severity.MEDIUM,
    confidence=Confidence.HIGH,
    stage=Stage.TESTING,
    profile="model-consistency",
    description="Reordering the named columns of the input, or casting a column to a type that "
    "keeps every value (integers to floats), changed decisions: the model reads features by "
    "position or type, so a client or an attacker who sends the same facts in another form "
    "gets another answer.",
    remediation="Select and order columns by name in the serving code (or the pipeline's "
    "first step), cast to the trained dtypes explicitly, and validate input against a data "
    "contract before it reaches the model.",
)
MALFORMED_ACCEPTED = Rule(
    id="PRB032",
    title="Malformed input accepted",
    severity=Severity.MEDIUM,
    confidence=Confidence.HIGH,
    stage=Stage.TESTING,
    profile="model-consistency",
    description="The model returned decisions for input it should refuse: text in a numeric "
    "column, or a row with a column missing. Whatever it guessed is an answer to a question "
    "nobody asked, and a way to probe the model off its data.",
    remediation="Validate input before prediction (the runtime guard's input contract, or a "
    "schema check in the serving code) and refuse what does not match.",
)
UNKNOWN_CATEGORY = Rule(
    id="PRB033",
    title="Unknown categories silently accepted",
    severity=Severity.LOW,
    confidence=Confidence.HIGH,
    stage=Stage.TESTING,
    profile="model-consistency",
    description="A category value the data never holds was accepted and decided on (typically "
    "an encoder with handle_unknown='ignore' that encodes it as 'none of the known "
    "categories'). An attacker can pick such values to move the decision.",
    remediation="Refuse unknown categories at the input contract (the guard), or map them "
    "explicitly to a reviewed fallback category.",
)
RULES = (NONDETERMINISTIC, ORDER_DEPENDENT, MALFORMED_ACCEPTED, UNKNOWN_CATEGORY)


class ConsistencyResult(NamedTuple):
    metrics: dict[str, Any]
    findings: list[Finding]
    skips: list[Skip]


def _accepted(model: Model, frame: pandas.DataFrame) -> bool:
    """Whether the model answered (anything raised counts as refusal)."""
    try:
        out = model.raw_query(frame)
    except Exception:  # any refusal: the model's own validation, a type error, a 4xx
        return False
    return len(out.labels) == len(frame)


def run_consistency(
    model: Model, features: pandas.DataFrame, location: Location, seed: int = 0
) -> ConsistencyResult:
    import numpy as np
    import pandas as pd

    sample = features.sample(n=min(SAMPLE_ROWS, len(features)), random_state=seed)
    sample = sample.reset_index(drop=True)
    asked = Refusals(model, "consistency", location)
    # a row the model refuses (either time) is left out of every check below
    out, first_ok = asked.ask(sample)
    again, second_ok = asked.ask(sample)
    both = first_ok & second_ok
    if not both.any():
        metrics: dict[str, Any] = {"run": False, "rows": 0, "refused_queries": asked.refused}
        why = f"the model answered none of the {len(sample)} sampled rows both times"
        return ConsistencyResult(metrics, [], [asked.not_run(why)])
    sample = sample[both].reset_index(drop=True)
    first, second = out.labels[both], again.labels[both]
    metrics = {"rows": len(sample), "refused_queries": asked.refused}
    findings: list[Finding] = []
    changed = int(np.sum(first != second))
    metrics["deterministic"] = changed == 0
    if changed:
        findings.append(
            NONDETERMINISTIC.finding(
                location.model_copy(update={"pointer": "consistency/repeat"}),
                f"{changed} of {len(sample)} rows got a different decision when sent again",
                evidence="repeat",
            )
        )
    variants: list[tuple[str, pd.DataFrame]] = []
    if not model.positional and sample.shape[1] > 1:
        variants.append(("column order", sample[list(reversed(sample.columns))]))
    ints = [c for c in sample.columns if pd.api.types.is_integer_dtype(sample[c])]
    if ints:
        variants.append(("integers as floats", sample.astype({c: "float64" for c in ints})))
    floats = [c for c in sample.columns if pd.api.types.is_float_dtype(sample[c])]
    if floats:
        variants.append(("floats as float32", sample.astype({c: "float32" for c in floats})))
    differing: dict[str, int] = {}
    refused: list[str] = []
    for name, variant in variants:
        try:
            labels = model.raw_query(variant).labels
        except Exception:  # refusing a re-typed frame is not inconsistency, but not checked
            asked.count(len(variant))
            refused.append(name)
            continue
        diff = int(np.sum(labels != first))
        # float32 rounding can move a row sitting on the boundary; count it only when the
        # round trip changed no value
        if name == "floats as float32" and not variant[floats].astype("float64").equals(
            sample[floats]
        ):
            continue
        if diff:
            differing[name] = diff
    metrics["variants_checked"] = [name for name, _ in variants if name not in refused]
    metrics["variants_differing"] = differing
    metrics["variants_refused"] = refused
    for name, diff in differing.items():
        findings.append(
            ORDER_DEPENDENT.finding(
                location.model_copy(update={"pointer": f"consistency/{name.replace(' ', '-')}"}),
                f"{diff} of {len(sample)} decisions changed with {name}",
                evidence=name,
            )
        )
    row = sample.iloc[:1]
    accepted: list[str] = []
    numeric = [c for c in sample.columns if pd.api.types.is_numeric_dtype(sample[c])]
    if numeric:
        broken = row.astype({numeric[0]: object})
        broken.iloc[0, broken.columns.get_loc(numeric[0])] = "not a number"
        if _accepted(model, broken):
            accepted.append(f"text in numeric column {numeric[0]!r}")
    if sample.shape[1] > 1 and _accepted(model, row.iloc[:, 1:]):
        accepted.append(f"column {sample.columns[0]!r} missing")
    metrics["malformed_accepted"] = accepted
    for what in accepted:
        findings.append(
            MALFORMED_ACCEPTED.finding(
                location.model_copy(update={"pointer": "consistency/malformed"}),
                f"the model answered input with {what}",
                evidence=what.split(" ")[0] + (" missing" if "missing" in what else " text"),
            )
        )
    text = [c for c in sample.columns if not pd.api.types.is_numeric_dtype(sample[c])]
    unknown: list[str] = []
    for column in text[:5]:
        odd = row.copy()
        odd[column] = odd[column].astype(object)
        odd.iloc[0, odd.columns.get_loc(column)] = "\u2063bastion-unknown-category"
        if _accepted(model, odd):
            unknown.append(column)
    metrics["unknown_categories_accepted"] = unknown
    if unknown:
        findings.append(
            UNKNOWN_CATEGORY.finding(
                location.model_copy(update={"pointer": "consistency/unknown-category"}),
                f"an unknown category was accepted in {len(unknown)} column(s): "
                + ", ".join(repr(c) for c in unknown),
                evidence=",".join(unknown),
            )
        )
    metrics["refused_queries"] = asked.refused
    skips = asked.note(
        f"so the checks ran on the {len(sample)} sampled row(s) answered both times"
        + (f"; not checked: {', '.join(refused)} (refused)" if refused else "")
    )
    return ConsistencyResult(metrics, findings, skips)

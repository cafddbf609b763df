"""Output hardening: what an answer may carry, per scope.

The guard's answer format is `{"predictions": [{"label": L, "scores": {class: p, ...}}]}`.
Per scope (guard.toml [output.scopes.<scope>]): `scores = false` keeps the label only (the
default for `predict`); otherwise probabilities are rounded to `digits` (default 2: an
extraction attack learns far less from 0.73 than from 0.7312894) and cut to the `top_k` most
probable classes. Nothing a detector computed (scores, thresholds, which marker fired) is ever
added to an answer; a refused request says only what the client must change."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bastion.guard.settings import ScopeOutput


class BadAnswer(Exception):
    """An answer that does not have the guard's format (a model or upstream fault)."""


def prediction(
    label: str, classes: Sequence[str], scores: Sequence[float] | None
) -> dict[str, Any]:
    item: dict[str, Any] = {"label": label}
    if scores is not None:
        item["scores"] = dict(zip(classes, scores, strict=True))
    return item


def harden(document: Any, rules: ScopeOutput) -> dict[str, Any]:
    """A new answer that carries only what `rules` allow; BadAnswer if `document` is not one."""
    if not isinstance(document, dict) or not isinstance(document.get("predictions"), list):
        raise BadAnswer("no predictions list")
    out = []
    for item in document["predictions"]:
        if not isinstance(item, dict) or not isinstance(item.get("label"), (str, int, float)):
            raise BadAnswer("a prediction without a label")
        label = item["label"]
        hardened: dict[str, Any] = {"label": label if isinstance(label, str) else str(label)}
        scores = item.get("scores")
        if rules.scores and scores is not None:
            if not isinstance(scores, dict) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in scores.values()
            ):
                raise BadAnswer("scores are not a mapping of class to number")
            ranked = sorted(scores.items(), key=lambda kv: (-float(kv[1]), str(kv[0])))
            if rules.top_k:
                ranked = ranked[: rules.top_k]
            hardened["scores"] = {str(k): round(float(v), rules.digits) for k, v in ranked}
        out.append(hardened)
    return {"predictions": out}

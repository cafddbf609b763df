"""Membership inference: can an attacker tell the rows the model was trained on from rows it
never saw, from its answers alone?

Members (--train) and non-members (--data) are sampled to equal sizes and split in two: the
attack half is what an attacker is assumed to hold (rows of the same population, and for ART's
attack some known members), the evaluation half is what every attack is scored on, so all
attacks are compared on the same rows. Attacks:

- loss threshold: log-probability of the true label (members are fitted, so their loss is low);
- confidence threshold: the top class score;
- label only: whether the decision is right (when the model gives no scores);
- shadow models: copies of the model's training procedure (scikit-learn `clone`) trained on the
  attacker's non-member half, whose outputs on their own members and non-members train a
  logistic-regression attack model on (log p(true), top score) — Shokri et al.'s attack;
- calibrated loss (offline LiRA, Carlini et al. 2022): SHADOWS more copies, each trained on a
  random half of the attacker's rows, none of them on the rows scored; a row's score is how far
  the model's logit of the true label lies above what models that never saw the row give it
  (z-score against the shadows' mean and spread). A row that is easy for every model no longer
  looks like a member, which is what lifts the true-positive rate at low false-positive rates;
- ART's MembershipInferenceBlackBox (when adversarial-robustness-toolbox is installed), trained
  on the target's outputs for the attack half.

Each attack reports ROC AUC and the true-positive rate at 0.1% and 1% false-positive rate (the
rate that matters: identifying a few members with near certainty), with the ROC curve. Rows
the model refuses (an input contract's 4xx, an exception; see refusals.py) are left out and
counted (`refused_queries`); with fewer than MIN_ANSWERED members or non-members answered the
attack is reported as not run."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

from bastion.config import ProbeSettings
from bastion.findings import Confidence, Finding, Location, Severity, Skip, Stage
from bastion.probe.model import EstimatorModel, Model, Output
from bastion.probe.refusals import Refusals
from bastion.rules import Rule

if TYPE_CHECKING:
    import numpy
    import pandas

MAX_ROWS = 2000  # members (and as many non-members) sampled
SHADOWS = 8  # shadow copies for the calibrated-loss attack
ROC_POINTS = 60  # points of each ROC curve kept for the report
MIN_ANSWERED = 10  # answered members (and non-members) below which no attack is scored

MEMBERSHIP = Rule(
    id="PRB010",
    title="Training-set membership can be inferred from the model's answers",
    severity=Severity.HIGH,
    confidence=Confidence.MEDIUM,
    stage=Stage.TESTING,
    profile="membership-inference",
    description="A membership-inference attack tells rows the model was trained on from rows it "
    "never saw better than the policy allows (ROC AUC above [probe] max_membership_auc). Whoever "
    "can query the model learns whether a person's record was in the training data — for a "
    "credit or health model, a fact about that person — and the model has memorised its "
    "training rows.",
    remediation="Regularise (shallower trees, fewer boosting rounds, weight decay, early "
    "stopping), train on more data, or train with differential privacy; return labels or "
    "rounded scores instead of full probabilities (the guard's output hardening). Probe again "
    "and compare the AUC and TPR at low FPR.",
)
RULES = (MEMBERSHIP,)


class MembershipResult(NamedTuple):
    metrics: dict[str, Any]
    findings: list[Finding]
    skips: list[Skip]


def roc_summary(member_scores: numpy.ndarray, other_scores: numpy.ndarray) -> dict[str, Any]:
    """AUC, TPR at 0.1% and 1% FPR (the best TPR whose FPR does not exceed it), and the curve."""
    import numpy as np
    from sklearn.metrics import roc_auc_score, roc_curve

    truth = np.r_[np.ones(len(member_scores)), np.zeros(len(other_scores))]
    scores = np.r_[member_scores, other_scores]
    fpr, tpr, _ = roc_curve(truth, scores)
    keep = np.unique(np.linspace(0, len(fpr) - 1, min(ROC_POINTS, len(fpr))).astype(int))

    def tpr_at(rate: float) -> float:
        ok = fpr <= rate + 1e-12
        return float(tpr[ok].max()) if ok.any() else 0.0

    return {
        "auc": round(float(roc_auc_score(truth, scores)), 6),
        "tpr_at_0.1%_fpr": round(tpr_at(0.001), 6),
        "tpr_at_1%_fpr": round(tpr_at(0.01), 6),
        "roc": [[round(float(fpr[i]), 5), round(float(tpr[i]), 5)] for i in keep],
    }


def _features(scores: numpy.ndarray, truth_index: numpy.ndarray) -> numpy.ndarray:
    """Per row: log p(true label) and the top score."""
    import numpy as np

    true_p = scores[np.arange(len(scores)), truth_index]
    return np.column_stack([np.log(np.clip(true_p, 1e-12, 1.0)), scores.max(axis=1)])


def _kept(out: Output, answered: numpy.ndarray) -> Output:
    """The answered rows of `out`."""
    scores = out.scores[answered] if out.scores is not None else None
    return Output(out.labels[answered], scores)


def _indices(model: Model, labels: numpy.ndarray) -> numpy.ndarray:
    import numpy as np

    return np.array([model.class_index(str(v)) for v in labels])


def _shadow(
    model: EstimatorModel,
    pool: pandas.DataFrame,
    pool_truth: numpy.ndarray,
    seed: int,
) -> Any:
    """An attack model trained on shadow copies' outputs, or None when the model's training
    procedure cannot be copied."""
    import numpy as np
    from sklearn.base import clone
    from sklearn.linear_model import LogisticRegression

    try:
        template = clone(model.estimator)
    except Exception:  # not a scikit-learn estimator: no training procedure to copy
        return None
    rng = np.random.default_rng(seed)
    x_rows, y_rows = [], []
    order = rng.permutation(len(pool))
    halves = np.array_split(order, 2)
    for inside, outside in ((halves[0], halves[1]), (halves[1], halves[0])):
        shadow = clone(template).fit(pool.iloc[inside], pool_truth[inside])
        classes = [str(c) for c in shadow.classes_]
        for part, member in ((inside, 1), (outside, 0)):
            scores = np.asarray(shadow.predict_proba(pool.iloc[part]), dtype=float)
            index = np.array([classes.index(str(v)) for v in pool_truth[part]])
            x_rows.append(_features(scores, index))
            y_rows.append(np.full(len(part), member))
    attack = LogisticRegression().fit(np.vstack(x_rows), np.concatenate(y_rows))
    return attack


def _logit(p: numpy.ndarray) -> numpy.ndarray:
    import numpy as np

    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.asarray(np.log(p) - np.log1p(-p))


def _calibrated(
    model: EstimatorModel,
    pool: pandas.DataFrame,
    pool_truth: numpy.ndarray,
    scored: list[tuple[pandas.DataFrame, numpy.ndarray, numpy.ndarray]],
    seed: int,
) -> list[numpy.ndarray] | None:
    """Offline LiRA: per scored (rows, true-label index, target p(true)) set, the z-score of
    the target's logit against SHADOWS copies that never saw those rows; None when the training
    procedure cannot be copied."""
    import numpy as np
    from sklearn.base import clone

    try:
        template = clone(model.estimator)
    except Exception:  # not a scikit-learn estimator
        return None
    rng = np.random.default_rng(seed + 1)
    outs: list[list[numpy.ndarray]] = [[] for _ in scored]
    for _ in range(SHADOWS):
        half = rng.permutation(len(pool))[: len(pool) // 2]
        if len(set(pool_truth[half])) < 2:
            continue
        shadow = clone(template).fit(pool.iloc[half], pool_truth[half])
        classes = [str(c) for c in shadow.classes_]
        for k, (rows, truth_index, _) in enumerate(scored):
            proba = np.asarray(shadow.predict_proba(rows), dtype=float)
            wanted = [model.classes[i] for i in truth_index]
            column = np.array([classes.index(c) if c in classes else -1 for c in wanted])
            p = np.where(column >= 0, proba[np.arange(len(rows)), np.maximum(column, 0)], 0.0)
            outs[k].append(_logit(p))
    if not outs[0] or len(outs[0]) < 2:
        return None
    result = []
    for (_, _, target), shadow_logits in zip(scored, outs, strict=True):
        stack = np.vstack(shadow_logits)
        spread = stack.std(axis=0) + 0.5  # a floor: a few shadows under-estimate the spread
        result.append((_logit(target) - stack.mean(axis=0)) / spread)
    return result


def _art_attack(
    classes: int,
    train_pred: tuple[numpy.ndarray, numpy.ndarray],
    train_y: tuple[numpy.ndarray, numpy.ndarray],
    eval_pred: tuple[numpy.ndarray, numpy.ndarray],
    eval_y: tuple[numpy.ndarray, numpy.ndarray],
) -> tuple[numpy.ndarray, numpy.ndarray]:
    """ART's black-box attack on the target's predictions (members, non-members)."""
    import numpy as np
    from art.attacks.inference.membership_inference import MembershipInferenceBlackBox
    from art.estimators.classification import BlackBoxClassifier

    def unused(x: numpy.ndarray) -> numpy.ndarray:  # predictions are handed over below
        raise RuntimeError("not queried")

    estimator = BlackBoxClassifier(unused, (1,), classes)
    attack = MembershipInferenceBlackBox(estimator, input_type="prediction", attack_model_type="rf")
    onehot = np.eye(classes)

    def placeholder(n: int) -> numpy.ndarray:  # ART wants x even when handed predictions
        return np.zeros((n, 1))

    attack.fit(
        x=placeholder(len(train_pred[0])),
        y=onehot[train_y[0]],
        test_x=placeholder(len(train_pred[1])),
        test_y=onehot[train_y[1]],
        pred=train_pred[0],
        test_pred=train_pred[1],
    )
    out = []
    for pred, y in zip(eval_pred, eval_y, strict=True):
        probs = attack.infer(placeholder(len(pred)), onehot[y], pred=pred, probabilities=True)
        probs = np.asarray(probs, dtype=float)
        out.append(probs[:, 1] if probs.ndim == 2 and probs.shape[1] > 1 else probs.reshape(-1))
    return out[0], out[1]


def run_membership(
    model: Model,
    members: pandas.DataFrame,
    member_truth: numpy.ndarray,
    others: pandas.DataFrame,
    other_truth: numpy.ndarray,
    options: ProbeSettings,
    location: Location,
) -> MembershipResult:
    import numpy as np

    rng = np.random.default_rng(options.seed)
    n = min(len(members), len(others), MAX_ROWS)
    pick_m = rng.permutation(len(members))[:n]
    pick_o = rng.permutation(len(others))[:n]
    half = n // 2
    m_attack, m_eval = pick_m[:half], pick_m[half:]
    o_attack, o_eval = pick_o[:half], pick_o[half:]
    where = location.model_copy(update={"pointer": "membership"})
    asked = Refusals(model, "membership", location)
    # rows the model refuses are left out: every attack is scored on the rows answered
    out_m, kept = asked.ask(members.iloc[m_eval])
    out_m, m_eval = _kept(out_m, kept), m_eval[kept]
    out_o, kept = asked.ask(others.iloc[o_eval])
    out_o, o_eval = _kept(out_o, kept), o_eval[kept]
    if min(len(m_eval), len(o_eval)) < MIN_ANSWERED:
        gap: dict[str, Any] = {
            "run": False,
            "members": len(m_eval),
            "non_members": len(o_eval),
            "refused_queries": asked.refused,
        }
        return MembershipResult(
            gap,
            [],
            [
                asked.not_run(
                    f"the model answered {len(m_eval)} member and {len(o_eval)} non-member "
                    f"row(s) of those sampled; at least {MIN_ANSWERED} of each are needed"
                )
            ],
        )
    truth_m, truth_o = member_truth[m_eval], other_truth[o_eval]
    attacks: dict[str, dict[str, Any]] = {}
    skips: list[Skip] = []
    attacks["label_only"] = roc_summary(
        (out_m.labels == truth_m).astype(float), (out_o.labels == truth_o).astype(float)
    )
    if out_m.scores is not None and out_o.scores is not None:
        idx_m, idx_o = _indices(model, truth_m), _indices(model, truth_o)
        feat_m, feat_o = _features(out_m.scores, idx_m), _features(out_o.scores, idx_o)
        attacks["loss_threshold"] = roc_summary(feat_m[:, 0], feat_o[:, 0])
        attacks["confidence_threshold"] = roc_summary(feat_m[:, 1], feat_o[:, 1])
        shadow = None
        if isinstance(model, EstimatorModel) and len(o_attack) >= 20:
            shadow = _shadow(model, others.iloc[o_attack], other_truth[o_attack], options.seed)
        if shadow is not None:
            attacks["shadow_models"] = roc_summary(
                shadow.predict_proba(feat_m)[:, 1], shadow.predict_proba(feat_o)[:, 1]
            )
        calibrated = None
        if isinstance(model, EstimatorModel) and len(o_attack) >= 20:
            calibrated = _calibrated(
                model,
                others.iloc[o_attack],
                other_truth[o_attack],
                [
                    (members.iloc[m_eval], idx_m, out_m.scores[np.arange(len(idx_m)), idx_m]),
                    (others.iloc[o_eval], idx_o, out_o.scores[np.arange(len(idx_o)), idx_o]),
                ],
                options.seed,
            )
        if calibrated is not None:
            attacks["calibrated_loss"] = roc_summary(calibrated[0], calibrated[1])
        if shadow is None:
            skips.append(
                Skip(
                    location=where,
                    reason="shadow-model attack not run: the model's training procedure "
                    "cannot be copied (not a scikit-learn estimator)",
                    code="unsupported",
                )
            )
        try:
            import art  # noqa: F401
        except ImportError:
            skips.append(
                Skip(
                    location=where,
                    reason="ART's black-box membership attack not run: "
                    "adversarial-robustness-toolbox is not installed",
                    code="missing-extra",
                    extra="probe",
                )
            )
        else:
            train_m, kept_m = asked.ask(members.iloc[m_attack])
            train_o, kept_o = asked.ask(others.iloc[o_attack])
            train_m, train_o = _kept(train_m, kept_m), _kept(train_o, kept_o)
            if min(len(train_m.labels), len(train_o.labels)) < MIN_ANSWERED:
                skips.append(
                    asked.not_run(
                        f"ART's black-box attack: the model answered {len(train_m.labels)} "
                        f"member and {len(train_o.labels)} non-member row(s) of the attack "
                        f"half; at least {MIN_ANSWERED} of each are needed"
                    )
                )
            else:
                assert train_m.scores is not None and train_o.scores is not None
                art_m, art_o = _art_attack(
                    len(model.classes),
                    (train_m.scores, train_o.scores),
                    (
                        _indices(model, member_truth[m_attack][kept_m]),
                        _indices(model, other_truth[o_attack][kept_o]),
                    ),
                    (out_m.scores, out_o.scores),
                    (idx_m, idx_o),
                )
                attacks["art_black_box"] = roc_summary(art_m, art_o)
    skips.extend(asked.note("so each attack is scored on the member and non-member rows answered"))
    best = max(attacks, key=lambda name: attacks[name]["auc"])
    metrics: dict[str, Any] = {
        "members": len(m_eval),
        "non_members": len(o_eval),
        "refused_queries": asked.refused,
        "attacks": attacks,
        "best_attack": best,
        "best_auc": attacks[best]["auc"],
        "train_accuracy": round(float(np.mean(out_m.labels == truth_m)), 6),
        "test_accuracy": round(float(np.mean(out_o.labels == truth_o)), 6),
    }
    findings = []
    if attacks[best]["auc"] > options.max_membership_auc:
        findings.append(
            MEMBERSHIP.finding(
                where,
                f"the {best.replace('_', ' ')} attack tells members from non-members with ROC "
                f"AUC {attacks[best]['auc']:.3f} (policy maximum "
                f"{options.max_membership_auc:g}); TPR {attacks[best]['tpr_at_1%_fpr']:.1%} at "
                f"1% FPR; train accuracy {metrics['train_accuracy']:.1%} vs "
                f"{metrics['test_accuracy']:.1%} on unseen rows",
                evidence=f"membership_auc > max_membership_auc {options.max_membership_auc:g}",
            )
        )
    return MembershipResult(metrics, findings, skips)

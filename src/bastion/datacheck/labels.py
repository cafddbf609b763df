"""Label checks (issue #9, check 4; needs `--target`): label issues found by cleanlab on
out-of-sample predicted probabilities, and — in poisoning.py, run from here on the same rows and
probabilities — what cleanlab alone does not see: targeted label flips in one subgroup, backdoor
triggers, near-duplicates with conflicting labels and outliers that sit in another class.

The probabilities come from cross-validation (stratified folds, fixed seeds) with a model suited
to the data: logistic regression on standardised numbers and one-hot categories for small sets
(up to SMALL_ROWS rows, where a boosted model overfits its folds), scikit-learn's histogram
gradient boosting with native categorical handling above. Each fold trains on at most
TRAIN_ROWS rows (a fixed-seed sample), so the work is bounded whatever the row count; rows
beyond `label_max_rows` are sampled first (features.py) and a LBL006 note says so.

`check(dataset, options)` is the engine's entry point for every LBL rule; `analyse` returns the
findings with the per-row probabilities and suspicion scores (the benchmark uses them)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from bastion.datacheck import poisoning
from bastion.datacheck.features import LabelFrame, NotApplicable, label_frame
from bastion.findings import Confidence, Finding, Location, Severity, Stage
from bastion.rules import Rule

if TYPE_CHECKING:
    import numpy

    from bastion.datacheck.dataset import Dataset
    from bastion.datacheck.options import DataOptions

__all__ = ["RULES", "NotApplicable", "analyse", "check"]

SMALL_ROWS = 5_000  # up to this many rows the model is logistic regression
TRAIN_ROWS = 30_000  # rows one fold's model trains on at most
FOLDS = 5
SEED = 0
MIN_CLASS_ROWS = 3  # a label seen fewer times cannot be cross-validated (reported, not modelled)

LABEL_ISSUES = Rule(
    id="LBL001",
    title="Rows whose label disagrees with the rest of the data",
    severity=Severity.LOW,
    confidence=Confidence.MEDIUM,
    stage=Stage.DATA,
    profile="data-poisoning",
    description="cleanlab's confident learning, run on out-of-sample probabilities from a "
    "cross-validated model, finds rows whose given label is unlikely given their features "
    "(mislabelled rows, random label flips, or a label value seen too rarely to learn). Real "
    "data always has some; many of them, or many more than in the last approved version, is "
    "a sign of careless labelling or of poisoning.",
    remediation="Review the listed rows (the JSON report lists them all, with the suggested "
    "label); relabel or drop the wrong ones before training. Compare the count with the "
    "previous version of the dataset.",
)
PARTIAL = Rule(
    id="LBL006",
    title="Label checks ran on part of the data",
    severity=Severity.INFO,
    confidence=Confidence.HIGH,
    stage=Stage.DATA,
    profile="data-poisoning",
    description="The label and poisoning checks modelled a fixed-seed sample of the rows (more "
    "than label_max_rows), left out columns they cannot model (free text without repeated "
    "values, nested or binary data) or rows without a label, or left candidate subgroups "
    "untested within their budget of leave-out models. Poisoned rows outside the sample, a "
    "trigger hidden in a column left out, or a subgroup not tested, are not seen.",
    remediation="Raise label_max_rows in the policy's [data] table to model every row, or "
    "check the columns left out another way.",
)

RULES: tuple[Rule, ...] = (LABEL_ISSUES, PARTIAL, *poisoning.RULES)


class Analysis(NamedTuple):
    """What the label checks found, with per-row data for benchmarks and reports: `frame` (the
    modelled rows), `pred_probs` (out-of-sample probabilities), `issues` (cleanlab's boolean
    mask), `scores` (bastion's suspicion per modelled row: 1 + ... for a flagged row, else the
    1 - probability of its label under the best out-of-sample model bastion has for it)."""

    findings: list[Finding]
    frame: LabelFrame
    pred_probs: numpy.ndarray
    issues: numpy.ndarray
    scores: numpy.ndarray


def check(dataset: Dataset, options: DataOptions) -> list[Finding]:
    """Every LBL finding for `dataset`. Raises NotApplicable (a Skip for the engine) without a
    target or with a single-class target, UsageError for a target column that does not exist."""
    return analyse(dataset, options).findings


def analyse(dataset: Dataset, options: DataOptions) -> Analysis:
    import numpy as np

    frame = label_frame(dataset, options)
    findings: list[Finding] = []
    location = Location(path=dataset.name, pointer=f"column:{options.target}")
    frame, rare = _without_rare_labels(frame)
    if rare is not None:
        findings.append(_rare_label_finding(frame, rare, location))
    if frame.numeric.shape[1] + frame.categorical.shape[1] == 0:
        raise NotApplicable("no column the label checks can model besides the target")
    learner = Learner(frame)
    pred_probs = learner.out_of_sample()
    issues = cleanlab_issues(frame.labels, pred_probs)
    if issues.any():
        findings.append(_issues_finding(frame, pred_probs, issues, location))
    result = poisoning.detect(frame, learner, pred_probs, options, location)
    findings.extend(result.findings)
    notes = _coverage_notes(frame, rare)
    if result.untested:
        notes.append(
            f"{result.untested:,} candidate subgroups not tested (leave-out model budget; "
            "values, pairs and places take turns, the least likely labels first)"
        )
    if notes:
        findings.append(
            _rows_finding(
                PARTIAL,
                location,
                "label checks ran on part of the data: " + "; ".join(notes),
                evidence="; ".join(notes),
                rows=(),
                ids=(),
            )
        )
    flagged = issues | result.flagged
    self_confidence = result.probabilities[np.arange(len(frame.labels)), frame.labels]
    scores = flagged.astype(float) + (1.0 - self_confidence)
    return Analysis(findings, frame, pred_probs, issues, scores)


def cleanlab_issues(labels: numpy.ndarray, pred_probs: numpy.ndarray) -> numpy.ndarray:
    """cleanlab's find_label_issues (prune by noise rate) as a boolean mask."""
    import numpy as np
    from cleanlab.filter import find_label_issues

    mask = find_label_issues(labels, pred_probs, filter_by="prune_by_noise_rate", n_jobs=1)
    return np.asarray(mask, dtype=bool)


class Learner:
    """The model family for one LabelFrame: builds its design matrix once, fits on given rows
    (at most TRAIN_ROWS, a fixed-seed sample) and predicts probabilities for all classes, with
    chosen columns masked (treated as missing) when asked."""

    def __init__(self, frame: LabelFrame, kind: str | None = None) -> None:
        self.frame = frame
        self.n_classes = len(frame.classes)
        if kind is None:
            kind = "logistic" if len(frame.labels) <= SMALL_ROWS else "boosting"
        self.kind = kind
        self._oof: numpy.ndarray | None = None
        self._build()

    def _build(self) -> None:
        import numpy as np

        frame = self.frame
        numeric = frame.numeric
        if self.kind == "boosting":
            cats = frame.categorical.astype(np.float64)
            cats[cats < 0] = np.nan
            self.matrix: Any = np.hstack([numeric, cats])
            self._slots = {
                name: [i] for i, name in enumerate(frame.numeric_names + frame.categorical_names)
            }
            return
        import scipy.sparse as sp

        blocks: list[Any] = []
        slots: dict[str, list[int]] = {}
        width = 0
        if numeric.shape[1]:
            scaled, extra, extra_of = standardise(numeric)
            blocks.append(sp.csr_matrix(scaled))
            for i, name in enumerate(frame.numeric_names):
                slots[name] = [i]
            width = scaled.shape[1]
            if extra.shape[1]:
                blocks.append(sp.csr_matrix(extra))
                for j, column in enumerate(extra_of):
                    slots[frame.numeric_names[column]].append(width + j)
                width += extra.shape[1]
        for column, name in enumerate(frame.categorical_names):
            onehot = one_hot(frame.categorical[:, column], len(frame.levels[column]))
            blocks.append(onehot)
            slots[name] = list(range(width, width + onehot.shape[1]))
            width += onehot.shape[1]
        self.matrix = sp.hstack(blocks, format="csr")
        self._slots = slots

    def _model(self) -> Any:
        if self.kind == "boosting":
            from sklearn.ensemble import HistGradientBoostingClassifier

            n_numeric = self.frame.numeric.shape[1]
            mask = [False] * n_numeric + [True] * self.frame.categorical.shape[1]
            return HistGradientBoostingClassifier(
                categorical_features=mask if any(mask) else None,
                max_iter=150,
                learning_rate=0.1,
                max_leaf_nodes=31,
                l2_regularization=1.0,
                early_stopping=True,
                validation_fraction=0.1,
                n_iter_no_change=10,
                random_state=SEED,
            )
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=1.0, max_iter=1000)

    def fit(self, train: numpy.ndarray) -> Any:
        import numpy as np

        train = np.sort(train)
        if len(train) > TRAIN_ROWS:
            train = _stratified_sample(self.frame.labels[train], train, TRAIN_ROWS)
        model = self._model()
        labels = self.frame.labels[train]
        if len(np.unique(labels)) < 2:
            return _Constant(int(labels[0]) if len(labels) else 0)
        model.fit(self.matrix[train], labels)
        return model

    def predict(self, model: Any, rows: numpy.ndarray, masked: Sequence[str] = ()) -> numpy.ndarray:
        """Probabilities of every class (columns 0..K-1) for the rows at these positions."""
        import numpy as np

        out = np.zeros((len(rows), self.n_classes))
        if not len(rows):
            return out
        if isinstance(model, _Constant):
            out[:, model.label] = 1.0
            return out
        matrix = self.matrix[rows]
        if masked:
            slots = [i for name in masked for i in self._slots.get(name, [])]
            if self.kind == "boosting":
                matrix = np.array(matrix, copy=True)
                matrix[:, slots] = np.nan
            else:
                matrix = matrix.tolil(copy=True)
                matrix[:, slots] = 0.0
                matrix = matrix.tocsr()
        probs = model.predict_proba(matrix)
        out[:, np.asarray(model.classes_, dtype=np.int64)] = probs
        return out

    def out_of_sample(self) -> numpy.ndarray:
        """Out-of-sample probabilities for every row by stratified K-fold cross-validation."""
        import numpy as np
        from sklearn.model_selection import StratifiedKFold

        if self._oof is not None:
            return self._oof
        labels = self.frame.labels
        folds = max(2, min(FOLDS, int(np.bincount(labels).min())))
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=SEED)
        out = np.zeros((len(labels), self.n_classes))
        for train, test in splitter.split(np.zeros(len(labels)), labels):
            out[test] = self.predict(self.fit(train), test)
        self._oof = out
        return out

    def linear_out_of_sample(self) -> numpy.ndarray:
        """Out-of-sample probabilities of logistic regression (the same as out_of_sample for
        small sets): a model that cannot carve out a small region of feature space."""
        if self.kind == "logistic":
            return self.out_of_sample()
        return Learner(self.frame, kind="logistic").out_of_sample()


class _Constant(NamedTuple):
    label: int


def standardise(
    numeric: numpy.ndarray,
) -> tuple[numpy.ndarray, numpy.ndarray, list[int]]:
    """(numbers standardised with missing values at the median, missing-value indicators, the
    column each indicator belongs to). Constant columns become zeros."""
    import numpy as np

    values = np.array(numeric, dtype=np.float64, copy=True)
    missing = np.isnan(values)
    empty = missing.all(axis=0)
    median = np.zeros(values.shape[1])
    if (~empty).any():
        median[~empty] = np.nanmedian(values[:, ~empty], axis=0)
    values[missing] = np.take(median, np.nonzero(missing)[1])
    centre = values.mean(axis=0)
    scale = values.std(axis=0)
    scale[~(scale > 0)] = 1.0
    scaled = (values - centre) / scale
    scaled = np.clip(scaled, -50.0, 50.0)
    with_missing = [i for i in range(values.shape[1]) if missing[:, i].any()]
    extra = missing[:, with_missing].astype(np.float64)
    return scaled, extra, with_missing


def one_hot(codes: numpy.ndarray, n_levels: int) -> Any:
    """Sparse one-hot of level codes (-1, missing, is its own column)."""
    import numpy as np
    import scipy.sparse as sp

    columns = np.where(codes < 0, n_levels, codes)
    rows = np.arange(len(codes))
    return sp.csr_matrix((np.ones(len(codes)), (rows, columns)), shape=(len(codes), n_levels + 1))


def _stratified_sample(labels: numpy.ndarray, rows: numpy.ndarray, size: int) -> numpy.ndarray:
    import numpy as np

    rng = np.random.default_rng(SEED)
    picked: list[numpy.ndarray] = []
    for label in np.unique(labels):
        members = rows[labels == label]
        share = max(1, round(size * len(members) / len(rows)))
        picked.append(rng.choice(members, size=min(share, len(members)), replace=False))
    return np.sort(np.concatenate(picked))


def _without_rare_labels(frame: LabelFrame) -> tuple[LabelFrame, LabelFrame | None]:
    """(the frame without rows of labels seen fewer than MIN_CLASS_ROWS times, those rows as a
    frame of their own or None)."""
    import numpy as np

    counts = np.bincount(frame.labels, minlength=len(frame.classes))
    rare = counts < MIN_CLASS_ROWS
    if not rare.any():
        return frame, None
    keep = ~rare[frame.labels]
    kept_classes = [c for c, r in zip(frame.classes, rare, strict=True) if not r]
    if len(kept_classes) < 2:
        raise NotApplicable(
            "the target has fewer than two labels seen at least "
            f"{MIN_CLASS_ROWS} times: label checks need two"
        )
    remap = np.cumsum(~rare) - 1
    return _subset(frame, keep, tuple(kept_classes), remap), _subset(
        frame, ~keep, frame.classes, np.arange(len(frame.classes))
    )


def _subset(
    frame: LabelFrame,
    keep: numpy.ndarray,
    classes: tuple[str, ...],
    remap: numpy.ndarray,
) -> LabelFrame:
    import numpy as np

    positions = np.flatnonzero(keep)
    return frame._replace(
        rows=frame.rows[positions],
        labels=remap[frame.labels[positions]],
        classes=classes,
        numeric=frame.numeric[positions],
        categorical=frame.categorical[positions],
        row_ids=None if frame.row_ids is None else frame.ids(positions),
    )


def _coverage_notes(frame: LabelFrame, rare: LabelFrame | None) -> list[str]:
    notes = []
    modelled = len(frame.rows) + (0 if rare is None else len(rare.rows))
    if modelled + frame.missing_target < frame.total_rows:
        notes.append(
            f"a fixed-seed sample of {modelled:,} of {frame.total_rows:,} rows (label_max_rows)"
        )
    if frame.missing_target:
        notes.append(f"{frame.missing_target:,} rows without a label left out")
    if frame.excluded:
        shown = ", ".join(f"{_text(name)} ({why})" for name, why in frame.excluded[:5])
        more = len(frame.excluded) - 5
        notes.append("columns not modelled: " + shown + (f" and {more} more" if more > 0 else ""))
    return notes


def _issues_finding(
    frame: LabelFrame,
    pred_probs: numpy.ndarray,
    issues: numpy.ndarray,
    location: Location,
) -> Finding:
    import numpy as np

    positions = np.flatnonzero(issues)
    given = frame.labels[positions]
    suggested = pred_probs[positions].argmax(axis=1)
    pairs: dict[tuple[int, int], int] = {}
    for g, s in zip(given.tolist(), suggested.tolist(), strict=True):
        pairs[(g, s)] = pairs.get((g, s), 0) + 1
    top = sorted(pairs.items(), key=lambda item: (-item[1], item[0]))[:4]
    shown = ", ".join(
        f"{count} labelled {_text(frame.classes[g])!r} look {_text(frame.classes[s])!r}"
        for (g, s), count in top
    )
    share = len(positions) / len(frame.labels)
    confidence = pred_probs[positions, given]
    evidence = (
        f"{len(positions)} of {len(frame.labels)} rows ({share:.1%}); {shown}; "
        f"median probability of the given label {float(np.median(confidence)):.2f}"
    )
    return _rows_finding(
        LABEL_ISSUES,
        location,
        f"{len(positions)} rows ({share:.1%}) have a label that a cross-validated model finds "
        "unlikely (cleanlab confident learning)",
        evidence,
        rows=tuple(int(r) for r in frame.rows[positions]),
        ids=frame.ids(positions),
    )


def _rare_label_finding(frame: LabelFrame, rare: LabelFrame, location: Location) -> Finding:
    values = sorted({rare.classes[c] for c in rare.labels.tolist()})
    shown = ", ".join(repr(_text(v)) for v in values[:5])
    return _rows_finding(
        LABEL_ISSUES,
        location,
        f"{len(rare.rows)} rows carry a label seen fewer than {MIN_CLASS_ROWS} times "
        f"({shown}): a typo or a planted class; not modelled",
        f"rare labels: {shown}; {len(rare.rows)} rows",
        rows=tuple(int(r) for r in rare.rows),
        ids=() if rare.row_ids is None else rare.row_ids,
    )


def _rows_finding(
    rule: Rule,
    location: Location,
    message: str,
    evidence: str,
    rows: tuple[int, ...],
    ids: tuple[str, ...],
    severity: Severity | None = None,
    confidence: Confidence | None = None,
) -> Finding:
    finding = rule.finding(location, message, evidence, severity=severity, confidence=confidence)
    order = sorted(range(len(rows)), key=lambda i: rows[i])
    return finding.model_copy(
        update={
            "rows": tuple(rows[i] for i in order),
            "row_ids": tuple(ids[i] for i in order) if ids else (),
        }
    )


def _text(value: str, limit: int = 40) -> str:
    """A value from the data, shortened for evidence (reports escape it for their medium)."""
    value = str(value)
    return value if len(value) <= limit else value[: limit - 1] + "…"

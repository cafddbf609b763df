"""Drift between two versions of a dataset, per feature, as a tampering/poisoning signal.

A new version of an approved dataset should look like the old one, feature by feature. A
feature whose distribution moved is what a poisoning campaign, an injected batch of rows or a
swapped source leaves behind (as well as honest change, which a reviewer should then confirm).

Each version is read once, batch by batch: numbers (and dates) are kept as a uniform sample of
at most `options.drift_sample_rows` rows (datacheck/sample.py; exact when the version is
smaller), categories are counted exactly up to `options.drift_max_categories` distinct values,
and missing values are counted exactly. Then, per feature:

- numbers: the population stability index (PSI) over the old version's deciles and the
  two-sample Kolmogorov–Smirnov test (scipy) — DRF001 when PSI >= `options.drift_psi` or the KS
  statistic >= `options.drift_ks`, and the KS test is significant (p < `options.drift_p_value`:
  PSI alone is noise on small versions);
- categories: PSI over the categories and the chi-square test of the 2×k table (scipy) — DRF002
  when PSI >= `options.drift_psi`, or one category's share moved by at least `options.drift_ks`
  (the categorical counterpart of the KS statistic), with p < `options.drift_p_value`;
- missing values: DRF003 when the share of missing values moved by at least
  MISSING_SHARE_CHANGE with p < `options.drift_p_value`;
- the label column (`options.target`): DRF004, high, for either test — a moved label
  distribution between versions is the most direct trace of flipped labels.

Drifted features are ranked by PSI (the largest change first); the rank is in each message.
The tests need both versions to be large enough to mean anything: with very few rows, nothing
is significant and nothing is reported."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bastion.datacheck.sample import Sampler
from bastion.findings import Confidence, Finding, Location, Severity, Stage
from bastion.records import Record
from bastion.rules import Rule

if TYPE_CHECKING:
    import numpy
    import pandas
    import pyarrow

    from bastion.datacheck.dataset import Dataset
    from bastion.datacheck.options import DataOptions

PSI_BINS = 10
PSI_FLOOR = 1e-4  # share given to an empty bin so the PSI stays finite
MISSING_SHARE_CHANGE = 0.05


_REMEDIATION = (
    "Find out why the feature changed between the versions: a new source, a pipeline change, "
    "or rows injected or altered by someone. Compare the rows that make the difference "
    "(`bastion data diff`) and approve the new version only once the change is explained."
)


DRF001 = Rule(
    id="DRF001",
    title="Numeric feature distribution changed",
    severity=Severity.MEDIUM,
    confidence=Confidence.MEDIUM,
    stage=Stage.DATA,
    description="The distribution of a numeric feature differs between the old and the new "
    "version of the dataset (population stability index, Kolmogorov–Smirnov test). Poisoned or "
    "injected rows shift distributions; so does a silently changed source.",
    remediation=_REMEDIATION,
    profile="data-drift",
)
DRF002 = Rule(
    id="DRF002",
    title="Categorical feature distribution changed",
    severity=Severity.MEDIUM,
    confidence=Confidence.MEDIUM,
    stage=Stage.DATA,
    description="The shares of a categorical feature's values differ between the old and the "
    "new version (population stability index, chi-square test), or new categories appeared.",
    remediation=_REMEDIATION,
    profile="data-drift",
)
DRF003 = Rule(
    id="DRF003",
    title="Share of missing values changed",
    severity=Severity.MEDIUM,
    confidence=Confidence.MEDIUM,
    stage=Stage.DATA,
    description="A feature is missing much more (or less) often in the new version than in the "
    "old one: a broken join or extraction, or values removed on purpose.",
    remediation=_REMEDIATION,
    profile="data-drift",
)
DRF004 = Rule(
    id="DRF004",
    title="Label distribution changed",
    severity=Severity.HIGH,
    confidence=Confidence.MEDIUM,
    stage=Stage.DATA,
    description="The distribution of the label column differs between versions. Between two "
    "versions of a training set this is the most direct trace of flipped or injected labels.",
    remediation=_REMEDIATION,
    profile="data-drift",
)
RULES: tuple[Rule, ...] = (DRF001, DRF002, DRF003, DRF004)


class _Sketch:
    """What one pass over a version keeps: a row sample of the numeric columns, category counts,
    missing-value counts."""

    def __init__(self, numeric: list[str], categorical: list[str], options: DataOptions) -> None:
        self.numeric = numeric
        self.categorical = categorical
        self.cap = options.drift_max_categories
        self.sampler = Sampler(options.drift_sample_rows)
        self.counts: dict[str, dict[Any, int] | None] = {c: {} for c in categorical}
        self.missing: dict[str, int] = dict.fromkeys(numeric + categorical, 0)
        self.rows = 0
        self._sample: pandas.DataFrame | None = None

    def read(self, dataset: Dataset) -> _Sketch:
        import pyarrow.compute as pc

        columns = self.numeric + self.categorical
        for start, batch in dataset.batches(columns):
            self.rows += batch.num_rows
            for name in columns:
                self.missing[name] += batch.column(name).null_count
            if self.numeric:
                self.sampler.add(start, batch.select(self.numeric))
            for name in self.categorical:
                counts = self.counts[name]
                if counts is None:
                    continue
                column = batch.column(name)
                for item in pc.value_counts(column.drop_null()).to_pylist():
                    key = item["values"]
                    counts[key] = counts.get(key, 0) + int(item["counts"])
                if len(counts) > self.cap:
                    self.counts[name] = None  # free text: not compared
        return self

    def numbers(self, name: str) -> numpy.ndarray:
        import numpy as np

        if self._sample is None:
            self._sample = self.sampler.frame(self.numeric)
        values = _as_numbers(self._sample[name])
        return np.asarray(values[np.isfinite(values)])


def _as_numbers(series: pandas.Series) -> numpy.ndarray:
    import numpy as np
    import pandas as pd

    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        values = series.astype("int64").astype("float64").where(series.notna())
        return np.asarray(values.to_numpy(dtype="float64", na_value=np.nan))
    return np.asarray(series.to_numpy(dtype="float64", na_value=np.nan))


def _kinds(old: Dataset, new: Dataset, options: DataOptions) -> tuple[list[str], list[str]]:
    """(numeric columns, categorical columns) both versions have with the same kind."""
    import pyarrow as pa

    def kind(arrow_type: pyarrow.DataType) -> str | None:
        if pa.types.is_dictionary(arrow_type):
            return kind(arrow_type.value_type)
        if pa.types.is_boolean(arrow_type):
            return "categorical"
        if (
            pa.types.is_integer(arrow_type)
            or pa.types.is_floating(arrow_type)
            or pa.types.is_timestamp(arrow_type)
            or pa.types.is_date(arrow_type)
        ):
            return "numeric"
        if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
            return "categorical"
        return None

    numeric: list[str] = []
    categorical: list[str] = []
    new_types = {f.name: f.type for f in new.schema}
    for field in old.schema:
        if field.name == options.id_column or field.name not in new_types:
            continue
        before, after = kind(field.type), kind(new_types[field.name])
        if field.name == options.target and before == after == "numeric":
            integral = pa.types.is_integer(field.type) and pa.types.is_integer(
                new_types[field.name]
            )
            if integral:  # class labels stored as integers are categories
                before = after = "categorical"
        if before is None or before != after:
            continue
        (numeric if before == "numeric" else categorical).append(field.name)
    return numeric, categorical


class _Drift(Record):
    column: str
    rule: Rule
    psi: float
    detail: str


def psi(expected: numpy.ndarray, actual: numpy.ndarray) -> float:
    """Population stability index of two vectors of counts over the same bins."""
    import numpy as np

    p = expected / max(expected.sum(), 1)
    q = actual / max(actual.sum(), 1)
    p = np.maximum(p, PSI_FLOOR)
    q = np.maximum(q, PSI_FLOOR)
    return float(np.sum((q - p) * np.log(q / p)))


def _numeric(name: str, a: numpy.ndarray, b: numpy.ndarray, options: DataOptions) -> _Drift | None:
    import numpy as np
    from scipy.stats import ks_2samp

    if len(a) < 2 or len(b) < 2:
        return None
    edges = np.unique(np.quantile(a, np.linspace(0, 1, PSI_BINS + 1)[1:-1]))
    bins = np.concatenate([[-np.inf], edges, [np.inf]])
    # a value equal to an edge falls in the upper bin, the same way in both versions
    expected = np.histogram(a, bins)[0].astype("float64")
    actual = np.histogram(b, bins)[0].astype("float64")
    index = psi(expected, actual)
    result = ks_2samp(a, b)
    statistic, p_value = float(result.statistic), float(result.pvalue)
    drifted = p_value < options.drift_p_value and (
        index >= options.drift_psi or statistic >= options.drift_ks
    )
    if not drifted:
        return None
    rule = DRF004 if name == options.target else DRF001
    detail = (
        f"PSI {index:.3f}; KS statistic {statistic:.3f} (p {p_value:.2g}); "
        f"median {_number(np.median(a))} -> {_number(np.median(b))}; "
        f"{len(a):,} vs {len(b):,} values compared"
    )
    return _Drift(column=name, rule=rule, psi=index, detail=detail)


def _number(value: float) -> str:
    return f"{value:.4g}"


def _categorical(
    name: str, before: dict[Any, int], after: dict[Any, int], options: DataOptions
) -> _Drift | None:
    import numpy as np
    from scipy.stats import chi2_contingency

    keys = sorted(set(before) | set(after), key=str)
    if len(keys) < 2:
        return None
    expected = np.array([before.get(k, 0) for k in keys], dtype="float64")
    actual = np.array([after.get(k, 0) for k in keys], dtype="float64")
    if expected.sum() == 0 or actual.sum() == 0:
        return None
    index = psi(expected, actual)
    table = np.vstack([expected, actual])
    table = table[:, table.sum(axis=0) > 0]
    p_value = float(chi2_contingency(table)[1])
    moved = float(np.max(np.abs(actual / actual.sum() - expected / expected.sum())))
    if p_value >= options.drift_p_value or (index < options.drift_psi and moved < options.drift_ks):
        return None
    new_keys = sum(1 for k in keys if before.get(k, 0) == 0)
    rule = DRF004 if name == options.target else DRF002
    detail = (
        f"PSI {index:.3f}; chi-square p {p_value:.2g}; largest share change {moved:.3f}; "
        f"{len(keys)} categories" + (f", {new_keys} not in the old version" if new_keys else "")
    )
    return _Drift(column=name, rule=rule, psi=index, detail=detail)


def _missing(
    name: str, old: _Sketch, new: _Sketch, options: DataOptions
) -> tuple[float, float, float] | None:
    """(old share, new share, p) when the share of missing values moved enough."""
    import numpy as np
    from scipy.stats import chi2_contingency

    a, b = old.missing[name], new.missing[name]
    share_a, share_b = a / max(old.rows, 1), b / max(new.rows, 1)
    if abs(share_b - share_a) < MISSING_SHARE_CHANGE or a + b == 0:
        return None
    table = np.array([[a, old.rows - a], [b, new.rows - b]], dtype="float64")
    p_value = float(chi2_contingency(table)[1])
    if p_value >= options.drift_p_value:
        return None
    return share_a, share_b, p_value


def check_pair(old: Dataset, new: Dataset, options: DataOptions) -> list[Finding]:
    """DRF findings for the features of `new` whose distribution moved away from `old`."""
    numeric, categorical = _kinds(old, new, options)
    if not numeric and not categorical:
        return []
    before = _Sketch(numeric, categorical, options).read(old)
    after = _Sketch(numeric, categorical, options).read(new)
    drifts: list[_Drift] = []
    for name in numeric:
        found = _numeric(name, before.numbers(name), after.numbers(name), options)
        if found:
            drifts.append(found)
    for name in categorical:
        counts_before, counts_after = before.counts[name], after.counts[name]
        if counts_before is None or counts_after is None:
            continue
        found = _categorical(name, counts_before, counts_after, options)
        if found:
            drifts.append(found)
    drifts.sort(key=lambda d: (-d.psi, d.column))
    findings = []
    for rank, drift in enumerate(drifts, start=1):
        findings.append(
            drift.rule.finding(
                Location(path=new.name, pointer=f"column:{drift.column}"),
                f"feature {drift.column!r} drifted from {old.name} (rank {rank} of "
                f"{len(drifts)} by PSI): {drift.detail}",
                evidence=drift.detail,
            )
        )
    for name in numeric + categorical:
        moved = _missing(name, before, after, options)
        if moved is None:
            continue
        share_a, share_b, p_value = moved
        detail = f"missing {share_a:.1%} -> {share_b:.1%} (chi-square p {p_value:.2g})"
        findings.append(
            DRF003.finding(
                Location(path=new.name, pointer=f"column:{name}"),
                f"feature {name!r}: share of missing values changed from {old.name}: {detail}",
                evidence=detail,
            )
        )
    return findings

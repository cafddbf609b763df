"""Leakage between train/validation/test splits.

What an evaluation split must not share with the data a model learns from:

- LEK001 the same rows (all feature columns equal), LEK002 nearly the same rows (equal once
  numbers are rounded to `options.near_duplicate_digits` significant digits and text is
  normalised: Unicode NFKC, case-folded, punctuation and runs of spaces collapsed);
- LEK003 the same identifiers (`options.id_column`);
- LEK004 a feature that predicts the label almost perfectly on its own (target leakage: the
  label, or something derived from it, stored as a feature);
- LEK005 rows older than training rows when the data has an event time (the model is evaluated
  on a past it was trained on the future of).

Rows are compared through 64-bit hashes computed batch by batch (16 bytes per row and split in
memory), so any number of rows is compared without holding the splits. The id and label columns
are left out of row comparisons: a copied row with a new id is still a copied row. Target
leakage is judged on a uniform sample of the training split (`options.leakage_sample_rows`) by
a cross-validated model of each feature alone."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from bastion.datacheck.dataset import SPLITS
from bastion.datacheck.row_ids import row_ids
from bastion.findings import Confidence, Finding, Location, Severity, Stage
from bastion.records import Record
from bastion.rules import Rule

if TYPE_CHECKING:
    import numpy
    import pandas
    import pyarrow

    from bastion.datacheck.dataset import Dataset
    from bastion.datacheck.options import DataOptions


LEK001 = Rule(
    id="LEK001",
    title="Rows shared between splits",
    severity=Severity.HIGH,
    confidence=Confidence.HIGH,
    stage=Stage.DATA,
    description="Rows of an evaluation split (validation, test, holdout) that also appear, with "
    "every feature equal, in an earlier split. The model is scored on rows it was trained on, "
    "so its measured accuracy overstates what it does on new data; planted copies of test rows "
    "in training data are also how a test set is gamed.",
    remediation="Remove the listed rows from one of the splits (deduplicate before splitting), "
    "then re-evaluate the model.",
    profile="data-leakage",
)
LEK002 = Rule(
    id="LEK002",
    title="Near-duplicate rows shared between splits",
    severity=Severity.MEDIUM,
    confidence=Confidence.MEDIUM,
    stage=Stage.DATA,
    description="Rows of an evaluation split that equal rows of an earlier split once numbers "
    "are rounded and text is normalised (case, spacing, punctuation): the same record entered "
    "twice, or a lightly perturbed copy.",
    remediation="Review the listed rows; deduplicate on normalised values before splitting.",
    profile="data-leakage",
)
LEK003 = Rule(
    id="LEK003",
    title="Identifier shared between splits",
    severity=Severity.HIGH,
    confidence=Confidence.HIGH,
    stage=Stage.DATA,
    description="Rows of an evaluation split whose identifier (the --id column) also appears in "
    "an earlier split: the same entity (customer, patient, device) is in both, so the model is "
    "evaluated on entities it has seen.",
    remediation="Split by identifier (group split) so each entity is in one split only.",
    profile="data-leakage",
)
LEK004 = Rule(
    id="LEK004",
    title="Feature predicts the label almost perfectly",
    severity=Severity.HIGH,
    confidence=Confidence.MEDIUM,
    stage=Stage.DATA,
    description="One feature on its own predicts the label almost perfectly in "
    "cross-validation: it is most likely the label, a copy or a function of it, or something "
    "recorded after the outcome (target leakage). A model trained with it looks excellent and "
    "fails in production; a planted leaking feature is also a way to poison a model.",
    remediation="Find out how the feature is produced; drop it if it is derived from the label "
    "or only known after the outcome.",
    profile="data-leakage",
)
LEK005 = Rule(
    id="LEK005",
    title="Evaluation rows older than training rows",
    severity=Severity.MEDIUM,
    confidence=Confidence.MEDIUM,
    stage=Stage.DATA,
    description="Rows of an evaluation split whose event time is earlier than the newest "
    "training row: the model was trained on the future of the rows it is evaluated on, so "
    "evaluation overstates how it will predict what comes next.",
    remediation="Split by time: train on rows before a cut-off date and evaluate on rows after it.",
    profile="data-leakage",
)
RULES: tuple[Rule, ...] = (LEK001, LEK002, LEK003, LEK004, LEK005)

# a training split repeating this share of its own rows has few distinct rows to begin with:
# matches across splits are then expected and are reported at low severity
SELF_DUPLICATION = 0.1
# time leakage: when more than this share of an evaluation split is older than the newest
# training row, the splits interleave in time (a random split) rather than a time split with
# stray rows
INTERLEAVED = 0.5
CV_FOLDS = 3
REGRESSION_MIN_DISTINCT = 20  # a numeric label with more distinct values is a regression target
_BIRTH = re.compile(r"birth|dob|born", re.IGNORECASE)


def _ordered(splits: Mapping[str, Dataset]) -> list[tuple[str, Dataset]]:
    """Training first, then validation, test and holdout, then anything else by name."""

    def key(item: tuple[str, Dataset]) -> tuple[int, str]:
        name, dataset = item
        split = dataset.split or name
        return (SPLITS.index(split) if split in SPLITS else len(SPLITS), name)

    return sorted(splits.items(), key=key)


def check_splits(splits: Mapping[str, Dataset], options: DataOptions) -> list[Finding]:
    """LEK findings for every pair of splits (each later split against each earlier one) and
    target leakage in the training split."""
    ordered = _ordered(splits)
    findings: list[Finding] = []
    if not ordered:
        return findings
    signatures = [
        _Signature.of(dataset, _features(ordered, options), options) for _, dataset in ordered
    ]
    for j in range(1, len(ordered)):
        for i in range(j):
            findings += _shared_rows(signatures[i], signatures[j], options)
    if options.id_column:
        findings += _shared_ids([d for _, d in ordered], options)
    findings += _time_leakage([d for _, d in ordered], options)
    if options.target:
        findings += target_leakage(ordered[0][1], options)
    return findings


def _features(ordered: Sequence[tuple[str, Dataset]], options: DataOptions) -> list[str]:
    """Columns every split has, less the id and label columns, in a fixed order."""
    common = set(ordered[0][1].schema.names)
    for _, dataset in ordered[1:]:
        common &= set(dataset.schema.names)
    common -= {options.id_column, options.target}
    return sorted(c for c in common if c is not None)


# --- row signatures ----------------------------------------------------------------------------


def _canonical(series: pandas.Series) -> pandas.Series:
    """A column in one representation per kind of value, so that a value hashes the same
    whatever type the reader gave its column in each split (integers read as floats where a
    split has nulls, dates as text or timestamps)."""
    import numpy as np
    import pandas as pd

    if pd.api.types.is_bool_dtype(series.dtype):
        return series.astype("float64")
    if pd.api.types.is_numeric_dtype(series.dtype):
        return series.astype("float64")
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        values = series
        if getattr(values.dt, "tz", None) is not None:
            values = values.dt.tz_convert("UTC").dt.tz_localize(None)
        return (
            values.astype("datetime64[ns]")
            .astype("int64")
            .astype("float64")
            .where(series.notna(), np.nan)
        )
    values = series.astype("object").where(series.notna(), None)
    kind = pd.api.types.infer_dtype(values, skipna=True)
    if kind in ("string", "empty"):
        return values  # text already (the usual case): no per-value Python call
    if kind == "date":  # datetime.date objects (Arrow date32/64): as str(date) would write them
        days = np.array(values.to_numpy(), dtype="datetime64[D]").astype(str)
        return pd.Series(days, index=series.index, dtype="object").where(series.notna(), None)
    return values.map(lambda v: v if v is None or isinstance(v, str) else str(v))


def _near(series: pandas.Series, digits: int) -> pandas.Series:
    """Numbers rounded to `digits` significant digits; text NFKC-normalised, case-folded, with
    punctuation and spacing collapsed."""
    import numpy as np
    import pandas as pd

    if pd.api.types.is_float_dtype(series.dtype):
        values = series.to_numpy(dtype="float64", na_value=np.nan)
        with np.errstate(divide="ignore", invalid="ignore"):
            magnitude = np.floor(np.log10(np.abs(values)))
            magnitude = np.where(np.isfinite(magnitude), magnitude, 0)
            scale = 10.0 ** (digits - 1 - magnitude)
            rounded = np.round(values * scale) / scale
        rounded = np.where(np.isfinite(values), rounded, values)
        return pd.Series(rounded, index=series.index)
    import pyarrow as pa
    import pyarrow.compute as pc

    # in Arrow's kernels, not per value in Python: NFKC, lower case (Unicode; casefold would
    # also fold ß to ss), runs of what is neither letter nor digit to one space, trimmed
    text = pa.array(series.astype("object").where(series.notna(), None), type=pa.string())
    text = pc.utf8_lower(pc.utf8_normalize(text, "NFKC"))
    text = pc.utf8_trim_whitespace(pc.replace_substring_regex(text, r"[^\p{L}\p{N}]+", " "))
    return pd.Series(text.to_numpy(zero_copy_only=False), index=series.index, dtype="object")


class _Signature(Record):
    """Per-row hashes of one split: exact and normalised values of the feature columns."""

    dataset: Dataset
    exact: numpy.ndarray
    near: numpy.ndarray
    empty: numpy.ndarray  # rows whose features are all null (never counted as duplicates)

    @classmethod
    def of(cls, dataset: Dataset, columns: list[str], options: DataOptions) -> _Signature:
        import numpy as np
        import pandas as pd

        exact: list[numpy.ndarray] = []
        near: list[numpy.ndarray] = []
        empty: list[numpy.ndarray] = []
        if columns:
            for _start, batch in dataset.batches(columns):
                frame = _frame(batch)
                canonical = pd.DataFrame({c: _canonical(frame[c]) for c in columns})
                exact.append(pd.util.hash_pandas_object(canonical, index=False).to_numpy())
                rounded = pd.DataFrame(
                    {c: _near(canonical[c], options.near_duplicate_digits) for c in columns}
                )
                near.append(pd.util.hash_pandas_object(rounded, index=False).to_numpy())
                empty.append(canonical.isna().all(axis=1).to_numpy())
        if not exact:
            nothing = np.empty(0, dtype=np.uint64)
            return cls(dataset=dataset, exact=nothing, near=nothing, empty=np.empty(0, dtype=bool))
        return cls(
            dataset=dataset,
            exact=np.concatenate(exact),
            near=np.concatenate(near),
            empty=np.concatenate(empty),
        )


def _frame(batch: pyarrow.RecordBatch) -> pandas.DataFrame:
    return batch.to_pandas()


def _self_duplication(hashes: numpy.ndarray) -> float:
    import numpy as np

    if not len(hashes):
        return 0.0
    ordered = np.sort(hashes)  # a sort: numpy's hash-based unique is several times slower here
    return float(np.count_nonzero(ordered[1:] == ordered[:-1])) / len(hashes)


def _member(values: numpy.ndarray, pool: numpy.ndarray) -> numpy.ndarray:
    """np.isin for 64-bit hashes by sorting and binary search (numpy's isin goes through its
    hash-based unique, several times slower on a million hashes)."""
    import numpy as np

    if not len(pool):
        return np.zeros(len(values), dtype=bool)
    ordered = np.sort(pool)
    at = np.minimum(np.searchsorted(ordered, values), len(ordered) - 1)
    return np.asarray(ordered[at] == values)


def _shared_rows(earlier: _Signature, later: _Signature, options: DataOptions) -> list[Finding]:
    import numpy as np

    findings: list[Finding] = []
    if not len(earlier.exact) or not len(later.exact):
        return findings
    exact = _member(later.exact, earlier.exact[~earlier.empty]) & ~later.empty
    near = _member(later.near, earlier.near[~earlier.empty]) & ~later.empty & ~exact
    for rule, mask, hashes in ((LEK001, exact, earlier.exact), (LEK002, near, earlier.near)):
        rows = np.flatnonzero(mask)
        if not len(rows):
            continue
        repeated = _self_duplication(hashes[~earlier.empty])
        severity = confidence = None
        note = ""
        if repeated >= SELF_DUPLICATION:
            severity, confidence = Severity.LOW, Confidence.LOW
            note = (
                f"; {earlier.dataset.name} itself repeats {repeated:.0%} of its rows, so "
                "matches may be expected for data with few distinct rows"
            )
        count = len(rows)
        share = count / len(later.exact)
        kind = "rows" if rule is LEK001 else "near-duplicate rows"
        finding = rule.finding(
            Location(path=later.dataset.name),
            f"{count:,} {kind} of {later.dataset.name} ({share:.1%}) also in "
            f"{earlier.dataset.name}{note}",
            evidence=f"{count} of {len(later.exact)} rows match rows of {earlier.dataset.name}",
            severity=severity,
            confidence=confidence,
        )
        findings.append(_with_rows(finding, later.dataset, rows, options))
    return findings


def _with_rows(
    finding: Finding, dataset: Dataset, rows: numpy.ndarray, options: DataOptions
) -> Finding:
    update: dict[str, Any] = {"rows": tuple(int(r) for r in rows)}
    if options.id_column:
        update["row_ids"] = row_ids(dataset, options.id_column, rows)
    return finding.model_copy(update=update)


# --- identifiers -------------------------------------------------------------------------------


def _id_hashes(dataset: Dataset, column: str) -> tuple[numpy.ndarray, numpy.ndarray]:
    """(64-bit hashes of the id values as text, their rows), nulls left out."""
    import numpy as np
    import pandas as pd

    hashes: list[numpy.ndarray] = []
    rows: list[numpy.ndarray] = []
    for start, batch in dataset.batches([column]):
        series = _canonical(_frame(batch)[column])
        if pd.api.types.is_float_dtype(series.dtype):  # 12.0 and "12" are the same id
            series = series.map(
                lambda v: None if v != v else (str(int(v)) if v.is_integer() else repr(v))
            )
        present = series.notna().to_numpy()
        values = series[present].astype("object").to_numpy()
        hashes.append(pd.util.hash_array(values))
        rows.append(np.flatnonzero(present) + start)
    if not hashes:
        return np.empty(0, dtype=np.uint64), np.empty(0, dtype=np.int64)
    return np.concatenate(hashes), np.concatenate(rows)


def _shared_ids(datasets: list[Dataset], options: DataOptions) -> list[Finding]:
    import numpy as np

    column = options.id_column
    assert column is not None
    having = [d for d in datasets if column in d.schema.names]
    hashed = [_id_hashes(d, column) for d in having]
    findings = []
    for j in range(1, len(having)):
        for i in range(j):
            mask = _member(hashed[j][0], hashed[i][0])
            rows = np.sort(hashed[j][1][mask])
            if not len(rows):
                continue
            later, earlier = having[j], having[i]
            finding = LEK003.finding(
                Location(path=later.name, pointer=f"column:{column}"),
                f"{len(rows):,} rows of {later.name} have a {column!r} value that is also in "
                f"{earlier.name}",
                evidence=f"{len(rows)} shared identifiers with {earlier.name}",
            )
            findings.append(_with_rows(finding, later, rows, options))
    return findings


# --- time --------------------------------------------------------------------------------------


def _time_column(dataset: Dataset, options: DataOptions) -> str | None:
    """options.time_column, else the first date/time column that is not a birth date."""
    import pyarrow as pa

    if options.time_column:
        return options.time_column if options.time_column in dataset.schema.names else None
    for field in dataset.schema:
        if (
            pa.types.is_timestamp(field.type) or pa.types.is_date(field.type)
        ) and not _BIRTH.search(field.name):
            return str(field.name)
    return None


def _times(dataset: Dataset, column: str) -> tuple[numpy.ndarray, numpy.ndarray]:
    """(event times as int64 nanoseconds since the epoch in UTC, their rows); unreadable and
    missing times left out."""
    import numpy as np
    import pandas as pd

    values: list[numpy.ndarray] = []
    rows: list[numpy.ndarray] = []
    for start, batch in dataset.batches([column]):
        series = _frame(batch)[column]
        if not pd.api.types.is_datetime64_any_dtype(series.dtype):
            series = pd.to_datetime(series, errors="coerce", utc=True, format="ISO8601")
        elif getattr(series.dt, "tz", None) is None:
            series = series.dt.tz_localize("UTC")
        series = series.dt.tz_convert("UTC").astype("datetime64[ns, UTC]")
        present = series.notna().to_numpy()
        values.append(series[present].astype("int64").to_numpy())
        rows.append(np.flatnonzero(present) + start)
    if not values:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    return np.concatenate(values), np.concatenate(rows)


def _time_leakage(datasets: list[Dataset], options: DataOptions) -> list[Finding]:
    import numpy as np
    import pandas as pd

    training = datasets[0]
    column = _time_column(training, options)
    if column is None:
        return []
    train_times, _ = _times(training, column)
    if not len(train_times):
        return []
    newest = int(train_times.max())
    newest_text = pd.Timestamp(newest, tz="UTC").isoformat()
    findings = []
    for later in datasets[1:]:
        if column not in later.schema.names:
            continue
        times, rows = _times(later, column)
        older = rows[times < newest]
        if not len(older):
            continue
        share = len(older) / max(len(times), 1)
        if share > INTERLEAVED:
            severity, note = (
                Severity.INFO,
                (
                    "; the splits interleave in time (a random split): if the model is meant to "
                    "predict what comes next, split by time"
                ),
            )
        else:
            severity, note = Severity.HIGH, "; the split looks time-based with rows out of place"
        finding = LEK005.finding(
            Location(path=later.name, pointer=f"column:{column}"),
            f"{len(older):,} rows of {later.name} ({share:.1%}) are older than the newest row of "
            f"{training.name} ({newest_text}){note}",
            evidence=f"{len(older)} of {len(times)} rows before the newest training time",
            severity=severity,
        )
        findings.append(_with_rows(finding, later, np.sort(older), options))
    return findings


# --- target leakage ----------------------------------------------------------------------------


def target_leakage(training: Dataset, options: DataOptions) -> list[Finding]:
    """LEK004 for each feature whose single-feature model scores at least options.leakage_score
    in cross-validation on a sample of the training split (balanced accuracy for a categorical
    label, R² for a numeric one)."""
    from bastion.datacheck.sample import sample_rows

    target = options.target
    if target is None or target not in training.schema.names:
        return []
    columns = [c for c in training.schema.names if c != options.id_column]
    frame, _total = sample_rows(training, columns, options.leakage_sample_rows)
    frame = frame[frame[target].notna()]
    if len(frame) < 4 * CV_FOLDS:
        return []
    label = frame[target]
    regression = _is_regression(label)
    findings = []
    for column in columns:
        if column == target:
            continue
        score = _single_feature_score(frame[column], label, regression)
        if score is None or score < options.leakage_score:
            continue
        metric = "R²" if regression else "balanced accuracy"
        findings.append(
            LEK004.finding(
                Location(path=training.name, pointer=f"column:{column}"),
                f"column {column!r} alone predicts {target!r} with {metric} {score:.3f} "
                f"({CV_FOLDS}-fold cross-validation on {len(frame):,} rows)",
                evidence=f"{metric} {score:.3f} >= {options.leakage_score}",
            )
        )
    return findings


def _is_regression(label: pandas.Series) -> bool:
    import pandas as pd

    return (
        pd.api.types.is_numeric_dtype(label.dtype)
        and not pd.api.types.is_bool_dtype(label.dtype)
        and label.nunique() > REGRESSION_MIN_DISTINCT
    )


def _single_feature_score(
    feature: pandas.Series, label: pandas.Series, regression: bool
) -> float | None:
    """Cross-validated score of a model that sees only this feature: a decision tree on a
    number (or a date), per-value majority (or mean) learnt on the other folds for anything
    else — so a feature unique per row (an id) predicts nothing it has not seen."""
    import numpy as np
    import pandas as pd
    from sklearn.metrics import balanced_accuracy_score, r2_score
    from sklearn.model_selection import KFold, StratifiedKFold

    y = label.to_numpy() if regression else label.astype(str).to_numpy()
    if not regression:
        counts = pd.Series(y).value_counts()
        if len(counts) < 2:
            return None
        folds = StratifiedKFold(CV_FOLDS, shuffle=True, random_state=0)
        if counts.min() < CV_FOLDS:
            folds = KFold(CV_FOLDS, shuffle=True, random_state=0)  # type: ignore[assignment]
    else:
        y = y.astype("float64")
        if np.nanstd(y) == 0:
            return None
        folds = KFold(CV_FOLDS, shuffle=True, random_state=0)  # type: ignore[assignment]
    numeric = _as_number(feature)
    predicted = np.empty(len(y), dtype=object if not regression else "float64")
    for train_index, test_index in folds.split(np.zeros(len(y)), y if not regression else None):
        if numeric is not None:
            predicted[test_index] = _tree(numeric, y, train_index, test_index, regression)
        else:
            predicted[test_index] = _lookup(feature, y, train_index, test_index, regression)
    if regression:
        return float(r2_score(y, predicted.astype("float64")))
    return float(balanced_accuracy_score(y, predicted.astype(str)))


def _as_number(feature: pandas.Series) -> numpy.ndarray | None:
    import numpy as np
    import pandas as pd

    dtype = feature.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return None
    if pd.api.types.is_numeric_dtype(dtype):
        return np.asarray(feature.to_numpy(dtype="float64", na_value=float("nan")))
    if pd.api.types.is_datetime64_any_dtype(dtype):
        values = feature.astype("int64").astype("float64")
        return np.asarray(values.where(feature.notna()).to_numpy())
    return None


def _tree(
    x: numpy.ndarray,
    y: numpy.ndarray,
    train_index: numpy.ndarray,
    test_index: numpy.ndarray,
    regression: bool,
) -> numpy.ndarray:
    import numpy as np
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    leaf = max(5, len(train_index) // 1000)
    model = (
        DecisionTreeRegressor(max_depth=8, min_samples_leaf=leaf, random_state=0)
        if regression
        else DecisionTreeClassifier(max_depth=8, min_samples_leaf=leaf, random_state=0)
    )
    model.fit(x[train_index].reshape(-1, 1), y[train_index])
    return np.asarray(model.predict(x[test_index].reshape(-1, 1)))


def _lookup(
    feature: pandas.Series,
    y: numpy.ndarray,
    train_index: numpy.ndarray,
    test_index: numpy.ndarray,
    regression: bool,
) -> numpy.ndarray:
    import numpy as np
    import pandas as pd

    keys = feature.astype("object").where(feature.notna(), "\x00null").astype(str).to_numpy()
    seen = pd.DataFrame({"k": keys[train_index], "y": y[train_index]})
    if regression:
        table = seen.groupby("k")["y"].mean()
        fallback: Any = float(np.mean(y[train_index]))
    else:
        counts = seen.groupby(["k", "y"]).size().reset_index(name="n")
        counts = counts.sort_values(["k", "n", "y"], ascending=[True, False, True])
        table = counts.drop_duplicates("k").set_index("k")["y"]
        fallback = pd.Series(y[train_index]).value_counts().idxmax()
    mapped = pd.Series(keys[test_index]).map(table)
    return np.asarray(mapped.where(mapped.notna(), fallback).to_numpy())

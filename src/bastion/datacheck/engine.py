"""The data-check engine: finds the datasets under the given paths, reads each once in full
(the integrity pass: row digests, reader problems, the comparison with a baseline manifest),
then runs every data check that applies — personal data (pii), labels and poisoning (labels,
needs a target), the data contract (contract, with --contract), leakage between splits
(leakage) — and returns one TargetResult per dataset. `data_report` wraps them in a Report
(command "data") judged by the same policy as `bastion scan`.

A check that fails on a dataset becomes a CheckError on that dataset (the run goes on, the
verdict is "could not decide"); a dataset whose file cannot be read is a DAT finding and is
marked incomplete; a check whose optional dependency is missing is a Skip naming the extra."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from bastion.datacheck import contract, drift, integrity, labels, leakage, pii
from bastion.datacheck.dataset import Dataset
from bastion.datacheck.features import NotApplicable
from bastion.datacheck.options import DataOptions
from bastion.errors import BastionError, ConfigError, DataInputError, MissingExtra, UsageError
from bastion.findings import CheckError, Finding, Location, Skip, TargetResult, sort_findings
from bastion.records import RecordError
from bastion.rules import Rule

if TYPE_CHECKING:
    from bastion.config import Settings
    from bastion.datacheck.manifest import Manifest
    from bastion.findings import Report
    from bastion.runs import Started

SingleCheck = Callable[[Dataset, DataOptions], Sequence[Finding]]

# (name, what it checks, the check): the single-dataset checks, run in this order. The check
# modules import their heavy dependencies (pyarrow, cleanlab, phonenumbers...) only when run.
DATASET_CHECKS: tuple[tuple[str, str, SingleCheck], ...] = (
    ("pii", "personal data", pii.check),
    ("labels", "labels and poisoning", labels.check),
    ("contract", "data contract", contract.check),
)
Progress = Callable[[str], None]


def all_rules() -> tuple[Rule, ...]:
    """Every rule the data checks can emit (DAT, PII, LBL, CON, LEK, DRF)."""
    return (
        *integrity.RULES,
        *pii.RULES,
        *labels.RULES,
        *contract.RULES,
        *leakage.RULES,
        *drift.RULES,
    )


def data_options(
    settings: Settings | None, overrides: Mapping[str, Any] | None = None
) -> DataOptions:
    """DataOptions from the policy's [data] table with command-line `overrides` on top."""
    data: dict[str, Any] = dict(getattr(settings, "data", None) or {})
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return DataOptions.model_validate(data)
    except RecordError as exc:
        source = getattr(settings, "source", None)
        raise ConfigError(
            f"invalid [data] settings{f' in {source}' if source else ''}: {exc}",
            hint="see docs/data.md for the accepted keys",
        ) from exc


# -- finding the datasets ---------------------------------------------------------------------


class Candidate(NamedTuple):
    path: Path
    display: str
    split: str | None


def find_data_files(
    paths: Sequence[Path],
    options: DataOptions,
    splits: Mapping[str, Sequence[Path]] | None = None,
) -> tuple[list[Candidate], list[TargetResult]]:
    """The data files under `paths` (folders are walked for data file names) plus the files
    given per split; problems of the walk as results."""
    from bastion.datacheck.read import is_data_file, split_of
    from bastion.discover import walk

    candidates: list[Candidate] = []
    problems: list[TargetResult] = []
    seen: set[Path] = set()
    for split, files in (splits or {}).items():
        for path in files:
            resolved = path.resolve()
            if resolved not in seen:
                seen.add(resolved)
                candidates.append(Candidate(path, str(path), split))
    if paths:
        found = walk(list(paths), options.max_files)
        for display, message in found.problems:
            problems.append(
                TargetResult(
                    path=display,
                    errors=(
                        CheckError(
                            location=Location(path=display), check="discover", message=message
                        ),
                    ),
                )
            )
        given_files = {p.resolve() for p in paths if p.is_file()}
        for target in found.files:
            resolved = target.path.resolve()
            if resolved in seen:
                continue
            if resolved in given_files or is_data_file(target.path):
                seen.add(resolved)
                candidates.append(Candidate(target.path, target.display, split_of(target.path)))
    candidates.sort(key=lambda c: c.display)
    return candidates, problems


# -- checking one dataset -----------------------------------------------------------------------


class Checked(NamedTuple):
    """What the engine learnt about one dataset."""

    result: TargetResult
    dataset: Dataset | None  # as finally read (None when it could not be opened or read)


def _error(dataset: Dataset, check: str, exc: BaseException) -> CheckError:
    if isinstance(exc, BastionError):
        message = exc.message + (f" ({exc.hint})" if exc.hint else "")
    else:
        message = f"{type(exc).__name__}: {str(exc)[:300]}"
    return CheckError(location=Location(path=dataset.name), check=check, message=message)


def _skip(name: str, reason: str, code: str = "unsupported", extra: str | None = None) -> Skip:
    return Skip(location=Location(path=name), reason=reason, code=code, extra=extra)


def missing_extra(exc: MissingExtra | ImportError) -> MissingExtra | None:
    """The MissingExtra an ImportError raised while a check ran stands for: an optional
    third-party package (all of them come with the [data] extra) that is not installed. None
    for anything else — a broken import inside bastion itself is a bug, not a missing extra."""
    if isinstance(exc, MissingExtra):
        return exc
    name = (getattr(exc, "name", None) or "").split(".")[0]
    if not isinstance(exc, ModuleNotFoundError) or not name or name == "bastion":
        return None
    return MissingExtra(_DISTRIBUTIONS.get(name, name), "data")


# import names whose distribution (what pip installs) is named otherwise
_DISTRIBUTIONS = {
    "sklearn": "scikit-learn",
    "detect_secrets": "detect-secrets",
    "re2": "google-re2",
}


def _run_check(
    name: str, what: str, check: SingleCheck, dataset: Dataset, options: DataOptions
) -> tuple[list[Finding], list[Skip], list[CheckError]]:
    """One single-dataset check, with every failure turned into a Skip or CheckError."""
    if name == "labels" and not options.target:
        return (
            [],
            [_skip(dataset.name, f"{what} not checked: no --target (label column) given")],
            [],
        )
    if name == "contract" and not options.contract:
        return [], [], []
    try:
        return list(check(dataset, options)), [], []
    except (MissingExtra, ImportError) as exc:
        missing = missing_extra(exc)
        if missing is None:
            return [], [], [_error(dataset, name, exc)]
        skip = _skip(
            dataset.name, f"{what} not checked: {missing.message}", "missing-extra", missing.extra
        )
        return [], [skip], []
    except DataInputError as exc:
        return [integrity.reader_finding(dataset.name, exc)], [], []
    except NotApplicable as exc:
        return [], [_skip(dataset.name, f"{what} not checked: {exc.message}")], []
    except BastionError as exc:
        return [], [], [_error(dataset, name, exc)]
    except Exception as exc:  # a check's bug must not hide the other checks' findings
        return [], [], [_error(dataset, name, exc)]


def check_dataset(
    dataset: Dataset,
    options: DataOptions,
    baseline: Manifest | None = None,
    progress: Progress | None = None,
    single: bool = True,
) -> Checked:
    """Integrity pass, then every single-dataset check that applies."""
    from bastion.datacheck.manifest import (
        LEGACY_VERSIONS,
        cell_spec_of,
        diff_indexes,
        index_dataset,
        index_of_entry,
    )

    started = time.monotonic()
    findings: list[Finding] = integrity.note_findings(dataset)
    skips: list[Skip] = []
    errors: list[CheckError] = []
    id_column = options.id_column if options.id_column in dataset.columns else None
    if options.id_column and id_column is None:
        errors.append(
            CheckError(
                location=Location(path=dataset.name),
                check="data",
                message=f"no id column {options.id_column!r} (columns: "
                f"{', '.join(dataset.columns[:20])})",
            )
        )
    if options.target and options.target not in dataset.columns:
        errors.append(
            CheckError(
                location=Location(path=dataset.name),
                check="labels",
                message=f"no target column {options.target!r} (columns: "
                f"{', '.join(dataset.columns[:20])})",
            )
        )

    def done(incomplete: bool = False, read: Dataset | None = dataset) -> Checked:
        result = TargetResult(
            path=dataset.name,
            format=f"data/{dataset.format}",
            size=dataset.size,
            findings=sort_findings(findings),
            skips=tuple(skips),
            errors=tuple(errors),
            incomplete=incomplete,
            duration_ms=round((time.monotonic() - started) * 1000, 1),
        )
        return Checked(result, read)

    entry = None
    if baseline is not None:
        entry = _baseline_entry(baseline, dataset)
        if entry is None and len(baseline.datasets) == 1 and single:
            entry = baseline.datasets[0]  # one file checked against a one-file manifest
    if progress:
        progress(f"{dataset.name}: integrity")
    try:
        indexed = index_dataset(
            dataset,
            id_column,
            keep_key_values=id_column is not None,
            cell_spec=cell_spec_of(entry),  # the manifest's key: cells compare digest to digest
        )
    except DataInputError as exc:
        findings.append(integrity.reader_finding(dataset.name, exc))
        return done(incomplete=True, read=None)
    except Exception as exc:
        errors.append(_error(dataset, "integrity", exc))
        return done(incomplete=True, read=None)
    for problem in indexed.retyped:
        findings.append(integrity.reader_finding(dataset.name, problem))
    dataset = indexed.dataset
    if id_column is not None and indexed.rows.keys is not None:
        findings += _duplicate_ids(dataset, id_column, indexed.rows)
    if baseline is not None:
        if entry is None and len(baseline.datasets) > 1:
            findings.append(
                integrity.files_changed_finding(
                    dataset.name, f"{dataset.name} is not recorded in the baseline manifest"
                )
            )
        elif entry is not None:
            old = index_of_entry(entry)
            if old is None:
                if (
                    entry.fingerprint == indexed.rows.fingerprint
                    and entry.file is not None
                    and indexed.rows.file_sha256 not in (None, entry.file.sha256)
                ):
                    findings.append(
                        integrity.bytes_changed_finding(
                            dataset.name, f"the baseline manifest ({entry.name})"
                        )
                    )
                if entry.fingerprint != indexed.rows.fingerprint:
                    findings.append(
                        integrity.MODIFIED.finding(
                            Location(path=dataset.name),
                            f"the rows differ from the baseline manifest's {entry.name} (its "
                            "fingerprint differs; the manifest has no row index to say which)",
                            evidence="fingerprint differs",
                        )
                    )
            else:
                diff = diff_indexes(old, indexed.rows, entry.name, dataset.name)
                findings += integrity.diff_findings(
                    dataset.name, diff, f"the baseline manifest ({entry.name})"
                )
            if baseline.schema_version in LEGACY_VERSIONS:
                findings.append(integrity.legacy_manifest_finding(dataset.name, entry.name))
    for name, what, check in DATASET_CHECKS:
        if progress:
            progress(f"{dataset.name}: {what}")
        found, skipped, failed = _run_check(name, what, check, dataset, options)
        findings += found
        skips += skipped
        errors += failed
    return done(read=dataset)


def _duplicate_ids(dataset: Dataset, id_column: str, index: Any) -> list[Finding]:
    import numpy as np

    keys = index.keys
    _unique, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    repeated = np.flatnonzero(counts[inverse] > 1)
    if not len(repeated):
        return []
    values = index.key_values or []
    shown = [values[i] if i < len(values) else "" for i in repeated.tolist()]
    return [integrity.duplicate_id_finding(dataset, id_column, repeated.tolist(), shown)]


def _baseline_entry(baseline: Manifest, dataset: Dataset) -> Any:
    """The manifest entry recording this dataset: by name, else by file name."""
    entry = baseline.dataset(dataset.name)
    if entry is None and dataset.path is not None:
        for candidate in baseline.datasets:
            if Path(candidate.name).name == dataset.path.name:
                return candidate
    return entry


# -- many datasets ------------------------------------------------------------------------------


def open_candidates(
    candidates: Sequence[Candidate], options: DataOptions
) -> tuple[list[Dataset], list[TargetResult]]:
    """Open each data file; the ones that cannot be opened become results."""
    from bastion.datacheck.read import open_dataset

    datasets: list[Dataset] = []
    failed: list[TargetResult] = []
    for candidate in candidates:
        try:
            datasets.append(
                open_dataset(candidate.path, options, name=candidate.display, split=candidate.split)
            )
        except DataInputError as exc:
            failed.append(
                TargetResult(
                    path=candidate.display,
                    format="data",
                    findings=(integrity.reader_finding(candidate.display, exc),),
                    incomplete=True,
                )
            )
        except MissingExtra as exc:
            failed.append(
                TargetResult(
                    path=candidate.display,
                    format="data",
                    skips=(_skip(candidate.display, exc.message, "missing-extra", exc.extra),),
                )
            )
        except UsageError as exc:
            failed.append(
                TargetResult(
                    path=candidate.display,
                    format="data",
                    errors=(
                        CheckError(
                            location=Location(path=candidate.display),
                            check="read",
                            message=exc.message,
                        ),
                    ),
                )
            )
    return datasets, failed


def run_data_checks(
    targets: Sequence[Path | Dataset],
    settings: Settings | None = None,
    options: DataOptions | None = None,
    *,
    splits: Mapping[str, Sequence[Path]] | None = None,
    baseline: Manifest | None = None,
    progress: Progress | None = None,
) -> list[TargetResult]:
    """Every data check that applies to the datasets under `targets` (paths or Datasets), one
    TargetResult per dataset. `splits` names files per split (--train/--test); `baseline` is a
    trusted manifest to compare each dataset against."""
    options = options or data_options(settings)
    paths = [t for t in targets if isinstance(t, Path)]
    given = [t for t in targets if isinstance(t, Dataset)]
    candidates, results = find_data_files(paths, options, splits)
    datasets, failed = open_candidates(candidates, options)
    results += failed
    datasets = given + datasets
    if not datasets and not results:
        where = ", ".join(str(p) for p in paths) or "the given datasets"
        results.append(
            TargetResult(
                path=where,
                skips=(
                    _skip(
                        where,
                        "no data files found (csv, tsv, parquet, jsonl, json, feather/arrow, xlsx)",
                    ),
                ),
            )
        )
    read: list[Dataset] = []
    by_name: dict[str, TargetResult] = {}
    for dataset in datasets:
        checked = check_dataset(dataset, options, baseline, progress, single=len(datasets) == 1)
        by_name[dataset.name] = checked.result
        if checked.dataset is not None:
            read.append(checked.dataset)
    if baseline is not None:
        present = {d.name for d in datasets} | {r.path for r in results}
        matched = {getattr(_baseline_entry(baseline, d), "name", None) for d in datasets}
        if not (len(baseline.datasets) == 1 and len(datasets) == 1):
            for entry in baseline.datasets:
                if entry.name not in present and entry.name not in matched:
                    by_name[entry.name] = TargetResult(
                        path=entry.name,
                        format="data",
                        findings=(
                            integrity.files_changed_finding(
                                entry.name,
                                f"{entry.name} is recorded in the baseline manifest but missing",
                            ),
                        ),
                    )
    _split_checks(read, options, by_name, progress)
    return [guard_row_ids(r, options.id_column) for r in (*results, *by_name.values())]


def guard_row_ids(result: TargetResult, id_column: str | None) -> TargetResult:
    """The result with its findings' `row_ids` (values of the --id column) redacted unless the
    personal-data check examined that column and found nothing in it: an id column of e-mail
    addresses, names or card numbers must not copy them into every finding that lists rows
    (duplicates, diffs, label issues, leakage). The 0-based `rows` stay exact."""
    if id_column is None or not any(f.row_ids for f in result.findings):
        return result
    from bastion.datacheck.row_ids import redact_id
    from bastion.datacheck.semantics import DIRECT_IDENTIFIERS, QUASI_IDENTIFIERS, column_semantic

    pointer = f"column:{id_column}"
    flagged = any(
        f.rule_id.startswith("PII") and f.location.pointer == pointer for f in result.findings
    )
    unchecked = (
        any(e.check == "pii" for e in result.errors)
        or any(s.reason.startswith("personal data not checked") for s in result.skips)
        or any(
            f.evidence.startswith("not examined: ")
            and id_column in f.evidence.removeprefix("not examined: ").split(", ")
            for f in result.findings
        )
    )
    semantic = column_semantic(id_column)
    if not (
        flagged or unchecked or semantic in DIRECT_IDENTIFIERS or semantic in QUASI_IDENTIFIERS
    ):
        return result
    return result.model_copy(
        update={
            "findings": tuple(
                f.model_copy(update={"row_ids": tuple(redact_id(v) for v in f.row_ids)})
                if f.row_ids
                else f
                for f in result.findings
            )
        }
    )


def _split_checks(
    datasets: Sequence[Dataset],
    options: DataOptions,
    results: dict[str, TargetResult],
    progress: Progress | None,
) -> None:
    """Leakage between the splits (when there are two or more), findings added to the result
    of the dataset each finding names."""
    with_split = [d for d in datasets if d.split is not None]
    if len(with_split) < 2:
        return
    if progress:
        progress("leakage between splits")
    splits: dict[str, Dataset] = {}
    for dataset in with_split:
        key = dataset.split if dataset.split not in splits else dataset.name
        assert key is not None
        splits[key] = dataset
    anchor = with_split[0].name
    try:
        found = leakage.check_splits(splits, options)
    except (MissingExtra, ImportError) as exc:
        missing = missing_extra(exc)
        if missing is None:
            error = _error(with_split[0], "leakage", exc)
            results[anchor] = results[anchor].model_copy(
                update={"errors": (*results[anchor].errors, error)}
            )
            return
        skip = _skip(
            anchor, f"leakage not checked: {missing.message}", "missing-extra", missing.extra
        )
        results[anchor] = results[anchor].model_copy(
            update={"skips": (*results[anchor].skips, skip)}
        )
        return
    except DataInputError as exc:
        found = [integrity.reader_finding(anchor, exc)]
    except Exception as exc:
        error = _error(with_split[0], "leakage", exc)
        results[anchor] = results[anchor].model_copy(
            update={"errors": (*results[anchor].errors, error)}
        )
        return
    for finding in found:
        name = finding.location.path if finding.location.path in results else anchor
        result = results[name]
        results[name] = result.model_copy(
            update={"findings": sort_findings([*result.findings, finding])}
        )


def data_report(
    results: list[TargetResult],
    targets: list[str],
    settings: Settings,
    started: Started,
    options: DataOptions,
    extra_metadata: dict[str, Any] | None = None,
) -> Report:
    from bastion.runs import build_report

    metadata = {
        "data": {
            "target": options.target,
            "id_column": options.id_column,
            "contract": options.contract,
        },
        **(extra_metadata or {}),
    }
    return build_report(results, targets, settings, started, "data", metadata)


def drift_between(
    old: Dataset, new: Dataset, options: DataOptions
) -> tuple[list[Finding], list[Skip]]:
    """Drift of every feature from the old version to the new one (DRF findings)."""
    try:
        return list(drift.check_pair(old, new, options)), []
    except (MissingExtra, ImportError) as exc:
        missing = missing_extra(exc)
        if missing is None:
            raise
        return [], [
            _skip(new.name, f"drift not checked: {missing.message}", "missing-extra", missing.extra)
        ]
    except DataInputError as exc:
        return [integrity.reader_finding(new.name, exc)], []

"""`bastion data`: check, profile, manifest and diff tabular datasets."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bastion.report import FORMATS

from .options import add_judging_options, existing, output_file
from .output import say
from .scan import finish, gate_overrides, settings_for

if TYPE_CHECKING:
    from bastion.config import Settings
    from bastion.datacheck.options import DataOptions

SUBCOMMANDS = ("check", "profile", "manifest", "diff")


def configure_data(parser: argparse.ArgumentParser) -> None:
    parser.description = f"""{parser.description}

  bastion data check PATH...          every data check that applies (policy, exit code, report)
  bastion data profile PATH -o FILE   infer a data contract from a trusted version
  bastion data manifest PATH -o FILE  record a version: file digests and per-row digests
  bastion data diff OLD NEW           which rows were modified, inserted or deleted

Data files: CSV/TSV (delimiter, encoding and header sniffed), Parquet, JSON Lines, JSON arrays,
Arrow/Feather, Excel (bastion-mlsec[excel]), each optionally .gz/.bz2/.xz/.zst; a folder is
walked for them. Splits are recognised by name (train*, valid*, test*, holdout*) or given
with --train/--valid/--test/--holdout. Exit codes: 0 passed, 1 failed the policy, 2 could not
decide. Run `bastion data SUBCOMMAND --help` for the options."""
    commands = parser.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)
    formatter = parser.formatter_class

    check = commands.add_parser(
        "check",
        help="Run every data check that applies.",
        description="Reads each dataset once in full (row digests, reader problems, the "
        "comparison with --baseline-manifest), then checks personal data, labels and poisoning "
        "(with --target), the data contract (with --contract) and leakage between splits. Rows "
        "are 0-based data rows (header excluded); JSON lists every affected row, text and HTML "
        "abbreviate.",
        formatter_class=formatter,
    )
    check.add_argument(
        "paths", nargs="*", type=existing(), metavar="PATH", help="Data files or folders."
    )
    _data_options(check)
    check.add_argument(
        "--contract", type=existing("file"), metavar="FILE", help="Validate against this contract."
    )
    check.add_argument(
        "--baseline-manifest",
        type=existing("file"),
        metavar="FILE",
        help="Trusted manifest: report rows modified, inserted or deleted since.",
    )
    for split in ("train", "valid", "test", "holdout"):
        check.add_argument(
            f"--{split}",
            action="append",
            default=[],
            type=existing("file"),
            metavar="FILE",
            help=f"A file of the {split} split (repeatable).",
        )
    add_judging_options(check)

    profile = commands.add_parser(
        "profile",
        help="Infer a data contract from a trusted version.",
        description="Types, nullability, ranges, categories, uniqueness and monotone id "
        "columns, written as a versioned JSON document for `data check --contract`.",
        formatter_class=formatter,
    )
    profile.add_argument("path", type=existing("file"), metavar="PATH", help="A data file.")
    profile.add_argument(
        "--output",
        "-o",
        type=output_file,
        required=True,
        metavar="CONTRACT",
        help="Where to write it.",
    )
    _data_options(profile, target=False)
    profile.add_argument("--policy", type=existing("file"), metavar="FILE", help="Policy TOML.")
    profile.add_argument("--quiet", "-q", action="store_true", help="No summary on stderr.")

    manifest = commands.add_parser(
        "manifest",
        help="Record a dataset version (digests of files and rows).",
        description="A versioned JSON manifest: each file's SHA-256, columns, row count, the "
        "order-independent row fingerprint and per-row digests (no values). Sign it with "
        "`bastion sign MANIFEST --key KEY`; compare with `bastion data check "
        "--baseline-manifest` or `bastion data diff`. The history store records it (`bastion "
        "history --datasets`).",
        formatter_class=formatter,
    )
    manifest.add_argument(
        "paths", nargs="+", type=existing(), metavar="PATH", help="Data files or folders."
    )
    manifest.add_argument(
        "--output",
        "-o",
        type=output_file,
        required=True,
        metavar="MANIFEST",
        help="Where to write it.",
    )
    _data_options(manifest, target=False)
    manifest.add_argument("--policy", type=existing("file"), metavar="FILE", help="Policy TOML.")
    _store_options(manifest)
    manifest.add_argument("--quiet", "-q", action="store_true", help="No summary on stderr.")

    diff = commands.add_parser(
        "diff",
        help="Which rows changed between two versions (data files or manifests).",
        description="Rows modified (with the columns that changed; values redacted where "
        "they are personal data), inserted and deleted between OLD and NEW, each a data file "
        "or a manifest. With --id rows are matched by id, else by content. The default "
        "output is a Markdown summary for a code review; -f json/sarif/html/junit/text writes "
        "a report (DAT005-DAT008, plus drift between two data versions) and the exit code "
        "follows the policy.",
        formatter_class=formatter,
    )
    diff.add_argument("old", type=existing("file"), metavar="OLD")
    diff.add_argument("new", type=existing("file"), metavar="NEW")
    _data_options(diff, target=False)
    add_judging_options(diff)
    for action in diff._actions:
        if action.dest == "fmt":
            action.choices = (*FORMATS, "markdown")
            action.default = "markdown"
            action.help = "markdown (review summary) or a report format [default: markdown]."


def _data_options(parser: argparse.ArgumentParser, target: bool = True) -> None:
    if target:
        parser.add_argument("--target", metavar="COL", help="Label column (label checks).")
    parser.add_argument("--id", dest="id_column", metavar="COL", help="Column identifying rows.")


def _store_options(parser: argparse.ArgumentParser) -> None:
    from .options import add_store_option

    add_store_option(parser)
    parser.add_argument("--no-store", action="store_true", help="Do not record it in the history.")


def _options(args: argparse.Namespace, settings: Settings, **more: Any) -> DataOptions:
    from bastion.datacheck.engine import data_options

    overrides = {
        "target": getattr(args, "target", None),
        "id_column": getattr(args, "id_column", None),
        **more,
    }
    return data_options(settings, overrides)


def _progress(quiet: bool) -> Any:
    if quiet:
        return None

    def show(message: str) -> None:
        from bastion.report.printable import terminal_safe

        print(f"bastion: {terminal_safe(message)}", file=sys.stderr, flush=True)

    return show


def run_data(args: argparse.Namespace) -> int:
    runner = {"check": _check, "profile": _profile, "manifest": _manifest, "diff": _diff}
    return runner[args.subcommand](args)


def _check(args: argparse.Namespace) -> int:
    from bastion.datacheck.engine import data_report
    from bastion.datacheck.isolated import run_in_worker
    from bastion.errors import UsageError
    from bastion.runs import start

    splits = {
        s: getattr(args, s) for s in ("train", "valid", "test", "holdout") if getattr(args, s)
    }
    if not args.paths and not splits:
        raise UsageError("give data files or folders, or --train/--valid/--test/--holdout files")
    scanned = [*args.paths, *(p for files in splits.values() for p in files)]
    settings = settings_for(scanned, args.policy, gate_overrides(args))
    options = _options(args, settings, contract=str(args.contract) if args.contract else None)
    baseline = None
    if args.baseline_manifest:
        from bastion.datacheck.manifest import load_manifest

        baseline = load_manifest(args.baseline_manifest)
    started = start()
    results = run_in_worker(
        settings,
        options,
        paths=args.paths,
        splits=splits,
        baseline=baseline,
        progress=not args.quiet,
    )
    metadata = {}
    if args.baseline_manifest:
        metadata["baseline_manifest"] = str(args.baseline_manifest)
    report = data_report(results, [str(p) for p in scanned], settings, started, options, metadata)
    return finish(report, settings, args)


def _profile(args: argparse.Namespace) -> int:
    from bastion.datacheck import contract
    from bastion.datacheck.read import open_dataset

    settings = settings_for([args.path], args.policy, {})
    options = _options(args, settings)
    dataset = open_dataset(args.path, options, name=args.path.name)
    document = contract.profile(dataset, options)
    document.save(args.output)
    if not args.quiet:
        say(f"bastion: contract for {args.path} written to {args.output}")
    return 0


def _manifest(args: argparse.Namespace) -> int:
    import datetime as dt

    from bastion.datacheck.engine import find_data_files, open_candidates
    from bastion.datacheck.manifest import (
        build_manifest,
        dataset_entry,
        dump_manifest,
        index_dataset,
    )
    from bastion.errors import DataInputError, InputError

    settings = settings_for(args.paths, args.policy, {})
    options = _options(args, settings)
    candidates, problems = find_data_files(args.paths, options)
    datasets, failed = open_candidates(candidates, options)
    trouble = [r for r in (*problems, *failed)]
    if trouble:
        first = trouble[0]
        reason = (
            first.findings[0].message
            if first.findings
            else first.errors[0].message
            if first.errors
            else first.skips[0].reason
        )
        raise InputError(f"cannot record a manifest: {reason}")
    if not datasets:
        raise InputError("no data files found to record")
    from bastion.datacheck.rowhash import CellSpec

    progress = _progress(args.quiet)
    entries = []
    spec = CellSpec()  # a fresh cell key for each manifest
    for dataset in datasets:
        if progress:
            progress(f"{dataset.name}: row digests")
        try:
            indexed = index_dataset(
                dataset, options.id_column if options.id_column else None, cell_spec=spec
            )
        except DataInputError as exc:
            raise InputError(f"cannot record a manifest: {exc.message}", hint=exc.hint) from exc
        for problem in indexed.retyped:
            say(f"bastion: warning: {problem.message} (column read as text)")
        entries.append(dataset_entry(indexed))
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    manifest = build_manifest(entries, options.id_column, {"created_at": now})
    from .output import write_report

    write_report(dump_manifest(manifest), args.output)
    if not args.no_store:
        from bastion.store import Store

        with Store(args.store) as history:
            history.record_manifest(manifest, str(args.output))
    if not args.quiet:
        rows = sum(e.rows for e in entries)
        say(
            f"bastion: manifest of {len(entries)} dataset(s), {rows:,} rows, written to "
            f"{args.output} (sign it: bastion sign {args.output} --key KEY)"
        )
    return 0


def _side(path: Path, options: DataOptions, keep_keys: bool, spec: Any) -> tuple[Any, Any, str]:
    """(row index, dataset, name) of a data file on one side of a diff, its cells digested by
    `spec` (the other side's manifest's key, or a key shared by the two data files)."""
    from bastion.datacheck.manifest import index_dataset
    from bastion.datacheck.read import open_dataset

    dataset = open_dataset(path, options, name=str(path))
    indexed = index_dataset(dataset, options.id_column, keep_key_values=keep_keys, cell_spec=spec)
    return indexed.rows, indexed.dataset, str(path)


def _manifest_side(path: Path, options: DataOptions) -> tuple[Any, None, str] | None:
    """(row index, None, name) when `path` is a one-dataset manifest, else None."""
    from bastion.datacheck.manifest import MANIFEST_KIND, index_of_entry, load_manifest
    from bastion.errors import InputError

    if path.suffix.lower() == ".json":
        with open(path, "rb") as handle:
            head = handle.read(4096)
        if MANIFEST_KIND.encode() in head or (b'"kind"' in head and b"manifest" in head):
            manifest = load_manifest(path)
            if len(manifest.datasets) != 1:
                raise InputError(
                    f"{path} records {len(manifest.datasets)} datasets: diff compares one",
                    hint="record a manifest of the one file to compare",
                )
            entry = manifest.datasets[0]
            index = index_of_entry(entry)
            if index is None:
                raise InputError(f"{path}: {entry.name} has no row index (too many rows)")
            if options.id_column and index.keys is None:
                raise InputError(f"{path} was recorded without --id: it has no id digests")
            return index, None, f"{entry.name} ({path.name})"
    return None


def _diff(args: argparse.Namespace) -> int:
    from bastion.datacheck import integrity
    from bastion.datacheck.engine import data_report
    from bastion.datacheck.manifest import diff_indexes, guard_ids, summary, with_values
    from bastion.errors import DataInputError, InputError
    from bastion.findings import Skip, TargetResult, sort_findings
    from bastion.runs import start

    settings = settings_for([args.old, args.new], args.policy, gate_overrides(args))
    options = _options(args, settings)
    started = start()
    from bastion.datacheck.rowhash import CellSpec

    try:
        # data compared with a manifest is digested with the manifest's cell key; two data
        # files share a fresh key that is never written anywhere
        recorded = [_manifest_side(p, options) for p in (args.old, args.new)]
        specs = [r[0].cell_spec for r in recorded if r is not None]
        spec = specs[0] if specs else CellSpec()
        old_index, old_data, old_name = recorded[0] or _side(args.old, options, False, spec)
        new_index, new_data, new_name = recorded[1] or _side(args.new, options, True, spec)
    except DataInputError as exc:
        raise InputError(exc.message, hint=exc.hint) from exc
    diff = guard_ids(diff_indexes(old_index, new_index, old_name, new_name), options.id_column)
    if old_data is not None and new_data is not None:
        diff, _shown = with_values(diff, old_data, new_data)
    elif diff.modified:
        diff = diff._replace(
            notes=[
                *diff.notes,
                "a manifest holds no values: changed columns come from the cell digests",
            ]
        )
    if args.fmt == "markdown":
        from .output import write_report

        write_report(summary(diff), args.output)
        changed = (
            diff.modified
            or diff.inserted
            or diff.deleted
            or not diff.identical
            or diff.bytes_differ
        )
        return 1 if changed else 0
    findings = integrity.diff_findings(new_name, diff, old_name)
    skips: list[Skip] = []
    if old_data is not None and new_data is not None:
        from bastion.datacheck.engine import drift_between

        drift_findings, skips = drift_between(old_data, new_data, options)
        findings += drift_findings
    result = TargetResult(
        path=new_name, format="data/diff", findings=sort_findings(findings), skips=tuple(skips)
    )
    report = data_report(
        [result],
        [str(args.old), str(args.new)],
        settings,
        started,
        options,
        {"diff": {"old": old_name, "new": new_name, "summary": summary(diff)}},
    )
    return finish(report, settings, args)

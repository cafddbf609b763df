"""The data family's project check: `bastion scan PROJECT` runs the data checks on the datasets
it finds, as `bastion data check` would with the policy's [data] settings."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from bastion.checks import ProjectContext
from bastion.discover import Target
from bastion.findings import TargetResult
from bastion.rules import Rule

# Names that make a file a dataset in a project scan. A plain .json is left to `bastion data`
# (given explicitly): in a project it is far more often a model config or a tokenizer.
_PROJECT_DATA_SUFFIXES = (
    ".csv",
    ".tsv",
    ".tab",
    ".psv",
    ".jsonl",
    ".ndjson",
    ".parquet",
    ".pq",
    ".feather",
    ".arrow",
    ".arrows",
    ".ipc",
    ".xlsx",
    ".xlsm",
    ".xls",
)
_COMPRESSED = (".gz", ".bz2", ".xz", ".zst")


def _looks_like_data(path: Path) -> bool:
    name = path.name.lower()
    for suffix in _COMPRESSED:
        name = name.removesuffix(suffix)
    return name.endswith(_PROJECT_DATA_SUFFIXES)


class DataCheck:
    """Integrity, contract, personal data, labels and poisoning (with a target in the policy's
    [data] table), leakage between splits and drift against a baseline manifest."""

    name = "data"
    extra: str | None = "data"
    requires: tuple[str, ...] = ("pyarrow",)

    @property
    def rules(self) -> tuple[Rule, ...]:
        from bastion.datacheck.engine import all_rules

        return tuple(all_rules())

    def select(self, ctx: ProjectContext) -> Sequence[Target]:
        return [t for t in ctx.found.files if _looks_like_data(t.path)]

    def run(self, selected: Sequence[Target], ctx: ProjectContext) -> Sequence[TargetResult]:
        from bastion.datacheck.engine import data_options
        from bastion.datacheck.isolated import run_in_worker
        from bastion.datacheck.read import split_of

        return run_in_worker(
            ctx.settings,
            data_options(ctx.settings),
            candidates=[(t.path, t.display, split_of(t.path)) for t in selected],
        )

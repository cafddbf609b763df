"""What a probe reads: data files (through the data stage's bounded readers), the label column,
and how the data's labels map to the model's classes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from bastion.errors import LimitExceeded, UsageError
from bastion.probe.model import Model, label_text

if TYPE_CHECKING:
    import numpy
    import pandas

MAX_ROWS = 200_000  # rows of one data file a probe holds in memory
FAVOURABLE_WORDS = ("good", "approved", "approve", "accept", "accepted", "granted", "yes")


class Table(NamedTuple):
    """Feature rows and, when the target column is given, their labels as text."""

    name: str
    features: pandas.DataFrame
    labels: numpy.ndarray | None  # the data's labels (label_text), None without a target


def read_table(path: Path, target: str | None, max_rows: int = MAX_ROWS) -> Table:
    """A data file (CSV, Parquet, JSON Lines, Arrow; compressed or not) through the data
    stage's readers, which bound bytes, line lengths and decompression."""
    from bastion.datacheck.options import DataOptions
    from bastion.datacheck.read import open_dataset

    options = DataOptions(max_rows_in_memory=max_rows)
    dataset = open_dataset(path, options)
    table = dataset.table(max_rows=max_rows + 1)
    if table.num_rows > max_rows:
        raise LimitExceeded(
            f"{path}: more than {max_rows:,} rows",
            hint="probe a sample of the data: a few thousand rows measure these attacks well",
        )
    frame = table.to_pandas()
    return split_table(frame, target, str(path))


def split_table(frame: pandas.DataFrame, target: str | None, name: str) -> Table:
    frame = frame.copy()
    frame.columns = [str(c) for c in frame.columns]
    if len(frame) == 0:
        raise UsageError(f"{name} has no rows")
    if target is None:
        return Table(name, frame, None)
    if target not in frame.columns:
        raise UsageError(
            f"{name} has no column {target!r}",
            hint=f"its columns are: {', '.join(map(str, frame.columns[:20]))}",
        )
    labels = frame.pop(target)
    if labels.isna().any():
        raise UsageError(f"{name}: the target column {target!r} has missing values")
    import numpy as np

    return Table(name, frame, np.array([label_text(v) for v in labels], dtype=object))


def parse_label_map(items: Sequence[str]) -> dict[str, str]:
    """VALUE=CLASS pairs from the command line."""
    out: dict[str, str] = {}
    for item in items:
        value, sep, cls = item.partition("=")
        if not sep or not value or not cls:
            raise UsageError(f"--label-map takes VALUE=CLASS, not {item!r}")
        out[value] = cls
    return out


def model_labels(labels: numpy.ndarray, model: Model, mapping: Mapping[str, str]) -> numpy.ndarray:
    """The data's labels in the model's class names; a label with no class is an error."""
    import numpy as np

    mapped = np.array([mapping.get(v, v) for v in labels], dtype=object)
    unknown = sorted(set(mapped) - set(model.classes)) if model.classes else []
    if unknown:
        raise UsageError(
            f"the data's label {unknown[0]!r} is not one of the model's classes "
            f"({', '.join(model.classes[:10])})",
            hint="map the data's labels to the model's classes: --label-map "
            f"{unknown[0]}={model.classes[-1] if model.classes else 'CLASS'}",
        )
    return mapped


def favourable_class(
    favourable: str | None, labels: numpy.ndarray | None, mapping: Mapping[str, str], model: Model
) -> str:
    """The model class that is the good outcome: --favourable (a data label or a class), else a
    data label that says so (good, approved, yes, ...)."""
    if favourable is None and labels is not None:
        words = {str(v).lower(): str(v) for v in set(labels)}
        for word in FAVOURABLE_WORDS:
            if word in words:
                favourable = words[word]
                break
    if favourable is None:
        raise UsageError(
            "the evasion probe needs to know which decision is the favourable one",
            hint=f"say it with --favourable CLASS (classes: {', '.join(model.classes[:10])})",
        )
    cls = mapping.get(favourable, favourable)
    model.class_index(cls)  # a usage error naming the classes when it is not one
    return cls


def dtypes_of(frame: pandas.DataFrame) -> dict[str, Any]:
    return {str(c): frame[c].dtype for c in frame.columns}

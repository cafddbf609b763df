"""The feature space an attacker (an applicant) moves in: the probe spec.

A spec says, for every raw feature in front of the model's pipeline, what a person can change
and what it costs: immutable features (age, sex), monotone ones (`direction` +1: may only rise,
-1: may only fall), integer and categorical features (a change must stay an integer / one of the
listed categories), bounds (from the data or the `bastion data profile` contract) and a cost per
unit of change (per change for categories). The cost of a change is the sum over features of
cost × |new - old| (numeric) or cost × [changed] (categorical); budgets ε are in these units.
With the inferred costs (1 / the feature's standard deviation), ε = 1 is "one standard
deviation of one feature, or one category switch".

The spec is a versioned, readable document (JSON, or TOML when the file name ends in .toml):
`infer()` writes one from the data (and a contract), a reviewer edits it, and `validate_change`
re-checks every change any attack reports against it."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from bastion.errors import ConfigError, UsageError
from bastion.records import Checked, RecordError, field

if TYPE_CHECKING:
    import pandas

    from bastion.datacheck.contract import Contract

FORMAT = "bastion-probe-spec"
FORMAT_VERSION = 1
MAX_SPEC_BYTES = 4 * 1024 * 1024  # a spec is a short document; this refuses a bomb
MAX_CATEGORIES = 256  # a text column with more distinct values is an identifier, not a choice
Kind = Literal["numeric", "integer", "categorical"]


class FeatureSpec(Checked):
    """One raw feature: its kind, what may change, its bounds and its cost per unit."""

    name: str
    kind: Kind
    immutable: bool = False
    direction: int = 0  # +1 may only rise, -1 may only fall, 0 either way
    lower: float | None = None
    upper: float | None = None
    categories: tuple[str, ...] = ()  # categorical: the valid values (in rank order if directed)
    cost: float = 1.0  # per unit of change (numeric, integer) or per switch (categorical)
    note: str | None = None  # why it was set so (inference says why it made a feature immutable)

    def _validate(self) -> None:
        if not self.name:
            raise RecordError("name", "a feature needs a name")
        if self.direction not in (-1, 0, 1):
            raise RecordError("direction", "must be +1 (only rise), -1 (only fall) or 0")
        if self.immutable and self.direction:
            raise RecordError(
                "direction", "an immutable feature has no direction (it cannot move at all)"
            )
        if not (math.isfinite(self.cost) and self.cost > 0):
            raise RecordError("cost", f"must be a positive finite number, not {self.cost}")
        for name in ("lower", "upper"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise RecordError(name, "must be finite")
        if self.lower is not None and self.upper is not None and self.lower > self.upper:
            raise RecordError("lower", f"{self.lower} is above upper {self.upper}")
        if self.kind == "categorical":
            if not self.categories:
                raise RecordError("categories", "a categorical feature lists its categories")
            if len(set(self.categories)) != len(self.categories):
                raise RecordError("categories", "categories must be distinct")
            if self.lower is not None or self.upper is not None:
                raise RecordError("lower", "bounds are for numeric and integer features")
        elif self.categories:
            raise RecordError("categories", f"a {self.kind} feature has no categories")

    @property
    def mutable(self) -> bool:
        return not self.immutable


class ProbeSpec(Checked):
    """The feature space of one model's raw input (format bastion-probe-spec, version 1)."""

    spec: str = FORMAT
    version: int = FORMAT_VERSION
    target: str | None = None  # the label column of the data files
    favourable: str | None = None  # the target value that is the good outcome (approval)
    # the data's label -> the model's class, when they are spelled differently ("good" -> "1")
    labels: dict[str, str] = field(default_factory=dict)
    features: tuple[FeatureSpec, ...] = ()
    source: dict[str, str] = field(default_factory=dict)  # what it was inferred from

    def _validate(self) -> None:
        if self.spec != FORMAT:
            raise RecordError("spec", f"not a probe spec (expected {FORMAT!r})")
        if self.version != FORMAT_VERSION:
            raise RecordError("version", f"version {self.version} is not supported (only 1)")
        names = [f.name for f in self.features]
        if len(set(names)) != len(names):
            raise RecordError("features", "feature names must be distinct")
        if self.target is not None and self.target in names:
            raise RecordError("target", f"{self.target!r} is both the target and a feature")

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    def feature(self, name: str) -> FeatureSpec:
        for item in self.features:
            if item.name == name:
                return item
        raise KeyError(name)

    def dumps(self) -> str:
        import msgspec

        document = _without_nulls(msgspec.to_builtins(self))
        return json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False) + "\n"

    def save(self, path: Path) -> None:
        path.write_text(self.dumps(), encoding="utf-8")

    def with_overrides(
        self,
        immutable: Iterable[str] = (),
        monotone: Mapping[str, int] | None = None,
    ) -> ProbeSpec:
        """The spec with command-line --immutable and --monotone applied."""
        immutable = set(immutable)
        monotone = dict(monotone or {})
        unknown = sorted((immutable | set(monotone)) - set(self.names))
        if unknown:
            raise UsageError(
                f"no feature named {unknown[0]!r} in the data",
                hint=f"features: {', '.join(self.names[:30])}",
            )
        both = sorted(immutable & set(monotone))
        if both:
            raise UsageError(f"{both[0]!r} is given both as --immutable and --monotone")
        fixed = sorted(n for n in monotone if self.feature(n).immutable)
        if fixed:
            raise UsageError(
                f"--monotone {fixed[0]}: the spec makes {fixed[0]!r} immutable",
                hint="edit the spec (immutable: false) to let it move",
            )
        features = []
        for item in self.features:
            update: dict[str, Any] = {}
            if item.name in immutable:
                update["immutable"] = True
                update["direction"] = 0
            if item.name in monotone:
                update["direction"] = monotone[item.name]
            features.append(item.model_copy(update=update) if update else item)
        return self.model_copy(update={"features": tuple(features)})


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: _without_nulls(v) for k, v in value.items() if v is not None and v != () and v != []
        }
    if isinstance(value, list | tuple):
        return [_without_nulls(v) for v in value]
    return value


def load_spec(path: Path) -> ProbeSpec:
    """Read a spec file (JSON, or TOML for *.toml); ConfigError says what is wrong."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_SPEC_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read the probe spec {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_SPEC_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_SPEC_BYTES // 2**20} MiB; not a probe spec")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    try:
        if path.suffix.lower() == ".toml":
            if sys.version_info >= (3, 11):
                import tomllib
            else:  # pragma: no cover
                import tomli as tomllib
            document: Any = tomllib.loads(text)
        else:
            document = json.loads(text, parse_constant=_refuse_constant)
    except ValueError as exc:  # JSONDecodeError and TOMLDecodeError are ValueErrors
        kind = "TOML" if path.suffix.lower() == ".toml" else "JSON"
        raise ConfigError(
            f"{path}: not a probe spec: not valid {kind}: {exc}"[:400],
            hint="a probe spec is JSON (TOML when its name ends in .toml); write one with "
            "--write-spec FILE",
        ) from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a probe spec") from None
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: a probe spec is an object with a 'features' list")
    try:
        return ProbeSpec.model_validate(document)
    except RecordError as exc:
        raise ConfigError(f"{path}: invalid probe spec: {exc}") from None


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number a spec may hold")


def parse_monotone(items: Sequence[str]) -> dict[str, int]:
    """COL=+1 / COL=-1 pairs from the command line."""
    out: dict[str, int] = {}
    for item in items:
        name, sep, value = item.rpartition("=")
        if not sep or not name or value.strip() not in ("+1", "1", "-1"):
            raise UsageError(f"--monotone takes COL=+1 or COL=-1, not {item!r}")
        direction = -1 if value.strip() == "-1" else 1
        if out.get(name, direction) != direction:
            raise UsageError(f"--monotone {name} is given both directions")
        out[name] = direction
    return out


# --- inference ----------------------------------------------------------------------------------


def _round(value: float, digits: int = 6) -> float:
    """A readable number for the spec file (six significant digits)."""
    if value == 0 or not math.isfinite(value):
        return value
    return round(value, -math.floor(math.log10(abs(value))) + digits - 1)


def infer(
    frame: pandas.DataFrame,
    target: str | None = None,
    favourable: str | None = None,
    contract: Contract | None = None,
    name: str = "data",
    labels: Mapping[str, str] | None = None,
) -> ProbeSpec:
    """A spec from the data (and a contract, whose types, bounds and categories win where it
    states them). Nothing is immutable or directed unless said: the data cannot tell what a
    person can change (the CLI's --immutable and --monotone, or an edited spec file, do)."""
    import numpy as np
    import pandas as pd

    columns = contract.columns if contract is not None else {}
    features: list[FeatureSpec] = []
    for column in frame.columns:
        if column == target:
            continue
        series = frame[column]
        declared = columns.get(str(column))
        note: str | None = None
        if declared is not None and declared.type == "string" and declared.enum:
            kind: Kind = "categorical"
        elif declared is not None and declared.type in ("integer", "boolean"):
            kind = "integer"
        elif declared is not None and declared.type == "number":
            kind = "numeric"
        elif pd.api.types.is_bool_dtype(series) or pd.api.types.is_integer_dtype(series):
            kind = "integer"
        elif pd.api.types.is_numeric_dtype(series):
            kind = "numeric"
        else:
            kind = "categorical"
        if kind == "categorical":
            if declared is not None and declared.enum:
                categories = tuple(declared.enum)
            else:
                categories = tuple(sorted({str(v) for v in series.dropna().unique()}))
            immutable = False
            if len(categories) > MAX_CATEGORIES:
                categories = categories[:MAX_CATEGORIES]
                immutable = True
                note = f"more than {MAX_CATEGORIES} distinct values: an identifier, kept fixed"
            elif not categories:
                categories = ("",)
                immutable = True
                note = "no values in the data"
            features.append(
                FeatureSpec(
                    name=str(column),
                    kind="categorical",
                    categories=categories,
                    immutable=immutable,
                    note=note,
                )
            )
            continue
        values = pd.to_numeric(series, errors="coerce").astype(float).to_numpy()
        values = values[np.isfinite(values)]
        lower = float(values.min()) if values.size else None
        upper = float(values.max()) if values.size else None
        if declared is not None and declared.type == "boolean":
            lower, upper = 0.0, 1.0
        elif declared is not None:
            if isinstance(declared.minimum, int | float):
                lower = float(declared.minimum)
            if isinstance(declared.maximum, int | float):
                upper = float(declared.maximum)
        spread = float(np.std(values)) if values.size > 1 else 0.0
        immutable = False
        if not spread > 0:
            spread = 1.0
            immutable = True
            note = "constant in the data"
        if lower is not None and upper is not None and lower > upper:
            lower, upper = upper, lower
        features.append(
            FeatureSpec(
                name=str(column),
                kind=kind,
                lower=lower,
                upper=upper,
                cost=_round(1.0 / spread),
                immutable=immutable,
                note=note,
            )
        )
    source = {"data": name}
    if contract is not None:
        source["contract"] = contract.title or "contract"
    return ProbeSpec(
        target=target,
        favourable=favourable,
        labels=dict(labels or {}),
        features=tuple(features),
        source=source,
    )


def check_against(spec: ProbeSpec, columns: Sequence[str], target: str | None) -> None:
    """The data's feature columns must be exactly the spec's features."""
    have = [c for c in columns if c != target]
    missing = [n for n in spec.names if n not in have]
    extra = [c for c in have if c not in spec.names]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"not in the data: {', '.join(missing[:10])}")
        if extra:
            parts.append(f"not in the spec: {', '.join(extra[:10])}")
        raise UsageError(
            "the probe spec does not describe the data's columns (" + "; ".join(parts) + ")",
            hint="write a spec for this data with `bastion probe ... --write-spec FILE`",
        )


def check_types(spec: ProbeSpec, frame: pandas.DataFrame) -> None:
    """A numeric or integer feature must be a column of numbers (a categorical one may be
    anything: its values are compared as text)."""
    import pandas as pd

    for item in spec.features:
        if item.kind == "categorical" or item.name not in frame.columns:
            continue
        column = frame[item.name]
        if pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
            continue
        if pd.to_numeric(column, errors="coerce").notna().sum() == column.notna().sum():
            continue  # numbers read as text (an object column of numbers)
        raise UsageError(
            f"the probe spec makes {item.name!r} {'an' if item.kind == 'integer' else 'a'} "
            f"{item.kind} feature, but the data's column holds text",
            hint="make it categorical in the spec, or write a spec for this data with "
            "--write-spec FILE",
        )


# --- checking a change -------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _same(a: Any, b: Any) -> bool:
    if a is b:
        return True
    try:
        if a == b:
            return True
    except (TypeError, ValueError):
        return False
    # NaN stays NaN: an unchanged missing value is not a change
    na, nb = _number(a), _number(b)
    return na is None and nb is None and str(a) == str(b)


def change_cost(spec: ProbeSpec, before: Sequence[Any], after: Sequence[Any]) -> float:
    """The cost of moving one row from `before` to `after` (values in the spec's order)."""
    total = 0.0
    for item, old, new in zip(spec.features, before, after, strict=True):
        if _same(old, new):
            continue
        if item.kind == "categorical":
            total += item.cost
        else:
            a, b = _number(old), _number(new)
            if a is None or b is None:
                return math.inf
            total += item.cost * abs(b - a)
    return total


def outside_spec(spec: ProbeSpec, row: Sequence[Any]) -> list[str]:
    """How one row's values lie outside what the spec describes (bounds, categories); []
    when they do not. Missing values are not outside."""
    problems: list[str] = []
    for item, value in zip(spec.features, row, strict=True):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        if item.kind == "categorical":
            if str(value) not in item.categories:
                problems.append(f"{item.name}: {str(value)[:40]!r} is not one of its categories")
            continue
        number = _number(value)
        if number is None:
            problems.append(f"{item.name}: {str(value)[:40]!r} is not a finite number")
        elif item.lower is not None and number < item.lower:
            problems.append(f"{item.name}: {number:g} below its lower bound {item.lower:g}")
        elif item.upper is not None and number > item.upper:
            problems.append(f"{item.name}: {number:g} above its upper bound {item.upper:g}")
    return problems


def validate_change(spec: ProbeSpec, before: Sequence[Any], after: Sequence[Any]) -> list[str]:
    """Every way `after` is not a change a person could make from `before`; [] when valid."""
    problems: list[str] = []
    for item, old, new in zip(spec.features, before, after, strict=True):
        if _same(old, new):
            continue
        where = item.name
        if item.immutable:
            problems.append(f"{where}: immutable feature changed")
            continue
        if item.kind == "categorical":
            text = str(new)
            if text not in item.categories:
                problems.append(f"{where}: {text[:40]!r} is not one of its categories")
            elif item.direction and str(old) in item.categories:
                step = item.categories.index(text) - item.categories.index(str(old))
                if step * item.direction < 0:
                    problems.append(f"{where}: moved against its direction")
            continue
        a, b = _number(old), _number(new)
        if b is None:
            problems.append(f"{where}: not a finite number")
            continue
        if item.kind == "integer" and b != math.floor(b):
            problems.append(f"{where}: {b:g} is not an integer")
        if item.lower is not None and b < item.lower:
            problems.append(f"{where}: {b:g} below its lower bound {item.lower:g}")
        if item.upper is not None and b > item.upper:
            problems.append(f"{where}: {b:g} above its upper bound {item.upper:g}")
        if a is not None and item.direction and (b - a) * item.direction < 0:
            problems.append(f"{where}: moved against its direction ({a:g} -> {b:g})")
    return problems

"""What each keyword of a data contract means, defined once, with two executors.

A contract column (datacheck/contract.py) declares a type and constraints with JSON Schema-like
keywords. This module holds the meaning of each: how a value is read as the declared type
(`coerce_value`, and `coerce_series` which runs the very same parser on text cells), and one
`Constraint` per keyword whose `holds` says when one value satisfies it and whose `pandera`
builds the equivalent pandera check. The batch validator (contract.check) hands the pandera
checks to pandera; the single-row validator (contract.validate_row, for the runtime guard) calls
`holds`; tests/datacheck/test_contract.py runs both on generated rows and requires the same
verdicts.

Nulls: None, NaN and pandas' NA are missing values; only `nullable` judges them, every other
constraint ignores them (as pandera does with ignore_na)."""

from __future__ import annotations

import datetime as dt
import math
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bastion.records import Record

if TYPE_CHECKING:
    import pandas

TYPES = ("integer", "number", "string", "boolean", "datetime")
# a text cell is read as a number only when it is a plain decimal numeral: no '_' separators,
# no hex, no surrounding prose; this bound keeps int() of a hostile cell cheap
MAX_NUMERAL_CHARS = 64
# the range of pandas' nanosecond timestamps, which the batch executor stores dates in
EARLIEST = dt.datetime(1678, 1, 1, tzinfo=dt.timezone.utc)
LATEST = dt.datetime(2261, 12, 31, 23, 59, 59, tzinfo=dt.timezone.utc)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # integers are 64-bit, as in the batch executor
_INT_CHARS = frozenset("0123456789+-")
_FLOAT_CHARS = frozenset("0123456789+-.eE")


class Invalid(Exception):
    """A value that cannot be read as the column's declared type."""


def is_null(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    # pandas' missing-value markers exist only once pandas is loaded; the single-row path never
    # imports it
    pd = sys.modules.get("pandas")
    return pd is not None and (value is pd.NA or value is pd.NaT)


def _parse_int_text(text: str) -> int:
    text = text.strip()
    if not text or len(text) > MAX_NUMERAL_CHARS or not set(text) <= _INT_CHARS:
        raise Invalid("not an integer")
    try:
        return int(text)
    except ValueError:
        raise Invalid("not an integer") from None


def _parse_float_text(text: str) -> float:
    text = text.strip()
    if not text or len(text) > MAX_NUMERAL_CHARS or not set(text) <= _FLOAT_CHARS:
        raise Invalid("not a number")
    try:
        return float(text)
    except ValueError:
        raise Invalid("not a number") from None


def parse_datetime(value: Any) -> dt.datetime:
    """A datetime in UTC: datetime/date objects (naive ones are taken as UTC) and ISO 8601 text."""
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, dt.date):
        moment = dt.datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        text = value.strip()
        if not text or len(text) > MAX_NUMERAL_CHARS:
            raise Invalid("not an ISO 8601 date or time")
        try:
            moment = dt.datetime.fromisoformat(text)
        except ValueError:
            raise Invalid("not an ISO 8601 date or time") from None
    else:
        raise Invalid("not a date or time")
    try:
        moment = (
            moment.replace(tzinfo=dt.timezone.utc)
            if moment.tzinfo is None
            else moment.astimezone(dt.timezone.utc)
        )
    except (OverflowError, ValueError):
        raise Invalid("date out of range") from None
    if not EARLIEST <= moment <= LATEST:
        raise Invalid("date out of range (1678 to 2261)")
    return moment


def coerce_value(kind: str, value: Any) -> Any:
    """`value` read as `kind` (one of TYPES); raises Invalid. Not for nulls (see is_null)."""
    if kind == "integer":
        if isinstance(value, bool):
            raise Invalid("a boolean is not an integer")
        if isinstance(value, int):
            number = value
        elif isinstance(value, float):
            if not value.is_integer():
                raise Invalid("not an integer")
            number = int(value)
        elif isinstance(value, str):
            number = _parse_int_text(value)
        elif _is_numpy_number(value):
            return coerce_value(kind, value.item())
        else:
            raise Invalid("not an integer")
        if not INT64_MIN <= number <= INT64_MAX:
            raise Invalid("integer out of the 64-bit range")
        return number
    if kind == "number":
        if isinstance(value, bool):
            raise Invalid("a boolean is not a number")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            return _parse_float_text(value)
        if _is_numpy_number(value):
            return coerce_value(kind, value.item())
        raise Invalid("not a number")
    if kind == "string":
        if isinstance(value, str):
            return value
        raise Invalid("not text")
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        if type(value).__name__ == "bool_":  # numpy.bool_
            return bool(value)
        raise Invalid("not a boolean")
    if kind == "datetime":
        if hasattr(value, "to_pydatetime"):  # pandas.Timestamp
            value = value.to_pydatetime()
        return parse_datetime(value)
    raise Invalid(f"unknown type {kind!r}")


def _is_numpy_number(value: Any) -> bool:
    return type(value).__module__ == "numpy" and hasattr(value, "item")


def coerce_series(kind: str, series: pandas.Series) -> tuple[pandas.Series, pandas.Series]:
    """(the values as `kind` in a pandas nullable dtype, mask of non-null cells that are not of
    that type). Columns whose storage type already is `kind` are converted in bulk; anything else
    (text, mixed objects) goes cell by cell through coerce_value, so both executors read values
    the same way."""
    import numpy as np
    import pandas as pd

    null = series.isna()
    dtype = series.dtype
    if kind == "integer":
        if pd.api.types.is_integer_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
            return series.astype("Int64"), pd.Series(False, index=series.index)
        if pd.api.types.is_float_dtype(dtype):
            values = series.astype("Float64")
            whole = values.isna() | (values == np.floor(values.fillna(0)))
            bad = ~null & ~whole.fillna(False).astype(bool)
            kept = values.mask(bad)
            # integral floats past int64 are outside any contract's range; keep them as bad
            big = kept.abs() >= 2.0**63
            bad = bad | big.fillna(False).astype(bool)
            return kept.mask(bad).astype("Int64"), bad
    elif kind == "number":
        if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
            return series.astype("Float64"), pd.Series(False, index=series.index)
    elif kind == "string":
        if pd.api.types.is_string_dtype(dtype) and not pd.api.types.is_object_dtype(dtype):
            return series.astype("string"), pd.Series(False, index=series.index)
    elif kind == "boolean":
        if pd.api.types.is_bool_dtype(dtype):
            return series.astype("boolean"), pd.Series(False, index=series.index)
    elif kind == "datetime":
        if isinstance(dtype, pd.DatetimeTZDtype):
            return series.dt.tz_convert("UTC"), pd.Series(False, index=series.index)
        if pd.api.types.is_datetime64_dtype(dtype):
            return series.dt.tz_localize("UTC"), pd.Series(False, index=series.index)
    return _coerce_cells(kind, series, null)


_TARGET_DTYPES = {
    "integer": "Int64",
    "number": "Float64",
    "string": "string",
    "boolean": "boolean",
    "datetime": "datetime64[ns, UTC]",
}


_UNSEEN = object()
_INVALID = object()
MEMO_VALUES = 65_536  # distinct values remembered per batch and column when coercing dates


def _coerce_cells(
    kind: str, series: pandas.Series, null: pandas.Series
) -> tuple[pandas.Series, pandas.Series]:
    import pandas as pd

    values: list[Any] = []
    bad: list[bool] = []
    # dates repeat (a million rows over a few thousand days): each distinct value is parsed
    # once; coerce_value is a pure function of the value, and equal values (an aware datetime
    # and the same instant in another zone) coerce alike
    memo: dict[Any, Any] | None = {} if kind == "datetime" else None
    for value, missing in zip(series.tolist(), null.tolist(), strict=True):
        if missing:
            values.append(None)
            bad.append(False)
            continue
        if memo is not None:
            try:
                known = memo.get(value, _UNSEEN)
            except TypeError:  # an unhashable value: no memo
                known = _UNSEEN
            if known is not _UNSEEN:
                values.append(None if known is _INVALID else known)
                bad.append(known is _INVALID)
                continue
        try:
            coerced = coerce_value(kind, value)
            values.append(coerced)
            bad.append(False)
        except Invalid:
            coerced = _INVALID
            values.append(None)
            bad.append(True)
        if memo is not None and len(memo) < MEMO_VALUES:
            try:
                memo[value] = coerced
            except TypeError:
                pass
    if kind == "datetime":
        out = pd.Series(pd.to_datetime(values, utc=True), index=series.index)
    else:
        out = pd.Series(pd.array(values, dtype=_TARGET_DTYPES[kind]), index=series.index)
    return out, pd.Series(bad, index=series.index, dtype=bool)


class Constraint(Record):
    """One contract keyword: the rule its failures break, when one (non-null, coerced) value
    satisfies it (`holds(value, param)`), and the pandera check that enforces it on a column
    (`pandera(param)`). `param` is the keyword's prepared value (see prepare)."""

    keyword: str
    rule: str
    holds: Callable[[Any, Any], bool]
    pandera: Callable[[Any], Any]
    describe: Callable[[Any], str]


def _pandera() -> Any:
    import pandera.pandas as pa

    return pa


def _map_check(param: Any, holds: Callable[[Any, Any], bool], name: str) -> Any:
    """A pandera check that applies `holds` cell by cell (for what pandera has no built-in)."""

    def check(series: pandas.Series) -> pandas.Series:
        return series.map(lambda value: holds(value, param)).astype(bool)

    return _pandera().Check(check, name=name)


def _pattern_holds(value: Any, param: Any) -> bool:
    return param.search(value) is not None


CONSTRAINTS: dict[str, Constraint] = {
    c.keyword: c
    for c in (
        Constraint(
            keyword="minimum",
            rule="CON005",
            holds=lambda value, param: value >= param,
            pandera=lambda param: _pandera().Check.ge(param),
            describe=lambda param: f"at least {_show(param)}",
        ),
        Constraint(
            keyword="maximum",
            rule="CON005",
            holds=lambda value, param: value <= param,
            pandera=lambda param: _pandera().Check.le(param),
            describe=lambda param: f"at most {_show(param)}",
        ),
        Constraint(
            keyword="enum",
            rule="CON006",
            holds=lambda value, param: value in param,
            pandera=lambda param: _pandera().Check.isin(sorted(param)),
            describe=lambda param: f"one of {len(param)} known categories",
        ),
        Constraint(
            keyword="minLength",
            rule="CON007",
            holds=lambda value, param: len(value) >= param,
            pandera=lambda param: _pandera().Check.str_length(min_value=param),
            describe=lambda param: f"at least {param} characters",
        ),
        Constraint(
            keyword="maxLength",
            rule="CON007",
            holds=lambda value, param: len(value) <= param,
            pandera=lambda param: _pandera().Check.str_length(max_value=param),
            describe=lambda param: f"at most {param} characters",
        ),
        Constraint(
            keyword="pattern",
            rule="CON007",
            holds=_pattern_holds,
            pandera=lambda param: _map_check(param, _pattern_holds, "pattern"),
            describe=lambda param: f"matching the pattern {param.pattern!r}",
        ),
    )
}


def _show(param: Any) -> str:
    if isinstance(param, dt.datetime):
        return param.isoformat()
    return repr(param)

"""Request rows against the data contract, compiled once: `RowReader(columns).read(row)`.

The guard checks every row of every request against the contract and reads it as the
contract's types. `datacheck.contract.validate_row` and `features.coerce_row` do that for any
row, walking each column's spec and constraints generically; per request that walk is most of
the contract step's time. A `RowReader` turns each column into one small function when the
guard starts (an integer column with a range becomes `type(v) is int and lo <= v <= hi`, a
category column a set lookup), and answers with the row as the contract's types, or None.

It only ever *accepts* faster: a value its fast test does not take goes through the same
definitions as `validate_row` (null, coercion, every constraint's `holds`), and a row it
refuses (a missing or unknown column, a value out of contract) is handed back to the caller as
None, who runs `validate_row` for the violations and their messages. So it accepts exactly the
rows `validate_row` finds nothing wrong with, and reads them as `coerce_row` does (tested on
generated rows, tests/guard/test_guard_rows.py)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from bastion.datacheck import constraints as cs
from bastion.datacheck.contract import PreparedColumn

_REFUSED = object()  # a value this column does not accept
_MISSING = object()
_EXACT_FLOAT = 2**53  # integers up to here convert to float exactly
_RANGE_KEYWORDS = frozenset({"minimum", "maximum"})

Check = Callable[[Any], Any]  # value -> the value as the column's type, or _REFUSED


class RowReader:
    """The contract's columns compiled into one check per column."""

    def __init__(self, columns: Sequence[PreparedColumn]) -> None:
        self.columns = tuple(columns)
        self._checks = tuple((column.name, _compile(column)) for column in self.columns)

    def read(self, row: Mapping[str, Any]) -> dict[str, Any] | None:
        """The row as the contract's types when it satisfies the contract (every column
        present, none unknown, every value valid); None otherwise."""
        if len(row) != len(self._checks):
            return None  # a missing or an unknown column
        out: dict[str, Any] = {}
        for name, check in self._checks:
            value = check(row.get(name, _MISSING))
            if value is _REFUSED:
                return None
            out[name] = value
        return out


def _compile(column: PreparedColumn) -> Check:
    generic = _generic(column)
    keywords = {item.constraint.keyword for item in column.constraints}
    params = {item.constraint.keyword: item.param for item in column.constraints}
    kind = column.spec.type
    if kind in ("integer", "number") and keywords <= _RANGE_KEYWORDS:
        if not all(_plain_number(p) for p in params.values()):
            return generic
        if kind == "integer":
            low = max(cs.INT64_MIN, params.get("minimum", cs.INT64_MIN))
            high = min(cs.INT64_MAX, params.get("maximum", cs.INT64_MAX))

            def integer(value: Any) -> Any:
                if type(value) is int and low <= value <= high:
                    return value
                return generic(value)

            return integer
        lowest = params.get("minimum", -math.inf)
        highest = params.get("maximum", math.inf)

        def number(value: Any) -> Any:
            if type(value) is float and lowest <= value <= highest:  # NaN fails: generic
                return value
            if type(value) is int and -_EXACT_FLOAT <= value <= _EXACT_FLOAT:
                as_float = float(value)
                if lowest <= as_float <= highest:
                    return as_float
            return generic(value)

        return number
    if kind == "string" and keywords == {"enum"}:
        categories = params["enum"]

        def category(value: Any) -> Any:
            if type(value) is str and value in categories:
                return value
            return generic(value)

        return category
    if kind == "boolean" and not keywords:

        def boolean(value: Any) -> Any:
            return value if type(value) is bool else generic(value)

        return boolean
    return generic


def _generic(column: PreparedColumn) -> Check:
    """validate_row's definitions for one column: null, coercion, then every constraint."""
    kind = column.spec.type
    nullable = column.spec.nullable
    items = tuple((item.constraint.holds, item.param) for item in column.constraints)

    def check(value: Any) -> Any:
        if value is _MISSING:
            return _REFUSED
        if cs.is_null(value):
            return None if nullable else _REFUSED
        try:
            coerced = cs.coerce_value(kind, value)
        except cs.Invalid:
            return _REFUSED
        for holds, param in items:
            if not holds(coerced, param):
                return _REFUSED
        return coerced

    return check


def _plain_number(value: Any) -> bool:
    return type(value) in (int, float) and (type(value) is int or math.isfinite(value))

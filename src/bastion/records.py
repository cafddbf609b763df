"""Frozen records: the small dataclass base behind the result model, settings and verdicts.

It gives dataclasses the few things bastion needs — copy with changes, dump to plain data or
JSON, strict validation from plain data (unknown keys and wrong types are errors), and a JSON
Schema — without a heavy import on the command line's start-up path."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import types
import typing
from typing import Any, TypeVar

R = TypeVar("R", bound="Record")


class RecordError(ValueError):
    """Plain data that does not fit a record; `path` says where."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls)
    return hints


@dataclasses.dataclass(frozen=True, kw_only=True)
class Record:
    def model_copy(self: R, update: dict[str, Any] | None = None) -> R:
        return dataclasses.replace(self, **(update or {}))

    def model_dump(self, mode: str = "python") -> dict[str, Any]:
        return typing.cast(dict[str, Any], _plain(self, mode == "json"))

    def model_dump_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), separators=(",", ":"))

    @classmethod
    def model_validate(cls: type[R], data: Any) -> R:
        return typing.cast(R, _convert(data, cls, ""))

    @classmethod
    def model_validate_json(cls: type[R], text: str | bytes) -> R:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise RecordError("", f"not JSON: {exc}") from exc
        return cls.model_validate(data)


def _plain(value: Any, as_json: bool) -> Any:
    if isinstance(value, Record):
        return {f.name: _plain(getattr(value, f.name), as_json)
                for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value if as_json else value
    if isinstance(value, (list, tuple)):
        items = [_plain(v, as_json) for v in value]
        return items if as_json else type(value)(items)
    if isinstance(value, dict):
        return {k: _plain(v, as_json) for k, v in value.items()}
    if isinstance(value, dt.date) and as_json:
        return value.isoformat()
    return value


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _convert(value: Any, hint: Any, path: str) -> Any:
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(value, option, path)
            except RecordError as exc:
                errors.append(exc.message)
        raise RecordError(path, "; ".join(errors) or "unexpected value")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise RecordError(path, "expected a list")
        (item,) = typing.get_args(hint)[:1]
        return tuple(_convert(v, item, f"{path}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise RecordError(path, "expected a table/object")
        _key, item = typing.get_args(hint)
        return {str(k): _convert(v, item, f"{path}.{k}") for k, v in value.items()}
    if isinstance(hint, type) and issubclass(hint, Record):
        if isinstance(value, hint):
            return value
        if not isinstance(value, dict):
            raise RecordError(path, "expected a table/object")
        return _build(hint, value, path)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(value)
        except ValueError:
            allowed = ", ".join(repr(m.value) for m in hint)
            raise RecordError(path, f"must be one of {allowed}") from None
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        raise RecordError(path, "expected true or false")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise RecordError(path, "expected an integer")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise RecordError(path, "expected a number")
    if hint is str:
        if isinstance(value, str):
            return value
        raise RecordError(path, "expected a string")
    if hint is dt.date:
        if isinstance(value, dt.datetime):
            return value.date()
        if isinstance(value, dt.date):
            return value
        if isinstance(value, str):
            try:
                return dt.date.fromisoformat(value)
            except ValueError:
                pass
        raise RecordError(path, "expected a date (YYYY-MM-DD)")
    raise RecordError(path, f"unsupported type {hint!r}")  # pragma: no cover - programming error


def _build(cls: type[R], data: dict[str, Any], path: str) -> R:
    hints = _hints(cls)
    names = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise RecordError(path, f"unknown key(s): {', '.join(map(str, unknown))}")
    kwargs = {}
    for name, field in names.items():
        where = f"{path}.{name}" if path else name
        if name in data:
            kwargs[name] = _convert(data[name], hints[name], where)
        elif field.default is dataclasses.MISSING and \
                field.default_factory is dataclasses.MISSING:
            raise RecordError(where, "is required")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        if isinstance(exc, RecordError):
            raise
        raise RecordError(path, str(exc)) from exc


def json_schema(cls: type[Record]) -> dict[str, Any]:
    """A JSON Schema (draft 2020-12) describing the JSON dump of `cls`."""
    defs: dict[str, Any] = {}

    def schema(hint: Any) -> dict[str, Any]:
        origin = typing.get_origin(hint)
        if hint is Any:
            return {}
        if origin in (typing.Union, types.UnionType):
            return {"anyOf": [schema(h) for h in typing.get_args(hint)]}
        if hint is type(None):
            return {"type": "null"}
        if origin is tuple:
            return {"type": "array", "items": schema(typing.get_args(hint)[0])}
        if origin is dict:
            return {"type": "object", "additionalProperties": schema(typing.get_args(hint)[1])}
        if isinstance(hint, type) and issubclass(hint, Record):
            if hint.__name__ not in defs:
                defs[hint.__name__] = {}
                defs[hint.__name__] = record(hint)
            return {"$ref": f"#/$defs/{hint.__name__}"}
        if isinstance(hint, type) and issubclass(hint, enum.Enum):
            return {"enum": [m.value for m in hint]}
        simple = {bool: "boolean", int: "integer", float: "number", str: "string"}
        if hint in simple:
            return {"type": simple[hint]}
        if hint is dt.date:
            return {"type": "string", "format": "date"}
        raise TypeError(f"no schema for {hint!r}")  # pragma: no cover

    def record(rec: type[Record]) -> dict[str, Any]:
        hints = _hints(rec)
        fields = [f for f in dataclasses.fields(rec)]
        required = [f.name for f in fields if f.default is dataclasses.MISSING and
                    f.default_factory is dataclasses.MISSING]
        out: dict[str, Any] = {"type": "object", "additionalProperties": False,
                               "properties": {f.name: schema(hints[f.name]) for f in fields}}
        if rec.__doc__:
            out["description"] = " ".join(rec.__doc__.split())
        if required:
            out["required"] = required
        return out

    root = record(cls)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": cls.__name__,
            **root, "$defs": defs}

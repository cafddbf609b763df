"""Frozen records: the small base class behind the result model, settings and verdicts.

It gives classes declared with annotations what bastion needs — keyword construction with
defaults and factories, immutability, equality and hashing by value, copy with changes, dump to
plain data or JSON, strict validation from plain data (unknown keys and wrong types are errors),
and a JSON Schema — without heavy imports on the command line's start-up path (pydantic's model
building, or dataclasses' code generation and its `inspect` import, were a large part of a
one-file scan). Type checkers see records as keyword-only frozen dataclasses (PEP 681)."""

from __future__ import annotations

import datetime as dt
import enum
import json
import types
import typing
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

if TYPE_CHECKING:
    from typing_extensions import dataclass_transform
else:

    def dataclass_transform(**_kwargs: Any) -> Callable[[Any], Any]:
        return lambda cls: cls


R = TypeVar("R", bound="Record")
_MISSING: Any = object()


class RecordError(ValueError):
    """Plain data that does not fit a record; `path` says where."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


class FrozenRecordError(AttributeError):
    """Records are immutable: use model_copy(update=...)."""


class _FieldSpec:
    __slots__ = ("default", "default_factory")

    def __init__(self, default: Any, default_factory: Any) -> None:
        self.default = default
        self.default_factory = default_factory


def field(*, default: Any = _MISSING, default_factory: Callable[[], Any] | None = None) -> Any:
    """A field default that is built per instance (default_factory) or given explicitly."""
    return _FieldSpec(default, default_factory)


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls)
    return hints


@dataclass_transform(kw_only_default=True, frozen_default=True, field_specifiers=(field,))
class Record:
    """Subclasses declare fields as annotations, with optional defaults or field(...)."""

    __slots__ = ()
    record_fields: ClassVar[tuple[str, ...]] = ()
    record_defaults: ClassVar[dict[str, Any]] = {}
    record_factories: ClassVar[dict[str, Callable[[], Any]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        names = list(cls.record_fields)
        defaults = dict(cls.record_defaults)
        factories = dict(cls.record_factories)
        own = cls.__dict__.get("__annotations__")  # noqa: RUF063 - avoids importing inspect
        if own is None and "__annotate__" in cls.__dict__:  # Python >= 3.14, lazy annotations
            own = cls.__annotations__
        for name, annotation in (own or {}).items():
            if "ClassVar" in str(annotation):
                continue
            if name not in names:
                names.append(name)
            defaults.pop(name, None)
            factories.pop(name, None)
            value = cls.__dict__.get(name, _MISSING)
            if isinstance(value, _FieldSpec):
                delattr(cls, name)
                if value.default_factory is not None:
                    factories[name] = value.default_factory
                elif value.default is not _MISSING:
                    defaults[name] = value.default
            elif value is not _MISSING:
                defaults[name] = value
        cls.record_fields = tuple(names)
        cls.record_defaults = defaults
        cls.record_factories = factories

    def __init__(self, **values: Any) -> None:
        cls = type(self)
        for name in cls.record_fields:
            if name in values:
                value = values.pop(name)
            elif name in cls.record_defaults:
                value = cls.record_defaults[name]
            elif name in cls.record_factories:
                value = cls.record_factories[name]()
            else:
                raise TypeError(f"{cls.__name__}() missing required argument: '{name}'")
            object.__setattr__(self, name, value)
        if values:
            raise TypeError(
                f"{cls.__name__}() got unexpected argument(s): {', '.join(sorted(values))}"
            )
        self.__post_init__()

    def __post_init__(self) -> None:
        """Checks and derived fields; runs after every construction (and copy)."""

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenRecordError(f"cannot assign to field {name!r} of a frozen record")

    def __delattr__(self, name: str) -> None:
        raise FrozenRecordError(f"cannot delete field {name!r} of a frozen record")

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.record_fields)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((self.__class__.__name__, self._values()))

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.record_fields)
        return f"{type(self).__name__}({inner})"

    def model_copy(self: R, update: dict[str, Any] | None = None) -> R:
        values = {name: getattr(self, name) for name in self.record_fields}
        values.update(update or {})
        return type(self)(**values)

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
        return {name: _plain(getattr(value, name), as_json) for name in value.record_fields}
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
    unknown = sorted(set(data) - set(cls.record_fields))
    if unknown:
        raise RecordError(path, f"unknown key(s): {', '.join(map(str, unknown))}")
    kwargs = {}
    for name in cls.record_fields:
        where = f"{path}.{name}" if path else name
        if name in data:
            kwargs[name] = _convert(data[name], hints[name], where)
        elif not _has_default(cls, name):
            raise RecordError(where, "is required")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        if isinstance(exc, RecordError):
            raise
        raise RecordError(path, str(exc)) from exc


def _has_default(cls: type[Record], name: str) -> bool:
    return name in cls.record_defaults or name in cls.record_factories


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
        required = [name for name in rec.record_fields if not _has_default(rec, name)]
        out: dict[str, Any] = {
            "type": "object",
            "additionalProperties": False,
            "properties": {name: schema(hints[name]) for name in rec.record_fields},
        }
        if rec.__doc__:
            out["description"] = " ".join(rec.__doc__.split())
        if required:
            out["required"] = required
        return out

    root = record(cls)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": cls.__name__,
        **root,
        "$defs": defs,
    }

"""Frozen records on msgspec: the base class behind the result model, settings and verdicts.

A record is a frozen, keyword-only `msgspec.Struct` that refuses unknown keys when decoded.
msgspec gives construction, immutability, equality and hashing by value, typed decoding from
JSON or plain data, and JSON Schema generation; this module adds the few methods the rest of
bastion calls (`model_copy`, `model_dump`, `model_dump_json`, `model_validate`,
`model_validate_json`, `json_schema`) and `RecordError`, which names the key path of what is
wrong.

msgspec checks types when it decodes, not when Python code constructs a struct. `Checked`
records (settings, policy, everything a user writes) also check every field's type on
construction and on copies, so `Settings(fail_on="high")` is an error where it is written, not
an AttributeError later. The result model (`Finding` and friends, built by the thousands by
scanners) is a plain `Record`: msgspec checks its types when a worker's result is decoded, and
its own `__post_init__` checks the few fields the gate depends on."""

from __future__ import annotations

import datetime as dt
import enum
import json
import re
import sys
import types
import typing
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

# msgspec's annotation helper prefers typing_extensions when it is installed, and importing
# typing_extensions imports inspect (a tenth of a one-file scan's start-up). typing's own
# get_type_hints resolves every annotation bastion writes, so msgspec is imported without it
# unless something already loaded it; the block is lifted right after.
_HIDE_TYPING_EXTENSIONS = "typing_extensions" not in sys.modules and "msgspec" not in sys.modules
if _HIDE_TYPING_EXTENSIONS:
    sys.modules["typing_extensions"] = None  # type: ignore[assignment]
try:
    import msgspec
    import msgspec.json
    import msgspec.structs
finally:
    if _HIDE_TYPING_EXTENSIONS:
        del sys.modules["typing_extensions"]

from msgspec import field  # noqa: E402 - re-exported: the field specifier records use
from msgspec.structs import force_setattr  # noqa: E402 - for derived fields in __post_init__

if TYPE_CHECKING:
    from typing_extensions import dataclass_transform
else:

    def dataclass_transform(**_kwargs: Any) -> Callable[[Any], Any]:
        return lambda cls: cls


__all__ = [
    "Checked",
    "FrozenRecordError",
    "Record",
    "RecordError",
    "check_fields",
    "field",
    "force_setattr",
    "json_schema",
]

R = TypeVar("R", bound="Record")

# msgspec raises AttributeError on assignment to a frozen struct
FrozenRecordError = AttributeError


class RecordError(ValueError):
    """Data that does not fit a record; `path` says where (e.g. `waivers[0].reason`)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


class _RecordMeta(msgspec.StructMeta):
    """Every record's own fields are keyword-only (msgspec's kw_only is per class), so a
    subclass may declare required fields after fields with defaults."""

    def __new__(
        mcls, name: str, bases: tuple[type, ...], namespace: dict[str, Any], **kwargs: Any
    ) -> _RecordMeta:
        kwargs.setdefault("kw_only", True)
        return super().__new__(mcls, name, bases, namespace, **kwargs)


@dataclass_transform(kw_only_default=True, frozen_default=True, field_specifiers=(field,))
class Record(msgspec.Struct, metaclass=_RecordMeta, frozen=True, forbid_unknown_fields=True):
    """Subclasses declare fields as annotations, with optional defaults or field(...)."""

    def __post_init__(self) -> None:
        """Checks and derived fields; runs after construction, decoding and copies."""

    def model_copy(self: R, update: dict[str, Any] | None = None) -> R:
        """A copy with some fields changed; `__post_init__` (and a Checked record's type
        checks) run on the copy."""
        return msgspec.structs.replace(self, **(update or {}))

    def model_dump(self, mode: str = "python") -> dict[str, Any]:
        """Plain data: nested dicts; mode="json" also turns enums, tuples and dates into JSON
        values."""
        if mode == "json":
            return typing.cast(dict[str, Any], msgspec.to_builtins(self))
        return typing.cast(dict[str, Any], _plain(self))

    def model_dump_json(self) -> str:
        try:
            return msgspec.json.encode(self).decode("utf-8")
        except UnicodeEncodeError:
            # a lone surrogate from hostile content (a pickle string, a non-UTF-8 name):
            # msgspec refuses it, the json module writes it as an escape
            return json.dumps(msgspec.to_builtins(self), separators=(",", ":"))

    @classmethod
    def model_validate(cls: type[R], data: Any) -> R:
        """A record from plain data (a parsed policy file, environment values): strings are
        accepted for numbers and booleans; unknown keys and wrong types are RecordErrors."""
        try:
            return msgspec.convert(data, cls, strict=False)
        except msgspec.ValidationError as exc:
            raise _record_error(exc, cls, data) from None

    @classmethod
    def model_validate_json(cls: type[R], text: str | bytes) -> R:
        """A record from its JSON (model_dump_json's output): types must match exactly."""
        try:
            return msgspec.json.decode(text, type=cls)
        except msgspec.ValidationError as exc:
            raise _record_error(exc, cls, msgspec.json.decode(text)) from None
        except msgspec.DecodeError as exc:
            try:  # the json module reads escaped lone surrogates, which msgspec refuses
                data = json.loads(text)
            except ValueError:
                raise RecordError("", f"not JSON: {exc}") from None
            try:
                return msgspec.convert(data, cls)
            except msgspec.ValidationError as error:
                raise _record_error(error, cls, data) from None


class Checked(Record):
    """A record whose field types are checked whenever one is built (construction, decoding,
    copies): settings, policy and everything else a user writes. Value checks go in `_validate`."""

    def __post_init__(self) -> None:
        check_fields(self)
        self._validate()

    def _validate(self) -> None:
        """Value checks beyond the types; raise RecordError naming the field."""


def check_fields(record: Record) -> None:
    """Raise RecordError naming the first field whose value is not of its declared type (as
    it stands: no conversion). Nested records are taken as they are (they checked themselves
    when built, if they are Checked)."""
    for name, checker in _checkers(type(record)):
        checker(getattr(record, name), name)


def _plain(value: Any) -> Any:
    if isinstance(value, msgspec.Struct):
        return {name: _plain(getattr(value, name)) for name in value.__struct_fields__}
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


_AT = re.compile(r"^(?P<message>.*) - at `\$(?P<path>[^`]*)`\Z", re.DOTALL)


def _record_error(exc: msgspec.ValidationError, cls: type[Record], data: Any) -> RecordError:
    """msgspec's "Expected `int`, got `str` - at `$.limits.max_depth`" as a RecordError whose
    path is `limits.max_depth`; a RecordError raised by a nested record's checks keeps its own
    field name under the location msgspec reports."""
    text = str(exc)
    match = _AT.match(text)
    message, where = (match["message"], match["path"].lstrip(".")) if match else (text, "")
    if "[...]" in where:  # msgspec does not name the key of a table value
        where = _name_keys(cls, data, where)
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, RecordError):
        inner = cause.path
        joined = f"{where}.{inner}" if where and inner and not inner.startswith("[") else None
        return RecordError(joined or where + inner, cause.message)
    if isinstance(cause, (ValueError, TypeError)):
        return RecordError(where, str(cause))
    unknown = re.match(r"^Object contains unknown field `(.*)`$", message, re.DOTALL)
    if unknown:
        return RecordError(where, f"unknown key {unknown[1]!r}")
    missing = re.match(r"^Object missing required field `(.*)`$", message, re.DOTALL)
    if missing:
        return RecordError(f"{where}.{missing[1]}" if where else missing[1], "is required")
    if message.startswith("Invalid enum value"):
        kind = _type_at(cls, where)
        if isinstance(kind, type) and issubclass(kind, enum.Enum):
            allowed = ", ".join(repr(m.value) for m in kind)
            return RecordError(
                where, f"must be one of {allowed}, {message[0].lower()}{message[1:]}"
            )
    return RecordError(where, message)


def _name_keys(cls: type[Record], data: Any, where: str) -> str:
    """`metrics[...]` as `metrics.accuracy`: the first key of the table whose value does not
    convert to the declared type (the path as it was when none can be found)."""
    named = ""
    node = data
    for part in re.findall(r"\[\.\.\.\]|\[\d+\]|[^.\[\]]+", where):
        if part == "[...]":
            if not isinstance(node, dict):
                return where
            table = _type_at(cls, named)
            kind = typing.get_args(table)[1] if typing.get_origin(table) is dict else Any
            for key, value in node.items():
                try:
                    msgspec.convert(value, kind, strict=False)
                except (msgspec.ValidationError, TypeError, ValueError):
                    named, node = f"{named}.{key}", value
                    break
            else:
                return where
        elif part.startswith("["):
            if not isinstance(node, (list, tuple)) or int(part[1:-1]) >= len(node):
                return where
            named, node = named + part, node[int(part[1:-1])]
        else:
            if not isinstance(node, dict) or part not in node:
                return where
            named, node = f"{named}.{part}" if named else part, node[part]
    return named


def _type_at(cls: type[Record], path: str) -> Any:
    """The declared type at a key path such as `waivers[0].severity` (None if unknown)."""
    hint: Any = cls
    for part in re.findall(r"[^.\[\]]+", path):
        if part.isdigit():
            continue
        while True:  # through Optional, tuple[X, ...] and dict[str, X] to the record
            args = [a for a in typing.get_args(hint) if a is not type(None) and a is not ...]
            if not args:
                break
            hint = args[-1]
        if not (isinstance(hint, type) and issubclass(hint, msgspec.Struct)):
            return None
        hint = next((f.type for f in msgspec.structs.fields(hint) if f.name == part), None)
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if len(args) == 1 else hint


# Construction-time type checks, compiled once per class from msgspec's resolved field types.

Checker = Callable[[Any, str], None]
_CHECKERS: dict[type, tuple[tuple[str, Checker], ...]] = {}


def _checkers(cls: type[Record]) -> tuple[tuple[str, Checker], ...]:
    found = _CHECKERS.get(cls)
    if found is None:
        found = _CHECKERS[cls] = tuple(
            (info.name, _compile(info.type)) for info in msgspec.structs.fields(cls)
        )
    return found


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60]}{'...' if len(text) > 60 else ''}"


def _compile(hint: Any) -> Checker:
    """A function that raises RecordError(path, ...) unless a value is an instance of `hint`
    as it stands (no conversion: "high" is not a Severity)."""
    origin = typing.get_origin(hint)
    if hint is Any or hint is object:
        return lambda value, path: None
    if origin in (typing.Union, types.UnionType):
        options = [o for o in typing.get_args(hint) if o is not type(None)]
        optional = len(options) < len(typing.get_args(hint))
        inner = [_compile(o) for o in options]
        names = " or ".join(_name(o) for o in options) + (" or None" if optional else "")

        def union(value: Any, path: str) -> None:
            if value is None and optional:
                return
            for check in inner:
                try:
                    check(value, path)
                    return
                except RecordError:
                    continue
            raise RecordError(path, f"expected {names}, got {_describe(value)}")

        return union
    if origin is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            item = _compile(args[0])

            def tuple_of(value: Any, path: str) -> None:
                if not isinstance(value, tuple):
                    raise RecordError(path, f"expected a tuple, got {_describe(value)}")
                for index, entry in enumerate(value):
                    item(entry, f"{path}[{index}]")

            return tuple_of
        return _instance(tuple, "a tuple")
    if origin is dict:
        key, val = (_compile(a) for a in typing.get_args(hint))

        def dict_of(value: Any, path: str) -> None:
            if not isinstance(value, dict):
                raise RecordError(path, f"expected a table, got {_describe(value)}")
            for k, v in value.items():
                key(k, path)
                val(v, f"{path}.{k}")

        return dict_of
    if origin is typing.Literal:
        allowed = typing.get_args(hint)

        def literal(value: Any, path: str) -> None:
            if value not in allowed or type(value) not in {type(a) for a in allowed}:
                raise RecordError(
                    path, f"must be one of {', '.join(map(repr, allowed))}, got {value!r}"
                )

        return literal
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        choices = ", ".join(repr(m.value) for m in hint)
        return _instance(hint, f"a {hint.__name__} (one of {choices})")
    if hint is float:  # an int is a float where a float is expected, a bool is not
        return _instance((int, float), "a number", refuse_bool=True)
    if hint is int:
        return _instance(int, "an integer", refuse_bool=True)
    if hint is dt.date:  # a datetime is a date subclass, and not a date
        return _instance(dt.date, "a date", refuse=dt.datetime)
    if isinstance(hint, type):
        return _instance(hint, _name(hint))
    raise TypeError(f"no construction check for {hint!r}")  # pragma: no cover - programming error


def _name(hint: Any) -> str:
    simple = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}
    if hint in simple:
        return simple[hint]
    return getattr(hint, "__name__", None) or repr(hint)


def _instance(
    kind: type | tuple[type, ...],
    name: str,
    refuse_bool: bool = False,
    refuse: type | None = None,
) -> Checker:
    def check(value: Any, path: str) -> None:
        if (
            not isinstance(value, kind)
            or (refuse_bool and isinstance(value, bool))
            or (refuse is not None and isinstance(value, refuse))
        ):
            raise RecordError(path, f"expected {name}, got {_describe(value)}")

    return check


def json_schema(cls: type[Record]) -> dict[str, Any]:
    """A JSON Schema (draft 2020-12) describing the JSON dump of `cls`, generated by msgspec
    and put in the shape bastion publishes (report/schema/report.schema.json): each record an
    object in `$defs` that forbids other keys, with its docstring on one line; enums inline in
    their declared order; no defaults or empty lists of required keys."""
    (root,), defs = msgspec.json.schema_components((cls,), ref_template="#/$defs/{name}")
    body = defs.pop(cls.__name__) if "$ref" in root else root
    enums = {e.__name__: [m.value for m in e] for e in _enum_classes(cls, set())}
    for name in enums:
        defs.pop(name, None)
    defs = {name: _tidy(definition, enums) for name, definition in defs.items()}
    for definition in defs.values():
        definition.pop("title", None)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **_tidy(body, enums),
        "$defs": defs,
    }


def _tidy(node: Any, enums: dict[str, list[Any]]) -> Any:
    if isinstance(node, list):
        return [_tidy(value, enums) for value in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref", "").removeprefix("#/$defs/")
    if ref in enums:
        return {"enum": enums[ref]}
    out = {k: _tidy(v, enums) for k, v in node.items() if k != "default"}
    if out.get("type") == "object":
        if "properties" in out:
            out["additionalProperties"] = False
            if "description" in out:
                out["description"] = " ".join(out["description"].split())
        else:
            out.setdefault("additionalProperties", {})
    if out.get("required") == []:
        del out["required"]
    return out


def _enum_classes(hint: Any, seen: set[Any]) -> set[type[enum.Enum]]:
    if hint in seen:
        return set()
    seen.add(hint)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return {hint}
    found: set[type[enum.Enum]] = set()
    if isinstance(hint, type) and issubclass(hint, msgspec.Struct):
        for info in msgspec.structs.fields(hint):
            found |= _enum_classes(info.type, seen)
    for arg in typing.get_args(hint):
        found |= _enum_classes(arg, seen)
    return found

"""Arrow array data checked as `Array.validate(full=True)` checks it, on the values a pickle hands
to pyarrow.lib._restore_array, without pyarrow and without building anything.

pyarrow pickles an array as `_restore_array((type, length, null_count, offset, buffers,
children, dictionary))` (array.pxi `_reduce_array_data`); `_restore_array` passes these to
`ArrayData::Make` and `MakeArray` as they are, and nothing validates them (pickle_native.py,
PKL010). In the pickle analysis every value is visible: the type as calls of pyarrow's reviewed
type builders (`type_for_alias('int64')`, `list_(field('item', ...))`, ...), each buffer as
`py_buffer(<literal bytes>)`, children and dictionary as nested tuples. This module reads them
and applies the rules of Arrow's C++ validator (cpp/src/arrow/array/validate.cc, ValidateArrayFull)
and of the array constructors that abort on a mismatch (ARROW_CHECK in array_nested.cc,
array_dict.cc):

- buffer count per type (exactly the layout's; at least two for views), as `ArrayData::Make`
  and the array classes index them before anything is validated;
- length, offset and null count (after `ArrayData::Make` adjusts it: -1 means unknown, 0 drops
  the bitmap), each buffer's size against what length + offset need, bitmaps included, and the
  null count against the bitmap;
- offsets (binary, string, list, map; int32 or int64) non-negative, non-decreasing and within
  the value buffer or the child; list-view offsets and sizes; view structs (inline padding,
  buffer index, range, prefix); union type ids and dense offsets; run ends (type, increasing,
  covering the array); dictionary indices within the dictionary; fixed-size list and struct
  children long enough; children counts and types;
- values full validation checks: UTF-8 of string values, decimal precision, whole days in
  date64, time-of-day ranges.

Where this is stricter than pyarrow's validator, pyarrow's own arrays still pass and the extra
rule closes a read out of bounds the validator misses: a negative offset (the validator only
adds it to the length), a fixed-size list whose child is shorter than (offset + length) x size
(the validator checks length x size), and children whose type differs in layout from the one
the parent declares (lists and dictionaries compare only type ids, in release builds). Types are
compared by layout: field names, nullability, metadata, time units and time zones do not change
which bytes are read, and are not compared.

Anything else is not checked and says why (`Unchecked`): a type or buffer given as anything but
the reviewed builders and literal bytes, nesting deeper than MAX_DEPTH, more elements than the
budget allows. Buffers are read in the byte order of the machine that checks (little-endian on
every platform pyarrow ships wheels for)."""

from __future__ import annotations

import math
import operator
import sys
import typing
from collections.abc import Callable, Iterator, Sequence
from itertools import islice
from typing import Any

from bastion.records import Record
from bastion.scan.embedded import MIN_PAYLOAD, worth_decoding
from bastion.scan.embedded_filter import payload_candidates

# (module, name) as the stream named the global, and the call's positional arguments; None
# when the value is not the plain result of calling a global (pickle_vm.call_of)
CallOf = Callable[[Any], "tuple[tuple[str, str], tuple[Any, ...]] | None"]

MAX_DEPTH = 64  # nested types / child arrays
MAX_ELEMENTS = 4_000_000  # offsets, views, indices, values examined one by one, per stream
MAX_FIELDS = 10_000  # fields of one struct or union type
MAX_KEPT_VALUES = 100_000  # values that could carry a payload kept for the payloads-as-data search
MIN_KEPT = MIN_PAYLOAD  # shorter values cannot hold a payload
KEEP_BATCH = 1 << 16  # values cut out of a buffer and pre-filtered at once
INT64_MAX = (1 << 63) - 1
INT64_MIN = -(1 << 63)
LIB = "pyarrow.lib"
_LITTLE = sys.byteorder == "little"


class Unchecked(Exception):
    """The data could not be checked fully; the message says what stopped the check."""


class Invalid(Exception):
    """The data is inconsistent; the message says where and how."""


class ArrowType(Record):
    """An Arrow type as far as memory layout goes. kind: null, bool, int (width bytes, param 1
    when signed), fixed (width bytes), date64, time32/time64 (unit), decimal (width, param =
    precision), binary/string (width = offset bytes), binary_view/string_view, list/map/
    list_view (width = offset bytes), fixed_size_list (param = list size), struct, union (param
    0 sparse / 1 dense, codes), dictionary (children: index, value), ree (children: run ends,
    values). Extension types are their storage type."""

    kind: str
    width: int = 0
    param: int = 0
    unit: str = ""
    children: tuple[ArrowType, ...] = ()
    codes: tuple[int, ...] = ()

    def describe(self) -> str:
        """A short name in pyarrow's words (large_ for 64-bit offsets)."""
        inner = ", ".join(child.describe() for child in self.children)
        kind, large = self.kind, "large_" if self.width == 8 else ""
        if kind == "int":
            return f"{'' if self.param else 'u'}int{self.width * 8}"
        if kind in ("binary", "string"):
            return f"{large}{kind}"
        if kind in ("list", "list_view"):
            return f"{large}{kind}<{inner}>"
        if kind == "fixed":
            return f"{self.width}-byte values"
        if kind == "decimal":
            return f"decimal{self.width * 8}({self.param})"
        if kind in ("time32", "time64"):
            return f"{kind}[{self.unit}]"
        if kind == "fixed_size_list":
            return f"fixed_size_list<{inner}>[{self.param}]"
        if kind == "union":
            return f"{'dense' if self.param else 'sparse'}_union<{inner}>"
        if kind == "ree":
            return f"run_end_encoded<{inner}>"
        return f"{kind}<{inner}>" if inner else kind


def _int(bits: int, signed: bool = True) -> ArrowType:
    return ArrowType(kind="int", width=bits // 8, param=int(signed))


def _fixed(width: int) -> ArrowType:
    return ArrowType(kind="fixed", width=width)


_STRING = ArrowType(kind="string", width=4)
# pyarrow's _type_aliases (types.pxi), which type_for_alias looks up after lower-casing
ALIASES: dict[str, ArrowType] = {
    "null": ArrowType(kind="null"),
    "bool": ArrowType(kind="bool"),
    "boolean": ArrowType(kind="bool"),
    **{f"i{b // 8}": _int(b) for b in (8, 16, 32, 64)},
    **{f"int{b}": _int(b) for b in (8, 16, 32, 64)},
    **{f"u{b // 8}": _int(b, False) for b in (8, 16, 32, 64)},
    **{f"uint{b}": _int(b, False) for b in (8, 16, 32, 64)},
    **dict.fromkeys(("f2", "halffloat", "float16"), _fixed(2)),
    **dict.fromkeys(("f4", "float", "float32"), _fixed(4)),
    **dict.fromkeys(("f8", "double", "float64"), _fixed(8)),
    **dict.fromkeys(("string", "str", "utf8"), _STRING),
    "binary": ArrowType(kind="binary", width=4),
    **dict.fromkeys(("large_string", "large_str", "large_utf8"), ArrowType(kind="string", width=8)),
    "large_binary": ArrowType(kind="binary", width=8),
    "binary_view": ArrowType(kind="binary_view"),
    "string_view": ArrowType(kind="string_view"),
    "date32": _fixed(4),
    "date32[day]": _fixed(4),
    "date64": ArrowType(kind="date64"),
    "date64[ms]": ArrowType(kind="date64"),
    "time32[s]": ArrowType(kind="time32", unit="s"),
    "time32[ms]": ArrowType(kind="time32", unit="ms"),
    "time64[us]": ArrowType(kind="time64", unit="us"),
    "time64[ns]": ArrowType(kind="time64", unit="ns"),
    **{f"timestamp[{unit}]": _fixed(8) for unit in ("s", "ms", "us", "ns")},
    **{f"duration[{unit}]": _fixed(8) for unit in ("s", "ms", "us", "ns")},
    "month_day_nano_interval": _fixed(16),
}
_DECIMALS = {
    "decimal32": (4, 9),
    "decimal64": (8, 18),
    "decimal128": (16, 38),
    "decimal256": (32, 76),
}
_PANDAS_EXTENSIONS = "pandas.core.arrays.arrow.extension_types"
_TIME_LIMITS = {"s": 86_400, "ms": 86_400_000, "us": 86_400_000_000, "ns": 86_400_000_000_000}
_DAY_MS = 86_400_000


def _is_int(value: Any) -> bool:
    return type(value) in (int, bool)


_LATIN1 = frozenset({"latin1", "latin-1", "iso-8859-1", "iso8859-1", "l1"})
_BYTEARRAY = frozenset({("builtins", "bytearray"), ("__builtin__", "bytearray")})
_ENCODE = frozenset({("_codecs", "encode"), ("codecs", "encode")})


def literal_bytes(value: Any, call_of: CallOf, depth: int = 0) -> bytes | None:
    """The bytes a buffer's source stands for, as pickle writes them: bytes, a bytearray, and
    under protocols 0-2 `_codecs.encode(text, 'latin1')` and `bytearray(...)` of those. Only
    exactly these (an encoding other than Latin-1 would give other bytes): None otherwise."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray):
        return bytes(value)
    call = call_of(value)
    if call is None or depth > 4:
        return None
    named, args = call
    if named in _BYTEARRAY and not args:
        return b""
    if named in _BYTEARRAY and len(args) == 1 and not isinstance(args[0], (str, int)):
        return literal_bytes(args[0], call_of, depth + 1)
    if (
        (named in _BYTEARRAY or named in _ENCODE)
        and len(args) == 2
        and isinstance(args[0], str)
        and isinstance(args[1], str)
        and args[1].lower() in _LATIN1
    ):
        try:
            return args[0].encode("latin-1")
        except UnicodeEncodeError:
            return None
    return None


class TypeReader:
    """An ArrowType from the calls of pyarrow's reviewed type builders (their signatures as in
    types.pxi); anything else raises Unchecked."""

    def __init__(self, call_of: CallOf) -> None:
        self.call_of = call_of

    def read(self, value: Any, depth: int = 0) -> ArrowType:
        if depth > MAX_DEPTH:
            raise Unchecked(f"types nested deeper than {MAX_DEPTH}")
        if isinstance(value, str):
            known = ALIASES.get(value.lower())
            if known is None:
                raise Unchecked(f"type alias {value[:40]!r} is not one pyarrow knows")
            return known
        call = self.call_of(value)
        if call is None:
            raise Unchecked("a type that is not a call of one of pyarrow's type builders")
        (module, name), args = call
        if module == _PANDAS_EXTENSIONS:
            return self._pandas_extension(name, args, depth)
        if module != LIB:
            raise Unchecked(f"a type built by {module}.{name}"[:120])
        builder = getattr(self, f"_b_{name}", None)
        if builder is None:
            raise Unchecked(f"a type built by {module}.{name}"[:120])
        try:
            result: ArrowType = builder(args, depth + 1)
        except (IndexError, TypeError, ValueError) as exc:
            raise Unchecked(f"pyarrow.lib.{name} with arguments bastion does not read") from exc
        return result

    # one method per reviewed builder: _b_<name>(args, depth)

    def _b_type_for_alias(self, args: tuple[Any, ...], depth: int) -> ArrowType:
        (alias,) = args
        if not isinstance(alias, str):
            raise TypeError
        return self.read(alias, depth)

    def _b_field(self, args: tuple[Any, ...], depth: int) -> ArrowType:
        return self.read(args[1], depth)  # field(name, type, nullable, metadata)

    def _b_timestamp(self, args: tuple[Any, ...], depth: int) -> ArrowType:
        return _fixed(8)  # timestamp(unit, tz): the builder checks the unit

    def _b_binary(self, args: tuple[Any, ...], depth: int) -> ArrowType:
        length = args[0] if args else -1
        if not _is_int(length) or length < -1 or length > INT64_MAX:
            raise ValueError
        return ArrowType(kind="binary", width=4) if length == -1 else _fixed(length)

    def _decimal(self, name: str, args: tuple[Any, ...]) -> ArrowType:
        width, most = _DECIMALS[name]
        precision = args[0]
        if not _is_int(precision) or not 1 <= precision <= most:
            raise ValueError
        return ArrowType(kind="decimal", width=width, param=precision)

    def _b_decimal32(self, args: tuple[Any, ...], depth: int) -> ArrowType:
        return self._decimal("decimal32", args)

    def _b_decimal64(self, args: tuple[Any, ...], depth: int) -> ArrowType:
        return self._decimal("decimal64", args)

    def _b_decimal128(self, args: tuple[Any, ...], depth: int) -> ArrowType:
        return self._decimal("decimal128", args)

    def _b_decimal256(self, args: tuple[Any, ...], depth: int) -> ArrowType:
        return self._decimal("decimal256", args)

    def _b_list_(self, args: tuple[Any, ...], depth: int) -> ArrowType:
        value = self.read(args[0], depth)
        size = args[1] if len(args) > 1 else -1
        if not _is_int(size) or size < -1 or size > 2**31 - 1:
            raise ValueError
        if size == -1:
            return ArrowType(kind="list", width=4, children=(value,))
        return ArrowType(kind="fixed_size_list", param=size, children=(value,))

    def _b_large_list(self, args: tuple[Any, ...], depth: int) -> ArrowType:
        return ArrowType(kind="list", width=8, children=(self.read(args[0], depth),))

    def _b_list_view(self, args: tuple[Any, ...], depth: int) -> ArrowType:
        return ArrowType(kind="list_view", width=4, children=(self.read(args[0], depth),))

    def _b_large_list_view(self, args: tuple[Any, ...], depth: int) -> ArrowType:
        return ArrowType(kind="list_view", width=8, children=(self.read(args[0], depth),))

    def _b_map_(self, args: tuple[Any, ...], depth: int) -> ArrowType:
        entries = ArrowType(
            kind="struct", children=(self.read(args[0], depth), self.read(args[1], depth))
        )
        return ArrowType(kind="map", width=4, children=(entries,))

    def fields(self, value: Any, depth: int) -> list[tuple[Any, ArrowType]]:
        """(name, type) of a struct's or union's field list: fields, (name, type) pairs, or a
        dict of name -> type (what pyarrow.struct accepts)."""
        items = list(value.items()) if isinstance(value, dict) else value
        if not isinstance(items, (list, tuple)) or len(items) > MAX_FIELDS:
            raise TypeError
        out: list[tuple[Any, ArrowType]] = []
        for item in items:
            if isinstance(item, tuple):
                name, kind = item
                out.append((name, self.read(kind, depth)))
                continue
            call = self.call_of(item)
            if call is None or call[0] != (LIB, "field"):
                raise TypeError
            out.append((call[1][0], self.read(call[1][1], depth)))
        return out

    def _b_struct(self, args: tuple[Any, ...], depth: int) -> ArrowType:
        (fields,) = args
        return ArrowType(kind="struct", children=tuple(t for _, t in self.fields(fields, depth)))

    def _b_union(self, args: tuple[Any, ...], depth: int) -> ArrowType:
        fields = [t for _, t in self.fields(args[0], depth)]
        mode = {"sparse": 0, "dense": 1, 0: 0, 1: 1}.get(args[1])  # 0/1: UnionMode_SPARSE/DENSE
        codes = args[2] if len(args) > 2 else None
        codes = list(range(len(fields))) if codes is None else codes
        if (
            mode is None
            or not isinstance(codes, (list, tuple))
            or len(codes) != len(fields)
            or not all(_is_int(c) and 0 <= c <= 127 for c in codes)
            or len(set(codes)) != len(codes)
        ):
            raise ValueError  # the builder refuses these
        return ArrowType(kind="union", param=mode, children=tuple(fields), codes=tuple(codes))

    def _b_dictionary(self, args: tuple[Any, ...], depth: int) -> ArrowType:
        index, value = self.read(args[0], depth), self.read(args[1], depth)
        if index.kind != "int":
            raise ValueError  # the builder refuses a non-integer index type
        return ArrowType(kind="dictionary", children=(index, value))

    def _b_run_end_encoded(self, args: tuple[Any, ...], depth: int) -> ArrowType:
        ends, value = self.read(args[0], depth), self.read(args[1], depth)
        if ends.kind != "int" or not ends.param or ends.width == 1:
            raise ValueError  # run ends are int16, int32 or int64
        return ArrowType(kind="ree", children=(ends, value))

    def _b_uuid(self, args: tuple[Any, ...], depth: int) -> ArrowType:
        return _fixed(16)

    def _b_bool8(self, args: tuple[Any, ...], depth: int) -> ArrowType:
        return _int(8)

    def _b_json_(self, args: tuple[Any, ...], depth: int) -> ArrowType:
        storage = self.read(args[0], depth) if args else _STRING
        if storage.kind not in ("string", "string_view"):
            raise ValueError
        return storage

    def _b_opaque(self, args: tuple[Any, ...], depth: int) -> ArrowType:
        return self.read(args[0], depth)

    def _b_fixed_shape_tensor(self, args: tuple[Any, ...], depth: int) -> ArrowType:
        value, shape = self.read(args[0], depth), args[1]
        if not isinstance(shape, (list, tuple)) or not all(_is_int(d) and d >= 0 for d in shape):
            raise ValueError
        size = math.prod(shape)
        if size > 2**31 - 1:
            raise ValueError
        return ArrowType(kind="fixed_size_list", param=size, children=(value,))

    def _pandas_extension(self, name: str, args: tuple[Any, ...], depth: int) -> ArrowType:
        """pandas' period and interval types: their __arrow_ext_deserialize__ builds the type
        from the pickled metadata (period: int64 storage whatever it is handed; interval: a
        struct of the pickled storage's 'left' field type, twice)."""
        if name == "ArrowPeriodType.__arrow_ext_deserialize__":
            return _int(64)
        if name == "ArrowIntervalType.__arrow_ext_deserialize__":
            call = self.call_of(args[0]) if args else None
            if call is not None and call[0] == (LIB, "struct") and call[1]:
                for field_name, kind in self.fields(call[1][0], depth + 1):
                    if field_name == "left":
                        return ArrowType(kind="struct", children=(kind, kind))
        raise Unchecked(f"a type built by {_PANDAS_EXTENSIONS}.{name}"[:120])


class Budget:
    """Elements examined one by one, shared by every array of one pickle stream."""

    def __init__(self, elements: int | None = None) -> None:
        self.total = MAX_ELEMENTS if elements is None else elements
        self.left = self.total

    def spend(self, count: int, what: str) -> None:
        if count > self.left:
            raise Unchecked(f"{what}: more than the {self.total:,} elements checked per stream")
        self.left -= count


# buffer specs of a layout: "bitmap", "null" (always absent), "var" (bytes), or a byte width
Spec = str | int


def layout(kind: ArrowType) -> tuple[list[Spec], bool]:
    """Buffer specs (DataType::layout()) and whether variadic buffers follow."""
    k = kind.kind
    if k == "null":
        return ["null"], False
    if k == "bool":
        return ["bitmap", "bitmap"], False
    if k in ("int", "fixed", "decimal"):
        return ["bitmap", kind.width], False
    if k in ("date64", "time64"):
        return ["bitmap", 8], False
    if k == "time32":
        return ["bitmap", 4], False
    if k in ("binary", "string"):
        return ["bitmap", kind.width, "var"], False
    if k in ("binary_view", "string_view"):
        return ["bitmap", 16], True
    if k in ("list", "map"):
        return ["bitmap", kind.width], False
    if k == "list_view":
        return ["bitmap", kind.width, kind.width], False
    if k in ("fixed_size_list", "struct"):
        return ["bitmap"], False
    if k == "union":
        return (["null", 1, 4] if kind.param else ["null", 1]), False
    if k == "dictionary":
        return layout(kind.children[0])
    return ["null"], False  # ree


def _may_have_bitmap(kind: ArrowType) -> bool:
    return kind.kind not in ("null", "union", "ree")


def _num_fields(kind: ArrowType) -> int:
    if kind.kind in ("list", "map", "list_view", "fixed_size_list"):
        return 1
    if kind.kind in ("struct", "union"):
        return len(kind.children)
    return 2 if kind.kind == "ree" else 0


class ArrayInfo(Record):
    """What a checked array data tuple is, as its parent sees it."""

    kind: ArrowType
    length: int
    offset: int
    null_count: int  # after ArrayData::Make's adjustment (-1: unknown)
    has_bitmap: bool
    values: bytes | None = None  # buffer #1 (a child's run ends)
    children: tuple[ArrayInfo, ...] = ()


class _Data:
    """One array data tuple, read."""

    def __init__(
        self,
        kind: ArrowType,
        length: int,
        null_count: int,
        offset: int,
        buffers: list[bytes | None],
        children: Sequence[Any],
        dictionary: Any,
    ) -> None:
        self.kind = kind
        self.length = length
        self.null_count = null_count
        self.offset = offset
        self.buffers = buffers
        self.children = children
        self.dictionary = dictionary


def _words(buffer: bytes, width: int, start: int, count: int, signed: bool = True) -> Sequence[int]:
    """`count` integers of `width` bytes from element `start` of `buffer` (sizes checked)."""
    view = memoryview(buffer)[start * width : (start + count) * width]
    code: Any = {1: "b", 2: "h", 4: "i", 8: "q"}[width]
    if _LITTLE:
        return typing.cast("Sequence[int]", view.cast(code if signed else code.upper()))
    return [
        int.from_bytes(view[i * width : (i + 1) * width], "little", signed=signed)
        for i in range(count)
    ]


class ArrayChecker:
    """Checks `_restore_array` argument tuples; one per pickle stream (one budget)."""

    def __init__(self, call_of: CallOf, budget: Budget | None = None) -> None:
        self.call_of = call_of
        self.types = TypeReader(call_of)
        self.budget = budget or Budget()
        self.active: set[int] = set()
        # the values of consistent binary and string arrays that could carry a payload, each
        # its own bytes with the array and row it came from (a payload carried in an Arrow
        # string column is searched like one in an object column)
        self.values: list[tuple[str, bytes]] = []
        self.values_truncated = False

    def _keep(self, values: Sequence[bytes], rows: Sequence[int], where: str) -> None:
        """Keep the values (of rows `rows` of the array at `where`) that could carry a payload:
        the search's own bulk pre-filter, then its per-value one (ordinary text is not kept)."""
        for index in payload_candidates(values):
            value = values[index]
            if not worth_decoding(value):
                continue
            if len(self.values) >= MAX_KEPT_VALUES:
                self.values_truncated = True
                return
            self.values.append((f"{where} row {rows[index]}", value))

    # --- reading the tuple ---------------------------------------------------------------

    def check(self, data: Any, path: str = "array", depth: int = 0) -> ArrayInfo:
        """The checked array, or Invalid / Unchecked with the reason (the path names the
        child: array.children[0].dictionary ...)."""
        if depth > MAX_DEPTH:
            raise Unchecked(f"{path}: arrays nested deeper than {MAX_DEPTH}")
        if id(data) in self.active:
            raise Invalid(f"{path}: the array data contains itself (pyarrow recurses without end)")
        self.active.add(id(data))
        try:
            return self._check(self._read(data, path), path, depth)
        finally:
            self.active.discard(id(data))

    def _read(self, data: Any, path: str) -> _Data:
        if not isinstance(data, (tuple, list)):
            raise Unchecked(f"{path}: array data that is not a literal tuple")
        if len(data) != 7:
            raise Invalid(f"{path}: array data of {len(data)} items, not 7 (the loader raises)")
        dtype, length, null_count, offset, buffers, children, dictionary = data
        kind = self.types.read(dtype)
        for name, number in (("length", length), ("null count", null_count), ("offset", offset)):
            if not _is_int(number):
                raise Unchecked(f"{path}: {name} is not a literal integer")
            if not INT64_MIN <= number <= INT64_MAX:
                raise Invalid(f"{path}: {name} {number} does not fit in int64 (the loader raises)")
        if not isinstance(buffers, (tuple, list)) or not isinstance(children, (tuple, list)):
            raise Unchecked(f"{path}: buffers or children that are not a literal list")
        read: list[bytes | None] = []
        for index, buffer in enumerate(buffers):
            if buffer is None:
                read.append(None)
                continue
            call = self.call_of(buffer)
            data = None
            if call is not None and call[0] == (LIB, "py_buffer") and len(call[1]) == 1:
                data = literal_bytes(call[1][0], self.call_of)
            if data is None:
                raise Unchecked(f"{path}: buffer #{index} is not py_buffer of literal bytes")
            read.append(data)
        return _Data(kind, length, null_count, offset, read, children, dictionary)

    # --- the rules -----------------------------------------------------------------------

    def _check(self, d: _Data, path: str, depth: int) -> ArrayInfo:
        kind = d.kind
        where = f"{path} ({kind.describe()})"
        specs, variadic = layout(kind)
        count = len(d.buffers)
        if (count < len(specs)) if variadic else (count != len(specs)):
            expected = f"at least {len(specs)}" if variadic else f"{len(specs)}"
            raise Invalid(f"{where}: {count} buffers, the type has {expected}")
        # ArrayData::Make's adjustment (AdjustNonNullable)
        null_count, buffers = d.null_count, list(d.buffers)
        if kind.kind == "null":
            null_count, buffers[0] = d.length, None
        elif _may_have_bitmap(kind):
            if null_count == 0:
                buffers[0] = None
            elif null_count == -1 and buffers[0] is None:
                null_count = 0
        else:
            null_count = 0
        length, offset = d.length, d.offset
        if length < 0:
            raise Invalid(f"{where}: negative length {length}")
        if offset < 0:
            raise Invalid(f"{where}: negative offset {offset} (reads before the buffers)")
        end = length + offset
        if end > INT64_MAX:
            raise Invalid(f"{where}: length + offset overflows int64")
        for index, buffer in enumerate(buffers):
            spec = specs[index] if index < len(specs) else "var"
            if buffer is None:
                if index >= len(specs):
                    raise Invalid(f"{where}: variadic buffer #{index} is missing")
                continue
            need = 0
            if spec == "bitmap" and length > 0:
                need = (end + 7) // 8
            elif isinstance(spec, int) and length > 0:
                need = end * spec
                if need > INT64_MAX:
                    raise Invalid(f"{where}: length + offset overflow the buffer size")
            if len(buffer) < need:
                raise Invalid(
                    f"{where}: buffer #{index} holds {len(buffer)} bytes, length {length} at "
                    f"offset {offset} needs {need}"
                )
        if kind.kind == "dictionary" and d.dictionary is None:
            raise Invalid(f"{where}: no dictionary")
        if kind.kind != "dictionary" and d.dictionary is not None:
            raise Invalid(f"{where}: a dictionary on a type that has none")
        bitmap = buffers[0] if specs[0] == "bitmap" else None
        # ValidateNulls
        if kind.kind != "null" and null_count > 0 and bitmap is None:
            raise Invalid(f"{where}: {null_count} nulls but no validity bitmap")
        if null_count > length:
            raise Invalid(f"{where}: null count {null_count} exceeds length {length}")
        if null_count < -1:
            raise Invalid(f"{where}: negative null count {null_count}")
        if null_count != -1:
            actual = 0
            if bitmap is not None:
                actual = length - self._set_bits(bitmap, offset, length)
            elif kind.kind == "null":
                actual = length
            if actual != null_count:
                raise Invalid(f"{where}: null count {null_count}, the bitmap has {actual} nulls")
        if len(d.children) != _num_fields(kind):
            raise Invalid(f"{where}: {len(d.children)} children, the type has {_num_fields(kind)}")
        data = _Data(kind, length, null_count, offset, buffers, d.children, d.dictionary)
        children = self._by_type(data, bitmap, where, path, depth)
        return ArrayInfo(
            kind=kind,
            length=length,
            offset=offset,
            null_count=null_count,
            has_bitmap=bitmap is not None,
            values=buffers[1] if len(buffers) > 1 else None,
            children=children,
        )

    def _set_bits(self, bitmap: bytes, offset: int, length: int) -> int:
        if length == 0:
            return 0
        chunk = bitmap[offset // 8 : (offset + length + 7) // 8]
        bits = int.from_bytes(chunk, "little") >> (offset % 8)
        return (bits & ((1 << length) - 1)).bit_count()

    def _valid_slots(self, bitmap: bytes | None, offset: int, length: int) -> Iterator[int]:
        """Logical indices of the non-null slots (all when there is no bitmap)."""
        if bitmap is None:
            yield from range(length)
            return
        for i in range(length):
            at = offset + i
            if bitmap[at >> 3] >> (at & 7) & 1:
                yield i

    def _child(self, d: _Data, index: int, path: str, depth: int) -> ArrayInfo:
        return self.check(d.children[index], f"{path}.children[{index}]", depth + 1)

    def _same(self, declared: ArrowType, child: ArrayInfo, where: str, what: str) -> None:
        if child.kind != declared:
            raise Invalid(
                f"{where}: {what} is {child.kind.describe()}, the type says {declared.describe()}"
            )

    def _by_type(
        self, d: _Data, bitmap: bytes | None, where: str, path: str, depth: int
    ) -> tuple[ArrayInfo, ...]:
        """The rules of the type; returns the checked children."""
        k = d.kind.kind
        if k in ("int", "fixed", "decimal", "date64", "time32", "time64", "bool", "dictionary"):
            if d.length > 0 and d.buffers[1] is None:
                raise Invalid(f"{where}: no values buffer")
            if k == "dictionary":
                self._dictionary(d, bitmap, where, path, depth)
            elif k in ("decimal", "date64", "time32", "time64"):
                self._values(d, bitmap, where)
            return ()
        if k == "union":
            return self._union(d, where, path, depth)
        if k == "ree":
            return self._run_ends(d, where, path, depth)
        checked: list[ArrayInfo] = []
        if k in ("binary", "string"):
            self._binary(d, bitmap, where)
        elif k in ("binary_view", "string_view"):
            self._views(d, bitmap, where)
        elif k in ("list", "map", "list_view"):
            child = self._child(d, 0, path, depth)
            checked.append(child)
            self._same(d.kind.children[0], child, where, "the child")
            if k == "map":  # MapArray::ValidateChildData (ARROW_CHECK_OK: the loader aborts)
                keys = child.children[0]
                if child.null_count != 0 and child.has_bitmap:
                    raise Invalid(f"{where}: the map's entries have nulls")
                if keys.null_count != 0 and keys.has_bitmap:
                    raise Invalid(f"{where}: the map's keys have nulls")
            if k == "list_view":
                self._list_views(d, child.length, where)
            else:
                self._offsets(d, child.offset + child.length, child.length, where, "list")
        elif k == "fixed_size_list":
            child = self._child(d, 0, path, depth)
            checked.append(child)
            self._same(d.kind.children[0], child, where, "the child")
            need = (d.length + d.offset) * d.kind.param
            if child.length < need:
                raise Invalid(
                    f"{where}: the child has {child.length} values, (offset {d.offset} + length "
                    f"{d.length}) x size {d.kind.param} need {need}"
                )
        elif k == "struct":
            for index, declared in enumerate(d.kind.children):
                child = self._child(d, index, path, depth)
                checked.append(child)
                if child.length < d.length + d.offset:
                    raise Invalid(
                        f"{where}: child #{index} has length {child.length}, offset + length "
                        f"need {d.length + d.offset}"
                    )
                self._same(declared, child, where, f"child #{index}")
        return tuple(checked)

    # --- per-type rules ------------------------------------------------------------------

    def _values(self, d: _Data, bitmap: bytes | None, where: str) -> None:
        """Full validation of values: decimal precision, date64 whole days, times of day."""
        kind, buffer = d.kind, d.buffers[1]
        if d.length == 0 or buffer is None:
            return
        self.budget.spend(d.length, where)
        if kind.kind == "decimal":
            limit, width = 10**kind.param, kind.width
            view = memoryview(buffer)
            for i in self._valid_slots(bitmap, d.offset, d.length):
                at = (d.offset + i) * width
                value = int.from_bytes(view[at : at + width], "little", signed=True)
                if not -limit < value < limit:
                    raise Invalid(f"{where}: value {i} does not fit precision {kind.param}")
            return
        width = 4 if kind.kind == "time32" else 8
        values = _words(buffer, width, d.offset, d.length)
        if kind.kind == "date64":
            bad = (i for i in self._valid_slots(bitmap, d.offset, d.length) if values[i] % _DAY_MS)
        else:
            top = _TIME_LIMITS[kind.unit]
            if min(values) >= 0 and max(values) < top:
                return
            bad = (
                i for i in self._valid_slots(bitmap, d.offset, d.length) if not 0 <= values[i] < top
            )
        first = next(bad, None)
        if first is not None:
            raise Invalid(f"{where}: value {first} ({values[first]}) is out of range for the type")

    def _offsets(self, d: _Data, limit: int, extent_limit: int, where: str, what: str) -> None:
        """Offsets of binary, string, list and map arrays (ValidateOffsetsAndSizes, then the
        first/last checks of ValidateBinaryLike / ValidateListLike)."""
        width, buffer = d.kind.width, d.buffers[1]
        if buffer is None:
            if d.length > 0:
                raise Invalid(f"{where}: no offsets buffer")
            return
        size = len(buffer)
        required = d.length + d.offset + 1 if (d.length > 0 or size > 0) else 0
        if size // width < required:
            raise Invalid(
                f"{where}: offsets buffer of {size} bytes, length {d.length} at offset "
                f"{d.offset} needs {required} offsets"
            )
        if required == 0:
            return
        self.budget.spend(d.length + 1, where)
        offsets = _words(buffer, width, d.offset, d.length + 1)
        previous = offsets[0]
        if previous < 0:
            raise Invalid(f"{where}: first offset {previous} is negative")
        ascending = all(map(operator.le, offsets, islice(offsets, 1, None)))
        if not ascending or offsets[-1] > limit:  # the first offset at fault, named
            for i in range(1, d.length + 1):
                current = offsets[i]
                if current < previous:
                    raise Invalid(
                        f"{where}: offset {i} ({current}) is below offset {i - 1} ({previous})"
                    )
                if current > limit:
                    raise Invalid(
                        f"{where}: offset {i} ({current}) is past the {what} data ({limit})"
                    )
                previous = current
        if d.length > 0 and offsets[d.length] > extent_limit:
            raise Invalid(
                f"{where}: last offset {offsets[d.length]} is past the {what} data ({extent_limit})"
            )

    def _binary(self, d: _Data, bitmap: bytes | None, where: str) -> None:
        data = d.buffers[2]
        if data is None:
            raise Invalid(f"{where}: no data buffer")
        self._offsets(d, len(data), len(data), where, "value")
        if d.length == 0 or d.buffers[1] is None:
            return
        offsets = _words(d.buffers[1], d.kind.width, d.offset, d.length + 1)
        rows: Sequence[int] = (
            range(d.length)
            if bitmap is None
            else list(self._valid_slots(bitmap, d.offset, d.length))
        )
        for start in range(0, len(rows), KEEP_BATCH):
            batch = rows[start : start + KEEP_BATCH]
            self._keep([data[offsets[i] : offsets[i + 1]] for i in batch], batch, where)
        if d.kind.kind != "string":
            return
        first, last = offsets[0], offsets[d.length]
        span = data[first:last]
        try:
            span.decode("utf-8")
            starts = span.isascii() or all(
                o >= last or not 0x80 <= span[o - first] < 0xC0 for o in offsets
            )
        except UnicodeDecodeError:
            starts = False
        if starts:
            return  # valid UTF-8 cut at character starts: every value is valid
        for i in self._valid_slots(bitmap, d.offset, d.length):
            try:
                data[offsets[i] : offsets[i + 1]].decode("utf-8")
            except UnicodeDecodeError:
                raise Invalid(f"{where}: value {i} is not valid UTF-8") from None

    def _views(self, d: _Data, bitmap: bytes | None, where: str) -> None:
        views = d.buffers[1]
        needed = d.length + d.offset
        if views is None or len(views) // 16 < needed:
            held = 0 if views is None else len(views)
            raise Invalid(f"{where}: views buffer of {held} bytes, {needed} views needed")
        if d.length == 0:
            return
        data = d.buffers[2:]
        self.budget.spend(d.length, where)
        text = d.kind.kind == "string_view"
        values: list[bytes] = []
        rows: list[int] = []
        try:
            for i in self._valid_slots(bitmap, d.offset, d.length):
                view = views[(d.offset + i) * 16 : (d.offset + i + 1) * 16]
                size = int.from_bytes(view[0:4], "little", signed=True)
                if size < 0:
                    raise Invalid(f"{where}: view {i} has negative size {size}")
                if size <= 12:
                    if any(view[4 + size :]):
                        raise Invalid(f"{where}: inline view {i} has non-zero padding")
                    value = view[4 : 4 + size]
                else:
                    index = int.from_bytes(view[8:12], "little", signed=True)
                    start = int.from_bytes(view[12:16], "little", signed=True)
                    if index < 0 or start < 0 or index >= len(data):
                        raise Invalid(
                            f"{where}: view {i} points at buffer {index} offset {start}, there are "
                            f"{len(data)} data buffers"
                        )
                    buffer = data[index]
                    assert buffer is not None  # missing variadic buffers were refused above
                    if start + size > len(buffer):
                        raise Invalid(
                            f"{where}: view {i} reads bytes {start}-{start + size} of data buffer "
                            f"{index}, which holds {len(buffer)}"
                        )
                    value = buffer[start : start + size]
                    if value[:4] != view[4:8]:
                        raise Invalid(f"{where}: view {i}'s prefix differs from its data")
                if size >= MIN_KEPT:
                    values.append(bytes(value))
                    rows.append(i)
                    if len(values) >= KEEP_BATCH:
                        self._keep(values, rows, where)
                        values, rows = [], []
                if text:
                    try:
                        value.decode("utf-8")
                    except UnicodeDecodeError:
                        raise Invalid(f"{where}: value {i} is not valid UTF-8") from None
        finally:  # the values read before an inconsistent view are searched too
            self._keep(values, rows, where)

    def _list_views(self, d: _Data, limit: int, where: str) -> None:
        width, offsets_buffer, sizes_buffer = d.kind.width, d.buffers[1], d.buffers[2]
        if offsets_buffer is None or sizes_buffer is None:
            raise Invalid(f"{where}: no offsets or sizes buffer")
        required = d.length + d.offset if (d.length > 0 or len(offsets_buffer) > 0) else 0
        if len(offsets_buffer) // width < required:
            raise Invalid(f"{where}: offsets buffer of {len(offsets_buffer)} bytes is too small")
        if len(sizes_buffer) // width < d.length + d.offset:
            raise Invalid(f"{where}: sizes buffer of {len(sizes_buffer)} bytes is too small")
        if d.length == 0:
            return
        self.budget.spend(d.length, where)
        offsets = _words(offsets_buffer, width, d.offset, d.length)
        sizes = _words(sizes_buffer, width, d.offset, d.length)
        for i in range(d.length):
            start, size = offsets[i], sizes[i]
            if size < 0 or start < 0 or start > limit or size > limit - start:
                raise Invalid(
                    f"{where}: list view {i} covers {start}..{start + size}, the child has {limit}"
                )

    def _dictionary(
        self, d: _Data, bitmap: bytes | None, where: str, path: str, depth: int
    ) -> None:
        index, value = d.kind.children
        values = self.check(d.dictionary, f"{path}.dictionary", depth + 1)
        self._same(value, values, where, "the dictionary")
        if d.length == 0 or d.buffers[1] is None:
            return
        self.budget.spend(d.length, where)
        indices = _words(d.buffers[1], index.width, d.offset, d.length, signed=bool(index.param))
        top = values.length - 1
        if min(indices) >= 0 and max(indices) <= top:
            return
        for i in self._valid_slots(bitmap, d.offset, d.length):
            if not 0 <= indices[i] <= top:
                raise Invalid(
                    f"{where}: index {i} is {indices[i]}, the dictionary has {values.length} values"
                )

    def _union(self, d: _Data, where: str, path: str, depth: int) -> tuple[ArrayInfo, ...]:
        kind, dense = d.kind, bool(d.kind.param)
        if d.buffers[0] is not None:
            raise Invalid(f"{where}: a union has no validity bitmap (the loader aborts)")
        lengths: dict[int, int] = {}
        checked: list[ArrayInfo] = []
        for index, declared in enumerate(kind.children):
            child = self._child(d, index, path, depth)
            checked.append(child)
            if not dense and child.length < d.length + d.offset:
                raise Invalid(
                    f"{where}: child #{index} has length {child.length}, offset + length need "
                    f"{d.length + d.offset}"
                )
            self._same(declared, child, where, f"child #{index}")
            lengths[kind.codes[index]] = child.length
        if d.length == 0:
            return tuple(checked)
        if d.buffers[1] is None or (dense and d.buffers[2] is None):
            raise Invalid(f"{where}: no type ids or offsets buffer")
        self.budget.spend(d.length, where)
        codes = _words(d.buffers[1], 1, d.offset, d.length)
        if not set(codes) <= lengths.keys():
            bad = next(i for i, code in enumerate(codes) if code not in lengths)
            raise Invalid(f"{where}: value {bad} has type id {codes[bad]}, not one of the type's")
        if not dense:
            return tuple(checked)
        offsets = _words(d.buffers[2] or b"", 4, d.offset, d.length)  # checked above
        last: dict[int, int] = {}
        for i in range(d.length):
            code, at = codes[i], offsets[i]
            if at < 0 or at >= lengths[code] or at < last.get(code, 0):
                raise Invalid(
                    f"{where}: value {i} points at {at} in child of type id {code} (length "
                    f"{lengths[code]}, previous offset {last.get(code, 0)})"
                )
            last[code] = at
        return tuple(checked)

    def _run_ends(self, d: _Data, where: str, path: str, depth: int) -> tuple[ArrayInfo, ...]:
        ends_kind, value_kind = d.kind.children
        if d.buffers[0] is not None:
            raise Invalid(f"{where}: a run-end encoded array has no validity bitmap")
        ends = self._child(d, 0, path, depth)
        values = self._child(d, 1, path, depth)
        if d.offset + d.length > (1 << (ends_kind.width * 8 - 1)) - 1:
            raise Invalid(f"{where}: offset + length do not fit the run end type")
        self._same(ends_kind, ends, where, "the run ends")
        self._same(value_kind, values, where, "the values")
        if ends.null_count != 0 and ends.has_bitmap:
            raise Invalid(f"{where}: the run ends have nulls")
        if ends.length > values.length:
            raise Invalid(f"{where}: {ends.length} run ends for {values.length} values")
        if ends.length == 0:
            if d.length:
                raise Invalid(f"{where}: length {d.length} with no run ends")
            return ends, values
        assert ends.values is not None  # a non-empty int array has its values buffer
        self.budget.spend(ends.length, where)
        run_ends = _words(ends.values, ends_kind.width, ends.offset, ends.length)
        if run_ends[-1] < d.offset + d.length:
            raise Invalid(
                f"{where}: last run end {run_ends[-1]} is before offset + length "
                f"{d.offset + d.length}"
            )
        previous = 0
        for i, run_end in enumerate(run_ends):
            if run_end <= previous:
                raise Invalid(f"{where}: run end {i} ({run_end}) does not increase")
            previous = run_end
        return ends, values

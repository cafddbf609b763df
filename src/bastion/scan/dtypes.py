"""NumPy dtypes described by an artifact: a .npy header's `descr` literal, or the dtype joblib
pickles next to each array. Whether the data is a pickle (an object dtype) and how large one item
is are decided the way NumPy decides them — by building the dtype from the literal and asking
`hasobject` — never by matching the text. Only plain literals reach NumPy (no artifact objects,
no code). Without NumPy, anything but a plain simple type code counts as possibly-object."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from bastion.records import Record

MAX_LITERAL_NODES = 500_000  # a 1 MiB header holds fewer
MAX_LITERAL_DEPTH = 32
NPY_ITEM_HASOBJECT = 0x01  # numpy's dtype flag: items hold Python object references

# A plain, fixed-size type code: byte order, kind, size (what np.save writes for numbers,
# strings, bytes, datetimes). Anything else is left to NumPy or treated as possibly-object.
_SIMPLE_CODE = re.compile(
    r"^[<>|=]?(?:([biufcSUVa])(\d{1,9})|([?bBhHiIlLqQefdgFDG])|"
    r"([mM])8(?:\[\d{0,9}[a-zA-Z]{1,3}\])?)$"
)
_CHAR_SIZES = {
    "?": 1,
    "b": 1,
    "B": 1,
    "h": 2,
    "H": 2,
    "i": 4,
    "I": 4,
    "l": 8,
    "L": 8,
    "q": 8,
    "Q": 8,
    "e": 2,
    "f": 4,
    "d": 8,
    "g": 16,
    "F": 8,
    "D": 16,
    "G": 32,
}


class DtypeInfo(Record):
    itemsize: int | None  # None: unknown (NumPy missing and not a simple code)
    has_object: bool


class InvalidDtype(ValueError):
    """The description is not one NumPy accepts (so the loader refuses the file too)."""


# A joblib dtype is pickled as numpy.dtype(*args) followed by BUILD(state); nested dtypes (of
# fields and subarrays) are pickled objects too. The caller maps such an object to its
# (args, state) pair, or None when it is not a pickled numpy dtype.
NestedDtype = Callable[[Any], "tuple[tuple[Any, ...], Any] | None"]


def npy_dtype(descr: object) -> DtypeInfo:
    """The dtype of a .npy header's `descr`, as `numpy.lib.format` builds it."""
    _check_literal(descr)
    try:
        import numpy
        from numpy.lib.format import descr_to_dtype
    except ImportError:
        return _without_numpy(descr)
    try:
        dtype = _first_accepted(descr_to_dtype, numpy.dtype, descr)
    except RecursionError as exc:
        raise InvalidDtype("dtype description nested too deeply") from exc
    except Exception as exc:  # numpy raises many types on hostile descriptions
        raise InvalidDtype(f"NumPy refuses the dtype: {type(exc).__name__}: {exc}") from exc
    if not isinstance(dtype, numpy.dtype):
        raise InvalidDtype("not a dtype")
    return DtypeInfo(itemsize=int(dtype.itemsize), has_object=bool(dtype.hasobject))


def _first_accepted(
    current: Callable[[Any], Any], legacy: Callable[[Any], Any], descr: object
) -> Any:
    """NumPy >= 1.17 reads headers with descr_to_dtype; older releases passed the literal to
    numpy.dtype, which also accepts dict descriptions. A description either accepts counts."""
    try:
        return current(descr)
    except Exception:
        return legacy(descr)


def is_object_dtype(descr: object) -> bool:
    """Would NumPy read the data of an array with this `descr` as a pickle? Descriptions NumPy
    refuses count as object (fail closed)."""
    try:
        return npy_dtype(descr).has_object
    except InvalidDtype:
        return True


def pickled_dtype(args: tuple[Any, ...], state: Any, nested: NestedDtype) -> DtypeInfo:
    """The dtype unpickling builds: numpy.dtype(*args), then __setstate__(state). The state's
    flags decide `hasobject` (an int64 whose state says object is read as a pickle by joblib)."""
    try:
        import numpy
    except ImportError:
        return _pickled_without_numpy(args, state)
    try:
        dtype = _build_pickled(numpy, args, state, nested, 0)
    except InvalidDtype:
        raise
    except RecursionError as exc:
        raise InvalidDtype("dtype nested too deeply") from exc
    except Exception as exc:  # numpy raises many types on hostile states
        raise InvalidDtype(f"NumPy refuses the dtype: {type(exc).__name__}: {exc}") from exc
    return DtypeInfo(itemsize=int(dtype.itemsize), has_object=bool(dtype.hasobject))


def _build_pickled(
    numpy: Any, args: tuple[Any, ...], state: Any, nested: NestedDtype, depth: int
) -> Any:
    if depth > MAX_LITERAL_DEPTH:
        raise InvalidDtype("dtype nested too deeply")
    _check_literal(args)

    def convert(value: Any) -> Any:
        pair = nested(value)
        if pair is not None:
            return _build_pickled(numpy, pair[0], pair[1], nested, depth + 1)
        if isinstance(value, tuple):
            return tuple(convert(v) for v in value)
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        return value

    state = convert(state)
    _check_literal(state, allow=numpy.dtype)
    _check_state(state, numpy.dtype)
    dtype = numpy.dtype(*args)
    if state is not None:
        dtype.__setstate__(state)
    return dtype


# What each length of a dtype's pickled state holds (NumPy's arraydescr_setstate): NumPy
# trusts the types of these items, and some wrong ones crash it (numpy 2.4: a 6-item state
# whose fields are an int is a segmentation fault), so they are checked here first.
_STATE_ITEMS = {
    9: ("version", "endian", "subarray", "names", "fields", "elsize", "alignment", "flags", "meta"),
    8: ("version", "endian", "subarray", "names", "fields", "elsize", "alignment", "flags"),
    7: ("version", "endian", "subarray", "names", "fields", "elsize", "alignment"),
    6: ("version", "endian", "subarray", "fields", "elsize", "alignment"),
    5: ("endian", "subarray", "fields", "elsize", "alignment"),
}


def _check_state(state: object, dtype: type) -> None:
    """InvalidDtype unless `state` is one NumPy writes: a tuple of 5 to 9 items; ints where
    it keeps numbers; a one-character byte order; no subarray or a (dtype, shape of
    non-negative ints) pair; no names or a tuple of strings; no fields or a dict from strings
    to (dtype, offset[, title]), each field inside the item; never a subarray and fields
    together, nor fields in the legacy forms that have no names; the names and fields
    naming the same things (titles aside); no metadata, a dict, or a datetime's
    (dict, unit) pair. Anything else may crash NumPy (tests/scan/test_npy_dtypes.py)."""
    if state is None:
        return
    if type(state) is not tuple or len(state) not in _STATE_ITEMS:
        raise InvalidDtype("dtype state is not one NumPy writes")
    items = dict(zip(_STATE_ITEMS[len(state)], state, strict=True))
    for name in ("version", "elsize", "alignment", "flags"):
        if name in items and type(items[name]) is not int:
            raise InvalidDtype(f"dtype state: {name} is not an integer")
    endian = items["endian"]
    if type(endian) is not str or len(endian) != 1:
        raise InvalidDtype("dtype state: the byte order is not one character")
    subarray = items["subarray"]
    if subarray is not None and not (
        type(subarray) is tuple
        and len(subarray) == 2
        and isinstance(subarray[0], dtype)
        and type(subarray[1]) is tuple
        and all(type(n) is int and n >= 0 for n in subarray[1])
    ):
        raise InvalidDtype("dtype state: the subarray is not a (dtype, shape) pair")
    names, fields = items.get("names"), items["fields"]
    if names is not None and not (type(names) is tuple and all(type(n) is str for n in names)):
        raise InvalidDtype("dtype state: the field names are not strings")
    if fields is not None and not (
        type(fields) is dict
        and all(
            type(key) is str
            and type(value) is tuple
            and len(value) in (2, 3)
            and isinstance(value[0], dtype)
            and type(value[1]) is int
            for key, value in fields.items()
        )
    ):
        raise InvalidDtype("dtype state: the fields are not (dtype, offset) by name")
    if "names" not in items and fields is not None:  # numpy 2.4 dies on these (SIGSEGV)
        raise InvalidDtype("dtype state: fields in the legacy form without names")
    elsize = items["elsize"]
    for value in (fields or {}).values():  # NumPy writes each field inside the item
        if value[1] < 0 or (elsize >= 0 and value[1] + value[0].itemsize > elsize):
            raise InvalidDtype("dtype state: a field outside the item")
    if subarray is not None and fields is not None:  # NumPy never writes both
        raise InvalidDtype("dtype state: both a subarray and fields")
    if "names" in items and (names is None) != (fields is None):
        raise InvalidDtype("dtype state: names and fields disagree")
    if names is not None and fields is not None:
        titles = {value[2] for value in fields.values() if len(value) == 3}
        if not set(names) <= set(fields) or not set(fields) <= set(names) | titles:
            raise InvalidDtype("dtype state: names and fields disagree")
    meta = items.get("meta")
    if not (meta is None or type(meta) is dict or _datetime_meta(meta)):
        raise InvalidDtype("dtype state: the metadata is not what NumPy writes")


def _datetime_meta(meta: object) -> bool:
    """A datetime dtype's state metadata: (its metadata dict or None, (unit, num, den, events))."""
    return (
        type(meta) is tuple
        and len(meta) == 2
        and (meta[0] is None or type(meta[0]) is dict)
        and type(meta[1]) is tuple
        and len(meta[1]) == 4
        and type(meta[1][0]) in (bytes, str)
        and all(type(n) is int for n in meta[1][1:])
    )


def _check_literal(value: object, allow: type | None = None) -> None:
    """Only plain data (and, for states, already-built dtypes) is handed to NumPy."""
    stack: list[tuple[object, int]] = [(value, 0)]
    seen = 0
    while stack:
        item, depth = stack.pop()
        seen += 1
        if seen > MAX_LITERAL_NODES or depth > MAX_LITERAL_DEPTH:
            raise InvalidDtype("dtype description too large or nested too deeply")
        if item is None or type(item) in (str, bytes, int, bool, float):
            continue
        if allow is not None and isinstance(item, allow):
            continue
        if type(item) in (tuple, list):
            stack.extend((v, depth + 1) for v in item)  # type: ignore[attr-defined]
        elif type(item) is dict:
            for key, val in item.items():  # type: ignore[attr-defined]
                stack.append((key, depth + 1))
                stack.append((val, depth + 1))
        else:
            raise InvalidDtype(f"dtype description holds a {type(item).__name__}")


def _simple(code: object) -> DtypeInfo | None:
    if not isinstance(code, str):
        return None
    match = _SIMPLE_CODE.match(code)
    if match is None:
        return None
    sized_kind, digits, char, time_kind = match.groups()
    if sized_kind:
        size = int(digits) * (4 if sized_kind == "U" else 1)
    elif char:
        size = _CHAR_SIZES[char]
    else:
        assert time_kind
        size = 8
    return DtypeInfo(itemsize=size, has_object=False)


def _without_numpy(descr: object) -> DtypeInfo:
    return _simple(descr) or DtypeInfo(itemsize=None, has_object=True)


def _pickled_without_numpy(args: tuple[Any, ...], state: Any) -> DtypeInfo:
    simple = _simple(args[0]) if args else None
    if simple is None:
        return DtypeInfo(itemsize=None, has_object=True)
    if state is None:
        return simple
    if not isinstance(state, tuple) or len(state) < 8:
        return DtypeInfo(itemsize=None, has_object=True)
    subarray, names, fields, elsize, flags = state[2], state[3], state[4], state[5], state[7]
    if subarray is not None or names is not None or fields is not None:
        return DtypeInfo(itemsize=None, has_object=True)
    if not isinstance(flags, int) or flags & NPY_ITEM_HASOBJECT:
        return DtypeInfo(itemsize=None, has_object=True)
    if isinstance(elsize, int) and elsize > 0 and elsize != simple.itemsize:
        return DtypeInfo(itemsize=None, has_object=True)
    return simple

"""Pickles of pyarrow and pandas objects with Arrow data. Every pyarrow callable their
__reduce__ methods name was read in pyarrow's source: the type, field, schema, buffer, scalar
and table builders build data and check it (allowlisted through tools/gen_allowlist.py), while
pyarrow.lib._restore_array (every pickled Arrow array) and DictionaryScalar._reconstruct
rebuild C++ data from pickled lengths, offsets and indices without validating them. A crafted
array built only of those names crashes the loading process or returns heap memory when used
(shown here in a child process). bastion checks each call's arguments as Arrow's full
validation would (scan/arrow_layout.py): what pyarrow pickles is clean, every crafted
inconsistency is PKL010 high with the inconsistency as evidence (and is shown invalid or unsafe
in pyarrow itself), and what cannot be checked stays PKL010 medium."""

from __future__ import annotations

import datetime
import decimal
import io
import os
import pickle
import struct
import subprocess
import sys
import zoneinfo
from typing import Any

import numpy as np
import pytest
from corpus import opcodes as op
from helpers import gate_fails, scan_data
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bastion.scan.pickle_globals import classify
from bastion.scan.pickle_native import UNVALIDATED

pa = pytest.importorskip("pyarrow")
pd = pytest.importorskip("pandas")

PROTOCOLS = (2, 4, 5)
RESTORE = "pyarrow.lib._restore_array"
DICT_SCALAR = "pyarrow.lib.DictionaryScalar._reconstruct"


def findings(data: bytes) -> dict[str, tuple[str, str]]:
    result = scan_data(data, "x.pkl")
    assert not result.errors and not result.incomplete
    return {f.evidence: (f.rule_id, f.severity.value) for f in result.findings}


class _Ext(pa.ExtensionType):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__(pa.int64(), "bastion.test")

    def __arrow_ext_serialize__(self) -> bytes:
        return b""

    @classmethod
    def __arrow_ext_deserialize__(cls, storage_type: Any, serialized: bytes) -> _Ext:
        return cls()


def _arrays() -> list[Any]:
    """An array of every Arrow type family, as pyarrow builds them."""
    stamp = datetime.datetime(2026, 1, 1)
    values: list[tuple[Any, list[Any]]] = [
        (pa.null(), [None]),
        (pa.bool_(), [True, None]),
        (pa.int8(), [1, None]),
        (pa.uint64(), [2**63]),
        (pa.float16(), [np.float16(1.5)]),
        (pa.float64(), [1.5]),
        (pa.string(), ["a", None]),
        (pa.large_string(), ["b"]),
        (pa.string_view(), ["c"]),
        (pa.binary(), [b"x"]),
        (pa.large_binary(), [b"y"]),
        (pa.binary_view(), [b"z"]),
        (pa.binary(3), [b"abc"]),
        (pa.date32(), [datetime.date(2026, 1, 1)]),
        (pa.date64(), [datetime.date(2026, 1, 1)]),
        (pa.time32("ms"), [datetime.time(1)]),
        (pa.time64("ns"), [datetime.time(1)]),
        (pa.timestamp("ns"), [stamp]),
        (pa.timestamp("us", tz="Europe/Paris"), [stamp]),
        (pa.timestamp("s", tz="+01:00"), [stamp]),
        (pa.duration("ms"), [datetime.timedelta(1)]),
        (pa.month_day_nano_interval(), [None]),
        (pa.decimal32(5, 2), [decimal.Decimal("1.5")]),
        (pa.decimal64(12, 2), [decimal.Decimal("1.5")]),
        (pa.decimal128(10, 3), [decimal.Decimal("1.5")]),
        (pa.decimal256(40, 5), [decimal.Decimal("1.5")]),
        (pa.list_(pa.int32()), [[1, 2], None]),
        (pa.large_list(pa.string()), [["a"]]),
        (pa.list_(pa.int8(), 2), [[1, 2]]),
        (pa.list_view(pa.int32()), [[1]]),
        (pa.large_list_view(pa.int32()), [[1]]),
        (pa.struct([("a", pa.int32()), ("b", pa.string())]), [{"a": 1, "b": "x"}]),
        (pa.map_(pa.string(), pa.int64()), [[("a", 1)]]),
    ]
    out = [pa.array(v, type=t) for t, v in values]
    out.append(pa.array(["a", "b", "a"]).dictionary_encode())
    out.append(pa.compute.run_end_encode(pa.array([1, 1, 2])))
    codes = pa.array([0, 1], type=pa.int8())
    out.append(pa.UnionArray.from_sparse(codes, [pa.array([1, 2]), pa.array(["a", "b"])]))
    offsets = pa.array([0, 0], type=pa.int32())
    out.append(pa.UnionArray.from_dense(codes, offsets, [pa.array([1]), pa.array(["b"])]))
    out.append(pa.array([b"0" * 16], type=pa.uuid()))
    out.append(pa.array([1, 0], type=pa.int8()).cast(pa.bool8()))
    out.append(pa.array(['{"a": 1}'], type=pa.json_(pa.string())))
    out.append(pa.ExtensionArray.from_storage(pa.opaque(pa.int64(), "t", "v"), pa.array([1])))
    tensor = pa.fixed_shape_tensor(pa.int32(), [2])
    out.append(pa.ExtensionArray.from_storage(tensor, pa.array([[1, 2]], pa.list_(pa.int32(), 2))))
    return out


def _arrow_frame() -> Any:
    return pd.DataFrame(
        {
            "string": pd.array(["a", None], dtype="string[pyarrow]"),
            "int": pd.array([1, None], dtype="int64[pyarrow]"),
            "ts": pd.array(
                [pd.Timestamp("2026-01-01", tz="UTC")] * 2,
                dtype=pd.ArrowDtype(pa.timestamp("ns", tz="UTC")),
            ),
            "dec": pd.array([decimal.Decimal("1.1")] * 2, dtype=pd.ArrowDtype(pa.decimal128(5, 2))),
            "list": pd.array([[1], [2]], dtype=pd.ArrowDtype(pa.list_(pa.int64()))),
            "struct": pd.array([{"a": 1}] * 2, dtype=pd.ArrowDtype(pa.struct([("a", pa.int64())]))),
            "large": pd.array(["x", "y"], dtype=pd.ArrowDtype(pa.large_string())),
            "dict": pd.Series(
                pd.arrays.ArrowExtensionArray(pa.array(["x", "y"]).dictionary_encode())
            ),
            "nan_string": pd.array(["a", "b"], dtype=pd.StringDtype("pyarrow", na_value=np.nan)),
        }
    )


def _data_objects() -> list[Any]:
    """Objects with Arrow arrays inside: every pickle of them calls _restore_array."""
    arrays = _arrays()
    table = pa.table({"a": [1, 2], "b": ["x", "y"]}, metadata={"k": "v"})
    frame = _arrow_frame()
    periods = pd.DataFrame(
        {"p": pd.period_range("2026-01", periods=2, freq="M"), "i": pd.interval_range(0, 2)}
    )
    return [
        *arrays,
        pa.chunked_array([arrays[2], arrays[2]]),
        table,
        table.to_batches()[0],
        frame,
        frame.set_index("string"),
        pd.Index(["a", "b"], dtype="string[pyarrow]"),
        pa.Table.from_pandas(frame),
        pa.Table.from_pandas(periods),  # pandas' Arrow extension types (period, interval)
    ]


def _type_objects() -> list[Any]:
    """Types, fields, schemas and scalars: no array data, so nothing unvalidated."""
    table = pa.table({"a": [1, 2], "b": ["x", "y"]}, metadata={"k": "v"})
    return [
        *(a.type for a in _arrays()),
        table.schema,
        table.schema.field("a"),
        pa.field("t", pa.timestamp("us", tz="Asia/Tokyo"), nullable=False, metadata={"m": "1"}),
        pa.scalar(1),
        pa.scalar("x"),
        pa.scalar(datetime.datetime(2026, 1, 1), type=pa.timestamp("us", "UTC")),
        pa.scalar([1, 2]),
        pa.scalar({"a": 1}),
        pd.ArrowDtype(pa.list_(pa.string())),
        pa.py_buffer(b"abc"),
    ]


class _Recorder(pickle.Unpickler):
    """Names a pickle resolves, as the real loader resolves them (our own data only)."""

    def find_class(self, module: str, name: str) -> Any:
        self.seen.add((module, name))
        return super().find_class(module, name)


def _resolved(data: bytes) -> set[tuple[str, str]]:
    loader = _Recorder(io.BytesIO(data))
    loader.seen = set()  # type: ignore[attr-defined]
    loader.load()
    return loader.seen  # type: ignore[attr-defined]


def test_every_pyarrow_name_real_pickles_use_is_reviewed() -> None:
    """Completeness: each pyarrow callable these pickles name is allowlisted for its use, or
    is one of the reviewed unvalidated reconstructions — nothing is left to PKL003."""
    seen: set[tuple[str, str]] = set()
    dictionary_scalar = pa.array(["a", "b"]).dictionary_encode()[1]
    for value in [*_data_objects(), *_type_objects(), dictionary_scalar]:
        for protocol in PROTOCOLS:
            seen |= _resolved(pickle.dumps(value, protocol=protocol))
    arrow = {(m, n) for m, n in seen if m.startswith("pyarrow")}
    assert ("pyarrow.lib", "_restore_array") in arrow  # the enumeration reached the arrays
    for module, name in sorted(arrow):
        if name == "DictionaryScalar":  # protocol 2: getattr(DictionaryScalar, '_reconstruct')
            continue
        assert (module, name) in UNVALIDATED or classify(module, name).permits("c"), (module, name)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_types_fields_schemas_and_scalars_are_clean(protocol: int) -> None:
    for value in _type_objects():
        assert findings(pickle.dumps(value, protocol=protocol)) == {}, value


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_arrow_data_pyarrow_pickles_is_clean(protocol: int) -> None:
    """Arrays of every type family, sliced arrays, chunked arrays, tables, batches and pandas
    frames with Arrow columns: every _restore_array call's data is consistent."""
    values = [*_data_objects(), *(a.slice(1) for a in _arrays() if len(a) > 1)]
    values.append(pa.array(["x", None, "yz"] * 40).slice(7, 50))  # bitmap at a bit offset
    for value in values:
        found = findings(pickle.dumps(value, protocol=protocol))
        assert found == {}, (type(value), getattr(value, "type", None), found)


def test_dictionary_scalar_is_clean() -> None:
    scalar = pa.array(["a", "b"]).dictionary_encode()[1]
    for protocol in PROTOCOLS:
        assert findings(pickle.dumps(scalar, protocol=protocol)) == {}


def test_a_user_extension_type_is_not_clean() -> None:
    """An extension type pickles as getattr(<its class>, '__arrow_ext_deserialize__'): the class
    is the user's code (or an attacker's), judged like any unknown callable."""
    data = pickle.dumps(pa.ExtensionArray.from_storage(_Ext(), pa.array([1])), protocol=4)
    found = findings(data)
    assert found[f"{__name__}._Ext.__arrow_ext_deserialize__"] == ("PKL003", "high")


# --- the risk, demonstrated in a child process ---------------------------------------------------


class _Reduce:
    """Pickles as `target(*args)`: a hand-built reduce, as an attacker would write it."""

    def __init__(self, target: Any, *args: Any) -> None:
        self.target, self.args = target, args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.target, self.args


def _crafted_array(arrow_type: Any, length: int, buffers: list[Any]) -> _Reduce:
    # (type, length, null_count, offset, buffers, children, dictionary): _reduce_array_data
    return _Reduce(pa.lib._restore_array, (arrow_type, length, 0, 0, buffers, [], None))


def _in_child(data: bytes, code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-c",
            f"import pickle, sys; value = pickle.loads(sys.stdin.buffer.read())\n{code}",
        ],
        input=data.decode("latin-1"),
        capture_output=True,
        text=True,
        encoding="latin-1",
        timeout=120,
    )


def test_a_crafted_array_crashes_the_loader_on_first_use() -> None:
    """int64 array of 2**30 values over an 8-byte buffer: pickle.loads succeeds, sum() reads
    8 GiB past the buffer and the loading process dies of a memory fault."""
    data = pickle.dumps(_crafted_array(pa.int64(), 1 << 30, [None, pa.py_buffer(bytes(8))]))
    ran = _in_child(data, "print('loaded', len(value), flush=True)\nprint(value.sum())")
    assert "loaded 1073741824" in ran.stdout
    assert ran.returncode < 0, (ran.returncode, ran.stderr[-500:])  # killed by a signal
    assert _flagged(data) == (
        "array (int64): buffer #1 holds 8 bytes, length 1073741824 at offset 0 needs 8589934592"
    )
    assert gate_fails(scan_data(data, "x.pkl"))


def test_a_crafted_binary_array_returns_memory_past_its_buffer() -> None:
    """A binary value whose end offset (4096) lies past its 3-byte data buffer: reading it
    returns 4 KiB of the loading process's memory (or faults)."""
    offsets = pa.py_buffer(struct.pack("<ii", 0, 4096))
    data = pickle.dumps(
        _crafted_array(pa.binary(), 1, [None, offsets, pa.py_buffer(b"abc")]), protocol=4
    )
    ran = _in_child(data, "print(len(value[0].as_py()))")
    assert ran.returncode < 0 or ran.stdout.split() == ["4096"], (ran.returncode, ran.stdout)
    assert _flagged(data) == "array (binary): offset 1 (4096) is past the value data (3)"


def test_a_crafted_dictionary_scalar_reads_before_its_dictionary() -> None:
    """DictionaryScalar._reconstruct checks the index's type, not its value: a negative
    index makes as_py() read before the dictionary's buffers."""
    kind = pa.dictionary(pa.int64(), pa.string())
    crafted = _Reduce(pa.lib.DictionaryScalar._reconstruct, kind, True, -(10**12), pa.array(["a"]))
    data = pickle.dumps(crafted, protocol=4)
    ran = _in_child(data, "print('loaded', flush=True)\nprint(value.as_py())")
    assert "loaded" in ran.stdout and ran.returncode < 0, (ran.returncode, ran.stderr[-300:])
    assert findings(data) == {
        f"{DICT_SCALAR}: index -1000000000000 is outside the dictionary of 1 values": (
            "PKL010",
            "high",
        )
    }


def _flagged(data: bytes) -> str:
    """The one finding on a crafted pickle: PKL010 high; returns the inconsistency it names."""
    found = findings(data)
    assert len(found) == 1, found
    ((evidence, (rule, severity)),) = found.items()
    assert (rule, severity) == ("PKL010", "high"), found
    prefix = next(name for name in (RESTORE, DICT_SCALAR) if evidence.startswith(name))
    return evidence[len(prefix) + 2 :]


# --- crafted arrays: one per rule, each made by editing what pyarrow pickles ------------------

T, LENGTH, NULLS, OFFSET, BUFFERS, CHILDREN, DICTIONARY = range(7)


def _plain(array: Any) -> list[Any]:
    """The argument pyarrow pickles for `array` (_reduce_array_data), as nested lists to edit."""

    def walk(data: Any) -> list[Any]:
        kind, length, nulls, offset, buffers, children, dictionary = data
        return [
            kind,
            length,
            nulls,
            offset,
            list(buffers),
            [walk(child) for child in children],
            None if dictionary is None else walk(dictionary),
        ]

    return walk(array.__reduce__()[1][0])


def _packed(data: list[Any]) -> tuple[Any, ...]:
    out = list(data)
    out[CHILDREN] = [_packed(child) for child in data[CHILDREN]]
    out[DICTIONARY] = None if data[DICTIONARY] is None else _packed(data[DICTIONARY])
    return tuple(out)


def _buf(fmt: str, *values: Any) -> Any:
    return pa.py_buffer(struct.pack("<" + fmt, *values))


def _crafted_cases() -> dict[str, tuple[list[Any], str]]:
    """name -> (edited data, the inconsistency bastion must name)."""
    cases: dict[str, tuple[list[Any], str]] = {}

    def case(name: str, array: Any, edit: Any, detail: str) -> None:
        data = _plain(array)
        edit(data)
        cases[name] = (data, detail)

    ints = pa.array([1, 2], pa.int64())
    case(
        "buffer count",
        ints,
        lambda d: d.__setitem__(BUFFERS, d[BUFFERS][1:]),
        "array (int64): 1 buffers, the type has 2",
    )
    case(
        "negative offset",
        ints,
        lambda d: d.__setitem__(slice(1, 4), [1, 0, -(1 << 36)]),
        "array (int64): negative offset -68719476736 (reads before the buffers)",
    )
    nullable = pa.array([1, None] * 8, pa.int64())
    case(
        "validity bitmap too small",
        nullable,
        lambda d: d[BUFFERS].__setitem__(0, pa.py_buffer(b"\x01")),
        "array (int64): buffer #0 holds 1 bytes, length 16 at offset 0 needs 2",
    )
    case(
        "null count over length",
        pa.array([1, None], pa.int64()),
        lambda d: d.__setitem__(NULLS, 5),
        "array (int64): null count 5 exceeds length 2",
    )
    case(
        "null count against the bitmap",
        pa.array([1, None], pa.int64()),
        lambda d: d[BUFFERS].__setitem__(0, pa.py_buffer(b"\x03")),
        "array (int64): null count 1, the bitmap has 0 nulls",
    )
    strings = pa.array(["ab", "c"])
    case(
        "offsets decrease",
        strings,
        lambda d: d[BUFFERS].__setitem__(1, _buf("iii", 0, 2, 1)),
        "array (string): offset 2 (1) is below offset 1 (2)",
    )
    case(
        "negative first offset",
        strings,
        lambda d: d[BUFFERS].__setitem__(1, _buf("iii", -8, 2, 3)),
        "array (string): first offset -8 is negative",
    )
    case(
        "offsets buffer too small",
        pa.array(["ab", "c"], pa.large_string()),
        lambda d: d[BUFFERS].__setitem__(1, _buf("qq", 0, 2)),
        "array (large_string): offsets buffer of 16 bytes, length 2 at offset 0 needs 3 offsets",
    )
    case(
        "invalid UTF-8",
        strings,
        lambda d: d[BUFFERS].__setitem__(2, pa.py_buffer(b"a\xffc")),
        "array (string): value 0 is not valid UTF-8",
    )
    lists = pa.array([[1, 2]], pa.list_(pa.int32()))
    case(
        "list offset past the child",
        lists,
        lambda d: d[BUFFERS].__setitem__(1, _buf("ii", 0, 5)),
        "array (list<int32>): offset 1 (5) is past the list data (2)",
    )
    case(
        "list child of another type",
        pa.array([[1, 2]], pa.list_(pa.int64())),
        lambda d: d.__setitem__(CHILDREN, [_plain(pa.array([1, 2], pa.int32()))]),
        "array (list<int64>): the child is int32, the type says int64",
    )
    case(
        "list view past the child",
        pa.array([[1]], pa.list_view(pa.int32())),
        lambda d: d[BUFFERS].__setitem__(2, _buf("i", 5)),
        "array (list_view<int32>): list view 0 covers 0..5, the child has 1",
    )
    case(
        "fixed-size list child too short",
        pa.array([[1, 2], [3, 4]], pa.list_(pa.int8(), 2)),
        lambda d: d[CHILDREN][0].__setitem__(LENGTH, 2),
        "array (fixed_size_list<int8>[2]): the child has 2 values, (offset 0 + length 2) x "
        "size 2 need 4",
    )
    case(
        "struct child too short",
        pa.array([{"a": 1}, {"a": 2}], pa.struct([("a", pa.int64())])),
        lambda d: d[CHILDREN][0].__setitem__(LENGTH, 1),
        "array (struct<int64>): child #0 has length 1, offset + length need 2",
    )
    case(
        "dictionary index out of range",
        pa.array(["a", "b", "a"]).dictionary_encode(),
        lambda d: d[BUFFERS].__setitem__(1, _buf("iii", 0, 1, 5)),
        "array (dictionary<int32, string>): index 2 is 5, the dictionary has 2 values",
    )
    codes = pa.array([0, 1], type=pa.int8())
    case(
        "union type id",
        pa.UnionArray.from_sparse(codes, [pa.array([1, 2]), pa.array(["a", "b"])]),
        lambda d: d[BUFFERS].__setitem__(1, pa.py_buffer(b"\x00\x07")),
        "array (sparse_union<int64, string>): value 1 has type id 7, not one of the type's",
    )
    dense = pa.UnionArray.from_dense(
        codes, pa.array([0, 0], type=pa.int32()), [pa.array([1]), pa.array(["b"])]
    )
    case(
        "dense union offset",
        dense,
        lambda d: d[BUFFERS].__setitem__(2, _buf("ii", 0, 3)),
        "array (dense_union<int64, string>): value 1 points at 3 in child of type id 1 "
        "(length 1, previous offset 0)",
    )
    encoded = pa.compute.run_end_encode(pa.array([1, 1, 2]))
    case(
        "run ends that do not increase",
        encoded,
        lambda d: d[CHILDREN][0][BUFFERS].__setitem__(1, _buf("ii", 3, 3)),
        "array (run_end_encoded<int32, int64>): run end 1 (3) does not increase",
    )
    case(
        "run ends short of the length",
        encoded,
        lambda d: d[CHILDREN][0][BUFFERS].__setitem__(1, _buf("ii", 1, 2)),
        "array (run_end_encoded<int32, int64>): last run end 2 is before offset + length 3",
    )
    case(
        "view past its data buffer",
        pa.array([b"x" * 20], pa.binary_view()),
        lambda d: d[BUFFERS].__setitem__(1, _buf("i4sii", 20, b"xxxx", 0, 10)),
        "array (binary_view): view 0 reads bytes 10-30 of data buffer 0, which holds 20",
    )
    case(
        "decimal over its precision",
        pa.array([decimal.Decimal("1.5")], pa.decimal128(5, 2)),
        lambda d: d[BUFFERS].__setitem__(
            1, pa.py_buffer((10**6).to_bytes(16, "little", signed=True))
        ),
        "array (decimal128(5)): value 0 does not fit precision 5",
    )
    return cases


CRAFTED = _crafted_cases()


@pytest.mark.parametrize("name", sorted(CRAFTED))
def test_a_crafted_array_is_reported_with_its_inconsistency(name: str) -> None:
    data, detail = CRAFTED[name]
    for protocol in PROTOCOLS:
        crafted = pickle.dumps(_Reduce(pa.lib._restore_array, _packed(data)), protocol=protocol)
        assert _flagged(crafted) == detail, protocol


_JUDGE_IN_PYARROW = """
import os, pickle, sys
cases = pickle.loads(sys.stdin.buffer.read())  # our own test data: name -> crafted pickle
for name, data in sorted(cases.items()):
    pid = os.fork()
    if pid == 0:
        try:
            value = pickle.loads(data)
            value.validate(full=True)
        except Exception:
            os._exit(3)
        value.to_pylist()  # validate passed: use the data as a reader would
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    print(name, "|", "raised" if os.WEXITSTATUS(status) == 3 and os.WIFEXITED(status)
          else "passed" if status == 0 else "crashed", flush=True)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_every_crafted_array_is_invalid_or_unsafe_in_pyarrow() -> None:
    """Neither too strict nor too loose: each crafted pickle, loaded by pyarrow in a child
    process, fails validate(full=True) or crashes the process when its data is used."""
    pickles = {
        name: pickle.dumps(_Reduce(pa.lib._restore_array, _packed(data)), protocol=4)
        for name, (data, _detail) in CRAFTED.items()
    }
    ran = subprocess.run(
        [sys.executable, "-c", _JUDGE_IN_PYARROW],
        input=pickle.dumps(pickles),
        capture_output=True,
        timeout=300,
    )
    outcomes = dict(line.split(" | ") for line in ran.stdout.decode().splitlines() if " | " in line)
    assert set(outcomes) == set(CRAFTED), ran.stderr[-500:]
    assert all(outcome in ("raised", "crashed") for outcome in outcomes.values()), outcomes
    # pyarrow's validator misses a negative offset; the data then reads far before its buffer
    assert outcomes["negative offset"] == "crashed"


def test_a_self_referencing_array_is_reported() -> None:
    """A child list holding the data tuple itself: pyarrow's rebuild recurses without end."""
    children: list[Any] = []
    data = (pa.list_(pa.int64()), 0, 0, 0, [None, None], children, None)
    children.append(data)
    result = scan_data(pickle.dumps(_Reduce(pa.lib._restore_array, data), protocol=4), "x.pkl")
    restore = [f for f in result.findings if f.rule_id == "PKL010"]
    assert [(f.severity.value, f.evidence) for f in restore] == [
        (
            "high",
            f"{RESTORE}: array.children[0]: the array data contains itself (pyarrow recurses "
            "without end)",
        )
    ]
    assert gate_fails(result)  # the payload walk also stops at its node bound (LIM001)


def _reduced_pickle(data: Any) -> bytes:
    return pickle.dumps(_Reduce(pa.lib._restore_array, data), protocol=4)


@pytest.mark.parametrize(
    "edit,reason",
    [
        (lambda d: d.__setitem__(T, _Reduce(io.BytesIO, b"")), "a type built by _io.BytesIO"),
        (lambda d: d[BUFFERS].__setitem__(1, _Reduce(bytes, 16)), "not py_buffer of literal"),
        (lambda d: d.__setitem__(LENGTH, _Reduce(int, "2")), "length is not a literal integer"),
        (lambda d: d.__setitem__(T, "month_interval"), "type alias 'month_interval'"),
    ],
)
def test_what_cannot_be_checked_stays_medium(edit: Any, reason: str) -> None:
    data = _plain(pa.array([1, 2], pa.int64()))
    edit(data)
    result = scan_data(_reduced_pickle(_packed(data)), "x.pkl")
    restore = [f for f in result.findings if f.evidence == RESTORE]
    assert len(restore) == 1 and restore[0].severity.value == "medium", result.findings
    assert reason in restore[0].message, restore[0].message


def test_over_the_element_budget_stays_medium(monkeypatch: pytest.MonkeyPatch) -> None:
    from bastion.scan import arrow_layout

    monkeypatch.setattr(arrow_layout, "MAX_ELEMENTS", 100)
    data = pickle.dumps(pa.array([str(i) for i in range(500)]), protocol=4)
    result = scan_data(data, "x.pkl")
    assert [(f.evidence, f.severity.value) for f in result.findings] == [(RESTORE, "medium")]
    assert "elements checked per stream" in result.findings[0].message


def _maybe_null(values: Any) -> Any:
    return st.none() | values


_LEAVES: list[tuple[Any, Any]] = [
    (pa.null(), st.none()),
    (pa.bool_(), st.booleans()),
    (pa.int8(), st.integers(-128, 127)),
    (pa.uint32(), st.integers(0, 2**32 - 1)),
    (pa.int64(), st.integers(-(2**63), 2**63 - 1)),
    (pa.float64(), st.floats(allow_nan=False)),
    (pa.string(), st.text(max_size=8)),
    (pa.large_string(), st.text(max_size=8)),
    (pa.string_view(), st.text(max_size=20)),
    (pa.binary(), st.binary(max_size=8)),
    (pa.large_binary(), st.binary(max_size=8)),
    (pa.binary_view(), st.binary(max_size=20)),
    (pa.binary(3), st.binary(min_size=3, max_size=3)),
    (pa.date32(), st.dates()),
    (pa.date64(), st.dates()),
    (pa.time32("s"), st.times().map(lambda t: t.replace(microsecond=0))),
    (pa.time64("us"), st.times()),
    (pa.timestamp("us", tz="UTC"), st.datetimes(timezones=st.just(datetime.timezone.utc))),
    (pa.duration("s"), st.integers(-(10**12), 10**12)),
    (pa.decimal128(9, 3), st.decimals(-999_999, 999_999, places=3)),
    (pa.decimal256(40, 5), st.decimals(-(10**30), 10**30, places=5)),
]


def _nested(children: Any) -> Any:
    """(type, value strategy) of nested types around the drawn children."""
    lists = st.lists
    return st.one_of(
        children.map(lambda c: (pa.list_(c[0]), lists(_maybe_null(c[1]), max_size=3))),
        children.map(lambda c: (pa.large_list(c[0]), lists(_maybe_null(c[1]), max_size=3))),
        children.map(lambda c: (pa.list_view(c[0]), lists(_maybe_null(c[1]), max_size=3))),
        children.map(
            lambda c: (pa.list_(c[0], 2), lists(_maybe_null(c[1]), min_size=2, max_size=2))
        ),
        children.map(
            lambda c: (
                pa.map_(pa.string(), c[0]),
                lists(st.tuples(st.text(max_size=3), _maybe_null(c[1])), max_size=3),
            )
        ),
        lists(children, min_size=1, max_size=3).map(
            lambda cs: (
                pa.struct([(f"f{i}", c[0]) for i, c in enumerate(cs)]),
                st.fixed_dictionaries({f"f{i}": _maybe_null(c[1]) for i, c in enumerate(cs)}),
            )
        ),
    )


_TYPED = st.recursive(st.sampled_from(_LEAVES), _nested, max_leaves=4)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_arrays_pyarrow_builds_are_clean(data: Any) -> None:
    """Property: arrays pyarrow builds from random values of random (nested) types, with
    nulls, dictionary- or run-end-encoded or in a union, sliced anywhere, pickle to data
    bastion finds consistent."""
    kind, values = data.draw(_TYPED)
    array = pa.array(data.draw(st.lists(_maybe_null(values), max_size=12)), type=kind)
    wrap = data.draw(st.sampled_from(["plain", "dictionary", "run_end", "sparse", "dense"]))
    try:
        if wrap == "dictionary":
            array = array.dictionary_encode()
        elif wrap == "run_end":
            array = pa.compute.run_end_encode(array)
        elif wrap in ("sparse", "dense") and len(array):
            codes = pa.array(
                data.draw(st.lists(st.integers(0, 1), min_size=len(array), max_size=len(array))),
                pa.int8(),
            )
            other = pa.array(range(len(array)), pa.int32())
            if wrap == "sparse":
                array = pa.UnionArray.from_sparse(codes, [array, other])
            else:
                offsets = pa.array(range(len(array)), pa.int32())
                array = pa.UnionArray.from_dense(codes, offsets, [array, other])
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
        pass  # a type pyarrow cannot encode that way: the plain array is checked
    start = data.draw(st.integers(0, len(array)))
    array = array.slice(start, data.draw(st.integers(0, len(array) - start)))
    array.validate(full=True)
    for protocol in (2, 5):
        found = findings(pickle.dumps(array, protocol=protocol))
        # random bytes can spell another format's magic (PK\x05\x06): judged elsewhere
        unvalidated = {e: v for e, v in found.items() if v[0] == "PKL010"}
        assert unvalidated == {}, (array.type, protocol, unvalidated)


@pytest.mark.parametrize("kind", [pa.string(), pa.large_string(), pa.string_view(), pa.binary()])
def test_a_payload_carried_in_an_arrow_column_is_found(kind: Any) -> None:
    """The values of consistent Arrow string and binary arrays join the payloads-as-data
    search, as an object column's strings do: a base64 pickle in one is scanned."""
    import base64

    payload = base64.b64encode(op.gadget("posix", "system", "echo bastion"))
    cell = payload if kind == pa.binary() else payload.decode()
    column = pa.array([cell[:1], cell, None], type=kind)
    frame = pd.DataFrame({"note": pd.arrays.ArrowExtensionArray(column)})
    found = findings(pickle.dumps(frame, protocol=4))
    assert found["posix.system"] == ("PKL001", "critical"), found


# --- misuse of the allowlisted pyarrow objects ---------------------------------------------------

ALLOWLISTED = (
    "type_for_alias",
    "field",
    "schema",
    "list_",
    "large_list",
    "list_view",
    "large_list_view",
    "map_",
    "struct",
    "dictionary",
    "union",
    "run_end_encoded",
    "timestamp",
    "binary",
    "decimal32",
    "decimal64",
    "decimal128",
    "decimal256",
    "uuid",
    "bool8",
    "json_",
    "opaque",
    "fixed_shape_tensor",
    "KeyValueMetadata",
    "py_buffer",
    "scalar",
    "chunked_array",
    "_reconstruct_table",
    "_reconstruct_record_batch",
)


def test_the_reviewed_names_are_allowlisted_and_the_unvalidated_ones_are_not() -> None:
    for name in ALLOWLISTED:
        assert classify("pyarrow.lib", name).permits("cnr"), name
    for module, name in UNVALIDATED:
        assert not classify(module, name).allowed, name


@pytest.mark.parametrize("name", ALLOWLISTED)
def test_changing_an_allowlisted_pyarrow_global_is_dangerous(name: str) -> None:
    """BUILD on the global itself (replacing its attributes) is never a use the list allows."""
    data = op.proto(4) + op.stack_global("pyarrow.lib", name) + b"}\x8c\x01xK\x01sb."
    assert findings(data)[f"pyarrow.lib.{name}"][1] == "critical"


@pytest.mark.parametrize("name", ALLOWLISTED)
def test_an_attribute_path_through_an_allowlisted_pyarrow_object_is_caught(name: str) -> None:
    for attribute in ("__globals__", "__init__", "__call__.__self__"):
        qualname = f"{name}.{attribute}"
        data = op.gadget("pyarrow.lib", qualname, "x")
        assert findings(data)[f"pyarrow.lib.{qualname}"][1] in ("high", "critical"), qualname


@pytest.mark.parametrize(
    "module,name",
    [
        ("pyarrow", "lib._restore_array"),  # a path through the package is not the entry
        ("pyarrow.lib", "input_stream"),  # opens the file it names
        ("pyarrow.lib", "memory_map"),
        ("pyarrow.lib", "create_memory_map"),
        ("pyarrow.lib", "OSFile"),
        ("pyarrow.lib", "register_extension_type"),  # process-wide registry
        ("pyarrow.lib", "set_cpu_count"),
        ("pyarrow.lib", "ExtensionType.__arrow_ext_deserialize__"),
        ("pyarrow.lib", "UnknownExtensionType"),
        ("pyarrow.fs", "LocalFileSystem"),
        ("pyarrow._flight", "FlightServerBase"),
        ("pyarrow.parquet", "read_table"),
        ("pandas.core.arrays.arrow.extension_types", "ArrowPeriodType.__arrow_ext_serialize__"),
    ],
)
def test_other_pyarrow_callables_stay_flagged(module: str, name: str) -> None:
    found = findings(op.gadget(module, name, "/etc/hostname"))
    assert found[f"{module}.{name}"][1] in ("high", "critical"), found


def test_unvalidated_reconstructions_kept_as_values_or_mutated_are_not_pkl010() -> None:
    """PKL010 covers the call pyarrow's __reduce__ makes; a reference kept for later (called
    with anything by whoever uses it) or a mutation is judged as any unknown name."""
    kept = op.proto(4) + b"}" + op.s("f") + op.stack_global("pyarrow.lib", "_restore_array")
    kept += b"s."
    assert findings(kept)[RESTORE] == ("PKL003", "high")
    mutated = op.proto(4) + op.stack_global("pyarrow.lib", "_restore_array")
    mutated += b"}\x8c\x01xK\x01sb."
    assert findings(mutated)[RESTORE][1] == "critical"


def test_arrow_arguments_are_still_judged() -> None:
    """An allowlisted builder called with a call result of a dangerous name: the dangerous
    name is reported, whatever it is handed to."""
    inner = op.stack_global("builtins", "eval") + op.s("1") + b"\x85R"
    data = op.proto(4) + op.stack_global("pyarrow.lib", "type_for_alias") + inner + b"\x85R."
    found = findings(data)
    assert found["builtins.eval"] == ("PKL001", "critical")
    assert "pyarrow.lib.type_for_alias" not in found


def test_a_zoneinfo_timestamp_type_is_clean() -> None:
    kind = pa.timestamp("us", tz=zoneinfo.ZoneInfo("Asia/Tokyo"))
    assert findings(pickle.dumps(kind, protocol=4)) == {}

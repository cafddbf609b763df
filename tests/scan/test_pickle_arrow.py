"""Pickles of pyarrow and pandas objects with Arrow data. Every pyarrow callable their
__reduce__ methods name was read in pyarrow's source: the type, field, schema, buffer, scalar
and table builders build data and check it (allowlisted through tools/gen_allowlist.py), while
pyarrow.lib._restore_array (every pickled Arrow array) and DictionaryScalar._reconstruct
rebuild C++ data from pickled lengths, offsets and indices without validating them. A crafted
array built only of those names crashes the loading process or returns heap memory when used
(shown here in a child process), so they are reported as PKL010 (medium), never clean."""

from __future__ import annotations

import datetime
import decimal
import io
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
def test_arrow_data_is_reported_as_unvalidated_and_nothing_else(protocol: int) -> None:
    for value in _data_objects():
        found = findings(pickle.dumps(value, protocol=protocol))
        assert found == {RESTORE: ("PKL010", "medium")}, (type(value), found)


def test_dictionary_scalar_is_reported_as_unvalidated() -> None:
    scalar = pa.array(["a", "b"]).dictionary_encode()[1]
    for protocol in PROTOCOLS:
        found = findings(pickle.dumps(scalar, protocol=protocol))
        assert found[DICT_SCALAR] == ("PKL010", "medium"), found
        assert {rule for rule, _ in found.values()} == {"PKL010"}


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
    assert findings(data) == {RESTORE: ("PKL010", "medium")}
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
    assert findings(data) == {RESTORE: ("PKL010", "medium")}


def test_a_crafted_dictionary_scalar_reads_before_its_dictionary() -> None:
    """DictionaryScalar._reconstruct checks the index's type, not its value: a negative
    index makes as_py() read before the dictionary's buffers."""
    kind = pa.dictionary(pa.int64(), pa.string())
    crafted = _Reduce(pa.lib.DictionaryScalar._reconstruct, kind, True, -(10**12), pa.array(["a"]))
    data = pickle.dumps(crafted, protocol=4)
    ran = _in_child(data, "print('loaded', flush=True)\nprint(value.as_py())")
    assert "loaded" in ran.stdout and ran.returncode < 0, (ran.returncode, ran.stderr[-300:])
    assert findings(data)[DICT_SCALAR] == ("PKL010", "medium")


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

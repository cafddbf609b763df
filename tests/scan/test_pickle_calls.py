"""Ways the unpickler calls an object that is not a REDUCE of a global (attack A2-01d, A2-02,
A2-09, A2-10, A2-11, A2-19, A2-22, A1-34): every value that reaches a position where the loader
(or the restore code it runs) calls it is judged as called, and a call whose target bastion cannot
determine is an unknown call (PKL003, HIGH), never clean.

The bastion side uses an allowlisted *reference* (numpy.apply_along_axis, listed "nr": stored as
a value, never called) as the target, so only the call channel can fail the gate. The loader side
proves each channel with the real unpickler in a subprocess, target builtins.print and a harmless
marker string."""

from __future__ import annotations

import io
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import gate_fails, rules, scan_data, scan_file

from bastion.findings import Severity
from bastion.scan.pickle_globals import classify
from bastion.scan.pickle_vm import Recorder, analyse_stream

MARKER = "bastion-marker-calls"
REF_TARGET = ("numpy", "apply_along_axis")  # allowlisted as a reference only
PROOF_TARGET = ("builtins", "print")


def s(text: str) -> bytes:
    raw = text.encode()
    return (
        b"\x8c" + bytes([len(raw)]) + raw
        if len(raw) < 256
        else b"X" + struct.pack("<I", len(raw)) + raw
    )


def g(module: str, name: str) -> bytes:
    return s(module) + s(name) + b"\x93"


def _partial_newobj(t: tuple[str, str]) -> bytes:  # A2-01a: partial.__new__(partial, T)(arg)
    return b"\x80\x04" + g("functools", "partial") + g(*t) + b"\x85\x81" + s(MARKER) + b"\x85R."


def _partial_partial(t: tuple[str, str]) -> bytes:  # A2-01d: partial(partial, T)()(arg)
    return (
        b"\x80\x04"
        + g("functools", "partial")
        + g("functools", "partial")
        + g(*t)
        + b"\x86R)R"
        + s(MARKER)
        + b"\x85R."
    )


def _partial_state_swap(t: tuple[str, str]) -> bytes:  # A2-01c: BUILD (T, (), {}, None)
    return (
        b"\x80\x04"
        + g("functools", "partial")
        + g("builtins", "str")
        + b"\x85R"
        + b"("
        + g(*t)
        + b")}Ntb"
        + s(MARKER)
        + b"\x85R."
    )


def _generator_ctor(t: tuple[str, str]) -> bytes:  # A2-02: __generator_ctor(arg, T)
    return (
        b"\x80\x04" + g("numpy.random._pickle", "__generator_ctor") + s(MARKER) + g(*t) + b"\x86R."
    )


def _setstate_hijack(t: tuple[str, str]) -> bytes:  # A2-09: BUILD {'__setstate__': T}; BUILD
    ns = g("types", "SimpleNamespace") + b")\x81"
    return b"\x80\x04" + ns + b"}" + s("__setstate__") + g(*t) + b"sb" + s(MARKER) + b"b."


def _setstate_hijack_slots(t: tuple[str, str]) -> bytes:  # A2-09 via BUILD (None, {...})
    ns = g("types", "SimpleNamespace") + b")\x81"
    return b"\x80\x04" + ns + b"N}" + s("__setstate__") + g(*t) + b"s\x86b" + s(MARKER) + b"b."


def _map_newobj(t: tuple[str, str]) -> bytes:  # A2-11: list(map.__new__(map, T, [arg]))
    return (
        b"\x80\x04"
        + g("builtins", "list")
        + g("builtins", "map")
        + g(*t)
        + b"]"
        + s(MARKER)
        + b"a\x86\x81\x85R."
    )


def _partial_copyreg_newobj(t: tuple[str, str]) -> bytes:  # copyreg.__newobj__(partial, T)
    return (
        b"\x80\x04"
        + g("copyreg", "__newobj__")
        + g("functools", "partial")
        + g(*t)
        + b"\x86R"
        + s(MARKER)
        + b"\x85R."
    )


def _partial_copyreg_newobj_ex(t: tuple[str, str]) -> bytes:  # __newobj_ex__(partial, (T,), {})
    return (
        b"\x80\x04"
        + g("copyreg", "__newobj_ex__")
        + g("functools", "partial")
        + g(*t)
        + b"\x85}\x87R"
        + s(MARKER)
        + b"\x85R."
    )


CHANNELS = {
    "copyreg-newobj": _partial_copyreg_newobj,
    "copyreg-newobj-ex": _partial_copyreg_newobj_ex,
    "A2-01a": _partial_newobj,
    "A2-01d": _partial_partial,
    "A2-01c": _partial_state_swap,
    "A2-02": _generator_ctor,
    "A2-09": _setstate_hijack,
    "A2-09-slots": _setstate_hijack_slots,
    "A2-11": _map_newobj,
}


def _uses(data: bytes, qualname: str) -> set[str]:
    recorder = Recorder()
    analyse_stream(io.BytesIO(data), 0, recorder, 1 << 30)
    return recorder.names[qualname].uses


def test_reference_target_is_allowlisted_only_as_a_reference() -> None:
    verdict = classify(*REF_TARGET)
    assert verdict.allowed and "c" not in verdict.uses
    # kept as a value it is clean: the findings below come from the call channels
    assert not gate_fails(scan_data(b"\x80\x04" + g(*REF_TARGET) + b".", "ref.pkl"))


@pytest.mark.parametrize("channel", sorted(CHANNELS))
def test_call_channel_is_judged_as_a_call(channel: str) -> None:
    data = CHANNELS[channel](REF_TARGET)
    assert "c" in _uses(data, "numpy.apply_along_axis")
    result = scan_data(data, "model.pkl")
    assert "PKL003" in rules(result, Severity.HIGH) and gate_fails(result)


@pytest.mark.parametrize("channel", sorted(CHANNELS))
def test_real_loader_calls_through_the_channel(channel: str) -> None:
    data = CHANNELS[channel](PROOF_TARGET)
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            "import pickle, sys\n"
            "try:\n    pickle.loads(sys.stdin.buffer.read())\n"
            "except Exception:\n    pass\n",
        ],
        input=data,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert MARKER in run.stdout.decode()


def test_calling_a_call_result_is_an_unknown_call() -> None:
    """A2-22: partial.__new__(partial, f)("mod:attr") returns whatever f returns; calling that
    is a call of an unknown object (the loader calls the real os.system there)."""
    target = ("numpy", "apply_along_axis")
    data = (
        b"\x80\x04}"
        + s("coef")
        + g("functools", "partial")
        + g(*target)
        + b"\x85\x81"
        + s("os:system")
        + b"\x85R"
        + s(MARKER)
        + b"\x85Rs."
    )
    result = scan_data(data, "model.pkl")
    unknown = [f for f in result.findings if f.rule_id == "PKL003" and "result of" in f.message]
    assert unknown and unknown[0].severity == Severity.HIGH


def test_calling_the_result_of_an_allowlisted_function_is_an_unknown_call() -> None:
    # numpy.dot is allowlisted for calls; what it returns is not known to bastion
    data = b"\x80\x04" + g("numpy", "dot") + b"K\x01K\x02\x86R" + s(MARKER) + b"\x85R."
    if "c" not in classify("numpy", "dot").uses:
        pytest.skip("numpy.dot is not call-allowlisted in this allowlist")
    result = scan_data(data, "model.pkl")
    assert any("result of numpy.dot" in f.message for f in result.findings)
    assert gate_fails(result)


def test_dataframe_setitem_with_a_callable_key() -> None:
    """A2-19: SETITEM on an allowlisted instance runs the class's own __setitem__; pandas
    DataFrame calls a callable key."""
    data = (
        b"\x80\x04"
        + g("pandas", "DataFrame")
        + b")\x81}"
        + s("_typ")
        + s("dataframe")
        + b"sb"
        + g(*REF_TARGET)
        + b"K\x01s."
    )
    assert "c" in _uses(data, "numpy.apply_along_axis")
    assert gate_fails(scan_data(data, "model.pkl"))


def _legacy_torch(main: bytes) -> bytes:
    magic = 0x1950A86A20F9469CFC6C
    sys_info = {
        "protocol_version": 1001,
        "little_endian": True,
        "type_sizes": {"short": 2, "int": 4, "long": 4},
    }
    return b"".join(
        [
            pickle.dumps(magic, protocol=2),
            pickle.dumps(1001, protocol=2),
            pickle.dumps(sys_info, protocol=2),
            main,
            pickle.dumps([], protocol=2),
        ]
    )


def _module_persid(t: tuple[str, str]) -> bytes:
    """A2-10: torch's legacy persistent_load returns X for ('module', X, '', ''); R calls it."""

    def x(text: str) -> bytes:
        return b"X" + struct.pack("<I", len(text)) + text.encode()

    return (
        b"\x80\x02("
        + x("module")
        + f"c{t[0]}\n{t[1]}\n".encode()
        + x("")
        + x("")
        + b"tQ"
        + x(MARKER)
        + b"\x85R."
    )


def test_legacy_torch_module_persistent_id_is_the_object_itself(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(_legacy_torch(_module_persid(REF_TARGET)))
    result = scan_file(path)
    assert "PKL003" in rules(result, Severity.HIGH) and gate_fails(result)


def test_calling_a_persistent_object_is_an_unknown_call() -> None:
    data = b"\x80\x02" + b"X\x07\x00\x00\x00storage" + b"Q)R."
    result = scan_data(data, "model.pkl")
    assert any(f.rule_id == "PKL003" and "persistent id" in f.message for f in result.findings)


def test_real_torch_legacy_loader_calls_the_module_persistent_id(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    path = tmp_path / "model.pt"
    path.write_bytes(_legacy_torch(_module_persid(PROOF_TARGET)))
    code = (
        "import sys, torch\ntry:\n    torch.load(sys.argv[1], weights_only=False)\n"
        "except Exception:\n    pass\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, timeout=120, check=False
    )
    assert MARKER in run.stdout.decode()


def test_joblib_compat_array_wrapper_is_nested_deserialisation(tmp_path: Path) -> None:
    """A1-34: joblib's unpickler np.load(allow_pickle=True)s the file an NDArrayWrapper names."""
    joblib_compat = pytest.importorskip("joblib.numpy_pickle_compat")
    for module in ("joblib.numpy_pickle_compat", "sklearn.externals.joblib.numpy_pickle_compat"):
        for name in ("NDArrayWrapper", "ZNDArrayWrapper"):
            assert classify(module, name).category == "nested deserialisation"
    sidecar = tmp_path / "side.bin"
    arr = pickle.dumps(np.array([0.1, 0.2]), protocol=2)[2:]
    sidecar.write_bytes(b"\x80\x02cbuiltins\nprint\n(S'" + MARKER.encode() + b"'\ntR0" + arr)
    wrapper = joblib_compat.NDArrayWrapper("side.bin", np.ndarray, allow_mmap=False)
    model = tmp_path / "model.pkl"
    model.write_bytes(pickle.dumps({"coef": wrapper}, protocol=2))
    result = scan_file(model)
    assert any(f.rule_id == "PKL004" or f.severity == Severity.CRITICAL for f in result.findings)
    code = (
        "import sys, warnings, joblib\nwarnings.simplefilter('ignore')\n"
        "print(joblib.load(sys.argv[1]))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code, str(model)], capture_output=True, timeout=120, check=False
    )
    assert MARKER in run.stdout.decode()


# --- benign side: ordinary uses of the same mechanisms stay clean -----------------------------


def _benign_values() -> list[object]:
    import collections
    import functools
    import types

    return [
        functools.partial(int, base=2),
        collections.defaultdict(list, {"a": [1]}),
        collections.defaultdict(functools.partial(int)),
        types.SimpleNamespace(a=1, b=[1, 2]),
        np.random.default_rng(0),
        np.random.RandomState(0),
        {"od": collections.OrderedDict(k=np.arange(3)), "dtype": np.float32},
    ]


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_benign_values_stay_clean(protocol: int) -> None:
    for value in _benign_values():
        result = scan_data(pickle.dumps(value, protocol=protocol), "v.pkl")
        assert not gate_fails(result), (value, [f.message for f in result.findings])


def test_benign_pandas_and_sklearn_bunch_stay_clean() -> None:
    pandas = pytest.importorskip("pandas")
    bunch_module = pytest.importorskip("sklearn.utils")
    frame = pandas.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    bunch = bunch_module.Bunch(data=np.arange(4), names=["a"], frame=frame)
    for value in (frame, bunch):
        result = scan_data(pickle.dumps(value, protocol=4), "v.pkl")
        assert not gate_fails(result), [f.message for f in result.findings]


def test_a_function_handed_to_an_unpickle_helper_is_judged_called() -> None:
    """A2-02's root: generated unpickle helpers instantiate the classes they are handed; a
    function cannot be instantiated, so a helper handed one calls it (numpy's __generator_ctor
    does). Judged as a call whatever the helper."""
    data = b"\x80\x04" + g("sklearn.neighbors._kd_tree", "newObj") + g(*REF_TARGET) + b"\x85R."
    if not classify("sklearn.neighbors._kd_tree", "newObj").allowed:
        pytest.skip("sklearn helper not allowlisted here")
    assert "c" in _uses(data, "numpy.apply_along_axis")
    assert gate_fails(scan_data(data, "model.pkl"))

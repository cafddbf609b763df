"""Every reading a loader could take of one pickle stream, and no silent bounds on carried
payloads (issue #7 attack round 2: A2-13, A2-14, A2-15, A2-21, differential oracle class P2).

Payloads are built here with a harmless marker (`touch <tmp file>`); where the real loader is
installed, a subprocess shows it runs the payload, and bastion must fail the gate."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import gate_fails, rules, scan_data, scan_file

from bastion.findings import Severity, TargetResult


def _global(module: str, name: str) -> bytes:
    return (
        b"\x8c"
        + bytes([len(module)])
        + module.encode()
        + b"\x8c"
        + bytes([len(name)])
        + name.encode()
        + b"\x93"
    )


def _short(text: str) -> bytes:
    raw = text.encode()
    return b"\x8c" + bytes([len(raw)]) + raw


def _binbytes(data: bytes) -> bytes:
    return b"B" + len(data).to_bytes(4, "little") + data


def _system(marker: Path, end: bytes = b"0") -> bytes:
    """posix.system('touch marker') in protocol 0 opcodes; net stack effect 0 with POP."""
    return f"cposix\nsystem\n(S'touch {marker}'\ntR".encode() + end


def _array_wrapper(dtype_code: str, length: int, object_flags: bool = False) -> bytes:
    """joblib NumpyArrayWrapper + BUILD as older joblib wrote it (no alignment padding byte)."""
    state = (
        b"}"
        + _short("subclass")
        + _global("numpy", "ndarray")
        + b"s"
        + _short("shape")
        + b"J"
        + length.to_bytes(4, "little")
        + b"\x85s"
        + _short("order")
        + _short("C")
        + b"s"
        + _short("dtype")
        + _global("numpy", "dtype")
        + _short(dtype_code)
        + b"\x89\x88\x87R"
        + b"(K\x03"
        + _short("|")
        + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xff"
        + (b"K?" if object_flags else b"K\x00")
        + b"tbs"
        + _short("allow_mmap")
        + b"\x89s"
    )
    return _global("joblib.numpy_pickle", "NumpyArrayWrapper") + b")\x81" + state + b"b"


def _run(code: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120, cwd=cwd
    )


def _reports(result: TargetResult, qualname: str) -> bool:
    return any(
        qualname in (f.evidence or "") and f.severity.rank >= Severity.MEDIUM.rank
        for f in result.findings
    )


# --- A2-13: joblib's raw array bytes are opcodes to every other loader --------------------------


def _raw_bytes_payload(marker: Path) -> bytes:
    payload = _system(marker)
    return b"\x80\x04}" + _short("w") + _array_wrapper("u1", len(payload)) + payload + b"s."


def test_joblib_raw_array_bytes_are_read_as_opcodes_too(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "model.pkl"
    path.write_bytes(_raw_bytes_payload(marker))
    pytest.importorskip("joblib")
    loaded = _run("import joblib, sys; print(joblib.load(sys.argv[1]).get('w').dtype)", str(path))
    assert loaded.returncode == 0 and "uint8" in loaded.stdout and not marker.exists()
    ran = _run("import pickle, sys; pickle.load(open(sys.argv[1], 'rb'))", str(path))
    assert ran.returncode == 0 and marker.exists()  # pickle.load executes the "array bytes"
    result = scan_file(path)
    assert "PKL001" in rules(result, Severity.CRITICAL)
    assert _reports(result, "posix.system")


def test_joblib_raw_array_bytes_inside_a_torch_zip(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    marker = tmp_path / "ran"
    path = tmp_path / "model.pt"
    torch.save({"x": 1}, path)
    import zipfile

    with zipfile.ZipFile(path) as original:
        members = {info.filename: original.read(info) for info in original.infolist()}
    with zipfile.ZipFile(path, "w") as rewritten:
        for name, data in members.items():
            rewritten.writestr(
                name, _raw_bytes_payload(marker) if name.endswith("data.pkl") else data
            )
    ran = _run("import torch, sys; torch.load(sys.argv[1], weights_only=False)", str(path))
    assert marker.exists(), ran.stderr[-500:]
    assert _reports(scan_file(path), "posix.system")


def test_real_joblib_arrays_stay_clean(tmp_path: Path) -> None:
    joblib = pytest.importorskip("joblib")
    np = pytest.importorskip("numpy")
    path = tmp_path / "model.joblib"
    text = np.frombuffer(b"cos\nsystem\n(S'just text in an array'\ntR." * 20, dtype=np.uint8)
    joblib.dump(
        {
            "w": np.linspace(0, 1, 4096),
            "ids": np.arange(5000, dtype=np.int64),
            "text": text,
            "objects": np.array([{"a": 1}, "b", None], dtype=object),
        },
        path,
    )
    result = scan_file(path)
    assert not gate_fails(result), [(f.rule_id, f.message) for f in result.findings]


# --- A2-21: joblib reads an object array's items with a plain pickle._Unpickler ----------------


def test_wrapper_inside_a_joblib_object_array_is_not_array_data(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    payload = _system(marker)
    inner = b"\x80\x04]" + _array_wrapper("u1", len(payload)) + payload + b"a."
    path = tmp_path / "model.joblib"
    path.write_bytes(
        b"\x80\x04}" + _short("w") + _array_wrapper("O8", 1, object_flags=True) + inner + b"s."
    )
    pytest.importorskip("joblib")
    _run("import joblib, sys; joblib.load(sys.argv[1])", str(path))
    assert marker.exists()  # joblib.load itself runs it (then fails on the list)
    result = scan_file(path)
    assert "PKL001" in rules(result, Severity.CRITICAL)


# --- oracle P2: the pure-Python unpickler reads a GLOBAL cut at the end of the file ------------


def test_global_cut_at_eof_is_imported_by_joblib(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    (tmp_path / "markmod.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    path = tmp_path / "model.pkl"
    path.write_bytes(b"\x80\x02cmarkmodX")  # readline()[:-1] drops the last byte: 'markmod'
    pytest.importorskip("joblib")
    plain = _run(
        "import pickle, sys; pickle.load(open(sys.argv[1], 'rb'))", str(path), cwd=tmp_path
    )
    assert plain.returncode != 0 and not marker.exists()  # the C unpickler: truncated
    _run("import joblib, sys; joblib.load(sys.argv[1])", str(path), cwd=tmp_path)
    assert marker.exists()  # joblib's pure-Python unpickler imported the module
    result = scan_data(path.read_bytes(), "model.pkl")
    assert gate_fails(result)
    assert any("markmod" in (f.evidence or "") for f in result.findings)


def test_dangerous_global_cut_at_eof_is_reported() -> None:
    result = scan_data(b"\x80\x02cposix\nsystemX", "model.pkl")
    assert _reports(result, "posix.system")


# --- A2-14: a carried pickle with a benign prefix over 1 KiB ----------------------------------


def _datapipe(inner: bytes) -> bytes:
    return (
        b"\x80\x04"
        + _global("torch.utils.data.datapipes.datapipe", "_DataPipeSerializationWrapper")
        + b")\x81"
        + _binbytes(inner)
        + b"\x89\x86b"
    )


@pytest.mark.parametrize(
    "prefix",
    [b"(" * 300 + b"1" * 300, b"S'" + b"a" * 5000 + b"'\n0"],
    ids=["mark-run", "long-string"],
)
def test_carried_pickle_with_a_long_benign_prefix(tmp_path: Path, prefix: bytes) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "model.pkl"
    path.write_bytes(_datapipe(prefix + _system(marker, end=b".")) + b".")
    pytest.importorskip("torch")
    _run("import pickle, sys; pickle.load(open(sys.argv[1], 'rb'))", str(path))
    assert marker.exists()  # the wrapper's __setstate__ pickle.loads the carried bytes
    assert _reports(scan_file(path), "posix.system")


# --- A2-15: more carried pickles than the candidate bound --------------------------------------


def test_payload_after_many_benign_carried_pickles(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    benign = (
        b"]("
        + b"".join(
            _binbytes(pickle.dumps({"layer": i, "name": f"block_{i:03d}"}, protocol=4))
            for i in range(40)
        )
        + b"e"
    )
    path = tmp_path / "model.pkl"
    path.write_bytes(
        b"\x80\x04}("
        + _short("pipe")
        + _datapipe(_system(marker, end=b"."))
        + _short("a_cache")
        + benign
        + b"u."
    )
    pytest.importorskip("torch")
    _run("import pickle, sys; pickle.load(open(sys.argv[1], 'rb'))", str(path))
    assert marker.exists()
    assert _reports(scan_file(path), "posix.system")


def test_reaching_the_candidate_bound_is_a_limit() -> None:
    from bastion.scan.pickle_vm import MAX_NESTED_CANDIDATES

    carried = [pickle.dumps({"layer": i}, protocol=4) for i in range(MAX_NESTED_CANDIDATES + 5)]
    result = scan_data(pickle.dumps({"cache": carried}, protocol=4), "model.pkl")
    assert result.incomplete
    assert "LIM001" in rules(result, Severity.HIGH)


def test_ordinary_text_values_are_not_a_limit_or_a_finding() -> None:
    words = [f"Some sentence number {i}, (with punctuation) and Xtra text" for i in range(5000)]
    result = scan_data(
        pickle.dumps({"texts": words, "ids": list(range(100_000))}, protocol=4), "model.pkl"
    )
    assert not result.incomplete
    assert not gate_fails(result), [(f.rule_id, f.message) for f in result.findings]


def test_a_value_too_large_to_decode_is_a_limit() -> None:
    from bastion.config import Limits

    limits = Limits(max_pickle_mb=1)
    big = scan_data(pickle.dumps({"blob": b"\x80" + bytes(2 << 20)}, protocol=4), "m.pkl", limits)
    assert big.incomplete and "LIM001" in rules(big, Severity.HIGH)
    small = scan_data(pickle.dumps({"blob": b"\x80" + bytes(1 << 10)}, protocol=4), "m.pkl", limits)
    assert not small.incomplete and not small.findings


def test_one_line_words_are_not_carried_pickles() -> None:
    # "constant_hessian" read by a pure-Python unpickler as a whole file imports "onstant_hessia"
    # (a GLOBAL cut at the end); a carried value goes to pickle.loads, which cannot.
    words = ["constant_hessian", "class_weight", "categorical_feature", "(l(l(d."]
    result = scan_data(pickle.dumps({w: w for w in words}, protocol=4), "model.pkl")
    assert not gate_fails(result), [(f.rule_id, f.message) for f in result.findings]

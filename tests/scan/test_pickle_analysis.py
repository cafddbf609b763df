"""Unit tests of the pickle emulation: name resolution exactly as the loader does it, benign
pickles of every protocol, joblib array skipping, nested payloads, stacked streams."""

from __future__ import annotations

import collections
import datetime
import io
import pickle

import numpy as np
import pytest
from corpus import opcodes as op
from helpers import rules, scan_data

from bastion.scan.pickle_globals import classify
from bastion.scan.pickle_vm import Recorder, analyse_stream, nested_candidates


def analyse(data: bytes) -> tuple[Recorder, object]:
    recorder = Recorder()
    result = analyse_stream(io.BytesIO(data), 0, recorder, 1 << 30)
    return recorder, result


@pytest.mark.parametrize("protocol", range(6))
def test_benign_values_of_every_protocol_are_clean(protocol: int) -> None:
    value = {
        "a": [1, 2.5, "x", b"y", None, True],
        "od": collections.OrderedDict(k=1),
        "set": {1, 2},
        "fs": frozenset({3}),
        "c": complex(1, 2),
        "dt": datetime.datetime(2026, 1, 1),
        "arr": np.arange(6).reshape(2, 3),
        "rec": np.zeros(2, dtype=[("x", "<i4")]),
        "big": 2**100,
    }
    result = scan_data(pickle.dumps(value, protocol=protocol), "v.pkl")
    assert result.findings == () and not result.incomplete


@pytest.mark.parametrize(
    "module,name,category",
    [
        ("os", "system", "process execution"),
        ("posix", "system", "process execution"),
        ("nt", "system", "process execution"),
        ("subprocess", "Popen", "process execution"),
        ("builtins", "eval", "exec/eval"),
        ("__builtin__", "eval", "exec/eval"),
        ("builtins", "__import__", "import machinery"),
        ("importlib", "import_module", "import machinery"),
        ("builtins", "getattr", "attribute/name resolution"),
        ("operator", "attrgetter", "attribute/name resolution"),
        ("types", "CodeType", "code objects"),
        ("marshal", "loads", "nested deserialisation"),
        ("socket", "create_connection", "network access"),
        ("builtins", "open", "file access"),
        ("pickle", "loads", "nested deserialisation"),
        ("torch", "load", "nested deserialisation"),
        ("copy_reg", "_reconstructor", None),
    ],
)
def test_classification(module: str, name: str, category: str | None) -> None:
    verdict = classify(module, name)
    assert verdict.category == category
    assert verdict.allowed == (category is None)


def test_unknown_names_are_flagged_not_allowed() -> None:
    verdict = classify("mylib.models", "Net")
    assert not verdict.allowed and verdict.category is None
    assert not classify("sklearn.datasets", "fetch_openml").allowed
    assert not classify("sklearn.utils._testing", "Foo").allowed
    assert classify("sklearn.linear_model._logistic", "LogisticRegression").allowed


def test_dotted_name_with_gadget_attribute_is_critical() -> None:
    assert classify("collections", "OrderedDict.__init__.__globals__").category is not None
    assert classify("posixpath", "os.system").category is not None


def test_memoized_stack_global_is_resolved() -> None:
    recorder, _ = analyse(op.memoized_stack_global())
    assert "os.system" in recorder.flagged


def test_python2_names_are_remapped_like_the_loader() -> None:
    recorder, _ = analyse(op.python2_names())
    flagged = recorder.flagged["__builtin__.eval"]
    assert flagged.verdict.qualname == "builtins.eval"


def test_payload_before_a_break_is_still_reported() -> None:
    recorder, result = analyse(op.broken_after_payload())
    assert result.error is not None and "posix.system" in recorder.flagged  # type: ignore


def test_stacked_second_stream_is_scanned() -> None:
    data = op.stacked(pickle.dumps([1]), op.system_call())
    assert {"PKL001", "PKL006"} <= rules(scan_data(data, "s.pkl"))


def test_trailing_junk_is_low_severity() -> None:
    result = scan_data(pickle.dumps([1, 2]) + b"\x00junk" * 3, "t.pkl")
    assert {f.rule_id: f.severity.value for f in result.findings} == {"PKL006": "low"}


def test_nested_base64_payload_is_extracted_and_scanned() -> None:
    data = op.nested_loads(op.system_call(), "base64")
    recorder, _ = analyse(data)
    payloads = nested_candidates(recorder, 1 << 20)
    assert payloads and payloads[0][1].startswith(b"\x80\x02")
    result = scan_data(data, "n.pkl")
    inner = [f for f in result.findings if f.location.members]
    assert inner and inner[0].evidence == "posix.system"


def test_joblib_raw_array_bytes_are_skipped_not_parsed() -> None:
    import joblib

    buffer = io.BytesIO()
    joblib.dump({"x": np.frombuffer(op.system_call() * 1000, dtype=np.uint8)}, buffer)
    # the array's raw bytes happen to contain a pickle payload: it is data, never unpickled
    result = scan_data(buffer.getvalue(), "arr.joblib")
    assert result.findings == ()


def test_joblib_truncated_array_is_reported() -> None:
    import joblib

    buffer = io.BytesIO()
    joblib.dump(np.arange(10_000.0), buffer)
    result = scan_data(buffer.getvalue()[:5000], "cut.joblib")
    assert "PKL005" in rules(result)


def test_torchscript_type_names_are_allowed_only_in_torchscript() -> None:
    recorder, _ = analyse(op.proto(2) + b"c__torch__.model\nNet\n)\x81.")
    assert "__torch__.model.Net" in recorder.flagged
    recorder = Recorder(allowed_prefixes=("__torch__.",))
    analyse_stream(io.BytesIO(op.proto(2) + b"c__torch__.model\nNet\n)\x81."), 0, recorder, 1024)
    assert not recorder.flagged


def test_global_offsets_point_at_the_opcode() -> None:
    data = pickle.dumps([1, 2, 3])[:-1] + b"0" + b"cposix\nsystem\n" + b"0N."
    result = scan_data(data, "o.pkl")
    finding = next(f for f in result.findings if f.rule_id == "PKL001")
    offset = data.index(b"cposix")
    assert finding.location.pointer == f"GLOBAL at byte {offset}"


def test_many_flagged_names_are_bounded() -> None:
    body = b"".join(b"cmod%d\nf\n0" % i for i in range(3000))
    result = scan_data(b"\x80\x02" + body + b"N.", "many.pkl")
    assert len(result.findings) <= 1001


@pytest.mark.parametrize(
    "ops",
    [b"(K\x01K\x02u", b"(K\x01K\x02e", b"(K\x01\x90", b"}b", b"K\x01a", b"K\x01\x85R(K\x01K\x02u"],
)
def test_container_opcodes_on_stand_ins_keep_the_stream_going(ops: bytes) -> None:
    """SETITEMS/APPENDS/ADDITEMS/BUILD applied to a global or a call result must not break
    the emulation: the payload after them must still be seen."""
    data = b"\x80\x04cposix\nsystem\n" + ops + b"0" + b"csubprocess\nPopen\n."
    recorder, result = analyse(data)
    assert result.error is None, result.error  # type: ignore[attr-defined]
    assert "subprocess.Popen" in recorder.flagged

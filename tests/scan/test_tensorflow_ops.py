"""SavedModel operations are judged by an allowlist of pure operations (issue #7, class 7), in
the binary and the text form; checkpoint I/O is expected only in the declared saver, writing
where the saver's filename says. SavedModels are built in code (TensorFlow is not a test
dependency); their shape copies what tf.saved_model.save and the TF1 builder write."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest
from corpus.protobuf_writer import field_bytes, field_varint
from helpers import rules, scan_data

from bastion.findings import Severity
from bastion.scan import prototext
from bastion.scan.tensorflow import CHECKPOINT_OPS, RISKY_OPS, pure_ops


class N(NamedTuple):
    name: str
    op: str
    inputs: tuple[str, ...] = ()
    func: str = ""


Functions = dict[str, tuple[tuple[str, ...], list[N]]]
TF2_SAVER = ("saver_filename:0", "StatefulPartitionedCall_2:0", "StatefulPartitionedCall_3")
TF1_SAVER = ("save/Const:0", "save/Identity:0", "save/restore_all")


def _node_bytes(node: N) -> bytes:
    out = field_bytes(1, node.name.encode()) + field_bytes(2, node.op.encode())
    out += b"".join(field_bytes(3, ref.encode()) for ref in node.inputs)
    if node.func:
        value = field_bytes(10, field_bytes(1, node.func.encode()))
        out += field_bytes(5, field_bytes(1, b"f") + field_bytes(2, value))
    return out


SERVING = ("serving_default_x:0", "StatefulPartitionedCall:0")  # signature input, output


def binary(
    nodes: list[N],
    functions: Functions,
    saver: tuple[str, str, str],
    signature: tuple[str, str] = SERVING,
    assets: tuple[tuple[str, str], ...] = (),
    keras_json: str = "",
) -> bytes:
    graph = b"".join(field_bytes(1, _node_bytes(n)) for n in nodes)
    library = b""
    for name, (args, body) in functions.items():
        opdef = field_bytes(1, name.encode()) + b"".join(
            field_bytes(2, field_bytes(1, a.encode())) for a in args
        )
        library += field_bytes(
            1, field_bytes(1, opdef) + b"".join(field_bytes(3, _node_bytes(n)) for n in body)
        )
    if library:
        graph += field_bytes(2, library)
    saver_def = b"".join(field_bytes(i + 1, s.encode()) for i, s in enumerate(saver))
    entries = [field_bytes(1, b"k") + field_bytes(2, field_bytes(1, t.encode())) for t in signature]
    inputs_outputs = field_bytes(1, entries[0]) + field_bytes(2, entries[1])
    signature_def = field_bytes(1, b"serving_default") + field_bytes(2, inputs_outputs)
    meta = field_bytes(2, graph) + field_bytes(3, saver_def) + field_bytes(5, signature_def)
    for tensor, filename in assets:
        info = field_bytes(1, field_bytes(1, tensor.encode()))
        meta += field_bytes(6, info + field_bytes(2, filename.encode()))
    if keras_json:
        user_object = field_bytes(1, b"_tf_keras_sequential") + field_bytes(3, keras_json.encode())
        meta += field_bytes(7, field_bytes(1, field_bytes(4, user_object)))
    return field_varint(1, 1) + field_bytes(2, meta)


def _node_text(node: N, tag: str) -> str:
    inputs = "".join(f" input: {json.dumps(ref)}" for ref in node.inputs)
    attr = (
        f' attr {{ key: "f" value {{ func {{ name: {json.dumps(node.func)} }} }} }}'
        if node.func
        else ""
    )
    return f"  {tag} {{ name: {json.dumps(node.name)} op: {json.dumps(node.op)}{inputs}{attr} }}\n"


def text(
    nodes: list[N],
    functions: Functions,
    saver: tuple[str, str, str],
    signature: tuple[str, str] = SERVING,
    assets: tuple[tuple[str, str], ...] = (),
    keras_json: str = "",
) -> bytes:
    out = "saved_model_schema_version: 1\nmeta_graphs {\n graph_def {\n"
    out += "".join(_node_text(n, "node") for n in nodes)
    out += " library {\n"
    for name, (args, body) in functions.items():
        arg_text = "".join(f' input_arg {{ name: "{a}" type: DT_STRING }}' for a in args)
        out += f'  function {{ signature {{ name: "{name}"{arg_text} }}\n'
        out += "".join(_node_text(n, "node_def") for n in body) + "  }\n"
    out += " }\n }\n saver_def {\n"
    out += (
        f' filename_tensor_name: "{saver[0]}"\n save_tensor_name: "{saver[1]}"\n'
        f' restore_op_name: "{saver[2]}"\n version: V2\n }}\n'
    )
    out += "".join(
        f' asset_file_def {{ tensor_info {{ name: "{t}" }} filename: "{f}" }}\n' for t, f in assets
    )
    if keras_json:
        out += (
            ' object_graph_def { nodes { user_object { identifier: "_tf_keras_sequential"'
            f" metadata: {json.dumps(keras_json)} }} }} }}\n"
        )
    out += (
        f' signature_def {{ key: "serving_default" value {{\n'
        f'  inputs {{ key: "x" value {{ name: "{signature[0]}" }} }}\n'
        f'  outputs {{ key: "y" value {{ name: "{signature[1]}" }} }} }} }}\n}}\n'
    )
    return out.encode()


def tf2_model(
    serving: list[N] | None = None,
    graph_extra: list[N] | None = None,
    save_call_path: str = "saver_filename",
    save_body: list[N] | None = None,
) -> tuple[list[N], Functions]:
    """What tf.saved_model.save writes for a one-variable module (names as TF gives them)."""
    graph = [
        N("Variable", "VarHandleOp"),
        N("serving_default_x", "Placeholder"),
        N(
            "StatefulPartitionedCall",
            "StatefulPartitionedCall",
            ("serving_default_x", "Variable"),
            "__inference_signature_wrapper_27",
        ),
        N("Const_2", "Const"),
        N("saver_filename", "Placeholder"),
        N(
            "StatefulPartitionedCall_2",
            "StatefulPartitionedCall",
            (save_call_path, "Variable", "Const_2"),
            "__inference__traced_save_74",
        ),
        N(
            "StatefulPartitionedCall_3",
            "StatefulPartitionedCall",
            ("saver_filename", "Variable"),
            "__inference__traced_restore_86",
        ),
        *(graph_extra or []),
    ]
    functions: Functions = {
        "__inference_signature_wrapper_27": (
            ("x", "unknown"),
            [
                N(
                    "StatefulPartitionedCall",
                    "StatefulPartitionedCall",
                    ("x", "unknown"),
                    "__inference___call___19",
                )
            ],
        ),
        "__inference___call___19": (
            ("x", "res"),
            [
                N("MatMul/ReadVariableOp", "ReadVariableOp", ("res",)),
                N("MatMul", "MatMul", ("x", "MatMul/ReadVariableOp:value:0")),
                N("Relu", "Relu", ("MatMul:product:0",)),
                *(serving or []),
            ],
        ),
        "__inference__traced_save_74": (
            ("file_prefix", "var", "savev2_const"),
            save_body
            or [
                N("StaticRegexFullMatch", "StaticRegexFullMatch", ("file_prefix",)),
                N("Const", "Const"),
                N("Const_1", "Const"),
                N(
                    "Select",
                    "Select",
                    ("StaticRegexFullMatch:output:0", "Const:output:0", "Const_1:output:0"),
                ),
                N("StringJoin", "StringJoin", ("file_prefix", "Select:output:0")),
                N("Read/DisableCopyOnRead", "DisableCopyOnRead", ("var",)),
                N("num_shards", "Const"),
                N("ShardedFilename/shard", "Const"),
                N(
                    "ShardedFilename",
                    "ShardedFilename",
                    (
                        "StringJoin:output:0",
                        "ShardedFilename/shard:output:0",
                        "num_shards:output:0",
                    ),
                ),
                N("SaveV2/tensor_names", "Const"),
                N("SaveV2/shape_and_slices", "Const"),
                N(
                    "SaveV2",
                    "SaveV2",
                    (
                        "ShardedFilename:filename:0",
                        "SaveV2/tensor_names:output:0",
                        "SaveV2/shape_and_slices:output:0",
                        "savev2_const",
                    ),
                ),
                N(
                    "MergeV2Checkpoints/checkpoint_prefixes",
                    "Pack",
                    ("ShardedFilename:filename:0", "^SaveV2"),
                ),
                N(
                    "MergeV2Checkpoints",
                    "MergeV2Checkpoints",
                    ("MergeV2Checkpoints/checkpoint_prefixes:output:0", "file_prefix"),
                ),
                N("Identity", "Identity", ("file_prefix", "^MergeV2Checkpoints")),
            ],
        ),
        "__inference__traced_restore_86": (
            ("file_prefix", "var"),
            [
                N("RestoreV2/tensor_names", "Const"),
                N("RestoreV2/shape_and_slices", "Const"),
                N(
                    "RestoreV2",
                    "RestoreV2",
                    (
                        "file_prefix",
                        "RestoreV2/tensor_names:output:0",
                        "RestoreV2/shape_and_slices:output:0",
                    ),
                ),
                N("Identity", "Identity", ("RestoreV2:tensors:0",)),
                N("AssignVariableOp", "AssignVariableOp", ("var", "Identity:output:0")),
            ],
        ),
    }
    return graph, functions


def tf1_graph(extra: list[N] | None = None) -> list[N]:
    """What the TF1 SavedModelBuilder writes for y = x @ w (sharded V2 saver)."""
    return [
        N("x", "Placeholder"),
        N("w", "VarHandleOp"),
        N("w/Read/ReadVariableOp", "ReadVariableOp", ("w",)),
        N("y/ReadVariableOp", "ReadVariableOp", ("w",)),
        N("y", "MatMul", ("x", "y/ReadVariableOp")),
        N("save/filename/input", "Const"),
        N("save/filename", "PlaceholderWithDefault", ("save/filename/input",)),
        N("save/Const", "PlaceholderWithDefault", ("save/filename",)),
        N("save/StaticRegexFullMatch", "StaticRegexFullMatch", ("save/Const",)),
        N("save/Const_1", "Const"),
        N("save/Const_2", "Const"),
        N("save/Select", "Select", ("save/StaticRegexFullMatch", "save/Const_1", "save/Const_2")),
        N("save/StringJoin", "StringJoin", ("save/Const", "save/Select")),
        N("save/num_shards", "Const"),
        N("save/ShardedFilename/shard", "Const"),
        N(
            "save/ShardedFilename",
            "ShardedFilename",
            ("save/StringJoin", "save/ShardedFilename/shard", "save/num_shards"),
        ),
        N("save/SaveV2/tensor_names", "Const"),
        N("save/SaveV2/shape_and_slices", "Const"),
        N(
            "save/SaveV2",
            "SaveV2",
            (
                "save/ShardedFilename",
                "save/SaveV2/tensor_names",
                "save/SaveV2/shape_and_slices",
                "w/Read/ReadVariableOp",
            ),
        ),
        N("save/control_dependency", "Identity", ("save/ShardedFilename", "^save/SaveV2")),
        N(
            "save/MergeV2Checkpoints/checkpoint_prefixes",
            "Pack",
            ("save/ShardedFilename", "^save/control_dependency"),
        ),
        N(
            "save/MergeV2Checkpoints",
            "MergeV2Checkpoints",
            ("save/MergeV2Checkpoints/checkpoint_prefixes", "save/Const"),
        ),
        N(
            "save/Identity",
            "Identity",
            ("save/Const", "^save/MergeV2Checkpoints", "^save/control_dependency"),
        ),
        N("save/RestoreV2/tensor_names", "Const"),
        N("save/RestoreV2/shape_and_slices", "Const"),
        N(
            "save/RestoreV2",
            "RestoreV2",
            ("save/Const", "save/RestoreV2/tensor_names", "save/RestoreV2/shape_and_slices"),
        ),
        N("save/Identity_1", "Identity", ("save/RestoreV2",)),
        N("save/AssignVariableOp", "AssignVariableOp", ("w", "save/Identity_1")),
        N("save/restore_shard", "NoOp", ("^save/AssignVariableOp",)),
        N("save/restore_all", "NoOp", ("^save/restore_shard",)),
        *(extra or []),
    ]


FORMS = [("saved_model.pb", binary), ("saved_model.pbtxt", text)]


def _scan(
    name: str,
    encode,
    nodes: list[N],
    functions: Functions,  # type: ignore[no-untyped-def]
    saver: tuple[str, str, str] = TF2_SAVER,
    signature: tuple[str, str] = SERVING,
    assets: tuple[tuple[str, str], ...] = (),
    keras_json: str = "",
):
    result = scan_data(encode(nodes, functions, saver, signature, assets, keras_json), name)
    assert result.format in ("savedmodel", "savedmodel_text"), result.format
    return result


@pytest.mark.parametrize("name,encode", FORMS)
def test_ordinary_tf2_saved_model_is_clean(name: str, encode) -> None:  # type: ignore[no-untyped-def]
    result = _scan(name, encode, *tf2_model())
    assert not result.findings, result.findings


@pytest.mark.parametrize("name,encode", FORMS)
def test_ordinary_tf1_saved_model_is_clean(name: str, encode) -> None:  # type: ignore[no-untyped-def]
    result = _scan(name, encode, tf1_graph(), {}, TF1_SAVER)
    assert not result.findings, result.findings


@pytest.mark.parametrize("name,encode", FORMS)
@pytest.mark.parametrize(
    "op", ["DatasetToTFRecord", "WriteFile", "ReadFile", "PyFunc", "CreateSummaryFileWriter"]
)
def test_file_and_python_ops_in_serving_are_flagged(name: str, encode, op: str) -> None:  # type: ignore[no-untyped-def]
    """The TFRecord writer (DatasetToTFRecord) was missing from the old denylist."""
    result = _scan(name, encode, *tf2_model(serving=[N("evil", op, ("x",))]))
    assert "TF001" in rules(result, Severity.HIGH), result.findings


@pytest.mark.parametrize("name,encode", FORMS)
def test_unknown_op_is_flagged(name: str, encode) -> None:  # type: ignore[no-untyped-def]
    result = _scan(name, encode, *tf2_model(serving=[N("c", "AcmeCustomOp", ("x",))]))
    assert "TF002" in rules(result, Severity.MEDIUM)


@pytest.mark.parametrize("name,encode", FORMS)
def test_checkpoint_write_in_serving_is_flagged(name: str, encode) -> None:  # type: ignore[no-untyped-def]
    evil = [
        N("path", "Const"),
        N("SaveV2", "SaveV2", ("path:output:0", "path:output:0", "path:output:0", "x")),
    ]
    result = _scan(name, encode, *tf2_model(serving=evil))
    assert "TF001" in rules(result, Severity.HIGH)


@pytest.mark.parametrize("name,encode", FORMS)
def test_saver_function_called_from_serving_loses_its_context(name: str, encode) -> None:  # type: ignore[no-untyped-def]
    call = [
        N("path", "Const"),
        N(
            "again",
            "StatefulPartitionedCall",
            ("path:output:0", "x"),
            "__inference__traced_save_74",
        ),
    ]
    result = _scan(name, encode, *tf2_model(serving=call))
    assert "TF001" in rules(result, Severity.HIGH)


@pytest.mark.parametrize("name,encode", FORMS)
def test_saver_called_with_a_path_of_its_own(name: str, encode) -> None:  # type: ignore[no-untyped-def]
    result = _scan(
        name, encode, *tf2_model(graph_extra=[N("evil_path", "Const")], save_call_path="evil_path")
    )
    assert "TF001" in rules(result, Severity.HIGH)


@pytest.mark.parametrize("name,encode", FORMS)
def test_save_path_with_a_prefix_of_its_own(name: str, encode) -> None:  # type: ignore[no-untyped-def]
    body = [
        N("dir", "Const"),
        N("StringJoin", "StringJoin", ("dir:output:0", "file_prefix")),
        N(
            "SaveV2",
            "SaveV2",
            ("StringJoin:output:0", "dir:output:0", "dir:output:0", "savev2_const"),
        ),
    ]
    result = _scan(name, encode, *tf2_model(save_body=body))
    assert "TF001" in rules(result, Severity.HIGH)


@pytest.mark.parametrize("name,encode", FORMS)
def test_tf1_checkpoint_write_outside_the_saver(name: str, encode) -> None:  # type: ignore[no-untyped-def]
    extra = [
        N("evil/path", "Const"),
        N("evil/SaveV2", "SaveV2", ("evil/path", "evil/path", "evil/path", "y")),
    ]
    result = _scan(name, encode, tf1_graph(extra), {}, TF1_SAVER)
    assert "TF001" in rules(result, Severity.HIGH)


@pytest.mark.parametrize("name,encode", FORMS)
def test_saver_fed_or_run_by_a_signature_is_no_saver(name: str, encode) -> None:  # type: ignore[no-untyped-def]
    """Serving that feeds the saver's filename (or runs the saver) makes its writes the
    caller's: checkpoint I/O there is not the declared saver's."""
    nodes, functions = tf2_model()
    fed = _scan(name, encode, nodes, functions, signature=("saver_filename:0", "x:0"))
    assert "TF001" in rules(fed, Severity.HIGH)
    run = _scan(
        name,
        encode,
        nodes,
        functions,
        signature=("serving_default_x:0", "StatefulPartitionedCall_2:0"),
    )
    assert "TF001" in rules(run, Severity.HIGH)


def vocab_model(
    call_path: str = "ReadVariableOp", body_path: str = "asset_path", extra: list[N] | None = None
) -> tuple[list[N], Functions]:
    """What tf.saved_model.save writes for a StaticHashTable read from a vocabulary asset."""
    graph, functions = tf2_model()
    graph += [
        N("asset_path_initializer", "Placeholder"),
        N("AssetVar", "VarHandleOp"),
        N("AssetVar/Assign", "AssignVariableOp", ("AssetVar", "asset_path_initializer")),
        N("ReadVariableOp", "ReadVariableOp", ("AssetVar", "^AssetVar/Assign")),
        N("hash_table", "HashTableV2"),
        N(
            "StatefulPartitionedCall_1",
            "StatefulPartitionedCall",
            (call_path, "hash_table"),
            "__inference__initializer_30",
        ),
        *(extra or []),
    ]
    functions["__inference__initializer_30"] = (
        ("asset_path", "table"),
        [
            N("evil", "Const"),
            N("init", "InitializeTableFromTextFileV2", ("table", body_path)),
        ],
    )
    return graph, functions


VOCAB = (("asset_path_initializer:0", "vocab.txt"),)


@pytest.mark.parametrize("name,encode", FORMS)
def test_vocabulary_asset_table_is_clean(name: str, encode) -> None:  # type: ignore[no-untyped-def]
    result = _scan(name, encode, *vocab_model(), assets=VOCAB)
    assert not result.findings, result.findings


@pytest.mark.parametrize("name,encode", FORMS)
@pytest.mark.parametrize(
    "case",
    [
        "const_in_body",
        "const_at_call",
        "traversing_asset",
        "no_asset",
        "variable_also_set_from_const",
    ],
)
def test_vocabulary_file_that_is_no_asset(name: str, encode, case: str) -> None:  # type: ignore[no-untyped-def]
    """InitializeTableFromTextFileV2 reading /etc/passwd into a table leaks it to inference."""
    assets = VOCAB
    if case == "const_in_body":
        model = vocab_model(body_path="evil:output:0")
    elif case == "const_at_call":
        model = vocab_model(call_path="passwd", extra=[N("passwd", "Const")])
    elif case == "traversing_asset":
        model, assets = vocab_model(), (("asset_path_initializer:0", "../../etc/passwd"),)
    elif case == "no_asset":
        model, assets = vocab_model(), ()
    else:
        model = vocab_model(
            extra=[N("passwd", "Const"), N("again", "AssignVariableOp", ("AssetVar", "passwd"))]
        )
    result = _scan(name, encode, *model, assets=assets)
    assert "TF001" in rules(result, Severity.HIGH), case


@pytest.mark.parametrize("name,encode", FORMS)
def test_keras_config_in_the_object_graph(name: str, encode) -> None:  # type: ignore[no-untyped-def]
    """tf.keras revives layers from SavedUserObject.metadata when keras_metadata.pb is absent;
    a Keras 2 Lambda there carries bytecode (no safe_mode in Keras 2)."""
    lambda_layer = {
        "class_name": "Lambda",
        "config": {"name": "l", "function": ["YWJj", None, None], "function_type": "lambda"},
    }
    config = json.dumps({"class_name": "Sequential", "config": {"layers": [lambda_layer]}})
    result = _scan(name, encode, *tf2_model(), keras_json=config)
    assert "KER001" in rules(result, Severity.CRITICAL)
    benign = json.dumps({"class_name": "Dense", "config": {"units": 2}})
    assert not _scan(name, encode, *tf2_model(), keras_json=benign).findings


def test_malformed_text_fails_closed() -> None:
    result = scan_data(
        b"saved_model_schema_version: 1\nmeta_graphs { graph_def { node {", "saved_model.pbtxt"
    )
    assert "FMT004" in rules(result)


def test_text_parser_bounds() -> None:
    with pytest.raises(prototext.TextProtoError):
        prototext.parse(b"a {" * 200 + b"}" * 200)
    with pytest.raises(prototext.TextProtoError):
        prototext.parse(b'a: "unterminated')
    parsed = prototext.parse(
        b'a: [1, "x"] b < c: "q\\x41" "z" > [type.googleapis.com/x.Y] { k: v }'
    )
    assert parsed == [
        ("a", "1"),
        ("a", "x"),
        ("b", [("c", "qAz")]),
        ("[type.googleapis.com/x.Y]", [("k", "v")]),
    ]


def test_allowlist_has_reasons_and_no_file_ops() -> None:
    ops = pure_ops()
    assert len(ops) > 900
    assert not ops & set(RISKY_OPS)
    assert not ops & set(CHECKPOINT_OPS)
    data = Path(__file__).parents[2] / "src/bastion/scan/tf_pure_ops.txt"
    for line in data.read_text().splitlines():
        if not line.startswith("#"):
            op, reason = line.split("\t")
            assert op and reason


# --- with the real TensorFlow, where installed (not a test dependency) ---------------------

_REAL = """
import tensorflow as tf
class M(tf.Module):
    def __init__(self):
        self.w = tf.Variable(tf.ones([3, 2]))
    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
    def __call__(self, x):
        return tf.nn.relu(tf.matmul(x, self.w))
class Evil(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([], tf.string)])
    def __call__(self, x):
        tf.io.write_file("bastion-marker.txt", x)
        return tf.identity(x)
class Vocab(tf.Module):
    def __init__(self):
        init = tf.lookup.TextFileInitializer(
            "vocab.txt", tf.string, tf.lookup.TextFileIndex.WHOLE_LINE, tf.int64,
            tf.lookup.TextFileIndex.LINE_NUMBER)
        self.table = tf.lookup.StaticHashTable(init, -1)
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def __call__(self, x):
        return self.table.lookup(x)
open("vocab.txt", "w").write("a\\nb\\n")
tf.saved_model.save(Vocab(), "vocab")
tf.saved_model.save(M(), "good")
tf.saved_model.save(Evil(), "evil")
tf.saved_model.load("evil")(tf.constant("written by the loaded model"))
"""


def test_real_tensorflow_saved_models(tmp_path: Path) -> None:
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        pytest.skip("tensorflow is not installed")
    subprocess.run(
        [sys.executable, "-c", _REAL],
        cwd=tmp_path,
        check=True,
        timeout=600,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
        capture_output=True,
    )
    from helpers import scan_file

    assert not scan_file(tmp_path / "good/saved_model.pb").findings
    assert not scan_file(tmp_path / "vocab/saved_model.pb").findings
    assert (tmp_path / "bastion-marker.txt").exists()  # the loaded model wrote a file
    assert "TF001" in rules(scan_file(tmp_path / "evil/saved_model.pb"), Severity.CRITICAL)

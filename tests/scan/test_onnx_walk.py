"""Every place an ONNX model can carry a tensor (and so an external-data location) or a node is
walked: training-info graphs and attribute sparse_tensors too."""

from __future__ import annotations

import pytest
from helpers import rules, scan_data

from bastion.findings import Severity

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402


def _external(location: str) -> TensorProto:
    tensor = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[1])
    tensor.data_location = TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", location
    return tensor


def _model() -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    return helper.make_model(graph)


def test_training_info_graphs_are_walked() -> None:
    model = _model()
    info = model.training_info.add()
    info.initialization.CopyFrom(
        helper.make_graph(
            [helper.make_node("Custom", [], ["z"], domain="acme.ops")],
            "init",
            [],
            [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1])],
            [_external("/etc/passwd")],
        )
    )
    data = model.SerializeToString()
    onnx.load_model_from_string(data)  # the real parser accepts it
    found = rules(scan_data(data, "model.onnx"))
    assert "ONX001" in found and "ONX002" in found


def test_attribute_sparse_tensors_are_walked() -> None:
    model = _model()
    sparse = onnx.SparseTensorProto(values=_external("../../etc/shadow"), dims=[1])
    sparse.indices.CopyFrom(helper.make_tensor("i", TensorProto.INT64, [1], [0]))
    attribute = helper.make_attribute("sp", [sparse])
    model.graph.node[0].attribute.append(attribute)
    data = model.SerializeToString()
    onnx.load_model_from_string(data)
    assert "ONX001" in rules(scan_data(data, "model.onnx"), Severity.CRITICAL)


def _with_function(body_nodes: list[onnx.NodeProto], domain: str) -> onnx.ModelProto:
    model = _model()
    function = helper.make_function(
        domain, "F", [], ["out"], body_nodes, [helper.make_opsetid("", 17)]
    )
    model.functions.append(function)
    model.graph.node.append(helper.make_node("F", [], ["f_out"], domain=domain))
    model.opset_import.append(helper.make_opsetid(domain, 1))
    return model


@pytest.mark.parametrize("domain", ["com.microsoft", "pkg.onnxscript.torch_lib"])
def test_function_bodies_are_walked(domain: str) -> None:
    """Attack A2-06: FunctionProto's nodes are field 7 (4 is its input names); a Constant with
    external data inside a model-local function was never seen."""
    constant = helper.make_node("Constant", [], ["out"], value=_external("/etc/hostname"))
    data = _with_function([constant], domain).SerializeToString()
    onnx.load_model_from_string(data)
    assert "ONX001" in rules(scan_data(data, "model.onnx"), Severity.CRITICAL)


def test_function_body_custom_op_reported_not_the_call_site() -> None:
    body = [helper.make_node("Evil", [], ["out"], domain="acme.native")]
    result = scan_data(_with_function(body, "pkg.local").SerializeToString(), "model.onnx")
    custom = [f.evidence for f in result.findings if f.rule_id == "ONX002"]
    assert custom == ["acme.native"]


def test_exporter_local_functions_are_not_custom_ops() -> None:
    """torch.onnx (dynamo) exports model-local functions in domains like pkg.onnxscript: the
    call sites are the model's own functions, not native custom ops."""
    body = [helper.make_node("Relu", ["x"], ["out"])]
    result = scan_data(
        _with_function(body, "pkg.onnxscript.torch_lib").SerializeToString(), "model.onnx"
    )
    assert not result.findings, result.findings


def _every_external_tensor(message: object) -> set[str]:
    """Generic walk over the protobuf descriptors: every TensorProto that names external data,
    wherever onnx's schema lets one sit."""
    found: set[str] = set()
    stack = [message]
    while stack:
        current = stack.pop()
        if isinstance(current, TensorProto) and current.data_location == TensorProto.EXTERNAL:
            found.add(current.name)
        for field, value in current.ListFields():  # type: ignore[attr-defined]
            if field.type != field.TYPE_MESSAGE:
                continue
            stack.extend(value if field.is_repeated else [value])
    return found


def _named(name: str) -> TensorProto:
    tensor = _external(f"/abs/{name}")
    tensor.name = name
    return tensor


def _sparse(name: str) -> onnx.SparseTensorProto:
    sparse = onnx.SparseTensorProto(values=_named(name), dims=[1])
    sparse.indices.CopyFrom(helper.make_tensor(f"{name}_i", TensorProto.INT64, [1], [0]))
    return sparse


def test_every_tensor_place_is_walked() -> None:
    """Differential: bastion reports an external location for every external tensor a generic
    descriptor walk finds, in every place the ONNX schema allows one."""
    inner = helper.make_graph(
        [helper.make_node("Constant", [], ["c"], value=_named("in_sub"))],
        "sub",
        [],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [1])],
        [_named("sub_init")],
    )
    node = helper.make_node("If", ["x"], ["y2"], then_branch=inner, else_branch=inner)
    node.attribute.append(helper.make_attribute("t1", _named("attr_t")))
    node.attribute.append(helper.make_attribute("ts", [_named("attr_ts")]))
    node.attribute.append(helper.make_attribute("sp", _sparse("attr_sparse")))
    node.attribute.append(helper.make_attribute("sps", [_sparse("attr_sparses")]))
    node.attribute.append(helper.make_attribute("gs", [inner]))
    model = _with_function(
        [helper.make_node("Constant", [], ["out"], value=_named("func"))], "pkg.local"
    )
    default = helper.make_attribute("v", _named("func_default"))
    model.functions[0].attribute_proto.append(default)  # attack A2-17: default attribute values
    model.graph.node.append(node)
    model.graph.initializer.append(_named("init"))
    model.graph.sparse_initializer.append(_sparse("sparse_init"))
    info = model.training_info.add()
    info.algorithm.CopyFrom(helper.make_graph([], "algo", [], [], [_named("training")]))
    expected = _every_external_tensor(model)
    assert len(expected) >= 10
    result = scan_data(model.SerializeToString(), "model.onnx")
    reported = {
        f.location.pointer.removeprefix("tensor ")
        for f in result.findings
        if f.rule_id == "ONX001" and f.location.pointer
    }
    assert expected <= reported, expected - reported

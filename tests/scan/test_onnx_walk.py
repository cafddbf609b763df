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
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    return helper.make_model(graph)


def test_training_info_graphs_are_walked() -> None:
    model = _model()
    info = model.training_info.add()
    info.initialization.CopyFrom(helper.make_graph(
        [helper.make_node("Custom", [], ["z"], domain="acme.ops")], "init", [],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1])], [_external("/etc/passwd")]))
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

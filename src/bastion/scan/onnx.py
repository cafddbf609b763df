"""ONNX models: external-data locations (traversal, absolute paths, symlinks and hard links
escaping the model folder) and custom operator domains, in the main graph, nested subgraphs
and model-local functions. The protobuf is walked without reading tensor bytes."""

from __future__ import annotations

import os
from pathlib import Path

from bastion.findings import Confidence, Location, Severity, Stage
from bastion.rules import Rule
from bastion.scan.base import MALFORMED, ScanContext
from bastion.scan.protobuf import LENGTH, VARINT, ProtoError, ProtoStream
from bastion.scan.source import Source

EXTERNAL_ESCAPE = Rule(
    id="ONX001",
    title="ONNX external data points outside the model folder",
    severity=Severity.CRITICAL,
    confidence=Confidence.HIGH,
    stage=Stage.ARTIFACT,
    profile="model-code-execution",
    description="A tensor's external-data location is absolute, climbs out with '..', or is a "
    "link leaving the model folder. Loading the model reads that file (e.g. "
    "/etc/passwd, SSH keys) into a tensor that inference can leak "
    "(CVE-2022-25882, CVE-2024-27318).",
    remediation="Keep external data files inside the model folder with plain relative names.",
)
CUSTOM_DOMAIN = Rule(
    id="ONX002",
    title="ONNX model uses a custom operator domain",
    severity=Severity.MEDIUM,
    confidence=Confidence.MEDIUM,
    stage=Stage.ARTIFACT,
    profile="model-code-execution",
    description="Nodes use an operator domain outside the ONNX standard and ONNX Runtime "
    "contrib ops. Running the model needs a native custom-op library, which is "
    "arbitrary code.",
    remediation="Check where the custom-op library comes from, or export with standard ops.",
)
MISSING_EXTERNAL = Rule(
    id="ONX003",
    title="ONNX external data file is missing",
    severity=Severity.LOW,
    confidence=Confidence.HIGH,
    stage=Stage.ARTIFACT,
    profile="model-integrity",
    description="A tensor refers to an external data file that is not next to the model, so the "
    "weights that will be loaded were not part of this scan.",
    remediation="Ship the external data with the model and scan them together.",
)

# the rules this module's checks emit (listed in bastion.catalogue)
RULES = (EXTERNAL_ESCAPE, CUSTOM_DOMAIN, MISSING_EXTERNAL)

STANDARD_DOMAINS = frozenset(
    {
        "",
        "ai.onnx",
        "ai.onnx.ml",
        "ai.onnx.preview.training",
        "ai.onnx.training",
        "com.microsoft",
        "com.microsoft.nchwc",
        "com.microsoft.experimental",
        "org.pytorch.aten",
        "com.ms.internal.nhwc",
    }
)
MAX_GRAPH_DEPTH = 16
MAX_MESSAGES = 5_000_000

# field numbers (onnx.proto3)
MODEL_GRAPH, MODEL_FUNCTIONS, MODEL_TRAINING_INFO = 7, 25, 20
TRAINING_GRAPHS = (1, 2)  # TrainingInfoProto: initialization, algorithm
GRAPH_NODE, GRAPH_INITIALIZER, GRAPH_SPARSE_INIT = 1, 5, 15
NODE_OP_TYPE, NODE_ATTRIBUTE, NODE_DOMAIN = 4, 5, 7
ATTR_T, ATTR_G, ATTR_TENSORS, ATTR_GRAPHS, ATTR_SPARSE, ATTR_SPARSES = 5, 6, 10, 11, 22, 23
TENSOR_NAME, TENSOR_EXTERNAL, TENSOR_LOCATION = 8, 13, 14
FUNCTION_NAME, FUNCTION_NODE, FUNCTION_DOMAIN = 1, 7, 10  # FunctionProto (input is 4)
FUNCTION_ATTRIBUTE_PROTO = 11  # default attribute values, tensors and graphs included


class OnnxScanner:
    name = "onnx"
    formats = ("onnx",)

    def scan(self, ctx: ScanContext, source: Source, fmt: str) -> None:
        with source.open() as handle:
            walker = _Walker(ctx, source, ProtoStream(handle, source.size))
            try:
                walker.model()
            except ProtoError as exc:
                ctx.add(
                    MALFORMED.finding(
                        source.location, f"invalid ONNX protobuf: {exc}", evidence=str(exc)
                    )
                )
        for domain, ops in sorted(walker.custom.items()):
            listed = ", ".join(sorted(ops)[:8])
            ctx.add(
                CUSTOM_DOMAIN.finding(
                    source.location.model_copy(update={"pointer": f"domain {domain}"}),
                    f"operators from custom domain '{domain}': {listed}",
                    evidence=domain,
                )
            )


class _Walker:
    def __init__(self, ctx: ScanContext, source: Source, proto: ProtoStream) -> None:
        self.ctx = ctx
        self.source = source
        self.proto = proto
        self.calls: dict[str, set[str]] = {}  # non-standard domain -> op types used
        self.local_functions: set[tuple[str, str]] = set()  # (domain, name) defined in the model
        self.messages = 0

    @property
    def custom(self) -> dict[str, set[str]]:
        """Ops from non-standard domains that are not the model's own functions (whose bodies
        are walked like the graph): those need a native custom-op library."""
        found: dict[str, set[str]] = {}
        for domain, ops in self.calls.items():
            native = {op for op in ops if (domain, op) not in self.local_functions}
            if native:
                found[domain] = native
        return found

    def _tick(self) -> None:
        self.messages += 1
        if self.messages % 4096 == 0:
            self.ctx.check_time()
        if self.messages > MAX_MESSAGES:
            raise ProtoError(f"more than {MAX_MESSAGES} messages")

    def model(self) -> None:
        saw_graph = False
        for number, wire, pos, length in self.proto.fields(0, self.proto.size):
            if number == MODEL_GRAPH and wire == LENGTH:
                saw_graph = True
                self.graph(pos, pos + length, 0)
            elif number == MODEL_FUNCTIONS and wire == LENGTH:
                self.function(pos, pos + length)
            elif number == MODEL_TRAINING_INFO and wire == LENGTH:
                for n2, w2, p2, l2 in self.proto.fields(pos, pos + length):
                    if n2 in TRAINING_GRAPHS and w2 == LENGTH:
                        self.graph(p2, p2 + l2, 1)
        if not saw_graph:
            raise ProtoError("no graph in the model")

    def graph(self, start: int, end: int, depth: int) -> None:
        if depth > MAX_GRAPH_DEPTH:
            raise ProtoError("subgraphs nested too deeply")
        for number, wire, pos, length in self.proto.fields(start, end):
            self._tick()
            if wire != LENGTH:
                continue
            if number == GRAPH_NODE:
                self.node(pos, pos + length, depth)
            elif number in (GRAPH_INITIALIZER, GRAPH_SPARSE_INIT):
                self.tensor(pos, pos + length, sparse=number == GRAPH_SPARSE_INIT)

    def function(self, start: int, end: int) -> None:
        name, domain = "", ""
        for number, wire, pos, length in self.proto.fields(start, end):
            if wire != LENGTH:
                continue
            if number == FUNCTION_NODE:
                self.node(pos, pos + length, 1)
            elif number == FUNCTION_ATTRIBUTE_PROTO:
                self.attribute(pos, pos + length, 1)
            elif number == FUNCTION_NAME:
                name = self.proto.string(pos, length, 256)
            elif number == FUNCTION_DOMAIN:
                domain = self.proto.string(pos, length, 256)
        self.local_functions.add((domain[:120], name[:80]))

    def node(self, start: int, end: int, depth: int) -> None:
        domain, op_type = "", ""
        for number, wire, pos, length in self.proto.fields(start, end):
            if wire != LENGTH:
                continue
            if number == NODE_DOMAIN:
                domain = self.proto.string(pos, length, 256)
            elif number == NODE_OP_TYPE:
                op_type = self.proto.string(pos, length, 256)
            elif number == NODE_ATTRIBUTE:
                self.attribute(pos, pos + length, depth)
        if domain not in STANDARD_DOMAINS:
            self.calls.setdefault(domain[:120], set()).add(op_type[:80])  # <= one per node

    def attribute(self, start: int, end: int, depth: int) -> None:
        for number, wire, pos, length in self.proto.fields(start, end):
            if wire != LENGTH:
                continue
            if number in (ATTR_G, ATTR_GRAPHS):
                self.graph(pos, pos + length, depth + 1)
            elif number in (ATTR_T, ATTR_TENSORS):
                self.tensor(pos, pos + length)
            elif number in (ATTR_SPARSE, ATTR_SPARSES):
                self.tensor(pos, pos + length, sparse=True)

    def tensor(self, start: int, end: int, sparse: bool = False) -> None:
        if sparse:  # SparseTensorProto: values (1) and indices (2) are TensorProtos
            for number, wire, pos, length in self.proto.fields(start, end):
                if number in (1, 2) and wire == LENGTH:
                    self.tensor(pos, pos + length)
            return
        name, external, location_flag = "", {}, 0
        for number, wire, pos, length in self.proto.fields(start, end):
            if number == TENSOR_NAME and wire == LENGTH:
                name = self.proto.string(pos, length, 512)
            elif number == TENSOR_LOCATION and wire == VARINT:
                location_flag = pos
            elif number == TENSOR_EXTERNAL and wire == LENGTH:
                key, value = "", ""
                for n2, w2, p2, l2 in self.proto.fields(pos, pos + length):
                    if w2 == LENGTH and n2 == 1:
                        key = self.proto.string(p2, l2, 256)
                    elif w2 == LENGTH and n2 == 2:
                        value = self.proto.string(p2, l2, 4096)
                external[key] = value
        if location_flag == 1 or "location" in external:
            self.external(name, external.get("location", ""))

    def external(self, tensor: str, location: str) -> None:
        where = self.source.location.model_copy(update={"pointer": f"tensor {tensor[:200]}"})
        problem = _location_problem(location)
        if problem:
            self.ctx.add(
                EXTERNAL_ESCAPE.finding(
                    where,
                    f"external data location {location!r} is {problem}",
                    evidence=location[:300],
                )
            )
            return
        if self.source.fs_path is None:
            return
        folder = self.source.fs_path.parent
        target = folder / location
        _check_on_disk(self.ctx, where, folder, target, location)


def _location_problem(location: str) -> str | None:
    normal = location.replace("\\", "/")
    if not normal:
        return "empty"
    if normal.startswith("/") or (len(normal) > 1 and normal[1] == ":"):
        return "an absolute path"
    if ".." in normal.split("/"):
        return "a path climbing out of the model folder"
    if "\x00" in normal:
        return "a path with a NUL byte"
    return None


def _check_on_disk(
    ctx: ScanContext, where: Location, folder: Path, target: Path, location: str
) -> None:
    if not os.path.lexists(target):
        ctx.add(
            MISSING_EXTERNAL.finding(
                where, f"external data file {location!r} is missing", evidence=location[:300]
            )
        )
        return
    real_folder = os.path.realpath(folder)
    real_target = os.path.realpath(target)
    if os.path.commonpath([real_folder, real_target]) != real_folder:
        ctx.add(
            EXTERNAL_ESCAPE.finding(
                where,
                f"external data {location!r} is a link to {real_target}, outside the model folder",
                evidence=location[:300],
            )
        )
    elif os.lstat(target).st_nlink > 1 and os.path.isfile(target):
        ctx.add(
            EXTERNAL_ESCAPE.finding(
                where,
                f"external data {location!r} is a hard link "
                "shared with another file, possibly outside the folder",
                evidence=location[:300],
                severity=Severity.HIGH,
            )
        )

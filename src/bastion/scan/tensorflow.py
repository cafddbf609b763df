"""TensorFlow SavedModel (saved_model.pb): operations in the graph and in its function library
that read or write files or run Python; also Keras configs stored in keras_metadata.pb."""

from __future__ import annotations

import json

from bastion.findings import Confidence, Severity, Stage
from bastion.rules import Rule
from bastion.scan.base import MALFORMED, ScanContext
from bastion.scan.protobuf import LENGTH, ProtoError, ProtoStream
from bastion.scan.source import Source

DANGEROUS_OP = Rule(
    id="TF001", title="SavedModel graph uses a dangerous operation", severity=Severity.CRITICAL,
    confidence=Confidence.HIGH, stage=Stage.ARTIFACT, profile="model-code-execution",
    description="The graph calls an operation that runs Python (PyFunc) or reads/writes "
                "arbitrary files when the model is loaded or served.",
    remediation="Reject the model or rebuild it without these operations.",
)

# op name -> (severity, what it does)
RISKY_OPS: dict[str, tuple[Severity, str]] = {
    "PyFunc": (Severity.CRITICAL, "runs a Python function"),
    "PyFuncStateless": (Severity.CRITICAL, "runs a Python function"),
    "EagerPyFunc": (Severity.CRITICAL, "runs a Python function"),
    "ReadFile": (Severity.CRITICAL, "reads any file"),
    "WriteFile": (Severity.CRITICAL, "writes any file"),
    "MatchingFiles": (Severity.HIGH, "lists files by pattern"),
    "DeleteFile": (Severity.CRITICAL, "deletes files"),
    "Save": (Severity.HIGH, "writes tensors to a named file"),
    "SaveSlices": (Severity.HIGH, "writes tensors to a named file"),
    "ImmutableConst": (Severity.HIGH, "memory-maps a named file"),
    "PrintV2": (Severity.MEDIUM, "prints, possibly to a file"),
    "LoadLibrary": (Severity.CRITICAL, "loads a native library"),
    "DebugIdentityV3": (Severity.MEDIUM, "writes debug dumps to a path"),
}

# field numbers (tensorflow/core/protobuf)
SAVED_MODEL_META_GRAPHS = 2
META_GRAPH_DEF = 2
GRAPH_NODE, GRAPH_LIBRARY = 1, 2
NODE_NAME, NODE_OP = 1, 2
LIBRARY_FUNCTION = 1
FUNCTION_SIGNATURE, FUNCTION_NODE_DEF = 1, 3
MAX_DEPTH = 12


class SavedModelScanner:
    name = "tensorflow"
    formats = ("savedmodel",)

    def scan(self, ctx: ScanContext, source: Source, fmt: str) -> None:
        found: dict[str, list[str]] = {}
        with source.open() as handle:
            proto = ProtoStream(handle, source.size)
            try:
                if source.name == "keras_metadata.pb":
                    self._keras_metadata(ctx, source, proto)
                    return
                for number, wire, pos, length in proto.fields(0, source.size):
                    if number == SAVED_MODEL_META_GRAPHS and wire == LENGTH:
                        for n2, w2, p2, l2 in proto.fields(pos, pos + length):
                            if n2 == META_GRAPH_DEF and w2 == LENGTH:
                                self._graph(ctx, proto, p2, p2 + l2, found, "graph")
            except ProtoError as exc:
                ctx.add(MALFORMED.finding(source.location, f"invalid SavedModel protobuf: {exc}",
                                          evidence=str(exc)))
        for op, places in sorted(found.items()):
            severity, what = RISKY_OPS[op]
            ctx.add(DANGEROUS_OP.finding(
                source.location.model_copy(update={"pointer": places[0][:200]}),
                f"operation {op} {what} ({len(places)} use{'s' if len(places) > 1 else ''})",
                evidence=op, severity=severity))

    def _graph(self, ctx: ScanContext, proto: ProtoStream, start: int, end: int,
               found: dict[str, list[str]], where: str) -> None:
        for number, wire, pos, length in proto.fields(start, end):
            if wire != LENGTH:
                continue
            if number == GRAPH_NODE:
                self._node(proto, pos, pos + length, found, where)
            elif number == GRAPH_LIBRARY:
                for n2, w2, p2, l2 in proto.fields(pos, pos + length):
                    if n2 == LIBRARY_FUNCTION and w2 == LENGTH:
                        ctx.check_time()
                        self._function(proto, p2, p2 + l2, found)

    def _function(self, proto: ProtoStream, start: int, end: int,
                  found: dict[str, list[str]]) -> None:
        name = "function"
        for number, wire, pos, length in proto.fields(start, end):
            if number == FUNCTION_SIGNATURE and wire == LENGTH:
                for n2, w2, p2, l2 in proto.fields(pos, pos + length):
                    if n2 == 1 and w2 == LENGTH:
                        name = f"function {proto.string(p2, l2, 256)}"
            elif number == FUNCTION_NODE_DEF and wire == LENGTH:
                self._node(proto, pos, pos + length, found, name)

    def _node(self, proto: ProtoStream, start: int, end: int, found: dict[str, list[str]],
              where: str) -> None:
        node_name, op = "", ""
        for number, wire, pos, length in proto.fields(start, end):
            if wire != LENGTH:
                continue
            if number == NODE_NAME:
                node_name = proto.string(pos, length, 256)
            elif number == NODE_OP:
                op = proto.string(pos, length, 256)
        if op in RISKY_OPS:
            places = found.setdefault(op, [])
            if len(places) < 32:
                places.append(f"{where}: node {node_name}")

    def _keras_metadata(self, ctx: ScanContext, source: Source, proto: ProtoStream) -> None:
        """keras_metadata.pb holds JSON layer configs in string fields of its nodes."""
        from bastion.scan.keras import analyse_keras_config

        stack = [(0, source.size, 0)]
        while stack:
            start, end, depth = stack.pop()
            for _number, wire, pos, length in proto.fields(start, end):
                if wire != LENGTH or depth > MAX_DEPTH:
                    continue
                head = proto.read(pos, min(length, 1))
                if head == b"{" and length <= ctx.limits.max_metadata:
                    try:
                        config = json.loads(proto.read(pos, length))
                    except (ValueError, RecursionError, UnicodeDecodeError):
                        continue
                    analyse_keras_config(ctx, source.location, config)
                else:
                    try:
                        list(proto.fields(pos, pos + length))
                    except ProtoError:
                        continue
                    stack.append((pos, pos + length, depth + 1))

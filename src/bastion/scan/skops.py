"""skops archives (`skops.io.dump`): a zip whose root `schema.json` describes the object tree.
Each node names a `__module__` and `__class__` and a `__loader__` that says what skops.io.load
does with them: import the module and call the object (ConstructorFromReduceNode, containers,
namedtuples), build an instance without calling it and restore its state (ObjectNode), or keep
the object as a value (FunctionNode, TypeNode). skops refuses types outside its own trusted list
unless the caller passes them (`trusted=get_untrusted_types(file=...)` is its documented
workflow), so every type the file would import is graded with the pickle allowlist
(pickle_globals.classify) by that use. Nothing is imported; the data members (.npy, .bin) are
scanned as files of their own."""

from __future__ import annotations

import json
from typing import Any

from bastion.findings import Confidence, Location, Severity, Stage
from bastion.records import Record
from bastion.rules import Rule
from bastion.scan.base import MALFORMED, ScanContext
from bastion.scan.pickle_globals import CALL, NEW, REF, Verdict, classify
from bastion.scan.source import Source
from bastion.scan.ziparchive import ZipReader
from bastion.scan.zipmembers import member_source, scan_zip_member

SCHEMA = "schema.json"
MAX_NODES = 200_000

SKOPS_DANGEROUS = Rule(
    id="SKP001",
    title="skops archive calls code-running or file/network callables",
    severity=Severity.CRITICAL,
    confidence=Confidence.HIGH,
    stage=Stage.ARTIFACT,
    profile="model-code-execution",
    description="The archive's schema.json makes skops.io.load import and call (or keep) an "
    "object that executes processes, evaluates code, imports modules or touches "
    "files or the network (e.g. ConstructorFromReduceNode of posix.system). skops "
    "refuses it only until the caller trusts the types get_untrusted_types() lists.",
    remediation="Do not load this file, and do not pass its untrusted types to skops.io.load.",
)
SKOPS_UNKNOWN = Rule(
    id="SKP002",
    title="skops archive calls a name outside the allowlist",
    severity=Severity.HIGH,
    confidence=Confidence.MEDIUM,
    stage=Stage.ARTIFACT,
    profile="model-code-execution",
    description="skops.io.load would import and call (or keep as a callable value) an object "
    "that is not on bastion's allowlist of known-safe model globals, or use an "
    "allowlisted one in a way it is not listed for.",
    remediation="Check what the named object does with the archive's arguments before passing "
    "it to skops.io.load's `trusted`; waive the finding for this path if it is your "
    "own reviewed code.",
)
SKOPS_OUTSIDE = Rule(
    id="SKP003",
    title="skops archive instantiates a class outside the allowlist",
    severity=Severity.LOW,
    confidence=Confidence.MEDIUM,
    stage=Stage.ARTIFACT,
    profile="model-code-execution",
    description="skops.io.load would import a module that is not on bastion's allowlist and "
    "build an instance of one of its classes without calling it (ObjectNode): "
    "importing the module runs its code. Reported below the default gate; --strict "
    "fails on it.",
    remediation="Check that the named module is your own trusted code.",
)

# the rules this module's checks emit (listed in bastion.catalogue)
RULES = (SKOPS_DANGEROUS, SKOPS_UNKNOWN, SKOPS_OUTSIDE)

# __loader__ -> what skops.io.load does with the node's (__module__, __class__)
_CALLED = CALL  # gettype(module, class)(...)
_USES = {
    "ConstructorFromReduceNode": _CALLED,
    "DictNode": _CALLED,
    "DefaultDictNode": _CALLED,
    "ListNode": _CALLED,
    "SetNode": _CALLED,
    "TupleNode": _CALLED,  # a namedtuple class is called with the items
    "SliceNode": _CALLED,
    "PartialNode": _CALLED,
    "OperatorFuncNode": _CALLED,
    "RandomStateNode": _CALLED,
    "RandomGeneratorNode": _CALLED,
    "DTypeNode": REF,  # the dtype of the array in its content: the type is only checked
    "MaskedArrayNode": _CALLED,
    "ReduceNode": _CALLED,
    "TreeNode": _CALLED,
    "LossNode": _CALLED,
    "QuantileForestNode": _CALLED,
    "SGDNode": _CALLED,
    "NdArrayNode": CALL,  # refined in schema_names
    "ObjectNode": NEW,  # cls.__new__(cls), then __setstate__ or __dict__.update
    "FunctionNode": REF,
    "TypeNode": REF,
    "MethodNode": REF,
    "SparseMatrixNode": REF,  # scipy.sparse.load_npz(allow_pickle=False): type only checked
    "JsonNode": "",
    "BytesNode": "",
    "BytearrayNode": "",  # json.loads / raw bytes: no import
}


# numpy's own bit generators (numpy.random.<name>), the classes skops' check lets through
_BIT_GENERATORS = frozenset({"MT19937", "PCG64", "PCG64DXSM", "Philox", "SFC64"})


class SkopsName(Record):
    module: str
    name: str
    use: str
    pointer: str


def scan_skops_zip(ctx: ScanContext, source: Source, reader: ZipReader) -> None:
    ctx.formats.append("skops")
    for entry in reader.directory.entries:
        if entry.name == SCHEMA and not (entry.is_dir or entry.is_symlink):
            child = member_source(ctx, source, reader, entry)
            if child is not None:
                data = child.read_all(ctx.limits.max_metadata, "skops schema.json")
                analyse_schema(ctx, child.location, data)
        else:
            scan_zip_member(ctx, source, reader, entry)


def analyse_schema(ctx: ScanContext, location: Location, data: bytes) -> None:
    try:
        schema = json.loads(data)
    except (ValueError, RecursionError) as exc:
        ctx.add(
            MALFORMED.finding(
                location, f"skops schema.json is not JSON: {exc}", evidence=str(exc)[:200]
            )
        )
        return
    names, complete = schema_names(schema)
    if not complete:
        ctx.limit_hit(location, f"skops schema with more than {MAX_NODES} nodes")
    seen: dict[tuple[str, str], tuple[str, str]] = {}
    for found in names:
        key = (found.module, found.name)
        uses, pointer = seen.get(key, ("", found.pointer))
        seen[key] = ("".join(sorted(set(uses + found.use))), pointer)
    for (module, name), (uses, pointer) in sorted(seen.items()):
        verdict = classify(module, name)
        if verdict.permits(uses):
            continue
        where = location.model_copy(update={"pointer": pointer[:200]})
        rule, message = _grade(verdict, uses)
        ctx.add(rule.finding(where, message, evidence=verdict.qualname))


def _grade(verdict: Verdict, uses: str) -> tuple[Rule, str]:
    used = "/".join({CALL: "calls", NEW: "instantiates", REF: "keeps"}[u] for u in uses)
    if verdict.category is not None:
        return SKOPS_DANGEROUS, (
            f"skops.io.load imports and {used} {verdict.qualname} [{verdict.category}]"
        )
    if verdict.uses:
        return SKOPS_UNKNOWN, (
            f"skops.io.load {used} {verdict.qualname}, which is allowlisted "
            f"only for other uses ({verdict.reason})"
        )
    if uses == NEW:
        return SKOPS_OUTSIDE, (
            f"skops.io.load imports {verdict.qualname} and instantiates it "
            "[class outside the allowlist]"
        )
    return SKOPS_UNKNOWN, (
        f"skops.io.load imports and {used} {verdict.qualname} [not on the allowlist]"
    )


def _bit_generator_name(node: dict[str, Any]) -> str | None:
    try:
        text = node["content"]["bit_generator"]["content"]["bit_generator"]["content"]
        name = json.loads(text)
    except (KeyError, TypeError, ValueError, RecursionError):
        return None
    return name if isinstance(name, str) else None


def schema_names(schema: Any) -> tuple[list[SkopsName], bool]:
    """Every (module, name) a skops schema makes skops.io.load import, with the node's use.
    Iterative walk over every dict/list; a dict with `__loader__` is a node. An unknown loader
    is treated as a call (skops refuses it today; a newer skops may not)."""
    out: list[SkopsName] = []
    stack: list[tuple[Any, str]] = [(schema, "$")]
    visited = 0
    while stack:
        node, path = stack.pop()
        visited += 1
        if visited > MAX_NODES:
            return out, False
        if isinstance(node, list):
            stack.extend((item, f"{path}[{i}]") for i, item in enumerate(node))
            continue
        if not isinstance(node, dict):
            continue
        stack.extend((value, f"{path}.{key}") for key, value in node.items())
        loader = node.get("__loader__")
        if loader is None:
            continue
        module, name = node.get("__module__"), node.get("__class__")
        if not (isinstance(module, str) and isinstance(name, str)):
            continue  # skops fails on such a node (gettype needs both)
        use = _USES.get(loader, CALL) if isinstance(loader, str) else CALL
        if not use:
            continue
        if loader == "TupleNode" and (module, name) == ("builtins", "tuple"):
            continue  # a plain tuple: the items are kept, nothing is called
        if loader == "NdArrayNode":
            # np.load(allow_pickle=False); a "numpy"-type node of another class is called with
            # the array (numpy scalars); a "json" object array keeps its items (nodes)
            if node.get("type") != "numpy" or (module, name) == ("numpy", "ndarray"):
                continue
            use = CALL
        if loader == "RandomGeneratorNode":
            generator = _bit_generator_name(node)
            # gettype("numpy.random", <name>)(seed_seq) after an issubclass(BitGenerator) check
            if generator is not None and generator not in _BIT_GENERATORS:
                out.append(
                    SkopsName(
                        module="numpy.random",
                        name=generator,
                        use=CALL,
                        pointer=f"{path} ({loader})",
                    )
                )
        if loader == "MethodNode":
            content = node.get("content")
            func = content.get("func") if isinstance(content, dict) else None
            name = f"{name}.{func}" if isinstance(func, str) else name
        out.append(SkopsName(module=module, name=name, use=use, pointer=f"{path} ({loader})"))
    return out, True


class SkopsZip:
    """skops.io archives (any file name): schema.json judged as skops.io.load reads it."""

    name = "skops"
    exclusive = True

    def claims(self, source: Source, reader: ZipReader) -> bool:
        return any(e.name == SCHEMA for e in reader.directory.entries)

    def scan(self, ctx: ScanContext, source: Source, reader: ZipReader) -> None:
        scan_skops_zip(ctx, source, reader)

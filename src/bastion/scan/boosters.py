"""Gradient-boosting model files that hold data, not code: XGBoost's JSON and UBJSON models
(`Booster.save_model("m.json" | "m.ubj")`) and LightGBM's text model (`Booster.save_model`).

Loading them runs no Python code: xgboost and lightgbm hand the bytes to their native parsers,
and prediction then walks the trees those parsers built. What can go wrong is the parse and the
walk: a child index past the node array, a split on a feature the model does not have, counts
that do not match the arrays, a cycle. bastion checks that structure before any native parser
sees the bytes (every tree's arrays have their declared lengths, children are in range, every
node is reached from the root exactly once, split features and category segments are in
range) and fails closed on anything else (FMT004). The UBJSON reader is bastion's own, bounded
by the file size: counts and lengths are checked against the bytes that remain before anything
is allocated, and nesting is capped."""

from __future__ import annotations

import json
import math
import struct
import sys
from array import array
from collections.abc import Callable, Sequence
from typing import Any

from bastion.scan.base import MALFORMED, ScanContext
from bastion.scan.config_values import check_values
from bastion.scan.source import CorruptInput, Source

MAX_NESTING = 64
MAX_LINE = 64 * 1024 * 1024  # one LightGBM line (a tree's arrays, feature_infos)

# UBJSON markers: fixed-size numbers (big-endian) and their array.array codes
_NUMBERS: dict[bytes, tuple[str, int, str]] = {
    b"i": (">b", 1, "b"),
    b"U": (">B", 1, "B"),
    b"I": (">h", 2, "h"),
    b"l": (">i", 4, "i"),
    b"L": (">q", 8, "q"),
    b"d": (">f", 4, "f"),
    b"D": (">d", 8, "d"),
}


# --- UBJSON ----------------------------------------------------------------------------------


class _Ubj:
    """A bounded UBJSON reader (the subset XGBoost writes, and the rest of draft 12)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def take(self, count: int) -> bytes:
        if count < 0 or self.at + count > len(self.data):
            raise CorruptInput(f"UBJSON value runs past the end of the file at byte {self.at}")
        chunk = self.data[self.at : self.at + count]
        self.at += count
        return chunk

    def marker(self) -> bytes:
        while True:
            mark = self.take(1)
            if mark != b"N":  # no-op
                return mark

    def integer(self, mark: bytes) -> int:
        if mark not in (b"i", b"U", b"I", b"l", b"L"):
            raise CorruptInput(f"UBJSON length is not an integer (marker {mark!r})")
        fmt, size, _ = _NUMBERS[mark]
        value: int = struct.unpack(fmt, self.take(size))[0]
        if value < 0:
            raise CorruptInput(f"negative UBJSON length at byte {self.at}")
        return value

    def value(self, mark: bytes, depth: int) -> Any:
        if depth > MAX_NESTING:
            raise CorruptInput(f"UBJSON nested deeper than {MAX_NESTING} levels")
        if mark in _NUMBERS:
            fmt, size, _ = _NUMBERS[mark]
            return struct.unpack(fmt, self.take(size))[0]
        if mark in (b"S", b"H"):
            raw = self.take(self.integer(self.marker()))
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise CorruptInput("UBJSON string is not UTF-8") from None
            return text if mark == b"S" else float(text)
        if mark == b"C":
            return self.take(1).decode("latin-1")
        if mark == b"T":
            return True
        if mark == b"F":
            return False
        if mark == b"Z":
            return None
        if mark in (b"[", b"{"):
            return self.container(mark == b"{", depth + 1)
        raise CorruptInput(f"unknown UBJSON marker {mark!r} at byte {self.at - 1}")

    def container(self, is_object: bool, depth: int) -> Any:
        kind: bytes | None = None
        count: int | None = None
        mark = self.marker()
        if mark == b"$":
            kind = self.take(1)
            mark = self.marker()
            if mark != b"#":
                raise CorruptInput("UBJSON typed container without a count")
        if mark == b"#":
            count = self.integer(self.marker())
            # every element takes at least one byte (a fixed-size type: its size), checked
            # before anything is allocated
            if kind in (b"Z", b"T", b"F", b"N"):
                raise CorruptInput("UBJSON container of a value-less type")
            least = _NUMBERS[kind][1] if kind in _NUMBERS else 1
            if count * (least + (2 if is_object else 0)) > len(self.data) - self.at:
                raise CorruptInput(f"UBJSON container claims {count} elements past the file")
        if not is_object and kind in _NUMBERS and count is not None:
            _, size, code = _NUMBERS[kind]
            values = array(code, self.take(count * size))
            if sys.byteorder == "little":
                values.byteswap()
            return values
        if is_object:
            out: dict[str, Any] = {}
            index = 0
            while count is None or index < count:
                if count is None:
                    if mark == b"}":
                        break
                    length = self.integer(mark)
                else:
                    length = self.integer(self.marker())
                key = self.take(length).decode("utf-8", "replace")
                out[key] = self.value(kind if kind else self.marker(), depth)
                index += 1
                if count is None:
                    mark = self.marker()
            return out
        items: list[Any] = []
        while count is None or len(items) < count:
            if count is None:
                if mark == b"]":
                    break
                items.append(self.value(mark, depth))
                mark = self.marker()
            else:
                items.append(self.value(kind if kind else self.marker(), depth))
        return items


def parse_ubj(data: bytes) -> Any:
    reader = _Ubj(data)
    document = reader.value(reader.marker(), 0)
    if reader.at != len(data):
        raise CorruptInput(f"{len(data) - reader.at} bytes after the UBJSON document")
    return document


# --- XGBoost ---------------------------------------------------------------------------------


def _int(value: Any, what: str) -> int:
    """XGBoost writes counts as strings ("7") in its parameter objects."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise CorruptInput(f"{what} is not an integer: {str(value)[:40]!r}") from None
    if number < 0:
        raise CorruptInput(f"{what} is negative")
    return number


def _obj(parent: Any, key: str, where: str) -> dict[str, Any]:
    value = parent.get(key) if isinstance(parent, dict) else None
    if not isinstance(value, dict):
        raise CorruptInput(f"{where}: no {key!r} object")
    return value


def _seq(tree: dict[str, Any], key: str, where: str, length: int | None) -> Sequence[Any]:
    value = tree.get(key)
    if not isinstance(value, list | array):
        raise CorruptInput(f"{where}: {key!r} is not an array")
    if length is not None and len(value) != length:
        raise CorruptInput(f"{where}: {key!r} has {len(value)} entries for {length} nodes")
    return value


def check_reachable(
    nodes: int, children: Callable[[int], tuple[int, ...]], where: str, root: int = 0
) -> None:
    """Every node reached from the root exactly once: a tree, no cycle, no orphan, no shared
    child."""
    seen = bytearray(nodes)
    stack = [root]
    seen[root] = 1
    count = 1
    while stack:
        for child in children(stack.pop()):
            if seen[child]:
                raise CorruptInput(f"{where}: node {child} is reached twice (a cycle or a DAG)")
            seen[child] = 1
            count += 1
            stack.append(child)
    if count != nodes:
        raise CorruptInput(f"{where}: {nodes - count} nodes are not reached from the root")


def check_xgboost_tree(tree: dict[str, Any], where: str, num_feature: int) -> None:
    param = _obj(tree, "tree_param", where)
    nodes = _int(param.get("num_nodes"), f"{where} num_nodes")
    if nodes == 0:
        raise CorruptInput(f"{where}: a tree without nodes")
    left = _seq(tree, "left_children", where, nodes)
    right = _seq(tree, "right_children", where, nodes)
    split = _seq(tree, "split_indices", where, nodes)
    for key in ("split_conditions", "default_left", "base_weights"):
        _seq(tree, key, where, nodes)
    if "parents" in tree:
        _seq(tree, "parents", where, nodes)
    for node in range(nodes):
        a, b = int(left[node]), int(right[node])
        if (a == -1) != (b == -1):
            raise CorruptInput(f"{where}: node {node} has one child")
        if a == -1:
            continue
        if not (0 < a < nodes and 0 < b < nodes) or a == b:
            raise CorruptInput(f"{where}: node {node} has children {a}, {b} out of range")
        if not 0 <= int(split[node]) < max(num_feature, 1):
            raise CorruptInput(
                f"{where}: node {node} splits on feature {int(split[node])} of {num_feature}"
            )

    def children(node: int) -> tuple[int, ...]:
        a = int(left[node])
        return () if a == -1 else (a, int(right[node]))

    check_reachable(nodes, children, where)
    # categorical splits: segments index into the categories array
    categories = tree.get("categories", [])
    segments = tree.get("categories_segments", [])
    sizes = tree.get("categories_sizes", [])
    cat_nodes = tree.get("categories_nodes", [])
    if not all(isinstance(v, list | array) for v in (categories, segments, sizes, cat_nodes)):
        raise CorruptInput(f"{where}: categorical split arrays are not arrays")
    if not (len(segments) == len(sizes) == len(cat_nodes)):
        raise CorruptInput(f"{where}: categorical split arrays differ in length")
    for start, size, node in zip(segments, sizes, cat_nodes, strict=True):
        if not (
            0 <= int(node) < nodes and int(start) >= 0 and int(start) + int(size) <= len(categories)
        ):
            raise CorruptInput(f"{where}: a categorical split points outside its arrays")


def check_xgboost(document: Any) -> int:
    """The structure of an XGBoost model document; returns the number of trees checked."""
    if not isinstance(document, dict):
        raise CorruptInput("an XGBoost model is an object")
    if "Config" in document:  # a serialised booster (pickled models carry one): its model
        document = _obj(document, "Model", "serialised booster")
    version = document.get("version")
    if not (
        isinstance(version, list | array)
        and len(version) == 3
        and all(isinstance(v, int) and 0 <= v < 1000 for v in version)
    ):
        raise CorruptInput("no valid 'version' [major, minor, patch]")
    learner = _obj(document, "learner", "model")
    model_param = _obj(learner, "learner_model_param", "learner")
    num_feature = _int(model_param.get("num_feature"), "num_feature")
    num_class = _int(model_param.get("num_class", "0"), "num_class")
    if num_class > 100_000:
        raise CorruptInput(f"num_class {num_class} is implausible")
    base = str(model_param.get("base_score", "0"))
    try:
        scores = json.loads(base) if base.startswith("[") else [float(base)]
        if not all(isinstance(s, int | float) and math.isfinite(s) for s in scores):
            raise ValueError
    except (ValueError, RecursionError):
        raise CorruptInput(f"base_score is not a finite number: {base[:40]!r}") from None
    names = learner.get("feature_names", [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise CorruptInput("feature_names is not a list of strings")
    if names and len(names) != num_feature:
        raise CorruptInput(f"{len(names)} feature names for {num_feature} features")
    booster = _obj(learner, "gradient_booster", "learner")
    name = booster.get("name")
    if name == "gblinear":
        weights = _seq(_obj(booster, "model", "gblinear"), "weights", "gblinear", None)
        if len(weights) != (num_feature + 1) * max(num_class, 1):
            raise CorruptInput(f"gblinear holds {len(weights)} weights for {num_feature} features")
        return 0
    if name == "dart":
        booster = _obj(booster, "gbtree", "dart")
    elif name != "gbtree":
        raise CorruptInput(f"unknown gradient booster {str(name)[:40]!r}")
    model = _obj(booster, "model", "gbtree")
    trees = model.get("trees")
    if not isinstance(trees, list):
        raise CorruptInput("gbtree: 'trees' is not an array")
    param = _obj(model, "gbtree_model_param", "gbtree")
    if _int(param.get("num_trees"), "num_trees") != len(trees):
        raise CorruptInput(f"num_trees says {param.get('num_trees')}, {len(trees)} trees stored")
    info = _seq(model, "tree_info", "gbtree", len(trees))
    for index, tree in enumerate(trees):
        if not isinstance(tree, dict):
            raise CorruptInput(f"tree {index} is not an object")
        check_xgboost_tree(tree, f"tree {index}", num_feature)
        if not 0 <= int(info[index]) < max(num_class, 1):
            raise CorruptInput(f"tree {index} is assigned to class {int(info[index])}")
    return len(trees)


# --- LightGBM --------------------------------------------------------------------------------


def _numbers(line: str, key: str, where: str, kind: type = int) -> list[Any]:
    try:
        return [kind(v) for v in line.split()]
    except ValueError:
        raise CorruptInput(f"{where}: {key} holds a value that is not a number") from None


def check_lightgbm_tree(fields: dict[str, str], where: str, num_features: int) -> None:
    leaves = _int(fields.get("num_leaves"), f"{where} num_leaves")
    if leaves == 0:
        raise CorruptInput(f"{where}: a tree without leaves")
    leaf_value = _numbers(fields.get("leaf_value", ""), "leaf_value", where, float)
    if len(leaf_value) != leaves:
        raise CorruptInput(f"{where}: {len(leaf_value)} leaf values for {leaves} leaves")
    if leaves == 1:
        return
    internal = leaves - 1
    arrays = {}
    for key in ("split_feature", "left_child", "right_child", "decision_type"):
        values = _numbers(fields.get(key, ""), key, where)
        if len(values) != internal:
            raise CorruptInput(f"{where}: {key} has {len(values)} entries for {internal} splits")
        arrays[key] = values
    if len(_numbers(fields.get("threshold", ""), "threshold", where, float)) != internal:
        raise CorruptInput(f"{where}: threshold does not have one entry per split")
    for node, feature in enumerate(arrays["split_feature"]):
        if not 0 <= feature < num_features:
            raise CorruptInput(f"{where}: split {node} on feature {feature} of {num_features}")

    # a child >= 0 is a split, ~child a leaf; node ids: splits 0..internal-1, leaves after
    def node_id(child: int) -> int:
        if child >= 0:
            if child >= internal or child == 0:
                raise CorruptInput(f"{where}: child split {child} out of range")
            return child
        leaf = ~child
        if leaf >= leaves:
            raise CorruptInput(f"{where}: child leaf {leaf} out of range")
        return internal + leaf

    left = [node_id(c) for c in arrays["left_child"]]
    right = [node_id(c) for c in arrays["right_child"]]

    def children(node: int) -> tuple[int, ...]:
        return (left[node], right[node]) if node < internal else ()

    check_reachable(internal + leaves, children, where)
    num_cat = _int(fields.get("num_cat", "0"), f"{where} num_cat")
    if num_cat:
        bounds = _numbers(fields.get("cat_boundaries", ""), "cat_boundaries", where)
        words = _numbers(fields.get("cat_threshold", ""), "cat_threshold", where)
        if (
            len(bounds) != num_cat + 1
            or bounds[0] != 0
            or any(b > a for a, b in zip(bounds[1:], bounds, strict=False))
            or bounds[-1] != len(words)
        ):
            raise CorruptInput(f"{where}: cat_boundaries do not index cat_threshold")
        for node, kind in enumerate(arrays["decision_type"]):
            if (
                kind & 1
                and not 0
                <= int(_numbers(fields.get("threshold", ""), "threshold", where, float)[node])
                < num_cat
            ):
                raise CorruptInput(f"{where}: categorical split {node} names no category set")


def check_lightgbm(text: str) -> int:
    """The structure of a LightGBM text model; returns the number of trees checked."""
    lines = text.split("\n")
    if lines[0].strip() != "tree":
        raise CorruptInput("a LightGBM model starts with 'tree'")
    header: dict[str, str] = {}
    index = 1
    while index < len(lines) and not lines[index].startswith("Tree="):
        line = lines[index].rstrip("\r")
        key, sep, value = line.partition("=")
        if sep:
            header[key] = value
        elif line.strip() == "end of trees":
            break
        index += 1
    if not header.get("version", "").startswith("v"):
        raise CorruptInput("no 'version=' line")
    max_feature = header.get("max_feature_idx")
    num_features = _int(max_feature, "max_feature_idx") + 1
    num_class = _int(header.get("num_class", "1"), "num_class")
    per_iteration = _int(header.get("num_tree_per_iteration", "1"), "num_tree_per_iteration")
    if num_class == 0 or per_iteration == 0 or num_class > 100_000:
        raise CorruptInput(f"num_class {num_class} / num_tree_per_iteration is invalid")
    names = header.get("feature_names", "").split()
    if names and len(names) != num_features:
        raise CorruptInput(f"{len(names)} feature names for {num_features} features")
    trees = 0
    while index < len(lines):
        line = lines[index].rstrip("\r")
        if line.strip() == "end of trees":
            break
        if not line.startswith("Tree="):
            if line.strip():
                raise CorruptInput(f"unexpected line {index + 1} between trees")
            index += 1
            continue
        if _int(line[5:], f"line {index + 1}") != trees:
            raise CorruptInput(f"tree {trees} is numbered {line[5:40]!r}")
        fields: dict[str, str] = {}
        index += 1
        while index < len(lines) and lines[index].strip():
            key, _, value = lines[index].rstrip("\r").partition("=")
            if key in fields:
                raise CorruptInput(f"tree {trees}: {key} appears twice")
            fields[key] = value
            index += 1
        check_lightgbm_tree(fields, f"tree {trees}", num_features)
        trees += 1
    else:
        raise CorruptInput("no 'end of trees' line")
    sizes = header.get("tree_sizes")
    if sizes is not None and len(sizes.split()) != trees:
        raise CorruptInput(f"tree_sizes lists {len(sizes.split())} trees, {trees} stored")
    if trees % per_iteration:
        raise CorruptInput(f"{trees} trees is not a multiple of {per_iteration} per iteration")
    for line in lines[index:]:
        if line.startswith("pandas_categorical:"):
            try:
                json.loads(line[len("pandas_categorical:") :])
            except (ValueError, RecursionError):
                raise CorruptInput("pandas_categorical is not JSON") from None
    return trees


class BoosterScanner:
    name = "boosters"
    formats = ("xgboost_json", "xgboost_ubj", "lightgbm_text")

    def scan(self, ctx: ScanContext, source: Source, fmt: str) -> None:
        limit = ctx.limits.max_metadata if fmt == "xgboost_json" else ctx.limits.max_pickle
        data = source.read_all(limit, f"{fmt} model")
        try:
            if fmt == "lightgbm_text":
                text = data.decode("utf-8")
                if any(len(line) > MAX_LINE for line in text.split("\n")):
                    raise CorruptInput(f"a line longer than {MAX_LINE} bytes")
                check_lightgbm(text)
            else:
                document = (
                    json.loads(data.decode("utf-8-sig"))
                    if fmt == "xgboost_json"
                    else parse_ubj(data)
                )
                check_xgboost(document)
                check_values(ctx, source, document, "XGBoost model")
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise CorruptInput(f"{fmt}: {exc}"[:300]) from None
        except CorruptInput as exc:
            ctx.add(
                MALFORMED.finding(
                    source.location,
                    f"{fmt.replace('_', ' ')} model with a broken structure: {exc}",
                    evidence=str(exc)[:200],
                )
            )

"""skops archives (white-box finding A1-29): schema.json names, per node, a module/class and what
skops.io.load does with it; ConstructorFromReduceNode calls it. skops refuses untrusted types
until the caller passes `get_untrusted_types(file=...)` — the review bastion stands for — so every
type the file would import is graded like a pickle global. Payloads are built here; the real
loader runs in a subprocess with a harmless marker command."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from helpers import gate_fails, rules, scan_file

from bastion.findings import Severity
from bastion.scan.skops import schema_names


def _json_node(value: object, node_id: int) -> dict[str, object]:
    return {
        "__class__": type(value).__name__,
        "__module__": "builtins",
        "__loader__": "JsonNode",
        "content": json.dumps(value),
        "is_json": True,
        "__id__": node_id,
    }


def _reduce_archive(path: Path, module: str, name: str, argument: str) -> None:
    schema = {
        "__class__": name,
        "__module__": module,
        "__loader__": "ConstructorFromReduceNode",
        "content": {
            "__class__": "tuple",
            "__module__": "builtins",
            "__loader__": "TupleNode",
            "content": [_json_node(argument, 2)],
            "__id__": 3,
        },
        "__id__": 1,
        "protocol": 2,
        "_skops_version": "0.16.0",
    }
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("schema.json", json.dumps(schema))


def test_constructor_from_reduce_calling_system_fails_the_gate(tmp_path: Path) -> None:
    """A1-29: skops' documented workflow (trust what get_untrusted_types lists) runs the command."""
    pytest.importorskip("skops")
    model = tmp_path / "model.skops"
    marker = tmp_path / "marker"
    _reduce_archive(model, "posix", "system", f"touch {marker}")
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, skops.io as sio\n"
            "untrusted = sio.get_untrusted_types(file=sys.argv[1])\n"
            "print(untrusted)\nsio.load(sys.argv[1], trusted=untrusted)",
            str(model),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
    )
    assert "posix.system" in proc.stdout, proc.stderr[-1000:]
    assert marker.exists()  # the real loader ran the command
    result = scan_file(model)
    assert "SKP001" in rules(result, Severity.CRITICAL)
    assert gate_fails(result)
    assert any(f.evidence == "posix.system" for f in result.findings)


def test_any_file_name_and_every_use(tmp_path: Path) -> None:
    """skops.io.load takes any path: a zip with schema.json is judged whatever its name; an
    unknown callable is high, an unknown class only instantiated (ObjectNode) is low."""
    model = tmp_path / "weights.bin"
    _reduce_archive(model, "mylib.tools", "run", "x")
    assert "SKP002" in rules(scan_file(model), Severity.HIGH)
    schema = {
        "__class__": "Estimator",
        "__module__": "mylib.models",
        "__loader__": "ObjectNode",
        "content": {
            "__class__": "dict",
            "__module__": "builtins",
            "__loader__": "DictNode",
            "content": {
                "f": {
                    "__class__": "getoutput",
                    "__module__": "subprocess",
                    "__loader__": "FunctionNode",
                }
            },
            "key_types": {
                "__class__": "list",
                "__module__": "builtins",
                "__loader__": "ListNode",
                "content": [],
            },
        },
        "protocol": 2,
        "_skops_version": "0.16.0",
    }
    uses = {(n.module, n.name): n.use for n in schema_names(schema)[0]}
    assert uses == {
        ("mylib.models", "Estimator"): "n",
        ("builtins", "dict"): "c",
        ("builtins", "list"): "c",
        ("subprocess", "getoutput"): "r",
    }
    other = tmp_path / "model.skops"
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("schema.json", json.dumps(schema))
    result = scan_file(other)
    assert "SKP001" in rules(result, Severity.CRITICAL)  # a kept subprocess function
    assert "SKP003" in rules(result, Severity.LOW)  # the unknown class


def test_method_and_bit_generator_names() -> None:
    method = {
        "__class__": "Popen",
        "__module__": "subprocess",
        "__loader__": "MethodNode",
        "content": {
            "func": "communicate",
            "obj": {"__class__": "Popen", "__module__": "subprocess", "__loader__": "ObjectNode"},
        },
    }
    generator = {
        "__class__": "Generator",
        "__module__": "numpy.random",
        "__loader__": "RandomGeneratorNode",
        "content": {
            "bit_generator": {"content": {"bit_generator": {"content": json.dumps("Evil")}}}
        },
    }
    names = {(n.module, n.name, n.use) for n in schema_names([method, generator])[0]}
    assert ("subprocess", "Popen.communicate", "r") in names
    assert ("numpy.random", "Evil", "c") in names


def test_ordinary_skops_files_pass(tmp_path: Path) -> None:
    """The benign side: estimators, pipelines, trees, boosting, text pipelines, containers,
    numpy scalars/arrays/generators written by skops.io.dump pass the default gate."""
    pytest.importorskip("skops")
    pytest.importorskip("sklearn")
    import collections
    import functools

    import numpy as np
    import skops.io as sio
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression, SGDClassifier
    from sklearn.naive_bayes import MultinomialNB
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features = np.random.RandomState(0).rand(40, 4)
    labels = (features[:, 0] > 0.5).astype(int)
    texts = ["alpha beta", "beta gamma", "gamma delta", "delta eps"] * 10
    objects = {
        "logreg": make_pipeline(StandardScaler(), LogisticRegression()).fit(features, labels),
        "sgd": SGDClassifier().fit(features, labels),
        "forest": RandomForestClassifier(n_estimators=2).fit(features, labels),
        "hgb": HistGradientBoostingClassifier(max_iter=2).fit(features, labels),
        "text": make_pipeline(TfidfVectorizer(), MultinomialNB()).fit(texts, [0, 1] * 20),
        "values": {
            "od": collections.OrderedDict(a=1),
            "t": (1, 2),
            "s": {1},
            "b": b"xy",
            "rng": np.random.default_rng(0),
            "dtype": np.dtype("float32"),
            "scalar": np.float64(1.5),
            "objects": np.array(["a", None], dtype=object),
            "partial": functools.partial(np.add, 1),
        },
    }
    for name, value in objects.items():
        path = tmp_path / f"{name}.skops"
        sio.dump(value, path)
        result = scan_file(path)
        assert not gate_fails(result), (name, [(f.rule_id, f.message) for f in result.findings])

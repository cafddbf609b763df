"""Rebuild the samples that the peers' tests build in code, from a checkout of the peer.

    python bench/peer_harvest.py fickling  CHECKOUT OUT   # run with the peers' Python (fickling)
    python bench/peer_harvest.py modelscan CHECKOUT OUT   # run with bastion's Python (torch, dill)

bench/peer_suites.py runs this in a subprocess with the right interpreter; it writes the samples
under OUT and OUT/labels.json ({file: "malicious" | "benign" | null}), labelled by what the
peer's test asserts about each. The peer's sample-building code runs (it only builds pickles
and saves models; nothing is loaded), in a separate process whose working folder is OUT.

- fickling: every TestCase in test/test_bypasses.py runs with check_safety wrapped to keep
  each pickle it is given; the assertion the test then makes on that result's severity gives
  the label (greater than LIKELY_SAFE: malicious; equal to LIKELY_SAFE: benign; otherwise
  an assertIsNotNone / assertIsNone on its detailed results: malicious / benign).
- modelscan: tests/test_modelscan.py is executed with stubs for what is not installed
  (tensorflow, tf_keras, modelscan itself, pytest's decorators), then its sample fixtures
  (file_path, zip_file_path, pytorch_file_path, numpy_file_path) are called. Its tests expect
  issues for the malicious*/unsafe_* files and zip/test.zip, and none for the benign*/safe_*
  ones; bad_pytorch.pt
  and password_protected.zip are asserted skipped, so they stay unlabelled. The Keras and
  TensorFlow fixtures need TensorFlow and are not rebuilt."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import re
import sys
import types
import unittest
from pathlib import Path
from typing import Any

MALICIOUS, BENIGN = "malicious", "benign"


def harvest_fickling(checkout: Path, out: Path) -> dict[str, str | None]:
    from fickling.analysis import Severity  # the peers' environment

    spec = importlib.util.spec_from_file_location(
        "fickling_bypasses", checkout / "test" / "test_bypasses.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    real = module.check_safety
    kept: list[dict[str, Any]] = []
    current = [""]

    def recording(pickled: Any, *args: Any, **kwargs: Any) -> Any:
        result = real(pickled, *args, **kwargs)
        kept.append(
            {
                "test": current[0],
                "data": pickled.dumps(),
                "label": None,
                "severity": result.severity,
            }
        )
        return result

    module.check_safety = recording

    def judged(first: Any, second: Any, relation: str) -> None:
        if not kept or not isinstance(first, Severity) or not isinstance(second, Severity):
            return
        last = kept[-1]
        if relation == "eq":
            other = second if first is last["severity"] else first
            last["label"] = BENIGN if other == Severity.LIKELY_SAFE else MALICIOUS
        elif second >= Severity.LIKELY_SAFE:  # severity > (or >=, above) LIKELY_SAFE
            last["label"] = MALICIOUS

    def detail(value: Any, flagged: bool) -> None:
        """assertIsNone / assertIsNotNone on a detailed result (e.g. "UnsafeImports")."""
        if kept and kept[-1]["label"] is None:
            kept[-1]["label"] = MALICIOUS if flagged else BENIGN

    for case in vars(module).values():
        if not (isinstance(case, type) and issubclass(case, unittest.TestCase)):
            continue
        for name in sorted(n for n in dir(case) if n.startswith("test_")):
            test = case(name)
            test.assertGreater = lambda a, b, *r, **k: judged(a, b, "gt")  # type: ignore
            test.assertGreaterEqual = lambda a, b, *r, **k: judged(a, b, "ge")  # type: ignore
            test.assertEqual = lambda a, b, *r, **k: judged(a, b, "eq")  # type: ignore
            test.assertIsNone = lambda a, *r, **k: detail(a, False)  # type: ignore
            test.assertIsNotNone = lambda a, *r, **k: detail(a, True)  # type: ignore
            for other in ("assertIn", "assertNotIn", "assertTrue", "assertFalse", "assertLess"):
                setattr(test, other, lambda *a, **k: None)
            current[0] = name
            try:
                getattr(test, name)()
            except Exception:  # a test that fails here still built its pickles
                pass
    labels: dict[str, str | None] = {}
    counts: dict[str, int] = {}
    for item in kept:
        index = counts[item["test"]] = counts.get(item["test"], 0) + 1
        name = f"{item['test']}_{index}.pkl"
        (out / name).write_bytes(item["data"])
        labels[name] = item["label"]
    return labels


class _StubMeta(type):
    """A stand-in for any name of a module that is not installed: usable as a base class,
    a decorator, a callable or a namespace."""

    def __getattr__(cls, name: str) -> Any:
        return _StubMeta(name, (), {})

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if len(args) == 1 and callable(args[0]) and not kwargs:
            return args[0]  # used as a decorator
        return _StubMeta("instance", (), {})


class _StubModule(types.ModuleType):
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _StubMeta(name, (), {})


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, prefixes: tuple[str, ...]) -> None:
        self.prefixes = prefixes

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name.split(".")[0] in self.prefixes:
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec: Any) -> types.ModuleType:
        module = _StubModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        return None


def _fixture(*args: Any, **kwargs: Any) -> Any:
    if len(args) == 1 and callable(args[0]):
        return args[0]
    return lambda function: function


class _Factory:
    def __init__(self, out: Path) -> None:
        self.out = out

    def mktemp(self, name: str) -> Path:
        folder = self.out / name
        folder.mkdir(parents=True, exist_ok=True)
        return folder


_MODELSCAN_BENIGN = re.compile(r"(^|/)(benign|safe)[^/]*$")
# zip/test.zip holds pickle.dumps(Malicious1()) and test_scan_zip expects its eval issue
_MODELSCAN_MALICIOUS = re.compile(r"(^|/)(malicious|unsafe)[^/]*$|^zip/test\.zip$")


def harvest_modelscan(checkout: Path, out: Path) -> dict[str, str | None]:
    missing = tuple(
        m
        for m in ("tensorflow", "tf_keras", "modelscan", "keras")
        if importlib.util.find_spec(m) is None or m == "modelscan"
    )
    sys.meta_path.insert(0, _StubFinder(missing))
    pytest_stub = _StubModule("pytest")
    pytest_stub.fixture = _fixture  # type: ignore[attr-defined]
    sys.modules["pytest"] = pytest_stub
    tests = checkout / "tests"
    sys.path.insert(0, str(tests))
    source = (tests / "test_modelscan.py").read_text()
    module = types.ModuleType("modelscan_tests")
    module.__file__ = str(tests / "test_modelscan.py")
    exec(compile(source, module.__file__, "exec"), module.__dict__)  # its sample builders
    factory = _Factory(out)
    for fixture in ("file_path", "zip_file_path", "pytorch_file_path", "numpy_file_path"):
        try:
            module.__dict__[fixture](factory)
        except Exception as exc:
            print(f"modelscan fixture {fixture} not rebuilt: {exc!r}", file=sys.stderr)
    labels: dict[str, str | None] = {}
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        rel = path.relative_to(out).as_posix()
        if rel == "labels.json":
            continue
        labels[rel] = (
            BENIGN
            if _MODELSCAN_BENIGN.search(rel)
            else MALICIOUS
            if _MODELSCAN_MALICIOUS.search(rel)
            else None
        )
    return labels


HARVESTERS = {"fickling": harvest_fickling, "modelscan": harvest_modelscan}


def main() -> int:
    source, checkout, out = sys.argv[1], Path(sys.argv[2]).resolve(), Path(sys.argv[3])
    out.mkdir(parents=True, exist_ok=True)
    os.chdir(out)
    labels = HARVESTERS[source](checkout, out.resolve())
    (out / "labels.json").write_text(json.dumps(labels, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

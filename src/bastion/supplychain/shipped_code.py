"""Python that travels with a model. A model folder is loaded from: `cd model && python -c
"import joblib; joblib.load('model.pkl')"`, or a predict.py next to the weights. Python then puts
that folder first on sys.path, so code shipped in it runs without anything looking like a
payload:

- a module named like one the loader imports (joblib.py, pickle.py, torch/…) shadows it;
- sitecustomize.py, usercustomize.py and .pth files run at interpreter start;
- bytecode in __pycache__ marked "unchecked hash" (PEP 552) is imported instead of its
  (harmless-looking) source, and a .pyc beside a missing source is imported as the module;
- a pickle that instantiates a class of a package shipped in the folder imports that package.

These are judged by file names and pyc headers only; nothing is imported or unmarshalled."""

from __future__ import annotations

import os
import struct
import sys
from collections.abc import Iterable, Sequence
from pathlib import PurePosixPath

from bastion.discover import Target
from bastion.findings import Confidence, Finding, Location, Severity, Stage, TargetResult
from bastion.rules import Rule

SHADOWING = Rule(
    id="COD012",
    title="Shipped Python shadows a module loaders import",
    severity=Severity.HIGH,
    confidence=Confidence.HIGH,
    stage=Stage.ARTIFACT,
    profile="model-code-execution",
    description="A model folder ships a Python module named like one that loading code "
    "imports (a standard-library module such as pickle, or an ML library such as "
    "joblib or torch), or a sitecustomize/usercustomize module or .pth file that "
    "the interpreter runs at start-up. Run from that folder, Python imports the "
    "shipped file instead of the real one, and its code runs while the model loads "
    "normally.",
    remediation="Remove the file. Model folders need no Python of their own; if the model "
    "needs code, ship it as a reviewed package installed from your own index.",
)
BYTECODE = Rule(
    id="COD013",
    title="Shipped bytecode runs instead of its source",
    severity=Severity.HIGH,
    confidence=Confidence.HIGH,
    stage=Stage.ARTIFACT,
    profile="model-code-execution",
    description="Python bytecode (.pyc) that the interpreter imports without checking it "
    "against the source next to it: a pyc marked 'unchecked hash' (PEP 552) in "
    "__pycache__, or a .pyc with no source beside it. Reviewers read the .py; "
    "Python runs the .pyc.",
    remediation="Delete the bytecode (`find . -name '*.pyc' -delete`) and never ship "
    "__pycache__ folders with a model.",
)
SHIPPED_CLASS = Rule(
    id="PKL009",
    title="Pickle instantiates a class of code shipped with it",
    severity=Severity.HIGH,
    confidence=Confidence.HIGH,
    stage=Stage.ARTIFACT,
    profile="model-code-execution",
    description="The pickle rebuilds an object of a class whose module sits in the scanned "
    "folder itself. Loading it from that folder imports the shipped module, which "
    "runs whatever its top level does; the class being 'your own' is no comfort "
    "when it came with the download.",
    remediation="Review the shipped module as code, or rebuild the model from a state_dict "
    "or safetensors file with code you control.",
)

# Top-level names of libraries that loading code imports (beyond the standard library).
LOADER_MODULES = frozenset(
    {
        "accelerate",
        "catboost",
        "cloudpickle",
        "dill",
        "diffusers",
        "gguf",
        "h5py",
        "huggingface_hub",
        "joblib",
        "keras",
        "lightgbm",
        "lightning",
        "llama_cpp",
        "numpy",
        "onnx",
        "onnxruntime",
        "pandas",
        "peft",
        "pytorch_lightning",
        "safetensors",
        "scipy",
        "sentence_transformers",
        "sklearn",
        "skops",
        "tensorflow",
        "tf_keras",
        "timm",
        "tokenizers",
        "torch",
        "torchvision",
        "transformers",
        "xgboost",
        "yaml",
    }
)
STARTUP_MODULES = frozenset({"sitecustomize", "usercustomize"})
# Standard-library names nobody's loading code imports; ignored so `test/` folders are fine.
_IGNORED = frozenset({"test", "this", "antigravity", "__main__", "__future__"})
_MODULE_SUFFIXES = (".py", ".pyc", ".pyw", ".so", ".pyd")
_PYC_HEADER = struct.Struct("<4sI")


def _shadowed() -> frozenset[str]:
    stdlib: frozenset[str] = getattr(sys, "stdlib_module_names", frozenset())
    return (frozenset(stdlib) | LOADER_MODULES | STARTUP_MODULES) - _IGNORED


def _module_name(path: PurePosixPath) -> str | None:
    """The top-level module a file makes importable from its folder, if any."""
    name = path.name
    if name == "__init__.py":
        return path.parent.name or None
    for suffix in _MODULE_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)].split(".", 1)[0]  # foo.cpython-311-x86_64.so -> foo
    return None


def _finding_result(target: Target, finding: Finding) -> TargetResult:
    return TargetResult(path=target.display, format="python", findings=(finding,))


def shadowing_results(files: Sequence[Target], load_folders: set[str]) -> list[TargetResult]:
    """Modules, start-up hooks and .pth files in folders a model is loaded from."""
    shadowed = _shadowed()
    out = []
    for target in files:
        path = PurePosixPath(target.display)
        folder = str(path.parent)
        package_init = path.name == "__init__.py"
        home = str(path.parent.parent) if package_init else folder
        if home not in load_folders:
            continue
        if path.suffix == ".pth":
            out.append(
                _finding_result(
                    target,
                    SHADOWING.finding(
                        Location(path=target.display),
                        ".pth file: Python runs its import lines at "
                        "start-up when this folder is a site directory",
                        evidence=path.name,
                    ),
                )
            )
            continue
        module = _module_name(path)
        if module in shadowed:
            out.append(
                _finding_result(
                    target,
                    SHADOWING.finding(
                        Location(path=target.display),
                        f"shadows the module '{module}': run from this "
                        "folder, Python imports this file instead",
                        evidence=module,
                    ),
                )
            )
    return out


def _pyc_problem(target: Target, sources: set[str]) -> str | None:
    path = PurePosixPath(target.display)
    in_cache = path.parent.name == "__pycache__"
    source = (
        (str(path.parent.parent / path.name.split(".", 1)[0]) + ".py")
        if in_cache
        else str(path.with_suffix(".py"))
    )
    source = source.removeprefix("./")
    if not in_cache:
        return (
            None
            if source in sources
            else "a .pyc with no source beside it is imported as the module"
        )
    try:
        with open(target.path, "rb") as handle:
            header = handle.read(_PYC_HEADER.size)
    except OSError:
        return None
    if len(header) < _PYC_HEADER.size:
        return None
    _magic, flags = _PYC_HEADER.unpack(header)
    if source in sources and flags & 0b01 and not flags & 0b10:
        return "marked 'unchecked hash': imported without being compared with its source"
    return None


def bytecode_results(files: Sequence[Target]) -> list[TargetResult]:
    sources = {t.display for t in files if t.display.endswith(".py")}
    out = []
    for target in files:
        if not target.display.endswith(".pyc"):
            continue
        problem = _pyc_problem(target, sources)
        if problem:
            out.append(
                _finding_result(
                    target,
                    BYTECODE.finding(
                        Location(path=target.display),
                        problem,
                        evidence=PurePosixPath(target.display).name,
                    ),
                )
            )
    return out


def _shipped_module_files(qualname: str, folder: PurePosixPath) -> Iterable[str]:
    parts = qualname.split(".")
    for depth in range(len(parts) - 1, 0, -1):  # the module is some prefix of the qualname
        module = PurePosixPath(*parts[:depth])
        for base in (folder, PurePosixPath(".")):
            yield os.path.normpath(str(base / module) + ".py")
            yield os.path.normpath(str(base / module / "__init__.py"))


def regrade_shipped_classes(results: dict[str, TargetResult], files: Sequence[Target]) -> None:
    """PKL007 (a class outside the allowlist, reported low) becomes PKL009 (high) when that
    class's module is shipped in the scanned content."""
    present = {os.path.normpath(t.display) for t in files}
    for path, result in list(results.items()):
        regraded = []
        changed = False
        for finding in result.findings:
            folder = PurePosixPath(finding.location.path).parent
            if finding.rule_id == "PKL007" and any(
                candidate in present
                for candidate in _shipped_module_files(finding.evidence, folder)
            ):
                changed = True
                finding = SHIPPED_CLASS.finding(
                    finding.location,
                    f"{finding.message}; its module is shipped in the "
                    "scanned content, so loading from there runs that code",
                    evidence=finding.evidence,
                )
            regraded.append(finding)
        if changed:
            results[path] = result.model_copy(update={"findings": tuple(regraded)})

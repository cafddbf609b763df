"""Python that travels with a model. A model folder is loaded from: `cd model && python -c
"import joblib; joblib.load('model.pkl')"`, or a predict.py next to the weights. Python then puts
that folder first on sys.path, so code shipped in it runs without anything looking like a
payload:

- a module named like one the loader imports (joblib.py, pickle.py, torch/…) shadows it;
- sitecustomize.py, usercustomize.py and .pth files run at interpreter start;
- bytecode in __pycache__ marked "unchecked hash" (PEP 552) is imported instead of its
  (harmless-looking) source, and a .pyc beside a missing source is imported as the module;
- a pickle that instantiates a class of a package shipped in the folder imports that package.

These are judged by file names and pyc headers only; nothing is imported or unmarshalled. The
same checks run on a scanned folder tree (project.py) and on the members of every archive
(base.ScanContext), since an archive is extracted and then loaded from."""

from __future__ import annotations

import functools
import os
import struct
import sys
from collections.abc import Callable, Sequence
from pathlib import PurePosixPath

from bastion.findings import Confidence, Finding, Location, Severity, Stage
from bastion.formats import MODEL_FORMATS
from bastion.records import Record
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

NATIVE = Rule(
    id="COD014",
    title="Native code shipped with a model",
    severity=Severity.HIGH,
    confidence=Confidence.MEDIUM,
    stage=Stage.ARTIFACT,
    profile="model-code-execution",
    description="A folder that holds model files also holds a native library or Python "
    "extension module (.so, .pyd, .dylib, .dll). Python imports an extension module found "
    "on its path like any module, and its initialisation runs machine code no scanner can "
    "judge; custom-operator libraries are loaded the same way.",
    remediation="Build native code from reviewed source in your own pipeline; do not load "
    "binaries that came with a model download.",
)

# the rules this module's checks emit (listed in bastion.catalogue)
RULES = (SHADOWING, BYTECODE, SHIPPED_CLASS, NATIVE)

# Top-level names of libraries that loading code imports, whether or not they are installed on
# the machine that scans (the environment's own importable names are added at run time).
LOADER_MODULES = frozenset(
    [
        "accelerate",
        "catboost",
        "cloudpickle",
        "dateutil",
        "diffusers",
        "dill",
        "filelock",
        "fsspec",
        "gguf",
        "h5py",
        "huggingface_hub",
        "jinja2",
        "joblib",
        "keras",
        "lightgbm",
        "lightning",
        "llama_cpp",
        "lz4",
        "numpy",
        "onnx",
        "onnxruntime",
        "packaging",
        "pandas",
        "peft",
        "psutil",
        "pytorch_lightning",
        "pytz",
        "regex",
        "requests",
        "safetensors",
        "scipy",
        "sentence_transformers",
        "sklearn",
        "skops",
        "sympy",
        "tensorflow",
        "tf_keras",
        "threadpoolctl",
        "timm",
        "tokenizers",
        "torch",
        "torchvision",
        "tqdm",
        "transformers",
        "typing_extensions",
        "urllib3",
        "xgboost",
        "yaml",
        "zstandard",
    ]
)
STARTUP_MODULES = frozenset({"sitecustomize", "usercustomize"})
# Names too generic to mean a shadowing attempt (some wheels install a top-level `tests`).
_IGNORED = frozenset(
    {
        "test",
        "tests",
        "this",
        "antigravity",
        "__main__",
        "__future__",
        "docs",
        "doc",
        "examples",
        "scripts",
        "tools",
        "src",
        "bench",
        "benchmarks",
        "build",
        "setup",
        "conftest",
    }
)
NATIVE_SUFFIXES = (".so", ".pyd", ".dylib", ".dll")
_PYC_HEADER = struct.Struct("<4sI")


class Entry(Record):
    """One file of a folder or an archive: its "/"-separated path there, its identified format,
    and how to read its first bytes (for bytecode headers)."""

    path: str
    fmt: str
    head: Callable[[], bytes]


class Problem(Record):
    path: str  # the entry it concerns
    finding: Finding  # located at `location`, to be moved to the entry by the caller


@functools.lru_cache(maxsize=1)
def _importable_names() -> frozenset[str]:
    """Every top-level module name the scanning environment can import: the standard library,
    built-in modules, each installed distribution's top-level names, and the loaders above."""
    from importlib.metadata import packages_distributions

    stdlib: frozenset[str] = getattr(sys, "stdlib_module_names", frozenset())
    installed = {name for name in packages_distributions() if name.isidentifier()}
    names = stdlib | set(sys.builtin_module_names) | installed | LOADER_MODULES
    return frozenset(names | STARTUP_MODULES) - _IGNORED


def _module_path(path: PurePosixPath) -> PurePosixPath | None:
    """The module path a file makes importable from its folder (`pkg/mod.cpython-311.so` ->
    pkg/mod, `pkg/__init__.py` -> pkg), whatever suffix importlib accepts; None otherwise."""
    name = path.name
    stem = name.split(".", 1)[0]
    suffix = name[len(stem) :]
    if not stem.isidentifier() or not suffix:
        return None
    if suffix in (".py", ".pyc", ".pyw") or suffix.endswith(NATIVE_SUFFIXES):
        return path.parent if stem == "__init__" else path.parent / stem
    return None


def check_entries(entries: Sequence[Entry], where: Location) -> list[Problem]:
    """Shadowing modules, start-up hooks, .pth files, native code and unverifiable bytecode
    among the files of one folder tree or one archive (`where` locates the findings)."""
    model_folders = {str(PurePosixPath(e.path).parent) for e in entries if e.fmt in MODEL_FORMATS}
    sources = {os.path.normpath(e.path) for e in entries if e.path.endswith(".py")}
    packages = {
        str(_module_path(PurePosixPath(e.path)))
        for e in entries
        if PurePosixPath(e.path).name.startswith("__init__.")
    }
    problems = []
    for entry in entries:
        path = PurePosixPath(entry.path)
        module = _module_path(path)
        folder = str(path.parent)
        if path.suffix == ".pth" and entry.fmt not in MODEL_FORMATS:  # not a torch checkpoint
            problems.append(
                Problem(
                    path=entry.path,
                    finding=SHADOWING.finding(
                        where,
                        ".pth file: Python runs its import lines at start-up when this folder "
                        "is a site directory",
                        evidence=path.name,
                    ),
                )
            )
        elif (
            module is not None
            and module.name in _importable_names()
            and (str(module.parent) not in packages or str(module.parent) in model_folders)
        ):
            problems.append(
                Problem(
                    path=entry.path,
                    finding=SHADOWING.finding(
                        where,
                        f"shadows the module '{module.name}': run from this folder, Python "
                        "imports this file instead",
                        evidence=module.name,
                    ),
                )
            )
        elif (path.name.endswith(NATIVE_SUFFIXES) or ".so." in path.name) and (
            folder in model_folders or str(path.parent.parent) in model_folders
        ):
            problems.append(
                Problem(
                    path=entry.path,
                    finding=NATIVE.finding(
                        where, "native library beside model files", evidence=path.name
                    ),
                )
            )
        if path.suffix == ".pyc":
            problem = _pyc_problem(entry, sources, model_folders)
            if problem:
                problems.append(
                    Problem(
                        path=entry.path,
                        finding=BYTECODE.finding(where, problem, evidence=path.name),
                    )
                )
    return problems


def _pyc_problem(entry: Entry, sources: set[str], model_folders: set[str]) -> str | None:
    path = PurePosixPath(entry.path)
    in_cache = path.parent.name == "__pycache__"
    home = path.parent.parent if in_cache else path.parent
    source = os.path.normpath(str(home / (path.name.split(".", 1)[0] + ".py")))
    if not in_cache:
        return (
            None
            if source in sources
            else "a .pyc with no source beside it is imported as the module"
        )
    if source not in sources:
        return None  # CPython ignores cached bytecode whose source is gone
    header = entry.head()
    if len(header) < _PYC_HEADER.size:
        return None
    _magic, flags = _PYC_HEADER.unpack(header[: _PYC_HEADER.size])
    if flags & 0b01 and not flags & 0b10:
        return "marked 'unchecked hash': imported without being compared with its source"
    if not flags & 0b01 and str(home) in model_folders:
        return (
            "cached bytecode beside model files: CPython checks only the source's recorded "
            "time and size, which an archive restores, never its content"
        )
    return None


def shipped_modules(entries: Sequence[Entry]) -> set[str]:
    return {
        os.path.normpath(str(m))
        for e in entries
        if (m := _module_path(PurePosixPath(e.path))) is not None
    }


def regrade(finding: Finding, folder: str, modules: set[str]) -> Finding:
    """PKL007 (a class outside the allowlist, reported low) becomes PKL009 (high) when that
    class's module — a .py, bytecode or an extension module, in a package or a namespace
    package — is shipped beside it (`folder`: where the pickle sits, in the same tree)."""
    if finding.rule_id != "PKL007":
        return finding
    parts = finding.evidence.split(".")
    for depth in range(len(parts) - 1, 0, -1):  # the module is some prefix of the qualname
        module = PurePosixPath(*parts[:depth])
        for base in (PurePosixPath(folder), PurePosixPath(".")):
            if os.path.normpath(str(base / module)) in modules:
                return SHIPPED_CLASS.finding(
                    finding.location,
                    f"{finding.message}; its module is shipped in the "
                    "scanned content, so loading from there runs that code",
                    evidence=finding.evidence,
                )
    return finding

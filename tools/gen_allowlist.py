"""Generate bastion's exact-object pickle allowlist from the installed ML libraries.

    .venv/bin/python tools/gen_allowlist.py          # rewrites scan/pickle_allowlist.tsv
    .venv/bin/python tools/gen_allowlist.py --check    # exit 1 when the committed file differs

Reviewed policy, applied mechanically (the scanner never imports these libraries; it only reads
the generated file):

* Every module of the packages below is imported (test, build, download and code-loading modules
  excluded); every class and function it *defines* is a candidate. An object is listed under
  (module, qualified name) only when `obj.__module__ == module` and looking the qualified name up
  in that module gives the same object — exactly the name `pickle` writes for it. A re-export
  (`somepkg.system = os.system`) is never listed as the package's own.
* Functions that load files, evaluate code, deserialize, download or import by name (the
  reviewed name rules in `bastion.scan.pickle_globals.denied_category`) are never listed.
* Uses (see `bastion.scan.pickle_allowlist`): classes may be instantiated (`__new__` +
  `__setstate__`/BUILD) and referenced; they may be *called* with the pickle's arguments only
  when construction runs no Python code of the library (C/Cython types of numpy, scipy, pandas,
  scikit-learn) or they are enums. Functions are listed as referenced values (a layer's
  activation, a FunctionTransformer's func); only unpickle helpers (reviewed naming conventions)
  and pure numeric functions (ufuncs, torch C ops, `torch.nn.functional`, scipy.special) may be
  called.
"""

from __future__ import annotations

import argparse
import enum
import importlib
import inspect
import pkgutil
import re
import sys
import types
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "src" / "bastion" / "scan" / "pickle_allowlist.tsv"
sys.path.insert(0, str(ROOT / "src"))

from bastion.scan.pickle_globals import REASONS, denied_category  # noqa: E402

PACKAGES = ("numpy", "scipy", "pandas", "sklearn", "torch", "lightning", "pytorch_lightning",
            "lightning_fabric", "torchmetrics", "transformers", "peft", "accelerate",
            "sentence_transformers", "xgboost", "lightgbm", "catboost", "skops", "joblib",
            "timm", "dateutil", "pytz")
# Op namespaces compiled into torch (not found by walking packages): pure tensor functions that
# layers keep as attributes (torch._C._nn.gelu is what F.gelu pickles as).
EXTRA_MODULES = ("torch._C._nn", "torch._C._special", "torch._C._linalg", "torch._C._fft",
                 "torch._C._VariableFunctions")

# Modules never walked: tests, build helpers, code generation/compilation, downloads, I/O
# readers/writers, distributed/network, CLIs, and modules that import by name.
EXCLUDED_MODULES = re.compile(
    r"(^|\.)(tests?|testing|_testing|conftest|_testutils|benchmarks?|setup|__main__|"
    r"_build_utils|commands|cli|_pyinstaller|_distributor_init)(\.|$)"
    r"|^numpy\.(f2py|distutils|_pyinstaller|ctypeslib|lib\._datasource|lib\._npyio_impl)"
    r"|^scipy\.(io|datasets|_lib\._ccallback|weave|misc\.common)"
    r"|^pandas\.(io|core\.computation|plotting|util\._tester|util\._print_versions|"
    r"_config\.localization)"
    r"|^sklearn\.(datasets|externals|experimental|utils\._show_versions|_min_dependencies)"
    r"|^torch\.(_dynamo|_inductor|fx|jit|package|hub|distributed|multiprocessing|onnx|"
    r"utils\.(cpp_extension|hipify|collect_env|benchmark|tensorboard|model_zoo|bottleneck|"
    r"data\._utils\.worker|_config_module|backend_registration|checkpoint)|_C|_export|export|"
    r"compiler|_functorch|func|profiler|autograd\.profiler|cuda\._|testing|_lazy|_higher_order|"
    r"serialization|_weights_only_unpickler|_library|library|_ops|contrib|_logging|"
    r"_strobelight|_subclasses\.fake|backends\.xeon|_vendor|_numpy)"
    r"|^transformers\.(models\.(?!(auto|bert|gpt2|llama|t5|roberta|distilbert|vit|clip|whisper|"
    r"mistral|qwen2|bart|albert|electra|deberta|deberta_v2|xlm_roberta|mpnet|gemma|phi|"
    r"mobilebert|marian|mbart|opt|bloom|falcon|gpt_neox|resnet|convnext|wav2vec2|"
    r"sentence_transformers)(\.|$))|.*(convert|conversion)_.*|utils\.hub|hub|dynamic_module_utils|"
    r"utils\.import_utils|integrations|kernels|onnx|pipelines|agents|tools|"
    r"testing_utils|commands|data\.datasets|debug_utils|benchmark|quantizers|cli)"
    r"|^accelerate\.(commands|launchers|test_utils|utils\.launch|utils\.imports|"
    r"utils\.megatron_lm|utils\.deepspeed|utils\.fsdp_utils|big_modeling|hooks|inference)"
    r"|^(lightning|pytorch_lightning|lightning_fabric)\.(.*\.)?(cli|loggers|plugins\.io|"
    r"utilities\.cloud_io|utilities\.testing|_graveyard|serve|app|store|data|"
    r"utilities\.model_registry|strategies\.launchers|utilities\.consolidate_checkpoint)"
    r"|^peft\.(utils\.hotswap|tuners\.boft\.fbd|utils\.loftq_utils)"
    r"|^catboost\.(widget|eval|datasets|utils)"
    r"|^xgboost\.(testing|dask|spark|collective|tracker|federated|plotting)"
    r"|^lightgbm\.(dask|plotting)"
    r"|^skops\.(cli|hub_utils|card)"
    r"|^joblib\.(externals|parallel|_parallel_backends|pool|_memmapping|memory|"
    r"numpy_pickle_compat|compressor|executor|_store_backends|logger|func_inspect|disk|"
    r"_multiprocessing_helpers|hashing)"
    r"|^sentence_transformers\.(evaluation|datasets|training_args|trainer|backend|model_card|"
    r"util\.file_io)"
    r"|^timm\.(utils|data)"
)

# Classes whose construction does I/O, starts processes or threads, or opens connections even
# when only __new__ + __setstate__ run (reviewed by name).
DENIED_CLASS_NAMES = re.compile(
    r"(Reader|Writer|Store|Stream|Connection|Client|Session|Server|Socket|Launcher|Pool|"
    r"Executor|Thread|Process|Profiler|Logger|Handler|File|Loader|Downloader|Watcher|"
    r"Environment|Pickler|Unpickler)$")

# Unpickle helpers by naming convention: what __reduce__ of the libraries' own types returns.
CALLABLE_HELPER = re.compile(
    r"^(__pyx_unpickle_\w+|_unpickle|_unpickle_\w+|\w+_unpickle|newObj|_reconstruct|_mareconstruct|"
    r"_rebuild_tensor\w*|_rebuild_parameter\w*|_rebuild_\w*tensor\w*|_rebuild_from_type\w*|"
    r"_rebuild_njt|_new_\w*Index|__\w+_ctor|_frombuffer|scalar|_get_layout)$")
# Modules whose public functions are pure computations on their arguments.
NUMERIC_MODULES = re.compile(
    r"^(numpy(\._core\.(numeric|fromnumeric|function_base|shape_base|multiarray|umath|"
    r"_multiarray_umath|einsumfunc|arrayprint)|\.linalg(\._linalg)?|\.fft(\._pocketfft)?|"
    r"\.lib\._(function_base|shape_base|twodim_base|arraysetops|nanfunctions|ufunclike|"
    r"polynomial|index_tricks|stride_tricks|type_check|histograms|arraypad)_impl)?"
    r"|scipy\.special(\._\w+)?|torch\.nn\.functional|torch\._C\._nn|torch\._C\._VariableFunctions"
    r"|torch|torch\.special|torch\.linalg|torch\.fft)$")
# Higher-order functions: they call what they are given. Never callable from a pickle.
HIGHER_ORDER = re.compile(
    r"^(apply_along_axis|apply_over_axes|piecewise|frompyfunc|fromfunction|vectorize|"
    r"vmap|cond|while_loop|map|scan|checkpoint\w*|compile|jit\w*|trace\w*|script\w*|"
    r"from_file|fromfile|from_numpy|set_\w+|use_deterministic_algorithms|manual_seed|seed|"
    r"save\w*|load\w*|register_\w+|autocast|enable_grad|no_grad|inference_mode|"
    r"set_grad_enabled|empty_cache|is_\w+|get_\w+|_\w+)$")



def _walk(package: str) -> list[str]:
    try:
        root = importlib.import_module(package)
    except Exception:
        print(f"skip {package}: not importable", file=sys.stderr)
        return []
    names = [package]
    path = getattr(root, "__path__", None)
    if path is None:
        return names

    def onerror(name: str) -> None:
        pass

    for info in pkgutil.walk_packages(path, package + ".", onerror=onerror):
        if EXCLUDED_MODULES.search(info.name):
            continue
        names.append(info.name)
    return names


def _import(modname: str) -> types.ModuleType:
    """Import a module; a namespace only reachable as an attribute of its parent (such as
    torch._C._VariableFunctions, a class whose attributes are the C ops) is taken from there."""
    try:
        return importlib.import_module(modname)
    except ModuleNotFoundError:
        parent, _, child = modname.rpartition(".")
        namespace: types.ModuleType = getattr(importlib.import_module(parent), child)
        return namespace


def _members(module: object) -> list[tuple[str, object]]:
    if hasattr(module, "__dict__"):
        return sorted(vars(module).items())
    return [(name, getattr(module, name)) for name in sorted(dir(module))]


def _lookup(module: types.ModuleType, qualname: str) -> object:
    obj: object = module
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _class_uses(cls: type, modname: str) -> tuple[str, str]:
    if issubclass(cls, enum.Enum):
        return "cnr", "class-call"
    if modname.startswith("sklearn.") and _is_estimator(cls):
        return "cnr", "estimator"
    mro = [c for c in cls.__mro__ if c.__module__.split(".")[0] not in ("builtins", "abc")]
    python_init = any(isinstance(c.__dict__.get(m), (types.FunctionType, staticmethod))
                      for c in mro for m in ("__init__", "__new__", "__call__"))
    if not python_init:
        return "cnr", "class-call"
    package = modname.split(".")[0]
    if cls.__name__.lower().endswith("file"):
        return "nr", "class-new"  # e.g. dateutil's tzfile(name) opens the file it names
    if any(m in c.__dict__ for c in mro if c.__module__.split(".")[0] == package
           for m in ("__reduce__", "__reduce_ex__")):
        return "cnr", "class-reduce"
    return "nr", "class-new"


def _is_estimator(cls: type) -> bool:
    try:
        from sklearn.base import BaseEstimator
    except ImportError:
        return False
    return issubclass(cls, BaseEstimator)


def _methods(entries: dict[tuple[str, str], tuple[str, str]], cls: type, modname: str,
             qualname: str, pkg: str) -> None:
    """Methods a class has (its own or inherited from a class of the same library), listed as
    `Class.method` references: getattr(instance, name) of a bound method resolves there. Only
    functions the library defines (a class attribute holding a foreign object is not listed)."""
    for name in sorted(dir(cls)):
        if name.startswith("__"):
            continue
        try:
            inner = inspect.getattr_static(cls, name)
        except AttributeError:
            continue
        if isinstance(inner, (staticmethod, classmethod)):
            inner = inner.__func__
        if not isinstance(inner, types.FunctionType) or \
                inner.__module__.split(".")[0] != pkg:
            continue
        if denied_category(modname, f"{qualname}.{name}") is None and \
                denied_category(inner.__module__, inner.__qualname__) is None:
            entries[(modname, f"{qualname}.{name}")] = ("nr", f"method-ref:{pkg}")


def _function_uses(func: object, modname: str, name: str) -> tuple[str, str]:
    if CALLABLE_HELPER.match(name):
        return "cnr", "function-helper"
    if NUMERIC_MODULES.match(modname) and not HIGHER_ORDER.match(name):
        return "cnr", "function-numeric"
    return "nr", "function-ref"


def _is_function(obj: object) -> bool:
    return isinstance(obj, (types.FunctionType, types.BuiltinFunctionType)) or \
        type(obj).__name__ in ("cython_function_or_method", "fused_cython_function",
                               "_ArrayFunctionDispatcher")


METHOD_PACKAGES = ("numpy", "scipy", "pandas", "sklearn")


def _pickled_by_name(obj: object, name: str) -> bool:
    """A non-callable singleton (pandas.NA, pandas.NaT) that pickle writes as a global name."""
    if isinstance(obj, type) or callable(obj) or isinstance(obj, types.ModuleType):
        return False
    if type(obj).__module__.split(".")[0] not in PACKAGES:
        return False
    try:
        return obj.__reduce_ex__(4) == name  # type: ignore[no-any-return]
    except Exception:
        return False


def _constant_types() -> tuple[type, ...]:
    out: list[type] = []
    try:
        import torch

        out += [torch.dtype, torch.layout, torch.memory_format, torch.qscheme]
    except Exception:
        pass
    return tuple(out)


def generate() -> list[tuple[str, str, str, str]]:
    warnings.simplefilter("ignore")
    import numpy

    constants = _constant_types()
    entries: dict[tuple[str, str], tuple[str, str]] = {}
    for package in PACKAGES:
        before = len(entries)
        modules = _walk(package) + [m for m in EXTRA_MODULES if m.split(".")[0] == package]
        for modname in modules:
            try:
                module = _import(modname)
            except BaseException as exc:  # optional back-ends raise anything, even SystemExit
                if modname == package:
                    print(f"{modname}: {type(exc).__name__}: {exc}"[:300], file=sys.stderr)
                continue
            pkg = modname.split(".")[0]
            for name, obj in _members(module):
                if not isinstance(name, str):
                    continue
                if isinstance(obj, numpy.ufunc) and getattr(obj, "__name__", None) == name:
                    if getattr(obj, "nin", 0) and "vectorized" not in repr(obj):
                        entries[(modname, name)] = ("cnr", "ufunc:numpy")
                    continue
                if constants and isinstance(obj, constants) and not name.startswith("_"):
                    entries[(modname, name)] = ("cnr", "constant:" + pkg)
                    continue
                if modname in EXTRA_MODULES and _is_function(obj) and \
                        getattr(obj, "__name__", None) == name and \
                        denied_category(modname, name) is None:
                    entries[(modname, name)] = _function_uses(obj, modname, name)
                    entries[(modname, name)] = (entries[(modname, name)][0],
                                                f"{entries[(modname, name)][1]}:{pkg}")
                    continue
                if _pickled_by_name(obj, name):
                    entries[(modname, name)] = ("cnr", "singleton:" + pkg)
                    continue
                _consider(entries, module, modname, name, obj, pkg, depth=0)
        print(f"{package}: {len(modules)} modules, {len(entries) - before} entries",
              file=sys.stderr)
    return sorted((m, q, uses, reason) for (m, q), (uses, reason) in entries.items())


def _consider(entries: dict[tuple[str, str], tuple[str, str]], module: types.ModuleType,
              modname: str, name: str, obj: object, pkg: str, depth: int) -> None:
    if not (isinstance(obj, type) or _is_function(obj)):
        return
    if getattr(obj, "__module__", None) != modname:
        return  # a re-export: listed (if at all) under its own module
    qualname = getattr(obj, "__qualname__", None)
    if not isinstance(qualname, str) or "<" in qualname:
        return
    try:
        if _lookup(module, qualname) is not obj:
            return
    except AttributeError:
        return
    last = qualname.rsplit(".", 1)[-1]
    if denied_category(modname, qualname) is not None:
        return
    if isinstance(obj, type):
        if DENIED_CLASS_NAMES.search(last):
            return
        uses, reason = _class_uses(obj, modname)
        entries[(modname, qualname)] = (uses, f"{reason}:{pkg}")
        if depth < 2:
            for inner_name, inner in sorted(vars(obj).items()):
                if isinstance(inner, staticmethod):
                    inner = inner.__func__
                if isinstance(inner, type):
                    _consider(entries, module, modname, inner_name, inner, pkg, depth + 1)
            if pkg in METHOD_PACKAGES:
                _methods(entries, obj, modname, qualname, pkg)
        return
    if depth:
        return  # methods are not pickled by reference
    uses, reason = _function_uses(obj, modname, last)
    entries[(modname, qualname)] = (uses, f"{reason}:{pkg}")


def render(rows: list[tuple[str, str, str, str]]) -> str:
    unknown = {reason.split(":")[0] for *_rest, reason in rows} - set(REASONS)
    if unknown:
        raise SystemExit(f"reasons without a text in pickle_globals.REASONS: {unknown}")
    lines = ["# generated by tools/gen_allowlist.py from the installed libraries; do not edit",
             "# module\tqualified name\tuses (c=call, n=instantiate, r=reference)\treason"]
    lines += ["\t".join(row) for row in rows]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    text = render(generate())
    if args.check:
        same = OUT.exists() and OUT.read_text() == text
        print("up to date" if same else "differs", file=sys.stderr)
        return 0 if same else 1
    OUT.write_text(text)
    print(f"wrote {OUT} ({text.count(chr(10)) - 2} entries)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

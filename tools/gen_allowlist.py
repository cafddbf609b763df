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
* What the code does, not only its name (attack round 2): every Python function, and for a class
  every method the loader runs on restore (`__new__`, `__setstate__`, `__setattr__`,
  `__setitem__`, ..., `__init__` when it may be called), is read as bytecode, transitively within
  its library (module functions it names, methods of its class, constructors of the library's
  classes it names, nested functions and lambdas). Code that execs/evals/compiles, imports by
  name, unpickles, loads native code (ctypes), starts processes or opens/writes files is left
  out (`--refused FILE` lists what and why). C/Cython objects have no bytecode: the name rules.
* Packages that cannot be walked safely are listed by review instead (`REVIEWED`: pyarrow, a
  Cython package whose core module also opens files and memory maps): exactly the callables
  their own `__reduce__` methods name, each checked to be that object. Reconstructions that trust
  pickled lengths and indices (`bastion.scan.pickle_native.UNVALIDATED`) are refused.
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
import builtins
import dis
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

PACKAGES = (
    "numpy",
    "scipy",
    "pandas",
    "sklearn",
    "torch",
    "lightning",
    "pytorch_lightning",
    "lightning_fabric",
    "torchmetrics",
    "transformers",
    "peft",
    "accelerate",
    "sentence_transformers",
    "xgboost",
    "lightgbm",
    "catboost",
    "skops",
    "joblib",
    "timm",
    "dateutil",
    "pytz",
)
# Op namespaces compiled into torch (not found by walking packages): pure tensor functions that
# layers keep as attributes (torch._C._nn.gelu is what F.gelu pickles as).
EXTRA_MODULES = (
    "torch._C._nn",
    "torch._C._special",
    "torch._C._linalg",
    "torch._C._fft",
    "torch._C._VariableFunctions",
)

# Reviewed, not walked. pyarrow is Cython (no bytecode for the hazard reader below) and its core
# module pyarrow.lib also holds files, memory maps, IPC readers, process-wide settings and
# extension-type registration, while its other modules open file systems, clients and servers.
# Listed instead: exactly the callables pyarrow's own __reduce__ methods name (array.pxi,
# scalar.pxi, table.pxi, types.pxi, io.pxi), each read in its source — they build types,
# fields, schemas, buffers and scalars from values and check them, or assemble arrays into
# chunked arrays, tables and batches (Table/RecordBatch.from_arrays run Validate). pandas' Arrow
# extension types rebuild through their __arrow_ext_deserialize__ (json.loads of the pickled
# metadata, then the type's constructor), a dunder the method walk leaves out. Never listed:
# the reconstructions that trust pickled lengths, offsets and indices
# (bastion.scan.pickle_native.UNVALIDATED, reported as PKL010).
REVIEWED: dict[str, dict[str, tuple[str, ...]]] = {
    "pyarrow.lib": {
        "arrow-type": (
            "type_for_alias",
            "field",
            "schema",
            "list_",
            "large_list",
            "list_view",
            "large_list_view",
            "map_",
            "struct",
            "dictionary",
            "union",
            "run_end_encoded",
            "timestamp",
            "binary",
            "decimal32",
            "decimal64",
            "decimal128",
            "decimal256",
            "uuid",
            "bool8",
            "json_",
            "opaque",
            "fixed_shape_tensor",
            "KeyValueMetadata",
        ),
        "arrow-value": (
            "py_buffer",
            "scalar",
            "chunked_array",
            "_reconstruct_table",
            "_reconstruct_record_batch",
        ),
    },
    "pandas.core.arrays.arrow.extension_types": {
        "function-helper": (
            "ArrowPeriodType.__arrow_ext_deserialize__",
            "ArrowIntervalType.__arrow_ext_deserialize__",
        ),
    },
}

# Modules never walked: tests, build helpers, code generation/compilation, downloads, I/O
# readers/writers, distributed/network, CLIs, and modules that import by name.
EXCLUDED_MODULES = re.compile(
    r"(^|\.)(tests?|testing|_testing|\w+_tests?|conftest|_testutils|benchmarks?|setup|__main__|"
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
    r"Environment|Pickler|Unpickler)$"
)

# Unpickle helpers by naming convention: what __reduce__ of the libraries' own types returns.
CALLABLE_HELPER = re.compile(
    r"^(__pyx_unpickle_\w+|_unpickle|_unpickle_\w+|\w+_unpickle|newObj|_reconstruct|_mareconstruct|"
    r"_rebuild_tensor\w*|_rebuild_parameter\w*|_rebuild_\w*tensor\w*|_rebuild_from_type\w*|"
    r"_rebuild_njt|_new_\w*Index|__\w+_ctor|_frombuffer|scalar|_get_layout)$"
)
# Modules whose public functions are pure computations on their arguments.
NUMERIC_MODULES = re.compile(
    r"^(numpy(\._core\.(numeric|fromnumeric|function_base|shape_base|multiarray|umath|"
    r"_multiarray_umath|einsumfunc|arrayprint)|\.linalg(\._linalg)?|\.fft(\._pocketfft)?|"
    r"\.lib\._(function_base|shape_base|twodim_base|arraysetops|nanfunctions|ufunclike|"
    r"polynomial|index_tricks|stride_tricks|type_check|histograms|arraypad)_impl)?"
    r"|scipy\.special(\._\w+)?|torch\.nn\.functional|torch\._C\._nn|torch\._C\._VariableFunctions"
    r"|torch|torch\.special|torch\.linalg|torch\.fft)$"
)
# Higher-order functions: they call what they are given. Never callable from a pickle.
HIGHER_ORDER = re.compile(
    r"^(apply_along_axis|apply_over_axes|piecewise|frompyfunc|fromfunction|vectorize|"
    r"vmap|cond|while_loop|map|scan|checkpoint\w*|compile|jit\w*|trace\w*|script\w*|"
    r"from_file|fromfile|from_numpy|set_\w+|use_deterministic_algorithms|manual_seed|seed|"
    r"save\w*|load\w*|register_\w+|autocast|enable_grad|no_grad|inference_mode|"
    r"set_grad_enabled|empty_cache|is_\w+|get_\w+|_\w+)$"
)


# ---------------------------------------------------------------------------------------------
# What the code does (attack A2-03/04/14/20/22/24): a naming rule cannot tell numpy.info (imports
# its argument) or a scipy distribution's __setstate__ (execs a string from the state) from a
# numeric function. Every Python function the generator would list, and for classes every method
# the loader runs on restore, is read as bytecode (never run): the names it loads, the modules it
# imports, the attributes it uses, its nested functions/lambdas, and - transitively, within the
# same library - the module functions it calls and the methods of its own class it reaches.
# Anything that evaluates code, imports by name, deserializes, loads native code, starts
# processes or opens/writes files is refused (the entry is left out, so it is flagged unknown).
# C/Cython objects have no bytecode; they keep the rules above.

# Modules whose use anywhere in the code refuses it.
HAZARD_MODULES = frozenset(
    (
        "pickle",
        "_pickle",
        "cPickle",
        "marshal",
        "shelve",
        "dill",
        "cloudpickle",
        "ctypes",
        "_ctypes",
        "cffi",
        "subprocess",
        "_posixsubprocess",
        "pty",
        "importlib",
        "imp",
        "zipimport",
        "pkgutil",
        "runpy",
        "pydoc",
        "code",
        "codeop",
        "webbrowser",
    )
)
# Builtins (as global names) that evaluate code, import or open files.
HAZARD_GLOBALS = frozenset(
    ("exec", "eval", "compile", "__import__", "open", "breakpoint", "execfile", "input")
)
# Attribute names that are these operations whatever object they are looked up on.
HAZARD_ATTRIBUTES = frozenset(
    (
        "import_module",
        "__import__",
        "exec_module",
        "load_module",
        "spec_from_file_location",
        "module_from_spec",
        "entry_points",
        "load_entry_point",
        "resolve_name",
        "import_string",
        "locate",
        "npy_import",
        "loads",
        "load_library",
        "CDLL",
        "PyDLL",
        "WinDLL",
        "OleDLL",
        "LoadLibrary",
        "dlopen",
        "system",
        "popen",
        "Popen",
        "check_output",
        "check_call",
        "getoutput",
        "getstatusoutput",
        "run_path",
        "run_module",
        "execv",
        "execve",
        "execvp",
        "execvpe",
        "execl",
        "execle",
        "execlp",
        "execlpe",
        "spawnv",
        "spawnve",
        "spawnl",
        "spawnle",
        "posix_spawn",
        "posix_spawnp",
        "startfile",
        "fork",
        "write_text",
        "write_bytes",
        "rmtree",
        "unlink",
        "open",
        "touch",
    )
)
# Same-named harmless functions of these modules.
BENIGN_MODULE_ATTRIBUTES = frozenset(("platform.system", "json.loads"))
# module.attribute pairs (the module as the code names it, resolved) that load/write files.
HAZARD_MODULE_ATTRIBUTES = frozenset(
    (
        "os.system",
        "os.popen",
        "posix.system",
        "posix.popen",
        "builtins.open",
        "io.open",
        "io.FileIO",
        "_io.open",
        "os.open",
        "os.fdopen",
        "os.remove",
        "os.rmdir",
        "os.removedirs",
        "os.rename",
        "os.replace",
        "os.truncate",
        "os.symlink",
        "os.link",
        "os.chmod",
        "codecs.open",
        "gzip.open",
        "bz2.open",
        "lzma.open",
        "tarfile.open",
        "zipfile.ZipFile",
        "shutil.copyfile",
        "shutil.copy",
        "shutil.copy2",
        "shutil.move",
        "shutil.copytree",
        "numpy.load",
        "numpy.save",
        "numpy.savez",
        "numpy.savez_compressed",
        "numpy.savetxt",
        "numpy.loadtxt",
        "numpy.genfromtxt",
        "numpy.fromfile",
        "numpy.memmap",
        "numpy.fromregex",
        "torch.load",
        "torch.save",
        "joblib.load",
        "joblib.dump",
    )
)
# Methods the loader runs on restore (NEWOBJ + BUILD, SETITEMS/APPENDS into the object, the
# object used as a dict key/set member, its collection); __init__ too when it may be called.
RESTORE_METHODS = (
    "__new__",
    "__setstate__",
    "__setattr__",
    "__setitem__",
    "__set_name__",
    "__init_subclass__",
    "__del__",
    "__hash__",
    "__eq__",
    "extend",
    "append",
)
CALL_METHODS = ("__init__",)
HAZARD_DEPTH = 6


def _code_of(obj: object) -> types.CodeType | None:
    if isinstance(obj, (staticmethod, classmethod)):
        obj = obj.__func__
    if isinstance(obj, property):
        obj = obj.fget
    code = getattr(obj, "__code__", None)
    return code if isinstance(code, types.CodeType) else None


def _wrapped(obj: object) -> list[object]:
    """The object and what it wraps (decorators, numpy's array-function dispatchers)."""
    out = [obj]
    for attribute in ("__wrapped__", "_implementation", "__func__"):
        inner = getattr(obj, attribute, None)
        if inner is not None and inner is not obj:
            out.append(inner)
    return out


class _Hazards:
    """Bytecode reader with a memo per (code, class): the first hazard found, or None."""

    def __init__(self, reviewed: frozenset[str] = frozenset()) -> None:
        self._reviewed = reviewed  # code (module.qualname) whose hazard the scanner judges
        self._memo: dict[tuple[int, int], str | None] = {}
        self._keep: list[object] = []  # keeps ids in the memo valid

    def of(
        self, obj: object, pkg: str, cls: type | None = None, resolvers: bool = True
    ) -> str | None:
        """The first hazard of a function (or method of cls). With resolvers: also when its own
        code (not what it calls: those pass their own names) is getattr(module, <its argument>)."""
        for target in _wrapped(obj):
            code = _code_of(target)
            if code is None:
                continue
            if resolvers:
                globs = getattr(_plain(target), "__globals__", {})
                for inner in _nested(code):
                    resolver = _module_getattr(inner, globs)
                    if resolver is not None:
                        return f"{inner.co_qualname} {resolver}"
            found = self._code(code, getattr(target, "__globals__", {}), pkg, cls, 0)
            if found is not None:
                return found
        return None

    def _code(
        self, code: types.CodeType, globs: dict[str, object], pkg: str, cls: type | None, depth: int
    ) -> str | None:
        key = (id(code), id(cls))
        if key in self._memo:
            return self._memo[key]
        self._memo[key] = None  # recursion guard
        self._keep += [code, cls]
        if f"{globs.get('__name__')}.{code.co_qualname}" in self._reviewed:
            return None
        found = self._scan(code, globs, pkg, cls, depth)
        self._memo[key] = found
        return found

    def _scan(
        self, code: types.CodeType, globs: dict[str, object], pkg: str, cls: type | None, depth: int
    ) -> str | None:
        where = f"{code.co_qualname if hasattr(code, 'co_qualname') else code.co_name}"
        previous: object = None
        follow: list[object] = []
        for ins in dis.get_instructions(code):
            op, name = ins.opname, ins.argval
            if op == "IMPORT_NAME" and isinstance(name, str):
                if name.split(".")[0] in HAZARD_MODULES:
                    return f"{where} imports {name}"
                previous = sys.modules.get(name)
                continue
            if (
                op == "IMPORT_FROM"
                and isinstance(name, str)
                and isinstance(previous, types.ModuleType)
            ):
                if f"{previous.__name__}.{name}" in HAZARD_MODULE_ATTRIBUTES:
                    return f"{where} imports {previous.__name__}.{name}"
                if name in HAZARD_ATTRIBUTES:
                    return f"{where} imports {name}"
                continue
            if op in ("LOAD_GLOBAL", "LOAD_NAME") and isinstance(name, str):
                if name in HAZARD_GLOBALS and globs.get(name) is None:
                    return f"{where} calls {name}"
                value = globs.get(name)
                if value is None:
                    value = getattr(builtins, name, None)
                reason = _object_hazard(value)
                if reason is not None:
                    return f"{where} uses {name} ({reason})"
                if isinstance(value, types.FunctionType) and _package(value) == pkg:
                    follow.append(value)
                if isinstance(value, type) and _package(value) == pkg:
                    follow += _constructors(value)  # a class of the library it may construct
                previous = value
                continue
            if op in ("LOAD_ATTR", "LOAD_METHOD") and isinstance(name, str):
                if isinstance(previous, types.ModuleType):
                    dotted = f"{previous.__name__}.{name}"
                    if dotted in HAZARD_MODULE_ATTRIBUTES or (
                        name in HAZARD_ATTRIBUTES and dotted not in BENIGN_MODULE_ATTRIBUTES
                    ):
                        return f"{where} uses {dotted}"
                    value = getattr(previous, name, None)
                    reason = _object_hazard(value)
                    if reason is not None:
                        return f"{where} uses {previous.__name__}.{name} ({reason})"
                    if isinstance(value, types.FunctionType) and _package(value) == pkg:
                        follow.append(value)
                    previous = value
                    continue
                if name in HAZARD_ATTRIBUTES:
                    return f"{where} uses .{name}"
                if cls is not None:
                    try:
                        method = inspect.getattr_static(cls, name)
                    except AttributeError:
                        method = None
                    if (
                        method is not None
                        and _code_of(method) is not None
                        and _package(method) == pkg
                    ):
                        follow.append(method)
                previous = None
                continue
            previous = None
        for const in code.co_consts:
            if isinstance(const, types.CodeType):
                found = self._code(const, globs, pkg, cls, depth)
                if found is not None:
                    return found
        if depth >= HAZARD_DEPTH:
            return None
        for target in follow:
            for inner in _wrapped(target):
                inner_code = _code_of(inner)
                if inner_code is None:
                    continue
                found = self._code(
                    inner_code, getattr(_plain(inner), "__globals__", {}), pkg, cls, depth + 1
                )
                if found is not None:
                    return f"{where} -> {found}"
        return None


def _module_getattr(code: types.CodeType, globs: dict[str, object]) -> str | None:
    """getattr(<a module>, <a name not written in the code>): a resolver that hands out any
    attribute of the module (torch.load, os.system) by a name from its arguments."""
    ins = [
        i
        for i in dis.get_instructions(code)
        if i.opname not in ("CACHE", "PUSH_NULL", "PRECALL", "KW_NAMES")
    ]
    for at, first in enumerate(ins):
        if first.opname != "LOAD_GLOBAL" or first.argval != "getattr" or "getattr" in globs:
            continue
        step = at + 1
        if step >= len(ins) or ins[step].opname not in ("LOAD_GLOBAL", "LOAD_NAME"):
            continue
        target = globs.get(ins[step].argval)
        while (
            step + 1 < len(ins)
            and ins[step + 1].opname == "LOAD_ATTR"
            and isinstance(target, types.ModuleType)
        ):
            step += 1
            target = getattr(target, ins[step].argval, None)
        if (
            isinstance(target, types.ModuleType)
            and step + 1 < len(ins)
            and ins[step + 1].opname in ("LOAD_FAST", "LOAD_DEREF", "LOAD_ATTR", "BINARY_SUBSCR")
        ):
            return f"resolves getattr({target.__name__}, <runtime name>)"
    return None


def _nested(code: types.CodeType) -> list[types.CodeType]:
    out = [code]
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            out += _nested(const)
    return out


def _constructors(cls: type) -> list[object]:
    """The library's own Python __new__/__init__/__post_init__ of a class it names."""
    out = []
    for name in ("__new__", "__init__", "__post_init__"):
        try:
            method = inspect.getattr_static(cls, name)
        except AttributeError:
            continue
        if _code_of(method) is not None and _package(method) == _package(cls):
            out.append(method)
    return out


def _plain(obj: object) -> object:
    if isinstance(obj, (staticmethod, classmethod)):
        return obj.__func__
    if isinstance(obj, property):
        return obj.fget
    return obj


def _package(obj: object) -> str:
    module = getattr(_plain(obj), "__module__", None)
    return module.split(".")[0] if isinstance(module, str) else ""


def _object_hazard(value: object) -> str | None:
    """A module of HAZARD_MODULES, or a callable defined in one."""
    if value is None:
        return None
    if isinstance(value, types.ModuleType):
        top = value.__name__.split(".")[0]
        return f"module {value.__name__}" if top in HAZARD_MODULES else None
    if not callable(value):
        return None
    try:
        module = getattr(value, "__module__", None)
        name = getattr(value, "__qualname__", None) or getattr(value, "__name__", None)
    except Exception:
        return None
    if not isinstance(module, str):
        return None
    if module.split(".")[0] in HAZARD_MODULES:
        return f"{module}.{name}"
    if isinstance(name, str) and f"{module}.{name}" in HAZARD_MODULE_ATTRIBUTES:
        return f"{module}.{name}"
    return None


HAZARDS = _Hazards()
# scipy.stats distributions: rv_generic.__setstate__ exec()s the state's `_parse_arg_template`
# (attack A2-04). Listed as "class-argparser": the scanner accepts only the exact text scipy
# generates for identifier shapes (pickle_globals.state_hazard); the rest of the restore is read.
ARGPARSER = "scipy.stats._distn_infrastructure.rv_generic._attach_argparser_methods"
REVIEWED_HAZARDS = _Hazards(frozenset((ARGPARSER,)))
REFUSED: dict[str, str] = {}


def _refused(name: str, hazard: str | None) -> bool:
    """Record a refusal (printed with --refused); True when there is a hazard."""
    if hazard is not None:
        REFUSED[name] = hazard
    return hazard is not None


def class_hazard(cls: type, pkg: str, callable_: bool, hazards: _Hazards = HAZARDS) -> str | None:
    """The first hazard in a method the loader runs on restoring (or calling) the class."""
    for name in RESTORE_METHODS + (CALL_METHODS if callable_ else ()):
        try:
            method = inspect.getattr_static(cls, name)
        except AttributeError:
            continue
        if _code_of(method) is None or _package(method) != pkg:
            continue  # C slot, or inherited from builtins/another library
        found = hazards.of(method, pkg, cls, resolvers=False)
        if found is not None:
            return f"{name}: {found}"
    return None


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
    python_init = any(
        isinstance(c.__dict__.get(m), (types.FunctionType, staticmethod))
        for c in mro
        for m in ("__init__", "__new__", "__call__")
    )
    if not python_init:
        return "cnr", "class-call"
    package = modname.split(".")[0]
    if cls.__name__.lower().endswith("file"):
        return "nr", "class-new"  # e.g. dateutil's tzfile(name) opens the file it names
    if any(
        m in c.__dict__
        for c in mro
        if c.__module__.split(".")[0] == package
        for m in ("__reduce__", "__reduce_ex__")
    ):
        return "cnr", "class-reduce"
    return "nr", "class-new"


def _is_estimator(cls: type) -> bool:
    try:
        from sklearn.base import BaseEstimator
    except ImportError:
        return False
    return issubclass(cls, BaseEstimator)


def _methods(
    entries: dict[tuple[str, str], tuple[str, str]],
    cls: type,
    modname: str,
    qualname: str,
    pkg: str,
) -> None:
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
        if not isinstance(inner, types.FunctionType) or inner.__module__.split(".")[0] != pkg:
            continue
        if (
            denied_category(modname, f"{qualname}.{name}") is None
            and denied_category(inner.__module__, inner.__qualname__) is None
            and not _refused(f"{modname}:{qualname}.{name}", HAZARDS.of(inner, pkg, cls))
        ):
            entries[(modname, f"{qualname}.{name}")] = ("nr", f"method-ref:{pkg}")


def _function_uses(func: object, modname: str, name: str) -> tuple[str, str]:
    if CALLABLE_HELPER.match(name):
        return "cnr", "function-helper"
    if NUMERIC_MODULES.match(modname) and not HIGHER_ORDER.match(name):
        return "cnr", "function-numeric"
    return "nr", "function-ref"


def _is_function(obj: object) -> bool:
    return isinstance(obj, (types.FunctionType, types.BuiltinFunctionType)) or type(
        obj
    ).__name__ in ("cython_function_or_method", "fused_cython_function", "_ArrayFunctionDispatcher")


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
                if (
                    modname in EXTRA_MODULES
                    and _is_function(obj)
                    and getattr(obj, "__name__", None) == name
                    and denied_category(modname, name) is None
                ):
                    entries[(modname, name)] = _function_uses(obj, modname, name)
                    entries[(modname, name)] = (
                        entries[(modname, name)][0],
                        f"{entries[(modname, name)][1]}:{pkg}",
                    )
                    continue
                if _pickled_by_name(obj, name):
                    entries[(modname, name)] = ("cnr", "singleton:" + pkg)
                    continue
                _consider(entries, module, modname, name, obj, pkg, depth=0)
        print(
            f"{package}: {len(modules)} modules, {len(entries) - before} entries", file=sys.stderr
        )
    entries.update(reviewed())
    return sorted((m, q, uses, reason) for (m, q), (uses, reason) in entries.items())


def _consider(
    entries: dict[tuple[str, str], tuple[str, str]],
    module: types.ModuleType,
    modname: str,
    name: str,
    obj: object,
    pkg: str,
    depth: int,
) -> None:
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
        hazard = class_hazard(obj, pkg, callable_=False)
        if (
            hazard is not None
            and ARGPARSER.rsplit(".", 1)[-1] in hazard
            and class_hazard(obj, pkg, False, REVIEWED_HAZARDS) is None
        ):
            hazard, uses, reason = None, "nr", "class-argparser"
        if _refused(f"{modname}:{qualname}", hazard):
            return
        if "c" in uses and _refused(
            f"{modname}:{qualname} (call)", class_hazard(obj, pkg, callable_=True)
        ):
            uses, reason = "nr", "class-new"
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
    if _refused(f"{modname}:{qualname}", HAZARDS.of(obj, pkg)):
        return
    uses, reason = _function_uses(obj, modname, last)
    entries[(modname, qualname)] = (uses, f"{reason}:{pkg}")


def reviewed() -> dict[tuple[str, str], tuple[str, str]]:
    """The REVIEWED entries, each checked to be the object pickle names (its own module and
    qualified name, a function or class, never refused by name or by its Python code); a
    package that is not installed leaves its entries out."""
    from bastion.scan.pickle_native import UNVALIDATED

    entries: dict[tuple[str, str], tuple[str, str]] = {}
    for modname, kinds in REVIEWED.items():
        try:
            module = importlib.import_module(modname)
        except ImportError:
            print(f"skip {modname}: not importable", file=sys.stderr)
            continue
        pkg = modname.split(".")[0]
        for kind, qualnames in kinds.items():
            for qualname in qualnames:
                obj = _plain(_lookup(module, qualname))
                owner = getattr(obj, "__module__", None)
                if isinstance(obj, types.MethodType):  # a classmethod, looked up on its class
                    owner, obj = obj.__func__.__module__, obj.__func__
                if (
                    owner != modname
                    or getattr(obj, "__qualname__", None) != qualname
                    or not (isinstance(obj, type) or _is_function(obj))
                ):
                    raise SystemExit(f"REVIEWED {modname}:{qualname} is not that object")
                if (modname, qualname) in UNVALIDATED or denied_category(modname, qualname):
                    raise SystemExit(f"REVIEWED {modname}:{qualname} is refused by name")
                if _refused(f"{modname}:{qualname}", HAZARDS.of(obj, pkg)):
                    reason = REFUSED[f"{modname}:{qualname}"]
                    raise SystemExit(f"REVIEWED {modname}:{qualname}: {reason}")
                entries[(modname, qualname)] = ("cnr", f"{kind}:{pkg}")
    return entries


def render(rows: list[tuple[str, str, str, str]]) -> str:
    unknown = {reason.split(":")[0] for *_rest, reason in rows} - set(REASONS)
    if unknown:
        raise SystemExit(f"reasons without a text in pickle_globals.REASONS: {unknown}")
    lines = [
        "# generated by tools/gen_allowlist.py from the installed libraries; do not edit",
        "# module\tqualified name\tuses (c=call, n=instantiate, r=reference)\treason",
    ]
    lines += ["\t".join(row) for row in rows]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--refused", type=Path, help="also write the refused entries here")
    args = parser.parse_args()
    text = render(generate())
    print(f"refused by code inspection: {len(REFUSED)}", file=sys.stderr)
    if args.refused:
        args.refused.write_text("".join(f"{k}\t{v}\n" for k, v in sorted(REFUSED.items())))
    if args.check:
        same = OUT.exists() and OUT.read_text() == text
        print("up to date" if same else "differs", file=sys.stderr)
        return 0 if same else 1
    OUT.write_text(text)
    print(f"wrote {OUT} ({text.count(chr(10)) - 2} entries)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

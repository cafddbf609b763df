"""Which globals a pickle may name. An allowlist with one reason per entry; everything else is
flagged, and graded by what it can do (denylist patterns only decide the *severity*)."""

from __future__ import annotations

import _compat_pickle
import re
from typing import NamedTuple

# Exact names a legitimate model pickle references, each with why loading it is harmless.
ALLOWED: dict[str, str] = {
    # Python containers and value types: constructing them runs no user code.
    "builtins.set": "builds a set from given items",
    "builtins.frozenset": "builds a frozenset from given items",
    "builtins.bytearray": "builds a bytearray from given bytes",
    "builtins.bytes": "builds bytes from given values",
    "builtins.complex": "builds a complex number",
    "builtins.slice": "builds a slice object",
    "builtins.range": "builds a range object",
    "builtins.object": "base class passed to copyreg._reconstructor",
    "builtins.dict": "builds a dict",
    "builtins.list": "builds a list",
    "builtins.tuple": "builds a tuple",
    "builtins.int": "builds an int",
    "builtins.float": "builds a float",
    "builtins.bool": "builds a bool",
    "builtins.str": "builds a str",
    "builtins.NotImplemented": "singleton constant",
    "builtins.Ellipsis": "singleton constant",
    "copyreg._reconstructor": "protocol 0/1 object rebuild: base.__new__ + base.__init__ on data",
    "copyreg.__newobj__": "protocol 2 object rebuild: cls.__new__(cls)",
    "_codecs.encode": "protocol 2 encodes bytes as latin-1 text; pure conversion",
    "collections.OrderedDict": "ordered mapping; root of torch state_dicts",
    "collections.defaultdict": "mapping whose factory is itself a checked global",
    "collections.Counter": "counting mapping",
    "collections.deque": "double-ended queue",
    "datetime.datetime": "timestamp value",
    "datetime.date": "date value",
    "datetime.time": "time value",
    "datetime.timedelta": "duration value",
    "datetime.timezone": "fixed-offset time zone value",
    "decimal.Decimal": "decimal number value",
    "fractions.Fraction": "rational number value",
    "uuid.UUID": "UUID value",
    "enum.Enum": "enum base used by reduce of enum members",
    # NumPy arrays and scalars.
    "numpy.core.multiarray._reconstruct": "allocates an empty ndarray for BUILD to fill",
    "numpy._core.multiarray._reconstruct": "allocates an empty ndarray for BUILD to fill",
    "numpy.core.multiarray.scalar": "builds a numpy scalar from dtype and raw bytes",
    "numpy._core.multiarray.scalar": "builds a numpy scalar from dtype and raw bytes",
    "numpy.core.numeric._frombuffer": "protocol 5 array from an out-of-band buffer",
    "numpy._core.numeric._frombuffer": "protocol 5 array from an out-of-band buffer",
    "numpy.ndarray": "array type handed to _reconstruct",
    "numpy.dtype": "dtype descriptor",
    "numpy.ma.core._mareconstruct": "allocates an empty masked array",
    "numpy.random._pickle.__randomstate_ctor": "rebuilds a RandomState from its state",
    "numpy.random._pickle.__bit_generator_ctor": "rebuilds a bit generator from its state",
    "numpy.random._pickle.__generator_ctor": "rebuilds a Generator from its state",
    "numpy.random.mtrand.RandomState": "legacy random state value",
    "numpy.random._mt19937.MT19937": "bit generator value",
    "numpy.random._pcg64.PCG64": "bit generator value",
    # PyTorch tensors and storages (the names torch's weights_only unpickler also accepts).
    "torch._utils._rebuild_tensor": "tensor view over a storage",
    "torch._utils._rebuild_tensor_v2": "tensor view over a storage",
    "torch._utils._rebuild_tensor_v3": "tensor view over a storage",
    "torch._utils._rebuild_parameter": "wraps a tensor as nn.Parameter",
    "torch._utils._rebuild_parameter_with_state": "wraps a tensor as nn.Parameter",
    "torch._utils._rebuild_qtensor": "quantized tensor over a storage",
    "torch._utils._rebuild_sparse_tensor": "sparse tensor from index/value tensors",
    "torch._utils._rebuild_meta_tensor_no_storage": "shape-only tensor",
    "torch._utils._rebuild_device_tensor_from_numpy": "tensor from a numpy array",
    "torch._utils._rebuild_nested_tensor": "nested tensor from buffers",
    "torch.storage._load_from_bytes_weights_only": "never emitted by torch; placeholder",
    "torch.Size": "shape tuple",
    "torch.device": "device descriptor",
    "torch.nn.parameter.Parameter": "parameter tensor type",
    "torch.storage.UntypedStorage": "raw storage descriptor",
    "torch.storage.TypedStorage": "typed storage descriptor",
    "torch.serialization._get_layout": "layout lookup by name",
    "torch._tensor._rebuild_from_type_v2": "restores a tensor subclass; its callable is checked",
    "torch.nn.modules.module._WrappedHook": "hook wrapper holding a checked callable",
    # joblib's array wrapper; the array bytes follow the pickle opcodes.
    "joblib.numpy_pickle.NumpyArrayWrapper": "joblib array header; data read raw, not unpickled",
    "sklearn.externals.joblib.numpy_pickle.NumpyArrayWrapper": "old joblib array header",
    # Gradient boosting libraries: models are data (JSON/UBJ buffers) wrapped in a class.
    "xgboost.core.Booster": "booster whose state is a serialized model buffer",
    "xgboost.sklearn.XGBClassifier": "estimator wrapper around a Booster",
    "xgboost.sklearn.XGBRegressor": "estimator wrapper around a Booster",
    "xgboost.sklearn.XGBRanker": "estimator wrapper around a Booster",
    "lightgbm.basic.Booster": "booster whose state is a model string",
    "lightgbm.sklearn.LGBMClassifier": "estimator wrapper around a Booster",
    "lightgbm.sklearn.LGBMRegressor": "estimator wrapper around a Booster",
    "lightgbm.sklearn.LGBMRanker": "estimator wrapper around a Booster",
}

for _storage in ("Double", "Float", "Half", "BFloat16", "Long", "Int", "Short", "Char", "Byte",
                 "Bool", "ComplexFloat", "ComplexDouble", "QInt8", "QUInt8", "QInt32"):
    ALLOWED[f"torch.{_storage}Storage"] = "legacy typed storage class named by persistent ids"
for _dtype in ("float16", "float32", "float64", "bfloat16", "int8", "int16", "int32", "int64",
               "uint8", "bool", "complex64", "complex128", "half", "float", "double", "long",
               "int", "short", "cfloat", "cdouble", "float8_e4m3fn", "float8_e5m2"):
    ALLOWED[f"torch.{_dtype}"] = "dtype constant"
for _layout in ("strided", "sparse_coo", "sparse_csr", "_mkldnn"):
    ALLOWED[f"torch.{_layout}"] = "layout constant"
for _fmt in ("contiguous_format", "channels_last", "preserve_format"):
    ALLOWED[f"torch.{_fmt}"] = "memory format constant"
for _scalar in ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8",
                "uint16", "uint32", "uint64", "bool_", "complex64", "complex128", "str_",
                "bytes_", "datetime64", "timedelta64", "longlong", "ulonglong"):
    ALLOWED[f"numpy.{_scalar}"] = "numpy scalar type"
    ALLOWED[f"numpy.dtypes.{_scalar.capitalize().rstrip('_')}DType"] = "numpy dtype class"

# Class-name patterns (constructing these classes via __new__ + __setstate__ runs no user code).
ALLOWED_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^torch\.nn\.modules\.[a-z_]+(\.[a-z_]+)*\.[A-Z][A-Za-z0-9]*$"),
     "PyTorch layer class; restored with __new__ and __setstate__"),
    (re.compile(r"^torch\.nn\.functional\.[a-z][a-z0-9_]*$"),
     "tensor function (activation etc.) stored as a layer attribute; it only computes"),
    (re.compile(r"^numpy\.dtypes\.[A-Za-z0-9]+DType$"), "numpy dtype class"),
    (re.compile(r"^sklearn\.(?!datasets|externals|utils\._testing|_build_utils|_config|"
                r"utils\._show_versions|experimental)[a-z_]+(\.[a-z_0-9]+)*\.[A-Z][A-Za-z0-9_]*$"),
     "scikit-learn estimator/transformer class; __setstate__ only restores attributes"),
    (re.compile(r"^sklearn\._loss\._loss\.Cy[A-Za-z]+$"), "scikit-learn loss object (Cython)"),
    (re.compile(r"^sklearn\.tree\._tree\.Tree$"), "scikit-learn decision tree arrays"),
)

# Severity grading of names outside the allowlist. Order matters: the first match wins.
_CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("nested deserialisation", (
        "pickle.", "_pickle.", "cPickle.", "pickletools.", "joblib.load", "joblib.numpy_pickle.",
        "torch.load", "torch.serialization.", "torch.storage._load_from_bytes",
        "torch._weights_only_unpickler.", "numpy.load", "numpy.lib.npyio.", "numpy.lib.format.",
        "yaml.", "jsonpickle.", "shelve.", "dill.load", "dill._dill.load", "cloudpickle.load",
        "keras.models.load_model", "keras.saving.", "marshal.", "onnx.load", "safetensors.")),
    ("code objects", (
        "types.CodeType", "types.FunctionType", "types.LambdaType", "types.MethodType",
        "types.ModuleType", "dill.", "cloudpickle.", "srsly.cloudpickle.",
        "functools.partial.__call__")),
    ("process execution", (
        "os.", "posix.", "nt.", "subprocess.", "pty.", "commands.", "popen2.",
        "_posixsubprocess.", "multiprocessing.", "platform.", "asyncio.subprocess.",
        "asyncio.create_subprocess_", "pexpect.", "sh.", "plumbum.", "signal.", "ctypes.",
        "_ctypes.", "cffi.", "threading.", "_thread.", "_winapi.", "uuid._get_command_stdout",
        "builtins.exit", "builtins.quit", "sys.exit")),
    ("exec/eval", (
        "builtins.eval", "builtins.exec", "builtins.compile", "builtins.execfile",
        "builtins.breakpoint", "builtins.input", "builtins.help", "builtins.apply",
        "builtins.memoryview", "code.", "codeop.", "timeit.", "cProfile.", "profile.", "pdb.",
        "bdb.", "trace.", "doctest.", "runpy.", "IPython.", "numpy.testing.",
        "numpy.distutils.", "numpy.f2py.", "torch.utils.cpp_extension.", "torch.jit.",
        "torch._dynamo.", "torch.fx.", "torch.package.", "torch._inductor.", "jinja2.",
        "mako.", "sympy.", "pandas.eval", "pandas.core.computation.", "numexpr.", "idlelib.",
        "pydoc.", "venv.", "ensurepip.", "pip.", "setuptools.", "distutils.", "lib2to3.",
        "site.", "_osx_support.", "ast.literal_eval", "ast.")),
    ("import machinery", (
        "builtins.__import__", "importlib.", "imp.", "pkgutil.", "zipimport.", "sys.", "_imp.",
        "_frozen_importlib", "modulefinder.", "builtins.__loader__", "builtins.__spec__")),
    ("attribute/name resolution", (
        "builtins.getattr", "builtins.setattr", "builtins.delattr", "builtins.vars",
        "builtins.globals", "builtins.locals", "builtins.dir", "builtins.type",
        "builtins.super", "builtins.classmethod", "builtins.staticmethod",
        "builtins.property", "builtins.object.", "builtins.__builtins__", "operator.attrgetter",
        "operator.methodcaller", "inspect.", "gc.", "weakref.", "copyreg._extension",
        "functools.reduce", "_operator.attrgetter", "_operator.methodcaller",
        "torch.serialization.add_safe_globals", "torch._C.")),
    ("file access", (
        "builtins.open", "io.", "_io.", "shutil.", "pathlib.", "tempfile.", "glob.",
        "fileinput.", "zipfile.", "tarfile.", "linecache.", "codecs.open", "numpy.save",
        "numpy.fromfile", "numpy.loadtxt", "numpy.savetxt", "numpy.genfromtxt",
        "numpy.memmap", "numpy.tofile", "pandas.read_", "pandas.io.", "h5py.", "sqlite3.",
        "dbm.", "logging.", "filecmp.", "mmap.", "torch.save", "joblib.dump")),
    ("network access", (
        "socket.", "_socket.", "urllib.", "urllib2.", "urllib3.", "http.", "httplib.",
        "requests.", "httpx.", "aiohttp.", "ftplib.", "smtplib.", "telnetlib.", "poplib.",
        "imaplib.", "nntplib.", "webbrowser.", "xmlrpc.", "xmlrpclib.", "ssl.", "asyncio.",
        "paramiko.", "torch.hub.", "huggingface_hub.", "transformers.", "socketserver.",
        "smtpd.", "selectors.", "select.")),
)

# Attribute names that turn any object into a path to arbitrary code.
_DUNDER_GADGETS = re.compile(
    r"(^|\.)(__globals__|__builtins__|__subclasses__|__import__|__getattribute__|__getattr__|"
    r"__code__|__closure__|__func__|__self__|__dict__|__class__|__bases__|__mro__|__base__|"
    r"__init__|__call__|__reduce__|__reduce_ex__|__setstate__|f_globals|f_locals|gi_frame|"
    r"system|popen|eval|exec)$"
)


class Verdict(NamedTuple):
    qualname: str
    allowed: bool
    category: str | None  # None when allowed or merely unknown
    reason: str


def _python2_names(module: str, name: str) -> list[str]:
    """The names CPython's unpickler would use with fix_imports (protocol < 3)."""
    out = []
    if (module, name) in _compat_pickle.NAME_MAPPING:
        new_module, new_name = _compat_pickle.NAME_MAPPING[(module, name)]
        out.append(f"{new_module}.{new_name}")
    if module in _compat_pickle.IMPORT_MAPPING:
        out.append(f"{_compat_pickle.IMPORT_MAPPING[module]}.{name}")
    return out


def _category(qualname: str) -> str | None:
    for category, entries in _CATEGORIES:
        for entry in entries:
            if entry.endswith((".", "_")):
                if qualname.startswith(entry):
                    return category
            elif qualname == entry or qualname.startswith(entry + "."):
                return category
    return None


def classify(module: str, name: str) -> Verdict:
    """Grade one global reference. Python 2 remapping is applied the way the loader does it.
    An exact allowlist entry wins; then any dangerous category; then allowlisted class patterns;
    anything else is unknown (flagged)."""
    names = [f"{module}.{name}", *_python2_names(module, name)]
    dotted = "." in name
    for qualname in names:
        if not dotted and qualname in ALLOWED:
            return Verdict(qualname, True, None, ALLOWED[qualname])
    for qualname in names:
        category = _category(qualname)
        if category is None and dotted and _DUNDER_GADGETS.search(name):
            category = "attribute/name resolution"
        if category is not None:
            return Verdict(qualname, False, category, f"{category}: {qualname}")
    for qualname in names:
        if dotted and not qualname.startswith(("torch.nn.modules.", "sklearn.")):
            continue
        for pattern, why in ALLOWED_PATTERNS:
            if pattern.match(qualname):
                return Verdict(qualname, True, None, why)
    return Verdict(names[0], False, None, f"not on the allowlist: {names[0]}")

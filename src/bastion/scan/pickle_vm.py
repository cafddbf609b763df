"""Pickle analysis by driving CPython's own unpickler with inert stand-ins.

Every global the stream names is answered by `find_class` with a stand-in *type* that records the
reference and does nothing; every call of a stand-in returns an inert object that records its
arguments. So name resolution (STACK_GLOBAL operands computed or memoized, fix_imports remapping,
dotted names, EXT codes), memo and stack semantics are exactly the loader's own — there is no
second parser to disagree with — while no real object is ever built or called.

Two engines share the stand-ins: the C unpickler (fast, used first) and, for joblib files whose
raw array bytes sit between pickle opcodes, a subclass of the pure-Python unpickler that skips
those bytes the way joblib's NumpyUnpickler reads them.
"""

from __future__ import annotations

import _pickle
import functools
import io
import pickle
import re
import struct
from collections.abc import Iterator, Sequence
from typing import Any, BinaryIO, ClassVar

from bastion.errors import LimitExceeded
from bastion.scan.dtypes import InvalidDtype, pickled_dtype
from bastion.scan.embedded import MIN_PAYLOAD, as_bytes, decode, payloads_in, worth_decoding
from bastion.scan.embedded_filter import payload_candidates
from bastion.scan.pickle_globals import (
    CALL,
    NEW,
    REASONS,
    REF,
    RESOLVERS,
    STATE_ROLES,
    Verdict,
    arg_roles,
    classify,
    state_hazard,
)

MAX_STAND_IN_TYPES = 10_000
MAX_FLAGGED_NAMES = 1_000
MAX_FLAGGED_CALLS = 2_000
MAX_CALLS_PER_NAME = 10_000  # calls of one flagged name kept for a closer look (pickle_native)
UNRESOLVED_INDEX = 1 << 62  # first_index of judged calls that no GLOBAL opcode names
MAX_NESTED_CANDIDATES = 256
MAX_ARGUMENT_NODES = 50_000
JOBLIB_WRAPPERS = frozenset(
    {
        "joblib.numpy_pickle.NumpyArrayWrapper",
        "sklearn.externals.joblib.numpy_pickle.NumpyArrayWrapper",
    }
)
# TorchScript archives name their own classes under __torch__; they are resolved by the TorchScript
# type system, not imported as Python code.
TORCHSCRIPT_PREFIXES = ("__torch__.", "torch.jit._pickle.", "torch.classes.")

_classify = functools.lru_cache(maxsize=65_536)(classify)


MUTATE = "m"  # BUILD or a container operation applied to a global itself
RESOLVED = "g"  # a resolver (getattr on a global with a constant name) emulated as a lookup
LOOKUP_BASE = "b"  # the global a resolver looked an attribute up on (the result is judged)


class FlaggedName:
    """A resolved name the stream uses in a way the allowlist does not permit."""

    __slots__ = ("count", "first_index", "kind", "uses", "verdict")

    def __init__(
        self, verdict: Verdict, first_index: int, count: int, uses: str, kind: str
    ) -> None:
        self.verdict = verdict
        self.first_index = first_index  # order among resolutions in the stream (0-based)
        self.count = count
        self.uses = uses  # what the loader does with it: c(all), n(ew), r(eference), m(utate)
        # "dangerous" (a denied category), "misuse" (listed, but not for this use),
        # "call" (unknown and called or kept as a value), "new" (unknown, only instantiated)
        self.kind = kind


class _Resolved:
    __slots__ = (
        "calls",
        "calls_dropped",
        "count",
        "dotted",
        "first_index",
        "module_name",
        "uses",
        "verdict",
    )

    def __init__(self, verdict: Verdict, first_index: int, module_name: tuple[str, str]) -> None:
        self.verdict = verdict
        self.module_name = module_name  # as the stream named it
        self.first_index = first_index
        self.dotted = "." in module_name[1]  # reached through attribute lookups (protocol 4)
        self.count = 1
        self.uses: set[str] = set()
        # what calling this (flagged) name returned, arguments inside: the first
        # MAX_CALLS_PER_NAME, and how many more there were
        self.calls: list[_Obj] = []
        self.calls_dropped = 0

    def keep_call(self, made: _Obj) -> None:
        if len(self.calls) < MAX_CALLS_PER_NAME:
            self.calls.append(made)
        else:
            self.calls_dropped += 1


Resolved = _Resolved  # what the scanner reads of a name's record (module_name, calls)


class StreamResult:
    __slots__ = ("end", "engine", "error", "joblib_arrays", "root", "start")

    def __init__(self, start: int) -> None:
        self.start = start
        self.end: int | None = None  # offset just after STOP; None when the stream broke
        self.error: str | None = None
        self.engine = "c"
        self.joblib_arrays = 0
        self.root: Any = None  # the object the stream builds (stand-ins inside)


class Recorder:
    """What one pickle stream asked the unpickler to resolve, and what it did with each name
    (called it, instantiated it, kept it as a value, mutated it)."""

    def __init__(self, allowed_prefixes: tuple[str, ...] = ()) -> None:
        self.allowed_prefixes = allowed_prefixes
        self.resolutions = 0
        self.names: dict[str, _Resolved] = {}
        self.flagged_overflow = False
        self.flagged_calls: list[_Obj] = []
        self.persistent_ids = 0
        self.persistent_kinds: set[str] = set()
        self.types: dict[str, type] = {}
        self.switch_to_joblib = False
        self.memo_findings: list[str] = []
        self.data_truncated = False  # the payloads-as-data walk hit its bound

    def resolve(self, module: Any, name: Any) -> type:
        if not isinstance(module, str) or not isinstance(name, str):
            raise pickle.UnpicklingError("global module and name must be str")
        index = self.resolutions
        self.resolutions += 1
        qualname = f"{module}.{name}"
        record = self.names.get(qualname)
        if record is not None:
            record.count += 1
        else:
            if self.allowed_prefixes and qualname.startswith(self.allowed_prefixes):
                verdict = Verdict(
                    qualname=qualname, uses="cnr", category=None, reason="TorchScript type name"
                )
            else:
                verdict = _classify(module, name)
            if len(self.names) < MAX_STAND_IN_TYPES:
                record = self.names[qualname] = _Resolved(verdict, index, (module, name))
            elif not verdict.permits("cnr"):
                self.flagged_overflow = True
        stand_in = self.types.get(qualname)
        if stand_in is None:
            key = qualname if record is not None else "<overflow>"
            stand_in = self.types.get(key)
            if stand_in is None:
                flagged = record is None or not record.verdict.allowed
                stand_in = _Ref(
                    key,
                    (),
                    {
                        "__new__": _stand_in_new,
                        "_bastion_name": key,
                        "_bastion_flagged": flagged,
                        "_bastion_record": record,
                        "_bastion_recorder": self,
                    },
                )
                self.types[key] = stand_in
        return stand_in

    @property
    def allowed(self) -> dict[str, int]:
        return {name: r.count for name, r in self.names.items() if _judge(r) is None}

    @property
    def flagged(self) -> dict[str, FlaggedName]:
        out: dict[str, FlaggedName] = {}
        for qualname, record in self.names.items():
            kind = _judge(record)
            if kind is not None:
                if len(out) >= MAX_FLAGGED_NAMES:
                    self.flagged_overflow = True
                    break
                uses = "".join(sorted(record.uses)) or REF
                out[qualname] = FlaggedName(
                    record.verdict, record.first_index, record.count, uses, kind
                )
        return out

    def persistent(self, pid: Any) -> Any:
        """What a loader's persistent_load returns for `pid`. torch's legacy loader returns the
        object inside a ('module', X, source_file, source) id as is (X itself, whatever it is);
        anything else is an object of unknown type (a storage, or whatever the loader makes)."""
        self.persistent_ids += 1
        if (
            isinstance(pid, tuple)
            and pid
            and isinstance(pid[0], str)
            and len(self.persistent_kinds) < 16
        ):
            self.persistent_kinds.add(pid[0])
        if isinstance(pid, tuple) and len(pid) >= 2 and pid[0] == "module":
            return pid[1]
        return _Obj(self, "<persistent id>", (pid,), False, made=MADE_OTHER)

    def unknown_call(self, origin: str, how: str) -> None:
        """The loader calls (or instantiates) an object whose target bastion cannot determine
        (a call result, a persistent id): judged as an unknown callable."""
        qualname = f"<object {how}: result of {origin}>"[:MAX_ORIGIN]
        record = self.names.get(qualname)
        if record is not None:
            record.count += 1
            return
        if len(self.names) >= MAX_STAND_IN_TYPES:
            self.flagged_overflow = True
            return
        verdict = Verdict(
            qualname=qualname,
            uses="",
            category=None,
            reason="a call whose target bastion cannot determine",
        )
        record = self.names[qualname] = _Resolved(verdict, UNRESOLVED_INDEX, ("", qualname))
        record.uses.add(CALL)

    def note_call(self, obj: _Obj) -> None:
        if len(self.flagged_calls) < MAX_FLAGGED_CALLS:
            self.flagged_calls.append(obj)


def _judge(record: _Resolved) -> str | None:
    """None when every use the stream makes of the name is permitted; else why not."""
    verdict = record.verdict
    uses = record.uses or {REF}
    if uses == {LOOKUP_BASE}:
        return None  # only looked into: what was looked up is judged as its own name
    if verdict.category is not None:
        if uses == {RESOLVED} and verdict.qualname in RESOLVERS:
            return None  # every call was a constant lookup, judged as that name
        return "dangerous"
    if MUTATE in uses:
        return "dangerous"
    if verdict.uses:
        return None if all(use in verdict.uses for use in uses) else "misuse"
    if CALL in uses or record.dotted or NEW not in uses:
        # called, reached through attributes, or kept as a value: a callable kept in a model
        # (a FunctionTransformer's func, a vectorize's pyfunc) is called later with the
        # arguments the pickle stored next to it, so only instantiation is graded low
        return "call"
    return "new"


def _use(target: Any, use: str) -> None:
    """Record that the loader does `use` with a stand-in global."""
    record = getattr(target, "_bastion_record", None) if isinstance(target, _Ref) else None
    if isinstance(record, _Resolved):
        record.uses.add(use)
    elif isinstance(target, _Ref):
        recorder = target._bastion_recorder  # type: ignore[attr-defined]
        recorder.flagged_overflow = True


def _apply_roles(callee: Any, args: tuple[Any, ...], default: str | None = None) -> None:
    """A call (or instantiation) of a stand-in: what the callee does with the globals and
    callable stand-ins it is given. An allowed callee's reviewed roles apply; otherwise
    `default` (REF unless the caller knows better)."""
    record = getattr(callee, "_bastion_record", None)
    if isinstance(record, _Resolved) and record.verdict.allowed:
        roles, fallback = arg_roles(record.verdict)
    else:
        roles, fallback = (), default or REF
    for position, arg in enumerate(args[:64]):
        role = roles[position] if position < len(roles) else fallback
        _hand_over(arg, role)


def _hand_over(value: Any, role: str) -> None:
    """`value` reaches a place where the loader uses it in `role` (call, instantiate, keep)."""
    if isinstance(value, _Ref):
        record = value._bastion_record  # type: ignore[attr-defined]
        if (
            role == NEW
            and isinstance(record, _Resolved)
            and record.verdict.allowed
            and not _is_class(record.verdict)
        ):
            role = CALL  # a function cannot be instantiated: what is handed one calls it
        _use(value, role)
    elif isinstance(value, _Obj) and role == CALL:
        _call_value(value, (), {})


def _hand_over_callables(values: tuple[Any, ...]) -> None:
    """Values given to code bastion does not model (an unknown class's __new__, a class's own
    __setitem__/append/add): whatever in them can be called is judged as called. Instances of
    known classes are data (their own __call__ is not what such code reaches for)."""
    for value in values[:64]:
        if isinstance(value, _Ref) or (isinstance(value, _Obj) and value.callable_like()):
            _hand_over(value, CALL)


MAX_CALL_DEPTH = 32  # partial of partial of ...: deeper chains are judged unknown calls


def _call_value(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any], depth: int = 0) -> Any:
    """The loader (or restore code it runs) calls `value(*args, **kwargs)`."""
    if isinstance(value, _Ref):
        return value(*args, **kwargs)
    if isinstance(value, _Obj):
        return value.call(args, kwargs, depth)
    raise TypeError(f"{type(value).__name__} object is not callable")


MAX_KEPT_ITEMS = 100_000  # container items kept per stream for the payloads-as-data walk
MAX_ORIGIN = 200

# How an _Obj came to be.
MADE_NEW = "new"  # NEWOBJ / cls.__new__: an instance of its record's class
MADE_CALL = "call"  # the result of calling a global (an instance when the global is a class)
MADE_OTHER = "other"  # a call result of a non-global, a persistent id: type unknown

# Instances of these keep container items as data: their own __setitem__/append/add store them.
PLAIN_CONTAINERS = frozenset(
    {
        "builtins.dict",
        "builtins.list",
        "builtins.set",
        "builtins.frozenset",
        "builtins.bytearray",
        "collections.OrderedDict",
        "collections.Counter",
        "collections.deque",
        "collections.defaultdict",
    }
)
# Lower-case names of reviewed core classes (calling them builds an instance of them).
_CORE_CLASSES = frozenset(
    {
        "builtins.set",
        "builtins.frozenset",
        "builtins.bytearray",
        "builtins.bytes",
        "builtins.complex",
        "builtins.slice",
        "builtins.range",
        "builtins.dict",
        "builtins.list",
        "builtins.tuple",
        "builtins.int",
        "builtins.float",
        "builtins.bool",
        "builtins.str",
        "builtins.object",
        "collections.deque",
        "collections.defaultdict",
        "functools.partial",
        "datetime.datetime",
        "datetime.date",
        "datetime.time",
        "datetime.timedelta",
        "datetime.timezone",
        "dateutil.tz.tz.tzutc",
        "dateutil.tz.tz.tzoffset",
        "dateutil.tz.tz.tzlocal",
        "dateutil.tz.tz.tzfile",
    }
)
_CLASS_REASONS = tuple(
    tuple(REASONS[kind].split("{pkg}"))
    for kind in ("class-new", "class-call", "class-reduce", "estimator")
)
_FUNCTION_REASONS = tuple(
    tuple(REASONS[kind].split("{pkg}"))
    for kind in ("function-ref", "method-ref", "function-helper", "function-numeric", "ufunc")
)


def _matches(reason: str, templates: tuple[tuple[str, ...], ...]) -> bool:
    return any(reason.startswith(parts[0]) and reason.endswith(parts[-1]) for parts in templates)


@functools.lru_cache(maxsize=4096)
def _is_class(verdict: Verdict) -> bool:
    """Does calling this allowed global build an instance of it (a class), rather than return
    whatever a function returns?"""
    if _matches(verdict.reason, _CLASS_REASONS):
        return True
    if _matches(verdict.reason, _FUNCTION_REASONS):
        return False
    last = verdict.qualname.rsplit(".", 1)[-1]
    return verdict.qualname in _CORE_CLASSES or last[:1].isupper()


def _returns_first_argument_instance(verdict: Verdict) -> bool:
    """Reviewed rebuild helpers that return an instance of the class they are handed first."""
    roles, _default = arg_roles(verdict)
    return roles[:1] == (NEW,) or verdict.qualname.rsplit(".", 1)[-1].startswith("__pyx_unpickle_")


class _Obj:
    """What calling or instantiating a stand-in returns: inert, accepts every operation the
    unpickler performs (container operations keep their items, bounded, so values stored in
    them are still analysed as data). Calling one is judged by what it is: a partial calls its
    target, an instance its class's __call__, anything else is a call of an unknown object."""

    __slots__ = (
        "__weakref__",
        "args",
        "hook",
        "items",
        "kwargs",
        "made",
        "origin",
        "record",
        "recorder",
        "state",
    )

    def __init__(
        self,
        recorder: Recorder,
        origin: str,
        args: tuple[Any, ...],
        flagged: bool,
        record: _Resolved | None = None,
        made: str = MADE_CALL,
    ) -> None:
        self.recorder = recorder
        self.origin = origin[:MAX_ORIGIN]
        self.args = args
        self.record = record
        self.made = made
        self.state: Any = None
        self.hook: Any = None  # a value BUILD stored as the instance's __setstate__
        self.items: list[Any] | None = None
        self.kwargs: dict[str, Any] | None = None  # keyword arguments of the call, if any
        if flagged:
            recorder.note_call(self)

    def instance_of(self) -> _Resolved | None:
        """The record of the class this is an instance of, when bastion knows it."""
        record = self.record
        if record is None or self.made == MADE_OTHER:
            return None
        if self.made == MADE_NEW or not record.verdict.allowed:
            return record  # an unknown global's result: that global is already judged called
        if _is_class(record.verdict):
            return record
        if (
            _returns_first_argument_instance(record.verdict)
            and self.args
            and isinstance(self.args[0], _Ref)
        ):
            first = self.args[0]._bastion_record  # type: ignore[attr-defined]
            return first if isinstance(first, _Resolved) else None
        return None

    def constructor_args(self) -> tuple[Any, ...]:
        """The arguments the instance's class got: copyreg.__newobj__(cls, *args) is
        cls.__new__(cls, *args), __newobj_ex__(cls, args, kwargs) likewise."""
        record = self.record
        qualname = record.verdict.qualname if record is not None else ""
        if self.made == MADE_CALL and qualname == "copyreg.__newobj__":
            return tuple(self.args[1:])
        if self.made == MADE_CALL and qualname == "copyreg.__newobj_ex__":
            inner = self.args[1] if len(self.args) > 1 else ()
            return tuple(inner) if isinstance(inner, (tuple, list)) else ()
        return self.args

    def partial(self) -> tuple[Any, tuple[Any, ...]] | None:
        """(target, bound arguments) when this is a functools.partial instance."""
        cls = self.instance_of()
        if cls is None or cls.verdict.qualname != "functools.partial":
            return None
        state = self.state
        if isinstance(state, tuple) and state:
            bound = state[1] if len(state) > 1 and isinstance(state[1], tuple) else ()
            return state[0], bound
        args = self.constructor_args()
        if args:
            return args[0], tuple(args[1:])
        return None

    def callable_like(self) -> bool:
        """Could calling this run something other than a known class's __call__?"""
        return self.partial() is not None or self.made == MADE_OTHER

    def call(self, args: tuple[Any, ...], kwargs: dict[str, Any], depth: int = 0) -> Any:
        partial = self.partial()
        if partial is not None and depth < MAX_CALL_DEPTH:
            target, bound = partial
            return _call_value(target, (*bound, *args), kwargs, depth + 1)
        cls = self.instance_of()
        if cls is not None and partial is None:
            cls.uses.add(CALL)  # calling an instance runs its class's __call__
        else:
            self.recorder.unknown_call(self.origin, "called")
        _apply_roles(None, (*args, *kwargs.values()))
        return _Obj(self.recorder, f"{self.origin}(...)", args, True, made=MADE_OTHER)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.call(args, kwargs)

    def _keep(self, *values: Any) -> None:
        if self.items is None:
            self.items = []
        if len(self.items) < MAX_KEPT_ITEMS:
            self.items.extend(values)
        cls = self.instance_of()
        if cls is None or cls.verdict.qualname not in PLAIN_CONTAINERS:
            # the class's own __setitem__/append/add runs (pandas.DataFrame calls a callable
            # key): what it is given may be called
            _hand_over_callables(values)

    def append(self, item: Any) -> None:
        self._keep(item)

    def extend(self, items: Any) -> None:
        for item in items:
            self._keep(item)

    def add(self, item: Any) -> None:
        self._keep(item)

    def __setitem__(self, key: Any, value: Any) -> None:
        self._keep(key, value)

    def __setstate__(self, state: Any) -> None:
        if self.hook is not None:
            # BUILD looks __setstate__ up on the instance: an earlier BUILD put it in its dict
            _call_value(self.hook, (state,), {})
            return
        self.state = state
        if self.record is not None and state_hazard(self.record.verdict, state) is not None:
            self.record.uses.add(CALL)  # its restore runs code the state carries (A2-04)
        for part in state if isinstance(state, tuple) else (state,):
            if isinstance(part, dict) and "__setstate__" in part:
                self.hook = part["__setstate__"]
                _hand_over(self.hook, CALL)  # the next BUILD (or a copy) calls it
        if self.record is not None and isinstance(state, tuple):
            roles = STATE_ROLES.get(self.record.verdict.qualname, ())
            for role, value in zip(roles, state, strict=False):
                _hand_over(value, role)

    def __repr__(self) -> str:
        return f"<{self.origin}>"


NEWOBJ_HELPERS = frozenset({"copyreg.__newobj__", "copyreg.__newobj_ex__"})


def _new_roles(cls: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """cls.__new__(cls, *args): an allowed class's __new__ does with its arguments what its
    reviewed roles say (partial's stores its target); an unknown class's __new__ may store a
    callable it calls later (builtins.map): its callable arguments are judged as called."""
    record = cls._bastion_record
    if isinstance(record, _Resolved) and record.verdict.allowed:
        _apply_roles(cls, args)
    else:
        _hand_over_callables((*args, *kwargs.values()))


def _stand_in_new(cls: Any, *args: Any, **kwargs: Any) -> _Obj:
    """NEWOBJ / NEWOBJ_EX / INST or OBJ without arguments: instantiation without a call."""
    _use(cls, NEW)
    _new_roles(cls, args, kwargs)
    return _Obj(
        cls._bastion_recorder,
        cls._bastion_name,
        args,
        cls._bastion_flagged,
        cls._bastion_record,
        made=MADE_NEW,
    )


class _Ref(type):
    """Metaclass of the stand-in types returned by find_class. Calling one is a call of the
    global (REDUCE, INST/OBJ with arguments); BUILD or container operations on one mutate a
    global (a class's attributes, a module-level dict)."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        recorder: Recorder = cls._bastion_recorder  # type: ignore[attr-defined]
        record = cls._bastion_record  # type: ignore[attr-defined]
        if record is not None and not kwargs:
            target = _resolver_target(record.verdict.qualname, args)
            if target is not None:
                record.uses.add(RESOLVED)
                return recorder.resolve(*target)
        _use(cls, CALL)
        _apply_roles(cls, args)
        if kwargs:
            _apply_roles(None, tuple(kwargs.values()))
        name = cls._bastion_name  # type: ignore[attr-defined]
        made = _Obj(recorder, name, args, cls._bastion_flagged, record)  # type: ignore[attr-defined]
        if kwargs:
            made.kwargs = dict(kwargs)
        if record is not None and cls._bastion_flagged:  # type: ignore[attr-defined]
            record.keep_call(made)
        if (
            record is not None
            and record.verdict.qualname in NEWOBJ_HELPERS
            and args
            and isinstance(args[0], _Ref)
        ):
            _new_roles(args[0], made.constructor_args(), {})  # cls.__new__(cls, *args)
        return made

    def __setstate__(cls, state: Any) -> None:
        _use(cls, MUTATE)

    def append(cls, item: Any) -> None:
        _use(cls, MUTATE)

    def extend(cls, items: Any) -> None:
        _use(cls, MUTATE)

    def add(cls, item: Any) -> None:
        _use(cls, MUTATE)

    def __setitem__(cls, key: Any, value: Any) -> None:
        _use(cls, MUTATE)


def call_of(value: Any) -> tuple[tuple[str, str], tuple[Any, ...]] | None:
    """(module, name) as the stream named the global, and the positional arguments, when
    `value` is what a plain call of a global returned: no keyword arguments, and nothing the
    stream did to the result afterwards (BUILD state, items). None for anything else."""
    if (
        not isinstance(value, _Obj)
        or value.made != MADE_CALL
        or value.record is None
        or value.kwargs
        or value.state is not None
        or value.items
        or value.hook is not None
    ):
        return None
    return value.record.module_name, value.args


def _resolver_target(qualname: str, args: tuple[Any, ...]) -> tuple[str, str] | None:
    """The (module, name) a resolver call looks up, when it is a constant lookup."""
    kind = RESOLVERS.get(qualname)
    if kind is None or len(args) != 2 or not isinstance(args[1], str):
        return None
    if kind == "attribute" and isinstance(args[0], _Ref):
        record = args[0]._bastion_record  # type: ignore[attr-defined]
        if isinstance(record, _Resolved):
            record.uses.add(LOOKUP_BASE)
            module, name = record.module_name
            return module, f"{name}.{args[1]}"
    if kind == "attribute" and isinstance(args[0], _Obj) and args[0].record is not None:
        module, name = args[0].record.module_name  # an instance: its class's attribute
        return module, f"{name}.{args[1]}"
    if kind == "module" and isinstance(args[0], str):
        return args[0], args[1]
    return None


class _SwitchToJoblib(Exception):
    pass


class _CUnpickler(_pickle.Unpickler):
    def __init__(self, file: BinaryIO, recorder: Recorder, watch_joblib: bool) -> None:
        super().__init__(file, encoding="latin1")
        self._recorder = recorder
        self._watch_joblib = watch_joblib

    def find_class(self, module: str, name: str) -> Any:
        if self._watch_joblib and f"{module}.{name}" in JOBLIB_WRAPPERS:
            raise _SwitchToJoblib
        return self._recorder.resolve(module, name)

    def persistent_load(self, pid: Any) -> Any:
        return self._recorder.persistent(pid)


class _PyUnpickler(pickle._Unpickler):  # type: ignore[name-defined,misc]
    """Pure-Python unpickler, used for joblib files and for streams whose memo indices could
    make the C unpickler allocate out of proportion (its memo is a dict; absurd indices are
    recorded). It steps over the raw array bytes joblib writes after each NumpyArrayWrapper,
    and analyses object arrays' nested pickles with the same recorder."""

    def __init__(
        self, file: BinaryIO, recorder: Recorder, limit: int, depth: int = 0, joblib: bool = True
    ) -> None:
        super().__init__(file, encoding="latin1")
        self._joblib = joblib
        self._src = file
        here = file.tell()
        self._size = file.seek(0, io.SEEK_END)
        file.seek(here)
        self._recorder = recorder
        self._limit = limit
        self._depth = depth
        self.arrays = 0

    def find_class(self, module: str, name: str) -> Any:
        return self._recorder.resolve(module, name)

    def persistent_load(self, pid: Any) -> Any:
        return self._recorder.persistent(pid)

    def load_build(self) -> None:
        pickle._Unpickler.load_build(self)  # type: ignore[attr-defined]
        inst = self.stack[-1]  # type: ignore[attr-defined]
        if self._joblib and isinstance(inst, _Obj) and inst.origin in JOBLIB_WRAPPERS:
            self._skip_array(inst)

    def load_long_binput(self) -> None:
        (index,) = struct.unpack("<I", self.read(4))  # type: ignore[attr-defined]
        self._memo_put(index)

    def load_put(self) -> None:
        text = self.readline()[:-1]  # type: ignore[attr-defined]
        if not text.isdigit() or len(text) > 20:
            raise pickle.UnpicklingError("PUT with an invalid memo index")
        self._memo_put(int(text))

    def _memo_put(self, index: int) -> None:
        memo = self.memo  # type: ignore[attr-defined]
        if index > 2 * len(memo) + MEMO_SLACK and not self._recorder.memo_findings:
            self._recorder.memo_findings.append(
                f"memo index {index} with {len(memo)} entries stored (CPython would allocate "
                f"{index * 16} bytes for it)"
            )
        memo[index] = self.stack[-1]  # type: ignore[attr-defined]

    dispatch: ClassVar[dict[int, Any]] = dict(pickle._Unpickler.dispatch)  # type: ignore[attr-defined]
    dispatch[pickle.BUILD[0]] = load_build
    dispatch[pickle.LONG_BINPUT[0]] = load_long_binput
    dispatch[pickle.PUT[0]] = load_put

    def _skip_array(self, wrapper: _Obj) -> None:
        state = wrapper.state if isinstance(wrapper.state, dict) else {}
        frame = getattr(getattr(self, "_unframer", None), "current_frame", None)
        if frame is not None and frame.tell() < len(frame.getbuffer()):
            raise pickle.UnpicklingError("joblib array header inside an unfinished frame")
        self.arrays += 1
        dtype = state.get("dtype")
        shape = state.get("shape", ())
        if not isinstance(shape, tuple) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise pickle.UnpicklingError("joblib array with an invalid shape")
        itemsize, is_object = _dtype_itemsize(dtype)
        if is_object:
            # joblib reads the items with a plain pickle._Unpickler (only find_class routed): a
            # NumpyArrayWrapper in there is an ordinary object, the bytes after it are opcodes.
            inner = _PyUnpickler(
                self._src, self._recorder, self._limit, self._depth + 1, joblib=False
            )
            inner.load()
            self.arrays += inner.arrays
            return
        count = 1
        for dim in shape:
            count *= dim
        nbytes = count * itemsize
        if state.get("numpy_array_alignment_bytes") is not None:
            pad = self._src.read(1)
            if len(pad) != 1:
                raise pickle.UnpicklingError("joblib array padding truncated")
            self._skip(pad[0])
        self._skip(nbytes)

    def _skip(self, count: int) -> None:
        """Step over raw array bytes; the stream's end is the bound, not the declared size."""
        if self._src.tell() + count > self._size:
            raise pickle.UnpicklingError("joblib array data runs past the end of the file")
        self._src.seek(count, io.SEEK_CUR)


def _dtype_itemsize(dtype: Any) -> tuple[int, bool]:
    """Item size and object-ness of a numpy dtype stand-in (numpy.dtype(code, align, copy) +
    BUILD state), decided as NumPy builds it: the state's flags, not the code, say object."""
    if not isinstance(dtype, _Obj) or not dtype.args or not isinstance(dtype.args[0], str):
        raise pickle.UnpicklingError("joblib array without a readable dtype")
    try:
        info = pickled_dtype(dtype.args, dtype.state, _nested_dtype)
    except InvalidDtype as exc:
        raise pickle.UnpicklingError(f"joblib array with an invalid dtype: {exc}") from exc
    if info.has_object:
        return 8, True
    if info.itemsize is None:
        raise pickle.UnpicklingError(f"joblib array with unsupported dtype {dtype.args[0]!r}")
    return info.itemsize, False


def _nested_dtype(value: Any) -> tuple[tuple[Any, ...], Any] | None:
    return (value.args, value.state) if isinstance(value, _Obj) and value.args else None


class _RawAdapter(io.RawIOBase):
    """Gives any binary stream the raw interface so BufferedReader can add peek()."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._stream.seek(offset, whence)

    def tell(self) -> int:
        return self._stream.tell()

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class _ReadOnly:
    """What the C unpickler gets: read/readline/peek only, and reads capped at the bytes that
    exist. Without `readinto` it copies BYTEARRAY8 data from read() instead of lending the new
    bytearray's buffer out (on truncated input CPython then prints 'deallocated bytearray object
    has exported buffers'); with the cap, a forged 2**60-byte length costs nothing."""

    def __init__(self, stream: BinaryIO, size: int) -> None:
        self._stream = stream
        self._size = size
        self.readline = stream.readline
        self.peek = stream.peek  # type: ignore[attr-defined]
        self.tell = stream.tell
        self.seek = stream.seek

    def read(self, count: int = -1) -> bytes:
        if count > 65_536:
            count = min(count, max(0, self._size - self._stream.tell()))
        return self._stream.read(count)


def _buffered(stream: BinaryIO) -> BinaryIO:
    end = stream.seek(0, io.SEEK_END)
    if not hasattr(stream, "peek"):
        stream = io.BufferedReader(_RawAdapter(stream), buffer_size=1 << 17)  # type: ignore[assignment]
    return _ReadOnly(stream, end)  # type: ignore[return-value]


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300]


def analyse_stream(stream: BinaryIO, start: int, recorder: Recorder, limit: int) -> StreamResult:
    """Analyse one pickle stream starting at `start` (the stream must be seekable), as every
    loader could read it, and record the union of what they resolve:

    - the C unpickler (pickle.load, torch.load, pandas.read_pickle, numpy.load): first, unless
      the stream's memo indices could make it allocate out of proportion;
    - the pure-Python unpickler with joblib's array handling (joblib.load uses it for any file):
      when the C engine fails or is not run (it resolves a GLOBAL whose name line is cut at the
      end of the file, which the C engine refuses), or when the stream holds a joblib array;
    - for a stream holding a joblib array, also the plain reading (C engine, or pure-Python
      without array handling when memo-suspect) that parses joblib's raw array bytes as opcodes.

    The returned result (end, error, root) is the first engine's: the C engine's, or joblib's
    when the C engine is not run or hands over to it."""
    result = StreamResult(start=start)
    suspect = _memo_suspect(stream, start)
    joblib_stream = False
    if not suspect:
        try:
            result.root, result.end = _run_c(stream, start, recorder, watch_joblib=True)
            return result
        except _SwitchToJoblib:
            joblib_stream = True
        except RecursionError as exc:
            result.error = _describe(exc)
        except LimitExceeded:
            raise
        except Exception as exc:
            result.error = _describe(exc)
    if result.error is not None:  # the C engine broke: joblib.load's engine may read further
        _run_python(stream, start, recorder, limit, StreamResult(start), joblib=True)
        return result
    # joblib, or memo indices to check: start over with the Python engine and a clean record.
    result.engine = "python"
    _run_python(stream, start, recorder, limit, result, joblib=True)
    if joblib_stream or result.joblib_arrays:
        _plain_reading(stream, start, recorder, limit, suspect)
    return result


def _run_c(stream: BinaryIO, start: int, recorder: Recorder, watch_joblib: bool) -> tuple[Any, int]:
    reader = _buffered(stream)
    reader.seek(start)
    try:
        root = _CUnpickler(reader, recorder, watch_joblib=watch_joblib).load()
    except MemoryError as exc:
        raise LimitExceeded("pickle analysis ran out of its memory budget") from exc
    return root, reader.tell()


def _run_python(
    stream: BinaryIO, start: int, recorder: Recorder, limit: int, result: StreamResult, joblib: bool
) -> None:
    """The pure-Python engine with a fresh record (merged into `recorder`), same bounds."""
    fresh = Recorder(allowed_prefixes=recorder.allowed_prefixes)
    stream.seek(start)
    unpickler = _PyUnpickler(stream, fresh, limit, joblib=joblib)
    try:
        result.root = unpickler.load()
        result.end = stream.tell()
    except LimitExceeded:
        raise
    except MemoryError as exc:
        raise LimitExceeded("pickle analysis ran out of its memory budget") from exc
    except Exception as exc:
        result.error = _describe(exc)
    finally:
        result.joblib_arrays = unpickler.arrays
        _merge(recorder, fresh)


def _plain_reading(
    stream: BinaryIO, start: int, recorder: Recorder, limit: int, suspect: bool
) -> None:
    """What a plain unpickler resolves in a joblib stream: it knows nothing of joblib's arrays
    and parses their raw bytes as opcodes. Its error (raw bytes rarely parse) is not the file's;
    what it resolved before the error is (that much already ran in the loader)."""
    if suspect:
        _run_python(stream, start, recorder, limit, StreamResult(start), joblib=False)
        return
    fresh = Recorder(allowed_prefixes=recorder.allowed_prefixes)
    try:
        _run_c(stream, start, fresh, watch_joblib=False)
    except LimitExceeded:
        raise
    except Exception:  # the plain reading of array bytes may break anywhere
        pass
    finally:
        _merge(recorder, fresh)


MEMO_SLACK = 1 << 16  # memo indices the C unpickler may pre-allocate without a second look
# LONG_BINPUT with an index >= 2**16, or PUT with six digits or more (lookaheads: overlapping).
_MEMO_PUT_RE = re.compile(rb"r(?=[\s\S]{2}(?:[\x01-\xff][\s\S]|[\s\S][\x01-\xff]))|p(?=\d{6,}\n)")
_PRESCAN_CHUNK = 8 << 20
PRESCAN_LIMIT = 256 << 20


def _memo_suspect(stream: BinaryIO, start: int) -> bool:
    """Could a memo store (LONG_BINPUT / PUT) in this stream make CPython's C unpickler allocate
    out of proportion to the input? It grows its memo table to twice the index *before* storing
    (a 9-byte stream can ask for 64 GiB). A legitimate index never exceeds the number of objects
    memoized, below half the stream's length; a larger candidate index (found by a byte search,
    which may also hit string contents) sends the stream to the Python engine, whose memo is a
    dict and which reports absurd indices. Searches the first PRESCAN_LIMIT bytes."""
    end = stream.seek(0, io.SEEK_END)
    bound = max((end - start) // 2, 0) + MEMO_SLACK
    position = start
    stop = min(end, start + PRESCAN_LIMIT)
    while position < stop:
        stream.seek(position)
        chunk = stream.read(_PRESCAN_CHUNK + 32)
        for match in _MEMO_PUT_RE.finditer(chunk):
            at = match.start()
            if chunk[at] == 0x72:  # r
                index = int.from_bytes(chunk[at + 1 : at + 5], "little")
            else:
                index = int(chunk[at + 1 : chunk.index(b"\n", at)][:20])
            if index > bound:
                return True
        position += _PRESCAN_CHUNK
    return False


def _merge(into: Recorder, other: Recorder) -> None:
    into.resolutions += other.resolutions
    for name, record in other.names.items():
        known = into.names.get(name)
        if known is None:
            into.names[name] = record
        else:
            known.count = max(known.count, record.count)  # readings of one stream
            known.uses |= record.uses
            for call in record.calls:  # what another reading called is checked too
                known.keep_call(call)
            known.calls_dropped += record.calls_dropped
    into.memo_findings.extend(other.memo_findings)
    into.flagged_overflow |= other.flagged_overflow
    into.flagged_calls.extend(other.flagged_calls[:MAX_FLAGGED_CALLS])
    into.persistent_ids += other.persistent_ids
    into.persistent_kinds |= other.persistent_kinds


# --- nested payloads -------------------------------------------------------------------------

_PURE_DECODERS = {
    "_codecs.encode": "encode",
    "codecs.encode": "encode",
    "base64.b64decode": "b64",
    "base64.standard_b64decode": "b64",
    "base64.urlsafe_b64decode": "b64url",
    "base64.decodebytes": "b64",
    "base64.b32decode": "b32",
    "base64.b16decode": "b16",
    "base64.a85decode": "a85",
    "base64.b85decode": "b85",
    "binascii.a2b_base64": "b64",
    "binascii.unhexlify": "b16",
    "binascii.a2b_hex": "b16",
    "zlib.decompress": "zlib",
    "gzip.decompress": "gzip",
    "bz2.decompress": "bz2",
    "lzma.decompress": "xz",
    "builtins.bytes": "bytes",
    "builtins.bytearray": "bytes",
    "io.BytesIO": "bytes",
    "_io.BytesIO": "bytes",
    "builtins.bytes.fromhex": "hex",
}


def materialize(value: Any, limit: int, depth: int = 0) -> bytes | None:
    """The bytes a value stands for, evaluating only pure decoders (base64, hex, latin-1
    encode, zlib...) the stream calls on it. Anything else is None."""
    if depth > 8:
        return None
    if isinstance(value, (bytes, bytearray, str)):
        return as_bytes(value, limit)
    if not isinstance(value, _Obj) or not value.args:
        return None
    kind = _PURE_DECODERS.get(value.origin)
    if kind is None:
        return None
    inner = materialize(value.args[0], limit, depth + 1)
    if inner is None or kind in ("encode", "bytes"):
        return inner
    return decode(kind, inner, limit)


def _walk_args(args: Any, budget: list[int]) -> Iterator[Any]:
    stack = [args]
    while stack and budget[0] > 0:
        item = stack.pop()
        budget[0] -= 1
        if isinstance(item, (tuple, list)):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        else:
            yield item


class NestedCandidates(list[tuple[str, bytes]]):
    """(label, bytes) pairs; `truncated` names the bound that stopped the search, if any (the
    caller reports it as a limit: what lies past a bound is never silently dropped)."""

    truncated: str | None = None


def nested_candidates(
    recorder: Recorder,
    limit: int,
    root: Any = None,
    arrow_values: Sequence[tuple[str, bytes]] = (),
    arrow_truncated: bool = False,
) -> NestedCandidates:
    """(label, bytes) of serialized payloads the stream carries: handed to flagged callables
    (through pure decoders it calls), or held anywhere in the loaded object as a str/bytes
    value, raw or encoded (see embedded.payloads_in), including the values of Arrow binary and
    string arrays (`arrow_values`: where each is, and its bytes, cut out of their buffers by
    arrow_layout). Bounded in count and total bytes; a bound reached sets `truncated` on the
    result."""
    out = NestedCandidates()
    seen: set[bytes] = set()
    total = 0

    def add(label: str, data: bytes) -> bool:
        nonlocal total
        if len(data) > limit:  # as_bytes cut it at limit + 1: too large to decode
            out.truncated = f"a value over {limit} bytes"
            return True
        for payload in payloads_in(data, limit):
            blob = payload.data
            digest = blob[:64] + len(blob).to_bytes(8, "little")
            if digest in seen:
                continue
            seen.add(digest)
            if len(out) >= MAX_NESTED_CANDIDATES:
                out.truncated = f"more than {MAX_NESTED_CANDIDATES} embedded payloads"
                return False
            total += len(blob)
            if total > limit:
                out.truncated = f"embedded payloads over {limit} bytes in all"
                return False
            how = "" if payload.how == "raw" else f" ({payload.how})"
            out.append((label + how, blob))
        return True

    budget = [MAX_ARGUMENT_NODES]
    for call in recorder.flagged_calls:
        for arg in _walk_args(call.args, budget):
            data = materialize(arg, limit)
            if data is not None and not add(f"argument of {call.origin}", data):
                return out
    if budget[0] <= 0:
        out.truncated = f"call arguments over {MAX_ARGUMENT_NODES} nodes"
        return out
    for where, arrow_value in arrow_values:
        if not add(f"Arrow value, {where}", as_bytes(arrow_value, limit)):
            return out
    if arrow_truncated:
        out.truncated = "more Arrow string values than bastion keeps"
    if root is not None:
        walk = DataWalk()
        for value in walk.values(root):
            if not add("data value", as_bytes(value, limit)):
                return out
        recorder.data_truncated = walk.truncated
        if walk.truncated:
            out.truncated = (
                f"the object holds over {MAX_DATA_VALUES} string/bytes values or "
                f"{MAX_WALKED_NODES} nodes"
            )
    return out


MAX_WALKED_NODES = 2_000_000
MAX_DATA_VALUES = 100_000
_SCALARS = (int, float, complex, type(None))


class DataWalk:
    """The str/bytes values a stream's result holds (containers, arguments, state and items of
    stand-in objects), each distinct value once, that could carry a serialized payload: what the
    next consumer of the loaded object might hand to a loader. Bounded in nodes and values;
    `truncated` says whether the bound cut the walk short."""

    def __init__(self) -> None:
        self.truncated = False

    def values(self, root: Any) -> Iterator[str | bytes]:
        """In the order the walk meets them: every distinct string goes through the search's
        bulk pre-filter (embedded_filter), the candidates through its per-value one; at most
        MAX_DATA_VALUES of those."""
        found = self._strings(root)
        kept = 0
        for index in payload_candidates(found):
            value = found[index]
            if not worth_decoding(value):
                continue
            if kept >= MAX_DATA_VALUES:
                self.truncated = True
                return
            kept += 1
            yield value

    def _strings(self, root: Any) -> list[str | bytes]:
        found: list[str | bytes] = []
        stack = [root]
        seen: set[int] = set()
        nodes = 0
        while stack:
            if nodes >= MAX_WALKED_NODES:
                self.truncated = True
                break
            item = stack.pop()
            if isinstance(item, _SCALARS):  # bool is an int: nothing to decode, no node spent
                continue
            nodes += 1
            if isinstance(item, (str, bytes, bytearray)):
                # each object once: a value referenced a million times is not joined a million
                # times
                if len(item) >= MIN_PAYLOAD and id(item) not in seen:
                    seen.add(id(item))
                    found.append(bytes(item) if isinstance(item, bytearray) else item)
                continue
            if id(item) in seen:
                continue
            if isinstance(item, (tuple, list, set, frozenset)):
                if len(item):
                    seen.add(id(item))
                    stack.extend(item)
            elif isinstance(item, dict):
                if item:
                    seen.add(id(item))
                    stack.extend(item.keys())
                    stack.extend(item.values())
            elif isinstance(item, _Obj):
                seen.add(id(item))
                stack.append(item.args)
                stack.append(item.state)
                if item.items:
                    stack.extend(item.items)
        return found

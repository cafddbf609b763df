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
from collections.abc import Iterator
from typing import Any, BinaryIO, ClassVar

from bastion.errors import LimitExceeded
from bastion.scan.dtypes import InvalidDtype, pickled_dtype
from bastion.scan.embedded import as_bytes, decode, payloads_in
from bastion.scan.pickle_globals import Verdict, classify

MAX_STAND_IN_TYPES = 10_000
MAX_FLAGGED_NAMES = 1_000
MAX_FLAGGED_CALLS = 2_000
MAX_NESTED_CANDIDATES = 32
JOBLIB_WRAPPERS = frozenset({"joblib.numpy_pickle.NumpyArrayWrapper",
                             "sklearn.externals.joblib.numpy_pickle.NumpyArrayWrapper"})
# TorchScript archives name their own classes under __torch__; they are resolved by the TorchScript
# type system, not imported as Python code.
TORCHSCRIPT_PREFIXES = ("__torch__.", "torch.jit._pickle.", "torch.classes.")

_classify = functools.lru_cache(maxsize=65_536)(classify)


class FlaggedName:
    __slots__ = ("count", "first_index", "verdict")

    def __init__(self, verdict: Verdict, first_index: int) -> None:
        self.verdict = verdict
        self.first_index = first_index  # order among resolutions in the stream (0-based)
        self.count = 1


class StreamResult:
    __slots__ = ("end", "engine", "error", "joblib_arrays", "start")

    def __init__(self, start: int) -> None:
        self.start = start
        self.end: int | None = None  # offset just after STOP; None when the stream broke
        self.error: str | None = None
        self.engine = "c"
        self.joblib_arrays = 0


class Recorder:
    """What one pickle stream asked the unpickler to resolve and call."""

    def __init__(self, allowed_prefixes: tuple[str, ...] = ()) -> None:
        self.allowed_prefixes = allowed_prefixes
        self.resolutions = 0
        self.allowed: dict[str, int] = {}
        self.flagged: dict[str, FlaggedName] = {}
        self.flagged_overflow = False
        self.flagged_calls: list[_Obj] = []
        self.persistent_ids = 0
        self.persistent_kinds: set[str] = set()
        self.types: dict[str, type] = {}
        self.switch_to_joblib = False

    def resolve(self, module: Any, name: Any) -> type:
        if not isinstance(module, str) or not isinstance(name, str):
            raise pickle.UnpicklingError("global module and name must be str")
        index = self.resolutions
        self.resolutions += 1
        qualname = f"{module}.{name}"
        if self.allowed_prefixes and qualname.startswith(self.allowed_prefixes):
            verdict = Verdict(qualname, True, None, "TorchScript type name")
        else:
            verdict = _classify(module, name)
        if verdict.allowed:
            if len(self.allowed) < MAX_FLAGGED_NAMES or verdict.qualname in self.allowed:
                self.allowed[verdict.qualname] = self.allowed.get(verdict.qualname, 0) + 1
        else:
            known = self.flagged.get(qualname)
            if known is not None:
                known.count += 1
            elif len(self.flagged) < MAX_FLAGGED_NAMES:
                self.flagged[qualname] = FlaggedName(verdict, index)
            else:
                self.flagged_overflow = True
        stand_in = self.types.get(qualname)
        if stand_in is None:
            key = qualname if len(self.types) < MAX_STAND_IN_TYPES else "<overflow>"
            stand_in = self.types.get(key)
            if stand_in is None:
                stand_in = _Ref(key, (), {"__new__": _stand_in_new, "_bastion_name": key,
                                          "_bastion_flagged": not verdict.allowed,
                                          "_bastion_recorder": self})
                self.types[key] = stand_in
        return stand_in

    def persistent(self, pid: Any) -> _Obj:
        self.persistent_ids += 1
        if isinstance(pid, tuple) and pid and isinstance(pid[0], str) and \
                len(self.persistent_kinds) < 16:
                self.persistent_kinds.add(pid[0])
        return _Obj(self, "<persistent id>", (pid,), False)

    def note_call(self, obj: _Obj) -> None:
        if len(self.flagged_calls) < MAX_FLAGGED_CALLS:
            self.flagged_calls.append(obj)


class _AcceptsContainerOps:
    """The container operations the unpickler performs on whatever is on its stack (APPEND(S),
    ADDITEMS, SETITEM(S)); on stand-ins they do nothing."""

    __slots__ = ()

    def append(self, item: Any) -> None:
        return None

    def extend(self, items: Any) -> None:
        return None

    def add(self, item: Any) -> None:
        return None

    def __setitem__(self, key: Any, value: Any) -> None:
        return None


class _Obj(_AcceptsContainerOps):
    """What calling a stand-in returns: inert, accepts every operation the unpickler performs."""

    __slots__ = ("__weakref__", "args", "origin", "recorder", "state")

    def __init__(self, recorder: Recorder, origin: str, args: tuple[Any, ...],
                 flagged: bool) -> None:
        self.recorder = recorder
        self.origin = origin
        self.args = args
        self.state: Any = None
        if flagged:
            recorder.note_call(self)

    def __call__(self, *args: Any, **kwargs: Any) -> _Obj:
        return _Obj(self.recorder, f"{self.origin}(...)", args, True)

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<{self.origin}>"


def _stand_in_new(cls: Any, *args: Any, **kwargs: Any) -> _Obj:
    return _Obj(cls._bastion_recorder, cls._bastion_name, args, cls._bastion_flagged)


class _Ref(_AcceptsContainerOps, type):
    """Metaclass of the stand-in types returned by find_class (so the container operations
    work on the stand-in types themselves too)."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        recorder: Recorder = cls._bastion_recorder  # type: ignore[attr-defined]
        return _Obj(recorder, cls._bastion_name, args,  # type: ignore[attr-defined]
                    cls._bastion_flagged)  # type: ignore[attr-defined]

    def __setstate__(cls, state: Any) -> None:
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


class _JoblibUnpickler(pickle._Unpickler):  # type: ignore[name-defined,misc]
    """Pure-Python unpickler that steps over the raw array bytes joblib writes after each
    NumpyArrayWrapper, and analyses object arrays' nested pickles with the same recorder."""

    def __init__(self, file: BinaryIO, recorder: Recorder, limit: int, depth: int = 0) -> None:
        super().__init__(file, encoding="latin1")
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
        if isinstance(inst, _Obj) and inst.origin in JOBLIB_WRAPPERS:
            self._skip_array(inst)

    dispatch: ClassVar[dict[int, Any]] = dict(pickle._Unpickler.dispatch)  # type: ignore[attr-defined]
    dispatch[pickle.BUILD[0]] = load_build

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
            if self._depth >= 4:
                raise LimitExceeded("joblib object arrays nested too deeply")
            inner = _JoblibUnpickler(self._src, self._recorder, self._limit, self._depth + 1)
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


def analyse_stream(stream: BinaryIO, start: int, recorder: Recorder,
                   limit: int) -> StreamResult:
    """Analyse one pickle stream starting at `start`. The stream must be seekable."""
    reader = _buffered(stream)
    reader.seek(start)
    result = StreamResult(start=start)
    try:
        _CUnpickler(reader, recorder, watch_joblib=True).load()
        result.end = reader.tell()
        return result
    except _SwitchToJoblib:
        pass
    except MemoryError as exc:
        raise LimitExceeded("pickle analysis ran out of its memory budget") from exc
    except RecursionError as exc:
        result.error = _describe(exc)
        return result
    except Exception as exc:
        result.error = _describe(exc)
        return result
    # joblib: start over with the Python engine and a clean record of this stream.
    fresh = Recorder(allowed_prefixes=recorder.allowed_prefixes)
    stream.seek(start)
    unpickler = _JoblibUnpickler(stream, fresh, limit)
    result.engine = "joblib"
    try:
        unpickler.load()
        result.end = stream.tell()
    except LimitExceeded:
        raise
    except MemoryError as exc:
        raise LimitExceeded("pickle analysis ran out of its memory budget") from exc
    except Exception as exc:
        result.error = _describe(exc)
    result.joblib_arrays = unpickler.arrays
    _merge(recorder, fresh)
    return result


def _merge(into: Recorder, other: Recorder) -> None:
    into.resolutions += other.resolutions
    for name, count in other.allowed.items():
        into.allowed[name] = into.allowed.get(name, 0) + count
    for name, flagged in other.flagged.items():
        if name not in into.flagged:
            into.flagged[name] = flagged
    into.flagged_overflow |= other.flagged_overflow
    into.flagged_calls.extend(other.flagged_calls[: MAX_FLAGGED_CALLS])
    into.persistent_ids += other.persistent_ids
    into.persistent_kinds |= other.persistent_kinds


# --- nested payloads -------------------------------------------------------------------------

_PURE_DECODERS = {
    "_codecs.encode": "encode",
    "codecs.encode": "encode",
    "base64.b64decode": "b64", "base64.standard_b64decode": "b64",
    "base64.urlsafe_b64decode": "b64url", "base64.decodebytes": "b64",
    "base64.b32decode": "b32", "base64.b16decode": "b16", "base64.a85decode": "a85",
    "base64.b85decode": "b85", "binascii.a2b_base64": "b64", "binascii.unhexlify": "b16",
    "binascii.a2b_hex": "b16", "zlib.decompress": "zlib", "gzip.decompress": "gzip",
    "bz2.decompress": "bz2", "lzma.decompress": "xz", "builtins.bytes": "bytes",
    "builtins.bytearray": "bytes", "io.BytesIO": "bytes", "_io.BytesIO": "bytes",
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
            stack.extend(item[:64])
        elif isinstance(item, dict):
            stack.extend(list(item.values())[:64])
        else:
            yield item


def nested_candidates(recorder: Recorder, limit: int) -> list[tuple[str, bytes]]:
    """(callee, bytes) of payloads handed to flagged callables that could be serialized data."""
    out: list[tuple[str, bytes]] = []
    seen: set[bytes] = set()
    total = 0
    budget = [50_000]
    for call in recorder.flagged_calls:
        for arg in _walk_args(call.args, budget):
            data = materialize(arg, limit)
            if data is None:
                continue
            for payload in payloads_in(data, limit):
                blob = payload.data
                digest = blob[:64] + len(blob).to_bytes(8, "little")
                if digest in seen:
                    continue
                seen.add(digest)
                total += len(blob)
                if total > limit:
                    return out
                out.append((call.origin, blob))
                if len(out) >= MAX_NESTED_CANDIDATES:
                    return out
    return out

"""The reference side of the differential oracles: CPython's own unpicklers (the pure-Python
`pickle._Unpickler` and the C `_pickle.Unpickler`), driven with a `find_class` that records what
they ask for and returns inert stand-ins. Nothing real is ever imported, built or called.

Written independently of bastion's analysis on purpose: it shares no code with `bastion.scan`,
so a disagreement is a finding about one of the two, not a shared blind spot."""

from __future__ import annotations

import _compat_pickle
import _pickle
import io
import pickle
from typing import Any, NamedTuple

MAX_STREAMS = 8  # a loader calling load() repeatedly reads stacked pickles


class Resolution(NamedTuple):
    """One name the unpickler asked find_class for, and what CPython's default find_class
    would import for it (after the Python 2 mapping)."""

    module: str
    name: str
    imported: tuple[str, str]

    def qualnames(self) -> set[str]:
        return {f"{self.module}.{self.name}", ".".join(self.imported)}


class Inert:
    """What a call or instantiation of a stand-in returns: accepts every operation the
    unpickler performs on the objects on its stack (BUILD, APPEND(S), ADDITEMS, SETITEM(S),
    REDUCE on it) and does nothing."""

    def __call__(self, *args: Any, **kwargs: Any) -> Inert:
        return Inert()

    def __setstate__(self, state: Any) -> None:
        return None

    def append(self, item: Any) -> None:
        return None

    def extend(self, items: Any) -> None:
        return None

    def add(self, item: Any) -> None:
        return None

    def __setitem__(self, key: Any, value: Any) -> None:
        return None


class _StandInMeta(type):
    def __call__(cls, *args: Any, **kwargs: Any) -> Inert:
        return Inert()

    def __setstate__(cls, state: Any) -> None:
        return None

    def append(cls, item: Any) -> None:
        return None

    def extend(cls, items: Any) -> None:
        return None

    def add(cls, item: Any) -> None:
        return None

    def __setitem__(cls, key: Any, value: Any) -> None:
        return None


def _stand_in(qualname: str) -> type:
    return _StandInMeta(qualname, (), {"__new__": lambda cls, *a, **k: Inert()})


def loader_name(module: str, name: str, proto: int) -> tuple[str, str]:
    """The (module, name) CPython's default find_class imports: Python 2 names are mapped
    when the stream's protocol is below 3 (fix_imports, the default)."""
    if proto < 3:
        if (module, name) in _compat_pickle.NAME_MAPPING:
            return _compat_pickle.NAME_MAPPING[(module, name)]
        if module in _compat_pickle.IMPORT_MAPPING:
            return _compat_pickle.IMPORT_MAPPING[module], name
    return module, name


class _Recording:
    resolved: set[Resolution]
    proto: int

    def find_class(self, module: str, name: str) -> Any:
        if not module:  # `__import__("")` fails before anything is imported
            raise pickle.UnpicklingError("empty module name")
        self.resolved.add(Resolution(module, name, loader_name(module, name, self.proto)))
        return _stand_in(f"{module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        return Inert()


class PyRecorder(_Recording, pickle._Unpickler):  # type: ignore[name-defined,misc]
    """load() resets `proto` and PROTO sets it, exactly as for the real loader."""


class CRecorder(_Recording, _pickle.Unpickler):  # type: ignore[misc]
    """The C unpickler keeps its protocol private: the declared one (first opcode) is used
    for the Python 2 mapping; matching accepts the raw name as well."""


def _drive(cls: type, data: bytes) -> set[Resolution]:
    resolved: set[Resolution] = set()
    stream = io.BytesIO(data)
    for _ in range(MAX_STREAMS):
        start = stream.tell()
        if start >= len(data):
            break
        unpickler = cls(stream, encoding="latin1")
        unpickler.resolved = resolved
        unpickler.proto = _declared_protocol(data, start)
        try:
            unpickler.load()
        except Exception:  # the unpickler raised: what it resolved before that still ran
            break
    return resolved


def _declared_protocol(data: bytes, start: int) -> int:
    if len(data) > start + 1 and data[start] == pickle.PROTO[0]:
        return data[start + 1]
    return 0


def resolved_by_c_unpickler(data: bytes) -> set[Resolution]:
    """What `_pickle.Unpickler` (pickle.load, torch.load) alone would resolve."""
    return _drive(CRecorder, data)


def resolved_globals(data: bytes) -> set[Resolution]:
    """Every (module, name) either CPython unpickler would import while loading `data` (and
    the pickles stacked after it), after the loader's own Python 2 name mapping."""
    return _drive(PyRecorder, data) | _drive(CRecorder, data)

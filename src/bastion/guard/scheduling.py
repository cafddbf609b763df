"""How the served guard's threads share a CPU with the model (Linux 6.12 and later; elsewhere
nothing changes).

A served request's admission is committed in the event loop's thread while the model computes
in its own (`app._predict`). The commit's fdatasync is a chain of disk steps (the data write,
the journal's, the cache flush) and each step's completion wakes the committing thread. On a
core the model keeps busy, Linux's EEVDF scheduler lets the running thread finish its slice
(about 1.4 ms by default, "run to parity") before a woken thread with the same slice runs, so
each step waited for the model: on one core the commit ended 0.3 ms after a 3 ms model call
(docs/benchmarks.md, "Runtime guard: added latency"). Two hints, neither needing a privilege
nor changing any thread's scheduling class, nice value or CPU share:

- the event loop's thread asks for the shortest slice (`short_slice`): a woken thread whose
  slice is shorter than the running one's may preempt it (the kernel's PREEMPT_SHORT), so the
  disk steps after the first one run at once;
- the model's thread yields the CPU once as it starts (`app._predict`): the loop has just run
  the request's pipeline while the model's thread slept, so the loop is not yet *eligible* to
  preempt it; the yield moves the model's deadline on. One alone did not do it (measured over
  HTTP: the slice alone left 0.85 ms added, the yield alone 0.6-0.8).

A thread inherits the slice of the thread that starts it, so the model's pool, started from the
event loop, resets its threads to the default (`default_slice`, the pool's initializer): the
threads that compute keep the default slice.

The kernel interface is `sched_setattr(2)` with `sched_runtime` as the slice of a SCHED_OTHER
or SCHED_BATCH thread; Python has no binding for it, so it is called through `ctypes` (written
here for want of a library: two system calls and one fixed struct). It is only tried on the
architectures whose system call numbers are listed; anything the kernel refuses (an older kernel
rejects the field; a realtime thread is left alone) leaves the thread as it was, logged at debug
level."""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import struct
import sys

log = logging.getLogger(__name__)

SHORT_SLICE_NS = 100_000  # the kernel's minimum slice, 0.1 ms
# sched_setattr / sched_getattr system call numbers of the 64-bit ABIs (a 32-bit process on a
# 64-bit kernel has other numbers, though platform.machine() names the kernel's: _calls)
_CALLS = {"x86_64": (314, 315), "aarch64": (274, 275), "arm64": (274, 275)}
_POINTER_BYTES = struct.calcsize("P")
# struct sched_attr as of Linux 5.3 (SCHED_ATTR_SIZE_VER1, 56 bytes): size, policy, flags,
# nice, priority, runtime, deadline, period, util_min, util_max
_ATTR = struct.Struct("=IIQiIQQQII")
_FAIR = (0, 3)  # SCHED_OTHER, SCHED_BATCH: the policies whose runtime is a slice
# kept as it is: clearing it needs CAP_SYS_NICE (without, the call is refused) and would
# change the scheduling of the thread's children
_RESET_ON_FORK = 0x01

_libc: ctypes.CDLL | None = None
_no_libc = False  # the C library could not be opened, or has no syscall: nothing is tried


def short_slice() -> bool:
    """Ask for the shortest slice for the calling thread; whether the kernel took it."""
    return _set_slice(SHORT_SLICE_NS)


def default_slice() -> bool:
    """Give the calling thread the kernel's default slice back (a computing thread started
    from one with a short slice); whether the kernel took it."""
    return _set_slice(0)


def current_slice_ns() -> int | None:
    """The calling thread's slice in ns (None where it cannot be read)."""
    attr = _get()
    return None if attr is None else attr[5]


def _set_slice(nanoseconds: int) -> bool:
    attr = _get()
    if attr is None or attr[1] not in _FAIR:
        return False
    _size, policy, flags, nice, priority, *_rest = attr
    flags &= _RESET_ON_FORK
    data = ctypes.create_string_buffer(
        _ATTR.pack(_ATTR.size, policy, flags, nice, priority, nanoseconds, 0, 0, 0, 0), _ATTR.size
    )
    libc, (set_call, _get_call) = _calls()
    if libc is None or libc.syscall(set_call, 0, data, 0) != 0:
        log.debug("sched_setattr refused: %s", os.strerror(ctypes.get_errno()))
        return False
    now = _get()
    return now is not None and (nanoseconds == 0 or now[5] == nanoseconds)


def _get() -> tuple[int, ...] | None:
    libc, (_set_call, get_call) = _calls()
    if libc is None:
        return None
    data = ctypes.create_string_buffer(_ATTR.size)
    if libc.syscall(get_call, 0, data, _ATTR.size, 0) != 0:
        log.debug("sched_getattr refused: %s", os.strerror(ctypes.get_errno()))
        return None
    return tuple(_ATTR.unpack(data.raw))


def _calls() -> tuple[ctypes.CDLL | None, tuple[int, int]]:
    global _libc, _no_libc
    calls = _CALLS.get(platform.machine())
    if not sys.platform.startswith("linux") or calls is None or _POINTER_BYTES != 8 or _no_libc:
        return None, (0, 0)
    if _libc is None:
        try:  # a static build may not open itself, a C library may not export syscall
            libc = ctypes.CDLL(None, use_errno=True)
            libc.syscall  # noqa: B018 (looked up: AttributeError when missing)
        except (OSError, AttributeError) as error:
            log.debug("no C library's syscall to call: %s", error)
            _no_libc = True
            return None, (0, 0)
        _libc = libc
    return _libc, calls

"""A seeded generator of pickle streams that exercise how CPython's unpicklers resolve names:
GLOBAL, STACK_GLOBAL with literal or memoized operands, INST, OBJ, NEWOBJ, NEWOBJ_EX, REDUCE,
BUILD, EXT codes, protocols 0–5 (declared or not), framing, MEMOIZE/BINPUT/BINGET, dotted
names, Python 2 names (fix_imports), streams that break after their payload, stacked streams
and unusual first opcodes.

Names come from three pools: DANGEROUS (must be reported at or above the default gate),
FOREIGN (names no allowlist holds: must be reported) and BENIGN (no claim; they are what
ordinary models reference, so the streams look like real ones)."""

from __future__ import annotations

import pickle
import random
import struct

DANGEROUS: tuple[tuple[str, str], ...] = (
    ("os", "system"),
    ("posix", "system"),
    ("nt", "system"),
    ("subprocess", "Popen"),
    ("subprocess", "check_output"),
    ("builtins", "eval"),
    ("builtins", "exec"),
    ("builtins", "getattr"),
    ("builtins", "__import__"),
    ("builtins", "open"),
    ("__builtin__", "eval"),
    ("__builtin__", "getattr"),
    ("__builtin__", "apply"),
    ("pty", "spawn"),
    ("runpy", "_run_code"),
    ("importlib", "import_module"),
    ("pickle", "loads"),
    ("cPickle", "loads"),
    ("marshal", "loads"),
    ("shutil", "rmtree"),
    ("socket", "create_connection"),
    ("webbrowser", "open"),
    ("code", "interact"),
    ("types", "CodeType"),
    ("types", "FunctionType"),
    ("operator", "attrgetter"),
    ("functools", "partial.func"),
    ("pdb", "run"),
    ("timeit", "timeit"),
    # dotted names that start in packages models are made of and walk to something else
    ("numpy", "testing._private.utils.os.system"),
    ("numpy", "f2py.os.system"),
    ("torch", "serialization.os.system"),
    ("torch._utils", "_rebuild_tensor_v2.__globals__"),
    ("collections", "OrderedDict.__init__.__globals__"),
    ("sklearn.utils", "_joblib.os.system"),
    ("numpy.core.multiarray", "_reconstruct.__globals__"),
    ("torch", "load"),
    ("numpy", "load"),
    ("pandas", "read_pickle"),
    ("joblib", "load"),
)
BENIGN: tuple[tuple[str, str], ...] = (
    ("collections", "OrderedDict"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch", "FloatStorage"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("builtins", "set"),
    ("__builtin__", "set"),
    ("copy_reg", "_reconstructor"),
    ("copyreg", "_reconstructor"),
    ("builtins", "complex"),
    ("collections", "defaultdict"),
    ("builtins", "frozenset"),
    ("__builtin__", "object"),
)
FOREIGN_MODULES = ("oracle_pkg", "oracle_pkg.models", "oracle_pkg.nn.layers", "zz_oracle")
FOREIGN_NAMES = ("Thing", "build", "Net.forward", "make_thing", "_private", "Layer.Inner")

DANGEROUS_NAMES = frozenset(f"{m}.{n}" for m, n in DANGEROUS)
BENIGN_NAMES = frozenset(f"{m}.{n}" for m, n in BENIGN)


class _Writer:
    """One stream under construction: opcodes as separate chunks (so frames can be cut at
    opcode boundaries), the memo as the loader will hold it, and the protocol in force."""

    def __init__(self, rng: random.Random, proto: int) -> None:
        self.rng = rng
        self.proto = proto
        self.ops: list[bytes] = []
        self.memo_strings: dict[int, str] = {}  # memo index -> the str stored there
        self.memo_other: set[int] = set()  # memo indices holding anything else

    def op(self, data: bytes) -> None:
        self.ops.append(data)

    # -- values ---------------------------------------------------------------------------
    def string(self, text: str) -> None:
        raw = text.encode()
        choice = self.rng.random()
        if self.proto >= 4 and choice < 0.5:
            self.op(pickle.SHORT_BINUNICODE + bytes([len(raw)]) + raw)
        elif self.proto >= 1 and choice < 0.8:
            self.op(pickle.BINUNICODE + struct.pack("<I", len(raw)) + raw)
        else:
            self.op(pickle.UNICODE + raw + b"\n")

    def memoize_top(self, text: str | None = None) -> None:
        rng = self.rng
        size = len(self.memo_strings) + len(self.memo_other)  # MEMOIZE stores at len(memo)
        if self.proto >= 4 and rng.random() < 0.5:
            index = size
            self.op(pickle.MEMOIZE)
        else:
            index = rng.choice((size, rng.randrange(0, 300), rng.randrange(0, 70_000)))
            if index < 256 and rng.random() < 0.7:
                self.op(pickle.BINPUT + bytes([index]))
            elif rng.random() < 0.5:
                self.op(pickle.LONG_BINPUT + struct.pack("<I", index))
            else:
                self.op(pickle.PUT + str(index).encode() + b"\n")
        if text is None:
            self.memo_strings.pop(index, None)
            self.memo_other.add(index)
        else:
            self.memo_other.discard(index)
            self.memo_strings[index] = text

    def get(self, index: int) -> None:
        rng = self.rng
        if index < 256 and rng.random() < 0.7:
            self.op(pickle.BINGET + bytes([index]))
        elif rng.random() < 0.5:
            self.op(pickle.LONG_BINGET + struct.pack("<I", index))
        else:
            self.op(pickle.GET + str(index).encode() + b"\n")

    def literal(self, depth: int = 0) -> None:
        rng = self.rng
        kind = rng.randrange(7 if depth < 2 else 4)
        if kind == 0:
            self.op(pickle.NONE)
        elif kind == 1:
            self.op(
                pickle.BININT1 + bytes([rng.randrange(256)])
                if self.proto >= 1
                else pickle.INT + str(rng.randrange(1000)).encode() + b"\n"
            )
        elif kind == 2:
            self.string(rng.choice(("echo bastion-marker", "weight", "x", "")))
        elif kind == 3:
            self.op(pickle.EMPTY_DICT if self.proto >= 1 else pickle.MARK + pickle.DICT)
        elif kind == 4:
            self.tuple_of(rng.randrange(3), depth + 1)
        elif kind == 5:
            self.op(pickle.EMPTY_LIST if self.proto >= 1 else pickle.MARK + pickle.LIST)
            self.op(pickle.MARK)
            for _ in range(rng.randrange(3)):
                self.value(depth + 1)
            self.op(pickle.APPENDS)
        else:
            self.op(pickle.EMPTY_DICT if self.proto >= 1 else pickle.MARK + pickle.DICT)
            self.op(pickle.MARK)
            for _ in range(rng.randrange(3)):
                self.string(rng.choice(("a", "b", "state")))
                self.value(depth + 1)
            self.op(pickle.SETITEMS)

    def tuple_of(self, count: int, depth: int) -> None:
        if self.proto >= 2 and count <= 3 and self.rng.random() < 0.6:
            for _ in range(count):
                self.value(depth)
            self.op((pickle.EMPTY_TUPLE, pickle.TUPLE1, pickle.TUPLE2, pickle.TUPLE3)[count])
            return
        self.op(pickle.MARK)
        for _ in range(count):
            self.value(depth)
        self.op(pickle.TUPLE)

    def value(self, depth: int = 0) -> None:
        """Push exactly one value; below depth 3, possibly one that names a global."""
        rng = self.rng
        if depth < 3 and rng.random() < 0.35:
            self.use_global(depth + 1)
        else:
            self.literal(depth)
        if rng.random() < 0.2:
            self.memoize_top()

    # -- globals --------------------------------------------------------------------------
    def pick_name(self) -> tuple[str, str]:
        rng = self.rng
        pool = rng.random()
        if pool < 0.4:
            return rng.choice(DANGEROUS)
        if pool < 0.7:
            return rng.choice(BENIGN)
        return rng.choice(FOREIGN_MODULES), rng.choice(FOREIGN_NAMES)

    def global_ref(self) -> None:
        rng = self.rng
        module, name = self.pick_name()
        if rng.random() < 0.55:
            self.stack_global(module, name)
        else:
            self.op(pickle.GLOBAL + module.encode() + b"\n" + name.encode() + b"\n")
        if rng.random() < 0.3:
            self.memoize_top()

    def stack_global(self, module: str, name: str) -> None:
        for text in (module, name):
            held = [i for i, s in self.memo_strings.items() if s == text]
            if held and self.rng.random() < 0.6:
                self.get(self.rng.choice(held))
            else:
                self.string(text)
                if self.rng.random() < 0.4:
                    self.memoize_top(text)
        self.op(pickle.STACK_GLOBAL)

    def use_global(self, depth: int) -> None:
        """Push one value made from a global, used the ways the unpickler can use one."""
        rng = self.rng
        how = rng.randrange(8)
        if how == 0:  # referenced only
            self.global_ref()
        elif how == 1:  # called
            self.global_ref()
            self.tuple_of(rng.randrange(3), depth)
            self.op(pickle.REDUCE)
        elif how == 2:  # instantiated
            self.global_ref()
            self.tuple_of(rng.randrange(2), depth)
            self.op(pickle.NEWOBJ)
        elif how == 3:
            self.global_ref()
            self.tuple_of(rng.randrange(2), depth)
            self.op(pickle.EMPTY_DICT)
            self.op(pickle.NEWOBJ_EX)
        elif how == 4:  # INST: text-mode class and arguments
            module, name = self.pick_name()
            self.op(pickle.MARK)
            for _ in range(rng.randrange(2)):
                self.literal(depth + 1)
            self.op(pickle.INST + module.encode() + b"\n" + name.encode() + b"\n")
        elif how == 5:  # OBJ
            self.op(pickle.MARK)
            self.global_ref()
            for _ in range(rng.randrange(2)):
                self.literal(depth + 1)
            self.op(pickle.OBJ)
        elif how == 6:  # instantiated then restored
            self.global_ref()
            self.tuple_of(0, depth)
            self.op(pickle.REDUCE)
            self.literal(depth + 1)
            self.op(pickle.BUILD)
        else:  # a global stored in a container and also kept in the memo
            self.op(pickle.EMPTY_LIST if self.proto >= 1 else pickle.MARK + pickle.LIST)
            self.global_ref()
            self.op(pickle.APPEND)


_STARTS = (
    b"",
    pickle.MARK + pickle.POP_MARK,
    pickle.NONE + pickle.POP,
    pickle.EMPTY_TUPLE + pickle.POP,
    pickle.BININT1 + b"\x01" + pickle.POP,
    pickle.PROTO + b"\x02",
    pickle.NEWTRUE + pickle.POP,
    pickle.MARK + pickle.EMPTY_LIST + pickle.POP + pickle.POP_MARK,
)
_FAULTS = (
    b"\xff",
    pickle.REDUCE,
    pickle.POP + pickle.POP + pickle.POP,
    b"",
    pickle.EXT1 + b"\x07",
    pickle.EXT2 + b"\x34\x12",
    pickle.EXT4 + b"\x01\x00\x00\x01",
    pickle.BINGET + b"\xfe",
    pickle.PERSID + b"x\n",
    pickle.STACK_GLOBAL,
    pickle.GLOBAL + b"no_newline",
)


def generate_stream(rng: random.Random) -> bytes:
    """One pickle stream (possibly faulty after its payload)."""
    proto = rng.choice((0, 1, 2, 3, 4, 5, 5, 4))
    writer = _Writer(rng, proto)
    declared = rng.random() < 0.85
    head = b""
    if declared and proto >= 2:
        head = pickle.PROTO + bytes([proto])
    elif rng.random() < 0.3:
        head = rng.choice(_STARTS)
    for _ in range(rng.randrange(1, 4)):
        writer.value()
        writer.op(pickle.POP)
    writer.value()
    if rng.random() < 0.12:
        writer.op(rng.choice(_FAULTS))
        if rng.random() < 0.5:
            writer.value()
    writer.op(pickle.STOP)
    if proto >= 4 and rng.random() < 0.4:
        return head + _framed(writer.ops, rng)
    return head + b"".join(writer.ops)


def _framed(ops: list[bytes], rng: random.Random) -> bytes:
    out = []
    i = 0
    while i < len(ops):
        n = rng.randrange(1, 8)
        body = b"".join(ops[i : i + n])
        out.append(pickle.FRAME + struct.pack("<Q", len(body)) + body)
        i += n
    return b"".join(out)


def generate(seed: int) -> bytes:
    """One test file: a stream, sometimes followed by another (stacked pickles), sometimes
    truncated."""
    rng = random.Random(seed)
    data = generate_stream(rng)
    if rng.random() < 0.08:
        data += generate_stream(rng)
    if rng.random() < 0.04:
        data = data[: rng.randrange(1, len(data))]
    return data

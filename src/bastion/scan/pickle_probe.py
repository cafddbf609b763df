"""Would `pickle.load` read these bytes as a pickle? Decided the way CPython's `_pickle` reads:
an opcode walk that frames each argument as the unpickler does (text lines up to a newline,
length-prefixed and fixed-size binary fields) without validating what `_pickle` itself parses
leniently (`I0x10` is an int to `_pickle`, an error to `pickletools`).

A stream is a pickle when its first opcode is one the unpickler can start with (empirically: the
opcodes that need nothing on the stack or in the memo) and the walk reaches STOP, or stays valid
for as far as the probe may read, or reaches a call of a resolved global before it breaks (the
unpickler runs that call before it notices the damage)."""

from __future__ import annotations

from collections.abc import Callable
from typing import BinaryIO

# Opcodes `_pickle` accepts as the first one of a stream (tests check this set against CPython):
# everything that pushes without popping, plus EXT1/2/4 (valid when the loading process has
# registered extension codes with copyreg).
START_OPCODES = frozenset(
    b"()BCFGIJKLMNPSTUVX]c}\x80\x82\x83\x84\x88\x89\x8a\x8b\x8c\x8d\x8e\x8f\x95\x96"
)

NONE, LINE, TWO_LINES = 0, -1, -2
LEN1, LEN4, LEN4_SIGNED, LEN8 = 101, 104, 105, 108
# opcode -> argument framing (pickletools' `arg` of each opcode; a test checks the table)
ARGUMENTS: dict[int, int] = {
    **dict.fromkeys(
        b"(.012NQRabdelostu})]\x81\x85\x86\x87\x88\x89\x8f\x90\x91\x92\x93\x94\x97\x98", NONE
    ),
    **dict.fromkeys(b"FILPSVgp", LINE),
    **dict.fromkeys(b"ci", TWO_LINES),
    **dict.fromkeys(b"Khq\x80\x82", 1),
    **dict.fromkeys(b"M\x83", 2),
    **dict.fromkeys(b"Jjr\x84", 4),
    **dict.fromkeys(b"G\x95", 8),
    **dict.fromkeys(b"UC\x8a\x8c", LEN1),
    **dict.fromkeys(b"XB", LEN4),
    **dict.fromkeys(b"T\x8b", LEN4_SIGNED),
    **dict.fromkeys(b"\x8d\x8e\x96", LEN8),
}
_NUMBER = frozenset(b" \t\r\x0b\x0c+-_0123456789abcdefABCDEFxXoOL")
_FLOAT = frozenset(b"+-_.0123456789eEinfatyINFATY")
_NAME = frozenset(
    b"_.0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ" + bytes(range(0x80, 0x100))
)
_ASCII = frozenset(range(0x80))
# bytes a text argument may hold (what `_pickle` could parse there), by opcode
_LINE_BYTES: dict[int, frozenset[int]] = {
    ord("I"): _NUMBER,
    ord("L"): _NUMBER,
    ord("g"): _NUMBER,
    ord("p"): _NUMBER,
    ord("F"): _FLOAT,
    ord("P"): _ASCII,
    ord("c"): _NAME,
    ord("i"): _NAME,
}
RESOLVING = frozenset(b"ci\x93\x82\x83\x84")  # import a global (persistent ids name data)
CALLING = frozenset(b"Rbio\x81\x92")  # call or instantiate what is on the stack
STOP = ord(".")
MAX_OPS = 20_000
READ_BUDGET = 1 << 20  # bytes the probe may read beyond the head
_WINDOW = 1 << 16


class _Exhausted(Exception):
    """The probe may not read further."""


class _Bytes:
    """The stream's bytes at any position: from the head, then (with an opener) in windows,
    within a read budget."""

    def __init__(self, head: bytes, size: int, opener: Callable[[], BinaryIO] | None) -> None:
        self.size = size
        self._data = head
        self._start = 0
        self._opener = opener
        self._handle: BinaryIO | None = None
        self._budget = READ_BUDGET

    def at(self, pos: int, count: int, partial: bool = False) -> bytes:
        """Up to `count` bytes at `pos` (fewer only at the end of the stream, or, when
        `partial`, at the end of what is loaded)."""
        end = min(pos + count, self.size)
        loaded_end = self._start + len(self._data)
        if self._start <= pos and (end <= loaded_end or (partial and pos < loaded_end)):
            return self._data[pos - self._start : min(end, loaded_end) - self._start]
        if self._opener is None or self._budget <= 0:
            raise _Exhausted
        if self._handle is None:
            self._handle = self._opener()
        want = min(max(end - pos, _WINDOW), self._budget)
        self._handle.seek(pos)
        self._data = self._handle.read(want)
        self._start = pos
        self._budget -= want
        if len(self._data) < min(end - pos, want):
            self.size = pos + len(self._data)  # the stream is shorter than it said
        return self._data[: end - pos]

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()


def _line_end(data: _Bytes, pos: int, allowed: frozenset[int] | None) -> int | None:
    """The position after the newline ending the text argument at `pos`, or None when the
    argument cannot be what `_pickle` parses there (or the stream ends first)."""
    while True:
        chunk = data.at(pos, 4096, partial=True)
        if not chunk:
            return None
        newline = chunk.find(b"\n")
        text = chunk if newline < 0 else chunk[:newline]
        if allowed is not None and not allowed.issuperset(text):
            return None
        if newline >= 0:
            return pos + newline + 1
        pos += len(chunk)


def _name_cut_at_eof(data: _Bytes, pos: int, allowed: frozenset[int] | None) -> bool:
    """A GLOBAL/INST whose lines the end of the stream cuts: the C unpickler refuses it, but the
    pure-Python one (joblib.load's) takes `readline()[:-1]` of what is left (the last byte
    dropped) and imports the module when that leaves a name."""
    rest = data.at(pos, min(data.size - pos, 4096), partial=True)
    if pos + len(rest) != data.size:
        return False
    lines = rest.split(b"\n")
    if len(lines) > 2 or (allowed is not None and not allowed.issuperset(b"".join(lines))):
        return False
    module = lines[0] if len(lines) == 2 else lines[0][:-1]
    return bool(module)


def looks_like_pickle(head: bytes, size: int, opener: Callable[[], BinaryIO] | None = None) -> bool:
    if not head or head[0] not in START_OPCODES:
        return False
    data = _Bytes(head, size, opener)
    try:
        return _walk(data)
    except _Exhausted:
        return True  # valid for as far as we may look: fail closed
    finally:
        data.close()


# What each opcode does to _pickle's stack: (items it needs above the last mark, items it
# leaves in their place). Opcodes in _TO_MARK pop everything down to the last mark instead.
_EFFECT: dict[int, tuple[int, int]] = {
    **dict.fromkeys(
        b"FIJKLMNPSTUVXGBCc}])\x82\x83\x84\x88\x89\x8a\x8b\x8c\x8d\x8e\x8f\x96\x97ghj", (0, 1)
    ),
    **dict.fromkeys(b"\x80\x95", (0, 0)),
    **dict.fromkeys(b"Qpqr\x94\x85\x98", (1, 1)),
    **dict.fromkeys(b"Rab\x81\x86\x93", (2, 1)),
    **dict.fromkeys(b"s\x87\x92", (3, 1)),
    ord("2"): (1, 2),
    ord("."): (1, 0),
}
# pop-to-mark opcodes: (items needed below the mark, items pushed after)
_TO_MARK: dict[int, tuple[int, int]] = {
    **dict.fromkeys(b"dlti\x91", (0, 1)),
    **dict.fromkeys(b"eu\x90", (1, 0)),
    ord("1"): (0, 0),
    ord("o"): (0, 1),
}
_PUTS, _GETS = frozenset(b"pqr"), frozenset(b"ghj")


class _Stack:
    """_pickle's stack as counts: items above the last mark, and the counts the marks hid;
    the memo as the set of keys stored so far. `apply` is False where _pickle would raise."""

    def __init__(self) -> None:
        self.above = 0
        self.marks: list[int] = []
        self.memo: set[int] = set()

    def apply(self, opcode: int, key: int | None) -> bool:
        if opcode == ord("("):
            self.marks.append(self.above)
            self.above = 0
            return True
        if opcode == ord("0"):  # POP takes an item, or the mark when none is above it
            if self.above:
                self.above -= 1
            elif self.marks:
                self.above = self.marks.pop()
            else:
                return False
            return True
        if opcode in _TO_MARK:
            below, pushed = _TO_MARK[opcode]
            if not self.marks or self.marks[-1] < below or (opcode == ord("o") and not self.above):
                return False
            self.above = self.marks.pop() + pushed
            return True
        needed, left = _EFFECT[opcode]
        if self.above < needed:
            return False
        if opcode in _GETS and key not in self.memo:
            return False
        if opcode in _PUTS and key is not None:
            self.memo.add(key)
        elif opcode == 0x94:
            self.memo.add(len(self.memo))
        self.above += left - needed
        return True


def _key(opcode: int, field: bytes) -> int | None:
    """The memo key of a PUT/GET argument (text or binary), None when it does not parse."""
    if opcode in b"pg":
        try:
            return int(field.strip() or b"x", 0)
        except ValueError:
            return None
    return int.from_bytes(field, "little")


def _walk(data: _Bytes) -> bool:
    """Walk the opcodes as _pickle would execute them (framing, stack, marks, memo). On a break,
    the stream is a pickle if the unpickler called a resolved global before it (it ran), or
    imported one (importing runs a module's top level: a module shipped beside the file) unless
    the bytes look like text that merely starts like a GLOBAL ("certifi\nnumpy\n...")."""
    walker = _Walker()
    decided = _walk_opcodes(data, walker)
    if decided is not None:
        return decided
    return walker.called or (walker.resolved and walker.binary_evidence(data))


class _Walker:
    """What the walk saw of resolutions and calls, for deciding a stream that breaks."""

    def __init__(self) -> None:
        self.resolved = self.called = False
        self.before_resolution = 0  # valid opcodes walked before the first resolution
        self.after_resolution = 0  # and after it
        self.cut_at_eof = False  # the file ends inside the name a GLOBAL imports
        self.names: list[tuple[bytes, bytes]] = []  # (module, name) of text GLOBAL/INST lines

    def binary_evidence(self, data: _Bytes) -> bool:
        """Text that happens to start like a GLOBAL ("certifi\nnumpy\n") has no opcodes around
        it; a damaged pickle does, or does not start with a letter."""
        return (
            data.at(0, 1) not in _PRINTABLE
            or self.before_resolution >= 2
            or self.after_resolution >= 2
            or self.cut_at_eof
            or self._dangerous_name()
        )

    def _dangerous_name(self) -> bool:
        """Text does not name `builtins.eval` or `pty.spawn`: a stream that does is a pickle
        whatever it looks like (fickling's `cbuiltins\neval\nS"..."` samples)."""
        if not self.names:
            return False
        from bastion.scan.pickle_globals import classify  # only for streams that broke

        return any(
            classify(module.decode("latin-1"), name.decode("latin-1")).category is not None
            for module, name in self.names
        )


_TEXT_START = frozenset(bytes([b]) for b in b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_PRINTABLE = frozenset(bytes([b]) for b in [*range(32, 127), 9, 10, 13])


def _walk_opcodes(data: _Bytes, walker: _Walker) -> bool | None:
    """True/False when the walk decides; None when the stream breaks (the caller decides)."""
    pos = 0
    stack = _Stack()
    for count in range(MAX_OPS):
        if pos >= data.size:
            return None
        byte = data.at(pos, 1)
        if not byte:  # the stream is shorter than it claimed
            return None
        opcode = byte[0]
        shape = ARGUMENTS.get(opcode)
        if shape is None:
            return None
        pos += 1
        field = b""
        if shape in (LINE, TWO_LINES):
            allowed = _LINE_BYTES.get(opcode)
            if shape == TWO_LINES and data.at(0, 1) not in _PRINTABLE:
                allowed = None  # _pickle hands find_class any text line; only prose is kept out
            if opcode == ord("S") and data.at(pos, 1) not in (b"'", b'"'):
                return None
            end = _line_end(data, pos, allowed)
            if end is not None and opcode in b"pg":
                field = data.at(pos, min(end - pos - 1, 32))
            if end is not None and shape == TWO_LINES:
                first_end = end
                end = _line_end(data, end, allowed)
                if end is not None and len(walker.names) < 8:
                    walker.names.append(
                        (
                            data.at(pos, min(first_end - pos - 1, 256)),
                            data.at(first_end, min(end - first_end - 1, 256)),
                        )
                    )
            if end is None:
                if shape == TWO_LINES and _name_cut_at_eof(data, pos, allowed):
                    walker.resolved = walker.cut_at_eof = True  # joblib's unpickler imports it
                return None
            pos = end
        elif NONE < shape < LEN1:
            field = data.at(pos, shape)
            if len(field) < shape or (opcode == 0x80 and field[0] > 5):
                return None
            pos += shape
        elif shape >= LEN1:
            width = shape - 100 if shape != LEN4_SIGNED else 4  # LEN1=101 -> 1 byte, LEN8 -> 8
            prefix = data.at(pos, width)
            if len(prefix) < width:
                return None
            length = int.from_bytes(prefix, "little", signed=shape == LEN4_SIGNED)
            pos += width + length
            if length < 0 or pos > data.size:
                return None
        key = _key(opcode, field) if opcode in _PUTS or opcode in _GETS else None
        if not stack.apply(opcode, key):
            return None
        if opcode == STOP:
            # a lone value and STOP is also what a length byte skipping text can look like:
            # such a stream counts when it is the whole file (it cannot do anything anyway)
            return count >= 2 or walker.resolved or pos >= data.size or data.at(0, 1) == b"\x80"
        if walker.resolved:
            walker.after_resolution += 1
        elif opcode not in RESOLVING:
            walker.before_resolution += 1
        if opcode in RESOLVING:
            walker.resolved = True
        if opcode in CALLING and walker.resolved:
            walker.called = True
    return True  # valid for MAX_OPS opcodes

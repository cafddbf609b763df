"""Static (non-emulating) views of a pickle stream: a cheap plausibility check used by
identification, and opcode offsets of global references used to point findings at bytes."""

from __future__ import annotations

import io
import pickletools

_STRING_OPS = frozenset(
    {
        "SHORT_BINUNICODE",
        "BINUNICODE",
        "BINUNICODE8",
        "UNICODE",
        "SHORT_BINSTRING",
        "BINSTRING",
        "STRING",
    }
)
_RESOLVING_OPS = frozenset({"GLOBAL", "STACK_GLOBAL", "INST", "EXT1", "EXT2", "EXT4"})


_START_OPCODES = frozenset(b"(]})cILSVNJKMTUXFGPCB\x80\x8c\x8d\x8e\x95\x96\x8a\x8b\x88\x89\x8f")


def plausible_pickle_prefix(head: bytes, need: int = 3) -> bool:
    """True when `head` is a well-formed opcode sequence: it starts with an opcode that can open
    a stream and parses up to STOP or to (near) the end of the buffer. Text rarely does."""
    if not head or head[0] not in _START_OPCODES:
        return False
    count = 0
    reader = io.BytesIO(head)
    try:
        for opcode, _arg, _pos in pickletools.genops(reader):
            count += 1
            if opcode.name == "STOP":
                return True
    except Exception:
        # an opcode cut off by the end of the buffer is fine; a bad opcode earlier is not
        return count >= need and reader.tell() >= len(head) - 16 and len(head) >= 64
    return count >= need


def global_offsets(data: bytes, max_ops: int = 2_000_000) -> list[tuple[int, str, str | None]]:
    """(byte offset, opcode name, 'module name' when static) of each opcode that resolves a
    global, in stream order. Stops quietly at the first malformed opcode."""
    out: list[tuple[int, str, str | None]] = []
    strings: list[str] = []
    try:
        for index, (opcode, arg, pos) in enumerate(pickletools.genops(io.BytesIO(data))):
            if index >= max_ops:
                break
            name = opcode.name
            if name in _STRING_OPS and isinstance(arg, (str, bytes)):
                strings.append(arg if isinstance(arg, str) else arg.decode("latin-1"))
                del strings[:-2]
            if name in _RESOLVING_OPS:
                text = None
                if name in ("GLOBAL", "INST") and isinstance(arg, str):
                    text = arg
                elif name == "STACK_GLOBAL" and len(strings) == 2:
                    text = " ".join(strings)
                out.append((pos or 0, name, text))
            if name == "STOP":
                break
    except Exception:
        pass
    return out

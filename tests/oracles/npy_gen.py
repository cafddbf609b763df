"""A seeded generator of .npy files whose headers describe dtypes every way NumPy accepts
(or nearly accepts): type strings with any byte order and size, 'object', structured fields
(nested, titled, with subarray shapes, padding fields), subarray tuples; header versions 1.0,
2.0 and 3.0, keys in any order, odd spacing and padding. The data after every header is a
pickle calling ORACLE_MODULE.g<seed>, which is what NumPy unpickles when the dtype holds
objects."""

from __future__ import annotations

import pickle
import random
import struct
from typing import Any

ORACLE_MODULE = "oracle_npy"
_BASES = (
    "O",
    "|O",
    "<O",
    ">O",
    "=O",
    "O8",
    "|O8",
    "O4",
    "object",
    "object_",
    "<f4",
    "|u1",
    "<i8",
    ">f8",
    "|b1",
    "S5",
    "U3",
    "|V8",
    "<M8[ns]",
    "<c16",
    "f",
    "i",
    "?",
    "Ox",
    "O ",
    " O",
    "<U0",
    "|S0",
)


def _descr(rng: random.Random, depth: int) -> Any:
    kind = rng.random()
    if depth >= 3 or kind < 0.45:
        return rng.choice(_BASES)
    if kind < 0.6:
        return (_descr(rng, depth + 1), rng.choice(((2,), (1, 3), (), 0, 2)))
    if kind < 0.65:
        return {"names": ["a"], "formats": [_descr(rng, depth + 1)]}
    fields: list[Any] = []
    for i in range(rng.randrange(1, 4)):
        name: Any = rng.choice((f"f{i}", "", ("title", f"t{i}"), f"n{i}"))
        field = [name, _descr(rng, depth + 1)]
        if rng.random() < 0.2:
            field.append(rng.choice(((2,), (1,), ())))
        fields.append(tuple(field))
    return fields


def payload(seed: int) -> bytes:
    call = f"c{ORACLE_MODULE}\ng{seed}\n".encode() + pickle.EMPTY_TUPLE + pickle.REDUCE
    return pickle.PROTO + b"\x02" + call + pickle.STOP


def generate(seed: int) -> bytes:
    rng = random.Random(seed)
    items = [
        ("descr", repr(_descr(rng, 0))),
        ("fortran_order", rng.choice(("False", "True"))),
        ("shape", rng.choice(("(2,)", "()", "(1, 2)", "(0,)", "(3,)"))),
    ]
    rng.shuffle(items)
    sep = rng.choice((": ", ":", " : "))
    body = "{" + rng.choice((", ", ",", " , ")).join(f"'{k}'{sep}{v}" for k, v in items)
    body += rng.choice(("}", ", }", ",}"))
    version = rng.choice((1, 1, 2, 3))
    length_size = 2 if version == 1 else 4
    header = body.encode("latin1" if version < 3 else "utf8")
    pad = (-(10 + length_size - 2 + len(header) + 1)) % 64 if rng.random() < 0.8 else 0
    header += b" " * pad + b"\n"
    length = struct.pack("<H" if length_size == 2 else "<I", len(header))
    return b"\x93NUMPY" + bytes([version, 0]) + length + header + payload(seed)

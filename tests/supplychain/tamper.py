"""Generated tamper cases for a signed folder: each returns a description after changing the
copy in place. Used by the tests (a sample) and bench/signing.py (the full set)."""

from __future__ import annotations

import base64
import json
import os
import random
from collections.abc import Callable
from pathlib import Path

Tamper = Callable[[Path, Path, random.Random], str]  # (model folder, signature, rng) -> what


def _files(model: Path, signature: Path) -> list[Path]:
    return sorted(p for p in model.rglob("*") if p.is_file() and p != signature)


def flip_byte(model: Path, signature: Path, rng: random.Random) -> str:
    target = rng.choice([p for p in _files(model, signature) if p.stat().st_size])
    data = bytearray(target.read_bytes())
    pos = rng.randrange(len(data))
    data[pos] ^= 1 << rng.randrange(8)
    target.write_bytes(bytes(data))
    return f"bit flip in {target.name} at {pos}"


def truncate(model: Path, signature: Path, rng: random.Random) -> str:
    target = rng.choice([p for p in _files(model, signature) if p.stat().st_size])
    size = target.stat().st_size
    cut = rng.randrange(size)
    with target.open("r+b") as handle:
        handle.truncate(cut)
    return f"{target.name} truncated to {cut}"


def append(model: Path, signature: Path, rng: random.Random) -> str:
    target = rng.choice(_files(model, signature))
    with target.open("ab") as handle:
        handle.write(rng.randbytes(rng.randint(1, 64)))
    return f"bytes appended to {target.name}"


def add_file(model: Path, signature: Path, rng: random.Random) -> str:
    sub = model / rng.choice(["", "sub", "extra"])
    sub.mkdir(exist_ok=True)
    name = f"added_{rng.randrange(10**6)}.bin"
    (sub / name).write_bytes(rng.randbytes(rng.randint(0, 32)))
    return f"added {name}"


def remove_file(model: Path, signature: Path, rng: random.Random) -> str:
    target = rng.choice(_files(model, signature))
    target.unlink()
    return f"removed {target.name}"


def rename_file(model: Path, signature: Path, rng: random.Random) -> str:
    target = rng.choice(_files(model, signature))
    target.rename(target.with_name(target.name + ".renamed"))
    return f"renamed {target.name}"


def swap_contents(model: Path, signature: Path, rng: random.Random) -> str:
    files = _files(model, signature)
    a, b = rng.sample(files, 2)
    da, db = a.read_bytes(), b.read_bytes()
    if da == db:
        return flip_byte(model, signature, rng)
    a.write_bytes(db)
    b.write_bytes(da)
    return f"swapped {a.name} and {b.name}"


def symlink_swap(model: Path, signature: Path, rng: random.Random) -> str:
    target = rng.choice(_files(model, signature))
    outside = model.parent / f"outside_{rng.randrange(10**6)}"
    outside.write_bytes(target.read_bytes())
    target.unlink()
    os.symlink(outside, target)
    return f"{target.name} replaced by a symlink to an identical copy outside the folder"


def _edit_statement(signature: Path, edit: Callable[[dict], None]) -> None:  # type: ignore[type-arg]
    bundle = json.loads(signature.read_text())
    envelope = bundle["dsseEnvelope"]
    statement = json.loads(base64.b64decode(envelope["payload"]))
    edit(statement)
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    signature.write_text(json.dumps(bundle))


def manifest_digest(model: Path, signature: Path, rng: random.Random) -> str:
    def edit(statement: dict) -> None:  # type: ignore[type-arg]
        resource = rng.choice(statement["predicate"]["resources"])
        digest = resource["digest"]
        resource["digest"] = digest[:-1] + ("0" if digest[-1] != "0" else "1")

    _edit_statement(signature, edit)
    return "a digest edited in the signed manifest"


def manifest_drop(model: Path, signature: Path, rng: random.Random) -> str:
    def edit(statement: dict) -> None:  # type: ignore[type-arg]
        resources = statement["predicate"]["resources"]
        resources.pop(rng.randrange(len(resources)))

    _edit_statement(signature, edit)
    return "a resource dropped from the signed manifest"


def envelope_signature(model: Path, signature: Path, rng: random.Random) -> str:
    bundle = json.loads(signature.read_text())
    sig = bytearray(base64.b64decode(bundle["dsseEnvelope"]["signatures"][0]["sig"]))
    sig[rng.randrange(len(sig))] ^= 0xFF
    bundle["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    signature.write_text(json.dumps(bundle))
    return "signature bytes edited"


def envelope_payload_type(model: Path, signature: Path, rng: random.Random) -> str:
    bundle = json.loads(signature.read_text())
    bundle["dsseEnvelope"]["payloadType"] = "application/json"
    signature.write_text(json.dumps(bundle))
    return "payload type edited"


def truncate_bundle(model: Path, signature: Path, rng: random.Random) -> str:
    text = signature.read_text()
    signature.write_text(text[: rng.randrange(1, len(text))])
    return "signature file truncated"


TAMPERS: dict[str, Tamper] = {
    "flip_byte": flip_byte,
    "truncate": truncate,
    "append": append,
    "add_file": add_file,
    "remove_file": remove_file,
    "rename_file": rename_file,
    "swap_contents": swap_contents,
    "symlink_swap": symlink_swap,
    "manifest_digest": manifest_digest,
    "manifest_drop": manifest_drop,
    "envelope_signature": envelope_signature,
    "envelope_payload_type": envelope_payload_type,
    "truncate_bundle": truncate_bundle,
}

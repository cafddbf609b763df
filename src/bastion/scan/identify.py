"""Identify a byte stream by its content (magic bytes and structure), never by name alone.
The extension is only a hint, used to report mismatches."""

from __future__ import annotations

import struct

PICKLE_FIRST_OPCODES = frozenset(b"(.0123FGIJKLMNPQRSTUVX]abcdeghijklmnopqrstu}\x80\x81\x82"
                                 b"\x83\x84\x85\x86\x87\x88\x89\x8a\x8b\x8c\x8d\x8e\x8f"
                                 b"\x90\x91\x92\x93\x94\x95\x96\x97\x98")

# What each extension is expected to contain; anything else is a mismatch.
EXPECTED_FORMATS: dict[str, frozenset[str]] = {
    ".pkl": frozenset({"pickle", "gzip", "bz2", "xz", "zlib", "lz4"}),
    ".pickle": frozenset({"pickle", "gzip", "bz2", "xz", "zlib", "lz4"}),
    ".joblib": frozenset({"pickle", "gzip", "bz2", "xz", "zlib", "lz4"}),
    ".dill": frozenset({"pickle"}),
    ".pt": frozenset({"zip", "pickle", "tar"}),
    ".pth": frozenset({"zip", "pickle", "tar"}),
    ".ckpt": frozenset({"zip", "pickle", "tar"}),
    ".bin": frozenset({"zip", "pickle", "tar", "unknown"}),
    ".npy": frozenset({"npy"}),
    ".npz": frozenset({"zip"}),
    ".safetensors": frozenset({"safetensors"}),
    ".onnx": frozenset({"onnx"}),
    ".keras": frozenset({"zip"}),
    ".h5": frozenset({"hdf5"}),
    ".hdf5": frozenset({"hdf5"}),
    ".gguf": frozenset({"gguf"}),
    ".pb": frozenset({"savedmodel", "protobuf"}),
    ".json": frozenset({"json"}),
    ".zip": frozenset({"zip"}),
    ".7z": frozenset({"7z"}),
    ".tar": frozenset({"tar", "zip", "pickle"}),
    ".gz": frozenset({"gzip"}),
    ".tgz": frozenset({"gzip"}),
    ".bz2": frozenset({"bz2"}),
    ".xz": frozenset({"xz"}),
    ".nemo": frozenset({"tar", "gzip"}),
    ".mar": frozenset({"zip"}),
}

# Names that promise a format which cannot execute code.
SAFE_FORMAT_EXTENSIONS = frozenset({".safetensors", ".onnx", ".gguf", ".json", ".npy", ".h5",
                                    ".hdf5"})
CODE_CAPABLE_FORMATS = frozenset({"pickle", "zip", "tar", "gzip", "bz2", "xz", "zlib", "lz4",
                                  "7z"})


def extension_of(name: str) -> str:
    lowered = name.lower()
    for double in (".pth.tar", ".tar.gz", ".tar.bz2", ".tar.xz"):
        if lowered.endswith(double):
            return "." + double.rsplit(".", 1)[-1]
    dot = lowered.rfind(".")
    return lowered[dot:] if dot > 0 else ""


def _looks_like_zlib(head: bytes) -> bool:
    """A 2-byte zlib header matches plenty of text ("x = 1" does), so the head must also
    start inflating cleanly."""
    if len(head) < 3 or head[0] & 0x0F != 8 or head[0] >> 4 > 7 or head[1] & 0x20:
        return False
    if (head[0] << 8 | head[1]) % 31:
        return False
    import zlib

    try:
        return bool(zlib.decompressobj().decompress(head, 64))
    except zlib.error:
        return False


def _looks_like_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 9:
        return False
    (length,) = struct.unpack("<Q", head[:8])
    return 2 <= length <= size - 8 and head[8:9] == b"{"


def _looks_like_onnx(head: bytes) -> bool:
    # ModelProto starts with ir_version (field 1, varint) almost always.
    return len(head) >= 4 and head[0] == 0x08 and head[1] < 0x80 and head[2] in (0x12, 0x1A,
                                                                              0x22, 0x2A, 0x3A,
                                                                              0x42)


def _looks_like_pickle(head: bytes) -> bool:
    if not head:
        return False
    if head[0] == 0x80:
        return len(head) >= 2 and head[1] <= 5
    if head[0] not in PICKLE_FIRST_OPCODES:
        return False
    # protocol 0/1: must walk a few valid opcodes; text files rarely do.
    from bastion.scan.pickle_static import plausible_pickle_prefix

    return plausible_pickle_prefix(head)


def identify(head: bytes, size: int, name: str = "") -> str:
    """Return a format name for the first bytes of a stream (give at least 512 bytes)."""
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06") or \
            head.startswith(b"PK\x07\x08"):
        return "zip"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"GGUF"):
        return "gguf"
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "hdf5"
    if head.startswith(b"7z\xbc\xaf\x27\x1c"):
        return "7z"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"BZh") and len(head) > 3 and head[3:4].isdigit():
        return "bz2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    if head.startswith(b"\x04\x22\x4d\x18"):
        return "lz4"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    if _looks_like_safetensors(head, size):
        return "safetensors"
    if head[:1] == b"\x80" and _looks_like_pickle(head):
        return "pickle"
    if _looks_like_zlib(head):
        return "zlib"
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped[:1] in (b"{", b"[") and name.lower().endswith(".json"):
        return "json"
    if stripped[:1] == b"{" and b'"' in stripped[:64]:
        return "json"
    if _looks_like_onnx(head) and not name.lower().endswith(".pb"):
        return "onnx"
    if head[:1] == b"\x08" and name.lower().endswith(".pb"):
        return "savedmodel"
    if _looks_like_pickle(head):
        return "pickle"
    return "unknown"

"""Identify a byte stream by its content, the way the loaders that would read it decide.

Loaders do not agree: torch.load calls anything starting with `PK\\x03\\x04` a zip and tries
`tarfile` before `pickle`; joblib picks a decompressor by a magic prefix; `pickle.load` accepts any
opcode the unpickler knows; protobuf readers accept fields in any order. `identify_all` returns
every interpretation some loader could take (the first one is the primary); the scan engine scans
them all. The extension is only a hint, used to report mismatches."""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from typing import BinaryIO

from bastion.scan.pickle_probe import looks_like_pickle

# What each extension is expected to contain; anything else is a mismatch.
_COMPRESSED = frozenset({"pickle", "gzip", "bz2", "xz", "lzma", "zlib", "lz4", "zstd"})
EXPECTED_FORMATS: dict[str, frozenset[str]] = {
    ".pkl": _COMPRESSED | {"zip"},  # torch.save writes a zip under any name
    ".pickle": _COMPRESSED | {"zip"},
    ".joblib": _COMPRESSED,
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
    ".pb": frozenset({"savedmodel", "keras_metadata", "tf_graphdef", "protobuf"}),
    ".pbtxt": frozenset({"savedmodel_text"}),
    ".json": frozenset({"json", "xgboost_json"}),
    ".ubj": frozenset({"xgboost_ubj"}),
    ".zip": frozenset({"zip"}),
    ".7z": frozenset({"7z"}),
    ".tar": frozenset({"tar", "zip", "pickle"}),
    ".gz": frozenset({"gzip", "zlib"}),  # joblib 0.9/0.10 wrote zlib streams as .gz
    ".tgz": frozenset({"gzip"}),
    ".bz2": frozenset({"bz2"}),
    ".xz": frozenset({"xz"}),
    ".lzma": frozenset({"lzma"}),
    ".z": frozenset({"zlib"}),
    ".lz4": frozenset({"lz4"}),
    ".zst": frozenset({"zstd"}),
    ".nemo": frozenset({"tar", "gzip"}),
    ".mar": frozenset({"zip"}),
}

# Names that promise a format which cannot execute code.
SAFE_FORMAT_EXTENSIONS = frozenset(
    {".safetensors", ".onnx", ".gguf", ".json", ".npy", ".h5", ".hdf5", ".ubj"}
)
CODE_CAPABLE_FORMATS = frozenset(
    {"pickle", "zip", "tar", "gzip", "bz2", "xz", "lzma", "zlib", "lz4", "zstd", "7z"}
)
# Interpretations of one protobuf message: scanning each is expected, not a polyglot.
PROTOBUF_FORMATS = frozenset({"onnx", "savedmodel", "keras_metadata", "tf_graphdef"})

# joblib's `_detect_compressor` (joblib/compressor.py): a prefix picks the decompressor.
JOBLIB_ZFILE_PREFIX = b"ZF"  # joblib < 0.10: "ZF", hex length padded to 19 chars, zlib data
JOBLIB_ZFILE_HEADER = 2 + 19
_LZMA_ALONE_PREFIX = b"\x5d\x00"  # joblib's _LZMA_PREFIX (FORMAT_ALONE)

Opener = Callable[[], BinaryIO]


def extension_of(name: str) -> str:
    lowered = name.lower()
    for double in (".pth.tar", ".tar.gz", ".tar.bz2", ".tar.xz"):
        if lowered.endswith(double):
            return "." + double.rsplit(".", 1)[-1]
    dot = lowered.rfind(".")
    return lowered[dot:] if dot > 0 else ""


def _looks_like_zlib(head: bytes) -> bool:
    """A 2-byte zlib header matches plenty of text ("x = 1" does), so the head must also
    inflate cleanly (joblib itself only looks at the first byte, 0x78)."""
    if len(head) < 3 or head[0] & 0x0F != 8 or head[0] >> 4 > 7 or head[1] & 0x20:
        return False
    if (head[0] << 8 | head[1]) % 31:
        return False
    import zlib

    try:
        zlib.decompressobj().decompress(head, 64)  # may yield nothing: empty stored blocks
    except zlib.error:
        return False
    return True


def _looks_like_joblib_zfile(head: bytes) -> bool:
    """joblib's pre-0.10 format: `load_compatibility` inflates whatever follows the header."""
    if not head.startswith(JOBLIB_ZFILE_PREFIX) or len(head) < JOBLIB_ZFILE_HEADER + 2:
        return False
    length = head[2:JOBLIB_ZFILE_HEADER].strip()
    return bool(re.fullmatch(rb"(0x)?[0-9a-fA-F]+L?", length))


def _looks_like_lzma_alone(head: bytes, size: int) -> bool:
    """A raw .lzma stream: properties byte 0x5d (lc=3 lp=0 pb=2, what every writer uses;
    joblib only checks `]\\x00`), a dictionary size and an uncompressed size (or -1)."""
    if len(head) < 13 or not head.startswith(_LZMA_ALONE_PREFIX):
        return False
    unpacked: int = struct.unpack("<Q", head[5:13])[0]
    return unpacked == 0xFFFFFFFFFFFFFFFF or unpacked < (1 << 48)


_TEXT_BYTES = bytes(range(32, 127)) + b"\t\r\n"


def _looks_like_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 9:
        return False
    (length,) = struct.unpack("<Q", head[:8])
    # the loader reads any length and then refuses a header past the file or its own limit:
    # such a file is a (malformed) safetensors file, for the scanner to report. Text that
    # happens to have "{" ninth (eight spaces, then a JSON object) is not: a real length
    # always holds bytes text does not
    return length >= 2 and head[8:9] == b"{" and bool(head[:8].translate(None, _TEXT_BYTES))


def _tar_number(field: bytes) -> int | None:
    """`tarfile.nti`: base-256 when the first byte is 0x80/0xff, else octal up to a NUL."""
    if field[:1] in (b"\x80", b"\xff"):
        value = int.from_bytes(field[1:], "big")
        return value - 256 ** (len(field) - 1) if field[0] == 0xFF else value
    text = field.split(b"\x00", 1)[0]
    try:
        return int(text.decode("ascii").strip() or "0", 8)
    except ValueError:
        return None


def looks_like_tar_header(head: bytes) -> bool:
    """What `tarfile.open(mode="r:")` accepts (torch.load's legacy path): a first 512-byte
    header that is not all zeros and whose checksum is right. No `ustar` magic is needed: old V7
    archives have none."""
    if len(head) < 512:
        return False
    block = head[:512]
    if block.count(0) == 512:
        return False
    stored = _tar_number(block[148:156])
    if stored is None:
        return False
    rest = block[:148] + block[156:]
    unsigned = 256 + sum(rest)
    signed = 256 + sum(b - 256 if b > 127 else b for b in rest)
    if stored not in (unsigned, signed):
        return False
    numeric = (block[100:108], block[108:116], block[116:124], block[124:136], block[136:148])
    return all(_tar_number(field) is not None for field in numeric)


_TEXT_PROTO_START = re.compile(
    rb"\A(?:\s|#[^\n]*\n)*(?:saved_model_schema_version\s*:|meta_graphs\s*[:{<]|"
    rb"node\s*[:{<]\s*(?:#[^\n]*\n|\s)*name\s*:)"
)


def _looks_like_text_proto(head: bytes) -> bool:
    """A SavedModel (or frozen GraphDef) in protobuf text form: `saved_model.pbtxt`."""
    return bool(_TEXT_PROTO_START.match(head.lstrip(b"\xef\xbb\xbf")))


HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _hdf5_after_user_block(head: bytes, size: int, opener: Opener | None) -> bool:
    """HDF5 allows a user block: libhdf5 (h5py, Keras' .h5 loader) looks for the superblock
    signature at byte 0, 512, 1024, 2048, ... so anything may come first."""
    offset = 512
    handle = None
    try:
        while offset + len(HDF5_SIGNATURE) <= size:
            if offset + len(HDF5_SIGNATURE) <= len(head):
                found = head[offset : offset + len(HDF5_SIGNATURE)]
            elif opener is None:
                return False
            else:
                handle = handle or opener()
                handle.seek(offset)
                found = handle.read(len(HDF5_SIGNATURE))
            if found == HDF5_SIGNATURE:
                return True
            offset *= 2
        return False
    finally:
        if handle is not None:
            handle.close()


def _magic_format(head: bytes) -> str | None:
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")):
        return "zip"
    for magic, fmt in (
        (b"\x93NUMPY", "npy"),
        (b"GGUF", "gguf"),
        (HDF5_SIGNATURE, "hdf5"),
        (b"7z\xbc\xaf\x27\x1c", "7z"),
        (b"\x1f\x8b", "gzip"),
        (b"\xfd7zXZ\x00", "xz"),
        (b"\x04\x22\x4d\x18", "lz4"),
        (b"\x28\xb5\x2f\xfd", "zstd"),
    ):
        if head.startswith(magic):
            return fmt
    if head.startswith(b"BZh") and head[3:4].isdigit():
        return "bz2"
    if len(head) >= 4 and head[0] & 0xF0 == 0x50 and head[1:4] == b"\x2a\x4d\x18":
        return "zstd"  # a skippable frame first (zstd's reader skips it)
    return None


# UBJSON integer markers (struct format, size): the length of XGBoost's first key
_UBJ_LENGTHS = {b"i": (">b", 1), b"U": (">B", 1), b"I": (">h", 2), b"l": (">i", 4), b"L": (">q", 8)}


def looks_like_xgboost_ubj(head: bytes) -> bool:
    """XGBoost's UBJSON writer starts with an object whose first key is 'learner' or
    'version' (a saved model) or 'Config' (the serialised booster a pickle carries)."""
    if head[:1] != b"{" or len(head) < 4:
        return False
    marker = head[1:2]
    if marker not in _UBJ_LENGTHS:
        return False
    fmt, size = _UBJ_LENGTHS[marker]
    if len(head) < 2 + size:
        return False
    (length,) = struct.unpack(fmt, head[2 : 2 + size])
    key = head[2 + size : 2 + size + length]
    return key in (b"learner", b"version", b"Config")


def looks_like_lightgbm_text(head: bytes) -> bool:
    """LightGBM's text model: 'tree' on the first line, then 'version=v<N>'."""
    return head.startswith((b"tree\nversion=v", b"tree\r\nversion=v"))


def looks_like_xgboost_json(head: bytes) -> bool:
    """An XGBoost JSON model: an object whose first key is "learner" (as xgboost writes it)."""
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped[:1] != b"{":
        return False
    return stripped[1:].lstrip(b" \t\r\n").startswith(b'"learner"')


def identify_all(
    head: bytes, size: int, name: str = "", opener: Opener | None = None
) -> tuple[str, ...]:
    """Every format a loader could read these bytes as, the primary one first. `head` should
    hold at least the first 1024 bytes; `opener` (fresh handles on the whole stream) lets the
    pickle and protobuf probes look further, within fixed budgets."""
    found: list[str] = []

    def add(fmt: str) -> None:
        if fmt not in found:
            found.append(fmt)

    magic = _magic_format(head)
    if magic:
        add(magic)
    if looks_like_tar_header(head):
        add("tar")  # torch.load tries tarfile before pickle
    if not magic:
        if _looks_like_safetensors(head, size):
            add("safetensors")
        if _looks_like_joblib_zfile(head):
            add("zlib")
        if _looks_like_lzma_alone(head, size):
            add("lzma")
    if looks_like_pickle(head, size, opener):
        add("pickle")  # e.g. a tar whose first member name is also a pickle
    if magic != "hdf5" and _hdf5_after_user_block(head, size, opener):
        add("hdf5")
    if not magic and _looks_like_zlib(head):
        add("zlib")  # plain pickle.load reads a pickle, zlib.decompress the stream: scan both
    if name.lower().endswith((".jinja", ".jinja2", ".j2", ".template")):
        add("jinja")  # chat_template.jinja: transformers reads it by name, as template text
    if found:
        return tuple(found)
    # gradient-boosting models that hold only data (scan/boosters.py checks their structure)
    if looks_like_xgboost_ubj(head):
        return ("xgboost_ubj",)
    if looks_like_lightgbm_text(head):
        return ("lightgbm_text",)
    if looks_like_xgboost_json(head):
        return ("xgboost_json",)
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped[:1] in (b"{", b"[") and name.lower().endswith(".json"):
        return ("json",)
    if stripped[:1] == b"{" and b'"' in stripped[:64]:
        return ("json",)
    if _looks_like_text_proto(head):
        return ("savedmodel_text",)
    from bastion.scan.protobuf import protobuf_kinds

    kinds = protobuf_kinds(head, size, opener)
    if kinds:
        return kinds
    return ("unknown",)


def identify(head: bytes, size: int, name: str = "", opener: Opener | None = None) -> str:
    """The primary format of a stream (see `identify_all`); give at least 1024 bytes."""
    return identify_all(head, size, name, opener)[0]

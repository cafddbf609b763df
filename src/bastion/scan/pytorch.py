"""PyTorch artifacts: zip checkpoints under any name, TorchScript archives. (The legacy stacked
pickle format is handled by the pickle scanner, the legacy tar format by the tar scanner.)
Tensor data members are never read: torch maps them as raw storage bytes, nothing executes."""

from __future__ import annotations

import functools
import re
from pathlib import Path

from bastion.findings import Confidence, Severity, Stage
from bastion.records import Record
from bastion.rules import Rule
from bastion.scan.base import ScanContext
from bastion.scan.source import Source
from bastion.scan.ziparchive import MINIZ, ZipReader
from bastion.scan.zipmembers import member_source, scan_zip_member

TORCHSCRIPT = Rule(
    id="PT001",
    title="TorchScript program",
    severity=Severity.INFO,
    confidence=Confidence.HIGH,
    stage=Stage.ARTIFACT,
    profile="model-code-execution",
    description="The archive is a TorchScript module: it carries a program (code/ folder) that "
    "runs whenever the model is called. TorchScript cannot import Python modules, "
    "but it can call any registered operator.",
    remediation="Load TorchScript only from trusted sources; prefer weights-only checkpoints.",
)
TORCHSCRIPT_RISKY_OP = Rule(
    id="PT002",
    title="TorchScript code calls a risky operator",
    severity=Severity.HIGH,
    confidence=Confidence.MEDIUM,
    stage=Stage.ARTIFACT,
    profile="model-code-execution",
    description="The TorchScript program calls an operator that is not on bastion's list of "
    "pure torch operators (torch_pure_ops.txt, generated from torch's operator "
    "registry): one that writes or reads files (aten::save, aten::from_file), or "
    "one from a custom native library the loading process must have registered. A "
    "call in a TorchScript __setstate__ runs while torch.load/torch.jit.load reads "
    "the archive.",
    remediation="Review the TorchScript code (code/ folder of the archive) before loading.",
)

_TENSOR_DATA = re.compile(r"(^|/)(data|\.data)/(\d+|serialization_id)$")
_METADATA = frozenset(
    {"version", ".format_version", "byteorder", ".storage_alignment", "serialization_id"}
)
MAX_CODE_BYTES = 16 * 1024 * 1024
TORCH_PACKAGE = Rule(
    id="PT003",
    title="torch.package archive ships Python modules",
    severity=Severity.HIGH,
    confidence=Confidence.HIGH,
    stage=Stage.ARTIFACT,
    profile="model-code-execution",
    description="A torch.package archive carries Python source that PackageImporter imports "
    "(and so runs) when it unpickles objects of those modules: loading it runs code "
    "from the archive.",
    remediation="Load only torch.package archives from trusted sources; review the packaged "
    "modules, or ship weights in a format without code.",
)

# the rules this module's checks emit (listed in bastion.catalogue)
RULES = (TORCHSCRIPT, TORCHSCRIPT_RISKY_OP, TORCH_PACKAGE)


class TorchLayout(Record):
    """How torch.load reads a zip: PyTorchFileReader (miniz) takes the folder of the first
    central-directory entry as the archive's root; `_is_torchscript_zip` is true when the root
    holds `constants.pkl` (then torch.load hands the file to torch.jit.load)."""

    root: bytes  # b"archive/"
    torchscript: bool


def torch_layout(reader: ZipReader) -> TorchLayout | None:
    """The layout torch.load would see (miniz's view of the archive), or None when torch.load
    would not read the zip as a checkpoint or TorchScript archive."""
    view = reader.views.get(MINIZ)
    if view is None or not view.entries:
        return None
    first = view.entries[0].raw_name
    if b"/" not in first:
        return None
    root = first[: first.index(b"/") + 1]
    names = {e.raw_name for e in view.entries}
    torchscript = root + b"constants.pkl" in names  # get_all_records(): exact names
    # getRecord("data.pkl") locates the file with miniz's case-insensitive lookup
    checkpoint = (root + b"data.pkl").lower() in {n.lower() for n in names}
    if not (torchscript or checkpoint):
        return None
    return TorchLayout(root=root, torchscript=torchscript)


def scan_torch_zip(
    ctx: ScanContext, source: Source, reader: ZipReader, layout: TorchLayout
) -> None:
    from bastion.scan.pickle import scan_pickle

    entries = reader.directory.entries
    torchscript = layout.torchscript
    ctx.formats.append("torchscript" if torchscript else "pytorch")
    if torchscript:
        ctx.add(
            TORCHSCRIPT.finding(
                source.location,
                "TorchScript archive: its program runs when the module is called",
                evidence="code/",
            )
        )
    for entry in entries:
        if entry.is_dir or entry.is_symlink:
            continue
        inside = entry.raw_name.startswith(layout.root)
        relative = entry.name[len(layout.root) :] if inside else entry.name
        if inside and (_TENSOR_DATA.search(relative) or relative.rsplit("/", 1)[-1] in _METADATA):
            continue  # read by torch as raw storage bytes or plain text, never unpickled
        if entry.name.endswith((".pkl", ".debug_pkl")):
            child = member_source(ctx, source, reader, entry)
            if child is not None:
                # torch.jit.load unpickles the archive's own pickles (data, constants, traced
                # inputs, debug info) with TorchScript's type resolution; others are not its
                jit_pickle = torchscript and inside
                ctx.formats.append("pickle")
                ctx.guarded(
                    child,
                    functools.partial(scan_pickle, ctx, child, torchscript=jit_pickle),
                    "pytorch",
                )
        elif torchscript and "code/" in entry.name and entry.name.endswith(".py"):
            child = member_source(ctx, source, reader, entry)
            if child is not None:
                ctx.guarded(child, functools.partial(_scan_torchscript_code, ctx, child), "pytorch")
        else:
            scan_zip_member(ctx, source, reader, entry)


def _scan_torchscript_code(ctx: ScanContext, source: Source) -> None:
    code = source.read_all(MAX_CODE_BYTES, "TorchScript code")
    for text in sorted(risky_operator_calls(code)):
        ctx.add(TORCHSCRIPT_RISKY_OP.finding(source.location, f"calls {text}", evidence=text))


_CONTINUATION = re.compile(rb"\\\r?\n")
# string literals (a name inside one is text, not a call), triple-quoted ones first; an unclosed
# literal runs to its line's (a triple-quoted one: the file's) end, where the parser fails too,
# so every match succeeds and the rewrite stays linear
_STRING = re.compile(
    rb'"""[\s\S]*?(?:"""|\Z)|\'\'\'[\s\S]*?(?:\'\'\'|\Z)'
    rb'|"(?:[^"\\\n]|\\.)*"?|\'(?:[^\'\\\n]|\\.)*\'?'
)
_PARENTHESISED_NAME = re.compile(rb"(?<![\w)\]])\(\s*([A-Za-z_][\w.]*)\s*\)")
_SPACED_DOT = re.compile(rb"\s*\.\s*")
_DOTTED = re.compile(rb"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+")


def dotted_names(code: bytes) -> set[str]:
    """Every dotted name in TorchScript source as its (Python-like) parser joins it: spaces
    and line breaks around a dot and parentheses around a name (`torch . from_file`,
    `(torch).from_file`) do not hide it; string literals are dropped. Linear-time rewrites, no
    tokenizer."""
    text = _CONTINUATION.sub(b"", code)
    text = _STRING.sub(b'""', text)
    text = _SPACED_DOT.sub(b".", text)
    for _ in range(8):  # nested parentheses, one level per pass
        text, count = _PARENTHESISED_NAME.subn(rb"\1", text)
        if not count:
            break
    return {m.group(0).decode("latin-1") for m in _DOTTED.finditer(text)}


class OperatorTable(Record):
    pure: frozenset[str]  # "aten::add"
    namespaces: frozenset[str]  # namespaces with at least one pure operator
    denied_names: frozenset[str]  # "save", "from_file": flagged under any spelling


@functools.cache
def operator_table() -> OperatorTable:
    """torch_pure_ops.txt (generated by tools/gen_torch_ops.py from torch's operator registry)."""
    text = Path(__file__).with_name("torch_pure_ops.txt").read_text(encoding="utf-8")
    pure, denied = set(), set()
    for line in text.splitlines():
        if line and not line.startswith("#"):
            op = line.split("\t", 1)[0]
            if op.startswith("!"):
                denied.add(op[1:].partition("::")[2])
            else:
                pure.add(op)
    namespaces = frozenset(op.partition("::")[0] for op in pure)
    return OperatorTable(
        pure=frozenset(pure), namespaces=namespaces, denied_names=frozenset(denied)
    )


def _is_unknown_operator(parts: list[str], table: OperatorTable) -> bool:
    """Whether a dotted name spells an operator that is not a reviewed pure one:
    `ops.<ns>.<op>` / `torch.ops.<ns>.<op>` (the namespace alone when nothing follows) and
    `torch.<op>` (TorchScript's importer binds `torch` to the aten namespace)."""
    if "ops" in parts:
        at = parts.index("ops")
        if at + 1 >= len(parts):
            return False
        namespace = parts[at + 1]
        if at + 2 >= len(parts):
            return namespace not in table.namespaces
        return f"{namespace}::{parts[at + 2]}" not in table.pure
    if parts[0] == "torch":
        op = parts[1]
        return f"aten::{op}" not in table.pure and f"prim::{op}" not in table.pure
    return False


def risky_operator_calls(code: bytes) -> set[str]:
    """Operator spellings in TorchScript code that are not reviewed pure torch operators, and any
    attribute named like a registered file operator (`save`, `from_file`: also through an alias
    such as `t = torch; t.save(...)`)."""
    table = operator_table()
    risky = set()
    for name in dotted_names(code):
        parts = name.split(".")
        if any(part in table.denied_names for part in parts[1:]) or _is_unknown_operator(
            parts, table
        ):
            risky.add(name)
    return risky


def report_torch_package(ctx: ScanContext, source: Source, reader: ZipReader) -> bool:
    """A torch.package archive (`.data/extern_modules` beside packaged modules): every
    packaged Python module is code PackageImporter runs. True when the archive is one."""
    names = [e.name for e in reader.directory.entries]
    if not any(n == ".data/extern_modules" or n.endswith("/.data/extern_modules") for n in names):
        return False
    ctx.formats.append("torch-package")
    modules = sorted(n for n in names if n.endswith(".py") and "/.data/" not in n)
    for name in modules:
        ctx.add(
            TORCH_PACKAGE.finding(
                source.location.model_copy(update={"members": (*source.location.members, name)}),
                "packaged Python module: PackageImporter imports (runs) it when an object of it "
                "is unpickled",
                evidence=name,
            )
        )
    return True


class TorchZip:
    """torch.save / TorchScript archives, read as torch.load reads them (miniz's view)."""

    name = "pytorch"
    exclusive = True

    def claims(self, source: Source, reader: ZipReader) -> bool:
        return source.head(4) == b"PK\x03\x04" and torch_layout(reader) is not None

    def scan(self, ctx: ScanContext, source: Source, reader: ZipReader) -> None:
        layout = torch_layout(reader)
        if layout is not None:
            scan_torch_zip(ctx, source, reader, layout)


class TorchPackage:
    """torch.package archives: their packaged modules are code (any zip may be one)."""

    name = "torch-package"
    exclusive = False

    def claims(self, source: Source, reader: ZipReader) -> bool:
        return True

    def scan(self, ctx: ScanContext, source: Source, reader: ZipReader) -> None:
        report_torch_package(ctx, source, reader)

"""PyTorch artifacts: zip checkpoints under any name, TorchScript archives. (The legacy stacked
pickle format is handled by the pickle scanner, the legacy tar format by the tar scanner.)
Tensor data members are never read: torch maps them as raw storage bytes, nothing executes."""

from __future__ import annotations

import functools
import re

from bastion.findings import Confidence, Severity, Stage
from bastion.rules import Rule
from bastion.scan.archive import member_source, scan_zip_member
from bastion.scan.base import ScanContext
from bastion.scan.source import Source
from bastion.scan.ziparchive import ZipReader

TORCHSCRIPT = Rule(
    id="PT001", title="TorchScript program", severity=Severity.INFO, confidence=Confidence.HIGH,
    stage=Stage.ARTIFACT, profile="model-code-execution",
    description="The archive is a TorchScript module: it carries a program (code/ folder) that "
                "runs whenever the model is called. TorchScript cannot import Python modules, "
                "but it can call any registered operator.",
    remediation="Load TorchScript only from trusted sources; prefer weights-only checkpoints.",
)
TORCHSCRIPT_RISKY_OP = Rule(
    id="PT002", title="TorchScript code calls a risky operator", severity=Severity.HIGH,
    confidence=Confidence.MEDIUM, stage=Stage.ARTIFACT, profile="model-code-execution",
    description="The TorchScript program calls an operator that reads files or comes from a "
                "custom native library, which the loading process must have registered.",
    remediation="Review the TorchScript code (code/ folder of the archive) before loading.",
)

_TENSOR_DATA = re.compile(r"(^|/)(data|\.data)/(\d+|serialization_id)$")
_METADATA = frozenset({"version", ".format_version", "byteorder", ".storage_alignment",
                       "serialization_id"})
_RISKY_TS = re.compile(rb"(ops\.aten\.from_file|torch\.from_file|ops\.(?!aten\b|prim\b|"
                       rb"quantized\b|_caffe2\b|profiler\b|torchvision\b|_quantized\b)"
                       rb"[A-Za-z_][A-Za-z0-9_]*\.)")
MAX_CODE_BYTES = 16 * 1024 * 1024


def is_torch_zip(names: list[str]) -> bool:
    return any(n == "data.pkl" or n.endswith("/data.pkl") for n in names)


def scan_torch_zip(ctx: ScanContext, source: Source, reader: ZipReader) -> None:
    from bastion.scan.pickle import scan_pickle

    entries = reader.directory.entries
    torchscript = any("/code/" in e.name or e.name.startswith("code/") or
                      e.name.endswith("constants.pkl") for e in entries)
    ctx.formats.append("torchscript" if torchscript else "pytorch")
    if torchscript:
        ctx.add(TORCHSCRIPT.finding(source.location, "TorchScript archive: its program runs "
                                    "when the module is called", evidence="code/"))
    for entry in entries:
        if entry.is_dir or entry.is_symlink:
            continue
        base = entry.name.rsplit("/", 1)[-1]
        if _TENSOR_DATA.search(entry.name) or base in _METADATA:
            continue
        if entry.name.endswith((".pkl", ".debug_pkl")):
            child = member_source(ctx, source, reader, entry)
            if child is not None:
                ctx.formats.append("pickle")
                ctx.guarded(child, functools.partial(scan_pickle, ctx, child,
                                                     torchscript=torchscript), "pytorch")
        elif torchscript and "code/" in entry.name and entry.name.endswith(".py"):
            child = member_source(ctx, source, reader, entry)
            if child is not None:
                ctx.guarded(child, functools.partial(_scan_torchscript_code, ctx, child),
                            "pytorch")
        else:
            scan_zip_member(ctx, source, reader, entry)


def _scan_torchscript_code(ctx: ScanContext, source: Source) -> None:
    code = source.read_all(MAX_CODE_BYTES, "TorchScript code")
    for match in sorted({m.group(0) for m in _RISKY_TS.finditer(code)}):
        text = match.decode("latin-1")
        ctx.add(TORCHSCRIPT_RISKY_OP.finding(source.location, f"calls {text}", evidence=text))

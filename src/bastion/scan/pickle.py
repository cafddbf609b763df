"""Pickle scanner: plain pickles of every protocol, stacked pickles (legacy torch), joblib,
dill/cloudpickle output, nested pickles handed to loaders. Never unpickles a real object."""

from __future__ import annotations

from typing import BinaryIO

from bastion.findings import Confidence, Location, Severity, Stage
from bastion.rules import Rule
from bastion.scan.base import POLYGLOT, ScanContext
from bastion.scan.embedded import identify_whole
from bastion.scan.identify import identify
from bastion.scan.pickle_native import CallJudge, unvalidated
from bastion.scan.pickle_vm import (
    RESOLVED,
    TORCHSCRIPT_PREFIXES,
    FlaggedName,
    Recorder,
    Resolved,
    StreamResult,
    analyse_stream,
    nested_candidates,
)
from bastion.scan.source import Source, bytes_source, slice_opener

CODE_EXECUTION = Rule(
    id="PKL001",
    title="Pickle runs code when loaded",
    severity=Severity.CRITICAL,
    confidence=Confidence.HIGH,
    stage=Stage.ARTIFACT,
    profile="model-code-execution",
    description="The pickle names a callable that executes processes, evaluates code, builds "
    "code objects, imports modules or resolves arbitrary attributes. Unpickling it "
    "(pickle.load, joblib.load, torch.load without weights_only) runs it.",
    remediation="Do not load this file. Obtain the model from a trusted source, preferably in a "
    "data-only format (safetensors, ONNX, skops), and verify its signature.",
)
FILE_NETWORK = Rule(
    id="PKL002",
    title="Pickle touches files or the network when loaded",
    severity=Severity.CRITICAL,
    confidence=Confidence.HIGH,
    stage=Stage.ARTIFACT,
    profile="model-code-execution",
    description="The pickle names a callable that reads or writes files or opens network "
    "connections; loading it can exfiltrate data, drop files or fetch a second stage.",
    remediation="Do not load this file; rebuild the artifact from a trusted source.",
)
UNKNOWN_GLOBAL = Rule(
    id="PKL003",
    title="Pickle references a global outside the allowlist",
    severity=Severity.HIGH,
    confidence=Confidence.MEDIUM,
    stage=Stage.ARTIFACT,
    profile="model-code-execution",
    description="Loading imports and may call a name that is not on bastion's allowlist of "
    "known-safe model globals. Unknown names are how denylist scanners get bypassed "
    "(gadget callables in common libraries), so they fail the gate until reviewed.",
    remediation="Check what the named callable does when called with attacker-chosen arguments. "
    "If it is a trusted class of your own code, waive the finding for this path.",
)
NESTED_LOADER = Rule(
    id="PKL004",
    title="Pickle deserialises a second payload",
    severity=Severity.CRITICAL,
    confidence=Confidence.HIGH,
    stage=Stage.ARTIFACT,
    profile="model-code-execution",
    description="The pickle hands bytes to another loader (pickle.loads, torch.load, "
    "marshal.loads, joblib, yaml, numpy.load...). Loader chains hide a payload from "
    "scanners that look only at the outer stream; bastion scans the inner one too.",
    remediation="Do not load this file.",
)
BROKEN_STREAM = Rule(
    id="PKL005",
    title="Malformed or truncated pickle stream",
    severity=Severity.HIGH,
    confidence=Confidence.MEDIUM,
    stage=Stage.ARTIFACT,
    profile="model-integrity",
    description="The stream breaks before STOP. The unpickler executes every opcode up to the "
    "error before it raises, so a payload placed before a deliberate fault still "
    "runs while scanners that give up on errors report nothing (nullifAI).",
    remediation="Do not load it; regenerate the artifact.",
)
TRAILING_DATA = Rule(
    id="PKL006",
    title="Data after the end of the pickle",
    severity=Severity.MEDIUM,
    confidence=Confidence.MEDIUM,
    stage=Stage.ARTIFACT,
    profile="masquerading",
    description="Bytes follow the STOP opcode: a second pickle that a loader calling load() "
    "twice will run, or a hidden blob. bastion scans stacked pickles as well.",
    remediation="Remove the appended data, or regenerate the file.",
)

OUTSIDE_ALLOWLIST = Rule(
    id="PKL007",
    title="Pickle instantiates a class outside the allowlist",
    severity=Severity.LOW,
    confidence=Confidence.MEDIUM,
    stage=Stage.ARTIFACT,
    profile="model-code-execution",
    description="Loading imports a module that is not on bastion's allowlist and builds an "
    "instance of one of its classes (or keeps one of its objects as a value) without "
    "calling it with the pickle's arguments: typically a whole-module torch.save of "
    "your own model classes. Importing the module runs its code, so the file is "
    "only as trustworthy as that module. Reported below the default gate; --strict "
    "fails on it.",
    remediation="Check that the named module is your own trusted code. Prefer saving a "
    "state_dict (or safetensors) and rebuilding the model in code.",
)
ABSURD_MEMO = Rule(
    id="PKL008",
    title="Pickle memo index out of all proportion to the stream",
    severity=Severity.HIGH,
    confidence=Confidence.HIGH,
    stage=Stage.ARTIFACT,
    profile="model-integrity",
    description="The stream stores a memo entry at an index far larger than the stream could "
    "ever create. CPython's unpickler allocates a memo table of twice that size "
    "before anything else happens: a few bytes make a loader (and scanners that "
    "unpickle) allocate gigabytes. bastion analyses such streams with a dictionary "
    "memo instead.",
    remediation="Do not load it; the file is crafted to exhaust memory.",
)
UNVALIDATED_NATIVE = Rule(
    id="PKL010",
    title="Pickle rebuilds native data without validating it",
    severity=Severity.MEDIUM,
    confidence=Confidence.MEDIUM,
    stage=Stage.ARTIFACT,
    profile="model-integrity",
    description="Loading calls a library function that turns the pickle's lengths, offsets and "
    "buffers into a C++ object as they are, without validation: pyarrow's _restore_array "
    "(every pickled Arrow array, including pandas columns with Arrow dtypes, the default for "
    "strings in pandas 3) and DictionaryScalar._reconstruct (its index). A crafted array makes "
    "the library read out of bounds when the data is first used: the loading process crashes, "
    "or returns heap memory as values. bastion checks every such call's data as Arrow's full "
    "validation would (buffer counts and sizes, validity bitmaps and null counts, offsets, "
    "children, dictionary indices, union type ids, run ends, views, UTF-8, decimal precision) "
    "and also refuses the out-of-bounds reads that validation misses (a negative offset, a "
    "fixed-size list child shorter than offset + length need, a child of another layout than "
    "its type says). Consistent data is not reported. Inconsistent data is reported at high "
    "severity with the inconsistency as evidence. Data bastion cannot check fully (a value "
    "that is not a literal, a type it does not read, more elements than its per-stream bound) "
    "is reported at medium severity with the reason.",
    remediation="High: do not load the file; its Arrow data is crafted or corrupt. Medium: "
    "exchange Arrow data as Parquet or Arrow IPC, whose readers check what they read, rather "
    "than as a pickle; if the pickle comes from a producer you trust, waive the finding for "
    "its path; otherwise call validate(full=True) on every array, chunked array and table "
    "before using what was loaded (it does not refuse a negative offset).",
)

# the rules this module's checks emit (listed in bastion.catalogue)
RULES = (
    CODE_EXECUTION,
    FILE_NETWORK,
    UNKNOWN_GLOBAL,
    NESTED_LOADER,
    BROKEN_STREAM,
    TRAILING_DATA,
    OUTSIDE_ALLOWLIST,
    ABSURD_MEMO,
    UNVALIDATED_NATIVE,
)

MAX_STACKED = 64
OFFSET_SCAN_LIMIT = 8 * 1024 * 1024  # byte pointers for flagged globals up to this size
LEGACY_TORCH_MAGIC = bytes.fromhex("80028a0a6cfc9c46f9206aa850192e")

_CATEGORY_RULE = {
    "process execution": CODE_EXECUTION,
    "exec/eval": CODE_EXECUTION,
    "code objects": CODE_EXECUTION,
    "import machinery": CODE_EXECUTION,
    "attribute/name resolution": CODE_EXECUTION,
    "file access": FILE_NETWORK,
    "network access": FILE_NETWORK,
    "nested deserialisation": NESTED_LOADER,
}


class PickleScanner:
    name = "pickle"
    formats = ("pickle",)

    def scan(self, ctx: ScanContext, source: Source, fmt: str) -> None:
        scan_pickle(ctx, source)


def scan_pickle(
    ctx: ScanContext,
    source: Source,
    *,
    torchscript: bool = False,
    trailing_ok: bool = False,
    speculative: bool = False,
) -> None:
    """Analyse every stacked pickle stream in `source` and report what they would do."""
    allowed = TORCHSCRIPT_PREFIXES if torchscript else ()
    with source.open() as handle:
        if handle.read(len(LEGACY_TORCH_MAGIC)) == LEGACY_TORCH_MAGIC:
            expected_streams, trailing_ok = 5, True  # legacy torch.save: then raw storages
        else:
            expected_streams = 1
        position = 0
        for index in range(MAX_STACKED):
            ctx.check_time()
            recorder = Recorder(allowed_prefixes=allowed)
            result = analyse_stream(handle, position, recorder, ctx.limits.max_pickle)
            location = source.location
            if index:
                location = location.model_copy(update={"pointer": f"stream {index + 1}"})
            _report_stream(ctx, source, handle, location, recorder, result)
            if result.error is not None:
                if not speculative:
                    ctx.add(
                        BROKEN_STREAM.finding(
                            location,
                            f"pickle stream breaks before STOP: {result.error}",
                            evidence=result.error,
                        )
                    )
                return
            assert result.end is not None
            position = result.end
            if position >= source.size:
                return
            handle.seek(position)
            following = handle.read(1024)
            if index + 1 < expected_streams:
                continue
            if identify(following, source.size - position) == "pickle":
                if not speculative:
                    ctx.add(
                        TRAILING_DATA.finding(
                            location,
                            "another pickle stream follows the first; a loader that "
                            "reads repeatedly will execute it (scanned below)",
                            evidence=f"stacked pickle at byte {position}",
                        )
                    )
                continue
            trailing_fmt = identify(following, source.size - position)
            if trailing_fmt not in ("unknown", "json") and not speculative:
                ctx.add(
                    POLYGLOT.finding(
                        location,
                        f"a {trailing_fmt} file is appended after the pickle; other "
                        "readers see that instead (scanned as well)",
                        evidence=f"{trailing_fmt} at byte {position}",
                    )
                )
                start, length = position, source.size - position
                ctx.scan(
                    source.child(
                        f"<{trailing_fmt} after pickle>",
                        slice_opener(source, start, length),
                        length,
                    ),
                    trailing_fmt,
                )
                return
            if not trailing_ok and not speculative:
                ctx.add(
                    TRAILING_DATA.finding(
                        location,
                        f"{source.size - position} bytes follow the end of the pickle",
                        evidence=f"trailing data at byte {position}",
                        severity=Severity.LOW,
                    )
                )
            return
        ctx.limit_hit(source.location, f"more than {MAX_STACKED} stacked pickle streams")


CALL_USE = "c"
_USE_WORDS = {"c": "calls", "n": "instantiates", "r": "keeps as a value", "m": "mutates"}


def _uses_text(uses: str) -> str:
    return " and ".join(_USE_WORDS[use] for use in uses if use in _USE_WORDS)


def _report_stream(
    ctx: ScanContext,
    source: Source,
    handle: BinaryIO,
    location: Location,
    recorder: Recorder,
    result: StreamResult,
) -> None:
    for message in recorder.memo_findings:
        ctx.add(ABSURD_MEMO.finding(location, message, evidence=message))
    flagged_names = recorder.flagged
    judge = CallJudge()  # one element budget per stream
    if flagged_names:
        _report_names(ctx, handle, location, flagged_names, result, recorder.names, judge)
        _report_lookups(ctx, location, recorder, flagged_names)
    if recorder.flagged_overflow:
        ctx.add(
            UNKNOWN_GLOBAL.finding(
                location,
                "more flagged globals than bastion lists; only the first ones are reported",
                evidence="flagged-name overflow",
            )
        )
    arrow_values, arrow_truncated = judge.values()
    candidates = nested_candidates(
        recorder, ctx.limits.max_pickle, result.root, arrow_values, arrow_truncated
    )
    for label, payload in candidates:
        child = bytes_source(
            payload,
            f"<{label}>",
            location.model_copy(
                update={"members": (*location.members, f"<{label}>"), "pointer": None}
            ),
            depth=source.depth + 1,
        )
        fmt = identify_whole(payload)
        if fmt == "pickle":
            ctx.formats.append("pickle")
            scan_pickle(ctx, child, speculative=True)
        else:
            ctx.scan(child, fmt)
    if candidates.truncated:
        ctx.limit_hit(
            location, f"{candidates.truncated}: not every value was analysed for embedded payloads"
        )


def _report_lookups(
    ctx: ScanContext, location: Location, recorder: Recorder, flagged_names: dict[str, FlaggedName]
) -> None:
    """A resolver called only for constant lookups (getattr(x, 'name')) is judged by what it
    looked up; when the stream reaches dangerous names, the resolver that may have reached
    them is named too (it was called)."""
    if not any(f.kind == "dangerous" for f in flagged_names.values()):
        return
    for qualname, record in sorted(recorder.names.items()):
        if record.uses == {RESOLVED} and qualname not in flagged_names:
            ctx.add(
                CODE_EXECUTION.finding(
                    location,
                    f"loading this pickle calls {qualname} to look up names, and the "
                    "stream reaches dangerous names (reported here) [attribute/name resolution]",
                    evidence=qualname,
                )
            )


def _report_names(
    ctx: ScanContext,
    handle: BinaryIO,
    location: Location,
    flagged_names: dict[str, FlaggedName],
    result: StreamResult,
    records: dict[str, Resolved],
    judge: CallJudge,
) -> None:
    """One finding per flagged name (`records`: what the stream did with each)."""
    named = {qualname: records[qualname].module_name for qualname in flagged_names}
    offsets = _offsets(handle, result)
    for qualname, flagged in sorted(flagged_names.items()):
        verdict = flagged.verdict
        pointer = location.pointer
        if offsets is not None and flagged.first_index < len(offsets):
            offset, opcode, _text = offsets[flagged.first_index]
            at = f"{opcode} at byte {result.start + offset}"
            pointer = f"{pointer}, {at}" if pointer else at
        where = location.model_copy(update={"pointer": pointer})
        times = f" ({flagged.count} references)" if flagged.count > 1 else ""
        used = _uses_text(flagged.uses)
        if flagged.kind == "dangerous":
            category = verdict.category or "attribute/name resolution"
            rule = _CATEGORY_RULE.get(category, CODE_EXECUTION)
            if verdict.category is None:  # a listed or unknown global mutated by BUILD/SETITEM
                message = (
                    f"loading this pickle changes the global {qualname} itself "
                    f"(sets attributes or items on it) [{category}]{times}"
                )
            else:
                message = f"loading this pickle imports and can call {qualname} [{category}]{times}"
        elif flagged.kind == "misuse":
            rule = UNKNOWN_GLOBAL
            message = (
                f"loading this pickle {used} {qualname}, which is allowlisted only to be "
                f"{_uses_text(verdict.uses) or 'referenced'} ({verdict.reason}){times}"
            )
        elif flagged.kind == "call" and (
            why := unvalidated(named.get(qualname, ("", qualname)), flagged.uses)
        ):
            record = records[qualname]
            judgement = judge.judge(record.module_name, record.calls, record.calls_dropped)
            if judgement is None:
                continue  # every call's data is consistent: as safe as pyarrow's constructors
            rule = UNVALIDATED_NATIVE
            message = f"loading this pickle calls {qualname}, which {why}{times}"
            if judgement.invalid:
                ctx.add(
                    rule.finding(
                        where,
                        f"{message}; the pickled data is inconsistent: {judgement.detail}",
                        evidence=f"{qualname}: {judgement.detail}",
                        severity=Severity.HIGH,
                    )
                )
                continue
            message += f"; not fully checked: {judgement.detail}"
        elif flagged.kind == "call" and qualname.startswith("<"):
            rule = UNKNOWN_GLOBAL  # a call no global names: the target is not known
            message = (
                f"loading this pickle calls an object whose target bastion cannot "
                f"determine ({qualname[1:-1]}){times}"
            )
        elif flagged.kind == "call":
            rule = UNKNOWN_GLOBAL
            message = (
                f"loading this pickle imports and {used} {qualname} [not on the allowlist]{times}"
            )
            if CALL_USE not in flagged.uses:
                message += "; a callable kept as a value is called later by whoever uses it"
        else:
            rule = OUTSIDE_ALLOWLIST
            message = (
                f"loading this pickle imports {qualname} and {used} it "
                f"[class outside the allowlist]{times}"
            )
        ctx.add(rule.finding(where, message, evidence=qualname))


def _offsets(handle: BinaryIO, result: StreamResult) -> list[tuple[int, str, str | None]] | None:
    end = result.end
    if end is None:
        handle.seek(0, 2)
        end = handle.tell()
    if end - result.start > OFFSET_SCAN_LIMIT or result.engine != "c":
        return None
    from bastion.scan.pickle_static import global_offsets  # only streams with findings

    handle.seek(result.start)
    return global_offsets(handle.read(end - result.start))

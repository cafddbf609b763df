"""Values inside model configs and metadata (JSON configs, safetensors `__metadata__`): a
serialized payload carried as a string (raw, hex, base64, compressed; decoded by
scan/embedded.py) is what the next consumer loads, so it is scanned like a file; a credential is
a leak. Work is bounded: strings examined, payload size, candidate lines for the secret
detectors (detect-secrets, through bastion/secrets.py)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

from bastion.findings import Confidence, Severity, Stage
from bastion.rules import Rule
from bastion.scan.base import ScanContext
from bastion.scan.embedded import MIN_PAYLOAD
from bastion.scan.source import Source, bytes_source

CARRIED_PAYLOAD = Rule(
    id="CFG001",
    title="Config or metadata value carries a serialized payload",
    severity=Severity.LOW,
    confidence=Confidence.HIGH,
    stage=Stage.ARTIFACT,
    profile="model-code-execution",
    description="A string in a model config or in safetensors metadata holds a pickle or an "
    "archive (raw or hex/base64/compressed). Code that reads the value and "
    "deserializes it runs whatever the payload names; bastion scans the decoded "
    "payload and reports what it would do separately.",
    remediation="Remove the payload from the config/metadata; store data in a data-only format.",
)
CONFIG_SECRET = Rule(
    id="CFG002",
    title="Secret in a model config or metadata",
    severity=Severity.HIGH,
    confidence=Confidence.MEDIUM,
    stage=Stage.ARTIFACT,
    profile="secrets-and-personal-data",
    description="A credential (cloud key, token, private key, password) is stored in a model "
    "config or in safetensors metadata, which are published with the model.",
    remediation="Revoke the credential and remove it from the file (and from the published "
    "revisions); read credentials from the environment or a secret manager.",
)

# the rules this module's checks emit (listed in bastion.catalogue)
RULES = (CARRIED_PAYLOAD, CONFIG_SECRET)

MAX_STRINGS = 200_000  # strings examined per file
MAX_DEPTH = 64
MAX_SECRET_LINES = 5_000  # candidate lines handed to the secret detectors per file
MAX_SECRET_VALUE = 10_000
MAX_JSON_LEVELS = 2  # JSON documents inside string values, inside string values
_CREDENTIAL_KEY = re.compile(
    r"pass|pwd|secret|token|key|auth|cred|api|access|private|session|"
    r"cookie|bearer|signature|sas|conn",
    re.IGNORECASE,
)
_URL_CREDENTIALS = re.compile(r"://[^/\s:@]+:[^/\s@]+@")


def _secret_shaped(text: str) -> bool:
    """Long text without whitespace (tokens, keys), a PEM block, or a URL with a password."""
    if "-----BEGIN" in text or ("@" in text and _URL_CREDENTIALS.search(text)):
        return True
    if text[:1] == "<" and text[-1:] == ">":
        return False  # a tokenizer's special token (<|reserved_special_token_7|>)
    return len(text) >= 16 and not any(space in text for space in " \n\t")


def _join(parent: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else key


def strings_in(
    value: object, limit: int = MAX_STRINGS, prefix: str = ""
) -> Iterator[tuple[str, str | int, str]]:
    """(parent path, key or index, string) for every string value, depth-first, at most
    `limit`; `_join(parent, key)` is its JSON path (built only when needed)."""
    stack: list[tuple[str, str | int, object, int]] = [("", prefix, value, 0)]
    count = 0
    while stack and count < limit:
        parent, key, item, depth = stack.pop()
        if isinstance(item, str):
            count += 1
            yield parent, key, item
        elif depth < MAX_DEPTH and isinstance(item, (dict, list)):
            path = _join(parent, key) if depth or key else ""
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            stack.extend(
                (path, k if isinstance(k, int) else str(k), child, depth + 1)
                for k, child in reversed(list(pairs))
            )


def keys_in(config: object, keys: tuple[str, ...]) -> Iterator[tuple[str, str, object]]:
    """(path, key, value) for each of `keys` anywhere in the config, bounded."""
    stack: list[tuple[str, object, int]] = [("", config, 0)]
    seen = 0
    while stack and seen < MAX_STRINGS:
        path, item, depth = stack.pop()
        seen += 1
        if depth >= MAX_DEPTH:
            continue
        if isinstance(item, dict):
            for key, child in item.items():
                if key in keys:
                    yield _join(path, str(key)), str(key), child
                if isinstance(child, (dict, list)):
                    stack.append((_join(path, str(key)), child, depth + 1))
        elif isinstance(item, list):
            stack.extend(
                (_join(path, i), child, depth + 1)
                for i, child in enumerate(item)
                if isinstance(child, (dict, list))
            )


def check_values(
    ctx: ScanContext, source: Source, value: object, what: str, prefix: str = "", level: int = 0
) -> None:
    """Scan the payloads carried in `value`'s strings and report the credentials in it. A
    string that is itself a JSON object or array (training tools store metadata so) is checked
    the same way, MAX_JSON_LEVELS deep."""
    from bastion.scan.embedded import payloads_in, worth_decoding

    candidates: list[tuple[str, str]] = []
    skipped = 0
    inner: list[tuple[str, object]] = []
    for index, (parent, key, text) in enumerate(strings_in(value, prefix=prefix)):
        if index & 0xFFF == 0:
            ctx.check_time()
        if level < MAX_JSON_LEVELS and text[:1] in ("{", "[") and text[-1:] in ("}", "]"):
            parsed = _json_value(text, ctx.limits.max_metadata)
            if isinstance(parsed, (dict, list)):
                inner.append((f"{_join(parent, key)}<json>", parsed))
        if _may_carry_payload(text) and worth_decoding(text):
            for payload in payloads_in(text, ctx.limits.max_pickle):
                _scan_payload(
                    ctx, source, _join(parent, key), payload.how, payload.fmt, payload.data, what
                )
        if 8 <= len(text) <= MAX_SECRET_VALUE and (
            _secret_shaped(text) or (isinstance(key, str) and _CREDENTIAL_KEY.search(key))
        ):
            if len(candidates) < MAX_SECRET_LINES:
                candidates.append((_join(parent, key), text))
            else:
                skipped += 1
    _report_secrets(ctx, source, candidates, what)
    if skipped:
        ctx.skip(
            source.location,
            f"{skipped} more {what} values that could hold credentials "
            f"were not checked (limit {MAX_SECRET_LINES})",
            "limit",
        )
    for path, parsed in inner:
        check_values(ctx, source, parsed, what, path, level + 1)


def _json_value(text: str, limit: int) -> object:
    if len(text) > limit:
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _may_carry_payload(text: str) -> bool:
    """Cheap necessary condition, so that the 100,000s of short strings of a tokenizer.json
    are not decoded one by one: a raw pickle that names a global holds a newline (GLOBAL, INST)
    or a byte outside printable ASCII (PROTO, STACK_GLOBAL), as do the raw archives and
    compressed streams; text that is printable and on one line can carry one only encoded,
    and hex/base64 payloads carry no spaces."""
    if len(text) < MIN_PAYLOAD:
        return False
    if not text.isascii() or not text.isprintable():
        return True  # control characters (newline included) or non-ASCII code points
    return " " not in text


def _scan_payload(
    ctx: ScanContext, source: Source, path: str, how: str, fmt: str, data: bytes, what: str
) -> None:
    before = len(ctx.findings)
    member = f"<{what} {path[:120]} ({how})>"
    child = bytes_source(
        data,
        member,
        source.location.model_copy(
            update={"members": (*source.location.members, member), "pointer": None}
        ),
        depth=source.depth + 1,
    )
    if fmt == "pickle":  # a decoded value may be anything: broken streams are not reported
        from bastion.scan.pickle import scan_pickle

        ctx.formats.append("pickle")
        scan_pickle(ctx, child, speculative=True)
    else:
        ctx.scan(child, fmt)
    if len(ctx.findings) > before:  # decoded into something bastion reports: say where it was
        where = source.location.model_copy(update={"pointer": path[:200] or None})
        ctx.add(
            CARRIED_PAYLOAD.finding(
                where,
                f"{what} value '{path[:120]}' holds a {fmt} payload ({how}); its findings "
                "are reported against the decoded value",
                evidence=f"{path[:120]}: {fmt} ({how})",
            )
        )


def _report_secrets(
    ctx: ScanContext, source: Source, candidates: list[tuple[str, str]], what: str
) -> None:
    if not candidates:
        return
    from bastion.secrets import available, secrets_in

    if not available():
        ctx.skip(
            source.location,
            f"secrets in {what} values not checked: detect-secrets is not installed",
            "missing-extra",
            extra="code",
        )
        return
    text = "\n".join(f"{json.dumps(path[-80:])}: {json.dumps(value)}" for path, value in candidates)
    for line, _column, kind in secrets_in(text):
        path = candidates[line - 1][0] if 0 < line <= len(candidates) else "?"
        ctx.add(
            CONFIG_SECRET.finding(
                source.location.model_copy(update={"pointer": path[:200] or None}),
                f"{kind} in {what} value '{path[:120]}' (value not shown)",
                evidence=f"{kind} at {path[:120]}",
            )
        )

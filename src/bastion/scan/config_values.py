"""Values inside model configs and metadata (JSON configs, safetensors `__metadata__`): a
serialized payload carried as a string (raw, hex, base64, compressed; decoded by
scan/embedded.py) is what the next consumer loads, so it is scanned like a file; a credential is
a leak. Work is bounded: strings examined, payload size, candidate lines for the secret
detectors (detect-secrets, through supplychain/secrets.py)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

from bastion.findings import Confidence, Severity, Stage
from bastion.rules import Rule
from bastion.scan.base import ScanContext
from bastion.scan.source import Source, bytes_source

CARRIED_PAYLOAD = Rule(
    id="CFG001", title="Config or metadata value carries a serialized payload",
    severity=Severity.LOW, confidence=Confidence.HIGH, stage=Stage.ARTIFACT,
    profile="model-code-execution",
    description="A string in a model config or in safetensors metadata holds a pickle or an "
                "archive (raw or hex/base64/compressed). Code that reads the value and "
                "deserializes it runs whatever the payload names; bastion scans the decoded "
                "payload and reports what it would do separately.",
    remediation="Remove the payload from the config/metadata; store data in a data-only format.",
)
CONFIG_SECRET = Rule(
    id="CFG002", title="Secret in a model config or metadata", severity=Severity.HIGH,
    confidence=Confidence.MEDIUM, stage=Stage.ARTIFACT, profile="secrets-and-personal-data",
    description="A credential (cloud key, token, private key, password) is stored in a model "
                "config or in safetensors metadata, which are published with the model.",
    remediation="Revoke the credential and remove it from the file (and from the published "
                "revisions); read credentials from the environment or a secret manager.",
)

MAX_STRINGS = 200_000  # strings examined per file
MAX_DEPTH = 64
MAX_SECRET_LINES = 20_000  # candidate lines handed to the secret detectors per file
MAX_SECRET_VALUE = 10_000
_CREDENTIAL_KEY = re.compile(r"pass|pwd|secret|token|key|auth|cred|api|access|private|session|"
                             r"cookie|bearer|signature|sas|conn", re.IGNORECASE)
_SECRET_SHAPED = re.compile(r"\A[^\s]{16,}\Z|-----BEGIN|://[^/\s]*:[^/\s]*@")


def strings_in(value: object, limit: int = MAX_STRINGS) -> Iterator[tuple[str, str]]:
    """(JSON path, string) for every string value and key, depth-first, at most `limit`."""
    stack: list[tuple[str, object, int]] = [("", value, 0)]
    count = 0
    while stack and count < limit:
        path, item, depth = stack.pop()
        if isinstance(item, str):
            count += 1
            yield path, item
        elif depth < MAX_DEPTH and isinstance(item, dict):
            for key, child in reversed(list(item.items())):
                key = str(key)
                stack.append((f"{path}.{key}" if path else key, child, depth + 1))
        elif depth < MAX_DEPTH and isinstance(item, list):
            for index in range(len(item) - 1, -1, -1):
                stack.append((f"{path}[{index}]", item[index], depth + 1))


def check_values(ctx: ScanContext, source: Source, value: object, what: str) -> None:
    """Scan the payloads carried in `value`'s strings and report the credentials in it."""
    from bastion.scan.embedded import payloads_in, worth_decoding

    candidates: list[tuple[str, str]] = []
    for path, text in strings_in(value):
        ctx.check_time()
        if worth_decoding(text):
            for payload in payloads_in(text, ctx.limits.max_pickle):
                _scan_payload(ctx, source, path, payload.how, payload.fmt, payload.data, what)
        if 8 <= len(text) <= MAX_SECRET_VALUE and len(candidates) < MAX_SECRET_LINES and (
                _CREDENTIAL_KEY.search(path.rsplit(".", 1)[-1]) or _SECRET_SHAPED.search(text)):
            candidates.append((path, text))
    _report_secrets(ctx, source, candidates, what)


def _scan_payload(ctx: ScanContext, source: Source, path: str, how: str, fmt: str, data: bytes,
                  what: str) -> None:
    where = source.location.model_copy(update={"pointer": path[:200] or None})
    ctx.add(CARRIED_PAYLOAD.finding(
        where, f"{what} value '{path[:120]}' holds a {fmt} payload ({how}); scanned as a file",
        evidence=f"{path[:120]}: {fmt} ({how})"))
    member = f"<{what} {path[:120]} ({how})>"
    child = bytes_source(data, member, source.location.model_copy(
        update={"members": (*source.location.members, member), "pointer": None}),
        depth=source.depth + 1)
    if fmt == "pickle":  # a decoded value may be anything: broken streams are not reported
        from bastion.scan.pickle import scan_pickle

        ctx.formats.append("pickle")
        scan_pickle(ctx, child, speculative=True)
    else:
        ctx.scan(child, fmt)


def _report_secrets(ctx: ScanContext, source: Source, candidates: list[tuple[str, str]],
                    what: str) -> None:
    if not candidates:
        return
    from bastion.supplychain.secrets import available, secrets_in

    if not available():
        ctx.skip(source.location, f"secrets in {what} values not checked: detect-secrets is "
                 "not installed", "missing-extra", extra="code")
        return
    text = "\n".join(f"{json.dumps(path[-80:])}: {json.dumps(value)}"
                     for path, value in candidates)
    for line, _column, kind in secrets_in(text):
        path = candidates[line - 1][0] if 0 < line <= len(candidates) else "?"
        ctx.add(CONFIG_SECRET.finding(
            source.location.model_copy(update={"pointer": path[:200] or None}),
            f"{kind} in {what} value '{path[:120]}' (value not shown)",
            evidence=f"{kind} at {path[:120]}"))

"""Secrets in text, found with detect-secrets' detectors — one engine shared by code analysis,
scan's config checks, the data stage and the guard, so it sits below the capability families.
High-entropy detectors are left out: on ML code they fire on hashes, checksums and base64
weights far more than on secrets."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator

_PLUGINS = (
    "ArtifactoryDetector",
    "AWSKeyDetector",
    "AzureStorageKeyDetector",
    "BasicAuthDetector",
    "CloudantDetector",
    "DiscordBotTokenDetector",
    "GitHubTokenDetector",
    "GitLabTokenDetector",
    "IbmCloudIamDetector",
    "IbmCosHmacDetector",
    "JwtTokenDetector",
    "KeywordDetector",
    "MailchimpDetector",
    "NpmDetector",
    "OpenAIDetector",
    "PrivateKeyDetector",
    "PypiTokenDetector",
    "SendGridDetector",
    "SlackDetector",
    "SoftlayerDetector",
    "SquareOAuthDetector",
    "StripeDetector",
    "TelegramBotTokenDetector",
    "TwilioKeyDetector",
)
MAX_LINE = 10_000  # a longer line (minified code, a notebook's JSON) is scanned in pieces:
BEFORE, AFTER = 300, 2_000  # characters around each pre-filter match in it
MAX_PIECES = 50  # pieces of one line
# Credentials detect-secrets 1.5 has no detector for, and that ML projects hold: Hugging Face
# access tokens, newer OpenAI and Anthropic keys, Google API keys.
_EXTRA_PATTERNS = (
    ("Hugging Face Token", re.compile(r"(?<![A-Za-z0-9])hf_[A-Za-z0-9]{30,}")),
    ("OpenAI Token", re.compile(r"(?<![A-Za-z0-9])sk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{20,}")),
    ("Anthropic API Key", re.compile(r"(?<![A-Za-z0-9])sk-ant-[A-Za-z0-9_-]{20,}")),
    ("Google API Key", re.compile(r"(?<![A-Za-z0-9])AIza[0-9A-Za-z_-]{35}")),
)


# What a line needs before any of the detectors above (or bastion's own patterns) can fire
# on it, read off each detector's regular expressions (detect-secrets 1.5): a line without it
# skips the (slow) detect-secrets call. Case-insensitive where a detector is case-sensitive
# (a superset); RE2-compatible, so the data check runs it vectorised (pyarrow.compute) too.
# tests/test_secrets_prefilter.py holds it against detect-secrets' own test strings: no line
# on which a detector fires may go unmatched. Where a detector's class is \d (any script's
# digits in Python), so is this one's; the data check runs it in RE2 only on text both
# engines read alike (personal.detectors.NOT_RE2_SAFE_PATTERN). Plain words are not enough:
# English prose is full of "key", "auth", "api", "pass" and "begin", none of which any
# detector fires on alone.
SECRET_PREFILTER_PATTERN = (
    r"(?i:"
    # KeywordDetector: its denylist of names (with any prefix and suffix); IbmCosHmacDetector's
    # secret[-_]?(access)?[-_]?key holds "secret"
    r"(?:api|auth|service|account|db|database|priv|private|client)_?key|"
    r"(?:db|database|key)_?pass|passw(?:or)?d|pwd|secret|contrase(?:ñ|n)a|"
    # IbmCloudIamDetector: key, pwd, pass or token, an assignment (quotes, brackets, spaces,
    # = or :), then a 44-character key
    r"(?:key|pwd|pass|token)[^a-z0-9_\-]+[a-z0-9_\-]{44}|"
    # CloudantDetector, SoftlayerDetector and AWSKeyDetector's named forms
    r"cl(?:ou(?:dant)?)?[-_]?(?:api)?(?:key|pw|pass|token)|"
    r"(?:softlayer|sl)[-_]?(?:api)?(?:key|pwd|pass|token)|softlayer.com/soap|"
    r"aws.{0,20}(?:key|pw|pass|token)|"
    # tokens by their shape: AWS, Artifactory, Azure, Discord, GitHub, GitLab, JWT, Mailchimp,
    # npm, OpenAI, private keys, PyPI, SendGrid, Slack, Square, Stripe, Telegram, Twilio;
    # credentials in a URL (BasicAuth; Cloudant's URLs too)
    r"(?:a3t[a-z0-9]|abia|acca|akia|asia)[0-9a-z]{16}|"
    r"(?:^|[\s=:\"])(?:akc[a-z0-9]{10}|ap[\da-f][a-z0-9]{8})|"
    r"accountkey=|[mno][a-z\d_-]{23,25}\.|gh[pousr]_|"
    r"(?:glpat|gldt|glft|glsoat|glrt|glcbt|glimt|glptt|glagent|gloas)-|gr1348941|eyj|"
    r"[0-9a-z]{32}-us[0-9]|_authtoken=|t3blbkfj|"
    r"begin (?:dsa |ec |openssh |pgp |rsa |ssh2 encrypted )?private key|putty-user-key-file-2|"
    r"pypi-age|sg\.[a-z0-9_-]{22}\.|xox[abposr]-|hooks\.slack\.com|sq0csp-|[rs]k_live_|"
    r"\d{8,10}:[0-9a-z_-]{35}|(?:ac|sk)[a-z0-9]{32}|://[^\s/]*:[^\s/]*@|"
    # bastion's own (_EXTRA_PATTERNS): Hugging Face, newer OpenAI and Anthropic, Google
    r"hf_[a-z0-9]{30}|sk-(?:proj|svcacct|admin|ant)-|aiza[0-9a-z_-]{35}"
    r")"
)
_PREFILTER = re.compile(SECRET_PREFILTER_PATTERN)
# the same, case-sensitive, on lowered ASCII text: three times faster in Python's re
_PREFILTER_LOWERED = re.compile(SECRET_PREFILTER_PATTERN[len("(?i:") : -1])


def may_hold_secret(line: str) -> bool:
    """Whether any detector of `secrets_in` could fire on `line` (see the pattern above)."""
    if line.isascii():
        return _PREFILTER_LOWERED.search(line.lower()) is not None
    return _PREFILTER.search(line) is not None


@functools.cache
def _settings() -> dict[str, object]:
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class

    mapping: dict[str, type] = get_mapping_from_secret_type_to_class()
    available = {plugin.__name__ for plugin in mapping.values()}
    return {
        "plugins_used": [{"name": name} for name in _PLUGINS if name in available],
        "filters_used": [
            {"path": "detect_secrets.filters.heuristic.is_indirect_reference"},
            {"path": "detect_secrets.filters.heuristic.is_templated_secret"},
            {"path": "detect_secrets.filters.heuristic.is_likely_id_string"},
            {"path": "detect_secrets.filters.heuristic.is_sequential_string"},
            {"path": "detect_secrets.filters.heuristic.is_potential_uuid"},
        ],
    }


def secrets_in(text: str) -> Iterator[tuple[int, int, str]]:
    """(line, column, kind) of each secret in `text`; secret values are never returned."""
    try:
        from detect_secrets.core.scan import scan_line
        from detect_secrets.settings import transient_settings
    except ImportError:  # the [code] extra is missing; callers report the gap
        return
    with transient_settings(_settings()):
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip() or not may_hold_secret(line):
                continue
            seen: set[str] = set()
            for offset, piece in _pieces(line):
                for secret in scan_line(piece):
                    if secret.type in seen:
                        continue
                    seen.add(secret.type)
                    value = _token(secret.secret_value or "")
                    column = piece.find(value) + 1 if value and value in piece else 1
                    yield number, offset + column, secret.type
                for kind, pattern in _EXTRA_PATTERNS:
                    match = pattern.search(piece)
                    if match and kind not in seen:
                        seen.add(kind)
                        yield number, offset + match.start() + 1, kind


def _pieces(line: str) -> Iterator[tuple[int, str]]:
    """(offset, text) of what detect-secrets scans of `line`: the line itself, or of a line
    over MAX_LINE (which its patterns would take long over) the text from BEFORE characters
    before each pre-filter match to AFTER after it, overlapping pieces merged up to MAX_LINE
    characters, at most MAX_PIECES of them. It skipped such lines: a token in a line of
    minified code was never seen."""
    if len(line) <= MAX_LINE:
        yield 0, line
        return
    lowered = line.lower() if line.isascii() else None
    matches = (
        _PREFILTER_LOWERED.finditer(lowered) if lowered is not None else _PREFILTER.finditer(line)
    )
    start = end = -1
    count = 0
    for match in matches:
        left = max(0, match.start() - BEFORE)
        right = min(len(line), match.end() + AFTER, left + MAX_LINE)
        if left <= end and right - start <= MAX_LINE:
            end = max(end, right)
            continue
        if end >= 0:
            yield start, line[start:end]
            count += 1
            if count >= MAX_PIECES:
                return
        start, end = left, right
    if end >= 0:
        yield start, line[start:end]


def _token(value: str) -> str:
    r"""A reported value without the delimiter some detectors match in front of it
    (Artifactory's `(?:\s|=|:|"|^)AKC...`): the column names the token itself."""
    start = 0
    while start < len(value) and (value[start].isspace() or value[start] in "=:\"'"):
        start += 1
    return value[start:]


def available() -> bool:
    try:
        import detect_secrets  # noqa: F401
    except ImportError:
        return False
    return True

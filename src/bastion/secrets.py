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
MAX_LINE = 10_000
# Credentials detect-secrets 1.5 has no detector for, and that ML projects hold: Hugging Face
# access tokens, newer OpenAI and Anthropic keys, Google API keys.
_EXTRA_PATTERNS = (
    ("Hugging Face Token", re.compile(r"(?<![A-Za-z0-9])hf_[A-Za-z0-9]{30,}")),
    ("OpenAI Token", re.compile(r"(?<![A-Za-z0-9])sk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{20,}")),
    ("Anthropic API Key", re.compile(r"(?<![A-Za-z0-9])sk-ant-[A-Za-z0-9_-]{20,}")),
    ("Google API Key", re.compile(r"(?<![A-Za-z0-9])AIza[0-9A-Za-z_-]{35}")),
)


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
            if not line.strip() or len(line) > MAX_LINE:
                continue
            seen: set[str] = set()
            for secret in scan_line(line):
                if secret.type in seen:
                    continue
                seen.add(secret.type)
                value = secret.secret_value or ""
                column = line.find(value) + 1 if value and value in line else 1
                yield number, column, secret.type
            for kind, pattern in _EXTRA_PATTERNS:
                match = pattern.search(line)
                if match and kind not in seen:
                    seen.add(kind)
                    yield number, match.start() + 1, kind


def available() -> bool:
    try:
        import detect_secrets  # noqa: F401
    except ImportError:
        return False
    return True

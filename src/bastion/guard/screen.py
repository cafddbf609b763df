"""Sensitive data in requests and answers, and prompt-injection markers in chat text.

Personal data and secrets are found by the data stage's detectors (`datacheck.detectors`:
shapes with check digits, numbering plans and issuer ranges, and `bastion.secrets`), never by
a second copy of them. In a tabular row, a value that is one of its column's categories in the
contract came from the trusted training data and is not examined again; integers of eight
digits or more are examined as digit strings (a card number sent as a number is still one).
Only kinds and counts leave this module: the values found are never logged, audited or echoed.

Prompt injection is flagged with a documented heuristic set (`INJECTION_MARKERS`, described in
docs/guard.md): instruction overrides, system-prompt extraction, jailbreak personas, forged
chat-template delimiters, invisible Unicode (tag characters, bidirectional overrides) and
markdown exfiltration links. An ML classifier can be handed to the guard
(`create_app(..., injection_classifier=fn)`); it runs only when enabled in guard.toml, in a
thread, within its own latency budget (past it the verdict is `timeout` and the heuristics
stand alone)."""

from __future__ import annotations

import concurrent.futures
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from bastion.datacheck import detectors

MIN_DIGITS = 8  # integers shorter than this cannot be an identifier the detectors know

# (marker id, what it catches, pattern); each is documented in docs/guard.md
INJECTION_MARKERS: tuple[tuple[str, str, re.Pattern[str]], ...] = (
    (
        "override",
        "an instruction to drop earlier instructions",
        re.compile(
            r"\b(?:ignore|disregard|forget|override|bypass|skip)\b[\w\s,'-]{0,40}?"
            r"\b(?:previous|prior|preceding|above|earlier|initial|original|system|all)\b"
            r"[\w\s-]{0,20}?\b(?:instructions?|prompts?|rules|directions|guidelines|guardrails)\b",
            re.IGNORECASE,
        ),
    ),
    (
        "prompt-extraction",
        "a request to reveal the system prompt or hidden instructions",
        re.compile(
            r"\b(?:reveal|show|print|repeat|output|display|leak|tell me|what (?:is|are))\b"
            r"[\w\s,'-]{0,30}?\b(?:system|hidden|initial|secret|original)\s+"
            r"(?:prompt|instructions?|message|rules)\b",
            re.IGNORECASE,
        ),
    ),
    (
        "persona",
        "a jailbreak persona or mode switch",
        re.compile(
            r"\b(?:you are now|from now on,? you are|act as|pretend (?:to be|you are))\b"
            r"[\w\s,'-]{0,30}?\b(?:DAN|unrestricted|unfiltered|jailbroken|uncensored|"
            r"without (?:any )?(?:restrictions|limits|rules|filters))\b"
            r"|\bdeveloper mode\b|\bdo anything now\b",
            re.IGNORECASE,
        ),
    ),
    (
        "delimiter",
        "forged chat-template or role delimiters",
        re.compile(
            r"<\|(?:im_start|im_end|system|user|assistant|endoftext|begin_of_text|"
            r"start_header_id|eot_id)\|>|\[/?INST\]|<</?SYS>>|</?system>|"
            r"^\s*#{2,}\s*(?:system|instruction)s?\s*:?\s*$",
            re.IGNORECASE | re.MULTILINE,
        ),
    ),
    (
        "invisible",
        "invisible Unicode: tag characters (ASCII smuggling) or bidirectional overrides",
        re.compile(r"[\U000E0000-\U000E007F]|[\u202A-\u202E\u2066-\u2069]"),
    ),
    (
        "exfiltration-link",
        "a markdown image or link whose URL carries a query string (data exfiltration when "
        "the answer is rendered)",
        re.compile(r"!\[[^\]]{0,100}\]\(\s*https?://[^\s)]{1,200}\?[^\s)]{0,500}=", re.IGNORECASE),
    ),
)


def personal_data(text: str, max_chars: int) -> list[detectors.Match]:
    return detectors.detect(text, max_chars=max_chars)


class TextTooLong(Exception):
    """A value longer than the screen examines: refused, never passed on unexamined."""


class RowScreen:
    """Personal data and secrets in tabular rows."""

    def __init__(self, categories: Mapping[str, frozenset[str]], max_chars: int) -> None:
        self.categories = categories
        self.max_chars = max_chars

    def rows(
        self, rows: Sequence[Mapping[str, Any]], redact: bool
    ) -> tuple[list[str], list[dict[str, Any]] | None]:
        """(kinds found, in order; the rows with each value found replaced by its redacted form
        when `redact`, else None). TextTooLong when a value is longer than `max_chars`: the
        detectors only look at that many characters, so a longer value could carry personal
        data past them."""
        kinds: list[str] = []
        redacted: list[dict[str, Any]] | None = [] if redact else None
        for row in rows:
            copy = dict(row) if redact else None
            for column, value in row.items():
                if isinstance(value, str):
                    if value in self.categories.get(column, ()):
                        continue
                    text = value
                elif isinstance(value, int) and not isinstance(value, bool):
                    if abs(value) < 10 ** (MIN_DIGITS - 1):
                        continue
                    text = str(value)
                else:
                    continue
                if len(text) > self.max_chars:
                    raise TextTooLong(column)
                found = detectors.detect(text, hint=None, max_chars=self.max_chars)
                if found:
                    kinds += [m.kind for m in found]
                    if copy is not None:
                        copy[column] = detectors.redact(text, max_chars=self.max_chars)
            if redacted is not None and copy is not None:
                redacted.append(copy)
        return kinds, redacted


def screen_text(text: str, max_chars: int, redact: bool) -> tuple[list[str], str | None]:
    """(kinds found, the redacted text when `redact`)."""
    found = detectors.detect(text, max_chars=max_chars)
    if not found:
        return [], text if redact else None
    return [m.kind for m in found], detectors.redact(text, max_chars=max_chars) if redact else None


def injection_markers(text: str) -> list[str]:
    """The ids of INJECTION_MARKERS found in `text`."""
    return [name for name, _, pattern in INJECTION_MARKERS if pattern.search(text)]


class Classifier:
    """An injection classifier (text -> probability) run within a latency budget."""

    def __init__(self, function: Callable[[str], float], budget_ms: float, threshold: float):
        self.function = function
        self.budget = budget_ms / 1000
        self.threshold = threshold
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=2, thread_name_prefix="bastion-injection"
        )

    def verdict(self, text: str) -> str:
        """`injection`, `clean`, `timeout` or `error`."""
        future = self._pool.submit(self.function, text)
        try:
            score = float(future.result(timeout=self.budget))
        except concurrent.futures.TimeoutError:
            future.cancel()
            return "timeout"
        except Exception:
            return "error"
        return "injection" if score >= self.threshold else "clean"

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def texts_of(document: Any) -> list[str]:
    """Every string in a JSON document, object keys included, in order. Not truncated: a
    document is bounded by the JSON caps it was parsed under, and a string left out would pass
    the screen unexamined."""
    out: list[str] = []
    stack = [document]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, dict):
            for key, value in reversed(list(item.items())):
                stack.append(value)
                stack.append(key)
        elif isinstance(item, list):
            stack.extend(reversed(item))
    return out


def chat_texts(document: Any) -> list[str]:
    """The message contents of an OpenAI-style chat request (string or a list of text parts)."""
    out: list[str] = []
    messages = document.get("messages") if isinstance(document, dict) else None
    if not isinstance(messages, list):
        return out
    for message in messages:
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, str):
            out.append(content)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    out.append(part["text"])
    return out


def redact_document(document: Any, max_chars: int) -> tuple[Any, list[str]]:
    """A copy of a JSON document with personal data in every string (object keys included)
    redacted; and the kinds."""
    kinds: list[str] = []

    def walk(item: Any) -> Any:
        if isinstance(item, str):
            found, redacted = screen_text(item, max_chars, True)
            kinds.extend(found)
            return redacted if found else item
        if isinstance(item, dict):
            return {walk(key): walk(value) for key, value in item.items()}
        if isinstance(item, list):
            return [walk(value) for value in item]
        return item

    return walk(document), kinds

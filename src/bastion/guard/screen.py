"""Sensitive data in requests and answers, and prompt-injection markers in chat text.

Personal data and secrets are found by the shared personal-data detectors (`personal.detectors`:
shapes with check digits, numbering plans and issuer ranges, and `bastion.secrets`), never by
a second copy of them. In a tabular row, a value that is one of its column's categories in the
contract came from the trusted training data and is not examined again. A column whose name
says what it holds ("ssn", "bsn", "telefon": `datacheck.semantics`) lets the weak shapes of
that kind count, as in the data check. Numbers are personal data too (`RowScreen`):

- a JSON integer, or a float with an integral value (4111111111111111.0, 4.1e15), is examined
  as its digit string under the same rules as text: with STRONG_DIGITS digits or more
  anywhere (the shortest strong shape, the German tax id, has eleven), with MIN_DIGITS or more
  in a column whose name gives the kind, zero-padded to the kind's length when the number lost
  its leading zeros (a PESEL of the 2000s, a BSN starting with 0) and, for a phone column,
  also with the + the number lost. Shorter numbers (an income of 45000, an age of 37) cannot
  be any identifier the detectors know and are not looked at.
- split across adjacent fields (in the order the row has them; at most SPLIT_MAX_PARTS
  fields joined, so the work per row is linear in its length): a payment card in 3 to 5
  fields whose digit counts are a card's grouping (4-4-4-4, 4-6-5, …; one integer field may
  have lost its leading zeros) and whose digits pass the issuer range, length and Luhn check;
  a US SSN in three fields of 3-2-4 digits when one of their names says SSN; a phone number
  as a country code (1-3 digits, or +44) followed by the number when one of the two names
  says phone or dialling code, valid in phonenumbers' numbering plan as an international
  number. A field counts as a part when it holds only digits (spaces and dashes allowed in a
  string): an integer, an integral float, or a digit string.

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
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from bastion.personal import detectors
from bastion.personal import identifiers as ids

MIN_DIGITS = 7  # numbers shorter than a national phone number are not examined
STRONG_DIGITS = 11  # the shortest shape that counts without a keyword or a column name
MAX_DIGITS = 30  # longer numbers are not an identifier (and str() of huge ints is refused)
SPLIT_MAX_PARTS = 5
MAX_HINTS = 4096  # column names whose hint is remembered
# kinds with a fixed number of digits, and their length
_LENGTHS = {"us_ssn": 9, "nl_bsn": 9, "pl_pesel": 11, "de_tax_id": 11, "in_aadhaar": 12}
_CARD_GROUPS = frozenset(
    {(4, 4, 4, 4), (4, 6, 5), (4, 6, 4), (4, 4, 4, 4, 3), (4, 4, 4, 4, 2), (4, 4, 4)}
)
_DIAL_CODE = re.compile(
    r"(?:country|dial(?:l?ing)?|calling|phone|tel)[\s_-]*(?:code|prefix)|^(?:cc|isd|idd)$|^prefix$",
    re.IGNORECASE,
)
_DIGIT_TEXT = re.compile(r"\+?\d[\d \-]{0,20}")
_NOT_DIGIT = re.compile(r"[ \-]")


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
    """Personal data and secrets in tabular rows (see the module docstring for numbers and
    split fields)."""

    def __init__(self, categories: Mapping[str, frozenset[str]], max_chars: int) -> None:
        self.categories = categories
        self.max_chars = max_chars
        self._hints: dict[str, str | None] = {}

    def hint(self, column: str) -> str | None:
        """The detector kind a column's name says it holds, or None."""
        known = self._hints.get(column, False)
        if known is not False:
            return known  # type: ignore[return-value]
        from bastion.datacheck.semantics import column_semantic

        semantic = column_semantic(column)
        kind = semantic if semantic in detectors.KINDS else None
        if len(self._hints) >= MAX_HINTS:  # hostile clients send endless new names
            self._hints.clear()
        self._hints[column] = kind
        return kind

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
            parts: list[tuple[str, str, bool]] = []  # a run of adjacent digit-only fields
            for column, value in row.items():
                part = None
                if isinstance(value, str):
                    if value in self.categories.get(column, ()):
                        parts.clear()
                        continue
                    if len(value) > self.max_chars:
                        raise TextTooLong(column)
                    hint = self.hint(column)
                    found = detectors.detect(value, hint=hint, max_chars=self.max_chars)
                    if found and copy is not None:
                        copy[column] = detectors.redact(value, hint=hint, max_chars=self.max_chars)
                    if len(value) <= 22 and _DIGIT_TEXT.fullmatch(value):
                        part = (column, _NOT_DIGIT.sub("", value), False)
                else:
                    digits = _digits_of(value)
                    if digits is None:
                        parts.clear()
                        continue
                    found = []
                    if len(digits) >= MIN_DIGITS:
                        found = self._number(column, digits)
                        if found and copy is not None:
                            copy[column] = "".join(m.redacted for m in found)
                    part = (column, digits, True)
                if found:
                    kinds += [m.kind for m in found]
                if part is None:
                    parts.clear()
                    continue
                parts.append(part)
                del parts[:-SPLIT_MAX_PARTS]
                split = self._split(parts)
                if split is not None:
                    kind, count = split
                    kinds.append(kind)
                    if copy is not None:
                        for name, _, _ in parts[-count:]:
                            copy[name] = "****"
                    parts.clear()
            if redacted is not None and copy is not None:
                redacted.append(copy)
        return kinds, redacted

    def _number(self, column: str, digits: str) -> list[detectors.Match]:
        """A number's digits under the text rules (see the module docstring)."""
        hint = self.hint(column)
        if hint is None:
            if len(digits) < STRONG_DIGITS:
                return []
            return detectors.detect(digits, max_chars=self.max_chars)
        length = _LENGTHS.get(hint)
        if length is not None and 0 < length - len(digits) <= 2:
            digits = digits.zfill(length)
        found = detectors.detect(digits, hint=hint, max_chars=self.max_chars)
        if not found and hint == "phone" and len(digits) >= 9:
            found = detectors.detect("+" + digits, hint=hint, max_chars=self.max_chars)
        return found

    def _split(self, parts: list[tuple[str, str, bool]]) -> tuple[str, int] | None:
        """(kind, number of fields) when the last fields of `parts` are one identifier."""
        if len(parts) < 2:
            return None
        for count in range(2, len(parts) + 1):
            window = parts[-count:]
            kind = self._joined(window)
            if kind is not None:
                return kind, count
        return None

    def _joined(self, window: list[tuple[str, str, bool]]) -> str | None:
        lengths = tuple(len(digits.lstrip("+")) for _, digits, _ in window)
        if len(window) >= 3 and lengths[0] == 4:
            card = _card_digits(window, lengths)
            if card is not None and ids.card_valid(card) and not ids.isbn_valid(card):
                return "credit_card"
        if len(window) == 3 and any(self.hint(name) == "us_ssn" for name, _, _ in window):
            number = "".join(number_parts(window))
            if [len(d) for d, _ in zip(number_parts(window), (3, 2, 4), strict=True)] == [3, 2, 4]:
                return "us_ssn" if ids.us_ssn_valid(number) else None
        if len(window) == 2 and 1 <= lengths[0] <= 3 and 6 <= lengths[1] <= 12:
            (first, code, _), (second, number, _) = window
            named = (
                _DIAL_CODE.search(first) is not None
                or self.hint(first) == "phone"
                or self.hint(second) == "phone"
            )
            if named and not number.startswith("+"):
                return "phone" if detectors.phone_valid("+" + code.lstrip("+") + number) else None
        return None


def number_parts(window: list[tuple[str, str, bool]]) -> list[str]:
    """The SSN's three parts, integers padded to 3, 2 and 4 digits."""
    return [
        d.zfill(width) if is_int else d
        for (_, d, is_int), width in zip(window, (3, 2, 4), strict=True)
    ]


def _digits_of(value: Any) -> str | None:
    """The digits of a number sent as JSON: an integer, or a float with an integral value;
    None for anything else (booleans, fractions, NaN, numbers too long to be an identifier)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = abs(value)
    elif isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            return None
        number = int(abs(value))
    else:
        return None
    if number >= 10**MAX_DIGITS:
        return None
    return str(number)


def _card_digits(window: list[tuple[str, str, bool]], lengths: tuple[int, ...]) -> str | None:
    """The joined digits when the fields' digit counts are a card grouping; one integer field
    after the first may have lost up to three leading zeros."""
    if lengths in _CARD_GROUPS:
        return "".join(d for _, d, _ in window)
    for group in _CARD_GROUPS:
        if len(group) != len(lengths):
            continue
        pairs = zip(lengths, group, strict=True)
        short = [i for i, (have, want) in enumerate(pairs) if have != want]
        if len(short) != 1 or short[0] == 0:
            continue
        i = short[0]
        if not window[i][2] or lengths[i] > group[i]:
            continue
        return "".join(d.zfill(group[j]) if j == i else d for j, (_, d, _) in enumerate(window))
    return None


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

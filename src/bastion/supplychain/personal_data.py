"""Personal data in free text (notebook outputs): e-mail addresses, phone numbers, payment card
numbers (Luhn-checked) and IBANs (mod-97-checked). Samples returned are masked."""

from __future__ import annotations

import re
from collections.abc import Iterator

from bastion.personal import identifiers as ids

EMAIL = re.compile(
    r"\b[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})*"
    r"\.[A-Za-z]{2,24}\b"
)
PHONE = re.compile(
    r"(?<![\w.])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?)?\d{2,4}[ .-]\d{3,4}"
    r"[ .-]\d{3,4}(?![\w.])"
)
CARD = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b")
EXAMPLE_DOMAINS = ("example.com", "example.org", "example.net", "test.com", "localhost")
MAX_TEXT = 2_000_000


def _mask(value: str) -> str:
    return value[:2] + "…" + value[-2:] if len(value) > 6 else "…"


def personal_data(text: str) -> Iterator[tuple[str, str]]:
    """(kind, masked sample) for each kind of personal data found (once per kind)."""
    text = text[:MAX_TEXT]
    found: dict[str, str] = {}
    for match in EMAIL.finditer(text):
        domain = match.group(0).lower().rpartition("@")[2]
        if not any(domain == d or domain.endswith("." + d) for d in EXAMPLE_DOMAINS):
            found.setdefault("e-mail address", _mask(match.group(0)))
            break
    for match in CARD.finditer(text):
        # any script's decimal digits, as the ASCII digits the check reads
        digits = "".join(str(int(d)) for d in re.sub(r"\D", "", match.group(0)))
        if 13 <= len(digits) <= 19 and ids.luhn_valid(digits) and len(set(digits)) > 2:
            found.setdefault("payment card number", _mask(digits))
            break
    for match in IBAN.finditer(text):
        if ids.iban_valid(match.group(0).replace(" ", "")):
            found.setdefault("IBAN", _mask(match.group(0)))
            break
    without_cards = CARD.sub(" ", text)  # card-like digit runs are never phone numbers
    for match in PHONE.finditer(without_cards):
        digits = re.sub(r"\D", "", match.group(0))
        if 9 <= len(digits) <= 15:
            found.setdefault("phone number", _mask(match.group(0)))
            break
    yield from found.items()

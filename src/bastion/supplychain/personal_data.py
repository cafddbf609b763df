"""Personal data in free text (notebook outputs): e-mail addresses (the data stage's shape),
phone numbers, payment card numbers (Luhn-checked) and IBANs (mod-97-checked, registered
lengths). Samples returned are masked."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator

from bastion.personal import identifiers as ids
from bastion.personal.detectors import EMAIL

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


def _card_candidates(value: str) -> Iterator[str]:
    """The digits of a card-shaped match (any script's decimal digits, as the ASCII digits the
    check reads): the whole match, then each part of it between spaces and each run of digits.
    A card printed beside other numbers with one space between them (`print(i, card, year)`:
    '1 4539148803436467 2029') is matched together with them; it is one of the parts."""
    parts = [value, *value.split(" "), *re.split(r"[ -]", value)]
    for part in dict.fromkeys(parts):
        yield "".join(str(int(d)) for d in re.sub(r"\D", "", part))


def _card_valid(digits: str) -> bool:
    # more than two distinct digits: test numbers such as 4111 1111 1111 1111 are not a card
    return 13 <= len(digits) <= 19 and ids.luhn_valid(digits) and len(set(digits)) > 2


def personal_data(text: str) -> Iterator[tuple[str, str]]:
    """(kind, masked sample) for each kind of personal data found (once per kind). The text is
    read in NFKC form: full-width letters and digits (`ＤＥ８９ ３７０４ …`) as ASCII; one
    character can unfold into up to 18, so the bound applies again after."""
    text = text[:MAX_TEXT]
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)[:MAX_TEXT]
    found: dict[str, str] = {}
    for match in EMAIL.finditer(text):
        domain = match.group(0).lower().rpartition("@")[2]
        if not any(domain == d or domain.endswith("." + d) for d in EXAMPLE_DOMAINS):
            found.setdefault("e-mail address", _mask(match.group(0)))
            break
    for match in CARD.finditer(text):
        card = next((d for d in _card_candidates(match.group(0)) if _card_valid(d)), None)
        if card is not None:
            found.setdefault("payment card number", _mask(card))
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

"""Personal data and secrets in one piece of text: `detect(text)` lists what it finds (kind, span,
a redacted form; never the raw value) and `redact(text)` replaces each finding with its redacted
form. The data check runs it on every cell a vectorised pre-filter lets through; the runtime
guard will run it on request fields and chat text.

Each detector is a shape (a regular expression) and a validator (check digits, issuer ranges,
country lengths, phonenumbers' numbering plans, ipaddress). Shapes that random numbers fit often
and whose check passes by chance too often (a bare run of nine digits passes the Dutch 11-proef
one time in eleven) are *weak*: they count only next to a keyword that names them ("BSN:",
"PESEL") or in a column whose name says what it holds (`hint`). Everything else is *strong*."""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Collection, Iterator
from typing import NamedTuple

from bastion.personal import identifiers as ids
from bastion.secrets import SECRET_PREFILTER_PATTERN

MAX_TEXT = 10_000  # characters of one text examined by default (a cell, a request field)
CONTEXT = 40  # characters before a match searched for a keyword that names it

# kind -> (category, label)
KINDS: dict[str, tuple[str, str]] = {
    "email": ("contact", "e-mail address"),
    "phone": ("contact", "phone number"),
    "credit_card": ("financial", "payment card number"),
    "iban": ("financial", "IBAN"),
    "us_ssn": ("national_id", "US Social Security number"),
    "uk_nino": ("national_id", "UK National Insurance number"),
    "de_tax_id": ("national_id", "German tax id (Steuer-ID)"),
    "fr_nir": ("national_id", "French social security number (NIR)"),
    "es_dni": ("national_id", "Spanish DNI"),
    "es_nie": ("national_id", "Spanish NIE"),
    "it_fiscal_code": ("national_id", "Italian codice fiscale"),
    "nl_bsn": ("national_id", "Dutch BSN"),
    "pl_pesel": ("national_id", "Polish PESEL"),
    "se_personnummer": ("national_id", "Swedish personnummer"),
    "in_aadhaar": ("national_id", "Indian Aadhaar number"),
    "ip_address": ("network", "IP address"),
    "date_of_birth": ("identity", "date of birth"),
    "secret": ("secret", "secret or credential"),
}


class Match(NamedTuple):
    """One finding in a text: its kind (a key of KINDS), the span [start, end) in the text, and
    a redacted form that keeps only what identifies the kind (e.g. a card's last four digits).
    `detail` names the secret type for secrets."""

    kind: str
    start: int
    end: int
    redacted: str
    detail: str = ""


class _Candidate(NamedTuple):
    kind: str
    start: int
    end: int
    valid: bool  # the check digits / structure rules pass
    weak: bool  # needs a keyword or a column hint to count


# --- redaction ---------------------------------------------------------------------------------


def mask(kind: str, value: str) -> str:
    """The redacted form of a value of `kind`: enough to see what it is, never enough to rebuild
    it. Cards keep their last four digits (as PCI DSS allows on receipts), e-mail the first letter
    of the user and domain and the top-level domain, IP addresses the first part; identity
    numbers keep only their layout."""
    if kind == "email":
        local, _, domain = value.partition("@")
        top = domain.rsplit(".", 1)[-1] if "." in domain else ""
        return f"{local[:1]}***@{domain[:1]}***.{top}"
    if kind in ("credit_card", "iban"):
        digits = [c for c in value if c.isalnum()]
        keep = "".join(digits[-4:])
        head = "".join(digits[:2]) if kind == "iban" else ""
        return f"{head}{'*' * 4} {'*' * 4} {keep}" if kind == "iban" else f"**** **** **** {keep}"
    if kind == "ip_address":
        if ":" in value:
            return value.split(":", 1)[0] + ":*:*"
        return value.split(".", 1)[0] + ".*.*.*"
    if kind == "phone":
        total = sum(c.isdigit() for c in value)
        out, seen = [], 0
        for char in value:
            if char.isdigit():
                seen += 1
                out.append(char if seen > total - 2 else "*")
            else:
                out.append(char)
        return "".join(out)
    if kind == "secret":
        return "****"
    if kind in ("person_name",):
        return " ".join(f"{word[:1]}***" for word in value.split()[:4])
    if kind in ("address",):
        return f"*** ({len(value)} characters)"
    # identity numbers, dates of birth: the layout only
    return re.sub(r"[0-9A-Za-z]", "*", value[:40])


def redact(text: str, *, hint: str | None = None, max_chars: int = MAX_TEXT) -> str:
    """`text` with every detected value replaced by its redacted form. Text past `max_chars` is
    replaced by a marker: what was not examined is not passed on."""
    examined = text[:max_chars]
    parts: list[str] = []
    position = 0
    for match in detect(examined, hint=hint, max_chars=max_chars):
        parts.append(examined[position : match.start])
        parts.append(match.redacted)
        position = match.end
    parts.append(examined[position:])
    if len(text) > max_chars:
        parts.append(f"[… {len(text) - max_chars} characters not examined]")
    return "".join(parts)


# --- detection ---------------------------------------------------------------------------------


def detect(text: str, *, hint: str | None = None, max_chars: int = MAX_TEXT) -> list[Match]:
    """Personal data and secrets in the first `max_chars` characters of `text`, in text order,
    non-overlapping. `hint` is the kind the text is known to hold (a column named "ssn" or
    "phone"): weak shapes of that kind count without a keyword."""
    return scan(text, hint=hint, max_chars=max_chars)[0]


def scan(
    text: str,
    *,
    hint: str | None = None,
    max_chars: int = MAX_TEXT,
    groups: Collection[str] | None = None,
) -> tuple[list[Match], list[tuple[str, bool]]]:
    """detect(), plus (kind, valid) for every span whose shape would count for a kind, whether
    its check digits pass or not: the data check compares the two to tell a column of real
    identifiers from random numbers that pass a check digit by chance. `groups` (keys of
    GROUP_PATTERNS) are the detector groups whose pre-filter the text is already known to
    match; by default they are worked out here."""
    text = text[:max_chars]
    if groups is None:
        folded = _fold(text)
        if folded is not None:  # invisible or compatibility characters: detect on the folded
            plain, where = folded  # text, report spans of the original
            matches, shapes = scan(plain, hint=hint, max_chars=len(plain) + 1, groups=None)
            return [
                m._replace(start=where[m.start], end=where[m.end - 1] + 1) for m in matches
            ], shapes
        groups = _groups(text)
    found = list(_candidates(text, hint, groups))
    named = {c: c.kind == hint or _keyword_before(text, c.start, c.kind) for c in found}
    shapes = [(c.kind, c.valid) for c in found if not c.weak or named[c]]
    # a strong shape whose check fails (a mistyped IBAN, a card failing Luhn) is not personal
    # data, and neither is anything inside it (a "phone number" among an IBAN's digits)
    blockers = [c for c in found if not c.valid and not c.weak and c.kind in _BLOCKING]
    counted = [c for c in found if c.valid and (not c.weak or named[c])]
    # and digits a keyword names as one kind that fail its check are not another kind
    blockers += [c for c in found if not c.valid and named[c] and c.kind != "phone"]
    counted = [c for c in counted if not _inside_failed(c, blockers, named)]
    chosen = _resolve(counted, hint, named)
    matches = [Match(c.kind, c.start, c.end, mask(c.kind, text[c.start : c.end])) for c in chosen]
    if "secret" in groups:
        matches += _secrets(text, matches)
    return sorted(matches, key=lambda m: (m.start, m.end)), shapes


# characters that render as nothing: inserted into a value, they break every pattern while the
# value stays readable to a person (and to a model)
_INVISIBLE = frozenset(
    "\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180e\u200b\u200c\u200d"
    "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2060\u2061\u2062\u2063"
    "\u2064\u2066\u2067\u2068\u2069\u3164\ufeff\uffa0"
)


def _fold(text: str) -> tuple[str, list[int]] | None:
    """`text` without invisible characters and with compatibility forms folded (NFKC: full-width
    ＠ and digits, ligatures, superscripts), plus the original index of each folded character
    (and one past the end); None when nothing would change. The guard screens what people and
    models read, so a value written around the patterns must still be found."""
    if text.isascii():
        return None
    import unicodedata

    out: list[str] = []
    where: list[int] = []
    changed = False
    for index, char in enumerate(text):
        if char in _INVISIBLE or unicodedata.category(char) == "Cf":
            changed = True
            continue
        folded = char if char.isascii() else unicodedata.normalize("NFKC", char)
        changed = changed or folded != char
        for piece in folded:
            out.append(piece)
            where.append(index)
    if not changed:
        return None
    where.append(len(text))
    return "".join(out), where


# kinds whose shape alone says what the value is (a country code and its IBAN length, a card's
# grouping, a personnummer's date and separator): bare digit runs and phone numbers are not
_BLOCKING = {"iban", "credit_card", "fr_nir", "it_fiscal_code", "se_personnummer", "in_aadhaar"}


def _inside_failed(
    candidate: _Candidate, blockers: list[_Candidate], named: dict[_Candidate, bool]
) -> bool:
    return any(
        b.start <= candidate.start
        and candidate.end <= b.end
        and (
            b.end - b.start > candidate.end - candidate.start
            or candidate.kind == "phone"
            or (named[b] and not named[candidate])
        )
        for b in blockers
    )


def _resolve(
    found: list[_Candidate], hint: str | None, named: dict[_Candidate, bool]
) -> list[_Candidate]:
    """Drop overlaps: the longer span wins, then the hinted kind, then one a keyword names, then
    a strong shape over a weak one, then the stronger check."""
    ordered = sorted(
        found,
        key=lambda c: (
            -(c.end - c.start),
            c.kind != hint,
            not named[c],
            c.weak,
            _PRIORITY.get(c.kind, 99),
            c.start,
        ),
    )
    chosen: list[_Candidate] = []
    for c in ordered:
        if any(c.start < other.end and other.start < c.end for other in chosen):
            continue
        chosen.append(c)
    return sorted(chosen, key=lambda c: c.start)


_PRIORITY = {
    kind: rank
    for rank, kind in enumerate(
        (
            "email",
            "iban",
            "fr_nir",
            "it_fiscal_code",
            "de_tax_id",
            "in_aadhaar",
            "credit_card",
            "se_personnummer",
            "es_dni",
            "es_nie",
            "uk_nino",
            "us_ssn",
            "pl_pesel",
            "nl_bsn",
            "date_of_birth",
            "ip_address",
            "phone",
        )
    )
}

_KEYWORDS: dict[str, tuple[str, ...]] = {
    "phone": (
        "phone", "tel", "mobile", "mob", "cell", "call", "fax", "whatsapp", "sms", "telefon",
        "telefono", "teléfono", "téléphone", "portable", "handy", "móvil", "movil", "cellulare",
        "telefoon", "mobiel", "komórka", "tfn", "mobil", "ring", "appel", "contact", "reach",
    ),
    "us_ssn": ("ssn", "social security", "soc. sec", "ss#", "ss #"),
    "nl_bsn": ("bsn", "burgerservicenummer", "sofinummer", "sofi-nummer"),
    "pl_pesel": ("pesel",),
    "se_personnummer": ("personnummer", "personnr", "pnr", "samordningsnummer", "person number"),
    "in_aadhaar": ("aadhaar", "aadhar", "uidai", "uid"),
    "de_tax_id": ("steuer", "steuer-id", "steuerid", "identifikationsnummer", "idnr", "tax id"),
}  # fmt: skip


def _keyword_before(text: str, start: int, kind: str) -> bool:
    words = _KEYWORDS.get(kind)
    if not words:
        return False
    window = text[max(0, start - CONTEXT) : start].lower()
    return any(word in window for word in words)


_DIGITS = re.compile(r"\D")


def _digits(value: str) -> str:
    return _DIGITS.sub("", value)


def _compact(value: str) -> str:
    return re.sub(r"[\s.\-/]", "", value).upper()


# an e-mail address in free text (also COD010's, in notebook outputs): the local part starts with
# a letter or digit, and is not the tail of a longer word or of another address
EMAIL = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.){1,8}[A-Za-z]{2,24}(?![\w-])"
)
_CARD = re.compile(r"(?<![\w.,/-])\d(?:[ -]?\d){11,18}(?![\w-]|[.,/]\d)")
_CARD_GROUPS = {(4, 4, 4, 4), (4, 6, 5), (4, 6, 4), (4, 4, 4, 4, 3), (4, 4, 4, 4, 2), (4, 4, 4)}
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,32}")
_SSN = re.compile(r"(?<![\w-])(\d{3})([- ])(\d{2})\2(\d{4})(?![\w-])")
_NINE = re.compile(r"(?<![\w.,/-])\d{9}(?![\w-]|[.,/]\d)")
_BSN_DOTTED = re.compile(r"(?<![\w.])\d{4}\.\d{2}\.\d{3}(?![\w]|\.\d)")
_NINO = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2} ?\d{2} ?\d{2} ?\d{2} ?[A-D](?![A-Za-z0-9])")
_ELEVEN = re.compile(r"(?<![\w.,/-])[1-9]\d ?\d{3} ?\d{3} ?\d{3}(?![\w-]|[.,/]\d)")
_PESEL = re.compile(r"(?<![\w.,/-])\d{11}(?![\w-]|[.,/]\d)")
_NIR = re.compile(
    r"(?<![A-Za-z0-9])[1278] ?\d{2} ?\d{2} ?(?:\d{2}|2[ABab]) ?\d{3} ?\d{3} ?\d{2}(?![A-Za-z0-9])"
)
_DNI = re.compile(r"(?<![A-Za-z0-9])\d{8}[- ]?[A-Z](?![A-Za-z0-9])")
_NIE = re.compile(r"(?<![A-Za-z0-9])[XYZ][- ]?\d{7}[- ]?[A-Z](?![A-Za-z0-9])")
_CF = re.compile(
    r"(?<![A-Za-z0-9])[A-Z]{6}[0-9LMNPQRSTUV]{2}[ABCDEHLMPRST][0-9LMNPQRSTUV]{2}[A-Z]"
    r"[0-9LMNPQRSTUV]{3}[A-Z](?![A-Za-z0-9])"
)
_PERSONNUMMER = re.compile(r"(?<![\w.,/-])(?:\d{2})?\d{6}([-+]?)\d{4}(?![\w-]|[.,/]\d)")
_AADHAAR = re.compile(r"(?<![\w.,/-])(?<!\d )[2-9]\d{3}( ?)\d{4}\1\d{4}(?![\w-]|[.,/]\d| \d)")
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w]|\.\d)")
_IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
_VERSION_BEFORE = re.compile(r"(?:\bv|version|ver\.?|release|build|rev\.?)\s*$", re.IGNORECASE)
_PHONE = re.compile(
    r"(?<![\w+/.:-])(?:(?:\+|00)\d{1,3}[\s.-]?)?(?:\(0?\d{1,5}\)[\s.-]?)?\d[\d\s.\-/]{3,16}\d"
    r"(?:\s?(?:x|ext\.?|#)\s?\d{1,6})?(?![\w]|[.\-/]\w)"
)
_FRACTION = re.compile(r"(?<![\d.])0\.\d+(?![\d.])")
_ALIGNED = re.compile(r"\d {2,}\d")
_NANP = re.compile(r"(?:\(\d{3}\)\s?|\d{3}[\s.-])\d{3}[\s.-]\d{4}")
_DATE_LIKE = re.compile(
    r"^(?:\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4})(?:[\sT]\d{1,2}(?::\d{2}){0,2})?$"
)
_MONTHS = (
    "january|february|march|april|may|june|july|august|september|october|november|december|"
    "jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec"
)
_DOB = re.compile(
    r"(?i)(?:date\s+of\s+birth|d\.?o\.?b\.?|birth\s*date|birthday|born(?:\s+on)?|"
    r"geboren(?:\s+am)?|geburtsdatum|n[ée]e?\s+le|date\s+de\s+naissance|nacid[oa]\s+el|"
    r"fecha\s+de\s+nacimiento|nat[oa]\s+il|data\s+di\s+nascita|geboortedatum|geboren\s+op|"
    r"data\s+urodzenia|urodzon[ya]|f[öo]delsedatum|f[öo]dd)\s*[:.\-]?\s*"
    r"(\d{4}-\d{1,2}-\d{1,2}|\d{1,2}[./-]\d{1,2}[./-]\d{2,4}|"
    r"\d{1,2}(?:st|nd|rd|th)?\s+(?:" + _MONTHS + r")\.?,?\s+\d{4}|"
    r"(?:" + _MONTHS + r")\.?\s+\d{1,2}(?:st|nd|rd|th)?,?\s+\d{4})"
)
_PHONE_REGIONS = ("US", "GB", "DE", "FR", "ES", "IT", "NL", "PL", "SE", "IN")


def _candidates(text: str, hint: str | None, groups: Collection[str]) -> Iterator[_Candidate]:
    if "email" in groups:
        for m in EMAIL.finditer(text):
            yield _Candidate("email", m.start(), m.end(), True, False)
    if "digits" in groups:
        yield from _numbers(text, hint)
    if "ip" in groups:
        for m in _IPV4.finditer(text):
            if _VERSION_BEFORE.search(text, max(0, m.start() - 12), m.start()):
                continue
            yield _Candidate("ip_address", m.start(), m.end(), _ip_valid(m[0]), False)
        for m in _IPV6.finditer(text):
            value = m[0]
            if value.count(":") < 2 or not any(c.isdigit() for c in value):
                continue
            yield _Candidate("ip_address", m.start(), m.end(), _ip_valid(value), False)
    if "cf" in groups:
        for m in _CF.finditer(text):
            valid = ids.it_fiscal_code_valid(m[0])
            yield _Candidate("it_fiscal_code", m.start(), m.end(), valid, False)
    if "dob" in groups:
        for m in _DOB.finditer(text):
            yield _Candidate("date_of_birth", m.start(1), m.end(1), True, False)


def _numbers(text: str, hint: str | None) -> Iterator[_Candidate]:
    """Cards, IBANs, national ids and phone numbers: everything made of six digits or more."""
    for m in _IBAN.finditer(text):
        yield from _iban(m)
    for m in _CARD.finditer(text):
        value = m.group(0)
        digits = _digits(value)
        groups = tuple(len(g) for g in re.split(r"[ -]", value))
        shaped = len(groups) == 1 or groups in _CARD_GROUPS
        if not shaped or ids.card_brand(digits) is None or len(set(digits)) < 2:
            continue
        if ids.isbn_valid(digits):
            continue
        yield _Candidate("credit_card", m.start(), m.end(), ids.luhn_valid(digits), False)
    for m in _SSN.finditer(text):
        yield _Candidate("us_ssn", m.start(), m.end(), ids.us_ssn_valid(_digits(m[0])), False)
    for m in _NINE.finditer(text):
        digits = m.group(0)
        yield _Candidate("us_ssn", m.start(), m.end(), ids.us_ssn_valid(digits), True)
        yield _Candidate("nl_bsn", m.start(), m.end(), ids.nl_bsn_valid(digits), True)
    for m in _BSN_DOTTED.finditer(text):
        yield _Candidate("nl_bsn", m.start(), m.end(), ids.nl_bsn_valid(_digits(m[0])), True)
    for m in _NINO.finditer(text):
        yield _Candidate("uk_nino", m.start(), m.end(), ids.uk_nino_valid(_compact(m[0])), False)
    for m in _ELEVEN.finditer(text):
        valid = ids.de_tax_id_valid(_digits(m[0]))
        yield _Candidate("de_tax_id", m.start(), m.end(), valid, False)
    for m in _PESEL.finditer(text):
        yield _Candidate("pl_pesel", m.start(), m.end(), ids.pl_pesel_valid(m[0]), True)
    for m in _NIR.finditer(text):
        yield _Candidate("fr_nir", m.start(), m.end(), ids.fr_nir_valid(_compact(m[0])), False)
    for m in _DNI.finditer(text):
        yield _Candidate("es_dni", m.start(), m.end(), ids.es_dni_valid(_compact(m[0])), False)
    for m in _NIE.finditer(text):
        yield _Candidate("es_nie", m.start(), m.end(), ids.es_nie_valid(_compact(m[0])), False)
    for m in _PERSONNUMMER.finditer(text):
        valid = ids.se_personnummer_valid(_digits(m[0]))
        yield _Candidate("se_personnummer", m.start(), m.end(), valid, not m.group(1))
    for m in _AADHAAR.finditer(text):
        valid = ids.in_aadhaar_valid(_digits(m[0]))
        yield _Candidate("in_aadhaar", m.start(), m.end(), valid, not m.group(1))
    for m in _PHONE.finditer(text):
        yield from _phone(text, m, hint)


def _iban(m: re.Match[str]) -> Iterator[_Candidate]:
    """Cut the match at the country's length (a word may follow the number)."""
    value = m.group(0)
    length = ids.IBAN_LENGTHS.get(value[:2])
    if length is None:
        return
    count = 0
    for offset, char in enumerate(value):
        if char != " ":
            count += 1
        if count == length:
            compact = value[: offset + 1].replace(" ", "")
            yield _Candidate(
                "iban", m.start(), m.start() + offset + 1, ids.iban_valid(compact), False
            )
            return


def _ip_valid(value: str) -> bool:
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return False
    return not (
        address.is_unspecified
        or address.is_loopback
        or address.is_multicast
        or (address.version == 4 and address.is_reserved)
        or address.is_link_local
        or (address.version == 4 and value.startswith("255."))
    )


def _phone(text: str, m: re.Match[str], hint: str | None) -> Iterator[_Candidate]:
    value = m.group(0)
    number = re.split(r"\s?(?:x|ext\.?|#)\s?\d", value, maxsplit=1)[0].strip()
    digits = _digits(number)
    if not 7 <= len(digits) <= 15 or _DATE_LIKE.match(number):
        return
    # numbers printed side by side, not one number: a fraction below one among its parts
    # ("0.6931 0.682", "val_loss: 0.2594 - 1250/1250") or parts aligned by runs of spaces (a
    # table's row: "0  541  578  721"); no phone number is written either way
    if hint != "phone" and (_FRACTION.search(number) or _ALIGNED.search(number)):
        return
    # a book number: ISBN-13 (978/979) always; ISBN-10 (one ten-digit number in eleven passes
    # its check) only where the text says so
    if ids.isbn_valid(digits) and (len(digits) == 13 or _named_isbn(text, m.start())):
        return
    international = number.startswith(("+", "00"))
    separated = bool(re.search(r"[\s.\-/()]", number))
    strong = (
        international
        or "(" in number
        or (number.startswith("0") and separated)
        or bool(_NANP.fullmatch(number))
    )
    if not strong and hint != "phone" and not _keyword_before(text, m.start(), "phone"):
        return  # a weak shape nothing names: not worth phonenumbers' time
    yield _Candidate("phone", m.start(), m.end(), _phone_valid(number, international), not strong)


def _named_isbn(text: str, start: int) -> bool:
    return "isbn" in text[max(0, start - CONTEXT) : start].lower()


@functools.lru_cache(maxsize=65_536)
def _phone_valid(number: str, international: bool) -> bool:
    import phonenumbers

    regions: tuple[str | None, ...] = (None,) if international else _PHONE_REGIONS
    if number.startswith("00"):
        number = "+" + number[2:]
    for region in regions:
        try:
            parsed = phonenumbers.parse(number, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(parsed):
            return True
    return False


def _secrets(text: str, taken: list[Match]) -> list[Match]:
    """Secrets found by detect-secrets (bastion's one secrets engine, shared with `bastion code`),
    as spans: from the reported column to the end of the token."""
    from bastion.secrets import secrets_in

    lines = text.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    found: list[Match] = []
    for number, column, kind in secrets_in(text):
        start = offsets[number - 1] + column - 1
        end = start
        while end < len(text) and not text[end].isspace() and text[end] not in "\"'`,;":
            end += 1
        if end == start or any(start < m.end and m.start < end for m in taken + found):
            continue
        found.append(Match("secret", start, end, mask("secret", text[start:end]), kind))
    return found


# What each group of detectors needs before it can match (RE2-compatible, so the data check
# runs them vectorised with pyarrow.compute before any cell reaches Python): an @, seven
# digits close together (the shortest phone number) or a UK NINO, an IPv4/IPv6 shape, a
# codice-fiscale shape, a word that introduces a date of birth, or what a secrets detector
# needs.
GROUP_PATTERNS = {
    "email": r"@",
    "digits": r"\d(?:[\s().+/-]{0,3}\d){6}|[A-Z]{2} ?\d{2} ?\d{2} ?\d{2} ?[A-D]",
    "ip": r"\d\.\d{1,3}\.\d{1,3}\.\d|[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}:",
    "cf": r"[A-Z]{6}[0-9LMNPQRSTUV]{2}[A-Z]",
    "dob": r"(?i:birth|born|d\.?o\.?b|geb|naissance|n[ée]e? le|nacid|nacimiento|nat[oa] il|"
    r"nascita|urodz|f[öo]d)",
    "secret": SECRET_PREFILTER_PATTERN,  # bastion.secrets: what a secrets detector needs
}
_GROUPS = {name: re.compile(pattern) for name, pattern in GROUP_PATTERNS.items()}
# Python's re tries every word of a case-insensitive alternation at every position (5 ms for
# 10,000 characters of the secret words); the same words, case-sensitive, on lowered text are
# found three times faster. Exactly the same for ASCII text; other text keeps the patterns above
# (IGNORECASE matches a few non-ASCII letters, such as the dotless ı, that lower() keeps).
_CASELESS = {
    name: re.compile(pattern[len("(?i:") : -1])
    for name, pattern in GROUP_PATTERNS.items()
    if pattern.startswith("(?i:") and pattern.endswith(")")
}


def _groups(text: str) -> list[str]:
    """The detector groups whose pre-filter `text` matches."""
    lowered = text.lower() if text.isascii() else None
    found = []
    for name, pattern in _GROUPS.items():
        caseless = _CASELESS.get(name) if lowered is not None else None
        if caseless.search(lowered) if caseless and lowered else pattern.search(text):
            found.append(name)
    return found


PREFILTER_PATTERN = "|".join(GROUP_PATTERNS.values())
# Letters and punctuation of ordinary text in many scripts on which RE2 (the data check runs
# the patterns above vectorised with it) and Python's re (detect()) agree, and that detect()
# does not fold: none is a digit or a space to Python (its \d and \s are Unicode, RE2's are
# ASCII), none changes under NFKC or is invisible (detect() folds those away first), none is a
# letter only Python's IGNORECASE takes for an ASCII one (ı and İ for i, ſ for s, K for k).
# tests/datacheck/test_pii.py checks every one of them.
RE2_SAFE_LETTERS = (
    "\u00c0-\u00ff\u0100-\u012f\u0134-\u013e\u0141-\u0148\u014a-\u017e"  # Latin
    "\u0386\u0388-\u03ce\u0400-\u04ff\u05d0-\u05ea\u0620-\u064a"  # Greek, Cyrillic, ...
    "\u3041-\u3096\u30a1-\u30fa\u4e00-\u9fff\uac00-\ud7a3"  # kana, CJK, Hangul
    "\u00ab\u00bb\u2013\u2014\u2018\u2019\u201c\u201d\u20ac"  # quotes, dashes, euro
)
# A text with any other non-ASCII character, or with one of the ASCII controls that Python
# counts as space and as a line break (\x0b, \x1c-\x1f) and RE2 does not: the data check
# leaves it to detect(), whatever the RE2 patterns say (a card written with no-break spaces,
# "apı_key = ...", digits of another script, a zero-width joiner inside a number).
NOT_RE2_SAFE_PATTERN = "[^\\x00-\\x0a\\x0c-\\x1b\\x20-\\x7f" + RE2_SAFE_LETTERS + "]"
# A value that is exactly one e-mail address (the data check counts those vectorised).
EMAIL_VALUE_PATTERN = (
    r"^[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.){1,8}[A-Za-z]{2,24}$"
)
# A value shaped like exactly one phone number (see pii's phone-column sampling).
PHONE_VALUE_PATTERN = (
    r"^\s*(?:(?:\+|00)\d{1,3}[\s.-]?)?(?:\(0?\d{1,5}\)[\s.-]?)?\d[\d\s.\-/]{3,16}\d"
    r"(?:\s?(?:x|ext\.?|#)\s?\d{1,6})?\s*$"
)


def phone_valid(number: str) -> bool:
    """Whether `number` (digits, with or without a leading + or 00) is a number of a numbering
    plan phonenumbers knows: international when it starts with + or 00, else national in one
    of the regions the detector tries. For callers that assemble a number from parts (the
    guard's split request fields)."""
    number = number.strip()
    return _phone_valid(number, number.startswith(("+", "00")))

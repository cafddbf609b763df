"""Check-digit and structure rules of the identifiers the personal-data check recognises: payment
cards (Luhn and issuer ranges), IBAN (ISO 13616 mod-97 with each country's length), and national
identity numbers. Each validator takes the identifier with separators already removed
(upper-case letters) and says whether it is well formed; none of them looks anything up.

Written by hand: the rules are a few lines each and public (the references are in each
docstring); the libraries that carry them (python-stdnum is the best) are LGPL and validate one
value per call with a slower generic path, where this check runs millions of values per scan."""

from __future__ import annotations

import datetime as _dt

# --- payment cards ------------------------------------------------------------------------------


def luhn_valid(digits: str) -> bool:
    """ISO/IEC 7812-1 Luhn check over a string of digits."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


# (first digits low, high, lengths) per brand; the issuer identification number ranges of the
# schemes' public documentation (Visa, Mastercard incl. the 2-series, Amex, Discover, JCB, Diners,
# UnionPay, Maestro). Ranges are compared on as many leading digits as the bounds have.
_CARD_RANGES: tuple[tuple[str, int, int, frozenset[int]], ...] = (
    # Visa's 13-digit numbers are no longer issued, and 13 digits are an EAN-13 barcode's length
    ("visa", 4, 4, frozenset({16, 19})),
    ("mastercard", 51, 55, frozenset({16})),
    ("mastercard", 2221, 2720, frozenset({16})),
    ("amex", 34, 34, frozenset({15})),
    ("amex", 37, 37, frozenset({15})),
    ("discover", 6011, 6011, frozenset({16, 17, 18, 19})),
    ("discover", 644, 649, frozenset({16, 17, 18, 19})),
    ("discover", 65, 65, frozenset({16, 17, 18, 19})),
    ("unionpay", 62, 62, frozenset({16, 17, 18, 19})),
    ("jcb", 3528, 3589, frozenset({16, 17, 18, 19})),
    ("jcb", 2131, 2131, frozenset({15})),  # the legacy 15-digit JCB ranges
    ("jcb", 1800, 1800, frozenset({15})),
    ("diners", 300, 305, frozenset({14, 15, 16, 17, 18, 19})),
    ("diners", 36, 36, frozenset({14, 15, 16, 17, 18, 19})),
    ("diners", 38, 39, frozenset({14, 15, 16, 17, 18, 19})),
    # Maestro allows 12-19 digits; 12-15-digit cards are rare and collide with other ids
    ("maestro", 50, 50, frozenset(range(16, 20))),
    ("maestro", 56, 69, frozenset(range(16, 20))),
    ("mir", 2200, 2204, frozenset({16, 17, 18, 19})),
)


def card_brand(digits: str) -> str | None:
    """The scheme whose issuer range and length fit `digits`, or None."""
    length = len(digits)
    for brand, low, high, lengths in _CARD_RANGES:
        if length not in lengths:
            continue
        width = len(str(low))
        if low <= int(digits[:width]) <= high:
            return brand
    return None


def card_valid(digits: str) -> bool:
    """A payment card number: 12-19 digits in a scheme's issuer range and length, Luhn-valid, and
    not a run of one digit."""
    return (
        12 <= len(digits) <= 19
        and digits.isdigit()
        and len(set(digits)) > 1
        and card_brand(digits) is not None
        and luhn_valid(digits)
    )


# --- IBAN ---------------------------------------------------------------------------------------

# ISO 13616 lengths from the SWIFT IBAN registry (release 99, 2025).
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HN": 28, "HR": 21, "HU": 28,
    "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28,
    "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22,
    "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23,
    "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24,
    "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip


def iban_valid(iban: str) -> bool:
    """ISO 13616: a registered country, that country's length, and mod-97 of the rearranged
    number (letters as 10..35) equal to 1."""
    if IBAN_LENGTHS.get(iban[:2]) != len(iban) or not iban[2:4].isdigit():
        return False
    if not iban.isalnum() or not iban.isascii():
        return False
    rearranged = iban[4:] + iban[:4]
    number = "".join(str(int(char, 36)) for char in rearranged)
    return int(number) % 97 == 1


# --- national identity numbers -------------------------------------------------------------------


def us_ssn_valid(digits: str) -> bool:
    """US Social Security number structure (SSA rules; no check digit exists): area not 000, 666
    or 900-999, group not 00, serial not 0000, and not one of the numbers SSA voided after they
    were printed in advertising (078-05-1120, 219-09-9999) or the 123-45-6789 placeholder."""
    if len(digits) != 9 or not digits.isdigit():
        return False
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
        return False
    return digits not in ("078051120", "219099999", "123456789")


_NINO_BAD_FIRST = set("DFIQUV")
_NINO_BAD_SECOND = set("DFIQUVO")
_NINO_BAD_PREFIXES = {"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"}


def uk_nino_valid(nino: str) -> bool:
    """UK National Insurance number (HMRC NIM39110): two prefix letters (not D, F, I, Q, U, V;
    second not O; not BG, GB, KN, NK, NT, TN, ZZ), six digits, suffix A-D. No check digit."""
    if len(nino) != 9:
        return False
    prefix, digits, suffix = nino[:2], nino[2:8], nino[8]
    return (
        prefix.isalpha()
        and prefix.isascii()
        and prefix[0] not in _NINO_BAD_FIRST
        and prefix[1] not in _NINO_BAD_SECOND
        and prefix not in _NINO_BAD_PREFIXES
        and digits.isdigit()
        and suffix in "ABCD"
    )


def _iso7064_mod11_10(digits: str) -> int:
    product = 10
    for char in digits:
        total = (int(char) + product) % 10 or 10
        product = (total * 2) % 11
    return (11 - product) % 10


def de_tax_id_valid(digits: str) -> bool:
    """German Steuerliche Identifikationsnummer (§ 139b AO): 11 digits, no leading zero; among the
    first ten exactly one digit occurs twice or three times (three times never all adjacent) and
    the others at most once; check digit by ISO 7064 MOD 11,10."""
    if len(digits) != 11 or not digits.isdigit() or digits[0] == "0":
        return False
    body = digits[:10]
    counts = [body.count(d) for d in "0123456789"]
    repeated = [c for c in counts if c > 1]
    if len(repeated) != 1 or repeated[0] > 3:
        return False
    if repeated[0] == 3:
        digit = "0123456789"[counts.index(3)]
        if digit * 3 in body:
            return False
    return _iso7064_mod11_10(body) == int(digits[10])


def fr_nir_valid(nir: str) -> bool:
    """French NIR (numéro de sécurité sociale): sex 1/2 (7/8 for temporary numbers), birth year,
    month 01-12 or 20-42/50-99 (unknown), département (2A/2B for Corsica), commune, order, and a
    key equal to 97 - (number mod 97), Corsica counted as 19 (2A) / 18 (2B)."""
    if len(nir) != 15:
        return False
    body, key = nir[:13], nir[13:]
    if body[0] not in "1278" or not key.isdigit():
        return False
    month = body[3:5]
    if not month.isdigit() or not (1 <= int(month) <= 12 or 20 <= int(month) <= 99):
        return False
    department = body[5:7]
    if department in ("2A", "2B"):
        body = body[:5] + ("19" if department == "2A" else "18") + body[7:]
    if not body.isdigit():
        return False
    return 97 - int(body) % 97 == int(key)


_DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"


def es_dni_valid(dni: str) -> bool:
    """Spanish DNI: eight digits and the letter of their value mod 23 (Real Decreto 1553/2005)."""
    return (
        len(dni) == 9
        and dni[:8].isdigit()
        and dni[:8] != "00000000"
        and _DNI_LETTERS[int(dni[:8]) % 23] == dni[8]
    )


def es_nie_valid(nie: str) -> bool:
    """Spanish NIE (foreigners): X/Y/Z (as 0/1/2), seven digits, and the DNI letter."""
    if len(nie) != 9 or nie[0] not in "XYZ" or not nie[1:8].isdigit():
        return False
    number = int(str("XYZ".index(nie[0])) + nie[1:8])
    return _DNI_LETTERS[number % 23] == nie[8]


_CF_ODD = {
    **dict(zip("0123456789", (1, 0, 5, 7, 9, 13, 15, 17, 19, 21), strict=True)),
    **dict(
        zip(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
            (1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25,
             24, 23),
            strict=True,
        )
    ),
}  # fmt: skip
_CF_OMOCODIA = "LMNPQRSTUV"  # digits 0-9 replaced when a code is taken (omocodia)
_CF_MONTHS = "ABCDEHLMPRST"


def it_fiscal_code_valid(code: str) -> bool:
    """Italian codice fiscale (DM 23/12/1976): six letters, year, month letter, day (+40 for
    women), place code, and the control letter from the odd/even position tables. Digits may be
    replaced by L-V (omocodia)."""
    if len(code) != 16 or not code.isascii() or not code.isalnum():
        return False
    if not code[:6].isalpha() or code[8] not in _CF_MONTHS or not code[11].isalpha():
        return False
    if not code[15].isalpha():
        return False
    digits_at = (6, 7, 9, 10, 12, 13, 14)
    plain = list(code)
    for index in digits_at:
        char = code[index]
        if char.isdigit():
            continue
        if char not in _CF_OMOCODIA:
            return False
        plain[index] = str(_CF_OMOCODIA.index(char))
    day = int(plain[9] + plain[10])
    if not (1 <= day <= 31 or 41 <= day <= 71):
        return False
    total = 0
    for index, char in enumerate(code[:15]):
        if index % 2 == 0:  # odd positions counting from 1
            total += _CF_ODD[char]
        else:
            total += int(char) if char.isdigit() else ord(char) - 65
    return chr(65 + total % 26) == code[15]


def nl_bsn_valid(digits: str) -> bool:
    """Dutch burgerservicenummer: nine digits passing the 11-proef (9·d1 + … + 2·d8 − d9 ≡ 0
    mod 11), not all zero."""
    if len(digits) != 9 or not digits.isdigit() or digits == "000000000":
        return False
    total = sum((9 - i) * int(d) for i, d in enumerate(digits[:8])) - int(digits[8])
    return total % 11 == 0


_PESEL_WEIGHTS = (1, 3, 7, 9, 1, 3, 7, 9, 1, 3)
_PESEL_CENTURY = {0: 1900, 20: 2000, 40: 2100, 60: 2200, 80: 1800}


def pl_pesel_valid(digits: str) -> bool:
    """Polish PESEL: a birth date (month + 20/40/60/80 for the 2000s/2100s/2200s/1800s), serial,
    and check digit (10 − Σ wᵢ·dᵢ mod 10) mod 10 with weights 1,3,7,9."""
    if len(digits) != 11 or not digits.isdigit():
        return False
    month = int(digits[2:4])
    offset = month - (month - 1) % 20 - 1 if month else -1
    century = _PESEL_CENTURY.get(offset)
    if century is None or not _is_date(century + int(digits[:2]), month - offset, int(digits[4:6])):
        return False
    total = sum(w * int(d) for w, d in zip(_PESEL_WEIGHTS, digits, strict=False))
    return (10 - total % 10) % 10 == int(digits[10])


def se_personnummer_valid(digits: str) -> bool:
    """Swedish personnummer / samordningsnummer: YYMMDDNNNC (or YYYYMMDDNNNC), a real date (day +
    60 for a samordningsnummer) and a Luhn check digit over the ten-digit form."""
    if not digits.isdigit() or len(digits) not in (10, 12):
        return False
    # the ten-digit form has no century; 2000 + YY is a leap year exactly when 1900 + YY is
    # (but for 1900 itself, which the date rule then accepts one day too many)
    year = int(digits[:4]) if len(digits) == 12 else 2000 + int(digits[:2])
    digits = digits[-10:]
    month, day = int(digits[2:4]), int(digits[4:6])
    if day > 60:
        day -= 60
    return _is_date(year, month, day) and luhn_valid(digits)


_VERHOEFF_D = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9), (1, 2, 3, 4, 0, 6, 7, 8, 9, 5), (2, 3, 4, 0, 1, 7, 8, 9, 5, 6),
    (3, 4, 0, 1, 2, 8, 9, 5, 6, 7), (4, 0, 1, 2, 3, 9, 5, 6, 7, 8), (5, 9, 8, 7, 6, 0, 4, 3, 2, 1),
    (6, 5, 9, 8, 7, 1, 0, 4, 3, 2), (7, 6, 5, 9, 8, 2, 1, 0, 4, 3), (8, 7, 6, 5, 9, 3, 2, 1, 0, 4),
    (9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
)  # fmt: skip
_VERHOEFF_P = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9), (1, 5, 7, 6, 2, 8, 3, 0, 9, 4), (5, 8, 0, 3, 7, 9, 6, 1, 4, 2),
    (8, 9, 1, 6, 0, 4, 3, 5, 2, 7), (9, 4, 5, 3, 1, 2, 6, 8, 7, 0), (4, 2, 8, 6, 5, 7, 3, 9, 0, 1),
    (2, 7, 9, 3, 8, 0, 6, 4, 1, 5), (7, 0, 4, 6, 9, 1, 3, 2, 5, 8),
)  # fmt: skip


def verhoeff_valid(digits: str) -> bool:
    """The Verhoeff dihedral-group check over a string of digits."""
    check = 0
    for position, char in enumerate(reversed(digits)):
        check = _VERHOEFF_D[check][_VERHOEFF_P[position % 8][ord(char) - 48]]
    return check == 0


def in_aadhaar_valid(digits: str) -> bool:
    """Indian Aadhaar number (UIDAI): twelve digits, the first 2-9, not a palindrome, with a
    Verhoeff check digit."""
    return (
        len(digits) == 12
        and digits.isdigit()
        and digits[0] not in "01"
        and digits != digits[::-1]
        and verhoeff_valid(digits)
    )


# --- look-alikes that are not personal data ------------------------------------------------------


def isbn_valid(digits: str) -> bool:
    """ISBN-10 (mod 11, X = 10) or ISBN-13 (978/979, EAN weights 1,3): used to tell a book number
    from a phone number or an id of the same length."""
    if len(digits) == 10:
        if not digits[:9].isdigit() or not (digits[9].isdigit() or digits[9] == "X"):
            return False
        values = [int(d) for d in digits[:9]] + [10 if digits[9] == "X" else int(digits[9])]
        return sum((10 - i) * v for i, v in enumerate(values)) % 11 == 0
    if len(digits) == 13 and digits.isdigit() and digits[:3] in ("978", "979"):
        total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(digits))
        return total % 10 == 0
    return False


def _is_date(year: int, month: int, day: int) -> bool:
    try:
        _dt.date(year, month, day)
    except ValueError:
        return False
    return True

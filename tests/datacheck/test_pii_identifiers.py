"""Check-digit rules of each identifier: valid numbers pass, one changed digit fails."""

from __future__ import annotations

import pytest

from bastion.personal import identifiers as ids

# (validator, valid values, invalid values) — the invalid ones differ from a valid one by a
# check digit or break one structure rule
CASES = [
    (ids.card_valid, ["4111111111111111", "5555555555554444", "378282246310005",
                      "6011111111111117", "3530111333300000", "2223003122003222"],
     ["4111111111111112", "5555555555554440", "378282246310006", "1234567812345670",
      "0000000000000000", "9111111111111111"]),
    (ids.iban_valid, ["DE89370400440532013000", "GB82WEST12345698765432",
                      "FR1420041010050500013M02606", "NL91ABNA0417164300"],
     ["DE89370400440532013001", "GB82WEST1234569876543", "XX89370400440532013000",
      "NL91ABNA0417164301"]),
    (ids.us_ssn_valid, ["244768917", "536221234"],
     ["000123456", "666123456", "912345678", "123004567", "123450000", "078051120"]),
    (ids.uk_nino_valid, ["AB123456C", "JG103759A"],
     ["BG123456C", "ZZ123456A", "AB123456E", "DA123456A", "AO123456A"]),
    (ids.de_tax_id_valid, ["86095742719", "47036892816", "65929970489"],
     ["86095742718", "06095742719", "11234567891", "11123456789", "12345678903"]),
    (ids.fr_nir_valid, ["255081416802538", "175091730037964", "269052A12345688"],
     ["255081416802539", "355081416802538", "255131416802538", "269052A12345687"]),
    (ids.es_dni_valid, ["12345678Z", "31939071Y"], ["12345678A", "00000000T", "1234567Z"]),
    (ids.es_nie_valid, ["X1234567L", "Z2188131P"], ["X1234567A", "A1234567L"]),
    (ids.it_fiscal_code_valid, ["RSSMRA85T10A562S", "MRTMTT91D08F205J", "VRCCCL47R16G698J"],
     ["RSSMRA85T10A562T", "RSSMRA85Z10A562S", "RSSMRA85T99A562S"]),
    (ids.nl_bsn_valid, ["111222333", "123456782"], ["111222334", "123456789", "000000000"]),
    (ids.pl_pesel_valid, ["44051401359", "02070803628"],
     ["44051401358", "44131401359", "44053201359"]),
    (ids.se_personnummer_valid, ["8112189876", "198112189876", "8112789876"[:0] + "8112189876"],
     ["8112189875", "8113189876", "8112329876"]),
    (ids.in_aadhaar_valid, ["234123412346", "499118665246"],
     ["234123412345", "123412341234", "034123412346"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("validator", "valid", "invalid"), CASES, ids=lambda v: getattr(v, "__name__", "")
)
def test_valid_and_invalid_check_digits(validator, valid, invalid) -> None:
    for value in valid:
        assert validator(value), value
    for value in invalid:
        assert not validator(value), value


def test_card_brands_and_lengths() -> None:
    assert ids.card_brand("4111111111111111") == "visa"
    assert ids.card_brand("378282246310005") == "amex"
    assert ids.card_brand("2223003122003222") == "mastercard"
    assert ids.card_brand("37828224631000") is None  # amex is 15 digits


def test_samordningsnummer_day_plus_sixty() -> None:
    # 18 December 1981 as a coordination number: day 78; Luhn recomputed for the new digits
    body = "811278987"
    check = next(d for d in "0123456789" if ids.luhn_valid(body + d))
    assert ids.se_personnummer_valid(body + check)


def test_verhoeff_detects_a_transposition() -> None:
    assert ids.verhoeff_valid("2363")
    assert not ids.verhoeff_valid("2336")


def test_isbn() -> None:
    assert ids.isbn_valid("9783161484100")
    assert ids.isbn_valid("0306406152")
    assert not ids.isbn_valid("9783161484101")

"""The personal-data check: detectors in free text, decoys left alone, column semantics,
k-anonymity, redaction that never leaks a raw value, and bounded work on hostile cells."""

from __future__ import annotations

import time

import pyarrow as pa
import pytest

from bastion.datacheck import pii
from bastion.datacheck.dataset import Dataset
from bastion.datacheck.kanonymity import k_anonymity
from bastion.datacheck.options import DataOptions
from bastion.datacheck.semantics import column_semantic
from bastion.personal.detectors import detect, redact

EMBEDDED = [
    ("Write to anna.kowalska@gmail.com today", "email"),
    ("Call me on +49 30 2090 4000 or later", "phone"),
    ("my number is (415) 692-3344, evenings", "phone"),
    ("paid with 4111 1111 1111 1111 yesterday", "credit_card"),
    ("Überweisung auf DE89 3704 0044 0532 0130 00 bitte", "iban"),
    ("SSN 536-22-1234 on file", "us_ssn"),
    ("NI number JG 10 37 59 A", "uk_nino"),
    ("Steuer-ID: 86095742719", "de_tax_id"),
    ("n° sécu 2 55 08 14 168 025 38", "fr_nir"),
    ("DNI 12345678Z", "es_dni"),
    ("NIE X-1234567-L", "es_nie"),
    ("CF: RSSMRA85T10A562S", "it_fiscal_code"),
    ("mijn BSN is 111222333", "nl_bsn"),
    ("PESEL 44051401359", "pl_pesel"),
    ("personnummer 811218-9876", "se_personnummer"),
    ("Aadhaar 4991 1866 5246", "in_aadhaar"),
    ("login from 81.2.69.160 at noon", "ip_address"),
    ("login from 2a00:1450:4001:82b::200e", "ip_address"),
    ("Patient born on 12 March 1985, admitted", "date_of_birth"),
    ("aws_key = AKIAIOSFODNN7EXAMPLE", "secret"),
]


@pytest.mark.parametrize(("text", "kind"), EMBEDDED)
def test_embedded_values_are_found(text: str, kind: str) -> None:
    assert [m.kind for m in detect(text)] == [kind]


@pytest.mark.parametrize(
    "text",
    [
        "mijn BSN is 111222334",  # 11-proef fails
        "PESEL 44051401358",  # check digit
        "Steuer-ID: 86095742718",
        "CF: RSSMRA85T10A562T",
        "DNI 12345678A",
        "NIE X1234567A",
        "SSN 666-22-1234",  # area 666 is never issued
        "NI number BG 10 37 59 A",
        "personnummer 811218-9875",
        "Aadhaar 4991 1866 5245",
        "paid with 4111 1111 1111 1112",
        "IBAN DE89 3704 0044 0532 0130 01",
        "n° sécu 2 55 08 14 168 025 39",
    ],
)
def test_invalid_check_digits_are_not_flagged(text: str) -> None:
    assert detect(text) == []


DECOYS = [
    "Order ORD-2023-104857 shipped",
    "order number 583920174 confirmed",  # nine digits, no keyword: not a BSN or SSN
    "ISBN 978-3-16-148410-0",
    "ISBN 0-306-40615-2 second edition",
    "at 2023-04-15 12:30:45 the job ended",
    "timestamp 20230415123045",
    "epoch 1681561845123",
    "upgrade to version 1.2.3.4 or v2.14.1",
    "release 10.0.19045.2965",
    "tracking 1234567812345678",  # 16 digits failing Luhn
    "ref 9876543210987654",
    "SKU 4521-XL-20 and part AB-1234-CD",
    "product code 12345678-B",
    "uuid 123e4567-e89b-12d3-a456-426614174000",
    "mac 00:1A:2B:3C:4D:5E",
    "meeting 12:30:45, room 3.14",
    "price 1,234,567.89 EUR",
    "git sha 9fceb02d0ae598e95dc970b74767f19372d61af8",
    # numbers printed side by side (an attack review found these read as phone numbers)
    "[0.6931 0.682  0.6711 0.665 ]",
    "Epoch 3/5 - loss: 0.0132 - accuracy: 0.8375 - val_loss: 0.2594 - 1250/1250 [====] - 45s",
    "     a    b    c\n0  541  578  721\n1  102  993  456",
    "my scores were 0.1234 0.5678 and 0.9012 yesterday",
]


@pytest.mark.parametrize("text", DECOYS)
def test_near_miss_decoys_are_not_flagged(text: str) -> None:
    assert detect(text) == []


def test_hint_makes_a_weak_shape_count() -> None:
    assert detect("111222333") == []
    assert [m.kind for m in detect("111222333", hint="nl_bsn")] == ["nl_bsn"]
    assert [m.kind for m in detect("536221234", hint="us_ssn")] == ["us_ssn"]


def test_redact_replaces_every_value() -> None:
    text = "anna.kowalska@gmail.com paid 4111 1111 1111 1111 from 81.2.69.160"
    out = redact(text)
    assert "anna.kowalska" not in out and "4111 1111 1111 1111" not in out
    assert "81.2.69.160" not in out
    assert out.endswith("from 81.*.*.*")
    assert "**** **** **** 1111" in out


def test_redact_does_not_pass_on_unexamined_text() -> None:
    text = "x" * 200 + " anna@gmail.com"
    out = redact(text, max_chars=100)
    assert "anna@gmail.com" not in out and "not examined" in out


@pytest.mark.parametrize(
    ("name", "semantic"),
    [
        ("email", "email"),
        ("customer_email", "email"),
        ("Telefonnummer", "phone"),
        ("numero_telefono", "phone"),
        ("Geburtsdatum", "date_of_birth"),
        ("fecha_de_nacimiento", "date_of_birth"),
        ("date_naissance", "date_of_birth"),
        ("firstName", "person_name"),
        ("Nachname", "person_name"),
        ("cognome", "person_name"),
        ("achternaam", "person_name"),
        ("name", "name?"),
        ("product_name", None),
        ("file_name", None),
        ("Straße", "address"),
        ("adresse", "address"),
        ("PLZ", "postcode"),
        ("zip_code", "postcode"),
        ("Geschlecht", "sex"),
        ("age", "age"),
        ("page", None),
        ("usage", None),
        ("market_cap", None),
        ("bsn", "nl_bsn"),
        ("PESEL", "pl_pesel"),
        ("codice_fiscale", "it_fiscal_code"),
        ("client_ip", "ip_address"),
        ("amount", None),
    ],
)
def test_column_semantics(name: str, semantic: str | None) -> None:
    assert column_semantic(name) == semantic


def test_k_anonymity_on_a_constructed_table() -> None:
    # groups: (30,A,f) x3, (41,B,m) x2, (55,C,f) x1, (55,C,m) x1 — postcode case and spaces fold
    columns = {
        "age": pa.array([30, 30, 30, 41, 41, 55, 55]),
        "zip": pa.array(["A1", "a1 ", "A1", "B2", "B2", "C3", "C3"]),
        "sex": pa.array(["f", "f", "f", "m", "m", "f", "m"]),
    }
    result = k_anonymity(columns, threshold=3)
    assert result.min_k == 1
    assert result.classes == 4
    assert result.unique_rows == 2
    assert result.below == (3, 4, 5, 6)
    assert k_anonymity(columns, threshold=2).below == (5, 6)


def _people() -> pa.Table:
    return pa.table(
        {
            "customer_id": [f"c{i}" for i in range(8)],
            "first_name": ["Anna", "Jean-Luc", "María", "Piotr", "Sven", "Lea", "Tom", "Ada"],
            "email": [f"user{i}@mailbox{i}.org" for i in range(7)] + [None],
            "notes": [
                "call +49 30 2090 4000",
                "card 4111 1111 1111 1111",
                "nothing here",
                "key AKIAIOSFODNN7EXAMPLE",
                "ISBN 978-3-16-148410-0",
                "order ORD-2023-104857",
                "fine",
                "ok",
            ],
            "age": [30, 30, 30, 41, 41, 52, 52, 52],
            "zip": ["10115", "10115", "10115", "75001", "75001", "00-001", "00-001", "00-002"],
            "gender": ["f", "f", "f", "m", "m", "m", "m", "m"],
            "dob": ["1994-01-02"] * 8,
        }
    )


def test_check_reports_columns_rows_and_rules() -> None:
    findings = pii.check(
        Dataset.from_table(_people(), "people.csv"), DataOptions(id_column="customer_id")
    )
    by_key = {(f.rule_id, f.location.pointer): f for f in findings}
    email = by_key[("PII001", "column:email")]
    assert email.rows == tuple(range(7))
    assert email.row_ids == tuple(f"c{i}" for i in range(7))
    assert "7 e-mail address match(es) in 7 of 8 rows (87.5%)" in email.message
    assert by_key[("PII002", "column:notes")].rows == (1,)
    assert by_key[("PII001", "column:notes")].rows == (0,)
    assert by_key[("PII006", "column:notes")].rows == (3,)
    assert by_key[("PII005", "column:first_name")].rows == tuple(range(8))
    assert by_key[("PII005", "column:dob")].rows == tuple(range(8))
    k = by_key[("PII007", "columns:age,zip,gender,dob")]
    assert "smallest group k = 1" in k.message
    assert k.rows == tuple(range(8))  # every group is smaller than the default k = 5
    assert all(f.stage.value == "data" for f in findings)
    assert all("LLM02" in f.tags.owasp_llm for f in findings)
    # nothing else: the ISBN and the order number are not personal data
    assert len(findings) == 7


def test_findings_never_carry_a_raw_value() -> None:
    table = _people()
    findings = pii.check(Dataset.from_table(table, "people.csv"), DataOptions())
    raw = [
        "user0@mailbox0.org",
        "mailbox0",
        "4111 1111 1111 1111",
        "4111111111111111",
        "+49 30 2090 4000",
        "2090 4000",
        "AKIAIOSFODNN7EXAMPLE",
        "Jean-Luc",
        "María",
        "Piotr",
        "1994-01-02",
    ]
    for finding in findings:
        text = " ".join(
            [finding.message, finding.evidence, finding.remediation, finding.location.display()]
        )
        for value in raw:
            assert value not in text, (finding.rule_id, value)


def test_id_column_holding_personal_data_is_not_copied_into_row_ids() -> None:
    table = pa.table({"email": ["a.b@gmail.com", "c.d@web.de"], "x": [1, 2]})
    findings = pii.check(Dataset.from_table(table, "t.csv"), DataOptions(id_column="email"))
    assert findings and all(f.row_ids == () for f in findings)


def test_random_numbers_passing_luhn_by_chance_are_not_cards() -> None:
    import random

    rng = random.Random(7)
    numbers = [str(rng.randrange(4 * 10**15, 5 * 10**15)) for _ in range(500)]
    table = pa.table({"tracking": numbers})
    assert pii.check(Dataset.from_table(table, "t.csv"), DataOptions()) == []


def test_integer_columns_are_examined() -> None:
    table = pa.table({"card": pa.array([4111111111111111, 5555555555554444], pa.int64())})
    findings = pii.check(Dataset.from_table(table, "t.csv"), DataOptions())
    assert [(f.rule_id, f.rows) for f in findings] == [("PII002", (0, 1))]


def test_named_column_turns_bare_numbers_into_ids() -> None:
    table = pa.table({"bsn": ["111222333", "123456782", "999999991"], "n": ["111222333"] * 3})
    findings = pii.check(Dataset.from_table(table, "t.csv"), DataOptions())
    assert [(f.rule_id, f.location.pointer, f.rows) for f in findings] == [
        ("PII003", "column:bsn", (0, 1))
    ]


def test_product_name_column_is_not_person_names() -> None:
    table = pa.table({"product_name": ["Widget Pro", "Gadget Max"], "name": ["x-100", "y-200"]})
    assert pii.check(Dataset.from_table(table, "t.csv"), DataOptions()) == []


def test_hostile_long_cell_is_bounded_and_said() -> None:
    cell = ("a" * 1000 + " 4111 1111 1111 1111 ") * 10_000  # ~10 MB
    table = pa.table({"text": [cell, "anna@gmail.com"]})
    options = DataOptions()
    started = time.perf_counter()
    findings = pii.check(Dataset.from_table(table, "t.csv"), options)
    assert time.perf_counter() - started < 5
    rules = sorted((f.rule_id, f.rows) for f in findings)
    assert ("PII008", (0,)) in rules
    card = next(f for f in findings if f.rule_id == "PII002")
    assert "examined up to 10,000" in card.message
    assert time.perf_counter() - started < 5


def test_detect_is_bounded_on_a_hostile_string() -> None:
    hostile = "1 " * 5_000_000 + "@" * 1_000_000
    started = time.perf_counter()
    detect(hostile)
    redact(hostile)
    assert time.perf_counter() - started < 5


def test_the_prefilter_on_lowered_text_picks_the_same_groups() -> None:
    """The case-insensitive pre-filters (secret words, date-of-birth words) run case-sensitive
    on lowered ASCII text, for speed: on every text below they must pick exactly the groups the
    case-insensitive patterns pick, including each word in random case inside other text."""
    import random
    import re

    from bastion.personal import detectors

    def reference(text: str) -> list[str]:
        return [
            name for name, pattern in detectors.GROUP_PATTERNS.items() if re.search(pattern, text)
        ]

    rnd = random.Random(11)
    words = [
        "pass", "PWD", "Secret", "api_KEY", "Token", "AUTH", "Cred", "contrasena", "AKIA",
        "ghp_", "GLPAT-", "xoxb-", "hooks.slack.com", "SK_LIVE_", "sk-", "HF_", "AIza",
        "-----BEGIN RSA PRIVATE KEY", "npm_", "PyPI-", "SG.", "https://u:p@host",
        "ACabcdef0123456789abcdef0123456789", "Mabcdefghijklmnopqrstuvwx.",
        "123456789:" + "A" * 35, "Date of Birth", "DOB", "born on", "Geboren am",
        "Née le", "Fecha de Nacimiento", "nata il", "urodzony", "Fodd", "Birthday",
    ]  # fmt: skip
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .:-_/@+\n"
    texts = ["", "loss 0.1 acc 0.9", "The quick brown fox.", "x" * 12_000]
    for word in words:
        cased = "".join(c.upper() if rnd.random() < 0.5 else c.lower() for c in word)
        filler = "".join(rnd.choice(alphabet) for _ in range(rnd.randrange(0, 60)))
        texts += [word, cased, filler + cased + filler, filler + word[:-1]]
    texts += [
        "".join(rnd.choice(alphabet) for _ in range(rnd.randrange(1, 300))) for _ in range(500)
    ]
    for text in texts:
        assert detectors._groups(text) == reference(text), text
    # non-ASCII text keeps the case-insensitive patterns (the long ſ matches s under them, the
    # Kelvin sign k, the dotless ı i: detect-secrets' IGNORECASE patterns fire on them too)
    for text in ("paſſword", "ſecret", "api_\u212aey", "aws_pıt \u212aey"):  # lowered: none
        assert detectors._groups(text) == reference(text) == ["secret"], text


def test_re2_safe_letters_are_read_alike_by_both_engines_and_never_folded() -> None:
    """The data check trusts RE2's verdict only on text of ASCII and these letters: none may be
    a digit or a space to Python, change under NFKC, be invisible, or be a letter Python's
    IGNORECASE alone reads as an ASCII one."""
    import re
    import unicodedata

    from bastion.personal import detectors

    ranges = re.findall(r"(.)(?:-(.))?", detectors.RE2_SAFE_LETTERS)
    letters = [chr(c) for a, b in ranges for c in range(ord(a), ord(b or a) + 1)]
    assert len(letters) > 30_000
    for char in letters:
        assert not re.fullmatch(r"\d", char) and not char.isspace(), hex(ord(char))
        assert unicodedata.normalize("NFKC", char) == char, hex(ord(char))
        assert unicodedata.category(char) != "Cf", hex(ord(char))
        assert not any(re.fullmatch("(?i)" + c, char) for c in "abcdefghijklmnopqrstuvwxyz")
    # ASCII: only the controls Python counts as space and RE2 does not are handed to Python
    unsafe = re.compile(detectors.NOT_RE2_SAFE_PATTERN)
    assert [c for c in range(128) if unsafe.search(chr(c))] == [0x0B, 0x1C, 0x1D, 0x1E, 0x1F]


@pytest.mark.parametrize(
    ("cell", "rule"),
    [
        ("card 4539\u202f1488\u202f0343\u202f6467", "PII002"),  # narrow no-break spaces
        ("card 4539\u00a01488\u00a00343\u00a06467", "PII002"),  # no-break spaces
        ("card \uff14\uff15\uff13\uff19148803436467", "PII002"),  # full-width digits
        ("card 4539\u200b1488\u200b0343\u200b6467", "PII002"),  # zero-width spaces
        ("call +33\u202f6\u202f12\u202f34\u202f56\u202f78", "PII001"),  # French formatting
        ('ap\u0131_key = "hunter2xyz"', "PII006"),  # dotless i: Python's IGNORECASE only
        ("note\x0bAKCp8jQ6UDSh9z", "PII006"),  # a line break to Python, not to RE2
        ("AP\u06617Xq2mLp9Zs", "PII006"),  # an Arabic-Indic digit where \d is Unicode
    ],
)
def test_the_data_check_finds_what_detect_finds_where_re2_reads_text_otherwise(
    cell: str, rule: str
) -> None:
    """RE2's \\d and \\s are ASCII, Python's are Unicode; Python folds ı to i and detect()
    folds compatibility and invisible characters: the vectorised pre-filters dropped these
    cells, detect() (the guard's screen) finds each."""
    assert detect(cell)
    table = pa.table({"notes": ["nothing to see here"] * 5 + [cell] + ["plain text"] * 4})
    findings = pii.check(Dataset.from_table(table, "t.csv"), DataOptions())
    assert [(f.rule_id, f.rows) for f in findings] == [(rule, (5,))]


def test_text_in_other_scripts_stays_on_the_vectorised_path() -> None:
    import re

    from bastion.personal import detectors

    safe = re.compile(detectors.NOT_RE2_SAFE_PATTERN)
    for text in ("José García", "Zoë Brontë", "Ærøskøbing", "Привет, мир", "Łódź", "東京都",
                 "서울", "שלום", "مرحبا", "Ελληνικά", "“quoted” – €5"):  # fmt: skip
        assert not safe.search(text), text

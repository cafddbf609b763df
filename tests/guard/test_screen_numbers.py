"""The row screen on personal data sent as numbers and split over adjacent fields, and its
restraint on ordinary numeric features."""

from __future__ import annotations

import random
from typing import Any

import pytest
from guard_support import credit_rows

from bastion.guard.screen import RowScreen

CARD = "4111111111111111"
MASTERCARD = "5555555555554444"


def screen(**fields: Any) -> list[str]:
    return RowScreen({}, 10_000).rows([fields], redact=False)[0]


@pytest.mark.parametrize(
    "value", [int(CARD), float(CARD), 4.111111111111111e15, -int(CARD), int(MASTERCARD)]
)
def test_a_card_sent_as_a_json_number_is_found(value: Any) -> None:
    assert screen(ref=value) == ["credit_card"]


def test_a_number_failing_the_check_digit_or_too_short_is_not() -> None:
    assert screen(ref=4111111111111112) == []
    assert screen(ref=4111111111111111.5) == []  # not integral: not an identifier
    assert screen(income=45000, age=37, amount=4500.5, big=1234567, flag=True) == []
    assert screen(ref=float("nan"), other=10**400) == []


def test_a_field_name_lets_weak_number_shapes_count() -> None:
    assert screen(ssn=123456788) == ["us_ssn"]
    assert screen(bsn=111222333) == ["nl_bsn"]
    assert screen(bsn=111222334) == []  # the 11-proef fails
    assert screen(ref=111222333) == []  # nine digits anywhere pass one time in eleven
    assert screen(bsn="111222333") == ["nl_bsn"]  # the same hint for text
    # a PESEL of someone born in the 2000s loses its leading zero as an integer
    assert screen(pesel=int("02070803628")) == ["pl_pesel"]
    assert screen(mobile=4915112345678) == ["phone"]  # the + is lost too


def test_a_card_split_over_adjacent_fields() -> None:
    groups = [CARD[i : i + 4] for i in range(0, 16, 4)]
    assert screen(**{f"c{i}": g for i, g in enumerate(groups)}) == ["credit_card"]
    assert screen(**{f"c{i}": int(g) for i, g in enumerate(groups)}) == ["credit_card"]
    # an integer part that lost its leading zeros (4000 0012 3456 7899)
    assert screen(a=4000, b=12, c=3456, d=7899) == ["credit_card"]
    assert screen(a=4111, b=1111, c=1111, d=1112) == []  # Luhn fails
    # not adjacent: another field in between breaks the run
    assert screen(a=4111, b=1111, note="x", c=1111, d=1111) == []


def test_ssn_and_phone_split_over_named_fields() -> None:
    assert screen(ssn_area=219, ssn_group=9, ssn_serial=9998) == ["us_ssn"]
    assert screen(area=219, group=9, serial=9998) == []  # nothing says SSN
    assert screen(country_code=44, number=2079460958) == ["phone"]
    assert screen(country_code=44, number=1234) == []
    assert screen(duration=44, amount=2079460958) == []  # no name says phone


def test_redaction_replaces_every_part() -> None:
    kinds, rows = RowScreen({}, 10_000).rows(
        [{"a": 4111, "b": 1111, "c": 1111, "d": 1111, "age": 37}], redact=True
    )
    assert kinds == ["credit_card"] and rows is not None
    assert rows[0] == {"a": "****", "b": "****", "c": "****", "d": "****", "age": 37}
    kinds, rows = RowScreen({}, 10_000).rows([{"ref": int(CARD)}], redact=True)
    assert rows == [{"ref": "**** **** **** 1111"}]


def test_benign_credit_rows_with_realistic_numbers_are_never_flagged() -> None:
    rows = credit_rows()
    categories = {
        c: frozenset(str(r[c]) for r in rows) for c in rows[0] if isinstance(rows[0][c], str)
    }
    row_screen = RowScreen(categories, 10_000)
    rng = random.Random(1)
    for _ in range(3000):
        row = {c: rng.choice(rows)[c] for c in rows[0]}
        row["credit_amount"] = round(row["credit_amount"] * rng.uniform(0.5, 3), 2)
        row["duration_in_month"] = float(row["duration_in_month"])
        items = list(row.items())
        rng.shuffle(items)
        assert row_screen.rows([dict(items)], redact=False)[0] == []


def test_hint_cache_is_bounded() -> None:
    row_screen = RowScreen({}, 10_000)
    for i in range(5000):
        row_screen.rows([{f"column{i}": "x"}], redact=False)
    assert len(row_screen._hints) <= 4096

"""Values written around the patterns — invisible characters inside them, full-width or other
compatibility forms — are still found, and redaction covers the original characters (found by
the guard's attack review: such values passed the screen with block/redact on)."""

from __future__ import annotations

import pytest

from bastion.personal.detectors import detect, redact

CASES = [
    ("mail jane.roe\u200b@example.org now", "email", "jane.roe\u200b@example.org"),
    ("mail jane.roe\ufeff@exam\u00adple.org", "email", "jane.roe\ufeff@exam\u00adple.org"),
    ("mail jane.roe\uff20example.org", "email", "jane.roe\uff20example.org"),
    ("card \uff14\uff11\uff11\uff11 1111 1111 1111 ok", "credit_card", None),
    ("card 4111\u2060 1111 1111 1111", "credit_card", None),
    ("IBAN DE89\u200c 3704 0044 0532 0130 00", "iban", None),
]


@pytest.mark.parametrize(("text", "kind", "raw"), CASES)
def test_obfuscated_values_are_found_and_redacted(text: str, kind: str, raw: str | None) -> None:
    matches = detect(text)
    assert [m.kind for m in matches] == [kind], matches
    (match,) = matches
    assert 0 <= match.start < match.end <= len(text)
    redacted = redact(text)
    if raw is not None:
        assert text[match.start : match.end] == raw
        assert raw not in redacted
    digits = "".join(c for c in text if c.isdigit())
    if digits:  # no run of the number's leading digits survives redaction
        assert digits[:8] not in "".join(c for c in redacted if c.isdigit())


def test_plain_and_ordinary_non_ascii_text_is_unchanged() -> None:
    for text in ("h\u00e9llo w\u00f6rld, na\u00efve caf\u00e9", "\u65e5\u672c\u8a9e\u306e\u6587"):
        assert detect(text) == []
        assert redact(text) == text
    # spans stay those of the original text when nothing is folded
    text = "K\u00f6ln: jane.roe@example.org"
    (match,) = detect(text)
    assert text[match.start : match.end] == "jane.roe@example.org"

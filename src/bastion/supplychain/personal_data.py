"""Personal data in a notebook's stored output (COD010), found by the data stage's detectors
(`bastion.personal.detectors`: the same shapes and check digits as `bastion data check` and
the guard's screen) so that a notebook and a dataset are judged alike: e-mail addresses, phone
numbers (phonenumbers' numbering plans), payment cards (Luhn and issuer ranges), IBANs (mod 97)
and the national ids with their check rules.

What this module adds is the notebook's view of them:
- the output is read in windows of the detectors' text size, overlapping so that a value
  across a window's edge is still seen, up to MAX_TEXT characters of one output;
- IP addresses are left out (a training notebook prints its cluster's and servers' addresses;
  those are infrastructure, not a person's), and secrets are reported by COD's own secret rule;
- values that are documentation or test fixtures are not reported: addresses at the reserved
  example domains and card numbers of one or two repeated digits (4111 1111 1111 1111), which
  notebooks print from test code far more often than from real data."""

from __future__ import annotations

from collections.abc import Iterator

from bastion.personal import detectors

MAX_TEXT = 2_000_000  # characters of one output examined
WINDOW = detectors.MAX_TEXT
OVERLAP = 200  # longer than any value the detectors report (an IBAN is at most 42 characters)
LEFT_OUT = frozenset({"ip_address", "secret"})
EXAMPLE_DOMAINS = ("example.com", "example.org", "example.net", "test.com", "localhost")


def personal_data(text: str) -> Iterator[tuple[str, str]]:
    """(kind's label, redacted sample) for each kind of personal data found, once per kind."""
    text = text[:MAX_TEXT]
    found: dict[str, str] = {}
    start = 0
    while start < len(text):
        window = text[start : start + WINDOW]
        for match in detectors.detect(window, max_chars=WINDOW):
            if match.kind in LEFT_OUT or match.kind in found:
                continue
            if _fixture(match.kind, window[match.start : match.end]):
                continue
            found[match.kind] = match.redacted
        if start + WINDOW >= len(text):
            break
        start += WINDOW - OVERLAP
    for kind, sample in found.items():
        yield detectors.KINDS[kind][1], sample


def _fixture(kind: str, value: str) -> bool:
    if kind == "email":
        return value.lower().rstrip(".").endswith(EXAMPLE_DOMAINS)
    if kind == "credit_card":
        return len({c for c in value if c.isdigit()}) <= 2
    return False

"""The secrets pre-filter (`bastion.secrets.may_hold_secret`): a line it rejects skips
detect-secrets, so it must match every line on which a detector fires. Held against lines
bastion's team did not write: detect-secrets' own test strings (tests/data/secrets, with
their provenance), in four letter cases each; and it must reject ordinary English, where the
old pre-filter's plain words (key, auth, api, pass, begin) sent every paragraph to
detect-secrets."""

from __future__ import annotations

import json
import re
from pathlib import Path
from unittest import mock

import pytest

pytest.importorskip("detect_secrets")

import bastion.secrets as secrets
from bastion.secrets import SECRET_PREFILTER_PATTERN, may_hold_secret, secrets_in

CORPUS = Path(__file__).parent / "data" / "secrets" / "detect_secrets_lines.json"


def _variants() -> list[str]:
    lines = json.loads(CORPUS.read_text())["lines"]
    cased = (v for line in lines for v in (line, line.upper(), line.lower(), line.swapcase()))
    return list(dict.fromkeys(cased))


def _ungated(text: str) -> list[tuple[int, int, str]]:
    with mock.patch.object(secrets, "may_hold_secret", lambda line: True):
        return list(secrets_in(text))


def test_every_line_a_detector_fires_on_passes_the_prefilter() -> None:
    variants = _variants()
    fired = [line for line in variants if _ungated(line)]
    assert len(fired) >= 500  # the corpus exercises every detector, not a handful of lines
    kinds = {kind for line in fired for _n, _c, kind in _ungated(line)}
    assert len(kinds) >= 20, kinds
    missed = [line for line in fired if not may_hold_secret(line)]
    assert missed == []


def test_gated_and_ungated_scans_agree_on_whole_texts() -> None:
    variants = _variants()
    for start in range(0, len(variants), 200):
        text = "\n".join(variants[start : start + 200])
        assert list(secrets_in(text)) == _ungated(text)


def test_lines_the_old_prefilter_let_through_unscanned_are_scanned() -> None:
    """GitLab's pipeline-trigger, agent and OAuth tokens and Cloudant's `pw` names (in the
    corpus) had no word of the old pre-filter: detect-secrets never saw those lines."""
    for line in (
        "glptt-Need5_T00-be-exactly-40-chars--ELse_fail",
        "gloas-checking_Length-Is-_exactly_64--checking_Length-Is-_exactly_64--",
        'clou_pw = "abcd1234abcd1234abcd1234abcd1234abcd1234abcd1234abcd1234abcd1234"',
    ):
        assert may_hold_secret(line)
        assert list(secrets_in(line)), line


def _english() -> list[str]:
    """English prose others wrote: the standard library's docstrings."""
    import argparse
    import collections
    import email
    import json as json_module
    import logging
    import pathlib

    texts: list[str] = []
    for module in (argparse, collections, email, json_module, logging, pathlib):
        for obj in (module, *vars(module).values()):
            doc = getattr(obj, "__doc__", None)
            if isinstance(doc, str):
                texts.append(doc)
    return [line for text in texts for line in text.splitlines() if len(line.split()) >= 5]


def test_english_prose_does_not_reach_detect_secrets() -> None:
    lines = _english()
    assert len(lines) > 300
    words = re.compile(r"(?i)key|auth|api|pass|begin|token")
    assert sum(bool(words.search(line)) for line in lines) > 20  # the old pre-filter's words
    passed = [line for line in lines if may_hold_secret(line)]
    assert len(passed) <= len(lines) // 100, passed
    with mock.patch("detect_secrets.core.scan.scan_line") as scan:
        list(secrets_in("\n".join(line for line in lines if line not in passed)))
    scan.assert_not_called()


@pytest.mark.parametrize("text", ["Password", "p\u0430ssword = 'x'", "CONTRASEÑA: 'abc1'"])
def test_non_ascii_lines_use_the_case_insensitive_pattern(text: str) -> None:
    assert may_hold_secret(text) == bool(re.search(SECRET_PREFILTER_PATTERN, text))


def test_the_pattern_runs_vectorised_in_pyarrow() -> None:
    pa = pytest.importorskip("pyarrow")
    compute = pytest.importorskip("pyarrow.compute")
    lines = ["ghp_" + "a" * 36, "the author's passage", "password = 'hunter2'"]
    found = compute.match_substring_regex(pa.array(lines), SECRET_PREFILTER_PATTERN)
    assert found.to_pylist() == [True, False, True]


@pytest.mark.parametrize(
    "line",
    [
        "ARTIFACTORY=AP\u06617Xq2mLp9Zs",  # Artifactory's [\dABCDEF]: an Arabic-Indic digit
        "AP\uff117Xq2mLp9Zs",  # a full-width digit
        "M"
        + "\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669\u0660" * 2
        + "\u0661\u0662\u0663\u0664.GhQk2v.Xq7pLm2Zs9Wd3Fh6Jk8Nb1Vc4Tr5",  # Discord's \d
        'ap\u0131_key = "hunter2xyz"',  # Python's IGNORECASE reads the dotless i as i
        'PR\u0130VATE_KEY = "hunter2xyz"',
        "\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669:AAEhBOweik6ad9r_QXMENQjcrGbqCr4K-ka",
    ],
)
def test_lines_in_other_scripts_an_attack_review_found(line: str) -> None:
    """Where a detector's class is \\d or its pattern IGNORECASE, a digit of another script or
    a dotless i still fires it (Python's re): the pre-filter must let the line through."""
    assert _ungated(line)
    assert may_hold_secret(line)
    assert list(secrets_in(line)) == _ungated(line)


@pytest.mark.parametrize("line", ["x AKCp8jQ6UDSh9z ", 'x "AKCp8jQ6UDSh9z"', "pw: AP4t8QSHeVJ "])
def test_a_token_after_its_delimiter_is_reported_where_it_starts(line: str) -> None:
    """Artifactory's patterns match the space, quote, = or : before the token: the column was
    that character, and detect() (the data check, the guard's screen) took a zero-length span
    there and dropped the secret (attack review)."""
    from bastion.personal.detectors import detect

    ((_number, column, _kind),) = secrets_in(line)
    assert line[column - 1] in "AP"  # the token's first character
    found = detect(line)
    assert [m.kind for m in found] == ["secret"]
    assert line[found[0].start : found[0].end] in ("AKCp8jQ6UDSh9z", "AP4t8QSHeVJ")


def test_a_token_in_a_line_too_long_to_scan_whole_is_found_in_its_piece() -> None:
    """Lines over MAX_LINE (minified code, a notebook's JSON on one line) were skipped: a token
    in one was never reported. They are scanned in pieces around the pre-filter's matches."""
    token = "ghp_Xq7pLm2Zs9Wd3Fh6Jk8Nb1Vc4Tr5aB0cD9eF"
    line = "x=1;" * 5_000 + f'var t="{token}";' + "y=2;" * 3_000 + 'password = "hunter2xyz";'
    assert len(line) > secrets.MAX_LINE
    found = {kind: column for _number, column, kind in secrets_in(line)}
    assert line[found["GitHub Token"] - 1 :].startswith(token)
    assert line[found["Secret Keyword"] - 1 :].startswith("hunter2xyz")


def test_the_pieces_of_a_hostile_long_line_are_bounded() -> None:
    spaced = "key" + " " * 50_000 + "a" * 44  # one pre-filter match longer than MAX_LINE
    for line in ('api_key="abcd" ' * 100_000, "eyJ" * 400_000, "a" * 50_000, spaced):
        pieces = list(secrets._pieces(line))
        assert len(pieces) <= secrets.MAX_PIECES
        assert all(len(piece) <= secrets.MAX_LINE for _offset, piece in pieces)
        assert all(line[offset : offset + len(piece)] == piece for offset, piece in pieces)
    assert list(secrets._pieces("a" * 50_000)) == []  # nothing a detector could fire on

"""The request path's compiled fast paths give exactly what the generic code they stand in for
gives: RowReader vs validate_row + coerce_row, parse_rows vs parse_json, the compiled encoder vs
an element-by-element encoding, the monitor's one-pass PSI vs datacheck.drift.psi, the
Mahalanobis score vs its einsum definition. Generated inputs, valid and hostile."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import pytest
from guard_support import TARGET, contract, credit_rows, training

from bastion.datacheck.contract import parse_contract, prepare, validate_row
from bastion.guard import http
from bastion.guard.features import NOT_FINITE, coerce_row, fit_encoder
from bastion.guard.rows import RowReader

np = pytest.importorskip("numpy")

# a contract with every kind of column and constraint the reader compiles (or leaves generic)
MIXED = parse_contract(
    json.dumps(
        {
            "contract": "bastion-data-contract",
            "version": 1,
            "additionalColumns": "refuse",
            "columns": {
                "age": {"type": "integer", "minimum": 18, "maximum": 99},
                "count": {"type": "integer", "nullable": True},
                "ratio": {"type": "number", "minimum": 0, "maximum": 1.5},
                "amount": {"type": "number", "nullable": True},
                "flag": {"type": "boolean"},
                "grade": {"type": "string", "enum": ["A", "B", "C"]},
                "grade_or_none": {"type": "string", "enum": ["x", "y"], "nullable": True},
                "code": {"type": "string", "pattern": "^[A-Z]{2}[0-9]+$", "maxLength": 8},
                "name": {"type": "string", "minLength": 2},
                "since": {"type": "datetime", "minimum": "2000-01-01T00:00:00Z"},
            },
        }
    )
)
VALID_MIXED = {
    "age": 40,
    "count": 3,
    "ratio": 0.5,
    "amount": 12.25,
    "flag": True,
    "grade": "B",
    "grade_or_none": "x",
    "code": "AB123",
    "name": "Ann",
    "since": "2010-05-01T00:00:00Z",
}
HOSTILE = (
    None,
    True,
    False,
    0,
    1,
    -1,
    17,
    18,
    99,
    100,
    1.0,
    1.5,
    18.0,
    99.5,
    -0.0,
    2**53 + 1,
    2**63,
    10**30,
    math.nan,
    math.inf,
    -math.inf,
    "",
    "A",
    "B",
    "D",
    "x",
    "40",
    " 40 ",
    "1e3",
    "0.5",
    "true",
    "AB123",
    "ab123",
    "AB1234567",
    "2010-05-01T00:00:00Z",
    "1999-12-31T23:59:59Z",
    "no checking account",
    "... < 0 DM",
    "4111 1111 1111 1111",
)


def _agrees(columns: Any, reader: RowReader, row: dict[str, Any]) -> None:
    known = {c.name for c in columns}
    expected_ok = not validate_row(columns, row) and all(k in known for k in row)
    got = reader.read(row)
    assert (got is not None) == expected_ok, row
    if got is not None:
        want = coerce_row(columns, row)
        assert got == want and [type(v) for v in got.values()] == [
            type(v) for v in want.values()
        ], row


@pytest.mark.parametrize("which", ["credit", "mixed"])
def test_row_reader_accepts_exactly_what_validate_row_accepts(which: str) -> None:
    if which == "credit":
        columns = tuple(c for c in prepare(contract()) if c.name != TARGET)
        base_rows = credit_rows()[:50]
    else:
        columns = prepare(MIXED)
        base_rows = [VALID_MIXED]
    reader = RowReader(columns)
    rng = random.Random(7)
    checked = accepted = 0
    for base in base_rows:
        _agrees(columns, reader, dict(base))
        for column in list(base):
            for value in HOSTILE:
                row = dict(base)
                row[column] = value
                _agrees(columns, reader, row)
                checked += 1
                accepted += reader.read(row) is not None
        missing = dict(base)
        missing.pop(rng.choice(list(base)))
        _agrees(columns, reader, missing)
        extra = dict(base)
        extra["not_a_column"] = 1
        _agrees(columns, reader, extra)
        swapped = dict(base)  # same number of keys, one unknown in place of a known one
        swapped.pop(rng.choice(list(base)))
        swapped["not_a_column"] = 1
        _agrees(columns, reader, swapped)
    # the generated set holds both outcomes in quantity
    assert 0 < accepted < checked


BODIES = (
    b'{"rows": [{"a": 1, "b": "x", "c": null, "d": 1.5, "e": true}]}',
    b'{"rows": [{"a": 1, "a": 2}]}',
    b'{"rows": []}',
    b'{"rows": [{}]}',
    b'{"rows": [{"a": [1]}]}',
    b'{"rows": [{"a": {"b": 1}}]}',
    b'{"rows": [1, 2]}',
    b'{"rows": 5}',
    b'{"rows": [{"a": 1}], "extra": 1}',
    b'{"other": []}',
    b"[]",
    b'"rows"',
    b'{"rows": [{"a": NaN}]}',
    b'{"rows": [{"a": 1e400}]}',
    b'{"rows": [{"a": 123456789012345678901234567890}]}',
    b'{"rows": [{"a": "' + b"x" * 300 + b'"}]}',
    b'{"rows": [{"' + b"k" * 300 + b'": 1}]}',
    b'{"rows": [' + b",".join([b'{"a": 1, "b": 2}'] * 40) + b"]}",
    b'{"rows": [{"a": "\\u00e9\\ud83d\\ude00"}]}',
    b'{"rows": [{"a": 1}',
    b"",
)


@pytest.mark.parametrize("body", BODIES)
def test_parse_rows_accepts_only_what_parse_json_gives_the_same(body: bytes) -> None:
    limits = (64, 100, 200)
    fast = http.parse_rows(body, *limits)
    try:
        generic = http.parse_json(body, *limits)
    except http.BodyError:
        assert fast is None
        return
    if fast is not None:
        assert fast == generic
        rows = generic["rows"]
        assert set(generic) == {"rows"} and isinstance(rows, list)
        assert all(
            isinstance(r, dict) and not any(isinstance(v, (dict, list)) for v in r.values())
            for r in rows
        )


def test_parse_rows_takes_a_well_formed_body() -> None:
    body = json.dumps({"rows": credit_rows()[:5]}).encode()
    assert http.parse_rows(body, 64, 100_000, 10_000) == {"rows": credit_rows()[:5]}
    assert http.parse_rows(body, 2, 100_000, 10_000) is None  # caps below its depth: generic


def _reference_encoding(encoder: Any, rows: list[dict[str, Any]]) -> Any:
    out = np.zeros((len(rows), encoder.width))
    for i, row in enumerate(rows):
        for j, column in enumerate(encoder.numeric):
            value = row.get(column)
            if value is None or isinstance(value, str):
                continue
            try:
                standard = (float(value) - encoder.means[j]) / encoder.scales[j]
            except OverflowError:
                standard = math.inf if value > 0 else -math.inf
            if not math.isfinite(standard):  # NaN and infinities: far out, not the mean
                standard = -NOT_FINITE if standard < 0 else NOT_FINITE
            out[i, j] = standard
        offset = len(encoder.numeric)
        for column, categories in encoder.categorical:
            value = row.get(column)
            if isinstance(value, str) and value in categories:
                out[i, offset + categories.index(value)] = 1.0
            offset += len(categories)
    return out


def test_compiled_encoder_matches_the_element_by_element_encoding() -> None:
    encoder = fit_encoder(contract(), training(), TARGET)
    rows = [dict(r) for r in training()[:200]]
    rng = random.Random(3)
    for row in rows[::3]:  # hostile values where a refused row would carry them
        column = rng.choice(list(row))
        row[column] = rng.choice([None, "text", math.nan, math.inf, True, 10**6, "unknown"])
    compiled = encoder.compile()
    assert np.array_equal(compiled.encode(rows), _reference_encoding(encoder, rows))
    assert np.array_equal(encoder.encode(rows[:1]), _reference_encoding(encoder, rows[:1]))
    assert compiled.encode([]).shape == (0, encoder.width)
    # an integer past float's range (JSON allows it) is far out like inf, not a 500 or the mean
    column = encoder.numeric[0]
    for value, expected in ((10**400, NOT_FINITE), (-(10**400), -NOT_FINITE)):
        huge = compiled.encode([{**rows[0], column: value}])
        assert huge[0, 0] == expected
        assert np.array_equal(huge[0, 1:], compiled.encode(rows[:1])[0, 1:])


def test_monitor_psi_in_one_pass_equals_datacheck_psi() -> None:
    from bastion.datacheck.drift import psi
    from bastion.guard.monitor import _counts, _edges, _Window

    rng = np.random.default_rng(0)
    train = rng.normal(size=(1000, 6))
    train[:, 2] = rng.integers(0, 2, 1000)  # a one-hot-like feature: two bins
    train[:, 4] = 7.0  # a constant: one bin
    edges = [_edges(train[:, j]) for j in range(train.shape[1])]
    expected = [_counts(train[:, j], e).tolist() for j, e in enumerate(edges)]
    window = _Window(150, edges)
    proportions = window.proportions(expected)
    for step in range(400):
        window.add(rng.normal(loc=step / 200, size=(2, train.shape[1])))
        if step % 25 == 0:
            reference = [
                psi(np.asarray(e, dtype=float), window.counts[a:b].astype(float))
                for e, (a, b) in zip(expected, window.bounds, strict=True)
            ]
            assert np.allclose(window.psi(expected), reference, rtol=1e-12, atol=1e-12)
            assert np.allclose(window.psi(proportions), reference, rtol=1e-12, atol=1e-12)


def test_mahalanobis_score_is_its_definition() -> None:
    from bastion.guard.ood import _mahalanobis

    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 9))
    mean = rng.normal(size=9)
    a = rng.normal(size=(9, 9))
    precision = a @ a.T
    reference = np.sqrt(np.einsum("ij,jk,ik->i", x - mean, precision, x - mean))
    assert np.allclose(_mahalanobis(x, mean, precision), reference, rtol=1e-10)


def test_one_row_mahalanobis_equals_the_batch_form() -> None:
    """A request's worst OOD score: the one-row path (two vector products) gives the batch
    form's value, on the example model's profile and on rows far out."""
    from bastion.guard.ood import OodDetector, _mahalanobis, _mahalanobis_worst, fit_profile

    profile = fit_profile(contract(), training(), TARGET)
    detector = OodDetector.from_profile(profile)
    mean, precision = np.asarray(profile.mean), np.asarray(profile.precision)
    x = profile.encoder.compile().encode(credit_rows()[:300])
    rng = np.random.default_rng(0)
    x = np.vstack([x, x[:50] + rng.normal(0, 25, size=(50, x.shape[1]))])
    for row in x:
        one = row[None, :]
        expected = float(_mahalanobis(one, mean, precision).max())
        assert math.isclose(_mahalanobis_worst(one, mean, precision), expected, rel_tol=1e-9)
        assert math.isclose(detector.worst(one), expected, rel_tol=1e-9)
    assert detector.worst(x) == float(_mahalanobis(x, mean, precision).max())


def test_a_row_with_a_value_that_is_not_finite_is_far_out() -> None:
    """NaN, infinities and integers past float's range (what a contract in flag mode lets
    through) encode far beyond any training value, so the OOD detector scores the row out of
    distribution, instead of at the training mean, where it would pass."""
    from bastion.guard.ood import OodDetector, fit_profile

    profile = fit_profile(contract(), training(), TARGET)
    detector = OodDetector.from_profile(profile)
    threshold = detector.threshold(0.999, None)
    encoding = profile.encoder.compile()
    row = training()[0]
    assert detector.worst(encoding.encode([row])) <= threshold
    column = profile.encoder.numeric[0]
    for value in (math.nan, math.inf, -math.inf, 10**400, -(10**400)):
        far = {**row, column: value}
        assert detector.worst(encoding.encode([far])) > threshold, value
        assert detector.worst(encoding.encode([row, far])) > threshold, value


def test_an_outcome_follows_its_answer_only_when_it_adds_nothing_but_allow() -> None:
    from bastion.guard.pipeline import _nothing_to_add

    admitted = {"auth": "allow", "contract": "allow", "ood": "flag"}

    def outcome(**more: str) -> dict[str, str]:
        return {**admitted, "model": "allow", "output": "allow", **more}

    assert _nothing_to_add(admitted, 200, outcome())  # ood=flag is on the admission already
    assert not _nothing_to_add(admitted, 200, outcome(monitor="flag"))
    assert not _nothing_to_add(admitted, 200, outcome(output="redact"))
    assert not _nothing_to_add(admitted, 200, outcome(ood="block"))
    assert not _nothing_to_add(admitted, 302, outcome())


# -- the key check and the pipeline's audit records without regular expressions ----------------

_SECRET_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
_ODD_CHARACTERS = ("\n", " ", "\t", "G", "g", "A", "=", "+", "/", ".", "é", "٣", "\x00", "_", "-")


def _tokens(rng: random.Random) -> list[str]:
    """Keys of the right form, and every way of being one character or one length off."""
    tokens = []
    for _ in range(200):
        key_id = "".join(rng.choice("0123456789abcdef") for _ in range(12))
        secret = "".join(rng.choice(_SECRET_ALPHABET) for _ in range(43))
        token = f"bst_{key_id}_{secret}"
        tokens += [token, token + "\n", token + "\n\n", token[:-1], token + "A", token[:-1] + "\n"]
        position = rng.randrange(len(token))
        for odd in rng.sample(_ODD_CHARACTERS, 4):
            tokens.append(token[:position] + odd + token[position + 1 :])
            tokens.append(token[:position] + odd + token[position:])
        tokens.append(token.upper())
        tokens.append(token.replace("bst_", "BST_", 1))
    return [*tokens, "", "bst_", "\n", "bst_" + "0" * 12 + "_" + "A" * 43]


def test_the_key_check_reads_exactly_the_tokens_the_pattern_matches() -> None:
    from bastion.guard.auth import _ID, _KEY, _key_parts, is_key_id

    for token in _tokens(random.Random(7)):
        match = _KEY.match(token)
        assert _key_parts(token) == (None if match is None else match.groups()), repr(token)
        claimed = token[4:16]  # what the pipeline reads as the claimed id: at most 12 chars
        assert is_key_id(claimed) == bool(_ID.match(claimed)), repr(claimed)


def _request_fields() -> dict[str, Any]:
    digest = "sha256:" + "ab" * 32
    return {
        "key_id": "0123456789ab",
        "tenant": "acme",
        "route": "/v1/predict",
        "model_digest": digest,
        "input_digest": "hmac-sha256:" + "0f" * 32,
        "decisions": {"auth": "allow", "contract": "allow", "ood": "flag"},
    }


BAD_REQUEST_FIELDS = (
    {"key_id": "0123456789ab\n"},
    {"tenant": "acme\n"},
    {"route": "/v1/predict\n"},
    {"model_digest": "sha256:" + "ab" * 32 + "\n"},
    {"key_id": "a b"},
    {"key_id": 5},
    {"key_id": ""},
    {"tenant": "x;y"},
    {"tenant": b"acme"},
    {"route": "v1/predict"},
    {"route": "/v1/pre dict"},
    {"route": None},
    {"model_digest": "sha256:" + "a" * 63},
    {"model_digest": "md5:" + "a" * 64},
    {"input_digest": "sha256:" + "A" * 64},
    {"input_digest": "sha256;" + "a" * 64},
    {"input_digest": "sha256:" + "a" * 65},
    {"input_digest": None},
    {"decisions": {"auth": "allow", "bad name": "allow"}},
    {"decisions": {"auth": "al low"}},
    {"decisions": {"auth": 1}},
    {"decisions": {f"d{i}": "allow" for i in range(33)}},
    {"decisions": [("auth", "allow")]},
)
BAD_OUTCOME_FIELDS = (
    {"status": 99},
    {"status": 600},
    {"status": True},
    {"status": 200.0},
    {"latency_ms": -1.0},
    {"latency_ms": math.nan},
    {"latency_ms": math.inf},
    {"latency_ms": False},
    {"latency_ms": "1"},
    {"admission": 0},
    {"admission": True},
    {"admission": 1.0},
)


def test_pipeline_made_audit_records_are_the_records_and_refuse_what_they_refuse() -> None:
    """admission_made / outcome_made (no generic walk, identities remembered) encode to the
    bytes of the records they stand for, and refuse every value those refuse, whether or not
    the same identity was seen before."""
    from bastion.guard import audit
    from bastion.records import RecordError

    fields = _request_fields()
    made = audit.admission_made(**fields)
    assert isinstance(made, audit.AdmissionEvent)
    assert audit.encode_event(made) == audit.encode_event(
        audit.AdmissionEvent(at=made.at, **fields)
    )
    outcome_fields = {"status": 200, "latency_ms": 1.25, "admission": 3}
    made_outcome = audit.outcome_made(**fields, **outcome_fields)
    assert isinstance(made_outcome, audit.AuditEvent)
    assert audit.encode_event(made_outcome) == audit.encode_event(
        audit.AuditEvent(at=made_outcome.at, **fields, **outcome_fields)
    )
    assert audit.outcome_made(**{**fields, "key_id": None, "tenant": None}, **outcome_fields)
    for remembered in (False, True):  # first sight of the identity, then remembered
        if not remembered:
            audit._IDENTITIES_SEEN.clear()
        for bad in BAD_REQUEST_FIELDS:
            changed = {**fields, **bad}
            with pytest.raises((RecordError, TypeError)):
                audit.AdmissionEvent(at=made.at, **changed)
            with pytest.raises(RecordError):
                audit.admission_made(**changed)
            with pytest.raises(RecordError):
                audit.outcome_made(**changed, **outcome_fields)
        for bad in BAD_OUTCOME_FIELDS:
            changed_outcome = {**outcome_fields, **bad}
            with pytest.raises((RecordError, TypeError)):
                audit.AuditEvent(at=made.at, **fields, **changed_outcome)
            with pytest.raises(RecordError):
                audit.outcome_made(**fields, **changed_outcome)
        # a trailing newline, which Python's `$` would take
        with pytest.raises(RecordError):
            audit.admission_made(**{**fields, "input_digest": "sha256:" + "a" * 64 + "\n"})
        audit.admission_made(**fields)  # remembered from here on


def test_remembered_identities_are_bounded() -> None:
    from bastion.guard import audit

    fields = _request_fields()
    for i in range(audit.MAX_IDENTITIES_SEEN + 10):
        audit.admission_made(**{**fields, "key_id": f"{i:012x}"})
        assert len(audit._IDENTITIES_SEEN) <= audit.MAX_IDENTITIES_SEEN


def test_sha256_hex_is_hashlibs_sha256() -> None:
    import hashlib

    from bastion.guard.digests import SHORT, sha256_hex

    rng = random.Random(11)
    sizes = [0, 1, 55, 56, 63, 64, 65, 1000, SHORT - 1, SHORT, SHORT + 1, 3 * SHORT]
    for size in sizes + [rng.randrange(2 * SHORT) for _ in range(50)]:
        data = rng.randbytes(size)
        assert sha256_hex(data) == hashlib.sha256(data).hexdigest()

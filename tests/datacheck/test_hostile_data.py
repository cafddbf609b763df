"""Regressions from the attack review of the data stage (issue 9): each test is named for the
hostile input that got through — a crash, a leak of personal data or a missed change — and
builds that input in code."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from bastion.datacheck.options import DataOptions
from bastion.datacheck.read import open_dataset
from bastion.datacheck.streams import JsonDepth
from bastion.errors import DataInputError


def _depth(value: object) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    return 0


def _nested(rng: random.Random, depth: int) -> object:
    """A random JSON value nested exactly `depth` levels, with strings full of brackets,
    quotes and backslashes (what a depth count must not be fooled by)."""
    if depth == 0:
        return rng.choice(['x[{"\\', "]]}}", '\\"[', "\\\\", "", "plain", 3, None, True])
    inner = _nested(rng, depth - 1)
    filler = rng.choice(["[[[", "}}}", '\\"{', "\\"])
    if rng.random() < 0.5:
        return [filler, inner]
    return {filler: inner, "k": filler}


def _max_line_depth(stream: bytes, chunk_sizes: list[int]) -> int | None:
    """The depth JsonDepth refuses at (None when it passes), fed in the given chunk sizes."""
    for limit in range(0, 40):
        tracker = JsonDepth("t", limit)
        try:
            position = 0
            for size in chunk_sizes:
                tracker.feed(stream[position : position + size])
                position += size
            tracker.feed(stream[position:])
        except DataInputError:
            continue
        return limit
    return None


def test_json_depth_is_exact_whatever_the_strings_and_chunk_boundaries() -> None:
    rng = random.Random(7)
    for _ in range(60):
        values = [{"a": _nested(rng, rng.randint(0, 12))} for _ in range(rng.randint(1, 4))]
        stream = "".join(json.dumps(v) + "\n" for v in values).encode()
        expected = max(_depth(v) for v in values)
        cuts = [rng.randint(1, 9) for _ in range(len(stream) // 3)]
        assert _max_line_depth(stream, cuts) == expected, stream


def test_json_depth_names_the_line() -> None:
    tracker = JsonDepth("t.jsonl", 3)
    with pytest.raises(DataInputError) as caught:
        tracker.feed(b'{"a": 1}\n{"a": [["[[[[[[[" ]]}\n{"a": [[[[]]]]}\n')
    assert caught.value.kind == "limit"
    assert caught.value.line == 3 and caught.value.row == 2


@pytest.mark.parametrize("name", ["deep.jsonl", "deep.json", "deep.jsonl.gz"])
def test_deeply_nested_json_lines_stop_at_a_bound_not_a_segfault(tmp_path: Path, name: str) -> None:
    """pyarrow's JSON reader overflowed the C stack on 20,000 nested arrays (600 KB of JSON
    Lines): `bastion data check` and `bastion scan PROJECT` died with SIGSEGV, no report. Run
    in a child process so a regression fails the test instead of killing pytest."""
    import gzip

    line = b'{"a":' + b"[" * 20_000 + b"]" * 20_000 + b"}\n"
    if name == "deep.json":
        data = b"[" + b'{"a":' + b"[" * 900 + b"]" * 900 + b"}]"  # json.loads' own limit
    else:
        data = b'{"a": 1}\n' + line
    if name.endswith(".gz"):
        data = gzip.compress(data)
    path = tmp_path / name
    path.write_bytes(data)
    kind, row = _read_in_child(path)
    assert kind == "limit"
    assert row == ("0" if name == "deep.json" else "1")


def test_json_lines_nested_within_the_bound_still_read(tmp_path: Path) -> None:
    path = tmp_path / "ok.jsonl"
    rows = [{"a": i, "b": {"c": [[i, i + 1]], "d": "]]}}[["}} for i in range(50)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    dataset = open_dataset(path, DataOptions())
    assert sum(b.num_rows for _s, b in dataset.batches()) == 50


def _people(path: Path, rows: int = 240, repeat_every: int = 0, renamed: int | None = None) -> None:
    """A table keyed by e-mail address; `repeat_every` plants repeated ids, `renamed` changes
    one address (a row deleted and another inserted, matched by id)."""
    rng = random.Random(3)
    lines = ["email,amount,age,label"]
    for i in range(rows):
        person = i % repeat_every if repeat_every else i
        email = f"victim{person}{'x' if i == renamed else ''}@corp-secret.example"
        lines.append(f"{email},{rng.randint(1, 1000)},{rng.randint(18, 90)},{i % 2}")
    path.write_text("\n".join(lines) + "\n")


def _planted(text: str) -> list[str]:
    import re

    return re.findall(r"victim\d+x?@corp-secret\.example", text)


def test_id_column_of_email_addresses_never_reaches_a_report_or_the_store(
    tmp_path: Path,
) -> None:
    """`--id email` copied the raw addresses into row_ids of DAT006/DAT010 and every label
    finding (JSON, text, HTML and the history store), and into `data diff`'s ids and summary."""
    from bastion.cli.main import main

    old, new = tmp_path / "old.csv", tmp_path / "new.csv"
    _people(old, repeat_every=230)
    _people(new, repeat_every=230, renamed=5)
    manifest, store = tmp_path / "m.json", tmp_path / "h.sqlite3"
    assert (
        main(
            [
                "data",
                "manifest",
                str(old),
                "--id",
                "email",
                "-o",
                str(manifest),
                "-q",
                "--store",
                str(store),
            ]
        )
        == 0
    )
    outputs = []
    for fmt in ("json", "text", "html", "sarif", "junit"):
        out = tmp_path / f"check.{fmt}"
        code = main(
            [
                "data",
                "check",
                str(new),
                "--id",
                "email",
                "--target",
                "label",
                "--baseline-manifest",
                str(manifest),
                "-f",
                fmt,
                "-o",
                str(out),
                "-q",
                "--store",
                str(store),
            ]
        )
        assert code == 1
        outputs.append(out)
    for fmt in ("json", "markdown", "text"):
        out = tmp_path / f"diff.{fmt}"
        code = main(
            [
                "data",
                "diff",
                str(old),
                str(new),
                "--id",
                "email",
                "-f",
                fmt,
                "-o",
                str(out),
                "-q",
                "--store",
                str(store),
            ]
        )
        assert code == 1
        outputs.append(out)
    for out in outputs:
        assert _planted(out.read_text()) == [], out.name
    assert _planted(store.read_bytes().decode("latin-1")) == []
    # the rows are still listed exactly, with the ids as shapes
    report = json.loads((tmp_path / "check.json").read_text())
    found = {f["rule_id"]: f for t in report["results"] for f in t["findings"]}
    assert found["DAT010"]["rows"][:2] == [0, 1]
    assert found["DAT010"]["row_ids"][0].startswith("redacted 'aaaaaa9@aaaa")
    assert found["DAT006"]["rows"] == [5]


def test_id_column_without_personal_data_keeps_its_values(tmp_path: Path) -> None:
    from bastion.cli.main import main

    data = tmp_path / "train.csv"
    data.write_text("order_id,amount\n" + "".join(f"ORD-{i % 50:05d},{i}\n" for i in range(60)))
    out = tmp_path / "r.json"
    assert (
        main(
            [
                "data",
                "check",
                str(data),
                "--id",
                "order_id",
                "-f",
                "json",
                "-o",
                str(out),
                "--no-store",
                "-q",
            ]
        )
        == 1
    )
    report = json.loads(out.read_text())
    dat010 = next(f for t in report["results"] for f in t["findings"] if f["rule_id"] == "DAT010")
    assert dat010["row_ids"][:2] == ["ORD-00000", "ORD-00001"]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("drift_psi", float("nan")),
        ("drift_psi", -1.0),
        ("drift_psi", float("inf")),
        ("max_line_kb", 10**15),
    ],
)
def test_data_policy_values_that_disable_a_check_or_crash_are_refused(
    tmp_path: Path, key: str, value: float
) -> None:
    """`drift_psi = nan` switched the PSI test off (NaN compares false with every PSI) and
    `max_line_kb = 10**15` ended in 'internal error: OverflowError' in pyarrow."""
    from bastion.cli.main import main
    from bastion.records import RecordError

    with pytest.raises(RecordError):
        DataOptions.model_validate({key: value})
    policy = tmp_path / "policy.toml"
    text = "nan" if value != value else "inf" if value == float("inf") else repr(value)
    policy.write_text(f"[data]\n{key} = {text}\n")
    data = tmp_path / "x.csv"
    data.write_text("a,b\n1,2\n")
    assert main(["data", "check", str(data), "--policy", str(policy), "--no-store", "-q"]) == 2


def test_terminal_escapes_in_column_names_never_reach_the_diff_summary(tmp_path: Path) -> None:
    """A column named ESC[31m...ESC]0;title BEL reached `data diff -f markdown` (printed to the
    terminal, and stored in the report's metadata) raw: it could recolour or retitle the
    reviewer's terminal."""
    from bastion.cli.main import main

    name = "\x1b[31mRED\x1b[0m\x1b]0;pwned\x07"
    old, new = tmp_path / "old.csv", tmp_path / "new.csv"
    old.write_text(f'"{name}",b\n' + "".join(f"{i},x{i}\n" for i in range(10)))
    new.write_text(f'"{name}",b\n' + "".join(f"{i + 100},x{i}\n" for i in range(10)))
    out = tmp_path / "diff.md"
    assert (
        main(
            [
                "data",
                "diff",
                str(old),
                str(new),
                "-f",
                "markdown",
                "-o",
                str(out),
                "-q",
                "--no-store",
            ]
        )
        == 1
    )
    text = out.read_text()
    assert "\x1b" not in text and "\x07" not in text
    assert "\\x1b[31mRED" in text and text.count("\n") > 5


@pytest.mark.parametrize(
    ("data", "row"),
    [
        (b'null\n{"a": 1}\n', "0"),
        (b'\n\n null\n{"a": 1}\n', "2"),
        (b' null}\n{": ": {"d": 0}}\n{"a": null}\n', "0"),  # the CI fuzzer's input
        (b'5\n{"a": 1}\n', "0"),
    ],
)
def test_json_lines_starting_with_a_value_that_is_not_an_object_are_refused(
    tmp_path: Path, data: bytes, row: str
) -> None:
    """pyarrow's JSON reader segfaulted on a stream whose first value is `null` (found by the
    CI fuzzer). Run in a child process so a regression fails the test instead of pytest."""
    path = tmp_path / "first.jsonl"
    path.write_bytes(data)
    assert _read_in_child(path) == ["malformed", row]


def test_json_lines_whose_first_row_is_indented_still_read(tmp_path: Path) -> None:
    path = tmp_path / "ok.jsonl"
    path.write_bytes(b'\n  {"a": 1}\n{"a": 2}\n')
    dataset = open_dataset(path, DataOptions())
    assert sum(batch[-1].num_rows for batch in dataset.batches()) == 2


def _read_in_child(path: Path) -> list[str]:
    """Read every batch of `path` in a child process (a native crash fails the test, not
    pytest): the DataInputError's kind and row, or [] when it read cleanly."""
    code = (
        "import sys; from pathlib import Path\n"
        "from bastion.datacheck.read import open_dataset\n"
        "from bastion.datacheck.options import DataOptions\n"
        "from bastion.errors import DataInputError\n"
        "try:\n"
        "    d = open_dataset(Path(sys.argv[1]), DataOptions())\n"
        "    for _ in d.batches(): pass\n"
        "except DataInputError as exc:\n"
        "    print(exc.kind, exc.row)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.split()

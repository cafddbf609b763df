"""pyarrow's streaming readers get our Python streams on loan (streams.ArrowLoan): when a read
is over, no thread of pyarrow's may still hold a Python object of ours, or a process that
exits with the GIL held hangs for good (apache/arrow#50482; it hung a CI fuzz run)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from bastion.datacheck import streams
from bastion.datacheck.options import DataOptions
from bastion.datacheck.read import open_dataset
from bastion.errors import DataInputError

ROWS = 60_000  # several of pyarrow's blocks, so that it reads ahead


_DEEP = '{"id": 1, "city": ' + "[" * 100 + "]" * 100 + "}"


def _jsonl(path: Path, bad_at: int | None = None, bad: str = '{"id": 1, "city" "no"}') -> Path:
    lines = [json.dumps({"id": i, "city": "Köln", "amount": i / 3}) for i in range(ROWS)]
    if bad_at is not None:
        lines[bad_at] = bad
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _csv(path: Path, encoding: str = "utf-8", bad_at: int | None = None) -> Path:
    lines = ["id;city;amount"] + [f"{i};Köln;{i},5" for i in range(ROWS)]
    if bad_at is not None:
        lines[bad_at] = "1;2;3;4;5"
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return path


CASES = {
    "jsonl": lambda d: _jsonl(d / "t.jsonl"),
    "jsonl-bad-first-block": lambda d: _jsonl(d / "t.jsonl", bad_at=5),
    "jsonl-bad-late": lambda d: _jsonl(d / "t.jsonl", bad_at=ROWS - 10),
    # the stream itself fails (nesting bound), first block and late
    "jsonl-bad-deep-early": lambda d: _jsonl(d / "t.jsonl", bad_at=5, bad=_DEEP),
    "jsonl-bad-deep-late": lambda d: _jsonl(d / "t.jsonl", bad_at=ROWS - 10, bad=_DEEP),
    "csv": lambda d: _csv(d / "t.csv"),
    "csv-latin1": lambda d: _csv(d / "t.csv", "latin-1"),
    "csv-bad-late": lambda d: _csv(d / "t.csv", bad_at=ROWS - 10),
}


@pytest.fixture()
def loans(monkeypatch: pytest.MonkeyPatch) -> list[tuple[streams.ArrowLoan, float]]:
    """Every loan ended, with how long its end took."""
    ended: list[tuple[streams.ArrowLoan, float]] = []
    original = streams.ArrowLoan.end

    def end(self: streams.ArrowLoan) -> None:
        began = time.monotonic()
        original(self)
        ended.append((self, time.monotonic() - began))

    monkeypatch.setattr(streams.ArrowLoan, "end", end)
    return ended


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("batches", [1, None])
def test_pyarrow_holds_nothing_of_ours_once_a_read_is_over(
    tmp_path: Path, loans: list[tuple[streams.ArrowLoan, float]], case: str, batches: int | None
) -> None:
    path = CASES[case](tmp_path)
    seen = 0
    try:
        dataset = open_dataset(path, DataOptions())
        for _start, _batch in dataset.batches():
            seen += 1
            if batches is not None and seen >= batches:
                break  # the consumer stops early: the reader still has blocks in flight
    except DataInputError:
        assert "bad" in case
    else:
        assert "bad" not in case or batches is not None
    assert loans, "no read went through a loan"
    for loan, took in loans:
        assert not loan.lent(), f"{case}: pyarrow still holds a block or the stream"
        assert loan.stream.closed
        assert took < streams.RELEASE_WAIT_S / 2  # returned, not timed out


def test_transcoding_gives_utf8_and_never_more_than_asked() -> None:
    text = "naïve;Köln;€\n" * 5000
    raw = io.BufferedReader(io.BytesIO(text.encode("cp1252")))  # type: ignore[arg-type]
    loan = streams.ArrowLoan(raw, encoding="cp1252")
    chunks = []
    for size in [1, 2, 3, 7, 4096, 65536] * 40:
        chunk = bytes(loan._read(size))
        assert len(chunk) <= size
        if not chunk:
            break
        chunks.append(chunk)
    chunks.append(bytes(loan._read(-1)))
    assert b"".join(chunks).decode("utf-8") == text
    loan.end()
    assert not loan.lent()


def test_invalid_text_in_the_sniffed_encoding_still_names_its_row(tmp_path: Path) -> None:
    """Sniffed as cp1250, which leaves 0x81 undefined: the transcoding fails on that row's
    bytes and the error names row and column, as it did when pyarrow transcoded."""
    rows = [f"José {i},Málaga,café crème – “quoted” €{i}" for i in range(3000)]
    data = ("name,city,note\n" + "\n".join(rows) + "\n").encode("cp1252")
    bad = "José 2900,Málaga".encode("cp1252")
    data = data.replace(bad, bad.replace("á".encode("cp1252"), b"\x81"))
    path = tmp_path / "t.csv"
    path.write_bytes(data)
    with pytest.raises(DataInputError) as caught:
        dataset = open_dataset(path, DataOptions())
        for _ in dataset.batches():
            pass
    error = caught.value
    assert (error.kind, error.row, error.column) == ("encoding", 2900, "city")
    assert "cp1250" in str(error)


EXIT_WITH_THE_GIL_HELD = textwrap.dedent(
    """
    import ctypes, sys
    from pathlib import Path
    from bastion.datacheck.options import DataOptions
    from bastion.datacheck.read import open_dataset
    from bastion.errors import DataInputError
    try:
        for _ in open_dataset(Path(sys.argv[1]), DataOptions()).batches():
            pass
    except DataInputError:
        pass
    # what libFuzzer does when its runs are done: exit() from C, the GIL held
    ctypes.PyDLL(None).exit(0)
    """
)


@pytest.mark.parametrize("case", ["jsonl", "jsonl-bad-first-block", "csv", "csv-latin1"])
def test_exit_from_c_right_after_a_read_does_not_hang(tmp_path: Path, case: str) -> None:
    """Before the loan, this hung one time in two (the IO pool's thread waiting for the GIL,
    exit() waiting for the pool); three runs per case."""
    path = CASES[case](tmp_path)
    for _ in range(3):
        done = subprocess.run(
            [sys.executable, "-c", EXIT_WITH_THE_GIL_HELD, str(path)],
            capture_output=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr.decode()[-2000:]


class _Reads(io.RawIOBase):
    """A stream of `size` bytes that calls `after_first` once its first piece is read."""

    def __init__(self, size: int, after_first: Any) -> None:
        self.left = size
        self.pieces = 0
        self.after_first = after_first

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        count = min(len(buffer), self.left)
        buffer[:count] = b"x" * count
        self.left -= count
        self.pieces += 1
        if self.pieces == 1:
            self.after_first()
        return count


@pytest.mark.parametrize("encoding", [None, "cp1252"])
def test_a_block_being_read_ahead_stops_within_a_piece_once_the_loan_ends(
    encoding: str | None,
) -> None:
    """pyarrow reads a whole block (16 MiB by default; about a second through bz2) ahead of
    what the consumer asked for: once `end` has begun, the rest of that block is not read, so
    the wait for pyarrow to let go stays short (it ran out at 2 s, and exit then hung)."""
    holder: list[streams.ArrowLoan] = []
    raw = _Reads(64 * streams.READ_CHUNK, lambda: setattr(holder[0], "_ending", True))
    loan = streams.ArrowLoan(io.BufferedReader(raw, buffer_size=4096), encoding=encoding)
    holder.append(loan)
    got = bytes(loan._read(32 * streams.READ_CHUNK))
    assert len(got) <= streams.READ_CHUNK
    assert raw.pieces <= streams.READ_CHUNK // 4096 + 1  # one piece's worth of reads
    assert bytes(loan._read(streams.READ_CHUNK)) == b""  # end of file from here on


def test_a_first_row_over_the_line_bound_is_line_too_long_in_any_encoding(
    tmp_path: Path,
) -> None:
    """Transcoded, '€' is three bytes for one in cp1252: pyarrow's block fills before the
    stream's line bound (counted on the file's bytes) trips; still the same error kind."""
    path = tmp_path / "t.csv"
    path.write_bytes(b"a;b\n1;" + "€".encode("cp1252") * 200_000 + b"\n2;x\n")
    with pytest.raises(DataInputError) as caught:
        open_dataset(path, DataOptions(max_line_kb=256)).table()
    assert caught.value.kind == "line-too-long"


class _Failing(io.RawIOBase):
    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        raise DataInputError("t.csv: line 7 is longer than 8 bytes", kind="line-too-long", line=7)


def test_pyarrow_is_never_handed_an_exception() -> None:
    """What the stream raises under pyarrow is kept by the loan and raised in the caller's
    thread; pyarrow is told the file ended (it kept the exception, frames and all, in its
    threads, to release there)."""
    loan = streams.ArrowLoan(io.BufferedReader(_Failing()))
    assert bytes(loan._read(1024)) == b""
    assert isinstance(loan.failure, DataInputError)
    assert bytes(loan._read(1024)) == b""  # stays ended
    with pytest.raises(DataInputError, match="line 7"):
        loan.raise_failure()
    loan.raise_failure()  # raised once
    loan.end()


@pytest.mark.parametrize("case", ["jsonl", "csv"])
def test_a_bound_tripped_during_read_ahead_keeps_its_kind(tmp_path: Path, case: str) -> None:
    """The long line is blocks into the file, where pyarrow's read-ahead meets it: the caller
    gets the stream's error (not pyarrow's reading of an early end), and nothing else keeps
    it once the caller lets go."""
    import gc
    import weakref

    path = CASES[case](tmp_path)
    lines = path.read_bytes().split(b"\n")
    lines[40_000] = lines[40_000] + b" " * 300_000  # over the line bound
    path.write_bytes(b"\n".join(lines))
    try:
        dataset = open_dataset(path, DataOptions(max_line_kb=128))
        for _ in dataset.batches():
            pass
    except DataInputError as error:
        assert error.kind == "line-too-long"
        held = weakref.ref(error)
    else:
        pytest.fail("the long line was read")
    gc.collect()
    assert held() is None

"""bench/guard_latency.py's `raw-durable` setup: the bare model app that also commits each
prediction's event to a durable audit log, the floor docs/benchmarks.md compares the guard
with. Its figure means something only if it does what it says: one fsynced, chained record per
prediction (committed in the loop's thread while the model computes), the same answers as the
bare app, and nothing recorded for the other paths."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from guard_support import credit_rows, predict_scope

from bastion.guard.audit_verify import verify_log

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from guard_latency import DirectJournal, raw_app


async def _call(app: Any, scope: dict[str, Any], body: bytes) -> tuple[int, bytes]:
    sent: list[dict[str, Any]] = []
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


async def _serve(app: Any, bodies: list[bytes], path: str = "/v1/predict") -> list[bytes]:
    """Run the app's lifespan around `bodies` sent to `path`, the way uvicorn does."""
    startup = asyncio.Queue[dict[str, Any]]()
    said: list[str] = []

    async def receive() -> dict[str, Any]:
        return await startup.get()

    async def send(message: dict[str, Any]) -> None:
        said.append(message["type"])

    await startup.put({"type": "lifespan.startup"})
    lifespan = asyncio.ensure_future(app({"type": "lifespan"}, receive, send))
    while "lifespan.startup.complete" not in said:
        await asyncio.sleep(0.01)
    answers = []
    for body in bodies:
        scope = {**predict_scope(body, "unused"), "path": path}
        status, answer = await _call(app, scope, body)
        assert status == 200
        answers.append(answer)
    await startup.put({"type": "lifespan.shutdown"})
    await lifespan
    assert said[-1] == "lifespan.shutdown.complete"
    return answers


def _run(app: Any, bodies: list[bytes], path: str = "/v1/predict") -> list[bytes]:
    # a thread of its own: the app's startup gives its event loop's thread a short CPU slice
    out: list[list[bytes]] = []
    thread = threading.Thread(target=lambda: out.append(asyncio.run(_serve(app, bodies, path))))
    thread.start()
    thread.join(120)
    assert out, "the app did not answer"
    return out[0]


def test_raw_durable_records_one_chained_event_per_prediction_and_answers_as_bare(
    tmp_path: Path,
) -> None:
    bodies = [json.dumps({"rows": [row]}).encode() for row in credit_rows()[:5]]
    log = tmp_path / "audit" / "audit.sqlite3"
    log.parent.mkdir()
    durable = _run(raw_app(durable=log), bodies)
    assert durable == _run(raw_app(), bodies)  # the same answers as the bare app
    check = verify_log(log)
    assert check.ok, check.problems
    assert check.records == 1 + len(bodies)  # the startup's timing commit, then one each


def test_raw_durable_records_nothing_off_the_prediction_path(tmp_path: Path) -> None:
    log = tmp_path / "audit" / "audit.sqlite3"
    log.parent.mkdir()
    assert _run(raw_app(durable=log), [b""] * 3, path="/healthz") == [b"ok"] * 3
    assert verify_log(log).records == 1


def test_raw_direct_writes_each_prediction_s_event_in_its_own_synced_blocks(tmp_path: Path) -> None:
    import msgspec

    from bastion.guard.audit import AdmissionEvent

    bodies = [json.dumps({"rows": [row]}).encode() for row in credit_rows()[:4]]
    journal = tmp_path / "journal"
    try:
        answers = _run(raw_app(durable=journal, direct=True), bodies)
    except OSError as exc:  # a file system without O_DIRECT (tmpfs): not this machine's disk
        pytest.skip(f"no O_DIRECT here: {exc}")
    assert answers == _run(raw_app(), bodies)
    data = journal.read_bytes()
    assert len(data) == DirectJournal.SIZE  # preallocated with written zeros
    blocks = [data[i : i + DirectJournal.BLOCK] for i in range(0, DirectJournal.BLOCK * 5, 4096)]
    events = [msgspec.json.decode(block.rstrip(b"\0")) for block in blocks[:4]]
    assert [AdmissionEvent.model_validate(event).route for event in events] == ["/v1/predict"] * 4
    assert blocks[4] == bytes(DirectJournal.BLOCK)  # nothing past the four


def test_direct_journal_refuses_a_record_over_its_buffer_and_rotates(tmp_path: Path) -> None:
    try:
        journal = DirectJournal(tmp_path / "journal")
    except OSError as exc:
        pytest.skip(f"no O_DIRECT here: {exc}")
    try:
        with pytest.raises(ValueError, match="over the journal's block"):
            journal.write(b"x" * (len(journal.buffer) + 1))
        journal.offset = DirectJournal.SIZE - DirectJournal.BLOCK
        journal.write(b"a" * (DirectJournal.BLOCK + 1))  # two blocks: back to the start
        assert journal.offset == 2 * DirectJournal.BLOCK
    finally:
        journal.close()
    data = (tmp_path / "journal").read_bytes()
    assert data[: DirectJournal.BLOCK + 1] == b"a" * (DirectJournal.BLOCK + 1)
    assert data[DirectJournal.BLOCK + 1 : 2 * DirectJournal.BLOCK] == bytes(DirectJournal.BLOCK - 1)

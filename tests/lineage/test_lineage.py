"""Lineage end to end: runs recorded through the CLI link their digests, explicit records link
models to data and code, the graph and its renderings, compliance evidence per framework."""

from __future__ import annotations

import json
import os
import pickle
import re
import time
from pathlib import Path

import pytest

from bastion.catalogue import all_rules
from bastion.cli.main import main
from bastion.errors import InputError, UsageError
from bastion.lineage import compliance
from bastion.lineage.digests import FILE, TREE, identify
from bastion.lineage.graph import lineage, resolve
from bastion.lineage.record import MANIFEST_KIND, record, seen_in
from bastion.lineage.render import graph_dot, graph_text
from bastion.store import Store


def _model(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.pkl"
    path.write_bytes(pickle.dumps({"weights": [1.0, 2.0]}))
    return path


def test_manifest_kind_matches_the_data_package() -> None:
    from bastion.datacheck.manifest import MANIFEST_KIND as DATA_KIND

    assert MANIFEST_KIND == DATA_KIND


def test_tree_digest_names_files_and_ignores_the_signature(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "a.bin").write_bytes(b"a")
    (folder / "b.bin").write_bytes(b"b")
    first = identify(folder)
    assert first.digest.startswith(TREE) and len(first.members) == 2
    (folder / "model.sig").write_bytes(b"signature")
    assert identify(folder).digest == first.digest
    (folder / "b.bin").rename(folder / "c.bin")  # same bytes, another name: another model
    assert identify(folder).digest != first.digest
    assert (
        identify(folder / "a.bin").digest == FILE + __import__("hashlib").sha256(b"a").hexdigest()
    )


def test_scan_runs_link_digests_and_lineage_joins_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "h.db"
    model = _model(tmp_path / "project")
    data = tmp_path / "train.csv"
    data.write_text("a,b\n1,2\n")
    assert main(["scan", str(model), "--store", str(store), "-q", "-o", os.devnull]) == 0
    assert (
        main(
            [
                "lineage",
                "record",
                "--model",
                str(model),
                "--dataset",
                str(data),
                "--code",
                "a" * 40,
                "--param",
                "C=1.0",
                "--mlflow-run",
                "run-1",
                "--store",
                str(store),
                "-q",
            ]
        )
        == 0
    )
    with Store(store) as history:
        digest = resolve(history, str(model))
        graph = lineage(history, digest)
        node = graph.node(digest)
        assert node is not None and [v.command for v in node.verdicts] == ["scan"]
        kinds = {graph.node(d).kind for d in graph.upstream}  # type: ignore[union-attr]
        assert kinds == {"dataset", "code", "reference"}
        assert "git:" + "a" * 40 in graph.upstream and "mlflow:run-1" in graph.upstream
        trained = [e for e in graph.edges if e.relation == "trained-on"]
        assert trained[0].attributes["params"] == {"C": "1.0"}
    assert main(["lineage", "show", str(model), "-f", "json", "--store", str(store)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["root"] == digest and shown["schema_version"] == "1"


def test_a_file_changed_during_the_run_is_not_linked(tmp_path: Path) -> None:
    from bastion.findings import Report, TargetResult, ToolInfo

    model = _model(tmp_path)
    report = Report(
        tool=ToolInfo(version="0"),
        targets=(str(model),),
        metadata={"started_at": "2020-01-01T00:00:00+00:00"},  # the file is newer than that
        results=(TargetResult(path=str(model), format="pickle"),),
    )
    seen, _, unlinked = seen_in(report)
    assert seen == [] and "changed while the run read it" in unlinked[0]
    now = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(time.time() + 5))
    fresh = report.model_copy(update={"metadata": {"started_at": now}})
    assert seen_in(fresh)[0][0].digest == identify(model).digest


def test_record_takes_a_data_manifest_and_refuses_bad_input(tmp_path: Path) -> None:
    model = _model(tmp_path)
    manifest = tmp_path / "data.manifest.json"
    sha = "ab" * 32
    manifest.write_text(
        json.dumps(
            {
                "kind": MANIFEST_KIND,
                "datasets": [
                    {
                        "name": "train.csv",
                        "rows": 3,
                        "fingerprint": "f",
                        "file": {"sha256": sha, "size": 1},
                    }
                ],
            }
        )
    )
    with Store(tmp_path / "h.db") as history:
        done = record(model, datasets=[manifest], store=history)
        upstream = {s.digest: s.kind for s in done.upstream}
        assert upstream[FILE + sha] == "dataset" and "manifest" in upstream.values()
        with pytest.raises(InputError):
            record(tmp_path / "missing.pkl", store=history)
        with pytest.raises(InputError):
            record(model, code=["abc123"], store=history)  # abbreviated commit ids are refused
        with pytest.raises(UsageError):
            record(model, params={"x": "y" * 5000}, store=history)
        with pytest.raises(InputError):
            record(model, mlflow_run="../../etc", store=history)


def test_hostile_names_are_escaped_in_text_and_dot(tmp_path: Path) -> None:
    folder = tmp_path / "p"
    model = _model(folder)
    hostile = folder / 'x"];evil[label="\x1b[31m.csv'
    hostile.write_text("a\n1\n")
    with Store(tmp_path / "h.db") as history:
        done = record(model, datasets=[hostile], store=history)
        graph = lineage(history, done.model)
    dot = graph_dot(graph)
    assert re.search(r'(?<!\\)"\];evil', dot) is None  # every quote inside a label escaped
    assert "\x1b" not in dot and '\\"];evil' in dot
    assert "\x1b" not in graph_text(graph)


def test_every_tag_a_rule_carries_is_a_control_of_its_framework() -> None:
    for key in compliance.FRAMEWORKS:
        framework = compliance.load_framework(key)
        ids = {c.id for c in framework.controls}
        assert len(ids) == len(framework.controls), key
        for rule in all_rules():
            for tag in getattr(rule.tags, framework.tag):
                assert tag in ids, (key, rule.id, tag)


def test_compliance_report_shows_evidence_and_gaps(tmp_path: Path) -> None:
    store = tmp_path / "h.db"
    _model(tmp_path / "m")
    evil = tmp_path / "m" / "<img src=x onerror=alert(1)>.pkl"
    evil.write_bytes(pickle.dumps([1]))
    assert main(["scan", str(tmp_path / "m"), "--store", str(store), "-q", "-o", os.devnull]) in (
        0,
        1,
    )
    with Store(store) as history:
        built = compliance.build(history, "owasp-ml")
    by_id = {c.control.id: c for c in built.controls}
    assert by_id["ML06"].status == compliance.COVERED and by_id["ML06"].runs[0].command == "scan"
    assert by_id["ML07"].status == compliance.GAP and not by_id["ML07"].rules
    assert by_id["ML04"].status == compliance.NO_EVIDENCE
    html = compliance.render_html(built)
    assert "<script>" not in html and 'http-equiv="Content-Security-Policy"' in html
    assert "<link" not in html and "src=" not in html
    out = tmp_path / "c.md"
    assert (
        main(
            [
                "report",
                "compliance",
                "--framework",
                "atlas",
                "-f",
                "md",
                "-o",
                str(out),
                "--store",
                str(store),
                "-q",
            ]
        )
        == 0
    )
    assert "AML.T0010.003" in out.read_text()


def test_gate_refuses_a_folder_whose_symlink_leaves_it(tmp_path: Path) -> None:
    # the folder digest holds a symlink's target *name*, never its content: a model.pkl link
    # to a pickle outside the folder passed the gate's scan requirement as "1 file scanned
    # clean" while the scan itself failed, and the target could change without changing the
    # digest. A link inside the folder points at a member that was scanned: it passes.
    store = str(tmp_path / "h.db")
    policy = tmp_path / "policy.toml"
    policy.write_text('[gate]\nrequire = ["scan"]\n', encoding="utf-8")
    outside = tmp_path / "elsewhere" / "evil.pkl"
    outside.parent.mkdir()
    outside.write_bytes(b"\x80\x02cos\nsystem\nX\x05\x00\x00\x00echo!\x85R.")
    for name, target in (("escapes", outside), ("inside", Path("clean.pkl"))):
        folder = tmp_path / name
        _model(folder).rename(folder / "clean.pkl")
        (folder / "model.pkl").symlink_to(target)
        common = ["--store", store, "--policy", str(policy), "-q", "-o", os.devnull]
        main(["scan", str(folder), *common])
        decision = tmp_path / f"{name}.json"
        code = main(["gate", str(folder), "--store", store, "--policy", str(policy), "-q",
                     "-f", "json", "-o", str(decision)])  # fmt: skip
        scan = next(
            r for r in json.loads(decision.read_text())["requirements"] if r["name"] == "scan"
        )  # fmt: skip
        if name == "escapes":
            assert code == 1 and scan["status"] == "unmet"
            assert "model.pkl: a symlink out of the model folder" in scan["detail"]
        else:
            assert code == 0 and scan["status"] == "met", scan

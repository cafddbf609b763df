"""Recording evidence: the digests a run saw (`record_run`, called by every command that records
a run) and the links only a pipeline knows (`record`, from `bastion lineage record` or the end
of a training script)."""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bastion.errors import InputError, UsageError
from bastion.formats import CODE_SUFFIXES, MODEL_FORMATS
from bastion.lineage.digests import (
    FILE,
    Identified,
    TreeEntry,
    file_digest,
    git_reference,
    identify,
    is_digest,
    mlflow_reference,
    sigstore_reference,
)
from bastion.records import Record, field
from bastion.store import Link, Seen, Store
from bastion.supplychain.bom import DATA_FORMATS as DATA_SUFFIXES
from bastion.supplychain.bom import MODEL_FORMATS as MODEL_SUFFIXES

if TYPE_CHECKING:
    from bastion.config import Settings
    from bastion.findings import Report, TargetResult
    from bastion.policy import Verdict

MAX_PARAMS = 200
MAX_PARAM_CHARS = 1000
MAX_SEEN_FILES = 20_000  # files of one run that are hashed for lineage


class Recorded(Record):
    """What `record_run` stored: the run id, the digests it linked, and the files it could not
    link (changed while the run read them, unreadable, over the bound)."""

    run_id: int
    seen: tuple[Seen, ...] = ()
    unlinked: tuple[str, ...] = ()


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def kind_of(path: str, fmt: str = "") -> str:
    """What a file is, from the format the scan identified and its name."""
    suffix = Path(path).suffix.lower()
    if fmt == "dependencies":
        return "file"
    if path.endswith(".manifest.json"):
        return "manifest"
    if fmt == "signature" or suffix == ".sig":
        return "signature"
    if fmt == "data" or (suffix in DATA_SUFFIXES and suffix != ".txt"):
        return "dataset"
    if fmt in MODEL_FORMATS or suffix in MODEL_SUFFIXES:
        return "model"
    if fmt == "python" or suffix in CODE_SUFFIXES:
        return "code"
    if fmt == "policy":
        return "policy"
    return "file"


def _started(report: Report) -> float | None:
    text = report.metadata.get("started_at")
    if not isinstance(text, str):
        return None
    try:
        return dt.datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def _changed_since(path: Path, started: float | None) -> bool:
    """Whether the file's inode changed after the run began. The report keeps whole seconds,
    so a change within the run's first second is not seen (a window the report format sets)."""
    if started is None:
        return False
    return os.stat(path).st_ctime >= started + 1.0


def _result_path(report: Report, result: TargetResult) -> Path:
    """Where a result's file is, as discover named it: under the one folder scanned, else as
    given (relative to the working directory)."""
    if len(report.targets) == 1:
        root = Path(report.targets[0])
        if root.is_dir():
            return root / result.path
    return Path(result.path)


def _identified(
    path: Path, display: str, kind: str, role: str, started: float | None
) -> tuple[list[Seen], list[Link], str | None]:
    """The Seen rows of one path (a folder also gives its files as 'part-of' links), or the
    reason it is not linked."""
    try:
        if path.is_file() and _changed_since(path, started):
            return [], [], f"{display}: changed while the run read it; not linked"
        found: Identified = identify(path)
    except (InputError, OSError) as exc:
        return [], [], f"{display}: {getattr(exc, 'message', exc)}"
    seen = [Seen(digest=found.digest, kind=kind, role=role, path=display)]
    links = [
        Link(recorded_at=now(), upstream=m.digest, downstream=found.digest, relation="part-of")
        for m in found.members
    ]
    return seen, links, None


def _policy_and_keys(settings: Settings | None, with_keys: bool) -> list[Seen]:
    if settings is None or settings.source is None:
        return []
    seen = []
    source = Path(settings.source)
    try:
        seen.append(
            Seen(digest=file_digest(source), kind="policy", role="policy", path=str(source))
        )
    except OSError:
        pass
    if with_keys:
        for key in settings.signing.public_keys:
            path = settings.resolve(key)
            try:
                seen.append(Seen(digest=file_digest(path), kind="key", role="key", path=key))
            except OSError:
                continue
        seen += [
            Seen(
                digest=sigstore_reference(i.identity, i.issuer),
                kind="key",
                role="key",
                path=i.identity,
            )
            for i in settings.signing.identities
        ]
    return seen


def _signed_model(signature: Path) -> Path:
    """The file or folder a signature found in a project covers (supplychain/signing.py)."""
    if signature.name == "model.sig":
        return signature.parent
    return signature.with_name(signature.name[: -len(".sig")])


def seen_in(
    report: Report, settings: Settings | None = None
) -> tuple[list[Seen], list[Link], list[str]]:
    """The digests a run saw, the links they imply, and what could not be linked."""
    started = _started(report)
    seen: list[Seen] = []
    links: list[Link] = []
    unlinked: list[str] = []

    def add(path: Path, display: str, kind: str, role: str) -> str | None:
        found, implied, problem = _identified(path, display, kind, role, started)
        seen.extend(found)
        links.extend(implied)
        if problem:
            unlinked.append(problem)
        return found[0].digest if found else None

    metadata = report.metadata
    inputs = metadata.get("inputs")
    if report.command == "verify" and report.targets:
        target = Path(report.targets[0])
        subject = add(
            target,
            report.targets[0],
            kind_of(report.targets[0]) if target.is_file() else "model",
            "subject",
        )
        signature = metadata.get("signature")
        verification = metadata.get("verification") or {}
        if isinstance(signature, str) and Path(signature).is_file():
            sig = add(Path(signature), signature, "signature", "signature")
            if subject and sig and verification.get("ok") is True:
                links.append(
                    Link(recorded_at=now(), upstream=subject, downstream=sig, relation="signed-by")
                )
        signer = metadata.get("signer") or {}
        for key in [signer.get("key"), *(signer.get("chain") or [])]:
            if isinstance(key, str):
                add(Path(key), key, "key", "key")
        if isinstance(signer.get("identity"), str) and isinstance(signer.get("issuer"), str):
            seen.append(
                Seen(
                    digest=sigstore_reference(signer["identity"], signer["issuer"]),
                    kind="key",
                    role="key",
                    path=signer["identity"],
                )
            )
        seen.extend(_policy_and_keys(settings, with_keys=False))
    elif isinstance(inputs, Mapping):  # probe: the model judged and the data it read
        for name, value in sorted(inputs.items()):
            if isinstance(value, str) and value:
                if name == "model":
                    add(
                        Path(value),
                        report.targets[0] if report.targets else value,
                        "model",
                        "subject",
                    )
                else:
                    add(Path(value), value, "dataset", "input")
        seen.extend(_policy_and_keys(settings, with_keys=False))
    else:
        files = [r for r in report.results if r.format != "symlink" and not r.out_of_scope]
        for result in files[:MAX_SEEN_FILES]:
            path = _result_path(report, result)
            if not path.is_file():
                continue
            kind = kind_of(result.path, result.format)
            digest = add(path, result.path, kind, "subject")
            if (
                kind == "signature"
                and digest
                and not result.findings
                and not result.skips
                and not result.errors
            ):
                model = _signed_model(path)
                if model.exists():
                    shown = (
                        result.path[: -len(path.name)] + model.name
                        if model.is_file()
                        else str(Path(result.path).parent)
                    )
                    subject = add(model, shown, "model", "signed")
                    if subject:
                        links.append(
                            Link(
                                recorded_at=now(),
                                upstream=subject,
                                downstream=digest,
                                relation="signed-by",
                            )
                        )
        if len(files) > MAX_SEEN_FILES:
            unlinked.append(
                f"{len(files) - MAX_SEEN_FILES} file(s) over the {MAX_SEEN_FILES} linked per run"
            )
        baseline = metadata.get("baseline_manifest")
        if isinstance(baseline, str):
            add(Path(baseline), baseline, "manifest", "input")
        seen.extend(_policy_and_keys(settings, with_keys=report.command == "scan"))
    return seen, links, unlinked


def record_run(
    store: Store, report: Report, verdict: Verdict, settings: Settings | None = None
) -> Recorded:
    """Record a run with the digests it saw (the one place every command records through)."""
    seen, links, unlinked = seen_in(report, settings)
    unique = list(dict.fromkeys(seen))
    run_id = store.record(report, verdict, unique)
    if links:
        store.add_links(link.model_copy(update={"run_id": run_id}) for link in links)
    return Recorded(run_id=run_id, seen=tuple(unique), unlinked=tuple(unlinked))


class LineageRecord(Record):
    """What an explicit lineage record linked: the model's digest, the digests upstream of it,
    and the ids of the links."""

    model: str
    upstream: tuple[Seen, ...] = ()
    links: tuple[int, ...] = ()
    attributes: dict[str, Any] = field(default_factory=dict)


def _dataset_refs(value: str | Path) -> tuple[list[Seen], list[Link]]:
    """A dataset given to `record`: a digest, a data file or folder, or a data manifest (its
    datasets by the file digests it recorded; the manifest itself linked as describing them)."""
    text = str(value)
    if is_digest(text):
        return [Seen(digest=text, kind="dataset", role="input", path=text)], []
    path = Path(value)
    manifest = _read_manifest(path)
    if manifest is None:
        found = _identify_input(path)
        return [Seen(digest=found.digest, kind="dataset", role="input", path=text)], []
    own = file_digest(path)
    seen = [Seen(digest=own, kind="manifest", role="input", path=text)]
    links = []
    for entry in manifest.get("datasets", []):
        sha = (entry.get("file") or {}).get("sha256") if isinstance(entry, dict) else None
        if not isinstance(sha, str) or len(sha) != 64:
            raise InputError(
                f"{path}: dataset {str(entry.get('name'))[:80]!r} was recorded without a file "
                "digest",
                hint="record the manifest from the data files (bastion data manifest)",
            )
        digest = FILE + sha.lower()
        seen.append(
            Seen(digest=digest, kind="dataset", role="input", path=str(entry.get("name", text)))
        )
        links.append(
            Link(
                recorded_at=now(),
                upstream=own,
                downstream=digest,
                relation="describes",
                attributes={
                    "rows": entry.get("rows"),
                    "fingerprint": entry.get("fingerprint"),
                },
            )
        )
    return seen, links


MAX_MANIFEST_BYTES = 512 * 1024 * 1024
MANIFEST_KIND = "bastion-data-manifest"  # datacheck/manifest.py (a test keeps them equal)


def _read_manifest(path: Path) -> dict[str, Any] | None:
    """The manifest's JSON when `path` is a bastion data manifest; None for anything else."""
    if not path.is_file() or path.suffix.lower() != ".json":
        return None
    try:
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            return None
        with open(path, "rb") as handle:
            head = handle.read(4096)
        if MANIFEST_KIND.encode() not in head:
            return None
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    if isinstance(data, dict) and data.get("kind") == MANIFEST_KIND:
        return data
    return None


def _identify_input(path: Path) -> Identified:
    if not os.path.lexists(path):
        raise InputError(f"{path}: no such file or folder")
    return identify(path)


def _code_ref(value: str | Path) -> Seen:
    text = str(value)
    reference = git_reference(text)
    if reference is not None:
        return Seen(digest=reference, kind="code", role="input", path=text)
    if is_digest(text):
        return Seen(digest=text, kind="code", role="input", path=text)
    path = Path(value)
    if not os.path.lexists(path):
        raise InputError(
            f"{text[:200]}: not a full commit id, a digest, or an existing file or folder"
        )
    return Seen(digest=identify(path).digest, kind="code", role="input", path=text)


def _params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    if not params:
        return {}
    if len(params) > MAX_PARAMS:
        raise UsageError(f"at most {MAX_PARAMS} parameters")
    out: dict[str, Any] = {}
    for key, value in params.items():
        if not isinstance(key, str) or not key or len(key) > 200:
            raise UsageError(f"parameter name {str(key)[:80]!r} must be 1-200 characters")
        if not isinstance(value, (str, int, float, bool)) and value is not None:
            value = str(value)
        if isinstance(value, str) and len(value) > MAX_PARAM_CHARS:
            raise UsageError(f"parameter {key} is over {MAX_PARAM_CHARS} characters")
        out[key] = value
    return out


def record(
    model: str | Path,
    datasets: Sequence[str | Path] = (),
    code: Sequence[str | Path] = (),
    params: Mapping[str, Any] | None = None,
    mlflow_run: str | None = None,
    deployment: str | None = None,
    store: Store | Path | None = None,
) -> LineageRecord:
    """Link a model to what made it: the datasets it was trained on (files, folders, data
    manifests or digests), the code (a commit id, a file or folder, or a digest), training
    parameters and an MLflow run id (an opaque reference), and optionally a deployment that
    serves it. Call it at the end of a training script::

        import bastion.lineage
        bastion.lineage.record("model.joblib", datasets=["data/train.csv"], code=".",
                               params={"C": 1.0}, mlflow_run=run.info.run_id)

    Digests are taken now: record right after training, before anything can change."""
    text = str(model)
    members: tuple[TreeEntry, ...] = ()
    if is_digest(text):
        model_digest = text
    else:
        found = _identify_input(Path(model))
        model_digest, members = found.digest, found.members
    attributes: dict[str, Any] = {}
    parameters = _params(params)
    if parameters:
        attributes["params"] = parameters
    upstream: list[Seen] = []
    links: list[Link] = []
    for dataset in datasets:
        seen, implied = _dataset_refs(dataset)
        upstream.extend(seen)
        links.extend(implied)
    upstream.extend(_code_ref(c) for c in code)
    if mlflow_run:
        reference = mlflow_reference(mlflow_run)
        attributes["mlflow_run"] = reference.split(":", 1)[1]
        upstream.append(Seen(digest=reference, kind="reference", role="input", path=reference))
    when = now()
    relation = {"dataset": "trained-on", "code": "built-from", "reference": "tracked-in"}
    for item in upstream:
        if item.kind in relation:
            links.append(
                Link(
                    recorded_at=when,
                    upstream=item.digest,
                    downstream=model_digest,
                    relation=relation[item.kind],
                    attributes=attributes,
                )
            )
    links += [
        Link(recorded_at=when, upstream=m.digest, downstream=model_digest, relation="part-of")
        for m in members
    ]
    nodes = [
        Seen(digest=model_digest, kind="model", role="subject", path=text),
        *upstream,
        *(Seen(digest=m.digest, kind=kind_of(m.path), role="input", path=m.path) for m in members),
    ]
    if deployment:
        name = deployment.strip()
        if not name or len(name) > 200 or any(ord(c) < 32 for c in name):
            raise UsageError("a deployment name is 1-200 printable characters")
        target = f"deployment:{name}"
        nodes.append(Seen(digest=target, kind="deployment", role="subject", path=name))
        links.append(
            Link(recorded_at=when, upstream=model_digest, downstream=target, relation="served-by")
        )
    owned = not isinstance(store, Store)
    history = Store(store) if owned else store  # type: ignore[arg-type]
    assert isinstance(history, Store)
    try:
        history.add_artifacts(nodes, when)
        ids = history.add_links(links)
    finally:
        if owned:
            history.close()
    return LineageRecord(
        model=model_digest, upstream=tuple(upstream), links=tuple(ids), attributes=attributes
    )

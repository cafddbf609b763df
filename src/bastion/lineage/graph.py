"""The lineage graph as the store holds it: nodes are digests, edges are links, and each node
carries the latest verdict of every command that judged it. Read-only: `bastion lineage show`
and the dashboard draw from here."""

from __future__ import annotations

import os
from collections import deque
from pathlib import Path

from bastion.errors import InputError
from bastion.lineage.digests import identify, is_digest
from bastion.records import Record, field
from bastion.store import Artifact, Link, RunEvidence, Store

MAX_DEPTH = 8
MAX_NODES = 500


class NodeVerdict(Record):
    """The latest run of one command that saw a node, and what it decided."""

    command: str
    run_id: int
    status: str
    started_at: str
    role: str


class Node(Record):
    digest: str
    kind: str
    name: str
    first_seen: str = ""
    last_seen: str = ""
    verdicts: tuple[NodeVerdict, ...] = ()


class Graph(Record):
    """The graph around `root`: nodes upstream (what flowed into it) and downstream (what it
    flowed into), the edges between them, and whether a bound cut the walk short."""

    root: str
    nodes: tuple[Node, ...] = ()
    edges: tuple[Link, ...] = ()
    truncated: bool = False
    upstream: tuple[str, ...] = field(default_factory=tuple)
    downstream: tuple[str, ...] = field(default_factory=tuple)

    def node(self, digest: str) -> Node | None:
        return next((n for n in self.nodes if n.digest == digest), None)


def resolve(store: Store, reference: str) -> str:
    """A digest from what a user names: a digest itself, an existing file or folder (hashed
    now), or the name an artifact was last seen under."""
    if is_digest(reference):
        return reference
    path = Path(reference)
    if os.path.lexists(path):
        return identify(path).digest
    named = store.artifacts_named(reference, limit=1)
    if named:
        return named[0].digest
    raise InputError(
        f"{reference[:200]!r} is neither a digest, an existing file or folder, nor a name the "
        "store has seen",
        hint="give the model file or folder, or a digest like sha256:<hex>",
    )


def latest_verdicts(store: Store, digest: str) -> tuple[NodeVerdict, ...]:
    """The newest run of each command that saw `digest` (in any role)."""
    newest: dict[str, RunEvidence] = {}
    for run in store.evidence(digest, limit=200):
        newest.setdefault(run.command, run)
    return tuple(
        NodeVerdict(
            command=r.command,
            run_id=r.run_id,
            status=r.status,
            started_at=r.started_at,
            role=r.role,
        )
        for r in sorted(newest.values(), key=lambda r: r.command)
    )


def _node(store: Store, digest: str, known: Artifact | None) -> Node:
    return Node(
        digest=digest,
        kind=known.kind if known else _kind_of_reference(digest),
        name=known.name if known else digest,
        first_seen=known.first_seen if known else "",
        last_seen=known.last_seen if known else "",
        verdicts=latest_verdicts(store, digest),
    )


def _kind_of_reference(digest: str) -> str:
    prefix = digest.split(":", 1)[0]
    return {"git": "code", "mlflow": "reference", "deployment": "deployment"}.get(prefix, "file")


def lineage(
    store: Store, digest: str, max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES
) -> Graph:
    """The graph upstream and downstream of `digest`, breadth first, within the bounds."""
    edges: dict[int, Link] = {}
    order: list[str] = [digest]
    sides: dict[str, set[str]] = {"upstream": set(), "downstream": set()}
    truncated = False
    for direction in ("upstream", "downstream"):
        queue: deque[tuple[str, int]] = deque([(digest, 0)])
        visited = {digest}
        while queue:
            current, depth = queue.popleft()
            if depth >= max_depth:
                truncated = truncated or bool(store.links(current, direction))
                continue
            for link in store.links(current, direction):
                edges[link.id] = link
                other = link.upstream if direction == "upstream" else link.downstream
                if other in visited:
                    continue
                if len(order) >= max_nodes:
                    truncated = True
                    continue
                visited.add(other)
                sides[direction].add(other)
                if other not in order:
                    order.append(other)
                queue.append((other, depth + 1))
    nodes = tuple(_node(store, d, store.artifact(d)) for d in order)
    kept = set(order)
    return Graph(
        root=digest,
        nodes=nodes,
        edges=tuple(
            e for _, e in sorted(edges.items()) if e.upstream in kept and e.downstream in kept
        ),
        truncated=truncated,
        upstream=tuple(d for d in order if d in sides["upstream"]),
        downstream=tuple(d for d in order if d in sides["downstream"]),
    )


def upstream_of(store: Store, digest: str, relation: str) -> list[Link]:
    """The links of one relation into `digest` (e.g. the datasets a model was trained on)."""
    return store.links(digest, "upstream", relation)

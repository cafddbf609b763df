"""The lineage graph's layout: one column per step upstream or downstream of the focus,
nodes stacked in each column, edges as curves. Drawn as SVG by the lineage template (each node
a link that re-centres the graph on it); static/app.js adds highlighting, pan and zoom."""

from __future__ import annotations

from bastion.records import Record
from bastion.ui.queries import Lineage

COLUMN = 260
ROW = 84
NODE_W = 200
NODE_H = 56
MARGIN = 30


class PlacedNode(Record):
    digest: str
    kind: str
    name: str
    x: int
    y: int
    depth: int
    focus: bool
    status: str  # the worst of its latest verdicts: failed, undecided, passed, none
    latest: tuple[tuple[str, str, int], ...]


class PlacedEdge(Record):
    upstream: str
    downstream: str
    relation: str
    path: str  # SVG path data
    label_x: int
    label_y: int


class Graph(Record):
    width: int
    height: int
    nodes: tuple[PlacedNode, ...]
    edges: tuple[PlacedEdge, ...]
    truncated: bool
    focus_known: bool


_WORST = ("failed", "undecided", "passed")


def _status(latest: tuple[tuple[str, str, int], ...]) -> str:
    statuses = {status for _, status, _ in latest}
    return next((s for s in _WORST if s in statuses), "none")


def layout(lineage: Lineage) -> Graph:
    columns: dict[int, list[str]] = {}
    for node in lineage.nodes:
        columns.setdefault(node.depth, []).append(node.digest)
    if not columns:
        columns = {0: [lineage.focus]}
    low = min(columns)
    tallest = max(len(c) for c in columns.values())
    position: dict[str, tuple[int, int]] = {}
    for depth, digests in columns.items():
        offset = (tallest - len(digests)) * ROW // 2
        for row, digest in enumerate(sorted(digests)):
            position[digest] = (MARGIN + (depth - low) * COLUMN, MARGIN + offset + row * ROW)
    nodes = tuple(
        PlacedNode(
            digest=n.digest,
            kind=n.kind,
            name=n.name,
            x=position[n.digest][0],
            y=position[n.digest][1],
            depth=n.depth,
            focus=n.digest == lineage.focus,
            status=_status(n.latest),
            latest=n.latest,
        )
        for n in lineage.nodes
    )
    edges = []
    for edge in lineage.edges:
        if edge.upstream not in position or edge.downstream not in position:
            continue
        (x1, y1), (x2, y2) = position[edge.upstream], position[edge.downstream]
        start = (x1 + NODE_W, y1 + NODE_H // 2)
        end = (x2, y2 + NODE_H // 2)
        if x2 <= x1:  # same column (or backwards): leave from the bottom, arrive at the top
            start, end = (x1 + NODE_W // 2, y1 + NODE_H), (x2 + NODE_W // 2, y2)
        bend = max(40, abs(end[0] - start[0]) // 2)
        path = (
            f"M{start[0]},{start[1]} C{start[0] + bend},{start[1]} "
            f"{end[0] - bend},{end[1]} {end[0]},{end[1]}"
        )
        edges.append(
            PlacedEdge(
                upstream=edge.upstream,
                downstream=edge.downstream,
                relation=edge.relation,
                path=path,
                label_x=(start[0] + end[0]) // 2,
                label_y=(start[1] + end[1]) // 2 - 6,
            )
        )
    width = MARGIN * 2 + (max(columns) - low) * COLUMN + NODE_W
    height = MARGIN * 2 + tallest * ROW
    return Graph(
        width=width,
        height=height,
        nodes=nodes,
        edges=tuple(edges),
        truncated=lineage.truncated,
        focus_known=any(n.kind != "unknown" for n in lineage.nodes if n.digest == lineage.focus),
    )

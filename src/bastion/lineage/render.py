"""Lineage graphs and gate decisions as text, JSON and Graphviz DOT. Names come from inspected
content (file names, dataset names, parameters): text escapes control characters, DOT quotes
and escapes every label."""

from __future__ import annotations

import json

from bastion.lineage.gate import Decision
from bastion.lineage.graph import Graph, Node
from bastion.report.printable import terminal_safe

SCHEMA_VERSION = "1"


def _short(digest: str) -> str:
    kind, _, value = digest.partition(":")
    return f"{kind}:{value[:12]}" if len(value) > 16 else digest


def _verdicts(node: Node) -> str:
    return ", ".join(f"{v.command} {v.status} #{v.run_id}" for v in node.verdicts) or "no runs"


def graph_json(graph: Graph) -> str:
    return (
        json.dumps({"schema_version": SCHEMA_VERSION, **graph.model_dump(mode="json")}, indent=2)
        + "\n"
    )


def graph_text(graph: Graph) -> str:
    root = graph.node(graph.root)
    lines = []
    if root is not None:
        lines.append(f"{root.kind} {terminal_safe(root.name)}")
        lines.append(f"  digest   {root.digest}")
        lines.append(f"  verdicts {_verdicts(root)}")
    for side, digests in (("upstream", graph.upstream), ("downstream", graph.downstream)):
        lines.append(f"{side}:" if digests else f"{side}: (none recorded)")
        for digest in digests:
            node = graph.node(digest)
            if node is None:
                continue
            relations = sorted(
                {e.relation for e in graph.edges if digest in (e.upstream, e.downstream)}
            )
            lines.append(f"  {node.kind:10} {terminal_safe(node.name)}  [{', '.join(relations)}]")
            lines.append(f"             {_short(node.digest)}  {_verdicts(node)}")
    params = [e.attributes for e in graph.edges if e.downstream == graph.root and e.attributes]
    if params:
        lines.append("recorded with:")
        for key, value in sorted(params[-1].items()):
            lines.append(f"  {terminal_safe(str(key))} = {terminal_safe(json.dumps(value))}")
    if graph.truncated:
        lines.append("(the walk stopped at its depth or node bound; the graph goes on)")
    return "\n".join(lines) + "\n"


def _dot_label(text: str) -> str:
    text = terminal_safe(text)[:200]
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def graph_dot(graph: Graph) -> str:
    ids = {n.digest: f"n{i}" for i, n in enumerate(graph.nodes)}
    lines = ["digraph lineage {", "  rankdir=LR;", "  node [shape=box, fontname=Helvetica];"]
    for node in graph.nodes:
        failing = any(v.status != "passed" for v in node.verdicts)
        style = ', style=bold, color="#b00020"' if failing else ""
        if node.digest == graph.root:
            style += ", peripheries=2"
        label = f"{node.kind}: {node.name}\n{_short(node.digest)}\n{_verdicts(node)}"
        lines.append(f"  {ids[node.digest]} [label={_dot_label(label)}{style}];")
    for edge in graph.edges:
        lines.append(
            f"  {ids[edge.upstream]} -> {ids[edge.downstream]} [label={_dot_label(edge.relation)}];"
        )
    lines.append("}")
    return "\n".join(lines) + "\n"


def decision_json(decision: Decision) -> str:
    body = {"schema_version": SCHEMA_VERSION, **decision.model_dump(mode="json")}
    body["exit_code"] = decision.exit_code
    return json.dumps(body, indent=2) + "\n"


def decision_text(decision: Decision) -> str:
    lines = [
        f"release gate: {decision.status.value.upper()} for {terminal_safe(decision.model)}",
        f"  digest  {decision.digest}",
        f"  policy  {terminal_safe(decision.policy)} (evidence at most "
        f"{decision.max_age_days} days old)",
    ]
    for r in decision.requirements:
        proof = ", ".join(f"run #{run}" for run in r.runs)
        if r.links:
            proof += (", " if proof else "") + ", ".join(f"link {i}" for i in r.links)
        lines.append(
            f"  [{r.status:^12}] {r.name:9} {terminal_safe(r.detail)}"
            + (f"  (evidence: {proof})" if proof else "")
        )
    return "\n".join(lines) + "\n"

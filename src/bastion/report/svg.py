"""Inline SVG line charts for the HTML report (no scripts, no assets from anywhere): the probe's
success against the budget, membership ROC curves and extraction fidelity against queries.
Every label is escaped and every coordinate is a number this module formats itself."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

COLOURS = ("#0969da", "#d1242f", "#1f7a46", "#8250df", "#bf8700", "#57606a")
WIDTH, HEIGHT, PAD = 420, 260, 44


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def line_chart(
    series: Sequence[tuple[str, Sequence[Sequence[Any]]]],
    x_label: str,
    y_label: str,
    y_max: float = 1.0,
    diagonal: bool = False,
) -> str:
    """An SVG chart of (x, y) series; y from 0 to `y_max`, x from 0 to the largest x."""
    clean = []
    for name, points in series:
        kept: list[tuple[float, float]] = []
        for point in points:
            if len(point) >= 2:
                x, y = _number(point[0]), _number(point[1])
                if x is not None and y is not None:
                    kept.append((x, y))
        if kept:
            clean.append((str(name), kept))
    if not clean:
        return ""
    x_max = max(x for _, pts in clean for x, _ in pts) or 1.0
    inner_w, inner_h = WIDTH - 2 * PAD, HEIGHT - 2 * PAD

    def sx(x: float) -> float:
        return PAD + inner_w * x / x_max

    def sy(y: float) -> float:
        return HEIGHT - PAD - inner_h * min(max(y / y_max, 0.0), 1.0)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{html.escape(y_label)} '
        f'against {html.escape(x_label)}">',
        f'<rect x="{PAD}" y="{PAD}" width="{inner_w}" height="{inner_h}" fill="#fff" '
        'stroke="#d0d7de"/>',
    ]
    for k in range(5):
        y = y_max * k / 4
        parts.append(
            f'<text x="{PAD - 6}" y="{sy(y) + 4:.1f}" font-size="10" text-anchor="end">{y:g}</text>'
        )
        x = x_max * k / 4
        parts.append(
            f'<text x="{sx(x):.1f}" y="{HEIGHT - PAD + 14}" font-size="10" '
            f'text-anchor="middle">{x:.3g}</text>'
        )
    if diagonal:
        parts.append(
            f'<line x1="{sx(0):.1f}" y1="{sy(0):.1f}" x2="{sx(x_max):.1f}" y2="{sy(y_max):.1f}" '
            'stroke="#8c959f" stroke-dasharray="4 3"/>'
        )
    for index, (name, pts) in enumerate(clean):
        colour = COLOURS[index % len(COLOURS)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in sorted(pts))
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{path}"/>')
        parts.append(
            f'<text x="{PAD + 8}" y="{PAD + 14 + 13 * index}" font-size="11" fill="{colour}">'
            f"{html.escape(name[:40])}</text>"
        )
    parts.append(
        f'<text x="{WIDTH / 2}" y="{HEIGHT - 8}" font-size="11" text-anchor="middle">'
        f"{html.escape(x_label)}</text>"
    )
    parts.append(
        f'<text x="12" y="{HEIGHT / 2}" font-size="11" text-anchor="middle" '
        f'transform="rotate(-90 12 {HEIGHT / 2})">{html.escape(y_label)}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def probe_charts(probe: dict[str, Any]) -> dict[str, str]:
    """The probe's charts, by name, from a report's metadata["probe"]."""
    charts: dict[str, str] = {}
    evasion = probe.get("evasion")
    if isinstance(evasion, dict) and isinstance(evasion.get("budgets"), list):
        budgets = [b for b in evasion["budgets"] if isinstance(b, dict)]
        series = [
            (
                "flippable share",
                [(0, 0)] + [(b.get("budget"), b.get("flippable_share")) for b in budgets],
            )
        ]
        if all("robust_accuracy" in b for b in budgets):
            series.append(
                ("robust accuracy", [(b.get("budget"), b.get("robust_accuracy")) for b in budgets])
            )
        charts["evasion"] = line_chart(series, "budget ε (cost units)", "share")
    membership = probe.get("membership")
    if isinstance(membership, dict) and isinstance(membership.get("attacks"), dict):
        series = [
            (f"{name} (AUC {attack.get('auc', 0):.2f})", attack.get("roc", []))
            for name, attack in membership["attacks"].items()
            if isinstance(attack, dict)
        ]
        charts["membership"] = line_chart(
            series, "false-positive rate", "true-positive rate", diagonal=True
        )
    extraction = probe.get("extraction")
    if isinstance(extraction, dict) and isinstance(extraction.get("curves"), dict):
        series = [
            (name, [(p.get("queries"), p.get("fidelity")) for p in points if isinstance(p, dict)])
            for name, points in extraction["curves"].items()
            if isinstance(points, list)
        ]
        charts["extraction"] = line_chart(series, "queries", "fidelity")
    return charts

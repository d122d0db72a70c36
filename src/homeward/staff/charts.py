"""Charts as SVG, rendered on the server: no JavaScript, no build step. Each chart has a title
and a description for screen readers, and its figures are also in a table on the same page."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape

WIDTH, HEIGHT = 720, 300
LEFT, RIGHT, TOP, BOTTOM = 80, 20, 20, 60
# NHS identity colours: blue, mid grey, red, green, purple (lines at least 3:1 against white).
COLOURS = ("#005eb8", "#768692", "#d5281b", "#007f3b", "#330072")


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float | None]
    kind: str = "bar"  # "bar" (stacked with the other bars) or "line"


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    magnitude = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return float(step * magnitude)
    return float(10 * magnitude)


def chart(
    chart_id: str,
    title: str,
    description: str,
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    axis_format: str = "£{:,.0f}",
) -> str:
    """A bar-and-line chart over ``labels`` (months, say); bars of the same label are stacked."""
    n = max(len(labels), 1)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    bars = [s for s in series if s.kind == "bar"]
    lines = [s for s in series if s.kind == "line"]
    stacked = [sum((s.values[i] or 0) for s in bars) for i in range(len(labels))]
    peak = max([*stacked, *[(v or 0) for s in lines for v in s.values], 0])
    top = _nice_max(peak)
    slot = plot_w / n

    def y(value: float) -> float:
        return TOP + plot_h - (value / top) * plot_h

    out = [
        f'<svg id="{escape(chart_id)}" class="homeward-chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="100%" aria-labelledby="{escape(chart_id)}-title {escape(chart_id)}-desc" '
        'xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{escape(chart_id)}-title">{escape(title)}</title>',
        f'<desc id="{escape(chart_id)}-desc">{escape(description)}</desc>',
    ]
    for i in range(5):  # grid and axis labels
        value = top * i / 4
        gy = y(value)
        out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{gy:.1f}" y2="{gy:.1f}" stroke="#d8dde0"/>')
        out.append(
            f'<text x="{LEFT - 6}" y="{gy + 4:.1f}" text-anchor="end" font-size="12" fill="#212b32">'
            f"{escape(axis_format.format(value))}</text>"
        )
    bar_w = slot * 0.6
    for i, label in enumerate(labels):
        x = LEFT + i * slot + (slot - bar_w) / 2
        base = 0.0
        for k, s in enumerate(bars):
            v = s.values[i] or 0
            if v > 0:
                out.append(
                    f'<rect x="{x:.1f}" y="{y(base + v):.1f}" width="{bar_w:.1f}" height="{y(base) - y(base + v):.1f}"'
                    f' fill="{COLOURS[k % len(COLOURS)]}"><title>{escape(s.name)}, {escape(label)}: '
                    f"{escape(axis_format.format(v))}</title></rect>"
                )
            base += v
        out.append(
            f'<text x="{LEFT + i * slot + slot / 2:.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle" '
            f'font-size="12" fill="#212b32">{escape(label)}</text>'
        )
    for k, s in enumerate(lines, start=len(bars)):
        points = [f"{LEFT + i * slot + slot / 2:.1f},{y(v):.1f}" for i, v in enumerate(s.values) if v is not None]
        colour = COLOURS[k % len(COLOURS)]
        if points:
            out.append(f'<polyline points="{" ".join(points)}" fill="none" stroke="{colour}" stroke-width="3"/>')
    # Legend, below the axis.
    lx = LEFT
    for k, s in enumerate([*bars, *lines]):
        colour = COLOURS[k % len(COLOURS)]
        ly = HEIGHT - 18
        if s.kind == "bar":
            out.append(f'<rect x="{lx}" y="{ly - 10}" width="12" height="12" fill="{colour}"/>')
        else:
            out.append(
                f'<line x1="{lx}" x2="{lx + 14}" y1="{ly - 4}" y2="{ly - 4}" stroke="{colour}" stroke-width="3"/>'
            )
        out.append(f'<text x="{lx + 18}" y="{ly}" font-size="12" fill="#212b32">{escape(s.name)}</text>')
        lx += 30 + 7 * len(s.name)
    out.append("</svg>")
    return "\n".join(out)

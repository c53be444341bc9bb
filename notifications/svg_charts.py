"""Small charts drawn on the server as inline SVG: no JavaScript, no chart library, no CDN.

The overview page shows the last hour minute by minute; these functions turn a
`overview_series.Series` into markup the admin template includes as is. Every label is
escaped; numbers are the only other content.
"""

from __future__ import annotations

from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

from notifications.overview_series import Series

# Drawing area and margins, in SVG user units (the SVG scales to its container's width).
WIDTH, HEIGHT = 420, 150
LEFT, RIGHT, TOP, BOTTOM = 44, 8, 10, 34
# Width of one legend character at the chart's 10px font, to space the legend's entries.
LEGEND_CHARACTER_WIDTH = 5.6
# One colour per line, in legend order; distinguishable for the common colour blindnesses.
PALETTE = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9")


def _scale(peak: float) -> float:
    """A round axis maximum at or above `peak`: 1, 2, 5, 10, 20, 50, 100, ..."""
    top = 1.0
    while top < peak:
        # Tens while a 5x step would still fall short; then the 2x or 5x step that reaches it.
        top *= 10 if top * 5 < peak else (5 if top * 2 < peak else 2)
    return top


def _frame(series: Series, *, chart_id: str, title: str, unit: str, top: float, body: str) -> SafeString:
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    first, last = series.minutes[0], series.minutes[-1]
    legend, x = [], float(LEFT)
    for i, name in enumerate(series.lines):
        legend.append(
            f'<rect x="{x:.0f}" y="{HEIGHT - 12}" width="10" height="10" fill="{PALETTE[i % len(PALETTE)]}"/>'
            f'<text x="{x + 14:.0f}" y="{HEIGHT - 3}" class="legend">{escape(name)}</text>'
        )
        x += 14 + LEGEND_CHARACTER_WIDTH * len(name) + 12
    top_label = f"{top:g}" if top < 1000 else f"{top / 1000:g}k"
    markup = (
        f'<svg id="{escape(chart_id)}" class="overview-chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{escape(title)}</title>"
        f'<line class="axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}"/>'
        f'<line class="axis" x1="{LEFT}" y1="{TOP + plot_h}" x2="{LEFT + plot_w}" y2="{TOP + plot_h}"/>'
        f'<line class="grid" x1="{LEFT}" y1="{TOP}" x2="{LEFT + plot_w}" y2="{TOP}"/>'
        f'<text x="{LEFT - 4}" y="{TOP + 4}" text-anchor="end">{top_label}</text>'
        f'<text x="{LEFT - 4}" y="{TOP + plot_h}" text-anchor="end">0</text>'
        f'<text x="{LEFT - 4}" y="{TOP + plot_h / 2 + 4}" text-anchor="end" class="unit">{escape(unit)}</text>'
        f'<text x="{LEFT}" y="{TOP + plot_h + 13}">{first:%H:%M}</text>'
        f'<text x="{LEFT + plot_w}" y="{TOP + plot_h + 13}" text-anchor="end">{last:%H:%M} UTC</text>'
        f"{body}{''.join(legend)}</svg>"
    )
    return mark_safe(markup)  # noqa: S308 -- every text above is escaped or a number


def stacked_bars(series: Series, *, chart_id: str, title: str, unit: str) -> SafeString:
    """One bar per minute, the lines stacked in legend order (counts)."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    totals = [sum(values[i] or 0 for values in series.lines.values()) for i in range(len(series.minutes))]
    top = _scale(max(totals, default=0))
    slot = plot_w / len(series.minutes)
    bars = []
    for i, minute in enumerate(series.minutes):
        base = 0.0
        for colour_index, (name, values) in enumerate(series.lines.items()):
            value = values[i] or 0
            if not value:
                continue
            height = plot_h * value / top
            y = TOP + plot_h - plot_h * base / top - height
            bars.append(format_html(
                '<rect class="bar" x="{}" y="{}" width="{}" height="{}" fill="{}"><title>{} {}: {}</title></rect>',
                f"{LEFT + i * slot + 0.5:.1f}", f"{y:.1f}", f"{max(slot - 1, 1):.1f}", f"{height:.1f}",
                PALETTE[colour_index % len(PALETTE)], f"{minute:%H:%M}", name, f"{value:g}",
            ))
            base += value
    return _frame(series, chart_id=chart_id, title=title, unit=unit, top=top, body="".join(bars))


def lines(series: Series, *, chart_id: str, title: str, unit: str) -> SafeString:
    """One polyline per line; a minute without a value breaks the line (a dot where alone)."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    peak = max((v for values in series.lines.values() for v in values if v is not None), default=0)
    top = _scale(peak)
    slot = plot_w / len(series.minutes)
    shapes = []
    for colour_index, (name, values) in enumerate(series.lines.items()):
        colour = PALETTE[colour_index % len(PALETTE)]
        runs: list[list[tuple[float, float]]] = [[]]
        for i, value in enumerate(values):
            if value is None:
                runs.append([])
                continue
            runs[-1].append((LEFT + (i + 0.5) * slot, TOP + plot_h - plot_h * min(value, top) / top))
        for run in (r for r in runs if r):
            points = " ".join(f"{x:.1f},{y:.1f}" for x, y in run)
            if len(run) == 1:
                shapes.append(format_html('<circle class="point" cx="{}" cy="{}" r="2" fill="{}"><title>{}</title></circle>',
                                          f"{run[0][0]:.1f}", f"{run[0][1]:.1f}", colour, name))
            else:
                shapes.append(format_html('<polyline class="line" points="{}" fill="none" stroke="{}" stroke-width="1.5">'
                                          "<title>{}</title></polyline>", points, colour, name))
    return _frame(series, chart_id=chart_id, title=title, unit=unit, top=top, body="".join(shapes))

"""A small server-rendered SVG bar chart of a key's daily usage (no JavaScript, no library)."""

from __future__ import annotations

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from .selectors import DailyUsage

WIDTH = 720
BAR_AREA = 90
ROW = BAR_AREA + 36


def _bars(values: list[int], top: int, colour: str, label: str) -> SafeString:
    peak = max(values) or 1
    step = WIDTH / len(values)
    bars = format_html_join(
        "",
        '<rect x="{}" y="{}" width="{}" height="{}" fill="{}"><title>{}</title></rect>',
        (
            (
                f"{i * step + 1:.1f}",
                f"{top + 18 + BAR_AREA - v / peak * BAR_AREA:.1f}",
                f"{step - 2:.1f}",
                f"{v / peak * BAR_AREA:.1f}",
                colour,
                f"{v:,} {label}",
            )
            for i, v in enumerate(values)
        ),
    )
    return format_html(
        '<text x="0" y="{}" font-size="12" font-family="sans-serif">{} per day (max {})</text>{}',
        top + 12,
        label.capitalize(),
        f"{max(values):,}",
        bars,
    )


def usage_chart_svg(daily: list[DailyUsage]) -> SafeString:
    """Two bar rows (tokens, requests), one bar per day, oldest on the left."""
    height = 2 * ROW + 16
    first, last = daily[0].day, daily[-1].day
    return format_html(
        '<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="Daily usage" width="{}" height="{}" '
        'viewBox="0 0 {} {}">{}{}'
        '<text x="0" y="{}" font-size="11" font-family="sans-serif">{}</text>'
        '<text x="{}" y="{}" font-size="11" font-family="sans-serif" text-anchor="end">{}</text></svg>',
        WIDTH,
        height,
        WIDTH,
        height,
        _bars([d.tokens for d in daily], 0, "#417690", "tokens"),
        _bars([d.requests for d in daily], ROW, "#79aec8", "requests"),
        height - 2,
        first.isoformat(),
        WIDTH,
        height - 2,
        last.isoformat(),
    )

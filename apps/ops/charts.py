"""Bar charts as server-rendered SVG: no script, no CDN, and readable without colour.

Every bar carries its value as text and every bar its time below it, so the chart reads in
greyscale, in a screen reader (each bar has a <title>), and when printed. Times are written in UTC
with a `data-time` attribute; the page's localtime.js rewrites them in the viewer's time zone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT = 640, 220
TOP, BOTTOM, LEFT, RIGHT = 22, 40, 26, 8


@dataclass(frozen=True)
class Bar:
    start: float  # Unix seconds of the bucket's start
    value: float
    text: str  # the value as shown on the bar ("12", "3.4 ms", "–")


def bar_chart(*, title: str, bars: list[Bar], unit: str, chart_id: str, days: bool = False) -> SafeString:
    """An accessible SVG bar chart of `bars` (oldest first), scaled to the largest value.

    Bars of hours and minutes are labelled with their start time (rewritten in the viewer's zone);
    bars of `days` with their UTC date, the calendar day of a quota, which no zone shifts.
    """
    count = max(1, len(bars))
    inner_w, inner_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = inner_w / count
    bar_w = max(2.0, slot * 0.7)
    largest = max((bar.value for bar in bars), default=0)
    top_value = largest or 1
    parts = [
        format_html(
            '<svg id="{}" class="chart" viewBox="0 0 {} {}" role="img" aria-labelledby="{}-title" '
            'preserveAspectRatio="xMidYMid meet" xmlns="http://www.w3.org/2000/svg">',
            chart_id, WIDTH, HEIGHT, chart_id,
        ),
        format_html('<title id="{}-title">{}</title>', chart_id, title),
        format_html(
            '<line x1="{}" y1="{}" x2="{}" y2="{}" class="axis"/>', LEFT, TOP + inner_h, WIDTH - RIGHT, TOP + inner_h
        ),
    ]  # fmt: skip
    label_every = 1 if count <= 24 else 2
    for i, bar in enumerate(bars):
        height = inner_h * (bar.value / top_value) if bar.value > 0 else 0
        x = LEFT + i * slot + (slot - bar_w) / 2
        y = TOP + inner_h - height
        at = datetime.fromtimestamp(bar.start, tz=timezone.utc)
        hhmm = at.strftime("%d %b") if days else at.strftime("%H:%M")
        tx, ty, bx = _n(x + bar_w / 2 + 3), _n(y - 3), _n(x + bar_w / 2)
        parts.append(format_html(
            '<g class="bar"><title>{} {}: {} {}</title>'
            '<rect x="{}" y="{}" width="{}" height="{}"/>'
            '<text class="value" x="{}" y="{}" transform="rotate(-90 {} {})">{}</text>',
            title, hhmm, bar.text, unit, _n(x), _n(y), _n(bar_w), _n(height), tx, ty, tx, ty, bar.text,
        ))  # fmt: skip
        if (count - 1 - i) % label_every == 0:  # the newest bar always has its time
            ly = _n(HEIGHT - BOTTOM + 12)
            parts.append(format_html(
                '<text class="time" x="{}" y="{}" transform="rotate(-60 {} {})"{}>{}</text>',
                bx, ly, bx, ly, "" if days else format_html(' data-time="{}"', at.isoformat()), hhmm,
            ))  # fmt: skip
        parts.append(mark_safe("</g>"))
    parts.append(format_html('<text class="unit" x="{}" y="14">{}</text>', LEFT, f"{title} · {unit}, highest {_compact(largest)}"))
    parts.append(mark_safe("</svg>"))
    return mark_safe("".join(str(part) for part in parts))


def _n(value: float) -> str:
    return f"{value:.1f}"


def _compact(value: float) -> str:
    if value >= 10_000:
        return f"{value / 1000:.0f}k"
    if value >= 100 or value == int(value):
        return f"{value:.0f}"
    return f"{value:.2g}"


def count_text(value: float) -> str:
    return _compact(value) if value else "0"


def ms_text(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


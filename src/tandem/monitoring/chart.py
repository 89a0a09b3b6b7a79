"""The dashboard's throughput chart as inline SVG, drawn on the server (no JavaScript, no build).

One stacked bar per minute — succeeded below, failed on top — and the failure rate of each
minute as dots on a 0 to 100 % scale. Every bar has a ``<title>`` (a tooltip) with its numbers.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from tandem.monitoring.history import Bucket

WIDTH = 720
HEIGHT = 160
TOP = 12  # room for the scale's label
LEFT = 36  # room for the count axis
BOTTOM = 18  # room for the time labels
SUCCEEDED = "#3a7d44"
FAILED = "#c0392b"


def _n(value: float) -> str:
    return f"{value:.1f}"


def throughput_svg(buckets: Sequence[Bucket]) -> SafeString:
    if not buckets:
        return mark_safe("")
    plot_w = WIDTH - LEFT - 8
    plot_h = HEIGHT - TOP - BOTTOM
    peak = max(max(b.finished for b in buckets), 1)
    step = plot_w / len(buckets)
    bar = max(step - 2, 1)
    bars = []
    dots = []
    for i, b in enumerate(buckets):
        x = LEFT + i * step
        ok_h = plot_h * b.succeeded / peak
        bad_h = plot_h * b.failed / peak
        base = TOP + plot_h
        label = f"{b.start:%H:%M} UTC: {b.succeeded} succeeded, {b.failed} failed" + (
            f" ({b.failure_rate:.0%} failed)" if b.failure_rate is not None else ""
        )
        bars.append(
            format_html(
                '<g class="bucket"><title>{}</title>'
                '<rect x="{}" y="{}" width="{}" height="{}" fill="{}"/>'
                '<rect x="{}" y="{}" width="{}" height="{}" fill="{}"/></g>',
                label,
                _n(x),
                _n(base - ok_h),
                _n(bar),
                _n(ok_h),
                SUCCEEDED,
                _n(x),
                _n(base - ok_h - bad_h),
                _n(bar),
                _n(bad_h),
                FAILED,
            )
        )
        if b.failure_rate is not None:
            dots.append(
                format_html(
                    '<circle cx="{}" cy="{}" r="2.5" fill="none" stroke="{}"/>',
                    _n(x + bar / 2),
                    _n(TOP + plot_h * (1 - b.failure_rate)),
                    FAILED,
                )
            )
    ticks = format_html_join(
        "",
        '<text x="{}" y="{}" font-size="10" text-anchor="middle">{}</text>',
        (
            (_n(LEFT + i * step + bar / 2), HEIGHT - 4, f"{buckets[i].start:%H:%M}")
            for i in range(0, len(buckets), max(len(buckets) // 6, 1))
        ),
    )
    return format_html(
        '<svg class="chart" viewBox="0 0 {w} {h}" width="100%" role="img" '
        'aria-label="Tasks finished per minute, {n} minutes">'
        '<text x="2" y="{top}" font-size="10" dominant-baseline="hanging">{peak}</text>'
        '<text x="2" y="{zero}" font-size="10">0</text>'
        '<line x1="{left}" y1="{zero}" x2="{right}" y2="{zero}" stroke="#999"/>'
        "{bars}{dots}{ticks}</svg>",
        w=WIDTH,
        h=HEIGHT,
        n=len(buckets),
        top=TOP,
        peak=peak,
        zero=TOP + plot_h,
        left=LEFT,
        right=WIDTH - 8,
        bars=mark_safe("".join(bars)),  # each one built by format_html above
        dots=mark_safe("".join(dots)),
        ticks=ticks,
    )


__all__ = ["throughput_svg"]

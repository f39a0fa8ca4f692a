"""The failures page's small charts, drawn in one pass: a page of 100 groups
over 7 days holds about a thousand bars, too many for the template loop
(each bar's numbers localised, its time formatted: most of the page's time)."""

from __future__ import annotations

from typing import Any

from django import template
from django.utils import timezone
from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

register = template.Library()


@register.simple_tag
def failure_spark(group: Any, report: Any) -> SafeString:
    """An SVG of `group.bars` (reads/failures.py), a title on each bar."""
    zone = timezone.get_current_timezone()
    width = report.bar_width
    # Numbers and escaped times only: joined as text, not one format_html a bar.
    bars = "".join(
        f'<rect x="{bar.x}" y="{bar.y}" width="{width}" height="{bar.height}">'
        f"<title>{bar.count} from "
        f"{escape(bar.start.astimezone(zone).strftime('%Y-%m-%d %H:%M %Z'))}</title></rect>"
        for bar in group.bars
    )
    return format_html(
        '<svg class="failure-spark" viewBox="0 0 {} {}" preserveAspectRatio="none" '
        'role="img" aria-label="{} over the window">'
        '<line class="baseline" x1="0" y1="{}" x2="{}" y2="{}"></line>{}</svg>',
        report.chart_width,
        report.chart_height,
        group.count,
        report.chart_height,
        report.chart_width,
        report.chart_height,
        mark_safe(bars),  # noqa: S308 (numbers and escaped text, above)
    )

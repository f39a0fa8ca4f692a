"""Template helpers of the history page.

The timeline's rows are built here in Python rather than in a template loop:
up to a few thousand SVG bars, each with a link, a tooltip and a label,
render in a few milliseconds this way instead of a few hundred. Every piece
of text goes through `escape`.
"""

from __future__ import annotations

from collections.abc import Container

from django import template
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from ..history.drawing import Bar, Drawing, Row
from ..history.events import SUMMARY_CAUSE_CHARS
from ..history.table import EventRow

register = template.Library()

_ROW_HEIGHT = 20
_DEPTH_CLASSES = 8


def _num(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".") or "0"


def _href(event_id: int, on_page: Container[int], event_link: str) -> str:
    if event_id in on_page:
        return f"#event-{event_id}"
    return f"{event_link}{event_id}#event-{event_id}"


def _bar(bar: Bar, on_page: Container[int], event_link: str) -> str:
    href = escape(_href(bar.event_id, on_page, event_link))
    cls = escape(bar.cls)
    extra = " has-attempts" if bar.segments else ""
    if bar.lane:
        extra += " lane"
    out = [
        f'<a href="{href}"><title>{escape(bar.title)}</title>'
        f'<rect class="b o-{cls}{extra}" x="{_num(bar.x)}%" y="3" '
        f'width="{_num(bar.w)}%" height="14" rx="2"/></a>'
    ]
    for seg in bar.segments:
        seg_href = escape(_href(seg.event_id, on_page, event_link))
        out.append(
            f'<a href="{seg_href}"><title>{escape(seg.title)}</title>'
            f'<rect class="seg o-{escape(seg.cls)}" x="{_num(seg.x)}%" y="5" '
            f'width="{_num(seg.w)}%" height="10"/></a>'
        )
    if bar.label and bar.label_at:
        label = escape(bar.label)
        if bar.label_at == "left":
            x = _num(bar.x)
            out.append(f'<text class="bl" x="{x}%" dx="-4" y="14" text-anchor="end">{label}</text>')
        elif bar.label_at == "inside":
            # Centred: attempts sit at a Task bar's ends, its retry wait between.
            middle = _num(bar.x + bar.w / 2)
            out.append(
                f'<text class="bl in" x="{middle}%" y="14" text-anchor="middle">{label}</text>'
            )
        else:
            out.append(f'<text class="bl" x="{_num(bar.x + bar.w)}%" dx="4" y="14">{label}</text>')
    return "".join(out)


def _row(row: Row, on_page: Container[int], event_link: str) -> str:
    depth = min(row.depth, _DEPTH_CLASSES)
    classes = f"tl-row d{depth} k-{escape(row.kind)} o-{escape(row.cls)}"
    href = escape(_href(row.event_id, on_page, event_link)) if row.event_id else ""
    kind = f'<span class="tl-type">{escape(row.state_type)}</span>' if row.state_type else ""
    note = f'<span class="tl-note">{escape(row.note)}</span>' if row.note else ""
    name = escape(row.label)
    title = escape(f"{row.label} ({row.note})" if row.note else row.label)
    link = f'<a href="{href}">{name}</a>' if href else name
    # The toggle of a group is outside the link: a click on the name goes to
    # the event, a click beside it folds the group.
    toggle = '<span class="tl-toggle" aria-hidden="true"></span>' if row.opens else ""
    label = f'<span class="tl-label" title="{title}">{toggle}{link} {kind}{note}</span>'
    bars = "".join(_bar(bar, on_page, event_link) for bar in row.bars)
    track = (
        f'<svg class="tl-track" height="{_ROW_HEIGHT}" role="img" aria-label="{name}">{bars}</svg>'
    )
    if row.opens:
        opened = " open" if row.expanded else ""
        html = (
            f'<details class="tl-group"{opened}><summary class="{classes}">{label}{track}</summary>'
        )
    else:
        html = f'<div class="{classes}">{label}{track}</div>'
    return html + "</details>" * len(row.closes)


@register.simple_tag
def timeline_rows(drawing: Drawing, on_page: Container[int], event_link: str) -> SafeString:
    """The rows of the timeline: a label and an SVG track each; nested lanes
    as <details> groups. `event_link` + id (+ anchor) leads to an event on
    another page of the table; events on this page are plain anchors."""
    return mark_safe(  # noqa: S308 - every value above is escaped
        "".join(_row(row, on_page, event_link) for row in drawing.rows)
    )


@register.filter
def pct(value: float) -> str:
    """A coordinate for an SVG attribute: 12.345."""
    return _num(float(value))


# --- The event table -----------------------------------------------------------------
# Per row, the summary and the folded details are built here: loops inside a
# 500-row template loop are what made the page slow.


def _part(label: str, value: str, cls: str) -> str:
    key = f'<span class="k">{escape(label)}</span> ' if label else ""
    return f'<span class="part {escape(cls)}">{key}{escape(value)}</span>'


@register.filter
def event_summary(row: EventRow) -> SafeString:
    """The one-line summary: `name Validate`, `error X`, `cause ...` (cut)."""
    out = []
    for part in row.parts:
        value = part.value
        if part.cls == "cause" and len(value) > SUMMARY_CAUSE_CHARS:
            value = value[:SUMMARY_CAUSE_CHARS] + "\u2026"
        out.append(_part(part.label, value, part.cls))
    if row.payload_note:
        out.append(_part("", row.payload_note, "muted"))
    return mark_safe("".join(out))  # noqa: S308 - escaped above


@register.simple_tag
def event_fold(row: EventRow, event_link: str, detail_link: str) -> SafeString:
    """The folded details of an event: previous event, full cause, the other
    fields, and its payloads (the start of big ones, with a link to all)."""
    facts = []
    if row.previous_event_id:
        prev = row.previous_event_id
        href = escape(f"{event_link}{prev}#event-{prev}")
        facts.append(f'<dt>after event</dt><dd><a href="{href}">{prev}</a></dd>')
    for part in row.parts:
        if part.cls == "cause":
            facts.append(
                f'<dt>{escape(part.label)}</dt><dd class="cause-full">{escape(part.value)}</dd>'
            )
    for field in row.fields:
        facts.append(f"<dt>{escape(field.label)}</dt><dd>{escape(field.value)}</dd>")
    if not facts and not row.payloads:
        return mark_safe("")
    out = ['<details class="ev-details"><summary>details</summary>']
    if facts:
        out.append(f'<dl class="facts small">{"".join(facts)}</dl>')
    full = escape(f"{detail_link}{row.event_id}")
    for payload in row.payloads:
        dom_id = escape(payload.dom_id)
        flags = " \u00b7 truncated by AWS" if payload.truncated_by_aws else ""
        out.append(
            f'<div class="payload" id="{dom_id}"><div class="small muted">'
            f"{escape(payload.label)} \u00b7 {escape(payload.size)}{flags}</div>"
            f'<pre class="json">{escape(payload.text)}</pre>'
        )
        if payload.cut:
            out.append(
                f'<p class="small muted">Showing the first {len(payload.text)} characters. '
                f'<a href="{full}" hx-get="{full}" hx-select="#{dom_id}" '
                f'hx-target="#{dom_id}" hx-swap="outerHTML">Show all {escape(payload.size)}</a></p>'
            )
        out.append("</div>")
    out.append("</details>")
    return mark_safe("".join(out))  # noqa: S308 - escaped above

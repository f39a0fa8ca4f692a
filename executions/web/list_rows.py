"""The executions list's rows, rendered in Python.

The list's rows were the template's loop: eleven links, times and filters
per row, each through the template engine's variable lookups (a profile of
the unfiltered list at 1,000,000 executions put more than half of the
page's time in rendering its 50 rows). Here each row is format_html with
the same helpers the template used, and the same HTML to the byte
(tests/views/test_list_rows.py renders both and compares them).
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.template.defaultfilters import pluralize, truncatechars
from django.urls import reverse
from django.utils.html import conditional_escape, format_html
from django.utils.safestring import SafeString, mark_safe

from executions.links import keep_tz
from executions.models import Execution
from executions.times import ago, duration, iso_z, when


def rows_html(
    rows: list[Execution], request: HttpRequest, *, pick: bool, places: bool
) -> SafeString:
    """Every row of the list's table, as `_list_results.html` lays them out.
    `pick`: the bulk stop's check boxes; `places`: each state machine's account
    and region under its name (several are known)."""
    return mark_safe("".join(_row(ex, request, pick, places) for ex in rows))  # noqa: S308


def _link(request: HttpRequest, name: str, arn: str) -> str:
    return keep_tz(reverse(name, args=(arn,)), request)


def _row(ex: Execution, request: HttpRequest, pick: bool, places: bool) -> str:
    detail = _link(request, "execution_detail", ex.arn)
    sm = ex.state_machine
    parts: list[str] = [
        format_html(
            '\n      <tr data-row-link="{}" data-history-link="{}">\n        ',
            detail,
            _link(request, "execution_history", ex.arn),
        )
    ]
    if pick:
        box = ""
        if ex.is_open:
            box = format_html(
                '<input type="checkbox" name="execution" value="{}" form="bulk-select" '
                'data-bulk-pick aria-label="Pick {} to stop">',
                ex.pk,
                ex.name,
            )
        parts.append(format_html('<td class="pick">{}</td>', box))
    parts.append(
        format_html('\n        <td class="name wrap-anywhere"><a href="{}">{}</a>', detail, ex.name)
    )
    if ex.redrive_count:
        parts.append(
            format_html(
                ' <span class="tag" title="Redriven {} time{}">redriven ×{}</span>',  # noqa: RUF001
                ex.redrive_count,
                pluralize(ex.redrive_count),
                ex.redrive_count,
            )
        )
    snippet = getattr(ex, "snippet", None)
    if snippet:
        marked = "".join(
            format_html("<mark>{}</mark>", text) if hit else conditional_escape(text)
            for text, hit in snippet.parts
        )
        parts.append(
            format_html(
                '<div class="snippet small mono" title="Where the search matched: the {}">'
                '<span class="tag">{}</span> {}</div>',
                snippet.field,
                snippet.field,
                mark_safe(marked),  # noqa: S308 (escaped above)
            )
        )
    parts.append(
        format_html(
            '</td>\n        <td class="wrap-anywhere"><a href="{}">{}</a> '
            '<a class="only" href="{}" title="Only executions of {}" '
            'aria-label="Only executions of {}">⧩</a>',
            _link(request, "state_machine_detail", sm.arn),
            sm.name,
            _attr(ex, "filter_url"),
            sm.name,
            sm.name,
        )
    )
    if places:
        place = _attr(ex, "place")
        parts.append(
            format_html(
                '<div class="place small muted"><a href="{}" title="Only executions in {}">'
                "{} · {}</a></div>",
                place[2],
                place[1],
                place[0],
                sm.region,
            )
        )
    parts.append(
        format_html(
            '</td>\n        <td><span class="status status-{}">{}</span>',
            ex.status,
            ex.get_status_display(),
        )
    )
    if ex.error:
        parts.append(
            format_html(
                '<div class="error-line small mono" title="{}">{}</div>',
                truncatechars(ex.error, 300),
                truncatechars(ex.error, 60),
            )
        )
    start = iso_z(ex.start_date) if ex.start_date else ""
    parts.append(
        format_html(
            '</td>\n        <td class="nowrap"><time datetime="{}">{}</time>'
            '<div class="small muted">{}</div></td>\n        <td class="num nowrap">',
            start,
            when(ex.start_date),
            ago(ex.start_date),
        )
    )
    if ex.is_open:
        parts.append(format_html('<span data-since="{}">{}</span>', start, duration(ex.start_date)))
    else:
        parts.append(conditional_escape(duration(ex.start_date, ex.stop_date)))
    parts.append("</td>\n      </tr>\n      ")
    return "".join(parts)


def _attr(ex: Execution, name: str) -> Any:
    """What the view set on the row (a state machine's filter link, its place)."""
    return getattr(ex, name)

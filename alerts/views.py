"""/alerts/: the rules, what fires now, recent alerts and the audit; writing,
muting and deleting a rule (permission alerts.change_alertrule, CSRF, an
audit row each). Everyone signed in may read."""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from executions.links import keep_tz
from executions.models import StateMachine
from executions.text.incident import base_url, utc_text

from . import check, notify
from .forms import AuditForm, MuteForm, RuleForm
from .models import AlertAudit, AlertFiring, AlertNotification, AlertRule

PERMISSION = "alerts.change_alertrule"
RECENT = dt.timedelta(days=1)
AUDIT_PAGE = 100
# The page warns when the tick has not checked the rules for this long.
CHECK_LATE = dt.timedelta(seconds=60)


def may_write(user: Any) -> bool:
    return bool(user.has_perm(PERMISSION))


def writers_only(view: Any) -> Any:
    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not may_write(request.user):
            raise PermissionDenied(
                f"Writing, muting and deleting alert rules needs the permission {PERMISSION} "
                f"(“Can change alert rule”). Ask an administrator to grant it to "
                f"{request.user.get_username()}; anyone signed in may read the rules."
            )
        response: HttpResponse = view(request, *args, **kwargs)
        return response

    return wrapped


def rule_or_404(pk: int) -> AlertRule:
    return get_object_or_404(AlertRule, pk=pk)


def _back(request: HttpRequest, name: str, *args: Any) -> HttpResponseRedirect:
    return HttpResponseRedirect(keep_tz(reverse(name, args=args), request))


def _audit(request: HttpRequest, rule: AlertRule, kind: str, detail: str) -> None:
    AlertAudit.objects.create(
        at=timezone.now(),
        kind=kind,
        rule=rule,
        rule_name=rule.name,
        user_id=request.user.pk,
        username=request.user.get_username(),
        detail=detail,
    )


def _check_state() -> dict[str, Any]:
    last = check.last_check()
    now = timezone.now()
    at = last.get("at") if last else None
    return {
        "last_check": last,
        "check_late": not isinstance(at, dt.datetime) or now - at > CHECK_LATE,
        "webhook": notify.enabled(),
    }


def _with_links(request: HttpRequest, firings: list[AlertFiring]) -> list[AlertFiring]:
    """Each firing's `link`: what fired, in the page's zone."""
    for firing in firings:
        path, query = notify.subject_target(firing.rule, firing)
        firing.link = keep_tz(path, request, query)  # type: ignore[attr-defined]
    return firings


@require_safe
def alert_list(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    rules = list(
        AlertRule.objects.annotate(firing=Count("firings", filter=Q(firings__resolved_at=None)))
    )
    firing = _with_links(
        request,
        list(
            AlertFiring.objects.filter(resolved_at__isnull=True)
            .select_related("rule", "fired_note")
            .order_by("-fired_at", "-id")[:200]
        ),
    )
    recent = _with_links(
        request,
        list(
            AlertFiring.objects.filter(resolved_at__gte=now - RECENT)
            .select_related("rule", "fired_note", "resolved_note")
            .order_by("-resolved_at", "-id")[:50]
        ),
    )
    context = {
        "rules": rules,
        "firing": firing,
        "recent": recent,
        "audit": list(AlertAudit.objects.all()[:20]),
        "may_write": may_write(request.user),
        "now": now,
        **_check_state(),
    }
    return render(request, "alerts/list.html", context)


@require_safe
def rule_detail(request: HttpRequest, pk: int) -> HttpResponse:
    rule = rule_or_404(pk)
    firings = _with_links(
        request,
        list(
            AlertFiring.objects.filter(rule=rule)
            .select_related("rule", "fired_note", "resolved_note")
            .order_by("-fired_at", "-id")[:100]
        ),
    )
    context = {
        "rule": rule,
        "firings": firings,
        "posts": list(AlertNotification.objects.filter(rule=rule)[:20]),
        "audit": list(AlertAudit.objects.filter(rule=rule)[:50]),
        "may_write": may_write(request.user),
        "muted": rule.muted(timezone.now()),
        "mute_form": MuteForm(),
        **_check_state(),
    }
    return render(request, "alerts/rule.html", context)


@require_http_methods(["GET", "HEAD", "POST"])
@writers_only
def rule_new(request: HttpRequest) -> HttpResponse:
    form = RuleForm(request.POST if request.method == "POST" else None)
    if request.method == "POST":
        if form.is_valid():
            rule = AlertRule(created_by=request.user.get_username(), base_url=base_url(request))
            form.apply(rule)
            with transaction.atomic():
                rule.save()
                _audit(request, rule, AlertAudit.Kind.CREATED, rule.condition)
            messages.success(request, f"Rule “{rule.name}” saved: it is checked on every tick.")
            return _back(request, "alert_rule", rule.pk)
        return _form_page(request, form, None, status=400)
    return _form_page(request, form, None)


@require_http_methods(["GET", "HEAD", "POST"])
@writers_only
def rule_edit(request: HttpRequest, pk: int) -> HttpResponse:
    rule = rule_or_404(pk)
    if request.method != "POST":
        return _form_page(request, RuleForm.for_rule(rule), rule)
    form = RuleForm(request.POST)
    if not form.is_valid():
        return _form_page(request, form, rule, status=400)
    changes = form.apply(rule)
    rule.base_url = base_url(request)
    with transaction.atomic():
        rule.save()
        if changes:
            _audit(request, rule, AlertAudit.Kind.CHANGED, "; ".join(changes))
    messages.success(request, f"Rule “{rule.name}” saved." if changes else "Nothing changed.")
    return _back(request, "alert_rule", rule.pk)


def _form_page(
    request: HttpRequest, form: RuleForm, rule: AlertRule | None, status: int = 200
) -> HttpResponse:
    names = StateMachine.objects.order_by("name").values_list("name", flat=True).distinct()[:500]
    context = {"form": form, "rule": rule, "machine_names": list(names)}
    return render(request, "alerts/rule_form.html", context, status=status)


@require_POST
@writers_only
def rule_delete(request: HttpRequest, pk: int) -> HttpResponse:
    rule = rule_or_404(pk)
    name = rule.name
    with transaction.atomic():
        _audit(request, rule, AlertAudit.Kind.DELETED, rule.condition)
        rule.delete()
    messages.success(request, f"Rule “{name}” deleted (its audit stays).")
    return _back(request, "alert_list")


@require_POST
@writers_only
def rule_mute(request: HttpRequest, pk: int) -> HttpResponse:
    rule = rule_or_404(pk)
    form = MuteForm(request.POST)
    if not form.is_valid():
        context = {
            "rule": rule,
            "mute_form": form,
            "message": " ".join(str(e) for errors in form.errors.values() for e in errors),
        }
        return render(request, "alerts/mute_error.html", context, status=400)
    if form.cleaned_data["action"] == "unmute":
        if rule.muted_until is not None:
            rule.muted_until = None
            with transaction.atomic():
                rule.save(update_fields=["muted_until", "updated_at"])
                _audit(request, rule, AlertAudit.Kind.UNMUTED, "posts resume")
        messages.success(request, f"Rule “{rule.name}” is not muted.")
    else:
        until: dt.datetime = form.cleaned_data["until"]
        rule.muted_until = until
        with transaction.atomic():
            rule.save(update_fields=["muted_until", "updated_at"])
            _audit(request, rule, AlertAudit.Kind.MUTED, f"until {utc_text(until)}")
        local = timezone.localtime(until)
        messages.success(request, f"Rule “{rule.name}” muted until {local:%Y-%m-%d %H:%M %Z}.")
    return _back(request, "alert_rule", rule.pk)


@require_safe
def alert_audit(request: HttpRequest) -> HttpResponse:
    form = AuditForm(request.GET)
    if not form.is_valid():
        context = {"form": form, "rows": [], "bad": True}
        return render(request, "alerts/audit.html", context, status=400)
    rows = AlertAudit.objects.all()
    rule_pk = form.cleaned_data["rule"]
    if rule_pk:
        rows = rows.filter(rule_id=rule_pk)
    before = form.cleaned_data["before"]
    if before:
        rows = rows.filter(id__lt=before)
    page = list(rows[: AUDIT_PAGE + 1])
    more = len(page) > AUDIT_PAGE
    page = page[:AUDIT_PAGE]
    next_query = ""
    if more:
        query = request.GET.copy()
        query["before"] = str(page[-1].pk)
        next_query = query.urlencode()
    context = {"form": form, "rows": page, "next_query": next_query, "rule_pk": rule_pk}
    return render(request, "alerts/audit.html", context)

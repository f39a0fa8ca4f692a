from __future__ import annotations

import json

from django import forms
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from executions.web.errors import PageError

from .models import Theme
from .themes import save_theme


class ThemeForm(forms.Form):
    theme = forms.ChoiceField(choices=Theme.choices)
    next = forms.CharField(required=False, max_length=2000)


@login_required
@require_POST
def set_theme(request: HttpRequest) -> HttpResponse:
    """Keep the person's theme; a form goes back where it came from, htmx gets
    a 204 and an event that repaints the page in place (app.js)."""
    form = ThemeForm(request.POST)
    if not form.is_valid():
        raise PageError(
            400,
            "Bad theme",
            "The theme must be one of: " + ", ".join(Theme.values) + ".",
        )
    theme = form.cleaned_data["theme"]
    save_theme(request, theme)
    if request.headers.get("HX-Request") == "true":
        response = HttpResponse(status=204)
        response["HX-Trigger"] = json.dumps({"sfnui:theme": theme})
        return response
    return HttpResponseRedirect(_back(request, form.cleaned_data["next"]))


def _back(request: HttpRequest, next_url: str) -> str:
    """The page the switch was on (same site only), else the list."""
    for url in (next_url, request.headers.get("Referer", "")):
        if url and url_has_allowed_host_and_scheme(
            url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        ):
            return url
    return "/executions/"

"""The HTTP edge shared by the views: middleware (?tz=, page errors,
private pages), PageError (errors.py), sign-in and API auth (auth.py,
oidc.py, lockout.py), rate limits (ratelimit.py), query-string forms
(forms.py), URL converters, context processors, link previews
(previews.py), what the stop pages share (stop_form.py), who may redrive
(redrive_form.py), what the watch
panel shows (watch_panel.py), the request type of a view that reads
request.htmx (htmx.py), and what every view needs (common.py: finding an
execution or state machine, syncing a watched execution now). ?tz= in
links is executions/links.py, errors without credentials
executions/redaction.py: the reads and the sync use them too.

May import anything in executions but views and tasks (it asks for work
with signals.py). Views import from here, never from each other.
"""

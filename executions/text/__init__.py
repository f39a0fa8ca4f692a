"""Executions as people read them outside a page's layout: the incident
summary (incident.py), the words of a link preview (link_preview.py), and
payloads (input, output, causes) indented and folded (payloads.py).

Plain functions of what the pages already read: no queries. May import:
arns, models (types), history. Never views, web, actions or sync.
"""

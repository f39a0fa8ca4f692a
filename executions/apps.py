from __future__ import annotations

from django.apps import AppConfig


class ExecutionsConfig(AppConfig):
    name = "executions"
    verbose_name = "Step Functions executions"

    def ready(self) -> None:
        # Connects the receivers that enqueue what domain code asks for
        # (signals.py), in every process: web, worker and manage.py.
        from . import tasks  # noqa: F401

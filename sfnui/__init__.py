from __future__ import annotations

# Celery's Django example: load the app whenever Django starts so that
# shared tasks and `delay_on_commit` use it.
from .celery import app as celery_app

__all__ = ("celery_app",)

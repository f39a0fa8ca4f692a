from __future__ import annotations

import os

from celery import Celery

from . import broker  # noqa: F401 - registers the atomic embedded broker

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sfnui.settings")

app = Celery("sfnui")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

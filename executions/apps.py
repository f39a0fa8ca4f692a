from __future__ import annotations

from pathlib import Path

from django.apps import AppConfig
from django.conf import settings
from django.db.models.signals import post_save

# The filesystem broker's folders (sfnui/settings.py names them under var/).
BROKER_FOLDERS = ("data_folder_in", "data_folder_out", "processed_folder", "control_folder")


class ExecutionsConfig(AppConfig):
    name = "executions"
    verbose_name = "Step Functions executions"

    def ready(self) -> None:
        make_folders()
        # Connects the receivers that enqueue what domain code asks for
        # (signals.py), in every process: web, worker and manage.py.
        from . import tasks  # noqa: F401
        from .models import StateMachine
        from .reads import places

        # A new state machine may bring a new account or region to the filters.
        post_save.connect(
            places.on_state_machine_saved, sender=StateMachine, dispatch_uid="places.forget"
        )


def make_folders() -> None:
    """The folders this process writes to, made when Django starts (web,
    worker, beat, manage.py, the tests), before anything opens them: var/
    (the SQLite file, beat's schedule), the embedded broker's folders, and
    STATIC_ROOT (WhiteNoise warns on every start without it; `collectstatic`
    fills it)."""
    folders = [Path(settings.VAR_DIR), Path(settings.STATIC_ROOT)]
    if str(settings.CELERY_BROKER_URL).startswith("filesystem://"):
        options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
        folders += [Path(str(options[key])) for key in BROKER_FOLDERS if options.get(key)]
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)

"""Who may act: the dashboard's action permissions of one user (stop,
redrive, start, change a Map Run), read together in one query and
remembered on the user object for the rest of the request.

`user.has_perm` would load every permission of the user and of their groups
(two queries) for each check; a page that shows a Stop, a Redrive and a
Re-run button would ask three times. Permissions come only from
ModelBackend here (single sign-on grants them as user permissions).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Permission
from django.db.models import Q

APP_LABEL = "executions"
STOP = "executions.stop_execution"
REDRIVE = "executions.redrive_execution"
START = "executions.start_execution"
UPDATE_MAP_RUN = "executions.update_map_run"
ACTIONS = (STOP, REDRIVE, START, UPDATE_MAP_RUN)

_REMEMBERED = "_sfnui_grants"


def granted(user: Any, permission: str) -> bool:
    """Whether `user` holds `permission` (one of ACTIONS)."""
    if permission not in ACTIONS:
        raise ValueError(f"{permission!r} is not one of the dashboard's action permissions")
    if not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", False):
        return False
    if getattr(user, "is_superuser", False):
        return True
    held: frozenset[str] | None = getattr(user, _REMEMBERED, None)
    if held is None:
        codenames = [p.split(".", 1)[1] for p in ACTIONS]
        held = frozenset(
            f"{APP_LABEL}.{codename}"
            for codename in Permission.objects.filter(
                codename__in=codenames, content_type__app_label=APP_LABEL
            )
            .filter(Q(user=user) | Q(group__user=user))
            .values_list("codename", flat=True)
            .distinct()
        )
        setattr(user, _REMEMBERED, held)
    return permission in held

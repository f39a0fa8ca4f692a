"""The test suite's settings: the app's own, plus what only makes tests faster.

Set as DJANGO_SETTINGS_MODULE by pyproject.toml, and exported by conftest.py so
that the processes the tests start (Celery workers, gunicorn) use it too: a
user created by a test must sign in on the web server it started.
"""

from __future__ import annotations

import os

from sfnui.settings import *  # noqa: F403

# Django's default (PBKDF2) costs about half a second a user; the suite makes
# hundreds. As healthchecks does, "for speed": never in production.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # A test database of this run's own: two runs side by side (a developer's
    # and an editor's, or two checkouts) must not share one file. Processes
    # the tests start get its name from the test run (tests/support/workers.py).
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")}  # noqa: F405
